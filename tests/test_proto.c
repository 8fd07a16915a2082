/* test_proto.c: the farm's wire codec (proto/wire.h) against what it promises.
 *   - every envelope kind, fully populated, round-trips: decode(encode(m)) re-encodes to the same
 *     bytes, and the fields read back equal the ones written;
 *   - a field this build does not know, appended to valid bytes, is tolerated;
 *   - refused, each with its reason in the message: a missing required field (hand-made bytes,
 *     top level and nested), another protocol version, an envelope without a body, a message over
 *     WP_MAX_MSG, a NaN or infinite number, an enum value the schema lacks, a string that is not
 *     UTF-8 or is over WP_MAX_STRING, and (wp_encode) our own message with such a field;
 *   - every truncation of a valid message and 20 000 random or mutated buffers decode without a
 *     crash or a leak (this test also runs under ASan/UBSan: label parser), and whatever decodes
 *     passes the checks again.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "wire.h"

/* ---- messages to send ---- */

static Wanfarm__JobSpec g_spec = WANFARM__JOB_SPEC__INIT;

static void fill_spec(void) {
    Wanfarm__JobSpec *s = &g_spec;
    s->prompt = "a red fox in the snow, \xe9\x9b\xaa";
    s->negative_prompt = "blurry";
    s->model = "wan2.2-t2v-a14b";
    s->has_width = s->has_height = s->has_frames = s->has_steps = 1;
    s->width = 1280, s->height = 720, s->frames = 81, s->steps = 40;
    s->has_guidance = s->has_guidance_2 = s->has_boundary = s->has_shift = 1;
    s->guidance = 5.0, s->guidance_2 = 3.5, s->boundary = 0.875, s->shift = 12.0;
    s->sampler = "unipc";
    s->has_seed = 1, s->seed = 18446744073709551615ull;
    s->has_max_sequence_length = 1, s->max_sequence_length = 512;
    s->output_name = "fox/take-1";
    s->has_save_latents = 1, s->save_latents = 1;
    s->has_priority = 1, s->priority = -3;
}

/* encode or fail the test */
static uint8_t *enc(const ProtobufCMessage *m, size_t *n) {
    uint8_t *b = NULL;
    wf_err e;
    wf_status st = wp_encode(m, &b, n, &e);
    TU_CHECK(st == WF_OK, "encode %s: %s", m->descriptor->short_name, e.msg);
    return b;
}

/* decode(encode(m)) re-encodes to the same bytes; returns the decoded message */
static ProtobufCMessage *round_trip(wp_kind k, const ProtobufCMessage *m) {
    size_t n = 0, n2 = 0;
    uint8_t *b = enc(m, &n);
    ProtobufCMessage *d = NULL;
    wf_err e;
    if (!b) return NULL;
    TU_CHECK(wp_decode(k, b, n, &d, &e) == WF_OK, "decode %s: %s", wp_kind_name(k), e.msg);
    if (d) {
        uint8_t *b2 = enc(d, &n2);
        TU_CHECK(b2 && n2 == n && !memcmp(b, b2, n), "%s: re-encoded bytes differ", wp_kind_name(k));
        free(b2);
    }
    free(b);
    return d;
}

