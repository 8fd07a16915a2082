/* cmd_worker.c: `wanfarm worker --coordinator EP ...`: one worker world of the farm (one mpirun
 * or srun, or a single process), serving the jobs wanfarm-coord assigns to it.
 *
 * World rank 0 holds the link to the coordinator (farm/link.h: hello, heartbeats, assignments,
 * cancels); each assignment, and the shutdown, reaches the other ranks by an MPI broadcast that
 * they wait for without spinning (MPI_Ibcast polled every few milliseconds, so that idle ranks
 * leave the cores to the busy ones). Every rank then runs the job (farm_job.h: the job as
 * `wanfarm generate` would run it, with its checkpoint, resumed when one is usable). SIGTERM and
 * SIGUSR1 stop the job in progress after a checkpoint, report it to the coordinator (which
 * requeues it at once) and end the world with exit code 3; when idle they end it with 0.
 * A Shutdown from the coordinator ends it with 0.
 * Exit codes: 0 shut down, 1 the world could not start (the model, the roots, no coordinator),
 * 2 bad command line, 3 stopped by a signal.
 */
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "checkpoint.h"
#include "cmds.h"
#include "farm_job.h"
#include "fileio.h"
#include "gen.h"
#include "link.h"
#include "pl_plan.h"

#define WPROG "wanfarm worker"

static void help(void) {
    printf("usage: wanfarm worker --coordinator EP --model DIR --output-root DIR "
           "--checkpoint-root DIR [options]\n\n"
           "Serves the jobs of a farm's coordinator (wanfarm-coord) as one worker world: start it\n"
           "alone, or under mpirun/srun for a world of several ranks (rank 0 talks to the\n"
           "coordinator). Each job runs as `wanfarm generate` runs the same spec.\n\n"
           "  --coordinator EP       the coordinator's worker endpoint (its --workers, e.g.\n"
           "                         tcp://head:5557)\n"
           "  --model DIR            the Diffusers folder this world serves\n"
           "  --model-name NAME      the name the farm knows it by (default: DIR's last component;\n"
           "                         one of wanfarm-coord's --model names)\n"
           "  --output-root DIR      where the videos go (each job's output name under it; a\n"
           "                         shared file system when worlds are on several nodes)\n"
           "  --checkpoint-root DIR  where the jobs' checkpoints go (shared by every world that\n"
           "                         may resume another's job)\n"
           "  --world-id ID          this world's name (default HOST-PID)\n"
           "  --stage all|high|low   all (default) runs every step; high loads only the\n"
           "                         high-noise expert and hands each job on at the switch (its\n"
           "                         checkpoint), low loads only the low-noise one and finishes\n"
           "                         handed-on jobs: the two experts pipelined across worlds of\n"
           "                         any size\n"
           "  --connect-timeout S    give up when no coordinator answers within S s (default 60)\n"
           "  --threads N, --device D, --precision P, --cost FILE, --mem-gb G: as for generate\n"
           "  --watchdog S           a rank that waits in one collective, or a job that reports\n"
           "                         no step, for more than max(S, 10 x the longest step) ends the\n"
           "                         world (default 600); the coordinator requeues its job\n"
           "  --curve-server-key FILE --curve-key FILE  CurveZMQ: the coordinator's public key,\n"
           "                         this world's secret key (its public key must be in the\n"
           "                         coordinator's --curve-clients folder)\n"
           "exit codes: 0 shut down, 1 could not start, 2 bad command line, 3 stopped by a signal\n");
}

typedef struct wopts {
    const char *coordinator, *model, *model_name, *output_root, *checkpoint_root, *world_id;
    const char *threads, *device, *precision, *watchdog, *cost, *mem_gb;
    const char *server_key, *client_key;
    double connect_timeout, watchdog_s;
    int stage; /* Wanfarm__Stage */
} wopts;

