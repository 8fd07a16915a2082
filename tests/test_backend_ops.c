/* test_backend_ops.c: every op of the backend table, the CUDA backend checked against the CPU
 * backend, in the manner of ggml's test-backend-ops (ctest: test_backend_ops, labels ops;gpu,
 * skipped with 77 when there is no device; test_backend_ops_cpu, label ops, the --cpu-only mode).
 *
 * What it is: one table of rows {op, case, dtype, precision, CUDA path, bound, why}. For each row:
 * fresh random inputs from the seed (never zeros), built on the host in the row's dtypes,
 * uploaded into memory from each backend's own allocator (wk_backend_alloc), outputs with 64 guard
 * bytes on each side (a pattern, uploaded, checked after download) and starting as NaN so that an
 * element the op does not write shows; the op runs on the CPU backend (the reference) and on the
 * CUDA backend; the outputs are downloaded and compared: the normalised error
 * ||test - ref|| / ||ref|| over the elements where ref is finite, against the row's bound; NaN/Inf
 * where ref is finite, or another non-finite where it is not, is "corrupt". Each row runs twice,
 * with fresh activations and the same weights (a steady-state step); the second run must not grow
 * either backend's workspace (ws_grows), allocate
 * backend memory (mem_allocs) or call cudaMalloc (the plug-in's wk_cuda_plugin_stats, found with
 * dlsym: this test does not link CUDA). An op a backend lacks is "not supported", reported apart
 * from failures. A coverage check at start-up fails the test when an op of wk_ops has no row.
 * Rows that force a CUDA path (attention own|cudnn, GEMM simt, conv own) get a backend of their
 * own, made with the plug-in's variable set (WANFARM_CUDA_ATTN, _GEMM, _CONV).
 * Modes:
 *   default     CUDA against CPU. Without a usable device it prints "test_backend_ops: no CUDA
 *               device (<why>): skipped" and exits 77.
 *   --cpu-only  the CPU backend on all its threads against itself on one thread: bit for bit
 *               (the CPU promises that its bits do not depend on the thread count), except the
 *               GEMM-based ops on a BLAS not known to be bit-exact across cuts (1e-5 then). It
 *               needs no device and exercises the harness and every row's CPU side in CI.
 *   --list      the table, with each bound's reason; needs no device.
 * What it is not: the CPU op test against double-precision references (tests/test_ops.c), nor a
 * benchmark: times are of one run (op + sync, the second run), for orientation only.
 * Run: test_backend_ops [--cpu-only] [--filter SUB] [--seed S] [--threads N] [--device D]
 *                       [--list] [--json FILE]; exit 0 OK, 1 FAILED, 2 usage, 77 no device.
 */
#include <dlfcn.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "backend_load.h"
#include "test_util.h"

#define DEFAULT_SEED 1234
#define GUARD 64   /* guard bytes on each side of an output */
#define NSLOT 8    /* tensors of one op call */
#define EPS 1e-6f  /* the norms' eps (the DiT's) */

/* ---------------------------------------------------------------------------------------------
 * The op table: every non-memory op of wk_ops by name, for the coverage check
 * ------------------------------------------------------------------------------------------- */

typedef struct op_name {
    const char *name;
    size_t off; /* offsetof(wk_ops, name) */
} op_name;

#define OPN(n) {#n, offsetof(wk_ops, n)}
static const op_name table_ops[] = {
    OPN(matmul),     OPN(add),         OPN(mul),           OPN(layer_norm),
    OPN(rms_norm),   OPN(rms_norm_l2), OPN(softmax),       OPN(gelu_tanh),
    OPN(silu),       OPN(rope),        OPN(attention),     OPN(conv3d),
    OPN(conv2d),     OPN(upsample2x),  OPN(matmul_gelu),   OPN(ln_modulate),
    OPN(gate_residual), OPN(rms_norm_rope), OPN(rms_norm_l2_silu), OPN(convert),
    OPN(fill),       OPN(copy_box),    OPN(permute),       OPN(timestep_embed),
    OPN(embedding),  OPN(t5_bias),     OPN(blend),         OPN(avgdown3d),
    OPN(dupup3d),    OPN(rope_table),  OPN(scale_add),     OPN(guidance),
    OPN(unipc_update), OPN(first_nonfinite),
};
/* the memory and timing ops: no rows of their own (every row uses the memory ops; the timing
 * ops are checked through whole steps, tests/test_gpu_pipeline.c) */
static const op_name memory_ops[] = {OPN(alloc),    OPN(free),        OPN(upload),
                                     OPN(download), OPN(copy),        OPN(sync),
                                     OPN(time_enable), OPN(time_mark), OPN(time_take)};
#undef OPN
#define N_TABLE_OPS ((int)(sizeof table_ops / sizeof table_ops[0]))
#define N_MEMORY_OPS ((int)(sizeof memory_ops / sizeof memory_ops[0]))

/* ---------------------------------------------------------------------------------------------
 * A row and one instance of it
 * ------------------------------------------------------------------------------------------- */

typedef enum { S_NONE = 0, S_IN, S_W, S_OUT, S_INOUT } slot_role;

/* One tensor of an op call, on the host: dtype, shape and its bytes (malloc'd). S_W is an input
 * that is a weight (w, bias, gamma, a table): the second run keeps it, as a model's steady-state
 * step keeps its uploaded weights and sees fresh activations (a backend may cache what it derives
 * from a weight, keyed by its address). An S_OUT slot starts as all-ones bytes (NaN in every
 * float dtype); an S_INOUT slot starts with random values and is compared after the op (in-place
 * ops, partial writes). */
typedef struct slot {
    slot_role role;
    wk_tensor h;
} slot;

typedef struct inst {
    slot s[NSLOT];
    bool oom;
} inst;

/* The CUDA backend's path, forced through its environment when the backend is made:
 * attention's own kernel or cuDNN's SDPA (WANFARM_CUDA_ATTN), the GEMMs' SIMT kernel instead of
 * cuBLASLt (WANFARM_CUDA_GEMM), the convolutions' own kernel instead of cuDNN (WANFARM_CUDA_CONV).
 * P_AUTO leaves the environment as it is. */
enum { P_AUTO = 0, P_OWN, P_CUDNN, P_SIMT, P_CONV_OWN, N_PATHS };
static const struct {
    const char *name, *var, *value;
} paths[N_PATHS] = {
    {"-", NULL, NULL},
    {"own", "WANFARM_CUDA_ATTN", "own"},
    {"cudnn", "WANFARM_CUDA_ATTN", "cudnn"},
    {"simt", "WANFARM_CUDA_GEMM", "simt"},
    {"own", "WANFARM_CUDA_CONV", "own"},
};

typedef struct row row;
/* Makes the row's tensors from the rng into in (in->oom on a failed allocation). */
typedef void (*row_build)(const row *r, inst *in, tu_rng *rng);
/* Calls the op on be; d[k] is slot k in be's memory (data NULL for an absent slot). */
typedef wf_status (*row_exec)(const row *r, wk_backend *be, wk_tensor *d, wf_err *e);

struct row {
    const char *op;     /* the table's name */
    const char *cs;     /* the case */
    row_build build;
    row_exec exec;
    wk_dtype dt;        /* weight-like inputs (w, bias, gamma, tables), or the moved elements */
    wk_precision prec;  /* the CUDA backend's mode */
    int path;           /* P_AUTO, or the CUDA path it forces */
    double bound;       /* on the normalised error against the CPU */
    const char *why;    /* the bound's reason */
    int64_t p[20];      /* shape parameters, meaning per builder */
};

#define OPT(k) (d[k].data ? &d[k] : NULL) /* an optional argument */
#define SRC(k) (d[k].data ? &d[k] : &d[0]) /* x, or y itself for a row run in place */

/* ---------------------------------------------------------------------------------------------
 * Slots: random tensors in any dtype
 * ------------------------------------------------------------------------------------------- */

/* A slot of dtype dt and the given shape with uninitialised bytes; NULL (and in->oom) when out
 * of memory. */
static void *slot_new(inst *in, int k, slot_role role, wk_dtype dt, int ndim,
                      const int64_t *shape) {
    WF_ASSERT(k >= 0 && k < NSLOT && in->s[k].role == S_NONE && role != S_NONE);
    wk_tensor t = wk_tensor_make(dt, NULL, ndim, shape);
    size_t n = wk_tensor_nbytes(&t);
    t.data = malloc(n ? n : 1);
    if (!t.data) in->oom = true;
    in->s[k] = (slot){role, t};
    return t.data;
}

/* An output the op must write in full: all-ones bytes (NaN in f32, bf16, f16 and f8e4m3). */
static void slot_out(inst *in, int k, wk_dtype dt, int ndim, const int64_t *shape) {
    void *p = slot_new(in, k, S_OUT, dt, ndim, shape);
    if (p) memset(p, 0xff, wk_tensor_nbytes(&in->s[k].h));
}

typedef enum { G_NORMAL, G_UNIFORM } gen_kind;

/* A slot of random values: mean a + b N(0, 1) (G_NORMAL) or uniform in [a, b) (G_UNIFORM), rounded
 * to dt (i32: uniform integers in [a, b)). Returns the values when dt is f32 (for a builder to
 * edit), else NULL. */
static float *slot_rand(inst *in, tu_rng *rng, int k, slot_role role, wk_dtype dt, int ndim,
                        const int64_t *shape, gen_kind g, float a, float b) {
    void *p = slot_new(in, k, role, dt, ndim, shape);
    if (!p) return NULL;
    size_t n = (size_t)wk_tensor_numel(&in->s[k].h);
    if (dt == WK_I32) {
        int32_t *v = p;
        for (size_t i = 0; i < n; i++) v[i] = (int32_t)floor(a + (b - a) * tu_uniform(rng));
        return NULL;
    }
    float *v = dt == WK_F32 ? p : malloc(n ? n * sizeof(float) : 1);
    if (!v) {
        in->oom = true;
        return NULL;
    }
    if (g == G_NORMAL) {
        tu_fill_normal(rng, v, n, b);
        for (size_t i = 0; i < n; i++) v[i] += a;
    } else {
        tu_fill_uniform(rng, v, n, a, b);
    }
    if (dt == WK_F32) return v;
    wk_convert_from_f32(p, dt, v, n);
    free(v);
    return NULL;
}

/* x for an op that may run in place: slot 1 (and an output in slot 0), or slot 0 itself (S_INOUT)
 * when in_place. Returns x's values (f32). */
static float *slot_x(inst *in, tu_rng *rng, bool in_place, int ndim, const int64_t *shape,
                     float mean, float scale) {
    if (in_place) return slot_rand(in, rng, 0, S_INOUT, WK_F32, ndim, shape, G_NORMAL, mean, scale);
    slot_out(in, 0, WK_F32, ndim, shape);
    return slot_rand(in, rng, 1, S_IN, WK_F32, ndim, shape, G_NORMAL, mean, scale);
}

/* Rotary tables cos, sin [L, HD] f32 in slots kc, kc + 1: a random angle per (token, pair),
 * repeated for the pair, as wk_rope_table_3d lays them out. */
static void slot_rope_tables(inst *in, tu_rng *rng, int kc, int64_t L, int64_t HD) {
    float *c = slot_new(in, kc, S_IN, WK_F32, 2, (int64_t[]){L, HD});
    float *s = slot_new(in, kc + 1, S_IN, WK_F32, 2, (int64_t[]){L, HD});
    if (!c || !s) return;
    for (int64_t i = 0; i < L * HD; i += 2) {
        double a = -6.0 + 12.0 * tu_uniform(rng);
        c[i] = c[i + 1] = (float)cos(a);
        s[i] = s[i + 1] = (float)sin(a);
    }
}

static void inst_free(inst *in) {
    for (int k = 0; k < NSLOT; k++) free(in->s[k].h.data);
    *in = (inst){0};
}

/* ---------------------------------------------------------------------------------------------
 * Builders and calls, one family at a time. p[] is documented above each builder; slot numbers
 * are the order of the op's arguments, output first.
 * ------------------------------------------------------------------------------------------- */

/* matmul, matmul_gelu: p = {B, M, K, N, bias, qscale x 1e6}; x [B, M, K] (B > 0) or [M, K] f32
 * ~ N(0, 1), w [N, K] ~ N(0, 1/K) (outputs of unit scale: GELU's curved part) and bias [N] in
 * dt; qscale (f8e4m3): w is a scaled-fp8 weight (its value the stored one times qscale).
 * Slots: 0 y, 1 x, 2 w, 3 bias. */
static void build_matmul(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p, B = p[0], M = p[1], K = p[2], N = p[3];
    const int nd = B ? 3 : 2;
    const int64_t xs[3] = {B, M, K}, ys[3] = {B, M, N};
    slot_out(in, 0, WK_F32, nd, B ? ys : ys + 1);
    slot_rand(in, rng, 1, S_IN, WK_F32, nd, B ? xs : xs + 1, G_NORMAL, 0, 1);
    slot_rand(in, rng, 2, S_W, r->dt, 2, (int64_t[]){N, K}, G_NORMAL, 0, 1.0f / sqrtf((float)K));
    in->s[2].h.qscale = (float)((double)p[5] * 1e-6);
    if (p[4]) slot_rand(in, rng, 3, S_W, r->dt, 1, &N, G_NORMAL, 0, 0.5f);
}
static wf_status exec_matmul(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_matmul(be, &d[0], &d[1], &d[2], OPT(3), e);
}
static wf_status exec_matmul_gelu(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_matmul_gelu(be, &d[0], &d[1], &d[2], OPT(3), e);
}

/* add, mul: p = {a0, a1, a2, b ndim, b0, b1, b2, in place}; a [a0, a1, a2] f32, b of the given
 * dims in dt (broadcast). Slots: 0 y (a itself in place), 1 a, 2 b. */
static void build_binary(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p;
    slot_x(in, rng, p[7] != 0, 3, p, 0, 1);
    slot_rand(in, rng, 2, S_IN, r->dt, (int)p[3], p + 4, G_NORMAL, 0.5f, 1);
}
static wf_status exec_add(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_add(be, &d[0], SRC(1), &d[2], e);
}
static wf_status exec_mul(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_mul(be, &d[0], SRC(1), &d[2], e);
}

