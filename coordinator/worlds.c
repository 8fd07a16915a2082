/* worlds.c: the coordinator's side of the worker worlds (see worlds.h). */
#include "worlds.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void say(cw_farm *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(cw_farm *f, const char *fmt, ...) {
    char line[WF_ERR_MSG + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (f->log) f->log(f->log_ctx, line);
    else fprintf(stderr, "wanfarm-coord: %s\n", line);
}

cw_world *cw_find(cw_farm *f, const char *id) {
    for (int k = 0; k < f->n; k++)
        if (!strcmp(f->worlds[k].id, id)) return &f->worlds[k];
    return NULL;
}

/* the liveness clock */
static double live_now(const cw_farm *f) { return f->clock ? f->clock() : f->svc->now(); }

static cw_world *add_world(cw_farm *f, const char *id) {
    if (f->n == f->cap) {
        if (f->cap >= CW_MAX_WORLDS) return NULL;
        int cap = f->cap ? 2 * f->cap : 8;
        cw_world *g = realloc(f->worlds, (size_t)cap * sizeof *g);
        if (!g) return NULL;
        f->worlds = g;
        f->cap = cap;
    }
    cw_world *w = &f->worlds[f->n++];
    memset(w, 0, sizeof *w);
    snprintf(w->id, sizeof w->id, "%s", id);
    w->last_seen = live_now(f);
    return w;
}

static void drop_world(cw_farm *f, cw_world *w) {
    *w = f->worlds[--f->n];
}

static int find_running(const cw_world *w, const char *job) {
    for (int k = 0; k < w->n_running; k++)
        if (!strcmp(w->running[k].job, job)) return k;
    return -1;
}

static void forget_running(cw_world *w, const char *job) {
    int k = find_running(w, job);
    if (k >= 0) w->running[k] = w->running[--w->n_running];
}

/* ---- sending ---- */

static void send_msg(cw_farm *f, const cw_world *w, const uint8_t *route, size_t rn,
                     Wanfarm__CoordMessage *m) {
    m->version = WP_VERSION;
    uint8_t *b = NULL;
    size_t n = 0;
    wf_err e;
    if (wp_encode(&m->base, &b, &n, &e)) {
        say(f, "a message to world %s could not be made: %s", w ? w->id : "?", e.msg);
        return;
    }
    if (f->send) f->send(f->send_ctx, route, rn, b, n);
    free(b);
}

static void send_error(cw_farm *f, const uint8_t *route, size_t rn, Wanfarm__ErrorCategory cat,
                       const char *msg) {
    Wanfarm__Error e = WANFARM__ERROR__INIT;
    e.category = cat;
    char buf[WF_ERR_MSG];
    snprintf(buf, sizeof buf, "%s", msg);
    e.message = buf;
    Wanfarm__CoordMessage m = WANFARM__COORD_MESSAGE__INIT;
    m.body_case = WANFARM__COORD_MESSAGE__BODY_ERROR, m.error = &e;
    send_msg(f, NULL, route, rn, &m);
}

static void send_cancel(cw_farm *f, const cw_world *w, const char *job, int attempt) {
    Wanfarm__CancelJob c = WANFARM__CANCEL_JOB__INIT;
    c.job_id = (char *)job, c.attempt = (uint32_t)attempt;
    Wanfarm__CoordMessage m = WANFARM__COORD_MESSAGE__INIT;
    m.body_case = WANFARM__COORD_MESSAGE__BODY_CANCEL, m.cancel = &c;
    send_msg(f, w, w->route, w->route_n, &m);
}

static void send_shutdown(cw_farm *f, const cw_world *w) {
    Wanfarm__Shutdown sd = WANFARM__SHUTDOWN__INIT;
    sd.reason = (char *)(w->drain_reason[0] ? w->drain_reason : "drained");
    Wanfarm__CoordMessage m = WANFARM__COORD_MESSAGE__INIT;
    m.body_case = WANFARM__COORD_MESSAGE__BODY_SHUTDOWN, m.shutdown = &sd;
    send_msg(f, w, w->route, w->route_n, &m);
}

