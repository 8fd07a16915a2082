/* test_weights.c: checks of the one weight upload (kernels/weights.c) and the backend memory
 * calls (wk_backend_alloc, wk_upload, wk_download, the arena on a backend).
 *
 * What it is: on the CPU backend nothing moves (the block is empty, the views still point into
 * the host buffers). On a "device" backend — the CPU's op table with memory ops of its own that
 * keep separate, counted allocations and copy through upload/download, and device WK_DEV_CUDA so
 * that the weights must move — every tensor lands in one block, 256-byte aligned, in table order;
 * a tensor keeps its dtype unless it is keep_f32 or the backend computes WK_PREC_FP32, when it is
 * widened to exactly the f32 values the CPU ops widen to; tensors without data are skipped; the
 * block's size is what wk_weights_bytes predicts; one allocation is made; a failing allocation
 * leaves every view untouched; freeing the block re-points every view at its host bytes, and the
 * list uploads again. The arena on that backend carves tensors marked with its device.
 * What it is not: a GPU test (tests/test_backend_ops.c runs the CUDA backend when there is one).
 * Run: test_weights (exit 0 when every check holds).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "backend.h"
#include "test_util.h"
#include "weights.h"

/* ---- a host-memory "device" backend ---- */

typedef struct fake_dev {
    int allocs, frees, uploads, downloads, fail_alloc;
    size_t live;
} fake_dev;

static wf_status fake_alloc(wk_backend *be, size_t bytes, void **out, wf_err *err) {
    fake_dev *f = be->impl;
    if (f->fail_alloc) return wf_fail(err, WF_ENOMEM, "fake device: out of memory (on purpose)");
    *out = aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (!*out) return wf_fail(err, WF_ENOMEM, "fake device: out of memory");
    f->allocs++;
    f->live += bytes;
    return WF_OK;
}
static void fake_free(wk_backend *be, void *p) {
    fake_dev *f = be->impl;
    if (!p) return;
    f->frees++;
    free(p);
}
static wf_status fake_upload(wk_backend *be, void *dst, const void *src, size_t n, wf_err *err) {
    ((fake_dev *)be->impl)->uploads++;
    memcpy(dst, src, n);
    return WF_OK;
}
static wf_status fake_download(wk_backend *be, void *dst, const void *src, size_t n, wf_err *err) {
    ((fake_dev *)be->impl)->downloads++;
    memcpy(dst, src, n);
    return WF_OK;
}

static wk_ops fake_ops;

static void fake_forget(wk_backend *be) { (void)be; } /* the fake_dev is the caller's */

static wk_backend *fake_new(fake_dev *f, wk_precision prec) {
    wk_backend *cpu = NULL;
    wf_err err;
    WF_ASSERT(wk_backend_cpu_new(&cpu, 1, &err) == WF_OK);
    fake_ops = *cpu->ops;
    fake_ops.alloc = fake_alloc;
    fake_ops.free = fake_free;
    fake_ops.upload = fake_upload;
    fake_ops.download = fake_download;
    cpu->ops = &fake_ops;
    cpu->name = "fake";
    cpu->device = WK_DEV_CUDA;
    cpu->precision = prec;
    cpu->impl = f;
    cpu->destroy = fake_forget;
    return cpu;
}

static void fake_destroy(wk_backend **be) { wk_backend_destroy(be); }

/* ---- the weights of a small "model" ---- */

typedef struct model {
    float a[5];      /* f32 [5] */
    uint16_t b[37];  /* bf16 [37] */
    uint16_t c[8];   /* bf16 [8], keep_f32 */
    wk_tensor ta, tb, tc, tnone;
} model;

static void model_init(model *m) {
    for (int i = 0; i < 5; i++) m->a[i] = 0.5f * (float)i - 1.0f;
    for (int i = 0; i < 37; i++) m->b[i] = wk_f32_to_bf16(0.1f * (float)(i - 18));
    for (int i = 0; i < 8; i++) m->c[i] = wk_f32_to_bf16(3.0f - (float)i);
    m->ta = wk_tensor_1d(WK_F32, m->a, 5);
    m->tb = wk_tensor_1d(WK_BF16, m->b, 37);
    m->tc = wk_tensor_1d(WK_BF16, m->c, 8);
    m->tnone = wk_tensor_1d(WK_F32, NULL, 3); /* not bound: skipped */
}

