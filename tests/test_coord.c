/* test_coord.c: the coordinator's answers to clients (coordinator/service.h), without sockets.
 *   - submit: an id, committed; the same key and spec again: the same job (existing); the same
 *     key for another spec: ERR_DUPLICATE; the default model filled in;
 *   - every admission rule refuses with ERR_INVALID naming the field: an empty prompt, sizes
 *     not multiples of 16 or out of range, frames not 4k+1, steps 0, guidance and boundary out of
 *     range, an unknown sampler or model, and output names that are absolute, hold "..", ".", an
 *     empty component, a leading '-', a trailing '/', a byte outside the set, or are too long;
 *   - status, cancel: the job, or ERR_NOT_FOUND; list: every job, or those of a state;
 *   - a full queue (max_queued) answers ERR_BUSY to a new job, and still a known key's retry;
 *   - hostile bytes (garbage, every truncation of a valid request, oversized, another version,
 *     a NaN) get an Error reply of the right category, never a crash, and leave the store as it
 *     was; the service keeps answering.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service.h"
#include "test_util.h"

static double fake_now(void) { return 1000.0; }

/* the events published: each must decode; the last one's job and new state are kept */
static int n_events;
static char last_job[JS_ID_LEN];
static int last_to;
static void on_publish(void *ctx, const char *job, const uint8_t *ev, size_t n) {
    (void)ctx;
    ProtobufCMessage *m = NULL;
    wf_err e;
    TU_CHECK(wp_decode(WP_EVENT, ev, n, &m, &e) == WF_OK, "a published event: %s", e.msg);
    const Wanfarm__Event *x = (const Wanfarm__Event *)m;
    TU_CHECK(m && !strcmp(x->job_id, job) && x->body_case == WANFARM__EVENT__BODY_STATE,
             "the event's topic and body");
    if (m) snprintf(last_job, sizeof last_job, "%s", x->job_id), last_to = x->state->to;
    n_events++;
    wp_free(m);
}

/* cs_handle on a request; the decoded reply (caller frees with wp_free) */
static Wanfarm__ClientReply *ask(cs_service *svc, const void *b, size_t n) {
    uint8_t *r = NULL;
    size_t rn = 0;
    wf_err e;
    TU_CHECK(cs_handle(svc, b, n, &r, &rn, &e) == WF_OK, "no reply: %s", e.msg);
    ProtobufCMessage *m = NULL;
    TU_CHECK(r && wp_decode(WP_CLIENT_REPLY, r, rn, &m, &e) == WF_OK, "bad reply: %s", e.msg);
    free(r);
    return (Wanfarm__ClientReply *)m;
}

static Wanfarm__ClientReply *ask_msg(cs_service *svc, const Wanfarm__ClientRequest *q) {
    size_t n = protobuf_c_message_get_packed_size(&q->base);
    uint8_t *b = malloc(n + 1);
    WF_ASSERT(b);
    protobuf_c_message_pack(&q->base, b);
    Wanfarm__ClientReply *r = ask(svc, b, n);
    free(b);
    return r;
}

static Wanfarm__ClientReply *submit(cs_service *svc, const Wanfarm__JobSpec *spec, const char *key) {
    Wanfarm__Submit sub = WANFARM__SUBMIT__INIT;
    sub.spec = (Wanfarm__JobSpec *)spec, sub.idempotency_key = (char *)key;
    Wanfarm__ClientRequest q = WANFARM__CLIENT_REQUEST__INIT;
    q.version = WP_VERSION, q.request_id = "req";
    q.body_case = WANFARM__CLIENT_REQUEST__BODY_SUBMIT, q.submit = &sub;
    return ask_msg(svc, &q);
}

/* the reply must be an Error of category cat whose message holds text */
static void expect_error(Wanfarm__ClientReply *r, Wanfarm__ErrorCategory cat, const char *text,
                         const char *what) {
    TU_CHECK(r && r->body_case == WANFARM__CLIENT_REPLY__BODY_ERROR && r->error->category == cat &&
                 strstr(r->error->message, text),
             "%s: want error %d with '%s', got %s", what, cat, text,
             !r ? "nothing" : r->body_case == WANFARM__CLIENT_REPLY__BODY_ERROR ? r->error->message
                                                                              : "no error");
    wp_free(r ? &r->base : NULL);
}

