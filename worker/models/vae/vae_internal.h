/* vae_internal.h: what vae_blocks.c, vae_edges.c, vae_decode.c and vae_encode.c share (prefix
 * vae_); not part of the VAE's interface (vae.h is).
 *
 * What it is: the state of one run of the encoder or decoder over a region (the whole frame, or one
 * tile) and a schedule of chunks:
 *   - role buffers: the few activation buffers every layer works in (the stream x and its
 *     partner y, the causal-conv input xc with its history frames in front, the shortcut r, the
 *     per-frame upsample u, the per-frame attention q/k/v/o, Wan2.2's block input s);
 *   - the cache slots: one per causal convolution, in Diffusers' traversal order (the running index
 *     feat_idx restarts at 0 every chunk), holding the last VAE_CACHE_T input frames seen (or one
 *     for the stride-2 down3d time conv), zero after vae_run_reset_cache.
 * A run first goes over its whole schedule "dry" (shapes only, nothing computed, no memory
 * touched): that records the largest size each role buffer and each slot needs. vae_run_alloc then
 * carves exactly that from the arena, and the real run follows. So the arena is sized by the code
 * that uses it, and a measuring arena (vae_*_arena_bytes) gets the exact peak without computing.
 * Every activation is backend memory (the arena's; a GPU's when the arena is on it): the code
 * touches it only through backend ops (wk_*), never with a host loop or memcpy, so the same code
 * runs on every backend. Host data crosses at the edges only: the latents or video in (wk_upload,
 * per chunk), the frames or latents out (wk_download, per chunk, into host buffers sized before
 * the loop), and the row-parallel decode's messages (cm_* calls on backend pointers: host memory
 * on the CPU backend).
 * What it is not: an allocator (everything is arena memory) or thread-safe (one run per thread).
 * Tested by: tests/test_vae.c (through vae_decode / vae_encode).
 */
#ifndef VAE_INTERNAL_H
#define VAE_INTERNAL_H

#include "vae.h"

enum vae_role {
    VAE_RX = 0,
    VAE_RY,
    VAE_RXC,
    VAE_RR,
    VAE_RU,
    VAE_RQ,
    VAE_RK,
    VAE_RV,
    VAE_RO,
    VAE_RS, /* Wan2.2: a residual block's input, kept for its shortcut */
    VAE_NROLES
};

typedef enum vae_slot_state {
    VAE_SLOT_EMPTY = 0, /* after a reset: no chunk has passed (Diffusers' None) */
    VAE_SLOT_LIVE,      /* holds the history (zeros where the sequence had none) */
} vae_slot_state;

typedef struct vae_slot {
    const char *name;        /* the conv weight's checkpoint name, for messages */
    int64_t frames, H, W, C; /* capacity and frame shape, fixed by the first (dry) use */
    float *data;             /* [frames, H, W, C] */
    vae_slot_state state;
} vae_slot;

/* Row-parallel decoding (vae_dist.c): this rank holds a band of rows of every activation (latent
 * rows [r0, r1) scaled to each resolution). Spatial convolutions see one halo row on each side,
 * taken from the neighbouring ranks (zeros at the global top and bottom, the conv's own padding);
 * the mid-block attention gathers its keys and values from every rank. NULL in a vae_run: the
 * single-rank code, unchanged. */
typedef struct vae_halo {
    cm_comm *comm;        /* MPI backend, host buffers; NULL in a measuring pass */
    int rank, size;       /* ours, and the ranks splitting the rows */
    int up, down;         /* ranks holding the rows just above / below ours; -1 at the edges */
    int64_t attn_keys;    /* pixels of a whole frame at the mid block (h w): keys per frame */
    const size_t *counts; /* [size]: bytes of each rank's keys of one frame (real runs only) */
} vae_halo;

