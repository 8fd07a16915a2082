/* vae_load.c: binding an AutoencoderKLWan checkpoint to vae_weights (see vae.h), and the small
 * edge functions (latent normalisation, 8-bit frames).
 *
 * The structure (which blocks, with which widths) comes from config.json exactly as Diffusers'
 * AutoencoderKLWan.__init__ builds it (wan_spec.md §2.4, §2.5): encoder dims base * [1] + dim_mult,
 * each level num_res_blocks resblocks then a down-resample; decoder dims decoder_base * [m_last] +
 * reversed(dim_mult), each level num_res_blocks + 1 resblocks then an up-resample. Wan2.1: the
 * first resblock's input is halved after level 0 and the upsampler halves the width. Wan2.2
 * (is_residual): no halving, and each level is a residual block whose input is kept for a
 * parameter-free shortcut (AvgDown3D in every encoder block, DupUp3D in upsampling decoder blocks).
 * One table per module kind lists every tensor once, with its Diffusers name, its official Wan name
 * and its shape in terms of the module's widths. Loading detects the naming, binds each field to a
 * view of the mapped tensor (no copy, storage dtype kept), checks each shape exactly, and refuses
 * tensors the structure does not use. Official names (Wan2.1_VAE.pth, ComfyUI's
 * wan_2.1_vae.safetensors): encoder.conv1, encoder.downsamples.k (flat, like Diffusers),
 * {en,de}coder.middle.{0,1,2}, head.{0,2}, decoder.upsamples.n (flat over resblocks and resamples),
 * residual.{0,2,3,6}, shortcut, conv1/conv2 for quant_conv/post_quant_conv. The tables are bound
 * through the shared binder (worker/io/st_bind.h).
 * Tested by: tests/test_vae.c (both namings, both layouts, broken checkpoints and configs).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_bind.h"
#include "vae.h"

/* Symbolic dimensions of the table's shapes (st_field: negative entries index dims[]); positive
 * values are literal sizes. */
/* clang-format off */
enum { D_IN = -1, D_OUT = -2, D_3IN = -3, D_AUX = -4, D_COUNT = 5 };
enum { W_ALWAYS = 0, W_SHORTCUT, W_TIME }; /* st_field.when */

#define RES(f) offsetof(vae_resblock, f)
static const st_field res_fields[] = { /* W_SHORTCUT: only when in != out */
    {RES(norm1), {"norm1.gamma", "residual.0.gamma"}, {D_IN, 1, 1, 1}, W_ALWAYS},
    {RES(conv1.w), {"conv1.weight", "residual.2.weight"}, {D_OUT, D_IN, 3, 3, 3}, W_ALWAYS},
    {RES(conv1.b), {"conv1.bias", "residual.2.bias"}, {D_OUT}, W_ALWAYS},
    {RES(norm2), {"norm2.gamma", "residual.3.gamma"}, {D_OUT, 1, 1, 1}, W_ALWAYS},
    {RES(conv2.w), {"conv2.weight", "residual.6.weight"}, {D_OUT, D_OUT, 3, 3, 3}, W_ALWAYS},
    {RES(conv2.b), {"conv2.bias", "residual.6.bias"}, {D_OUT}, W_ALWAYS},
    {RES(shortcut.w), {"conv_shortcut.weight", "shortcut.weight"}, {D_OUT, D_IN, 1, 1, 1}, W_SHORTCUT},
    {RES(shortcut.b), {"conv_shortcut.bias", "shortcut.bias"}, {D_OUT}, W_SHORTCUT},
};

#define ATT(f) offsetof(vae_attn, f)
static const st_field attn_fields[] = {
    {ATT(norm), {"norm.gamma", "norm.gamma"}, {D_IN, 1, 1}, W_ALWAYS},
    {ATT(qkv.w), {"to_qkv.weight", "to_qkv.weight"}, {D_3IN, D_IN, 1, 1}, W_ALWAYS},
    {ATT(qkv.b), {"to_qkv.bias", "to_qkv.bias"}, {D_3IN}, W_ALWAYS},
    {ATT(proj.w), {"proj.weight", "proj.weight"}, {D_IN, D_IN, 1, 1}, W_ALWAYS},
    {ATT(proj.b), {"proj.bias", "proj.bias"}, {D_IN}, W_ALWAYS},
};

/* D_AUX: time_conv's output width (2 dim for upsample3d, dim for downsample3d); W_TIME: only for
 * 3-D resamples */
