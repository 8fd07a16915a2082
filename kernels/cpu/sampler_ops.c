/* sampler_ops.c: the CPU reference of the samplers' and guidance's elementwise updates:
 * scale_add, guidance, unipc_update and first_nonfinite (semantics in backend.h).
 *
 * What it is: flat loops over f32 elements, OpenMP-parallel above SOPS_PAR_MIN elements. Each
 * expression is written in the order Diffusers' fp32 tensor maths evaluates it (the samplers'
 * fixtures are matched to the bit), and this file is compiled as ISO C11, so GCC does not
 * contract a * b + c into a fused multiply-add: every product and quotient is rounded to f32
 * before it is used, which is what the CUDA kernels reproduce with __fmul_rn and friends.
 * y may alias any input: element e is read, then written, by one thread.
 * What it is not: the sampler (worker/engine/sampler.c computes the coefficients and owns the
 * state), nor a general linear-combination engine.
 * Tested by: tests/test_ops.c, rows "scale_add", "guidance", "unipc_update", "first_nonfinite"
 * (tests/ops_sampler.c, against double references), tests/test_sampler.c (whole runs against
 * Diffusers), tests/test_backend_ops.c (CPU against CUDA).
 */
#include <math.h>

#include "cpu_ops.h"
#include "../op_check.h"

/* Below this many elements the loops run on one thread: the fork costs more than it saves. */
#define SOPS_PAR_MIN 32768

wf_status wk_cpu_scale_add(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b,
                           float s, wf_err *err) {
    wf_status st = wk_check_update(wk_cpu_check_host, y, a, b, "scale_add", "a", "b", err);
    if (st) return st;
    const int64_t n = wk_tensor_numel(y);
    float *yd = y->data;
    const float *ad = a->data, *bd = b->data;
#pragma omp parallel for num_threads(be->nthreads) if (n >= SOPS_PAR_MIN) schedule(static)
    for (int64_t e = 0; e < n; e++) yd[e] = ad[e] + s * bd[e];
    return WF_OK;
}

wf_status wk_cpu_guidance(wk_backend *be, wk_tensor *y, const wk_tensor *u, const wk_tensor *c,
                          float g, wf_err *err) {
    wf_status st = wk_check_update(wk_cpu_check_host, y, u, c, "guidance", "u", "c", err);
    if (st) return st;
    const int64_t n = wk_tensor_numel(y);
    float *yd = y->data;
    const float *ud = u->data, *cd = c->data;
#pragma omp parallel for num_threads(be->nthreads) if (n >= SOPS_PAR_MIN) schedule(static)
    for (int64_t e = 0; e < n; e++) yd[e] = ud[e] + g * (cd[e] - ud[e]);
    return WF_OK;
}

wf_status wk_cpu_unipc_update(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                              const wk_tensor *const *m, const wk_tensor *d,
                              const wk_unipc_coef *c, wf_err *err) {
    wf_status st = wk_check_unipc(wk_cpu_check_host, y, x, m, d, c, err);
    if (st) return st;
    const int64_t n = wk_tensor_numel(y);
    const int p = c->order;
    float *yd = y->data;
    const float *xd = x->data, *m0 = m[0]->data;
    const float *m1 = p > 1 ? m[1]->data : NULL, *m2 = p > 2 ? m[2]->data : NULL;
    const float *dd = d ? d->data : NULL;
    const wk_unipc_coef k = *c;
#pragma omp parallel for num_threads(be->nthreads) if (n >= SOPS_PAR_MIN) schedule(static)
    for (int64_t e = 0; e < n; e++) {
        const float base = k.ratio * xd[e] - k.a_phi * m0[e];
        float s = 0.0f;
        if (p > 1) s = k.rhos[0] * ((m1[e] - m0[e]) / k.rks[0]);
        if (p > 2) s = s + k.rhos[1] * ((m2[e] - m0[e]) / k.rks[1]);
        if (dd) s = p > 1 ? s + k.rhos[p - 1] * (dd[e] - m0[e]) : k.rhos[0] * (dd[e] - m0[e]);
        yd[e] = (p > 1 || dd) ? base - k.a_B * s : base;
    }
    return WF_OK;
}

wf_status wk_cpu_first_nonfinite(wk_backend *be, const wk_tensor *x, int64_t *index, wf_err *err) {
    const int64_t n = wk_tensor_numel(x);
    wf_status st = wk_check_flat(wk_cpu_check_host, x, n, "first_nonfinite", "x", err);
    if (st) return st;
    const float *xd = x->data;
    int64_t first = n;
#pragma omp parallel for num_threads(be->nthreads) if (n >= SOPS_PAR_MIN) schedule(static) \
    reduction(min : first)
    for (int64_t e = 0; e < n; e++)
        if (e < first && !isfinite(xd[e])) first = e;
    *index = first;
    return WF_OK;
}
