/* bench_vae.c: one Wan VAE decode (AutoencoderKLWan), wanfarm vs PyTorch/Diffusers, a plug-in of
 * the bench engine (bench_engine.h), in the nccl-tests shape.
 *
 * What it is: writes a random-weight AutoencoderKLWan checkpoint at the real Wan2.1 widths
 * (base_dim 96, z_dim 16, dim_mult [1,2,4,4], 2 res blocks, temperal_downsample [F,T,T], the real
 * latents_mean/std; encoder included, since the loader checks the whole model) in the real
 * Diffusers layout (config.json + diffusion_pytorch_model.safetensors, --dtype storage) and a
 * random latent into a temporary folder, from a child process so that none of that memory counts
 * in this process' peak RSS. It loads the folder with vae_load (the real loader) and decodes the
 * latent (default: 9 frames of 256x256, latent [16, 3, 32, 32]) once per row: the streaming decode
 * (the default schedule, one latent frame per chunk, frames handed to a callback), the whole-video
 * decode (VAE_WHOLE) and, on request, a spatially tiled decode. Each row: the median time of -n
 * decodes after -w warm-ups, GFLOP/s and % of the measured sgemm peak, the Diffusers time of the
 * same decode on the same folder (bench/torch_vae_peer.py, run first, alone) and the ratio, the
 * relative L2 error against Diffusers' video, and memory: arena (sized by vae_decode_arena_bytes),
 * backend workspace, and both processes' peak RSS. A footer says OK or FAILED; the exit status is 1
 * when it says FAILED. Metrics: bench/PERFORMANCE.md, section "bench_vae".
 * What it is not: a test (tests/test_vae.c owns correctness against fixtures), a benchmark of the
 * encoder, or a GPU benchmark (yet).
 * Run:   build/bench/bench_vae [--frames 9 --size 256x256 --rows stream,whole[,tiled]
 *                               --tile 128,96 --dtype f32|bf16 -w 0 -n 1 --threads N --check 1
 *                               --torch 1 --json FILE --keep 0]
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
#include "vae.h"


/* The fixed part of the config: the Wan2.1 VAE (Wan2.1-T2V-*-Diffusers vae/config.json). */
enum { ZDIM = 16, BASE_DIM = 96, NRES = 2, NLEVELS = 4, S_SPATIAL = 8, S_TEMPORAL = 4 };
static const int DIM_MULT[NLEVELS] = {1, 2, 4, 4};
static const int TDOWN[NLEVELS - 1] = {0, 1, 1}; /* temperal_downsample */
static const double WAN21_MEAN[ZDIM] = {-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653,
                                        -0.1517, 1.5508,  0.4134,  -0.0715, 0.5517,  -0.3632,
                                        -0.1922, -0.9497, 0.2503,  -0.2921};
static const double WAN21_STD[ZDIM] = {2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708,
                                       2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
                                       1.6382, 1.1253, 2.8251, 1.9160};
#define BIAS_STD 0.02
#define GAMMA_STD 0.02
#define OUT_GAIN 0.5 /* decoder.conv_out: keeps most of the video inside the [-1, 1] clamp */

typedef struct bcfg {
    int64_t F, H, W; /* video frames, pixel height, width */
    int64_t T, h, w; /* latent frames, height, width */
    wk_dtype wdt;
    int64_t tile_min, tile_stride; /* tiled row: tile_sample_min_* and tile_sample_stride_* */
} bcfg;

/* ------------------------------------------------------------------------------------------ */
/* the checkpoint: every tensor of AutoencoderKLWan (Wan2.1 layout), Diffusers names */

typedef struct wspec {
    char name[128];
    int ndim;
    uint64_t shape[5];
    double mean, std;
} wspec;

typedef struct wlist {
    wspec *v;
    size_t n, cap;
    int err;
} wlist;

static void wl_add(wlist *l, const char *name, double mean, double std, int ndim,
                   const uint64_t *d) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        wspec *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->err = 1;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    wspec *s = &l->v[l->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->ndim = ndim;
    memcpy(s->shape, d, (size_t)ndim * sizeof *d);
    s->mean = mean;
    s->std = std;
}

/* weight [out, in, k...] ~ N(0, (gain / sqrt(in * prod k))^2) and bias [out] ~ N(0, BIAS_STD^2):
 * "kaiming-like", so that a convolution of an O(1) input gives an O(1) output */
static void add_conv(wlist *l, const char *prefix, uint64_t out, uint64_t in, int nk,
                     const uint64_t *k, double gain) {
    char n[128];
    uint64_t d[5] = {out, in, 0, 0, 0}, fan_in = in;
    for (int i = 0; i < nk; i++) {
        d[2 + i] = k[i];
        fan_in *= k[i];
    }
    snprintf(n, sizeof n, "%sweight", prefix);
    wl_add(l, n, 0.0, gain / sqrt((double)fan_in), 2 + nk, d);
    snprintf(n, sizeof n, "%sbias", prefix);
    wl_add(l, n, 0.0, BIAS_STD, 1, d);
}

