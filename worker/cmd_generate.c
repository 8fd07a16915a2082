/* cmd_generate.c: `wanfarm generate`: text to video with a Diffusers WanPipeline folder
 * (pipeline.h), written as an H.264 MP4, PNG frames and/or the final latents (video_out.h).
 * This file: the options, MPI start and the one-process run; gen_output.c writes the outputs,
 * gen_dist.c runs over several ranks (gen.h).
 *
 * Progress: one line per step on stderr (step/total, expert, t, s/step, ETA); with --json-progress
 * one JSON object per step on stdout instead ({"event":"step",...}) and a final {"event":"done"}.
 * Exit codes: 0 written; 1 the model or an input file is bad, or the work failed; 2 bad command
 * line (including values the model cannot take: sizes, frame counts).
 */
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <mpi.h>
#include <unistd.h>

#include "gen.h"
#include "cmds.h"
#include "pl_dist.h"

static void help(void) {
    printf("usage: wanfarm generate --model DIR --prompt TEXT [options]\n\n"
           "Generates a video with a Diffusers WanPipeline folder (Wan2.1 / Wan2.2 T2V).\n\n"
           "  --model DIR            the pipeline folder (model_index.json)\n"
           "  --prompt TEXT          what to show (may be given several times)\n"
           "  --prompt-file FILE     prompts from a file, one per line ('-': stdin; empty lines\n"
           "                         are skipped; up to 64 MiB; cleaned and truncated to\n"
           "                         --max-sequence-length tokens as --prompt is); with --prompt\n"
           "                         the prompts form one list in command-line order\n"
           "  --negative-prompt TEXT what to avoid (default \"\", as Diffusers; --negative-prompt\n"
           "                         wan uses the official Wan Chinese negative prompt)\n"
           "  --size WxH             width x height, positive multiples of 16 (default 832x480),\n"
           "                         at most the model's limit (rope_max_seq_len x patch x 8:\n"
           "                         16384 for Wan2.2-A14B)\n"
           "  --frames N             4k+1 frames (default 81; at most the model's limit)\n"
           "  --steps N              denoising steps (default 50)\n"
           "  --guidance G           CFG scale of transformer in [0, 100] (default 5.0; <= 1\n"
           "                         turns CFG off)\n"
           "  --guidance-2 G         CFG scale of transformer_2 in [0, 100] (default: --guidance)\n"
           "  --shift S              override the scheduler's flow shift, in [0.01, 100]\n"
           "  --boundary R           override boundary_ratio in [0, 1] (two-expert models only)\n"
           "  --sampler unipc|euler  default: the folder's scheduler\n"
           "  --seed N               initial noise seed (default: from the clock, printed);\n"
           "                         wanfarm's own generator, not torch's\n"
           "  --latents FILE         initial latents instead: safetensors, F32 tensor 'latents'\n"
           "                         [1, C, T, h, w]\n"
           "  --max-sequence-length N  text tokens, 1..4096 (default 512, as the Wan pipeline)\n"
           "  --out FILE.mp4         H.264 MP4\n"
           "  --fps N                MP4 frame rate (default 16)\n"
           "  --crf N                x264 quality 1..51 (default 18)\n"
           "  --frames-dir DIR       PNG frames frame_00000.png ... (created if missing)\n"
           "  --save-latents FILE.h5 final latents (HDF5 dataset /latents [1, C, T, h, w])\n"
           "  --contact-sheet FILE.png  every frame on one PNG (a grid, for a quick look)\n"
           "  --device D             auto (default: the first GPU when one is usable, else the\n"
           "                         CPU), cpu, cuda or cuda:N (one process; not yet under mpirun)\n"
           "  --precision P          GPU arithmetic: bf16 (default: bf16 GEMM and attention\n"
           "                         inputs, fp32 accumulation and residual stream) or fp32 (f32\n"
           "                         everywhere, no TF32); the CPU always computes fp32\n"
           "  --threads N            CPU threads per rank, at most 4x the online cores (default:\n"
           "                         the cores / the ranks on the node)\n"
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
           "  --watchdog S           under MPI, end the run when a rank waits in one collective\n"
           "                         more than max(S, 10 x the longest step) seconds: a stopped,\n"
           "                         hung or dead rank (default 600; 0 off; at most 604800)\n"
           "  --json-progress        JSON lines on stdout instead of progress lines on stderr\n"
           "  --checkpoint-dir DIR   keep each job's denoising state in DIR/job-K.ckpt.h5 (and\n"
           "                         the one before as .prev); SIGTERM or SIGUSR1 then makes the\n"
           "                         run checkpoint and stop between two steps (exit 3)\n"
           "  --checkpoint-every N   also write it after every N steps\n"
           "  --resume               start each job from its newest usable checkpoint (the same\n"
           "                         spec, seed and model; else from the noise, saying why);\n"
           "                         any layout: a job checkpointed on one resumes on another\n"
           "When the planner's best layout does not use every rank, the rest stay idle (said).\n"
           "At least one of --out, --frames-dir, --save-latents, --contact-sheet is required.\n"
           "A run whose latents stop being finite (NaN or infinity) stops at that step, naming\n"
           "it and the expert (exit 1).\n"
           "exit codes: 0 written, 1 bad model/input file or failed work, 2 bad command line,\n"
           "3 stopped by a signal after a checkpoint (--resume continues)\n");
}

