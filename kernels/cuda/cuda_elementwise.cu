/* cuda_elementwise.cu: the CUDA kernels of add, mul (b broadcast to a), gelu_tanh, silu, convert,
 * fill and gate_residual, and the host-side argument checks the fused ops share (cuda_device.cuh).
 *
 * What it is: one thread per element (per 4 elements where a, y are 16-byte aligned and the
 * count allows: float4 loads and stores), grid-stride loops over int64 counts. add/mul broadcast
 * b by NumPy rules exactly as kernels/cpu/elementwise.c does (same checks, same messages): same
 * shape, a trailing row of b repeated (the index modulo b's size, by a multiply-shift), or the
 * general case (a's index decomposed per dim, b's stride 0 where it is 1); b may be any float
 * dtype (widened per element). The activations use the CPU's formulas. convert narrows with
 * dtype.h's rounding, bit for bit (wk_st); fill writes a 32-bit pattern. gate_residual forms
 * x + (y * gate) with two f32 roundings (__fmul_rn, __fadd_rn: no FMA contraction), the bits of
 * the CPU's mul then add. All math is f32; y may alias x (each element is read, then written, by
 * one thread).
 * What it is not: a general broadcasting engine (y has a's shape), or fused with a GEMM.
 * Tested by: tests/test_backend_ops.c, rows add, mul, gelu_tanh, silu, convert, fill,
 * gate_residual (CPU against CUDA, odd shapes, every b dtype) on a GPU machine.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <string.h>

#include "cuda_device.cuh"
#include "cuda_internal.h"
#include "../op_check.h"

/* ---- host-side checks shared with cuda_norm.cu (declared in cuda_device.cuh) ---- */

wf_status wk_cuda_check_float(const wk_tensor *t, const char *op, const char *arg, wf_err *err) {
    if (t->dtype < WK_DTYPE_COUNT) return WF_OK;
    return wf_fail(err, WF_EUNSUPPORTED,
                   "%s: %s has dtype %s, expected a float dtype (f32, bf16, f16, f8e4m3)", op, arg,
                   wk_dtype_name(t->dtype));
}

wf_status wk_cuda_check_rows(const wk_tensor *y, const wk_tensor *x, const char *op,
                             const char *xn, const char *yn, int64_t *R, int64_t *D, wf_err *err) {
    wf_status st;
    char s[96];
    if ((st = wk_cuda_check_act(x, op, xn, err))) return st;
    if ((st = wk_cuda_check_act(y, op, yn, err))) return st;
    if ((st = wk_check_same_shape(y, x, op, yn, xn, err))) return st;
    if (x->ndim < 1)
        return wf_fail(err, WF_EINVAL, "%s: %s has shape %s, expected [R, D]", op, xn,
                       wk_tensor_shape_str(x, s, sizeof s));
    *D = x->shape[x->ndim - 1];
    *R = *D > 0 ? wk_tensor_numel(x) / *D : 0;
    return WF_OK;
}

wf_status wk_cuda_check_mod(const wk_tensor *v, int64_t R, int64_t D, const char *op,
                            const char *arg, bool *per_row, wf_err *err) {
    wf_status st;
    char s[96];
    if ((st = wk_cuda_check_act(v, op, arg, err))) return st;
    int64_t n = wk_tensor_numel(v);
    if (v->ndim < 1 || v->shape[v->ndim - 1] != D || (n != D && n != R * D))
        return wf_fail(err, WF_EINVAL, "%s: %s has shape %s, expected [1, %lld] or [%lld, %lld]",
                       op, arg, wk_tensor_shape_str(v, s, sizeof s), (long long)D, (long long)R,
                       (long long)D);
    *per_row = n != D;
    return WF_OK;
}

/* ---- add, mul ---- */

enum { EW_ADD = 0, EW_MUL };
enum { EW_SAME = 0, EW_ROW, EW_GENERAL }; /* how b's index follows a's */

