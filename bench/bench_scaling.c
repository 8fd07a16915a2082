/* bench_scaling.c: the planner's scaling model (coordinator/planner/plan.h) for the Wan2.2-T2V-A14B 720p step,
 * extrapolated to 1..64 GPUs, a plug-in of the bench engine (bench_engine.h), in the nccl-tests shape.
 *
 * What it is: for each GPU count (default 1, 8, 16, 32, 64; 8 per node) it asks the planner for
 * the best layout in two modes and prints one row each:
 *   step   one worker world, one video (queue 1): the denoising step time, its split into GEMM,
 *          attention, elementwise, all-to-all and other communication, the speed-up over one GPU
 *          and the parallel efficiency (speed-up / GPUs);
 *   queue  a queue of --queue videos, worker worlds allowed: videos/hour, its speed-up and
 *          efficiency.
 * The rates are the stated H100 numbers, a --cost FILE.json, or (--calibrate) this CPU's: the
 * sgemm peak (bu_measure_peak), wk_attention on a small self-attention, a memory-bandwidth triad,
 * with the stated network. Each row carries a correctness column: the model's per-rank byte and
 * FLOP counts and all-to-all times against an independent recomputation here (per destination
 * rank and head, node by node). A footer says OK or FAILED. Columns and the model:
 * bench/PERFORMANCE.md ("Placement planner and scaling model"); bench/plot_scaling.py draws the
 * CSV (--csv) as a PNG.
 * What it is not: a measurement of a multi-GPU run (nothing here runs a DiT); the numbers are the
 * model's.
 * Run:   build/bench/bench_scaling [--gpus 1,8,16,32,64 --per-node 8 --size 1280x720 --frames 81
 *                                   --steps 40 --queue 64 --cost FILE | --calibrate [--threads N
 *                                   -w 1 -n 5 --write-cost FILE] --check 1 --csv FILE --json FILE]
 */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bench_engine.h"
#include "pl_plan.h"

#define MAX_GPUS 64
#define CHECK_TOL 1e-9 /* relative: the counts are exact arithmetic, the times the same formula */

/* ------------------------------------------------------------------------------------------ */
/* the independent recomputation */

static double relerr(double a, double b) {
    double m = fmax(fabs(a), fabs(b));
    return m > 0 ? fabs(a - b) / m : 0;
}

/* One all-to-all of `chunk` bytes per peer among world ranks [first, first + U): every rank's
 * peers split by comparing node numbers one by one. */
static double ref_a2a(const pn_inputs *in, int first, int U, double chunk) {
    const pn_cost *c = &in->cost;
    double worst = 0;
    for (int i = first; U > 1 && i < first + U; i++) {
        int on = 0, off = 0;
        for (int j = first; j < first + U; j++) {
            if (j == i) continue;
            if (j / in->ranks_per_node == i / in->ranks_per_node) on++;
            else off++;
        }
        double t = (off ? c->inter_latency : c->intra_latency) +
                   fmax(on * chunk / c->intra_bw, off * chunk / c->inter_bw);
        if (t > worst) worst = t;
    }
    return worst;
}

