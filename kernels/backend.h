/* backend.h: the backend interface (prefix wk_). A backend is a table of ops; the CPU backend
 * (kernels/cpu/) is the reference, the CUDA backend plugs in beside it with the same table.
 *
 * Conventions, for every op:
 *   - Every tensor an op gets lives in the backend's memory (a CUDA backend's tensors are device
 *     memory: weights uploaded once, activations from an arena on the backend, wk_arena_init_on).
 *     Host data reaches the backend only through upload/download.
 *   - Activations (x, y, q, k, v, o) are f32 on every backend. Weight-like arguments (w, bias,
 *     gamma, tables) may be any float wk_dtype and are widened blockwise inside the op, never as
 *     a whole-model copy; index arguments (ids, masks) are WK_I32. Under WK_PREC_BF16 a backend
 *     rounds GEMM and attention inputs to bf16 internally (to f16 against an f16 weight; against
 *     an fp8 e4m3 weight on Hopper, x is quantised to e4m3 with a per-tensor scale from its
 *     amax); results stay f32.
 *   - All tensors are contiguous, row-major. Ops that normalise or reduce do so over the LAST dim.
 *   - y may alias x for the elementwise ops (add, mul, gelu_tanh, silu, rope, norms, softmax).
 *   - Convolutions and resampling are channels-last, (N, T, H, W, C), as DESIGN.md §3b requires;
 *     conv weights stay in the checkpoint's PyTorch layout (Cout, Cin, kT, kH, kW).
 *   - Scratch memory comes from the backend's workspace (wk_backend_workspace), which grows only
 *     until the first step has run (ws_grows counts how often; a steady-state step grows it 0
 *     times). Nothing else allocates.
 *   - An op a backend lacks is NULL in its table; calling it returns WF_EUNSUPPORTED, which the
 *     op test reports as "not supported", apart from "failed".
 * Tested by: tests/test_ops.c (every op against a double-precision reference) and
 * tests/test_backend_ops.c (every op of the table, CPU against CUDA, when a device is there).
 */
#ifndef WK_BACKEND_H
#define WK_BACKEND_H

#include <stdbool.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wk_backend wk_backend;

/* Padding and stride per axis, for conv3d (t, h, w) and conv2d (h, w: axes 1 and 2 of the
 * arrays; axis 0 is ignored). pad[a][0] zeros before, pad[a][1] zeros after. */
typedef struct wk_conv_params {
    int stride[3];
    int pad[3][2];
} wk_conv_params;

/* The coefficients of one UniPC update (Diffusers' multistep_uni_p_bh_update / uni_c_bh_update
 * with predict_x0 on flow sigmas), for y[e] with m0 = m[0] (the newest x0), order p:
 *   base = ratio x - a_phi m0
 *   S    = rhos[0] ((m[1] - m0) / rks[0]) [+ rhos[1] ((m[2] - m0) / rks[1]) when p = 3]  (p > 1)
 *   corrector (d given): S = S + rhos[p-1] (d - m0)  (p > 1),  S = rhos[0] (d - m0)  (p = 1)
 *   y    = base - a_B S, or base when there is no S (the predictor at order 1)
 * ratio = sigma_t / sigma_s0, a_phi = alpha_t (exp(-h) - 1), a_B = alpha_t B(h). */
typedef struct wk_unipc_coef {
    int order;    /* 1..3: history terms m[0..order) read */
    float ratio, a_phi, a_B;
    float rks[2];
    float rhos[3];
} wk_unipc_coef;

/* What an op's time counts as (wk_timing_take): the GEMM-shaped ops (matmul, matmul_gelu, the
 * convolutions), attention, and every other op of the table. */
