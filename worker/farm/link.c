/* link.c: a worker world's line to the coordinator (see link.h). One thread owns the socket;
 * the main thread talks to it through the mutex-guarded fields below. */
#include "link.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "zkeys.h"

#define FL_MAX_RELIABLE 8
#define FL_MAX_INBOX 8
#define FL_MAX_OUTBOX 256
#define FL_RECENT_CANCELS 8

typedef struct fl_bytes {
    uint8_t *b;
    size_t n;
    char job[32];
    uint32_t attempt;
} fl_bytes;

struct fl_link {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void *ctx, *sock;
    char world[64];
    uint8_t *hello;
    size_t hello_n;
    /* under mu */
    double heartbeat;
    int liveness;
    bool welcomed, stop, started, said_duplicate;
    char refused[WF_ERR_MSG];
    fl_bytes outbox[FL_MAX_OUTBOX];
    int n_out;
    fl_bytes reliable[FL_MAX_RELIABLE];
    int n_rel;
    Wanfarm__CoordMessage *inbox[FL_MAX_INBOX];
    int n_in;
    char job[32];
    uint32_t attempt;
    double next_beat; /* the next heartbeat (0: now) */
    struct {
        char job[32];
        uint32_t attempt;
    } cancels[FL_RECENT_CANCELS];
    int n_cancels;
    double last_step, max_step;
    bool armed;
    atomic_bool cancelled;
    /* the thread's own */
    uint64_t seq;
    double last_hello;
    double wd_floor, wd_factor;
    void (*abort_world)(const char *why);
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void log_line(const fl_link *l, const char *what) {
    fprintf(stderr, "wanfarm worker (%s): %s\n", l->world, what);
}

/* ---- on the thread ---- */

static void send_raw(fl_link *l, const uint8_t *b, size_t n) {
    zmq_send(l->sock, b, n, ZMQ_DONTWAIT); /* a full pipe (coordinator away): dropped, resent */
}

static void send_hello(fl_link *l) {
    send_raw(l, l->hello, l->hello_n);
    l->last_hello = now_s();
}

/* [version][world][body] packed: 0 or -1 */
static int pack(fl_link *l, Wanfarm__WorkerMessage *m, uint8_t **b, size_t *n) {
    m->version = WP_VERSION;
    m->world_id = l->world;
    wf_err e;
    if (wp_encode(&m->base, b, n, &e)) {
        log_line(l, e.msg);
        return -1;
    }
    return 0;
}

static void beat(fl_link *l) {
    pthread_mutex_lock(&l->mu);
    char *ids[FL_MAX_RELIABLE + 1];
    size_t n = 0;
    if (l->job[0]) ids[n++] = l->job;
    for (int k = 0; k < l->n_rel; k++) {
        bool dup = false;
        for (size_t i = 0; i < n && !dup; i++) dup = !strcmp(ids[i], l->reliable[k].job);
        if (!dup) ids[n++] = l->reliable[k].job;
    }
    Wanfarm__Heartbeat hb = WANFARM__HEARTBEAT__INIT;
    hb.seq = l->seq++;
    hb.n_running = n, hb.running = ids;
    Wanfarm__WorkerMessage m = WANFARM__WORKER_MESSAGE__INIT;
    m.body_case = WANFARM__WORKER_MESSAGE__BODY_HEARTBEAT, m.heartbeat = &hb;
    uint8_t *b = NULL;
    size_t bn = 0;
    if (!pack(l, &m, &b, &bn)) send_raw(l, b, bn);
    free(b);
    for (int k = 0; k < l->n_rel; k++) send_raw(l, l->reliable[k].b, l->reliable[k].n);
    pthread_mutex_unlock(&l->mu);
}

static void on_message(fl_link *l, const uint8_t *b, size_t n) {
    ProtobufCMessage *pm = NULL;
    wf_err e;
    if (wp_decode(WP_COORD_MESSAGE, b, n, &pm, &e)) {
        log_line(l, e.msg);
        return;
    }
    Wanfarm__CoordMessage *m = (Wanfarm__CoordMessage *)pm;
    pthread_mutex_lock(&l->mu);
    switch (m->body_case) {
    case WANFARM__COORD_MESSAGE__BODY_WELCOME:
        if (!l->welcomed) {
            char line[160];
            snprintf(line, sizeof line, "welcomed: beats every %.2f s, lost after %u missed",
                     m->welcome->heartbeat_seconds, m->welcome->liveness);
            log_line(l, line);
        }
        l->heartbeat = m->welcome->heartbeat_seconds > 0.01 ? m->welcome->heartbeat_seconds : 0.01;
        l->liveness = (int)m->welcome->liveness;
        l->welcomed = true;
        l->next_beat = 0; /* beat now: the jobs in hand */
        pthread_cond_broadcast(&l->cv);
        break;
    case WANFARM__COORD_MESSAGE__BODY_ERROR:
        if (m->error->category == WANFARM__ERROR_CATEGORY__ERR_NOT_FOUND) {
            if (now_s() - l->last_hello > 0.5) {
                log_line(l, "the coordinator does not know this world (it restarted?): hello again");
                send_hello(l);
            }
        } else if (!l->welcomed && m->error->category == WANFARM__ERROR_CATEGORY__ERR_DUPLICATE) {
            if (!l->said_duplicate) log_line(l, m->error->message); /* hello again each second */
            l->said_duplicate = true;
        } else if (!l->welcomed) {
            snprintf(l->refused, sizeof l->refused, "%s", m->error->message);
            pthread_cond_broadcast(&l->cv);
        } else {
            log_line(l, m->error->message);
        }
        break;
    case WANFARM__COORD_MESSAGE__BODY_ACK:
        for (int k = 0; k < l->n_rel; k++)
            if (!strcmp(l->reliable[k].job, m->ack->job_id) &&
                l->reliable[k].attempt == m->ack->attempt) {
                free(l->reliable[k].b);
                l->reliable[k] = l->reliable[--l->n_rel];
                break;
            }
        break;
    case WANFARM__COORD_MESSAGE__BODY_CANCEL:
        if (!strcmp(l->job, m->cancel->job_id) && l->attempt == m->cancel->attempt)
            atomic_store(&l->cancelled, true);
        snprintf(l->cancels[l->n_cancels % FL_RECENT_CANCELS].job, sizeof l->cancels[0].job, "%s",
                 m->cancel->job_id);
        l->cancels[l->n_cancels++ % FL_RECENT_CANCELS].attempt = m->cancel->attempt;
        break;
    case WANFARM__COORD_MESSAGE__BODY_ASSIGN:
    case WANFARM__COORD_MESSAGE__BODY_SHUTDOWN:
        if (l->n_in < FL_MAX_INBOX) {
            l->inbox[l->n_in++] = m;
            m = NULL;
            pthread_cond_broadcast(&l->cv);
        } else {
            log_line(l, "too many assignments waiting: one dropped (the coordinator requeues it)");
        }
        break;
    default: break;
    }
    pthread_mutex_unlock(&l->mu);
    wp_free(m ? &m->base : NULL);
}

/* the step watchdog: true when it fired */
static bool watchdog(fl_link *l, double now) {
    if (l->wd_floor <= 0) return false;
    pthread_mutex_lock(&l->mu);
    const double limit = l->wd_floor > l->wd_factor * l->max_step ? l->wd_floor
                                                                  : l->wd_factor * l->max_step;
    const bool fired = l->armed && l->job[0] && now - l->last_step > limit;
    char why[300] = "";
    if (fired) {
        snprintf(why, sizeof why, "the step watchdog: job %s has reported no step for %.1f s "
                 "(limit max(%.0f s, %.0f x its longest step %.2f s)): a hung rank", l->job,
                 now - l->last_step, l->wd_floor, l->wd_factor, l->max_step);
        Wanfarm__Failure f = WANFARM__FAILURE__INIT;
        f.job_id = l->job, f.attempt = l->attempt;
        f.category = WANFARM__FAILURE_CATEGORY__FAIL_INFRA;
        f.has_rank = 1, f.rank = 0, f.detail = why;
        Wanfarm__WorkerMessage m = WANFARM__WORKER_MESSAGE__INIT;
        m.body_case = WANFARM__WORKER_MESSAGE__BODY_FAILURE, m.failure = &f;
        uint8_t *b = NULL;
        size_t n = 0;
        if (!pack(l, &m, &b, &n)) send_raw(l, b, n);
        free(b);
        l->stop = true;
    }
    pthread_mutex_unlock(&l->mu);
    if (fired) {
        log_line(l, why);
        struct timespec ts = {0, 300 * 1000 * 1000}; /* the Failure's way out */
        nanosleep(&ts, NULL);
        if (l->abort_world) l->abort_world(why);
    }
    return fired;
}

static void *run(void *arg) {
    fl_link *l = arg;
    send_hello(l);
    for (;;) {
        pthread_mutex_lock(&l->mu);
        const bool stop = l->stop && !l->n_out;
        fl_bytes out[FL_MAX_OUTBOX];
        const int n_out = l->n_out;
        memcpy(out, l->outbox, (size_t)n_out * sizeof *out);
        l->n_out = 0;
        const bool welcomed = l->welcomed;
        const double hb = l->heartbeat, next_beat = l->next_beat;
        pthread_mutex_unlock(&l->mu);
        if (stop) break;
        for (int k = 0; k < n_out; k++) {
            send_raw(l, out[k].b, out[k].n);
            free(out[k].b);
        }
        const double now = now_s();
        if (!welcomed && now - l->last_hello > 1.0) send_hello(l);
        if (welcomed && now >= next_beat) {
            beat(l);
            pthread_mutex_lock(&l->mu);
            if (l->next_beat == next_beat) l->next_beat = now + hb; /* unless asked again */
            pthread_mutex_unlock(&l->mu);
        }
        if (watchdog(l, now)) break;
        zmq_pollitem_t it = {l->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 20) > 0) {
            for (int k = 0; k < 64; k++) {
                zmq_msg_t msg;
                zmq_msg_init(&msg);
                if (zmq_msg_recv(&msg, l->sock, ZMQ_DONTWAIT) < 0) {
                    zmq_msg_close(&msg);
                    break;
                }
                if (!zmq_msg_more(&msg)) on_message(l, zmq_msg_data(&msg), zmq_msg_size(&msg));
                zmq_msg_close(&msg);
            }
        }
    }
    return NULL;
}