/* Set on every rank but world rank 0 of a launched run: input errors are printed once. */
static bool g_quiet;
/* Under a launcher (MPI initialised): --prompt-file is read by world rank 0 and broadcast. */
static bool g_mpi;

#define usage_err(...) (g_quiet ? WF_EXIT_USAGE : cmd_usage_err(PROG, __VA_ARGS__))






#include "outputs.h" /* the output preflight of check_options */

/* --checkpoint-dir: an existing folder (created when missing, as --frames-dir) that we can write:
 * 0, else prints why and returns 1. */
static int check_ckpt_dir(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) != 0 && mkdir(dir, 0777) != 0 && errno != EEXIST) {
        if (!g_quiet)
            fprintf(stderr, PROG ": --checkpoint-dir %s: cannot create: %s\n", dir, strerror(errno));
        return 1;
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(dir, W_OK | X_OK) != 0) {
        if (!g_quiet)
            fprintf(stderr, PROG ": --checkpoint-dir %s is not a folder this process can write\n",
                    dir);
        return 1;
    }
    return 0;
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













/* One process: pl_generate for each job. */
/* A farm world's pipeline, kept from one job to the next (gen_hooks.keep): the same model,
 * parts, device, precision and threads reuse it (on a GPU, the weights stay uploaded). */
static struct {
    pl_pipeline *p;
    wk_backend *be;
    char model[4096];
    unsigned parts;
    int device, device_index, precision;
    int64_t threads;
} g_kept;

void gen_release_kept(void) {
    pl_close(&g_kept.p);
    wk_backend_destroy(&g_kept.be);
    memset(&g_kept, 0, sizeof g_kept);
}

static bool kept_fits(const gen_opts *o, unsigned parts) {
    return g_kept.p && !strcmp(g_kept.model, o->model) && g_kept.parts == parts &&
           g_kept.device == o->device && g_kept.device_index == o->device_index &&
           g_kept.precision == o->precision && g_kept.threads == o->threads;
}

/* The backend and the pipeline of a one-process run (the kept ones when they fit): WF_EXIT_OK,
 * or the exit code after the message. */
