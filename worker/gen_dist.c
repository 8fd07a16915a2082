/* gen_dist.c: `wanfarm generate` over several MPI ranks (see gen.h): launcher
 * detection, the layout (every choice from the command line, else the planner's with the given
 * ones fixed, rated for CPU ranks), worker worlds and idle ranks, and the distributed run
 * (pl_dist.h) with writer-only outputs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <mpi.h>

#include "gen.h"
#include "cmds.h"
#include "pl_dist.h"
#include "pl_plan.h"
#include "watchdog.h"

/* Tasks of the srun step that started us (0: not in an srun step). */
long gen_srun_tasks(void) {
    const char *v = getenv("SLURM_STEP_NUM_TASKS");
    return v ? strtol(v, NULL, 10) : 0;
}

/* Under mpirun or srun (a process manager started us)? Then MPI is initialised. An srun step of
 * several tasks counts even without PMI variables, so that a missing --mpi plugin is reported
 * instead of every task generating the same video alone. */
bool gen_under_launcher(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE") ||
           getenv("PMI_RANK") || gen_srun_tasks() > 1;
}

/* Ranks on this node (for the default thread count). */
static int gen_local_ranks(void) {
    MPI_Comm node;
    int n = 1;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        MPI_Comm_size(node, &n);
        MPI_Comm_free(&node);
    }
    return n;
}

/* CPU threads of each rank: --threads, else the node's cores shared among its ranks. */
static int64_t gen_threads_per_rank(const gen_opts *o) {
    if (o->threads > 0) return o->threads;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int64_t t = cores > 0 ? cores / gen_local_ranks() : 1;
    return t < 1 ? 1 : t;
}

/* The planner's inputs for this run: the model, the request, the world and the rates of its
 * ranks. */
static int plan_inputs(gen_run *g, const pl_pipeline *shell, const pl_request *base,
                       const wk_backend *be, double gpu_mem, pn_inputs *pin) {
    const gen_opts *o = g->o;
    wf_err err;
    const ly_layout *l = &o->layout;
    pn_inputs in;
    pn_inputs_default(&in);
    pn_request pr;
    pn_request_default(&pr);
    pr.width = base->width, pr.height = base->height, pr.frames = base->frames;
    pr.steps = base->steps, pr.guidance = base->guidance, pr.boundary = base->boundary;
    pr.shift = base->shift, pr.sampler = base->sampler, pr.text_len = base->max_sequence_length;
    in.world = g->size;
    in.ranks_per_node = gen_local_ranks();
    if (pl_plan_inputs(&in, shell->cfg, &pr, &err)) {
        if (!g->quiet) fprintf(stderr, PROG ": %s\n", err.msg);
        return WF_EXIT_USAGE;
    }
    in.queue = g->njobs;
    in.replicas = o->replicas > 0 ? o->replicas : PN_FREE; /* several worker worlds for a queue */
    in.allow_idle = true;
    /* CPU ranks: the CPU backend's stated rates (pn_cost_cpu); GPU ranks: the stated H100
     * rates (pn_cost_default; in fp32 mode f32 weights and activations at an f32 rate of about
     * 60 TFLOP/s) with the device's memory; --cost FILE overrides either (bench_scaling
     * --calibrate --write-cost and bench/gpu-check.sh write one). */
    if (be) {
        in.row_quantum = be->row_quantum; /* how the DiT pads each rank's tokens there */
        pn_cost_default(&in.cost);
        if (be->precision == WK_PREC_FP32) {
            in.cost.gemm_flops = in.cost.attn_flops = 60e12;
            in.cost.weight_bytes = in.cost.elem_bytes = 4;
            snprintf(in.cost.source, sizeof in.cost.source, "stated (H100 SXM, fp32 mode)");
        }
    } else {
        pn_cost_cpu(&in.cost, (double)gen_threads_per_rank(o));
    }
    if (o->cost && pn_cost_load(&in.cost, o->cost, &err)) {
        if (!g->quiet) fprintf(stderr, PROG ": --cost %s\n", err.msg);
        return WF_EXIT_FAIL;
    }
    if (o->mem_gb > 0) {
        in.cost.mem_per_rank = o->mem_gb * 1e9;
    } else if (be) {
        in.cost.mem_per_rank = gpu_mem;
    } else {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        if (pages > 0 && psz > 0) in.cost.mem_per_rank = (double)pages * (double)psz;
    }
    in.placement = o->placement >= 0 ? o->placement : PN_FREE;
    in.ulysses[0] = l->ulysses[0] > 0 ? l->ulysses[0] : PN_FREE;
    in.ulysses[1] = l->ulysses[1] > 0 ? l->ulysses[1] : (l->ulysses[0] > 0 ? l->ulysses[0] : PN_FREE);
    in.cfg_parallel = o->cfg_par >= 0 ? o->cfg_par : PN_FREE;
    in.vae_ranks = l->vae_ranks > 0 ? l->vae_ranks : PN_FREE;
    *pin = in;
    return WF_EXIT_OK;
}