#define RSP(f) offsetof(vae_resample, f)
static const st_field resample_fields[] = {
    {RSP(conv.w), {"resample.1.weight", "resample.1.weight"}, {D_OUT, D_IN, 3, 3}, W_ALWAYS},
    {RSP(conv.b), {"resample.1.bias", "resample.1.bias"}, {D_OUT}, W_ALWAYS},
    {RSP(time_conv.w), {"time_conv.weight", "time_conv.weight"}, {D_AUX, D_IN, 3, 1, 1}, W_TIME},
    {RSP(time_conv.b), {"time_conv.bias", "time_conv.bias"}, {D_AUX}, W_TIME},
};

/* a causal conv with a cubic kernel of D_AUX (3 or 1) */
static const st_field conv_fields[] = {
    {offsetof(vae_conv, w), {"weight", "weight"}, {D_OUT, D_IN, D_AUX, D_AUX, D_AUX}, W_ALWAYS},
    {offsetof(vae_conv, b), {"bias", "bias"}, {D_OUT}, W_ALWAYS},
};

static const st_field norm_fields[] = {
    {0, {"gamma", "gamma"}, {D_IN, 1, 1, 1}, W_ALWAYS},
};
/* clang-format on */

#define N_FIELDS(t) (sizeof t / sizeof *t)

/* Binds the fields of one module. pd, po: its Diffusers and official scopes
 * ("decoder.up_blocks.1.resnets.0." and its official twin); in, out, aux: the module's widths. */
static wf_status bind_module(st_binder *b, const st_field *fields, size_t n, const char *pd,
                             const char *po, void *base, int64_t in, int64_t out, int64_t aux,
                             unsigned when_mask, wf_err *err) {
    const int64_t dims[D_COUNT] = {[-D_IN] = in, [-D_OUT] = out, [-D_3IN] = 3 * in, [-D_AUX] = aux};
    const st_module mod = {
        .base = base, .scope = {pd, po}, .dims = dims, .n_dims = D_COUNT, .when = when_mask};
    return st_bind_fields(b, fields, n, &mod, err);
}

static wf_status bind_res(st_binder *b, vae_resblock *r, const char *pd, const char *po,
                          wf_err *err) {
    unsigned mask = r->in != r->out ? 1u << W_SHORTCUT : 0;
    return bind_module(b, res_fields, N_FIELDS(res_fields), pd, po, r, r->in, r->out, 0, mask,
                       err);
}

static wf_status bind_conv(st_binder *b, vae_conv *c, const char *pd, const char *po, int64_t in,
                           int64_t out, int64_t k, wf_err *err) {
    return bind_module(b, conv_fields, N_FIELDS(conv_fields), pd, po, c, in, out, k, 0, err);
}

/* One side (encoder 'e' or decoder 'd') while its layers are filled in. */
typedef struct coder_build {
    st_binder *b;
    const dfs_vae_config *g;
    vae_coder *c;
    char side;                        /* 'e' or 'd' */
    const char *sn;                   /* "encoder" or "decoder" */
    int L;                            /* levels: n_dim_mult */
    int per;                          /* layers per level, resample included */
    int64_t dims[DFS_MAX_LEVELS + 1]; /* the widths between levels */
    int n;                            /* layers filled */
    int slots;                        /* cached convolutions counted */
    char pd[160], po[160];            /* the scopes of the module being bound */
} coder_build;

/* Encoder: base * [1] + dim_mult; decoder: decoder_base * [m_last] + reversed(dim_mult). */
static void coder_widths(coder_build *x) {
    const dfs_vae_config *g = x->g;
    const int L = x->L;
    if (x->side == 'e') {
        x->dims[0] = g->base_dim;
        for (int i = 0; i < L; i++) x->dims[i + 1] = g->base_dim * g->dim_mult[i];
    } else {
        x->dims[0] = g->decoder_base_dim * g->dim_mult[L - 1];
        for (int i = 0; i < L; i++) x->dims[i + 1] = g->decoder_base_dim * g->dim_mult[L - 1 - i];
    }
}

