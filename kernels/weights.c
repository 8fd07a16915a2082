/* weights.c: the one upload of a model's weights (see weights.h). */
#include "weights.h"

#include <stdlib.h>
#include <string.h>

#define WK_WEIGHTS_ALIGN 256
#define WK_WEIGHTS_CHUNK ((size_t)32 << 20) /* host staging for a widening, in bytes of f32 */

static bool moves(const wk_backend *be) { return be->device != WK_DEV_CPU; }

wk_dtype wk_weights_dtype(const wk_backend *be, const wk_weight *w) {
    if (!moves(be) || w->t->dtype >= WK_DTYPE_COUNT) return w->t->dtype;
    return w->keep_f32 || be->precision == WK_PREC_FP32 ? WK_F32 : w->t->dtype;
}

static size_t slot_bytes(const wk_backend *be, const wk_weight *w) {
    size_t n = (size_t)wk_tensor_numel(w->t) * wk_dtype_size(wk_weights_dtype(be, w));
    return (n + WK_WEIGHTS_ALIGN - 1) / WK_WEIGHTS_ALIGN * WK_WEIGHTS_ALIGN;
}

size_t wk_weights_bytes(const wk_backend *be, const wk_weight *ws, size_t n) {
    if (!moves(be)) return 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (ws[i].t && ws[i].t->data) total += slot_bytes(be, &ws[i]);
    return total;
}

/* One tensor into dst: a plain upload, or widened to f32 through the host staging buffer. */
static wf_status upload_one(wk_backend *be, const wk_weight *w, char *dst, float *stage,
                            wf_err *err) {
    const wk_tensor *t = w->t;
    const size_t n = (size_t)wk_tensor_numel(t), esz = wk_dtype_size(t->dtype);
    if (wk_weights_dtype(be, w) == t->dtype) {
        wk_tensor d = *t;
        d.data = dst;
        return wk_upload(be, &d, t->data, err);
    }
    const size_t per = WK_WEIGHTS_CHUNK / sizeof(float);
    for (size_t i = 0; i < n; i += per) {
        size_t m = n - i < per ? n - i : per;
        wk_convert_to_f32(stage, (const char *)t->data + i * esz, t->dtype, m);
        if (t->qscale != 0.0f) /* a scaled fp8 weight: its value, as torch's w.float() * s */
            for (size_t j = 0; j < m; j++) stage[j] *= t->qscale;
        wk_tensor d = wk_tensor_1d(WK_F32, dst + i * sizeof(float), (int64_t)m);
        wf_status st = wk_upload(be, &d, stage, err); /* returns once stage is read */
        if (st) return st;
    }
    return WF_OK;
}

wf_status wk_weights_upload(wk_backend *be, const wk_weight *ws, size_t n, wk_weights_block *blk,
                            wf_err *err) {
    *blk = (wk_weights_block){0};
    if (!moves(be)) return WF_OK;
    wf_status st = WF_OK;
    float *stage = NULL;
    wk_tensor *saved = NULL;
    const size_t bytes = wk_weights_bytes(be, ws, n);
    void *base = NULL;
    WF_TRY(wk_backend_alloc(be, bytes ? bytes : WK_WEIGHTS_ALIGN, &base, err));
    stage = malloc(WK_WEIGHTS_CHUNK);
    if (!stage) {
        st = wf_fail(err, WF_ENOMEM, "weights: no memory for the %zu MiB staging buffer",
                     WK_WEIGHTS_CHUNK >> 20);
        goto out;
    }
    size_t off = 0, moved = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ws[i].t || !ws[i].t->data) continue;
        st = upload_one(be, &ws[i], (char *)base + off, stage, err);
        if (st) {
            wf_err_prefix(err, "uploading %s: ", ws[i].t->name ? ws[i].t->name : "a weight");
            goto out;
        }
        off += slot_bytes(be, &ws[i]);
        moved++;
    }
    WF_TRY(wk_sync(be, err));
    saved = malloc((n ? n : 1) * sizeof *saved);
    if (!saved) {
        st = wf_fail(err, WF_ENOMEM, "weights: no memory for the table of %zu views", n);
        goto out;
    }
    /* every copy landed: keep the views, then re-point them */
    off = 0;
    for (size_t i = 0; i < n; i++) {
        wk_tensor *t = ws[i].t;
        if (t) saved[i] = *t;
        if (!t || !t->data) continue;
        wk_dtype dt = wk_weights_dtype(be, &ws[i]);
        size_t sz = slot_bytes(be, &ws[i]);
        t->data = (char *)base + off;
        if (dt != t->dtype) t->qscale = 0.0f; /* widened: the scale is in the values */
        t->dtype = dt;
        t->device = be->device;
        off += sz;
    }
    *blk = (wk_weights_block){.be = be, .base = base, .bytes = bytes, .n = moved, .ws = ws,
                              .n_ws = n, .saved = saved};
    base = NULL;
    saved = NULL;
out:
    if (base) wk_backend_free(be, base);
    free(saved);
    free(stage);
    return st;
}

void wk_weights_free(wk_weights_block *blk) {
    if (!blk || !blk->be) return;
    for (size_t i = 0; i < blk->n_ws; i++)
        if (blk->ws[i].t && blk->ws[i].t->data) *blk->ws[i].t = blk->saved[i];
    wk_backend_free(blk->be, blk->base);
    free(blk->saved);
    *blk = (wk_weights_block){0};
}
