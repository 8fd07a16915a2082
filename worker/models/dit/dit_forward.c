/* dit_forward.c: one forward pass of the Wan DiT (see dit.h), written to read like Diffusers'
 * WanTransformer3DModel.forward (wan_spec.md §1.2-1.6), one backend op per line.
 *
 * Buffer reuse inside a block (all [Ll, D] unless noted): x the residual stream, n the normalised
 * input of a sub-block, q/k/v/o the attention operands and output, q again for the projected
 * output of each sub-block (attention out, FFN out) before its gated add.
 *
 * Ulysses (U ranks in the sp communicator): the L tokens are padded to Lp = U * Ll, Ll a multiple
 * of the backend's row quantum (dit_tokens_per_rank in dit.h; also for U = 1), and rank r holds
 * tokens [r Ll, (r + 1) Ll). Everything but self-attention is per token (or on the text and
 * timestep, computed by every rank), so it runs on the local rows unchanged. Self-attention:
 * q, k, v are projected, RMS-normed (across all heads: each token has them all) and rotated with
 * the tokens' global positions, then packed head-group-major ([U][Ll][D/U], n is the scratch) and
 * exchanged by an all-to-all, after which each rank holds all Lp tokens of heads
 * [r NH/U, (r + 1) NH/U) ([Lp, NH/U, HD], contiguous as received); padded keys are masked (-inf);
 * the output goes back by a second all-to-all and is unpacked into o [Ll, D]. The head output is
 * all-gathered ([Lp, P Cout]) so that every rank returns the whole velocity.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dit.h"

typedef struct dit_acts {
    wk_tensor patches;            /* [Ll, Cin*pt*ph*pw] */
    wk_tensor x, n, q, k, v, o;   /* [Ll, D] */
    wk_tensor ffh;                /* [Ll, FF] */
    wk_tensor txt_h, ctx;         /* [Lt, D] */
    wk_tensor k2, v2;             /* [Lt, D] */
    wk_tensor sinus;              /* [Tn, freq_dim] */
    wk_tensor th, temb, temb_silu;/* [Tn, D] */
    wk_tensor tproj[6];           /* [Tn, D]: time_proj output, chunk j */
    wk_tensor shift, scale, gate; /* [Tn, D] */
    wk_tensor cos, sin;           /* [Ll, HD] */
    wk_tensor head;               /* [Ll, pt*ph*pw*Cout] */
    wk_tensor one;                /* [1]: the 1 of (1 + scale) */
    /* padding (Lp > L, any U) */
    wk_tensor mask;               /* [Lp]: 0 on tokens, -inf on padding */
    wk_tensor tsl;                /* [Ll]: this rank's per-token timesteps (padding: 0) */
    /* Ulysses only (U > 1) */
    wk_tensor qh, kh, vh, oh;     /* [Lp, NH/U, HD]: all tokens, this rank's heads */
    wk_tensor headg;              /* [Lp, pt*ph*pw*Cout]: every rank's head rows */
    int64_t L, Tn, Fp, Hp, Wp;    /* tokens, timestep rows, token grid */
    int64_t U, rank, Lp, Ll, l0;  /* Ulysses degree and rank, padded and local tokens, first row */
} dit_acts;

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

/* Every activation of one forward, from the arena. A measuring arena gives the exact size. */
static wf_status acts_alloc(const dit_model *m, const dit_shape *s, int U, int rank,
                            int64_t quantum, wk_arena *ar, dit_acts *a, wf_err *err) {
    const dfs_transformer_config *c = &m->cfg;
    const int64_t *p = c->patch_size, D = c->dim;
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
    int64_t L = a->Ll, Tn = a->Tn, Lt = s->Lt, P = p[0] * p[1] * p[2];
    wf_status st;
#define A(t, ...)                                                                                \
    do {                                                                                         \
        if ((st = WK_ARENA_F32(ar, &a->t, err, __VA_ARGS__))) return st;                         \
    } while (0)
    A(patches, L, c->in_channels * P);
    A(x, L, D);
    A(n, L, D);
    A(q, L, D);
    A(k, L, D);
    A(v, L, D);
    A(o, L, D);
    A(ffh, L, c->ffn_dim);
    A(txt_h, Lt, D);
    A(ctx, Lt, D);
    A(k2, Lt, D);
    A(v2, Lt, D);
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
    if (a->Lp > a->L) A(mask, a->Lp);
    if (U > 1) {
        int64_t NHl = c->num_attention_heads / U, HD = c->attention_head_dim;
        A(qh, a->Lp, NHl, HD);
        A(kh, a->Lp, NHl, HD);
        A(vh, a->Lp, NHl, HD);
        A(oh, a->Lp, NHl, HD);
        A(headg, a->Lp, c->out_channels * P);
    }
    if (s->per_token_t && a->Lp > a->L) A(tsl, L);
#undef A
    a->one = wk_tensor_1d(WK_F32, (void *)&m->one, 1);
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
    if ((st = acts_alloc(m, s, sp_size, 0, be->row_quantum, &ar, &a, err))) return st;
    *bytes = ar.peak;
    return WF_OK;
}