/* layer_norm, rms_norm: p = {rows, C, affine, mean, in place}; x [rows, C] ~ N(mean, 2^2) (a
 * mean offset that a one-pass variance would lose); affine: w [C] ~ N(1, 0.5^2) and (layer_norm)
 * b [C] in dt. Slots: 0 y, 1 x, 2 w, 3 b. */
static void build_norm(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p, C = p[1];
    slot_x(in, rng, p[4] != 0, 2, p, (float)p[3], 2);
    if (!p[2]) return;
    slot_rand(in, rng, 2, S_W, r->dt, 1, &C, G_NORMAL, 1, 0.5f);
    if (strcmp(r->op, "layer_norm") == 0) slot_rand(in, rng, 3, S_W, r->dt, 1, &C, G_NORMAL, 0, 1);
}
static wf_status exec_layer_norm(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_layer_norm(be, &d[0], SRC(1), OPT(2), OPT(3), EPS, e);
}
static wf_status exec_rms_norm(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_rms_norm(be, &d[0], SRC(1), OPT(2), EPS, e);
}

/* rms_norm_l2, rms_norm_l2_silu: p = {T, H, W, C, gamma, zero row, in place}; x [1, T, H, W, C]
 * ~ N(0, 2^2), gamma 0 = none, 1 = [C], 3 = [C, 1, 1] (the VAE's layout) ~ N(1, 0.5^2) in dt;
 * zero row: the first pixel's channels are 0 (the 1e-12 floor). Slots: 0 y, 1 x, 2 gamma. */
static void build_l2(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p, C = p[3];
    float *x = slot_x(in, rng, p[6] != 0, 5, (int64_t[]){1, p[0], p[1], p[2], C}, 0, 2);
    if (x && p[5])
        for (int64_t c = 0; c < C; c++) x[c] = 0.0f;
    if (p[4]) slot_rand(in, rng, 2, S_W, r->dt, (int)p[4], (int64_t[]){C, 1, 1}, G_NORMAL, 1, 0.5f);
}
static wf_status exec_rms_norm_l2(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_rms_norm_l2(be, &d[0], SRC(1), OPT(2), e);
}
static wf_status exec_rms_norm_l2_silu(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_rms_norm_l2_silu(be, &d[0], SRC(1), OPT(2), e);
}

/* ln_modulate: p = {R, D, modulation rows (1 or R)}; x [R, D] ~ N(3, 2^2), scale1 ~ N(1, 0.3^2)
 * and shift ~ N(0, 0.5^2) f32 [mr, D]. Slots: 0 y, 1 x, 2 scale1, 3 shift. */
static void build_ln_modulate(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p;
    const int64_t ms[2] = {p[2], p[1]};
    slot_x(in, rng, false, 2, p, 3, 2);
    slot_rand(in, rng, 2, S_IN, WK_F32, 2, ms, G_NORMAL, 1, 0.3f);
    slot_rand(in, rng, 3, S_IN, WK_F32, 2, ms, G_NORMAL, 0, 0.5f);
}
static wf_status exec_ln_modulate(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_ln_modulate(be, &d[0], &d[1], &d[2], &d[3], EPS, e);
}

/* gate_residual: p = {R, D, gate rows (1 or R)}; x [R, D] (in place), y [R, D], gate [gr, D]
 * ~ N(0, 0.5^2) f32. Slots: 0 x, 1 y, 2 gate. */
static void build_gate_residual(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p;
    slot_rand(in, rng, 0, S_INOUT, WK_F32, 2, p, G_NORMAL, 0, 1);
    slot_rand(in, rng, 1, S_IN, WK_F32, 2, p, G_NORMAL, 0, 1);
    slot_rand(in, rng, 2, S_IN, WK_F32, 2, (int64_t[]){p[2], p[1]}, G_NORMAL, 0, 0.5f);
}
static wf_status exec_gate_residual(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_gate_residual(be, &d[0], &d[1], &d[2], e);
}

/* rope: p = {L, NH, HD, in place}; x [L, NH, HD] ~ N(0, 1). Slots: 0 y, 1 x, 2 cos, 3 sin.
 * rms_norm_rope: p = {L, NH, HD}; also w [NH*HD] ~ N(1, 0.5^2) in dt.
 * Slots: 0 y, 1 x, 2 w, 3 cos, 4 sin. */
static void build_rope(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p, L = p[0], NH = p[1], HD = p[2], C = NH * HD;
    const bool fused = strcmp(r->op, "rms_norm_rope") == 0;
    slot_x(in, rng, !fused && p[3] != 0, 3, p, 0, 1);
    if (fused) slot_rand(in, rng, 2, S_W, r->dt, 1, &C, G_NORMAL, 1, 0.5f);
    slot_rope_tables(in, rng, fused ? 3 : 2, L, HD);
}
static wf_status exec_rope(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_rope(be, &d[0], SRC(1), &d[2], &d[3], e);
}
static wf_status exec_rms_norm_rope(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_rms_norm_rope(be, &d[0], &d[1], &d[2], &d[3], &d[4], EPS, e);
}

/* softmax: p = {rows, C, std, in place}; gelu_tanh, silu: p = {d0, d1, d2, std, in place}.
 * x ~ N(0, std^2). Slots: 0 y, 1 x. */
static void build_softmax(const row *r, inst *in, tu_rng *rng) {
    slot_x(in, rng, r->p[3] != 0, 2, r->p, 0, (float)r->p[2]);
}
static void build_unary(const row *r, inst *in, tu_rng *rng) {
    slot_x(in, rng, r->p[4] != 0, 3, r->p, 0, (float)r->p[3]);
}
static wf_status exec_softmax(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_softmax(be, &d[0], SRC(1), e);
}
static wf_status exec_gelu_tanh(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_gelu_tanh(be, &d[0], SRC(1), e);
}
static wf_status exec_silu(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_silu(be, &d[0], SRC(1), e);
}

/* attention: p = {Lq, Lk, NH, HD, kv_len, bias, unscaled, masked row}. q [Lq, NH, HD], k, v
 * [Lk, NH, HD]; scale 1/sqrt(HD), or 1 when unscaled (T5), where q and k get std HD^-1/4 so that
 * the logits have std ~1 either way; v ~ N(0, 1). bias 0 none, 1 key mask [Lk] (0 or -inf, a
 * quarter masked, key 0 never), 2 full [NH, Lq, Lk] ~ N(0, 1) with a tenth -inf; masked row: head
 * 0's query 0 has every key -inf (its output must be zeros); the bias in dt. Slots: 0 o, 1 q, 2 k,
 * 3 v, 4 bias. */
static void build_attention(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p, Lq = p[0], Lk = p[1], NH = p[2], HD = p[3];
    const float sd = p[6] ? powf((float)HD, -0.25f) : 1.0f;
    slot_out(in, 0, WK_F32, 3, (int64_t[]){Lq, NH, HD});
    slot_rand(in, rng, 1, S_IN, WK_F32, 3, (int64_t[]){Lq, NH, HD}, G_NORMAL, 0, sd);
    slot_rand(in, rng, 2, S_IN, WK_F32, 3, (int64_t[]){Lk, NH, HD}, G_NORMAL, 0, sd);
    slot_rand(in, rng, 3, S_IN, WK_F32, 3, (int64_t[]){Lk, NH, HD}, G_NORMAL, 0, 1);
    if (!p[5]) return;
    const int64_t bs[3] = {NH, Lq, Lk}, n = p[5] == 1 ? Lk : NH * Lq * Lk;
    float *b = malloc((size_t)n * sizeof(float));
    void *bd = slot_new(in, 4, S_IN, r->dt, p[5] == 1 ? 1 : 3, p[5] == 1 ? &Lk : bs);
    if (!b || !bd) {
        in->oom = true;
        free(b);
        return;
    }
    for (int64_t j = 0; j < n; j++) {
        const double u = tu_uniform(rng);
        if (p[5] == 1) b[j] = j > 0 && u < 0.25 ? -INFINITY : 0.0f;
        else b[j] = u < 0.1 || (p[7] && j < Lk) ? -INFINITY : (float)tu_normal(rng);
    }
    wk_convert_from_f32(bd, r->dt, b, (size_t)n);
    free(b);
}
static wf_status exec_attention(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    const float scale = r->p[6] ? 1.0f : 1.0f / sqrtf((float)r->p[3]);
    return wk_attention(be, &d[0], &d[1], &d[2], &d[3], scale, r->p[4], OPT(4), e);
}

/* conv3d: p = {N, T, H, W, Cin, Cout, kT, kH, kW, bias, st, sh, sw, pt0, pt1, ph0, ph1, pw0,
 * pw1}; x [N, T, H, W, Cin] ~ N(0, 1), w [Cout, Cin, kT, kH, kW] ~ N(0, 1/fan_in) and bias [Cout]
 * in dt. Slots: 0 y, 1 x, 2 w, 3 bias. */
static wk_conv_params conv3d_params(const int64_t *p) {
    return (wk_conv_params){.stride = {(int)p[10], (int)p[11], (int)p[12]},
                            .pad = {{(int)p[13], (int)p[14]}, {(int)p[15], (int)p[16]},
                                    {(int)p[17], (int)p[18]}}};
}
static int64_t conv_out(int64_t n, int64_t k, int64_t s, int64_t p0, int64_t p1) {
    return (n + p0 + p1 - k) / s + 1;
}
static void build_conv3d(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p, Cin = p[4], Cout = p[5];
    const int64_t To = conv_out(p[1], p[6], p[10], p[13], p[14]);
    const int64_t Ho = conv_out(p[2], p[7], p[11], p[15], p[16]);
    const int64_t Wo = conv_out(p[3], p[8], p[12], p[17], p[18]);
    const float fan = (float)(Cin * p[6] * p[7] * p[8]);
    slot_out(in, 0, WK_F32, 5, (int64_t[]){p[0], To, Ho, Wo, Cout});
    slot_rand(in, rng, 1, S_IN, WK_F32, 5, (int64_t[]){p[0], p[1], p[2], p[3], Cin}, G_NORMAL, 0,
              1);
    slot_rand(in, rng, 2, S_W, r->dt, 5, (int64_t[]){Cout, Cin, p[6], p[7], p[8]}, G_NORMAL, 0,
              1.0f / sqrtf(fan));
    if (p[9]) slot_rand(in, rng, 3, S_W, r->dt, 1, &Cout, G_NORMAL, 0, 0.5f);
}
static wf_status exec_conv3d(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    const wk_conv_params cp = conv3d_params(r->p);
    return wk_conv3d(be, &d[0], &d[1], &d[2], OPT(3), &cp, e);
}

/* conv2d: p = {N, H, W, Cin, Cout, kH, kW, bias, sh, sw, ph0, ph1, pw0, pw1}; as conv3d without
 * time. Slots: 0 y, 1 x, 2 w, 3 bias. */
static wk_conv_params conv2d_params(const int64_t *p) {
    return (wk_conv_params){.stride = {1, (int)p[8], (int)p[9]},
                            .pad = {{0, 0}, {(int)p[10], (int)p[11]}, {(int)p[12], (int)p[13]}}};
}
static void build_conv2d(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p, Cin = p[3], Cout = p[4];
    const int64_t Ho = conv_out(p[1], p[5], p[8], p[10], p[11]);
    const int64_t Wo = conv_out(p[2], p[6], p[9], p[12], p[13]);
    const float fan = (float)(Cin * p[5] * p[6]);
    slot_out(in, 0, WK_F32, 4, (int64_t[]){p[0], Ho, Wo, Cout});
    slot_rand(in, rng, 1, S_IN, WK_F32, 4, (int64_t[]){p[0], p[1], p[2], Cin}, G_NORMAL, 0, 1);
    slot_rand(in, rng, 2, S_W, r->dt, 4, (int64_t[]){Cout, Cin, p[5], p[6]}, G_NORMAL, 0,
              1.0f / sqrtf(fan));
    if (p[7]) slot_rand(in, rng, 3, S_W, r->dt, 1, &Cout, G_NORMAL, 0, 0.5f);
}
static wf_status exec_conv2d(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    const wk_conv_params cp = conv2d_params(r->p);
    return wk_conv2d(be, &d[0], &d[1], &d[2], OPT(3), &cp, e);
}

/* upsample2x: p = {N, H, W, C}. Slots: 0 y [N, 2H, 2W, C], 1 x [N, H, W, C]. */
static void build_upsample2x(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p;
    slot_out(in, 0, WK_F32, 4, (int64_t[]){p[0], 2 * p[1], 2 * p[2], p[3]});
    slot_rand(in, rng, 1, S_IN, WK_F32, 4, p, G_NORMAL, 0, 1);
}
static wf_status exec_upsample2x(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_upsample2x(be, &d[0], &d[1], e);
}

/* convert: p = {n0, n1, n2, y dtype, std, specials}; x [n0, n1, n2] in dt ~ N(0, std^2), y
 * [n0 n1 n2] (a reshape). Specials (f32 x): rounding ties of bf16, f16 and f8e4m3, values past
 * f8's 448 (NaN there), +-inf, NaN, an f32 subnormal. Slots: 0 y, 1 x. */
static void build_convert(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p, n = p[0] * p[1] * p[2];
    static const float specials[] = {1.0f + 0x1p-8f, 1.0f + 0x1p-11f, 1.0f + 0x1p-4f,
                                     1.0f + 0x3p-8f, 500.0f,    -464.0f,
                                     65520.0f,       INFINITY,  -INFINITY,
                                     NAN,            1e-40f,    -0.0f,
                                     0x1p-10f,       3.0e38f};
    slot_out(in, 0, (wk_dtype)p[3], 1, &n);
    float *x = slot_rand(in, rng, 1, S_IN, r->dt, 3, p, G_NORMAL, 0, (float)p[4]);
    const int64_t ns = (int64_t)(sizeof specials / sizeof specials[0]);
    for (int64_t i = 0; x && p[5] && i < ns && i < n; i++) x[i * (n / ns)] = specials[i];
}
static wf_status exec_convert(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_convert(be, &d[0], &d[1], e);
}

