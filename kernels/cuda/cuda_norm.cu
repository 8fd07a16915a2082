/* cuda_norm.cu: the CUDA kernels of the row normalisations and their fused forms: layer_norm,
 * rms_norm, rms_norm_l2, rms_norm_l2_silu, ln_modulate, softmax, rope, rms_norm_rope.
 *
 * What it is: one engine for every op that reduces over the last dim C of a row. A row is read
 * once into registers (float4 loads where x, y are 16-byte aligned and C % 4 == 0), reduced in
 * f32 (per-thread partial sums, then warp shuffles, then across warps through shared memory),
 * and written once: one warp per row for C <= 256 (1024 when aligned; 8 rows per 256-thread
 * block), one block of up to 1024 threads per row, 16 values each, for C <= 16384 (the DiT's
 * 5120 and 13824 fit), and for longer rows a block that reads the row again per pass. Kernels
 * are instantiated per family (LayerNorm, RMS, softmax) and row shape: 15 cached, 3 long-row.
 * The statistics follow kernels/cpu/norm.c and softmax.c: population variance in two passes over
 * the registers (the mean first, then the squared deviations), 1 / sqrt(var + eps); rms 1 /
 * sqrt(mean(x^2) + eps); the VAE's sqrt(C) / max(||x||, 1e-12); softmax max-subtracted, an all
 * -inf row giving zeros. The fused forms round where the unfused sequence rounds: ln_modulate =
 * f32 LayerNorm, then an f32 multiply by scale1 and an f32 add of shift (__fmul_rn / __fadd_rn,
 * never contracted into an FMA); rms_norm_rope = the f32 rms_norm output, then rope.c's rotation
 * of the pair in double, rounded once (bit for bit rope.c's arithmetic: the double products of two
 * floats are exact); rms_norm_l2_silu = the f32 norm, then x / (1 + exp(-x)). Weights (w, b,
 * gamma) are any float dtype, widened to f32 once per call into the backend workspace when
 * narrower (norm.c's way, through wk_cuda_convert on the stream). y may alias x (a row is in
 * registers, or each element is read and written by one thread in the long-row kernel, after a
 * barrier).
 * The CPU reduces in double: the GPU's f32 sums differ from it by a few ulp of the output (the
 * op test's bound for these rows says so).
 * What it is not: the attention softmax (cuda_attention.cu has its own online form).
 * Tested by: tests/test_backend_ops.c, rows layer_norm, rms_norm, rms_norm_l2, rms_norm_l2_silu,
 * ln_modulate, softmax, rope, rms_norm_rope (C = 5..13824, aligned and not, every weight dtype).
 */
#include <cuda_runtime.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "cuda_device.cuh"
#include "cuda_internal.h"

enum { NK_LN = 0, NK_LN_MOD, NK_RMS, NK_L2, NK_L2_SILU, NK_RMS_ROPE, NK_SOFTMAX };
/* kernel families (a template parameter: each instance holds only its family's code) */
enum { NF_LN = 0, NF_RMS, NF_SOFTMAX };

static int nk_family(int kind) {
    return kind == NK_SOFTMAX ? NF_SOFTMAX : kind <= NK_LN_MOD ? NF_LN : NF_RMS;
}

typedef struct norm_args {
    const float *x;
    float *y;
    int64_t rows;
    int C, kind;
    const float *w, *b;   /* affine weight / bias, or gamma (w), f32 (widened); NULL: none */
    const float *s1, *sh; /* ln_modulate: scale1, shift; row strides 0 or C */
    int64_t s1_rs, sh_rs;
    const float *cs, *sn; /* rms_norm_rope: cos, sin [rows, HD] */
    int HD;
    float eps;
} norm_args;

/* ---- per-row pieces, shared by the kernels ---- */

/* The sum of v over the group: a warp, or the whole block (blockDim.x a multiple of 32). red
 * holds 32 floats of shared memory; the leading barrier lets a call reuse it safely. */
template <bool WARP>
__device__ __forceinline__ float nk_sum(float v, float *red) {
    v = wk_warp_sum(v);
    if (WARP) return v;
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) red[wid] = v;
    __syncthreads();
    return wk_warp_sum(lane < nw ? red[lane] : 0.0f);
}