typedef struct ew_bin {
    const float *a;
    const void *b;
    float *y;
    int64_t n;              /* elements of a and y */
    int bt, op, mode, nd;
    int b_vec;              /* b is f32 and 16-byte aligned: float4 loads */
    wk_idiv nb;             /* EW_ROW: b's element count */
    wk_idiv dim[WK_MAX_DIMS]; /* EW_GENERAL: a's dims */
    int64_t bstr[WK_MAX_DIMS];  /* b's element stride along a's dim (0: broadcast) */
} ew_bin;

__device__ __forceinline__ float ew_apply(int op, float a, float b) {
    return op == EW_ADD ? a + b : a * b;
}

/* b's element index for a's element i */
__device__ __forceinline__ int64_t ew_bindex(const ew_bin &p, int64_t i) {
    if (p.mode == EW_SAME) return i;
    if (p.mode == EW_ROW) return i - wk_idiv_q(i, p.nb) * p.nb.d;
    int64_t rem = i, bi = 0;
    for (int d = p.nd - 1; d >= 0; d--) {
        const int64_t q = wk_idiv_q(rem, p.dim[d]);
        bi += (rem - q * p.dim[d].d) * p.bstr[d];
        rem = q;
    }
    return bi;
}

__global__ void ew_bin_kernel(ew_bin p) {
    WK_CUDA_FOR(i, p.n) p.y[i] = ew_apply(p.op, p.a[i], wk_ld(p.b, p.bt, ew_bindex(p, i)));
}

/* EW_SAME or EW_ROW with n and b's count multiples of 4, a and y 16-byte aligned */
__global__ void ew_bin4_kernel(ew_bin p) {
    const int64_t n4 = p.n >> 2;
    WK_CUDA_FOR(u, n4) {
        const int64_t bi = ew_bindex(p, 4 * u);
        const float4 av = reinterpret_cast<const float4 *>(p.a)[u];
        float4 bv;
        if (p.b_vec) {
            bv = reinterpret_cast<const float4 *>(p.b)[bi >> 2];
        } else {
            bv.x = wk_ld(p.b, p.bt, bi);
            bv.y = wk_ld(p.b, p.bt, bi + 1);
            bv.z = wk_ld(p.b, p.bt, bi + 2);
            bv.w = wk_ld(p.b, p.bt, bi + 3);
        }
        float4 r;
        r.x = ew_apply(p.op, av.x, bv.x);
        r.y = ew_apply(p.op, av.y, bv.y);
        r.z = ew_apply(p.op, av.z, bv.z);
        r.w = ew_apply(p.op, av.w, bv.w);
        reinterpret_cast<float4 *>(p.y)[u] = r;
    }
}


/* The launch parameters of y = a op b once the broadcast is known. */
static void ew_bin_plan(ew_bin *p, const wk_tensor *a, const wk_tensor *b,
                        const int64_t bstride[WK_MAX_DIMS]) {
    const int64_t nb = wk_tensor_numel(b);
    int k = 0; /* the first dim of a along which b is not broadcast */
    while (k < a->ndim && bstride[k] == 0) k++;
    p->nd = a->ndim;
    if (nb == p->n) p->mode = EW_SAME;
    else if (nb == wk_tensor_inner(a, k)) p->mode = EW_ROW; /* a row repeated (or a scalar) */
    else p->mode = EW_GENERAL;
    p->nb = wk_idiv_make(nb);
    for (int d = 0; d < a->ndim; d++) {
        p->dim[d] = wk_idiv_make(a->shape[d]);
        p->bstr[d] = bstride[d];
    }
}

