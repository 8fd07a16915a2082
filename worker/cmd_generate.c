/* cmd_generate.c: `wanfarm generate`: text to video with a Diffusers WanPipeline folder
 * (pipeline.h), written as an H.264 MP4, PNG frames and/or the final latents (video_out.h).
 *
 * Progress: one line per step on stderr (step/total, expert, t, s/step, ETA); with --json-progress
 * one JSON object per step on stdout instead ({"event":"step",...}) and a final {"event":"done"}.
 * Exit codes: 0 written; 1 the model or an input file is bad, or the work failed; 2 bad command
 * line (including values the model cannot take: sizes, frame counts).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cmds.h"
#include "pipeline.h"
#include "safetensors.h"
#include "video_out.h"

#define PROG "wanfarm generate"

static void help(void) {
    printf("usage: wanfarm generate --model DIR --prompt TEXT [options]\n\n"
           "Generates a video with a Diffusers WanPipeline folder (Wan2.1 / Wan2.2 T2V).\n\n"
           "  --model DIR            the pipeline folder (model_index.json)\n"
           "  --prompt TEXT          what to show\n"
           "  --negative-prompt TEXT what to avoid (default \"\", as Diffusers; --negative-prompt\n"
           "                         wan uses the official Wan Chinese negative prompt)\n"
           "  --size WxH             width x height, multiples of 16 (default 832x480)\n"
           "  --frames N             4k+1 frames (default 81)\n"
           "  --steps N              denoising steps (default 50)\n"
           "  --guidance G           CFG scale of transformer (default 5.0; <= 1 turns CFG off)\n"
           "  --guidance-2 G         CFG scale of transformer_2 (default: --guidance)\n"
           "  --shift S              override the scheduler's flow shift (> 0)\n"
           "  --boundary R           override boundary_ratio in [0, 1] (two-expert models only)\n"
           "  --sampler unipc|euler  default: the folder's scheduler\n"
           "  --seed N               initial noise seed (default: from the clock, printed);\n"
           "                         wanfarm's own generator, not torch's\n"
           "  --latents FILE         initial latents instead: safetensors, F32 tensor 'latents'\n"
           "                         [1, C, T, h, w]\n"
           "  --max-sequence-length N  text tokens (default 512)\n"
           "  --out FILE.mp4         H.264 MP4\n"
           "  --fps N                MP4 frame rate (default 16)\n"
           "  --crf N                x264 quality 1..51 (default 18)\n"
           "  --frames-dir DIR       PNG frames frame_00000.png ... (created if missing)\n"
           "  --save-latents FILE.h5 final latents (HDF5 dataset /latents [1, C, T, h, w])\n"
           "  --contact-sheet FILE.png  every frame on one PNG (a grid, for a quick look)\n"
           "  --threads N            CPU threads (default: all)\n"
           "  --json-progress        JSON lines on stdout instead of progress lines on stderr\n"
           "At least one of --out, --frames-dir, --save-latents, --contact-sheet is required.\n"
           "exit codes: 0 written, 1 bad model/input file or failed work, 2 bad command line\n");
}

static int usage_err(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see --help)\n");
    return WF_EXIT_USAGE;
}

static bool parse_i64(const char *s, int64_t *out) {
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (errno || e == s || *e) return false;
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t *out) {
    char *e;
    errno = 0;
    if (*s == '-') return false;
    unsigned long long v = strtoull(s, &e, 10);
    if (errno || e == s || *e) return false;
    *out = v;
    return true;
}

static bool parse_f64(const char *s, double *out) {
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (errno || e == s || *e || !isfinite(v)) return false;
    *out = v;
    return true;
}

typedef struct gen_ctx {
    vout_mp4 *mp4;
    const char *frames_dir;
    uint8_t *rgb8;
    size_t rgb8_cap;
    int64_t written;
    bool json;
    double t_start;
    bool sheet;       /* keep every 8-bit frame for the contact sheet */
    uint8_t **kept;   /* [n_kept] frames of H x W x 3 */
    int64_t n_kept, kept_cap, kept_w, kept_h;
} gen_ctx;

/* Keeps a copy of one 8-bit frame for the contact sheet. */
static wf_status keep_frame(gen_ctx *g, const uint8_t *rgb, size_t fs, int64_t W, int64_t H,
                            wf_err *err) {
    if (g->n_kept == g->kept_cap) {
        int64_t c = g->kept_cap ? 2 * g->kept_cap : 32;
        uint8_t **q = realloc(g->kept, (size_t)c * sizeof *q);
        if (!q) return wf_fail(err, WF_ENOMEM, "out of memory for the contact sheet");
        g->kept = q;
        g->kept_cap = c;
    }
    uint8_t *f = malloc(fs);
    if (!f) return wf_fail(err, WF_ENOMEM, "out of memory for the contact sheet");
    memcpy(f, rgb, fs);
    g->kept[g->n_kept++] = f;
    g->kept_w = W;
    g->kept_h = H;
    return WF_OK;
}

