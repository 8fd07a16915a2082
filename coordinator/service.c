/* service.c: the coordinator's answers to clients (see service.h). */
#include "service.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- admission ---- */

static int name_byte_ok(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-' || c == '+' || c == '/';
}

wf_status cs_check_output_name(const char *name, wf_err *err) {
    const size_t n = name ? strlen(name) : 0;
    if (!n) return wf_fail(err, WF_EINVAL, "output_name is empty");
    if (n > CS_OUTPUT_NAME_MAX)
        return wf_fail(err, WF_EINVAL, "output_name of %zu bytes (at most %d)", n, CS_OUTPUT_NAME_MAX);
    if (name[0] == '/')
        return wf_fail(err, WF_EINVAL, "output_name '%.64s' is absolute: give a name relative to "
                       "the farm's output root", name);
    for (size_t k = 0; k < n; k++)
        if (!name_byte_ok(name[k]))
            return wf_fail(err, WF_EINVAL, "output_name '%.64s': byte %zu (0x%02x) is not one of "
                           "A-Z a-z 0-9 . _ + - /", name, k, (unsigned char)name[k]);
    /* every component: not empty, not "." or "..", not an option */
    for (const char *p = name; *p;) {
        const char *q = strchr(p, '/');
        const size_t len = q ? (size_t)(q - p) : strlen(p);
        if (!len || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.') ||
            p[0] == '-')
            return wf_fail(err, WF_EINVAL, "output_name '%.64s': the component '%.*s' is not "
                           "allowed (empty, '.', '..' or starting with '-')", name, (int)len, p);
        p += len + (q != NULL);
        if (q && !*p) return wf_fail(err, WF_EINVAL, "output_name '%.64s' ends with '/'", name);
    }
    return WF_OK;
}

/* a range check of an optional number */
#define RANGE(has, v, lo, hi, what)                                                               \
    do {                                                                                          \
        if ((has) && !((v) >= (lo) && (v) <= (hi)))                                               \
            return wf_fail(err, WF_EINVAL, "%s %g is outside [%g, %g]", what, (double)(v),       \
                           (double)(lo), (double)(hi));                                           \
    } while (0)

wf_status cs_check_spec(const cs_service *svc, const Wanfarm__JobSpec *s, wf_err *err) {
    const char *p = s->prompt;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (!*p) return wf_fail(err, WF_EINVAL, "the prompt is empty");
    RANGE(s->has_width, s->width, 16, 16384, "width");
    RANGE(s->has_height, s->height, 16, 16384, "height");
    if ((s->has_width && s->width % 16) || (s->has_height && s->height % 16))
        return wf_fail(err, WF_EINVAL, "width and height must be multiples of 16 (got %ux%u)",
                       s->width, s->height);
    RANGE(s->has_frames, s->frames, 1, 4097, "frames");
    if (s->has_frames && (s->frames - 1) % 4)
        return wf_fail(err, WF_EINVAL, "frames %u: must be 4k+1 (1, 5, ..., 81)", s->frames);
    RANGE(s->has_steps, s->steps, 1, 1000, "steps");
    RANGE(s->has_guidance, s->guidance, 0, 100, "guidance");
    RANGE(s->has_guidance_2, s->guidance_2, 0, 100, "guidance_2");
    RANGE(s->has_boundary, s->boundary, 0, 1, "boundary");
    RANGE(s->has_shift, s->shift, 0.01, 100, "shift");
    RANGE(s->has_max_sequence_length, s->max_sequence_length, 1, 4096, "max_sequence_length");
    if (s->sampler && strcmp(s->sampler, "unipc") && strcmp(s->sampler, "euler"))
        return wf_fail(err, WF_EINVAL, "sampler '%.32s': unipc or euler", s->sampler);
    if (s->output_name) {
        wf_status st = cs_check_output_name(s->output_name, err);
        if (st) return st;
    }
    if (s->model) {
        for (int k = 0; k < svc->n_models; k++)
            if (!strcmp(s->model, svc->models[k])) return WF_OK;
        char list[512] = "";
        for (int k = 0; k < svc->n_models; k++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "",
                     svc->models[k]);
        return wf_fail(err, WF_EINVAL, "model '%.64s' is not served here (%s)", s->model,
                       svc->n_models ? list : "no model");
    }
    return svc->n_models ? WF_OK : wf_fail(err, WF_EINVAL, "this farm serves no model yet");
}

