/* cuda_layout.cu: the CUDA kernels of the data-movement ops: copy_box, permute, timestep_embed,
 * embedding, t5_bias, blend, avgdown3d, dupup3d, upsample2x.
 *
 * What it is:
 *   - copy_box and permute first simplify as kernels/cpu/layout.c does (dims of 1 dropped, dims
 *     that stay contiguous merged). A copy whose innermost dim is contiguous on both sides (every
 *     box; a permutation that keeps the inner dim, e.g. the Ulysses head packing
 *     [Ll, U, Dl] -> [U, Ll, Dl]) is a strided row copy in the widest word (16, 8, 4, 2 or 1
 *     bytes) that the run length, the strides and both addresses allow. A permutation that moves
 *     the inner dim (planar <-> channels-last, patchify) is a batched 2-D transpose through 32 x 33
 *     shared-memory tiles: reads coalesced along x's inner dim, writes along y's.
 *   - rope_table: one thread per (row, pair), angles and cos/sin in double as rope.c, cast to f32.
 *   - timestep_embed, embedding, t5_bias, blend, avgdown3d, dupup3d, upsample2x: one thread per
 *     output element, with the CPU's arithmetic: timestep_embed's exponent and products in f32 as
 *     torch, exp/cos/sin evaluated in double and rounded once (a correctly rounded f32 value, as
 *     glibc's expf/cosf/sinf give); t5_bias's bucket is wk_t5_relative_bucket's formula with every
 *     step in f32 (__fdiv_rn / __fmul_rn) and the log correctly rounded to f32 (through double),
 *     computed once per (i, j) for all heads; blend's weights in double rounded to f32, then two
 *     f32 products and one sum (no FMA); avgdown3d's group mean in double in the CPU's order
 *     (bit-identical); dupup3d and upsample2x are copies.
 * Index decomposition uses wk_idiv (a multiply-shift for 32-bit indices).
 * What it is not: a strided-view engine; in-place permutes (y and x must not overlap).
 * Tested by: tests/test_backend_ops.c, rows copy_box, permute, timestep_embed, embedding, t5_bias,
 * blend, avgdown3d, dupup3d, upsample2x (CPU against CUDA, odd shapes, every element size).
 */
#include <cuda_runtime.h>
#include <math.h>
#include <string.h>

#include "cuda_device.cuh"
#include "cuda_internal.h"
#include "../op_check.h"

/* ---- the strided row copy (copy_box, permutes that keep the inner dim) ---- */

#define LAY_MAX_DIMS WK_MAX_PERM_DIMS

typedef struct lay_copy {
    const void *x;
    void *y;
    int64_t n;                    /* words in all */
    int nd;                       /* outer dims */
    wk_idiv nw;                   /* words per row */
    wk_idiv dim[LAY_MAX_DIMS];    /* outer dims' extents */
    int64_t xs[LAY_MAX_DIMS], ys[LAY_MAX_DIMS]; /* their strides, in words */
} lay_copy;

template <typename W>
__global__ void lay_copy_kernel(lay_copy p) {
    WK_CUDA_FOR(i, p.n) {
        int64_t row = wk_idiv_q(i, p.nw);
        const int64_t w = i - row * p.nw.d;
        int64_t xo = w, yo = w;
        for (int d = p.nd - 1; d >= 0; d--) {
            const int64_t q = wk_idiv_q(row, p.dim[d]), c = row - q * p.dim[d].d;
            xo += c * p.xs[d];
            yo += c * p.ys[d];
            row = q;
        }
        reinterpret_cast<W *>(p.y)[yo] = reinterpret_cast<const W *>(p.x)[xo];
    }
}

/* Rows of `run` elements of esz bytes: outer dims ext[0..nd) with element strides xs, ys from
 * the bases x, y. Picks the widest word that divides the run, every stride and both addresses. */
static wf_status lay_rows(wk_backend *be, void *y, const void *x, int nd, const int64_t *ext,
                          const int64_t *xs, const int64_t *ys, int64_t run, size_t esz,
                          const char *op, wf_err *err) {
    int64_t rows = 1;
    for (int d = 0; d < nd; d++) rows *= ext[d];
    if (rows == 0 || run == 0) return WF_OK;
    uint64_t g = (uint64_t)run * esz | (uintptr_t)x | (uintptr_t)y;
    for (int d = 0; d < nd; d++) g |= (uint64_t)xs[d] * esz | (uint64_t)ys[d] * esz;
    size_t w = 16;
    while (w > 1 && (g & (w - 1))) w >>= 1;
    lay_copy p;
    memset(&p, 0, sizeof p);
    p.x = x;
    p.y = y;
    p.nd = nd;
    const int64_t nw = run * (int64_t)esz / (int64_t)w, ratio = (int64_t)(w / esz);
    p.nw = wk_idiv_make(nw);
    p.n = rows * nw;
    for (int d = 0; d < nd; d++) {
        p.dim[d] = wk_idiv_make(ext[d]);
        p.xs[d] = w >= esz ? xs[d] / ratio : xs[d] * (int64_t)(esz / w);
        p.ys[d] = w >= esz ? ys[d] / ratio : ys[d] * (int64_t)(esz / w);
    }
    cudaStream_t s = wk_cuda_of(be)->stream;
    const unsigned blocks = wk_cuda_blocks(p.n);
    switch (w) {
    case 16: lay_copy_kernel<uint4><<<blocks, WK_CUDA_THREADS, 0, s>>>(p); break;
    case 8: lay_copy_kernel<uint2><<<blocks, WK_CUDA_THREADS, 0, s>>>(p); break;
    case 4: lay_copy_kernel<uint32_t><<<blocks, WK_CUDA_THREADS, 0, s>>>(p); break;
    case 2: lay_copy_kernel<uint16_t><<<blocks, WK_CUDA_THREADS, 0, s>>>(p); break;
    default: lay_copy_kernel<uint8_t><<<blocks, WK_CUDA_THREADS, 0, s>>>(p); break;
    }
    return wk_cuda_launched(err, op);
}

