/* dit_forward.c: one forward pass of the Wan DiT (see dit.h), written to read like Diffusers'
 * WanTransformer3DModel.forward (wan_spec.md §1.2-1.6), one backend op per line.
 *
 * Backend-agnostic: every step over activations is a backend op, so the same code runs on the
 * CPU and on a GPU backend whose arena lives in device memory. The host inputs (latents,
 * timestep, text) are uploaded into arena tensors first and the velocity is downloaded at the
 * end; on the CPU both are memcpy. The rotary tables are built by the backend too
 * (wk_rope_table: float64 maths, cast to f32). Taps get host tensors: on a GPU backend each tapped
 * tensor is downloaded into one host buffer first.
 *
 * Buffer reuse inside a block (all [Ll, D] unless noted): x the residual stream, n the normalised
 * input of a sub-block, q/k/v/o the attention operands and output, q again for the projected
 * output of each sub-block (attention out, FFN out) before its gated add. The fused ops
 * (ln_modulate, rms_norm_rope, gate_residual, matmul_gelu) give the unfused sequences' bits on the
 * CPU (kernels/cpu/fused.c).
 *
 * Patches: the latents [Cin, F, H, W] read as [Cin, Fp, pt, Hp, ph, Wp, pw] are permuted to
 * [Fp, Hp, Wp, Cin, pt, ph, pw] = [L, Cin*P] (the Conv3d patch embedding, kernel = stride =
 * patch, is then a GEMM against the weight seen as [D, Cin*P]); this rank's rows are a box of
 * that, the padding rows zeros. The head's rows [L, P*Cout] read as [Fp, Hp, Wp, pt, ph, pw, Cout]
 * go back to [Cout, Fp, pt, Hp, ph, Wp, pw] = [Cout, F, H, W].
 *
 * Ulysses (U ranks in the sp communicator): the L tokens are padded to Lp = U * Ll, Ll a multiple
 * of the backend's row quantum (dit_tokens_per_rank in dit.h; also for U = 1), and rank r holds
 * tokens [r Ll, (r + 1) Ll). Everything but self-attention is per token (or on the text and
 * timestep, computed by every rank), so it runs on the local rows unchanged. Self-attention:
 * q, k, v are projected, RMS-normed (across all heads: each token has them all) and rotated with
 * the tokens' global positions, then packed head-group-major ([Ll, U, D/U] -> [U, Ll, D/U] by a
 * permute, n is the scratch) and exchanged by an all-to-all, after which each rank holds all Lp
 * tokens of heads [r NH/U, (r + 1) NH/U) ([Lp, NH/U, HD], contiguous as received). The padding
 * is the last Lp - L keys, masked by attention's kv_len = L. The output goes back by a second
 * all-to-all and is unpacked into o [Ll, D]. The head output is all-gathered ([Lp, P Cout]) so
 * that every rank returns the whole velocity.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dit.h"

typedef struct dit_acts {
    wk_tensor lat;                /* [Cin, F, H, W]: the latents, uploaded */
    wk_tensor pall;               /* [L, Cin*pt*ph*pw]: every token's patch (not when direct) */
    wk_tensor patches;            /* [Ll, Cin*pt*ph*pw]: this rank's rows, padding rows zero */
    wk_tensor x, n, q, k, v, o;   /* [Ll, D] */
    wk_tensor ffh;                /* [Ll, FF] */
    wk_tensor txt;                /* [Lt, text_dim]: the text, uploaded */
    wk_tensor txt_h, ctx;         /* [Lt, D] */
    wk_tensor k2, v2;             /* [Lt, D] */
    wk_tensor tin;                /* [1] or [L] (per token): the timestep(s), uploaded */
    wk_tensor tsl;                /* [Ll]: this rank's per-token timesteps (padding 0) */
    wk_tensor sinus;              /* [Tn, freq_dim] */
    wk_tensor th, temb, temb_silu;/* [Tn, D] */
    wk_tensor tproj[6];           /* [Tn, D]: time_proj output, chunk j */
    wk_tensor shift, scale, gate; /* [Tn, D] */
    wk_tensor cos, sin;           /* [Ll, HD] */
    wk_tensor head;               /* [Ll, pt*ph*pw*Cout] */
    wk_tensor one;                /* [1]: the 1 of (1 + scale) */
    /* Ulysses only (U > 1) */
    wk_tensor qh, kh, vh, oh;     /* [Lp, NH/U, HD]: all tokens, this rank's heads */
    wk_tensor headg;              /* [Lp, pt*ph*pw*Cout]: every rank's head rows */
    wk_tensor vel;                /* [Cout, F, H, W]: the velocity, downloaded */
    int64_t L, Tn, Fp, Hp, Wp;    /* tokens, timestep rows, token grid */
    int64_t U, rank, Lp, Ll, l0;  /* Ulysses degree and rank, padded and local tokens, first row */
    int64_t nreal;                /* this rank's real tokens (not the padding) */
    bool direct;                  /* U = 1 and no padding: the patches are all of pall */
} dit_acts;

