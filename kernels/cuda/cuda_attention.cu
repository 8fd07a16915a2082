/* cuda_attention.cu: scaled dot-product attention on the GPU (wk_cuda_attention) and the own
 * flash-attention kernels behind it.
 *
 * What it is: o[Lq, NH, HD] = softmax(scale q k^T + bias) v per head, as backend.h and the CPU
 * reference (kernels/cpu/attention.c) define it: keys [kv_len, Lk) are never read, bias is NULL,
 * a [Lk] additive key mask or a [NH, Lq, Lk] full bias of any float dtype, a query row whose keys
 * are all masked gives zeros, NaN inputs reach the output. Three paths, chosen per call:
 *   - WK_PREC_FP32: att_f32_kernel, f32 SIMT, exact expf, HD 1..256. A CTA of 8 warps holds 32
 *     query rows of one head (4 per warp) and walks the keys in tiles of 32 (one key per lane
 *     for the scores, the lanes' d slices for P.V); online softmax, nothing of size Lq x Lk.
 *   - WK_PREC_BF16 without a bias: cuDNN's fused SDPA (cuda_sdpa.c) on bf16 copies of q, k, v
 *     in the workspace, output bf16 widened back to f32, when cuDNN has an engine for the shape.
 *   - WK_PREC_BF16 otherwise: att_bf16_kernel, FlashAttention-2 style on tensor cores: q, k, v
 *     are packed into the workspace as bf16 [NH, L, HDP] (HDP: HD rounded up to 16, 32, 64, 128
 *     or 256 with zero columns; key rows past kv_len zero), a CTA of 4 warps holds
 *     Br = 64 query rows (16 per warp), K/V tiles of Bc = 64 keys (32 for HDP > 128) are
 *     double-buffered in shared memory with cp.async, S = Q K^T and O += P V are
 *     mma.sync.m16n8k16 bf16 with fp32 accumulators, fragments loaded with ldmatrix, P kept in
 *     registers between the two products, softmax in fp32.
 * WANFARM_CUDA_ATTN=own|cudnn (wk_cuda.attn_path) forces a bf16 path; a forced cuDNN path that
 * cannot run a shape returns WF_EUNSUPPORTED with the reason. Which path ran is logged once per
 * shape.
 * What it is not: causal, dropout or strided-view attention; HD > 256 is WF_EUNSUPPORTED.
 * Tested by: tests/test_backend_ops.c (rows "attention", CPU against CUDA, both bf16 paths
 * forced through WANFARM_CUDA_ATTN) and bench/gpu-check.sh (attention at A14B shapes).
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cuda_device.cuh"
#include "cuda_internal.h"

typedef __nv_bfloat16 att_bf16;

/* Everything a kernel needs; passed by value. */
typedef struct att_params {
    const float *q, *k, *v; /* f32 [L, NH, HD] (f32 kernel) */
    const att_bf16 *qb, *kb, *vb; /* packed bf16 [NH, lq_pad | lk_pad, HDP] (bf16 kernel) */
    float *o;               /* f32 [Lq, NH, HD] */
    const void *bias;       /* NULL, [Lk] or [NH, Lq, Lk] */
    int bias_dt, bias_kind; /* wk_dtype; 0 none, 1 key mask, 2 full */
    int Lq, Lk, Lkv, NH, HD;
    int lq_pad, lk_pad;     /* rows of the packed buffers (bf16 kernel) */
    float scale;
} att_params;

enum { ATT_BIAS_NONE = 0, ATT_BIAS_KEYS, ATT_BIAS_FULL };

#define ATT_FULL_MASK 0xffffffffu
#define ATT_LOG2E 1.4426950408889634f

/* ---------------------------------------------------------------------------------------------
 * device helpers
 * ------------------------------------------------------------------------------------------- */

/* max that propagates NaN (fmaxf drops it): a NaN score must reach the output, as on the CPU. */
__device__ __forceinline__ float att_nanmax(float a, float b) {
    return (a != a) ? a : ((b != b) ? b : fmaxf(a, b));
}

/* The additive bias of (head h, query row, key), widened from its dtype. */
__device__ __forceinline__ float att_bias(const att_params &p, int h, int row, int key) {
    if (p.bias_kind == ATT_BIAS_KEYS) return wk_ld(p.bias, p.bias_dt, key);
    return wk_ld(p.bias, p.bias_dt, ((int64_t)h * p.Lq + row) * p.Lk + key);
}

__device__ __forceinline__ float att_warp_max(float x) {
    for (int s = 16; s > 0; s >>= 1) x = att_nanmax(x, __shfl_xor_sync(ATT_FULL_MASK, x, s));
    return x;
}

__device__ __forceinline__ float att_warp_sum(float x) {
    for (int s = 16; s > 0; s >>= 1) x += __shfl_xor_sync(ATT_FULL_MASK, x, s);
    return x;
}

/* ---------------------------------------------------------------------------------------------
 * f32 SIMT kernel (exact mode)
 * ------------------------------------------------------------------------------------------- */

#define F32_WARPS 8
#define F32_ROWS 4                        /* query rows per warp */
#define F32_BQ (F32_WARPS * F32_ROWS)     /* query rows per CTA */
#define F32_BK 32                         /* keys per tile: one per lane */

/* Shared memory: Q [F32_BQ][HD] | K [F32_BK][HD | 1] | V [F32_BK][HD] floats. K rows have an odd
 * stride so that the 32 lanes, each reading its own key's row, hit 32 different banks. */
static size_t att_f32_smem(int HD) {
    return ((size_t)F32_BQ * HD + (size_t)F32_BK * (HD | 1) + (size_t)F32_BK * HD) * sizeof(float);
}

/* Online-softmax update of one query row with the scores of one key tile (s: this lane's key's
 * score, -inf when masked or past the tile): rescales o, m, l and adds P . V. */
