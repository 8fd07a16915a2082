/* vae_ops.c: the CPU reference of the Wan-VAE's own ops: blend, avgdown3d, dupup3d and
 * rms_norm_l2_silu (semantics in kernels/backend.h).
 *
 * What it is: the loops the VAE ran on the host, as ops of the table, with the same numerics:
 *   - blend is AutoencoderKLWan.blend_v (axis 1) / blend_h (axis 2) on a channels-last tile
 *     [T, h, w, C], in place on b: the Python-float weights 1 - i/e and i/e become f32 scalars
 *     (computed in double, rounded once), then two f32 products and one f32 sum, as torch does.
 *   - avgdown3d is Wan2.2's AvgDown3D: the zero frames in front, then each output channel the mean
 *     of its group of (channel, time, row, column)-folded inputs, summed in double in the group's
 *     order and rounded once.
 *   - dupup3d is DupUp3D: each output a copy of one input (repeat_interleave over channels, the
 *     factors unfolded into time, rows and columns), the first `drop` frames left out.
 *   - rms_norm_l2_silu is norm.c's rms_norm_l2 (double sum of squares, x * scale [* gamma] in
 *     double, one rounding) then elementwise.c's silu (x / (1 + expf(-x)) in f32), per row in one
 *     pass: the same operations in the same order, so the bits of the two ops in turn. The build
 *     compiles C in ISO mode (-std=c11), where GCC contracts no product and sum into an FMA.
 * Outputs run in parallel (OpenMP); each output element has one writer, so the bits do not depend
 * on the thread count. y may alias x for rms_norm_l2_silu (each row is read before it is written).
 * What it is not: the VAE's convolutions (conv.c) or its layout moves (layout.c's copy_box and
 * permute).
 * Tested by: tests/test_ops.c, rows "blend", "avgdown3d", "dupup3d", "rms_norm_l2_silu" in
 * tests/ops_vae.c (double references, odd shapes, guard bytes, bad arguments).
 */
#include <math.h>

#include "cpu_ops.h"
#include "../op_check.h"

/* Below this many elements the loops run on one thread: the fork costs more than it saves. */
#define VOPS_PAR_MIN 32768

/* x is an f32 tensor in host memory with ndim dims. */
static wf_status vops_check_act(const wk_tensor *t, int ndim, const char *op, const char *arg,
                                wf_err *err) {
    wf_status st;
    if ((st = wk_cpu_check_host(t, op, arg, err))) return st;
    if ((st = wk_check_dtype(t, WK_F32, op, arg, err))) return st;
    return ndim ? wk_check_ndim(t, ndim, op, arg, err) : WF_OK;
}

/* ---- blend ---- */

/* a and b agree in every dim but `axis` (the one blended). */
static wf_status blend_check(const wk_tensor *b, const wk_tensor *a, int axis, int64_t extent,
                             wf_err *err) {
    wf_status st;
    char sa[96], sb[96];
    if ((st = vops_check_act(b, 4, "blend", "b [T, h, w, C]", err))) return st;
    if ((st = vops_check_act(a, 4, "blend", "a [T, h, w, C]", err))) return st;
    if (axis != 1 && axis != 2)
        return wf_fail(err, WF_EINVAL, "blend: axis %d, expected 1 (rows: blend_v) or 2 (columns: "
                       "blend_h)", axis);
    if (extent < 0)
        return wf_fail(err, WF_EINVAL, "blend: extent %lld, expected >= 0", (long long)extent);
    for (int d = 0; d < 4; d++)
        if (d != axis && a->shape[d] != b->shape[d])
            return wf_fail(err, WF_EINVAL,
                           "blend: a shape %s and b shape %s differ in dim %d: expected the same "
                           "shape but for dim %d (the axis blended)",
                           wk_tensor_shape_str(a, sa, sizeof sa),
                           wk_tensor_shape_str(b, sb, sizeof sb), d, axis);
    return WF_OK;
}

/* The weights of position i of e: wa = 1 - i/e, wb = i/e, each a double rounded to f32. */
static inline void blend_weights(int64_t i, int64_t e, float *wa, float *wb) {
    *wa = (float)(1.0 - (double)i / (double)e);
    *wb = (float)((double)i / (double)e);
}

