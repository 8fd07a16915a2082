/* pipeline.h: text-to-video generation, end to end (prefix pl_): Diffusers' WanPipeline.__call__
 * (../shared/wan_spec.md §5) on a wk backend.
 *
 * What it is: pl_open loads every component of a Diffusers WanPipeline folder once (configs,
 * tokenizer, umT5, transformer and transformer_2 when present, VAE); pl_generate then runs one
 * request:
 *   1. validation (pl_check_request): width/height positive multiples of 16 and of the VAE spatial
 *      factor x the transformer's patch (16 for the Wan2.1 VAE), frames = 4k + 1 (Diffusers
 *      silently rounds frames down instead; wanfarm refuses and names the nearest valid counts),
 *      steps, guidance, max_sequence_length, boundary, sampler;
 *   2. text: the prompt and, only when CFG is on (guidance > 1, as Diffusers'
 *      do_classifier_free_guidance), the negative prompt are cleaned, tokenised to
 *      max_sequence_length and encoded once each (rows past the real tokens are zero). The default
 *      negative prompt is Diffusers' own: NULL means "" (NOT the official Wan negative prompt of
 *      §5.7; pass PL_WAN_NEGATIVE_PROMPT_ZH to get that);
 *   3. initial latents [C, T, h, w] f32 (C = transformer in_channels, T = (frames - 1)/4 + 1,
 *      h = height/8, w = width/8): the caller's, or N(0, 1) noise from pl_noise(seed) (below; it is
 *      not torch's generator, so seeds do not reproduce Diffusers' videos);
 *   4. the loop (§5.3): for each step i, t = the sampler's timestep (UniPC: int64, truncated;
 *      Euler: the fractional fp32 value); expert = transformer when there is no boundary or
 *      t >= boundary_ratio * num_train_timesteps (compared in double), else transformer_2;
 *      g = guidance for transformer, guidance_2 for transformer_2 (guidance_2 defaults to
 *      guidance); v = model(x, t, cond), and with CFG u = model(x, t, uncond) run after it,
 *      v = u + g (v - u) in f32; smp_step updates the f32 latents in place; then one pass checks
 *      that every latent is finite (a NaN or infinity stops the run: "step i/N (expert): ...").
 *      The latents, velocities, text embeddings and the sampler's history stay in the backend's
 *      memory for the whole loop (dit_forward_on, the backend's guidance / scale_add /
 *      unipc_update / first_nonfinite ops): on a GPU a step uploads its timestep and downloads
 *      one index, and the latents come back once, for the decoder;
 *   5. decoding (§5.5): a copy of the latents is de-normalised (z / (1/std) + mean) and
 *      VAE-decoded in streaming mode; frames [n, H, W, 3] in [-1, 1] go to the frame callback as
 *      each latent frame finishes.
 *   Every activation arena is sized by its measuring function before the work starts (t5, dit
 *   for the larger of the two experts, vae) and freed when its stage ends. On a device the
 *   experts and the VAE are uploaded once (pl_open) and the text encoder for step 2 of the first
 *   request; it stays when the rest of the request fits beside it, else it is given back before
 *   the loop and uploaded again for the next request (staged, the planner's text_staged rule:
 *   p->text_policy, pl_text_may_stay), so that a device need hold no more than
 *   max(umT5 + its activations, both experts + the DiT's activations) + the VAE.
 *   TI2V-5B-style folders (expand_timesteps true, one transformer, Wan2.2 VAE with z_dim 48 and
 *   16x spatial compression) generate text-to-video the same way: for T2V Diffusers' per-token
 *   timestep is mask * t with mask = 1 on every token (§1.9), i.e. t itself as fp32 for every
 *   token (t is an integer < 1000, or Euler's fp32 value: exact), and its transformer then applies
 *   the same embedding, modulation and head math to each token's t as the scalar path does once
 *   (broadcast), so the DiT's scalar path is used (not dit_shape.per_token_t): identical numbers
 *   without L timestep embeddings per call.
 * What it is not: image-to-video (including TI2V-5B's image-conditioned mode), batching
 *   (one video per call), or distributed. All computation is f32 (a bf16 checkpoint is widened).
 * Tested by: tests/test_pipeline.c against Diffusers' WanPipeline on tiny-wan22 (two experts, the
 *   boundary between steps 1 and 2 of 5), tiny-wan21 and tiny-ti2v (expand_timesteps, z_dim 48,
 *   Wan2.2 residual VAE) (tests/fixtures/pipeline, written by make_pipeline_fixtures.py): final
 *   latents, frames and the expert of every step; tests/test_gpu_pipeline.c the same on CUDA
 *   (against the CPU, with the bus bytes of every step bounded).
 */