/* ---- events ---- */

static void publish_event(cs_service *svc, Wanfarm__Event *ev) {
    uint8_t *b = NULL;
    size_t n = 0;
    wf_err e;
    if (wp_encode(&ev->base, &b, &n, &e) == WF_OK) svc->publish(svc->publish_ctx, ev->job_id, b, n);
    free(b);
}

void cs_publish_change(cs_service *svc, const char *id, int from, int to, const char *why) {
    if (!svc->publish) return;
    Wanfarm__StateChange sc = WANFARM__STATE_CHANGE__INIT;
    sc.from = (Wanfarm__JobState)from, sc.to = (Wanfarm__JobState)to, sc.reason = (char *)why;
    Wanfarm__Event ev = WANFARM__EVENT__INIT;
    ev.version = WP_VERSION, ev.job_id = (char *)id, ev.time = svc->now();
    ev.body_case = WANFARM__EVENT__BODY_STATE, ev.state = &sc;
    publish_event(svc, &ev);
}

void cs_publish_progress(cs_service *svc, const Wanfarm__Progress *p) {
    if (!svc->publish) return;
    Wanfarm__Event ev = WANFARM__EVENT__INIT;
    ev.version = WP_VERSION, ev.job_id = p->job_id, ev.time = svc->now();
    ev.body_case = WANFARM__EVENT__BODY_PROGRESS, ev.progress = (Wanfarm__Progress *)p;
    publish_event(svc, &ev);
}

/* ---- replies ---- */

static wf_status reply_error(const char *rid, Wanfarm__ErrorCategory cat, const char *msg,
                             uint8_t **out, size_t *n, wf_err *err) {
    Wanfarm__Error e = WANFARM__ERROR__INIT;
    e.category = cat;
    char buf[WF_ERR_MSG];
    snprintf(buf, sizeof buf, "%s", msg);
    e.message = buf;
    Wanfarm__ClientReply r = WANFARM__CLIENT_REPLY__INIT;
    r.version = WP_VERSION;
    r.request_id = (char *)rid;
    r.body_case = WANFARM__CLIENT_REPLY__BODY_ERROR;
    r.error = &e;
    wf_status st = wp_encode(&r.base, out, n, err);
    if (st == WF_EPROTO) { /* a message we cannot send as it is (bad UTF-8 echoed): plainly */
        e.message = "the request was refused";
        r.request_id = "";
        st = wp_encode(&r.base, out, n, err);
    }
    return st;
}

/* The store's job as a JobInfo (its spec unpacked into *spec_out, freed by the caller). */
static wf_status job_info(const js_job *j, Wanfarm__JobInfo *ji, Wanfarm__JobSpec **spec_out,
                          wf_err *err) {
    wanfarm__job_info__init(ji);
    *spec_out = wanfarm__job_spec__unpack(NULL, j->spec_bytes, j->spec);
    if (!*spec_out) return wf_fail(err, WF_EFORMAT, "job %s: its stored spec does not unpack", j->id);
    ji->job_id = (char *)j->id;
    ji->state = (Wanfarm__JobState)j->state;
    ji->spec = *spec_out;
    ji->has_step = ji->has_steps = ji->has_attempts = ji->has_job_failures = 1;
    ji->step = (uint32_t)j->step, ji->steps = (uint32_t)j->steps;
    ji->attempts = (uint32_t)j->attempts, ji->job_failures = (uint32_t)j->job_failures;
    ji->n_outputs = j->n_outputs, ji->outputs = j->outputs;
    ji->n_reasons = j->n_reasons, ji->reasons = j->reasons;
    ji->has_submitted_at = 1, ji->submitted_at = j->submitted_at;
    if (j->finished_at > 0) ji->has_finished_at = 1, ji->finished_at = j->finished_at;
    if (j->world[0]) ji->world = (char *)j->world;
    if ((*spec_out)->has_seed) ji->has_seed = 1, ji->seed = (*spec_out)->seed;
    return WF_OK;
}