wf_status wk_cpu_blend(wk_backend *be, wk_tensor *b, const wk_tensor *a, int axis, int64_t extent,
                       wf_err *err) {
    wf_status st = blend_check(b, a, axis, extent, err);
    if (st) return st;
    int64_t e = extent;
    if (a->shape[axis] < e) e = a->shape[axis];
    if (b->shape[axis] < e) e = b->shape[axis];
    const int64_t T = b->shape[0], C = b->shape[3];
    const int64_t ah = a->shape[1], aw = a->shape[2], bh = b->shape[1], bw = b->shape[2];
    const float *ad = a->data;
    float *bd = b->data;
    if (axis == 1) { /* b[t, y, :, :] over the first e rows, rows of bw * C floats */
        const int64_t row = bw * C, rows = T * e;
#pragma omp parallel for num_threads(be->nthreads) if (rows * row >= VOPS_PAR_MIN) schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const int64_t t = r / e, y = r % e;
            float wa, wb;
            blend_weights(y, e, &wa, &wb);
            const float *ar = ad + (t * ah + ah - e + y) * row;
            float *br = bd + (t * bh + y) * row;
            for (int64_t i = 0; i < row; i++) {
                const float pa = ar[i] * wa, pb = br[i] * wb;
                br[i] = pa + pb;
            }
        }
    } else { /* b[t, y, x, :] over the first e columns of every row */
        const int64_t rows = T * bh;
#pragma omp parallel for num_threads(be->nthreads) if (rows * e * C >= VOPS_PAR_MIN) \
    schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float *arow = ad + (r * aw + aw - e) * C; /* a[t, y, aw - e, :] */
            float *brow = bd + r * bw * C;                  /* b[t, y, 0, :] */
            for (int64_t x = 0; x < e; x++) {
                float wa, wb;
                blend_weights(x, e, &wa, &wb);
                for (int64_t c = 0; c < C; c++) {
                    const float pa = arow[x * C + c] * wa, pb = brow[x * C + c] * wb;
                    brow[x * C + c] = pa + pb;
                }
            }
        }
    }
    return WF_OK;
}

/* ---- the Wan2.2 shortcuts ---- */

/* ft, fs >= 1; x [1, T, H, W, Ci] and y [1, To, Ho, Wo, Co] f32; *fac = ft fs fs. */
static wf_status shortcut_check(const wk_tensor *y, const wk_tensor *x, int64_t ft, int64_t fs,
                                const char *op, int64_t *fac, wf_err *err) {
    wf_status st;
    if ((st = vops_check_act(x, 5, op, "x [1, T, H, W, C]", err))) return st;
    if ((st = vops_check_act(y, 5, op, "y [1, T, H, W, C]", err))) return st;
    if ((st = wk_check_shortcut(y, x, ft, fs, op, err))) return st;
    *fac = ft * fs * fs;
    return WF_OK;
}


wf_status wk_cpu_avgdown3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, int64_t ft,
                           int64_t fs, wf_err *err) {
    int64_t fac = 0;
    char s[96];
    wf_status st = shortcut_check(y, x, ft, fs, "avgdown3d", &fac, err);
    if (st) return st;
    const int64_t T = x->shape[1], H = x->shape[2], W = x->shape[3], Ci = x->shape[4];
    const int64_t Co = y->shape[4];
    if (H % fs || W % fs)
        return wf_fail(err, WF_EINVAL, "avgdown3d: x has shape %s: H and W must be multiples of "
                       "fs %lld", wk_tensor_shape_str(x, s, sizeof s), (long long)fs);
    const int64_t pad = (ft - T % ft) % ft, To = (T + pad) / ft, Ho = H / fs, Wo = W / fs;
    if ((st = wk_check_shortcut_y(y, x, To, Ho, Wo, "avgdown3d", err))) return st;
    if (Co < 1 || (Ci * fac) % Co)
        return wf_fail(err, WF_EINVAL, "avgdown3d: %lld output channels do not divide the %lld "
                       "folded inputs (C %lld x ft fs fs %lld)", (long long)Co,
                       (long long)(Ci * fac), (long long)Ci, (long long)fac);
    const int64_t g = Ci * fac / Co; /* inputs per output */
    const float *xd = x->data;
    float *yd = y->data;
    const int64_t pix = To * Ho;
#pragma omp parallel for num_threads(be->nthreads) if (pix * Wo * Co * g >= VOPS_PAR_MIN) \
    schedule(static)
    for (int64_t tr = 0; tr < pix; tr++) { /* output rows (t, i) */
        const int64_t t = tr / Ho, i = tr % Ho;
        for (int64_t j = 0; j < Wo; j++)
            for (int64_t o = 0; o < Co; o++) {
                double acc = 0;
                for (int64_t k = o * g; k < (o + 1) * g; k++) { /* k = (c, dt, dh, dw) folded */
                    const int64_t c = k / fac, rem = k % fac;
                    const int64_t tt = t * ft + rem / (fs * fs) - pad;
                    const int64_t hh = i * fs + rem / fs % fs, ww = j * fs + rem % fs;
                    if (tt >= 0) acc += xd[((tt * H + hh) * W + ww) * Ci + c];
                }
                yd[((t * Ho + i) * Wo + j) * Co + o] = (float)(acc / (double)g);
            }
    }
    return WF_OK;
}

