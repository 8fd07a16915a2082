/* vae_encode.c: AutoencoderKLWan._encode and tiled_encode, then the posterior's mode (see vae.h;
 * wan_spec.md §2.4/§2.5 encoder, §2.6 chunking).
 *
 * Chunks: frame 0 alone, then frames [1 + 4(k-1), 1 + 4k) (frames past the last whole chunk are
 * dropped, as Diffusers drops them), through
 *   (patchify ->) conv_in -> down_blocks -> mid_block -> norm_out, SiLU, conv_out -> quant_conv
 * with one cache shared by the chunks. quant_conv is a 1x1x1 conv, so only its first z rows are
 * computed: they are the posterior mean, DiagonalGaussianDistribution.mode() (the log-variance
 * half, and its clamp, do not affect the mode). Tiled: each tile is encoded over all chunks with
 * its own cache, then the latent tiles are blended and cropped (Diffusers' tiled_encode).
 * The video is uploaded chunk by chunk (vae_planar_to_cl) and the mean downloaded chunk by chunk
 * (vae_cl_to_host_planar), so everything between is backend ops on any backend.
 * Not here: the blocks (vae_blocks.c), the decoder (vae_decode.c).
 * Tested by: tests/test_vae.c.
 */
#include <stdlib.h>
#include <string.h>

#include "vae_internal.h"

int64_t vae_encode_used_frames(const vae_model *m, int64_t F) {
    (void)m;
    return 1 + 4 * ((F - 1) / 4);
}

int64_t vae_encoded_frames(const vae_model *m, int64_t F) {
    return 1 + (4 / m->s_t) * ((F - 1) / 4);
}

int64_t vae_encoded_size(const vae_model *m, int64_t H) {
    H /= m->p;
    for (int64_t f = m->s / m->p; f > 1; f /= 2) H /= 2;
    return H;
}

typedef struct enc_job {
    const vae_model *m;
    const vae_opts *o;
    const float *video; /* [3, F, H, W] */
    int64_t F, H, W;
    int64_t y0, x0, th, tw; /* the region encoded, in patches (pixels when p = 1) */
    int64_t Tl;             /* latent frames */
    float *store;           /* tiled: [Tl, lh, lw, z]; NULL in a measuring pass */
    bool tiled;
    float *mean;    /* untiled: [z, Tl, h, w] */
    int64_t lh, lw; /* latent size of the region (set by the dry run) */
} enc_job;

/* x = mean of quant_conv(encoder(video[:, f0:f0+n, region])), [1, n', h, w, z] */
static wf_status encoder_chunk(vae_run *r, enc_job *j, int64_t f0, int64_t n, wk_tensor *x) {
    wf_status st = WF_OK;
    const vae_model *m = j->m;
    const vae_coder *e = &m->w.enc;
    const int64_t zc = m->cfg.z_dim, cin = m->cfg.in_channels;
    wk_tensor y;
    vae_cconv cc;
    WF_TRY(vae_cconv_begin(r, n, j->th, j->tw, cin, &cc));
    const vae_planar v = {.data = j->video, .C = 3, .T = j->F, .H = j->H, .W = j->W}; /* RGB */
    WF_TRY(vae_planar_to_cl(r, &v, f0, j->y0, j->x0, m->p, &cc.in, VAE_RY,
                            VAE_RX)); /* upload, patchify: [1, n, H/p, W/p, 3pp] */
    WF_TRY(vae_cconv_end(r, &cc, &e->conv_in, VAE_RY, &y)); /* [1, n, H, W, C0] */
    *x = y;
    vae_swap_xy(r, x);
    vae_tap(r, "enc.conv_in", x);
    WF_TRY(vae_layers_fwd(r, e, x)); /* [1, n', h, w, C] */
    WF_TRY(vae_mid_fwd(r, e, x, "enc"));
    WF_TRY(vae_head_fwd(r, e, x, "enc")); /* [1, n', h, w, 2z] */
    vae_conv mean_rows = m->w.quant;   /* rows [0, z) */
    mean_rows.w.shape[0] = zc;
    mean_rows.b.shape[0] = zc;
    WF_TRY(vae_conv1x1(r, x, &mean_rows, VAE_RY, &y)); /* [1, n', h, w, z] */
    *x = y;
    vae_swap_xy(r, x);
out:
    return st;
}

