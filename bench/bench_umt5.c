/* bench_umt5.c: one umT5 encoder forward (transformers' UMT5EncoderModel), wanfarm vs
 * PyTorch/transformers, a plug-in of the bench engine (bench_engine.h), in the nccl-tests shape.
 *
 * What it is: writes a random-weight umT5 encoder checkpoint at the real umt5-xxl widths of Wan's
 * text encoder (d_model 4096, 64 heads of d_kv 64, d_ff 10240, gated GELU, 32 relative buckets,
 * max distance 128; --layers blocks of the real 24) with a reduced vocabulary (--vocab, default
 * 32128: the real 256384-row table alone would be 4 GB in f32 and only the prompt's rows are
 * read) in the real transformers layout (config.json + model.safetensors, --dtype storage) and one
 * tokenised prompt (--tokens real tokens ending in </s>, right-padded with 0 to --seq, as the Wan
 * pipeline pads to 512) into a temporary folder, from a child process so that none of that memory
 * counts in this process' peak RSS. It loads the folder with t5_load (the real loader), sizes the
 * arena with t5_arena_bytes, and the engine times t5_forward per row: "all" computes every one of
 * the L rows as transformers does, "real" only the real ones (t5_input.real_rows_only: the same embedding,
 * since padding keys are masked and padded rows are zeroed). Each row: the median time of -n
 * forwards after -w warm-ups, GFLOP/s and % of the measured sgemm peak, the transformers time of
 * the forward on the same folder and ids (bench/torch_umt5_peer.py, run first, alone) and the
 * ratio, the relative L2 error against transformers' output with padded rows zeroed (as the
 * pipeline does),
 * and memory: arena, backend workspace, and both processes' peak RSS. A footer says OK or FAILED;
 * the exit status is 1 when it says FAILED. Metrics: bench/PERFORMANCE.md, section "bench_umt5".
 * What it is not: a test (tests/test_umt5.c owns correctness against fixtures), a tokenizer
 * benchmark, or a GPU benchmark (yet).
 * Run:   build/bench/bench_umt5 [--layers 2 --seq 512 --tokens 100 --vocab 32128 --rows all,real
 *                                --dtype f32|bf16 -w 1 -n 3 --threads N --check 1 --torch 1
 *                                --json FILE --keep 0]
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "backend.h"
#include "bench_engine.h"
#include "safetensors.h"
#include "umt5.h"

/* The fixed part of the config: umt5-xxl, Wan's text_encoder/config.json (but the vocabulary). */
enum { DMODEL = 4096, DKV = 64, NHEADS = 64, INNER = NHEADS * DKV, DFF = 10240, NBUCKETS = 32,
       MAXDIST = 128, REAL_VOCAB = 256384, PAD_ID = 0, EOS_ID = 1 };
#define LN_EPS 1e-6
#define NORM_STD 0.02

typedef struct bcfg {
    int layers;
    int64_t L, n_real, vocab;
    wk_dtype wdt;
} bcfg;



/* The prompt: n_real - 1 random ids in [2, vocab), then </s> (1), then padding (0) up to L; the
 * mask is 1 on the n_real real tokens: what the tokenizer gives for a prompt of n_real - 1
 * pieces. */
static void make_ids(const bcfg *c, int64_t *ids, int64_t *mask) {
    uint64_t s = bu_name_seed("ids");
    for (int64_t i = 0; i < c->L; i++) {
        ids[i] = i < c->n_real - 1 ? 2 + (int64_t)(bu_rng_next(&s) % (uint64_t)(c->vocab - 2))
                 : i == c->n_real - 1 ? EOS_ID
                                      : PAD_ID;
        mask[i] = i < c->n_real;
    }
}


/* ------------------------------------------------------------------------------------------ */
/* the checkpoint: every tensor of UMT5EncoderModel, transformers names */

typedef struct wspec {
    char name[96];
    int ndim;
    uint64_t shape[2];
    double mean, std;
    int keep_f32; /* transformers' UMT5 _keep_in_fp32_modules: "wo" */
} wspec;

/* Fills l (room for 2 + 10 layers entries); returns the count. transformers' T5 init
 * (_init_weights, initializer_factor 1) except the relative-position tables, N(0, 1) instead of
 * N(0, 1/d_model), so that the position bias weighs in the scores (scale 1) as in a trained model;
 * norm gains 1 + N(0, NORM_STD^2) instead of 1. */