int64_t dit_tokens_per_rank(int64_t L, int U, int64_t quantum) {
    if (quantum < 1) quantum = 1;
    const int64_t q = (int64_t)U * quantum;
    return (L + q - 1) / q * quantum;
}

void dit_timestep_features(float *out, const float *t, int64_t n, int64_t dim) {
    int64_t half = dim / 2;
    const float neg_log = (float)(-log(10000.0));
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < half; k++) {
            float e = neg_log * (float)k;          /* fp32, as torch's arange * scalar */
            float f = expf(e / (float)half);
            float arg = t[i] * f;
            out[i * dim + k] = cosf(arg);          /* flip_sin_to_cos: cos first */
            out[i * dim + half + k] = sinf(arg);
        }
}

/* A view of rows [r0, r0 + n) of a 2-D weight or the elements [r0, r0 + n) of a 1-D one. */
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
    wk_tensor v = wk_tensor_2d(t->dtype, (char *)t->data + (size_t)(j * D) * wk_dtype_size(t->dtype),
                               1, D);
    v.name = t->name;
    return v;
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

/* n = LayerNorm(x) * (1 + scale) + shift, LayerNorm without affine (FP32LayerNorm). */
static wf_status modulated_norm(wk_backend *be, dit_acts *a, float eps, wf_err *err) {
    wf_status st;
    if ((st = wk_layer_norm(be, &a->n, &a->x, NULL, NULL, eps, err))) return st;
    if ((st = wk_mul(be, &a->n, &a->n, &a->scale, err))) return st;
    return wk_add(be, &a->n, &a->n, &a->shift, err);
}

/* o = attention of q against (k, v), each [L*, D] seen as [L*, NH, HD]; mask: NULL or [Lk]. */
static wf_status attend(wk_backend *be, const dfs_transformer_config *c, wk_tensor *o,
                        const wk_tensor *q, const wk_tensor *k, const wk_tensor *v,
                        const wk_tensor *mask, wf_err *err) {
    int64_t NH = c->num_attention_heads, HD = c->attention_head_dim;
    wk_tensor o3 = wk_tensor_3d(WK_F32, o->data, o->shape[0], NH, HD);
    wk_tensor q3 = wk_tensor_3d(WK_F32, q->data, q->shape[0], NH, HD);
    wk_tensor k3 = wk_tensor_3d(WK_F32, k->data, k->shape[0], NH, HD);
    wk_tensor v3 = wk_tensor_3d(WK_F32, v->data, v->shape[0], NH, HD);
    return wk_attention(be, &o3, &q3, &k3, &v3, (float)(1.0 / sqrt((double)HD)), 0, mask, err);
}

/* src [Ll, D] -> dst [U][Ll][D/U]: rank j's block holds head group j of every local token. */
static void pack_heads(const float *src, float *dst, int64_t Ll, int64_t D, int64_t U) {
    const int64_t Dl = D / U;
#pragma omp parallel for schedule(static) if (Ll * D >= 65536)
    for (int64_t l = 0; l < Ll; l++)
        for (int64_t j = 0; j < U; j++)
            memcpy(dst + (j * Ll + l) * Dl, src + l * D + j * Dl, (size_t)Dl * sizeof *dst);
}

