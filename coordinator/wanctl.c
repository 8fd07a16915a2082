/* wanctl.c: the farm's client: submit, status, list, watch, cancel and fetch jobs at a
 * wanfarm-coord, and list its worker worlds.
 *
 * Usage: wanctl [--coordinator EP] [--timeout S] [--json]
 *               [--curve-server-key FILE --curve-key FILE] VERB ...
 *   submit --prompt TEXT [--negative-prompt TEXT] [--size WxH] [--frames N] [--steps N]
 *          [--guidance G] [--guidance-2 G] [--shift S] [--boundary B] [--sampler unipc|euler]
 *          [--seed N] [--max-sequence-length N] [--model NAME] [--output NAME]
 *          [--save-latents] [--priority P] [--key KEY]
 *   submit --file JOBS.jsonl: one job per line, a JSON object whose keys are the flags above
 *          without "--" ("prompt", "size": "WxH", "frames", "seed", "output", "key", ...;
 *          numbers as numbers or strings); each line submitted in order, its id (or its error,
 *          naming the line) printed; the exit code is the worst line's
 *   status JOB | cancel JOB | list [--state queued|running|done|failed|cancelled] [--limit N]
 *   watch JOB [JOB ...] [--for S]: every state change of the jobs as it happens (the
 *          coordinator's events, and its status every second, so that a change published before
 *          the subscription took hold is not missed) and their steps as a progress bar with the
 *          ETA from the mean step time (redrawn on a terminal; else a line every tenth of the
 *          steps), until each is done, failed or cancelled (exit 0; 1 when one failed) or --for
 *          seconds have passed (exit 1)
 *   result JOB [--root DIR]: a done job's output files, one per line (under DIR, the farm's
 *          output root, when given); exit 1 with its state and reasons when it is not done
 *   worlds: the worker worlds the coordinator knows: id, ranks, host, pid, model, stage, the
 *          seconds since its last message, its jobs
 *   drain WORLD [--reason TEXT]: the world takes no new job and is shut down once free (every
 *          rank ends, exit 0); the worlds are printed as for `worlds`
 * With CurveZMQ on at the coordinator, --curve-server-key names its public key file and
 * --curve-key this client's secret key file (wanfarm-coord --keygen makes both; the client's
 * public key must be in the coordinator's --curve-clients folder, else no reply comes).
 * The coordinator defaults to tcp://127.0.0.1:5555 ($WANFARM_COORDINATOR overrides it); every
 * request waits at most --timeout seconds (default 10) for its reply. --key makes a submit
 * idempotent across retries (default: a fresh random key, printed); with --json every reply is
 * one JSON object on stdout.
 * Exit codes (as wanfarm's): 0 done, 1 the coordinator cannot be reached in time or failed, or
 * the job is not found, 2 a bad command line or a request the coordinator refused as invalid
 * (or a key reused for another spec).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

#include "wire.h"
#include "zkeys.h"

#define PROG "wanctl"

typedef struct ctl {
    const char *endpoint;
    double timeout;
    int json;
    int curve;                        /* the keys below are set */
    char server[41], secret[41], pub[41];
} ctl;

/* a CURVE client socket when the keys are given */
static void set_curve(const ctl *c, void *s) {
    if (!c->curve) return;
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, c->server, 40);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, c->pub, 40);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->secret, 40);
}

static int usage(const char *why) {
    fprintf(stderr, PROG ": %s (see the head of coordinator/wanctl.c, or `wanctl --help`)\n", why);
    return 2;
}

static void help(void) {
    printf("usage: wanctl [--coordinator EP] [--timeout S] [--json] [--curve-server-key FILE\n"
           "              --curve-key FILE] VERB ...\n"
           "  submit --prompt TEXT [--size WxH --frames N --steps N --guidance G --seed N\n"
           "         --sampler unipc|euler --model NAME --output NAME --priority P --key KEY ...]\n"
           "  status JOB | cancel JOB | list [--state STATE] [--limit N]\n"
           "  watch JOB [JOB ...] [--for S]     state changes and a progress bar per job\n"
           "  result JOB [--root DIR]           a done job's output files\n"
           "  worlds                            the worker worlds: ranks, host, model, jobs\n"
           "  drain WORLD [--reason TEXT]       no new job for it; it ends once free\n"
           "exit codes: 0 done, 1 unreachable or failed or not found, 2 bad command line or "
           "refused\n");
}

