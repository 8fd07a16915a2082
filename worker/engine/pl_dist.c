/* pl_dist.c: distributed text-to-video (see pl_dist.h). */
#include "pl_dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arena.h"
#include "watchdog.h"

#define TAG_HANDOFF 101

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

unsigned pd_parts(const ly_layout *l, int rank) {
    ly_role r = ly_role_of(l, rank);
    unsigned parts = 0;
    if (r.group_rank == 0 && r.group == 0) parts |= PL_PART_TEXT; /* the high/shared leader */
    if (l->placement == LY_SHARED) parts |= PL_PART_EXPERT0 | PL_PART_EXPERT1;
    else parts |= r.group == 0 ? PL_PART_EXPERT0 : PL_PART_EXPERT1;
    if (r.decodes) parts |= PL_PART_VAE;
    return parts;
}

/* On a device backend the communicators that carry device data (the Ulysses all-to-alls and
 * the head all-gather, the CFG pair's velocities, the VAE's halos, keys/values and frame bands:
 * all in its arena) switch to NCCL on the backend's queue (or, when
 * their ranks share a GPU, which NCCL refuses, to MPI through host memory: cm_enable_device); the
 * group and the hand-off keep MPI for host messages (the text embeddings, the sampler state).
 * A communicator of one rank never exchanges anything and stays as it is. */
static wf_status enable_device_comms(pd_world *d, wf_err *err) {
    wk_backend *be = d->p->be;
    if (be->device == WK_DEV_CPU) return WF_OK;
    cm_comm *data[5] = {d->sp, d->pair, d->vae, d->bridge_x, d->group_x};
    for (int k = 0; k < 5; k++) {
        if (!data[k] || data[k]->size < 2) continue;
        wf_status st = cm_enable_device(data[k], be->ordinal, be->queue, err);
        if (st) return st;
    }
    return WF_OK;
}

/* Every rank of the world computes on a device, or none does (the communicators a rank makes
 * depend on it): the same answer on every rank. Collective over world. be NULL: the CPU. */
static wf_status same_backend_kind(cm_comm *world, const wk_backend *be, wf_err *err) {
    int64_t lo = 0, hi = 0;
    wf_status st = cm_range(world, be && be->device != WK_DEV_CPU, &lo, &hi, err);
    if (st) return st;
    if (lo != hi)
        return wf_fail(err, WF_EINVAL,
                       "some ranks compute on a GPU and others on the CPU: a world runs on one "
                       "kind of device (--device cuda on every rank, or --device cpu)");
    return WF_OK;
}

/* WANFARM_OVERLAP=1: the Ulysses all-to-alls overlap the projections (cm_ialltoall, sp->overlap)
 * only when every rank asks for it (a nonblocking collective never matches a blocking one).
 * Collective over world. */
static wf_status agree_overlap(cm_comm *world, cm_comm *sp, wf_err *err) {
    const char *v = getenv("WANFARM_OVERLAP");
    int64_t all = 0;
    wf_status st = cm_range(world, v && !strcmp(v, "1"), &all, NULL, err);
    sp->overlap = !st && all != 0;
    return st;
}

wf_status pd_open(pd_world **out, cm_comm *world, const ly_layout *l, const char *root,
                  wk_backend *be, int nthreads, wf_err *err) {
    return pd_open_experts(out, world, l, root, be, nthreads, PL_PART_EXPERT0 | PL_PART_EXPERT1,
                           err);
}

