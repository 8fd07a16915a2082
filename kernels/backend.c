/* backend.c: op dispatch and the backend workspace (see backend.h). */
#include "backend.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arena.h"

const char *wk_precision_name(wk_precision p) { return p == WK_PREC_BF16 ? "bf16" : "fp32"; }

/* Host blocks carry their size in a head of one alignment unit before the bytes handed out, so
 * that a free can keep mem_live true. */
#define HEAD WK_ARENA_ALIGN

/* mem_peak_data after a change of mem_live (not while the workspace itself is allocated) */
void wk_mem_note(wk_backend *be) {
    if (be->in_ws) return;
    size_t d = be->mem_live > be->ws_bytes ? be->mem_live - be->ws_bytes : 0;
    if (d > be->mem_peak_data) be->mem_peak_data = d;
}

wf_status wk_backend_alloc(wk_backend *be, size_t bytes, void **out, wf_err *err) {
    if (be->ops->alloc) { /* it counts mem_allocs, mem_live and mem_peak */
        wf_status st = be->ops->alloc(be, bytes, out, err);
        if (!st) wk_mem_note(be);
        return st;
    }
    be->mem_allocs++;
    size_t cap = (bytes + WK_ARENA_ALIGN - 1) / WK_ARENA_ALIGN * WK_ARENA_ALIGN;
    if (cap < bytes || cap > SIZE_MAX - HEAD)
        return wf_fail(err, WF_ENOMEM, "%s memory: size %zu overflows", be->name, bytes);
    char *p = aligned_alloc(WK_ARENA_ALIGN, HEAD + cap);
    if (!p)
        return wf_fail(err, WF_ENOMEM, "%s memory: cannot allocate %.1f MiB", be->name,
                       (double)cap / (1 << 20));
    memcpy(p, &cap, sizeof cap);
    be->mem_live += cap;
    if (be->mem_live > be->mem_peak) be->mem_peak = be->mem_live;
    wk_mem_note(be);
    *out = p + HEAD;
    return WF_OK;
}

size_t wk_device_used(wk_backend *be) { return be->device_used ? be->device_used(be) : 0; }

void wk_backend_free(wk_backend *be, void *p) {
    if (!p) return;
    if (be->ops->free) {
        be->ops->free(be, p);
        return;
    }
    char *b = (char *)p - HEAD;
    size_t cap;
    memcpy(&cap, b, sizeof cap);
    be->mem_live -= cap <= be->mem_live ? cap : be->mem_live;
    free(b);
}

wf_status wk_backend_workspace(wk_backend *be, size_t bytes, void **out, wf_err *err) {
    if (bytes <= be->ws_cap && be->ws) {
        *out = be->ws;
        return WF_OK;
    }
    /* the old block goes first (its bytes need not survive), so that the two never add up */
    wk_backend_free(be, be->ws);
    be->ws = NULL;
    be->ws_cap = 0;
    be->ws_bytes = 0;
    void *p;
    const size_t before = be->mem_live;
    be->in_ws = true;
    wf_status st = wk_backend_alloc(be, bytes, &p, err);
    be->in_ws = false;
    if (st) return st;
    be->ws = p;
    be->ws_cap = bytes;
    be->ws_bytes = be->mem_live > before ? be->mem_live - before : 0;
    be->ws_grows++;
    *out = p;
    return WF_OK;
}

void wk_backend_destroy(wk_backend **pbe) {
    if (!pbe || !*pbe) return;
    wk_backend *be = *pbe;
    wk_backend_free(be, be->ws);
    if (be->destroy) be->destroy(be); /* the backend's own state (impl) */
    else free(be->impl);
    free(be);
    *pbe = NULL;
}

wf_status wk_upload_bytes(wk_backend *be, void *dst, const void *src, size_t bytes,
                          wf_err *err) {
    if (be->ops->upload) {
        be->bytes_up += bytes;
        return be->ops->upload(be, dst, src, bytes, err);
    }
    if (bytes) memcpy(dst, src, bytes);
    return WF_OK;
}