/* one request, one reply (NULL: the message is printed, *rc set) */
static Wanfarm__ClientReply *call(const ctl *c, const Wanfarm__ClientRequest *q, int *rc) {
    uint8_t *b = NULL;
    size_t n = 0;
    wf_err err;
    *rc = 1;
    if (wp_encode(&q->base, &b, &n, &err)) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        *rc = 2;
        return NULL;
    }
    void *ctx = zmq_ctx_new(), *s = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
    int ms = (int)(c->timeout * 1000), zero = 0;
    int64_t max = (int64_t)WP_MAX_MSG;
    Wanfarm__ClientReply *r = NULL;
    if (!s) goto out;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof ms);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &ms, sizeof ms);
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max);
    set_curve(c, s);
    if (zmq_connect(s, c->endpoint) != 0) {
        fprintf(stderr, PROG ": --coordinator %s: %s\n", c->endpoint, zmq_strerror(zmq_errno()));
        goto out;
    }
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_send(s, b, n, 0) < 0 || zmq_msg_recv(&m, s, 0) < 0) {
        fprintf(stderr, PROG ": no answer from the coordinator at %s within %g s (is "
                "wanfarm-coord running there?)\n", c->endpoint, c->timeout);
        zmq_msg_close(&m);
        goto out;
    }
    ProtobufCMessage *pm = NULL;
    if (wp_decode(WP_CLIENT_REPLY, zmq_msg_data(&m), zmq_msg_size(&m), &pm, &err))
        fprintf(stderr, PROG ": the coordinator's reply: %s\n", err.msg);
    zmq_msg_close(&m);
    r = (Wanfarm__ClientReply *)pm;
    if (r && strcmp(r->request_id, q->request_id) && r->body_case != WANFARM__CLIENT_REPLY__BODY_ERROR) {
        fprintf(stderr, PROG ": the reply is for request '%.40s', not ours\n", r->request_id);
        wp_free(pm);
        r = NULL;
    }
out:
    free(b);
    if (s) zmq_close(s);
    if (ctx) zmq_ctx_term(ctx);
    return r;
}

static const char *state_name(int s) {
    static const char *const n[6] = {"?", "queued", "running", "done", "failed", "cancelled"};
    return s >= 1 && s <= 5 ? n[s] : "?";
}

static json_t *job_json(const Wanfarm__JobInfo *j) {
    json_t *o = json_object(), *outs = json_array(), *why = json_array();
    for (size_t k = 0; k < j->n_outputs; k++) json_array_append_new(outs, json_string(j->outputs[k]));
    for (size_t k = 0; k < j->n_reasons; k++) json_array_append_new(why, json_string(j->reasons[k]));
    json_object_set_new(o, "job", json_string(j->job_id));
    json_object_set_new(o, "state", json_string(state_name(j->state)));
    json_object_set_new(o, "prompt", json_string(j->spec->prompt));
    json_object_set_new(o, "step", json_integer(j->step));
    json_object_set_new(o, "steps", json_integer(j->steps));
    json_object_set_new(o, "attempts", json_integer(j->attempts));
    json_object_set_new(o, "outputs", outs);
    json_object_set_new(o, "reasons", why);
    if (j->world) json_object_set_new(o, "world", json_string(j->world));
    return o;
}

static void print_job(const ctl *c, const Wanfarm__JobInfo *j) {
    if (c->json) {
        json_t *o = job_json(j);
        char *s = json_dumps(o, JSON_COMPACT);
        if (s) printf("%s\n", s);
        free(s);
        json_decref(o);
        return;
    }
    printf("%s  %-9s  step %u/%u  attempts %u  %.60s\n", j->job_id, state_name(j->state), j->step,
           j->steps, j->attempts, j->spec->prompt);
    for (size_t k = 0; k < j->n_outputs; k++) printf("  output %s\n", j->outputs[k]);
    for (size_t k = 0; k < j->n_reasons; k++) printf("  reason %s\n", j->reasons[k]);
}

/* the reply's outcome: prints it, returns the exit code */
static int outcome(const ctl *c, const Wanfarm__ClientReply *r) {
    if (r->body_case == WANFARM__CLIENT_REPLY__BODY_ERROR) {
        const Wanfarm__ErrorCategory k = r->error->category;
        fprintf(stderr, PROG ": %s\n", r->error->message);
        return k == WANFARM__ERROR_CATEGORY__ERR_INVALID || k == WANFARM__ERROR_CATEGORY__ERR_DUPLICATE
                   ? 2
                   : 1;
    }
    if (r->body_case == WANFARM__CLIENT_REPLY__BODY_SUBMITTED) {
        if (c->json) printf("{\"job\":\"%s\",\"existing\":%s}\n", r->submitted->job_id,
                            r->submitted->existing ? "true" : "false");
        else printf("%s%s\n", r->submitted->job_id, r->submitted->existing ? " (already submitted)" : "");
    } else if (r->body_case == WANFARM__CLIENT_REPLY__BODY_JOB) {
        print_job(c, r->job);
    } else if (r->body_case == WANFARM__CLIENT_REPLY__BODY_JOBS) {
        for (size_t k = 0; k < r->jobs->n_jobs; k++) print_job(c, r->jobs->jobs[k]);
    }
    return 0;
}

