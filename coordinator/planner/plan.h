/* plan.h: the placement planner and its cost model (prefix pn_).
 *
 * What it is: given a world (ranks, ranks per node, memory per rank), a model (the DiT's heads,
 * layers and widths, the text encoder and VAE sizes), a request (size, frames, the step counts on
 * each side of the expert boundary, CFG) and a cost model (op rates, bandwidths, latencies), it
 * predicts the step time, memory and videos/hour of a layout (pn_evaluate) and picks the best
 * valid one (pn_choose): placement shared or split, the Ulysses degree of each group, CFG
 * parallelism and the VAE decode ranks (a ly_layout, layout.h), and how many independent worker
 * worlds ("replicas", DESIGN.md §2: several worlds can serve one coordinator) of that layout the
 * ranks hold. Every candidate is validated by ly_check; choices the caller fixes are respected.
 * The cost model is written out in bench/PERFORMANCE.md ("Placement planner and scaling model"):
 * per block and forward, GEMM and attention FLOPs over stated rates, elementwise passes over the
 * memory bandwidth, 4 all-to-alls (+ 1 all-gather after the last block) whose time is bounded by
 * NVLink for on-node peers and InfiniBand for off-node peers, no compute/communication overlap.
 * What it is not: the communicators (pl_dist.c) or the generation loop; it runs nothing and
 * measures nothing (bench/bench_scaling --calibrate measures rates for a cost file). It knows no
 * model code: it takes plain numbers (heads, widths, layers, tokens, the step split, rates), and
 * depends on kernels/status.h and jansson only, so that the coordinator links it without MPI,
 * FFmpeg or the models. worker/engine/pl_plan.h turns a Diffusers pipeline into these numbers.
 * Tested by: tests/test_plan.c (rules, roles, byte counts against an independent formula, choices
 * for 1..64 ranks), tests/test_plan_cli.sh (`wanfarm plan`).
 */
#ifndef PN_PLAN_H
#define PN_PLAN_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "layout.h"
#include "status.h"

/* The cost model's parameters. pn_cost_default gives the stated H100 SXM numbers (sources in
 * PERFORMANCE.md); pn_cost_load overrides any of them from a JSON object with these keys. */
typedef struct pn_cost {
    double gemm_flops;          /* FLOP/s of the DiT's GEMMs (bf16, dense, effective) */
    double attn_flops;          /* FLOP/s of fused attention (4 L Lk D counting) */
    double vae_flops;           /* FLOP/s of the VAE decoder's convolutions */
    double mem_bw;              /* B/s device memory (elementwise passes, weight streaming) */
    double intra_bw;            /* B/s per rank, all-to-all to peers on the same node (NVLink) */
    double inter_bw;            /* B/s per rank, all-to-all to peers on other nodes (InfiniBand) */
    double intra_latency;       /* s per collective inside a node */
    double inter_latency;       /* s per collective spanning nodes */
    double host_bw;             /* B/s host -> device (staging the text encoder when it does not fit) */
    double elem_bytes;          /* activation element bytes (2 bf16 on GPUs, 4 f32 on CPUs) */
    double weight_bytes;        /* DiT and text encoder weight bytes per parameter */
    double vae_weight_bytes;    /* VAE weight bytes per parameter (the VAE runs in f32) */
    double vae_bytes_per_pixel; /* decode activation bytes per output pixel (streaming decode) */
    double mem_per_rank;        /* bytes of device memory per rank */
    double mem_reserve;         /* bytes per rank kept for the runtime (context, NCCL, workspaces) */
    char source[160];           /* "stated (H100 SXM)" or the file it was loaded from */
} pn_cost;

