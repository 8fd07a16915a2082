/* bench_gpu.c: the GPU benchmark of the CUDA backend on one device, a plug-in of the bench engine
 * (bench_engine.h), in the nccl-tests shape: the benchmark half of bench/gpu-check.sh.
 *
 * What it is: one table, every row an op or op sequence through the backend dispatchers on the
 * CUDA backend (wk_backend_cuda_new, WK_PREC_BF16, device --device), -w warm-up and -n timed calls
 * (median; a call is `reps` back-to-back launches and a wk_sync, ms is per launch):
 *   - matmul M=K=N=8192 (bf16 weight, f32 activation rounded to bf16 inside the op, f32 out,
 *     no bias): the GEMM peak every "%peak" is relative to; and wk_convert of the same x to bf16,
 *     so that "the GEMM alone" = op - convert is printed beside it (footer, JSON);
 *   - attention alone at A14B shape (40 heads of 128, self-attention, Lq = Lk) for L = 9,450 and
 *     75,600, once on a backend created with WANFARM_CUDA_ATTN=cudnn and once with =own;
 *   - one DiT block at A14B width (D 5120, FFN 13824, 512 text tokens) at the same L, in the op
 *     sequence of dit_forward's block_forward on the fused ops (ln_modulate, rms_norm_rope,
 *     matmul_gelu, gate_residual), random bf16 weights uploaded once: the whole block, its
 *     10 GEMMs alone and its 2 attentions alone (same tensors), the rest = whole - both;
 *   - the block at a reduced L against the CPU backend (same weights, same inputs), on the bf16
 *     backend and on an fp32 one: the block's correctness rows;
 *   - an elementwise add over [75600, 5120] (GB/s);
 *   - the Wan VAE decoder's 3x3x3 resblock convolutions at 720p (channels-last, causal padding,
 *     chunks of 4 frames): the VAE model cannot be run here without its checkpoint, so the 720p
 *     decode of 5 latent frames is estimated from these rows (footer), and the row names say so.
 * #wrong: GEMM (64 sampled outputs) and attention (16 sampled query rows x 128) against double
 * dot products over exactly the bf16-rounded inputs the op saw, conv (32 sampled outputs) against
 * a double window sum, the block against the CPU backend (every element), and a NaN/Inf scan of
 * every output. The PyTorch peer (torch_gpu_peer.py: matmul, SDPA, conv3d on the same shapes)
 * runs first, alone, when python3 imports torch with a CUDA device. The footer writes the
 * measured rates as a cost file the planner reads (pn_cost_load) and predicts the 40-step 720p
 * A14B video on one GPU through pn_evaluate. Every part is bounded in time (a watchdog per row,
 * --row-timeout) and the JSON is rewritten after every row, so a hang or crash leaves the rows
 * before it. Metrics: bench/PERFORMANCE.md, section bench_gpu.
 * Columns: ms = median wall time of a timed call / reps (launch + wk_sync included, so a short op
 * pays the sync once per reps launches); TFLOP/s = the FLOP count / ms: matmul 2MKN, attention
 * 4 Lq Lk NH HD, block 2 x its GEMMs' MKN + 4 L^2 D + 4 L Lt D, conv 2 T H W Cout Cin 27;
 * %peak = TFLOP/s / the matmul row's; #wrong as above (n/a: no output of its own); peer(ms) and
 * torch/ours (> 1: we are faster) as the other benches; note: GB/s, errors, the block's split.
 * What it is not: a test (tests/test_backend_ops.c owns per-op correctness), the model benches
 * (bench_dit, bench_vae run whole models), or multi-GPU (bench_dist).
 * Without a usable CUDA device it prints "no CUDA device (...)" and exits 77.
 * Run:   build/bench/bench_gpu [--quick] [--json OUT.json] [--cost-file OUT.cost.json]
 *                              [--parts gemm,attn,check,block,add,vae] [-w 1 -n 5 --torch 1]
 */
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "backend.h"
#include "backend_load.h"
#include "bench_engine.h"
#include "plan.h"

/* A14B's block (wan_spec.md): D = NH * HD, FFN width, text tokens; the 720p latent grid. */
enum { NH = 40, HD = 128, DIM = NH * HD, FFN = 13824, LT = 512 };
enum { GRID_F = 21, GRID_H = 45, GRID_W = 80 }; /* 720p x 81 frames: 75,600 tokens */
#define EPS       1e-6f
#define MAX_ROWS  32
#define MAX_CONVS 4
#define MAX_W     48

/* Correctness bounds on the normalised error e_i = |ours_i - ref_i| / rms(ref), with reasons:
 * GEMM: the reference uses the same bf16-rounded inputs, so only fp32 accumulation order
 *   differs (~sqrt(K) 2^-24); a non-RNE rounding of x alone gives ~2^-9 = 2e-3.
 * attention: bf16 P (the probabilities) in the P.V GEMM, as every fused kernel does, costs
 *   ~2^-9 relative per term; a softmax or indexing slip is O(1).
 * conv: the backend may round inputs to bf16 (~2^-9) or use TF32 (~2^-11).
 * block (e_i over every element of x_out, normalised by the rms of the block's update x_out - x0,
 *   since the residual x0 alone would hide a wrong branch): bf16 backend vs the f32 CPU: every
 *   GEMM and attention input is rounded (~2^-9 / sqrt 3 each), ~3e-3 rms through a branch, max
 *   over 2.5M elements ~5 sigma; fp32 backend vs CPU: f32 everywhere, only orders differ. */
#define TOL_GEMM       1e-3
#define TOL_ATTN       2e-2
#define TOL_CONV       1e-2
#define TOL_BLOCK_BF16 5e-2
#define TOL_BLOCK_FP32 1e-3

enum row_kind { R_GEMM, R_CONVERT, R_ATTN, R_CHECK, R_BGEMM, R_BATTN, R_BLOCK, R_ADD, R_CONV };
enum { P_GEMM = 1, P_ATTN = 2, P_CHECK = 4, P_BLOCK = 8, P_ADD = 16, P_VAE = 32 };

/* A decoder conv: x [1, T, H, W, C] -> y [1, T, H, W, C], 3x3x3, and how often the decoder runs
 * it for 5 latent frames: `frames` output frames at that stage, `nconv` convs of that shape
 * (wan_spec.md's decoder: mid 2 + up_blocks.0 3 resnets at 384 @ 90x160; up_blocks.1 (192->384
 * counted as half) at 180x320; up_blocks.2 at 360x640; up_blocks.3 at 720x1280). */
typedef struct conv_shape {
    int64_t T, H, W, C;
    double frames, nconv;
} conv_shape;

typedef struct shapes {
    int64_t gemm, attn_L[2], block_L[2], check_L;
    conv_shape conv[MAX_CONVS];
} shapes;

static const shapes FULL = {8192, {9450, 75600}, {9450, 75600}, 480,
                            {{4, 90, 160, 384, 5, 10}, {4, 180, 320, 384, 9, 5.5},
                             {4, 360, 640, 192, 17, 6}, {4, 720, 1280, 96, 17, 6}}};
static const shapes QUICK = {4096, {1024, 4096}, {1024, 4096}, 96,
                             {{4, 45, 80, 384, 5, 10}, {4, 90, 160, 384, 9, 5.5},
                              {4, 180, 320, 192, 17, 6}, {4, 360, 640, 96, 17, 6}}};

/* One row of the table. */
typedef struct grow {
    int kind, path, conv; /* path: R_ATTN 0 cudnn, 1 own; R_CHECK 0 bf16, 1 fp32 */
    int64_t L;
    int reps;              /* launches per timed call */
    double flops1, bytes1; /* per launch */
    double ms;             /* per launch, once run (NaN: not run or failed) */
    double peer_ms;
    char what[64], shape[48], note[BN_CELL];
} grow;

/* One DiT block's weights (Diffusers names), on the device or the host. */
typedef struct blk_w {
    wk_tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, nq, nk;           /* attn1: [D, D], [D] */
    wk_tensor q2_w, q2_b, k2_w, k2_b, v2_w, v2_b, o2_w, o2_b, nq2, nk2; /* attn2 */
    wk_tensor n2_w, n2_b;                                               /* norm2 [D] f32 */
    wk_tensor f1_w, f1_b, f2_w, f2_b;                                   /* ffn [FF, D], [D, FF] */
    wk_tensor table;                                                    /* [1, 6, D] f32 */
} blk_w;

/* One block's activations (L tokens). */
typedef struct blk_a {
    int64_t L;
    wk_tensor x, n, q, k, v, o;    /* [L, D] */
    wk_tensor ffh;                 /* [L, FF] */
    wk_tensor ctx, k2, v2;         /* [Lt, D] */
    wk_tensor tproj[6];            /* [1, D] the time projection's chunks */
    wk_tensor shift, scale1, gate; /* [1, D] */
    wk_tensor one;                 /* [1] = 1 */
    wk_tensor cos, sin;            /* [L, HD] */
} blk_a;

static struct {
    /* flags */
    int quick, device, row_timeout, round_bf16;
    const char *cost_file, *parts_arg;
    unsigned parts;
    shapes s;
    /* backends: e->be is the bf16 one; attention paths; fp32; the CPU reference */
    wk_backend *att_be[2], *fp32_be, *cpu;
    char att_why[2][300], fp32_why[300], dev_name[256];
    double dev_total;
    /* weights: one host block and one device block */
    int nw;
    wk_tensor *w_dev[MAX_W], *w_host[MAX_W];
    const char *w_name[MAX_W];
    double w_mean[MAX_W], w_std[MAX_W];
    void *wh_base, *wd_base;
    size_t w_bytes;
    blk_w bw_dev, bw_host;
    wk_tensor gw_dev, gw_host; /* GEMM weight [N, K] bf16 */
    wk_tensor cw_dev[MAX_CONVS], cw_host[MAX_CONVS], cb_dev[MAX_CONVS], cb_host[MAX_CONVS];
    /* device activations (one arena) and host inputs */
    wk_arena ar, har;
    wk_tensor gx, gy, gxb;    /* [M, K] f32, [M, N] f32, [M, K] bf16 */
    wk_tensor aq, ak, av, ao; /* [Lmax, NH, HD] */
    blk_a ba[2], bchk, bcpu;  /* block L0, L1, check L (device), CPU */
    wk_tensor cx, cy;         /* conv, sized for the largest */
    float *h_gx, *h_aq, *h_ak, *h_av, *h_x0, *h_ctx, *h_tproj, *h_cx, *h_out;
    size_t h_out_n;
    int cpu_done;
    /* rows and results */
    grow rows[MAX_ROWS];
    int nrows, gemm_row, conv_row, cost_row, predicted;
    double peak_tflops, gemm_alone_tflops, peer_gemm_only_ms, vae_ms;
    char peer_err[300], peer_sdpa[64];
    pn_cost cost;
    pn_plan plan;
    int have_cost, have_plan;
    char plan_why[400];
} G = {.row_timeout = 300};