/* A request whose reply must be of one kind: the reply, or NULL with *rc the exit code (an
 * Error reply printed: its code, at least 1). */
static Wanfarm__ClientReply *call_for(const ctl *c, const Wanfarm__ClientRequest *q, int body,
                                      int *rc) {
    Wanfarm__ClientReply *r = call(c, q, rc);
    if (!r || (int)r->body_case == body) return r;
    *rc = outcome(c, r);
    if (!*rc) *rc = 1;
    wp_free(&r->base);
    return NULL;
}

/* one request, its outcome printed: the exit code */
static int request(const ctl *c, const Wanfarm__ClientRequest *q) {
    int rc;
    Wanfarm__ClientReply *r = call(c, q, &rc);
    if (!r) return rc;
    rc = outcome(c, r);
    wp_free(&r->base);
    return rc;
}

/* a fresh idempotency key: 16 random bytes, hex */
static void fresh_key(char *out) {
    unsigned char b[16] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, b, sizeof b) != (ssize_t)sizeof b)
        for (size_t k = 0; k < sizeof b; k++) b[k] = (unsigned char)(rand() ^ getpid());
    if (fd >= 0) close(fd);
    for (size_t k = 0; k < sizeof b; k++) sprintf(out + 2 * k, "%02x", b[k]);
}

static int parse_u32(const char *v, uint32_t *out, protobuf_c_boolean *has) {
    char *e;
    errno = 0;
    unsigned long x = strtoul(v, &e, 10);
    if (!*v || *e || errno || x > 0xffffffffu || v[0] == '-') return 1;
    *out = (uint32_t)x;
    *has = 1;
    return 0;
}

static int parse_f64(const char *v, double *out, protobuf_c_boolean *has) {
    char *e;
    double x = strtod(v, &e);
    if (!*v || *e || x != x) return 1;
    *out = x;
    *has = 1;
    return 0;
}

/* one submit option into the spec (1: bad value, -1: not an option of submit) */
static int submit_opt(Wanfarm__JobSpec *s, const char *a, const char *v, const char **key) {
    if (!strcmp(a, "--prompt")) s->prompt = (char *)v;
    else if (!strcmp(a, "--negative-prompt")) s->negative_prompt = (char *)v;
    else if (!strcmp(a, "--model")) s->model = (char *)v;
    else if (!strcmp(a, "--output")) s->output_name = (char *)v;
    else if (!strcmp(a, "--sampler")) s->sampler = (char *)v;
    else if (!strcmp(a, "--key")) *key = v;
    else if (!strcmp(a, "--frames")) return parse_u32(v, &s->frames, &s->has_frames);
    else if (!strcmp(a, "--steps")) return parse_u32(v, &s->steps, &s->has_steps);
    else if (!strcmp(a, "--max-sequence-length"))
        return parse_u32(v, &s->max_sequence_length, &s->has_max_sequence_length);
    else if (!strcmp(a, "--guidance")) return parse_f64(v, &s->guidance, &s->has_guidance);
    else if (!strcmp(a, "--guidance-2")) return parse_f64(v, &s->guidance_2, &s->has_guidance_2);
    else if (!strcmp(a, "--shift")) return parse_f64(v, &s->shift, &s->has_shift);
    else if (!strcmp(a, "--boundary")) return parse_f64(v, &s->boundary, &s->has_boundary);
    else if (!strcmp(a, "--seed")) {
        char *e;
        errno = 0;
        s->seed = strtoull(v, &e, 10);
        s->has_seed = 1;
        return !*v || *e || errno || v[0] == '-';
    } else if (!strcmp(a, "--priority")) {
        char *e;
        long p = strtol(v, &e, 10);
        s->priority = (int32_t)p;
        s->has_priority = 1;
        return !*v || *e || p < -1000000 || p > 1000000;
    } else if (!strcmp(a, "--size")) {
        unsigned w = 0, h = 0;
        char x = 0, rest = 0;
        if (sscanf(v, "%u%c%u%c", &w, &x, &h, &rest) != 3 || (x != 'x' && x != 'X')) return 1;
        s->width = w, s->height = h, s->has_width = s->has_height = 1;
    } else return -1;
    return 0;
}

