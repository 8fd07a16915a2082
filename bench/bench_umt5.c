/* bench_umt5.c: one umT5 encoder forward (transformers' UMT5EncoderModel), wanfarm vs
 * PyTorch/transformers, in the nccl-tests shape.
 *
 * What it is: writes a random-weight umT5 encoder checkpoint at the real umt5-xxl widths of Wan's
 * text encoder (d_model 4096, 64 heads of d_kv 64, d_ff 10240, gated GELU, 32 relative buckets,
 * max distance 128; --layers blocks of the real 24) with a reduced vocabulary (--vocab, default
 * 32128: the real 256384-row table alone would be 4 GB in f32 and only the prompt's rows are
 * read) in the real transformers layout (config.json + model.safetensors, --dtype storage) and one
 * tokenised prompt (--tokens real tokens ending in </s>, right-padded with 0 to --seq, as the Wan
 * pipeline pads to 512) into a temporary folder, from a child process so that none of that memory
 * counts in this process' peak RSS. It loads the folder with t5_load (the real loader), sizes the
 * arena with t5_arena_bytes, and times t5_forward per row: "all" computes every one of the L rows
 * as transformers does, "real" only the real ones (t5_input.real_rows_only: the same embedding,
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
#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "backend.h"
#include "bench_util.h"
#include "safetensors.h"
#include "umt5.h"

#ifndef WANFARM_BENCH_DIR
#define WANFARM_BENCH_DIR "bench" /* CMake sets the source dir; this works from the repo root */
#endif

#define REL_L2_TOL 1e-4 /* bound on ||ours - ref|| / ||ref||: see PERFORMANCE.md */

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

/* ------------------------------------------------------------------------------------------ */
/* small utilities (as bench_dit.c) */









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

/* ------------------------------------------------------------------------------------------ */
/* the torch peer */

typedef bu_peer peer;

/* torch_umt5_peer.py on the folder (bu_peer_run); str: its attn_implementation. */
static void peer_run(peer *p, const char *dir, int threads, int warm, int iters) {
    static const bu_peer_spec spec = {"torch, transformers", "torch_umt5_peer.py", "ms",
                                      "transformers", "attn_implementation", NULL};
    bu_peer_run(p, &spec, WANFARM_BENCH_DIR, dir, threads, warm, iters, "");
}

/* ------------------------------------------------------------------------------------------ */


/* FLOPs of one forward computing Lc rows (PERFORMANCE.md, "bench_umt5"): per layer the q, k, v, o
 * projections (4 x 2 Lc D IN), the gated FFN (3 x 2 Lc D FF) and the attention GEMMs Q K^T and
 * P V over all heads (4 Lc^2 IN, masked keys counted). Embedding lookup, norms, softmax, the
 * position bias and the GELU are not counted. */
static double t5_flops(int layers, int64_t Lc) {
    const double l = (double)Lc, D = DMODEL, IN = INNER, FF = DFF;
    return layers * (2 * l * (4 * D * IN + 3 * D * FF) + 4 * l * l * IN);
}



/* ------------------------------------------------------------------------------------------ */
/* the rows */

enum { ROW_ALL, ROW_REAL, NROWS };
static const char *ROW_NAME[NROWS] = {"all", "real"};

typedef struct row {
    int kind, on;
    int64_t Lc; /* rows computed */
    double flops, ms, gflops, pct, ws_mib, rss_mib, rel;
    float *out, *out_first; /* [L, D]: the last forward, and the first (self check) */
    int nfwd;
    char check[16]; /* the reference: "torch", "all", "real", "self" or "" */
    int self_same;  /* -1 not checked */
    char err[512];
} row;

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--layers N] [--seq L] [--tokens N] [--vocab V] [--rows all,real]\n"
            "          [--dtype f32|bf16] [-w warmup] [-n iters] [--threads N] [--check 0|1]\n"
            "          [--torch 0|1] [--json FILE] [--keep 0|1]\n"
            "Metrics are defined in bench/PERFORMANCE.md (section bench_umt5).\n",
            argv0);
}