template <int NI>
__device__ __forceinline__ void att_f32_row_update(float s, int kt, const float *sV, int HD,
                                                   int lane, float *o, float &m, float &l) {
    const float mnew = att_nanmax(m, att_warp_max(s));
    const float mu = mnew == -INFINITY ? 0.0f : mnew; /* every key so far masked: p = 0 */
    const float pr = expf(s - mu);
    const float alpha = expf(m - mu); /* m = -inf gives 0; NaN propagates */
    l = l * alpha + att_warp_sum(pr);
    m = mnew;
#pragma unroll
    for (int i = 0; i < NI; i++) o[i] *= alpha;
    for (int j = 0; j < kt; j++) {
        const float pj = __shfl_sync(ATT_FULL_MASK, pr, j);
        const float *vr = sV + (size_t)j * HD;
#pragma unroll
        for (int i = 0; i < NI; i++) {
            const int d = lane + 32 * i;
            if (d < HD) o[i] = fmaf(pj, vr[d], o[i]);
        }
    }
}

/* grid (ceil(Lq / F32_BQ), NH), F32_WARPS * 32 threads; NI = ceil(HD / 32) output values per lane
 * per row. */
template <int NI>
__global__ void __launch_bounds__(F32_WARPS * 32) att_f32_kernel(att_params p) {
    extern __shared__ float att_f32_sm[];
    const int HD = p.HD, ks = HD | 1;
    float *sQ = att_f32_sm;                         /* [F32_BQ][HD] */
    float *sK = sQ + (size_t)F32_BQ * HD;           /* [F32_BK][ks] */
    float *sV = sK + (size_t)F32_BK * ks;           /* [F32_BK][HD] */
    const int h = blockIdx.y, r0 = blockIdx.x * F32_BQ;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t ld = (int64_t)p.NH * HD; /* floats between tokens */

    for (int i = threadIdx.x; i < F32_BQ * HD; i += blockDim.x) {
        const int r = i / HD, d = i - r * HD;
        sQ[i] = r0 + r < p.Lq ? p.q[(int64_t)(r0 + r) * ld + (int64_t)h * HD + d] : 0.0f;
    }
    float o[F32_ROWS][NI], m[F32_ROWS], l[F32_ROWS];
#pragma unroll
    for (int rr = 0; rr < F32_ROWS; rr++) {
        m[rr] = -INFINITY;
        l[rr] = 0.0f;
#pragma unroll
        for (int i = 0; i < NI; i++) o[rr][i] = 0.0f;
    }
    for (int c0 = 0; c0 < p.Lkv; c0 += F32_BK) {
        const int kt = min(F32_BK, p.Lkv - c0);
        __syncthreads(); /* Q is in; the previous tile is no longer read */
        for (int i = threadIdx.x; i < F32_BK * HD; i += blockDim.x) {
            const int j = i / HD, d = i - j * HD;
            float kx = 0.0f, vx = 0.0f;
            if (j < kt) {
                const int64_t at = (int64_t)(c0 + j) * ld + (int64_t)h * HD + d;
                kx = p.k[at];
                vx = p.v[at];
            }
            sK[j * ks + d] = kx;
            sV[j * HD + d] = vx;
        }
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < F32_ROWS; rr++) {
            const int r = warp * F32_ROWS + rr, row = r0 + r;
            if (row >= p.Lq) continue; /* uniform across the warp */
            float s = -INFINITY;
            if (lane < kt) {
                const float *qr = sQ + (size_t)r * HD, *kr = sK + (size_t)lane * ks;
                float acc = 0.0f;
#pragma unroll 4
                for (int d = 0; d < HD; d++) acc = fmaf(qr[d], kr[d], acc);
                s = p.scale * acc;
                if (p.bias_kind != ATT_BIAS_NONE) s += att_bias(p, h, row, c0 + lane);
            }
            att_f32_row_update<NI>(s, kt, sV, HD, lane, o[rr], m[rr], l[rr]);
        }
    }
