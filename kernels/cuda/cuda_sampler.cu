/* cuda_sampler.cu: the CUDA kernels of the samplers' and guidance's updates: scale_add,
 * guidance, unipc_update and first_nonfinite (semantics in backend.h, the CPU reference in
 * kernels/cpu/sampler_ops.c).
 *
 * What it is: one thread per element, grid-stride over int64 counts. Every product, difference
 * and quotient is an explicitly rounded intrinsic (__fmul_rn, __fadd_rn, __fsub_rn, __fdiv_rn:
 * IEEE round-to-nearest, never contracted into an FMA whatever nvcc's --fmad), in the order of
 * the CPU's expressions, so that the latents a GPU run's sampler produces are the CPU's bits for
 * the same velocities. first_nonfinite is a grid-stride scan with an atomicMin on an index in the
 * backend workspace (a NaN is rare: the atomics cost nothing in the normal case), then one 8-byte
 * download, which waits for the stream.
 * What it is not: the sampler (worker/engine/sampler.c), or fused with the DiT's output head.
 * Tested by: tests/test_backend_ops.c, rows scale_add, guidance, unipc_update, first_nonfinite
 * (CPU against CUDA, bound 0: the same roundings in the same order) on a GPU machine, and
 * tests/test_gpu_pipeline.c (whole generations).
 */
#include <cuda_runtime.h>
#include <math.h>

#include "cuda_device.cuh"
#include "cuda_internal.h"
#include "../op_check.h"

/* ---- scale_add: y = a + s b ---- */

__global__ void smp_scale_add_kernel(float *y, const float *a, const float *b, float s,
                                     int64_t n) {
    WK_CUDA_FOR(e, n) y[e] = __fadd_rn(a[e], __fmul_rn(s, b[e]));
}

extern "C" wf_status wk_cuda_scale_add(wk_backend *be, wk_tensor *y, const wk_tensor *a,
                                       const wk_tensor *b, float s, wf_err *err) {
    wf_status st = wk_check_update(wk_cuda_check_dev, y, a, b, "scale_add", "a", "b", err);
    if (st) return st;
    const int64_t n = wk_tensor_numel(y);
    if (n == 0) return WF_OK;
    smp_scale_add_kernel<<<wk_cuda_blocks(n), WK_CUDA_THREADS, 0, wk_cuda_of(be)->stream>>>(
        (float *)y->data, (const float *)a->data, (const float *)b->data, s, n);
    return wk_cuda_launched(err, "scale_add");
}

/* ---- guidance: y = u + g (c - u) ---- */

__global__ void smp_guidance_kernel(float *y, const float *u, const float *c, float g,
                                    int64_t n) {
    WK_CUDA_FOR(e, n) {
        const float ue = u[e];
        y[e] = __fadd_rn(ue, __fmul_rn(g, __fsub_rn(c[e], ue)));
    }
}

extern "C" wf_status wk_cuda_guidance(wk_backend *be, wk_tensor *y, const wk_tensor *u,
                                      const wk_tensor *c, float g, wf_err *err) {
    wf_status st = wk_check_update(wk_cuda_check_dev, y, u, c, "guidance", "u", "c", err);
    if (st) return st;
    const int64_t n = wk_tensor_numel(y);
    if (n == 0) return WF_OK;
    smp_guidance_kernel<<<wk_cuda_blocks(n), WK_CUDA_THREADS, 0, wk_cuda_of(be)->stream>>>(
        (float *)y->data, (const float *)u->data, (const float *)c->data, g, n);
    return wk_cuda_launched(err, "guidance");
}

/* ---- unipc_update (backend.h: wk_unipc_coef's formula) ---- */

typedef struct smp_unipc_args {
    float *y;
    const float *x, *m0, *m1, *m2, *d;
    int64_t n;
    wk_unipc_coef c;
    float rho_d; /* rhos[order - 1], d's coefficient (a constant index: no local-memory copy) */
} smp_unipc_args;

__global__ void smp_unipc_kernel(smp_unipc_args a) {
    const int p = a.c.order;
    WK_CUDA_FOR(e, a.n) {
        const float m0 = a.m0[e];
        const float base = __fsub_rn(__fmul_rn(a.c.ratio, a.x[e]), __fmul_rn(a.c.a_phi, m0));
        float s = 0.0f;
        if (p > 1) s = __fmul_rn(a.c.rhos[0], __fdiv_rn(__fsub_rn(a.m1[e], m0), a.c.rks[0]));
        if (p > 2)
            s = __fadd_rn(s, __fmul_rn(a.c.rhos[1], __fdiv_rn(__fsub_rn(a.m2[e], m0), a.c.rks[1])));
        if (a.d) {
            const float t = __fsub_rn(a.d[e], m0);
            s = p > 1 ? __fadd_rn(s, __fmul_rn(a.rho_d, t)) : __fmul_rn(a.rho_d, t);
        }
        a.y[e] = (p > 1 || a.d) ? __fsub_rn(base, __fmul_rn(a.c.a_B, s)) : base;
    }
}

extern "C" wf_status wk_cuda_unipc_update(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                          const wk_tensor *const *m, const wk_tensor *d,
                                          const wk_unipc_coef *c, wf_err *err) {
    wf_status st = wk_check_unipc(wk_cuda_check_dev, y, x, m, d, c, err);
    if (st) return st;
    const int64_t n = wk_tensor_numel(y);
    if (n == 0) return WF_OK;
    smp_unipc_args a;
    a.y = (float *)y->data;
    a.x = (const float *)x->data;
    a.m0 = (const float *)m[0]->data;
    a.m1 = c->order > 1 ? (const float *)m[1]->data : NULL;
    a.m2 = c->order > 2 ? (const float *)m[2]->data : NULL;
    a.d = d ? (const float *)d->data : NULL;
    a.n = n;
    a.c = *c;
    a.rho_d = c->rhos[c->order - 1];
    smp_unipc_kernel<<<wk_cuda_blocks(n), WK_CUDA_THREADS, 0, wk_cuda_of(be)->stream>>>(a);
    return wk_cuda_launched(err, "unipc_update");
}

/* ---- first_nonfinite ---- */

__global__ void smp_index_init_kernel(unsigned long long *idx, int64_t n) {
    *idx = (unsigned long long)n;
}

__global__ void smp_nonfinite_kernel(const float *x, int64_t n, unsigned long long *idx) {
    WK_CUDA_FOR(e, n)
        if (!isfinite(x[e])) atomicMin(idx, (unsigned long long)e);
}

extern "C" wf_status wk_cuda_first_nonfinite(wk_backend *be, const wk_tensor *x, int64_t *index,
                                             wf_err *err) {
    const int64_t n = wk_tensor_numel(x);
    wf_status st = wk_check_flat(wk_cuda_check_dev, x, n, "first_nonfinite", "x", err);
    if (st) return st;
    *index = n;
    if (n == 0) return WF_OK;
    void *ws = NULL;
    if ((st = wk_backend_workspace(be, sizeof(unsigned long long), &ws, err))) return st;
    unsigned long long *idx = (unsigned long long *)ws, host = 0;
    cudaStream_t s = wk_cuda_of(be)->stream;
    smp_index_init_kernel<<<1, 1, 0, s>>>(idx, n);
    smp_nonfinite_kernel<<<wk_cuda_blocks(n), WK_CUDA_THREADS, 0, s>>>((const float *)x->data, n,
                                                                        idx);
    if ((st = wk_cuda_launched(err, "first_nonfinite"))) return st;
    if ((st = wk_download_bytes(be, &host, idx, sizeof host, err))) return st;
    *index = (int64_t)host;
    return WF_OK;
}
