/* umt5_load.c: binding a UMT5EncoderModel checkpoint to t5_weights (see umt5.h).
 *
 * One table lists every per-layer weight once, with its transformers name (under
 * "encoder.block.{i}.") and its shape in terms of the config. Loading binds each field to a view of
 * the mapped tensor (no copy, storage dtype kept), checks each shape exactly, and refuses tensors
 * the config does not use (more blocks than num_layers, a decoder, an lm_head). The embedding is
 * `shared.weight` as transformers 5 saves it, or `encoder.embed_tokens.weight` as older exports
 * do; a checkpoint with both is accepted only when the two are byte-identical.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "umt5.h"

/* Symbolic dimensions of the table's shapes. */
enum { S_END = 0, S_D, S_IN, S_FF, S_NB, S_NH, S_V };

typedef struct t5_field {
    size_t offset;          /* into t5_layer (per layer) or t5_weights (top) */
    const char *name;       /* after "encoder.block.{i}." for layers */
    unsigned char shape[3]; /* S_* until S_END */
} t5_field;

#define LAYER(f) offsetof(t5_layer, f)
#define TOP(f) offsetof(t5_weights, f)

static const t5_field layer_fields[] = {
    {LAYER(q_w), "layer.0.SelfAttention.q.weight", {S_IN, S_D}},
    {LAYER(k_w), "layer.0.SelfAttention.k.weight", {S_IN, S_D}},
    {LAYER(v_w), "layer.0.SelfAttention.v.weight", {S_IN, S_D}},
    {LAYER(o_w), "layer.0.SelfAttention.o.weight", {S_D, S_IN}},
    {LAYER(rel_bias), "layer.0.SelfAttention.relative_attention_bias.weight", {S_NB, S_NH}},
    {LAYER(ln_attn), "layer.0.layer_norm.weight", {S_D}},
    {LAYER(wi0_w), "layer.1.DenseReluDense.wi_0.weight", {S_FF, S_D}},
    {LAYER(wi1_w), "layer.1.DenseReluDense.wi_1.weight", {S_FF, S_D}},
    {LAYER(wo_w), "layer.1.DenseReluDense.wo.weight", {S_D, S_FF}},
    {LAYER(ln_ffn), "layer.1.layer_norm.weight", {S_D}},
};

static const t5_field final_field = {TOP(final_ln), "encoder.final_layer_norm.weight", {S_D}};
static const char *const EMBED_NAMES[2] = {"shared.weight", "encoder.embed_tokens.weight"};

static int64_t dim_of(const t5_model *m, unsigned char s) {
    switch (s) {
    case S_D: return m->cfg.d_model;
    case S_IN: return m->inner;
    case S_FF: return m->cfg.d_ff;
    case S_NB: return m->cfg.relative_attention_num_buckets;
    case S_NH: return m->cfg.num_heads;
    case S_V: return m->cfg.vocab_size;
    default: return -1;
    }
}

static void shape_str(char *buf, size_t n, const uint64_t *shape, int nd) {
    size_t o = 0;
    buf[0] = '\0';
    for (int d = 0; d < nd && o + 24 < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%llu", d ? ", " : "",
                              (unsigned long long)shape[d]);
}

