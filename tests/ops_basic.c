/* ops_basic.c: the op-test rows for matmul, add, mul, the norms, softmax, the activations, rope and
 * upsample2x (tests/test_ops.c runs them; tests/test_ops.h has the contract of a runner).
 *
 * What it is: one runner per op family. Each makes fresh random inputs from the seed (normal or
 * uniform, never zeros), rounds weight-like inputs to the row's dtype (ops_weight), runs the op
 * through the backend dispatcher into guarded buffers, and compares with a naive double-precision
 * reference computed here from the same (rounded) inputs. Rows named "... rejects" check that bad
 * shapes and dtypes fail with the right status and a message naming the op, argument and shapes.
 * What it is not: a benchmark (bench/ times ops), nor attention and convolutions (ops_heavy.c).
 * Run: build/tests/test_ops [--filter OP] [--seed S] [--list].
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_ops.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

/* The buffers of one run, freed together by ob_free. An allocation that fails sets oom (and
 * returns NULL); a runner checks oom once after making its buffers. */
#define OB_MAX_BUFS 8
typedef struct ob_bag {
    void *heap[OB_MAX_BUFS];
    float *guarded[OB_MAX_BUFS];
    int nheap, nguarded;
    bool oom;
} ob_bag;

static void *ob_alloc(ob_bag *bag, size_t bytes) {
    WF_ASSERT(bag->nheap < OB_MAX_BUFS);
    void *p = malloc(bytes ? bytes : 1);
    if (!p) bag->oom = true;
    return bag->heap[bag->nheap++] = p;
}

static double *ob_ref(ob_bag *bag, int64_t n) { return ob_alloc(bag, (size_t)n * sizeof(double)); }

/* n floats ~ N(mean, scale^2). */
static float *ob_normal(ob_bag *bag, tu_rng *rng, int64_t n, float mean, float scale) {
    float *p = ob_alloc(bag, (size_t)n * sizeof(float));
    if (!p) return NULL;
    tu_fill_normal(rng, p, (size_t)n, scale);
    for (int64_t i = 0; i < n; i++) p[i] += mean;
    return p;
}

/* A guarded output of n floats: a copy of src (for a run in place), or, with src NULL, left as
 * allocated (the op must write every element). */
static float *ob_out(ob_bag *bag, const float *src, int64_t n) {
    WF_ASSERT(bag->nguarded < OB_MAX_BUFS);
    float *p = tu_guarded_alloc((size_t)n);
    if (!p) bag->oom = true;
    else if (src) memcpy(p, src, (size_t)n * sizeof(float));
    return bag->guarded[bag->nguarded++] = p;
}

/* A weight-like tensor in dtype dt from vals, which are rounded to dt in place (ops_weight). */
static wk_tensor ob_weight(ob_bag *bag, wk_dtype dt, float *vals, int ndim, const int64_t *shape) {
    WF_ASSERT(bag->nheap < OB_MAX_BUFS);
    void *storage = NULL;
    wk_tensor t = vals ? ops_weight(dt, vals, ndim, shape, &storage)
                       : wk_tensor_make(dt, NULL, ndim, shape);
    if (!storage) bag->oom = true;
    bag->heap[bag->nheap++] = storage;
    return t;
}

static void ob_free(ob_bag *bag) {
    for (int i = 0; i < bag->nheap; i++) free(bag->heap[i]);
    for (int i = 0; i < bag->nguarded; i++) tu_guarded_free(bag->guarded[i]);
    *bag = (ob_bag){0};
}

static wf_status ob_nomem(wf_err *e, const char *op) {
    return wf_fail(e, WF_ENOMEM, "%s runner: out of memory for test buffers", op);
}

/* The normalised error and corruption flags of out against ref (see test_ops.h). */
static void ob_compare(const float *out, const double *ref, int64_t n, double *err, int *bad) {
    *err = tu_rel_l2(out, ref, (size_t)n);
    *bad = !tu_guard_ok(out, (size_t)n) || tu_count_nonfinite(out, ref, (size_t)n) > 0;
}

/* ---------------------------------------------------------------------------------------------
 * matmul: p = {B, M, K, N, bias, qscale x 1e6}. x is [B, M, K] (B > 0) or [M, K]; w [N, K] and
 * bias [N] in wdt; qscale (f8e4m3 only): a scaled-fp8 weight, whose reference value is the
 * stored one times the scale (stored values ~ N(0, 64^2) clipped to e4m3's +-448, as a scaled
 * file's amax-scaled weights are).
 * ------------------------------------------------------------------------------------------- */