static int open_single(const gen_opts *o, wk_backend **be, pl_pipeline **p) {
    wf_err err;
    const bool keep = gen_farm_hooks && gen_farm_hooks->keep;
    const unsigned parts = gen_farm_hooks && gen_farm_hooks->parts ? gen_farm_hooks->parts
                                                                   : PL_PART_ALL;
    if (keep && kept_fits(o, parts)) {
        *be = g_kept.be, *p = g_kept.p;
        return WF_EXIT_OK;
    }
    if (keep) gen_release_kept(); /* another model or device: the old one goes */
    int rc = WF_EXIT_FAIL;
    if (gen_backend_new(o, o->json, be, &rc, &err)) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        return rc;
    }
    if (pl_open_parts(p, o->model, *be, (int)o->threads, parts, &err)) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        wk_backend_destroy(be);
        return WF_EXIT_FAIL;
    }
    if (keep && strlen(o->model) < sizeof g_kept.model) {
        g_kept.p = *p, g_kept.be = *be, g_kept.parts = parts;
        snprintf(g_kept.model, sizeof g_kept.model, "%s", o->model);
        g_kept.device = o->device, g_kept.device_index = o->device_index;
        g_kept.precision = o->precision, g_kept.threads = o->threads;
    }
    return WF_EXIT_OK;
}

static int run_single(gen_run *g, const pl_request *base, double t0) {
    const gen_opts *o = g->o;
    wf_err err;
    pl_pipeline *p = NULL;
    wk_backend *be = NULL;
    float *lat0 = NULL;
    int rc = open_single(o, &be, &p);
    if (rc != WF_EXIT_OK) return rc;
    rc = WF_EXIT_FAIL;
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
    if (o->latents_in && gen_read_latents(o->latents_in, g->shape, &lat0, &err)) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto done;
    }
    g->lat0 = lat0;
    g->writer = true;
    g->replicas = 1;
    g->replica = 0;
    if (!o->json)
        fprintf(stderr, PROG ": loaded %s in %.1f s; %lldx%lld, %lld frames, latents [%lld, %lld, "
                "%lld, %lld], %lld steps\n",
                o->model, gen_now() - t0, (long long)base->width, (long long)base->height,
                (long long)base->frames, (long long)g->shape[0], (long long)g->shape[1],
                (long long)g->shape[2], (long long)g->shape[3], (long long)base->steps);
    /* one video at a time: its outputs are set up when it starts and released once written */
    for (int64_t k = 0; k < g->njobs; k++) {
        if (gen_job_begin(g, k, &err) || (st = pl_generate(p, &g->req, &err))) {
            if (g->njobs > 1) fprintf(stderr, PROG ": video %lld: %s\n", (long long)k, err.msg);
            else fprintf(stderr, PROG ": %s\n", err.msg);
            if (st != WF_ESTOPPED && gen_farm_hooks && gen_farm_hooks->failed)
                gen_farm_hooks->failed(gen_farm_hooks->ctx, err.msg);
            if (st == WF_ESTOPPED) {
                fprintf(stderr, PROG ": run the same command with --resume to continue\n");
                rc = WF_EXIT_STOPPED;
            }
            goto done;
        }
        if ((rc = gen_finish_outputs(g, k)) != WF_EXIT_OK) goto done;
        gen_job_end(g);
        rc = WF_EXIT_FAIL;
    }
    gen_report_done(g, t0);
    wk_mem_note(be);
    if (be->mem_peak && !o->json)
        fprintf(stderr, PROG ": peak %s memory %.1f MiB (%s), workspace %.1f MiB\n", be->name,
                (double)be->mem_peak_data / (1 << 20),
                be->device == WK_DEV_CPU ? "activations and latents; the weights are mapped from "
                                           "the checkpoint"
                                         : "weights, activations, latents, caches",
                (double)be->ws_bytes / (1 << 20));
    rc = WF_EXIT_OK;
done:
    gen_job_end(g);
    g->lat0 = NULL;
    free(lat0);
    if (p != g_kept.p) { /* a kept pipeline stays for the next job */
        pl_close(&p);
        wk_backend_destroy(&be);
    } else if (rc != WF_EXIT_OK && rc != WF_EXIT_STOPPED && rc != WF_EXIT_USAGE) {
        gen_release_kept(); /* a failed job's device may be in any state: the next starts anew */
    }
    return rc;
}




