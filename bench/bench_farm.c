/* bench_farm.c: the coordinator under a burst of clients, in the nccl-tests shape, with a crash.
 *
 * What it is: starts wanfarm-coord (the real program, its own process) on a fresh store in a
 * temporary folder, then C clients, each a thread with its own DEALER socket, submit J jobs each
 * (unique idempotency keys) and time every request from send to reply. Halfway through (once
 * half the jobs are acknowledged, with the clients still sending) the coordinator is killed with
 * SIGKILL and started again on the same store (on a new port, which the clients take up); a
 * client whose request got no answer retries it with the same key (a job the dead coordinator
 * committed is then "already submitted", one it did not becomes the job). At the end one list counts
 * the jobs in the store. Rows: the phase (before and after the crash), jobs, the submit latency
 * p50 / p99 / max (ms), the store throughput (acknowledged jobs per second of the phase), the
 * coordinator's peak RSS (MiB, from /proc while it runs), the retries, and #lost = acknowledged
 * jobs the final list lacks (must be 0) plus jobs made twice (the list longer than the keys).
 * Then the dispatch phase: W dry-run worlds (threads speaking the worker protocol: hello,
 * heartbeats, and for each assignment a Result at once) drain the store's jobs; its row gives the
 * jobs done, the dispatch latency (a world's result sent -> its next assignment received) p50 /
 * p99 / max, the jobs dispatched per second and #lost = jobs not done + jobs assigned twice.
 * The footer says OK or FAILED (exit 1).
 * Peer: none runs here (Flamenco, Deadline or OpenCue cannot be installed offline); the numbers
 * stand against the store's own limit, one fsync'd transaction per submit.
 * Run:   build/bench/bench_farm [--clients 8] [--jobs 125] [--worlds 4] [--coord PATH] [--json FILE]
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "bench_util.h"
#include "wire.h"

#ifndef BF_COORD_PATH
#define BF_COORD_PATH ""
#endif


typedef struct bench {
    const char *coord, *json;
    int clients, jobs;
    char dir[256], store[300], ready[300], ep[256], wep[256];
    pid_t pid;
    volatile int phase;            /* 0 before the crash, 1 after */
    pthread_mutex_t mu;            /* guards ep and acked_total */
    long acked_total;
    double peak_rss[3];            /* MiB, per phase (before, after, dispatch) */
    int worlds;                    /* dry-run worlds of the dispatch phase */
} bench;

typedef struct client {
    bench *b;
    int index;
    double *lat[2];                /* per phase, ms */
    int n[2], retries[2];
    int acked;                     /* keys acknowledged (0..jobs) */
} client;

static double rss_mib(pid_t pid) {
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    FILE *f = fopen(p, "r");
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb / 1024;
}

static int start_coord(bench *b) {
    unlink(b->ready);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open("/dev/null", 1);
        if (fd >= 0) dup2(fd, 2);
        execl(b->coord, b->coord, "--store", b->store, "--model", "wan-a", "--clients",
              "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*", "--workers",
              "tcp://127.0.0.1:*", "--ready-file", b->ready, (char *)NULL);
        _exit(127);
    }
    b->pid = pid;
    for (int i = 0; i < 400; i++) {
        FILE *f = fopen(b->ready, "r");
        if (f) {
            char events[256];
            int ok = fgets(b->ep, sizeof b->ep, f) && fgets(events, sizeof events, f) &&
                     fgets(b->wep, sizeof b->wep, f);
            fclose(f);
            if (ok) {
                b->ep[strcspn(b->ep, "\n")] = 0;
                b->wep[strcspn(b->wep, "\n")] = 0;
                return 0;
            }
        }
        usleep(10000);
    }
    return -1;
}

