/* test_worlds.c: the coordinator's side of the worker worlds (coordinator/worlds.h), without
 * sockets, on a clock the test moves.
 *   - hello: a Welcome with the farm's beat and liveness; a world of a model not served: refused;
 *   - assignment: the queued job of the world's model, one at a time, the spec with its seed; a
 *     world that becomes free gets its next job at once;
 *   - progress into the store (and an event); a stale attempt's progress answered with a
 *     CancelJob; a client's cancel reaches the world (heartbeat), its cancelled result is taken;
 *   - results: done with outputs, acknowledged; again (a resend): acknowledged, nothing changes;
 *     an output outside the root: not taken, not acknowledged;
 *   - failures: the job's own counted up to max_job, then failed with every reason;
 *   - a silent world is lost after heartbeat x liveness, its job requeued (infrastructure); a
 *     heartbeat that no longer lists its job gives the job back; a goodbye forgets it at once;
 *   - a restart (cw_init on the same store): the running job keeps its world, which says hello
 *     again after an ERR_NOT_FOUND; if it does not come back, it is lost;
 *   - drain: an idle world is shut down at once, a busy one after its job, with no new job;
 *   - a world that describes its model gets the planner's layout with its job; a description
 *     out of bounds is refused;
 *   - hostile bytes: garbage, every truncation, another version, oversized, another route for a
 *     world's id: an Error reply or nothing, never a crash; the farm keeps serving.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worlds.h"
#include "test_util.h"

static double g_now = 1000.0;
static double clock_now(void) { return g_now; }

/* the messages sent: the last few, decoded */
#define MAX_SENT 64
static Wanfarm__CoordMessage *g_sent[MAX_SENT];
static char g_route[MAX_SENT][16];
static int g_n;
static void on_send(void *ctx, const uint8_t *route, size_t rn, const uint8_t *msg, size_t n) {
    (void)ctx;
    ProtobufCMessage *m = NULL;
    wf_err e;
    TU_CHECK(wp_decode(WP_COORD_MESSAGE, msg, n, &m, &e) == WF_OK, "a sent message: %s", e.msg);
    if (g_n < MAX_SENT) {
        snprintf(g_route[g_n], sizeof g_route[0], "%.*s", (int)rn, (const char *)route);
        g_sent[g_n++] = (Wanfarm__CoordMessage *)m;
    } else {
        wp_free(m);
    }
}
static void clear_sent(void) {
    for (int k = 0; k < g_n; k++) wp_free(&g_sent[k]->base);
    g_n = 0;
}
/* the last message of this kind sent to route, or NULL */
static Wanfarm__CoordMessage *sent(const char *route, int body) {
    for (int k = g_n - 1; k >= 0; k--)
        if (!strcmp(g_route[k], route) && (int)g_sent[k]->body_case == body) return g_sent[k];
    return NULL;
}
static void quiet(void *ctx, const char *line) { (void)ctx, (void)line; }
static void noop_publish(void *ctx, const char *job, const uint8_t *ev, size_t n) {
    (void)ctx, (void)job, (void)ev, (void)n;
}

