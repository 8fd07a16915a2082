/* cuda_conv.cu: the CUDA backend's channels-last convolutions, wk_cuda_conv3d and wk_cuda_conv2d
 * (backend.h; the same arguments, semantics and error messages as kernels/cpu/conv.c).
 *
 * What it is: cuDNN's graph (backend) API. x is described as [N, C, T, H, W] (conv2d: [N, C, H,
 * W]) with NDHWC strides, the filter as [Cout, Cin, kT, kH, kW] with channels-last (KTRSC)
 * strides, so the PyTorch-layout weight is permuted, and widened to f32 (FP32 mode) or rounded to
 * bf16 (BF16 mode), once into a per-weight device cache keyed by (pointer, dtype, shape,
 * precision). A graph is one CONVOLUTION_FORWARD (compute f32, cross-correlation, PRE_PADDINGS /
 * POST_PADDINGS as given, so the causal (2, 0) time padding is native) and, with a bias, a
 * pointwise ADD of the bias [1, Cout, 1, 1, 1] on the virtual f32 conv output. Variants are tried
 * in order until one gives a plan: padding native or (when asymmetric) materialised into a
 * staged copy of x; output fused-bias f32, plain f32 (bias by our kernel) or, in BF16 mode,
 * bf16 converted to f32 with the bias by our kernel. A plan comes from CUDNN_HEUR_MODE_A (then
 * MODE_FALLBACK), walking the engine configs until one finalizes; plan and workspace size are
 * cached per shape. FP32 mode has no TF32: the backend API has no math-type attribute, so every
 * engine whose numerical notes say TENSOR_CORE (f32 on tensor cores is TF32), DOWN_CONVERT_INPUTS,
 * REDUCED_PRECISION_REDUCTION, FFT or WINOGRAD is skipped (the filter PyTorch applies when TF32
 * is off). BF16 mode: x rounded to bf16 into the workspace, f32 accumulation, y f32.
 * When cuDNN is missing, refuses every variant, or WANFARM_CUDA_CONV=own: our implicit-GEMM
 * kernel (cuda_gemm_util.cuh; any kernel size, stride, padding; f32 accumulation; x rounded to
 * bf16 in BF16 mode), logged once per shape.
 * What it is not: grouped, dilated or transposed convolution; in place (y must not overlap x).
 * The cache trusts that a weight pointer keeps its contents while the backend lives (weights are
 * uploaded once per model); wk_cuda_conv_forget drops the entries inside freed memory.
 * Tested by: tests/test_backend_ops.c (rows "conv3d", "conv2d": odd shapes, strides, causal
 * padding, every weight dtype, both precisions, the own kernel forced).
 */
#include <cuda_runtime.h>
#include <cudnn_graph.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_device.cuh"
#include "cuda_gemm_util.cuh"
#include "cuda_internal.h"

/* The handle attributes are marked deprecated in cuDNN 9's headers (for the DEVICEPROP route)
 * but remain the documented way to bind a graph and a plan to a handle; named by value so that
 * -Werror builds take them. */
#define ATTR_OPGRAPH_HANDLE ((cudnnBackendAttributeName_t)800) /* CUDNN_ATTR_OPERATIONGRAPH_HANDLE */
#define ATTR_PLAN_HANDLE ((cudnnBackendAttributeName_t)400)    /* CUDNN_ATTR_EXECUTION_PLAN_HANDLE */

#define CONV_MAX_CFGS 24                 /* engine configs tried per heuristic mode */
#define CONV_MAX_WS ((int64_t)1 << 30)   /* skip plans wanting more workspace than 1 GiB */
#define CONV_MAX_DESC 16

enum { UID_X = 1, UID_W, UID_Y, UID_B, UID_V };
enum { OUT_FUSED = 0, OUT_F32, OUT_BF16 }; /* bias in the graph / f32 out, own bias / bf16 out */

typedef struct conv_geom {
    int nd;                     /* 3: conv3d, 2: conv2d (T = kT = 1, no time padding) */
    int64_t N, T, H, W, Cin;    /* x [N, T, H, W, Cin] */
    int64_t Cout, kT, kH, kW;   /* w [Cout, Cin, kT, kH, kW] */
    int64_t s[3], pad[3][2];    /* per axis t, h, w */
    int64_t To, Ho, Wo;         /* y [N, To, Ho, Wo, Cout] */
    int64_t K;                  /* kT*kH*kW*Cin */
} conv_geom;

/* ---- caches ---- */

typedef struct wkey {
    const void *ptr;
    int32_t dtype, bf16;        /* stored dtype; 1: packed as bf16, 0: as f32 */
    int64_t shape[5];
} wkey;
typedef struct wval {
    void *dev;                  /* Wp [Cout, kT, kH, kW, Cin], f32 or bf16 */
    size_t bytes;
} wval;

typedef struct pkey {
    conv_geom g;
    int32_t bf16, has_bias, al_x, al_y;
} pkey;
typedef struct pval {
    int own;                    /* 1: our kernel runs this shape */
    int out_mode, materialize;  /* the variant that gave the plan */
    int64_t mpad[3][2];         /* padding materialised into the staged x (0 when native) */
    int64_t ws;                 /* the plan's workspace bytes */
    cudnnBackendDescriptor_t d[CONV_MAX_DESC]; /* d[0] = the plan; all kept alive together */
    int nd;
} pval;

struct wk_cuda_conv_cache {
    wk_table<wkey, wval> weights;
    wk_table<pkey, pval> plans;
    int force_own;              /* WANFARM_CUDA_CONV=own */
};

static void wval_destroy(wk_cuda *c, wval *v) { wk_cuda_free(c, v->dev); }
static void pval_destroy(wk_cuda *c, pval *v) {
    (void)c;
    for (int i = v->nd - 1; i >= 0; i--) cudnnBackendDestroyDescriptor(v->d[i]);
    v->nd = 0;
}

