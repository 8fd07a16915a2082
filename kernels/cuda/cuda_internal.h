/* cuda_internal.h: the CUDA backend's private state and helpers (prefix wk_cuda_), shared by the
 * files of kernels/cuda/. Nothing outside kernels/cuda/ includes it: the rest of the program
 * sees the backend only through kernels/backend.h (wk_backend_cuda_new opens the plug-in).
 *
 * Files, one per op family, each exporting the op-table functions it implements:
 *   cuda_backend.cu    the plug-in entry points, the op table, wk_cuda state, memory ops
 *   cuda_elementwise.cu add, mul, gelu_tanh, silu, convert, fill, gate_residual
 *   cuda_norm.cu       layer_norm, rms_norm, rms_norm_l2(_silu), ln_modulate, softmax, rope,
 *                      rms_norm_rope
 *   cuda_layout.cu     copy_box, permute, timestep_embed, embedding, t5_bias, blend, avgdown3d,
 *                      dupup3d, upsample2x
 *   cuda_matmul.cu     matmul, matmul_gelu (cuBLASLt: bf16/f16/fp8 inputs, fp32 accumulation,
 *                      epilogues, per-shape algorithm cache)
 *   cuda_conv.cu       conv3d, conv2d (cuDNN graph convolution, channels-last; own kernel when
 *                      cuDNN cannot run a shape)
 *   cuda_attention.cu  attention: own flash-attention kernels (f32 SIMT, bf16 tensor-core MMA)
 *   cuda_sdpa.c        cuDNN fused SDPA through the backend C API, plans cached per shape
 *   cuda_sampler.cu    scale_add, guidance, unipc_update, first_nonfinite (the samplers' and
 *                      CFG's updates on device latents)
 *   cuda_timing.cu     time_enable, time_mark, time_take (per-op CUDA events by category)
 * Conventions: every op runs on wk_cuda.stream, never synchronises unless it must (download,
 * sync), never allocates device memory except through wk_backend_workspace (which grows only
 * before the first step), and checks its arguments on the host before launching anything.
 */
#ifndef WK_CUDA_INTERNAL_H
#define WK_CUDA_INTERNAL_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#include "../backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Caches owned by single files (opaque elsewhere). */
typedef struct wk_cuda_gemm_cache wk_cuda_gemm_cache; /* cuda_matmul.cu */
typedef struct wk_cuda_conv_cache wk_cuda_conv_cache; /* cuda_conv.cu */
typedef struct wk_cuda_sdpa_cache wk_cuda_sdpa_cache; /* cuda_sdpa.c */
typedef struct wk_cuda_timing wk_cuda_timing;         /* cuda_timing.cu */

typedef struct wk_cuda {
    wk_backend *be;            /* the backend this state belongs to (mem_allocs is counted) */
    int device;
    int cc_major, cc_minor, sm_count;
    char device_name[256];
    cudaStream_t stream;
    void *lt;                  /* cublasLtHandle_t */
    void *lt_ws;               /* cuBLASLt's one workspace (device), lt_ws_bytes */
    size_t lt_ws_bytes;
    void *dnn;                 /* cudnnHandle_t; NULL when cuDNN could not be initialised */
    char dnn_why[256];         /* why not, for the log and the op test */
    wk_cuda_gemm_cache *gemm;
    wk_cuda_conv_cache *conv;
    wk_cuda_sdpa_cache *sdpa;
    wk_cuda_timing *timing;    /* per-op events (wk_timing_enable), or NULL */
    /* memory accounting: every device allocation goes through wk_cuda_malloc */
    size_t n_mallocs;          /* cudaMalloc calls so far (a step must add none) */
    size_t bytes_live, bytes_peak;
    int attn_path;             /* WK_CUDA_ATTN_AUTO, _OWN, _CUDNN: forces a path (tests) */
    int verbose;               /* WANFARM_CUDA_LOG=1: one line per new shape/plan */
} wk_cuda;

enum { WK_CUDA_ATTN_AUTO = 0, WK_CUDA_ATTN_OWN, WK_CUDA_ATTN_CUDNN };

static inline wk_cuda *wk_cuda_of(wk_backend *be) { return (wk_cuda *)be->impl; }

