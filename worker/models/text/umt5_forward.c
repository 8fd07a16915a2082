/* umt5_forward.c: one forward pass of the umT5 encoder (see umt5.h), written to read like
 * transformers' UMT5Stack / UMT5Block (wan_spec.md §3.2), one backend op per line.
 *
 * Backend-agnostic: the token ids and the attention mask are uploaded as i32 tensors, every step
 * over activations is a backend op (the embedding lookup, each layer's relative-position bias
 * plus key mask through t5_bias, the norms, GEMMs and attention), and the output is downloaded at
 * the end; on the CPU the copies are memcpy. Only the input checks read the host arrays.
 *
 * Buffer reuse inside a block: x the residual stream, n the normalised input of a sub-block,
 * q/k/v/o the attention operands and output, h0/h1 the two FFN branches, y the projected output
 * of each sub-block before its residual add. The attention bias [NH, Lc, Lc] is rebuilt for every
 * layer from that layer's table by the t5_bias op (which widens the table itself).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>


#include "umt5.h"

typedef struct t5_acts {
    wk_tensor x, n, y;            /* [L, D] */
    wk_tensor q, k, v, o;         /* [L, IN] */
    wk_tensor h0, h1;             /* [L, FF] */
    wk_tensor bias;               /* [NH, L, L]: position bias + key mask */
    wk_tensor ids, mask;          /* [L] i32: the token ids and attention mask, uploaded */
} t5_acts;

int t5_relative_bucket(int64_t rel, int64_t num_buckets, int64_t max_distance) {
    return wk_t5_relative_bucket(rel, num_buckets, max_distance);
}

wf_status t5_check_input(const t5_model *m, const t5_input *in, int64_t *n_real, wf_err *err) {
    if (in->L < 1 || in->L > (int64_t)1 << 20)
        return wf_fail(err, WF_EINVAL, "umt5: sequence length %lld, expected 1 to 2^20",
                       (long long)in->L);
    int64_t n = 0;
    for (int64_t i = 0; i < in->L; i++) {
        if (in->mask[i] != 0 && in->mask[i] != 1)
            return wf_fail(err, WF_EINVAL, "umt5: attention mask[%lld] is %d, expected 0 or 1",
                           (long long)i, in->mask[i]);
        if (in->mask[i] && n != i)
            return wf_fail(err, WF_EINVAL,
                           "umt5: attention mask[%lld] is 1 after a 0: the mask must be ones then "
                           "zeros (right padding, as the tokenizer makes it)",
                           (long long)i);
        n += in->mask[i];
        if (in->ids[i] < 0 || in->ids[i] >= m->cfg.vocab_size)
            return wf_fail(err, WF_EINVAL,
                           "umt5: token id %d at position %lld is outside the embedding table "
                           "(vocab_size %lld): tokenizer and text encoder do not match",
                           in->ids[i], (long long)i, (long long)m->cfg.vocab_size);
    }
    if (n == 0)
        return wf_fail(err, WF_EINVAL,
                       "umt5: the attention mask has no real token (the tokenizer always keeps "
                       "</s>)");
    if (n_real) *n_real = n;
    return WF_OK;
}

/* Every activation of one forward of length L, from the arena. A measuring arena gives the exact
 * size. */
static wf_status acts_alloc(const t5_model *m, int64_t L, wk_arena *ar, t5_acts *a, wf_err *err) {
    const dfs_umt5_config *c = &m->cfg;
    const int64_t D = c->d_model, IN = m->inner;
    wf_status st;
#define A(t, ...)                                                                                \
    do {                                                                                         \
        if ((st = WK_ARENA_F32(ar, &a->t, err, __VA_ARGS__))) return st;                         \
    } while (0)
    A(x, L, D);
    A(n, L, D);
    A(y, L, D);
    A(q, L, IN);
    A(k, L, IN);
    A(v, L, IN);
    A(o, L, IN);
    A(h0, L, c->d_ff);
    A(h1, L, c->d_ff);
    A(bias, c->num_heads, L, L);
#undef A
    if ((st = wk_arena_tensor(ar, &a->ids, WK_I32, 1, (int64_t[]){L}, err))) return st;
    return wk_arena_tensor(ar, &a->mask, WK_I32, 1, (int64_t[]){L}, err);
}

wf_status t5_arena_bytes(const t5_model *m, int64_t L, size_t *bytes, wf_err *err) {
    if (L < 1 || L > (int64_t)1 << 20)
        return wf_fail(err, WF_EINVAL, "umt5: sequence length %lld, expected 1 to 2^20",
                       (long long)L);
    wk_arena ar;
    t5_acts a;
    wk_arena_init_measure(&ar, "umt5 activations");
    wf_status st = acts_alloc(m, L, &ar, &a, err);
    if (st) return st;
    *bytes = ar.peak;
    return WF_OK;
}

/* A header over data with t's dtype and device. */
static wk_tensor view_as(const wk_tensor *t, void *data, int ndim, const int64_t *shape) {
    wk_tensor v = wk_tensor_make(t->dtype, data, ndim, shape);
    v.device = t->device;
    return v;
}

/* The first Lc rows of an [L, C] activation (or elements of an [L] one), as a contiguous view. */
static wk_tensor rows(const wk_tensor *t, int64_t Lc) {
    wk_tensor v = *t;
    v.shape[0] = Lc;
    return v;
}

/* [Lc, IN] seen as [Lc, NH, HD] */
static wk_tensor heads(const wk_tensor *t, int64_t NH, int64_t HD) {
    return view_as(t, t->data, 3, (int64_t[]){t->shape[0], NH, HD});
}

