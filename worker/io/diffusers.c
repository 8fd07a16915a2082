/* diffusers.c: model_index.json and component configs of a Diffusers folder (see diffusers.h). */
#include "diffusers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fsin.h"
#include "json_cfg.h"

/* If the config names its class, it must be `want`. */
static wf_status check_class(const jc_doc *d, const char *want, wf_err *err) {
    char cls[96];
    wf_status st = jc_str(d, "_class_name", JC_OPTIONAL, want, cls, sizeof cls, err);
    if (st) return st;
    if (strcmp(cls, want) != 0)
        return wf_fail(err, WF_EUNSUPPORTED, "%s: _class_name is \"%s\", expected \"%s\"", d->file,
                       cls, want);
    return WF_OK;
}

wf_status dfs_read_transformer_config(const char *path, dfs_transformer_config *c, wf_err *err) {
    jc_doc d;
    wf_status st = jc_load(&d, path, "transformer config", err);
    if (st) return st;
    *c = (dfs_transformer_config){0};
    size_t n;
    WF_TRY(check_class(&d, "WanTransformer3DModel", err));
    WF_TRY(jc_int_array(&d, "patch_size", JC_REQUIRED, 3, 3, 1, 16, c->patch_size, &n, err));
    WF_TRY(
        jc_int(&d, "num_attention_heads", JC_REQUIRED, 0, 1, 1024, &c->num_attention_heads, err));
    WF_TRY(jc_int(&d, "attention_head_dim", JC_REQUIRED, 0, 2, 1024, &c->attention_head_dim, err));
    WF_TRY(jc_int(&d, "in_channels", JC_REQUIRED, 0, 1, 4096, &c->in_channels, err));
    WF_TRY(jc_int(&d, "out_channels", JC_REQUIRED, 0, 1, 4096, &c->out_channels, err));
    WF_TRY(jc_int(&d, "text_dim", JC_REQUIRED, 0, 1, 65536, &c->text_dim, err));
    WF_TRY(jc_int(&d, "freq_dim", JC_REQUIRED, 0, 2, 65536, &c->freq_dim, err));
    WF_TRY(jc_int(&d, "ffn_dim", JC_REQUIRED, 0, 1, 1 << 20, &c->ffn_dim, err));
    WF_TRY(jc_int(&d, "num_layers", JC_REQUIRED, 0, 1, 1000, &c->num_layers, err));
    WF_TRY(jc_bool(&d, "cross_attn_norm", JC_OPTIONAL, true, &c->cross_attn_norm, err));
    WF_TRY(jc_str(&d, "qk_norm", JC_NULLABLE, "rms_norm_across_heads", c->qk_norm,
                  sizeof c->qk_norm, err));
    WF_TRY(jc_num(&d, "eps", JC_OPTIONAL, 1e-6, 0.0, 1.0, &c->eps, err));
    WF_TRY(jc_int(&d, "image_dim", JC_NULLABLE, 0, 1, 65536, &c->image_dim, err));
    WF_TRY(jc_int(&d, "added_kv_proj_dim", JC_NULLABLE, 0, 1, 65536, &c->added_kv_proj_dim, err));
    WF_TRY(
        jc_int(&d, "rope_max_seq_len", JC_OPTIONAL, 1024, 1, 1 << 20, &c->rope_max_seq_len, err));
    WF_TRY(jc_int(&d, "pos_embed_seq_len", JC_NULLABLE, 0, 1, 1 << 20, &c->pos_embed_seq_len, err));
    if (c->attention_head_dim % 2 || c->freq_dim % 2) {
        st = wf_fail(err, WF_EFORMAT,
                     "%s: attention_head_dim (%lld) and freq_dim (%lld) must be even (rotary pairs, "
                     "cos/sin halves)",
                     path, (long long)c->attention_head_dim, (long long)c->freq_dim);
        goto out;
    }
    int64_t hd = c->attention_head_dim, hw = 2 * (hd / 6);
    if (hd - 2 * hw <= 0 || (hd - 2 * hw) % 2) {
        st = wf_fail(err, WF_EFORMAT,
                     "%s: attention_head_dim %lld cannot be split into even t/h/w rotary parts",
                     path, (long long)hd);
        goto out;
    }
    c->dim = c->num_attention_heads * c->attention_head_dim;
    if (c->dim > (1 << 16)) {
        st = wf_fail(err, WF_EFORMAT, "%s: num_attention_heads x attention_head_dim = %lld is too large",
                     path, (long long)c->dim);
        goto out;
    }
out:
    jc_free(&d);
    return st;
}

