/* rope.c: the CPU reference of the rotary embedding and the host-side 3-D rotary tables.
 *
 * What it is: wk_cpu_rope rotates each adjacent pair (x[2i], x[2i+1]) of every head vector by the
 * angle whose cos and sin the tables hold for that token (interleaved-pair convention of Wan,
 * wan_spec.md §1.4); the rotation is formed in double and rounded once. y may alias x.
 * wk_rope_table_3d builds the tables for an (F, H, W) patch grid exactly as diffusers'
 * WanRotaryPosEmbed does: angles in double, cos/sin cast to f32 and repeated per pair.
 * What it is not: the 1-D rope of other models, or a cache of tables (the caller keeps them).
 * Tested by: tests/test_ops.c, rows "rope" and "rope_table" in tests/ops_basic.c (the table is
 * checked against an independent double-precision evaluation of the spec formula).
 */
#include <limits.h>
#include <math.h>

#include "cpu_ops.h"

/* Below this many elements the rows run on one thread: the fork costs more than it saves. */
#define ROPE_PAR_MIN 32768

wf_status wk_cpu_rope(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *cos,
                      const wk_tensor *sin, wf_err *err) {
    wf_status st;
    char s1[96], s2[96];
    if ((st = wk_check_dtype(x, WK_F32, "rope", "x", err))) return st;
    if ((st = wk_check_dtype(y, WK_F32, "rope", "y", err))) return st;
    if ((st = wk_check_dtype(cos, WK_F32, "rope", "cos", err))) return st;
    if ((st = wk_check_dtype(sin, WK_F32, "rope", "sin", err))) return st;
    if ((st = wk_check_ndim(x, 3, "rope", "x [L, NH, HD]", err))) return st;
    if ((st = wk_check_same_shape(y, x, "rope", "y", "x", err))) return st;
    int64_t L = x->shape[0], NH = x->shape[1], HD = x->shape[2];
    if (HD % 2 != 0)
        return wf_fail(err, WF_EINVAL, "rope: x has shape %s, expected an even head dim",
                       wk_tensor_shape_str(x, s1, sizeof s1));
    const wk_tensor *tab[2] = {cos, sin};
    for (int i = 0; i < 2; i++)
        if (tab[i]->ndim != 2 || tab[i]->shape[0] != L || tab[i]->shape[1] != HD)
            return wf_fail(err, WF_EINVAL, "rope: %s has shape %s, expected [%lld, %lld] (x %s)",
                           i ? "sin" : "cos", wk_tensor_shape_str(tab[i], s1, sizeof s1),
                           (long long)L, (long long)HD, wk_tensor_shape_str(x, s2, sizeof s2));

    const float *xd = x->data, *cd = cos->data, *sd = sin->data;
    float *yd = y->data;
    int64_t rows = L * NH;
#pragma omp parallel for num_threads(be->nthreads) if (rows * HD >= ROPE_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = xd + r * HD;
        float *yr = yd + r * HD;
        const float *c = cd + (r / NH) * HD, *s = sd + (r / NH) * HD; /* token r / NH */
        for (int64_t i = 0; i < HD; i += 2) {
            /* the pair's angle: cos from the even slot, sin from the odd one, as diffusers reads
             * them (the tables repeat each value, so either slot would do) */
            double x0 = xr[i], x1 = xr[i + 1], ci = c[i], si = s[i + 1];
            yr[i] = (float)(x0 * ci - x1 * si);
            yr[i + 1] = (float)(x0 * si + x1 * ci);
        }
    }
    return WF_OK;
}

/* One axis's part of a table row: d values (d / 2 pairs) for position pos,
 * angle_j = pos / theta^(2j / d), each cos and sin cast to f32 and written twice. */
