/* umt5_load.c: binding a UMT5EncoderModel checkpoint to t5_weights (see umt5.h).
 *
 * One table lists every per-layer weight once, with its transformers name (under
 * "encoder.block.{i}.") and its shape in terms of the config. Loading binds each field through the
 * shared binder (worker/io/st_bind.h) to a view of the mapped tensor (no copy, storage dtype
 * kept), checks each shape exactly, and refuses tensors the config does not use (more blocks than
 * num_layers, a decoder, an lm_head). The embedding is `shared.weight` as transformers 5 saves it,
 * or `encoder.embed_tokens.weight` as older exports do; a checkpoint with both is accepted only
 * when the two are byte-identical.
 * Tested by: tests/test_umt5.c (both embedding names, broken checkpoints and configs).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_bind.h"
#include "umt5.h"

/* Symbolic dimensions of the table's shapes (st_field: negative entries index dims[]). */
enum { S_D = -1, S_IN = -2, S_FF = -3, S_NB = -4, S_NH = -5, S_V = -6, S_COUNT = 7 };

#define LAYER(f) offsetof(t5_layer, f)
#define TOP(f) offsetof(t5_weights, f)

static const st_field layer_fields[] = {
    {LAYER(q_w), {"layer.0.SelfAttention.q.weight"}, {S_IN, S_D}, 0},
    {LAYER(k_w), {"layer.0.SelfAttention.k.weight"}, {S_IN, S_D}, 0},
    {LAYER(v_w), {"layer.0.SelfAttention.v.weight"}, {S_IN, S_D}, 0},
    {LAYER(o_w), {"layer.0.SelfAttention.o.weight"}, {S_D, S_IN}, 0},
    {LAYER(rel_bias), {"layer.0.SelfAttention.relative_attention_bias.weight"}, {S_NB, S_NH}, 0},
    {LAYER(ln_attn), {"layer.0.layer_norm.weight"}, {S_D}, 0},
    {LAYER(wi0_w), {"layer.1.DenseReluDense.wi_0.weight"}, {S_FF, S_D}, 0},
    {LAYER(wi1_w), {"layer.1.DenseReluDense.wi_1.weight"}, {S_FF, S_D}, 0},
    {LAYER(wo_w), {"layer.1.DenseReluDense.wo.weight"}, {S_D, S_FF}, 0},
    {LAYER(ln_ffn), {"layer.1.layer_norm.weight"}, {S_D}, 0},
};

static const st_field final_field = {TOP(final_ln), {"encoder.final_layer_norm.weight"}, {S_D}, 0};
static const char *const EMBED_NAMES[2] = {"shared.weight", "encoder.embed_tokens.weight"};

/* The sizes behind the symbols. */
static void fill_dims(const t5_model *m, int64_t dims[S_COUNT]) {
    dims[0] = 0;
    dims[-S_D] = m->cfg.d_model;
    dims[-S_IN] = m->inner;
    dims[-S_FF] = m->cfg.d_ff;
    dims[-S_NB] = m->cfg.relative_attention_num_buckets;
    dims[-S_NH] = m->cfg.num_heads;
    dims[-S_V] = m->cfg.vocab_size;
}

/* Whether two tensors hold the same dtype, shape and bytes. */
static bool same_tensor(const st_tensor *a, const st_tensor *b) {
    bool same = a->dtype == b->dtype && a->ndim == b->ndim && a->numel == b->numel &&
                a->end - a->begin == b->end - b->begin;
    for (int d = 0; same && d < a->ndim; d++) same = a->shape[d] == b->shape[d];
    return same && memcmp(a->data, b->data, (size_t)(a->end - a->begin)) == 0;
}

/* The embedding: shared.weight and/or encoder.embed_tokens.weight (identical when both). */
static wf_status bind_embed(t5_model *m, st_binder *b, const st_module *top, wf_err *err) {
    const ptrdiff_t ia = st_checkpoint_index(m->ckpt, EMBED_NAMES[0]);
    const ptrdiff_t ib = st_checkpoint_index(m->ckpt, EMBED_NAMES[1]);
    if (ia < 0 && ib < 0)
        return wf_fail(err, WF_EFORMAT,
                       "%s: not a transformers UMT5EncoderModel checkpoint: neither '%s' nor '%s' "
                       "is present (the official Wan .pth names are not supported; use the "
                       "Diffusers repo's text_encoder/)",
                       b->dir, EMBED_NAMES[0], EMBED_NAMES[1]);
    if (ia >= 0 && ib >= 0) {
        if (!same_tensor(m->ckpt->by_name[ia], m->ckpt->by_name[ib]))
            return wf_fail(err, WF_EFORMAT,
                           "%s: both '%s' and '%s' are present and differ; transformers ties them, "
                           "so this checkpoint is ambiguous (keep one of them)",
                           b->dir, EMBED_NAMES[0], EMBED_NAMES[1]);
        b->used[ib] = true;
    }
    m->embed_name = EMBED_NAMES[ia >= 0 ? 0 : 1];
    const st_field embed = {TOP(embed), {m->embed_name}, {S_V, S_D}, 0};
    return st_bind_fields(b, &embed, 1, top, err);
}

