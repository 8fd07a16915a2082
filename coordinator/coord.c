/* coord.c: wanfarm-coord, the farm's coordinator process: a ZeroMQ ROUTER for clients (wanctl)
 * in front of the job store, and a PUB socket for job events.
 *
 * What it is: one thread, one poll loop. A client's message is [identity][payload] (a DEALER) or
 * [identity][empty][payload] (a REQ); the reply goes back the same way, made by cs_handle
 * (service.h), so the job is in the store before the client hears of it. Every request gets one
 * reply, a malformed one included. The sockets: ZMQ_MAXMSGSIZE = WP_MAX_MSG (an oversized
 * message drops the connection), ZMQ_ROUTER_MANDATORY with non-blocking sends (a vanished client
 * cannot block the loop), finite high-water marks, linger 0 at exit. A bind outside the loopback
 * is refused unless --allow-remote or CurveZMQ is on. With --curve-secret FILE (the server's
 * secret key, Z85, a file only its owner can read) and --curve-clients DIR (one authorised
 * client public key per DIR/NAME.key), both sockets are CURVE servers and a ZAP handler (RFC 27,
 * inproc://zeromq.zap.01, bound before them and served by this loop) lets in only the keys of
 * DIR: any other client's handshake fails, so it never gets a reply. The published test keys of
 * the CurveZMQ documentation are refused. `wanfarm-coord --keygen PATH` writes a key pair,
 * PATH.key (public) and PATH.secret (mode 0600). SIGTERM and SIGINT end the loop cleanly; a
 * kill -9 loses nothing the store committed.
 * A third socket, a ROUTER for the worker worlds (`wanfarm worker`: one DEALER per world, on its
 * rank 0), is served by worlds.h: hellos, heartbeats, assignments, progress, results; the same
 * CurveZMQ keys guard it. The loop ticks a few times a heartbeat (cw_tick: lost worlds, then
 * assignments).
 * Usage: wanfarm-coord --store FILE [--clients EP] [--events EP] [--workers EP]
 *        --model NAME [--model NAME ...] [--heartbeat S] [--liveness N] [--checkpoint-every N]
 *        [--max-job-failures N] [--max-infra-failures N]
 *        [--allow-remote] [--curve-secret FILE --curve-clients DIR] [--max-queued N]
 *        [--ready-file FILE]
 *   --heartbeat S (2): how often a world beats; --liveness N (3): beats missed before it is lost;
 *   --checkpoint-every N (0: only when a world is stopped): steps between a job's checkpoints;
 *   --max-job-failures N (3): faults of a job's own before it fails; --max-infra-failures N
 *   (10): lost worlds, killed ranks and the like a job may live through.
 *   --max-queued N: a new submit beyond N waiting jobs is answered ERR_BUSY (retry later).
 *        wanfarm-coord --keygen PATH
 *   EP defaults: tcp://127.0.0.1:5555, :5556 and :5557 ("tcp://127.0.0.1:*" binds a free port);
 *   --ready-file gets the bound endpoints (clients, events, workers), one per line, once the
 *   sockets are bound.
 * Exit codes: 0 stopped by a signal, 1 failure (the store, a bind), 2 bad command line.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <zmq.h>

#include "service.h"
#include "worlds.h"
#include "zkeys.h"

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
    const char *store, *clients, *events, *workers, *ready, *curve_secret, *curve_clients;
    const char *models[CS_MAX_MODELS];
    int n_models;
    int allow_remote;
    long long max_queued;
    double heartbeat;
    int liveness, max_job, max_infra, checkpoint_every;
} opts;

static int usage(const char *why) {
    fprintf(stderr, PROG ": %s\nusage: " PROG " --store FILE --model NAME [--model NAME ...] "
            "[--clients EP] [--events EP] [--workers EP] [--heartbeat S] [--liveness N] "
            "[--checkpoint-every N] [--max-job-failures N] [--max-infra-failures N] "
            "[--max-queued N] [--allow-remote] [--curve-secret FILE --curve-clients DIR] "
            "[--ready-file FILE]\n", why);
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
    o->workers = "tcp://127.0.0.1:5557";
    o->heartbeat = 2.0;
    o->liveness = 3;
    o->max_job = 3;
    o->max_infra = 10;
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
        else if (!strcmp(a, "--curve-secret")) o->curve_secret = v;
        else if (!strcmp(a, "--max-queued")) {
            char *e;
            o->max_queued = strtoll(v, &e, 10);
            if (*e || o->max_queued < 1) return usage("--max-queued N: N >= 1");
        }
        else if (!strcmp(a, "--curve-clients")) o->curve_clients = v;
        else if (!strcmp(a, "--workers")) o->workers = v;
        else if (!strcmp(a, "--heartbeat")) {
            char *e;
            o->heartbeat = strtod(v, &e);
            if (*e || !(o->heartbeat >= 0.05 && o->heartbeat <= 3600))
                return usage("--heartbeat S: seconds in [0.05, 3600]");
        } else if (!strcmp(a, "--liveness") || !strcmp(a, "--checkpoint-every") ||
                   !strcmp(a, "--max-job-failures") || !strcmp(a, "--max-infra-failures")) {
            char *e;
            long x = strtol(v, &e, 10);
            const int lo = a[2] == 'l' || !strcmp(a, "--max-job-failures") ? 1 : 0;
            if (*e || x < lo || x > 1000000) return usage("a count out of range (--liveness >= 1, "
                                                          "--max-job-failures >= 1)");
            *(a[2] == 'l' ? &o->liveness : a[2] == 'c' ? &o->checkpoint_every
              : a[6] == 'j' ? &o->max_job : &o->max_infra) = (int)x;
        }
        else if (!strcmp(a, "--model")) {
            if (o->n_models == CS_MAX_MODELS) return usage("at most 16 --model");
            if (!*v || strlen(v) > 64) return usage("--model NAME: 1 to 64 bytes");
            o->models[o->n_models++] = v;
        } else return usage(a);
    }
    if (!o->store) return usage("--store FILE is needed");
    if (!o->n_models) return usage("--model NAME is needed (the models this farm serves)");
    if (!o->curve_secret != !o->curve_clients)
        return usage("--curve-secret and --curve-clients go together");
    if (!o->allow_remote && !o->curve_secret &&
        (!local_endpoint(o->clients) || !local_endpoint(o->events) ||
         !local_endpoint(o->workers)))
        return usage("an endpoint outside the loopback needs CurveZMQ (--curve-secret, "
                     "--curve-clients) or, on a trusted network, --allow-remote");
    return 0;
}

/* ---- CurveZMQ ---- */