extern "C" wf_status wk_cuda_conv_init(wk_cuda *c, wf_err *err) {
    wk_cuda_conv_cache *cc = (wk_cuda_conv_cache *)calloc(1, sizeof *cc);
    if (!cc) return wf_fail(err, WF_ENOMEM, "conv: cannot allocate the convolution caches");
    const char *env = getenv("WANFARM_CUDA_CONV");
    cc->force_own = env && strcmp(env, "own") == 0;
    c->conv = cc;
    return WF_OK;
}

extern "C" void wk_cuda_conv_free(wk_cuda *c) {
    if (!c || !c->conv) return;
    wk_table_free(&c->conv->plans, pval_destroy, c);
    wk_table_free(&c->conv->weights, wval_destroy, c);
    free(c->conv);
    c->conv = NULL;
}

/* Drops the packed weights whose source lies in [p, p + bytes) (memory being freed). */
extern "C" void wk_cuda_conv_forget(wk_cuda *c, const void *p, size_t bytes) {
    if (!c || !c->conv || !p) return;
    wk_table<wkey, wval> *t = &c->conv->weights;
    const uintptr_t lo = (uintptr_t)p, hi = lo + bytes;
    int hit = 0;
    for (size_t i = 0; i < t->cap; i++)
        if (t->s[i].used && (uintptr_t)t->s[i].key.ptr >= lo && (uintptr_t)t->s[i].key.ptr < hi)
            hit = 1;
    if (!hit) return;
    wk_table<wkey, wval> keep = {NULL, 0, 0};
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->s[i].used) continue;
        uintptr_t a = (uintptr_t)t->s[i].key.ptr;
        wval *nv = a >= lo && a < hi ? NULL : wk_table_insert(&keep, &t->s[i].key);
        if (nv) *nv = t->s[i].val;
        else wk_cuda_free(c, t->s[i].val.dev); /* dropped (or no host memory: dropped too) */
    }
    free(t->s);
    *t = keep;
}

/* ---- kernels ---- */

__device__ __forceinline__ float bf16_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

/* Wp[co][kk*Cin + ci] = w[co][ci][kk] (kk = (kt*kH + kh)*kW + kw), as f32 or bf16 (RNE) */
__global__ void k_pack_filter(void *__restrict__ out, int bf16, const void *__restrict__ w, int dt,
                              int64_t Cout, int64_t Cin, int64_t KK) {
    const int64_t per = KK * Cin;
    WK_CUDA_FOR(o, Cout * per) {
        const int64_t co = o / per, r = o - co * per, kk = r / Cin, ci = r - kk * Cin;
        const float v = wk_ld(w, dt, (co * Cin + ci) * KK + kk);
        if (bf16) ((uint16_t *)out)[o] = wk_dev_f32_to_bf16(v);
        else ((float *)out)[o] = v;
    }
}

/* The staged input: xs [N, T', H', W', C] (T' = T + mp[0][0] + mp[0][1], ...) with zeros in the
 * materialised padding, as f32 or bf16. One block row per (n, t', h'), threads along W'*C (a
 * row is far below 2^32 elements: W' * C with both < 2^31 checked small by the caller). */
__global__ void k_stage_x(void *__restrict__ xs, int bf16, const float *__restrict__ x, int64_t N,
                          int64_t T, int64_t H, int64_t W, int64_t C, wk_fdiv fC, int64_t pt,
                          int64_t ph, int64_t pw, int64_t T2, int64_t H2, int64_t W2) {
    const int64_t rows = N * T2 * H2, row_len = W2 * C;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const int64_t h2 = r % H2, t2 = (r / H2) % T2, n = r / (H2 * T2);
        const int64_t t = t2 - pt, h = h2 - ph;
        const bool row_in = t >= 0 && t < T && h >= 0 && h < H;
        for (int64_t j = threadIdx.x; j < row_len; j += blockDim.x) {
            const int64_t q = wk_fdiv_q(fC, (uint32_t)j), w = q - pw, c = j - q * C;
            float v = 0.0f;
            if (row_in && w >= 0 && w < W) v = x[(((n * T + t) * H + h) * W + w) * C + c];
            if (bf16) ((uint16_t *)xs)[r * row_len + j] = wk_dev_f32_to_bf16(v);
            else ((float *)xs)[r * row_len + j] = v;
        }
    }
}

/* y[p, co] = (ys ? bf16 ys[p, co] : y[p, co]) + bias[co]; one block row per output position */
__global__ void k_finish(float *__restrict__ y, const uint16_t *__restrict__ ys, const void *bias,
                         int bias_dt, int64_t npos, int64_t Cout) {
    for (int64_t p = blockIdx.x; p < npos; p += gridDim.x)
        for (int64_t co = threadIdx.x; co < Cout; co += blockDim.x) {
            const int64_t i = p * Cout + co;
            float v = ys ? bf16_to_f32(ys[i]) : y[i];
            if (bias) v += wk_ld(bias, bias_dt, co);
            y[i] = v;
        }
}

/* bias of any dtype -> f32 (the pointwise ADD's operand) */
__global__ void k_bias_f32(float *__restrict__ out, const void *__restrict__ b, int dt, int64_t n) {
    WK_CUDA_FOR(i, n) out[i] = wk_ld(b, dt, i);
}

/* The implicit-GEMM loads and store for wk_tile_gemm_kernel: A(m, k) is the input value under
 * filter tap k of output position m (zero in the padding), B(n, k) = Wp[n, k]. */
