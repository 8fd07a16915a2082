/* ops_heavy.c: the op-test rows for attention and the convolutions (table contract in
 * test_ops.h; tests/test_ops.c runs them with the other rows).
 *
 * What it is: runners that make fresh random inputs, run the op under test into guarded
 * buffers, and compare with a naive double-precision reference written from the formulas in
 * kernels/backend.h (softmax over all keys at once; a direct 7-deep convolution loop), plus
 * rows checking that malformed shapes are refused with WF_EINVAL. Shapes are odd on purpose,
 * and some cross the CPU kernels' block sizes (32..256 queries x 512 keys in attention.c,
 * im2col blocks of 256+ rows in conv.c) or are large enough to take their threaded paths.
 * What it is not: a benchmark (bench/bench_ops.c) or a model test.
 * Run: build/tests/test_ops (ctest -L ops). The whole set runs in a few seconds on 2 cores.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_ops.h"

/* ---------------------------------------------------------------------------------------------
 * attention: p = {Lq, Lk, NH, HD, bias mode, scale mode}; wdt is the bias dtype.
 */
enum {
    ATT_NONE = 0,     /* no bias */
    ATT_KEYMASK,      /* [Lk]: about 1 key in 4 at -inf, the rest small finite values */
    ATT_FULL,         /* [NH, Lq, Lk]: finite, some -inf, query 1 of head 0 fully masked */
    ATT_ALLMASKED,    /* [Lk], every key -inf: the output must be exactly zero */
    ATT_PREFIXMASK,   /* [Lk]: the first 600 keys (a whole 512-key block and more) masked */
};
enum { ATT_SCALE_SDPA = 0, ATT_SCALE_ONE = 1 }; /* 1/sqrt(HD) (DiT, VAE); 1 (umT5) */

/* ref[Lq, NH, HD] by the definition, in double; returns -1 when out of memory. */
static int att_reference(double *ref, const float *q, const float *k, const float *v,
                         const float *bias, int mode, double scale, int64_t Lq, int64_t Lk,
                         int64_t NH, int64_t HD) {
    double *s = malloc((size_t)(Lk ? Lk : 1) * sizeof *s);
    double *acc = malloc((size_t)HD * sizeof *acc);
    if (!s || !acc) {
        free(s);
        free(acc);
        return -1;
    }
    for (int64_t h = 0; h < NH; h++)
        for (int64_t i = 0; i < Lq; i++) {
            const float *qi = q + (i * NH + h) * HD;
            double m = -INFINITY;
            for (int64_t j = 0; j < Lk; j++) {
                const float *kj = k + (j * NH + h) * HD;
                double d = 0;
                for (int64_t c = 0; c < HD; c++) d += (double)qi[c] * kj[c];
                d *= scale;
                if (bias) d += mode == ATT_FULL ? bias[(h * Lq + i) * Lk + j] : bias[j];
                s[j] = d;
                if (d > m) m = d;
            }
            double *o = ref + (i * NH + h) * HD;
            if (m == -INFINITY) { /* every key masked */
                for (int64_t c = 0; c < HD; c++) o[c] = 0;
                continue;
            }
            double l = 0;
            for (int64_t c = 0; c < HD; c++) acc[c] = 0;
            for (int64_t j = 0; j < Lk; j++) {
                double p = exp(s[j] - m);
                l += p;
                const float *vj = v + (j * NH + h) * HD;
                for (int64_t c = 0; c < HD; c++) acc[c] += p * vj[c];
            }
            for (int64_t c = 0; c < HD; c++) o[c] = acc[c] / l;
        }
    free(acc);
    free(s);
    return 0;
}