void pn_cost_default(pn_cost *c);
/* The stated rates of CPU ranks of `threads` OpenMP threads each (the CPU backend: OpenBLAS
 * sgemm, f32 activations): per thread as bench_ops measures them on a 2-core AMD EPYC VM (sgemm
 * ~70 GFLOP/s, attention ~45, conv ~55), shared-memory MPI inside a node (~5 GB/s, 5 us), a
 * 10 GbE-class network between nodes (~1 GB/s, 50 us), no device reserve; the weights are mapped
 * from the checkpoint files (the page cache shares them between a node's ranks), so the memory
 * limit is the host's: mem_per_rank is left as pn_cost_default's for the caller to set. */
void pn_cost_cpu(pn_cost *c, double threads);
/* Overrides the fields named in the JSON object of `path` (numbers > 0; keys starting with '_'
 * are comments; an unknown key is an error that lists the known ones). */
wf_status pn_cost_load(pn_cost *c, const char *path, wf_err *err);
json_t *pn_cost_json(const pn_cost *c);

/* What the planner needs of the model (per expert: both experts have the same shape). */
typedef struct pn_model {
    char name[128];
    int64_t heads, head_dim, dim, ffn_dim, layers, text_dim, freq_dim, in_channels, out_channels;
    int64_t patch[3];            /* (t, h, w) */
    bool has_expert_2;           /* transformer_2 present: a shared placement loads both */
    double expert_params;        /* parameters of one expert (exact, from the config) */
    int64_t t5_dim, t5_ff, t5_layers, t5_inner, t5_heads, t5_vocab;
    double t5_params;            /* umT5 encoder parameters (exact, from the config) */
    int64_t vae_s, vae_st;       /* spatial and temporal compression */
    int64_t vae_patch;           /* 1 (Wan2.1 VAE) or 2 (Wan2.2 VAE) */
    double vae_params;           /* stated: 1.27e8 at Wan2.1 width, scaled by width^2 */
    double vae_flop_per_pixel;   /* decoder FLOPs per output pixel of one frame (see PERFORMANCE.md) */
    double vae_mem_scale;        /* decode activation bytes relative to the Wan2.1 VAE's */
    int sampler_order;           /* multistep history length (sampler state handed between groups) */
} pn_model;

/* The request, as `wanfarm generate` takes it. */
typedef struct pn_request {
    int64_t width, height, frames; /* pixels; frames = 4k + 1 */
    int64_t steps;                 /* denoising steps */
    double guidance;               /* <= 1: CFG off (one forward per step) */
    double boundary;               /* NaN: the model's boundary_ratio; else in [0, 1] */
    double shift;                  /* > 0: overrides the scheduler's shift; 0: the config's */
    int sampler;                   /* -1: the scheduler config's; else an smp_solver */
    int64_t text_len;              /* max_sequence_length (512) */
} pn_request;

/* 1280x720, 81 frames, 40 steps, guidance 5, the model's boundary and shift, 512 text tokens. */
void pn_request_default(pn_request *r);

#define PN_FREE (-1) /* a choice left to the planner */

/* The activations of one stage on one rank, as the implementation allocates them (its arenas'
 * dry runs), for a model whose components the caller has: stage PN_STAGE_TEXT (degree, index
 * unused), PN_STAGE_DIT (degree: the Ulysses degree U; index: the expert group) or PN_STAGE_VAE
 * (degree: the decoding ranks; index: this decoder's place among them). Bytes, or < 0 when the
 * caller cannot tell (the planner's formula is used then). */
typedef enum pn_stage { PN_STAGE_TEXT = 0, PN_STAGE_DIT, PN_STAGE_VAE } pn_stage;
struct pn_inputs;
typedef double (*pn_stage_bytes_fn)(void *ctx, const struct pn_inputs *in, pn_stage stage,
                                    int degree, int index);

