/* vae.h: the Wan video VAE (Diffusers' AutoencoderKLWan: the Wan2.1 layout, and the Wan2.2 one of
 * TI2V-5B) on a wk backend (prefix vae_).
 *
 * What it is: config + weights struct + decode/encode, as ../shared/wan_spec.md §2 describes the
 * model (building blocks §2.2, Wan2.1 structure §2.4, Wan2.2 structure §2.5 (residual blocks with
 * AvgDown3D/DupUp3D shortcuts, patchify 2), feature cache and chunking §2.6, frames §2.7).
 *   - Weights are views into the mapped checkpoint (f32, bf16, f16 or fp8 storage; nothing is
 *     copied). Every tensor is found by name through one table (vae_load.c) and its shape checked
 *     exactly against config.json; tensors the config does not use are refused. Diffusers names and
 *     the official Wan names of the Wan2.1 layout (Wan2.1_VAE.pth / ComfyUI's
 *     wan_2.1_vae.safetensors) both load; the Wan2.2 layout loads from Diffusers names only.
 *   - Activations are channels-last (1, T, H, W, C) everywhere inside; the edges are the pipeline's
 *     layouts: latents [z, T, h, w], video [3, F, H, W] in [-1, 1].
 *   - Decoding streams: one latent frame per chunk, each causal convolution keeping its last two
 *     input frames in a named cache slot (arena memory, reset explicitly), as Diffusers' _decode
 *     does; finished frames go to a callback as each chunk completes, so memory does not grow with
 *     the video length. VAE_WHOLE runs the whole video as one chunk (the same maths, another
 *     summation order), for testing.
 *   - Encoding: frame 0 alone, then 4 frames per chunk with the shared cache; the result is the
 *     posterior mean (mode), the first z_dim channels of quant_conv's output.
 *   - Spatial tiling with Diffusers' enable_tiling semantics (tile_sample_min_*,
 *     tile_sample_stride_*, the latent tile sizes derived from them, blend_v/blend_h applied in
 *     place in the same order), for both directions. Tiled decoding keeps every tile's frames
 *     until all tiles are done (as Diffusers does), so its memory grows with the video length.
 *   - Every activation comes from one arena sized by a measuring pass over the same code
 *     (vae_decode_arena_bytes, vae_encode_arena_bytes); nothing else is allocated but one host
 *     buffer per decode for the frames handed to on_frames (a chunk's worth, before the loop).
 *   - Backend ops only: the arena is the backend's memory (wk_arena_init_on for a GPU backend;
 *     weights moved there by vae_upload) and the code touches activations only through ops. The
 *     host arguments (z, video, out, mean, the callback's frames) are copied in and out chunk by
 *     chunk (wk_upload / wk_download); on the CPU backend these are memcpys.
 *   - Row-parallel decoding over the ranks of a communicator (vae_decode_dist): each rank decodes a
 *     band of latent rows with one-row halos at every spatial convolution and a gathered attention,
 *     equal to the one-rank decode; frames are gathered to one writer rank.
 * What it is not: batched (B = 1), or a sampler of the posterior (the pipelines use its mode).
 *   The latent (de)normalisation with latents_mean/std is the pipeline's job (§2.3); the functions
 *   for it are here so that it is written once.
 * Tested by: tests/test_vae.c against Diffusers fp32 outputs (tests/fixtures/vae, made by
 *   make_vae_fixtures.py): decode of 1-4 latent frames, encode of 1/5/9 frames, tiled both ways,
 *   streaming == whole-video, 8-bit frames, official names, broken checkpoints; a Wan2.2-layout
 *   case. tests/test_vae_dist.c (under mpirun, 1-4 ranks): the row-parallel decode equals
 *   vae_decode.
 *
 * Shape vocabulary: z latent channels (z_dim), T latent frames, h w latent height/width, F video
 * frames, H W pixel height/width, C channels of an activation, s_t temporal factor (frames per
 * latent frame after the first), s spatial factor.
 */
#ifndef VAE_VAE_H
#define VAE_VAE_H

#include <stdbool.h>
#include <stdint.h>

#include "arena.h"
#include "backend.h"
#include "weights.h"
#include "comm.h"
#include "diffusers.h"
#include "safetensors.h"

#define VAE_CACHE_T 2     /* frames of history a 3x3x3 causal conv keeps (Diffusers CACHE_T) */
#define VAE_MAX_SLOTS 512 /* cached convolutions of one encoder or decoder */

typedef struct vae_conv {
    wk_tensor w; /* [Cout, Cin, kT, kH, kW] (3-D conv) or [Cout, Cin, kH, kW] (2-D) */
    wk_tensor b; /* [Cout] */
} vae_conv;

