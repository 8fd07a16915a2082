/* vae_decode.c: AutoencoderKLWan._decode and tiled_decode (see vae.h), written to read like
 * Diffusers (wan_spec.md §2.4/§2.5 decoder, §2.6 chunking, §2.7 frames).
 *
 * A region (the whole latent, or one tile) is decoded by a run (vae_internal.h): the schedule of
 * chunks goes once dry to size the buffers and cache slots, then for real. Per chunk:
 *   post_quant_conv -> conv_in -> mid_block -> up_blocks -> norm_out, SiLU, conv_out
 *   (-> unpatchify, Wan2.2)
 * and the chunk's frames are emitted: clamped to [-1, 1] and handed to the caller (untiled), or
 * kept unclamped and still in patches in the tile's store (tiled: the tiles are blended, cropped,
 * concatenated, unpatchified and clamped once all are done, as Diffusers does).
 * The latents are uploaded chunk by chunk (vae_planar_to_cl) and the frames downloaded chunk by
 * chunk (vae_emit_frames) into a host buffer reserved before the loop: everything between runs as
 * backend ops, so the decode runs on any backend whose arena holds its activations. The clamp is
 * done on the host copies (no clamp op: the host has to touch the frames anyway).
 * Not here: the blocks (vae_blocks.c), the encoder (vae_encode.c).
 * Tested by: tests/test_vae.c.
 */
#include <stdlib.h>
#include <string.h>

#include "vae_internal.h"

vae_opts vae_opts_default(void) { return (vae_opts){.schedule = VAE_STREAM}; }

vae_tiling vae_tiling_diffusers(void) {
    return (vae_tiling){.enabled = true,
                        .sample_min_h = 256,
                        .sample_min_w = 256,
                        .sample_stride_h = 192,
                        .sample_stride_w = 192};
}

wf_status vae_check_opts(const vae_model *m, const vae_opts *o, wf_err *err) {
    if (o->schedule != VAE_STREAM && o->schedule != VAE_WHOLE)
        return wf_fail(err, WF_EINVAL, "vae: unknown schedule %d", (int)o->schedule);
    if (!o->tiling.enabled) return WF_OK;
    const vae_tiling *t = &o->tiling;
    const int64_t v[4] = {t->sample_min_h, t->sample_min_w, t->sample_stride_h, t->sample_stride_w};
    static const char *nm[4] = {"tile_sample_min_height", "tile_sample_min_width",
                                "tile_sample_stride_height", "tile_sample_stride_width"};
    for (int i = 0; i < 4; i++)
        if (v[i] <= 0 || v[i] % m->s)
            return wf_fail(
                err, WF_EINVAL,
                "vae tiling: %s = %lld must be a positive multiple of the spatial factor "
                "%lld (else the latent tiles and the pixel pieces do not line up)",
                nm[i], (long long)v[i], (long long)m->s);
    if (t->sample_min_h < t->sample_stride_h || t->sample_min_w < t->sample_stride_w)
        return wf_fail(err, WF_EINVAL,
                       "vae tiling: tile_sample_min (%lld x %lld) must be at least the stride "
                       "(%lld x %lld): tiles must overlap or touch",
                       (long long)t->sample_min_h, (long long)t->sample_min_w,
                       (long long)t->sample_stride_h, (long long)t->sample_stride_w);
    return WF_OK;
}

int64_t vae_decoded_frames(const vae_model *m, int64_t T) { return 1 + m->s_t * (T - 1); }

/* ---- one region ---- */

typedef vae_dec_job dec_job;