wf_status pd_open_experts(pd_world **out, cm_comm *world, const ly_layout *l, const char *root,
                          wk_backend *be, int nthreads, unsigned experts, wf_err *err) {
    *out = NULL;
    if (!(experts & (PL_PART_EXPERT0 | PL_PART_EXPERT1)))
        return wf_fail(err, WF_EINVAL, "pd_open_experts: no expert to load");
    if (ly_ranks(l) != world->size) {
        char f[128];
        ly_format(l, f, sizeof f);
        return wf_fail(err, WF_EINVAL, "the layout (%s) uses %d ranks but the world has %d: %s",
                       f, ly_ranks(l), world->size,
                       ly_ranks(l) > world->size ? "start more ranks or lower the degrees"
                                                 : "too many ranks for this layout; raise the "
                                                   "degrees or start fewer ranks");
    }
    pd_world *d = calloc(1, sizeof *d);
    if (!d) return wf_fail(err, WF_ENOMEM, "pd_open: out of memory");
    d->world = world;
    d->layout = *l;
    d->role = ly_role_of(l, world->rank);
    const ly_role *r = &d->role;
    const int me = world->rank;
    wf_status st = WF_OK;
    /* every rank makes every split, in this order */
    WF_TRY(cm_split(world, r->group, me, r->group ? "low-noise group" : "group", &d->group, err));
    WF_TRY(cm_split(world, r->group * 2 + r->half, me, "ulysses", &d->sp, err));
    if (l->cfg_parallel)
        WF_TRY(cm_split(world, r->group * 65536 + r->sp_rank, me, "cfg pair", &d->pair, err));
    WF_TRY(cm_split(world, r->decodes ? 0 : -1, me, "vae", &d->vae, err));
    if (l->placement == LY_SPLIT)
        WF_TRY(cm_split(world, r->group_rank == 0 ? 0 : -1, me, "hand-off", &d->bridge, err));
    /* the hand-off's latents travel in device memory: twins of the bridge and of the low-noise
     * group that carry device buffers (on CPU ranks the MPI ones carry them) */
    WF_TRY(same_backend_kind(world, be, err));
    if (l->placement == LY_SPLIT && be && be->device != WK_DEV_CPU) {
        WF_TRY(cm_split(world, r->group_rank == 0 ? 0 : -1, me, "hand-off latents", &d->bridge_x,
                        err));
        WF_TRY(cm_split(world, r->group, me, "group latents", &d->group_x, err));
    }
    d->parts = pd_parts(l, me) & (experts | ~(unsigned)(PL_PART_EXPERT0 | PL_PART_EXPERT1));
    WF_TRY(pl_open_parts(&d->p, root, be, nthreads, d->parts, err));
    WF_TRY(enable_device_comms(d, err));
    WF_TRY(agree_overlap(world, d->sp, err));
    *out = d;
    d = NULL;
out:
    pd_close(&d);
    return st;
}

void pd_close(pd_world **pd) {
    if (!pd || !*pd) return;
    pd_world *d = *pd;
    pl_close(&d->p);
    cm_free(&d->group_x);
    cm_free(&d->bridge_x);
    cm_free(&d->bridge);
    cm_free(&d->vae);
    cm_free(&d->pair);
    cm_free(&d->sp);
    cm_free(&d->group);
    free(d);
    *pd = NULL;
}

wf_status pd_limits(const pl_pipeline *p, const pl_request *r, ly_limits *lim, wf_err *err) {
    int64_t shape[4];
    wf_status st = pl_check_request(p, r, shape, err);
    if (st) return st;
    const dfs_pipeline *c = p->cfg;
    const int64_t *pt = c->transformer.patch_size;
    lim->heads = c->transformer.num_attention_heads;
    if (c->has_transformer_2 && c->transformer_2.num_attention_heads != lim->heads)
        return wf_fail(err, WF_EUNSUPPORTED,
                       "the experts have different head counts (%lld, %lld): not supported",
                       (long long)lim->heads, (long long)c->transformer_2.num_attention_heads);
    lim->tokens = shape[1] / pt[0] * (shape[2] / pt[1]) * (shape[3] / pt[2]);
    lim->latent_h = shape[2];
    double br = isnan(r->boundary) ? c->boundary_ratio : r->boundary;
    lim->two_experts = c->has_transformer_2 && !isnan(br);
    lim->cfg = r->guidance > 1.0;
    return WF_OK;
}

wf_status pd_check(const pd_world *d, const pl_request *reqs, int64_t njobs, wf_err *err) {
    if (njobs < 1) return wf_fail(err, WF_EINVAL, "no requests to run");
    for (int64_t j = 0; j < njobs; j++) {
        ly_limits lim;
        const pl_request *r = &reqs[j];
        wf_status st = pd_limits(d->p, r, &lim, err);
        if (!st) st = ly_check(&d->layout, d->world->size, &lim, err);
        if (!st) st = pl_check_resume(r, err);
        if (!st && d->layout.placement == LY_SPLIT &&
            (r->start_step > 0 || r->checkpoint || r->stop))
            st = wf_fail(err, WF_EUNSUPPORTED,
                         "checkpoints, resume and stopping on a signal work with placement shared "
                         "only for now (a split job lives in two groups): use --placement shared");
        if (st) {
            if (njobs > 1) wf_err_prefix(err, "request %lld: ", (long long)j);
            return st;
        }
    }
    return WF_OK;
}