/* ---- copy_box ---- */

static wf_status copy_box_check(const wk_tensor *y, const int64_t *y_off, const wk_tensor *x,
                                const int64_t *x_off, const int64_t *ext, wf_err *err) {
    wf_status st;
    if ((st = wk_cuda_check_dev(x, "copy_box", "x", err))) return st;
    if ((st = wk_cuda_check_dev(y, "copy_box", "y", err))) return st;
    return wk_check_copy_box(y, y_off, x, x_off, ext, err);
}

extern "C" wf_status wk_cuda_copy_box(wk_backend *be, wk_tensor *y, const int64_t *y_off,
                                      const wk_tensor *x, const int64_t *x_off,
                                      const int64_t *ext, wf_err *err) {
    wf_status st = copy_box_check(y, y_off, x, x_off, ext, err);
    if (st) return st;
    int nd = x->ndim;
    int64_t e[WK_MAX_DIMS], xs[WK_MAX_DIMS], ys[WK_MAX_DIMS], xb = 0, yb = 0;
    int64_t xsh[WK_MAX_DIMS], ysh[WK_MAX_DIMS];
    for (int d = nd - 1; d >= 0; d--) { /* element strides and the box's first elements */
        xs[d] = d == nd - 1 ? 1 : xs[d + 1] * x->shape[d + 1];
        ys[d] = d == nd - 1 ? 1 : ys[d + 1] * y->shape[d + 1];
        xb += x_off[d] * xs[d];
        yb += y_off[d] * ys[d];
        e[d] = ext[d];
        xsh[d] = x->shape[d];
        ysh[d] = y->shape[d];
        if (ext[d] == 0) return WF_OK;
    }
    /* whole last rows in both: the box is contiguous across them, one longer run */
    while (nd > 1 && e[nd - 1] == xsh[nd - 1] && e[nd - 1] == ysh[nd - 1]) {
        e[nd - 2] *= e[nd - 1];
        xsh[nd - 2] *= xsh[nd - 1];
        ysh[nd - 2] *= ysh[nd - 1];
        xs[nd - 2] = xs[nd - 1];
        ys[nd - 2] = ys[nd - 1];
        nd--;
    }
    const size_t esz = wk_dtype_size(x->dtype);
    const char *xd = (const char *)x->data + (size_t)xb * esz;
    char *yd = (char *)y->data + (size_t)yb * esz;
    return lay_rows(be, yd, xd, nd - 1, e, xs, ys, e[nd - 1], esz, "copy_box", err);
}

/* ---- permute ---- */

/* The batched 2-D transpose: y[.., b, .., a] = x[.., a, .., b] for the output's inner dim a
 * (input stride sa) and the input's inner dim b (output stride ob); the other dims are a batch
 * with input and output strides. */
typedef struct lay_tr {
    const void *x;
    void *y;
    int64_t A, B, sa, ob;
    int64_t tiles_a, batch;
    int nb;
    wk_idiv bdim[LAY_MAX_DIMS];
    int64_t bxs[LAY_MAX_DIMS], bys[LAY_MAX_DIMS];
} lay_tr;

#define LAY_TILE 32

/* x's and y's offsets of batch element bt */
__device__ __forceinline__ void lay_tr_base(const lay_tr &p, int64_t bt, int64_t &xo,
                                            int64_t &yo) {
    xo = 0, yo = 0;
    for (int d = p.nb - 1; d >= 0; d--) {
        const wk_idiv dv = p.bdim[d];
        const int64_t q = wk_idiv_q(bt, dv), c = bt - q * dv.d;
        xo += c * p.bxs[d];
        yo += c * p.bys[d];
        bt = q;
    }
}

template <typename T>
__global__ void __launch_bounds__(LAY_TILE * 8) lay_transpose_kernel(lay_tr p) {
    __shared__ T tile[LAY_TILE][LAY_TILE + 1];
    const T *x = (const T *)p.x;
    T *y = (T *)p.y;
    const int tb = (int)(blockIdx.x / p.tiles_a), ta = (int)(blockIdx.x - tb * p.tiles_a);
    const int tx = threadIdx.x, ty = threadIdx.y;
    /* this thread's load (a0 + r, b0 + tx) and store (b0 + r, a0 + tx) positions, r = ty + 8 i */
    const int64_t la = (int64_t)ta * LAY_TILE + ty, lb = (int64_t)tb * LAY_TILE + tx;
    const int64_t sb = (int64_t)tb * LAY_TILE + ty, sa = (int64_t)ta * LAY_TILE + tx;
    for (int64_t bt = blockIdx.y; bt < p.batch; bt += gridDim.y) {
        int64_t xo, yo;
        lay_tr_base(p, bt, xo, yo);
#pragma unroll
        for (int r = 0; r < LAY_TILE; r += 8) /* coalesced along x's inner dim b */
            if (la + r < p.A && lb < p.B) tile[ty + r][tx] = x[xo + (la + r) * p.sa + lb];
        __syncthreads();
#pragma unroll
        for (int r = 0; r < LAY_TILE; r += 8) /* coalesced along y's inner dim a */
            if (sa < p.A && sb + r < p.B) y[yo + (sb + r) * p.ob + sa] = tile[tx][ty + r];
        __syncthreads();
    }
}

