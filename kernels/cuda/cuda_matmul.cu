/* cuda_matmul.cu: the CUDA backend's Linear layer, wk_cuda_matmul and wk_cuda_matmul_gelu
 * (y[M, N] = x[M, K] . w[N, K]^T + bias [then GELU-tanh], backend.h), through cuBLASLt.
 *
 * What it is: row-major y = x w^T is the column-major y^T[N, M] = w . x^T, i.e. cuBLASLt's TN
 * form: A = w (K x N column-major, ld K, transposed), B = x (K x M, ld K), C = D = y (N x M, ld
 * N), bias along D's rows (N). The inputs by backend precision and weight dtype:
 *   FP32 mode         f32 x f32, CUBLAS_COMPUTE_32F_PEDANTIC: "standard arithmetic and exact
 *                     internal storage" (cublas_api.h), which rules out TF32 and the BF16x9
 *                     emulation that cuBLAS 13 may pick for plain COMPUTE_32F (the
 *                     CUBLAS_EMULATION_STRATEGY variable); when no PEDANTIC algorithm exists,
 *                     COMPUTE_32F (whose contract still forbids TF32's narrower inputs). A w
 *                     stored narrower is widened into the workspace (exact), logged once.
 *   BF16, w bf16/f16  x rounded (RNE) to w's dtype in the workspace, fp32 accumulation, D f32.
 *   BF16, w f32       f32 GEMM as in FP32 mode (modules Diffusers keeps in fp32).
 *   BF16, w f8e4m3    cc >= 9.0: x quantised to e4m3 with a per-tensor scale 448/amax(x) (amax
 *                     reduced on the device, the scale written there), A scale 1, B scale
 *                     amax/448 times the weight's own scale (w->qscale of a scaled-fp8
 *                     checkpoint; 1 for a plain fp8 one, which the CPU reads as its plain
 *                     values), D f32, fast accum off. Below 9.0: w widened to bf16 (times its
 *                     scale), the bf16 path.
 * Epilogues: BIAS, GELU_BIAS, GELU (cuBLASLt's GELU is the tanh form); the bias is converted into
 * the workspace when its dtype or alignment is not the epilogue's (f32, or bf16 for fp8 with an
 * f32 output, whichever cuBLASLt takes). An algorithm is chosen by cublasLtMatmulAlgoGetHeuristic
 * once per (M, N, K, dtypes, compute type, epilogue, pointer alignments) and cached with its
 * descriptors (wk_table); a cached shape calls no heuristic. When cuBLASLt has no algorithm (or
 * WANFARM_CUDA_GEMM=simt), the tiled SIMT kernel of cuda_gemm_util.cuh runs it (x rounded as the
 * precision says, w widened exactly in the loads, f32 accumulation), logged once per shape.
 * What it is not: a batched or strided GEMM; bit-identical to the CPU (cuBLASLt's reduction order
 * differs from OpenBLAS's; test_backend_ops bounds the difference).
 * Tested by: tests/test_backend_ops.c (rows "matmul", "matmul_gelu": every weight dtype, odd
 * shapes, leading dims, both precisions, the SIMT fallback forced).
 */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_device.cuh"
#include "cuda_gemm_util.cuh"
#include "cuda_internal.h"

/* ---- the per-shape plan cache ---- */

typedef struct gemm_key {
    int64_t m, n, k;        /* cuBLASLt's: m = N, n = M */
    int32_t a_dt, b_dt;     /* cudaDataType of A (w side), B (x side) */
    int32_t w_dt;           /* the stored weight's wk_dtype (the SIMT kernel reads it) */
    int32_t x_round;        /* XR_* : how the SIMT kernel rounds x */
    int32_t compute;        /* first compute type tried */
    int32_t epi;            /* EPI_* */
    int32_t bias_dt;        /* the stored bias' wk_dtype, -1 none */
    uint32_t al_a, al_b, al_d, al_bias;
} gemm_key;

typedef struct gemm_plan {
    int simt;                       /* 1: the SIMT kernel runs this shape */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
    size_t ws;                      /* the algorithm's workspace (<= lt_ws_bytes) */
    int bias_cuda_dt;               /* the bias vector's cudaDataType in the epilogue */
} gemm_plan;

