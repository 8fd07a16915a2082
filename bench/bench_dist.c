/* bench_dist.c: one sequence-parallel (Ulysses) DiT forward over the MPI world: where each rank's
 * time goes (compute, all-to-all, all-gather), how many bytes it sends, and whether the result is
 * the one-rank forward's; a plug-in of the bench engine (bench_engine.h), in the nccl-tests shape.
 *
 * What it is: rank 0 writes a random-weight WanTransformer3DModel at the Wan2.1-1.3B block width
 * (D 1536 = 12 heads of 128, FFN 8960, text_dim 4096; --layers blocks, f32) into a temporary folder
 * from a child process (as bench_dit does); every rank loads it with dit_load and makes the same
 * inputs (seeded). Then -w warm-up and -n timed dit_forward calls run with sp = the world (U = the
 * number of ranks), each after a barrier and cm_stats_reset, so the counters hold one forward.
 * Each rank reports the timed forward with the median wall time: wall, seconds inside the
 * all-to-alls and the all-gather, compute = wall - collectives, the bytes it sent per collective
 * and the bytes the formulas predict (dit.h, bench/PERFORMANCE.md "bench_dist"), and
 * max |out - out_1rank|, out_1rank being dit_forward with sp = NULL on rank 0, broadcast. Rank 0
 * gathers the rows (MPI_Gather); the engine prints one per rank, a summary row and a footer that
 * says OK or FAILED (the other ranks run it quiet); the exit status is 1 when it says FAILED.
 * What it is not: a peer comparison (bench_dit compares one forward with Diffusers; xDiT or
 * Diffusers over torch.distributed cannot run here), a test (the tests dit.h names own Ulysses
 * correctness), or a whole-pipeline benchmark (no CFG pair, no expert hand-off, no VAE).
 * Run:   mpirun -np 2 --bind-to none build/bench/bench_dist [--layers 2 --latent 5,40,56
 *            --text-len 512 -w 1 -n 3 --threads N --check 1 --json FILE --keep 0]
 *        bench/run_dist.sh [BUILD_DIR]        (np 1, 2 and 4, then a speed-up table)
 */
#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <omp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "arena.h"
#include "backend.h"
#include "backend_load.h"
#include "bench_dit_ckpt.h"
#include "bench_engine.h"
#include "comm.h"
#include "dit.h"

/* The fixed part of the config: Wan2.1-1.3B's block width (bench_dit_ckpt.h, as bench_dit). */
enum { HDIM = BDC_HDIM, CIN = BDC_CIN, COUT = BDC_COUT,
       TEXT_DIM = BDC_TEXT_DIM, ROPE_MAX = BDC_ROPE_MAX,
       FREQ_DIM = BDC_FREQ_DIM, PT = BDC_PT, PH = BDC_PH, PW = BDC_PW };
/* the block width (--width): heads of HDIM and the FFN */
static const bdc_width *g_width = &BDC_WAN21_13B;
#define NHEADS (g_width->heads)
#define DIM (g_width->heads * HDIM)
#define FFN_DIM (g_width->ffn)
#define TIMESTEP 999.0f
#define WEIGHT_STD BDC_WEIGHT_STD
#define DIFF_TOL 1e-5  /* bound on max |out - out_1rank| / rms(out_1rank); expected: 0 */
#define DIFF_TOL_BF16 3e-2 /* on GPUs (bf16 GEMM inputs, and GEMM algorithms that depend on M) */

typedef struct bcfg {
    int layers;
    int64_t F, H, W, Lt;
} bcfg;

/* Runs in rank 0's child: the f32 checkpoint (bench_dit_ckpt.h). */
static int write_folder(const char *dir, const void *ctx) {
    const bcfg *c = ctx;
    return bdc_write_width(dir, c->layers, WK_F32, g_width, "bench_dist");
}

/* ------------------------------------------------------------------------------------------ */

/* A broadcast that waits without spinning (MPI_Test + 1 ms sleeps): while rank 0 writes the
 * checkpoint or runs the 1-rank reference, the other ranks leave the cores to it, which matters
 * when ranks outnumber cores. */
static void quiet_bcast(void *buf, int count, MPI_Datatype type, int root) {
    MPI_Request rq;
    MPI_Ibcast(buf, count, type, root, MPI_COMM_WORLD, &rq);
    const struct timespec ms = {0, 1000000};
    for (int done = 0;;) {
        MPI_Test(&rq, &done, MPI_STATUS_IGNORE);
        if (done) break;
        nanosleep(&ms, NULL);
    }
}

/* FLOPs of one rank's share of a forward (bench_dit's count with Ll local rows; self-attention
 * is Ll x Lp per rank: NH/U heads over all Lp tokens), and the part every rank repeats. */