template <bool WARP>
__device__ __forceinline__ float nk_max(float v, float *red) {
    v = wk_warp_max(v);
    if (WARP) return v;
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) red[wid] = v;
    __syncthreads();
    return wk_warp_max(lane < nw ? red[lane] : -INFINITY);
}

/* The row's scale from its reduced sum: squared deviations (LN), squares (RMS, L2). */
__device__ __forceinline__ float nk_scale(const norm_args &a, float sq) {
    if (a.kind == NK_L2 || a.kind == NK_L2_SILU)
        return sqrtf((float)a.C) / fmaxf(sqrtf(sq), 1e-12f);
    return 1.0f / sqrtf(sq / (float)a.C + a.eps); /* LN (population variance), RMS */
}

/* Output element i of row r from its input v (softmax: its exp) and the row's m (mean or max)
 * and s (scale, or the softmax sum); rope is applied afterwards, per pair. */
template <int F>
__device__ __forceinline__ float nk_elem(const norm_args &a, int64_t r, int i, float v, float m,
                                         float s) {
    float n;
    if (F == NF_SOFTMAX) return m == -INFINITY ? 0.0f : v / s;
    if (F == NF_LN) {
        if (a.kind == NK_LN_MOD) {
            n = __fmul_rn(v - m, s);                    /* layer_norm, rounded to f32 */
            n = __fmul_rn(n, a.s1[r * a.s1_rs + i]);    /* mul */
            return __fadd_rn(n, a.sh[r * a.sh_rs + i]); /* add */
        }
        n = (v - m) * s;
        if (a.w) n *= a.w[i];
        if (a.b) n += a.b[i];
        return n;
    }
    n = v * s; /* RMS, L2, L2_SILU, RMS_ROPE */
    if (a.w) n = __fmul_rn(n, a.w[i]);
    if (a.kind == NK_L2_SILU) n = n / (1.0f + expf(-n));
    return n;
}

/* rope.c's rotation of the pair (n0, n1) at row r, elements i, i + 1 (i even): cos from the
 * even slot, sin from the odd one, in double, rounded once. */
__device__ __forceinline__ void nk_rope(const norm_args &a, int64_t r, int i, float &n0,
                                        float &n1) {
    const int k = i % a.HD;
    const double c = a.cs[r * a.HD + k], s = a.sn[r * a.HD + k + 1];
    const double x0 = n0, x1 = n1;
    n0 = (float)(x0 * c - x1 * s);
    n1 = (float)(x0 * s + x1 * c);
}

/* ---- the register-cached kernel: a row in NV units of U floats per thread ----
 * Thread t of a group of G (a warp, or the block) holds units t, t + G, ..., t + (NV-1) G of
 * the row: coalesced loads, every value in registers from the load to the store. */

/* The row's statistics: m (mean; max for softmax, whose v become their exps) and s. */
template <int NV, int U, bool WARP, int F>
__device__ __forceinline__ void nk_stats(const norm_args &a, float *v, int t, int G, int nu,
                                         float *red, float &m, float &s) {
    float acc = 0.0f;
    m = 0.0f;
    if (F == NF_SOFTMAX) {
        float mx = -INFINITY;
#pragma unroll
        for (int k = 0; k < NV; k++)
            if (t + k * G < nu)
#pragma unroll
                for (int q = 0; q < U; q++) mx = fmaxf(mx, v[k * U + q]);
        m = nk_max<WARP>(mx, red);
#pragma unroll
        for (int k = 0; k < NV; k++)
            if (t + k * G < nu)
#pragma unroll
                for (int q = 0; q < U; q++) acc += v[k * U + q] = expf(v[k * U + q] - m);
        s = nk_sum<WARP>(acc, red);
    } else if (F == NF_LN) {
#pragma unroll
        for (int k = 0; k < NV * U; k++) acc += v[k]; /* padding units hold zeros */
        m = nk_sum<WARP>(acc, red) / (float)a.C;
        acc = 0.0f;
#pragma unroll
        for (int k = 0; k < NV; k++)
            if (t + k * G < nu)
#pragma unroll
                for (int q = 0; q < U; q++) {
                    const float d = v[k * U + q] - m;
                    acc += d * d;
                }
        s = nk_scale(a, nk_sum<WARP>(acc, red));
    } else {
#pragma unroll
        for (int k = 0; k < NV * U; k++) acc += v[k] * v[k];
        s = nk_scale(a, nk_sum<WARP>(acc, red));
    }
}