/* Mismatches between the model's group g of plan p and the recomputation. */
static long check_group(const pn_inputs *in, const pn_plan *p, int g, char *why, size_t nwhy) {
    const pn_model *m = &in->model;
    const pn_group *x = &p->group[g];
    const int U = p->layout.ulysses[g], halves = p->layout.cfg_parallel ? 2 : 1;
    const int64_t q = in->row_quantum; /* every rank holds a multiple of the backend's row quantum */
    const int64_t Ll = (in->tokens + q * U - 1) / (q * U) * q, Lp = Ll * U;
    const double e = in->cost.elem_bytes, Lt = (double)in->text_len, D = (double)m->dim;
    const double FF = (double)m->ffn_dim, l = (double)Ll, P = (double)(m->patch[0] * m->patch[1] * m->patch[2]);
    const int f = in->cfg && !p->layout.cfg_parallel ? 2 : 1;
    /* bytes: what rank 0 sends to each peer, head by head */
    double a2a = 0;
    for (int dst = 1; dst < U; dst++)
        for (int64_t h = 0; h < m->heads; h++)
            if (h / (m->heads / U) == dst) a2a += l * (double)m->head_dim * e;
    a2a *= 4.0 * (double)m->layers;
    double gather = (U - 1) * l * P * (double)m->out_channels * e;
    double cfgb = in->cfg && p->layout.cfg_parallel
                      ? (double)(m->out_channels * in->T * in->h * in->w) * 4 : 0;
    /* FLOPs: bench_dit's count with Ll query tokens, Lp keys over NH/U heads */
    double gemm = (double)m->layers * (8 * l * D * D + 4 * l * D * D + 4 * Lt * D * D + 4 * l * D * FF) +
                  2 * l * D * (double)m->in_channels * P + 2 * ((double)m->freq_dim * D + 7 * D * D) +
                  2 * Lt * ((double)m->text_dim * D + D * D) + 2 * l * D * (double)m->out_channels * P;
    double attn = (double)m->layers * (4.0 * (double)Lp * (double)Lp * (double)m->head_dim *
                                           (double)(m->heads / U) +
                                       4 * l * Lt * D);
    /* all-to-all time of the slower half */
    int base = g ? ly_group_size(&p->layout, 0) : 0;
    double ta = 0;
    for (int hf = 0; hf < halves; hf++) {
        double t = 4.0 * (double)m->layers * ref_a2a(in, base + hf * U, U, l * (D / U) * e);
        if (t > ta) ta = t;
    }
    ta *= f;
    const struct {
        const char *what;
        double model, ref;
    } c[] = {{"a2a bytes", x->a2a_bytes, a2a},      {"gather bytes", x->gather_bytes, gather},
             {"cfg bytes", x->cfg_bytes, cfgb},      {"bytes/step", x->bytes_step, f * (a2a + gather) + cfgb},
             {"gemm flops", x->gemm_flops, gemm},    {"attention flops", x->attn_flops, attn},
             {"a2a time", x->t_a2a, ta}};
    long wrong = 0;
    for (size_t i = 0; i < sizeof c / sizeof *c; i++)
        if (!(relerr(c[i].model, c[i].ref) <= CHECK_TOL)) {
            if (!wrong)
                snprintf(why, nwhy, "group %d %s: model %.9g, recomputed %.9g", g, c[i].what,
                         c[i].model, c[i].ref);
            wrong++;
        }
    return wrong;
}

/* ------------------------------------------------------------------------------------------ */
/* calibration on this CPU */

typedef struct calib {
    double gemm, attn, mem;  /* FLOP/s, FLOP/s, B/s */
    int64_t L, NH, HD;       /* the attention shape */
} calib;

static struct {
    wk_tensor q, k, v, o;
    float scale;
} calib_att; /* the calibration's attention operands */

static wf_status att_call(bn_run *e, int row, int call, wf_err *err) {
    (void)row;
    (void)call;
    return wk_attention(e->be, &calib_att.o, &calib_att.q, &calib_att.k, &calib_att.v,
                        calib_att.scale, 0, NULL, err);
}

/* wk_attention's FLOP rate on [L, NH, HD] self-attention: -w + -n calls (bn_time), the median. */
static wf_status measure_attention(bn_run *e, calib *cb, wf_err *err) {
    const int64_t L = cb->L, NH = cb->NH, HD = cb->HD;
    const size_t n = (size_t)(L * NH * HD);
    float *x = malloc(4 * n * sizeof *x);
    double *t = malloc((size_t)e->o.iters * sizeof *t);
    wf_status st = !x || !t ? wf_fail(err, WF_ENOMEM, "out of memory")
                            : wk_backend_cpu_new(&e->be, e->o.threads, err);
    if (!st) {
        for (int i = 0; i < 3; i++) bu_fill_normal(x + (size_t)i * n, n, 0, 1, (uint64_t)i + 1);
        calib_att.q = wk_tensor_3d(WK_F32, x, L, NH, HD);
        calib_att.k = wk_tensor_3d(WK_F32, x + n, L, NH, HD);
        calib_att.v = wk_tensor_3d(WK_F32, x + 2 * n, L, NH, HD);
        calib_att.o = wk_tensor_3d(WK_F32, x + 3 * n, L, NH, HD);
        calib_att.scale = 1.0f / sqrtf((float)HD);
        st = bn_time(e, att_call, 0, e->o.warm + e->o.iters, NULL, t, err);
    }
    if (!st)
        cb->attn = 4.0 * (double)L * (double)L * (double)NH * (double)HD / bn_median(t, e->o.iters);
    free(x);
    free(t);
    return st;
}