static void list(model *m, wk_weight ws[4]) {
    ws[0] = (wk_weight){&m->ta, false};
    ws[1] = (wk_weight){&m->tb, false};
    ws[2] = (wk_weight){&m->tnone, false};
    ws[3] = (wk_weight){&m->tc, true};
}

static void check_cpu_moves_nothing(void) {
    wk_backend *be = NULL;
    wf_err err;
    model m;
    wk_weight ws[4];
    model_init(&m);
    list(&m, ws);
    WF_ASSERT(wk_backend_cpu_new(&be, 1, &err) == WF_OK);
    wk_weights_block blk;
    TU_CHECK(wk_weights_bytes(be, ws, 4) == 0, "the CPU needs no block");
    TU_CHECK(wk_weights_upload(be, ws, 4, &blk, &err) == WF_OK, "%s", err.msg);
    TU_CHECK(blk.base == NULL && blk.be == NULL && blk.n == 0, "the CPU made a block");
    TU_CHECK(m.ta.data == m.a && m.tb.data == m.b && m.tb.dtype == WK_BF16 &&
                 m.tc.dtype == WK_BF16 && m.tc.device == WK_DEV_CPU,
             "the CPU moved or widened a weight");
    wk_weights_free(&blk);
    wk_backend_destroy(&be);
}

/* The uploaded tensors against the host values; widened tensors hold exactly the widened bits. */
static void check_device(wk_precision prec) {
    fake_dev f = {0};
    wk_backend *be = fake_new(&f, prec);
    wf_err err;
    model m;
    wk_weight ws[4];
    model_init(&m);
    list(&m, ws);
    const bool all_f32 = prec == WK_PREC_FP32;
    const size_t sb = all_f32 ? 37 * 4 : 37 * 2;
    const size_t want = 256 + (sb + 255) / 256 * 256 + 256; /* a [5] f32, b, c [8] f32 */
    TU_CHECK(wk_weights_bytes(be, ws, 4) == want, "%s: block %zu bytes, want %zu",
             wk_precision_name(prec), wk_weights_bytes(be, ws, 4), want);
    wk_weights_block blk;
    TU_CHECK(wk_weights_upload(be, ws, 4, &blk, &err) == WF_OK, "%s", err.msg);
    TU_CHECK(f.allocs == 1 && blk.bytes == want && blk.n == 3, "allocs %d, block %zu, moved %zu",
             f.allocs, blk.bytes, blk.n);
    char *base = blk.base;
    TU_CHECK(m.ta.data == base && (char *)m.tb.data == base + 256 &&
                 (char *)m.tc.data == base + 256 + (sb + 255) / 256 * 256,
             "slots are not in table order at 256-byte boundaries");
    TU_CHECK(m.tnone.data == NULL, "an unbound tensor was given a slot");
    TU_CHECK(m.ta.device == WK_DEV_CUDA && m.tb.device == WK_DEV_CUDA && m.tc.device == WK_DEV_CUDA,
             "moved tensors must carry the backend's device");
    TU_CHECK(m.tc.dtype == WK_F32, "keep_f32 must widen");
    TU_CHECK(m.tb.dtype == (all_f32 ? WK_F32 : WK_BF16), "%s: b is %s",
             wk_precision_name(prec), wk_dtype_name(m.tb.dtype));
    float host[37];
    TU_CHECK(wk_download(be, host, &m.ta, &err) == WF_OK && !memcmp(host, m.a, sizeof m.a),
             "a changed on the way");
    for (int i = 0; i < 8; i++)
        TU_CHECK(((float *)m.tc.data)[i] == wk_bf16_to_f32(m.c[i]), "c[%d] widened wrong", i);
    for (int i = 0; i < 37; i++) {
        float got = all_f32 ? ((float *)m.tb.data)[i] : wk_bf16_to_f32(((uint16_t *)m.tb.data)[i]);
        TU_CHECK(got == wk_bf16_to_f32(m.b[i]), "b[%d] is %g, want %g", i, (double)got,
                 (double)wk_bf16_to_f32(m.b[i]));
    }
    wk_weights_free(&blk);
    TU_CHECK(f.frees == 1 && blk.base == NULL, "the block was not given back");
    /* the views are the host ones again (a text encoder leaving the device between videos),
     * and the same list uploads again */
    TU_CHECK(m.ta.data == m.a && m.tb.data == m.b && m.tc.data == m.c && m.tb.dtype == WK_BF16 &&
                 m.tc.dtype == WK_BF16 && m.ta.device == WK_DEV_CPU && m.tc.device == WK_DEV_CPU,
             "a freed block must re-point the tensors at their host views");
    TU_CHECK(wk_weights_upload(be, ws, 4, &blk, &err) == WF_OK && f.allocs == 2 &&
                 m.tc.dtype == WK_F32 && m.tc.device == WK_DEV_CUDA &&
                 ((float *)m.tc.data)[7] == wk_bf16_to_f32(m.c[7]),
             "a second upload after a free: %s", err.msg);
    wk_weights_free(&blk);
    TU_CHECK(f.frees == 2 && m.tc.data == m.c, "the second block was not given back");
    fake_destroy(&be);
}