/* The inverse: src [U][Ll][D/U] (block j: head group j) -> dst [Ll, D]. */
static void unpack_heads(const float *src, float *dst, int64_t Ll, int64_t D, int64_t U) {
    const int64_t Dl = D / U;
#pragma omp parallel for schedule(static) if (Ll * D >= 65536)
    for (int64_t l = 0; l < Ll; l++)
        for (int64_t j = 0; j < U; j++)
            memcpy(dst + l * D + j * Dl, src + (j * Ll + l) * Dl, (size_t)Dl * sizeof *dst);
}

/* Self-attention under Ulysses: o [Ll, D] = attention of the whole sequence for this rank's
 * tokens, from local q, k, v [Ll, D] (normed and rotated). n is the scratch. */
static wf_status ulysses_attend(wk_backend *be, cm_comm *sp, const dfs_transformer_config *c,
                                dit_acts *a, wf_err *err) {
    wf_status st = WF_OK;
    const int64_t D = c->dim, U = a->U, HD = c->attention_head_dim;
    const size_t block = (size_t)(a->Ll * (D / U)) * sizeof(float);
    wk_tensor *in[3] = {&a->q, &a->k, &a->v}, *out[3] = {&a->qh, &a->kh, &a->vh};
    for (int i = 0; i < 3; i++) {
        pack_heads(in[i]->data, a->n.data, a->Ll, D, U);
        WF_TRY(cm_alltoall(sp, a->n.data, out[i]->data, block, err));
    }
    WF_TRY(wk_attention(be, &a->oh, &a->qh, &a->kh, &a->vh, (float)(1.0 / sqrt((double)HD)),
                        0, a->Lp > a->L ? &a->mask : NULL, err));
    WF_TRY(cm_alltoall(sp, a->oh.data, a->n.data, block, err));
    unpack_heads(a->n.data, a->o.data, a->Ll, D, U);
out:
    return st;
}

static wf_status block_forward(wk_backend *be, cm_comm *sp, const dfs_transformer_config *c,
                               const dit_block *b, dit_acts *a, wf_err *err) {
    wf_status st = WF_OK;
    const float eps = (float)c->eps;
    int64_t L = a->Ll, NH = c->num_attention_heads, HD = c->attention_head_dim;
    /* 1. self-attention: n = LN1(x) (1 + scale_msa) + shift_msa */
    WF_TRY(modulation(be, a, &b->scale_shift_table, 0, true, err));
    WF_TRY(modulated_norm(be, a, eps, err));
    WF_TRY(wk_matmul(be, &a->q, &a->n, &b->attn1.to_q_w, &b->attn1.to_q_b, err)); /* [L, D] */
    WF_TRY(wk_matmul(be, &a->k, &a->n, &b->attn1.to_k_w, &b->attn1.to_k_b, err)); /* [L, D] */
    WF_TRY(wk_matmul(be, &a->v, &a->n, &b->attn1.to_v_w, &b->attn1.to_v_b, err)); /* [L, D] */
    WF_TRY(wk_rms_norm(be, &a->q, &a->q, &b->attn1.norm_q, eps, err));            /* across heads */
    WF_TRY(wk_rms_norm(be, &a->k, &a->k, &b->attn1.norm_k, eps, err));
    wk_tensor q3 = wk_tensor_3d(WK_F32, a->q.data, L, NH, HD), k3 = wk_tensor_3d(WK_F32, a->k.data, L, NH, HD);
    WF_TRY(wk_rope(be, &q3, &q3, &a->cos, &a->sin, err)); /* [L, NH, HD] */
    WF_TRY(wk_rope(be, &k3, &k3, &a->cos, &a->sin, err));
    if (a->U > 1) st = ulysses_attend(be, sp, c, a, err);
    else st = attend(be, c, &a->o, &a->q, &a->k, &a->v, a->Lp > a->L ? &a->mask : NULL, err);
    if (st) goto out;
    WF_TRY(wk_matmul(be, &a->q, &a->o, &b->attn1.to_out_w, &b->attn1.to_out_b, err));
    WF_TRY(wk_mul(be, &a->q, &a->q, &a->gate, err)); /* x = x + attn * gate_msa */
    WF_TRY(wk_add(be, &a->x, &a->x, &a->q, err));

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
    WF_TRY(attend(be, c, &a->o, &a->q, &a->k2, &a->v2, NULL, err));
    WF_TRY(wk_matmul(be, &a->q, &a->o, &b->attn2.to_out_w, &b->attn2.to_out_b, err));
    WF_TRY(wk_add(be, &a->x, &a->x, &a->q, err));

    /* 3. feed-forward: n = LN3(x) (1 + c_scale) + c_shift; x = x + ffn(n) * c_gate */
    WF_TRY(modulation(be, a, &b->scale_shift_table, 3, true, err));
    WF_TRY(modulated_norm(be, a, eps, err));
    WF_TRY(wk_matmul(be, &a->ffh, &a->n, &b->ffn_in_w, &b->ffn_in_b, err)); /* [L, FF] */
    WF_TRY(wk_gelu_tanh(be, &a->ffh, &a->ffh, err));
    WF_TRY(wk_matmul(be, &a->q, &a->ffh, &b->ffn_out_w, &b->ffn_out_b, err)); /* [L, D] */
    WF_TRY(wk_mul(be, &a->q, &a->q, &a->gate, err));
    WF_TRY(wk_add(be, &a->x, &a->x, &a->q, err));
out:
    return st;
}

