/* pl_dist.h: text-to-video over the ranks of an MPI world (prefix pd_): the placements of
 * ../shared/DESIGN.md §2 around the single-rank pipeline's maths (pipeline.h).
 *
 * What it is: pd_open arranges the world by a layout (layout.h), splits its communicators and loads
 * only what each rank needs; pd_run then generates a queue of requests:
 *   - text: the group's rank 0 encodes the prompt (and the negative prompt, with CFG) and
 *     broadcasts the embeddings over the group; only that rank loads umT5 and the tokenizer;
 *   - denoising: every rank of a group holds the whole latents and the sampler (an elementwise
 *     update, run redundantly so that no rank waits for it); each step's DiT forward is
 *     Ulysses-parallel over the rank's sequence-parallel group (dit.h); with CFG parallelism the two
 *     halves of the group run the conditional and unconditional passes at once and the partners
 *     exchange their velocities (one all-gather of n floats over the pair), then every rank combines
 *     u + g (c - u) exactly as pl_generate does;
 *   - placement shared: one group runs every step with both experts loaded;
 *     placement split: the high-noise group runs the steps whose timestep is at or above the
 *     boundary, then its rank 0 sends the latents, the whole sampler state (smp_state_save:
 *     multistep history included) and the text embeddings to the low-noise group's rank 0, which
 *     broadcasts them over its group and finishes the steps; the high group meanwhile starts the
 *     next request: a two-stage pipeline (the hand-off of request j+1 waits until the low group
 *     has taken request j);
 *   - decoding: the decoding group's first vae_ranks ranks decode in parallel row tiles
 *     (vae_decode_dist); frames reach the writer (the decoding group's rank 0), which alone calls
 *     the request's on_frames and fills latents_out / video_out / expert_out;
 *   - after every step each rank checks its latents are finite (one pass; a NaN or infinity stops
 *     the run with an error naming the request, the step and the expert).
 * Where the data lives: on the rank's backend (the CPU's memory, or its GPU's when pd_open gets a
 * CUDA backend): latents, velocities, the CFG halves, the text embeddings and the sampler's
 * history stay there for a request's steps; the host holds the embeddings for their MPI
 * broadcast and the latents where they enter (noise) and leave (the decode, latents_out). The
 * hand-off sends the latents from device memory to device memory (NCCL between GPUs, over twins
 * of the bridge and of the low group: bridge_x, group_x), and the header, the sampler state and
 * the embeddings over MPI. On a GPU backend the Ulysses and CFG communicators carry
 * device buffers (NCCL on the backend's stream, or MPI through host memory when their ranks share
 * a GPU: cm_enable_device), as does the decoding group (the row-parallel decode's halos, keys and
 * values and frame bands live in its device arena), and the text encoder stays on the text rank's
 * device only when the rest fits beside it (else staged: pl_text_may_stay).
 * WANFARM_OVERLAP=1 (on every rank) overlaps the Ulysses all-to-alls of q, k and v with the next
 * projection (cm_ialltoall; the same bits); off by default until a GPU measurement says it pays
 * (bench/gpu-check.sh times both).
 * Requests must be the same on every rank (each rank parses the same command line). Progress
 * callbacks run on each group's rank 0, with the job, the group and a wall-clock time.
 * The result equals pl_generate's on one rank within float rounding (tests/test_dist.c).
 * Failure: input errors (pd_check) are found identically on every rank before any communication, so
 * every rank returns the same error and nothing hangs; a failure during the work returns an error on
 * the rank that saw it, and the caller must then MPI_Abort (the others may be blocked in a
 * collective).
 * What it is not: fault tolerant, or a server (the coordinator hands out jobs; a later issue).
 * Tested by: tests/test_dist.c (mpirun np 1..4: every placement equals np = 1; bytes per step equal
 * the formula of bench/PERFORMANCE.md; with --device cuda the same on GPU ranks, label gpu),
 * tests/test_dist.sh (the CLI: pipelining, bad layouts, GPU ranks when there is a GPU).
 */
#ifndef PD_PL_DIST_H
#define PD_PL_DIST_H

#include "comm.h"
#include "layout.h"
#include "pipeline.h"

typedef struct pd_world {
    cm_comm *world;   /* borrowed */
    ly_layout layout;
    ly_role role;
    cm_comm *group;   /* this rank's expert group */
    cm_comm *sp;      /* its Ulysses group (size ulysses[group]) */
    cm_comm *pair;    /* CFG parallel: {conditional rank, unconditional rank}; else NULL */
    cm_comm *vae;     /* the decoding ranks (NULL on the others) */
    cm_comm *bridge;  /* split: {high group rank 0, low group rank 0}; else NULL */
    cm_comm *bridge_x, *group_x; /* split on a device: the bridge's and the group's twins that
                                  * carry the latents in device memory (NCCL); else NULL */
    pl_pipeline *p;   /* the components this rank loaded */
    unsigned parts;   /* PL_PART_* loaded */
} pd_world;

/* The components rank `rank` loads under layout l (PL_PART_* bits). */
unsigned pd_parts(const ly_layout *l, int rank);

/* Collective over world. Checks that the layout uses exactly the world's ranks (ly_check's other
 * rules need the request: pd_check). */
wf_status pd_open(pd_world **out, cm_comm *world, const ly_layout *l, const char *root,
                  wk_backend *be, int nthreads, wf_err *err);
/* pd_open loading only the experts of `experts` (PL_PART_EXPERT0 and/or PL_PART_EXPERT1) where
 * the layout would load them: a stage world of one expert, whose requests use only its steps
 * (a step of the other expert is refused, WF_EUNSUPPORTED, naming it). */
wf_status pd_open_experts(pd_world **out, cm_comm *world, const ly_layout *l, const char *root,
                          wk_backend *be, int nthreads, unsigned experts, wf_err *err);
void pd_close(pd_world **d);

/* The layout rules for these requests (ly_check) plus pl_check_request for each; the same answer
 * on every rank, without communication. */
wf_status pd_check(const pd_world *d, const pl_request *reqs, int64_t njobs, wf_err *err);

/* Generates reqs[0..njobs) (collective over the world). Calls pd_check first. */
wf_status pd_run(pd_world *d, const pl_request *reqs, int64_t njobs, wf_err *err);

/* A queue whose requests are made one at a time, so that a queue of any length takes the memory
 * of one request: next(ctx, k, r) fills request k when this rank starts it (it may set up the
 * request's outputs); done(ctx, k, r, err) runs when this rank's part of it is over (the writer
 * writes and releases its outputs there; NULL: nothing). On one rank the calls alternate: next(k),
 * done(k), next(k + 1), ... The requests must be the same on every rank. */
typedef struct pd_queue {
    int64_t njobs;
    wf_status (*next)(void *ctx, int64_t k, pl_request *r, wf_err *err);
    wf_status (*done)(void *ctx, int64_t k, const pl_request *r, wf_err *err);
    void *ctx;
} pd_queue;

/* Generates the queue (collective over the world); each request is checked (pd_check) when it
 * starts, identically on every rank. */
wf_status pd_run_queue(pd_world *d, const pd_queue *q, wf_err *err);

/* Fills lim for ly_check from a request (tokens, heads, latent rows, CFG, experts). */
wf_status pd_limits(const pl_pipeline *p, const pl_request *r, ly_limits *lim, wf_err *err);

#endif
