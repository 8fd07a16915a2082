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
    if ((o->latents_in && gen_read_latents(o->latents_in, g->shape, &lat0, &err)) ||
        gen_setup_jobs(g, base, lat0, true, 1, 0, &err)) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto done;
    }
    if (!o->json)
        fprintf(stderr, PROG ": loaded %s in %.1f s; %lldx%lld, %lld frames, latents [%lld, %lld, "
                "%lld, %lld], %lld steps\n",
                o->model, gen_now() - t0, (long long)base->width, (long long)base->height,
                (long long)base->frames, (long long)g->shape[0], (long long)g->shape[1],
                (long long)g->shape[2], (long long)g->shape[3], (long long)base->steps);
    for (int64_t k = 0; k < g->njobs; k++) {
        if (pl_generate(p, &g->reqs[k], &err)) {
            fprintf(stderr, PROG ": %s%s\n", g->njobs > 1 ? "" : "", err.msg);
            goto done;
        }
        if ((rc = gen_finish_outputs(g, k)) != WF_EXIT_OK) goto done;
        rc = WF_EXIT_FAIL;
    }
    gen_report_done(g, t0);
    rc = WF_EXIT_OK;
done:
    free(lat0);
    pl_close(&p);
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

/* One option with a value, into the request r or the options o; WF_EXIT_OK or WF_EXIT_USAGE
 * after the message. */
static int parse_valued(const char *a, const char *v, pl_request *r, gen_opts *o) {
    bool ok = true;
    if (!strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--prompt")) {
        if (o->nprompts == MAX_PROMPTS) return usage_err("more than %s prompts%s", "256", "");
        o->prompts[o->nprompts++] = v;
    } else if (!strcmp(a, "--negative-prompt"))
        r->negative_prompt = !strcmp(v, "wan") ? PL_WAN_NEGATIVE_PROMPT_ZH : v;
    else if (!strcmp(a, "--size")) {
        if (!cmd_parse_size(v, &r->width, &r->height))
            return usage_err("--size '%s' must be WIDTHxHEIGHT, e.g. 832x480", v);
    } else if (!strcmp(a, "--frames")) ok = cmd_parse_i64(v, &r->frames);
    else if (!strcmp(a, "--steps")) ok = cmd_parse_i64(v, &r->steps) && r->steps >= 1;
    else if (!strcmp(a, "--guidance")) ok = cmd_parse_f64(v, &r->guidance);
    else if (!strcmp(a, "--guidance-2")) ok = cmd_parse_f64(v, &r->guidance_2);
    else if (!strcmp(a, "--shift")) ok = cmd_parse_f64(v, &r->shift) && r->shift > 0;
    else if (!strcmp(a, "--boundary"))
        ok = cmd_parse_f64(v, &r->boundary) && r->boundary >= 0 && r->boundary <= 1;
    else if (!strcmp(a, "--sampler")) {
        if (!strcmp(v, "unipc")) r->sampler = SMP_UNIPC;
        else if (!strcmp(v, "euler")) r->sampler = SMP_EULER;
        else return usage_err("--sampler '%s': use unipc or euler%s", v, "");
    } else if (!strcmp(a, "--seed")) ok = o->have_seed = cmd_parse_u64(v, &r->seed);
    else if (!strcmp(a, "--latents")) o->latents_in = v;
    else if (!strcmp(a, "--max-sequence-length"))
        ok = cmd_parse_i64(v, &r->max_sequence_length) && r->max_sequence_length >= 1;
    else if (!strcmp(a, "--out")) o->out = v;
    else if (!strcmp(a, "--fps")) ok = cmd_parse_i64(v, &o->fps) && o->fps >= 1 && o->fps <= 240;
    else if (!strcmp(a, "--crf")) ok = cmd_parse_i64(v, &o->crf) && o->crf >= 1 && o->crf <= 51;
    else if (!strcmp(a, "--frames-dir")) o->frames_dir = v;
    else if (!strcmp(a, "--save-latents")) o->save_latents = v;
    else if (!strcmp(a, "--contact-sheet")) o->sheet = v;
    else if (!strcmp(a, "--threads"))
        ok = cmd_parse_i64(v, &o->threads) && o->threads >= 0 && o->threads < 100000;
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
    else return usage_err("unknown option '%s'%s", a, "");
    if (!ok) return usage_err("%s: bad value '%s'", a, v);
    return WF_EXIT_OK;
}

/* The command line into r and o; WF_EXIT_OK (*help: --help was asked) or WF_EXIT_USAGE. */
static int parse_options(int argc, char **argv, pl_request *r, gen_opts *o, bool *help_asked) {
    pl_request_default(r);
    memset(o, 0, sizeof *o);
    o->fps = 16, o->crf = 18, o->count = 1;
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
    if (!o->nprompts) return usage_err("missing --prompt TEXT%s%s", "", "");
    if (!o->out && !o->frames_dir && !o->save_latents && !o->sheet)
        return usage_err("nothing would be written: give --out FILE.mp4, --frames-dir DIR, "
                         "--save-latents FILE.h5 or --contact-sheet FILE.png%s%s", "", "");
    if (o->latents_in && o->have_seed)
        return usage_err("--seed and --latents exclude each other%s%s", "", "");
    if (check_out_dir("--out", o->out) || check_out_dir("--save-latents", o->save_latents) ||
        check_out_dir("--contact-sheet", o->sheet))
        return WF_EXIT_FAIL;
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
    return WF_EXIT_OK;
}

static int generate_main(int argc, char **argv, bool mpi, int rank, int size) {
    pl_request r;
    gen_opts o;
    bool help_asked;
    int rc = parse_options(argc, argv, &r, &o, &help_asked);
    if (rc != WF_EXIT_OK) return rc;
    if (help_asked) {
        if (!g_quiet) help();
        return WF_EXIT_OK;
    }
    if ((rc = check_options(&o)) != WF_EXIT_OK) return rc;

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
    double t0 = gen_now();
    rc = g.size > 1 ? gen_run_dist(&g, &r, t0) : run_single(&g, &r, t0);
    gen_free_run(&g);
    return rc;
}

int cmd_generate(int argc, char **argv) {
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
        g_quiet = rank != 0;
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
    int rc = generate_main(argc, argv, mpi, rank, size);
    if (mpi) MPI_Finalize();
    return rc;
}
