/* ops_layout.c: the op-test rows for the fused DiT forms (matmul_gelu, ln_modulate,
 * gate_residual, rms_norm_rope) and the data-movement ops (convert, fill, copy_box, permute,
 * timestep_embed, embedding, t5_bias); tests/test_ops.c runs them, test_ops.h has the contract.
 *
 * What it is: runners that make fresh random inputs (never zeros), run the op through the
 * backend dispatcher into byte-guarded outputs and compare with a naive double-precision
 * reference written from kernels/backend.h. The data-movement ops are exact: their error is the
 * number of elements that differ from the reference (tolerance 0). Each fused op has a second
 * kind of row, "= unfused", whose error counts the elements that differ, bit for bit, from the
 * unfused op sequence the DiT ran before (matmul + gelu_tanh, layer_norm + mul + add, mul + add,
 * rms_norm + rope): on the CPU that must be 0 (fused.c's head comment). Rows named "rejects" check
 * that bad calls fail with the right status and a message naming the op and argument.
 * What it is not: a benchmark, nor the unfused ops' own rows (ops_basic.c).
 * Run: build/tests/test_ops [--filter OP] [--seed S] [--list].
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_ops.h" /* wk_t5_relative_bucket, the reference's bucket (see run_t5_bias) */
#include "test_ops.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers: every buffer of a run in one bag; outputs with 64 guard bytes on each side.
 * ------------------------------------------------------------------------------------------- */
#define OL_MAX 12
#define OL_GUARD 64
#define OL_SENT 0xA7

typedef struct ol_bag {
    unsigned char *mem[OL_MAX];
    size_t gbytes[OL_MAX]; /* guarded: the payload's bytes; 0 for a plain buffer */
    int n;
    bool oom;
} ol_bag;

static void *ol_alloc(ol_bag *b, size_t bytes, bool guarded) {
    WF_ASSERT(b->n < OL_MAX);
    unsigned char *p = malloc(bytes + 2 * OL_GUARD + 1);
    if (!p) b->oom = true;
    else if (guarded) memset(p, OL_SENT, bytes + 2 * OL_GUARD);
    b->mem[b->n] = p;
    b->gbytes[b->n++] = guarded ? bytes : 0;
    return p ? p + OL_GUARD : NULL;
}

static float *ol_normal(ol_bag *b, tu_rng *rng, int64_t n, float mean, float scale) {
    float *p = ol_alloc(b, (size_t)n * sizeof(float), false);
    if (!p) return NULL;
    tu_fill_normal(rng, p, (size_t)n, scale);
    for (int64_t i = 0; i < n; i++) p[i] += mean;
    return p;
}

static double *ol_ref(ol_bag *b, int64_t n) {
    return ol_alloc(b, (size_t)n * sizeof(double), false);
}

/* true when every guard byte of every guarded buffer is intact */
static bool ol_guards_ok(const ol_bag *b) {
    for (int i = 0; i < b->n; i++) {
        if (!b->mem[i] || !b->gbytes[i]) continue;
        const unsigned char *lo = b->mem[i], *hi = b->mem[i] + OL_GUARD + b->gbytes[i];
        for (int k = 0; k < OL_GUARD; k++)
            if (lo[k] != OL_SENT || hi[k] != OL_SENT) return false;
    }
    return true;
}

static void ol_free(ol_bag *b) {
    for (int i = 0; i < b->n; i++) free(b->mem[i]);
    *b = (ol_bag){0};
}

static wf_status ol_nomem(wf_err *e, const char *op) {
    return wf_fail(e, WF_ENOMEM, "%s runner: out of memory for test buffers", op);
}

/* vals rounded to dt in place, stored in a bag buffer: what the op sees, the reference too */
static wk_tensor ol_weight(ol_bag *b, wk_dtype dt, float *vals, int ndim, const int64_t *shape) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    void *p = ol_alloc(b, n * wk_dtype_size(dt), false);
    if (p && vals) {
        wk_convert_from_f32(p, dt, vals, n);
        wk_convert_to_f32(vals, p, dt, n);
    }
    return wk_tensor_make(dt, p, ndim, shape);
}

/* normalised error against ref, and corruption (guards, NaN/Inf where ref is finite) */
static void ol_compare(const ol_bag *b, const float *out, const double *ref, int64_t n,
                       double *err, int *bad) {
    *err = tu_rel_l2(out, ref, (size_t)n);
    *bad = !ol_guards_ok(b) || tu_count_nonfinite(out, ref, (size_t)n) > 0;
}

/* elements of a and b (n of esz bytes) that differ bitwise */
static int64_t ol_count_diff(const void *a, const void *b, int64_t n, size_t esz) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++)
        d += memcmp((const char *)a + i * esz, (const char *)b + i * esz, esz) != 0;
    return d;
}

/* ---------------------------------------------------------------------------------------------
 * convert: p = {n, x dtype, y dtype}. x ~ N(0, 30^2) rounded to its dtype (fp8 gets some values
 * past 448, which the cast turns into NaN, as torch's does); the reference is the scalar
 * conversion of dtype.h (exhaustively tested by test_dtype), the op must give exactly that.
 * ------------------------------------------------------------------------------------------- */
static uint32_t ol_scalar_bits(float v, wk_dtype dt) {
    switch (dt) {
    case WK_F32: {
        uint32_t u;
        memcpy(&u, &v, 4);
        return u;
    }
    case WK_BF16: return wk_f32_to_bf16(v);
    case WK_F16: return wk_f32_to_f16(v);
    default: return wk_f32_to_f8e4m3(v);
    }
}

static uint32_t ol_load_bits(const void *p, wk_dtype dt, int64_t i) {
    size_t esz = wk_dtype_size(dt);
    uint32_t u = 0;
    memcpy(&u, (const char *)p + (size_t)i * esz, esz); /* little-endian */
    return u;
}

static wf_status run_convert(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                             wf_err *e) {
    const int64_t n = c->p[0];
    const wk_dtype xt = (wk_dtype)c->p[1], yt = (wk_dtype)c->p[2];
    wf_status st = WF_OK;
    ol_bag b = {0};
    float *v = ol_normal(&b, rng, n, 0, 30);
    wk_tensor x = ol_weight(&b, xt, v, 1, (int64_t[]){n});
    void *y = ol_alloc(&b, (size_t)n * wk_dtype_size(yt), true);
    if (b.oom) {
        st = ol_nomem(e, c->op);
        goto out;
    }
    /* y as [n/5, 5] when that is the count: a reshape is free */
    wk_tensor yv = n % 5 == 0 ? wk_tensor_2d(yt, y, n / 5, 5) : wk_tensor_1d(yt, y, n);
    if ((st = wk_convert(be, &yv, &x, e))) goto out;
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; i++) wrong += ol_load_bits(y, yt, i) != ol_scalar_bits(v[i], yt);
    *err = (double)wrong;
    *bad = !ol_guards_ok(&b);
out:
    ol_free(&b);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * fill: p = {n, dtype, value * 1000}.
 * ------------------------------------------------------------------------------------------- */