/* fill: p = {n0, n1, value in thousandths}; y [n0, n1] in dt (f32 or i32, where the value is
 * truncated). Slots: 0 y. */
static void build_fill(const row *r, inst *in, tu_rng *rng) {
    slot_out(in, 0, r->dt, 2, r->p);
}
static wf_status exec_fill(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_fill(be, &d[0], (float)r->p[2] / 1000.0f, e);
}

/* copy_box: p = {case}, one of box_cases, elements of dt (random bits for i32). y starts random
 * (only the box is written). Slots: 0 y, 1 x. */
typedef struct box_case {
    int nd;
    int64_t ys[WK_MAX_DIMS], xs[WK_MAX_DIMS], yo[WK_MAX_DIMS], xo[WK_MAX_DIMS], ext[WK_MAX_DIMS];
} box_case;
static const box_case box_cases[] = {
    {3, {7, 11, 13}, {5, 7, 11}, {3, 0, 5}, {1, 2, 3}, {2, 3, 4}},
    {5, {1, 6, 9, 10, 7}, {1, 5, 7, 11, 7}, {0, 1, 2, 0, 0}, {0, 0, 3, 4, 0}, {1, 4, 4, 6, 7}},
    {2, {333, 77}, {333, 77}, {0, 0}, {0, 0}, {333, 77}},
    {4, {2, 3, 5, 7}, {2, 3, 5, 7}, {1, 0, 4, 6}, {0, 2, 0, 0}, {1, 1, 1, 1}},
};
static void build_copy_box(const row *r, inst *in, tu_rng *rng) {
    const box_case *b = &box_cases[r->p[0]];
    const float lo = r->dt == WK_I32 ? -1000000.0f : 0.0f, hi = r->dt == WK_I32 ? 1000000.0f : 1.0f;
    const gen_kind g = r->dt == WK_I32 ? G_UNIFORM : G_NORMAL;
    slot_rand(in, rng, 0, S_INOUT, r->dt, b->nd, b->ys, g, lo, hi);
    slot_rand(in, rng, 1, S_IN, r->dt, b->nd, b->xs, g, lo, hi);
}
static wf_status exec_copy_box(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    const box_case *b = &box_cases[r->p[0]];
    return wk_copy_box(be, &d[0], b->yo, &d[1], b->xo, b->ext, e);
}

/* permute: p = {case}, one of perm_cases, elements of dt; x and y are 1-D [numel] (x is read as
 * the case's shape). Slots: 0 y, 1 x. */
typedef struct perm_case {
    int nd;
    int64_t shape[WK_MAX_PERM_DIMS];
    int perm[WK_MAX_PERM_DIMS];
} perm_case;
static const perm_case perm_cases[] = {
    {4, {3, 5, 7, 11}, {1, 2, 3, 0}},                        /* planar -> channels-last */
    {4, {5, 7, 11, 3}, {3, 0, 1, 2}},                        /* channels-last -> planar */
    {7, {3, 5, 7, 1, 2, 2, 6}, {6, 0, 3, 1, 4, 2, 5}},       /* unpatchify */
    {7, {6, 3, 1, 5, 2, 7, 2}, {1, 3, 5, 2, 4, 6, 0}},       /* patchify */
    {8, {2, 3, 2, 3, 2, 1, 2, 5}, {7, 6, 5, 4, 3, 2, 1, 0}}, /* 8-D reversal */
    {3, {77, 3, 12}, {1, 0, 2}},                             /* head packing */
    {1, {333}, {0}},                                         /* identity */
};
static int64_t perm_numel(const perm_case *c) {
    int64_t n = 1;
    for (int i = 0; i < c->nd; i++) n *= c->shape[i];
    return n;
}
static void build_permute(const row *r, inst *in, tu_rng *rng) {
    const int64_t n = perm_numel(&perm_cases[r->p[0]]);
    slot_out(in, 0, r->dt, 1, &n);
    slot_rand(in, rng, 1, S_IN, r->dt, 1, &n, G_NORMAL, 0, 1);
}
static wf_status exec_permute(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    const perm_case *c = &perm_cases[r->p[0]];
    return wk_permute(be, &d[0], &d[1], c->nd, c->shape, c->perm, e);
}

/* timestep_embed: p = {n, dim}; t [n] uniform in [0, 1000), t[0] = 999 (the first step).
 * Slots: 0 y [n, dim], 1 t. */
static void build_timestep_embed(const row *r, inst *in, tu_rng *rng) {
    slot_out(in, 0, WK_F32, 2, r->p);
    float *t = slot_rand(in, rng, 1, S_IN, WK_F32, 1, r->p, G_UNIFORM, 0, 1000);
    if (t) t[0] = 999.0f;
}
static wf_status exec_timestep_embed(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_timestep_embed(be, &d[0], &d[1], e);
}

/* rope_table: p = {F, H, W, HD, l0, n}: rows [l0, l0 + n) of the grid's tables (rows past F H W:
 * the identity). Slots: 0 cos [n, HD], 1 sin [n, HD]. */
static void build_rope_table(const row *r, inst *in, tu_rng *rng) {
    (void)rng;
    const int64_t *p = r->p;
    slot_out(in, 0, WK_F32, 2, (int64_t[]){p[5], p[3]});
    slot_out(in, 1, WK_F32, 2, (int64_t[]){p[5], p[3]});
}
static wf_status exec_rope_table(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    const int64_t *p = r->p;
    return wk_rope_table(be, &d[0], &d[1], p[0], p[1], p[2], 10000.0, p[4], e);
}

/* embedding: p = {V, D, L, bad ids}; table [V, D] in dt, ids i32 [L] in [0, V); bad ids: the first
 * is -1 and the last V (both rows must be zeros). Slots: 0 y [L, D], 1 table, 2 ids. */
static void build_embedding(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p, V = p[0], D = p[1], L = p[2];
    slot_out(in, 0, WK_F32, 2, (int64_t[]){L, D});
    slot_rand(in, rng, 1, S_W, r->dt, 2, (int64_t[]){V, D}, G_NORMAL, 0, 1);
    slot_rand(in, rng, 2, S_IN, WK_I32, 1, &L, G_UNIFORM, 0, (float)V);
    int32_t *ids = in->s[2].h.data;
    if (ids && p[3]) {
        ids[0] = -1;
        ids[L - 1] = (int32_t)V;
    }
}
static wf_status exec_embedding(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_embedding(be, &d[0], &d[1], &d[2], e);
}

/* t5_bias: p = {NH, Lq, Lk, NB, max_distance, mask}; table [NB, NH] in dt; mask i32 [Lk]: ones,
 * then zeros for the last quarter (T5's padding). Slots: 0 y [NH, Lq, Lk], 1 table, 2 mask. */
static void build_t5_bias(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p, Lk = p[2];
    slot_out(in, 0, WK_F32, 3, p);
    slot_rand(in, rng, 1, S_W, r->dt, 2, (int64_t[]){p[3], p[0]}, G_NORMAL, 0, 1);
    if (!p[5]) return;
    int32_t *m = slot_new(in, 2, S_IN, WK_I32, 1, &Lk);
    for (int64_t j = 0; m && j < Lk; j++) m[j] = j < Lk - Lk / 4;
}
static wf_status exec_t5_bias(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_t5_bias(be, &d[0], &d[1], OPT(2), r->p[4], e);
}

/* blend: p = {axis, extent, T, ha, wa, hb, wb, C}; a [T, ha, wa, C], b [T, hb, wb, C] (blended in
 * place). Slots: 0 b, 1 a. */
static void build_blend(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p;
    slot_rand(in, rng, 0, S_INOUT, WK_F32, 4, (int64_t[]){p[2], p[5], p[6], p[7]}, G_NORMAL, 0, 1);
    slot_rand(in, rng, 1, S_IN, WK_F32, 4, (int64_t[]){p[2], p[3], p[4], p[7]}, G_NORMAL, 0, 1);
}
static wf_status exec_blend(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_blend(be, &d[0], &d[1], (int)r->p[0], r->p[1], e);
}

/* avgdown3d: p = {T, H, W, C, Co, ft, fs}; x [1, T, H, W, C], y [1, (T + pad) / ft, H / fs,
 * W / fs, Co]. dupup3d: p = {T, H, W, C, Co, ft, fs, drop}; y [1, T ft - drop, H fs, W fs, Co].
 * Slots: 0 y, 1 x. */
static void build_avgdown3d(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p, ft = p[5], fs = p[6], pad = (ft - p[0] % ft) % ft;
    slot_out(in, 0, WK_F32, 5, (int64_t[]){1, (p[0] + pad) / ft, p[1] / fs, p[2] / fs, p[4]});
    slot_rand(in, rng, 1, S_IN, WK_F32, 5, (int64_t[]){1, p[0], p[1], p[2], p[3]}, G_NORMAL, 0, 1);
}
static void build_dupup3d(const row *r, inst *in, tu_rng *rng) {
    const int64_t *p = r->p, ft = p[5], fs = p[6];
    slot_out(in, 0, WK_F32, 5, (int64_t[]){1, p[0] * ft - p[7], p[1] * fs, p[2] * fs, p[4]});
    slot_rand(in, rng, 1, S_IN, WK_F32, 5, (int64_t[]){1, p[0], p[1], p[2], p[3]}, G_NORMAL, 0, 1);
}
static wf_status exec_avgdown3d(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_avgdown3d(be, &d[0], &d[1], r->p[5], r->p[6], e);
}
static wf_status exec_dupup3d(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_dupup3d(be, &d[0], &d[1], r->p[5], r->p[6], r->p[7], e);
}

/* scale_add: p = {n, s x 1000, in place}; guidance: p = {n, g x 1000, in place}; a / u and b / c
 * [n] ~ N(0, 1). In place, y is a (scale_add: Euler's x + dt v) or c (guidance: v over itself).
 * Slots: 0 y (or the in-place input), 1 a / u, 2 b / c. */
static void build_update(const row *r, inst *in, tu_rng *rng) {
    const int64_t n = r->p[0];
    const bool guide = strcmp(r->op, "guidance") == 0, inplace = r->p[2] != 0;
    if (!inplace) slot_out(in, 0, WK_F32, 1, &n);
    else slot_rand(in, rng, 0, S_INOUT, WK_F32, 1, &n, G_NORMAL, 0, 1);
    if (!inplace || guide) slot_rand(in, rng, 1, S_IN, WK_F32, 1, &n, G_NORMAL, 0, 1);
    if (!inplace || !guide) slot_rand(in, rng, 2, S_IN, WK_F32, 1, &n, G_NORMAL, 0, 1);
}
static wf_status exec_scale_add(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_scale_add(be, &d[0], SRC(1), &d[2], (float)r->p[1] / 1000.0f, e);
}
static wf_status exec_guidance(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    return wk_guidance(be, &d[0], &d[1], SRC(2), (float)r->p[1] / 1000.0f, e);
}

/* unipc_update: p = {n, order, corrector, in place}; x, m[0..order), d (corrector) [n] ~ N(0, 1),
 * coefficients of the size a 40-step grid gives. Slots: 0 y (x itself in place), 1 x, 2..4 m,
 * 5 d. */
static void build_unipc(const row *r, inst *in, tu_rng *rng) {
    const int64_t n = r->p[0];
    if (r->p[3]) slot_rand(in, rng, 0, S_INOUT, WK_F32, 1, &n, G_NORMAL, 0, 1);
    else slot_x(in, rng, false, 1, &n, 0, 1);
    for (int k = 0; k < r->p[1]; k++) slot_rand(in, rng, 2 + k, S_IN, WK_F32, 1, &n, G_NORMAL, 0, 1);
    if (r->p[2]) slot_rand(in, rng, 5, S_IN, WK_F32, 1, &n, G_NORMAL, 0, 1);
}
static wf_status exec_unipc_update(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    const wk_unipc_coef c = {(int)r->p[1], 0.9731f, -0.0516f, -0.0433f, {-1.27f, -2.61f},
                             {0.5f, 0.31f, 0.47f}};
    const wk_tensor *m[3] = {OPT(2), OPT(3), OPT(4)};
    return wk_unipc_update(be, &d[0], SRC(1), m, OPT(5), &c, e);
}

/* first_nonfinite: p = {n, first bad (-1: none), kind (0 NaN, 1 +inf, 2 -inf), later bad}; x
 * [n] ~ N(0, 1) with those planted. The index comes back to the host; the row stores index + 1
 * and 1 into y [2] (uploaded), so that the comparison sees it. Slots: 0 y, 1 x. */
static void build_nonfinite(const row *r, inst *in, tu_rng *rng) {
    const int64_t n = r->p[0], two = 2;
    slot_out(in, 0, WK_F32, 1, &two);
    float *x = slot_rand(in, rng, 1, S_IN, WK_F32, 1, &n, G_NORMAL, 0, 1);
    const float kinds[3] = {NAN, INFINITY, -INFINITY};
    if (!x) return;
    if (r->p[3] >= 0) x[r->p[3]] = NAN;
    if (r->p[1] >= 0) x[r->p[1]] = kinds[r->p[2]];
}
static wf_status exec_first_nonfinite(const row *r, wk_backend *be, wk_tensor *d, wf_err *e) {
    int64_t idx = -1;
    wf_status st = wk_first_nonfinite(be, &d[1], &idx, e);
    if (st) return st;
    const float v[2] = {(float)(idx + 1), 1.0f};
    return wk_upload(be, &d[0], v, e);
}

/* ---------------------------------------------------------------------------------------------
 * The rows. Bounds are on ||cuda - cpu|| / ||cpu||, each with its reason.
 * ------------------------------------------------------------------------------------------- */

#define WHY_EXACT "data movement or exact rounding (dtype.h's): the same bits on every backend"
#define WHY_EW "one or two f32 operations per element: FMA contraction on the GPU, 1 ulp"
#define WHY_TRANS "f32 tanhf/expf per element: CUDA's <= 2 ulp against glibc's <= 1 ulp"
#define WHY_RED "f32 reductions over the last dim on the GPU (tree order, rsqrtf) against the " \
                "CPU's double sums rounded once: a few ulp"
