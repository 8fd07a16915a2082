/* attention.c: the CPU reference for scaled dot-product attention (wk_cpu_attention).
 *
 * What it is: o = softmax(scale q k^T + bias) v per head (semantics in kernels/backend.h), computed
 * flash-style. Work is split into (head, query block) tasks (BQ = 240 query rows, lowered to 96
 * then 48 while there are fewer than 4 tasks per thread); each task walks the keys in blocks of 512,
 * S = scale Qb Kb^T is one sgemm straight out of the token-major [L, NH, HD] arrays (lda = NH*HD,
 * no copies), the bias is added, an online softmax keeps a running max m and sum l per row and
 * rescales the partial output, and O += P Vb is a second sgemm. Scratch per thread is
 * O(BQ * (BK + HD)) floats from the backend workspace: never an Lq x Lk matrix. Tasks run in an
 * OpenMP loop; the OpenMP build of OpenBLAS runs each sgemm inside it single-threaded.
 * What it is not: a causal or dropout attention, nor one that takes strided (B, NH, L, HD) views;
 * o must not overlap k or v.
 * Tested by: tests/ops_heavy.c (rows "attention", against a double-precision softmax), and timed
 * by bench/bench_ops --op attention.
 */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "cpu_ops.h"

/* Block sizes, measured on 2 cores (bench/PERFORMANCE.md); -D overrides them for experiments. */
/* Query rows per task are a multiple of 48 (240, 96 or 48), so that a query's row of an sgemm
 * lands in the same BLAS row tile whatever the head count and thread count chose: the outputs of
 * a query then do not depend on how many heads a rank holds (Ulysses, worker/models/dit/dit.h). */
#ifndef ATT_BQ_MAX
#define ATT_BQ_MAX 240 /* query rows per task, at most (fewer when there are few tasks) */
#endif
#define ATT_BQ_MIN 48
#ifndef ATT_BK
#define ATT_BK 512 /* keys per inner block */
#endif
/* Below this many multiply-adds (Lq * Lk * NH * HD) the tasks run on one thread: waking the
 * others costs more than it saves, and far more on a loaded machine. */
#define ATT_PAR_MIN ((int64_t)1 << 20)

/* Selects a where mask is all ones, b where it is 0, on the bits. The float ternary would be
 * clearer, but under GCC's default -ftrapping-math it is "control flow" and keeps the loops
 * below scalar; the integer form vectorises. */
static inline float att_select(uint32_t mask, float a, float b) {
    uint32_t ab, bb;
    memcpy(&ab, &a, 4);
    memcpy(&bb, &b, 4);
    ab = (ab & mask) | (bb & ~mask);
    memcpy(&a, &ab, 4);
    return a;
}

/* p[j] = exp(p[j] - m) for j < n, where p[j] - m <= 0 (m is the row max). Cephes' expf scheme
 * (Cody-Waite reduction by ln 2, degree-5 polynomial, relative error < 2e-7) written without
 * branches or float-to-int conversions so that GCC vectorises the loop at -O3. Arguments below
 * ln(FLT_MIN) = -87.34 give exactly 0, so -inf (a masked key) gives 0; NaN propagates. */
static void att_exp_shift(float *restrict p, int n, float m) {
    const float lo = -87.3365478515625f; /* ln(2^-126): 2^n stays a normal number */
    const float magic = 12582912.0f;     /* 1.5 * 2^23: adding it rounds to an integer */
    for (int j = 0; j < n; j++) {
        float x = p[j] - m;
        uint32_t keep = 0u - (uint32_t)!(x < lo); /* all ones unless x underflows */
        float xc = att_select(keep, x, lo);
        float t = xc * 1.44269504088896341f + magic; /* round(x / ln 2) + magic */
        float nf = t - magic;
        float r = xc - nf * 0.693359375f; /* ln 2 = 0.693359375 - 2.12194440e-4 (+ tiny) */
        r = r - nf * -2.12194440e-4f;
        float r2 = r * r;
        float q = 1.9875691500e-4f;
        q = q * r + 1.3981999507e-3f;
        q = q * r + 8.3334519073e-3f;
        q = q * r + 4.1665795894e-2f;
        q = q * r + 1.6666665459e-1f;
        q = q * r + 5.0000001201e-1f;
        q = q * r2 + r + 1.0f;
        uint32_t tb;
        memcpy(&tb, &t, 4);
        uint32_t sb = (tb - 0x4B400000u + 127u) << 23; /* 2^n: the integer sits in t's mantissa */
        float s;
        memcpy(&s, &sb, 4);
        p[j] = att_select(keep, q * s, 0.0f);
    }
}

