/* farm_job.c: one farm job on a worker world (see farm_job.h). */
#include "farm_job.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpi.h>

#include "cmds.h"
#include "gen.h"
#include "pl_plan.h"

#define FJ_PATH 4200
#define FJ_NAME_MAX 200

typedef struct fj_job {
    fj_world *w;
    const Wanfarm__Assignment *a;
    char failure[WF_ERR_MSG]; /* the work's failure, from the hook */
    char ck_name[96];
    int64_t stop_after;       /* a high-noise stage world: the steps before the switch (0: none) */
    bool handing_off;         /* it stopped there */
} fj_job;

/* ---- outputs: confined to the root ---- */

static int name_byte_ok(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-' || c == '+' || c == '/';
}

/* The coordinator's rules again (a world trusts no name): relative, no empty, "." or ".."
 * component, none starting with '-', of [A-Za-z0-9._+-/]. */
static wf_status check_name(const char *name, wf_err *err) {
    const size_t n = strlen(name);
    if (!n || n > FJ_NAME_MAX || name[0] == '/')
        return wf_fail(err, WF_EINVAL, "output name '%.64s': empty, too long or absolute", name);
    for (size_t k = 0; k < n; k++)
        if (!name_byte_ok(name[k]))
            return wf_fail(err, WF_EINVAL, "output name '%.64s': byte %zu is not allowed", name, k);
    for (const char *p = name; *p;) {
        const char *q = strchr(p, '/');
        const size_t len = q ? (size_t)(q - p) : strlen(p);
        if (!len || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.') ||
            p[0] == '-')
            return wf_fail(err, WF_EINVAL, "output name '%.64s': component '%.*s' not allowed",
                           name, (int)len, p);
        p += len + (q != NULL);
    }
    return WF_OK;
}

/* Makes or enters every folder of rel under root without following a link, and checks that
 * the final name is absent or a regular file (not a link). */
