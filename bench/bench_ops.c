/* bench_ops.c: the op benchmark (matmul, attention, conv3d), in the nccl-tests shape.
 *
 * What it is: one engine and one small plug-in per op (sizes, FLOP count, setup, run, check).
 * For each shape of the chosen size class it runs -w warm-up and -n timed calls of the op through
 * the backend dispatcher and prints one row: median time, GFLOP/s, % of the peak measured at start
 * (a large f32 OpenBLAS sgemm), the correctness check (64 random output entries against a double
 * dot product, plus a scan of the whole output for NaN/Inf) and, when a python with torch is
 * found, the PyTorch time for the same shape and the ratio torch/ours. A footer says OK or FAILED;
 * the exit status is 1 when any value was out of bounds. Metrics: bench/PERFORMANCE.md.
 * What it is not: a test (tests/test_ops.c owns correctness) or a GPU benchmark (yet).
 * Run:   build/bench/bench_ops --op all --sizes small [-w 1 -n 5 --check 1 --dtype f32
 *                              --threads 2 --json out.json --torch 1]
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "bench_util.h"

#ifndef WANFARM_BENCH_DIR
#define WANFARM_BENCH_DIR "bench" /* CMake sets the source dir; this works from the repo root */
#endif

#define CHECK_SAMPLES 64
#define CHECK_TOL 1e-4 /* normalised error bound per checked entry: see PERFORMANCE.md */
#define MAX_SIZES 8

/* ------------------------------------------------------------------------------------------ */
/* small utilities */


static int64_t rng_below(uint64_t *s, int64_t n) { return (int64_t)(bu_rng_uniform(s) * (double)n); }

/* uniform in [-a, a): cheap and enough for timing and checking */
static void fill_uniform(float *x, size_t n, float a, uint64_t seed) {
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) x[i] = (float)((2.0 * bu_rng_uniform(&s) - 1.0) * a);
}


static size_t count_nonfinite(const float *y, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += !isfinite(y[i]);
    return c;
}

/* Result of a check: e_i = |ours_i - ref_i| / rms(ref over the checked entries). */
typedef struct check_acc {
    double ours[CHECK_SAMPLES], ref[CHECK_SAMPLES];
    int n;
} check_acc;

static void check_finish(const check_acc *a, size_t nonfinite, double *maxerr, long *nwrong) {
    double ss = 0;
    for (int i = 0; i < a->n; i++) ss += a->ref[i] * a->ref[i];
    double rms = a->n ? sqrt(ss / a->n) : 0;
    if (rms < 1e-30) rms = 1e-30;
    double m = 0;
    long w = (long)nonfinite;
    for (int i = 0; i < a->n; i++) {
        double e = fabs(a->ours[i] - a->ref[i]) / rms;
        if (!(e <= CHECK_TOL)) w++; /* NaN counts as wrong */
        if (!(e <= m)) m = e;
    }
    *maxerr = m;
    *nwrong = w;
}

/* Weight storage in the chosen dtype; vals is rounded to it in place so the reference sees
 * exactly what the op reads. */