typedef enum wk_time_cat { WK_T_GEMM = 0, WK_T_ATTN, WK_T_OTHER, WK_T_NCATS } wk_time_cat;

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
     * k, v [Lk, NH, HD]. Keys [kv_len, Lk) are masked (padding at the end, e.g. Ulysses'; the
     * form a fused kernel takes as a sequence length); kv_len <= 0 or >= Lk masks none. bias is
     * NULL, [Lk] (an additive key mask, -inf masks a key) or [NH, Lq, Lk] (a full additive bias,
     * e.g. T5's relative positions). Computed blockwise with an online softmax: memory
     * O(L * block), never an Lq x Lk matrix. A query row whose keys are all masked gives zeros. */
    wf_status (*attention)(wk_backend *be, wk_tensor *o, const wk_tensor *q, const wk_tensor *k,
                           const wk_tensor *v, float scale, int64_t kv_len, const wk_tensor *bias,
                           wf_err *err);
    /* x [N, T, H, W, Cin], w [Cout, Cin, kT, kH, kW], bias [Cout] or NULL,
     * y [N, To, Ho, Wo, Cout] with To = (T + pad_t0 + pad_t1 - kT) / stride_t + 1, etc. */
    wf_status (*conv3d)(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *bias, const wk_conv_params *p, wf_err *err);
    /* x [N, H, W, Cin], w [Cout, Cin, kH, kW], y [N, Ho, Wo, Cout]; uses axes 1, 2 of p. */
    wf_status (*conv2d)(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *bias, const wk_conv_params *p, wf_err *err);
    /* Nearest 2x spatial upsample: x [N, H, W, C] -> y [N, 2H, 2W, C], y[i][j] = x[i/2][j/2]. */
    wf_status (*upsample2x)(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);

    /* ---- fused forms (each equals its unfused sequence bit for bit on the CPU) ---- */
    /* y = gelu_tanh(x . w^T + bias): matmul with the GELU epilogue (cuBLASLt's is tanh). */
    wf_status (*matmul_gelu)(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                             const wk_tensor *bias, wf_err *err);
    /* y = LayerNorm(x) * scale1 + shift (no affine), over the last dim D of x [R, D]; scale1
     * (the 1 + scale of AdaLN, already summed) and shift are f32 [1, D] or [R, D]. */
    wf_status (*ln_modulate)(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                             const wk_tensor *scale1, const wk_tensor *shift, float eps,
                             wf_err *err);
    /* x = x + y * gate: y [R, D], gate f32 [1, D] or [R, D] (the gated residual of a DiT block). */
    wf_status (*gate_residual)(wk_backend *be, wk_tensor *x, const wk_tensor *y,
                               const wk_tensor *gate, wf_err *err);
    /* y = rope(rms_norm(x) * w): x, y [L, NH, HD], the RMS over all NH*HD values of a token (the
     * DiT's norm_q/norm_k across heads), w [NH*HD], cos, sin [L, HD] as for rope. */
    wf_status (*rms_norm_rope)(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                               const wk_tensor *w, const wk_tensor *cos, const wk_tensor *sin,
                               float eps, wf_err *err);
    /* y = silu(rms_norm_l2(x) [* gamma]): the VAE's norm + activation. */
    wf_status (*rms_norm_l2_silu)(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                  const wk_tensor *gamma, wf_err *err);

    /* ---- data movement (the host-side loops of the models, as ops) ---- */
    /* y = x converted to y's dtype (f32, bf16, f16, f8e4m3; rounding as dtype.h), element by
     * element; the two need the same element count, not the same shape (a reshape is free). */
    wf_status (*convert)(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);
    /* y = value, every element (f32 or i32 y; value cast to i32 for i32). */
    wf_status (*fill)(wk_backend *be, wk_tensor *y, float value, wf_err *err);
    /* The box ext[0..nd) at x_off in x, copied to y_off in y: y and x have the same dtype and
     * ndim (nd), offsets and extents per dim; the box must fit in both. */
    wf_status (*copy_box)(wk_backend *be, wk_tensor *y, const int64_t *y_off, const wk_tensor *x,
                          const int64_t *x_off, const int64_t *ext, wf_err *err);
    /* y = x.reshape(shape[0..nd)).permute(perm[0..nd)), nd <= WK_MAX_PERM_DIMS: x is read as the
     * given shape (numel must match), y receives the permuted shape's elements in row-major
     * order (y's own shape only has to hold that many). Elements of 1, 2 or 4 bytes. Covers
     * patchify/unpatchify (7-D), head packing, planar <-> channels-last. */
    wf_status (*permute)(wk_backend *be, wk_tensor *y, const wk_tensor *x, int nd,
                         const int64_t *shape, const int *perm, wf_err *err);
    /* y[n, dim] = [cos(t f_k) | sin(t f_k)], f_k = exp(-ln(10000) k / (dim/2)), k < dim/2, t [n]
     * f32: Diffusers' get_timestep_embedding with flip_sin_to_cos, downscale_freq_shift 0, the
     * exponent computed in f32 as torch does. */
    wf_status (*timestep_embed)(wk_backend *be, wk_tensor *y, const wk_tensor *t, wf_err *err);
    /* y[L, D] f32 = table[ids[l], :] widened; ids i32 [L]. An id outside [0, V) is the caller's
     * error (checked on the host); the op writes zeros for it. */
    wf_status (*embedding)(wk_backend *be, wk_tensor *y, const wk_tensor *table,
                           const wk_tensor *ids, wf_err *err);
    /* T5's bidirectional relative-position bias plus key mask: y[h, i, j] =
     * table[bucket(j - i), h] + (mask[j] ? 0 : -inf), y f32 [NH, Lq, Lk], table [NB, NH] any
     * float dtype, mask i32 [Lk] or NULL (no mask); bucket as t5_relative_bucket (umt5.h):
     * num_buckets NB, max_distance. */
    wf_status (*t5_bias)(wk_backend *be, wk_tensor *y, const wk_tensor *table,
                         const wk_tensor *mask, int64_t max_distance, wf_err *err);
    /* Diffusers' AutoencoderKLWan blend_v (axis 1) / blend_h (axis 2) on channels-last tiles
     * [T, h, w, C]: along the axis, for i < e = min(extent, a's and b's length):
     * b[i] = a[len_a - e + i] * (1 - i/e) + b[i] * (i/e), the weights f32 from double, two
     * products then one sum. */
    wf_status (*blend)(wk_backend *be, wk_tensor *b, const wk_tensor *a, int axis,
                       int64_t extent, wf_err *err);
    /* Wan2.2 VAE shortcuts on channels-last [1, T, H, W, C]. avgdown3d: AvgDown3D with factors
     * (ft, fs, fs), pad = (ft - T % ft) % ft zero frames in front, y [1, (T+pad)/ft, H/fs, W/fs,
     * Co], mean (in double) of groups of C*ft*fs*fs/Co inputs. dupup3d: DupUp3D, y [1, T*ft - drop,
     * H*fs, W*fs, Co], the first `drop` output frames dropped (first_chunk). */
    wf_status (*avgdown3d)(wk_backend *be, wk_tensor *y, const wk_tensor *x, int64_t ft,
                           int64_t fs, wf_err *err);
    wf_status (*dupup3d)(wk_backend *be, wk_tensor *y, const wk_tensor *x, int64_t ft, int64_t fs,
                         int64_t drop, wf_err *err);
    /* The rotary tables of rows [l0, l0 + n) of an (F, H, W) patch grid, as
     * wk_rope_table_3d_rows computes them on the host (angles and cos/sin in double, cast to
     * f32; rows past F*H*W the identity): cos, sin f32 [n, HD]. Built on the backend, so a
     * forward on a GPU never computes or uploads them on the host. */
    wf_status (*rope_table)(wk_backend *be, wk_tensor *cos, wk_tensor *sin, int64_t F, int64_t H,
                            int64_t W, double theta, int64_t l0, wf_err *err);

    /* ---- the samplers' and guidance's updates (the scalar maths stays on the host) ---- */
    /* Each is elementwise over f32 tensors of one element count (shapes may differ; y may alias
     * any input) and is evaluated in exactly the order written, every product and quotient
     * rounded to f32 before the next operation (no fused multiply-add), so that every backend
     * gives the CPU's bits. */
    /* y = a + s * b (Euler: x + dt v; the x0 prediction x - sigma v as s = -sigma). */
    wf_status (*scale_add)(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b,
                           float s, wf_err *err);
    /* y = u + g * (c - u): classifier-free guidance of the conditional c by the unconditional u. */
    wf_status (*guidance)(wk_backend *be, wk_tensor *y, const wk_tensor *u, const wk_tensor *c,
                          float g, wf_err *err);
    /* The UniPC update (UniP predictor, or UniC corrector when d is given), wk_unipc_coef's
     * formula; m[0..order) the x0 history, newest first; d the new x0 (corrector) or NULL. */
    wf_status (*unipc_update)(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                              const wk_tensor *const *m, const wk_tensor *d,
                              const wk_unipc_coef *c, wf_err *err);
    /* *index = the index of the first element of x (f32) that is NaN or infinite, or numel(x)
     * when all are finite. The one op whose result is a host value: it waits for the backend. */
    wf_status (*first_nonfinite)(wk_backend *be, const wk_tensor *x, int64_t *index, wf_err *err);

    /* ---- memory (the backend's own; tensors on it have device == be->device) ---- */
    /* bytes of backend memory (64-byte aligned at least), uninitialised. Never called inside a
     * step: models allocate their weight block and arena before the loop. */
    wf_status (*alloc)(wk_backend *be, size_t bytes, void **out, wf_err *err);
    void (*free)(wk_backend *be, void *p); /* accepts NULL */
    /* host -> backend and backend -> host copies of plain bytes; backend -> backend through
     * copy (dst, src both backend memory, not overlapping). Ordered with the ops (one stream);
     * upload returns once the host bytes have been read (the caller may reuse or free them at
     * once), download when the host bytes are there. */
    wf_status (*upload)(wk_backend *be, void *dst, const void *src, size_t bytes, wf_err *err);
    wf_status (*download)(wk_backend *be, void *dst, const void *src, size_t bytes, wf_err *err);
    wf_status (*copy)(wk_backend *be, void *dst, const void *src, size_t bytes, wf_err *err);
    /* waits for every op issued so far; reports an asynchronous failure of one of them */
    wf_status (*sync)(wk_backend *be, wf_err *err);
    /* Per-op device timing (wk_timing_*): NULL on a backend whose ops are synchronous (the CPU:
     * the dispatchers time them with the host clock). time_enable prepares (on) or frees (off)
     * what the marks need, before a loop; time_mark records the start (begin 1) or the end of
     * one op of category cat; time_take waits for the marks so far and adds each category's
     * device seconds into secs[WK_T_NCATS], then starts over. */
    wf_status (*time_enable)(wk_backend *be, bool on, wf_err *err);
    void (*time_mark)(wk_backend *be, int cat, int begin);
    wf_status (*time_take)(wk_backend *be, double *secs, wf_err *err);
} wk_ops;