#pragma unroll
    for (int rr = 0; rr < F32_ROWS; rr++) {
        const int row = r0 + warp * F32_ROWS + rr;
        if (row >= p.Lq) continue;
        float *dst = p.o + (int64_t)row * ld + (int64_t)h * HD;
        const float inv = 1.0f / l[rr]; /* NaN stays NaN; l == 0: fully masked, zeros */
#pragma unroll
        for (int i = 0; i < NI; i++) {
            const int d = lane + 32 * i;
            if (d < HD) dst[d] = l[rr] == 0.0f ? 0.0f : o[rr][i] * inv;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * bf16 conversion kernels
 * ------------------------------------------------------------------------------------------- */

/* dst bf16 [NH, L_pad, HDP] <- src f32 [L, NH, HD], zero where t >= L_valid or d >= HD. */
__global__ void att_pack_bf16(att_bf16 *dst, const float *src, int64_t L_valid, int64_t L_pad,
                              int NH, int HD, int HDP) {
    const int64_t n = (int64_t)NH * L_pad * HDP;
    WK_CUDA_FOR(i, n) {
        const int d = (int)(i % HDP);
        const int64_t r = i / HDP, t = r % L_pad, h = r / L_pad;
        const float x = t < L_valid && d < HD ? src[(t * NH + h) * HD + d] : 0.0f;
        dst[i] = __float2bfloat16_rn(x);
    }
}

__global__ void att_f32_to_bf16(att_bf16 *dst, const float *src, int64_t n) {
    WK_CUDA_FOR(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void att_bf16_to_f32(float *dst, const att_bf16 *src, int64_t n) {
    WK_CUDA_FOR(i, n) dst[i] = __bfloat162float(src[i]);
}

/* ---------------------------------------------------------------------------------------------
 * bf16 tensor-core kernel (sm_80+: cp.async, ldmatrix, mma.sync bf16)
 * ------------------------------------------------------------------------------------------- */

template <int HDP_, int NW_, int BC_> struct att_cfg {
    static constexpr int HDP = HDP_;     /* padded head dim, a multiple of 16 */
    static constexpr int NW = NW_;       /* warps per CTA, 16 query rows each */
    static constexpr int BC = BC_;       /* keys per tile, a multiple of 16 */
    static constexpr int BR = 16 * NW;   /* query rows per CTA */
    static constexpr int NT = 32 * NW;
    static constexpr int SROW = HDP + 8; /* shared row stride in elements: 16 bytes of padding
                                          * make the 8 rows of an ldmatrix hit distinct banks */
    static constexpr int KC = HDP / 16;  /* k-chunks of the head dim (S = Q K^T) */
    static constexpr int NS = BC / 8;    /* n-tiles of S (keys) */
    static constexpr int ND = HDP / 8;   /* n-tiles of O (head dim) */
    static constexpr bool QREG = HDP <= 128; /* Q fragments live in registers (else: ldmatrix) */
    /* Q [BR][SROW] | K [2][BC][SROW] | V [2][BC][SROW], bf16 */
    static constexpr size_t SMEM = (size_t)(BR + 4 * BC) * SROW * sizeof(att_bf16);
};

__device__ __forceinline__ uint32_t att_smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void att_cp_async16(void *sdst, const void *gsrc) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(att_smem_addr(sdst)),
                 "l"(gsrc)
                 : "memory");
}

__device__ __forceinline__ void att_cp_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N> __device__ __forceinline__ void att_cp_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i; register i of a
 * thread gets matrix i's (row lane/4, cols 2(lane%4), +1), the mma fragment layout. */
__device__ __forceinline__ void att_ldsm_x4(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(att_smem_addr(p))
                 : "memory");
}

/* The same, each matrix transposed: register i gets (rows 2(lane%4), +1; col lane/4). */
__device__ __forceinline__ void att_ldsm_x4_t(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(att_smem_addr(p))
                 : "memory");
}

/* c[16x8] += a[16x16] . b[16x8], bf16 inputs, f32 accumulators. */
__device__ __forceinline__ void att_mma(float c[4], const uint32_t a[4], uint32_t b0,
                                        uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t att_pack2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); /* lo in the low half: the lower column */
    uint32_t u;
    memcpy(&u, &v, 4);
    return u;
}

/* rows x HDP bf16 from contiguous global rows into shared rows of stride SROW, 16 bytes a
 * thread at a time (cp.async, not waited for here). */
template <class C, int ROWS>
__device__ __forceinline__ void att_load_tile(att_bf16 *s, const att_bf16 *g, int tid) {
    constexpr int CPR = C::HDP / 8; /* 16-byte chunks per row */
#pragma unroll 4
    for (int c = tid; c < ROWS * CPR; c += C::NT) {
        const int r = c / CPR, col = (c - r * CPR) * 8;
        att_cp_async16(s + r * C::SROW + col, g + (size_t)r * C::HDP + col);
    }
}

/* S[16 x BC] (this warp's rows) = Q K^T for one key tile. qf: Q fragments (QREG), sQw: this
 * warp's 16 rows of Q in shared memory (!QREG), sKt: the tile's K rows. */
template <class C>
__device__ __forceinline__ void att_scores(float s[C::NS][4], const uint32_t (*qf)[4],
                                           const att_bf16 *sQw, const att_bf16 *sKt, int lane) {
#pragma unroll
    for (int j = 0; j < C::NS; j++)
        s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
    const int mi = lane >> 3, rr = lane & 7;
#pragma unroll
    for (int kc = 0; kc < C::KC; kc++) {
        uint32_t a[4];
        if constexpr (C::QREG) {
            a[0] = qf[kc][0], a[1] = qf[kc][1], a[2] = qf[kc][2], a[3] = qf[kc][3];
        } else {
            att_ldsm_x4(a, sQw + (lane & 15) * C::SROW + kc * 16 + (lane >> 4) * 8);
        }
#pragma unroll
        for (int j = 0; j < C::NS; j += 2) {
            /* matrices: keys 8j.. x d 16kc.., keys 8j.. x d 16kc+8.., then the same for j+1 */
            uint32_t b[4];
            att_ldsm_x4(b, sKt + (8 * j + rr + 8 * (mi >> 1)) * C::SROW + kc * 16 + 8 * (mi & 1));
            att_mma(s[j], a, b[0], b[1]);
            att_mma(s[j + 1], a, b[2], b[3]);
        }
    }
}

/* Scale, bias and key mask on the raw scores of tile c0 (rows ra = g, rb = g + 8 of the warp). */
template <class C>
__device__ __forceinline__ void att_score_epilogue(float s[C::NS][4], const att_params &p, int h,
                                                   int ra, int rb, int c0, int t) {
    const bool edge = c0 + C::BC > p.Lkv;
#pragma unroll
    for (int j = 0; j < C::NS; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int key = c0 + 8 * j + 2 * t + (e & 1), row = e < 2 ? ra : rb;
            float x = s[j][e] * p.scale;
            if (p.bias_kind != ATT_BIAS_NONE && row < p.Lq && key < p.Lkv)
                x += att_bias(p, h, row, key);
            if (edge && key >= p.Lkv) x = -INFINITY;
            s[j][e] = x;
        }
    }
}

/* Online softmax over one tile for the thread's two rows: m, l (partial over the thread's
 * columns; the quad's partials are summed at the end) and O are rescaled, s becomes P. */
