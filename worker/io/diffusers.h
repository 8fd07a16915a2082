/* diffusers.h: a Diffusers pipeline folder, read (prefix dfs_).
 *
 * What it is: model_index.json and every component's config, parsed with jansson into typed
 * structs, with the checks that need no weights: the pipeline and component classes are ones
 * wanfarm runs, required fields are present and typed, values are in range (heads x head_dim,
 * patch sizes, latent statistics lengths, ...). Messages name the file and the field.
 *   root/
 *     model_index.json          _class_name WanPipeline, component [library, class] pairs,
 *                               boundary_ratio, expand_timesteps
 *     transformer/              WanTransformer3DModel (high-noise expert for A14B)
 *     transformer_2/            WanTransformer3DModel (low-noise expert), optional
 *     vae/                      AutoencoderKLWan
 *     text_encoder/             UMT5EncoderModel
 *     tokenizer/                spiece.model (+ tokenizer_config.json)
 *     scheduler/                UniPCMultistepScheduler or FlowMatchEulerDiscreteScheduler
 * What it is not: the weights (safetensors.h opens those; the model code checks their shapes
 *   against these configs).
 * Tested by: tests/test_diffusers.c (fixtures saved by diffusers' save_pretrained, and broken
 *   copies of them).
 */
#ifndef DFS_DIFFUSERS_H
#define DFS_DIFFUSERS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"

#define DFS_MAX_LEVELS 8   /* VAE dim_mult entries */
#define DFS_MAX_LATENT 128 /* latents_mean/std entries (Wan2.1: 16, Wan2.2: 48) */

typedef struct dfs_transformer_config {
    int64_t patch_size[3];        /* (t, h, w) */
    int64_t num_attention_heads;  /* NH */
    int64_t attention_head_dim;   /* HD */
    int64_t dim;                  /* D = NH * HD (derived) */
    int64_t in_channels, out_channels, text_dim, freq_dim, ffn_dim, num_layers;
    bool cross_attn_norm;
    char qk_norm[32];
    double eps;
    int64_t image_dim;            /* 0: none (null in the config) */
    int64_t added_kv_proj_dim;    /* 0: none */
    int64_t rope_max_seq_len;
    int64_t pos_embed_seq_len;    /* 0: none */
} dfs_transformer_config;

typedef struct dfs_vae_config {
    int64_t base_dim, decoder_base_dim, z_dim, num_res_blocks;
    int64_t dim_mult[DFS_MAX_LEVELS];
    size_t n_dim_mult;
    bool temperal_downsample[DFS_MAX_LEVELS]; /* (sic: the Diffusers spelling) */
    size_t n_temperal_downsample;             /* n_dim_mult - 1 */
    size_t n_attn_scales;                     /* must be 0 for Wan VAEs */
    double dropout;
    bool is_residual;
    int64_t in_channels, out_channels;
    int64_t patch_size;                       /* 0: none (Wan2.1), 2 for Wan2.2 */
    int64_t scale_factor_temporal, scale_factor_spatial;
    double latents_mean[DFS_MAX_LATENT], latents_std[DFS_MAX_LATENT]; /* z_dim each */
} dfs_vae_config;

typedef struct dfs_umt5_config {
    char model_type[16];          /* "umt5" (or "t5") */
    int64_t vocab_size, d_model, d_kv, d_ff, num_layers, num_heads;
    int64_t relative_attention_num_buckets, relative_attention_max_distance;
    double layer_norm_epsilon;
    char feed_forward_proj[32];   /* "gated-gelu" */
    int64_t pad_token_id, eos_token_id;
} dfs_umt5_config;

typedef enum dfs_sched_kind { DFS_SCHED_UNIPC = 0, DFS_SCHED_EULER } dfs_sched_kind;

typedef struct dfs_scheduler_config {
    dfs_sched_kind kind;
    char class_name[64];
    int64_t num_train_timesteps;
    char prediction_type[32];     /* UniPC: "flow_prediction" */
    bool use_flow_sigmas;         /* UniPC */
    double flow_shift;            /* UniPC */
    double shift;                 /* Euler */
    int64_t solver_order;         /* UniPC */
    char solver_type[16];         /* UniPC: "bh2" or "bh1" */
    bool lower_order_final;       /* UniPC */
    bool predict_x0;              /* UniPC */
    char final_sigmas_type[16];   /* "zero" or "sigma_min" */
    bool use_dynamic_shifting;    /* Euler: must be false (no mu is given by Wan pipelines) */
} dfs_scheduler_config;

typedef struct dfs_pipeline {
    char *root;
    char class_name[64];          /* WanPipeline */
    dfs_transformer_config transformer;
    bool has_transformer_2;
    dfs_transformer_config transformer_2;
    dfs_vae_config vae;
    dfs_umt5_config text_encoder;
    dfs_scheduler_config scheduler;
    char *tokenizer_model;        /* path of tokenizer/spiece.model */
    double boundary_ratio;        /* NaN when absent or null */
    bool expand_timesteps;
} dfs_pipeline;

/* Component parsers, usable on their own (path = the config file). */
wf_status dfs_read_transformer_config(const char *path, dfs_transformer_config *c, wf_err *err);
wf_status dfs_read_vae_config(const char *path, dfs_vae_config *c, wf_err *err);
wf_status dfs_read_umt5_config(const char *path, dfs_umt5_config *c, wf_err *err);
wf_status dfs_read_scheduler_config(const char *path, dfs_scheduler_config *c, wf_err *err);

/* Reads the whole folder. */
wf_status dfs_open(dfs_pipeline **out, const char *root, wf_err *err);
void dfs_close(dfs_pipeline **p);

/* Human-readable dumps, for `wanfarm inspect`. */
void dfs_print_transformer(FILE *f, const char *indent, const dfs_transformer_config *c);
void dfs_print_vae(FILE *f, const char *indent, const dfs_vae_config *c);
void dfs_print_umt5(FILE *f, const char *indent, const dfs_umt5_config *c);
void dfs_print_scheduler(FILE *f, const char *indent, const dfs_scheduler_config *c);
void dfs_print_pipeline(FILE *f, const dfs_pipeline *p);

#endif