static void *make_weight(wk_dtype dt, float *vals, size_t n) {
    void *s = malloc(n * wk_dtype_size(dt) + 1);
    if (!s) return NULL;
    wk_convert_from_f32(s, dt, vals, n);
    wk_convert_to_f32(vals, s, dt, n);
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* plug-ins: each op gives its size sweep, FLOPs, a shape label, a torch case string, and
 * setup / run / check / teardown over a generic state. */

typedef struct bench_state {
    int64_t d[5];
    wk_dtype wdt;
    float *a, *b, *c, *out;  /* op inputs and output, f32 */
    float *wvals;            /* the weight as the op sees it, widened (for the reference) */
    float *bvals;            /* the bias, widened */
    void *wstore, *bstore;   /* weight and bias in wdt */
    size_t nout;
} bench_state;

typedef struct bench_op {
    const char *name;
    int64_t sizes[3][MAX_SIZES][5]; /* small, medium, large; a row of zeros ends a list */
    double (*flops)(const int64_t *d);
    void (*shape)(const int64_t *d, char *buf, size_t n);
    void (*peer_case)(const int64_t *d, char *buf, size_t n);
    int (*setup)(bench_state *s);
    wf_status (*run)(wk_backend *be, bench_state *s, wf_err *e);
    void (*check)(const bench_state *s, uint64_t *rng, check_acc *acc);
} bench_op;

static void state_free(bench_state *s) {
    free(s->a);
    free(s->b);
    free(s->c);
    free(s->out);
    free(s->wvals);
    free(s->bvals);
    free(s->wstore);
    free(s->bstore);
    memset(s, 0, sizeof *s);
}

/* --- matmul: d = {M, K, N}: y[M, N] = x[M, K] w[N, K]^T + b[N] --- */
static double mm_flops(const int64_t *d) { return 2.0 * d[0] * d[1] * d[2]; }
static void mm_shape(const int64_t *d, char *b, size_t n) {
    snprintf(b, n, "M%lld K%lld N%lld", (long long)d[0], (long long)d[1], (long long)d[2]);
}
static void mm_peer(const int64_t *d, char *b, size_t n) {
    snprintf(b, n, "matmul:%lld,%lld,%lld", (long long)d[0], (long long)d[1], (long long)d[2]);
}
static int mm_setup(bench_state *s) {
    const int64_t M = s->d[0], K = s->d[1], N = s->d[2];
    s->a = malloc((size_t)(M * K) * sizeof(float));
    s->wvals = malloc((size_t)(N * K) * sizeof(float));
    s->bvals = malloc((size_t)N * sizeof(float));
    s->nout = (size_t)(M * N);
    s->out = malloc(s->nout * sizeof(float));
    if (!s->a || !s->wvals || !s->bvals || !s->out) return -1;
    fill_uniform(s->a, (size_t)(M * K), 1.0f, 1);
    fill_uniform(s->wvals, (size_t)(N * K), 1.0f / sqrtf((float)K), 2);
    fill_uniform(s->bvals, (size_t)N, 0.5f, 3);
    s->wstore = make_weight(s->wdt, s->wvals, (size_t)(N * K));
    s->bstore = make_weight(s->wdt, s->bvals, (size_t)N);
    return s->wstore && s->bstore ? 0 : -1;
}
static wf_status mm_run(wk_backend *be, bench_state *s, wf_err *e) {
    wk_tensor y = wk_tensor_2d(WK_F32, s->out, s->d[0], s->d[2]);
    wk_tensor x = wk_tensor_2d(WK_F32, s->a, s->d[0], s->d[1]);
    wk_tensor w = wk_tensor_2d(s->wdt, s->wstore, s->d[2], s->d[1]);
    wk_tensor b = wk_tensor_1d(s->wdt, s->bstore, s->d[2]);
    return wk_matmul(be, &y, &x, &w, &b, e);
}
static void mm_check(const bench_state *s, uint64_t *rng, check_acc *acc) {
    const int64_t M = s->d[0], K = s->d[1], N = s->d[2];
    for (int i = 0; i < CHECK_SAMPLES; i++) {
        int64_t m = rng_below(rng, M), n = rng_below(rng, N);
        double r = s->bvals[n];
        for (int64_t k = 0; k < K; k++) r += (double)s->a[m * K + k] * s->wvals[n * K + k];
        acc->ours[acc->n] = s->out[m * N + n];
        acc->ref[acc->n++] = r;
    }
}

/* --- attention: d = {L, NH, HD}: self-attention shape, scale 1/sqrt(HD), no bias --- */
static double att_flops(const int64_t *d) { return 4.0 * d[0] * d[0] * d[1] * d[2]; }
static void att_shape(const int64_t *d, char *b, size_t n) {
    snprintf(b, n, "L%lld NH%lld HD%lld", (long long)d[0], (long long)d[1], (long long)d[2]);
}
static void att_peer(const int64_t *d, char *b, size_t n) {
    snprintf(b, n, "attention:%lld,%lld,%lld", (long long)d[0], (long long)d[1], (long long)d[2]);
}
static int att_setup(bench_state *s) {
    const size_t n = (size_t)(s->d[0] * s->d[1] * s->d[2]);
    s->a = malloc(n * sizeof(float));
    s->b = malloc(n * sizeof(float));
    s->c = malloc(n * sizeof(float));
    s->out = malloc(n * sizeof(float));
    s->nout = n;
    if (!s->a || !s->b || !s->c || !s->out) return -1;
    fill_uniform(s->a, n, 1.7f, 4); /* std 1: logits of order 1 */
    fill_uniform(s->b, n, 1.7f, 5);
    fill_uniform(s->c, n, 1.7f, 6);
    return 0;
}
static wf_status att_run(wk_backend *be, bench_state *s, wf_err *e) {
    const int64_t L = s->d[0], NH = s->d[1], HD = s->d[2];
    wk_tensor q = wk_tensor_3d(WK_F32, s->a, L, NH, HD), k = wk_tensor_3d(WK_F32, s->b, L, NH, HD);
    wk_tensor v = wk_tensor_3d(WK_F32, s->c, L, NH, HD);
    wk_tensor o = wk_tensor_3d(WK_F32, s->out, L, NH, HD);
    return wk_attention(be, &o, &q, &k, &v, 1.0f / sqrtf((float)HD), NULL, e);
}
static void att_check(const bench_state *s, uint64_t *rng, check_acc *acc) {
    const int64_t L = s->d[0], NH = s->d[1], HD = s->d[2];
    const double scale = (double)(1.0f / sqrtf((float)HD));
    double *p = malloc((size_t)L * sizeof *p);
    if (!p) return; /* acc->n stays short: the row shows fewer checks, never a false pass */
    for (int i = 0; i < CHECK_SAMPLES; i++) {
        int64_t qi = rng_below(rng, L), h = rng_below(rng, NH), d = rng_below(rng, HD);
        const float *q = s->a + (qi * NH + h) * HD;
        double m = -INFINITY, l = 0, o = 0;
        for (int64_t j = 0; j < L; j++) {
            const float *k = s->b + (j * NH + h) * HD;
            double dot = 0;
            for (int64_t c = 0; c < HD; c++) dot += (double)q[c] * k[c];
            p[j] = dot * scale;
            if (p[j] > m) m = p[j];
        }
        for (int64_t j = 0; j < L; j++) {
            double e = exp(p[j] - m);
            l += e;
            o += e * s->c[(j * NH + h) * HD + d];
        }
        acc->ours[acc->n] = s->out[(qi * NH + h) * HD + d];
        acc->ref[acc->n++] = o / l;
    }
    free(p);
}

/* --- conv3d: d = {T, H, W, Cin, Cout}: x [1, T, H, W, Cin], 3x3x3, WanCausalConv3d padding
 * (t: 2 before, 0 after; h, w: 1 each side), so y is [1, T, H, W, Cout] --- */
static double conv_flops(const int64_t *d) { return 2.0 * d[0] * d[1] * d[2] * d[3] * d[4] * 27; }
static void conv_shape(const int64_t *d, char *b, size_t n) {
    snprintf(b, n, "T%lld %lldx%lld C%lld->%lld k3", (long long)d[0], (long long)d[1],
             (long long)d[2], (long long)d[3], (long long)d[4]);
}
static void conv_peer(const int64_t *d, char *b, size_t n) {
    snprintf(b, n, "conv3d:%lld,%lld,%lld,%lld,%lld", (long long)d[0], (long long)d[1],
             (long long)d[2], (long long)d[3], (long long)d[4]);
}
static int conv_setup(bench_state *s) {
    const int64_t T = s->d[0], H = s->d[1], W = s->d[2], Ci = s->d[3], Co = s->d[4];
    const size_t nx = (size_t)(T * H * W * Ci), nw = (size_t)(Co * Ci * 27);
    s->a = malloc(nx * sizeof(float));
    s->wvals = malloc(nw * sizeof(float));
    s->bvals = malloc((size_t)Co * sizeof(float));
    s->nout = (size_t)(T * H * W * Co);
    s->out = malloc(s->nout * sizeof(float));
    if (!s->a || !s->wvals || !s->bvals || !s->out) return -1;
    fill_uniform(s->a, nx, 1.0f, 7);
    fill_uniform(s->wvals, nw, 1.0f / sqrtf((float)(Ci * 27)), 8);
    fill_uniform(s->bvals, (size_t)Co, 0.5f, 9);
    s->wstore = make_weight(s->wdt, s->wvals, nw);
    s->bstore = make_weight(s->wdt, s->bvals, (size_t)Co);
    return s->wstore && s->bstore ? 0 : -1;
}
static const wk_conv_params conv_causal = {.stride = {1, 1, 1}, .pad = {{2, 0}, {1, 1}, {1, 1}}};
static wf_status conv_run(wk_backend *be, bench_state *s, wf_err *e) {
    const int64_t T = s->d[0], H = s->d[1], W = s->d[2], Ci = s->d[3], Co = s->d[4];
    wk_tensor x = wk_tensor_5d(WK_F32, s->a, 1, T, H, W, Ci);
    wk_tensor y = wk_tensor_5d(WK_F32, s->out, 1, T, H, W, Co);
    wk_tensor w = wk_tensor_5d(s->wdt, s->wstore, Co, Ci, 3, 3, 3);
    wk_tensor b = wk_tensor_1d(s->wdt, s->bstore, Co);
    return wk_conv3d(be, &y, &x, &w, &b, &conv_causal, e);
}
static void conv_check(const bench_state *s, uint64_t *rng, check_acc *acc) {
    const int64_t T = s->d[0], H = s->d[1], W = s->d[2], Ci = s->d[3], Co = s->d[4];
    for (int i = 0; i < CHECK_SAMPLES; i++) {
        int64_t t = rng_below(rng, T), h = rng_below(rng, H), w = rng_below(rng, W);
        int64_t co = rng_below(rng, Co);
        double r = s->bvals[co];
        for (int64_t kt = 0; kt < 3; kt++)
            for (int64_t kh = 0; kh < 3; kh++)
                for (int64_t kw = 0; kw < 3; kw++) {
                    int64_t ti = t - 2 + kt, hi = h - 1 + kh, wi = w - 1 + kw;
                    if (ti < 0 || ti >= T || hi < 0 || hi >= H || wi < 0 || wi >= W) continue;
                    const float *xp = s->a + ((ti * H + hi) * W + wi) * Ci;
                    for (int64_t ci = 0; ci < Ci; ci++)
                        r += (double)xp[ci] * s->wvals[((co * Ci + ci) * 3 + kt) * 9 + kh * 3 + kw];
                }
        acc->ours[acc->n] = s->out[((t * H + h) * W + w) * Co + co];
        acc->ref[acc->n++] = r;
    }
}

static const bench_op bench_ops[] = {
    {"matmul",
     {{{256, 1536, 1536}, {512, 1536, 1536}, {256, 5120, 5120}},
      {{1024, 1536, 1536}, {2048, 1536, 1536}, {1024, 5120, 5120}},
      {{4096, 1536, 1536}, {4096, 5120, 5120}, {4096, 5120, 13824}}},
     mm_flops, mm_shape, mm_peer, mm_setup, mm_run, mm_check},
    {"attention",
     {{{256, 12, 128}, {512, 12, 128}},
      {{1024, 12, 128}, {2048, 12, 128}},
      {{4096, 12, 128}}},
     att_flops, att_shape, att_peer, att_setup, att_run, att_check},
    {"conv3d",
     {{{3, 32, 32, 96, 96}, {3, 32, 32, 192, 192}},
      {{3, 64, 64, 96, 96}, {3, 64, 64, 192, 192}, {3, 32, 32, 384, 384}},
      {{3, 64, 64, 384, 384}, {3, 128, 128, 96, 96}}},
     conv_flops, conv_shape, conv_peer, conv_setup, conv_run, conv_check},
};
#define N_OPS ((int)(sizeof bench_ops / sizeof bench_ops[0]))

/* ------------------------------------------------------------------------------------------ */
/* the torch peer */

#define MAX_CASES 32
typedef struct peer {
    int ran;
    char why[256];      /* reason when skipped or failed */
    char version[64];
    int n;
    char key[MAX_CASES][64];
    double ms[MAX_CASES];
} peer;

static int python_has_torch(const char *py) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import torch' >/dev/null 2>&1", py);
    return system(cmd) == 0;
}

