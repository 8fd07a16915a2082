/* vae_dist.c: the row-parallel VAE decode (vae_decode_dist, see vae.h): the latent rows are split
 * over the ranks of a communicator, every rank runs the decoder over its band, and the frames are
 * gathered to one writer rank. The result equals the one-rank decode (vae_decode) because every
 * operation sees exactly the inputs it sees there:
 *   - per-pixel ops (RMS norm over channels, SiLU, 1x1 convs, the (3, 1, 1) time convs, the
 *     Wan2.2 DupUp3D shortcut, unpatchify) need nothing from other rows;
 *   - every spatial 3x3 conv (the causal convs of conv_in, the residual blocks and the head, and
 *     the 2-D conv after each nearest upsample) runs over its input band extended by one halo row
 *     above and below: the neighbours' edge rows of the same tensor (vae_halo_rows), zeros at the
 *     global top and bottom (the conv's own padding), with no row padding of its own. Width padding
 *     is unchanged. The causal caches keep the halo-extended frames, so history frames carry their
 *     halo rows into later chunks (vae_blocks.c, vae_cconv_end);
 *   - the mid-block attention (per frame, one head over all pixels) attends this rank's queries
 *     against every rank's keys and values, all-gathered in rank order, which is pixel order.
 * Rank r holds latent rows [r0, r1) (vae_dist_rows), i.e. rows [r0 2^k, r1 2^k) after k spatial
 * upsamplings; the rank order is the row order, so the neighbours are r - 1 and r + 1.
 * After each chunk, the writer receives every rank's rows of the chunk's frames (one message per
 * frame and rank), assembles whole frames in its y role buffer (free between chunks; its own rows
 * with wk_copy), and hands them on as vae_decode does (vae_emit_frames: downloaded, clamped, and
 * permuted to planar in the xc role buffer for `out`); then all ranks agree on a status.
 * Not here: the blocks (vae_blocks.c, where the halo branches are), the exchanges they call
 * (vae_halo.c), the chunk (vae_decode.c).
 * Tested by: tests/test_vae_dist.c (mpirun -np 1..4 against vae_decode).
 */
#include <string.h>

#include "vae_internal.h"

/* message tags on the decoding group (vae_halo.c uses 7301 and 7302) */
enum { TAG_FRAMES = 7303 };

/* ---- status agreement ---- */

static wf_status agree(cm_comm *c, wf_status st, wf_err *err) {
    return cm_agree(c, st, "vae parallel decode", err);
}

/* ---- the schedule ---- */

typedef struct dist_job {
    vae_dec_job j; /* our band: rows [y0, y0 + th) of the latent */
    cm_comm *comm; /* NULL when measuring */
    int n, rank, writer;
} dist_job;

/* Frames [f, f + n) of the video: our rows of them are in x [1, n, Hl, W, 3]; the writer gathers
 * them all into g [n, H, W, 3] (its y buffer) and emits them (scratch: its xc buffer). */
static wf_status gather_emit(vae_run *r, const dist_job *d, const wk_tensor *x, int64_t f,
                             int64_t F) {
    wf_status st = WF_OK;
    const vae_model *m = d->j.m;
    const int64_t n = x->shape[1], Hl = x->shape[2], W = x->shape[3], H = d->j.h * m->s;
    const size_t px = (size_t)(W * 3); /* floats per pixel row */
    WF_ASSERT(x->shape[4] == 3 && Hl == d->j.th * m->s);
    if (d->rank != d->writer) {
        for (int64_t t = 0; t < n; t++)
            WF_TRY(cm_send(d->comm, (const float *)x->data + (size_t)(t * Hl) * px,
                           (size_t)Hl * px * sizeof(float), d->writer, TAG_FRAMES, r->err));
        goto out;
    }
    wk_tensor g = vae_take5(r, VAE_RY, n, H, W, 3);       /* [1, n, H, W, 3] */
    wk_tensor scratch = vae_take5(r, VAE_RXC, n, H, W, 3); /* the planar permute's */
    for (int64_t t = 0; t < n; t++)
        for (int q = 0; q < d->n; q++) {
            int64_t q0, q1;
            vae_dist_rows(d->j.h, d->n, q, &q0, &q1);
            float *dst = (float *)g.data + (size_t)(t * H + q0 * m->s) * px;
            const size_t bytes = (size_t)((q1 - q0) * m->s) * px * sizeof(float);
            if (q == d->rank)
                WF_TRY(wk_copy(r->be, dst, (const float *)x->data + (size_t)(t * Hl) * px, bytes,
                               r->err));
            else
                WF_TRY(cm_recv(d->comm, dst, bytes, q, TAG_FRAMES, r->err));
        }
    st = vae_emit_frames(r->be, &d->j, &g, scratch.data, f, F, r->err);
out:
    return st;
}