template <bool BF16> struct conv_op {
    const float *x;
    const void *w;              /* Wp, f32 or bf16 */
    const void *bias;
    float *y;
    int bias_dt;
    int64_t T, H, W, C, To, Ho, Wo, K, Cout;
    int st, sh, sw, pt, ph, pw;
    wk_fdiv fC, fkW, fkH;
    struct ARow {
        int64_t base;           /* offset of image n in x */
        int t0, h0, w0;
    };
    struct ACol {
        int kt, kh, kw, ci;
    };
    __device__ ARow arow(int64_t m) const {
        const int64_t wo = m % Wo, r = m / Wo, ho = r % Ho, r2 = r / Ho, to = r2 % To, n = r2 / To;
        ARow a = {n * T * H * W * C, (int)(to * st - pt), (int)(ho * sh - ph), (int)(wo * sw - pw)};
        return a;
    }
    __device__ ACol acol(int64_t k) const {
        const uint32_t q = wk_fdiv_q(fC, (uint32_t)k), ci = (uint32_t)k - q * fC.d;
        const uint32_t q2 = wk_fdiv_q(fkW, q), kw = q - q2 * fkW.d;
        const uint32_t kt = wk_fdiv_q(fkH, q2), kh = q2 - kt * fkH.d;
        ACol c = {(int)kt, (int)kh, (int)kw, (int)ci};
        return c;
    }
    __device__ float a(const ARow &r, const ACol &c) const {
        const int t = r.t0 + c.kt, h = r.h0 + c.kh, w = r.w0 + c.kw;
        if (t < 0 || t >= T || h < 0 || h >= H || w < 0 || w >= W) return 0.0f;
        const float v = x[r.base + ((t * H + h) * W + w) * C + c.ci];
        return BF16 ? bf16_to_f32(wk_dev_f32_to_bf16(v)) : v;
    }
    __device__ float b(int64_t n, int64_t k) const {
        return BF16 ? bf16_to_f32(((const uint16_t *)w)[n * K + k]) : ((const float *)w)[n * K + k];
    }
    __device__ void store(int64_t m, int64_t n, float v) const {
        if (bias) v += wk_ld(bias, bias_dt, n);
        y[m * Cout + n] = v;
    }
};

/* ---- arguments (conv.c's checks and messages, with device checks) ---- */

static wf_status conv_check_params(const char *op, const wk_tensor *w, const wk_tensor *bias,
                                   const wk_conv_params *p, const int64_t *x5,
                                   const int64_t *wdims, int axis0, wf_err *err) {
    char s1[96];
    wf_status st;
    if ((st = wk_cuda_check_dev(w, op, "w", err)) || (bias && (st = wk_cuda_check_dev(bias, op, "bias", err))))
        return st;
    if (w->dtype >= WK_DTYPE_COUNT)
        return wf_fail(err, WF_EUNSUPPORTED, "%s: w has unknown dtype %d", op, (int)w->dtype);
    if (!p) return wf_fail(err, WF_EINVAL, "%s: params is NULL", op);
    for (int a = axis0; a < 3; a++)
        if (p->stride[a] < 1 || p->pad[a][0] < 0 || p->pad[a][1] < 0)
            return wf_fail(err, WF_EINVAL,
                           "%s: axis %d has stride %d, padding (%d, %d); expected stride >= 1 "
                           "and padding >= 0", op, a, p->stride[a], p->pad[a][0], p->pad[a][1]);
    for (int i = 0; i < 5; i++)
        if (x5[i] < 1 || wdims[i] < 1)
            return wf_fail(err, WF_EINVAL, "%s: x and w must have no empty dimension (w %s)", op,
                           wk_tensor_shape_str(w, s1, sizeof s1));
    if (wdims[1] != x5[4])
        return wf_fail(err, WF_EINVAL, "%s: w %s%s has Cin = %lld, but x has %lld channels", op,
                       w->name ? w->name : "", wk_tensor_shape_str(w, s1, sizeof s1),
                       (long long)wdims[1], (long long)x5[4]);
    if (bias && bias->dtype >= WK_DTYPE_COUNT)
        return wf_fail(err, WF_EUNSUPPORTED, "%s: bias has unknown dtype %d", op, (int)bias->dtype);
    if (bias && (bias->ndim != 1 || bias->shape[0] != wdims[0]))
        return wf_fail(err, WF_EINVAL, "%s: bias shape %s, expected [%lld] (Cout of w)", op,
                       wk_tensor_shape_str(bias, s1, sizeof s1), (long long)wdims[0]);
    return WF_OK;
}

/* Fills g from the 5-D views and checks y's shape against it. */
static wf_status conv_geometry(const char *op, const wk_tensor *y, const wk_conv_params *p,
                               const int64_t *x5, const int64_t *wdims, const int64_t *y5,
                               int axis0, conv_geom *g, wf_err *err) {
    memset(g, 0, sizeof *g); /* the plan key holds g: no stray bytes */
    g->nd = axis0 == 0 ? 3 : 2;
    g->N = x5[0], g->T = x5[1], g->H = x5[2], g->W = x5[3], g->Cin = x5[4];
    g->Cout = wdims[0], g->kT = wdims[2], g->kH = wdims[3], g->kW = wdims[4];
    for (int a = 0; a < 3; a++) {
        g->s[a] = a < axis0 ? 1 : p->stride[a];
        g->pad[a][0] = a < axis0 ? 0 : p->pad[a][0];
        g->pad[a][1] = a < axis0 ? 0 : p->pad[a][1];
    }
    const int64_t in[3] = {g->T, g->H, g->W}, k[3] = {g->kT, g->kH, g->kW};
    int64_t out[3];
    for (int a = 0; a < 3; a++) {
        int64_t padded = in[a] + g->pad[a][0] + g->pad[a][1];
        if (padded < k[a])
            return wf_fail(err, WF_EINVAL, "%s: axis %d: input %lld + padding = %lld is smaller "
                           "than the kernel %lld", op, a, (long long)in[a], (long long)padded,
                           (long long)k[a]);
        out[a] = (padded - k[a]) / g->s[a] + 1;
    }
    g->To = out[0], g->Ho = out[1], g->Wo = out[2];
    const int64_t want[5] = {g->N, g->To, g->Ho, g->Wo, g->Cout};
    char sy[96];
    for (int i = 0; i < 5; i++)
        if (y5[i] != want[i]) {
            if (axis0 == 1)
                return wf_fail(err, WF_EINVAL, "%s: y shape %s, expected [%lld, %lld, %lld, %lld]",
                               op, wk_tensor_shape_str(y, sy, sizeof sy), (long long)g->N,
                               (long long)g->Ho, (long long)g->Wo, (long long)g->Cout);
            return wf_fail(err, WF_EINVAL, "%s: y shape %s, expected [%lld, %lld, %lld, %lld, %lld]",
                           op, wk_tensor_shape_str(y, sy, sizeof sy), (long long)g->N,
                           (long long)g->To, (long long)g->Ho, (long long)g->Wo, (long long)g->Cout);
        }
    g->K = g->kT * g->kH * g->kW * g->Cin;
    if (g->K > INT_MAX || g->Cout > INT_MAX)
        return wf_fail(err, WF_EINVAL, "%s: kT*kH*kW*Cin = %lld or Cout = %lld exceeds INT_MAX",
                       op, (long long)g->K, (long long)g->Cout);
    return WF_OK;
}

