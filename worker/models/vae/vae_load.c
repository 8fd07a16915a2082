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
 * residual.{0,2,3,6}, shortcut, conv1/conv2 for quant_conv/post_quant_conv.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vae.h"

/* Symbolic dimensions of the table's shapes; positive values are literal sizes. */
/* clang-format off */
enum { D_END = 0, D_IN = -1, D_OUT = -2, D_3IN = -3, D_AUX = -4 };
enum { W_ALWAYS = 0, W_SHORTCUT, W_TIME };

typedef struct vae_field {
    size_t off; /* into the module struct */
    const char *diffusers, *official;
    signed char shape[5]; /* D_* or literal, D_END-terminated */
    unsigned char when;   /* W_SHORTCUT: only when in != out; W_TIME: only for 3-D resamples */
} vae_field;

#define RES(f) offsetof(vae_resblock, f)
static const vae_field res_fields[] = {
    {RES(norm1), "norm1.gamma", "residual.0.gamma", {D_IN, 1, 1, 1}, W_ALWAYS},
    {RES(conv1.w), "conv1.weight", "residual.2.weight", {D_OUT, D_IN, 3, 3, 3}, W_ALWAYS},
    {RES(conv1.b), "conv1.bias", "residual.2.bias", {D_OUT}, W_ALWAYS},
    {RES(norm2), "norm2.gamma", "residual.3.gamma", {D_OUT, 1, 1, 1}, W_ALWAYS},
    {RES(conv2.w), "conv2.weight", "residual.6.weight", {D_OUT, D_OUT, 3, 3, 3}, W_ALWAYS},
    {RES(conv2.b), "conv2.bias", "residual.6.bias", {D_OUT}, W_ALWAYS},
    {RES(shortcut.w), "conv_shortcut.weight", "shortcut.weight", {D_OUT, D_IN, 1, 1, 1}, W_SHORTCUT},
    {RES(shortcut.b), "conv_shortcut.bias", "shortcut.bias", {D_OUT}, W_SHORTCUT},
};

#define ATT(f) offsetof(vae_attn, f)
static const vae_field attn_fields[] = {
    {ATT(norm), "norm.gamma", "norm.gamma", {D_IN, 1, 1}, W_ALWAYS},
    {ATT(qkv.w), "to_qkv.weight", "to_qkv.weight", {D_3IN, D_IN, 1, 1}, W_ALWAYS},
    {ATT(qkv.b), "to_qkv.bias", "to_qkv.bias", {D_3IN}, W_ALWAYS},
    {ATT(proj.w), "proj.weight", "proj.weight", {D_IN, D_IN, 1, 1}, W_ALWAYS},
    {ATT(proj.b), "proj.bias", "proj.bias", {D_IN}, W_ALWAYS},
};

/* D_AUX: time_conv's output width (2 dim for upsample3d, dim for downsample3d) */
#define RSP(f) offsetof(vae_resample, f)
static const vae_field resample_fields[] = {
    {RSP(conv.w), "resample.1.weight", "resample.1.weight", {D_OUT, D_IN, 3, 3}, W_ALWAYS},
    {RSP(conv.b), "resample.1.bias", "resample.1.bias", {D_OUT}, W_ALWAYS},
    {RSP(time_conv.w), "time_conv.weight", "time_conv.weight", {D_AUX, D_IN, 3, 1, 1}, W_TIME},
    {RSP(time_conv.b), "time_conv.bias", "time_conv.bias", {D_AUX}, W_TIME},
};

/* a causal conv with a cubic kernel of D_AUX (3 or 1) */
static const vae_field conv_fields[] = {
    {offsetof(vae_conv, w), "weight", "weight", {D_OUT, D_IN, D_AUX, D_AUX, D_AUX}, W_ALWAYS},
    {offsetof(vae_conv, b), "bias", "bias", {D_OUT}, W_ALWAYS},
};

static const vae_field norm_fields[] = {
    {0, "gamma", "gamma", {D_IN, 1, 1, 1}, W_ALWAYS},
};
/* clang-format on */