static wf_status run_schedule(vae_run *r, enc_job *j) {
    wf_status st = WF_OK;
    const bool stream = j->o->schedule == VAE_STREAM;
    const int64_t used = vae_encode_used_frames(j->m, j->F), K = (used - 1) / 4;
    int64_t t = 0;
    for (int64_t c = 0; c < (stream ? 1 + K : 1); c++) {
        vae_run_begin_chunk(r, c);
        const int64_t f0 = !stream || c == 0 ? 0 : 1 + 4 * (c - 1);
        const int64_t n = !stream ? used : (c == 0 ? 1 : 4);
        wk_tensor x;
        WF_TRY(encoder_chunk(r, j, f0, n, &x));
        const int64_t nt = x.shape[1], h = x.shape[2], w = x.shape[3], zc = j->m->cfg.z_dim;
        WF_ASSERT(t + nt <= j->Tl);
        wk_tensor scratch = vae_take5(r, VAE_RY, nt, h, w, zc); /* the planar permute's */
        if (r->dry) {
            j->lh = h;
            j->lw = w;
        } else if (j->tiled) {
            WF_TRY(wk_copy(r->be, j->store + (size_t)(t * h * w * zc), x.data, wk_tensor_nbytes(&x),
                           r->err));
        } else { /* mean[:, t:t+nt] (host) */
            WF_TRY(vae_cl_to_host_planar(r->be, &x, nt, h, w, zc, scratch.data, j->mean, j->Tl, t,
                                         r->err));
        }
        t += nt;
    }
    WF_ASSERT(t == j->Tl);
out:
    return st;
}

static wf_status encode_region(wk_backend *be, wk_arena *arena, enc_job *j, vae_tap_fn tap,
                               void *tap_ctx, wf_err *err) {
    wf_status st;
    vae_run r;
    vae_run_init(&r, be, j->m->w.enc.n_slots, tap, tap_ctx, err);
    if ((st = run_schedule(&r, j))) return st; /* dry: sizes */
    if ((st = vae_run_alloc(&r, arena))) return st;
    if (r.dry) return WF_OK; /* measuring arena */
    return run_schedule(&r, j);
}

static bool use_tiling(const vae_opts *o, int64_t H, int64_t W) {
    return o->tiling.enabled && (W > o->tiling.sample_min_w || H > o->tiling.sample_min_h);
}