struct wk_cuda_gemm_cache {
    wk_table<gemm_key, gemm_plan> plans;
    float *dev;        /* device [4]: [0] = 1 (w scale), [1] = amax(x) bits, [2] = x dequant */
    int force_simt;    /* WANFARM_CUDA_GEMM=simt */
    int logged_widen;  /* "w widened to f32 in FP32 mode", once */
    int logged_fp8;    /* "fp8 weights below cc 9.0 run as bf16", once */
};

enum { EPI_NONE = 0, EPI_BIAS, EPI_GELU, EPI_GELU_BIAS };
enum { XR_NONE = 0, XR_BF16, XR_F16 }; /* x as it is, or rounded to bf16 / f16 */

static wf_status lt_fail(wf_err *err, cublasStatus_t s, const char *what) {
    return wf_fail(err, WF_ECUDA, "matmul: %s: %s: %s", what, cublasLtGetStatusName(s),
                   cublasLtGetStatusString(s));
}

/* the largest power of two (<= 256) dividing the address */
static uint32_t ptr_align(const void *p) {
    uintptr_t u = (uintptr_t)p;
    uint32_t a = 256;
    while (a > 1 && (u % a)) a >>= 1;
    return a;
}

static void plan_destroy(wk_cuda *c, gemm_plan *p) {
    (void)c;
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->ld) cublasLtMatrixLayoutDestroy(p->ld);
    memset(p, 0, sizeof *p);
}

extern "C" wf_status wk_cuda_gemm_init(wk_cuda *c, wf_err *err) {
    wk_cuda_gemm_cache *g = (wk_cuda_gemm_cache *)calloc(1, sizeof *g);
    if (!g) return wf_fail(err, WF_ENOMEM, "matmul: cannot allocate the GEMM plan cache");
    wf_status st = wk_cuda_malloc(c, 4 * sizeof(float), (void **)&g->dev, err);
    if (st) {
        free(g);
        return st;
    }
    const float init[4] = {1.0f, 0.0f, 1.0f, 0.0f};
    /* on the backend's (non-blocking) stream, then waited for: the legacy stream would not order
     * it before the first GEMM */
    cudaError_t e = cudaMemcpyAsync(g->dev, init, sizeof init, cudaMemcpyHostToDevice, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
        wk_cuda_free(c, g->dev);
        free(g);
        return wk_cuda_fail(err, e, "matmul: initialising the scale constants");
    }
    const char *env = getenv("WANFARM_CUDA_GEMM");
    g->force_simt = env && strcmp(env, "simt") == 0;
    c->gemm = g;
    return WF_OK;
}

extern "C" void wk_cuda_gemm_free(wk_cuda *c) {
    if (!c || !c->gemm) return;
    wk_table_free(&c->gemm->plans, plan_destroy, c);
    wk_cuda_free(c, c->gemm->dev);
    free(c->gemm);
    c->gemm = NULL;
}

/* ---- kernels ---- */

__device__ __forceinline__ float gelu_tanh_f(float v) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
}