/* The chunk's frames gathered to the writer, then every rank agrees on the status; dry, every
 * rank takes the writer's frame buffer, so the arena does not depend on who writes. */
static wf_status emit_dist(vae_run *r, void *ctx, wk_tensor *x, int64_t f, int64_t F) {
    const dist_job *d = ctx;
    if (r->dry) {
        const int64_t n = x->shape[1], H = d->j.h * d->j.m->s, W = d->j.w * d->j.m->s;
        vae_take5(r, VAE_RY, n, H, W, 3);
        vae_take5(r, VAE_RXC, n, H, W, 3);
        if ((size_t)(n * H * W * 3) > r->host_need) r->host_need = (size_t)(n * H * W * 3);
        return WF_OK;
    }
    return agree(d->comm, gather_emit(r, d, x, f, F), r->err);
}

static wf_status dist_schedule(vae_run *r, const dist_job *d) {
    return vae_decode_chunks(r, &d->j, emit_dist, (void *)d);
}

/* The checks every rank makes identically before any communication. */
static wf_status check_dist(const vae_model *m, const vae_opts *o, int n, int rank, int writer,
                            int64_t T, int64_t h, int64_t w, wf_err *err) {
    if (T < 1 || h < 1 || w < 1)
        return wf_fail(err, WF_EINVAL, "vae decode: latent [%lld, %lld, %lld, %lld] is empty",
                       (long long)m->cfg.z_dim, (long long)T, (long long)h, (long long)w);
    wf_status st = vae_check_opts(m, o, err);
    if (st) return st;
    if (writer < 0 || writer >= n)
        return wf_fail(err, WF_EINVAL,
                       "vae parallel decode: writer rank %d is not a rank of the decoding group "
                       "(%d rank%s): pass a writer in [0, %d]",
                       writer, n, n == 1 ? "" : "s", n - 1);
    if (rank < 0 || rank >= n)
        return wf_fail(err, WF_EINVAL, "vae parallel decode: rank %d is not in [0, %d)", rank, n);
    if (n == 1) return WF_OK;
    if (o->tiling.enabled)
        return wf_fail(err, WF_EINVAL,
                       "vae parallel decode over %d ranks: tiled decode is a single-rank "
                       "low-memory mode; parallel decode splits rows instead: disable tiling, or "
                       "decode on one rank",
                       n);
    if (h < n)
        return wf_fail(err, WF_EINVAL,
                       "vae decode over %d ranks needs at least %d latent rows; the latent has "
                       "%lld rows: use at most %lld decode ranks",
                       n, n, (long long)h, (long long)h);
    return WF_OK;
}

