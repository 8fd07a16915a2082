/* dit_load.c: binding a WanTransformer3DModel checkpoint to dit_weights (see dit.h).
 *
 * One table lists every weight once, with its Diffusers name, its official Wan name and its shape
 * in terms of the config. Loading detects the naming, and the shared binder (worker/io/st_bind.h)
 * binds each field to a view of the mapped tensor (no copy, storage dtype kept), checks each shape
 * exactly, and refuses tensors the config does not use: a checkpoint with more blocks than
 * num_layers, or an image branch, is caught here.
 * Note the swap in the official names (wan_spec.md §1.7): official `norm3` is the affine
 * cross-attention norm that Diffusers calls `norm2`.
 * Tested by: tests/test_dit.c (both namings, the ComfyUI prefix, broken checkpoints).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dit.h"
#include "st_bind.h"

/* Symbolic dimensions of the table's shapes (st_field: negative entries index dims[]). */
enum { S_D = -1, S_6D = -2, S_FF = -3, S_TD = -4, S_FQ = -5, S_CIN = -6, S_PT = -7, S_PH = -8,
       S_PW = -9, S_POUT = -10, S_COUNT = 11 };
enum { W_CROSS_NORM = 1 }; /* st_field.when: only when cross_attn_norm is true */

#define TOP(f) offsetof(dit_weights, f)
#define BLK(f) offsetof(dit_block, f)

/* clang-format off */
static const st_field top_fields[] = {
    {TOP(patch_w), {"patch_embedding.weight", "patch_embedding.weight"}, {S_D, S_CIN, S_PT, S_PH, S_PW}, 0},
    {TOP(patch_b), {"patch_embedding.bias", "patch_embedding.bias"}, {S_D}, 0},
    {TOP(time1_w), {"condition_embedder.time_embedder.linear_1.weight", "time_embedding.0.weight"}, {S_D, S_FQ}, 0},
    {TOP(time1_b), {"condition_embedder.time_embedder.linear_1.bias", "time_embedding.0.bias"}, {S_D}, 0},
    {TOP(time2_w), {"condition_embedder.time_embedder.linear_2.weight", "time_embedding.2.weight"}, {S_D, S_D}, 0},
    {TOP(time2_b), {"condition_embedder.time_embedder.linear_2.bias", "time_embedding.2.bias"}, {S_D}, 0},
    {TOP(tproj_w), {"condition_embedder.time_proj.weight", "time_projection.1.weight"}, {S_6D, S_D}, 0},
    {TOP(tproj_b), {"condition_embedder.time_proj.bias", "time_projection.1.bias"}, {S_6D}, 0},
    {TOP(text1_w), {"condition_embedder.text_embedder.linear_1.weight", "text_embedding.0.weight"}, {S_D, S_TD}, 0},
    {TOP(text1_b), {"condition_embedder.text_embedder.linear_1.bias", "text_embedding.0.bias"}, {S_D}, 0},
    {TOP(text2_w), {"condition_embedder.text_embedder.linear_2.weight", "text_embedding.2.weight"}, {S_D, S_D}, 0},
    {TOP(text2_b), {"condition_embedder.text_embedder.linear_2.bias", "text_embedding.2.bias"}, {S_D}, 0},
    {TOP(scale_shift_table), {"scale_shift_table", "head.modulation"}, {1, 2, S_D}, 0},
    {TOP(proj_out_w), {"proj_out.weight", "head.head.weight"}, {S_POUT, S_D}, 0},
    {TOP(proj_out_b), {"proj_out.bias", "head.head.bias"}, {S_POUT}, 0},
};

