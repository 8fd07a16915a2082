/* test_arena.c: checks of the activation arena (kernels/arena.c).
 *
 * What it is: every allocation is 64-byte aligned, inside the arena and disjoint from the ones
 * before it; exhaustion returns WF_ENOMEM with a message naming the arena and leaves the arena
 * usable; mark/reset hands the same memory out again; a measuring arena reports exactly the peak
 * that a real arena of that size then satisfies with the same allocation sequence, and one byte
 * less fails; overflowing sizes and shapes are rejected; tensors carved from the arena carry the
 * right header.
 * What it is not: a test of the backend workspace (tests/test_ops.c checks that it stops growing).
 * Run: test_arena (exit 0 when every check holds; failures are listed on stderr).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "test_util.h"

#define NAME "test activations"

/* The allocation sequence of a small "forward pass": sizes that are not multiples of 64, a
 * zero-byte request, and a scoped block released with mark/reset, so that the peak is reached
 * inside the scope and is not the final use. Returns the first failing status. */
static wf_status forward_sequence(wk_arena *a, wf_err *err) {
    static const size_t sizes[] = {1, 100, 64, 0, 4000, 63, 65, 777};
    void *p;
    wf_status st;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if ((st = wk_arena_alloc(a, sizes[i], &p, err))) return st;
    size_t m = wk_arena_mark(a);
    for (int i = 0; i < 3; i++) /* a block's scratch: the peak is here */
        if ((st = wk_arena_alloc(a, 3001, &p, err))) return st;
    wk_arena_reset(a, m);
    return wk_arena_alloc(a, 500, &p, err);
}

static void check_alignment_and_disjointness(void) {
    wk_arena a;
    wf_err err;
    wf_err_clear(&err);
    TU_CHECK(wk_arena_init(&a, NAME, 1 << 16, &err) == WF_OK, "init: %s", err.msg);
    TU_CHECK(!wk_arena_is_measuring(&a), "a real arena says it is measuring");
    uintptr_t base = (uintptr_t)a.base, prev_end = base;
    for (size_t n = 0; n < 300; n += 7) {
        void *p = NULL;
        wf_status st = wk_arena_alloc(&a, n, &p, &err);
        TU_CHECK(st == WF_OK, "alloc %zu: %s", n, err.msg);
        if (st) break;
        uintptr_t u = (uintptr_t)p;
        TU_CHECK(u % WK_ARENA_ALIGN == 0, "alloc %zu at %p is not %d-byte aligned", n, p,
                 WK_ARENA_ALIGN);
        TU_CHECK(u >= prev_end, "alloc %zu at %p overlaps the previous one (ends at %p)", n, p,
                 (void *)prev_end);
        TU_CHECK(u + n <= base + a.cap, "alloc %zu at %p runs past the arena", n, p);
        memset(p, 0xab, n); /* the sanitizer build sees any write outside the block */
        prev_end = u + n;
    }
    TU_CHECK(a.used == prev_end - base, "used %zu, want %zu", a.used, (size_t)(prev_end - base));
    TU_CHECK(a.peak == a.used, "peak %zu != used %zu without any reset", a.peak, a.used);
    wk_arena_free(&a);
    TU_CHECK(a.base == NULL && a.cap == 0 && a.used == 0, "free leaves the arena zeroed");
    wk_arena_free(&a); /* twice is fine */
    wk_arena zero = {0};
    wk_arena_free(&zero);
    wk_arena_free(NULL);
}

static void check_exhaustion(void) {
    wk_arena a;
    wf_err err;
    wf_err_clear(&err);
    TU_CHECK(wk_arena_init(&a, NAME, 1000, &err) == WF_OK, "init: %s", err.msg);
    void *p = NULL;
    TU_CHECK(wk_arena_alloc(&a, 600, &p, &err) == WF_OK && p, "first alloc: %s", err.msg);
    size_t used = a.used;
    wf_err_clear(&err);
    p = (void *)1;
    wf_status st = wk_arena_alloc(&a, 500, &p, &err);
    TU_CHECK(st == WF_ENOMEM, "600 + 500 bytes from a 1000-byte arena: status %s",
             wf_status_str(st));
    TU_CHECK(err.status == WF_ENOMEM, "err.status %s", wf_status_str(err.status));
    TU_CHECK(strstr(err.msg, NAME) != NULL, "message does not name the arena: '%s'", err.msg);
    TU_CHECK(strstr(err.msg, "500") != NULL, "message does not give the request: '%s'", err.msg);
    TU_CHECK(p == NULL, "a failed alloc must set *out to NULL");
    TU_CHECK(a.used == used, "a failed alloc changed used from %zu to %zu", used, a.used);
    /* the arena stays usable: what does fit still fits (600 -> 640 aligned, + 360 = 1000) */
    TU_CHECK(wk_arena_alloc(&a, 360, &p, &err) == WF_OK, "alloc after a failure: %s", err.msg);
    TU_CHECK(wk_arena_alloc(&a, 1, &p, &err) == WF_ENOMEM, "a full arena gave one more byte");
    wk_arena_free(&a);
}

