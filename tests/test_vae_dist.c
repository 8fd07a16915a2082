/* test_vae_dist.c: the row-parallel VAE decode (worker/models/vae/vae_dist.c) equals the one-rank decode.
 *
 * An MPI program (ctest runs it under mpirun -np 1, 2, 3, 4). For VAE fixtures of
 * tests/fixtures/vae (the Wan2.1 layout at three depths, and the Wan2.2 layout with patchify and
 * DupUp3D) and random latents (fixed seeds, the same on every rank), rank 0 decodes with vae_decode
 * (the reference, broadcast to all) and every rank runs vae_decode_dist over the world; the
 * writer's frames, both the planar output and the frames callback, must equal the reference within
 * TOL. Heights are chosen
 * so that 3 and 4 ranks split unevenly (5 and 7 rows), one case gives every rank a single row, and
 * T >= 3 latent frames make the causal caches (with their halo rows) matter. The writer moves over
 * the ranks from case to case. Also checked:
 *   - vae_decode_dist_arena_bytes is exactly the arena peak of each rank, and the arena is reset;
 *   - the planar output's guard bytes are intact, and only the writer's callback runs;
 *   - errors: more ranks than latent rows, tiling with several ranks, a writer outside the group,
 *     an arena too small on one rank, a failing frame callback on the writer: every rank returns
 *     the same status (gathered and compared), and the run goes on (nothing hangs).
 * TOL: 1e-5 absolute on the clamped frames (TOL_NARROW for the one fixture that amplifies
 * rounding ten times more). The row split changes no maths: a halo conv sees the same numbers as a
 * padded one, the attention the same keys (with the halo code forced onto one rank the frames are
 * bit-identical to vae_decode's); only the sgemm calls over fewer rows (im2col blocks of another
 * height, OpenBLAS's kernels for another M) reorder sums. Measured: 1-2e-6 (b8_m1222, b4_m122_tTF,
 * w22_b4_m1222), 2e-6 - 1.5e-5 (b4_m1244_r2), printed with the one-rank noise floor beside them; a
 * missing halo row or a cache frame without its halo costs 1e-2 or more.
 * Usage: mpirun -np N test_vae_dist FIXTURES_DIR
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "test_util.h"
#include "vae.h"

#define TOL 1e-5 /* see the head of the file */
/* b4_m1244_r2 (A14B's structure at base width 4: 4-channel last level, 31 cached convs) amplifies
 * fp32 rounding ten times more than the other fixtures: its one-rank decode in the other schedule
 * (the same maths, other sums; printed as "other schedule") is already 0.4-1e-5 away, and the row
 * split, another summation order, measured up to 1.5e-5. A missing halo row costs 1e-2. */
#define TOL_NARROW 3e-5

static const char *fixtures;
static wk_backend *be;
static cm_comm *world;
static int rank, nranks;

/* ---- frames callback (the writer): in order, once each ---- */

typedef struct frames_seen {
    int64_t next, calls, F, H, W;
    float *planar; /* [3, F, H, W] */
    int fail_at;   /* fail at this call (0: never) */
} frames_seen;

static wf_status on_frames(void *ctx, int64_t first, int64_t n, int64_t H, int64_t W,
                           const float *rgb, wf_err *err) {
    frames_seen *s = ctx;
    s->calls++;
    if (s->fail_at && s->calls == s->fail_at) return wf_fail(err, WF_EIO, "test writer: disk full");
    TU_CHECK(first == s->next && n >= 1 && first + n <= s->F && H == s->H && W == s->W,
             "rank %d: frames callback got [%lld, %lld) %lldx%lld, expected from %lld of %lld",
             rank, (long long)first, (long long)(first + n), (long long)H, (long long)W,
             (long long)s->next, (long long)s->F);
    if (first != s->next || first + n > s->F || H != s->H || W != s->W) return WF_OK;
    for (int64_t f = 0; f < n; f++)
        for (int64_t p = 0; p < H * W; p++)
            for (int c = 0; c < 3; c++)
                s->planar[((int64_t)c * s->F + first + f) * H * W + p] =
                    rgb[(f * H * W + p) * 3 + c];
    s->next = first + n;
    return WF_OK;
}

/* ---- helpers ---- */

static float *latents(const vae_model *m, int64_t T, int64_t h, int64_t w, uint64_t seed) {
    const size_t n = (size_t)(m->cfg.z_dim * T * h * w);
    float *z = malloc(n * sizeof *z);
    tu_rng g = tu_rng_new(seed);
    tu_fill_normal(&g, z, n, 1.0f);
    return z;
}