/* Binds `name` (full checkpoint name) with the symbolic shape to *dst and marks it used. */
static wf_status bind(const t5_model *m, const char *dir, bool *used, const char *name,
                      const unsigned char *shape, wk_tensor *dst, wf_err *err) {
    ptrdiff_t i = st_checkpoint_index(m->ckpt, name);
    if (i < 0)
        return wf_fail(err, WF_EFORMAT,
                       "%s: tensor '%s' is missing (config.json says num_layers %lld; is this a "
                       "transformers UMT5EncoderModel checkpoint?)",
                       dir, name, (long long)m->cfg.num_layers);
    const st_tensor *t = m->ckpt->by_name[i];
    used[i] = true;
    int nd = 0;
    uint64_t want[3];
    while (nd < 3 && shape[nd] != S_END) {
        want[nd] = (uint64_t)dim_of(m, shape[nd]);
        nd++;
    }
    bool ok = t->ndim == nd;
    for (int d = 0; ok && d < nd; d++) ok = t->shape[d] == want[d];
    if (!ok) {
        char ws[96], hs[96];
        shape_str(ws, sizeof ws, want, nd);
        shape_str(hs, sizeof hs, t->shape, t->ndim);
        return wf_fail(err, WF_EFORMAT,
                       "%s: tensor '%s' has shape [%s], but config.json (d_model %lld, "
                       "num_heads %lld x d_kv %lld, d_ff %lld, vocab_size %lld, "
                       "relative_attention_num_buckets %lld) needs [%s]",
                       dir, name, hs, (long long)m->cfg.d_model, (long long)m->cfg.num_heads,
                       (long long)m->cfg.d_kv, (long long)m->cfg.d_ff, (long long)m->cfg.vocab_size,
                       (long long)m->cfg.relative_attention_num_buckets, ws);
    }
    return st_tensor_view(t, dst, err);
}

/* The embedding: shared.weight and/or encoder.embed_tokens.weight (identical when both). */
static wf_status bind_embed(t5_model *m, const char *dir, bool *used, wf_err *err) {
    static const unsigned char shape[3] = {S_V, S_D, S_END};
    ptrdiff_t ia = st_checkpoint_index(m->ckpt, EMBED_NAMES[0]), ib = st_checkpoint_index(m->ckpt, EMBED_NAMES[1]);
    if (ia < 0 && ib < 0)
        return wf_fail(err, WF_EFORMAT,
                       "%s: not a transformers UMT5EncoderModel checkpoint: neither '%s' nor '%s' "
                       "is present (the official Wan .pth names are not supported; use the "
                       "Diffusers repo's text_encoder/)",
                       dir, EMBED_NAMES[0], EMBED_NAMES[1]);
    wf_status st;
    if (ia >= 0 && ib >= 0) {
        const st_tensor *a = m->ckpt->by_name[ia], *b = m->ckpt->by_name[ib];
        bool same = a->dtype == b->dtype && a->ndim == b->ndim && a->numel == b->numel &&
                    a->end - a->begin == b->end - b->begin;
        for (int d = 0; same && d < a->ndim; d++) same = a->shape[d] == b->shape[d];
        if (same) same = memcmp(a->data, b->data, (size_t)(a->end - a->begin)) == 0;
        if (!same)
            return wf_fail(err, WF_EFORMAT,
                           "%s: both '%s' and '%s' are present and differ; transformers ties them, "
                           "so this checkpoint is ambiguous (keep one of them)",
                           dir, EMBED_NAMES[0], EMBED_NAMES[1]);
        used[ib] = true;
    }
    m->embed_name = EMBED_NAMES[ia >= 0 ? 0 : 1];
    if ((st = bind(m, dir, used, m->embed_name, shape, &m->w.embed, err))) return st;
    return WF_OK;
}

void t5_free(t5_model **pm) {
    if (!pm || !*pm) return;
    t5_model *m = *pm;
    free(m->w.layers);
    st_checkpoint_close(&m->ckpt);
    free(m);
    *pm = NULL;
}