wf_status dfs_read_vae_config(const char *path, dfs_vae_config *c, wf_err *err) {
    jc_doc d;
    wf_status st = jc_load(&d, path, "vae config", err);
    if (st) return st;
    *c = (dfs_vae_config){0};
    size_t n, nm, ns;
    int64_t attn[DFS_MAX_LEVELS];
    WF_TRY(check_class(&d, "AutoencoderKLWan", err));
    WF_TRY(jc_int(&d, "base_dim", JC_REQUIRED, 0, 1, 4096, &c->base_dim, err));
    WF_TRY(jc_int(&d, "decoder_base_dim", JC_NULLABLE, c->base_dim, 1, 4096, &c->decoder_base_dim,
                  err));
    WF_TRY(jc_int(&d, "z_dim", JC_REQUIRED, 0, 1, DFS_MAX_LATENT, &c->z_dim, err));
    WF_TRY(jc_int_array(&d, "dim_mult", JC_REQUIRED, 0, DFS_MAX_LEVELS, 1, 64, c->dim_mult,
                        &c->n_dim_mult, err));
    if (c->n_dim_mult < 1) {
        st = wf_fail(err, WF_EFORMAT, "%s: field 'dim_mult' must not be empty", path);
        goto out;
    }
    WF_TRY(jc_int(&d, "num_res_blocks", JC_REQUIRED, 0, 1, 16, &c->num_res_blocks, err));
    WF_TRY(jc_int_array(&d, "attn_scales", JC_OPTIONAL, 0, DFS_MAX_LEVELS, 0, 64, attn, &n, err));
    c->n_attn_scales = n;
    if (n) {
        st = wf_fail(err, WF_EUNSUPPORTED,
                     "%s: attn_scales is non-empty; Wan VAEs have none and wanfarm does not run them",
                     path);
        goto out;
    }
    WF_TRY(jc_bool_array(&d, "temperal_downsample", JC_REQUIRED,
                         c->n_dim_mult - 1 ? c->n_dim_mult - 1 : 0, DFS_MAX_LEVELS,
                         c->temperal_downsample, &c->n_temperal_downsample, err));
    if (c->n_temperal_downsample != c->n_dim_mult - 1) {
        st = wf_fail(err, WF_EFORMAT,
                     "%s: field 'temperal_downsample' must have len(dim_mult) - 1 = %zu entries",
                     path, c->n_dim_mult - 1);
        goto out;
    }
    WF_TRY(jc_num(&d, "dropout", JC_OPTIONAL, 0.0, 0.0, 1.0, &c->dropout, err));
    WF_TRY(jc_bool(&d, "is_residual", JC_OPTIONAL, false, &c->is_residual, err));
    WF_TRY(jc_int(&d, "in_channels", JC_OPTIONAL, 3, 1, 4096, &c->in_channels, err));
    WF_TRY(jc_int(&d, "out_channels", JC_OPTIONAL, 3, 1, 4096, &c->out_channels, err));
    WF_TRY(jc_int(&d, "patch_size", JC_NULLABLE, 0, 1, 16, &c->patch_size, err));
    WF_TRY(
        jc_int(&d, "scale_factor_temporal", JC_OPTIONAL, 4, 1, 64, &c->scale_factor_temporal, err));
    WF_TRY(
        jc_int(&d, "scale_factor_spatial", JC_OPTIONAL, 8, 1, 256, &c->scale_factor_spatial, err));
    WF_TRY(jc_num_array(&d, "latents_mean", JC_REQUIRED, (size_t)c->z_dim, DFS_MAX_LATENT,
                        c->latents_mean, &nm, err));
    WF_TRY(jc_num_array(&d, "latents_std", JC_REQUIRED, (size_t)c->z_dim, DFS_MAX_LATENT,
                        c->latents_std, &ns, err));
    for (int64_t i = 0; i < c->z_dim; i++)
        if (!(c->latents_std[i] > 0) || !isfinite(c->latents_mean[i])) {
            st = wf_fail(err, WF_EFORMAT,
                         "%s: latents_std[%lld] must be > 0 and latents_mean finite", path,
                         (long long)i);
            goto out;
        }
    /* The pipeline trusts scale_factor_*; they must agree with the architecture. */
    int64_t spatial = (int64_t)1 << (c->n_dim_mult - 1), temporal = 1;
    if (c->patch_size) spatial *= c->patch_size;
    for (size_t i = 0; i < c->n_temperal_downsample; i++)
        if (c->temperal_downsample[i]) temporal *= 2;
    if (spatial != c->scale_factor_spatial || temporal != c->scale_factor_temporal) {
        st = wf_fail(err, WF_EFORMAT,
                     "%s: scale_factor_spatial/temporal = %lld/%lld, but dim_mult, patch_size and "
                     "temperal_downsample give %lld/%lld",
                     path, (long long)c->scale_factor_spatial, (long long)c->scale_factor_temporal,
                     (long long)spatial, (long long)temporal);
        goto out;
    }
out:
    jc_free(&d);
    return st;
}

