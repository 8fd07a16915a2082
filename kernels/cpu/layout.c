/* layout.c: the CPU reference of the data-movement ops: convert, fill, copy_box, permute,
 * timestep_embed, embedding, t5_bias (semantics in kernels/backend.h).
 *
 * What it is: the host-side loops the models ran over activations (patchify/unpatchify, head
 * packing, casts, the timestep sinusoid, the token embedding lookup, T5's relative position bias),
 * as ops of the table, so that model code calls ops only and runs on any backend.
 *   - convert widens to f32 and narrows from it (dtype.h's rounding), in blocks, so a narrow-to-
 *     narrow cast rounds once (f32 holds every narrower value exactly).
 *   - copy_box and permute move 1-, 2- or 4-byte elements; they first merge dims that stay
 *     contiguous (and drop dims of 1), then copy row by row (rows in parallel).
 *   - timestep_embed is dit_timestep_features' fp32 arithmetic, unchanged (torch's order).
 *   - t5_bias computes one bucket per relative position (Lq + Lk - 1 of them, with
 *     wk_t5_relative_bucket: transformers' _relative_position_bucket in fp32) and widens the table
 *     once, both into the workspace; y[h, i, j] = mask[j] ? table[bucket(j - i), h] : -inf, which
 *     is table + (mask ? 0 : -inf) for every finite table entry.
 * Every op checks dtypes, shapes and that its tensors are host (CPU) memory before touching data.
 * What it is not: a strided-view engine (tensors are contiguous; a box or a permutation is the
 * only way to move a non-contiguous part).
 * Tested by: tests/test_ops.c, rows "convert", "fill", "copy_box", "permute", "timestep_embed",
 * "embedding", "t5_bias" in tests/ops_layout.c (double references, odd shapes, guard bytes).
 */
#include <math.h>
#include <string.h>

#include "cpu_ops.h"
#include "../op_check.h"

/* Below this many elements a loop runs on one thread: the fork costs more than it saves. */
#define LAY_PAR_MIN 32768
/* Elements per block of a dtype conversion (one f32 block on each thread's stack: 16 KiB). */
#define LAY_CONV_BLOCK 4096

wf_status wk_cpu_check_host(const wk_tensor *t, const char *op, const char *arg, wf_err *err) {
    if (t->device == WK_DEV_CPU) return WF_OK;
    return wf_fail(err, WF_EINVAL,
                   "%s: %s%s%s is not host memory (device %d): the CPU backend takes CPU tensors",
                   op, arg, t->name ? " " : "", t->name ? t->name : "", (int)t->device);
}

/* A float storage dtype (f32, bf16, f16, f8e4m3), not an index type. */
static wf_status lay_check_float(const wk_tensor *t, const char *op, const char *arg,
                                 wf_err *err) {
    if (t->dtype < WK_DTYPE_COUNT) return WF_OK;
    return wf_fail(err, WF_EUNSUPPORTED,
                   "%s: %s has dtype %s, expected a float dtype (f32, bf16, f16, f8e4m3)", op, arg,
                   wk_dtype_name(t->dtype));
}

wf_status wk_cpu_convert(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err) {
    wf_status st;
    char s1[96], s2[96];
    if ((st = wk_cpu_check_host(x, "convert", "x", err))) return st;
    if ((st = wk_cpu_check_host(y, "convert", "y", err))) return st;
    if ((st = lay_check_float(x, "convert", "x", err))) return st;
    if ((st = lay_check_float(y, "convert", "y", err))) return st;
    int64_t n = wk_tensor_numel(x);
    if (wk_tensor_numel(y) != n)
        return wf_fail(err, WF_EINVAL,
                       "convert: y shape %s has %lld elements, x shape %s has %lld: expected the "
                       "same count", wk_tensor_shape_str(y, s1, sizeof s1),
                       (long long)wk_tensor_numel(y), wk_tensor_shape_str(x, s2, sizeof s2),
                       (long long)n);
    if (n == 0) return WF_OK;
    if (x->dtype == y->dtype) {
        if (y->data != x->data) memmove(y->data, x->data, wk_tensor_nbytes(x));
        return WF_OK;
    }
    const size_t xs = wk_dtype_size(x->dtype), ys = wk_dtype_size(y->dtype);
    const unsigned char *xd = x->data;
    unsigned char *yd = y->data;
    const int64_t nblk = (n + LAY_CONV_BLOCK - 1) / LAY_CONV_BLOCK;
#pragma omp parallel for num_threads(be->nthreads) if (n >= LAY_PAR_MIN) schedule(static)
    for (int64_t b = 0; b < nblk; b++) {
        float tmp[LAY_CONV_BLOCK];
        const int64_t i0 = b * LAY_CONV_BLOCK;
        const size_t m = (size_t)(n - i0 < LAY_CONV_BLOCK ? n - i0 : LAY_CONV_BLOCK);
        const float *f = tmp;
        if (x->dtype == WK_F32) f = (const float *)(const void *)(xd + (size_t)i0 * xs);
        else wk_convert_to_f32(tmp, xd + (size_t)i0 * xs, x->dtype, m);
        if (y->dtype == WK_F32) memcpy(yd + (size_t)i0 * ys, f, m * sizeof(float));
        else wk_convert_from_f32(yd + (size_t)i0 * ys, y->dtype, f, m);
    }
    return WF_OK;
}