/* ---- the packed weight ---- */

static wf_status weight_get(wk_cuda *c, const wk_tensor *w, const conv_geom *g, int bf16,
                            const void **out, wf_err *err) {
    wkey k;
    memset(&k, 0, sizeof k);
    k.ptr = w->data;
    k.dtype = w->dtype;
    k.bf16 = bf16;
    const int64_t shape[5] = {g->Cout, g->Cin, g->kT, g->kH, g->kW};
    memcpy(k.shape, shape, sizeof shape);
    wval *v = wk_table_find(&c->conv->weights, &k);
    if (v) {
        *out = v->dev;
        return WF_OK;
    }
    const int64_t KK = g->kT * g->kH * g->kW;
    const size_t bytes = (size_t)(g->Cout * g->K) * (bf16 ? 2 : 4); /* Wp [Cout, kT, kH, kW, Cin] */
    void *dev = NULL;
    wf_status st = wk_cuda_malloc(c, bytes, &dev, err);
    if (st) return st;
    k_pack_filter<<<wk_cuda_blocks(g->Cout * g->K), WK_CUDA_THREADS, 0, c->stream>>>(
        dev, bf16, w->data, (int)w->dtype, g->Cout, g->Cin, KK);
    if ((st = wk_cuda_launched(err, "conv (filter packing)"))) {
        wk_cuda_free(c, dev);
        return st;
    }
    v = wk_table_insert(&c->conv->weights, &k);
    if (!v) {
        wk_cuda_free(c, dev);
        return wf_fail(err, WF_ENOMEM, "conv: cannot grow the packed-weight cache");
    }
    v->dev = dev;
    v->bytes = bytes;
    *out = dev;
    return WF_OK;
}

/* ---- cuDNN graphs: a sticky-status builder (the first failure stops the rest) ---- */

typedef struct dnn_b {
    cudnnBackendDescriptor_t d[CONV_MAX_DESC]; /* created so far, destroyed in reverse */
    int n;
    cudnnStatus_t st;
} dnn_b;

static cudnnBackendDescriptor_t b_new(dnn_b *b, cudnnBackendDescriptorType_t t) {
    cudnnBackendDescriptor_t d = NULL;
    if (b->st) return NULL;
    WF_ASSERT(b->n < CONV_MAX_DESC);
    b->st = cudnnBackendCreateDescriptor(t, &d);
    if (!b->st) b->d[b->n++] = d;
    return d;
}

static void b_set(dnn_b *b, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a,
                  cudnnBackendAttributeType_t t, int64_t n, const void *v) {
    if (!b->st) b->st = cudnnBackendSetAttribute(d, a, t, n, v);
}

static void b_fin(dnn_b *b, cudnnBackendDescriptor_t d) {
    if (!b->st) b->st = cudnnBackendFinalize(d);
}

static void b_destroy(dnn_b *b) {
    for (int i = b->n - 1; i >= 0; i--) cudnnBackendDestroyDescriptor(b->d[i]);
    b->n = 0;
}