typedef struct binder {
    vae_model *m;
    const char *dir;
    bool *used;         /* per ckpt->by_name entry */
    char cfg_desc[256]; /* the config fields shapes depend on, for messages */
} binder;

static void shape_str(char *buf, size_t len, const int64_t *d, int nd) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < nd && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)d[i]);
}

/* Binds the fields of one module. prefix: "decoder.up_blocks.1.resnets.0." (Diffusers) and its
 * official twin; in, out, aux: the module's widths. */
static wf_status bind_module(binder *b, const vae_field *fields, size_t n, const char *pd,
                             const char *po, void *base, int64_t in, int64_t out, int64_t aux,
                             unsigned when_mask, wf_err *err) {
    vae_model *m = b->m;
    for (size_t i = 0; i < n; i++) {
        const vae_field *f = &fields[i];
        if (f->when != W_ALWAYS && !(when_mask & (1u << f->when))) continue;
        char name[256];
        snprintf(name, sizeof name, "%s%s", m->names == VAE_NAMES_OFFICIAL ? po : pd,
                 m->names == VAE_NAMES_OFFICIAL ? f->official : f->diffusers);
        ptrdiff_t k = st_checkpoint_index(m->ckpt, name);
        if (k < 0)
            return wf_fail(err, WF_EFORMAT, "%s: tensor '%s' is missing (config.json: %s)", b->dir,
                           name, b->cfg_desc);
        const st_tensor *t = m->ckpt->by_name[k];
        b->used[k] = true;
        int64_t want[5], have[5];
        int nd = 0;
        while (nd < 5 && f->shape[nd] != D_END) {
            signed char s = f->shape[nd];
            want[nd] = s == D_IN    ? in
                       : s == D_OUT ? out
                       : s == D_3IN ? 3 * in
                       : s == D_AUX ? aux
                                    : s;
            nd++;
        }
        bool ok = t->ndim == nd;
        for (int d = 0; d < t->ndim && d < 5; d++) have[d] = (int64_t)t->shape[d];
        for (int d = 0; ok && d < nd; d++) ok = have[d] == want[d];
        if (!ok) {
            char ws[96], hs[96];
            shape_str(ws, sizeof ws, want, nd);
            shape_str(hs, sizeof hs, have, t->ndim < 5 ? t->ndim : 5);
            return wf_fail(err, WF_EFORMAT,
                           "%s: tensor '%s' has shape [%s], but config.json (%s) needs [%s]; is "
                           "this the right config for these weights?",
                           b->dir, name, hs, b->cfg_desc, ws);
        }
        wf_status st = st_tensor_view(t, (wk_tensor *)((char *)base + f->off), err);
        if (st) return st;
    }
    return WF_OK;
}

static wf_status bind_res(binder *b, vae_resblock *r, const char *pd, const char *po, wf_err *err) {
    unsigned mask = r->in != r->out ? 1u << W_SHORTCUT : 0;
    return bind_module(b, res_fields, sizeof res_fields / sizeof *res_fields, pd, po, r, r->in,
                       r->out, 0, mask, err);
}

static wf_status bind_conv(binder *b, vae_conv *c, const char *pd, const char *po, int64_t in,
                           int64_t out, int64_t k, wf_err *err) {
    return bind_module(b, conv_fields, 2, pd, po, c, in, out, k, 0, err);
}