/* A header over data with t's dtype and device (a view of a weight or an activation). */
static wk_tensor view_as(const wk_tensor *t, void *data, int ndim, const int64_t *shape) {
    wk_tensor v = wk_tensor_make(t->dtype, data, ndim, shape);
    v.device = t->device;
    v.name = t->name;
    return v;
}

/* Rows [r0, r0 + n) of a 2-D tensor (or elements of a 1-D one), as a view. */
static wk_tensor rows_view(const wk_tensor *w, int64_t r0, int64_t n) {
    int64_t inner = w->ndim == 2 ? w->shape[1] : 1;
    wk_tensor v = *w;
    v.data = (char *)w->data + (size_t)(r0 * inner) * wk_dtype_size(w->dtype);
    v.shape[0] = n;
    return v;
}

/* Chunk j of a [1, K, D] scale_shift_table, as a [1, D] tensor. */
static wk_tensor table_row(const wk_tensor *t, int64_t j) {
    int64_t D = t->shape[2];
    return view_as(t, (char *)t->data + (size_t)(j * D) * wk_dtype_size(t->dtype), 2,
                   (int64_t[]){1, D});
}

wf_status dit_check_shape(const dit_model *m, const dit_shape *s, wf_err *err) {
    const dfs_transformer_config *c = &m->cfg;
    int64_t dims[3] = {s->F, s->H, s->W};
    static const char *nm[3] = {"frames", "height", "width"};
    for (int i = 0; i < 3; i++) {
        if (dims[i] <= 0 || dims[i] % c->patch_size[i])
            return wf_fail(err, WF_EINVAL,
                           "dit: latent %s %lld must be a positive multiple of the patch size %lld",
                           nm[i], (long long)dims[i], (long long)c->patch_size[i]);
        if (dims[i] / c->patch_size[i] > c->rope_max_seq_len)
            return wf_fail(err, WF_EINVAL,
                           "dit: latent %s %lld gives %lld patches, more than the rotary table's "
                           "rope_max_seq_len %lld",
                           nm[i], (long long)dims[i], (long long)(dims[i] / c->patch_size[i]),
                           (long long)c->rope_max_seq_len);
    }
    if (s->Lt < 1) return wf_fail(err, WF_EINVAL, "dit: the text has %lld tokens, need at least 1",
                                  (long long)s->Lt);
    return WF_OK;
}

/* The token counts of one forward on rank `rank` of U. */
static void acts_dims(const dit_model *m, const dit_shape *s, int U, int rank, int64_t quantum,
                      dit_acts *a) {
    const int64_t *p = m->cfg.patch_size;
    a->Fp = s->F / p[0];
    a->Hp = s->H / p[1];
    a->Wp = s->W / p[2];
    a->L = a->Fp * a->Hp * a->Wp;
    a->U = U;
    a->rank = rank;
    a->Ll = dit_tokens_per_rank(a->L, U, quantum);
    a->Lp = a->Ll * U;
    a->l0 = a->Ll * rank;
    a->Tn = s->per_token_t ? a->Ll : 1;
    a->nreal = a->l0 >= a->L ? 0 : (a->L - a->l0 < a->Ll ? a->L - a->l0 : a->Ll);
    a->direct = U == 1 && a->Lp == a->L;
}

/* Every activation of one forward, from the arena; io: also the input latents, text and the
 * output velocity (dit_forward; dit_forward_on takes the caller's). A measuring arena gives the
 * exact size. */
static wf_status acts_alloc(const dit_model *m, const dit_shape *s, int U, int rank,
                            int64_t quantum, bool io, wk_arena *ar, dit_acts *a, wf_err *err) {
    const dfs_transformer_config *c = &m->cfg;
    const int64_t *p = c->patch_size, D = c->dim;
    acts_dims(m, s, U, rank, quantum, a);
    int64_t L = a->Ll, Tn = a->Tn, Lt = s->Lt, P = p[0] * p[1] * p[2];
    wf_status st;
#define A(t, ...)                                                                                \
    do {                                                                                         \
        if ((st = WK_ARENA_F32(ar, &a->t, err, __VA_ARGS__))) return st;                         \
    } while (0)
    if (io) A(lat, c->in_channels, s->F, s->H, s->W);
    if (!a->direct) A(pall, a->L, c->in_channels * P);
    A(patches, L, c->in_channels * P);
    A(x, L, D);
    A(n, L, D);
    A(q, L, D);
    A(k, L, D);
    A(v, L, D);
    A(o, L, D);
    A(ffh, L, c->ffn_dim);
    if (io) A(txt, Lt, c->text_dim);
    A(txt_h, Lt, D);
    A(ctx, Lt, D);
    A(k2, Lt, D);
    A(v2, Lt, D);
    A(tin, s->per_token_t ? a->L : 1);
    if (s->per_token_t && !a->direct) A(tsl, L);
    A(sinus, Tn, c->freq_dim);
    A(th, Tn, D);
    A(temb, Tn, D);
    A(temb_silu, Tn, D);
    for (int j = 0; j < 6; j++) A(tproj[j], Tn, D);
    A(shift, Tn, D);
    A(scale, Tn, D);
    A(gate, Tn, D);
    A(cos, L, c->attention_head_dim);
    A(sin, L, c->attention_head_dim);
    A(head, L, c->out_channels * P);
    A(one, 1);
    if (U > 1) {
        int64_t NHl = c->num_attention_heads / U, HD = c->attention_head_dim;
        A(qh, a->Lp, NHl, HD);
        A(kh, a->Lp, NHl, HD);
        A(vh, a->Lp, NHl, HD);
        A(oh, a->Lp, NHl, HD);
        A(headg, a->Lp, c->out_channels * P);
    }
    if (io) A(vel, c->out_channels, s->F, s->H, s->W);
#undef A
    return WF_OK;
}