/* a WorkerMessage from world id over route */
static void from(cw_farm *f, const char *route, const char *id, Wanfarm__WorkerMessage *m) {
    m->version = WP_VERSION, m->world_id = (char *)id;
    size_t n = protobuf_c_message_get_packed_size(&m->base);
    uint8_t *b = malloc(n + 1);
    WF_ASSERT(b);
    protobuf_c_message_pack(&m->base, b);
    cw_handle(f, (const uint8_t *)route, strlen(route), b, n);
    free(b);
}
/* the tiny model's description, as a world gives it (wanfarm mkmodel --preset tiny12) */
static Wanfarm__PlanModel *g_plan;
static uint64_t g_patch[3] = {1, 2, 2};
static void plan_model(Wanfarm__PlanModel *pm) {
    wanfarm__plan_model__init(pm);
    pm->heads = 2, pm->head_dim = 12, pm->dim = 24, pm->ffn_dim = 48, pm->layers = 2;
    pm->text_dim = 32, pm->freq_dim = 16, pm->in_channels = 16, pm->out_channels = 16;
    pm->n_patch = 3, pm->patch = g_patch, pm->has_expert_2 = 1, pm->expert_params = 1e5;
    pm->t5_dim = 32, pm->t5_ff = 64, pm->t5_layers = 2, pm->t5_inner = 32, pm->t5_heads = 2;
    pm->t5_vocab = 256, pm->t5_params = 1e5, pm->vae_s = 8, pm->vae_st = 4, pm->vae_patch = 1;
    pm->vae_params = 1e5, pm->vae_flop_per_pixel = 1e4, pm->vae_mem_scale = 1;
    pm->sampler_order = 2, pm->row_quantum = 48, pm->has_cpu_threads = 1, pm->cpu_threads = 1;
}
static void hello(cw_farm *f, const char *route, const char *id, const char *model) {
    Wanfarm__Hello h = WANFARM__HELLO__INIT;
    h.ranks = 2, h.model_id = "abc", h.model = (char *)model, h.host = "node7";
    h.plan_model = g_plan;
    Wanfarm__WorkerMessage m = WANFARM__WORKER_MESSAGE__INIT;
    m.body_case = WANFARM__WORKER_MESSAGE__BODY_HELLO, m.hello = &h;
    from(f, route, id, &m);
}
static void beat(cw_farm *f, const char *route, const char *id, const char *job) {
    Wanfarm__Heartbeat hb = WANFARM__HEARTBEAT__INIT;
    char *ids[1] = {(char *)job};
    hb.seq = 1, hb.n_running = job ? 1 : 0, hb.running = ids;
    Wanfarm__WorkerMessage m = WANFARM__WORKER_MESSAGE__INIT;
    m.body_case = WANFARM__WORKER_MESSAGE__BODY_HEARTBEAT, m.heartbeat = &hb;
    from(f, route, id, &m);
}
static void progress(cw_farm *f, const char *route, const char *id, const char *job, int attempt,
                     int step) {
    Wanfarm__Progress p = WANFARM__PROGRESS__INIT;
    p.job_id = (char *)job, p.attempt = (uint32_t)attempt, p.step = (uint32_t)step, p.steps = 10;
    Wanfarm__WorkerMessage m = WANFARM__WORKER_MESSAGE__INIT;
    m.body_case = WANFARM__WORKER_MESSAGE__BODY_PROGRESS, m.progress = &p;
    from(f, route, id, &m);
}
static void result(cw_farm *f, const char *route, const char *id, const char *job, int attempt,
                   const char *output, bool cancelled) {
    Wanfarm__Result r = WANFARM__RESULT__INIT;
    char *outs[1] = {(char *)output};
    r.job_id = (char *)job, r.attempt = (uint32_t)attempt;
    r.n_outputs = output ? 1 : 0, r.outputs = outs;
    r.has_cancelled = cancelled, r.cancelled = cancelled;
    Wanfarm__WorkerMessage m = WANFARM__WORKER_MESSAGE__INIT;
    m.body_case = WANFARM__WORKER_MESSAGE__BODY_RESULT, m.result = &r;
    from(f, route, id, &m);
}
static void failure(cw_farm *f, const char *route, const char *id, const char *job, int attempt,
                    bool infra) {
    Wanfarm__Failure fl = WANFARM__FAILURE__INIT;
    fl.job_id = (char *)job, fl.attempt = (uint32_t)attempt, fl.detail = "latents not finite";
    fl.category = infra ? WANFARM__FAILURE_CATEGORY__FAIL_INFRA : WANFARM__FAILURE_CATEGORY__FAIL_JOB;
    Wanfarm__WorkerMessage m = WANFARM__WORKER_MESSAGE__INIT;
    m.body_case = WANFARM__WORKER_MESSAGE__BODY_FAILURE, m.failure = &fl;
    from(f, route, id, &m);
}

/* a queued job of model with a packed spec (seed 42) */
static void add_job(cw_farm *f, const char *key, const char *model, char id[JS_ID_LEN]) {
    Wanfarm__JobSpec s = WANFARM__JOB_SPEC__INIT;
    s.prompt = "a fox", s.model = (char *)model, s.has_seed = 1, s.seed = 42;
    uint8_t b[256];
    size_t n = wanfarm__job_spec__pack(&s, b);
    const js_new jn = {key, b, n, 0, model, 10, NULL};
    bool ex;
    wf_err e;
    TU_CHECK(js_submit(f->svc->store, &jn, g_now, id, &ex, &e) == WF_OK, "submit: %s", e.msg);
}
static js_job get(cw_farm *f, const char *id) {
    js_job j;
    wf_err e;
    memset(&j, 0, sizeof j);
    TU_CHECK(js_get(f->svc->store, id, &j, &e) == WF_OK, "get %s: %s", id, e.msg);
    return j;
}
static int state_of(cw_farm *f, const char *id) {
    js_job j = get(f, id);
    const int s = j.state;
    js_job_free(&j);
    return s;
}