/* The layout: the command line's when it gives every choice, else the planner's with them fixed. */
static int pick_layout(gen_run *g, const pn_inputs *in, ly_layout *out, int *replicas) {
    const gen_opts *o = g->o;
    wf_err err;
    const ly_layout *l = &o->layout;
    if (o->placement >= 0 && l->ulysses[0] > 0 && o->cfg_par >= 0 && l->vae_ranks > 0) {
        *out = *l;
        out->placement = (ly_placement)o->placement;
        out->cfg_parallel = o->cfg_par == 1;
        if (out->ulysses[1] <= 0) out->ulysses[1] = out->ulysses[0];
        *replicas = o->replicas > 0 ? o->replicas : 1;
        return WF_EXIT_OK;
    }
    pn_plan plan;
    if (pn_choose(in, &plan, &err)) {
        if (!g->quiet) fprintf(stderr, PROG ": %s\n", err.msg);
        return WF_EXIT_USAGE;
    }
    *out = plan.layout;
    *replicas = plan.replicas;
    return WF_EXIT_OK;
}

/* The queue of one worker world: its i-th request is the queue's video my_rep + i R, made when
 * this rank starts it and, on the writer, written and released when this rank is done with it. */
typedef struct world_queue {
    gen_run *g;
    int64_t first, stride;
    int rc; /* the first failure to write an output (then nothing more is written) */
} world_queue;

static wf_status queue_next(void *ctx, int64_t i, pl_request *r, wf_err *err) {
    world_queue *q = ctx;
    wf_status st = gen_job_begin(q->g, q->first + i * q->stride, err);
    if (!st) *r = q->g->req;
    return st;
}

static wf_status queue_done(void *ctx, int64_t i, const pl_request *r, wf_err *err) {
    (void)r, (void)err;
    world_queue *q = ctx;
    if (q->g->ctx.mine && q->rc == WF_EXIT_OK)
        q->rc = gen_finish_outputs(q->g, q->first + i * q->stride);
    gen_job_end(q->g);
    return WF_OK;
}

/* This rank's part once the layout is chosen: its worker world (or none: an idle rank), the
 * distributed pipeline, its share of the queue (video k goes to world k % R) and, on a writer, the
 * outputs. *rc gets the writer's verdict on the outputs; a status is a failure of the work, with
 * its detail, for the caller to report (it may have left other ranks inside a collective). */
static wf_status dist_work(gen_run *g, cm_comm *world, wk_backend *be, const ly_layout *l, int R,
                           const pl_request *base, double t0, double mem[3], int *rc,
                           wf_err *err) {
    const gen_opts *o = g->o;
    const int per = ly_ranks(l);
    const int my_rep = g->rank < R * per ? g->rank / per : -1;
    cm_comm *rep = NULL;
    pd_world *d = NULL;
    *rc = WF_EXIT_OK;
    wf_status st = cm_split(world, my_rep, g->rank, "worker world", &rep, err);
    if (st || !rep) goto out; /* !rep: an idle rank */
    const unsigned experts = gen_farm_hooks && gen_farm_hooks->parts
                                 ? gen_farm_hooks->parts & (PL_PART_EXPERT0 | PL_PART_EXPERT1)
                                 : PL_PART_EXPERT0 | PL_PART_EXPERT1; /* a stage world: one */
    if ((st = pd_open_experts(&d, rep, l, o->model, be, (int)gen_threads_per_rank(o), experts,
                              err)))
        goto out;
    g->writer = d->role.writer;
    g->replicas = R;
    g->replica = my_rep;
    const int64_t nmine = my_rep < g->njobs ? (g->njobs - my_rep + R - 1) / R : 0;
    if (!g->quiet && !o->json)
        fprintf(stderr, PROG ": loaded in %.1f s; %lld video%s of %lldx%lld, %lld frames\n",
                gen_now() - t0, (long long)g->njobs, g->njobs == 1 ? "" : "s",
                (long long)base->width, (long long)base->height, (long long)base->frames);
    world_queue wq = {g, my_rep, R, WF_EXIT_OK};
    pd_queue q = {nmine, queue_next, queue_done, &wq};
    if (nmine && (st = pd_run_queue(d, &q, err))) goto out;
    *rc = wq.rc;
    if (d->role.writer && *rc == WF_EXIT_OK && nmine) gen_report_done(g, t0);
    wk_mem_note(d->p->be);
    mem[0] = (double)d->p->be->mem_peak_data;
    mem[1] = (double)d->p->be->ws_bytes;
    mem[2] = (double)wk_device_used(d->p->be);
out:
    gen_job_end(g);
    pd_close(&d);
    cm_free(&rep);
    return st;
}