static int submit_spec(const ctl *c, Wanfarm__JobSpec *spec, const char *key);

/* One JSON line into flag pairs for submit_opt, then submitted; the exit code. */
static int submit_line(const ctl *c, const char *path, long line, const char *text) {
    json_error_t je;
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(o)) {
        fprintf(stderr, PROG ": %s:%ld: not a JSON object (%s)\n", path, line, je.text);
        json_decref(o);
        return 2;
    }
    Wanfarm__JobSpec spec = WANFARM__JOB_SPEC__INIT;
    const char *key = NULL, *k;
    json_t *v;
    char num[64], flag[80];
    int rc = 0;
    json_object_foreach(o, k, v) {
        const char *val = json_is_string(v) ? json_string_value(v) : NULL;
        if (json_is_integer(v)) snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v)), val = num;
        else if (json_is_real(v)) snprintf(num, sizeof num, "%.17g", json_real_value(v)), val = num;
        else if (json_is_true(v) && !strcmp(k, "save_latents")) {
            spec.has_save_latents = spec.save_latents = 1;
            continue;
        }
        snprintf(flag, sizeof flag, "--%s", k);
        for (char *p = flag; *p; p++) if (*p == '_') *p = '-';
        int r = val ? submit_opt(&spec, flag, val, &key) : -1;
        if (r) {
            fprintf(stderr, PROG ": %s:%ld: \"%s\": %s\n", path, line, k,
                    r < 0 ? "not a job field (prompt, size, frames, steps, seed, output, key, ...)"
                          : "bad value");
            rc = 2;
            break;
        }
    }
    if (!rc && !spec.prompt) {
        fprintf(stderr, PROG ": %s:%ld: no \"prompt\"\n", path, line);
        rc = 2;
    }
    if (!rc) rc = submit_spec(c, &spec, key);
    json_decref(o); /* the spec's strings point into o: after the submit */
    return rc;
}

static int submit_file(const ctl *c, const char *path) {
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!f) {
        fprintf(stderr, PROG ": --file %s: %s\n", path, strerror(errno));
        return 1;
    }
    char *text = NULL;
    size_t cap = 0;
    ssize_t got;
    long line = 0;
    int worst = 0, jobs = 0;
    while ((got = getline(&text, &cap, f)) >= 0) {
        line++;
        const char *p = text;
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (!*p) continue; /* blank lines */
        int rc = submit_line(c, path, line, text);
        if (rc > worst) worst = rc;
        jobs++;
    }
    free(text);
    if (f != stdin) fclose(f);
    if (!jobs) {
        fprintf(stderr, PROG ": --file %s: no job in it\n", path);
        return 2;
    }
    return worst;
}

static int do_submit(const ctl *c, int argc, char **argv) {
    Wanfarm__JobSpec spec = WANFARM__JOB_SPEC__INIT;
    const char *key = NULL;
    if (argc == 2 && !strcmp(argv[0], "--file")) return submit_file(c, argv[1]);
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--save-latents")) {
            spec.has_save_latents = spec.save_latents = 1;
            continue;
        }
        if (i + 1 >= argc) return usage(argv[i]);
        int r = submit_opt(&spec, argv[i], argv[i + 1], &key);
        if (r < 0) return usage(argv[i]);
        if (r > 0) {
            fprintf(stderr, PROG ": %s: bad value '%s'\n", argv[i], argv[i + 1]);
            return 2;
        }
        i++;
    }
    if (!spec.prompt) return usage("submit needs --prompt TEXT (or --file JOBS.jsonl)");
    return submit_spec(c, &spec, key);
}

static int submit_spec(const ctl *c, Wanfarm__JobSpec *spec, const char *key) {
    char fresh[40];
    if (!key) {
        fresh_key(fresh);
        key = fresh;
        if (!c->json) fprintf(stderr, PROG ": idempotency key %s (--key %s retries this submit)\n",
                              key, key);
    }
    Wanfarm__Submit sub = WANFARM__SUBMIT__INIT;
    sub.spec = spec, sub.idempotency_key = (char *)key;
    Wanfarm__ClientRequest q = WANFARM__CLIENT_REQUEST__INIT;
    q.version = WP_VERSION, q.request_id = (char *)key;
    q.body_case = WANFARM__CLIENT_REQUEST__BODY_SUBMIT, q.submit = &sub;
    return request(c, &q);
}