wf_status vae_decoder_chunk(vae_run *r, const dec_job *j, int64_t t0, int64_t n, wk_tensor *x) {
    wf_status st = WF_OK;
    const vae_model *m = j->m;
    const vae_coder *d = &m->w.dec;
    const int64_t zc = m->cfg.z_dim;
    wk_tensor y;
    *x = vae_take5(r, VAE_RX, n, j->th, j->tw, zc); /* [1, n, h, w, z] */
    const vae_planar z = {.data = j->z, .C = zc, .T = j->T, .H = j->h, .W = j->w};
    WF_TRY(vae_planar_to_cl(r, &z, t0, j->y0, j->x0, 1, x, VAE_RY, VAE_RXC)); /* upload */
    WF_TRY(vae_conv1x1(r, x, &m->w.post_quant, VAE_RY, &y)); /* post_quant_conv */
    *x = y;
    vae_swap_xy(r, x);
    vae_cconv cc;
    WF_TRY(vae_cconv_begin(r, n, j->th, j->tw, zc, &cc));
    WF_TRY(vae_cconv_fill(r, &cc, x, NULL));
    WF_TRY(vae_cconv_end(r, &cc, &d->conv_in, VAE_RY, &y)); /* [1, n, h, w, C0] */
    *x = y;
    vae_swap_xy(r, x);
    vae_tap(r, "dec.conv_in", x);
    WF_TRY(vae_mid_fwd(r, d, x, "dec"));  /* [1, n, h, w, C0] */
    WF_TRY(vae_layers_fwd(r, d, x));      /* [1, n', H, W, C] */
    WF_TRY(vae_head_fwd(r, d, x, "dec")); /* [1, n', H/p, W/p, 3pp] */
    if (m->p > 1 && !j->tiled) {       /* unpatchify (tiles are blended before it) */
        const int64_t p = m->p, nf = x->shape[1], hp = x->shape[2], wp = x->shape[3];
        y = vae_take5(r, VAE_RY, nf, hp * p, wp * p, 3); /* [1, n', H, W, 3] */
        if (!r->dry) WF_TRY(vae_unpatchify(r->be, &y, x, nf, hp, wp, 3, p, r->err));
        *x = y;
        vae_swap_xy(r, x);
    }
out:
    return st;
}

void vae_clamp_pm1(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) /* torch.clamp(-1, 1): NaN stays NaN */
        x[i] = x[i] < -1.0f ? -1.0f : (x[i] > 1.0f ? 1.0f : x[i]);
}

wf_status vae_host_reserve(vae_dec_job *j, size_t n, wf_err *err) {
    if (!j->on_frames || n <= j->host_cap) return WF_OK;
    float *p = realloc(j->host, n * sizeof(float));
    if (!p)
        return wf_fail(err, WF_ENOMEM, "vae decode: cannot allocate the %.1f MiB host buffer of "
                       "the decoded frames", (double)(n * sizeof(float)) / (1 << 20));
    j->host = p;
    j->host_cap = n;
    return WF_OK;
}

void vae_host_release(vae_dec_job *j) {
    free(j->host);
    j->host = NULL;
    j->host_cap = 0;
}

wf_status vae_emit_frames(wk_backend *be, const vae_dec_job *j, const wk_tensor *x, float *scratch,
                          int64_t f, int64_t F, wf_err *err) {
    wf_status st = WF_OK;
    const int64_t n = x->shape[1], H = x->shape[2], W = x->shape[3];
    const size_t cnt = (size_t)wk_tensor_numel(x), per_channel = (size_t)(n * H * W);
    WF_ASSERT(x->ndim == 5 && x->shape[4] == 3);
    if (j->out) { /* [3, F, H, W]: permuted on the backend, downloaded, clamped */
        WF_TRY(vae_cl_to_host_planar(be, x, n, H, W, 3, scratch, j->out, F, f, err));
        for (int64_t c = 0; c < 3; c++)
            vae_clamp_pm1(j->out + (size_t)((c * F + f) * H * W), per_channel);
    }
    if (j->on_frames) { /* [n, H, W, 3] */
        WF_ASSERT(cnt <= j->host_cap);
        WF_TRY(wk_download(be, j->host, x, err));
        vae_clamp_pm1(j->host, cnt);
        if ((st = j->on_frames(j->frames_ctx, f, n, H, W, j->host, err)))
            wf_err_prefix(err, "vae decode: the frame callback failed on frames %lld..%lld: ",
                          (long long)f, (long long)(f + n - 1));
    }
out:
    return st;
}

/* Frames [f, f + n) of the video are in x [1, n, H, W, 3] (tiled: the tile's [1, n, h', w', C]):
 * copied into the tile's store, or handed to the host outputs. The dry run takes the scratch of
 * the planar permute (role y, free between chunks) and the host buffer's size. */
static wf_status emit(vae_run *r, const dec_job *j, wk_tensor *x, int64_t f, int64_t F) {
    const int64_t n = x->shape[1], H = x->shape[2], W = x->shape[3], C = x->shape[4];
    if (j->tiled)
        return r->dry ? WF_OK
                      : wk_copy(r->be, j->store + (size_t)(f * H * W * C), x->data,
                                wk_tensor_nbytes(x), r->err);
    wk_tensor scratch = vae_take5(r, VAE_RY, n, H, W, C); /* [1, n, H, W, 3] */
    const size_t cnt = (size_t)wk_tensor_numel(x);
    if (r->dry) {
        if (cnt > r->host_need) r->host_need = cnt;
        return WF_OK;
    }
    return vae_emit_frames(r->be, j, x, scratch.data, f, F, r->err);
}