static void test_client_request(void) {
    Wanfarm__Submit sub = WANFARM__SUBMIT__INIT;
    sub.spec = &g_spec;
    sub.idempotency_key = "k-0001";
    Wanfarm__ClientRequest r = WANFARM__CLIENT_REQUEST__INIT;
    r.version = WP_VERSION;
    r.request_id = "req-1";
    r.body_case = WANFARM__CLIENT_REQUEST__BODY_SUBMIT;
    r.submit = &sub;
    Wanfarm__ClientRequest *d = (Wanfarm__ClientRequest *)round_trip(WP_CLIENT_REQUEST, &r.base);
    if (d) {
        const Wanfarm__JobSpec *s = d->submit->spec;
        TU_CHECK(d->body_case == WANFARM__CLIENT_REQUEST__BODY_SUBMIT &&
                     !strcmp(s->prompt, g_spec.prompt) && s->guidance == 5.0 &&
                     s->seed == g_spec.seed && s->priority == -3 && s->frames == 81 &&
                     !strcmp(d->submit->idempotency_key, "k-0001") &&
                     !strcmp(s->output_name, "fox/take-1"),
                 "ClientRequest fields read back differ");
        wp_free(&d->base);
    }
    /* the other bodies */
    Wanfarm__List li = WANFARM__LIST__INIT;
    li.has_state = 1, li.state = WANFARM__JOB_STATE__JOB_RUNNING, li.has_limit = 1, li.limit = 7;
    r.body_case = WANFARM__CLIENT_REQUEST__BODY_LIST;
    r.list = &li;
    d = (Wanfarm__ClientRequest *)round_trip(WP_CLIENT_REQUEST, &r.base);
    TU_CHECK(d && d->list->state == WANFARM__JOB_STATE__JOB_RUNNING && d->list->limit == 7,
             "List fields");
    wp_free(d ? &d->base : NULL);
    char *ids[2] = {"j1", "j2"};
    Wanfarm__Watch w = WANFARM__WATCH__INIT;
    w.n_job_ids = 2, w.job_ids = ids;
    r.body_case = WANFARM__CLIENT_REQUEST__BODY_WATCH;
    r.watch = &w;
    d = (Wanfarm__ClientRequest *)round_trip(WP_CLIENT_REQUEST, &r.base);
    TU_CHECK(d && d->watch->n_job_ids == 2 && !strcmp(d->watch->job_ids[1], "j2"), "Watch fields");
    wp_free(d ? &d->base : NULL);
    Wanfarm__Cancel c = WANFARM__CANCEL__INIT;
    c.job_id = "j9";
    r.body_case = WANFARM__CLIENT_REQUEST__BODY_CANCEL;
    r.cancel = &c;
    wp_free(round_trip(WP_CLIENT_REQUEST, &r.base));
    Wanfarm__Status stt = WANFARM__STATUS__INIT;
    stt.job_id = "j9";
    r.body_case = WANFARM__CLIENT_REQUEST__BODY_STATUS;
    r.status = &stt;
    wp_free(round_trip(WP_CLIENT_REQUEST, &r.base));
}

static void test_client_reply(void) {
    Wanfarm__JobInfo ji = WANFARM__JOB_INFO__INIT;
    char *outs[2] = {"fox/take-1.mp4", "fox/take-1.h5"}, *why[1] = {"world w2 lost (heartbeat)"};
    ji.job_id = "j1", ji.state = WANFARM__JOB_STATE__JOB_DONE, ji.spec = &g_spec;
    ji.has_step = ji.has_steps = ji.has_attempts = 1, ji.step = 40, ji.steps = 40, ji.attempts = 2;
    ji.n_outputs = 2, ji.outputs = outs, ji.n_reasons = 1, ji.reasons = why;
    ji.has_submitted_at = 1, ji.submitted_at = 1.7e9;
    Wanfarm__JobInfo *jobs[1] = {&ji};
    Wanfarm__JobList jl = WANFARM__JOB_LIST__INIT;
    jl.n_jobs = 1, jl.jobs = jobs;
    Wanfarm__ClientReply r = WANFARM__CLIENT_REPLY__INIT;
    r.version = WP_VERSION, r.request_id = "req-1";
    r.body_case = WANFARM__CLIENT_REPLY__BODY_JOBS, r.jobs = &jl;
    Wanfarm__ClientReply *d = (Wanfarm__ClientReply *)round_trip(WP_CLIENT_REPLY, &r.base);
    TU_CHECK(d && d->jobs->n_jobs == 1 && d->jobs->jobs[0]->n_outputs == 2 &&
                 !strcmp(d->jobs->jobs[0]->reasons[0], why[0]) && d->jobs->jobs[0]->attempts == 2,
             "JobList fields");
    wp_free(d ? &d->base : NULL);
    Wanfarm__Error er = WANFARM__ERROR__INIT;
    er.category = WANFARM__ERROR_CATEGORY__ERR_DUPLICATE, er.message = "key k-1 names job j3";
    r.body_case = WANFARM__CLIENT_REPLY__BODY_ERROR, r.error = &er;
    d = (Wanfarm__ClientReply *)round_trip(WP_CLIENT_REPLY, &r.base);
    TU_CHECK(d && d->error->category == WANFARM__ERROR_CATEGORY__ERR_DUPLICATE, "Error fields");
    wp_free(d ? &d->base : NULL);
    Wanfarm__SubmitReply sr = WANFARM__SUBMIT_REPLY__INIT;
    sr.job_id = "j1", sr.existing = 1;
    r.body_case = WANFARM__CLIENT_REPLY__BODY_SUBMITTED, r.submitted = &sr;
    wp_free(round_trip(WP_CLIENT_REPLY, &r.base));
}