static void send_ack(cw_farm *f, const cw_world *w, const char *job, uint32_t attempt) {
    Wanfarm__Ack a = WANFARM__ACK__INIT;
    a.job_id = (char *)job, a.attempt = attempt;
    Wanfarm__CoordMessage m = WANFARM__COORD_MESSAGE__INIT;
    m.body_case = WANFARM__COORD_MESSAGE__BODY_ACK, m.ack = &a;
    send_msg(f, w, w->route, w->route_n, &m);
}

/* ---- start: the store's running jobs keep their worlds for a while ---- */

static void adopt(void *ctx, js_job *j) {
    cw_farm *f = ctx;
    if (!j->world[0]) return;
    cw_world *w = cw_find(f, j->world);
    if (!w && !(w = add_world(f, j->world))) return;
    if (w->n_running == CW_MAX_RUNNING) return;
    cw_running *r = &w->running[w->n_running++];
    snprintf(r->job, sizeof r->job, "%s", j->id);
    r->attempt = j->attempts;
    r->since = live_now(f);
}

wf_status cw_init(cw_farm *f, wf_err *err) {
    f->worlds = NULL;
    f->n = f->cap = 0;
    if (f->heartbeat <= 0) f->heartbeat = 2.0;
    if (f->liveness < 1) f->liveness = 3;
    if (f->max_job < 1) f->max_job = 3;
    if (f->max_infra < 0) f->max_infra = 10;
    wf_status st = js_list(f->svc->store, JS_RUNNING, 1 << 30, adopt, f, err);
    if (!st && f->n)
        say(f, "%d world%s of the store's running jobs have %.0f s to come back", f->n,
            f->n == 1 ? "" : "s", f->heartbeat * f->liveness);
    return st;
}

void cw_free(cw_farm *f) {
    free(f->worlds);
    f->worlds = NULL;
    f->n = f->cap = 0;
}

static bool declare_lost(cw_farm *f, cw_world *w, double silent);
static void assign(cw_farm *f, cw_world *w);

/* ---- the messages of a world ---- */

static int served(const cw_farm *f, const char *model) {
    for (int k = 0; k < f->svc->n_models; k++)
        if (!strcmp(f->svc->models[k], model)) return 1;
    return 0;
}