static size_t build_spec(wspec *l, const bcfg *c) {
    size_t n = 0;
#define ADD(nm, d0, d1, nd, mu, sd, keep)                                                        \
    do {                                                                                         \
        snprintf(l[n].name, sizeof l[n].name, "%s", nm);                                         \
        l[n].ndim = nd;                                                                          \
        l[n].shape[0] = (uint64_t)(d0);                                                          \
        l[n].shape[1] = (uint64_t)(d1);                                                          \
        l[n].mean = mu;                                                                          \
        l[n].std = sd;                                                                           \
        l[n].keep_f32 = keep;                                                                    \
        n++;                                                                                     \
    } while (0)
    const double D = DMODEL;
    ADD("shared.weight", c->vocab, DMODEL, 2, 0.0, 1.0, 0);
    ADD("encoder.final_layer_norm.weight", DMODEL, 0, 1, 1.0, NORM_STD, 0);
    char nm[96];
    for (int i = 0; i < c->layers; i++) {
        const char *a = "layer.0.SelfAttention", *f = "layer.1.DenseReluDense";
        snprintf(nm, sizeof nm, "encoder.block.%d.%s.q.weight", i, a);
        ADD(nm, INNER, DMODEL, 2, 0.0, 1.0 / sqrt(D * DKV), 0);
        snprintf(nm, sizeof nm, "encoder.block.%d.%s.k.weight", i, a);
        ADD(nm, INNER, DMODEL, 2, 0.0, 1.0 / sqrt(D), 0);
        snprintf(nm, sizeof nm, "encoder.block.%d.%s.v.weight", i, a);
        ADD(nm, INNER, DMODEL, 2, 0.0, 1.0 / sqrt(D), 0);
        snprintf(nm, sizeof nm, "encoder.block.%d.%s.o.weight", i, a);
        ADD(nm, DMODEL, INNER, 2, 0.0, 1.0 / sqrt((double)INNER), 0);
        snprintf(nm, sizeof nm, "encoder.block.%d.%s.relative_attention_bias.weight", i, a);
        ADD(nm, NBUCKETS, NHEADS, 2, 0.0, 1.0, 0);
        snprintf(nm, sizeof nm, "encoder.block.%d.layer.0.layer_norm.weight", i);
        ADD(nm, DMODEL, 0, 1, 1.0, NORM_STD, 0);
        snprintf(nm, sizeof nm, "encoder.block.%d.%s.wi_0.weight", i, f);
        ADD(nm, DFF, DMODEL, 2, 0.0, 1.0 / sqrt(D), 0);
        snprintf(nm, sizeof nm, "encoder.block.%d.%s.wi_1.weight", i, f);
        ADD(nm, DFF, DMODEL, 2, 0.0, 1.0 / sqrt(D), 0);
        snprintf(nm, sizeof nm, "encoder.block.%d.%s.wo.weight", i, f);
        ADD(nm, DMODEL, DFF, 2, 0.0, 1.0 / sqrt((double)DFF), 1);
        snprintf(nm, sizeof nm, "encoder.block.%d.layer.1.layer_norm.weight", i);
        ADD(nm, DMODEL, 0, 1, 1.0, NORM_STD, 0);
    }
#undef ADD
    return n;
}