/* one submit: 0 acknowledged (or already), 1 no answer in time, -1 refused */
static int submit(void *ctx, bench *b, const char *key, const char *prompt, double *ms) {
    Wanfarm__JobSpec spec = WANFARM__JOB_SPEC__INIT;
    spec.prompt = (char *)prompt;
    Wanfarm__Submit sub = WANFARM__SUBMIT__INIT;
    sub.spec = &spec, sub.idempotency_key = (char *)key;
    Wanfarm__ClientRequest q = WANFARM__CLIENT_REQUEST__INIT;
    q.version = WP_VERSION, q.request_id = (char *)key;
    q.body_case = WANFARM__CLIENT_REQUEST__BODY_SUBMIT, q.submit = &sub;
    uint8_t *buf = NULL;
    size_t n = 0;
    wf_err e;
    if (wp_encode(&q.base, &buf, &n, &e)) return -1;
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int tmo = 2000, zero = 0;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    int rc = 1;
    double t0 = bu_now_s();
    zmq_msg_t m;
    zmq_msg_init(&m);
    char ep[256];
    pthread_mutex_lock(&b->mu);
    snprintf(ep, sizeof ep, "%s", b->ep);
    pthread_mutex_unlock(&b->mu);
    if (zmq_connect(s, ep) == 0 && zmq_send(s, buf, n, 0) >= 0 && zmq_msg_recv(&m, s, 0) >= 0) {
        ProtobufCMessage *pm = NULL;
        rc = -1;
        if (!wp_decode(WP_CLIENT_REPLY, zmq_msg_data(&m), zmq_msg_size(&m), &pm, &e) &&
            ((Wanfarm__ClientReply *)pm)->body_case == WANFARM__CLIENT_REPLY__BODY_SUBMITTED)
            rc = 0;
        wp_free(pm);
    }
    *ms = 1e3 * (bu_now_s() - t0);
    zmq_msg_close(&m);
    zmq_close(s);
    free(buf);
    return rc;
}

static void *client_main(void *arg) {
    client *c = arg;
    bench *b = c->b;
    void *ctx = zmq_ctx_new();
    for (int k = 0; k < b->jobs; k++) {
        char key[64], prompt[64];
        snprintf(key, sizeof key, "bench-%d-%d", c->index, k);
        snprintf(prompt, sizeof prompt, "bench job %d of client %d", k, c->index);
        double ms = 0;
        int r;
        while ((r = submit(ctx, b, key, prompt, &ms)) == 1) c->retries[b->phase]++;
        if (r == 0) {
            const int ph = b->phase;
            c->lat[ph][c->n[ph]++] = ms;
            c->acked = k + 1;
            pthread_mutex_lock(&b->mu);
            b->acked_total++;
            pthread_mutex_unlock(&b->mu);
        }
    }
    zmq_ctx_term(ctx);
    return NULL;
}


/* ---- the dispatch phase: dry-run worlds drain the queue ---- */

typedef struct world {
    bench *b;
    int index;
    double *gap;        /* ms from a result sent to the next assignment received */
    int n_gap, cap_gap, done;
    unsigned char *seen; /* by job number: assigned here */
    int twice;          /* a job assigned twice (to any world) */
} world;

static unsigned char *g_seen_all; /* by job number, over every world */
static pthread_mutex_t g_seen_mu = PTHREAD_MUTEX_INITIALIZER;
static volatile int g_drain_stop;

static void world_send(void *s, const char *id, Wanfarm__WorkerMessage *m) {
    m->version = WP_VERSION, m->world_id = (char *)id;
    uint8_t *buf = NULL;
    size_t n = 0;
    wf_err e;
    if (!wp_encode(&m->base, &buf, &n, &e)) zmq_send(s, buf, n, 0);
    free(buf);
}