static int parse(int argc, char **argv, wopts *o, bool quiet, bool *help_asked) {
    memset(o, 0, sizeof *o);
    o->connect_timeout = 60;
    o->watchdog_s = GEN_WATCHDOG_DEFAULT;
    o->stage = WANFARM__STAGE__STAGE_ALL;
    *help_asked = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            *help_asked = true;
            return WF_EXIT_OK;
        }
        if (i + 1 == argc) return quiet ? WF_EXIT_USAGE : cmd_usage_err(WPROG, "%s needs a value", a);
        const char *v = argv[++i];
        double x = 0;
        if (!strcmp(a, "--coordinator")) o->coordinator = v;
        else if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--model-name")) o->model_name = v;
        else if (!strcmp(a, "--output-root")) o->output_root = v;
        else if (!strcmp(a, "--checkpoint-root")) o->checkpoint_root = v;
        else if (!strcmp(a, "--world-id")) o->world_id = v;
        else if (!strcmp(a, "--threads")) o->threads = v;
        else if (!strcmp(a, "--device")) o->device = v;
        else if (!strcmp(a, "--precision")) o->precision = v;
        else if (!strcmp(a, "--cost")) o->cost = v;
        else if (!strcmp(a, "--mem-gb")) o->mem_gb = v;
        else if (!strcmp(a, "--curve-server-key")) o->server_key = v;
        else if (!strcmp(a, "--curve-key")) o->client_key = v;
        else if (!strcmp(a, "--stage")) {
            if (!strcmp(v, "all")) o->stage = WANFARM__STAGE__STAGE_ALL;
            else if (!strcmp(v, "high")) o->stage = WANFARM__STAGE__STAGE_HIGH;
            else if (!strcmp(v, "low")) o->stage = WANFARM__STAGE__STAGE_LOW;
            else return quiet ? WF_EXIT_USAGE
                              : cmd_usage_err(WPROG, "--stage '%s': use all, high or low", v);
        }
        else if (!strcmp(a, "--connect-timeout") || !strcmp(a, "--watchdog")) {
            const bool wd = a[2] == 'w';
            if (!cmd_parse_f64(v, &x) || !(x >= (wd ? 0 : 0.1) && x <= GEN_WATCHDOG_MAX))
                return quiet ? WF_EXIT_USAGE
                             : cmd_usage_err(WPROG, "%s '%s' must be seconds in [%g, %g]", a, v,
                                             wd ? 0.0 : 0.1, GEN_WATCHDOG_MAX);
            if (wd) o->watchdog = v, o->watchdog_s = x;
            else o->connect_timeout = x;
        } else {
            return quiet ? WF_EXIT_USAGE : cmd_usage_err(WPROG, "unknown option '%s'", a);
        }
    }
    const char *miss = !o->coordinator ? "--coordinator EP" : !o->model ? "--model DIR"
                       : !o->output_root ? "--output-root DIR" : !o->checkpoint_root
                           ? "--checkpoint-root DIR" : NULL;
    if (miss) return quiet ? WF_EXIT_USAGE : cmd_usage_err(WPROG, "missing %s", miss);
    if (o->world_id && (!*o->world_id || strlen(o->world_id) > 63))
        return quiet ? WF_EXIT_USAGE : cmd_usage_err(WPROG, "--world-id: 1 to 63 bytes");
    if (o->model_name && (!*o->model_name || strlen(o->model_name) > 64))
        return quiet ? WF_EXIT_USAGE : cmd_usage_err(WPROG, "--model-name: 1 to 64 bytes");
    return WF_EXIT_OK;
}

/* A folder this process can write, made when missing: 0, or 1 after saying why. */
static int writable_dir(const char *opt, const char *dir, bool quiet) {
    struct stat sb;
    if (stat(dir, &sb) != 0 && mkdir(dir, 0777) != 0 && errno != EEXIST) {
        if (!quiet) fprintf(stderr, WPROG ": %s %s: cannot create: %s\n", opt, dir, strerror(errno));
        return 1;
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(dir, W_OK | X_OK) != 0) {
        if (!quiet) fprintf(stderr, WPROG ": %s %s is not a folder this process can write\n", opt, dir);
        return 1;
    }
    return 0;
}

/* ---- the world's command channel: rank 0 -> every rank ---- */

enum { CMD_JOB = 1, CMD_SHUTDOWN = 2 };

/* A broadcast from rank 0 that the others wait for without spinning a core. */
static void idle_bcast(void *buf, int n, MPI_Datatype t) {
    MPI_Request rq;
    MPI_Ibcast(buf, n, t, 0, MPI_COMM_WORLD, &rq);
    int done = 0;
    struct timespec ts = {0, 2 * 1000 * 1000};
    for (;;) {
        MPI_Test(&rq, &done, MPI_STATUS_IGNORE);
        if (done) break;
        nanosleep(&ts, NULL);
    }
}

static void abort_world(const char *why) {
    (void)why;
    MPI_Abort(MPI_COMM_WORLD, WF_EXIT_FAIL);
}

/* The planner's description of the model (rank 0), so that the coordinator plans this world's
 * layouts (a job's size changes the tokens, not the model): false, said, when it cannot be made
 * (the world then plans its own). */