static void test_hello_assign(cw_farm *f, char j1[JS_ID_LEN], char j2[JS_ID_LEN]) {
    hello(f, "ra", "a", "wan-a");
    Wanfarm__CoordMessage *m = sent("ra", WANFARM__COORD_MESSAGE__BODY_WELCOME);
    TU_CHECK(m && m->welcome->heartbeat_seconds == 0.5 && m->welcome->liveness == 3, "welcome");
    hello(f, "rz", "z", "zzz");
    m = sent("rz", WANFARM__COORD_MESSAGE__BODY_ERROR);
    TU_CHECK(m && m->error->category == WANFARM__ERROR_CATEGORY__ERR_INVALID &&
                 strstr(m->error->message, "does not"), "a world of a model not served is refused");
    TU_CHECK(!cw_find(f, "z"), "the refused world is not kept");
    char other[JS_ID_LEN];
    add_job(f, "k-other", "wan-b", other);
    add_job(f, "k1", "wan-a", j1);
    add_job(f, "k2", "wan-a", j2);
    clear_sent();
    cw_tick(f);
    m = sent("ra", WANFARM__COORD_MESSAGE__BODY_ASSIGN);
    TU_CHECK(m && !strcmp(m->assign->job_id, j1) && m->assign->attempt == 1 &&
                 m->assign->spec->seed == 42 && !m->assign->resume_from,
             "the first job of its model goes to the world");
    cw_tick(f);
    TU_CHECK(g_n == 1, "one job at a time: %d messages", g_n);
    TU_CHECK(state_of(f, other) == JS_QUEUED, "a job of another model waits");
}

static void test_progress_cancel(cw_farm *f, const char *j1) {
    clear_sent();
    progress(f, "ra", "a", j1, 1, 3);
    js_job j = get(f, j1);
    TU_CHECK(j.step == 3 && j.steps == 10, "progress in the store: %lld/%lld", (long long)j.step,
             (long long)j.steps);
    js_job_free(&j);
    progress(f, "ra", "a", j1, 7, 4);
    Wanfarm__CoordMessage *m = sent("ra", WANFARM__COORD_MESSAGE__BODY_CANCEL);
    TU_CHECK(m && m->cancel->attempt == 7, "a stale attempt is told to stop");
    clear_sent();
    int st;
    wf_err e;
    TU_CHECK(js_cancel(f->svc->store, j1, g_now, &st, &e) == WF_OK && st == JS_RUNNING, "cancel");
    progress(f, "ra", "a", j1, 1, 4);
    m = sent("ra", WANFARM__COORD_MESSAGE__BODY_CANCEL);
    TU_CHECK(m && !strcmp(m->cancel->job_id, j1) && m->cancel->attempt == 1,
             "the cancel reaches the world at its next step");
    clear_sent();
    beat(f, "ra", "a", j1);
    m = sent("ra", WANFARM__COORD_MESSAGE__BODY_CANCEL);
    TU_CHECK(m && !strcmp(m->cancel->job_id, j1) && m->cancel->attempt == 1,
             "the cancel reaches the world at its heartbeat");
    result(f, "ra", "a", j1, 1, NULL, true);
    TU_CHECK(state_of(f, j1) == JS_CANCELLED, "the world's cancelled result is taken");
    TU_CHECK(sent("ra", WANFARM__COORD_MESSAGE__BODY_ACK), "and acknowledged");
}

/* a world that becomes free gets its next job at once, not at the next tick */
static void test_next_at_once(const char *j2) {
    Wanfarm__CoordMessage *m = sent("ra", WANFARM__COORD_MESSAGE__BODY_ASSIGN);
    TU_CHECK(m && !strcmp(m->assign->job_id, j2), "the next job with the result's Ack");
}