/* err <- "<what>: <cudaGetErrorName>: <cudaGetErrorString>" (WF_ECUDA); returns WF_ECUDA. */
wf_status wk_cuda_fail(wf_err *err, cudaError_t e, const char *what);
/* The launch check after a kernel: cudaGetLastError, named by the op. */
wf_status wk_cuda_launched(wf_err *err, const char *op);
/* Device memory, counted (n_mallocs, bytes_live, bytes_peak). */
wf_status wk_cuda_malloc(wk_cuda *c, size_t bytes, void **out, wf_err *err);
void wk_cuda_free(wk_cuda *c, void *p);
/* One log line on stderr when verbose or when first==1 ("which path ran, once per shape"). */
void wk_cuda_log(wk_cuda *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Argument checks shared by the op files: the tensor is on the CUDA device (and f32 for
 * activations). */
wf_status wk_cuda_check_dev(const wk_tensor *t, const char *op, const char *arg, wf_err *err);
wf_status wk_cuda_check_act(const wk_tensor *t, const char *op, const char *arg, wf_err *err);

/* Per-file setup/teardown of the caches, called by the backend constructor / destroy. */
wf_status wk_cuda_gemm_init(wk_cuda *c, wf_err *err);
void wk_cuda_gemm_free(wk_cuda *c);
wf_status wk_cuda_conv_init(wk_cuda *c, wf_err *err);
void wk_cuda_conv_free(wk_cuda *c);
/* Drops the conv weight-layout cache entries of weights inside [p, p + bytes): called by the
 * backend's free op, so that a freed and reused address never finds a stale packed weight. */
void wk_cuda_conv_forget(wk_cuda *c, const void *p, size_t bytes);
wf_status wk_cuda_sdpa_init(wk_cuda *c, wf_err *err);
void wk_cuda_sdpa_free(wk_cuda *c);

/* cuDNN SDPA (cuda_sdpa.c), bf16 q, k, v, o in BSHD ([L, NH, HD], batch 1) device buffers:
 * WF_EUNSUPPORTED when cuDNN has no engine for the shape (the caller falls back to its own
 * kernel), WF_OK when it ran. kv_len as in backend.h. The plan is built once per
 * (Lq, Lk, NH, HD, kv_len) and cached. */
wf_status wk_cuda_sdpa_bf16(wk_backend *be, void *o, const void *q, const void *k, const void *v,
                            int64_t Lq, int64_t Lk, int64_t NH, int64_t HD, float scale,
                            int64_t kv_len, wf_err *err);
/* Builds (once) the plan wk_cuda_sdpa_bf16 runs for this shape; *ws_bytes: the cuDNN workspace it
 * takes, the FIRST *ws_bytes of the backend workspace (a caller with bf16 buffers in the
 * workspace places them after those bytes, 256-aligned); *engine: cuDNN's engine index.
 * WF_EUNSUPPORTED with the reason (cached too) when cuDNN cannot run the shape. */
wf_status wk_cuda_sdpa_prepare(wk_backend *be, int64_t Lq, int64_t Lk, int64_t NH, int64_t HD,
                               int64_t kv_len, size_t *ws_bytes, int64_t *engine, wf_err *err);
/* 1 the first time this backend sees key (an attention path and shape), then 0: which attention
 * path ran is logged once per shape (cuda_sdpa.c keeps the set). */
int wk_cuda_attn_first(wk_cuda *c, const int64_t key[7]);

/* Op-table functions (one definition each, in the file named above). */
#define WK_CUDA_OP_UNARY(name)                                                                  \
    wf_status wk_cuda_##name(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err)
WK_CUDA_OP_UNARY(gelu_tanh);
WK_CUDA_OP_UNARY(silu);
WK_CUDA_OP_UNARY(softmax);
WK_CUDA_OP_UNARY(upsample2x);
WK_CUDA_OP_UNARY(convert);
#undef WK_CUDA_OP_UNARY
wf_status wk_cuda_matmul(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                         const wk_tensor *bias, wf_err *err);
wf_status wk_cuda_matmul_gelu(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                              const wk_tensor *bias, wf_err *err);
wf_status wk_cuda_add(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b,
                      wf_err *err);
wf_status wk_cuda_mul(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b,
                      wf_err *err);
wf_status wk_cuda_layer_norm(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                             const wk_tensor *b, float eps, wf_err *err);
wf_status wk_cuda_rms_norm(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                           float eps, wf_err *err);
wf_status wk_cuda_rms_norm_l2(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                              const wk_tensor *gamma, wf_err *err);
wf_status wk_cuda_rms_norm_l2_silu(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                   const wk_tensor *gamma, wf_err *err);
wf_status wk_cuda_rope(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *cos,
                       const wk_tensor *sin, wf_err *err);
wf_status wk_cuda_rms_norm_rope(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                const wk_tensor *w, const wk_tensor *cos, const wk_tensor *sin,
                                float eps, wf_err *err);
wf_status wk_cuda_ln_modulate(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                              const wk_tensor *scale1, const wk_tensor *shift, float eps,
                              wf_err *err);
wf_status wk_cuda_gate_residual(wk_backend *be, wk_tensor *x, const wk_tensor *y,
                                const wk_tensor *gate, wf_err *err);
wf_status wk_cuda_attention(wk_backend *be, wk_tensor *o, const wk_tensor *q, const wk_tensor *k,
                            const wk_tensor *v, float scale, int64_t kv_len,
                            const wk_tensor *bias, wf_err *err);
wf_status wk_cuda_conv3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                         const wk_tensor *bias, const wk_conv_params *p, wf_err *err);
wf_status wk_cuda_conv2d(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                         const wk_tensor *bias, const wk_conv_params *p, wf_err *err);
wf_status wk_cuda_fill(wk_backend *be, wk_tensor *y, float value, wf_err *err);
wf_status wk_cuda_copy_box(wk_backend *be, wk_tensor *y, const int64_t *y_off, const wk_tensor *x,
                           const int64_t *x_off, const int64_t *ext, wf_err *err);