template <int NV, int U, bool WARP, int F>
__device__ __forceinline__ void nk_row(const norm_args &a, int64_t r, int t, int G, float *red) {
    const float *xr = a.x + r * a.C;
    float *yr = a.y + r * a.C;
    const int nu = U == 4 ? a.C >> 2 : a.C; /* units in the row */
    float v[NV * U];
#pragma unroll
    for (int k = 0; k < NV; k++) {
        const int u = t + k * G;
        if (U == 4) {
            const float4 q = u < nu ? reinterpret_cast<const float4 *>(xr)[u]
                                    : make_float4(0.f, 0.f, 0.f, 0.f);
            v[4 * k] = q.x, v[4 * k + 1] = q.y, v[4 * k + 2] = q.z, v[4 * k + 3] = q.w;
        } else {
            v[k] = u < nu ? xr[u] : 0.0f;
        }
    }
    float m, s;
    nk_stats<NV, U, WARP, F>(a, v, t, G, nu, red, m, s);
    const bool rope = F == NF_RMS && a.kind == NK_RMS_ROPE;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        const int u = t + k * G;
        if (U == 4) {
            if (u >= nu) continue;
            float o[4];
#pragma unroll
            for (int q = 0; q < 4; q++) o[q] = nk_elem<F>(a, r, 4 * u + q, v[4 * k + q], m, s);
            if (rope) {
                nk_rope(a, r, 4 * u, o[0], o[1]);
                nk_rope(a, r, 4 * u + 2, o[2], o[3]);
            }
            reinterpret_cast<float4 *>(yr)[u] = make_float4(o[0], o[1], o[2], o[3]);
        } else {
            float o = u < nu ? nk_elem<F>(a, r, u, v[k], m, s) : 0.0f;
            if (rope) { /* the pair's partner is the neighbouring lane (G is even) */
                const float p = __shfl_xor_sync(0xffffffffu, o, 1);
                float n0 = u & 1 ? p : o, n1 = u & 1 ? o : p;
                if (u < nu) nk_rope(a, r, u & ~1, n0, n1);
                o = u & 1 ? n1 : n0;
            }
            if (u < nu) yr[u] = o;
        }
    }
}

template <int NV, int U, bool WARP, int F>
__global__ void __launch_bounds__(WARP ? 256 : 1024) norm_cached_kernel(norm_args a) {
    __shared__ float red[32];
    if (WARP) {
        const int wpb = blockDim.x >> 5;
        for (int64_t r = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5); r < a.rows;
             r += (int64_t)gridDim.x * wpb)
            nk_row<NV, U, true, F>(a, r, threadIdx.x & 31, 32, red);
    } else {
        for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x)
            nk_row<NV, U, false, F>(a, r, threadIdx.x, blockDim.x, red);
    }
}

/* ---- the long-row kernel (C > 16384): one block per row, the row read again per pass ---- */

