/* ops_sampler.c: the op-test rows for the samplers' and guidance's updates: scale_add, guidance,
 * unipc_update and first_nonfinite (tests/test_ops.c runs them; tests/test_ops.h has the contract
 * of a runner).
 *
 * What it is: one runner per op. Inputs are fresh random values from the seed, the output a
 * guarded buffer (or the input itself, for the in-place rows the sampler uses: x updated in
 * place, the guided velocity over the conditional one); the reference is the backend.h formula
 * in double. first_nonfinite gets NaN and infinities planted at given places and must name the
 * first (error 0, else 1). Rows named "rejects" check that wrong element counts, dtypes and
 * missing history terms fail with WF_EINVAL / WF_EUNSUPPORTED and a message naming the op and
 * the argument.
 * What it is not: a test of the sampler (tests/test_sampler.c checks whole runs against
 * Diffusers, to the bit).
 * Run: build/tests/test_ops --filter scale_add (or guidance, unipc_update, first_nonfinite).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_ops.h"

/* The UniPC coefficients of the rows: values of the size a 40-step flow-shift-5 grid gives. */
static wk_unipc_coef row_coef(int order) {
    wk_unipc_coef c = {order, 0.9731f, -0.0516f, -0.0433f, {-1.27f, -2.61f}, {0.5f, 0.31f, 0.47f}};
    return c;
}

#define NBUF 6
typedef struct sb_bag {
    float *b[NBUF];
    bool oom;
} sb_bag;

/* buffer k: n guarded floats ~ N(0, 1) */
static float *sb_normal(sb_bag *g, int k, tu_rng *rng, int64_t n) {
    g->b[k] = tu_guarded_alloc((size_t)n);
    if (!g->b[k]) g->oom = true;
    else tu_fill_normal(rng, g->b[k], (size_t)n, 1.0f);
    return g->b[k];
}

static void sb_free(sb_bag *g) {
    for (int k = 0; k < NBUF; k++) tu_guarded_free(g->b[k]);
}

static void sb_compare(const sb_bag *g, const float *out, const double *ref, int64_t n,
                       double *err, int *bad) {
    *err = tu_rel_l2(out, ref, (size_t)n);
    *bad = tu_count_nonfinite(out, ref, (size_t)n) > 0;
    for (int k = 0; k < NBUF; k++)
        if (g->b[k] && !tu_guard_ok(g->b[k], (size_t)n)) *bad = 1;
}

static wf_status sb_nomem(wf_err *e, const char *op) {
    return wf_fail(e, WF_ENOMEM, "%s runner: out of memory for test buffers", op);
}

/* ---------------------------------------------------------------------------------------------
 * scale_add: p = {n, s x 1000, in place}. y = a + s b; in place: y is a (Euler's x + dt v).
 * guidance: p = {n, g x 1000, in place}. y = u + g (c - u); in place: y is c (v over itself).
 * ------------------------------------------------------------------------------------------- */
