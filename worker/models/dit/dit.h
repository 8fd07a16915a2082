/* dit.h: the Wan2.x diffusion transformer (Diffusers' WanTransformer3DModel) on a wk backend
 * (prefix dit_).
 *
 * What it is: config + weights struct + forward, as ../shared/wan_spec.md §1 describes the model.
 *   - Weights are views into the mapped checkpoint (any of f32, bf16, f16, fp8 storage); nothing
 *     is copied or widened at load. Every tensor is found by name and its shape checked against
 *     config.json. Diffusers names and the official Wan / ComfyUI names (optionally under
 *     "model.diffusion_model.") load through one table (dit_load.c).
 *   - Activations come from one arena sized by a measuring pass over the same allocation code
 *     (dit_arena_bytes); a forward allocates nothing else (the backend workspace grows only on the
 *     first call).
 *   - The timestep is a scalar or one value per token (TI2V-5B's expand_timesteps path).
 *   - Sequence parallel (Ulysses) over the ranks of a communicator: each rank computes the
 *     tokens [r Ll, (r + 1) Ll) of the (padded) sequence and exchanges q/k/v and the attention
 *     output by all-to-all (dit_forward.c's head comment); the result equals the one-rank forward.
 *     With sp->overlap the all-to-alls of q, k and v are started (cm_ialltoall) while the next
 *     projection runs and waited for before the attention: the same ops, the same bits.
 * What it is not: batched (B = 1; CFG runs two forwards).
 * Tested by: tests/test_dit.c against Diffusers fp32 outputs (tests/fixtures/dit), per stage;
 *   tests/test_dist.c (mpirun, np 1..4): Ulysses forwards inside whole generations equal one rank, to
 *   the bit; bench/bench_dist.c checks one forward the same way.
 *
 * Shape vocabulary: Cin/Cout latent channels, F H W latent frames/height/width, L tokens
 * (F/pt * H/ph * W/pw), Lt text tokens, D width, NH heads, HD head dim, FF ffn width,
 * Tn = 1 (scalar timestep) or L (per-token).
 */
#ifndef DIT_DIT_H
#define DIT_DIT_H

#include <stdbool.h>

#include "arena.h"
#include "backend.h"
#include "weights.h"
#include "comm.h"
#include "diffusers.h"
#include "safetensors.h"

typedef struct dit_attn {
    wk_tensor to_q_w, to_q_b;     /* [D, D], [D] */
    wk_tensor to_k_w, to_k_b;     /* [D, D], [D] */
    wk_tensor to_v_w, to_v_b;     /* [D, D], [D] */
    wk_tensor to_out_w, to_out_b; /* [D, D], [D] */
    wk_tensor norm_q, norm_k;     /* [D] RMSNorm across heads */
} dit_attn;

typedef struct dit_block {
    wk_tensor scale_shift_table;  /* [1, 6, D]: shift, scale, gate (attn), shift, scale, gate (ffn) */
    dit_attn attn1;               /* self-attention, with RoPE */
    dit_attn attn2;               /* cross-attention to the text */
    wk_tensor norm2_w, norm2_b;   /* [D] affine LayerNorm before attn2 (official name: norm3) */
    wk_tensor ffn_in_w, ffn_in_b;   /* [FF, D], [FF] */
    wk_tensor ffn_out_w, ffn_out_b; /* [D, FF], [D] */
} dit_block;

typedef struct dit_weights {
    wk_tensor patch_w, patch_b;   /* [D, Cin, pt, ph, pw], [D] */
    wk_tensor time1_w, time1_b;   /* [D, freq_dim], [D] */
    wk_tensor time2_w, time2_b;   /* [D, D], [D] */
    wk_tensor tproj_w, tproj_b;   /* [6D, D], [6D] */
    wk_tensor text1_w, text1_b;   /* [D, text_dim], [D] */
    wk_tensor text2_w, text2_b;   /* [D, D], [D] */
    wk_tensor scale_shift_table;  /* [1, 2, D]: shift, scale of the output head */
    wk_tensor proj_out_w, proj_out_b; /* [pt*ph*pw*Cout, D], [pt*ph*pw*Cout] */
    dit_block *blocks;            /* num_layers of them */
} dit_weights;

typedef enum dit_names { DIT_NAMES_DIFFUSERS = 0, DIT_NAMES_OFFICIAL } dit_names;

typedef struct dit_model {
    dfs_transformer_config cfg;
    dit_weights w;
    dit_names names;              /* which naming the checkpoint uses */
    st_checkpoint *ckpt;          /* owns the mapping the weights point into */
    uint64_t weight_bytes;
    wk_weights_block dev;         /* the weights' block on a GPU backend (dit_upload) */
    wk_weight *wlist;             /* every bound weight, for dit_upload */
    size_t n_wlist;
} dit_model;

