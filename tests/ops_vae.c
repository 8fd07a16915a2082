/* ops_vae.c: the op-test rows for the Wan-VAE's own ops: blend, avgdown3d, dupup3d and
 * rms_norm_l2_silu (tests/test_ops.c runs them; tests/test_ops.h has the contract of a runner).
 *
 * What it is: one runner per op. Each makes fresh random inputs from the seed (never zeros), runs
 * the op through the backend dispatcher into guarded buffers and compares with a reference
 * computed here in double from wan_spec.md §2.5's description (AvgDown3D / DupUp3D as the
 * view-permute-merge of the folded tensor) or Diffusers' blend_v / blend_h formula. Odd shapes
 * throughout (3 frames with a time factor of 2, tiles of different lengths, extents past a tile).
 * rms_norm_l2_silu is also checked against rms_norm_l2 then silu, bit for bit (the fused op's
 * contract on the CPU): any differing value makes the error 1. Rows named "... rejects" check
 * that bad shapes and arguments fail with the right status and a message naming the op.
 * What it is not: a test of the VAE (tests/test_vae.c), or of the layout ops (ops_layout.c).
 * Run: build/tests/test_ops --filter blend (or avgdown3d, dupup3d, rms_norm_l2_silu).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_ops.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers: the buffers of one run, freed together (as ops_basic.c's bag).
 * ------------------------------------------------------------------------------------------- */
#define VB_MAX 8
typedef struct vb_bag {
    void *heap[VB_MAX];
    float *guarded[VB_MAX];
    int nheap, nguarded;
    bool oom;
} vb_bag;

static void *vb_alloc(vb_bag *bag, size_t bytes) {
    WF_ASSERT(bag->nheap < VB_MAX);
    void *p = malloc(bytes ? bytes : 1);
    if (!p) bag->oom = true;
    return bag->heap[bag->nheap++] = p;
}

static double *vb_ref(vb_bag *bag, int64_t n) { return vb_alloc(bag, (size_t)n * sizeof(double)); }

static float *vb_normal(vb_bag *bag, tu_rng *rng, int64_t n, float scale) {
    float *p = vb_alloc(bag, (size_t)n * sizeof(float));
    if (p) tu_fill_normal(rng, p, (size_t)n, scale);
    return p;
}

/* A guarded output of n floats, a copy of src when src is not NULL. */
static float *vb_out(vb_bag *bag, const float *src, int64_t n) {
    WF_ASSERT(bag->nguarded < VB_MAX);
    float *p = tu_guarded_alloc((size_t)n);
    if (!p) bag->oom = true;
    else if (src) memcpy(p, src, (size_t)n * sizeof(float));
    return bag->guarded[bag->nguarded++] = p;
}

static void vb_free(vb_bag *bag) {
    for (int i = 0; i < bag->nheap; i++) free(bag->heap[i]);
    for (int i = 0; i < bag->nguarded; i++) tu_guarded_free(bag->guarded[i]);
    *bag = (vb_bag){0};
}

static wf_status vb_nomem(wf_err *e, const char *op) {
    return wf_fail(e, WF_ENOMEM, "%s runner: out of memory for test buffers", op);
}

static void vb_compare(const float *out, const double *ref, int64_t n, double *err, int *bad) {
    *err = tu_rel_l2(out, ref, (size_t)n);
    *bad = !tu_guard_ok(out, (size_t)n) || tu_count_nonfinite(out, ref, (size_t)n) > 0;
}

/* ---------------------------------------------------------------------------------------------
 * blend: p = {axis, T, ha, wa, hb, wb, C, extent}. a [T, ha, wa, C], b [T, hb, wb, C] (the dims
 * other than the axis equal). Reference: e = min(extent, len_a, len_b); for i < e along the axis,
 * b[i] = a[len_a - e + i] * wa + b[i] * wb with the f32 weights wa = f32(1 - i/e), wb = f32(i/e)
 * (torch's Python-float scalars), in double; b beyond e is unchanged (exactly).
 * ------------------------------------------------------------------------------------------- */
