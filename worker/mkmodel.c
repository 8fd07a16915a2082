/* mkmodel.c: a random-weight Wan2.2 T2V Diffusers folder (see mkmodel.h). */
#include "mkmodel.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pipeline.h"
#include "safetensors.h"
#include "spm_shim.h"

static const mk_preset presets[] = {
    {.name = "tiny",
     .heads = 2, .head_dim = 12, .ffn_dim = 32, .layers = 2, .freq_dim = 256,
     .rope_max_seq_len = 32,
     .vae_base_dim = 8, .vae_dim_mult = {1, 1, 1, 1}, .vae_num_res_blocks = 1,
     .t5_d_model = 32, .t5_d_kv = 8, .t5_heads = 4, .t5_d_ff = 37, .t5_layers = 2,
     .t5_buckets = 32, .tokenizer_vocab = 256},
    /* "tiny" with 12 heads (of 8), so that Ulysses degrees 1, 2, 3, 4 and 6 all divide them (the
     * MPI tests) */
    {.name = "tiny12",
     .heads = 12, .head_dim = 8, .ffn_dim = 64, .layers = 2, .freq_dim = 256,
     .rope_max_seq_len = 32,
     .vae_base_dim = 8, .vae_dim_mult = {1, 1, 1, 1}, .vae_num_res_blocks = 1,
     .t5_d_model = 32, .t5_d_kv = 8, .t5_heads = 4, .t5_d_ff = 37, .t5_layers = 2,
     .t5_buckets = 32, .tokenizer_vocab = 256},
};

const mk_preset *mk_find_preset(const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (!strcmp(presets[i].name, name)) return &presets[i];
    return NULL;
}

const char *mk_preset_names(void) { return "tiny, tiny12"; }

/* The embedded training text of the tokenizer: plain English scene descriptions, the kind of
 * prompt the model is given. */
static const char corpus[] =
    "a red fox running through snow at sunset\n"
    "a cat sitting on a wooden table in the morning light\n"
    "a dog playing with a ball in a green park\n"
    "waves crashing on a rocky beach under a cloudy sky\n"
    "a city street at night with cars and bright lights\n"
    "a small boat sailing on a calm blue lake\n"
    "an old man walking slowly along a quiet road\n"
    "a young woman dancing in the rain with an umbrella\n"
    "birds flying over a field of golden wheat\n"
    "a horse galloping across an open plain at dawn\n"
    "a train crossing a bridge over a deep river valley\n"
    "snow falling softly on a forest of tall pine trees\n"
    "a child laughing and running on the sand by the sea\n"
    "fireworks exploding in the dark sky above the water\n"
    "a cup of hot coffee with steam rising on a cold day\n"
    "the camera slowly moves toward a mountain covered in snow\n"
    "close up of a flower opening its petals in the sun\n"
    "a busy market full of people, fruit and colorful cloth\n"
    "an astronaut floating in space with the earth behind him\n"
    "a robot walking through a futuristic city with tall towers\n"
    "two friends talking and smiling at a cafe in the evening\n"
    "a white bird landing on the surface of a still pond\n"
    "rain drops running down a window while a car drives past\n"
    "a panda eating bamboo in a quiet green forest\n"
    "the sun rising over the hills, light spreading across the valley\n"
    "a fish swimming between coral in clear tropical water\n"
    "a man riding a bicycle down a narrow street in an old town\n"
    "leaves turning red and yellow, falling from the trees in autumn\n"
    "a candle burning in a dark room, the flame moving gently\n"
    "an eagle flying high above a desert canyon\n"
    "a girl reading a book under a large oak tree in summer\n"
    "slow motion of water splashing into a glass\n"
    "the northern lights glowing green over a frozen lake\n"
    "a chef cooking vegetables in a hot pan in a busy kitchen\n"
    "a dragon flying over a castle on a stormy night\n"
    "cinematic shot of a car driving on a winding mountain road\n"
    "a butterfly resting on a purple flower in a sunny garden\n"
    "children playing football on a dusty field after school\n"
    "a lighthouse standing on a cliff as the storm rolls in\n"
    "hands playing a piano, the keys moving in warm light\n"
    "Static shot, high quality, detailed, realistic, 4k, soft lighting.\n"
    "The quick brown fox jumps over the lazy dog; 0 1 2 3 4 5 6 7 8 9!\n";