template <class C>
__device__ __forceinline__ void att_softmax_tile(float s[C::NS][4], float o[C::ND][4],
                                                 float m[2], float l[2]) {
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < C::NS; j++) {
        mx[0] = att_nanmax(mx[0], att_nanmax(s[j][0], s[j][1]));
        mx[1] = att_nanmax(mx[1], att_nanmax(s[j][2], s[j][3]));
    }
    float mu[2], alpha[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        mx[r] = att_nanmax(mx[r], __shfl_xor_sync(ATT_FULL_MASK, mx[r], 1));
        mx[r] = att_nanmax(mx[r], __shfl_xor_sync(ATT_FULL_MASK, mx[r], 2));
        const float mnew = att_nanmax(m[r], mx[r]);
        mu[r] = mnew == -INFINITY ? 0.0f : mnew; /* all masked so far: p = 0, not NaN */
        alpha[r] = exp2f((m[r] - mu[r]) * ATT_LOG2E);
        m[r] = mnew;
        l[r] *= alpha[r];
    }
#pragma unroll
    for (int j = 0; j < C::NS; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int r = e >> 1;
            s[j][e] = exp2f((s[j][e] - mu[r]) * ATT_LOG2E);
            l[r] += s[j][e];
        }
    }
#pragma unroll
    for (int dn = 0; dn < C::ND; dn++) {
        o[dn][0] *= alpha[0], o[dn][1] *= alpha[0];
        o[dn][2] *= alpha[1], o[dn][3] *= alpha[1];
    }
}

/* O[16 x HDP] += P[16 x BC] . V_tile: P's accumulator layout is the A-fragment layout of the
 * next product (two adjacent n8 tiles form one k16 chunk), so P never leaves the registers. */
template <class C>
__device__ __forceinline__ void att_pv(float o[C::ND][4], const float s[C::NS][4],
                                       const att_bf16 *sVt, int lane) {
    const int mi = lane >> 3, rr = lane & 7;
#pragma unroll
    for (int kk = 0; kk < C::BC / 16; kk++) {
        uint32_t a[4];
        a[0] = att_pack2(s[2 * kk][0], s[2 * kk][1]);
        a[1] = att_pack2(s[2 * kk][2], s[2 * kk][3]);
        a[2] = att_pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        a[3] = att_pack2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
        for (int dn = 0; dn < C::ND; dn += 2) {
            /* matrices (transposed): keys 16kk.. x d 8dn.., keys 16kk+8.. x d 8dn.., then d+8 */
            uint32_t b[4];
            att_ldsm_x4_t(b, sVt + (16 * kk + rr + 8 * (mi & 1)) * C::SROW + 8 * dn + 8 * (mi >> 1));
            att_mma(o[dn], a, b[0], b[1]);
            att_mma(o[dn + 1], a, b[2], b[3]);
        }
    }
}

/* O / l into o f32 [Lq, NH, HD] for the thread's rows and columns; l == 0 (every key masked)
 * gives zeros. */
template <class C>
__device__ __forceinline__ void att_store(const att_params &p, float o[C::ND][4], float l[2],
                                          int h, int ra, int t) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(ATT_FULL_MASK, l[r], 1);
        l[r] += __shfl_xor_sync(ATT_FULL_MASK, l[r], 2);
    }
    const int64_t ld = (int64_t)p.NH * p.HD;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = ra + 8 * r;
        if (row >= p.Lq) continue;
        float *dst = p.o + (int64_t)row * ld + (int64_t)h * p.HD;
        const float inv = 1.0f / l[r];
#pragma unroll
        for (int dn = 0; dn < C::ND; dn++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int d = 8 * dn + 2 * t + e;
                if (d < p.HD) dst[d] = l[r] == 0.0f ? 0.0f : o[dn][2 * r + e] * inv;
            }
        }
    }
}

/* grid (lq_pad / BR, NH), NT threads, C::SMEM bytes of dynamic shared memory. */
template <class C>
__global__ void __launch_bounds__(C::NT) att_bf16_kernel(att_params p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    extern __shared__ __align__(16) unsigned char att_bf16_sm[];
    att_bf16 *sQ = (att_bf16 *)att_bf16_sm;      /* [BR][SROW] */
    att_bf16 *sK = sQ + C::BR * C::SROW;          /* [2][BC][SROW] */
    att_bf16 *sV = sK + 2 * C::BC * C::SROW;      /* [2][BC][SROW] */
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int h = blockIdx.y, r0 = blockIdx.x * C::BR;
    const att_bf16 *kg = p.kb + (size_t)h * p.lk_pad * C::HDP;
    const att_bf16 *vg = p.vb + (size_t)h * p.lk_pad * C::HDP;
    const int ntiles = (p.Lkv + C::BC - 1) / C::BC;

    att_load_tile<C, C::BR>(sQ, p.qb + ((size_t)h * p.lq_pad + r0) * C::HDP, tid);
    if (ntiles > 0) {
        att_load_tile<C, C::BC>(sK, kg, tid);
        att_load_tile<C, C::BC>(sV, vg, tid);
    }
    att_cp_commit();
    att_cp_wait<0>();
    __syncthreads();

    const att_bf16 *sQw = sQ + warp * 16 * C::SROW;
    uint32_t qf[C::QREG ? C::KC : 1][4];
    if constexpr (C::QREG) {
#pragma unroll
        for (int kc = 0; kc < C::KC; kc++)
            att_ldsm_x4(qf[kc], sQw + (lane & 15) * C::SROW + kc * 16 + (lane >> 4) * 8);
    }
    float o[C::ND][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (int dn = 0; dn < C::ND; dn++) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
    const int ra = r0 + warp * 16 + g, rb = ra + 8;

    for (int n = 0; n < ntiles; n++) {
        const int buf = n & 1;
        if (n + 1 < ntiles) { /* the other buffer was released by the barrier ending n - 1 */
            const size_t off = (size_t)(n + 1) * C::BC * C::HDP;
            att_load_tile<C, C::BC>(sK + (buf ^ 1) * C::BC * C::SROW, kg + off, tid);
            att_load_tile<C, C::BC>(sV + (buf ^ 1) * C::BC * C::SROW, vg + off, tid);
            att_cp_commit();
            att_cp_wait<1>(); /* tile n (older group) is in */
        } else {
            att_cp_wait<0>();
        }
        __syncthreads();
        float s[C::NS][4];
        att_scores<C>(s, qf, sQw, sK + buf * C::BC * C::SROW, lane);
        att_score_epilogue<C>(s, p, h, ra, rb, n * C::BC, t);
        att_softmax_tile<C>(s, o, m, l);
        att_pv<C>(o, s, sV + buf * C::BC * C::SROW, lane);
        __syncthreads(); /* every warp is done with buffer buf */
    }
    att_store<C>(p, o, l, h, ra, t);
#else
    __trap(); /* the host launches this kernel only on sm_80+ */
#endif
}

/* ---------------------------------------------------------------------------------------------
 * host side
 * ------------------------------------------------------------------------------------------- */

static size_t att_align256(size_t n) { return (n + 255) & ~(size_t)255; }
static int64_t att_round_up(int64_t n, int64_t q) { return (n + q - 1) / q * q; }

static wf_status att_launched(wf_err *err) { return wk_cuda_launched(err, "attention"); }

static wf_status att_smem_optin(const void *fn, size_t bytes, wf_err *err) {
    cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)bytes);
    if (e != cudaSuccess) return wk_cuda_fail(err, e, "attention: shared memory opt-in");
    return WF_OK;
}