#ifndef PL_PIPELINE_H
#define PL_PIPELINE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "diffusers.h"
#include "dit.h"
#include "sampler.h"
#include "status.h"
#include "tokenizer.h"
#include "umt5.h"
#include "vae.h"

/* The official Wan negative prompt (wan_spec.md §5.7), UTF-8. */
extern const char PL_WAN_NEGATIVE_PROMPT_ZH[];

typedef struct pl_pipeline {
    dfs_pipeline *cfg;
    tok_tokenizer *tok;
    t5_model *t5;
    dit_model *dit[2];      /* [0] transformer (high noise), [1] transformer_2 or NULL */
    vae_model *vae;
    wk_backend *be;
    bool own_be;
    int text_policy;        /* on a device: PL_TEXT_AUTO (default), PL_TEXT_STAGED, _RESIDENT */
} pl_pipeline;

/* Where the text encoder lives on a device between requests. AUTO: it stays after its first
 * upload when what the rest of a request needs beside it fits (pl_text_may_stay: the planner's
 * rule, measured on the device), else it is staged (uploaded for the prompts, given back before
 * the loop). STAGED / RESIDENT force either. The CPU maps the weights: nothing moves. */
enum { PL_TEXT_AUTO = 0, PL_TEXT_STAGED, PL_TEXT_RESIDENT };
/* Whether the text encoder, whose weights are on the device now, may stay while `need` more
 * bytes (the largest arena of the request's later stages) are allocated: live + need + 1 GiB
 * within 95% of the device's memory, or the policy says so. */
bool pl_text_may_stay(const pl_pipeline *p, size_t need);

/* Loads the folder. be: the backend to run on (borrowed), or NULL for a CPU backend with
 * nthreads threads (<= 0: all). Errors name the component. */
wf_status pl_open(pl_pipeline **out, const char *root, wk_backend *be, int nthreads, wf_err *err);

/* The components a rank of a distributed run loads (pl_dist.h): any subset; configs are always
 * read and checked against each other. pl_generate needs the text encoder and the VAE, and the
 * experts its steps use: a pipeline of one expert (a stage world) runs only steps of that expert
 * (a step of the other one is refused, WF_EUNSUPPORTED, naming it). */
enum {
    PL_PART_TEXT = 1,    /* tokenizer + text encoder */
    PL_PART_EXPERT0 = 2, /* transformer/ */
    PL_PART_EXPERT1 = 4, /* transformer_2/ (when the folder has one) */
    PL_PART_VAE = 8,
    PL_PART_ALL = 15
};
wf_status pl_open_parts(pl_pipeline **out, const char *root, wk_backend *be, int nthreads,
                        unsigned parts, wf_err *err);

/* One prompt -> its [L, d_model] embedding (rows past the real tokens are zero). Needs the text
 * part; activations from arena (t5_arena_bytes). On a device backend the text encoder's weights
 * must be on it (t5_upload): pl_open does not keep them there, pl_generate uploads them for its
 * prompts and gives them back after (staged). */
wf_status pl_encode(pl_pipeline *p, wk_arena *arena, const char *text, int64_t L, float *out,
                    wf_err *err);
void pl_close(pl_pipeline **p); /* NULLs *p; accepts NULL */

