/* sampler.h: the Wan samplers (prefix smp_): Diffusers' UniPCMultistepScheduler (flow sigmas,
 * flow_prediction, predict_x0, bh1/bh2, order 1..3, lower_order_final, the UniC corrector,
 * disable_corrector) and FlowMatchEulerDiscreteScheduler, on either sigma grid:
 *   SMP_GRID_DIFFUSERS  what the scheduler class computes itself (spec 4.1 for UniPC with the
 *                       1e-6 nudge of the first sigma, 4.2 for Euler with its double shift);
 *   SMP_GRID_OFFICIAL   the official Wan2.2 FlowUniPC grid (spec 4.3, 9.5): linspace from
 *                       float32(0.999) to 0 in float64, the shift map, no nudge, final sigma 0.
 * The grid is computed once, exactly as numpy/torch do (float64 then fp32; Euler's training grid
 * in fp32), so sigmas match Diffusers to the bit and the integer timesteps exactly.
 *
 * Use (spec 5.3): for i in 0..steps-1: the model gets timesteps[i] (UniPC: int64(sigma*1000),
 * truncated; Euler: timesteps_f[i], fractional), then smp_step(s, v, x, i) updates the fp32
 * sample x in place. The step index alone selects sigmas[i], sigmas[i+1]: a sigma is never derived
 * from an integer timestep (spec 9.4). The scalar maths (alpha, lambda, h, expm1, rk, the phi terms,
 * the small LU solves) are fp32, like Diffusers' 0-d tensors.
 *
 * Where the work runs: the sample, the model outputs, the x0 history and the last sample live in
 * the memory of the backend given in smp_options.be (a GPU's, say), and every elementwise update
 * is a backend op (scale_add, unipc_update, copy: kernels/backend.h), so that no latent crosses
 * the bus during a run; the scalar maths and the small state stay on the host. A sampler made
 * without a backend has its grid only (sigmas, timesteps: what a planner reads) and refuses to
 * step.
 *
 * The whole solver state (multistep x0 history, timestep list, lower_order_nums, this_order, the
 * last sample for the corrector, the step index) serialises to one flat little-endian buffer of
 * smp_state_bytes() bytes: an smp_state_header followed by `order` history buffers (oldest first)
 * and the last sample, n floats each. Loading it into a fresh sampler built from the same settings
 * and continuing is bit-identical to an uninterrupted run.
 *
 * Deliberate difference: at a step whose next sigma is 0 (the last one) the predictor returns the
 * x0 prediction exactly (the limit of the update). Diffusers evaluates expm1(-inf) etc. there,
 * which gives the same value for bh2 at order 1 (the shipped configuration) but NaN for bh1
 * (alpha*B_h*0 = -inf*0) and for order > 1 without lower_order_final.
 *
 * What it is not: stochastic sampling, thresholding, karras/exponential/beta sigmas, dynamic
 * shifting, per-token timesteps (TI2V) or bf16 model outputs (callers pass f32).
 * Tested by: tests/test_sampler.c against tests/fixtures/sampler (make_sampler_fixtures.py), on
 *   the CPU backend; tests/test_gpu_pipeline.c through whole generations on CUDA.
 */
#ifndef SMP_SAMPLER_H
#define SMP_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "diffusers.h"
#include "status.h"

#define SMP_MAX_ORDER 3
#define SMP_MAX_STEPS 10000

typedef enum smp_solver { SMP_UNIPC = 0, SMP_EULER } smp_solver;
typedef enum smp_grid { SMP_GRID_DIFFUSERS = 0, SMP_GRID_OFFICIAL } smp_grid;

typedef struct smp_options {
    int64_t steps;                   /* number of inference steps, 1..SMP_MAX_STEPS */
    double shift;                    /* > 0: overrides flow_shift (UniPC) / shift (Euler) */
    smp_grid grid;
    int solver;                      /* -1: the config's kind; else an smp_solver */
    const int64_t *disable_corrector;/* UniPC: step indices whose *following* step skips UniC */
    size_t n_disable_corrector;
    wk_backend *be;                  /* where the sample and history live (borrowed); NULL: the
                                      * grid only (smp_step refuses) */
} smp_options;

/* Fills defaults: steps 0 (must be set), shift 0 (config), diffusers grid, solver from config,
 * no backend. */
void smp_options_default(smp_options *o);

typedef struct smp_sampler {
    smp_solver solver;
    smp_grid grid;
    int64_t steps;
    double shift;
    int order;                  /* UniPC solver_order (1 for Euler) */
    bool bh2;                   /* UniPC solver_type */
    bool lower_order_final;
    size_t n;                   /* elements of one sample */
    float *sigmas;              /* steps + 1 (last: 0, or sigma_min) */
    int64_t *timesteps;         /* steps: what the transformer receives (truncated) */
    float *timesteps_f;         /* steps: scheduler.timesteps as fp32 (Euler's are fractional) */
    bool *corrector_off;        /* steps: UniC skipped at step i+1 when corrector_off[i] */
    /* state */
    int64_t step_index;
    int32_t lower_order_nums, this_order, n_hist, has_last;
    int64_t timestep_list[SMP_MAX_ORDER];
    wk_backend *be;             /* NULL: grid only */
    float *hist[SMP_MAX_ORDER]; /* backend memory [n] each, logical order as Diffusers'
                                 * model_outputs: [order-1] newest */
    float *last_sample;         /* backend memory [n] */
    float *scratch;             /* backend memory [n] */
    uint64_t grid_hash;         /* FNV-1a of the sigma bits and the settings (state checks) */
} smp_sampler;

/* Creates a sampler for samples of n floats. cfg: the scheduler config (its kind, shifts, order,
 * solver type, lower_order_final, final_sigmas_type, num_train_timesteps). */
wf_status smp_create(smp_sampler **out, const dfs_scheduler_config *cfg, const smp_options *opt,
                     size_t n, wf_err *err);
void smp_free(smp_sampler **s);

/* Resets the state to "before step 0" (the grid is kept). */
void smp_reset(smp_sampler *s);

/* One step: model_out is the flow prediction v at step `step` (must equal s->step_index), sample
 * the current fp32 latents, updated in place; both n floats in the backend's memory. */
wf_status smp_step(smp_sampler *s, const float *model_out, float *sample, int64_t step,
                   wf_err *err);

/* The flat state. */
typedef struct smp_state_header {
    char magic[8];              /* "WFSMPST1" */
    uint32_t version;           /* 1 */
    uint32_t solver;
    int64_t steps;
    uint64_t n;
    uint64_t grid_hash;
    int64_t step_index;
    int32_t order, lower_order_nums, this_order, n_hist, has_last, pad_;
    int64_t timestep_list[SMP_MAX_ORDER];
} smp_state_header;

size_t smp_state_bytes(const smp_sampler *s);
/* buf: host memory of smp_state_bytes(s) bytes (the history is downloaded into it). */
wf_status smp_state_save(const smp_sampler *s, void *buf, wf_err *err);
/* Checks the header against s (same solver, grid, steps, n) before changing anything; the
 * history is uploaded. Needs a backend. */
wf_status smp_state_load(smp_sampler *s, const void *buf, size_t len, wf_err *err);

#endif