/* Why tensors are left over: a decoder or lm_head says which kind of checkpoint this is. */
static void unused_why(const t5_model *m, const st_binder *b, char *why, size_t len) {
    size_t decoder = 0;
    for (size_t i = 0; i < m->ckpt->n_tensors; i++) {
        const char *nm = m->ckpt->by_name[i]->name;
        if (!b->used[i]) decoder += !strncmp(nm, "decoder.", 8) || !strncmp(nm, "lm_head.", 8);
    }
    if (decoder)
        snprintf(why, len,
                 "decoder/lm_head weights: this is a full encoder-decoder checkpoint; wanfarm "
                 "needs the encoder only, as UMT5EncoderModel saves it");
    else
        snprintf(why, len,
                 "config.json says num_layers %lld; is this the right config for these weights?",
                 (long long)m->cfg.num_layers);
}

/* Binds the embedding, the final norm and every layer, then refuses what is left over. */
static wf_status bind_weights(t5_model *m, st_binder *b, wf_err *err) {
    const dfs_umt5_config *c = &m->cfg;
    m->w.layers = calloc((size_t)c->num_layers, sizeof *m->w.layers);
    if (!m->w.layers) return wf_fail(err, WF_ENOMEM, "out of memory");
    int64_t dims[S_COUNT];
    fill_dims(m, dims);
    snprintf(b->missing, sizeof b->missing,
             "config.json says num_layers %lld; is this a transformers UMT5EncoderModel "
             "checkpoint?",
             (long long)c->num_layers);
    snprintf(b->config, sizeof b->config,
             "d_model %lld, num_heads %lld x d_kv %lld, d_ff %lld, vocab_size %lld, "
             "relative_attention_num_buckets %lld",
             (long long)c->d_model, (long long)c->num_heads, (long long)c->d_kv,
             (long long)c->d_ff, (long long)c->vocab_size,
             (long long)c->relative_attention_num_buckets);
    st_module mod = {.base = &m->w, .dims = dims, .n_dims = S_COUNT};
    wf_status st = bind_embed(m, b, &mod, err);
    if (st || (st = st_bind_fields(b, &final_field, 1, &mod, err))) return st;
    for (int64_t l = 0; l < c->num_layers; l++) {
        char scope[48];
        snprintf(scope, sizeof scope, "encoder.block.%lld.", (long long)l);
        mod.base = &m->w.layers[l];
        mod.scope[0] = scope;
        st = st_bind_fields(b, layer_fields, sizeof layer_fields / sizeof *layer_fields, &mod, err);
        if (st) return st;
    }
    char why[256];
    unused_why(m, b, why, sizeof why);
    return st_binder_finish(b, why, err);
}

void t5_free(t5_model **pm) {
    if (!pm || !*pm) return;
    t5_model *m = *pm;
    wk_weights_free(&m->dev);
    free(m->wlist);
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

/* transformers' T5/UMT5 _keep_in_fp32_modules: the feed-forward output projection. */
static const char *const KEEP_F32[] = {"DenseReluDense.wo.", NULL};

wf_status t5_upload(t5_model *m, wk_backend *be, wf_err *err) {
    if (m->dev.be) return wf_fail(err, WF_EINVAL, "t5_upload: the weights are already uploaded");
    wf_status st = wk_weights_upload(be, m->wlist, m->n_wlist, &m->dev, err);
    if (st) wf_err_prefix(err, "text encoder weights to %s: ", be->name);
    return st;
}

void t5_unload(t5_model *m) { wk_weights_free(&m->dev); }

wf_status t5_load(t5_model **out, const char *dir, wf_err *err) {
    *out = NULL;
    st_binder b = {0};
    t5_model *m = calloc(1, sizeof *m);
    wf_status st = m ? st_binder_init(&b, dir, err) : wf_fail(err, WF_ENOMEM, "out of memory");
    if (st) goto out;
    WF_TRY(dfs_read_umt5_config(b.config_path, &m->cfg, err));
    WF_TRY(check_config(m, b.config_path, err));
    m->inner = m->cfg.num_heads * m->cfg.d_kv;
    WF_TRY(st_binder_open(&b, &m->ckpt, err));
    b.keep_f32_names = KEEP_F32;
    WF_TRY(bind_weights(m, &b, err));
    st_binder_take_weights(&b, &m->wlist, &m->n_wlist);
    m->weight_bytes = m->ckpt->total_bytes;
out:
    st_binder_free(&b);
    if (st) t5_free(&m);
    *out = m;
    return st;
}
