/* bench_dit_ckpt.h: the random-weight DiT checkpoint the DiT benches load (prefix bdc_).
 *
 * What it is: every tensor of WanTransformer3DModel (no image branch) under its Diffusers name, at
 * the Wan2.1-1.3B block width (the constants below), with --layers blocks, written as Diffusers'
 * save_pretrained would: config.json (every __init__ argument) and
 * diffusion_pytorch_model.safetensors. Weights are N(0, 0.02) (norm gains 1 + N(0, 0.02)), seeded by
 * the tensor's name, stored in the requested dtype except Diffusers' fp32-kept modules
 * (time_embedder, scale_shift_table, norm2), which stay f32.
 * Used by: bench_dit (against Diffusers on the same folder) and bench_dist (Ulysses breakdown).
 */
#ifndef BDC_BENCH_DIT_CKPT_H
#define BDC_BENCH_DIT_CKPT_H

#include "dtype.h"

/* Wan2.1-1.3B's block width (transformer/config.json there). */
enum { BDC_NHEADS = 12, BDC_HDIM = 128, BDC_DIM = BDC_NHEADS * BDC_HDIM, BDC_CIN = 16,
       BDC_COUT = 16, BDC_TEXT_DIM = 4096, BDC_FREQ_DIM = 256, BDC_FFN_DIM = 8960, BDC_PT = 1,
       BDC_PH = 2, BDC_PW = 2, BDC_ROPE_MAX = 1024 };
#define BDC_WEIGHT_STD 0.02

/* Writes config.json and diffusion_pytorch_model.safetensors into dir (which exists). Returns 0,
 * or 1 after printing why, prefixed with `who`. */
int bdc_write(const char *dir, int layers, wk_dtype wdt, const char *who);

/* The block width (heads of BDC_HDIM, FFN); everything else as above. */
typedef struct bdc_width {
    const char *name;
    int heads, ffn;
} bdc_width;
extern const bdc_width BDC_WAN21_13B; /* 12 heads (D 1536), FFN 8960 */
extern const bdc_width BDC_A14B;      /* 40 heads (D 5120), FFN 13824: Wan2.2-A14B's experts */
int bdc_write_width(const char *dir, int layers, wk_dtype wdt, const bdc_width *w,
                    const char *who);

#endif