static void on_hello(cw_farm *f, const uint8_t *route, size_t rn, const char *id,
                     const Wanfarm__Hello *h) {
    const char *model = h->model ? h->model : f->svc->n_models ? f->svc->models[0] : "";
    char why[WF_ERR_MSG];
    if (!served(f, model)) {
        snprintf(why, sizeof why, "world %.63s serves model '%.64s', which this farm does not "
                 "(its --model names)", id, model);
        say(f, "%s", why);
        send_error(f, route, rn, WANFARM__ERROR_CATEGORY__ERR_INVALID, why);
        return;
    }
    if (h->ranks < 1 || h->ranks > 1000000 || rn > CW_ROUTE_MAX) {
        send_error(f, route, rn, WANFARM__ERROR_CATEGORY__ERR_INVALID, "a world of no ranks");
        return;
    }
    cw_world *w = cw_find(f, id);
    if (w && w->route_n && (w->route_n != rn || memcmp(w->route, route, rn)) &&
        live_now(f) - w->last_seen <= f->heartbeat * f->liveness) {
        /* another live connection holds this id (a world reconnecting keeps its routing id) */
        snprintf(why, sizeof why, "world id '%.63s' is held by a live world (pid %d on %.64s): "
                 "choose another --world-id, or wait %.0f s for that one to be declared lost",
                 id, w->pid, w->host, f->heartbeat * f->liveness);
        send_error(f, route, rn, WANFARM__ERROR_CATEGORY__ERR_DUPLICATE, why);
        return;
    }
    const bool back = w != NULL;
    if (!w && !(w = add_world(f, id))) {
        send_error(f, route, rn, WANFARM__ERROR_CATEGORY__ERR_BUSY, "too many worlds");
        return;
    }
    memcpy(w->route, route, rn);
    w->route_n = rn;
    w->ranks = (int)h->ranks;
    w->stage = h->has_stage ? h->stage : WANFARM__STAGE__STAGE_ALL;
    snprintf(w->model, sizeof w->model, "%s", model);
    snprintf(w->host, sizeof w->host, "%s", h->host ? h->host : "?");
    snprintf(w->layout, sizeof w->layout, "%s", h->layout ? h->layout : "");
    w->pid = h->has_pid ? h->pid : 0;
    w->mem = h->n_devices && h->devices[0]->has_memory ? (double)h->devices[0]->memory : 0;
    w->has_plan = false;
    wf_err e;
    if (h->plan_model && cp_model_from(h->plan_model, &w->plan, &e))
        say(f, "world %s: its model description is refused (%s): it plans its own layouts", id,
            e.msg);
    else w->has_plan = h->plan_model != NULL;
    w->last_seen = live_now(f);
    say(f, "world %s %s: %d rank%s on %s (pid %d), model %s, stage %s%s%s", id,
        back ? "is back" : "joined", w->ranks, w->ranks == 1 ? "" : "s", w->host, w->pid, w->model,
        w->stage == WANFARM__STAGE__STAGE_HIGH  ? "high"
        : w->stage == WANFARM__STAGE__STAGE_LOW ? "low"
                                                : "all",
        w->layout[0] ? ", layout " : "", w->layout);
    Wanfarm__Welcome wl = WANFARM__WELCOME__INIT;
    wl.heartbeat_seconds = f->heartbeat, wl.liveness = (uint32_t)f->liveness;
    Wanfarm__CoordMessage m = WANFARM__COORD_MESSAGE__INIT;
    m.body_case = WANFARM__COORD_MESSAGE__BODY_WELCOME, m.welcome = &wl;
    send_msg(f, w, w->route, w->route_n, &m);
}

/* A heartbeat: cancels asked for its jobs; jobs it no longer holds go back to the queue. */
static void on_heartbeat(cw_farm *f, cw_world *w, const Wanfarm__Heartbeat *hb) {
    const double now = live_now(f);
    for (int k = 0; k < w->n_running;) {
        cw_running *r = &w->running[k];
        bool listed = false;
        for (size_t i = 0; i < hb->n_running && !listed; i++) listed = !strcmp(hb->running[i], r->job);
        if (!listed && now - r->since > 2 * f->heartbeat) {
            wf_err e;
            int state = 0;
            char why[200];
            snprintf(why, sizeof why, "world %s no longer runs it (restarted?)", w->id);
            if (!js_fail(f->svc->store, r->job, r->attempt, true, why, f->max_job, f->max_infra,
                         f->svc->now(), &state, &e)) {
                say(f, "job %s: %s: %s", r->job, why, state == JS_QUEUED ? "queued again" : "failed");
                cs_publish_change(f->svc, r->job, JS_RUNNING, state, why);
            }
            *r = w->running[--w->n_running];
            continue;
        }
        js_job j;
        wf_err e;
        if (listed && !js_get(f->svc->store, r->job, &j, &e)) {
            if (j.state == JS_RUNNING && j.attempts == r->attempt && j.cancel_requested)
                send_cancel(f, w, r->job, r->attempt);
            js_job_free(&j);
        }
        k++;
    }
}

