/* backend.h: the backend interface (prefix wk_). A backend is a table of ops; the CPU backend
 * (kernels/cpu/) is the reference, the CUDA backend plugs in beside it with the same table.
 *
 * Conventions, for every op:
 *   - Activations (x, y, q, k, v, o) are f32 on the CPU backend. Weight-like arguments (w, bias,
 *     gamma) may be any wk_dtype and are widened blockwise inside the op, never as a whole-model
 *     copy.
 *   - All tensors are contiguous, row-major. Ops that normalise or reduce do so over the LAST dim.
 *   - y may alias x for the elementwise ops (add, mul, gelu_tanh, silu, rope, norms, softmax).
 *   - Convolutions and resampling are channels-last, (N, T, H, W, C), as DESIGN.md §3b requires;
 *     conv weights stay in the checkpoint's PyTorch layout (Cout, Cin, kT, kH, kW).
 *   - Scratch memory comes from the backend's workspace (wk_backend_workspace), which grows only
 *     until the first step has run (ws_grows counts how often; a steady-state step grows it 0
 *     times). Nothing else allocates.
 *   - An op a backend lacks is NULL in its table; calling it returns WF_EUNSUPPORTED, which the
 *     op test reports as "not supported", apart from "failed".
 * Tested by: tests/test_ops.c (every op against a double-precision reference).
 */
#ifndef WK_BACKEND_H
#define WK_BACKEND_H

#include <stdbool.h>

#include "tensor.h"

typedef struct wk_backend wk_backend;

/* Padding and stride per axis, for conv3d (t, h, w) and conv2d (h, w: axes 1 and 2 of the
 * arrays; axis 0 is ignored). pad[a][0] zeros before, pad[a][1] zeros after. */
typedef struct wk_conv_params {
    int stride[3];
    int pad[3][2];
} wk_conv_params;

typedef struct wk_ops {
    /* y[M, N] = x[M, K] . w[N, K]^T + bias[N]. x may have leading dims (M is their product); y has
     * the same leading dims and last dim N. w is a PyTorch Linear weight. bias may be NULL. */
    wf_status (*matmul)(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *bias, wf_err *err);
    /* y = a + b, y = a * b: b broadcasts to a by NumPy rules (right-aligned; each b dim is 1 or
     * equal); y has a's shape. */
    wf_status (*add)(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b,
                     wf_err *err);
    wf_status (*mul)(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b,
                     wf_err *err);
    /* y = (x - mean) / sqrt(var + eps) [* w + b], over the last dim, population variance.
     * w and b are each NULL (no affine) or [C]. */
    wf_status (*layer_norm)(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                            const wk_tensor *b, float eps, wf_err *err);
    /* T5 / DiT form: y = x / sqrt(mean(x^2) + eps) [* w], over the last dim. */
    wf_status (*rms_norm)(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                          float eps, wf_err *err);
    /* Wan-VAE channel-L2 form: y = x / max(||x||_2, 1e-12) * sqrt(C) [* gamma], over the last
     * (channel) dim of a channels-last tensor. */
    wf_status (*rms_norm_l2)(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                             const wk_tensor *gamma, wf_err *err);
    /* softmax over the last dim (max-subtracted). */
    wf_status (*softmax)(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);
    /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    wf_status (*gelu_tanh)(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);
    /* x * sigmoid(x) */
    wf_status (*silu)(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);
    /* Interleaved-pair rotary embedding: x, y [L, NH, HD]; cos, sin [L, HD] f32 (each value
     * repeated for the pair, as wk_rope_table_3d builds them).
     * y[2i] = x[2i] c - x[2i+1] s;  y[2i+1] = x[2i] s + x[2i+1] c. */
    wf_status (*rope)(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *cos,
                      const wk_tensor *sin, wf_err *err);
    /* o[Lq, NH, HD] = softmax(scale q k^T + bias) v per head, with q [Lq, NH, HD] and
     * k, v [Lk, NH, HD]. bias is NULL, [Lk] (an additive key mask, -inf masks a key) or
     * [NH, Lq, Lk] (a full additive bias, e.g. T5's relative positions). Computed blockwise with
     * an online softmax: memory O(L * block), never an Lq x Lk matrix. A query row whose keys
     * are all masked gives zeros. */
    wf_status (*attention)(wk_backend *be, wk_tensor *o, const wk_tensor *q, const wk_tensor *k,
                           const wk_tensor *v, float scale, const wk_tensor *bias, wf_err *err);
    /* x [N, T, H, W, Cin], w [Cout, Cin, kT, kH, kW], bias [Cout] or NULL,
     * y [N, To, Ho, Wo, Cout] with To = (T + pad_t0 + pad_t1 - kT) / stride_t + 1, etc. */
    wf_status (*conv3d)(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *bias, const wk_conv_params *p, wf_err *err);
    /* x [N, H, W, Cin], w [Cout, Cin, kH, kW], y [N, Ho, Wo, Cout]; uses axes 1, 2 of p. */
    wf_status (*conv2d)(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *bias, const wk_conv_params *p, wf_err *err);
    /* Nearest 2x spatial upsample: x [N, H, W, C] -> y [N, 2H, 2W, C], y[i][j] = x[i/2][j/2]. */
    wf_status (*upsample2x)(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);
} wk_ops;