/* config.json as save_pretrained writes it for UMT5EncoderModel. */
static int write_config(const char *path, const bcfg *c) {
    json_t *o = json_object(), *arch = json_array();
    if (!o || !arch) return -1;
    json_array_append_new(arch, json_string("UMT5EncoderModel"));
    json_object_set_new(o, "architectures", arch);
    json_object_set_new(o, "classifier_dropout", json_real(0.0));
    json_object_set_new(o, "d_ff", json_integer(DFF));
    json_object_set_new(o, "d_kv", json_integer(DKV));
    json_object_set_new(o, "d_model", json_integer(DMODEL));
    json_object_set_new(o, "decoder_start_token_id", json_integer(PAD_ID));
    json_object_set_new(o, "dense_act_fn", json_string("gelu_new"));
    json_object_set_new(o, "dropout_rate", json_real(0.0));
    json_object_set_new(o, "dtype", json_string(c->wdt == WK_F32 ? "float32" : "bfloat16"));
    json_object_set_new(o, "eos_token_id", json_integer(EOS_ID));
    json_object_set_new(o, "feed_forward_proj", json_string("gated-gelu"));
    json_object_set_new(o, "initializer_factor", json_real(1.0));
    json_object_set_new(o, "is_decoder", json_false());
    json_object_set_new(o, "is_encoder_decoder", json_false());
    json_object_set_new(o, "is_gated_act", json_true());
    json_object_set_new(o, "layer_norm_epsilon", json_real(LN_EPS));
    json_object_set_new(o, "model_type", json_string("umt5"));
    json_object_set_new(o, "num_decoder_layers", json_integer(c->layers));
    json_object_set_new(o, "num_heads", json_integer(NHEADS));
    json_object_set_new(o, "num_layers", json_integer(c->layers));
    json_object_set_new(o, "pad_token_id", json_integer(PAD_ID));
    json_object_set_new(o, "relative_attention_max_distance", json_integer(MAXDIST));
    json_object_set_new(o, "relative_attention_num_buckets", json_integer(NBUCKETS));
    json_object_set_new(o, "scale_decoder_outputs", json_true());
    json_object_set_new(o, "tie_word_embeddings", json_true());
    json_object_set_new(o, "transformers_version", json_string("5.24.0"));
    json_object_set_new(o, "use_cache", json_false());
    json_object_set_new(o, "vocab_size", json_integer(c->vocab));
    int r = json_dump_file(o, path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(6));
    json_decref(o);
    return r;
}

/* Runs in the child: config.json, model.safetensors, inputs.safetensors. */
static int write_folder(const char *dir, const bcfg *c) {
    char path[1200];
    wf_err err = {0};
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (write_config(path, c) != 0) {
        fprintf(stderr, "bench_umt5: cannot write %s\n", path);
        return 1;
    }
    const size_t cap = 2 + 10 * (size_t)c->layers;
    wspec *l = calloc(cap, sizeof *l);
    st_item *items = calloc(cap, sizeof *items);
    void **bufs = calloc(cap, sizeof *bufs);
    size_t nt = 0;
    int rc = 1;
    if (!l || !items || !bufs) goto out;
    nt = build_spec(l, c);
    for (size_t i = 0; i < nt; i++) {
        const wspec *s = &l[i];
        size_t n = (size_t)(s->shape[0] * (s->ndim == 2 ? s->shape[1] : 1));
        wk_dtype dt = s->keep_f32 ? WK_F32 : c->wdt;
        if (!(bufs[i] = bu_random_tensor(s->name, n, s->mean, s->std, dt))) goto out;
        items[i] = (st_item){s->name, st_dtype_of(dt), s->ndim, s->shape, bufs[i]};
    }
    static const char *const meta[2] = {"format", "pt"};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (st_write(path, items, nt, meta, 1, &err) != WF_OK) {
        fprintf(stderr, "bench_umt5: %s\n", err.msg);
        goto out;
    }
    for (size_t i = 0; i < nt; i++) {
        free(bufs[i]);
        bufs[i] = NULL;
    }

    /* inputs: input_ids [L] and attention_mask [L], I64 (what the tokenizer returns) */
    int64_t *ids = malloc((size_t)c->L * sizeof *ids), *mask = malloc((size_t)c->L * sizeof *mask);
    if (ids && mask) {
        make_ids(c, ids, mask);
        const uint64_t sl[1] = {(uint64_t)c->L};
        const st_item in[2] = {{"input_ids", ST_I64, 1, sl, ids},
                               {"attention_mask", ST_I64, 1, sl, mask}};
        snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
        if (st_write(path, in, 2, NULL, 0, &err) != WF_OK)
            fprintf(stderr, "bench_umt5: %s\n", err.msg);
        else rc = 0;
    } else {
        fprintf(stderr, "bench_umt5: out of memory\n");
    }
    free(ids);
    free(mask);
out:
    if (bufs)
        for (size_t i = 0; i < nt; i++) free(bufs[i]);
    free(bufs);
    free(items);
    free(l);
    return rc;
}

static int write_folder_ctx(const char *dir, const void *ctx) { return write_folder(dir, ctx); }

/* FLOPs of one forward computing Lc rows (PERFORMANCE.md, "bench_umt5"): per layer the q, k, v, o
 * projections (4 x 2 Lc D IN), the gated FFN (3 x 2 Lc D FF) and the attention GEMMs Q K^T and
 * P V over all heads (4 Lc^2 IN, masked keys counted). Embedding lookup, norms, softmax, the
 * position bias and the GELU are not counted. */