static void rope_axis(float *c, float *s, int64_t pos, int d, double theta) {
    for (int j = 0; j < d / 2; j++) {
        double inv_freq = 1.0 / pow(theta, (double)(2 * j) / (double)d);
        double a = (double)pos * inv_freq;
        c[2 * j] = c[2 * j + 1] = (float)cos(a);
        s[2 * j] = s[2 * j + 1] = (float)sin(a);
    }
}

wf_status wk_rope_table_3d(float *cos_out, float *sin_out, int64_t F, int64_t H, int64_t W, int hd,
                           double theta, wf_err *err) {
    int64_t L = F < 0 || H < 0 || W < 0 ? 0 : F * H * W;
    return wk_rope_table_3d_rows(cos_out, sin_out, F, H, W, hd, theta, 0, L, err);
}

wf_status wk_rope_table_3d_rows(float *cos_out, float *sin_out, int64_t F, int64_t H, int64_t W,
                                int hd, double theta, int64_t l0, int64_t n, wf_err *err) {
    if (hd <= 0 || hd % 2 != 0)
        return wf_fail(err, WF_EINVAL,
                       "rope_table_3d: head dim %d must be positive and even (split into "
                       "t = hd - 4*(hd/6), h = w = 2*(hd/6) rotary dims, each even)",
                       hd);
    if (F < 0 || H < 0 || W < 0)
        return wf_fail(err, WF_EINVAL, "rope_table_3d: grid F=%lld H=%lld W=%lld is negative",
                       (long long)F, (long long)H, (long long)W);
    if (!(theta > 0) || isinf(theta))
        return wf_fail(err, WF_EINVAL, "rope_table_3d: theta %g must be positive and finite",
                       theta);
    int dh = 2 * (hd / 6), dw = dh, dt = hd - dh - dw; /* hd 128: t 44, h 42, w 42 */
    WF_ASSERT(dt % 2 == 0 && dh % 2 == 0);
    if (l0 < 0 || n < 0)
        return wf_fail(err, WF_EINVAL, "rope_table_3d: rows [%lld, %lld) are negative",
                       (long long)l0, (long long)(l0 + n));
    int64_t L = F * H * W;
#pragma omp parallel for if (n * hd >= ROPE_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) { /* token order (f, h, w), w fastest */
        int64_t tok = l0 + i;
        float *c = cos_out + i * hd, *s = sin_out + i * hd;
        if (tok >= L) { /* padding past the grid: the identity rotation */
            for (int k = 0; k < hd; k++) c[k] = 1.0f, s[k] = 0.0f;
            continue;
        }
        int64_t f = tok / (H * W), h = tok / W % H, w = tok % W;
        rope_axis(c, s, f, dt, theta);
        rope_axis(c + dt, s + dt, h, dh, theta);
        rope_axis(c + dt + dh, s + dt + dh, w, dw, theta);
    }
    return WF_OK;
}

wf_status wk_cpu_rope_table(wk_backend *be, wk_tensor *cos, wk_tensor *sin, int64_t F, int64_t H,
                            int64_t W, double theta, int64_t l0, wf_err *err) {
    (void)be;
    wf_status st;
    if ((st = wk_check_dtype(cos, WK_F32, "rope_table", "cos", err)) ||
        (st = wk_check_dtype(sin, WK_F32, "rope_table", "sin", err)) ||
        (st = wk_check_ndim(cos, 2, "rope_table", "cos [n, HD]", err)) ||
        (st = wk_check_same_shape(sin, cos, "rope_table", "sin", "cos", err)))
        return st;
    if (cos->device != WK_DEV_CPU || sin->device != WK_DEV_CPU)
        return wf_fail(err, WF_EINVAL, "rope_table: cos and sin must be in host memory");
    if (cos->shape[1] > INT_MAX)
        return wf_fail(err, WF_EINVAL, "rope_table: head dim %lld is too large",
                       (long long)cos->shape[1]);
    return wk_rope_table_3d_rows(cos->data, sin->data, F, H, W, (int)cos->shape[1], theta, l0,
                                 cos->shape[0], err);
}