static int count_jobs(cs_service *svc, int state) {
    Wanfarm__List li = WANFARM__LIST__INIT;
    if (state) li.has_state = 1, li.state = state;
    Wanfarm__ClientRequest q = WANFARM__CLIENT_REQUEST__INIT;
    q.version = WP_VERSION, q.request_id = "l";
    q.body_case = WANFARM__CLIENT_REQUEST__BODY_LIST, q.list = &li;
    Wanfarm__ClientReply *r = ask_msg(svc, &q);
    int n = r && r->body_case == WANFARM__CLIENT_REPLY__BODY_JOBS ? (int)r->jobs->n_jobs : -1;
    wp_free(r ? &r->base : NULL);
    return n;
}

static void test_submit(cs_service *svc) {
    Wanfarm__JobSpec s = WANFARM__JOB_SPEC__INIT;
    s.prompt = "a red fox", s.has_width = s.has_height = 1, s.width = 64, s.height = 48;
    Wanfarm__ClientReply *r = submit(svc, &s, "k1");
    TU_CHECK(r && r->body_case == WANFARM__CLIENT_REPLY__BODY_SUBMITTED &&
                 !strcmp(r->submitted->job_id, "j000001") && !r->submitted->existing &&
                 !strcmp(r->request_id, "req"),
             "first submit");
    wp_free(r ? &r->base : NULL);
    TU_CHECK(n_events == 1 && !strcmp(last_job, "j000001") && last_to == JS_QUEUED,
             "a submit publishes the job queued (%d events)", n_events);
    r = submit(svc, &s, "k1");
    TU_CHECK(n_events == 1, "a retried submit publishes nothing");
    TU_CHECK(r && r->body_case == WANFARM__CLIENT_REPLY__BODY_SUBMITTED && r->submitted->existing &&
                 !strcmp(r->submitted->job_id, "j000001"),
             "a retried submit is the same job");
    wp_free(r ? &r->base : NULL);
    s.prompt = "a blue fox";
    expect_error(submit(svc, &s, "k1"), WANFARM__ERROR_CATEGORY__ERR_DUPLICATE, "another spec",
                 "a key reused");
    /* the stored spec names the default model */
    Wanfarm__Status st = WANFARM__STATUS__INIT;
    st.job_id = "j000001";
    Wanfarm__ClientRequest q = WANFARM__CLIENT_REQUEST__INIT;
    q.version = WP_VERSION, q.request_id = "s";
    q.body_case = WANFARM__CLIENT_REQUEST__BODY_STATUS, q.status = &st;
    r = ask_msg(svc, &q);
    TU_CHECK(r && r->body_case == WANFARM__CLIENT_REPLY__BODY_JOB &&
                 r->job->state == WANFARM__JOB_STATE__JOB_QUEUED &&
                 !strcmp(r->job->spec->model, "wan-a") && r->job->spec->width == 64,
             "status of j000001");
    wp_free(r ? &r->base : NULL);
    st.job_id = "j424242";
    expect_error(ask_msg(svc, &q), WANFARM__ERROR_CATEGORY__ERR_NOT_FOUND, "no job", "unknown job");
}