static void test_results(cw_farm *f, const char *j2) {
    clear_sent();
    g_now += 0.1;
    cw_tick(f);
    TU_CHECK(!sent("ra", WANFARM__COORD_MESSAGE__BODY_ASSIGN), "a busy world gets no second job");
    result(f, "ra", "a", j2, 1, "../../etc/passwd", false);
    TU_CHECK(state_of(f, j2) == JS_RUNNING && !sent("ra", WANFARM__COORD_MESSAGE__BODY_ACK),
             "an output outside the root is not taken");
    result(f, "ra", "a", j2, 1, "fox.mp4", false);
    js_job j = get(f, j2);
    TU_CHECK(j.state == JS_DONE && j.n_outputs == 1 && !strcmp(j.outputs[0], "fox.mp4") &&
                 !strcmp(j.world, "a"), "done, with its output and world");
    js_job_free(&j);
    Wanfarm__CoordMessage *ack = sent("ra", WANFARM__COORD_MESSAGE__BODY_ACK);
    TU_CHECK(ack && !strcmp(ack->ack->job_id, j2), "acknowledged");
    clear_sent();
    result(f, "ra", "a", j2, 1, "fox.mp4", false);
    j = get(f, j2);
    TU_CHECK(sent("ra", WANFARM__COORD_MESSAGE__BODY_ACK) && j.state == JS_DONE && j.n_outputs == 1,
             "a resent result is acknowledged and changes nothing");
    js_job_free(&j);
}

static void test_failures(cw_farm *f) {
    char j3[JS_ID_LEN];
    add_job(f, "k3", "wan-a", j3);
    clear_sent();
    cw_tick(f);
    for (int at = 1; at <= 2; at++) { /* the retry comes with the failure's Ack */
        Wanfarm__CoordMessage *m = sent("ra", WANFARM__COORD_MESSAGE__BODY_ASSIGN);
        TU_CHECK(m && (int)m->assign->attempt == at, "attempt %d assigned", at);
        clear_sent();
        failure(f, "ra", "a", j3, at, false);
        TU_CHECK(sent("ra", WANFARM__COORD_MESSAGE__BODY_ACK), "failure %d acknowledged", at);
    }
    js_job j = get(f, j3);
    TU_CHECK(j.state == JS_FAILED && j.job_failures == 2 && j.n_reasons == 2 &&
                 strstr(j.reasons[1], "not finite") && strstr(j.reasons[1], "node7") == NULL,
             "two job faults (max_job 2): failed with its reasons (state %d, %zu reasons)",
             j.state, j.n_reasons);
    js_job_free(&j);
}

static void test_lost(cw_farm *f) {
    char j4[JS_ID_LEN], j5[JS_ID_LEN];
    add_job(f, "k4", "wan-a", j4);
    hello(f, "rc", "c", "wan-a");
    beat(f, "ra", "a", NULL);
    clear_sent();
    cw_tick(f); /* a takes j4 (it is older in the table), c nothing */
    const char *holder = sent("ra", WANFARM__COORD_MESSAGE__BODY_ASSIGN) ? "a" : "c";
    const char *route = holder[0] == 'a' ? "ra" : "rc";
    g_now += 1.0; /* the other world beats, the holder does not */
    beat(f, holder[0] == 'a' ? "rc" : "ra", holder[0] == 'a' ? "c" : "a", NULL);
    g_now += 0.6; /* 1.6 s > 0.5 x 3 */
    cw_tick(f);
    TU_CHECK(!cw_find(f, holder), "the silent world %s is lost", holder);
    js_job j = get(f, j4);
    TU_CHECK(j.state == JS_RUNNING || j.state == JS_QUEUED, "its job back in the queue (then "
             "reassigned)");
    TU_CHECK(j.infra_failures == 1 && j.job_failures == 0, "charged to the infrastructure");
    js_job_free(&j);
    clear_sent();
    progress(f, route, holder, j4, 1, 5); /* the lost world comes back late */
    Wanfarm__CoordMessage *m = sent(route, WANFARM__COORD_MESSAGE__BODY_ERROR);
    TU_CHECK(m && m->error->category == WANFARM__ERROR_CATEGORY__ERR_NOT_FOUND,
             "a lost world must say hello again");
    /* the survivor holds j4 now; a heartbeat without it, later than two beats: given back */
    const char *surv = holder[0] == 'a' ? "c" : "a", *sroute = holder[0] == 'a' ? "rc" : "ra";
    cw_world *w = cw_find(f, surv);
    TU_CHECK(w && w->n_running == 1, "the survivor took the job");
    g_now += 1.2;
    beat(f, sroute, surv, NULL);
    TU_CHECK(state_of(f, j4) == JS_QUEUED, "a heartbeat that no longer lists the job gives it back");
    /* a goodbye: forgotten at once, its job requeued */
    clear_sent();
    cw_tick(f);
    TU_CHECK(state_of(f, j4) == JS_RUNNING, "reassigned");
    Wanfarm__Goodbye bye = WANFARM__GOODBYE__INIT;
    Wanfarm__WorkerMessage gm = WANFARM__WORKER_MESSAGE__INIT;
    gm.body_case = WANFARM__WORKER_MESSAGE__BODY_GOODBYE, gm.goodbye = &bye;
    from(f, sroute, surv, &gm);
    TU_CHECK(!cw_find(f, surv) && state_of(f, j4) == JS_QUEUED, "goodbye: forgotten, job requeued");
    add_job(f, "k5", "wan-a", j5);
    (void)j5;
}