/* The planner's memory for each world rank under plan p (its layout, p->replicas worlds; 0 for
 * an idle rank), as the backend will see it: without the runtime's reserve on a GPU (its context and the
 * libraries' buffers, which the device's use has), and on the CPU without the weights too (mapped
 * from the checkpoint); without the decode stage when the run writes latents only. pred: [size]. */
static void predict_memory(const pn_inputs *in, const pn_plan *p, bool gpu, bool decodes,
                           int size, double *pred) {
    const int per = ly_ranks(&p->layout), R = p->replicas;
    for (int r = 0; r < size; r++) {
        pred[r] = 0;
        if (r >= R * per) continue;
        pn_mem m = pn_mem_of_rank(in, &p->layout, p->text_staged, r % per);
        if (!decodes) m.vae_act = 0; /* latents only: no decode (its weights load all the same) */
        pred[r] = (gpu ? m.experts + m.text_weights + m.vae_weights : 0) + m.video +
                  fmax(m.dit_act, fmax(m.vae_act, m.text_act));
    }
}

/* The planner's per-step breakdown for each group of the chosen layout, named as the step records
 * name the measured one (gemm, attention, other, the collectives by kind), so that a run can be
 * held against its prediction row by row. World rank 0, before the work. */
static void report_plan(gen_run *g, const pn_inputs *in, const pn_plan *pp) {
    const gen_opts *o = g->o;
    const pn_plan p = *pp;
    if (g->quiet) return;
    const int ng = p.layout.placement == LY_SPLIT ? 2 : 1;
    if (o->json) {
        json_t *src = json_string(in->cost.source); /* a path may hold any character */
        char *s = src ? json_dumps(src, JSON_ENCODE_ANY) : NULL;
        printf("{\"event\":\"plan\",\"cost\":%s,\"groups\":[", s ? s : "null");
        free(s);
        json_decref(src);
    }
    for (int k = 0; k < ng; k++) {
        const pn_group *q = &p.group[k];
        if (o->json)
            printf("%s{\"group\":%d,\"ranks\":%d,\"ulysses\":%d,\"step_seconds\":%.6g,"
                   "\"gemm_seconds\":%.6g,\"attention_seconds\":%.6g,\"other_seconds\":%.6g,"
                   "\"alltoall_seconds\":%.6g,\"allgather_seconds\":%.6g,\"cfg_seconds\":%.6g,"
                   "\"comm_bytes\":%.0f}", k ? "," : "", k, q->ranks, q->ulysses, q->t_step,
                   q->t_gemm, q->t_attn, q->t_elem, q->t_a2a, q->t_gather, q->t_cfg,
                   q->bytes_step);
        else
            fprintf(stderr, PROG ": the planner's step (group %d, %s): %.3g s (gemm %.3g, "
                    "attention %.3g, other %.3g; all-to-all %.3g, all-gather %.3g, CFG exchange "
                    "%.3g s; %.1f MB sent)\n", k, in->cost.source, q->t_step, q->t_gemm,
                    q->t_attn, q->t_elem, q->t_a2a, q->t_gather, q->t_cfg, q->bytes_step / 1e6);
    }
    if (o->json) {
        printf("]}\n");
        fflush(stdout);
    }
}

/* One rank's entry of the memory report: m = {peak, workspace, device use}. */
static void memory_row(const gen_opts *o, const wk_backend *be, int r, const double m[3],
                       double pred) {
    const double meas = m[0], ws = m[1], used = m[2];
    if (o->json) {
        printf("%s{\"rank\":%d,\"idle\":%s,\"peak_bytes\":%.0f,\"predicted_bytes\":%.0f,"
               "\"workspace_bytes\":%.0f,\"device_used_bytes\":%.0f}", r ? "," : "", r,
               pred > 0 ? "false" : "true", meas, pred, ws, used);
        return;
    }
    if (!(pred > 0)) return; /* an idle rank */
    fprintf(stderr, PROG " (rank %d): peak %s memory %.1f MiB (%s), the planner's %.1f MiB "
            "(%+.1f%%); workspace %.1f MiB", r, be ? be->name : "cpu", meas / (1 << 20),
            be ? "weights, activations, latents" : "activations, latents", pred / (1 << 20),
            100.0 * (meas - pred) / pred, ws / (1 << 20));
    if (used > 0) fprintf(stderr, "; device in use %.2f GiB", used / (1 << 30));
    fprintf(stderr, "\n");
}

