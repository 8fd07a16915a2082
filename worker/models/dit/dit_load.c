/* dit_load.c: binding a WanTransformer3DModel checkpoint to dit_weights (see dit.h).
 *
 * One table lists every weight once, with its Diffusers name, its official Wan name and its shape
 * in terms of the config. Loading detects the naming, binds each field to a view of the mapped
 * tensor (no copy, storage dtype kept), checks each shape exactly, and refuses tensors the config
 * does not use: a checkpoint with more blocks than num_layers, or an image branch, is caught here.
 * Note the swap in the official names (wan_spec.md §1.7): official `norm3` is the affine
 * cross-attention norm that Diffusers calls `norm2`.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dit.h"

/* Symbolic dimensions of the table's shapes. */
enum { S_END = 0, S_1, S_2, S_6, S_D, S_6D, S_FF, S_TD, S_FQ, S_CIN, S_PT, S_PH, S_PW, S_POUT };

typedef struct dit_field {
    size_t offset;        /* into dit_weights (top) or dit_block (per block) */
    const char *diffusers;
    const char *official;
    unsigned char shape[6]; /* S_* until S_END */
    bool cross_norm;        /* only when cross_attn_norm is true */
} dit_field;

#define TOP(f) offsetof(dit_weights, f)
#define BLK(f) offsetof(dit_block, f)

static const dit_field top_fields[] = {
    {TOP(patch_w), "patch_embedding.weight", "patch_embedding.weight", {S_D, S_CIN, S_PT, S_PH, S_PW}, 0},
    {TOP(patch_b), "patch_embedding.bias", "patch_embedding.bias", {S_D}, 0},
    {TOP(time1_w), "condition_embedder.time_embedder.linear_1.weight", "time_embedding.0.weight", {S_D, S_FQ}, 0},
    {TOP(time1_b), "condition_embedder.time_embedder.linear_1.bias", "time_embedding.0.bias", {S_D}, 0},
    {TOP(time2_w), "condition_embedder.time_embedder.linear_2.weight", "time_embedding.2.weight", {S_D, S_D}, 0},
    {TOP(time2_b), "condition_embedder.time_embedder.linear_2.bias", "time_embedding.2.bias", {S_D}, 0},
    {TOP(tproj_w), "condition_embedder.time_proj.weight", "time_projection.1.weight", {S_6D, S_D}, 0},
    {TOP(tproj_b), "condition_embedder.time_proj.bias", "time_projection.1.bias", {S_6D}, 0},
    {TOP(text1_w), "condition_embedder.text_embedder.linear_1.weight", "text_embedding.0.weight", {S_D, S_TD}, 0},
    {TOP(text1_b), "condition_embedder.text_embedder.linear_1.bias", "text_embedding.0.bias", {S_D}, 0},
    {TOP(text2_w), "condition_embedder.text_embedder.linear_2.weight", "text_embedding.2.weight", {S_D, S_D}, 0},
    {TOP(text2_b), "condition_embedder.text_embedder.linear_2.bias", "text_embedding.2.bias", {S_D}, 0},
    {TOP(scale_shift_table), "scale_shift_table", "head.modulation", {S_1, S_2, S_D}, 0},
    {TOP(proj_out_w), "proj_out.weight", "head.head.weight", {S_POUT, S_D}, 0},
    {TOP(proj_out_b), "proj_out.bias", "head.head.bias", {S_POUT}, 0},
};

#define ATTN(a, dn, on)                                                                          \
    {BLK(a.to_q_w), dn ".to_q.weight", on ".q.weight", {S_D, S_D}, 0},                           \
    {BLK(a.to_q_b), dn ".to_q.bias", on ".q.bias", {S_D}, 0},                                    \
    {BLK(a.to_k_w), dn ".to_k.weight", on ".k.weight", {S_D, S_D}, 0},                           \
    {BLK(a.to_k_b), dn ".to_k.bias", on ".k.bias", {S_D}, 0},                                    \
    {BLK(a.to_v_w), dn ".to_v.weight", on ".v.weight", {S_D, S_D}, 0},                           \
    {BLK(a.to_v_b), dn ".to_v.bias", on ".v.bias", {S_D}, 0},                                    \
    {BLK(a.to_out_w), dn ".to_out.0.weight", on ".o.weight", {S_D, S_D}, 0},                     \
    {BLK(a.to_out_b), dn ".to_out.0.bias", on ".o.bias", {S_D}, 0},                              \
    {BLK(a.norm_q), dn ".norm_q.weight", on ".norm_q.weight", {S_D}, 0},                         \
    {BLK(a.norm_k), dn ".norm_k.weight", on ".norm_k.weight", {S_D}, 0}