/* a[i] = b[i] + s c[i] over 3 x 64 MiB (12 bytes per element), best of `iters`. */
static double measure_triad(int threads, int iters) {
    const size_t n = (size_t)16 << 20;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
    double best = 1e30;
    if (a && b && c) {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (size_t i = 0; i < n; i++) {
            a[i] = 0;
            b[i] = 1;
            c[i] = 2;
        }
        for (int it = 0; it < iters + 1; it++) {
            double s = bu_now_s();
#pragma omp parallel for num_threads(threads) schedule(static)
            for (size_t i = 0; i < n; i++) a[i] = b[i] + 0.5f * c[i];
            double t = bu_now_s() - s;
            if (it > 0 && t < best) best = t;
        }
    }
    free(a);
    free(b);
    free(c);
    return best < 1e30 ? 12.0 * (double)n / best : NAN;
}


/* ------------------------------------------------------------------------------------------ */
/* the plug-in: one row per mode (step, queue) and GPU count */

typedef struct srow {
    pn_plan p;
    double step_s; /* denoising seconds per step: sum over groups of steps x step / steps */
    double speedup, eff;
} srow;

static struct {
    int gpus[MAX_GPUS], ngpus, per_node, calibrate;
    int64_t frames, steps, queue, width, height;
    const char *cost, *csv, *write_cost;
    pn_inputs in;
    pn_plan base;      /* the one-GPU baseline of the running mode */
    wf_status base_st;
    wf_err base_err;
    srow rows[2 * MAX_GPUS];
} S = {.gpus = {1, 8, 16, 32, 64}, .ngpus = 5, .per_node = 8, .frames = 81, .steps = 40,
       .queue = 64, .width = 1280, .height = 720};

static int parse_list(const char *s, void *dst) { /* --gpus 1,8,16 */
    (void)dst;
    int n = 0;
    for (const char *p = s;;) {
        char *e;
        errno = 0;
        long x = strtol(p, &e, 10);
        if (errno || e == p || x < 1 || x > MAX_GPUS * 1024 || n == MAX_GPUS) return -1;
        S.gpus[n++] = (int)x;
        if (!*e) break;
        if (*e != ',') return -1;
        p = e + 1;
    }
    S.ngpus = n;
    return 0;
}

static int parse_size(const char *v, void *dst) { /* --size WxH */
    (void)dst;
    long long w, h;
    if (sscanf(v, "%lldx%lld", &w, &h) != 2) return -1;
    S.width = w;
    S.height = h;
    return 0;
}

/* The inputs: the A14B preset at this size, the --cost rates. */
static int sc_init(bn_run *e) {
    wf_err err;
    if (S.cost && S.calibrate) {
        fprintf(stderr, "bench_scaling: --cost and --calibrate exclude each other\n");
        return 2;
    }
    if (!e->o.threads) e->o.threads = omp_get_max_threads();
    pn_inputs_default(&S.in);
    S.in.ranks_per_node = S.per_node;
    pn_request rq;
    pn_request_default(&rq);
    rq.width = S.width;
    rq.height = S.height;
    rq.frames = S.frames;
    rq.steps = S.steps;
    if (S.cost && pn_cost_load(&S.in.cost, S.cost, &err)) {
        fprintf(stderr, "bench_scaling: --cost: %s\n", err.msg);
        return 2;
    }
    if (pl_plan_preset_a14b(&S.in, &rq, &err)) {
        fprintf(stderr, "bench_scaling: %s\n", err.msg);
        return 2;
    }
    return 0;
}