/* The contact sheet: about square, frames shrunk so that the sheet stays near 2048 px wide. */
static wf_status write_sheet(const gen_ctx *g, const char *path, wf_err *err) {
    if (g->n_kept == 0) return wf_fail(err, WF_EINVAL, "no frames were decoded");
    int cols = (int)ceil(sqrt((double)g->n_kept));
    int shrink = 1;
    while (g->kept_w / shrink * cols > 2048 && shrink < 16) shrink *= 2;
    return vout_contact_sheet(path, (const uint8_t *const *)g->kept, (int)g->n_kept,
                              (int)g->kept_w, (int)g->kept_h, cols, shrink, err);
}

static wf_status on_frames(void *ctx, int64_t first, int64_t n, int64_t H, int64_t W,
                           const float *rgb, wf_err *err) {
    gen_ctx *g = ctx;
    size_t fs = (size_t)(H * W * 3);
    if (g->rgb8_cap < fs) {
        uint8_t *q = realloc(g->rgb8, fs);
        if (!q) return wf_fail(err, WF_ENOMEM, "out of memory for a frame");
        g->rgb8 = q;
        g->rgb8_cap = fs;
    }
    for (int64_t k = 0; k < n; k++) {
        vae_to_rgb8(rgb + (size_t)k * fs, fs, g->rgb8);
        wf_status st;
        if (g->mp4 && (st = vout_mp4_write(g->mp4, g->rgb8, err))) return st;
        if (g->frames_dir) {
            char path[4200];
            snprintf(path, sizeof path, "%s/frame_%05lld.png", g->frames_dir,
                     (long long)(first + k));
            if ((st = vout_png_write(path, g->rgb8, (int)W, (int)H, err))) return st;
        }
        if (g->sheet && (st = keep_frame(g, g->rgb8, fs, W, H, err))) return st;
        g->written++;
    }
    return WF_OK;
}

static void on_progress(void *ctx, const pl_progress *pr) {
    gen_ctx *g = ctx;
    double per = pr->elapsed_seconds / (double)(pr->step + 1);
    double eta = per * (double)(pr->steps - pr->step - 1);
    if (g->json) {
        printf("{\"event\":\"step\",\"step\":%lld,\"steps\":%lld,\"expert\":\"%s\",\"timestep\":%g,"
               "\"guidance\":%g,\"step_seconds\":%.4f,\"elapsed_seconds\":%.4f,\"eta_seconds\":%.2f}\n",
               (long long)(pr->step + 1), (long long)pr->steps,
               pr->expert ? "transformer_2" : "transformer", pr->timestep, pr->guidance,
               pr->step_seconds, pr->elapsed_seconds, eta);
        fflush(stdout);
    } else {
        fprintf(stderr, "step %lld/%lld  %-13s  t=%-7g  %.2f s/step  ETA %.0f s\n",
                (long long)(pr->step + 1), (long long)pr->steps,
                pr->expert ? "transformer_2" : "transformer", pr->timestep, per, eta);
    }
}