static const dit_field block_fields[] = {
    {BLK(scale_shift_table), "scale_shift_table", "modulation", {S_1, S_6, S_D}, 0},
    ATTN(attn1, "attn1", "self_attn"),
    ATTN(attn2, "attn2", "cross_attn"),
    {BLK(norm2_w), "norm2.weight", "norm3.weight", {S_D}, 1},
    {BLK(norm2_b), "norm2.bias", "norm3.bias", {S_D}, 1},
    {BLK(ffn_in_w), "ffn.net.0.proj.weight", "ffn.0.weight", {S_FF, S_D}, 0},
    {BLK(ffn_in_b), "ffn.net.0.proj.bias", "ffn.0.bias", {S_FF}, 0},
    {BLK(ffn_out_w), "ffn.net.2.weight", "ffn.2.weight", {S_D, S_FF}, 0},
    {BLK(ffn_out_b), "ffn.net.2.bias", "ffn.2.bias", {S_D}, 0},
};

static int64_t dim_of(const dfs_transformer_config *c, unsigned char s) {
    switch (s) {
    case S_1: return 1;
    case S_2: return 2;
    case S_6: return 6;
    case S_D: return c->dim;
    case S_6D: return 6 * c->dim;
    case S_FF: return c->ffn_dim;
    case S_TD: return c->text_dim;
    case S_FQ: return c->freq_dim;
    case S_CIN: return c->in_channels;
    case S_PT: return c->patch_size[0];
    case S_PH: return c->patch_size[1];
    case S_PW: return c->patch_size[2];
    case S_POUT: return c->out_channels * c->patch_size[0] * c->patch_size[1] * c->patch_size[2];
    default: return -1;
    }
}

static const char *OFFICIAL_PREFIX = "model.diffusion_model.";

typedef struct binder {
    const dit_model *m;
    const char *prefix;   /* "" or OFFICIAL_PREFIX */
    bool *used;           /* per ckpt->by_name entry */
    const char *dir;
} binder;

static wf_status bind(binder *b, const dit_field *f, int block, void *base, wf_err *err) {
    const dit_model *m = b->m;
    char name[256];
    const char *suffix = m->names == DIT_NAMES_OFFICIAL ? f->official : f->diffusers;
    if (block >= 0) snprintf(name, sizeof name, "%sblocks.%d.%s", b->prefix, block, suffix);
    else snprintf(name, sizeof name, "%s%s", b->prefix, suffix);
    ptrdiff_t i = st_checkpoint_index(m->ckpt, name);
    if (i < 0)
        return wf_fail(err, WF_EFORMAT, "%s: tensor '%s' is missing (config.json says num_layers %lld)",
                       b->dir, name, (long long)m->cfg.num_layers);
    const st_tensor *t = m->ckpt->by_name[i];
    b->used[i] = true;
    int nd = 0;
    int64_t want[6];
    while (nd < 6 && f->shape[nd] != S_END) {
        want[nd] = dim_of(&m->cfg, f->shape[nd]);
        nd++;
    }
    bool ok = t->ndim == nd;
    for (int d = 0; ok && d < nd; d++) ok = t->shape[d] == (uint64_t)want[d];
    if (!ok) {
        char ws[128], hs[128];
        size_t o = 0, p = 0;
        for (int d = 0; d < nd; d++)
            o += (size_t)snprintf(ws + o, sizeof ws - o, "%s%lld", d ? ", " : "", (long long)want[d]);
        ws[o] = '\0';
        hs[0] = '\0';
        for (int d = 0; d < t->ndim && p < sizeof hs - 24; d++)
            p += (size_t)snprintf(hs + p, sizeof hs - p, "%s%llu", d ? ", " : "",
                                  (unsigned long long)t->shape[d]);
        return wf_fail(err, WF_EFORMAT,
                       "%s: tensor '%s' has shape [%s], but config.json (dim %lld, ffn_dim %lld, "
                       "text_dim %lld, ...) needs [%s]",
                       b->dir, name, hs, (long long)m->cfg.dim, (long long)m->cfg.ffn_dim,
                       (long long)m->cfg.text_dim, ws);
    }
    wk_tensor *dst = (wk_tensor *)((char *)base + f->offset);
    wf_status st = st_tensor_view(t, dst, err);
    if (st) return st;
    return WF_OK;
}

