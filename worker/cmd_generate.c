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

#include <mpi.h>
#include <unistd.h>

#include "cmds.h"
#include "layout.h"
#include "pipeline.h"
#include "pl_dist.h"
#include "plan.h"
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
           "  --threads N            CPU threads per rank (default: the cores / the ranks on the node)\n"
           "  --count N              generate N videos of each prompt (seeds seed, seed+1, ...);\n"
           "                         --prompt may also be given several times. With several videos\n"
           "                         the output names get -K before the extension (K = 0, 1, ...)\n"
           "Under mpirun/srun (several ranks), the layout (DESIGN.md 2) comes from the planner\n"
           "(`wanfarm plan`) unless every choice is given:\n"
           "  --placement shared|split  one group with both experts, or a high-noise and a\n"
           "                         low-noise group (a two-stage pipeline across videos)\n"
           "  --ulysses N[,M]        sequence-parallel degree (of the high and low group)\n"
           "  --cfg-parallel / --no-cfg-parallel  conditional and unconditional passes on two\n"
           "                         halves of each group\n"
           "  --vae-ranks N          ranks that decode (parallel row tiles)\n"
           "  --replicas N           N independent worker worlds of the layout, each taking every\n"
           "                         N-th video of the queue (default: the planner's; 1 when the\n"
           "                         layout is given)\n"
           "  --mem-gb G             memory per rank for the planner (default: the host's)\n"
           "  --cost FILE.json       the planner's rates (default: stated CPU rates; see\n"
           "                         `wanfarm plan --help` and bench_scaling --calibrate)\n"
           "  --json-progress        JSON lines on stdout instead of progress lines on stderr\n"
           "When the planner's best layout does not use every rank, the rest stay idle (said).\n"
           "At least one of --out, --frames-dir, --save-latents, --contact-sheet is required.\n"
           "exit codes: 0 written, 1 bad model/input file or failed work, 2 bad command line\n");
}

/* Set on every rank but world rank 0 of a launched run: input errors are printed once. */
static bool g_quiet;

#define usage_err(...) (g_quiet ? WF_EXIT_USAGE : cmd_usage_err(PROG, __VA_ARGS__))