static void test_worker_messages(void) {
    Wanfarm__Device dv = WANFARM__DEVICE__INIT;
    dv.name = "NVIDIA H200", dv.has_memory = 1, dv.memory = 150000000000ull;
    Wanfarm__Device *devs[2] = {&dv, &dv};
    Wanfarm__Hello h = WANFARM__HELLO__INIT;
    h.ranks = 2, h.model_id = "sha256:abc", h.layout = "shared U=2, vae 2";
    h.n_devices = 2, h.devices = devs, h.has_stage = 1, h.stage = WANFARM__STAGE__STAGE_HIGH;
    Wanfarm__WorkerMessage w = WANFARM__WORKER_MESSAGE__INIT;
    w.version = WP_VERSION, w.world_id = "w1";
    w.body_case = WANFARM__WORKER_MESSAGE__BODY_HELLO, w.hello = &h;
    Wanfarm__WorkerMessage *d = (Wanfarm__WorkerMessage *)round_trip(WP_WORKER_MESSAGE, &w.base);
    TU_CHECK(d && d->hello->n_devices == 2 && d->hello->devices[1]->memory == dv.memory &&
                 d->hello->stage == WANFARM__STAGE__STAGE_HIGH,
             "Hello fields");
    wp_free(d ? &d->base : NULL);
    Wanfarm__Progress p = WANFARM__PROGRESS__INIT;
    p.job_id = "j1", p.attempt = 3, p.step = 12, p.steps = 40, p.has_step_seconds = 1;
    p.step_seconds = 2.5;
    w.body_case = WANFARM__WORKER_MESSAGE__BODY_PROGRESS, w.progress = &p;
    wp_free(round_trip(WP_WORKER_MESSAGE, &w.base));
    Wanfarm__Failure f = WANFARM__FAILURE__INIT;
    f.job_id = "j1", f.attempt = 3, f.category = WANFARM__FAILURE_CATEGORY__FAIL_INFRA;
    f.host = "node7", f.has_rank = 1, f.rank = 5, f.detail = "rank 5 stopped answering";
    w.body_case = WANFARM__WORKER_MESSAGE__BODY_FAILURE, w.failure = &f;
    d = (Wanfarm__WorkerMessage *)round_trip(WP_WORKER_MESSAGE, &w.base);
    TU_CHECK(d && d->failure->rank == 5 && !strcmp(d->failure->host, "node7"), "Failure fields");
    wp_free(d ? &d->base : NULL);
    Wanfarm__Heartbeat hb = WANFARM__HEARTBEAT__INIT;
    hb.seq = 99;
    w.body_case = WANFARM__WORKER_MESSAGE__BODY_HEARTBEAT, w.heartbeat = &hb;
    wp_free(round_trip(WP_WORKER_MESSAGE, &w.base));
    Wanfarm__CheckpointWritten cw = WANFARM__CHECKPOINT_WRITTEN__INIT;
    cw.job_id = "j1", cw.attempt = 3, cw.step = 20, cw.path = "j1/ckpt-20.h5";
    w.body_case = WANFARM__WORKER_MESSAGE__BODY_CHECKPOINT, w.checkpoint = &cw;
    wp_free(round_trip(WP_WORKER_MESSAGE, &w.base));
    Wanfarm__Result rs = WANFARM__RESULT__INIT;
    char *outs[1] = {"fox.mp4"};
    rs.job_id = "j1", rs.attempt = 3, rs.n_outputs = 1, rs.outputs = outs;
    w.body_case = WANFARM__WORKER_MESSAGE__BODY_RESULT, w.result = &rs;
    wp_free(round_trip(WP_WORKER_MESSAGE, &w.base));

    Wanfarm__Assignment a = WANFARM__ASSIGNMENT__INIT;
    a.job_id = "j1", a.attempt = 4, a.spec = &g_spec, a.resume_from = "j1/ckpt-20.h5";
    a.has_checkpoint_every = 1, a.checkpoint_every = 5;
    Wanfarm__CoordMessage c = WANFARM__COORD_MESSAGE__INIT;
    c.version = WP_VERSION, c.body_case = WANFARM__COORD_MESSAGE__BODY_ASSIGN, c.assign = &a;
    Wanfarm__CoordMessage *dc = (Wanfarm__CoordMessage *)round_trip(WP_COORD_MESSAGE, &c.base);
    TU_CHECK(dc && dc->assign->attempt == 4 && !strcmp(dc->assign->resume_from, a.resume_from),
             "Assignment fields");
    wp_free(dc ? &dc->base : NULL);
    Wanfarm__Welcome wl = WANFARM__WELCOME__INIT;
    wl.heartbeat_seconds = 1.0, wl.liveness = 3;
    c.body_case = WANFARM__COORD_MESSAGE__BODY_WELCOME, c.welcome = &wl;
    wp_free(round_trip(WP_COORD_MESSAGE, &c.base));
    Wanfarm__Ack ack = WANFARM__ACK__INIT;
    ack.job_id = "j1", ack.attempt = 4;
    c.body_case = WANFARM__COORD_MESSAGE__BODY_ACK, c.ack = &ack;
    dc = (Wanfarm__CoordMessage *)round_trip(WP_COORD_MESSAGE, &c.base);
    TU_CHECK(dc && dc->ack->attempt == 4 && !strcmp(dc->ack->job_id, "j1"), "Ack fields");
    wp_free(dc ? &dc->base : NULL);
    Wanfarm__CancelJob cj = WANFARM__CANCEL_JOB__INIT;
    cj.job_id = "j1", cj.attempt = 4;
    c.body_case = WANFARM__COORD_MESSAGE__BODY_CANCEL, c.cancel = &cj;
    wp_free(round_trip(WP_COORD_MESSAGE, &c.base));
    Wanfarm__Shutdown sd = WANFARM__SHUTDOWN__INIT;
    sd.reason = "maintenance";
    c.body_case = WANFARM__COORD_MESSAGE__BODY_SHUTDOWN, c.shutdown = &sd;
    wp_free(round_trip(WP_COORD_MESSAGE, &c.base));
    Wanfarm__WorldInfo wi = WANFARM__WORLD_INFO__INIT;
    char *running[1] = {"j7"};
    wi.world_id = "w1", wi.ranks = 4, wi.n_running = 1, wi.running = running;
    wi.has_silent_seconds = 1, wi.silent_seconds = 0.25;
    Wanfarm__WorldInfo *wis[1] = {&wi};
    Wanfarm__WorldList wls = WANFARM__WORLD_LIST__INIT;
    wls.n_worlds = 1, wls.worlds = wis;
    Wanfarm__ClientReply wr = WANFARM__CLIENT_REPLY__INIT;
    wr.version = WP_VERSION, wr.request_id = "w";
    wr.body_case = WANFARM__CLIENT_REPLY__BODY_WORLDS, wr.worlds = &wls;
    Wanfarm__ClientReply *dr = (Wanfarm__ClientReply *)round_trip(WP_CLIENT_REPLY, &wr.base);
    TU_CHECK(dr && dr->worlds->n_worlds == 1 && dr->worlds->worlds[0]->ranks == 4 &&
                 !strcmp(dr->worlds->worlds[0]->running[0], "j7"), "WorldList fields");
    wp_free(dr ? &dr->base : NULL);
    Wanfarm__Goodbye bye = WANFARM__GOODBYE__INIT;
    bye.reason = "SIGTERM";
    w.body_case = WANFARM__WORKER_MESSAGE__BODY_GOODBYE, w.goodbye = &bye;
    Wanfarm__WorkerMessage *dw = (Wanfarm__WorkerMessage *)round_trip(WP_WORKER_MESSAGE, &w.base);
    TU_CHECK(dw && !strcmp(dw->goodbye->reason, "SIGTERM"), "Goodbye fields");
    wp_free(dw ? &dw->base : NULL);
    rs.has_handed_on = 1, rs.handed_on = 1, rs.has_step = 1, rs.step = 9;
    rs.has_cancelled = 1, rs.cancelled = 0;
    w.body_case = WANFARM__WORKER_MESSAGE__BODY_RESULT, w.result = &rs;
    dw = (Wanfarm__WorkerMessage *)round_trip(WP_WORKER_MESSAGE, &w.base);
    TU_CHECK(dw && dw->result->handed_on && dw->result->step == 9 && dw->result->has_cancelled &&
                 !dw->result->cancelled, "Result's hand-off fields");
    wp_free(dw ? &dw->base : NULL);

    Wanfarm__StateChange sc = WANFARM__STATE_CHANGE__INIT;
    sc.from = WANFARM__JOB_STATE__JOB_QUEUED, sc.to = WANFARM__JOB_STATE__JOB_RUNNING;
    Wanfarm__Event ev = WANFARM__EVENT__INIT;
    ev.version = WP_VERSION, ev.job_id = "j1", ev.time = 1.7e9;
    ev.body_case = WANFARM__EVENT__BODY_STATE, ev.state = &sc;
    wp_free(round_trip(WP_EVENT, &ev.base));
}