/* every rank's status, gathered; true when all equal `want` */
static bool all_status(wf_status st, wf_status want, const char *what) {
    int mine = (int)st, *all = calloc((size_t)nranks, sizeof *all);
    wf_err err;
    TU_CHECK(cm_allgather(world, &mine, all, sizeof mine, &err) == WF_OK, "%s", err.msg);
    bool ok = true;
    for (int i = 0; i < nranks; i++) ok = ok && all[i] == (int)want;
    if (!ok && rank == 0) {
        char s[256];
        size_t o = 0;
        for (int i = 0; i < nranks && o < sizeof s; i++)
            o += (size_t)snprintf(s + o, sizeof s - o, " %d", all[i]);
        TU_CHECK(ok, "%s: statuses per rank:%s, want %d on every rank", what, s, (int)want);
    }
    free(all);
    return ok;
}

static double max_over_ranks(double v) {
    double r = v;
    MPI_Allreduce(&v, &r, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return r;
}

static void decode1(const vae_model *m, const vae_opts *o, const float *z, int64_t T, int64_t h,
                    int64_t w, float *out) {
    wf_err err = {0};
    size_t bytes = 0;
    wk_arena ar;
    TU_CHECK(vae_decode_arena_bytes(m, T, h, w, o, &bytes, &err) == WF_OK, "%s", err.msg);
    TU_CHECK(wk_arena_init(&ar, "reference", bytes, &err) == WF_OK, "%s", err.msg);
    TU_CHECK(vae_decode(m, be, &ar, o, z, T, h, w, out, NULL, NULL, NULL, NULL, &err) == WF_OK,
             "reference decode: %s", err.msg);
    wk_arena_free(&ar);
}

static double max_abs(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = isnan(d) ? INFINITY : d;
    }
    return m;
}

/* The reference: vae_decode on rank 0, broadcast. [3, F, H, W]. *floor: the max difference of the
 * one-rank decode in the other schedule (the same maths, other sums): fp32 noise of this net. */
static float *reference(const vae_model *m, const vae_opts *o, const float *z, int64_t T,
                        int64_t h, int64_t w, size_t *n, double *floor) {
    const int64_t F = vae_decoded_frames(m, T);
    *n = (size_t)(3 * F * h * m->s * w * m->s);
    float *ref = calloc(*n, sizeof *ref);
    wf_err err = {0};
    *floor = 0;
    if (rank == 0) {
        decode1(m, o, z, T, h, w, ref);
        vae_opts other = *o;
        other.schedule = o->schedule == VAE_STREAM ? VAE_WHOLE : VAE_STREAM;
        float *x = calloc(*n, sizeof *x);
        decode1(m, &other, z, T, h, w, x);
        *floor = max_abs(x, ref, *n);
        free(x);
    }
    TU_CHECK(cm_bcast(world, ref, *n * sizeof *ref, 0, &err) == WF_OK, "%s", err.msg);
    return ref;
}

/* ---- one equivalence case ---- */