/* The shared checks (op_check.h) after the device check, and the overlap y must not have. */
static wf_status permute_check(const wk_tensor *y, const wk_tensor *x, int nd,
                               const int64_t *shape, const int *perm, int64_t *n, wf_err *err) {
    wf_status st;
    if ((st = wk_cuda_check_dev(x, "permute", "x", err))) return st;
    if ((st = wk_cuda_check_dev(y, "permute", "y", err))) return st;
    if ((st = wk_check_permute(y, x, nd, shape, perm, n, err))) return st;
    const char *xb = (const char *)x->data, *yb = (const char *)y->data;
    const size_t bytes = (size_t)*n * wk_dtype_size(x->dtype);
    if (*n > 0 && xb < yb + bytes && yb < xb + bytes)
        return wf_fail(err, WF_EINVAL, "permute: y and x overlap; expected separate buffers");
    return WF_OK;
}

/* The output's dims od[0..k) and their strides in x, is[] (layout.c's simplification: dims of 1
 * dropped, an output dim merged into the previous one where x holds the two contiguously). */
static int permute_simplify(int nd, const int64_t *shape, const int *perm, int64_t *od,
                            int64_t *is) {
    int64_t xstr[WK_MAX_PERM_DIMS];
    for (int d = nd - 1; d >= 0; d--) xstr[d] = d == nd - 1 ? 1 : xstr[d + 1] * shape[d + 1];
    int k = 0;
    for (int i = 0; i < nd; i++) {
        int64_t len = shape[perm[i]], str = xstr[perm[i]];
        if (len == 1) continue;
        if (k > 0 && is[k - 1] == str * len) {
            od[k - 1] *= len;
            is[k - 1] = str;
        } else {
            od[k] = len;
            is[k++] = str;
        }
    }
    if (k == 0) od[k] = 1, is[k++] = 1;
    return k;
}

/* The inner dim moves: output dim k-1 (a) is read at stride is[k-1], the output dim j with
 * is[j] == 1 (x's inner dim, b) is written at stride os[j]. */
static wf_status permute_transpose(wk_backend *be, void *y, const void *x, int k,
                                   const int64_t *od, const int64_t *is, size_t esz,
                                   wf_err *err) {
    int64_t os[WK_MAX_PERM_DIMS];
    for (int d = k - 1; d >= 0; d--) os[d] = d == k - 1 ? 1 : os[d + 1] * od[d + 1];
    int j = 0;
    while (j < k - 1 && is[j] != 1) j++;
    WF_ASSERT(j < k - 1); /* x's innermost dim of more than 1 element has stride 1 */
    lay_tr p;
    memset(&p, 0, sizeof p);
    p.x = x;
    p.y = y;
    p.A = od[k - 1];
    p.sa = is[k - 1];
    p.B = od[j];
    p.ob = os[j];
    p.batch = 1;
    for (int d = 0; d < k - 1; d++) {
        if (d == j) continue;
        p.bdim[p.nb] = wk_idiv_make(od[d]);
        p.bxs[p.nb] = is[d];
        p.bys[p.nb] = os[d];
        p.nb++;
        p.batch *= od[d];
    }
    p.tiles_a = (p.A + LAY_TILE - 1) / LAY_TILE;
    const int64_t tiles = p.tiles_a * ((p.B + LAY_TILE - 1) / LAY_TILE);
    if (tiles > 0x7fffffffLL)
        return wf_fail(err, WF_EUNSUPPORTED, "permute: %lld x %lld transpose tiles exceed one "
                       "launch", (long long)p.A, (long long)p.B);
    dim3 grid((unsigned)tiles, (unsigned)(p.batch < 65535 ? p.batch : 65535)), block(LAY_TILE, 8);
    cudaStream_t s = wk_cuda_of(be)->stream;
    if (esz == 4) lay_transpose_kernel<uint32_t><<<grid, block, 0, s>>>(p);
    else if (esz == 2) lay_transpose_kernel<uint16_t><<<grid, block, 0, s>>>(p);
    else lay_transpose_kernel<uint8_t><<<grid, block, 0, s>>>(p);
    return wk_cuda_launched(err, "permute");
}

extern "C" wf_status wk_cuda_permute(wk_backend *be, wk_tensor *y, const wk_tensor *x, int nd,
                                     const int64_t *shape, const int *perm, wf_err *err) {
    int64_t n = 0;
    wf_status st = permute_check(y, x, nd, shape, perm, &n, err);
    if (st) return st;
    if (n == 0) return WF_OK;
    int64_t od[WK_MAX_PERM_DIMS], is[WK_MAX_PERM_DIMS], os[WK_MAX_PERM_DIMS];
    const int k = permute_simplify(nd, shape, perm, od, is);
    const size_t esz = wk_dtype_size(x->dtype);
    if (is[k - 1] != 1) return permute_transpose(be, y->data, x->data, k, od, is, esz, err);
    for (int d = k - 1; d >= 0; d--) os[d] = d == k - 1 ? 1 : os[d + 1] * od[d + 1];
    return lay_rows(be, y->data, x->data, k - 1, od, is, os, od[k - 1], esz, "permute", err);
}