wf_status wk_cuda_permute(wk_backend *be, wk_tensor *y, const wk_tensor *x, int nd,
                          const int64_t *shape, const int *perm, wf_err *err);
wf_status wk_cuda_timestep_embed(wk_backend *be, wk_tensor *y, const wk_tensor *t, wf_err *err);
wf_status wk_cuda_embedding(wk_backend *be, wk_tensor *y, const wk_tensor *table,
                            const wk_tensor *ids, wf_err *err);
wf_status wk_cuda_t5_bias(wk_backend *be, wk_tensor *y, const wk_tensor *table,
                          const wk_tensor *mask, int64_t max_distance, wf_err *err);
wf_status wk_cuda_blend(wk_backend *be, wk_tensor *b, const wk_tensor *a, int axis,
                        int64_t extent, wf_err *err);
wf_status wk_cuda_avgdown3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, int64_t ft,
                            int64_t fs, wf_err *err);
wf_status wk_cuda_dupup3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, int64_t ft,
                          int64_t fs, int64_t drop, wf_err *err);
wf_status wk_cuda_rope_table(wk_backend *be, wk_tensor *cos, wk_tensor *sin, int64_t F,
                             int64_t H, int64_t W, double theta, int64_t l0, wf_err *err);

wf_status wk_cuda_scale_add(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b,
                            float s, wf_err *err);
wf_status wk_cuda_guidance(wk_backend *be, wk_tensor *y, const wk_tensor *u, const wk_tensor *c,
                           float g, wf_err *err);
wf_status wk_cuda_unipc_update(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                               const wk_tensor *const *m, const wk_tensor *d,
                               const wk_unipc_coef *c, wf_err *err);
wf_status wk_cuda_first_nonfinite(wk_backend *be, const wk_tensor *x, int64_t *index,
                                  wf_err *err);

wf_status wk_cuda_time_enable(wk_backend *be, bool on, wf_err *err);
void wk_cuda_time_mark(wk_backend *be, int cat, int begin);
wf_status wk_cuda_time_take(wk_backend *be, double *secs, wf_err *err);
void wk_cuda_timing_free(wk_cuda *c);

/* Element-wise widening of a weight-like tensor inside a kernel: the value of element i of a
 * buffer of dtype dt (f32, bf16, f16, f8e4m3) as f32. Defined in cuda_elementwise.cu as a
 * __device__ function; declared for kernels in the other .cu files through cuda_device.cuh. */

#ifdef __cplusplus
}
#endif
#endif
