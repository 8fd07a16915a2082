/* store.h: the coordinator's job store (prefix js_): every job and its life in SQLite, the truth
 * after any restart.
 *
 * What it is: one SQLite database (Debian's libsqlite3) in WAL mode with synchronous=FULL, so that
 * a call that returned has its transaction on disk: js_submit commits a job before the caller
 * acknowledges it, and every state change is one transaction. No journal format of our own.
 *   - Jobs: an id ("j000042"), the client's idempotency key (a retried submit with the same key
 *     and the same spec bytes is the same job; with other bytes it is refused), the spec (the
 *     packed JobSpec, opaque here) and its hash, a priority, the state (JOB_QUEUED ... as
 *     wanfarm.proto numbers them), attempts, failures charged to the job and to the
 *     infrastructure, progress (step, steps, the latest checkpoint), the world running it,
 *     reasons (every failure and retry, oldest first) and outputs.
 *   - js_next hands the highest-priority, oldest queued job to a world and starts an attempt:
 *     the attempt number is the fencing token every later call for that job must carry (a stale
 *     world's late message changes nothing: WF_EINVAL "stale attempt").
 *   - js_fail: an infrastructure fault (a lost world, a killed rank, a node gone) requeues the
 *     job without charging it, up to max_infra; a job fault charges it and requeues it until
 *     max_job faults, then the job fails with its reasons kept.
 *   - js_cancel: a queued job is cancelled at once; a running one is marked, and its world's
 *     next call learns it (js_progress returns *cancel) and ends it with js_cancelled.
 *   - js_requeue_world: a world declared lost gives its running jobs back (infrastructure).
 * What it is not: the sockets, the heartbeats or the planner (the coordinator's); thread-safe
 * (one connection, one thread).
 * Tested by: tests/test_store.c (every rule above; reopen; a writer killed with SIGKILL at a
 * random moment loses no acknowledged job).
 */
#ifndef JS_STORE_H
#define JS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* job states, as wanfarm.proto's JobState numbers them */
enum { JS_QUEUED = 1, JS_RUNNING = 2, JS_DONE = 3, JS_FAILED = 4, JS_CANCELLED = 5 };
#define JS_ID_LEN 16
#define JS_FORMAT 2 /* the schema's version (PRAGMA user_version) */
#define JS_FORMAT_STR "2"
/* what a job needs next (js_job.stage): its first steps, or (handed on by a high-noise stage
 * world at the switch) only the low-noise ones, from its checkpoint */
enum { JS_STAGE_START = 1, JS_STAGE_LOW = 3 };
/* which jobs a world takes (js_next's stages): bits */
enum { JS_TAKE_START = 1, JS_TAKE_LOW = 2 };

typedef struct js_store js_store;

typedef struct js_job {
    char id[JS_ID_LEN];
    int state;
    int priority;
    int attempts, job_failures, infra_failures;
    int64_t step, steps;
    bool cancel_requested;
    double submitted_at, started_at, finished_at;
    char world[64];
    char checkpoint[256];
    char model[72];        /* the model name ("" any) */
    int stage;             /* JS_STAGE_START or JS_STAGE_LOW */
    char output[224];      /* the output name ("" none given) */
    void *spec;            /* malloc'd copy (js_job_free) */
    size_t spec_bytes;
    char **reasons;        /* [n_reasons], oldest first */
    size_t n_reasons;
    char **outputs;        /* [n_outputs] */
    size_t n_outputs;
} js_job;

/* Opens (creating) the store at path. WF_EFORMAT for a database of another schema version or
 * that is not a job store; WF_EIO when SQLite cannot open it. */
wf_status js_open(js_store **out, const char *path, wf_err *err);
void js_close(js_store **s); /* accepts NULL */

typedef struct js_new {
    const char *idem_key; /* required */
    const void *spec;     /* the packed JobSpec (opaque here) */
    size_t spec_bytes;
    int priority;
    const char *model;    /* its model name (NULL or "": any world's) */
    int64_t steps;        /* for progress before the first report */
    const char *output;   /* its output name (NULL or "": none given); one job per name among the
                           * queued, running and done ones (WF_EINVAL naming the holder) */
} js_new;

/* A new job, committed when this returns (*existing: the key named this job already). */
wf_status js_submit(js_store *s, const js_new *n, double now, char id[JS_ID_LEN], bool *existing,
                    wf_err *err);
/* The next queued job for world (highest priority, then the oldest) of its model (NULL or "":
 * any) and of the stages it takes (JS_TAKE_* bits) becomes running with a new attempt; *found
 * false when none is queued. job: filled (js_job_free). */
wf_status js_next(js_store *s, const char *world, const char *model, unsigned stages, double now,
                  js_job *job, bool *found, wf_err *err);
/* A high-noise stage world handed the running job on after `step` steps (its checkpoint): it
 * waits again, for a world that takes JS_TAKE_LOW. No failure is charged. */
wf_status js_handoff(js_store *s, const char *id, int attempt, int64_t step,
                     const char *checkpoint, wf_err *err);
/* A running job's progress; *cancel: a cancel was asked for. */
wf_status js_progress(js_store *s, const char *id, int attempt, int64_t step, int64_t steps,
                      const char *checkpoint, bool *cancel, wf_err *err);
/* The job is done (its world stays recorded: the one that made the outputs). */
wf_status js_finish(js_store *s, const char *id, int attempt, const char *const *outputs,
                    size_t n_outputs, double now, wf_err *err);
/* *state: where the job went (JS_QUEUED again, or JS_FAILED). */
wf_status js_fail(js_store *s, const char *id, int attempt, bool infra, const char *reason,
                  int max_job, int max_infra, double now, int *state, wf_err *err);
wf_status js_cancel(js_store *s, const char *id, double now, int *state, wf_err *err);
wf_status js_cancelled(js_store *s, const char *id, int attempt, double now, wf_err *err);
/* The running jobs of world back to the queue (an infrastructure fault each); *n: how many. */
wf_status js_requeue_world(js_store *s, const char *world, const char *reason, int max_infra,
                           double now, int *n, wf_err *err);
wf_status js_get(js_store *s, const char *id, js_job *job, wf_err *err);
/* The jobs in a state (0: every state), oldest first, at most limit: fn(ctx, job) each. fn may
 * keep a job by moving it out (copy *job, then zero it); js_list frees what is left. */
wf_status js_list(js_store *s, int state, int limit, void (*fn)(void *ctx, js_job *job),
                  void *ctx, wf_err *err);
void js_job_free(js_job *job);
/* Whether an idempotency key names a job. */
bool js_key_exists(js_store *s, const char *key);
/* How many jobs are in a state (0: every state). */
wf_status js_count(js_store *s, int state, int64_t *n, wf_err *err);

#endif