/* x f32 -> bf16 / f16, round to nearest even */
template <class T> __device__ __forceinline__ T round_to(float v);
template <> __device__ __forceinline__ __nv_bfloat16 round_to(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ __half round_to(float v) { return __float2half_rn(v); }

template <class T> __global__ void k_round(T *__restrict__ out, const float *__restrict__ x, int64_t n) {
    WK_CUDA_FOR(i, n) out[i] = round_to<T>(x[i]);
}

/* any float dtype -> f32 or bf16 (exact for every narrower dtype into f32; into bf16 for fp8) */
template <class T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32(float v) { return __float2bfloat16_rn(v); }

/* qs: a scaled fp8 weight's scale (value = stored x qs, one f32 product), 1 otherwise */
template <class T> __global__ void k_widen(T *__restrict__ out, const void *__restrict__ w, int dt, int64_t n, float qs) {
    WK_CUDA_FOR(i, n) out[i] = from_f32<T>(__fmul_rn(wk_ld(w, dt, i), qs));
}

/* amax over the finite values of x (non-negative floats order like their bits) */
__global__ void k_amax(const float *__restrict__ x, int64_t n, unsigned *__restrict__ amax) {
    float m = 0.0f;
    WK_CUDA_FOR(i, n) {
        float a = fabsf(x[i]);
        if (a <= 3.402823466e38f) m = fmaxf(m, a);
    }
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if ((threadIdx.x & 31) == 0) atomicMax(amax, __float_as_uint(m));
}

/* q = e4m3(x * 448 / amax), saturating; dequant[0] = amax / 448 (1 when amax is 0) times wq,
 * the weight's own scale (scaled fp8; 1 otherwise): D = A_scale B_scale (w . q), so the weight's
 * scale rides on the B (x) side and the cached plan's pointers never change */
__global__ void k_quant_e4m3(__nv_fp8_storage_t *__restrict__ q, const float *__restrict__ x,
                             int64_t n, const unsigned *__restrict__ amax, float *__restrict__ dequant,
                             float wq) {
    const float a = __uint_as_float(*amax);
    const float s = a > 0.0f ? 448.0f / a : 1.0f;
    if (blockIdx.x == 0 && threadIdx.x == 0) *dequant = (1.0f / s) * wq;
    WK_CUDA_FOR(i, n) q[i] = __nv_cvt_float_to_fp8(x[i] * s, __NV_SATFINITE, __NV_E4M3);
}

/* K = 0: y = epilogue(bias or 0) */
__global__ void k_empty_sum(float *__restrict__ y, int64_t M, int64_t N, const void *bias, int bdt, int gelu) {
    WK_CUDA_FOR(i, M * N) {
        float v = bias ? wk_ld(bias, bdt, i % N) : 0.0f;
        y[i] = gelu ? gelu_tanh_f(v) : v;
    }
}

/* The SIMT fallback's loads and store (cuda_gemm_util.cuh). XR: how x is rounded; WD: w's dtype. */
template <int XR, int WD> struct simt_op {
    const float *x;
    const void *w;
    const void *bias;
    float *y;
    int64_t N, K;
    int bias_dt, gelu;
    float ws; /* a scaled fp8 weight's scale, 1 otherwise */
    typedef int64_t ARow;
    typedef int64_t ACol;
    __device__ ARow arow(int64_t m) const { return m * K; }
    __device__ ACol acol(int64_t k) const { return k; }
    __device__ float a(ARow r, ACol k) const {
        float v = x[r + k];
        if (XR == XR_BF16) return __bfloat162float(__float2bfloat16_rn(v));
        if (XR == XR_F16) return __half2float(__float2half_rn(v));
        return v;
    }
    __device__ float b(int64_t n, int64_t k) const {
        const float v = wk_ld(w, WD, n * K + k);
        return WD == WK_F8E4M3 ? __fmul_rn(v, ws) : v;
    }
    __device__ void store(int64_t m, int64_t n, float v) const {
        if (bias) v += wk_ld(bias, bias_dt, n);
        y[m * N + n] = gelu ? gelu_tanh_f(v) : v;
    }
};

template <int XR, int WD>
static void launch_simt(const float *x, const void *w, const void *bias, int bias_dt, float *y,
                        int64_t M, int64_t N, int64_t K, int gelu, float ws, cudaStream_t s) {
    simt_op<XR, WD> op = {x, w, bias, y, N, K, bias_dt, gelu, ws};
    wk_tile_gemm_kernel<<<wk_tile_grid(M, N), WK_TILE_THREADS, 0, s>>>(op, M, N, K);
}

/* One launch of the SIMT kernel for (x rounding, w dtype). */
static wf_status run_simt(wk_cuda *c, int xr, const wk_tensor *w, const float *x,
                          const wk_tensor *bias, float *y, int64_t M, int64_t N, int64_t K,
                          int gelu, wf_err *err) {
    const void *b = bias ? bias->data : NULL;
    const int bdt = bias ? (int)bias->dtype : 0;
    const float ws = w->qscale != 0.0f ? w->qscale : 1.0f;
    cudaStream_t s = c->stream;
    switch ((int)w->dtype * 4 + xr) {
    case (int)WK_F32 * 4 + (int)XR_NONE: launch_simt<XR_NONE, WK_F32>(x, w->data, b, bdt, y, M, N, K, gelu, ws, s); break;
    case (int)WK_BF16 * 4 + (int)XR_NONE: launch_simt<XR_NONE, WK_BF16>(x, w->data, b, bdt, y, M, N, K, gelu, ws, s); break;
    case (int)WK_F16 * 4 + (int)XR_NONE: launch_simt<XR_NONE, WK_F16>(x, w->data, b, bdt, y, M, N, K, gelu, ws, s); break;
    case (int)WK_F8E4M3 * 4 + (int)XR_NONE: launch_simt<XR_NONE, WK_F8E4M3>(x, w->data, b, bdt, y, M, N, K, gelu, ws, s); break;
    case (int)WK_BF16 * 4 + (int)XR_BF16: launch_simt<XR_BF16, WK_BF16>(x, w->data, b, bdt, y, M, N, K, gelu, ws, s); break;
    case (int)WK_F8E4M3 * 4 + (int)XR_BF16: launch_simt<XR_BF16, WK_F8E4M3>(x, w->data, b, bdt, y, M, N, K, gelu, ws, s); break;
    case (int)WK_F16 * 4 + (int)XR_F16: launch_simt<XR_F16, WK_F16>(x, w->data, b, bdt, y, M, N, K, gelu, ws, s); break;
    default: WF_ASSERT(!"matmul: no SIMT kernel for this (w dtype, x rounding)");
    }
    return wk_cuda_launched(err, "matmul (SIMT)");
}

/* ---- arguments ---- */

/* Checks devices, dtypes and shapes as the CPU does; on success sets M, N, K. */
static wf_status matmul_check(const char *op, const wk_tensor *y, const wk_tensor *x,
                              const wk_tensor *w, const wk_tensor *bias, int64_t *M, int64_t *N,
                              int64_t *K, wf_err *err) {
    char s1[96], s2[96], s3[96];
    wf_status st;
    if ((st = wk_cuda_check_act(x, op, "x", err)) || (st = wk_cuda_check_act(y, op, "y", err)) ||
        (st = wk_cuda_check_dev(w, op, "w", err)) ||
        (bias && (st = wk_cuda_check_dev(bias, op, "bias", err))))
        return st;
    if (w->dtype >= WK_DTYPE_COUNT || (bias && bias->dtype >= WK_DTYPE_COUNT))
        return wf_fail(err, WF_EUNSUPPORTED, "%s: w (%s) and bias must have float dtypes", op,
                       wk_dtype_name(w->dtype));
    if ((st = wk_check_ndim(w, 2, op, "w", err))) return st;
    if (w->qscale != 0.0f && (w->dtype != WK_F8E4M3 || !(w->qscale > 0.0f)))
        return wf_fail(err, WF_EINVAL, "%s: w (%s) has a scale %g; only an f8e4m3 weight takes "
                       "one, > 0", op, wk_dtype_name(w->dtype), (double)w->qscale);
    *N = w->shape[0];
    *K = w->shape[1];
    if (x->ndim < 1 || x->shape[x->ndim - 1] != *K)
        return wf_fail(err, WF_EINVAL, "%s: x has shape %s, expected last dim %lld (w %s)", op,
                       wk_tensor_shape_str(x, s1, sizeof s1), (long long)*K,
                       wk_tensor_shape_str(w, s2, sizeof s2));
    bool y_ok = y->ndim == x->ndim && y->shape[y->ndim - 1] == *N;
    for (int i = 0; y_ok && i < x->ndim - 1; i++) y_ok = y->shape[i] == x->shape[i];
    if (!y_ok)
        return wf_fail(err, WF_EINVAL, "%s: y has shape %s, expected [..., %lld] with x's "
                       "leading dims (x %s, w %s)", op, wk_tensor_shape_str(y, s1, sizeof s1),
                       (long long)*N, wk_tensor_shape_str(x, s2, sizeof s2),
                       wk_tensor_shape_str(w, s3, sizeof s3));
    if (bias && (bias->ndim != 1 || bias->shape[0] != *N))
        return wf_fail(err, WF_EINVAL, "%s: bias has shape %s, expected [%lld] (w %s)", op,
                       wk_tensor_shape_str(bias, s1, sizeof s1), (long long)*N,
                       wk_tensor_shape_str(w, s2, sizeof s2));
    *M = 1;
    for (int i = 0; i < x->ndim - 1; i++) *M *= x->shape[i];
    return WF_OK;
}

/* ---- the route: which inputs the GEMM takes ---- */

typedef struct gemm_route {
    cudaDataType_t a_dt, b_dt;  /* A (w side), B (x side) */
    int widen_w;                /* 1: w converted into the workspace as a_dt */
    int xr;                     /* the SIMT kernel's x rounding */
    int fp8;                    /* the e4m3 path (scales) */
    cublasComputeType_t compute;
} gemm_route;

static gemm_route choose_route(wk_backend *be, const wk_tensor *w) {
    wk_cuda *c = wk_cuda_of(be);
    gemm_route r = {CUDA_R_32F, CUDA_R_32F, w->dtype != WK_F32, XR_NONE, 0,
                    CUBLAS_COMPUTE_32F_PEDANTIC};
    if (be->precision != WK_PREC_BF16 || w->dtype == WK_F32) {
        r.widen_w = w->dtype != WK_F32;
        if (r.widen_w && !c->gemm->logged_widen) {
            c->gemm->logged_widen = 1;
            wk_cuda_log(c, "matmul: fp32 mode: %s weights are widened to f32 per call", wk_dtype_name(w->dtype));
        }
        return r;
    }
    r.compute = CUBLAS_COMPUTE_32F;
    r.widen_w = 0;
    if (w->dtype == WK_BF16) {
        r.a_dt = r.b_dt = CUDA_R_16BF;
        r.xr = XR_BF16;
    } else if (w->dtype == WK_F16) {
        r.a_dt = r.b_dt = CUDA_R_16F;
        r.xr = XR_F16;
    } else if (c->cc_major >= 9) { /* WK_F8E4M3 */
        r.a_dt = r.b_dt = CUDA_R_8F_E4M3;
        r.xr = XR_BF16;
        r.fp8 = 1;
    } else {
        r.a_dt = r.b_dt = CUDA_R_16BF;
        r.widen_w = 1;
        r.xr = XR_BF16;
        if (!c->gemm->logged_fp8) {
            c->gemm->logged_fp8 = 1;
            wk_cuda_log(c, "matmul: fp8 weights on cc %d.%d (< 9.0) are widened to bf16 per call",
                        c->cc_major, c->cc_minor);
        }
    }
    return r;
}

static size_t dt_size(cudaDataType_t t) {
    return t == CUDA_R_32F ? 4 : t == CUDA_R_8F_E4M3 ? 1 : 2;
}

/* ---- plans ---- */

/* The pointers of one call, as cuBLASLt sees them. */
typedef struct gemm_ptrs {
    const void *a, *b, *bias; /* bias: what the epilogue reads (NULL: no bias) */
    float *d;
} gemm_ptrs;

static cublasLtEpilogue_t lt_epilogue(int epi) {
    switch (epi) {
    case EPI_BIAS: return CUBLASLT_EPILOGUE_BIAS;
    case EPI_GELU: return CUBLASLT_EPILOGUE_GELU;
    case EPI_GELU_BIAS: return CUBLASLT_EPILOGUE_GELU_BIAS;
    default: return CUBLASLT_EPILOGUE_DEFAULT;
    }
}

/* Descriptors for one (compute type, bias type) candidate. */
static cublasStatus_t plan_describe(wk_cuda *c, const gemm_key *k, cublasComputeType_t compute,
                                    int bias_cdt, const gemm_ptrs *p, int fp8, gemm_plan *pl) {
    cublasStatus_t s;
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const cublasLtEpilogue_t epi = lt_epilogue(k->epi);
    if ((s = cublasLtMatmulDescCreate(&pl->desc, compute, CUDA_R_32F)) ||
        (s = cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta)) ||
        (s = cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb)) ||
        (s = cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi)))
        return s;
    if (p->bias) {
        int32_t bdt = bias_cdt;
        if ((s = cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bdt, sizeof bdt)) ||
            (s = cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p->bias, sizeof p->bias)))
            return s;
    }
    if (fp8) {
        const float *one = c->gemm->dev, *xs = c->gemm->dev + 2;
        if ((s = cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &one, sizeof one)) ||
            (s = cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xs, sizeof xs)))
            return s;
    }
    /* A = w: K x N (ld K), transposed; B = x: K x M (ld K); D = y: N x M (ld N) */
    if ((s = cublasLtMatrixLayoutCreate(&pl->la, (cudaDataType_t)k->a_dt, (uint64_t)k->k, (uint64_t)k->m, k->k)) ||
        (s = cublasLtMatrixLayoutCreate(&pl->lb, (cudaDataType_t)k->b_dt, (uint64_t)k->k, (uint64_t)k->n, k->k)) ||
        (s = cublasLtMatrixLayoutCreate(&pl->ld, CUDA_R_32F, (uint64_t)k->m, (uint64_t)k->n, k->m)))
        return s;
    pl->bias_cuda_dt = bias_cdt;
    return CUBLAS_STATUS_SUCCESS;
}