template <int NI> static wf_status att_f32_launch(wk_cuda *c, const att_params &p, wf_err *err) {
    const size_t smem = att_f32_smem(p.HD);
    wf_status st = att_smem_optin((const void *)att_f32_kernel<NI>, smem, err);
    if (st) return st;
    dim3 grid((unsigned)((p.Lq + F32_BQ - 1) / F32_BQ), (unsigned)p.NH);
    att_f32_kernel<NI><<<grid, F32_WARPS * 32, smem, c->stream>>>(p);
    return att_launched(err);
}

/* NI = ceil(HD / 32) rounded up to 1, 2, 4 or 8 (the lanes past HD idle): four instances. */
static wf_status att_run_f32(wk_cuda *c, const att_params &p, wf_err *err) {
    if (p.HD <= 32) return att_f32_launch<1>(c, p, err);
    if (p.HD <= 64) return att_f32_launch<2>(c, p, err);
    if (p.HD <= 128) return att_f32_launch<4>(c, p, err);
    if (p.HD <= 256) return att_f32_launch<8>(c, p, err);
    return wf_fail(err, WF_EUNSUPPORTED, "attention: head dim %d > 256 is not supported on CUDA",
                   p.HD);
}

/* Tile shapes per padded head dim: 4 warps (Br = 64); Bc = 64 keys, 32 above HDP 128 where the
 * O accumulators take most registers. */
template <int HDP> using att_cfg_for = att_cfg<HDP, 4, (HDP > 128 ? 32 : 64)>;

/* Own bf16 kernel for one padded head dim: q, k, v packed to bf16 [NH, L_pad, HDP] in the
 * workspace (L_pad: Lq rounded up to Br, Lkv to Bc), then the MMA kernel writes o (f32). */
template <int HDP> static wf_status att_bf16_run(wk_backend *be, att_params p, wf_err *err) {
    typedef att_cfg_for<HDP> C;
    wk_cuda *c = wk_cuda_of(be);
    wf_status st;
    p.lq_pad = (int)att_round_up(p.Lq, C::BR);
    p.lk_pad = (int)att_round_up(p.Lkv, C::BC);
    /* workspace: Q [NH, lq_pad, HDP] | K, V [NH, lk_pad, HDP], bf16, each 256-byte aligned */
    const size_t nq = (size_t)p.NH * p.lq_pad * HDP, nk = (size_t)p.NH * p.lk_pad * HDP;
    const size_t bq = att_align256(nq * 2), bk = att_align256(nk * 2);
    void *ws;
    if ((st = wk_backend_workspace(be, bq + 2 * bk, &ws, err)) != WF_OK) {
        wf_err_prefix(err, "attention: ");
        return st;
    }
    att_bf16 *qb = (att_bf16 *)ws, *kb = (att_bf16 *)((char *)ws + bq),
             *vb = (att_bf16 *)((char *)ws + bq + bk);
    att_pack_bf16<<<wk_cuda_blocks((int64_t)nq), WK_CUDA_THREADS, 0, c->stream>>>(
        qb, p.q, p.Lq, p.lq_pad, p.NH, p.HD, HDP);
    if (nk > 0) {
        att_pack_bf16<<<wk_cuda_blocks((int64_t)nk), WK_CUDA_THREADS, 0, c->stream>>>(
            kb, p.k, p.Lkv, p.lk_pad, p.NH, p.HD, HDP);
        att_pack_bf16<<<wk_cuda_blocks((int64_t)nk), WK_CUDA_THREADS, 0, c->stream>>>(
            vb, p.v, p.Lkv, p.lk_pad, p.NH, p.HD, HDP);
    }
    if ((st = att_launched(err)) != WF_OK) return st;
    p.qb = qb, p.kb = kb, p.vb = vb;
    if ((st = att_smem_optin((const void *)att_bf16_kernel<C>, C::SMEM, err)) != WF_OK) return st;
    dim3 grid((unsigned)(p.lq_pad / C::BR), (unsigned)p.NH);
    att_bf16_kernel<C><<<grid, C::NT, C::SMEM, c->stream>>>(p);
    return att_launched(err);
}