/* Fills the layers of encoder (side 'e') or decoder ('d') from the config and binds them. */
static wf_status build_coder(binder *b, vae_coder *c, char side, wf_err *err) {
    vae_model *m = b->m;
    const dfs_vae_config *g = &m->cfg;
    const int L = (int)g->n_dim_mult;
    const int64_t nres = g->num_res_blocks;
    const char *sn = side == 'e' ? "encoder" : "decoder";
    int64_t dims[DFS_MAX_LEVELS + 1];
    if (side == 'e') {
        dims[0] = g->base_dim;
        for (int i = 0; i < L; i++) dims[i + 1] = g->base_dim * g->dim_mult[i];
    } else {
        dims[0] = g->decoder_base_dim * g->dim_mult[L - 1];
        for (int i = 0; i < L; i++) dims[i + 1] = g->decoder_base_dim * g->dim_mult[L - 1 - i];
    }
    const int per =
        side == 'e' ? (int)nres + 1 : (int)nres + 2; /* layers per level, resample incl. */
    c->layers = calloc((size_t)(L * per), sizeof *c->layers);
    if (!c->layers) return wf_fail(err, WF_ENOMEM, "out of memory");
    int n = 0, slots = 1; /* conv_in */
    char pd[160], po[160];
    wf_status st;
    const int64_t cin = side == 'e' ? g->in_channels : g->z_dim;
    snprintf(pd, sizeof pd, "%s.conv_in.", sn);
    snprintf(po, sizeof po, "%s.conv1.", sn);
    if ((st = bind_conv(b, &c->conv_in, pd, po, cin, dims[0], 3, err))) return st;
    const bool resid = g->is_residual;
    for (int i = 0; i < L; i++) {
        int64_t in = dims[i], out = dims[i + 1];
        if (side == 'd' && i > 0 && !resid) in /= 2; /* Wan2.1: the previous upsampler halved it */
        const bool last = i == L - 1;
        const bool temporal =
            !last && (side == 'e' ? g->temperal_downsample[i]
                                  : g->temperal_downsample[L - 2 - i]); /* reversed */
        const int nr = side == 'e' ? (int)nres : (int)nres + 1;
        const int first = n;
        for (int r = 0; r < nr; r++) {
            vae_layer *l = &c->layers[n];
            l->res.in = r == 0 ? in : out;
            l->res.out = out;
            if (resid) {
                snprintf(l->name, sizeof l->name, "%s.%s_blocks.%d.resnets.%d", sn,
                         side == 'e' ? "down" : "up", i, r);
            } else if (side == 'e') {
                snprintf(l->name, sizeof l->name, "encoder.down_blocks.%d", n);
                snprintf(po, sizeof po, "encoder.downsamples.%d.", n);
                snprintf(l->tap, sizeof l->tap, "enc.down_blocks.%d", n);
            } else {
                snprintf(l->name, sizeof l->name, "decoder.up_blocks.%d.resnets.%d", i, r);
                snprintf(po, sizeof po, "decoder.upsamples.%d.", i * per + r);
                if (r == nr - 1 && last) snprintf(l->tap, sizeof l->tap, "dec.up_blocks.%d", i);
            }
            snprintf(pd, sizeof pd, "%s.", l->name);
            if ((st = bind_res(b, &l->res, pd, po, err))) return st;
            slots += 2;
            n++;
        }
        if (!last) {
            vae_layer *l = &c->layers[n];
            l->is_resample = true;
            vae_resample *s = &l->rs;
            s->dim = out;
            if (side == 'e') {
                s->mode = temporal ? VAE_DOWN3D : VAE_DOWN2D;
                s->out_dim = out;
                if (resid) {
                    snprintf(l->name, sizeof l->name, "encoder.down_blocks.%d.downsampler", i);
                } else {
                    snprintf(l->name, sizeof l->name, "encoder.down_blocks.%d", n);
                    snprintf(po, sizeof po, "encoder.downsamples.%d.", n);
                    snprintf(l->tap, sizeof l->tap, "enc.down_blocks.%d", n);
                }
            } else {
                s->mode = temporal ? VAE_UP3D : VAE_UP2D;
                s->out_dim = resid ? out : out / 2; /* Wan2.2: upsample_out_dim = out */
                if (resid) {
                    snprintf(l->name, sizeof l->name, "decoder.up_blocks.%d.upsampler", i);
                } else {
                    snprintf(l->name, sizeof l->name, "decoder.up_blocks.%d.upsamplers.0", i);
                    snprintf(po, sizeof po, "decoder.upsamples.%d.", i * per + per - 1);
                    snprintf(l->tap, sizeof l->tap, "dec.up_blocks.%d", i);
                }
            }
            if (!s->out_dim) /* possible only with a base width of 1 */
                return wf_fail(err, WF_EUNSUPPORTED, "%s: %s would have 0 output channels", b->dir,
                               l->name);
            snprintf(pd, sizeof pd, "%s.", l->name);
            const int64_t aux = s->mode == VAE_UP3D ? 2 * out : out;
            unsigned mask = temporal ? 1u << W_TIME : 0;
            if ((st = bind_module(b, resample_fields,
                                  sizeof resample_fields / sizeof *resample_fields, pd, po, s, out,
                                  s->out_dim, aux, mask, err)))
                return st;
            if (temporal) slots++;
            n++;
        }
        if (resid && (side == 'e' || !last)) { /* the block's parameter-free shortcut */
            vae_shortcut *sc = &c->layers[n - 1].shortcut;
            *sc = (vae_shortcut){.kind = side == 'e' ? VAE_SC_AVGDOWN : VAE_SC_DUPUP,
                                 .in = dims[i],
                                 .out = out,
                                 .ft = temporal ? 2 : 1,
                                 .fs = last ? 1 : 2};
            const int64_t fac = sc->ft * sc->fs * sc->fs;
            if ((side == 'e' && (sc->in * fac) % sc->out) ||
                (side == 'd' && (sc->out * fac) % sc->in))
                return wf_fail(
                    err, WF_EUNSUPPORTED,
                    "%s: %s_blocks.%d: the %s shortcut from %lld to %lld channels (factor "
                    "%lld) does not divide evenly (config.json: %s)",
                    b->dir, side == 'e' ? "down" : "up", i, side == 'e' ? "AvgDown3D" : "DupUp3D",
                    (long long)sc->in, (long long)sc->out, (long long)fac, b->cfg_desc);
            c->layers[first].save_input = true;
        }
        if (resid)
            snprintf(c->layers[n - 1].tap, sizeof c->layers[n - 1].tap, "%s.%s_blocks.%d",
                     side == 'e' ? "enc" : "dec", side == 'e' ? "down" : "up", i);
    }
    c->n_layers = n;
    /* conv_in, mid block, head */
    const int64_t cmid = side == 'e' ? dims[L] : dims[0];
    const int64_t clast = dims[L];
    const int64_t cout = side == 'e' ? 2 * g->z_dim : g->out_channels;
    for (int k = 0; k < 2; k++) {
        c->mid_res[k].in = c->mid_res[k].out = cmid;
        snprintf(pd, sizeof pd, "%s.mid_block.resnets.%d.", sn, k);
        snprintf(po, sizeof po, "%s.middle.%d.", sn, 2 * k);
        if ((st = bind_res(b, &c->mid_res[k], pd, po, err))) return st;
    }
    c->mid_attn.dim = cmid;
    snprintf(pd, sizeof pd, "%s.mid_block.attentions.0.", sn);
    snprintf(po, sizeof po, "%s.middle.1.", sn);
    if ((st = bind_module(b, attn_fields, sizeof attn_fields / sizeof *attn_fields, pd, po,
                          &c->mid_attn, cmid, cmid, 0, 0, err)))
        return st;
    snprintf(pd, sizeof pd, "%s.norm_out.", sn);
    snprintf(po, sizeof po, "%s.head.0.", sn);
    if ((st = bind_module(b, norm_fields, 1, pd, po, &c->norm_out, clast, 0, 0, 0, err))) return st;
    snprintf(pd, sizeof pd, "%s.conv_out.", sn);
    snprintf(po, sizeof po, "%s.head.2.", sn);
    if ((st = bind_conv(b, &c->conv_out, pd, po, clast, cout, 3, err))) return st;
    slots += 4 + 1; /* mid resblocks, conv_out */
    if (slots > VAE_MAX_SLOTS)
        return wf_fail(err, WF_EUNSUPPORTED, "%s: the %s has %d cached convolutions, more than %d",
                       b->dir, sn, slots, VAE_MAX_SLOTS);
    c->n_slots = slots;
    return WF_OK;
}