/* Each rank's peak backend memory of weights, arenas and buffers (mine[0]: mem_peak_data), its
 * workspace (mine[1]) and the device's use (mine[2]) beside the planner's prediction (pred,
 * world rank 0's; NULL elsewhere): collective over the world, rank 0 prints. */
static void report_memory(gen_run *g, cm_comm *world, const wk_backend *be, const double mine[3],
                          const double *pred) {
    const gen_opts *o = g->o;
    double *all = NULL;
    if (g->rank == 0) all = calloc(3 * (size_t)world->size, sizeof *all);
    int ok = g->rank != 0 || (all && pred);
    MPI_Bcast(&ok, 1, MPI_INT, 0, world->mpi);
    if (!ok) goto out;
    MPI_Gather((void *)mine, 3, MPI_DOUBLE, all, 3, MPI_DOUBLE, 0, world->mpi);
    if (g->rank != 0 || g->quiet) goto out;
    if (o->json) printf("{\"event\":\"memory\",\"ranks\":[");
    for (int r = 0; r < world->size; r++) memory_row(o, be, r, all + 3 * r, pred[r]);
    if (o->json) {
        printf("]}\n");
        fflush(stdout);
    }
out:
    free(all);
}

/* The planner's inputs, the layout, and on world rank 0 its predictions (the per-step rows
 * printed, each rank's memory into *pred); the shell's VAE, loaded for the exact decode sizes,
 * is freed after. */
static int choose(gen_run *g, pl_pipeline *shell, const pl_request *base, const wk_backend *be,
                  double gpu_mem, pn_inputs *in, ly_layout *l, int *R, double **pred) {
    int rc = plan_inputs(g, shell, base, be, gpu_mem, in);
    if (rc != WF_EXIT_OK) return rc;
    pl_plan_exact exact = {shell->cfg, shell->vae, in->row_quantum};
    pl_plan_use_exact(in, &exact);
    rc = pick_layout(g, in, l, R);
    pn_plan plan;
    wf_err err;
    if (rc == WF_EXIT_OK && g->rank == 0 && !pn_evaluate(in, l, *R, &plan, &err)) {
        if ((*pred = calloc((size_t)g->size, sizeof **pred)))
            predict_memory(in, &plan, be != NULL, g->o->out || g->o->frames_dir || g->o->sheet,
                           g->size, *pred);
        report_plan(g, in, &plan);
    }
    vae_free(&shell->vae);
    in->stage_bytes = NULL; /* exact does not outlive this call */
    in->stage_ctx = NULL;
    return rc;
}