/* ---- timestep_embed ---- */

/* y[i, k] = cos(t_i f_k), y[i, half + k] = sin(t_i f_k), f_k = exp(-ln(10000) k / half): the
 * exponent and the product in f32 as torch; exp, cos, sin correctly rounded to f32 */
__global__ void lay_timestep_kernel(float *y, const float *t, int64_t n, int64_t dim, wk_idiv half,
                                    float neg_log) {
    WK_CUDA_FOR(p, n * half.d) {
        const int64_t i = wk_idiv_q(p, half), k = p - i * half.d;
        const float e = __fmul_rn(neg_log, (float)k);
        const float f = (float)exp((double)__fdiv_rn(e, (float)half.d));
        const float arg = __fmul_rn(t[i], f);
        y[i * dim + k] = (float)cos((double)arg); /* flip_sin_to_cos: cos first */
        y[i * dim + half.d + k] = (float)sin((double)arg);
        if ((dim & 1) && k == 0) y[i * dim + dim - 1] = 0.0f; /* torch pads an odd dim */
    }
}

extern "C" wf_status wk_cuda_timestep_embed(wk_backend *be, wk_tensor *y, const wk_tensor *t,
                                            wf_err *err) {
    wf_status st;
    char s1[96], s2[96];
    if ((st = wk_cuda_check_act(t, "timestep_embed", "t", err))) return st;
    if ((st = wk_cuda_check_act(y, "timestep_embed", "y", err))) return st;
    if (y->ndim != 2 || t->ndim != 1 || t->shape[0] != y->shape[0])
        return wf_fail(err, WF_EINVAL, "timestep_embed: y has shape %s and t %s, expected "
                       "y [n, dim] and t [n]", wk_tensor_shape_str(y, s1, sizeof s1),
                       wk_tensor_shape_str(t, s2, sizeof s2));
    const int64_t n = y->shape[0], dim = y->shape[1], half = dim / 2;
    cudaStream_t s = wk_cuda_of(be)->stream;
    if (n == 0 || dim == 0) return WF_OK;
    if (half == 0) { /* dim 1: only the pad */
        cudaError_t e = cudaMemsetAsync(y->data, 0, (size_t)n * sizeof(float), s);
        return e == cudaSuccess ? WF_OK : wk_cuda_fail(err, e, "timestep_embed: memset");
    }
    const float neg_log = (float)(-log(10000.0));
    lay_timestep_kernel<<<wk_cuda_blocks(n * half), WK_CUDA_THREADS, 0, s>>>(
        (float *)y->data, (const float *)t->data, n, dim, wk_idiv_make(half), neg_log);
    return wk_cuda_launched(err, "timestep_embed");
}

/* ---- embedding ---- */

__global__ void lay_embedding_kernel(float *y, const void *table, int dt, const int32_t *ids,
                                     int64_t L, wk_idiv D, int64_t V) {
    WK_CUDA_FOR(p, L * D.d) {
        const int64_t l = wk_idiv_q(p, D), j = p - l * D.d;
        const int64_t id = ids[l];
        y[p] = id >= 0 && id < V ? wk_ld(table, dt, id * D.d + j) : 0.0f;
    }
}

extern "C" wf_status wk_cuda_embedding(wk_backend *be, wk_tensor *y, const wk_tensor *table,
                                       const wk_tensor *ids, wf_err *err) {
    wf_status st;
    char s1[96], s2[96], s3[96];
    if ((st = wk_cuda_check_dev(table, "embedding", "table", err))) return st;
    if ((st = wk_cuda_check_dev(ids, "embedding", "ids", err))) return st;
    if ((st = wk_cuda_check_act(y, "embedding", "y", err))) return st;
    if ((st = wk_check_dtype(ids, WK_I32, "embedding", "ids", err))) return st;
    if ((st = wk_cuda_check_float(table, "embedding", "table", err))) return st;
    if (table->ndim != 2 || ids->ndim != 1 || y->ndim != 2 || y->shape[0] != ids->shape[0] ||
        y->shape[1] != table->shape[1])
        return wf_fail(err, WF_EINVAL, "embedding: y has shape %s, table %s, ids %s: expected "
                       "y [L, D], table [V, D], ids [L]", wk_tensor_shape_str(y, s1, sizeof s1),
                       wk_tensor_shape_str(table, s2, sizeof s2),
                       wk_tensor_shape_str(ids, s3, sizeof s3));
    const int64_t L = y->shape[0], D = y->shape[1];
    if (L == 0 || D == 0) return WF_OK;
    cudaStream_t s = wk_cuda_of(be)->stream;
    lay_embedding_kernel<<<wk_cuda_blocks(L * D), WK_CUDA_THREADS, 0, s>>>(
        (float *)y->data, table->data, table->dtype, (const int32_t *)ids->data, L,
        wk_idiv_make(D), table->shape[0]);
    return wk_cuda_launched(err, "embedding");
}

/* ---- t5_bias ---- */