#define ATTN(a, dn, on)                                                                          \
    {BLK(a.to_q_w), {dn ".to_q.weight", on ".q.weight"}, {S_D, S_D}, 0},                         \
    {BLK(a.to_q_b), {dn ".to_q.bias", on ".q.bias"}, {S_D}, 0},                                  \
    {BLK(a.to_k_w), {dn ".to_k.weight", on ".k.weight"}, {S_D, S_D}, 0},                         \
    {BLK(a.to_k_b), {dn ".to_k.bias", on ".k.bias"}, {S_D}, 0},                                  \
    {BLK(a.to_v_w), {dn ".to_v.weight", on ".v.weight"}, {S_D, S_D}, 0},                         \
    {BLK(a.to_v_b), {dn ".to_v.bias", on ".v.bias"}, {S_D}, 0},                                  \
    {BLK(a.to_out_w), {dn ".to_out.0.weight", on ".o.weight"}, {S_D, S_D}, 0},                   \
    {BLK(a.to_out_b), {dn ".to_out.0.bias", on ".o.bias"}, {S_D}, 0},                            \
    {BLK(a.norm_q), {dn ".norm_q.weight", on ".norm_q.weight"}, {S_D}, 0},                       \
    {BLK(a.norm_k), {dn ".norm_k.weight", on ".norm_k.weight"}, {S_D}, 0}

static const st_field block_fields[] = {
    {BLK(scale_shift_table), {"scale_shift_table", "modulation"}, {1, 6, S_D}, 0},
    ATTN(attn1, "attn1", "self_attn"),
    ATTN(attn2, "attn2", "cross_attn"),
    {BLK(norm2_w), {"norm2.weight", "norm3.weight"}, {S_D}, W_CROSS_NORM},
    {BLK(norm2_b), {"norm2.bias", "norm3.bias"}, {S_D}, W_CROSS_NORM},
    {BLK(ffn_in_w), {"ffn.net.0.proj.weight", "ffn.0.weight"}, {S_FF, S_D}, 0},
    {BLK(ffn_in_b), {"ffn.net.0.proj.bias", "ffn.0.bias"}, {S_FF}, 0},
    {BLK(ffn_out_w), {"ffn.net.2.weight", "ffn.2.weight"}, {S_D, S_FF}, 0},
    {BLK(ffn_out_b), {"ffn.net.2.bias", "ffn.2.bias"}, {S_D}, 0},
};
/* clang-format on */

/* Diffusers' WanTransformer3DModel._keep_in_fp32_modules (time_embedder, scale_shift_table,
 * norm1, norm2, norm3; norm1 and norm3 carry no weights here), under both namings (official:
 * time_embedding, modulation, norm3 for Diffusers' norm2). */
static const char *const KEEP_F32[] = {"time_embedder.", "time_embedding.", "scale_shift_table",
                                       "modulation", "norm2.", "norm3.", NULL};

/* The sizes behind the symbols. */
static void fill_dims(const dfs_transformer_config *c, int64_t dims[S_COUNT]) {
    const int64_t *p = c->patch_size;
    dims[0] = 0;
    dims[-S_D] = c->dim;
    dims[-S_6D] = 6 * c->dim;
    dims[-S_FF] = c->ffn_dim;
    dims[-S_TD] = c->text_dim;
    dims[-S_FQ] = c->freq_dim;
    dims[-S_CIN] = c->in_channels;
    dims[-S_PT] = p[0];
    dims[-S_PH] = p[1];
    dims[-S_PW] = p[2];
    dims[-S_POUT] = c->out_channels * p[0] * p[1] * p[2];
}

void dit_free(dit_model **pm) {
    if (!pm || !*pm) return;
    dit_model *m = *pm;
    wk_weights_free(&m->dev);
    free(m->wlist);
    free(m->w.blocks);
    st_checkpoint_close(&m->ckpt);
    free(m);
    *pm = NULL;
}

/* Which naming the checkpoint uses, from the time projection's name under each. */
static wf_status detect_names(dit_model *m, st_binder *b, wf_err *err) {
    if (st_checkpoint_find(m->ckpt, "condition_embedder.time_proj.weight")) {
        m->names = DIT_NAMES_DIFFUSERS;
    } else if (st_checkpoint_find(m->ckpt, "time_projection.1.weight")) {
        m->names = DIT_NAMES_OFFICIAL;
    } else if (st_checkpoint_find(m->ckpt, "model.diffusion_model.time_projection.1.weight")) {
        m->names = DIT_NAMES_OFFICIAL;
        b->prefix = "model.diffusion_model.";
    } else {
        return wf_fail(err, WF_EFORMAT,
                       "%s: not a Wan transformer checkpoint: neither the Diffusers name "
                       "'condition_embedder.time_proj.weight' nor the official "
                       "'time_projection.1.weight' is present",
                       b->dir);
    }
    b->naming = (int)m->names;
    return WF_OK;
}