static double rank_flops(const bcfg *c, int64_t Ll, int64_t Lp, double *replicated) {
    const double D = DIM, FF = FFN_DIM, Lt = (double)c->Lt, l = (double)Ll, lp = (double)Lp,
                 P = PT * PH * PW;
    double rep = c->layers * (2 * 2 * Lt * D * D)                  /* cross-attention k, v */
                 + 2 * (FREQ_DIM * D + D * D + 6 * D * D)          /* time embedder + proj */
                 + 2 * Lt * (TEXT_DIM * D + D * D);                /* text embedder */
    double split = c->layers * (4 * 2 * l * D * D + 4 * l * lp * D + 2 * 2 * l * D * D +
                                4 * l * Lt * D + 2 * 2 * l * D * FF) +
                   2 * l * D * (CIN * P) + 2 * l * D * (COUT * P);
    *replicated = rep;
    return rep + split;
}

/* One rank's row, gathered to rank 0 as bytes (every rank runs this binary). */
typedef struct drow {
    int32_t rank, threads, cpus, status; /* status: the forwards' wf_status (0 OK) */
    double wall_s, a2a_s, ag_s, other_s, compute_s, ref_s, rss_mib, max_diff, rms_ref;
    uint64_t a2a_bytes, ag_bytes, a2a_calls, ag_calls, other_calls;
    uint64_t a2a_pred, ag_pred;
    int32_t bytes_ok, checked;
    int64_t nonfinite;
} drow;

static json_t *row_json(const drow *r) {
    json_t *o = json_object();
    json_object_set_new(o, "rank", json_integer(r->rank));
    json_object_set_new(o, "threads", json_integer(r->threads));
    json_object_set_new(o, "cpus", json_integer(r->cpus));
    json_object_set_new(o, "wall_ms", bu_real_or_null(r->wall_s * 1e3));
    json_object_set_new(o, "alltoall_ms", bu_real_or_null(r->a2a_s * 1e3));
    json_object_set_new(o, "allgather_ms", bu_real_or_null(r->ag_s * 1e3));
    json_object_set_new(o, "compute_ms", bu_real_or_null(r->compute_s * 1e3));
    json_object_set_new(o, "alltoall_bytes", json_integer((json_int_t)r->a2a_bytes));
    json_object_set_new(o, "alltoall_bytes_formula", json_integer((json_int_t)r->a2a_pred));
    json_object_set_new(o, "allgather_bytes", json_integer((json_int_t)r->ag_bytes));
    json_object_set_new(o, "allgather_bytes_formula", json_integer((json_int_t)r->ag_pred));
    json_object_set_new(o, "alltoall_calls", json_integer((json_int_t)r->a2a_calls));
    json_object_set_new(o, "allgather_calls", json_integer((json_int_t)r->ag_calls));
    json_object_set_new(o, "bytes_ok", json_boolean(r->bytes_ok));
    json_object_set_new(o, "max_abs_diff", r->checked ? bu_real_or_null(r->max_diff) : json_null());
    json_object_set_new(o, "rss_mib", bu_real_or_null(r->rss_mib));
    return o;
}

/* ------------------------------------------------------------------------------------------ */
/* the plug-in: setup runs the forwards on every rank and gathers one row per rank to rank 0; the
 * engine prints them (rows 0..np-1, then "all") */

static struct {
    bcfg c;
    int rank, np, root, nlocal, cpus;
    long ncores;
    char dir[1100];
    int64_t L, Ll, Lp, L1; /* tokens, per rank (dit_tokens_per_rank), padded, alone */
    uint64_t a2a_pred, ag_pred, a2a_calls_want, ag_calls_want;
    double load_s;
    size_t arena_bytes;
    cm_comm *world;
    dit_model *m;
    wk_arena arena;
    dit_shape shp;
    float *lat, *txt, *out, *ref, ts;
    double *walls;
    cm_stats *stats;
    int any;               /* a rank failed before or in the forwards */
    drow me, *rows, all;   /* this rank's; rank 0: every rank's and their summary */
    double tol;            /* DIFF_TOL x rms(out_1rank) */
    int checked, same;     /* every rank checked; every max|diff| 0 */
} D = {.c = {.layers = 2, .F = 5, .H = 40, .W = 56, .Lt = 512}, .ts = TIMESTEP};

static char g_device[8] = "cpu"; /* --device cpu|cuda */
static int g_overlap;            /* --overlap 0|1: cm_ialltoall under the projections */

static int parse_width(const char *v, void *dst) {
    (void)dst;
    if (!strcmp(v, "1.3b")) g_width = &BDC_WAN21_13B;
    else if (!strcmp(v, "a14b")) g_width = &BDC_A14B;
    else return 1;
    return 0;
}

