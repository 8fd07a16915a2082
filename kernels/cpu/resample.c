/* resample.c: the CPU reference of the nearest-neighbour 2x spatial upsample.
 *
 * What it is: x [N, H, W, C] -> y [N, 2H, 2W, C] with y[n, i, j, :] = x[n, i/2, j/2, :], channels
 * last (the Wan-VAE decoder's Upsample before its conv; N folds batch and time). Output rows run
 * in parallel (OpenMP); each output pixel is a copy of C contiguous floats.
 * What it is not: the temporal upsample (the VAE's time_conv + reshuffle) or any interpolating
 * mode.
 * Tested by: tests/test_ops.c, rows "upsample2x" in tests/ops_basic.c (odd H, W, C; exact).
 */
#include "cpu_ops.h"

/* Below this many elements the rows run on one thread: the fork costs more than it saves. */
#define RESAMPLE_PAR_MIN 32768

wf_status wk_cpu_upsample2x(wk_backend *be, wk_tensor *y, const wk_tensor *x, wf_err *err) {
    wf_status st;
    char sx[96], sy[96];
    if ((st = wk_check_dtype(x, WK_F32, "upsample2x", "x", err))) return st;
    if ((st = wk_check_dtype(y, WK_F32, "upsample2x", "y", err))) return st;
    if ((st = wk_check_ndim(x, 4, "upsample2x", "x [N, H, W, C]", err))) return st;
    int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    if (y->ndim != 4 || y->shape[0] != N || y->shape[1] != 2 * H || y->shape[2] != 2 * W ||
        y->shape[3] != C)
        return wf_fail(err, WF_EINVAL, "upsample2x: y has shape %s, expected [%lld, %lld, %lld, "
                       "%lld] (x %s)", wk_tensor_shape_str(y, sy, sizeof sy), (long long)N,
                       (long long)(2 * H), (long long)(2 * W), (long long)C,
                       wk_tensor_shape_str(x, sx, sizeof sx));
    const float *xd = x->data;
    float *yd = y->data;
    int64_t rows = N * 2 * H; /* output rows (n, i) */
#pragma omp parallel for num_threads(be->nthreads) if (rows * 2 * W * C >= RESAMPLE_PAR_MIN) \
    schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t n = r / (2 * H), i = r % (2 * H);
        const float *src = xd + (n * H + i / 2) * W * C; /* x[n, i/2, :, :] */
        float *dst = yd + r * 2 * W * C;                   /* y[n, i, :, :] */
        for (int64_t j = 0; j < 2 * W; j++) memcpy(dst + j * C, src + (j / 2) * C, (size_t)C * 4);
    }
    return WF_OK;
}