/* The resblocks of level i, from in to out channels. */
static wf_status build_resblocks(coder_build *x, int i, int64_t in, int64_t out, wf_err *err) {
    const bool resid = x->g->is_residual, enc = x->side == 'e', last = i == x->L - 1;
    const int nr = enc ? (int)x->g->num_res_blocks : (int)x->g->num_res_blocks + 1;
    for (int r = 0; r < nr; r++) {
        vae_layer *l = &x->c->layers[x->n];
        l->res.in = r == 0 ? in : out;
        l->res.out = out;
        if (resid) {
            snprintf(l->name, sizeof l->name, "%s.%s_blocks.%d.resnets.%d", x->sn,
                     enc ? "down" : "up", i, r);
        } else if (enc) {
            snprintf(l->name, sizeof l->name, "encoder.down_blocks.%d", x->n);
            snprintf(x->po, sizeof x->po, "encoder.downsamples.%d.", x->n);
            snprintf(l->tap, sizeof l->tap, "enc.down_blocks.%d", x->n);
        } else {
            snprintf(l->name, sizeof l->name, "decoder.up_blocks.%d.resnets.%d", i, r);
            snprintf(x->po, sizeof x->po, "decoder.upsamples.%d.", i * x->per + r);
            if (r == nr - 1 && last) snprintf(l->tap, sizeof l->tap, "dec.up_blocks.%d", i);
        }
        snprintf(x->pd, sizeof x->pd, "%s.", l->name);
        wf_status st = bind_res(x->b, &l->res, x->pd, x->po, err);
        if (st) return st;
        x->slots += 2;
        x->n++;
    }
    return WF_OK;
}

/* The down- or up-sampler after level i (not after the last), on `out` channels. */
static wf_status build_resample(coder_build *x, int i, int64_t out, bool temporal, wf_err *err) {
    const bool resid = x->g->is_residual;
    vae_layer *l = &x->c->layers[x->n];
    l->is_resample = true;
    vae_resample *s = &l->rs;
    s->dim = out;
    if (x->side == 'e') {
        s->mode = temporal ? VAE_DOWN3D : VAE_DOWN2D;
        s->out_dim = out;
        if (resid) {
            snprintf(l->name, sizeof l->name, "encoder.down_blocks.%d.downsampler", i);
        } else {
            snprintf(l->name, sizeof l->name, "encoder.down_blocks.%d", x->n);
            snprintf(x->po, sizeof x->po, "encoder.downsamples.%d.", x->n);
            snprintf(l->tap, sizeof l->tap, "enc.down_blocks.%d", x->n);
        }
    } else {
        s->mode = temporal ? VAE_UP3D : VAE_UP2D;
        s->out_dim = resid ? out : out / 2; /* Wan2.2: upsample_out_dim = out */
        if (resid) {
            snprintf(l->name, sizeof l->name, "decoder.up_blocks.%d.upsampler", i);
        } else {
            snprintf(l->name, sizeof l->name, "decoder.up_blocks.%d.upsamplers.0", i);
            snprintf(x->po, sizeof x->po, "decoder.upsamples.%d.", i * x->per + x->per - 1);
            snprintf(l->tap, sizeof l->tap, "dec.up_blocks.%d", i);
        }
    }
    if (!s->out_dim) /* possible only with a base width of 1 */
        return wf_fail(err, WF_EUNSUPPORTED, "%s: %s would have 0 output channels", x->b->dir,
                       l->name);
    snprintf(x->pd, sizeof x->pd, "%s.", l->name);
    const int64_t aux = s->mode == VAE_UP3D ? 2 * out : out;
    const unsigned mask = temporal ? 1u << W_TIME : 0;
    wf_status st = bind_module(x->b, resample_fields, N_FIELDS(resample_fields), x->pd, x->po, s,
                               out, s->out_dim, aux, mask, err);
    if (st) return st;
    if (temporal) x->slots++;
    x->n++;
    return WF_OK;
}

/* Wan2.2: the parameter-free shortcut of level i's residual block, whose layers start at
 * `first` and end at the last one filled. */
static wf_status add_shortcut(coder_build *x, int i, int first, int64_t out, bool temporal,
                              wf_err *err) {
    const bool enc = x->side == 'e', last = i == x->L - 1;
    vae_shortcut *sc = &x->c->layers[x->n - 1].shortcut;
    *sc = (vae_shortcut){.kind = enc ? VAE_SC_AVGDOWN : VAE_SC_DUPUP,
                         .in = x->dims[i],
                         .out = out,
                         .ft = temporal ? 2 : 1,
                         .fs = last ? 1 : 2};
    const int64_t fac = sc->ft * sc->fs * sc->fs;
    if ((enc && (sc->in * fac) % sc->out) || (!enc && (sc->out * fac) % sc->in))
        return wf_fail(err, WF_EUNSUPPORTED,
                       "%s: %s_blocks.%d: the %s shortcut from %lld to %lld channels (factor "
                       "%lld) does not divide evenly (config.json: %s)",
                       x->b->dir, enc ? "down" : "up", i, enc ? "AvgDown3D" : "DupUp3D",
                       (long long)sc->in, (long long)sc->out, (long long)fac, x->b->config);
    x->c->layers[first].save_input = true;
    return WF_OK;
}