struct wk_backend {
    const char *name;      /* "cpu", "cuda" */
    wk_device device;
    int nthreads;          /* CPU: OpenMP threads used by the ops */
    int row_quantum;       /* the backend's GEMM row cut: ops give a row of activations the same
                            * bits wherever a tensor starts, if it starts at a multiple of this
                            * many rows. A model that splits rows over ranks (the DiT's Ulysses
                            * tokens) pads each rank's share to a multiple of it. CPU: 48 */
    const wk_ops *ops;
    void *ws;              /* workspace (scratch), 64-byte aligned */
    size_t ws_cap;
    unsigned ws_grows;     /* times the workspace was (re)allocated */
    void *impl;            /* backend private state */
};

/* The CPU backend. nthreads <= 0 means all of omp_get_max_threads(). */
wf_status wk_backend_cpu_new(wk_backend **out, int nthreads, wf_err *err);
void wk_backend_destroy(wk_backend **be); /* NULLs *be; accepts NULL */

/* Scratch of at least `bytes`, valid until the next call. Grows (and counts a grow) only when
 * too small; call once with the largest size before a loop to make the loop allocation-free. */
wf_status wk_backend_workspace(wk_backend *be, size_t bytes, void **out, wf_err *err);

/* Dispatchers: check the op exists, then call it. */
wf_status wk_matmul(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                    const wk_tensor *bias, wf_err *err);
wf_status wk_add(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b, wf_err *err);
wf_status wk_mul(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b, wf_err *err);
wf_status wk_layer_norm(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *b, float eps, wf_err *err);
wf_status wk_rms_norm(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                      float eps, wf_err *err);
wf_status wk_rms_norm_l2(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *gamma,
                         wf_err *err);
wf_status wk_softmax(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);
wf_status wk_gelu_tanh(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);
wf_status wk_silu(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);
wf_status wk_rope(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *cos,
                  const wk_tensor *sin, wf_err *err);
wf_status wk_attention(wk_backend *be, wk_tensor *o, const wk_tensor *q, const wk_tensor *k,
                       const wk_tensor *v, float scale, const wk_tensor *bias, wf_err *err);
wf_status wk_conv3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                    const wk_tensor *bias, const wk_conv_params *p, wf_err *err);
wf_status wk_conv2d(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                    const wk_tensor *bias, const wk_conv_params *p, wf_err *err);
wf_status wk_upsample2x(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);

/* Host-side rotary tables for a (F, H, W) patch grid, as wan_spec.md §1.4: head dim hd split into
 * t = hd - 2*(2*(hd/6)), h = w = 2*(hd/6); inv_freq_j = 1/theta^(2j/d) and the angles in double,
 * cos/sin cast to f32 and repeated per pair. cos, sin: [F*H*W, hd], token order (f, h, w). */
wf_status wk_rope_table_3d(float *cos_out, float *sin_out, int64_t F, int64_t H, int64_t W, int hd,
                           double theta, wf_err *err);
/* Rows [l0, l0 + n) of the same tables (a rank's tokens under sequence parallelism); rows past
 * F*H*W (padding) get the identity rotation (cos 1, sin 0). */
wf_status wk_rope_table_3d_rows(float *cos_out, float *sin_out, int64_t F, int64_t H, int64_t W,
                                int hd, double theta, int64_t l0, int64_t n, wf_err *err);

#endif
