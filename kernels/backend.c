/* backend.c: op dispatch and the backend workspace (see backend.h). */
#include "backend.h"

#include <stdlib.h>

#include "arena.h"

wf_status wk_backend_workspace(wk_backend *be, size_t bytes, void **out, wf_err *err) {
    if (bytes <= be->ws_cap && be->ws) {
        *out = be->ws;
        return WF_OK;
    }
    size_t cap = (bytes + WK_ARENA_ALIGN - 1) / WK_ARENA_ALIGN * WK_ARENA_ALIGN;
    if (cap < bytes) return wf_fail(err, WF_ENOMEM, "%s workspace: size %zu overflows", be->name, bytes);
    void *p = aligned_alloc(WK_ARENA_ALIGN, cap ? cap : WK_ARENA_ALIGN);
    if (!p)
        return wf_fail(err, WF_ENOMEM, "%s workspace: cannot allocate %.1f MiB", be->name,
                       (double)cap / (1 << 20));
    free(be->ws);
    be->ws = p;
    be->ws_cap = cap;
    be->ws_grows++;
    *out = p;
    return WF_OK;
}

void wk_backend_destroy(wk_backend **pbe) {
    if (!pbe || !*pbe) return;
    wk_backend *be = *pbe;
    free(be->ws);
    free(be->impl);
    free(be);
    *pbe = NULL;
}

#define WK_DISPATCH(op, ...)                                                                     \
    do {                                                                                         \
        if (!be->ops->op)                                                                        \
            return wf_fail(err, WF_EUNSUPPORTED, "op %s is not supported by the %s backend",     \
                           #op, be->name);                                                       \
        return be->ops->op(be, __VA_ARGS__);                                                     \
    } while (0)

wf_status wk_matmul(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                    const wk_tensor *bias, wf_err *err) {
    WK_DISPATCH(matmul, y, x, w, bias, err);
}
wf_status wk_add(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b, wf_err *err) {
    WK_DISPATCH(add, y, a, b, err);
}
wf_status wk_mul(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b, wf_err *err) {
    WK_DISPATCH(mul, y, a, b, err);
}
wf_status wk_layer_norm(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *b, float eps, wf_err *err) {
    WK_DISPATCH(layer_norm, y, x, w, b, eps, err);
}
wf_status wk_rms_norm(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                      float eps, wf_err *err) {
    WK_DISPATCH(rms_norm, y, x, w, eps, err);
}
wf_status wk_rms_norm_l2(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *gamma,
                         wf_err *err) {
    WK_DISPATCH(rms_norm_l2, y, x, gamma, err);
}
wf_status wk_softmax(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err) {
    WK_DISPATCH(softmax, y, x, err);
}
wf_status wk_gelu_tanh(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err) {
    WK_DISPATCH(gelu_tanh, y, x, err);
}
wf_status wk_silu(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err) {
    WK_DISPATCH(silu, y, x, err);
}
wf_status wk_rope(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *cos,
                  const wk_tensor *sin, wf_err *err) {
    WK_DISPATCH(rope, y, x, cos, sin, err);
}
wf_status wk_attention(wk_backend *be, wk_tensor *o, const wk_tensor *q, const wk_tensor *k,
                       const wk_tensor *v, float scale, const wk_tensor *bias, wf_err *err) {
    WK_DISPATCH(attention, o, q, k, v, scale, bias, err);
}
wf_status wk_conv3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                    const wk_tensor *bias, const wk_conv_params *p, wf_err *err) {
    WK_DISPATCH(conv3d, y, x, w, bias, p, err);
}
wf_status wk_conv2d(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                    const wk_tensor *bias, const wk_conv_params *p, wf_err *err) {
    WK_DISPATCH(conv2d, y, x, w, bias, p, err);
}
wf_status wk_upsample2x(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err) {
    WK_DISPATCH(upsample2x, y, x, err);
}