/* ---- one request on one group ---- */

typedef struct job {
    const pl_request *r;
    int64_t index;
    int64_t C, T, h, w, L, D;
    size_t n;
    bool cfg;
    float *cond, *uncond; /* host [L, D]: as encoded and broadcast */
    float *xh;            /* host [n]: the latents where they leave or enter the backend (the
                           * initial noise, the hand-off, the decode, latents_out) */
    /* backend memory, for the whole of the request's steps on this rank: */
    float *cond_d, *uncond_d; /* [L, D] */
    float *x, *v, *vu;    /* [n]; vu: the unconditional velocity (CFG) */
    float *both;          /* [2n]: CFG parallel: both halves' velocities */
    wk_backend *be;       /* whose memory they are */
    smp_sampler *smp;
    int64_t i_switch;     /* first step of the low-noise group */
    void *state;          /* host: the sampler state of a checkpoint (group rank 0, with one) */
} job;

static void job_free(job *j) {
    free(j->cond);
    free(j->uncond);
    free(j->xh);
    if (j->be) {
        float *dev[6] = {j->cond_d, j->uncond_d, j->x, j->v, j->vu, j->both};
        for (int k = 0; k < 6; k++) wk_backend_free(j->be, dev[k]);
    }
    smp_free(&j->smp);
    free(j->state);
    memset(j, 0, sizeof *j);
}

/* A view of n floats of the job's backend memory. */
static wk_tensor on_be(const job *j, float *p, int64_t d0, int64_t d1) {
    wk_tensor t = wk_tensor_2d(WK_F32, p, d0, d1);
    t.device = j->be->device;
    return t;
}

static wf_status job_init(pd_world *d, const pl_request *r, int64_t index, job *j, wf_err *err) {
    memset(j, 0, sizeof *j);
    int64_t shape[4];
    wf_status st = pl_check_request(d->p, r, shape, err);
    if (st) return st;
    j->r = r;
    j->index = index;
    j->C = shape[0], j->T = shape[1], j->h = shape[2], j->w = shape[3];
    j->n = (size_t)(j->C * j->T * j->h * j->w);
    j->L = r->max_sequence_length;
    j->D = d->p->cfg->text_encoder.d_model;
    j->cfg = r->guidance > 1.0;
    size_t tb = (size_t)(j->L * j->D) * sizeof(float), nb = j->n * sizeof(float);
    j->cond = malloc(tb);
    j->uncond = j->cfg ? malloc(tb) : NULL;
    j->xh = malloc(nb);
    if (!j->cond || !j->xh || (j->cfg && !j->uncond))
        return wf_fail(err, WF_ENOMEM, "out of memory for the latents and text embeddings");
    j->be = d->p->be;
    struct {
        float **p;
        size_t bytes;
        bool want;
    } dev[6] = {{&j->cond_d, tb, true},     {&j->uncond_d, tb, j->cfg}, {&j->x, nb, true},
                {&j->v, nb, true},          {&j->vu, nb, j->cfg && !d->pair},
                {&j->both, 2 * nb, d->pair != NULL}};
    for (int k = 0; k < 6; k++) {
        if (!dev[k].want) continue;
        wf_status st = wk_backend_alloc(j->be, dev[k].bytes, (void **)dev[k].p, err);
        if (st) {
            wf_err_prefix(err, "latents and text embeddings: ");
            return st;
        }
    }
    smp_options so;
    smp_options_default(&so);
    so.steps = r->steps;
    so.shift = r->shift;
    so.solver = r->sampler;
    so.be = j->be;
    wf_status s2 = smp_create(&j->smp, &d->p->cfg->scheduler, &so, j->n, err);
    if (!s2 && r->checkpoint && d->group->rank == 0 &&
        !(j->state = malloc(smp_state_bytes(j->smp))))
        s2 = wf_fail(err, WF_ENOMEM, "out of memory for the checkpoint's sampler state");
    return s2;
}