/* How a backend computes (backend.h's conventions hold for both):
 *   WK_PREC_FP32  f32 everywhere, no TF32: the mode that checks a GPU against the CPU tightly.
 *   WK_PREC_BF16  GEMM and attention inputs rounded to bf16, fp32 accumulation, f32 residual
 *                 stream, norms and modulation (the default on GPUs). The CPU is always FP32. */
typedef enum wk_precision { WK_PREC_FP32 = 0, WK_PREC_BF16 } wk_precision;
const char *wk_precision_name(wk_precision p); /* "fp32", "bf16" */

#define WK_MAX_PERM_DIMS 8

struct wk_backend {
    const char *name;      /* "cpu", "cuda" */
    wk_device device;
    int nthreads;          /* CPU: OpenMP threads used by the ops */
    int row_quantum;       /* the backend's GEMM row cut: ops give a row of activations the same
                            * bits wherever a tensor starts, if it starts at a multiple of this
                            * many rows. A model that splits rows over ranks (the DiT's Ulysses
                            * tokens) pads each rank's share to a multiple of it. CPU: 48 */
    wk_precision precision;
    const wk_ops *ops;
    void *ws;              /* workspace (scratch, backend memory), 64-byte aligned */
    size_t ws_cap;
    unsigned ws_grows;     /* times the workspace was (re)allocated */
    size_t mem_allocs;     /* allocations of backend memory so far, all of them (weights, arenas,
                            * workspace, a backend's own caches): a steady-state step adds none.
                            * wk_backend_alloc counts host memory; a backend with its own alloc
                            * op counts every allocation it makes */
    size_t mem_peak;       /* peak bytes of backend memory in use: a device backend's own
                            * allocations, or wk_backend_alloc's host blocks (on the CPU: the
                            * arenas, latents, sampler buffers and workspace; its weights are
                            * mapped from the checkpoint and not counted) */
    size_t mem_live;       /* the same, in use now */
    size_t ws_bytes;       /* of mem_live, the workspace's block (wk_backend_workspace) */
    size_t mem_peak_data;  /* the peak of mem_live - ws_bytes: what the models' weights, arenas
                            * and a video's buffers hold (what the planner predicts; the
                            * workspace belongs with the runtime's reserve), as seen at each
                            * wk_backend_alloc */
    bool in_ws;            /* inside wk_backend_workspace's allocation */
    size_t mem_total;      /* a device backend's memory, bytes (0 on the CPU: the host's) */
    bool timing;           /* wk_timing_enable: the dispatchers time every op */
    double time_s[WK_T_NCATS]; /* the host-clock timing of a synchronous backend, so far */
    uint64_t bytes_up;     /* bytes moved host -> backend memory by wk_upload(_bytes), */
    uint64_t bytes_down;   /* and backend -> host by wk_download(_bytes): a device backend's bus
                            * traffic (0 on the CPU, whose memory is the host's) */
    int ordinal;           /* a device backend's device (cuda:N, as the runtime numbers the
                            * visible ones); -1 on the CPU */
    void *queue;           /* a device backend's stream (cudaStream_t), on which its ops run in
                            * order: a communicator enqueues its collectives there, so that they
                            * follow the ops that wrote their buffers (NULL on the CPU) */
    void *impl;            /* backend private state */
    void (*destroy)(wk_backend *be); /* frees impl (NULL: free(impl)); not ws, not be */
    /* a device backend's device memory in use by every process on it, bytes (total - free as
     * the runtime reports it: its context, NCCL's and the libraries' buffers included); NULL on
     * the CPU */
    size_t (*device_used)(wk_backend *be);
};