#define WHY_ROPE "a rotation in f32 with FMA on the GPU, in double rounded once on the CPU: 1-2 ulp"
#define WHY_GEMM "f32 GEMM, TF32 off: another summation order (tiles, split-K), ~sqrt(K) ulp " \
                 "(TF32 would give ~1e-3)"
#define WHY_GEMM16 "x (and f32/f16 w) rounded to bf16, 2^-9 relative each: ~1.6e-3 rms on a dot " \
                   "product, fp32 accumulation; 1e-2 leaves 6x"
#define WHY_GEMM8 "x quantised to e4m3 with a per-tensor scale (the fp8 path; 3 mantissa bits: " \
                  "~2.6e-2 rms relative per element), w exact: 1e-1 leaves 4x"
#define WHY_ATT "f32 online softmax over other key blocks than the CPU's, expf: ~1e-6 (TF32 or a " \
                "bf16 P would give > 1e-3)"
#define WHY_ATT16 "q, k, v and P rounded to bf16 (2^-9 each), logits of std ~1: ~3e-3 rms; 1e-2 " \
                  "leaves 3x"
#define WHY_CONV "f32 implicit GEMM, TF32 off (cuDNN's default math would allow TF32: ~1e-3)"
#define WHY_CONV16 "the convolution's GEMM inputs rounded to bf16, fp32 accumulation: as the " \
                   "GEMM rows"
#define WHY_TS "f_k = expf(...) may differ by an ulp; times t < 1000 that moves the angle by " \
               "up to 6e-5 rad"
#define WHY_RTAB "angles and cos/sin in double on both, cast to f32: CUDA's double cos/sin " \
    "(<= 2 ulp of double) round to the same f32 but on ties of the last bit: 1 ulp at most"
#define WHY_ATTW "one head wider than 256: f32 GEMMs (no TF32) and an f32 softmax, in both " \
    "modes: only the summation order differs from the CPU's, ~1e-6"
#define WHY_T5 "a gather plus a mask: exact, unless a 1-ulp logf difference moves a bucket edge"
#define WHY_BLEND "two f32 products and a sum per element: FMA contraction on the GPU, 1 ulp"
#define WHY_AVG "a mean of few values (CPU: double, rounded once; GPU: f32): 1-2 ulp"
#define WHY_SMP "the same f32 roundings in the same order (explicitly rounded on the GPU, never " \
                "an FMA): the CPU's bits"
#define WHY_IDX "an index (stored as index + 1): exact"

#define ROW(op_, fn_, cs_, dt_, prec_, path_, bound_, why_, ...)                                 \
    {.op = #op_, .cs = cs_, .build = build_##fn_, .exec = exec_##op_, .dt = dt_, .prec = prec_,  \
     .path = path_, .bound = bound_, .why = why_, .p = {__VA_ARGS__}}
/* the case in both precisions, each with its bound */
#define ROW2(op_, fn_, cs_, dt_, b32_, w32_, b16_, w16_, ...)                                    \
    ROW(op_, fn_, cs_, dt_, WK_PREC_FP32, P_AUTO, b32_, w32_, __VA_ARGS__),                      \
        ROW(op_, fn_, cs_, dt_, WK_PREC_BF16, P_AUTO, b16_, w16_, __VA_ARGS__)
/* an op computed in f32 in both modes (the bf16 mode rounds only GEMM and attention inputs) */
#define ROWF(op_, fn_, cs_, dt_, b_, w_, ...) ROW2(op_, fn_, cs_, dt_, b_, w_, b_, w_, __VA_ARGS__)
/* a GEMM and a convolution in both precisions */
#define ROWG(op_, fn_, cs_, dt_, ...)                                                            \
    ROW2(op_, fn_, cs_, dt_, 1e-5, WHY_GEMM, 1e-2, WHY_GEMM16, __VA_ARGS__)
#define ROWC(op_, fn_, cs_, dt_, ...)                                                            \
    ROW2(op_, fn_, cs_, dt_, 1e-5, WHY_CONV, 1e-2, WHY_CONV16, __VA_ARGS__)
#define ROWG8(op_, fn_, cs_, ...)                                                                \
    ROW2(op_, fn_, cs_, WK_F8E4M3, 1e-5, WHY_GEMM, 1e-1, WHY_GEMM8, __VA_ARGS__)
/* the case on a forced CUDA path, in both precisions */
#define ROWP(op_, fn_, cs_, dt_, path_, b32_, w32_, b16_, w16_, ...)                             \
    ROW(op_, fn_, cs_, dt_, WK_PREC_FP32, path_, b32_, w32_, __VA_ARGS__),                       \
        ROW(op_, fn_, cs_, dt_, WK_PREC_BF16, path_, b16_, w16_, __VA_ARGS__)
/* attention on one path: own kernel in both modes (FP32 mode always runs the own f32 kernel),
 * or cuDNN's SDPA (bf16 only); dt is the bias's */
#define ATT_OWN(cs_, dt_, ...)                                                                   \
    ROWP(attention, attention, cs_, dt_, P_OWN, 1e-5, WHY_ATT, 1e-2, WHY_ATT16, __VA_ARGS__)
#define ATT_DNN(cs_, ...)                                                                        \
    ROW(attention, attention, cs_, WK_F32, WK_PREC_BF16, P_CUDNN, 1e-2, WHY_ATT16, __VA_ARGS__)
#define ATT_ALL(cs_, ...) ATT_OWN(cs_, WK_F32, __VA_ARGS__), ATT_DNN(cs_, __VA_ARGS__)