static wf_status ew_binary(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b,
                           int op, const char *name, wf_err *err) {
    wf_status st;
    int64_t bstride[WK_MAX_DIMS];
    if ((st = wk_cuda_check_act(a, name, "a", err))) return st;
    if ((st = wk_cuda_check_act(y, name, "y", err))) return st;
    if ((st = wk_cuda_check_dev(b, name, "b", err))) return st;
    if ((st = wk_cuda_check_float(b, name, "b", err))) return st;
    if ((st = wk_check_same_shape(y, a, name, "y", "a", err))) return st;
    if ((st = wk_check_broadcast(a, b, name, bstride, err))) return st;
    ew_bin p;
    memset(&p, 0, sizeof p);
    p.a = (const float *)a->data;
    p.b = b->data;
    p.y = (float *)y->data;
    p.n = wk_tensor_numel(a);
    p.bt = b->dtype;
    p.op = op;
    if (p.n == 0) return WF_OK;
    ew_bin_plan(&p, a, b, bstride);
    cudaStream_t s = wk_cuda_of(be)->stream;
    const bool vec = p.mode != EW_GENERAL && p.n % 4 == 0 && p.nb.d % 4 == 0 &&
                     wk_aligned16(p.a) && wk_aligned16(p.y);
    if (vec) {
        p.b_vec = b->dtype == WK_F32 && wk_aligned16(b->data);
        ew_bin4_kernel<<<wk_cuda_blocks(p.n / 4), WK_CUDA_THREADS, 0, s>>>(p);
    } else {
        ew_bin_kernel<<<wk_cuda_blocks(p.n), WK_CUDA_THREADS, 0, s>>>(p);
    }
    return wk_cuda_launched(err, name);
}

extern "C" wf_status wk_cuda_add(wk_backend *be, wk_tensor *y, const wk_tensor *a,
                                 const wk_tensor *b, wf_err *err) {
    return ew_binary(be, y, a, b, EW_ADD, "add", err);
}

extern "C" wf_status wk_cuda_mul(wk_backend *be, wk_tensor *y, const wk_tensor *a,
                                 const wk_tensor *b, wf_err *err) {
    return ew_binary(be, y, a, b, EW_MUL, "mul", err);
}

/* ---- gelu_tanh, silu ---- */

enum { EW_GELU_TANH = 0, EW_SILU };

/* elementwise.c's forms: gelu_tanh as x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3), which
 * does not cancel for large negative x; silu = x / (1 + exp(-x)) */
__device__ __forceinline__ float ew_activate(int act, float v) {
    if (act == EW_SILU) return v / (1.0f + expf(-v));
    const float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
    return v / (1.0f + expf(-2.0f * u));
}

__global__ void ew_unary_kernel(float *y, const float *x, int64_t n, int act) {
    WK_CUDA_FOR(i, n) y[i] = ew_activate(act, x[i]);
}

__global__ void ew_unary4_kernel(float4 *y, const float4 *x, int64_t n4, int act) {
    WK_CUDA_FOR(u, n4) {
        float4 v = x[u];
        v.x = ew_activate(act, v.x);
        v.y = ew_activate(act, v.y);
        v.z = ew_activate(act, v.z);
        v.w = ew_activate(act, v.w);
        y[u] = v;
    }
}

static wf_status ew_unary(wk_backend *be, wk_tensor *y, const wk_tensor *x, int act,
                          const char *name, wf_err *err) {
    wf_status st;
    if ((st = wk_cuda_check_act(x, name, "x", err))) return st;
    if ((st = wk_cuda_check_act(y, name, "y", err))) return st;
    if ((st = wk_check_same_shape(y, x, name, "y", "x", err))) return st;
    const int64_t n = wk_tensor_numel(x);
    if (n == 0) return WF_OK;
    cudaStream_t s = wk_cuda_of(be)->stream;
    if (n % 4 == 0 && wk_aligned16(x->data) && wk_aligned16(y->data))
        ew_unary4_kernel<<<wk_cuda_blocks(n / 4), WK_CUDA_THREADS, 0, s>>>(
            (float4 *)y->data, (const float4 *)x->data, n / 4, act);
    else
        ew_unary_kernel<<<wk_cuda_blocks(n), WK_CUDA_THREADS, 0, s>>>(
            (float *)y->data, (const float *)x->data, n, act);
    return wk_cuda_launched(err, name);
}

