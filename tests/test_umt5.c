/* test_umt5.c: the umT5 encoder (worker/umt5_*.c) against transformers' UMT5EncoderModel.
 *
 * For each case in tests/fixtures/text/umt5 (made by make_text_fixtures.py, fp32 reference runs):
 *   - the prompt embedding (last_hidden_state, rows past the real tokens zeroed as the Wan
 *     pipeline does) equals the reference within relative L2 1e-5, and the zeroed rows are exact
 *     zeros. 1e-5: an fp32 forward through ~10 GEMMs per layer; an fp64 rerun of the reference
 *     differs from it by <= 7e-7 (case.json rel_l2_fp32_vs_fp64_real_rows), so 1e-5 leaves room
 *     for BLAS and libm differences and still catches a wrong bucket, mask, norm or scale;
 *   - every stage (embedding, each block, the final norm) is compared over all L rows (padded
 *     query rows included) and printed with --stages, to locate a mismatch;
 *   - computing the real rows only (t5_input.real_rows_only) gives the same embedding;
 *   - the arena size from the measuring pass is exactly what the forward uses, a second forward
 *     gives the same bits and does not grow the backend workspace;
 *   - the relative-position bucket function equals transformers' for |j - i| <= 600, two configs.
 * Cases: tiny-wan22's own encoder on the pipeline's tokens (prompt and empty negative prompt),
 * odd sizes (d_model 40, 4 heads x 12, d_ff 52, 3 layers, 24 buckets / 64, L 37 with 20 real),
 * the same without padding, a bf16-stored checkpoint, and a 160-token case reaching every bucket.
 * Then broken checkpoints, configs and inputs must be refused with messages naming the tensor,
 * field or position.
 * Usage: test_umt5 FIXTURES_DIR [--stages]
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test_util.h"
#include "umt5.h"

static const char *fixtures;
static bool show_stages;
static wk_backend *be;
static char *tmp;

#define TOL 1e-5

typedef struct golden {
    st_file *io;
    const char *label;
    int64_t D;
    double worst;
    char worst_stage[32];
} golden;

static const float *io_f32(st_file *f, const char *name, size_t *n) {
    const st_tensor *t = st_file_find(f, name);
    if (!t || t->dtype != ST_F32) return NULL;
    if (n) *n = t->numel;
    return (const float *)t->data;
}

/* An I64 tensor of io.safetensors as int32 (malloc'd). */
static int32_t *io_i32(st_file *f, const char *name, int64_t *n) {
    const st_tensor *t = st_file_find(f, name);
    if (!t || t->dtype != ST_I64) return NULL;
    int32_t *v = malloc(t->numel * sizeof *v);
    for (uint64_t i = 0; i < t->numel; i++) {
        int64_t x;
        memcpy(&x, t->data + 8 * i, 8);
        v[i] = (int32_t)x;
    }
    *n = (int64_t)t->numel;
    return v;
}

/* Compares a stage with the reference's first rows (all of them unless real_rows_only). */
static void tap(void *ctx, const char *stage, const wk_tensor *t) {
    golden *g = ctx;
    size_t n = 0, want_n = (size_t)wk_tensor_numel(t);
    const float *ref = io_f32(g->io, stage, &n);
    TU_CHECK(ref != NULL, "%s: the fixture has no stage '%s'", g->label, stage);
    if (!ref) return;
    TU_CHECK(want_n <= n, "%s %s: %zu values, the reference has %zu", g->label, stage, want_n, n);
    if (want_n > n) return;
    double e = tu_rel_l2_f(t->data, ref, want_n);
    if (show_stages)
        printf("    %-10s rows %-4lld rel L2 %.3e\n", stage, (long long)t->shape[0], e);
    TU_CHECK(e <= TOL, "%s stage %s: rel L2 %.3e > %g", g->label, stage, e, TOL);
    if (e > g->worst) {
        g->worst = e;
        snprintf(g->worst_stage, sizeof g->worst_stage, "%s", stage);
    }
}