/* Ulysses degree U must divide the heads and be at most the token count. */
static wf_status check_sp(const dit_model *m, const dit_shape *s, int U, wf_err *err) {
    const dfs_transformer_config *c = &m->cfg;
    int64_t L = s->F / c->patch_size[0] * (s->H / c->patch_size[1]) * (s->W / c->patch_size[2]);
    if (U < 1 || c->num_attention_heads % U)
        return wf_fail(err, WF_EINVAL,
                       "dit: Ulysses degree %d does not divide the %lld attention heads", U,
                       (long long)c->num_attention_heads);
    if (U > L)
        return wf_fail(err, WF_EINVAL, "dit: Ulysses degree %d is more than the %lld tokens", U,
                       (long long)L);
    return WF_OK;
}

wf_status dit_arena_bytes(const dit_model *m, const wk_backend *be, const dit_shape *s,
                          int sp_size, size_t *bytes, wf_err *err) {
    wf_status st = dit_check_shape(m, s, err);
    if (st || (st = check_sp(m, s, sp_size, err))) return st;
    wk_arena ar;
    dit_acts a;
    wk_arena_init_measure(&ar, "dit activations");
    if ((st = acts_alloc(m, s, sp_size, 0, be->row_quantum, true, &ar, &a, err))) return st;
    *bytes = ar.peak;
    return WF_OK;
}

int64_t dit_tokens_per_rank(int64_t L, int U, int64_t quantum) {
    if (quantum < 1) quantum = 1;
    const int64_t q = (int64_t)U * quantum;
    return (L + q - 1) / q * quantum;
}


/* shift = proj[j0] + table[j0], scale = proj[j0 + 1] + table[j0 + 1] + 1, gate = ... + table[j0 + 2] */
static wf_status modulation(wk_backend *be, dit_acts *a, const wk_tensor *table, int j0,
                            bool with_gate, wf_err *err) {
    wf_status st = WF_OK;
    wk_tensor r0 = table_row(table, j0), r1 = table_row(table, j0 + 1);
    WF_TRY(wk_add(be, &a->shift, &a->tproj[j0], &r0, err));
    WF_TRY(wk_add(be, &a->scale, &a->tproj[j0 + 1], &r1, err));
    WF_TRY(wk_add(be, &a->scale, &a->scale, &a->one, err));
    if (with_gate) {
        wk_tensor r2 = table_row(table, j0 + 2);
        WF_TRY(wk_add(be, &a->gate, &a->tproj[j0 + 2], &r2, err));
    }
out:
    return st;
}

/* [L*, D] seen as [L*, NH, HD] */
static wk_tensor heads_view(const dfs_transformer_config *c, const wk_tensor *t) {
    return view_as(t, t->data, 3,
                   (int64_t[]){t->shape[0], c->num_attention_heads, c->attention_head_dim});
}

/* o = attention of q against (k, v), each [L*, D] seen as [L*, NH, HD]; keys [kv_len, Lk) are
 * masked (kv_len 0: none). */
static wf_status attend(wk_backend *be, const dfs_transformer_config *c, wk_tensor *o,
                        const wk_tensor *q, const wk_tensor *k, const wk_tensor *v, int64_t kv_len,
                        wf_err *err) {
    wk_tensor o3 = heads_view(c, o), q3 = heads_view(c, q), k3 = heads_view(c, k);
    wk_tensor v3 = heads_view(c, v);
    return wk_attention(be, &o3, &q3, &k3, &v3, (float)(1.0 / sqrt((double)c->attention_head_dim)),
                        kv_len, NULL, err);
}

/* Before a collective on host buffers (MPI): the ops that wrote them are done. A device comm
 * (NCCL, or MPI through host memory) runs on the backend's queue behind them: no host wait. */
static wf_status host_ready(wk_backend *be, const cm_comm *sp, wf_err *err) {
    return sp->backend == CM_MPI ? wk_sync(be, err) : WF_OK;
}

static wf_status attend_back(wk_backend *be, cm_comm *sp, const dfs_transformer_config *c,
                             dit_acts *a, int64_t kv_len, wf_err *err);

/* Self-attention under Ulysses with the exchanges overlapped (sp->overlap): each of q, k, v is
 * projected (q, k normed and rotated) and permuted into a buffer the next no longer needs (q into
 * o, k into q, v into k), and its all-to-all started (cm_ialltoall) while the next one's
 * projection runs; the attention waits for all three. The same ops on the same data as
 * ulysses_attend: the same bits. */