/* A submit request of spec with key "k" into the caller's structs. */
static void make_submit(Wanfarm__ClientRequest *r, Wanfarm__Submit *sub, Wanfarm__JobSpec *spec) {
    wanfarm__submit__init(sub);
    sub->spec = spec, sub->idempotency_key = "k";
    wanfarm__client_request__init(r);
    r->version = WP_VERSION, r->request_id = "r";
    r->body_case = WANFARM__CLIENT_REQUEST__BODY_SUBMIT, r->submit = sub;
}

/* ---- refusals ---- */

/* decode must fail with WF_EPROTO and a message holding `want` */
static void refused(wp_kind k, const void *b, size_t n, const char *want, const char *what) {
    ProtobufCMessage *m = NULL;
    wf_err e = {0};
    wf_status st = wp_decode(k, b, n, &m, &e);
    TU_CHECK(st == WF_EPROTO && !m && strstr(e.msg, want), "%s: status %d, message '%s' (want '%s')",
             what, st, e.msg, want);
    wp_free(m);
}

/* a request packed by protobuf-c itself (no checks), for bytes wp_encode would refuse */
static uint8_t *raw_pack(const ProtobufCMessage *m, size_t *n) {
    *n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*n + 16);
    WF_ASSERT(b);
    protobuf_c_message_pack(m, b);
    return b;
}