wf_status dfs_read_umt5_config(const char *path, dfs_umt5_config *c, wf_err *err) {
    jc_doc d;
    wf_status st = jc_load(&d, path, "text encoder config", err);
    if (st) return st;
    *c = (dfs_umt5_config){0};
    WF_TRY(jc_str(&d, "model_type", JC_OPTIONAL, "umt5", c->model_type, sizeof c->model_type, err));
    if (strcmp(c->model_type, "umt5") != 0 && strcmp(c->model_type, "t5") != 0) {
        st = wf_fail(err, WF_EUNSUPPORTED, "%s: model_type is \"%s\", expected \"umt5\"", path,
                     c->model_type);
        goto out;
    }
    WF_TRY(jc_int(&d, "vocab_size", JC_REQUIRED, 0, 1, 1 << 24, &c->vocab_size, err));
    WF_TRY(jc_int(&d, "d_model", JC_REQUIRED, 0, 1, 65536, &c->d_model, err));
    WF_TRY(jc_int(&d, "d_kv", JC_REQUIRED, 0, 1, 4096, &c->d_kv, err));
    WF_TRY(jc_int(&d, "d_ff", JC_REQUIRED, 0, 1, 1 << 20, &c->d_ff, err));
    WF_TRY(jc_int(&d, "num_layers", JC_REQUIRED, 0, 1, 1000, &c->num_layers, err));
    WF_TRY(jc_int(&d, "num_heads", JC_REQUIRED, 0, 1, 1024, &c->num_heads, err));
    WF_TRY(jc_int(&d, "relative_attention_num_buckets", JC_OPTIONAL, 32, 2, 4096,
                  &c->relative_attention_num_buckets, err));
    WF_TRY(jc_int(&d, "relative_attention_max_distance", JC_OPTIONAL, 128, 1, 1 << 20,
                  &c->relative_attention_max_distance, err));
    WF_TRY(
        jc_num(&d, "layer_norm_epsilon", JC_OPTIONAL, 1e-6, 0.0, 1.0, &c->layer_norm_epsilon, err));
    WF_TRY(jc_str(&d, "feed_forward_proj", JC_OPTIONAL, "gated-gelu", c->feed_forward_proj,
                  sizeof c->feed_forward_proj, err));
    if (strcmp(c->feed_forward_proj, "gated-gelu") != 0) {
        st = wf_fail(err, WF_EUNSUPPORTED,
                     "%s: feed_forward_proj is \"%s\"; umT5 as Wan uses it is \"gated-gelu\"", path,
                     c->feed_forward_proj);
        goto out;
    }
    WF_TRY(jc_int(&d, "pad_token_id", JC_NULLABLE, 0, 0, 1 << 24, &c->pad_token_id, err));
    WF_TRY(jc_int(&d, "eos_token_id", JC_NULLABLE, 1, 0, 1 << 24, &c->eos_token_id, err));
    if (c->pad_token_id >= c->vocab_size || c->eos_token_id >= c->vocab_size) {
        st = wf_fail(err, WF_EFORMAT, "%s: pad/eos token ids must be below vocab_size %lld", path,
                     (long long)c->vocab_size);
        goto out;
    }
out:
    jc_free(&d);
    return st;
}