static bool describe_model(const wopts *o, const fj_world *w, int size, Wanfarm__PlanModel *pm,
                           uint64_t patch[3]) {
    pn_inputs in;
    pn_request pr;
    wf_err err;
    pn_inputs_default(&in);
    pn_request_default(&pr);
    pr.width = 16, pr.height = 16, pr.frames = 1, pr.steps = 2; /* any size fits: the model is asked */
    wanfarm__plan_model__init(pm);
    if (pl_plan_inputs(&in, w->shell->cfg, &pr, &err)) {
        fprintf(stderr, WPROG ": the model's description for the planner: %s (the world plans "
                "its own layouts)\n", err.msg);
        return false;
    }
    const pn_model *m = &in.model;
    pm->heads = (uint64_t)m->heads, pm->head_dim = (uint64_t)m->head_dim;
    pm->dim = (uint64_t)m->dim, pm->ffn_dim = (uint64_t)m->ffn_dim;
    pm->layers = (uint64_t)m->layers, pm->text_dim = (uint64_t)m->text_dim;
    pm->freq_dim = (uint64_t)m->freq_dim, pm->in_channels = (uint64_t)m->in_channels;
    pm->out_channels = (uint64_t)m->out_channels;
    for (int k = 0; k < 3; k++) patch[k] = (uint64_t)m->patch[k];
    pm->n_patch = 3, pm->patch = patch;
    pm->has_expert_2 = m->has_expert_2, pm->expert_params = m->expert_params;
    pm->t5_dim = (uint64_t)m->t5_dim, pm->t5_ff = (uint64_t)m->t5_ff;
    pm->t5_layers = (uint64_t)m->t5_layers, pm->t5_inner = (uint64_t)m->t5_inner;
    pm->t5_heads = (uint64_t)m->t5_heads, pm->t5_vocab = (uint64_t)m->t5_vocab;
    pm->t5_params = m->t5_params;
    pm->vae_s = (uint64_t)m->vae_s, pm->vae_st = (uint64_t)m->vae_st;
    pm->vae_patch = (uint64_t)m->vae_patch, pm->vae_params = m->vae_params;
    pm->vae_flop_per_pixel = m->vae_flop_per_pixel, pm->vae_mem_scale = m->vae_mem_scale;
    pm->sampler_order = (uint32_t)m->sampler_order;
    /* how each rank's tokens are padded: 1 on a GPU, the CPU backend's quantum else */
    const bool gpu = o->device && !strncmp(o->device, "cuda", 4);
    pm->row_quantum = gpu ? 1 : (uint64_t)in.row_quantum;
    if (!gpu) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        double t = o->threads ? atof(o->threads) : (double)(cores > 0 ? cores : 1) / size;
        pm->has_cpu_threads = 1, pm->cpu_threads = t >= 1 ? t : 1;
    }
    return true;
}

/* Rank 0: the link, after the model's identity (the Hello carries it). */
static int open_link(const wopts *o, fj_world *w, int size, fl_link **link) {
    uint64_t mid = 0;
    wf_err err;
    if (ck_model_id(o->model, &mid, &err) ||
        pl_open_parts(&w->shell, o->model, NULL, 1, 0, &err)) {
        fprintf(stderr, WPROG ": --model %s: %s\n", o->model, err.msg);
        return 1;
    }
    char model_id[32], world[64], layout[48];
    snprintf(model_id, sizeof model_id, "%016llx", (unsigned long long)mid);
    if (o->world_id) snprintf(world, sizeof world, "%s", o->world_id);
    else snprintf(world, sizeof world, "%.40s-%ld", w->host, (long)getpid());
    snprintf(layout, sizeof layout, "%d rank%s, shared", size, size == 1 ? "" : "s");
    const char *base = strrchr(o->model, '/');
    char name[72];
    snprintf(name, sizeof name, "%s", o->model_name ? o->model_name : base && base[1] ? base + 1 : o->model);
    if (!o->model_name && base && !base[1]) { /* "dir/": the component before the slash */
        const char *p = base;
        while (p > o->model && p[-1] != '/') p--;
        snprintf(name, sizeof name, "%.*s", (int)(base - p), p);
    }
    Wanfarm__Device dev = WANFARM__DEVICE__INIT;
    dev.name = (char *)(o->device ? o->device : "auto");
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psz > 0) dev.has_memory = 1, dev.memory = (uint64_t)pages * (uint64_t)psz;
    Wanfarm__Device *devs[1] = {&dev};
    Wanfarm__PlanModel pm;
    uint64_t patch[3];
    Wanfarm__Hello h = WANFARM__HELLO__INIT;
    if (describe_model(o, w, size, &pm, patch)) h.plan_model = &pm;
    h.ranks = (uint32_t)size, h.model_id = model_id, h.layout = layout;
    h.n_devices = 1, h.devices = devs;
    h.host = w->host, h.model = name;
    h.has_pid = 1, h.pid = (int32_t)getpid();
    h.has_stage = 1, h.stage = (Wanfarm__Stage)o->stage;
    fl_config c = {o->coordinator, world, &h, o->server_key, o->client_key, o->connect_timeout,
                   o->watchdog_s, GEN_WATCHDOG_FACTOR, abort_world};
    if (fl_open(link, &c, &err)) {
        fprintf(stderr, WPROG ": %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, WPROG ": world %s (%d rank%s, model %s) serving %s\n", world, size,
            size == 1 ? "" : "s", name, o->coordinator);
    return 0;
}

