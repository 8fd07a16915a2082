/* pl_plan.c: a loaded (or preset) pipeline's configs turned into the planner's plain numbers
 * (see pl_plan.h). The planner itself (coordinator/planner/plan.h) knows no model: this file is
 * where the DiT, umT5 and VAE configs, the pipeline's request rules and the sampler's timesteps
 * become pn_inputs.
 */
#include "pl_plan.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sampler.h"

/* Parameters of one WanTransformer3DModel (wan_spec.md §1.7: every weight and bias). */
static double expert_params(const dfs_transformer_config *t) {
    const double D = (double)t->dim, FF = (double)t->ffn_dim;
    const double P = (double)(t->patch_size[0] * t->patch_size[1] * t->patch_size[2]);
    double top = D * (double)t->in_channels * P + D                  /* patch_embedding */
                 + (double)t->freq_dim * D + D + D * D + D          /* time_embedder */
                 + 6 * D * D + 6 * D                                /* time_proj */
                 + (double)t->text_dim * D + D + D * D + D          /* text_embedder */
                 + 2 * D                                            /* scale_shift_table */
                 + (double)t->out_channels * P * (D + 1);           /* proj_out */
    double block = 8 * (D * D + D)                                  /* attn1, attn2 q k v out */
                   + 4 * D + 2 * D + 6 * D                          /* norm_q/k x2, norm2, table */
                   + 2 * FF * D + FF + D;                           /* ffn */
    if (t->added_kv_proj_dim) block += 2 * ((double)t->added_kv_proj_dim * D + D) + D;
    return top + (double)t->num_layers * block;
}

/* Parameters of the umT5 encoder: shared embedding, per layer q k v o, gated FFN (wi_0, wi_1, wo),
 * two norms and a relative-position table (umT5: one per layer), the final norm. */
static double t5_params(const dfs_umt5_config *c) {
    const double d = (double)c->d_model, inner = (double)(c->num_heads * c->d_kv);
    double layer = 4 * d * inner + 3 * d * (double)c->d_ff + 2 * d +
                   (double)(c->relative_attention_num_buckets * c->num_heads);
    return (double)c->vocab_size * d + (double)c->num_layers * layer + d;
}

static void base_name(const char *root, char *out, size_t cap) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", root ? root : "?");
    size_t n = strlen(tmp);
    while (n > 1 && tmp[n - 1] == '/') tmp[--n] = 0;
    const char *s = strrchr(tmp, '/');
    const char *b = s && s[1] ? s + 1 : tmp;
    size_t k = strlen(b) < cap ? strlen(b) : cap - 1; /* truncate quietly: a name for messages */
    memcpy(out, b, k);
    out[k] = 0;
}

/* What the planner needs of the model: the DiT's shape, parameter counts, the umT5 and VAE sizes. */
static pn_model model_numbers(const dfs_pipeline *p) {
    const dfs_transformer_config *t = &p->transformer;
    const dfs_vae_config *v = &p->vae;
    pn_model m;
    memset(&m, 0, sizeof m);
    base_name(p->root, m.name, sizeof m.name);
    m.heads = t->num_attention_heads;
    m.head_dim = t->attention_head_dim;
    m.dim = t->dim;
    m.ffn_dim = t->ffn_dim;
    m.layers = t->num_layers;
    m.text_dim = t->text_dim;
    m.freq_dim = t->freq_dim;
    m.in_channels = t->in_channels;
    m.out_channels = t->out_channels;
    memcpy(m.patch, t->patch_size, sizeof m.patch);
    m.has_expert_2 = p->has_transformer_2;
    m.expert_params = expert_params(t);
    if (p->has_transformer_2) { /* both experts have one shape in every released model; be safe */
        double p2 = expert_params(&p->transformer_2);
        if (p2 > m.expert_params) m.expert_params = p2;
    }
    m.t5_dim = p->text_encoder.d_model;
    m.t5_ff = p->text_encoder.d_ff;
    m.t5_layers = p->text_encoder.num_layers;
    m.t5_heads = p->text_encoder.num_heads;
    m.t5_inner = p->text_encoder.num_heads * p->text_encoder.d_kv;
    m.t5_vocab = p->text_encoder.vocab_size;
    m.t5_params = t5_params(&p->text_encoder);
    m.vae_s = v->scale_factor_spatial;
    m.vae_st = v->scale_factor_temporal;
    m.vae_patch = v->patch_size > 1 ? v->patch_size : 1;
    /* Stated for the Wan2.1 VAE (base 96): 1.27e8 parameters, 8.71e6 decoder FLOPs per output
     * pixel (bench_vae's count: 5136.8 GFLOP for 9 frames of 256x256). Other widths scale as
     * width^2 (weights, FLOPs) and width (activations); a patchified VAE decodes at 1/p^2 of the
     * pixels. An approximation for VAEs other than Wan2.1's. */
    double wr = (double)(v->decoder_base_dim ? v->decoder_base_dim : v->base_dim) / 96.0;
    double pp = (double)(m.vae_patch * m.vae_patch);
    m.vae_params = 1.27e8 * wr * wr;
    m.vae_flop_per_pixel = 8.71e6 * wr * wr / pp;
    m.vae_mem_scale = wr / pp;
    return m;
}