static wf_status tiled_encode(wk_backend *be, wk_arena *arena, enc_job *j, wf_err *err) {
    wf_status st = WF_OK;
    const vae_model *m = j->m;
    const vae_tiling *t = &j->o->tiling;
    /* Diffusers tiles the patchified input with the pixel tile sizes as they are, and divides by
     * the encoder's own factor s / p for the latent sizes */
    const int64_t e = m->s / m->p, zc = m->cfg.z_dim, Hp = j->H / m->p, Wp = j->W / m->p;
    const int64_t lat_h = Hp / e, lat_w = Wp / e;
    const int64_t lmin_h = t->sample_min_h / e, lmin_w = t->sample_min_w / e;
    const int64_t lstr_h = t->sample_stride_h / e, lstr_w = t->sample_stride_w / e;
    const int rows = (int)((Hp + t->sample_stride_h - 1) / t->sample_stride_h);
    const int cols = (int)((Wp + t->sample_stride_w - 1) / t->sample_stride_w);
    const bool measuring = wk_arena_is_measuring(arena);
    /* the tile table is host memory (read and written here; the arena may be a device's) */
    vae_tile *tiles = calloc((size_t)rows * (size_t)cols, sizeof *tiles);
    float *frame = NULL, *planar = NULL;
    if (!tiles) {
        st = wf_fail(err, WF_ENOMEM, "vae tiled encode: out of memory for %d x %d tiles", rows,
                     cols);
        goto out;
    }
    for (int pass = 0; pass < 2; pass++) /* 0: the stores (sizes from dry runs); 1: the encodes */
        for (int i = 0; i < rows; i++)
            for (int k = 0; k < cols; k++) {
                j->y0 = i * t->sample_stride_h;
                j->x0 = k * t->sample_stride_w;
                j->th = Hp - j->y0 < t->sample_min_h ? Hp - j->y0 : t->sample_min_h;
                j->tw = Wp - j->x0 < t->sample_min_w ? Wp - j->x0 : t->sample_min_w;
                const size_t mark = wk_arena_mark(arena);
                if (pass == 0) {
                    vae_run r;
                    vae_run_init(&r, be, m->w.enc.n_slots, NULL, NULL, err);
                    st = run_schedule(&r, j); /* dry: the tile's size */
                    float *store = NULL;
                    if (!st)
                        st = wk_arena_alloc(arena,
                                            (size_t)(j->Tl * j->lh * j->lw * zc) * sizeof(float),
                                            (void **)&store, err);
                    if (!st && !measuring)
                        tiles[i * cols + k] = (vae_tile){.data = store, .h = j->lh, .w = j->lw};
                } else {
                    j->store = measuring ? NULL : tiles[i * cols + k].data;
                    st = encode_region(be, arena, j, NULL, NULL, err);
                    wk_arena_reset(arena, mark);
                }
                if (st) {
                    wf_err_prefix(err, "vae tiled encode, tile (%d, %d): ", i, k);
                    goto out;
                }
            }
    const size_t lat = (size_t)(j->Tl * lat_h * lat_w * zc); /* floats of the latent */
    WF_TRY(wk_arena_alloc(arena, lat * sizeof(float), (void **)&frame, err));
    WF_TRY(wk_arena_alloc(arena, lat * sizeof(float), (void **)&planar, err));
    if (measuring) goto out;
    WF_TRY(vae_tiles_blend(be, tiles, rows, cols, j->Tl, zc, lmin_h - lstr_h, lmin_w - lstr_w,
                           err));
    WF_TRY(vae_tiles_assemble(be, tiles, rows, cols, j->Tl, zc, lstr_h, lstr_w, lat_h, lat_w, 0,
                              j->Tl, frame, err)); /* [Tl, h, w, z] */
    wk_tensor fr = vae_on(be, wk_tensor_4d(WK_F32, frame, j->Tl, lat_h, lat_w, zc));
    WF_TRY(vae_cl_to_host_planar(be, &fr, j->Tl, lat_h, lat_w, zc, planar, j->mean, j->Tl, 0,
                                 err)); /* [z, Tl, h, w] */
out:
    free(tiles);
    return st;
}

wf_status vae_encode(const vae_model *m, wk_backend *be, wk_arena *arena, const vae_opts *o,
                     const float *video, int64_t F, int64_t H, int64_t W, float *mean,
                     vae_tap_fn tap, void *tap_ctx, wf_err *err) {
    if (F < 1 || H < 1 || W < 1)
        return wf_fail(err, WF_EINVAL, "vae encode: video [%lld, %lld, %lld, %lld] is empty",
                       (long long)m->cfg.in_channels, (long long)F, (long long)H, (long long)W);
    if (H % m->p || W % m->p)
        return wf_fail(err, WF_EINVAL,
                       "vae encode: height and width (%lld x %lld) must be multiples of the patch "
                       "size %lld",
                       (long long)H, (long long)W, (long long)m->p);
    wf_status st = vae_check_opts(m, o, err);
    if (st) return st;
    if (tap && be->device != WK_DEV_CPU) /* taps read their tensors on the host */
        return wf_fail(err, WF_EUNSUPPORTED, "vae encode: debugging taps run on the CPU backend "
                                             "only (this backend is %s)", be->name);
    const size_t mark = wk_arena_mark(arena);
    enc_job j = {.m = m,
                 .o = o,
                 .video = video,
                 .F = F,
                 .H = H,
                 .W = W,
                 .th = H / m->p,
                 .tw = W / m->p,
                 .Tl = vae_encoded_frames(m, F),
                 .mean = mean};
    if (use_tiling(o, H, W)) {
        j.tiled = true;
        st = tiled_encode(be, arena, &j, err);
    } else {
        st = encode_region(be, arena, &j, tap, tap_ctx, err);
    }
    wk_arena_reset(arena, mark);
    return st;
}

wf_status vae_encode_arena_bytes(const vae_model *m, int64_t F, int64_t H, int64_t W,
                                 const vae_opts *o, size_t *bytes, wf_err *err) {
    wk_arena a;
    wk_arena_init_measure(&a, "vae encode activations");
    wf_status st = vae_encode(m, NULL, &a, o, NULL, F, H, W, NULL, NULL, NULL, err);
    *bytes = st ? 0 : a.peak;
    return st;
}
