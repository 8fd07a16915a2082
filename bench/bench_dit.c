/* bench_dit.c: one DiT forward (WanTransformer3DModel), wanfarm vs PyTorch/Diffusers, in the
 * nccl-tests shape.
 *
 * What it is: writes a random-weight checkpoint of the Wan2.1-1.3B block width (D 1536, 12 heads
 * of 128, FFN 8960, text_dim 4096; --layers blocks) in the real Diffusers layout (config.json +
 * diffusion_pytorch_model.safetensors, --dtype storage) and random inputs into a temporary folder,
 * from a child process so that none of that memory counts in this process' peak RSS. It then
 * loads the folder with dit_load (the real loader), sizes the arena with dit_arena_bytes, runs -w
 * warm-up and -n timed dit_forward calls (median) and prints one row: time, GFLOP/s and % of the
 * measured sgemm peak, the PyTorch/Diffusers time of the same forward on the same folder and
 * inputs (bench/torch_dit_peer.py, run first, alone) and the ratio, the relative L2 error of our
 * output against Diffusers' (or, with the peer skipped, whether two of our forwards are
 * bit-identical), and memory: arena, backend workspace, and both processes' peak RSS. A footer
 * says OK or FAILED; the exit status is 1 when it says FAILED. Metrics: bench/PERFORMANCE.md.
 * What it is not: a test (tests/test_dit.c owns correctness against fixtures), a GPU benchmark
 * (yet), or a whole-pipeline benchmark (one forward, no text encoder, VAE or scheduler).
 * Run:   build/bench/bench_dit [--layers 2 --latent 5,40,80 --text-len 512 --dtype f32|bf16
 *                               -w 1 -n 3 --threads N --check 1 --torch 1 --json FILE --keep 0]
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
#include "bench_dit_ckpt.h"
#include "bench_util.h"
#include "dit.h"
#include "safetensors.h"

#ifndef WANFARM_BENCH_DIR
#define WANFARM_BENCH_DIR "bench" /* CMake sets the source dir; this works from the repo root */
#endif

#define REL_L2_TOL 1e-4 /* bound on ||ours - torch|| / ||torch||: see PERFORMANCE.md */

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
/* small utilities */









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

/* ------------------------------------------------------------------------------------------ */
/* the torch peer */

typedef bu_peer peer;

/* torch_dit_peer.py on the folder (bu_peer_run). */
static void peer_run(peer *p, const char *dir, int threads, int warm, int iters) {
    static const bu_peer_spec spec = {"torch, diffusers", "torch_dit_peer.py", "ms", "diffusers",
                                      NULL, NULL};
    bu_peer_run(p, &spec, WANFARM_BENCH_DIR, dir, threads, warm, iters, "");
}

/* ------------------------------------------------------------------------------------------ */


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


static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--layers N] [--latent [16,]F,H,W] [--text-len N] [--dtype f32|bf16]\n"
            "          [-w warmup] [-n iters] [--threads N] [--check 0|1] [--torch 0|1]\n"
            "          [--json FILE] [--keep 0|1]\n"
            "Metrics are defined in bench/PERFORMANCE.md (section bench_dit).\n",
            argv0);
}