/* patches[l, ((c*pt + it)*ph + ih)*pw + iw] = latents[c, f*pt + it, h*ph + ih, w*pw + iw]: the
 * Conv3d patch embedding (kernel = stride = patch) as a GEMM against the weight seen as
 * [D, Cin*pt*ph*pw]. */
static void patchify(const dfs_transformer_config *c, const dit_acts *a, const dit_shape *s,
                     const float *lat, float *patches) {
    const int64_t pt = c->patch_size[0], ph = c->patch_size[1], pw = c->patch_size[2];
    const int64_t Cin = c->in_channels, P = pt * ph * pw;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < a->Ll; i++) { /* local row i is token l0 + i; padding rows are 0 */
        int64_t l = a->l0 + i;
        float *row = patches + i * Cin * P;
        if (l >= a->L) {
            memset(row, 0, (size_t)(Cin * P) * sizeof *row);
            continue;
        }
        int64_t f = l / (a->Hp * a->Wp), h = l / a->Wp % a->Hp, w = l % a->Wp;
        for (int64_t ch = 0; ch < Cin; ch++)
            for (int64_t it = 0; it < pt; it++)
                for (int64_t ih = 0; ih < ph; ih++)
                    for (int64_t iw = 0; iw < pw; iw++)
                        *row++ = lat[((ch * s->F + f * pt + it) * s->H + h * ph + ih) * s->W +
                                     w * pw + iw];
    }
}

/* out[c, f*pt + it, h*ph + ih, w*pw + iw] = head[l, ((it*ph + ih)*pw + iw)*Cout + c], l < L */
static void unpatchify(const dfs_transformer_config *c, const dit_acts *a, const dit_shape *s,
                       const float *head, float *out) {
    const int64_t pt = c->patch_size[0], ph = c->patch_size[1], pw = c->patch_size[2];
    const int64_t Cout = c->out_channels;
#pragma omp parallel for schedule(static)
    for (int64_t l = 0; l < a->L; l++) {
        int64_t f = l / (a->Hp * a->Wp), h = l / a->Wp % a->Hp, w = l % a->Wp;
        const float *row = head + l * Cout * pt * ph * pw;
        for (int64_t it = 0; it < pt; it++)
            for (int64_t ih = 0; ih < ph; ih++)
                for (int64_t iw = 0; iw < pw; iw++)
                    for (int64_t ch = 0; ch < Cout; ch++)
                        out[((ch * s->F + f * pt + it) * s->H + h * ph + ih) * s->W + w * pw + iw] =
                            *row++;
    }
}

/* The debugging taps of one forward (dit_tap_fn; none when fn is NULL). */
typedef struct dit_taps {
    dit_tap_fn fn;
    void *ctx;
    int64_t Tn;    /* timestep rows: 1, or one per token */
    int64_t nreal; /* this rank's real tokens (not the padding) */
} dit_taps;