static void check_case(const char *label, const vae_model *m, vae_schedule sched, int64_t T,
                       int64_t h, int64_t w, int writer) {
    const double tol = strcmp(label, "b4_m1244_r2") ? TOL : TOL_NARROW;
    vae_opts o = vae_opts_default();
    o.schedule = sched;
    float *z = latents(m, T, h, w, (uint64_t)(1000 * T + 100 * h + w));
    size_t n = 0;
    double floor = 0;
    float *ref = reference(m, &o, z, T, h, w, &n, &floor);
    const int64_t F = vae_decoded_frames(m, T), H = h * m->s, W = w * m->s;
    wf_err err = {0};
    size_t bytes = 0, bytes1 = 0;
    TU_CHECK(vae_decode_dist_arena_bytes(m, T, h, w, &o, nranks, rank, &bytes, &err) == WF_OK,
             "%s: arena bytes: %s", label, err.msg);
    TU_CHECK(vae_decode_dist_arena_bytes(m, T, h, w, &o, 1, 0, &bytes1, &err) == WF_OK, "%s",
             err.msg);
    wk_arena ar;
    TU_CHECK(wk_arena_init(&ar, "vae dist test", bytes, &err) == WF_OK, "%s", err.msg);
    const bool writes = rank == writer;
    float *out = writes ? tu_guarded_alloc(n) : NULL;
    frames_seen fs = {.F = F, .H = H, .W = W};
    fs.planar = writes ? calloc(n, sizeof(float)) : NULL;
    wf_status st = vae_decode_dist(m, be, &ar, &o, world, writer, z, T, h, w, out,
                                   writes ? on_frames : NULL, writes ? &fs : NULL, &err);
    TU_CHECK(st == WF_OK, "%s rank %d: %s", label, rank, err.msg);
    TU_CHECK(ar.peak == bytes, "%s rank %d: the decode used %zu arena bytes, the measure said %zu",
             label, rank, ar.peak, bytes);
    TU_CHECK(ar.used == 0, "%s rank %d: the arena is reset after the decode", label, rank);
    double maxd = 0;
    size_t live = 0; /* values the clamp left alone: the comparison is not vacuous */
    if (writes && st == WF_OK) {
        TU_CHECK(tu_guard_ok(out, n), "%s: the planar output overran its buffer", label);
        maxd = max_abs(out, ref, n);
        for (size_t i = 0; i < n; i++) live += fabsf(ref[i]) < 1.0f;
        TU_CHECK(maxd <= tol, "%s np %d writer %d: max |dist - 1 rank| %.3e > %g", label, nranks,
                 writer, maxd, tol);
        TU_CHECK(live * 4 > n, "%s: only %zu of %zu values are inside (-1, 1)", label, live, n);
        TU_CHECK(fs.next == F && memcmp(fs.planar, out, n * sizeof(float)) == 0,
                 "%s: the callback saw %lld of %lld frames, or other values than the output",
                 label, (long long)fs.next, (long long)F);
        TU_CHECK(fs.calls == (sched == VAE_STREAM ? T : 1), "%s: %lld callbacks for %lld chunks",
                 label, (long long)fs.calls, (long long)(sched == VAE_STREAM ? T : 1));
    }
    maxd = max_over_ranks(maxd);
    double worst_bytes = max_over_ranks((double)bytes);
    if (rank == 0)
        printf("  %-14s %-6s T=%lld h=%lld w=%lld -> %lld frames %lldx%lld  np %d writer %d: max "
               "|diff| %.2e (1 rank, other schedule: %.2e)  arena/rank <= %.1f KiB (1 rank "
               "%.1f KiB)\n",
               label, sched == VAE_STREAM ? "stream" : "whole", (long long)T, (long long)h,
               (long long)w, (long long)F, (long long)H, (long long)W, nranks, writer, maxd,
               floor, worst_bytes / 1024, (double)bytes1 / 1024);
    wk_arena_free(&ar);
    tu_guarded_free(out);
    free(fs.planar);
    free(ref);
    free(z);
}

/* ---- errors: the same status everywhere, and the next collective still runs ---- */

static void check_errors(const vae_model *m) {
    vae_opts o = vae_opts_default();
    wf_err err = {0};
    size_t full = 0, bytes = 0;
    const int64_t T = 2, h = nranks > 2 ? nranks : 3, w = 2;
    float *z = latents(m, T, h, w, 7);
    wk_arena ar;
    TU_CHECK(vae_decode_dist_arena_bytes(m, T, h, w, &o, nranks, rank, &full, &err) == WF_OK,
             "%s", err.msg);
    TU_CHECK(wk_arena_init(&ar, "vae dist errors", full, &err) == WF_OK, "%s", err.msg);

    /* a writer outside the group */
    for (int k = 0; k < 2; k++) {
        const int bad = k ? -1 : nranks;
        err.msg[0] = 0;
        wf_status st = vae_decode_dist(m, be, &ar, &o, world, bad, z, T, h, w, NULL, NULL, NULL,
                                       &err);
        char want[64];
        snprintf(want, sizeof want, "writer rank %d is not a rank", bad);
        TU_CHECK(strstr(err.msg, want) != NULL, "writer %d: message '%s'", bad, err.msg);
        all_status(st, WF_EINVAL, "writer outside the group");
    }
    if (nranks > 1) {
        /* more ranks than latent rows */
        float *z1 = latents(m, T, nranks - 1, w, 8);
        wf_status st = vae_decode_dist(m, be, &ar, &o, world, 0, z1, T, nranks - 1, w, NULL, NULL,
                                       NULL, &err);
        char want[160];
        snprintf(want, sizeof want,
                 "vae decode over %d ranks needs at least %d latent rows; the latent has %d rows: "
                 "use at most %d decode ranks",
                 nranks, nranks, nranks - 1, nranks - 1);
        TU_CHECK(strstr(err.msg, want) != NULL, "too few rows: message '%s'", err.msg);
        all_status(st, WF_EINVAL, "more ranks than rows");
        TU_CHECK(vae_decode_dist_arena_bytes(m, T, nranks - 1, w, &o, nranks, rank, &bytes,
                                             &err) == WF_EINVAL,
                 "arena bytes with more ranks than rows must be refused");
        free(z1);
        /* tiling */
        vae_opts ot = o;
        ot.tiling = vae_tiling_diffusers();
        st = vae_decode_dist(m, be, &ar, &ot, world, 0, z, T, h, w, NULL, NULL, NULL, &err);
        TU_CHECK(strstr(err.msg, "tiled decode is a single-rank low-memory mode; parallel decode "
                                 "splits rows instead") != NULL,
                 "tiling: message '%s'", err.msg);
        all_status(st, WF_EINVAL, "tiling with several ranks");
        /* the last rank's arena is one allocation short: everyone stops with its message */
        wk_arena small;
        TU_CHECK(wk_arena_init(&small, "short arena", rank == nranks - 1 ? full - 64 : full,
                               &err) == WF_OK,
                 "%s", err.msg);
        st = vae_decode_dist(m, be, &small, &o, world, 0, z, T, h, w, NULL, NULL, NULL, &err);
        TU_CHECK(strstr(err.msg, "short arena") != NULL, "rank %d: short arena: message '%s'",
                 rank, err.msg);
        all_status(st, WF_ENOMEM, "an arena too small on the last rank");
        TU_CHECK(small.used == 0, "the arena is reset after a failure");
        wk_arena_free(&small);
    }
    /* the writer's callback fails on the second chunk */
    const int writer = nranks - 1;
    frames_seen fs = {.F = vae_decoded_frames(m, T), .H = h * m->s, .W = w * m->s, .fail_at = 2};
    fs.planar = calloc((size_t)(3 * fs.F * fs.H * fs.W), sizeof(float));
    wf_status st = vae_decode_dist(m, be, &ar, &o, world, writer, z, T, h, w, NULL,
                                   rank == writer ? on_frames : NULL, &fs, &err);
    TU_CHECK(strstr(err.msg, "disk full") && strstr(err.msg, "frames 1..4"),
             "rank %d: failing callback: message '%s'", rank, err.msg);
    all_status(st, WF_EIO, "a failing frame callback on the writer");
    /* and the group still works */
    st = vae_decode_dist(m, be, &ar, &o, world, 0, z, T, h, w, NULL, NULL, NULL, &err);
    all_status(st, WF_OK, "a decode after the errors");
    if (rank == 0) printf("  errors: every rank returned the same status in each case\n");
    free(fs.planar);
    wk_arena_free(&ar);
    free(z);
}