/* 0 when the folder that would hold path exists; else prints why (naming opt) and returns 1. */
static int check_out_dir(const char *opt, const char *path) {
    if (!path) return 0;
    const char *slash = strrchr(path, '/');
    if (!slash) return 0;
    char dir[4096];
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= sizeof dir) n = sizeof dir - 1;
    memcpy(dir, path, n);
    dir[n] = 0;
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, PROG ": %s %s: the folder %s does not exist\n", opt, path, dir);
        return 1;
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Reads 'latents' [1, C, T, h, w] F32 and checks it against shape. */
static int read_latents(const char *path, const int64_t shape[4], float **out) {
    wf_err err;
    st_file *f = NULL;
    if (st_open(&f, path, &err)) {
        fprintf(stderr, PROG ": --latents: %s\n", err.msg);
        return WF_EXIT_FAIL;
    }
    const st_tensor *t = st_file_find(f, "latents");
    int rc = WF_EXIT_FAIL;
    if (!t) {
        fprintf(stderr, PROG ": --latents %s: no tensor 'latents'\n", path);
    } else if (t->dtype != ST_F32) {
        fprintf(stderr, PROG ": --latents %s: 'latents' is %s, expected F32\n", path,
                st_dtype_name(t->dtype));
    } else if (t->ndim != 5 || t->shape[0] != 1 || (int64_t)t->shape[1] != shape[0] ||
               (int64_t)t->shape[2] != shape[1] || (int64_t)t->shape[3] != shape[2] ||
               (int64_t)t->shape[4] != shape[3]) {
        fprintf(stderr,
                PROG ": --latents %s: 'latents' must be [1, %lld, %lld, %lld, %lld] for this "
                "size and frame count\n",
                path, (long long)shape[0], (long long)shape[1], (long long)shape[2],
                (long long)shape[3]);
    } else {
        *out = malloc(t->numel * sizeof(float));
        if (*out) {
            memcpy(*out, t->data, t->numel * sizeof(float));
            rc = WF_EXIT_OK;
        } else {
            fprintf(stderr, PROG ": out of memory\n");
        }
    }
    st_close(&f);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    pl_request r;
    pl_request_default(&r);
    const char *model = NULL, *out = NULL, *latents_in = NULL, *save_latents = NULL,
               *frames_dir = NULL, *sheet = NULL;
    bool have_seed = false, json = false;
    int64_t threads = 0, fps = 16, crf = 18;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help();
            return WF_EXIT_OK;
        }
        if (!strcmp(a, "--json-progress")) {
            json = true;
            continue;
        }
        if (strncmp(a, "--", 2)) return usage_err("unexpected argument '%s'%s", a, "");
        if (i + 1 == argc) return usage_err("%s needs a value%s", a, "");
        const char *v = argv[++i];
        bool ok = true;
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--prompt")) r.prompt = v;
        else if (!strcmp(a, "--negative-prompt"))
            r.negative_prompt = !strcmp(v, "wan") ? PL_WAN_NEGATIVE_PROMPT_ZH : v;
        else if (!strcmp(a, "--size")) {
            char *x = strchr(v, 'x');
            if (!x) x = strchr(v, 'X');
            char wbuf[32];
            size_t wl = x ? (size_t)(x - v) : 0;
            ok = x && wl > 0 && wl < sizeof wbuf;
            if (ok) {
                memcpy(wbuf, v, wl);
                wbuf[wl] = 0;
                ok = parse_i64(wbuf, &r.width) && parse_i64(x + 1, &r.height) && r.width > 0 &&
                     r.height > 0;
            }
            if (!ok) return usage_err("--size '%s' must be WIDTHxHEIGHT, e.g. 832x480%s", v, "");
            continue;
        } else if (!strcmp(a, "--frames")) ok = parse_i64(v, &r.frames);
        else if (!strcmp(a, "--steps")) ok = parse_i64(v, &r.steps) && r.steps >= 1;
        else if (!strcmp(a, "--guidance")) ok = parse_f64(v, &r.guidance);
        else if (!strcmp(a, "--guidance-2")) ok = parse_f64(v, &r.guidance_2);
        else if (!strcmp(a, "--shift")) ok = parse_f64(v, &r.shift) && r.shift > 0;
        else if (!strcmp(a, "--boundary"))
            ok = parse_f64(v, &r.boundary) && r.boundary >= 0 && r.boundary <= 1;
        else if (!strcmp(a, "--sampler")) {
            if (!strcmp(v, "unipc")) r.sampler = SMP_UNIPC;
            else if (!strcmp(v, "euler")) r.sampler = SMP_EULER;
            else return usage_err("--sampler '%s': use unipc or euler%s", v, "");
        } else if (!strcmp(a, "--seed")) ok = have_seed = parse_u64(v, &r.seed);
        else if (!strcmp(a, "--latents")) latents_in = v;
        else if (!strcmp(a, "--max-sequence-length"))
            ok = parse_i64(v, &r.max_sequence_length) && r.max_sequence_length >= 1;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--fps")) ok = parse_i64(v, &fps) && fps >= 1 && fps <= 240;
        else if (!strcmp(a, "--crf")) ok = parse_i64(v, &crf) && crf >= 1 && crf <= 51;
        else if (!strcmp(a, "--frames-dir")) frames_dir = v;
        else if (!strcmp(a, "--save-latents")) save_latents = v;
        else if (!strcmp(a, "--contact-sheet")) sheet = v;
        else if (!strcmp(a, "--threads")) ok = parse_i64(v, &threads) && threads >= 0 && threads < 100000;
        else return usage_err("unknown option '%s'%s", a, "");
        if (!ok) return usage_err("%s: bad value '%s'", a, v);
    }
    if (!model) return usage_err("missing --model DIR%s%s", "", "");
    if (!r.prompt) return usage_err("missing --prompt TEXT%s%s", "", "");
    if (!out && !frames_dir && !save_latents && !sheet)
        return usage_err("nothing would be written: give --out FILE.mp4, --frames-dir DIR, "
                         "--save-latents FILE.h5 or --contact-sheet FILE.png%s%s", "", "");
    if (latents_in && have_seed)
        return usage_err("--seed and --latents exclude each other%s%s", "", "");
    if (!latents_in && !have_seed) r.seed = (uint64_t)time(NULL);
    if (check_out_dir("--out", out) || check_out_dir("--save-latents", save_latents) ||
        check_out_dir("--contact-sheet", sheet))
        return WF_EXIT_FAIL;
    if (frames_dir) {
        struct stat sb;
        if (stat(frames_dir, &sb) != 0 && mkdir(frames_dir, 0777) != 0) {
            fprintf(stderr, PROG ": --frames-dir %s: cannot create: %s\n", frames_dir,
                    strerror(errno));
            return WF_EXIT_FAIL;
        }
        if (stat(frames_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            fprintf(stderr, PROG ": --frames-dir %s is not a folder\n", frames_dir);
            return WF_EXIT_FAIL;
        }
    }

    wf_err err;
    pl_pipeline *p = NULL;
    double t0 = now_s();
    if (pl_open(&p, model, NULL, (int)threads, &err)) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        return WF_EXIT_FAIL;
    }
    int rc = WF_EXIT_FAIL;
    float *lat0 = NULL, *lat = NULL;
    gen_ctx g = {0};
    g.json = json;
    g.frames_dir = frames_dir;
    g.sheet = sheet != NULL;
    int64_t shape[4];
    wf_status st = pl_check_request(p, &r, shape, &err);
    if (st) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        rc = st == WF_EINVAL ? WF_EXIT_USAGE : WF_EXIT_FAIL;
        goto done;
    }
    if (!latents_in && !have_seed) fprintf(stderr, PROG ": seed %llu\n", (unsigned long long)r.seed);
    if (latents_in) {
        if ((rc = read_latents(latents_in, shape, &lat0)) != WF_EXIT_OK) {
            rc = WF_EXIT_FAIL;
            goto done;
        }
        rc = WF_EXIT_FAIL;
        r.latents = lat0;
    }
    size_t n = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
    if (save_latents) {
        lat = malloc(n * sizeof *lat);
        if (!lat) {
            fprintf(stderr, PROG ": out of memory\n");
            goto done;
        }
        r.latents_out = lat;
    }
    if (out && vout_mp4_open(&g.mp4, out, (int)r.width, (int)r.height, (int)fps, (int)crf, &err)) {
        fprintf(stderr, PROG ": --out %s: %s\n", out, err.msg);
        goto done;
    }
    if (!json)
        fprintf(stderr, PROG ": loaded %s in %.1f s; %lldx%lld, %lld frames, latents [%lld, %lld, %lld, %lld], %lld steps\n",
                model, now_s() - t0, (long long)r.width, (long long)r.height, (long long)r.frames,
                (long long)shape[0], (long long)shape[1], (long long)shape[2], (long long)shape[3],
                (long long)r.steps);
    r.progress = on_progress;
    r.progress_ctx = &g;
    r.on_frames = on_frames;
    r.frames_ctx = &g;
    r.skip_decode = !out && !frames_dir && !sheet;
    g.t_start = now_s();
    if (pl_generate(p, &r, &err)) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto done;
    }
    if (g.mp4 && vout_mp4_close(&g.mp4, &err)) {
        fprintf(stderr, PROG ": --out %s: %s\n", out, err.msg);
        goto done;
    }
    if (sheet && write_sheet(&g, sheet, &err)) {
        fprintf(stderr, PROG ": --contact-sheet %s: %s\n", sheet, err.msg);
        goto done;
    }
    if (save_latents) {
        int64_t s5[5] = {1, shape[0], shape[1], shape[2], shape[3]};
        if (vout_h5_write_latents(save_latents, lat, 5, s5, &err)) {
            fprintf(stderr, PROG ": --save-latents %s: %s\n", save_latents, err.msg);
            goto done;
        }
    }
    if (json)
        printf("{\"event\":\"done\",\"frames\":%lld,\"seconds\":%.3f}\n", (long long)g.written,
               now_s() - t0);
    else
        fprintf(stderr, PROG ": done in %.1f s (%lld frames)%s%s%s%s%s%s%s%s\n", now_s() - t0,
                (long long)g.written, out ? ", " : "", out ? out : "", frames_dir ? ", " : "",
                frames_dir ? frames_dir : "", save_latents ? ", " : "",
                save_latents ? save_latents : "", sheet ? ", " : "", sheet ? sheet : "");
    rc = WF_EXIT_OK;
done:
    vout_mp4_abort(&g.mp4);
    free(g.rgb8);
    for (int64_t k = 0; k < g.n_kept; k++) free(g.kept[k]);
    free(g.kept);
    free(lat0);
    free(lat);
    pl_close(&p);
    return rc;
}