void vae_free(vae_model **pm) {
    if (!pm || !*pm) return;
    vae_model *m = *pm;
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

wf_status vae_load(vae_model **out, const char *dir, wf_err *err) {
    *out = NULL;
    vae_model *m = calloc(1, sizeof *m);
    bool *used = NULL;
    char *cfg_path = malloc(strlen(dir) + 16);
    wf_status st = WF_OK;
    if (!m || !cfg_path) {
        st = wf_fail(err, WF_ENOMEM, "out of memory");
        goto out;
    }
    sprintf(cfg_path, "%s/config.json", dir);
    if ((st = dfs_read_vae_config(cfg_path, &m->cfg, err))) goto out;
    if ((st = check_config(&m->cfg, cfg_path, err))) goto out;
    m->s = m->cfg.scale_factor_spatial;
    m->s_t = m->cfg.scale_factor_temporal;
    m->p = m->cfg.patch_size > 1 ? m->cfg.patch_size : 1;
    if ((st = st_checkpoint_open(&m->ckpt, dir, err))) goto out;
    if (st_checkpoint_find(m->ckpt, "decoder.conv_in.weight")) {
        m->names = VAE_NAMES_DIFFUSERS;
    } else if (st_checkpoint_find(m->ckpt, "decoder.conv1.weight")) {
        m->names = VAE_NAMES_OFFICIAL;
        if (m->cfg.is_residual) {
            st =
                wf_fail(err, WF_EUNSUPPORTED,
                        "%s: official Wan names of the Wan2.2 VAE (is_residual) are not supported; "
                        "convert the checkpoint to Diffusers names",
                        dir);
            goto out;
        }
    } else {
        st = wf_fail(err, WF_EFORMAT,
                     "%s: not a Wan VAE checkpoint: neither the Diffusers name "
                     "'decoder.conv_in.weight' nor the official 'decoder.conv1.weight' is present",
                     dir);
        goto out;
    }
    used = calloc(m->ckpt->n_tensors ? m->ckpt->n_tensors : 1, sizeof *used);
    if (!used) {
        st = wf_fail(err, WF_ENOMEM, "out of memory");
        goto out;
    }
    binder b = {.m = m, .dir = dir, .used = used};
    {
        const dfs_vae_config *c = &m->cfg;
        size_t o = (size_t)snprintf(b.cfg_desc, sizeof b.cfg_desc,
                                    "base_dim %lld, decoder_base_dim %lld, z_dim %lld, dim_mult [",
                                    (long long)c->base_dim, (long long)c->decoder_base_dim,
                                    (long long)c->z_dim);
        for (size_t i = 0; i < c->n_dim_mult && o < sizeof b.cfg_desc; i++)
            o += (size_t)snprintf(b.cfg_desc + o, sizeof b.cfg_desc - o, "%s%lld", i ? ", " : "",
                                  (long long)c->dim_mult[i]);
        if (o < sizeof b.cfg_desc)
            snprintf(b.cfg_desc + o, sizeof b.cfg_desc - o,
                     "], num_res_blocks %lld, is_residual %s", (long long)c->num_res_blocks,
                     c->is_residual ? "true" : "false");
    }
    if ((st = build_coder(&b, &m->w.enc, 'e', err))) goto out;
    if ((st = build_coder(&b, &m->w.dec, 'd', err))) goto out;
    const int64_t z = m->cfg.z_dim;
    if ((st = bind_conv(&b, &m->w.quant, "quant_conv.", "conv1.", 2 * z, 2 * z, 1, err))) goto out;
    if ((st = bind_conv(&b, &m->w.post_quant, "post_quant_conv.", "conv2.", z, z, 1, err)))
        goto out;
    size_t unused = 0, first = 0;
    for (size_t i = 0; i < m->ckpt->n_tensors; i++)
        if (!used[i] && unused++ == 0) first = i;
    if (unused) {
        st =
            wf_fail(err, WF_EFORMAT,
                    "%s: %zu tensor%s the config does not use, e.g. '%s' (config.json: %s; is this "
                    "the right config for these weights?)",
                    dir, unused, unused == 1 ? "" : "s", m->ckpt->by_name[first]->name, b.cfg_desc);
        goto out;
    }
    m->weight_bytes = m->ckpt->total_bytes;
out:
    free(used);
    free(cfg_path);
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