static wf_status reply_job(cs_service *svc, const char *rid, const char *id, uint8_t **out,
                           size_t *n, wf_err *err) {
    js_job j;
    wf_err e;
    if (js_get(svc->store, id, &j, &e))
        return reply_error(rid, strstr(e.msg, "no job") ? WANFARM__ERROR_CATEGORY__ERR_NOT_FOUND
                                                        : WANFARM__ERROR_CATEGORY__ERR_INTERNAL,
                           e.msg, out, n, err);
    Wanfarm__JobInfo ji;
    Wanfarm__JobSpec *spec = NULL;
    wf_status st = job_info(&j, &ji, &spec, &e);
    if (st) {
        js_job_free(&j);
        return reply_error(rid, WANFARM__ERROR_CATEGORY__ERR_INTERNAL, e.msg, out, n, err);
    }
    Wanfarm__ClientReply r = WANFARM__CLIENT_REPLY__INIT;
    r.version = WP_VERSION, r.request_id = (char *)rid;
    r.body_case = WANFARM__CLIENT_REPLY__BODY_JOB, r.job = &ji;
    st = wp_encode(&r.base, out, n, err);
    wanfarm__job_spec__free_unpacked(spec, NULL);
    js_job_free(&j);
    return st;
}

/* whether a key names a job already (its retry is answered even when the queue is full) */
static bool key_known(cs_service *svc, const char *key) {
    return js_key_exists(svc->store, key);
}

static wf_status on_submit(cs_service *svc, const Wanfarm__ClientRequest *q, uint8_t **out,
                           size_t *n, wf_err *err) {
    const Wanfarm__Submit *sub = q->submit;
    wf_err e;
    if (cs_check_spec(svc, sub->spec, &e))
        return reply_error(q->request_id, WANFARM__ERROR_CATEGORY__ERR_INVALID, e.msg, out, n, err);
    /* the spec as it will run: the default model named, stored packed */
    Wanfarm__JobSpec spec = *sub->spec;
    if (!spec.model && svc->n_models) spec.model = (char *)svc->models[0];
    if (!spec.has_seed) { /* drawn from the key, so that a retried submit is the same spec */
        uint64_t h = 1469598103934665603ull;
        for (const char *c = sub->idempotency_key; *c; c++)
            h = (h ^ (uint8_t)*c) * 1099511628211ull;
        spec.has_seed = 1, spec.seed = h & ((1ull << 53) - 1); /* exact in JSON numbers too */
    }
    const size_t sb = wanfarm__job_spec__get_packed_size(&spec);
    int64_t queued = 0;
    if (svc->max_queued > 0 && !js_count(svc->store, JS_QUEUED, &queued, &e) &&
        queued >= svc->max_queued && !key_known(svc, sub->idempotency_key)) {
        char why[160];
        snprintf(why, sizeof why, "the queue holds %lld jobs, its limit: retry later",
                 (long long)queued);
        return reply_error(q->request_id, WANFARM__ERROR_CATEGORY__ERR_BUSY, why, out, n, err);
    }
    uint8_t *bytes = malloc(sb ? sb : 1);
    if (!bytes) return wf_fail(err, WF_ENOMEM, "out of memory");
    wanfarm__job_spec__pack(&spec, bytes);
    char id[JS_ID_LEN];
    bool existing = false;
    const js_new jn = {sub->idempotency_key, bytes, sb, spec.has_priority ? spec.priority : 0,
                       spec.model, spec.has_steps ? spec.steps : CS_DEFAULT_STEPS,
                       spec.output_name};
    wf_status st = js_submit(svc->store, &jn, svc->now(), id, &existing, &e);
    free(bytes);
    if (st)
        return reply_error(q->request_id,
                           strstr(e.msg, "another spec") || strstr(e.msg, "output name")
                               ? WANFARM__ERROR_CATEGORY__ERR_DUPLICATE
                           : st == WF_EINVAL             ? WANFARM__ERROR_CATEGORY__ERR_INVALID
                                                         : WANFARM__ERROR_CATEGORY__ERR_INTERNAL,
                           e.msg, out, n, err);
    if (!existing) cs_publish_change(svc, id, JS_QUEUED, JS_QUEUED, "submitted");
    Wanfarm__SubmitReply sr = WANFARM__SUBMIT_REPLY__INIT;
    sr.job_id = id, sr.existing = existing;
    Wanfarm__ClientReply r = WANFARM__CLIENT_REPLY__INIT;
    r.version = WP_VERSION, r.request_id = q->request_id;
    r.body_case = WANFARM__CLIENT_REPLY__BODY_SUBMITTED, r.submitted = &sr;
    return wp_encode(&r.base, out, n, err);
}