/* wk_t5_relative_bucket (transformers' _relative_position_bucket, bidirectional), every step in f32 */
__device__ __forceinline__ int64_t lay_t5_bucket(int64_t rel, int64_t NB, float denom) {
    const int64_t half = NB / 2, max_exact = half / 2;
    const int64_t ret = rel > 0 ? half : 0, n = rel < 0 ? -rel : rel;
    if (n < max_exact) return ret + n;
    const float q = __fdiv_rn((float)n, (float)max_exact);
    const float lg = (float)log((double)q); /* logf, correctly rounded */
    const float v = __fmul_rn(__fdiv_rn(lg, denom), (float)(half - max_exact));
    const int64_t large = v >= (float)(half - 1 - max_exact) ? half - 1 : max_exact + (int64_t)v;
    return ret + large;
}

/* one thread per (i, j), all heads: y[h, i, j] = mask[j] ? table[bucket(j - i), h] : -inf */
__global__ void lay_t5_kernel(float *y, const void *table, int dt, const int32_t *mask,
                              int64_t NH, int64_t Lq, wk_idiv Lk, int64_t NB, float denom) {
    const int64_t plane = Lq * Lk.d;
    WK_CUDA_FOR(p, plane) {
        const int64_t i = wk_idiv_q(p, Lk), j = p - i * Lk.d;
        const bool keep = !mask || mask[j];
        const int64_t b = lay_t5_bucket(j - i, NB, denom);
        for (int64_t h = 0; h < NH; h++)
            y[h * plane + p] = keep ? wk_ld(table, dt, b * NH + h) : -INFINITY;
    }
}

static wf_status t5_bias_check(const wk_tensor *y, const wk_tensor *table, const wk_tensor *mask,
                               int64_t max_distance, wf_err *err) {
    wf_status st;
    char s1[96], s2[96];
    if ((st = wk_cuda_check_act(y, "t5_bias", "y", err))) return st;
    if ((st = wk_cuda_check_dev(table, "t5_bias", "table", err))) return st;
    if (mask && (st = wk_cuda_check_dev(mask, "t5_bias", "mask", err))) return st;
    if ((st = wk_cuda_check_float(table, "t5_bias", "table", err))) return st;
    if (mask && (st = wk_check_dtype(mask, WK_I32, "t5_bias", "mask", err))) return st;
    if (y->ndim != 3 || table->ndim != 2 || table->shape[1] != y->shape[0])
        return wf_fail(err, WF_EINVAL, "t5_bias: y has shape %s and table %s, expected y "
                       "[NH, Lq, Lk] and table [NB, NH]", wk_tensor_shape_str(y, s1, sizeof s1),
                       wk_tensor_shape_str(table, s2, sizeof s2));
    if (mask && (mask->ndim != 1 || mask->shape[0] != y->shape[2]))
        return wf_fail(err, WF_EINVAL, "t5_bias: mask has shape %s, expected [%lld] (y %s)",
                       wk_tensor_shape_str(mask, s1, sizeof s1), (long long)y->shape[2],
                       wk_tensor_shape_str(y, s2, sizeof s2));
    const int64_t NB = table->shape[0];
    if (NB < 4 || max_distance <= NB / 4)
        return wf_fail(err, WF_EINVAL, "t5_bias: %lld buckets and max_distance %lld: expected at "
                       "least 4 buckets and max_distance > buckets/4", (long long)NB,
                       (long long)max_distance);
    return WF_OK;
}

extern "C" wf_status wk_cuda_t5_bias(wk_backend *be, wk_tensor *y, const wk_tensor *table,
                                     const wk_tensor *mask, int64_t max_distance, wf_err *err) {
    wf_status st = t5_bias_check(y, table, mask, max_distance, err);
    if (st) return st;
    const int64_t NH = y->shape[0], Lq = y->shape[1], Lk = y->shape[2], NB = table->shape[0];
    if (NH == 0 || Lq == 0 || Lk == 0) return WF_OK;
    const int64_t max_exact = NB / 2 / 2;
    /* the divisor as wk_t5_relative_bucket makes it: a double log rounded to f32 */
    const float denom = (float)log((double)max_distance / (double)max_exact);
    cudaStream_t s = wk_cuda_of(be)->stream;
    lay_t5_kernel<<<wk_cuda_blocks(Lq * Lk), WK_CUDA_THREADS, 0, s>>>(
        (float *)y->data, table->data, table->dtype,
        mask ? (const int32_t *)mask->data : (const int32_t *)NULL, NH, Lq, wk_idiv_make(Lk), NB,
        denom);
    return wk_cuda_launched(err, "t5_bias");
}

/* ---- blend ---- */

/* Over [O, e, I]: b[o, p, i] = a[o, a_len - e + p, i] * wa(p) + b[o, p, i] * wb(p), with the
 * row strides b_len * I and a_len * I. */
__global__ void lay_blend_kernel(float *b, const float *a, int64_t O, wk_idiv E, wk_idiv I,
                                 int64_t b_len, int64_t a_len) {
    const int64_t e = E.d;
    WK_CUDA_FOR(q, O * e * I.d) {
        const int64_t oi = wk_idiv_q(q, I), i = q - oi * I.d;
        const int64_t o = wk_idiv_q(oi, E), p = oi - o * e;
        const float wa = (float)(1.0 - (double)p / (double)e), wb = (float)((double)p / (double)e);
        float *bp = b + (o * b_len + p) * I.d + i;
        const float pa = __fmul_rn(a[(o * a_len + a_len - e + p) * I.d + i], wa);
        *bp = __fadd_rn(pa, __fmul_rn(*bp, wb));
    }
}