void dit_free(dit_model **pm) {
    if (!pm || !*pm) return;
    dit_model *m = *pm;
    free(m->w.blocks);
    st_checkpoint_close(&m->ckpt);
    free(m);
    *pm = NULL;
}

wf_status dit_load(dit_model **out, const char *dir, wf_err *err) {
    *out = NULL;
    dit_model *m = calloc(1, sizeof *m);
    bool *used = NULL;
    char *cfg_path = malloc(strlen(dir) + 16);
    wf_status st = WF_OK;
    if (!m || !cfg_path) {
        st = wf_fail(err, WF_ENOMEM, "out of memory");
        goto out;
    }
    m->one = 1.0f;
    sprintf(cfg_path, "%s/config.json", dir);
    if ((st = dfs_read_transformer_config(cfg_path, &m->cfg, err))) goto out;
    if (m->cfg.image_dim || m->cfg.added_kv_proj_dim || m->cfg.pos_embed_seq_len) {
        st = wf_fail(err, WF_EUNSUPPORTED,
                     "%s: the image branch (image_dim / added_kv_proj_dim / pos_embed_seq_len) of "
                     "Wan2.1 I2V is not implemented",
                     cfg_path);
        goto out;
    }
    if ((st = st_checkpoint_open(&m->ckpt, dir, err))) goto out;

    binder b = {.m = m, .prefix = "", .dir = dir};
    if (st_checkpoint_find(m->ckpt, "condition_embedder.time_proj.weight")) {
        m->names = DIT_NAMES_DIFFUSERS;
    } else if (st_checkpoint_find(m->ckpt, "time_projection.1.weight")) {
        m->names = DIT_NAMES_OFFICIAL;
    } else if (st_checkpoint_find(m->ckpt, "model.diffusion_model.time_projection.1.weight")) {
        m->names = DIT_NAMES_OFFICIAL;
        b.prefix = OFFICIAL_PREFIX;
    } else {
        st = wf_fail(err, WF_EFORMAT,
                     "%s: not a Wan transformer checkpoint: neither the Diffusers name "
                     "'condition_embedder.time_proj.weight' nor the official "
                     "'time_projection.1.weight' is present",
                     dir);
        goto out;
    }
    used = calloc(m->ckpt->n_tensors ? m->ckpt->n_tensors : 1, sizeof *used);
    m->w.blocks = calloc((size_t)m->cfg.num_layers, sizeof *m->w.blocks);
    if (!used || !m->w.blocks) {
        st = wf_fail(err, WF_ENOMEM, "out of memory");
        goto out;
    }
    b.used = used;
    for (size_t i = 0; i < sizeof top_fields / sizeof *top_fields; i++)
        if ((st = bind(&b, &top_fields[i], -1, &m->w, err))) goto out;
    for (int64_t l = 0; l < m->cfg.num_layers; l++)
        for (size_t i = 0; i < sizeof block_fields / sizeof *block_fields; i++) {
            if (block_fields[i].cross_norm && !m->cfg.cross_attn_norm) continue;
            if ((st = bind(&b, &block_fields[i], (int)l, &m->w.blocks[l], err))) goto out;
        }
    size_t unused = 0, first = 0;
    for (size_t i = 0; i < m->ckpt->n_tensors; i++)
        if (!used[i] && unused++ == 0) first = i;
    if (unused) {
        st = wf_fail(err, WF_EFORMAT,
                     "%s: %zu tensor%s the config does not use, e.g. '%s' (config.json: num_layers "
                     "%lld, cross_attn_norm %s; is this the right config for these weights?)",
                     dir, unused, unused == 1 ? "" : "s", m->ckpt->by_name[first]->name,
                     (long long)m->cfg.num_layers, m->cfg.cross_attn_norm ? "true" : "false");
        goto out;
    }
    m->weight_bytes = m->ckpt->total_bytes;
out:
    free(used);
    free(cfg_path);
    if (st) dit_free(&m);
    *out = m;
    return st;
}