/* Level i: its resblocks, its resample (all but the last level), and under Wan2.2 the block's
 * shortcut and tap. */
static wf_status build_level(coder_build *x, int i, wf_err *err) {
    const bool resid = x->g->is_residual, enc = x->side == 'e', last = i == x->L - 1;
    int64_t in = x->dims[i];
    const int64_t out = x->dims[i + 1];
    if (!enc && i > 0 && !resid) in /= 2; /* Wan2.1: the previous upsampler halved it */
    const bool temporal = !last && (enc ? x->g->temperal_downsample[i]
                                        : x->g->temperal_downsample[x->L - 2 - i]); /* reversed */
    const int first = x->n;
    wf_status st = build_resblocks(x, i, in, out, err);
    if (!st && !last) st = build_resample(x, i, out, temporal, err);
    if (!st && resid && (enc || !last)) /* the block's parameter-free shortcut */
        st = add_shortcut(x, i, first, out, temporal, err);
    if (st) return st;
    if (resid) {
        vae_layer *l = &x->c->layers[x->n - 1];
        snprintf(l->tap, sizeof l->tap, "%s.%s_blocks.%d", enc ? "enc" : "dec",
                 enc ? "down" : "up", i);
    }
    return WF_OK;
}

/* The mid block (two resblocks around an attention) and the head (norm_out, conv_out). */
static wf_status build_middle_head(coder_build *x, wf_err *err) {
    vae_coder *c = x->c;
    const bool enc = x->side == 'e';
    const int64_t cmid = enc ? x->dims[x->L] : x->dims[0];
    const int64_t clast = x->dims[x->L];
    const int64_t cout = enc ? 2 * x->g->z_dim : x->g->out_channels;
    wf_status st;
    for (int k = 0; k < 2; k++) {
        c->mid_res[k].in = c->mid_res[k].out = cmid;
        snprintf(x->pd, sizeof x->pd, "%s.mid_block.resnets.%d.", x->sn, k);
        snprintf(x->po, sizeof x->po, "%s.middle.%d.", x->sn, 2 * k);
        if ((st = bind_res(x->b, &c->mid_res[k], x->pd, x->po, err))) return st;
    }
    c->mid_attn.dim = cmid;
    snprintf(x->pd, sizeof x->pd, "%s.mid_block.attentions.0.", x->sn);
    snprintf(x->po, sizeof x->po, "%s.middle.1.", x->sn);
    if ((st = bind_module(x->b, attn_fields, N_FIELDS(attn_fields), x->pd, x->po, &c->mid_attn,
                          cmid, cmid, 0, 0, err)))
        return st;
    snprintf(x->pd, sizeof x->pd, "%s.norm_out.", x->sn);
    snprintf(x->po, sizeof x->po, "%s.head.0.", x->sn);
    if ((st = bind_module(x->b, norm_fields, N_FIELDS(norm_fields), x->pd, x->po, &c->norm_out,
                          clast, 0, 0, 0, err)))
        return st;
    snprintf(x->pd, sizeof x->pd, "%s.conv_out.", x->sn);
    snprintf(x->po, sizeof x->po, "%s.head.2.", x->sn);
    if ((st = bind_conv(x->b, &c->conv_out, x->pd, x->po, clast, cout, 3, err))) return st;
    x->slots += 4 + 1; /* mid resblocks, conv_out */
    return WF_OK;
}

