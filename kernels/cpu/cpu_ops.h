/* cpu_ops.h: the CPU backend's op functions (prefix wk_cpu_), one file per op family:
 *   matmul.c (matmul), elementwise.c (add, mul, gelu_tanh, silu), norm.c (layer_norm, rms_norm,
 *   rms_norm_l2), softmax.c, rope.c (rope, wk_rope_table_3d), attention.c, conv.c (conv3d,
 *   conv2d), resample.c (upsample2x).
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
wf_status wk_cpu_attention(wk_backend *be, wk_tensor *o, const wk_tensor *q, const wk_tensor *k,
                           const wk_tensor *v, float scale, int64_t kv_len, const wk_tensor *bias,
                           wf_err *err);
wf_status wk_cpu_conv3d(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *bias, const wk_conv_params *p, wf_err *err);
wf_status wk_cpu_conv2d(wk_backend *be, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *bias, const wk_conv_params *p, wf_err *err);
wf_status wk_cpu_upsample2x(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err);

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