/* a restart: a new farm on the same store */
static void test_restart(cw_farm *f, js_store *store) {
    hello(f, "rd", "d", "wan-a");
    clear_sent();
    cw_tick(f);
    Wanfarm__CoordMessage *m = sent("rd", WANFARM__COORD_MESSAGE__BODY_ASSIGN);
    TU_CHECK(m != NULL, "d has a job");
    char job[JS_ID_LEN];
    snprintf(job, sizeof job, "%s", m ? m->assign->job_id : "");
    const int attempt = m ? (int)m->assign->attempt : 0;
    cw_free(f);
    cw_farm g = *f;
    wf_err e;
    TU_CHECK(cw_init(&g, &e) == WF_OK, "cw_init: %s", e.msg);
    TU_CHECK(cw_find(&g, "d") && cw_find(&g, "d")->n_running == 1, "the running job keeps world d");
    clear_sent();
    progress(&g, "rd", "d", job, attempt, 2);
    m = sent("rd", WANFARM__COORD_MESSAGE__BODY_ERROR);
    TU_CHECK(m && m->error->category == WANFARM__ERROR_CATEGORY__ERR_NOT_FOUND, "hello first");
    hello(&g, "rd", "d", "wan-a");
    progress(&g, "rd", "d", job, attempt, 3);
    result(&g, "rd", "d", job, attempt, "restart.mp4", false);
    TU_CHECK(state_of(&g, job) == JS_DONE, "the job finishes on its world after the restart");
    /* a world that never comes back after a restart: lost */
    Wanfarm__Goodbye bye = WANFARM__GOODBYE__INIT;
    Wanfarm__WorkerMessage gm = WANFARM__WORKER_MESSAGE__INIT;
    gm.body_case = WANFARM__WORKER_MESSAGE__BODY_GOODBYE, gm.goodbye = &bye;
    from(&g, "rd", "d", &gm);
    hello(&g, "re", "e", "wan-a");
    clear_sent();
    cw_tick(&g);
    m = sent("re", WANFARM__COORD_MESSAGE__BODY_ASSIGN);
    TU_CHECK(m != NULL, "e has a job");
    snprintf(job, sizeof job, "%s", m ? m->assign->job_id : "");
    cw_free(&g);
    g.svc->store = store;
    TU_CHECK(cw_init(&g, &e) == WF_OK, "cw_init");
    g_now += 2.0;
    cw_tick(&g);
    TU_CHECK(!cw_find(&g, "e") && state_of(&g, job) == JS_QUEUED, "e did not come back: lost");
    *f = g;
}

/* a world that describes its model gets the planner's layout with each job; a description out of
 * bounds is refused (the world then plans itself) */
static void test_plan(cw_farm *f) {
    Wanfarm__PlanModel pm;
    plan_model(&pm);
    g_plan = &pm;
    hello(f, "rp", "p", "wan-a");
    char j[JS_ID_LEN];
    add_job(f, "k-plan", "wan-a", j);
    clear_sent();
    cw_tick(f);
    Wanfarm__CoordMessage *m = sent("rp", WANFARM__COORD_MESSAGE__BODY_ASSIGN);
    TU_CHECK(m && m->assign->plan && m->assign->plan->vae_ranks >= 1 &&
                 m->assign->plan->ulysses * (m->assign->plan->cfg_parallel ? 2u : 1u) == 2 &&
                 m->assign->layout && strstr(m->assign->layout, "shared"),
             "a 2-rank world's job carries a layout of 2 ranks: %s",
             m && m->assign->layout ? m->assign->layout : "none");
    if (m) result(f, "rp", "p", m->assign->job_id, (int)m->assign->attempt, "plan.mp4", false);
    pm.heads = 0;
    hello(f, "rq", "q", "wan-a");
    cw_world *w = cw_find(f, "q");
    TU_CHECK(w && !w->has_plan, "a description with 0 heads is refused");
    pm.heads = 2, pm.n_patch = 2;
    hello(f, "rq", "q", "wan-a");
    TU_CHECK(w && !w->has_plan, "a description with 2 patch sizes is refused");
    pm.n_patch = 3, pm.vae_mem_scale = 1e300;
    hello(f, "rq", "q", "wan-a");
    TU_CHECK(w && !w->has_plan, "a description with an absurd number is refused");
    g_plan = NULL;
}