wf_status dfs_read_scheduler_config(const char *path, dfs_scheduler_config *c, wf_err *err) {
    jc_doc d;
    wf_status st = jc_load(&d, path, "scheduler config", err);
    if (st) return st;
    *c = (dfs_scheduler_config){0};
    WF_TRY(jc_str(&d, "_class_name", JC_REQUIRED, NULL, c->class_name, sizeof c->class_name, err));
    WF_TRY(jc_int(&d, "num_train_timesteps", JC_OPTIONAL, 1000, 1, 1000000, &c->num_train_timesteps,
                  err));
    if (strcmp(c->class_name, "UniPCMultistepScheduler") == 0) {
        c->kind = DFS_SCHED_UNIPC;
        WF_TRY(jc_str(&d, "prediction_type", JC_OPTIONAL, "epsilon", c->prediction_type,
                      sizeof c->prediction_type, err));
        WF_TRY(jc_bool(&d, "use_flow_sigmas", JC_OPTIONAL, false, &c->use_flow_sigmas, err));
        WF_TRY(jc_num(&d, "flow_shift", JC_NULLABLE, 1.0, 1e-3, 1e3, &c->flow_shift, err));
        WF_TRY(jc_int(&d, "solver_order", JC_OPTIONAL, 2, 1, 3, &c->solver_order, err));
        WF_TRY(jc_str(&d, "solver_type", JC_OPTIONAL, "bh2", c->solver_type, sizeof c->solver_type,
                      err));
        WF_TRY(jc_bool(&d, "lower_order_final", JC_OPTIONAL, true, &c->lower_order_final, err));
        WF_TRY(jc_bool(&d, "predict_x0", JC_OPTIONAL, true, &c->predict_x0, err));
        WF_TRY(jc_str(&d, "final_sigmas_type", JC_NULLABLE, "zero", c->final_sigmas_type,
                      sizeof c->final_sigmas_type, err));
        if (strcmp(c->prediction_type, "flow_prediction") != 0 || !c->use_flow_sigmas) {
            st = wf_fail(err, WF_EUNSUPPORTED,
                         "%s: UniPC with prediction_type \"%s\" and use_flow_sigmas %s; Wan models "
                         "need \"flow_prediction\" with use_flow_sigmas true",
                         path, c->prediction_type, c->use_flow_sigmas ? "true" : "false");
            goto out;
        }
        if (strcmp(c->solver_type, "bh1") != 0 && strcmp(c->solver_type, "bh2") != 0) {
            st = wf_fail(err, WF_EFORMAT, "%s: field 'solver_type' is \"%s\", expected bh1 or bh2",
                         path, c->solver_type);
            goto out;
        }
    } else if (strcmp(c->class_name, "FlowMatchEulerDiscreteScheduler") == 0) {
        c->kind = DFS_SCHED_EULER;
        WF_TRY(jc_num(&d, "shift", JC_OPTIONAL, 1.0, 1e-3, 1e3, &c->shift, err));
        WF_TRY(
            jc_bool(&d, "use_dynamic_shifting", JC_OPTIONAL, false, &c->use_dynamic_shifting, err));
        if (c->use_dynamic_shifting) {
            st = wf_fail(err, WF_EUNSUPPORTED,
                         "%s: use_dynamic_shifting is true; Wan pipelines give no mu, set it false",
                         path);
            goto out;
        }
    } else {
        st = wf_fail(err, WF_EUNSUPPORTED,
                     "%s: scheduler \"%s\" is not supported (use UniPCMultistepScheduler or "
                     "FlowMatchEulerDiscreteScheduler)",
                     path, c->class_name);
        goto out;
    }
out:
    jc_free(&d);
    return st;
}

