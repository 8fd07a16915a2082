/* test_diffusers.c: the Diffusers folder reader (worker/io/diffusers.c, worker/io/json_cfg.c).
 *
 *   - the fixtures saved by diffusers' own save_pretrained (tests/fixtures/tiny-wan22: two experts,
 *     sharded high-noise expert, bf16 low-noise expert; tiny-wan21: one transformer) parse to the
 *     values the generator gave diffusers (tests/fixtures/make_fixtures.py); tiny-ti2v
 *     (make_pipeline_fixtures.py: expand_timesteps, z_dim 48, Wan2.2 residual VAE) opens too;
 *   - broken copies (a field removed, mistyped, out of range; components that do not fit; bad
 *     JSON; missing files) are refused with messages naming the file and the field;
 *   - the weights of every component open through st_checkpoint.
 * Usage: test_diffusers FIXTURES_DIR
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "diffusers.h"
#include "safetensors.h"
#include "test_util.h"

static const char *fixtures;

static void check_tiny_transformer(const dfs_transformer_config *t, const char *which) {
    /* the tiny diffusers-test config make_fixtures.py passes to WanTransformer3DModel */
    TU_CHECK(t->patch_size[0] == 1 && t->patch_size[1] == 2 && t->patch_size[2] == 2,
             "%s patch_size", which);
    TU_CHECK(t->num_attention_heads == 2 && t->attention_head_dim == 12 && t->dim == 24,
             "%s heads %lld x %lld", which, (long long)t->num_attention_heads,
             (long long)t->attention_head_dim);
    TU_CHECK(t->in_channels == 16 && t->out_channels == 16, "%s channels", which);
    TU_CHECK(t->text_dim == 32 && t->freq_dim == 256 && t->ffn_dim == 32 && t->num_layers == 2,
             "%s widths", which);
    TU_CHECK(t->cross_attn_norm && !strcmp(t->qk_norm, "rms_norm_across_heads"), "%s norms", which);
    TU_CHECK(fabs(t->eps - 1e-6) < 1e-12 && t->rope_max_seq_len == 32, "%s eps/rope", which);
    TU_CHECK(t->image_dim == 0 && t->added_kv_proj_dim == 0 && t->pos_embed_seq_len == 0,
             "%s null fields read as none", which);
}