typedef struct pn_inputs {
    /* the world */
    int world;                   /* ranks available */
    int ranks_per_node;          /* world rank r lives on node r / ranks_per_node */
    /* the model and request (the engine's pl_plan_inputs / pl_plan_preset_a14b fill these) */
    pn_model model;
    int64_t width, height, frames;
    int64_t T, h, w;             /* latent frames, rows, columns */
    int64_t tokens;              /* L = (T/pt)(h/ph)(w/pw) */
    int64_t row_quantum;         /* every rank holds a multiple of this many tokens (the padding
                                  * is masked): the backend's wk_backend.row_quantum, which the
                                  * DiT pads to (48 on the CPU backend, the default) */
    int64_t text_len;            /* Lt */
    int64_t steps, steps_high, steps_low; /* steps_high: transformer, steps_low: transformer_2 */
    double boundary_t;           /* boundary_ratio * num_train_timesteps; NaN: none */
    double shift;                /* the sampler shift in use (informative) */
    bool cfg;                    /* guidance > 1: two forwards per step */
    bool two_experts;            /* transformer_2 present and a boundary in use */
    int64_t queue;               /* videos to plan for (1: latency) */
    pn_cost cost;
    /* fixed choices: PN_FREE or a value */
    int placement;               /* LY_SHARED / LY_SPLIT */
    int ulysses[2];              /* group 0 (shared or high noise), group 1 (low noise) */
    int cfg_parallel;            /* 0 / 1 */
    int vae_ranks;
    int replicas;                /* worker worlds of the layout (1 for one `wanfarm generate`) */
    bool allow_idle;             /* ranks may be left unused when no layout uses them all */
    /* exact stage activations from the implementation (NULL: the formulas of PERFORMANCE.md) */
    pn_stage_bytes_fn stage_bytes;
    void *stage_ctx;
} pn_inputs;

/* world 1, 8 ranks per node, queue 1, the stated cost, row quantum 48, every choice free, idle
 * ranks allowed. */
void pn_inputs_default(pn_inputs *in);

/* Tokens each of U ranks holds: Ll = ceil(L / (q U)) q with q = in->row_quantum, the rule the
 * DiT's Ulysses forward pads by (dit_tokens_per_rank; tests/test_plan.c checks they agree). */
int64_t pn_tokens_per_rank(const pn_inputs *in, int U);

/* The limits ly_check needs, for this request. */
ly_limits pn_limits(const pn_inputs *in);

/* The prediction for one group (0: shared or high noise, 1: low noise), times in seconds. */
typedef struct pn_group {
    int ranks, ulysses;
    int64_t steps;                 /* steps this group runs per video */
    int64_t tokens_local;          /* Ll = pn_tokens_per_rank(in, U): ceil(L / qU) q */
    int64_t tokens_padded;         /* Lp = Ll * U */
    int forwards_per_step;         /* per rank: 2 with CFG unless cfg_parallel, else 1 */
    double gemm_flops, attn_flops; /* per rank per forward */
    double elem_bytes;             /* per rank per forward: elementwise passes */
    double a2a_bytes;              /* per rank per forward: 4 x layers all-to-alls */
    double gather_bytes;           /* per rank per forward: the head all-gather */
    double cfg_bytes;              /* per rank per step: the velocity exchange (cfg_parallel) */
    double bytes_step;             /* per rank per step, all of the above */
    int offnode_peers;             /* most Ulysses peers of one rank on other nodes */
    double t_gemm, t_attn, t_elem; /* per step */
    double t_compute;              /* per step: t_gemm + t_attn + t_elem */
    double t_a2a, t_gather, t_cfg; /* per step */
    double t_comm;                 /* per step: t_a2a + t_gather + t_cfg */
    double t_step;                 /* t_compute + t_comm */
} pn_group;

/* Device memory of one rank, bytes: what stays resident plus the largest stage (the stages run
 * one after the other and free their activations):
 *   peak = reserve + experts + text_weights + vae_weights + video
 *          + max(dit_act, vae_act, text_act). */