/* The steps that run transformer (t >= boundary_t), counted over the sampler's timesteps as
 * pl_generate chooses the expert; also the sampler's history length and shift. */
static wf_status expert_steps(const dfs_pipeline *p, const pn_request *r, double boundary_t,
                              int64_t *high, int *order, double *shift, wf_err *err) {
    smp_options so;
    smp_options_default(&so);
    so.steps = r->steps;
    so.shift = r->shift;
    so.solver = r->sampler;
    smp_sampler *smp = NULL;
    wf_status st = smp_create(&smp, &p->scheduler, &so, 1, err);
    if (st) return st;
    int64_t hi = 0;
    for (int64_t i = 0; i < r->steps; i++) {
        float tt = smp->solver == SMP_EULER ? smp->timesteps_f[i] : (float)smp->timesteps[i];
        if (isnan(boundary_t) || (double)tt >= boundary_t) hi++;
    }
    *high = hi;
    *order = smp->order;
    *shift = smp->shift;
    smp_free(&smp);
    return WF_OK;
}

wf_status pl_plan_inputs(pn_inputs *in, const dfs_pipeline *p, const pn_request *r, wf_err *err) {
    pn_model m = model_numbers(p);
    /* the request, checked by the pipeline's own rules */
    pl_request pr;
    pl_request_default(&pr);
    pr.prompt = "";
    pr.width = r->width, pr.height = r->height, pr.frames = r->frames, pr.steps = r->steps;
    pr.guidance = r->guidance, pr.boundary = r->boundary, pr.shift = r->shift;
    pr.sampler = r->sampler, pr.max_sequence_length = r->text_len;
    int64_t shape[4];
    wf_status st = pl_check_request_cfg(p, &pr, shape, err);
    if (st) return st;
    double br = isnan(r->boundary) ? p->boundary_ratio : r->boundary;
    double boundary_t = isnan(br) ? NAN : br * (double)p->scheduler.num_train_timesteps;
    int64_t hi = 0;
    double shift = 0;
    if ((st = expert_steps(p, r, boundary_t, &hi, &m.sampler_order, &shift, err))) return st;

    in->shift = shift;
    in->model = m;
    in->width = r->width;
    in->height = r->height;
    in->frames = r->frames;
    in->T = (r->frames - 1) / m.vae_st + 1;
    in->h = r->height / m.vae_s;
    in->w = r->width / m.vae_s;
    in->tokens = (in->T / m.patch[0]) * (in->h / m.patch[1]) * (in->w / m.patch[2]);
    in->text_len = r->text_len;
    in->steps = r->steps;
    in->steps_high = hi;
    in->steps_low = r->steps - hi;
    in->boundary_t = boundary_t;
    in->cfg = r->guidance > 1.0;
    in->two_experts = p->has_transformer_2 && !isnan(boundary_t);
    return WF_OK;
}