typedef struct gen_ctx {
    vout_mp4 *mp4;
    const char *mp4_path; /* opened at the first frame */
    bool mine;            /* this rank writes this job's outputs */
    int fps, crf;
    int64_t job;          /* -1 when there is one job (file names without -K) */
    int64_t gjob;         /* the job's index in the queue */
    int rank;             /* for progress lines under MPI (-1: single process) */
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
    if (g->mp4_path && !g->mp4) {
        wf_status st = vout_mp4_open(&g->mp4, g->mp4_path, (int)W, (int)H, g->fps, g->crf, err);
        if (st) {
            wf_err_prefix(err, "--out %s: ", g->mp4_path);
            return st;
        }
    }
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
            if (g->job >= 0)
                snprintf(path, sizeof path, "%s/job%lld_frame_%05lld.png", g->frames_dir,
                         (long long)g->job, (long long)(first + k));
            else
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
        printf("{\"event\":\"step\",\"job\":%lld,\"group\":%d,\"rank\":%d,\"step\":%lld,"
               "\"steps\":%lld,\"expert\":\"%s\",\"timestep\":%g,\"guidance\":%g,"
               "\"step_seconds\":%.4f,\"elapsed_seconds\":%.4f,\"eta_seconds\":%.2f,"
               "\"wall_end\":%.6f}\n",
               (long long)g->gjob, pr->group, g->rank < 0 ? 0 : g->rank, (long long)(pr->step + 1),
               (long long)pr->steps, pr->expert ? "transformer_2" : "transformer", pr->timestep,
               pr->guidance, pr->step_seconds, pr->elapsed_seconds, eta, pr->wall_end);
        fflush(stdout);
    } else if (g->rank >= 0) {
        fprintf(stderr, "[rank %d, job %lld] step %lld/%lld  %-13s  t=%-7g  %.2f s/step\n",
                g->rank, (long long)g->gjob, (long long)(pr->step + 1), (long long)pr->steps,
                pr->expert ? "transformer_2" : "transformer", pr->timestep, pr->step_seconds);
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
        if (!g_quiet) fprintf(stderr, PROG ": %s %s: the folder %s does not exist\n", opt, path, dir);
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

#define MAX_PROMPTS 256

typedef struct gen_opts {
    const char *prompts[MAX_PROMPTS];
    int nprompts;
    int64_t count;
    const char *model, *out, *latents_in, *save_latents, *frames_dir, *sheet;
    bool have_seed, json;
    int64_t threads, fps, crf;
    int placement;             /* -1: left to the planner, else an ly_placement */
    ly_layout layout;          /* ulysses/vae_ranks 0: left to the planner */
    int cfg_par;               /* -1 free, 0, 1 */
    int replicas;              /* 0: the planner's (1 when the layout is given) */
    double mem_gb;             /* 0: host memory / local ranks */
    const char *cost;          /* planner cost file, or NULL */
} gen_opts;

/* The path of job k of n: base itself when n == 1, else "-k" before the extension. */
static void job_path(const char *base, int64_t k, int64_t n, char *out, size_t cap) {
    if (n == 1) {
        snprintf(out, cap, "%s", base);
        return;
    }
    const char *slash = strrchr(base, '/'), *dot = strrchr(base, '.');
    if (!dot || (slash && dot < slash) || dot == (slash ? slash + 1 : base)) {
        snprintf(out, cap, "%s-%lld", base, (long long)k);
        return;
    }
    snprintf(out, cap, "%.*s-%lld%s", (int)(dot - base), base, (long long)k, dot);
}

/* Tasks of the srun step that started us (0: not in an srun step). */
static long srun_tasks(void) {
    const char *v = getenv("SLURM_STEP_NUM_TASKS");
    return v ? strtol(v, NULL, 10) : 0;
}

/* Under mpirun or srun (a process manager started us)? Then MPI is initialised. An srun step of
 * several tasks counts even without PMI variables, so that a missing --mpi plugin is reported
 * instead of every task generating the same video alone. */
static bool under_launcher(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE") ||
           getenv("PMI_RANK") || srun_tasks() > 1;
}

/* Ranks on this node (for the default thread count). */
static int local_ranks(void) {
    MPI_Comm node;
    int n = 1;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        MPI_Comm_size(node, &n);
        MPI_Comm_free(&node);
    }
    return n;
}

typedef struct gen_run {
    gen_opts *o;
    pl_request *reqs;
    gen_ctx *ctx;
    float **lat_out;
    int64_t njobs;
    int64_t shape[4];          /* latents [C, T, h, w] (every job has the same size) */
    int rank, size;
    bool quiet; /* not world rank 0: input errors are printed once */
} gen_run;

/* Per job outputs after the work (writer only). */
static int finish_outputs(gen_run *g, int64_t k) {
    const gen_opts *o = g->o;
    wf_err err;
    char path[4200];
    gen_ctx *c = &g->ctx[k];
    if (c->mp4 && vout_mp4_close(&c->mp4, &err)) {
        fprintf(stderr, PROG ": --out %s: %s\n", c->mp4_path, err.msg);
        return WF_EXIT_FAIL;
    }
    if (o->sheet) {
        job_path(o->sheet, k, g->njobs, path, sizeof path);
        if (write_sheet(c, path, &err)) {
            fprintf(stderr, PROG ": --contact-sheet %s: %s\n", path, err.msg);
            return WF_EXIT_FAIL;
        }
    }
    if (o->save_latents) {
        job_path(o->save_latents, k, g->njobs, path, sizeof path);
        int64_t s5[5] = {1, g->shape[0], g->shape[1], g->shape[2], g->shape[3]};
        if (vout_h5_write_latents(path, g->lat_out[k], 5, s5, &err)) {
            fprintf(stderr, PROG ": --save-latents %s: %s\n", path, err.msg);
            return WF_EXIT_FAIL;
        }
    }
    return WF_EXIT_OK;
}

static void free_run(gen_run *g) {
    for (int64_t k = 0; g->ctx && k < g->njobs; k++) {
        gen_ctx *c = &g->ctx[k];
        vout_mp4_abort(&c->mp4);
        free(c->rgb8);
        for (int64_t i = 0; i < c->n_kept; i++) free(c->kept[i]);
        free(c->kept);
        free((char *)c->mp4_path);
    }
    for (int64_t k = 0; g->lat_out && k < g->njobs; k++) free(g->lat_out[k]);
    free(g->lat_out);
    free(g->ctx);
    free(g->reqs);
}