/* drain: an idle world is shut down at once; a busy one after its job, with no new job */
static void test_drain(cw_farm *f) {
    wf_err e;
    TU_CHECK(cw_drain(f, "nobody", NULL, &e) == WF_EINVAL && strstr(e.msg, "no world"),
             "draining an unknown world");
    hello(f, "rs", "s", "wan-a");
    char j1[JS_ID_LEN], j2[JS_ID_LEN];
    add_job(f, "k-drain-1", "wan-a", j1);
    add_job(f, "k-drain-2", "wan-a", j2);
    clear_sent();
    cw_tick(f);
    Wanfarm__CoordMessage *m = sent("rs", WANFARM__COORD_MESSAGE__BODY_ASSIGN);
    const char *job = m ? m->assign->job_id : "";
    char held[JS_ID_LEN];
    snprintf(held, sizeof held, "%s", job);
    const int attempt = m ? (int)m->assign->attempt : 0;
    TU_CHECK(cw_drain(f, "s", "maintenance", &e) == WF_OK, "drain: %s", e.msg);
    TU_CHECK(!sent("rs", WANFARM__COORD_MESSAGE__BODY_SHUTDOWN), "a busy world ends after its job");
    clear_sent();
    result(f, "rs", "s", held, attempt, "drain.mp4", false);
    m = sent("rs", WANFARM__COORD_MESSAGE__BODY_SHUTDOWN);
    TU_CHECK(m && !strcmp(m->shutdown->reason, "maintenance") &&
                 !sent("rs", WANFARM__COORD_MESSAGE__BODY_ASSIGN),
             "its job done, a draining world gets a Shutdown and no new job");
    cw_tick(f);
    TU_CHECK(!sent("rs", WANFARM__COORD_MESSAGE__BODY_ASSIGN), "nor at the next tick");
    hello(f, "rt2", "t2", "wan-a");
    clear_sent();
    TU_CHECK(cw_drain(f, "t2", NULL, &e) == WF_OK && sent("rt2", WANFARM__COORD_MESSAGE__BODY_SHUTDOWN),
             "an idle world is shut down at once");
}

/* the list clients see */
static void test_list(cw_farm *f) {
    Wanfarm__WorldList wl;
    wf_err e;
    TU_CHECK(cw_list(f, &wl, &e) == WF_OK && wl.n_worlds == (size_t)f->n, "cw_list: %zu worlds",
             wl.n_worlds);
    bool found = false;
    for (size_t k = 0; k < wl.n_worlds; k++) {
        const Wanfarm__WorldInfo *w = wl.worlds[k];
        if (strcmp(w->world_id, "p")) continue;
        found = w->ranks == 2 && w->host && !strcmp(w->host, "node7") && w->planned &&
                !strcmp(w->model, "wan-a") && w->n_running <= 1;
    }
    TU_CHECK(found, "world p is listed with its ranks, host, model and plan");
    /* it encodes as a reply */
    Wanfarm__ClientReply r = WANFARM__CLIENT_REPLY__INIT;
    r.version = WP_VERSION, r.request_id = "w";
    r.body_case = WANFARM__CLIENT_REPLY__BODY_WORLDS, r.worlds = &wl;
    uint8_t *b = NULL;
    size_t n = 0;
    TU_CHECK(wp_encode(&r.base, &b, &n, &e) == WF_OK, "the list encodes: %s", e.msg);
    free(b);
    cw_list_free(&wl);
}