static void on_progress(cw_farm *f, cw_world *w, const char *job, uint32_t attempt,
                        uint32_t step, uint32_t steps, const char *checkpoint,
                        const Wanfarm__Progress *p) {
    bool cancel = false;
    wf_err e;
    if (js_progress(f->svc->store, job, (int)attempt, step, steps, checkpoint, &cancel, &e)) {
        if (strstr(e.msg, "stale")) { /* requeued meanwhile (or done): the world must stop it */
            say(f, "%s: asking world %s to stop it", e.msg, w->id);
            send_cancel(f, w, job, (int)attempt);
        } else {
            say(f, "progress of %s from world %s: %s", job, w->id, e.msg);
        }
        return;
    }
    if (cancel) send_cancel(f, w, job, (int)attempt);
    if (p) cs_publish_progress(f->svc, p);
}

static void on_result(cw_farm *f, cw_world *w, const Wanfarm__Result *r) {
    wf_err e;
    const double now = f->svc->now();
    wf_status st;
    int to;
    const char *what;
    char ck[JS_ID_LEN + 16];
    if (r->has_handed_on && r->handed_on) {
        snprintf(ck, sizeof ck, "%s.ckpt.h5", r->job_id);
        st = js_handoff(f->svc->store, r->job_id, (int)r->attempt, r->has_step ? r->step : 0, ck, &e);
        to = JS_QUEUED, what = "handed on to a low-noise world";
    } else if (r->has_cancelled && r->cancelled) {
        st = js_cancelled(f->svc->store, r->job_id, (int)r->attempt, now, &e);
        to = JS_CANCELLED, what = "cancelled";
    } else {
        for (size_t k = 0; k < r->n_outputs; k++)
            if (cs_check_output_name(r->outputs[k], &e)) {
                say(f, "world %s: result of %s names an output '%.64s' outside the output root: "
                    "refused", w->id, r->job_id, r->outputs[k]);
                return; /* not acknowledged: nothing of it is taken */
            }
        st = js_finish(f->svc->store, r->job_id, (int)r->attempt, (const char *const *)r->outputs,
                       r->n_outputs, now, &e);
        to = JS_DONE, what = "done";
    }
    if (st && !strstr(e.msg, "stale") && !strstr(e.msg, "no job")) {
        say(f, "the result of %s from world %s: %s (not acknowledged: it will come again)",
            r->job_id, w->id, e.msg);
        return;
    }
    if (st) say(f, "%s", e.msg);
    else {
        char line[CW_WORLD_ID_MAX + 96];
        snprintf(line, sizeof line, "%s on world %s (attempt %u, %.1f s)", what, w->id, r->attempt,
                 r->has_seconds ? r->seconds : 0.0);
        say(f, "job %s %s", r->job_id, line);
        cs_publish_change(f->svc, r->job_id, JS_RUNNING, to, line);
    }
    forget_running(w, r->job_id);
    send_ack(f, w, r->job_id, r->attempt);
}

static void on_failure(cw_farm *f, cw_world *w, const Wanfarm__Failure *fl) {
    wf_err e;
    int state = 0;
    const bool infra = fl->category == WANFARM__FAILURE_CATEGORY__FAIL_INFRA;
    char why[WF_ERR_MSG];
    snprintf(why, sizeof why, "world %s, %s%s, rank %d: %s", w->id, fl->host ? "host " : "",
             fl->host ? fl->host : "", fl->has_rank ? fl->rank : 0, fl->detail ? fl->detail : "");
    wf_status st = js_fail(f->svc->store, fl->job_id, (int)fl->attempt, infra, why, f->max_job,
                           f->max_infra, f->svc->now(), &state, &e);
    if (st && !strstr(e.msg, "stale") && !strstr(e.msg, "no job")) {
        say(f, "the failure of %s from world %s: %s (not acknowledged)", fl->job_id, w->id, e.msg);
        return;
    }
    if (!st) {
        say(f, "job %s failed (%s) on %s: %s", fl->job_id, infra ? "infrastructure" : "job", w->id,
            state == JS_QUEUED ? "queued again" : "given up");
        cs_publish_change(f->svc, fl->job_id, JS_RUNNING, state, why);
    }
    forget_running(w, fl->job_id);
    send_ack(f, w, fl->job_id, fl->attempt);
}