wf_status wk_cpu_dupup3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, int64_t ft, int64_t fs,
                         int64_t drop, wf_err *err) {
    int64_t fac = 0;
    wf_status st = shortcut_check(y, x, ft, fs, "dupup3d", &fac, err);
    if (st) return st;
    const int64_t T = x->shape[1], H = x->shape[2], W = x->shape[3], Ci = x->shape[4];
    const int64_t Co = y->shape[4];
    if (drop < 0 || drop > T * ft)
        return wf_fail(err, WF_EINVAL, "dupup3d: drop %lld, expected in [0, %lld] (T ft)",
                       (long long)drop, (long long)(T * ft));
    const int64_t To = T * ft - drop, Ho = H * fs, Wo = W * fs;
    if ((st = wk_check_shortcut_y(y, x, To, Ho, Wo, "dupup3d", err))) return st;
    if (Ci < 1 || (Co * fac) % Ci)
        return wf_fail(err, WF_EINVAL, "dupup3d: %lld input channels do not divide the %lld "
                       "unfolded outputs (C %lld x ft fs fs %lld)", (long long)Ci,
                       (long long)(Co * fac), (long long)Co, (long long)fac);
    const int64_t rep = Co * fac / Ci; /* repeat_interleave */
    const float *xd = x->data;
    float *yd = y->data;
    const int64_t pix = To * Ho;
#pragma omp parallel for num_threads(be->nthreads) if (pix * Wo * Co >= VOPS_PAR_MIN) \
    schedule(static)
    for (int64_t tr = 0; tr < pix; tr++) { /* output rows (t, i) */
        const int64_t t = tr / Ho, i = tr % Ho, tf = t + drop;
        const float *xrow = xd + ((tf / ft) * H + i / fs) * W * Ci; /* x[tf / ft, i / fs, :, :] */
        float *yrow = yd + tr * Wo * Co;
        for (int64_t j = 0; j < Wo; j++) {
            const float *xp = xrow + (j / fs) * Ci;
            const int64_t sub = ((tf % ft) * fs + i % fs) * fs + j % fs;
            for (int64_t o = 0; o < Co; o++) yrow[j * Co + o] = xp[(o * fac + sub) / rep];
        }
    }
    return WF_OK;
}

/* ---- rms_norm_l2_silu ---- */

/* gamma is NULL, [C] or [C, 1, ...] (the Wan-VAE's (C, 1, 1, 1)); its f32 values in *g (its own
 * data, or a copy widened into the workspace). */
static wf_status l2silu_gamma(wk_backend *be, const wk_tensor *gamma, int64_t C, const float **g,
                              wf_err *err) {
    *g = NULL;
    if (!gamma) return WF_OK;
    wf_status st;
    char s[96];
    if ((st = wk_cpu_check_host(gamma, "rms_norm_l2_silu", "gamma", err))) return st;
    bool ok = gamma->ndim >= 1 && gamma->shape[0] == C && gamma->dtype < WK_DTYPE_COUNT;
    for (int i = 1; ok && i < gamma->ndim; i++) ok = gamma->shape[i] == 1;
    if (!ok)
        return wf_fail(err, WF_EINVAL, "rms_norm_l2_silu: gamma has shape %s (%s), expected a "
                       "float [%lld] (or [%lld, 1, ...])", wk_tensor_shape_str(gamma, s, sizeof s),
                       wk_dtype_name(gamma->dtype), (long long)C, (long long)C);
    if (gamma->dtype == WK_F32) {
        *g = gamma->data;
        return WF_OK;
    }
    float *ws = NULL;
    if ((st = wk_backend_workspace(be, (size_t)C * sizeof(float), (void **)&ws, err))) return st;
    wk_convert_to_f32(ws, gamma->data, gamma->dtype, (size_t)C);
    *g = ws;
    return WF_OK;
}

wf_status wk_cpu_rms_norm_l2_silu(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                  const wk_tensor *gamma, wf_err *err) {
    wf_status st;
    char s[96];
    if ((st = vops_check_act(x, 0, "rms_norm_l2_silu", "x", err))) return st;
    if ((st = vops_check_act(y, 0, "rms_norm_l2_silu", "y", err))) return st;
    if ((st = wk_check_same_shape(y, x, "rms_norm_l2_silu", "y", "x", err))) return st;
    if (x->ndim < 1)
        return wf_fail(err, WF_EINVAL, "rms_norm_l2_silu: x has shape %s, expected at least 1 "
                       "dimension", wk_tensor_shape_str(x, s, sizeof s));
    const int64_t C = x->shape[x->ndim - 1], rows = C > 0 ? wk_tensor_numel(x) / C : 0;
    const float *g;
    if ((st = l2silu_gamma(be, gamma, C, &g, err))) return st;
    const float *xd = x->data;
    float *yd = y->data;
#pragma omp parallel for num_threads(be->nthreads) if (rows * C >= VOPS_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = xd + r * C;
        float *yr = yd + r * C;
        double sq = 0;
        for (int64_t i = 0; i < C; i++) sq += (double)xr[i] * xr[i];
        const double scale = sqrt((double)C) / fmax(sqrt(sq), 1e-12);
        for (int64_t i = 0; i < C; i++) {
            double v = xr[i] * scale;
            if (g) v *= g[i];
            const float n = (float)v;       /* rms_norm_l2's output */
            yr[i] = n / (1.0f + expf(-n)); /* silu */
        }
    }
    return WF_OK;
}
