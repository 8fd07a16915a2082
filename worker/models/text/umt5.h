/* umt5.h: the umT5 text encoder (transformers' UMT5EncoderModel) on a wk backend (prefix t5_).
 *
 * What it is: config + weights struct + forward, as ../shared/wan_spec.md §3 describes the model,
 * followed by the Wan pipeline's trim: rows past the real token count are exact zeros
 * (WanPipeline._get_t5_prompt_embeds, §3.3 step 5).
 *   - Weights are views into the mapped checkpoint (f32, bf16, f16 or fp8 storage, widened
 *     blockwise by the ops; nothing is copied at load). Every tensor is found by its transformers
 *     name and its shape checked exactly against text_encoder/config.json; a tensor the config
 *     does not use is refused (a full encoder-decoder checkpoint is caught here), except that
 *     `shared.weight` and `encoder.embed_tokens.weight` may both be present if they are identical.
 *   - Forward: embedding (no scaling); per layer, own relative-position bias (bidirectional
 *     buckets, log in fp32, truncation toward zero, as torch computes them) plus the padding-key
 *     mask as the attention op's [NH, L, L] bias; T5 RMS norm; attention with scale 1; gated
 *     GELU-tanh FFN; final norm. All in f32.
 *   - Activations come from one arena sized by a measuring pass over the same allocation code
 *     (t5_arena_bytes); a forward allocates nothing else (the backend workspace grows only on the
 *     first call).
 * What it is not: batched (one prompt per call; CFG encodes the negative prompt with a second
 *   call), the decoder, or the official Wan T5 checkpoint names (models_t5_umt5-xxl-enc-bf16.pth),
 *   or T5 v1.0/1.1 (model_type "t5": one shared bias table) -- those are refused at load.
 *   A bf16 checkpoint is computed in f32 (transformers would run it in bf16; the difference is
 *   recorded per fixture in tests/fixtures/text/umt5/bf16/case.json).
 * Tested by: tests/test_umt5.c against transformers' UMT5EncoderModel and the tiny-wan22
 *   WanPipeline (tests/fixtures/text/umt5, made by make_text_fixtures.py), layer by layer.
 *
 * Shape vocabulary: L sequence length (the pipeline's max_sequence_length), Lc rows computed (L,
 * or the real tokens only), D d_model, NH heads, HD d_kv, IN = NH*HD, FF d_ff, V vocab_size,
 * NB relative_attention_num_buckets.
 */
#ifndef T5_UMT5_H
#define T5_UMT5_H

#include <stdbool.h>
#include <stdint.h>

#include "arena.h"
#include "backend.h"
#include "weights.h"
#include "diffusers.h"
#include "safetensors.h"

typedef struct t5_layer {
    wk_tensor q_w, k_w, v_w;  /* [IN, D]  layer.0.SelfAttention.{q,k,v}.weight */
    wk_tensor o_w;            /* [D, IN]  layer.0.SelfAttention.o.weight */
    wk_tensor rel_bias;       /* [NB, NH] layer.0.SelfAttention.relative_attention_bias.weight */
    wk_tensor ln_attn;        /* [D]      layer.0.layer_norm.weight */
    wk_tensor wi0_w, wi1_w;   /* [FF, D]  layer.1.DenseReluDense.wi_{0,1}.weight */
    wk_tensor wo_w;           /* [D, FF]  layer.1.DenseReluDense.wo.weight */
    wk_tensor ln_ffn;         /* [D]      layer.1.layer_norm.weight */
} t5_layer;

typedef struct t5_weights {
    wk_tensor embed;          /* [V, D] shared.weight (or encoder.embed_tokens.weight) */
    wk_tensor final_ln;       /* [D]    encoder.final_layer_norm.weight */
    t5_layer *layers;         /* num_layers of them: encoder.block.{i}. */
} t5_weights;

