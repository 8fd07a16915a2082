/* conv.c: the CPU reference for channels-last convolutions (wk_cpu_conv3d, wk_cpu_conv2d).
 *
 * What it is: im2col + sgemm. The weight, in the checkpoint's PyTorch layout [Cout, Cin, kT, kH,
 * kW] and any wk_dtype, is widened and repacked once per call into the workspace as
 * Wp [Cout, kT*kH*kW*Cin] f32 (order kt, kh, kw, ci, so that an im2col row is made of contiguous
 * Cin-long runs of the channels-last input). Output positions are taken in blocks; for each block
 * an im2col matrix (one row of kT*kH*kW*Cin per position, zeros where the window hangs over the
 * padding) is filled and y[block, Cout] = col . Wp^T (+ bias) is one sgemm written straight into
 * y (ldc = Cout). A 1x1x1 kernel with stride 1 and no padding skips im2col: x itself is the
 * matrix. conv2d is conv3d with T = kT = 1 (axes 1 and 2 of wk_conv_params).
 * Threading: blocks are OpenMP tasks (dynamic schedule); each thread fills its own im2col block
 * and calls a single-threaded sgemm. On 2 cores this beat "parallel fill, then one sgemm that
 * OpenBLAS threads" by about 1.5-2x (bench/PERFORMANCE.md), mostly by not waiting at a barrier
 * twice per block.
 * What it is not: a direct or Winograd convolution, a grouped or dilated one, one that keeps
 * the VAE's causal cache (the caller concatenates cached frames and sets the padding), or an
 * in-place one (y must not overlap x).
 * Tested by: tests/ops_heavy.c (rows "conv3d", "conv2d", against a double-precision direct
 * convolution), and timed by bench/bench_ops --op conv3d.
 */
#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "cpu_ops.h"

/* Size of one thread's im2col block: 4 MiB, but at least 256 rows (OpenBLAS packs all of Wp on
 * every sgemm call, and fewer rows leave that copy unamortised: 146 -> 163 GFLOP/s at K = 10368
 * on 2 cores), and at most 16 MiB. */
#define CONV_COL_BYTES ((size_t)4 << 20)
#define CONV_COL_MAX_BYTES ((size_t)16 << 20)
#define CONV_MIN_ROWS 240
#define CONV_ROW_QUANTUM WK_CPU_ROW_QUANTUM /* im2col blocks start at multiples of this many positions */
/* Below these sizes a loop runs on one thread: waking the others costs more than it saves,
 * and far more on a loaded machine. Elements copied, and multiply-adds of the main loop. */
#define CONV_PAR_MIN ((int64_t)1 << 16)
#define CONV_PAR_MIN_MACS ((int64_t)1 << 21)

typedef struct conv_geom {
    int64_t N, T, H, W, Cin;    /* input [N, T, H, W, Cin] */
    int64_t Cout, kT, kH, kW;   /* weight [Cout, Cin, kT, kH, kW] */
    int64_t st, sh, sw;         /* strides */
    int64_t pt, ph, pw;         /* zeros before, per axis (the "after" pads only shape To..Wo) */
    int64_t To, Ho, Wo;         /* output [N, To, Ho, Wo, Cout] */
    int64_t K;                  /* kT*kH*kW*Cin: im2col row length */
} conv_geom;

/* One im2col row: the input window of output position pos (flattened over N, To, Ho, Wo), in
 * (kt, kh, kw, ci) order, with zeros outside the input. */
static void conv_fill_row(float *restrict row, const float *restrict x, const conv_geom *g,
                          int64_t pos) {
    int64_t wo = pos % g->Wo, r = pos / g->Wo;
    int64_t ho = r % g->Ho;
    r /= g->Ho;
    int64_t to = r % g->To, n = r / g->To;
    int64_t t0 = to * g->st - g->pt, h0 = ho * g->sh - g->ph, w0 = wo * g->sw - g->pw;
    int64_t kw_lo = w0 < 0 ? -w0 : 0;
    int64_t kw_hi = g->W - w0 < g->kW ? g->W - w0 : g->kW;
    if (kw_hi < kw_lo) kw_hi = kw_lo;
    const size_t C = (size_t)g->Cin, run = (size_t)g->kW * C;
    for (int64_t kt = 0; kt < g->kT; kt++) {
        int64_t t = t0 + kt;
        for (int64_t kh = 0; kh < g->kH; kh++) {
            int64_t h = h0 + kh;
            float *dst = row + (size_t)(kt * g->kH + kh) * run;
            if (t < 0 || t >= g->T || h < 0 || h >= g->H || kw_hi == kw_lo) {
                memset(dst, 0, run * sizeof(float));
                continue;
            }
            const float *src = x + ((((size_t)n * g->T + t) * g->H + h) * g->W + (w0 + kw_lo)) * C;
            memset(dst, 0, (size_t)kw_lo * C * sizeof(float));
            memcpy(dst + kw_lo * C, src, (size_t)(kw_hi - kw_lo) * C * sizeof(float));
            memset(dst + kw_hi * C, 0, (size_t)(g->kW - kw_hi) * C * sizeof(float));
        }
    }
}