static const row rows[] = {
    /* matmul: p = {B, M, K, N, bias} */
    ROWG(matmul, matmul, "M=5 K=7 N=11 bias", WK_F32, 0, 5, 7, 11, 1),
    ROWG(matmul, matmul, "B=3 M=77 K=333 N=129 bias", WK_F32, 3, 77, 333, 129, 1),
    ROWG(matmul, matmul, "B=3 M=77 K=333 N=129 bias", WK_BF16, 3, 77, 333, 129, 1),
    ROWG(matmul, matmul, "B=3 M=77 K=333 N=129 bias", WK_F16, 3, 77, 333, 129, 1),
    ROWG8(matmul, matmul, "B=3 M=77 K=333 N=129 bias", 3, 77, 333, 129, 1),
    ROWG(matmul, matmul, "M=333 K=64 N=77", WK_F32, 0, 333, 64, 77, 0),
    ROWG(matmul, matmul, "M=333 K=64 N=77", WK_BF16, 0, 333, 64, 77, 0),
    ROWG(matmul, matmul, "M=1 K=256 N=1536 bias", WK_BF16, 0, 1, 256, 1536, 1),
    ROWG(matmul, matmul, "M=520 K=512 N=1000 bias", WK_F32, 0, 520, 512, 1000, 1),
    ROWG(matmul, matmul, "M=520 K=512 N=1000 bias", WK_BF16, 0, 520, 512, 1000, 1),
    ROWG8(matmul, matmul, "M=77 K=1536 N=24", 0, 77, 1536, 24, 0),
    /* a scaled-fp8 weight (ComfyUI's fp8_scaled files): value = stored x qscale */
    ROWG8(matmul, matmul, "B=3 M=77 K=333 N=129 bias, scaled s=0.0137", 3, 77, 333, 129, 1, 13700),
    ROWG8(matmul, matmul, "M=520 K=512 N=1000, scaled s=3.1", 0, 520, 512, 1000, 0, 3100000),
    /* the SIMT kernel instead of cuBLASLt (WANFARM_CUDA_GEMM=simt) */
    ROWP(matmul, matmul, "M=5 K=7 N=11 bias", WK_F32, P_SIMT, 1e-5, WHY_GEMM, 1e-2, WHY_GEMM16, 0,
         5, 7, 11, 1),
    ROWP(matmul, matmul, "B=3 M=77 K=333 N=129 bias", WK_F32, P_SIMT, 1e-5, WHY_GEMM, 1e-2,
         WHY_GEMM16, 3, 77, 333, 129, 1),
    ROWP(matmul, matmul, "B=3 M=77 K=333 N=129 bias", WK_BF16, P_SIMT, 1e-5, WHY_GEMM, 1e-2,
         WHY_GEMM16, 3, 77, 333, 129, 1),
    ROWP(matmul, matmul, "B=3 M=77 K=333 N=129 bias", WK_F16, P_SIMT, 1e-5, WHY_GEMM, 1e-2,
         WHY_GEMM16, 3, 77, 333, 129, 1),
    ROWP(matmul, matmul, "B=3 M=77 K=333 N=129 bias", WK_F8E4M3, P_SIMT, 1e-5, WHY_GEMM, 1e-1,
         WHY_GEMM8, 3, 77, 333, 129, 1),
    ROWP(matmul, matmul, "B=3 M=77 K=333 N=129 bias, scaled s=0.0137", WK_F8E4M3, P_SIMT, 1e-5,
         WHY_GEMM, 1e-1, WHY_GEMM8, 3, 77, 333, 129, 1, 13700),
    ROWP(matmul, matmul, "M=520 K=512 N=1000 bias", WK_BF16, P_SIMT, 1e-5, WHY_GEMM, 1e-2,
         WHY_GEMM16, 0, 520, 512, 1000, 1),
    /* matmul_gelu: as matmul */
    ROWG(matmul_gelu, matmul, "M=5 K=7 N=11 bias", WK_F32, 0, 5, 7, 11, 1),
    ROWG(matmul_gelu, matmul, "B=2 M=77 K=333 N=129 bias", WK_F32, 2, 77, 333, 129, 1),
    ROWG(matmul_gelu, matmul, "B=2 M=77 K=333 N=129 bias", WK_BF16, 2, 77, 333, 129, 1),
    ROWG8(matmul_gelu, matmul, "B=2 M=77 K=333 N=129 bias", 2, 77, 333, 129, 1),
    ROWG(matmul_gelu, matmul, "M=333 K=96 N=77", WK_BF16, 0, 333, 96, 77, 0),
    ROWP(matmul_gelu, matmul, "B=2 M=77 K=333 N=129 bias", WK_BF16, P_SIMT, 1e-5, WHY_GEMM, 1e-2,
         WHY_GEMM16, 2, 77, 333, 129, 1),
    /* add, mul: p = {a0, a1, a2, b ndim, b0, b1, b2, in place} */
    ROWF(add, binary, "a[5,7,11] b[5,7,11]", WK_F32, 1e-6, WHY_EW, 5, 7, 11, 3, 5, 7, 11, 0),
    ROWF(add, binary, "a[5,7,11] b[11]", WK_BF16, 1e-6, WHY_EW, 5, 7, 11, 1, 11, 0, 0, 0),
    ROWF(add, binary, "a[5,7,11] b[7,1]", WK_F32, 1e-6, WHY_EW, 5, 7, 11, 2, 7, 1, 0, 0),
    ROWF(add, binary, "a[77,3,333] b[1,3,333] in place", WK_F32, 1e-6, WHY_EW, 77, 3, 333, 3, 1,
         3, 333, 1),
    ROWF(add, binary, "a[2,33,1536] b[1,1,1536]", WK_F16, 1e-6, WHY_EW, 2, 33, 1536, 3, 1, 1, 1536,
         0),
    ROWF(mul, binary, "a[5,7,11] b[5,7,11]", WK_F32, 1e-6, WHY_EW, 5, 7, 11, 3, 5, 7, 11, 0),
    ROWF(mul, binary, "a[5,7,11] b[11]", WK_BF16, 1e-6, WHY_EW, 5, 7, 11, 1, 11, 0, 0, 0),
    ROWF(mul, binary, "a[5,7,11] b[7,1]", WK_F32, 1e-6, WHY_EW, 5, 7, 11, 2, 7, 1, 0, 0),
    ROWF(mul, binary, "a[77,3,333] b[1,3,333] in place", WK_F32, 1e-6, WHY_EW, 77, 3, 333, 3, 1,
         3, 333, 1),
    ROWF(mul, binary, "a[2,33,1536] b[1,1,1536]", WK_F16, 1e-6, WHY_EW, 2, 33, 1536, 3, 1, 1, 1536,
         0),
    /* layer_norm, rms_norm: p = {rows, C, affine, mean, in place} */
    ROWF(layer_norm, norm, "x[77,333] w,b", WK_F32, 1e-5, WHY_RED, 77, 333, 1, 1, 0),
    ROWF(layer_norm, norm, "x[77,333] w,b", WK_BF16, 1e-5, WHY_RED, 77, 333, 1, 1, 0),
    ROWF(layer_norm, norm, "x[5,1536] mean 10", WK_F32, 1e-5, WHY_RED, 5, 1536, 0, 10, 0),
    ROWF(layer_norm, norm, "x[333,77] w,b in place", WK_F32, 1e-5, WHY_RED, 333, 77, 1, 0, 1),
    ROWF(layer_norm, norm, "x[3,5120] w,b", WK_BF16, 1e-5, WHY_RED, 3, 5120, 1, 1, 0),
    ROWF(layer_norm, norm, "x[2,13824] mean 5", WK_F32, 1e-5, WHY_RED, 2, 13824, 0, 5, 0),
    ROWF(layer_norm, norm, "x[2,20001] w,b (long row)", WK_F32, 1e-5, WHY_RED, 2, 20001, 1, 0, 0),
    ROWF(rms_norm, norm, "x[77,333] w", WK_F32, 1e-5, WHY_RED, 77, 333, 1, 0, 0),
    ROWF(rms_norm, norm, "x[77,333] w", WK_BF16, 1e-5, WHY_RED, 77, 333, 1, 0, 0),
    ROWF(rms_norm, norm, "x[5,128] in place", WK_F32, 1e-5, WHY_RED, 5, 128, 0, 0, 1),
    ROWF(rms_norm, norm, "x[4,5120] w", WK_BF16, 1e-5, WHY_RED, 4, 5120, 1, 0, 0),
    ROWF(rms_norm, norm, "x[2,20000] w in place (long row)", WK_F32, 1e-5, WHY_RED, 2, 20000, 1, 0,
         1),
    /* rms_norm_l2(_silu): p = {T, H, W, C, gamma, zero row, in place} */
    ROWF(rms_norm_l2, l2, "x[1,5,7,11,96] gamma[C]", WK_F32, 1e-5, WHY_RED, 5, 7, 11, 96, 1, 0, 0),
    ROWF(rms_norm_l2, l2, "x[1,5,7,11,96] gamma[C]", WK_BF16, 1e-5, WHY_RED, 5, 7, 11, 96, 1, 0, 0),
    ROWF(rms_norm_l2, l2, "x[1,3,5,7,13] gamma[C,1,1] zero row", WK_F32, 1e-5, WHY_RED, 3, 5, 7, 13,
         3, 1, 0),
    ROWF(rms_norm_l2, l2, "x[1,2,3,4,33] in place", WK_F32, 1e-5, WHY_RED, 2, 3, 4, 33, 0, 0, 1),
    ROWF(rms_norm_l2, l2, "x[1,2,4,6,384] gamma[C,1,1]", WK_BF16, 1e-5, WHY_RED, 2, 4, 6, 384, 3,
         0, 0),
    ROWF(rms_norm_l2_silu, l2, "x[1,5,7,11,96] gamma[C]", WK_F32, 1e-5, WHY_RED, 5, 7, 11, 96, 1,
         0, 0),
    ROWF(rms_norm_l2_silu, l2, "x[1,5,7,11,96] gamma[C]", WK_BF16, 1e-5, WHY_RED, 5, 7, 11, 96, 1,
         0, 0),
    ROWF(rms_norm_l2_silu, l2, "x[1,3,5,7,13] gamma[C,1,1] zero row", WK_F32, 1e-5, WHY_RED, 3, 5,
         7, 13, 3, 1, 0),
    ROWF(rms_norm_l2_silu, l2, "x[1,2,3,4,33] in place", WK_F32, 1e-5, WHY_RED, 2, 3, 4, 33, 0, 0,
         1),
    ROWF(rms_norm_l2_silu, l2, "x[1,2,4,6,384] gamma[C,1,1] in place", WK_BF16, 1e-5, WHY_RED, 2,
         4, 6, 384, 3, 0, 1),
    /* ln_modulate, gate_residual: p = {R, D, modulation rows} */
    ROWF(ln_modulate, ln_modulate, "x[77,333] mod[1,D]", WK_F32, 1e-5, WHY_RED, 77, 333, 1),
    ROWF(ln_modulate, ln_modulate, "x[33,1536] mod[R,D]", WK_F32, 1e-5, WHY_RED, 33, 1536, 33),
    ROWF(ln_modulate, ln_modulate, "x[9,5120] mod[1,D]", WK_F32, 1e-5, WHY_RED, 9, 5120, 1),
    ROWF(ln_modulate, ln_modulate, "x[5,333] mod[R,D]", WK_F32, 1e-5, WHY_RED, 5, 333, 5),
    ROWF(gate_residual, gate_residual, "x[77,333] gate[1,D]", WK_F32, 1e-6, WHY_EW, 77, 333, 1),
    ROWF(gate_residual, gate_residual, "x[33,1536] gate[R,D]", WK_F32, 1e-6, WHY_EW, 33, 1536, 33),
    ROWF(gate_residual, gate_residual, "x[9,5120] gate[1,D]", WK_F32, 1e-6, WHY_EW, 9, 5120, 1),
    /* rms_norm_rope: p = {L, NH, HD} */
    ROWF(rms_norm_rope, rope, "L=77 NH=3 HD=12 w", WK_F32, 1e-5, WHY_RED, 77, 3, 12),
    ROWF(rms_norm_rope, rope, "L=77 NH=3 HD=12 w", WK_BF16, 1e-5, WHY_RED, 77, 3, 12),
    ROWF(rms_norm_rope, rope, "L=33 NH=2 HD=128 w", WK_F32, 1e-5, WHY_RED, 33, 2, 128),
    ROWF(rms_norm_rope, rope, "L=9 NH=40 HD=128 w (A14B)", WK_BF16, 1e-5, WHY_RED, 9, 40, 128),
    /* softmax: p = {rows, C, std, in place} */
    ROWF(softmax, softmax, "x[77,333]", WK_F32, 1e-5, WHY_RED, 77, 333, 1, 0),
    ROWF(softmax, softmax, "x[5,2049] std 10", WK_F32, 1e-5, WHY_RED, 5, 2049, 10, 0),
    ROWF(softmax, softmax, "x[333,77] in place", WK_F32, 1e-5, WHY_RED, 333, 77, 3, 1),
    ROWF(softmax, softmax, "x[3,1024] in place", WK_F32, 1e-5, WHY_RED, 3, 1024, 2, 1),
    ROWF(softmax, softmax, "x[2,20001] (long row)", WK_F32, 1e-5, WHY_RED, 2, 20001, 2, 0),
    /* gelu_tanh, silu: p = {d0, d1, d2, std, in place} */
    ROWF(gelu_tanh, unary, "x[5,7,11] std 3", WK_F32, 1e-6, WHY_TRANS, 5, 7, 11, 3, 0),
    ROWF(gelu_tanh, unary, "x[77,3,333] in place", WK_F32, 1e-6, WHY_TRANS, 77, 3, 333, 2, 1),
    ROWF(silu, unary, "x[5,7,11] std 3", WK_F32, 1e-6, WHY_TRANS, 5, 7, 11, 3, 0),
    ROWF(silu, unary, "x[77,3,333] in place", WK_F32, 1e-6, WHY_TRANS, 77, 3, 333, 2, 1),
    /* rope: p = {L, NH, HD, in place} */
    ROWF(rope, rope, "L=77 NH=3 HD=12", WK_F32, 1e-6, WHY_ROPE, 77, 3, 12, 0),
    ROWF(rope, rope, "L=333 NH=2 HD=64 in place", WK_F32, 1e-6, WHY_ROPE, 333, 2, 64, 1),
    ROWF(rope, rope, "L=5 NH=1 HD=128", WK_F32, 1e-6, WHY_ROPE, 5, 1, 128, 0),
    ROWF(rope, rope, "L=9 NH=40 HD=128 (A14B)", WK_F32, 1e-6, WHY_ROPE, 9, 40, 128, 0),
    /* attention: p = {Lq, Lk, NH, HD, kv_len, bias, unscaled, masked row} */
    ATT_ALL("Lq=5 Lk=7 NH=1 HD=12", 5, 7, 1, 12, 0, 0, 0, 0),
    ATT_ALL("Lq=Lk=77 NH=3 HD=12", 77, 77, 3, 12, 0, 0, 0, 0),
    ATT_ALL("Lq=Lk=77 NH=2 HD=64", 77, 77, 2, 64, 0, 0, 0, 0),
    ATT_ALL("Lq=333 Lk=77 NH=2 HD=64 cross", 333, 77, 2, 64, 0, 0, 0, 0),
    ATT_ALL("Lq=77 Lk=333 NH=2 HD=128 kv_len=300", 77, 333, 2, 128, 300, 0, 0, 0),
    ATT_ALL("Lq=Lk=333 NH=3 HD=128", 333, 333, 3, 128, 0, 0, 0, 0),
    ATT_ALL("Lq=Lk=77 NH=3 HD=64 key mask", 77, 77, 3, 64, 0, 1, 0, 0),
    ATT_ALL("Lq=Lk=77 NH=3 HD=64 T5 bias, scale 1, masked row", 77, 77, 3, 64, 0, 2, 1, 1),
    ATT_OWN("Lq=Lk=77 NH=3 HD=64 T5 bias, scale 1, masked row", WK_BF16, 77, 77, 3, 64, 0, 2, 1, 1),
    ATT_OWN("Lq=Lk=77 NH=3 HD=64 key mask", WK_BF16, 77, 77, 3, 64, 0, 1, 0, 0),
    ATT_OWN("Lq=333 Lk=77 NH=2 HD=64 kv_len=70, key mask", WK_F32, 333, 77, 2, 64, 70, 1, 0, 0),
    ATT_ALL("Lq=Lk=2048 NH=2 HD=128", 2048, 2048, 2, 128, 0, 0, 0, 0),
    ATT_ALL("Lq=Lk=2048 NH=2 HD=64 kv_len=2000", 2048, 2048, 2, 64, 2000, 0, 0, 0),
    ROW2(attention, attention, "Lq=Lk=333 NH=2 HD=128 kv_len=256", WK_F32, 1e-5, WHY_ATT, 1e-2,
         WHY_ATT16, 333, 333, 2, 128, 256, 0, 0, 0),
    /* one head wider than 256 (the VAE mid-block, HD = C): blocked f32 GEMMs in both modes */
    ROW2(attention, attention, "Lq=Lk=600 NH=1 HD=384 (VAE mid-block)", WK_F32, 1e-5, WHY_ATTW,
         1e-5, WHY_ATTW, 600, 600, 1, 384, 0, 0, 0, 0),
    ROW2(attention, attention, "Lq=Lk=1100 NH=1 HD=1024 key mask, masked row, kv_len=1050",
         WK_F32, 1e-5, WHY_ATTW, 1e-5, WHY_ATTW, 1100, 1100, 1, 1024, 1050, 1, 0, 1),
    /* conv3d: p = {N, T, H, W, Cin, Cout, kT, kH, kW, bias, st, sh, sw, pt0, pt1, ph0, ph1, pw0,
     * pw1} */
    ROWC(conv3d, conv3d, "x[1,5,7,11,13] w[17,13,3,3,3] causal pad, bias", WK_F32, 1, 5, 7,
         11, 13, 17, 3, 3, 3, 1, 1, 1, 1, 2, 0, 1, 1, 1, 1),
    ROWC(conv3d, conv3d, "x[1,5,7,11,13] w[17,13,3,3,3] causal pad, bias", WK_BF16, 1, 5, 7,
         11, 13, 17, 3, 3, 3, 1, 1, 1, 1, 2, 0, 1, 1, 1, 1),
    ROWC(conv3d, conv3d, "x[1,4,9,10,8] w[16,8,3,3,3] stride 1,2,2", WK_F32, 1, 4, 9, 10, 8,
         16, 3, 3, 3, 0, 1, 2, 2, 2, 0, 0, 1, 0, 1),
    ROWC(conv3d, conv3d, "x[2,3,5,7,24] w[12,24,1,1,1] bias", WK_F32, 2, 3, 5, 7, 24, 12, 1,
         1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0),
    ROWC(conv3d, conv3d, "x[2,3,5,7,24] w[12,24,1,1,1] bias", WK_BF16, 2, 3, 5, 7, 24, 12, 1,
         1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0),
    ROWC(conv3d, conv3d, "x[1,6,5,7,16] w[32,16,3,1,1] time conv", WK_F32, 1, 6, 5, 7, 16,
         32, 3, 1, 1, 1, 1, 1, 1, 2, 0, 0, 0, 0, 0),
    ROWC(conv3d, conv3d, "x[1,3,9,10,4] w[8,4,3,3,3] stride 2,2,2 bias", WK_F16, 1, 3, 9, 10, 4,
         8, 3, 3, 3, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1),
    /* the own implicit-GEMM kernel instead of cuDNN (WANFARM_CUDA_CONV=own) */
    ROWP(conv3d, conv3d, "x[1,5,7,11,13] w[17,13,3,3,3] causal pad, bias", WK_F32, P_CONV_OWN, 1e-5,
         WHY_CONV, 1e-2, WHY_CONV16, 1, 5, 7, 11, 13, 17, 3, 3, 3, 1, 1, 1, 1, 2, 0, 1, 1, 1, 1),
    ROWP(conv3d, conv3d, "x[1,5,7,11,13] w[17,13,3,3,3] causal pad, bias", WK_BF16, P_CONV_OWN,
         1e-5, WHY_CONV, 1e-2, WHY_CONV16, 1, 5, 7, 11, 13, 17, 3, 3, 3, 1, 1, 1, 1, 2, 0, 1, 1, 1,
         1),
    ROWP(conv3d, conv3d, "x[1,4,9,10,8] w[16,8,3,3,3] stride 1,2,2", WK_F32, P_CONV_OWN, 1e-5,
         WHY_CONV, 1e-2, WHY_CONV16, 1, 4, 9, 10, 8, 16, 3, 3, 3, 0, 1, 2, 2, 2, 0, 0, 1, 0, 1),
    /* conv2d: p = {N, H, W, Cin, Cout, kH, kW, bias, sh, sw, ph0, ph1, pw0, pw1} */
    ROWC(conv2d, conv2d, "x[2,7,11,13] w[17,13,3,3] pad 1, bias", WK_F32, 2, 7, 11, 13, 17,
         3, 3, 1, 1, 1, 1, 1, 1, 1),
    ROWC(conv2d, conv2d, "x[2,7,11,13] w[17,13,3,3] pad 1, bias", WK_BF16, 2, 7, 11, 13, 17,
         3, 3, 1, 1, 1, 1, 1, 1, 1),
    ROWC(conv2d, conv2d, "x[3,9,10,8] w[8,8,3,3] stride 2 pad 0,1", WK_F32, 3, 9, 10, 8, 8,
         3, 3, 0, 2, 2, 0, 1, 0, 1),
    ROWC(conv2d, conv2d, "x[1,5,7,16] w[3,16,1,1]", WK_BF16, 1, 5, 7, 16, 3, 1, 1, 0, 1, 1,
         0, 0, 0, 0),
    ROWP(conv2d, conv2d, "x[2,7,11,13] w[17,13,3,3] pad 1, bias", WK_F32, P_CONV_OWN, 1e-5,
         WHY_CONV, 1e-2, WHY_CONV16, 2, 7, 11, 13, 17, 3, 3, 1, 1, 1, 1, 1, 1, 1),
    ROWP(conv2d, conv2d, "x[3,9,10,8] w[8,8,3,3] stride 2 pad 0,1", WK_BF16, P_CONV_OWN, 1e-5,
         WHY_CONV, 1e-2, WHY_CONV16, 3, 9, 10, 8, 8, 3, 3, 0, 2, 2, 0, 1, 0, 1),
    /* upsample2x: p = {N, H, W, C} */
    ROWF(upsample2x, upsample2x, "x[3,5,7,11]", WK_F32, 0, WHY_EXACT, 3, 5, 7, 11),
    ROWF(upsample2x, upsample2x, "x[1,1,1,96]", WK_F32, 0, WHY_EXACT, 1, 1, 1, 96),
    /* convert: p = {n0, n1, n2, y dtype, std, specials}; dt is x's */
    ROWF(convert, convert, "[5,7,11] -> bf16, specials", WK_F32, 0, WHY_EXACT, 5, 7, 11, WK_BF16,
         4, 1),
    ROWF(convert, convert, "[5,7,11] -> f16, specials", WK_F32, 0, WHY_EXACT, 5, 7, 11, WK_F16, 4,
         1),
    ROWF(convert, convert, "[5,7,11] -> f8e4m3, specials", WK_F32, 0, WHY_EXACT, 5, 7, 11,
         WK_F8E4M3, 64, 1),
    ROWF(convert, convert, "[77,3,333] -> f32", WK_BF16, 0, WHY_EXACT, 77, 3, 333, WK_F32, 4, 0),
    ROWF(convert, convert, "[77,3,333] -> f32", WK_F16, 0, WHY_EXACT, 77, 3, 333, WK_F32, 4, 0),
    ROWF(convert, convert, "[77,3,333] -> f32", WK_F8E4M3, 0, WHY_EXACT, 77, 3, 333, WK_F32, 4, 0),
    ROWF(convert, convert, "[5,7,11] -> f16", WK_BF16, 0, WHY_EXACT, 5, 7, 11, WK_F16, 4, 0),
    ROWF(convert, convert, "[77,3,333] -> f32", WK_F32, 0, WHY_EXACT, 77, 3, 333, WK_F32, 4, 1),
    /* fill: p = {n0, n1, value in thousandths} */
    ROWF(fill, fill, "[5,77] 0.375", WK_F32, 0, WHY_EXACT, 5, 77, 375),
    ROWF(fill, fill, "[333,77] -2.5", WK_F32, 0, WHY_EXACT, 333, 77, -2500),
    ROWF(fill, fill, "[7,11] -3.7 (truncated)", WK_I32, 0, WHY_EXACT, 7, 11, -3700),
    /* copy_box: p = {box case} */
    ROWF(copy_box, copy_box, "3-D box [2,3,4]", WK_F32, 0, WHY_EXACT, 0),
    ROWF(copy_box, copy_box, "5-D halo box [1,4,4,6,7]", WK_F32, 0, WHY_EXACT, 1),
    ROWF(copy_box, copy_box, "5-D halo box [1,4,4,6,7]", WK_BF16, 0, WHY_EXACT, 1),
    ROWF(copy_box, copy_box, "whole [333,77]", WK_F32, 0, WHY_EXACT, 2),
    ROWF(copy_box, copy_box, "one element of [2,3,5,7]", WK_F32, 0, WHY_EXACT, 3),
    ROWF(copy_box, copy_box, "3-D box [2,3,4]", WK_I32, 0, WHY_EXACT, 0),
    ROWF(copy_box, copy_box, "3-D box [2,3,4]", WK_F8E4M3, 0, WHY_EXACT, 0),
    /* permute: p = {perm case} */
    ROWF(permute, permute, "[3,5,7,11] planar -> channels-last", WK_F32, 0, WHY_EXACT, 0),
    ROWF(permute, permute, "[5,7,11,3] channels-last -> planar", WK_F32, 0, WHY_EXACT, 1),
    ROWF(permute, permute, "7-D unpatchify", WK_F32, 0, WHY_EXACT, 2),
    ROWF(permute, permute, "7-D unpatchify", WK_BF16, 0, WHY_EXACT, 2),
    ROWF(permute, permute, "7-D patchify", WK_F32, 0, WHY_EXACT, 3),
    ROWF(permute, permute, "8-D reversal", WK_F32, 0, WHY_EXACT, 4),
    ROWF(permute, permute, "[77,3,12] head packing", WK_BF16, 0, WHY_EXACT, 5),
    ROWF(permute, permute, "[3,5,7,11] planar -> channels-last", WK_F8E4M3, 0, WHY_EXACT, 0),
    ROWF(permute, permute, "[333] identity", WK_F32, 0, WHY_EXACT, 6),
    /* rope_table: p = {F, H, W, HD, l0, n} */
    ROWF(rope_table, rope_table, "grid 3x5x7 HD 12, all rows", WK_F32, 1e-6, WHY_RTAB, 3, 5, 7,
         12, 0, 105),
    ROWF(rope_table, rope_table, "grid 21x45x80 HD 128, rows 9400.. with padding", WK_F32, 1e-6,
         WHY_RTAB, 21, 45, 80, 128, 66150, 9500),
    /* timestep_embed: p = {n, dim} */
    ROWF(timestep_embed, timestep_embed, "n=5 dim=256", WK_F32, 1e-4, WHY_TS, 5, 256),
    ROWF(timestep_embed, timestep_embed, "n=3 dim=14", WK_F32, 1e-4, WHY_TS, 3, 14),
    /* embedding: p = {V, D, L, bad ids} */
    ROWF(embedding, embedding, "V=333 D=77 L=55", WK_F32, 0, WHY_EXACT, 333, 77, 55, 0),
    ROWF(embedding, embedding, "V=333 D=77 L=55", WK_BF16, 0, WHY_EXACT, 333, 77, 55, 0),
    ROWF(embedding, embedding, "V=50 D=1536 L=7 ids out of range", WK_F32, 0, WHY_EXACT, 50, 1536,
         7, 1),
    ROWF(embedding, embedding, "V=50 D=96 L=13", WK_F16, 0, WHY_EXACT, 50, 96, 13, 0),
    /* t5_bias: p = {NH, Lq, Lk, NB, max_distance, mask} */
    ROWF(t5_bias, t5_bias, "NH=3 Lq=Lk=77 NB=32 md=128 mask", WK_F32, 0, WHY_T5, 3, 77, 77, 32, 128,
         1),
    ROWF(t5_bias, t5_bias, "NH=3 Lq=Lk=77 NB=32 md=128 mask", WK_BF16, 0, WHY_T5, 3, 77, 77, 32,
         128, 1),
    ROWF(t5_bias, t5_bias, "NH=2 Lq=5 Lk=333 NB=32 md=128", WK_F32, 0, WHY_T5, 2, 5, 333, 32, 128,
         0),
    ROWF(t5_bias, t5_bias, "NH=4 Lq=Lk=512 NB=32 md=128 mask", WK_F32, 0, WHY_T5, 4, 512, 512, 32,
         128, 1),
    /* blend: p = {axis, extent, T, ha, wa, hb, wb, C} */
    ROWF(blend, blend, "axis 1 a[2,9,7,5] b[2,11,7,5] extent 4", WK_F32, 1e-6, WHY_BLEND, 1, 4, 2,
         9, 7, 11, 7, 5),
    ROWF(blend, blend, "axis 2 a[3,6,10,4] b[3,6,8,4] extent 12", WK_F32, 1e-6, WHY_BLEND, 2, 12, 3,
         6, 10, 6, 8, 4),
    ROWF(blend, blend, "axis 1 a[1,5,3,16] b[1,5,3,16] extent 1", WK_F32, 1e-6, WHY_BLEND, 1, 1, 1,
         5, 3, 5, 3, 16),
    /* avgdown3d: p = {T, H, W, C, Co, ft, fs}; dupup3d: p = {T, H, W, C, Co, ft, fs, drop} */
    ROWF(avgdown3d, avgdown3d, "x[1,5,6,10,8] Co=16 ft=2 fs=2", WK_F32, 1e-6, WHY_AVG, 5, 6, 10, 8,
         16, 2, 2),
    ROWF(avgdown3d, avgdown3d, "x[1,4,4,6,12] Co=24 ft=1 fs=2", WK_F32, 1e-6, WHY_AVG, 4, 4, 6, 12,
         24, 1, 2),
    ROWF(avgdown3d, avgdown3d, "x[1,1,2,2,4] Co=8 ft=2 fs=2", WK_F32, 1e-6, WHY_AVG, 1, 2, 2, 4, 8,
         2, 2),
    ROWF(dupup3d, dupup3d, "x[1,3,5,7,16] Co=8 ft=2 fs=2 drop 1", WK_F32, 0, WHY_EXACT, 3, 5, 7, 16,
         8, 2, 2, 1),
    ROWF(dupup3d, dupup3d, "x[1,2,3,4,24] Co=12 ft=1 fs=2", WK_F32, 0, WHY_EXACT, 2, 3, 4, 24, 12,
         1, 2, 0),
    /* scale_add, guidance: p = {n, s or g x 1000, in place} */
    ROWF(scale_add, update, "n=5 s=-0.37", WK_F32, 0, WHY_SMP, 5, -370, 0),
    ROWF(scale_add, update, "n=1000003 s=-0.0251 in place", WK_F32, 0, WHY_SMP, 1000003, -25, 1),
    ROWF(guidance, update, "n=13 g=5", WK_F32, 0, WHY_SMP, 13, 5000, 0),
    ROWF(guidance, update, "n=777777 g=3.5 y=c", WK_F32, 0, WHY_SMP, 777777, 3500, 1),
    /* unipc_update: p = {n, order, corrector, in place} */
    ROWF(unipc_update, unipc, "n=7 order 1 predictor", WK_F32, 0, WHY_SMP, 7, 1, 0, 0),
    ROWF(unipc_update, unipc, "n=33333 order 1 corrector", WK_F32, 0, WHY_SMP, 33333, 1, 1, 0),
    ROWF(unipc_update, unipc, "n=65537 order 2 predictor in place", WK_F32, 0, WHY_SMP, 65537, 2,
         0, 1),
    ROWF(unipc_update, unipc, "n=1001 order 2 corrector", WK_F32, 0, WHY_SMP, 1001, 2, 1, 0),
    ROWF(unipc_update, unipc, "n=500001 order 3 predictor in place", WK_F32, 0, WHY_SMP, 500001,
         3, 0, 1),
    ROWF(unipc_update, unipc, "n=4099 order 3 corrector", WK_F32, 0, WHY_SMP, 4099, 3, 1, 0),
    /* first_nonfinite: p = {n, first bad, kind, later bad} */
    ROWF(first_nonfinite, nonfinite, "n=1000003 all finite", WK_F32, 0, WHY_IDX, 1000003, -1, 0,
         -1),
    ROWF(first_nonfinite, nonfinite, "n=1000003 NaN at 777777, NaN at 999999", WK_F32, 0, WHY_IDX,
         1000003, 777777, 0, 999999),
    ROWF(first_nonfinite, nonfinite, "n=65536 +inf at 40000, NaN at 65535", WK_F32, 0, WHY_IDX,
         65536, 40000, 1, 65535),
    ROWF(first_nonfinite, nonfinite, "n=9 -inf at 0", WK_F32, 0, WHY_IDX, 9, 0, 2, -1),
};
#define N_ROWS ((int)(sizeof rows / sizeof rows[0]))