static json_t *case_json(const char *cname) {
    char p[4200];
    snprintf(p, sizeof p, "%s/text/umt5/%s/case.json", fixtures, cname);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    if (!j) fprintf(stderr, "%s: %s\n", p, je.text);
    return j;
}

/* Runs one case in both modes; returns the full-mode output (malloc'd) or NULL. */
static float *run_case(const char *cname, const char *dir_override, const char *label) {
    json_t *cj = case_json(cname);
    TU_CHECK(cj != NULL, "%s: case.json", cname);
    if (!cj) return NULL;
    char dir[4200], io_path[4200];
    if (dir_override)
        snprintf(dir, sizeof dir, "%s", dir_override);
    else
        snprintf(dir, sizeof dir, "%s/%s", fixtures,
                 json_string_value(json_object_get(cj, "encoder_dir")));
    snprintf(io_path, sizeof io_path, "%s/text/umt5/%s/io.safetensors", fixtures, cname);
    json_decref(cj);
    t5_model *m = NULL;
    wf_err err = {0};
    golden g = {.label = cname};
    TU_CHECK(t5_load(&m, dir, &err) == WF_OK, "%s: load: %s", cname, err.msg);
    TU_CHECK(st_open(&g.io, io_path, &err) == WF_OK, "%s: %s", cname, err.msg);
    float *out = NULL, *out2 = NULL;
    int32_t *ids = NULL, *mask = NULL;
    wk_arena ar = {0};
    if (!m || !g.io) goto done;
    int64_t L = 0, Lm = 0;
    ids = io_i32(g.io, "input_ids", &L);
    mask = io_i32(g.io, "attention_mask", &Lm);
    size_t nref = 0;
    const float *ref = io_f32(g.io, "prompt_embeds", &nref);
    TU_CHECK(ids && mask && ref && L == Lm && nref == (size_t)(L * m->cfg.d_model),
             "%s: io tensors", cname);
    if (!(ids && mask && ref && L == Lm && nref == (size_t)(L * m->cfg.d_model))) goto done;
    g.D = m->cfg.d_model;
    t5_input in = {.L = L, .ids = ids, .mask = mask};
    int64_t n_real = 0;
    TU_CHECK(t5_check_input(m, &in, &n_real, &err) == WF_OK, "%s: %s", cname, err.msg);
    size_t bytes = 0;
    TU_CHECK(t5_arena_bytes(m, L, &bytes, &err) == WF_OK, "%s: %s", cname, err.msg);
    TU_CHECK(wk_arena_init(&ar, "umt5 test", bytes, &err) == WF_OK, "%s", err.msg);
    out = malloc(nref * sizeof *out);
    out2 = malloc(nref * sizeof *out2);
    if (show_stages) printf("  %s (%s), all %lld rows:\n", cname, label, (long long)L);
    wf_status st = t5_forward(m, be, &ar, &in, out, tap, &g, &err);
    TU_CHECK(st == WF_OK, "%s: forward: %s", cname, err.msg);
    TU_CHECK(ar.peak == bytes, "%s: the forward used %zu arena bytes, the measuring pass said %zu",
             cname, ar.peak, bytes);
    TU_CHECK(ar.used == 0, "%s: the arena is reset after the forward", cname);
    double e = tu_rel_l2_f(out, ref, nref);
    TU_CHECK(e <= TOL, "%s: prompt embedding rel L2 %.3e > %g (worst stage %s at %.3e)", cname, e,
             TOL, g.worst_stage, g.worst);
    size_t nonzero = 0;
    for (size_t i = (size_t)(n_real * g.D); i < nref; i++)
        nonzero += out[i] != 0.0f || signbit(out[i]);
    TU_CHECK(nonzero == 0, "%s: %zu values past the %lld real rows are not +0", cname, nonzero,
             (long long)n_real);
    /* a second forward: same bits, no workspace growth */
    unsigned grows = be->ws_grows;
    st = t5_forward(m, be, &ar, &in, out2, NULL, NULL, &err);
    TU_CHECK(st == WF_OK && memcmp(out, out2, nref * sizeof *out) == 0,
             "%s: a second forward must give the same bits", cname);
    TU_CHECK(be->ws_grows == grows, "%s: the second forward grew the workspace", cname);
    /* the real rows only: same embedding */
    in.real_rows_only = true;
    golden g2 = {.io = g.io, .label = cname, .D = g.D};
    if (show_stages) printf("  %s, real rows only (%lld):\n", cname, (long long)n_real);
    st = t5_forward(m, be, &ar, &in, out2, tap, &g2, &err);
    TU_CHECK(st == WF_OK, "%s: real rows only: %s", cname, err.msg);
    double e2 = tu_rel_l2_f(out2, ref, nref);
    TU_CHECK(e2 <= TOL, "%s: real rows only: rel L2 %.3e > %g", cname, e2, TOL);
    nonzero = 0;
    for (size_t i = (size_t)(n_real * g.D); i < nref; i++) nonzero += out2[i] != 0.0f;
    TU_CHECK(nonzero == 0, "%s: real rows only: %zu nonzero values past the real rows", cname,
             nonzero);
    printf("  %-18s %-30s L %-4lld real %-4lld rel L2 %.2e (real rows only %.2e), worst stage %s "
           "%.2e, arena %.1f KiB\n",
           cname, label, (long long)L, (long long)n_real, e, e2, g.worst_stage, g.worst,
           (double)bytes / 1024);
done:
    wk_arena_free(&ar);
    free(ids);
    free(mask);
    free(out2);
    st_close(&g.io);
    t5_free(&m);
    TU_CHECK(m == NULL, "t5_free nulls the pointer");
    return out;
}