static int state_of(const char *v) {
    static const char *const n[5] = {"queued", "running", "done", "failed", "cancelled"};
    for (int k = 0; k < 5; k++)
        if (!strcmp(v, n[k])) return k + 1;
    return 0;
}

static int do_simple(const ctl *c, const char *verb, int argc, char **argv) {
    Wanfarm__ClientRequest q = WANFARM__CLIENT_REQUEST__INIT;
    Wanfarm__Status st = WANFARM__STATUS__INIT;
    Wanfarm__Cancel ca = WANFARM__CANCEL__INIT;
    Wanfarm__List li = WANFARM__LIST__INIT;
    q.version = WP_VERSION, q.request_id = (char *)verb;
    if (!strcmp(verb, "list")) {
        for (int i = 0; i < argc; i += 2) {
            if (i + 1 >= argc) return usage(argv[i]);
            if (!strcmp(argv[i], "--state") && (li.state = state_of(argv[i + 1])))
                li.has_state = 1;
            else if (!strcmp(argv[i], "--limit") && !parse_u32(argv[i + 1], &li.limit, &li.has_limit))
                continue;
            else return usage(argv[i]);
        }
        q.body_case = WANFARM__CLIENT_REQUEST__BODY_LIST, q.list = &li;
    } else {
        if (argc != 1) return usage("status and cancel take one job id");
        if (!strcmp(verb, "status"))
            st.job_id = argv[0], q.body_case = WANFARM__CLIENT_REQUEST__BODY_STATUS, q.status = &st;
        else
            ca.job_id = argv[0], q.body_case = WANFARM__CLIENT_REQUEST__BODY_CANCEL, q.cancel = &ca;
    }
    return request(c, &q);
}

/* ---- watch ---- */

typedef struct watched {
    const char *id;
    int state; /* last seen (0: not yet) */
    uint32_t step, steps, shown; /* the last progress, and the step last printed */
    double seconds; /* the sum of the reported steps' seconds */
    uint32_t timed; /* how many steps that sum holds */
} watched;

static int final_state(int s) { return s == 3 || s == 4 || s == 5; }

/* a state seen for job w (from an event or a status): printed when it changed */
static void seen(const ctl *c, watched *w, int state, const char *why) {
    if (state == w->state) return;
    if (c->json)
        printf("{\"job\":\"%s\",\"state\":\"%s\"%s%s%s}\n", w->id, state_name(state),
               why ? ",\"reason\":\"" : "", why ? why : "", why ? "\"" : "");
    else
        printf("%s  %s%s%s\n", w->id, state_name(state), why ? "  " : "", why ? why : "");
    fflush(stdout);
    w->state = state;
}

/* status of every unfinished job; -1 when the coordinator did not answer */
static int poll_status(const ctl *c, watched *w, int n) {
    for (int k = 0; k < n; k++) {
        if (final_state(w[k].state)) continue;
        Wanfarm__Status st = WANFARM__STATUS__INIT;
        st.job_id = (char *)w[k].id;
        Wanfarm__ClientRequest q = WANFARM__CLIENT_REQUEST__INIT;
        q.version = WP_VERSION, q.request_id = "watch";
        q.body_case = WANFARM__CLIENT_REQUEST__BODY_STATUS, q.status = &st;
        int rc;
        Wanfarm__ClientReply *r = call(c, &q, &rc);
        if (!r) return -1;
        if (r->body_case == WANFARM__CLIENT_REPLY__BODY_JOB) seen(c, &w[k], r->job->state, NULL);
        else if (r->body_case == WANFARM__CLIENT_REPLY__BODY_ERROR) {
            fprintf(stderr, PROG ": %s\n", r->error->message);
            wp_free(&r->base);
            return -1;
        }
        wp_free(&r->base);
    }
    return 0;
}

static int all_final(const watched *w, int n, int *failed) {
    int all = 1;
    *failed = 0;
    for (int k = 0; k < n; k++) {
        all &= final_state(w[k].state);
        *failed |= w[k].state == 4;
    }
    return all;
}

/* A step of job w (an event): a progress bar with the ETA from the mean step time (JSON: one
 * object per step). On a terminal the bar is redrawn in place; elsewhere a line at every tenth
 * of the steps and at the last. */