/* An [N, C, (T,) H, W] tensor in channels-last strides (dims d5 = {N, C, T, H, W}). */
static cudnnBackendDescriptor_t b_tensor(dnn_b *b, int nd, int64_t uid, cudnnDataType_t dt,
                                         const int64_t *d5, int64_t align, bool virt) {
    const int64_t N = d5[0], C = d5[1], T = d5[2], H = d5[3], W = d5[4];
    const int64_t dims3[5] = {N, C, T, H, W}, str3[5] = {T * H * W * C, 1, H * W * C, W * C, C};
    const int64_t dims2[4] = {N, C, H, W}, str2[4] = {H * W * C, 1, W * C, C};
    const int rank = nd == 3 ? 5 : 4;
    cudnnBackendDescriptor_t t = b_new(b, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    b_set(b, t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt);
    b_set(b, t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, rank, nd == 3 ? dims3 : dims2);
    b_set(b, t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, rank, nd == 3 ? str3 : str2);
    b_set(b, t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    b_set(b, t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
    b_set(b, t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virt);
    b_fin(b, t);
    return t;
}

/* One variant's geometry as cuDNN sees it: the (possibly staged) x dims and the padding left
 * to the convolution descriptor. */
typedef struct conv_variant {
    int out_mode, materialize;
    int64_t xd[3];             /* T', H', W' */
    int64_t cpad[3][2], mpad[3][2];
} conv_variant;

static conv_variant make_variant(const conv_geom *g, int out_mode, int materialize) {
    conv_variant v;
    memset(&v, 0, sizeof v);
    v.out_mode = out_mode;
    v.materialize = materialize;
    const int64_t in[3] = {g->T, g->H, g->W};
    for (int a = 0; a < 3; a++) {
        const int asym = g->pad[a][0] != g->pad[a][1];
        for (int s = 0; s < 2; s++) {
            v.mpad[a][s] = materialize && asym ? g->pad[a][s] : 0;
            v.cpad[a][s] = g->pad[a][s] - v.mpad[a][s];
        }
        v.xd[a] = in[a] + v.mpad[a][0] + v.mpad[a][1];
    }
    return v;
}

/* The convolution descriptor and the forward operation X (*) W -> V. */
static cudnnBackendDescriptor_t b_conv_op(dnn_b *b, const conv_geom *g, const conv_variant *v,
                                          cudnnBackendDescriptor_t X, cudnnBackendDescriptor_t Wt,
                                          cudnnBackendDescriptor_t V) {
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    const int a0 = g->nd == 3 ? 0 : 1, ns = g->nd;
    int64_t dil[3] = {1, 1, 1}, str[3], pre[3], post[3], nsp = ns;
    for (int a = a0; a < 3; a++) {
        str[a - a0] = g->s[a];
        pre[a - a0] = v->cpad[a][0];
        post[a - a0] = v->cpad[a][1];
    }
    const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    cudnnBackendDescriptor_t cd = b_new(b, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
    b_set(b, cd, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32);
    b_set(b, cd, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
    b_set(b, cd, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &nsp);
    b_set(b, cd, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, ns, dil);
    b_set(b, cd, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, ns, str);
    b_set(b, cd, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, ns, pre);
    b_set(b, cd, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, ns, post);
    b_fin(b, cd);
    const float one = 1.0f, zero = 0.0f;
    cudnnBackendDescriptor_t conv = b_new(b, CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR);
    b_set(b, conv, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &X);
    b_set(b, conv, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &Wt);
    b_set(b, conv, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &V);
    b_set(b, conv, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cd);
    b_set(b, conv, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &one);
    b_set(b, conv, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &zero);
    b_fin(b, conv);
    return conv;
}

/* The operation graph: conv (+ bias ADD) for variant v. */
static cudnnBackendDescriptor_t b_graph(dnn_b *b, cudnnHandle_t h, const conv_geom *g,
                                        const pkey *k, const conv_variant *v) {
    const cudnnDataType_t in_dt = k->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    const cudnnDataType_t y_dt = v->out_mode == OUT_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    const int staged = k->bf16 || v->materialize;
    const int64_t xd[5] = {g->N, g->Cin, v->xd[0], v->xd[1], v->xd[2]};
    const int64_t wd[5] = {g->Cout, g->Cin, g->kT, g->kH, g->kW};
    const int64_t yd[5] = {g->N, g->Cout, g->To, g->Ho, g->Wo};
    const int64_t bd[5] = {1, g->Cout, 1, 1, 1};
    cudnnBackendDescriptor_t X = b_tensor(b, g->nd, UID_X, in_dt, xd, staged ? 16 : k->al_x, false);
    cudnnBackendDescriptor_t Wt = b_tensor(b, g->nd, UID_W, in_dt, wd, 16, false);
    cudnnBackendDescriptor_t Y = b_tensor(b, g->nd, UID_Y, y_dt, yd, v->out_mode == OUT_BF16 ? 16 : k->al_y, false);
    cudnnBackendDescriptor_t V = Y, B = NULL;
    if (v->out_mode == OUT_FUSED) {
        V = b_tensor(b, g->nd, UID_V, f32, yd, 16, true);
        B = b_tensor(b, g->nd, UID_B, f32, bd, 16, false);
    }
    cudnnBackendDescriptor_t ops[2];
    int nops = 0;
    ops[nops++] = b_conv_op(b, g, v, X, Wt, V);
    if (v->out_mode == OUT_FUSED) {
        const cudnnPointwiseMode_t add = CUDNN_POINTWISE_ADD;
        cudnnBackendDescriptor_t pw = b_new(b, CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
        b_set(b, pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &add);
        b_set(b, pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &f32);
        b_fin(b, pw);
        cudnnBackendDescriptor_t po = ops[nops++] = b_new(b, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
        b_set(b, po, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw);
        b_set(b, po, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &V);
        b_set(b, po, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &B);
        b_set(b, po, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &Y);
        b_fin(b, po);
    }
    cudnnBackendDescriptor_t graph = b_new(b, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    b_set(b, graph, ATTR_OPGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
    b_set(b, graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, nops, ops);
    b_fin(b, graph);
    return graph;
}

/* FP32 mode: true when the engine behind cfg computes in plain f32 (no TF32 tensor cores, no
 * down-converted inputs, reduced-precision reductions, FFT or Winograd). */
static bool cfg_is_strict_f32(cudnnBackendDescriptor_t cfg) {
    cudnnBackendDescriptor_t eng = NULL;
    cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
    int64_t n = 0, nn = 0;
    bool ok = false;
    if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng)) return false;
    if (!cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &eng) &&
        !cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                                  CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &nn, notes)) {
        ok = true;
        for (int64_t i = 0; i < nn; i++)
            switch (notes[i]) {
            case CUDNN_NUMERICAL_NOTE_TENSOR_CORE:
            case CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS:
            case CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION:
            case CUDNN_NUMERICAL_NOTE_FFT:
            case CUDNN_NUMERICAL_NOTE_WINOGRAD:
            case CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_4x4:
            case CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_6x6:
            case CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_13x13: ok = false; break;
            default: break;
            }
    }
    cudnnBackendDestroyDescriptor(eng);
    return ok;
}

/* Walks one heuristic mode's configs; on success the config and the finalized plan are appended
 * to b (the plan last) and *ws is its workspace. CUDNN_STATUS_NOT_SUPPORTED when none fits. */
static cudnnStatus_t b_plan_mode(dnn_b *b, cudnnHandle_t h, cudnnBackendDescriptor_t graph,
                                 cudnnBackendHeurMode_t mode, bool strict, int64_t *ws) {
    cudnnBackendDescriptor_t heur = NULL, cfgs[CONV_MAX_CFGS] = {}; /* NULL: not created */
    int64_t count = 0, got = 0;
    int ncfg = 0, chosen = -1;
    cudnnStatus_t st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur);
    if (!st) st = cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph);
    if (!st) st = cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    if (!st) st = cudnnBackendFinalize(heur);
    if (!st) st = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, NULL);
    for (; !st && ncfg < count && ncfg < CONV_MAX_CFGS; ncfg++)
        st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfgs[ncfg]);
    if (!st && ncfg) st = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, ncfg, &got, cfgs);
    for (int i = 0; !st && i < got && i < ncfg && chosen < 0; i++) {
        if (strict && !cfg_is_strict_f32(cfgs[i])) continue;
        WF_ASSERT(b->n + 2 <= CONV_MAX_DESC);
        cudnnBackendDescriptor_t plan = NULL;
        cudnnStatus_t ps = cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan);
        if (!ps) ps = cudnnBackendSetAttribute(plan, ATTR_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
        if (!ps) ps = cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfgs[i]);
        if (!ps) ps = cudnnBackendFinalize(plan);
        int64_t n = 0, bytes = 0;
        if (!ps) ps = cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n, &bytes);
        if (!ps && bytes <= CONV_MAX_WS) {
            chosen = i;
            b->d[b->n++] = cfgs[i];
            b->d[b->n++] = plan;
            *ws = bytes;
        } else if (plan) {
            cudnnBackendDestroyDescriptor(plan);
        }
    }
    for (int i = 0; i < ncfg; i++)
        if (i != chosen && cfgs[i]) cudnnBackendDestroyDescriptor(cfgs[i]);
    if (heur) cudnnBackendDestroyDescriptor(heur);
    return st ? st : chosen < 0 ? CUDNN_STATUS_NOT_SUPPORTED : CUDNN_STATUS_SUCCESS;
}