static double t5_flops(int layers, int64_t Lc) {
    const double l = (double)Lc, D = DMODEL, IN = INNER, FF = DFF;
    return layers * (2 * l * (4 * D * IN + 3 * D * FF) + 4 * l * l * IN);
}

/* ------------------------------------------------------------------------------------------ */
/* the plug-in: one row per way of computing the rows ("all" as transformers, "real" only) */

enum { ROW_ALL, ROW_REAL, NROWS };
static const char *const ROW_NAME[NROWS] = {"all", "real"};

static struct {
    bcfg c;
    const char *rows_arg;
    t5_model *m;
    wk_arena arena;            /* one for both rows: t5_arena_bytes(L) covers them */
    size_t arena_bytes;
    double load_s;
    int32_t *ids, *mask;       /* the prompt the child wrote */
    int on[NROWS], kind[NROWS], index[NROWS]; /* kind of the engine's row i; its row (-1: off) */
    float *out[NROWS];         /* [L, D] per kind: the last forward */
    float *ref;                /* the peer's output, once read */
    double out_rms;            /* over the real rows of the first row that ran */
    size_t pad_nonzero;        /* nonzero values in padded rows, every row */
} T = {.c = {.layers = 2, .L = 512, .n_real = 100, .vocab = 32128}, .rows_arg = "all,real",
       .out_rms = NAN};

static int t5_init(bn_run *e) {
    bcfg *c = &T.c;
    const int bad = bn_pick_rows(T.rows_arg, ROW_NAME, NROWS, T.on); /* a subset of all, real */
    c->wdt = e->o.wdt;
    if (bad || c->n_real > c->L) {
        fprintf(stderr, "bench_umt5: bad value (--seq %lld --tokens %lld (1..seq) --rows %s)\n",
                (long long)c->L, (long long)c->n_real, T.rows_arg);
        return 2;
    }
    return bu_write_in_child("bench_umt5", write_folder_ctx, c, e->o.keep, e->dir, sizeof e->dir,
                             &e->write_s);
}

/* Load (the real loader), size the arena, the prompt (the ids the child wrote); the header. */
static wf_status t5_setup(bn_run *e, wf_err *err) {
    const bcfg *c = &T.c;
    double t0 = bu_now_s();
    wf_status st = t5_load(&T.m, e->dir, err);
    T.load_s = bu_now_s() - t0;
    if (!st) st = t5_arena_bytes(T.m, c->L, &T.arena_bytes, err);
    if (!st) st = wk_arena_init(&T.arena, "umt5 activations", T.arena_bytes, err);
    int64_t *ids64 = malloc((size_t)c->L * sizeof *ids64);
    int64_t *mask64 = malloc((size_t)c->L * sizeof *mask64);
    T.ids = malloc((size_t)c->L * sizeof *T.ids);
    T.mask = malloc((size_t)c->L * sizeof *T.mask);
    for (int k = 0; k < NROWS; k++) {
        T.index[k] = -1;
        if (T.on[k]) T.out[k] = malloc((size_t)(c->L * DMODEL) * sizeof *T.out[k]);
        if (!st && T.on[k] && !T.out[k]) st = wf_fail(err, WF_ENOMEM, "out of memory");
        if (T.on[k]) T.kind[T.index[k] = e->nrows++] = k;
    }
    if (!st && (!ids64 || !mask64 || !T.ids || !T.mask)) st = wf_fail(err, WF_ENOMEM, "out of memory");
    if (!st) {
        make_ids(c, ids64, mask64);
        for (int64_t i = 0; i < c->L; i++) {
            T.ids[i] = (int32_t)ids64[i];
            T.mask[i] = (int32_t)mask64[i];
        }
    }
    free(ids64);
    free(mask64);
    printf("# model: UMT5EncoderModel at umt5-xxl width (d_model %d, %d heads x d_kv %d, d_ff %d "
           "gated-gelu, %d buckets, max distance %d), %d layer%s (of 24); vocab reduced to %lld "
           "(real %d: only the prompt's rows are read); random weights: T5 init, relative bias "
           "N(0, 1), norm gains 1 + N(0, %.2g)\n", DMODEL, NHEADS, DKV, DFF, NBUCKETS, MAXDIST,
           c->layers, c->layers == 1 ? "" : "s", (long long)c->vocab, REAL_VOCAB, NORM_STD);
    printf("# storage: %s%s; %.1f MiB of weights, mapped (%s)\n", e->o.dtype,
           c->wdt == WK_F32 ? "" : " (wo in f32, as transformers' _keep_in_fp32_modules)",
           T.m ? bu_mib((double)T.m->weight_bytes) : NAN, e->dir);
    printf("# input: L %lld tokens, %lld real (random ids, </s> last) then padding 0; warm-up %d, "
           "iters %d (time = median)\n", (long long)c->L, (long long)c->n_real, e->o.warm,
           e->o.iters);
    printf("# checkpoint written in %.1f s (child process), t5_load %.3f s; check %s\n",
           e->write_s, T.load_s,
           !e->o.check ? "off" : "rel L2 vs torch with padded rows zeroed (bound 1e-4); "
                                 "without torch all <-> real, else self bit-identity");
    return st;
}