/* max of p[0..n) (-inf for n == 0; NaN if any p is NaN, so that a NaN input reaches the output
 * instead of passing for a masked row). The max is taken over the floats' bits mapped to
 * integers of the same order (negative floats have their magnitude bits flipped): an integer
 * max reduction vectorises, a float one does not without -ffast-math. */
static float att_row_max(const float *p, int n) {
    int32_t mk = INT32_MIN; /* below the key of -inf */
    uint32_t nan = 0;
    for (int j = 0; j < n; j++) {
        uint32_t b;
        memcpy(&b, &p[j], 4);
        int32_t key = (int32_t)(b ^ ((uint32_t)((int32_t)b >> 31) >> 1));
        mk = key > mk ? key : mk;
        nan |= (uint32_t)(p[j] != p[j]);
    }
    if (nan) return NAN;
    if (n == 0) return -INFINITY;
    uint32_t b = (uint32_t)mk ^ ((uint32_t)(mk >> 31) >> 1);
    float m;
    memcpy(&m, &b, 4);
    return m;
}

/* sum of p[0..n), eight lanes, finished in double. */
static float att_row_sum(const float *p, int n) {
    float s8[8] = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int i = 0; i < 8; i++) s8[i] += p[j + i];
    double s = 0;
    for (; j < n; j++) s += p[j];
    for (int i = 0; i < 8; i++) s += s8[i];
    return (float)s;
}

static wf_status att_check_qkv(const wk_tensor *t, const char *arg, wf_err *err) {
    wf_status st = wk_check_dtype(t, WK_F32, "attention", arg, err);
    if (st == WF_OK) st = wk_check_ndim(t, 3, "attention", arg, err);
    if (st == WF_OK && t->device != WK_DEV_CPU)
        st = wf_fail(err, WF_EINVAL, "attention: %s is not in host memory", arg);
    return st;
}