/* ---- main ---- */

static vae_model *load(const char *name) {
    char p[4200];
    snprintf(p, sizeof p, "%s/vae/%s/vae", fixtures, name);
    vae_model *m = NULL;
    wf_err err;
    TU_CHECK(vae_load(&m, p, &err) == WF_OK, "%s: %s", name, err.msg);
    return m;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    if (argc < 2) {
        fprintf(stderr, "usage: mpirun -np N test_vae_dist FIXTURES_DIR\n");
        MPI_Finalize();
        return 2;
    }
    fixtures = argv[1];
    wf_err err;
    if (cm_world(&world, &err) || wk_backend_cpu_new(&be, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    rank = world->rank;
    nranks = world->size;
    if (rank == 0) printf("test_vae_dist: %d rank%s\n", nranks, nranks == 1 ? "" : "s");
    /* a Wan2.1 VAE of A14B's structure (dim_mult [1, 2, 4, 4], 2 res blocks), narrow */
    vae_model *a = load("b4_m1244_r2");
    /* Wan2.1 layout, 1 res block */
    vae_model *b = load("b8_m1222");
    /* Wan2.1 layout, 2 levels, temporal upsampling in the last up block only */
    vae_model *c = load("b4_m122_tTF");
    /* Wan2.2 layout: patchify 2, residual blocks, DupUp3D */
    vae_model *d = load("w22_b4_m1222");
    if (a && b && c && d) {
        const int n = nranks;
        check_case("b4_m1244_r2", a, VAE_STREAM, 3, 7, 3, 0);
        check_case("b4_m1244_r2", a, VAE_STREAM, 4, 5, 2, n - 1);
        check_case("b4_m1244_r2", a, VAE_STREAM, 3, n, 2, n / 2); /* one row per rank */
        check_case("b8_m1222", b, VAE_STREAM, 3, 5, 3, 1 % n);
        check_case("b8_m1222", b, VAE_WHOLE, 3, 7, 2, n - 1);
        check_case("b4_m122_tTF", c, VAE_STREAM, 3, 7, 3, 2 % n);
        check_case("w22_b4_m1222", d, VAE_STREAM, 3, 5, 2, 3 % n);
        check_case("w22_b4_m1222", d, VAE_STREAM, 3, 7, 3, 0);
        check_errors(b);
    }
    vae_free(&a);
    vae_free(&b);
    vae_free(&c);
    vae_free(&d);
    int fails = tu_failures, total = 0;
    MPI_Allreduce(&fails, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) printf("%s\n", total ? "FAILED" : "OK");
    wk_backend_destroy(&be);
    cm_free(&world);
    MPI_Finalize();
    return total ? 1 : 0;
}