static wf_status conv_check_f32(const wk_tensor *t, int ndim, const char *op, const char *arg,
                                wf_err *err) {
    wf_status st = wk_check_dtype(t, WK_F32, op, arg, err);
    if (st == WF_OK) st = wk_check_ndim(t, ndim, op, arg, err);
    if (st == WF_OK && t->device != WK_DEV_CPU)
        st = wf_fail(err, WF_EINVAL, "%s: %s is not in host memory", op, arg);
    return st;
}

/* The shared implementation. x5, w5, y5 are 5-D views ([N, T, H, W, C], [Cout, Cin, kT, kH, kW],
 * [N, To, Ho, Wo, Cout]); the callers have checked dtypes, ranks and devices. */
static wf_status conv_run(wk_backend *be, const char *op, float *y, const float *x,
                          const wk_tensor *w, const wk_tensor *bias, const conv_geom *g,
                          wf_err *err) {
    const int nth = be->nthreads > 0 ? be->nthreads : 1;
    const int64_t npos = g->N * g->To * g->Ho * g->Wo;
    const size_t K = (size_t)g->K, Cout = (size_t)g->Cout;
    const size_t KK = (size_t)(g->kT * g->kH * g->kW);
    const int direct = KK == 1 && g->st == 1 && g->sh == 1 && g->sw == 1 && g->pt == 0 &&
                       g->ph == 0 && g->pw == 0 && g->To == g->T && g->Ho == g->H &&
                       g->Wo == g->W;

    /* rows per im2col block (one block per thread at a time); 2 or more blocks per thread when
     * there are enough positions, so that dynamic scheduling can balance them */
    size_t rb = CONV_COL_BYTES / (K * sizeof(float));
    const size_t share = ((size_t)npos + 2 * (size_t)nth - 1) / (2 * (size_t)nth);
    if (rb > share) rb = share;
    if (rb < CONV_MIN_ROWS) rb = CONV_MIN_ROWS;
    const size_t cap = CONV_COL_MAX_BYTES / (K * sizeof(float));
    if (rb > cap) rb = cap > 0 ? cap : 1;
    if (rb > (size_t)INT_MAX) rb = (size_t)INT_MAX;
    /* blocks start at multiples of 48 positions, whatever nth made of rb: every output element
     * then comes from the same BLAS tile on any thread count (matmul.c's head comment) */
    if (rb >= CONV_ROW_QUANTUM) rb = rb / CONV_ROW_QUANTUM * CONV_ROW_QUANTUM;
    if (rb > (size_t)npos) rb = (size_t)npos;

    /* workspace, in floats (each part rounded up to 16 = 64 bytes):
     * Wp [Cout, K] | bias [Cout] | col [nth, rb, K] (also the weight-widening scratch) */
    const size_t wp_n = (Cout * K + 15) / 16 * 16;
    const size_t b_n = (Cout + 15) / 16 * 16;
    const size_t col_rows = (size_t)nth * (direct ? 1 : rb);
    size_t col_n, total, bytes;
    if (wf_mul_overflow(col_rows, K, &col_n) || wf_add_overflow(wp_n + b_n, col_n, &total) ||
        wf_mul_overflow(total, sizeof(float), &bytes))
        return wf_fail(err, WF_ENOMEM, "%s: workspace size overflows", op);
    void *ws;
    wf_status st = wk_backend_workspace(be, bytes, &ws, err);
    if (st != WF_OK) {
        wf_err_prefix(err, "%s: ", op);
        return st;
    }
    float *Wp = ws, *bf = Wp + wp_n, *col = bf + b_n;

    /* Wp[co][(kk)*Cin + ci] = w[co][ci][kk], widened; kk = (kt*kH + kh)*kW + kw */
    const size_t esz = wk_dtype_size(w->dtype);
    const char *wsrc = w->data;
#pragma omp parallel for num_threads(nth) if ((int64_t)(Cout * K) >= CONV_PAR_MIN)
    for (int64_t co = 0; co < (int64_t)Cout; co++) {
        float *tmp = col + (size_t)omp_get_thread_num() * K;
        wk_convert_to_f32(tmp, wsrc + (size_t)co * K * esz, w->dtype, K);
        float *dst = Wp + (size_t)co * K;
        for (size_t ci = 0; ci < (size_t)g->Cin; ci++)
            for (size_t kk = 0; kk < KK; kk++) dst[kk * (size_t)g->Cin + ci] = tmp[ci * KK + kk];
    }
    if (bias) wk_convert_to_f32(bf, bias->data, bias->dtype, Cout);

    const float beta = bias ? 1.0f : 0.0f;
    if (direct) { /* 1x1x1, stride 1, no padding: x is already the im2col matrix */
        if (bias) {
#pragma omp parallel for num_threads(nth) if (npos * (int64_t)Cout >= CONV_PAR_MIN)
            for (int64_t p = 0; p < npos; p++)
                memcpy(y + (size_t)p * Cout, bf, Cout * sizeof(float));
        }
        const int64_t piece = (int64_t)INT_MAX / CONV_ROW_QUANTUM * CONV_ROW_QUANTUM;
        for (int64_t p0 = 0; p0 < npos; p0 += piece) {
            int64_t m = npos - p0 < piece ? npos - p0 : piece;
            wk_cpu_sgemm_nt(nth, m, (int64_t)Cout, (int64_t)K, x + (size_t)p0 * K, Wp, beta,
                            y + (size_t)p0 * Cout, (int64_t)Cout);
        }
        return WF_OK;
    }

    /* Blocks of rb output positions, one per task: fill the thread's im2col block, prefill
     * the bias, then a single-threaded sgemm (OpenBLAS' OpenMP build inside a parallel region)
     * writes y[block, Cout]. Dynamic scheduling keeps both cores busy when one is disturbed. */
    const int64_t nblk = (npos + (int64_t)rb - 1) / (int64_t)rb;
    const double macs = (double)npos * (double)K * (double)Cout;
    /* small convolutions use at most two threads, but always inside a parallel region, so that
     * OpenBLAS does not thread the sgemm itself (its splits would depend on nth) */
    const int par = nblk > 1 && macs >= (double)CONV_PAR_MIN_MACS;
#pragma omp parallel for schedule(dynamic) num_threads(par ? nth : (nth > 1 ? 2 : 1))
    for (int64_t blk = 0; blk < nblk; blk++) {
        float *cb = col + (size_t)omp_get_thread_num() * rb * K;
        const int64_t p0 = blk * (int64_t)rb;
        const int m = (int)(npos - p0 < (int64_t)rb ? npos - p0 : (int64_t)rb);
        float *yb = y + (size_t)p0 * Cout;
        for (int i = 0; i < m; i++) {
            conv_fill_row(cb + (size_t)i * K, x, g, p0 + i);
            if (bias) memcpy(yb + (size_t)i * Cout, bf, Cout * sizeof(float));
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)Cout, (int)K, 1.0f, cb,
                    (int)K, Wp, (int)K, beta, yb, (int)Cout);
    }
    return WF_OK;
}