static const uint64_t K333[3] = {3, 3, 3}, K111[3] = {1, 1, 1}, K33[2] = {3, 3}, K11[2] = {1, 1},
                      K311[3] = {3, 1, 1};

/* RMS-norm gamma [C, 1, 1, 1] (or [C, 1, 1] in the attention block) ~ 1 + N(0, GAMMA_STD^2) */
static void add_gamma(wlist *l, const char *name, uint64_t C, int ndim) {
    const uint64_t d[4] = {C, 1, 1, 1};
    wl_add(l, name, 1.0, GAMMA_STD, ndim, d);
}

static void add_res(wlist *l, const char *p, uint64_t in, uint64_t out) { /* WanResidualBlock */
    char n[128];
    snprintf(n, sizeof n, "%s.norm1.gamma", p);
    add_gamma(l, n, in, 4);
    snprintf(n, sizeof n, "%s.conv1.", p);
    add_conv(l, n, out, in, 3, K333, 1.0);
    snprintf(n, sizeof n, "%s.norm2.gamma", p);
    add_gamma(l, n, out, 4);
    snprintf(n, sizeof n, "%s.conv2.", p);
    add_conv(l, n, out, out, 3, K333, 1.0);
    if (in != out) {
        snprintf(n, sizeof n, "%s.conv_shortcut.", p);
        add_conv(l, n, out, in, 3, K111, 1.0);
    }
}

static void add_mid(wlist *l, const char *p, uint64_t C) { /* WanMidBlock: res, attn, res */
    char n[128];
    snprintf(n, sizeof n, "%s.resnets.0", p);
    add_res(l, n, C, C);
    snprintf(n, sizeof n, "%s.resnets.1", p);
    add_res(l, n, C, C);
    snprintf(n, sizeof n, "%s.attentions.0.norm.gamma", p);
    add_gamma(l, n, C, 3);
    snprintf(n, sizeof n, "%s.attentions.0.to_qkv.", p);
    add_conv(l, n, 3 * C, C, 2, K11, 1.0);
    snprintf(n, sizeof n, "%s.attentions.0.proj.", p);
    add_conv(l, n, C, C, 2, K11, 1.0);
}

/* AutoencoderKLWan.__init__ for the Wan2.1 layout (is_residual false, no patchify). */
static int build_spec(wlist *l) {
    char n[128];
    uint64_t dims[NLEVELS + 1];
    /* encoder: dims base * [1] + dim_mult; down_blocks flat (res blocks, then a resample) */
    dims[0] = BASE_DIM;
    for (int i = 0; i < NLEVELS; i++) dims[i + 1] = (uint64_t)(BASE_DIM * DIM_MULT[i]);
    add_conv(l, "encoder.conv_in.", dims[0], 3, 3, K333, 1.0);
    int k = 0;
    for (int i = 0; i < NLEVELS; i++) {
        uint64_t in = dims[i], out = dims[i + 1];
        for (int r = 0; r < NRES; r++, k++) {
            snprintf(n, sizeof n, "encoder.down_blocks.%d", k);
            add_res(l, n, in, out);
            in = out;
        }
        if (i != NLEVELS - 1) {
            snprintf(n, sizeof n, "encoder.down_blocks.%d.resample.1.", k);
            add_conv(l, n, out, out, 2, K33, 1.0);
            if (TDOWN[i]) {
                snprintf(n, sizeof n, "encoder.down_blocks.%d.time_conv.", k);
                add_conv(l, n, out, out, 3, K311, 1.0);
            }
            k++;
        }
    }
    add_mid(l, "encoder.mid_block", dims[NLEVELS]);
    add_gamma(l, "encoder.norm_out.gamma", dims[NLEVELS], 4);
    add_conv(l, "encoder.conv_out.", 2 * ZDIM, dims[NLEVELS], 3, K333, 1.0);
    add_conv(l, "quant_conv.", 2 * ZDIM, 2 * ZDIM, 3, K111, 1.0);
    add_conv(l, "post_quant_conv.", ZDIM, ZDIM, 3, K111, 1.0);
    /* decoder: dims base * [dim_mult[-1]] + reversed(dim_mult); up_blocks of NRES + 1 res blocks
     * and an upsampler (to dims // 2, time_conv doubling the frames where temperal_upsample) */
    dims[0] = (uint64_t)(BASE_DIM * DIM_MULT[NLEVELS - 1]);
    for (int i = 0; i < NLEVELS; i++)
        dims[i + 1] = (uint64_t)(BASE_DIM * DIM_MULT[NLEVELS - 1 - i]);
    add_conv(l, "decoder.conv_in.", dims[0], ZDIM, 3, K333, 1.0);
    add_mid(l, "decoder.mid_block", dims[0]);
    for (int i = 0; i < NLEVELS; i++) {
        uint64_t in = i > 0 ? dims[i] / 2 : dims[i], out = dims[i + 1];
        for (int r = 0; r < NRES + 1; r++) {
            snprintf(n, sizeof n, "decoder.up_blocks.%d.resnets.%d", i, r);
            add_res(l, n, in, out);
            in = out;
        }
        if (i != NLEVELS - 1) {
            snprintf(n, sizeof n, "decoder.up_blocks.%d.upsamplers.0.resample.1.", i);
            add_conv(l, n, out / 2, out, 2, K33, 1.0);
            if (TDOWN[NLEVELS - 2 - i]) {
                snprintf(n, sizeof n, "decoder.up_blocks.%d.upsamplers.0.time_conv.", i);
                add_conv(l, n, 2 * out, out, 3, K311, 1.0);
            }
        }
    }
    add_gamma(l, "decoder.norm_out.gamma", dims[NLEVELS], 4);
    add_conv(l, "decoder.conv_out.", 3, dims[NLEVELS], 3, K333, OUT_GAIN);
    return l->err;
}

