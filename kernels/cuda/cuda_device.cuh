/* cuda_device.cuh: device-side helpers shared by the kernels of kernels/cuda/ (C++/nvcc only).
 *
 * wk_ld(p, dt, i): element i of a buffer of float dtype dt as f32 (bf16, f16, fp8 e4m3fn widen
 * exactly, as dtype.h's host conversions do); wk_st(p, dt, i, v) narrows with round-to-nearest-even
 * bit for bit as dtype.h (wk_dev_f32_to_bf16, _f16, _f8e4m3).
 * Grid helpers size 1-D launches over int64 element counts. wk_fdiv / wk_idiv: fast division
 * by a launch-time divisor for index decomposition. wk_warp_sum / wk_warp_max: warp reductions.
 */
#ifndef WK_CUDA_DEVICE_CUH
#define WK_CUDA_DEVICE_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdint.h>

/* The runtime's headers (status.h, dtype.h, tensor.h, backend.h, arena.h) are C and carry no
 * extern "C" of their own: included here first, inside one, every .cu file of the backend links
 * against their C definitions (status.c, dtype.c, tensor.c, backend.c are compiled as C), and
 * C11's _Noreturn reads as C++'s [[noreturn]]. So: include this header before cuda_internal.h. */
#ifndef _Noreturn
#define _Noreturn [[noreturn]]
#define WK_CUDA_NORETURN_SHIM
#endif
extern "C" {
#include "../arena.h"
#include "../backend.h"
#include "../dtype.h"
#include "../tensor.h"
}
#ifdef WK_CUDA_NORETURN_SHIM
#undef _Noreturn
#undef WK_CUDA_NORETURN_SHIM
#endif

__device__ __forceinline__ float wk_ld(const void *p, int dt, int64_t i) {
    switch (dt) {
    case WK_F32: return ((const float *)p)[i];
    case WK_BF16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    case WK_F16: return __half2float(((const __half *)p)[i]);
    case WK_F8E4M3: {
        __nv_fp8_e4m3 v;
        v.__x = ((const __nv_fp8_storage_t *)p)[i];
        return float(v);
    }
    default: return 0.0f;
    }
}

/* 1-D launch over n elements: blocks of WK_CUDA_THREADS, capped grid with a grid-stride loop. */
#define WK_CUDA_THREADS 256
static inline unsigned wk_cuda_blocks(int64_t n) {
    int64_t b = (n + WK_CUDA_THREADS - 1) / WK_CUDA_THREADS;
    if (b < 1) b = 1;
    if (b > 65535LL * 32) b = 65535LL * 32;
    return (unsigned)b;
}
#define WK_CUDA_FOR(i, n)                                                                        \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                   \
         i += (int64_t)gridDim.x * blockDim.x)

/* ---- narrowing: f32 -> bf16 / f16 / fp8 e4m3fn, round to nearest even, bit for bit as
 * dtype.h's host conversions (same NaN, overflow and subnormal rules; integer arithmetic, so
 * no device rounding mode or flush-to-zero setting can change a result) ---- */
__device__ __forceinline__ uint16_t wk_dev_f32_to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

__device__ __forceinline__ uint16_t wk_dev_f32_to_f16(float f) {
    const uint32_t u = __float_as_uint(f), a = u & 0x7fffffffu;
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
    if (a >= 0x47800000u) return (uint16_t)(sign | 0x7c00u); /* >= 65536: inf */
    if (a < 0x38800000u) /* below 2^-14: a multiple of 2^-24, the scaling is exact */
        return (uint16_t)(sign | (uint16_t)rintf(__uint_as_float(a) * 16777216.0f));
    const uint32_t m = a + 0xfffu + ((a >> 13) & 1u); /* RNE at bit 13 */
    const uint32_t e = (m >> 23) - 112u;
    if (e >= 0x1fu) return (uint16_t)(sign | 0x7c00u);
    return (uint16_t)(sign | (e << 10) | ((m >> 13) & 0x3ffu));
}

/* e4m3fn: no inf; |x| rounding past 448 (above 464, the tie that rounds to 448) is NaN, as
 * torch's cast (no saturation); inf and NaN give NaN with the input's sign */