typedef struct pn_mem {
    int rank;                      /* the rank (of a replica) with the largest peak */
    double reserve;                /* the runtime's (cost.mem_reserve) */
    double experts;                /* expert weights (one, or two for shared with transformer_2) */
    double text_weights;           /* text encoder weights kept resident (group 0's rank 0) */
    double vae_weights;            /* VAE weights (decode ranks) */
    double video;                  /* a video's buffers for all its stages: latents, velocities
                                    * (and the CFG halves), the sampler's history, last sample and
                                    * scratch, the text embeddings (f32) */
    double dit_act;                /* DiT activations of Ll tokens (PERFORMANCE.md lists them) */
    double vae_act;                /* VAE decode activations of this rank's rows (decode ranks) */
    double text_act;               /* text encoder activations, + its weights when staged */
    double peak;
} pn_mem;

typedef struct pn_plan {
    ly_layout layout;              /* the layout of each replica */
    int ranks;                     /* ranks of one replica: ly_ranks(&layout) */
    int replicas;                  /* worker worlds of `ranks` ranks, at world ranks k * ranks */
    int idle;                      /* world - replicas * ranks */
    bool text_staged;              /* the text encoder does not stay on the device: it is uploaded,
                                    * run and freed for each video (costs host_bw time) */
    pn_group group[2];             /* [1] only with placement split */
    double t_text;                 /* per video: (upload +) umT5 forwards + broadcast */
    double t_handoff;              /* split: latents + sampler state high -> low group */
    double t_decode;               /* VAE decode over vae_ranks + frames to the writer */
    double t_stage[2];             /* shared: [0] the whole video; split: [0] text + high steps +
                                    * handoff, [1] low steps + decode */
    double latency;                /* seconds for one video alone */
    double period;                 /* seconds between videos of one replica in steady state */
    double queue_seconds;          /* makespan of the queue over the replicas */
    double videos_per_hour;        /* queue / queue_seconds * 3600 */
    double bytes_per_video;        /* collective bytes sent by all ranks for one video */
    pn_mem mem;
    bool fits;                     /* mem.peak <= mem_per_rank */
    /* copied from the inputs, so that a plan prints on its own */
    int world, ranks_per_node;
    int64_t tokens, text_len, steps, steps_high, steps_low, queue;
    bool cfg;
    double mem_per_rank;
} pn_plan;

/* The memory of rank r of a replica of layout l (staged: the text encoder is uploaded for each
 * video and freed after, pn_plan.text_staged), as the planner predicts it. */
pn_mem pn_mem_of_rank(const pn_inputs *in, const ly_layout *l, bool staged, int r);

/* Predictions for `replicas` worker worlds of layout l (ly_check with world = ly_ranks(l) must
 * pass, and replicas * ly_ranks(l) <= in->world). Memory that does not fit is not an error:
 * out->fits is false. WF_EINVAL (ly_check's message) for an invalid layout. */
wf_status pn_evaluate(const pn_inputs *in, const ly_layout *l, int replicas, pn_plan *out,
                      wf_err *err);

/* Every valid layout (fixed choices respected, memory fits), best first: most videos/hour for the
 * queue, then fewest collective bytes per video, then fewest ranks, then fewest replicas; for each
 * (replicas, placement, degrees, cfg_parallel) only its best vae_ranks. *out is malloc'd (free()).
 * When nothing is valid: WF_EINVAL if a fixed choice breaks a layout rule (ly_check's message),
 * else WF_EUNSUPPORTED with why (which rule or which part of the memory). */
wf_status pn_enumerate(const pn_inputs *in, pn_plan **out, size_t *n, wf_err *err);
/* The best of pn_enumerate. */
wf_status pn_choose(const pn_inputs *in, pn_plan *out, wf_err *err);

/* The plan as a table (pn_print) or a JSON object (caller decrefs). */
void pn_print(const pn_plan *p, FILE *f);
json_t *pn_plan_json(const pn_plan *p);

/* Divisors of the head count up to max: "1, 2, 4, 5, 8, 10, 20, 40". */
void pn_divisors(int64_t heads, int64_t max, char *buf, size_t cap);

#endif