static void test_refusals(void) {
    Wanfarm__Submit sub;
    Wanfarm__JobSpec spec = g_spec;
    Wanfarm__ClientRequest r;
    make_submit(&r, &sub, &spec);
    size_t n = 0;
    uint8_t *b;

    /* hand-made bytes: version 1, request_id "r", no body / a submit without its key */
    const uint8_t nobody[] = {0x08, 0x01, 0x12, 0x01, 'r'};
    refused(WP_CLIENT_REQUEST, nobody, sizeof nobody, "without a body", "no body");
    const uint8_t noversion[] = {0x12, 0x01, 'r', 0x22, 0x03, 0x0a, 0x01, 'j'};
    refused(WP_CLIENT_REQUEST, noversion, sizeof noversion, "required field", "no version");
    const uint8_t nokey[] = {0x08, 0x01, 0x12, 0x01, 'r', 0x1a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 'p'};
    refused(WP_CLIENT_REQUEST, nokey, sizeof nokey, "required field", "submit without its key");
    const uint8_t noprompt[] = {0x08, 0x01, 0x12, 0x01, 'r', 0x1a, 0x05, 0x0a, 0x00, 0x12, 0x01, 'k'};
    refused(WP_CLIENT_REQUEST, noprompt, sizeof noprompt, "required field", "spec without a prompt");

    r.version = 2;
    b = raw_pack(&r.base, &n);
    refused(WP_CLIENT_REQUEST, b, n, "version 2; this build speaks version 1", "version 2");
    free(b);
    r.version = WP_VERSION;

    /* a field this build does not know (number 1000, varint 7) is tolerated */
    b = raw_pack(&r.base, &n);
    const uint8_t unknown[] = {0xc0, 0x3e, 0x07};
    memcpy(b + n, unknown, sizeof unknown);
    ProtobufCMessage *m = NULL;
    wf_err e;
    TU_CHECK(wp_decode(WP_CLIENT_REQUEST, b, n + sizeof unknown, &m, &e) == WF_OK &&
                 !strcmp(((Wanfarm__ClientRequest *)m)->submit->spec->prompt, g_spec.prompt),
             "an unknown field was not tolerated: %s", e.msg);
    wp_free(m);
    free(b);

    /* non-finite numbers, an enum value the schema lacks, bad strings: refused by both sides */
    const double bad[3] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        spec.guidance = bad[k];
        b = raw_pack(&r.base, &n);
        refused(WP_CLIENT_REQUEST, b, n, "ClientRequest.submit.spec.guidance: not a finite", "NaN");
        free(b);
        uint8_t *o = NULL;
        TU_CHECK(wp_encode(&r.base, &o, &n, &e) == WF_EPROTO && !o, "wp_encode took a NaN");
    }
    spec.guidance = 5.0;
    spec.prompt = "bad \xff\xfe utf-8";
    b = raw_pack(&r.base, &n);
    refused(WP_CLIENT_REQUEST, b, n, "spec.prompt: not valid UTF-8", "bad UTF-8");
    free(b);
    const char *overlong[] = {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"};
    for (int k = 0; k < 4; k++) {
        spec.prompt = (char *)overlong[k];
        b = raw_pack(&r.base, &n);
        refused(WP_CLIENT_REQUEST, b, n, "not valid UTF-8", "overlong / surrogate / > U+10FFFF");
        free(b);
    }
    char *big = malloc(WP_MAX_STRING + 2);
    WF_ASSERT(big);
    memset(big, 'a', WP_MAX_STRING + 1);
    big[WP_MAX_STRING + 1] = 0;
    spec.prompt = big;
    b = raw_pack(&r.base, &n);
    refused(WP_CLIENT_REQUEST, b, n, "spec.prompt: a string of 65537 bytes", "long string");
    free(b);
    free(big);
    spec.prompt = g_spec.prompt;
    Wanfarm__List li = WANFARM__LIST__INIT;
    li.has_state = 1, li.state = 99;
    r.body_case = WANFARM__CLIENT_REQUEST__BODY_LIST, r.list = &li;
    b = raw_pack(&r.base, &n);
    refused(WP_CLIENT_REQUEST, b, n, "ClientRequest.list.state: 99 is not a value of JobState",
            "enum 99");
    free(b);

    /* over the size limit: refused before it is parsed */
    uint8_t *huge = calloc(WP_MAX_MSG + 1, 1);
    WF_ASSERT(huge);
    refused(WP_CLIENT_REQUEST, huge, WP_MAX_MSG + 1, "over the 1048576-byte limit", "oversized");
    free(huge);
    refused(WP_WORKER_MESSAGE, "\xff\xff\xff", 3, "not a valid WorkerMessage", "garbage");
}