void cw_handle(cw_farm *f, const uint8_t *route, size_t rn, const void *msg, size_t n) {
    ProtobufCMessage *m = NULL;
    wf_err e;
    if (rn > CW_ROUTE_MAX) return;
    if (wp_decode(WP_WORKER_MESSAGE, msg, n, &m, &e)) {
        say(f, "a world's message refused: %s", e.msg);
        send_error(f, route, rn, strstr(e.msg, "protocol version")
                                     ? WANFARM__ERROR_CATEGORY__ERR_VERSION
                                     : WANFARM__ERROR_CATEGORY__ERR_INVALID, e.msg);
        return;
    }
    const Wanfarm__WorkerMessage *wm = (const Wanfarm__WorkerMessage *)m;
    const char *id = wm->world_id;
    if (!*id || strlen(id) > CW_WORLD_ID_MAX) {
        send_error(f, route, rn, WANFARM__ERROR_CATEGORY__ERR_INVALID,
                   "world_id must be 1 to 63 bytes");
        goto out;
    }
    if (wm->body_case == WANFARM__WORKER_MESSAGE__BODY_HELLO) {
        on_hello(f, route, rn, id, wm->hello);
        goto out;
    }
    cw_world *w = cw_find(f, id);
    if (!w || !w->route_n || w->route_n != rn || memcmp(w->route, route, rn)) {
        /* unknown here (this coordinator restarted, or the world was declared lost), or another
         * connection using its id: it must say Hello (again) */
        send_error(f, route, rn, WANFARM__ERROR_CATEGORY__ERR_NOT_FOUND,
                   "this coordinator does not know the world: say Hello");
        goto out;
    }
    w->last_seen = live_now(f);
    switch (wm->body_case) {
    case WANFARM__WORKER_MESSAGE__BODY_HEARTBEAT: on_heartbeat(f, w, wm->heartbeat); break;
    case WANFARM__WORKER_MESSAGE__BODY_PROGRESS: {
        const Wanfarm__Progress *p = wm->progress;
        on_progress(f, w, p->job_id, p->attempt, p->step, p->steps, NULL, p);
        break;
    }
    case WANFARM__WORKER_MESSAGE__BODY_CHECKPOINT: {
        const Wanfarm__CheckpointWritten *c = wm->checkpoint;
        js_job j;
        uint32_t steps = 0;
        if (!js_get(f->svc->store, c->job_id, &j, &e)) steps = (uint32_t)j.steps, js_job_free(&j);
        on_progress(f, w, c->job_id, c->attempt, c->step, steps, c->path, NULL);
        break;
    }
    case WANFARM__WORKER_MESSAGE__BODY_RESULT: on_result(f, w, wm->result); break;
    case WANFARM__WORKER_MESSAGE__BODY_FAILURE: on_failure(f, w, wm->failure); break;
    case WANFARM__WORKER_MESSAGE__BODY_GOODBYE: {
        char why[160];
        snprintf(why, sizeof why, "%.100s", wm->goodbye->reason ? wm->goodbye->reason : "");
        say(f, "world %s says goodbye (%s)", w->id, why);
        declare_lost(f, w, -1);
        break;
    }
    default: break;
    }
    /* a world that just became free (a result, a failure) gets its next job now, not at the
     * next tick; w may be gone (a goodbye) */
    if ((wm->body_case == WANFARM__WORKER_MESSAGE__BODY_RESULT ||
         wm->body_case == WANFARM__WORKER_MESSAGE__BODY_FAILURE) &&
        (w = cw_find(f, id)) && w->route_n && w->n_running == 0) {
        if (w->draining) send_shutdown(f, w); /* drained: its last job is over */
        else assign(f, w);
    }
out:
    wp_free(m);
}

/* ---- the clock ---- */