extern "C" wf_status wk_cuda_blend(wk_backend *be, wk_tensor *b, const wk_tensor *a, int axis,
                                   int64_t extent, wf_err *err) {
    wf_status st;
    char sa[96], sb[96];
    if ((st = wk_cuda_check_act(b, "blend", "b [T, h, w, C]", err))) return st;
    if ((st = wk_check_ndim(b, 4, "blend", "b [T, h, w, C]", err))) return st;
    if ((st = wk_cuda_check_act(a, "blend", "a [T, h, w, C]", err))) return st;
    if ((st = wk_check_ndim(a, 4, "blend", "a [T, h, w, C]", err))) return st;
    if (axis != 1 && axis != 2)
        return wf_fail(err, WF_EINVAL, "blend: axis %d, expected 1 (rows: blend_v) or 2 (columns: "
                       "blend_h)", axis);
    if (extent < 0)
        return wf_fail(err, WF_EINVAL, "blend: extent %lld, expected >= 0", (long long)extent);
    for (int d = 0; d < 4; d++)
        if (d != axis && a->shape[d] != b->shape[d])
            return wf_fail(err, WF_EINVAL,
                           "blend: a shape %s and b shape %s differ in dim %d: expected the same "
                           "shape but for dim %d (the axis blended)",
                           wk_tensor_shape_str(a, sa, sizeof sa),
                           wk_tensor_shape_str(b, sb, sizeof sb), d, axis);
    int64_t e = extent;
    if (a->shape[axis] < e) e = a->shape[axis];
    if (b->shape[axis] < e) e = b->shape[axis];
    const int64_t T = b->shape[0], C = b->shape[3];
    /* axis 1: [T, e, w C]; axis 2: [T h, e, C] */
    const int64_t O = axis == 1 ? T : T * b->shape[1], I = axis == 1 ? b->shape[2] * C : C;
    if (e == 0 || O == 0 || I == 0) return WF_OK;
    cudaStream_t s = wk_cuda_of(be)->stream;
    lay_blend_kernel<<<wk_cuda_blocks(O * e * I), WK_CUDA_THREADS, 0, s>>>(
        (float *)b->data, (const float *)a->data, O, wk_idiv_make(e), wk_idiv_make(I),
        b->shape[axis], a->shape[axis]);
    return wk_cuda_launched(err, "blend");
}

/* ---- avgdown3d, dupup3d ---- */

typedef struct lay_sc {
    const float *x;
    float *y;
    int64_t T, H, W, Ci, Co, ft, fs, fac, g; /* g: inputs per output (avgdown), rep (dupup) */
    int64_t pad, drop;
    wk_idiv To, Ho, Wo, Cod;
} lay_sc;

/* the output element p = ((t Ho + i) Wo + j) Co + o as (t, i, j, o) */
__device__ __forceinline__ void lay_sc_coords(const lay_sc &s, int64_t p, int64_t &t, int64_t &i,
                                              int64_t &j, int64_t &o) {
    int64_t q = wk_idiv_q(p, s.Cod);
    o = p - q * s.Co;
    p = q;
    q = wk_idiv_q(p, s.Wo);
    j = p - q * s.Wo.d;
    p = q;
    q = wk_idiv_q(p, s.Ho);
    i = p - q * s.Ho.d;
    t = q;
}

/* vae_ops.c's loop: the group k = o g .. (o + 1) g - 1, folded (c, dt, dh, dw), summed in double
 * in that order, the zero frames in front skipped */
__global__ void lay_avgdown_kernel(lay_sc s, int64_t n) {
    WK_CUDA_FOR(p, n) {
        int64_t t, i, j, o;
        lay_sc_coords(s, p, t, i, j, o);
        const int64_t ff = s.fs * s.fs;
        double acc = 0;
        for (int64_t k = o * s.g; k < (o + 1) * s.g; k++) {
            const int64_t c = k / s.fac, rem = k - c * s.fac;
            const int64_t tt = t * s.ft + rem / ff - s.pad;
            const int64_t hh = i * s.fs + rem / s.fs % s.fs, ww = j * s.fs + rem % s.fs;
            if (tt >= 0) acc += s.x[((tt * s.H + hh) * s.W + ww) * s.Ci + c];
        }
        s.y[p] = (float)(acc / (double)s.g);
    }
}

__global__ void lay_dupup_kernel(lay_sc s, int64_t n) {
    WK_CUDA_FOR(p, n) {
        int64_t t, i, j, o;
        lay_sc_coords(s, p, t, i, j, o);
        const int64_t tf = t + s.drop;
        const int64_t sub = ((tf % s.ft) * s.fs + i % s.fs) * s.fs + j % s.fs;
        s.y[p] = s.x[(((tf / s.ft) * s.H + i / s.fs) * s.W + j / s.fs) * s.Ci +
                     (o * s.fac + sub) / s.g];
    }
}