static void test_hostile(cw_farm *f) {
    clear_sent();
    const uint8_t junk[] = {0xff, 0x00, 0x13, 0x37, 0xde, 0xad};
    cw_handle(f, (const uint8_t *)"rx", 2, junk, sizeof junk);
    Wanfarm__CoordMessage *m = sent("rx", WANFARM__COORD_MESSAGE__BODY_ERROR);
    TU_CHECK(m && m->error->category == WANFARM__ERROR_CATEGORY__ERR_INVALID, "garbage");
    /* every truncation of a valid hello */
    Wanfarm__Hello h = WANFARM__HELLO__INIT;
    h.ranks = 1, h.model_id = "m", h.model = "wan-a";
    Wanfarm__WorkerMessage w = WANFARM__WORKER_MESSAGE__INIT;
    w.version = WP_VERSION, w.world_id = "t";
    w.body_case = WANFARM__WORKER_MESSAGE__BODY_HELLO, w.hello = &h;
    uint8_t b[512];
    const size_t n = wanfarm__worker_message__pack(&w, b);
    for (size_t k = 0; k < n; k++) cw_handle(f, (const uint8_t *)"rt", 2, b, k);
    TU_CHECK(!cw_find(f, "t"), "a truncated hello registers nothing");
    w.version = WP_VERSION + 1;
    const size_t n2 = wanfarm__worker_message__pack(&w, b);
    clear_sent();
    cw_handle(f, (const uint8_t *)"rv", 2, b, n2);
    m = sent("rv", WANFARM__COORD_MESSAGE__BODY_ERROR);
    TU_CHECK(m && m->error->category == WANFARM__ERROR_CATEGORY__ERR_VERSION, "another version");
    uint8_t *big = calloc(WP_MAX_MSG + 16, 1);
    WF_ASSERT(big);
    cw_handle(f, (const uint8_t *)"ro", 2, big, WP_MAX_MSG + 16);
    free(big);
    uint8_t route[CW_ROUTE_MAX + 8];
    memset(route, 'r', sizeof route);
    cw_handle(f, route, sizeof route, b, n2); /* no reply to a route that long, no crash */
    /* a world's id from another connection */
    clear_sent();
    hello(f, "r1", "dup", "wan-a");
    hello(f, "r2", "dup", "wan-a");
    m = sent("r2", WANFARM__COORD_MESSAGE__BODY_ERROR);
    TU_CHECK(m && m->error->category == WANFARM__ERROR_CATEGORY__ERR_DUPLICATE &&
                 strstr(m->error->message, "held by a live world"),
             "a hello for an id a live world holds is refused");
    beat(f, "r2", "dup", NULL);
    m = sent("r2", WANFARM__COORD_MESSAGE__BODY_ERROR);
    TU_CHECK(m && m->error->category == WANFARM__ERROR_CATEGORY__ERR_NOT_FOUND,
             "a world's id from another route must say hello");
    beat(f, "r1", "dup", NULL);
    TU_CHECK(!sent("r1", WANFARM__COORD_MESSAGE__BODY_ERROR), "the world itself is served");
    g_now += 2.0; /* the holder falls silent: then the id is free for another connection */
    clear_sent();
    hello(f, "r2", "dup", "wan-a");
    TU_CHECK(sent("r2", WANFARM__COORD_MESSAGE__BODY_WELCOME), "a silent world's id is taken over");
}

int main(void) {
    char *dir = tu_tmpdir("worlds");
    WF_ASSERT(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/jobs.db", dir);
    cs_service svc = {0};
    wf_err e;
    WF_ASSERT(js_open(&svc.store, path, &e) == WF_OK);
    svc.models[0] = "wan-a", svc.models[1] = "wan-b", svc.n_models = 2;
    svc.now = clock_now;
    svc.publish = noop_publish;
    cw_farm f = {.svc = &svc, .heartbeat = 0.5, .liveness = 3, .max_job = 2, .max_infra = 5,
                 .checkpoint_every = 4, .send = on_send, .log = quiet};
    WF_ASSERT(cw_init(&f, &e) == WF_OK);
    char j1[JS_ID_LEN], j2[JS_ID_LEN];
    test_hello_assign(&f, j1, j2);
    test_progress_cancel(&f, j1);
    test_next_at_once(j2);
    test_results(&f, j2);
    test_failures(&f);
    test_lost(&f);
    test_restart(&f, svc.store);
    test_plan(&f);
    test_list(&f);
    test_drain(&f);
    test_hostile(&f);
    clear_sent();
    cw_free(&f);
    js_close(&svc.store);
    tu_rmtree(dir);
    free(dir);
    if (tu_failures) {
        printf("test_worlds: %d failures\n", tu_failures);
        return 1;
    }
    printf("test_worlds: OK\n");
    return 0;
}
