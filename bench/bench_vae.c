/* bench_vae.c: one Wan VAE decode (AutoencoderKLWan), wanfarm vs PyTorch/Diffusers, in the
 * nccl-tests shape.
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
#include "vae.h"

#ifndef WANFARM_BENCH_DIR
#define WANFARM_BENCH_DIR "bench" /* CMake sets the source dir; this works from the repo root */
#endif

#define REL_L2_TOL 1e-4 /* bound on ||ours - ref|| / ||ref||: see PERFORMANCE.md */

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
/* small utilities (as bench_dit.c) */









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
/* the torch peer */

typedef bu_peer peer;

/* torch_vae_peer.py on the folder (bu_peer_run): the untiled decode and/or the tiled one (its time
 * in num). */
static void peer_run(peer *p, const char *dir, int threads, int warm, int iters, int untiled,
                     int tiled, const bcfg *c) {
    static const bu_peer_spec spec = {"torch, diffusers", "torch_vae_peer.py", "peak_rss_mib",
                                      "diffusers", NULL, "tiled_ms"};
    char extra[128];
    int k = snprintf(extra, sizeof extra, " --untiled %d", untiled);
    if (tiled)
        snprintf(extra + k, sizeof extra - (size_t)k, " --tile %lld,%lld", (long long)c->tile_min,
                 (long long)c->tile_stride);
    bu_peer_run(p, &spec, WANFARM_BENCH_DIR, dir, threads, warm, iters, extra);
}

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
/* the rows */

enum { ROW_STREAM, ROW_WHOLE, ROW_TILED, NROWS };
static const char *ROW_NAME[NROWS] = {"stream", "whole", "tiled"};

typedef struct row {
    int kind, on;
    vae_opts opts;
    size_t arena_bytes;
    double flops, ms, gflops, pct, ws_mib, rss_mib, rel;
    float *out, *out_first; /* [3, F, H, W]: the last decode, and the first (self check) */
    int ndec;               /* decodes run */
    int64_t frames_seen;    /* frames the callback got in the last decode */
    int64_t calls, max_per_call;
    char check[32]; /* the reference: "torch", "whole", "stream", "self" or "" */
    int self_same;  /* -1 not checked */
    wf_status st;
    char err[512];
} row;

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
    const row *x = *(row *const *)a, *y = *(row *const *)b;
    return (x->arena_bytes > y->arena_bytes) - (x->arena_bytes < y->arena_bytes);
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--frames F] [--size WxH] [--rows stream,whole,tiled] [--tile MIN,STRIDE]\n"
            "          [--dtype f32|bf16] [-w warmup] [-n iters] [--threads N] [--check 0|1]\n"
            "          [--torch 0|1] [--json FILE] [--keep 0|1]\n"
            "F = 1 + 4k frames; W, H multiples of 8; tile sizes in pixels, multiples of 8.\n"
            "Metrics are defined in bench/PERFORMANCE.md (section bench_vae).\n",
            argv0);
}