/* Fills the layers of encoder (side 'e') or decoder ('d') from the config and binds them. */
static wf_status build_coder(st_binder *b, const dfs_vae_config *g, vae_coder *c, char side,
                             wf_err *err) {
    coder_build x = {.b = b, .g = g, .c = c, .side = side, .L = (int)g->n_dim_mult, .slots = 1};
    x.sn = side == 'e' ? "encoder" : "decoder";
    x.per = side == 'e' ? (int)g->num_res_blocks + 1 : (int)g->num_res_blocks + 2;
    coder_widths(&x);
    c->layers = calloc((size_t)(x.L * x.per), sizeof *c->layers);
    if (!c->layers) return wf_fail(err, WF_ENOMEM, "out of memory");
    const int64_t cin = side == 'e' ? g->in_channels : g->z_dim;
    snprintf(x.pd, sizeof x.pd, "%s.conv_in.", x.sn); /* slot 1 */
    snprintf(x.po, sizeof x.po, "%s.conv1.", x.sn);
    wf_status st = bind_conv(b, &c->conv_in, x.pd, x.po, cin, x.dims[0], 3, err);
    for (int i = 0; !st && i < x.L; i++) st = build_level(&x, i, err);
    if (st) return st;
    c->n_layers = x.n;
    if ((st = build_middle_head(&x, err))) return st;
    if (x.slots > VAE_MAX_SLOTS)
        return wf_fail(err, WF_EUNSUPPORTED, "%s: the %s has %d cached convolutions, more than %d",
                       b->dir, x.sn, x.slots, VAE_MAX_SLOTS);
    c->n_slots = x.slots;
    return WF_OK;
}

void vae_free(vae_model **pm) {
    if (!pm || !*pm) return;
    vae_model *m = *pm;
    wk_weights_free(&m->dev);
    free(m->wlist);
    free(m->w.enc.layers);
    free(m->w.dec.layers);
    st_checkpoint_close(&m->ckpt);
    free(m);
    *pm = NULL;
}

/* What wanfarm runs of the configurations dfs_read_vae_config accepts. */
static wf_status check_config(const dfs_vae_config *c, const char *path, wf_err *err) {
    const int64_t p = c->patch_size > 1 ? c->patch_size : 1;
    if (c->in_channels != 3 * p * p || c->out_channels != 3 * p * p)
        return wf_fail(err, WF_EUNSUPPORTED,
                       "%s: in_channels/out_channels are %lld/%lld; with patch_size %lld wanfarm "
                       "needs 3 * patch_size^2 = %lld (RGB video)",
                       path, (long long)c->in_channels, (long long)c->out_channels, (long long)p,
                       (long long)(3 * p * p));
    if (c->scale_factor_temporal > 4)
        return wf_fail(
            err, WF_EUNSUPPORTED,
            "%s: scale_factor_temporal %lld: Diffusers encodes 4 frames per chunk, so at "
            "most two temperal_downsample entries may be true",
            path, (long long)c->scale_factor_temporal);
    return WF_OK;
}

/* Which naming the checkpoint uses, from decoder.conv_in's name under each. */
static wf_status detect_names(vae_model *m, st_binder *b, wf_err *err) {
    if (st_checkpoint_find(m->ckpt, "decoder.conv_in.weight")) {
        m->names = VAE_NAMES_DIFFUSERS;
    } else if (st_checkpoint_find(m->ckpt, "decoder.conv1.weight")) {
        m->names = VAE_NAMES_OFFICIAL;
        if (m->cfg.is_residual)
            return wf_fail(err, WF_EUNSUPPORTED,
                           "%s: official Wan names of the Wan2.2 VAE (is_residual) are not "
                           "supported; convert the checkpoint to Diffusers names",
                           b->dir);
    } else {
        return wf_fail(err, WF_EFORMAT,
                       "%s: not a Wan VAE checkpoint: neither the Diffusers name "
                       "'decoder.conv_in.weight' nor the official 'decoder.conv1.weight' is "
                       "present",
                       b->dir);
    }
    b->naming = (int)m->names;
    return WF_OK;
}

/* The config fields the shapes depend on, for messages: "base_dim 4, ..., is_residual false". */
static void describe_config(const dfs_vae_config *c, char *buf, size_t len) {
    size_t o = (size_t)snprintf(buf, len,
                                "base_dim %lld, decoder_base_dim %lld, z_dim %lld, dim_mult [",
                                (long long)c->base_dim, (long long)c->decoder_base_dim,
                                (long long)c->z_dim);
    for (size_t i = 0; i < c->n_dim_mult && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)c->dim_mult[i]);
    if (o < len)
        snprintf(buf + o, len - o, "], num_res_blocks %lld, is_residual %s",
                 (long long)c->num_res_blocks, c->is_residual ? "true" : "false");
}