/* --ulysses N or N,M into o->layout. */
static int parse_ulysses(const char *v, gen_opts *o) {
    int64_t u0 = 0, u1 = 0;
    const char *comma = strchr(v, ',');
    char b0[32];
    size_t n0 = comma ? (size_t)(comma - v) : strlen(v);
    bool ok = n0 > 0 && n0 < sizeof b0;
    if (ok) {
        memcpy(b0, v, n0);
        b0[n0] = 0;
        ok = cmd_parse_i64(b0, &u0) && u0 >= 1 && u0 <= 65536 &&
             (!comma || (cmd_parse_i64(comma + 1, &u1) && u1 >= 1 && u1 <= 65536));
    }
    if (!ok) return usage_err("--ulysses '%s' must be N or N,M (degrees >= 1)%s", v, "");
    o->layout.ulysses[0] = (int)u0;
    o->layout.ulysses[1] = (int)u1;
    return WF_EXIT_OK;
}

/* A number option in [lo, hi]; WF_EXIT_OK or WF_EXIT_USAGE after a message naming the range. */
static int parse_range(const char *a, const char *v, double lo, double hi, const char *note,
                       double *out) {
    double x;
    if (!cmd_parse_f64(v, &x) || !(x >= lo && x <= hi))
        return usage_err("%s '%s' must be a number in [%g, %g]%s", a, v, lo, hi, note);
    *out = x;
    return WF_EXIT_OK;
}

/* --threads N: 0 (the default) up to 4x the online cores; far more only thrashes (and OpenBLAS's
 * allocator hangs with thousands of threads). */
static int parse_threads(const char *v, gen_opts *o) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    int64_t t;
    if (!cmd_parse_i64(v, &t) || t < 0)
        return usage_err("--threads '%s' must be a whole number >= 0 (0: the default)%s", v, "");
    if (t > 4 * (int64_t)cores)
        return usage_err("--threads %lld is more than 4x the %ld online cores of this machine; "
                         "use at most %ld",
                         (long long)t, cores, 4 * cores);
    o->threads = t;
    return WF_EXIT_OK;
}

/* --prompt-file PATH: read (under a launcher by world rank 0, then broadcast, since only rank 0
 * has the launcher's stdin) and split into prompts. WF_EXIT_OK or WF_EXIT_FAIL after a message. */
static int parse_prompt_file(const char *path, gen_opts *o) {
    wf_err err;
    char *b = NULL;
    size_t n = 0;
    wf_status st = WF_OK;
    if (!g_quiet) st = gen_slurp(path, &b, &n, &err);
    if (g_mpi) {
        int64_t hdr[2] = {(int64_t)st, (int64_t)n};
        MPI_Bcast(hdr, 2, MPI_INT64_T, 0, MPI_COMM_WORLD);
        st = (wf_status)hdr[0];
        n = (size_t)hdr[1];
        if (!st && g_quiet && !(b = malloc(n + 1))) {
            fprintf(stderr, PROG ": --prompt-file %s: out of memory\n", path);
            MPI_Abort(MPI_COMM_WORLD, WF_EXIT_FAIL);
        }
        if (!st) {
            MPI_Bcast(b, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD); /* n <= GEN_PROMPT_FILE_MAX */
            b[n] = 0;
        }
    }
    if (!st) st = gen_add_prompt_lines(o, path, b, n, &err);
    if (st) {
        if (!g_quiet) fprintf(stderr, PROG ": %s\n", err.msg);
        return WF_EXIT_FAIL;
    }
    return WF_EXIT_OK;
}

/* One option with a value, into the request r or the options o; WF_EXIT_OK or WF_EXIT_USAGE
 * after the message. */