/* ---- hostile bytes: nothing crashes, whatever decodes is clean ---- */

static int decode_any(wp_kind k, const uint8_t *b, size_t n) {
    ProtobufCMessage *m = NULL;
    wf_err e;
    if (wp_decode(k, b, n, &m, &e) != WF_OK) return 0;
    TU_CHECK(wp_validate(m, NULL, &e) == WF_OK, "a decoded message fails the checks: %s", e.msg);
    uint8_t *o = NULL;
    size_t on = 0;
    TU_CHECK(wp_encode(m, &o, &on, &e) == WF_OK, "a decoded message does not encode: %s", e.msg);
    free(o);
    wp_free(m);
    return 1;
}

static void test_hostile(void) {
    Wanfarm__Submit sub;
    Wanfarm__ClientRequest r;
    make_submit(&r, &sub, &g_spec);
    size_t n = 0;
    uint8_t *b = enc(&r.base, &n);
    if (!b) return;
    int ok = 0;
    for (size_t p = 0; p < n; p++) ok += decode_any(WP_CLIENT_REQUEST, b, p); /* every truncation */
    TU_CHECK(ok < (int)n && decode_any(WP_CLIENT_REQUEST, b, n), "truncations: %d of %zu decoded",
             ok, n);
    tu_rng rng = tu_rng_new(77);
    uint8_t *buf = malloc(n + 64);
    WF_ASSERT(buf);
    for (int it = 0; it < 20000; it++) {
        size_t len;
        if (it % 2) { /* a mutation of the valid message: flipped, inserted or dropped bytes */
            memcpy(buf, b, n);
            len = n;
            for (int f = 0; f < 1 + (int)(tu_next(&rng) % 4); f++)
                buf[tu_next(&rng) % len] ^= (uint8_t)(1u << (tu_next(&rng) % 8));
            if (tu_next(&rng) % 4 == 0) len = tu_next(&rng) % (n + 1);
        } else { /* random bytes */
            len = tu_next(&rng) % (n + 64);
            for (size_t k = 0; k < len; k++) buf[k] = (uint8_t)tu_next(&rng);
        }
        decode_any((wp_kind)(it % WP_NKINDS), buf, len);
    }
    free(buf);
    free(b);
}

int main(void) {
    fill_spec();
    test_client_request();
    test_client_reply();
    test_worker_messages();
    test_refusals();
    test_hostile();
    if (tu_failures) {
        printf("test_proto: %d failures\n", tu_failures);
        return 1;
    }
    printf("test_proto: OK\n");
    return 0;
}
