/* pipeline.c: WanPipeline.__call__ in C (see pipeline.h). */
#include "pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arena.h"

const char PL_WAN_NEGATIVE_PROMPT_ZH[] =
    "\xe8\x89\xb2\xe8\xb0\x83\xe8\x89\xb3\xe4\xb8\xbd\xef\xbc\x8c\xe8\xbf\x87\xe6\x9b\x9d\xef\xbc"
    "\x8c\xe9\x9d\x99\xe6\x80\x81\xef\xbc\x8c\xe7\xbb\x86\xe8\x8a\x82\xe6\xa8\xa1\xe7\xb3\x8a\xe4"
    "\xb8\x8d\xe6\xb8\x85\xef\xbc\x8c\xe5\xad\x97\xe5\xb9\x95\xef\xbc\x8c\xe9\xa3\x8e\xe6\xa0\xbc"
    "\xef\xbc\x8c\xe4\xbd\x9c\xe5\x93\x81\xef\xbc\x8c\xe7\x94\xbb\xe4\xbd\x9c\xef\xbc\x8c\xe7\x94"
    "\xbb\xe9\x9d\xa2\xef\xbc\x8c\xe9\x9d\x99\xe6\xad\xa2\xef\xbc\x8c\xe6\x95\xb4\xe4\xbd\x93\xe5"
    "\x8f\x91\xe7\x81\xb0\xef\xbc\x8c\xe6\x9c\x80\xe5\xb7\xae\xe8\xb4\xa8\xe9\x87\x8f\xef\xbc\x8c"
    "\xe4\xbd\x8e\xe8\xb4\xa8\xe9\x87\x8f\xef\xbc\x8cJPEG\xe5\x8e\x8b\xe7\xbc\xa9\xe6\xae\x8b\xe7"
    "\x95\x99\xef\xbc\x8c\xe4\xb8\x91\xe9\x99\x8b\xe7\x9a\x84\xef\xbc\x8c\xe6\xae\x8b\xe7\xbc\xba"
    "\xe7\x9a\x84\xef\xbc\x8c\xe5\xa4\x9a\xe4\xbd\x99\xe7\x9a\x84\xe6\x89\x8b\xe6\x8c\x87\xef\xbc"
    "\x8c\xe7\x94\xbb\xe5\xbe\x97\xe4\xb8\x8d\xe5\xa5\xbd\xe7\x9a\x84\xe6\x89\x8b\xe9\x83\xa8\xef"
    "\xbc\x8c\xe7\x94\xbb\xe5\xbe\x97\xe4\xb8\x8d\xe5\xa5\xbd\xe7\x9a\x84\xe8\x84\xb8\xe9\x83\xa8"
    "\xef\xbc\x8c\xe7\x95\xb8\xe5\xbd\xa2\xe7\x9a\x84\xef\xbc\x8c\xe6\xaf\x81\xe5\xae\xb9\xe7\x9a"
    "\x84\xef\xbc\x8c\xe5\xbd\xa2\xe6\x80\x81\xe7\x95\xb8\xe5\xbd\xa2\xe7\x9a\x84\xe8\x82\xa2\xe4"
    "\xbd\x93\xef\xbc\x8c\xe6\x89\x8b\xe6\x8c\x87\xe8\x9e\x8d\xe5\x90\x88\xef\xbc\x8c\xe9\x9d\x99"
    "\xe6\xad\xa2\xe4\xb8\x8d\xe5\x8a\xa8\xe7\x9a\x84\xe7\x94\xbb\xe9\x9d\xa2\xef\xbc\x8c\xe6\x9d"
    "\x82\xe4\xb9\xb1\xe7\x9a\x84\xe8\x83\x8c\xe6\x99\xaf\xef\xbc\x8c\xe4\xb8\x89\xe6\x9d\xa1\xe8"
    "\x85\xbf\xef\xbc\x8c\xe8\x83\x8c\xe6\x99\xaf\xe4\xba\xba\xe5\xbe\x88\xe5\xa4\x9a\xef\xbc\x8c"
    "\xe5\x80\x92\xe7\x9d\x80\xe8\xb5\xb0";

wf_status pl_check_resume(const pl_request *r, wf_err *err) {
    if (r->start_step < 0 || r->start_step > r->steps)
        return wf_fail(err, WF_EINVAL, "resume after step %lld of a %lld-step job",
                       (long long)r->start_step, (long long)r->steps);
    if (r->start_step > 0 && (!r->start_state || !r->start_state_bytes || !r->latents))
        return wf_fail(err, WF_EINVAL, "resume after step %lld without the latents and the "
                       "sampler state of that step", (long long)r->start_step);
    if (r->checkpoint_every < 0)
        return wf_fail(err, WF_EINVAL, "checkpoint every %lld steps", (long long)r->checkpoint_every);
    return WF_OK;
}