/* The host embeddings into the backend's copies. */
static wf_status text_to_backend(job *j, wf_err *err) {
    const size_t tb = (size_t)(j->L * j->D) * sizeof(float);
    wf_status st = wk_upload_bytes(j->be, j->cond_d, j->cond, tb, err);
    if (!st && j->cfg) st = wk_upload_bytes(j->be, j->uncond_d, j->uncond, tb, err);
    return st;
}

/* On the text rank of a device world: whether umT5 may stay beside the largest arena the
 * request needs later on this rank (the DiT's of its experts, or its part of the decode). */
static bool text_may_stay(const pd_world *d, const job *j) {
    dit_shape ds = {j->T, j->h, j->w, j->L, false};
    size_t need = 0, b = 0;
    wf_err e;
    for (int k = 0; k < 2; k++)
        if (d->p->dit[k] && !dit_arena_bytes(d->p->dit[k], d->p->be, &ds, d->sp->size, &b, &e) &&
            b > need)
            need = b;
    vae_opts vo = vae_opts_default();
    if (d->vae && !vae_decode_dist_arena_bytes(d->p->vae, j->T, j->h, j->w, &vo, d->vae->size,
                                               d->vae->rank, &b, &e) && b > need)
        need = b;
    return pl_text_may_stay(d->p, need);
}

/* The group's rank 0 encodes (on a device the text encoder is uploaded for it and, unless it may
 * stay, given back after: staged); everyone gets the embeddings. */
static wf_status job_text(pd_world *d, job *j, wf_err *err) {
    wf_status st = WF_OK;
    const size_t tb = (size_t)(j->L * j->D) * sizeof(float);
    wk_arena arena;
    memset(&arena, 0, sizeof arena);
    const bool dev = d->p->be->device != WK_DEV_CPU;
    if (d->group->rank == 0) {
        size_t bytes = 0;
        if (dev && !d->p->t5->dev.be) WF_TRY(t5_upload(d->p->t5, d->p->be, err));
        WF_TRY(t5_arena_bytes(d->p->t5, j->L, &bytes, err));
        WF_TRY(wk_arena_init_on(&arena, d->p->be, "umt5 activations", bytes, err));
        if ((st = pl_encode(d->p, &arena, j->r->prompt, j->L, j->cond, err))) {
            wf_err_prefix(err, "prompt: ");
            goto out;
        }
        const char *neg = j->r->negative_prompt ? j->r->negative_prompt : "";
        if (j->cfg && (st = pl_encode(d->p, &arena, neg, j->L, j->uncond, err))) {
            wf_err_prefix(err, "negative prompt: ");
            goto out;
        }
        wk_arena_free(&arena); /* before the broadcast */
        if (dev && !text_may_stay(d, j)) t5_unload(d->p->t5); /* staged */
    }
    WF_TRY(cm_bcast(d->group, j->cond, tb, 0, err));
    if (j->cfg) WF_TRY(cm_bcast(d->group, j->uncond, tb, 0, err));
    WF_TRY(text_to_backend(j, err));
out:
    wk_arena_free(&arena);
    if (st && dev && d->p->t5) t5_unload(d->p->t5);
    return st;
}

static float step_timestep(const smp_sampler *s, int64_t i) {
    return s->solver == SMP_EULER ? s->timesteps_f[i] : (float)s->timesteps[i];
}

/* One denoising step i with expert e: v = model(x) (CFG: combined), then the sampler update, all
 * in the backend's memory (the exchanges too: NCCL on a device). */
