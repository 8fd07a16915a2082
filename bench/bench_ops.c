/* bench_ops.c: the op benchmark (matmul, attention, conv3d), a plug-in of the bench engine
 * (bench_engine.h), in the nccl-tests shape.
 *
 * What it is: one small op table (sizes, FLOP count, setup, run, check per op) under the engine.
 * For each shape of the chosen size class the engine runs -w warm-up and -n timed calls of the op
 * through the backend dispatcher and prints one row: median time, GFLOP/s, % of the peak measured
 * at start (a large f32 OpenBLAS sgemm), the correctness check (64 random output entries against a
 * double dot product, plus a scan of the whole output for NaN/Inf) and, when a python with torch
 * is found, the PyTorch time for the same shape and the ratio torch/ours. A footer says OK or
 * FAILED; the exit status is 1 when any value was out of bounds. Metrics: bench/PERFORMANCE.md.
 * What it is not: a test (tests/test_ops.c owns correctness) or a GPU benchmark (yet).
 * Run:   build/bench/bench_ops --op all --sizes small [-w 1 -n 5 --check 1 --dtype f32
 *                              --threads 2 --json out.json --torch 1]
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bench_engine.h"

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
    return wk_attention(be, &o, &q, &k, &v, 1.0f / sqrtf((float)HD), 0, NULL, e);
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
/* the plug-in: one row per shape of the chosen ops and size class */

#define MAX_CASES 32
static struct {
    const char *op, *sizes;        /* --op, --sizes */
    int ncases;
    const bench_op *ops[MAX_CASES];
    const int64_t *dims[MAX_CASES];
    char key[MAX_CASES][64];       /* the peer's name of each case: "matmul:256,1536,1536" */
    double torch_ms[MAX_CASES];
    bench_state s;                 /* the current row's buffers */
} O = {.op = "all", .sizes = "small"};

static int ops_init(bn_run *e) {
    (void)e;
    const int cls = !strcmp(O.sizes, "small") ? 0 : !strcmp(O.sizes, "medium") ? 1
                    : !strcmp(O.sizes, "large") ? 2 : -1;
    int found = !strcmp(O.op, "all");
    for (int i = 0; i < N_OPS; i++) found |= !strcmp(O.op, bench_ops[i].name);
    if (cls < 0 || !found) {
        fprintf(stderr, "bench_ops: bad value (--op %s --sizes %s)\n", O.op, O.sizes);
        return 2;
    }
    for (int i = 0; i < N_OPS; i++) {
        if (strcmp(O.op, "all") && strcmp(O.op, bench_ops[i].name)) continue;
        for (int j = 0; j < MAX_SIZES && bench_ops[i].sizes[cls][j][0] && O.ncases < MAX_CASES; j++) {
            O.ops[O.ncases] = &bench_ops[i];
            O.dims[O.ncases] = bench_ops[i].sizes[cls][j];
            bench_ops[i].peer_case(O.dims[O.ncases], O.key[O.ncases], sizeof O.key[0]);
            O.torch_ms[O.ncases++] = NAN;
        }
    }
    return 0;
}

static wf_status ops_setup(bn_run *e, wf_err *err) {
    (void)err;
    printf("# sizes %s, weight dtype %s, warm-up %d, iters %d (time = median), check %s\n",
           O.sizes, e->o.dtype, e->o.warm, e->o.iters,
           e->o.check ? "64 random entries vs double + NaN/Inf scan (tol 1e-4 normalised)" : "off");
    e->nrows = O.ncases;
    return WF_OK;
}

/* bench/torch_peer.py over every case in one python process: a {"case": ..., "ms": ...} line each. */
static void ops_peer(bn_run *e, char *detail, size_t n) {
    char py[1024], args[4096];
    bu_peer *p = &e->peer;
    if (bu_find_python("torch", py, sizeof py, p->why, sizeof p->why)) return;
    int k = snprintf(args, sizeof args, "--threads %d -w %d -n %d --dtype %s", e->o.threads,
                     e->o.warm, e->o.iters, e->o.dtype);
    for (int i = 0; i < O.ncases && k < (int)sizeof args; i++)
        k += snprintf(args + k, sizeof args - (size_t)k, " %s", O.key[i]);
    json_t *lines = bu_run_peer(py, WANFARM_BENCH_DIR, "torch_peer.py", args, e->o.threads, "case",
                                p->why, sizeof p->why);
    for (size_t l = 0; l < json_array_size(lines); l++) {
        json_t *o = json_array_get(lines, l);
        const char *c = json_string_value(json_object_get(o, "case"));
        if (json_object_get(o, "torch")) bu_json_str_copy(o, "torch", p->torch, sizeof p->torch);
        for (int i = 0; c && i < O.ncases; i++)
            if (!strcmp(c, O.key[i])) O.torch_ms[i] = bu_json_num_or_nan(o, "ms");
    }
    p->ran = lines != NULL;
    json_decref(lines);
    snprintf(detail, n, "bench/torch_peer.py");
}