/* The CPU backend. nthreads <= 0 means all of omp_get_max_threads(). */
wf_status wk_backend_cpu_new(wk_backend **out, int nthreads, wf_err *err);
/* The CUDA backend on device `device` (kernels/cuda/, built as the plug-in libwanfarm_cuda.so
 * and opened with dlopen only here, so a CPU-only run never loads cudart, cuBLASLt, cuDNN or
 * NCCL). WF_EUNSUPPORTED, with the reason, when the build has no CUDA, the plug-in or its
 * libraries cannot be loaded, or no usable device is there. */
wf_status wk_backend_cuda_new(wk_backend **out, int device, wk_precision precision, wf_err *err);
void wk_backend_destroy(wk_backend **be); /* NULLs *be; accepts NULL */

/* Updates mem_peak_data from mem_live now (wk_backend_alloc does at each allocation; a device
 * backend's own caches grow inside ops: call it where a peak is read). */
void wk_mem_note(wk_backend *be);
/* be->device_used(be), or 0 when the backend has none. */
size_t wk_device_used(wk_backend *be);

/* Backend memory through the table (the CPU's: aligned host memory). */
wf_status wk_backend_alloc(wk_backend *be, size_t bytes, void **out, wf_err *err);
void wk_backend_free(wk_backend *be, void *p);
/* A tensor's bytes, host <-> backend (t->data on the backend side, same size). */
wf_status wk_upload(wk_backend *be, wk_tensor *dst, const void *src, wf_err *err);
wf_status wk_download(wk_backend *be, void *dst, const wk_tensor *src, wf_err *err);
/* The same for a byte range (dst or src a backend pointer, the other host memory). */
wf_status wk_upload_bytes(wk_backend *be, void *dst, const void *src, size_t bytes, wf_err *err);
wf_status wk_download_bytes(wk_backend *be, void *dst, const void *src, size_t bytes,
                            wf_err *err);