static wf_status run_fill(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                          wf_err *e) {
    (void)rng;
    const int64_t n = c->p[0];
    const wk_dtype dt = (wk_dtype)c->p[1];
    const float value = (float)c->p[2] / 1000.0f;
    wf_status st = WF_OK;
    ol_bag b = {0};
    void *y = ol_alloc(&b, (size_t)n * 4, true);
    if (b.oom) {
        st = ol_nomem(e, c->op);
        goto out;
    }
    wk_tensor yv = wk_tensor_1d(dt, y, n);
    if ((st = wk_fill(be, &yv, value, e))) goto out;
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; i++) {
        if (dt == WK_F32) wrong += ((float *)y)[i] != value;
        else wrong += ((int32_t *)y)[i] != (int32_t)value;
    }
    *err = (double)wrong;
    *bad = !ol_guards_ok(&b);
out:
    ol_free(&b);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * copy_box: p = {config}. Each config: dtype, ndim, x and y shapes, offsets, extents. y starts
 * random: what lies outside the box must stay as it was.
 * ------------------------------------------------------------------------------------------- */
typedef struct ol_box {
    wk_dtype dt;
    int nd;
    int64_t xs[5], ys[5], xo[5], yo[5], ext[5];
} ol_box;

static const ol_box OL_BOXES[] = {
    /* a rank's rows of a [L, D] activation into a smaller one (the DiT's patch rows) */
    {WK_F32, 2, {37, 11}, {20, 11}, {13, 0}, {3, 0}, {17, 11}},
    /* an interior box of a 5-D tensor, every dim cut */
    {WK_F32, 5, {3, 5, 7, 11, 13}, {4, 6, 5, 9, 15}, {1, 2, 3, 4, 5}, {2, 0, 1, 3, 1}, {2, 3, 4, 5, 6}},
    /* bf16 and fp8 elements, whole trailing dims (merged into one run) */
    {WK_BF16, 3, {5, 7, 9}, {6, 7, 9}, {1, 0, 0}, {2, 0, 0}, {4, 7, 9}},
    {WK_F8E4M3, 4, {3, 5, 7, 9}, {3, 6, 7, 9}, {0, 1, 0, 0}, {0, 0, 0, 0}, {3, 4, 7, 9}},
    /* i32, 1-D; and a box of extent 0 (nothing moves) */
    {WK_I32, 1, {101}, {64}, {37}, {5}, {59}},
    {WK_F32, 2, {9, 9}, {9, 9}, {9, 3}, {0, 0}, {0, 5}},
    /* large enough for the threaded path: the VAE's halo rows, [T, H, W, C] */
    {WK_F32, 4, {3, 40, 52, 96}, {3, 2, 52, 96}, {0, 38, 0, 0}, {0, 0, 0, 0}, {3, 2, 52, 96}},
    {WK_F32, 4, {2, 30, 40, 64}, {2, 30, 3, 64}, {0, 0, 37, 0}, {0, 0, 0, 0}, {2, 30, 3, 64}},
};

static int64_t ol_prod(const int64_t *s, int nd) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= s[i];
    return n;
}