static void tap_stage(const dit_taps *tp, const char *stage, const wk_tensor *t) {
    if (tp->fn) tp->fn(tp->ctx, stage, t);
}

/* per-token stages: this rank's real tokens only (not the padding) */
static void tap_rows(const dit_taps *tp, const char *stage, const wk_tensor *t) {
    if (!tp->fn) return;
    wk_tensor v = *t;
    v.shape[0] = tp->nreal;
    tp->fn(tp->ctx, stage, &v);
}

/* timestep stages: one row, or one per token */
static void tap_timestep(const dit_taps *tp, const char *stage, const wk_tensor *t) {
    if (tp->Tn > 1) tap_rows(tp, stage, t);
    else tap_stage(tp, stage, t);
}

/* The rotary tables of this rank's tokens (float64 maths, cast to f32) and, with padding, the key
 * mask and this rank's rows of per-token timesteps (padding: 0), which *timestep then points to. */
static wf_status token_tables(const dfs_transformer_config *c, const dit_shape *s, dit_acts *a,
                              const float **timestep, wf_err *err) {
    wf_status st = WF_OK;
    WF_TRY(wk_rope_table_3d_rows(a->cos.data, a->sin.data, a->Fp, a->Hp, a->Wp,
                                 (int)c->attention_head_dim, 10000.0, a->l0, a->Ll, err));
    if (a->Lp > a->L) {
        float *mk = a->mask.data;
        for (int64_t l = 0; l < a->Lp; l++) mk[l] = l < a->L ? 0.0f : -INFINITY;
        if (s->per_token_t) {
            float *t = a->tsl.data;
            for (int64_t i = 0; i < a->Ll; i++)
                t[i] = a->l0 + i < a->L ? (*timestep)[a->l0 + i] : 0.0f;
            *timestep = t;
        }
    }
out:
    return st;
}

/* condition embedder: temb = time_embedder(sinusoid(t)); timestep_proj = time_proj(SiLU(temb)) */
static wf_status condition_embedder(wk_backend *be, const dit_model *m, dit_acts *a,
                                    const float *timestep, const dit_taps *tp, wf_err *err) {
    const dfs_transformer_config *c = &m->cfg;
    const dit_weights *w = &m->w;
    const int64_t D = c->dim;
    char stage[32];
    wf_status st = WF_OK;
    dit_timestep_features(a->sinus.data, timestep, a->Tn, c->freq_dim);
    tap_timestep(tp, "timestep_freq", &a->sinus);
    WF_TRY(wk_matmul(be, &a->th, &a->sinus, &w->time1_w, &w->time1_b, err)); /* [Tn, D] */
    WF_TRY(wk_silu(be, &a->th, &a->th, err));
    WF_TRY(wk_matmul(be, &a->temb, &a->th, &w->time2_w, &w->time2_b, err)); /* [Tn, D] */
    tap_timestep(tp, "temb", &a->temb);
    WF_TRY(wk_silu(be, &a->temb_silu, &a->temb, err));
    for (int j = 0; j < 6; j++) { /* rows [jD, (j+1)D) of time_proj give chunk j, contiguous */
        wk_tensor wj = rows_view(&w->tproj_w, j * D, D), bj = rows_view(&w->tproj_b, j * D, D);
        WF_TRY(wk_matmul(be, &a->tproj[j], &a->temb_silu, &wj, &bj, err)); /* [Tn, D] */
        snprintf(stage, sizeof stage, "timestep_proj.%d", j);
        tap_timestep(tp, stage, &a->tproj[j]);
    }
out:
    return st;
}

/* text embedder: context = linear_2(GELU_tanh(linear_1(text))) */
static wf_status text_embedder(wk_backend *be, const dit_model *m, const dit_shape *s, dit_acts *a,
                               const float *text, const dit_taps *tp, wf_err *err) {
    const dit_weights *w = &m->w;
    wf_status st = WF_OK;
    wk_tensor txt = wk_tensor_2d(WK_F32, (void *)text, s->Lt, m->cfg.text_dim);
    WF_TRY(wk_matmul(be, &a->txt_h, &txt, &w->text1_w, &w->text1_b, err)); /* [Lt, D] */
    WF_TRY(wk_gelu_tanh(be, &a->txt_h, &a->txt_h, err));
    WF_TRY(wk_matmul(be, &a->ctx, &a->txt_h, &w->text2_w, &w->text2_b, err)); /* [Lt, D] */
    tap_stage(tp, "context", &a->ctx);
out:
    return st;
}