static int parse_valued(const char *a, const char *v, pl_request *r, gen_opts *o) {
    bool ok = true;
    if (!strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--prompt")) {
        wf_err err;
        if (gen_add_prompt(o, v, &err)) {
            if (!g_quiet) fprintf(stderr, PROG ": %s\n", err.msg);
            return WF_EXIT_FAIL;
        }
    } else if (!strcmp(a, "--prompt-file")) return parse_prompt_file(v, o);
    else if (!strcmp(a, "--negative-prompt"))
        r->negative_prompt = !strcmp(v, "wan") ? PL_WAN_NEGATIVE_PROMPT_ZH : v;
    else if (!strcmp(a, "--size")) {
        char why[160];
        if (!cmd_parse_size(v, &r->width, &r->height, why, sizeof why))
            return usage_err("--size '%s' %s", v, why);
    } else if (!strcmp(a, "--frames")) ok = cmd_parse_i64(v, &r->frames);
    else if (!strcmp(a, "--steps")) ok = cmd_parse_i64(v, &r->steps) && r->steps >= 1;
    else if (!strcmp(a, "--guidance") || !strcmp(a, "--guidance-2"))
        return parse_range(a, v, 0, PL_GUIDANCE_MAX, " (a CFG scale; <= 1 turns CFG off)",
                           a[10] ? &r->guidance_2 : &r->guidance);
    else if (!strcmp(a, "--shift"))
        return parse_range(a, v, PL_SHIFT_MIN, PL_SHIFT_MAX, " (Wan uses 1 to 12)", &r->shift);
    else if (!strcmp(a, "--boundary"))
        return parse_range(a, v, 0, 1, " (a fraction of the training timesteps)", &r->boundary);
    else if (!strcmp(a, "--sampler")) {
        if (!strcmp(v, "unipc")) r->sampler = SMP_UNIPC;
        else if (!strcmp(v, "euler")) r->sampler = SMP_EULER;
        else return usage_err("--sampler '%s': use unipc or euler%s", v, "");
    } else if (!strcmp(a, "--seed")) ok = o->have_seed = cmd_parse_u64(v, &r->seed);
    else if (!strcmp(a, "--latents")) o->latents_in = v;
    else if (!strcmp(a, "--max-sequence-length")) {
        if (!cmd_parse_i64(v, &r->max_sequence_length) || r->max_sequence_length < 1 ||
            r->max_sequence_length > PL_MAX_SEQUENCE_LENGTH)
            return usage_err("--max-sequence-length '%s' must be in 1..%d (text tokens; the Wan "
                             "pipeline uses 512)", v, PL_MAX_SEQUENCE_LENGTH);
    }
    else if (!strcmp(a, "--out")) o->out = v;
    else if (!strcmp(a, "--fps")) ok = cmd_parse_i64(v, &o->fps) && o->fps >= 1 && o->fps <= 240;
    else if (!strcmp(a, "--crf")) ok = cmd_parse_i64(v, &o->crf) && o->crf >= 1 && o->crf <= 51;
    else if (!strcmp(a, "--frames-dir")) o->frames_dir = v;
    else if (!strcmp(a, "--save-latents")) o->save_latents = v;
    else if (!strcmp(a, "--contact-sheet")) o->sheet = v;
    else if (!strcmp(a, "--threads")) return parse_threads(v, o);
    else if (!strcmp(a, "--count"))
        ok = cmd_parse_i64(v, &o->count) && o->count >= 1 && o->count <= 100000;
    else if (!strcmp(a, "--placement")) {
        if (!strcmp(v, "shared")) o->placement = LY_SHARED;
        else if (!strcmp(v, "split")) o->placement = LY_SPLIT;
        else return usage_err("--placement '%s': use shared or split%s", v, "");
    } else if (!strcmp(a, "--ulysses")) return parse_ulysses(v, o);
    else if (!strcmp(a, "--vae-ranks")) {
        int64_t vr = 0;
        ok = cmd_parse_i64(v, &vr) && vr >= 1 && vr <= 65536;
        o->layout.vae_ranks = (int)vr;
    } else if (!strcmp(a, "--mem-gb")) ok = cmd_parse_f64(v, &o->mem_gb) && o->mem_gb > 0;
    else if (!strcmp(a, "--replicas")) ok = cmd_parse_int(v, 1, 65536, &o->replicas);
    else if (!strcmp(a, "--cost")) o->cost = v;
    else if (!strcmp(a, "--device")) return gen_parse_device(v, o);
    else if (!strcmp(a, "--precision")) return gen_parse_precision(v, o);
    else if (!strcmp(a, "--checkpoint-dir")) o->ckpt_dir = v;
    else if (!strcmp(a, "--checkpoint-every"))
        ok = cmd_parse_i64(v, &o->ckpt_every) && o->ckpt_every >= 1 && o->ckpt_every <= 1000000;
    else if (!strcmp(a, "--watchdog"))
        return parse_range(a, v, 0, GEN_WATCHDOG_MAX, " (seconds; 0 turns the watchdog off)",
                           &o->watchdog);
    else return usage_err("unknown option '%s'%s", a, "");
    if (!ok) return usage_err("%s: bad value '%s'", a, v);
    return WF_EXIT_OK;
}