static wf_status job_step(pd_world *d, job *j, wk_arena *arena, int64_t i, int e, wf_err *err) {
    wf_status st = WF_OK;
    const pl_request *r = j->r;
    const dit_model *m = d->p->dit[e];
    wk_backend *be = d->p->be;
    dit_shape ds = {j->T, j->h, j->w, j->L, false};
    float t = step_timestep(j->smp, i);
    double g2 = isnan(r->guidance_2) ? r->guidance : r->guidance_2;
    const float gf = (float)(e == 0 ? r->guidance : g2);
    const int64_t n = (int64_t)j->n;
    wk_tensor x = on_be(j, j->x, 1, n), v = on_be(j, j->v, 1, n);
    wk_tensor c = on_be(j, j->cond_d, j->L, j->D), u = on_be(j, j->uncond_d, j->L, j->D);
    if (d->pair) { /* CFG parallel: half 0 conditional, half 1 unconditional */
        WF_TRY(dit_forward_on(m, be, arena, &ds, d->sp, &x, &t, d->role.half ? &u : &c, &v, NULL,
                              NULL, err));
        WF_TRY(cm_allgather(d->pair, j->v, j->both, j->n * sizeof(float), err));
        st = pl_step_update(be, j->smp, j->x, j->v, j->both, j->both + j->n, gf, j->n, i, err);
    } else {
        WF_TRY(dit_forward_on(m, be, arena, &ds, d->sp, &x, &t, &c, &v, NULL, NULL, err));
        if (j->cfg) {
            wk_tensor vu = on_be(j, j->vu, 1, n);
            WF_TRY(dit_forward_on(m, be, arena, &ds, d->sp, &x, &t, &u, &vu, NULL, NULL, err));
        }
        st = pl_step_update(be, j->smp, j->x, j->v, j->v, j->cfg ? j->vu : NULL, gf, j->n, i,
                            err);
    }
out:
    return st;
}

/* The counters of the communicators a step uses (Ulysses group, CFG pair), summed. */
static cm_stats comm_totals(const pd_world *d) {
    cm_stats t;
    memset(&t, 0, sizeof t);
    cm_stats_add(&t, &d->sp->stats);
    if (d->pair) cm_stats_add(&t, &d->pair->stats);
    return t;
}

/* Between steps (done of them): whether to stop, agreed over the group (a signal may reach its
 * ranks at different moments), and a checkpoint when one is due, written by the group's rank 0
 * (every rank holds the same latents and sampler state) with its status agreed. */
static wf_status step_end(pd_world *d, job *j, int64_t done, bool *stop, wf_err *err) {
    const pl_request *r = j->r;
    int64_t any = 0;
    *stop = false;
    if (r->stop) {
        wf_status st = cm_range(d->group, *r->stop != 0, NULL, &any, err);
        if (st) return st;
        *stop = any != 0;
    }
    if (!pl_checkpoint_due(r, done, *stop)) return WF_OK;
    wf_status st = WF_OK;
    if (d->group->rank == 0)
        st = pl_checkpoint_now(j->be, r, j->smp, j->x, j->xh, j->state, j->n, done, err);
    return cm_agree(d->group, st, "checkpoint", err);
}

/* Steps [i0, i1) on this group, each with the expert its timestep selects (split placements give
 * each group only the steps of its own expert). */