/* Rank 0: the next command for the world (a packed Assignment in *buf, or a shutdown). */
static int next_command(fl_link *link, uint8_t **buf, int *n) {
    Wanfarm__CoordMessage *env = NULL;
    Wanfarm__Assignment *a = NULL;
    char why[256] = "";
    *buf = NULL;
    *n = 0;
    fl_next(link, gen_ckpt_stop_asked, &env, &a, why, sizeof why);
    if (!env) {
        fprintf(stderr, WPROG ": stopped by a signal while idle\n");
        return CMD_SHUTDOWN;
    }
    int kind = CMD_SHUTDOWN;
    if (a) {
        const size_t sz = wanfarm__coord_message__get_packed_size(env);
        if ((*buf = malloc(sz ? sz : 1))) {
            wanfarm__coord_message__pack(env, *buf);
            *n = (int)sz;
            kind = CMD_JOB;
        }
    } else {
        fprintf(stderr, WPROG ": the coordinator shuts this world down: %s\n", why);
    }
    wp_free(&env->base);
    return kind;
}

/* Every rank: commands until a shutdown; the exit code. */
static int serve(fj_world *w) {
    for (;;) {
        uint8_t *buf = NULL;
        int hdr[2] = {CMD_SHUTDOWN, 0};
        if (w->rank == 0) hdr[0] = next_command(w->link, &buf, &hdr[1]);
        idle_bcast(hdr, 2, MPI_INT);
        if (hdr[0] != CMD_JOB) {
            free(buf);
            return gen_ckpt_stop_asked() ? WF_EXIT_STOPPED : WF_EXIT_OK;
        }
        if (w->rank != 0 && !(buf = malloc((size_t)hdr[1] + 1))) MPI_Abort(MPI_COMM_WORLD, 1);
        MPI_Bcast(buf, hdr[1], MPI_BYTE, 0, MPI_COMM_WORLD);
        ProtobufCMessage *m = NULL;
        wf_err err;
        if (wp_decode(WP_COORD_MESSAGE, buf, (size_t)hdr[1], &m, &err)) { /* rank 0 packed it */
            fprintf(stderr, WPROG " (rank %d): %s\n", w->rank, err.msg);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        free(buf);
        const Wanfarm__Assignment *a = ((const Wanfarm__CoordMessage *)m)->assign;
        if (w->rank == 0)
            fprintf(stderr, WPROG ": job %s (attempt %u)%s%s\n", a->job_id, a->attempt,
                    a->resume_from ? ", its checkpoint " : "", a->resume_from ? a->resume_from : "");
        const fj_outcome out = fj_run(w, a);
        wp_free(m);
        if (out == FJ_STOPPED) return WF_EXIT_STOPPED; /* every rank stopped, as agreed */
    }
}

int cmd_worker(int argc, char **argv) {
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 128 * 1024); /* flat memory over a queue, as generate */
#endif
    int provided = 0, rank = 0, size = 1;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, WPROG ": MPI_Init failed\n");
        return WF_EXIT_FAIL;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    wopts o;
    bool help_asked = false;
    int rc = parse(argc, argv, &o, rank != 0, &help_asked);
    if (rc == WF_EXIT_OK && help_asked) {
        if (rank == 0) help();
        MPI_Finalize();
        return WF_EXIT_OK;
    }
    fj_world w = {.model = o.model, .output_root = o.output_root,
                  .checkpoint_root = o.checkpoint_root, .threads = o.threads, .device = o.device,
                  .precision = o.precision, .watchdog = o.watchdog, .cost = o.cost,
                  .mem_gb = o.mem_gb, .rank = rank, .size = size, .stage = o.stage};
    gethostname(w.host, sizeof w.host - 1);
    fio_cleanup_install();
    gen_ckpt_signals(); /* SIGTERM, SIGUSR1: checkpoint, report, stop */
    if (rc == WF_EXIT_OK && (writable_dir("--output-root", o.output_root, rank != 0) ||
                             writable_dir("--checkpoint-root", o.checkpoint_root, rank != 0)))
        rc = WF_EXIT_FAIL;
    if (rc == WF_EXIT_OK && rank == 0 && open_link(&o, &w, size, &w.link)) rc = WF_EXIT_FAIL;
    int worst = rc;
    MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (worst == WF_EXIT_OK) rc = serve(&w);
    else if (rc == WF_EXIT_OK) rc = worst; /* another rank could not start */
    fl_close(&w.link, 5.0);
    gen_release_kept();
    pl_close(&w.shell);
    MPI_Finalize();
    return rc;
}