typedef struct vae_run {
    wk_backend *be;
    wf_err *err;
    bool dry; /* shapes only */
    float *buf[VAE_NROLES];
    size_t cap[VAE_NROLES];  /* floats allocated per role */
    size_t need[VAE_NROLES]; /* floats the dry run asked for */
    vae_slot slots[VAE_MAX_SLOTS];
    int n_slots;   /* slots of the coder this run drives */
    int next_slot; /* Diffusers' feat_idx: reset to 0 at each chunk */
    size_t host_need; /* floats of the largest block of frames handed to the host (dry run) */
    vae_tap_fn tap;
    void *tap_ctx;
    int64_t chunk;   /* index of the running chunk (taps; DupUp3D's first chunk) */
    wk_tensor saved; /* Wan2.2: the running residual block's input (role s) */
    const vae_halo *halo; /* row-parallel decode (set after vae_run_init); NULL: one rank */
} vae_run;

/* A fresh run (dry, no buffers) over a coder with n_slots cached convolutions. */
void vae_run_init(vae_run *r, wk_backend *be, int n_slots, vae_tap_fn tap, void *tap_ctx,
                  wf_err *err);
/* Carves the role buffers and slots the dry run asked for from the arena; with a measuring
 * arena only the sizes are recorded. Then resets the cache and leaves dry mode. */
wf_status vae_run_alloc(vae_run *r, wk_arena *arena);
/* Zeros every slot (wk_fill) and marks it empty (Diffusers' clear_cache). States are reset in dry
 * mode too. */
wf_status vae_run_reset_cache(vae_run *r);
/* Called at the start of each chunk: feat_idx = 0. Checks that the previous chunk used every slot.
 */
void vae_run_begin_chunk(vae_run *r, int64_t chunk);

/* An f32 tensor header over backend memory of be (device be->device; the CPU for a NULL be, a
 * measuring pass): every view the VAE makes of its buffers goes through it. */
static inline wk_tensor vae_on(const wk_backend *be, wk_tensor t) {
    t.device = be ? be->device : WK_DEV_CPU;
    return t;
}

/* A view of role buffer `role` as an f32 tensor of the given shape (the dry run records the size;
 * the real run asserts it fits). */
wk_tensor vae_take(vae_run *r, int role, int ndim, const int64_t *shape);
wk_tensor vae_take5(vae_run *r, int role, int64_t T, int64_t H, int64_t W, int64_t C);
/* Swaps the x and y role buffers: after a layer wrote its output to y, it becomes the stream x. */
void vae_swap_xy(vae_run *r, wk_tensor *x);

/* The blocks; x is the stream, a [1, T, H, W, C] tensor over the x role buffer, replaced by the
 * block's output (also over the x buffer). */
wf_status vae_resblock_fwd(vae_run *r, const vae_resblock *b, wk_tensor *x);
wf_status vae_attn_fwd(vae_run *r, const vae_attn *a, wk_tensor *x);
wf_status vae_resample_fwd(vae_run *r, const vae_resample *s, wk_tensor *x);
/* mid block, then taps "<side>.mid_block" */
wf_status vae_mid_fwd(vae_run *r, const vae_coder *c, wk_tensor *x, const char *side);
/* the layers of c in order (taps each layer's `tap` name) */
wf_status vae_layers_fwd(vae_run *r, const vae_coder *c, wk_tensor *x);
/* The head: x = conv_out(SiLU(norm_out(x))), cached; taps "<side>.conv_out". */
wf_status vae_head_fwd(vae_run *r, const vae_coder *c, wk_tensor *x, const char *side);

/* Cached causal 3x3x3 conv whose input is written by the caller: vae_cconv_begin gives `in`, a view
 * of frames [hist, hist + T) of the xc buffer, to fill (or vae_cconv_fill fills it); vae_cconv_end
 * puts the slot's history in front, saves the new history in the slot and writes conv(x) into role
 * out_role. With a halo (row-parallel decode) each frame of `full` has a halo row above and below
 * its H rows: `in` is then no contiguous view (its data is NULL) and only vae_cconv_fill writes it;
 * vae_cconv_end fetches the halo rows of the new frames, and the slot keeps whole halo-extended
 * frames, so the history of later chunks has its halo rows too. */