/* model_index.json entry: [library, class] or [null, null] (absent). */
static wf_status component_class(const jc_doc *d, const char *name, bool required, char *cls,
                                 size_t cap, bool *present, wf_err *err) {
    json_t *v = json_object_get(d->root, name);
    *present = false;
    if (!v || json_is_null(v)) goto absent;
    if (!json_is_array(v) || json_array_size(v) != 2)
        return wf_fail(err, WF_EFORMAT, "%s: field '%s' must be [library, class], found %s",
                       d->file, name, jc_type_name(v));
    json_t *c = json_array_get(v, 1);
    if (json_is_null(c)) goto absent;
    if (!json_is_string(c) || strlen(json_string_value(c)) >= cap)
        return wf_fail(err, WF_EFORMAT, "%s: field '%s'[1] must be a class name string", d->file,
                       name);
    strcpy(cls, json_string_value(c));
    *present = true;
    return WF_OK;
absent:
    if (required)
        return wf_fail(err, WF_EFORMAT, "%s: component '%s' is missing (it must name its class)",
                       d->file, name);
    return WF_OK;
}

void dfs_close(dfs_pipeline **pp) {
    if (!pp || !*pp) return;
    free((*pp)->root);
    free((*pp)->tokenizer_model);
    free(*pp);
    *pp = NULL;
}

static char *join(const char *a, const char *b) {
    char *s = malloc(strlen(a) + strlen(b) + 2);
    if (s) sprintf(s, "%s/%s", a, b);
    return s;
}

/* Reads <root>/<sub>/<file> with reader; prefixes errors with the component name. */
typedef wf_status (*reader_fn)(const char *path, void *cfg, wf_err *err);
static wf_status read_component(const char *root, const char *sub, const char *file, reader_fn fn,
                                void *cfg, wf_err *err) {
    char *dir = join(root, sub), *path = dir ? join(dir, file) : NULL;
    wf_status st;
    bool absent;
    if (!path) st = wf_fail(err, WF_ENOMEM, "out of memory");
    else if ((st = fsin_check(path, &absent, err))) {
        /* absent: say what should be there; a FIFO, a folder, a loop: fsin's message */
        if (absent)
            st = wf_fail(err, WF_EIO, "%s: missing; model_index.json lists component '%s'", path,
                         sub);
    } else st = fn(path, cfg, err);
    free(path);
    free(dir);
    return st;
}

/* model_index.json: the pipeline class, the boundary, and each component's class (which also says
 * whether transformer_2 is there). */
