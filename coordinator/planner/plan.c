/* plan.c: the placement planner and its cost model (see plan.h; the model is written out in
 * bench/PERFORMANCE.md, section "Placement planner and scaling model").
 *
 * Vocabulary (as the forward code): L tokens of the request, Ll tokens per rank, Lp padded
 * tokens, Lt text tokens, D width, FF ffn width, NH heads of HD, U Ulysses degree, P = pt ph pw
 * patch volume, n latent elements C T h w. Times are seconds, sizes bytes, rates per second.
 */
#include "plan.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* the cost parameters */

void pn_cost_default(pn_cost *c) {
    memset(c, 0, sizeof *c);
    c->gemm_flops = 600e12;          /* H100 SXM bf16 dense peak 989e12; ~60% in cuBLASLt GEMMs */
    c->attn_flops = 500e12;          /* FlashAttention-3 / cuDNN SDPA fwd, HD 128, long sequences */
    c->vae_flops = 100e12;           /* causal 3x3x3 convs (cuDNN, TF32/bf16): an assumption */
    c->mem_bw = 2.6e12;              /* HBM3 3.35e12 peak, ~80% for streaming kernels */
    c->intra_bw = 300e9;             /* NVLink4 450e9/direction; NCCL all-to-all, MB messages */
    c->inter_bw = 50e9;              /* one 400 Gb/s NDR InfiniBand HCA per GPU */
    c->intra_latency = 15e-6;
    c->inter_latency = 30e-6;
    c->host_bw = 25e9;               /* PCIe Gen5 x16, pinned copies */
    c->elem_bytes = 2;               /* bf16 activations */
    c->weight_bytes = 2;             /* bf16 weights */
    c->vae_weight_bytes = 4;         /* the VAE runs in f32 */
    c->vae_bytes_per_pixel = 16000;  /* bench_vae: streaming decode arena 993 MiB at 256x256 */
    c->mem_per_rank = 80e9;          /* H100 80 GB */
    c->mem_reserve = 2e9;            /* CUDA context, NCCL buffers, cuBLASLt/cuDNN workspaces */
    snprintf(c->source, sizeof c->source, "stated (H100 SXM 80 GB, NVLink 4, NDR InfiniBand)");
}

void pn_cost_cpu(pn_cost *c, double threads) {
    pn_cost_default(c); /* weight and VAE byte sizes, mem_per_rank until the caller sets it */
    c->gemm_flops = 70e9 * threads;
    c->attn_flops = 45e9 * threads;
    c->vae_flops = 55e9 * threads;
    c->mem_bw = 10e9;
    c->intra_bw = 5e9;
    c->inter_bw = 1e9;
    c->intra_latency = 5e-6;
    c->inter_latency = 50e-6;
    c->host_bw = 10e9;
    c->elem_bytes = 4;
    c->mem_reserve = 0;
    snprintf(c->source, sizeof c->source, "stated for CPU ranks of %g thread(s)", threads);
}

static const struct {
    const char *key;
    size_t off;
    const char *what;
} cost_keys[] = {
#define K(f, w) {#f, offsetof(pn_cost, f), w}
    K(gemm_flops, "FLOP/s of the GEMMs"),
    K(attn_flops, "FLOP/s of attention"),
    K(vae_flops, "FLOP/s of the VAE decoder"),
    K(mem_bw, "B/s device memory"),
    K(intra_bw, "B/s per rank to on-node peers"),
    K(inter_bw, "B/s per rank to off-node peers"),
    K(intra_latency, "s per on-node collective"),
    K(inter_latency, "s per multi-node collective"),
    K(host_bw, "B/s host to device"),
    K(elem_bytes, "activation element bytes"),
    K(weight_bytes, "weight bytes per parameter"),
    K(vae_weight_bytes, "VAE weight bytes per parameter"),
    K(vae_bytes_per_pixel, "VAE decode activation bytes per output pixel"),
    K(mem_per_rank, "device memory bytes per rank"),
    K(mem_reserve, "bytes per rank kept for the runtime"),
#undef K
};
#define N_COST_KEYS (sizeof cost_keys / sizeof *cost_keys)

/* "a FIFO", "a directory", ... for what is found where the cost file should be. */
static const char *cost_kind_name(unsigned mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a file";
}

/* Opens the cost file for reading, refusing what is not a regular file before it is opened (the
 * planner may not use worker/io/'s fsin.h; this is the same check: stat, then an O_NONBLOCK open
 * and fstat, so that a FIFO never waits for a writer). */
