/* fused.c: the CPU reference of the fused DiT forms: matmul_gelu, ln_modulate, gate_residual,
 * rms_norm_rope (semantics in kernels/backend.h).
 *
 * What it is: each op gives the same bits as the unfused op sequence the DiT ran before it
 * existed, because it performs the same f32/f64 operations in the same order:
 *   - matmul_gelu   = matmul, then gelu_tanh in place (the two CPU ops, called in turn: the GEMM's
 *                     task cuts are what fix its bits, so the epilogue stays a second pass).
 *   - ln_modulate   = layer_norm (no affine: row sums in double, two-pass variance, rounded once
 *                     to f32, as norm.c) then one f32 multiply by scale1 and one f32 add of shift
 *                     per element (elementwise.c's mul and add), in one pass over each row.
 *   - gate_residual = the f32 product y * gate, then the f32 sum x + that (mul then add).
 *   - rms_norm_rope = rms_norm over the token's NH*HD values (double sum of squares, x * scale * w
 *                     in double, rounded to f32, as norm.c), then rope.c's rotation of that f32
 *                     pair in double, rounded once, per token in one pass.
 * The build compiles C in ISO mode (-std=c11), where GCC does not contract a * b + c into an FMA
 * (-ffp-contract=off), so separate statements round as the separate ops do.
 * y may alias x for ln_modulate and rms_norm_rope (each row is read before it is written).
 * What it is not: faster than the sequence on the CPU beyond the saved passes over memory; the
 * point of these forms is the GPU kernels, which the CPU checks.
 * Tested by: tests/test_ops.c, rows "matmul_gelu", "ln_modulate", "gate_residual",
 * "rms_norm_rope" in tests/ops_layout.c: against double references, and against the unfused ops
 * bit for bit.
 */
#include <math.h>

#include "cpu_ops.h"

/* Below this many elements the rows run on one thread: the fork costs more than it saves. */
#define FUSED_PAR_MIN 32768

wf_status wk_cpu_matmul_gelu(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                             const wk_tensor *bias, wf_err *err) {
    wf_status st;
    if ((st = wk_cpu_check_host(x, "matmul_gelu", "x", err))) return st;
    if ((st = wk_cpu_check_host(w, "matmul_gelu", "w", err))) return st;
    if (bias && (st = wk_cpu_check_host(bias, "matmul_gelu", "bias", err))) return st;
    if ((st = wk_cpu_check_host(y, "matmul_gelu", "y", err))) return st;
    if ((st = wk_cpu_matmul(be, y, x, w, bias, err))) {
        wf_err_prefix(err, "matmul_gelu: ");
        return st;
    }
    return wk_cpu_gelu_tanh(be, y, y, err);
}

/* x, y f32 of one shape, last dim D; *R rows. */
static wf_status fused_check_rows(const wk_tensor *y, const wk_tensor *x, const char *op,
                                  const char *xn, const char *yn, int64_t *R, int64_t *D,
                                  wf_err *err) {
    wf_status st;
    char s[96];
    if ((st = wk_cpu_check_host(x, op, xn, err))) return st;
    if ((st = wk_cpu_check_host(y, op, yn, err))) return st;
    if ((st = wk_check_dtype(x, WK_F32, op, xn, err))) return st;
    if ((st = wk_check_dtype(y, WK_F32, op, yn, err))) return st;
    if ((st = wk_check_same_shape(y, x, op, yn, xn, err))) return st;
    if (x->ndim < 1)
        return wf_fail(err, WF_EINVAL, "%s: %s has shape %s, expected [R, D]", op, xn,
                       wk_tensor_shape_str(x, s, sizeof s));
    *D = x->shape[x->ndim - 1];
    *R = *D > 0 ? wk_tensor_numel(x) / *D : 0;
    return WF_OK;
}

/* A modulation vector: f32, last dim D, one row ([D], [1, D]) or R rows; *per_row says which. */
static wf_status fused_check_mod(const wk_tensor *v, int64_t R, int64_t D, const char *op,
                                 const char *arg, bool *per_row, wf_err *err) {
    wf_status st;
    char s[96];
    if ((st = wk_cpu_check_host(v, op, arg, err))) return st;
    if ((st = wk_check_dtype(v, WK_F32, op, arg, err))) return st;
    int64_t n = wk_tensor_numel(v);
    if (v->ndim < 1 || v->shape[v->ndim - 1] != D || (n != D && n != R * D))
        return wf_fail(err, WF_EINVAL, "%s: %s has shape %s, expected [1, %lld] or [%lld, %lld]",
                       op, arg, wk_tensor_shape_str(v, s, sizeof s), (long long)D, (long long)R,
                       (long long)D);
    *per_row = n != D;
    return WF_OK;
}

wf_status wk_cpu_ln_modulate(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                             const wk_tensor *scale1, const wk_tensor *shift, float eps,
                             wf_err *err) {
    int64_t R = 0, D = 0;
    bool sc_rows = false, sh_rows = false;
    wf_status st;
    if ((st = fused_check_rows(y, x, "ln_modulate", "x", "y", &R, &D, err))) return st;
    if ((st = fused_check_mod(scale1, R, D, "ln_modulate", "scale1", &sc_rows, err))) return st;
    if ((st = fused_check_mod(shift, R, D, "ln_modulate", "shift", &sh_rows, err))) return st;
    const float *xd = x->data, *sd = scale1->data, *hd = shift->data;
    float *yd = y->data;
#pragma omp parallel for num_threads(be->nthreads) if (R * D >= FUSED_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = xd + r * D, *sr = sd + (sc_rows ? r * D : 0);
        const float *hr = hd + (sh_rows ? r * D : 0);
        float *yr = yd + r * D;
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < D; i++) sum += xr[i];
        double mean = sum / (double)D;
        for (int64_t i = 0; i < D; i++) sq += (xr[i] - mean) * (xr[i] - mean);
        double rstd = 1.0 / sqrt(sq / (double)D + (double)eps);
        for (int64_t i = 0; i < D; i++) {
            float n = (float)((xr[i] - mean) * rstd); /* layer_norm */
            float m = n * sr[i];                      /* mul */
            yr[i] = m + hr[i];                        /* add */
        }
    }
    return WF_OK;
}