typedef struct vae_cconv {
    vae_slot *slot;
    wk_tensor full; /* [1, hist + T, H, W, C]; with a halo [1, hist + T, 1 + H + 1, W, C] */
    wk_tensor in;   /* [1, T, H, W, C]: frames [hist, hist + T) of full (rows [1, H + 1)) */
    int64_t hist;
} vae_cconv;
wf_status vae_cconv_begin(vae_run *r, int64_t T, int64_t H, int64_t W, int64_t C, vae_cconv *cc);
/* in = SiLU(norm(x)) with gamma, or a copy of x when gamma is NULL. x [1, T, H, W, C]. */
wf_status vae_cconv_fill(vae_run *r, vae_cconv *cc, const wk_tensor *x, const wk_tensor *gamma);
wf_status vae_cconv_end(vae_run *r, vae_cconv *cc, const vae_conv *c, int out_role, wk_tensor *y);

/* ---- the decoder's chunk (vae_decode.c), shared with the row-parallel decode ---- */

typedef struct vae_dec_job {
    const vae_model *m;
    const vae_opts *o;
    const float *z; /* [z, T, h, w] */
    int64_t T, h, w;
    int64_t y0, x0, th, tw; /* the latent region decoded */
    float *store;           /* tiled: [F, th s/p, tw s/p, 3pp], unclamped (backend memory); NULL
                               when measuring */
    bool tiled;
    float *out; /* untiled: [3, F, s h, s w] (host) or NULL */
    vae_frames_fn on_frames;
    void *frames_ctx;
    float *host;     /* [n, H, W, 3]: the frames handed to on_frames (host, vae_host_reserve) */
    size_t host_cap; /* floats */
} vae_dec_job;

/* x = decoder(post_quant_conv(z[:, t0:t0+n, region])) before the clamp: [1, n', H, W, 3], or in
 * patches [1, n', H/p, W/p, 3pp] for a tile of a patchified (Wan2.2) VAE */
wf_status vae_decoder_chunk(vae_run *r, const vae_dec_job *j, int64_t t0, int64_t n, wk_tensor *x);
/* torch.clamp(x, -1, 1) in place (NaN stays NaN), on host memory */
void vae_clamp_pm1(float *x, size_t n);
/* j->host holds at least n floats (a malloc, before the loop; vae_host_release frees it). */
wf_status vae_host_reserve(vae_dec_job *j, size_t n, wf_err *err);
void vae_host_release(vae_dec_job *j);
/* Frames [f, f + n) of the video, x [1, n, H, W, 3] in backend memory (unclamped), to the job's
 * host outputs: downloaded into j->host, clamped and handed to on_frames; and, for j->out,
 * permuted to planar into `scratch` (backend memory of x's size), downloaded into out and clamped
 * there. Not on a dry run. */
wf_status vae_emit_frames(wk_backend *be, const vae_dec_job *j, const wk_tensor *x, float *scratch,
                          int64_t f, int64_t F, wf_err *err);
/* What a decode does with the chunk that holds video frames [f, f + n) of F (x [1, n, ...], as
 * vae_decoder_chunk gives it); called on dry runs too (r->dry), to take what it needs. */
typedef wf_status (*vae_emit_fn)(vae_run *r, void *ctx, wk_tensor *x, int64_t f, int64_t F);
/* The decode's chunk schedule: one latent frame per chunk (VAE_STREAM, as Diffusers) or all of
 * them at once, each chunk decoded (vae_decoder_chunk) and handed to on_chunk in frame order. */
wf_status vae_decode_chunks(vae_run *r, const vae_dec_job *j, vae_emit_fn on_chunk, void *ctx);

/* ---- row-parallel decode (vae_dist.c) ---- */

/* Rows 0 and H + 1 of frame [1 + H + 1, W, C] (backend memory): the neighbours' edge rows (their
 * rows next to ours; each a contiguous run of the frame, so nothing is packed), zeros (wk_fill) at
 * the global top / bottom. Collective with the two neighbours. */
