/* tensor.h: the tensor type of the runtime (prefix wk_tensor_).
 *
 * What it is: a view of contiguous, row-major memory with a dtype and up to 5 dimensions. A tensor
 * never owns its memory: weights point into a mapped or uploaded checkpoint block, activations into
 * an arena (arena.h). Shapes are listed outermost first, as in PyTorch.
 * What it is not: strided or broadcasting views (ops that broadcast say so).
 * Tested by: tests/test_ops.c (through every op), tests/test_arena.c.
 */
#ifndef WK_TENSOR_H
#define WK_TENSOR_H

#include <stdbool.h>
#include <stdint.h>

#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WK_MAX_DIMS 5

typedef enum wk_device { WK_DEV_CPU = 0, WK_DEV_CUDA } wk_device;

typedef struct wk_tensor {
    wk_dtype dtype;
    wk_device device;
    int ndim;                    /* 0..WK_MAX_DIMS; 0 is a scalar with one element */
    int64_t shape[WK_MAX_DIMS];  /* outermost first; entries past ndim are 1 */
    void *data;                  /* not owned */
    const char *name;            /* optional, for error messages (checkpoint name) */
    float qscale;                /* a GEMM weight of a scaled-fp8 checkpoint (f8e4m3): its value
                                  * is the stored one times qscale; 0: not scaled. Only matmul and
                                  * matmul_gelu read it (their w); loaders attach it to nothing
                                  * else */
} wk_tensor;

/* A tensor header over `data`, shape given as ndim values. Asserts ndim <= WK_MAX_DIMS. */
wk_tensor wk_tensor_make(wk_dtype dt, void *data, int ndim, const int64_t *shape);
/* Convenience for literal shapes: wk_tensor_1d(...), ..._2d, ..._3d, ..._4d, ..._5d. */
wk_tensor wk_tensor_1d(wk_dtype dt, void *data, int64_t d0);
wk_tensor wk_tensor_2d(wk_dtype dt, void *data, int64_t d0, int64_t d1);
wk_tensor wk_tensor_3d(wk_dtype dt, void *data, int64_t d0, int64_t d1, int64_t d2);
wk_tensor wk_tensor_4d(wk_dtype dt, void *data, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
wk_tensor wk_tensor_5d(wk_dtype dt, void *data, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                       int64_t d4);

int64_t wk_tensor_numel(const wk_tensor *t);
size_t wk_tensor_nbytes(const wk_tensor *t);
bool wk_tensor_same_shape(const wk_tensor *a, const wk_tensor *b);
/* Product of dims [from, ndim). */
int64_t wk_tensor_inner(const wk_tensor *t, int from);
/* "[2, 3, 5]" into buf (always NUL-terminated); returns buf. */
const char *wk_tensor_shape_str(const wk_tensor *t, char *buf, size_t len);

/* Checks used at op entry; each fills err naming the op and the argument. */
wf_status wk_check_dtype(const wk_tensor *t, wk_dtype dt, const char *op, const char *arg,
                         wf_err *err);
wf_status wk_check_ndim(const wk_tensor *t, int ndim, const char *op, const char *arg,
                        wf_err *err);
wf_status wk_check_same_shape(const wk_tensor *a, const wk_tensor *b, const char *op,
                              const char *an, const char *bn, wf_err *err);

#ifdef __cplusplus
}
#endif

#endif