static void check_mark_reset(void) {
    wk_arena a;
    wf_err err;
    wf_err_clear(&err);
    TU_CHECK(wk_arena_init(&a, NAME, 4096, &err) == WF_OK, "init: %s", err.msg);
    void *keep, *p1, *p2, *q;
    wk_arena_alloc(&a, 100, &keep, &err);
    size_t m = wk_arena_mark(&a);
    TU_CHECK(m == 100, "mark %zu, want 100", m);
    wk_arena_alloc(&a, 1000, &p1, &err);
    wk_arena_alloc(&a, 1000, &q, &err);
    size_t peak = a.peak;
    wk_arena_reset(&a, m);
    TU_CHECK(a.used == m, "reset: used %zu, want %zu", a.used, m);
    TU_CHECK(a.peak == peak, "reset must keep the peak (%zu, was %zu)", a.peak, peak);
    wk_arena_alloc(&a, 1000, &p2, &err);
    TU_CHECK(p1 == p2, "after reset the same request gets the same memory (%p vs %p)", p1, p2);
    TU_CHECK(keep == a.base, "the first allocation is the arena's base");
    /* the whole arena can be reused many times over without growing the peak */
    for (int i = 0; i < 1000; i++) {
        wk_arena_reset(&a, m);
        TU_CHECK(wk_arena_alloc(&a, 3000, &q, &err) == WF_OK, "reuse %d: %s", i, err.msg);
    }
    TU_CHECK(a.peak == 128 + 3000, "peak %zu after reuse, want %d", a.peak, 128 + 3000);
    wk_arena_free(&a);
}

static void check_measure(void) {
    wk_arena m;
    wf_err err;
    wf_err_clear(&err);
    wk_arena_init_measure(&m, NAME);
    TU_CHECK(wk_arena_is_measuring(&m), "a measuring arena says it is not");
    void *p = (void *)1;
    TU_CHECK(wk_arena_alloc(&m, 12345, &p, &err) == WF_OK && p == NULL,
             "a measuring arena hands out NULL data");
    wk_arena_reset(&m, 0);
    TU_CHECK(forward_sequence(&m, &err) == WF_OK, "measuring: %s", err.msg);
    size_t need = m.peak;
    /* by hand: 1, 100, 64, 0, 4000, 63, 65, 777 at 64-aligned offsets end at 5257;
     * 3 x 3001 from 5312 peak at 5312 + 2*3008 + 3001 = 14329 */
    TU_CHECK(need == 14329, "measured peak %zu, want 14329", need);
    wk_arena_free(&m);

    wk_arena a;
    TU_CHECK(wk_arena_init(&a, NAME, need, &err) == WF_OK, "init %zu: %s", need, err.msg);
    TU_CHECK(a.cap >= need, "cap %zu < requested %zu", a.cap, need);
    wf_status st = forward_sequence(&a, &err);
    TU_CHECK(st == WF_OK, "the measured size %zu does not hold the sequence: %s", need, err.msg);
    TU_CHECK(a.peak == need, "real peak %zu != measured %zu", a.peak, need);
    wk_arena_free(&a);

    TU_CHECK(wk_arena_init(&a, NAME, need - 1, &err) == WF_OK, "init %zu: %s", need - 1, err.msg);
    wf_err_clear(&err);
    st = forward_sequence(&a, &err);
    TU_CHECK(st == WF_ENOMEM, "an arena one byte short (%zu) held the sequence: status %s",
             need - 1, wf_status_str(st));
    TU_CHECK(strstr(err.msg, NAME) != NULL, "message does not name the arena: '%s'", err.msg);
    wk_arena_free(&a);
}