/* Several ranks: the distributed pipeline (pl_dist.h). */
int gen_run_dist(gen_run *g, pl_request *base, double t0) {
    const gen_opts *o = g->o;
    wf_err err;
    cm_comm *world = NULL;
    pl_pipeline *shell = NULL;
    float *lat0 = NULL;
    int rc = WF_EXIT_FAIL;
    wk_backend *be = NULL;
    double gpu_mem = 0;
    double *pred = NULL;
    /* the shell: configs, and the VAE for the planner's exact decode sizes (freed once used) */
    if (cm_world(&world, &err) || pl_open_parts(&shell, o->model, NULL, 1, PL_PART_VAE, &err)) {
        if (!g->quiet) fprintf(stderr, PROG ": %s\n", err.msg);
        goto done;
    }
    /* every rank's backend, agreed by all: GPUs (one each) or the CPU */
    if (gen_backend_ranks(o, world, g->quiet, &be, &gpu_mem, &rc, &err)) {
        if (!g->quiet) fprintf(stderr, PROG ": %s\n", err.msg);
        goto done;
    }
    rc = WF_EXIT_FAIL;
    wf_status st = pl_check_request(shell, base, g->shape, &err);
    if (st) {
        if (!g->quiet) fprintf(stderr, PROG ": %s\n", err.msg);
        rc = st == WF_EINVAL ? WF_EXIT_USAGE : WF_EXIT_FAIL;
        goto done;
    }
    ly_layout l;
    int R = 1;
    pn_inputs in;
    if ((rc = choose(g, shell, base, be, gpu_mem, &in, &l, &R, &pred)) != WF_EXIT_OK) goto done;
    rc = WF_EXIT_FAIL;
    if (o->ckpt_dir && l.placement == LY_SPLIT) {
        if (!g->quiet)
            fprintf(stderr, PROG ": --checkpoint-dir works with placement shared only for now (a "
                    "split job lives in two groups): add --placement shared\n");
        rc = WF_EXIT_USAGE;
        goto done;
    }
    /* R worker worlds of `per` ranks each; explicit layouts must use every rank */
    const int per = ly_ranks(&l);
    const bool given = o->placement >= 0 && l.ulysses[0] > 0 && o->cfg_par >= 0 && l.vae_ranks > 0;
    ly_limits lim;
    if ((st = pd_limits(shell, base, &lim, &err)) ||
        (st = ly_check(&l, given && o->replicas <= 0 ? g->size : per, &lim, &err))) {
        if (!g->quiet) fprintf(stderr, PROG ": %s\n", err.msg);
        rc = st == WF_EINVAL ? WF_EXIT_USAGE : WF_EXIT_FAIL;
        goto done;
    }
    if (R < 1 || (int64_t)R * per > g->size || (given && (int64_t)R * per != g->size)) {
        if (!g->quiet)
            fprintf(stderr, PROG ": %d worker worlds of %d ranks need %lld ranks, the world has %d: "
                    "%s\n", R, per, (long long)R * per, g->size,
                    (int64_t)R * per > g->size ? "start more ranks or lower --replicas"
                                               : "too many ranks for this layout; raise --replicas");
        rc = WF_EXIT_USAGE;
        goto done;
    }
    char desc[160];
    ly_format(&l, desc, sizeof desc);
    if (!g->quiet && !o->json) {
        fprintf(stderr, PROG ": %d ranks, layout %s", g->size, desc);
        if (R > 1) fprintf(stderr, ", %d worker worlds of %d ranks (videos dealt round-robin)", R, per);
        if (g->size > R * per) fprintf(stderr, ", %d ranks idle", g->size - R * per);
        fprintf(stderr, "\n");
    }
    /* the initial latents: read on every rank, which agree before anything else is sent */
    if (o->latents_in) {
        st = gen_read_latents(o->latents_in, g->shape, &lat0, &err);
        if ((st = cm_agree(world, st, "--latents", &err))) {
            if (!g->quiet) fprintf(stderr, PROG ": %s\n", err.msg);
            goto done;
        }
    }
    /* From here a failing rank may leave others inside a collective: its status and detail come
     * back up to this one place, which reports it and ends the MPI job. */
    g->lat0 = lat0;
    /* A rank that stops answering (stopped, hung, dead) must not leave the others waiting: the
     * watchdog ends the job when a call waits far longer than a step (worker/comm/watchdog.c). */
    if (o->watchdog > 0 &&
        (st = cm_watchdog_start(PROG, o->watchdog, GEN_WATCHDOG_FACTOR, &err)) != WF_OK) {
        fprintf(stderr, PROG " (rank %d): %s\n", g->rank, err.msg);
        MPI_Abort(MPI_COMM_WORLD, WF_EXIT_FAIL);
    }
    double mem[3] = {0, 0, 0}; /* this rank's peak backend memory, its workspace, the device's use */
    if ((st = dist_work(g, world, be, &l, R, base, t0, mem, &rc, &err)) == WF_ESTOPPED) {
        /* every rank agreed to stop between two steps, after the checkpoint */
        if (!g->quiet)
            fprintf(stderr, PROG ": %s; run the same command with --resume to continue\n",
                    err.msg);
        rc = WF_EXIT_STOPPED;
    } else if (st) {
        fprintf(stderr, PROG " (rank %d): %s\n", g->rank, err.msg);
        if (gen_farm_hooks && gen_farm_hooks->failed) gen_farm_hooks->failed(gen_farm_hooks->ctx, err.msg);
        MPI_Abort(MPI_COMM_WORLD, WF_EXIT_FAIL);
    }
    cm_watchdog_stop();
    report_memory(g, world, be, mem, pred);
    /* every rank leaves with the writers' verdict */
    int wrc = rc, any = 0;
    MPI_Allreduce(&wrc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    rc = any;
done:
    free(pred);
    free(lat0);
    pl_close(&shell);
    wk_backend_destroy(&be);
    cm_free(&world);
    return rc;
}
