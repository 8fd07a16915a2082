/* pl_plan.h: planner inputs from a pipeline (prefix pl_, the pipeline's).
 *
 * What it is: the bridge between the engine and the placement planner. The planner
 * (coordinator/planner/plan.h) takes plain numbers; these functions read them off a Diffusers
 * pipeline's configs (heads, widths, layers, the umT5 and VAE sizes), check the request by the
 * pipeline's own rules (pl_check_request_cfg), and count the steps of each expert exactly as the
 * pipeline chooses them (the sampler's timesteps against the boundary).
 * What it is not: the cost model or the layout search (plan.c); it predicts nothing.
 * Tested by: tests/test_plan.c (step split, request errors, a folder's inputs),
 * tests/test_plan_cli.sh (`wanfarm plan --model`).
 */
#ifndef PL_PLAN_H
#define PL_PLAN_H

#include "diffusers.h"
#include "pipeline.h"
#include "plan.h"

/* Fills the model and request parts of `in` (the rest is kept) from a Diffusers folder's configs
 * and a request. The request is validated as pl_check_request does (sizes, frames, steps,
 * boundary: WF_EINVAL with what to change), and steps_high/steps_low are counted exactly as the
 * pipeline chooses the expert: the sampler's timesteps (smp_create), t >= boundary_ratio *
 * num_train_timesteps runs transformer. */
wf_status pl_plan_inputs(pn_inputs *in, const dfs_pipeline *p, const pn_request *r, wf_err *err);
/* The same for Wan2.2-T2V-A14B without a model folder: its configs as the Diffusers repo ships
 * them (transformer and transformer_2 40 x 128 heads, ffn 13824, 40 layers; umT5-XXL; the Wan2.1
 * VAE; UniPC flow_shift 3.0; boundary_ratio 0.875). */
wf_status pl_plan_preset_a14b(pn_inputs *in, const pn_request *r, wf_err *err);
/* Those configs (no weights, no folder). */
void pl_preset_a14b_config(dfs_pipeline *out);

/* The implementation's own activation sizes for the planner's memory (pn_inputs.stage_bytes):
 * the DiT's and umT5's arenas from their configs (dit_arena_bytes, t5_arena_bytes, padded to
 * row_quantum tokens per rank), the decode's from a loaded VAE (vae_decode_dist_arena_bytes;
 * vae NULL: the planner's formula). The struct must outlive the inputs' use. */
typedef struct pl_plan_exact {
    const dfs_pipeline *cfg;
    const vae_model *vae;
    int64_t row_quantum;
} pl_plan_exact;
void pl_plan_use_exact(pn_inputs *in, pl_plan_exact *x);

#endif
