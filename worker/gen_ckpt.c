/* gen_ckpt.c: `wanfarm generate --checkpoint-dir DIR [--checkpoint-every N] [--resume]` (see
 * gen.h): each job's checkpoint DIR/job-K.ckpt.h5 (worker/io/checkpoint.h), written by the rank
 * that holds the job's whole latents every N steps and when SIGTERM or SIGUSR1 asks the run to
 * stop (it stops between two steps, after the checkpoint, with exit code 3); with --resume a job
 * starts from its newest usable checkpoint, or from the noise when none is (each refused file
 * is named with the reason). A checkpoint belongs to one job: the spec's hash (prompt, negative
 * prompt, size, frames, steps, guidance, shift, boundary, sampler, seed, text length, the
 * initial latents), the seed, the step count and the model's identity must all match.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "gen.h"

static volatile sig_atomic_t g_stop;

/* 1: a signal asked; 2: the program asked (a cancel, a stage's end) */
static void on_stop_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

bool gen_ckpt_stop_asked(void) { return g_stop != 0; }
bool gen_ckpt_signalled(void) { return g_stop == 1; }
void gen_ckpt_request_stop(void) {
    if (!g_stop) g_stop = 2; /* a signal's 1 stays */
}
void gen_ckpt_clear_stop(void) {
    if (g_stop == 2) g_stop = 0; /* a signal is never forgotten */
}

const gen_hooks *gen_farm_hooks;

void gen_ckpt_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

/* FNV-1a over the fields that decide a job's result, in a fixed order and encoding. */
static uint64_t spec_hash(const pl_request *r, const float *lat0, size_t n) {
    uint64_t h = CK_FNV_INIT;
    const char *neg = r->negative_prompt ? r->negative_prompt : "";
    h = ck_fnv(h, r->prompt, strlen(r->prompt) + 1);
    h = ck_fnv(h, neg, strlen(neg) + 1);
    const int64_t ints[7] = {r->width, r->height, r->frames, r->steps, r->sampler,
                             r->max_sequence_length, lat0 != NULL};
    const double reals[4] = {r->guidance, r->guidance_2, r->shift, r->boundary};
    h = ck_fnv(h, ints, sizeof ints);
    for (int k = 0; k < 4; k++) { /* NaN (unset) hashes as one value whatever its bits */
        const double v = reals[k] == reals[k] ? reals[k] : -1.0;
        h = ck_fnv(h, &v, sizeof v);
    }
    h = ck_fnv(h, &r->seed, sizeof r->seed);
    if (lat0) h = ck_fnv(h, lat0, n * sizeof *lat0);
    return h;
}

/* pl_request.checkpoint: the job's file, and a line (or a JSON record) saying so */
static wf_status write_checkpoint(void *ctx, int64_t done, const float *latents, const void *state,
                                  size_t state_bytes, wf_err *err) {
    gen_run *g = ctx;
    ck_meta m = g->ck_want;
    m.step = done;
    wf_status st = ck_write(g->ck_path, &m, latents, state, state_bytes, err);
    if (st) return st;
    if (g->o->json)
        printf("{\"event\":\"checkpoint\",\"job\":%lld,\"step\":%lld,\"steps\":%lld,\"path\":\"%s\"}\n",
               (long long)g->ctx.gjob, (long long)done, (long long)m.steps, g->ck_name);
    else
        fprintf(stderr, PROG ": checkpoint after step %lld of %lld: %s\n", (long long)done,
                (long long)m.steps, g->ck_path);
    if (g->o->json) fflush(stdout);
    if (gen_farm_hooks && gen_farm_hooks->checkpoint)
        gen_farm_hooks->checkpoint(gen_farm_hooks->ctx, done, g->ck_name);
    return WF_OK;
}

static void note_refused(void *ctx, const char *file, const char *why) {
    const gen_run *g = ctx;
    (void)file;
    if (!g->quiet) fprintf(stderr, PROG ": not resuming from it: %s\n", why);
}

wf_status gen_ckpt_setup(gen_run *g, int64_t k, wf_err *err) {
    const gen_opts *o = g->o;
    pl_request *r = &g->req;
    if (!o->ckpt_dir) return WF_OK;
    const size_t n = (size_t)(g->shape[0] * g->shape[1] * g->shape[2] * g->shape[3]);
    if (!g->have_model_id) {
        wf_status st = ck_model_id(o->model, &g->model_id, err);
        if (st) return st;
        g->have_model_id = true;
    }
    if (gen_farm_hooks && gen_farm_hooks->ckpt_name)
        snprintf(g->ck_name, sizeof g->ck_name, "%s", gen_farm_hooks->ckpt_name);
    else
        snprintf(g->ck_name, sizeof g->ck_name, "job-%lld.ckpt.h5", (long long)k);
    snprintf(g->ck_path, sizeof g->ck_path, "%s/%s", o->ckpt_dir, g->ck_name);
    ck_meta *w = &g->ck_want;
    memset(w, 0, sizeof *w);
    w->steps = r->steps;
    w->seed = r->seed;
    w->spec_hash = spec_hash(r, g->lat0, n);
    w->model_id = g->model_id;
    memcpy(w->shape, g->shape, sizeof w->shape);
    r->checkpoint = write_checkpoint;
    r->checkpoint_ctx = g;
    r->checkpoint_every = o->ckpt_every;
    r->stop = &g_stop;
    if (!o->resume) return WF_OK;
    bool found = false;
    wf_status st = ck_load_latest(g->ck_path, w, 0, &g->ck, &found, note_refused, g, err);
    if (st || !found) {
        if (!st && !g->quiet)
            fprintf(stderr, PROG ": job %lld: no usable checkpoint in %s: starting from the noise\n",
                    (long long)k, o->ckpt_dir);
        return st;
    }
    r->start_step = g->ck.meta.step;
    r->start_state = g->ck.state;
    r->start_state_bytes = g->ck.state_bytes;
    r->latents = g->ck.latents;
    if (!g->quiet)
        fprintf(stderr, PROG ": job %lld: resuming after step %lld of %lld (%s)\n", (long long)k,
                (long long)r->start_step, (long long)r->steps, g->ck_path);
    return WF_OK;
}

void gen_ckpt_end(gen_run *g) { ck_data_free(&g->ck); }
