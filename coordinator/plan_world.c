/* plan_world.c: the coordinator's layout for a job on a world (see plan_world.h). */
#include "plan_world.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define BIG 1000000000ull /* no dimension of a real model comes near it */

/* a count field: in [1, hi] */
#define COUNT(f, hi)                                                                              \
    do {                                                                                          \
        if (pm->f < 1 || pm->f > (hi))                                                            \
            return wf_fail(err, WF_EINVAL, "PlanModel." #f " %llu is outside [1, %llu]",          \
                           (unsigned long long)pm->f, (unsigned long long)(hi));                  \
    } while (0)
/* a real field: finite and in (0, hi] */
#define REAL(f, hi)                                                                               \
    do {                                                                                          \
        if (!(pm->f > 0 && pm->f <= (hi)))                                                        \
            return wf_fail(err, WF_EINVAL, "PlanModel." #f " %g is outside (0, %g]", pm->f,       \
                           (double)(hi));                                                         \
    } while (0)

wf_status cp_model_from(const Wanfarm__PlanModel *pm, cp_world_model *out, wf_err *err) {
    memset(out, 0, sizeof *out);
    COUNT(heads, 4096);
    COUNT(head_dim, 65536);
    COUNT(dim, BIG);
    COUNT(ffn_dim, BIG);
    COUNT(layers, 100000);
    COUNT(text_dim, BIG);
    COUNT(freq_dim, BIG);
    COUNT(in_channels, 65536);
    COUNT(out_channels, 65536);
    COUNT(t5_dim, BIG);
    COUNT(t5_ff, BIG);
    COUNT(t5_layers, 100000);
    COUNT(t5_inner, BIG);
    COUNT(t5_heads, 4096);
    COUNT(t5_vocab, BIG);
    COUNT(vae_s, 1024);
    COUNT(vae_st, 1024);
    COUNT(vae_patch, 64);
    COUNT(row_quantum, 65536);
    if (pm->n_patch != 3 || !pm->patch[0] || !pm->patch[1] || !pm->patch[2] ||
        pm->patch[0] > 64 || pm->patch[1] > 64 || pm->patch[2] > 64)
        return wf_fail(err, WF_EINVAL, "PlanModel.patch must be 3 values in [1, 64]");
    if (pm->sampler_order > 16)
        return wf_fail(err, WF_EINVAL, "PlanModel.sampler_order %u is more than 16", pm->sampler_order);
    REAL(expert_params, 1e13);
    REAL(t5_params, 1e13);
    REAL(vae_params, 1e13);
    REAL(vae_flop_per_pixel, 1e15);
    REAL(vae_mem_scale, 1e6);
    if (pm->has_cpu_threads && !(pm->cpu_threads >= 0 && pm->cpu_threads <= 65536))
        return wf_fail(err, WF_EINVAL, "PlanModel.cpu_threads %g is outside [0, 65536]",
                       pm->cpu_threads);
    pn_model *m = &out->model;
    snprintf(m->name, sizeof m->name, "a world's model");
    m->heads = (int64_t)pm->heads, m->head_dim = (int64_t)pm->head_dim, m->dim = (int64_t)pm->dim;
    m->ffn_dim = (int64_t)pm->ffn_dim, m->layers = (int64_t)pm->layers;
    m->text_dim = (int64_t)pm->text_dim, m->freq_dim = (int64_t)pm->freq_dim;
    m->in_channels = (int64_t)pm->in_channels, m->out_channels = (int64_t)pm->out_channels;
    for (int k = 0; k < 3; k++) m->patch[k] = (int64_t)pm->patch[k];
    m->has_expert_2 = pm->has_expert_2;
    m->expert_params = pm->expert_params;
    m->t5_dim = (int64_t)pm->t5_dim, m->t5_ff = (int64_t)pm->t5_ff;
    m->t5_layers = (int64_t)pm->t5_layers, m->t5_inner = (int64_t)pm->t5_inner;
    m->t5_heads = (int64_t)pm->t5_heads, m->t5_vocab = (int64_t)pm->t5_vocab;
    m->t5_params = pm->t5_params;
    m->vae_s = (int64_t)pm->vae_s, m->vae_st = (int64_t)pm->vae_st;
    m->vae_patch = (int64_t)pm->vae_patch;
    m->vae_params = pm->vae_params, m->vae_flop_per_pixel = pm->vae_flop_per_pixel;
    m->vae_mem_scale = pm->vae_mem_scale;
    m->sampler_order = (int)pm->sampler_order;
    out->row_quantum = (int64_t)pm->row_quantum;
    out->cpu_threads = pm->has_cpu_threads ? pm->cpu_threads : 0;
    return WF_OK;
}

wf_status cp_layout(const cp_world_model *wm, int ranks, double mem, const Wanfarm__JobSpec *s,
                    ly_layout *out, char *desc, size_t cap, wf_err *err) {
    const pn_model *m = &wm->model;
    pn_inputs in;
    pn_inputs_default(&in);
    in.world = ranks;
    in.ranks_per_node = ranks;
    in.model = *m;
    /* the spec with generate's defaults */
    in.width = s->has_width ? s->width : 832;
    in.height = s->has_height ? s->height : 480;
    in.frames = s->has_frames ? s->frames : 81;
    in.steps = s->has_steps ? s->steps : 50;
    in.text_len = s->has_max_sequence_length ? s->max_sequence_length : 512;
    const double guidance = s->has_guidance ? s->guidance : 5.0;
    if (in.width % (m->vae_s * m->patch[2]) || in.height % (m->vae_s * m->patch[1]) ||
        ((in.frames - 1) / m->vae_st + 1) % m->patch[0])
        return wf_fail(err, WF_EINVAL, "%lldx%lld, %lld frames do not fit the model's patches",
                       (long long)in.width, (long long)in.height, (long long)in.frames);
    in.T = (in.frames - 1) / m->vae_st + 1;
    in.h = in.height / m->vae_s;
    in.w = in.width / m->vae_s;
    in.tokens = (in.T / m->patch[0]) * (in.h / m->patch[1]) * (in.w / m->patch[2]);
    in.row_quantum = wm->row_quantum;
    /* shared placement: every step on the same ranks with experts of one shape, so the split
     * between them does not change the cost */
    in.steps_high = in.steps, in.steps_low = 0;
    in.boundary_t = NAN;
    in.cfg = guidance > 1.0;
    in.two_experts = false;
    in.queue = 1;
    if (wm->cpu_threads > 0) pn_cost_cpu(&in.cost, wm->cpu_threads);
    else pn_cost_default(&in.cost);
    if (mem > 0) in.cost.mem_per_rank = mem;
    in.placement = LY_SHARED;
    in.replicas = 1;
    in.allow_idle = false;
    pn_plan plan;
    wf_status st = pn_choose(&in, &plan, err);
    if (st) return st;
    *out = plan.layout;
    ly_format(out, desc, cap);
    return WF_OK;
}