wf_status wk_cpu_attention(wk_backend *be, wk_tensor *o, const wk_tensor *q, const wk_tensor *k,
                           const wk_tensor *v, float scale, int64_t kv_len, const wk_tensor *bias,
                           wf_err *err) {
    wf_status st;
    if ((st = att_check_qkv(q, "q", err)) || (st = att_check_qkv(k, "k", err)) ||
        (st = att_check_qkv(v, "v", err)) || (st = att_check_qkv(o, "o", err)))
        return st;
    if ((st = wk_check_same_shape(o, q, "attention", "o", "q", err)) ||
        (st = wk_check_same_shape(v, k, "attention", "v", "k", err)))
        return st;
    const int64_t Lq = q->shape[0], Lk = k->shape[0], NH = q->shape[1], HD = q->shape[2];
    char sq[96], sk[96];
    if (k->shape[1] != NH || k->shape[2] != HD)
        return wf_fail(err, WF_EINVAL,
                       "attention: k shape %s must be [Lk, NH, HD] with NH, HD of q %s",
                       wk_tensor_shape_str(k, sk, sizeof sk),
                       wk_tensor_shape_str(q, sq, sizeof sq));
    if (NH < 1 || HD < 1 || NH * HD > INT_MAX / 2 || Lq > INT_MAX || Lk > INT_MAX)
        return wf_fail(err, WF_EINVAL, "attention: q shape %s: NH and HD must be >= 1 and "
                       "NH*HD, Lq, Lk must fit in int",
                       wk_tensor_shape_str(q, sq, sizeof sq));
    if (!isfinite(scale))
        return wf_fail(err, WF_EINVAL, "attention: scale is %g, expected a finite value",
                       (double)scale);
    int bias_full = 0;
    if (bias) {
        if (bias->device != WK_DEV_CPU)
            return wf_fail(err, WF_EINVAL, "attention: bias is not in host memory");
        if (bias->dtype >= WK_DTYPE_COUNT)
            return wf_fail(err, WF_EUNSUPPORTED, "attention: bias has unknown dtype %d",
                           (int)bias->dtype);
        if (bias->ndim == 1 && bias->shape[0] == Lk) {
            bias_full = 0;
        } else if (bias->ndim == 3 && bias->shape[0] == NH && bias->shape[1] == Lq &&
                   bias->shape[2] == Lk) {
            bias_full = 1;
        } else {
            char sb[96];
            return wf_fail(err, WF_EINVAL,
                           "attention: bias shape %s, expected [%lld] (key mask) or "
                           "[%lld, %lld, %lld] (full bias)",
                           wk_tensor_shape_str(bias, sb, sizeof sb), (long long)Lk,
                           (long long)NH, (long long)Lq, (long long)Lk);
        }
    }
    if (Lq == 0) return WF_OK;
    /* keys [kv_len, Lk) are masked: they are never read (their softmax weight is exactly 0) */
    const int64_t Lkv = kv_len > 0 && kv_len < Lk ? kv_len : Lk;

    /* Query rows per task: large blocks make larger, faster sgemms, but there should be a few
     * tasks per thread for the dynamic schedule to balance. */
    const int nth = be->nthreads > 0 ? be->nthreads : 1;
    int64_t BQ = ATT_BQ_MAX;
    while (BQ > ATT_BQ_MIN && NH * ((Lq + BQ - 1) / BQ) < 4 * (int64_t)nth)
        BQ = BQ / 2 / ATT_BQ_MIN * ATT_BQ_MIN < ATT_BQ_MIN ? ATT_BQ_MIN : BQ / 2 / ATT_BQ_MIN * ATT_BQ_MIN;

    /* Per-thread scratch, in floats, each part a multiple of 16 (64 bytes):
     * S/P [BQ, BK] | O [BQ, HD] | m, l, alpha [BQ] | widened bias row [BK] */
    const size_t hd16 = ((size_t)HD + 15) / 16 * 16;
    const size_t off_o = (size_t)BQ * ATT_BK;
    const size_t off_m = off_o + (size_t)BQ * hd16;
    const size_t off_l = off_m + (size_t)BQ;
    const size_t off_a = off_l + (size_t)BQ;
    const size_t off_b = off_a + (size_t)BQ;
    const size_t per_thread = off_b + ATT_BK;
    size_t bytes;
    if (wf_mul_overflow(per_thread * sizeof(float), (size_t)nth, &bytes))
        return wf_fail(err, WF_ENOMEM, "attention: workspace size overflows");
    void *ws;
    if ((st = wk_backend_workspace(be, bytes, &ws, err)) != WF_OK) {
        wf_err_prefix(err, "attention: ");
        return st;
    }

    const float *qd = q->data, *kd = k->data, *vd = v->data;
    float *od = o->data;
    const int ld = (int)(NH * HD); /* stride between tokens, in floats */
    const int hd = (int)HD;
    const int64_t nqb = (Lq + BQ - 1) / BQ;
    const int64_t ntask = NH * nqb;
    const size_t bsz = bias ? wk_dtype_size(bias->dtype) : 0;

    const double macs = (double)Lq * (double)Lk * (double)(NH * HD);
    const int par = ntask > 1 && macs >= (double)ATT_PAR_MIN;
    /* small problems use at most two threads, but always inside a parallel region, so that
     * OpenBLAS never threads an sgemm itself (its splits would depend on nth) */
#pragma omp parallel for schedule(dynamic) num_threads(par ? nth : (nth > 1 ? 2 : 1))
    for (int64_t task = 0; task < ntask; task++) {
        const int64_t h = task / nqb, r0 = (task % nqb) * BQ;
        const int bq = (int)(Lq - r0 < BQ ? Lq - r0 : BQ);
        float *scr = (float *)ws + (size_t)omp_get_thread_num() * per_thread;
        float *S = scr, *O = scr + off_o, *m = scr + off_m, *l = scr + off_l;
        float *alpha = scr + off_a, *brow = scr + off_b;
        for (int r = 0; r < bq; r++) {
            m[r] = -INFINITY;
            l[r] = 0.0f;
        }
        memset(O, 0, (size_t)bq * hd16 * sizeof(float));
        const float *Qb = qd + ((size_t)r0 * NH + h) * HD;

        for (int64_t c0 = 0; c0 < Lkv; c0 += ATT_BK) {
            const int bk = (int)(Lkv - c0 < ATT_BK ? Lkv - c0 : ATT_BK);
            const float *Kb = kd + ((size_t)c0 * NH + h) * HD;
            const float *Vb = vd + ((size_t)c0 * NH + h) * HD;
            /* S[bq, bk] = scale * Qb . Kb^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, bk, hd, scale, Qb, ld, Kb,
                        ld, 0.0f, S, ATT_BK);
            for (int r = 0; r < bq; r++) {
                float *Sr = S + (size_t)r * ATT_BK;
                if (bias) {
                    const char *b0 = bias->data;
                    size_t at = bias_full ? ((size_t)h * Lq + r0 + r) * Lk + c0 : (size_t)c0;
                    const float *br;
                    if (bias->dtype == WK_F32) {
                        br = (const float *)(b0 + at * bsz);
                    } else {
                        wk_convert_to_f32(brow, b0 + at * bsz, bias->dtype, (size_t)bk);
                        br = brow;
                    }
                    for (int j = 0; j < bk; j++) Sr[j] += br[j];
                }
                /* online softmax: m' = max(m, max S), P = exp(S - m'), l = l e^(m - m') + sum P */
                float mnew = att_row_max(Sr, bk); /* NaN stays NaN below */
                if (mnew < m[r]) mnew = m[r];
                if (mnew == -INFINITY) { /* every key so far masked: contributes nothing */
                    memset(Sr, 0, (size_t)bk * sizeof(float));
                    alpha[r] = 1.0f;
                    continue;
                }
                alpha[r] = m[r] == -INFINITY ? 0.0f : expf(m[r] - mnew);
                m[r] = mnew;
                att_exp_shift(Sr, bk, mnew);
                l[r] = l[r] * alpha[r] + att_row_sum(Sr, bk);
            }
            for (int r = 0; r < bq; r++) {
                if (alpha[r] == 1.0f) continue;
                float *Or = O + (size_t)r * hd16;
                for (int d = 0; d < hd; d++) Or[d] *= alpha[r];
            }
            /* O[bq, HD] += P . Vb */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bq, hd, bk, 1.0f, S, ATT_BK,
                        Vb, ld, 1.0f, O, (int)hd16);
        }
        for (int r = 0; r < bq; r++) {
            float *dst = od + ((size_t)(r0 + r) * NH + h) * HD;
            const float *Or = O + (size_t)r * hd16;
            if (l[r] == 0.0f) { /* a fully masked row gives zeros (l >= 1 otherwise) */
                memset(dst, 0, (size_t)hd * sizeof(float));
            } else { /* NaN in l (from NaN inputs) propagates */
                const float inv = 1.0f / l[r];
                for (int d = 0; d < hd; d++) dst[d] = Or[d] * inv;
            }
        }
    }
    return WF_OK;
}