__device__ __forceinline__ uint8_t wk_dev_f32_to_f8e4m3(float f) {
    const uint32_t u = __float_as_uint(f), a = u & 0x7fffffffu;
    const uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    if (a >= 0x7f800000u || a > 0x43e80000u) return (uint8_t)(sign | 0x7fu); /* > 464 */
    if (a < 0x3c800000u) /* below 2^-6: multiples of 2^-9 (8 * 2^-9 is the first normal) */
        return (uint8_t)(sign | (uint8_t)rintf(__uint_as_float(a) * 512.0f));
    const uint32_t m = a + 0x7ffffu + ((a >> 20) & 1u); /* RNE at bit 20: 3 mantissa bits */
    const uint32_t e = (m >> 23) - 120u, man = (m >> 20) & 7u;
    if (e > 15u || (e == 15u && man == 7u)) return (uint8_t)(sign | 0x7fu);
    return (uint8_t)(sign | (e << 3) | man);
}

/* element i of a buffer of float dtype dt <- v, narrowed as above */
__device__ __forceinline__ void wk_st(void *p, int dt, int64_t i, float v) {
    switch (dt) {
    case WK_F32: ((float *)p)[i] = v; break;
    case WK_BF16: ((uint16_t *)p)[i] = wk_dev_f32_to_bf16(v); break;
    case WK_F16: ((uint16_t *)p)[i] = wk_dev_f32_to_f16(v); break;
    case WK_F8E4M3: ((uint8_t *)p)[i] = wk_dev_f32_to_f8e4m3(v); break;
    default: break;
    }
}

/* ---- fast unsigned division by a divisor fixed at launch (index decomposition) ----
 * Division by invariant integers (Granlund & Montgomery 1994, fig. 4.1): for 1 <= d < 2^31,
 * s = ceil(log2 d), m = floor(2^32 (2^s - d) / d) + 1; then n / d = (mulhi(n, m) + n) >> s for
 * every 32-bit n (the sum taken in 64 bits). Made on the host, used on the device. */
typedef struct wk_fdiv {
    uint32_t d, m, s;
} wk_fdiv;

static inline wk_fdiv wk_fdiv_make(uint32_t d) {
    wk_fdiv f;
    f.d = d ? d : 1;
    f.s = 0;
    while (f.s < 31 && ((uint64_t)1 << f.s) < f.d) f.s++;
    f.m = (uint32_t)((((uint64_t)1 << 32) * (((uint64_t)1 << f.s) - f.d)) / f.d + 1);
    return f;
}

__device__ __forceinline__ uint32_t wk_fdiv_q(wk_fdiv f, uint32_t n) {
    return (uint32_t)(((uint64_t)__umulhi(n, f.m) + n) >> f.s);
}

/* n / d for int64 n >= 0 and d >= 1: the 32-bit multiply-shift when both fit (every index of a
 * tensor under 2^32 elements), a 64-bit division otherwise. */
typedef struct wk_idiv {
    wk_fdiv f;
    int64_t d;
    int fast; /* d < 2^31 */
} wk_idiv;

static inline wk_idiv wk_idiv_make(int64_t d) {
    wk_idiv v;
    v.d = d > 0 ? d : 1;
    v.fast = v.d < ((int64_t)1 << 31);
    v.f = wk_fdiv_make(v.fast ? (uint32_t)v.d : 1u);
    return v;
}

__device__ __forceinline__ int64_t wk_idiv_q(int64_t n, const wk_idiv &v) {
    if (v.fast && (uint64_t)n <= 0xffffffffull) return (int64_t)wk_fdiv_q(v.f, (uint32_t)n);
    return n / v.d;
}

/* ---- warp reductions (all 32 lanes take part) ---- */
__device__ __forceinline__ float wk_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float wk_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* 16-byte alignment of a device pointer (float4 / uint4 access) */
static inline bool wk_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* ---- host-side argument checks shared by the op files (defined in cuda_elementwise.cu) ----
 * wk_cuda_check_float: t has a float storage dtype (not i32).
 * wk_cuda_check_rows: x and y are f32 CUDA tensors of one shape, at least 1-D; *R rows of *D
 *   (the last dim); messages name the arguments xn, yn as the CPU's fused.c does.
 * wk_cuda_check_mod: a modulation vector v, f32 on the device, last dim D, one row ([D], [1, D])
 *   or R rows; *per_row says which. */
wf_status wk_cuda_check_float(const wk_tensor *t, const char *op, const char *arg, wf_err *err);
wf_status wk_cuda_check_rows(const wk_tensor *y, const wk_tensor *x, const char *op,
                             const char *xn, const char *yn, int64_t *R, int64_t *D, wf_err *err);
wf_status wk_cuda_check_mod(const wk_tensor *v, int64_t R, int64_t D, const char *op,
                            const char *arg, bool *per_row, wf_err *err);

#endif
