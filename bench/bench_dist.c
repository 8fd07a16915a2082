/* bench_dist.c: one sequence-parallel (Ulysses) DiT forward over the MPI world: where each rank's
 * time goes (compute, all-to-all, all-gather), how many bytes it sends, and whether the result is
 * the one-rank forward's, in the nccl-tests shape.
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
 * gathers the rows (MPI_Gather) and prints one per rank, a summary row and a footer that says OK or
 * FAILED; the exit status is 1 when it says FAILED.
 * What it is not: a peer comparison (bench_dit compares one forward with Diffusers; xDiT or
 * Diffusers over torch.distributed cannot run here), a test (the tests dit.h names own Ulysses
 * correctness), or a whole-pipeline benchmark (no CFG pair, no expert hand-off, no VAE).
 * Run:   mpirun -np 2 --bind-to none build/bench/bench_dist [--layers 2 --latent 5,40,56
 *            --text-len 512 -w 1 -n 3 --threads N --check 1 --json FILE --keep 0]
 *        bench/run_dist.sh [BUILD_DIR]        (np 1, 2 and 4, then a speed-up table)
 */
#include <errno.h>
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
#include "bench_dit_ckpt.h"
#include "bench_util.h"
#include "comm.h"
#include "dit.h"
#include "safetensors.h"

/* The fixed part of the config: Wan2.1-1.3B's block width (bench_dit_ckpt.h, as bench_dit). */
enum { NHEADS = BDC_NHEADS, HDIM = BDC_HDIM, DIM = BDC_DIM, CIN = BDC_CIN, COUT = BDC_COUT,
       TEXT_DIM = BDC_TEXT_DIM, ROPE_MAX = BDC_ROPE_MAX,
       FREQ_DIM = BDC_FREQ_DIM, FFN_DIM = BDC_FFN_DIM, PT = BDC_PT, PH = BDC_PH, PW = BDC_PW };
#define TIMESTEP 999.0f
#define WEIGHT_STD BDC_WEIGHT_STD
#define ROW_QUANTUM 48 /* dit_forward.c's DIT_ROW_QUANTUM: every rank holds a multiple of it */
#define DIFF_TOL 1e-5  /* bound on max |out - out_1rank| / rms(out_1rank); expected: 0 */

typedef struct bcfg {
    int layers;
    int64_t F, H, W, Lt;
} bcfg;