/* The shared shortcut checks (op_check.h) after the device check; s: the kernels' arguments. */
static wf_status sc_check(const wk_tensor *y, const wk_tensor *x, int64_t ft, int64_t fs,
                          const char *op, lay_sc *s, wf_err *err) {
    wf_status st;
    if ((st = wk_cuda_check_act(x, op, "x [1, T, H, W, C]", err))) return st;
    if ((st = wk_cuda_check_act(y, op, "y [1, T, H, W, C]", err))) return st;
    if ((st = wk_check_shortcut(y, x, ft, fs, op, err))) return st;
    memset(s, 0, sizeof *s);
    s->x = (const float *)x->data;
    s->y = (float *)y->data;
    s->T = x->shape[1], s->H = x->shape[2], s->W = x->shape[3], s->Ci = x->shape[4];
    s->Co = y->shape[4], s->ft = ft, s->fs = fs, s->fac = ft * fs * fs;
    return WF_OK;
}

static wf_status sc_check_y(const wk_tensor *y, const wk_tensor *x, int64_t To, int64_t Ho,
                            int64_t Wo, const char *op, lay_sc *s, wf_err *err) {
    s->To = wk_idiv_make(To), s->Ho = wk_idiv_make(Ho), s->Wo = wk_idiv_make(Wo);
    s->Cod = wk_idiv_make(s->Co);
    return wk_check_shortcut_y(y, x, To, Ho, Wo, op, err);
}

extern "C" wf_status wk_cuda_avgdown3d(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                       int64_t ft, int64_t fs, wf_err *err) {
    lay_sc s;
    char sh[96];
    memset(&s, 0, sizeof s);
    wf_status st = sc_check(y, x, ft, fs, "avgdown3d", &s, err);
    if (st) return st;
    if (s.H % fs || s.W % fs)
        return wf_fail(err, WF_EINVAL, "avgdown3d: x has shape %s: H and W must be multiples of "
                       "fs %lld", wk_tensor_shape_str(x, sh, sizeof sh), (long long)fs);
    s.pad = (ft - s.T % ft) % ft;
    const int64_t To = (s.T + s.pad) / ft, Ho = s.H / fs, Wo = s.W / fs;
    if ((st = sc_check_y(y, x, To, Ho, Wo, "avgdown3d", &s, err))) return st;
    if (s.Co < 1 || (s.Ci * s.fac) % s.Co)
        return wf_fail(err, WF_EINVAL, "avgdown3d: %lld output channels do not divide the %lld "
                       "folded inputs (C %lld x ft fs fs %lld)", (long long)s.Co,
                       (long long)(s.Ci * s.fac), (long long)s.Ci, (long long)s.fac);
    s.g = s.Ci * s.fac / s.Co;
    const int64_t n = wk_tensor_numel(y);
    if (n == 0) return WF_OK;
    lay_avgdown_kernel<<<wk_cuda_blocks(n), WK_CUDA_THREADS, 0, wk_cuda_of(be)->stream>>>(s, n);
    return wk_cuda_launched(err, "avgdown3d");
}

extern "C" wf_status wk_cuda_dupup3d(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                     int64_t ft, int64_t fs, int64_t drop, wf_err *err) {
    lay_sc s;
    memset(&s, 0, sizeof s);
    wf_status st = sc_check(y, x, ft, fs, "dupup3d", &s, err);
    if (st) return st;
    if (drop < 0 || drop > s.T * ft)
        return wf_fail(err, WF_EINVAL, "dupup3d: drop %lld, expected in [0, %lld] (T ft)",
                       (long long)drop, (long long)(s.T * ft));
    s.drop = drop;
    const int64_t To = s.T * ft - drop, Ho = s.H * fs, Wo = s.W * fs;
    if ((st = sc_check_y(y, x, To, Ho, Wo, "dupup3d", &s, err))) return st;
    if (s.Ci < 1 || (s.Co * s.fac) % s.Ci)
        return wf_fail(err, WF_EINVAL, "dupup3d: %lld input channels do not divide the %lld "
                       "unfolded outputs (C %lld x ft fs fs %lld)", (long long)s.Ci,
                       (long long)(s.Co * s.fac), (long long)s.Co, (long long)s.fac);
    s.g = s.Co * s.fac / s.Ci; /* repeat_interleave */
    const int64_t n = wk_tensor_numel(y);
    if (n == 0) return WF_OK;
    lay_dupup_kernel<<<wk_cuda_blocks(n), WK_CUDA_THREADS, 0, wk_cuda_of(be)->stream>>>(s, n);
    return wk_cuda_launched(err, "dupup3d");
}

/* ---- upsample2x ---- */

/* y[n, i, j, c] = x[n, i/2, j/2, c] in units of U floats (C % U == 0) */
template <typename V>
__global__ void lay_up2_kernel(V *y, const V *x, int64_t total, wk_idiv Cu, wk_idiv W2,
                               int64_t W) {
    WK_CUDA_FOR(p, total) {
        const int64_t pix = wk_idiv_q(p, Cu), c = p - pix * Cu.d; /* pix = (n 2H + i) 2W + j */
        const int64_t row = wk_idiv_q(pix, W2), j = pix - row * W2.d; /* row = n 2H + i */
        /* x's row n H + i / 2 is (n 2H + i) / 2: n 2H is even */
        y[p] = x[((row >> 1) * W + (j >> 1)) * Cu.d + c];
    }
}