typedef struct curve {
    char secret[41];
    uint8_t (*keys)[32]; /* the authorised client keys */
    int n;
} curve;

static int load_curve(const opts *o, curve *c) {
    memset(c, 0, sizeof *c);
    if (!zmq_has("curve")) {
        fprintf(stderr, PROG ": this libzmq has no CURVE support (built without libsodium)\n");
        return -1;
    }
    if (zk_read(o->curve_secret, c->secret, ZK_PRIVATE | ZK_NO_TEST_KEYS)) {
        fprintf(stderr, PROG ": --curve-secret %s: not a Z85 secret key in a file only its owner "
                "may read (chmod 600), or a published test key\n", o->curve_secret);
        return -1;
    }
    DIR *d = opendir(o->curve_clients);
    if (!d) {
        fprintf(stderr, PROG ": --curve-clients %s: %s\n", o->curve_clients, strerror(errno));
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".key")) continue;
        char path[4200], z[41];
        snprintf(path, sizeof path, "%s/%s", o->curve_clients, e->d_name);
        if (zk_read(path, z, ZK_NO_TEST_KEYS)) {
            fprintf(stderr, PROG ": --curve-clients: %s is not a usable public key: skipped\n", path);
            continue;
        }
        uint8_t (*g)[32] = realloc(c->keys, (size_t)(c->n + 1) * sizeof *c->keys);
        if (!g) break;
        c->keys = g;
        zmq_z85_decode(c->keys[c->n++], z);
    }
    closedir(d);
    if (!c->n) fprintf(stderr, PROG ": --curve-clients %s holds no key: no client can connect\n",
                       o->curve_clients);
    return 0;
}

/* The frames of one message, its first `cap` kept in f (*nf of them), the rest read and dropped;
 * *extra: there were more than cap. */
static void recv_frames(void *router, zmq_msg_t *f, int cap, int *nf, bool *extra) {
    int more = 1;
    *nf = 0;
    *extra = false;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (*nf < cap) {
            zmq_msg_init(&f[*nf]);
            zmq_msg_move(&f[(*nf)++], &m);
        } else {
            *extra = true;
        }
        zmq_msg_close(&m);
    }
}