template <int F>
__device__ void nk_row_long(const norm_args &a, int64_t r, float *red) {
    const float *xr = a.x + r * a.C;
    float *yr = a.y + r * a.C;
    const int t = threadIdx.x, G = blockDim.x;
    float m = 0.0f, s, acc = 0.0f;
    if (F == NF_SOFTMAX) {
        float mx = -INFINITY;
        for (int i = t; i < a.C; i += G) mx = fmaxf(mx, xr[i]);
        m = nk_max<false>(mx, red);
        if (m != -INFINITY)
            for (int i = t; i < a.C; i += G) acc += expf(xr[i] - m);
        s = nk_sum<false>(acc, red);
    } else if (F == NF_LN) {
        for (int i = t; i < a.C; i += G) acc += xr[i];
        m = nk_sum<false>(acc, red) / (float)a.C;
        acc = 0.0f;
        for (int i = t; i < a.C; i += G) {
            const float d = xr[i] - m;
            acc += d * d;
        }
        s = nk_scale(a, nk_sum<false>(acc, red));
    } else {
        for (int i = t; i < a.C; i += G) acc += xr[i] * xr[i];
        s = nk_scale(a, nk_sum<false>(acc, red));
    }
    /* every thread passed the last barrier: all reads of the stats passes are done */
    for (int base = 0; base < a.C; base += G) { /* uniform trip count: the shuffle below */
        const int i = base + t;
        const bool ok = i < a.C;
        float v = ok ? xr[i] : 0.0f;
        if (F == NF_SOFTMAX && ok && m != -INFINITY) v = expf(v - m);
        float o = ok ? nk_elem<F>(a, r, i, v, m, s) : 0.0f;
        if (F == NF_RMS && a.kind == NK_RMS_ROPE) {
            const float p = __shfl_xor_sync(0xffffffffu, o, 1);
            float n0 = i & 1 ? p : o, n1 = i & 1 ? o : p;
            if (ok) nk_rope(a, r, i & ~1, n0, n1);
            o = i & 1 ? n1 : n0;
        }
        if (ok) yr[i] = o;
    }
}

template <int F>
__global__ void __launch_bounds__(1024) norm_long_kernel(norm_args a) {
    __shared__ float red[32];
    for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x) nk_row_long<F>(a, r, red);
}

/* ---- launch ---- */

static unsigned nk_grid(int64_t blocks) {
    const int64_t cap = 65535LL * 32;
    return (unsigned)(blocks < 1 ? 1 : blocks > cap ? cap : blocks);
}

/* The kernel for C and the alignment: a warp per row (8 rows per block) up to 1024 (256
 * unaligned), a block per row with 16 values per thread up to 16384, the long-row kernel past
 * that. */
template <int F>
static void norm_launch_family(const norm_args *a, cudaStream_t s) {
    const int C = a->C;
    const bool vec = C % 4 == 0 && wk_aligned16(a->x) && wk_aligned16(a->y);
    if (C <= 256 || (vec && C <= 1024)) {
        const unsigned g = nk_grid((a->rows + 7) / 8);
        if (vec && C <= 256) norm_cached_kernel<2, 4, true, F><<<g, 256, 0, s>>>(*a);
        else if (vec) norm_cached_kernel<8, 4, true, F><<<g, 256, 0, s>>>(*a);
        else norm_cached_kernel<8, 1, true, F><<<g, 256, 0, s>>>(*a);
    } else if (C <= 16384) {
        const int threads = (C + 16 * 32 - 1) / (16 * 32) * 32; /* 32 .. 1024 */
        if (vec) norm_cached_kernel<4, 4, false, F><<<nk_grid(a->rows), threads, 0, s>>>(*a);
        else norm_cached_kernel<16, 1, false, F><<<nk_grid(a->rows), threads, 0, s>>>(*a);
    } else {
        norm_long_kernel<F><<<nk_grid(a->rows), 1024, 0, s>>>(*a);
    }
}

static wf_status norm_launch(wk_backend *be, const norm_args *a, const char *op, wf_err *err) {
    if (a->rows == 0 || a->C == 0) return WF_OK;
    cudaStream_t s = wk_cuda_of(be)->stream;
    switch (nk_family(a->kind)) {
    case NF_LN: norm_launch_family<NF_LN>(a, s); break;
    case NF_RMS: norm_launch_family<NF_RMS>(a, s); break;
    default: norm_launch_family<NF_SOFTMAX>(a, s); break;
    }
    return wk_cuda_launched(err, op);
}

/* The f32 data of the per-channel vectors v0, v1 (each may be NULL): their own data when f32,
 * else widened into the backend workspace (norm.c's norm_widen, on the stream). */