extern "C" wf_status wk_cuda_upsample2x(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                        wf_err *err) {
    wf_status st;
    char sx[96], sy[96];
    if ((st = wk_cuda_check_act(x, "upsample2x", "x", err))) return st;
    if ((st = wk_cuda_check_act(y, "upsample2x", "y", err))) return st;
    if ((st = wk_check_ndim(x, 4, "upsample2x", "x [N, H, W, C]", err))) return st;
    const int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    if (y->ndim != 4 || y->shape[0] != N || y->shape[1] != 2 * H || y->shape[2] != 2 * W ||
        y->shape[3] != C)
        return wf_fail(err, WF_EINVAL, "upsample2x: y has shape %s, expected [%lld, %lld, %lld, "
                       "%lld] (x %s)", wk_tensor_shape_str(y, sy, sizeof sy), (long long)N,
                       (long long)(2 * H), (long long)(2 * W), (long long)C,
                       wk_tensor_shape_str(x, sx, sizeof sx));
    const int64_t n = wk_tensor_numel(y);
    if (n == 0) return WF_OK;
    cudaStream_t s = wk_cuda_of(be)->stream;
    if (C % 4 == 0 && wk_aligned16(x->data) && wk_aligned16(y->data))
        lay_up2_kernel<float4><<<wk_cuda_blocks(n / 4), WK_CUDA_THREADS, 0, s>>>(
            (float4 *)y->data, (const float4 *)x->data, n / 4, wk_idiv_make(C / 4),
            wk_idiv_make(2 * W), W);
    else
        lay_up2_kernel<float><<<wk_cuda_blocks(n), WK_CUDA_THREADS, 0, s>>>(
            (float *)y->data, (const float *)x->data, n, wk_idiv_make(C), wk_idiv_make(2 * W), W);
    return wk_cuda_launched(err, "upsample2x");
}

/* ---- rope_table ---- */

/* cos/sin [n, hd]: row i is token l0 + i of the (F, H, W) grid (w fastest); its hd values are
 * three axes (t = hd - 2 dh, h = w = dh = 2 (hd / 6)), each pair 2j of an axis of d dims the
 * angle pos / theta^(2j / d), cos and sin in double, cast to f32 and written twice (rope.c). */
__global__ void lay_rope_table_kernel(float *c, float *s, int64_t n, int hd, int64_t l0,
                                      int64_t F, int64_t H, int64_t W, double theta) {
    const int half = hd / 2, dh = 2 * (hd / 6), dt = hd - 2 * dh;
    const int64_t L = F * H * W;
    WK_CUDA_FOR(p, n * half) {
        const int64_t i = p / half;
        const int k = (int)(p - i * half) * 2; /* the pair's first column */
        const int64_t tok = l0 + i;
        float cv = 1.0f, sv = 0.0f; /* padding rows: the identity rotation */
        if (tok < L) {
            int64_t pos;
            int j, d;
            if (k < dt) pos = tok / (H * W), j = k / 2, d = dt;
            else if (k < dt + dh) pos = tok / W % H, j = (k - dt) / 2, d = dh;
            else pos = tok % W, j = (k - dt - dh) / 2, d = dh;
            const double inv_freq = 1.0 / pow(theta, (double)(2 * j) / (double)d);
            const double a = (double)pos * inv_freq;
            cv = (float)cos(a);
            sv = (float)sin(a);
        }
        c[i * hd + k] = c[i * hd + k + 1] = cv;
        s[i * hd + k] = s[i * hd + k + 1] = sv;
    }
}

extern "C" wf_status wk_cuda_rope_table(wk_backend *be, wk_tensor *cos, wk_tensor *sin,
                                        int64_t F, int64_t H, int64_t W, double theta,
                                        int64_t l0, wf_err *err) {
    wf_status st;
    if ((st = wk_cuda_check_act(cos, "rope_table", "cos", err))) return st;
    if ((st = wk_cuda_check_act(sin, "rope_table", "sin", err))) return st;
    if ((st = wk_check_ndim(cos, 2, "rope_table", "cos [n, HD]", err))) return st;
    if ((st = wk_check_same_shape(sin, cos, "rope_table", "sin", "cos", err))) return st;
    const int64_t n = cos->shape[0], hd = cos->shape[1];
    if (hd <= 0 || hd % 2 != 0 || hd > (1 << 20))
        return wf_fail(err, WF_EINVAL,
                       "rope_table_3d: head dim %lld must be positive and even (split into "
                       "t = hd - 4*(hd/6), h = w = 2*(hd/6) rotary dims, each even)",
                       (long long)hd);
    if (F < 0 || H < 0 || W < 0)
        return wf_fail(err, WF_EINVAL, "rope_table_3d: grid F=%lld H=%lld W=%lld is negative",
                       (long long)F, (long long)H, (long long)W);
    if (!(theta > 0) || isinf(theta))
        return wf_fail(err, WF_EINVAL, "rope_table_3d: theta %g must be positive and finite",
                       theta);
    if (l0 < 0)
        return wf_fail(err, WF_EINVAL, "rope_table_3d: rows [%lld, %lld) are negative",
                       (long long)l0, (long long)(l0 + n));
    if (n == 0) return WF_OK;
    cudaStream_t s = wk_cuda_of(be)->stream;
    lay_rope_table_kernel<<<wk_cuda_blocks(n * (hd / 2)), WK_CUDA_THREADS, 0, s>>>(
        (float *)cos->data, (float *)sin->data, n, (int)hd, l0, F, H, W, theta);
    return wk_cuda_launched(err, "rope_table");
}