wf_status wk_cpu_gate_residual(wk_backend *be, wk_tensor *x, const wk_tensor *y,
                               const wk_tensor *gate, wf_err *err) {
    int64_t R = 0, D = 0;
    bool g_rows = false;
    wf_status st;
    if ((st = fused_check_rows(x, y, "gate_residual", "y", "x", &R, &D, err))) return st;
    if ((st = fused_check_mod(gate, R, D, "gate_residual", "gate", &g_rows, err))) return st;
    const float *yd = y->data, *gd = gate->data;
    float *xd = x->data;
#pragma omp parallel for num_threads(be->nthreads) if (R * D >= FUSED_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *yr = yd + r * D, *gr = gd + (g_rows ? r * D : 0);
        float *xr = xd + r * D;
        for (int64_t i = 0; i < D; i++) {
            float t = yr[i] * gr[i]; /* mul */
            xr[i] = xr[i] + t;       /* add */
        }
    }
    return WF_OK;
}

static wf_status rms_rope_check(const wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                                const wk_tensor *cos, const wk_tensor *sin, wf_err *err) {
    wf_status st;
    char s1[96], s2[96];
    int64_t R, C;
    if ((st = fused_check_rows(y, x, "rms_norm_rope", "x", "y", &R, &C, err))) return st;
    if ((st = wk_check_ndim(x, 3, "rms_norm_rope", "x [L, NH, HD]", err))) return st;
    const int64_t L = x->shape[0], NH = x->shape[1], HD = x->shape[2];
    if (HD % 2 != 0)
        return wf_fail(err, WF_EINVAL, "rms_norm_rope: x has shape %s, expected an even head dim",
                       wk_tensor_shape_str(x, s1, sizeof s1));
    if (w) {
        if ((st = wk_cpu_check_host(w, "rms_norm_rope", "w", err))) return st;
        if (w->dtype >= WK_DTYPE_COUNT || w->ndim != 1 || w->shape[0] != NH * HD)
            return wf_fail(err, WF_EINVAL, "rms_norm_rope: w has shape %s and dtype %s, expected "
                           "a float [%lld] (NH*HD of x %s)", wk_tensor_shape_str(w, s1, sizeof s1),
                           wk_dtype_name(w->dtype), (long long)(NH * HD),
                           wk_tensor_shape_str(x, s2, sizeof s2));
    }
    const wk_tensor *tab[2] = {cos, sin};
    for (int i = 0; i < 2; i++) {
        const char *nm = i ? "sin" : "cos";
        if ((st = wk_cpu_check_host(tab[i], "rms_norm_rope", nm, err))) return st;
        if ((st = wk_check_dtype(tab[i], WK_F32, "rms_norm_rope", nm, err))) return st;
        if (tab[i]->ndim != 2 || tab[i]->shape[0] != L || tab[i]->shape[1] != HD)
            return wf_fail(err, WF_EINVAL,
                           "rms_norm_rope: %s has shape %s, expected [%lld, %lld] (x %s)", nm,
                           wk_tensor_shape_str(tab[i], s1, sizeof s1), (long long)L,
                           (long long)HD, wk_tensor_shape_str(x, s2, sizeof s2));
    }
    return WF_OK;
}

wf_status wk_cpu_rms_norm_rope(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                               const wk_tensor *w, const wk_tensor *cos, const wk_tensor *sin,
                               float eps, wf_err *err) {
    wf_status st = rms_rope_check(y, x, w, cos, sin, err);
    if (st) return st;
    const int64_t L = x->shape[0], HD = x->shape[2], C = x->shape[1] * HD;
    const float *wd = NULL;
    if (w && w->dtype == WK_F32) {
        wd = w->data;
    } else if (w) { /* widened once into the workspace */
        float *ws;
        if ((st = wk_backend_workspace(be, (size_t)C * sizeof(float), (void **)&ws, err)))
            return st;
        wk_convert_to_f32(ws, w->data, w->dtype, (size_t)C);
        wd = ws;
    }
    const float *xd = x->data, *cd = cos->data, *sd = sin->data;
    float *yd = y->data;
#pragma omp parallel for num_threads(be->nthreads) if (L * C >= FUSED_PAR_MIN) schedule(static)
    for (int64_t l = 0; l < L; l++) {
        const float *xr = xd + l * C, *c = cd + l * HD, *s = sd + l * HD;
        float *yr = yd + l * C;
        double sq = 0;
        for (int64_t i = 0; i < C; i++) sq += (double)xr[i] * xr[i];
        double scale = 1.0 / sqrt(sq / (double)C + (double)eps);
        for (int64_t i = 0; i < C; i += 2) {
            double v0 = xr[i] * scale, v1 = xr[i + 1] * scale; /* rms_norm */
            if (wd) v0 *= wd[i], v1 *= wd[i + 1];
            double x0 = (float)v0, x1 = (float)v1;              /* its f32 output */
            int64_t k = i % HD;                                 /* the pair's slot in the head */
            double ci = c[k], si = s[k + 1];                    /* rope, as rope.c reads them */
            yr[i] = (float)(x0 * ci - x1 * si);
            yr[i + 1] = (float)(x0 * si + x1 * ci);
        }
    }
    return WF_OK;
}