extern "C" wf_status wk_cuda_gelu_tanh(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                       wf_err *err) {
    return ew_unary(be, y, x, EW_GELU_TANH, "gelu_tanh", err);
}

extern "C" wf_status wk_cuda_silu(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err) {
    return ew_unary(be, y, x, EW_SILU, "silu", err);
}

/* ---- convert ---- */

/* widened exactly to f32, narrowed once (f32 holds every narrower value) */
__global__ void ew_convert_kernel(void *y, int yt, const void *x, int xt, int64_t n) {
    WK_CUDA_FOR(i, n) wk_st(y, yt, i, wk_ld(x, xt, i));
}

extern "C" wf_status wk_cuda_convert(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                     wf_err *err) {
    wf_status st;
    char s1[96], s2[96];
    if ((st = wk_cuda_check_dev(x, "convert", "x", err))) return st;
    if ((st = wk_cuda_check_dev(y, "convert", "y", err))) return st;
    if ((st = wk_cuda_check_float(x, "convert", "x", err))) return st;
    if ((st = wk_cuda_check_float(y, "convert", "y", err))) return st;
    const int64_t n = wk_tensor_numel(x);
    if (wk_tensor_numel(y) != n)
        return wf_fail(err, WF_EINVAL,
                       "convert: y shape %s has %lld elements, x shape %s has %lld: expected the "
                       "same count", wk_tensor_shape_str(y, s1, sizeof s1),
                       (long long)wk_tensor_numel(y), wk_tensor_shape_str(x, s2, sizeof s2),
                       (long long)n);
    if (n == 0) return WF_OK;
    cudaStream_t s = wk_cuda_of(be)->stream;
    if (x->dtype == y->dtype && y->data == x->data) return WF_OK;
    /* in place only element over element (same size): anything else overlapping would race (and
     * cudaMemcpyAsync's areas may not overlap at all) */
    const char *xb = (const char *)x->data, *yb = (const char *)y->data;
    const size_t xn = wk_tensor_nbytes(x), yn = wk_tensor_nbytes(y);
    const bool overlap = xb < yb + yn && yb < xb + xn;
    if (overlap && !(xb == yb && xn == yn))
        return wf_fail(err, WF_EINVAL, "convert: y (%s) and x (%s) overlap, not element over "
                       "element; expected separate buffers or the same buffer and element size",
                       wk_dtype_name(y->dtype), wk_dtype_name(x->dtype));
    if (x->dtype == y->dtype) {
        cudaError_t e = cudaMemcpyAsync(y->data, x->data, xn, cudaMemcpyDeviceToDevice, s);
        return e == cudaSuccess ? WF_OK : wk_cuda_fail(err, e, "convert: copy");
    }
    ew_convert_kernel<<<wk_cuda_blocks(n), WK_CUDA_THREADS, 0, s>>>(y->data, y->dtype, x->data,
                                                                   x->dtype, n);
    return wk_cuda_launched(err, "convert");
}

/* ---- fill ---- */

__global__ void ew_fill_kernel(uint32_t *y, int64_t n, uint32_t v) { WK_CUDA_FOR(i, n) y[i] = v; }

__global__ void ew_fill4_kernel(uint4 *y, int64_t n4, uint32_t v) {
    const uint4 q = make_uint4(v, v, v, v);
    WK_CUDA_FOR(i, n4) y[i] = q;
}