static wf_status norm_widen(wk_backend *be, const wk_tensor *v0, const wk_tensor *v1, int64_t C,
                            const float **o0, const float **o1, wf_err *err) {
    const wk_tensor *v[2] = {v0, v1};
    const float **o[2] = {o0, o1};
    size_t need = 0;
    for (int i = 0; i < 2; i++)
        if (v[i] && v[i]->dtype != WK_F32) need += (size_t)C;
    float *ws = NULL;
    wf_status st;
    if (need && (st = wk_backend_workspace(be, need * sizeof(float), (void **)&ws, err)))
        return st;
    for (int i = 0; i < 2; i++) {
        *o[i] = NULL;
        if (!v[i]) continue;
        if (v[i]->dtype == WK_F32) {
            *o[i] = (const float *)v[i]->data;
            continue;
        }
        wk_tensor dst = wk_tensor_1d(WK_F32, ws, C);
        dst.device = WK_DEV_CUDA;
        if ((st = wk_cuda_convert(be, &dst, v[i], err))) return st;
        *o[i] = ws;
        ws += C;
    }
    return WF_OK;
}

/* ---- argument checks (norm.c's, with the device check) ---- */

/* x and y f32 CUDA tensors of one shape, at least 1-D; rows and C (the last dim, < 2^31). */
static wf_status norm_check(const wk_tensor *y, const wk_tensor *x, const char *op,
                            norm_args *a, wf_err *err) {
    wf_status st;
    char s[96];
    if ((st = wk_cuda_check_act(x, op, "x", err))) return st;
    if ((st = wk_cuda_check_act(y, op, "y", err))) return st;
    if ((st = wk_check_same_shape(y, x, op, "y", "x", err))) return st;
    if (x->ndim < 1)
        return wf_fail(err, WF_EINVAL, "%s: x has shape %s, expected at least 1 dimension", op,
                       wk_tensor_shape_str(x, s, sizeof s));
    const int64_t C = x->shape[x->ndim - 1];
    if (C > INT_MAX)
        return wf_fail(err, WF_EUNSUPPORTED, "%s: x has shape %s: a last dim above 2^31 - 1 is "
                       "not supported", op, wk_tensor_shape_str(x, s, sizeof s));
    memset(a, 0, sizeof *a);
    a->x = (const float *)x->data;
    a->y = (float *)y->data;
    a->C = (int)C;
    a->rows = C > 0 ? wk_tensor_numel(x) / C : 0;
    return WF_OK;
}

/* A per-channel vector of any float dtype on the device: [C], or [C, 1, ...] (the Wan-VAE's
 * gamma); NULL passes. */
static wf_status norm_check_vec(const wk_tensor *v, int64_t C, const char *op, const char *arg,
                                wf_err *err) {
    if (!v) return WF_OK;
    wf_status st;
    if ((st = wk_cuda_check_dev(v, op, arg, err))) return st;
    if ((st = wk_cuda_check_float(v, op, arg, err))) return st;
    bool ok = v->ndim >= 1 && v->shape[0] == C;
    for (int i = 1; ok && i < v->ndim; i++) ok = v->shape[i] == 1;
    if (ok) return WF_OK;
    char s[96];
    return wf_fail(err, WF_EINVAL, "%s: %s has shape %s, expected [%lld] (or [%lld, 1, ...])", op,
                   arg, wk_tensor_shape_str(v, s, sizeof s), (long long)C, (long long)C);
}

/* ---- the ops ---- */

extern "C" wf_status wk_cuda_layer_norm(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                        const wk_tensor *w, const wk_tensor *b, float eps,
                                        wf_err *err) {
    norm_args a;
    memset(&a, 0, sizeof a);
    wf_status st;
    if ((st = norm_check(y, x, "layer_norm", &a, err))) return st;
    if ((st = norm_check_vec(w, a.C, "layer_norm", "w", err))) return st;
    if ((st = norm_check_vec(b, a.C, "layer_norm", "b", err))) return st;
    a.kind = NK_LN;
    a.eps = eps;
    if ((st = norm_widen(be, w, b, a.C, &a.w, &a.b, err))) return st;
    return norm_launch(be, &a, "layer_norm", err);
}

/* rms_norm, rms_norm_l2, rms_norm_l2_silu: y = x * scale(row) [* w] [then silu] */
static wf_status norm_rms(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                          int kind, float eps, const char *name, const char *wname, wf_err *err) {
    norm_args a;
    memset(&a, 0, sizeof a);
    wf_status st;
    if ((st = norm_check(y, x, name, &a, err))) return st;
    if ((st = norm_check_vec(w, a.C, name, wname, err))) return st;
    a.kind = kind;
    a.eps = eps;
    if ((st = norm_widen(be, w, NULL, a.C, &a.w, &a.b, err))) return st;
    return norm_launch(be, &a, name, err);
}