static wf_status cost_open(const char *path, int *fd, wf_err *err) {
    struct stat sb;
    *fd = -1;
    if (stat(path, &sb) != 0)
        return wf_fail(err, WF_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return wf_fail(err, WF_EIO, "%s: is %s, not a regular file", path,
                       cost_kind_name(sb.st_mode));
    int d = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (d < 0) return wf_fail(err, WF_EIO, "%s: cannot open: %s", path, strerror(errno));
    int fl;
    if (fstat(d, &sb) != 0 || !S_ISREG(sb.st_mode) || (fl = fcntl(d, F_GETFL)) < 0 ||
        fcntl(d, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        close(d);
        return wf_fail(err, WF_EIO, "%s: not a regular file", path);
    }
    *fd = d;
    return WF_OK;
}

wf_status pn_cost_load(pn_cost *c, const char *path, wf_err *err) {
    json_error_t je;
    int fd;
    wf_status st = cost_open(path, &fd, err);
    if (st) return st;
    json_t *root = json_loadfd(fd, JSON_REJECT_DUPLICATES, &je);
    close(fd);
    if (!root)
        return wf_fail(err, je.line < 1 ? WF_EIO : WF_EFORMAT, "%s: %s (line %d)", path, je.text,
                       je.line);
    if (!json_is_object(root)) {
        st = wf_fail(err, WF_EFORMAT, "%s: the cost file must be a JSON object", path);
        goto out;
    }
    pn_cost t = *c;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (key[0] == '_') continue; /* comments, provenance */
        size_t i = 0;
        while (i < N_COST_KEYS && strcmp(cost_keys[i].key, key)) i++;
        if (i == N_COST_KEYS) {
            char known[600];
            size_t n = 0;
            for (size_t k = 0; k < N_COST_KEYS && n + 40 < sizeof known; k++)
                n += (size_t)snprintf(known + n, sizeof known - n, "%s%s", k ? ", " : "",
                                      cost_keys[k].key);
            st = wf_fail(err, WF_EFORMAT, "%s: unknown key '%s' (known: %s; '_' starts a comment)",
                         path, key, known);
            goto out;
        }
        double x = json_is_number(v) ? json_number_value(v) : NAN;
        if (!(x > 0) || !isfinite(x)) {
            st = wf_fail(err, WF_EFORMAT, "%s: '%s' (%s) must be a number > 0", path, key,
                         cost_keys[i].what);
            goto out;
        }
        *(double *)((char *)&t + cost_keys[i].off) = x;
    }
    if (t.mem_reserve >= t.mem_per_rank) {
        st = wf_fail(err, WF_EFORMAT, "%s: mem_reserve %.3g must be less than mem_per_rank %.3g",
                     path, t.mem_reserve, t.mem_per_rank);
        goto out;
    }
    snprintf(t.source, sizeof t.source, "%s", path);
    *c = t;
out:
    json_decref(root);
    return st;
}

json_t *pn_cost_json(const pn_cost *c) {
    json_t *o = json_object();
    for (size_t i = 0; i < N_COST_KEYS; i++)
        json_object_set_new(o, cost_keys[i].key,
                            json_real(*(const double *)((const char *)c + cost_keys[i].off)));
    json_object_set_new(o, "_source", json_string(c->source));
    return o;
}

/* ------------------------------------------------------------------------------------------ */
/* inputs */

void pn_request_default(pn_request *r) {
    memset(r, 0, sizeof *r);
    r->width = 1280;
    r->height = 720;
    r->frames = 81;
    r->steps = 40;
    r->guidance = 5.0;
    r->boundary = NAN;
    r->shift = 0;
    r->sampler = -1;
    r->text_len = 512;
}

void pn_inputs_default(pn_inputs *in) {
    memset(in, 0, sizeof *in);
    in->world = 1;
    in->ranks_per_node = 8;
    in->queue = 1;
    in->row_quantum = 48;
    in->boundary_t = NAN;
    pn_cost_default(&in->cost);
    in->placement = PN_FREE;
    in->ulysses[0] = in->ulysses[1] = PN_FREE;
    in->cfg_parallel = PN_FREE;
    in->vae_ranks = PN_FREE;
    in->replicas = PN_FREE;
    in->allow_idle = true;
}

int64_t pn_tokens_per_rank(const pn_inputs *in, int U) {
    const int64_t q = in->row_quantum > 0 ? in->row_quantum : 1;
    return (in->tokens + q * U - 1) / (q * U) * q;
}

ly_limits pn_limits(const pn_inputs *in) {
    ly_limits lim = {in->model.heads, in->tokens, in->h, in->two_experts, in->cfg};
    return lim;
}

void pn_divisors(int64_t heads, int64_t max, char *buf, size_t cap) {
    size_t n = 0;
    if (cap) buf[0] = 0;
    for (int64_t d = 1; d <= heads && d <= max && n + 24 < cap; d++)
        if (heads % d == 0) n += (size_t)snprintf(buf + n, cap - n, "%s%lld", n ? ", " : "", (long long)d);
}

/* ------------------------------------------------------------------------------------------ */
/* the time model */

static int64_t node_of(const pn_inputs *in, int64_t rank) { return rank / in->ranks_per_node; }

/* One all-to-all (or all-gather: the same traffic) among world ranks [first, first + U) in which
 * each rank sends `chunk` bytes to each of its U - 1 peers: peers on the rank's node go over
 * NVLink, the others over InfiniBand, both at once; the slowest rank sets the time. */
static double a2a_time(const pn_inputs *in, int64_t first, int U, double chunk, int *offmax) {
    const pn_cost *c = &in->cost;
    double worst = 0;
    int om = 0;
    for (int i = 0; U > 1 && i < U; i++) {
        int64_t lo = node_of(in, first + i) * in->ranks_per_node, hi = lo + in->ranks_per_node;
        int64_t a = lo > first ? lo : first, b = hi < first + U ? hi : first + U;
        int on = (int)(b - a) - 1, off = U - 1 - on;
        double t = (off ? c->inter_latency : c->intra_latency) +
                   fmax(on * chunk / c->intra_bw, off * chunk / c->inter_bw);
        if (t > worst) worst = t;
        if (off > om) om = off;
    }
    if (offmax) *offmax = om;
    return worst;
}

/* A point-to-point transfer of `bytes` between world ranks a and b. */
static double p2p_time(const pn_inputs *in, int64_t a, int64_t b, double bytes) {
    const pn_cost *c = &in->cost;
    bool same = node_of(in, a) == node_of(in, b);
    return (same ? c->intra_latency : c->inter_latency) + bytes / (same ? c->intra_bw : c->inter_bw);
}

/* A broadcast of `bytes` from the first of world ranks [first, first + n): pipelined, so about
 * one transfer time at the slowest link it crosses. */
static double bcast_time(const pn_inputs *in, int64_t first, int n, double bytes) {
    if (n <= 1) return 0;
    return p2p_time(in, first, first + n - 1, bytes);
}

/* Latent elements of the DiT's output (the velocity) and of its input (the latents). */
static double n_out(const pn_inputs *in) {
    return (double)in->model.out_channels * (double)(in->T * in->h * in->w);
}
static double n_lat(const pn_inputs *in) {
    return (double)in->model.in_channels * (double)(in->T * in->h * in->w);
}

/* Group g of layout l, its rank 0 at world rank `base`: FLOPs, bytes and times per step. */
static void eval_group(const pn_inputs *in, const ly_layout *l, int g, int64_t base, pn_group *o) {
    const pn_model *m = &in->model;
    const pn_cost *c = &in->cost;
    memset(o, 0, sizeof *o);
    const int U = l->ulysses[g], halves = l->cfg_parallel ? 2 : 1;
    const double D = (double)m->dim, FF = (double)m->ffn_dim, Lt = (double)in->text_len;
    const double P = (double)(m->patch[0] * m->patch[1] * m->patch[2]), e = c->elem_bytes;
    const double layers = (double)m->layers, DU = (double)(m->heads / U * m->head_dim);
    o->ranks = U * halves;
    o->ulysses = U;
    o->steps = l->placement == LY_SPLIT ? (g ? in->steps_low : in->steps_high)
                                        : in->steps_high + in->steps_low;
    o->tokens_local = pn_tokens_per_rank(in, U); /* padded to the row quantum */
    o->tokens_padded = o->tokens_local * U;
    const double Ll = (double)o->tokens_local, Lp = (double)o->tokens_padded;
    o->forwards_per_step = in->cfg && !l->cfg_parallel ? 2 : 1;

    /* per rank, per forward */
    double block_gemm = 2 * Ll * D * D * 4    /* self-attention q, k, v, out */
                        + 2 * Ll * D * D * 2  /* cross-attention q, out */
                        + 2 * Lt * D * D * 2  /* cross-attention k, v of the text (every rank) */
                        + 2 * Ll * D * FF * 2; /* FFN up, down */
    double once = 2 * Ll * D * (double)m->in_channels * P                      /* patch embedding */
                  + 2 * ((double)m->freq_dim * D + D * D + 6 * D * D)          /* time embedder, proj */
                  + 2 * Lt * ((double)m->text_dim * D + D * D)                 /* text embedder */
                  + 2 * Ll * D * (double)m->out_channels * P;                  /* head */
    o->gemm_flops = layers * block_gemm + once;
    o->attn_flops = layers * (4 * Lp * Lp * D / U  /* self-attention, NH/U heads, all Lp tokens */
                              + 4 * Ll * Lt * D);  /* cross-attention */
    /* elementwise passes over [Ll, D] per block: modulated LN1 (2), q/k RMSNorm + RoPE (4), gate +
     * residual (3), LN2 (2), cross q RMSNorm (2), residual (3), modulated LN3 (2), gate + residual
     * (3) = 21; the all-to-alls' packing and unpacking of q, k, v, o add 8 when U > 1 (GELU is a
     * GEMM epilogue). */
    o->elem_bytes = layers * e * Ll * D * (21 + (U > 1 ? 8 : 0));
    o->a2a_bytes = layers * 4 * (U - 1) * Ll * DU * e;
    o->gather_bytes = (U - 1) * Ll * P * (double)m->out_channels * e;
    o->cfg_bytes = in->cfg && l->cfg_parallel ? n_out(in) * 4 : 0;
    const double f = o->forwards_per_step;
    o->bytes_step = f * (o->a2a_bytes + o->gather_bytes) + o->cfg_bytes;

    /* times per step */
    double weights = m->expert_params * c->weight_bytes;
    o->t_gemm = f * fmax(o->gemm_flops / c->gemm_flops, weights / c->mem_bw);
    o->t_attn = f * o->attn_flops / c->attn_flops;
    o->t_elem = f * o->elem_bytes / c->mem_bw;
    o->t_compute = o->t_gemm + o->t_attn + o->t_elem;
    double ta = 0, tg = 0;
    for (int hf = 0; hf < halves; hf++) { /* the halves run side by side: the slower one counts */
        int off = 0;
        int64_t first = base + (int64_t)hf * U;
        double a = layers * 4 * a2a_time(in, first, U, Ll * DU * e, &off);
        double gt = a2a_time(in, first, U, Ll * P * (double)m->out_channels * e, NULL);
        if (a + gt > ta + tg) {
            ta = a;
            tg = gt;
        }
        if (off > o->offnode_peers) o->offnode_peers = off;
    }
    o->t_a2a = f * ta;
    o->t_gather = f * tg;
    if (o->cfg_bytes > 0)
        for (int i = 0; i < U; i++) {
            double t = p2p_time(in, base + i, base + U + i, o->cfg_bytes);
            if (t > o->t_cfg) o->t_cfg = t;
        }
    o->t_comm = o->t_a2a + o->t_gather + o->t_cfg;
    o->t_step = o->t_compute + o->t_comm;
}

/* FLOPs of the text encoder for one prompt of Lt tokens (bench_umt5's count, all rows). */
static double t5_flops(const pn_inputs *in) {
    const pn_model *m = &in->model;
    const double Lt = (double)in->text_len, d = (double)m->t5_dim, inner = (double)m->t5_inner;
    return (double)m->t5_layers * (2 * Lt * (4 * d * inner + 3 * d * (double)m->t5_ff) +
                                   4 * Lt * Lt * inner);
}

static double t5_act_bytes(const pn_inputs *in) {
    const pn_model *m = &in->model;
    const double Lt = (double)in->text_len;
    return 4 * (Lt * (6 * (double)m->t5_dim + 2 * (double)m->t5_ff) + (double)m->t5_heads * Lt * Lt +
                Lt * Lt);
}

/* DiT activations of one rank with Ulysses degree U (one forward at a time: cond and uncond reuse
 * them), as the DiT's arena holds them (dit_forward.c, acts_alloc; f32 on every backend: a GPU's
 * bf16 mode rounds GEMM inputs, not the stored activations). Ll tokens of this rank, Lp = U Ll:
 * input latents and velocity [n] (2); patches [Ll, Cin P] (and all L of them [L, Cin P] when
 * U > 1 or padded); x, norm, q, k, v, attention out [Ll, D] (6); FFN hidden [Ll, FF]; text [Lt, text_dim];
 * its projection, context, cross k, v [Lt, D] (4); the time embedding's sinusoid [freq] and 12
 * rows [D]; RoPE cos, sin [Ll, HD] (2); head out [Ll, P Cout]; with U > 1 the head-sharded q, k,
 * v, o [Lp, D/U] (4) and the gathered head out [Lp, P Cout]. */
static double dit_act_bytes(const pn_inputs *in, int U, int group) {
    const double exact = in->stage_bytes ? in->stage_bytes(in->stage_ctx, in, PN_STAGE_DIT, U,
                                                           group) : -1;
    if (exact >= 0) return exact;
    const pn_model *m = &in->model;
    const double D = (double)m->dim, Lt = (double)in->text_len;
    const double Ll = (double)pn_tokens_per_rank(in, U), Lp = Ll * U;
    const double P = (double)(m->patch[0] * m->patch[1] * m->patch[2]);
    const double cin = (double)m->in_channels * P, cout = (double)m->out_channels * P;
    double f = 2 * n_lat(in) + Ll * cin + 6 * Ll * D + Ll * (double)m->ffn_dim +
               Lt * (double)m->text_dim + 4 * Lt * D + (double)m->freq_dim + 12 * D +
               2 * Ll * (double)m->head_dim + Ll * cout;
    if (U > 1 || Lp != (double)in->tokens) f += (double)in->tokens * cin; /* padded or split */
    if (U > 1) f += 4 * Lp * D / U + Lp * cout;
    return 4 * f;
}

/* The buffers a video keeps on each rank of its group from the text to the decode (pl_dist's
 * job): latents and velocity [n]; the unconditional velocity [n] (CFG in one process) or both
 * halves [2n] (CFG parallel); UniPC's history (order), last sample and scratch [n]; the text
 * embeddings [Lt, text_dim], twice with CFG. All f32. */
static double video_bytes(const pn_inputs *in, const ly_layout *l) {
    const pn_model *m = &in->model;
    const double n = n_lat(in);
    double k = 2 + (in->cfg ? (l->cfg_parallel ? 2 : 1) : 0) + (m->sampler_order + 2);
    return 4 * (k * n + (in->cfg ? 2 : 1) * (double)in->text_len * (double)m->text_dim);
}

/* VAE decode activations of decoder `index` of V: the streaming decode holds a band of output
 * rows at every level whatever the frame count, vae_bytes_per_pixel per output pixel of its
 * rows (15 890 measured for the Wan2.1 VAE: vae_decode_arena_bytes is exactly linear in the
 * pixels), plus, in the row-parallel decode, about half a latent row of halo. */
static double vae_act_bytes(const pn_inputs *in, int V, int index) {
    const double exact = in->stage_bytes ? in->stage_bytes(in->stage_ctx, in, PN_STAGE_VAE, V,
                                                           index) : -1;
    if (exact >= 0) return exact;
    const pn_model *m = &in->model;
    const double rows = (double)((in->h + V - 1) / V) + (V > 1 ? 0.5 : 0); /* latent rows */
    return in->cost.vae_bytes_per_pixel * m->vae_mem_scale * rows * (double)m->vae_s *
           (double)in->width;
}

pn_mem pn_mem_of_rank(const pn_inputs *in, const ly_layout *l, bool staged, int r) {
    const pn_model *m = &in->model;
    const pn_cost *c = &in->cost;
    const double t5x = in->stage_bytes ? in->stage_bytes(in->stage_ctx, in, PN_STAGE_TEXT, 1, 0)
                                       : -1;
    const double t5w = m->t5_params * c->weight_bytes, t5a = t5x >= 0 ? t5x : t5_act_bytes(in);
    const double vw = m->vae_params * c->vae_weight_bytes;
    const int experts = l->placement == LY_SPLIT ? 1 : (m->has_expert_2 ? 2 : 1);
    ly_role ro = ly_role_of(l, r);
    bool leader = ro.group == 0 && ro.group_rank == 0; /* encodes the prompts */
    pn_mem x;
    memset(&x, 0, sizeof x);
    x.rank = r;
    x.reserve = c->mem_reserve;
    x.experts = experts * m->expert_params * c->weight_bytes;
    x.text_weights = leader && !staged ? t5w : 0;
    x.vae_weights = ro.decodes ? vw : 0;
    x.video = video_bytes(in, l);
    x.dit_act = dit_act_bytes(in, l->ulysses[ro.group], ro.group);
    x.vae_act = ro.decodes ? vae_act_bytes(in, l->vae_ranks, ro.group_rank) : 0;
    x.text_act = leader ? t5a + (staged ? t5w : 0) : 0;
    x.peak = x.reserve + x.experts + x.text_weights + x.vae_weights + x.video +
             fmax(x.dit_act, fmax(x.vae_act, x.text_act));
    return x;
}

/* Peak device memory over the ranks of one replica (layout l). */
static pn_mem eval_mem(const pn_inputs *in, const ly_layout *l, bool staged) {
    pn_mem best;
    memset(&best, 0, sizeof best);
    best.peak = -1;
    for (int r = 0; r < ly_ranks(l); r++) {
        pn_mem x = pn_mem_of_rank(in, l, staged, r);
        if (x.peak > best.peak) best = x;
    }
    return best;
}

/* Latency, period and collective bytes per video of one replica whose rank 0 is world rank
 * `base`; also fills p's groups and stage times when p is not NULL. */
static void eval_replica(const pn_inputs *in, const ly_layout *l, int64_t base, bool staged,
                         pn_plan *p, double *latency, double *period, double *bytes) {
    const pn_model *m = &in->model;
    const pn_cost *c = &in->cost;
    pn_group g[2];
    memset(g, 0, sizeof g);
    const int G0 = ly_group_size(l, 0);
    eval_group(in, l, 0, base, &g[0]);
    if (l->placement == LY_SPLIT) eval_group(in, l, 1, base + G0, &g[1]);
    const double prompts = in->cfg ? 2 : 1, emb = prompts * (double)in->text_len * (double)m->text_dim * 4;
    double t_text = (staged ? m->t5_params * c->weight_bytes / c->host_bw : 0) +
                    prompts * t5_flops(in) / c->gemm_flops + bcast_time(in, base, G0, emb);
    double by = (G0 - 1) * emb;
    for (int k = 0; k < ly_groups(l); k++) by += (double)g[k].steps * g[k].bytes_step * g[k].ranks;
    /* decode: vae_ranks of the decoding group split the rows; frames go to the writer (f32 RGB) */
    const int dg = ly_decode_group(l), V = l->vae_ranks;
    const int64_t dbase = base + (dg ? G0 : 0);
    const double pixels = (double)in->frames * (double)in->height * (double)in->width;
    const double frames_bytes = pixels * 3 * 4 * (V - 1) / V;
    double t_dec = m->vae_flop_per_pixel * pixels / (c->vae_flops * V) +
                   (V > 1 ? bcast_time(in, dbase, V, frames_bytes) : 0);
    by += frames_bytes;
    double t_hand = 0, a, b;
    if (l->placement == LY_SPLIT) {
        const int G1 = ly_group_size(l, 1);
        double hb = n_lat(in) * 4 * (m->sampler_order + 2) + emb; /* latents, sampler state, text */
        t_hand = p2p_time(in, base, base + G0, hb) + bcast_time(in, base + G0, G1, hb);
        by += hb * G1;
        double A = t_text + (double)in->steps_high * g[0].t_step + t_hand;
        double B = (double)in->steps_low * g[1].t_step + t_dec;
        a = A + B;
        b = fmax(A, B);
        if (p) {
            p->t_stage[0] = A;
            p->t_stage[1] = B;
        }
    } else {
        a = b = t_text + (double)(in->steps_high + in->steps_low) * g[0].t_step + t_dec;
        if (p) p->t_stage[0] = a;
    }
    if (p) {
        p->group[0] = g[0];
        p->group[1] = g[1];
        p->t_text = t_text;
        p->t_handoff = t_hand;
        p->t_decode = t_dec;
    }
    *latency = a;
    *period = b;
    *bytes = by;
}

/* The shortest time in which R replicas, replica k finishing its j-th video at
 * a[k] + (j - 1) b[k], complete q videos. */
static double makespan(const double *a, const double *b, int R, int64_t q) {
    double lo = a[0], hi = a[0] + (double)(q - 1) * b[0];
    for (int k = 1; k < R; k++) {
        if (a[k] < lo) lo = a[k];
        double h = a[k] + (double)(q - 1) * b[k];
        if (h < hi) hi = h;
    }
    if (q <= 1 || R == 1) return hi;
    for (int it = 0; it < 200 && hi - lo > 1e-12 * hi; it++) {
        double mid = 0.5 * (lo + hi), done = 0;
        for (int k = 0; k < R; k++)
            if (mid >= a[k]) done += floor((mid - a[k]) / b[k]) + 1;
        if (done >= (double)q) hi = mid;
        else lo = mid;
    }
    return hi;
}

wf_status pn_evaluate(const pn_inputs *in, const ly_layout *l, int replicas, pn_plan *out,
                      wf_err *err) {
    memset(out, 0, sizeof *out);
    if (in->world < 1 || in->ranks_per_node < 1)
        return wf_fail(err, WF_EINVAL, "world %d and ranks per node %d must be >= 1", in->world,
                       in->ranks_per_node);
    if (in->queue < 1) return wf_fail(err, WF_EINVAL, "queue %lld must be >= 1", (long long)in->queue);
    ly_limits lim = pn_limits(in);
    const int n = ly_ranks(l);
    wf_status st = ly_check(l, n, &lim, err);
    if (st) return st;
    if (replicas < 1 || (int64_t)replicas * n > in->world)
        return wf_fail(err, WF_EINVAL, "%d worker worlds of %d ranks do not fit in %d ranks",
                       replicas, n, in->world);
    out->layout = *l;
    out->ranks = n;
    out->replicas = replicas;
    out->idle = in->world - replicas * n;
    out->world = in->world;
    out->ranks_per_node = in->ranks_per_node;
    out->tokens = in->tokens;
    out->text_len = in->text_len;
    out->steps = in->steps;
    out->steps_high = in->steps_high;
    out->steps_low = in->steps_low;
    out->queue = in->queue;
    out->cfg = in->cfg;
    out->mem_per_rank = in->cost.mem_per_rank;

    /* memory: the text encoder stays on the device if everything fits with it, else it is staged */
    out->mem = eval_mem(in, l, false);
    if (out->mem.peak > in->cost.mem_per_rank) {
        pn_mem s = eval_mem(in, l, true);
        if (s.peak < out->mem.peak) { /* fits, or at least comes closest (for messages) */
            out->mem = s;
            out->text_staged = true;
        }
    }
    out->fits = out->mem.peak <= in->cost.mem_per_rank;

    /* time: replica 0 for the tables; every replica for the queue (node alignment differs, and
     * depends only on the replica's first rank modulo ranks_per_node) */
    double *a = malloc(2 * (size_t)replicas * sizeof *a);
    if (!a) return wf_fail(err, WF_ENOMEM, "out of memory");
    double *b = a + replicas, by = 0;
    eval_replica(in, l, 0, out->text_staged, out, &a[0], &b[0], &by);
    out->latency = a[0];
    out->period = b[0];
    out->bytes_per_video = by;
    for (int k = 1; k < replicas; k++) {
        int64_t base = (int64_t)k * n;
        int j = 0;
        while (j < k && ((int64_t)j * n) % in->ranks_per_node != base % in->ranks_per_node) j++;
        if (j < k) {
            a[k] = a[j];
            b[k] = b[j];
        } else {
            double dummy;
            eval_replica(in, l, base, out->text_staged, NULL, &a[k], &b[k], &dummy);
        }
    }
    out->queue_seconds = makespan(a, b, replicas, in->queue);
    out->videos_per_hour = (double)in->queue / out->queue_seconds * 3600.0;
    free(a);
    return WF_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* the choice */

static bool better(const pn_plan *x, const pn_plan *y) {
    const double tol = 1e-9;
    if (x->videos_per_hour > y->videos_per_hour * (1 + tol)) return true;
    if (y->videos_per_hour > x->videos_per_hour * (1 + tol)) return false;
    if (x->bytes_per_video < y->bytes_per_video * (1 - tol)) return true;
    if (y->bytes_per_video < x->bytes_per_video * (1 - tol)) return false;
    if (x->ranks * x->replicas != y->ranks * y->replicas)
        return x->ranks * x->replicas < y->ranks * y->replicas;
    if (x->replicas != y->replicas) return x->replicas < y->replicas;
    if (x->layout.placement != y->layout.placement) return x->layout.placement == LY_SHARED;
    if (x->layout.ulysses[0] != y->layout.ulysses[0]) return x->layout.ulysses[0] < y->layout.ulysses[0];
    if (x->layout.cfg_parallel != y->layout.cfg_parallel) return !x->layout.cfg_parallel;
    return x->layout.vae_ranks < y->layout.vae_ranks;
}

static int cmp_plans(const void *a, const void *b) {
    const pn_plan *x = a, *y = b;
    return better(x, y) ? -1 : better(y, x) ? 1 : 0;
}

static bool same_core(const pn_plan *x, const ly_layout *l, int replicas) {
    return x->replicas == replicas && x->layout.placement == l->placement &&
           x->layout.ulysses[0] == l->ulysses[0] && x->layout.cfg_parallel == l->cfg_parallel &&
           (l->placement == LY_SHARED || x->layout.ulysses[1] == l->ulysses[1]);
}

typedef struct cand_list {
    pn_plan *v;
    size_t n, cap;
} cand_list;

static int list_put(cand_list *cl, const pn_plan *p) {
    for (size_t i = 0; i < cl->n; i++)
        if (same_core(&cl->v[i], &p->layout, p->replicas)) {
            if (better(p, &cl->v[i])) cl->v[i] = *p;
            return 0;
        }
    if (cl->n == cl->cap) {
        size_t cap = cl->cap ? 2 * cl->cap : 64;
        pn_plan *v = realloc(cl->v, cap * sizeof *v);
        if (!v) return -1;
        cl->v = v;
        cl->cap = cap;
    }
    cl->v[cl->n++] = *p;
    return 0;
}

/* The Ulysses degrees to try for a group: the fixed one, or every divisor of the heads (<= L). */
static int degrees(const pn_inputs *in, int fixed, int *out, int cap) {
    if (fixed != PN_FREE) {
        out[0] = fixed;
        return 1;
    }
    int k = 0;
    for (int64_t d = 1; d <= in->model.heads && d <= in->tokens && k < cap; d++)
        if (in->model.heads % d == 0) out[k++] = (int)d;
    return k;
}

/* The rank counts near `world` that some layout uses (ignoring memory), for messages. */
static void near_worlds(const pn_inputs *in, char *buf, size_t cap) {
    int ds[256], nd = degrees(in, PN_FREE, ds, 256), below = 0, above = 0;
    int lim = in->world * 2 + 4;
    for (int w = 1; w <= lim; w++) {
        bool ok = false;
        for (int i = 0; i < nd && !ok; i++)
            for (int c = 1; c <= (in->cfg ? 2 : 1) && !ok; c++) {
                if (ds[i] * c == w) ok = true;
                for (int j = 0; j < nd && in->two_experts && !ok; j++)
                    if ((ds[i] + ds[j]) * c == w) ok = true;
            }
        if (ok && w < in->world) below = w;
        if (ok && w > in->world && !above) above = w;
    }
    if (below && above) snprintf(buf, cap, "%d or %d ranks", below, above);
    else if (above) snprintf(buf, cap, "%d ranks", above);
    else if (below) snprintf(buf, cap, "%d ranks", below);
    else snprintf(buf, cap, "another rank count");
}

/* "74.4 GB = reserve 2.0 + expert weights 57.2 + ... + largest stage 14.8 (VAE decode; ...)" */
static void mem_parts(const pn_plan *p, char *buf, size_t cap) {
    const pn_mem *m = &p->mem;
    double stage = fmax(m->dit_act, fmax(m->vae_act, m->text_act));
    const char *which = stage == m->dit_act ? "DiT activations"
                        : stage == m->vae_act ? "VAE decode"
                                              : (p->text_staged ? "text encoder, staged" : "text encoder");
    snprintf(buf, cap,
             "%.1f GB on rank %d = reserve %.1f + expert weights %.1f + text encoder weights %.1f + "
             "VAE weights %.1f + a video's latents %.2f + the largest stage %.1f (%s; DiT "
             "activations %.1f, VAE decode %.1f, text encoder%s %.1f)",
             m->peak / 1e9, m->rank, m->reserve / 1e9, m->experts / 1e9, m->text_weights / 1e9,
             m->vae_weights / 1e9, m->video / 1e9, stage / 1e9, which, m->dit_act / 1e9, m->vae_act / 1e9,
             p->text_staged ? " staged" : "", m->text_act / 1e9);
}

static void mem_why(const pn_plan *p, char *buf, size_t cap) {
    char lay[128], parts[512];
    ly_format(&p->layout, lay, sizeof lay);
    mem_parts(p, parts, sizeof parts);
    snprintf(buf, cap, "the smallest need is %s: %s", lay, parts);
}

/* Whether a layout of n ranks is nearer to using the world than one of m ranks (for messages). */
static bool closer(int n, int m, int world) {
    if (n <= world && m <= world) return n > m;
    if (n <= world) return true;
    if (m <= world) return false;
    return n < m;
}

/* The search's state: the valid plans, the best plan that does not fit, and the messages that
 * say why nothing was valid (the first broken rule, nearest the world; the first rank count
 * missed). */
typedef struct search {
    cand_list cl;
    pn_plan best_unfit;
    bool have_unfit, rules_passed;
    wf_err rule_err, count_err;
    bool have_rule_err, have_count_err;
    int rule_n; /* ranks of the layout whose broken rule is reported: the nearest the world */
} search;

/* Worker-world counts to try for a layout of n ranks: the fixed count, else one world and as
 * many as fit (only the count that fills the world without idle ranks). */
static int replica_counts(const pn_inputs *in, int n, int reps[2]) {
    int nr = 0;
    if (n > 0 && in->replicas != PN_FREE) reps[nr++] = in->replicas;
    else if (n > 0 && !in->allow_idle) {
        if (in->world % n == 0) reps[nr++] = in->world / n;
    } else if (n > 0 && n <= in->world) {
        reps[nr++] = 1;
        if (in->world / n > 1) reps[nr++] = in->world / n;
    }
    return nr;
}

/* Layout l of n ranks broke a rule (e1): keep the message that names it, with the divisors listed
 * up to the world when ly_check stops at the same rule with it. */
static void note_rule(search *sr, const pn_inputs *in, const ly_layout *l, int n,
                      const ly_limits *lim, const wf_err *e1) {
    if (n < 1 || (sr->have_rule_err && !closer(n, sr->rule_n, in->world))) return;
    wf_err e2;
    bool same = ly_check(l, in->world, lim, &e2) != WF_OK && strncmp(e2.msg, "the layout uses", 15);
    sr->rule_err = same ? e2 : *e1;
    sr->rule_n = n;
    sr->have_rule_err = true;
}

/* Layout l is valid but does not use the world as asked: keep the first such message. */
static void note_count(search *sr, const pn_inputs *in, const ly_layout *l, int n,
                       const ly_limits *lim) {
    if (sr->have_count_err) return;
    if (in->replicas != PN_FREE && in->replicas > 1) {
        char lay[160];
        ly_format(l, lay, sizeof lay);
        wf_fail(&sr->count_err, WF_EINVAL,
                "%d worker worlds of %d ranks (%s) need %lld ranks, the world has %d",
                in->replicas, n, lay, (long long)in->replicas * n, in->world);
    } else {
        ly_check(l, in->world, lim, &sr->count_err);
    }
    sr->have_count_err = true;
}

/* Evaluates valid layout l of n ranks at each worker-world count that the world allows. */
static wf_status place_layout(search *sr, const pn_inputs *in, const ly_layout *l, int n,
                              const int *reps, int nr, const ly_limits *lim, wf_err *err) {
    bool placed = false;
    for (int k = 0; k < nr; k++) {
        int R = reps[k];
        bool ok = R >= 1 && (int64_t)R * n <= in->world &&
                  (in->allow_idle || (int64_t)R * n == in->world);
        if (!ok) continue;
        placed = true;
        pn_plan p;
        wf_status st = pn_evaluate(in, l, R, &p, err);
        if (st) return st;
        if (!p.fits) {
            if (!sr->have_unfit || p.mem.peak < sr->best_unfit.mem.peak) sr->best_unfit = p;
            sr->have_unfit = true;
            continue;
        }
        if (list_put(&sr->cl, &p)) return wf_fail(err, WF_ENOMEM, "out of memory");
    }
    if (placed) sr->rules_passed = true;
    else note_count(sr, in, l, n, lim);
    return WF_OK;
}

/* Every vae_ranks value of one (placement, degrees, cfg_parallel). */
static wf_status search_layout(search *sr, const pn_inputs *in, ly_layout l,
                               const ly_limits *lim, wf_err *err) {
    int n = ly_ranks(&l);
    if (l.ulysses[0] < 1 || (l.placement == LY_SPLIT && l.ulysses[1] < 1)) n = 0;
    int dgs = n ? ly_group_size(&l, ly_decode_group(&l)) : 0;
    int vmax = (int)(dgs < in->h ? dgs : in->h);
    int vlo = in->vae_ranks != PN_FREE ? in->vae_ranks : 1;
    int vhi = in->vae_ranks != PN_FREE ? in->vae_ranks : (vmax > 0 ? vmax : 1);
    int reps[2];
    int nr = replica_counts(in, n, reps);
    for (int vr = vlo; vr <= vhi; vr++) {
        l.vae_ranks = vr;
        wf_err e1;
        if (n < 1 || ly_check(&l, n, lim, &e1) != WF_OK) {
            note_rule(sr, in, &l, n, lim, &e1);
            continue;
        }
        wf_status st = place_layout(sr, in, &l, n, reps, nr, lim, err);
        if (st) return st;
    }
    return WF_OK;
}

/* Why nothing was valid: memory, the user's fixed choice, or the world size. */
static wf_status no_layout(const search *sr, const pn_inputs *in, bool fixed_layout, wf_err *err) {
    char why[700], divs[256], near[64];
    if (sr->rules_passed && sr->have_unfit) {
        mem_why(&sr->best_unfit, why, sizeof why);
        return wf_fail(err, WF_EUNSUPPORTED,
                       "no layout of %d rank%s fits in %.1f GB per rank: %s; use more ranks, "
                       "more memory per rank (--mem-gb) or a smaller video",
                       in->world, in->world == 1 ? "" : "s", in->cost.mem_per_rank / 1e9, why);
    }
    if (fixed_layout && (sr->have_rule_err || sr->have_count_err))
        return wf_fail(err, WF_EINVAL, "%s",
                       sr->have_rule_err ? sr->rule_err.msg : sr->count_err.msg);
    pn_divisors(in->model.heads, in->tokens, divs, sizeof divs);
    near_worlds(in, near, sizeof near);
    return wf_fail(err, WF_EUNSUPPORTED,
                   "no layout of %d rank%s fits: %lld heads are divisible by %s (shared "
                   "uses U ranks, or 2U with CFG parallelism; split U_high + U_low, or "
                   "twice that%s); use %s%s",
                   in->world, in->world == 1 ? "" : "s", (long long)in->model.heads, divs,
                   in->two_experts ? "" : ", and needs two experts, which this model or request lacks",
                   near, in->allow_idle ? "" : ", or allow idle ranks");
}

wf_status pn_enumerate(const pn_inputs *in, pn_plan **out, size_t *nout, wf_err *err) {
    *out = NULL;
    *nout = 0;
    if (in->world < 1 || in->world > 1000000 || in->ranks_per_node < 1)
        return wf_fail(err, WF_EINVAL, "world %d must be in 1..1000000 and ranks per node %d >= 1",
                       in->world, in->ranks_per_node);
    if (in->queue < 1) return wf_fail(err, WF_EINVAL, "queue %lld must be >= 1", (long long)in->queue);
    /* choices that decide the layout (a broken rule among them is the user's to fix) */
    const bool fixed_layout = in->placement != PN_FREE || in->ulysses[0] != PN_FREE ||
                              in->ulysses[1] != PN_FREE || in->cfg_parallel != PN_FREE ||
                              in->vae_ranks != PN_FREE;
    ly_limits lim = pn_limits(in);
    search sr;
    memset(&sr, 0, sizeof sr);
    wf_err_clear(&sr.rule_err);
    wf_err_clear(&sr.count_err);
    wf_status st = WF_OK;
    int d0[256], d1[256];
    for (int pl = LY_SHARED; pl <= LY_SPLIT; pl++) {
        if (in->placement != PN_FREE && in->placement != pl) continue;
        int n0 = degrees(in, in->ulysses[0], d0, 256);
        int n1 = pl == LY_SPLIT ? degrees(in, in->ulysses[1], d1, 256) : 1;
        if (pl == LY_SHARED) d1[0] = 0;
        for (int cp = 0; cp <= 1; cp++) {
            if (in->cfg_parallel != PN_FREE && in->cfg_parallel != cp) continue;
            for (int i = 0; i < n0; i++)
                for (int j = 0; j < n1; j++) {
                    ly_layout l = {(ly_placement)pl, {d0[i], d1[j]}, cp != 0, 1};
                    WF_TRY(search_layout(&sr, in, l, &lim, err));
                }
        }
    }
    if (sr.cl.n == 0) {
        st = no_layout(&sr, in, fixed_layout, err);
        goto out;
    }
    qsort(sr.cl.v, sr.cl.n, sizeof *sr.cl.v, cmp_plans);
    *out = sr.cl.v;
    *nout = sr.cl.n;
    sr.cl.v = NULL;
out:
    free(sr.cl.v);
    return st;
}

wf_status pn_choose(const pn_inputs *in, pn_plan *out, wf_err *err) {
    pn_plan *v = NULL;
    size_t n = 0;
    wf_status st = pn_enumerate(in, &v, &n, err);
    if (st) return st;
    *out = v[0];
    free(v);
    return WF_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* output */

static const char *group_name(const pn_plan *p, int g) {
    return p->layout.placement == LY_SPLIT ? (g ? "low" : "high") : "shared";
}

void pn_print(const pn_plan *p, FILE *f) {
    char lay[160];
    ly_format(&p->layout, lay, sizeof lay);
    int nodes = (p->world + p->ranks_per_node - 1) / p->ranks_per_node;
    fprintf(f, "layout: %s\n", lay);
    fprintf(f, "ranks: %d worker world%s of %d rank%s (%d used of %d, %d idle; %d per node, %d node%s)\n",
            p->replicas, p->replicas == 1 ? "" : "s", p->ranks, p->ranks == 1 ? "" : "s",
            p->replicas * p->ranks, p->world, p->idle, p->ranks_per_node, nodes,
            nodes == 1 ? "" : "s");
    fprintf(f, "text encoder: %s\n",
            p->text_staged ? "staged (uploaded, run and freed for each video: it does not fit "
                             "beside the experts)"
                           : "resident on the first group's rank 0");
    fprintf(f, "\n  %-6s %5s %3s %5s %8s %9s %9s %9s %9s %9s %9s %6s %5s %9s\n", "group", "ranks",
            "U", "steps", "tok/rank", "step(s)", "gemm(s)", "attn(s)", "elem(s)", "a2a(s)",
            "other(s)", "comm%", "off", "MB/step");
    for (int g = 0; g < ly_groups(&p->layout); g++) {
        const pn_group *x = &p->group[g];
        fprintf(f, "  %-6s %5d %3d %5lld %8lld %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %5.1f%% %5d %9.1f\n",
                group_name(p, g), x->ranks, x->ulysses, (long long)x->steps,
                (long long)x->tokens_local, x->t_step, x->t_gemm, x->t_attn, x->t_elem, x->t_a2a,
                x->t_gather + x->t_cfg, 100.0 * x->t_comm / x->t_step, x->offnode_peers,
                x->bytes_step / 1e6);
    }
    char parts[512];
    mem_parts(p, parts, sizeof parts);
    fprintf(f, "\nmemory per rank (%.1f GB available%s): %s\n", p->mem_per_rank / 1e9,
            p->fits ? "" : ", DOES NOT FIT", parts);
    if (p->layout.placement == LY_SPLIT)
        fprintf(f,
                "per video: text %.2f s + high %lld x %.3f s + handoff %.3f s | low %lld x %.3f s "
                "+ decode %.2f s\n"
                "  stages: high group %.1f s, low group %.1f s (a two-stage pipeline)\n",
                p->t_text, (long long)p->steps_high, p->group[0].t_step, p->t_handoff,
                (long long)p->steps_low, p->group[1].t_step, p->t_decode, p->t_stage[0],
                p->t_stage[1]);
    else
        fprintf(f, "per video: text %.2f s + %lld steps x %.3f s + decode %.2f s\n", p->t_text,
                (long long)(p->steps_high + p->steps_low), p->group[0].t_step, p->t_decode);
    fprintf(f, "latency %.1f s per video; steady state: one video every %.1f s per worker world\n",
            p->latency, p->period);
    fprintf(f, "queue of %lld: %.1f s, %.1f videos/hour; %.2f GB of collectives per video\n",
            (long long)p->queue, p->queue_seconds, p->videos_per_hour, p->bytes_per_video / 1e9);
}

static json_t *group_json(const pn_group *x, const char *name) {
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "ranks", json_integer(x->ranks));
    json_object_set_new(o, "ulysses", json_integer(x->ulysses));
    json_object_set_new(o, "steps", json_integer(x->steps));
    json_object_set_new(o, "tokens_local", json_integer(x->tokens_local));
    json_object_set_new(o, "tokens_padded", json_integer(x->tokens_padded));
    json_object_set_new(o, "forwards_per_step", json_integer(x->forwards_per_step));
    json_object_set_new(o, "gemm_flops_per_forward", json_real(x->gemm_flops));
    json_object_set_new(o, "attn_flops_per_forward", json_real(x->attn_flops));
    json_object_set_new(o, "a2a_bytes_per_forward", json_real(x->a2a_bytes));
    json_object_set_new(o, "gather_bytes_per_forward", json_real(x->gather_bytes));
    json_object_set_new(o, "cfg_bytes_per_step", json_real(x->cfg_bytes));
    json_object_set_new(o, "bytes_per_step", json_real(x->bytes_step));
    json_object_set_new(o, "offnode_peers", json_integer(x->offnode_peers));
    json_object_set_new(o, "t_step", json_real(x->t_step));
    json_object_set_new(o, "t_compute", json_real(x->t_compute));
    json_object_set_new(o, "t_gemm", json_real(x->t_gemm));
    json_object_set_new(o, "t_attn", json_real(x->t_attn));
    json_object_set_new(o, "t_elem", json_real(x->t_elem));
    json_object_set_new(o, "t_comm", json_real(x->t_comm));
    json_object_set_new(o, "t_a2a", json_real(x->t_a2a));
    json_object_set_new(o, "t_gather", json_real(x->t_gather));
    json_object_set_new(o, "t_cfg", json_real(x->t_cfg));
    return o;
}

json_t *pn_plan_json(const pn_plan *p) {
    json_t *o = json_object(), *gs = json_array(), *mem = json_object();
    char lay[160];
    ly_format(&p->layout, lay, sizeof lay);
    json_object_set_new(o, "layout", json_string(lay));
    json_object_set_new(o, "placement",
                        json_string(p->layout.placement == LY_SPLIT ? "split" : "shared"));
    json_t *u = json_array();
    for (int g = 0; g < ly_groups(&p->layout); g++) json_array_append_new(u, json_integer(p->layout.ulysses[g]));
    json_object_set_new(o, "ulysses", u);
    json_object_set_new(o, "cfg_parallel", json_boolean(p->layout.cfg_parallel));
    json_object_set_new(o, "vae_ranks", json_integer(p->layout.vae_ranks));
    json_object_set_new(o, "ranks", json_integer(p->ranks));
    json_object_set_new(o, "replicas", json_integer(p->replicas));
    json_object_set_new(o, "idle", json_integer(p->idle));
    json_object_set_new(o, "world", json_integer(p->world));
    json_object_set_new(o, "ranks_per_node", json_integer(p->ranks_per_node));
    json_object_set_new(o, "text_staged", json_boolean(p->text_staged));
    for (int g = 0; g < ly_groups(&p->layout); g++)
        json_array_append_new(gs, group_json(&p->group[g], group_name(p, g)));
    json_object_set_new(o, "groups", gs);
    json_object_set_new(mem, "rank", json_integer(p->mem.rank));
    json_object_set_new(mem, "reserve", json_real(p->mem.reserve));
    json_object_set_new(mem, "experts", json_real(p->mem.experts));
    json_object_set_new(mem, "text_weights", json_real(p->mem.text_weights));
    json_object_set_new(mem, "vae_weights", json_real(p->mem.vae_weights));
    json_object_set_new(mem, "video", json_real(p->mem.video));
    json_object_set_new(mem, "dit_activations", json_real(p->mem.dit_act));
    json_object_set_new(mem, "vae_activations", json_real(p->mem.vae_act));
    json_object_set_new(mem, "text_activations", json_real(p->mem.text_act));
    json_object_set_new(mem, "peak", json_real(p->mem.peak));
    json_object_set_new(mem, "per_rank", json_real(p->mem_per_rank));
    json_object_set_new(o, "memory_bytes", mem);
    json_object_set_new(o, "fits", json_boolean(p->fits));
    json_object_set_new(o, "tokens", json_integer(p->tokens));
    json_object_set_new(o, "steps", json_integer(p->steps));
    json_object_set_new(o, "steps_high", json_integer(p->steps_high));
    json_object_set_new(o, "steps_low", json_integer(p->steps_low));
    json_object_set_new(o, "cfg", json_boolean(p->cfg));
    json_object_set_new(o, "t_text", json_real(p->t_text));
    json_object_set_new(o, "t_handoff", json_real(p->t_handoff));
    json_object_set_new(o, "t_decode", json_real(p->t_decode));
    json_object_set_new(o, "latency_s", json_real(p->latency));
    json_object_set_new(o, "period_s", json_real(p->period));
    json_object_set_new(o, "queue", json_integer(p->queue));
    json_object_set_new(o, "queue_s", json_real(p->queue_seconds));
    json_object_set_new(o, "videos_per_hour", json_real(p->videos_per_hour));
    json_object_set_new(o, "bytes_per_video", json_real(p->bytes_per_video));
    return o;
}