static void test_admission(cs_service *svc) {
    typedef struct { const char *what, *text; Wanfarm__JobSpec s; } bad;
    bad b[24];
    int nb = 0;
    Wanfarm__JobSpec ok = WANFARM__JOB_SPEC__INIT;
    ok.prompt = "fine";
#define BAD(w, t, stmt)                                                                           \
    do {                                                                                          \
        bad *x = &b[nb++];                                                                        \
        x->what = w, x->text = t, x->s = ok;                                                      \
        Wanfarm__JobSpec *s = &x->s;                                                              \
        stmt;                                                                                     \
    } while (0)
    BAD("blank prompt", "prompt is empty", s->prompt = "  \n ");
    BAD("width 100", "multiples of 16", (s->has_width = 1, s->width = 100));
    BAD("height 0", "height 0 is outside", (s->has_height = 1, s->height = 0));
    BAD("width 32768", "width 32768 is outside", (s->has_width = 1, s->width = 32768));
    BAD("frames 10", "4k+1", (s->has_frames = 1, s->frames = 10));
    BAD("steps 0", "steps 0 is outside", (s->has_steps = 1, s->steps = 0));
    BAD("guidance 101", "guidance 101", (s->has_guidance = 1, s->guidance = 101));
    BAD("boundary 2", "boundary 2", (s->has_boundary = 1, s->boundary = 2));
    BAD("shift 0", "shift 0", (s->has_shift = 1, s->shift = 0));
    BAD("sampler", "unipc or euler", s->sampler = "ddim");
    BAD("model", "not served here (wan-a, wan-b)", s->model = "sdxl");
    BAD("absolute", "is absolute", s->output_name = "/etc/cron.d/x");
    BAD("dotdot", "'..' is not allowed", s->output_name = "a/../../b");
    BAD("dot", "'.' is not allowed", s->output_name = "./b");
    BAD("empty comp", "'' is not allowed", s->output_name = "a//b");
    BAD("dash", "'-rf' is not allowed", s->output_name = "-rf");
    BAD("trailing", "ends with '/'", s->output_name = "a/");
    BAD("bytes", "is not one of", s->output_name = "a b");
    BAD("newline", "is not one of", s->output_name = "a\nb");
    char longname[300];
    memset(longname, 'a', 250);
    longname[250] = 0;
    BAD("long", "at most 200", s->output_name = longname);
    for (int k = 0; k < nb; k++) {
        char key[32];
        snprintf(key, sizeof key, "bad-%d", k);
        expect_error(submit(svc, &b[k].s, key), WANFARM__ERROR_CATEGORY__ERR_INVALID, b[k].text,
                     b[k].what);
    }
    Wanfarm__JobSpec good = ok;
    good.output_name = "fox/take-1+b.v2";
    good.model = "wan-b";
    Wanfarm__ClientReply *r = submit(svc, &good, "good");
    TU_CHECK(r && r->body_case == WANFARM__CLIENT_REPLY__BODY_SUBMITTED, "a good name and model");
    wp_free(r ? &r->base : NULL);
}

static void test_hostile(cs_service *svc) {
    const int before = count_jobs(svc, 0);
    expect_error(ask(svc, "\xff\x01garbage", 9), WANFARM__ERROR_CATEGORY__ERR_INVALID,
                 "not a valid ClientRequest", "garbage");
    uint8_t *huge = calloc(WP_MAX_MSG + 1, 1);
    WF_ASSERT(huge);
    expect_error(ask(svc, huge, WP_MAX_MSG + 1), WANFARM__ERROR_CATEGORY__ERR_INVALID, "limit",
                 "oversized");
    free(huge);
    Wanfarm__JobSpec s = WANFARM__JOB_SPEC__INIT;
    s.prompt = "x", s.has_guidance = 1, s.guidance = NAN;
    Wanfarm__Submit sub = WANFARM__SUBMIT__INIT;
    sub.spec = &s, sub.idempotency_key = "nan";
    Wanfarm__ClientRequest q = WANFARM__CLIENT_REQUEST__INIT;
    q.version = WP_VERSION, q.request_id = "r";
    q.body_case = WANFARM__CLIENT_REQUEST__BODY_SUBMIT, q.submit = &sub;
    expect_error(ask_msg(svc, &q), WANFARM__ERROR_CATEGORY__ERR_INVALID, "not a finite", "NaN");
    s.guidance = 4;
    q.version = 7;
    expect_error(ask_msg(svc, &q), WANFARM__ERROR_CATEGORY__ERR_VERSION, "version 7", "version 7");
    q.version = WP_VERSION;
    sub.idempotency_key = "trunc";
    size_t n = protobuf_c_message_get_packed_size(&q.base);
    uint8_t *b = malloc(n);
    WF_ASSERT(b);
    protobuf_c_message_pack(&q.base, b);
    for (size_t cut = 0; cut < n; cut++) { /* every truncation: a reply, whatever it says */
        Wanfarm__ClientReply *r = ask(svc, b, cut);
        TU_CHECK(r != NULL, "truncation at %zu got no reply", cut);
        wp_free(r ? &r->base : NULL);
    }
    free(b);
    TU_CHECK(count_jobs(svc, 0) == before, "hostile bytes changed the store (%d -> %d jobs)",
             before, count_jobs(svc, 0));
}