static wf_status decode_dist(const vae_model *m, wk_backend *be, wk_arena *arena,
                             const vae_opts *o, cm_comm *comm, int n, int rank, int writer,
                             const float *z, int64_t T, int64_t h, int64_t w, float *out,
                             vae_frames_fn on_frames, void *frames_ctx, wf_err *err) {
    wf_status st = WF_OK;
    const bool measuring = wk_arena_is_measuring(arena);
    const size_t mark = wk_arena_mark(arena);
    dist_job d = {.j = {.m = m,
                        .o = o,
                        .z = z,
                        .T = T,
                        .h = h,
                        .w = w,
                        .tw = w,
                        .out = out,
                        .on_frames = on_frames,
                        .frames_ctx = frames_ctx},
                  .comm = comm,
                  .n = n,
                  .rank = rank,
                  .writer = writer};
    int64_t r0, r1;
    vae_dist_rows(h, n, rank, &r0, &r1);
    d.j.y0 = r0;
    d.j.th = r1 - r0;
    const int64_t C = m->w.dec.mid_attn.dim;
    vae_halo halo = {.comm = comm,
                     .rank = rank,
                     .size = n,
                     .up = rank > 0 ? rank - 1 : -1,
                     .down = rank < n - 1 ? rank + 1 : -1,
                     .attn_keys = h * w};
    size_t *counts = NULL;
    vae_run r;
    vae_run_init(&r, be, m->w.dec.n_slots, NULL, NULL, err);
    r.halo = &halo;
    st = wk_arena_alloc(arena, (size_t)n * sizeof *counts, (void **)&counts, err);
    if (!st) st = dist_schedule(&r, &d); /* dry: sizes */
    if (!st) st = vae_run_alloc(&r, arena);
    if (measuring) goto out;
    if (!st) st = vae_host_reserve(&d.j, r.host_need, err); /* the writer's, with on_frames */
    WF_TRY(agree(comm, st, err)); /* an arena too small on one rank stops every rank */
    for (int q = 0; q < n; q++) {
        int64_t q0, q1;
        vae_dist_rows(h, n, q, &q0, &q1);
        counts[q] = (size_t)((q1 - q0) * w * C) * sizeof(float); /* keys of one frame */
    }
    halo.counts = counts;
    st = dist_schedule(&r, &d);
out:
    vae_host_release(&d.j);
    wk_arena_reset(arena, mark);
    return st;
}

/* ---- entry points ---- */

wf_status vae_decode_dist(const vae_model *m, wk_backend *be, wk_arena *arena, const vae_opts *o,
                          cm_comm *comm, int writer, const float *z, int64_t T, int64_t h,
                          int64_t w, float *out, vae_frames_fn on_frames, void *frames_ctx,
                          wf_err *err) {
    const int n = comm ? comm->size : 1, rank = comm ? comm->rank : 0;
    wf_status st = check_dist(m, o, n, rank, writer, T, h, w, err);
    if (st) return st;
    if (n == 1)
        return vae_decode(m, be, arena, o, z, T, h, w, out, on_frames, frames_ctx, NULL, NULL,
                          err);
    if (comm->backend != CM_MPI)
        return wf_fail(err, WF_EUNSUPPORTED,
                       "vae parallel decode: communicator '%s' uses NCCL, but the VAE's "
                       "activations are host memory: decode over an MPI-backend group",
                       comm->name);
    return decode_dist(m, be, arena, o, comm, n, rank, writer, z, T, h, w,
                       rank == writer ? out : NULL, rank == writer ? on_frames : NULL, frames_ctx,
                       err);
}

wf_status vae_decode_dist_arena_bytes(const vae_model *m, int64_t T, int64_t h, int64_t w,
                                      const vae_opts *o, int nranks, int rank, size_t *bytes,
                                      wf_err *err) {
    *bytes = 0;
    if (nranks < 1)
        return wf_fail(err, WF_EINVAL, "vae parallel decode: %d ranks; at least 1 is needed",
                       nranks);
    wf_status st = check_dist(m, o, nranks, rank, 0, T, h, w, err);
    if (st) return st;
    if (nranks == 1) return vae_decode_arena_bytes(m, T, h, w, o, bytes, err);
    wk_arena a;
    wk_arena_init_measure(&a, "vae parallel decode activations");
    st = decode_dist(m, NULL, &a, o, NULL, nranks, rank, 0, NULL, T, h, w, NULL, NULL, NULL, err);
    *bytes = st ? 0 : a.peak;
    return st;
}
