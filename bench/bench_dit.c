/* bench_dit.c: one DiT forward (WanTransformer3DModel), wanfarm vs PyTorch/Diffusers, a plug-in of
 * the bench engine (bench_engine.h), in the nccl-tests shape.
 *
 * What it is: writes a random-weight checkpoint of the Wan2.1-1.3B block width (D 1536, 12 heads
 * of 128, FFN 8960, text_dim 4096; --layers blocks) in the real Diffusers layout (config.json +
 * diffusion_pytorch_model.safetensors, --dtype storage) and random inputs into a temporary folder,
 * from a child process so that none of that memory counts in this process' peak RSS. It then
 * loads the folder with dit_load (the real loader), sizes the arena with dit_arena_bytes, and the
 * engine runs -w warm-up and -n timed dit_forward calls (median) and prints one row: time, GFLOP/s
 * and % of the measured sgemm peak, the PyTorch/Diffusers time of the same forward on the same
 * folder and inputs (bench/torch_dit_peer.py, run first, alone) and the ratio, the relative L2
 * error of our output against Diffusers' (or, with the peer skipped, whether two of our forwards
 * are bit-identical), and memory: arena, backend workspace, and both processes' peak RSS. A footer
 * says OK or FAILED; the exit status is 1 when it says FAILED. Metrics: bench/PERFORMANCE.md.
 * What it is not: a test (tests/test_dit.c owns correctness against fixtures), a GPU benchmark
 * (yet), or a whole-pipeline benchmark (one forward, no text encoder, VAE or scheduler).
 * Run:   build/bench/bench_dit [--layers 2 --latent 5,40,80 --text-len 512 --dtype f32|bf16
 *                               -w 1 -n 3 --threads N --check 1 --torch 1 --json FILE --keep 0]
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "backend.h"
#include "bench_dit_ckpt.h"
#include "bench_engine.h"
#include "dit.h"
#include "safetensors.h"

/* The fixed part of the config: Wan2.1-1.3B's block width (bench_dit_ckpt.h). */
enum { NHEADS = BDC_NHEADS, HDIM = BDC_HDIM, DIM = BDC_DIM, CIN = BDC_CIN, COUT = BDC_COUT,
       TEXT_DIM = BDC_TEXT_DIM, ROPE_MAX = BDC_ROPE_MAX,
       FREQ_DIM = BDC_FREQ_DIM, FFN_DIM = BDC_FFN_DIM, PT = BDC_PT, PH = BDC_PH, PW = BDC_PW };
#define TIMESTEP 999.0f
#define WEIGHT_STD BDC_WEIGHT_STD

typedef struct bcfg {
    int layers;
    int64_t F, H, W, Lt;
    wk_dtype wdt;
} bcfg;

/* ------------------------------------------------------------------------------------------ */
/* the checkpoint: every tensor of WanTransformer3DModel (no image branch), Diffusers names */

/* Runs in the child: config.json, diffusion_pytorch_model.safetensors, inputs.safetensors. */
static int write_folder(const char *dir, const bcfg *c) {
    char path[1200];
    wf_err err = {0};
    if (bdc_write(dir, c->layers, c->wdt, "bench_dit")) return 1;
    int rc = 1;
    /* inputs: latents N(0, 1) [Cin, F, H, W], timestep [1], text N(0, 1) [Lt, text_dim] */
    const size_t nlat = (size_t)(CIN * c->F * c->H * c->W), ntxt = (size_t)(c->Lt * TEXT_DIM);
    float *lat = malloc(nlat * sizeof *lat), *txt = malloc(ntxt * sizeof *txt), ts = TIMESTEP;
    if (lat && txt) {
        bu_fill_normal(lat, nlat, 0.0, 1.0, bu_name_seed("latents"));
        bu_fill_normal(txt, ntxt, 0.0, 1.0, bu_name_seed("text"));
        const uint64_t sl[4] = {CIN, (uint64_t)c->F, (uint64_t)c->H, (uint64_t)c->W};
        const uint64_t st1[1] = {1}, stx[2] = {(uint64_t)c->Lt, TEXT_DIM};
        const st_item in[3] = {{"latents", ST_F32, 4, sl, lat},
                               {"timestep", ST_F32, 1, st1, &ts},
                               {"text", ST_F32, 2, stx, txt}};
        snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
        if (st_write(path, in, 3, NULL, 0, &err) != WF_OK) fprintf(stderr, "bench_dit: %s\n", err.msg);
        else rc = 0;
    } else {
        fprintf(stderr, "bench_dit: out of memory\n");
    }
    free(lat);
    free(txt);
    return rc;
}