/* Binds encoder, decoder and the two 1x1x1 convs between them, then refuses what is left over. */
static wf_status bind_weights(vae_model *m, st_binder *b, wf_err *err) {
    describe_config(&m->cfg, b->config, sizeof b->config);
    snprintf(b->missing, sizeof b->missing, "config.json: %s", b->config);
    b->advice = "; is this the right config for these weights?";
    wf_status st;
    if ((st = build_coder(b, &m->cfg, &m->w.enc, 'e', err))) return st;
    if ((st = build_coder(b, &m->cfg, &m->w.dec, 'd', err))) return st;
    const int64_t z = m->cfg.z_dim;
    if ((st = bind_conv(b, &m->w.quant, "quant_conv.", "conv1.", 2 * z, 2 * z, 1, err))) return st;
    if ((st = bind_conv(b, &m->w.post_quant, "post_quant_conv.", "conv2.", z, z, 1, err)))
        return st;
    char why[320];
    snprintf(why, sizeof why, "config.json: %s; is this the right config for these weights?",
             b->config);
    return st_binder_finish(b, why, err);
}

wf_status vae_upload(vae_model *m, wk_backend *be, wf_err *err) {
    if (m->dev.be) return wf_fail(err, WF_EINVAL, "vae_upload: the weights are already uploaded");
    wf_status st = wk_weights_upload(be, m->wlist, m->n_wlist, &m->dev, err);
    if (st) wf_err_prefix(err, "vae weights to %s: ", be->name);
    return st;
}

wf_status vae_load(vae_model **out, const char *dir, wf_err *err) {
    *out = NULL;
    st_binder b = {0};
    vae_model *m = calloc(1, sizeof *m);
    wf_status st = m ? st_binder_init(&b, dir, err) : wf_fail(err, WF_ENOMEM, "out of memory");
    if (st) goto out;
    WF_TRY(dfs_read_vae_config(b.config_path, &m->cfg, err));
    WF_TRY(check_config(&m->cfg, b.config_path, err));
    m->s = m->cfg.scale_factor_spatial;
    m->s_t = m->cfg.scale_factor_temporal;
    m->p = m->cfg.patch_size > 1 ? m->cfg.patch_size : 1;
    WF_TRY(st_binder_open(&b, &m->ckpt, err));
    WF_TRY(detect_names(m, &b, err));
    WF_TRY(bind_weights(m, &b, err));
    st_binder_take_weights(&b, &m->wlist, &m->n_wlist);
    m->weight_bytes = m->ckpt->total_bytes;
out:
    st_binder_free(&b);
    if (st) vae_free(&m);
    *out = m;
    return st;
}

/* ---- the pipeline's edges ---- */

void vae_latents_denormalize(const dfs_vae_config *c, float *z, int64_t n) {
    for (int64_t ch = 0; ch < c->z_dim; ch++) {
        const float inv_std =
            1.0f / (float)c->latents_std[ch]; /* latents_std = 1.0 / tensor(std) */
        const float mean = (float)c->latents_mean[ch];
        float *p = z + ch * n;
        for (int64_t i = 0; i < n; i++) {
            const float q = p[i] / inv_std;
            p[i] = q + mean;
        }
    }
}

void vae_latents_normalize(const dfs_vae_config *c, float *z, int64_t n) {
    for (int64_t ch = 0; ch < c->z_dim; ch++) {
        const float inv_std = 1.0f / (float)c->latents_std[ch];
        const float mean = (float)c->latents_mean[ch];
        float *p = z + ch * n;
        for (int64_t i = 0; i < n; i++) {
            const float d = p[i] - mean;
            p[i] = d * inv_std;
        }
    }
}

static uint8_t to_u8(float x) {
    float v = x * 0.5f; /* (x * 0.5 + 0.5).clamp(0, 1), torch f32 */
    v = v + 0.5f;
    v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    v = v * 255.0f; /* numpy f32: (x * 255).round().astype(uint8) */
    if (!(v == v)) return 0;
    return (uint8_t)nearbyintf(v); /* round half to even (the default rounding mode) */
}

void vae_to_rgb8(const float *x, size_t n, uint8_t *out) {
    for (size_t i = 0; i < n; i++) out[i] = to_u8(x[i]);
}

void vae_to_rgb8_planar(const float *x, int64_t F, int64_t H, int64_t W, uint8_t *out) {
    const int64_t plane = F * H * W;
    for (int64_t p = 0; p < plane; p++)
        for (int64_t c = 0; c < 3; c++) out[p * 3 + c] = to_u8(x[c * plane + p]);
}