typedef struct list_ctx {
    Wanfarm__JobInfo **infos;
    Wanfarm__JobSpec **specs;
    js_job **jobs;          /* one allocation each: the infos point into them */
    size_t n, cap;
    bool failed;
} list_ctx;

static void collect(void *ctx, js_job *j) {
    list_ctx *c = ctx;
    if (c->failed) return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        void *a = realloc(c->infos, cap * sizeof *c->infos), *b = a ? realloc(c->specs, cap * sizeof *c->specs) : NULL;
        void *d = b ? realloc(c->jobs, cap * sizeof *c->jobs) : NULL;
        if (a) c->infos = a;
        if (b) c->specs = b;
        if (d) c->jobs = d;
        if (!d) {
            c->failed = true;
            return;
        }
        c->cap = cap;
    }
    js_job *copy = malloc(sizeof *copy);
    Wanfarm__JobInfo *ji = copy ? malloc(sizeof *ji) : NULL;
    if (!ji) {
        free(copy);
        c->failed = true;
        return;
    }
    *copy = *j; /* moved out: js_list frees what is left in j */
    memset(j, 0, sizeof *j);
    wf_err e;
    if (job_info(copy, ji, &c->specs[c->n], &e)) {
        free(ji);
        js_job_free(copy);
        free(copy);
        c->failed = true;
        return;
    }
    c->jobs[c->n] = copy;
    c->infos[c->n++] = ji;
}

static wf_status on_list(cs_service *svc, const Wanfarm__ClientRequest *q, uint8_t **out,
                         size_t *n, wf_err *err) {
    list_ctx c = {0};
    wf_err e;
    const int limit = q->list->has_limit && q->list->limit ? (int)q->list->limit : 1000;
    wf_status st = js_list(svc->store, q->list->has_state ? (int)q->list->state : 0,
                           limit > 10000 ? 10000 : limit, collect, &c, &e);
    if (!st && c.failed) st = wf_fail(&e, WF_ENOMEM, "out of memory listing the jobs");
    if (st) {
        st = reply_error(q->request_id, WANFARM__ERROR_CATEGORY__ERR_INTERNAL, e.msg, out, n, err);
    } else {
        Wanfarm__JobList jl = WANFARM__JOB_LIST__INIT;
        jl.n_jobs = c.n, jl.jobs = c.infos;
        Wanfarm__ClientReply r = WANFARM__CLIENT_REPLY__INIT;
        r.version = WP_VERSION, r.request_id = q->request_id;
        r.body_case = WANFARM__CLIENT_REPLY__BODY_JOBS, r.jobs = &jl;
        st = wp_encode(&r.base, out, n, err);
        if (st == WF_EINVAL) /* over the message limit: say so instead */
            st = reply_error(q->request_id, WANFARM__ERROR_CATEGORY__ERR_INVALID,
                             "the list is larger than one message: ask for fewer (limit)", out, n,
                             err);
    }
    for (size_t k = 0; k < c.n; k++) {
        wanfarm__job_spec__free_unpacked(c.specs[k], NULL);
        free(c.infos[k]);
        js_job_free(c.jobs[k]);
        free(c.jobs[k]);
    }
    free(c.infos);
    free(c.specs);
    free(c.jobs);
    return st;
}

static wf_status on_worlds(cs_service *svc, const Wanfarm__ClientRequest *q, uint8_t **out,
                           size_t *n, wf_err *err) {
    Wanfarm__WorldList wl = WANFARM__WORLD_LIST__INIT;
    wf_err e;
    if (svc->list_worlds && svc->list_worlds(svc->worlds_ctx, &wl, &e))
        return reply_error(q->request_id, WANFARM__ERROR_CATEGORY__ERR_INTERNAL, e.msg, out, n, err);
    Wanfarm__ClientReply r = WANFARM__CLIENT_REPLY__INIT;
    r.version = WP_VERSION, r.request_id = q->request_id;
    r.body_case = WANFARM__CLIENT_REPLY__BODY_WORLDS, r.worlds = &wl;
    wf_status st = wp_encode(&r.base, out, n, err);
    if (svc->list_worlds && svc->free_worlds) svc->free_worlds(&wl);
    return st;
}