/* torch_umt5_peer.py on the folder (bu_peer_run; str: its attn_implementation), alone, first. */
static void t5_peer(bn_run *e, char *detail, size_t n) {
    static const bu_peer_spec spec = {"torch, transformers", "torch_umt5_peer.py", "ms",
                                      "transformers", "attn_implementation", NULL};
    bu_peer_run(&e->peer, &spec, WANFARM_BENCH_DIR, e->dir, e->o.threads, e->o.warm, e->o.iters, "");
    snprintf(detail, n, "bench/torch_umt5_peer.py: from_pretrained(dtype=float32) in %.2f s, "
             "attention '%s'; all %lld rows, fp32, no_grad", e->peer.load_s, e->peer.str,
             (long long)T.c.L);
}

static wf_status t5_row(bn_run *e, int i, bn_row *r, wf_err *err) {
    (void)err;
    const int k = T.kind[i];
    const int64_t Lc = k == ROW_REAL ? T.c.n_real : T.c.L;
    snprintf(r->cell[0], BN_CELL, "%s", ROW_NAME[k]);
    snprintf(r->cell[1], BN_CELL, "%d", T.c.layers);
    snprintf(r->cell[2], BN_CELL, "%lld", (long long)T.c.L);
    snprintf(r->cell[3], BN_CELL, "%lld", (long long)Lc);
    snprintf(r->cell[4], BN_CELL, "%s", e->o.dtype);
    r->name = ROW_NAME[k];
    r->flops = t5_flops(T.c.layers, Lc);
    r->torch_ms = e->peer.ran ? e->peer.ms : NAN; /* transformers computes all rows */
    r->arena_mib = bu_mib((double)T.arena_bytes);
    r->out = T.out[k];
    r->nout = (size_t)(T.c.L * DMODEL);
    r->partner = T.index[k == ROW_ALL ? ROW_REAL : ROW_ALL]; /* without the peer: each other */
    return WF_OK;
}

static wf_status t5_run(bn_run *e, int i, int call, wf_err *err) {
    (void)call;
    const t5_input in = {.L = T.c.L, .ids = T.ids, .mask = T.mask,
                         .real_rows_only = T.kind[i] == ROW_REAL};
    return t5_forward(T.m, e->be, &T.arena, &in, T.out[T.kind[i]], NULL, NULL, err);
}

/* The pipeline's trim: padded rows are exact zeros (every nonzero value counts in #wrong). */
static void t5_row_done(bn_run *e, int i, bn_row *r) {
    (void)e;
    (void)i;
    if (r->st) return;
    const size_t nreal = (size_t)(T.c.n_real * DMODEL);
    size_t pad = 0;
    for (size_t k = nreal; k < r->nout; k++) pad += r->out[k] != 0.0f;
    r->wrong += (long)pad;
    T.pad_nonzero += pad;
    if (isfinite(T.out_rms)) return;
    double s = 0;
    for (size_t k = 0; k < nreal; k++) s += (double)r->out[k] * r->out[k];
    T.out_rms = sqrt(s / (double)nreal);
}

static const float *t5_reference(bn_run *e, int i) {
    (void)i;
    const uint64_t so[2] = {(uint64_t)T.c.L, DMODEL};
    if (!T.ref) T.ref = bn_peer_output(e, "out", 2, so);
    return T.ref;
}

