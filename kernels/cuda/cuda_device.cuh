/* cuda_device.cuh: device-side helpers shared by the kernels of kernels/cuda/ (C++/nvcc only).
 *
 * wk_ld(p, dt, i): element i of a buffer of float dtype dt as f32 (bf16, f16, fp8 e4m3fn widen
 * exactly, as dtype.h's host conversions do). wk_st_bf16 etc. narrow with round-to-nearest-even.
 * Grid helpers size 1-D launches over int64 element counts.
 */
#ifndef WK_CUDA_DEVICE_CUH
#define WK_CUDA_DEVICE_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdint.h>

#include "../dtype.h"

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

#endif