static wf_status run_attention(const op_case *c, wk_backend *be, tu_rng *rng, double *err,
                               int *bad, wf_err *e) {
    const int64_t Lq = c->p[0], Lk = c->p[1], NH = c->p[2], HD = c->p[3];
    const int mode = (int)c->p[4];
    const float scale = c->p[5] == ATT_SCALE_ONE ? 1.0f : 1.0f / sqrtf((float)HD);
    /* logits of order 1 either way: with scale 1 the inputs shrink by HD^(1/4) instead */
    const float in_std = c->p[5] == ATT_SCALE_ONE ? powf((float)HD, -0.25f) : 1.0f;
    const size_t nq = (size_t)(Lq * NH * HD), nk = (size_t)(Lk * NH * HD);
    float *q = malloc(nq * sizeof *q), *k = malloc(nk * sizeof *k), *v = malloc(nk * sizeof *v);
    float *o = tu_guarded_alloc(nq);
    double *ref = malloc(nq * sizeof *ref);
    float *bvals = NULL;
    void *bstore = NULL;
    wf_status st = WF_ENOMEM;
    if (!q || !k || !v || !o || !ref) {
        wf_fail(e, st, "attention runner: out of memory");
        goto out;
    }
    tu_fill_normal(rng, q, nq, in_std);
    tu_fill_normal(rng, k, nk, in_std);
    tu_fill_normal(rng, v, nk, 1.0f);

    wk_tensor bt, *bp = NULL;
    if (mode != ATT_NONE) {
        const size_t nb = mode == ATT_FULL ? (size_t)(NH * Lq * Lk) : (size_t)Lk;
        bvals = malloc(nb * sizeof *bvals);
        if (!bvals) {
            wf_fail(e, st, "attention runner: out of memory");
            goto out;
        }
        tu_fill_normal(rng, bvals, nb, 1.0f);
        for (size_t j = 0; j < nb; j++) {
            bool masked = mode == ATT_ALLMASKED || tu_uniform(rng) < 0.25;
            if (mode == ATT_PREFIXMASK && j < 600) masked = true;
            if (masked) bvals[j] = -INFINITY;
        }
        if (mode != ATT_ALLMASKED) bvals[nb - 1] = 0.5f; /* at least one live key per mask */
        if (mode == ATT_FULL)
            for (int64_t j = 0; j < Lk; j++) bvals[(size_t)(1 % Lq) * Lk + j] = -INFINITY;
        int64_t shp[3] = {NH, Lq, Lk};
        bt = mode == ATT_FULL ? ops_weight(c->wdt, bvals, 3, shp, &bstore)
                              : ops_weight(c->wdt, bvals, 1, &shp[2], &bstore);
        if (!bstore) {
            wf_fail(e, st, "attention runner: out of memory");
            goto out;
        }
        bp = &bt;
    }
    wk_tensor tq = wk_tensor_3d(WK_F32, q, Lq, NH, HD), tk = wk_tensor_3d(WK_F32, k, Lk, NH, HD);
    wk_tensor tv = wk_tensor_3d(WK_F32, v, Lk, NH, HD), to = wk_tensor_3d(WK_F32, o, Lq, NH, HD);
    st = wk_attention(be, &to, &tq, &tk, &tv, scale, 0, bp, e);
    if (st != WF_OK) goto out;
    if (att_reference(ref, q, k, v, bvals, mode, (double)scale, Lq, Lk, NH, HD) != 0) {
        st = wf_fail(e, WF_ENOMEM, "attention runner: out of memory");
        goto out;
    }
    *err = tu_rel_l2(o, ref, nq);
    if (!tu_guard_ok(o, nq) || tu_count_nonfinite(o, ref, nq)) *bad = 1;
    if (mode == ATT_ALLMASKED) /* exactly zero, not merely small */
        for (size_t i = 0; i < nq; i++)
            if (o[i] != 0.0f) *err = INFINITY;
out:
    free(bstore);
    free(bvals);
    free(ref);
    tu_guarded_free(o);
    free(v);
    free(k);
    free(q);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * conv3d / conv2d. CONV(...) packs one configuration into p:
 *   p0 N, p1 T (0: conv2d on [N, H, W, C]), p2 H, p3 W, p4 Cin * 1000 + Cout,
 *   p5 kT kH kW as decimal digits, p6 strides as digits, p7 2 (bias) or 1 (no bias) then the
 *   pads t0 t1 h0 h1 w0 w1 as digits. wdt is the dtype of w and bias.
 */
#define CONV(n, t, h, w, ci, co, kt, kh, kw, st, sh, sw, pt0, pt1, ph0, ph1, pw0, pw1, bias)     \
    {(n), (t), (h), (w), (ci) * 1000 + (co), (kt) * 100 + (kh) * 10 + (kw),                     \
     (st) * 100 + (sh) * 10 + (sw),                                                              \
     (1 + (bias)) * 1000000 + (pt0) * 100000 + (pt1) * 10000 + (ph0) * 1000 + (ph1) * 100 +     \
         (pw0) * 10 + (pw1)}

typedef struct conv_case {
    int64_t N, T, H, W, Cin, Cout, k[3], s[3], pad[3][2], To, Ho, Wo;
    int bias, is2d;
} conv_case;

static int digit(int64_t v, int i) { /* i-th decimal digit from the right */
    for (; i > 0; i--) v /= 10;
    return (int)(v % 10);
}

static conv_case conv_unpack(const op_case *c) {
    conv_case g = {.N = c->p[0], .T = c->p[1], .H = c->p[2], .W = c->p[3],
                   .Cin = c->p[4] / 1000, .Cout = c->p[4] % 1000};
    g.is2d = g.T == 0;
    if (g.is2d) g.T = 1;
    for (int a = 0; a < 3; a++) {
        g.k[a] = digit(c->p[5], 2 - a);
        g.s[a] = digit(c->p[6], 2 - a);
        g.pad[a][0] = digit(c->p[7], 5 - 2 * a);
        g.pad[a][1] = digit(c->p[7], 4 - 2 * a);
    }
    g.bias = digit(c->p[7], 6) == 2;
    g.To = (g.T + g.pad[0][0] + g.pad[0][1] - g.k[0]) / g.s[0] + 1;
    g.Ho = (g.H + g.pad[1][0] + g.pad[1][1] - g.k[1]) / g.s[1] + 1;
    g.Wo = (g.W + g.pad[2][0] + g.pad[2][1] - g.k[2]) / g.s[2] + 1;
    return g;
}

/* ref[N, To, Ho, Wo, Cout] by the definition, in double. */
static void conv_reference(double *ref, const float *x, const float *w, const float *b,
                           const conv_case *g) {
    const int64_t kT = g->k[0], kH = g->k[1], kW = g->k[2];
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t to = 0; to < g->To; to++)
            for (int64_t ho = 0; ho < g->Ho; ho++)
                for (int64_t wo = 0; wo < g->Wo; wo++)
                    for (int64_t co = 0; co < g->Cout; co++) {
                        double s = b ? b[co] : 0.0;
                        for (int64_t kt = 0; kt < kT; kt++) {
                            int64_t t = to * g->s[0] - g->pad[0][0] + kt;
                            if (t < 0 || t >= g->T) continue;
                            for (int64_t kh = 0; kh < kH; kh++) {
                                int64_t hh = ho * g->s[1] - g->pad[1][0] + kh;
                                if (hh < 0 || hh >= g->H) continue;
                                for (int64_t kw = 0; kw < kW; kw++) {
                                    int64_t ww = wo * g->s[2] - g->pad[2][0] + kw;
                                    if (ww < 0 || ww >= g->W) continue;
                                    const float *xp =
                                        x + (((n * g->T + t) * g->H + hh) * g->W + ww) * g->Cin;
                                    for (int64_t ci = 0; ci < g->Cin; ci++)
                                        s += (double)xp[ci] *
                                             w[(((co * g->Cin + ci) * kT + kt) * kH + kh) * kW +
                                               kw];
                                }
                            }
                        }
                        ref[(((n * g->To + to) * g->Ho + ho) * g->Wo + wo) * g->Cout + co] = s;
                    }
}

