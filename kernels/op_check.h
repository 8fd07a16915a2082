/* op_check.h: the argument checks an op's every backend shares (prefix wk_check_), so that the CPU
 * and the CUDA backend refuse the same calls with the same words.
 *
 * What it is: the shape, dtype and index rules of the data-movement ops (the broadcast of add and
 * mul, copy_box, permute, the VAE shortcuts) and of the sampler updates, checked on the host before anything runs. What it is not: the device check
 * (each backend checks first that a tensor lives in its own memory, with its own message), nor
 * a check of the values inside the tensors.
 * Tested by: tests/ops_layout.c and tests/ops_vae.c ("rejects" rows, CPU), and
 * tests/test_backend_ops.c (the same calls on CUDA).
 */
#ifndef WK_OP_CHECK_H
#define WK_OP_CHECK_H

#include "backend.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* add / mul: b broadcasts to a by NumPy rules (right-aligned, each b dim 1 or equal; extra
 * leading b dims of 1 allowed); bstride[i] is b's element stride along a's dim i (0 where b is
 * 1). op names the op in the message. */
wf_status wk_check_broadcast(const wk_tensor *a, const wk_tensor *b, const char *op,
                             int64_t bstride[WK_MAX_DIMS], wf_err *err);
/* copy_box: y and x of one dtype (of a known size) and one ndim (>= 1); the box ext at x_off fits
 * x and at y_off fits y, in every dim. */
wf_status wk_check_copy_box(const wk_tensor *y, const int64_t *y_off, const wk_tensor *x,
                            const int64_t *x_off, const int64_t *ext, wf_err *err);
/* permute: y and x of one dtype of 1, 2 or 4 bytes; perm a permutation of [0, nd), nd in
 * [1, WK_MAX_PERM_DIMS]; shape (>= 0 each) holds as many elements as x, and y at least as many.
 * *n: that element count. */
wf_status wk_check_permute(const wk_tensor *y, const wk_tensor *x, int nd, const int64_t *shape,
                           const int *perm, int64_t *n, wf_err *err);
/* avgdown3d / dupup3d (op names the one): x [1, T, H, W, Ci], y [1, To, Ho, Wo, Co] (5-D, batch
 * 1), factors ft, fs in [1, 64]. */
wf_status wk_check_shortcut(const wk_tensor *y, const wk_tensor *x, int64_t ft, int64_t fs,
                            const char *op, wf_err *err);
/* y's shape is [1, To, Ho, Wo, C] exactly (C checked by the op). */
wf_status wk_check_shortcut_y(const wk_tensor *y, const wk_tensor *x, int64_t To, int64_t Ho,
                              int64_t Wo, const char *op, wf_err *err);

/* A backend's own memory check: WF_EINVAL, naming op and arg, unless t lives in its memory. */
typedef wf_status (*wk_dev_check)(const wk_tensor *t, const char *op, const char *arg,
                                  wf_err *err);
/* first_nonfinite (and the others' tensors): t (argument arg of op) is in the backend's memory
 * (dev), f32, with n elements (any shape). */
wf_status wk_check_flat(wk_dev_check dev, const wk_tensor *t, int64_t n, const char *op,
                        const char *arg, wf_err *err);
/* scale_add / guidance: y, a and b (named an, bn) as wk_check_flat with y's element count. */
wf_status wk_check_update(wk_dev_check dev, const wk_tensor *y, const wk_tensor *a,
                          const wk_tensor *b, const char *op, const char *an, const char *bn,
                          wf_err *err);
/* unipc_update: c->order in 1..3, the history terms it reads given (m[k] for k < order), and y,
 * x, m[k] and d (when given) as wk_check_flat with y's element count. */
wf_status wk_check_unipc(wk_dev_check dev, const wk_tensor *y, const wk_tensor *x,
                         const wk_tensor *const *m, const wk_tensor *d, const wk_unipc_coef *c,
                         wf_err *err);

#ifdef __cplusplus
}
#endif
#endif