typedef struct pl_progress {
    int64_t job;            /* index of the request (distributed runs; 0 otherwise) */
    int group;              /* expert group that ran the step (distributed runs; 0 otherwise) */
    double wall_end;        /* CLOCK_REALTIME seconds when the step finished (comparable across
                             * ranks of one machine) */
    int64_t step, steps;    /* step just finished (0-based) and the total */
    int expert;             /* 0 transformer, 1 transformer_2 */
    double timestep;        /* what the model received */
    double guidance;        /* the scale used (1 when CFG is off) */
    double step_seconds;    /* wall time of this step */
    double elapsed_seconds; /* since the loop started */
    /* distributed runs, this rank (its group's rank 0) during the step: seconds inside
     * collectives (waiting included) and bytes sent, over its Ulysses group and CFG pair
     * (bench/PERFORMANCE.md gives the formulas); 0 in one process */
    double comm_seconds;
    uint64_t comm_bytes;
    /* where the step's time went on this rank: the backend's ops by category (wk_timing:
     * device time of GEMMs, attention and the other ops on a GPU, host time on the CPU), and the
     * collectives by kind (seconds inside them, waiting included; 0 in one process) */
    double op_seconds[WK_T_NCATS];
    double comm_op_seconds[CM_NOPS];
    /* this rank's backend memory, bytes: the peak so far of what the weights, arenas and the
     * video's buffers hold (wk_backend.mem_peak_data: what the planner predicts), the op
     * workspace (ws_bytes), all in use at the end of the step (mem_live), and on a GPU the
     * device's memory in use by every process (the runtime's context, NCCL's buffers and the
     * libraries' included; 0 when not known) */
    uint64_t mem_peak, mem_workspace, mem_live, device_used;
    int64_t first_step;     /* the loop's first step (a resumed job's start_step; else 0) */
} pl_progress;
typedef void (*pl_progress_fn)(void *ctx, const pl_progress *pr);
/* Fills pr's memory fields from the backend. */
void pl_progress_memory(wk_backend *be, pl_progress *pr);

typedef struct pl_request {
    const char *prompt;            /* required, UTF-8 */
    const char *negative_prompt;   /* NULL: "" (Diffusers' default) */
    int64_t width, height, frames; /* defaults 832, 480, 81 */
    int64_t steps;                 /* default 50 */
    double guidance;               /* default 5.0; <= 1 turns CFG off */
    double guidance_2;             /* NaN (default): = guidance */
    double shift;                  /* > 0 overrides the scheduler's flow_shift / shift; 0: config */
    double boundary;               /* NaN (default): the folder's boundary_ratio; else in [0, 1],
                                    * needs transformer_2 */
    int sampler;                   /* -1 (default): the scheduler config's; else an smp_solver */
    uint64_t seed;                 /* for pl_noise when latents is NULL */
    const float *latents;          /* initial latents [C, T, h, w], or NULL */
    int64_t max_sequence_length;   /* default 512 */
    pl_progress_fn progress;
    void *progress_ctx;
    vae_frames_fn on_frames;       /* decoded frames, rgb [n, H, W, 3] in [-1, 1]; may be NULL */
    void *frames_ctx;
    float *latents_out;            /* optional: final latents [C, T, h, w] (before de-norm.) */
    float *video_out;              /* optional: [3, F, H, W] in [-1, 1] */
    int *expert_out;               /* optional: [steps] expert used per step */
    bool skip_decode;              /* stop after the loop (latents only) */
    /* resume and checkpoints (pl_generate, pd_run):
     *   start_step > 0: the job resumes after that many steps: `latents` are the latents then and
     *   start_state (start_state_bytes) the sampler's state then (smp_state_save's bytes); the
     *   text is encoded again (it is not part of the state). 0: from the noise.
     *   checkpoint: called, where the latents are whole (one process; the group's rank 0 under
     *   MPI), with the host latents and the sampler state after `done` steps: after every
     *   checkpoint_every steps (0: never; not after the last step) and when a stop is asked for.
     *   A failure stops the run with it.
     *   stop: polled between steps (under MPI, agreed over the world); once nonzero the run
     *   checkpoints (if it has a checkpoint) and returns WF_ESTOPPED. */
    int64_t start_step;
    const void *start_state;
    size_t start_state_bytes;
    int64_t checkpoint_every;
    wf_status (*checkpoint)(void *ctx, int64_t done, const float *latents, const void *state,
                            size_t state_bytes, wf_err *err);
    void *checkpoint_ctx;
    const volatile sig_atomic_t *stop;
} pl_request;