static void test_fixture_wan22(void) {
    char root[4096];
    snprintf(root, sizeof root, "%s/tiny-wan22", fixtures);
    dfs_pipeline *p = NULL;
    wf_err err;
    TU_CHECK(dfs_open(&p, root, &err) == WF_OK, "tiny-wan22: %s", err.msg);
    if (!p) return;
    TU_CHECK(!strcmp(p->class_name, "WanPipeline"), "class %s", p->class_name);
    TU_CHECK(p->has_transformer_2, "two experts");
    TU_CHECK(fabs(p->boundary_ratio - 0.875) < 1e-12, "boundary_ratio %g", p->boundary_ratio);
    TU_CHECK(!p->expand_timesteps, "expand_timesteps");
    check_tiny_transformer(&p->transformer, "transformer");
    check_tiny_transformer(&p->transformer_2, "transformer_2");
    const dfs_vae_config *v = &p->vae;
    TU_CHECK(v->base_dim == 3 && v->decoder_base_dim == 3 && v->z_dim == 16, "vae dims");
    TU_CHECK(v->n_dim_mult == 4 && v->dim_mult[0] == 1 && v->dim_mult[3] == 1, "vae dim_mult");
    TU_CHECK(v->num_res_blocks == 1 && v->n_temperal_downsample == 3 &&
                 !v->temperal_downsample[0] && v->temperal_downsample[1] &&
                 v->temperal_downsample[2],
             "vae blocks");
    TU_CHECK(v->scale_factor_spatial == 8 && v->scale_factor_temporal == 4 && !v->is_residual &&
                 v->patch_size == 0,
             "vae scale factors");
    /* Diffusers' default Wan2.1 latent statistics (the first and last of each) */
    TU_CHECK(fabs(v->latents_mean[0] - (-0.7571)) < 1e-9 && fabs(v->latents_std[15] - 1.916) < 1e-9,
             "vae latent statistics %g %g", v->latents_mean[0], v->latents_std[15]);
    const dfs_umt5_config *u = &p->text_encoder;
    TU_CHECK(!strcmp(u->model_type, "umt5") && u->d_model == 32 && u->num_layers == 2 &&
                 u->relative_attention_num_buckets == 32 &&
                 !strcmp(u->feed_forward_proj, "gated-gelu"),
             "text encoder d_model %lld layers %lld", (long long)u->d_model,
             (long long)u->num_layers);
    const dfs_scheduler_config *s = &p->scheduler;
    TU_CHECK(s->kind == DFS_SCHED_UNIPC && s->use_flow_sigmas && fabs(s->flow_shift - 3.0) < 1e-12 &&
                 !strcmp(s->prediction_type, "flow_prediction") && s->num_train_timesteps == 1000,
             "scheduler");
    struct stat sb;
    TU_CHECK(stat(p->tokenizer_model, &sb) == 0 && sb.st_size > 0, "spiece.model");

    /* weights: sharded fp32 high-noise expert, bf16 low-noise expert */
    static const char *comps[] = {"transformer", "transformer_2", "vae", "text_encoder"};
    for (int i = 0; i < 4; i++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", root, comps[i]);
        st_checkpoint *c = NULL;
        TU_CHECK(st_checkpoint_open(&c, dir, &err) == WF_OK, "%s weights: %s", comps[i], err.msg);
        if (!c) continue;
        if (i == 0) {
            TU_CHECK(c->n_files >= 2, "transformer should be sharded (%zu files)", c->n_files);
            const st_tensor *t = st_checkpoint_find(c, "blocks.1.ffn.net.0.proj.weight");
            TU_CHECK(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == 32 &&
                         t->shape[1] == 24,
                     "transformer ffn weight");
            t = st_checkpoint_find(c, "scale_shift_table");
            TU_CHECK(t && t->ndim == 3 && t->shape[1] == 2 && t->shape[2] == 24,
                     "output scale_shift_table");
        }
        if (i == 1) {
            const st_tensor *t = st_checkpoint_find(c, "blocks.0.attn1.to_q.weight");
            TU_CHECK(t && t->dtype == ST_BF16 && t->shape[0] == 24 && t->shape[1] == 24,
                     "transformer_2 bf16 to_q");
        }
        st_checkpoint_close(&c);
    }
    dfs_close(&p);
    TU_CHECK(p == NULL, "dfs_close NULLs");
}

static void test_fixture_wan21(void) {
    char root[4096];
    snprintf(root, sizeof root, "%s/tiny-wan21", fixtures);
    dfs_pipeline *p = NULL;
    wf_err err;
    TU_CHECK(dfs_open(&p, root, &err) == WF_OK, "tiny-wan21: %s", err.msg);
    if (!p) return;
    TU_CHECK(!p->has_transformer_2, "one transformer");
    TU_CHECK(isnan(p->boundary_ratio), "no boundary");
    check_tiny_transformer(&p->transformer, "transformer");
    dfs_close(&p);
}

/* TI2V-5B-shaped (make_pipeline_fixtures.py): expand_timesteps, one transformer with in/out 48,
 * the Wan2.2 residual VAE (z_dim 48, patch_size 2, 16x spatial), flow_shift 5. */
static void test_fixture_ti2v(void) {
    char root[4096];
    snprintf(root, sizeof root, "%s/tiny-ti2v", fixtures);
    dfs_pipeline *p = NULL;
    wf_err err;
    TU_CHECK(dfs_open(&p, root, &err) == WF_OK, "tiny-ti2v: %s", err.msg);
    if (!p) return;
    TU_CHECK(p->expand_timesteps, "tiny-ti2v expand_timesteps");
    TU_CHECK(!p->has_transformer_2 && isnan(p->boundary_ratio), "tiny-ti2v one transformer");
    TU_CHECK(p->transformer.in_channels == 48 && p->transformer.out_channels == 48,
             "tiny-ti2v transformer channels %lld/%lld", (long long)p->transformer.in_channels,
             (long long)p->transformer.out_channels);
    const dfs_vae_config *v = &p->vae;
    TU_CHECK(v->z_dim == 48 && v->is_residual && v->patch_size == 2 &&
                 v->scale_factor_spatial == 16 && v->scale_factor_temporal == 4,
             "tiny-ti2v vae z_dim %lld patch %lld s %lld", (long long)v->z_dim,
             (long long)v->patch_size, (long long)v->scale_factor_spatial);
    TU_CHECK(v->latents_std[47] > 0, "tiny-ti2v latents_std[47] %g", v->latents_std[47]);
    TU_CHECK(fabs(p->scheduler.flow_shift - 5.0) < 1e-12, "tiny-ti2v flow_shift %g",
             p->scheduler.flow_shift);
    dfs_close(&p);
}