static wf_status run_matmul(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                            wf_err *e) {
    int64_t B = c->p[0], M = c->p[1], K = c->p[2], N = c->p[3], rows = (B ? B : 1) * M;
    bool has_bias = c->p[4] != 0;
    wf_status st;
    ob_bag bag = {0};
    float *x = ob_normal(&bag, rng, rows * K, 0, 1);
    const double qs = (double)c->p[5] * 1e-6;
    float *wv = ob_normal(&bag, rng, N * K, 0, qs > 0 ? 64.0f : 1.0f);
    for (int64_t i = 0; wv && qs > 0 && i < N * K; i++) /* e4m3's range is +-448 */
        wv[i] = wv[i] > 440.0f ? 440.0f : wv[i] < -440.0f ? -440.0f : wv[i];
    float *bv = ob_normal(&bag, rng, N, 0, 1);
    wk_tensor w = ob_weight(&bag, c->wdt, wv, 2, (int64_t[]){N, K});
    w.qscale = (float)qs;
    wk_tensor b = ob_weight(&bag, c->wdt, bv, 1, (int64_t[]){N});
    float *y = ob_out(&bag, NULL, rows * N);
    double *ref = ob_ref(&bag, rows * N);
    if (bag.oom) {
        st = ob_nomem(e, c->op);
        goto out;
    }
    wk_tensor xt = B ? wk_tensor_3d(WK_F32, x, B, M, K) : wk_tensor_2d(WK_F32, x, M, K);
    wk_tensor yt = B ? wk_tensor_3d(WK_F32, y, B, M, N) : wk_tensor_2d(WK_F32, y, M, N);
    if ((st = wk_matmul(be, &yt, &xt, &w, has_bias ? &b : NULL, e))) goto out;

    for (int64_t m = 0; m < rows; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = has_bias ? bv[n] : 0.0;
            for (int64_t k = 0; k < K; k++)
                s += (double)x[m * K + k] * (qs > 0 ? wv[n * K + k] * (double)w.qscale
                                                    : (double)wv[n * K + k]);
            ref[m * N + n] = s;
        }
    ob_compare(y, ref, rows * N, err, bad);
out:
    ob_free(&bag);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * add, mul: p = {a0, a1, a2, b ndim, b0, b1, b2, in place}. a is [a0, a1, a2] f32; b has the
 * given dims in wdt and broadcasts to a. In place: y aliases a.
 * ------------------------------------------------------------------------------------------- */
static wf_status run_binary(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                            wf_err *e) {
    const int64_t *p = c->p;
    int bnd = (int)p[3];
    bool is_add = strcmp(c->op, "add") == 0, in_place = p[7] != 0;
    int64_t n = p[0] * p[1] * p[2], nb = 1;
    for (int i = 0; i < bnd; i++) nb *= p[4 + i];
    wf_status st;
    ob_bag bag = {0};
    float *a = ob_normal(&bag, rng, n, 0, 1);
    float *bv = ob_normal(&bag, rng, nb, 0.5f, 1);
    wk_tensor b = ob_weight(&bag, c->wdt, bv, bnd, p + 4);
    float *y = ob_out(&bag, in_place ? a : NULL, n);
    double *ref = ob_ref(&bag, n);
    if (bag.oom) {
        st = ob_nomem(e, c->op);
        goto out;
    }
    wk_tensor at = wk_tensor_3d(WK_F32, in_place ? y : a, p[0], p[1], p[2]);
    wk_tensor yt = wk_tensor_3d(WK_F32, y, p[0], p[1], p[2]);
    if ((st = is_add ? wk_add(be, &yt, &at, &b, e) : wk_mul(be, &yt, &at, &b, e))) goto out;

    /* reference: b's dims right-aligned under a's; a b dim of 1 repeats */
    int64_t bdim[3] = {1, 1, 1};
    for (int i = 0; i < bnd; i++) bdim[3 - bnd + i] = p[4 + i];
    for (int64_t i0 = 0; i0 < p[0]; i0++)
        for (int64_t i1 = 0; i1 < p[1]; i1++)
            for (int64_t i2 = 0; i2 < p[2]; i2++) {
                int64_t ia = (i0 * p[1] + i1) * p[2] + i2;
                int64_t j0 = bdim[0] == 1 ? 0 : i0, j1 = bdim[1] == 1 ? 0 : i1,
                        j2 = bdim[2] == 1 ? 0 : i2;
                double bvv = bv[(j0 * bdim[1] + j1) * bdim[2] + j2];
                ref[ia] = is_add ? (double)a[ia] + bvv : (double)a[ia] * bvv;
            }
    ob_compare(y, ref, n, err, bad);
out:
    ob_free(&bag);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Norms: p = {rows, C, weight, extra, -, -, -, in place}. x is [rows, C] ~ N(extra, 2^2)
 * (layer_norm: a mean offset that a one-pass variance would lose) and f32.
 *   layer_norm: weight 1 = w and b [C] in wdt, 0 = no affine. eps 1e-6 (the DiT's).
 *   rms_norm: weight 1 = w [C] in wdt. eps 1e-6.
 *   rms_norm_l2: weight 1 = gamma [C] in wdt, 3 = gamma [C, 1, 1] (the VAE's layout);
 *                extra 1 = row 0 is all zeros (the 1e-12 floor must give 0, not NaN).
 * ------------------------------------------------------------------------------------------- */
static wf_status run_norm(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                          wf_err *e) {
    int64_t rows = c->p[0], C = c->p[1], wk = c->p[2], extra = c->p[3], n = rows * C;
    bool in_place = c->p[7] != 0;
    enum { LN, RMS, L2 } kind = strcmp(c->op, "layer_norm") == 0 ? LN
                                : strcmp(c->op, "rms_norm") == 0 ? RMS
                                                                  : L2;
    const float eps = 1e-6f;
    wf_status st;
    ob_bag bag = {0};
    float *x = ob_normal(&bag, rng, n, kind == LN ? (float)extra : 0.0f, 2);
    if (x && kind == L2 && extra)
        for (int64_t i = 0; i < C; i++) x[i] = 0.0f;
    float *wv = ob_normal(&bag, rng, C, 1, 0.5f);
    float *bv = ob_normal(&bag, rng, C, 0, 1);
    wk_tensor w = ob_weight(&bag, c->wdt, wv, wk == 3 ? 3 : 1, (int64_t[]){C, 1, 1});
    wk_tensor b = ob_weight(&bag, c->wdt, bv, 1, (int64_t[]){C});
    float *y = ob_out(&bag, in_place ? x : NULL, n);
    double *ref = ob_ref(&bag, n);
    if (bag.oom) {
        st = ob_nomem(e, c->op);
        goto out;
    }
    wk_tensor xt = wk_tensor_2d(WK_F32, in_place ? y : x, rows, C);
    wk_tensor yt = wk_tensor_2d(WK_F32, y, rows, C);
    const wk_tensor *wp = wk ? &w : NULL;
    if (kind == LN) st = wk_layer_norm(be, &yt, &xt, wp, wk ? &b : NULL, eps, e);
    else if (kind == RMS) st = wk_rms_norm(be, &yt, &xt, wp, eps, e);
    else st = wk_rms_norm_l2(be, &yt, &xt, wp, e);
    if (st) goto out;

    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        double mean = 0, var = 0, ss = 0;
        for (int64_t i = 0; i < C; i++) mean += xr[i];
        mean /= (double)C;
        for (int64_t i = 0; i < C; i++) {
            var += (xr[i] - mean) * (xr[i] - mean);
            ss += (double)xr[i] * xr[i];
        }
        var /= (double)C;
        for (int64_t i = 0; i < C; i++) {
            double v;
            if (kind == LN) v = (xr[i] - mean) / sqrt(var + eps);
            else if (kind == RMS) v = xr[i] / sqrt(ss / (double)C + eps);
            else v = xr[i] / fmax(sqrt(ss), 1e-12) * sqrt((double)C);
            if (wk) v *= wv[i];
            if (wk && kind == LN) v += bv[i];
            ref[r * C + i] = v;
        }
    }
    ob_compare(y, ref, n, err, bad);
out:
    ob_free(&bag);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * softmax: p = {rows, C, special, -, -, -, -, in place}. x ~ N(0, 3^2). special 1: row 0 has
 * every third entry -inf, row 1 is all -inf (gives zeros), row 2 is uniform in [-80, 80].
 * ------------------------------------------------------------------------------------------- */
static wf_status run_softmax(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                             wf_err *e) {
    int64_t rows = c->p[0], C = c->p[1], n = rows * C;
    bool special = c->p[2] != 0, in_place = c->p[7] != 0;
    wf_status st;
    ob_bag bag = {0};
    float *x = ob_normal(&bag, rng, n, 0, 3);
    if (x && special && rows >= 3) {
        for (int64_t i = 0; i < C; i += 3) x[i] = -INFINITY;
        for (int64_t i = 0; i < C; i++) x[C + i] = -INFINITY;
        tu_fill_uniform(rng, x + 2 * C, (size_t)C, -80.0f, 80.0f);
    }
    float *y = ob_out(&bag, in_place ? x : NULL, n);
    double *ref = ob_ref(&bag, n);
    if (bag.oom) {
        st = ob_nomem(e, c->op);
        goto out;
    }
    wk_tensor xt = wk_tensor_2d(WK_F32, in_place ? y : x, rows, C);
    wk_tensor yt = wk_tensor_2d(WK_F32, y, rows, C);
    if ((st = wk_softmax(be, &yt, &xt, e))) goto out;

    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        double mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < C; i++) mx = fmax(mx, xr[i]);
        for (int64_t i = 0; i < C; i++) sum += mx == -INFINITY ? 0.0 : exp(xr[i] - mx);
        for (int64_t i = 0; i < C; i++)
            ref[r * C + i] = mx == -INFINITY ? 0.0 : exp(xr[i] - mx) / sum;
    }
    ob_compare(y, ref, n, err, bad);
out:
    ob_free(&bag);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * gelu_tanh, silu: p = {n, scale, -, -, -, -, -, in place}. x ~ N(0, scale^2), shape [n].
 * ------------------------------------------------------------------------------------------- */
static wf_status run_activation(const op_case *c, wk_backend *be, tu_rng *rng, double *err,
                                int *bad, wf_err *e) {
    int64_t n = c->p[0];
    bool gelu = strcmp(c->op, "gelu_tanh") == 0, in_place = c->p[7] != 0;
    wf_status st;
    ob_bag bag = {0};
    float *x = ob_normal(&bag, rng, n, 0, (float)c->p[1]);
    float *y = ob_out(&bag, in_place ? x : NULL, n);
    double *ref = ob_ref(&bag, n);
    if (bag.oom) {
        st = ob_nomem(e, c->op);
        goto out;
    }
    wk_tensor xt = wk_tensor_1d(WK_F32, in_place ? y : x, n);
    wk_tensor yt = wk_tensor_1d(WK_F32, y, n);
    if ((st = gelu ? wk_gelu_tanh(be, &yt, &xt, e) : wk_silu(be, &yt, &xt, e))) goto out;

    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        ref[i] = gelu ? 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)))
                      : v / (1.0 + exp(-v));
    }
    ob_compare(y, ref, n, err, bad);