extern "C" wf_status wk_cuda_fill(wk_backend *be, wk_tensor *y, float value, wf_err *err) {
    wf_status st;
    if ((st = wk_cuda_check_dev(y, "fill", "y", err))) return st;
    if (y->dtype != WK_F32 && y->dtype != WK_I32)
        return wf_fail(err, WF_EUNSUPPORTED, "fill: y has dtype %s, expected f32 or i32",
                       wk_dtype_name(y->dtype));
    if (y->dtype == WK_I32 && !(value >= -2147483648.0f && value < 2147483648.0f))
        return wf_fail(err, WF_EINVAL, "fill: value %g does not fit the i32 tensor y",
                       (double)value);
    const int64_t n = wk_tensor_numel(y);
    if (n == 0) return WF_OK;
    uint32_t bits;
    if (y->dtype == WK_F32) {
        memcpy(&bits, &value, 4);
    } else {
        int32_t iv = (int32_t)value;
        memcpy(&bits, &iv, 4);
    }
    cudaStream_t s = wk_cuda_of(be)->stream;
    if (bits == 0) {
        cudaError_t e = cudaMemsetAsync(y->data, 0, (size_t)n * 4, s);
        return e == cudaSuccess ? WF_OK : wk_cuda_fail(err, e, "fill: memset");
    }
    int64_t head = 0; /* elements written by the vector kernel */
    if (wk_aligned16(y->data) && n >= 4) {
        head = n / 4 * 4;
        ew_fill4_kernel<<<wk_cuda_blocks(head / 4), WK_CUDA_THREADS, 0, s>>>((uint4 *)y->data,
                                                                            head / 4, bits);
    }
    if (head < n)
        ew_fill_kernel<<<wk_cuda_blocks(n - head), WK_CUDA_THREADS, 0, s>>>(
            (uint32_t *)y->data + head, n - head, bits);
    return wk_cuda_launched(err, "fill");
}

/* ---- gate_residual ---- */

/* x = x + y * gate, the product rounded before the sum (the CPU's mul then add) */
__global__ void ew_gate_kernel(float *x, const float *y, const float *g, int64_t n, wk_idiv D,
                               int per_row) {
    WK_CUDA_FOR(i, n) {
        const int64_t j = per_row ? i : i - wk_idiv_q(i, D) * D.d;
        x[i] = __fadd_rn(x[i], __fmul_rn(y[i], g[j]));
    }
}

__global__ void ew_gate4_kernel(float4 *x, const float4 *y, const float4 *g, int64_t n4,
                                wk_idiv D4, int per_row) {
    WK_CUDA_FOR(u, n4) {
        const int64_t j = per_row ? u : u - wk_idiv_q(u, D4) * D4.d;
        float4 a = x[u];
        const float4 b = y[u], c = g[j];
        a.x = __fadd_rn(a.x, __fmul_rn(b.x, c.x));
        a.y = __fadd_rn(a.y, __fmul_rn(b.y, c.y));
        a.z = __fadd_rn(a.z, __fmul_rn(b.z, c.z));
        a.w = __fadd_rn(a.w, __fmul_rn(b.w, c.w));
        x[u] = a;
    }
}

extern "C" wf_status wk_cuda_gate_residual(wk_backend *be, wk_tensor *x, const wk_tensor *y,
                                           const wk_tensor *gate, wf_err *err) {
    int64_t R = 0, D = 0;
    bool per_row = false;
    wf_status st;
    if ((st = wk_cuda_check_rows(x, y, "gate_residual", "y", "x", &R, &D, err))) return st;
    if ((st = wk_cuda_check_mod(gate, R, D, "gate_residual", "gate", &per_row, err))) return st;
    const int64_t n = R * D;
    if (n == 0) return WF_OK;
    cudaStream_t s = wk_cuda_of(be)->stream;
    if (D % 4 == 0 && wk_aligned16(x->data) && wk_aligned16(y->data) && wk_aligned16(gate->data))
        ew_gate4_kernel<<<wk_cuda_blocks(n / 4), WK_CUDA_THREADS, 0, s>>>(
            (float4 *)x->data, (const float4 *)y->data, (const float4 *)gate->data, n / 4,
            wk_idiv_make(D / 4), per_row);
    else
        ew_gate_kernel<<<wk_cuda_blocks(n), WK_CUDA_THREADS, 0, s>>>(
            (float *)x->data, (const float *)y->data, (const float *)gate->data, n,
            wk_idiv_make(D), per_row);
    return wk_cuda_launched(err, "gate_residual");
}
