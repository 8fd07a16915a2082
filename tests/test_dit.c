/* test_dit.c: the Wan DiT (worker/dit_*.c) against Diffusers' WanTransformer3DModel.
 *
 * For each case in tests/fixtures/dit (made by make_dit_fixtures.py with diffusers, fp32):
 *   - the output equals Diffusers' within relative L2 1e-5 (an fp32 forward through a dozen
 *     GEMMs per block; the measured errors are ~1e-7, so 1e-5 leaves room for BLAS and libm
 *     differences between machines and still catches any wrong formula);
 *   - every stage (patch tokens, temb, the six timestep_proj chunks, context, each block, the head)
 *     is compared too, and printed with --stages, to locate a mismatch;
 *   - the arena size from the measuring pass is exactly what the forward uses, and a second
 *     forward does not grow the backend workspace;
 *   - the official Wan names give the same output as the Diffusers names;
 *   - broken checkpoints and configs are refused with messages naming the tensor or field;
 *   - a scaled-fp8 checkpoint (ComfyUI's fp8_scaled: e4m3 weights, a ".scale_weight" each)
 *     computes exactly what its dequantised f32 copy computes, and bad scales are refused.
 * Usage: test_dit FIXTURES_DIR [--stages]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dit.h"
#include "test_util.h"

static const char *fixtures;
static bool show_stages;
static wk_backend *be;

typedef struct golden {
    st_file *io;
    const char *label;
    int per_token;
    int64_t D, L;
    double worst;
    const char *worst_stage;
} golden;

static const float *io_tensor(st_file *f, const char *name, size_t *n) {
    const st_tensor *t = st_file_find(f, name);
    if (!t || t->dtype != ST_F32) return NULL;
    if (n) *n = t->numel;
    return (const float *)t->data;
}

static void tap(void *ctx, const char *stage, const wk_tensor *t) {
    golden *g = ctx;
    size_t n = 0, want_n = (size_t)wk_tensor_numel(t);
    const float *ref;
    float *tmp = NULL;
    if (!strncmp(stage, "timestep_proj.", 14)) { /* ours: chunk j [Tn, D]; theirs [1, (Tn,) 6, D] */
        int j = atoi(stage + 14);
        const float *all = io_tensor(g->io, "timestep_proj", &n);
        if (!all) return;
        int64_t Tn = (int64_t)(n / (6 * (size_t)g->D));
        tmp = malloc(want_n * sizeof *tmp);
        for (int64_t r = 0; r < Tn; r++)
            memcpy(tmp + r * g->D, all + (r * 6 + j) * g->D, (size_t)g->D * sizeof *tmp);
        ref = tmp;
        n = (size_t)(Tn * g->D);
    } else {
        ref = io_tensor(g->io, stage, &n);
        if (!ref) return; /* the fixture does not store this stage */
    }
    TU_CHECK(n == want_n, "%s %s: %zu values, the reference has %zu", g->label, stage, want_n, n);
    if (n == want_n) {
        double e = tu_rel_l2_f(t->data, ref, n);
        if (show_stages) printf("    %-18s rel L2 %.3e\n", stage, e);
        TU_CHECK(e <= 1e-5, "%s stage %s: rel L2 %.3e > 1e-5", g->label, stage, e);
        if (e > g->worst) {
            g->worst = e;
            g->worst_stage = stage;
        }
    }
    free(tmp);
}

/* Runs case `cname` (its io.safetensors) with the transformer folder `dir`, described as `tdir`
 * in the report; returns the output (malloc'd). */