static wf_status ulysses_attend_overlap(wk_backend *be, cm_comm *sp,
                                        const dfs_transformer_config *c, const dit_block *b,
                                        dit_acts *a, int64_t kv_len, float eps, wf_err *err) {
    wf_status st = WF_OK;
    const int64_t D = c->dim, U = a->U, Dl = D / U;
    const size_t block = (size_t)(a->Ll * Dl) * sizeof(float);
    const int swap[3] = {1, 0, 2};
    const wk_tensor *w[3] = {&b->attn1.to_q_w, &b->attn1.to_k_w, &b->attn1.to_v_w};
    const wk_tensor *bias[3] = {&b->attn1.to_q_b, &b->attn1.to_k_b, &b->attn1.to_v_b};
    const wk_tensor *norm[2] = {&b->attn1.norm_q, &b->attn1.norm_k};
    wk_tensor *proj[3] = {&a->q, &a->k, &a->v}, *send[3] = {&a->o, &a->q, &a->k};
    wk_tensor *out[3] = {&a->qh, &a->kh, &a->vh};
    cm_request req[3];
    memset(req, 0, sizeof req);
    for (int i = 0; i < 3; i++) {
        WF_TRY(wk_matmul(be, proj[i], &a->n, w[i], bias[i], err)); /* [Ll, D] */
        if (i < 2) {
            wk_tensor h3 = heads_view(c, proj[i]);
            WF_TRY(wk_rms_norm_rope(be, &h3, &h3, norm[i], &a->cos, &a->sin, eps, err));
        }
        WF_TRY(wk_permute(be, send[i], proj[i], 3, (int64_t[]){a->Ll, U, Dl}, swap, err));
        WF_TRY(host_ready(be, sp, err));
        WF_TRY(cm_ialltoall(sp, send[i]->data, out[i]->data, block, &req[i], err));
    }
    for (int i = 0; i < 3; i++) WF_TRY(cm_wait(sp, &req[i], err));
    st = attend_back(be, sp, c, a, kv_len, err);
out:
    for (int i = 0; i < 3; i++) /* after a failure: nothing left in flight on these buffers */
        if (req[i].active) cm_wait(sp, &req[i], NULL);
    return st;
}

/* Self-attention under Ulysses: o [Ll, D] = attention of the whole sequence for this rank's
 * tokens, from local q, k, v [Ll, D] (normed and rotated). n is the scratch. The collectives get
 * backend pointers (host memory on the CPU backend, after a sync: host_ready). */
static wf_status ulysses_attend(wk_backend *be, cm_comm *sp, const dfs_transformer_config *c,
                                dit_acts *a, int64_t kv_len, wf_err *err) {
    wf_status st = WF_OK;
    const int64_t D = c->dim, U = a->U, Dl = D / U;
    const size_t block = (size_t)(a->Ll * Dl) * sizeof(float);
    const int swap[3] = {1, 0, 2};
    wk_tensor *in[3] = {&a->q, &a->k, &a->v}, *out[3] = {&a->qh, &a->kh, &a->vh};
    for (int i = 0; i < 3; i++) { /* [Ll, U, D/U] -> [U, Ll, D/U]: block j for rank j */
        WF_TRY(wk_permute(be, &a->n, in[i], 3, (int64_t[]){a->Ll, U, Dl}, swap, err));
        WF_TRY(host_ready(be, sp, err));
        WF_TRY(cm_alltoall(sp, a->n.data, out[i]->data, block, err));
    }
    WF_TRY(attend_back(be, sp, c, a, kv_len, err));
out:
    return st;
}

/* The heads' attention, the all-to-all back and the permute to o [Ll, D] (both Ulysses paths). */
static wf_status attend_back(wk_backend *be, cm_comm *sp, const dfs_transformer_config *c,
                             dit_acts *a, int64_t kv_len, wf_err *err) {
    wf_status st = WF_OK;
    const int64_t D = c->dim, U = a->U, HD = c->attention_head_dim, Dl = D / U;
    const size_t block = (size_t)(a->Ll * Dl) * sizeof(float);
    const int swap[3] = {1, 0, 2};
    WF_TRY(wk_attention(be, &a->oh, &a->qh, &a->kh, &a->vh, (float)(1.0 / sqrt((double)HD)),
                        kv_len, NULL, err));
    WF_TRY(host_ready(be, sp, err));
    WF_TRY(cm_alltoall(sp, a->oh.data, a->n.data, block, err));
    WF_TRY(wk_permute(be, &a->o, &a->n, 3, (int64_t[]){U, a->Ll, Dl}, swap, err)); /* back */
out:
    return st;
}