/* Checks w, bias, the params and y against x; fills g. x5/y5 dims are [N, T, H, W, C] (for
 * conv2d T = 1), wdims the weight's [Cout, Cin, kT, kH, kW]; axis0 is the first params axis
 * used (0 for conv3d, 1 for conv2d). */
static wf_status conv_setup(const char *op, const wk_tensor *y, const wk_tensor *w,
                            const wk_tensor *bias, const wk_conv_params *p, const int64_t *x5,
                            const int64_t *wdims, const int64_t *y5, int axis0, conv_geom *g,
                            wf_err *err) {
    char s1[96];
    if (w->device != WK_DEV_CPU) return wf_fail(err, WF_EINVAL, "%s: w is not in host memory", op);
    if (w->dtype >= WK_DTYPE_COUNT)
        return wf_fail(err, WF_EUNSUPPORTED, "%s: w has unknown dtype %d", op, (int)w->dtype);
    if (!p) return wf_fail(err, WF_EINVAL, "%s: params is NULL", op);
    for (int a = axis0; a < 3; a++) {
        if (p->stride[a] < 1 || p->pad[a][0] < 0 || p->pad[a][1] < 0)
            return wf_fail(err, WF_EINVAL,
                           "%s: axis %d has stride %d, padding (%d, %d); expected stride >= 1 "
                           "and padding >= 0",
                           op, a, p->stride[a], p->pad[a][0], p->pad[a][1]);
    }
    for (int i = 0; i < 5; i++)
        if (x5[i] < 1 || wdims[i] < 1)
            return wf_fail(err, WF_EINVAL, "%s: x and w must have no empty dimension (w %s)", op,
                           wk_tensor_shape_str(w, s1, sizeof s1));
    if (wdims[1] != x5[4])
        return wf_fail(err, WF_EINVAL, "%s: w %s%s has Cin = %lld, but x has %lld channels", op,
                       w->name ? w->name : "", wk_tensor_shape_str(w, s1, sizeof s1),
                       (long long)wdims[1], (long long)x5[4]);
    if (bias) {
        if (bias->device != WK_DEV_CPU)
            return wf_fail(err, WF_EINVAL, "%s: bias is not in host memory", op);
        if (bias->dtype >= WK_DTYPE_COUNT)
            return wf_fail(err, WF_EUNSUPPORTED, "%s: bias has unknown dtype %d", op,
                           (int)bias->dtype);
        if (bias->ndim != 1 || bias->shape[0] != wdims[0])
            return wf_fail(err, WF_EINVAL, "%s: bias shape %s, expected [%lld] (Cout of w)", op,
                           wk_tensor_shape_str(bias, s1, sizeof s1), (long long)wdims[0]);
    }
    *g = (conv_geom){.N = x5[0], .T = x5[1], .H = x5[2], .W = x5[3], .Cin = x5[4],
                     .Cout = wdims[0], .kT = wdims[2], .kH = wdims[3], .kW = wdims[4],
                     .st = p->stride[0], .sh = p->stride[1], .sw = p->stride[2],
                     .pt = p->pad[0][0], .ph = p->pad[1][0], .pw = p->pad[2][0]};
    if (axis0 == 1) { /* conv2d: the time axis is a 1-long, unpadded, unstrided axis */
        g->st = 1;
        g->pt = 0;
    }
    const int64_t in[3] = {g->T, g->H, g->W}, k[3] = {g->kT, g->kH, g->kW};
    const int64_t s[3] = {g->st, g->sh, g->sw};
    int64_t out[3];
    for (int a = 0; a < 3; a++) {
        int64_t padded = in[a] + (a < axis0 ? 0 : (int64_t)p->pad[a][0] + p->pad[a][1]);
        if (padded < k[a])
            return wf_fail(err, WF_EINVAL,
                           "%s: axis %d: input %lld + padding = %lld is smaller than the "
                           "kernel %lld",
                           op, a, (long long)in[a], (long long)padded, (long long)k[a]);
        out[a] = (padded - k[a]) / s[a] + 1;
    }
    g->To = out[0];
    g->Ho = out[1];
    g->Wo = out[2];
    const int64_t want[5] = {g->N, g->To, g->Ho, g->Wo, g->Cout};
    for (int i = 0; i < 5; i++)
        if (y5[i] != want[i]) {
            char sy[96];
            if (axis0 == 1)
                return wf_fail(err, WF_EINVAL, "%s: y shape %s, expected [%lld, %lld, %lld, %lld]",
                               op, wk_tensor_shape_str(y, sy, sizeof sy), (long long)g->N,
                               (long long)g->Ho, (long long)g->Wo, (long long)g->Cout);
            return wf_fail(err, WF_EINVAL,
                           "%s: y shape %s, expected [%lld, %lld, %lld, %lld, %lld]", op,
                           wk_tensor_shape_str(y, sy, sizeof sy), (long long)g->N,
                           (long long)g->To, (long long)g->Ho, (long long)g->Wo,
                           (long long)g->Cout);
        }
    g->K = g->kT * g->kH * g->kW * g->Cin;
    if (g->K > INT_MAX || g->Cout > INT_MAX)
        return wf_fail(err, WF_EINVAL, "%s: kT*kH*kW*Cin = %lld or Cout = %lld exceeds INT_MAX",
                       op, (long long)g->K, (long long)g->Cout);
    return WF_OK;
}