/* The command line into r and o; WF_EXIT_OK (*help: --help was asked) or WF_EXIT_USAGE. */
static int parse_options(int argc, char **argv, pl_request *r, gen_opts *o, bool *help_asked) {
    pl_request_default(r);
    memset(o, 0, sizeof *o);
    o->fps = 16, o->crf = 18, o->count = 1;
    o->watchdog = GEN_WATCHDOG_DEFAULT;
    o->device = GEN_DEV_AUTO;
    o->precision = -1;
    o->placement = -1;
    o->cfg_par = -1;
    *help_asked = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            *help_asked = true;
            return WF_EXIT_OK;
        }
        if (!strcmp(a, "--json-progress")) {
            o->json = true;
            continue;
        }
        if (!strcmp(a, "--resume")) {
            o->resume = true;
            continue;
        }
        if (!strcmp(a, "--cfg-parallel") || !strcmp(a, "--no-cfg-parallel")) {
            o->cfg_par = a[2] != 'n';
            continue;
        }
        if (strncmp(a, "--", 2)) return usage_err("unexpected argument '%s'%s", a, "");
        if (i + 1 == argc) return usage_err("%s needs a value%s", a, "");
        int rc = parse_valued(a, argv[++i], r, o);
        if (rc != WF_EXIT_OK) return rc;
    }
    return WF_EXIT_OK;
}