/* pn_stage_bytes_fn over pl_plan_exact */
static double exact_stage(void *ctx, const pn_inputs *in, pn_stage stage, int degree, int index) {
    const pl_plan_exact *x = ctx;
    size_t b = 0;
    wf_err e;
    if (stage == PN_STAGE_TEXT) {
        t5_model m;
        memset(&m, 0, sizeof m);
        m.cfg = x->cfg->text_encoder;
        m.inner = m.cfg.num_heads * m.cfg.d_kv;
        return t5_arena_bytes(&m, in->text_len, &b, &e) ? -1 : (double)b;
    }
    if (stage == PN_STAGE_DIT) {
        dit_model m;
        memset(&m, 0, sizeof m);
        m.cfg = index == 1 && x->cfg->has_transformer_2 ? x->cfg->transformer_2
                                                        : x->cfg->transformer;
        wk_backend be; /* only its row cut matters to the sizes */
        memset(&be, 0, sizeof be);
        be.row_quantum = (int)x->row_quantum;
        dit_shape ds = {in->T, in->h, in->w, in->text_len, false};
        return dit_arena_bytes(&m, &be, &ds, degree, &b, &e) ? -1 : (double)b;
    }
    if (!x->vae) return -1;
    vae_opts vo = vae_opts_default();
    return vae_decode_dist_arena_bytes(x->vae, in->T, in->h, in->w, &vo, degree, index, &b, &e)
               ? -1
               : (double)b;
}

void pl_plan_use_exact(pn_inputs *in, pl_plan_exact *x) {
    in->stage_bytes = exact_stage;
    in->stage_ctx = x;
}

void pl_preset_a14b_config(dfs_pipeline *out) {
    static char root[] = "Wan2.2-T2V-A14B (preset)";
    dfs_pipeline p;
    memset(&p, 0, sizeof p);
    p.root = root;
    snprintf(p.class_name, sizeof p.class_name, "WanPipeline");
    dfs_transformer_config *t = &p.transformer;
    t->patch_size[0] = 1;
    t->patch_size[1] = t->patch_size[2] = 2;
    t->num_attention_heads = 40;
    t->attention_head_dim = 128;
    t->dim = 5120;
    t->in_channels = t->out_channels = 16;
    t->text_dim = 4096;
    t->freq_dim = 256;
    t->ffn_dim = 13824;
    t->num_layers = 40;
    t->cross_attn_norm = true;
    snprintf(t->qk_norm, sizeof t->qk_norm, "rms_norm_across_heads");
    t->eps = 1e-6;
    t->rope_max_seq_len = 1024;
    p.has_transformer_2 = true;
    p.transformer_2 = *t;
    dfs_vae_config *v = &p.vae;
    v->base_dim = v->decoder_base_dim = 96;
    v->z_dim = 16;
    v->num_res_blocks = 2;
    const int64_t dm[4] = {1, 2, 4, 4};
    memcpy(v->dim_mult, dm, sizeof dm);
    v->n_dim_mult = 4;
    v->temperal_downsample[1] = v->temperal_downsample[2] = true;
    v->n_temperal_downsample = 3;
    v->in_channels = v->out_channels = 3;
    v->scale_factor_temporal = 4;
    v->scale_factor_spatial = 8;
    dfs_umt5_config *c = &p.text_encoder;
    snprintf(c->model_type, sizeof c->model_type, "umt5");
    c->vocab_size = 256384;
    c->d_model = 4096;
    c->d_kv = 64;
    c->d_ff = 10240;
    c->num_layers = 24;
    c->num_heads = 64;
    c->relative_attention_num_buckets = 32;
    c->relative_attention_max_distance = 128;
    c->layer_norm_epsilon = 1e-6;
    snprintf(c->feed_forward_proj, sizeof c->feed_forward_proj, "gated-gelu");
    c->eos_token_id = 1;
    dfs_scheduler_config *sc = &p.scheduler;
    sc->kind = DFS_SCHED_UNIPC;
    snprintf(sc->class_name, sizeof sc->class_name, "UniPCMultistepScheduler");
    sc->num_train_timesteps = 1000;
    snprintf(sc->prediction_type, sizeof sc->prediction_type, "flow_prediction");
    sc->use_flow_sigmas = true;
    sc->flow_shift = 3.0;
    sc->shift = 1.0;
    sc->solver_order = 2;
    snprintf(sc->solver_type, sizeof sc->solver_type, "bh2");
    sc->lower_order_final = true;
    sc->predict_x0 = true;
    snprintf(sc->final_sigmas_type, sizeof sc->final_sigmas_type, "zero");
    p.boundary_ratio = 0.875;
    *out = p;
}

wf_status pl_plan_preset_a14b(pn_inputs *in, const pn_request *r, wf_err *err) {
    dfs_pipeline p;
    pl_preset_a14b_config(&p);
    return pl_plan_inputs(in, &p, r, err);
}