/* The requests and their output contexts. Job k is written here when `writer` and
 * k % replicas == replica (the worker world that runs it). */
static int setup_jobs(gen_run *g, const pl_request *base, const float *lat0, bool writer,
                      int replicas, int replica) {
    const gen_opts *o = g->o;
    g->reqs = calloc((size_t)g->njobs, sizeof *g->reqs);
    g->ctx = calloc((size_t)g->njobs, sizeof *g->ctx);
    g->lat_out = calloc((size_t)g->njobs, sizeof *g->lat_out);
    if (!g->reqs || !g->ctx || !g->lat_out) return WF_EXIT_FAIL;
    size_t n = (size_t)(g->shape[0] * g->shape[1] * g->shape[2] * g->shape[3]);
    for (int64_t k = 0; k < g->njobs; k++) {
        pl_request *r = &g->reqs[k];
        gen_ctx *c = &g->ctx[k];
        *r = *base;
        r->prompt = o->prompts[k / o->count];
        r->seed = base->seed + (uint64_t)(k % o->count);
        r->latents = lat0;
        c->json = o->json;
        c->rank = g->size > 1 ? g->rank : -1;
        c->job = g->njobs > 1 ? k : -1;
        c->gjob = k;
        c->fps = (int)o->fps;
        c->crf = (int)o->crf;
        r->progress = on_progress;
        r->progress_ctx = c;
        r->skip_decode = !o->out && !o->frames_dir && !o->sheet;
        c->mine = writer && k % replicas == replica;
        if (!c->mine) continue;
        c->frames_dir = o->frames_dir;
        c->sheet = o->sheet != NULL;
        if (o->out) {
            char path[4200];
            job_path(o->out, k, g->njobs, path, sizeof path);
            if (!(c->mp4_path = strdup(path))) return WF_EXIT_FAIL;
        }
        r->on_frames = on_frames;
        r->frames_ctx = c;
        if (o->save_latents) {
            if (!(g->lat_out[k] = malloc(n * sizeof(float)))) return WF_EXIT_FAIL;
            r->latents_out = g->lat_out[k];
        }
    }
    return WF_EXIT_OK;
}

static void report_done(const gen_run *g, double t0) {
    int64_t frames = 0;
    int64_t videos = 0;
    for (int64_t k = 0; k < g->njobs; k++) {
        frames += g->ctx[k].written;
        videos += g->ctx[k].mine;
    }
    const gen_opts *o = g->o;
    if (o->json)
        printf("{\"event\":\"done\",\"rank\":%d,\"videos\":%lld,\"frames\":%lld,"
               "\"seconds\":%.3f}\n",
               g->rank, (long long)videos, (long long)frames, now_s() - t0);
    else
        fprintf(stderr, PROG ": done in %.1f s (%lld video%s, %lld frames)%s%s\n", now_s() - t0,
                (long long)videos, videos == 1 ? "" : "s", (long long)frames,
                o->out ? ", " : "", o->out ? o->out : "");
}