/* A world that "runs" each job at once: a Result with one output, and beats while it lives. */
static void *world_main(void *arg) {
    world *w = arg;
    char id[32];
    snprintf(id, sizeof id, "dry-%d", w->index);
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, tmo = 100;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_connect(s, w->b->wep);
    Wanfarm__Hello h = WANFARM__HELLO__INIT;
    h.ranks = 1, h.model_id = "dry-run", h.model = "wan-a";
    Wanfarm__WorkerMessage hm = WANFARM__WORKER_MESSAGE__INIT;
    hm.body_case = WANFARM__WORKER_MESSAGE__BODY_HELLO, hm.hello = &h;
    world_send(s, id, &hm);
    double last_result = 0, last_beat = bu_now_s();
    while (!g_drain_stop) {
        if (bu_now_s() - last_beat > 0.5) {
            Wanfarm__Heartbeat hb = WANFARM__HEARTBEAT__INIT;
            Wanfarm__WorkerMessage bm = WANFARM__WORKER_MESSAGE__INIT;
            bm.body_case = WANFARM__WORKER_MESSAGE__BODY_HEARTBEAT, bm.heartbeat = &hb;
            world_send(s, id, &bm);
            last_beat = bu_now_s();
        }
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, 0) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        const double t_in = bu_now_s();
        ProtobufCMessage *pm = NULL;
        wf_err e;
        if (!wp_decode(WP_COORD_MESSAGE, zmq_msg_data(&m), zmq_msg_size(&m), &pm, &e) &&
            ((Wanfarm__CoordMessage *)pm)->body_case == WANFARM__COORD_MESSAGE__BODY_ASSIGN) {
            const Wanfarm__Assignment *a = ((Wanfarm__CoordMessage *)pm)->assign;
            const long num = atol(a->job_id + 1);
            if (num > 0 && num <= 1 << 20) {
                pthread_mutex_lock(&g_seen_mu);
                w->twice += g_seen_all[num]++ > 0;
                pthread_mutex_unlock(&g_seen_mu);
            }
            if (last_result > 0 && w->n_gap < w->cap_gap) w->gap[w->n_gap++] = 1e3 * (t_in - last_result);
            char out[64];
            snprintf(out, sizeof out, "%s.mp4", a->job_id);
            char *outs[1] = {out};
            Wanfarm__Result r = WANFARM__RESULT__INIT;
            r.job_id = a->job_id, r.attempt = a->attempt, r.n_outputs = 1, r.outputs = outs;
            Wanfarm__WorkerMessage rm = WANFARM__WORKER_MESSAGE__INIT;
            rm.body_case = WANFARM__WORKER_MESSAGE__BODY_RESULT, rm.result = &r;
            world_send(s, id, &rm);
            last_result = bu_now_s();
            w->done++;
        }
        wp_free(pm);
        zmq_msg_close(&m);
    }
    Wanfarm__Goodbye bye = WANFARM__GOODBYE__INIT;
    Wanfarm__WorkerMessage gm = WANFARM__WORKER_MESSAGE__INIT;
    gm.body_case = WANFARM__WORKER_MESSAGE__BODY_GOODBYE, gm.goodbye = &bye;
    world_send(s, id, &gm);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return NULL;
}

/* the jobs in the store (one list request) */
static long count_jobs(bench *b, int state) {
    Wanfarm__List li = WANFARM__LIST__INIT;
    li.has_limit = 1, li.limit = 10000;
    if (state) li.has_state = 1, li.state = (Wanfarm__JobState)state;
    Wanfarm__ClientRequest q = WANFARM__CLIENT_REQUEST__INIT;
    q.version = WP_VERSION, q.request_id = "count";
    q.body_case = WANFARM__CLIENT_REQUEST__BODY_LIST, q.list = &li;
    uint8_t *buf = NULL;
    size_t n = 0;
    wf_err e;
    long jobs = -1;
    if (wp_encode(&q.base, &buf, &n, &e)) return -1;
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
    int tmo = 10000, zero = 0;
    int64_t max = (int64_t)WP_MAX_MSG;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max);
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_connect(s, b->ep) == 0 && zmq_send(s, buf, n, 0) >= 0 && zmq_msg_recv(&m, s, 0) >= 0) {
        ProtobufCMessage *pm = NULL;
        if (!wp_decode(WP_CLIENT_REPLY, zmq_msg_data(&m), zmq_msg_size(&m), &pm, &e) &&
            ((Wanfarm__ClientReply *)pm)->body_case == WANFARM__CLIENT_REPLY__BODY_JOBS)
            jobs = (long)((Wanfarm__ClientReply *)pm)->jobs->n_jobs;
        wp_free(pm);
    }
    zmq_msg_close(&m);
    zmq_close(s);
    zmq_ctx_term(ctx);
    free(buf);
    return jobs;
}

/* the coordinator's RSS, sampled until `until` jobs are acknowledged (or the clients end) */
static void watch_rss(bench *b, int ph, long until, const volatile int *done) {
    for (;;) {
        double r = rss_mib(b->pid);
        if (r > b->peak_rss[ph]) b->peak_rss[ph] = r;
        pthread_mutex_lock(&b->mu);
        const long a = b->acked_total;
        pthread_mutex_unlock(&b->mu);
        if (a >= until || *done) return;
        usleep(5000);
    }
}

static int parse(int argc, char **argv, bench *b) {
    b->clients = 8, b->jobs = 125, b->worlds = 4;
    b->coord = BF_COORD_PATH;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) goto bad;
        if (!strcmp(argv[i], "--clients")) b->clients = atoi(v);
        else if (!strcmp(argv[i], "--jobs")) b->jobs = atoi(v);
        else if (!strcmp(argv[i], "--coord")) b->coord = v;
        else if (!strcmp(argv[i], "--worlds")) b->worlds = atoi(v);
        else if (!strcmp(argv[i], "--json")) b->json = v;
        else goto bad;
        i++;
    }
    if (b->clients >= 1 && b->clients <= 256 && b->jobs >= 2 && b->jobs <= 100000 && *b->coord &&
        b->worlds >= 1 && b->worlds <= 256 && (long)b->clients * b->jobs < (1 << 20))
        return 0;