out:
    ob_free(&bag);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * rope: p = {L, NH, HD, F, H, W, -, in place}. With F > 0 the tables come from
 * wk_rope_table_3d(F, H, W, HD, 10000) and L = F*H*W; else the angles are uniform in [-pi, pi]
 * (each cos/sin repeated for the pair, as the op's contract says).
 * ------------------------------------------------------------------------------------------- */
static wf_status run_rope(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                          wf_err *e) {
    int64_t L = c->p[0], NH = c->p[1], HD = c->p[2], F = c->p[3], H = c->p[4], W = c->p[5];
    bool in_place = c->p[7] != 0;
    if (F > 0) L = F * H * W;
    int64_t n = L * NH * HD;
    wf_status st;
    ob_bag bag = {0};
    float *x = ob_normal(&bag, rng, n, 0, 1);
    float *cs = ob_alloc(&bag, (size_t)(L * HD) * sizeof(float));
    float *sn = ob_alloc(&bag, (size_t)(L * HD) * sizeof(float));
    float *y = ob_out(&bag, in_place ? x : NULL, n);
    double *ref = ob_ref(&bag, n);
    if (bag.oom) {
        st = ob_nomem(e, c->op);
        goto out;
    }
    if (F > 0) {
        if ((st = wk_rope_table_3d(cs, sn, F, H, W, (int)HD, 10000.0, e))) goto out;
    } else {
        for (int64_t i = 0; i < L * HD; i += 2) {
            double a = (2 * tu_uniform(rng) - 1) * M_PI;
            cs[i] = cs[i + 1] = (float)cos(a);
            sn[i] = sn[i + 1] = (float)sin(a);
        }
    }
    wk_tensor xt = wk_tensor_3d(WK_F32, in_place ? y : x, L, NH, HD);
    wk_tensor yt = wk_tensor_3d(WK_F32, y, L, NH, HD);
    wk_tensor ct = wk_tensor_2d(WK_F32, cs, L, HD), snt = wk_tensor_2d(WK_F32, sn, L, HD);
    if ((st = wk_rope(be, &yt, &xt, &ct, &snt, e))) goto out;

    for (int64_t l = 0; l < L; l++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t i = 0; i < HD; i += 2) {
                int64_t o = (l * NH + h) * HD + i;
                double co = cs[l * HD + i], si = sn[l * HD + i];
                ref[o] = (double)x[o] * co - (double)x[o + 1] * si;
                ref[o + 1] = (double)x[o] * si + (double)x[o + 1] * co;
            }
    ob_compare(y, ref, n, err, bad);
out:
    ob_free(&bag);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * rope_table: p = {F, H, W, hd}. wk_rope_table_3d against the formula of wan_spec.md §1.4,
 * evaluated here independently: feature k of token (f, h, w) belongs to pair i = k / 2; pairs
 * [0, t/2) are temporal (position f, sub-dim t), then h/2 height pairs, then w/2 width pairs, with
 * h = w = 2*(hd/6), t = hd - h - w; angle = pos * theta^(-2j/d) for the axis's pair index j.
 * The error is the largest |table - exact| (not normalised): one f32 rounding of a value <= 1.
 * ------------------------------------------------------------------------------------------- */
static wf_status run_rope_table(const op_case *c, wk_backend *be, tu_rng *rng, double *err,
                                int *bad, wf_err *e) {
    int64_t F = c->p[0], H = c->p[1], W = c->p[2], L = F * H * W;
    int hd = (int)c->p[3];
    const double theta = 10000.0;
    wf_status st;
    ob_bag bag = {0};
    float *cs = ob_out(&bag, NULL, L * hd), *sn = ob_out(&bag, NULL, L * hd);
    if (bag.oom) {
        st = ob_nomem(e, c->op);
        goto out;
    }
    if ((st = wk_rope_table_3d(cs, sn, F, H, W, hd, theta, e))) goto out;

    int dh = 2 * (hd / 6), dt = hd - 2 * dh;
    double worst = 0;
    bool nonfinite = false;
    for (int64_t f = 0; f < F; f++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t w = 0; w < W; w++) {
                int64_t tok = (f * H + h) * W + w;
                for (int k = 0; k < hd; k++) {
                    int i = k / 2, j, d;
                    int64_t pos;
                    if (i < dt / 2) j = i, d = dt, pos = f;
                    else if (i < dt / 2 + dh / 2) j = i - dt / 2, d = dh, pos = h;
                    else j = i - dt / 2 - dh / 2, d = dh, pos = w;
                    double a = (double)pos * exp(-log(theta) * (2.0 * j) / d);
                    double dc = fabs(cs[tok * hd + k] - cos(a));
                    double ds = fabs(sn[tok * hd + k] - sin(a));
                    if (!isfinite(dc) || !isfinite(ds)) nonfinite = true;
                    else worst = fmax(worst, fmax(dc, ds));
                }
            }
    *err = worst;
    *bad = !tu_guard_ok(cs, (size_t)(L * hd)) || !tu_guard_ok(sn, (size_t)(L * hd)) || nonfinite;
out:
    ob_free(&bag);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * upsample2x: p = {N, H, W, C}. x [N, H, W, C] -> y [N, 2H, 2W, C]; a copy, so exact.
 * ------------------------------------------------------------------------------------------- */
static wf_status run_upsample(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                              wf_err *e) {
    int64_t N = c->p[0], H = c->p[1], W = c->p[2], C = c->p[3], n = N * 4 * H * W * C;
    wf_status st;
    ob_bag bag = {0};
    float *x = ob_normal(&bag, rng, N * H * W * C, 0, 1);
    float *y = ob_out(&bag, NULL, n);
    double *ref = ob_ref(&bag, n);
    if (bag.oom) {
        st = ob_nomem(e, c->op);
        goto out;
    }
    wk_tensor xt = wk_tensor_4d(WK_F32, x, N, H, W, C);
    wk_tensor yt = wk_tensor_4d(WK_F32, y, N, 2 * H, 2 * W, C);
    if ((st = wk_upsample2x(be, &yt, &xt, e))) goto out;
    for (int64_t b = 0; b < N; b++)
        for (int64_t i = 0; i < 2 * H; i++)
            for (int64_t j = 0; j < 2 * W; j++)
                for (int64_t k = 0; k < C; k++)
                    ref[((b * 2 * H + i) * 2 * W + j) * C + k] =
                        x[((b * H + i / 2) * W + j / 2) * C + k];
    ob_compare(y, ref, n, err, bad);
out:
    ob_free(&bag);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * "... rejects": bad calls must fail before touching data, with the expected status and a message
 * that contains the given fragments (op, argument, shapes). The error is the number of calls that
 * did not; each is described on stderr.
 * ------------------------------------------------------------------------------------------- */

static wf_status run_rejects(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                             wf_err *e) {
    static float buf[4096];   /* never read: every call must fail its checks first */
    static float buf2[4096];
    const char *op = c->op;
    int failed = 0;
    wf_err le;
    if (strcmp(op, "matmul") == 0) {
        wk_tensor x = wk_tensor_2d(WK_F32, buf, 4, 60), w = wk_tensor_2d(WK_F32, buf2, 29, 61);
        wk_tensor y = wk_tensor_2d(WK_F32, buf, 4, 29), x61 = wk_tensor_2d(WK_F32, buf, 4, 61);
        wk_tensor y30 = wk_tensor_2d(WK_F32, buf, 4, 30), b28 = wk_tensor_1d(WK_F32, buf2, 28);
        wk_tensor xbf = wk_tensor_2d(WK_BF16, buf, 4, 61), w1 = wk_tensor_1d(WK_F32, buf2, 61);
        wk_tensor y3 = wk_tensor_3d(WK_F32, buf, 2, 2, 29);
        OPS_EXPECT("x last dim != K", wk_matmul(be, &y, &x, &w, NULL, &le), WF_EINVAL, "matmul",
                   "[4, 60]", "[29, 61]");
        OPS_EXPECT("y last dim != N", wk_matmul(be, &y30, &x61, &w, NULL, &le), WF_EINVAL, "matmul",
                   "y", "[4, 30]");
        OPS_EXPECT("y leading dims", wk_matmul(be, &y3, &x61, &w, NULL, &le), WF_EINVAL, "matmul",
                   "[2, 2, 29]", "[4, 61]");
        OPS_EXPECT("bias [28]", wk_matmul(be, &y, &x61, &w, &b28, &le), WF_EINVAL, "bias", "[28]",
                   "29");
        OPS_EXPECT("x bf16", wk_matmul(be, &y, &xbf, &w, NULL, &le), WF_EUNSUPPORTED, "matmul", "x",
                   "bf16");
        OPS_EXPECT("w 1-D", wk_matmul(be, &y, &x61, &w1, NULL, &le), WF_EINVAL, "matmul", "w",
                   "[61]");
        wk_tensor ws = w, w8 = wk_tensor_2d(WK_F8E4M3, buf2, 29, 61);
        ws.qscale = 0.5f;
        w8.qscale = -1.0f;
        OPS_EXPECT("f32 w with a scale", wk_matmul(be, &y, &x61, &ws, NULL, &le), WF_EINVAL,
                   "matmul", "scale", "f32");
        OPS_EXPECT("fp8 w with scale -1", wk_matmul(be, &y, &x61, &w8, NULL, &le), WF_EINVAL,
                   "matmul", "scale", "-1");
    } else if (strcmp(op, "add") == 0 || strcmp(op, "mul") == 0) {
        bool add = op[0] == 'a';
        wk_tensor a = wk_tensor_3d(WK_F32, buf, 5, 7, 11), b = wk_tensor_3d(WK_F32, buf2, 5, 2, 11);
        wk_tensor y = wk_tensor_3d(WK_F32, buf, 5, 7, 10);
        wk_tensor b4 = wk_tensor_4d(WK_F32, buf2, 2, 5, 7, 11);
        wk_tensor af16 = wk_tensor_3d(WK_F16, buf, 5, 7, 11);
        OPS_EXPECT("b [5, 2, 11]", add ? wk_add(be, &a, &a, &b, &le) : wk_mul(be, &a, &a, &b, &le),
                   WF_EINVAL, op, "[5, 2, 11]", "[5, 7, 11]");
        OPS_EXPECT("b [2, 5, 7, 11]",
                   add ? wk_add(be, &a, &a, &b4, &le) : wk_mul(be, &a, &a, &b4, &le), WF_EINVAL, op,
                   "[2, 5, 7, 11]", "[5, 7, 11]");
        OPS_EXPECT("y [5, 7, 10]", add ? wk_add(be, &y, &a, &a, &le) : wk_mul(be, &y, &a, &a, &le),
                   WF_EINVAL, op, "[5, 7, 10]", "[5, 7, 11]");
        OPS_EXPECT("a f16", add ? wk_add(be, &a, &af16, &a, &le) : wk_mul(be, &a, &af16, &a, &le),
                   WF_EUNSUPPORTED, op, "a", "f16");
    } else if (strcmp(op, "layer_norm") == 0 || strcmp(op, "rms_norm") == 0 ||
               strcmp(op, "rms_norm_l2") == 0) {
        wk_tensor x = wk_tensor_2d(WK_F32, buf, 3, 61), w = wk_tensor_1d(WK_F32, buf2, 60);
        wk_tensor w2 = wk_tensor_2d(WK_F32, buf2, 61, 2), y = wk_tensor_2d(WK_F32, buf, 61, 3);
        bool ln = strcmp(op, "layer_norm") == 0, l2 = strcmp(op, "rms_norm_l2") == 0;
#define NORM_CALL(yy, ww)                                                                          \
    (ln   ? wk_layer_norm(be, yy, &x, ww, NULL, 1e-6f, &le)                                        \
     : l2 ? wk_rms_norm_l2(be, yy, &x, ww, &le)                                                    \
          : wk_rms_norm(be, yy, &x, ww, 1e-6f, &le))
        OPS_EXPECT("w [60]", NORM_CALL(&x, &w), WF_EINVAL, op, "[60]", "61");
        OPS_EXPECT("w [61, 2]", NORM_CALL(&x, &w2), WF_EINVAL, op, "[61, 2]", "61");
        OPS_EXPECT("y [61, 3]", NORM_CALL(&y, NULL), WF_EINVAL, op, "[61, 3]", "[3, 61]");
#undef NORM_CALL
        if (ln) {
            OPS_EXPECT("b [60]", wk_layer_norm(be, &x, &x, NULL, &w, 1e-6f, &le), WF_EINVAL, op,
                       "b", "[60]");
        }
    } else if (strcmp(op, "softmax") == 0) {
        wk_tensor x = wk_tensor_2d(WK_F32, buf, 3, 61), y = wk_tensor_2d(WK_F32, buf, 3, 60);
        wk_tensor xb = wk_tensor_2d(WK_BF16, buf, 3, 61);
        OPS_EXPECT("y [3, 60]", wk_softmax(be, &y, &x, &le), WF_EINVAL, op, "[3, 60]", "[3, 61]");
        OPS_EXPECT("x bf16", wk_softmax(be, &x, &xb, &le), WF_EUNSUPPORTED, op, "x", "bf16");
    } else if (strcmp(op, "rope") == 0) {
        wk_tensor x = wk_tensor_3d(WK_F32, buf, 5, 2, 16), xo = wk_tensor_3d(WK_F32, buf, 5, 2, 15);
        wk_tensor x2 = wk_tensor_2d(WK_F32, buf, 10, 16), cs = wk_tensor_2d(WK_F32, buf2, 5, 16);
        wk_tensor cso = wk_tensor_2d(WK_F32, buf2, 5, 15), cs4 = wk_tensor_2d(WK_F32, buf2, 4, 16);
        OPS_EXPECT("odd HD", wk_rope(be, &xo, &xo, &cso, &cso, &le), WF_EINVAL, op, "[5, 2, 15]",
                   "even");
        OPS_EXPECT("x 2-D", wk_rope(be, &x2, &x2, &cs, &cs, &le), WF_EINVAL, op, "x", "[10, 16]");
        OPS_EXPECT("cos [4, 16]", wk_rope(be, &x, &x, &cs4, &cs, &le), WF_EINVAL, "cos", "[4, 16]",
                   "[5, 16]");
        OPS_EXPECT("sin [4, 16]", wk_rope(be, &x, &x, &cs, &cs4, &le), WF_EINVAL, "sin", "[4, 16]",
                   "[5, 16]");
        OPS_EXPECT("table hd 15", wk_rope_table_3d(buf, buf2, 1, 1, 1, 15, 1e4, &le), WF_EINVAL,
                   "rope_table_3d", "15", "even");
        OPS_EXPECT("table hd 0", wk_rope_table_3d(buf, buf2, 1, 1, 1, 0, 1e4, &le), WF_EINVAL,
                   "rope_table_3d", "0", NULL);
        OPS_EXPECT("table theta 0", wk_rope_table_3d(buf, buf2, 1, 1, 1, 16, 0.0, &le), WF_EINVAL,
                   "rope_table_3d", "theta", NULL);
    } else if (strcmp(op, "upsample2x") == 0) {
        wk_tensor x = wk_tensor_4d(WK_F32, buf, 1, 3, 5, 4);
        wk_tensor y = wk_tensor_4d(WK_F32, buf2, 1, 6, 9, 4);
        wk_tensor x3 = wk_tensor_3d(WK_F32, buf, 3, 5, 4);
        OPS_EXPECT("y [1, 6, 9, 4]", wk_upsample2x(be, &y, &x, &le), WF_EINVAL, op, "[1, 6, 9, 4]",
                   "[1, 6, 10, 4]");
        OPS_EXPECT("x 3-D", wk_upsample2x(be, &y, &x3, &le), WF_EINVAL, op, "x", "[3, 5, 4]");
    } else {
        return wf_fail(e, WF_EINVAL, "rejects runner: no checks for op %s", op);
    }
    *err = failed;
    *bad = 0;
    return WF_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The rows. Tolerances bound the normalised error ||out - ref|| / ||ref||; f32 eps = 2^-23 =
 * 1.2e-7, and an op whose every output is one f32 rounding of the exact value stays below 2^-24.
 * ------------------------------------------------------------------------------------------- */
#define WHY_WSCALE "the weight times its scale rounded to f32 (2^-24), then the f32 GEMM's " \
                   "rounding as for an f32 weight"
#define WHY_ROUND "one f32 rounding of a double-exact result: <= 2^-24 = 6e-8"
#define WHY_GEMM_SMALL "f32 sums over K <= 61 (sgemm): rms ~sqrt(K) 2^-24 = 5e-7, x2"
#define WHY_GEMM_BIG                                                                             \
    "f32 sums over K = 1536 (narrow w in blocks of 256 rows): rms ~sqrt(K) 2^-24 = 2.3e-6, x2"
#define WHY_WCAST "weights rounded to the dtype in the reference too: same bound as f32"
#define WHY_NORM "double sums, one f32 rounding per output (plus the weight product)"
#define WHY_TRANS "expf/tanh-based f32 formula: a few ulp per element"
#define WHY_ROPE "rotation in double, one rounding: <= 2^-24"
#define WHY_TABLE "max |table - exact|: one f32 rounding of a value <= 1, <= 2^-25 = 3e-8"
#define WHY_EXACT "a copy: must be exact"
#define WHY_REJECT "count of bad calls not rejected with the right status and message"

const op_case ops_basic_cases[] = {
    /* matmul: p = {B, M, K, N, bias} */
    {"matmul", "M=37 K=61 N=29", run_matmul, {0, 37, 61, 29, 0}, WK_F32, 1e-6, WHY_GEMM_SMALL},
    {"matmul", "M=37 K=61 N=29 bias", run_matmul, {0, 37, 61, 29, 1}, WK_F32, 1e-6,
     WHY_GEMM_SMALL},
    {"matmul", "M=37 K=61 N=29 bias", run_matmul, {0, 37, 61, 29, 1}, WK_BF16, 1e-6, WHY_WCAST},
    {"matmul", "M=37 K=61 N=29 bias", run_matmul, {0, 37, 61, 29, 1}, WK_F16, 1e-6, WHY_WCAST},
    {"matmul", "M=37 K=61 N=29 bias", run_matmul, {0, 37, 61, 29, 1}, WK_F8E4M3, 1e-6,
     WHY_WCAST},
    {"matmul", "M=1 K=61 N=29 bias", run_matmul, {0, 1, 61, 29, 1}, WK_BF16, 1e-6, WHY_WCAST},
    {"matmul", "M=37 K=1 N=29 bias", run_matmul, {0, 37, 1, 29, 1}, WK_F16, 2e-7,
     "one product and one add per output: <= 2 roundings"},
    {"matmul", "x [3, 5, 61] N=29 bias", run_matmul, {3, 5, 61, 29, 1}, WK_F32, 1e-6,
     WHY_GEMM_SMALL},
    {"matmul", "x [3, 5, 61] N=29", run_matmul, {3, 5, 61, 29, 0}, WK_BF16, 1e-6, WHY_WCAST},
    {"matmul", "M=300 K=1536 N=700 bias", run_matmul, {0, 300, 1536, 700, 1}, WK_F32, 5e-6,
     WHY_GEMM_BIG},
    {"matmul", "M=300 K=1536 N=700 bias", run_matmul, {0, 300, 1536, 700, 1}, WK_BF16, 5e-6,
     WHY_GEMM_BIG},
    {"matmul", "M=300 K=1536 N=700", run_matmul, {0, 300, 1536, 700, 0}, WK_F16, 5e-6,
     WHY_GEMM_BIG},
    {"matmul", "M=300 K=1536 N=700 bias", run_matmul, {0, 300, 1536, 700, 1}, WK_F8E4M3, 5e-6,
     WHY_GEMM_BIG},
    {"matmul", "M=37 K=61 N=29 bias, scaled fp8 (s=0.0137)", run_matmul,
     {0, 37, 61, 29, 1, 13700}, WK_F8E4M3, 1e-6, WHY_WSCALE},
    {"matmul", "M=300 K=1536 N=700, scaled fp8 (s=2.5e-4)", run_matmul,
     {0, 300, 1536, 700, 0, 250}, WK_F8E4M3, 5e-6, WHY_WSCALE},
    {"matmul", "rejects bad shapes and dtypes", run_rejects, {0}, WK_F32, 0, WHY_REJECT},

    /* add, mul: p = {a0, a1, a2, b ndim, b0, b1, b2, in place} */
    {"add", "[5,7,11] + [5,7,11]", run_binary, {5, 7, 11, 3, 5, 7, 11, 0}, WK_F32, 1e-7,
     WHY_ROUND},
    {"add", "[5,7,11] + [11] row", run_binary, {5, 7, 11, 1, 11, 0, 0, 0}, WK_BF16, 1e-7,
     WHY_ROUND},
    {"add", "[5,7,11] + [7,11] in place", run_binary, {5, 7, 11, 2, 7, 11, 0, 1}, WK_F32, 1e-7,
     WHY_ROUND},
    {"add", "[5,7,11] + [5,1,11] middle", run_binary, {5, 7, 11, 3, 5, 1, 11, 0}, WK_F32, 1e-7,
     WHY_ROUND},
    {"add", "[5,7,11] + [5,7,1] last", run_binary, {5, 7, 11, 3, 5, 7, 1, 0}, WK_F16, 1e-7,
     WHY_ROUND},
    {"add", "[5,7,11] + [1] in place", run_binary, {5, 7, 11, 1, 1, 0, 0, 1}, WK_F32, 1e-7,
     WHY_ROUND},
    {"add", "[4,33,1536] + [1,1536] in place", run_binary, {4, 33, 1536, 2, 1, 1536, 0, 1},
     WK_F32, 1e-7, WHY_ROUND},
    {"add", "rejects bad shapes and dtypes", run_rejects, {0}, WK_F32, 0, WHY_REJECT},
    {"mul", "[5,7,11] * [5,7,11] in place", run_binary, {5, 7, 11, 3, 5, 7, 11, 1}, WK_F32, 1e-7,
     WHY_ROUND},
    {"mul", "[5,7,11] * [11] row", run_binary, {5, 7, 11, 1, 11, 0, 0, 0}, WK_F16, 1e-7,
     WHY_ROUND},
    {"mul", "[5,7,11] * [5,1,11] middle", run_binary, {5, 7, 11, 3, 5, 1, 11, 0}, WK_BF16, 1e-7,
     WHY_ROUND},
    {"mul", "[5,7,11] * [1]", run_binary, {5, 7, 11, 1, 1, 0, 0, 0}, WK_F8E4M3, 1e-7, WHY_ROUND},
    {"mul", "[8,40,128] * [8,1,128] in place", run_binary, {8, 40, 128, 3, 8, 1, 128, 1}, WK_F32,
     1e-7, WHY_ROUND},
    {"mul", "rejects bad shapes and dtypes", run_rejects, {0}, WK_F32, 0, WHY_REJECT},

    /* norms: p = {rows, C, weight, extra, -, -, -, in place} */
    {"layer_norm", "rows=37 C=61 affine", run_norm, {37, 61, 1, 0}, WK_F32, 2e-7, WHY_NORM},
    {"layer_norm", "rows=37 C=61 mean 100", run_norm, {37, 61, 0, 100}, WK_F32, 2e-7, WHY_NORM},
    {"layer_norm", "rows=5 C=1 affine", run_norm, {5, 1, 1, 0}, WK_F32, 2e-7,
     "C=1: (x - mean) is exactly 0, so y = b exactly"},
    {"layer_norm", "rows=7 C=5120 affine", run_norm, {7, 5120, 1, 3}, WK_BF16, 2e-7, WHY_NORM},
    {"layer_norm", "rows=9 C=5120 mean 1000", run_norm, {9, 5120, 0, 1000}, WK_F32, 2e-7,
     WHY_NORM},
    {"layer_norm", "rows=64 C=1536 affine in place", run_norm, {64, 1536, 1, 0, 0, 0, 0, 1},
     WK_F16, 2e-7, WHY_NORM},
    {"layer_norm", "rejects bad shapes", run_rejects, {0}, WK_F32, 0, WHY_REJECT},
    {"rms_norm", "rows=37 C=61 w", run_norm, {37, 61, 1}, WK_F32, 2e-7, WHY_NORM},
    {"rms_norm", "rows=37 C=61", run_norm, {37, 61, 0}, WK_F32, 2e-7, WHY_NORM},
    {"rms_norm", "rows=7 C=5120 w", run_norm, {7, 5120, 1}, WK_BF16, 2e-7, WHY_NORM},
    {"rms_norm", "rows=40 C=1536 w in place", run_norm, {40, 1536, 1, 0, 0, 0, 0, 1}, WK_F32,
     2e-7, WHY_NORM},
    {"rms_norm", "rejects bad shapes", run_rejects, {0}, WK_F32, 0, WHY_REJECT},
    {"rms_norm_l2", "rows=37 C=61 gamma [C,1,1]", run_norm, {37, 61, 3}, WK_F32, 2e-7, WHY_NORM},
    {"rms_norm_l2", "rows=37 C=61", run_norm, {37, 61, 0}, WK_F32, 2e-7, WHY_NORM},
    {"rms_norm_l2", "rows=5 C=96 gamma, zero row", run_norm, {5, 96, 1, 1}, WK_BF16, 2e-7,
     "row 0 is zeros: 0 / max(0, 1e-12) = 0 exactly; others as above"},
    {"rms_norm_l2", "rows=300 C=384 gamma in place", run_norm, {300, 384, 1, 0, 0, 0, 0, 1},
     WK_F32, 2e-7, WHY_NORM},
    {"rms_norm_l2", "rejects bad shapes", run_rejects, {0}, WK_F32, 0, WHY_REJECT},

    /* softmax: p = {rows, C, special, -, -, -, -, in place} */
    {"softmax", "rows=37 C=61", run_softmax, {37, 61, 0}, WK_F32, 1e-6, WHY_TRANS},
    {"softmax", "rows=5 C=61 -inf, all -inf, +-80", run_softmax, {5, 61, 1}, WK_F32, 1e-6,
     WHY_TRANS},
    {"softmax", "rows=64 C=1024 in place", run_softmax, {64, 1024, 1, 0, 0, 0, 0, 1}, WK_F32, 1e-6,
     WHY_TRANS},
    {"softmax", "rejects bad shapes and dtypes", run_rejects, {0}, WK_F32, 0, WHY_REJECT},

    /* activations: p = {n, scale, -, -, -, -, -, in place} */
    {"gelu_tanh", "n=1001 x~N(0,3^2)", run_activation, {1001, 3}, WK_F32, 1e-6, WHY_TRANS},
    {"gelu_tanh", "n=100003 in place", run_activation, {100003, 3, 0, 0, 0, 0, 0, 1}, WK_F32, 1e-6,
     WHY_TRANS},
    {"silu", "n=1001 x~N(0,3^2)", run_activation, {1001, 3}, WK_F32, 1e-6, WHY_TRANS},
    {"silu", "n=100003 in place", run_activation, {100003, 3, 0, 0, 0, 0, 0, 1}, WK_F32, 1e-6,
     WHY_TRANS},

    /* rope: p = {L, NH, HD, F, H, W, -, in place}; rope_table: p = {F, H, W, hd} */
    {"rope", "L=37 NH=3 HD=16 in place", run_rope, {37, 3, 16, 0, 0, 0, 0, 1}, WK_F32, 1e-7,
     WHY_ROPE},
    {"rope", "F=3 H=5 W=7 NH=3 HD=128 table", run_rope, {0, 3, 128, 3, 5, 7, 0, 0}, WK_F32, 1e-7,
     WHY_ROPE},
    {"rope", "F=4 H=30 W=52 NH=2 HD=128 in place", run_rope, {0, 2, 128, 4, 30, 52, 0, 1}, WK_F32,
     1e-7, WHY_ROPE},
    {"rope", "rejects bad shapes", run_rejects, {0}, WK_F32, 0, WHY_REJECT},
    {"rope_table", "F=3 H=5 W=7 hd=128", run_rope_table, {3, 5, 7, 128}, WK_F32, 3.1e-8,
     WHY_TABLE},
    {"rope_table", "F=3 H=5 W=7 hd=12 (4/4/4)", run_rope_table, {3, 5, 7, 12}, WK_F32, 3.1e-8,
     WHY_TABLE},
    {"rope_table", "F=21 H=30 W=52 hd=128", run_rope_table, {21, 30, 52, 128}, WK_F32, 3.1e-8,
     WHY_TABLE},

    /* upsample2x: p = {N, H, W, C} */
    {"upsample2x", "N=2 H=3 W=5 C=7", run_upsample, {2, 3, 5, 7}, WK_F32, 0, WHY_EXACT},
    {"upsample2x", "N=3 H=17 W=9 C=96", run_upsample, {3, 17, 9, 96}, WK_F32, 0, WHY_EXACT},
    {"upsample2x", "rejects bad shapes", run_rejects, {0}, WK_F32, 0, WHY_REJECT},
};

const int ops_basic_count = (int)(sizeof ops_basic_cases / sizeof ops_basic_cases[0]);
