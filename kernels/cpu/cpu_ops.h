/* cpu_ops.h: the CPU backend's op functions (prefix wk_cpu_), one file per op family:
 *   matmul.c (matmul), elementwise.c (add, mul, gelu_tanh, silu), norm.c (layer_norm, rms_norm,
 *   rms_norm_l2), softmax.c, rope.c (rope, wk_rope_table_3d), attention.c, conv.c (conv3d,
 *   conv2d), resample.c (upsample2x), fused.c (matmul_gelu, ln_modulate, gate_residual,
 *   rms_norm_rope), layout.c (convert, fill, copy_box, permute, timestep_embed, embedding,
 *   t5_bias), vae_ops.c (blend, avgdown3d, dupup3d, rms_norm_l2_silu), sampler_ops.c (scale_add,
 *   guidance, unipc_update, first_nonfinite).
 * Semantics are documented once, in kernels/backend.h. These files are the readable fp32
 * reference every other backend is checked against; they are threaded with OpenMP and call
 * OpenBLAS (OpenMP build) for GEMMs.
 */
#ifndef WK_CPU_OPS_H
#define WK_CPU_OPS_H

#include "../backend.h"

wf_status wk_cpu_matmul(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *bias, wf_err *err);
wf_status wk_cpu_add(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b,
                     wf_err *err);
wf_status wk_cpu_mul(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b,
                     wf_err *err);
wf_status wk_cpu_layer_norm(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                            const wk_tensor *b, float eps, wf_err *err);
wf_status wk_cpu_rms_norm(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                          float eps, wf_err *err);
wf_status wk_cpu_rms_norm_l2(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                             const wk_tensor *gamma, wf_err *err);
wf_status wk_cpu_softmax(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);
wf_status wk_cpu_gelu_tanh(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);
wf_status wk_cpu_silu(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);
wf_status wk_cpu_rope(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *cos,
                      const wk_tensor *sin, wf_err *err);
wf_status wk_cpu_rope_table(wk_backend *be, wk_tensor *cos, wk_tensor *sin, int64_t F, int64_t H,
                            int64_t W, double theta, int64_t l0, wf_err *err);
wf_status wk_cpu_attention(wk_backend *be, wk_tensor *o, const wk_tensor *q, const wk_tensor *k,
                           const wk_tensor *v, float scale, int64_t kv_len, const wk_tensor *bias,
                           wf_err *err);
wf_status wk_cpu_conv3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *bias, const wk_conv_params *p, wf_err *err);
wf_status wk_cpu_conv2d(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *bias, const wk_conv_params *p, wf_err *err);
wf_status wk_cpu_upsample2x(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);

/* fused.c: the fused DiT forms, bit for bit the unfused sequences (fused.c's head comment) */
wf_status wk_cpu_matmul_gelu(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                             const wk_tensor *bias, wf_err *err);
wf_status wk_cpu_ln_modulate(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                             const wk_tensor *scale1, const wk_tensor *shift, float eps,
                             wf_err *err);
wf_status wk_cpu_gate_residual(wk_backend *be, wk_tensor *x, const wk_tensor *y,
                               const wk_tensor *gate, wf_err *err);
wf_status wk_cpu_rms_norm_rope(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                               const wk_tensor *w, const wk_tensor *cos, const wk_tensor *sin,
                               float eps, wf_err *err);

/* layout.c: data movement (convert, fill, copy_box, permute) and the models' table lookups */
wf_status wk_cpu_convert(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);
wf_status wk_cpu_fill(wk_backend *be, wk_tensor *y, float value, wf_err *err);
wf_status wk_cpu_copy_box(wk_backend *be, wk_tensor *y, const int64_t *y_off, const wk_tensor *x,
                          const int64_t *x_off, const int64_t *ext, wf_err *err);
wf_status wk_cpu_permute(wk_backend *be, wk_tensor *y, const wk_tensor *x, int nd,
                         const int64_t *shape, const int *perm, wf_err *err);
wf_status wk_cpu_timestep_embed(wk_backend *be, wk_tensor *y, const wk_tensor *t, wf_err *err);
wf_status wk_cpu_embedding(wk_backend *be, wk_tensor *y, const wk_tensor *table,
                           const wk_tensor *ids, wf_err *err);
wf_status wk_cpu_t5_bias(wk_backend *be, wk_tensor *y, const wk_tensor *table,
                         const wk_tensor *mask, int64_t max_distance, wf_err *err);
/* WF_EINVAL unless t is host memory (device WK_DEV_CPU), naming the op and argument. */
wf_status wk_cpu_check_host(const wk_tensor *t, const char *op, const char *arg, wf_err *err);

/* vae_ops.c: the Wan-VAE's tile blend, Wan2.2 block shortcuts and fused norm + SiLU */
wf_status wk_cpu_blend(wk_backend *be, wk_tensor *b, const wk_tensor *a, int axis, int64_t extent,
                       wf_err *err);
wf_status wk_cpu_avgdown3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, int64_t ft,
                           int64_t fs, wf_err *err);
wf_status wk_cpu_dupup3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, int64_t ft, int64_t fs,
                         int64_t drop, wf_err *err);
wf_status wk_cpu_rms_norm_l2_silu(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                                  const wk_tensor *gamma, wf_err *err);

/* sampler_ops.c: the samplers' and guidance's elementwise updates */
wf_status wk_cpu_scale_add(wk_backend *be, wk_tensor *y, const wk_tensor *a, const wk_tensor *b,
                           float s, wf_err *err);
wf_status wk_cpu_guidance(wk_backend *be, wk_tensor *y, const wk_tensor *u, const wk_tensor *c,
                          float g, wf_err *err);
wf_status wk_cpu_unipc_update(wk_backend *be, wk_tensor *y, const wk_tensor *x,
                              const wk_tensor *const *m, const wk_tensor *d,
                              const wk_unipc_coef *c, wf_err *err);
wf_status wk_cpu_first_nonfinite(wk_backend *be, const wk_tensor *x, int64_t *index, wf_err *err);
/* Rows of activations per GEMM task cut (matmul, conv im2col blocks, attention query blocks): a
 * multiple of every BLAS register tile (4, 6, 8, 16, 24 rows). The backend publishes it as
 * wk_backend.row_quantum. */
#define WK_CPU_ROW_QUANTUM 48

/* y[M, N] (leading dim ldy) = x[M, K] . w[N, K]^T + beta y, on nth threads, cut into tasks whose
 * bounds fall on multiples of every BLAS register tile (48 rows of x or 384 rows of w), each a
 * single-threaded sgemm: the bits of y do not depend on nth (matmul.c's head comment). M, N, K
 * must fit in int. */
void wk_cpu_sgemm_nt(int nth, int64_t M, int64_t N, int64_t K, const float *x, const float *w,
                     float beta, float *y, int64_t ldy);

#endif