wf_status wk_cpu_fill(wk_backend *be, wk_tensor *y, float value, wf_err *err) {
    wf_status st;
    if ((st = wk_cpu_check_host(y, "fill", "y", err))) return st;
    if (y->dtype != WK_F32 && y->dtype != WK_I32)
        return wf_fail(err, WF_EUNSUPPORTED, "fill: y has dtype %s, expected f32 or i32",
                       wk_dtype_name(y->dtype));
    if (y->dtype == WK_I32 && !(value >= -2147483648.0f && value < 2147483648.0f))
        return wf_fail(err, WF_EINVAL, "fill: value %g does not fit the i32 tensor y",
                       (double)value);
    const int64_t n = wk_tensor_numel(y);
    if (y->dtype == WK_F32) {
        float *yd = y->data;
#pragma omp parallel for num_threads(be->nthreads) if (n >= LAY_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) yd[i] = value;
    } else {
        int32_t *yd = y->data, v = (int32_t)value;
#pragma omp parallel for num_threads(be->nthreads) if (n >= LAY_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) yd[i] = v;
    }
    return WF_OK;
}


static wf_status copy_box_check(const wk_tensor *y, const int64_t *y_off, const wk_tensor *x,
                                const int64_t *x_off, const int64_t *ext, wf_err *err) {
    wf_status st;
    if ((st = wk_cpu_check_host(x, "copy_box", "x", err))) return st;
    if ((st = wk_cpu_check_host(y, "copy_box", "y", err))) return st;
    return wk_check_copy_box(y, y_off, x, x_off, ext, err);
}

wf_status wk_cpu_copy_box(wk_backend *be, wk_tensor *y, const int64_t *y_off, const wk_tensor *x,
                          const int64_t *x_off, const int64_t *ext, wf_err *err) {
    wf_status st = copy_box_check(y, y_off, x, x_off, ext, err);
    if (st) return st;
    int nd = x->ndim;
    int64_t e[WK_MAX_DIMS], xs[WK_MAX_DIMS], ys[WK_MAX_DIMS], xb = 0, yb = 0, rows = 1;
    int64_t xsh[WK_MAX_DIMS], ysh[WK_MAX_DIMS]; /* shapes, merged along with the box */
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
        nd--;
    }
    for (int d = 0; d < nd - 1; d++) rows *= e[d];
    const size_t esz = wk_dtype_size(x->dtype), run = (size_t)e[nd - 1] * esz;
    const unsigned char *xd = (const unsigned char *)x->data + (size_t)xb * esz;
    unsigned char *yd = (unsigned char *)y->data + (size_t)yb * esz;
#pragma omp parallel for num_threads(be->nthreads) if (rows * e[nd - 1] >= LAY_PAR_MIN)      \
    schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t rem = r, xo = 0, yo = 0;
        for (int d = nd - 2; d >= 0; d--) {
            int64_t i = rem % e[d];
            rem /= e[d];
            xo += i * xs[d];
            yo += i * ys[d];
        }
        memcpy(yd + (size_t)yo * esz, xd + (size_t)xo * esz, run);
    }
    return WF_OK;
}

/* perm is a permutation of [0, nd) and shape holds as many elements as x, y at least as many. */
static wf_status permute_check(const wk_tensor *y, const wk_tensor *x, int nd,
                               const int64_t *shape, const int *perm, int64_t *n, wf_err *err) {
    wf_status st;
    if ((st = wk_cpu_check_host(x, "permute", "x", err))) return st;
    if ((st = wk_cpu_check_host(y, "permute", "y", err))) return st;
    return wk_check_permute(y, x, nd, shape, perm, n, err);
}