typedef struct t5_model {
    dfs_umt5_config cfg;
    t5_weights w;
    int64_t inner;            /* IN = num_heads * d_kv */
    const char *embed_name;   /* the checkpoint name the embedding was bound to */
    st_checkpoint *ckpt;      /* owns the mapping the weights point into */
    uint64_t weight_bytes;
    wk_weight *wlist;         /* every bound weight, for t5_upload */
    size_t n_wlist;
    wk_weights_block dev;     /* the weights' block on a GPU backend (t5_upload) */
} t5_model;

/* Loads `dir` (a transformers text_encoder/ folder: config.json + model.safetensors or a sharded
 * index). Errors name the folder, the tensor and the expected and actual shapes. */
wf_status t5_load(t5_model **out, const char *dir, wf_err *err);
void t5_free(t5_model **m); /* NULLs *m; accepts NULL */
/* Moves the weights into one block of be's memory (weights.h; nothing moves on the CPU; wo, which
 * transformers keeps in fp32, is widened). Before any forward on be; again after t5_unload. */
wf_status t5_upload(t5_model *m, wk_backend *be, wf_err *err);
/* Gives the block back: the weights point at the mapped checkpoint again (the text encoder
 * leaves the device between videos, so that both DiT experts fit beside the activations).
 * Nothing happens when nothing was moved. */
void t5_unload(t5_model *m);

/* One prompt, as the tokenizer makes it (tokenizer.h: tok_encode). */
typedef struct t5_input {
    int64_t L;                /* sequence length: the pipeline's max_sequence_length */
    const int32_t *ids;       /* [L] token ids, each < vocab_size */
    const int32_t *mask;      /* [L] 1 on the first n_real (>= 1) tokens, then 0 (right padding) */
    bool real_rows_only;      /* compute only the n_real real rows: the same output, since padding
                               * keys are masked and the rows past n_real become zeros anyway;
                               * false runs all L rows like transformers (taps then cover them) */
} t5_input;

/* Checks ids and mask; *n_real (optional) gets the real token count. */
wf_status t5_check_input(const t5_model *m, const t5_input *in, int64_t *n_real, wf_err *err);
/* Bytes of arena one forward of length L needs (a measuring pass; exact, and enough for both
 * values of real_rows_only). */
wf_status t5_arena_bytes(const t5_model *m, int64_t L, size_t *bytes, wf_err *err);

/* Called after each stage with its output, for debugging a mismatch: "embed" [Lc, D],
 * "block_i" [Lc, D] (the residual stream after encoder.block[i]), "final" [Lc, D] (after the final
 * norm, before padding rows are zeroed). Taps read host memory: CPU backend only (t5_forward
 * refuses them elsewhere with WF_EUNSUPPORTED). */
typedef void (*t5_tap_fn)(void *ctx, const char *stage, const wk_tensor *t);

/* out[L, D] (f32 host memory) = UMT5EncoderModel(ids, mask).last_hidden_state with rows >= n_real
 * set to 0: the Wan pipeline's prompt embedding. in's ids and mask are host arrays, uploaded;
 * activations come from `arena`, which lives in be's memory (reset to its mark on return). */
wf_status t5_forward(const t5_model *m, wk_backend *be, wk_arena *arena, const t5_input *in,
                     float *out, t5_tap_fn tap, void *tap_ctx, wf_err *err);

/* The bucket of relative position rel = key j - query i for a bidirectional (encoder) layer, as
 * transformers' _relative_position_bucket computes it (wan_spec.md §3.2, §9.10): half the buckets
 * for rel > 0; |rel| < max_exact = num_buckets/4 exact; beyond, max_exact +
 * trunc(logf(|rel| / max_exact) / (float)ln(max_distance / max_exact) * (num_buckets/2 -
 * max_exact)) in fp32, capped at num_buckets/2 - 1. Needs t5_load's config checks
 * (num_buckets >= 4, max_distance > max_exact). The t5_bias op's bucket (kernels/cpu/layout.c:
 * wk_t5_relative_bucket, which this calls). */
int t5_relative_bucket(int64_t rel, int64_t num_buckets, int64_t max_distance);

#endif