/* Loads `dir` (a Diffusers transformer/ or transformer_2/ folder: config.json + safetensors).
 * Errors name the tensor and the expected and actual shapes, or the unused tensor. */
wf_status dit_load(dit_model **out, const char *dir, wf_err *err);
void dit_free(dit_model **m);
/* Moves the weights into one block of be's memory (weights.h: nothing moves on the CPU; the
 * modules Diffusers keeps in fp32, time_embedder, scale_shift_table and norm2, are widened).
 * Once, before any forward on be. */
wf_status dit_upload(dit_model *m, wk_backend *be, wf_err *err);

/* Tokens each of U ranks holds for a sequence of L: Ll = ceil(L / (q U)) * q, with q the
 * backend's row quantum (wk_backend.row_quantum; the padded sequence is U Ll, the padding is
 * masked). Every rank's token count is then a multiple of q, so the backend's GEMM row cuts start
 * at the same tokens whatever the Ulysses degree: a token's numbers do not depend on how the
 * sequence is split, and U ranks reproduce one rank to the bit where the backend's kernels allow
 * (tests/test_dist.c). At most q - 1 padded tokens per rank (47 on the CPU backend). */
int64_t dit_tokens_per_rank(int64_t L, int U, int64_t quantum);

/* The sizes of one forward. */
typedef struct dit_shape {
    int64_t F, H, W;              /* latent frames, height, width */
    int64_t Lt;                   /* text tokens */
    bool per_token_t;             /* timestep has L values instead of 1 */
} dit_shape;

/* Checks a shape against the model (divisibility by the patch, rope table length, Lt >= 1). */
wf_status dit_check_shape(const dit_model *m, const dit_shape *s, wf_err *err);
/* Bytes of arena one forward of this shape needs on each of sp_size Ulysses ranks (1: no
 * parallelism) of backend be (its row quantum pads the tokens); a measuring pass over dit_forward's allocations, exact. Errors when sp_size does
 * not divide the heads or exceeds the tokens. */
wf_status dit_arena_bytes(const dit_model *m, const wk_backend *be, const dit_shape *s,
                          int sp_size, size_t *bytes, wf_err *err);

/* Called after each stage with its output, for debugging a mismatch: "patch_tokens" [L, D],
 * "timestep_freq" [Tn, freq_dim], "temb" [Tn, D], "timestep_proj.j" [Tn, D] (j = 0..5), "context" [Lt, D], "block_i" [L, D],
 * "head_out" [L, pt*ph*pw*Cout]. Under Ulysses the per-token stages hold this rank's real rows.
 * The tensor is host memory: on a non-CPU backend it is downloaded into a host buffer first
 * (allocated once per forward that has a tap). */
typedef void (*dit_tap_fn)(void *ctx, const char *stage, const wk_tensor *t);

/* out[Cout, F, H, W] = model(latents [Cin, F, H, W], timestep [Tn], text [Lt, text_dim]).
 * All f32 host memory: the inputs are uploaded into `arena`, which lives in be's memory (a device
 * arena on a GPU backend; reset to its mark on return), and out is downloaded at the end.
 * sp: the Ulysses group (NULL or size 1: this rank alone). Collective over sp: every rank passes
 * the same full latents, timestep and text, and gets the full out. Bytes each rank sends per
 * forward: 4 layers (U-1) Ll (D/U) 4 (all-to-alls) + (U-1) Ll pt ph pw Cout 4 (the head
 * all-gather), Ll = dit_tokens_per_rank(L, U, be->row_quantum) (bench/PERFORMANCE.md). */
wf_status dit_forward(const dit_model *m, wk_backend *be, wk_arena *arena, const dit_shape *s,
                      cm_comm *sp, const float *latents, const float *timestep, const float *text,
                      float *out, dit_tap_fn tap, void *tap_ctx, wf_err *err);
/* The same forward on tensors already in be's memory (a sampler's device latents, say): latents
 * [Cin, F, H, W], text [Lt, text_dim] and out [Cout, F, H, W], f32 (any shape with those
 * element counts); only the timestep (Tn floats, host) is uploaded and nothing is downloaded.
 * out must not alias latents or text. dit_arena_bytes is an upper bound for it (by the three
 * tensors it does not take from the arena). */
wf_status dit_forward_on(const dit_model *m, wk_backend *be, wk_arena *arena, const dit_shape *s,
                         cm_comm *sp, const wk_tensor *latents, const float *timestep,
                         const wk_tensor *text, wk_tensor *out, dit_tap_fn tap, void *tap_ctx,
                         wf_err *err);

#endif