/* ---- tensors ---- */

typedef struct mk_tensor {
    char *name;
    int ndim;
    uint64_t shape[5];
    float *data;
} mk_tensor;

typedef struct mk_list {
    mk_tensor *t;
    size_t n, cap;
    uint64_t seed;
    bool oom;
} mk_list;

enum { MK_NORMAL, MK_ONES, MK_ZEROS };

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Adds a tensor: kind MK_NORMAL draws N(0, std^2) from (seed, name); shape as ndim values. */
static void add(mk_list *l, int kind, double std, int ndim, const int64_t *shape,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void add(mk_list *l, int kind, double std, int ndim, const int64_t *shape,
                const char *fmt, ...) {
    if (l->oom) return;
    if (l->n == l->cap) {
        size_t c = l->cap ? 2 * l->cap : 64;
        mk_tensor *q = realloc(l->t, c * sizeof *q);
        if (!q) {
            l->oom = true;
            return;
        }
        l->t = q;
        l->cap = c;
    }
    mk_tensor *t = &l->t[l->n];
    memset(t, 0, sizeof *t);
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    size_t numel = 1;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = (uint64_t)shape[i];
        numel *= (size_t)shape[i];
    }
    t->name = strdup(name);
    t->data = malloc(numel * sizeof(float));
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        l->oom = true;
        return;
    }
    if (kind == MK_NORMAL) {
        pl_noise(l->seed ^ fnv1a(name), t->data, numel);
        for (size_t i = 0; i < numel; i++) t->data[i] = (float)(t->data[i] * std);
    } else {
        for (size_t i = 0; i < numel; i++) t->data[i] = kind == MK_ONES ? 1.0f : 0.0f;
    }
    l->n++;
}

#define SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}

/* A Linear: weight [out, in] with std gain/sqrt(in), bias [out] small. */
static void linear(mk_list *l, const char *prefix, int64_t out, int64_t in, bool bias,
                   double gain) {
    add(l, MK_NORMAL, gain / sqrt((double)in), SHAPE(out, in), "%s.weight", prefix);
    if (bias) add(l, MK_NORMAL, 0.02, SHAPE(out), "%s.bias", prefix);
}

static void free_list(mk_list *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->t[i].name);
        free(l->t[i].data);
    }
    free(l->t);
    memset(l, 0, sizeof *l);
}

static wf_status write_list(mk_list *l, const char *path, wf_err *err) {
    if (l->oom) return wf_fail(err, WF_ENOMEM, "out of memory building %s", path);
    st_item *items = calloc(l->n ? l->n : 1, sizeof *items);
    if (!items) return wf_fail(err, WF_ENOMEM, "out of memory building %s", path);
    for (size_t i = 0; i < l->n; i++)
        items[i] = (st_item){l->t[i].name, ST_F32, l->t[i].ndim, l->t[i].shape, l->t[i].data};
    static const char *const meta[] = {"format", "pt"};
    wf_status st = st_write(path, items, l->n, meta, 1, err);
    free(items);
    return st;
}

/* ---- paths and JSON ---- */

static wf_status mkdir_p(const char *path, wf_err *err) {
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return WF_OK;
        return wf_fail(err, WF_EIO, "%s exists and is not a folder", path);
    }
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return wf_fail(err, WF_EIO, "%s: cannot create the folder: %s", path, strerror(errno));
    return WF_OK;
}