/* The header; with --calibrate, this CPU's rates first (and --write-cost). */
static wf_status sc_setup(bn_run *e, wf_err *err) {
    pn_inputs *in = &S.in;
    printf("# bench_scaling: the planner's cost model (coordinator/planner/plan.h), %s %lldx%lld x %lld frames\n",
           in->model.name, (long long)in->width, (long long)in->height, (long long)in->frames);
    printf("# request: %lld tokens (latent %lldx%lldx%lld), text %lld, %lld steps: %lld high-noise, "
           "%lld low-noise; CFG %s; %d GPUs per node\n",
           (long long)in->tokens, (long long)in->T, (long long)in->h, (long long)in->w,
           (long long)in->text_len, (long long)in->steps, (long long)in->steps_high,
           (long long)in->steps_low, in->cfg ? "on" : "off", S.per_node);
    if (S.calibrate) {
        calib cb = {.L = 1024, .NH = 8, .HD = 128};
        cb.gemm = bu_measure_peak(e->o.threads) * 1e9;
        wf_status st = measure_attention(e, &cb, err);
        if (st) return st;
        cb.mem = measure_triad(e->o.threads, e->o.iters);
        printf("# calibrated on this CPU, %d threads: sgemm %.1f GFLOP/s (f32 2048^3), wk_attention "
               "%.1f GFLOP/s (L %lld NH %lld HD %lld, f32), triad %.1f GB/s\n",
               e->o.threads, cb.gemm * 1e-9, cb.attn * 1e-9, (long long)cb.L, (long long)cb.NH,
               (long long)cb.HD, cb.mem * 1e-9);
        in->cost.gemm_flops = cb.gemm;
        in->cost.attn_flops = cb.attn;
        in->cost.mem_bw = cb.mem;
        in->cost.vae_flops = cb.gemm; /* the VAE's convolutions are sgemm-bound on the CPU */
        snprintf(in->cost.source, sizeof in->cost.source,
                 "measured on this CPU (GEMM, attention, memory) + stated network and memory");
        if (S.write_cost) {
            json_t *o = pn_cost_json(&in->cost);
            int r = json_dump_file(o, S.write_cost, JSON_INDENT(1) | JSON_REAL_PRECISION(8));
            json_decref(o);
            if (r) return wf_fail(err, WF_EIO, "cannot write %s", S.write_cost);
            printf("# wrote the calibrated cost to %s (wanfarm plan --cost %s)\n", S.write_cost,
                   S.write_cost);
        }
    }
    const pn_cost *c = &in->cost;
    printf("# cost: %s\n", c->source);
    printf("#   GEMM %.1f TFLOP/s, attention %.1f TFLOP/s, VAE %.1f TFLOP/s, memory %.2f TB/s, "
           "elements %g B\n",
           c->gemm_flops * 1e-12, c->attn_flops * 1e-12, c->vae_flops * 1e-12, c->mem_bw * 1e-12,
           c->elem_bytes);
    printf("#   NVLink %.0f GB/s, InfiniBand %.0f GB/s per GPU, latency %.0f/%.0f us; %.0f GB per GPU\n",
           c->intra_bw * 1e-9, c->inter_bw * 1e-9, c->intra_latency * 1e6, c->inter_latency * 1e6,
           c->mem_per_rank * 1e-9);
    printf("# modes: step = one worker world, one video (queue 1); queue = %lld videos, worker worlds "
           "allowed; check %s\n", (long long)S.queue, e->o.check ? "on" : "off");
    e->nrows = 2 * S.ngpus;
    return WF_OK;
}