/* The heuristic's first algorithm for a described plan; NOT_SUPPORTED when there is none. */
static cublasStatus_t plan_heuristic(wk_cuda *c, const gemm_key *k, gemm_plan *pl) {
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    int n = 0;
    const uint64_t wsb = c->lt_ws_bytes;
    cublasStatus_t s = cublasLtMatmulPreferenceCreate(&pref);
    if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
    if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &k->al_a, sizeof k->al_a);
    if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &k->al_b, sizeof k->al_b);
    if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &k->al_d, sizeof k->al_d);
    if (!s) s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &k->al_d, sizeof k->al_d);
    if (!s) s = cublasLtMatmulAlgoGetHeuristic((cublasLtHandle_t)c->lt, pl->desc, pl->la, pl->lb, pl->ld, pl->ld, pref, 1, &res, &n);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (!s && n < 1) s = CUBLAS_STATUS_NOT_SUPPORTED;
    if (!s) {
        pl->algo = res.algo;
        pl->ws = res.workspaceSize;
    }
    return s;
}

static const char *cuda_dt_name(int t) {
    return t == CUDA_R_32F ? "f32" : t == CUDA_R_16BF ? "bf16" : t == CUDA_R_16F ? "f16" : "e4m3";
}

static const char *epi_name(int e) {
    return e == EPI_BIAS ? "BIAS" : e == EPI_GELU ? "GELU" : e == EPI_GELU_BIAS ? "GELU_BIAS" : "none";
}

