/* norm.c: the CPU reference of layer_norm, rms_norm and rms_norm_l2, over the last dim.
 *
 * What it is: the three normalisations of Wan (backend.h has the formulas): LayerNorm of the DiT
 * blocks (population variance, eps inside the sqrt, optional affine), the T5 / DiT q-k RMSNorm,
 * and the Wan-VAE channel-L2 norm. Each row's sums are taken in double, two-pass for the
 * variance, and the output is formed in double and rounded once, so the result is within about an
 * ulp of the exact value for any C. Weights (w, b, gamma) may be of any dtype; they are widened
 * into the backend workspace once per call. Rows run in parallel (OpenMP).
 * What it is not: fused with modulation (x * (1 + scale) + shift is a mul and an add).
 * Tested by: tests/test_ops.c, rows "layer_norm", "rms_norm", "rms_norm_l2" in tests/ops_basic.c.
 */
#include <math.h>

#include "cpu_ops.h"

/* Below this many elements the rows run on one thread: the fork costs more than it saves. */
#define NORM_PAR_MIN 32768

/* Checks x and y, and sets rows and C (the last dim). */
static wf_status norm_check(const wk_tensor *y, const wk_tensor *x, const char *op, int64_t *rows,
                            int64_t *C, wf_err *err) {
    wf_status st;
    char s[96];
    if ((st = wk_check_dtype(x, WK_F32, op, "x", err))) return st;
    if ((st = wk_check_dtype(y, WK_F32, op, "y", err))) return st;
    if ((st = wk_check_same_shape(y, x, op, "y", "x", err))) return st;
    if (x->ndim < 1)
        return wf_fail(err, WF_EINVAL, "%s: x has shape %s, expected at least 1 dimension", op,
                       wk_tensor_shape_str(x, s, sizeof s));
    *C = x->shape[x->ndim - 1];
    *rows = *C > 0 ? wk_tensor_numel(x) / *C : 0;
    return WF_OK;
}

/* A per-channel vector: [C], or [C, 1, ...] as the Wan-VAE stores its gamma (C, 1, 1, 1). */
static wf_status norm_check_vec(const wk_tensor *v, int64_t C, const char *op, const char *arg,
                                wf_err *err) {
    if (!v) return WF_OK;
    bool ok = v->ndim >= 1 && v->shape[0] == C;
    for (int i = 1; ok && i < v->ndim; i++) ok = v->shape[i] == 1;
    if (ok) return WF_OK;
    char s[96];
    return wf_fail(err, WF_EINVAL, "%s: %s has shape %s, expected [%lld] (or [%lld, 1, ...])", op,
                   arg, wk_tensor_shape_str(v, s, sizeof s), (long long)C, (long long)C);
}

/* The f32 data of the vectors v0 and v1 (each may be NULL): their own data when f32, else a copy
 * widened into the workspace. */
static wf_status norm_widen(wk_backend *be, const wk_tensor *v0, const wk_tensor *v1, int64_t C,
                            const float **o0, const float **o1, wf_err *err) {
    const wk_tensor *v[2] = {v0, v1};
    const float **o[2] = {o0, o1};
    size_t need = 0;
    for (int i = 0; i < 2; i++)
        if (v[i] && v[i]->dtype != WK_F32) need += (size_t)C;
    float *ws = NULL;
    if (need) {
        wf_status st = wk_backend_workspace(be, need * sizeof(float), (void **)&ws, err);
        if (st) return st;
    }
    for (int i = 0; i < 2; i++) {
        if (!v[i]) {
            *o[i] = NULL;
        } else if (v[i]->dtype == WK_F32) {
            *o[i] = v[i]->data;
        } else {
            wk_convert_to_f32(ws, v[i]->data, v[i]->dtype, (size_t)C);
            *o[i] = ws;
            ws += C;
        }
    }
    return WF_OK;
}

wf_status wk_cpu_layer_norm(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                            const wk_tensor *b, float eps, wf_err *err) {
    int64_t rows = 0, C = 0;
    const float *wd, *bd;
    wf_status st;
    if ((st = norm_check(y, x, "layer_norm", &rows, &C, err))) return st;
    if ((st = norm_check_vec(w, C, "layer_norm", "w", err))) return st;
    if ((st = norm_check_vec(b, C, "layer_norm", "b", err))) return st;
    if ((st = norm_widen(be, w, b, C, &wd, &bd, err))) return st;
    const float *xd = x->data;
    float *yd = y->data;
#pragma omp parallel for num_threads(be->nthreads) if (rows * C >= NORM_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = xd + r * C;
        float *yr = yd + r * C;
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < C; i++) sum += xr[i];
        double mean = sum / (double)C;
        for (int64_t i = 0; i < C; i++) sq += (xr[i] - mean) * (xr[i] - mean);
        double rstd = 1.0 / sqrt(sq / (double)C + (double)eps);
        for (int64_t i = 0; i < C; i++) {
            double v = (xr[i] - mean) * rstd;
            if (wd) v *= wd[i];
            if (bd) v += bd[i];
            yr[i] = (float)v;
        }
    }
    return WF_OK;
}

/* y = x * scale(row) [* w]: the two RMS forms differ only in how a row's scale comes from its
 * sum of squares ss: 1 / sqrt(ss / C + eps) (T5 / DiT) or sqrt(C) / max(sqrt(ss), 1e-12) (VAE). */
typedef enum norm_rms_kind { NORM_RMS_MEAN, NORM_RMS_L2 } norm_rms_kind;

static wf_status norm_rms(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                          norm_rms_kind kind, float eps, const char *name, const char *wname,
                          wf_err *err) {
    int64_t rows = 0, C = 0;
    const float *wd, *unused;
    wf_status st;
    if ((st = norm_check(y, x, name, &rows, &C, err))) return st;
    if ((st = norm_check_vec(w, C, name, wname, err))) return st;
    if ((st = norm_widen(be, w, NULL, C, &wd, &unused, err))) return st;
    const float *xd = x->data;
    float *yd = y->data;
#pragma omp parallel for num_threads(be->nthreads) if (rows * C >= NORM_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = xd + r * C;
        float *yr = yd + r * C;
        double sq = 0;
        for (int64_t i = 0; i < C; i++) sq += (double)xr[i] * xr[i];
        double scale = kind == NORM_RMS_MEAN ? 1.0 / sqrt(sq / (double)C + (double)eps)
                                             : sqrt((double)C) / fmax(sqrt(sq), 1e-12);
        for (int64_t i = 0; i < C; i++) {
            double v = xr[i] * scale;
            if (wd) v *= wd[i];
            yr[i] = (float)v;
        }
    }
    return WF_OK;
}

wf_status wk_cpu_rms_norm(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                          float eps, wf_err *err) {
    return norm_rms(be, y, x, w, NORM_RMS_MEAN, eps, "rms_norm", "w", err);
}

wf_status wk_cpu_rms_norm_l2(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                             const wk_tensor *gamma, wf_err *err) {
    return norm_rms(be, y, x, gamma, NORM_RMS_L2, 0.0f, "rms_norm_l2", "gamma", err);
}