static wf_status check_config(const t5_model *m, const char *cfg_path, wf_err *err) {
    const dfs_umt5_config *c = &m->cfg;
    if (strcmp(c->model_type, "umt5") != 0)
        return wf_fail(err, WF_EUNSUPPORTED,
                       "%s: model_type is \"%s\"; wanfarm runs \"umt5\" only (T5 shares one "
                       "relative-position table across layers, umT5 has one per layer)",
                       cfg_path, c->model_type);
    int64_t nb = c->relative_attention_num_buckets, max_exact = nb / 4;
    if (nb < 4 || c->relative_attention_max_distance <= max_exact)
        return wf_fail(err, WF_EUNSUPPORTED,
                       "%s: relative_attention_num_buckets %lld / relative_attention_max_distance "
                       "%lld: need at least 4 buckets and a max distance above %lld (transformers "
                       "divides by zero otherwise)",
                       cfg_path, (long long)nb, (long long)c->relative_attention_max_distance,
                       (long long)max_exact);
    if (c->num_heads * c->d_kv > (int64_t)1 << 30)
        return wf_fail(err, WF_EFORMAT, "%s: num_heads x d_kv is too large", cfg_path);
    return WF_OK;
}

wf_status t5_load(t5_model **out, const char *dir, wf_err *err) {
    *out = NULL;
    t5_model *m = calloc(1, sizeof *m);
    bool *used = NULL;
    char *cfg_path = malloc(strlen(dir) + 16);
    wf_status st = WF_OK;
    if (!m || !cfg_path) {
        st = wf_fail(err, WF_ENOMEM, "out of memory");
        goto out;
    }
    sprintf(cfg_path, "%s/config.json", dir);
    if ((st = dfs_read_umt5_config(cfg_path, &m->cfg, err))) goto out;
    if ((st = check_config(m, cfg_path, err))) goto out;
    m->inner = m->cfg.num_heads * m->cfg.d_kv;
    if ((st = st_checkpoint_open(&m->ckpt, dir, err))) goto out;
    used = calloc(m->ckpt->n_tensors ? m->ckpt->n_tensors : 1, sizeof *used);
    m->w.layers = calloc((size_t)m->cfg.num_layers, sizeof *m->w.layers);
    if (!used || !m->w.layers) {
        st = wf_fail(err, WF_ENOMEM, "out of memory");
        goto out;
    }
    if ((st = bind_embed(m, dir, used, err))) goto out;
    if ((st = bind(m, dir, used, final_field.name, final_field.shape, &m->w.final_ln, err)))
        goto out;
    char name[256];
    for (int64_t l = 0; l < m->cfg.num_layers; l++)
        for (size_t i = 0; i < sizeof layer_fields / sizeof *layer_fields; i++) {
            const t5_field *f = &layer_fields[i];
            snprintf(name, sizeof name, "encoder.block.%lld.%s", (long long)l, f->name);
            wk_tensor *dst = (wk_tensor *)((char *)&m->w.layers[l] + f->offset);
            if ((st = bind(m, dir, used, name, f->shape, dst, err))) goto out;
        }
    size_t unused = 0, first = 0, decoder = 0;
    for (size_t i = 0; i < m->ckpt->n_tensors; i++)
        if (!used[i]) {
            if (unused++ == 0) first = i;
            const char *nm = m->ckpt->by_name[i]->name;
            decoder += !strncmp(nm, "decoder.", 8) || !strncmp(nm, "lm_head.", 8);
        }
    if (unused) {
        if (decoder)
            st = wf_fail(err, WF_EFORMAT,
                         "%s: %zu tensor%s the config does not use, e.g. '%s' (decoder/lm_head "
                         "weights: this is a full encoder-decoder checkpoint; wanfarm needs the "
                         "encoder only, as UMT5EncoderModel saves it)",
                         dir, unused, unused == 1 ? "" : "s", m->ckpt->by_name[first]->name);
        else
            st = wf_fail(err, WF_EFORMAT,
                         "%s: %zu tensor%s the config does not use, e.g. '%s' (config.json says "
                         "num_layers %lld; is this the right config for these weights?)",
                         dir, unused, unused == 1 ? "" : "s", m->ckpt->by_name[first]->name,
                         (long long)m->cfg.num_layers);
        goto out;
    }
    m->weight_bytes = m->ckpt->total_bytes;
out:
    free(used);
    free(cfg_path);
    if (st) t5_free(&m);
    *out = m;
    return st;
}