static wf_status job_steps(pd_world *d, job *j, int64_t i0, int64_t i1, wf_err *err) {
    const pl_request *r = j->r;
    wk_arena arena;
    memset(&arena, 0, sizeof arena);
    dit_shape ds = {j->T, j->h, j->w, j->L, false};
    size_t bytes = 0;
    wf_status st = WF_OK;
    for (int e = 0; e < 2; e++) {
        if (!d->p->dit[e]) continue;
        size_t b = 0;
        WF_TRY(dit_arena_bytes(d->p->dit[e], d->p->be, &ds, d->sp->size, &b, err));
        if (b > bytes) bytes = b;
    }
    if (i1 > i0) WF_TRY(wk_arena_init_on(&arena, d->p->be, "dit activations", bytes, err));
    WF_TRY(wk_timing_enable(d->p->be, true, err)); /* each step's time by op category */
    double t0 = now_s();
    for (int64_t i = i0; i < i1; i++) {
        double ts = now_s();
        cm_stats before = comm_totals(d);
        float t = step_timestep(j->smp, i);
        int e = pl_expert_of(d->p, r, (double)t);
        cm_watchdog_doing("request %lld, step %lld/%lld (%s)", (long long)j->index,
                          (long long)(i + 1), (long long)r->steps, e ? "transformer_2" : "transformer");
        if (!d->p->dit[e]) {
            st = wf_fail(err, WF_EUNSUPPORTED, "%s is not loaded on this rank (a stage world of "
                         "the other expert, or a layout bug): the request must start from a "
                         "checkpoint past the switch", e ? "transformer_2" : "transformer");
            goto out;
        }
        st = job_step(d, j, &arena, i, e, err);
        if (st) {
            wf_err_prefix(err, "request %lld, step %lld/%lld (%s): ", (long long)j->index,
                          (long long)(i + 1), (long long)r->steps,
                          e ? "transformer_2" : "transformer");
            goto out;
        }
        cm_watchdog_step(now_s() - ts);
        if (r->expert_out && d->role.writer) r->expert_out[i] = e;
        double ops[WK_T_NCATS] = {0};
        if ((st = wk_timing_take(d->p->be, ops, err))) goto out;
        if ((st = cm_settle(d->sp, err))) goto out; /* overlapped exchanges' device time */
        if (r->progress && d->group->rank == 0) {
            double tn = now_s();
            double g2 = isnan(r->guidance_2) ? r->guidance : r->guidance_2;
            pl_progress pr = {j->index, d->role.group, wall_s(), i, r->steps, e, (double)t,
                              j->cfg ? (e ? g2 : r->guidance) : 1.0, tn - ts, tn - t0, 0, 0,
                              {0}, {0}, 0, 0, 0, 0, i0};
            memcpy(pr.op_seconds, ops, sizeof ops);
            pl_progress_memory(d->p->be, &pr);
            cm_stats after = comm_totals(d);
            for (int op = 0; op < CM_NOPS; op++) {
                pr.comm_op_seconds[op] = after.seconds[op] - before.seconds[op];
                pr.comm_seconds += after.seconds[op] - before.seconds[op];
                pr.comm_bytes += after.bytes[op] - before.bytes[op];
            }
            r->progress(r->progress_ctx, &pr);
        }
        /* after the report, as pl_generate: a stop its callback asks for counts at this step */
        bool stop = false;
        if ((st = step_end(d, j, i + 1, &stop, err))) goto out;
        if (stop) {
            st = wf_fail(err, WF_ESTOPPED, "request %lld stopped after step %lld of %lld on "
                         "request%s", (long long)j->index, (long long)(i + 1),
                         (long long)r->steps, r->checkpoint ? " (checkpointed)" : "");
            goto out;
        }
    }
out:
    wk_timing_enable(d->p->be, false, NULL);
    wk_arena_free(&arena);
    return st;
}

/* The first step of the low-noise expert (steps when every step is high). */
static int64_t switch_step(const pd_world *d, const job *j) {
    int64_t i = 0;
    while (i < j->r->steps && pl_expert_of(d->p, j->r, (double)step_timestep(j->smp, i)) == 0) i++;
    return i;
}

/* The hand-off: latents, sampler state and text, high rank 0 -> low rank 0 -> low group. */
typedef struct handoff_head {
    int64_t job, i_switch, n, state_bytes, text_floats;
} handoff_head;

static wf_status handoff_send(pd_world *d, job *j, wf_err *err) {
    if (d->group->rank != 0) return WF_OK;
    size_t sb = smp_state_bytes(j->smp);
    void *state = malloc(sb);
    if (!state) return wf_fail(err, WF_ENOMEM, "out of memory for the sampler state");
    wf_status st = smp_state_save(j->smp, state, err);
    handoff_head h = {j->index, j->i_switch, (int64_t)j->n, (int64_t)sb, j->L * j->D};
    const size_t tb = (size_t)h.text_floats * sizeof(float);
    cm_comm *b = d->bridge;
    if (st) goto out;
    WF_TRY(cm_send(b, &h, sizeof h, 1, TAG_HANDOFF, err));
    /* the latents from the backend's memory (NCCL between GPUs) */
    WF_TRY(cm_send(d->bridge_x ? d->bridge_x : b, j->x, j->n * sizeof(float), 1, TAG_HANDOFF,
                   err));
    WF_TRY(cm_send(b, state, sb, 1, TAG_HANDOFF, err));
    WF_TRY(cm_send(b, j->cond, tb, 1, TAG_HANDOFF, err));
    if (j->cfg) WF_TRY(cm_send(b, j->uncond, tb, 1, TAG_HANDOFF, err));
out:
    free(state);
    if (st) wf_err_prefix(err, "hand-off of request %lld: ", (long long)j->index);
    return st;
}