static void t5_footer(bn_run *e) {
    printf("# FLOPs per forward : %.1f GFLOP all rows, %.1f GFLOP real rows only (projections, "
           "FFN, attention GEMMs; PERFORMANCE.md)\n", t5_flops(T.c.layers, T.c.L) * 1e-9,
           t5_flops(T.c.layers, T.c.n_real) * 1e-9);
    for (int i = 0; i < e->nrows; i++)
        if (e->rows[i].self_same >= 0)
            printf("# Repeatability %-4s : forwards 1 and %d %s\n", e->rows[i].name,
                   e->rows[i].calls,
                   e->rows[i].self_same ? "bit-identical" : "DIFFER (not bit-identical)");
    if (isfinite(T.out_rms))
        printf("# Output : rms %.3f over the real rows; %zu nonzero values in padded rows\n",
               T.out_rms, T.pad_nonzero);
}

static void t5_json(bn_run *e, json_t *o) {
    (void)e;
    json_object_set_new(o, "layers", json_integer(T.c.layers));
    json_object_set_new(o, "L", json_integer(T.c.L));
    json_object_set_new(o, "n_real", json_integer(T.c.n_real));
    json_object_set_new(o, "vocab", json_integer(T.c.vocab));
    const double weights = T.m ? bu_mib((double)T.m->weight_bytes) : NAN;
    json_object_set_new(o, "weights_mib", bu_real_or_null(weights));
    json_object_set_new(o, "arena_mib", bu_real_or_null(bu_mib((double)T.arena_bytes)));
}

static void t5_row_json(bn_run *e, int i, const bn_row *r, json_t *jr) {
    (void)e;
    json_object_set_new(jr, "rows", json_string(r->name));
    json_object_set_new(jr, "Lc", json_integer(T.kind[i] == ROW_REAL ? T.c.n_real : T.c.L));
}

static void t5_teardown(bn_run *e) {
    (void)e;
    for (int k = 0; k < NROWS; k++) free(T.out[k]);
    free(T.ids);
    free(T.mask);
    free(T.ref);
    wk_arena_free(&T.arena);
    t5_free(&T.m);
}

static const bn_flag t5_flags[] = {{"--layers", "N", 'i', &T.c.layers, 1, 1000, NULL},
                                   {"--seq", "L", 'l', &T.c.L, 1, 1 << 16, NULL},
                                   {"--tokens", "N", 'l', &T.c.n_real, 1, 1 << 16, NULL},
                                   {"--vocab", "V", 'l', &T.c.vocab, 3, REAL_VOCAB, NULL},
                                   {"--rows", "all,real", 's', &T.rows_arg, 0, 0, NULL},
                                   {NULL, NULL, 0, NULL, 0, 0, NULL}};

static const bn_col t5_cols[] = {
    {"rows", NULL, -4, BN_TEXT, NULL},         {"layers", NULL, 6, BN_TEXT, NULL},
    {"L", NULL, 5, BN_TEXT, NULL},             {"Lc", NULL, 5, BN_TEXT, NULL},
    {"wdt", NULL, -4, BN_TEXT, NULL},          {"ours(ms)", NULL, 9, BN_MS, NULL},
    {"torch(ms)", NULL, 9, BN_TORCH_MS, NULL}, {"ratio", NULL, 6, BN_RATIO, "%.2f"},
    {"GFLOP/s", NULL, 8, BN_GFLOPS, NULL},     {"%peak", NULL, 6, BN_PCT, "%.1f%%"},
    {"rel-L2", NULL, 10, BN_ERROR, "%.2e"},    {"ref", NULL, -5, BN_REF, NULL},
    {"arena", "(MiB)", 8, BN_ARENA, NULL},     {"ws", "(MiB)", 7, BN_WS, NULL},
    {"rss", "(MiB)", 8, BN_RSS, NULL},         {"torch-rss", "(MiB)", 9, BN_TORCH_RSS, NULL}};

static const bn_bench t5_bench = {
    .name = "bench_umt5", .note = "Metrics are defined in bench/PERFORMANCE.md (section bench_umt5).",
    .flags = t5_flags, .flag_set = BN_DTYPE | BN_TORCH | BN_KEEP | BN_BACKEND | BN_PEAK,
    .warm = 1, .iters = 3, .cols = t5_cols, .ncols = 16, .nkeys = 5, .peer_lib = "transformers",
    .init = t5_init, .setup = t5_setup, .peer = t5_peer, .row = t5_row, .run = t5_run,
    .reference = t5_reference, .row_done = t5_row_done, .footer = t5_footer, .json = t5_json,
    .row_json = t5_row_json, .teardown = t5_teardown};

int main(int argc, char **argv) { return bn_main(&t5_bench, argc, argv); }