wf_status wk_cpu_conv3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *bias, const wk_conv_params *p, wf_err *err) {
    const char *op = "conv3d";
    wf_status st;
    if ((st = conv_check_f32(x, 5, op, "x", err)) || (st = conv_check_f32(y, 5, op, "y", err)) ||
        (st = wk_check_ndim(w, 5, op, "w", err)))
        return st;
    conv_geom g;
    if ((st = conv_setup(op, y, w, bias, p, x->shape, w->shape, y->shape, 0, &g, err)))
        return st;
    return conv_run(be, op, y->data, x->data, w, bias, &g, err);
}

wf_status wk_cpu_conv2d(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *bias, const wk_conv_params *p, wf_err *err) {
    const char *op = "conv2d";
    wf_status st;
    if ((st = conv_check_f32(x, 4, op, "x", err)) || (st = conv_check_f32(y, 4, op, "y", err)) ||
        (st = wk_check_ndim(w, 4, op, "w", err)))
        return st;
    const int64_t *xs = x->shape, *wsh = w->shape, *ys = y->shape;
    const int64_t x5[5] = {xs[0], 1, xs[1], xs[2], xs[3]};
    const int64_t w5[5] = {wsh[0], wsh[1], 1, wsh[2], wsh[3]};
    const int64_t y5[5] = {ys[0], 1, ys[1], ys[2], ys[3]};
    conv_geom g;
    if ((st = conv_setup(op, y, w, bias, p, x5, w5, y5, 1, &g, err))) return st;
    return conv_run(be, op, y->data, x->data, w, bias, &g, err);
}