static void progressed(const ctl *c, watched *w, const Wanfarm__Progress *p) {
    if (p->step <= w->step && p->steps == w->steps) return; /* an old or repeated report */
    w->step = p->step, w->steps = p->steps;
    if (p->has_step_seconds) w->seconds += p->step_seconds, w->timed++;
    const double per = w->timed ? w->seconds / w->timed : 0;
    const double eta = per * (double)(w->steps > w->step ? w->steps - w->step : 0);
    if (c->json) {
        printf("{\"job\":\"%s\",\"event\":\"progress\",\"step\":%u,\"steps\":%u,"
               "\"step_seconds\":%.4f,\"eta_seconds\":%.2f}\n", w->id, w->step, w->steps, per, eta);
        fflush(stdout);
        return;
    }
    const int tty = isatty(STDOUT_FILENO);
    const uint32_t tenth = w->steps >= 10 ? w->steps / 10 : 1;
    if (!tty && w->step != w->steps && w->step < w->shown + tenth) return;
    w->shown = w->step;
    char bar[31];
    const int fill = w->steps ? (int)(30.0 * w->step / w->steps) : 0;
    for (int k = 0; k < 30; k++) bar[k] = k < fill ? '#' : '.';
    bar[30] = 0;
    printf("%s%s  [%s] %u/%u  %.2f s/step  ETA %.0f s%s", tty ? "\r" : "", w->id, bar, w->step,
           w->steps, per, eta, tty && w->step != w->steps ? "" : "\n");
    fflush(stdout);
}

/* one event from the SUB socket into the watched jobs */
static void take_event(const ctl *c, void *sub, watched *w, int n) {
    zmq_msg_t t, m;
    zmq_msg_init(&t);
    zmq_msg_init(&m);
    if (zmq_msg_recv(&t, sub, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&t) &&
        zmq_msg_recv(&m, sub, ZMQ_DONTWAIT) >= 0) {
        ProtobufCMessage *pm = NULL;
        wf_err e;
        if (!wp_decode(WP_EVENT, zmq_msg_data(&m), zmq_msg_size(&m), &pm, &e)) {
            const Wanfarm__Event *ev = (const Wanfarm__Event *)pm;
            for (int k = 0; k < n; k++) {
                if (strcmp(ev->job_id, w[k].id)) continue;
                if (ev->body_case == WANFARM__EVENT__BODY_STATE)
                    seen(c, &w[k], ev->state->to, ev->state->reason);
                else if (ev->body_case == WANFARM__EVENT__BODY_PROGRESS && !final_state(w[k].state))
                    progressed(c, &w[k], ev->progress);
            }
            wp_free(pm);
        }
    }
    zmq_msg_close(&t);
    zmq_msg_close(&m);
}

/* the coordinator's events endpoint (watch) into ep ("" when it gives none); the exit code */
static int events_endpoint(const ctl *c, char *ep, size_t cap) {
    Wanfarm__Watch wq = WANFARM__WATCH__INIT;
    Wanfarm__ClientRequest q = WANFARM__CLIENT_REQUEST__INIT;
    q.version = WP_VERSION, q.request_id = "watch";
    q.body_case = WANFARM__CLIENT_REQUEST__BODY_WATCH, q.watch = &wq;
    int rc;
    Wanfarm__ClientReply *r = call(c, &q, &rc);
    if (!r) return rc;
    ep[0] = 0;
    if (r->body_case == WANFARM__CLIENT_REPLY__BODY_WATCH)
        snprintf(ep, cap, "%s", r->watch->events_endpoint);
    wp_free(&r->base);
    return 0;
}

static double since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

/* until every job ended (0, or 1 when one failed), the coordinator went away or `limit`
 * seconds passed (1) */
static int watch_loop(const ctl *c, void *sub, watched *w, int n, double limit) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int failed = 0;
    for (;;) {
        if (poll_status(c, w, n) < 0) return 1;
        if (all_final(w, n, &failed)) return failed;
        if (limit > 0 && since(&t0) > limit) {
            fprintf(stderr, PROG ": watch: %g s passed before every job ended\n", limit);
            return 1;
        }
        zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
        while (zmq_poll(&it, 1, 1000) > 0) {
            take_event(c, sub, w, n);
            if (all_final(w, n, &failed)) break;
        }
    }
}

