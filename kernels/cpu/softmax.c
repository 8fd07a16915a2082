/* softmax.c: the CPU reference of softmax over the last dim.
 *
 * What it is: y = exp(x - max) / sum(exp(x - max)) per row, with the sum in double. A row whose
 * entries are all -inf (every key masked) gives zeros, not NaN; -inf entries give exact zeros.
 * y may alias x. Rows run in parallel (OpenMP).
 * What it is not: the attention softmax (attention.c has its own online form).
 * Tested by: tests/test_ops.c, rows "softmax" in tests/ops_basic.c (-inf entries, an all -inf
 * row, magnitudes of +-80).
 */
#include <math.h>

#include "cpu_ops.h"

/* Below this many elements the rows run on one thread: the fork costs more than it saves. */
#define SOFTMAX_PAR_MIN 32768

wf_status wk_cpu_softmax(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err) {
    wf_status st;
    char s[96];
    if ((st = wk_check_dtype(x, WK_F32, "softmax", "x", err))) return st;
    if ((st = wk_check_dtype(y, WK_F32, "softmax", "y", err))) return st;
    if ((st = wk_check_same_shape(y, x, "softmax", "y", "x", err))) return st;
    if (x->ndim < 1)
        return wf_fail(err, WF_EINVAL, "softmax: x has shape %s, expected at least 1 dimension",
                       wk_tensor_shape_str(x, s, sizeof s));
    int64_t C = x->shape[x->ndim - 1];
    int64_t rows = C > 0 ? wk_tensor_numel(x) / C : 0;
    const float *xd = x->data;
    float *yd = y->data;
#pragma omp parallel for num_threads(be->nthreads) if (rows * C >= SOFTMAX_PAR_MIN) \
    schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = xd + r * C;
        float *yr = yd + r * C;
        float mx = -INFINITY;
        for (int64_t i = 0; i < C; i++) mx = fmaxf(mx, xr[i]);
        if (mx == -INFINITY) { /* every entry masked */
            for (int64_t i = 0; i < C; i++) yr[i] = 0.0f;
            continue;
        }
        double sum = 0;
        for (int64_t i = 0; i < C; i++) {
            yr[i] = expf(xr[i] - mx); /* y may alias x: xr[i] is read before yr[i] is written */
            sum += yr[i];
        }
        for (int64_t i = 0; i < C; i++) yr[i] = (float)(yr[i] / sum);
    }
    return WF_OK;
}