static int parse_device(const char *v, void *dst) {
    (void)dst;
    if (strcmp(v, "cpu") && strcmp(v, "cuda")) return 1;
    snprintf(g_device, sizeof g_device, "%s", v);
    return 0;
}

static int parse_latent(const char *v, void *dst) {
    (void)dst;
    return bu_parse_latent(v, CIN, &D.c.F, &D.c.H, &D.c.W);
}

/* The world size and shape's limits, the threads per rank (the node's cores shared by the ranks
 * on it), then the folder, written by rank 0's child (no OpenMP thread exists yet) while the
 * others wait. */
static int dist_init(bn_run *e) {
    const bcfg *c = &D.c;
    D.L = c->F > 0 && c->H > 1 && c->W > 1 ? (c->F / PT) * (c->H / PH) * (c->W / PW) : 0;
    if (c->F < 1 || c->H < 2 || c->W < 2 || c->H % PH || c->W % PW || c->F > ROPE_MAX ||
        c->H / PH > ROPE_MAX || c->W / PW > ROPE_MAX || NHEADS % D.np || D.np > D.L) {
        if (D.root)
            fprintf(stderr, "bench_dist: bad value (--latent %lld,%lld,%lld (H, W even); %d ranks "
                    "must divide the %d heads and be at most the tokens)\n", (long long)c->F,
                    (long long)c->H, (long long)c->W, D.np, NHEADS);
        return 2;
    }
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, D.rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &D.nlocal);
    MPI_Comm_free(&node);
    D.ncores = sysconf(_SC_NPROCESSORS_ONLN);
    if (D.ncores < 1) D.ncores = 1;
    if (!e->o.threads) e->o.threads = D.ncores / D.nlocal > 0 ? (int)(D.ncores / D.nlocal) : 1;
    cpu_set_t aff;
    D.cpus = sched_getaffinity(0, sizeof aff, &aff) == 0 ? CPU_COUNT(&aff) : -1;
    int wrc = 0;
    double write_s = 0;
    if (D.root)
        wrc = bu_write_in_child("bench_dist", write_folder, c, e->o.keep, D.dir, sizeof D.dir,
                                &write_s);
    quiet_bcast(&wrc, 1, MPI_INT, 0);
    if (wrc) return 1;
    MPI_Bcast(D.dir, (int)sizeof D.dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (D.root) snprintf(e->dir, sizeof e->dir, "%s", D.dir); /* the engine removes it, rank 0 */
    e->write_s = write_s;
    return 0;
}

/* --device cuda: visible GPU local_rank % n, bf16 (several ranks may share it). */
static wf_status open_gpu(wk_backend **be, wf_err *err) {
    wk_cuda_info info;
    wk_cuda_device devs[16];
    wf_status st = wk_cuda_devices(&info, devs, 16, err);
    if (st) return st;
    if (info.n_devices < 1) return wf_fail(err, WF_EUNSUPPORTED, "--device cuda: no visible GPU");
    int n = info.n_devices < 16 ? info.n_devices : 16;
    return wk_backend_cuda_new(be, cm_local_rank() % n, WK_PREC_BF16, err);
}

/* On a GPU the weights go to the device and the Ulysses group carries device buffers (NCCL, or
 * MPI through host memory on a shared GPU); --overlap on either. */
static wf_status place(wk_backend *be, int U, wf_err *err) {
    wf_status st = WF_OK;
    if (be->device != WK_DEV_CPU) st = dit_upload(D.m, be, err);
    if (!st && be->device != WK_DEV_CPU && U > 1)
        st = cm_enable_device(D.world, be->ordinal, be->queue, err);
    D.world->overlap = g_overlap != 0;
    return st;
}

/* Every rank: the communicator, the backend, load (the real loader), the arena, the same inputs;
 * the per-rank token counts from the backend's row quantum. 0 when every rank got there. */