static wf_status run_copy_box(const op_case *c, wk_backend *be, tu_rng *rng, double *err,
                              int *bad, wf_err *e) {
    const ol_box *bx = &OL_BOXES[c->p[0]];
    const int nd = bx->nd;
    const size_t esz = wk_dtype_size(bx->dt);
    const int64_t nx = ol_prod(bx->xs, nd), ny = ol_prod(bx->ys, nd);
    wf_status st = WF_OK;
    ol_bag b = {0};
    unsigned char *x = ol_alloc(&b, (size_t)nx * esz, false);
    unsigned char *y = ol_alloc(&b, (size_t)ny * esz, true);
    unsigned char *ref = ol_alloc(&b, (size_t)ny * esz, false);
    if (b.oom) {
        st = ol_nomem(e, c->op);
        goto out;
    }
    for (int64_t i = 0; i < nx * (int64_t)esz; i++) x[i] = (unsigned char)(tu_next(rng) | 1);
    for (int64_t i = 0; i < ny * (int64_t)esz; i++) y[i] = (unsigned char)(tu_next(rng) | 1);
    memcpy(ref, y, (size_t)ny * esz);
    wk_tensor xt = wk_tensor_make(bx->dt, x, nd, bx->xs), yt = wk_tensor_make(bx->dt, y, nd, bx->ys);
    if ((st = wk_copy_box(be, &yt, bx->yo, &xt, bx->xo, bx->ext, e))) goto out;
    /* reference: every element of the box, by its multi-index */
    const int64_t nb = ol_prod(bx->ext, nd);
    for (int64_t k = 0; k < nb; k++) {
        int64_t rem = k, xi = 0, yi = 0, xm = 1, ym = 1;
        for (int d = nd - 1; d >= 0; d--) {
            int64_t i = rem % bx->ext[d];
            rem /= bx->ext[d];
            xi += (bx->xo[d] + i) * xm;
            yi += (bx->yo[d] + i) * ym;
            xm *= bx->xs[d];
            ym *= bx->ys[d];
        }
        memcpy(ref + yi * esz, x + xi * esz, esz);
    }
    *err = (double)ol_count_diff(y, ref, ny, esz);
    *bad = !ol_guards_ok(&b);
out:
    ol_free(&b);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * permute: p = {config}. Each config: dtype, nd, shape, perm (the DiT's patchify and unpatchify,
 * Ulysses' head packing, planar <-> channels-last, dims of 1, every element size).
 * ------------------------------------------------------------------------------------------- */
typedef struct ol_perm {
    wk_dtype dt;
    int nd;
    int64_t shape[8];
    int perm[8];
} ol_perm;

static const ol_perm OL_PERMS[] = {
    /* patchify: latents [Cin, Fp, pt, Hp, ph, Wp, pw] -> [Fp, Hp, Wp, Cin, pt, ph, pw] */
    {WK_F32, 7, {5, 3, 1, 7, 2, 9, 2}, {1, 3, 5, 0, 2, 4, 6}},
    {WK_F32, 7, {16, 6, 1, 22, 2, 26, 2}, {1, 3, 5, 0, 2, 4, 6}},
    /* unpatchify: head [Fp, Hp, Wp, pt, ph, pw, Cout] -> [Cout, Fp, pt, Hp, ph, Wp, pw] */
    {WK_F32, 7, {3, 7, 9, 1, 2, 2, 5}, {6, 0, 3, 1, 4, 2, 5}},
    /* head packing for Ulysses: [Ll, U, D/U] -> [U, Ll, D/U] and back */
    {WK_F32, 3, {53, 3, 24}, {1, 0, 2}},
    {WK_F32, 3, {3, 53, 24}, {1, 0, 2}},
    /* planar [C, T, H, W] <-> channels-last [T, H, W, C], bf16 and f16 */
    {WK_BF16, 4, {7, 3, 11, 13}, {1, 2, 3, 0}},
    {WK_F16, 4, {3, 11, 13, 7}, {3, 0, 1, 2}},
    /* fp8, i32, a transpose, the identity, 8 dims with ones */
    {WK_F8E4M3, 2, {37, 61}, {1, 0}},
    {WK_I32, 3, {5, 7, 11}, {2, 1, 0}},
    {WK_F32, 3, {5, 7, 11}, {0, 1, 2}},
    {WK_F32, 8, {2, 1, 3, 1, 5, 2, 1, 3}, {7, 0, 5, 2, 6, 1, 4, 3}},
};

static wf_status run_permute(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                             wf_err *e) {
    const ol_perm *pm = &OL_PERMS[c->p[0]];
    const int nd = pm->nd;
    const size_t esz = wk_dtype_size(pm->dt);
    const int64_t n = ol_prod(pm->shape, nd);
    wf_status st = WF_OK;
    ol_bag b = {0};
    unsigned char *x = ol_alloc(&b, (size_t)n * esz, false);
    unsigned char *y = ol_alloc(&b, (size_t)n * esz, true);
    unsigned char *ref = ol_alloc(&b, (size_t)n * esz, false);
    if (b.oom) {
        st = ol_nomem(e, c->op);
        goto out;
    }
    for (int64_t i = 0; i < n * (int64_t)esz; i++) x[i] = (unsigned char)(tu_next(rng) | 1);
    wk_tensor xt = wk_tensor_1d(pm->dt, x, n), yt = wk_tensor_2d(pm->dt, y, 1, n);
    if ((st = wk_permute(be, &yt, &xt, nd, pm->shape, pm->perm, e))) goto out;
    /* reference: output element k at multi-index (i_0..i_{nd-1}) of the permuted shape reads
     * x at input index j with j[perm[d]] = i_d */
    int64_t xstr[8];
    for (int d = nd - 1; d >= 0; d--) xstr[d] = d == nd - 1 ? 1 : xstr[d + 1] * pm->shape[d + 1];
    for (int64_t k = 0; k < n; k++) {
        int64_t rem = k, xi = 0;
        for (int d = nd - 1; d >= 0; d--) {
            int64_t len = pm->shape[pm->perm[d]];
            xi += rem % len * xstr[pm->perm[d]];
            rem /= len;
        }
        memcpy(ref + k * esz, x + xi * esz, esz);
    }
    *err = (double)ol_count_diff(y, ref, n, esz);
    *bad = !ol_guards_ok(&b);
out:
    ol_free(&b);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * timestep_embed: p = {n, dim}. t uniform in [0, 1000) (the schedulers' range).
 * ------------------------------------------------------------------------------------------- */
static wf_status run_timestep(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                              wf_err *e) {
    const int64_t n = c->p[0], dim = c->p[1], half = dim / 2;
    wf_status st = WF_OK;
    ol_bag b = {0};
    float *t = ol_alloc(&b, (size_t)n * sizeof(float), false);
    float *y = ol_alloc(&b, (size_t)(n * dim) * sizeof(float), true);
    double *ref = ol_ref(&b, n * dim);
    if (b.oom) {
        st = ol_nomem(e, c->op);
        goto out;
    }
    tu_fill_uniform(rng, t, (size_t)n, 0.0f, 1000.0f);
    wk_tensor tt = wk_tensor_1d(WK_F32, t, n), yt = wk_tensor_2d(WK_F32, y, n, dim);
    if ((st = wk_timestep_embed(be, &yt, &tt, e))) goto out;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t k = 0; k < half; k++) {
            double a = t[i] * exp(-log(10000.0) * (double)k / (double)half);
            ref[i * dim + k] = cos(a);
            ref[i * dim + half + k] = sin(a);
        }
        if (dim % 2) ref[i * dim + dim - 1] = 0.0;
    }
    ol_compare(&b, y, ref, n * dim, err, bad);
out:
    ol_free(&b);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * rope_table: p = {F, H, W, HD, l0, n}: rows [l0, l0 + n) of an (F, H, W) grid's tables against
 * wan_spec.md 1.4 written out in double (t = HD - 4 (HD/6), h = w = 2 (HD/6) dims; pair j of an
 * axis of d dims turns by pos / 10000^(2j/d)); rows past F H W are the identity.
 * ------------------------------------------------------------------------------------------- */
static wf_status run_rope_table(const op_case *c, wk_backend *be, tu_rng *rng, double *err,
                                int *bad, wf_err *e) {
    (void)rng;
    const int64_t F = c->p[0], H = c->p[1], W = c->p[2], hd = c->p[3], l0 = c->p[4], n = c->p[5];
    wf_status st = WF_OK;
    ol_bag b = {0};
    float *cs = ol_alloc(&b, (size_t)(2 * n * hd) * sizeof(float), true);
    double *ref = ol_ref(&b, 2 * n * hd);
    if (b.oom) {
        st = ol_nomem(e, c->op);
        goto out;
    }
    wk_tensor ct = wk_tensor_2d(WK_F32, cs, n, hd), stt = wk_tensor_2d(WK_F32, cs + n * hd, n, hd);
    if ((st = wk_rope_table(be, &ct, &stt, F, H, W, 10000.0, l0, e))) goto out;
    const int64_t dh = 2 * (hd / 6), dt = hd - 2 * dh;
    for (int64_t i = 0; i < n; i++) {
        const int64_t tok = l0 + i, pos[3] = {tok / (H * W), tok / W % H, tok % W};
        const int64_t dims[3] = {dt, dh, dh};
        for (int64_t k = 0, ax = 0, base = 0; k < hd; k += 2) {
            while (k >= base + dims[ax]) base += dims[ax++];
            double a = (double)pos[ax] / pow(10000.0, (double)(k - base) / (double)dims[ax]);
            bool real = tok < F * H * W;
            ref[i * hd + k] = ref[i * hd + k + 1] = real ? cos(a) : 1.0;
            ref[(n + i) * hd + k] = ref[(n + i) * hd + k + 1] = real ? sin(a) : 0.0;
        }
    }
    ol_compare(&b, cs, ref, 2 * n * hd, err, bad);
out:
    ol_free(&b);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * embedding: p = {V, D, L}; table [V, D] in wdt. Two ids are out of range (-1 and V): zeros.
 * ------------------------------------------------------------------------------------------- */
static wf_status run_embedding(const op_case *c, wk_backend *be, tu_rng *rng, double *err,
                               int *bad, wf_err *e) {
    const int64_t V = c->p[0], D = c->p[1], L = c->p[2];
    wf_status st = WF_OK;
    ol_bag b = {0};
    float *tv = ol_normal(&b, rng, V * D, 0, 1);
    wk_tensor tab = ol_weight(&b, c->wdt, tv, 2, (int64_t[]){V, D});
    int32_t *ids = ol_alloc(&b, (size_t)L * sizeof(int32_t), false);
    float *y = ol_alloc(&b, (size_t)(L * D) * sizeof(float), true);
    if (b.oom) {
        st = ol_nomem(e, c->op);
        goto out;
    }
    for (int64_t i = 0; i < L; i++) ids[i] = (int32_t)(tu_next(rng) % (uint64_t)V);
    if (L > 3) ids[1] = -1, ids[3] = (int32_t)V;
    wk_tensor it = wk_tensor_1d(WK_I32, ids, L), yt = wk_tensor_2d(WK_F32, y, L, D);
    if ((st = wk_embedding(be, &yt, &tab, &it, e))) goto out;
    int64_t wrong = 0;
    for (int64_t i = 0; i < L; i++)
        for (int64_t j = 0; j < D; j++) {
            double r = ids[i] < 0 || ids[i] >= V ? 0.0 : tv[(int64_t)ids[i] * D + j];
            wrong += (double)y[i * D + j] != r;
        }
    *err = (double)wrong;
    *bad = !ol_guards_ok(&b);
out:
    ol_free(&b);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * t5_bias: p = {NH, Lq, Lk, NB, max_distance, mask}; table [NB, NH] in wdt; mask 1: the last
 * third of the keys are padding. The bucket is the kernel's own (wk_t5_relative_bucket): its fp32
 * numerics are checked against transformers' buckets in tests/test_umt5.c; here the op's
 * lookup, layout and mask, exactly.
 * ------------------------------------------------------------------------------------------- */
static wf_status run_t5_bias(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                             wf_err *e) {
    const int64_t NH = c->p[0], Lq = c->p[1], Lk = c->p[2], NB = c->p[3], md = c->p[4];
    const bool has_mask = c->p[5] != 0;
    wf_status st = WF_OK;
    ol_bag b = {0};
    float *tv = ol_normal(&b, rng, NB * NH, 0, 1);
    wk_tensor tab = ol_weight(&b, c->wdt, tv, 2, (int64_t[]){NB, NH});
    int32_t *mask = ol_alloc(&b, (size_t)Lk * sizeof(int32_t), false);
    float *y = ol_alloc(&b, (size_t)(NH * Lq * Lk) * sizeof(float), true);
    if (b.oom) {
        st = ol_nomem(e, c->op);
        goto out;
    }
    for (int64_t j = 0; j < Lk; j++) mask[j] = j < Lk - Lk / 3;
    wk_tensor mt = wk_tensor_1d(WK_I32, mask, Lk), yt = wk_tensor_3d(WK_F32, y, NH, Lq, Lk);
    if ((st = wk_t5_bias(be, &yt, &tab, has_mask ? &mt : NULL, md, e))) goto out;
    int64_t wrong = 0;
    for (int64_t h = 0; h < NH; h++)
        for (int64_t i = 0; i < Lq; i++)
            for (int64_t j = 0; j < Lk; j++) {
                int bk = wk_t5_relative_bucket(j - i, NB, md);
                float r = has_mask && !mask[j] ? -INFINITY : tv[bk * NH + h];
                wrong += y[(h * Lq + i) * Lk + j] != r;
            }
    *err = (double)wrong;
    *bad = !ol_guards_ok(&b);
out:
    ol_free(&b);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * The fused forms. p[7] = 1: the "= unfused" row, whose error is the number of elements that
 * differ bitwise from the unfused op sequence on the same inputs (tolerance 0).
 *
 * matmul_gelu: p = {M, K, N, bias, -, -, -, unfused}; w [N, K], bias [N] in wdt.
 * ------------------------------------------------------------------------------------------- */
static double ol_gelu(double v) {
    return 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
}

static wf_status run_matmul_gelu(const op_case *c, wk_backend *be, tu_rng *rng, double *err,
                                 int *bad, wf_err *e) {
    const int64_t M = c->p[0], K = c->p[1], N = c->p[2];
    const bool has_bias = c->p[3] != 0, unfused = c->p[7] != 0;
    wf_status st = WF_OK;
    ol_bag b = {0};
    float *x = ol_normal(&b, rng, M * K, 0, 1);
    float *wv = ol_normal(&b, rng, N * K, 0, 1.0f / sqrtf((float)K)); /* outputs of order 1 */
    float *bv = ol_normal(&b, rng, N, 0, 1);
    wk_tensor w = ol_weight(&b, c->wdt, wv, 2, (int64_t[]){N, K});
    wk_tensor bt = ol_weight(&b, c->wdt, bv, 1, (int64_t[]){N});
    float *y = ol_alloc(&b, (size_t)(M * N) * sizeof(float), true);
    float *u = ol_alloc(&b, (size_t)(M * N) * sizeof(float), false);
    double *ref = ol_ref(&b, M * N);
    if (b.oom) {
        st = ol_nomem(e, c->op);
        goto out;
    }
    wk_tensor xt = wk_tensor_2d(WK_F32, x, M, K), yt = wk_tensor_2d(WK_F32, y, M, N);
    const wk_tensor *bp = has_bias ? &bt : NULL;
    if ((st = wk_matmul_gelu(be, &yt, &xt, &w, bp, e))) goto out;
    if (unfused) {
        wk_tensor ut = wk_tensor_2d(WK_F32, u, M, N);
        if ((st = wk_matmul(be, &ut, &xt, &w, bp, e)) || (st = wk_gelu_tanh(be, &ut, &ut, e)))
            goto out;
        *err = (double)ol_count_diff(y, u, M * N, 4);
        *bad = !ol_guards_ok(&b);
        goto out;
    }
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double acc = has_bias ? bv[n] : 0.0;
            for (int64_t k = 0; k < K; k++) acc += (double)x[m * K + k] * wv[n * K + k];
            ref[m * N + n] = ol_gelu(acc);
        }
    ol_compare(&b, y, ref, M * N, err, bad);
out:
    ol_free(&b);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * ln_modulate: p = {R, D, scale rows, shift rows, mean, -, in place, unfused}; x [R, D] ~
 * N(mean, 2^2); scale1 ~ N(1, 0.3^2) and shift ~ N(0, 1), [1, D] or [R, D] (rows 0 or 1).
 * ------------------------------------------------------------------------------------------- */
static wf_status run_ln_modulate(const op_case *c, wk_backend *be, tu_rng *rng, double *err,
                                 int *bad, wf_err *e) {
    const int64_t R = c->p[0], D = c->p[1], Rs = c->p[2] ? R : 1, Rh = c->p[3] ? R : 1;
    const bool in_place = c->p[6] != 0, unfused = c->p[7] != 0;
    const float eps = 1e-6f;
    wf_status st = WF_OK;
    ol_bag b = {0};
    float *x = ol_normal(&b, rng, R * D, (float)c->p[4], 2);
    float *sc = ol_normal(&b, rng, Rs * D, 1, 0.3f), *sh = ol_normal(&b, rng, Rh * D, 0, 1);
    float *y = ol_alloc(&b, (size_t)(R * D) * sizeof(float), true);
    float *u = ol_alloc(&b, (size_t)(R * D) * sizeof(float), false);
    double *ref = ol_ref(&b, R * D);
    if (b.oom) {
        st = ol_nomem(e, c->op);
        goto out;
    }
    if (in_place) memcpy(y, x, (size_t)(R * D) * sizeof(float));
    wk_tensor xt = wk_tensor_2d(WK_F32, in_place ? y : x, R, D), yt = wk_tensor_2d(WK_F32, y, R, D);
    wk_tensor st1 = wk_tensor_2d(WK_F32, sc, Rs, D), sht = wk_tensor_2d(WK_F32, sh, Rh, D);
    if ((st = wk_ln_modulate(be, &yt, &xt, &st1, &sht, eps, e))) goto out;
    if (unfused) {
        wk_tensor x0 = wk_tensor_2d(WK_F32, x, R, D), ut = wk_tensor_2d(WK_F32, u, R, D);
        if ((st = wk_layer_norm(be, &ut, &x0, NULL, NULL, eps, e)) ||
            (st = wk_mul(be, &ut, &ut, &st1, e)) || (st = wk_add(be, &ut, &ut, &sht, e)))
            goto out;
        *err = (double)ol_count_diff(y, u, R * D, 4);
        *bad = !ol_guards_ok(&b);
        goto out;
    }
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * D;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < D; i++) mean += xr[i];
        mean /= (double)D;
        for (int64_t i = 0; i < D; i++) var += (xr[i] - mean) * (xr[i] - mean);
        var /= (double)D;
        for (int64_t i = 0; i < D; i++)
            ref[r * D + i] = (xr[i] - mean) / sqrt(var + eps) * sc[(c->p[2] ? r * D : 0) + i] +
                             sh[(c->p[3] ? r * D : 0) + i];
    }
    ol_compare(&b, y, ref, R * D, err, bad);
out:
    ol_free(&b);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * gate_residual: p = {R, D, gate rows, -, -, -, -, unfused}; x, y [R, D] ~ N(0, 1), gate
 * ~ N(0, 1) [1, D] or [R, D].
 * ------------------------------------------------------------------------------------------- */
static wf_status run_gate_residual(const op_case *c, wk_backend *be, tu_rng *rng, double *err,
                                   int *bad, wf_err *e) {
    const int64_t R = c->p[0], D = c->p[1], Rg = c->p[2] ? R : 1;
    const bool unfused = c->p[7] != 0;
    wf_status st = WF_OK;
    ol_bag b = {0};
    float *x0 = ol_normal(&b, rng, R * D, 0, 1), *yv = ol_normal(&b, rng, R * D, 0, 1);
    float *g = ol_normal(&b, rng, Rg * D, 0, 1);
    float *x = ol_alloc(&b, (size_t)(R * D) * sizeof(float), true);
    float *u = ol_alloc(&b, (size_t)(R * D) * sizeof(float), false);
    double *ref = ol_ref(&b, R * D);
    if (b.oom) {
        st = ol_nomem(e, c->op);
        goto out;
    }
    memcpy(x, x0, (size_t)(R * D) * sizeof(float));
    wk_tensor xt = wk_tensor_2d(WK_F32, x, R, D), yt = wk_tensor_2d(WK_F32, yv, R, D);
    wk_tensor gt = wk_tensor_2d(WK_F32, g, Rg, D);
    if ((st = wk_gate_residual(be, &xt, &yt, &gt, e))) goto out;
    if (unfused) { /* q = y * gate; x = x + q */
        float *q = ref ? (float *)ref : NULL; /* scratch: ref is not needed in this mode */
        memcpy(u, x0, (size_t)(R * D) * sizeof(float));
        wk_tensor ut = wk_tensor_2d(WK_F32, u, R, D), qt = wk_tensor_2d(WK_F32, q, R, D);
        if ((st = wk_mul(be, &qt, &yt, &gt, e)) || (st = wk_add(be, &ut, &ut, &qt, e))) goto out;
        *err = (double)ol_count_diff(x, u, R * D, 4);
        *bad = !ol_guards_ok(&b);
        goto out;
    }
    for (int64_t r = 0; r < R; r++)
        for (int64_t i = 0; i < D; i++)
            ref[r * D + i] = (double)x0[r * D + i] +
                             (double)yv[r * D + i] * g[(c->p[2] ? r * D : 0) + i];
    ol_compare(&b, x, ref, R * D, err, bad);
out:
    ol_free(&b);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * rms_norm_rope: p = {L, NH, HD, F, H, W, in place, unfused}; w [NH*HD] ~ N(1, 0.5^2) in wdt;
 * with F > 0 the tables are wk_rope_table_3d(F, H, W, HD) (L = F*H*W), else random angles.
 * ------------------------------------------------------------------------------------------- */
static wf_status run_rms_norm_rope(const op_case *c, wk_backend *be, tu_rng *rng, double *err,
                                   int *bad, wf_err *e) {
    int64_t L = c->p[0], NH = c->p[1], HD = c->p[2], F = c->p[3], H = c->p[4], W = c->p[5];
    const bool in_place = c->p[6] != 0, unfused = c->p[7] != 0;
    const float eps = 1e-6f;
    if (F > 0) L = F * H * W;
    const int64_t C = NH * HD, n = L * C;
    wf_status st = WF_OK;
    ol_bag b = {0};
    float *x = ol_normal(&b, rng, n, 0, 2);
    float *wv = ol_normal(&b, rng, C, 1, 0.5f);
    wk_tensor w = ol_weight(&b, c->wdt, wv, 1, (int64_t[]){C});
    float *cs = ol_alloc(&b, (size_t)(L * HD) * sizeof(float), false);
    float *sn = ol_alloc(&b, (size_t)(L * HD) * sizeof(float), false);
    float *y = ol_alloc(&b, (size_t)n * sizeof(float), true);
    float *u = ol_alloc(&b, (size_t)n * sizeof(float), false);
    double *ref = ol_ref(&b, n);
    if (b.oom) {
        st = ol_nomem(e, c->op);
        goto out;
    }
    if (F > 0) {
        if ((st = wk_rope_table_3d(cs, sn, F, H, W, (int)HD, 10000.0, e))) goto out;
    } else {
        for (int64_t i = 0; i < L * HD; i += 2) {
            double a = (2 * tu_uniform(rng) - 1) * M_PI;
            cs[i] = cs[i + 1] = (float)cos(a);
            sn[i] = sn[i + 1] = (float)sin(a);
        }
    }
    if (in_place) memcpy(y, x, (size_t)n * sizeof(float));
    wk_tensor xt = wk_tensor_3d(WK_F32, in_place ? y : x, L, NH, HD);
    wk_tensor yt = wk_tensor_3d(WK_F32, y, L, NH, HD);
    wk_tensor ct = wk_tensor_2d(WK_F32, cs, L, HD), snt = wk_tensor_2d(WK_F32, sn, L, HD);
    if ((st = wk_rms_norm_rope(be, &yt, &xt, &w, &ct, &snt, eps, e))) goto out;
    if (unfused) { /* rms_norm over [L, C], then rope on the [L, NH, HD] view */
        wk_tensor x2 = wk_tensor_2d(WK_F32, x, L, C), u2 = wk_tensor_2d(WK_F32, u, L, C);
        wk_tensor u3 = wk_tensor_3d(WK_F32, u, L, NH, HD);
        if ((st = wk_rms_norm(be, &u2, &x2, &w, eps, e)) ||
            (st = wk_rope(be, &u3, &u3, &ct, &snt, e)))
            goto out;
        *err = (double)ol_count_diff(y, u, n, 4);
        *bad = !ol_guards_ok(&b);
        goto out;
    }
    for (int64_t l = 0; l < L; l++) {
        const float *xr = x + l * C;
        double ss = 0;
        for (int64_t i = 0; i < C; i++) ss += (double)xr[i] * xr[i];
        double sc = 1.0 / sqrt(ss / (double)C + eps);
        for (int64_t i = 0; i < C; i += 2) {
            double v0 = xr[i] * sc * wv[i], v1 = xr[i + 1] * sc * wv[i + 1];
            double co = cs[l * HD + i % HD], si = sn[l * HD + i % HD];
            ref[l * C + i] = v0 * co - v1 * si;
            ref[l * C + i + 1] = v0 * si + v1 * co;
        }
    }
    ol_compare(&b, y, ref, n, err, bad);
out:
    ol_free(&b);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * "... rejects": bad calls fail before touching data, with the expected status and a message
 * that names the op and the argument (and a shape). The error counts the calls that did not;
 * each is described on stderr.
 * ------------------------------------------------------------------------------------------- */

/* the data-movement ops */
static int ol_rejects_layout(wk_backend *be, float *buf, float *buf2) {
    int failed = 0;
    wf_err le;
    wk_tensor a = wk_tensor_2d(WK_F32, buf, 4, 60), a61 = wk_tensor_2d(WK_F32, buf2, 4, 61);
    wk_tensor ai = wk_tensor_2d(WK_I32, buf2, 4, 60), ab = wk_tensor_2d(WK_BF16, buf2, 4, 60);
    wk_tensor dev = a;
    dev.device = WK_DEV_CUDA;
    OPS_EXPECT("convert count", wk_convert(be, &a61, &a, &le), WF_EINVAL, "convert", "[4, 61]",
               NULL);
    OPS_EXPECT("convert i32", wk_convert(be, &a, &ai, &le), WF_EUNSUPPORTED, "convert", "i32",
               NULL);
    OPS_EXPECT("convert device", wk_convert(be, &a, &dev, &le), WF_EINVAL, "convert: x",
               "not host memory", NULL);
    OPS_EXPECT("fill bf16", wk_fill(be, &ab, 1.0f, &le), WF_EUNSUPPORTED, "fill", "bf16", NULL);
    OPS_EXPECT("fill i32 1e10", wk_fill(be, &ai, 1e10f, &le), WF_EINVAL, "fill", "i32", NULL);
    const int64_t o0[2] = {0, 0}, o5[2] = {0, 5}, e56[2] = {4, 56};
    OPS_EXPECT("copy_box past x", wk_copy_box(be, &a61, o0, &a, o5, e56, &le), WF_EINVAL,
               "copy_box: dim 1", "[5, 61)", NULL);
    OPS_EXPECT("copy_box dtype", wk_copy_box(be, &ai, o0, &a, o0, e56, &le), WF_EINVAL, "copy_box",
               "i32", NULL);
    const int64_t sh[3] = {4, 6, 10}, shb[3] = {4, 6, 11};
    const int p_bad[3] = {0, 0, 2}, p_ok[3] = {2, 0, 1};
    OPS_EXPECT("permute perm", wk_permute(be, &a61, &a, 3, sh, p_bad, &le), WF_EINVAL, "permute",
               "perm[1]", NULL);
    OPS_EXPECT("permute numel", wk_permute(be, &a61, &a, 3, shb, p_ok, &le), WF_EINVAL, "permute",
               "[4, 60]", NULL);
    OPS_EXPECT("permute 9 dims", wk_permute(be, &a61, &a, 9, sh, p_ok, &le), WF_EINVAL, "permute",
               "9 dims", NULL);
    OPS_EXPECT("permute device", wk_permute(be, &dev, &a, 3, sh, p_ok, &le), WF_EINVAL, "permute",
               "not host memory", NULL);
    wk_tensor t5 = wk_tensor_1d(WK_F32, buf2, 5), y2 = wk_tensor_2d(WK_F32, buf, 4, 16);
    OPS_EXPECT("timestep_embed t [5]", wk_timestep_embed(be, &y2, &t5, &le), WF_EINVAL,
               "timestep_embed", "[5]", NULL);
    wk_tensor tab = wk_tensor_2d(WK_F32, buf2, 10, 16), idf = wk_tensor_1d(WK_F32, buf2, 4);
    wk_tensor id5 = wk_tensor_1d(WK_I32, buf2, 5);
    OPS_EXPECT("embedding ids f32", wk_embedding(be, &y2, &tab, &idf, &le), WF_EUNSUPPORTED,
               "embedding", "ids", NULL);
    OPS_EXPECT("embedding ids [5]", wk_embedding(be, &y2, &tab, &id5, &le), WF_EINVAL, "embedding",
               "[5]", NULL);
    wk_tensor yb = wk_tensor_3d(WK_F32, buf, 3, 5, 7), tb = wk_tensor_2d(WK_F32, buf2, 32, 4);
    wk_tensor tb3 = wk_tensor_2d(WK_F32, buf2, 3, 3), m6 = wk_tensor_1d(WK_I32, buf2, 6);
    OPS_EXPECT("t5_bias table NH", wk_t5_bias(be, &yb, &tb, NULL, 128, &le), WF_EINVAL, "t5_bias",
               "[32, 4]", NULL);
    OPS_EXPECT("t5_bias mask [6]", wk_t5_bias(be, &yb, &tb3, &m6, 128, &le), WF_EINVAL,
               "t5_bias: mask", "[6]", NULL);
    OPS_EXPECT("t5_bias 3 buckets", wk_t5_bias(be, &yb, &tb3, NULL, 128, &le), WF_EINVAL,
               "t5_bias", "3 buckets", NULL);
    return failed;
}

/* the fused forms */
static int ol_rejects_fused(wk_backend *be, float *buf, float *buf2) {
    int failed = 0;
    wf_err le;
    wk_tensor x = wk_tensor_2d(WK_F32, buf, 3, 60), w = wk_tensor_2d(WK_F32, buf2, 29, 61);
    wk_tensor y = wk_tensor_2d(WK_F32, buf, 3, 29);
    OPS_EXPECT("matmul_gelu K", wk_matmul_gelu(be, &y, &x, &w, NULL, &le), WF_EINVAL,
               "matmul_gelu", "[29, 61]", NULL);
    wk_tensor s2 = wk_tensor_2d(WK_F32, buf2, 2, 60), s1 = wk_tensor_2d(WK_F32, buf2, 1, 60);
    wk_tensor sb = wk_tensor_2d(WK_BF16, buf2, 1, 60), sdev = s1;
    sdev.device = WK_DEV_CUDA;
    OPS_EXPECT("ln_modulate scale1 [2, 60]", wk_ln_modulate(be, &x, &x, &s2, &s1, 1e-6f, &le),
               WF_EINVAL, "ln_modulate: scale1", "[2, 60]", NULL);
    OPS_EXPECT("ln_modulate shift bf16", wk_ln_modulate(be, &x, &x, &s1, &sb, 1e-6f, &le),
               WF_EUNSUPPORTED, "ln_modulate", "shift", NULL);
    OPS_EXPECT("ln_modulate device", wk_ln_modulate(be, &x, &x, &sdev, &s1, 1e-6f, &le), WF_EINVAL,
               "ln_modulate: scale1", "not host memory", NULL);
    OPS_EXPECT("gate_residual gate [2, 60]", wk_gate_residual(be, &x, &x, &s2, &le), WF_EINVAL,
               "gate_residual: gate", "[2, 60]", NULL);
    OPS_EXPECT("gate_residual y [3, 29]", wk_gate_residual(be, &x, &y, &s1, &le), WF_EINVAL,
               "gate_residual", "[3, 29]", NULL);
    wk_tensor q = wk_tensor_3d(WK_F32, buf, 5, 2, 6), q7 = wk_tensor_3d(WK_F32, buf, 5, 2, 7);
    wk_tensor c = wk_tensor_2d(WK_F32, buf2, 5, 6), c4 = wk_tensor_2d(WK_F32, buf2, 4, 6);
    wk_tensor wq = wk_tensor_1d(WK_F32, buf2, 12), wq6 = wk_tensor_1d(WK_F32, buf2, 6);
    OPS_EXPECT("rms_norm_rope x 2-D", wk_rms_norm_rope(be, &x, &x, &wq, &c, &c, 1e-6f, &le),
               WF_EINVAL, "rms_norm_rope", "[3, 60]", NULL);
    OPS_EXPECT("rms_norm_rope odd HD", wk_rms_norm_rope(be, &q7, &q7, NULL, &c, &c, 1e-6f, &le),
               WF_EINVAL, "rms_norm_rope", "even", NULL);
    OPS_EXPECT("rms_norm_rope cos [4, 6]", wk_rms_norm_rope(be, &q, &q, &wq, &c4, &c, 1e-6f, &le),
               WF_EINVAL, "rms_norm_rope: cos", "[4, 6]", NULL);
    OPS_EXPECT("rms_norm_rope w [6]", wk_rms_norm_rope(be, &q, &q, &wq6, &c, &c, 1e-6f, &le),
               WF_EINVAL, "rms_norm_rope: w", "[6]", NULL);
    return failed;
}

static wf_status run_rejects(const op_case *c, wk_backend *be, tu_rng *rng, double *err, int *bad,
                             wf_err *e) {
    (void)rng, (void)e;
    static float buf[4096], buf2[4096]; /* never read: every call must fail its checks first */
    *err = strcmp(c->op, "layout") == 0 ? ol_rejects_layout(be, buf, buf2)
                                        : ol_rejects_fused(be, buf, buf2);
    *bad = 0;
    return WF_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The rows.
 * ------------------------------------------------------------------------------------------- */
#define WHY_EXACT "a copy or an exact cast: every element must equal the reference"
#define WHY_UNFUSED "the same f32 operations in the same order as the unfused ops: 0 differing"
#define WHY_REJECT "every bad call must fail with the right status and message"
#define WHY_MMG "GEMM (<= 1e-6, as matmul) then GELU, whose slope is <= 1.13: an f32 rounding more"
#define WHY_LNM "layer_norm (one rounding), then an f32 mul and add: about 3 roundings per element"
#define WHY_GATE "one f32 product, one f32 sum: 2 roundings"
#define WHY_RNR "rms_norm (one rounding) then the rotation (one more, formed in double)"
#define WHY_TS "fp32 as torch: the angle t f (t < 1000) carries ~1000 * 2^-24 of error, relative " \
               "to outputs of order 1"

const op_case ops_layout_cases[] = {
    /* convert: p = {n, x dtype, y dtype} */
    {"convert", "n=1001 f32 -> bf16", run_convert, {1001, WK_F32, WK_BF16}, WK_F32, 0, WHY_EXACT},
    {"convert", "n=1001 f32 -> f16", run_convert, {1001, WK_F32, WK_F16}, WK_F32, 0, WHY_EXACT},
    {"convert", "n=1001 f32 -> f8e4m3", run_convert, {1001, WK_F32, WK_F8E4M3}, WK_F32, 0,
     WHY_EXACT},
    {"convert", "n=1001 bf16 -> f32", run_convert, {1001, WK_BF16, WK_F32}, WK_F32, 0, WHY_EXACT},
    {"convert", "n=1001 f16 -> bf16", run_convert, {1001, WK_F16, WK_BF16}, WK_F32, 0, WHY_EXACT},
    {"convert", "n=1001 f8e4m3 -> f16", run_convert, {1001, WK_F8E4M3, WK_F16}, WK_F32, 0,
     WHY_EXACT},
    {"convert", "n=100005 bf16 -> f8e4m3 as [20001, 5]", run_convert,
     {100005, WK_BF16, WK_F8E4M3}, WK_F32, 0, WHY_EXACT},
    {"convert", "n=100005 f32 -> f32 as [20001, 5]", run_convert, {100005, WK_F32, WK_F32},
     WK_F32, 0, WHY_EXACT},
    /* fill: p = {n, dtype, value * 1000} */
    {"fill", "n=37 f32 -3402.823", run_fill, {37, WK_F32, -3402823}, WK_F32, 0, WHY_EXACT},
    {"fill", "n=100003 f32 1.5", run_fill, {100003, WK_F32, 1500}, WK_F32, 0, WHY_EXACT},
    {"fill", "n=1001 i32 -7", run_fill, {1001, WK_I32, -7000}, WK_F32, 0, WHY_EXACT},
    /* copy_box: p = {config of OL_BOXES} */
    {"copy_box", "f32 [37,11] rows 13..30 -> [20,11] row 3", run_copy_box, {0}, WK_F32, 0,
     WHY_EXACT},
    {"copy_box", "f32 5-D interior box", run_copy_box, {1}, WK_F32, 0, WHY_EXACT},
    {"copy_box", "bf16 [5,7,9] whole rows", run_copy_box, {2}, WK_F32, 0, WHY_EXACT},
    {"copy_box", "f8e4m3 4-D whole trailing dims", run_copy_box, {3}, WK_F32, 0, WHY_EXACT},
    {"copy_box", "i32 1-D", run_copy_box, {4}, WK_F32, 0, WHY_EXACT},
    {"copy_box", "empty box", run_copy_box, {5}, WK_F32, 0, WHY_EXACT},
    {"copy_box", "f32 [3,40,52,96] last 2 rows (halo)", run_copy_box, {6}, WK_F32, 0, WHY_EXACT},
    {"copy_box", "f32 [2,30,40,64] 3 columns", run_copy_box, {7}, WK_F32, 0, WHY_EXACT},
    /* permute: p = {config of OL_PERMS} */
    {"permute", "patchify 7-D Cin=5 F=3 H=14 W=18", run_permute, {0}, WK_F32, 0, WHY_EXACT},
    {"permute", "patchify 7-D Cin=16 F=6 H=44 W=52", run_permute, {1}, WK_F32, 0, WHY_EXACT},
    {"permute", "unpatchify 7-D Cout=5", run_permute, {2}, WK_F32, 0, WHY_EXACT},
    {"permute", "pack heads [53,3,24] -> [3,53,24]", run_permute, {3}, WK_F32, 0, WHY_EXACT},
    {"permute", "unpack heads [3,53,24] -> [53,3,24]", run_permute, {4}, WK_F32, 0, WHY_EXACT},
    {"permute", "bf16 planar -> channels-last", run_permute, {5}, WK_F32, 0, WHY_EXACT},
    {"permute", "f16 channels-last -> planar", run_permute, {6}, WK_F32, 0, WHY_EXACT},
    {"permute", "f8e4m3 transpose [37,61]", run_permute, {7}, WK_F32, 0, WHY_EXACT},
    {"permute", "i32 reverse [5,7,11]", run_permute, {8}, WK_F32, 0, WHY_EXACT},
    {"permute", "identity [5,7,11]", run_permute, {9}, WK_F32, 0, WHY_EXACT},
    {"permute", "8-D with dims of 1", run_permute, {10}, WK_F32, 0, WHY_EXACT},
    /* timestep_embed: p = {n, dim} */
    {"rope_table", "grid 3x5x7 HD 12, all rows", run_rope_table, {3, 5, 7, 12, 0, 105}, WK_F32,
     1e-7, "double angles and cos/sin cast to f32 once: f32 rounding only"},
    {"rope_table", "grid 2x3x4 HD 128, rows 20..29 (6 padding)", run_rope_table,
     {2, 3, 4, 128, 20, 10}, WK_F32, 1e-7, "as above; the padding rows are exact"},
    {"timestep_embed", "n=1 dim=256", run_timestep, {1, 256}, WK_F32, 2e-5, WHY_TS},
    {"timestep_embed", "n=37 dim=33 (odd: zero pad)", run_timestep, {37, 33}, WK_F32, 2e-5,
     WHY_TS},
    {"timestep_embed", "n=300 dim=256 per token", run_timestep, {300, 256}, WK_F32, 2e-5, WHY_TS},
    /* embedding: p = {V, D, L} */
    {"embedding", "V=101 D=61 L=37", run_embedding, {101, 61, 37}, WK_F32, 0, WHY_EXACT},
    {"embedding", "V=101 D=61 L=37", run_embedding, {101, 61, 37}, WK_BF16, 0, WHY_EXACT},
    {"embedding", "V=1000 D=512 L=300", run_embedding, {1000, 512, 300}, WK_F16, 0, WHY_EXACT},
    {"embedding", "V=77 D=13 L=5", run_embedding, {77, 13, 5}, WK_F8E4M3, 0, WHY_EXACT},
    /* t5_bias: p = {NH, Lq, Lk, NB, max_distance, mask} */
    {"t5_bias", "NH=3 L=37 NB=32 md=128 mask", run_t5_bias, {3, 37, 37, 32, 128, 1}, WK_F32, 0,
     WHY_EXACT},
    {"t5_bias", "NH=2 Lq=5 Lk=300 NB=32 md=128", run_t5_bias, {2, 5, 300, 32, 128, 0}, WK_BF16, 0,
     WHY_EXACT},
    {"t5_bias", "NH=4 L=200 NB=16 md=20 mask", run_t5_bias, {4, 200, 200, 16, 20, 1}, WK_F16, 0,
     WHY_EXACT},
    {"t5_bias", "NH=1 L=1 NB=4 md=2", run_t5_bias, {1, 1, 1, 4, 2, 1}, WK_F32, 0, WHY_EXACT},
    {"layout", "rejects bad shapes, dtypes, devices", run_rejects, {0}, WK_F32, 0, WHY_REJECT},

    /* matmul_gelu: p = {M, K, N, bias, -, -, -, unfused} */
    {"matmul_gelu", "M=37 K=61 N=29 bias", run_matmul_gelu, {37, 61, 29, 1}, WK_F32, 2e-6,
     WHY_MMG},
    {"matmul_gelu", "M=37 K=61 N=29", run_matmul_gelu, {37, 61, 29, 0}, WK_BF16, 2e-6, WHY_MMG},
    {"matmul_gelu", "M=300 K=512 N=700 bias", run_matmul_gelu, {300, 512, 700, 1}, WK_F8E4M3,
     5e-6, WHY_MMG},
    {"matmul_gelu", "M=37 K=61 N=29 bias = unfused", run_matmul_gelu, {37, 61, 29, 1, 0, 0, 0, 1},
     WK_F16, 0, WHY_UNFUSED},
    {"matmul_gelu", "M=300 K=512 N=700 bias = unfused", run_matmul_gelu,
     {300, 512, 700, 1, 0, 0, 0, 1}, WK_BF16, 0, WHY_UNFUSED},
    /* ln_modulate: p = {R, D, scale rows, shift rows, mean, -, in place, unfused} */
    {"ln_modulate", "R=37 D=61 [1,D] mods", run_ln_modulate, {37, 61, 0, 0, 0}, WK_F32, 4e-7,
     WHY_LNM},
    {"ln_modulate", "R=37 D=61 [R,D] mods mean 100", run_ln_modulate, {37, 61, 1, 1, 100},
     WK_F32, 4e-7, WHY_LNM},
    {"ln_modulate", "R=64 D=1536 in place", run_ln_modulate, {64, 1536, 0, 1, 3, 0, 1}, WK_F32,
     4e-7, WHY_LNM},
    {"ln_modulate", "R=37 D=61 = unfused", run_ln_modulate, {37, 61, 0, 1, 5, 0, 0, 1}, WK_F32, 0,
     WHY_UNFUSED},
    {"ln_modulate", "R=64 D=1536 [R,D] = unfused", run_ln_modulate, {64, 1536, 1, 1, 0, 0, 0, 1},
     WK_F32, 0, WHY_UNFUSED},
    /* gate_residual: p = {R, D, gate rows, -, -, -, -, unfused} */
    {"gate_residual", "R=37 D=61 [1,D] gate", run_gate_residual, {37, 61, 0}, WK_F32, 2e-7,
     WHY_GATE},
    {"gate_residual", "R=64 D=1536 [R,D] gate", run_gate_residual, {64, 1536, 1}, WK_F32, 2e-7,
     WHY_GATE},
    {"gate_residual", "R=37 D=61 = unfused", run_gate_residual, {37, 61, 0, 0, 0, 0, 0, 1}, WK_F32,
     0, WHY_UNFUSED},
    {"gate_residual", "R=64 D=1536 [R,D] = unfused", run_gate_residual,
     {64, 1536, 1, 0, 0, 0, 0, 1}, WK_F32, 0, WHY_UNFUSED},
    /* rms_norm_rope: p = {L, NH, HD, F, H, W, in place, unfused} */
    {"rms_norm_rope", "L=37 NH=3 HD=16", run_rms_norm_rope, {37, 3, 16}, WK_F32, 3e-7, WHY_RNR},
    {"rms_norm_rope", "F=3 H=5 W=7 NH=3 HD=12 table", run_rms_norm_rope, {0, 3, 12, 3, 5, 7},
     WK_BF16, 3e-7, WHY_RNR},
    {"rms_norm_rope", "F=2 H=9 W=13 NH=4 HD=128 in place", run_rms_norm_rope,
     {0, 4, 128, 2, 9, 13, 1}, WK_F16, 3e-7, WHY_RNR},
    {"rms_norm_rope", "L=37 NH=3 HD=16 = unfused", run_rms_norm_rope, {37, 3, 16, 0, 0, 0, 0, 1},
     WK_BF16, 0, WHY_UNFUSED},
    {"rms_norm_rope", "F=2 H=9 W=13 NH=4 HD=128 = unfused", run_rms_norm_rope,
     {0, 4, 128, 2, 9, 13, 0, 1}, WK_F32, 0, WHY_UNFUSED},
    {"fused", "rejects bad shapes, dtypes, devices", run_rejects, {0}, WK_F32, 0, WHY_REJECT},
};

const int ops_layout_count = (int)(sizeof ops_layout_cases / sizeof ops_layout_cases[0]);