wf_status pl_resume_load(const pl_request *r, smp_sampler *smp, wf_err *err) {
    if (r->start_step <= 0) return WF_OK;
    wf_status st = smp_state_load(smp, r->start_state, r->start_state_bytes, err);
    if (st) wf_err_prefix(err, "resuming after step %lld: ", (long long)r->start_step);
    return st;
}

bool pl_checkpoint_due(const pl_request *r, int64_t done, bool stop) {
    if (!r->checkpoint) return false;
    if (stop) return true;
    return r->checkpoint_every > 0 && done % r->checkpoint_every == 0 && done < r->steps;
}

wf_status pl_checkpoint_now(wk_backend *be, const pl_request *r, const smp_sampler *smp,
                            const float *x, float *xh, void *state, size_t n, int64_t done,
                            wf_err *err) {
    wf_status st = wk_download_bytes(be, xh, x, n * sizeof(float), err);
    if (!st) st = smp_state_save(smp, state, err);
    if (!st) st = r->checkpoint(r->checkpoint_ctx, done, xh, state, smp_state_bytes(smp), err);
    if (st) wf_err_prefix(err, "checkpoint after step %lld: ", (long long)done);
    return st;
}

void pl_progress_memory(wk_backend *be, pl_progress *pr) {
    wk_mem_note(be);
    pr->mem_peak = be->mem_peak_data;
    pr->mem_workspace = be->ws_bytes;
    pr->mem_live = be->mem_live;
    pr->device_used = wk_device_used(be);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Each loaded model's weights into the backend's memory, once (nothing moves on the CPU); the
 * text encoder only while it encodes (encode_prompts: staged), so that both experts, the VAE and
 * the DiT's activations fit on one device without it. */
static wf_status upload_models(pl_pipeline *p, wf_err *err) {
    wf_status st = WF_OK;
    if (p->be->device == WK_DEV_CPU) return WF_OK;
    for (int k = 0; k < 2; k++)
        if (p->dit[k]) WF_TRY(dit_upload(p->dit[k], p->be, err));
    if (p->vae) WF_TRY(vae_upload(p->vae, p->be, err));
out:
    return st;
}

wf_status pl_open(pl_pipeline **out, const char *root, wk_backend *be, int nthreads, wf_err *err) {
    return pl_open_parts(out, root, be, nthreads, PL_PART_ALL, err);
}

wf_status pl_open_parts(pl_pipeline **out, const char *root, wk_backend *be, int nthreads,
                        unsigned parts, wf_err *err) {
    *out = NULL;
    pl_pipeline *p = calloc(1, sizeof *p);
    if (!p) return wf_fail(err, WF_ENOMEM, "pl_open: out of memory");
    char *dir = NULL;
    wf_status st = WF_OK;
    WF_TRY(dfs_open(&p->cfg, root, err));
    /* expand_timesteps (TI2V-5B text-to-video) needs nothing special here: Diffusers passes the
     * per-token timestep mask * t with mask = 1 everywhere (the float32 value of the integer, or
     * Euler's fp32, t), and its transformer embeds every token's copy of t with the same math as
     * the scalar path, so the scalar path gives the same numbers (see pipeline.h). */
#define LOAD(sub, call, what)                                                                    \
    do {                                                                                         \
        dir = join(root, sub);                                                                   \
        if (!dir) {                                                                              \
            st = wf_fail(err, WF_ENOMEM, "pl_open: out of memory");                              \
            goto out;                                                                            \
        }                                                                                        \
        st = call;                                                                               \
        if (st) {                                                                                \
            wf_err_prefix(err, "loading %s: ", what);                                            \
            goto out;                                                                            \
        }                                                                                        \
        free(dir);                                                                               \
        dir = NULL;                                                                              \
    } while (0)
    /* the configs must fit each other whatever this rank loads */
    const dfs_pipeline *c = p->cfg;
    const dfs_transformer_config *t0 = &c->transformer, *t1 = &c->transformer_2;
    if (c->text_encoder.d_model != t0->text_dim ||
        (c->has_transformer_2 && c->text_encoder.d_model != t1->text_dim)) {
        st = wf_fail(err, WF_EFORMAT, "%s: text_encoder d_model %lld != transformer text_dim %lld",
                     root, (long long)c->text_encoder.d_model, (long long)t0->text_dim);
        goto out;
    }
    if (c->vae.z_dim != t0->in_channels || t0->in_channels != t0->out_channels ||
        (c->has_transformer_2 &&
         (t1->in_channels != t0->in_channels || t1->out_channels != t0->out_channels))) {
        st = wf_fail(err, WF_EFORMAT,
                     "%s: latent channels disagree (vae z_dim %lld, transformer in %lld out %lld)",
                     root, (long long)c->vae.z_dim, (long long)t0->in_channels,
                     (long long)t0->out_channels);
        goto out;
    }
    if (parts & PL_PART_TEXT) {
        LOAD("tokenizer", tok_load(&p->tok, dir, err), "tokenizer/");
        LOAD("text_encoder", t5_load(&p->t5, dir, err), "text_encoder/");
    }
    if (parts & PL_PART_EXPERT0) LOAD("transformer", dit_load(&p->dit[0], dir, err), "transformer/");
    if ((parts & PL_PART_EXPERT1) && c->has_transformer_2)
        LOAD("transformer_2", dit_load(&p->dit[1], dir, err), "transformer_2/");
    if (parts & PL_PART_VAE) LOAD("vae", vae_load(&p->vae, dir, err), "vae/");
#undef LOAD
    if (be) {
        p->be = be;
    } else {
        WF_TRY(wk_backend_cpu_new(&p->be, nthreads, err));
        p->own_be = true;
    }
    WF_TRY(upload_models(p, err));
    *out = p;
    p = NULL;
out:
    free(dir);
    pl_close(&p);
    return st;
}

void pl_close(pl_pipeline **pp) {
    if (!pp || !*pp) return;
    pl_pipeline *p = *pp;
    if (p->own_be) wk_backend_destroy(&p->be);
    vae_free(&p->vae);
    dit_free(&p->dit[1]);
    dit_free(&p->dit[0]);
    t5_free(&p->t5);
    tok_free(&p->tok);
    dfs_close(&p->cfg);
    free(p);
    *pp = NULL;
}

void pl_request_default(pl_request *r) {
    memset(r, 0, sizeof *r);
    r->width = 832;
    r->height = 480;
    r->frames = 81;
    r->steps = 50;
    r->guidance = 5.0;
    r->guidance_2 = NAN;
    r->boundary = NAN;
    r->sampler = -1;
    r->max_sequence_length = 512;
}

static double boundary_ratio(const pl_pipeline *p, const pl_request *r) {
    return isnan(r->boundary) ? p->cfg->boundary_ratio : r->boundary;
}

static int64_t lcm(int64_t a, int64_t b) {
    int64_t x = a, y = b;
    while (y) {
        int64_t t = x % y;
        x = y;
        y = t;
    }
    return a / x * b;
}

wf_status pl_check_request(const pl_pipeline *p, const pl_request *r, int64_t shape[4],
                           wf_err *err) {
    return pl_check_request_cfg(p->cfg, r, shape, err);
}

/* A frame side v ("width", "height") must be a positive multiple of m = lcm(16, s x patch). */
static wf_status check_side(const char *what, int64_t v, int64_t m, int64_t s, int64_t patch,
                            wf_err *err) {
    if (v > 0 && v % m == 0) return WF_OK;
    return wf_fail(err, WF_EINVAL,
                   "%s %lld must be a positive multiple of %lld (16 and the VAE spatial factor "
                   "%lld x patch %lld); try %lld or %lld",
                   what, (long long)v, (long long)m, (long long)s, (long long)patch,
                   (long long)(v > m ? v / m * m : m),
                   (long long)(v > m ? (v / m + 1) * m : 2 * m));
}

/* The DiT's rotary table holds at most rope_max_seq_len patches per axis (of either expert): the
 * largest width, height and frame count this model can take. */
static wf_status check_model_limits(const dfs_pipeline *c, const pl_request *r, int64_t mw,
                                    int64_t mh, wf_err *err) {
    const int64_t s = c->vae.scale_factor_spatial, st = c->vae.scale_factor_temporal;
    const int64_t ph = c->transformer.patch_size[1], pw = c->transformer.patch_size[2];
    int64_t rope = c->transformer.rope_max_seq_len;
    if (c->has_transformer_2 && c->transformer_2.rope_max_seq_len < rope)
        rope = c->transformer_2.rope_max_seq_len;
    const int64_t pt = c->transformer.patch_size[0];
    const int64_t wmax = rope * pw * s / mw * mw, hmax = rope * ph * s / mh * mh;
    if (r->width > wmax || r->height > hmax)
        return wf_fail(err, WF_EINVAL,
                       "%s %lld is more than this model's limit %lld (rope_max_seq_len %lld x "
                       "patch %lld x the VAE spatial factor %lld)",
                       r->width > wmax ? "width" : "height",
                       (long long)(r->width > wmax ? r->width : r->height),
                       (long long)(r->width > wmax ? wmax : hmax), (long long)rope,
                       (long long)(r->width > wmax ? pw : ph), (long long)s);
    const int64_t fmax = (rope * pt - 1) * st + 1;
    if (r->frames > fmax)
        return wf_fail(err, WF_EINVAL,
                       "frames %lld is more than this model's limit %lld (rope_max_seq_len %lld "
                       "latent frames x patch %lld, VAE temporal factor %lld)",
                       (long long)r->frames, (long long)fmax, (long long)rope, (long long)pt,
                       (long long)st);
    return WF_OK;
}

wf_status pl_check_request_cfg(const dfs_pipeline *c, const pl_request *r, int64_t shape[4],
                               wf_err *err) {
    if (!r->prompt) return wf_fail(err, WF_EINVAL, "no prompt given");
    int64_t s = c->vae.scale_factor_spatial, ph = c->transformer.patch_size[1],
            pw = c->transformer.patch_size[2];
    int64_t mh = s * ph, mw = s * pw;
    mh = lcm(mh, 16); /* Diffusers' check_inputs (16) and its rounding (s x patch) */
    mw = lcm(mw, 16);
    wf_status e = check_side("width", r->width, mw, s, pw, err);
    if (!e) e = check_side("height", r->height, mh, s, ph, err);
    if (e) return e;
    int64_t st = c->vae.scale_factor_temporal;
    if ((e = check_model_limits(c, r, mw, mh, err))) return e;
    if (r->frames < 1 || (r->frames - 1) % st)
        return wf_fail(err, WF_EINVAL,
                       "frames %lld must be %lld k + 1 (1, %lld, %lld, ..., 81); try %lld or %lld",
                       (long long)r->frames, (long long)st, (long long)(st + 1),
                       (long long)(2 * st + 1),
                       (long long)(r->frames < 1 ? 1 : (r->frames - 1) / st * st + 1),
                       (long long)(r->frames < 1 ? st + 1 : ((r->frames - 1) / st + 1) * st + 1));
    if (r->steps < 1 || r->steps > SMP_MAX_STEPS)
        return wf_fail(err, WF_EINVAL, "steps %lld must be in 1..%d", (long long)r->steps,
                       SMP_MAX_STEPS);
    if (!(r->guidance >= 0 && r->guidance <= PL_GUIDANCE_MAX))
        return wf_fail(err, WF_EINVAL, "guidance %g must be in [0, %g]", r->guidance,
                       PL_GUIDANCE_MAX);
    if (!isnan(r->guidance_2) && !(r->guidance_2 >= 0 && r->guidance_2 <= PL_GUIDANCE_MAX))
        return wf_fail(err, WF_EINVAL, "guidance_2 %g must be in [0, %g]", r->guidance_2,
                       PL_GUIDANCE_MAX);
    if (r->max_sequence_length < 1 || r->max_sequence_length > PL_MAX_SEQUENCE_LENGTH)
        return wf_fail(err, WF_EINVAL, "max_sequence_length %lld must be in 1..%d",
                       (long long)r->max_sequence_length, PL_MAX_SEQUENCE_LENGTH);
    if (r->shift != 0 && !(r->shift >= PL_SHIFT_MIN && r->shift <= PL_SHIFT_MAX))
        return wf_fail(err, WF_EINVAL, "shift %g must be in [%g, %g] (or 0 for the scheduler's)",
                       r->shift, PL_SHIFT_MIN, PL_SHIFT_MAX);
    if (!isnan(r->boundary)) {
        if (!(r->boundary >= 0 && r->boundary <= 1))
            return wf_fail(err, WF_EINVAL, "boundary %g must be in [0, 1]", r->boundary);
        if (!c->has_transformer_2)
            return wf_fail(err, WF_EINVAL,
                           "a boundary needs two experts, and %s has no transformer_2; drop the "
                           "boundary option",
                           c->root);
    }
    if (r->sampler != -1 && r->sampler != SMP_UNIPC && r->sampler != SMP_EULER)
        return wf_fail(err, WF_EINVAL, "unknown sampler %d", r->sampler);
    double b = isnan(r->boundary) ? c->boundary_ratio : r->boundary;
    if (!isnan(b) && !c->has_transformer_2)
        return wf_fail(err, WF_EFORMAT, "%s: boundary_ratio is set but there is no transformer_2",
                       c->root);
    shape[0] = c->transformer.in_channels;
    shape[1] = (r->frames - 1) / st + 1;
    shape[2] = r->height / s;
    shape[3] = r->width / s;
    dit_shape ds = {shape[1], shape[2], shape[3], r->max_sequence_length, false};
    for (int k = 0; k < 2; k++) {
        if (k == 1 && !c->has_transformer_2) continue;
        dit_model cfg_only = {.cfg = k ? c->transformer_2 : c->transformer};
        e = dit_check_shape(&cfg_only, &ds, err);
        if (e) {
            wf_err_prefix(err, "%s: ", k ? "transformer_2" : "transformer");
            return e;
        }
    }
    return WF_OK;
}

size_t pl_first_nonfinite(const float *x, size_t n) {
    size_t i = 0;
    while (i < n && isfinite(x[i])) i++;
    return i;
}

wf_status pl_step_update(wk_backend *be, smp_sampler *smp, float *x, float *v, const float *c,
                         const float *u, float g, size_t n, int64_t i, wf_err *err) {
    wf_status st = WF_OK;
    wk_tensor xt = wk_tensor_1d(WK_F32, x, (int64_t)n), vt = wk_tensor_1d(WK_F32, v, (int64_t)n);
    wk_tensor ct = wk_tensor_1d(WK_F32, (void *)c, (int64_t)n);
    wk_tensor ut = wk_tensor_1d(WK_F32, (void *)u, (int64_t)n);
    xt.device = vt.device = ct.device = ut.device = be->device;
    if (u) WF_TRY(wk_guidance(be, &vt, &ut, &ct, g, err));
    WF_TRY(smp_step(smp, v, x, i, err));
    int64_t bad = 0;
    WF_TRY(wk_first_nonfinite(be, &xt, &bad, err));
    if (bad < (int64_t)n) {
        float val = 0.0f;
        WF_TRY(wk_download_bytes(be, &val, x + bad, sizeof val, err));
        st = wf_fail(err, WF_EINVAL,
                     "the latents are not finite after this step (element %lld of %zu is %g): "
                     "the model's weights or the guidance scale overflow f32; check the "
                     "checkpoint, or lower the guidance",
                     (long long)bad, n, (double)val);
    }
out:
    return st;
}

/* splitmix64 */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void pl_noise(uint64_t seed, float *x, size_t n) {
    const double two_pi = 6.283185307179586476925286766559;
    for (size_t i = 0; i < n; i++) {
        uint64_t k = mix64(seed + 0x9E3779B97F4A7C15ull * (uint64_t)(i / 2 + 1));
        double u1 = ((double)(k >> 32) + 1.0) / 4294967296.0;
        double u2 = (double)(k & 0xffffffffu) / 4294967296.0;
        double rr = sqrt(-2.0 * log(u1));
        x[i] = (float)(rr * ((i & 1) ? sin(two_pi * u2) : cos(two_pi * u2)));
    }
}

int pl_expert_of(const pl_pipeline *p, const pl_request *r, double t) {
    double br = boundary_ratio(p, r);
    double boundary_t = isnan(br) ? NAN : br * (double)p->cfg->scheduler.num_train_timesteps;
    return (isnan(boundary_t) || t >= boundary_t) ? 0 : 1;
}

wf_status pl_encode(pl_pipeline *p, wk_arena *arena, const char *text, int64_t L, float *out,
                    wf_err *err) {
    if (!p->t5 || !p->tok)
        return wf_fail(err, WF_EINVAL, "pl_encode: the text encoder is not loaded on this rank");
    int32_t *ids = malloc((size_t)L * sizeof *ids), *mask = malloc((size_t)L * sizeof *mask);
    wf_status st = WF_OK;
    if (!ids || !mask) {
        st = wf_fail(err, WF_ENOMEM, "out of memory for %lld tokens", (long long)L);
        goto out;
    }
    WF_TRY(tok_encode_prompt(p->tok, text, L, ids, mask, NULL, NULL, err));
    t5_input in = {L, ids, mask, true};
    st = t5_forward(p->t5, p->be, arena, &in, out, NULL, NULL, err);
out:
    free(ids);
    free(mask);
    return st;
}

/* One generation's sizes and buffers (pl_generate): the latents, velocities and text embeddings
 * live in the backend's memory for the whole loop; the host keeps the embeddings as encoded and
 * the latents before and after the loop. */
typedef struct gen {
    int64_t T, h, w, L;   /* latent frames, height, width; text tokens */
    int64_t D;            /* text width */
    size_t n;             /* latent elements: C T h w */
    bool cfg;             /* classifier-free guidance (guidance > 1) */
    float *cond, *uncond; /* host [L, D]; uncond: CFG only */
    float *xh;            /* host [n]: the initial, then the final latents */
    float *x, *v, *vu;    /* backend [n]; vu: the unconditional velocity, CFG only */
    float *cond_d, *uncond_d; /* backend [L, D] */
    void *state;          /* host: the sampler state for a checkpoint (with r->checkpoint) */
} gen;

bool pl_text_may_stay(const pl_pipeline *p, size_t need) {
    if (p->text_policy != PL_TEXT_AUTO) return p->text_policy == PL_TEXT_RESIDENT;
    const wk_backend *be = p->be;
    if (!be->mem_total) return false;
    const double margin = 1024.0 * 1024 * 1024;
    return (double)be->mem_live + (double)need + margin <= 0.95 * (double)be->mem_total;
}

/* The largest arena the rest of a request needs after its prompts: the DiT's (either expert)
 * or the VAE decode's. */
static wf_status later_arena_bytes(const pl_pipeline *p, const gen *g, size_t *need,
                                   wf_err *err) {
    dit_shape ds = {g->T, g->h, g->w, g->L, false};
    vae_opts vo = vae_opts_default();
    size_t b = 0;
    *need = 0;
    for (int k = 0; k < 2; k++) {
        if (!p->dit[k]) continue;
        wf_status st = dit_arena_bytes(p->dit[k], p->be, &ds, 1, &b, err);
        if (st) return st;
        if (b > *need) *need = b;
    }
    wf_status st = vae_decode_arena_bytes(p->vae, g->T, g->h, g->w, &vo, &b, err);
    if (!st && b > *need) *need = b;
    return st;
}

/* text: the prompt's embedding into cond and (CFG) the negative prompt's into uncond; on a
 * device the text encoder's weights are uploaded for this (unless they stayed from the last
 * request) and given back after it unless they may stay (pl_text_may_stay) */
static wf_status encode_prompts(pl_pipeline *p, const pl_request *r, gen *g, wf_err *err) {
    wk_arena arena;
    memset(&arena, 0, sizeof arena);
    size_t bytes = 0, need = 0;
    wf_status st = WF_OK;
    const bool dev = p->be->device != WK_DEV_CPU;
    if (dev && !p->t5->dev.be) WF_TRY(t5_upload(p->t5, p->be, err));
    WF_TRY(t5_arena_bytes(p->t5, g->L, &bytes, err));
    WF_TRY(wk_arena_init_on(&arena, p->be, "umt5 activations", bytes, err));
    if ((st = pl_encode(p, &arena, r->prompt, g->L, g->cond, err))) {
        wf_err_prefix(err, "prompt: ");
        goto out;
    }
    if (g->cfg && (st = pl_encode(p, &arena, r->negative_prompt ? r->negative_prompt : "", g->L,
                                  g->uncond, err)))
        wf_err_prefix(err, "negative prompt: ");
out:
    wk_arena_free(&arena);
    if (dev && (st || later_arena_bytes(p, g, &need, err) || !pl_text_may_stay(p, need)))
        t5_unload(p->t5); /* staged */
    return st;
}

/* A view of backend memory as an f32 tensor [d0, d1]. */
static wk_tensor on_be(const wk_backend *be, float *p, int64_t d0, int64_t d1) {
    wk_tensor t = wk_tensor_2d(WK_F32, p, d0, d1);
    t.device = be->device;
    return t;
}

/* One denoising step i with expert m at timestep t: v = m(x) (CFG: vu + g (v - vu)), then the
 * sampler's update of x and the finiteness check, all in the backend's memory. */
static wf_status denoise_step(pl_pipeline *p, const dit_model *m, wk_arena *arena,
                              const dit_shape *ds, smp_sampler *smp, gen *g, float t, double gs,
                              int64_t i, wf_err *err) {
    wf_status st = WF_OK;
    wk_backend *be = p->be;
    const int64_t n = (int64_t)g->n;
    wk_tensor x = on_be(be, g->x, 1, n), v = on_be(be, g->v, 1, n);
    wk_tensor c = on_be(be, g->cond_d, g->L, g->D);
    WF_TRY(dit_forward_on(m, be, arena, ds, NULL, &x, &t, &c, &v, NULL, NULL, err));
    if (g->cfg) {
        wk_tensor vu = on_be(be, g->vu, 1, n), u = on_be(be, g->uncond_d, g->L, g->D);
        WF_TRY(dit_forward_on(m, be, arena, ds, NULL, &x, &t, &u, &vu, NULL, NULL, err));
    }
    st = pl_step_update(be, smp, g->x, g->v, g->v, g->cfg ? g->vu : NULL, (float)gs, g->n, i, err);
out:
    return st;
}

/* the loop: every step with the expert its timestep selects, on one arena sized for both */
static wf_status denoise(pl_pipeline *p, const pl_request *r, smp_sampler *smp, gen *g,
                         wf_err *err) {
    const double g2 = isnan(r->guidance_2) ? r->guidance : r->guidance_2;
    dit_shape ds = {g->T, g->h, g->w, g->L, false};
    wk_arena arena;
    memset(&arena, 0, sizeof arena);
    size_t bytes = 0;
    wf_status st = WF_OK;
    for (int k = 0; k < 2; k++) {
        if (!p->dit[k]) continue;
        size_t b = 0;
        WF_TRY(dit_arena_bytes(p->dit[k], p->be, &ds, 1, &b, err));
        if (b > bytes) bytes = b;
    }
    WF_TRY(wk_arena_init_on(&arena, p->be, "dit activations", bytes, err));
    WF_TRY(wk_timing_enable(p->be, true, err)); /* each step's time by op category */
    double t0 = now_s();
    for (int64_t i = r->start_step; i < r->steps; i++) {
        double ts = now_s();
        float t = smp->solver == SMP_EULER ? smp->timesteps_f[i] : (float)smp->timesteps[i];
        int e = pl_expert_of(p, r, (double)t);
        if (!p->dit[e]) {
            st = wf_fail(err, WF_EUNSUPPORTED, "step %lld/%lld needs %s, which this pipeline did "
                         "not load (a stage world of the other expert): it must start from a "
                         "checkpoint past the switch", (long long)(i + 1), (long long)r->steps,
                         e ? "transformer_2" : "transformer");
            goto out;
        }
        double gs = e == 0 ? r->guidance : g2;
        if ((st = denoise_step(p, p->dit[e], &arena, &ds, smp, g, t, gs, i, err))) {
            wf_err_prefix(err, "step %lld/%lld (%s): ", (long long)(i + 1), (long long)r->steps,
                          e ? "transformer_2" : "transformer");
            goto out;
        }
        if (r->expert_out) r->expert_out[i] = e;
        double ops[WK_T_NCATS] = {0};
        if ((st = wk_timing_take(p->be, ops, err))) goto out;
        if (r->progress) {
            double tn = now_s();
            pl_progress pr = {0, 0, wall_s(), i, r->steps, e, (double)t, g->cfg ? gs : 1.0,
                              tn - ts, tn - t0, 0, 0, {0}, {0}, 0, 0, 0, 0, r->start_step};
            memcpy(pr.op_seconds, ops, sizeof ops);
            pl_progress_memory(p->be, &pr);
            r->progress(r->progress_ctx, &pr);
        }
        const bool stop = r->stop && *r->stop;
        if (pl_checkpoint_due(r, i + 1, stop) &&
            (st = pl_checkpoint_now(p->be, r, smp, g->x, g->xh, g->state, g->n, i + 1, err)))
            goto out;
        if (stop) {
            st = wf_fail(err, WF_ESTOPPED, "stopped after step %lld of %lld on request%s",
                         (long long)(i + 1), (long long)r->steps,
                         r->checkpoint ? " (checkpointed)" : " (no checkpoint)");
            goto out;
        }
    }
out:
    wk_timing_enable(p->be, false, NULL);
    wk_arena_free(&arena);
    return st;
}

/* decode: the host latents xh, de-normalised in place, to the request's video and frame
 * callback */
static wf_status decode(pl_pipeline *p, const pl_request *r, gen *g, wf_err *err) {
    wk_arena arena;
    memset(&arena, 0, sizeof arena);
    size_t bytes = 0;
    wf_status st = WF_OK;
    vae_latents_denormalize(&p->vae->cfg, g->xh, g->T * g->h * g->w);
    vae_opts vo = vae_opts_default();
    WF_TRY(vae_decode_arena_bytes(p->vae, g->T, g->h, g->w, &vo, &bytes, err));
    WF_TRY(wk_arena_init_on(&arena, p->be, "vae activations", bytes, err));
    st = vae_decode(p->vae, p->be, &arena, &vo, g->xh, g->T, g->h, g->w, r->video_out,
                    r->on_frames, r->frames_ctx, NULL, NULL, err);
    if (st) wf_err_prefix(err, "decoding: ");
out:
    wk_arena_free(&arena);
    return st;
}

/* The generation's buffers: host embeddings and latents, backend latents, velocities and
 * embeddings (freed by gen_free). */
static wf_status gen_alloc(pl_pipeline *p, gen *g, wf_err *err) {
    const size_t tb = (size_t)(g->L * g->D) * sizeof(float), nb = g->n * sizeof(float);
    g->cond = malloc(tb);
    g->uncond = g->cfg ? malloc(tb) : NULL;
    g->xh = malloc(nb);
    if (!g->cond || !g->xh || (g->cfg && !g->uncond))
        return wf_fail(err, WF_ENOMEM, "out of memory for latents and text embeddings");
    struct {
        float **p;
        size_t bytes;
    } dev[5] = {{&g->x, nb}, {&g->v, nb}, {&g->cond_d, tb}, {&g->vu, nb}, {&g->uncond_d, tb}};
    for (int k = 0; k < (g->cfg ? 5 : 3); k++) {
        wf_status st = wk_backend_alloc(p->be, dev[k].bytes, (void **)dev[k].p, err);
        if (st) {
            wf_err_prefix(err, "latents and text embeddings: ");
            return st;
        }
    }
    return WF_OK;
}

static void gen_free(pl_pipeline *p, gen *g) {
    free(g->state);
    free(g->cond);
    free(g->uncond);
    free(g->xh);
    float *dev[5] = {g->x, g->v, g->vu, g->cond_d, g->uncond_d};
    for (int k = 0; k < 5; k++) wk_backend_free(p->be, dev[k]);
}

wf_status pl_generate(pl_pipeline *p, const pl_request *r, wf_err *err) {
    int64_t shape[4];
    wf_status st = pl_check_request(p, r, shape, err);
    if (!st) st = pl_check_resume(r, err);
    if (st) return st;
    if (!p->t5 || !p->vae || (!p->dit[0] && !p->dit[1]))
        return wf_fail(err, WF_EINVAL, "pl_generate needs the text encoder, the VAE and an expert "
                       "loaded");
    gen g = {.T = shape[1],
             .h = shape[2],
             .w = shape[3],
             .L = r->max_sequence_length,
             .D = p->t5->cfg.d_model,
             .n = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]),
             .cfg = r->guidance > 1.0};
    const size_t tb = (size_t)(g.L * g.D) * sizeof(float), nb = g.n * sizeof(float);
    smp_sampler *smp = NULL;
    WF_TRY(gen_alloc(p, &g, err));
    WF_TRY(encode_prompts(p, r, &g, err));
    WF_TRY(wk_upload_bytes(p->be, g.cond_d, g.cond, tb, err));
    if (g.cfg) WF_TRY(wk_upload_bytes(p->be, g.uncond_d, g.uncond, tb, err));

    /* sampler and latents */
    smp_options so;
    smp_options_default(&so);
    so.steps = r->steps;
    so.shift = r->shift;
    so.solver = r->sampler;
    so.be = p->be;
    WF_TRY(smp_create(&smp, &p->cfg->scheduler, &so, g.n, err));
    WF_TRY(pl_resume_load(r, smp, err));
    if (r->checkpoint && !(g.state = malloc(smp_state_bytes(smp))))
        WF_TRY(wf_fail(err, WF_ENOMEM, "out of memory for the checkpoint's sampler state"));
    if (r->latents) memcpy(g.xh, r->latents, nb);
    else pl_noise(r->seed, g.xh, g.n);
    WF_TRY(wk_upload_bytes(p->be, g.x, g.xh, nb, err));

    WF_TRY(denoise(p, r, smp, &g, err));
    WF_TRY(wk_download_bytes(p->be, g.xh, g.x, nb, err));
    if (r->latents_out) memcpy(r->latents_out, g.xh, nb);
    if (!r->skip_decode) st = decode(p, r, &g, err);
out:
    smp_free(&smp);
    gen_free(p, &g);
    return st;
}