/* A plan for key: the first (compute type, bias type) candidate cuBLASLt has an algorithm for,
 * or the SIMT kernel. bias_by_cdt[i] is the bias pointer the call passes for candidate i. */
static wf_status plan_create(wk_cuda *c, const gemm_key *k, const gemm_route *r, gemm_ptrs p,
                             const void *const bias_by_cdt[2], gemm_plan *pl, wf_err *err) {
    const cublasComputeType_t computes[2] = {r->compute, CUBLAS_COMPUTE_32F};
    const int ncomp = r->compute == CUBLAS_COMPUTE_32F_PEDANTIC ? 2 : 1;
    const int bias_cdts[2] = {r->fp8 ? CUDA_R_16BF : CUDA_R_32F, CUDA_R_32F};
    const int nbias = p.bias && r->fp8 ? 2 : 1;
    cublasStatus_t last = CUBLAS_STATUS_NOT_SUPPORTED;
    for (int ci = 0; ci < ncomp && !c->gemm->force_simt; ci++)
        for (int bi = 0; bi < nbias; bi++) {
            if (p.bias) p.bias = bias_by_cdt[bi];
            cublasStatus_t s = plan_describe(c, k, computes[ci], bias_cdts[bi], &p, r->fp8, pl);
            if (s == CUBLAS_STATUS_ALLOC_FAILED || s == CUBLAS_STATUS_NOT_INITIALIZED) {
                plan_destroy(c, pl);
                return lt_fail(err, s, "creating the descriptors");
            }
            if (!s) s = plan_heuristic(c, k, pl);
            if (!s) {
                wk_cuda_log(c, "matmul: M=%lld N=%lld K=%lld, w %s, GEMM inputs %s, %s, epilogue %s: "
                            "cuBLASLt (workspace %zu)", (long long)k->n, (long long)k->m, (long long)k->k,
                            wk_dtype_name((wk_dtype)k->w_dt), cuda_dt_name(k->b_dt),
                            computes[ci] == CUBLAS_COMPUTE_32F_PEDANTIC ? "COMPUTE_32F_PEDANTIC" : "COMPUTE_32F",
                            epi_name(k->epi), pl->ws);
                return WF_OK;
            }
            last = s;
            plan_destroy(c, pl);
        }
    pl->simt = 1;
    wk_cuda_log(c, "matmul: M=%lld N=%lld K=%lld, w %s: SIMT kernel (%s)", (long long)k->n,
                (long long)k->m, (long long)k->k, wk_dtype_name((wk_dtype)k->w_dt),
                c->gemm->force_simt ? "WANFARM_CUDA_GEMM=simt" : cublasLtGetStatusName(last));
    return WF_OK;
}