static float *run_case(const char *cname, const char *dir, const char *tdir, double *err_out) {
    char io_path[4200];
    snprintf(io_path, sizeof io_path, "%s/dit/%s/io.safetensors", fixtures, cname);
    dit_model *m = NULL;
    wf_err err = {0};
    TU_CHECK(dit_load(&m, dir, &err) == WF_OK, "%s: load: %s", cname, err.msg);
    golden g = {.label = cname};
    TU_CHECK(st_open(&g.io, io_path, &err) == WF_OK, "%s: %s", cname, err.msg);
    if (!m || !g.io) {
        dit_free(&m);
        st_close(&g.io);
        return NULL;
    }
    const st_tensor *hs = st_file_find(g.io, "hidden_states"), *ts = st_file_find(g.io, "timestep"),
                    *eh = st_file_find(g.io, "encoder_hidden_states"), *ot = st_file_find(g.io, "output");
    TU_CHECK(hs && ts && eh && ot && hs->ndim == 5 && eh->ndim == 3, "%s: io tensors", cname);
    float *out = NULL;
    if (!(hs && ts && eh && ot && hs->ndim == 5 && eh->ndim == 3)) goto done;
    dit_shape s = {.F = (int64_t)hs->shape[2], .H = (int64_t)hs->shape[3], .W = (int64_t)hs->shape[4],
                   .Lt = (int64_t)eh->shape[1], .per_token_t = ts->numel > 1};
    g.D = m->cfg.dim;
    size_t bytes = 0;
    TU_CHECK(dit_arena_bytes(m, be, &s, 1, &bytes, &err) == WF_OK, "%s: %s", cname, err.msg);
    wk_arena ar;
    TU_CHECK(wk_arena_init(&ar, "dit test", bytes, &err) == WF_OK, "%s", err.msg);
    out = malloc(ot->numel * sizeof *out);
    if (show_stages) printf("  %s (%s):\n", cname, tdir);
    wf_status st = dit_forward(m, be, &ar, &s, NULL, (const float *)hs->data, (const float *)ts->data,
                               (const float *)eh->data, out, tap, &g, &err);
    TU_CHECK(st == WF_OK, "%s: forward: %s", cname, err.msg);
    TU_CHECK(ar.peak == bytes, "%s: the forward used %zu arena bytes, the measuring pass said %zu",
             cname, ar.peak, bytes);
    TU_CHECK(ar.used == 0, "%s: the arena is reset after the forward", cname);
    double e = tu_rel_l2_f(out, (const float *)ot->data, ot->numel);
    *err_out = e;
    TU_CHECK(e <= 1e-5, "%s: output rel L2 %.3e > 1e-5 (worst stage %s at %.3e)", cname, e,
             g.worst_stage ? g.worst_stage : "-", g.worst);
    /* a second forward: same result, no workspace growth */
    unsigned grows = be->ws_grows;
    float *out2 = malloc(ot->numel * sizeof *out2);
    st = dit_forward(m, be, &ar, &s, NULL, (const float *)hs->data, (const float *)ts->data,
                     (const float *)eh->data, out2, NULL, NULL, &err);
    TU_CHECK(st == WF_OK && memcmp(out, out2, ot->numel * sizeof *out) == 0,
             "%s: a second forward must give the same bits", cname);
    TU_CHECK(be->ws_grows == grows, "%s: the second forward grew the workspace", cname);
    free(out2);
    printf("  %-16s %-22s L=%-5lld output rel L2 %.2e  (worst stage %s %.2e), arena %.1f KiB\n",
           cname, tdir, (long long)(s.F * s.H * s.W / (m->cfg.patch_size[0] * m->cfg.patch_size[1] *
                                                        m->cfg.patch_size[2])),
           e, g.worst_stage ? g.worst_stage : "-", g.worst, (double)bytes / 1024);
    wk_arena_free(&ar);
done:
    st_close(&g.io);
    dit_free(&m);
    return out;
}

/* ---- broken checkpoints ---- */
static char *tmp;