/* Runs in rank 0's child: the f32 checkpoint (bench_dit_ckpt.h). */
static int write_folder(const char *dir, const void *ctx) {
    const bcfg *c = ctx;
    return bdc_write(dir, c->layers, WK_F32, "bench_dist");
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

/* Tokens per rank: dit_forward.c pads the sequence so that every rank holds a multiple of 48
 * (recomputed here, independently of dit_tokens_per_rank, for the byte formula). */
static int64_t local_rows(int64_t L, int U) {
    return (L + (int64_t)U * ROW_QUANTUM - 1) / ((int64_t)U * ROW_QUANTUM) * ROW_QUANTUM;
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

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: mpirun -np U %s [--layers N] [--latent [16,]F,H,W] [--text-len N] [-w warmup]\n"
            "          [-n iters] [--threads N] [--check 0|1] [--json FILE] [--keep 0|1]\n"
            "U (the MPI world size) must divide the 12 heads. Metrics: bench/PERFORMANCE.md "
            "(section bench_dist).\n",
            argv0);
}

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

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, np = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    const int root = rank == 0;

    bcfg c = {.layers = 2, .F = 5, .H = 40, .W = 56, .Lt = 512};
    const char *json = NULL;
    int warm = 1, iters = 3, check = 1, threads = 0, keep = 0, bad = 0, help = 0;
    for (int i = 1; i < argc && !bad && !help; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help = 1;
            break;
        }
        if (!v) {
            if (root) fprintf(stderr, "bench_dist: %s needs a value\n", a);
            bad = 1;
            break;
        }
        i++;
        if (!strcmp(a, "--layers")) c.layers = atoi(v);
        else if (!strcmp(a, "--latent")) {
            if (bu_parse_latent(v, CIN, &c.F, &c.H, &c.W)) bad = 1;
        } else if (!strcmp(a, "--text-len")) c.Lt = atoll(v);
        else if (bu_common_flag(a, v, &warm, &iters, &threads, &check, NULL, &keep, &json)) {
            /* one of the flags every bench shares (bench_util.h) */
        }
        else {
            if (root) fprintf(stderr, "bench_dist: unknown option %s\n", a);
            bad = 1;
        }
    }
    const int64_t L = c.F > 0 && c.H > 1 && c.W > 1 ? (c.F / PT) * (c.H / PH) * (c.W / PW) : 0;
    if (!bad && !help &&
        (c.layers < 1 || c.layers > 1000 || c.F < 1 || c.H < 2 || c.W < 2 || c.H % PH ||
         c.W % PW || c.F > ROPE_MAX || c.H / PH > ROPE_MAX || c.W / PW > ROPE_MAX || c.Lt < 1 ||
         c.Lt > 1 << 20 || iters < 1 || warm < 0 || threads < 0 || NHEADS % np || np > L)) {
        if (root)
            fprintf(stderr, "bench_dist: bad value (--layers %d --latent %lld,%lld,%lld (H, W even) "
                    "--text-len %lld -n %d -w %d --threads %d; %d ranks must divide the %d heads "
                    "and be at most the tokens)\n", c.layers, (long long)c.F, (long long)c.H,
                    (long long)c.W, (long long)c.Lt, iters, warm, threads, np, NHEADS);
        bad = 1;
    }
    if (bad || help) {
        if (root) usage(argv[0]);
        MPI_Finalize();
        return bad ? 2 : 0;
    }

    /* threads per rank: the node's cores shared by the ranks on the node */
    MPI_Comm node;
    int nlocal = 1;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &nlocal);
    MPI_Comm_free(&node);
    long ncores = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncores < 1) ncores = 1;
    if (!threads) threads = ncores / nlocal > 0 ? (int)(ncores / nlocal) : 1;
    cpu_set_t aff;
    int cpus = sched_getaffinity(0, sizeof aff, &aff) == 0 ? CPU_COUNT(&aff) : -1;

    wf_err err = {0};
    cm_comm *world = NULL;
    wk_backend *be = NULL;
    dit_model *m = NULL;
    wk_arena arena = {0};
    float *lat = NULL, *txt = NULL, *out = NULL, *ref = NULL;
    drow *rows = NULL;
    double *walls = NULL;
    cm_stats *stats = NULL;
    int failed_runs = 0;
    const int U = np;
    const int64_t Ll = local_rows(L, U), Lp = Ll * U, L1 = local_rows(L, 1);
    const uint64_t P = PT * PH * PW;
    const uint64_t a2a_pred = 4ull * (uint64_t)c.layers * (uint64_t)(U - 1) * (uint64_t)Ll *
                              (uint64_t)(DIM / U) * 4ull;
    const uint64_t ag_pred = (uint64_t)(U - 1) * (uint64_t)Ll * P * COUT * 4ull;
    const uint64_t a2a_calls_want = U > 1 ? 4ull * (uint64_t)c.layers : 0, ag_calls_want = U > 1;

    /* 1. the folder, written by rank 0's child (no OpenMP thread exists yet); the others wait */
    char dir[1100] = "";
    double write_s = 0;
    int wrc = 0;
    if (root) wrc = bu_write_in_child("bench_dist", write_folder, &c, keep, dir, sizeof dir, &write_s);
    quiet_bcast(&wrc, 1, MPI_INT, 0);
    if (wrc) {
        MPI_Finalize();
        return 1;
    }
    MPI_Bcast(dir, (int)sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);

    /* 2. every rank: backend, load (the real loader), arena, the same inputs */
    wf_status st = cm_world(&world, &err);
    if (!st) st = wk_backend_cpu_new(&be, threads, &err);
    if (!st) {
        threads = be->nthreads;
        omp_set_num_threads(threads);
    }
    double t0 = bu_now_s();
    if (!st) st = dit_load(&m, dir, &err);
    double load_s = bu_now_s() - t0;
    dit_shape shp = {.F = c.F, .H = c.H, .W = c.W, .Lt = c.Lt, .per_token_t = false};
    size_t arena_bytes = 0, ab1 = 0;
    if (!st) st = dit_arena_bytes(m, be, &shp, U, &arena_bytes, &err);
    if (!st && root && check) st = dit_arena_bytes(m, be, &shp, 1, &ab1, &err); /* the reference */
    if (!st) st = wk_arena_init(&arena, "dit activations", arena_bytes > ab1 ? arena_bytes : ab1, &err);
    const size_t nout = (size_t)(COUT * c.F * c.H * c.W), nlat = (size_t)(CIN * c.F * c.H * c.W),
                 ntxt = (size_t)(c.Lt * TEXT_DIM);
    float ts = TIMESTEP;
    if (!st) {
        lat = malloc(nlat * sizeof *lat);
        txt = malloc(ntxt * sizeof *txt);
        out = malloc(nout * sizeof *out);
        ref = malloc(nout * sizeof *ref);
        walls = malloc((size_t)iters * sizeof *walls);
        stats = calloc((size_t)iters, sizeof *stats);
        if (!lat || !txt || !out || !ref || !walls || !stats)
            st = wf_fail(&err, WF_ENOMEM, "out of memory");
    }
    if (!st) {
        bu_fill_normal(lat, nlat, 0.0, 1.0, bu_name_seed("latents"));
        bu_fill_normal(txt, ntxt, 0.0, 1.0, bu_name_seed("text"));
    }
    int any = st;
    MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);

    if (root) {
        char lib[MPI_MAX_LIBRARY_VERSION_STRING];
        int nlib = 0;
        MPI_Get_library_version(lib, &nlib);
        lib[strcspn(lib, ",\n")] = 0;
        double rep = 0, fl1 = rank_flops(&c, L1, L1, &rep), flu = rank_flops(&c, Ll, Lp, &rep);
        printf("# bench_dist: Ulysses DiT forward over %d MPI rank%s (sp = MPI_COMM_WORLD), wanfarm "
               "CPU backend, %d thread%s/rank, OpenBLAS %s, %s\n", np, np == 1 ? "" : "s", threads,
               threads == 1 ? "" : "s", openblas_get_config(), lib);
        printf("# node: %ld cores, %d rank%s on rank 0's node, rank 0 may run on %d cpus%s\n",
               ncores, nlocal, nlocal == 1 ? "" : "s", cpus,
               (long)nlocal * threads > ncores ? " -- oversubscribed: more threads than cores" : "");
        printf("# model: WanTransformer3DModel at Wan2.1-1.3B width (D %d = %dx%d, FFN %d, text_dim "
               "%d, patch %dx%dx%d), %d layer%s, random weights N(0, %.2g), f32; %.1f MiB mapped "
               "by every rank (%s)\n", DIM, NHEADS, HDIM, FFN_DIM, TEXT_DIM, PT, PH, PW, c.layers,
               c.layers == 1 ? "" : "s", WEIGHT_STD, m ? bu_mib((double)m->weight_bytes) : NAN, dir);
        printf("# input: latent %dx%lldx%lldx%lld -> L %lld tokens, text Lt %lld, timestep %g; "
               "warm-up %d, iters %d (row = the timed forward with the median wall time)\n", CIN,
               (long long)c.F, (long long)c.H, (long long)c.W, (long long)L, (long long)c.Lt,
               (double)TIMESTEP, warm, iters);
        printf("# split: U %d, Ll %lld rows per rank (a multiple of %d), Lp %lld (%lld padded "
               "tokens, masked); arena %.1f MiB per rank\n", U, (long long)Ll, ROW_QUANTUM,
               (long long)Lp, (long long)(Lp - L), bu_mib((double)arena_bytes));
        printf("# work: %.1f GFLOP per rank (%.1f of it repeated on every rank: text and time "
               "embedders, cross-attention k/v); one rank alone: %.1f GFLOP\n", flu * 1e-9,
               rep * 1e-9, fl1 * 1e-9);
        printf("# checkpoint written in %.1f s (rank 0's child), dit_load %.3f s (rank 0); check %s\n",
               write_s, load_s,
               check ? "max|out - out_1rank| (sp = NULL on rank 0), bound 1e-5 x rms(out_1rank)"
                     : "off");
        fflush(stdout);
    }
    if (any) {
        if (st) fprintf(stderr, "bench_dist: rank %d: %s: %s\n", rank, wf_status_str(st), err.msg);
        failed_runs++;
    }

    /* 3. the forwards: barrier, reset the counters, one forward; -w warm-up, -n timed */
    for (int i = 0; i < warm + iters && !any; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        cm_stats_reset(world);
        double s0 = bu_now_s();
        st = dit_forward(m, be, &arena, &shp, world, lat, &ts, txt, out, NULL, NULL, &err);
        double t = bu_now_s() - s0;
        if (i >= warm) {
            walls[i - warm] = t;
            stats[i - warm] = world->stats;
        }
        any = st;
        MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (any) {
            if (st) fprintf(stderr, "bench_dist: rank %d: forward: %s\n", rank, err.msg);
            failed_runs++;
        }
    }

    /* 4. this rank's row: the median forward's breakdown; bytes and calls of every timed one */
    drow me = {.rank = rank, .threads = threads, .cpus = cpus, .status = any,
               .a2a_pred = a2a_pred, .ag_pred = ag_pred, .wall_s = NAN, .a2a_s = NAN,
               .ag_s = NAN, .other_s = NAN, .compute_s = NAN, .ref_s = NAN, .max_diff = NAN,
               .rms_ref = NAN};
    if (!any) {
        int med = 0, bytes_ok = 1;
        for (int i = 0; i < iters; i++) { /* the index of the median wall (the lower middle) */
            int below = 0, equal_before = 0;
            for (int j = 0; j < iters; j++) {
                below += walls[j] < walls[i];
                equal_before += j < i && walls[j] == walls[i];
            }
            if (below + equal_before == (iters - 1) / 2) med = i;
            const cm_stats *s = &stats[i];
            uint64_t other = 0;
            for (int op = 0; op < CM_NOPS; op++)
                if (op != CM_ALLTOALL && op != CM_ALLGATHER) other += s->calls[op];
            bytes_ok &= s->bytes[CM_ALLTOALL] == a2a_pred && s->bytes[CM_ALLGATHER] == ag_pred &&
                        s->calls[CM_ALLTOALL] == a2a_calls_want &&
                        s->calls[CM_ALLGATHER] == ag_calls_want && other == 0;
        }
        const cm_stats *s = &stats[med];
        me.wall_s = walls[med];
        me.a2a_s = s->seconds[CM_ALLTOALL];
        me.ag_s = s->seconds[CM_ALLGATHER];
        me.other_s = 0;
        for (int op = 0; op < CM_NOPS; op++)
            if (op != CM_ALLTOALL && op != CM_ALLGATHER) {
                me.other_s += s->seconds[op];
                me.other_calls += s->calls[op];
            }
        me.compute_s = me.wall_s - me.a2a_s - me.ag_s - me.other_s;
        me.a2a_bytes = s->bytes[CM_ALLTOALL];
        me.ag_bytes = s->bytes[CM_ALLGATHER];
        me.a2a_calls = s->calls[CM_ALLTOALL];
        me.ag_calls = s->calls[CM_ALLGATHER];
        me.bytes_ok = bytes_ok;
        for (size_t k = 0; k < nout; k++) me.nonfinite += !isfinite(out[k]);
    }

    /* 5. the reference: the 1-rank forward (sp = NULL) on rank 0, broadcast; others sleep */
    if (!any && check) {
        int rst = 0;
        if (root) {
            double s0 = bu_now_s();
            rst = dit_forward(m, be, &arena, &shp, NULL, lat, &ts, txt, ref, NULL, NULL, &err);
            me.ref_s = bu_now_s() - s0;
            if (rst) fprintf(stderr, "bench_dist: 1-rank forward: %s\n", err.msg);
        }
        quiet_bcast(&rst, 1, MPI_INT, 0);
        if (rst) failed_runs++;
        else {
            MPI_Bcast(ref, (int)nout, MPI_FLOAT, 0, MPI_COMM_WORLD);
            double mx = 0, ss = 0;
            for (size_t k = 0; k < nout; k++) {
                double d = fabs((double)out[k] - ref[k]);
                if (!(d <= mx)) mx = d; /* NaN sticks */
                ss += (double)ref[k] * ref[k];
            }
            me.max_diff = mx;
            me.rms_ref = sqrt(ss / (double)nout);
            me.checked = 1;
        }
    }
    me.rss_mib = bu_peak_rss_mib();

    /* 6. rank 0: the table */
    if (root && !(rows = calloc((size_t)np, sizeof *rows))) {
        fprintf(stderr, "bench_dist: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Gather(&me, (int)sizeof me, MPI_BYTE, rows, (int)sizeof me, MPI_BYTE, 0, MPI_COMM_WORLD);
    int ok = 1;
    if (root) {
        printf("#\n# %4s %3s %4s %10s %9s %8s %11s %11s %11s %9s %9s %5s %10s %8s\n", "rank", "thr",
               "cpus", "wall(ms)", "a2a(ms)", "ag(ms)", "compute(ms)", "a2a-bytes", "a2a-formula",
               "ag-bytes", "ag-form.", "bytes", "max|diff|", "rss");
        printf("# %4s %3s %4s %10s %9s %8s %11s %11s %11s %9s %9s %5s %10s %8s\n", "", "", "", "",
               "", "", "", "", "", "", "", "ok", "", "(MiB)");
        double wmax = 0, a2a = 0, ag = 0, comp = 0, dmax = 0, rss = 0, tol = NAN;
        uint64_t sa = 0, sg = 0, spa = 0, spg = 0;
        long out_of_bounds = 0;
        int allok = 1, thr = 0, checked = 1, same = 1;
        for (int r = 0; r < np; r++) {
            const drow *w = &rows[r];
            if (w->status) {
                printf("  %4d FAILED (see the error above)\n", w->rank);
                allok = 0;
                continue;
            }
            char dv[24] = "n/a";
            if (w->checked) {
                snprintf(dv, sizeof dv, "%.2e", w->max_diff);
                tol = DIFF_TOL * rows[0].rms_ref;
                if (!(w->max_diff <= tol)) out_of_bounds++;
                if (w->max_diff != 0) same = 0;
                if (!(w->max_diff <= dmax)) dmax = w->max_diff;
            } else {
                checked = 0;
            }
            out_of_bounds += (long)w->nonfinite + !w->bytes_ok;
            printf("  %4d %3d %4d %10.1f %9.1f %8.1f %11.1f %11llu %11llu %9llu %9llu %5s %10s %8.1f\n",
                   w->rank, w->threads, w->cpus, w->wall_s * 1e3, w->a2a_s * 1e3, w->ag_s * 1e3,
                   w->compute_s * 1e3, (unsigned long long)w->a2a_bytes,
                   (unsigned long long)w->a2a_pred, (unsigned long long)w->ag_bytes,
                   (unsigned long long)w->ag_pred, w->bytes_ok ? "yes" : "NO", dv, w->rss_mib);
            if (w->wall_s > wmax) wmax = w->wall_s;
            a2a += w->a2a_s / np;
            ag += w->ag_s / np;
            comp += w->compute_s / np;
            sa += w->a2a_bytes;
            sg += w->ag_bytes;
            spa += w->a2a_pred;
            spg += w->ag_pred;
            thr += w->threads;
            if (w->rss_mib > rss) rss = w->rss_mib;
            allok &= w->bytes_ok;
        }
        if (!any) {
            char dv[24] = "n/a";
            if (checked && check) snprintf(dv, sizeof dv, "%.2e", dmax);
            printf("  %4s %3d %4s %10.1f %9.1f %8.1f %11.1f %11llu %11llu %9llu %9llu %5s %10s %8.1f\n",
                   "all", thr, "", wmax * 1e3, a2a * 1e3, ag * 1e3, comp * 1e3,
                   (unsigned long long)sa, (unsigned long long)spa, (unsigned long long)sg,
                   (unsigned long long)spg, allok ? "yes" : "NO", dv, rss);
            printf("# (all: wall max, a2a/ag/compute mean, bytes sum, max|diff| max, rss max over "
                   "ranks)\n");
            printf("# Forward : %.1f ms wall (max over ranks), %.1f ms compute (mean), %.1f ms in "
                   "collectives (mean)\n", wmax * 1e3, comp * 1e3, (a2a + ag) * 1e3);
            double rep = 0, fl = rank_flops(&c, Ll, Lp, &rep);
            printf("# Compute rate : %.1f GFLOP/s per rank (%.1f GFLOP of work per rank / mean "
                   "compute), %.1f GFLOP/s over all ranks\n", fl * 1e-9 / comp, fl * 1e-9,
                   np * fl * 1e-9 / comp);
            if (check && isfinite(rows[0].ref_s))
                printf("# 1-rank reference : %.1f ms on rank 0 (%d thread%s, sp = NULL%s)\n",
                       rows[0].ref_s * 1e3, rows[0].threads, rows[0].threads == 1 ? "" : "s",
                       np > 1 ? ", the other ranks asleep" : "");
            if (U > 1)
                printf("# Collective calls per forward : all-to-all %llu (4 x %d layer%s), "
                       "all-gather %llu\n", (unsigned long long)a2a_calls_want, c.layers,
                       c.layers == 1 ? "" : "s", (unsigned long long)ag_calls_want);
            else
                printf("# Collective calls per forward : none (one rank)\n");
            printf("# Bytes per forward, all ranks : all-to-all %.2f MiB, all-gather %.3f MiB "
                   "(formula: %.2f, %.3f) %s\n", bu_mib((double)sa), bu_mib((double)sg),
                   bu_mib((double)spa), bu_mib((double)spg),
                   allok ? "equal on every rank and timed forward" : "-- DIFFER");
            if (check && checked)
                printf("# Correctness : %s (max|diff| %.2e, bound %.2e = 1e-5 x rms %.3g)\n",
                       same ? "every rank's output bit-identical to the 1-rank forward"
                            : "not bit-identical to the 1-rank forward",
                       dmax, tol, rows[0].rms_ref);
        }
        ok = out_of_bounds == 0 && failed_runs == 0 && allok && !any;
        printf("# Out of bounds values : %ld %s\n", out_of_bounds, ok ? "OK" : "FAILED");
        if (failed_runs) printf("# Failed runs : %d\n", failed_runs);

        if (json) {
            json_t *o = json_object(), *lt = json_array(), *ra = json_array();
            json_array_append_new(lt, json_integer(CIN));
            json_array_append_new(lt, json_integer(c.F));
            json_array_append_new(lt, json_integer(c.H));
            json_array_append_new(lt, json_integer(c.W));
            for (int r = 0; r < np && !any; r++) json_array_append_new(ra, row_json(&rows[r]));
            json_object_set_new(o, "bench", json_string("bench_dist"));
            json_object_set_new(o, "np", json_integer(np));
            json_object_set_new(o, "threads", json_integer(threads));
            json_object_set_new(o, "layers", json_integer(c.layers));
            json_object_set_new(o, "latent", lt);
            json_object_set_new(o, "L", json_integer(L));
            json_object_set_new(o, "Lt", json_integer(c.Lt));
            json_object_set_new(o, "Ll", json_integer(Ll));
            json_object_set_new(o, "Lp", json_integer(Lp));
            json_object_set_new(o, "warmup", json_integer(warm));
            json_object_set_new(o, "iters", json_integer(iters));
            json_object_set_new(o, "rows", ra);
            json_object_set_new(o, "wall_ms", bu_real_or_null(any ? NAN : wmax * 1e3));
            json_object_set_new(o, "compute_ms", bu_real_or_null(any ? NAN : comp * 1e3));
            json_object_set_new(o, "collectives_ms", bu_real_or_null(any ? NAN : (a2a + ag) * 1e3));
            json_object_set_new(o, "ref_ms", bu_real_or_null(rows[0].ref_s * 1e3));
            double rep = 0;
            json_object_set_new(o, "gflop_per_rank", bu_real_or_null(rank_flops(&c, Ll, Lp, &rep) * 1e-9));
            json_object_set_new(o, "gflop_replicated", bu_real_or_null(rep * 1e-9));
            json_object_set_new(o, "alltoall_bytes", json_integer((json_int_t)sa));
            json_object_set_new(o, "allgather_bytes", json_integer((json_int_t)sg));
            json_object_set_new(o, "max_abs_diff", check && checked && !any ? bu_real_or_null(dmax)
                                                                            : json_null());
            json_object_set_new(o, "out_of_bounds", json_integer(out_of_bounds));
            json_object_set_new(o, "failed_runs", json_integer(failed_runs));
            json_object_set_new(o, "ok", json_boolean(ok));
            if (bu_write_json(json, o, "bench_dist")) ok = 0;
            json_decref(o);
        }
        if (keep) printf("# kept %s\n", dir);
        fflush(stdout);
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);

    free(rows);
    free(walls);
    free(stats);
    free(lat);
    free(txt);
    free(out);
    free(ref);
    wk_arena_free(&arena);
    dit_free(&m);
    wk_backend_destroy(&be);
    cm_free(&world);
    MPI_Barrier(MPI_COMM_WORLD); /* every rank has unmapped the folder before rank 0 removes it */
    if (root && !keep) bu_remove_dir(dir);
    MPI_Finalize();
    return ok ? 0 : 1;
}