/* The ops whose CPU bits follow BLAS cuts (bit-exact across thread counts only on the BLAS cores
 * tu_blas_bit_exact names). */
static bool gemm_based(const char *op) {
    return !strcmp(op, "matmul") || !strcmp(op, "matmul_gelu") || !strcmp(op, "attention") ||
           !strcmp(op, "conv3d") || !strcmp(op, "conv2d");
}

static const char *row_dtype(const row *r, char *buf, size_t len) {
    if (strcmp(r->op, "convert") == 0)
        snprintf(buf, len, "%s>%s", wk_dtype_name(r->dt), wk_dtype_name((wk_dtype)r->p[3]));
    else
        snprintf(buf, len, "%s", r->dt == WK_I32 ? "i32" : wk_dtype_name(r->dt));
    return buf;
}

/* The seed of a row's inputs: the run's seed and the row's op, case and dtype (the same inputs in
 * both precisions and on both attention paths, whatever the filter). */
static uint64_t row_seed(const row *r, uint64_t seed) {
    uint64_t h = 1469598103934665603ull;
    char dt[32];
    const char *parts[3] = {r->op, r->cs, row_dtype(r, dt, sizeof dt)};
    for (int i = 0; i < 3; i++) {
        for (const char *c = parts[i]; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
        h = (h ^ '|') * 1099511628211ull;
    }
    return seed * 1000003u ^ h;
}

/* ---------------------------------------------------------------------------------------------
 * One side of a comparison: a backend, the row's tensors in its memory, its outputs downloaded
 * ------------------------------------------------------------------------------------------- */

/* kernels/cuda/cuda_backend.cu's counters of device allocations (cudaMalloc calls so far) */
typedef void (*stats_fn)(wk_backend *be, size_t *n_mallocs, size_t *bytes_live,
                         size_t *bytes_peak);

typedef struct side {
    const char *label;           /* "cpu", "cuda", "cpu (1 thread)" */
    wk_backend *be;
    stats_fn stats;              /* the CUDA plug-in's counters, or NULL */
    void *mem[NSLOT];            /* backend memory per slot (outputs: GUARD | data | GUARD) */
    size_t bytes[NSLOT];         /* data bytes per slot */
    unsigned char *host[NSLOT];  /* outputs as downloaded, guards included */
    double ms;                   /* the op and a sync, last run */
    unsigned grows;              /* of the last run's op: workspace grows, */
    size_t allocs, mallocs;      /* backend allocations, cudaMalloc calls */
} side;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static bool is_out(slot_role r) { return r == S_OUT || r == S_INOUT; }

/* Guard bytes: a sequence no op writes by accident. `first` is the index of g[0] in it. */
static void guard_fill(unsigned char *g, size_t first) {
    for (size_t i = 0; i < GUARD; i++) g[i] = (unsigned char)(0x5a + 37 * (first + i));
}
static bool guard_ok(const unsigned char *g, size_t first) {
    for (size_t i = 0; i < GUARD; i++)
        if (g[i] != (unsigned char)(0x5a + 37 * (first + i))) return false;
    return true;
}

/* n bytes of backend memory as a tensor of 1-byte elements, for wk_upload / wk_download. */
static wk_tensor byte_view(const wk_backend *be, void *p, size_t n) {
    wk_tensor t = wk_tensor_1d(WK_F8E4M3, p, (int64_t)n);
    t.device = be->device;
    return t;
}

static size_t side_mallocs(side *sd) {
    size_t n = 0, live = 0, peak = 0;
    if (sd->stats) sd->stats(sd->be, &n, &live, &peak);
    return n;
}

/* Slot k into sd's memory (allocated on the first run, with guards around an output) and the
 * tensor d that points at it there. */
static wf_status side_put(side *sd, const inst *in, int k, wk_tensor *d, wf_err *e) {
    wf_status st = WF_OK;
    const slot *s = &in->s[k];
    const size_t n = wk_tensor_nbytes(&s->h), g = is_out(s->role) ? GUARD : 0;
    unsigned char *stage = NULL;
    if (!sd->mem[k]) {
        WF_TRY(wk_backend_alloc(sd->be, n + 2 * g, &sd->mem[k], e));
        sd->bytes[k] = n;
    }
    WF_ASSERT(sd->bytes[k] == n); /* a row's shapes are the same in both runs */
    *d = s->h;
    d->device = sd->be->device;
    d->data = (unsigned char *)sd->mem[k] + g;
    stage = malloc(n + 2 * g);
    if (!stage) {
        st = wf_fail(e, WF_ENOMEM, "test tensors: out of host memory (%zu bytes)", n + 2 * g);
        goto out;
    }
    if (g) guard_fill(stage, 0);
    memcpy(stage + g, s->h.data, n);
    if (g) guard_fill(stage + g + n, GUARD);
    wk_tensor v = byte_view(sd->be, sd->mem[k], n + 2 * g);
    WF_TRY(wk_upload(sd->be, &v, stage, e));
    WF_TRY(wk_sync(sd->be, e)); /* the staging bytes are freed next */
out:
    free(stage);
    return st;
}

/* The outputs, guards included, into sd->host. */
static wf_status side_get(side *sd, const inst *in, wf_err *e) {
    wf_status st;
    for (int k = 0; k < NSLOT; k++) {
        if (!is_out(in->s[k].role)) continue;
        const size_t total = sd->bytes[k] + 2 * GUARD;
        if (!sd->host[k] && !(sd->host[k] = malloc(total)))
            return wf_fail(e, WF_ENOMEM, "test outputs: out of host memory (%zu bytes)", total);
        wk_tensor v = byte_view(sd->be, sd->mem[k], total);
        if ((st = wk_download(sd->be, sd->host[k], &v, e))) return st;
    }
    return WF_OK;
}

/* One run of row r on sd: upload, the op and a sync (timed, with what they allocated), download. */
static wf_status side_run(const row *r, side *sd, const inst *in, wf_err *e) {
    wf_status st;
    wk_tensor d[NSLOT];
    memset(d, 0, sizeof d);
    for (int k = 0; k < NSLOT; k++)
        if (in->s[k].role != S_NONE && (st = side_put(sd, in, k, &d[k], e))) return st;
    const unsigned g0 = sd->be->ws_grows;
    const size_t a0 = sd->be->mem_allocs, m0 = side_mallocs(sd);
    const double t0 = now_ms();
    if ((st = r->exec(r, sd->be, d, e)) || (st = wk_sync(sd->be, e))) return st;
    sd->ms = now_ms() - t0;
    sd->grows = sd->be->ws_grows - g0;
    sd->allocs = sd->be->mem_allocs - a0;
    sd->mallocs = side_mallocs(sd) - m0;
    return side_get(sd, in, e);
}

static void side_release(side *sd) {
    for (int k = 0; k < NSLOT; k++) {
        if (sd->mem[k]) wk_backend_free(sd->be, sd->mem[k]);
        free(sd->host[k]);
        sd->mem[k] = NULL;
        sd->host[k] = NULL;
        sd->bytes[k] = 0;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Comparing the outputs of the two sides
 * ------------------------------------------------------------------------------------------- */

typedef struct cmp {
    double err;            /* worst normalised error over the outputs and runs */
    int64_t corrupt;       /* non-finite where ref is finite, or another non-finite than ref's */
    int64_t ref_nonfinite; /* non-finite elements of ref */
    bool guard_ref, guard_test;
    bool bits;             /* some output's bytes differ */
} cmp;

static double elem(const unsigned char *p, wk_dtype dt, int64_t i) {
    float f;
    uint16_t h;
    int32_t v;
    switch (dt) {
    case WK_F32: memcpy(&f, p + 4 * i, 4); return f;
    case WK_BF16: memcpy(&h, p + 2 * i, 2); return wk_bf16_to_f32(h);
    case WK_F16: memcpy(&h, p + 2 * i, 2); return wk_f16_to_f32(h);
    case WK_F8E4M3: return wk_f8e4m3_to_f32(p[i]);
    case WK_I32: memcpy(&v, p + 4 * i, 4); return v;
    default: WF_ASSERT(!"a dtype the comparison knows");
    }
    return 0;
}

/* Output slot s: a from the reference, b from the backend under test (both with guards). */
static void cmp_slot(const slot *s, const unsigned char *a, const unsigned char *b, cmp *c) {
    const int64_t n = wk_tensor_numel(&s->h);
    const size_t bytes = wk_tensor_nbytes(&s->h);
    c->guard_ref |= !guard_ok(a, 0) || !guard_ok(a + GUARD + bytes, GUARD);
    c->guard_test |= !guard_ok(b, 0) || !guard_ok(b + GUARD + bytes, GUARD);
    a += GUARD;
    b += GUARD;
    c->bits |= memcmp(a, b, bytes) != 0;
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        const double x = elem(a, s->h.dtype, i), y = elem(b, s->h.dtype, i);
        if (!isfinite(x)) {
            c->ref_nonfinite++;
            if (!(isnan(x) ? isnan(y) : x == y)) c->corrupt++;
        } else if (!isfinite(y)) {
            c->corrupt++;
        } else {
            num += (y - x) * (y - x);
            den += x * x;
        }
    }
    const double e = num == 0 ? 0 : sqrt(num) / fmax(sqrt(den), 1e-30);
    if (e > c->err) c->err = e;
}

static void cmp_outputs(const inst *in, const side *ref, const side *test, cmp *c) {
    for (int k = 0; k < NSLOT; k++)
        if (is_out(in->s[k].role)) cmp_slot(&in->s[k], ref->host[k], test->host[k], c);
}

/* ---------------------------------------------------------------------------------------------
 * Running a row
 * ------------------------------------------------------------------------------------------- */

typedef enum { RES_OK, RES_FAIL, RES_UNSUP, RES_UNSUP_REF, RES_ERROR, RES_SKIP } res_kind;
static const char *const res_names[] = {"ok", "FAIL", "not supported", "not supported (ref)",
                                        "ERROR", "skipped"};

typedef struct res {
    res_kind kind;
    double err, bound, ms_ref, ms_test;
    char why[WF_ERR_MSG];
} res;

typedef struct harness {
    uint64_t seed;
    bool cpu_only;
    bool blas_exact;        /* tu_blas_bit_exact(): GEMM-based CPU ops bit-exact across threads */
    int threads, device;
    const char *filter;
    wk_backend *cpu;        /* the reference */
    wk_backend *cpu1;       /* --cpu-only: the backend under test, the CPU on one thread */
    wk_backend *cuda[2][N_PATHS]; /* by precision and path, made when a row first needs one */
    char cuda_why[2][N_PATHS][WF_ERR_MSG]; /* why one could not be made */
    stats_fn stats;
} harness;

static double row_bound(const row *r, const harness *h) {
    if (!h->cpu_only) return r->bound;
    return gemm_based(r->op) && !h->blas_exact ? 1e-5 : 0.0;
}

/* Only ops whose CPU output has non-finite values by design: t5_bias (-inf for masked keys) and
 * convert (inf and NaN inputs, f8's overflow). Elsewhere a NaN in the reference is an element
 * the CPU op did not write. */
static bool nonfinite_expected(const row *r) {
    return !strcmp(r->op, "t5_bias") || !strcmp(r->op, "convert");
}

#define SET_WHY(o, ...) snprintf((o)->why, sizeof (o)->why, __VA_ARGS__)

/* Runs one instance on both sides; false (and out filled) when an op failed or is missing. */
static bool run_sides(const row *r, side *ref, side *test, const inst *in, res *out) {
    side *sides[2] = {ref, test};
    for (int i = 0; i < 2; i++) {
        wf_err e;
        wf_err_clear(&e);
        wf_status st = side_run(r, sides[i], in, &e);
        if (st == WF_OK) continue;
        out->kind = st == WF_EUNSUPPORTED ? (i ? RES_UNSUP : RES_UNSUP_REF) : RES_ERROR;
        SET_WHY(out, "%s: %.960s", sides[i]->label, e.msg[0] ? e.msg : wf_status_str(st));
        return false;
    }
    return true;
}

/* The verdict on a row whose two runs both completed. */
static void judge(const row *r, const side *ref, const side *test, const cmp *c,
                  const harness *h, res *out) {
    out->err = c->err;
    out->bound = row_bound(r, h);
    out->ms_ref = ref->ms;
    out->ms_test = test->ms;
    out->kind = RES_FAIL;
    if (c->guard_ref || c->guard_test)
        SET_WHY(out, "corrupt: guard bytes around the output overwritten by %s",
                c->guard_test ? test->label : ref->label);
    else if (c->corrupt)
        SET_WHY(out, "corrupt: %lld elements NaN/Inf where %s's are finite, or another "
                "non-finite", (long long)c->corrupt, ref->label);
    else if (c->ref_nonfinite && !nonfinite_expected(r))
        SET_WHY(out, "%s's output has %lld NaN/Inf elements (unwritten?)", ref->label,
                (long long)c->ref_nonfinite);
    else if (ref->grows || test->grows)
        SET_WHY(out, "the second run grew the workspace of %s", test->grows ? test->label
                                                                              : ref->label);
    else if (ref->allocs || test->allocs)
        SET_WHY(out, "the second run made %zu backend allocation(s) on %s",
                test->allocs ? test->allocs : ref->allocs, test->allocs ? test->label : ref->label);
    else if (test->mallocs)
        SET_WHY(out, "the second run called cudaMalloc %zu time(s)", test->mallocs);
    else if (!(c->err <= out->bound))
        SET_WHY(out, "error above the bound");
    else if (h->cpu_only && out->bound == 0 && c->bits)
        SET_WHY(out, "not bit for bit (the CPU's bits must not depend on the thread count)");
    else
        out->kind = RES_OK;
}

/* The second run's weights are the first run's (S_W slots). */
static void keep_weights(inst *in, const inst *prev) {
    for (int k = 0; k < NSLOT; k++) {
        const slot *a = &prev->s[k];
        slot *b = &in->s[k];
        if (b->role != S_W || !a->h.data || !b->h.data) continue;
        WF_ASSERT(a->role == S_W && wk_tensor_nbytes(&a->h) == wk_tensor_nbytes(&b->h));
        memcpy(b->h.data, a->h.data, wk_tensor_nbytes(&b->h));
    }
}

/* Row r, twice, on ref and test: fresh activations each run, the same weights. */
static void run_row(const row *r, side *ref, side *test, const harness *h, res *out) {
    tu_rng rng = tu_rng_new(row_seed(r, h->seed));
    cmp c = {0};
    bool done = true;
    inst prev = {0};
    out->kind = RES_OK;
    out->bound = row_bound(r, h);
    for (int run = 0; run < 2 && done; run++) {
        inst in = {0};
        r->build(r, &in, &rng);
        if (run) keep_weights(&in, &prev);
        if (in.oom) {
            out->kind = RES_ERROR;
            SET_WHY(out, "out of host memory for the row's tensors");
            done = false;
        } else if ((done = run_sides(r, ref, test, &in, out))) {
            cmp_outputs(&in, ref, test, &c);
        }
        inst_free(&prev);
        prev = in;
    }
    inst_free(&prev);
    if (done) judge(r, ref, test, &c, h, out);
    side_release(ref);
    side_release(test);
}

/* ---------------------------------------------------------------------------------------------
 * Backends
 * ------------------------------------------------------------------------------------------- */

/* A CUDA backend with the path forced through its variable (paths[]; P_AUTO leaves the
 * environment as it is); the variable is restored afterwards. */
static wf_status cuda_make(wk_backend **out, int device, wk_precision prec, int path, wf_err *e) {
    const char *var = paths[path].var;
    if (!var) return wk_backend_cuda_new(out, device, prec, e);
    const char *old = getenv(var);
    char saved[256] = "";
    const bool had = old != NULL;
    if (had) snprintf(saved, sizeof saved, "%s", old);
    setenv(var, paths[path].value, 1);
    wf_status st = wk_backend_cuda_new(out, device, prec, e);
    if (had) setenv(var, saved, 1);
    else unsetenv(var);
    return st;
}

/* The backend a row is tested on; NULL with the reason in why when it cannot be made. */
static wk_backend *test_backend(harness *h, const row *r, char *why, size_t len) {
    if (h->cpu_only) return h->cpu1;
    wk_backend **be = &h->cuda[r->prec][r->path];
    char *bad = h->cuda_why[r->prec][r->path];
    if (!*be && !bad[0]) {
        wf_err e;
        wf_err_clear(&e);
        if (cuda_make(be, h->device, r->prec, r->path, &e))
            snprintf(bad, WF_ERR_MSG, "cannot make the CUDA backend (%s%s%s=%s): %.900s",
                     wk_precision_name(r->prec), paths[r->path].var ? ", " : "",
                     paths[r->path].var ? paths[r->path].var : "",
                     paths[r->path].var ? paths[r->path].value : "", e.msg);
    }
    if (!*be) snprintf(why, len, "%s", bad);
    return *be;
}

/* The plug-in's counters: exported by libwanfarm_cuda.so, which backend_load.c opens with
 * RTLD_LOCAL, so looked up in the global scope first, then in the plug-in's own handle. */
static stats_fn find_stats(void) {
    void *f = dlsym(RTLD_DEFAULT, "wk_cuda_plugin_stats");
    const char *path = wk_cuda_plugin_path();
    if (!f && path[0]) {
        void *hdl = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
        if (hdl) {
            f = dlsym(hdl, "wk_cuda_plugin_stats");
            dlclose(hdl); /* the loader keeps its own reference */
        }
    }
    return (stats_fn)(uintptr_t)f;
}

/* ---------------------------------------------------------------------------------------------
 * The coverage check, listing and report
 * ------------------------------------------------------------------------------------------- */

typedef void (*any_fn)(void);

static any_fn op_at(const wk_ops *ops, size_t off) {
    any_fn f;
    memcpy(&f, (const char *)ops + off, sizeof f);
    return f;
}

/* Every function pointer of wk_ops is named here, and every non-memory op has a row; every row's
 * op is a table op. Prints what is wrong; false then. */
static bool coverage_ok(void) {
    bool ok = true;
    const size_t slots = sizeof(wk_ops) / sizeof(any_fn);
    if (slots != (size_t)(N_TABLE_OPS + N_MEMORY_OPS)) {
        fprintf(stderr, "test_backend_ops: wk_ops has %zu function pointers, this test names %d: "
                "add the new op to table_ops and give it rows\n", slots,
                N_TABLE_OPS + N_MEMORY_OPS);
        ok = false;
    }
    for (int i = 0; i < N_TABLE_OPS; i++) {
        int n = 0;
        for (int j = 0; j < N_ROWS; j++) n += strcmp(rows[j].op, table_ops[i].name) == 0;
        if (!n) {
            fprintf(stderr, "test_backend_ops: op %s of the table has no row\n", table_ops[i].name);
            ok = false;
        }
    }
    for (int j = 0; j < N_ROWS; j++) {
        int n = 0;
        for (int i = 0; i < N_TABLE_OPS; i++) n += strcmp(rows[j].op, table_ops[i].name) == 0;
        if (!n) {
            fprintf(stderr, "test_backend_ops: row %d's op %s is not in the table\n", j,
                    rows[j].op);
            ok = false;
        }
    }
    return ok;
}

/* The ops a backend's table lacks, as one line. */
static void print_missing(const wk_backend *be) {
    int n = 0;
    for (int i = 0; i < N_TABLE_OPS; i++)
        if (!op_at(be->ops, table_ops[i].off))
            printf("%s%s", n++ ? ", " : "# ops the backend lacks: ", table_ops[i].name);
    if (n) printf(" (%s)\n", be->name);
}

static bool row_selected(const row *r, const harness *h) {
    if (h->filter && !strstr(r->op, h->filter)) return false;
    if (!h->cpu_only) return true;
    /* --cpu-only: a row whose op, case and dtype an earlier row has (another precision or CUDA
     * path) is the same CPU work again */
    for (const row *q = rows; q < r; q++)
        if (!strcmp(q->op, r->op) && !strcmp(q->cs, r->cs) && q->dt == r->dt) return false;
    return true;
}

static int case_width(const harness *h) {
    int w = 4;
    for (int j = 0; j < N_ROWS; j++)
        if (row_selected(&rows[j], h) && (int)strlen(rows[j].cs) > w) w = (int)strlen(rows[j].cs);
    return w;
}

static void print_list(const harness *h) {
    const int w = case_width(h);
    printf("# %-16s %-*s %-12s %-4s %-5s %9s  %s\n", "op", w, "case", "dtype", "prec", "path",
           "bound", "why");
    for (int j = 0; j < N_ROWS; j++) {
        const row *r = &rows[j];
        char dt[32];
        if (!row_selected(r, h)) continue;
        printf("  %-16s %-*s %-12s %-4s %-5s %9.1e  %s\n", r->op, w, r->cs,
               row_dtype(r, dt, sizeof dt), wk_precision_name(r->prec), paths[r->path].name,
               row_bound(r, h), r->why);
    }
}

static void print_row(const row *r, const res *o, int w) {
    char dt[32];
    printf("  %-16s %-*s %-12s %-4s %-5s ", r->op, w, r->cs, row_dtype(r, dt, sizeof dt),
           wk_precision_name(r->prec), paths[r->path].name);
    if (o->kind == RES_OK || o->kind == RES_FAIL)
        printf("%9.2e %9.1e %9.3f %9.3f  %s%s%s%s\n", o->err, o->bound, o->ms_ref, o->ms_test,
               res_names[o->kind], o->why[0] ? " (" : "", o->why, o->why[0] ? ")" : "");
    else
        printf("%9s %9.1e %9s %9s  %s: %s\n", "-", o->bound, "-", "-", res_names[o->kind], o->why);
    fflush(stdout);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* One JSON object: the run's settings, one entry per row run, the counts and the verdict. */
static int write_json(const char *path, const harness *h, const res *out, const int counts[6],
                      bool ok) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "{\"test\": \"test_backend_ops\", \"mode\": \"%s\", \"seed\": %llu,\n \"rows\": [",
            h->cpu_only ? "cpu-only" : "cuda", (unsigned long long)h->seed);
    int n = 0;
    for (int j = 0; j < N_ROWS; j++) {
        const row *r = &rows[j];
        char dt[32];
        if (out[j].kind == RES_SKIP) continue;
        fprintf(f, "%s\n  {\"op\": ", n++ ? "," : "");
        json_str(f, r->op);
        fprintf(f, ", \"case\": ");
        json_str(f, r->cs);
        fprintf(f, ", \"dtype\": \"%s\", \"precision\": \"%s\", \"path\": \"%s\", ",
                row_dtype(r, dt, sizeof dt), wk_precision_name(r->prec), paths[r->path].name);
        fprintf(f, "\"error\": %.6g, \"bound\": %.3g, \"ms_ref\": %.4f, \"ms_test\": %.4f, ",
                isfinite(out[j].err) ? out[j].err : -1.0, out[j].bound, out[j].ms_ref,
                out[j].ms_test);
        fprintf(f, "\"result\": \"%s\", \"detail\": ", res_names[out[j].kind]);
        json_str(f, out[j].why);
        fprintf(f, "}");
    }
    fprintf(f, "\n ],\n \"counts\": {\"ok\": %d, \"failed\": %d, \"not_supported\": %d, "
               "\"not_supported_ref\": %d, \"errors\": %d},\n \"result\": \"%s\"}\n",
            counts[RES_OK], counts[RES_FAIL], counts[RES_UNSUP], counts[RES_UNSUP_REF],
            counts[RES_ERROR], ok ? "OK" : "FAILED");
    return fclose(f) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: test_backend_ops [--cpu-only] [--filter SUB] [--seed S] [--threads N]\n"
            "                        [--device D] [--list] [--json FILE]\n"
            "  --cpu-only    the CPU on all threads against the CPU on one (no device needed)\n"
            "  --filter SUB  only rows whose op name contains SUB\n"
            "  --seed S      seed of the random inputs (default %d)\n"
            "  --threads N   threads of the reference CPU backend (default: all)\n"
            "  --device D    the CUDA device (default 0)\n"
            "  --list        list the rows with their bounds and reasons, run nothing\n"
            "  --json FILE   also write the results as JSON\n"
            "exit status: 0 OK, 1 FAILED, 2 usage, 77 no CUDA device (skipped)\n",
            DEFAULT_SEED);
}