static int write_folder_ctx(const char *dir, const void *ctx) { return write_folder(dir, ctx); }

/* FLOPs of one forward: the matmuls and the attention GEMMs (PERFORMANCE.md, "bench_dit"). */
static double dit_flops(const bcfg *c, int64_t L) {
    const double D = DIM, FF = FFN_DIM, Lt = (double)c->Lt, l = (double)L, P = PT * PH * PW;
    double block = 4 * 2 * l * D * D      /* self-attention q, k, v, out projections */
                   + 4 * l * l * D        /* self-attention: Q K^T and P V over NH heads of HD */
                   + 2 * 2 * l * D * D    /* cross-attention q and out projections */
                   + 2 * 2 * Lt * D * D   /* cross-attention k and v projections of the text */
                   + 4 * l * Lt * D       /* cross-attention */
                   + 2 * 2 * l * D * FF;  /* FFN up and down */
    double small = 2 * l * D * (CIN * P)                                /* patch embedding */
                   + 2 * (FREQ_DIM * D + D * D + 6 * D * D)            /* time embedder + proj */
                   + 2 * Lt * (TEXT_DIM * D + D * D)                    /* text embedder */
                   + 2 * l * D * (COUT * P);                            /* head */
    return c->layers * block + small;
}

/* ------------------------------------------------------------------------------------------ */
/* the plug-in: one row, one forward per call */

static struct {
    bcfg c;
    int64_t L;
    dit_model *m;
    dit_shape shp;
    wk_arena arena;
    size_t arena_bytes;
    double load_s;
    float *lat, *ts, *txt, *out; /* inputs; out [Cout, F, H, W] */
    float *ref;                  /* the peer's output, once read */
} D = {.c = {.layers = 2, .F = 5, .H = 40, .W = 80, .Lt = 512}};

static int parse_latent(const char *v, void *dst) {
    (void)dst;
    return bu_parse_latent(v, CIN, &D.c.F, &D.c.H, &D.c.W);
}

/* The shape's limits, then the folder, written by a child: its memory never counts in our peak
 * RSS, and it runs before any OpenMP thread exists here. */
static int dit_init(bn_run *e) {
    bcfg *c = &D.c;
    c->wdt = e->o.wdt;
    if (c->F < 1 || c->H < 2 || c->W < 2 || c->H % PH || c->W % PW || c->F > ROPE_MAX ||
        c->H / PH > ROPE_MAX || c->W / PW > ROPE_MAX) {
        fprintf(stderr, "bench_dit: bad value --latent %lld,%lld,%lld (H, W even; F, H/2, W/2 at "
                "most %d)\n", (long long)c->F, (long long)c->H, (long long)c->W, ROPE_MAX);
        return 2;
    }
    D.L = (c->F / PT) * (c->H / PH) * (c->W / PW);
    return bu_write_in_child("bench_dit", write_folder_ctx, c, e->o.keep, e->dir, sizeof e->dir,
                             &e->write_s);
}