/* ---- broken copies ---- */
static char *copy_root;

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    if (!a || !b) {
        fprintf(stderr, "copy %s -> %s failed\n", from, to);
        exit(1);
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    fclose(a);
    fclose(b);
}

/* A config-only copy of tiny-wan22 (dfs_open reads no weights). */
static void make_copy(void) {
    static const char *files[] = {"model_index.json",         "transformer/config.json",
                                  "transformer_2/config.json", "vae/config.json",
                                  "text_encoder/config.json", "scheduler/scheduler_config.json",
                                  "tokenizer/spiece.model"};
    static const char *dirs[] = {"transformer", "transformer_2", "vae", "text_encoder", "scheduler",
                                 "tokenizer"};
    tu_rmtree(copy_root);
    mkdir(copy_root, 0755);
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        char d[4200];
        snprintf(d, sizeof d, "%s/%s", copy_root, dirs[i]);
        mkdir(d, 0755);
    }
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char a[4200], b[4200];
        snprintf(a, sizeof a, "%s/tiny-wan22/%s", fixtures, files[i]);
        snprintf(b, sizeof b, "%s/%s", copy_root, files[i]);
        copy_file(a, b);
    }
}

/* Edits one JSON file of the copy: set field to the JSON text `value` (NULL deletes it). */
static void edit(const char *file, const char *field, const char *value) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", copy_root, file);
    json_error_t je;
    json_t *root = json_load_file(p, 0, &je);
    if (!root) {
        fprintf(stderr, "edit %s: %s\n", p, je.text);
        exit(1);
    }
    if (value) json_object_set_new(root, field, json_loads(value, JSON_DECODE_ANY, &je));
    else json_object_del(root, field);
    json_dump_file(root, p, JSON_INDENT(2));
    json_decref(root);
}

static void expect_refused(const char *what, const char *file, const char *needle) {
    dfs_pipeline *p = NULL;
    wf_err err = {0};
    wf_status st = dfs_open(&p, copy_root, &err);
    TU_CHECK(st != WF_OK && p == NULL, "%s: accepted", what);
    TU_CHECK(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, needle);
    if (file) TU_CHECK(strstr(err.msg, file) != NULL, "%s: message '%s' does not name %s", what,
                       err.msg, file);
}

