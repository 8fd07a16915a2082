/* matmul.c: the CPU reference of the Linear layer, y[M, N] = x[M, K] . w[N, K]^T + bias[N].
 *
 * What it is: the op behind every nn.Linear of the DiT and the text encoder (see backend.h).
 * f32 weights go to OpenBLAS sgemm as they are. Narrow weights (bf16, f16, fp8-e4m3) are widened
 * blockwise: MATMUL_BLOCK_N rows of w at a time into the backend workspace, then the GEMM of that
 * block writes columns [n0, n0 + nb) of y (ldc = N). The widening is exact, so the result equals
 * an f32 GEMM with the rounded weights; the whole weight is never copied. A scaled fp8 weight
 * (w->qscale, tensor.h) is widened then multiplied by its scale in f32, as torch's
 * w.float() * scale_weight. The bias, of any dtype, is added afterwards.
 * Threads: a GEMM is cut into tasks of whole 48-row blocks of x (or whole 384-row blocks of w, when
 * w is the larger operand), each one single-threaded sgemm inside an OpenMP loop (the OpenMP build
 * of OpenBLAS runs a call made inside a parallel region on one thread). The cuts fall on multiples
 * of every BLAS register tile (4, 6, 8, 16, 24 rows; 16, 24, 32, 64 columns), so each element of y
 * is computed by the same kernel, in the same order, whatever the thread count: a run gives the
 * same bits on 1 or 64 threads, and under Ulysses (whose ranks hold multiples of the row quantum, 48 tokens) the
 * same bits as one rank. OpenBLAS's own threading splits at places that depend on the thread
 * count, which changes the last bits.
 * What it is not: a tuned kernel (no packing of our own, no fused dequantising GEMM).
 * Tested by: tests/test_ops.c, rows "matmul" in tests/ops_basic.c (every weight dtype, odd shapes,
 * leading dims, a shape that crosses block boundaries).
 */
#include <cblas.h>
#include <limits.h>

#include "cpu_ops.h"

/* Rows of w widened per block: 384 rows of a K = 13824 weight is 20 MiB of f32. A multiple of
 * MATMUL_COLS. */
#define MATMUL_BLOCK_N 384
/* Task cuts: rows of x (the backend's row quantum), rows of w. */
#define MATMUL_ROWS WK_CPU_ROW_QUANTUM
#define MATMUL_COLS 384
/* Below this many elements a loop runs on one thread: the fork costs more than it saves. */
#define MATMUL_PAR_MIN 32768

void wk_cpu_sgemm_nt(int nth, int64_t M, int64_t nb, int64_t K, const float *x, const float *w,
                     float beta, float *y, int64_t ldy) {
    /* cut the larger operand: x by rows when it is at least as big as w, else w by rows */
    const bool by_rows = M >= nb;
    const int64_t len = by_rows ? M : nb, q = by_rows ? MATMUL_ROWS : MATMUL_COLS;
    int64_t per = (len + nth - 1) / nth;
    per = (per + q - 1) / q * q;
    const int64_t ntask = (len + per - 1) / per;
    /* even one task runs inside the parallel region: there OpenBLAS stays on one thread */
#pragma omp parallel for num_threads(nth) schedule(static, 1) if (nth > 1)
    for (int64_t t = 0; t < ntask; t++) {
        const int64_t a = t * per, n = len - a < per ? len - a : per;
        if (by_rows)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)nb, (int)K, 1.0f,
                        x + a * K, (int)K, w, (int)K, beta, y + a * ldy, (int)ldy);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)n, (int)K, 1.0f, x,
                        (int)K, w + a * K, (int)K, beta, y + a, (int)ldy);
    }
}