static int dist_prepare(bn_run *e, wf_err *err) {
    const bcfg *c = &D.c;
    const int U = D.np;
    wf_status st = cm_world(&D.world, err);
    if (!st && !strcmp(g_device, "cuda")) st = open_gpu(&e->be, err);
    else if (!st) st = wk_backend_cpu_new(&e->be, e->o.threads, err);
    if (!st) {
        e->o.threads = e->be->nthreads;
        omp_set_num_threads(e->o.threads);
    }
    const int64_t q = e->be ? e->be->row_quantum : 1;
    D.Ll = dit_tokens_per_rank(D.L, U, q);
    D.Lp = D.Ll * U;
    D.L1 = dit_tokens_per_rank(D.L, 1, q);
    D.a2a_pred = 4ull * (uint64_t)c->layers * (uint64_t)(U - 1) * (uint64_t)D.Ll *
                 (uint64_t)(DIM / U) * 4ull;
    D.ag_pred = (uint64_t)(U - 1) * (uint64_t)D.Ll * (uint64_t)(PT * PH * PW) * COUT * 4ull;
    D.a2a_calls_want = U > 1 ? 4ull * (uint64_t)c->layers : 0;
    D.ag_calls_want = U > 1;
    double t0 = bu_now_s();
    if (!st) st = dit_load(&D.m, D.dir, err);
    if (!st) st = place(e->be, U, err);
    D.load_s = bu_now_s() - t0;
    D.shp = (dit_shape){.F = c->F, .H = c->H, .W = c->W, .Lt = c->Lt, .per_token_t = false};
    size_t ab1 = 0;
    if (!st) st = dit_arena_bytes(D.m, e->be, &D.shp, U, &D.arena_bytes, err);
    if (!st && D.root && e->o.check) /* the reference */
        st = dit_arena_bytes(D.m, e->be, &D.shp, 1, &ab1, err);
    if (!st)
        st = wk_arena_init_on(&D.arena, e->be, "dit activations",
                              D.arena_bytes > ab1 ? D.arena_bytes : ab1, err);
    const size_t nout = (size_t)(COUT * c->F * c->H * c->W), nlat = (size_t)(CIN * c->F * c->H * c->W),
                 ntxt = (size_t)(c->Lt * TEXT_DIM);
    if (!st) {
        D.lat = malloc(nlat * sizeof *D.lat);
        D.txt = malloc(ntxt * sizeof *D.txt);
        D.out = malloc(nout * sizeof *D.out);
        D.ref = malloc(nout * sizeof *D.ref);
        D.walls = malloc((size_t)e->o.iters * sizeof *D.walls);
        D.stats = calloc((size_t)e->o.iters, sizeof *D.stats);
        if (!D.lat || !D.txt || !D.out || !D.ref || !D.walls || !D.stats)
            st = wf_fail(err, WF_ENOMEM, "out of memory");
    }
    if (!st) {
        bu_fill_normal(D.lat, nlat, 0.0, 1.0, bu_name_seed("latents"));
        bu_fill_normal(D.txt, ntxt, 0.0, 1.0, bu_name_seed("text"));
    }
    if (st) fprintf(stderr, "bench_dist: rank %d: %s: %s\n", D.rank, wf_status_str(st), err->msg);
    int any = st;
    MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return any;
}

static void print_header(const bn_run *e) {
    const bcfg *c = &D.c;
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    int nlib = 0, threads = e->o.threads, np = D.np;
    MPI_Get_library_version(lib, &nlib);
    lib[strcspn(lib, ",\n")] = 0;
    double rep = 0, fl1 = rank_flops(c, D.L1, D.L1, &rep), flu = rank_flops(c, D.Ll, D.Lp, &rep);
    printf("# bench_dist: Ulysses DiT forward over %d MPI rank%s (sp = MPI_COMM_WORLD, %s, "
           "all-to-alls %s), wanfarm %s backend%s, %d thread%s/rank, OpenBLAS %s, %s\n", np,
           np == 1 ? "" : "s",
           D.world ? (D.world->backend == CM_NCCL ? "NCCL"
                      : D.world->backend == CM_STAGED ? "MPI through host memory" : "MPI")
                   : "?",
           g_overlap ? "overlapped with the projections" : "blocking",
           e->be ? e->be->name : "?", e->be && e->be->device != WK_DEV_CPU ? " (bf16)" : "",
           threads,
           threads == 1 ? "" : "s", openblas_get_config(), lib);
    printf("# node: %ld cores, %d rank%s on rank 0's node, rank 0 may run on %d cpus%s\n",
           D.ncores, D.nlocal, D.nlocal == 1 ? "" : "s", D.cpus,
           (long)D.nlocal * threads > D.ncores ? " -- oversubscribed: more threads than cores" : "");
    printf("# model: WanTransformer3DModel at %s width (D %d = %dx%d, FFN %d, text_dim "
           "%d, patch %dx%dx%d), %d layer%s, random weights N(0, %.2g), f32; %.1f MiB mapped "
           "by every rank (%s)\n", g_width->name, DIM, NHEADS, HDIM, FFN_DIM, TEXT_DIM, PT, PH, PW,
           c->layers,
           c->layers == 1 ? "" : "s", WEIGHT_STD, D.m ? bu_mib((double)D.m->weight_bytes) : NAN, D.dir);
    printf("# input: latent %dx%lldx%lldx%lld -> L %lld tokens, text Lt %lld, timestep %g; "
           "warm-up %d, iters %d (row = the timed forward with the median wall time)\n", CIN,
           (long long)c->F, (long long)c->H, (long long)c->W, (long long)D.L, (long long)c->Lt,
           (double)TIMESTEP, e->o.warm, e->o.iters);
    printf("# split: U %d, Ll %lld rows per rank (a multiple of %d), Lp %lld (%lld padded "
           "tokens, masked); arena %.1f MiB per rank\n", np, (long long)D.Ll,
           e->be ? e->be->row_quantum : 0, (long long)D.Lp, (long long)(D.Lp - D.L),
           bu_mib((double)D.arena_bytes));
    printf("# work: %.1f GFLOP per rank (%.1f of it repeated on every rank: text and time "
           "embedders, cross-attention k/v); one rank alone: %.1f GFLOP\n", flu * 1e-9,
           rep * 1e-9, fl1 * 1e-9);
    printf("# checkpoint written in %.1f s (rank 0's child), dit_load %.3f s (rank 0); check %s\n",
           e->write_s, D.load_s,
           e->o.check ? "max|out - out_1rank| (sp = NULL on rank 0), bound 1e-5 x rms(out_1rank)"
                      : "off");
    fflush(stdout);
}