extern "C" wf_status wk_cuda_rms_norm(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                      const wk_tensor *w, float eps, wf_err *err) {
    return norm_rms(be, y, x, w, NK_RMS, eps, "rms_norm", "w", err);
}

extern "C" wf_status wk_cuda_rms_norm_l2(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                         const wk_tensor *gamma, wf_err *err) {
    return norm_rms(be, y, x, gamma, NK_L2, 0.0f, "rms_norm_l2", "gamma", err);
}

extern "C" wf_status wk_cuda_rms_norm_l2_silu(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                              const wk_tensor *gamma, wf_err *err) {
    return norm_rms(be, y, x, gamma, NK_L2_SILU, 0.0f, "rms_norm_l2_silu", "gamma", err);
}

extern "C" wf_status wk_cuda_softmax(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                     wf_err *err) {
    norm_args a;
    memset(&a, 0, sizeof a);
    wf_status st;
    if ((st = norm_check(y, x, "softmax", &a, err))) return st;
    a.kind = NK_SOFTMAX;
    return norm_launch(be, &a, "softmax", err);
}

extern "C" wf_status wk_cuda_ln_modulate(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                         const wk_tensor *scale1, const wk_tensor *shift,
                                         float eps, wf_err *err) {
    int64_t R = 0, D = 0;
    bool sc_rows = false, sh_rows = false;
    wf_status st;
    norm_args a;
    memset(&a, 0, sizeof a);
    if ((st = wk_cuda_check_rows(y, x, "ln_modulate", "x", "y", &R, &D, err))) return st;
    if ((st = wk_cuda_check_mod(scale1, R, D, "ln_modulate", "scale1", &sc_rows, err))) return st;
    if ((st = wk_cuda_check_mod(shift, R, D, "ln_modulate", "shift", &sh_rows, err))) return st;
    if ((st = norm_check(y, x, "ln_modulate", &a, err))) return st;
    a.kind = NK_LN_MOD;
    a.eps = eps;
    a.s1 = (const float *)scale1->data;
    a.sh = (const float *)shift->data;
    a.s1_rs = sc_rows ? D : 0;
    a.sh_rs = sh_rows ? D : 0;
    return norm_launch(be, &a, "ln_modulate", err);
}

/* cos and sin: f32 [L, HD] on the device (rope.c's and fused.c's messages) */
static wf_status rope_check_tables(const wk_tensor *x, const wk_tensor *cos, const wk_tensor *sin,
                                   const char *op, wf_err *err) {
    wf_status st;
    char s1[96], s2[96];
    const wk_tensor *tab[2] = {cos, sin};
    for (int i = 0; i < 2; i++) {
        const char *nm = i ? "sin" : "cos";
        if ((st = wk_cuda_check_act(tab[i], op, nm, err))) return st;
        if (tab[i]->ndim != 2 || tab[i]->shape[0] != x->shape[0] || tab[i]->shape[1] != x->shape[2])
            return wf_fail(err, WF_EINVAL, "%s: %s has shape %s, expected [%lld, %lld] (x %s)",
                           op, nm, wk_tensor_shape_str(tab[i], s1, sizeof s1),
                           (long long)x->shape[0], (long long)x->shape[2],
                           wk_tensor_shape_str(x, s2, sizeof s2));
    }
    return WF_OK;
}

/* x, y f32 [L, NH, HD] on the device, HD even */
static wf_status rope_check_x(const wk_tensor *y, const wk_tensor *x, const char *op,
                              wf_err *err) {
    wf_status st;
    char s[96];
    if ((st = wk_cuda_check_act(x, op, "x", err))) return st;
    if ((st = wk_cuda_check_act(y, op, "y", err))) return st;
    if ((st = wk_check_ndim(x, 3, op, "x [L, NH, HD]", err))) return st;
    if ((st = wk_check_same_shape(y, x, op, "y", "x", err))) return st;
    if (x->shape[2] % 2 != 0)
        return wf_fail(err, WF_EINVAL, "%s: x has shape %s, expected an even head dim", op,
                       wk_tensor_shape_str(x, s, sizeof s));
    if (x->shape[1] * x->shape[2] > INT_MAX)
        return wf_fail(err, WF_EUNSUPPORTED, "%s: x has shape %s: NH*HD above 2^31 - 1 is not "
                       "supported", op, wk_tensor_shape_str(x, s, sizeof s));
    return WF_OK;
}