/* A finalized plan for variant v (mode A, then the fallback heuristic), kept in pv. */
static cudnnStatus_t plan_variant(wk_cuda *c, const conv_geom *g, const pkey *k,
                                  const conv_variant *v, pval *pv) {
    dnn_b b;
    memset(&b, 0, sizeof b);
    cudnnHandle_t h = (cudnnHandle_t)c->dnn;
    cudnnBackendDescriptor_t graph = b_graph(&b, h, g, k, v);
    int64_t ws = 0;
    cudnnStatus_t st = b.st;
    if (!st) {
        st = b_plan_mode(&b, h, graph, CUDNN_HEUR_MODE_A, !k->bf16, &ws);
        if (st) st = b_plan_mode(&b, h, graph, CUDNN_HEUR_MODE_FALLBACK, !k->bf16, &ws);
    }
    if (st) {
        b_destroy(&b);
        return st;
    }
    memcpy(pv->d, b.d, sizeof b.d);
    pv->nd = b.n;
    pv->ws = ws;
    pv->out_mode = v->out_mode;
    pv->materialize = v->materialize;
    memcpy(pv->mpad, v->mpad, sizeof v->mpad);
    return CUDNN_STATUS_SUCCESS;
}

/* ---- plans per shape ---- */

static bool has_asym_padding(const conv_geom *g) {
    for (int a = 0; a < 3; a++)
        if (g->pad[a][0] != g->pad[a][1]) return true;
    return false;
}

/* Tries the variants in order (native padding first; fused bias, f32 out, bf16 out); the own
 * kernel when none gives a plan or cuDNN is not there. */
static void plan_create(wk_cuda *c, const pkey *k, pval *pv) {
    const conv_geom *g = &k->g;
    const char *why = !c->dnn ? c->dnn_why : "WANFARM_CUDA_CONV=own";
    cudnnStatus_t last = CUDNN_STATUS_NOT_SUPPORTED;
    if (c->dnn && !c->conv->force_own) {
        const int nmat = has_asym_padding(g) ? 2 : 1;
        for (int mat = 0; mat < nmat; mat++)
            for (int out = k->has_bias ? OUT_FUSED : OUT_F32; out <= (k->bf16 ? OUT_BF16 : OUT_F32); out++) {
                const conv_variant v = make_variant(g, out, mat);
                if ((last = plan_variant(c, g, k, &v, pv)) == CUDNN_STATUS_SUCCESS) {
                    wk_cuda_log(c, "conv%dd: x [%lld, %lld, %lld, %lld, %lld] w [%lld, k %lldx%lldx%lld] "
                                "stride %lldx%lldx%lld, %s: cuDNN (%s padding, %s output, workspace %lld)",
                                g->nd, (long long)g->N, (long long)g->T, (long long)g->H, (long long)g->W,
                                (long long)g->Cin, (long long)g->Cout, (long long)g->kT, (long long)g->kH,
                                (long long)g->kW, (long long)g->s[0], (long long)g->s[1], (long long)g->s[2],
                                k->bf16 ? "bf16" : "fp32", mat ? "materialised" : "native",
                                out == OUT_FUSED ? "fused-bias f32" : out == OUT_F32 ? "f32" : "bf16",
                                (long long)pv->ws);
                    return;
                }
            }
        why = cudnnGetErrorString(last);
    }
    pv->own = 1;
    wk_cuda_log(c, "conv%dd: x [%lld, %lld, %lld, %lld, %lld] w [%lld, k %lldx%lldx%lld], %s: own "
                "implicit-GEMM kernel (%s)", g->nd, (long long)g->N, (long long)g->T, (long long)g->H,
                (long long)g->W, (long long)g->Cin, (long long)g->Cout, (long long)g->kT,
                (long long)g->kH, (long long)g->kW, k->bf16 ? "bf16" : "fp32", why);
}