static wf_status block_forward(wk_backend *be, cm_comm *sp, const dfs_transformer_config *c,
                               const dit_block *b, dit_acts *a, wf_err *err) {
    wf_status st = WF_OK;
    const float eps = (float)c->eps;
    const int64_t kv_len = a->Lp > a->L ? a->L : 0; /* the padding keys are the last ones */
    /* 1. self-attention: n = LN1(x) (1 + scale_msa) + shift_msa */
    WF_TRY(modulation(be, a, &b->scale_shift_table, 0, true, err));
    WF_TRY(wk_ln_modulate(be, &a->n, &a->x, &a->scale, &a->shift, eps, err));     /* [L, D] */
    if (a->U > 1 && sp->overlap) {
        WF_TRY(ulysses_attend_overlap(be, sp, c, b, a, kv_len, eps, err));
        goto out_proj;
    }
    WF_TRY(wk_matmul(be, &a->q, &a->n, &b->attn1.to_q_w, &b->attn1.to_q_b, err)); /* [L, D] */
    WF_TRY(wk_matmul(be, &a->k, &a->n, &b->attn1.to_k_w, &b->attn1.to_k_b, err)); /* [L, D] */
    WF_TRY(wk_matmul(be, &a->v, &a->n, &b->attn1.to_v_w, &b->attn1.to_v_b, err)); /* [L, D] */
    wk_tensor q3 = heads_view(c, &a->q), k3 = heads_view(c, &a->k);      /* [L, NH, HD] */
    /* RMSNorm across heads, then the rotary embedding */
    WF_TRY(wk_rms_norm_rope(be, &q3, &q3, &b->attn1.norm_q, &a->cos, &a->sin, eps, err));
    WF_TRY(wk_rms_norm_rope(be, &k3, &k3, &b->attn1.norm_k, &a->cos, &a->sin, eps, err));
    if (a->U > 1) st = ulysses_attend(be, sp, c, a, kv_len, err);
    else st = attend(be, c, &a->o, &a->q, &a->k, &a->v, kv_len, err);
    if (st) goto out;
out_proj:
    WF_TRY(wk_matmul(be, &a->q, &a->o, &b->attn1.to_out_w, &b->attn1.to_out_b, err));
    WF_TRY(wk_gate_residual(be, &a->x, &a->q, &a->gate, err)); /* x = x + attn * gate_msa */

    /* 2. cross-attention: x = x + attn2(LN2_affine(x), context); no modulation, no gate */
    const wk_tensor *n2 = &a->x;
    if (c->cross_attn_norm) {
        WF_TRY(wk_layer_norm(be, &a->n, &a->x, &b->norm2_w, &b->norm2_b, eps, err));
        n2 = &a->n;
    }
    WF_TRY(wk_matmul(be, &a->q, n2, &b->attn2.to_q_w, &b->attn2.to_q_b, err));       /* [L, D] */
    WF_TRY(wk_matmul(be, &a->k2, &a->ctx, &b->attn2.to_k_w, &b->attn2.to_k_b, err)); /* [Lt, D] */
    WF_TRY(wk_matmul(be, &a->v2, &a->ctx, &b->attn2.to_v_w, &b->attn2.to_v_b, err)); /* [Lt, D] */
    WF_TRY(wk_rms_norm(be, &a->q, &a->q, &b->attn2.norm_q, eps, err));
    WF_TRY(wk_rms_norm(be, &a->k2, &a->k2, &b->attn2.norm_k, eps, err));
    WF_TRY(attend(be, c, &a->o, &a->q, &a->k2, &a->v2, 0, err));
    WF_TRY(wk_matmul(be, &a->q, &a->o, &b->attn2.to_out_w, &b->attn2.to_out_b, err));
    WF_TRY(wk_add(be, &a->x, &a->x, &a->q, err));

    /* 3. feed-forward: n = LN3(x) (1 + c_scale) + c_shift; x = x + ffn(n) * c_gate */
    WF_TRY(modulation(be, a, &b->scale_shift_table, 3, true, err));
    WF_TRY(wk_ln_modulate(be, &a->n, &a->x, &a->scale, &a->shift, eps, err));
    WF_TRY(wk_matmul_gelu(be, &a->ffh, &a->n, &b->ffn_in_w, &b->ffn_in_b, err)); /* [L, FF] */
    WF_TRY(wk_matmul(be, &a->q, &a->ffh, &b->ffn_out_w, &b->ffn_out_b, err));   /* [L, D] */
    WF_TRY(wk_gate_residual(be, &a->x, &a->q, &a->gate, err));
out:
    return st;
}

/* The debugging taps of one forward (dit_tap_fn; none when fn is NULL). They get host tensors:
 * off the CPU each is downloaded into host (of the largest tapped tensor) first. */
typedef struct dit_taps {
    dit_tap_fn fn;
    void *ctx;
    wk_backend *be;
    float *host;   /* NULL on the CPU backend */
    int64_t Tn;    /* timestep rows: 1, or one per token */
    int64_t nreal; /* this rank's real tokens (not the padding) */
} dit_taps;

static wf_status tap_stage(const dit_taps *tp, const char *stage, const wk_tensor *t,
                           wf_err *err) {
    if (!tp->fn) return WF_OK;
    if (tp->be->device == WK_DEV_CPU) {
        tp->fn(tp->ctx, stage, t);
        return WF_OK;
    }
    wk_tensor h = *t;
    h.device = WK_DEV_CPU;
    h.data = tp->host;
    wf_status st = wk_download(tp->be, tp->host, t, err);
    if (!st) tp->fn(tp->ctx, stage, &h);
    return st;
}

/* per-token stages: this rank's real tokens only (not the padding) */
static wf_status tap_rows(const dit_taps *tp, const char *stage, const wk_tensor *t,
                          wf_err *err) {
    if (!tp->fn) return WF_OK;
    wk_tensor v = *t;
    v.shape[0] = tp->nreal;
    return tap_stage(tp, stage, &v, err);
}