static void test_buckets(void) {
    char p[4200];
    snprintf(p, sizeof p, "%s/text/umt5/buckets.json", fixtures);
    json_error_t je;
    json_t *d = json_load_file(p, 0, &je);
    TU_CHECK(d != NULL, "%s: %s", p, je.text);
    if (!d) return;
    int64_t lo = json_integer_value(json_array_get(json_object_get(d, "range"), 0));
    json_t *cfgs = json_object_get(d, "configs");
    for (size_t c = 0; c < json_array_size(cfgs); c++) {
        json_t *cj = json_array_get(cfgs, c), *b = json_object_get(cj, "buckets");
        int64_t nb = json_integer_value(json_object_get(cj, "num_buckets"));
        int64_t md = json_integer_value(json_object_get(cj, "max_distance"));
        size_t bad = 0;
        for (size_t i = 0; i < json_array_size(b); i++) {
            int64_t rel = lo + (int64_t)i, want = json_integer_value(json_array_get(b, i));
            int got = t5_relative_bucket(rel, nb, md);
            if (got != want && bad++ < 5)
                TU_CHECK(false,
                         "bucket(%lld; %lld buckets, max distance %lld) = %d, transformers %lld",
                         (long long)rel, (long long)nb, (long long)md, got, (long long)want);
        }
        printf("  buckets %lld / max distance %lld: %zu relative positions, %zu differ\n",
               (long long)nb, (long long)md, json_array_size(b), bad);
    }
    json_decref(d);
}

/* ---- broken checkpoints, configs and inputs ---- */

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = calloc(1, 1 << 16);
    size_t n = fread(b, 1, (1 << 16) - 1, f);
    b[n] = 0;
    fclose(f);
    return b;
}

typedef int (*item_edit)(st_item *it, void *ctx); /* returns 0 to drop the item */

/* tmp/t = the odd case's encoder with `edit` applied to each tensor, `extra` (a copy of `extra_src`
 * under a new name) added, and config.json replaced by cfg_json (NULL: unchanged). */