static wf_status write_json(const char *dir, const char *sub, const char *file, json_t *j,
                            wf_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s%s%s", dir, sub ? sub : "", sub ? "/" : "", file);
    if (!j) return wf_fail(err, WF_ENOMEM, "out of memory building %s", path);
    int rc = json_dump_file(j, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (rc != 0) return wf_fail(err, WF_EIO, "%s: cannot write: %s", path, strerror(errno));
    return WF_OK;
}

static json_t *ints(int n, const int64_t *v) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *pair(const char *lib, const char *cls) {
    return json_pack("[ss]", lib, cls);
}

/* ---- components ---- */

static json_t *model_index(void) {
    json_t *j = json_object();
    json_object_set_new(j, "_class_name", json_string("WanPipeline"));
    json_object_set_new(j, "_diffusers_version", json_string("0.35.0"));
    json_object_set_new(j, "boundary_ratio", json_real(0.875));
    json_object_set_new(j, "expand_timesteps", json_false());
    json_object_set_new(j, "scheduler", pair("diffusers", "UniPCMultistepScheduler"));
    json_object_set_new(j, "text_encoder", pair("transformers", "UMT5EncoderModel"));
    json_object_set_new(j, "tokenizer", pair("transformers", "T5Tokenizer"));
    json_object_set_new(j, "transformer", pair("diffusers", "WanTransformer3DModel"));
    json_object_set_new(j, "transformer_2", pair("diffusers", "WanTransformer3DModel"));
    json_object_set_new(j, "vae", pair("diffusers", "AutoencoderKLWan"));
    return j;
}

static json_t *transformer_config(const mk_preset *p) {
    json_t *j = json_object();
    json_object_set_new(j, "_class_name", json_string("WanTransformer3DModel"));
    json_object_set_new(j, "_diffusers_version", json_string("0.35.0"));
    json_object_set_new(j, "added_kv_proj_dim", json_null());
    json_object_set_new(j, "attention_head_dim", json_integer(p->head_dim));
    json_object_set_new(j, "cross_attn_norm", json_true());
    json_object_set_new(j, "eps", json_real(1e-6));
    json_object_set_new(j, "ffn_dim", json_integer(p->ffn_dim));
    json_object_set_new(j, "freq_dim", json_integer(p->freq_dim));
    json_object_set_new(j, "image_dim", json_null());
    json_object_set_new(j, "in_channels", json_integer(16));
    json_object_set_new(j, "num_attention_heads", json_integer(p->heads));
    json_object_set_new(j, "num_layers", json_integer(p->layers));
    json_object_set_new(j, "out_channels", json_integer(16));
    json_object_set_new(j, "patch_size", ints(3, (int64_t[]){1, 2, 2}));
    json_object_set_new(j, "pos_embed_seq_len", json_null());
    json_object_set_new(j, "qk_norm", json_string("rms_norm_across_heads"));
    json_object_set_new(j, "rope_max_seq_len", json_integer(p->rope_max_seq_len));
    json_object_set_new(j, "text_dim", json_integer(p->t5_d_model));
    return j;
}

static void mk_dit_weights(mk_list *l, const mk_preset *p) {
    int64_t D = p->heads * p->head_dim, C = 16, F = p->ffn_dim;
    add(l, MK_NORMAL, 1.0 / sqrt((double)(C * 4)), SHAPE(D, C, 1, 2, 2), "patch_embedding.weight");
    add(l, MK_NORMAL, 0.02, SHAPE(D), "patch_embedding.bias");
    linear(l, "condition_embedder.time_embedder.linear_1", D, p->freq_dim, true, 1.0);
    linear(l, "condition_embedder.time_embedder.linear_2", D, D, true, 1.0);
    linear(l, "condition_embedder.time_proj", 6 * D, D, true, 1.0);
    linear(l, "condition_embedder.text_embedder.linear_1", D, p->t5_d_model, true, 1.0);
    linear(l, "condition_embedder.text_embedder.linear_2", D, D, true, 1.0);
    char b[128];
    for (int64_t i = 0; i < p->layers; i++) {
        for (int a = 1; a <= 2; a++) {
            static const char *const proj[] = {"to_q", "to_k", "to_v", "to_out.0"};
            for (int k = 0; k < 4; k++) {
                snprintf(b, sizeof b, "blocks.%lld.attn%d.%s", (long long)i, a, proj[k]);
                linear(l, b, D, D, true, 1.0);
            }
            add(l, MK_ONES, 0, SHAPE(D), "blocks.%lld.attn%d.norm_q.weight", (long long)i, a);
            add(l, MK_ONES, 0, SHAPE(D), "blocks.%lld.attn%d.norm_k.weight", (long long)i, a);
        }
        snprintf(b, sizeof b, "blocks.%lld.ffn.net.0.proj", (long long)i);
        linear(l, b, F, D, true, 1.0);
        snprintf(b, sizeof b, "blocks.%lld.ffn.net.2", (long long)i);
        linear(l, b, D, F, true, 1.0);
        add(l, MK_ONES, 0, SHAPE(D), "blocks.%lld.norm2.weight", (long long)i);
        add(l, MK_ZEROS, 0, SHAPE(D), "blocks.%lld.norm2.bias", (long long)i);
        add(l, MK_NORMAL, 1.0 / sqrt((double)D), SHAPE(1, 6, D), "blocks.%lld.scale_shift_table",
            (long long)i);
    }
    linear(l, "proj_out", C * 4, D, true, 1.0);
    add(l, MK_NORMAL, 1.0 / sqrt((double)D), SHAPE(1, 2, D), "scale_shift_table");
}

static const double wan21_mean[16] = {-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653,
                                      -0.1517, 1.5508,  0.4134,  -0.0715, 0.5517,  -0.3632,
                                      -0.1922, -0.9497, 0.2503,  -0.2921};
static const double wan21_std[16] = {2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708,
                                     2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
                                     1.6382, 1.1253, 2.8251, 1.9160};
static const bool vae_tdown[3] = {false, true, true};

static json_t *vae_config(const mk_preset *p) {
    json_t *j = json_object(), *mean = json_array(), *std = json_array(), *td = json_array();
    for (int i = 0; i < 16; i++) {
        json_array_append_new(mean, json_real(wan21_mean[i]));
        json_array_append_new(std, json_real(wan21_std[i]));
    }
    for (int i = 0; i < 3; i++) json_array_append_new(td, json_boolean(vae_tdown[i]));
    json_object_set_new(j, "_class_name", json_string("AutoencoderKLWan"));
    json_object_set_new(j, "_diffusers_version", json_string("0.35.0"));
    json_object_set_new(j, "attn_scales", json_array());
    json_object_set_new(j, "base_dim", json_integer(p->vae_base_dim));
    json_object_set_new(j, "decoder_base_dim", json_null());
    json_object_set_new(j, "dim_mult", ints(4, p->vae_dim_mult));
    json_object_set_new(j, "dropout", json_real(0.0));
    json_object_set_new(j, "in_channels", json_integer(3));
    json_object_set_new(j, "is_residual", json_false());
    json_object_set_new(j, "latents_mean", mean);
    json_object_set_new(j, "latents_std", std);
    json_object_set_new(j, "num_res_blocks", json_integer(p->vae_num_res_blocks));
    json_object_set_new(j, "out_channels", json_integer(3));
    json_object_set_new(j, "patch_size", json_null());
    json_object_set_new(j, "scale_factor_spatial", json_integer(8));
    json_object_set_new(j, "scale_factor_temporal", json_integer(4));
    json_object_set_new(j, "temperal_downsample", td);
    json_object_set_new(j, "z_dim", json_integer(16));
    return j;
}

/* CausalConv3d / Conv2d weights: std gain/sqrt(fan_in). */
static void conv3(mk_list *l, const char *pfx, int64_t out, int64_t in, int64_t kt, int64_t k) {
    add(l, MK_NORMAL, 1.0 / sqrt((double)(in * kt * k * k)), SHAPE(out, in, kt, k, k), "%s.weight",
        pfx);
    add(l, MK_NORMAL, 0.02, SHAPE(out), "%s.bias", pfx);
}

static void conv2(mk_list *l, const char *pfx, int64_t out, int64_t in, int64_t k) {
    add(l, MK_NORMAL, 1.0 / sqrt((double)(in * k * k)), SHAPE(out, in, k, k), "%s.weight", pfx);
    add(l, MK_NORMAL, 0.02, SHAPE(out), "%s.bias", pfx);
}

static void resnet(mk_list *l, const char *pfx, int64_t in, int64_t out) {
    char b[200];
    add(l, MK_ONES, 0, SHAPE(in, 1, 1, 1), "%s.norm1.gamma", pfx);
    snprintf(b, sizeof b, "%s.conv1", pfx);
    conv3(l, b, out, in, 3, 3);
    add(l, MK_ONES, 0, SHAPE(out, 1, 1, 1), "%s.norm2.gamma", pfx);
    snprintf(b, sizeof b, "%s.conv2", pfx);
    conv3(l, b, out, out, 3, 3);
    if (in != out) {
        snprintf(b, sizeof b, "%s.conv_shortcut", pfx);
        conv3(l, b, out, in, 1, 1);
    }
}

static void mid_block(mk_list *l, const char *pfx, int64_t d) {
    char b[200];
    snprintf(b, sizeof b, "%s.resnets.0", pfx);
    resnet(l, b, d, d);
    add(l, MK_ONES, 0, SHAPE(d, 1, 1), "%s.attentions.0.norm.gamma", pfx);
    snprintf(b, sizeof b, "%s.attentions.0.to_qkv", pfx);
    conv2(l, b, 3 * d, d, 1);
    snprintf(b, sizeof b, "%s.attentions.0.proj", pfx);
    conv2(l, b, d, d, 1);
    snprintf(b, sizeof b, "%s.resnets.1", pfx);
    resnet(l, b, d, d);
}

/* Diffusers' AutoencoderKLWan (Wan2.1 layout: no patching, not residual), 4 levels. */
static void mk_vae_weights(mk_list *l, const mk_preset *p) {
    const int L = 4;
    int64_t dims[5], z = 16, nrb = p->vae_num_res_blocks;
    char b[200];
    dims[0] = p->vae_base_dim;
    for (int i = 0; i < L; i++) dims[i + 1] = p->vae_base_dim * p->vae_dim_mult[i];
    /* encoder */
    conv3(l, "encoder.conv_in", dims[0], 3, 3, 3);
    int idx = 0;
    for (int i = 0; i < L; i++) {
        int64_t in = dims[i], out = dims[i + 1];
        for (int64_t j = 0; j < nrb; j++, idx++) {
            snprintf(b, sizeof b, "encoder.down_blocks.%d", idx);
            resnet(l, b, in, out);
            in = out;
        }
        if (i != L - 1) {
            snprintf(b, sizeof b, "encoder.down_blocks.%d.resample.1", idx);
            conv2(l, b, out, out, 3);
            if (vae_tdown[i]) {
                snprintf(b, sizeof b, "encoder.down_blocks.%d.time_conv", idx);
                conv3(l, b, out, out, 3, 1);
            }
            idx++;
        }
    }
    mid_block(l, "encoder.mid_block", dims[L]);
    add(l, MK_ONES, 0, SHAPE(dims[L], 1, 1, 1), "encoder.norm_out.gamma");
    conv3(l, "encoder.conv_out", 2 * z, dims[L], 3, 3);
    conv3(l, "quant_conv", 2 * z, 2 * z, 1, 1);
    conv3(l, "post_quant_conv", z, z, 1, 1);
    /* decoder: dims reversed, [dim_mult[-1]] + dim_mult[::-1] */
    int64_t dd[5];
    dd[0] = p->vae_base_dim * p->vae_dim_mult[L - 1];
    for (int i = 0; i < L; i++) dd[i + 1] = p->vae_base_dim * p->vae_dim_mult[L - 1 - i];
    conv3(l, "decoder.conv_in", dd[0], z, 3, 3);
    mid_block(l, "decoder.mid_block", dd[0]);
    for (int i = 0; i < L; i++) {
        int64_t in = dd[i], out = dd[i + 1];
        if (i > 0) in /= 2;
        for (int64_t j = 0; j < nrb + 1; j++) {
            snprintf(b, sizeof b, "decoder.up_blocks.%d.resnets.%lld", i, (long long)j);
            resnet(l, b, in, out);
            in = out;
        }
        if (i != L - 1) {
            snprintf(b, sizeof b, "decoder.up_blocks.%d.upsamplers.0.resample.1", i);
            conv2(l, b, out / 2, out, 3);
            if (vae_tdown[L - 2 - i]) {
                snprintf(b, sizeof b, "decoder.up_blocks.%d.upsamplers.0.time_conv", i);
                conv3(l, b, out * 2, out, 3, 1);
            }
        }
    }
    add(l, MK_ONES, 0, SHAPE(dd[L], 1, 1, 1), "decoder.norm_out.gamma");
    /* the last conv a little below unit gain, so that most pixels stay inside [-1, 1] */
    add(l, MK_NORMAL, 0.8 / sqrt((double)(dd[L] * 27)), SHAPE(3, dd[L], 3, 3, 3),
        "decoder.conv_out.weight");
    add(l, MK_ZEROS, 0, SHAPE(3), "decoder.conv_out.bias");
}

static json_t *umt5_config(const mk_preset *p, int vocab) {
    json_t *j = json_object();
    json_object_set_new(j, "architectures", json_pack("[s]", "UMT5EncoderModel"));
    json_object_set_new(j, "classifier_dropout", json_real(0.0));
    json_object_set_new(j, "d_ff", json_integer(p->t5_d_ff));
    json_object_set_new(j, "d_kv", json_integer(p->t5_d_kv));
    json_object_set_new(j, "d_model", json_integer(p->t5_d_model));
    json_object_set_new(j, "decoder_start_token_id", json_integer(0));
    json_object_set_new(j, "dense_act_fn", json_string("gelu_new"));
    json_object_set_new(j, "dropout_rate", json_real(0.1));
    json_object_set_new(j, "dtype", json_string("float32"));
    json_object_set_new(j, "eos_token_id", json_integer(1));
    json_object_set_new(j, "feed_forward_proj", json_string("gated-gelu"));
    json_object_set_new(j, "initializer_factor", json_real(1.0));
    json_object_set_new(j, "is_decoder", json_false());
    json_object_set_new(j, "is_encoder_decoder", json_true());
    json_object_set_new(j, "is_gated_act", json_true());
    json_object_set_new(j, "layer_norm_epsilon", json_real(1e-6));
    json_object_set_new(j, "model_type", json_string("umt5"));
    json_object_set_new(j, "num_decoder_layers", json_integer(p->t5_layers));
    json_object_set_new(j, "num_heads", json_integer(p->t5_heads));
    json_object_set_new(j, "num_layers", json_integer(p->t5_layers));
    json_object_set_new(j, "pad_token_id", json_integer(0));
    json_object_set_new(j, "relative_attention_max_distance", json_integer(128));
    json_object_set_new(j, "relative_attention_num_buckets", json_integer(p->t5_buckets));
    json_object_set_new(j, "scalable_attention", json_true());
    json_object_set_new(j, "scale_decoder_outputs", json_false());
    json_object_set_new(j, "tie_word_embeddings", json_true());
    json_object_set_new(j, "transformers_version", json_string("4.51.3"));
    json_object_set_new(j, "use_cache", json_true());
    json_object_set_new(j, "vocab_size", json_integer(vocab));
    return j;
}

static void mk_t5_weights(mk_list *l, const mk_preset *p, int vocab) {
    int64_t D = p->t5_d_model, I = p->t5_heads * p->t5_d_kv, F = p->t5_d_ff;
    char b[200];
    add(l, MK_NORMAL, 1.0, SHAPE(vocab, D), "shared.weight");
    for (int64_t i = 0; i < p->t5_layers; i++) {
        static const char *const qkv[] = {"q", "k", "v"};
        for (int k = 0; k < 3; k++) {
            snprintf(b, sizeof b, "encoder.block.%lld.layer.0.SelfAttention.%s", (long long)i, qkv[k]);
            linear(l, b, I, D, false, 1.0);
        }
        snprintf(b, sizeof b, "encoder.block.%lld.layer.0.SelfAttention.o", (long long)i);
        linear(l, b, D, I, false, 1.0);
        add(l, MK_NORMAL, 0.5, SHAPE(p->t5_buckets, p->t5_heads),
            "encoder.block.%lld.layer.0.SelfAttention.relative_attention_bias.weight", (long long)i);
        add(l, MK_ONES, 0, SHAPE(D), "encoder.block.%lld.layer.0.layer_norm.weight", (long long)i);
        snprintf(b, sizeof b, "encoder.block.%lld.layer.1.DenseReluDense.wi_0", (long long)i);
        linear(l, b, F, D, false, 1.0);
        snprintf(b, sizeof b, "encoder.block.%lld.layer.1.DenseReluDense.wi_1", (long long)i);
        linear(l, b, F, D, false, 1.0);
        snprintf(b, sizeof b, "encoder.block.%lld.layer.1.DenseReluDense.wo", (long long)i);
        linear(l, b, D, F, false, 1.0);
        add(l, MK_ONES, 0, SHAPE(D), "encoder.block.%lld.layer.1.layer_norm.weight", (long long)i);
    }
    add(l, MK_ONES, 0, SHAPE(D), "encoder.final_layer_norm.weight");
}

static json_t *tokenizer_config(void) {
    json_t *j = json_object();
    json_object_set_new(j, "eos_token", json_string("</s>"));
    json_object_set_new(j, "extra_ids", json_integer(0));
    json_object_set_new(j, "model_max_length", json_integer(512));
    json_object_set_new(j, "pad_token", json_string("<pad>"));
    json_object_set_new(j, "padding_side", json_string("right"));
    json_object_set_new(j, "tokenizer_class", json_string("T5Tokenizer"));
    json_object_set_new(j, "unk_token", json_string("<unk>"));
    return j;
}

static json_t *scheduler_config(void) {
    json_t *j = json_object();
    json_object_set_new(j, "_class_name", json_string("UniPCMultistepScheduler"));
    json_object_set_new(j, "_diffusers_version", json_string("0.35.0"));
    json_object_set_new(j, "beta_end", json_real(0.02));
    json_object_set_new(j, "beta_schedule", json_string("linear"));
    json_object_set_new(j, "beta_start", json_real(0.0001));
    json_object_set_new(j, "disable_corrector", json_array());
    json_object_set_new(j, "dynamic_thresholding_ratio", json_real(0.995));
    json_object_set_new(j, "final_sigmas_type", json_string("zero"));
    json_object_set_new(j, "flow_shift", json_real(3.0));
    json_object_set_new(j, "lower_order_final", json_true());
    json_object_set_new(j, "num_train_timesteps", json_integer(1000));
    json_object_set_new(j, "predict_x0", json_true());
    json_object_set_new(j, "prediction_type", json_string("flow_prediction"));
    json_object_set_new(j, "rescale_betas_zero_snr", json_false());
    json_object_set_new(j, "sample_max_value", json_real(1.0));
    json_object_set_new(j, "solver_order", json_integer(2));
    json_object_set_new(j, "solver_p", json_null());
    json_object_set_new(j, "solver_type", json_string("bh2"));
    json_object_set_new(j, "steps_offset", json_integer(0));
    json_object_set_new(j, "thresholding", json_false());
    json_object_set_new(j, "timestep_spacing", json_string("linspace"));
    json_object_set_new(j, "trained_betas", json_null());
    json_object_set_new(j, "use_beta_sigmas", json_false());
    json_object_set_new(j, "use_dynamic_shifting", json_false());
    json_object_set_new(j, "use_exponential_sigmas", json_false());
    json_object_set_new(j, "use_flow_sigmas", json_true());
    json_object_set_new(j, "use_karras_sigmas", json_false());
    return j;
}

int mk_dir_is_empty(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) != 0) return 1;
    if (!S_ISDIR(sb.st_mode)) return -1;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            empty = 0;
            break;
        }
    closedir(d);
    return empty;
}