static wf_status handoff_recv(pd_world *d, job *j, wf_err *err) {
    handoff_head h;
    memset(&h, 0, sizeof h);
    const size_t sb = smp_state_bytes(j->smp), tb = (size_t)(j->L * j->D) * sizeof(float);
    void *state = malloc(sb);
    if (!state) return wf_fail(err, WF_ENOMEM, "out of memory for the sampler state");
    wf_status st = WF_OK;
    cm_comm *b = d->bridge;
    if (d->group->rank == 0) {
        WF_TRY(cm_recv(b, &h, sizeof h, 0, TAG_HANDOFF, err));
        if (h.job != j->index || h.n != (int64_t)j->n || h.state_bytes != (int64_t)sb ||
            h.text_floats != j->L * j->D) {
            st = wf_fail(err, WF_EPROTO,
                         "hand-off: got request %lld (n %lld, state %lld B) while expecting "
                         "request %lld (n %zu, state %zu B)",
                         (long long)h.job, (long long)h.n, (long long)h.state_bytes,
                         (long long)j->index, j->n, sb);
            goto out;
        }
        WF_TRY(cm_recv(d->bridge_x ? d->bridge_x : b, j->x, j->n * sizeof(float), 0,
                       TAG_HANDOFF, err));
        WF_TRY(cm_recv(b, state, sb, 0, TAG_HANDOFF, err));
        WF_TRY(cm_recv(b, j->cond, tb, 0, TAG_HANDOFF, err));
        if (j->cfg) WF_TRY(cm_recv(b, j->uncond, tb, 0, TAG_HANDOFF, err));
    }
    cm_comm *g = d->group;
    WF_TRY(cm_bcast(g, &h, sizeof h, 0, err));
    if (g->size > 1) /* into every rank's backend memory */
        WF_TRY(cm_bcast(d->group_x ? d->group_x : g, j->x, j->n * sizeof(float), 0, err));
    WF_TRY(cm_bcast(g, state, sb, 0, err));
    WF_TRY(cm_bcast(g, j->cond, tb, 0, err));
    if (j->cfg) WF_TRY(cm_bcast(g, j->uncond, tb, 0, err));
    WF_TRY(smp_state_load(j->smp, state, sb, err));
    WF_TRY(text_to_backend(j, err));
    j->i_switch = h.i_switch;
out:
    free(state);
    if (st) wf_err_prefix(err, "hand-off of request %lld: ", (long long)j->index);
    return st;
}

/* Parallel decode on the decoding ranks; the writer gets the frames and outputs. */
static wf_status job_decode(pd_world *d, job *j, wf_err *err) {
    const pl_request *r = j->r;
    wf_status st = wk_download_bytes(j->be, j->xh, j->x, j->n * sizeof(float), err);
    if (st) return st;
    if (d->role.writer && r->latents_out) memcpy(r->latents_out, j->xh, j->n * sizeof(float));
    if (r->skip_decode || !d->vae) return WF_OK;
    vae_latents_denormalize(&d->p->vae->cfg, j->xh, j->T * j->h * j->w);
    vae_opts vo = vae_opts_default();
    size_t bytes = 0;
    wk_arena arena;
    memset(&arena, 0, sizeof arena);
    WF_TRY(vae_decode_dist_arena_bytes(d->p->vae, j->T, j->h, j->w, &vo, d->vae->size, d->vae->rank,
                                       &bytes, err));
    WF_TRY(wk_arena_init_on(&arena, d->p->be, "vae activations", bytes, err));
    const bool w = d->vae->rank == 0;
    st = vae_decode_dist(d->p->vae, d->p->be, &arena, &vo, d->vae, 0, j->xh, j->T, j->h, j->w,
                         w ? r->video_out : NULL, w ? r->on_frames : NULL, w ? r->frames_ctx : NULL,
                         err);
out:
    wk_arena_free(&arena);
    if (st) wf_err_prefix(err, "request %lld, decoding: ", (long long)j->index);
    return st;
}