/* timestep stages: one row, or one per token */
static wf_status tap_timestep(const dit_taps *tp, const char *stage, const wk_tensor *t,
                              wf_err *err) {
    return tp->Tn > 1 ? tap_rows(tp, stage, t, err) : tap_stage(tp, stage, t, err);
}

/* The host buffer the taps of a forward on a non-CPU backend read their tensors into (NULL on the
 * CPU or without taps: a tapped forward is a debugging run, so its one allocation is allowed). */
static wf_status host_buffer(const wk_backend *be, const dit_model *m, const dit_shape *s,
                             const dit_acts *a, bool taps, float **out, wf_err *err) {
    *out = NULL;
    if (be->device == WK_DEV_CPU || !taps) return WF_OK;
    const dfs_transformer_config *c = &m->cfg;
    const int64_t P = c->patch_size[0] * c->patch_size[1] * c->patch_size[2];
    int64_t n = 0;
    const int64_t cand[4] = {a->Ll * c->dim, a->Tn * c->freq_dim, s->Lt * c->dim,
                             a->Ll * P * c->out_channels};
    for (int i = 0; i < 4; i++) n = cand[i] > n ? cand[i] : n; /* Tn D <= Ll D */
    *out = malloc((size_t)n * sizeof(float));
    if (!*out)
        return wf_fail(err, WF_ENOMEM, "dit: out of host memory for a %.1f MiB staging buffer",
                       (double)n * 4 / (1 << 20));
    return WF_OK;
}


/* The timestep rows the condition embedder reads: the uploaded [1] or [L], or (per token, with
 * padding or Ulysses) this rank's rows of it, the padding rows 0. */
static wf_status timestep_rows(wk_backend *be, const dit_shape *s, dit_acts *a,
                               const wk_tensor **t, wf_err *err) {
    wf_status st = WF_OK;
    *t = &a->tin;
    if (!s->per_token_t || a->direct) return WF_OK;
    WF_TRY(wk_fill(be, &a->tsl, 0.0f, err));
    if (a->nreal > 0)
        WF_TRY(wk_copy_box(be, &a->tsl, (int64_t[]){0}, &a->tin, (int64_t[]){a->l0},
                           (int64_t[]){a->nreal}, err));
    *t = &a->tsl;
out:
    return st;
}

/* patch embedding: patches = this rank's rows of patchify(latents) (padding rows 0), then
 * x[Ll, D] = patches[Ll, Cin*P] . patch_w[D, Cin*P]^T + b */
static wf_status patch_embed(wk_backend *be, const dit_model *m, dit_acts *a, wf_err *err) {
    const dfs_transformer_config *c = &m->cfg;
    const int64_t *p = c->patch_size, Cin = c->in_channels, CP = Cin * p[0] * p[1] * p[2];
    const int64_t shape[7] = {Cin, a->Fp, p[0], a->Hp, p[1], a->Wp, p[2]};
    const int perm[7] = {1, 3, 5, 0, 2, 4, 6}; /* -> [Fp, Hp, Wp, Cin, pt, ph, pw] */
    wf_status st = WF_OK;
    WF_TRY(wk_permute(be, a->direct ? &a->patches : &a->pall, &a->lat, 7, shape, perm, err));
    if (!a->direct) {
        if (a->nreal < a->Ll) {
            wk_tensor pad = rows_view(&a->patches, a->nreal, a->Ll - a->nreal);
            WF_TRY(wk_fill(be, &pad, 0.0f, err));
        }
        if (a->nreal > 0)
            WF_TRY(wk_copy_box(be, &a->patches, (int64_t[]){0, 0}, &a->pall,
                               (int64_t[]){a->l0, 0}, (int64_t[]){a->nreal, CP}, err));
    }
    wk_tensor pw2 = view_as(&m->w.patch_w, m->w.patch_w.data, 2, (int64_t[]){c->dim, CP});
    WF_TRY(wk_matmul(be, &a->x, &a->patches, &pw2, &m->w.patch_b, err)); /* [Ll, D] */
out:
    return st;
}

/* condition embedder: temb = time_embedder(sinusoid(t)); timestep_proj = time_proj(SiLU(temb)) */
static wf_status condition_embedder(wk_backend *be, const dit_model *m, dit_acts *a,
                                    const wk_tensor *t, const dit_taps *tp, wf_err *err) {
    const dit_weights *w = &m->w;
    const int64_t D = m->cfg.dim;
    char stage[32];
    wf_status st = WF_OK;
    WF_TRY(wk_timestep_embed(be, &a->sinus, t, err)); /* [Tn, freq_dim] */
    WF_TRY(tap_timestep(tp, "timestep_freq", &a->sinus, err));
    WF_TRY(wk_matmul(be, &a->th, &a->sinus, &w->time1_w, &w->time1_b, err)); /* [Tn, D] */
    WF_TRY(wk_silu(be, &a->th, &a->th, err));
    WF_TRY(wk_matmul(be, &a->temb, &a->th, &w->time2_w, &w->time2_b, err)); /* [Tn, D] */
    WF_TRY(tap_timestep(tp, "temb", &a->temb, err));
    WF_TRY(wk_silu(be, &a->temb_silu, &a->temb, err));
    for (int j = 0; j < 6; j++) { /* rows [jD, (j+1)D) of time_proj give chunk j, contiguous */
        wk_tensor wj = rows_view(&w->tproj_w, j * D, D), bj = rows_view(&w->tproj_b, j * D, D);
        WF_TRY(wk_matmul(be, &a->tproj[j], &a->temb_silu, &wj, &bj, err)); /* [Tn, D] */
        snprintf(stage, sizeof stage, "timestep_proj.%d", j);
        WF_TRY(tap_timestep(tp, stage, &a->tproj[j], err));
    }
out:
    return st;
}