wf_status vae_halo_rows(vae_run *r, float *frame, int64_t H, int64_t W, int64_t C);
/* recv [sum of counts] = every rank's send (counts bytes each, in rank order). Over r->halo. */
wf_status vae_halo_gather(vae_run *r, const float *send, float *recv);

/* y = conv(x) for a 1x1x1 conv (no cache); y over role out_role. */
wf_status vae_conv1x1(vae_run *r, const wk_tensor *x, const vae_conv *c, int out_role,
                      wk_tensor *y);

void vae_tap(vae_run *r, const char *stage, const wk_tensor *t);

/* ---- edges and tiles (pure data movement as backend ops, vae_edges.c) ---- */

/* A host planar source [C, T, H, W] (the pipeline's latents or video). */
typedef struct vae_planar {
    const float *data;
    int64_t C, T, H, W;
} vae_planar;

/* Upload, patchify p (1: none) and channels-last: dst [1, n, h, w, C p p] (backend memory, its
 * data set by the caller) = src frames [t0, t0 + n), region rows [y0, y0 + h) and columns
 * [x0, x0 + w) in patches: dst[t, y, x, (c p + r) p + q] = src[c, t0 + t, (y0 + y) p + q,
 * (x0 + x) p + r]. The region's row band of each channel and frame is uploaded (wk_upload) into
 * role `stage` [C, n, h p, W], cut to its columns (wk_copy_box) into role `crop` when it is
 * narrower than the source, and permuted (wk_permute). Dry: records the roles' sizes only. */
wf_status vae_planar_to_cl(vae_run *r, const vae_planar *src, int64_t t0, int64_t y0, int64_t x0,
                           int64_t p, wk_tensor *dst, int stage, int crop);
/* Unpatchify, channels-last: y [n, h p, w p, C] (any leading 1s) = x [n, h, w, C p p] with
 * y[t, i p + q, j p + r, c] = x[t, i, j, (c p + r) p + q] (one wk_permute). */
wf_status vae_unpatchify(wk_backend *be, wk_tensor *y, const wk_tensor *x, int64_t n, int64_t h,
                         int64_t w, int64_t C, int64_t p, wf_err *err);
/* dst[c, t0 + t, :, :] = x[t, :, :, c] for x [n, h, w, C] in backend memory and a host dst
 * [C, Td, h, w]: permuted (wk_permute) into scratch (backend memory, n h w C floats), then
 * downloaded (wk_download: one block, or one per channel when n < Td). */
wf_status vae_cl_to_host_planar(wk_backend *be, const wk_tensor *x, int64_t n, int64_t h,
                                int64_t w, int64_t C, float *scratch, float *dst, int64_t Td,
                                int64_t t0, wf_err *err);

/* One tile's output, channels-last [T, h, w, C] in backend memory. */
typedef struct vae_tile {
    float *data;
    int64_t h, w;
} vae_tile;

/* Diffusers' blend_v / blend_h / crop-and-concatenate over a grid of tiles (rows x cols,
 * row-major), all with T frames and C channels; tiles are modified in place in Diffusers' order
 * (wk_blend). Assemble writes frames [f0, f0 + n) of the assembled, cropped [out_h, out_w] result
 * into dst (backend memory, channels-last [n, out_h, out_w, C]) with one wk_copy_box per tile.
 * blend_* are the blend extents, stride_* the kept piece sizes. */
wf_status vae_tiles_blend(wk_backend *be, vae_tile *tiles, int rows, int cols, int64_t T,
                          int64_t C, int64_t blend_h, int64_t blend_w, wf_err *err);
wf_status vae_tiles_assemble(wk_backend *be, const vae_tile *tiles, int rows, int cols, int64_t T,
                             int64_t C, int64_t stride_h, int64_t stride_w, int64_t out_h,
                             int64_t out_w, int64_t f0, int64_t n, float *dst, wf_err *err);

#endif