int main(int argc, char **argv) {
    bcfg c = {.layers = 2, .F = 5, .H = 40, .W = 80, .Lt = 512, .wdt = WK_F32};
    const char *json = NULL, *dtype = "f32";
    int warm = 1, iters = 3, check = 1, threads = 0, torch = 1, keep = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(argv[0]);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "bench_dit: %s needs a value\n", a);
            usage(argv[0]);
            return 2;
        }
        i++;
        if (!strcmp(a, "--layers")) c.layers = atoi(v);
        else if (!strcmp(a, "--latent")) {
            if (bu_parse_latent(v, CIN, &c.F, &c.H, &c.W)) bad = 1;
        } else if (!strcmp(a, "--text-len")) c.Lt = atoll(v);
        else if (!strcmp(a, "--dtype")) dtype = v;
        else if (bu_common_flag(a, v, &warm, &iters, &threads, &check, &torch, &keep, &json)) {
            /* one of the flags every bench shares (bench_util.h) */
        }
        else {
            fprintf(stderr, "bench_dit: unknown option %s\n", a);
            usage(argv[0]);
            return 2;
        }
    }
    c.wdt = !strcmp(dtype, "f32") ? WK_F32 : !strcmp(dtype, "bf16") ? WK_BF16 : WK_DTYPE_COUNT;
    if (bad || c.wdt == WK_DTYPE_COUNT || c.layers < 1 || c.layers > 1000 || c.F < 1 ||
        c.H < 2 || c.W < 2 || c.H % PH || c.W % PW || c.F > ROPE_MAX || c.H / PH > ROPE_MAX ||
        c.W / PW > ROPE_MAX || c.Lt < 1 || c.Lt > 1 << 20 || iters < 1 || warm < 0 ||
        threads < 0) {
        fprintf(stderr, "bench_dit: bad value (--layers %d --latent %lld,%lld,%lld (H, W even) "
                "--text-len %lld --dtype %s -n %d -w %d --threads %d)\n", c.layers,
                (long long)c.F, (long long)c.H, (long long)c.W, (long long)c.Lt, dtype, iters,
                warm, threads);
        usage(argv[0]);
        return 2;
    }
    const int64_t L = (c.F / PT) * (c.H / PH) * (c.W / PW);

    /* 1. the folder, written by a child: its memory never counts in our peak RSS, and it runs
     * before any OpenMP thread exists here */
    char dir[1100];
    double write_s = 0;
    if (bu_write_in_child("bench_dit", write_folder_ctx, &c, keep, dir, sizeof dir, &write_s))
        return 1;

    wf_err err = {0};
    wk_backend *be = NULL;
    dit_model *m = NULL;
    wk_arena arena = {0};
    st_file *inf = NULL;
    float *lat = NULL, *txt = NULL, *ts = NULL, *out = NULL, *out_first = NULL;
    int failed_runs = 0;
    char path[1200], why[512] = "";
    if (wk_backend_cpu_new(&be, threads, &err) != WF_OK) {
        fprintf(stderr, "bench_dit: %s\n", err.msg);
        if (!keep) bu_remove_dir(dir);
        return 1;
    }
    threads = be->nthreads;
    omp_set_num_threads(threads);
    double peak = bu_measure_peak(threads);

    /* 2. load (the real loader), size the arena, read the inputs */
    double t0 = bu_now_s();
    wf_status st = dit_load(&m, dir, &err);
    double load_s = bu_now_s() - t0;
    dit_shape shp = {.F = c.F, .H = c.H, .W = c.W, .Lt = c.Lt, .per_token_t = false};
    size_t arena_bytes = 0;
    if (!st) st = dit_arena_bytes(m, be, &shp, 1, &arena_bytes, &err);
    if (!st) st = wk_arena_init(&arena, "dit activations", arena_bytes, &err);
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
    if (!st) st = st_open(&inf, path, &err);
    const size_t nout = (size_t)(COUT * c.F * c.H * c.W);
    if (!st) {
        const uint64_t sl[4] = {CIN, (uint64_t)c.F, (uint64_t)c.H, (uint64_t)c.W};
        const uint64_t s1[1] = {1}, stx[2] = {(uint64_t)c.Lt, TEXT_DIM};
        lat = bu_load_f32(inf, "latents", 4, sl, why, sizeof why);
        if (lat) ts = bu_load_f32(inf, "timestep", 1, s1, why, sizeof why);
        if (ts) txt = bu_load_f32(inf, "text", 2, stx, why, sizeof why);
        out = malloc(nout * sizeof *out);
        out_first = malloc(nout * sizeof *out_first);
        if (!txt || !out || !out_first) st = wf_fail(&err, WF_ENOMEM, "%s", *why ? why : "out of memory");
        st_close(&inf);
    }

    printf("# bench_dit: wanfarm CPU backend, %d threads, OpenBLAS %s\n", threads,
           openblas_get_config());
    printf("# peak: %.1f GFLOP/s (f32 cblas_sgemm 2048^3, best of <= 10 calls after a warm-up)\n",
           peak);
    printf("# model: WanTransformer3DModel at Wan2.1-1.3B width (D %d = %dx%d, FFN %d, text_dim %d, "
           "patch %dx%dx%d), %d layer%s, random weights N(0, %.2g), norm gains 1 + N(0, %.2g)\n",
           DIM, NHEADS, HDIM, FFN_DIM, TEXT_DIM, PT, PH, PW, c.layers, c.layers == 1 ? "" : "s",
           WEIGHT_STD, WEIGHT_STD);
    printf("# storage: %s%s; %.1f MiB of weights, mapped (%s)\n", dtype,
           c.wdt == WK_F32 ? "" : " (scale_shift_table, time_embedder, norm2 in f32, as Diffusers "
                                  "keeps them)",
           m ? bu_mib((double)m->weight_bytes) : NAN, dir);
    printf("# input: latent %dx%lldx%lldx%lld -> L %lld tokens, text Lt %lld, timestep %g; "
           "warm-up %d, iters %d (time = median)\n", CIN, (long long)c.F, (long long)c.H,
           (long long)c.W, (long long)L, (long long)c.Lt, (double)TIMESTEP, warm, iters);
    printf("# checkpoint written in %.1f s (child process), dit_load %.3f s; check %s\n", write_s,
           load_s, !check ? "off" : "rel L2 vs torch (bound 1e-4), or self bit-identity without it");
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
        printf("# torch peer: torch %s, diffusers %s, %d threads (bench/torch_dit_peer.py: "
               "from_pretrained + .float() in %.2f s%s; fp32 compute, no_grad)\n", pr.torch,
               pr.lib, threads, pr.load_s,
               c.wdt == WK_F32 ? "" : ": both sides compute in fp32 on the same bf16-rounded weights");
    else printf("# torch peer: skipped (%s)\n", pr.why);
    printf("#\n# %-6s %5s %5s %-4s %10s %10s %6s %8s %6s %12s %9s %8s %9s %9s\n", "layers", "L",
           "Lt", "wdt", "ours(ms)", "torch(ms)", "ratio", "GFLOP/s", "%peak", "rel-L2", "arena",
           "ws", "rss", "torch-rss");
    printf("# %-6s %5s %5s %-4s %10s %10s %6s %8s %6s %12s %9s %8s %9s %9s\n", "", "", "", "", "",
           "", "", "", "", "", "(MiB)", "(MiB)", "(MiB)", "(MiB)");
    fflush(stdout);

    /* 4. our forwards: -w warm-up, -n timed; the first output is kept for the self check */
    double *times = malloc((size_t)iters * sizeof *times);
    int nfwd = 0;
    double med = NAN;
    if (!st && !times) st = wf_fail(&err, WF_ENOMEM, "out of memory");
    if (!st) {
        const int self = check && !pr.ran;
        for (int i = 0; i < warm + iters + (self && warm + iters < 2) && !st; i++) {
            double s0 = bu_now_s();
            st = dit_forward(m, be, &arena, &shp, NULL, lat, ts, txt, out, NULL, NULL, &err);
            double t = bu_now_s() - s0;
            if (i >= warm && i < warm + iters) times[i - warm] = t;
            if (i == 0 && !st) memcpy(out_first, out, nout * sizeof *out);
            nfwd++;
        }
        if (st) failed_runs++;
        else {
            qsort(times, (size_t)iters, sizeof *times, bu_cmp_double);
            med = iters % 2 ? times[iters / 2] : 0.5 * (times[iters / 2 - 1] + times[iters / 2]);
        }
    }
    free(times);

    /* 5. correctness: rel L2 against torch's output, or bit-identity of our first and last */
    long out_of_bounds = 0;
    double rel = NAN;
    int self_same = -1;
    const char *check_kind = NULL;
    if (!st) {
        size_t nonfinite = 0;
        for (size_t i = 0; i < nout; i++) nonfinite += !isfinite(out[i]);
        out_of_bounds += (long)nonfinite;
        self_same = nfwd >= 2 ? memcmp(out, out_first, nout * sizeof *out) == 0 : -1;
        if (check && pr.ran) {
            check_kind = "torch";
            st_file *tf = NULL;
            snprintf(path, sizeof path, "%s/torch_out.safetensors", dir);
            const uint64_t so[4] = {COUT, (uint64_t)c.F, (uint64_t)c.H, (uint64_t)c.W};
            float *ref = NULL;
            if (st_open(&tf, path, &err) == WF_OK) ref = bu_load_f32(tf, "out", 4, so, why, sizeof why);
            else snprintf(why, sizeof why, "%.400s", err.msg);
            st_close(&tf);
            if (ref) {
                double num = 0, den = 0;
                for (size_t i = 0; i < nout; i++) {
                    double d = (double)out[i] - ref[i];
                    num += d * d;
                    den += (double)ref[i] * ref[i];
                }
                rel = sqrt(num / (den > 0 ? den : 1e-300));
            } else {
                printf("# FAILED reading torch's output: %s\n", why);
            }
            free(ref);
            if (!(rel <= REL_L2_TOL)) out_of_bounds++; /* NaN too */
        } else if (check) {
            check_kind = "self";
            if (self_same != 1) out_of_bounds++;
        }
    }

    double gflop = dit_flops(&c, L) * 1e-9, gflops = gflop / med, pct = 100.0 * gflops / peak;
    double ws_mib = bu_mib((double)be->ws_cap), rss = bu_peak_rss_mib();
    double ratio = pr.ran ? pr.ms / (med * 1e3) : NAN;
    char tm[16] = "n/a", ra[16] = "n/a", rl[16] = "n/a", trss[16] = "n/a";
    if (pr.ran) {
        snprintf(tm, sizeof tm, "%.1f", pr.ms);
        snprintf(trss, sizeof trss, "%.1f", pr.rss_mib);
        if (isfinite(ratio)) snprintf(ra, sizeof ra, "%.2f", ratio);
    }
    if (check_kind && !strcmp(check_kind, "torch")) snprintf(rl, sizeof rl, "%.2e", rel);
    else if (check_kind) snprintf(rl, sizeof rl, "self:%s", self_same == 1 ? "same" : "DIFF");
    if (!st)
        printf("  %-6d %5lld %5lld %-4s %10.1f %10s %6s %8.1f %5.1f%% %12s %9.1f %8.1f %9.1f %9s\n",
               c.layers, (long long)L, (long long)c.Lt, dtype, med * 1e3, tm, ra, gflops, pct, rl,
               bu_mib((double)arena_bytes), ws_mib, rss, trss);
    else
        printf("  %-6d %5lld %5lld %-4s FAILED: %s: %s\n", c.layers, (long long)L,
               (long long)c.Lt, dtype, wf_status_str(st), err.msg);

    /* 6. footer */
    double peak_after = bu_measure_peak(threads);
    int noisy = fabs(peak_after - peak) > 0.15 * fmax(peak, peak_after);
    printf("# peak after: %.1f GFLOP/s%s\n", peak_after,
           noisy ? " -- moved by more than 15%: the machine is loaded, timings are noisy" : "");
    printf("# FLOPs per forward : %.1f GFLOP (matmuls + attention GEMMs, PERFORMANCE.md)\n", gflop);
    if (self_same >= 0)
        printf("# Repeatability : forwards 1 and %d %s\n", nfwd,
               self_same ? "bit-identical" : "DIFFER (not bit-identical)");
    int ok = bu_print_footer(rss, pr.ran, pr.rss_mib, pr.rss_import_mib, "torch and diffusers",
                             out_of_bounds, failed_runs);

    if (json) {
        json_t *o = bu_json_header("bench_dit", threads, peak, peak_after, noisy, warm, iters),
               *lt = json_array();
        json_array_append_new(lt, json_integer(CIN));
        json_array_append_new(lt, json_integer(c.F));
        json_array_append_new(lt, json_integer(c.H));
        json_array_append_new(lt, json_integer(c.W));
        json_object_set_new(o, "layers", json_integer(c.layers));
        json_object_set_new(o, "latent", lt);
        json_object_set_new(o, "L", json_integer(L));
        json_object_set_new(o, "Lt", json_integer(c.Lt));
        json_object_set_new(o, "dtype", json_string(dtype));
        json_object_set_new(o, "torch", pr.ran ? json_string(pr.torch) : json_null());
        json_object_set_new(o, "diffusers", pr.ran ? json_string(pr.lib) : json_null());
        json_object_set_new(o, "ms", bu_real_or_null(med * 1e3));
        json_object_set_new(o, "gflop", bu_real_or_null(gflop));
        json_object_set_new(o, "gflops", bu_real_or_null(gflops));
        json_object_set_new(o, "pct_peak", bu_real_or_null(pct));
        json_object_set_new(o, "torch_ms", bu_real_or_null(pr.ran ? pr.ms : NAN));
        json_object_set_new(o, "ratio", bu_real_or_null(ratio));
        json_object_set_new(o, "check", check_kind ? json_string(check_kind) : json_null());
        json_object_set_new(o, "rel_l2", bu_real_or_null(rel));
        json_object_set_new(o, "self_identical",
                            self_same < 0 ? json_null() : json_boolean(self_same));
        json_object_set_new(o, "weights_mib", bu_real_or_null(m ? bu_mib((double)m->weight_bytes) : NAN));
        json_object_set_new(o, "arena_mib", bu_real_or_null(bu_mib((double)arena_bytes)));
        json_object_set_new(o, "ws_mib", bu_real_or_null(ws_mib));
        json_object_set_new(o, "rss_mib", bu_real_or_null(rss));
        json_object_set_new(o, "torch_rss_mib", bu_real_or_null(pr.ran ? pr.rss_mib : NAN));
        json_object_set_new(o, "out_of_bounds", json_integer(out_of_bounds));
        json_object_set_new(o, "failed_runs", json_integer(failed_runs));
        json_object_set_new(o, "ok", json_boolean(ok));
        if (bu_write_json(json, o, "bench_dit")) ok = 0;
        json_decref(o);
    }

    free(lat);
    free(ts);
    free(txt);
    free(out);
    free(out_first);
    wk_arena_free(&arena);
    dit_free(&m);
    wk_backend_destroy(&be);
    if (keep) printf("# kept %s\n", dir);
    else bu_remove_dir(dir);
    return ok ? 0 : 1;
}
