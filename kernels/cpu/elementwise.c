/* elementwise.c: the CPU reference of add, mul (with broadcasting), gelu_tanh and silu.
 *
 * What it is: y = a + b and y = a * b, where b broadcasts to a by NumPy rules (right-aligned, each
 * b dim 1 or equal) and may be of any wk_dtype (a modulation vector stored in bf16, say); and the
 * two activations of the DiT (GELU, tanh form) and the VAE (SiLU). a, x and y are f32; y may alias
 * a or x. Loops are OpenMP-parallel above EW_PAR_MIN elements.
 * What it is not: a general broadcasting engine (y always has a's shape).
 * Tested by: tests/test_ops.c, rows "add", "mul", "gelu_tanh", "silu" in tests/ops_basic.c.
 */
#include <math.h>

#include "cpu_ops.h"
#include "../op_check.h"

/* Below this many elements a loop runs on one thread: the fork costs more than it saves. */
#define EW_PAR_MIN 32768

typedef enum ew_op { EW_ADD, EW_MUL } ew_op;

/* Element i of a tensor of dtype dt, widened to f32. */
static inline float ew_load(const void *p, wk_dtype dt, int64_t i) {
    const unsigned char *b = p;
    uint16_t h;
    switch (dt) {
    case WK_F32: return ((const float *)p)[i];
    case WK_BF16: memcpy(&h, b + 2 * i, 2); return wk_bf16_to_f32(h);
    case WK_F16: memcpy(&h, b + 2 * i, 2); return wk_f16_to_f32(h);
    case WK_F8E4M3: return wk_f8e4m3_to_f32(b[i]);
    default: WF_ASSERT(!"unknown dtype"); return 0.0f;
    }
}

static inline float ew_apply(ew_op op, float a, float b) { return op == EW_ADD ? a + b : a * b; }


static wf_status ew_binary(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b,
                           ew_op op, const char *name, wf_err *err) {
    wf_status st;
    int64_t bstride[WK_MAX_DIMS];
    if ((st = wk_check_dtype(a, WK_F32, name, "a", err))) return st;
    if ((st = wk_check_dtype(y, WK_F32, name, "y", err))) return st;
    if ((st = wk_check_same_shape(y, a, name, "y", "a", err))) return st;
    if ((st = wk_check_broadcast(a, b, name, bstride, err))) return st;

    int64_t n = wk_tensor_numel(a), nb = wk_tensor_numel(b);
    const float *ad = a->data;
    float *yd = y->data;
    const void *bd = b->data;
    wk_dtype bt = b->dtype;
    if (n == 0) return WF_OK;

    /* k: the first dim of a along which b is not broadcast. b is a trailing row when it covers
     * all of a's dims [k, ndim), i.e. has as many elements as they do. */
    int k = 0;
    while (k < a->ndim && bstride[k] == 0) k++;
    bool trailing = nb == wk_tensor_inner(a, k);

    if (nb == n) { /* same shape (up to dims of 1) */
#pragma omp parallel for num_threads(be->nthreads) if (n >= EW_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) yd[i] = ew_apply(op, ad[i], ew_load(bd, bt, i));
    } else if (trailing) { /* b is a row repeated over a's leading dims (or a scalar) */
        int64_t rows = n / nb;
#pragma omp parallel for num_threads(be->nthreads) if (n >= EW_PAR_MIN) schedule(static)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < nb; j++)
                yd[r * nb + j] = ew_apply(op, ad[r * nb + j], ew_load(bd, bt, j));
    } else { /* general: per row of a's last dim, b's offset from the row's index */
        int nd = a->ndim;
        int64_t last = a->shape[nd - 1], rows = n / last, bs_last = bstride[nd - 1];
#pragma omp parallel for num_threads(be->nthreads) if (n >= EW_PAR_MIN) schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            int64_t rem = r, boff = 0;
            for (int i = nd - 2; i >= 0; i--) {
                boff += (rem % a->shape[i]) * bstride[i];
                rem /= a->shape[i];
            }
            for (int64_t j = 0; j < last; j++)
                yd[r * last + j] =
                    ew_apply(op, ad[r * last + j], ew_load(bd, bt, boff + j * bs_last));
        }
    }
    return WF_OK;
}

wf_status wk_cpu_add(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b,
                     wf_err *err) {
    return ew_binary(be, y, a, b, EW_ADD, "add", err);
}

wf_status wk_cpu_mul(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b,
                     wf_err *err) {
    return ew_binary(be, y, a, b, EW_MUL, "mul", err);
}

typedef enum ew_act { EW_GELU_TANH, EW_SILU } ew_act;

/* gelu_tanh: 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3), computed as the
 * identical x * sigmoid(2u) = x / (1 + exp(-2u)), which does not cancel for large negative x.
 * silu: x * sigmoid(x) = x / (1 + exp(-x)). */
static inline float ew_activate(ew_act act, float v) {
    if (act == EW_SILU) return v / (1.0f + expf(-v));
    float u = 0.7978845608028654f * (v + 0.044715f * v * v * v); /* sqrt(2/pi) (...) */
    return v / (1.0f + expf(-2.0f * u));
}

static wf_status ew_unary(wk_backend *be, wk_tensor *y, const wk_tensor *x, ew_act act,
                          const char *name, wf_err *err) {
    wf_status st;
    if ((st = wk_check_dtype(x, WK_F32, name, "x", err))) return st;
    if ((st = wk_check_dtype(y, WK_F32, name, "y", err))) return st;
    if ((st = wk_check_same_shape(y, x, name, "y", "x", err))) return st;
    int64_t n = wk_tensor_numel(x);
    const float *xd = x->data;
    float *yd = y->data;
#pragma omp parallel for num_threads(be->nthreads) if (n >= EW_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) yd[i] = ew_activate(act, xd[i]);
    return WF_OK;
}

wf_status wk_cpu_gelu_tanh(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err) {
    return ew_unary(be, y, x, EW_GELU_TANH, "gelu_tanh", err);
}

wf_status wk_cpu_silu(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err) {
    return ew_unary(be, y, x, EW_SILU, "silu", err);
}
