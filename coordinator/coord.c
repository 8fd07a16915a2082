/* coord.c: wanfarm-coord, the farm's coordinator process: a ZeroMQ ROUTER for clients (wanctl)
 * in front of the job store, and a PUB socket for job events.
 *
 * What it is: one thread, one poll loop. A client's message is [identity][payload] (a DEALER) or
 * [identity][empty][payload] (a REQ); the reply goes back the same way, made by cs_handle
 * (service.h), so the job is in the store before the client hears of it. Every request gets one
 * reply, a malformed one included. The sockets: ZMQ_MAXMSGSIZE = WP_MAX_MSG (an oversized
 * message drops the connection), ZMQ_ROUTER_MANDATORY with non-blocking sends (a vanished client
 * cannot block the loop), finite high-water marks, linger 0 at exit. A bind outside the loopback
 * is refused unless --allow-remote (CurveZMQ with ZAP comes with the worker side). SIGTERM and
 * SIGINT end the loop cleanly; a kill -9 loses nothing the store committed.
 * Usage: wanfarm-coord --store FILE [--clients EP] [--events EP] --model NAME [--model NAME ...]
 *        [--allow-remote] [--ready-file FILE]
 *   EP defaults: tcp://127.0.0.1:5555 and tcp://127.0.0.1:5556 ("tcp://127.0.0.1:*" binds a free
 *   port); --ready-file gets the bound endpoints, one per line, once the sockets are bound.
 * Exit codes: 0 stopped by a signal, 1 failure (the store, a bind), 2 bad command line.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "service.h"

#define PROG "wanfarm-coord"

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct opts {
    const char *store, *clients, *events, *ready;
    const char *models[CS_MAX_MODELS];
    int n_models;
    int allow_remote;
} opts;

static int usage(const char *why) {
    fprintf(stderr, PROG ": %s\nusage: " PROG " --store FILE --model NAME [--model NAME ...] "
            "[--clients EP] [--events EP] [--allow-remote] [--ready-file FILE]\n", why);
    return 2;
}

/* a loopback (or process-local) endpoint */
static int local_endpoint(const char *ep) {
    static const char *const ok[] = {"tcp://127.0.0.1:", "tcp://localhost:", "tcp://[::1]:",
                                     "ipc://", "inproc://"};
    for (size_t k = 0; k < sizeof ok / sizeof *ok; k++)
        if (!strncmp(ep, ok[k], strlen(ok[k]))) return 1;
    return 0;
}

static int parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->clients = "tcp://127.0.0.1:5555";
    o->events = "tcp://127.0.0.1:5556";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--allow-remote")) {
            o->allow_remote = 1;
            continue;
        }
        if (!v) return usage(a);
        i++;
        if (!strcmp(a, "--store")) o->store = v;
        else if (!strcmp(a, "--clients")) o->clients = v;
        else if (!strcmp(a, "--events")) o->events = v;
        else if (!strcmp(a, "--ready-file")) o->ready = v;
        else if (!strcmp(a, "--model")) {
            if (o->n_models == CS_MAX_MODELS) return usage("at most 16 --model");
            if (!*v || strlen(v) > 64) return usage("--model NAME: 1 to 64 bytes");
            o->models[o->n_models++] = v;
        } else return usage(a);
    }
    if (!o->store) return usage("--store FILE is needed");
    if (!o->n_models) return usage("--model NAME is needed (the models this farm serves)");
    if (!o->allow_remote && (!local_endpoint(o->clients) || !local_endpoint(o->events)))
        return usage("an endpoint outside the loopback needs --allow-remote (and, until CurveZMQ "
                     "arrives, a trusted network)");
    return 0;
}

/* a bound socket with the farm's limits, its endpoint into bound */
static void *open_socket(void *ctx, int type, const char *ep, char *bound, size_t cap) {
    void *s = zmq_socket(ctx, type);
    if (!s) return NULL;
    int64_t max = (int64_t)WP_MAX_MSG;
    int hwm = 1000, zero = 0, one = 1;
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (type == ZMQ_ROUTER) zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    size_t n = cap;
    if (zmq_bind(s, ep) != 0 || zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, bound, &n) != 0) {
        fprintf(stderr, PROG ": cannot bind %s: %s\n", ep, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}

/* One client message: its frames, the reply back the same way. */
static void serve_one(void *router, cs_service *svc) {
    zmq_msg_t f[3];
    int nf = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (nf < 3) { /* identity, [empty], payload; more frames: a foreign peer */
            zmq_msg_init(&f[nf]);
            zmq_msg_move(&f[nf++], &m);
        }
        zmq_msg_close(&m);
    }
    if (nf >= 2) {
        const zmq_msg_t *payload = &f[nf - 1];
        uint8_t *reply = NULL;
        size_t rn = 0;
        wf_err err;
        if (cs_handle(svc, zmq_msg_data((zmq_msg_t *)payload), zmq_msg_size((zmq_msg_t *)payload),
                      &reply, &rn, &err) == WF_OK) {
            int ok = zmq_send(router, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]),
                              ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0;
            if (ok && nf == 3) ok = zmq_send(router, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0;
            if (ok) zmq_send(router, reply, rn, ZMQ_DONTWAIT); /* a vanished client: dropped */
        } else {
            fprintf(stderr, PROG ": a request got no reply: %s\n", err.msg);
        }
        free(reply);
    }
    for (int k = 0; k < nf; k++) zmq_msg_close(&f[k]);
}

/* svc.publish: [job id][event] on the PUB socket (never blocks: a slow subscriber drops) */
static void publish(void *ctx, const char *job_id, const uint8_t *ev, size_t n) {
    if (zmq_send(ctx, job_id, strlen(job_id), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
        zmq_send(ctx, ev, n, ZMQ_DONTWAIT);
}

int main(int argc, char **argv) {
    opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    wf_err err;
    cs_service svc = {0};
    for (int k = 0; k < o.n_models; k++) svc.models[k] = o.models[k];
    svc.n_models = o.n_models;
    svc.now = wall_now;
    if (js_open(&svc.store, o.store, &err)) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        return 1;
    }
    void *ctx = zmq_ctx_new();
    char cep[256] = "", eep[256] = "";
    void *router = ctx ? open_socket(ctx, ZMQ_ROUTER, o.clients, cep, sizeof cep) : NULL;
    void *pub = router ? open_socket(ctx, ZMQ_PUB, o.events, eep, sizeof eep) : NULL;
    rc = 1;
    if (!pub) goto out;
    svc.events = eep;
    svc.publish = publish;
    svc.publish_ctx = pub;
    if (o.ready) {
        FILE *f = fopen(o.ready, "w");
        if (!f || fprintf(f, "%s\n%s\n", cep, eep) < 0 || fclose(f) != 0) {
            fprintf(stderr, PROG ": --ready-file %s: %s\n", o.ready, strerror(errno));
            goto out;
        }
    }
    fprintf(stderr, PROG ": serving clients on %s, events on %s, store %s\n", cep, eep, o.store);
    while (!g_stop) {
        zmq_pollitem_t it = {router, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&it, 1, 500);
        if (n < 0 && zmq_errno() != EINTR) {
            fprintf(stderr, PROG ": poll: %s\n", zmq_strerror(zmq_errno()));
            goto out;
        }
        if (n > 0 && (it.revents & ZMQ_POLLIN)) serve_one(router, &svc);
    }
    fprintf(stderr, PROG ": stopped\n");
    rc = 0;
out:
    if (pub) zmq_close(pub);
    if (router) zmq_close(router);
    if (ctx) zmq_ctx_term(ctx);
    js_close(&svc.store);
    return rc;
}