int main(int argc, char **argv) {
    bcfg c = {.F = 9, .H = 256, .W = 256, .wdt = WK_F32, .tile_min = 128, .tile_stride = 96};
    const char *json = NULL, *dtype = "f32", *rows_arg = "stream,whole";
    int warm = 0, iters = 1, check = 1, threads = 0, torch = 1, keep = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(argv[0]);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "bench_vae: %s needs a value\n", a);
            usage(argv[0]);
            return 2;
        }
        i++;
        char extra;
        if (!strcmp(a, "--frames")) c.F = atoll(v);
        else if (!strcmp(a, "--size")) {
            long long w, h;
            if (sscanf(v, "%lldx%lld%c", &w, &h, &extra) != 2) bad = 1;
            else {
                c.W = w;
                c.H = h;
            }
        } else if (!strcmp(a, "--tile")) {
            long long mn, sd;
            if (sscanf(v, "%lld,%lld%c", &mn, &sd, &extra) != 2) bad = 1;
            else {
                c.tile_min = mn;
                c.tile_stride = sd;
            }
        } else if (!strcmp(a, "--rows")) rows_arg = v;
        else if (!strcmp(a, "--dtype")) dtype = v;
        else if (bu_common_flag(a, v, &warm, &iters, &threads, &check, &torch, &keep, &json)) {
            /* one of the flags every bench shares (bench_util.h) */
        }
        else {
            fprintf(stderr, "bench_vae: unknown option %s\n", a);
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
    { /* --rows: a comma-separated subset of stream, whole, tiled */
        char buf[128];
        snprintf(buf, sizeof buf, "%s", rows_arg);
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int k = 0;
            while (k < NROWS && strcmp(t, ROW_NAME[k])) k++;
            if (k == NROWS) bad = 1;
            else rows[k].on = 1;
        }
        if (!rows[ROW_STREAM].on && !rows[ROW_WHOLE].on && !rows[ROW_TILED].on) bad = 1;
    }
    c.wdt = !strcmp(dtype, "f32") ? WK_F32 : !strcmp(dtype, "bf16") ? WK_BF16 : WK_DTYPE_COUNT;
    if (bad || c.wdt == WK_DTYPE_COUNT || c.F < 1 || (c.F - 1) % S_TEMPORAL || c.F > 4097 ||
        c.H < S_SPATIAL || c.W < S_SPATIAL || c.H % S_SPATIAL || c.W % S_SPATIAL || c.H > 8192 ||
        c.W > 8192 || c.tile_min < S_SPATIAL || c.tile_stride < S_SPATIAL ||
        c.tile_min % S_SPATIAL || c.tile_stride % S_SPATIAL || c.tile_min < c.tile_stride ||
        iters < 1 || warm < 0 || threads < 0) {
        fprintf(stderr, "bench_vae: bad value (--frames %lld (1 + 4k) --size %lldx%lld (multiples "
                "of 8) --rows %s --tile %lld,%lld --dtype %s -n %d -w %d --threads %d)\n",
                (long long)c.F, (long long)c.W, (long long)c.H, rows_arg, (long long)c.tile_min,
                (long long)c.tile_stride, dtype, iters, warm, threads);
        usage(argv[0]);
        return 2;
    }
    c.T = 1 + (c.F - 1) / S_TEMPORAL;
    c.h = c.H / S_SPATIAL;
    c.w = c.W / S_SPATIAL;

    /* 1. the folder, written by a child: its memory never counts in our peak RSS, and it runs
     * before any OpenMP thread exists here */
    char dir[1100];
    double write_s = 0;
    if (bu_write_in_child("bench_vae", write_folder_ctx, &c, keep, dir, sizeof dir, &write_s))
        return 1;

    wf_err err = {0};
    wk_backend *be = NULL;
    vae_model *m = NULL;
    st_file *inf = NULL;
    float *z = NULL;
    int failed_runs = 0;
    char path[1200], why[512] = "";
    if (wk_backend_cpu_new(&be, threads, &err) != WF_OK) {
        fprintf(stderr, "bench_vae: %s\n", err.msg);
        if (!keep) bu_remove_dir(dir);
        return 1;
    }
    threads = be->nthreads;
    omp_set_num_threads(threads);
    double peak = bu_measure_peak(threads);

    /* 2. load (the real loader), size each row's arena, read the latent */
    double t0 = bu_now_s();
    wf_status st = vae_load(&m, dir, &err);
    double load_s = bu_now_s() - t0;
    const size_t nout = (size_t)(3 * c.F * c.H * c.W);
    int ntiles = 1;
    /* Tiling is used when the latent is larger than one tile (vae.h; Diffusers' condition too) */
    const int tiles_used = rows[ROW_TILED].on && (c.h > c.tile_min / S_SPATIAL ||
                                                  c.w > c.tile_min / S_SPATIAL);
    for (int k = 0; k < NROWS && !st; k++) {
        row *r = &rows[k];
        if (!r->on) continue;
        r->opts = vae_opts_default();
        if (k == ROW_WHOLE) r->opts.schedule = VAE_WHOLE;
        if (k == ROW_TILED)
            r->opts.tiling = (vae_tiling){.enabled = true,
                                          .sample_min_h = c.tile_min,
                                          .sample_min_w = c.tile_min,
                                          .sample_stride_h = c.tile_stride,
                                          .sample_stride_w = c.tile_stride};
        st = vae_decode_arena_bytes(m, c.T, c.h, c.w, &r->opts, &r->arena_bytes, &err);
        r->flops = k == ROW_TILED && tiles_used ? vae_tiled_flops(m, &c, &ntiles)
                                                : vae_dec_flops(m, c.T, c.h, c.w);
        r->out = malloc(nout * sizeof *r->out);
        r->out_first = malloc(nout * sizeof *r->out_first);
        if (!st && (!r->out || !r->out_first)) st = wf_fail(&err, WF_ENOMEM, "out of memory");
    }
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
    if (!st) st = st_open(&inf, path, &err);
    if (!st) {
        const uint64_t sz[4] = {ZDIM, (uint64_t)c.T, (uint64_t)c.h, (uint64_t)c.w};
        z = bu_load_f32(inf, "z", 4, sz, why, sizeof why);
        if (!z) st = wf_fail(&err, WF_ENOMEM, "%s", why);
        st_close(&inf);
    }
    const double full_flops = m ? vae_dec_flops(m, c.T, c.h, c.w) : NAN;

    printf("# bench_vae: wanfarm CPU backend, %d threads, OpenBLAS %s\n", threads,
           openblas_get_config());
    printf("# peak: %.1f GFLOP/s (f32 cblas_sgemm 2048^3, best of <= 10 calls after a warm-up)\n",
           peak);
    printf("# model: AutoencoderKLWan, Wan2.1 widths (base_dim %d, z_dim %d, dim_mult [1,2,4,4], "
           "num_res_blocks %d, temperal_downsample [F,T,T], real latents_mean/std); random "
           "weights: convs N(0, 1/fan_in) (conv_out x%.1f), biases N(0, %.2g), gammas 1 + N(0, "
           "%.2g)\n", BASE_DIM, ZDIM, NRES, OUT_GAIN, BIAS_STD, GAMMA_STD);
    printf("# storage: %s; %.1f MiB of weights (encoder + decoder), mapped (%s)\n", dtype,
           m ? bu_mib((double)m->weight_bytes) : NAN, dir);
    printf("# input: latent %dx%lldx%lldx%lld = z N(0,1)*std+mean -> video %lld frames of "
           "%lldx%lld; warm-up %d, iters %d (time = median)\n", ZDIM, (long long)c.T,
           (long long)c.h, (long long)c.w, (long long)c.F, (long long)c.W, (long long)c.H, warm,
           iters);
    if (rows[ROW_TILED].on)
        printf("# tiled row: tile_sample_min %lld, stride %lld (pixels): %d tiles%s, %.2fx the "
               "FLOPs of one untiled decode\n", (long long)c.tile_min, (long long)c.tile_stride,
               ntiles, tiles_used ? "" : " (the frame fits one tile: no tiling)",
               rows[ROW_TILED].flops / full_flops);
    printf("# checkpoint written in %.1f s (child process), vae_load %.3f s; check %s\n", write_s,
           load_s, !check ? "off" : "rel L2 vs torch (bound 1e-4); without torch stream <-> whole, "
                                     "else self bit-identity");
    fflush(stdout);
    if (st) {
        printf("# FAILED before the decode: %s: %s\n", wf_status_str(st), err.msg);
        failed_runs++;
    }

    /* 3. the peer, alone on the machine, before our decodes */
    peer pr = {0};
    if (!torch) snprintf(pr.why, sizeof pr.why, "--torch 0");
    else if (st) snprintf(pr.why, sizeof pr.why, "our setup failed");
    else
        peer_run(&pr, dir, threads, warm, iters, rows[ROW_STREAM].on || rows[ROW_WHOLE].on,
                 rows[ROW_TILED].on, &c);
    if (pr.ran)
        printf("# torch peer: torch %s, diffusers %s, %d threads (bench/torch_vae_peer.py: "
               "from_pretrained + .float() in %.2f s; vae.decode(z).sample, fp32, no_grad%s)\n",
               pr.torch, pr.lib, threads, pr.load_s,
               rows[ROW_TILED].on ? "; tiled: enable_tiling with the same tiles" : "");
    else printf("# torch peer: skipped (%s)\n", pr.why);
    printf("#\n# %-6s %4s %9s %-4s %10s %10s %6s %8s %6s %10s %-6s %8s %8s %8s %9s\n", "row",
           "F", "WxH", "wdt", "ours(ms)", "torch(ms)", "ratio", "GFLOP/s", "%peak", "rel-L2", "ref",
           "arena", "ws", "rss", "torch-rss");
    printf("# %-6s %4s %9s %-4s %10s %10s %6s %8s %6s %10s %-6s %8s %8s %8s %9s\n", "", "", "", "",
           "", "", "", "", "", "", "", "(MiB)", "(MiB)", "(MiB)", "(MiB)");
    fflush(stdout);

    /* 4. our decodes, row by row in increasing arena size (so that each row's peak RSS is its
     * own: the arenas of earlier rows were smaller and are freed); -w warm-up, -n timed */
    row *order[NROWS];
    int nrows = 0;
    for (int k = 0; k < NROWS; k++)
        if (rows[k].on) order[nrows++] = &rows[k];
    qsort(order, (size_t)nrows, sizeof *order, cmp_row_arena);
    const int untiled_pair = rows[ROW_STREAM].on && rows[ROW_WHOLE].on;
    double *times = malloc((size_t)iters * sizeof *times);
    if (!st && !times) st = wf_fail(&err, WF_ENOMEM, "out of memory");
    for (int oi = 0; oi < nrows && !st; oi++) {
        row *r = order[oi];
        const int self = check && !(pr.ran || (r->kind != ROW_TILED && untiled_pair));
        wk_arena arena = {0};
        r->st = wk_arena_init(&arena, "vae decode activations", r->arena_bytes, &err);
        for (int i = 0; !r->st && i < warm + iters + (self && warm + iters < 2); i++) {
            frames_ctx fc = {.out = r->out, .F = c.F};
            double s0 = bu_now_s();
            r->st = vae_decode(m, be, &arena, &r->opts, z, c.T, c.h, c.w, NULL, on_frames, &fc,
                               NULL, NULL, &err);
            double t = bu_now_s() - s0;
            if (!r->st && fc.seen != c.F)
                r->st = wf_fail(&err, WF_EINVAL, "the callback got %lld of %lld frames",
                                (long long)fc.seen, (long long)c.F);
            if (i >= warm && i < warm + iters) times[i - warm] = t;
            if (i == 0 && !r->st) memcpy(r->out_first, r->out, nout * sizeof *r->out);
            r->frames_seen = fc.seen;
            r->calls = fc.calls;
            r->max_per_call = fc.max_n;
            r->ndec++;
        }
        wk_arena_free(&arena);
        if (r->st) {
            snprintf(r->err, sizeof r->err, "%s: %.480s", wf_status_str(r->st), err.msg);
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
        if (r->ndec >= 2) r->self_same = memcmp(r->out, r->out_first, nout * sizeof *r->out) == 0;
    }
    free(times);

    /* 5. correctness: rel L2 against torch's video; without torch, stream and whole against each
     * other; else bit-identity of a row's first and last decode */
    long out_of_bounds = 0;
    float *ref_untiled = NULL, *ref_tiled = NULL;
    if (!st && check && pr.ran) {
        st_file *tf = NULL;
        const uint64_t so[4] = {3, (uint64_t)c.F, (uint64_t)c.H, (uint64_t)c.W};
        snprintf(path, sizeof path, "%s/torch_out.safetensors", dir);
        if (st_open(&tf, path, &err) == WF_OK) {
            if (rows[ROW_STREAM].on || rows[ROW_WHOLE].on)
                ref_untiled = bu_load_f32(tf, "video", 4, so, why, sizeof why);
            if (rows[ROW_TILED].on) ref_tiled = bu_load_f32(tf, "tiled", 4, so, why, sizeof why);
        } else {
            snprintf(why, sizeof why, "%.400s", err.msg);
        }
        st_close(&tf);
    }
    size_t clamped = 0;
    double sumsq = 0;
    const row *first_ok = NULL;
    for (int k = 0; k < NROWS && !st; k++) {
        row *r = &rows[k];
        if (!r->on || r->err[0]) continue;
        size_t nonfinite = 0;
        for (size_t i = 0; i < nout; i++) nonfinite += !isfinite(r->out[i]);
        out_of_bounds += (long)nonfinite;
        if (!first_ok) {
            first_ok = r;
            for (size_t i = 0; i < nout; i++) {
                clamped += fabsf(r->out[i]) >= 1.0f;
                sumsq += (double)r->out[i] * r->out[i];
            }
        }
        if (!check) continue;
        const float *ref = NULL;
        if (pr.ran) {
            ref = k == ROW_TILED ? ref_tiled : ref_untiled;
            snprintf(r->check, sizeof r->check, "torch");
            if (!ref) printf("# FAILED reading torch's output for %s: %s\n", ROW_NAME[k], why);
        } else if (k != ROW_TILED && untiled_pair) {
            const row *o = &rows[k == ROW_STREAM ? ROW_WHOLE : ROW_STREAM];
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
    free(ref_untiled);
    free(ref_tiled);

    for (int oi = 0; oi < nrows; oi++) {
        const row *r = order[oi];
        char tm[16] = "n/a", ra[16] = "n/a", rl[48] = "n/a", trss[16] = "n/a";
        const double tms = r->kind == ROW_TILED ? pr.num : pr.ms;
        if (pr.ran) {
            if (isfinite(tms)) snprintf(tm, sizeof tm, "%.1f", tms);
            if (isfinite(tms / r->ms)) snprintf(ra, sizeof ra, "%.2f", tms / r->ms);
            snprintf(trss, sizeof trss, "%.1f", pr.rss_mib);
        }
        if (!strcmp(r->check, "self"))
            snprintf(rl, sizeof rl, "%s", r->self_same == 1 ? "same" : "DIFF");
        else if (r->check[0]) snprintf(rl, sizeof rl, "%.2e", r->rel);
        char hw[24];
        snprintf(hw, sizeof hw, "%lldx%lld", (long long)c.W, (long long)c.H);
        if (st) break;
        if (!r->err[0])
            printf("  %-6s %4lld %9s %-4s %10.1f %10s %6s %8.1f %5.1f%% %10s %-6s %8.1f %8.1f "
                   "%8.1f %9s\n", ROW_NAME[r->kind], (long long)c.F, hw, dtype, r->ms, tm, ra,
                   r->gflops, r->pct, rl, r->check[0] ? r->check : "n/a",
                   bu_mib((double)r->arena_bytes), r->ws_mib, r->rss_mib, trss);
        else
            printf("  %-6s %4lld %9s %-4s FAILED: %s\n", ROW_NAME[r->kind], (long long)c.F, hw,
                   dtype, r->err);
    }

    /* 6. footer (the peak RSS before the second sgemm peak measurement, which allocates) */
    double rss = bu_peak_rss_mib();
    double peak_after = bu_measure_peak(threads);
    int noisy = fabs(peak_after - peak) > 0.15 * fmax(peak, peak_after);
    printf("# peak after: %.1f GFLOP/s%s\n", peak_after,
           noisy ? " -- moved by more than 15%: the machine is loaded, timings are noisy" : "");
    printf("# FLOPs per decode : %.1f GFLOP untiled (convs + mid-block attention, "
           "PERFORMANCE.md)\n", full_flops * 1e-9);
    if (rows[ROW_TILED].on)
        printf("# FLOPs tiled decode : %.1f GFLOP\n", rows[ROW_TILED].flops * 1e-9);
    for (int k = 0; k < NROWS; k++)
        if (rows[k].on && !rows[k].err[0] && rows[k].ndec)
            printf("# Frames %-6s : %lld frames in %lld callback%s (at most %lld per call)%s\n",
                   ROW_NAME[k], (long long)rows[k].frames_seen, (long long)rows[k].calls,
                   rows[k].calls == 1 ? "" : "s", (long long)rows[k].max_per_call,
                   rows[k].self_same < 0 ? ""
                   : rows[k].self_same ? "; decodes bit-identical"
                                       : "; decodes NOT bit-identical");
    if (first_ok)
        printf("# Output : rms %.3f, %.2f%% of values at the +-1 clamp (%s row)\n",
               sqrt(sumsq / (double)nout), 100.0 * (double)clamped / (double)nout,
               ROW_NAME[first_ok->kind]);
    int ok = bu_print_footer(rss, pr.ran, pr.rss_mib, pr.rss_import_mib, "torch and diffusers",
                             out_of_bounds, failed_runs);

    if (json) {
        json_t *o = bu_json_header("bench_vae", threads, peak, peak_after, noisy, warm, iters),
               *ja = json_array();
        json_object_set_new(o, "frames", json_integer(c.F));
        json_object_set_new(o, "height", json_integer(c.H));
        json_object_set_new(o, "width", json_integer(c.W));
        json_object_set_new(o, "latent_frames", json_integer(c.T));
        json_object_set_new(o, "dtype", json_string(dtype));
        json_object_set_new(o, "torch", pr.ran ? json_string(pr.torch) : json_null());
        json_object_set_new(o, "diffusers", pr.ran ? json_string(pr.lib) : json_null());
        json_object_set_new(o, "weights_mib", bu_real_or_null(m ? bu_mib((double)m->weight_bytes) : NAN));
        json_object_set_new(o, "gflop", bu_real_or_null(full_flops * 1e-9));
        for (int oi = 0; oi < nrows; oi++) {
            const row *r = order[oi];
            json_t *jr = json_object();
            const double tms = r->kind == ROW_TILED ? pr.num : pr.ms;
            json_object_set_new(jr, "row", json_string(ROW_NAME[r->kind]));
            json_object_set_new(jr, "ok", json_boolean(!r->err[0] && !st));
            json_object_set_new(jr, "ms", bu_real_or_null(r->err[0] ? NAN : r->ms));
            json_object_set_new(jr, "gflop", bu_real_or_null(r->flops * 1e-9));
            json_object_set_new(jr, "gflops", bu_real_or_null(r->err[0] ? NAN : r->gflops));
            json_object_set_new(jr, "pct_peak", bu_real_or_null(r->err[0] ? NAN : r->pct));
            json_object_set_new(jr, "torch_ms", bu_real_or_null(pr.ran ? tms : NAN));
            json_object_set_new(jr, "ratio",
                                bu_real_or_null(pr.ran && !r->err[0] ? tms / r->ms : NAN));
            json_object_set_new(jr, "check", r->check[0] ? json_string(r->check) : json_null());
            json_object_set_new(jr, "rel_l2", bu_real_or_null(r->rel));
            json_object_set_new(jr, "self_identical",
                                r->self_same < 0 ? json_null() : json_boolean(r->self_same));
            json_object_set_new(jr, "arena_mib", bu_real_or_null(bu_mib((double)r->arena_bytes)));
            json_object_set_new(jr, "ws_mib", bu_real_or_null(r->err[0] ? NAN : r->ws_mib));
            json_object_set_new(jr, "rss_mib", bu_real_or_null(r->err[0] ? NAN : r->rss_mib));
            json_object_set_new(jr, "torch_rss_mib", bu_real_or_null(pr.ran ? pr.rss_mib : NAN));
            json_object_set_new(jr, "error", r->err[0] ? json_string(r->err) : json_null());
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
        if (bu_write_json(json, o, "bench_vae")) ok = 0;
        json_decref(o);
    }

    for (int k = 0; k < NROWS; k++) {
        free(rows[k].out);
        free(rows[k].out_first);
    }
    free(z);
    vae_free(&m);
    wk_backend_destroy(&be);
    if (keep) printf("# kept %s\n", dir);
    else bu_remove_dir(dir);
    return ok ? 0 : 1;
}
