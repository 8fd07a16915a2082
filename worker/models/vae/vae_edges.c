/* vae_edges.c: the Wan VAE's pure data movement (see vae_internal.h), as backend ops: the
 * pipeline layouts (host planar [C, T, H, W]) to and from channels-last backend tensors, Wan2.2's
 * patchify/unpatchify, and Diffusers' tile blending (AutoencoderKLWan.blend_v / blend_h and
 * tiled_*'s crop-and-concatenate).
 *
 * Each layout change is one wk_permute of a reshaped view (the patch offsets q, r as dims of their
 * own); a region of a larger source is cut with wk_copy_box; host data crosses only through
 * wk_upload / wk_download of contiguous runs. All of it moves values without arithmetic, so the
 * bits are the host loops' that these replace.
 * What it is not: anything with weights (vae_blocks.c) or a schedule (vae_decode.c, vae_encode.c).
 * Tested by: tests/test_vae.c (tiled and patchified cases against Diffusers).
 */
#include <string.h>

#include "vae_internal.h"

/* ---- layouts ---- */

/* Rows [y0 p, (y0 + h) p) of frames [t0, t0 + n) of every channel of src, uploaded into stage
 * [C, n, h p, W]: C n contiguous runs of h p W floats (one when the band is whole frames). */
static wf_status upload_band(wk_backend *be, const vae_planar *src, int64_t t0, int64_t n,
                             int64_t row0, int64_t rows, float *stage, wf_err *err) {
    const int64_t run = rows * src->W, frame = src->H * src->W;
    const bool whole = row0 == 0 && rows == src->H; /* frames [t0, t0 + n) are contiguous */
    for (int64_t c = 0; c < src->C; c++)
        for (int64_t t = 0; t < (whole ? 1 : n); t++) {
            const float *from = src->data + ((c * src->T + t0 + t) * src->H + row0) * src->W;
            wk_tensor d = vae_on(be, wk_tensor_1d(WK_F32, stage + (c * n + t) * run,
                                                  whole ? n * frame : run));
            wf_status st = wk_upload(be, &d, from, err);
            if (st) return st;
        }
    return WF_OK;
}

wf_status vae_planar_to_cl(vae_run *r, const vae_planar *src, int64_t t0, int64_t y0, int64_t x0,
                           int64_t p, wk_tensor *dst, int stage, int crop) {
    wf_status st = WF_OK;
    const int64_t C = src->C, n = dst->shape[1], h = dst->shape[2], w = dst->shape[3];
    WF_ASSERT(dst->ndim == 5 && dst->shape[4] == C * p * p);
    WF_ASSERT(t0 + n <= src->T && (y0 + h) * p <= src->H && (x0 + w) * p <= src->W);
    const bool cut = x0 != 0 || w * p != src->W; /* the band is wider than the region */
    const int64_t ss[4] = {C, n, h * p, src->W}, sc[4] = {C, n, h * p, w * p};
    wk_tensor band = vae_take(r, stage, 4, ss); /* [C, n, h p, W] */
    wk_tensor box = cut ? vae_take(r, crop, 4, sc) : band; /* [C, n, h p, w p] */
    if (r->dry) goto out;
    WF_TRY(upload_band(r->be, src, t0, n, y0 * p, h * p, band.data, r->err));
    if (cut) {
        const int64_t zero[4] = {0, 0, 0, 0}, from[4] = {0, 0, 0, x0 * p};
        WF_TRY(wk_copy_box(r->be, &box, zero, &band, from, sc, r->err)); /* [C, n, h p, w p] */
    }
    /* box as [C, n, h, p (q), w, p (r)] -> [n, h, w, C, p (r), p (q)] */
    const int64_t shape[6] = {C, n, h, p, w, p};
    static const int perm[6] = {1, 2, 4, 0, 5, 3};
    WF_TRY(wk_permute(r->be, dst, &box, 6, shape, perm, r->err)); /* [1, n, h, w, C p p] */
out:
    return st;
}

wf_status vae_unpatchify(wk_backend *be, wk_tensor *y, const wk_tensor *x, int64_t n, int64_t h,
                         int64_t w, int64_t C, int64_t p, wf_err *err) {
    /* x as [n, h, w, C, p (r), p (q)] -> [n, h, p (q), w, p (r), C] */
    const int64_t shape[6] = {n, h, w, C, p, p};
    static const int perm[6] = {0, 1, 5, 2, 4, 3};
    return wk_permute(be, y, x, 6, shape, perm, err);
}