/* One ZAP request (RFC 27) on the REP socket: 200 for an authorised CURVE key, else 400. */
static void serve_zap(void *zap, const curve *c) {
    zmq_msg_t f[7];
    int nf = 0;
    bool extra; /* a malformed request: more frames than CURVE's seven (refused) */
    recv_frames(zap, f, 7, &nf, &extra);
    if (!nf) return; /* nothing after all: a REP socket must not answer */
    int ok = 0;
    if (nf == 7 && !extra && zmq_msg_size(&f[5]) == 5 && !memcmp(zmq_msg_data(&f[5]), "CURVE", 5) &&
        zmq_msg_size(&f[6]) == 32)
        for (int k = 0; k < c->n && !ok; k++) ok = !memcmp(zmq_msg_data(&f[6]), c->keys[k], 32);
    const char *id = "";
    size_t idn = nf >= 2 ? zmq_msg_size(&f[1]) : 0;
    zmq_send(zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(zap, idn ? zmq_msg_data(&f[1]) : id, idn, ZMQ_SNDMORE);
    zmq_send(zap, ok ? "200" : "400", 3, ZMQ_SNDMORE);
    zmq_send(zap, ok ? "OK" : "key not authorised", ok ? 2 : 18, ZMQ_SNDMORE);
    zmq_send(zap, "", 0, ZMQ_SNDMORE); /* user id */
    zmq_send(zap, "", 0, 0);           /* metadata */
    if (!ok) fprintf(stderr, PROG ": a client with an unauthorised key was refused\n");
    for (int k = 0; k < nf; k++) zmq_msg_close(&f[k]);
}

static int keygen(const char *path) {
    char pub[41], sec[41], p[4200];
    if (zmq_curve_keypair(pub, sec) != 0) {
        fprintf(stderr, PROG ": --keygen: %s\n", zmq_strerror(zmq_errno()));
        return 1;
    }
    snprintf(p, sizeof p, "%s.secret", path);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f || fprintf(f, "%s\n", sec) < 0 || fclose(f) != 0) {
        fprintf(stderr, PROG ": --keygen: cannot write %s (it must not exist): %s\n", p,
                strerror(errno));
        return 1;
    }
    snprintf(p, sizeof p, "%s.key", path);
    f = fopen(p, "wx");
    if (!f || fprintf(f, "%s\n", pub) < 0 || fclose(f) != 0) {
        fprintf(stderr, PROG ": --keygen: cannot write %s: %s\n", p, strerror(errno));
        return 1;
    }
    printf("%s\n", pub);
    return 0;
}

/* a bound socket with the farm's limits (a CURVE server when c), its endpoint into bound */
static void *open_socket(void *ctx, int type, const char *ep, const curve *c, char *bound,
                         size_t cap) {
    void *s = zmq_socket(ctx, type);
    if (!s) return NULL;
    if (c) {
        int one = 1;
        zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->secret, 40);
        zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, "wanfarm", 7);
    }
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
    zmq_msg_t f[3]; /* identity, [empty], payload; more frames: a foreign peer */
    int nf = 0;
    bool extra;
    recv_frames(router, f, 3, &nf, &extra);
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

/* One world's message: [identity][payload] (a DEALER; more frames: a foreign peer, dropped). */
static void serve_world(void *router, cw_farm *farm) {
    zmq_msg_t f[2];
    int nf = 0;
    bool extra;
    recv_frames(router, f, 2, &nf, &extra);
    if (nf == 2 && !extra)
        cw_handle(farm, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), zmq_msg_data(&f[1]),
                  zmq_msg_size(&f[1]));
    for (int k = 0; k < nf; k++) zmq_msg_close(&f[k]);
}