static wf_status block_forward(wk_backend *be, const t5_model *m, const t5_layer *b, t5_acts *a,
                               int64_t Lc, wf_err *err) {
    const dfs_umt5_config *c = &m->cfg;
    const float eps = (float)c->layer_norm_epsilon;
    const int64_t NH = c->num_heads, HD = c->d_kv;
    wk_tensor x = rows(&a->x, Lc), n = rows(&a->n, Lc), y = rows(&a->y, Lc);
    wk_tensor q = rows(&a->q, Lc), k = rows(&a->k, Lc), v = rows(&a->v, Lc), o = rows(&a->o, Lc);
    wk_tensor h0 = rows(&a->h0, Lc), h1 = rows(&a->h1, Lc), mask = rows(&a->mask, Lc);
    wk_tensor bias = view_as(&a->bias, a->bias.data, 3, (int64_t[]){NH, Lc, Lc});
    wf_status st = WF_OK;
    /* 1. self-attention: x = x + o(Attn(RMS(x))), scores q.k^T (scale 1) + position bias + mask */
    WF_TRY(wk_t5_bias(be, &bias, &b->rel_bias, &mask, c->relative_attention_max_distance,
                      err));                                                      /* [NH, Lc, Lc] */
    WF_TRY(wk_rms_norm(be, &n, &x, &b->ln_attn, eps, err));                       /* [Lc, D] */
    WF_TRY(wk_matmul(be, &q, &n, &b->q_w, NULL, err));                            /* [Lc, IN] */
    WF_TRY(wk_matmul(be, &k, &n, &b->k_w, NULL, err));                            /* [Lc, IN] */
    WF_TRY(wk_matmul(be, &v, &n, &b->v_w, NULL, err));                            /* [Lc, IN] */
    wk_tensor q3 = heads(&q, NH, HD), k3 = heads(&k, NH, HD); /* [Lc, NH, HD] views */
    wk_tensor v3 = heads(&v, NH, HD), o3 = heads(&o, NH, HD);
    WF_TRY(wk_attention(be, &o3, &q3, &k3, &v3, 1.0f, 0, &bias, err)); /* scale 1 */
    WF_TRY(wk_matmul(be, &y, &o, &b->o_w, NULL, err));              /* [Lc, D] */
    WF_TRY(wk_add(be, &x, &x, &y, err));
    /* 2. gated-GELU FFN: x = x + wo(gelu_new(wi_0 n) * wi_1 n), n = RMS(x) */
    WF_TRY(wk_rms_norm(be, &n, &x, &b->ln_ffn, eps, err)); /* [Lc, D] */
    WF_TRY(wk_matmul(be, &h0, &n, &b->wi0_w, NULL, err));  /* [Lc, FF] */
    WF_TRY(wk_gelu_tanh(be, &h0, &h0, err));
    WF_TRY(wk_matmul(be, &h1, &n, &b->wi1_w, NULL, err)); /* [Lc, FF] */
    WF_TRY(wk_mul(be, &h0, &h0, &h1, err));
    WF_TRY(wk_matmul(be, &y, &h0, &b->wo_w, NULL, err)); /* [Lc, D] */
    WF_TRY(wk_add(be, &x, &x, &y, err));
out:
    return st;
}

wf_status t5_forward(const t5_model *m, wk_backend *be, wk_arena *arena, const t5_input *in,
                     float *out, t5_tap_fn tap, void *tap_ctx, wf_err *err) {
    const dfs_umt5_config *c = &m->cfg;
    int64_t n_real = 0;
    wf_status st = t5_check_input(m, in, &n_real, err);
    if (st) return st;
    if (tap && be->device != WK_DEV_CPU) /* a tap reads its tensor's data as host memory */
        return wf_fail(err, WF_EUNSUPPORTED,
                       "umt5: stage taps need the CPU backend (they read host memory); this "
                       "forward runs on %s", be->name);
    size_t mark = wk_arena_mark(arena);
    t5_acts a;
    WF_TRY(acts_alloc(m, in->L, arena, &a, err));
    const int64_t L = in->L, D = c->d_model, Lc = in->real_rows_only ? n_real : L;
    char stage[32];
#define TAP(name, t)                                                                             \
    do {                                                                                         \
        if (tap) tap(tap_ctx, name, t);                                                          \
    } while (0)

    /* the inputs: ids and mask [L] i32 */
    WF_TRY(wk_upload(be, &a.ids, in->ids, err));
    WF_TRY(wk_upload(be, &a.mask, in->mask, err));
    /* embedding (no scaling): x[i] = embed[ids[i]] */
    wk_tensor x = rows(&a.x, Lc), n = rows(&a.n, Lc), ids = rows(&a.ids, Lc);
    WF_TRY(wk_embedding(be, &x, &m->w.embed, &ids, err)); /* [Lc, D] */
    TAP("embed", &x);

    for (int64_t l = 0; l < c->num_layers; l++) {
        WF_TRY(block_forward(be, m, &m->w.layers[l], &a, Lc, err));
        snprintf(stage, sizeof stage, "block_%lld", (long long)l);
        TAP(stage, &x);
    }
    WF_TRY(
        wk_rms_norm(be, &n, &x, &m->w.final_ln, (float)c->layer_norm_epsilon, err)); /* [Lc, D] */
    TAP("final", &n);

    /* the pipeline's trim: rows [0, n_real) kept, the rest exact zeros */
    if (n_real < L) {
        wk_tensor pad = view_as(&a.n, (float *)a.n.data + n_real * D, 2,
                                (int64_t[]){L - n_real, D});
        WF_TRY(wk_fill(be, &pad, 0.0f, err));
    }
    WF_TRY(wk_download(be, out, &a.n, err)); /* [L, D] */
#undef TAP
out:
    wk_arena_reset(arena, mark);
    return st;
}