/* One output row: n elements of esz bytes, read from x at stride xs elements. */
static inline void permute_row(unsigned char *y, const unsigned char *x, int64_t n, int64_t xs,
                               size_t esz) {
    if (xs == 1) {
        memcpy(y, x, (size_t)n * esz);
    } else if (esz == 4) {
        uint32_t *yo = (uint32_t *)(void *)y;
        const uint32_t *xi = (const uint32_t *)(const void *)x;
        for (int64_t j = 0; j < n; j++) yo[j] = xi[j * xs];
    } else if (esz == 2) {
        uint16_t *yo = (uint16_t *)(void *)y;
        const uint16_t *xi = (const uint16_t *)(const void *)x;
        for (int64_t j = 0; j < n; j++) yo[j] = xi[j * xs];
    } else {
        for (int64_t j = 0; j < n; j++) y[j] = x[j * xs];
    }
}

wf_status wk_cpu_permute(wk_backend *be, wk_tensor *y, const wk_tensor *x, int nd,
                         const int64_t *shape, const int *perm, wf_err *err) {
    int64_t n = 0;
    wf_status st = permute_check(y, x, nd, shape, perm, &n, err);
    if (st) return st;
    if (n == 0) return WF_OK;
    /* the output's dims od[] and their strides in x, is[]: dims of 1 dropped, and an output dim
     * merged into the previous one where x holds the two contiguously */
    int64_t xstr[WK_MAX_PERM_DIMS], od[WK_MAX_PERM_DIMS], is[WK_MAX_PERM_DIMS];
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
    const int64_t run = od[k - 1], rows = n / run, rs = is[k - 1];
    const size_t esz = wk_dtype_size(x->dtype);
    const unsigned char *xd = x->data;
    unsigned char *yd = y->data;
#pragma omp parallel for num_threads(be->nthreads) if (n >= LAY_PAR_MIN) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t rem = r, xo = 0;
        for (int d = k - 2; d >= 0; d--) {
            xo += rem % od[d] * is[d];
            rem /= od[d];
        }
        permute_row(yd + (size_t)(r * run) * esz, xd + (size_t)xo * esz, run, rs, esz);
    }
    return WF_OK;
}

wf_status wk_cpu_timestep_embed(wk_backend *be, wk_tensor *y, const wk_tensor *t, wf_err *err) {
    wf_status st;
    char s1[96], s2[96];
    if ((st = wk_cpu_check_host(t, "timestep_embed", "t", err))) return st;
    if ((st = wk_cpu_check_host(y, "timestep_embed", "y", err))) return st;
    if ((st = wk_check_dtype(t, WK_F32, "timestep_embed", "t", err))) return st;
    if ((st = wk_check_dtype(y, WK_F32, "timestep_embed", "y", err))) return st;
    if (y->ndim != 2 || t->ndim != 1 || t->shape[0] != y->shape[0])
        return wf_fail(err, WF_EINVAL, "timestep_embed: y has shape %s and t %s, expected "
                       "y [n, dim] and t [n]", wk_tensor_shape_str(y, s1, sizeof s1),
                       wk_tensor_shape_str(t, s2, sizeof s2));
    const int64_t n = y->shape[0], dim = y->shape[1], half = dim / 2;
    const float neg_log = (float)(-log(10000.0));
    const float *td = t->data;
    float *yd = y->data;
#pragma omp parallel for num_threads(be->nthreads) if (n * dim >= LAY_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        for (int64_t k = 0; k < half; k++) {
            float e = neg_log * (float)k;  /* fp32, as torch's arange * scalar */
            float f = expf(e / (float)half);
            float arg = td[i] * f;
            yd[i * dim + k] = cosf(arg);   /* flip_sin_to_cos: cos first */
            yd[i * dim + half + k] = sinf(arg);
        }
        if (dim % 2) yd[i * dim + dim - 1] = 0.0f; /* torch pads an odd dim with a zero */
    }
    return WF_OK;
}