/* Load (the real loader), size the arena, read the inputs; the header lines. */
static wf_status dit_setup(bn_run *e, wf_err *err) {
    const bcfg *c = &D.c;
    char path[1200], why[512] = "";
    double t0 = bu_now_s();
    wf_status st = dit_load(&D.m, e->dir, err);
    D.load_s = bu_now_s() - t0;
    D.shp = (dit_shape){.F = c->F, .H = c->H, .W = c->W, .Lt = c->Lt, .per_token_t = false};
    if (!st) st = dit_arena_bytes(D.m, e->be, &D.shp, 1, &D.arena_bytes, err);
    if (!st) st = wk_arena_init(&D.arena, "dit activations", D.arena_bytes, err);
    st_file *inf = NULL;
    snprintf(path, sizeof path, "%s/inputs.safetensors", e->dir);
    if (!st) st = st_open(&inf, path, err);
    if (!st) {
        const uint64_t sl[4] = {CIN, (uint64_t)c->F, (uint64_t)c->H, (uint64_t)c->W};
        const uint64_t s1[1] = {1}, stx[2] = {(uint64_t)c->Lt, TEXT_DIM};
        D.lat = bu_load_f32(inf, "latents", 4, sl, why, sizeof why);
        if (D.lat) D.ts = bu_load_f32(inf, "timestep", 1, s1, why, sizeof why);
        if (D.ts) D.txt = bu_load_f32(inf, "text", 2, stx, why, sizeof why);
        D.out = malloc((size_t)(COUT * c->F * c->H * c->W) * sizeof *D.out);
        if (!D.txt || !D.out) st = wf_fail(err, WF_ENOMEM, "%s", *why ? why : "out of memory");
        st_close(&inf);
    }
    printf("# model: WanTransformer3DModel at Wan2.1-1.3B width (D %d = %dx%d, FFN %d, text_dim %d, "
           "patch %dx%dx%d), %d layer%s, random weights N(0, %.2g), norm gains 1 + N(0, %.2g)\n",
           DIM, NHEADS, HDIM, FFN_DIM, TEXT_DIM, PT, PH, PW, c->layers, c->layers == 1 ? "" : "s",
           WEIGHT_STD, WEIGHT_STD);
    printf("# storage: %s%s; %.1f MiB of weights, mapped (%s)\n", e->o.dtype,
           c->wdt == WK_F32 ? "" : " (scale_shift_table, time_embedder, norm2 in f32, as Diffusers "
                                   "keeps them)",
           D.m ? bu_mib((double)D.m->weight_bytes) : NAN, e->dir);
    printf("# input: latent %dx%lldx%lldx%lld -> L %lld tokens, text Lt %lld, timestep %g; "
           "warm-up %d, iters %d (time = median)\n", CIN, (long long)c->F, (long long)c->H,
           (long long)c->W, (long long)D.L, (long long)c->Lt, (double)TIMESTEP, e->o.warm,
           e->o.iters);
    printf("# checkpoint written in %.1f s (child process), dit_load %.3f s; check %s\n",
           e->write_s, D.load_s,
           !e->o.check ? "off" : "rel L2 vs torch (bound 1e-4), or self bit-identity without it");
    e->nrows = 1;
    return st;
}

/* torch_dit_peer.py on the folder (bu_peer_run), alone on the machine, before our forwards. */
static void dit_peer(bn_run *e, char *detail, size_t n) {
    static const bu_peer_spec spec = {"torch, diffusers", "torch_dit_peer.py", "ms", "diffusers",
                                      NULL, NULL};
    bu_peer_run(&e->peer, &spec, WANFARM_BENCH_DIR, e->dir, e->o.threads, e->o.warm, e->o.iters, "");
    snprintf(detail, n, "bench/torch_dit_peer.py: from_pretrained + .float() in %.2f s%s; fp32 "
             "compute, no_grad", e->peer.load_s,
             D.c.wdt == WK_F32 ? "" : ": both sides compute in fp32 on the same bf16-rounded weights");
}

static wf_status dit_row(bn_run *e, int i, bn_row *r, wf_err *err) {
    (void)i;
    (void)err;
    snprintf(r->cell[0], BN_CELL, "%d", D.c.layers);
    snprintf(r->cell[1], BN_CELL, "%lld", (long long)D.L);
    snprintf(r->cell[2], BN_CELL, "%lld", (long long)D.c.Lt);
    snprintf(r->cell[3], BN_CELL, "%s", e->o.dtype);
    r->flops = dit_flops(&D.c, D.L);
    r->torch_ms = e->peer.ran ? e->peer.ms : NAN;
    r->arena_mib = bu_mib((double)D.arena_bytes);
    r->out = D.out;
    r->nout = (size_t)(COUT * D.c.F * D.c.H * D.c.W);
    return WF_OK;
}

static wf_status dit_run(bn_run *e, int i, int call, wf_err *err) {
    (void)i;
    (void)call;
    return dit_forward(D.m, e->be, &D.arena, &D.shp, NULL, D.lat, D.ts, D.txt, D.out, NULL, NULL, err);
}