static void check_overflow(void) {
    wk_arena a, m;
    wf_err err;
    wf_err_clear(&err);
    void *p;
    TU_CHECK(wk_arena_init(&a, NAME, SIZE_MAX, &err) == WF_ENOMEM, "init SIZE_MAX must fail");
    TU_CHECK(wk_arena_init(&a, NAME, SIZE_MAX - 10, &err) == WF_ENOMEM,
             "init SIZE_MAX - 10 must fail");
    TU_CHECK(strstr(err.msg, NAME) != NULL, "message does not name the arena: '%s'", err.msg);

    TU_CHECK(wk_arena_init(&a, NAME, 256, &err) == WF_OK, "init: %s", err.msg);
    TU_CHECK(wk_arena_alloc(&a, SIZE_MAX, &p, &err) == WF_ENOMEM, "alloc SIZE_MAX must fail");
    wk_arena_alloc(&a, 10, &p, &err);
    TU_CHECK(wk_arena_alloc(&a, SIZE_MAX - 32, &p, &err) == WF_ENOMEM,
             "alloc whose end overflows must fail");
    TU_CHECK(a.used == 10, "failed allocs changed used to %zu", a.used);
    wk_arena_free(&a);

    /* a measuring arena has no capacity limit, but offsets still must not wrap around */
    wk_arena_init_measure(&m, NAME);
    TU_CHECK(wk_arena_alloc(&m, 100, &p, &err) == WF_OK, "measure 100: %s", err.msg);
    TU_CHECK(wk_arena_alloc(&m, SIZE_MAX - 64, &p, &err) == WF_ENOMEM,
             "measuring alloc whose end wraps must fail");
    TU_CHECK(m.used == 100 && m.peak == 100, "failed allocs changed used/peak to %zu/%zu",
             m.used, m.peak);

    /* tensors: shape products that overflow, negative dims */
    wk_tensor t;
    int64_t big[3] = {INT64_C(1) << 40, INT64_C(1) << 40, 16};
    TU_CHECK(wk_arena_tensor(&m, &t, WK_F32, 3, big, &err) == WF_EINVAL,
             "a tensor of 2^84 elements must be rejected");
    TU_CHECK(strstr(err.msg, NAME) != NULL, "message does not name the arena: '%s'", err.msg);
    int64_t neg[2] = {4, -1};
    TU_CHECK(wk_arena_tensor(&m, &t, WK_F32, 2, neg, &err) == WF_EINVAL,
             "a negative dimension must be rejected");
    wk_arena_free(&m);
}

static void check_tensor(void) {
    wk_arena a;
    wf_err err;
    wf_err_clear(&err);
    TU_CHECK(wk_arena_init(&a, NAME, 1 << 12, &err) == WF_OK, "init: %s", err.msg);
    wk_tensor t, u;
    int64_t shape[3] = {3, 5, 7};
    TU_CHECK(wk_arena_tensor(&a, &t, WK_BF16, 3, shape, &err) == WF_OK, "tensor: %s", err.msg);
    TU_CHECK(t.dtype == WK_BF16 && t.ndim == 3 && t.shape[0] == 3 && t.shape[1] == 5 &&
                 t.shape[2] == 7 && t.shape[3] == 1 && t.data == a.base,
             "tensor header");
    TU_CHECK(wk_tensor_nbytes(&t) == 210 && a.used == 210, "tensor bytes %zu, arena used %zu",
             wk_tensor_nbytes(&t), a.used);
    TU_CHECK(wk_arena_tensor(&a, &u, WK_F32, 0, NULL, &err) == WF_OK, "scalar: %s", err.msg);
    TU_CHECK((unsigned char *)u.data == a.base + 256 && a.used == 260,
             "a scalar takes 4 bytes at the next aligned offset (used %zu)", a.used);
    int64_t huge[1] = {1 << 20};
    TU_CHECK(wk_arena_tensor(&a, &u, WK_F32, 1, huge, &err) == WF_ENOMEM,
             "a 4 MiB tensor from a 4 KiB arena must fail");
    wk_arena_free(&a);
}

int main(void) {
    check_alignment_and_disjointness();
    check_exhaustion();
    check_mark_reset();
    check_measure();
    check_overflow();
    check_tensor();
    printf("test_arena: %s (%d failures)\n", tu_failures ? "FAILED" : "OK", tu_failures);
    return tu_failures ? 1 : 0;
}