wf_status vae_cl_to_host_planar(wk_backend *be, const wk_tensor *x, int64_t n, int64_t h,
                                int64_t w, int64_t C, float *scratch, float *dst, int64_t Td,
                                int64_t t0, wf_err *err) {
    WF_ASSERT(t0 + n <= Td);
    const int64_t shape[3] = {n, h * w, C};
    static const int perm[3] = {2, 0, 1};
    wk_tensor pl = vae_on(be, wk_tensor_4d(WK_F32, scratch, C, n, h, w)); /* [C, n, h, w] */
    wf_status st = wk_permute(be, &pl, x, 3, shape, perm, err);
    const bool one = n == Td; /* dst's frames are all ours: one contiguous block */
    for (int64_t c = 0; !st && c < (one ? 1 : C); c++) {
        wk_tensor s = vae_on(be, wk_tensor_1d(WK_F32, scratch + c * n * h * w,
                                              one ? C * n * h * w : n * h * w));
        st = wk_download(be, dst + (c * Td + t0) * h * w, &s, err);
    }
    return st;
}

/* ---- tiles (AutoencoderKLWan.blend_v / blend_h / tiled_*'s crop-and-cat) ---- */

static wk_tensor tile_tensor(wk_backend *be, const vae_tile *t, int64_t T, int64_t C) {
    return vae_on(be, wk_tensor_4d(WK_F32, t->data, T, t->h, t->w, C)); /* [T, h, w, C] */
}

wf_status vae_tiles_blend(wk_backend *be, vae_tile *tiles, int rows, int cols, int64_t T,
                          int64_t C, int64_t bh, int64_t bw, wf_err *err) {
    wf_status st = WF_OK;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            wk_tensor t = tile_tensor(be, &tiles[i * cols + j], T, C);
            if (i > 0) { /* the blended tile above */
                wk_tensor a = tile_tensor(be, &tiles[(i - 1) * cols + j], T, C);
                WF_TRY(wk_blend(be, &t, &a, 1, bh, err));
            }
            if (j > 0) { /* the blended tile left */
                wk_tensor a = tile_tensor(be, &tiles[i * cols + j - 1], T, C);
                WF_TRY(wk_blend(be, &t, &a, 2, bw, err));
            }
        }
out:
    return st;
}

wf_status vae_tiles_assemble(wk_backend *be, const vae_tile *tiles, int rows, int cols, int64_t T,
                             int64_t C, int64_t stride_h, int64_t stride_w, int64_t out_h,
                             int64_t out_w, int64_t f0, int64_t n, float *dst, wf_err *err) {
    wf_status st = WF_OK;
    WF_ASSERT(f0 + n <= T);
    wk_tensor d = vae_on(be, wk_tensor_4d(WK_F32, dst, n, out_h, out_w, C)); /* [n, H, W, C] */
    int64_t y0 = 0;
    for (int i = 0; i < rows && y0 < out_h; i++) {
        const vae_tile *t0 = &tiles[i * cols];
        int64_t ph = t0->h < stride_h ? t0->h : stride_h; /* tile[:, :, :, :stride_h] */
        if (y0 + ph > out_h) ph = out_h - y0;             /* the final crop */
        int64_t x0 = 0;
        for (int j = 0; j < cols && x0 < out_w; j++) {
            const vae_tile *t = &tiles[i * cols + j];
            WF_ASSERT(t->h == t0->h);
            int64_t pw = t->w < stride_w ? t->w : stride_w;
            if (x0 + pw > out_w) pw = out_w - x0;
            wk_tensor s = tile_tensor(be, t, T, C);
            const int64_t so[4] = {f0, 0, 0, 0}, dof[4] = {0, y0, x0, 0}, ext[4] = {n, ph, pw, C};
            WF_TRY(wk_copy_box(be, &d, dof, &s, so, ext, err)); /* the kept piece */
            x0 += t->w < stride_w ? t->w : stride_w;
        }
        WF_ASSERT(x0 >= out_w);
        y0 += t0->h < stride_h ? t0->h : stride_h;
    }
    WF_ASSERT(y0 >= out_h);
out:
    return st;
}
