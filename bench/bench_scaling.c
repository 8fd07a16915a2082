/* bench_scaling.c: the planner's scaling model (coordinator/planner/plan.h) for the Wan2.2-T2V-A14B 720p step,
 * extrapolated to 1..64 GPUs, in the nccl-tests shape.
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
#include "bench_util.h"
#include "pl_plan.h"

#define MAX_GPUS 64
#define CHECK_TOL 1e-9 /* relative: the counts are exact arithmetic, the times the same formula */

typedef struct row {
    const char *mode;
    int gpus, nodes;
    pn_plan p;
    double step_s;   /* denoising seconds per step: sum over groups of steps x step / steps */
    double speedup, eff;
    long wrong;
} row;

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
    const int64_t Ll = (in->tokens + 48 * U - 1) / (48 * U) * 48, Lp = Ll * U; /* 48-token quantum */
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
    int threads;
} calib;

static int measure_attention(calib *cb, int warm, int iters) {
    const int64_t L = cb->L, NH = cb->NH, HD = cb->HD;
    const size_t n = (size_t)(L * NH * HD);
    float *q = malloc(n * sizeof *q), *k = malloc(n * sizeof *k), *v = malloc(n * sizeof *v);
    float *o = malloc(n * sizeof *o);
    double *t = malloc((size_t)iters * sizeof *t);
    wk_backend *be = NULL;
    wf_err err;
    int rc = 1;
    if (!q || !k || !v || !o || !t) goto out;
    bu_fill_normal(q, n, 0, 1, 1);
    bu_fill_normal(k, n, 0, 1, 2);
    bu_fill_normal(v, n, 0, 1, 3);
    if (wk_backend_cpu_new(&be, cb->threads, &err)) {
        fprintf(stderr, "bench_scaling: %s\n", err.msg);
        goto out;
    }
    wk_tensor tq = wk_tensor_3d(WK_F32, q, L, NH, HD), tk = wk_tensor_3d(WK_F32, k, L, NH, HD);
    wk_tensor tv = wk_tensor_3d(WK_F32, v, L, NH, HD), to = wk_tensor_3d(WK_F32, o, L, NH, HD);
    for (int i = 0; i < warm + iters; i++) {
        double s = bu_now_s();
        if (wk_attention(be, &to, &tq, &tk, &tv, 1.0f / sqrtf((float)HD), NULL, &err)) {
            fprintf(stderr, "bench_scaling: wk_attention: %s\n", err.msg);
            goto out;
        }
        if (i >= warm) t[i - warm] = bu_now_s() - s;
    }
    qsort(t, (size_t)iters, sizeof *t, bu_cmp_double);
    double med = iters % 2 ? t[iters / 2] : 0.5 * (t[iters / 2 - 1] + t[iters / 2]);
    cb->attn = 4.0 * (double)L * (double)L * (double)NH * (double)HD / med;
    rc = 0;
out:
    wk_backend_destroy(&be);
    free(q);
    free(k);
    free(v);
    free(o);
    free(t);
    return rc;
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

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--gpus LIST] [--per-node N] [--size WxH] [--frames F] [--steps S]\n"
            "          [--queue Q] [--cost FILE.json | --calibrate [--threads N] [-w N] [-n N]\n"
            "          [--write-cost FILE]] [--check 0|1] [--csv FILE] [--json FILE]\n"
            "Metrics are defined in bench/PERFORMANCE.md (section Placement planner and scaling model).\n",
            argv0);
}

static int parse_list(const char *s, int *v, int cap) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *e;
        errno = 0;
        long x = strtol(p, &e, 10);
        if (errno || e == p || x < 1 || x > MAX_GPUS * 1024 || n == cap) return -1;
        v[n++] = (int)x;
        if (*e == ',') p = e + 1;
        else if (*e) return -1;
        else break;
    }
    return n;
}

static bool parse_i(const char *s, long lo, long hi, long *out) {
    char *e;
    errno = 0;
    long x = strtol(s, &e, 10);
    if (errno || e == s || *e || x < lo || x > hi) return false;
    *out = x;
    return true;
}

