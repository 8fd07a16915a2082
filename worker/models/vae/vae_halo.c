/* vae_halo.c: the exchanges the VAE blocks make under the row-parallel decode (vae_internal.h):
 * the band split (vae_dist_rows), the one-row halos of a spatial conv's input (vae_halo_rows)
 * and the mid-block attention's key/value all-gather (vae_halo_gather).
 *
 * What it is: the layer below the blocks. vae_blocks.c calls it when a run has a halo
 * (vae_run.halo); it calls only the communicator, never the blocks or the schedule, so the
 * blocks, the decode and the parallel schedule (vae_dist.c) form no circle.
 * The rows are contiguous runs of the backend's frame buffers, so nothing is packed: their
 * pointers go to the communicator as they are (host memory on the CPU backend; a device path is
 * the communicator's business, issue 13), and the global edges are zeroed with wk_fill.
 * What it is not: the schedule or the frame gather (vae_dist.c).
 * Tested by: tests/test_vae_dist.c (mpirun -np 1..4 against vae_decode).
 */
#include <string.h>

#include "vae_internal.h"

/* message tags on the decoding group */
enum { TAG_HALO_UP = 7301, TAG_HALO_DOWN = 7302 }; /* vae_dist.c uses 7303 */

void vae_dist_rows(int64_t h, int n, int r, int64_t *r0, int64_t *r1) {
    WF_ASSERT(n >= 1 && r >= 0 && r < n);
    const int64_t q = h / n, e = h % n;
    *r0 = r * q + (r < e ? r : e);
    *r1 = *r0 + q + (r < e ? 1 : 0);
}

wf_status vae_halo_rows(vae_run *r, float *frame, int64_t H, int64_t W, int64_t C) {
    wf_status st;
    const vae_halo *h = r->halo;
    const size_t row = (size_t)(W * C), bytes = row * sizeof(float);
    float *top = frame, *first = frame + row, *last = frame + (size_t)H * row,
          *bottom = frame + (size_t)(H + 1) * row;
    /* our first row up, the lower neighbour's first row into our bottom halo; then the reverse */
    if ((st = cm_sendrecv(h->comm, first, bytes, h->up, bottom, bytes, h->down, TAG_HALO_UP,
                          r->err)))
        return st;
    if ((st = cm_sendrecv(h->comm, last, bytes, h->down, top, bytes, h->up, TAG_HALO_DOWN,
                          r->err)))
        return st;
    wk_tensor t = vae_on(r->be, wk_tensor_1d(WK_F32, top, (int64_t)row));
    wk_tensor b = vae_on(r->be, wk_tensor_1d(WK_F32, bottom, (int64_t)row));
    if (h->up < 0 && (st = wk_fill(r->be, &t, 0.0f, r->err))) return st; /* the conv's padding */
    if (h->down < 0 && (st = wk_fill(r->be, &b, 0.0f, r->err))) return st;
    return WF_OK;
}

wf_status vae_halo_gather(vae_run *r, const float *send, float *recv) {
    return cm_allgatherv(r->halo->comm, send, recv, r->halo->counts, r->err);
}