int main(int argc, char **argv) {
    bcfg c = {.layers = 2, .L = 512, .n_real = 100, .vocab = 32128, .wdt = WK_F32};
    const char *json = NULL, *dtype = "f32", *rows_arg = "all,real";
    int warm = 1, iters = 3, check = 1, threads = 0, torch = 1, keep = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(argv[0]);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "bench_umt5: %s needs a value\n", a);
            usage(argv[0]);
            return 2;
        }
        i++;
        if (!strcmp(a, "--layers")) c.layers = atoi(v);
        else if (!strcmp(a, "--seq")) c.L = atoll(v);
        else if (!strcmp(a, "--tokens")) c.n_real = atoll(v);
        else if (!strcmp(a, "--vocab")) c.vocab = atoll(v);
        else if (!strcmp(a, "--rows")) rows_arg = v;
        else if (!strcmp(a, "--dtype")) dtype = v;
        else if (bu_common_flag(a, v, &warm, &iters, &threads, &check, &torch, &keep, &json)) {
            /* one of the flags every bench shares (bench_util.h) */
        }
        else {
            fprintf(stderr, "bench_umt5: unknown option %s\n", a);
            usage(argv[0]);
            return 2;
        }
    }
    row rows[NROWS];
    memset(rows, 0, sizeof rows);
    for (int k = 0; k < NROWS; k++) {
        rows[k].kind = k;
        rows[k].self_same = -1;
        rows[k].rel = NAN;
    }
    { /* --rows: a comma-separated subset of all, real */
        char buf[128];
        snprintf(buf, sizeof buf, "%s", rows_arg);
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int k = 0;
            while (k < NROWS && strcmp(t, ROW_NAME[k])) k++;
            if (k == NROWS) bad = 1;
            else rows[k].on = 1;
        }
        if (!rows[ROW_ALL].on && !rows[ROW_REAL].on) bad = 1;
    }
    c.wdt = !strcmp(dtype, "f32") ? WK_F32 : !strcmp(dtype, "bf16") ? WK_BF16 : WK_DTYPE_COUNT;
    if (bad || c.wdt == WK_DTYPE_COUNT || c.layers < 1 || c.layers > 1000 || c.L < 1 ||
        c.L > 1 << 16 || c.n_real < 1 || c.n_real > c.L || c.vocab < 3 ||
        c.vocab > REAL_VOCAB || iters < 1 || warm < 0 || threads < 0) {
        fprintf(stderr, "bench_umt5: bad value (--layers %d --seq %lld --tokens %lld (1..seq) "
                "--vocab %lld (3..%d) --rows %s --dtype %s -n %d -w %d --threads %d)\n", c.layers,
                (long long)c.L, (long long)c.n_real, (long long)c.vocab, REAL_VOCAB, rows_arg,
                dtype, iters, warm, threads);
        usage(argv[0]);
        return 2;
    }

    /* 1. the folder, written by a child (see bench_dit.c) */
    char dir[1100];
    double write_s = 0;
    if (bu_write_in_child("bench_umt5", write_folder_ctx, &c, keep, dir, sizeof dir, &write_s))
        return 1;

    wf_err err = {0};
    wk_backend *be = NULL;
    t5_model *m = NULL;
    wk_arena arena = {0};
    int64_t *ids64 = malloc((size_t)c.L * sizeof *ids64);
    int64_t *mask64 = malloc((size_t)c.L * sizeof *mask64);
    int32_t *ids = malloc((size_t)c.L * sizeof *ids), *mask = malloc((size_t)c.L * sizeof *mask);
    int failed_runs = 0;
    char path[1200], why[512] = "";
    if (wk_backend_cpu_new(&be, threads, &err) != WF_OK) {
        fprintf(stderr, "bench_umt5: %s\n", err.msg);
        if (!keep) bu_remove_dir(dir);
        return 1;
    }
    threads = be->nthreads;
    omp_set_num_threads(threads);
    double peak = bu_measure_peak(threads);

    /* 2. load (the real loader), size the arena, the prompt (the ids the child wrote) */
    double t0 = bu_now_s();
    wf_status st = t5_load(&m, dir, &err);
    double load_s = bu_now_s() - t0;
    size_t arena_bytes = 0;
    if (!st) st = t5_arena_bytes(m, c.L, &arena_bytes, &err);
    if (!st) st = wk_arena_init(&arena, "umt5 activations", arena_bytes, &err);
    const size_t nout = (size_t)(c.L * DMODEL);
    for (int k = 0; k < NROWS && !st; k++) {
        row *r = &rows[k];
        r->Lc = k == ROW_REAL ? c.n_real : c.L;
        r->flops = t5_flops(c.layers, r->Lc);
        if (!r->on) continue;
        r->out = malloc(nout * sizeof *r->out);
        r->out_first = malloc(nout * sizeof *r->out_first);
        if (!r->out || !r->out_first) st = wf_fail(&err, WF_ENOMEM, "out of memory");
    }
    if (!st && (!ids64 || !mask64 || !ids || !mask)) st = wf_fail(&err, WF_ENOMEM, "out of memory");
    if (!st) {
        make_ids(&c, ids64, mask64);
        for (int64_t i = 0; i < c.L; i++) {
            ids[i] = (int32_t)ids64[i];
            mask[i] = (int32_t)mask64[i];
        }
    }

    printf("# bench_umt5: wanfarm CPU backend, %d threads, OpenBLAS %s\n", threads,
           openblas_get_config());
    printf("# peak: %.1f GFLOP/s (f32 cblas_sgemm 2048^3, best of <= 10 calls after a warm-up)\n",
           peak);
    printf("# model: UMT5EncoderModel at umt5-xxl width (d_model %d, %d heads x d_kv %d, d_ff %d "
           "gated-gelu, %d buckets, max distance %d), %d layer%s (of 24); vocab reduced to %lld "
           "(real %d: only the prompt's rows are read); random weights: T5 init, relative bias "
           "N(0, 1), norm gains 1 + N(0, %.2g)\n", DMODEL, NHEADS, DKV, DFF, NBUCKETS, MAXDIST,
           c.layers, c.layers == 1 ? "" : "s", (long long)c.vocab, REAL_VOCAB, NORM_STD);
    printf("# storage: %s%s; %.1f MiB of weights, mapped (%s)\n", dtype,
           c.wdt == WK_F32 ? "" : " (wo in f32, as transformers' _keep_in_fp32_modules)",
           m ? bu_mib((double)m->weight_bytes) : NAN, dir);
    printf("# input: L %lld tokens, %lld real (random ids, </s> last) then padding 0; warm-up %d, "
           "iters %d (time = median)\n", (long long)c.L, (long long)c.n_real, warm, iters);
    printf("# checkpoint written in %.1f s (child process), t5_load %.3f s; check %s\n", write_s,
           load_s, !check ? "off" : "rel L2 vs torch with padded rows zeroed (bound 1e-4); "
                                     "without torch all <-> real, else self bit-identity");
    fflush(stdout);
    if (st) {
        printf("# FAILED before the forward: %s: %s\n", wf_status_str(st), err.msg);
        failed_runs++;
    }

    /* 3. the peer, alone on the machine, before our forwards */
    peer pr = {0};
    if (!torch) snprintf(pr.why, sizeof pr.why, "--torch 0");
    else if (st) snprintf(pr.why, sizeof pr.why, "our setup failed");
    else peer_run(&pr, dir, threads, warm, iters);
    if (pr.ran)
        printf("# torch peer: torch %s, transformers %s, %d threads (bench/torch_umt5_peer.py: "
               "from_pretrained(dtype=float32) in %.2f s, attention '%s'; all %lld rows, fp32, "
               "no_grad)\n", pr.torch, pr.lib, threads, pr.load_s, pr.str,
               (long long)c.L);
    else printf("# torch peer: skipped (%s)\n", pr.why);
    printf("#\n# %-4s %6s %5s %5s %-4s %9s %9s %6s %8s %6s %10s %-5s %8s %7s %8s %9s\n", "rows",
           "layers", "L", "Lc", "wdt", "ours(ms)", "torch(ms)", "ratio", "GFLOP/s", "%peak",
           "rel-L2", "ref", "arena", "ws", "rss", "torch-rss");
    printf("# %-4s %6s %5s %5s %-4s %9s %9s %6s %8s %6s %10s %-5s %8s %7s %8s %9s\n", "", "", "",
           "", "", "", "", "", "", "", "", "", "(MiB)", "(MiB)", "(MiB)", "(MiB)");
    fflush(stdout);

    /* 4. our forwards, per row: -w warm-up, -n timed; the first output is kept for the self
     * check. Both rows use the one arena (t5_arena_bytes covers both). */
    const int pair = rows[ROW_ALL].on && rows[ROW_REAL].on;
    double *times = malloc((size_t)iters * sizeof *times);
    if (!st && !times) st = wf_fail(&err, WF_ENOMEM, "out of memory");
    for (int k = 0; k < NROWS && !st; k++) {
        row *r = &rows[k];
        if (!r->on) continue;
        const t5_input in = {.L = c.L, .ids = ids, .mask = mask, .real_rows_only = k == ROW_REAL};
        const int self = check && !pr.ran && !pair;
        wf_status rs = WF_OK;
        for (int i = 0; !rs && i < warm + iters + (self && warm + iters < 2); i++) {
            double s0 = bu_now_s();
            rs = t5_forward(m, be, &arena, &in, r->out, NULL, NULL, &err);
            double t = bu_now_s() - s0;
            if (i >= warm && i < warm + iters) times[i - warm] = t;
            if (i == 0 && !rs) memcpy(r->out_first, r->out, nout * sizeof *r->out);
            r->nfwd++;
        }
        if (rs) {
            snprintf(r->err, sizeof r->err, "%s: %.480s", wf_status_str(rs), err.msg);
            failed_runs++;
            continue;
        }
        qsort(times, (size_t)iters, sizeof *times, bu_cmp_double);
        double med = iters % 2 ? times[iters / 2] : 0.5 * (times[iters / 2 - 1] + times[iters / 2]);
        r->ms = med * 1e3;
        r->gflops = r->flops * 1e-9 / med;
        r->pct = 100.0 * r->gflops / peak;
        r->ws_mib = bu_mib((double)be->ws_cap);
        r->rss_mib = bu_peak_rss_mib();
        if (r->nfwd >= 2) r->self_same = memcmp(r->out, r->out_first, nout * sizeof *r->out) == 0;
    }
    free(times);

    /* 5. correctness: rel L2 against transformers' output (padded rows zeroed); without torch,
     * the two rows against each other; else bit-identity of a row's first and last forward */
    long out_of_bounds = 0;
    float *ref_torch = NULL;
    if (!st && check && pr.ran) {
        st_file *tf = NULL;
        const uint64_t so[2] = {(uint64_t)c.L, DMODEL};
        snprintf(path, sizeof path, "%s/torch_out.safetensors", dir);
        if (st_open(&tf, path, &err) == WF_OK)
            ref_torch = bu_load_f32(tf, "out", 2, so, why, sizeof why);
        else snprintf(why, sizeof why, "%.400s", err.msg);
        st_close(&tf);
        if (!ref_torch) printf("# FAILED reading torch's output: %s\n", why);
    }
    double out_rms = NAN;
    size_t pad_nonzero = 0;
    for (int k = 0; k < NROWS && !st; k++) {
        row *r = &rows[k];
        if (!r->on || r->err[0]) continue;
        size_t nonfinite = 0;
        for (size_t i = 0; i < nout; i++) nonfinite += !isfinite(r->out[i]);
        for (size_t i = (size_t)(c.n_real * DMODEL); i < nout; i++)
            pad_nonzero += r->out[i] != 0.0f;
        out_of_bounds += (long)nonfinite;
        if (!isfinite(out_rms)) {
            double s = 0;
            for (size_t i = 0; i < (size_t)(c.n_real * DMODEL); i++)
                s += (double)r->out[i] * r->out[i];
            out_rms = sqrt(s / (double)(c.n_real * DMODEL));
        }
        if (!check) continue;
        const float *ref = NULL;
        if (pr.ran) {
            snprintf(r->check, sizeof r->check, "torch");
            ref = ref_torch;
        } else if (pair) {
            const row *o = &rows[k == ROW_ALL ? ROW_REAL : ROW_ALL];
            snprintf(r->check, sizeof r->check, "%s", ROW_NAME[o->kind]);
            ref = o->err[0] ? NULL : o->out;
        } else {
            snprintf(r->check, sizeof r->check, "self");
            if (r->self_same != 1) out_of_bounds++;
            continue;
        }
        if (ref) r->rel = bu_rel_l2(r->out, ref, nout);
        if (!(r->rel <= REL_L2_TOL)) out_of_bounds++; /* NaN too */
    }
    out_of_bounds += (long)pad_nonzero; /* the pipeline's trim: padded rows are exact zeros */
    free(ref_torch);

    for (int k = 0; k < NROWS && !st; k++) {
        const row *r = &rows[k];
        if (!r->on) continue;
        char tm[16] = "n/a", ra[16] = "n/a", rl[24] = "n/a", trss[16] = "n/a";
        if (pr.ran) {
            snprintf(tm, sizeof tm, "%.1f", pr.ms);
            if (isfinite(pr.ms / r->ms)) snprintf(ra, sizeof ra, "%.2f", pr.ms / r->ms);
            snprintf(trss, sizeof trss, "%.1f", pr.rss_mib);
        }
        if (!strcmp(r->check, "self"))
            snprintf(rl, sizeof rl, "%s", r->self_same == 1 ? "same" : "DIFF");
        else if (r->check[0]) snprintf(rl, sizeof rl, "%.2e", r->rel);
        if (!r->err[0])
            printf("  %-4s %6d %5lld %5lld %-4s %9.1f %9s %6s %8.1f %5.1f%% %10s %-5s %8.1f %7.1f "
                   "%8.1f %9s\n", ROW_NAME[k], c.layers, (long long)c.L, (long long)r->Lc, dtype,
                   r->ms, tm, ra, r->gflops, r->pct, rl, r->check[0] ? r->check : "n/a",
                   bu_mib((double)arena_bytes), r->ws_mib, r->rss_mib, trss);
        else
            printf("  %-4s %6d %5lld %5lld %-4s FAILED: %s\n", ROW_NAME[k], c.layers,
                   (long long)c.L, (long long)r->Lc, dtype, r->err);
    }

    /* 6. footer (the peak RSS before the second sgemm peak measurement, which allocates) */
    double rss = bu_peak_rss_mib();
    double peak_after = bu_measure_peak(threads);
    int noisy = fabs(peak_after - peak) > 0.15 * fmax(peak, peak_after);
    printf("# peak after: %.1f GFLOP/s%s\n", peak_after,
           noisy ? " -- moved by more than 15%: the machine is loaded, timings are noisy" : "");
    printf("# FLOPs per forward : %.1f GFLOP all rows, %.1f GFLOP real rows only (projections, "
           "FFN, attention GEMMs; PERFORMANCE.md)\n", rows[ROW_ALL].flops * 1e-9,
           rows[ROW_REAL].flops * 1e-9);
    for (int k = 0; k < NROWS; k++)
        if (rows[k].self_same >= 0)
            printf("# Repeatability %-4s : forwards 1 and %d %s\n", ROW_NAME[k], rows[k].nfwd,
                   rows[k].self_same ? "bit-identical" : "DIFFER (not bit-identical)");
    if (isfinite(out_rms))
        printf("# Output : rms %.3f over the real rows; %zu nonzero values in padded rows\n",
               out_rms, pad_nonzero);
    int ok = bu_print_footer(rss, pr.ran, pr.rss_mib, pr.rss_import_mib, "torch and transformers",
                             out_of_bounds, failed_runs);

    if (json) {
        json_t *o = bu_json_header("bench_umt5", threads, peak, peak_after, noisy, warm, iters),
               *ja = json_array();
        json_object_set_new(o, "layers", json_integer(c.layers));
        json_object_set_new(o, "L", json_integer(c.L));
        json_object_set_new(o, "n_real", json_integer(c.n_real));
        json_object_set_new(o, "vocab", json_integer(c.vocab));
        json_object_set_new(o, "dtype", json_string(dtype));
        json_object_set_new(o, "torch", pr.ran ? json_string(pr.torch) : json_null());
        json_object_set_new(o, "transformers", pr.ran ? json_string(pr.lib) : json_null());
        json_object_set_new(o, "weights_mib", bu_real_or_null(m ? bu_mib((double)m->weight_bytes) : NAN));
        json_object_set_new(o, "arena_mib", bu_real_or_null(bu_mib((double)arena_bytes)));
        for (int k = 0; k < NROWS; k++) {
            const row *r = &rows[k];
            if (!r->on || st) continue;
            json_t *jr = json_object();
            const int good = !r->err[0];
            json_object_set_new(jr, "rows", json_string(ROW_NAME[k]));
            json_object_set_new(jr, "Lc", json_integer(r->Lc));
            json_object_set_new(jr, "ok", json_boolean(good));
            json_object_set_new(jr, "ms", bu_real_or_null(good ? r->ms : NAN));
            json_object_set_new(jr, "gflop", bu_real_or_null(r->flops * 1e-9));
            json_object_set_new(jr, "gflops", bu_real_or_null(good ? r->gflops : NAN));
            json_object_set_new(jr, "pct_peak", bu_real_or_null(good ? r->pct : NAN));
            json_object_set_new(jr, "torch_ms", bu_real_or_null(pr.ran ? pr.ms : NAN));
            json_object_set_new(jr, "ratio", bu_real_or_null(pr.ran && good ? pr.ms / r->ms : NAN));
            json_object_set_new(jr, "check", r->check[0] ? json_string(r->check) : json_null());
            json_object_set_new(jr, "rel_l2", bu_real_or_null(r->rel));
            json_object_set_new(jr, "self_identical",
                                r->self_same < 0 ? json_null() : json_boolean(r->self_same));
            json_object_set_new(jr, "ws_mib", bu_real_or_null(good ? r->ws_mib : NAN));
            json_object_set_new(jr, "rss_mib", bu_real_or_null(good ? r->rss_mib : NAN));
            json_object_set_new(jr, "error", good ? json_null() : json_string(r->err));
            json_array_append_new(ja, jr);
        }
        json_object_set_new(o, "rows", ja);
        json_object_set_new(o, "rss_mib", bu_real_or_null(rss));
        json_object_set_new(o, "torch_rss_mib", bu_real_or_null(pr.ran ? pr.rss_mib : NAN));
        json_object_set_new(o, "torch_rss_import_mib",
                            bu_real_or_null(pr.ran ? pr.rss_import_mib : NAN));
        json_object_set_new(o, "out_of_bounds", json_integer(out_of_bounds));
        json_object_set_new(o, "failed_runs", json_integer(failed_runs));
        json_object_set_new(o, "ok", json_boolean(ok));
        if (bu_write_json(json, o, "bench_umt5")) ok = 0;
        json_decref(o);
    }

    for (int k = 0; k < NROWS; k++) {
        free(rows[k].out);
        free(rows[k].out_first);
    }
    free(ids64);
    free(mask64);
    free(ids);
    free(mask);
    wk_arena_free(&arena);
    t5_free(&m);
    wk_backend_destroy(&be);
    if (keep) printf("# kept %s\n", dir);
    else bu_remove_dir(dir);
    return ok ? 0 : 1;
}