static wf_status run_blend(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                           wf_err *e) {
    const int axis = (int)c->p[0];
    const int64_t T = c->p[1], ha = c->p[2], wa = c->p[3], hb = c->p[4], wb = c->p[5], C = c->p[6];
    const int64_t na = T * ha * wa * C, nb = T * hb * wb * C;
    wf_status st;
    vb_bag bag = {0};
    float *a = vb_normal(&bag, rng, na, 1), *b0 = vb_normal(&bag, rng, nb, 1);
    float *b = vb_out(&bag, b0, nb);
    double *ref = vb_ref(&bag, nb);
    if (bag.oom) {
        st = vb_nomem(e, c->op);
        goto out;
    }
    wk_tensor at = wk_tensor_4d(WK_F32, a, T, ha, wa, C);
    wk_tensor bt = wk_tensor_4d(WK_F32, b, T, hb, wb, C);
    if ((st = wk_blend(be, &bt, &at, axis, c->p[7], e))) goto out;

    const int64_t la = axis == 1 ? ha : wa, lb = axis == 1 ? hb : wb;
    int64_t ext = c->p[7] < la ? c->p[7] : la;
    if (lb < ext) ext = lb;
    for (int64_t t = 0; t < T; t++)
        for (int64_t y = 0; y < hb; y++)
            for (int64_t x = 0; x < wb; x++)
                for (int64_t k = 0; k < C; k++) {
                    const int64_t ib = ((t * hb + y) * wb + x) * C + k, i = axis == 1 ? y : x;
                    if (i >= ext) {
                        ref[ib] = b0[ib];
                        continue;
                    }
                    const int64_t ya = axis == 1 ? ha - ext + y : y;
                    const int64_t xa = axis == 2 ? wa - ext + x : x;
                    const double fa = (float)(1.0 - (double)i / (double)ext),
                                 fb = (float)((double)i / (double)ext);
                    ref[ib] = a[((t * ha + ya) * wa + xa) * C + k] * fa + b0[ib] * fb;
                }
    vb_compare(b, ref, nb, err, bad);
out:
    vb_free(&bag);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * avgdown3d: p = {T, H, W, Ci, Co, ft, fs}. x [1, T, H, W, Ci] ~ N(0, 1). Reference (wan_spec.md
 * §2.5): pad = (ft - T % ft) % ft zero frames in front; the folded tensor has channel
 * k = c ft fs fs + (t_off fs + h_off) fs + w_off; output channel o is the mean of folded channels
 * [o g, (o + 1) g), g = Ci ft fs fs / Co, in double.
 * ------------------------------------------------------------------------------------------- */
static wf_status run_avgdown(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                             wf_err *e) {
    const int64_t T = c->p[0], H = c->p[1], W = c->p[2], Ci = c->p[3], Co = c->p[4], ft = c->p[5],
                  fs = c->p[6];
    const int64_t pad = (ft - T % ft) % ft, To = (T + pad) / ft, Ho = H / fs, Wo = W / fs;
    const int64_t n = To * Ho * Wo * Co, fac = ft * fs * fs, g = Ci * fac / Co;
    wf_status st;
    vb_bag bag = {0};
    float *x = vb_normal(&bag, rng, T * H * W * Ci, 1);
    float *y = vb_out(&bag, NULL, n);
    double *ref = vb_ref(&bag, n);
    if (bag.oom) {
        st = vb_nomem(e, c->op);
        goto out;
    }
    wk_tensor xt = wk_tensor_5d(WK_F32, x, 1, T, H, W, Ci);
    wk_tensor yt = wk_tensor_5d(WK_F32, y, 1, To, Ho, Wo, Co);
    if ((st = wk_avgdown3d(be, &yt, &xt, ft, fs, e))) goto out;

    for (int64_t t = 0; t < To; t++)
        for (int64_t i = 0; i < Ho; i++)
            for (int64_t j = 0; j < Wo; j++)
                for (int64_t o = 0; o < Co; o++) {
                    double s = 0;
                    for (int64_t m = 0; m < g; m++) {
                        const int64_t k = o * g + m, ch = k / fac;
                        const int64_t t_off = k % fac / (fs * fs), h_off = k % (fs * fs) / fs,
                                      w_off = k % fs;
                        const int64_t tp = t * ft + t_off; /* frame of the padded sequence */
                        if (tp < pad) continue;            /* a zero frame */
                        s += x[(((tp - pad) * H + i * fs + h_off) * W + j * fs + w_off) * Ci + ch];
                    }
                    ref[((t * Ho + i) * Wo + j) * Co + o] = s / (double)g;
                }
    vb_compare(y, ref, n, err, bad);
out:
    vb_free(&bag);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * dupup3d: p = {T, H, W, Ci, Co, ft, fs, drop}. Reference (wan_spec.md §2.5): repeat_interleave
 * each input channel rep = Co ft fs fs / Ci times, view the channels as (Co, ft, fs, fs), reorder
 * to (Co, T, ft, H, fs, W, fs); the first `drop` frames are left out. A copy: exact.
 * ------------------------------------------------------------------------------------------- */
static wf_status run_dupup(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                           wf_err *e) {
    const int64_t T = c->p[0], H = c->p[1], W = c->p[2], Ci = c->p[3], Co = c->p[4], ft = c->p[5],
                  fs = c->p[6], drop = c->p[7];
    const int64_t To = T * ft - drop, Ho = H * fs, Wo = W * fs, n = To * Ho * Wo * Co;
    const int64_t rep = Co * ft * fs * fs / Ci;
    wf_status st;
    vb_bag bag = {0};
    float *x = vb_normal(&bag, rng, T * H * W * Ci, 1);
    float *y = vb_out(&bag, NULL, n);
    double *ref = vb_ref(&bag, n);
    if (bag.oom) {
        st = vb_nomem(e, c->op);
        goto out;
    }
    wk_tensor xt = wk_tensor_5d(WK_F32, x, 1, T, H, W, Ci);
    wk_tensor yt = wk_tensor_5d(WK_F32, y, 1, To, Ho, Wo, Co);
    if ((st = wk_dupup3d(be, &yt, &xt, ft, fs, drop, e))) goto out;

    for (int64_t t = 0; t < To; t++)
        for (int64_t i = 0; i < Ho; i++)
            for (int64_t j = 0; j < Wo; j++)
                for (int64_t o = 0; o < Co; o++) {
                    const int64_t tt = t + drop; /* frame of the undropped output */
                    const int64_t k = ((o * ft + tt % ft) * fs + i % fs) * fs + j % fs;
                    ref[((t * Ho + i) * Wo + j) * Co + o] =
                        x[(((tt / ft) * H + i / fs) * W + j / fs) * Ci + k / rep];
                }
    vb_compare(y, ref, n, err, bad);
out:
    vb_free(&bag);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * rms_norm_l2_silu: p = {rows, C, gamma, zero row, -, -, -, in place}. x [rows, C] ~ N(0, 2^2);
 * gamma 0 = none, 1 = [C] in wdt, 3 = [C, 1, 1] in wdt; zero row 1: row 0 is zeros (0, not NaN).
 * Reference: v = x / max(||x||, 1e-12) sqrt(C) gamma, v / (1 + exp(-v)) in double; and the bits
 * of rms_norm_l2 then silu on the same input.
 * ------------------------------------------------------------------------------------------- */
static int64_t l2silu_unfused_diff(wk_backend *be, const wk_tensor *xt, const wk_tensor *gp,
                                   const float *y, float *u, int64_t n, wf_err *e,
                                   wf_status *st) {
    wk_tensor ut = *xt;
    ut.data = u;
    if ((*st = wk_rms_norm_l2(be, &ut, xt, gp, e)) || (*st = wk_silu(be, &ut, &ut, e))) return 0;
    int64_t diff = 0;
    for (int64_t i = 0; i < n; i++) diff += memcmp(&u[i], &y[i], sizeof(float)) != 0;
    return diff;
}

static wf_status run_l2silu(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                            wf_err *e) {
    const int64_t rows = c->p[0], C = c->p[1], gk = c->p[2], n = rows * C;
    const bool in_place = c->p[7] != 0;
    wf_status st;
    vb_bag bag = {0};
    float *x = vb_normal(&bag, rng, n, 2), *gv = vb_normal(&bag, rng, C, 0.5f);
    if (x && c->p[3])
        for (int64_t i = 0; i < C; i++) x[i] = 0.0f;
    if (gv)
        for (int64_t i = 0; i < C; i++) gv[i] += 1.0f;
    void *gstore = NULL;
    wk_tensor g = {0};
    if (gv) {
        g = ops_weight(c->wdt, gv, gk == 3 ? 3 : 1, (int64_t[]){C, 1, 1}, &gstore);
        if (!gstore) bag.oom = true;
    }
    float *y = vb_out(&bag, in_place ? x : NULL, n), *u = vb_out(&bag, NULL, n);
    double *ref = vb_ref(&bag, n);
    if (bag.oom) {
        st = vb_nomem(e, c->op);
        goto out;
    }
    wk_tensor xt = wk_tensor_2d(WK_F32, in_place ? y : x, rows, C);
    wk_tensor yt = wk_tensor_2d(WK_F32, y, rows, C), xu = wk_tensor_2d(WK_F32, x, rows, C);
    const wk_tensor *gp = gk ? &g : NULL;
    if ((st = wk_rms_norm_l2_silu(be, &yt, &xt, gp, e))) goto out;

    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        double ss = 0;
        for (int64_t i = 0; i < C; i++) ss += (double)xr[i] * xr[i];
        for (int64_t i = 0; i < C; i++) {
            double v = xr[i] / fmax(sqrt(ss), 1e-12) * sqrt((double)C) * (gk ? gv[i] : 1.0);
            ref[r * C + i] = v / (1.0 + exp(-v));
        }
    }
    vb_compare(y, ref, n, err, bad);
    const int64_t diff = l2silu_unfused_diff(be, &xu, gp, y, u, n, e, &st);
    if (st) goto out;
    if (diff) {
        fprintf(stderr,
                "  rms_norm_l2_silu: %lld of %lld values differ from rms_norm_l2 then silu\n",
                (long long)diff, (long long)n);
        *err = 1.0;
    }
out:
    free(gstore);
    vb_free(&bag);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * "... rejects": bad calls fail before touching data, with the status and a message naming the op
 * and the fragments given; the error is the number of calls that did not (each on stderr).
 * ------------------------------------------------------------------------------------------- */

static int rejects_blend(wk_backend *be, float *buf, float *buf2) {
    int failed = 0;
    wf_err le;
    wk_tensor a = wk_tensor_4d(WK_F32, buf, 2, 5, 7, 3), b = wk_tensor_4d(WK_F32, buf2, 2, 4, 6, 3);
    wk_tensor b3 = wk_tensor_3d(WK_F32, buf2, 2, 4, 6);
    wk_tensor bb = wk_tensor_4d(WK_BF16, buf2, 2, 5, 6, 3);
    OPS_EXPECT("axis 1, widths differ", wk_blend(be, &b, &a, 1, 2, &le), WF_EINVAL, "blend",
               "[2, 4, 6, 3]", NULL);
    OPS_EXPECT("axis 3", wk_blend(be, &b, &a, 3, 2, &le), WF_EINVAL, "blend", "axis 3", NULL);
    OPS_EXPECT("extent -1", wk_blend(be, &a, &a, 1, -1, &le), WF_EINVAL, "blend", "-1", NULL);
    OPS_EXPECT("b 3-D", wk_blend(be, &b3, &a, 1, 2, &le), WF_EINVAL, "blend", "b", NULL);
    OPS_EXPECT("b bf16", wk_blend(be, &bb, &a, 2, 2, &le), WF_EUNSUPPORTED, "blend", "bf16", NULL);
    return failed;
}

static int rejects_shortcuts(wk_backend *be, float *buf, float *buf2) {
    int failed = 0;
    wf_err le;
    wk_tensor x = wk_tensor_5d(WK_F32, buf, 1, 3, 6, 10, 5);
    wk_tensor y = wk_tensor_5d(WK_F32, buf2, 1, 2, 3, 5, 10);   /* avgdown (2, 2) of x */
    wk_tensor yh = wk_tensor_5d(WK_F32, buf2, 1, 2, 4, 5, 10);  /* wrong height */
    wk_tensor y7 = wk_tensor_5d(WK_F32, buf2, 1, 2, 3, 5, 7);   /* 7 does not divide 40 */
    wk_tensor x2 = wk_tensor_5d(WK_F32, buf, 2, 3, 6, 10, 5);   /* batch 2 */
    wk_tensor xo = wk_tensor_5d(WK_F32, buf, 1, 3, 5, 10, 5);   /* odd height */
    wk_tensor u = wk_tensor_5d(WK_F32, buf2, 1, 5, 12, 20, 10); /* dupup (2, 2) of x, drop 1 */
    OPS_EXPECT("avgdown y height", wk_avgdown3d(be, &yh, &x, 2, 2, &le), WF_EINVAL, "avgdown3d",
               "[1, 2, 4, 5, 10]", NULL);
    OPS_EXPECT("avgdown Co 7", wk_avgdown3d(be, &y7, &x, 2, 2, &le), WF_EINVAL, "avgdown3d", "7",
               NULL);
    OPS_EXPECT("avgdown batch 2", wk_avgdown3d(be, &y, &x2, 2, 2, &le), WF_EINVAL, "avgdown3d",
               "batch", NULL);
    OPS_EXPECT("avgdown odd H", wk_avgdown3d(be, &y, &xo, 2, 2, &le), WF_EINVAL, "avgdown3d",
               "multiples", NULL);
    OPS_EXPECT("avgdown ft 0", wk_avgdown3d(be, &y, &x, 0, 2, &le), WF_EINVAL, "avgdown3d", "ft 0",
               NULL);
    OPS_EXPECT("dupup drop 0 for drop 1", wk_dupup3d(be, &u, &x, 2, 2, 0, &le), WF_EINVAL,
               "dupup3d", "[1, 5, 12, 20, 10]", NULL);
    OPS_EXPECT("dupup drop 7", wk_dupup3d(be, &u, &x, 2, 2, 7, &le), WF_EINVAL, "dupup3d", "drop 7",
               NULL);
    OPS_EXPECT("dupup 3 into 5", wk_dupup3d(be, &x, &u, 1, 1, 0, &le), WF_EINVAL, "dupup3d", NULL,
               NULL);
    return failed;
}

static int rejects_l2silu(wk_backend *be, float *buf, float *buf2) {
    int failed = 0;
    wf_err le;
    wk_tensor x = wk_tensor_2d(WK_F32, buf, 3, 61), w = wk_tensor_1d(WK_F32, buf2, 60);
    wk_tensor w2 = wk_tensor_2d(WK_F32, buf2, 61, 2), y = wk_tensor_2d(WK_F32, buf, 61, 3);
    wk_tensor xb = wk_tensor_2d(WK_BF16, buf, 3, 61);
    OPS_EXPECT("gamma [60]", wk_rms_norm_l2_silu(be, &x, &x, &w, &le), WF_EINVAL,
               "rms_norm_l2_silu", "[60]", NULL);
    OPS_EXPECT("gamma [61, 2]", wk_rms_norm_l2_silu(be, &x, &x, &w2, &le), WF_EINVAL,
               "rms_norm_l2_silu", "[61, 2]", NULL);
    OPS_EXPECT("y [61, 3]", wk_rms_norm_l2_silu(be, &y, &x, NULL, &le), WF_EINVAL,
               "rms_norm_l2_silu", "[61, 3]", NULL);
    OPS_EXPECT("x bf16", wk_rms_norm_l2_silu(be, &x, &xb, NULL, &le), WF_EUNSUPPORTED,
               "rms_norm_l2_silu", "bf16", NULL);
    return failed;
}

static wf_status run_rejects(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                             wf_err *e) {
    static float buf[4096], buf2[4096]; /* never read: every call must fail its checks first */
    int failed;
    if (strcmp(c->op, "blend") == 0) failed = rejects_blend(be, buf, buf2);
    else if (strcmp(c->op, "avgdown3d") == 0 || strcmp(c->op, "dupup3d") == 0)
        failed = rejects_shortcuts(be, buf, buf2);
    else if (strcmp(c->op, "rms_norm_l2_silu") == 0) failed = rejects_l2silu(be, buf, buf2);
    else return wf_fail(e, WF_EINVAL, "rejects runner: no checks for op %s", c->op);
    *err = failed;
    *bad = 0;
    return WF_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The rows. Tolerances bound ||out - ref|| / ||ref||; f32 eps = 2^-23 = 1.2e-7.
 * ------------------------------------------------------------------------------------------- */
#define WHY_BLEND "two f32 products and an f32 sum against the double sum: <= ~1.5 ulp, 2e-7"
#define WHY_MEAN "double sum, one f32 rounding of the mean: <= 2^-24 = 6e-8"
#define WHY_COPY "a copy: must be exact"
#define WHY_L2SILU "double norm rounded to f32, then expf-based f32 silu: a few ulp; and the " \
                   "bits of rms_norm_l2 + silu (else error 1)"
#define WHY_REJECT "count of bad calls not rejected with the right status and message"

const op_case ops_vae_cases[] = {
    /* blend: p = {axis, T, ha, wa, hb, wb, C, extent} */
    {"blend", "v T=3 a 9x7 b 5x7 C=5 e=4", run_blend, {1, 3, 9, 7, 5, 7, 5, 4}, WK_F32, 2e-7,
     WHY_BLEND},
    {"blend", "v T=2 a 3x6 b 8x6 C=3 e=5 (a shorter)", run_blend, {1, 2, 3, 6, 8, 6, 3, 5}, WK_F32,
     2e-7, WHY_BLEND},
    {"blend", "h T=3 a 5x11 b 5x6 C=7 e=9 (b shorter)", run_blend, {2, 3, 5, 11, 5, 6, 7, 9},
     WK_F32, 2e-7, WHY_BLEND},
    {"blend", "h T=5 a 40x48 b 40x33 C=12 e=16", run_blend, {2, 5, 40, 48, 40, 33, 12, 16}, WK_F32,
     2e-7, WHY_BLEND},
    {"blend", "v T=5 a 48x40 b 24x40 C=12 e=16", run_blend, {1, 5, 48, 40, 24, 40, 12, 16}, WK_F32,
     2e-7, WHY_BLEND},
    {"blend", "h extent 0: unchanged", run_blend, {2, 2, 3, 5, 3, 4, 3, 0}, WK_F32, 0, WHY_COPY},
    {"blend", "rejects bad shapes and arguments", run_rejects, {0}, WK_F32, 0, WHY_REJECT},

    /* avgdown3d: p = {T, H, W, Ci, Co, ft, fs} */
    {"avgdown3d", "T=3 6x10 C 5->10 t2 s2 (1 pad frame)", run_avgdown, {3, 6, 10, 5, 10, 2, 2},
     WK_F32, 1e-7, WHY_MEAN},
    {"avgdown3d", "T=1 4x6 C 4->8 t2 s2 (first chunk)", run_avgdown, {1, 4, 6, 4, 8, 2, 2}, WK_F32,
     1e-7, WHY_MEAN},
    {"avgdown3d", "T=5 6x14 C 3->12 t1 s2", run_avgdown, {5, 6, 14, 3, 12, 1, 2}, WK_F32, 1e-7,
     WHY_MEAN},
    {"avgdown3d", "T=4 3x5 C 7->7 t1 s1 (identity)", run_avgdown, {4, 3, 5, 7, 7, 1, 1}, WK_F32, 0,
     "groups of one: x / 1, exact"},
    {"avgdown3d", "T=4 12x20 C 40->80 t2 s2", run_avgdown, {4, 12, 20, 40, 80, 2, 2}, WK_F32, 1e-7,
     WHY_MEAN},
    {"avgdown3d", "rejects bad shapes and arguments", run_rejects, {0}, WK_F32, 0, WHY_REJECT},

    /* dupup3d: p = {T, H, W, Ci, Co, ft, fs, drop} */
    {"dupup3d", "T=1 3x5 C 10->5 t2 s2 drop 1", run_dupup, {1, 3, 5, 10, 5, 2, 2, 1}, WK_F32, 0,
     WHY_COPY},
    {"dupup3d", "T=3 3x5 C 12->6 t2 s2", run_dupup, {3, 3, 5, 12, 6, 2, 2, 0}, WK_F32, 0,
     WHY_COPY},
    {"dupup3d", "T=2 5x3 C 7->7 t1 s2", run_dupup, {2, 5, 3, 7, 7, 1, 2, 0}, WK_F32, 0, WHY_COPY},
    {"dupup3d", "T=2 4x6 C 3->9 t2 s1 drop 1", run_dupup, {2, 4, 6, 3, 9, 2, 1, 1}, WK_F32, 0,
     WHY_COPY},
    {"dupup3d", "T=4 10x16 C 64->32 t2 s2", run_dupup, {4, 10, 16, 64, 32, 2, 2, 0}, WK_F32, 0,
     WHY_COPY},
    {"dupup3d", "rejects bad shapes and arguments", run_rejects, {0}, WK_F32, 0, WHY_REJECT},

    /* rms_norm_l2_silu: p = {rows, C, gamma, zero row, -, -, -, in place} */
    {"rms_norm_l2_silu", "rows=37 C=61 gamma [C,1,1]", run_l2silu, {37, 61, 3}, WK_F32, 1e-6,
     WHY_L2SILU},
    {"rms_norm_l2_silu", "rows=37 C=61 no gamma", run_l2silu, {37, 61, 0}, WK_F32, 1e-6,
     WHY_L2SILU},
    {"rms_norm_l2_silu", "rows=5 C=96 zero row", run_l2silu, {5, 96, 1, 1}, WK_BF16, 1e-6,
     WHY_L2SILU},
    {"rms_norm_l2_silu", "rows=300 C=384 in place", run_l2silu, {300, 384, 3, 0, 0, 0, 0, 1},
     WK_F16, 1e-6, WHY_L2SILU},
    {"rms_norm_l2_silu", "rows=1000 C=12 gamma", run_l2silu, {1000, 12, 1}, WK_F8E4M3, 1e-6,
     WHY_L2SILU},
    {"rms_norm_l2_silu", "rejects bad shapes and dtypes", run_rejects, {0}, WK_F32, 0, WHY_REJECT},
};

const int ops_vae_count = (int)(sizeof ops_vae_cases / sizeof ops_vae_cases[0]);