static wf_status plan_get(wk_cuda *c, const pkey *k, pval **out, wf_err *err) {
    pval *pv = wk_table_find(&c->conv->plans, k);
    if (!pv) {
        pval fresh;
        memset(&fresh, 0, sizeof fresh);
        plan_create(c, k, &fresh);
        pv = wk_table_insert(&c->conv->plans, k);
        if (!pv) {
            pval_destroy(c, &fresh);
            return wf_fail(err, WF_ENOMEM, "conv: cannot grow the convolution plan cache");
        }
        *pv = fresh;
    }
    *out = pv;
    return WF_OK;
}

/* ---- running ---- */

static wf_status dnn_fail(wf_err *err, const char *op, cudnnStatus_t s, const char *what) {
    char detail[256];
    cudnnGetLastErrorString(detail, sizeof detail);
    return wf_fail(err, WF_ECUDA, "%s: %s: %s (%s)", op, what, cudnnGetErrorString(s), detail);
}

/* One execution of the cached plan with this call's pointers. */
static wf_status conv_execute(wk_cuda *c, const char *op, const pval *pv, const void *x,
                              const void *w, void *y, const void *bias, void *ws, wf_err *err) {
    int64_t uids[4] = {UID_X, UID_W, UID_Y, UID_B};
    void *ptrs[4] = {(void *)x, (void *)w, y, (void *)bias};
    const int64_t n = pv->out_mode == OUT_FUSED ? 4 : 3;
    cudnnBackendDescriptor_t vp = NULL;
    cudnnStatus_t s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vp);
    if (!s) s = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids);
    if (!s) s = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs);
    if (!s) s = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws);
    if (!s) s = cudnnBackendFinalize(vp);
    if (!s) s = cudnnSetStream((cudnnHandle_t)c->dnn, c->stream);
    if (!s) s = cudnnBackendExecute((cudnnHandle_t)c->dnn, pv->d[pv->nd - 1], vp);
    wf_status st = s ? dnn_fail(err, op, s, "cudnnBackendExecute") : WF_OK;
    if (vp) cudnnBackendDestroyDescriptor(vp);
    return st;
}

/* The own kernel: y = conv(x, Wp) + bias, any geometry. */
static wf_status conv_own(wk_cuda *c, const char *op, const conv_geom *g, int bf16, float *y,
                          const float *x, const void *wp, const wk_tensor *bias, wf_err *err) {
    const int64_t M = g->N * g->To * g->Ho * g->Wo;
    const wk_fdiv fC = wk_fdiv_make((uint32_t)g->Cin), fkW = wk_fdiv_make((uint32_t)g->kW),
                  fkH = wk_fdiv_make((uint32_t)g->kH);
    const void *b = bias ? bias->data : NULL;
    const int bdt = bias ? (int)bias->dtype : 0;
#define CONV_OP_INIT                                                                             \
    {x, wp, b, y, bdt, g->T, g->H, g->W, g->Cin, g->To, g->Ho, g->Wo, g->K, g->Cout,            \
     (int)g->s[0], (int)g->s[1], (int)g->s[2], (int)g->pad[0][0], (int)g->pad[1][0],            \
     (int)g->pad[2][0], fC, fkW, fkH}
    if (bf16) {
        conv_op<true> o = CONV_OP_INIT;
        wk_tile_gemm_kernel<<<wk_tile_grid(M, g->Cout), WK_TILE_THREADS, 0, c->stream>>>(o, M, g->Cout, g->K);
    } else {
        conv_op<false> o = CONV_OP_INIT;
        wk_tile_gemm_kernel<<<wk_tile_grid(M, g->Cout), WK_TILE_THREADS, 0, c->stream>>>(o, M, g->Cout, g->K);
    }
#undef CONV_OP_INIT
    return wk_cuda_launched(err, op);
}

static size_t up256(size_t v) { return (v + 255) / 256 * 256; }

static uint32_t ptr_align16(const void *p) {
    uintptr_t u = (uintptr_t)p;
    return (u % 16) == 0 ? 16 : (u % 8) == 0 ? 8 : (u % 4) == 0 ? 4 : (u % 2) == 0 ? 2 : 1;
}

static unsigned rows_grid(int64_t rows) { return (unsigned)(rows < (1 << 20) ? (rows > 0 ? rows : 1) : (1 << 20)); }

/* Workspace parts of one cuDNN call: staged x, bf16 y, f32 bias, cuDNN's own. */
typedef struct conv_ws {
    size_t xs, ys, bf, dnn, total;
} conv_ws;

static conv_ws ws_layout(const conv_geom *g, const pkey *k, const pval *pv, const wk_tensor *bias) {
    const conv_variant v = make_variant(g, pv->out_mode, pv->materialize);
    const size_t npos = (size_t)(g->N * g->To * g->Ho * g->Wo);
    const size_t nx = (size_t)(g->N * v.xd[0] * v.xd[1] * v.xd[2] * g->Cin);
    const bool stage = k->bf16 || pv->materialize;
    const bool conv_bias = pv->out_mode == OUT_FUSED &&
                           (bias->dtype != WK_F32 || ptr_align16(bias->data) < 16);
    conv_ws l;
    l.xs = 0;
    l.ys = up256(stage ? nx * (k->bf16 ? 2 : 4) : 0);
    l.bf = l.ys + up256(pv->out_mode == OUT_BF16 ? npos * (size_t)g->Cout * 2 : 0);
    l.dnn = l.bf + up256(conv_bias ? (size_t)g->Cout * 4 : 0);
    l.total = l.dnn + (size_t)pv->ws;
    return l;
}