/* text embedder: context = linear_2(GELU_tanh(linear_1(text))) */
static wf_status text_embedder(wk_backend *be, const dit_model *m, dit_acts *a,
                               const dit_taps *tp, wf_err *err) {
    const dit_weights *w = &m->w;
    wf_status st = WF_OK;
    WF_TRY(wk_matmul_gelu(be, &a->txt_h, &a->txt, &w->text1_w, &w->text1_b, err)); /* [Lt, D] */
    WF_TRY(wk_matmul(be, &a->ctx, &a->txt_h, &w->text2_w, &w->text2_b, err));      /* [Lt, D] */
    WF_TRY(tap_stage(tp, "context", &a->ctx, err));
out:
    return st;
}

/* output head: n = LN(x) (1 + scale) + shift with (shift, scale) = table + temb, then proj_out;
 * *head: every rank's rows (all-gathered under Ulysses). */
static wf_status output_head(wk_backend *be, cm_comm *sp, const dit_model *m, dit_acts *a,
                             const dit_taps *tp, const wk_tensor **head, wf_err *err) {
    const dit_weights *w = &m->w;
    wf_status st = WF_OK;
    wk_tensor r0 = table_row(&w->scale_shift_table, 0), r1 = table_row(&w->scale_shift_table, 1);
    WF_TRY(wk_add(be, &a->shift, &a->temb, &r0, err));
    WF_TRY(wk_add(be, &a->scale, &a->temb, &r1, err));
    WF_TRY(wk_add(be, &a->scale, &a->scale, &a->one, err));
    WF_TRY(wk_ln_modulate(be, &a->n, &a->x, &a->scale, &a->shift, (float)m->cfg.eps, err));
    WF_TRY(wk_matmul(be, &a->head, &a->n, &w->proj_out_w, &w->proj_out_b, err)); /* [L, P*Cout] */
    WF_TRY(tap_rows(tp, "head_out", &a->head, err));
    *head = &a->head;
    if (a->U > 1) { /* every rank gets every rank's rows */
        WF_TRY(wk_sync(be, err));
        WF_TRY(cm_allgather(sp, a->head.data, a->headg.data, wk_tensor_nbytes(&a->head), err));
        *head = &a->headg;
    }
out:
    return st;
}

/* vel[c, f*pt + it, h*ph + ih, w*pw + iw] = head[l, ((it*ph + ih)*pw + iw)*Cout + c], l < L: the
 * real rows read as [Fp, Hp, Wp, pt, ph, pw, Cout], permuted to [Cout, Fp, pt, Hp, ph, Wp, pw];
 * then downloaded into out. */
static wf_status unpatchify(wk_backend *be, const dfs_transformer_config *c, dit_acts *a,
                            const wk_tensor *head, wf_err *err) {
    const int64_t *p = c->patch_size;
    const int64_t shape[7] = {a->Fp, a->Hp, a->Wp, p[0], p[1], p[2], c->out_channels};
    const int perm[7] = {6, 0, 3, 1, 4, 2, 5};
    wk_tensor real = rows_view(head, 0, a->L);
    return wk_permute(be, &a->vel, &real, 7, shape, perm, err);
}

/* The forward on a's tensors, once acts_alloc ran and lat, txt and vel are set: the velocity
 * into a->vel. */