static uint64_t spec_numel(const wspec *s) {
    uint64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= s->shape[d];
    return n;
}

static json_t *int_array(const int *v, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

/* config.json as save_pretrained writes it (every __init__ argument). */
static int write_config(const char *path) {
    json_t *o = json_object(), *td = json_array(), *mean = json_array(), *std = json_array();
    if (!o || !td || !mean || !std) return -1;
    for (int i = 0; i < NLEVELS - 1; i++) json_array_append_new(td, json_boolean(TDOWN[i]));
    for (int i = 0; i < ZDIM; i++) {
        json_array_append_new(mean, json_real(WAN21_MEAN[i]));
        json_array_append_new(std, json_real(WAN21_STD[i]));
    }
    json_object_set_new(o, "_class_name", json_string("AutoencoderKLWan"));
    json_object_set_new(o, "_diffusers_version", json_string("0.42.1"));
    json_object_set_new(o, "attn_scales", json_array());
    json_object_set_new(o, "base_dim", json_integer(BASE_DIM));
    json_object_set_new(o, "decoder_base_dim", json_null());
    json_object_set_new(o, "dim_mult", int_array(DIM_MULT, NLEVELS));
    json_object_set_new(o, "dropout", json_real(0.0));
    json_object_set_new(o, "in_channels", json_integer(3));
    json_object_set_new(o, "is_residual", json_false());
    json_object_set_new(o, "latents_mean", mean);
    json_object_set_new(o, "latents_std", std);
    json_object_set_new(o, "num_res_blocks", json_integer(NRES));
    json_object_set_new(o, "out_channels", json_integer(3));
    json_object_set_new(o, "patch_size", json_null());
    json_object_set_new(o, "scale_factor_spatial", json_integer(S_SPATIAL));
    json_object_set_new(o, "scale_factor_temporal", json_integer(S_TEMPORAL));
    json_object_set_new(o, "temperal_downsample", td);
    json_object_set_new(o, "z_dim", json_integer(ZDIM));
    int r = json_dump_file(o, path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(6));
    json_decref(o);
    return r;
}

/* Runs in the child: config.json, diffusion_pytorch_model.safetensors, inputs.safetensors. */
static int write_folder(const char *dir, const bcfg *c) {
    char path[1200];
    wf_err err = {0};
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (write_config(path) != 0) {
        fprintf(stderr, "bench_vae: cannot write %s\n", path);
        return 1;
    }
    wlist l = {0};
    if (build_spec(&l) != 0) {
        fprintf(stderr, "bench_vae: out of memory\n");
        free(l.v);
        return 1;
    }
    st_item *items = calloc(l.n, sizeof *items);
    void **bufs = calloc(l.n, sizeof *bufs);
    int rc = 1;
    if (!items || !bufs) goto out;
    for (size_t i = 0; i < l.n; i++) {
        const wspec *s = &l.v[i];
        size_t n = (size_t)spec_numel(s);
        if (!(bufs[i] = bu_random_tensor(s->name, n, s->mean, s->std, c->wdt))) goto out;
        items[i] = (st_item){s->name, st_dtype_of(c->wdt), s->ndim, s->shape, bufs[i]};
    }
    static const char *const meta[2] = {"format", "pt"};
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    if (st_write(path, items, l.n, meta, 1, &err) != WF_OK) {
        fprintf(stderr, "bench_vae: %s\n", err.msg);
        goto out;
    }

    /* the latent in VAE space, as WanPipeline hands it to vae.decode: z = N(0, 1) * std + mean
     * per channel (the DiT's output de-normalised with the real Wan2.1 statistics) */
    const size_t per = (size_t)(c->T * c->h * c->w), nz = (size_t)ZDIM * per;
    float *z = malloc(nz * sizeof *z);
    if (z) {
        for (int ch = 0; ch < ZDIM; ch++) {
            char nm[32];
            snprintf(nm, sizeof nm, "z.%d", ch);
            bu_fill_normal(z + (size_t)ch * per, per, WAN21_MEAN[ch], WAN21_STD[ch], bu_name_seed(nm));
        }
        const uint64_t sz[4] = {ZDIM, (uint64_t)c->T, (uint64_t)c->h, (uint64_t)c->w};
        const st_item in[1] = {{"z", ST_F32, 4, sz, z}};
        snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
        if (st_write(path, in, 1, NULL, 0, &err) != WF_OK)
            fprintf(stderr, "bench_vae: %s\n", err.msg);
        else rc = 0;
    } else {
        fprintf(stderr, "bench_vae: out of memory\n");
    }
    free(z);
out:
    if (bufs)
        for (size_t i = 0; i < l.n; i++) free(bufs[i]);
    free(bufs);
    free(items);
    free(l.v);
    return rc;
}

static int write_folder_ctx(const char *dir, const void *ctx) { return write_folder(dir, ctx); }


/* ------------------------------------------------------------------------------------------ */
/* FLOPs of decoding a latent region of T frames of h x w (PERFORMANCE.md, "bench_vae"): every
 * convolution 2 * (output elements) * Cin * kT * kH * kW, padding counted as real; the mid-block
 * attention's 1x1 convs the same way plus 4 (HW)^2 C per frame for Q K^T and P V. Norms, SiLU,
 * upsampling copies, residual adds and the clamp are not counted. Walks the loaded decoder. */
static double conv_flops(double n_out, int64_t cin, int64_t cout, int64_t kvol) {
    return 2.0 * n_out * (double)cout * (double)cin * (double)kvol;
}

static double res_flops(const vae_resblock *r, double n) {
    double f = conv_flops(n, r->in, r->out, 27) + conv_flops(n, r->out, r->out, 27);
    if (r->in != r->out) f += conv_flops(n, r->in, r->out, 1);
    return f;
}

static double vae_dec_flops(const vae_model *m, int64_t T, int64_t h, int64_t w) {
    const vae_coder *d = &m->w.dec;
    const int64_t z = m->cfg.z_dim, C0 = d->mid_attn.dim;
    double t = (double)T, H = (double)h, W = (double)w;
    double f = conv_flops(t * H * W, z, z, 1)       /* post_quant_conv */
               + conv_flops(t * H * W, z, C0, 27); /* conv_in */
    const double n = t * H * W, hw = H * W;
    f += res_flops(&d->mid_res[0], n) + res_flops(&d->mid_res[1], n);
    f += conv_flops(n, C0, 3 * C0, 1) + conv_flops(n, C0, C0, 1) /* to_qkv, proj */
         + 4.0 * t * hw * hw * (double)C0;                        /* Q K^T, P V per frame */
    int64_t C = C0;
    for (int i = 0; i < d->n_layers; i++) {
        const vae_layer *l = &d->layers[i];
        if (!l->is_resample) {
            f += res_flops(&l->res, t * H * W);
            C = l->res.out;
            continue;
        }
        const vae_resample *rs = &l->rs;
        if (rs->mode == VAE_UP3D) { /* time_conv on every frame but the first: 2 frames each */
            f += conv_flops((t - 1) * H * W, rs->dim, 2 * rs->dim, 3);
            t = 2 * t - 1;
        }
        H *= 2;
        W *= 2;
        f += conv_flops(t * H * W, rs->dim, rs->out_dim, 9); /* 3x3 after the 2x nearest upsample */
        C = rs->out_dim;
    }
    return f + conv_flops(t * H * W, C, 3, 27); /* conv_out */
}

/* The tiles of a tiled decode (vae_decode's tiled_decode): the sum of each tile's decode. */
static double vae_tiled_flops(const vae_model *m, const bcfg *c, int *ntiles) {
    const int64_t lmin = c->tile_min / m->s, lstr = c->tile_stride / m->s;
    double f = 0;
    int n = 0;
    for (int64_t y0 = 0; y0 < c->h; y0 += lstr)
        for (int64_t x0 = 0; x0 < c->w; x0 += lstr, n++)
            f += vae_dec_flops(m, c->T, c->h - y0 < lmin ? c->h - y0 : lmin,
                               c->w - x0 < lmin ? c->w - x0 : lmin);
    *ntiles = n;
    return f;
}

/* ------------------------------------------------------------------------------------------ */
/* the plug-in: one row per decode path, run in increasing arena size */

enum { ROW_STREAM, ROW_WHOLE, ROW_TILED, NROWS };
static const char *const ROW_NAME[NROWS] = {"stream", "whole", "tiled"};

typedef struct vrow {
    int kind;
    vae_opts opts;
    size_t arena_bytes;
    double flops;
    float *out;                  /* [3, F, H, W]: the last decode */
    int64_t frames_seen, calls, max_per_call; /* what the callback got in the last decode */
} vrow;

typedef struct frames_ctx {
    float *out; /* [3, F, H, W] */
    int64_t F, seen, calls, max_n;
} frames_ctx;

/* The frame callback: what a pipeline's video writer gets. Copies the interleaved frames into the
 * planar video (for the check) and counts them. */
static wf_status on_frames(void *ctx, int64_t first, int64_t n, int64_t H, int64_t W,
                           const float *rgb, wf_err *err) {
    frames_ctx *fc = ctx;
    if (first != fc->seen || first + n > fc->F)
        return wf_fail(err, WF_EINVAL, "frames %lld..%lld out of order (expected %lld of %lld)",
                       (long long)first, (long long)(first + n - 1), (long long)fc->seen,
                       (long long)fc->F);
    const size_t hw = (size_t)(H * W);
    for (int64_t f = 0; f < n; f++)
        for (size_t i = 0; i < hw; i++)
            for (int ch = 0; ch < 3; ch++)
                fc->out[((size_t)ch * (size_t)fc->F + (size_t)(first + f)) * hw + i] =
                    rgb[((size_t)f * hw + i) * 3 + (size_t)ch];
    fc->seen += n;
    fc->calls++;
    if (n > fc->max_n) fc->max_n = n;
    return WF_OK;
}

static int cmp_row_arena(const void *a, const void *b) {
    const vrow *x = *(vrow *const *)a, *y = *(vrow *const *)b;
    return (x->arena_bytes > y->arena_bytes) - (x->arena_bytes < y->arena_bytes);
}

static struct {
    bcfg c;
    const char *rows_arg;
    vae_model *m;
    float *z;                  /* the latent [16, T, h, w] */
    double load_s, full_flops; /* FLOPs of one untiled decode */
    int ntiles, tiles_used;
    int on[NROWS];             /* --rows, by kind */
    vrow rows[NROWS];          /* by kind */
    vrow *order[NROWS];        /* the engine's rows: on rows, increasing arena */
    int index[NROWS];          /* kind -> the engine's row (-1: off) */
    wk_arena arena;            /* the running row's */
    float *ref_untiled, *ref_tiled; /* the peer's videos, once read */
} V = {.c = {.F = 9, .H = 256, .W = 256, .tile_min = 128, .tile_stride = 96},
       .rows_arg = "stream,whole"};

/* --size WxH and --tile MIN,STRIDE: two numbers into a and b */
static int parse_two(const char *v, const char *fmt, int64_t *a, int64_t *b) {
    long long x, y;
    char extra;
    if (sscanf(v, fmt, &x, &y, &extra) != 2) return -1;
    *a = x;
    *b = y;
    return 0;
}
static int parse_size(const char *v, void *dst) {
    (void)dst;
    return parse_two(v, "%lldx%lld%c", &V.c.W, &V.c.H);
}
static int parse_tile(const char *v, void *dst) {
    (void)dst;
    return parse_two(v, "%lld,%lld%c", &V.c.tile_min, &V.c.tile_stride);
}

static int vae_init(bn_run *e) {
    bcfg *c = &V.c;
    const int bad = bn_pick_rows(V.rows_arg, ROW_NAME, NROWS, V.on); /* stream, whole, tiled */
    c->wdt = e->o.wdt;
    if (bad || (c->F - 1) % S_TEMPORAL || c->H < S_SPATIAL || c->W < S_SPATIAL || c->H % S_SPATIAL ||
        c->W % S_SPATIAL || c->H > 8192 || c->W > 8192 || c->tile_min < S_SPATIAL ||
        c->tile_stride < S_SPATIAL || c->tile_min % S_SPATIAL || c->tile_stride % S_SPATIAL ||
        c->tile_min < c->tile_stride) {
        fprintf(stderr, "bench_vae: bad value (--frames %lld (1 + 4k) --size %lldx%lld (multiples "
                "of 8) --rows %s --tile %lld,%lld)\n", (long long)c->F, (long long)c->W,
                (long long)c->H, V.rows_arg, (long long)c->tile_min, (long long)c->tile_stride);
        return 2;
    }
    c->T = 1 + (c->F - 1) / S_TEMPORAL;
    c->h = c->H / S_SPATIAL;
    c->w = c->W / S_SPATIAL;
    return bu_write_in_child("bench_vae", write_folder_ctx, c, e->o.keep, e->dir, sizeof e->dir,
                             &e->write_s);
}

static void print_header(const bn_run *e) {
    const bcfg *c = &V.c;
    printf("# model: AutoencoderKLWan, Wan2.1 widths (base_dim %d, z_dim %d, dim_mult [1,2,4,4], "
           "num_res_blocks %d, temperal_downsample [F,T,T], real latents_mean/std); random "
           "weights: convs N(0, 1/fan_in) (conv_out x%.1f), biases N(0, %.2g), gammas 1 + N(0, "
           "%.2g)\n", BASE_DIM, ZDIM, NRES, OUT_GAIN, BIAS_STD, GAMMA_STD);
    printf("# storage: %s; %.1f MiB of weights (encoder + decoder), mapped (%s)\n", e->o.dtype,
           V.m ? bu_mib((double)V.m->weight_bytes) : NAN, e->dir);
    printf("# input: latent %dx%lldx%lldx%lld = z N(0,1)*std+mean -> video %lld frames of "
           "%lldx%lld; warm-up %d, iters %d (time = median)\n", ZDIM, (long long)c->T,
           (long long)c->h, (long long)c->w, (long long)c->F, (long long)c->W, (long long)c->H,
           e->o.warm, e->o.iters);
    if (V.on[ROW_TILED])
        printf("# tiled row: tile_sample_min %lld, stride %lld (pixels): %d tiles%s, %.2fx the "
               "FLOPs of one untiled decode\n", (long long)c->tile_min, (long long)c->tile_stride,
               V.ntiles, V.tiles_used ? "" : " (the frame fits one tile: no tiling)",
               V.rows[ROW_TILED].flops / V.full_flops);
    printf("# checkpoint written in %.1f s (child process), vae_load %.3f s; check %s\n",
           e->write_s, V.load_s,
           !e->o.check ? "off" : "rel L2 vs torch (bound 1e-4); without torch stream <-> whole, "
                                 "else self bit-identity");
}

/* Load (the real loader), size each row's arena and order the rows, read the latent; the header. */
static wf_status vae_setup(bn_run *e, wf_err *err) {
    const bcfg *c = &V.c;
    char path[1200], why[512] = "";
    double t0 = bu_now_s();
    wf_status st = vae_load(&V.m, e->dir, err);
    V.load_s = bu_now_s() - t0;
    const size_t nout = (size_t)(3 * c->F * c->H * c->W);
    V.ntiles = 1;
    /* Tiling is used when the latent is larger than one tile (vae.h; Diffusers' condition too) */
    V.tiles_used = V.on[ROW_TILED] && (c->h > c->tile_min / S_SPATIAL ||
                                       c->w > c->tile_min / S_SPATIAL);
    int n = 0;
    for (int k = 0; k < NROWS && !st; k++) {
        vrow *r = &V.rows[k];
        r->kind = k;
        if (!V.on[k]) continue;
        r->opts = vae_opts_default();
        if (k == ROW_WHOLE) r->opts.schedule = VAE_WHOLE;
        if (k == ROW_TILED)
            r->opts.tiling = (vae_tiling){.enabled = true,
                                          .sample_min_h = c->tile_min,
                                          .sample_min_w = c->tile_min,
                                          .sample_stride_h = c->tile_stride,
                                          .sample_stride_w = c->tile_stride};
        st = vae_decode_arena_bytes(V.m, c->T, c->h, c->w, &r->opts, &r->arena_bytes, err);
        r->flops = k == ROW_TILED && V.tiles_used ? vae_tiled_flops(V.m, c, &V.ntiles)
                                                  : vae_dec_flops(V.m, c->T, c->h, c->w);
        if (!st && !(r->out = malloc(nout * sizeof *r->out)))
            st = wf_fail(err, WF_ENOMEM, "out of memory");
        V.order[n++] = r;
    }
    qsort(V.order, (size_t)n, sizeof *V.order, cmp_row_arena);
    for (int k = 0; k < NROWS; k++) V.index[k] = -1;
    for (int i = 0; i < n; i++) V.index[V.order[i]->kind] = i;
    st_file *inf = NULL;
    snprintf(path, sizeof path, "%s/inputs.safetensors", e->dir);
    if (!st) st = st_open(&inf, path, err);
    if (!st) {
        const uint64_t sz[4] = {ZDIM, (uint64_t)c->T, (uint64_t)c->h, (uint64_t)c->w};
        if (!(V.z = bu_load_f32(inf, "z", 4, sz, why, sizeof why)))
            st = wf_fail(err, WF_ENOMEM, "%s", why);
        st_close(&inf);
    }
    V.full_flops = V.m ? vae_dec_flops(V.m, c->T, c->h, c->w) : NAN;
    print_header(e);
    e->nrows = n;
    return st;
}

/* torch_vae_peer.py on the folder (bu_peer_run): the untiled decode and/or the tiled one (its
 * time in num), alone on the machine, before our decodes. */
static void vae_peer(bn_run *e, char *detail, size_t n) {
    static const bu_peer_spec spec = {"torch, diffusers", "torch_vae_peer.py", "peak_rss_mib",
                                      "diffusers", NULL, "tiled_ms"};
    char extra[128];
    const int tiled = V.on[ROW_TILED];
    int k = snprintf(extra, sizeof extra, " --untiled %d", V.on[ROW_STREAM] || V.on[ROW_WHOLE]);
    if (tiled)
        snprintf(extra + k, sizeof extra - (size_t)k, " --tile %lld,%lld", (long long)V.c.tile_min,
                 (long long)V.c.tile_stride);
    bu_peer_run(&e->peer, &spec, WANFARM_BENCH_DIR, e->dir, e->o.threads, e->o.warm, e->o.iters, extra);
    snprintf(detail, n, "bench/torch_vae_peer.py: from_pretrained + .float() in %.2f s; "
             "vae.decode(z).sample, fp32, no_grad%s", e->peer.load_s,
             tiled ? "; tiled: enable_tiling with the same tiles" : "");
}

static wf_status vae_row(bn_run *e, int i, bn_row *r, wf_err *err) {
    const vrow *v = V.order[i];
    const int pair = V.on[ROW_STREAM] && V.on[ROW_WHOLE];
    snprintf(r->cell[0], BN_CELL, "%s", ROW_NAME[v->kind]);
    snprintf(r->cell[1], BN_CELL, "%lld", (long long)V.c.F);
    snprintf(r->cell[2], BN_CELL, "%lldx%lld", (long long)V.c.W, (long long)V.c.H);
    snprintf(r->cell[3], BN_CELL, "%s", e->o.dtype);
    r->name = ROW_NAME[v->kind];
    r->flops = v->flops;
    r->torch_ms = !e->peer.ran ? NAN : v->kind == ROW_TILED ? e->peer.num : e->peer.ms;
    r->arena_mib = bu_mib((double)v->arena_bytes);
    r->out = v->out;
    r->nout = (size_t)(3 * V.c.F * V.c.H * V.c.W);
    /* without the peer, stream and whole are each other's reference */
    if (pair && v->kind != ROW_TILED)
        r->partner = V.index[v->kind == ROW_STREAM ? ROW_WHOLE : ROW_STREAM];
    return wk_arena_init(&V.arena, "vae decode activations", v->arena_bytes, err);
}

/* One decode with out = NULL: the frames reach the callback, as a video writer gets them. */
static wf_status vae_run(bn_run *e, int i, int call, wf_err *err) {
    (void)call;
    vrow *v = V.order[i];
    frames_ctx fc = {.out = v->out, .F = V.c.F};
    wf_status st = vae_decode(V.m, e->be, &V.arena, &v->opts, V.z, V.c.T, V.c.h, V.c.w, NULL,
                              on_frames, &fc, NULL, NULL, err);
    if (!st && fc.seen != V.c.F)
        st = wf_fail(err, WF_EINVAL, "the callback got %lld of %lld frames", (long long)fc.seen,
                     (long long)V.c.F);
    v->frames_seen = fc.seen;
    v->calls = fc.calls;
    v->max_per_call = fc.max_n;
    return st;
}

static void vae_row_done(bn_run *e, int i, bn_row *r) {
    (void)e;
    (void)i;
    (void)r;
    wk_arena_free(&V.arena); /* before the next row: each row's peak RSS is its own */
}

static const float *vae_reference(bn_run *e, int i) {
    const uint64_t so[4] = {3, (uint64_t)V.c.F, (uint64_t)V.c.H, (uint64_t)V.c.W};
    const int tiled = V.order[i]->kind == ROW_TILED;
    float **ref = tiled ? &V.ref_tiled : &V.ref_untiled;
    if (!*ref) *ref = bn_peer_output(e, tiled ? "tiled" : "video", 4, so);
    return *ref;
}

static void vae_footer(bn_run *e) {
    const size_t nout = (size_t)(3 * V.c.F * V.c.H * V.c.W);
    printf("# FLOPs per decode : %.1f GFLOP untiled (convs + mid-block attention, "
           "PERFORMANCE.md)\n", V.full_flops * 1e-9);
    if (V.on[ROW_TILED])
        printf("# FLOPs tiled decode : %.1f GFLOP\n", V.rows[ROW_TILED].flops * 1e-9);
    const vrow *first_ok = NULL;
    for (int k = 0; k < NROWS; k++) {
        const vrow *v = &V.rows[k];
        const bn_row *r = V.index[k] >= 0 && V.index[k] < e->nrows ? &e->rows[V.index[k]] : NULL;
        if (!r || r->st || !r->calls) continue;
        if (!first_ok) first_ok = v;
        printf("# Frames %-6s : %lld frames in %lld callback%s (at most %lld per call)%s\n",
               ROW_NAME[k], (long long)v->frames_seen, (long long)v->calls,
               v->calls == 1 ? "" : "s", (long long)v->max_per_call,
               r->self_same < 0 ? "" : r->self_same ? "; decodes bit-identical"
                                                    : "; decodes NOT bit-identical");
    }
    if (!first_ok) return;
    size_t clamped = 0;
    double sumsq = 0;
    for (size_t i = 0; i < nout; i++) {
        clamped += fabsf(first_ok->out[i]) >= 1.0f;
        sumsq += (double)first_ok->out[i] * first_ok->out[i];
    }
    printf("# Output : rms %.3f, %.2f%% of values at the +-1 clamp (%s row)\n",
           sqrt(sumsq / (double)nout), 100.0 * (double)clamped / (double)nout,
           ROW_NAME[first_ok->kind]);
}

static void vae_json(bn_run *e, json_t *o) {
    (void)e;
    json_object_set_new(o, "frames", json_integer(V.c.F));
    json_object_set_new(o, "height", json_integer(V.c.H));
    json_object_set_new(o, "width", json_integer(V.c.W));
    json_object_set_new(o, "latent_frames", json_integer(V.c.T));
    const double weights = V.m ? bu_mib((double)V.m->weight_bytes) : NAN;
    json_object_set_new(o, "weights_mib", bu_real_or_null(weights));
    json_object_set_new(o, "gflop", bu_real_or_null(V.full_flops * 1e-9));
}

static void vae_row_json(bn_run *e, int i, const bn_row *r, json_t *jr) {
    (void)e;
    (void)i;
    json_object_set_new(jr, "row", json_string(r->name));
}

static void vae_teardown(bn_run *e) {
    (void)e;
    for (int k = 0; k < NROWS; k++) free(V.rows[k].out);
    free(V.z);
    free(V.ref_untiled);
    free(V.ref_tiled);
    wk_arena_free(&V.arena);
    vae_free(&V.m);
}

static const bn_flag vae_flags[] = {{"--frames", "F", 'l', &V.c.F, 1, 4097, NULL},
                                    {"--size", "WxH", 'p', NULL, 0, 0, parse_size},
                                    {"--rows", "stream,whole,tiled", 's', &V.rows_arg, 0, 0, NULL},
                                    {"--tile", "MIN,STRIDE", 'p', NULL, 0, 0, parse_tile},
                                    {NULL, NULL, 0, NULL, 0, 0, NULL}};

static const bn_col vae_cols[] = {
    {"row", NULL, -6, BN_TEXT, NULL},          {"F", NULL, 4, BN_TEXT, NULL},
    {"WxH", NULL, 9, BN_TEXT, NULL},           {"wdt", NULL, -4, BN_TEXT, NULL},
    {"ours(ms)", NULL, 10, BN_MS, NULL},       {"torch(ms)", NULL, 10, BN_TORCH_MS, NULL},
    {"ratio", NULL, 6, BN_RATIO, "%.2f"},      {"GFLOP/s", NULL, 8, BN_GFLOPS, NULL},
    {"%peak", NULL, 6, BN_PCT, "%.1f%%"},      {"rel-L2", NULL, 10, BN_ERROR, "%.2e"},
    {"ref", NULL, -6, BN_REF, NULL},           {"arena", "(MiB)", 8, BN_ARENA, NULL},
    {"ws", "(MiB)", 8, BN_WS, NULL},           {"rss", "(MiB)", 8, BN_RSS, NULL},
    {"torch-rss", "(MiB)", 9, BN_TORCH_RSS, NULL}};

static const bn_bench vae_bench = {
    .name = "bench_vae",
    .note = "F = 1 + 4k frames; W, H multiples of 8; tile sizes in pixels, multiples of 8.\n"
            "Metrics are defined in bench/PERFORMANCE.md (section bench_vae).",
    .flags = vae_flags, .flag_set = BN_DTYPE | BN_TORCH | BN_KEEP | BN_BACKEND | BN_PEAK,
    .warm = 0, .iters = 1, .cols = vae_cols, .ncols = 15, .nkeys = 4, .peer_lib = "diffusers",
    .init = vae_init, .setup = vae_setup, .peer = vae_peer, .row = vae_row, .run = vae_run,
    .reference = vae_reference, .row_done = vae_row_done, .footer = vae_footer, .json = vae_json,
    .row_json = vae_row_json, .teardown = vae_teardown};

int main(int argc, char **argv) { return bn_main(&vae_bench, argc, argv); }