static void write_copy(const char *cfg_json, item_edit edit, void *ctx, const char *extra,
                       const char *extra_src) {
    char src[4200], dst[4200], p[4300];
    snprintf(src, sizeof src, "%s/text/umt5/odd/text_encoder", fixtures);
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
        const st_tensor *t = st_checkpoint_find(c, extra_src);
        items[n++] = (st_item){extra, t->dtype, t->ndim, t->shape, t->data};
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dst);
    if (st_write(p, items, n, NULL, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    free(items);
    st_checkpoint_close(&c);
    snprintf(p, sizeof p, "%s/config.json", src);
    char *cfg = read_text(p);
    snprintf(p, sizeof p, "%s/config.json", dst);
    const char *text = cfg_json ? cfg_json : cfg;
    tu_write_file(p, text, strlen(text));
    free(cfg);
}

static int drop_named(st_item *it, void *ctx) { return strcmp(it->name, ctx) != 0; }

static int rename_shared(st_item *it, void *ctx) {
    (void)ctx;
    if (!strcmp(it->name, "shared.weight")) it->name = "encoder.embed_tokens.weight";
    return 1;
}

static uint64_t narrow_shape[2];
static int narrow_rows(st_item *it, void *ctx) {
    if (strcmp(it->name, ctx) == 0) { /* one row fewer: same byte prefix, smaller shape */
        narrow_shape[0] = it->shape[0] - 1;
        narrow_shape[1] = it->shape[1];
        it->shape = narrow_shape;
    }
    return 1;
}

static void expect_load_error(const char *what, wf_status want, const char *needle) {
    char d[4200];
    snprintf(d, sizeof d, "%s/t", tmp);
    t5_model *m = NULL;
    wf_err err = {0};
    wf_status st = t5_load(&m, d, &err);
    TU_CHECK(st == want && m == NULL, "%s: status %d (%s), expected %d", what, (int)st,
             wf_status_str(st), (int)want);
    TU_CHECK(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, needle);
    if (show_stages) printf("    %-36s -> %s\n", what, err.msg);
    t5_free(&m);
}

/* cfg with `from` replaced by `to` (malloc'd) */
static char *cfg_edit(const char *cfg, const char *from, const char *to) {
    const char *k = strstr(cfg, from);
    TU_CHECK(k != NULL, "fixture config has '%s'", from);
    if (!k) return strdup(cfg);
    size_t n = strlen(cfg) + strlen(to) + 1;
    char *r = malloc(n);
    snprintf(r, n, "%.*s%s%s", (int)(k - cfg), cfg, to, k + strlen(from));
    return r;
}

static void test_broken(const float *odd_out) {
    char p[4200];
    snprintf(p, sizeof p, "%s/text/umt5/odd/text_encoder/config.json", fixtures);
    char *cfg = read_text(p);
    TU_CHECK(cfg != NULL, "odd config.json");
    if (!cfg) return;

    write_copy(NULL, drop_named,
               "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight", NULL, NULL);
    expect_load_error(
        "missing tensor", WF_EFORMAT,
        "tensor 'encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight' is missing");
    write_copy(NULL, narrow_rows, "encoder.block.2.layer.1.DenseReluDense.wi_1.weight", NULL, NULL);
    expect_load_error(
        "wrong shape", WF_EFORMAT,
        "'encoder.block.2.layer.1.DenseReluDense.wi_1.weight' has shape [51, 40], but "
        "config.json");
    write_copy(NULL, NULL, NULL, "encoder.block.3.layer.0.layer_norm.weight",
               "encoder.block.2.layer.0.layer_norm.weight");
    expect_load_error("tensor beyond num_layers", WF_EFORMAT,
                      "config does not use, e.g. 'encoder.block.3.layer.0.layer_norm.weight'");
    write_copy(NULL, NULL, NULL, "decoder.final_layer_norm.weight",
               "encoder.final_layer_norm.weight");
    expect_load_error("decoder tensor", WF_EFORMAT, "full encoder-decoder checkpoint");
    write_copy(NULL, drop_named, "shared.weight", NULL, NULL);
    expect_load_error("no embedding", WF_EFORMAT, "not a transformers UMT5EncoderModel checkpoint");
    /* both embedding names: accepted when identical (same output), refused when they differ */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/t", tmp);
    write_copy(NULL, NULL, NULL, "encoder.embed_tokens.weight", "shared.weight");
    float *o2 = run_case("odd", dir, "shared + embed_tokens");
    if (o2 && odd_out) {
        size_t n = 37 * 40;
        TU_CHECK(memcmp(o2, odd_out, n * sizeof *o2) == 0,
                 "both embedding names: the same output as shared.weight alone");
    }
    free(o2);
    /* only the older name: the same output */
    write_copy(NULL, rename_shared, NULL, NULL, NULL);
    o2 = run_case("odd", dir, "encoder.embed_tokens only");
    if (o2 && odd_out)
        TU_CHECK(memcmp(o2, odd_out, 37 * 40 * sizeof *o2) == 0,
                 "encoder.embed_tokens.weight alone: the same output as shared.weight");
    free(o2);
    write_copy(NULL, NULL, NULL, "encoder.embed_tokens.weight",
               "encoder.block.0.layer.0.SelfAttention.q.weight");
    expect_load_error("both embedding names, different", WF_EFORMAT, "are present and differ");

    /* configs that disagree with the tensors, or that wanfarm does not run */
    char *e = cfg_edit(cfg, "\"d_ff\": 52", "\"d_ff\": 50");
    write_copy(e, NULL, NULL, NULL, NULL);
    expect_load_error("config d_ff disagrees", WF_EFORMAT, "has shape [52, 40], but config.json");
    free(e);
    e = cfg_edit(cfg, "\"num_layers\": 3", "\"num_layers\": 2");
    write_copy(e, NULL, NULL, NULL, NULL);
    expect_load_error("config num_layers too small", WF_EFORMAT,
                      "does not use, e.g. 'encoder.block.2.");
    free(e);
    e = cfg_edit(cfg, "\"num_layers\": 3", "\"num_layers\": 4");
    write_copy(e, NULL, NULL, NULL, NULL);
    expect_load_error("config num_layers too large", WF_EFORMAT, "'encoder.block.3.");
    free(e);
    e = cfg_edit(cfg, "\"num_heads\": 4", "\"num_heads\": 6");
    write_copy(e, NULL, NULL, NULL, NULL);
    expect_load_error("config num_heads disagrees", WF_EFORMAT,
                      "has shape [48, 40], but config.json");
    free(e);
    e = cfg_edit(cfg, "\"relative_attention_num_buckets\": 24",
                 "\"relative_attention_num_buckets\": 32");
    write_copy(e, NULL, NULL, NULL, NULL);
    expect_load_error("config buckets disagree", WF_EFORMAT,
                      "relative_attention_bias.weight' has shape [24, 4]");
    free(e);
    e = cfg_edit(cfg, "\"vocab_size\": 64", "\"vocab_size\": 65");
    write_copy(e, NULL, NULL, NULL, NULL);
    expect_load_error("config vocab_size disagrees", WF_EFORMAT,
                      "'shared.weight' has shape [64, 40]");
    free(e);
    e = cfg_edit(cfg, "\"model_type\": \"umt5\"", "\"model_type\": \"t5\"");
    write_copy(e, NULL, NULL, NULL, NULL);
    expect_load_error("model_type t5", WF_EUNSUPPORTED, "model_type is \"t5\"");
    free(e);
    e = cfg_edit(cfg, "\"relative_attention_max_distance\": 64",
                 "\"relative_attention_max_distance\": 6");
    write_copy(e, NULL, NULL, NULL, NULL);
    expect_load_error("max distance <= max_exact", WF_EUNSUPPORTED,
                      "relative_attention_max_distance 6");
    free(e);
    e = cfg_edit(cfg, "\"d_model\": 40", "\"d_model\": \"forty\"");
    write_copy(e, NULL, NULL, NULL, NULL);
    expect_load_error("mistyped config field", WF_EFORMAT, "d_model");
    free(e);

    /* inputs the model cannot run */
    snprintf(dir, sizeof dir, "%s/text/umt5/odd/text_encoder", fixtures);
    t5_model *m = NULL;
    wf_err err = {0};
    if (t5_load(&m, dir, &err) == WF_OK) {
        int32_t ids[6] = {5, 7, 1, 0, 0, 0}, mask[6] = {1, 1, 1, 0, 0, 0};
        t5_input in = {.L = 6, .ids = ids, .mask = mask};
        int64_t n = 0;
        TU_CHECK(t5_check_input(m, &in, &n, &err) == WF_OK && n == 3, "a good input: %s", err.msg);
        ids[1] = 64;
        TU_CHECK(t5_check_input(m, &in, NULL, &err) == WF_EINVAL &&
                     strstr(err.msg, "token id 64 at position 1"),
                 "id past the vocabulary: %s", err.msg);
        ids[1] = -1;
        TU_CHECK(t5_check_input(m, &in, NULL, &err) == WF_EINVAL, "negative id");
        ids[1] = 7;
        mask[4] = 1;
        TU_CHECK(t5_check_input(m, &in, NULL, &err) == WF_EINVAL &&
                     strstr(err.msg, "mask[4] is 1 after a 0"),
                 "left padding / holes: %s", err.msg);
        mask[4] = 2;
        TU_CHECK(t5_check_input(m, &in, NULL, &err) == WF_EINVAL &&
                     strstr(err.msg, "expected 0 or 1"),
                 "mask values: %s", err.msg);
        memset(mask, 0, sizeof mask);
        TU_CHECK(t5_check_input(m, &in, NULL, &err) == WF_EINVAL &&
                     strstr(err.msg, "no real token"),
                 "empty mask: %s", err.msg);
        mask[0] = 1;
        in.L = 0;
        TU_CHECK(t5_check_input(m, &in, NULL, &err) == WF_EINVAL, "L 0");
        size_t b;
        TU_CHECK(t5_arena_bytes(m, 0, &b, &err) == WF_EINVAL, "arena for L 0");
        in.L = 6;
        wk_arena small;
        wk_arena_init(&small, "too small", 1024, &err);
        float dummy[6 * 40];
        TU_CHECK(t5_forward(m, be, &small, &in, dummy, NULL, NULL, &err) == WF_ENOMEM &&
                     strstr(err.msg, "too small"),
                 "a too-small arena is refused: %s", err.msg);
        TU_CHECK(small.used == 0, "the arena is reset after a failed forward");
        wk_arena_free(&small);
    }
    t5_free(&m);
    t5_free(&m); /* accepts NULL */
    free(cfg);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_umt5 FIXTURES_DIR [--stages]\n");
        return 2;
    }
    fixtures = argv[1];
    show_stages = argc > 2 && !strcmp(argv[2], "--stages");
    wf_err err;
    if (wk_backend_cpu_new(&be, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    tmp = tu_tmpdir("umt5");
    test_buckets();
    static const char *cases[] = {
        "tiny_wan22_prompt", "tiny_wan22_empty", "odd", "odd_nopad", "bf16", "long"};
    float *odd_out = NULL;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        float *o = run_case(cases[i], NULL, "text_encoder");
        TU_CHECK(o != NULL, "%s ran", cases[i]);
        if (!strcmp(cases[i], "odd"))
            odd_out = o;
        else
            free(o);
    }
    test_broken(odd_out);
    free(odd_out);
    tu_rmtree(tmp);
    free(tmp);
    wk_backend_destroy(&be);
    printf("%s\n", tu_failures ? "FAILED" : "OK");
    return tu_failures ? 1 : 0;
}