static wf_status read_index(dfs_pipeline *p, const char *mi_path, wf_err *err) {
    static const struct {
        const char *name;
        bool required;
        const char *classes[3];
    } comps[] = {
        {"transformer", true, {"WanTransformer3DModel"}},
        {"transformer_2", false, {"WanTransformer3DModel"}},
        {"vae", true, {"AutoencoderKLWan"}},
        {"text_encoder", true, {"UMT5EncoderModel"}},
        {"tokenizer", true, {"T5TokenizerFast", "T5Tokenizer", "AutoTokenizer"}},
        {"scheduler", true, {"UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler"}},
    };
    jc_doc d = {0};
    wf_status st = WF_OK;
    WF_TRY(jc_load(&d, mi_path, "model_index.json", err));
    WF_TRY(jc_str(&d, "_class_name", JC_REQUIRED, NULL, p->class_name, sizeof p->class_name, err));
    if (strcmp(p->class_name, "WanPipeline") != 0) {
        st = wf_fail(err, WF_EUNSUPPORTED,
                     "%s: pipeline class is \"%s\"; wanfarm runs text-to-video \"WanPipeline\" "
                     "checkpoints",
                     mi_path, p->class_name);
        goto out;
    }
    WF_TRY(jc_num(&d, "boundary_ratio", JC_NULLABLE, NAN, 0.0, 1.0, &p->boundary_ratio, err));
    WF_TRY(jc_bool(&d, "expand_timesteps", JC_NULLABLE, false, &p->expand_timesteps, err));
    for (size_t i = 0; i < sizeof comps / sizeof *comps; i++) {
        char cls[96];
        bool present;
        WF_TRY(
            component_class(&d, comps[i].name, comps[i].required, cls, sizeof cls, &present, err));
        if (!present) continue;
        bool ok = false;
        for (int k = 0; k < 3 && comps[i].classes[k]; k++) ok |= strcmp(cls, comps[i].classes[k]) == 0;
        if (!ok) {
            st = wf_fail(err, WF_EUNSUPPORTED, "%s: component '%s' has class \"%s\", expected %s%s%s",
                         mi_path, comps[i].name, cls, comps[i].classes[0],
                         comps[i].classes[1] ? " or " : "",
                         comps[i].classes[1] ? comps[i].classes[1] : "");
            goto out;
        }
        if (i == 1) p->has_transformer_2 = true;
    }
out:
    jc_free(&d);
    return st;
}

/* Every component's config, and the tokenizer's model file. */
static wf_status read_components(dfs_pipeline *p, const char *root, wf_err *err) {
    wf_status st = WF_OK;
    WF_TRY(read_component(root, "transformer", "config.json",
                          (reader_fn)dfs_read_transformer_config, &p->transformer, err));
    if (p->has_transformer_2)
        WF_TRY(read_component(root, "transformer_2", "config.json",
                              (reader_fn)dfs_read_transformer_config, &p->transformer_2, err));
    WF_TRY(
        read_component(root, "vae", "config.json", (reader_fn)dfs_read_vae_config, &p->vae, err));
    WF_TRY(read_component(root, "text_encoder", "config.json", (reader_fn)dfs_read_umt5_config,
                          &p->text_encoder, err));
    WF_TRY(read_component(root, "scheduler", "scheduler_config.json",
                          (reader_fn)dfs_read_scheduler_config, &p->scheduler, err));
    p->tokenizer_model = join(root, "tokenizer/spiece.model");
    if (!p->tokenizer_model) return wf_fail(err, WF_ENOMEM, "out of memory");
    bool absent;
    if ((st = fsin_check(p->tokenizer_model, &absent, err)) && absent)
        return wf_fail(err, WF_EIO, "%s: missing; the tokenizer must be a SentencePiece spiece.model",
                       p->tokenizer_model);
out:
    return st;
}

/* The components must fit together: the DiT's channels and text width against the VAE and the
 * text encoder, no image branch, one patch size for both experts. */
