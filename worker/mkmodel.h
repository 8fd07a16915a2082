/* mkmodel.h: writing a random-weight Wan2.2 text-to-video model (prefix mk_).
 *
 * What it is: a complete Diffusers WanPipeline folder, in the layout of
 * Wan-AI/Wan2.2-T2V-A14B-Diffusers, at a tiny size: model_index.json (two experts,
 * boundary_ratio 0.875), transformer/ and transformer_2/ (WanTransformer3DModel), vae/
 * (AutoencoderKLWan, Wan2.1 layout, z_dim 16), text_encoder/ (UMT5EncoderModel), tokenizer/
 * (a unigram spiece.model trained here on a small embedded English corpus, plus
 * tokenizer_config.json) and scheduler/ (UniPCMultistepScheduler, flow_prediction, flow sigmas,
 * flow_shift 3.0). Configs are written with jansson, weights (F32) with st_write. Every value is a
 * function of the seed and the tensor's name (pl_noise), so a seed always gives the same files.
 * Weights are scaled like PyTorch's default initialisation (std 1/sqrt(fan_in)), so activations
 * stay O(1) and the decoded video is noise-like but not clamped to black/white.
 * What it is not: a trained model; its videos are structured noise. Nor a converter.
 * Tested by: tests/test_cli.sh (mkmodel, then generate on the result, checked with ffprobe).
 */
#ifndef MK_MKMODEL_H
#define MK_MKMODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"

typedef struct mk_preset {
    const char *name;
    /* transformer (both experts) */
    int64_t heads, head_dim, ffn_dim, layers, freq_dim, rope_max_seq_len;
    /* vae */
    int64_t vae_base_dim, vae_dim_mult[4], vae_num_res_blocks;
    /* text encoder */
    int64_t t5_d_model, t5_d_kv, t5_heads, t5_d_ff, t5_layers, t5_buckets;
    int tokenizer_vocab; /* pieces asked of the SentencePiece trainer */
} mk_preset;

/* The preset called name ("tiny"), or NULL. */
const mk_preset *mk_find_preset(const char *name);
/* Comma-separated preset names, for messages. */
const char *mk_preset_names(void);

/* Writes the model into dir (created if missing; existing files of the same names are replaced).
 * The caller decides whether a non-empty dir may be written to (mk_dir_is_empty). */
wf_status mk_write_model(const char *dir, const mk_preset *p, uint64_t seed, wf_err *err);

/* 1: dir is absent or an empty folder; 0: it holds something; -1: it exists and is no folder. */
int mk_dir_is_empty(const char *dir);

#endif