static int do_watch(const ctl *c, int argc, char **argv) {
    watched w[64];
    int n = 0;
    double limit = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--for") && i + 1 < argc) {
            char *e;
            limit = strtod(argv[++i], &e);
            if (*e || !(limit > 0)) return usage("--for S: seconds > 0");
        } else if (n < 64) {
            w[n++] = (watched){.id = argv[i]};
        } else return usage("watch takes at most 64 jobs");
    }
    if (!n) return usage("watch needs a job id");
    char ep[256];
    int rc = events_endpoint(c, ep, sizeof ep);
    if (rc) return rc;
    void *ctx = zmq_ctx_new(), *sub = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    set_curve(c, sub);
    for (int k = 0; k < n; k++) zmq_setsockopt(sub, ZMQ_SUBSCRIBE, w[k].id, strlen(w[k].id));
    if (*ep && zmq_connect(sub, ep) != 0)
        fprintf(stderr, PROG ": events at %s: %s (following the status only)\n", ep,
                zmq_strerror(zmq_errno()));
    rc = watch_loop(c, sub, w, n, limit);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return rc;
}

/* worlds: the worker worlds the coordinator knows, one per line (JSON: one object each). */
static int do_worlds(const ctl *c, const char *verb, int argc, char **argv) {
    Wanfarm__Worlds wq = WANFARM__WORLDS__INIT;
    Wanfarm__Drain dq = WANFARM__DRAIN__INIT;
    Wanfarm__ClientRequest q = WANFARM__CLIENT_REQUEST__INIT;
    q.version = WP_VERSION, q.request_id = (char *)verb;
    if (!strcmp(verb, "drain")) { /* drain WORLD [--reason TEXT] */
        if (argc != 1 && !(argc == 3 && !strcmp(argv[1], "--reason")))
            return usage("drain takes a world id (and --reason TEXT)");
        dq.world_id = argv[0], dq.reason = argc == 3 ? argv[2] : NULL;
        q.body_case = WANFARM__CLIENT_REQUEST__BODY_DRAIN, q.drain = &dq;
    } else {
        if (argc) return usage("worlds takes no argument");
        q.body_case = WANFARM__CLIENT_REQUEST__BODY_WORLDS, q.worlds = &wq;
    }
    int rc;
    Wanfarm__ClientReply *r = call_for(c, &q, WANFARM__CLIENT_REPLY__BODY_WORLDS, &rc);
    if (!r) return rc;
    static const char *const stage[4] = {"?", "all", "high", "low"};
    for (size_t k = 0; k < r->worlds->n_worlds; k++) {
        const Wanfarm__WorldInfo *w = r->worlds->worlds[k];
        const char *st = w->has_stage && w->stage >= 1 && w->stage <= 3 ? stage[w->stage] : "?";
        if (c->json) {
            json_t *o = json_object(), *jobs = json_array();
            for (size_t i = 0; i < w->n_running; i++) json_array_append_new(jobs, json_string(w->running[i]));
            json_object_set_new(o, "world", json_string(w->world_id));
            json_object_set_new(o, "ranks", json_integer(w->ranks));
            if (w->host) json_object_set_new(o, "host", json_string(w->host));
            if (w->has_pid) json_object_set_new(o, "pid", json_integer(w->pid));
            if (w->model) json_object_set_new(o, "model", json_string(w->model));
            json_object_set_new(o, "stage", json_string(st));
            json_object_set_new(o, "running", jobs);
            json_object_set_new(o, "silent_seconds", json_real(w->silent_seconds));
            json_object_set_new(o, "planned", json_boolean(w->has_planned && w->planned));
            json_object_set_new(o, "draining", json_boolean(w->has_draining && w->draining));
            char *txt = json_dumps(o, JSON_COMPACT);
            if (txt) printf("%s\n", txt);
            free(txt);
            json_decref(o);
            continue;
        }
        printf("%-24s %3u rank%s  %-12s pid %-7d model %-12s stage %-4s  silent %5.1f s  %s",
               w->world_id, w->ranks, w->ranks == 1 ? " " : "s", w->host ? w->host : "(not back)",
               w->has_pid ? w->pid : 0, w->model ? w->model : "?", st, w->silent_seconds,
               w->has_draining && w->draining ? (w->n_running ? "draining" : "drained")
               : w->n_running                  ? "running"
                                               : "idle");
        for (size_t i = 0; i < w->n_running; i++) printf(" %s", w->running[i]);
        printf("\n");
    }
    wp_free(&r->base);
    return 0;
}

/* result JOB [--root DIR]: a done job's outputs, one per line (under DIR when given); exit 0
 * when it is done, 1 otherwise (its state and reasons on stderr). */