static wf_status run_scale_add(const op_case *c, wk_backend *be, tu_rng *rng, double *err,
                               int *bad, wf_err *e) {
    const int64_t n = c->p[0];
    const float s = (float)c->p[1] / 1000.0f;
    const bool inplace = c->p[2] != 0;
    const bool guide = strcmp(c->op, "guidance") == 0;
    sb_bag g = {0};
    float *a = sb_normal(&g, 0, rng, n), *b = sb_normal(&g, 1, rng, n);
    float *y = inplace ? (guide ? b : a) : sb_normal(&g, 2, rng, n);
    double *ref = malloc((size_t)n * sizeof *ref);
    wf_status st = WF_OK;
    if (g.oom || !ref) {
        st = sb_nomem(e, c->op);
        goto out;
    }
    for (int64_t i = 0; i < n; i++)
        ref[i] = guide ? (double)a[i] + (double)s * ((double)b[i] - (double)a[i])
                       : (double)a[i] + (double)s * (double)b[i];
    wk_tensor yt = wk_tensor_1d(WK_F32, y, n), at = wk_tensor_1d(WK_F32, a, n);
    wk_tensor bt = wk_tensor_2d(WK_F32, b, 1, n); /* any shape of n elements */
    st = guide ? wk_guidance(be, &yt, &at, &bt, s, e) : wk_scale_add(be, &yt, &at, &bt, s, e);
    if (!st) sb_compare(&g, y, ref, n, err, bad);
out:
    free(ref);
    sb_free(&g);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * unipc_update: p = {n, order, corrector, in place}. m[0..order) and d (corrector) ~ N(0, 1),
 * the coefficients of row_coef; in place: y is x (the sampler's predictor).
 * ------------------------------------------------------------------------------------------- */
static wf_status run_unipc(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                           wf_err *e) {
    const int64_t n = c->p[0];
    const int p = (int)c->p[1];
    const bool corr = c->p[2] != 0, inplace = c->p[3] != 0;
    const wk_unipc_coef k = row_coef(p);
    sb_bag g = {0};
    float *x = sb_normal(&g, 0, rng, n), *m[3] = {NULL, NULL, NULL}, *d = NULL;
    for (int j = 0; j < p; j++) m[j] = sb_normal(&g, 1 + j, rng, n);
    if (corr) d = sb_normal(&g, 4, rng, n);
    float *y = inplace ? x : sb_normal(&g, 5, rng, n);
    double *ref = malloc((size_t)n * sizeof *ref);
    wf_status st = WF_OK;
    if (g.oom || !ref) {
        st = sb_nomem(e, c->op);
        goto out;
    }
    for (int64_t i = 0; i < n; i++) {
        const double m0 = m[0][i];
        double s = 0;
        for (int j = 1; j < p; j++) s += (double)k.rhos[j - 1] * ((m[j][i] - m0) / k.rks[j - 1]);
        if (corr) s += (double)k.rhos[p - 1] * ((double)d[i] - m0);
        ref[i] = (double)k.ratio * x[i] - (double)k.a_phi * m0 - (double)k.a_B * s;
    }
    wk_tensor yt = wk_tensor_1d(WK_F32, y, n), xt = wk_tensor_1d(WK_F32, x, n), mt[3], dt;
    const wk_tensor *mp[3] = {NULL, NULL, NULL};
    for (int j = 0; j < p; j++) {
        mt[j] = wk_tensor_1d(WK_F32, m[j], n);
        mp[j] = &mt[j];
    }
    if (corr) dt = wk_tensor_1d(WK_F32, d, n);
    st = wk_unipc_update(be, &yt, &xt, mp, corr ? &dt : NULL, &k, e);
    if (!st) sb_compare(&g, y, ref, n, err, bad);
out:
    free(ref);
    sb_free(&g);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * first_nonfinite: p = {n, first bad (-1: none), its kind (0 NaN, 1 +inf, 2 -inf), a later bad
 * one (-1: none)}. Error 0 when the index is the first bad one's (n when none), else 1.
 * ------------------------------------------------------------------------------------------- */
static wf_status run_nonfinite(const op_case *c, wk_backend *be, tu_rng *rng, double *err,
                               int *bad, wf_err *e) {
    const int64_t n = c->p[0], first = c->p[1], later = c->p[3];
    sb_bag g = {0};
    float *x = sb_normal(&g, 0, rng, n);
    if (g.oom) return sb_nomem(e, c->op);
    const float kinds[3] = {NAN, INFINITY, -INFINITY};
    if (later >= 0) x[later] = NAN;
    if (first >= 0) x[first] = kinds[c->p[2]];
    int64_t idx = -7;
    wk_tensor xt = wk_tensor_3d(WK_F32, x, 1, 1, n);
    wf_status st = wk_first_nonfinite(be, &xt, &idx, e);
    if (!st) {
        *err = idx == (first >= 0 ? first : n) ? 0.0 : 1.0;
        *bad = !tu_guard_ok(x, (size_t)n);
        if (*err) fprintf(stderr, "  first_nonfinite: got %lld\n", (long long)idx);
    }
    sb_free(&g);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * rejects
 * ------------------------------------------------------------------------------------------- */

static wf_status run_rejects(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                             wf_err *e) {
    static float buf[64], buf2[64]; /* never read: every call must fail its checks first */
    int failed = 0;
    wf_err le;
    wk_tensor a = wk_tensor_1d(WK_F32, buf, 12), b = wk_tensor_2d(WK_F32, buf2, 3, 5);
    wk_tensor h = wk_tensor_1d(WK_BF16, buf2, 12), i32 = wk_tensor_1d(WK_I32, buf2, 12);
    wk_tensor dev = a;
    dev.device = WK_DEV_CUDA;
    int64_t idx = 0;
    const wk_tensor *m1[3] = {&a, NULL, NULL}, *mb[3] = {&a, &b, NULL};
    wk_unipc_coef k2 = row_coef(2), k4 = row_coef(3);
    k4.order = 4;
    if (strcmp(c->op, "scale_add") == 0) {
        OPS_EXPECT("b of 15 for 12", wk_scale_add(be, &a, &a, &b, 1, &le), WF_EINVAL, "scale_add",
                   "[3, 5]", NULL);
        OPS_EXPECT("a bf16", wk_scale_add(be, &a, &h, &a, 1, &le), WF_EUNSUPPORTED, "scale_add",
                   "bf16", NULL);
        OPS_EXPECT("y on a device", wk_scale_add(be, &dev, &a, &a, 1, &le), WF_EINVAL, "scale_add",
                   "y", NULL);
    } else if (strcmp(c->op, "guidance") == 0) {
        OPS_EXPECT("c of 15 for 12", wk_guidance(be, &a, &a, &b, 5, &le), WF_EINVAL, "guidance",
                   "c", NULL);
        OPS_EXPECT("u i32", wk_guidance(be, &a, &i32, &a, 5, &le), WF_EUNSUPPORTED, "guidance", "u",
                   NULL);
    } else if (strcmp(c->op, "unipc_update") == 0) {
        OPS_EXPECT("order 2 without m[1]", wk_unipc_update(be, &a, &a, m1, NULL, &k2, &le),
                   WF_EINVAL, "unipc_update", "m[1]", NULL);
        OPS_EXPECT("order 4", wk_unipc_update(be, &a, &a, mb, NULL, &k4, &le), WF_EINVAL,
                   "unipc_update", "order 4", NULL);
        OPS_EXPECT("m[1] of 15", wk_unipc_update(be, &a, &a, mb, NULL, &k2, &le), WF_EINVAL,
                   "unipc_update", "m[1]", NULL);
        OPS_EXPECT("d of 15", wk_unipc_update(be, &a, &a, m1, &b, &k2, &le), WF_EINVAL,
                   "unipc_update", NULL, NULL);
        OPS_EXPECT("no coefficients", wk_unipc_update(be, &a, &a, m1, NULL, NULL, &le), WF_EINVAL,
                   "unipc_update", "order", NULL);
    } else if (strcmp(c->op, "first_nonfinite") == 0) {
        OPS_EXPECT("x bf16", wk_first_nonfinite(be, &h, &idx, &le), WF_EUNSUPPORTED,
                   "first_nonfinite", "bf16", NULL);
        OPS_EXPECT("x on a device", wk_first_nonfinite(be, &dev, &idx, &le), WF_EINVAL,
                   "first_nonfinite", "x", NULL);
    } else {
        return wf_fail(e, WF_EINVAL, "rejects runner: no checks for op %s", c->op);
    }
    (void)rng;
    *err = failed;
    *bad = 0;
    return WF_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The rows. Tolerances bound ||out - ref|| / ||ref||; f32 eps = 2^-23 = 1.2e-7.
 * ------------------------------------------------------------------------------------------- */
#define WHY_AXPY "a product and a sum, each rounded to f32, against double: <= ~1.5 ulp, 3e-7"
#define WHY_GUIDE "a difference, a product and a sum in f32 against double: g amplifies the " \
                  "difference's rounding by g / |result| ~ 1-5 ulp rms: 5e-7"
#define WHY_UNIPC "up to ten f32 roundings (two quotients by rks) with coefficients below 3: " \
                  "a few ulp, 5e-7"
#define WHY_INDEX "an index: must be exact"
#define WHY_REJECT "count of bad calls not rejected with the right status and message"

const op_case ops_sampler_cases[] = {
    /* scale_add: p = {n, s x 1000, in place} */
    {"scale_add", "n=5 s=-0.37", run_scale_add, {5, -370, 0}, WK_F32, 3e-7, WHY_AXPY},
    {"scale_add", "n=100003 s=-0.0251 in place (Euler)", run_scale_add, {100003, -25, 1}, WK_F32,
     3e-7, WHY_AXPY},
    {"scale_add", "n=77777 s=-0.9993 (x0 = x - sigma v)", run_scale_add, {77777, -999, 0}, WK_F32,
     3e-7, WHY_AXPY},
    {"scale_add", "rejects bad shapes and dtypes", run_rejects, {0}, WK_F32, 0, WHY_REJECT},
    /* guidance: p = {n, g x 1000, in place} */
    {"guidance", "n=13 g=5", run_scale_add, {13, 5000, 0}, WK_F32, 5e-7, WHY_GUIDE},
    {"guidance", "n=99991 g=3.5 in place (v over c)", run_scale_add, {99991, 3500, 1}, WK_F32,
     5e-7, WHY_GUIDE},
    {"guidance", "n=40000 g=1 (c itself)", run_scale_add, {40000, 1000, 0}, WK_F32, 3e-7,
     "u + 1 (c - u): two roundings, ~1 ulp"},
    {"guidance", "rejects bad shapes and dtypes", run_rejects, {0}, WK_F32, 0, WHY_REJECT},
    /* unipc_update: p = {n, order, corrector, in place} */
    {"unipc_update", "n=7 order 1 predictor", run_unipc, {7, 1, 0, 0}, WK_F32, 5e-7, WHY_UNIPC},
    {"unipc_update", "n=33333 order 1 corrector", run_unipc, {33333, 1, 1, 0}, WK_F32, 5e-7,
     WHY_UNIPC},
    {"unipc_update", "n=65537 order 2 predictor in place", run_unipc, {65537, 2, 0, 1}, WK_F32,
     5e-7, WHY_UNIPC},
    {"unipc_update", "n=1001 order 2 corrector", run_unipc, {1001, 2, 1, 0}, WK_F32, 5e-7,
     WHY_UNIPC},
    {"unipc_update", "n=50001 order 3 predictor in place", run_unipc, {50001, 3, 0, 1}, WK_F32,
     5e-7, WHY_UNIPC},
    {"unipc_update", "n=4099 order 3 corrector", run_unipc, {4099, 3, 1, 0}, WK_F32, 5e-7,
     WHY_UNIPC},
    {"unipc_update", "rejects bad orders and shapes", run_rejects, {0}, WK_F32, 0, WHY_REJECT},
    /* first_nonfinite: p = {n, first bad, kind, later bad} */
    {"first_nonfinite", "n=100003 all finite", run_nonfinite, {100003, -1, 0, -1}, WK_F32, 0,
     WHY_INDEX},
    {"first_nonfinite", "n=100003 NaN at 77777, NaN at 99999", run_nonfinite,
     {100003, 77777, 0, 99999}, WK_F32, 0, WHY_INDEX},
    {"first_nonfinite", "n=65536 +inf at 40000, NaN at 65535", run_nonfinite,
     {65536, 40000, 1, 65535}, WK_F32, 0, WHY_INDEX},
    {"first_nonfinite", "n=9 -inf at 0", run_nonfinite, {9, 0, 2, -1}, WK_F32, 0, WHY_INDEX},
    {"first_nonfinite", "n=1 NaN", run_nonfinite, {1, 0, 0, -1}, WK_F32, 0, WHY_INDEX},
    {"first_nonfinite", "rejects bad dtypes and memory", run_rejects, {0}, WK_F32, 0, WHY_REJECT},
};

const int ops_sampler_count = (int)(sizeof ops_sampler_cases / sizeof ops_sampler_cases[0]);