/* Parses argv into h; returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, harness *h, bool *list, const char **json) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool val = i + 1 < argc;
        if (!strcmp(a, "--cpu-only")) h->cpu_only = true;
        else if (!strcmp(a, "--list")) *list = true;
        else if (!strcmp(a, "--filter") && val) h->filter = argv[++i];
        else if (!strcmp(a, "--seed") && val) h->seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(a, "--threads") && val) h->threads = atoi(argv[++i]);
        else if (!strcmp(a, "--device") && val) h->device = atoi(argv[++i]);
        else if (!strcmp(a, "--json") && val) *json = argv[++i];
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "test_backend_ops: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    return -1;
}

/* The reference CPU backend and the backend under test (--cpu-only: the CPU on one thread, or
 * two when the reference has one; else the CUDA backend in fp32, which is also the device
 * probe). Returns -1 to go on, else the exit status (77: no device). */
static int make_backends(harness *h, side *ref) {
    wf_err e;
    wf_err_clear(&e);
    if (wk_backend_cpu_new(&h->cpu, h->threads, &e)) {
        fprintf(stderr, "test_backend_ops: %s\n", e.msg);
        return 1;
    }
    ref->be = h->cpu;
    ref->label = "cpu";
    if (h->cpu_only) {
        if (wk_backend_cpu_new(&h->cpu1, h->cpu->nthreads == 1 ? 2 : 1, &e)) {
            fprintf(stderr, "test_backend_ops: %s\n", e.msg);
            return 1;
        }
        return -1;
    }
    wf_status st = cuda_make(&h->cuda[WK_PREC_FP32][P_AUTO], h->device, WK_PREC_FP32, P_AUTO, &e);
    if (st == WF_EUNSUPPORTED) {
        printf("test_backend_ops: no CUDA device (%s): skipped\n", e.msg);
        return 77;
    }
    if (st) {
        fprintf(stderr, "test_backend_ops: the CUDA backend failed to start: %s\n", e.msg);
        return 1;
    }
    h->stats = find_stats();
    return -1;
}