/* -w + -n forwards: barrier, reset the counters, one timed forward (the barrier outside the
 * time, so the engine's bn_time does not fit), then whether any rank failed. */
static void run_forwards(bn_run *e, wf_err *err) {
    for (int i = 0; i < e->o.warm + e->o.iters && !D.any; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        cm_stats_reset(D.world);
        double s0 = bu_now_s();
        wf_status st = dit_forward(D.m, e->be, &D.arena, &D.shp, D.world, D.lat, &D.ts, D.txt,
                                   D.out, NULL, NULL, err);
        double t = bu_now_s() - s0;
        if (i >= e->o.warm) {
            D.walls[i - e->o.warm] = t;
            D.stats[i - e->o.warm] = D.world->stats;
        }
        if (st) fprintf(stderr, "bench_dist: rank %d: forward: %s\n", D.rank, err->msg);
        D.any = st;
        MPI_Allreduce(MPI_IN_PLACE, &D.any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        e->failed_runs += D.any != 0;
    }
}

/* This rank's row: the median forward's breakdown (the lower middle for even -n); the bytes and
 * calls of every timed one against the formulas. */
static void fill_row(bn_run *e) {
    drow *me = &D.me;
    const int iters = e->o.iters;
    *me = (drow){.rank = D.rank, .threads = e->o.threads, .cpus = D.cpus, .status = D.any,
                 .a2a_pred = D.a2a_pred, .ag_pred = D.ag_pred, .wall_s = NAN, .a2a_s = NAN,
                 .ag_s = NAN, .other_s = NAN, .compute_s = NAN, .ref_s = NAN, .max_diff = NAN,
                 .rms_ref = NAN};
    if (D.any) return;
    int med = 0, bytes_ok = 1;
    for (int i = 0; i < iters; i++) {
        int below = 0, equal_before = 0;
        for (int j = 0; j < iters; j++) {
            below += D.walls[j] < D.walls[i];
            equal_before += j < i && D.walls[j] == D.walls[i];
        }
        if (below + equal_before == (iters - 1) / 2) med = i;
        const cm_stats *s = &D.stats[i];
        uint64_t other = 0;
        for (int op = 0; op < CM_NOPS; op++)
            if (op != CM_ALLTOALL && op != CM_ALLGATHER) other += s->calls[op];
        bytes_ok &= s->bytes[CM_ALLTOALL] == D.a2a_pred && s->bytes[CM_ALLGATHER] == D.ag_pred &&
                    s->calls[CM_ALLTOALL] == D.a2a_calls_want &&
                    s->calls[CM_ALLGATHER] == D.ag_calls_want && other == 0;
    }
    const cm_stats *s = &D.stats[med];
    me->wall_s = D.walls[med];
    me->a2a_s = s->seconds[CM_ALLTOALL];
    me->ag_s = s->seconds[CM_ALLGATHER];
    me->other_s = 0;
    for (int op = 0; op < CM_NOPS; op++)
        if (op != CM_ALLTOALL && op != CM_ALLGATHER) {
            me->other_s += s->seconds[op];
            me->other_calls += s->calls[op];
        }
    me->compute_s = me->wall_s - me->a2a_s - me->ag_s - me->other_s;
    me->a2a_bytes = s->bytes[CM_ALLTOALL];
    me->ag_bytes = s->bytes[CM_ALLGATHER];
    me->a2a_calls = s->calls[CM_ALLTOALL];
    me->ag_calls = s->calls[CM_ALLGATHER];
    me->bytes_ok = bytes_ok;
    for (size_t k = 0; k < (size_t)(COUT * D.c.F * D.c.H * D.c.W); k++)
        me->nonfinite += !isfinite(D.out[k]);
}

/* The reference: the 1-rank forward (sp = NULL) on rank 0, broadcast; the others sleep. */
static void check_reference(bn_run *e, wf_err *err) {
    const size_t nout = (size_t)(COUT * D.c.F * D.c.H * D.c.W);
    int rst = 0;
    if (D.root) {
        double s0 = bu_now_s();
        rst = dit_forward(D.m, e->be, &D.arena, &D.shp, NULL, D.lat, &D.ts, D.txt, D.ref, NULL,
                          NULL, err);
        D.me.ref_s = bu_now_s() - s0;
        if (rst) fprintf(stderr, "bench_dist: 1-rank forward: %s\n", err->msg);
    }
    quiet_bcast(&rst, 1, MPI_INT, 0);
    if (rst) {
        e->failed_runs++;
        return;
    }
    MPI_Bcast(D.ref, (int)nout, MPI_FLOAT, 0, MPI_COMM_WORLD);
    double mx = 0, ss = 0;
    for (size_t k = 0; k < nout; k++) {
        double d = fabs((double)D.out[k] - D.ref[k]);
        if (!(d <= mx)) mx = d; /* NaN sticks */
        ss += (double)D.ref[k] * D.ref[k];
    }
    D.me.max_diff = mx;
    D.me.rms_ref = sqrt(ss / (double)nout);
    D.me.checked = 1;
}

/* Rank 0: the "all" row (wall max, a2a/ag/compute mean, bytes sum, max|diff| and rss max). */
static void summarize(void) {
    drow *a = &D.all;
    *a = (drow){.bytes_ok = 1, .checked = 1};
    D.same = 1;
    D.tol = (strcmp(g_device, "cuda") ? DIFF_TOL : DIFF_TOL_BF16) * D.rows[0].rms_ref;
    for (int r = 0; r < D.np; r++) {
        const drow *w = &D.rows[r];
        if (w->status) continue;
        a->checked &= w->checked;
        D.same &= !w->checked || w->max_diff == 0;
        if (w->checked && !(w->max_diff <= a->max_diff)) a->max_diff = w->max_diff;
        if (w->wall_s > a->wall_s) a->wall_s = w->wall_s;
        a->a2a_s += w->a2a_s / D.np;
        a->ag_s += w->ag_s / D.np;
        a->compute_s += w->compute_s / D.np;
        a->a2a_bytes += w->a2a_bytes;
        a->ag_bytes += w->ag_bytes;
        a->a2a_pred += w->a2a_pred;
        a->ag_pred += w->ag_pred;
        a->threads += w->threads;
        if (w->rss_mib > a->rss_mib) a->rss_mib = w->rss_mib;
        a->bytes_ok &= w->bytes_ok;
    }
    D.checked = a->checked;
}

static wf_status dist_setup(bn_run *e, wf_err *err) {
    D.any = dist_prepare(e, err);
    if (D.root) print_header(e);
    if (D.any) e->failed_runs++;
    run_forwards(e, err);
    fill_row(e);
    if (!D.any && e->o.check) check_reference(e, err);
    D.me.rss_mib = bu_peak_rss_mib();
    if (D.root && !(D.rows = calloc((size_t)D.np, sizeof *D.rows))) {
        fprintf(stderr, "bench_dist: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Gather(&D.me, (int)sizeof D.me, MPI_BYTE, D.rows, (int)sizeof D.me, MPI_BYTE, 0,
               MPI_COMM_WORLD);
    if (D.root) summarize();
    e->nrows = D.root ? D.np + !D.any : 0;
    return WF_OK; /* failures are rows (or failed_runs): every rank must get to the gather */
}

static wf_status dist_row(bn_run *e, int i, bn_row *r, wf_err *err) {
    const drow *w = i < D.np ? &D.rows[i] : &D.all;
    char (*c)[BN_CELL] = r->cell;
    if (i < D.np) snprintf(c[0], BN_CELL, "%d", w->rank);
    else snprintf(c[0], BN_CELL, "all");
    if (w->status) {
        snprintf(r->err, sizeof r->err, "see the error above");
        return wf_fail(err, WF_EREMOTE, "rank %d failed", w->rank);
    }
    snprintf(c[1], BN_CELL, "%d", w->threads);
    if (i < D.np) snprintf(c[2], BN_CELL, "%d", w->cpus);
    snprintf(c[3], BN_CELL, "%.1f", w->wall_s * 1e3);
    snprintf(c[4], BN_CELL, "%.1f", w->a2a_s * 1e3);
    snprintf(c[5], BN_CELL, "%.1f", w->ag_s * 1e3);
    snprintf(c[6], BN_CELL, "%.1f", w->compute_s * 1e3);
    snprintf(c[7], BN_CELL, "%llu", (unsigned long long)w->a2a_bytes);
    snprintf(c[8], BN_CELL, "%llu", (unsigned long long)w->a2a_pred);
    snprintf(c[9], BN_CELL, "%llu", (unsigned long long)w->ag_bytes);
    snprintf(c[10], BN_CELL, "%llu", (unsigned long long)w->ag_pred);
    snprintf(c[11], BN_CELL, "%s", w->bytes_ok ? "yes" : "NO");
    if (w->checked && e->o.check) snprintf(c[12], BN_CELL, "%.2e", w->max_diff);
    else snprintf(c[12], BN_CELL, "n/a");
    snprintf(c[13], BN_CELL, "%.1f", w->rss_mib);
    if (i < D.np) /* over the bound (or NaN), NaN/Inf in the output, bytes or calls off */
        r->wrong = (w->checked && !(w->max_diff <= D.tol)) + w->nonfinite + !w->bytes_ok;
    return WF_OK;
}

static void dist_footer(bn_run *e) {
    if (!D.root || D.any) return;
    const drow *a = &D.all;
    printf("# (all: wall max, a2a/ag/compute mean, bytes sum, max|diff| max, rss max over ranks)\n");
    printf("# Forward : %.1f ms wall (max over ranks), %.1f ms compute (mean), %.1f ms in "
           "collectives (mean)\n", a->wall_s * 1e3, a->compute_s * 1e3, (a->a2a_s + a->ag_s) * 1e3);
    double rep = 0, fl = rank_flops(&D.c, D.Ll, D.Lp, &rep);
    printf("# Compute rate : %.1f GFLOP/s per rank (%.1f GFLOP of work per rank / mean "
           "compute), %.1f GFLOP/s over all ranks\n", fl * 1e-9 / a->compute_s, fl * 1e-9,
           D.np * fl * 1e-9 / a->compute_s);
    if (e->o.check && isfinite(D.rows[0].ref_s))
        printf("# 1-rank reference : %.1f ms on rank 0 (%d thread%s, sp = NULL%s)\n",
               D.rows[0].ref_s * 1e3, D.rows[0].threads, D.rows[0].threads == 1 ? "" : "s",
               D.np > 1 ? ", the other ranks asleep" : "");
    if (D.np > 1)
        printf("# Collective calls per forward : all-to-all %llu (4 x %d layer%s), all-gather %llu\n",
               (unsigned long long)D.a2a_calls_want, D.c.layers, D.c.layers == 1 ? "" : "s",
               (unsigned long long)D.ag_calls_want);
    else
        printf("# Collective calls per forward : none (one rank)\n");
    printf("# Bytes per forward, all ranks : all-to-all %.2f MiB, all-gather %.3f MiB "
           "(formula: %.2f, %.3f) %s\n", bu_mib((double)a->a2a_bytes), bu_mib((double)a->ag_bytes),
           bu_mib((double)a->a2a_pred), bu_mib((double)a->ag_pred),
           a->bytes_ok ? "equal on every rank and timed forward" : "-- DIFFER");
    if (e->o.check && D.checked)
        printf("# Correctness : %s (max|diff| %.2e, bound %.2e = 1e-5 x rms %.3g)\n",
               D.same ? "every rank's output bit-identical to the 1-rank forward"
                      : "not bit-identical to the 1-rank forward",
               a->max_diff, D.tol, D.rows[0].rms_ref);
}

static void dist_json(bn_run *e, json_t *o) {
    const drow *a = &D.all;
    json_t *lt = json_array(), *ra = json_array();
    json_array_append_new(lt, json_integer(CIN));
    json_array_append_new(lt, json_integer(D.c.F));
    json_array_append_new(lt, json_integer(D.c.H));
    json_array_append_new(lt, json_integer(D.c.W));
    for (int r = 0; r < D.np && !D.any; r++) json_array_append_new(ra, row_json(&D.rows[r]));
    json_object_set_new(o, "np", json_integer(D.np));
    json_object_set_new(o, "threads", json_integer(e->o.threads));
    json_object_set_new(o, "layers", json_integer(D.c.layers));
    json_object_set_new(o, "latent", lt);
    json_object_set_new(o, "L", json_integer(D.L));
    json_object_set_new(o, "Lt", json_integer(D.c.Lt));
    json_object_set_new(o, "Ll", json_integer(D.Ll));
    json_object_set_new(o, "Lp", json_integer(D.Lp));
    json_object_set_new(o, "warmup", json_integer(e->o.warm));
    json_object_set_new(o, "iters", json_integer(e->o.iters));
    json_object_set_new(o, "rows", ra);
    json_object_set_new(o, "wall_ms", bu_real_or_null(D.any ? NAN : a->wall_s * 1e3));
    json_object_set_new(o, "compute_ms", bu_real_or_null(D.any ? NAN : a->compute_s * 1e3));
    json_object_set_new(o, "collectives_ms", bu_real_or_null(D.any ? NAN : (a->a2a_s + a->ag_s) * 1e3));
    json_object_set_new(o, "ref_ms", bu_real_or_null(D.rows[0].ref_s * 1e3));
    double rep = 0, fl = rank_flops(&D.c, D.Ll, D.Lp, &rep);
    json_object_set_new(o, "gflop_per_rank", bu_real_or_null(fl * 1e-9));
    json_object_set_new(o, "gflop_replicated", bu_real_or_null(rep * 1e-9));
    json_object_set_new(o, "alltoall_bytes", json_integer((json_int_t)a->a2a_bytes));
    json_object_set_new(o, "allgather_bytes", json_integer((json_int_t)a->ag_bytes));
    const int diffed = e->o.check && D.checked && !D.any;
    json_object_set_new(o, "max_abs_diff", diffed ? bu_real_or_null(a->max_diff) : json_null());
}

/* Rank 0's verdict for every rank; every rank unmaps the folder before rank 0 removes it. */
static void dist_teardown(bn_run *e) {
    MPI_Bcast(&e->ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    free(D.rows);
    free(D.walls);
    free(D.stats);
    free(D.lat);
    free(D.txt);
    free(D.out);
    free(D.ref);
    wk_arena_free(&D.arena);
    dit_free(&D.m);
    cm_free(&D.world);
    MPI_Barrier(MPI_COMM_WORLD);
}

static const bn_flag dist_flags[] = {{"--layers", "N", 'i', &D.c.layers, 1, 1000, NULL},
                                     {"--width", "1.3b|a14b", 'p', NULL, 0, 0, parse_width},
                                     {"--device", "cpu|cuda", 'p', NULL, 0, 0, parse_device},
                                     {"--overlap", "0|1", 'i', &g_overlap, 0, 1, NULL},
                                     {"--latent", "[16,]F,H,W", 'p', NULL, 0, 0, parse_latent},
                                     {"--text-len", "N", 'l', &D.c.Lt, 1, 1 << 20, NULL},
                                     {NULL, NULL, 0, NULL, 0, 0, NULL}};

static const bn_col dist_cols[] = {
    {"rank", NULL, 4, BN_TEXT, NULL},          {"thr", NULL, 3, BN_TEXT, NULL},
    {"cpus", NULL, 4, BN_TEXT, NULL},          {"wall(ms)", NULL, 10, BN_TEXT, NULL},
    {"a2a(ms)", NULL, 9, BN_TEXT, NULL},       {"ag(ms)", NULL, 8, BN_TEXT, NULL},
    {"compute(ms)", NULL, 11, BN_TEXT, NULL},  {"a2a-bytes", NULL, 11, BN_TEXT, NULL},
    {"a2a-formula", NULL, 11, BN_TEXT, NULL},  {"ag-bytes", NULL, 9, BN_TEXT, NULL},
    {"ag-form.", NULL, 9, BN_TEXT, NULL},      {"bytes", "ok", 5, BN_TEXT, NULL},
    {"max|diff|", NULL, 10, BN_TEXT, NULL},    {"rss", "(MiB)", 8, BN_TEXT, NULL}};

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &D.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &D.np);
    D.root = D.rank == 0;
    const bn_bench b = {
        .name = "bench_dist",
        .note = "Run it under mpirun -np U: U (the MPI world size) must divide the heads (12 at "
                "--width 1.3b, 40 at a14b).\n"
                "--device cuda: each rank on visible GPU local_rank % n (NCCL between distinct "
                "GPUs, MPI through host memory on a shared one), bf16.\n"
                "Metrics: bench/PERFORMANCE.md (section bench_dist).",
        .flags = dist_flags, .flag_set = BN_KEEP, .warm = 1, .iters = 3, .cols = dist_cols,
        .ncols = 14, .nkeys = 1, .quiet = !D.root, .init = dist_init, .setup = dist_setup,
        .row = dist_row, .footer = dist_footer, .json = dist_json, .teardown = dist_teardown};
    int rc = bn_main(&b, argc, argv);
    MPI_Finalize();
    return rc;
}