/* Finds the python (WANFARM_TORCH_PYTHON, else ~/.venvs/ref/bin/python), runs torch_peer.py
 * on the cases and parses its JSON lines. On any failure sets p->why and leaves p->ran 0. */
static void peer_run(peer *p, const char *cases[], int ncases, int threads, int warm, int iters,
                     const char *dtype) {
    char py[1024];
    const char *env = getenv("WANFARM_TORCH_PYTHON");
    const char *home = getenv("HOME");
    if (env && *env) {
        snprintf(py, sizeof py, "%s", env);
    } else {
        snprintf(py, sizeof py, "%s/.venvs/ref/bin/python", home ? home : "");
        if (access(py, X_OK) != 0) {
            snprintf(p->why, sizeof p->why,
                     "WANFARM_TORCH_PYTHON unset and %.200s not found", py);
            return;
        }
    }
    if (strchr(py, '\'')) {
        snprintf(p->why, sizeof p->why, "python path contains a quote: %.200s", py);
        return;
    }
    if (!python_has_torch(py)) {
        snprintf(p->why, sizeof p->why, "%.200s cannot import torch", py);
        return;
    }
    char cmd[8192];
    int o = snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=%d '%s' '%s/torch_peer.py' --threads %d "
                     "-w %d -n %d --dtype %s", threads, py, WANFARM_BENCH_DIR, threads, warm,
                     iters, dtype);
    for (int i = 0; i < ncases && o < (int)sizeof cmd; i++)
        o += snprintf(cmd + o, sizeof cmd - (size_t)o, " %s", cases[i]);
    if (o >= (int)sizeof cmd - 8) {
        snprintf(p->why, sizeof p->why, "too many cases for one peer command");
        return;
    }
    snprintf(cmd + o, sizeof cmd - (size_t)o, " 2>&1");
    FILE *f = popen(cmd, "r");
    if (!f) {
        snprintf(p->why, sizeof p->why, "cannot start %.150s: %.80s", py, strerror(errno));
        return;
    }
    char line[4096], last[256] = "";
    while (fgets(line, sizeof line, f)) {
        char *k = strstr(line, "\"case\": \""), *m = strstr(line, "\"ms\": ");
        char *v = strstr(line, "\"torch\": \"");
        if (k && m && p->n < MAX_CASES) {
            k += 9;
            char *e = strchr(k, '"');
            if (!e || e - k >= 64) continue;
            memcpy(p->key[p->n], k, (size_t)(e - k));
            p->key[p->n][e - k] = 0;
            p->ms[p->n++] = strtod(m + 6, NULL);
        } else if (v) {
            v += 10;
            char *e = strchr(v, '"');
            if (e && e - v < 64) {
                memcpy(p->version, v, (size_t)(e - v));
                p->version[e - v] = 0;
            }
        } else {
            line[strcspn(line, "\n")] = 0;
            if (*line) snprintf(last, sizeof last, "%.200s", line);
        }
    }
    int rc = pclose(f);
    if (rc != 0) {
        snprintf(p->why, sizeof p->why, "torch_peer.py failed (status %d): %.200s", rc, last);
        return;
    }
    p->ran = 1;
}