/* The bf16 kernel instance for HD: HD rounded up to 16, 32, 64, 128 or 256 (zero columns). */
static wf_status att_run_bf16(wk_backend *be, const att_params &p, wf_err *err) {
    if (p.HD <= 16) return att_bf16_run<16>(be, p, err);
    if (p.HD <= 32) return att_bf16_run<32>(be, p, err);
    if (p.HD <= 64) return att_bf16_run<64>(be, p, err);
    if (p.HD <= 128) return att_bf16_run<128>(be, p, err);
    if (p.HD <= 256) return att_bf16_run<256>(be, p, err);
    return wf_fail(err, WF_EUNSUPPORTED, "attention: head dim %d > 256 is not supported on CUDA",
                   p.HD);
}

/* cuDNN SDPA: bf16 copies of q and of k, v's first Lkv tokens after cuDNN's own workspace (the
 * first *ws_dnn bytes, wk_cuda_sdpa_bf16 takes them), output bf16 widened into o. WF_EUNSUPPORTED
 * (with the reason) when cuDNN has no engine for the shape. */
static wf_status att_run_cudnn(wk_backend *be, const att_params &p, int64_t *engine, wf_err *err) {
    wk_cuda *c = wk_cuda_of(be);
    wf_status st;
    size_t ws_dnn = 0;
    st = wk_cuda_sdpa_prepare(be, p.Lq, p.Lkv, p.NH, p.HD, 0, &ws_dnn, engine, err);
    if (st) return st;
    const int64_t nq = (int64_t)p.Lq * p.NH * p.HD, nk = (int64_t)p.Lkv * p.NH * p.HD;
    /* workspace: cuDNN [ws_dnn] | Q, O bf16 [Lq, NH, HD] | K, V bf16 [Lkv, NH, HD] */
    const size_t b0 = att_align256(ws_dnn), bq = att_align256((size_t)nq * 2),
                 bk = att_align256((size_t)nk * 2);
    void *ws;
    if ((st = wk_backend_workspace(be, b0 + 2 * bq + 2 * bk, &ws, err)) != WF_OK) {
        wf_err_prefix(err, "attention: ");
        return st;
    }
    char *w = (char *)ws + b0;
    att_bf16 *qb = (att_bf16 *)w, *ob = (att_bf16 *)(w + bq), *kb = (att_bf16 *)(w + 2 * bq),
             *vb = (att_bf16 *)(w + 2 * bq + bk);
    att_f32_to_bf16<<<wk_cuda_blocks(nq), WK_CUDA_THREADS, 0, c->stream>>>(qb, p.q, nq);
    att_f32_to_bf16<<<wk_cuda_blocks(nk), WK_CUDA_THREADS, 0, c->stream>>>(kb, p.k, nk);
    att_f32_to_bf16<<<wk_cuda_blocks(nk), WK_CUDA_THREADS, 0, c->stream>>>(vb, p.v, nk);
    if ((st = att_launched(err)) != WF_OK) return st;
    st = wk_cuda_sdpa_bf16(be, ob, qb, kb, vb, p.Lq, p.Lkv, p.NH, p.HD, p.scale, 0, err);
    if (st) return st;
    att_bf16_to_f32<<<wk_cuda_blocks(nq), WK_CUDA_THREADS, 0, c->stream>>>(p.o, ob, nq);
    return att_launched(err);
}

static wf_status att_check_qkv(const wk_tensor *t, const char *arg, wf_err *err) {
    wf_status st = wk_cuda_check_act(t, "attention", arg, err);
    if (st == WF_OK) st = wk_check_ndim(t, 3, "attention", arg, err);
    return st;
}

/* The CPU reference's argument checks (same messages), on device tensors; sets *bias_kind. */
static wf_status att_check(const wk_tensor *o, const wk_tensor *q, const wk_tensor *k,
                           const wk_tensor *v, float scale, const wk_tensor *bias, int *bias_kind,
                           wf_err *err) {
    wf_status st;
    if ((st = att_check_qkv(q, "q", err)) || (st = att_check_qkv(k, "k", err)) ||
        (st = att_check_qkv(v, "v", err)) || (st = att_check_qkv(o, "o", err)))
        return st;
    if ((st = wk_check_same_shape(o, q, "attention", "o", "q", err)) ||
        (st = wk_check_same_shape(v, k, "attention", "v", "k", err)))
        return st;
    const int64_t Lq = q->shape[0], Lk = k->shape[0], NH = q->shape[1], HD = q->shape[2];
    char sq[96], sk[96], sb[96];
    if (k->shape[1] != NH || k->shape[2] != HD)
        return wf_fail(err, WF_EINVAL,
                       "attention: k shape %s must be [Lk, NH, HD] with NH, HD of q %s",
                       wk_tensor_shape_str(k, sk, sizeof sk), wk_tensor_shape_str(q, sq, sizeof sq));
    if (NH < 1 || HD < 1 || NH * HD > INT_MAX / 2 || Lq > INT_MAX || Lk > INT_MAX)
        return wf_fail(err, WF_EINVAL, "attention: q shape %s: NH and HD must be >= 1 and "
                       "NH*HD, Lq, Lk must fit in int", wk_tensor_shape_str(q, sq, sizeof sq));
    if (!isfinite(scale))
        return wf_fail(err, WF_EINVAL, "attention: scale is %g, expected a finite value",
                       (double)scale);
    if ((HD > 256 && NH != 1) || NH > 65535)
        return wf_fail(err, WF_EUNSUPPORTED, "attention: q shape %s: the CUDA kernels take "
                       "HD <= 256 (any HD with one head) and NH <= 65535",
                       wk_tensor_shape_str(q, sq, sizeof sq));
    *bias_kind = ATT_BIAS_NONE;
    if (!bias) return WF_OK;
    if ((st = wk_cuda_check_dev(bias, "attention", "bias", err)) != WF_OK) return st;
    if (bias->dtype >= WK_DTYPE_COUNT)
        return wf_fail(err, WF_EUNSUPPORTED, "attention: bias has unknown dtype %d",
                       (int)bias->dtype);
    if (bias->ndim == 1 && bias->shape[0] == Lk) {
        *bias_kind = ATT_BIAS_KEYS;
    } else if (bias->ndim == 3 && bias->shape[0] == NH && bias->shape[1] == Lq &&
               bias->shape[2] == Lk) {
        *bias_kind = ATT_BIAS_FULL;
    } else {
        return wf_fail(err, WF_EINVAL,
                       "attention: bias shape %s, expected [%lld] (key mask) or "
                       "[%lld, %lld, %lld] (full bias)",
                       wk_tensor_shape_str(bias, sb, sizeof sb), (long long)Lk, (long long)NH,
                       (long long)Lq, (long long)Lk);
    }
    return WF_OK;
}