extern "C" wf_status wk_cuda_rms_norm_rope(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                           const wk_tensor *w, const wk_tensor *cos,
                                           const wk_tensor *sin, float eps, wf_err *err) {
    wf_status st;
    char s1[96], s2[96];
    norm_args a;
    memset(&a, 0, sizeof a);
    if ((st = rope_check_x(y, x, "rms_norm_rope", err))) return st;
    const int64_t NH = x->shape[1], HD = x->shape[2];
    if (w) {
        if ((st = wk_cuda_check_dev(w, "rms_norm_rope", "w", err))) return st;
        if (w->dtype >= WK_DTYPE_COUNT || w->ndim != 1 || w->shape[0] != NH * HD)
            return wf_fail(err, WF_EINVAL, "rms_norm_rope: w has shape %s and dtype %s, expected "
                           "a float [%lld] (NH*HD of x %s)", wk_tensor_shape_str(w, s1, sizeof s1),
                           wk_dtype_name(w->dtype), (long long)(NH * HD),
                           wk_tensor_shape_str(x, s2, sizeof s2));
    }
    if ((st = rope_check_tables(x, cos, sin, "rms_norm_rope", err))) return st;
    /* rows are tokens: the RMS over all NH*HD values of one */
    wk_tensor x2 = wk_tensor_2d(WK_F32, x->data, x->shape[0], NH * HD);
    wk_tensor y2 = wk_tensor_2d(WK_F32, y->data, x->shape[0], NH * HD);
    x2.device = y2.device = WK_DEV_CUDA;
    if ((st = norm_check(&y2, &x2, "rms_norm_rope", &a, err))) return st;
    a.kind = NK_RMS_ROPE;
    a.eps = eps;
    if ((st = norm_widen(be, w, NULL, a.C, &a.w, &a.b, err))) return st;
    a.cs = (const float *)cos->data;
    a.sn = (const float *)sin->data;
    a.HD = (int)HD;
    return norm_launch(be, &a, "rms_norm_rope", err);
}

/* ---- rope alone: one thread per pair ---- */

__global__ void rope_kernel(float *y, const float *x, const float *cs, const float *sn,
                            int64_t npairs, wk_idiv pairs_per_token, int HD) {
    WK_CUDA_FOR(p, npairs) {
        const int64_t l = wk_idiv_q(p, pairs_per_token);                  /* token */
        const int k = (int)(2 * (p - l * pairs_per_token.d)) % HD;      /* the pair's slot */
        const double c = cs[l * HD + k], s = sn[l * HD + k + 1];
        const double x0 = x[2 * p], x1 = x[2 * p + 1]; /* read before written: y may alias x */
        y[2 * p] = (float)(x0 * c - x1 * s);
        y[2 * p + 1] = (float)(x0 * s + x1 * c);
    }
}

extern "C" wf_status wk_cuda_rope(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                  const wk_tensor *cos, const wk_tensor *sin, wf_err *err) {
    wf_status st;
    if ((st = wk_cuda_check_act(cos, "rope", "cos", err))) return st;
    if ((st = wk_cuda_check_act(sin, "rope", "sin", err))) return st;
    if ((st = rope_check_x(y, x, "rope", err))) return st;
    if ((st = rope_check_tables(x, cos, sin, "rope", err))) return st;
    const int64_t L = x->shape[0], NH = x->shape[1], HD = x->shape[2];
    const int64_t npairs = L * NH * HD / 2;
    if (npairs == 0) return WF_OK;
    cudaStream_t s = wk_cuda_of(be)->stream;
    rope_kernel<<<wk_cuda_blocks(npairs), WK_CUDA_THREADS, 0, s>>>(
        (float *)y->data, (const float *)x->data, (const float *)cos->data,
        (const float *)sin->data, npairs, wk_idiv_make(NH * HD / 2), (int)HD);
    return wk_cuda_launched(err, "rope");
}