/* One process: pl_generate for each job. */
static int run_single(gen_run *g, const pl_request *base, double t0) {
    const gen_opts *o = g->o;
    wf_err err;
    pl_pipeline *p = NULL;
    float *lat0 = NULL;
    int rc = WF_EXIT_FAIL;
    if (pl_open(&p, o->model, NULL, (int)o->threads, &err)) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        return WF_EXIT_FAIL;
    }
    wf_status st = pl_check_request(p, base, g->shape, &err);
    if (st) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        rc = st == WF_EINVAL ? WF_EXIT_USAGE : WF_EXIT_FAIL;
        goto done;
    }
    if (o->placement >= 0 || o->layout.ulysses[0] > 1 || o->layout.ulysses[1] > 1 ||
        o->cfg_par == 1 || o->layout.vae_ranks > 1) { /* layout options on one rank */
        ly_layout l = o->layout;
        l.placement = o->placement >= 0 ? (ly_placement)o->placement : LY_SHARED;
        for (int k = 0; k < 2; k++) l.ulysses[k] = l.ulysses[k] > 0 ? l.ulysses[k] : 1;
        l.cfg_parallel = o->cfg_par == 1;
        l.vae_ranks = l.vae_ranks > 0 ? l.vae_ranks : 1;
        ly_limits lim;
        if ((st = pd_limits(p, base, &lim, &err)) || (st = ly_check(&l, 1, &lim, &err))) {
            fprintf(stderr, PROG ": one rank (start more with mpirun or srun): %s\n", err.msg);
            rc = st == WF_EINVAL ? WF_EXIT_USAGE : WF_EXIT_FAIL;
            goto done;
        }
    }
    if (o->latents_in && read_latents(o->latents_in, g->shape, &lat0) != WF_EXIT_OK) goto done;
    if (setup_jobs(g, base, lat0, true, 1, 0) != WF_EXIT_OK) {
        fprintf(stderr, PROG ": out of memory\n");
        goto done;
    }
    if (!o->json)
        fprintf(stderr, PROG ": loaded %s in %.1f s; %lldx%lld, %lld frames, latents [%lld, %lld, "
                "%lld, %lld], %lld steps\n",
                o->model, now_s() - t0, (long long)base->width, (long long)base->height,
                (long long)base->frames, (long long)g->shape[0], (long long)g->shape[1],
                (long long)g->shape[2], (long long)g->shape[3], (long long)base->steps);
    for (int64_t k = 0; k < g->njobs; k++) {
        if (pl_generate(p, &g->reqs[k], &err)) {
            fprintf(stderr, PROG ": %s%s\n", g->njobs > 1 ? "" : "", err.msg);
            goto done;
        }
        if ((rc = finish_outputs(g, k)) != WF_EXIT_OK) goto done;
        rc = WF_EXIT_FAIL;
    }
    report_done(g, t0);
    rc = WF_EXIT_OK;
done:
    free(lat0);
    pl_close(&p);
    return rc;
}

/* CPU threads of each rank: --threads, else the node's cores shared among its ranks. */
static int64_t threads_per_rank(const gen_opts *o) {
    if (o->threads > 0) return o->threads;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int64_t t = cores > 0 ? cores / local_ranks() : 1;
    return t < 1 ? 1 : t;
}