/* ---- the op ---- */

/* Workspace parts of one call, 256-byte aligned offsets. */
typedef struct gemm_ws {
    size_t x_off, w_off, b_off, total;
} gemm_ws;

static size_t up256(size_t v) { return (v + 255) / 256 * 256; }

static gemm_ws ws_layout(const gemm_route *r, int64_t M, int64_t N, int64_t K, int has_bias) {
    gemm_ws l;
    l.x_off = 0;
    l.w_off = up256(r->b_dt != CUDA_R_32F ? (size_t)(M * K) * dt_size(r->b_dt) : 0);
    l.b_off = l.w_off + up256(r->widen_w ? (size_t)(N * K) * dt_size(r->a_dt) : 0);
    l.total = l.b_off + (has_bias ? (size_t)N * 4 : 0);
    return l;
}

/* The bias pointer the epilogue reads for bias type cdt: the tensor itself when it already has
 * that type and a 16-byte alignment, else its conversion in the workspace slot. */
static const void *bias_ptr(const wk_tensor *bias, int cdt, void *slot) {
    if (!bias) return NULL;
    int same = (cdt == CUDA_R_32F && bias->dtype == WK_F32) || (cdt == CUDA_R_16BF && bias->dtype == WK_BF16);
    return same && ptr_align(bias->data) >= 16 ? bias->data : slot;
}