/* Checks dtypes and shapes; on success sets M, N, K. */
static wf_status matmul_check(const wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                              const wk_tensor *bias, int64_t *M, int64_t *N, int64_t *K,
                              wf_err *err) {
    char s1[96], s2[96], s3[96];
    wf_status st;
    if ((st = wk_check_dtype(x, WK_F32, "matmul", "x", err))) return st;
    if ((st = wk_check_dtype(y, WK_F32, "matmul", "y", err))) return st;
    WF_ASSERT(w->dtype < WK_DTYPE_COUNT && (!bias || bias->dtype < WK_DTYPE_COUNT));
    if ((st = wk_check_ndim(w, 2, "matmul", "w", err))) return st;
    if (w->qscale != 0.0f && (w->dtype != WK_F8E4M3 || !(w->qscale > 0.0f)))
        return wf_fail(err, WF_EINVAL, "matmul: w (%s) has a scale %g; only an f8e4m3 weight "
                       "takes one, > 0", wk_dtype_name(w->dtype), (double)w->qscale);
    *N = w->shape[0];
    *K = w->shape[1];
    if (x->ndim < 1)
        return wf_fail(err, WF_EINVAL, "matmul: x has shape %s, expected [..., %lld]",
                       wk_tensor_shape_str(x, s1, sizeof s1), (long long)*K);
    if (x->shape[x->ndim - 1] != *K)
        return wf_fail(err, WF_EINVAL, "matmul: x has shape %s, expected last dim %lld (w %s)",
                       wk_tensor_shape_str(x, s1, sizeof s1), (long long)*K,
                       wk_tensor_shape_str(w, s2, sizeof s2));
    bool y_ok = y->ndim == x->ndim && y->shape[y->ndim - 1] == *N;
    for (int i = 0; y_ok && i < x->ndim - 1; i++) y_ok = y->shape[i] == x->shape[i];
    if (!y_ok)
        return wf_fail(err, WF_EINVAL, "matmul: y has shape %s, expected [..., %lld] with x's "
                       "leading dims (x %s, w %s)", wk_tensor_shape_str(y, s1, sizeof s1),
                       (long long)*N, wk_tensor_shape_str(x, s2, sizeof s2),
                       wk_tensor_shape_str(w, s3, sizeof s3));
    if (bias && (bias->ndim != 1 || bias->shape[0] != *N))
        return wf_fail(err, WF_EINVAL, "matmul: bias has shape %s, expected [%lld] (w %s)",
                       wk_tensor_shape_str(bias, s1, sizeof s1), (long long)*N,
                       wk_tensor_shape_str(w, s2, sizeof s2));
    *M = 1; /* the product of x's leading dims (also right when K = 0) */
    for (int i = 0; i < x->ndim - 1; i++) *M *= x->shape[i];
    if (*M > INT_MAX || *N > INT_MAX || *K > INT_MAX)
        return wf_fail(err, WF_EUNSUPPORTED,
                       "matmul: M=%lld N=%lld K=%lld exceed the 32-bit BLAS interface",
                       (long long)*M, (long long)*N, (long long)*K);
    return WF_OK;
}

wf_status wk_cpu_matmul(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *bias, wf_err *err) {
    int64_t M = 0, N = 0, K = 0;
    wf_status st = matmul_check(y, x, w, bias, &M, &N, &K, err);
    if (st) return st;
    if (M == 0 || N == 0) return WF_OK;
    float *yd = y->data;
    const float *xd = x->data;

    /* Workspace: one widened block of w, then (for a narrow bias) the widened bias. */
    int64_t nb_max = w->dtype == WK_F32 ? 0 : (N < MATMUL_BLOCK_N ? N : MATMUL_BLOCK_N);
    size_t ws_floats = (size_t)(nb_max * K) + (bias && bias->dtype != WK_F32 ? (size_t)N : 0);
    float *ws = NULL;
    if (ws_floats > 0 && (st = wk_backend_workspace(be, ws_floats * sizeof(float), (void **)&ws,
                                                    err)))
        return st;

    if (K == 0) { /* an empty sum: y = 0 (+ bias below); BLAS would reject lda = 0 */
        int64_t n = M * N;
#pragma omp parallel for num_threads(be->nthreads) if (n >= MATMUL_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) yd[i] = 0.0f;
    } else if (w->dtype == WK_F32) {
        wk_cpu_sgemm_nt(be->nthreads, M, N, K, xd, (const float *)w->data, 0.0f, yd, N);
    } else {
        const unsigned char *wb = w->data;
        size_t esz = wk_dtype_size(w->dtype);
        for (int64_t n0 = 0; n0 < N; n0 += nb_max) {
            int64_t nb = N - n0 < nb_max ? N - n0 : nb_max;
            /* widen rows [n0, n0 + nb) of w: wf[r, :] = w[n0 + r, :] */
            const float qs = w->qscale; /* scaled fp8: value = stored x qs, rounded to f32 */
#pragma omp parallel for num_threads(be->nthreads) if (nb * K >= MATMUL_PAR_MIN) schedule(static)
            for (int64_t r = 0; r < nb; r++) {
                float *row = ws + r * K;
                wk_convert_to_f32(row, wb + (size_t)((n0 + r) * K) * esz, w->dtype, (size_t)K);
                if (qs != 0.0f)
                    for (int64_t k = 0; k < K; k++) row[k] *= qs;
            }
            /* y[:, n0:n0+nb] = x . wf^T */
            wk_cpu_sgemm_nt(be->nthreads, M, nb, K, xd, ws, 0.0f, yd + n0, N);
        }
    }

    if (bias) {
        const float *bd = bias->data;
        if (bias->dtype != WK_F32) {
            float *bw = ws + nb_max * K;
            wk_convert_to_f32(bw, bias->data, bias->dtype, (size_t)N);
            bd = bw;
        }
        int64_t n = M * N;
#pragma omp parallel for num_threads(be->nthreads) if (n >= MATMUL_PAR_MIN) schedule(static)
        for (int64_t m = 0; m < M; m++) {
            float *row = yd + m * N;
            for (int64_t j = 0; j < N; j++) row[j] += bd[j];
        }
    }
    return WF_OK;
}