/* Row i: the planner's best plan for this mode and GPU count, checked against the recomputation. */
static wf_status sc_row(bn_run *e, int i, bn_row *r, wf_err *err) {
    const int mode = i / S.ngpus, gpus = S.gpus[i % S.ngpus];
    const int nodes = (gpus + S.per_node - 1) / S.per_node;
    pn_inputs *in = &S.in;
    srow *x = &S.rows[i];
    char (*c)[BN_CELL] = r->cell;
    snprintf(c[0], BN_CELL, "%s", mode ? "queue" : "step");
    snprintf(c[1], BN_CELL, "%d", gpus);
    snprintf(c[2], BN_CELL, "%d", nodes);
    in->queue = mode ? S.queue : 1;
    in->replicas = mode ? PN_FREE : 1;
    if (i % S.ngpus == 0) { /* the one-GPU baseline of this mode (whether or not --gpus lists 1) */
        in->world = 1;
        S.base_st = pn_choose(in, &S.base, &S.base_err);
    }
    if (S.base_st) return wf_fail(err, S.base_st, "the one-GPU baseline: %s", S.base_err.msg);
    in->world = gpus;
    wf_status st = pn_choose(in, &x->p, err);
    if (st) return st;
    const pn_plan *p = &x->p;
    double den = 0;
    for (int g = 0; g < ly_groups(&p->layout); g++)
        den += (double)p->group[g].steps * p->group[g].t_step;
    x->step_s = den / (double)(in->steps_high + in->steps_low);
    for (int g = 0; e->o.check && g < ly_groups(&p->layout); g++)
        r->wrong += check_group(in, p, g, r->err, sizeof r->err);
    x->speedup = mode ? p->videos_per_hour / S.base.videos_per_hour
                      : S.base.group[0].t_step / x->step_s;
    x->eff = x->speedup / gpus;
    const pn_group *g0 = &p->group[0];
    char l1[160];
    ly_format(&p->layout, l1, sizeof l1);
    if (p->replicas > 1) snprintf(c[4], BN_CELL, "%d x %.80s", p->replicas, l1);
    else snprintf(c[4], BN_CELL, "%.90s", l1);
    snprintf(c[3], BN_CELL, "%d", p->ranks * p->replicas);
    snprintf(c[5], BN_CELL, "%lld", (long long)g0->tokens_local);
    const double ms[6] = {x->step_s,  g0->t_gemm, g0->t_attn,
                          g0->t_elem, g0->t_a2a,  g0->t_gather + g0->t_cfg};
    for (int k = 0; k < 6; k++) snprintf(c[6 + k], BN_CELL, "%.1f", ms[k] * 1e3);
    snprintf(c[12], BN_CELL, "%.1f%%", 100.0 * g0->t_comm / g0->t_step);
    snprintf(c[13], BN_CELL, "%.2f", x->speedup);
    snprintf(c[14], BN_CELL, "%.1f%%", 100.0 * x->eff);
    snprintf(c[15], BN_CELL, "%.1f", p->latency);
    snprintf(c[16], BN_CELL, "%.1f", p->videos_per_hour);
    snprintf(c[17], BN_CELL, "%.0f", g0->bytes_step / 1e6);
    if (e->o.check) snprintf(c[18], BN_CELL, "%ld", r->wrong);
    else snprintf(c[18], BN_CELL, "n/a");
    return WF_OK;
}

static void sc_footer(bn_run *e) {
    (void)e;
    printf("# step speed-up = step(1 GPU) / step(N); queue speed-up = (videos/h)(N) / (videos/h)(1);"
           " eff = speed-up / N\n");
}

static void sc_json(bn_run *e, json_t *o) {
    (void)e;
    json_object_set_new(o, "model", json_string(S.in.model.name));
    json_object_set_new(o, "tokens", json_integer(S.in.tokens));
    json_object_set_new(o, "steps_high", json_integer(S.in.steps_high));
    json_object_set_new(o, "steps_low", json_integer(S.in.steps_low));
    json_object_set_new(o, "per_node", json_integer(S.per_node));
    json_object_set_new(o, "queue", json_integer(S.queue));
    json_object_set_new(o, "calibrated", json_boolean(S.calibrate));
    json_object_set_new(o, "cost", pn_cost_json(&S.in.cost));
}

static void sc_row_json(bn_run *e, int i, const bn_row *r, json_t *x) {
    (void)e;
    json_object_set_new(x, "mode", json_string(r->cell[0]));
    json_object_set_new(x, "gpus", json_integer(S.gpus[i % S.ngpus]));
    if (r->st) {
        json_object_set_new(x, "error", json_string(r->err));
        return;
    }
    json_object_set_new(x, "step_ms", bu_real_or_null(S.rows[i].step_s * 1e3));
    json_object_set_new(x, "speedup", bu_real_or_null(S.rows[i].speedup));
    json_object_set_new(x, "efficiency", bu_real_or_null(S.rows[i].eff));
    json_object_set_new(x, "wrong", json_integer(r->wrong));
    json_object_set_new(x, "plan", pn_plan_json(&S.rows[i].p));
}