/* The layout: the command line's when it gives every choice, else the planner's with them fixed. */
static int pick_layout(gen_run *g, const pl_pipeline *shell, const pl_request *base,
                       ly_layout *out, int *replicas) {
    const gen_opts *o = g->o;
    wf_err err;
    const ly_layout *l = &o->layout;
    if (o->placement >= 0 && l->ulysses[0] > 0 && o->cfg_par >= 0 && l->vae_ranks > 0) {
        *out = *l;
        out->placement = (ly_placement)o->placement;
        out->cfg_parallel = o->cfg_par == 1;
        if (out->ulysses[1] <= 0) out->ulysses[1] = out->ulysses[0];
        *replicas = o->replicas > 0 ? o->replicas : 1;
        return WF_EXIT_OK;
    }
    pn_inputs in;
    pn_inputs_default(&in);
    pn_request pr;
    pn_request_default(&pr);
    pr.width = base->width, pr.height = base->height, pr.frames = base->frames;
    pr.steps = base->steps, pr.guidance = base->guidance, pr.boundary = base->boundary;
    pr.shift = base->shift, pr.sampler = base->sampler, pr.text_len = base->max_sequence_length;
    in.world = g->size;
    in.ranks_per_node = local_ranks();
    if (pn_inputs_from_pipeline(&in, shell->cfg, &pr, &err)) {
        if (!g->quiet) fprintf(stderr, PROG ": %s\n", err.msg);
        return WF_EXIT_USAGE;
    }
    in.queue = g->njobs;
    in.replicas = o->replicas > 0 ? o->replicas : PN_FREE; /* several worker worlds for a queue */
    in.allow_idle = true;
    /* The ranks compute on the CPU backend today (the CUDA op backend is a later issue): rates per
     * thread as bench_ops measures them on a 2-core AMD EPYC VM with OpenBLAS (sgemm ~70 GFLOP/s
     * per core, attention ~45, conv ~55), shared-memory MPI inside a node (~5 GB/s, 5 us), a
     * 10 GbE-class network between nodes (~1 GB/s, 50 us); f32 activations, no device reserve,
     * and the weights mapped from the checkpoint files (the page cache shares them between the
     * ranks of a node), so the memory limit is the host's unless --mem-gb says otherwise.
     * --cost FILE replaces the rates (bench_scaling --calibrate --write-cost writes one). */
    const double thr = (double)threads_per_rank(o);
    in.cost.gemm_flops = 70e9 * thr;
    in.cost.attn_flops = 45e9 * thr;
    in.cost.vae_flops = 55e9 * thr;
    in.cost.mem_bw = 10e9;
    in.cost.intra_bw = 5e9;
    in.cost.inter_bw = 1e9;
    in.cost.intra_latency = 5e-6;
    in.cost.inter_latency = 50e-6;
    in.cost.host_bw = 10e9;
    in.cost.elem_bytes = 4;
    in.cost.mem_reserve = 0;
    snprintf(in.cost.source, sizeof in.cost.source, "stated for CPU ranks of %g thread(s)", thr);
    if (o->cost && pn_cost_load(&in.cost, o->cost, &err)) {
        if (!g->quiet) fprintf(stderr, PROG ": --cost %s\n", err.msg);
        return WF_EXIT_FAIL;
    }
    if (o->mem_gb > 0) {
        in.cost.mem_per_rank = o->mem_gb * 1e9;
    } else {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        if (pages > 0 && psz > 0) in.cost.mem_per_rank = (double)pages * (double)psz;
    }
    in.placement = o->placement >= 0 ? o->placement : PN_FREE;
    in.ulysses[0] = l->ulysses[0] > 0 ? l->ulysses[0] : PN_FREE;
    in.ulysses[1] = l->ulysses[1] > 0 ? l->ulysses[1] : (l->ulysses[0] > 0 ? l->ulysses[0] : PN_FREE);
    in.cfg_parallel = o->cfg_par >= 0 ? o->cfg_par : PN_FREE;
    in.vae_ranks = l->vae_ranks > 0 ? l->vae_ranks : PN_FREE;
    pn_plan plan;
    if (pn_choose(&in, &plan, &err)) {
        if (!g->quiet) fprintf(stderr, PROG ": %s\n", err.msg);
        return WF_EXIT_USAGE;
    }
    *out = plan.layout;
    *replicas = plan.replicas;
    return WF_EXIT_OK;
}