wf_status wk_sync(wk_backend *be, wf_err *err);

/* Scratch of at least `bytes`, valid until the next call. Grows (and counts a grow) only when
 * too small; call once with the largest size before a loop to make the loop allocation-free. */
wf_status wk_backend_workspace(wk_backend *be, size_t bytes, void **out, wf_err *err);

/* Per-op timing, by category (wk_time_cat), for the step breakdown of the progress output. Off
 * by default (no cost). On, every op through a dispatcher is timed: on the device (CUDA events
 * around it, from a pool made by wk_timing_enable, so a step allocates nothing) or with the host
 * clock (the CPU, whose ops return when done). wk_timing_take adds the seconds since the last
 * take into secs[WK_T_NCATS] (waiting for the device) and starts over. The memory ops (upload,
 * download, copy) are not timed. */
wf_status wk_timing_enable(wk_backend *be, bool on, wf_err *err);
wf_status wk_timing_take(wk_backend *be, double secs[WK_T_NCATS], wf_err *err);
const char *wk_time_cat_name(int cat); /* "gemm", "attention", "other" */

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
                       const wk_tensor *v, float scale, int64_t kv_len, const wk_tensor *bias,
                       wf_err *err);
wf_status wk_conv3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                    const wk_tensor *bias, const wk_conv_params *p, wf_err *err);
wf_status wk_conv2d(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                    const wk_tensor *bias, const wk_conv_params *p, wf_err *err);
wf_status wk_upsample2x(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);
wf_status wk_matmul_gelu(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                         const wk_tensor *bias, wf_err *err);
wf_status wk_ln_modulate(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *scale1,
                         const wk_tensor *shift, float eps, wf_err *err);