/* One log line per (path, shape) for this backend: "attention [Lq, Lk, NH, HD]...: what". */
static void att_log_path(wk_cuda *c, int path, const att_params &p, const char *what) {
    const int64_t key[7] = {path, p.Lq, p.Lk, p.Lkv, p.NH, p.HD, p.bias_kind};
    if (!wk_cuda_attn_first(c, key)) return;
    char kv[48] = "";
    if (p.Lkv < p.Lk) snprintf(kv, sizeof kv, " kv_len %d", p.Lkv);
    wk_cuda_log(c, "attention [%d, %d, %d, %d]%s%s: %s", p.Lq, p.Lk, p.NH, p.HD,
                p.bias_kind == ATT_BIAS_FULL ? " + full bias" :
                p.bias_kind == ATT_BIAS_KEYS ? " + key mask" : "", kv, what);
}

/* WK_PREC_BF16: cuDNN when it may and can run the call, else the own bf16 kernel. */
static wf_status att_bf16_paths(wk_backend *be, const att_params &p, wf_err *err) {
    wk_cuda *c = wk_cuda_of(be);
    wf_status st;
    char why[WF_ERR_MSG];
    if (p.bias_kind != ATT_BIAS_NONE) {
        snprintf(why, sizeof why, "a bias is given");
    } else if (p.Lkv == 0) {
        snprintf(why, sizeof why, "no keys");
    } else if (c->attn_path == WK_CUDA_ATTN_OWN) {
        snprintf(why, sizeof why, "WANFARM_CUDA_ATTN=own");
    } else {
        int64_t engine = -1;
        st = att_run_cudnn(be, p, &engine, err);
        if (st == WF_OK) {
            char what[48];
            snprintf(what, sizeof what, "cudnn sdpa engine %lld", (long long)engine);
            att_log_path(c, 1, p, what);
            return WF_OK;
        }
        if (st != WF_EUNSUPPORTED || c->attn_path == WK_CUDA_ATTN_CUDNN) return st;
        snprintf(why, sizeof why, "%s", err ? err->msg : "not supported");
        wf_err_clear(err);
    }
    if (c->attn_path == WK_CUDA_ATTN_CUDNN)
        return wf_fail(err, WF_EUNSUPPORTED, "attention: cuDNN forced (WANFARM_CUDA_ATTN=cudnn) "
                       "cannot run this call: %s", why);
    char what[WF_ERR_MSG + 64];
    if (c->cc_major < 8) { /* no bf16 mma.sync before sm_80: the exact kernel */
        snprintf(what, sizeof what, "own f32 kernel (bf16 kernel needs sm_80+; cudnn: %s)", why);
        att_log_path(c, 3, p, what);
        return att_run_f32(c, p, err);
    }
    snprintf(what, sizeof what, "own bf16 kernel (cudnn: %s)", why);
    att_log_path(c, 2, p, what);
    return att_run_bf16(be, p, err);
}

/* ---- one head wider than 256 (the Wan-VAE mid-block: HD = C = 384 ... 1024) ----
 * Query blocks of ATT_WIDE_BQ rows: S = scale Q_b K^T (an f32 GEMM, [bq, Lkv]), masked and
 * softmaxed row by row in place (one block per row, three passes), then O_b = P V as a GEMM
 * against V^T (transposed once into the workspace). Memory O(BQ * L + HD * L), never L x L.
 * Both GEMMs are f32 x f32 (no TF32), which uses no workspace of the matmul's own, so the
 * workspace taken here stays valid across them. */
#define ATT_WIDE_BQ 1024

/* Block-wide max / sum (blockDim.x a multiple of 32; red: 32 floats of shared memory; the
 * leading barrier makes reusing red safe). */
__device__ __forceinline__ float att_block_max(float v, float *red) {
    v = wk_warp_max(v);
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) red[wid] = v;
    __syncthreads();
    return wk_warp_max(lane < nw ? red[lane] : -INFINITY);
}
__device__ __forceinline__ float att_block_sum(float v, float *red) {
    v = wk_warp_sum(v);
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) red[wid] = v;
    __syncthreads();
    return wk_warp_sum(lane < nw ? red[lane] : 0.0f);
}

/* S[r, j] (row length ld, j < n) := softmax_j(S[r, j] * scale + bias(j)); a row whose keys are
 * all masked gives zeros; NaN propagates (as the CPU: the max of a row with NaN is NaN). */