/* Converts the inputs the plan reads (x, w, bias) into the workspace, in stream order. */
static wf_status prepare_inputs(wk_cuda *c, const gemm_route *r, const gemm_plan *pl,
                                const gemm_ptrs *p, const wk_tensor *x, const wk_tensor *w,
                                const wk_tensor *bias, int64_t M, int64_t N, int64_t K, wf_err *err) {
    cudaStream_t s = c->stream;
    const int64_t nx = M * K, nw = N * K;
    const float qs = w->qscale != 0.0f ? w->qscale : 1.0f;
    if (r->widen_w && r->a_dt == CUDA_R_32F)
        k_widen<float><<<wk_cuda_blocks(nw), WK_CUDA_THREADS, 0, s>>>((float *)p->a, w->data, w->dtype, nw, qs);
    else if (r->widen_w)
        k_widen<__nv_bfloat16><<<wk_cuda_blocks(nw), WK_CUDA_THREADS, 0, s>>>((__nv_bfloat16 *)p->a, w->data, w->dtype, nw, qs);
    if (r->fp8) {
        unsigned *amax = (unsigned *)(c->gemm->dev + 1);
        cudaError_t e = cudaMemsetAsync(amax, 0, sizeof *amax, s);
        if (e != cudaSuccess) return wk_cuda_fail(err, e, "matmul: clearing amax");
        /* few blocks (grid-stride): one same-address atomic per warp, ~8k of them, not ~M*K/32 */
        const unsigned nb = wk_cuda_blocks(nx) < 1024u ? wk_cuda_blocks(nx) : 1024u;
        k_amax<<<nb, WK_CUDA_THREADS, 0, s>>>((const float *)x->data, nx, amax);
        k_quant_e4m3<<<wk_cuda_blocks(nx), WK_CUDA_THREADS, 0, s>>>(
            (__nv_fp8_storage_t *)p->b, (const float *)x->data, nx, amax, c->gemm->dev + 2, qs);
    } else if (r->b_dt == CUDA_R_16BF) {
        k_round<__nv_bfloat16><<<wk_cuda_blocks(nx), WK_CUDA_THREADS, 0, s>>>((__nv_bfloat16 *)p->b, (const float *)x->data, nx);
    } else if (r->b_dt == CUDA_R_16F) {
        k_round<__half><<<wk_cuda_blocks(nx), WK_CUDA_THREADS, 0, s>>>((__half *)p->b, (const float *)x->data, nx);
    }
    if (bias && p->bias != bias->data) {
        if (pl->bias_cuda_dt == CUDA_R_16BF)
            k_widen<__nv_bfloat16><<<wk_cuda_blocks(N), WK_CUDA_THREADS, 0, s>>>((__nv_bfloat16 *)p->bias, bias->data, bias->dtype, N, 1.0f);
        else
            k_widen<float><<<wk_cuda_blocks(N), WK_CUDA_THREADS, 0, s>>>((float *)p->bias, bias->data, bias->dtype, N, 1.0f);
    }
    return wk_cuda_launched(err, "matmul (input conversion)");
}

/* The plan for this call's key, created on first use. */
static wf_status plan_get(wk_cuda *c, const gemm_key *k, const gemm_route *r, const gemm_ptrs *p,
                          const void *const bias_by_cdt[2], gemm_plan **out, wf_err *err) {
    gemm_plan *pl = wk_table_find(&c->gemm->plans, k);
    if (pl) {
        *out = pl;
        return WF_OK;
    }
    gemm_plan fresh;
    memset(&fresh, 0, sizeof fresh);
    wf_status st = plan_create(c, k, r, *p, bias_by_cdt, &fresh, err);
    if (st) return st;
    pl = wk_table_insert(&c->gemm->plans, k);
    if (!pl) {
        plan_destroy(c, &fresh);
        return wf_fail(err, WF_ENOMEM, "matmul: cannot grow the GEMM plan cache");
    }
    *pl = fresh;
    *out = pl;
    return WF_OK;
}