/* true when the world was dropped (its jobs requeued); silent < 0: it said goodbye */
static bool declare_lost(cw_farm *f, cw_world *w, double silent) {
    char why[200];
    if (silent < 0)
        snprintf(why, sizeof why, "world %s left", w->id);
    else
        snprintf(why, sizeof why, "world %s lost: no heartbeat for %.1f s (%d missed)", w->id,
                 silent, f->liveness);
    int n = 0;
    wf_err e;
    if (js_requeue_world(f->svc->store, w->id, why, f->max_infra, f->svc->now(), &n, &e)) {
        say(f, "%s; its jobs could not be requeued: %s", why, e.msg);
        return false; /* tried again at the next tick */
    }
    say(f, "%s; %d job%s back in the queue", why, n, n == 1 ? "" : "s");
    for (int k = 0; k < w->n_running; k++) {
        js_job j;
        if (!js_get(f->svc->store, w->running[k].job, &j, &e)) {
            cs_publish_change(f->svc, j.id, JS_RUNNING, j.state, why);
            js_job_free(&j);
        }
    }
    drop_world(f, w);
    return true;
}

static unsigned stages_of(const cw_world *w) {
    return w->stage == WANFARM__STAGE__STAGE_HIGH  ? JS_TAKE_START
           : w->stage == WANFARM__STAGE__STAGE_LOW ? JS_TAKE_LOW
                                                   : JS_TAKE_START | JS_TAKE_LOW;
}

static void assign(cw_farm *f, cw_world *w) {
    js_job j;
    bool found = false;
    wf_err e;
    if (js_next(f->svc->store, w->id, w->model, stages_of(w), f->svc->now(), &j, &found, &e)) {
        say(f, "the next job for world %s: %s", w->id, e.msg);
        return;
    }
    if (!found) return;
    Wanfarm__JobSpec *spec = wanfarm__job_spec__unpack(NULL, j.spec_bytes, j.spec);
    if (!spec) { /* cannot happen for a spec the service packed: fail it, keep serving */
        int state;
        js_fail(f->svc->store, j.id, j.attempts, false, "its stored spec does not unpack", 1,
                f->max_infra, f->svc->now(), &state, &e);
        js_job_free(&j);
        return;
    }
    Wanfarm__Assignment a = WANFARM__ASSIGNMENT__INIT;
    a.job_id = j.id, a.attempt = (uint32_t)j.attempts, a.spec = spec;
    a.has_stage = 1;
    a.stage = j.stage == JS_STAGE_LOW ? WANFARM__STAGE__STAGE_LOW
              : w->stage == WANFARM__STAGE__STAGE_HIGH ? WANFARM__STAGE__STAGE_HIGH
                                                       : WANFARM__STAGE__STAGE_ALL;
    if (j.checkpoint[0]) a.resume_from = j.checkpoint;
    a.has_checkpoint_every = 1, a.checkpoint_every = f->checkpoint_every;
    Wanfarm__Layout lay = WANFARM__LAYOUT__INIT;
    char desc[160] = "", why[WF_ERR_MSG] = "";
    ly_layout l;
    if (w->has_plan) {
        if (cp_layout(&w->plan, w->ranks, w->mem, spec, &l, desc, sizeof desc, &e)) {
            snprintf(why, sizeof why, "%s", e.msg); /* the world's own planner says more */
            desc[0] = 0;
        } else {
            lay.ulysses = (uint32_t)l.ulysses[0], lay.cfg_parallel = l.cfg_parallel;
            lay.vae_ranks = (uint32_t)l.vae_ranks;
            a.plan = &lay, a.layout = desc;
        }
    }
    Wanfarm__CoordMessage m = WANFARM__COORD_MESSAGE__INIT;
    m.body_case = WANFARM__COORD_MESSAGE__BODY_ASSIGN, m.assign = &a;
    cw_running *r = &w->running[w->n_running++];
    snprintf(r->job, sizeof r->job, "%s", j.id);
    r->attempt = j.attempts;
    r->since = live_now(f);
    send_msg(f, w, w->route, w->route_n, &m);
    say(f, "job %s (attempt %d) to world %s%s%s%s%s%s%s", j.id, j.attempts, w->id,
        j.checkpoint[0] ? ", resuming from " : "", j.checkpoint, desc[0] ? ", layout " : "", desc,
        why[0] ? ", no layout planned: " : "", why);
    cs_publish_change(f->svc, j.id, JS_QUEUED, JS_RUNNING, w->id);
    wanfarm__job_spec__free_unpacked(spec, NULL);
    js_job_free(&j);
}