wf_status wk_gate_residual(wk_backend *be, wk_tensor *x, const wk_tensor *y, const wk_tensor *gate,
                           wf_err *err);
wf_status wk_rms_norm_rope(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                           const wk_tensor *cos, const wk_tensor *sin, float eps, wf_err *err);
wf_status wk_rms_norm_l2_silu(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                              const wk_tensor *gamma, wf_err *err);
wf_status wk_convert(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);
wf_status wk_fill(wk_backend *be, wk_tensor *y, float value, wf_err *err);
wf_status wk_copy_box(wk_backend *be, wk_tensor *y, const int64_t *y_off, const wk_tensor *x,
                      const int64_t *x_off, const int64_t *ext, wf_err *err);
wf_status wk_permute(wk_backend *be, wk_tensor *y, const wk_tensor *x, int nd,
                     const int64_t *shape, const int *perm, wf_err *err);
wf_status wk_timestep_embed(wk_backend *be, wk_tensor *y, const wk_tensor *t, wf_err *err);
wf_status wk_embedding(wk_backend *be, wk_tensor *y, const wk_tensor *table, const wk_tensor *ids,
                       wf_err *err);
wf_status wk_t5_bias(wk_backend *be, wk_tensor *y, const wk_tensor *table, const wk_tensor *mask,
                     int64_t max_distance, wf_err *err);
wf_status wk_blend(wk_backend *be, wk_tensor *b, const wk_tensor *a, int axis, int64_t extent,
                   wf_err *err);
wf_status wk_avgdown3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, int64_t ft, int64_t fs,
                       wf_err *err);
wf_status wk_dupup3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, int64_t ft, int64_t fs,
                     int64_t drop, wf_err *err);
wf_status wk_rope_table(wk_backend *be, wk_tensor *cos, wk_tensor *sin, int64_t F, int64_t H,
                        int64_t W, double theta, int64_t l0, wf_err *err);
wf_status wk_scale_add(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b,
                       float s, wf_err *err);
wf_status wk_guidance(wk_backend *be, wk_tensor *y, const wk_tensor *u, const wk_tensor *c, float g,
                      wf_err *err);
wf_status wk_unipc_update(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                          const wk_tensor *const *m, const wk_tensor *d, const wk_unipc_coef *c,
                          wf_err *err);
wf_status wk_first_nonfinite(wk_backend *be, const wk_tensor *x, int64_t *index, wf_err *err);
/* A byte copy within backend memory (dst, src: backend pointers). */
wf_status wk_copy(wk_backend *be, void *dst, const void *src, size_t bytes, wf_err *err);

/* The bucket of relative position rel = key j - query i of a bidirectional T5 layer, as
 * transformers' _relative_position_bucket computes it in fp32 (umt5.h's t5_relative_bucket is
 * this function). Needs num_buckets >= 4 and max_distance > num_buckets / 4. */
int wk_t5_relative_bucket(int64_t rel, int64_t num_buckets, int64_t max_distance);

/* Host-side rotary tables for a (F, H, W) patch grid, as wan_spec.md §1.4: head dim hd split into
 * t = hd - 2*(2*(hd/6)), h = w = 2*(hd/6); inv_freq_j = 1/theta^(2j/d) and the angles in double,
 * cos/sin cast to f32 and repeated per pair. cos, sin: [F*H*W, hd], token order (f, h, w). */
wf_status wk_rope_table_3d(float *cos_out, float *sin_out, int64_t F, int64_t H, int64_t W, int hd,
                           double theta, wf_err *err);
/* Rows [l0, l0 + n) of the same tables (a rank's tokens under sequence parallelism); rows past
 * F*H*W (padding) get the identity rotation (cos 1, sin 0). */
wf_status wk_rope_table_3d_rows(float *cos_out, float *sin_out, int64_t F, int64_t H, int64_t W,
                                int hd, double theta, int64_t l0, int64_t n, wf_err *err);

#ifdef __cplusplus
}
#endif

#endif