wf_status wk_download_bytes(wk_backend *be, void *dst, const void *src, size_t bytes,
                            wf_err *err) {
    if (be->ops->download) {
        be->bytes_down += bytes;
        return be->ops->download(be, dst, src, bytes, err);
    }
    if (bytes) memcpy(dst, src, bytes);
    return WF_OK;
}

wf_status wk_upload(wk_backend *be, wk_tensor *dst, const void *src, wf_err *err) {
    return wk_upload_bytes(be, dst->data, src, wk_tensor_nbytes(dst), err);
}

wf_status wk_download(wk_backend *be, void *dst, const wk_tensor *src, wf_err *err) {
    return wk_download_bytes(be, dst, src->data, wk_tensor_nbytes(src), err);
}

wf_status wk_copy(wk_backend *be, void *dst, const void *src, size_t bytes, wf_err *err) {
    if (be->ops->copy) return be->ops->copy(be, dst, src, bytes, err);
    if (bytes) memcpy(dst, src, bytes); /* not overlapping (backend.h), as the GPU's */
    return WF_OK;
}

wf_status wk_sync(wk_backend *be, wf_err *err) {
    return be->ops->sync ? be->ops->sync(be, err) : WF_OK;
}

/* The category of the op named `op` (its name in wk_ops). */
static int time_cat(const char *op) {
    if (!strcmp(op, "matmul") || !strcmp(op, "matmul_gelu") || !strcmp(op, "conv3d") ||
        !strcmp(op, "conv2d"))
        return WK_T_GEMM;
    return !strcmp(op, "attention") ? WK_T_ATTN : WK_T_OTHER;
}

static double host_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Around a timed op: the device's marks, or the host clock. */
static double time_begin(wk_backend *be, int cat) {
    if (be->ops->time_mark) {
        be->ops->time_mark(be, cat, 1);
        return 0;
    }
    return host_now();
}

static void time_end(wk_backend *be, int cat, double t0) {
    if (be->ops->time_mark) be->ops->time_mark(be, cat, 0);
    else be->time_s[cat] += host_now() - t0;
}