wf_status vae_decode_chunks(vae_run *r, const vae_dec_job *j, vae_emit_fn on_chunk, void *ctx) {
    wf_status st = WF_OK;
    const bool stream = j->o->schedule == VAE_STREAM;
    const int64_t F = vae_decoded_frames(j->m, j->T);
    int64_t f = 0;
    for (int64_t c = 0; c < (stream ? j->T : 1); c++) {
        vae_run_begin_chunk(r, c);
        wk_tensor x;
        WF_TRY(vae_decoder_chunk(r, j, stream ? c : 0, stream ? 1 : j->T, &x));
        WF_ASSERT(x.shape[1] >= 1 && f + x.shape[1] <= F);
        WF_TRY(on_chunk(r, ctx, &x, f, F));
        f += x.shape[1];
    }
    WF_ASSERT(f == F);
out:
    return st;
}

/* One process: the chunk's frames to the job's outputs. */
static wf_status emit_local(vae_run *r, void *ctx, wk_tensor *x, int64_t f, int64_t F) {
    return emit(r, ctx, x, f, F);
}

static wf_status run_schedule(vae_run *r, const dec_job *j) {
    return vae_decode_chunks(r, j, emit_local, (void *)j);
}

static wf_status decode_region(wk_backend *be, wk_arena *arena, dec_job *j, vae_tap_fn tap,
                               void *tap_ctx, wf_err *err) {
    wf_status st;
    vae_run r;
    vae_run_init(&r, be, j->m->w.dec.n_slots, tap, tap_ctx, err);
    if ((st = run_schedule(&r, j))) return st; /* dry: sizes */
    if ((st = vae_run_alloc(&r, arena))) return st;
    if (r.dry) return WF_OK; /* measuring arena */
    if ((st = vae_host_reserve(j, r.host_need, err))) return st;
    return run_schedule(&r, j);
}

/* ---- tiled (AutoencoderKLWan.tiled_decode) ---- */

static bool use_tiling(const vae_model *m, const vae_opts *o, int64_t h, int64_t w) {
    return o->tiling.enabled &&
           (w > o->tiling.sample_min_w / m->s || h > o->tiling.sample_min_h / m->s);
}

static wf_status tiled_decode(wk_backend *be, wk_arena *arena, dec_job *j, wf_err *err) {
    wf_status st = WF_OK;
    const vae_model *m = j->m;
    const vae_tiling *t = &j->o->tiling;
    const int64_t s = m->s, p = m->p, C = 3 * p * p, F = vae_decoded_frames(m, j->T);
    const int64_t H = s * j->h, W = s * j->w, Hp = H / p, Wp = W / p; /* Hp, Wp: in patches */
    const int64_t lmin_h = t->sample_min_h / s, lmin_w = t->sample_min_w / s;
    const int64_t lstr_h = t->sample_stride_h / s, lstr_w = t->sample_stride_w / s;
    const int64_t pstr_h = t->sample_stride_h / p, pstr_w = t->sample_stride_w / p;
    const int64_t blend_h = t->sample_min_h / p - pstr_h, blend_w = t->sample_min_w / p - pstr_w;
    const int rows = (int)((j->h + lstr_h - 1) / lstr_h),
              cols = (int)((j->w + lstr_w - 1) / lstr_w);
    const bool measuring = wk_arena_is_measuring(arena);
    /* the tile table is host memory (read and written here; the arena may be a device's) */
    vae_tile *tiles = calloc((size_t)rows * (size_t)cols, sizeof *tiles);
    float *frame = NULL, *rgb = NULL, *planar = NULL;
    if (!tiles) {
        st = wf_fail(err, WF_ENOMEM, "vae tiled decode: out of memory for %d x %d tiles", rows,
                     cols);
        goto out;
    }
    for (int i = 0; i < rows; i++)
        for (int k = 0; k < cols; k++) {
            const int64_t y0 = i * lstr_h, x0 = k * lstr_w;
            const int64_t th = j->h - y0 < lmin_h ? j->h - y0 : lmin_h;
            const int64_t tw = j->w - x0 < lmin_w ? j->w - x0 : lmin_w;
            const int64_t oh = th * s / p, ow = tw * s / p; /* the tile's output, in patches */
            float *store = NULL;
            WF_TRY(wk_arena_alloc(arena, (size_t)(F * oh * ow * C) * sizeof(float), (void **)&store,
                                  err));
            if (!measuring) tiles[i * cols + k] = (vae_tile){.data = store, .h = oh, .w = ow};
        }
    WF_TRY(wk_arena_alloc(arena, (size_t)(Hp * Wp * C) * sizeof(float), (void **)&frame, err));
    rgb = frame;
    if (p > 1)
        WF_TRY(wk_arena_alloc(arena, (size_t)(H * W * 3) * sizeof(float), (void **)&rgb, err));
    planar = frame; /* with patches, frame is free once unpatchified into rgb */
    if (p == 1)
        WF_TRY(wk_arena_alloc(arena, (size_t)(H * W * 3) * sizeof(float), (void **)&planar, err));
    for (int i = 0; i < rows; i++)
        for (int k = 0; k < cols;
             k++) { /* each tile over all frames, its own cache (clear_cache) */
            j->y0 = i * lstr_h;
            j->x0 = k * lstr_w;
            j->th = j->h - j->y0 < lmin_h ? j->h - j->y0 : lmin_h;
            j->tw = j->w - j->x0 < lmin_w ? j->w - j->x0 : lmin_w;
            j->store = measuring ? NULL : tiles[i * cols + k].data;
            const size_t mark = wk_arena_mark(arena);
            st = decode_region(be, arena, j, NULL, NULL, err);
            wk_arena_reset(arena, mark);
            if (st) {
                wf_err_prefix(err, "vae tiled decode, tile (%d, %d): ", i, k);
                goto out;
            }
        }
    if (measuring) goto out;
    WF_TRY(vae_host_reserve(j, (size_t)(H * W * 3), err));
    WF_TRY(vae_tiles_blend(be, tiles, rows, cols, F, C, blend_h, blend_w, err));
    for (int64_t f = 0; f < F; f++) { /* crop, concatenate, unpatchify, clamp; frame by frame */
        WF_TRY(vae_tiles_assemble(be, tiles, rows, cols, F, C, pstr_h, pstr_w, Hp, Wp, f, 1, frame,
                                  err)); /* [1, Hp, Wp, C] */
        wk_tensor x = vae_on(be, wk_tensor_5d(WK_F32, rgb, 1, 1, H, W, 3));
        if (p > 1) {
            wk_tensor fr = vae_on(be, wk_tensor_5d(WK_F32, frame, 1, 1, Hp, Wp, C));
            WF_TRY(vae_unpatchify(be, &x, &fr, 1, Hp, Wp, 3, p, err)); /* [1, 1, H, W, 3] */
        }
        dec_job e = *j;
        e.tiled = false;
        WF_TRY(vae_emit_frames(be, &e, &x, planar, f, F, err));
    }
out:
    free(tiles);
    return st;
}