static wf_status ops_row(bn_run *e, int i, bn_row *r, wf_err *err) {
    const bench_op *op = O.ops[i];
    O.s = (bench_state){.wdt = e->o.wdt};
    memcpy(O.s.d, O.dims[i], sizeof O.s.d);
    snprintf(r->cell[0], BN_CELL, "%s", op->name);
    op->shape(O.s.d, r->cell[1], BN_CELL);
    const wk_dtype shown = strcmp(op->name, "attention") ? e->o.wdt : WK_F32; /* no weight */
    snprintf(r->cell[2], BN_CELL, "%s", wk_dtype_name(shown));
    r->flops = op->flops(O.s.d);
    r->torch_ms = O.torch_ms[i];
    return op->setup(&O.s) ? wf_fail(err, WF_ENOMEM, "out of memory") : WF_OK;
}

static wf_status ops_run(bn_run *e, int i, int call, wf_err *err) {
    (void)call;
    return O.ops[i]->run(e->be, &O.s, err);
}

/* The check: 64 sampled entries against double references, plus the NaN/Inf scan. */
static void ops_row_done(bn_run *e, int i, bn_row *r) {
    if (!r->st && e->o.check) {
        uint64_t rng = 0x5eed + (uint64_t)i;
        check_acc acc = {.n = 0};
        O.ops[i]->check(&O.s, &rng, &acc);
        check_finish(&acc, count_nonfinite(O.s.out, O.s.nout), &r->error, &r->wrong);
        if (acc.n < CHECK_SAMPLES) r->wrong++; /* the check itself could not run fully */
        r->ref = "double";
    }
    state_free(&O.s);
}

static void ops_json(bn_run *e, json_t *o) {
    (void)e;
    json_object_set_new(o, "sizes", json_string(O.sizes));
}

static void ops_row_json(bn_run *e, int i, const bn_row *r, json_t *jr) {
    (void)e;
    (void)i;
    json_object_set_new(jr, "op", json_string(r->cell[0]));
    json_object_set_new(jr, "shape", json_string(r->cell[1]));
    /* JSON has no NaN: an unbounded error (a NaN in the output) is the string "inf" */
    json_object_set_new(jr, "error", !r->ref ? json_null()
                                     : isfinite(r->error) ? json_real(r->error) : json_string("inf"));
    json_object_set_new(jr, "wrong", r->ref ? json_integer(r->wrong) : json_null());
}

static const bn_flag ops_flags[] = {{"--op", "matmul|attention|conv3d|all", 's', &O.op, 0, 0, NULL},
                                    {"--sizes", "small|medium|large", 's', &O.sizes, 0, 0, NULL},
                                    {NULL, NULL, 0, NULL, 0, 0, NULL}};

static const bn_col ops_cols[] = {
    {"op", NULL, -9, BN_TEXT, NULL},          {"shape", NULL, -22, BN_TEXT, NULL},
    {"wdt", NULL, -4, BN_TEXT, NULL},         {"time(ms)", NULL, 9, BN_MS, "%.3f"},
    {"GFLOP/s", NULL, 9, BN_GFLOPS, "%.1f"},  {"%peak", NULL, 6, BN_PCT, "%.1f%%"},
    {"error", NULL, 9, BN_ERROR, "%.1e"},     {"#wrong", NULL, 6, BN_WRONG, NULL},
    {"torch(ms)", NULL, 9, BN_TORCH_MS, "%.3f"}, {"ratio", NULL, 6, BN_RATIO, "%.2f"}};

static const bn_bench ops_bench = {
    .name = "bench_ops", .note = "Metrics are defined in bench/PERFORMANCE.md.",
    .flags = ops_flags, .flag_set = BN_DTYPE | BN_TORCH | BN_BACKEND | BN_PEAK | BN_AVERAGES,
    .warm = 1, .iters = 5, .cols = ops_cols, .ncols = 10, .nkeys = 3,
    .init = ops_init, .setup = ops_setup, .peer = ops_peer, .row = ops_row, .run = ops_run,
    .row_done = ops_row_done, .json = ops_json, .row_json = ops_row_json};

int main(int argc, char **argv) { return bn_main(&ops_bench, argc, argv); }