/* ------------------------------------------------------------------------------------------ */
/* the watchdog: every part is bounded in time */

static char alarm_msg[600];
static size_t alarm_len;

static void on_alarm(int sig) {
    (void)sig;
    ssize_t w = write(2, alarm_msg, alarm_len);
    (void)w;
    _exit(124);
}

/* From now on, `part` must finish within `seconds` (0: no bound). */
static void watchdog(const bn_run *e, const char *part, int seconds) {
    snprintf(alarm_msg, sizeof alarm_msg,
             "\nbench_gpu: TIMEOUT: %s ran past %d s (--row-timeout); the rows before it are in "
             "%s\n",
             part, seconds, e->o.json ? e->o.json : "the table above (no --json)");
    alarm_len = strlen(alarm_msg);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)seconds);
}

/* ------------------------------------------------------------------------------------------ */
/* random data (uniform, unit variance scaled: fast enough for 3 x 10^9 values) */

/* x[i] = mean + std * U(-sqrt 3, sqrt 3), stored as dt (f32 or bf16), chunked over threads. */
static void fill_random(void *x, wk_dtype dt, size_t n, double mean, double std, uint64_t seed) {
    const size_t chunk = (size_t)1 << 16, nch = (n + chunk - 1) / chunk;
    const double a = std * sqrt(3.0);
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nch; c++) {
        uint64_t s = seed ^ (0x9e3779b97f4a7c15ULL * (c + 1));
        const size_t end = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        for (size_t i = c * chunk; i < end; i++) {
            float v = (float)(mean + a * (2.0 * bu_rng_uniform(&s) - 1.0));
            if (dt == WK_BF16)
                ((uint16_t *)x)[i] = wk_f32_to_bf16(v);
            else
                ((float *)x)[i] = v;
        }
    }
}

static float *host_random(size_t n, double std, const char *name) {
    float *p = malloc(n * sizeof *p);
    if (p) fill_random(p, WK_F32, n, 0.0, std, bu_name_seed(name));
    return p;
}

/* An input as the op sees it: rounded to bf16 under WK_PREC_BF16 (backend.h), else as is. */
static double bf(float v) {
    return G.round_bf16 ? (double)wk_bf16_to_f32(wk_f32_to_bf16(v)) : (double)v;
}

static double val(const wk_tensor *t, size_t i) {
    return t->dtype == WK_BF16 ? (double)wk_bf16_to_f32(((const uint16_t *)t->data)[i])
                               : (double)((const float *)t->data)[i];
}

static long count_nonfinite(const float *y, size_t n) {
    long c = 0;
    for (size_t i = 0; i < n; i++)
        c += !isfinite(y[i]);
    return c;
}

/* ------------------------------------------------------------------------------------------ */
/* weights: registered, then laid out in one host block, filled, uploaded once */

static void wreg(wk_tensor *dev, wk_tensor *host, const char *name, wk_dtype dt, double mean,
                 double std, int ndim, const int64_t *shape) {
    WF_ASSERT(G.nw < MAX_W);
    *dev = *host = wk_tensor_make(dt, NULL, ndim, shape);
    dev->name = host->name = name;
    G.w_dev[G.nw] = dev;
    G.w_host[G.nw] = host;
    G.w_name[G.nw] = name;
    G.w_mean[G.nw] = mean;
    G.w_std[G.nw] = std;
    G.nw++;
}
#define WREG(f, name, dt, mean, std, ...)                                                          \
    wreg(&G.bw_dev.f, &G.bw_host.f, name, dt, mean, std,                                           \
         (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})

/* The block's tensors: weights N(0, 1/sqrt(fan_in))-scaled, biases 0.02, norm gains 1 +- 0.1. */
static void register_block(void) {
    const double sd = 1.0 / sqrt((double)DIM), sf = 1.0 / sqrt((double)FFN), b = 0.02;
    WREG(q_w, "attn1.to_q.weight", WK_BF16, 0, sd, DIM, DIM);
    WREG(q_b, "attn1.to_q.bias", WK_BF16, 0, b, DIM);
    WREG(k_w, "attn1.to_k.weight", WK_BF16, 0, sd, DIM, DIM);
    WREG(k_b, "attn1.to_k.bias", WK_BF16, 0, b, DIM);
    WREG(v_w, "attn1.to_v.weight", WK_BF16, 0, sd, DIM, DIM);
    WREG(v_b, "attn1.to_v.bias", WK_BF16, 0, b, DIM);
    WREG(o_w, "attn1.to_out.0.weight", WK_BF16, 0, sd, DIM, DIM);
    WREG(o_b, "attn1.to_out.0.bias", WK_BF16, 0, b, DIM);
    WREG(nq, "attn1.norm_q.weight", WK_BF16, 1, 0.1, DIM);
    WREG(nk, "attn1.norm_k.weight", WK_BF16, 1, 0.1, DIM);
    WREG(q2_w, "attn2.to_q.weight", WK_BF16, 0, sd, DIM, DIM);
    WREG(q2_b, "attn2.to_q.bias", WK_BF16, 0, b, DIM);
    WREG(k2_w, "attn2.to_k.weight", WK_BF16, 0, sd, DIM, DIM);
    WREG(k2_b, "attn2.to_k.bias", WK_BF16, 0, b, DIM);
    WREG(v2_w, "attn2.to_v.weight", WK_BF16, 0, sd, DIM, DIM);
    WREG(v2_b, "attn2.to_v.bias", WK_BF16, 0, b, DIM);
    WREG(o2_w, "attn2.to_out.0.weight", WK_BF16, 0, sd, DIM, DIM);
    WREG(o2_b, "attn2.to_out.0.bias", WK_BF16, 0, b, DIM);
    WREG(nq2, "attn2.norm_q.weight", WK_BF16, 1, 0.1, DIM);
    WREG(nk2, "attn2.norm_k.weight", WK_BF16, 1, 0.1, DIM);
    WREG(n2_w, "norm2.weight", WK_F32, 1, 0.1, DIM);
    WREG(n2_b, "norm2.bias", WK_F32, 0, b, DIM);
    WREG(f1_w, "ffn.net.0.proj.weight", WK_BF16, 0, sd, FFN, DIM);
    WREG(f1_b, "ffn.net.0.proj.bias", WK_BF16, 0, b, FFN);
    WREG(f2_w, "ffn.net.2.weight", WK_BF16, 0, sf, DIM, FFN);
    WREG(f2_b, "ffn.net.2.bias", WK_BF16, 0, b, DIM);
    WREG(table, "scale_shift_table", WK_F32, 0, 0.05, 1, 6, DIM);
}

static void register_weights(void) {
    static char names[MAX_CONVS][2][48];
    if (G.parts & (P_CHECK | P_BLOCK | P_ADD)) register_block();
    if (G.parts & P_GEMM) {
        const int64_t s[2] = {G.s.gemm, G.s.gemm};
        wreg(&G.gw_dev, &G.gw_host, "gemm.weight", WK_BF16, 0, 1.0 / sqrt((double)G.s.gemm), 2, s);
    }
    for (int c = 0; c < MAX_CONVS && (G.parts & P_VAE); c++) {
        const int64_t C = G.s.conv[c].C, sw[5] = {C, C, 3, 3, 3}, sb[1] = {C};
        snprintf(names[c][0], sizeof names[c][0], "conv%d.weight", c);
        snprintf(names[c][1], sizeof names[c][1], "conv%d.bias", c);
        wreg(&G.cw_dev[c], &G.cw_host[c], names[c][0], WK_F32, 0, 1.0 / sqrt(27.0 * (double)C), 5,
             sw);
        wreg(&G.cb_dev[c], &G.cb_host[c], names[c][1], WK_F32, 0, 0.02, 1, sb);
    }
}

/* One host block, filled; one device block, uploaded once; the tensors pointed at them. */
static wf_status build_weights(wk_backend *be, wf_err *err) {
    size_t off[MAX_W], total = 0;
    for (int i = 0; i < G.nw; i++) {
        off[i] = total;
        total += (wk_tensor_nbytes(G.w_host[i]) + 255) / 256 * 256;
    }
    G.w_bytes = total;
    if (!total) return WF_OK;
    if (!(G.wh_base = aligned_alloc(256, total)))
        return wf_fail(err, WF_ENOMEM, "bench_gpu: cannot allocate %.1f MiB of host weights",
                       bu_mib((double)total));
    for (int i = 0; i < G.nw; i++) {
        G.w_host[i]->data = (char *)G.wh_base + off[i];
        fill_random(G.w_host[i]->data, G.w_host[i]->dtype, (size_t)wk_tensor_numel(G.w_host[i]),
                    G.w_mean[i], G.w_std[i], bu_name_seed(G.w_name[i]));
    }
    wf_status st = wk_backend_alloc(be, total, &G.wd_base, err);
    if (st) return st;
    for (int i = 0; i < G.nw; i++) {
        G.w_dev[i]->data = (char *)G.wd_base + off[i];
        G.w_dev[i]->device = be->device;
    }
    wk_tensor all = wk_tensor_1d(WK_BF16, G.wd_base, (int64_t)(total / 2));
    return wk_upload(be, &all, G.wh_base, err);
}

/* ------------------------------------------------------------------------------------------ */
/* the DiT block (dit_forward.c's block_forward on the fused ops) */

static wk_tensor heads_of(const wk_tensor *t) { /* [L, D] seen as [L, NH, HD] */
    wk_tensor v = *t;
    v.ndim = 3;
    v.shape[1] = NH;
    v.shape[2] = HD;
    return v;
}

static wk_tensor rows_of(const wk_tensor *t, int64_t n) { /* the first n rows */
    wk_tensor v = *t;
    v.shape[0] = n;
    return v;
}

static wk_tensor table_row(const wk_tensor *t, int64_t j) { /* [1, 6, D] -> chunk j [1, D] */
    wk_tensor v = *t;
    v.ndim = 2;
    v.shape[0] = 1;
    v.shape[1] = DIM;
    v.shape[2] = 1;
    v.data = (char *)t->data + (size_t)(j * DIM) * wk_dtype_size(t->dtype);
    return v;
}

/* shift = proj[j0] + table[j0]; scale1 = proj[j0+1] + table[j0+1] + 1; gate = ... [j0+2] */
static wf_status modulation(wk_backend *be, const blk_w *w, blk_a *a, int j0, wf_err *err) {
    wf_status st = WF_OK;
    wk_tensor r0 = table_row(&w->table, j0), r1 = table_row(&w->table, j0 + 1),
              r2 = table_row(&w->table, j0 + 2);
    WF_TRY(wk_add(be, &a->shift, &a->tproj[j0], &r0, err));
    WF_TRY(wk_add(be, &a->scale1, &a->tproj[j0 + 1], &r1, err));
    WF_TRY(wk_add(be, &a->scale1, &a->scale1, &a->one, err));
    WF_TRY(wk_add(be, &a->gate, &a->tproj[j0 + 2], &r2, err));
out:
    return st;
}