/* Copies the diffusers_test transformer into tmp/t with `edit` applied to each item. */
typedef int (*item_edit)(st_item *it, void *ctx); /* returns 0 to drop the item */
/* extra: when not NULL, a copy of blocks.1.ffn.net.2.bias is added under this name */
static void write_copy_extra(const char *config_json, item_edit edit, void *ctx, const char *extra) {
    char src[4096], dst[4200];
    snprintf(src, sizeof src, "%s/dit/diffusers_test/transformer", fixtures);
    snprintf(dst, sizeof dst, "%s/t", tmp);
    tu_rmtree(dst);
    mkdir(dst, 0755);
    st_checkpoint *c = NULL;
    wf_err err;
    if (st_checkpoint_open(&c, src, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    st_item *items = calloc(c->n_tensors + 1, sizeof *items);
    size_t n = 0;
    for (size_t i = 0; i < c->n_tensors; i++) {
        const st_tensor *t = c->by_name[i];
        items[n] = (st_item){t->name, t->dtype, t->ndim, t->shape, t->data};
        if (!edit || edit(&items[n], ctx)) n++;
    }
    if (extra) {
        const st_tensor *t = st_checkpoint_find(c, "blocks.1.ffn.net.2.bias");
        items[n++] = (st_item){extra, t->dtype, t->ndim, t->shape, t->data};
    }
    char p[4300];
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model.safetensors", dst);
    if (st_write(p, items, n, NULL, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    free(items);
    st_checkpoint_close(&c);
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/dit/diffusers_test/transformer/config.json", fixtures);
    FILE *f = fopen(cfg, "rb");
    char buf[8192];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    snprintf(p, sizeof p, "%s/config.json", dst);
    if (config_json) tu_write_file(p, config_json, strlen(config_json));
    else tu_write_file(p, buf, len);
}

static void write_copy(const char *config_json, item_edit edit, void *ctx) {
    write_copy_extra(config_json, edit, ctx, NULL);
}

static int drop_named(st_item *it, void *ctx) { return strcmp(it->name, ctx) != 0; }

static uint64_t narrow_shape[2];
static int narrow_ffn(st_item *it, void *ctx) {
    if (strcmp(it->name, ctx) == 0) { /* claim one row fewer: same bytes prefix, smaller shape */
        narrow_shape[0] = it->shape[0] - 1;
        narrow_shape[1] = it->shape[1];
        it->shape = narrow_shape;
    }
    return 1;
}

static void expect_load_error(const char *what, const char *needle) {
    char d[4200];
    snprintf(d, sizeof d, "%s/t", tmp);
    dit_model *m = NULL;
    wf_err err = {0};
    TU_CHECK(dit_load(&m, d, &err) != WF_OK && m == NULL, "%s: accepted", what);
    TU_CHECK(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, needle);
}

static void test_broken(void) {
    write_copy(NULL, drop_named, "blocks.1.attn2.to_k.bias");
    expect_load_error("missing tensor", "tensor 'blocks.1.attn2.to_k.bias' is missing");
    write_copy(NULL, narrow_ffn, "blocks.0.ffn.net.0.proj.weight");
    expect_load_error("wrong shape", "tensor 'blocks.0.ffn.net.0.proj.weight' has shape [31, 24]");
    write_copy_extra(NULL, NULL, NULL, "blocks.2.ffn.net.2.bias");
    expect_load_error("tensor beyond num_layers", "config does not use, e.g. 'blocks.2.ffn.net.2.bias'");
    /* a config that disagrees with the tensors */
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/dit/diffusers_test/transformer/config.json", fixtures);
    FILE *f = fopen(cfg, "rb");
    char buf[8192];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    char *edited = malloc(len + 64);
    const char *k = strstr(buf, "\"ffn_dim\": 32");
    TU_CHECK(k != NULL, "fixture config has ffn_dim 32");
    if (k) {
        snprintf(edited, len + 64, "%.*s\"ffn_dim\": 64%s", (int)(k - buf), buf, k + 13);
        write_copy(edited, NULL, NULL);
        expect_load_error("config ffn_dim disagrees", "has shape [32, 24], but config.json");
    }
    k = strstr(buf, "\"num_layers\": 2");
    TU_CHECK(k != NULL, "fixture config has num_layers 2");
    if (k) {
        snprintf(edited, len + 64, "%.*s\"num_layers\": 1%s", (int)(k - buf), buf, k + 15);
        write_copy(edited, NULL, NULL);
        expect_load_error("config num_layers disagrees", "the config does not use, e.g. 'blocks.1.");
        snprintf(edited, len + 64, "%.*s\"num_layers\": 3%s", (int)(k - buf), buf, k + 15);
        write_copy(edited, NULL, NULL);
        expect_load_error("config num_layers too large", "'blocks.2.");
    }
    free(edited);
    write_copy(NULL, drop_named, "condition_embedder.time_proj.weight");
    expect_load_error("not a Wan checkpoint", "not a Wan transformer checkpoint");

    /* shapes the model cannot run */
    char d[4200];
    snprintf(d, sizeof d, "%s/dit/diffusers_test/transformer", fixtures);
    dit_model *m = NULL;
    wf_err err;
    if (dit_load(&m, d, &err) == WF_OK) {
        dit_shape s = {.F = 2, .H = 15, .W = 16, .Lt = 3};
        TU_CHECK(dit_check_shape(m, &s, &err) == WF_EINVAL && strstr(err.msg, "height 15"),
                 "odd height: %s", err.msg);
        s.H = 16;
        s.W = 2 * (m->cfg.rope_max_seq_len + 1);
        TU_CHECK(dit_check_shape(m, &s, &err) == WF_EINVAL && strstr(err.msg, "rope_max_seq_len"),
                 "too wide: %s", err.msg);
        s.W = 16;
        s.Lt = 0;
        TU_CHECK(dit_check_shape(m, &s, &err) == WF_EINVAL, "no text tokens");
        s.Lt = 3;
        wk_arena small;
        wk_arena_init(&small, "too small", 1024, &err);
        float dummy[4];
        TU_CHECK(dit_forward(m, be, &small, &s, NULL, dummy, dummy, dummy, dummy, NULL, NULL, &err) ==
                         WF_ENOMEM &&
                     strstr(err.msg, "too small"),
                 "a too-small arena is refused: %s", err.msg);
        wk_arena_free(&small);
        dit_free(&m);
    }
}

/* The official checkpoint as ComfyUI stores it: every name under "model.diffusion_model.". */
static void write_comfyui_copy(void) {
    char src[4096], dst[4200], p[4300];
    snprintf(src, sizeof src, "%s/dit/l3_h4_d16/transformer_official", fixtures);
    snprintf(dst, sizeof dst, "%s/comfy", tmp);
    mkdir(dst, 0755);
    st_checkpoint *c = NULL;
    wf_err err;
    if (st_checkpoint_open(&c, src, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    st_item *items = calloc(c->n_tensors, sizeof *items);
    char **names = calloc(c->n_tensors, sizeof *names);
    for (size_t i = 0; i < c->n_tensors; i++) {
        const st_tensor *t = c->by_name[i];
        names[i] = malloc(strlen(t->name) + 32);
        sprintf(names[i], "model.diffusion_model.%s", t->name);
        items[i] = (st_item){names[i], t->dtype, t->ndim, t->shape, t->data};
    }
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model.safetensors", dst);
    TU_CHECK(st_write(p, items, c->n_tensors, NULL, 0, &err) == WF_OK, "%s", err.msg);
    for (size_t i = 0; i < c->n_tensors; i++) free(names[i]);
    free(names);
    free(items);
    st_checkpoint_close(&c);
    char cfg_src[4200], cfg_dst[4300];
    snprintf(cfg_src, sizeof cfg_src, "%s/config.json", src);
    snprintf(cfg_dst, sizeof cfg_dst, "%s/config.json", dst);
    FILE *f = fopen(cfg_src, "rb");
    char buf[8192];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    tu_write_file(cfg_dst, buf, len);
}

/* ---- scaled fp8 (ComfyUI's "fp8_scaled" files) ---- */

/* A Linear weight w [numel] quantised as a scaled-fp8 file stores it: *scale = amax / 448, q8 =
 * e4m3(w / scale), and the dequantised values deq = f32(e4m3) x scale (torch's w.float() * s). */
static void quantise_fp8(const float *w, size_t numel, float *scale, unsigned char *q8,
                         float *deq) {
    float amax = 0;
    for (size_t k = 0; k < numel; k++) amax = fmaxf(amax, fabsf(w[k]));
    *scale = amax > 0 ? amax / 448.0f : 1.0f;
    for (size_t k = 0; k < numel; k++) deq[k] = w[k] / *scale;
    wk_convert_from_f32(q8, WK_F8E4M3, deq, numel);
    wk_convert_to_f32(deq, q8, WK_F8E4M3, numel);
    for (size_t k = 0; k < numel; k++) deq[k] = deq[k] * *scale;
}

/* Two copies of the l3_h4_d16 official checkpoint under ComfyUI's prefix: <tmp>/fp8, every 2-D
 * ".weight" quantised to e4m3 with the per-tensor scale amax / 448 and its ".scale_weight" [1]
 * beside it, plus the "scaled_fp8" marker; <tmp>/fp8_ref, the same weights dequantised to f32
 * (e4m3 value x scale, rounded to f32: torch's w.float() * scale_weight). bad: 0 none, 1 a
 * scale beside an f32 weight too, 2 a scale of two values. */
static void write_fp8_copies(int bad) {
    char src[4096], p[4300];
    snprintf(src, sizeof src, "%s/dit/l3_h4_d16/transformer_official", fixtures);
    st_checkpoint *c = NULL;
    wf_err err;
    if (st_checkpoint_open(&c, src, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    const size_t n = c->n_tensors;
    st_item *q = calloc(2 * n + 2, sizeof *q), *r = calloc(n, sizeof *r);
    char **names = calloc(3 * n, sizeof *names);
    void **bufs = calloc(2 * n, sizeof *bufs);
    float *scales = calloc(n + 1, sizeof *scales);
    static const uint64_t one = 1, two = 2, zero = 0;
    size_t nq = 0;
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = c->by_name[i];
        WF_ASSERT(t->dtype == ST_F32);
        names[3 * i] = malloc(strlen(t->name) + 40);
        names[3 * i + 1] = malloc(strlen(t->name) + 40);
        sprintf(names[3 * i], "model.diffusion_model.%s", t->name);
        strcpy(names[3 * i + 1], names[3 * i]);
        q[nq++] = (st_item){names[3 * i], t->dtype, t->ndim, t->shape, t->data};
        r[i] = q[nq - 1];
        const size_t len = strlen(t->name);
        const bool linear = t->ndim == 2 && len > 7 && !strcmp(t->name + len - 7, ".weight");
        if (!linear) continue;
        float *deq = malloc(t->numel * sizeof *deq);
        unsigned char *q8 = malloc(t->numel);
        WF_ASSERT(deq && q8);
        quantise_fp8((const float *)t->data, t->numel, &scales[i], q8, deq);
        bufs[2 * i] = q8;
        bufs[2 * i + 1] = deq;
        q[nq - 1] = (st_item){names[3 * i], ST_F8_E4M3, t->ndim, t->shape, q8};
        r[i].data = deq;
        names[3 * i + 2] = malloc(len + 64);
        sprintf(names[3 * i + 2], "model.diffusion_model.%.*s.scale_weight", (int)(len - 7),
                t->name);
        q[nq++] = (st_item){names[3 * i + 2], ST_F32, 1, bad == 2 ? &two : &one, &scales[i]};
        if (bad == 2) scales[n] = scales[i]; /* the second value, after the first's slot */
    }
    if (bad == 1) { /* a scale beside a 1-D f32 weight (a norm) */
        for (size_t i = 0; i < n; i++)
            if (c->by_name[i]->ndim == 1 && strstr(c->by_name[i]->name, "norm_q.weight")) {
                sprintf(names[3 * i + 1], "model.diffusion_model.%.*s.scale_weight",
                        (int)(strlen(c->by_name[i]->name) - 7), c->by_name[i]->name);
                q[nq++] = (st_item){names[3 * i + 1], ST_F32, 1, &one, &scales[n]};
                scales[n] = 1.0f;
                break;
            }
    }
    static const unsigned char marker = 0;
    q[nq++] = (st_item){"scaled_fp8", ST_F8_E4M3, 1, &zero, &marker};
    char cfg_src[4200], cfg[4096];
    snprintf(cfg_src, sizeof cfg_src, "%s/config.json", src);
    FILE *f = fopen(cfg_src, "rb");
    size_t clen = fread(cfg, 1, sizeof cfg, f);
    fclose(f);
    const char *sub[2] = {"fp8", "fp8_ref"};
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/%s", tmp, sub[k]);
        tu_rmtree(p);
        mkdir(p, 0755);
        snprintf(p, sizeof p, "%s/%s/diffusion_pytorch_model.safetensors", tmp, sub[k]);
        TU_CHECK(st_write(p, k ? r : q, k ? n : nq, NULL, 0, &err) == WF_OK, "%s", err.msg);
        snprintf(p, sizeof p, "%s/%s/config.json", tmp, sub[k]);
        tu_write_file(p, cfg, clen);
    }
    for (size_t i = 0; i < 3 * n; i++) free(names[i]);
    for (size_t i = 0; i < 2 * n; i++) free(bufs[i]);
    free(names);
    free(bufs);
    free(scales);
    free(q);
    free(r);
    st_checkpoint_close(&c);
}

/* The forward of the transformer folder dir on l3_h4_d16's inputs (malloc'd, n values), or
 * NULL with the load error in err. */
static float *forward_dir(const char *dir, size_t *n, wf_err *err) {
    char io_path[4200];
    snprintf(io_path, sizeof io_path, "%s/dit/l3_h4_d16/io.safetensors", fixtures);
    dit_model *m = NULL;
    st_file *io = NULL;
    float *out = NULL;
    wk_arena ar = {0};
    if (dit_load(&m, dir, err) || st_open(&io, io_path, err)) goto done;
    const st_tensor *hs = st_file_find(io, "hidden_states"), *ts = st_file_find(io, "timestep"),
                    *eh = st_file_find(io, "encoder_hidden_states"), *ot = st_file_find(io, "output");
    dit_shape s = {.F = (int64_t)hs->shape[2], .H = (int64_t)hs->shape[3], .W = (int64_t)hs->shape[4],
                   .Lt = (int64_t)eh->shape[1], .per_token_t = ts->numel > 1};
    size_t bytes = 0;
    *n = ot->numel;
    out = malloc(*n * sizeof *out);
    if (dit_arena_bytes(m, be, &s, 1, &bytes, err) || wk_arena_init(&ar, "fp8 test", bytes, err) ||
        dit_forward(m, be, &ar, &s, NULL, (const float *)hs->data, (const float *)ts->data,
                    (const float *)eh->data, out, NULL, NULL, err)) {
        free(out);
        out = NULL;
    }
    if (out) *n = ot->numel;
done:
    wk_arena_free(&ar);
    st_close(&io);
    dit_free(&m);
    return out;
}

/* A scaled-fp8 checkpoint computes what its dequantised f32 copy computes, to the bit (the CPU
 * widens e4m3 x scale to f32, the same values); bad scales are refused by name. */
static void test_fp8_scaled(void) {
    char d8[4200], dr[4200];
    snprintf(d8, sizeof d8, "%s/fp8", tmp);
    snprintf(dr, sizeof dr, "%s/fp8_ref", tmp);
    write_fp8_copies(0);
    wf_err err = {0};
    size_t n8 = 0, nr = 0;
    float *o8 = forward_dir(d8, &n8, &err);
    TU_CHECK(o8 != NULL, "scaled fp8: %s", err.msg);
    float *orf = forward_dir(dr, &nr, &err);
    TU_CHECK(orf != NULL, "dequantised copy: %s", err.msg);
    if (o8 && orf) {
        TU_CHECK(n8 == nr && memcmp(o8, orf, n8 * sizeof *o8) == 0,
                 "a scaled-fp8 checkpoint must equal its dequantised f32 copy (rel L2 %.3e)",
                 tu_rel_l2_f(o8, orf, n8));
        printf("  %-16s %-22s output equals the dequantised f32 copy's\n", "l3_h4_d16",
               "fp8 scaled, ComfyUI");
    }
    free(o8);
    free(orf);
    dit_model *m = NULL;
    write_fp8_copies(1);
    TU_CHECK(dit_load(&m, d8, &err) != WF_OK && strstr(err.msg, "norm_q.scale_weight"),
             "a scale beside an f32 norm weight: %s", m ? "accepted" : err.msg);
    dit_free(&m);
    write_fp8_copies(2);
    TU_CHECK(dit_load(&m, d8, &err) != WF_OK && strstr(err.msg, "scale_weight") &&
                 strstr(err.msg, "2 elements"),
             "a scale of two values: %s", m ? "accepted" : err.msg);
    dit_free(&m);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_dit FIXTURES_DIR [--stages]\n");
        return 2;
    }
    fixtures = argv[1];
    show_stages = argc > 2 && !strcmp(argv[2], "--stages");
    wf_err err;
    if (wk_backend_cpu_new(&be, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    tmp = tu_tmpdir("dit");
    static const char *cases[] = {"diffusers_test", "l3_h4_d16", "odd_grid", "bf16", "per_token"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        double e = 1;
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/dit/%s/transformer", fixtures, cases[i]);
        float *o = run_case(cases[i], dir, "transformer", &e);
        if (i == 1) { /* the same weights under the official Wan names */
            double e2 = 1;
            snprintf(dir, sizeof dir, "%s/dit/%s/transformer_official", fixtures, cases[i]);
            float *o2 = run_case(cases[i], dir, "transformer_official", &e2);
            char io[4200];
            snprintf(io, sizeof io, "%s/dit/%s/io.safetensors", fixtures, cases[i]);
            st_file *f = NULL;
            if (o && o2 && st_open(&f, io, &err) == WF_OK) {
                size_t n = st_file_find(f, "output")->numel;
                TU_CHECK(memcmp(o, o2, n * sizeof *o) == 0,
                         "official names must give the same output as Diffusers names");
                st_close(&f);
            }
            free(o2);
            /* and under ComfyUI's prefix */
            write_comfyui_copy();
            snprintf(dir, sizeof dir, "%s/comfy", tmp);
            float *o3 = run_case(cases[i], dir, "official, ComfyUI prefix", &e2);
            if (o && o3 && st_open(&f, io, &err) == WF_OK) {
                size_t n = st_file_find(f, "output")->numel;
                TU_CHECK(memcmp(o, o3, n * sizeof *o) == 0,
                         "ComfyUI-prefixed official names must give the same output");
                st_close(&f);
            }
            free(o3);
        }
        free(o);
    }
    test_broken();
    test_fp8_scaled();
    tu_rmtree(tmp);
    free(tmp);
    wk_backend_destroy(&be);
    printf("%s\n", tu_failures ? "FAILED" : "OK");
    return tu_failures ? 1 : 0;
}