/* output head: n = LN(x) (1 + scale) + shift with (shift, scale) = table + temb, then proj_out;
 * *head: every rank's rows (all-gathered under Ulysses). */
static wf_status output_head(wk_backend *be, cm_comm *sp, const dit_model *m, dit_acts *a,
                             const dit_taps *tp, const float **head, wf_err *err) {
    const dit_weights *w = &m->w;
    wf_status st = WF_OK;
    wk_tensor r0 = table_row(&w->scale_shift_table, 0), r1 = table_row(&w->scale_shift_table, 1);
    WF_TRY(wk_add(be, &a->shift, &a->temb, &r0, err));
    WF_TRY(wk_add(be, &a->scale, &a->temb, &r1, err));
    WF_TRY(wk_add(be, &a->scale, &a->scale, &a->one, err));
    WF_TRY(modulated_norm(be, a, (float)m->cfg.eps, err));
    WF_TRY(wk_matmul(be, &a->head, &a->n, &w->proj_out_w, &w->proj_out_b, err)); /* [L, P*Cout] */
    tap_rows(tp, "head_out", &a->head);
    *head = a->head.data;
    if (a->U > 1) { /* every rank gets every rank's rows */
        WF_TRY(cm_allgather(sp, a->head.data, a->headg.data, wk_tensor_nbytes(&a->head), err));
        *head = a->headg.data;
    }
out:
    return st;
}

wf_status dit_forward(const dit_model *m, wk_backend *be, wk_arena *arena, const dit_shape *s,
                      cm_comm *sp, const float *latents, const float *timestep, const float *text,
                      float *out, dit_tap_fn tap, void *tap_ctx, wf_err *err) {
    const dfs_transformer_config *c = &m->cfg;
    const dit_weights *w = &m->w;
    const int U = sp ? sp->size : 1, rank = sp ? sp->rank : 0;
    wf_status st = dit_check_shape(m, s, err);
    if (st || (st = check_sp(m, s, U, err))) return st;
    size_t mark = wk_arena_mark(arena);
    dit_acts a;
    WF_TRY(acts_alloc(m, s, U, rank, be->row_quantum, arena, &a, err));
    const int64_t D = c->dim, P = c->patch_size[0] * c->patch_size[1] * c->patch_size[2];
    const int64_t nreal = a.l0 >= a.L ? 0 : (a.L - a.l0 < a.Ll ? a.L - a.l0 : a.Ll);
    const dit_taps tp = {.fn = tap, .ctx = tap_ctx, .Tn = a.Tn, .nreal = nreal};
    char stage[32];
    WF_TRY(token_tables(c, s, &a, &timestep, err));

    /* patch embedding: x[L, D] = patches[L, Cin*P] . patch_w[D, Cin*P]^T + b */
    patchify(c, &a, s, latents, a.patches.data);
    wk_tensor pw2 = wk_tensor_2d(w->patch_w.dtype, w->patch_w.data, D, c->in_channels * P);
    WF_TRY(wk_matmul(be, &a.x, &a.patches, &pw2, &w->patch_b, err)); /* [L, D] */
    tap_rows(&tp, "patch_tokens", &a.x);

    WF_TRY(condition_embedder(be, m, &a, timestep, &tp, err)); /* temb, timestep_proj [Tn, D] */
    WF_TRY(text_embedder(be, m, s, &a, text, &tp, err));       /* context [Lt, D] */
    for (int64_t i = 0; i < c->num_layers; i++) {
        WF_TRY(block_forward(be, sp, c, &w->blocks[i], &a, err)); /* [L, D] */
        snprintf(stage, sizeof stage, "block_%lld", (long long)i);
        tap_rows(&tp, stage, &a.x);
    }
    const float *head = NULL;
    WF_TRY(output_head(be, sp, m, &a, &tp, &head, err)); /* [L(p), P*Cout] */
    unpatchify(c, &a, s, head, out);
out:
    wk_arena_reset(arena, mark);
    return st;
}