static void test_broken(void) {
    struct {
        const char *what, *file, *field, *value, *needle;
    } cases[] = {
        {"required field removed", "transformer/config.json", "num_layers", NULL,
         "required field 'num_layers' is missing"},
        {"integer given as a string", "transformer/config.json", "num_attention_heads", "\"2\"",
         "field 'num_attention_heads' must be an integer, found string"},
        {"zero layers", "transformer/config.json", "num_layers", "0", "'num_layers' = 0 is outside"},
        {"patch_size of two entries", "transformer/config.json", "patch_size", "[1, 2]",
         "'patch_size' must have 3 entries"},
        {"patch_size entry mistyped", "transformer/config.json", "patch_size", "[1, \"2\", 2]",
         "'patch_size[1]' must be an integer"},
        {"odd head dim", "transformer/config.json", "attention_head_dim", "13", "must be even"},
        {"bool mistyped", "transformer/config.json", "cross_attn_norm", "1",
         "'cross_attn_norm' must be true or false"},
        {"eps negative", "transformer/config.json", "eps", "-1", "'eps' = -1 is outside"},
        {"wrong component class", "transformer/config.json", "_class_name", "\"FluxTransformer\"",
         "expected \"WanTransformer3DModel\""},
        {"expert with another channel count", "transformer_2/config.json", "in_channels", "36",
         "differ from vae z_dim"},
        {"text width mismatch", "transformer/config.json", "text_dim", "64",
         "text_dim 64 differs from text_encoder d_model"},
        {"image branch", "transformer/config.json", "image_dim", "1280", "image branch"},
        {"latents_mean of wrong length", "vae/config.json", "latents_mean", "[0.0, 1.0]",
         "'latents_mean' must have 16 entries"},
        {"latents_std not positive", "vae/config.json", "latents_std",
         "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0]", "latents_std[15] must be > 0"},
        {"temperal_downsample too short", "vae/config.json", "temperal_downsample", "[false, true]",
         "'temperal_downsample' must have 3 entries"},
        {"scale factor disagrees", "vae/config.json", "scale_factor_spatial", "16",
         "scale_factor_spatial/temporal = 16/4"},
        {"vae attention scales", "vae/config.json", "attn_scales", "[1]", "attn_scales"},
        {"text encoder missing d_model", "text_encoder/config.json", "d_model", NULL,
         "required field 'd_model' is missing"},
        {"text encoder other activation", "text_encoder/config.json", "feed_forward_proj",
         "\"relu\"", "\"gated-gelu\""},
        {"scheduler unknown", "scheduler/scheduler_config.json", "_class_name", "\"DDIMScheduler\"",
         "scheduler \"DDIMScheduler\" is not supported"},
        {"scheduler not flow", "scheduler/scheduler_config.json", "use_flow_sigmas", "false",
         "use_flow_sigmas false"},
        {"scheduler order 5", "scheduler/scheduler_config.json", "solver_order", "5",
         "'solver_order' = 5 is outside [1, 3]"},
        {"pipeline class", "model_index.json", "_class_name", "\"WanImageToVideoPipeline\"",
         "wanfarm runs text-to-video"},
        {"boundary out of range", "model_index.json", "boundary_ratio", "1.5",
         "'boundary_ratio' = 1.5 is outside [0, 1]"},
        {"vae component missing", "model_index.json", "vae", NULL, "component 'vae' is missing"},
        {"vae entry malformed", "model_index.json", "vae", "\"AutoencoderKLWan\"",
         "field 'vae' must be [library, class]"},
        {"text encoder class", "model_index.json", "text_encoder",
         "[\"transformers\", \"CLIPTextModel\"]", "has class \"CLIPTextModel\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        make_copy();
        edit(cases[i].file, cases[i].field, cases[i].value);
        expect_refused(cases[i].what, cases[i].file, cases[i].needle);
    }
    /* a copy that is intact must open (the copies above fail for the edit, not the copy) */
    make_copy();
    dfs_pipeline *p = NULL;
    wf_err err;
    TU_CHECK(dfs_open(&p, copy_root, &err) == WF_OK, "intact copy: %s", err.msg);
    dfs_close(&p);
    /* transformer_2 null: a single-expert pipeline */
    edit("model_index.json", "transformer_2", "[null, null]");
    TU_CHECK(dfs_open(&p, copy_root, &err) == WF_OK && p && !p->has_transformer_2,
             "transformer_2 [null, null]: %s", err.msg);
    dfs_close(&p);

    /* files */
    char path[4200];
    make_copy();
    snprintf(path, sizeof path, "%s/vae/config.json", copy_root);
    tu_write_file(path, "{\"base_dim\": 3,", 15);
    expect_refused("truncated JSON", "vae/config.json", "not valid JSON");
    make_copy();
    tu_write_file(path, "{\"base_dim\": 3, \"base_dim\": 4}", 30);
    expect_refused("duplicate key", "vae/config.json", "duplicate");
    make_copy();
    tu_write_file(path, "[1, 2]", 6);
    expect_refused("config not an object", "vae/config.json", "must be a JSON object");
    make_copy();
    remove(path);
    expect_refused("missing component config", "vae/config.json", "missing");
    make_copy();
    snprintf(path, sizeof path, "%s/tokenizer/spiece.model", copy_root);
    remove(path);
    expect_refused("missing tokenizer model", "spiece.model", "SentencePiece");
    make_copy();
    snprintf(path, sizeof path, "%s/model_index.json", copy_root);
    remove(path);
    expect_refused("not a pipeline folder", NULL, "no model_index.json");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_diffusers FIXTURES_DIR\n");
        return 2;
    }
    fixtures = argv[1];
    char *t = tu_tmpdir("dfs");
    copy_root = malloc(strlen(t) + 8);
    sprintf(copy_root, "%s/copy", t);
    test_fixture_wan22();
    test_fixture_wan21();
    test_fixture_ti2v();
    test_broken();
    tu_rmtree(t);
    free(t);
    free(copy_root);
    printf("%s\n", tu_failures ? "FAILED" : "OK");
    return tu_failures ? 1 : 0;
}