typedef struct vae_resblock { /* WanResidualBlock(in, out) */
    int64_t in, out;
    wk_tensor norm1;   /* [in, 1, 1, 1] */
    vae_conv conv1;    /* [out, in, 3, 3, 3] */
    wk_tensor norm2;   /* [out, 1, 1, 1] */
    vae_conv conv2;    /* [out, out, 3, 3, 3] */
    vae_conv shortcut; /* [out, in, 1, 1, 1] when in != out; w.data NULL otherwise */
} vae_resblock;

typedef struct vae_attn { /* WanAttentionBlock(C): one head, per frame */
    int64_t dim;
    wk_tensor norm; /* [C, 1, 1] */
    vae_conv qkv;   /* [3C, C, 1, 1]: rows q | k | v */
    vae_conv proj;  /* [C, C, 1, 1] */
} vae_attn;

typedef enum vae_resample_mode { VAE_UP2D = 0, VAE_UP3D, VAE_DOWN2D, VAE_DOWN3D } vae_resample_mode;

typedef struct vae_resample { /* WanResample(dim, mode, out_dim) */
    vae_resample_mode mode;
    int64_t dim, out_dim; /* out_dim: dim // 2 when upsampling (Wan2.1), else dim */
    vae_conv conv;        /* resample.1: [out_dim, dim, 3, 3] */
    vae_conv time_conv;   /* up3d [2 dim, dim, 3, 1, 1]; down3d [dim, dim, 3, 1, 1]; else NULL */
} vae_resample;

/* Wan2.2's parameter-free block shortcuts (wan_spec.md §2.5): AvgDown3D averages groups of
 * (time, space)-folded channels, DupUp3D repeats channels and unfolds them into time and space
 * (dropping ft - 1 leading frames on the first chunk). */
typedef enum vae_shortcut_kind { VAE_SC_NONE = 0, VAE_SC_AVGDOWN, VAE_SC_DUPUP } vae_shortcut_kind;

typedef struct vae_shortcut {
    vae_shortcut_kind kind;
    int64_t in, out; /* channels */
    int64_t ft, fs;  /* temporal and spatial factors */
} vae_shortcut;

/* One layer, in execution order: an entry of encoder.down_blocks / decoder.up_blocks.i.{resnets.j,
 * upsamplers.0} (Wan2.1, flat in both namings), or of a Wan2.2 residual block
 * ({down,up}_blocks.i.{resnets.j, downsampler, upsampler}). */
typedef struct vae_layer {
    bool is_resample;
    vae_resblock res;
    vae_resample rs;
    bool save_input;       /* Wan2.2: first layer of a residual block: keep its input */
    vae_shortcut shortcut; /* Wan2.2: last layer of the block: add the shortcut of that input */
    char name[64];         /* Diffusers prefix without the dot: "decoder.up_blocks.1.resnets.0" */
    char tap[32];          /* stage name after this layer ("dec.up_blocks.1"), or "" */
} vae_layer;

typedef struct vae_coder { /* WanEncoder3d / WanDecoder3d */
    vae_conv conv_in;      /* [C0, Cin, 3, 3, 3] */
    vae_layer *layers;
    int n_layers;
    vae_resblock mid_res[2]; /* mid_block.resnets.{0,1} */
    vae_attn mid_attn;       /* mid_block.attentions.0 */
    wk_tensor norm_out;      /* [C, 1, 1, 1] */
    vae_conv conv_out;       /* [Cout, C, 3, 3, 3] */
    int n_slots;             /* cached convolutions (cache slots a run needs) */
} vae_coder;

typedef struct vae_weights {
    vae_coder enc, dec;
    vae_conv quant;      /* quant_conv [2z, 2z, 1, 1, 1] */
    vae_conv post_quant; /* post_quant_conv [z, z, 1, 1, 1] */
} vae_weights;

typedef enum vae_names { VAE_NAMES_DIFFUSERS = 0, VAE_NAMES_OFFICIAL } vae_names;

typedef struct vae_model {
    dfs_vae_config cfg;
    vae_weights w;
    vae_names names;     /* which naming the checkpoint uses */
    st_checkpoint *ckpt; /* owns the mapping the weights point into */
    uint64_t weight_bytes;
    int64_t s_t, s; /* temporal and spatial factors (scale_factor_temporal/spatial) */
    int64_t p;      /* patch size: 1 (Wan2.1) or 2 (Wan2.2: 3 RGB channels <-> 12) */
    wk_weight *wlist;      /* every bound weight, for vae_upload */
    size_t n_wlist;
    wk_weights_block dev;  /* the weights' block on a GPU backend (vae_upload) */
} vae_model;

/* Loads `dir` (a Diffusers vae/ folder: config.json + safetensors). Errors name the file, the
 * tensor and the expected and actual shapes, or the first unused tensor. */