static wf_status attend(wk_backend *be, const wk_tensor *o, const wk_tensor *q, const wk_tensor *k,
                        const wk_tensor *v, wf_err *err) {
    wk_tensor o3 = heads_of(o), q3 = heads_of(q), k3 = heads_of(k), v3 = heads_of(v);
    return wk_attention(be, &o3, &q3, &k3, &v3, (float)(1.0 / sqrt((double)HD)), 0, NULL, err);
}

/* x = x + gate_msa * attn1(LN1(x) (1 + scale) + shift) */
static wf_status self_attention(wk_backend *be, const blk_w *w, blk_a *a, wf_err *err) {
    wf_status st = WF_OK;
    WF_TRY(modulation(be, w, a, 0, err));
    WF_TRY(wk_ln_modulate(be, &a->n, &a->x, &a->scale1, &a->shift, EPS, err)); /* [L, D] */
    WF_TRY(wk_matmul(be, &a->q, &a->n, &w->q_w, &w->q_b, err));                /* [L, D] */
    WF_TRY(wk_matmul(be, &a->k, &a->n, &w->k_w, &w->k_b, err));
    WF_TRY(wk_matmul(be, &a->v, &a->n, &w->v_w, &w->v_b, err));
    wk_tensor q3 = heads_of(&a->q), k3 = heads_of(&a->k); /* [L, NH, HD] */
    WF_TRY(wk_rms_norm_rope(be, &q3, &q3, &w->nq, &a->cos, &a->sin, EPS, err));
    WF_TRY(wk_rms_norm_rope(be, &k3, &k3, &w->nk, &a->cos, &a->sin, EPS, err));
    WF_TRY(attend(be, &a->o, &a->q, &a->k, &a->v, err));
    WF_TRY(wk_matmul(be, &a->q, &a->o, &w->o_w, &w->o_b, err));
    WF_TRY(wk_gate_residual(be, &a->x, &a->q, &a->gate, err));
out:
    return st;
}

/* x = x + attn2(LN2_affine(x), ctx) */
static wf_status cross_attention(wk_backend *be, const blk_w *w, blk_a *a, wf_err *err) {
    wf_status st = WF_OK;
    WF_TRY(wk_layer_norm(be, &a->n, &a->x, &w->n2_w, &w->n2_b, EPS, err));
    WF_TRY(wk_matmul(be, &a->q, &a->n, &w->q2_w, &w->q2_b, err));    /* [L, D] */
    WF_TRY(wk_matmul(be, &a->k2, &a->ctx, &w->k2_w, &w->k2_b, err)); /* [Lt, D] */
    WF_TRY(wk_matmul(be, &a->v2, &a->ctx, &w->v2_w, &w->v2_b, err));
    WF_TRY(wk_rms_norm(be, &a->q, &a->q, &w->nq2, EPS, err));
    WF_TRY(wk_rms_norm(be, &a->k2, &a->k2, &w->nk2, EPS, err));
    WF_TRY(attend(be, &a->o, &a->q, &a->k2, &a->v2, err));
    WF_TRY(wk_matmul(be, &a->q, &a->o, &w->o2_w, &w->o2_b, err));
    WF_TRY(wk_add(be, &a->x, &a->x, &a->q, err));
out:
    return st;
}

/* x = x + c_gate * ffn(LN3(x) (1 + c_scale) + c_shift), GELU-tanh as the GEMM's epilogue */
static wf_status feed_forward(wk_backend *be, const blk_w *w, blk_a *a, wf_err *err) {
    wf_status st = WF_OK;
    WF_TRY(modulation(be, w, a, 3, err));
    WF_TRY(wk_ln_modulate(be, &a->n, &a->x, &a->scale1, &a->shift, EPS, err));
    WF_TRY(wk_matmul_gelu(be, &a->ffh, &a->n, &w->f1_w, &w->f1_b, err)); /* [L, FF] */
    WF_TRY(wk_matmul(be, &a->q, &a->ffh, &w->f2_w, &w->f2_b, err));      /* [L, D] */
    WF_TRY(wk_gate_residual(be, &a->x, &a->q, &a->gate, err));
out:
    return st;
}

static wf_status block_forward(wk_backend *be, const blk_w *w, blk_a *a, wf_err *err) {
    wf_status st;
    if ((st = self_attention(be, w, a, err))) return st;
    if ((st = cross_attention(be, w, a, err))) return st;
    return feed_forward(be, w, a, err);
}

/* The block's 10 GEMMs alone, on the same tensors. */
static wf_status block_gemms(wk_backend *be, const blk_w *w, blk_a *a, wf_err *err) {
    wf_status st = WF_OK;
    WF_TRY(wk_matmul(be, &a->q, &a->n, &w->q_w, &w->q_b, err));
    WF_TRY(wk_matmul(be, &a->k, &a->n, &w->k_w, &w->k_b, err));
    WF_TRY(wk_matmul(be, &a->v, &a->n, &w->v_w, &w->v_b, err));
    WF_TRY(wk_matmul(be, &a->q, &a->o, &w->o_w, &w->o_b, err));
    WF_TRY(wk_matmul(be, &a->q, &a->n, &w->q2_w, &w->q2_b, err));
    WF_TRY(wk_matmul(be, &a->k2, &a->ctx, &w->k2_w, &w->k2_b, err));
    WF_TRY(wk_matmul(be, &a->v2, &a->ctx, &w->v2_w, &w->v2_b, err));
    WF_TRY(wk_matmul(be, &a->q, &a->o, &w->o2_w, &w->o2_b, err));
    WF_TRY(wk_matmul_gelu(be, &a->ffh, &a->n, &w->f1_w, &w->f1_b, err));
    WF_TRY(wk_matmul(be, &a->q, &a->ffh, &w->f2_w, &w->f2_b, err));
out:
    return st;
}

/* The block's 2 attentions alone (self over L, cross against the Lt text tokens). */
static wf_status block_attn(wk_backend *be, blk_a *a, wf_err *err) {
    wf_status st = attend(be, &a->o, &a->q, &a->k, &a->v, err);
    return st ? st : attend(be, &a->o, &a->q, &a->k2, &a->v2, err);
}

static double block_gemm_flops(double L) {
    const double D = DIM, FF = FFN, Lt = LT;
    return 2 * L * D * D * 4 + 2 * L * D * D * 2 + 2 * Lt * D * D * 2 + 2 * L * D * FF * 2;
}
static double block_attn_flops(double L) { return 4 * L * L * DIM + 4 * L * LT * DIM; }

/* The block's activations of L tokens from arena ar. */
static wf_status blk_acts(wk_arena *ar, int64_t L, blk_a *a, wf_err *err) {
    wf_status st = WF_OK;
    a->L = L;
    wk_tensor *ld[6] = {&a->x, &a->n, &a->q, &a->k, &a->v, &a->o};
    for (int i = 0; i < 6; i++)
        WF_TRY(WK_ARENA_F32(ar, ld[i], err, L, DIM));
    WF_TRY(WK_ARENA_F32(ar, &a->ffh, err, L, FFN));
    WF_TRY(WK_ARENA_F32(ar, &a->ctx, err, LT, DIM));
    WF_TRY(WK_ARENA_F32(ar, &a->k2, err, LT, DIM));
    WF_TRY(WK_ARENA_F32(ar, &a->v2, err, LT, DIM));
    for (int j = 0; j < 6; j++)
        WF_TRY(WK_ARENA_F32(ar, &a->tproj[j], err, 1, DIM));
    WF_TRY(WK_ARENA_F32(ar, &a->shift, err, 1, DIM));
    WF_TRY(WK_ARENA_F32(ar, &a->scale1, err, 1, DIM));
    WF_TRY(WK_ARENA_F32(ar, &a->gate, err, 1, DIM));
    WF_TRY(WK_ARENA_F32(ar, &a->one, err, 1));
    WF_TRY(WK_ARENA_F32(ar, &a->cos, err, L, HD));
    WF_TRY(WK_ARENA_F32(ar, &a->sin, err, L, HD));
out:
    return st;
}

/* The block's inputs: x = x0's first L rows, the text, the time projection, 1, the rotary tables
 * of the first L tokens of the 720p grid. */