/* Binds the top-level weights and every block, then refuses what is left over. */
static wf_status bind_weights(dit_model *m, st_binder *b, wf_err *err) {
    const dfs_transformer_config *c = &m->cfg;
    m->w.blocks = calloc((size_t)c->num_layers, sizeof *m->w.blocks);
    if (!m->w.blocks) return wf_fail(err, WF_ENOMEM, "out of memory");
    int64_t dims[S_COUNT];
    fill_dims(c, dims);
    snprintf(b->missing, sizeof b->missing, "config.json says num_layers %lld",
             (long long)c->num_layers);
    snprintf(b->config, sizeof b->config, "dim %lld, ffn_dim %lld, text_dim %lld, ...",
             (long long)c->dim, (long long)c->ffn_dim, (long long)c->text_dim);
    st_module mod = {.base = &m->w, .dims = dims, .n_dims = S_COUNT};
    wf_status st = st_bind_fields(b, top_fields, sizeof top_fields / sizeof *top_fields, &mod, err);
    if (st) return st;
    mod.when = c->cross_attn_norm ? 1u << W_CROSS_NORM : 0;
    for (int64_t l = 0; l < c->num_layers; l++) {
        char scope[32];
        snprintf(scope, sizeof scope, "blocks.%d.", (int)l);
        mod.base = &m->w.blocks[l];
        mod.scope[0] = scope;
        st = st_bind_fields(b, block_fields, sizeof block_fields / sizeof *block_fields, &mod, err);
        if (st) return st;
    }
    char why[256];
    snprintf(why, sizeof why,
             "config.json: num_layers %lld, cross_attn_norm %s; is this the right config for "
             "these weights?",
             (long long)c->num_layers, c->cross_attn_norm ? "true" : "false");
    return st_binder_finish(b, why, err);
}

wf_status dit_load(dit_model **out, const char *dir, wf_err *err) {
    *out = NULL;
    st_binder b = {0};
    dit_model *m = calloc(1, sizeof *m);
    wf_status st = m ? st_binder_init(&b, dir, err) : wf_fail(err, WF_ENOMEM, "out of memory");
    if (st) goto out;
    WF_TRY(dfs_read_transformer_config(b.config_path, &m->cfg, err));
    if (m->cfg.image_dim || m->cfg.added_kv_proj_dim || m->cfg.pos_embed_seq_len) {
        st = wf_fail(err, WF_EUNSUPPORTED,
                     "%s: the image branch (image_dim / added_kv_proj_dim / pos_embed_seq_len) of "
                     "Wan2.1 I2V is not implemented",
                     b.config_path);
        goto out;
    }
    WF_TRY(st_binder_open(&b, &m->ckpt, err));
    WF_TRY(detect_names(m, &b, err));
    b.keep_f32_names = KEEP_F32;
    b.fp8_scales = true; /* every 2-D weight of the DiT is a GEMM weight */
    WF_TRY(bind_weights(m, &b, err));
    st_binder_take_weights(&b, &m->wlist, &m->n_wlist);
    m->weight_bytes = m->ckpt->total_bytes;
out:
    st_binder_free(&b);
    if (st) dit_free(&m);
    *out = m;
    return st;
}

wf_status dit_upload(dit_model *m, wk_backend *be, wf_err *err) {
    if (m->dev.be) return wf_fail(err, WF_EINVAL, "dit_upload: the weights are already uploaded");
    wf_status st = wk_weights_upload(be, m->wlist, m->n_wlist, &m->dev, err);
    if (st) wf_err_prefix(err, "transformer weights to %s: ", be->name);
    return st;
}