static wf_status start_job(pd_world *d, job *j, wf_err *err) {
    const pl_request *r = j->r;
    wf_status st = job_text(d, j, err);
    if (st) return st;
    if (r->latents) memcpy(j->xh, r->latents, j->n * sizeof(float));
    else pl_noise(r->seed, j->xh, j->n);
    return wk_upload_bytes(j->be, j->x, j->xh, j->n * sizeof(float), err);
}

/* Every rank of the group resumes after the same step (each read the checkpoint itself: a file
 * that changed between two ranks' reads, or a rank that cannot see it, stops all of them). */
static wf_status agree_start(pd_world *d, const pl_request *r, wf_err *err) {
    int64_t lo = 0, hi = 0;
    wf_status st = cm_range(d->group, r->start_step, &lo, &hi, err);
    if (st) return st;
    if (lo != hi)
        return wf_fail(err, WF_EINVAL, "the ranks would resume request after different steps "
                       "(%lld and %lld): each must see the same checkpoint (a shared folder)",
                       (long long)lo, (long long)hi);
    return WF_OK;
}

/* One request on this rank: the whole of it (shared placement), or its group's part (split: the
 * high-noise steps and the hand-off, or the hand-off, the low-noise steps and the decode). */
static wf_status run_job(pd_world *d, job *j, wf_err *err) {
    const pl_request *r = j->r;
    wf_status st = WF_OK;
    if (d->layout.placement != LY_SPLIT) {
        WF_TRY(agree_start(d, r, err));
        WF_TRY(start_job(d, j, err));
        WF_TRY(pl_resume_load(r, j->smp, err)); /* every rank: the same state */
        WF_TRY(job_steps(d, j, r->start_step, r->steps, err));
        WF_TRY(job_decode(d, j, err));
    } else if (d->role.group == 0) {
        j->i_switch = switch_step(d, j);
        WF_TRY(start_job(d, j, err));
        WF_TRY(job_steps(d, j, 0, j->i_switch, err));
        /* the low-noise group takes the hand-off when it has finished the request before this
         * one (its steps and its decode): this wait may last that long */
        cm_watchdog_doing("request %lld: handing off to the low-noise group", (long long)j->index);
        cm_watchdog_span(2.0 * (double)r->steps);
        WF_TRY(handoff_send(d, j, err));
    } else {
        /* the hand-off comes after the high-noise group's steps of this request: this wait may
         * last up to a whole request's steps */
        cm_watchdog_doing("request %lld: waiting for the hand-off from the high-noise group",
                          (long long)j->index);
        cm_watchdog_span((double)r->steps);
        WF_TRY(handoff_recv(d, j, err));
        WF_TRY(job_steps(d, j, j->i_switch, r->steps, err));
        if (r->expert_out && d->role.writer)
            for (int64_t i = 0; i < j->i_switch; i++) r->expert_out[i] = 0;
        WF_TRY(job_decode(d, j, err));
    }
out:
    return st;
}

wf_status pd_run_queue(pd_world *d, const pd_queue *q, wf_err *err) {
    if (q->njobs < 1) return wf_fail(err, WF_EINVAL, "no requests to run");
    wf_status st = WF_OK;
    for (int64_t k = 0; k < q->njobs && !st; k++) {
        pl_request r;
        st = q->next(q->ctx, k, &r, err);
        if (!st && (st = pd_check(d, &r, 1, err)) && q->njobs > 1)
            wf_err_prefix(err, "request %lld: ", (long long)k);
        job j;
        memset(&j, 0, sizeof j);
        if (!st) st = job_init(d, &r, k, &j, err);
        if (!st) st = run_job(d, &j, err);
        job_free(&j);
        if (!st && q->done) st = q->done(q->ctx, k, &r, err);
    }
    return st;
}

/* pd_run's queue: the caller's array */
static wf_status array_next(void *ctx, int64_t k, pl_request *r, wf_err *err) {
    (void)err;
    *r = ((const pl_request *)ctx)[k];
    return WF_OK;
}

wf_status pd_run(pd_world *d, const pl_request *reqs, int64_t njobs, wf_err *err) {
    wf_status st = pd_check(d, reqs, njobs, err);
    if (st) return st;
    pd_queue q = {njobs, array_next, NULL, (void *)reqs};
    return pd_run_queue(d, &q, err);
}
