/* test_ops.h: the one table-driven op test (tests/test_ops.c runs it).
 *
 * Each row is {op, description, runner, shape parameters, weight dtype, tolerance, why}. A runner
 * makes fresh random inputs from the seed (never zeros), runs the op on the backend under test
 * into guarded buffers, computes the same result with a naive double-precision reference, and
 * returns the normalised error ||out - ref|| / ||ref|| in *err. It returns WF_EUNSUPPORTED when the
 * backend lacks the op (reported as "not supported", not as a failure), any other non-OK status
 * when the op failed, and it sets *bad (guard bytes overwritten, NaN/Inf where the reference is
 * finite) when the output is corrupt.
 *
 * Rows live in five files: tests/ops_basic.c (matmul, elementwise, norms, softmax, activations,
 * rope, upsample), tests/ops_heavy.c (attention, convolutions), tests/ops_layout.c (the fused
 * forms and the data-movement ops), tests/ops_vae.c (blend, avgdown3d, dupup3d,
 * rms_norm_l2_silu) and tests/ops_sampler.c (scale_add, guidance, unipc_update,
 * first_nonfinite). Each exports its array and count; test_ops.c concatenates them.
 */
#ifndef TEST_OPS_H
#define TEST_OPS_H

#include <stdint.h>

#include "backend.h"
#include "test_util.h"

typedef struct op_case op_case;
typedef wf_status (*op_runner)(const op_case *c, wk_backend *be, tu_rng *rng, double *err,
                               int *bad, wf_err *e);

struct op_case {
    const char *op;    /* "matmul" */
    const char *desc;  /* "M=37 K=61 N=29 bias" */
    op_runner run;
    int64_t p[8];      /* shape parameters, meaning per runner */
    wk_dtype wdt;      /* dtype of the weight-like inputs (w, bias, gamma) */
    double tol;        /* bound on the normalised error */
    const char *why;   /* the rationale for tol */
};

extern const op_case ops_basic_cases[];
extern const int ops_basic_count;
extern const op_case ops_heavy_cases[];
extern const int ops_heavy_count;
extern const op_case ops_layout_cases[];
extern const int ops_layout_count;
extern const op_case ops_vae_cases[];
extern const int ops_vae_count;
extern const op_case ops_sampler_cases[];
extern const int ops_sampler_count;

/* Helpers for runners. A weight-like tensor in dtype dt made from f32 values: the values are
 * rounded to dt in place (so the double reference sees exactly what the op sees) and stored in
 * a malloc'd buffer returned in *storage (free it). */
wk_tensor ops_weight(wk_dtype dt, float *vals, int ndim, const int64_t *shape, void **storage);

/* For the "rejects" rows: 0 when got == want and e's message contains every non-NULL fragment,
 * else 1, with a line on stderr saying what came instead. */
int ops_expect(const char *what, wf_status got, wf_status want, const wf_err *e,
               const char *frag1, const char *frag2, const char *frag3);
/* failed += ops_expect(what, call, ...), with the wf_err `le` of the caller cleared first. */
#define OPS_EXPECT(what, call, want, f1, f2, f3)                                                 \
    do {                                                                                         \
        wf_err_clear(&le);                                                                       \
        failed += ops_expect(what, (call), want, &le, f1, f2, f3);                               \
    } while (0)

#endif