void cw_dispatch(cw_farm *f) {
    for (int k = 0; k < f->n; k++) {
        cw_world *w = &f->worlds[k];
        if (w->route_n && w->n_running == 0 && !w->draining) assign(f, w); /* one job a world */
    }
}

wf_status cw_drain(void *farm, const char *id, const char *reason, wf_err *err) {
    cw_farm *f = farm;
    cw_world *w = cw_find(f, id);
    if (!w) return wf_fail(err, WF_EINVAL, "no world '%.63s' (wanctl worlds lists them)", id);
    w->draining = true;
    snprintf(w->drain_reason, sizeof w->drain_reason, "%s", reason && *reason ? reason : "drained");
    say(f, "world %s drains (%s)%s", w->id, w->drain_reason,
        w->n_running ? ": it ends after its job" : "");
    if (w->route_n && !w->n_running) send_shutdown(f, w);
    return WF_OK;
}

void cw_tick(cw_farm *f) {
    const double now = live_now(f), limit = f->heartbeat * f->liveness;
    for (int k = 0; k < f->n;) {
        cw_world *w = &f->worlds[k];
        if (now - w->last_seen > limit && declare_lost(f, w, now - w->last_seen))
            continue; /* the last world moved into k */
        k++;
    }
    cw_dispatch(f);
}

/* ---- the list for clients ---- */

wf_status cw_list(void *farm, Wanfarm__WorldList *wl, wf_err *err) {
    cw_farm *f = farm;
    wanfarm__world_list__init(wl);
    if (!f->n) return WF_OK;
    Wanfarm__WorldInfo *infos = calloc((size_t)f->n, sizeof *infos);
    Wanfarm__WorldInfo **ptrs = calloc((size_t)f->n, sizeof *ptrs);
    char **ids = calloc((size_t)f->n * CW_MAX_RUNNING, sizeof *ids);
    if (!infos || !ptrs || !ids) {
        free(infos), free(ptrs), free(ids);
        return wf_fail(err, WF_ENOMEM, "out of memory listing the worlds");
    }
    const double now = live_now(f);
    for (int k = 0; k < f->n; k++) {
        cw_world *w = &f->worlds[k];
        Wanfarm__WorldInfo *i = &infos[k];
        wanfarm__world_info__init(i);
        i->world_id = w->id, i->ranks = (uint32_t)(w->ranks > 0 ? w->ranks : 0);
        if (w->route_n) { /* heard since this coordinator started */
            i->host = w->host, i->model = w->model;
            i->has_pid = 1, i->pid = w->pid;
            i->has_stage = 1, i->stage = (Wanfarm__Stage)w->stage;
            i->has_planned = 1, i->planned = w->has_plan;
            i->has_draining = 1, i->draining = w->draining;
        }
        i->has_silent_seconds = 1, i->silent_seconds = now - w->last_seen;
        i->running = ids + (size_t)k * CW_MAX_RUNNING, i->n_running = (size_t)w->n_running;
        for (int r = 0; r < w->n_running; r++) i->running[r] = w->running[r].job;
        ptrs[k] = i;
    }
    wl->n_worlds = (size_t)f->n, wl->worlds = ptrs;
    return WF_OK;
}

void cw_list_free(Wanfarm__WorldList *wl) {
    if (!wl->n_worlds) return;
    free(wl->worlds[0]->running); /* one block each, from cw_list */
    free(wl->worlds[0]);
    free(wl->worlds);
    wl->worlds = NULL, wl->n_worlds = 0;
}