static double peer_ms(const peer *p, const char *key) {
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->key[i], key) == 0) return p->ms[i];
    return NAN;
}

/* ------------------------------------------------------------------------------------------ */


static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--op matmul|attention|conv3d|all] [--sizes small|medium|large]\n"
            "          [-w warmup] [-n iters] [--check 0|1] [--dtype f32|bf16] [--threads N]\n"
            "          [--json FILE] [--torch 0|1]\n"
            "Metrics are defined in bench/PERFORMANCE.md.\n",
            argv0);
}

typedef struct row {
    const char *op;
    char shape[64];
    double ms, gflops, pct, err, torch_ms, ratio;
    long wrong;
    int checked;
} row;

int main(int argc, char **argv) {
    const char *op_sel = "all", *sizes = "small", *json = NULL, *dtype = "f32";
    int warm = 1, iters = 5, check = 1, threads = 0, torch = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(argv[0]);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "bench_ops: %s needs a value\n", a);
            usage(argv[0]);
            return 2;
        }
        i++;
        if (!strcmp(a, "--op")) op_sel = v;
        else if (!strcmp(a, "--sizes")) sizes = v;
        else if (!strcmp(a, "-w")) warm = atoi(v);
        else if (!strcmp(a, "-n")) iters = atoi(v);
        else if (!strcmp(a, "--check")) check = atoi(v);
        else if (!strcmp(a, "--dtype")) dtype = v;
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--json")) json = v;
        else if (!strcmp(a, "--torch")) torch = atoi(v);
        else {
            fprintf(stderr, "bench_ops: unknown option %s\n", a);
            usage(argv[0]);
            return 2;
        }
    }
    int cls = !strcmp(sizes, "small") ? 0 : !strcmp(sizes, "medium") ? 1
              : !strcmp(sizes, "large") ? 2 : -1;
    wk_dtype wdt = !strcmp(dtype, "f32")    ? WK_F32
                   : !strcmp(dtype, "bf16") ? WK_BF16
                                            : WK_DTYPE_COUNT;
    int op_found = !strcmp(op_sel, "all");
    for (int i = 0; i < N_OPS; i++) op_found |= !strcmp(op_sel, bench_ops[i].name);
    if (cls < 0 || wdt == WK_DTYPE_COUNT || !op_found || iters < 1 || warm < 0 || threads < 0) {
        fprintf(stderr, "bench_ops: bad value (--op %s --sizes %s --dtype %s -n %d -w %d "
                "--threads %d)\n", op_sel, sizes, dtype, iters, warm, threads);
        usage(argv[0]);
        return 2;
    }

    wf_err err = {0};
    wk_backend *be = NULL;
    if (wk_backend_cpu_new(&be, threads, &err) != WF_OK) {
        fprintf(stderr, "bench_ops: %s\n", err.msg);
        return 1;
    }
    threads = be->nthreads;
    omp_set_num_threads(threads);

    /* the case list, then the peer over all of it in one python process */
    const bench_op *cops[MAX_CASES];
    const int64_t *cdims[MAX_CASES];
    char ckeys[MAX_CASES][64];
    const char *ckp[MAX_CASES];
    int ncases = 0;
    for (int i = 0; i < N_OPS; i++) {
        if (strcmp(op_sel, "all") && strcmp(op_sel, bench_ops[i].name)) continue;
        for (int j = 0; j < MAX_SIZES && bench_ops[i].sizes[cls][j][0] && ncases < MAX_CASES; j++) {
            cops[ncases] = &bench_ops[i];
            cdims[ncases] = bench_ops[i].sizes[cls][j];
            bench_ops[i].peer_case(cdims[ncases], ckeys[ncases], sizeof ckeys[0]);
            ckp[ncases] = ckeys[ncases];
            ncases++;
        }
    }

    double peak = bu_measure_peak(threads);
    printf("# bench_ops: wanfarm CPU backend, %d threads, OpenBLAS %s\n", threads,
           openblas_get_config());
    printf("# peak: %.1f GFLOP/s (f32 cblas_sgemm 2048^3, best of <= 10 calls after a warm-up)\n",
           peak);
    printf("# sizes %s, weight dtype %s, warm-up %d, iters %d (time = median), check %s\n", sizes,
           dtype, warm, iters,
           check ? "64 random entries vs double + NaN/Inf scan (tol 1e-4 normalised)" : "off");
    fflush(stdout);

    peer pr = {0};
    if (!torch) snprintf(pr.why, sizeof pr.why, "--torch 0");
    else peer_run(&pr, ckp, ncases, threads, warm, iters, dtype);
    if (pr.ran)
        printf("# torch peer: torch %s, %d threads (bench/torch_peer.py)\n", pr.version, threads);
    else printf("# torch peer: skipped (%s)\n", pr.why);
    printf("#\n# %-9s %-22s %-4s %9s %9s %6s %9s %6s %9s %6s\n", "op", "shape", "wdt", "time(ms)",
           "GFLOP/s", "%peak", "error", "#wrong", "torch(ms)", "ratio");
    fflush(stdout);

    row rows[MAX_CASES];
    long total_wrong = 0;
    int nrows = 0, failed_runs = 0;
    double pct_sum = 0;
    double *times = malloc((size_t)iters * sizeof *times);
    if (!times) {
        fprintf(stderr, "bench_ops: out of memory\n");
        return 1;
    }
    for (int c = 0; c < ncases; c++) {
        const bench_op *op = cops[c];
        bench_state s = {.wdt = wdt};
        memcpy(s.d, cdims[c], sizeof s.d);
        row *r = &rows[nrows];
        memset(r, 0, sizeof *r);
        r->op = op->name;
        op->shape(s.d, r->shape, sizeof r->shape);
        wk_dtype shown = strcmp(op->name, "attention") ? wdt : WK_F32;
        if (op->setup(&s) != 0) {
            printf("  %-9s %-22s out of memory\n", op->name, r->shape);
            state_free(&s);
            failed_runs++;
            continue;
        }
        wf_status st = WF_OK;
        for (int i = 0; i < warm && st == WF_OK; i++) st = op->run(be, &s, &err);
        for (int i = 0; i < iters && st == WF_OK; i++) {
            double t0 = bu_now_s();
            st = op->run(be, &s, &err);
            times[i] = bu_now_s() - t0;
        }
        if (st != WF_OK) {
            printf("  %-9s %-22s %-4s FAILED: %s: %s\n", op->name, r->shape, wk_dtype_name(shown),
                   wf_status_str(st), err.msg);
            state_free(&s);
            failed_runs++;
            continue;
        }
        qsort(times, (size_t)iters, sizeof *times, bu_cmp_double);
        double med = iters % 2 ? times[iters / 2] : 0.5 * (times[iters / 2 - 1] + times[iters / 2]);
        r->ms = med * 1e3;
        r->gflops = op->flops(s.d) / med * 1e-9;
        r->pct = 100.0 * r->gflops / peak;
        r->err = NAN;
        if (check) {
            uint64_t rng = 0x5eed + (uint64_t)c;
            check_acc acc = {.n = 0};
            op->check(&s, &rng, &acc);
            check_finish(&acc, count_nonfinite(s.out, s.nout), &r->err, &r->wrong);
            if (acc.n < CHECK_SAMPLES) r->wrong++; /* the check itself could not run fully */
            r->checked = 1;
            total_wrong += r->wrong;
        }
        r->torch_ms = pr.ran ? peer_ms(&pr, ckeys[c]) : NAN;
        r->ratio = r->torch_ms / r->ms;
        char e[16] = "n/a", w[16] = "n/a", tm[16] = "n/a", ra[16] = "n/a";
        if (r->checked) {
            snprintf(e, sizeof e, "%.1e", r->err);
            snprintf(w, sizeof w, "%ld", r->wrong);
        }
        if (isfinite(r->torch_ms)) {
            snprintf(tm, sizeof tm, "%.3f", r->torch_ms);
            snprintf(ra, sizeof ra, "%.2f", r->ratio);
        }
        printf("  %-9s %-22s %-4s %9.3f %9.1f %5.1f%% %9s %6s %9s %6s\n", r->op, r->shape,
               wk_dtype_name(shown), r->ms, r->gflops, r->pct, e, w, tm, ra);
        fflush(stdout);
        pct_sum += r->pct;
        nrows++;
        state_free(&s);
    }
    free(times);

    /* the peak again: if it moved, something else was running and every figure is suspect */
    double peak_after = bu_measure_peak(threads);
    int noisy = fabs(peak_after - peak) > 0.15 * fmax(peak, peak_after);
    printf("# peak after: %.1f GFLOP/s%s\n", peak_after,
           noisy ? " -- moved by more than 15%: the machine is loaded, timings are noisy" : "");
    int ok = total_wrong == 0 && failed_runs == 0;
    printf("# Out of bounds values : %ld %s\n", total_wrong, ok ? "OK" : "FAILED");
    if (failed_runs) printf("# Failed runs : %d\n", failed_runs);
    printf("# Avg %% of peak : %.1f\n", nrows ? pct_sum / nrows : 0.0);
    if (pr.ran) {
        double lsum = 0;
        int nr = 0;
        for (int i = 0; i < nrows; i++)
            if (isfinite(rows[i].ratio) && rows[i].ratio > 0) {
                lsum += log(rows[i].ratio);
                nr++;
            }
        if (nr) printf("# Geomean ratio (torch/ours) : %.2f\n", exp(lsum / nr));
    }

    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            fprintf(stderr, "bench_ops: cannot write %s: %s\n", json, strerror(errno));
            ok = 0;
        } else {
            fprintf(f, "{\"bench\": \"bench_ops\", \"threads\": %d, \"peak_gflops\": %.3f, "
                    "\"peak_gflops_after\": %.3f, \"noisy\": %s, \"sizes\": \"%s\", "
                    "\"dtype\": \"%s\", \"warmup\": %d, \"iters\": %d, \"torch\": ",
                    threads, peak, peak_after, noisy ? "true" : "false", sizes, dtype, warm,
                    iters);
            if (pr.ran) fprintf(f, "\"%s\"", pr.version);
            else fprintf(f, "null");
            fprintf(f, ",\n \"rows\": [");
            for (int i = 0; i < nrows; i++) {
                const row *r = &rows[i];
                fprintf(f, "%s\n  {\"op\": \"%s\", \"shape\": \"%s\", \"ms\": %.6g, "
                        "\"gflops\": %.6g, \"pct_peak\": %.4g, ", i ? "," : "", r->op, r->shape,
                        r->ms, r->gflops, r->pct);
                if (r->checked && isfinite(r->err))
                    fprintf(f, "\"error\": %.3g, \"wrong\": %ld, ", r->err, r->wrong);
                else if (r->checked) /* JSON has no NaN: the error is unbounded */
                    fprintf(f, "\"error\": \"inf\", \"wrong\": %ld, ", r->wrong);
                else fprintf(f, "\"error\": null, \"wrong\": null, ");
                if (isfinite(r->torch_ms))
                    fprintf(f, "\"torch_ms\": %.6g, \"ratio\": %.4g}", r->torch_ms, r->ratio);
                else fprintf(f, "\"torch_ms\": null, \"ratio\": null}");
            }
            fprintf(f, "\n ],\n \"out_of_bounds\": %ld, \"failed_runs\": %d, \"ok\": %s}\n",
                    total_wrong, failed_runs, ok ? "true" : "false");
            if (fclose(f) != 0) ok = 0;
        }
    }
    wk_backend_destroy(&be);
    return ok ? 0 : 1;
}