static wf_status run_conv(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                          wf_err *e) {
    const conv_case g = conv_unpack(c);
    const int64_t KK = g.k[0] * g.k[1] * g.k[2];
    const size_t nx = (size_t)(g.N * g.T * g.H * g.W * g.Cin);
    const size_t nw = (size_t)(g.Cout * g.Cin * KK);
    const size_t ny = (size_t)(g.N * g.To * g.Ho * g.Wo * g.Cout);
    float *x = malloc(nx * sizeof *x), *wv = malloc(nw * sizeof *wv);
    float *bv = malloc((size_t)g.Cout * sizeof *bv);
    float *y = tu_guarded_alloc(ny);
    double *ref = malloc(ny * sizeof *ref);
    void *wstore = NULL, *bstore = NULL;
    wf_status st = WF_ENOMEM;
    if (!x || !wv || !bv || !y || !ref) {
        wf_fail(e, st, "%s runner: out of memory", c->op);
        goto out;
    }
    tu_fill_normal(rng, x, nx, 1.0f);
    tu_fill_normal(rng, wv, nw, 1.0f / sqrtf((float)(g.Cin * KK)));
    tu_fill_normal(rng, bv, (size_t)g.Cout, 0.5f);
    wk_tensor tw, tb;
    if (g.is2d)
        tw = ops_weight(c->wdt, wv, 4, (int64_t[]){g.Cout, g.Cin, g.k[1], g.k[2]}, &wstore);
    else
        tw = ops_weight(c->wdt, wv, 5, (int64_t[]){g.Cout, g.Cin, g.k[0], g.k[1], g.k[2]},
                        &wstore);
    tb = ops_weight(c->wdt, bv, 1, (int64_t[]){g.Cout}, &bstore);
    if (!wstore || !bstore) {
        wf_fail(e, st, "%s runner: out of memory", c->op);
        goto out;
    }
    wk_conv_params p = {.stride = {(int)g.s[0], (int)g.s[1], (int)g.s[2]},
                        .pad = {{(int)g.pad[0][0], (int)g.pad[0][1]},
                                {(int)g.pad[1][0], (int)g.pad[1][1]},
                                {(int)g.pad[2][0], (int)g.pad[2][1]}}};
    if (g.is2d) { /* conv2d must ignore axis 0 of the params: fill it with junk */
        p.stride[0] = 3;
        p.pad[0][0] = 2;
        p.pad[0][1] = 5;
        wk_tensor tx = wk_tensor_4d(WK_F32, x, g.N, g.H, g.W, g.Cin);
        wk_tensor ty = wk_tensor_4d(WK_F32, y, g.N, g.Ho, g.Wo, g.Cout);
        st = wk_conv2d(be, &ty, &tx, &tw, g.bias ? &tb : NULL, &p, e);
    } else {
        wk_tensor tx = wk_tensor_5d(WK_F32, x, g.N, g.T, g.H, g.W, g.Cin);
        wk_tensor ty = wk_tensor_5d(WK_F32, y, g.N, g.To, g.Ho, g.Wo, g.Cout);
        st = wk_conv3d(be, &ty, &tx, &tw, g.bias ? &tb : NULL, &p, e);
    }
    if (st != WF_OK) goto out;
    conv_reference(ref, x, wv, g.bias ? bv : NULL, &g);
    *err = tu_rel_l2(y, ref, ny);
    if (!tu_guard_ok(y, ny) || tu_count_nonfinite(y, ref, ny)) *bad = 1;
out:
    free(bstore);
    free(wstore);
    free(ref);
    tu_guarded_free(y);
    free(bv);
    free(wv);
    free(x);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Refusals: each call below is malformed and must return WF_EINVAL with a message that names
 * the op. *err is 0 when every call was refused so, else 1 (and e says which was accepted).
 */
static int refused(wf_status st, const wf_err *e, const char *op) {
    return st == WF_EINVAL && strstr(e->msg, op) != NULL;
}

static wf_status run_refusals(const op_case *c, wk_backend *be, tu_rng *rng, double *err,
                              int *bad, wf_err *e) {
    (void)rng;
    (void)bad;
    float buf[4096];
    memset(buf, 0, sizeof buf);
    wf_err ie = {0};
    const char *what = NULL;
    if (strcmp(c->op, "attention") == 0) {
        wk_tensor q = wk_tensor_3d(WK_F32, buf, 5, 2, 8), k = wk_tensor_3d(WK_F32, buf, 7, 2, 8);
        wk_tensor v = wk_tensor_3d(WK_F32, buf, 7, 2, 8), o = wk_tensor_3d(WK_F32, buf, 5, 2, 8);
        wk_tensor k_hd = wk_tensor_3d(WK_F32, buf, 7, 2, 4);
        wk_tensor v_short = wk_tensor_3d(WK_F32, buf, 6, 2, 8);
        wk_tensor o_bad = wk_tensor_3d(WK_F32, buf, 4, 2, 8);
        wk_tensor b_bad = wk_tensor_1d(WK_F32, buf, 5), b3_bad = wk_tensor_3d(WK_F32, buf, 2, 7, 5);
        if (!refused(wk_attention(be, &o, &q, &k_hd, &k_hd, 1.0f, 0, NULL, &ie), &ie, "attention"))
            what = "k with another head dim";
        else if (!refused(wk_attention(be, &o, &q, &k, &v_short, 1.0f, 0, NULL, &ie), &ie,
                          "attention"))
            what = "v with fewer keys than k";
        else if (!refused(wk_attention(be, &o_bad, &q, &k, &v, 1.0f, 0, NULL, &ie), &ie, "attention"))
            what = "o of another length than q";
        else if (!refused(wk_attention(be, &o, &q, &k, &v, 1.0f, 0, &b_bad, &ie), &ie, "attention"))
            what = "a key mask of length Lq instead of Lk";
        else if (!refused(wk_attention(be, &o, &q, &k, &v, 1.0f, 0, &b3_bad, &ie), &ie, "attention"))
            what = "a full bias [NH, Lk, Lq] (transposed)";
        else if (!refused(wk_attention(be, &o, &q, &k, &v, NAN, 0, NULL, &ie), &ie, "attention"))
            what = "a NaN scale";
    } else {
        /* conv3d: x [1, 3, 4, 4, 2], w [5, 2, 3, 3, 3], padding 1 all round -> y [1, 3, 4, 4, 5] */
        wk_tensor x = wk_tensor_5d(WK_F32, buf, 1, 3, 4, 4, 2);
        wk_tensor w = wk_tensor_5d(WK_F32, buf, 5, 2, 3, 3, 3);
        wk_tensor w_cin = wk_tensor_5d(WK_F32, buf, 5, 3, 3, 3, 3);
        wk_tensor y_bad = wk_tensor_5d(WK_F32, buf + 2048, 1, 3, 4, 4, 4);
        wk_tensor y_ok = wk_tensor_5d(WK_F32, buf + 2048, 1, 3, 4, 4, 5);
        wk_tensor b_bad = wk_tensor_1d(WK_F32, buf, 4);
        wk_tensor x2 = wk_tensor_4d(WK_F32, buf, 1, 4, 4, 2);
        wk_tensor w2 = wk_tensor_4d(WK_F32, buf, 5, 2, 3, 3);
        wk_tensor y2_bad = wk_tensor_4d(WK_F32, buf + 2048, 1, 3, 4, 5);
        wk_conv_params p = {.stride = {1, 1, 1}, .pad = {{1, 1}, {1, 1}, {1, 1}}};
        wk_conv_params p0 = {.stride = {1, 1, 1}};
        wk_conv_params ps0 = {.stride = {1, 0, 1}, .pad = {{1, 1}, {1, 1}, {1, 1}}};
        if (!refused(wk_conv3d(be, &y_bad, &x, &w, NULL, &p, &ie), &ie, "conv3d"))
            what = "y with Cout 4 for a 5-output weight";
        else if (!refused(wk_conv3d(be, &y_ok, &x, &w_cin, NULL, &p, &ie), &ie, "conv3d"))
            what = "w with Cin 3 for a 2-channel x";
        else if (!refused(wk_conv3d(be, &y_ok, &x, &w, &b_bad, &p, &ie), &ie, "conv3d"))
            what = "bias [4] for Cout 5";
        else if (!refused(wk_conv3d(be, &y_ok, &x, &w, NULL, &p0, &ie), &ie, "conv3d"))
            what = "no padding: y's shape no longer matches";
        else if (!refused(wk_conv3d(be, &y_ok, &x, &w, NULL, &ps0, &ie), &ie, "conv3d"))
            what = "a stride of 0";
        else if (!refused(wk_conv2d(be, &y2_bad, &x2, &w2, NULL, &p, &ie), &ie, "conv2d"))
            what = "conv2d y [1, 3, 4, 5] for an output of [1, 4, 4, 5]";
    }
    *err = what ? 1.0 : 0.0;
    if (what) return wf_fail(e, WF_EINVAL, "%s: accepted %s (status %s: %s)", c->op, what,
                             wf_status_str(ie.status), ie.msg);
    return WF_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The rows. Tolerances: both ops accumulate in f32 (sgemm) over at most a few thousand terms of
 * order-1 values, and the reference sees exactly the rounded weights, so the expected error is
 * a few 1e-7; 1e-5 leaves ample room yet catches any indexing or softmax slip (which gives
 * errors near 1).
 */
#define ATT_WHY "f32 sgemm + online softmax vs double; logits of order 1 keep it well-conditioned"
#define CONV_WHY "f32 im2col sgemm vs direct double sum over <= 8640 terms; weights pre-rounded"

const op_case ops_heavy_cases[] = {
    {"attention", "Lq=37 Lk=53 NH=3 HD=16 scale 1/sqrt(HD)", run_attention,
     {37, 53, 3, 16, ATT_NONE, ATT_SCALE_SDPA}, WK_F32, 1e-5, ATT_WHY},
    {"attention", "L=300 NH=2 HD=128 (crosses query blocks)", run_attention,
     {300, 300, 2, 128, ATT_NONE, ATT_SCALE_SDPA}, WK_F32, 1e-5, ATT_WHY},
    {"attention", "Lq=70 Lk=1100 NH=2 HD=32 (crosses 512-key blocks)", run_attention,
     {70, 1100, 2, 32, ATT_NONE, ATT_SCALE_SDPA}, WK_F32, 1e-5,
     ATT_WHY "; the online softmax rescales across 3 key blocks"},
    {"attention", "Lq=1 Lk=77 NH=4 HD=32 (one query)", run_attention,
     {1, 77, 4, 32, ATT_NONE, ATT_SCALE_SDPA}, WK_F32, 1e-5, ATT_WHY},
    {"attention", "Lq=130 Lk=1 NH=2 HD=8 (one key)", run_attention,
     {130, 1, 2, 8, ATT_NONE, ATT_SCALE_SDPA}, WK_F32, 1e-5, ATT_WHY},
    {"attention", "Lq=37 Lk=53 NH=3 HD=16 key mask [Lk]", run_attention,
     {37, 53, 3, 16, ATT_KEYMASK, ATT_SCALE_SDPA}, WK_F32, 1e-5, ATT_WHY},
    {"attention", "Lq=70 Lk=1200 NH=2 HD=24 first 600 keys masked", run_attention,
     {70, 1200, 2, 24, ATT_PREFIXMASK, ATT_SCALE_SDPA}, WK_F32, 1e-5,
     ATT_WHY "; a whole key block fully masked before live keys"},
    {"attention", "Lq=37 Lk=53 NH=3 HD=16 every key masked (zeros)", run_attention,
     {37, 53, 3, 16, ATT_ALLMASKED, ATT_SCALE_SDPA}, WK_F32, 1e-5,
     "the reference is exactly 0; any nonzero or NaN output gives an infinite error"},
    {"attention", "Lq=70 Lk=300 NH=3 HD=64 full bias, scale 1 (umT5)", run_attention,
     {70, 300, 3, 64, ATT_FULL, ATT_SCALE_ONE}, WK_F32, 1e-5,
     ATT_WHY "; includes -inf entries and one fully masked query row"},
    {"attention", "Lq=37 Lk=53 NH=3 HD=16 key mask in bf16", run_attention,
     {37, 53, 3, 16, ATT_KEYMASK, ATT_SCALE_SDPA}, WK_BF16, 1e-5,
     ATT_WHY "; the bias is widened exactly, so bf16 costs no accuracy"},
    {"attention", "Lq=37 Lk=53 NH=2 HD=16 full bias in f16, scale 1", run_attention,
     {37, 53, 2, 16, ATT_FULL, ATT_SCALE_ONE}, WK_F16, 1e-5,
     ATT_WHY "; the bias is widened exactly, so f16 costs no accuracy"},
    {"attention", "refuses malformed shapes", run_refusals, {0}, WK_F32, 0.5,
     "err is 0 when every malformed call returns WF_EINVAL naming the op, 1 otherwise"},

    {"conv3d", "1x4x6x7x8->12 k3x3x3 pad 1 all sides", run_conv,
     CONV(1, 4, 6, 7, 8, 12, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), WK_F32, 1e-5, CONV_WHY},
    {"conv3d", "2x3x5x6x4->7 k3x3x3 causal pad t(2,0) hw(1,1)", run_conv,
     CONV(2, 3, 5, 6, 4, 7, 3, 3, 3, 1, 1, 1, 2, 0, 1, 1, 1, 1, 1), WK_F32, 1e-5,
     CONV_WHY "; WanCausalConv3d padding"},
    {"conv3d", "1x5x4x3x6->6 k3x1x1 stride (2,1,1) pad 0 (downsample3d time_conv)", run_conv,
     CONV(1, 5, 4, 3, 6, 6, 3, 1, 1, 2, 1, 1, 0, 0, 0, 0, 0, 0, 1), WK_F32, 1e-5, CONV_WHY},
    {"conv3d", "2x3x5x7x16->9 k1x1x1 (shortcut: no im2col)", run_conv,
     CONV(2, 3, 5, 7, 16, 9, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1), WK_F32, 1e-5, CONV_WHY},
    {"conv3d", "1x3x5x7x4->5 k1x1x1 stride 2 pad 1 (im2col path)", run_conv,
     CONV(1, 3, 5, 7, 4, 5, 1, 1, 1, 2, 2, 2, 1, 0, 1, 0, 0, 1, 0), WK_F32, 1e-5,
     CONV_WHY "; no bias"},
    {"conv3d", "1x5x7x9x5->6 k3x3x3 pad 1, odd sizes", run_conv,
     CONV(1, 5, 7, 9, 5, 6, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), WK_F32, 1e-5, CONV_WHY},
    {"conv3d", "1x5x7x9x5->6 k3x3x3 pad 1, bf16 weights", run_conv,
     CONV(1, 5, 7, 9, 5, 6, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), WK_BF16, 1e-5,
     CONV_WHY "; bf16 widened exactly"},
    {"conv3d", "1x5x7x9x5->6 k3x3x3 causal, f16 weights", run_conv,
     CONV(1, 5, 7, 9, 5, 6, 3, 3, 3, 1, 1, 1, 2, 0, 1, 1, 1, 1, 1), WK_F16, 1e-5,
     CONV_WHY "; f16 widened exactly"},
    {"conv3d", "1x3x5x4x3->4 k2x3x2 stride (1,2,3) asymmetric pads", run_conv,
     CONV(1, 3, 5, 4, 3, 4, 2, 3, 2, 1, 2, 3, 0, 2, 2, 1, 1, 3, 1), WK_F32, 1e-5,
     CONV_WHY "; every axis differs, windows fully in the padding"},
    {"conv3d", "1x2x12x12x320->8 k3x3x3 pad 1 (im2col rows cross blocks)", run_conv,
     CONV(1, 2, 12, 12, 320, 8, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), WK_F32, 1e-5,
     CONV_WHY "; K = 8640: conv.c's blocks hold 256 rows, < 288 positions"},
    {"conv3d", "1x4x16x16x24->32 k3x3x3 causal, f16 (4 blocks on 2 threads)", run_conv,
     CONV(1, 4, 16, 16, 24, 32, 3, 3, 3, 1, 1, 1, 2, 0, 1, 1, 1, 1, 1), WK_F16, 1e-5,
     CONV_WHY "; large enough for conv.c's parallel path"},
    {"conv2d", "2x20x24x32->40 k3x3 pad 1 (4 blocks on 2 threads)", run_conv,
     CONV(2, 0, 20, 24, 32, 40, 1, 3, 3, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1), WK_BF16, 1e-5,
     CONV_WHY "; large enough for conv.c's parallel path"},
    {"conv2d", "2x6x7x5->6 k3x3 pad 1", run_conv,
     CONV(2, 0, 6, 7, 5, 6, 1, 3, 3, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1), WK_F32, 1e-5, CONV_WHY},
    {"conv2d", "1x9x8x6->6 k3x3 stride 2 ZeroPad(0,1,0,1) (downsample2d)", run_conv,
     CONV(1, 0, 9, 8, 6, 6, 1, 3, 3, 1, 2, 2, 0, 0, 0, 1, 0, 1, 1), WK_F32, 1e-5, CONV_WHY},
    {"conv2d", "3x4x5x12->36 k1x1 (VAE to_qkv)", run_conv,
     CONV(3, 0, 4, 5, 12, 36, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1), WK_BF16, 1e-5,
     CONV_WHY "; bf16 widened exactly"},
    {"conv3d", "refuses malformed shapes", run_refusals, {0}, WK_F32, 0.5,
     "err is 0 when every malformed call returns WF_EINVAL naming the op, 1 otherwise"},
};
const int ops_heavy_count = (int)(sizeof ops_heavy_cases / sizeof ops_heavy_cases[0]);