#define WK_DISPATCH(op, ...)                                                                     \
    do {                                                                                         \
        if (!be->ops->op)                                                                        \
            return wf_fail(err, WF_EUNSUPPORTED, "op %s is not supported by the %s backend",     \
                           #op, be->name);                                                       \
        if (!be->timing) return be->ops->op(be, __VA_ARGS__);                                    \
        const int cat_ = time_cat(#op);                                                          \
        const double t_ = time_begin(be, cat_);                                                  \
        const wf_status st_ = be->ops->op(be, __VA_ARGS__);                                      \
        time_end(be, cat_, t_);                                                                  \
        return st_;                                                                              \
    } while (0)

wf_status wk_timing_enable(wk_backend *be, bool on, wf_err *err) {
    if (be->ops->time_enable) {
        wf_status st = be->ops->time_enable(be, on, err);
        if (st) return st;
    }
    be->timing = on;
    for (int c = 0; c < WK_T_NCATS; c++) be->time_s[c] = 0;
    return WF_OK;
}

wf_status wk_timing_take(wk_backend *be, double secs[WK_T_NCATS], wf_err *err) {
    if (!be->timing) return WF_OK;
    if (be->ops->time_take) return be->ops->time_take(be, secs, err);
    for (int c = 0; c < WK_T_NCATS; c++) {
        secs[c] += be->time_s[c];
        be->time_s[c] = 0;
    }
    return WF_OK;
}

const char *wk_time_cat_name(int cat) {
    static const char *n[WK_T_NCATS] = {"gemm", "attention", "other"};
    return cat >= 0 && cat < WK_T_NCATS ? n[cat] : "?";
}

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
                       const wk_tensor *v, float scale, int64_t kv_len, const wk_tensor *bias,
                       wf_err *err) {
    WK_DISPATCH(attention, o, q, k, v, scale, kv_len, bias, err);
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
wf_status wk_matmul_gelu(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                         const wk_tensor *bias, wf_err *err) {
    WK_DISPATCH(matmul_gelu, y, x, w, bias, err);
}
wf_status wk_ln_modulate(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *scale1,
                         const wk_tensor *shift, float eps, wf_err *err) {
    WK_DISPATCH(ln_modulate, y, x, scale1, shift, eps, err);
}
wf_status wk_gate_residual(wk_backend *be, wk_tensor *x, const wk_tensor *y, const wk_tensor *gate,
                           wf_err *err) {
    WK_DISPATCH(gate_residual, x, y, gate, err);
}
wf_status wk_rms_norm_rope(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                           const wk_tensor *cos, const wk_tensor *sin, float eps, wf_err *err) {
    WK_DISPATCH(rms_norm_rope, y, x, w, cos, sin, eps, err);
}
wf_status wk_rms_norm_l2_silu(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                              const wk_tensor *gamma, wf_err *err) {
    WK_DISPATCH(rms_norm_l2_silu, y, x, gamma, err);
}
wf_status wk_convert(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err) {
    WK_DISPATCH(convert, y, x, err);
}
wf_status wk_fill(wk_backend *be, wk_tensor *y, float value, wf_err *err) {
    WK_DISPATCH(fill, y, value, err);
}
wf_status wk_copy_box(wk_backend *be, wk_tensor *y, const int64_t *y_off, const wk_tensor *x,
                      const int64_t *x_off, const int64_t *ext, wf_err *err) {
    WK_DISPATCH(copy_box, y, y_off, x, x_off, ext, err);
}
wf_status wk_permute(wk_backend *be, wk_tensor *y, const wk_tensor *x, int nd,
                     const int64_t *shape, const int *perm, wf_err *err) {
    WK_DISPATCH(permute, y, x, nd, shape, perm, err);
}
wf_status wk_timestep_embed(wk_backend *be, wk_tensor *y, const wk_tensor *t, wf_err *err) {
    WK_DISPATCH(timestep_embed, y, t, err);
}
wf_status wk_embedding(wk_backend *be, wk_tensor *y, const wk_tensor *table, const wk_tensor *ids,
                       wf_err *err) {
    WK_DISPATCH(embedding, y, table, ids, err);
}
wf_status wk_t5_bias(wk_backend *be, wk_tensor *y, const wk_tensor *table, const wk_tensor *mask,
                     int64_t max_distance, wf_err *err) {
    WK_DISPATCH(t5_bias, y, table, mask, max_distance, err);
}
wf_status wk_blend(wk_backend *be, wk_tensor *b, const wk_tensor *a, int axis, int64_t extent,
                   wf_err *err) {
    WK_DISPATCH(blend, b, a, axis, extent, err);
}
wf_status wk_avgdown3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, int64_t ft, int64_t fs,
                       wf_err *err) {
    WK_DISPATCH(avgdown3d, y, x, ft, fs, err);
}
wf_status wk_dupup3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, int64_t ft, int64_t fs,
                     int64_t drop, wf_err *err) {
    WK_DISPATCH(dupup3d, y, x, ft, fs, drop, err);
}
wf_status wk_rope_table(wk_backend *be, wk_tensor *cos, wk_tensor *sin, int64_t F, int64_t H,
                        int64_t W, double theta, int64_t l0, wf_err *err) {
    WK_DISPATCH(rope_table, cos, sin, F, H, W, theta, l0, err);
}
wf_status wk_scale_add(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b,
                       float s, wf_err *err) {
    WK_DISPATCH(scale_add, y, a, b, s, err);
}
wf_status wk_guidance(wk_backend *be, wk_tensor *y, const wk_tensor *u, const wk_tensor *c, float g,
                      wf_err *err) {
    WK_DISPATCH(guidance, y, u, c, g, err);
}
wf_status wk_unipc_update(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                          const wk_tensor *const *m, const wk_tensor *d, const wk_unipc_coef *c,
                          wf_err *err) {
    WK_DISPATCH(unipc_update, y, x, m, d, c, err);
}
wf_status wk_first_nonfinite(wk_backend *be, const wk_tensor *x, int64_t *index, wf_err *err) {
    WK_DISPATCH(first_nonfinite, x, index, err);
}