static void print_header(const harness *h) {
    const wk_backend *t = h->cpu_only ? h->cpu1 : h->cuda[WK_PREC_FP32][P_AUTO];
    printf("# test_backend_ops: %s against cpu (%d threads), seed %llu%s%s\n",
           h->cpu_only ? "cpu" : "cuda", h->cpu->nthreads, (unsigned long long)h->seed,
           h->filter ? ", filter " : "", h->filter ? h->filter : "");
    if (h->cpu_only)
        printf("# --cpu-only: the backend under test is the CPU on %d thread%s; bound 0 = bit for "
               "bit%s\n", t->nthreads, t->nthreads == 1 ? "" : "s",
               h->blas_exact ? "" : " (GEMM-based ops 1e-5: this BLAS is not known bit-exact)");
    else
        printf("# cuda device %d; path: - as chosen, else forced: attention own|cudnn "
               "(WANFARM_CUDA_ATTN), GEMM simt (WANFARM_CUDA_GEMM), conv own (WANFARM_CUDA_CONV)\n",
               h->device);
    printf("# error = ||test - ref|| / ||ref|| over the outputs, worst of 2 runs with fresh inputs;"
           " ms: the second run (op + sync)\n");
    print_missing(h->cpu);
    print_missing(t);
    if (!h->cpu_only && !h->stats)
        printf("# the CUDA plug-in exports no wk_cuda_plugin_stats: cudaMalloc counts cannot be "
               "checked (a failure)\n");
}

/* Runs the selected rows; counts[kind] and out[] filled. */
static void run_rows(harness *h, side *ref, res *out, int counts[6]) {
    const int w = case_width(h);
    printf("# %-16s %-*s %-12s %-4s %-5s %9s %9s %9s %9s  result\n", "op", w, "case", "dtype",
           "prec", "path", "error", "bound", "ref ms", "test ms");
    for (int j = 0; j < N_ROWS; j++) {
        const row *r = &rows[j];
        out[j] = (res){.kind = RES_SKIP};
        if (!row_selected(r, h)) continue;
        side test = {.label = h->cpu_only ? "cpu (1 thread)" : "cuda", .stats = h->stats};
        if (h->cpu_only && h->cpu1->nthreads != 1) test.label = "cpu (2 threads)";
        test.be = test_backend(h, r, out[j].why, sizeof out[j].why);
        if (!test.be) {
            out[j].kind = RES_ERROR;
            out[j].bound = row_bound(r, h);
        } else {
            run_row(r, ref, &test, h, &out[j]);
        }
        counts[out[j].kind]++;
        print_row(r, &out[j], w);
    }
}

int main(int argc, char **argv) {
    harness h = {.seed = DEFAULT_SEED};
    bool list = false;
    const char *json = NULL;
    int rc = parse_args(argc, argv, &h, &list, &json);
    if (rc >= 0) return rc;
    if (!coverage_ok()) return 1;
    int nsel = 0;
    for (int j = 0; j < N_ROWS; j++) nsel += row_selected(&rows[j], &h);
    if (!nsel) {
        fprintf(stderr, "test_backend_ops: no row's op contains '%s' (see --list)\n", h.filter);
        return 2;
    }
    if (list) {
        print_list(&h);
        return 0;
    }
    h.blas_exact = tu_blas_bit_exact();
    side ref = {0};
    static res results[N_ROWS];
    int counts[6] = {0};
    if ((rc = make_backends(&h, &ref)) >= 0) goto out;
    print_header(&h);
    run_rows(&h, &ref, results, counts);
    const int nfail = counts[RES_FAIL] + counts[RES_ERROR] + (!h.cpu_only && !h.stats);
    printf("# %d rows: %d ok, %d failed, %d errors, %d not supported, %d not supported by the "
           "reference\n", nsel, counts[RES_OK], counts[RES_FAIL], counts[RES_ERROR],
           counts[RES_UNSUP], counts[RES_UNSUP_REF]);
    if (h.stats) {
        size_t n = 0, live = 0, peak = 0;
        h.stats(h.cuda[WK_PREC_FP32][P_AUTO], &n, &live, &peak);
        printf("# cuda (fp32 backend): %zu cudaMallocs, %.1f MiB live, %.1f MiB peak\n", n,
               (double)live / (1 << 20), (double)peak / (1 << 20));
    }
    printf("%s\n", nfail ? "FAILED" : "OK");
    rc = nfail ? 1 : 0;
    if (json && write_json(json, &h, results, counts, !nfail)) {
        fprintf(stderr, "test_backend_ops: cannot write %s\n", json);
        rc = 1;
    }
out:
    for (int p = 0; p < 2; p++)
        for (int a = 0; a < N_PATHS; a++) wk_backend_destroy(&h.cuda[p][a]);
    wk_backend_destroy(&h.cpu1);
    wk_backend_destroy(&h.cpu);
    return rc;
}