/* ---- the main thread's side ---- */

static wf_status set_curve(void *s, const fl_config *c, wf_err *err) {
    if (!c->server_key && !c->client_key) return WF_OK;
    char server[ZK_LEN + 1], secret[ZK_LEN + 1], pub[ZK_LEN + 1];
    if (!c->server_key || !c->client_key)
        return wf_fail(err, WF_EINVAL, "--curve-server-key and --curve-key go together");
    if (zk_read(c->server_key, server, 0))
        return wf_fail(err, WF_EINVAL, "--curve-server-key %s: not a Z85 key file", c->server_key);
    if (zk_read(c->client_key, secret, ZK_PRIVATE) || zmq_curve_public(pub, secret) != 0)
        return wf_fail(err, WF_EINVAL, "--curve-key %s: not a Z85 secret key in a file only its "
                       "owner may read (chmod 600)", c->client_key);
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server, ZK_LEN);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, ZK_LEN);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, secret, ZK_LEN);
    return WF_OK;
}

wf_status fl_open(fl_link **out, const fl_config *c, wf_err *err) {
    *out = NULL;
    fl_link *l = calloc(1, sizeof *l);
    if (!l) return wf_fail(err, WF_ENOMEM, "out of memory");
    snprintf(l->world, sizeof l->world, "%s", c->world_id);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->heartbeat = 1.0;
    l->wd_floor = c->watchdog_floor;
    l->wd_factor = c->watchdog_factor;
    l->abort_world = c->abort_world;
    atomic_init(&l->cancelled, false);
    wf_status st = WF_OK;
    Wanfarm__WorkerMessage m = WANFARM__WORKER_MESSAGE__INIT;
    Wanfarm__Hello h = *c->hello;
    m.body_case = WANFARM__WORKER_MESSAGE__BODY_HELLO, m.hello = &h;
    if (pack(l, &m, &l->hello, &l->hello_n)) {
        st = wf_fail(err, WF_EINVAL, "the Hello message could not be made");
        goto fail;
    }
    l->ctx = zmq_ctx_new();
    l->sock = l->ctx ? zmq_socket(l->ctx, ZMQ_DEALER) : NULL;
    if (!l->sock) {
        st = wf_fail(err, WF_EIO, "ZeroMQ: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    int64_t max = (int64_t)WP_MAX_MSG;
    int hwm = 1000, linger = 0, ivl = 200, ivl_max = 2000;
    zmq_setsockopt(l->sock, ZMQ_MAXMSGSIZE, &max, sizeof max);
    zmq_setsockopt(l->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(l->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(l->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(l->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(l->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    /* a routing id of its own, kept across reconnections: the coordinator sees one world */
    char rid[128];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    snprintf(rid, sizeof rid, "%s#%ld.%ld", l->world, (long)getpid(), (long)now.tv_nsec);
    zmq_setsockopt(l->sock, ZMQ_ROUTING_ID, rid, strlen(rid));
    if ((st = set_curve(l->sock, c, err))) goto fail;
    if (zmq_connect(l->sock, c->endpoint) != 0) {
        st = wf_fail(err, WF_EINVAL, "--coordinator %s: %s", c->endpoint,
                     zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (pthread_create(&l->th, NULL, run, l) != 0) {
        st = wf_fail(err, WF_EIO, "cannot start the link thread");
        goto fail;
    }
    l->started = true;
    const double t_end = now_s() + (c->connect_timeout > 0 ? c->connect_timeout : 30);
    pthread_mutex_lock(&l->mu);
    while (!l->welcomed && !l->refused[0] && now_s() < t_end) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&l->cv, &l->mu, &ts);
    }
    const bool ok = l->welcomed;
    char refused[WF_ERR_MSG];
    snprintf(refused, sizeof refused, "%s", l->said_duplicate && !l->refused[0]
                 ? "another live world holds this world id: choose another --world-id"
                 : l->refused);
    pthread_mutex_unlock(&l->mu);
    if (!ok) {
        st = refused[0] ? wf_fail(err, WF_EINVAL, "the coordinator at %s refused this world: %s",
                                  c->endpoint, refused)
                        : wf_fail(err, WF_ETIMEOUT, "no coordinator answered at %s within %.0f s "
                                  "(is wanfarm-coord running there, with that --workers "
                                  "endpoint%s?)", c->endpoint, c->connect_timeout,
                                  c->server_key ? " and this world's key authorised" : "");
        goto fail;
    }
    *out = l;
    return WF_OK;
fail:
    fl_close(&l, 0);
    return st;
}

bool fl_flush(fl_link *l, double seconds) {
    const double t_end = now_s() + seconds;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        const bool pending = l->n_rel > 0 || l->n_out > 0;
        pthread_mutex_unlock(&l->mu);
        if (!pending) return true;
        if (now_s() >= t_end) return false;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void fl_close(fl_link **pl, double linger) {
    fl_link *l = pl ? *pl : NULL;
    if (!l) return;
    if (l->started) {
        fl_flush(l, linger); /* what waits for an Ack, for a while */
        Wanfarm__Goodbye bye = WANFARM__GOODBYE__INIT;
        bye.reason = "the world ends";
        Wanfarm__WorkerMessage m = WANFARM__WORKER_MESSAGE__INIT;
        m.body_case = WANFARM__WORKER_MESSAGE__BODY_GOODBYE, m.goodbye = &bye;
        fl_send(l, &m); /* the thread sends what is queued before it stops */
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->th, NULL);
    }
    for (int k = 0; k < l->n_out; k++) free(l->outbox[k].b);
    for (int k = 0; k < l->n_rel; k++) free(l->reliable[k].b);
    for (int k = 0; k < l->n_in; k++) wp_free(&l->inbox[k]->base);
    if (l->sock) {
        int linger_ms = 500; /* the goodbye's way out */
        zmq_setsockopt(l->sock, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
        zmq_close(l->sock);
    }
    if (l->ctx) zmq_ctx_term(l->ctx);
    free(l->hello);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
    *pl = NULL;
}

void fl_next(fl_link *l, bool (*stopping)(void), Wanfarm__CoordMessage **env,
             Wanfarm__Assignment **a, char *why, size_t why_cap) {
    *env = NULL;
    *a = NULL;
    pthread_mutex_lock(&l->mu);
    while (!l->n_in && !(stopping && stopping())) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&l->cv, &l->mu, &ts);
    }
    Wanfarm__CoordMessage *m = NULL;
    if (l->n_in) {
        m = l->inbox[0];
        memmove(l->inbox, l->inbox + 1, (size_t)(--l->n_in) * sizeof *l->inbox);
    }
    pthread_mutex_unlock(&l->mu);
    if (!m) return;
    *env = m;
    if (m->body_case == WANFARM__COORD_MESSAGE__BODY_ASSIGN) *a = m->assign;
    else snprintf(why, why_cap, "%s", m->shutdown->reason ? m->shutdown->reason : "asked to");
}

void fl_hold(fl_link *l, const char *job, uint32_t attempt) {
    pthread_mutex_lock(&l->mu);
    snprintf(l->job, sizeof l->job, "%s", job ? job : "");
    l->attempt = attempt;
    l->armed = false;
    l->max_step = 0;
    bool cancelled = false;
    for (int k = 0; job && k < FL_RECENT_CANCELS && k < l->n_cancels; k++)
        cancelled |= !strcmp(l->cancels[k].job, job) && l->cancels[k].attempt == attempt;
    atomic_store(&l->cancelled, cancelled);
    l->next_beat = 0; /* say so at once */
    pthread_mutex_unlock(&l->mu);
}

bool fl_cancelled(fl_link *l) { return atomic_load(&l->cancelled); }

void fl_step(fl_link *l, double seconds) {
    pthread_mutex_lock(&l->mu);
    l->armed = true;
    l->last_step = now_s();
    if (seconds > l->max_step) l->max_step = seconds;
    pthread_mutex_unlock(&l->mu);
}

void fl_send(fl_link *l, Wanfarm__WorkerMessage *m) {
    uint8_t *b = NULL;
    size_t n = 0;
    if (pack(l, m, &b, &n)) return;
    pthread_mutex_lock(&l->mu);
    if (l->n_out < FL_MAX_OUTBOX) l->outbox[l->n_out++] = (fl_bytes){b, n, "", 0};
    else free(b); /* progress only: the next one says more */
    pthread_mutex_unlock(&l->mu);
}

void fl_send_reliable(fl_link *l, Wanfarm__WorkerMessage *m, const char *job, uint32_t attempt) {
    uint8_t *b = NULL;
    size_t n = 0;
    if (pack(l, m, &b, &n)) return;
    pthread_mutex_lock(&l->mu);
    if (l->n_rel == FL_MAX_RELIABLE) { /* cannot happen with one job at a time: the oldest goes */
        free(l->reliable[0].b);
        memmove(l->reliable, l->reliable + 1, (FL_MAX_RELIABLE - 1) * sizeof *l->reliable);
        l->n_rel--;
    }
    fl_bytes *r = &l->reliable[l->n_rel++];
    r->b = b, r->n = n, r->attempt = attempt;
    snprintf(r->job, sizeof r->job, "%s", job);
    l->next_beat = 0; /* the thread sends it now, and at every beat until its Ack */
    pthread_mutex_unlock(&l->mu);
}