static int do_result(const ctl *c, int argc, char **argv) {
    const char *root = NULL, *id = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--root") && i + 1 < argc) root = argv[++i];
        else if (!id) id = argv[i];
        else return usage("result takes one job id (and --root DIR)");
    }
    if (!id) return usage("result needs a job id");
    Wanfarm__Status st = WANFARM__STATUS__INIT;
    st.job_id = (char *)id;
    Wanfarm__ClientRequest q = WANFARM__CLIENT_REQUEST__INIT;
    q.version = WP_VERSION, q.request_id = "result";
    q.body_case = WANFARM__CLIENT_REQUEST__BODY_STATUS, q.status = &st;
    int rc;
    Wanfarm__ClientReply *r = call_for(c, &q, WANFARM__CLIENT_REPLY__BODY_JOB, &rc);
    if (!r) return rc;
    const Wanfarm__JobInfo *j = r->job;
    rc = j->state == 3 ? 0 : 1;
    if (c->json) {
        json_t *o = json_object(), *outs = json_array();
        for (size_t k = 0; k < j->n_outputs; k++) {
            char p[4400];
            snprintf(p, sizeof p, "%s%s%s", root ? root : "", root ? "/" : "", j->outputs[k]);
            json_array_append_new(outs, json_string(p));
        }
        json_object_set_new(o, "job", json_string(j->job_id));
        json_object_set_new(o, "state", json_string(state_name(j->state)));
        json_object_set_new(o, "outputs", outs);
        char *txt = json_dumps(o, JSON_COMPACT);
        if (txt) printf("%s\n", txt);
        free(txt);
        json_decref(o);
    } else if (!rc) {
        for (size_t k = 0; k < j->n_outputs; k++)
            printf("%s%s%s\n", root ? root : "", root ? "/" : "", j->outputs[k]);
    }
    if (rc) {
        fprintf(stderr, PROG ": job %s is %s%s\n", j->job_id, state_name(j->state),
                j->state < 3 ? ": no result yet (wanctl watch waits for it)" : "");
        for (size_t k = 0; k < j->n_reasons; k++) fprintf(stderr, "  reason %s\n", j->reasons[k]);
    }
    wp_free(&r->base);
    return rc;
}

/* One option before the verb with its value v into c: 0, 1 not ours, 2 (after the message) bad. */
static int global_opt(ctl *c, const char *a, const char *v) {
    if (!strcmp(a, "--coordinator")) c->endpoint = v;
    else if (!strcmp(a, "--curve-server-key")) {
        if (zk_read(v, c->server, 0)) return usage("--curve-server-key: not a Z85 key file");
        c->curve |= 1;
    } else if (!strcmp(a, "--curve-key")) {
        if (zk_read(v, c->secret, 0) || zmq_curve_public(c->pub, c->secret) != 0)
            return usage("--curve-key: not a Z85 secret key file");
        c->curve |= 2;
    } else if (!strcmp(a, "--timeout")) {
        char *e;
        c->timeout = strtod(v, &e);
        if (*e || !(c->timeout > 0 && c->timeout <= 3600)) return usage("--timeout: 0 to 3600 s");
    } else return 1;
    return 0;
}

int main(int argc, char **argv) {
    ctl c = {getenv("WANFARM_COORDINATOR") ? getenv("WANFARM_COORDINATOR") : "tcp://127.0.0.1:5555",
             10.0, 0, 0, "", "", ""};
    int i = 1;
    for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
        if (!strcmp(argv[i], "--help")) {
            help();
            return 0;
        }
        if (!strcmp(argv[i], "--json")) {
            c.json = 1;
            continue;
        }
        int r = i + 1 < argc ? global_opt(&c, argv[i], argv[i + 1]) : 1;
        if (r == 1) return usage(argv[i]);
        if (r) return r;
        i++;
    }
    if (c.curve && c.curve != 3)
        return usage("--curve-server-key and --curve-key go together");
    if (i == argc) return usage("no verb (submit, status, list, cancel, watch, result, worlds, drain)");
    const char *verb = argv[i++];
    if (!strcmp(verb, "submit")) return do_submit(&c, argc - i, argv + i);
    if (!strcmp(verb, "status") || !strcmp(verb, "cancel") || !strcmp(verb, "list"))
        return do_simple(&c, verb, argc - i, argv + i);
    if (!strcmp(verb, "watch")) return do_watch(&c, argc - i, argv + i);
    if (!strcmp(verb, "result")) return do_result(&c, argc - i, argv + i);
    if (!strcmp(verb, "worlds") || !strcmp(verb, "drain"))
        return do_worlds(&c, verb, argc - i, argv + i);
    return usage("unknown verb (submit, status, list, cancel, watch, result, worlds, drain)");
}