static void check_failed_alloc_moves_nothing(void) {
    fake_dev f = {.fail_alloc = 1};
    wk_backend *be = fake_new(&f, WK_PREC_BF16);
    wf_err err;
    wf_err_clear(&err);
    model m;
    wk_weight ws[4];
    model_init(&m);
    list(&m, ws);
    wk_weights_block blk;
    TU_CHECK(wk_weights_upload(be, ws, 4, &blk, &err) == WF_ENOMEM, "want WF_ENOMEM");
    TU_CHECK(strstr(err.msg, "on purpose") != NULL, "the backend's reason is lost: %s", err.msg);
    TU_CHECK(m.ta.data == m.a && m.tb.data == m.b && m.tc.data == m.c && m.tc.dtype == WK_BF16 &&
                 blk.base == NULL,
             "a failed upload re-pointed a weight");
    fake_destroy(&be);
}

static void check_arena_on_backend(void) {
    fake_dev f = {0};
    wk_backend *be = fake_new(&f, WK_PREC_BF16);
    wf_err err;
    wk_arena a;
    TU_CHECK(wk_arena_init_on(&a, be, "dev", 4096, &err) == WF_OK, "%s", err.msg);
    TU_CHECK(f.allocs == 1, "the arena is one allocation of the backend");
    wk_tensor t;
    TU_CHECK(WK_ARENA_F32(&a, &t, &err, 3, 7) == WF_OK && t.device == WK_DEV_CUDA &&
                 (unsigned char *)t.data == a.base,
             "an arena tensor on the backend must carry its device");
    float src[21], back[21];
    for (int i = 0; i < 21; i++) src[i] = (float)i * 0.25f;
    TU_CHECK(wk_upload(be, &t, src, &err) == WF_OK && wk_download(be, back, &t, &err) == WF_OK &&
                 !memcmp(src, back, sizeof src) && f.uploads == 1 && f.downloads == 1,
             "upload/download round trip through the table");
    void *ws = NULL;
    TU_CHECK(wk_backend_workspace(be, 1000, &ws, &err) == WF_OK && f.allocs == 2,
             "the workspace must come from the backend's memory");
    wk_arena_free(&a);
    TU_CHECK(f.frees == 1, "the arena must give its memory back to the backend");
    fake_destroy(&be); /* frees the workspace through the table */
    TU_CHECK(f.frees == 2, "the workspace must be freed through the backend (%d frees)", f.frees);
}

int main(void) {
    check_cpu_moves_nothing();
    check_device(WK_PREC_BF16);
    check_device(WK_PREC_FP32);
    check_failed_alloc_moves_nothing();
    check_arena_on_backend();
    printf("test_weights: %s (%d failures)\n", tu_failures ? "FAILED" : "OK", tu_failures);
    return tu_failures ? 1 : 0;
}
