/* gen.h: what the four files of `wanfarm generate` share (prefix gen_): cmd_generate.c
 * (options, one process), job.c (the queue as requests: the local form of a job spec),
 * gen_output.c (per-video outputs: MP4, PNG, contact sheet, latents, progress lines) and
 * gen_dist.c (several MPI ranks: the layout and the distributed run).
 * Internal to the command; not a library interface.
 */
#ifndef GEN_GEN_H
#define GEN_GEN_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"
#include "pipeline.h"
#include "video_out.h"

#define PROG "wanfarm generate"
#define MAX_PROMPTS 256

typedef struct gen_opts {
    const char *prompts[MAX_PROMPTS];
    int nprompts;
    int64_t count;
    const char *model, *out, *latents_in, *save_latents, *frames_dir, *sheet;
    bool have_seed, json;
    int64_t threads, fps, crf;
    int placement;             /* -1: left to the planner, else an ly_placement */
    ly_layout layout;          /* ulysses/vae_ranks 0: left to the planner */
    int cfg_par;               /* -1 free, 0, 1 */
    int replicas;              /* 0: the planner's (1 when the layout is given) */
    double mem_gb;             /* 0: host memory / local ranks */
    const char *cost;          /* planner cost file, or NULL */
} gen_opts;

typedef struct gen_ctx {
    vout_mp4 *mp4;
    const char *mp4_path; /* opened at the first frame */
    bool mine;            /* this rank writes this job's outputs */
    int fps, crf;
    int64_t job;          /* -1 when there is one job (file names without -K) */
    int64_t gjob;         /* the job's index in the queue */
    int rank;             /* for progress lines under MPI (-1: single process) */
    const char *frames_dir;
    uint8_t *rgb8;
    size_t rgb8_cap;
    int64_t written;
    bool json;
    double t_start;
    bool sheet;       /* keep every 8-bit frame for the contact sheet */
    uint8_t **kept;   /* [n_kept] frames of H x W x 3 */
    int64_t n_kept, kept_cap, kept_w, kept_h;
} gen_ctx;

typedef struct gen_run {
    gen_opts *o;
    pl_request *reqs;
    gen_ctx *ctx;
    float **lat_out;
    int64_t njobs;
    int64_t shape[4];          /* latents [C, T, h, w] (every job has the same size) */
    int rank, size;
    bool quiet; /* not world rank 0: input errors are printed once */
} gen_run;

/* ---- job.c: the queue as requests ---- */

/* The path of job k of n: base itself when n == 1, else "-k" before the extension. */
void gen_job_path(const char *base, int64_t k, int64_t n, char *out, size_t cap);
/* Reads 'latents' [1, C, T, h, w] F32 from a safetensors file and checks it against shape
 * (WF_EINVAL naming the option, the file and the shape it must have). */
wf_status gen_read_latents(const char *path, const int64_t shape[4], float **out, wf_err *err);
/* The requests and their output contexts: job k is written here when `writer` and
 * k % replicas == replica. WF_ENOMEM only. */
wf_status gen_setup_jobs(gen_run *g, const pl_request *base, const float *lat0, bool writer,
                         int replicas, int replica, wf_err *err);
void gen_free_run(gen_run *g);

/* ---- gen_output.c: what the writer does with a job ---- */

double gen_now(void); /* CLOCK_MONOTONIC seconds */
/* The pipeline's callbacks, with a gen_ctx: decoded frames (MP4, PNG, contact sheet) and
 * progress lines. */
wf_status gen_on_frames(void *ctx, int64_t first, int64_t n, int64_t H, int64_t W,
                        const float *rgb, wf_err *err);
void gen_on_progress(void *ctx, const pl_progress *pr);
/* Job k's outputs after the work (MP4 close, contact sheet, latents). */
int gen_finish_outputs(gen_run *g, int64_t k);
void gen_report_done(const gen_run *g, double t0);

/* ---- gen_dist.c ---- */

/* Tasks of the srun step that started us (0: not in an srun step). */
long gen_srun_tasks(void);
/* Started by mpirun or srun (then MPI is initialised)? */
bool gen_under_launcher(void);
/* Several ranks: the layout (flags or planner) and the distributed pipeline (pl_dist.h). */
int gen_run_dist(gen_run *g, pl_request *base, double t0);

#endif
