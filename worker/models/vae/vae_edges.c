/* vae_edges.c: the Wan VAE's pure data movement (see vae_internal.h): the pipeline layouts
 * (planar [C, T, H, W]) to and from channels-last, Wan2.2's patchify/unpatchify, and Diffusers'
 * tile blending (AutoencoderKLWan.blend_v / blend_h and tiled_*'s crop-and-concatenate).
 *
 * What it is not: anything with weights (vae_blocks.c) or a schedule (vae_decode.c, vae_encode.c).
 * Tested by: tests/test_vae.c (tiled and patchified cases against Diffusers).
 */
#include <string.h>

#include "vae_internal.h"

/* ---- layouts ---- */

void vae_planar_to_cl(const float *src, int64_t C, int64_t Ts, int64_t Hs, int64_t Ws, int64_t t0,
                      int64_t y0, int64_t x0, int64_t n, int64_t h, int64_t w, int64_t p,
                      float *dst) {
    WF_ASSERT(t0 + n <= Ts && (y0 + h) * p <= Hs && (x0 + w) * p <= Ws);
    const int64_t Cp = C * p * p;
    for (int64_t t = 0; t < n; t++)
        for (int64_t y = 0; y < h; y++)
            for (int64_t xx = 0; xx < w; xx++) {
                float *d = dst + ((t * h + y) * w + xx) * Cp;
                for (int64_t c = 0; c < C; c++)
                    for (int64_t r = 0; r < p; r++)     /* column offset */
                        for (int64_t q = 0; q < p; q++) /* row offset */
                            d[(c * p + r) * p + q] =
                                src[((c * Ts + t0 + t) * Hs + (y0 + y) * p + q) * Ws +
                                    (x0 + xx) * p + r];
            }
}

void vae_unpatchify_cl(const float *src, int64_t n, int64_t h, int64_t w, int64_t C, int64_t p,
                       float *dst) {
    const int64_t Cp = C * p * p;
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < w; j++) {
                const float *s = src + ((t * h + i) * w + j) * Cp;
                for (int64_t q = 0; q < p; q++)
                    for (int64_t r = 0; r < p; r++) {
                        float *d = dst + ((t * h * p + i * p + q) * w * p + j * p + r) * C;
                        for (int64_t c = 0; c < C; c++) d[c] = s[(c * p + r) * p + q];
                    }
            }
}

void vae_cl_to_planar(const float *src, int64_t n, int64_t h, int64_t w, int64_t C, float *dst,
                      int64_t Td, int64_t Hd, int64_t Wd, int64_t t0, int64_t y0, int64_t x0) {
    WF_ASSERT(t0 + n <= Td && y0 + h <= Hd && x0 + w <= Wd);
    for (int64_t t = 0; t < n; t++)
        for (int64_t y = 0; y < h; y++)
            for (int64_t xx = 0; xx < w; xx++) {
                const float *s = src + ((t * h + y) * w + xx) * C;
                float *d = dst + ((t0 + t) * Hd + y0 + y) * Wd + x0 + xx;
                for (int64_t c = 0; c < C; c++) d[c * Td * Hd * Wd] = s[c];
            }
}

/* ---- tiles (AutoencoderKLWan.blend_v / blend_h / tiled_*'s crop-and-cat) ---- */

/* b[.., y, ..] = a[.., a_h - e + y, ..] * (1 - y / e) + b[.., y, ..] * (y / e), y < e, as torch
 * computes it: the Python-float weights become f32 scalars, two products, one sum. */
static void blend_v(const vae_tile *a, vae_tile *b, int64_t T, int64_t C, int64_t extent) {
    int64_t e = extent;
    if (a->h < e) e = a->h;
    if (b->h < e) e = b->h;
    WF_ASSERT(a->w == b->w);
    const int64_t row = b->w * C;
    for (int64_t y = 0; y < e; y++) {
        const float wa = (float)(1.0 - (double)y / (double)e), wb = (float)((double)y / (double)e);
        for (int64_t t = 0; t < T; t++) {
            const float *ar = a->data + (t * a->h + a->h - e + y) * row;
            float *br = b->data + (t * b->h + y) * row;
            for (int64_t i = 0; i < row; i++) {
                const float pa = ar[i] * wa, pb = br[i] * wb;
                br[i] = pa + pb;
            }
        }
    }
}

static void blend_h(const vae_tile *a, vae_tile *b, int64_t T, int64_t C, int64_t extent) {
    int64_t e = extent;
    if (a->w < e) e = a->w;
    if (b->w < e) e = b->w;
    WF_ASSERT(a->h == b->h);
    for (int64_t xx = 0; xx < e; xx++) {
        const float wa = (float)(1.0 - (double)xx / (double)e),
                    wb = (float)((double)xx / (double)e);
        for (int64_t t = 0; t < T; t++)
            for (int64_t y = 0; y < b->h; y++) {
                const float *ap = a->data + ((t * a->h + y) * a->w + a->w - e + xx) * C;
                float *bp = b->data + ((t * b->h + y) * b->w + xx) * C;
                for (int64_t c = 0; c < C; c++) {
                    const float pa = ap[c] * wa, pb = bp[c] * wb;
                    bp[c] = pa + pb;
                }
            }
    }
}

void vae_tiles_blend(vae_tile *tiles, int rows, int cols, int64_t T, int64_t C, int64_t bh,
                     int64_t bw) {
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            vae_tile *t = &tiles[i * cols + j];
            if (i > 0)
                blend_v(&tiles[(i - 1) * cols + j], t, T, C, bh);      /* the blended tile above */
            if (j > 0) blend_h(&tiles[i * cols + j - 1], t, T, C, bw); /* the blended tile left */
        }
}

void vae_tiles_assemble(const vae_tile *tiles, int rows, int cols, int64_t T, int64_t C,
                        int64_t stride_h, int64_t stride_w, int64_t out_h, int64_t out_w,
                        int64_t f0, int64_t n, float *dst) {
    WF_ASSERT(f0 + n <= T);
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
            for (int64_t f = 0; f < n; f++)
                for (int64_t y = 0; y < ph; y++)
                    memcpy(dst + ((f * out_h + y0 + y) * out_w + x0) * C,
                           t->data + (((f0 + f) * t->h + y) * t->w) * C,
                           (size_t)(pw * C) * sizeof(float));
            x0 += t->w < stride_w ? t->w : stride_w;
        }
        WF_ASSERT(x0 >= out_w);
        y0 += t0->h < stride_h ? t0->h : stride_h;
    }
    WF_ASSERT(y0 >= out_h);
}
