/* cpu_backend.c: the CPU backend's op table and constructor (see backend.h, cpu_ops.h). */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

#include "cpu_ops.h"

static const wk_ops cpu_ops = {
    .matmul = wk_cpu_matmul,
    .add = wk_cpu_add,
    .mul = wk_cpu_mul,
    .layer_norm = wk_cpu_layer_norm,
    .rms_norm = wk_cpu_rms_norm,
    .rms_norm_l2 = wk_cpu_rms_norm_l2,
    .softmax = wk_cpu_softmax,
    .gelu_tanh = wk_cpu_gelu_tanh,
    .silu = wk_cpu_silu,
    .rope = wk_cpu_rope,
    .attention = wk_cpu_attention,
    .conv3d = wk_cpu_conv3d,
    .conv2d = wk_cpu_conv2d,
    .upsample2x = wk_cpu_upsample2x,
    .matmul_gelu = wk_cpu_matmul_gelu,
    .ln_modulate = wk_cpu_ln_modulate,
    .gate_residual = wk_cpu_gate_residual,
    .rms_norm_rope = wk_cpu_rms_norm_rope,
    .convert = wk_cpu_convert,
    .fill = wk_cpu_fill,
    .copy_box = wk_cpu_copy_box,
    .permute = wk_cpu_permute,
    .timestep_embed = wk_cpu_timestep_embed,
    .embedding = wk_cpu_embedding,
    .t5_bias = wk_cpu_t5_bias,
    .rms_norm_l2_silu = wk_cpu_rms_norm_l2_silu,
    .blend = wk_cpu_blend,
    .avgdown3d = wk_cpu_avgdown3d,
    .dupup3d = wk_cpu_dupup3d,
    .rope_table = wk_cpu_rope_table,
    .scale_add = wk_cpu_scale_add,
    .guidance = wk_cpu_guidance,
    .unipc_update = wk_cpu_unipc_update,
    .first_nonfinite = wk_cpu_first_nonfinite,
};

wf_status wk_backend_cpu_new(wk_backend **out, int nthreads, wf_err *err) {
    wk_backend *be = calloc(1, sizeof *be);
    if (!be) return wf_fail(err, WF_ENOMEM, "cpu backend: out of memory");
    be->name = "cpu";
    be->device = WK_DEV_CPU;
    be->ordinal = -1;
    be->nthreads = nthreads > 0 ? nthreads : omp_get_max_threads();
    be->row_quantum = WK_CPU_ROW_QUANTUM;
    be->ops = &cpu_ops;
    openblas_set_num_threads(be->nthreads); /* GEMMs outside parallel regions use these */
    *out = be;
    return WF_OK;
}