/* Several ranks: the distributed pipeline (pl_dist.h). */
static int run_dist(gen_run *g, pl_request *base, double t0) {
    const gen_opts *o = g->o;
    wf_err err;
    cm_comm *world = NULL, *rep = NULL;
    pl_pipeline *shell = NULL;
    pd_world *d = NULL;
    float *lat0 = NULL;
    pl_request *mine = NULL;
    int rc = WF_EXIT_FAIL;
    if (cm_world(&world, &err) || pl_open_parts(&shell, o->model, NULL, 1, 0, &err)) {
        if (!g->quiet) fprintf(stderr, PROG ": %s\n", err.msg);
        goto done;
    }
    wf_status st = pl_check_request(shell, base, g->shape, &err);
    if (st) {
        if (!g->quiet) fprintf(stderr, PROG ": %s\n", err.msg);
        rc = st == WF_EINVAL ? WF_EXIT_USAGE : WF_EXIT_FAIL;
        goto done;
    }
    ly_layout l;
    int R = 1;
    if ((rc = pick_layout(g, shell, base, &l, &R)) != WF_EXIT_OK) goto done;
    rc = WF_EXIT_FAIL;
    /* R worker worlds of `per` ranks each; explicit layouts must use every rank */
    const int per = ly_ranks(&l);
    const bool given = o->placement >= 0 && l.ulysses[0] > 0 && o->cfg_par >= 0 && l.vae_ranks > 0;
    ly_limits lim;
    if ((st = pd_limits(shell, base, &lim, &err)) ||
        (st = ly_check(&l, given && o->replicas <= 0 ? g->size : per, &lim, &err))) {
        if (!g->quiet) fprintf(stderr, PROG ": %s\n", err.msg);
        rc = st == WF_EINVAL ? WF_EXIT_USAGE : WF_EXIT_FAIL;
        goto done;
    }
    if (R < 1 || (int64_t)R * per > g->size || (given && (int64_t)R * per != g->size)) {
        if (!g->quiet)
            fprintf(stderr, PROG ": %d worker worlds of %d ranks need %lld ranks, the world has %d: "
                    "%s\n", R, per, (long long)R * per, g->size,
                    (int64_t)R * per > g->size ? "start more ranks or lower --replicas"
                                               : "too many ranks for this layout; raise --replicas");
        rc = WF_EXIT_USAGE;
        goto done;
    }
    const int my_rep = g->rank < R * per ? g->rank / per : -1;
    char desc[160];
    ly_format(&l, desc, sizeof desc);
    if (!g->quiet && !o->json) {
        fprintf(stderr, PROG ": %d ranks, layout %s", g->size, desc);
        if (R > 1) fprintf(stderr, ", %d worker worlds of %d ranks (videos dealt round-robin)", R, per);
        if (g->size > R * per) fprintf(stderr, ", %d ranks idle", g->size - R * per);
        fprintf(stderr, "\n");
    }
    if (o->latents_in && read_latents(o->latents_in, g->shape, &lat0) != WF_EXIT_OK)
        MPI_Abort(MPI_COMM_WORLD, WF_EXIT_FAIL);
    const int64_t threads = threads_per_rank(o);
    if ((st = cm_split(world, my_rep, g->rank, "worker world", &rep, &err))) {
        fprintf(stderr, PROG " (rank %d): %s\n", g->rank, err.msg);
        MPI_Abort(MPI_COMM_WORLD, WF_EXIT_FAIL);
    }
    rc = WF_EXIT_OK;
    if (rep) { /* not an idle rank */
        if ((st = pd_open(&d, rep, &l, o->model, NULL, (int)threads, &err))) {
            fprintf(stderr, PROG " (rank %d): %s\n", g->rank, err.msg);
            MPI_Abort(MPI_COMM_WORLD, WF_EXIT_FAIL);
        }
        if (setup_jobs(g, base, lat0, d->role.writer, R, my_rep) != WF_EXIT_OK ||
            !(mine = calloc((size_t)g->njobs, sizeof *mine))) {
            fprintf(stderr, PROG " (rank %d): out of memory\n", g->rank);
            MPI_Abort(MPI_COMM_WORLD, WF_EXIT_FAIL);
        }
        int64_t nmine = 0;
        for (int64_t k = my_rep; k < g->njobs; k += R) mine[nmine++] = g->reqs[k];
        if (!g->quiet && !o->json)
            fprintf(stderr, PROG ": loaded in %.1f s; %lld video%s of %lldx%lld, %lld frames\n",
                    now_s() - t0, (long long)g->njobs, g->njobs == 1 ? "" : "s",
                    (long long)base->width, (long long)base->height, (long long)base->frames);
        if (nmine && (st = pd_run(d, mine, nmine, &err))) {
            fprintf(stderr, PROG " (rank %d): %s\n", g->rank, err.msg);
            MPI_Abort(MPI_COMM_WORLD, WF_EXIT_FAIL);
        }
        if (d->role.writer) {
            for (int64_t k = 0; k < g->njobs && rc == WF_EXIT_OK; k++)
                if (g->ctx[k].mine) rc = finish_outputs(g, k);
            if (rc == WF_EXIT_OK && nmine) report_done(g, t0);
        }
    }
    /* every rank leaves with the writers' verdict */
    int wrc = rc, any = 0;
    MPI_Allreduce(&wrc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    rc = any;
done:
    free(mine);
    free(lat0);
    pd_close(&d);
    cm_free(&rep);
    pl_close(&shell);
    cm_free(&world);
    return rc;
}

static int generate_main(int argc, char **argv, bool mpi, int rank, int size) {
    pl_request r;
    pl_request_default(&r);
    gen_opts o;
    memset(&o, 0, sizeof o);
    o.fps = 16, o.crf = 18, o.count = 1;
    o.placement = -1;
    o.cfg_par = -1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            if (!g_quiet) help();
            return WF_EXIT_OK;
        }
        if (!strcmp(a, "--json-progress")) {
            o.json = true;
            continue;
        }
        if (!strcmp(a, "--cfg-parallel") || !strcmp(a, "--no-cfg-parallel")) {
            o.cfg_par = a[2] != 'n';
            continue;
        }
        if (strncmp(a, "--", 2)) return usage_err("unexpected argument '%s'%s", a, "");
        if (i + 1 == argc) return usage_err("%s needs a value%s", a, "");
        const char *v = argv[++i];
        bool ok = true;
        if (!strcmp(a, "--model")) o.model = v;
        else if (!strcmp(a, "--prompt")) {
            if (o.nprompts == MAX_PROMPTS) return usage_err("more than %s prompts%s", "256", "");
            o.prompts[o.nprompts++] = v;
        } else if (!strcmp(a, "--negative-prompt"))
            r.negative_prompt = !strcmp(v, "wan") ? PL_WAN_NEGATIVE_PROMPT_ZH : v;
        else if (!strcmp(a, "--size")) {
            if (!cmd_parse_size(v, &r.width, &r.height))
                return usage_err("--size '%s' must be WIDTHxHEIGHT, e.g. 832x480", v);
            continue;
        } else if (!strcmp(a, "--frames")) ok = cmd_parse_i64(v, &r.frames);
        else if (!strcmp(a, "--steps")) ok = cmd_parse_i64(v, &r.steps) && r.steps >= 1;
        else if (!strcmp(a, "--guidance")) ok = cmd_parse_f64(v, &r.guidance);
        else if (!strcmp(a, "--guidance-2")) ok = cmd_parse_f64(v, &r.guidance_2);
        else if (!strcmp(a, "--shift")) ok = cmd_parse_f64(v, &r.shift) && r.shift > 0;
        else if (!strcmp(a, "--boundary"))
            ok = cmd_parse_f64(v, &r.boundary) && r.boundary >= 0 && r.boundary <= 1;
        else if (!strcmp(a, "--sampler")) {
            if (!strcmp(v, "unipc")) r.sampler = SMP_UNIPC;
            else if (!strcmp(v, "euler")) r.sampler = SMP_EULER;
            else return usage_err("--sampler '%s': use unipc or euler%s", v, "");
        } else if (!strcmp(a, "--seed")) ok = o.have_seed = cmd_parse_u64(v, &r.seed);
        else if (!strcmp(a, "--latents")) o.latents_in = v;
        else if (!strcmp(a, "--max-sequence-length"))
            ok = cmd_parse_i64(v, &r.max_sequence_length) && r.max_sequence_length >= 1;
        else if (!strcmp(a, "--out")) o.out = v;
        else if (!strcmp(a, "--fps")) ok = cmd_parse_i64(v, &o.fps) && o.fps >= 1 && o.fps <= 240;
        else if (!strcmp(a, "--crf")) ok = cmd_parse_i64(v, &o.crf) && o.crf >= 1 && o.crf <= 51;
        else if (!strcmp(a, "--frames-dir")) o.frames_dir = v;
        else if (!strcmp(a, "--save-latents")) o.save_latents = v;
        else if (!strcmp(a, "--contact-sheet")) o.sheet = v;
        else if (!strcmp(a, "--threads"))
            ok = cmd_parse_i64(v, &o.threads) && o.threads >= 0 && o.threads < 100000;
        else if (!strcmp(a, "--count")) ok = cmd_parse_i64(v, &o.count) && o.count >= 1 && o.count <= 100000;
        else if (!strcmp(a, "--placement")) {
            if (!strcmp(v, "shared")) o.placement = LY_SHARED;
            else if (!strcmp(v, "split")) o.placement = LY_SPLIT;
            else return usage_err("--placement '%s': use shared or split%s", v, "");
        } else if (!strcmp(a, "--ulysses")) {
            int64_t u0 = 0, u1 = 0;
            const char *comma = strchr(v, ',');
            char b0[32];
            size_t n0 = comma ? (size_t)(comma - v) : strlen(v);
            ok = n0 > 0 && n0 < sizeof b0;
            if (ok) {
                memcpy(b0, v, n0);
                b0[n0] = 0;
                ok = cmd_parse_i64(b0, &u0) && u0 >= 1 && u0 <= 65536 &&
                     (!comma || (cmd_parse_i64(comma + 1, &u1) && u1 >= 1 && u1 <= 65536));
            }
            if (!ok) return usage_err("--ulysses '%s' must be N or N,M (degrees >= 1)%s", v, "");
            o.layout.ulysses[0] = (int)u0;
            o.layout.ulysses[1] = (int)u1;
            continue;
        } else if (!strcmp(a, "--vae-ranks")) {
            int64_t vr = 0;
            ok = cmd_parse_i64(v, &vr) && vr >= 1 && vr <= 65536;
            o.layout.vae_ranks = (int)vr;
        } else if (!strcmp(a, "--mem-gb")) ok = cmd_parse_f64(v, &o.mem_gb) && o.mem_gb > 0;
        else if (!strcmp(a, "--replicas")) ok = cmd_parse_int(v, 1, 65536, &o.replicas);
        else if (!strcmp(a, "--cost")) o.cost = v;
        else return usage_err("unknown option '%s'%s", a, "");
        if (!ok) return usage_err("%s: bad value '%s'", a, v);
    }
    if (!o.model) return usage_err("missing --model DIR%s%s", "", "");
    if (!o.nprompts) return usage_err("missing --prompt TEXT%s%s", "", "");
    if (!o.out && !o.frames_dir && !o.save_latents && !o.sheet)
        return usage_err("nothing would be written: give --out FILE.mp4, --frames-dir DIR, "
                         "--save-latents FILE.h5 or --contact-sheet FILE.png%s%s", "", "");
    if (o.latents_in && o.have_seed)
        return usage_err("--seed and --latents exclude each other%s%s", "", "");
    if (check_out_dir("--out", o.out) || check_out_dir("--save-latents", o.save_latents) ||
        check_out_dir("--contact-sheet", o.sheet))
        return WF_EXIT_FAIL;
    if (o.frames_dir) {
        struct stat sb;
        if (stat(o.frames_dir, &sb) != 0 && mkdir(o.frames_dir, 0777) != 0 && errno != EEXIST) {
            if (!g_quiet)
                fprintf(stderr, PROG ": --frames-dir %s: cannot create: %s\n", o.frames_dir,
                        strerror(errno));
            return WF_EXIT_FAIL;
        }
        if (stat(o.frames_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            if (!g_quiet) fprintf(stderr, PROG ": --frames-dir %s is not a folder\n", o.frames_dir);
            return WF_EXIT_FAIL;
        }
    }

    gen_run g;
    memset(&g, 0, sizeof g);
    g.o = &o;
    g.rank = rank;
    g.size = size;
    g.quiet = g_quiet;
    if (!o.latents_in && !o.have_seed) {
        r.seed = (uint64_t)time(NULL);
        if (mpi) MPI_Bcast(&r.seed, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD); /* one seed for all */
        if (!g.quiet) fprintf(stderr, PROG ": seed %llu\n", (unsigned long long)r.seed);
    }
    r.prompt = o.prompts[0];
    g.njobs = (int64_t)o.nprompts * o.count;
    double t0 = now_s();
    int rc = g.size > 1 ? run_dist(&g, &r, t0) : run_single(&g, &r, t0);
    free_run(&g);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    bool mpi = under_launcher();
    int rank = 0, size = 1;
    if (mpi) {
        int provided = 0;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            fprintf(stderr, PROG ": MPI_Init failed\n");
            return WF_EXIT_FAIL;
        }
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        g_quiet = rank != 0;
        if (srun_tasks() > 1 && size != srun_tasks()) {
            fprintf(stderr,
                    PROG ": srun started %ld tasks but MPI sees a world of %d: srun and MPI are "
                    "not connected; use srun --mpi=pmix (or the plugin `srun --mpi=list` shows "
                    "for this MPI), or mpirun\n",
                    srun_tasks(), size);
            MPI_Finalize();
            return WF_EXIT_USAGE;
        }
    }
    int rc = generate_main(argc, argv, mpi, rank, size);
    if (mpi) MPI_Finalize();
    return rc;
}
