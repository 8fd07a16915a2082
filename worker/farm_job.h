/* farm_job.h: one farm job on a worker world (prefix fj_), shared by the ranks of
 * `wanfarm worker` (cmd_worker.c).
 *
 * What it is: an Assignment becomes the command line of `wanfarm generate` (gen_main), run
 * in-process on every rank of the world, so that a farm job is exactly the video generate makes
 * of the same spec: the same options, checks, checkpoints and outputs, in placement shared with
 * the layout the coordinator's planner chose for the world (Assignment.plan; without one,
 * generate's planner picks it). Around it:
 *   - the output paths: the job's output name (default JOB.mp4) under the output root, each
 *     folder component made or entered without following a symlink (one that is a link, or a
 *     final name that is a link or not a regular file, is refused), MP4 plus, with save_latents,
 *     the latents beside it (.h5);
 *   - the checkpoint: JOB.ckpt.h5 in the checkpoint root (with .prev), resumed whenever it is
 *     usable (the same spec, seed and model; else the noise, said in the log), written every
 *     checkpoint_every steps and when the run is stopped (a cancel, SIGTERM, SIGUSR1), removed
 *     once the job is done or cancelled;
 *   - the hooks (gen.h): each step and checkpoint reported to the coordinator, the cancel polled,
 *     a failure about to end the world reported before it does;
 *   - stage worlds (one expert loaded, on any number of ranks): a high-noise world runs the steps before
 *     the switch (counted by the planner as the pipeline picks the experts), checkpoints there
 *     and hands the job on (Result.handed_on, its step; the checkpoint stays); a low-noise world
 *     resumes such a job from that checkpoint and finishes it;
 *   - the verdict (world rank 0): a Result (outputs relative to the root, times) or a Failure,
 *     the job's own (the spec does not fit the model; latents no longer finite) or the
 *     infrastructure's (anything else: a disk, a rank), sent until acknowledged.
 * What it is not: the MPI loop or the link (cmd_worker.c, farm/link.h).
 * Tested by: tests/test_farm.sh (outputs equal generate's; cancels, faults, resume).
 */
#ifndef FJ_FARM_JOB_H
#define FJ_FARM_JOB_H

#include <stdbool.h>
#include <stddef.h>

#include "link.h"
#include "pipeline.h"

typedef struct fj_world {
    const char *model, *output_root, *checkpoint_root;
    const char *threads, *device, *precision, *watchdog, *cost, *mem_gb; /* or NULL */
    int rank, size;
    int stage;              /* Wanfarm__Stage: all, or high or low only */
    fl_link *link;          /* rank 0 */
    pl_pipeline *shell;     /* rank 0: the model's configs, for the spec's checks */
    char host[64];
} fj_world;

/* What became of a job on this rank. */
typedef enum fj_outcome {
    FJ_DONE = 0,   /* written (or, off rank 0, this rank's part is over) */
    FJ_CANCELLED,  /* stopped by a CancelJob after a checkpoint */
    FJ_STOPPED,    /* stopped by a signal after a checkpoint: the world ends */
    FJ_FAILED,     /* reported; the world carries on */
    FJ_HANDED_ON,  /* a high-noise stage world stopped at the switch, after a checkpoint */
} fj_outcome;

/* Runs the assignment on this rank (collective over the world) and, on rank 0, reports it. */
fj_outcome fj_run(fj_world *w, const Wanfarm__Assignment *a);

#endif