/* cuDNN's part: stage x, convert the bias, execute, finish the output. */
static wf_status conv_dnn(wk_backend *be, const char *op, const conv_geom *g, const pkey *k,
                          const pval *pv, float *y, const float *x, const void *wp,
                          const wk_tensor *bias, wf_err *err) {
    wk_cuda *c = wk_cuda_of(be);
    const conv_ws l = ws_layout(g, k, pv, bias);
    unsigned char *ws = NULL;
    wf_status st = l.total ? wk_backend_workspace(be, l.total, (void **)&ws, err) : WF_OK;
    if (st) return st;
    const conv_variant v = make_variant(g, pv->out_mode, pv->materialize);
    const int64_t npos = g->N * g->To * g->Ho * g->Wo;
    const void *xin = x;
    if (k->bf16 || pv->materialize) {
        const int64_t rows = g->N * v.xd[0] * v.xd[1];
        k_stage_x<<<rows_grid(rows), WK_CUDA_THREADS, 0, c->stream>>>(
            ws + l.xs, k->bf16, x, g->N, g->T, g->H, g->W, g->Cin,
            wk_fdiv_make((uint32_t)g->Cin), v.mpad[0][0], v.mpad[1][0],
            v.mpad[2][0], v.xd[0], v.xd[1], v.xd[2]);
        xin = ws + l.xs;
    }
    const void *bin = NULL;
    if (pv->out_mode == OUT_FUSED) {
        bin = bias->data;
        if (l.dnn > l.bf) {
            k_bias_f32<<<wk_cuda_blocks(g->Cout), WK_CUDA_THREADS, 0, c->stream>>>(
                (float *)(ws + l.bf), bias->data, (int)bias->dtype, g->Cout);
            bin = ws + l.bf;
        }
    }
    if ((st = wk_cuda_launched(err, op))) return st;
    void *yout = pv->out_mode == OUT_BF16 ? (void *)(ws + l.ys) : (void *)y;
    if ((st = conv_execute(c, op, pv, xin, wp, yout, bin, pv->ws ? ws + l.dnn : NULL, err)))
        return st;
    const bool finish = pv->out_mode == OUT_BF16 || (pv->out_mode == OUT_F32 && bias);
    if (!finish) return WF_OK;
    const unsigned th = g->Cout >= 256 ? 256 : (unsigned)((g->Cout + 31) / 32 * 32);
    k_finish<<<rows_grid(npos), th, 0, c->stream>>>(
        y, pv->out_mode == OUT_BF16 ? (const uint16_t *)(ws + l.ys) : NULL,
        bias ? bias->data : NULL, bias ? (int)bias->dtype : 0, npos, g->Cout);
    return wk_cuda_launched(err, op);
}

/* The shared body of conv3d and conv2d, after the checks. */
static wf_status conv_run(wk_backend *be, const char *op, wk_tensor *y, const wk_tensor *x,
                          const wk_tensor *w, const wk_tensor *bias, const conv_geom *g,
                          wf_err *err) {
    wk_cuda *c = wk_cuda_of(be);
    const int bf16 = be->precision == WK_PREC_BF16;
    const void *wp = NULL;
    wf_status st = weight_get(c, w, g, bf16, &wp, err);
    if (st) return st;
    pkey k;
    memset(&k, 0, sizeof k);
    memcpy(&k.g, g, sizeof *g); /* bytewise, padding included: the key is hashed as bytes */
    k.bf16 = bf16;
    k.has_bias = bias != NULL;
    k.al_x = (int32_t)ptr_align16(x->data);
    k.al_y = (int32_t)ptr_align16(y->data);
    pval *pv = NULL;
    if ((st = plan_get(c, &k, &pv, err))) return st;
    if (pv->own)
        return conv_own(c, op, g, bf16, (float *)y->data, (const float *)x->data, wp, bias, err);
    return conv_dnn(be, op, g, &k, pv, (float *)y->data, (const float *)x->data, wp, bias, err);
}

extern "C" wf_status wk_cuda_conv3d(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                    const wk_tensor *w, const wk_tensor *bias,
                                    const wk_conv_params *p, wf_err *err) {
    const char *op = "conv3d";
    wf_status st;
    if ((st = wk_cuda_check_act(x, op, "x", err)) || (st = wk_cuda_check_act(y, op, "y", err)) ||
        (st = wk_check_ndim(x, 5, op, "x", err)) || (st = wk_check_ndim(y, 5, op, "y", err)) ||
        (st = wk_check_ndim(w, 5, op, "w", err)))
        return st;
    conv_geom g;
    if ((st = conv_check_params(op, w, bias, p, x->shape, w->shape, 0, err)) ||
        (st = conv_geometry(op, y, p, x->shape, w->shape, y->shape, 0, &g, err)))
        return st;
    return conv_run(be, op, y, x, w, bias, &g, err);
}

extern "C" wf_status wk_cuda_conv2d(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                    const wk_tensor *w, const wk_tensor *bias,
                                    const wk_conv_params *p, wf_err *err) {
    const char *op = "conv2d";
    wf_status st;
    if ((st = wk_cuda_check_act(x, op, "x", err)) || (st = wk_cuda_check_act(y, op, "y", err)) ||
        (st = wk_check_ndim(x, 4, op, "x", err)) || (st = wk_check_ndim(y, 4, op, "y", err)) ||
        (st = wk_check_ndim(w, 4, op, "w", err)))
        return st;
    const int64_t *xs = x->shape, *wsh = w->shape, *ys = y->shape;
    const int64_t x5[5] = {xs[0], 1, xs[1], xs[2], xs[3]};
    const int64_t w5[5] = {wsh[0], wsh[1], 1, wsh[2], wsh[3]};
    const int64_t y5[5] = {ys[0], 1, ys[1], ys[2], ys[3]};
    conv_geom g;
    if ((st = conv_check_params(op, w, bias, p, x5, w5, 1, err)) ||
        (st = conv_geometry(op, y, p, x5, w5, y5, 1, &g, err)))
        return st;
    return conv_run(be, op, y, x, w, bias, &g, err);
}