static wf_status confine(const char *root, const char *rel, wf_err *err) {
    int fd = open(root, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return wf_fail(err, WF_EIO, "the output root %s: %s", root, strerror(errno));
    char part[FJ_NAME_MAX + 1];
    const char *p = rel;
    wf_status st = WF_OK;
    for (const char *q; (q = strchr(p, '/')) && !st; p = q + 1) {
        snprintf(part, sizeof part, "%.*s", (int)(q - p), p);
        if (mkdirat(fd, part, 0777) != 0 && errno != EEXIST)
            st = wf_fail(err, WF_EIO, "output %s: cannot make the folder %s: %s", rel, part,
                         strerror(errno));
        int nfd = st ? -1 : openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (!st && nfd < 0)
            st = wf_fail(err, WF_EINVAL, "output %s: '%s' under the output root is a link or "
                         "not a folder: refused (outputs stay under the root)", rel, part);
        close(fd);
        fd = nfd;
    }
    struct stat sb;
    if (!st && fstatat(fd, p, &sb, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(sb.st_mode))
        st = wf_fail(err, WF_EINVAL, "output %s exists and is %s: refused", rel,
                     S_ISLNK(sb.st_mode) ? "a link" : "not a regular file");
    if (fd >= 0) close(fd);
    return st;
}

/* The job's outputs: rel[0] the MP4, rel[1] the latents (or ""), relative to the root. */
static wf_status outputs(const fj_world *w, const Wanfarm__Assignment *a, char rel[2][FJ_NAME_MAX + 8],
                         wf_err *err) {
    const char *name = a->spec->output_name;
    char stem[FJ_NAME_MAX + 1];
    if (!name) {
        snprintf(stem, sizeof stem, "%s", a->job_id);
    } else {
        wf_status st = check_name(name, err);
        if (st) return st;
        const size_t n = strlen(name);
        snprintf(stem, sizeof stem, "%.*s", (int)(n > 4 && !strcmp(name + n - 4, ".mp4") ? n - 4 : n),
                 name);
    }
    snprintf(rel[0], sizeof rel[0], "%s.mp4", stem);
    rel[1][0] = 0;
    if (a->spec->has_save_latents && a->spec->save_latents)
        snprintf(rel[1], sizeof rel[1], "%s.h5", stem);
    for (int k = 0; k < 2; k++) {
        wf_status st = rel[k][0] ? confine(w->output_root, rel[k], err) : WF_OK;
        if (st) return st;
    }
    return WF_OK;
}

/* ---- the command line of generate ---- */

typedef struct argv_b {
    char *v[64];
    int n;
    char buf[8192];
    size_t used;
} argv_b;

static void arg(argv_b *b, const char *s) {
    if (b->n < 63) b->v[b->n++] = (char *)s;
}

static void argf(argv_b *b, const char *fmt, double x) {
    char *p = b->buf + b->used;
    const int n = snprintf(p, sizeof b->buf - b->used, fmt, x);
    if (n < 0 || (size_t)n >= sizeof b->buf - b->used) return;
    b->used += (size_t)n + 1;
    arg(b, p);
}

static void argu(argv_b *b, unsigned long long x) {
    char *p = b->buf + b->used;
    const int n = snprintf(p, sizeof b->buf - b->used, "%llu", x);
    if (n < 0 || (size_t)n >= sizeof b->buf - b->used) return;
    b->used += (size_t)n + 1;
    arg(b, p);
}

static void build_argv(const fj_job *j, const char mp4[FJ_PATH], const char h5[FJ_PATH],
                       argv_b *b) {
    const fj_world *w = j->w;
    const Wanfarm__JobSpec *s = j->a->spec;
    arg(b, "--model"), arg(b, w->model);
    arg(b, "--prompt"), arg(b, s->prompt);
    if (s->negative_prompt) arg(b, "--negative-prompt"), arg(b, s->negative_prompt);
    if (s->has_width || s->has_height) {
        char *p = b->buf + b->used;
        int n = snprintf(p, sizeof b->buf - b->used, "%ux%u", s->has_width ? s->width : 832u,
                         s->has_height ? s->height : 480u);
        b->used += (size_t)n + 1;
        arg(b, "--size"), arg(b, p);
    }
    if (s->has_frames) arg(b, "--frames"), argu(b, s->frames);
    if (s->has_steps) arg(b, "--steps"), argu(b, s->steps);
    if (s->has_guidance) arg(b, "--guidance"), argf(b, "%.17g", s->guidance);
    if (s->has_guidance_2) arg(b, "--guidance-2"), argf(b, "%.17g", s->guidance_2);
    if (s->has_boundary) arg(b, "--boundary"), argf(b, "%.17g", s->boundary);
    if (s->has_shift) arg(b, "--shift"), argf(b, "%.17g", s->shift);
    if (s->sampler) arg(b, "--sampler"), arg(b, s->sampler);
    if (s->has_max_sequence_length) arg(b, "--max-sequence-length"), argu(b, s->max_sequence_length);
    arg(b, "--seed"), argu(b, s->seed);
    arg(b, "--out"), arg(b, mp4);
    if (h5[0]) arg(b, "--save-latents"), arg(b, h5);
    arg(b, "--checkpoint-dir"), arg(b, w->checkpoint_root);
    arg(b, "--resume");
    if (j->a->has_checkpoint_every && j->a->checkpoint_every)
        arg(b, "--checkpoint-every"), argu(b, j->a->checkpoint_every);
    if (w->size > 1) arg(b, "--placement"), arg(b, "shared"); /* checkpoints need it */
    const Wanfarm__Layout *l = j->a->plan;
    if (w->size > 1 && l) { /* the coordinator's planner chose it for this world's size */
        arg(b, "--ulysses"), argu(b, l->ulysses);
        arg(b, l->cfg_parallel ? "--cfg-parallel" : "--no-cfg-parallel");
        arg(b, "--vae-ranks"), argu(b, l->vae_ranks);
    }
    const char *pass[][2] = {{"--threads", w->threads}, {"--device", w->device},
                             {"--precision", w->precision}, {"--watchdog", w->watchdog},
                             {"--cost", w->cost}, {"--mem-gb", w->mem_gb}};
    for (size_t k = 0; k < sizeof pass / sizeof *pass; k++)
        if (pass[k][1]) arg(b, pass[k][0]), arg(b, pass[k][1]);
}

/* ---- hooks ---- */

static void hk_progress(void *ctx, const pl_progress *pr) {
    fj_job *j = ctx;
    if (!j->w->link) return;
    Wanfarm__Progress p = WANFARM__PROGRESS__INIT;
    p.job_id = j->a->job_id, p.attempt = j->a->attempt;
    p.step = (uint32_t)(pr->step + 1), p.steps = (uint32_t)pr->steps;
    p.has_step_seconds = 1, p.step_seconds = pr->step_seconds;
    p.has_expert = 1, p.expert = (uint32_t)pr->expert;
    Wanfarm__WorkerMessage m = WANFARM__WORKER_MESSAGE__INIT;
    m.body_case = WANFARM__WORKER_MESSAGE__BODY_PROGRESS, m.progress = &p;
    fl_send(j->w->link, &m);
    fl_step(j->w->link, pr->step_seconds);
    if (j->stop_after > 0 && pr->step + 1 == j->stop_after) { /* the switch: hand it on */
        j->handing_off = true;
        gen_ckpt_request_stop();
    }
}

static void hk_checkpoint(void *ctx, int64_t step, const char *name) {
    fj_job *j = ctx;
    if (!j->w->link) return;
    Wanfarm__CheckpointWritten c = WANFARM__CHECKPOINT_WRITTEN__INIT;
    c.job_id = j->a->job_id, c.attempt = j->a->attempt, c.step = (uint32_t)step;
    c.path = (char *)name;
    Wanfarm__WorkerMessage m = WANFARM__WORKER_MESSAGE__INIT;
    m.body_case = WANFARM__WORKER_MESSAGE__BODY_CHECKPOINT, m.checkpoint = &c;
    fl_send(j->w->link, &m);
    fl_step(j->w->link, 0); /* a checkpoint is progress too */
}

static bool hk_cancelled(void *ctx) {
    const fj_job *j = ctx;
    return j->w->link && fl_cancelled(j->w->link);
}

static void send_failure(const fj_job *j, bool infra, const char *detail) {
    if (!j->w->link) return;
    Wanfarm__Failure f = WANFARM__FAILURE__INIT;
    f.job_id = j->a->job_id, f.attempt = j->a->attempt;
    f.category = infra ? WANFARM__FAILURE_CATEGORY__FAIL_INFRA : WANFARM__FAILURE_CATEGORY__FAIL_JOB;
    f.host = (char *)j->w->host, f.has_rank = 1, f.rank = j->w->rank;
    f.detail = (char *)detail;
    Wanfarm__WorkerMessage m = WANFARM__WORKER_MESSAGE__INIT;
    m.body_case = WANFARM__WORKER_MESSAGE__BODY_FAILURE, m.failure = &f;
    fl_send_reliable(j->w->link, &m, j->a->job_id, j->a->attempt);
}

/* a failure of the work that is the job's own: its latents stopped being finite */
static bool job_fault(const char *msg) { return strstr(msg, "not finite") != NULL; }

static void hk_failed(void *ctx, const char *msg) {
    fj_job *j = ctx;
    snprintf(j->failure, sizeof j->failure, "%s", msg);
    if (j->w->size > 1 && j->w->link) { /* MPI_Abort follows: say it first */
        send_failure(j, !job_fault(msg), msg);
        fl_flush(j->w->link, 3.0);
    }
}

/* ---- the job ---- */

static void remove_checkpoints(const fj_job *j) {
    char p[FJ_PATH];
    snprintf(p, sizeof p, "%s/%s", j->w->checkpoint_root, j->ck_name);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s.prev", j->w->checkpoint_root, j->ck_name);
    unlink(p);
}

/* The spec against the model before anything runs (rank 0): 0, or the reason in err; *high:
 * the steps of the high-noise expert (all of them with one expert). */
static wf_status check_spec(const fj_world *w, const Wanfarm__JobSpec *s, int64_t *high,
                            wf_err *err) {
    *high = 0;
    if (!w->shell) return WF_OK;
    pl_request r;
    pl_request_default(&r);
    r.prompt = s->prompt;
    if (s->has_width) r.width = s->width;
    if (s->has_height) r.height = s->height;
    if (s->has_frames) r.frames = s->frames;
    if (s->has_steps) r.steps = s->steps;
    if (s->has_guidance) r.guidance = s->guidance;
    if (s->has_guidance_2) r.guidance_2 = s->guidance_2;
    if (s->has_boundary) r.boundary = s->boundary;
    if (s->has_shift) r.shift = s->shift;
    if (s->has_max_sequence_length) r.max_sequence_length = s->max_sequence_length;
    if (s->sampler) r.sampler = strcmp(s->sampler, "euler") ? SMP_UNIPC : SMP_EULER;
    int64_t shape[4];
    wf_status st = pl_check_request(w->shell, &r, shape, err);
    if (st) return st;
    pn_request pr; /* the planner counts the steps as the pipeline picks the experts */
    pn_request_default(&pr);
    pr.width = r.width, pr.height = r.height, pr.frames = r.frames, pr.steps = r.steps;
    pr.guidance = r.guidance, pr.boundary = r.boundary, pr.shift = r.shift;
    pr.sampler = r.sampler, pr.text_len = r.max_sequence_length;
    pn_inputs in;
    pn_inputs_default(&in);
    if ((st = pl_plan_inputs(&in, w->shell->cfg, &pr, err))) return st;
    *high = in.two_experts ? in.steps_high : in.steps;
    return WF_OK;
}

static void send_result(const fj_job *j, char rel[2][FJ_NAME_MAX + 8], fj_outcome how, double t) {
    char *outs[2] = {rel[0], rel[1]};
    Wanfarm__Result r = WANFARM__RESULT__INIT;
    r.job_id = j->a->job_id, r.attempt = j->a->attempt;
    if (how == FJ_CANCELLED) {
        r.has_cancelled = 1, r.cancelled = 1;
    } else if (how == FJ_HANDED_ON) {
        r.has_handed_on = 1, r.handed_on = 1;
        r.has_step = 1, r.step = (uint32_t)j->stop_after;
    } else {
        r.n_outputs = rel[1][0] ? 2 : 1, r.outputs = outs;
    }
    r.has_seconds = 1, r.seconds = t;
    Wanfarm__WorkerMessage m = WANFARM__WORKER_MESSAGE__INIT;
    m.body_case = WANFARM__WORKER_MESSAGE__BODY_RESULT, m.result = &r;
    fl_send_reliable(j->w->link, &m, j->a->job_id, j->a->attempt);
}

/* A job id names files (its checkpoint, its default output): 1 to 31 of [A-Za-z0-9_-]. */
static bool job_id_ok(const char *id) {
    size_t n = 0;
    for (; id[n]; n++)
        if (!((id[n] >= 'a' && id[n] <= 'z') || (id[n] >= 'A' && id[n] <= 'Z') ||
              (id[n] >= '0' && id[n] <= '9') || id[n] == '_' || id[n] == '-'))
            return false;
    return n >= 1 && n <= 31 && id[0] != '-';
}

/* Before the work, on every rank: the job id, the output folders (every rank makes them: a node
 * may not share them) and, on rank 0, the spec against the model, agreed by all. false: the
 * job was refused (reported). *high: the high-noise steps (rank 0). */
static bool prepare(fj_job *j, char rel[2][FJ_NAME_MAX + 8], int64_t *high) {
    const fj_world *w = j->w;
    const Wanfarm__Assignment *a = j->a;
    if (!job_id_ok(a->job_id)) { /* every rank sees the same id: no collective is left waiting */
        if (w->rank == 0) {
            fprintf(stderr, "wanfarm worker: an assignment's job id '%.40s' is not a plain name: "
                    "refused\n", a->job_id);
            send_failure(j, false, "the job id is not a plain name ([A-Za-z0-9_-], 1 to 31)");
        }
        return false;
    }
    snprintf(j->ck_name, sizeof j->ck_name, "%s.ckpt.h5", a->job_id);
    wf_err err;
    *high = 0;
    wf_status st = outputs(w, a, rel, &err);
    if (!st && w->rank == 0) st = check_spec(w, a->spec, high, &err);
    int ok = st == WF_OK, all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    int64_t h = *high; /* rank 0's count, for every rank (a stage world hands on or not as one) */
    MPI_Bcast(&h, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
    *high = h;
    if (!all && w->rank == 0) {
        const char *why = ok ? "another rank could not make its output folders" : err.msg;
        fprintf(stderr, "wanfarm worker: job %s refused: %s\n", a->job_id, why);
        send_failure(j, ok, why);
    }
    return all;
}

/* The job as generate runs it, on every rank: what became of it; *rc generate's exit code. */
static fj_outcome run_generate(fj_job *j, char rel[2][FJ_NAME_MAX + 8], int *rc) {
    const fj_world *w = j->w;
    char mp4[FJ_PATH], h5[FJ_PATH] = "";
    snprintf(mp4, sizeof mp4, "%s/%s", w->output_root, rel[0]);
    if (rel[1][0]) snprintf(h5, sizeof h5, "%s/%s", w->output_root, rel[1]);
    argv_b b = {.n = 0, .used = 0};
    build_argv(j, mp4, h5, &b);
    const unsigned parts = w->stage == WANFARM__STAGE__STAGE_HIGH
                               ? PL_PART_TEXT | PL_PART_EXPERT0 | PL_PART_VAE
                           : w->stage == WANFARM__STAGE__STAGE_LOW
                               ? PL_PART_TEXT | PL_PART_EXPERT1 | PL_PART_VAE
                               : 0;
    gen_hooks hooks = {j, j->ck_name, hk_progress, hk_checkpoint, hk_cancelled, hk_failed, parts,
                       w->size == 1};
    gen_farm_hooks = &hooks;
    if (w->link) fl_hold(w->link, j->a->job_id, j->a->attempt);
    gen_ckpt_clear_stop();
    *rc = gen_main(b.n, b.v, true, w->rank, w->size);
    gen_farm_hooks = NULL;
    const bool cancelled = w->link && fl_cancelled(w->link);
    fj_outcome out = FJ_DONE;
    if (*rc == WF_EXIT_STOPPED)
        out = gen_ckpt_signalled() ? FJ_STOPPED : cancelled ? FJ_CANCELLED : FJ_HANDED_ON;
    else if (*rc != WF_EXIT_OK) out = FJ_FAILED;
    if (out == FJ_HANDED_ON && !j->handing_off) out = FJ_STOPPED; /* cannot be: said as a stop */
    /* Only rank 0 knows why an agreed stop came (a cancel and a stage's end are its link's); the
     * others' guess differs, so every rank takes rank 0's verdict and the world stays in step. */
    int verdict = (int)out;
    MPI_Bcast(&verdict, 1, MPI_INT, 0, MPI_COMM_WORLD);
    out = (fj_outcome)verdict;
    gen_ckpt_clear_stop(); /* the program's own stop request; a signal's stays */
    return out;
}

/* Rank 0: the verdict to the coordinator. */
static void report(fj_job *j, fj_outcome out, int rc, char rel[2][FJ_NAME_MAX + 8], double t) {
    const char *id = j->a->job_id;
    switch (out) {
    case FJ_DONE:
        remove_checkpoints(j);
        send_result(j, rel, FJ_DONE, t);
        fprintf(stderr, "wanfarm worker: job %s done in %.1f s: %s%s%s\n", id, t, rel[0],
                rel[1][0] ? ", " : "", rel[1]);
        break;
    case FJ_CANCELLED:
        remove_checkpoints(j);
        send_result(j, rel, FJ_CANCELLED, t);
        fprintf(stderr, "wanfarm worker: job %s cancelled\n", id);
        break;
    case FJ_HANDED_ON: /* its checkpoint at the switch stays for the low-noise world */
        send_result(j, rel, FJ_HANDED_ON, t);
        fprintf(stderr, "wanfarm worker: job %s handed on after step %lld (%s)\n", id,
                (long long)j->stop_after, j->ck_name);
        break;
    case FJ_STOPPED:
        send_failure(j, true, "the world was stopped by a signal after a checkpoint: another "
                     "world resumes the job");
        break;
    case FJ_FAILED: {
        char detail[WF_ERR_MSG];
        snprintf(detail, sizeof detail, "%s", j->failure[0] ? j->failure
                 : rc == WF_EXIT_USAGE ? "the job's options were refused (the world's log says why)"
                                       : "the work failed (the world's log says why)");
        send_failure(j, rc != WF_EXIT_USAGE && !job_fault(detail), detail);
        break;
    }
    }
}

fj_outcome fj_run(fj_world *w, const Wanfarm__Assignment *a) {
    fj_job j = {.w = w, .a = a};
    const double t0 = gen_now();
    char rel[2][FJ_NAME_MAX + 8];
    int64_t high = 0;
    if (!prepare(&j, rel, &high)) return FJ_FAILED;
    if (w->stage == WANFARM__STAGE__STAGE_HIGH && high == 0) { /* nothing for the high expert */
        if (w->rank == 0) {
            send_result(&j, rel, FJ_HANDED_ON, 0);
            fprintf(stderr, "wanfarm worker: job %s has no high-noise step: handed on\n",
                    a->job_id);
        }
        return FJ_HANDED_ON;
    }
    const int64_t steps = a->spec->has_steps ? a->spec->steps : 50;
    if (w->stage == WANFARM__STAGE__STAGE_HIGH && high < steps) j.stop_after = high;
    int rc = 0;
    const fj_outcome out = run_generate(&j, rel, &rc);
    if (w->rank != 0) return out;
    report(&j, out, rc, rel, gen_now() - t0);
    fl_hold(w->link, NULL, 0);
    return out;
}