__global__ void att_wide_softmax(float *S, int64_t ld, int n, float scale, const void *bias,
                                 int bias_dt, int bias_kind, int64_t q0, int64_t Lk) {
    __shared__ float red[32];
    float *row = S + (int64_t)blockIdx.x * ld;
    const int64_t qi = q0 + blockIdx.x;
    float m = -INFINITY;
    int nan = 0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        float b = bias_kind == ATT_BIAS_KEYS   ? wk_ld(bias, bias_dt, j)
                  : bias_kind == ATT_BIAS_FULL ? wk_ld(bias, bias_dt, qi * Lk + j)
                                               : 0.0f;
        float s = row[j] * scale + b;
        row[j] = s;
        nan |= s != s;
        m = fmaxf(m, s);
    }
    m = att_block_max(m, red);
    nan = __syncthreads_or(nan);
    if (nan) m = NAN;
    float l = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        float e = m == -INFINITY ? 0.0f : expf(row[j] - m);
        row[j] = e;
        l += e;
    }
    l = att_block_sum(l, red);
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) row[j] *= inv;
}

/* vt[d, j] = v[j, d]: [Lkv, HD] -> [HD, Lkv] */
__global__ void att_wide_transpose(float *vt, const float *v, int64_t Lkv, int64_t HD) {
    WK_CUDA_FOR(i, Lkv * HD) {
        const int64_t d = i / Lkv, j = i - d * Lkv;
        vt[i] = v[j * HD + d];
    }
}

static wf_status att_run_wide(wk_backend *be, const att_params &p, wf_err *err) {
    wk_cuda *c = wk_cuda_of(be);
    wf_status st;
    const int64_t Lkv = p.Lkv, HD = p.HD, bq_max = p.Lq < ATT_WIDE_BQ ? p.Lq : ATT_WIDE_BQ;
    if (Lkv == 0) { /* every key masked: zeros, as the CPU */
        cudaError_t e = cudaMemsetAsync(p.o, 0, (size_t)p.Lq * HD * sizeof(float), c->stream);
        return e ? wk_cuda_fail(err, e, "attention: zeroing o") : WF_OK;
    }
    const size_t s_bytes = (size_t)(bq_max * Lkv) * sizeof(float);
    const size_t vt_off = (s_bytes + 255) / 256 * 256;
    float *ws = NULL; /* S [bq_max, Lkv] | V^T [HD, Lkv] */
    if ((st = wk_backend_workspace(be, vt_off + (size_t)(HD * Lkv) * sizeof(float), (void **)&ws,
                                   err)))
        return st;
    float *S = ws, *vt = (float *)((char *)ws + vt_off);
    att_wide_transpose<<<wk_cuda_blocks(Lkv * HD), WK_CUDA_THREADS, 0, c->stream>>>(vt, p.v, Lkv,
                                                                                    HD);
    if ((st = wk_cuda_launched(err, "attention"))) return st;
    wk_tensor kt = wk_tensor_2d(WK_F32, (void *)p.k, Lkv, HD), vtt = wk_tensor_2d(WK_F32, vt, HD, Lkv);
    kt.device = vtt.device = WK_DEV_CUDA;
    for (int64_t q0 = 0; q0 < p.Lq; q0 += bq_max) {
        const int64_t bq = p.Lq - q0 < bq_max ? p.Lq - q0 : bq_max;
        wk_tensor qb = wk_tensor_2d(WK_F32, (void *)(p.q + q0 * HD), bq, HD);
        wk_tensor sb = wk_tensor_2d(WK_F32, S, bq, Lkv);
        wk_tensor ob = wk_tensor_2d(WK_F32, p.o + q0 * HD, bq, HD);
        qb.device = sb.device = ob.device = WK_DEV_CUDA;
        if ((st = wk_cuda_matmul(be, &sb, &qb, &kt, NULL, err))) return st; /* S = Q_b K^T */
        att_wide_softmax<<<(unsigned)bq, 256, 0, c->stream>>>(S, Lkv, (int)Lkv, p.scale, p.bias,
                                                              p.bias_dt, p.bias_kind, q0, p.Lk);
        if ((st = wk_cuda_launched(err, "attention"))) return st;
        if ((st = wk_cuda_matmul(be, &ob, &sb, &vtt, NULL, err))) return st; /* O_b = P V */
    }
    return WF_OK;
}

extern "C" wf_status wk_cuda_attention(wk_backend *be, wk_tensor *o, const wk_tensor *q,
                                       const wk_tensor *k, const wk_tensor *v, float scale,
                                       int64_t kv_len, const wk_tensor *bias, wf_err *err) {
    wf_status st;
    int bias_kind = ATT_BIAS_NONE;
    if ((st = att_check(o, q, k, v, scale, bias, &bias_kind, err)) != WF_OK) return st;
    att_params p;
    memset(&p, 0, sizeof p);
    p.q = (const float *)q->data, p.k = (const float *)k->data, p.v = (const float *)v->data;
    p.o = (float *)o->data;
    p.bias = bias ? bias->data : NULL, p.bias_dt = bias ? (int)bias->dtype : 0;
    p.bias_kind = bias_kind;
    p.Lq = (int)q->shape[0], p.Lk = (int)k->shape[0], p.NH = (int)q->shape[1];
    p.HD = (int)q->shape[2], p.scale = scale;
    /* keys [kv_len, Lk) are masked: never read */
    p.Lkv = kv_len > 0 && kv_len < p.Lk ? (int)kv_len : p.Lk;
    if (p.Lq == 0) return WF_OK;
    wk_cuda *c = wk_cuda_of(be);
    if (p.HD > 256) { /* one wide head (att_check): blocked GEMM + softmax, both precisions */
        att_log_path(c, 4, p, "one head wider than 256: blocked f32 GEMMs + row softmax");
        return att_run_wide(be, p, err);
    }
    if (be->precision == WK_PREC_FP32) {
        att_log_path(c, 0, p, "own f32 kernel");
        return att_run_f32(c, p, err);
    }
    return att_bf16_paths(be, p, err);
}