static wf_status blk_inputs(wk_backend *be, blk_a *a, wf_err *err) {
    wf_status st = WF_OK;
    const float one = 1.0f;
    float *cs = malloc((size_t)(a->L * HD) * 2 * sizeof *cs);
    if (!cs) return wf_fail(err, WF_ENOMEM, "bench_gpu: no memory for the rotary tables");
    WF_TRY(wk_rope_table_3d_rows(cs, cs + a->L * HD, GRID_F, GRID_H, GRID_W, HD, 10000.0, 0, a->L,
                                 err));
    WF_TRY(wk_upload(be, &a->cos, cs, err));
    WF_TRY(wk_upload(be, &a->sin, cs + a->L * HD, err));
    WF_TRY(wk_upload(be, &a->x, G.h_x0, err));
    WF_TRY(wk_upload(be, &a->ctx, G.h_ctx, err));
    for (int j = 0; j < 6; j++)
        WF_TRY(wk_upload(be, &a->tproj[j], G.h_tproj + j * DIM, err));
    WF_TRY(wk_upload(be, &a->one, &one, err));
    WF_TRY(wk_sync(be, err)); /* cs is freed below */
out:
    free(cs);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* rows */

static grow *add_row(int kind, const char *what, const char *shape, int reps, double flops1) {
    WF_ASSERT(G.nrows < MAX_ROWS);
    grow *g = &G.rows[G.nrows++];
    memset(g, 0, sizeof *g);
    g->kind = kind;
    g->reps = reps;
    g->flops1 = flops1;
    g->ms = g->peer_ms = NAN;
    snprintf(g->what, sizeof g->what, "%s", what);
    snprintf(g->shape, sizeof g->shape, "%s", shape);
    return g;
}

static void add_attn_rows(int p) {
    char shape[48];
    for (int i = 0; i < 2; i++) {
        const int64_t L = G.s.attn_L[i];
        const double f = 4.0 * (double)L * (double)L * NH * HD;
        snprintf(shape, sizeof shape, "L%lld NH%d HD%d", (long long)L, NH, HD);
        grow *g = add_row(R_ATTN, p ? "attention (own)" : "attention (cudnn)", shape,
                          f < 1e13 ? 4 : 1, f);
        g->L = L;
        g->path = p;
    }
}

static void add_block_rows(void) {
    char shape[48];
    if (G.parts & P_CHECK)
        for (int p = 0; p < 2; p++) {
            const int64_t L = G.s.check_L;
            snprintf(shape, sizeof shape, "L%lld D%d FF%d Lt%d", (long long)L, DIM, FFN, LT);
            grow *g = add_row(R_CHECK, p ? "block fp32 vs cpu" : "block bf16 vs cpu", shape, 1,
                              block_gemm_flops((double)L) + block_attn_flops((double)L));
            g->L = L;
            g->path = p;
        }
    for (int i = 0; i < 2 && (G.parts & P_BLOCK); i++) {
        const double L = (double)G.s.block_L[i];
        snprintf(shape, sizeof shape, "L%lld D%d FF%d Lt%d", (long long)L, DIM, FFN, LT);
        /* the whole block first: the GEMM-only and attention-only rows then run on its data */
        add_row(R_BLOCK, "dit block", shape, 1, block_gemm_flops(L) + block_attn_flops(L))->L =
            (int64_t)L;
        add_row(R_BGEMM, "  block: its 10 GEMMs", shape, 1, block_gemm_flops(L))->L = (int64_t)L;
        add_row(R_BATTN, "  block: its 2 attentions", shape, 1, block_attn_flops(L))->L =
            (int64_t)L;
    }
}

/* The table's rows, in the order they run (the GEMM first: it is the peak). */
static void make_rows(void) {
    char shape[48];
    const double M = (double)G.s.gemm;
    G.gemm_row = G.conv_row = -1;
    if (G.parts & P_GEMM) {
        snprintf(shape, sizeof shape, "M=K=N=%lld", (long long)G.s.gemm);
        G.gemm_row = G.nrows;
        add_row(R_GEMM, "matmul bf16 (peak)", shape, M >= 8192 ? 8 : 32, 2 * M * M * M);
        add_row(R_CONVERT, "  x f32->bf16 (convert)", shape, 32, 0)->bytes1 = M * M * 6;
    }
    if (G.parts & P_ATTN) add_attn_rows(0);
    add_block_rows();
    if (G.parts & P_ADD) {
        const int64_t L = G.s.block_L[1];
        snprintf(shape, sizeof shape, "[%lld, %d] f32", (long long)L, DIM);
        grow *g = add_row(R_ADD, "elementwise add", shape, 8, 0);
        g->L = L;
        g->bytes1 = 3.0 * (double)L * DIM * 4;
    }
    for (int c = 0; c < MAX_CONVS && (G.parts & P_VAE); c++) {
        const conv_shape *k = &G.s.conv[c];
        snprintf(shape, sizeof shape, "T%lld %lldx%lld C%lld", (long long)k->T, (long long)k->H,
                 (long long)k->W, (long long)k->C);
        if (c == 0) G.conv_row = G.nrows;
        grow *g = add_row(R_CONV, "vae conv3d 3x3x3 (no VAE run)", shape, 2,
                          2.0 * (double)(k->T * k->H * k->W) * (double)(k->C * k->C) * 27);
        g->conv = c;
    }
    /* the cost file is written once the rows before here ran; our own attention kernel, the
     * slowest rows, runs last, so that a part budget that runs out spends it there */
    G.cost_row = G.nrows - 1;
    if (G.parts & P_ATTN) add_attn_rows(1);
}

/* ------------------------------------------------------------------------------------------ */
/* the plug-in: flags and init (the backends) */

static int parse_parts(const char *v, void *dst) {
    static const char *const names[] = {"gemm", "attn", "check", "block", "add", "vae"};
    int on[6] = {0};
    if (bn_pick_rows(v, names, 6, on)) return -1;
    unsigned p = 0;
    for (int i = 0; i < 6; i++)
        p |= on[i] ? 1u << i : 0;
    *(unsigned *)dst = p;
    return 0;
}

/* A CUDA backend with WANFARM_CUDA_ATTN set to path (NULL: as the environment has it). */
static wf_status cuda_with_attn(wk_backend **be, const char *path, wk_precision p, wf_err *err) {
    char old[64] = "";
    const char *o = getenv("WANFARM_CUDA_ATTN");
    const int had = o != NULL;
    if (had) snprintf(old, sizeof old, "%s", o);
    if (path) setenv("WANFARM_CUDA_ATTN", path, 1);
    wf_status st = wk_backend_cuda_new(be, G.device, p, err);
    if (path && had)
        setenv("WANFARM_CUDA_ATTN", old, 1);
    else if (path)
        unsetenv("WANFARM_CUDA_ATTN");
    return st;
}

/* The device's name and memory, through the plug-in (no CUDA library linked here). */
static void device_info(void) {
    wk_cuda_info info;
    wk_cuda_device devs[16];
    wf_err err = {0};
    snprintf(G.dev_name, sizeof G.dev_name, "device %d", G.device);
    G.dev_total = NAN;
    if (wk_cuda_devices(&info, devs, 16, &err) || G.device >= info.n_devices || G.device >= 16)
        return;
    snprintf(G.dev_name, sizeof G.dev_name, "%s (cc %d.%d, %d SMs, %.1f GiB)", devs[G.device].name,
             devs[G.device].cc_major, devs[G.device].cc_minor, devs[G.device].sm_count,
             (double)devs[G.device].total_mem / (1 << 30));
    G.dev_total = (double)devs[G.device].total_mem;
}

/* The bf16 backend (no device: "no CUDA device (...)", 77), the rows. */
static int gpu_init(bn_run *e) {
    wf_err err = {0};
    G.s = G.quick ? QUICK : FULL;
    if (!G.parts) G.parts = P_GEMM | P_ATTN | P_CHECK | P_BLOCK | P_ADD | P_VAE;
    watchdog(e, "setup (backends, random weights and inputs, uploads)", G.row_timeout);
    wf_status st = cuda_with_attn(&e->be, NULL, WK_PREC_BF16, &err);
    if (st == WF_EUNSUPPORTED) {
        const char *why = err.msg, *dup = "no CUDA device: ";
        if (!strncmp(why, dup, strlen(dup))) why += strlen(dup);
        printf("bench_gpu: no CUDA device (%s)\n", why);
        alarm(0);
        return 77;
    }
    if (st) {
        fprintf(stderr, "bench_gpu: %s: %s\n", wf_status_str(st), err.msg);
        alarm(0);
        return 1;
    }
    G.round_bf16 = e->be->precision == WK_PREC_BF16;
    device_info();
    make_rows();
    e->nrows = 0;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* setup: the other backends, weights, activations, inputs */

static size_t max_conv_elems(void) {
    size_t m = 0;
    for (int c = 0; c < MAX_CONVS; c++) {
        const conv_shape *k = &G.s.conv[c];
        size_t n = (size_t)(k->T * k->H * k->W * k->C);
        if (n > m) m = n;
    }
    return m;
}

/* Every device activation, from ar (a measuring arena first, for the size). */
static wf_status device_acts(wk_arena *ar, wf_err *err) {
    wf_status st = WF_OK;
    const int64_t M = G.s.gemm, La = G.s.attn_L[1], nc = (int64_t)max_conv_elems();
    if (G.parts & P_GEMM) {
        WF_TRY(WK_ARENA_F32(ar, &G.gx, err, M, M));
        WF_TRY(WK_ARENA_F32(ar, &G.gy, err, M, M));
        WF_TRY(wk_arena_tensor(ar, &G.gxb, WK_BF16, 2, (int64_t[]){M, M}, err));
    }
    if (G.parts & P_ATTN) {
        wk_tensor *t[4] = {&G.aq, &G.ak, &G.av, &G.ao};
        for (int i = 0; i < 4; i++)
            WF_TRY(WK_ARENA_F32(ar, t[i], err, La, NH, HD));
    }
    for (int i = 0; i < 2 && (G.parts & (P_BLOCK | P_ADD)); i++)
        if (i == 1 || (G.parts & P_BLOCK)) WF_TRY(blk_acts(ar, G.s.block_L[i], &G.ba[i], err));
    if (G.parts & P_CHECK) WF_TRY(blk_acts(ar, G.s.check_L, &G.bchk, err));
    if (G.parts & P_VAE) {
        WF_TRY(WK_ARENA_F32(ar, &G.cx, err, nc));
        WF_TRY(WK_ARENA_F32(ar, &G.cy, err, nc));
    }
out:
    return st;
}

/* Host inputs (random, kept for the references) and their uploads. */
static wf_status host_inputs(wk_backend *be, wf_err *err) {
    wf_status st = WF_OK;
    const size_t M = (size_t)G.s.gemm, La = (size_t)G.s.attn_L[1] * DIM;
    const size_t Lb = (size_t)(G.s.block_L[1] > G.s.check_L ? G.s.block_L[1] : G.s.check_L);
    if (G.parts & P_GEMM) {
        if (!(G.h_gx = host_random(M * M, 1.0, "gemm.x"))) goto oom;
        WF_TRY(wk_upload(be, &G.gx, G.h_gx, err));
    }
    if (G.parts & P_ATTN) {
        if (!(G.h_aq = host_random(La, 1.0, "q")) || !(G.h_ak = host_random(La, 1.0, "k")) ||
            !(G.h_av = host_random(La, 1.0, "v")))
            goto oom;
        WF_TRY(wk_upload(be, &G.aq, G.h_aq, err));
        WF_TRY(wk_upload(be, &G.ak, G.h_ak, err));
        WF_TRY(wk_upload(be, &G.av, G.h_av, err));
    }
    if (G.parts & (P_BLOCK | P_CHECK | P_ADD)) {
        if (!(G.h_x0 = host_random(Lb * DIM, 1.0, "x")) ||
            !(G.h_ctx = host_random((size_t)LT * DIM, 1.0, "context")) ||
            !(G.h_tproj = host_random((size_t)6 * DIM, 0.3, "timestep_proj")))
            goto oom;
        for (int i = 0; i < 2; i++)
            if (G.ba[i].x.data) WF_TRY(blk_inputs(be, &G.ba[i], err));
        if (G.parts & P_CHECK) WF_TRY(blk_inputs(be, &G.bchk, err));
    }
    if (G.parts & P_VAE) {
        if (!(G.h_cx = host_random(max_conv_elems(), 1.0, "conv.x"))) goto oom;
        WF_TRY(wk_upload(be, &G.cx, G.h_cx, err));
    }
    WF_TRY(wk_sync(be, err));
out:
    return st;
oom:
    return wf_fail(err, WF_ENOMEM, "bench_gpu: out of host memory for the random inputs");
}

/* The attention-path and fp32 backends (a failure fails their rows, not the bench). */
static void other_backends(void) {
    static const char *path[2] = {"cudnn", "own"};
    wf_err err = {0};
    for (int p = 0; p < 2 && (G.parts & P_ATTN); p++)
        if (cuda_with_attn(&G.att_be[p], path[p], WK_PREC_BF16, &err))
            snprintf(G.att_why[p], sizeof G.att_why[p], "%.290s", err.msg);
    if ((G.parts & P_CHECK) && cuda_with_attn(&G.fp32_be, NULL, WK_PREC_FP32, &err))
        snprintf(G.fp32_why, sizeof G.fp32_why, "%.290s", err.msg);
}

static wf_status gpu_setup(bn_run *e, wf_err *err) {
    wf_status st = WF_OK;
    wk_arena meas;
    double t0 = bu_now_s();
    WF_TRY(wk_backend_cpu_new(&G.cpu, e->o.threads, err));
    e->o.threads = G.cpu->nthreads;
    other_backends();
    register_weights();
    WF_TRY(build_weights(e->be, err));
    wk_arena_init_measure(&meas, "bench_gpu activations");
    WF_TRY(device_acts(&meas, err));
    WF_TRY(wk_arena_init_on(&G.ar, e->be, "bench_gpu activations", meas.peak, err));
    WF_TRY(device_acts(&G.ar, err));
    WF_TRY(host_inputs(e->be, err));
    e->nrows = G.nrows;
out:
    printf("# bench_gpu: wanfarm CUDA backend (%s), %s; precision %s, row quantum %d\n",
           e->be->name, G.dev_name, wk_precision_name(e->be->precision), e->be->row_quantum);
    printf("# shapes %s; warm-up %d, iters %d (time = median per launch; a timed call is `reps` "
           "launches + wk_sync)\n",
           G.quick ? "--quick (small)" : "full (A14B, 720p)", e->o.warm, e->o.iters);
    printf("# memory: weights %.1f MiB (one upload), activations %.1f MiB (one device arena); "
           "setup %.1f s\n",
           bu_mib((double)G.w_bytes), bu_mib((double)G.ar.cap), bu_now_s() - t0);
    for (int p = 0; p < 2; p++)
        if (G.att_why[p][0]) printf("# attention backend %d failed: %s\n", p, G.att_why[p]);
    if (G.fp32_why[0]) printf("# fp32 backend failed: %s\n", G.fp32_why);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* the peer */

/* WANFARM_TORCH_PYTHON, ~/.venvs/ref/bin/python, else python3 on the PATH: one that imports
 * torch. 0, or -1 and why. */
static int peer_python(char *py, size_t n, char *why, size_t nwhy) {
    if (bu_find_python("torch", py, n, why, nwhy) == 0) return 0;
    const char *env = getenv("WANFARM_TORCH_PYTHON");
    if (env && *env) return -1; /* chosen explicitly and unusable: say so */
    snprintf(py, n, "python3");
    if (system("python3 -c 'import torch' >/dev/null 2>&1") != 0) {
        snprintf(why, nwhy, "neither ~/.venvs/ref/bin/python nor python3 can import torch");
        return -1;
    }
    return 0;
}

static void peer_args(const bn_run *e, char *a, size_t n) {
    size_t k = (size_t)snprintf(a, n, "--warmup %d --iters %d", e->o.warm, e->o.iters);
    if (G.parts & P_GEMM)
        k += (size_t)snprintf(a + k, n - k, " --gemm %lld,%lld,%lld", (long long)G.s.gemm,
                              (long long)G.s.gemm, (long long)G.s.gemm);
    for (int i = 0; i < 2 && (G.parts & P_ATTN) && k < n; i++)
        k += (size_t)snprintf(a + k, n - k, " --attn %lld,%d,%d", (long long)G.s.attn_L[i], NH, HD);
    for (int c = 0; c < MAX_CONVS && (G.parts & P_VAE) && k < n; c++) {
        const conv_shape *s = &G.s.conv[c];
        k += (size_t)snprintf(a + k, n - k, " --conv %lld,%lld,%lld,%lld,%lld", (long long)s->T,
                              (long long)s->H, (long long)s->W, (long long)s->C, (long long)s->C);
    }
}

/* One peer line onto the rows it times. */
static void peer_line(json_t *o) {
    const char *what = json_string_value(json_object_get(o, "what"));
    const double ms = bu_json_num_or_nan(o, "ms");
    if (!what) return;
    if (json_object_get(o, "error") && !G.peer_err[0])
        snprintf(G.peer_err, sizeof G.peer_err, "%s: %.250s", what,
                 json_string_value(json_object_get(o, "error")));
    for (int i = 0; i < G.nrows; i++) {
        grow *g = &G.rows[i];
        const conv_shape *c = &G.s.conv[g->conv];
        if ((g->kind == R_GEMM && !strcmp(what, "matmul")) ||
            (g->kind == R_ATTN && !strcmp(what, "sdpa") &&
             bu_json_num_or_nan(o, "L") == (double)g->L) ||
            (g->kind == R_CONV && !strcmp(what, "conv3d") &&
             bu_json_num_or_nan(o, "H") == (double)c->H &&
             bu_json_num_or_nan(o, "Cin") == (double)c->C))
            g->peer_ms = ms;
    }
    if (!strcmp(what, "matmul")) G.peer_gemm_only_ms = bu_json_num_or_nan(o, "ms_gemm");
}

static void gpu_peer(bn_run *e, char *detail, size_t n) {
    char py[1100], args[1200];
    bu_peer *p = &e->peer;
    watchdog(e, "the PyTorch peer (bench/torch_gpu_peer.py)", G.row_timeout);
    if (peer_python(py, sizeof py, p->why, sizeof p->why)) return;
    peer_args(e, args, sizeof args);
    json_t *lines = bu_run_peer(py, WANFARM_BENCH_DIR, "torch_gpu_peer.py", args, e->o.threads,
                                "torch", p->why, sizeof p->why);
    alarm(0);
    if (!lines) return;
    size_t i;
    json_t *o;
    json_array_foreach(lines, i, o) {
        peer_line(o);
        if (json_object_get(o, "torch")) {
            bu_json_str_copy(o, "torch", p->torch, sizeof p->torch);
            bu_json_str_copy(o, "sdpa_enabled", G.peer_sdpa, sizeof G.peer_sdpa);
        }
    }
    json_decref(lines);
    p->ran = 1;
    snprintf(detail, n,
             "bench/torch_gpu_peer.py: bf16, CUDA-event medians; SDPA backends enabled: "
             "%s%s%s",
             G.peer_sdpa, G.peer_err[0] ? "; FAILED " : "", G.peer_err);
}

/* ------------------------------------------------------------------------------------------ */
/* one timed call */

static wk_backend *row_backend(bn_run *e, const grow *g) {
    if (g->kind == R_ATTN) return G.att_be[g->path];
    if (g->kind == R_CHECK && g->path) return G.fp32_be;
    return e->be;
}

static wf_status attn_once(wk_backend *be, const grow *g, wf_err *err) {
    wk_tensor q = rows_of(&G.aq, g->L), k = rows_of(&G.ak, g->L), v = rows_of(&G.av, g->L),
              o = rows_of(&G.ao, g->L);
    return wk_attention(be, &o, &q, &k, &v, (float)(1.0 / sqrt((double)HD)), 0, NULL, err);
}

/* conv row c: x, y [1, T, H, W, C] views of the shared buffers; WanCausalConv3d's padding. */
static wf_status conv_once(wk_backend *be, int c, wf_err *err) {
    const conv_shape *k = &G.s.conv[c];
    wk_tensor x = wk_tensor_5d(WK_F32, G.cx.data, 1, k->T, k->H, k->W, k->C);
    wk_tensor y = wk_tensor_5d(WK_F32, G.cy.data, 1, k->T, k->H, k->W, k->C);
    x.device = y.device = be->device;
    const wk_conv_params p = {.stride = {1, 1, 1}, .pad = {{2, 0}, {1, 1}, {1, 1}}};
    return wk_conv3d(be, &y, &x, &G.cw_dev[c], &G.cb_dev[c], &p, err);
}

static wf_status run_once(bn_run *e, const grow *g, wk_backend *be, wf_err *err) {
    blk_a *a = g->kind == R_CHECK ? &G.bchk : &G.ba[g->L == G.s.block_L[0] ? 0 : 1];
    wf_status st;
    switch (g->kind) {
    case R_GEMM: return wk_matmul(be, &G.gy, &G.gx, &G.gw_dev, NULL, err);
    case R_CONVERT: return wk_convert(be, &G.gxb, &G.gx, err);
    case R_ATTN: return attn_once(be, g, err);
    case R_CHECK: /* one block on x0 (the upload is timed too: a check row) */
        if ((st = wk_upload(be, &a->x, G.h_x0, err))) return st;
        return block_forward(be, &G.bw_dev, a, err);
    case R_BGEMM: return block_gemms(be, &G.bw_dev, a, err);
    case R_BATTN: return block_attn(be, a, err);
    case R_BLOCK: return block_forward(be, &G.bw_dev, a, err);
    case R_ADD: return wk_add(be, &G.ba[1].o, &G.ba[1].q, &G.ba[1].k, err);
    case R_CONV: return conv_once(be, g->conv, err);
    }
    (void)e;
    return wf_fail(err, WF_EINVAL, "bench_gpu: row kind %d", g->kind);
}

static wf_status gpu_run(bn_run *e, int i, int call, wf_err *err) {
    (void)call;
    const grow *g = &G.rows[i];
    wk_backend *be = row_backend(e, g);
    if (!be)
        return wf_fail(err, WF_EUNSUPPORTED, "bench_gpu: no backend for this row: %s",
                       g->kind == R_ATTN ? G.att_why[g->path] : G.fp32_why);
    wf_status st = WF_OK;
    for (int k = 0; k < g->reps && !st; k++)
        st = run_once(e, g, be, err);
    return st ? st : wk_sync(be, err);
}

static wf_status gpu_row(bn_run *e, int i, bn_row *r, wf_err *err) {
    (void)err;
    grow *g = &G.rows[i];
    char part[160];
    snprintf(r->cell[0], BN_CELL, "%s", g->what);
    snprintf(r->cell[1], BN_CELL, "%s", g->shape);
    r->flops = g->flops1 * g->reps;
    r->torch_ms = g->peer_ms;
    r->arena_mib = bu_mib((double)G.ar.cap);
    snprintf(part, sizeof part, "row %d (%s %s)", i, g->what, g->shape);
    watchdog(e, part, G.row_timeout);
    return WF_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* the checks */

/* e_i over n (ours, ref) pairs: the count above tol (NaN counts), the largest e_i. */
static long norm_errors(const double *ours, const double *ref, int n, double tol, double *emax) {
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += ref[i] * ref[i];
    const double rms = sqrt(ss / (n ? n : 1));
    long bad = 0;
    *emax = 0;
    for (int i = 0; i < n; i++) {
        double e = fabs(ours[i] - ref[i]) / (rms > 0 ? rms : 1);
        if (!(e <= tol)) bad++;
        if (!(e <= *emax)) *emax = e; /* NaN sticks */
    }
    return bad;
}

/* The whole output t downloaded into G.h_out (grown as needed); NULL after setting r's error. */
static float *download_out(bn_run *e, const wk_tensor *t, bn_row *r) {
    wf_err err = {0};
    const size_t n = (size_t)wk_tensor_numel(t);
    if (n > G.h_out_n) {
        free(G.h_out);
        G.h_out_n = 0;
        if (!(G.h_out = malloc(n * sizeof *G.h_out))) {
            snprintf(r->err, sizeof r->err, "check: no host memory for %zu values", n);
            return NULL;
        }
        G.h_out_n = n;
    }
    if (wk_download(e->be, G.h_out, t, &err)) {
        snprintf(r->err, sizeof r->err, "check: download: %.400s", err.msg);
        return NULL;
    }
    return G.h_out;
}

enum { NS_GEMM = 64, NS_ATTN = 16, NS_CONV = 32 };

static void check_gemm(bn_run *e, bn_row *r) {
    const int64_t K = G.s.gemm, N = G.s.gemm;
    const float *y = download_out(e, &G.gy, r);
    double ours[NS_GEMM], ref[NS_GEMM];
    uint64_t s = 12345;
    if (!y) return;
    for (int i = 0; i < NS_GEMM; i++) {
        int64_t m = (int64_t)(bu_rng_uniform(&s) * (double)K),
                n = (int64_t)(bu_rng_uniform(&s) * (double)N);
        double acc = 0;
        for (int64_t k = 0; k < K; k++)
            acc += bf(G.h_gx[m * K + k]) * val(&G.gw_host, (size_t)(n * K + k));
        ours[i] = y[m * N + n];
        ref[i] = acc;
    }
    r->wrong =
        norm_errors(ours, ref, NS_GEMM, TOL_GEMM, &r->error) + count_nonfinite(y, (size_t)(K * N));
    r->ref = "cpu double";
}

static void check_convert(bn_run *e, bn_row *r) {
    wf_err err = {0};
    const size_t n = (size_t)wk_tensor_numel(&G.gxb);
    uint16_t *h = malloc(n * sizeof *h);
    if (!h || wk_download(e->be, h, &G.gxb, &err)) {
        snprintf(r->err, sizeof r->err, "check: %.400s", h ? err.msg : "out of memory");
        free(h);
        return;
    }
    for (size_t i = 0; i < n; i++)
        r->wrong += h[i] != wk_f32_to_bf16(G.h_gx[i]);
    r->error = 0;
    r->ref = "dtype.h RNE";
    free(h);
}

/* One query row (l, h) of softmax(scale q k^T) v in double over the bf16-rounded inputs. */
static void attn_ref_row(int64_t L, int64_t l, int64_t h, double *out) {
    const double scale = 1.0 / sqrt((double)HD);
    double *p = malloc((size_t)L * sizeof *p), mx = -INFINITY, sum = 0;
    if (!p) {
        for (int d = 0; d < HD; d++)
            out[d] = NAN;
        return;
    }
    const float *q = G.h_aq + (l * NH + h) * HD;
    for (int64_t j = 0; j < L; j++) {
        const float *k = G.h_ak + (j * NH + h) * HD;
        double s = 0;
        for (int d = 0; d < HD; d++)
            s += bf(q[d]) * bf(k[d]);
        p[j] = s * scale;
        if (p[j] > mx) mx = p[j];
    }
    for (int d = 0; d < HD; d++)
        out[d] = 0;
    for (int64_t j = 0; j < L; j++) {
        const double w = exp(p[j] - mx);
        const float *v = G.h_av + (j * NH + h) * HD;
        sum += w;
        for (int d = 0; d < HD; d++)
            out[d] += w * bf(v[d]);
    }
    for (int d = 0; d < HD; d++)
        out[d] /= sum;
    free(p);
}

static void check_attn(bn_run *e, const grow *g, bn_row *r) {
    wk_tensor o = rows_of(&G.ao, g->L);
    const float *y = download_out(e, &o, r);
    static double ours[NS_ATTN * HD], ref[NS_ATTN * HD];
    int64_t ls[NS_ATTN], hs[NS_ATTN];
    uint64_t s = 777 + (uint64_t)g->L;
    if (!y) return;
    for (int i = 0; i < NS_ATTN; i++) {
        ls[i] = (int64_t)(bu_rng_uniform(&s) * (double)g->L);
        hs[i] = (int64_t)(bu_rng_uniform(&s) * NH);
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < NS_ATTN; i++) {
        attn_ref_row(g->L, ls[i], hs[i], ref + i * HD);
        for (int d = 0; d < HD; d++)
            ours[i * HD + d] = y[(ls[i] * NH + hs[i]) * HD + d];
    }
    r->wrong = norm_errors(ours, ref, NS_ATTN * HD, TOL_ATTN, &r->error) +
               count_nonfinite(y, (size_t)wk_tensor_numel(&o));
    r->ref = "cpu double";
}

/* Output (t, h, w, co) of conv c in double: the 27 Cin-long window sums, causal zero padding. */
static double conv_ref(int c, int64_t t, int64_t h, int64_t w, int64_t co) {
    const conv_shape *k = &G.s.conv[c];
    const int64_t C = k->C;
    double acc = ((const float *)G.cb_host[c].data)[co];
    for (int dt = 0; dt < 3; dt++)
        for (int dh = 0; dh < 3; dh++)
            for (int dw = 0; dw < 3; dw++) {
                int64_t ti = t + dt - 2, hi = h + dh - 1, wi = w + dw - 1;
                if (ti < 0 || hi < 0 || hi >= k->H || wi < 0 || wi >= k->W) continue;
                const float *x = G.h_cx + ((ti * k->H + hi) * k->W + wi) * C;
                const float *wt =
                    (const float *)G.cw_host[c].data + co * C * 27 + dt * 9 + dh * 3 + dw;
                for (int64_t ci = 0; ci < C; ci++)
                    acc += (double)x[ci] * (double)wt[ci * 27];
            }
    return acc;
}

static void check_conv(bn_run *e, const grow *g, bn_row *r) {
    const conv_shape *k = &G.s.conv[g->conv];
    wk_tensor y = wk_tensor_1d(WK_F32, G.cy.data, k->T * k->H * k->W * k->C);
    y.device = e->be->device;
    const float *h = download_out(e, &y, r);
    double ours[NS_CONV], ref[NS_CONV];
    uint64_t s = 99 + (uint64_t)g->conv;
    if (!h) return;
    for (int i = 0; i < NS_CONV; i++) {
        int64_t t = (int64_t)(bu_rng_uniform(&s) * (double)k->T),
                hh = (int64_t)(bu_rng_uniform(&s) * (double)k->H);
        int64_t w = (int64_t)(bu_rng_uniform(&s) * (double)k->W),
                co = (int64_t)(bu_rng_uniform(&s) * (double)k->C);
        if (i < 4) hh = i & 1 ? k->H - 1 : 0; /* the padded borders */
        ref[i] = conv_ref(g->conv, t, hh, w, co);
        ours[i] = h[((t * k->H + hh) * k->W + w) * k->C + co];
    }
    r->wrong = norm_errors(ours, ref, NS_CONV, TOL_CONV, &r->error) +
               count_nonfinite(h, (size_t)wk_tensor_numel(&y));
    r->ref = "cpu double";
}

/* The same block on the CPU backend (once): host acts on x0's first L rows. */
static wf_status cpu_block(wf_err *err) {
    wf_status st = WF_OK;
    wk_arena meas;
    blk_a *a = &G.bcpu;
    if (G.cpu_done) return WF_OK;
    wk_arena_init_measure(&meas, "cpu block");
    WF_TRY(blk_acts(&meas, G.s.check_L, a, err));
    WF_TRY(wk_arena_init(&G.har, "cpu block", meas.peak, err));
    WF_TRY(blk_acts(&G.har, G.s.check_L, a, err));
    WF_TRY(blk_inputs(G.cpu, a, err));
    WF_TRY(block_forward(G.cpu, &G.bw_host, a, err));
    G.cpu_done = 1;
out:
    return st;
}

static void check_block(bn_run *e, const grow *g, bn_row *r) {
    wf_err err = {0};
    if (cpu_block(&err)) {
        snprintf(r->err, sizeof r->err, "the CPU block: %.480s", err.msg);
        r->wrong = 1;
        r->ref = "cpu";
        return;
    }
    const float *y = download_out(e, &G.bchk.x, r);
    const float *ref = G.bcpu.x.data;
    const size_t n = (size_t)wk_tensor_numel(&G.bchk.x);
    if (!y) return;
    /* on the block's update d = x_out - x0 (the residual x0 would hide a wrong branch) */
    double ss = 0, se = 0, emax = 0, tol = g->path ? TOL_BLOCK_FP32 : TOL_BLOCK_BF16;
    for (size_t i = 0; i < n; i++)
        ss += ((double)ref[i] - G.h_x0[i]) * ((double)ref[i] - G.h_x0[i]);
    const double rms = sqrt(ss / (double)n);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)y[i] - ref[i]) / rms;
        r->wrong += !(d <= tol);
        se += d * d;
        if (!(d <= emax)) emax = d;
    }
    r->error = sqrt(se / (double)n); /* ||d_gpu - d_cpu|| / ||d_cpu|| */
    r->ref = "cpu";
    snprintf(G.rows[r - e->rows].note, BN_CELL, "update rel-L2 %.1e, max e %.1e (bound %.0e)",
             r->error, emax, tol);
}

static void check_finite(bn_run *e, const grow *g, bn_row *r) {
    const float *y = download_out(e, &G.ba[g->L == G.s.block_L[0] ? 0 : 1].x, r);
    if (!y) return;
    r->wrong = count_nonfinite(y, (size_t)wk_tensor_numel(&G.ba[g->L == G.s.block_L[0] ? 0 : 1].x));
    r->error = 0;
    r->ref = "finite";
}

static void run_check(bn_run *e, const grow *g, bn_row *r) {
    switch (g->kind) {
    case R_GEMM: check_gemm(e, r); break;
    case R_CONVERT: check_convert(e, r); break;
    case R_ATTN: check_attn(e, g, r); break;
    case R_CHECK: check_block(e, g, r); break;
    case R_BLOCK: check_finite(e, g, r); break;
    case R_CONV: check_conv(e, g, r); break;
    default: break; /* the GEMM-only, attention-only and add rows: no output of their own */
    }
    if (r->err[0] && !r->ref) { /* the check itself could not run: count it */
        r->ref = "n/a";
        r->wrong++;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* after each row: per-launch time, the cells, the check, the JSON so far */

static const grow *find_row(int kind, int64_t L) {
    for (int i = 0; i < G.nrows; i++)
        if (G.rows[i].kind == kind && G.rows[i].L == L && isfinite(G.rows[i].ms)) return &G.rows[i];
    return NULL;
}

/* The block's split, on the last of its three rows: GEMMs, attention, rest = whole - both. */
static void block_split_note(grow *g) {
    const grow *bl = find_row(R_BLOCK, g->L), *gm = find_row(R_BGEMM, g->L);
    if (!bl || !gm) {
        snprintf(g->note, BN_CELL, "split n/a (the block or its GEMM-only row failed)");
        return;
    }
    const double rest = bl->ms - gm->ms - g->ms;
    snprintf(g->note, BN_CELL, "block = gemm %.0f%% + attn %.0f%% + rest %.0f%% (%.2f ms)",
             100 * gm->ms / bl->ms, 100 * g->ms / bl->ms, 100 * rest / bl->ms, rest);
}

static void fill_note(grow *g, const bn_row *r) {
    const grow *gm = G.gemm_row >= 0 ? &G.rows[G.gemm_row] : NULL;
    switch (g->kind) {
    case R_CONVERT:
        if (gm && isfinite(gm->ms) && gm->ms > g->ms) {
            G.gemm_alone_tflops = gm->flops1 / ((gm->ms - g->ms) * 1e9);
            snprintf(g->note, BN_CELL, "%.0f GB/s; GEMM alone ~%.0f TFLOP/s",
                     g->bytes1 / (g->ms * 1e6), G.gemm_alone_tflops);
        } else {
            snprintf(g->note, BN_CELL, "%.0f GB/s", g->bytes1 / (g->ms * 1e6));
        }
        break;
    case R_GEMM: snprintf(g->note, BN_CELL, "includes x f32->bf16 inside the op"); break;
    case R_ATTN:
    case R_CONV:
        if (r->ref)
            snprintf(g->note, BN_CELL, "max e %.1e (bound %.0e)", r->error,
                     g->kind == R_ATTN ? TOL_ATTN : TOL_CONV);
        break;
    case R_ADD:
        snprintf(g->note, BN_CELL, "%.0f GB/s (3 x 4 B per element)", g->bytes1 / (g->ms * 1e6));
        break;
    case R_BATTN: block_split_note(g); break;
    case R_BLOCK: snprintf(g->note, BN_CELL, "output scanned for NaN/Inf"); break;
    default: break;
    }
}

static void row_keys(const grow *g, const bn_row *r, json_t *o) {
    json_object_set_new(o, "what", json_string(g->what));
    json_object_set_new(o, "shape", json_string(g->shape));
    json_object_set_new(o, "L", g->L ? json_integer(g->L) : json_null());
    json_object_set_new(o, "reps", json_integer(g->reps));
    json_object_set_new(o, "tflops",
                        bu_real_or_null(g->flops1 > 0 ? g->flops1 / (g->ms * 1e9) : NAN));
    json_object_set_new(o, "gb_s",
                        bu_real_or_null(g->bytes1 > 0 ? g->bytes1 / (g->ms * 1e6) : NAN));
    json_object_set_new(o, "check", r->ref ? json_string(r->ref) : json_null());
    json_object_set_new(o, "wrong", r->ref ? json_integer(r->wrong) : json_null());
    json_object_set_new(o, "error", bu_real_or_null(r->ref ? r->error : NAN));
    json_object_set_new(o, "note", json_string(g->note));
    json_object_set_new(o, "failed", r->st ? json_string(r->err) : json_null());
}

static void gpu_row_json(bn_run *e, int i, const bn_row *r, json_t *jr) {
    (void)e;
    row_keys(&G.rows[i], r, jr);
}

/* The rows so far into --json (the engine writes the whole report at the end): a crash or a
 * timeout later leaves these. */
static void write_partial(bn_run *e, int upto) {
    if (!e->o.json) return;
    json_t *o = json_object(), *rows = json_array();
    json_object_set_new(o, "bench", json_string("bench_gpu"));
    json_object_set_new(o, "partial", json_true());
    json_object_set_new(o, "device", json_string(G.dev_name));
    for (int i = 0; i <= upto; i++) {
        json_t *jr = json_object();
        row_keys(&G.rows[i], &e->rows[i], jr);
        bn_row_json(e, &e->rows[i], jr);
        json_array_append_new(rows, jr);
    }
    json_object_set_new(o, "rows", rows);
    if (json_dump_file(o, e->o.json, JSON_INDENT(1) | JSON_REAL_PRECISION(6)))
        fprintf(stderr, "bench_gpu: cannot write %s\n", e->o.json);
    json_decref(o);
}

static void run_predict(bn_run *e);

static void gpu_row_done(bn_run *e, int i, bn_row *r) {
    grow *g = &G.rows[i];
    alarm(0);
    if (!r->st) {
        r->ms /= g->reps;
        g->ms = r->ms;
        if (i == G.gemm_row) {
            e->peak = r->gflops; /* the reference of every %peak from here on */
            G.peak_tflops = r->gflops * 1e-3;
        }
        r->pct = g->flops1 > 0 && e->peak > 0 ? 100.0 * r->gflops / e->peak : NAN;
        if (g->flops1 > 0)
            snprintf(r->cell[3], BN_CELL, "%.1f", r->gflops * 1e-3);
        else
            snprintf(r->cell[3], BN_CELL, "n/a");
        if (e->o.check) {
            watchdog(e, "a row's check", G.row_timeout);
            run_check(e, g, r);
            alarm(0);
        }
        fill_note(g, r);
    }
    snprintf(r->cell[8], BN_CELL, "%s", g->note);
    write_partial(e, i);
    if (i == G.cost_row) run_predict(e);
}

/* ------------------------------------------------------------------------------------------ */
/* the cost file and the prediction */

/* Wan2.2-T2V-A14B as the planner sees it (the numbers pl_plan_preset_a14b reads off the
 * Diffusers configs; the expert split 13 + 27 of 40 UniPC steps at shift 3, boundary 0.875, is
 * what tests/test_plan.c checks pl_plan_preset_a14b gives). 1280x720, 81 frames, CFG 5. */
static void a14b_inputs(pn_inputs *in, int64_t quantum) {
    pn_model *m = &in->model;
    const double D = DIM, FF = FFN, P = 4, td = 4096, fd = 256, C = 16;
    snprintf(m->name, sizeof m->name, "Wan2.2-T2V-A14B (bench_gpu)");
    m->heads = NH, m->head_dim = HD, m->dim = DIM, m->ffn_dim = FFN, m->layers = 40;
    m->text_dim = 4096, m->freq_dim = 256, m->in_channels = m->out_channels = 16;
    m->patch[0] = 1, m->patch[1] = m->patch[2] = 2;
    m->has_expert_2 = true;
    const double block = 8 * (D * D + D) + 4 * D + 2 * D + 6 * D + 2 * FF * D + FF + D;
    const double top = D * C * P + D + fd * D + D + D * D + D + 6 * D * D + 6 * D + td * D + D +
                       D * D + D + 2 * D + C * P * (D + 1);
    m->expert_params = top + 40 * block;
    m->t5_dim = 4096, m->t5_ff = 10240, m->t5_layers = 24, m->t5_heads = 64, m->t5_inner = 4096;
    m->t5_vocab = 256384;
    m->t5_params =
        256384.0 * 4096 + 24 * (4 * 4096.0 * 4096 + 3 * 4096.0 * 10240 + 2 * 4096 + 32 * 64) + 4096;
    m->vae_s = 8, m->vae_st = 4, m->vae_patch = 1;
    m->vae_params = 1.27e8, m->vae_flop_per_pixel = 8.71e6, m->vae_mem_scale = 1;
    m->sampler_order = 2;
    in->width = 1280, in->height = 720, in->frames = 81;
    in->T = 21, in->h = 90, in->w = 160, in->tokens = 21 * 45 * 80;
    in->row_quantum = quantum > 0 ? quantum : 1;
    in->text_len = LT, in->steps = 40, in->steps_high = 13, in->steps_low = 27;
    in->boundary_t = 875.0, in->shift = 3.0, in->cfg = true, in->two_experts = true;
}

/* The VAE decode estimate (ms) of 5 latent frames at 720p from the conv rows; NaN if one failed. */
static double vae_estimate(double *flops, double *secs) {
    double ms = 0;
    *flops = *secs = 0;
    for (int i = 0; i < G.nrows; i++) {
        const grow *g = &G.rows[i];
        if (g->kind != R_CONV) continue;
        const conv_shape *c = &G.s.conv[g->conv];
        const double n = c->frames / (double)c->T * c->nconv; /* launches of this row's size */
        ms += n * g->ms;
        *flops += n * g->flops1;
        *secs += n * g->ms * 1e-3;
    }
    return G.conv_row >= 0 ? ms : NAN;
}

/* The measured rates over pn_cost_default's (those not measured stay stated). */
static void measured_cost(bn_run *e, char *stated, size_t n) {
    pn_cost *c = &G.cost;
    const int64_t L = G.s.block_L[1];
    const grow *gm = find_row(R_BGEMM, L), *at = find_row(R_BATTN, L), *bl = find_row(R_BLOCK, L);
    const grow *ad = find_row(R_ADD, L), *pk = G.gemm_row >= 0 ? &G.rows[G.gemm_row] : NULL;
    const grow *sd = find_row(R_ATTN, G.s.attn_L[1]);
    double vf, vs;
    pn_cost_default(c);
    stated[0] = 0;
    if (gm)
        c->gemm_flops = gm->flops1 / (gm->ms * 1e-3);
    else if (pk && isfinite(pk->ms))
        c->gemm_flops = pk->flops1 / (pk->ms * 1e-3);
    else
        snprintf(stated + strlen(stated), n - strlen(stated), " gemm_flops");
    if (at)
        c->attn_flops = at->flops1 / (at->ms * 1e-3);
    else if (sd)
        c->attn_flops = sd->flops1 / (sd->ms * 1e-3);
    else
        snprintf(stated + strlen(stated), n - strlen(stated), " attn_flops");
    const double rest = bl && gm && at ? (bl->ms - gm->ms - at->ms) * 1e-3 : NAN;
    if (rest > 0)
        c->mem_bw = 21.0 * (double)L * DIM * 4 / rest; /* plan.c's 21 passes, f32 */
    else if (ad)
        c->mem_bw = ad->bytes1 / (ad->ms * 1e-3);
    else
        snprintf(stated + strlen(stated), n - strlen(stated), " mem_bw");
    vae_estimate(&vf, &vs);
    if (vs > 0 && isfinite(vs))
        c->vae_flops = vf / vs;
    else
        snprintf(stated + strlen(stated), n - strlen(stated), " vae_flops");
    c->elem_bytes = 4;   /* activations are f32 on every backend (backend.h) */
    c->weight_bytes = 2; /* bf16 weights */
    c->vae_weight_bytes = 4;
    if (isfinite(G.dev_total) && G.dev_total > c->mem_reserve) c->mem_per_rank = G.dev_total;
    snprintf(c->source, sizeof c->source, "bench_gpu on %.100s%s", G.dev_name,
             G.quick ? " (--quick shapes)" : "");
    (void)e;
}

static wf_status write_cost(const char *stated, wf_err *err) {
    json_t *o = pn_cost_json(&G.cost);
    char note[600];
    snprintf(
        note, sizeof note,
        "gemm_flops: the DiT block's 10 GEMMs at L %lld; attn_flops: its 2 "
        "attentions; mem_bw: plan.c's 21 f32 passes over [L, D] per block / the block's rest "
        "(whole - GEMMs - attention), else the add row; vae_flops: the decoder's resblock convs. "
        "Stated (not measured):%s",
        (long long)G.s.block_L[1], stated[0] ? stated : " none");
    json_object_set_new(o, "_measured", json_string(note));
    int rc = json_dump_file(o, G.cost_file, JSON_INDENT(1) | JSON_REAL_PRECISION(6));
    json_decref(o);
    return rc ? wf_fail(err, WF_EIO, "bench_gpu: cannot write the cost file %s", G.cost_file)
              : WF_OK;
}

/* The 40-step 720p A14B video on this one GPU: the cost file written, read back by the planner's
 * own reader, evaluated for the one-rank layout (shared, U 1, no CFG parallelism, 1 decoder). */
static wf_status predict(bn_run *e, wf_err *err) {
    wf_status st = WF_OK;
    char stated[200];
    pn_inputs in;
    measured_cost(e, stated, sizeof stated);
    if (strstr(stated, "gemm_flops") && strstr(stated, "attn_flops"))
        return wf_fail(err, WF_EUNSUPPORTED,
                       "no GEMM or attention row ran: nothing measured to "
                       "calibrate the cost model with (--parts gemm or block)");
    G.have_cost = 1;
    pn_inputs_default(&in);
    in.cost = G.cost;
    if (G.cost_file) {
        WF_TRY(write_cost(stated, err));
        WF_TRY(pn_cost_load(&in.cost, G.cost_file, err));
    }
    a14b_inputs(&in, e->be->row_quantum);
    const ly_layout l = {
        .placement = LY_SHARED, .ulysses = {1, 1}, .cfg_parallel = false, .vae_ranks = 1};
    WF_TRY(pn_evaluate(&in, &l, 1, &G.plan, err));
    G.have_plan = 1;
out:
    return st;
}

/* The cost file and the plan, once (after cost_row, or in the footer). */
static void run_predict(bn_run *e) {
    wf_err err = {0};
    G.predicted = 1;
    if (predict(e, &err)) snprintf(G.plan_why, sizeof G.plan_why, "%.390s", err.msg);
}

/* ------------------------------------------------------------------------------------------ */
/* footer, report, teardown */

static void footer_gemm(void) {
    if (!(G.peak_tflops > 0)) return;
    printf("# GEMM peak (wk_matmul %lld^3, bf16 weight, f32 x rounded inside the op, f32 out): "
           "%.1f TFLOP/s; the GEMM alone (op - convert row): ",
           (long long)G.s.gemm, G.peak_tflops);
    if (G.gemm_alone_tflops > 0)
        printf("~%.1f TFLOP/s\n", G.gemm_alone_tflops);
    else
        printf("n/a\n");
    if (isfinite(G.peer_gemm_only_ms) && G.peer_gemm_only_ms > 0)
        printf("# torch F.linear on bf16 x (no cast): %.3f ms = %.1f TFLOP/s\n",
               G.peer_gemm_only_ms, G.rows[G.gemm_row].flops1 / (G.peer_gemm_only_ms * 1e9));
}

static void footer_vae(void) {
    double f, s;
    const double ms = vae_estimate(&f, &s);
    G.vae_ms = ms;
    if (!isfinite(ms) || !(ms > 0)) return;
    printf(
        "# VAE decode, 5 latent frames at 720p (17 frames), ESTIMATE from the resblock conv rows "
        "(x launches per decode): %.0f ms = %.1f ms per latent frame, %.1f TFLOP/s, %.1f of "
        "%.1f TFLOP by PERFORMANCE.md's 8.71e6 FLOP/pixel%s\n",
        ms, ms / 5, f / s * 1e-12, f * 1e-12, 8.71e6 * 17 * 1280 * 720 * 1e-12,
        G.quick ? " (--quick: smaller frames, not the 720p figure)" : "");
}

static void footer_plan(bn_run *e) {
    if (!G.predicted) run_predict(e); /* the rows stopped before cost_row */
    if (G.plan_why[0]) {
        printf("# prediction: FAILED: %s\n", G.plan_why);
        return;
    }
    const pn_cost *c = &G.cost;
    const pn_group *g = &G.plan.group[0];
    printf(
        "# cost%s%s: gemm %.1f TFLOP/s, attention %.1f TFLOP/s, elementwise %.0f GB/s, VAE convs "
        "%.1f TFLOP/s, memory %.1f GB\n",
        G.cost_file ? " file " : " (no --cost-file)", G.cost_file ? G.cost_file : "",
        c->gemm_flops * 1e-12, c->attn_flops * 1e-12, c->mem_bw * 1e-9, c->vae_flops * 1e-12,
        c->mem_per_rank * 1e-9);
    printf("# predicted A14B 1280x720x81, 40 steps, CFG, one GPU (planner, %s): %.0f s = %.1f min "
           "(step %.2f s: gemm %.2f, attn %.2f, elem %.2f; text %.1f s, decode %.1f s); memory "
           "%.1f GB%s\n",
           G.cost_file ? "reading the cost file" : "in memory", G.plan.latency, G.plan.latency / 60,
           g->t_step, g->t_gemm, g->t_attn, g->t_elem, G.plan.t_text, G.plan.t_decode,
           G.plan.mem.peak * 1e-9, G.plan.fits ? "" : " (DOES NOT FIT)");
    if (G.quick)
        printf("# (--quick: rates from small shapes; the prediction is not the real one)\n");
}

static void gpu_footer(bn_run *e) {
    footer_gemm();
    footer_vae();
    footer_plan(e);
    wk_cuda_info info;
    wk_cuda_device devs[16];
    wf_err err = {0};
    if (!wk_cuda_devices(&info, devs, 16, &err) && G.device < info.n_devices && G.device < 16)
        printf("# device memory in use after the rows (total - free, all processes): %.1f GiB\n",
               (double)(devs[G.device].total_mem - devs[G.device].free_mem) / (1 << 30));
    if (G.peer_err[0]) printf("# torch peer: a measurement failed: %s\n", G.peer_err);
}

static void gpu_json(bn_run *e, json_t *o) {
    (void)e;
    json_object_set_new(o, "device", json_string(G.dev_name));
    json_object_set_new(o, "quick", json_boolean(G.quick));
    json_object_set_new(o, "gemm_peak_tflops",
                        bu_real_or_null(G.peak_tflops > 0 ? G.peak_tflops : NAN));
    json_object_set_new(o, "gemm_alone_tflops",
                        bu_real_or_null(G.gemm_alone_tflops > 0 ? G.gemm_alone_tflops : NAN));
    json_object_set_new(o, "vae_decode_estimate_ms", bu_real_or_null(G.vae_ms));
    json_object_set_new(o, "cost", G.have_cost ? pn_cost_json(&G.cost) : json_null());
    json_object_set_new(o, "cost_file", G.cost_file ? json_string(G.cost_file) : json_null());
    json_object_set_new(o, "prediction", G.have_plan ? pn_plan_json(&G.plan) : json_null());
    json_object_set_new(o, "prediction_s", bu_real_or_null(G.have_plan ? G.plan.latency : NAN));
    json_object_set_new(o, "prediction_error",
                        G.plan_why[0] ? json_string(G.plan_why) : json_null());
}

static void gpu_teardown(bn_run *e) {
    wk_arena_free(&G.ar);
    wk_arena_free(&G.har);
    if (e->be) wk_backend_free(e->be, G.wd_base);
    free(G.wh_base);
    float *h[] = {G.h_gx, G.h_aq, G.h_ak, G.h_av, G.h_x0, G.h_ctx, G.h_tproj, G.h_cx, G.h_out};
    for (size_t i = 0; i < sizeof h / sizeof *h; i++)
        free(h[i]);
    wk_backend_destroy(&G.att_be[0]);
    wk_backend_destroy(&G.att_be[1]);
    wk_backend_destroy(&G.fp32_be);
    wk_backend_destroy(&G.cpu);
}

static const bn_flag gpu_flags[] = {
    {"--quick", NULL, 'i', &G.quick, 0, 1, NULL},
    {"--cost-file", "FILE", 's', &G.cost_file, 0, 0, NULL},
    {"--parts", "gemm,attn,check,block,add,vae", 'p', &G.parts, 0, 0, parse_parts},
    {"--device", "N", 'i', &G.device, 0, 63, NULL},
    {"--row-timeout", "S", 'i', &G.row_timeout, 1, 3600, NULL},
    {NULL, NULL, 0, NULL, 0, 0, NULL}};

static const bn_col gpu_cols[] = {{"what", NULL, -30, BN_TEXT, NULL},
                                  {"shape", NULL, -22, BN_TEXT, NULL},
                                  {"ms", NULL, 9, BN_MS, "%.3f"},
                                  {"TFLOP/s", NULL, 7, BN_TEXT, NULL},
                                  {"%peak", NULL, 6, BN_PCT, "%.0f%%"},
                                  {"#wrong", NULL, 6, BN_WRONG, NULL},
                                  {"peer(ms)", NULL, 9, BN_TORCH_MS, "%.3f"},
                                  {"torch/ours", NULL, 10, BN_RATIO, "%.2f"},
                                  {"note", NULL, -1, BN_TEXT, NULL}};

static const bn_bench gpu_bench = {
    .name = "bench_gpu",
    .note = "One GPU, the CUDA backend; exit 77 without a device. Metrics: bench/PERFORMANCE.md "
            "(section bench_gpu).",
    .flags = gpu_flags,
    .flag_set = BN_TORCH,
    .warm = 1,
    .iters = 5,
    .cols = gpu_cols,
    .ncols = 9,
    .nkeys = 2,
    .init = gpu_init,
    .setup = gpu_setup,
    .peer = gpu_peer,
    .row = gpu_row,
    .run = gpu_run,
    .row_done = gpu_row_done,
    .footer = gpu_footer,
    .json = gpu_json,
    .row_json = gpu_row_json,
    .teardown = gpu_teardown};

int main(int argc, char **argv) { return bn_main(&gpu_bench, argc, argv); }