int main(int argc, char **argv) {
    int gpus[MAX_GPUS] = {1, 8, 16, 32, 64}, ngpus = 5;
    long per_node = 8, frames = 81, steps = 40, queue = 64, threads = 0, warm = 1, iters = 5, check = 1;
    long width = 1280, height = 720;
    const char *cost = NULL, *csv = NULL, *json = NULL, *write_cost = NULL;
    bool calibrate = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(argv[0]);
            return 0;
        } else if (!strcmp(a, "--calibrate")) {
            calibrate = true;
            continue;
        } else if (!v) {
            ok = false;
        } else if (!strcmp(a, "--gpus")) ok = (ngpus = parse_list(v, gpus, MAX_GPUS)) > 0;
        else if (!strcmp(a, "--per-node")) ok = parse_i(v, 1, 1024, &per_node);
        else if (!strcmp(a, "--size")) ok = sscanf(v, "%ldx%ld", &width, &height) == 2;
        else if (!strcmp(a, "--frames")) ok = parse_i(v, 1, 100001, &frames);
        else if (!strcmp(a, "--steps")) ok = parse_i(v, 1, 10000, &steps);
        else if (!strcmp(a, "--queue")) ok = parse_i(v, 1, 1000000, &queue);
        else if (!strcmp(a, "--threads")) ok = parse_i(v, 0, 4096, &threads);
        else if (!strcmp(a, "-w")) ok = parse_i(v, 0, 1000, &warm);
        else if (!strcmp(a, "-n")) ok = parse_i(v, 1, 1000, &iters);
        else if (!strcmp(a, "--check")) ok = parse_i(v, 0, 1, &check);
        else if (!strcmp(a, "--cost")) cost = v;
        else if (!strcmp(a, "--csv")) csv = v;
        else if (!strcmp(a, "--json")) json = v;
        else if (!strcmp(a, "--write-cost")) write_cost = v;
        else ok = false;
        if (!ok) {
            fprintf(stderr, "bench_scaling: bad option %s %s\n", a, v ? v : "");
            usage(argv[0]);
            return 2;
        }
        i++;
    }
    if (cost && calibrate) {
        fprintf(stderr, "bench_scaling: --cost and --calibrate exclude each other\n");
        return 2;
    }
    if (threads <= 0) threads = omp_get_max_threads();

    /* the inputs: the A14B preset at this size */
    pn_inputs in;
    pn_inputs_default(&in);
    in.ranks_per_node = (int)per_node;
    pn_request rq;
    pn_request_default(&rq);
    rq.width = width;
    rq.height = height;
    rq.frames = frames;
    rq.steps = steps;
    wf_err err;
    if (cost && pn_cost_load(&in.cost, cost, &err)) {
        fprintf(stderr, "bench_scaling: --cost: %s\n", err.msg);
        return 2;
    }
    if (pl_plan_preset_a14b(&in, &rq, &err)) {
        fprintf(stderr, "bench_scaling: %s\n", err.msg);
        return 2;
    }

    printf("# bench_scaling: the planner's cost model (coordinator/planner/plan.h), %s %lldx%lld x %lld frames\n",
           in.model.name, (long long)in.width, (long long)in.height, (long long)in.frames);
    printf("# request: %lld tokens (latent %lldx%lldx%lld), text %lld, %lld steps: %lld high-noise, "
           "%lld low-noise; CFG %s; %ld GPUs per node\n",
           (long long)in.tokens, (long long)in.T, (long long)in.h, (long long)in.w,
           (long long)in.text_len, (long long)in.steps, (long long)in.steps_high,
           (long long)in.steps_low, in.cfg ? "on" : "off", per_node);
    calib cb = {0, 0, 0, 1024, 8, 128, (int)threads};
    if (calibrate) {
        double peak = bu_measure_peak((int)threads) * 1e9;
        if (measure_attention(&cb, (int)warm, (int)iters)) return 1;
        cb.gemm = peak;
        cb.mem = measure_triad((int)threads, (int)iters);
        printf("# calibrated on this CPU, %d threads: sgemm %.1f GFLOP/s (f32 2048^3), wk_attention "
               "%.1f GFLOP/s (L %lld NH %lld HD %lld, f32), triad %.1f GB/s\n",
               (int)threads, cb.gemm * 1e-9, cb.attn * 1e-9, (long long)cb.L, (long long)cb.NH,
               (long long)cb.HD, cb.mem * 1e-9);
        in.cost.gemm_flops = cb.gemm;
        in.cost.attn_flops = cb.attn;
        in.cost.mem_bw = cb.mem;
        in.cost.vae_flops = cb.gemm; /* the VAE's convolutions are sgemm-bound on the CPU */
        snprintf(in.cost.source, sizeof in.cost.source,
                 "measured on this CPU (GEMM, attention, memory) + stated network and memory");
        if (write_cost) {
            json_t *o = pn_cost_json(&in.cost);
            int r = json_dump_file(o, write_cost, JSON_INDENT(1) | JSON_REAL_PRECISION(8));
            json_decref(o);
            if (r) {
                fprintf(stderr, "bench_scaling: cannot write %s\n", write_cost);
                return 1;
            }
            printf("# wrote the calibrated cost to %s (wanfarm plan --cost %s)\n", write_cost, write_cost);
        }
    }
    const pn_cost *c = &in.cost;
    printf("# cost: %s\n", c->source);
    printf("#   GEMM %.1f TFLOP/s, attention %.1f TFLOP/s, VAE %.1f TFLOP/s, memory %.2f TB/s, "
           "elements %g B\n",
           c->gemm_flops * 1e-12, c->attn_flops * 1e-12, c->vae_flops * 1e-12, c->mem_bw * 1e-12,
           c->elem_bytes);
    printf("#   NVLink %.0f GB/s, InfiniBand %.0f GB/s per GPU, latency %.0f/%.0f us; %.0f GB per GPU\n",
           c->intra_bw * 1e-9, c->inter_bw * 1e-9, c->intra_latency * 1e6, c->inter_latency * 1e6,
           c->mem_per_rank * 1e-9);
    printf("# modes: step = one worker world, one video (queue 1); queue = %ld videos, worker worlds "
           "allowed; check %s\n", queue, check ? "on" : "off");
    printf("#\n# %-5s %4s %5s %4s %-42s %6s %9s %8s %8s %8s %8s %8s %6s %8s %6s %9s %9s %8s %6s\n",
           "mode", "gpus", "nodes", "used", "layout", "Ll", "step(ms)", "gemm", "attn", "elem",
           "a2a", "other", "comm%", "speedup", "eff", "video(s)", "videos/h", "MB/rk/st", "#wrong");

    row rows[2 * MAX_GPUS];
    int nrows = 0;
    long out_of_bounds = 0;
    int failed = 0;
    for (int mode = 0; mode < 2; mode++) {
        /* the one-GPU baseline of this mode (whether or not --gpus lists 1) */
        pn_plan b1;
        in.world = 1;
        in.queue = mode ? queue : 1;
        in.replicas = mode ? PN_FREE : 1;
        if (pn_choose(&in, &b1, &err)) {
            printf("  %-5s %4d FAILED: %s\n", mode ? "queue" : "step", 1, err.msg);
            failed++;
            continue;
        }
        const double base_step = b1.group[0].t_step, base_rate = b1.videos_per_hour;
        for (int gi = 0; gi < ngpus; gi++) {
            row *r = &rows[nrows];
            memset(r, 0, sizeof *r);
            r->mode = mode ? "queue" : "step";
            r->gpus = gpus[gi];
            r->nodes = (int)((gpus[gi] + per_node - 1) / per_node);
            in.world = gpus[gi];
            in.queue = mode ? queue : 1;
            in.replicas = mode ? PN_FREE : 1;
            if (pn_choose(&in, &r->p, &err)) {
                printf("  %-5s %4d %5d FAILED: %s\n", r->mode, r->gpus, r->nodes, err.msg);
                failed++;
                continue;
            }
            const pn_plan *p = &r->p;
            double den = 0;
            for (int g = 0; g < ly_groups(&p->layout); g++) den += (double)p->group[g].steps * p->group[g].t_step;
            r->step_s = den / (double)(in.steps_high + in.steps_low);
            char why[300] = "";
            if (check)
                for (int g = 0; g < ly_groups(&p->layout); g++) r->wrong += check_group(&in, p, g, why, sizeof why);
            out_of_bounds += r->wrong;
            r->speedup = mode ? p->videos_per_hour / base_rate : base_step / r->step_s;
            r->eff = r->speedup / r->gpus;
            const pn_group *g0 = &p->group[0];
            char lay[200], l1[160];
            ly_format(&p->layout, l1, sizeof l1);
            if (p->replicas > 1) snprintf(lay, sizeof lay, "%d x %s", p->replicas, l1);
            else snprintf(lay, sizeof lay, "%s", l1);
            char wr[16] = "n/a";
            if (check) snprintf(wr, sizeof wr, "%ld", r->wrong);
            printf("  %-5s %4d %5d %4d %-42s %6lld %9.1f %8.1f %8.1f %8.1f %8.1f %8.1f %5.1f%% %8.2f "
                   "%5.1f%% %9.1f %9.1f %8.0f %6s\n",
                   r->mode, r->gpus, r->nodes, p->ranks * p->replicas, lay,
                   (long long)g0->tokens_local, r->step_s * 1e3, g0->t_gemm * 1e3, g0->t_attn * 1e3,
                   g0->t_elem * 1e3, g0->t_a2a * 1e3, (g0->t_gather + g0->t_cfg) * 1e3,
                   100.0 * g0->t_comm / g0->t_step, r->speedup, 100.0 * r->eff, p->latency,
                   p->videos_per_hour, g0->bytes_step / 1e6, wr);
            if (r->wrong) printf("#   ^ %s\n", why);
            nrows++;
        }
    }
    int ok = out_of_bounds == 0 && failed == 0;
    printf("# Out of bounds values : %ld %s\n", out_of_bounds, ok ? "OK" : "FAILED");
    if (failed) printf("# Failed rows : %d\n", failed);
    printf("# step speed-up = step(1 GPU) / step(N); queue speed-up = (videos/h)(N) / (videos/h)(1);"
           " eff = speed-up / N\n");

    if (csv) {
        FILE *f = fopen(csv, "w");
        if (!f) {
            fprintf(stderr, "bench_scaling: cannot write %s: %s\n", csv, strerror(errno));
            return 1;
        }
        fprintf(f, "mode,gpus,nodes,used,replicas,layout,tokens_local,step_ms,gemm_ms,attn_ms,elem_ms,"
                   "a2a_ms,other_ms,comm_pct,speedup,efficiency,video_s,videos_per_hour,"
                   "mb_per_rank_step,wrong,cost\n");
        for (int i = 0; i < nrows; i++) {
            const row *r = &rows[i];
            const pn_plan *p = &r->p;
            const pn_group *g0 = &p->group[0];
            char lay[160];
            ly_format(&p->layout, lay, sizeof lay);
            fprintf(f, "%s,%d,%d,%d,%d,\"%s\",%lld,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.4f,%.6f,%.6f,%.4f,"
                       "%.4f,%.3f,%ld,\"%s\"\n",
                    r->mode, r->gpus, r->nodes, p->ranks * p->replicas, p->replicas, lay,
                    (long long)g0->tokens_local, r->step_s * 1e3, g0->t_gemm * 1e3, g0->t_attn * 1e3,
                    g0->t_elem * 1e3, g0->t_a2a * 1e3, (g0->t_gather + g0->t_cfg) * 1e3,
                    100.0 * g0->t_comm / g0->t_step, r->speedup, r->eff, p->latency,
                    p->videos_per_hour, g0->bytes_step / 1e6, r->wrong, c->source);
        }
        if (fclose(f)) {
            fprintf(stderr, "bench_scaling: cannot write %s\n", csv);
            return 1;
        }
    }
    if (json) {
        json_t *o = json_object(), *rs = json_array();
        json_object_set_new(o, "bench", json_string("bench_scaling"));
        json_object_set_new(o, "model", json_string(in.model.name));
        json_object_set_new(o, "tokens", json_integer(in.tokens));
        json_object_set_new(o, "steps_high", json_integer(in.steps_high));
        json_object_set_new(o, "steps_low", json_integer(in.steps_low));
        json_object_set_new(o, "per_node", json_integer(per_node));
        json_object_set_new(o, "queue", json_integer(queue));
        json_object_set_new(o, "calibrated", json_boolean(calibrate));
        json_object_set_new(o, "cost", pn_cost_json(c));
        for (int i = 0; i < nrows; i++) {
            json_t *x = json_object();
            json_object_set_new(x, "mode", json_string(rows[i].mode));
            json_object_set_new(x, "gpus", json_integer(rows[i].gpus));
            json_object_set_new(x, "step_ms", bu_real_or_null(rows[i].step_s * 1e3));
            json_object_set_new(x, "speedup", bu_real_or_null(rows[i].speedup));
            json_object_set_new(x, "efficiency", bu_real_or_null(rows[i].eff));
            json_object_set_new(x, "wrong", json_integer(rows[i].wrong));
            json_object_set_new(x, "plan", pn_plan_json(&rows[i].p));
            json_array_append_new(rs, x);
        }
        json_object_set_new(o, "rows", rs);
        json_object_set_new(o, "out_of_bounds", json_integer(out_of_bounds));
        json_object_set_new(o, "ok", json_boolean(ok));
        int r = json_dump_file(o, json, JSON_INDENT(1) | JSON_REAL_PRECISION(8));
        json_decref(o);
        if (r) {
            fprintf(stderr, "bench_scaling: cannot write %s\n", json);
            return 1;
        }
    }
    return ok ? 0 : 1;
}