void pl_request_default(pl_request *r);

/* Resume and checkpoints, shared by pl_generate and pd_run:
 *   pl_check_resume: start_step in [0, steps], with a state and latents when > 0 (WF_EINVAL);
 *   pl_resume_load: the start state into smp (when start_step > 0);
 *   pl_checkpoint_due: whether to checkpoint after `done` steps (every checkpoint_every, not
 *     after the last; always on a stop) -- false without a checkpoint callback;
 *   pl_checkpoint_now: the latents x (backend memory, n floats) into xh (host) and the sampler
 *     state into state (smp_state_bytes(smp) host bytes), then r->checkpoint. */
wf_status pl_check_resume(const pl_request *r, wf_err *err);
wf_status pl_resume_load(const pl_request *r, smp_sampler *smp, wf_err *err);
bool pl_checkpoint_due(const pl_request *r, int64_t done, bool stop);
wf_status pl_checkpoint_now(wk_backend *be, const pl_request *r, const smp_sampler *smp,
                            const float *x, float *xh, void *state, size_t n, int64_t done,
                            wf_err *err);


/* The ranges pl_check_request accepts for the numbers of a request (the CLI states the same):
 *   guidance, guidance_2 in [0, PL_GUIDANCE_MAX]: Wan's scales are 3..6; far above, the
 *     combined velocity u + g (c - u) overflows f32 long before it means anything;
 *   shift 0 (the scheduler's) or in [PL_SHIFT_MIN, PL_SHIFT_MAX]: Wan uses 1..12;
 *   max_sequence_length in 1..PL_MAX_SEQUENCE_LENGTH: the Wan pipeline uses 512; umT5's relative
 *     attention takes any length but its score matrices grow with the square of it (the arena of
 *     umT5-XXL at 4096 tokens is several GiB), so 8x the pipeline's length is the limit;
 *   width, height at most rope_max_seq_len x patch x the VAE spatial factor (the DiT's rotary
 *     table), frames at most what that table allows in time. */
#define PL_GUIDANCE_MAX 100.0
#define PL_SHIFT_MIN 0.01
#define PL_SHIFT_MAX 100.0
#define PL_MAX_SEQUENCE_LENGTH 4096

/* The index of the first NaN or infinity in x[0..n), or n when every value is finite (one pass;
 * pl_generate and pd_run check the latents with it after every step). */
size_t pl_first_nonfinite(const float *x, size_t n);

/* The end of denoising step i, in be's memory (n floats each): with u (CFG), v = u + g (c - u)
 * (c may be v itself); then the sampler's update of x by v (smp_step), then the check that
 * every latent is finite, whose error names the first bad element and its value. pl_generate
 * and pd_run end every step with it. */
wf_status pl_step_update(wk_backend *be, smp_sampler *smp, float *x, float *v, const float *c,
                         const float *u, float g, size_t n, int64_t i, wf_err *err);

/* Which expert step t uses (0 transformer, 1 transformer_2), as pl_generate chooses. */
int pl_expert_of(const pl_pipeline *p, const pl_request *r, double t);

/* Validates r against p (messages say what to change) and gives the latent shape {C, T, h, w}. */
wf_status pl_check_request(const pl_pipeline *p, const pl_request *r, int64_t shape[4],
                           wf_err *err);
/* The same from the folder's configs alone (the planner checks requests without loading). */
wf_status pl_check_request_cfg(const dfs_pipeline *c, const pl_request *r, int64_t shape[4],
                               wf_err *err);

wf_status pl_generate(pl_pipeline *p, const pl_request *r, wf_err *err);

/* The initial noise wanfarm draws from a seed: element i of x gets the Box-Muller normal
 *   u1 = (hi32(k) + 1) / 2^32 (never 0), u2 = lo32(k) / 2^32, k = splitmix64(seed + 0x9E37... * (i/2+1))
 *   x[i] = sqrt(-2 ln u1) * (i even ? cos(2 pi u2) : sin(2 pi u2))
 * computed in double and rounded to f32: counter-based, so any element can be drawn on its own and
 * the result does not depend on threads. Not torch's stream. */
void pl_noise(uint64_t seed, float *x, size_t n);

#endif
