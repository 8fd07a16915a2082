/* arena.c: bump allocation of activations (see arena.h). */
#include "arena.h"

#include "backend.h"

#include <stdint.h>
#include <stdlib.h>

wf_status wk_arena_init(wk_arena *a, const char *name, size_t cap, wf_err *err) {
    *a = (wk_arena){.name = name};
    size_t rounded = (cap + WK_ARENA_ALIGN - 1) / WK_ARENA_ALIGN * WK_ARENA_ALIGN;
    if (rounded < cap) return wf_fail(err, WF_ENOMEM, "arena %s: size %zu overflows", name, cap);
    if (rounded == 0) rounded = WK_ARENA_ALIGN;
    void *p = aligned_alloc(WK_ARENA_ALIGN, rounded);
    if (!p)
        return wf_fail(err, WF_ENOMEM, "arena %s: cannot allocate %.1f MiB", name,
                       (double)rounded / (1 << 20));
    a->base = p;
    a->cap = cap; /* exactly what was asked: a measured peak is a tight bound (test_arena) */
    return WF_OK;
}

wf_status wk_arena_init_on(wk_arena *a, wk_backend *be, const char *name, size_t cap,
                           wf_err *err) {
    *a = (wk_arena){.name = name};
    void *p;
    wf_status st = wk_backend_alloc(be, cap ? cap : WK_ARENA_ALIGN, &p, err);
    if (st) {
        wf_err_prefix(err, "arena %s: ", name);
        return st;
    }
    a->base = p;
    a->cap = cap;
    a->be = be;
    a->device = be->device;
    return WF_OK;
}

void wk_arena_init_measure(wk_arena *a, const char *name) {
    *a = (wk_arena){.name = name, .cap = SIZE_MAX};
}

void wk_arena_free(wk_arena *a) {
    if (!a) return;
    if (a->be) wk_backend_free(a->be, a->base);
    else free(a->base);
    a->be = NULL;
    a->base = NULL;
    a->cap = a->used = a->peak = 0;
}

bool wk_arena_is_measuring(const wk_arena *a) { return a->base == NULL && a->cap == SIZE_MAX; }

wf_status wk_arena_alloc(wk_arena *a, size_t bytes, void **out, wf_err *err) {
    size_t start = (a->used + WK_ARENA_ALIGN - 1) / WK_ARENA_ALIGN * WK_ARENA_ALIGN, end;
    if (start < a->used || wf_add_overflow(start, bytes, &end) || end > a->cap) {
        *out = NULL;
        return wf_fail(err, WF_ENOMEM,
                       "arena %s: request of %zu bytes at offset %zu exceeds its %zu bytes "
                       "(size the arena with a measuring pass first)",
                       a->name ? a->name : "?", bytes, a->used, a->cap);
    }
    *out = a->base ? a->base + start : NULL;
    a->used = end;
    if (end > a->peak) a->peak = end;
    return WF_OK;
}

wf_status wk_arena_tensor(wk_arena *a, wk_tensor *t, wk_dtype dt, int ndim, const int64_t *shape,
                          wf_err *err) {
    size_t n = wk_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || wf_mul_overflow(n, (size_t)shape[i], &n))
            return wf_fail(err, WF_EINVAL, "arena %s: tensor shape dimension %d (%lld) is invalid",
                           a->name ? a->name : "?", i, (long long)shape[i]);
    }
    void *p;
    wf_status st = wk_arena_alloc(a, n, &p, err);
    if (st) return st;
    *t = wk_tensor_make(dt, p, ndim, shape);
    t->device = a->device;
    return WF_OK;
}

void wk_arena_reset(wk_arena *a, size_t mark) {
    WF_ASSERT(mark <= a->used);
    a->used = mark;
}
