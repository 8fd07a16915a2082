/* weights.h: a model's weights moved into one allocation of a backend's memory (prefix
 * wk_weights_).
 *
 * What it is: the one upload of a model's tensors, after the loader has bound them to views of
 * the mapped checkpoint: the sizes are summed, one block of backend memory is allocated
 * (256-byte aligned slots), each tensor is copied there (from the mapping, in bounded chunks) and
 * its view re-pointed at its slot. A tensor either keeps its stored dtype or is widened to f32:
 * widened when its module is one Diffusers keeps in fp32 (keep_f32) or when the backend computes
 * in WK_PREC_FP32. On the CPU backend nothing moves: the ops read the mapping directly (and widen
 * blockwise), so the block is NULL and the call costs nothing.
 * What it is not: a loader (worker/io/st_bind.h binds the names), nor a cache of converted
 * layouts (ops that need one, e.g. cuDNN's filter layout, keep their own).
 * Tested by: tests/test_weights.c (the CPU path, the accounting through a host backend, and a
 *   second upload after a free).
 */
#ifndef WK_WEIGHTS_H
#define WK_WEIGHTS_H

#include <stdbool.h>
#include <stddef.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wk_weight {
    wk_tensor *t;   /* bound (t->data != NULL) or absent (skipped) */
    bool keep_f32;  /* Diffusers keeps this module in fp32 (_keep_in_fp32_modules) */
} wk_weight;

typedef struct wk_weights_block {
    wk_backend *be;  /* owner of base (NULL: nothing was moved) */
    void *base;
    size_t bytes;    /* of base */
    size_t n;        /* tensors moved */
    const wk_weight *ws; /* the list that was moved (the caller's, borrowed) and its length, */
    size_t n_ws;
    wk_tensor *saved;    /* [n_ws]: each tensor's view before the move (host memory, owned) */
} wk_weights_block;

/* The dtype tensor w gets on backend be. */
wk_dtype wk_weights_dtype(const wk_backend *be, const wk_weight *w);
/* Bytes the block for ws[0..n) takes on be (0 on the CPU backend). */
size_t wk_weights_bytes(const wk_backend *be, const wk_weight *ws, size_t n);
/* Moves ws[0..n) into one block of be's memory and re-points them (see the head comment). On
 * failure nothing is re-pointed and *blk is empty. */
wf_status wk_weights_upload(wk_backend *be, const wk_weight *ws, size_t n, wk_weights_block *blk,
                            wf_err *err);
/* Gives the block back and re-points every moved tensor at its view before the move (the
 * mapped checkpoint, which must still be open), so that the same list can be uploaded again
 * later: a model can leave a device between uses (the text encoder between videos). Accepts an
 * empty block. */
void wk_weights_free(wk_weights_block *blk);

#ifdef __cplusplus
}
#endif

#endif