/* a list longer than its first allocation: every job, each with its own id */
static void test_long_list(cs_service *svc) {
    const int before = count_jobs(svc, 0);
    Wanfarm__JobSpec s = WANFARM__JOB_SPEC__INIT;
    char key[32], prompt[32];
    for (int k = 0; k < 40; k++) {
        snprintf(key, sizeof key, "many-%d", k);
        snprintf(prompt, sizeof prompt, "job %d", k);
        s.prompt = prompt;
        wp_free(&submit(svc, &s, key)->base);
    }
    Wanfarm__List li = WANFARM__LIST__INIT;
    Wanfarm__ClientRequest q = WANFARM__CLIENT_REQUEST__INIT;
    q.version = WP_VERSION, q.request_id = "l";
    q.body_case = WANFARM__CLIENT_REQUEST__BODY_LIST, q.list = &li;
    Wanfarm__ClientReply *r = ask_msg(svc, &q);
    int ids_ok = r && r->body_case == WANFARM__CLIENT_REPLY__BODY_JOBS &&
                 (int)r->jobs->n_jobs == before + 40;
    for (size_t k = 0; ids_ok && k < r->jobs->n_jobs; k++) {
        char want[JS_ID_LEN];
        snprintf(want, sizeof want, "j%06d", (int)k + 1);
        ids_ok = !strcmp(r->jobs->jobs[k]->job_id, want);
    }
    TU_CHECK(ids_ok, "a list of %d jobs, each with its id", before + 40);
    wp_free(r ? &r->base : NULL);
}

/* a full queue answers ERR_BUSY to a new job, and still the retry of a known one */
static void test_busy(cs_service *svc) {
    const int queued = count_jobs(svc, WANFARM__JOB_STATE__JOB_QUEUED);
    svc->max_queued = queued;
    Wanfarm__JobSpec s = WANFARM__JOB_SPEC__INIT;
    s.prompt = "one too many";
    expect_error(submit(svc, &s, "busy-1"), WANFARM__ERROR_CATEGORY__ERR_BUSY, "retry later",
                 "a full queue");
    s.prompt = "job 0";
    Wanfarm__ClientReply *r = submit(svc, &s, "many-0");
    TU_CHECK(r && r->body_case == WANFARM__CLIENT_REPLY__BODY_SUBMITTED && r->submitted->existing,
             "a known key's retry is answered even when the queue is full");
    wp_free(r ? &r->base : NULL);
    svc->max_queued = 0;
    TU_CHECK(count_jobs(svc, WANFARM__JOB_STATE__JOB_QUEUED) == queued, "a busy refusal stored a job");
}

static void test_cancel_list(cs_service *svc) {
    Wanfarm__Cancel c = WANFARM__CANCEL__INIT;
    c.job_id = "j000001";
    Wanfarm__ClientRequest q = WANFARM__CLIENT_REQUEST__INIT;
    q.version = WP_VERSION, q.request_id = "c";
    q.body_case = WANFARM__CLIENT_REQUEST__BODY_CANCEL, q.cancel = &c;
    Wanfarm__ClientReply *r = ask_msg(svc, &q);
    TU_CHECK(r && r->body_case == WANFARM__CLIENT_REPLY__BODY_JOB &&
                 r->job->state == WANFARM__JOB_STATE__JOB_CANCELLED,
             "cancel of a queued job");
    TU_CHECK(!strcmp(last_job, "j000001") && last_to == JS_CANCELLED, "a cancel publishes it");
    wp_free(r ? &r->base : NULL);
    c.job_id = "nope";
    expect_error(ask_msg(svc, &q), WANFARM__ERROR_CATEGORY__ERR_NOT_FOUND, "no job", "cancel nope");
    TU_CHECK(count_jobs(svc, WANFARM__JOB_STATE__JOB_CANCELLED) == 1 &&
                 count_jobs(svc, WANFARM__JOB_STATE__JOB_QUEUED) == 1 && count_jobs(svc, 0) == 2,
             "list by state: cancelled %d, queued %d, all %d",
             count_jobs(svc, WANFARM__JOB_STATE__JOB_CANCELLED),
             count_jobs(svc, WANFARM__JOB_STATE__JOB_QUEUED), count_jobs(svc, 0));
}

int main(void) {
    char *dir = tu_tmpdir("coord");
    WF_ASSERT(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/jobs.db", dir);
    cs_service svc = {0};
    wf_err e;
    WF_ASSERT(js_open(&svc.store, path, &e) == WF_OK);
    svc.models[0] = "wan-a", svc.models[1] = "wan-b", svc.n_models = 2;
    svc.events = "tcp://127.0.0.1:5556";
    svc.now = fake_now;
    svc.publish = on_publish;
    test_submit(&svc);
    test_admission(&svc);
    test_hostile(&svc);
    test_cancel_list(&svc);
    test_long_list(&svc);
    test_busy(&svc);
    js_close(&svc.store);
    tu_rmtree(dir);
    free(dir);
    if (tu_failures) {
        printf("test_coord: %d failures\n", tu_failures);
        return 1;
    }
    printf("test_coord: OK\n");
    return 0;
}