static wf_status check_fit(const dfs_pipeline *p, const char *root, wf_err *err) {
    const dfs_transformer_config *t = &p->transformer;
    for (int k = 0; k < (p->has_transformer_2 ? 2 : 1); k++) {
        const dfs_transformer_config *x = k ? &p->transformer_2 : t;
        const char *nm = k ? "transformer_2" : "transformer";
        if (x->out_channels != p->vae.z_dim || x->in_channels != p->vae.z_dim)
            return wf_fail(err, WF_EFORMAT,
                           "%s: %s/config.json in/out_channels (%lld/%lld) differ from vae z_dim "
                           "%lld (image-conditioned models are not text-to-video)",
                           root, nm, (long long)x->in_channels, (long long)x->out_channels,
                           (long long)p->vae.z_dim);
        if (x->text_dim != p->text_encoder.d_model)
            return wf_fail(err, WF_EFORMAT,
                           "%s: %s/config.json text_dim %lld differs from text_encoder d_model %lld",
                           root, nm, (long long)x->text_dim, (long long)p->text_encoder.d_model);
        if (x->image_dim || x->added_kv_proj_dim)
            return wf_fail(err, WF_EUNSUPPORTED,
                           "%s: %s/config.json has an image branch (image_dim/added_kv_proj_dim); "
                           "wanfarm runs text-to-video models",
                           root, nm);
    }
    if (p->has_transformer_2 &&
        memcmp(t->patch_size, p->transformer_2.patch_size, sizeof t->patch_size) != 0)
        return wf_fail(err, WF_EFORMAT, "%s: transformer and transformer_2 patch sizes differ", root);
    return WF_OK;
}

wf_status dfs_open(dfs_pipeline **out, const char *root, wf_err *err) {
    *out = NULL;
    dfs_pipeline *p = calloc(1, sizeof *p);
    if (!p) return wf_fail(err, WF_ENOMEM, "out of memory");
    p->root = strdup(root);
    p->boundary_ratio = NAN;
    char *mi_path = join(root, "model_index.json");
    wf_status st = WF_OK;
    if (!p->root || !mi_path) {
        st = wf_fail(err, WF_ENOMEM, "out of memory");
        goto out;
    }
    /* the folder, then its model_index.json: absent is the usage hint; a FIFO, a file where
     * the folder should be or a symlink loop is said as such (fsin.h) */
    bool absent;
    if ((st = fsin_check_dir(root, &absent, err)) || (st = fsin_check(mi_path, &absent, err))) {
        if (absent)
            st = wf_fail(err, WF_EIO,
                         "%s: no model_index.json here; pass the folder of a Diffusers pipeline "
                         "(e.g. a download of Wan-AI/Wan2.2-T2V-A14B-Diffusers)",
                         root);
        goto out;
    }
    WF_TRY(read_index(p, mi_path, err));
    WF_TRY(read_components(p, root, err));
    WF_TRY(check_fit(p, root, err));
out:
    free(mi_path);
    if (st) dfs_close(&p);
    *out = p;
    return st;
}

void dfs_print_transformer(FILE *f, const char *in, const dfs_transformer_config *c) {
    fprintf(f, "%sWanTransformer3DModel: layers %lld, heads %lld x head_dim %lld = dim %lld, ffn %lld\n",
            in, (long long)c->num_layers, (long long)c->num_attention_heads,
            (long long)c->attention_head_dim, (long long)c->dim, (long long)c->ffn_dim);
    fprintf(f, "%s  patch (%lld, %lld, %lld), in/out channels %lld/%lld, text_dim %lld, freq_dim %lld\n",
            in, (long long)c->patch_size[0], (long long)c->patch_size[1], (long long)c->patch_size[2],
            (long long)c->in_channels, (long long)c->out_channels, (long long)c->text_dim,
            (long long)c->freq_dim);
    fprintf(f, "%s  eps %g, qk_norm %s, cross_attn_norm %s, rope_max_seq_len %lld\n", in, c->eps,
            c->qk_norm, c->cross_attn_norm ? "true" : "false", (long long)c->rope_max_seq_len);
}