bad:
    fprintf(stderr, "usage: bench_farm [--clients 1..256] [--jobs 2..100000] [--worlds 1..256] "
            "[--coord PATH] [--json FILE]\n");
    return 2;
}

int main(int argc, char **argv) {
    bench b;
    memset(&b, 0, sizeof b);
    if (parse(argc, argv, &b)) return 2;
    snprintf(b.dir, sizeof b.dir, "%s/bench_farm.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(b.dir)) return 1;
    snprintf(b.store, sizeof b.store, "%s/jobs.db", b.dir);
    snprintf(b.ready, sizeof b.ready, "%s/ready", b.dir);
    pthread_mutex_init(&b.mu, NULL);
    if (start_coord(&b)) {
        fprintf(stderr, "bench_farm: cannot start %s\n", b.coord);
        return 1;
    }
    client *cs = calloc((size_t)b.clients, sizeof *cs);
    pthread_t *th = calloc((size_t)b.clients, sizeof *th);
    for (int k = 0; k < b.clients; k++) {
        cs[k].b = &b, cs[k].index = k;
        cs[k].lat[0] = calloc((size_t)b.jobs, sizeof(double));
        cs[k].lat[1] = calloc((size_t)b.jobs, sizeof(double));
        pthread_create(&th[k], NULL, client_main, &cs[k]);
    }
    volatile int done = 0;
    const long expect = (long)b.clients * b.jobs;
    double t0 = bu_now_s();
    watch_rss(&b, 0, expect / 2, &done);
    const double t_half = bu_now_s() - t0;
    b.phase = 1;
    kill(b.pid, SIGKILL); /* the crash: mid-queue, requests in flight */
    waitpid(b.pid, NULL, 0);
    pthread_mutex_lock(&b.mu);
    int restarted = start_coord(&b) == 0; /* a new port: the clients take it up at their retry */
    pthread_mutex_unlock(&b.mu);
    double t1 = bu_now_s();
    watch_rss(&b, 1, expect, &done);
    for (int k = 0; k < b.clients; k++) pthread_join(th[k], NULL);
    const double t_rest = bu_now_s() - t1;
    b.peak_rss[1] = rss_mib(b.pid) > b.peak_rss[1] ? rss_mib(b.pid) : b.peak_rss[1];
    const long listed = restarted ? count_jobs(&b, 0) : -1;
    long acked = 0;
    for (int k = 0; k < b.clients; k++) acked += cs[k].acked;
    /* the dispatch phase: dry-run worlds drain the queue (assignment -> result -> next) */
    world *ws = calloc((size_t)b.worlds, sizeof *ws);
    pthread_t *wt = calloc((size_t)b.worlds, sizeof *wt);
    g_seen_all = calloc((size_t)1 << 20 | 1, 1);
    const double td0 = bu_now_s();
    for (int k = 0; k < b.worlds && restarted; k++) {
        ws[k].b = &b, ws[k].index = k, ws[k].cap_gap = (int)expect + 1;
        ws[k].gap = calloc((size_t)ws[k].cap_gap, sizeof(double));
        pthread_create(&wt[k], NULL, world_main, &ws[k]);
    }
    long sent_results = 0;
    while (restarted && bu_now_s() - td0 < 120) {
        sent_results = 0;
        for (int k = 0; k < b.worlds; k++) sent_results += ws[k].done;
        double r = rss_mib(b.pid);
        if (r > b.peak_rss[2]) b.peak_rss[2] = r;
        if (sent_results >= listed) break;
        usleep(2000);
    }
    const double t_drain = bu_now_s() - td0;
    usleep(300000); /* the last results' way in */
    const long done_jobs = restarted ? count_jobs(&b, 3) : -1;
    g_drain_stop = 1;
    int twice = 0, n_gap = 0;
    for (int k = 0; k < b.worlds && restarted; k++) pthread_join(wt[k], NULL);
    for (int k = 0; k < b.worlds; k++) twice += ws[k].twice, n_gap += ws[k].n_gap;
    double *gaps = calloc((size_t)n_gap + 1, sizeof *gaps);
    for (int k = 0, at = 0; k < b.worlds; k++)
        for (int i = 0; i < ws[k].n_gap; i++) gaps[at++] = ws[k].gap[i];
    qsort(gaps, (size_t)n_gap, sizeof *gaps, bu_cmp_double);
    const long lost_dispatch = (listed - (done_jobs < 0 ? 0 : done_jobs)) + twice;
    const long lost = acked - (listed < 0 ? 0 : (listed < acked ? listed : acked)) +
                      (listed > expect ? listed - expect : 0);
    printf("# bench_farm: wanfarm-coord (%s), %d clients x %d submits, SQLite WAL "
           "synchronous=FULL in %s; SIGKILL of the coordinator once %ld jobs were acknowledged "
           "(clients still sending), restarted on the same store\n", b.coord, b.clients, b.jobs,
           b.dir, expect / 2);
    printf("# %-8s %6s %9s %9s %9s %11s %9s %8s %6s\n", "phase", "jobs", "p50(ms)", "p99(ms)",
           "max(ms)", "jobs/s", "rss(MiB)", "retries", "#lost");
    int bad = !restarted || lost != 0 || listed != expect;
    for (int ph = 0; ph < 2; ph++) {
        int n = 0, retries = 0;
        for (int k = 0; k < b.clients; k++) n += cs[k].n[ph], retries += cs[k].retries[ph];
        double *all = calloc((size_t)n + 1, sizeof *all);
        int at = 0;
        for (int k = 0; k < b.clients; k++)
            for (int i = 0; i < cs[k].n[ph]; i++) all[at++] = cs[k].lat[ph][i];
        qsort(all, (size_t)n, sizeof *all, bu_cmp_double);
        const double secs = ph ? t_rest : t_half;
        printf("  %-8s %6d %9.2f %9.2f %9.2f %11.0f %9.1f %8d %6s\n", ph ? "after" : "before", n,
               n ? all[n / 2] : 0, n ? all[(int)(0.99 * (n - 1))] : 0, n ? all[n - 1] : 0,
               secs > 0 ? n / secs : 0, b.peak_rss[ph], retries, ph ? "" : "-");
        free(all);
    }
    printf("  %-8s %6ld %9.2f %9.2f %9.2f %11.0f %9.1f %8s %6ld\n", "dispatch", done_jobs,
           n_gap ? gaps[n_gap / 2] : 0, n_gap ? gaps[(int)(0.99 * (n_gap - 1))] : 0,
           n_gap ? gaps[n_gap - 1] : 0, t_drain > 0 ? done_jobs / t_drain : 0, b.peak_rss[2], "-",
           lost_dispatch);
    printf("  %-8s %6ld acknowledged, %ld in the store after the crash and the restart: #lost %ld\n",
           "all", acked, listed, lost);
    printf("# dispatch: %d dry-run worlds (each job \"done\" at once) drain the store's %ld jobs; "
           "latency = a world's result sent -> its next assignment received; #lost = jobs not done "
           "+ jobs assigned twice\n", b.worlds, listed);
    bad |= lost_dispatch != 0;
    printf("# %s\n", bad ? "FAILED: jobs lost, made twice, or the coordinator did not come back"
                         : "OK: every acknowledged job is in the store, none twice");
    if (b.json) {
        FILE *f = fopen(b.json, "w");
        if (f) {
            fprintf(f, "{\"clients\":%d,\"jobs\":%d,\"acknowledged\":%ld,\"listed\":%ld,\"lost\":%ld,"
                    "\"worlds\":%d,\"dispatched\":%ld,\"dispatch_jobs_per_s\":%.1f,"
                    "\"dispatch_p50_ms\":%.3f,\"ok\":%s}\n", b.clients, b.jobs, acked, listed,
                    lost, b.worlds, done_jobs, t_drain > 0 ? done_jobs / t_drain : 0,
                    n_gap ? gaps[n_gap / 2] : 0, bad ? "false" : "true");
            fclose(f);
        }
    }
    kill(b.pid, SIGTERM);
    waitpid(b.pid, NULL, 0);
    bu_remove_dir(b.dir);
    for (int k = 0; k < b.clients; k++) free(cs[k].lat[0]), free(cs[k].lat[1]);
    for (int k = 0; k < b.worlds; k++) free(ws[k].gap);
    free(ws), free(wt), free(gaps), free(g_seen_all);
    free(cs);
    free(th);
    return bad;
}