/* ---- entry points ---- */

static wf_status check_latent(const vae_model *m, const vae_opts *o, int64_t T, int64_t h,
                              int64_t w, wf_err *err) {
    if (T < 1 || h < 1 || w < 1)
        return wf_fail(err, WF_EINVAL, "vae decode: latent [%lld, %lld, %lld, %lld] is empty",
                       (long long)m->cfg.z_dim, (long long)T, (long long)h, (long long)w);
    return vae_check_opts(m, o, err);
}

wf_status vae_decode(const vae_model *m, wk_backend *be, wk_arena *arena, const vae_opts *o,
                     const float *z, int64_t T, int64_t h, int64_t w, float *out,
                     vae_frames_fn on_frames, void *frames_ctx, vae_tap_fn tap, void *tap_ctx,
                     wf_err *err) {
    wf_status st = check_latent(m, o, T, h, w, err);
    if (st) return st;
    if (tap && be->device != WK_DEV_CPU) /* taps read their tensors on the host */
        return wf_fail(err, WF_EUNSUPPORTED, "vae decode: debugging taps run on the CPU backend "
                                             "only (this backend is %s)", be->name);
    const size_t mark = wk_arena_mark(arena);
    dec_job j = {.m = m,
                 .o = o,
                 .z = z,
                 .T = T,
                 .h = h,
                 .w = w,
                 .th = h,
                 .tw = w,
                 .out = out,
                 .on_frames = on_frames,
                 .frames_ctx = frames_ctx};
    if (use_tiling(m, o, h, w)) {
        j.tiled = true;
        st = tiled_decode(be, arena, &j, err);
    } else {
        st = decode_region(be, arena, &j, tap, tap_ctx, err);
    }
    vae_host_release(&j);
    wk_arena_reset(arena, mark);
    return st;
}

wf_status vae_decode_arena_bytes(const vae_model *m, int64_t T, int64_t h, int64_t w,
                                 const vae_opts *o, size_t *bytes, wf_err *err) {
    wk_arena a;
    wk_arena_init_measure(&a, "vae decode activations");
    wf_status st = vae_decode(m, NULL, &a, o, NULL, T, h, w, NULL, NULL, NULL, NULL, NULL, err);
    *bytes = st ? 0 : a.peak;
    return st;
}