/* --csv FILE: the rows that got a plan (bench/plot_scaling.py reads it). */
static void sc_teardown(bn_run *e) {
    if (!S.csv) return;
    FILE *f = fopen(S.csv, "w");
    if (!f) {
        fprintf(stderr, "bench_scaling: cannot write %s: %s\n", S.csv, strerror(errno));
        e->ok = 0;
        return;
    }
    fprintf(f, "mode,gpus,nodes,used,replicas,layout,tokens_local,step_ms,gemm_ms,attn_ms,elem_ms,"
               "a2a_ms,other_ms,comm_pct,speedup,efficiency,video_s,videos_per_hour,"
               "mb_per_rank_step,wrong,cost\n");
    for (int i = 0; i < e->nrows; i++) {
        const srow *r = &S.rows[i];
        const pn_plan *p = &r->p;
        const pn_group *g0 = &p->group[0];
        char lay[160];
        if (e->rows[i].st) continue;
        ly_format(&p->layout, lay, sizeof lay);
        fprintf(f, "%s,%d,%s,%d,%d,\"%s\",%lld,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.4f,%.6f,%.6f,%.4f,"
                   "%.4f,%.3f,%ld,\"%s\"\n",
                e->rows[i].cell[0], S.gpus[i % S.ngpus], e->rows[i].cell[2], p->ranks * p->replicas,
                p->replicas, lay, (long long)g0->tokens_local, r->step_s * 1e3, g0->t_gemm * 1e3,
                g0->t_attn * 1e3, g0->t_elem * 1e3, g0->t_a2a * 1e3, (g0->t_gather + g0->t_cfg) * 1e3,
                100.0 * g0->t_comm / g0->t_step, r->speedup, r->eff, p->latency,
                p->videos_per_hour, g0->bytes_step / 1e6, e->rows[i].wrong, S.in.cost.source);
    }
    if (fclose(f)) {
        fprintf(stderr, "bench_scaling: cannot write %s\n", S.csv);
        e->ok = 0;
    }
}

static const bn_flag sc_flags[] = {{"--gpus", "LIST", 'p', NULL, 0, 0, parse_list},
                                   {"--per-node", "N", 'i', &S.per_node, 1, 1024, NULL},
                                   {"--size", "WxH", 'p', NULL, 0, 0, parse_size},
                                   {"--frames", "F", 'l', &S.frames, 1, 100001, NULL},
                                   {"--steps", "S", 'l', &S.steps, 1, 10000, NULL},
                                   {"--queue", "Q", 'l', &S.queue, 1, 1000000, NULL},
                                   {"--cost", "FILE.json", 's', &S.cost, 0, 0, NULL},
                                   {"--calibrate", NULL, 'i', &S.calibrate, 0, 1, NULL},
                                   {"--write-cost", "FILE", 's', &S.write_cost, 0, 0, NULL},
                                   {"--csv", "FILE", 's', &S.csv, 0, 0, NULL},
                                   {NULL, NULL, 0, NULL, 0, 0, NULL}};

static const bn_col sc_cols[] = {
    {"mode", NULL, -5, BN_TEXT, NULL},      {"gpus", NULL, 4, BN_TEXT, NULL},
    {"nodes", NULL, 5, BN_TEXT, NULL},      {"used", NULL, 4, BN_TEXT, NULL},
    {"layout", NULL, -42, BN_TEXT, NULL},   {"Ll", NULL, 6, BN_TEXT, NULL},
    {"step(ms)", NULL, 9, BN_TEXT, NULL},   {"gemm", NULL, 8, BN_TEXT, NULL},
    {"attn", NULL, 8, BN_TEXT, NULL},       {"elem", NULL, 8, BN_TEXT, NULL},
    {"a2a", NULL, 8, BN_TEXT, NULL},        {"other", NULL, 8, BN_TEXT, NULL},
    {"comm%", NULL, 6, BN_TEXT, NULL},      {"speedup", NULL, 8, BN_TEXT, NULL},
    {"eff", NULL, 6, BN_TEXT, NULL},        {"video(s)", NULL, 9, BN_TEXT, NULL},
    {"videos/h", NULL, 9, BN_TEXT, NULL},   {"MB/rk/st", NULL, 8, BN_TEXT, NULL},
    {"#wrong", NULL, 6, BN_TEXT, NULL}};

static const bn_bench sc_bench = {
    .name = "bench_scaling",
    .note = "--cost and --calibrate exclude each other; --threads, -w, -n apply to --calibrate.\n"
            "Metrics are defined in bench/PERFORMANCE.md (section Placement planner and scaling model).",
    .flags = sc_flags, .warm = 1, .iters = 5, .cols = sc_cols, .ncols = 19, .nkeys = 3,
    .json_digits = 8, .init = sc_init, .setup = sc_setup, .row = sc_row, .footer = sc_footer,
    .json = sc_json, .row_json = sc_row_json, .teardown = sc_teardown};

int main(int argc, char **argv) { return bn_main(&sc_bench, argc, argv); }