wf_status vae_load(vae_model **out, const char *dir, wf_err *err);
void vae_free(vae_model **m);
/* Moves the weights into one block of be's memory (weights.h; nothing moves on the CPU). Once,
 * before any decode or encode on be. */
wf_status vae_upload(vae_model *m, wk_backend *be, wf_err *err);

/* ---- options ---- */

/* Diffusers' enable_tiling parameters, in pixels. Tiling is used when enabled and the input is
 * larger than one tile: latent w > sample_min_w / s or h > sample_min_h / s (decode), pixel
 * W > sample_min_w or H > sample_min_h (encode). Each value must be a positive multiple of the
 * spatial factor s, with min >= stride (vae_check_opts). With patchify (Wan2.2), Diffusers cuts the
 * encoder's tiles from the patchified input with these sizes as they are (so they cover twice as
 * many pixels), and wanfarm does the same. */
typedef struct vae_tiling {
    bool enabled;
    int64_t sample_min_h, sample_min_w;       /* tile_sample_min_height/width; Diffusers: 256 */
    int64_t sample_stride_h, sample_stride_w; /* tile_sample_stride_height/width; Diffusers: 192 */
} vae_tiling;

typedef enum vae_schedule {
    VAE_STREAM = 0, /* Diffusers' chunks: 1 latent frame per decode chunk; 1, then 4 video frames
                       per encode chunk. Memory does not grow with the video length. */
    VAE_WHOLE,      /* everything in one chunk: a check of the cache logic, memory grows with T */
} vae_schedule;

typedef struct vae_opts {
    vae_schedule schedule;
    vae_tiling tiling;
} vae_opts;

/* {VAE_STREAM, tiling off}; vae_tiling_diffusers() gives enable_tiling()'s defaults, enabled. */
vae_opts vae_opts_default(void);
vae_tiling vae_tiling_diffusers(void);
wf_status vae_check_opts(const vae_model *m, const vae_opts *o, wf_err *err);

/* ---- shapes ---- */

/* Video frames of a decode of T latent frames: 1 + s_t (T - 1). */
int64_t vae_decoded_frames(const vae_model *m, int64_t T);
/* Video frames an encode uses (Diffusers drops those past the last whole 4-frame chunk):
 * 1 + 4 ((F - 1) / 4); and the latent frames it gives: 1 + (4 / s_t) ((F - 1) / 4). */
int64_t vae_encode_used_frames(const vae_model *m, int64_t F);
int64_t vae_encoded_frames(const vae_model *m, int64_t F);
/* Latent height (or width) of an encode of H pixels: H / p after patchify, then each of the
 * log2(s / p) downsamplings gives floor(H / 2) (ZeroPad (0, 1) then a 3x3 stride-2 conv). */
int64_t vae_encoded_size(const vae_model *m, int64_t H);

/* ---- running ---- */

/* Called after each stage with its output, channels-last [1, T, H, W, C], for debugging a mismatch:
 * "dec.conv_in", "dec.mid_block", "dec.up_blocks.i", "dec.conv_out" (before the clamp, and before
 * unpatchify); "enc.conv_in", "enc.down_blocks.k" (Wan2.1: every flat layer k; Wan2.2: every block),
 * "enc.mid_block", "enc.conv_out" (2z channels). chunk counts from 0 (VAE_WHOLE: always 0, with
 * every frame). Not called when tiling is in use. Taps run on the CPU backend only (t is host
 * memory there); vae_decode / vae_encode refuse a tap on any other backend (WF_EUNSUPPORTED). */
typedef void (*vae_tap_fn)(void *ctx, const char *stage, int64_t chunk, const wk_tensor *t);

/* Finished frames of a decode: frames [first, first + n) of the video as rgb [n, H, W, 3]
 * (channels-last, interleaved RGB), f32 in [-1, 1] (clamped). Valid during the call only. A
 * failure status stops the decode and is returned by vae_decode (err says why). */
typedef wf_status (*vae_frames_fn)(void *ctx, int64_t first, int64_t n, int64_t H, int64_t W,
                                   const float *rgb, wf_err *err);

/* Exact arena bytes of vae_decode / vae_encode with these sizes and options (a measuring pass
 * over the same allocation code). */
wf_status vae_decode_arena_bytes(const vae_model *m, int64_t T, int64_t h, int64_t w,
                                 const vae_opts *o, size_t *bytes, wf_err *err);
wf_status vae_encode_arena_bytes(const vae_model *m, int64_t F, int64_t H, int64_t W,
                                 const vae_opts *o, size_t *bytes, wf_err *err);

/* video = clamp(decode(post_quant_conv(z)), -1, 1). z [z, T, h, w] (VAE space: de-normalise the
 * DiT's latents first with vae_latents_denormalize). out [3, F, H, W] (F = vae_decoded_frames,
 * H = s h, W = s w) may be NULL; on_frames may be NULL. z and out are host memory. Activations from
 * `arena`, be's memory (reset to its mark on return). */