void dfs_print_vae(FILE *f, const char *in, const dfs_vae_config *c) {
    fprintf(f, "%sAutoencoderKLWan: base_dim %lld (decoder %lld), z_dim %lld, dim_mult [", in,
            (long long)c->base_dim, (long long)c->decoder_base_dim, (long long)c->z_dim);
    for (size_t i = 0; i < c->n_dim_mult; i++)
        fprintf(f, "%s%lld", i ? ", " : "", (long long)c->dim_mult[i]);
    fprintf(f, "], res_blocks %lld, temperal_downsample [", (long long)c->num_res_blocks);
    for (size_t i = 0; i < c->n_temperal_downsample; i++)
        fprintf(f, "%s%s", i ? ", " : "", c->temperal_downsample[i] ? "true" : "false");
    fprintf(f, "]\n%s  is_residual %s, patch_size %lld, scale factors %lldx%lldx%lld (t x h x w)\n",
            in, c->is_residual ? "true" : "false", (long long)c->patch_size,
            (long long)c->scale_factor_temporal, (long long)c->scale_factor_spatial,
            (long long)c->scale_factor_spatial);
}

void dfs_print_umt5(FILE *f, const char *in, const dfs_umt5_config *c) {
    fprintf(f, "%sUMT5EncoderModel: layers %lld, d_model %lld, heads %lld x d_kv %lld, d_ff %lld, "
               "vocab %lld\n",
            in, (long long)c->num_layers, (long long)c->d_model, (long long)c->num_heads,
            (long long)c->d_kv, (long long)c->d_ff, (long long)c->vocab_size);
    fprintf(f, "%s  relative buckets %lld (max distance %lld), eps %g, %s, pad %lld, eos %lld\n", in,
            (long long)c->relative_attention_num_buckets,
            (long long)c->relative_attention_max_distance, c->layer_norm_epsilon,
            c->feed_forward_proj, (long long)c->pad_token_id, (long long)c->eos_token_id);
}

void dfs_print_scheduler(FILE *f, const char *in, const dfs_scheduler_config *c) {
    if (c->kind == DFS_SCHED_UNIPC)
        fprintf(f, "%s%s: %s, flow sigmas, flow_shift %g, order %lld (%s), lower_order_final %s, "
                   "final sigma %s, %lld train steps\n",
                in, c->class_name, c->prediction_type, c->flow_shift, (long long)c->solver_order,
                c->solver_type, c->lower_order_final ? "true" : "false", c->final_sigmas_type,
                (long long)c->num_train_timesteps);
    else
        fprintf(f, "%s%s: shift %g, %lld train steps\n", in, c->class_name, c->shift,
                (long long)c->num_train_timesteps);
}

void dfs_print_pipeline(FILE *f, const dfs_pipeline *p) {
    fprintf(f, "pipeline %s: %s\n", p->root, p->class_name);
    if (isnan(p->boundary_ratio)) fprintf(f, "  boundary_ratio: none\n");
    else fprintf(f, "  boundary_ratio: %g (expert switch at t >= %g)\n", p->boundary_ratio,
                 p->boundary_ratio * (double)p->scheduler.num_train_timesteps);
    fprintf(f, "  expand_timesteps: %s\n", p->expand_timesteps ? "true" : "false");
    fprintf(f, "  transformer (high-noise expert%s):\n", p->has_transformer_2 ? "" : ", the only one");
    dfs_print_transformer(f, "    ", &p->transformer);
    if (p->has_transformer_2) {
        fprintf(f, "  transformer_2 (low-noise expert):\n");
        dfs_print_transformer(f, "    ", &p->transformer_2);
    }
    fprintf(f, "  vae:\n");
    dfs_print_vae(f, "    ", &p->vae);
    fprintf(f, "  text_encoder:\n");
    dfs_print_umt5(f, "    ", &p->text_encoder);
    fprintf(f, "  tokenizer: %s\n", p->tokenizer_model);
    fprintf(f, "  scheduler:\n");
    dfs_print_scheduler(f, "    ", &p->scheduler);
}