static gemm_key make_key(const gemm_route *r, const wk_tensor *w, const wk_tensor *bias,
                         const gemm_ptrs *p, int64_t M, int64_t N, int64_t K, int gelu) {
    gemm_key k;
    memset(&k, 0, sizeof k); /* padding too: keys are hashed as bytes */
    k.m = N;
    k.n = M;
    k.k = K;
    k.a_dt = r->a_dt;
    k.b_dt = r->b_dt;
    k.w_dt = w->dtype;
    k.x_round = r->xr;
    k.compute = r->compute;
    k.epi = gelu ? (bias ? EPI_GELU_BIAS : EPI_GELU) : (bias ? EPI_BIAS : EPI_NONE);
    k.bias_dt = bias ? (int32_t)bias->dtype : -1;
    k.al_a = ptr_align(p->a);
    k.al_b = ptr_align(p->b);
    k.al_d = ptr_align(p->d);
    k.al_bias = bias ? ptr_align(bias->data) : 0;
    return k;
}

static wf_status matmul_run(wk_backend *be, const char *op, wk_tensor *y, const wk_tensor *x,
                            const wk_tensor *w, const wk_tensor *bias, int gelu, wf_err *err) {
    wk_cuda *c = wk_cuda_of(be);
    int64_t M = 0, N = 0, K = 0;
    wf_status st = matmul_check(op, y, x, w, bias, &M, &N, &K, err);
    if (st || M == 0 || N == 0) return st;
    if (K == 0) {
        k_empty_sum<<<wk_cuda_blocks(M * N), WK_CUDA_THREADS, 0, c->stream>>>(
            (float *)y->data, M, N, bias ? bias->data : NULL, bias ? (int)bias->dtype : 0, gelu);
        return wk_cuda_launched(err, op);
    }
    const gemm_route r = choose_route(be, w);
    const gemm_ws l = ws_layout(&r, M, N, K, bias != NULL);
    unsigned char *ws = NULL;
    if (l.total && (st = wk_backend_workspace(be, l.total, (void **)&ws, err))) return st;
    gemm_ptrs p = {r.widen_w ? ws + l.w_off : w->data,
                   r.b_dt != CUDA_R_32F ? ws + l.x_off : x->data, NULL, (float *)y->data};
    const void *bias_by_cdt[2] = {NULL, NULL};
    if (bias) {
        bias_by_cdt[0] = bias_ptr(bias, r.fp8 ? CUDA_R_16BF : CUDA_R_32F, ws + l.b_off);
        bias_by_cdt[1] = bias_ptr(bias, CUDA_R_32F, ws + l.b_off);
        p.bias = bias_by_cdt[0];
    }
    const gemm_key k = make_key(&r, w, bias, &p, M, N, K, gelu);
    gemm_plan *pl = NULL;
    if ((st = plan_get(c, &k, &r, &p, bias_by_cdt, &pl, err))) return st;
    if (pl->simt)
        return run_simt(c, r.xr, w, (const float *)x->data, bias, (float *)y->data, M, N, K, gelu, err);
    if (bias) {
        p.bias = bias_ptr(bias, pl->bias_cuda_dt, ws + l.b_off);
        cublasStatus_t s = cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias, sizeof p.bias);
        if (s) return lt_fail(err, s, "setting the bias pointer");
    }
    if ((st = prepare_inputs(c, &r, pl, &p, x, w, bias, M, N, K, err))) return st;
    const float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t s = cublasLtMatmul((cublasLtHandle_t)c->lt, pl->desc, &alpha, p.a, pl->la, p.b, pl->lb,
                                      &beta, p.d, pl->ld, p.d, pl->ld, &pl->algo, c->lt_ws, pl->ws, c->stream);
    return s ? lt_fail(err, s, "cublasLtMatmul") : WF_OK;
}

extern "C" wf_status wk_cuda_matmul(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                    const wk_tensor *w, const wk_tensor *bias, wf_err *err) {
    return matmul_run(be, "matmul", y, x, w, bias, 0, err);
}

extern "C" wf_status wk_cuda_matmul_gelu(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                         const wk_tensor *w, const wk_tensor *bias, wf_err *err) {
    return matmul_run(be, "matmul_gelu", y, x, w, bias, 1, err);
}