/* farm.send: [identity][message] on the workers' ROUTER (a world gone: dropped) */
static void send_world(void *ctx, const uint8_t *route, size_t rn, const uint8_t *msg, size_t n) {
    if (zmq_send(ctx, route, rn, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0) zmq_send(ctx, msg, n, ZMQ_DONTWAIT);
}

/* svc.publish: [job id][event] on the PUB socket (never blocks: a slow subscriber drops) */
static void publish(void *ctx, const char *job_id, const uint8_t *ev, size_t n) {
    if (zmq_send(ctx, job_id, strlen(job_id), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
        zmq_send(ctx, ev, n, ZMQ_DONTWAIT);
}

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct sockets {
    void *router, *workers, *zap; /* zap: NULL without CurveZMQ */
} sockets;

/* The poll loop until SIGTERM or SIGINT (0), or a poll failure (1): clients, worlds, the ZAP
 * handler, and the farm's clock a few times a heartbeat (liveness, then assignments). */
static int serve_loop(const sockets *sk, const curve *cv, cs_service *svc, cw_farm *farm,
                      double heartbeat) {
    long tick_ms = (long)(heartbeat * 250);
    tick_ms = tick_ms < 1 ? 1 : tick_ms > 500 ? 500 : tick_ms;
    double last_tick = 0;
    while (!g_stop) {
        zmq_pollitem_t it[3] = {{sk->router, 0, ZMQ_POLLIN, 0}, {sk->workers, 0, ZMQ_POLLIN, 0},
                                {sk->zap, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(it, sk->zap ? 3 : 2, tick_ms);
        if (n < 0 && zmq_errno() != EINTR) {
            fprintf(stderr, PROG ": poll: %s\n", zmq_strerror(zmq_errno()));
            return 1;
        }
        if (n > 0 && sk->zap && (it[2].revents & ZMQ_POLLIN)) serve_zap(sk->zap, cv);
        if (n > 0 && (it[0].revents & ZMQ_POLLIN)) {
            serve_one(sk->router, svc);
            cw_dispatch(farm); /* a submit: an idle world takes it now */
        }
        if (n > 0 && (it[1].revents & ZMQ_POLLIN)) serve_world(sk->workers, farm);
        if (mono_now() - last_tick >= tick_ms / 1000.0) {
            cw_tick(farm);
            last_tick = mono_now();
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--keygen")) return keygen(argv[2]);
    opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    curve cv;
    memset(&cv, 0, sizeof cv);
    if (o.curve_secret && load_curve(&o, &cv)) return 1;
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
    svc.max_queued = o.max_queued;
    if (js_open(&svc.store, o.store, &err)) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        return 1;
    }
    void *ctx = zmq_ctx_new(), *zap = NULL;
    char cep[256] = "", eep[256] = "";
    const curve *cp = o.curve_secret ? &cv : NULL;
    if (ctx && cp) { /* the ZAP handler first: no CURVE handshake may find it missing */
        zap = zmq_socket(ctx, ZMQ_REP);
        if (!zap || zmq_bind(zap, "inproc://zeromq.zap.01") != 0) {
            fprintf(stderr, PROG ": cannot bind the ZAP handler: %s\n", zmq_strerror(zmq_errno()));
            if (zap) zmq_close(zap);
            zap = NULL;
            ctx = (zmq_ctx_term(ctx), NULL);
        }
    }
    void *router = ctx ? open_socket(ctx, ZMQ_ROUTER, o.clients, cp, cep, sizeof cep) : NULL;
    void *pub = router ? open_socket(ctx, ZMQ_PUB, o.events, cp, eep, sizeof eep) : NULL;
    char wep[256] = "";
    void *workers = pub ? open_socket(ctx, ZMQ_ROUTER, o.workers, cp, wep, sizeof wep) : NULL;
    cw_farm farm = {.svc = &svc, .heartbeat = o.heartbeat, .liveness = o.liveness,
                    .max_job = o.max_job, .max_infra = o.max_infra,
                    .checkpoint_every = (uint32_t)o.checkpoint_every, .send = send_world,
                    .send_ctx = workers, .clock = mono_now};
    rc = 1;
    if (!workers) goto out;
    svc.events = eep;
    svc.publish = publish;
    svc.publish_ctx = pub;
    svc.list_worlds = cw_list, svc.free_worlds = cw_list_free, svc.drain_world = cw_drain;
    svc.worlds_ctx = &farm;
    if (o.ready) {
        FILE *f = fopen(o.ready, "w");
        if (!f || fprintf(f, "%s\n%s\n%s\n", cep, eep, wep) < 0 || fclose(f) != 0) {
            fprintf(stderr, PROG ": --ready-file %s: %s\n", o.ready, strerror(errno));
            goto out;
        }
    }
    if (cw_init(&farm, &err)) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        goto out;
    }
    fprintf(stderr, PROG ": serving clients on %s, events on %s, worker worlds on %s, store "
            "%s%s\n", cep, eep, wep, o.store, cp ? ", CurveZMQ on" : "");
    sockets sk = {router, workers, zap};
    if (serve_loop(&sk, &cv, &svc, &farm, o.heartbeat)) goto out;
    fprintf(stderr, PROG ": stopped\n");
    rc = 0;
out:
    cw_free(&farm);
    if (workers) zmq_close(workers);
    if (pub) zmq_close(pub);
    if (router) zmq_close(router);
    if (zap) zmq_close(zap);
    free(cv.keys);
    if (ctx) zmq_ctx_term(ctx);
    js_close(&svc.store);
    return rc;
}