static const float *dit_reference(bn_run *e, int i) {
    (void)i;
    const uint64_t so[4] = {COUT, (uint64_t)D.c.F, (uint64_t)D.c.H, (uint64_t)D.c.W};
    if (!D.ref) D.ref = bn_peer_output(e, "out", 4, so);
    return D.ref;
}

static void dit_footer(bn_run *e) {
    printf("# FLOPs per forward : %.1f GFLOP (matmuls + attention GEMMs, PERFORMANCE.md)\n",
           dit_flops(&D.c, D.L) * 1e-9);
    const bn_row *r = e->nrows ? &e->rows[0] : NULL;
    if (r && r->self_same >= 0)
        printf("# Repeatability : forwards 1 and %d %s\n", r->calls,
               r->self_same ? "bit-identical" : "DIFFER (not bit-identical)");
}

/* The config and the one row, as one object (keys as the columns). */
static void dit_json(bn_run *e, json_t *o) {
    json_t *lt = json_array();
    json_array_append_new(lt, json_integer(CIN));
    json_array_append_new(lt, json_integer(D.c.F));
    json_array_append_new(lt, json_integer(D.c.H));
    json_array_append_new(lt, json_integer(D.c.W));
    json_object_set_new(o, "layers", json_integer(D.c.layers));
    json_object_set_new(o, "latent", lt);
    json_object_set_new(o, "L", json_integer(D.L));
    json_object_set_new(o, "Lt", json_integer(D.c.Lt));
    const double weights = D.m ? bu_mib((double)D.m->weight_bytes) : NAN;
    json_object_set_new(o, "weights_mib", bu_real_or_null(weights));
    if (e->nrows) bn_row_json(e, &e->rows[0], o);
}

static void dit_teardown(bn_run *e) {
    (void)e;
    free(D.lat);
    free(D.ts);
    free(D.txt);
    free(D.out);
    free(D.ref);
    wk_arena_free(&D.arena);
    dit_free(&D.m);
}

static const bn_flag dit_flags[] = {{"--layers", "N", 'i', &D.c.layers, 1, 1000, NULL},
                                    {"--latent", "[16,]F,H,W", 'p', NULL, 0, 0, parse_latent},
                                    {"--text-len", "N", 'l', &D.c.Lt, 1, 1 << 20, NULL},
                                    {NULL, NULL, 0, NULL, 0, 0, NULL}};

static const bn_col dit_cols[] = {
    {"layers", NULL, -6, BN_TEXT, NULL},       {"L", NULL, 5, BN_TEXT, NULL},
    {"Lt", NULL, 5, BN_TEXT, NULL},            {"wdt", NULL, -4, BN_TEXT, NULL},
    {"ours(ms)", NULL, 10, BN_MS, NULL},       {"torch(ms)", NULL, 10, BN_TORCH_MS, NULL},
    {"ratio", NULL, 6, BN_RATIO, "%.2f"},      {"GFLOP/s", NULL, 8, BN_GFLOPS, NULL},
    {"%peak", NULL, 6, BN_PCT, "%.1f%%"},      {"rel-L2", NULL, 12, BN_ERROR, "%.2e"},
    {"arena", "(MiB)", 9, BN_ARENA, NULL},     {"ws", "(MiB)", 8, BN_WS, NULL},
    {"rss", "(MiB)", 9, BN_RSS, NULL},         {"torch-rss", "(MiB)", 9, BN_TORCH_RSS, NULL}};

static const bn_bench dit_bench = {
    .name = "bench_dit", .note = "Metrics are defined in bench/PERFORMANCE.md (section bench_dit).",
    .flags = dit_flags, .flag_set = BN_DTYPE | BN_TORCH | BN_KEEP | BN_BACKEND | BN_PEAK,
    .warm = 1, .iters = 3, .cols = dit_cols, .ncols = 14, .nkeys = 4, .peer_lib = "diffusers",
    .init = dit_init, .setup = dit_setup, .peer = dit_peer, .row = dit_row, .run = dit_run,
    .reference = dit_reference, .footer = dit_footer, .json = dit_json, .teardown = dit_teardown};

int main(int argc, char **argv) { return bn_main(&dit_bench, argc, argv); }