/* What the options ask for as a whole, and the output folders, before anything is loaded. */
static int check_options(const gen_opts *o) {
    if (!o->model) return usage_err("missing --model DIR%s%s", "", "");
    if (!o->nprompts) return usage_err("missing --prompt TEXT (or --prompt-file FILE)%s%s", "", "");
    if (!o->out && !o->frames_dir && !o->save_latents && !o->sheet)
        return usage_err("nothing would be written: give --out FILE.mp4, --frames-dir DIR, "
                         "--save-latents FILE.h5 or --contact-sheet FILE.png%s%s", "", "");
    if (o->latents_in && o->have_seed)
        return usage_err("--seed and --latents exclude each other%s%s", "", "");
    if ((o->resume || o->ckpt_every) && !o->ckpt_dir)
        return usage_err("%s needs --checkpoint-dir DIR%s", o->resume ? "--resume" : "--checkpoint-every", "");
    if (o->resume && !o->have_seed && !o->latents_in)
        return usage_err("--resume needs the job's --seed (or --latents): a checkpoint belongs to "
                         "one seed%s%s", "", "");
    fio_cleanup_install(); /* a signal from here on leaves no temporary file behind */
    if (o->ckpt_dir) {
        if (check_ckpt_dir(o->ckpt_dir)) return WF_EXIT_FAIL;
        gen_ckpt_signals(); /* SIGTERM, SIGUSR1: checkpoint and stop between two steps */
    }
    if (check_out_dir("--out", o->out) || check_out_dir("--save-latents", o->save_latents) ||
        check_out_dir("--contact-sheet", o->sheet))
        return WF_EXIT_FAIL;
    /* every output name, and no two on one file, before anything is created (outputs.h) */
    int64_t njobs = (int64_t)o->nprompts * o->count;
    wf_err err;
    wf_status st = gen_outputs_check_names(o, njobs, &err);
    if (st) {
        if (!g_quiet) fprintf(stderr, PROG ": %s\n", err.msg);
        return st == WF_EINVAL ? WF_EXIT_USAGE : WF_EXIT_FAIL;
    }
    if (o->frames_dir) {
        struct stat sb;
        if (stat(o->frames_dir, &sb) != 0 && mkdir(o->frames_dir, 0777) != 0 && errno != EEXIST) {
            if (!g_quiet)
                fprintf(stderr, PROG ": --frames-dir %s: cannot create: %s\n", o->frames_dir,
                        strerror(errno));
            return WF_EXIT_FAIL;
        }
        if (stat(o->frames_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            if (!g_quiet) fprintf(stderr, PROG ": --frames-dir %s is not a folder\n", o->frames_dir);
            return WF_EXIT_FAIL;
        }
    }
    /* each output folder writable, with the longest temporary name the run will use */
    if ((st = gen_outputs_probe(o, njobs, &err))) {
        if (!g_quiet) fprintf(stderr, PROG ": %s\n", err.msg);
        return WF_EXIT_FAIL;
    }
    return WF_EXIT_OK;
}

int gen_main(int argc, char **argv, bool mpi, int rank, int size) {
    g_mpi = mpi;
    g_quiet = mpi && rank != 0;
    pl_request r;
    gen_opts o;
    bool help_asked;
    int rc = parse_options(argc, argv, &r, &o, &help_asked);
    if (rc == WF_EXIT_OK && help_asked && !g_quiet) help();
    if (rc == WF_EXIT_OK && !help_asked) rc = check_options(&o);
    if (rc != WF_EXIT_OK || help_asked) {
        gen_free_opts(&o);
        return rc;
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
    g.base = &r;
    g.njobs = o.nprompts * o.count;
    double t0 = gen_now();
    rc = g.size > 1 ? gen_run_dist(&g, &r, t0) : run_single(&g, &r, t0);
    gen_free_run(&g);
    gen_free_opts(&o);
    return rc;
}

int cmd_generate(int argc, char **argv) {
#ifdef __GLIBC__
    /* Memory stays flat over a queue: every large per-video buffer (arenas, latents, frames) is
     * mapped on its own and given back whole when the video is done. A fixed threshold turns off
     * glibc's moving one, which after the first large free would put those buffers on the heap,
     * where the small long-lived allocations of the libraries (HDF5, FFmpeg) fragment it so that
     * each video's buffers no longer fit the last one's hole (+1 MB per 128x128x17 video seen). */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
    bool mpi = gen_under_launcher();
    int rank = 0, size = 1;
    if (mpi) {
        int provided = 0;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            fprintf(stderr, PROG ": MPI_Init failed\n");
            return WF_EXIT_FAIL;
        }
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        if (gen_srun_tasks() > 1 && size != gen_srun_tasks()) {
            fprintf(stderr,
                    PROG ": srun started %ld tasks but MPI sees a world of %d: srun and MPI are "
                    "not connected; use srun --mpi=pmix (or the plugin `srun --mpi=list` shows "
                    "for this MPI), or mpirun\n",
                    gen_srun_tasks(), size);
            MPI_Finalize();
            return WF_EXIT_USAGE;
        }
    }
    int rc = gen_main(argc, argv, mpi, rank, size);
    if (mpi) MPI_Finalize();
    return rc;
}