static wf_status forward_acts(const dit_model *m, wk_backend *be, const dit_shape *s,
                              cm_comm *sp, dit_acts *a, const float *timestep, dit_tap_fn tap,
                              void *tap_ctx, wf_err *err) {
    const dfs_transformer_config *c = &m->cfg;
    float *host = NULL;
    wf_status st = WF_OK;
    WF_TRY(host_buffer(be, m, s, a, tap != NULL, &host, err));
    const dit_taps tp = {.fn = tap, .ctx = tap_ctx, .be = be, .host = host, .Tn = a->Tn,
                         .nreal = a->nreal};
    char stage[32];
    WF_TRY(wk_upload(be, &a->tin, timestep, err)); /* [1] or [L] */
    WF_TRY(wk_fill(be, &a->one, 1.0f, err));
    /* cos, sin [Ll, HD]: this rank's rows of the rotary tables (float64 maths, cast to f32;
     * padding rows the identity), built on the backend */
    WF_TRY(wk_rope_table(be, &a->cos, &a->sin, a->Fp, a->Hp, a->Wp, 10000.0, a->l0, err));

    WF_TRY(patch_embed(be, m, a, err)); /* x [Ll, D] */
    WF_TRY(tap_rows(&tp, "patch_tokens", &a->x, err));
    const wk_tensor *t = NULL;
    WF_TRY(timestep_rows(be, s, a, &t, err));                /* [Tn] */
    WF_TRY(condition_embedder(be, m, a, t, &tp, err));       /* temb, timestep_proj [Tn, D] */
    WF_TRY(text_embedder(be, m, a, &tp, err));               /* context [Lt, D] */
    for (int64_t i = 0; i < c->num_layers; i++) {
        WF_TRY(block_forward(be, sp, c, &m->w.blocks[i], a, err)); /* [Ll, D] */
        snprintf(stage, sizeof stage, "block_%lld", (long long)i);
        WF_TRY(tap_rows(&tp, stage, &a->x, err));
    }
    const wk_tensor *head = NULL;
    WF_TRY(output_head(be, sp, m, a, &tp, &head, err)); /* [Ll or Lp, P*Cout] */
    WF_TRY(unpatchify(be, c, a, head, err));            /* vel [Cout, F, H, W] */
out:
    free(host);
    return st;
}

wf_status dit_forward(const dit_model *m, wk_backend *be, wk_arena *arena, const dit_shape *s,
                      cm_comm *sp, const float *latents, const float *timestep, const float *text,
                      float *out, dit_tap_fn tap, void *tap_ctx, wf_err *err) {
    const int U = sp ? sp->size : 1, rank = sp ? sp->rank : 0;
    wf_status st = dit_check_shape(m, s, err);
    if (st || (st = check_sp(m, s, U, err))) return st;
    size_t mark = wk_arena_mark(arena);
    dit_acts a;
    WF_TRY(acts_alloc(m, s, U, rank, be->row_quantum, true, arena, &a, err));
    WF_TRY(wk_upload(be, &a.lat, latents, err)); /* [Cin, F, H, W] */
    WF_TRY(wk_upload(be, &a.txt, text, err));    /* [Lt, text_dim] */
    WF_TRY(forward_acts(m, be, s, sp, &a, timestep, tap, tap_ctx, err));
    WF_TRY(wk_download(be, out, &a.vel, err));
out:
    wk_arena_reset(arena, mark);
    return st;
}

/* t (argument arg) is an f32 tensor in be's memory with the elements of [d0, d1, d2, d3]. */
static wf_status check_io(const wk_backend *be, const wk_tensor *t, const char *arg, int64_t d0,
                          int64_t d1, int64_t d2, int64_t d3, wf_err *err) {
    char sh[96];
    if (!t || !t->data) return wf_fail(err, WF_EINVAL, "dit: no %s tensor", arg);
    if (t->device != be->device)
        return wf_fail(err, WF_EINVAL, "dit: %s is not in the %s backend's memory", arg,
                       be->name);
    if (t->dtype != WK_F32 || wk_tensor_numel(t) != d0 * d1 * d2 * d3)
        return wf_fail(err, WF_EINVAL, "dit: %s is %s %s, expected f32 with %lld elements", arg,
                       wk_dtype_name(t->dtype), wk_tensor_shape_str(t, sh, sizeof sh),
                       (long long)(d0 * d1 * d2 * d3));
    return WF_OK;
}

wf_status dit_forward_on(const dit_model *m, wk_backend *be, wk_arena *arena, const dit_shape *s,
                         cm_comm *sp, const wk_tensor *latents, const float *timestep,
                         const wk_tensor *text, wk_tensor *out, dit_tap_fn tap, void *tap_ctx,
                         wf_err *err) {
    const dfs_transformer_config *c = &m->cfg;
    const int U = sp ? sp->size : 1, rank = sp ? sp->rank : 0;
    wf_status st = dit_check_shape(m, s, err);
    if (st || (st = check_sp(m, s, U, err))) return st;
    if ((st = check_io(be, latents, "latents", c->in_channels, s->F, s->H, s->W, err)) ||
        (st = check_io(be, text, "text", s->Lt, c->text_dim, 1, 1, err)) ||
        (st = check_io(be, out, "out", c->out_channels, s->F, s->H, s->W, err)))
        return st;
    if (out->data == latents->data || out->data == text->data)
        return wf_fail(err, WF_EINVAL, "dit: out aliases the %s; give it a buffer of its own",
                       out->data == latents->data ? "latents" : "text");
    size_t mark = wk_arena_mark(arena);
    dit_acts a;
    WF_TRY(acts_alloc(m, s, U, rank, be->row_quantum, false, arena, &a, err));
    a.lat = wk_tensor_4d(WK_F32, latents->data, c->in_channels, s->F, s->H, s->W);
    a.txt = wk_tensor_2d(WK_F32, text->data, s->Lt, c->text_dim);
    a.vel = wk_tensor_4d(WK_F32, out->data, c->out_channels, s->F, s->H, s->W);
    a.lat.device = a.txt.device = a.vel.device = be->device;
    st = forward_acts(m, be, s, sp, &a, timestep, tap, tap_ctx, err);
out:
    wk_arena_reset(arena, mark);
    return st;
}
