/* arena.h: the activation arena (prefix wk_arena_).
 *
 * What it is: one allocation, sized before the loop, from which every activation tensor of a
 * forward pass is carved with a bump pointer (64-byte aligned). mark/reset give scoped reuse.
 * A "measuring" arena (no memory) runs the same allocation sequence first and reports the size
 * the real arena needs, so sizing is computed by the code that allocates, never guessed.
 * What it is not: a general allocator; nothing is freed individually.
 * Tested by: tests/test_arena.c.
 */
#ifndef WK_ARENA_H
#define WK_ARENA_H

#include <stdbool.h>
#include <stddef.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WK_ARENA_ALIGN 64

typedef struct wk_arena {
    unsigned char *base; /* NULL for a measuring arena */
    size_t cap;          /* bytes; SIZE_MAX for a measuring arena */
    size_t used;
    size_t peak;
    const char *name;    /* "dit activations", for messages */
    struct wk_backend *be; /* the backend whose memory base is (NULL: host memory) */
    wk_device device;      /* the device of the tensors it gives */
} wk_arena;

/* A real arena of cap bytes (one aligned allocation). */
wf_status wk_arena_init(wk_arena *a, const char *name, size_t cap, wf_err *err);
/* The same in a backend's memory (one wk_backend_alloc; a device arena on a GPU backend): its
 * tensors carry be->device. wk_arena_free gives the memory back to that backend. */
struct wk_backend;
wf_status wk_arena_init_on(wk_arena *a, struct wk_backend *be, const char *name, size_t cap,
                           wf_err *err);
/* A measuring arena: allocations succeed without memory (data pointers are NULL); read
 * a->peak afterwards. */
void wk_arena_init_measure(wk_arena *a, const char *name);
void wk_arena_free(wk_arena *a); /* accepts an already-freed or zeroed arena */

bool wk_arena_is_measuring(const wk_arena *a);
/* bytes from the arena, 64-byte aligned; on exhaustion returns WF_ENOMEM naming the arena, the
 * request and the capacity. */
wf_status wk_arena_alloc(wk_arena *a, size_t bytes, void **out, wf_err *err);
/* A tensor of the given dtype and shape whose data comes from the arena. */
wf_status wk_arena_tensor(wk_arena *a, wk_tensor *t, wk_dtype dt, int ndim, const int64_t *shape,
                          wf_err *err);
/* The same for an f32 tensor whose dims are listed: WK_ARENA_F32(a, &t, err, L, D). */
#define WK_ARENA_F32(a, t, err, ...)                                                             \
    wk_arena_tensor((a), (t), WK_F32, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),  \
                    (int64_t[]){__VA_ARGS__}, (err))

static inline size_t wk_arena_mark(const wk_arena *a) { return a->used; }
void wk_arena_reset(wk_arena *a, size_t mark);

#ifdef __cplusplus
}
#endif

#endif