wf_status cs_handle(cs_service *svc, const void *req, size_t req_n, uint8_t **reply, size_t *n,
                    wf_err *err) {
    *reply = NULL;
    *n = 0;
    ProtobufCMessage *m = NULL;
    wf_err e;
    if (wp_decode(WP_CLIENT_REQUEST, req, req_n, &m, &e))
        return reply_error("", strstr(e.msg, "protocol version") ? WANFARM__ERROR_CATEGORY__ERR_VERSION
                                                                 : WANFARM__ERROR_CATEGORY__ERR_INVALID,
                           e.msg, reply, n, err);
    const Wanfarm__ClientRequest *q = (const Wanfarm__ClientRequest *)m;
    wf_status st = WF_OK;
    int state = 0;
    switch (q->body_case) {
    case WANFARM__CLIENT_REQUEST__BODY_SUBMIT: st = on_submit(svc, q, reply, n, err); break;
    case WANFARM__CLIENT_REQUEST__BODY_STATUS:
        st = reply_job(svc, q->request_id, q->status->job_id, reply, n, err);
        break;
    case WANFARM__CLIENT_REQUEST__BODY_CANCEL:
        if (js_cancel(svc->store, q->cancel->job_id, svc->now(), &state, &e)) {
            st = reply_error(q->request_id, WANFARM__ERROR_CATEGORY__ERR_NOT_FOUND, e.msg, reply,
                             n, err);
        } else {
            if (state == JS_CANCELLED)
                cs_publish_change(svc, q->cancel->job_id, JS_QUEUED, JS_CANCELLED, "cancelled by a client");
            st = reply_job(svc, q->request_id, q->cancel->job_id, reply, n, err);
        }
        break;
    case WANFARM__CLIENT_REQUEST__BODY_LIST: st = on_list(svc, q, reply, n, err); break;
    case WANFARM__CLIENT_REQUEST__BODY_WATCH: {
        Wanfarm__WatchReply w = WANFARM__WATCH_REPLY__INIT;
        w.events_endpoint = (char *)(svc->events ? svc->events : "");
        Wanfarm__ClientReply r = WANFARM__CLIENT_REPLY__INIT;
        r.version = WP_VERSION, r.request_id = q->request_id;
        r.body_case = WANFARM__CLIENT_REPLY__BODY_WATCH, r.watch = &w;
        st = wp_encode(&r.base, reply, n, err);
        break;
    }
    case WANFARM__CLIENT_REQUEST__BODY_WORLDS: st = on_worlds(svc, q, reply, n, err); break;
    case WANFARM__CLIENT_REQUEST__BODY_DRAIN:
        if (!svc->drain_world)
            st = reply_error(q->request_id, WANFARM__ERROR_CATEGORY__ERR_INVALID,
                             "this coordinator has no worker worlds", reply, n, err);
        else if (svc->drain_world(svc->worlds_ctx, q->drain->world_id, q->drain->reason, &e))
            st = reply_error(q->request_id, WANFARM__ERROR_CATEGORY__ERR_NOT_FOUND, e.msg, reply,
                             n, err);
        else
            st = on_worlds(svc, q, reply, n, err);
        break;
    default:
        st = reply_error(q->request_id, WANFARM__ERROR_CATEGORY__ERR_INVALID, "an unknown request",
                         reply, n, err);
    }
    if (st && st != WF_ENOMEM) { /* a reply that could not be made: the client hears why */
        free(*reply);
        *reply = NULL;
        char why[WF_ERR_MSG];
        snprintf(why, sizeof why, "%s", err ? err->msg : "the reply could not be made");
        st = reply_error(q->request_id, WANFARM__ERROR_CATEGORY__ERR_INTERNAL, why, reply, n, err);
    }
    wp_free(m);
    return st;
}