wf_status wk_cpu_embedding(wk_backend *be, wk_tensor *y, const wk_tensor *table,
                           const wk_tensor *ids, wf_err *err) {
    wf_status st;
    char s1[96], s2[96], s3[96];
    if ((st = wk_cpu_check_host(table, "embedding", "table", err))) return st;
    if ((st = wk_cpu_check_host(ids, "embedding", "ids", err))) return st;
    if ((st = wk_cpu_check_host(y, "embedding", "y", err))) return st;
    if ((st = wk_check_dtype(y, WK_F32, "embedding", "y", err))) return st;
    if ((st = wk_check_dtype(ids, WK_I32, "embedding", "ids", err))) return st;
    if ((st = lay_check_float(table, "embedding", "table", err))) return st;
    if (table->ndim != 2 || ids->ndim != 1 || y->ndim != 2 || y->shape[0] != ids->shape[0] ||
        y->shape[1] != table->shape[1])
        return wf_fail(err, WF_EINVAL, "embedding: y has shape %s, table %s, ids %s: expected "
                       "y [L, D], table [V, D], ids [L]", wk_tensor_shape_str(y, s1, sizeof s1),
                       wk_tensor_shape_str(table, s2, sizeof s2),
                       wk_tensor_shape_str(ids, s3, sizeof s3));
    const int64_t L = y->shape[0], D = y->shape[1], V = table->shape[0];
    const size_t esz = wk_dtype_size(table->dtype);
    const int32_t *id = ids->data;
    const unsigned char *tb = table->data;
    float *yd = y->data;
#pragma omp parallel for num_threads(be->nthreads) if (L * D >= LAY_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < L; i++) {
        if (id[i] < 0 || id[i] >= V) { /* the caller's error: zeros, as the contract says */
            memset(yd + i * D, 0, (size_t)D * sizeof *yd);
            continue;
        }
        wk_convert_to_f32(yd + i * D, tb + (size_t)id[i] * (size_t)D * esz, table->dtype,
                          (size_t)D);
    }
    return WF_OK;
}

int wk_t5_relative_bucket(int64_t rel, int64_t num_buckets, int64_t max_distance) {
    int64_t half = num_buckets / 2; /* bidirectional: the upper half is for keys after the query */
    int64_t ret = rel > 0 ? half : 0;
    int64_t n = rel < 0 ? -rel : rel;
    int64_t max_exact = half / 2;
    if (n < max_exact) return (int)(ret + n);
    /* torch: log(n.float() / max_exact) / math.log(max_distance / max_exact) * (half - max_exact),
     * every step in fp32 (the Python double divisor is rounded to fp32 by the tensor op), then
     * .to(long), which truncates toward zero (the value is >= 0 here). */
    const float denom = (float)log((double)max_distance / (double)max_exact);
    float v = logf((float)n / (float)max_exact) / denom * (float)(half - max_exact);
    int64_t large = v >= (float)(half - 1 - max_exact) ? half - 1 : max_exact + (int64_t)v;
    return (int)(ret + large);
}

static wf_status t5_bias_check(const wk_tensor *y, const wk_tensor *table, const wk_tensor *mask,
                               int64_t max_distance, wf_err *err) {
    wf_status st;
    char s1[96], s2[96];
    if ((st = wk_cpu_check_host(y, "t5_bias", "y", err))) return st;
    if ((st = wk_cpu_check_host(table, "t5_bias", "table", err))) return st;
    if (mask && (st = wk_cpu_check_host(mask, "t5_bias", "mask", err))) return st;
    if ((st = wk_check_dtype(y, WK_F32, "t5_bias", "y", err))) return st;
    if ((st = lay_check_float(table, "t5_bias", "table", err))) return st;
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

wf_status wk_cpu_t5_bias(wk_backend *be, wk_tensor *y, const wk_tensor *table,
                         const wk_tensor *mask, int64_t max_distance, wf_err *err) {
    wf_status st = t5_bias_check(y, table, mask, max_distance, err);
    if (st) return st;
    const int64_t NH = y->shape[0], Lq = y->shape[1], Lk = y->shape[2], NB = table->shape[0];
    if (NH == 0 || Lq == 0 || Lk == 0) return WF_OK;
    /* workspace: the table widened [NB, NH] f32, then bucket[j - i + Lq - 1] i32 */
    const int64_t nrel = Lq + Lk - 1;
    float *tab;
    if ((st = wk_backend_workspace(be, (size_t)(NB * NH + nrel) * 4, (void **)&tab, err)))
        return st;
    int32_t *bucket = (int32_t *)(void *)(tab + NB * NH);
    wk_convert_to_f32(tab, table->data, table->dtype, (size_t)(NB * NH));
    for (int64_t r = 0; r < nrel; r++)
        bucket[r] = wk_t5_relative_bucket(r - (Lq - 1), NB, max_distance);
    const int32_t *mk = mask ? mask->data : NULL;
    float *yd = y->data;
#pragma omp parallel for collapse(2) num_threads(be->nthreads)                                 \
    if (NH * Lq * Lk >= LAY_PAR_MIN) schedule(static)
    for (int64_t h = 0; h < NH; h++)
        for (int64_t i = 0; i < Lq; i++) {
            float *row = yd + (h * Lq + i) * Lk;
            const int32_t *b = bucket + (Lq - 1 - i); /* b[j] = bucket of (j - i) */
            for (int64_t j = 0; j < Lk; j++)
                row[j] = !mk || mk[j] ? tab[(int64_t)b[j] * NH + h] : -INFINITY;
        }
    return WF_OK;
}