wf_status vae_decode(const vae_model *m, wk_backend *be, wk_arena *arena, const vae_opts *o,
                     const float *z, int64_t T, int64_t h, int64_t w, float *out,
                     vae_frames_fn on_frames, void *frames_ctx, vae_tap_fn tap, void *tap_ctx,
                     wf_err *err);

/* ---- row-parallel decode (vae_dist.c) ---- */

/* Decodes z [z_dim, T, h, w] (the same full latents on every rank of comm) over comm's ranks: rank
 * r decodes latent rows [r0, r1) (vae_dist_rows), exchanging one-row halos with its neighbours
 * before every spatial convolution (and keeping halo rows in the causal caches), gathering the
 * mid-block attention's keys/values, so the frames equal vae_decode's (same schedule) within float
 * rounding. Decoded frames are gathered chunk by chunk to rank `writer` of comm, which alone gets
 * on_frames / out (the others pass NULL). Collective over comm. comm NULL or size 1: vae_decode.
 * Both layouts (Wan2.1, and Wan2.2 with patchify and DupUp3D, whose row bands map to row bands) and
 * both schedules (VAE_STREAM; VAE_WHOLE, the same maths in one chunk) are supported; tiling is
 * refused (WF_EINVAL) when comm has more than one rank, as are more ranks than latent rows and a
 * writer outside comm; comm carries buffers of be's memory (MPI for the CPU; NCCL, or MPI through
 * host memory, for a GPU: cm_enable_device). Input errors are found by the
 * same checks on every rank before any communication, so every rank returns the same status. After
 * the arena is carved, and after each chunk, the ranks agree on a status (an all-reduce): a rank
 * whose arena is too small, or the writer's failing on_frames, makes every rank return that status
 * with its message ("rank k of n failed: ..."). A failing op in the middle of a chunk on one rank (a
 * device fault) is not recovered from: the others wait in the next exchange (as comm.h says, the
 * communicator is not fault tolerant). */
wf_status vae_decode_dist(const vae_model *m, wk_backend *be, wk_arena *arena, const vae_opts *o,
                          cm_comm *comm, int writer, const float *z, int64_t T, int64_t h,
                          int64_t w, float *out, vae_frames_fn on_frames, void *frames_ctx,
                          wf_err *err);
/* Arena bytes rank `rank` of `nranks` needs for it (measuring pass, exact; includes the gather
 * buffers). Every rank reserves the writer's frame buffer (inside its y role buffer, which is free
 * between chunks), so the size does not depend on which rank writes. nranks 1:
 * vae_decode_arena_bytes. */
wf_status vae_decode_dist_arena_bytes(const vae_model *m, int64_t T, int64_t h, int64_t w,
                                      const vae_opts *o, int nranks, int rank, size_t *bytes,
                                      wf_err *err);
/* Latent rows of rank r of n: a balanced split (the first h % n ranks get one more row). */
void vae_dist_rows(int64_t h, int n, int r, int64_t *r0, int64_t *r1);

/* mean [z, Tl, h, w] = mode of the posterior of video [3, F, H, W] (values in [-1, 1]), with
 * Tl = vae_encoded_frames(F), h = vae_encoded_size(H), w = vae_encoded_size(W). With patchify, H
 * and W must be multiples of p. */
wf_status vae_encode(const vae_model *m, wk_backend *be, wk_arena *arena, const vae_opts *o,
                     const float *video, int64_t F, int64_t H, int64_t W, float *mean,
                     vae_tap_fn tap, void *tap_ctx, wf_err *err);

/* ---- the pipeline's edges ---- */

/* z [z, n] in place, per channel c: z = z / (1 / std[c]) + mean[c], in f32 exactly as WanPipeline
 * writes it (latents / latents_std + latents_mean with latents_std = 1 / std). n = T h w. */
void vae_latents_denormalize(const dfs_vae_config *c, float *z, int64_t n);
/* The inverse the I2V pipelines apply to an encoded image: z = (z - mean[c]) * (1 / std[c]). */
void vae_latents_normalize(const dfs_vae_config *c, float *z, int64_t n);

/* 8-bit pixels as WanPipeline(output_type="pil") makes them: v = clamp(x * 0.5 + 0.5, 0, 1), then
 * round-half-to-even(v * 255), elementwise (the layout is kept; NaN gives 0). */
void vae_to_rgb8(const float *x, size_t n, uint8_t *out);
/* The same from the planar decode output [3, F, H, W] into interleaved frames [F, H, W, 3]. */
void vae_to_rgb8_planar(const float *x, int64_t F, int64_t H, int64_t W, uint8_t *out);

#endif