static wf_status write_weights(const char *dir, const char *sub, const char *file, mk_list *l,
                               wf_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, file);
    wf_status st = write_list(l, path, err);
    free_list(l);
    return st;
}

wf_status mk_write_model(const char *dir, const mk_preset *p, uint64_t seed, wf_err *err) {
    wf_status st = WF_OK;
    char path[4096];
    WF_TRY(mkdir_p(dir, err));
    static const char *const subs[] = {"transformer", "transformer_2", "vae", "text_encoder",
                                       "tokenizer", "scheduler"};
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, subs[i]);
        WF_TRY(mkdir_p(path, err));
    }
    /* the tokenizer first: its vocabulary size is the text encoder's */
    snprintf(path, sizeof path, "%s/tokenizer/spiece.model", dir);
    char msg[512] = "";
    if (spm_train_model(corpus, path, p->tokenizer_vocab, msg, sizeof msg) != 0) {
        st = wf_fail(err, WF_EIO, "%s: %s", path, msg);
        goto out;
    }
    spm_model *sp = spm_load(path, msg, sizeof msg);
    if (!sp) {
        st = wf_fail(err, WF_EFORMAT, "%s: cannot load the trained model: %s", path, msg);
        goto out;
    }
    int vocab = spm_vocab_size(sp);
    spm_free(sp);
    WF_TRY(write_json(dir, "tokenizer", "tokenizer_config.json", tokenizer_config(), err));
    WF_TRY(write_json(dir, NULL, "model_index.json", model_index(), err));
    WF_TRY(write_json(dir, "scheduler", "scheduler_config.json", scheduler_config(), err));
    for (int e = 0; e < 2; e++) {
        const char *sub = e ? "transformer_2" : "transformer";
        WF_TRY(write_json(dir, sub, "config.json", transformer_config(p), err));
        mk_list l = {.seed = seed + 0x1000u * (uint64_t)(e + 1)};
        mk_dit_weights(&l, p);
        WF_TRY(write_weights(dir, sub, "diffusion_pytorch_model.safetensors", &l, err));
    }
    WF_TRY(write_json(dir, "vae", "config.json", vae_config(p), err));
    mk_list lv = {.seed = seed + 0x3000u};
    mk_vae_weights(&lv, p);
    WF_TRY(write_weights(dir, "vae", "diffusion_pytorch_model.safetensors", &lv, err));
    WF_TRY(write_json(dir, "text_encoder", "config.json", umt5_config(p, vocab), err));
    mk_list lt = {.seed = seed + 0x4000u};
    mk_t5_weights(&lt, p, vocab);
    WF_TRY(write_weights(dir, "text_encoder", "model.safetensors", &lt, err));
out:
    return st;
}
