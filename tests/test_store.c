/* test_store.c: the coordinator's job store (coordinator/store/store.h) against its rules.
 *   - submit: ids, idempotency (the same key and spec: the same job; another spec: refused);
 *   - order: highest priority first, then first in, first out; attempts counted;
 *   - fencing: a stale attempt's progress, result or failure changes nothing;
 *   - retries: infrastructure faults requeue without charging the job (up to max_infra), job
 *     faults requeue until max_job, then the job fails with every reason kept;
 *   - cancel: a queued job at once; a running one through its world (progress says so);
 *   - a lost world's running jobs go back to the queue;
 *   - models and stages: a world takes only its model's jobs and the stages it serves; a
 *     high-noise world's hand-off queues the job for a low-noise one, uncharged; an output name
 *     belongs to one live or done job;
 *   - the store is the truth after a reopen, and refuses a database of another schema version;
 *   - durability: a child submitting jobs is killed with SIGKILL at random moments (10 times);
 *     every job it had acknowledged (written to a pipe after js_submit returned) is in the store.
 *     (A process kill: the commit-before-acknowledge order. A power loss is synchronous=FULL's
 *     part, which no test here can cut.)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"
#include "test_util.h"

#define OK(expr) TU_CHECK((expr) == WF_OK, "%s: %s", #expr, e.msg)

static char a[JS_ID_LEN], b[JS_ID_LEN], c[JS_ID_LEN]; /* the first three jobs */

/* a job of any model, no output name */
static wf_status submit(js_store *s, const char *key, const void *spec, size_t n, int prio,
                        double now, char id[JS_ID_LEN], bool *ex, wf_err *e) {
    const js_new jn = {key, spec, n, prio, NULL, 10, NULL};
    return js_submit(s, &jn, now, id, ex, e);
}
/* the next job for any model, from the start */
static wf_status next(js_store *s, const char *world, double now, js_job *j, bool *found,
                      wf_err *e) {
    return js_next(s, world, NULL, JS_TAKE_START | JS_TAKE_LOW, now, j, found, e);
}

/* submit and idempotency */
static void rules_submit(js_store *s) {
    wf_err e;
    char d[JS_ID_LEN];
    bool ex = true;
    OK(submit(s, "key-a", "spec-a", 6, 0, 1.0, a, &ex, &e));
    TU_CHECK(!ex && !strcmp(a, "j000001"), "first job %s", a);
    OK(submit(s, "key-b", "spec-b", 6, 5, 2.0, b, &ex, &e));
    OK(submit(s, "key-c", "spec-c", 6, 5, 3.0, c, &ex, &e));
    OK(submit(s, "key-a", "spec-a", 6, 0, 4.0, d, &ex, &e));
    TU_CHECK(ex && !strcmp(d, a), "a retried submit must be the same job (%s, %s)", d, a);
    TU_CHECK(submit(s, "key-a", "spec-X", 6, 0, 4.0, d, &ex, &e) == WF_EINVAL &&
                 strstr(e.msg, "another spec"),
             "a key reused for another spec: %s", e.msg);
    TU_CHECK(submit(s, "", "x", 1, 0, 4.0, d, &ex, &e) == WF_EINVAL, "an empty key");
}

/* priority, then FIFO; fencing and progress */
static void rules_run(js_store *s) {
    wf_err e;
    js_job j;
    bool found = false;
    OK(next(s, "w1", 10.0, &j, &found, &e));
    TU_CHECK(found && !strcmp(j.id, b) && j.attempts == 1 && j.state == JS_RUNNING &&
                 !strcmp(j.world, "w1") && j.spec_bytes == 6 && !memcmp(j.spec, "spec-b", 6),
             "first out should be %s (priority 5, older), got %s", b, j.id);
    js_job_free(&j);
    OK(next(s, "w2", 11.0, &j, &found, &e));
    TU_CHECK(found && !strcmp(j.id, c), "then %s, got %s", c, j.id);
    js_job_free(&j);

    /* fencing and progress */
    bool cancel = true;
    OK(js_progress(s, b, 1, 3, 40, "b/ckpt.h5", &cancel, &e));
    TU_CHECK(!cancel, "no cancel asked");
    TU_CHECK(js_progress(s, b, 2, 4, 40, NULL, &cancel, &e) == WF_EINVAL && strstr(e.msg, "stale"),
             "a stale attempt's progress: %s", e.msg);
    const char *outs[2] = {"b.mp4", "b.h5"};
    TU_CHECK(js_finish(s, b, 7, outs, 2, 12.0, &e) == WF_EINVAL, "a stale result was taken");
    OK(js_finish(s, b, 1, outs, 2, 12.0, &e));
    OK(js_get(s, b, &j, &e));
    TU_CHECK(j.state == JS_DONE && j.step == 3 && !strcmp(j.checkpoint, "b/ckpt.h5") &&
                 j.n_outputs == 2 && !strcmp(j.outputs[1], "b.h5"),
             "done job fields");
    js_job_free(&j);
    TU_CHECK(js_finish(s, b, 1, outs, 2, 12.0, &e) == WF_EINVAL, "a done job finished twice");
}

/* retries: infrastructure faults free up to max_infra, job faults counted */
static void rules_retries(js_store *s) {
    wf_err e;
    js_job j;
    bool found = false;
    int state = 0;
    OK(js_fail(s, c, 1, true, "world w2 lost", 2, 5, 13.0, &state, &e));
    TU_CHECK(state == JS_QUEUED, "an infrastructure fault requeues");
    OK(next(s, "w3", 14.0, &j, &found, &e));
    TU_CHECK(found && !strcmp(j.id, c) && j.attempts == 2 && j.infra_failures == 1 &&
                 j.job_failures == 0, "requeued job: attempts %d, infra %d, job %d", j.attempts,
             j.infra_failures, j.job_failures);
    js_job_free(&j);
    OK(js_fail(s, c, 2, false, "NaN at step 7", 2, 5, 15.0, &state, &e));
    TU_CHECK(state == JS_QUEUED, "the first job fault requeues");
    OK(next(s, "w3", 16.0, &j, &found, &e));
    js_job_free(&j);
    OK(js_fail(s, c, 3, false, "NaN at step 7 again", 2, 5, 17.0, &state, &e));
    TU_CHECK(state == JS_FAILED, "the second job fault fails the job (max_job 2)");
    OK(js_get(s, c, &j, &e));
    TU_CHECK(j.state == JS_FAILED && j.n_reasons == 3 && strstr(j.reasons[0], "infrastructure") &&
                 strstr(j.reasons[2], "again"),
             "failed job keeps its %zu reasons", j.n_reasons);
    js_job_free(&j);
}

/* cancel: a queued job at once, a running one through its world; a lost world */
static void rules_cancel(js_store *s) {
    wf_err e;
    js_job j;
    bool found = false, ex = false, cancel = false;
    int state = 0;
    char q[JS_ID_LEN], r[JS_ID_LEN];
    OK(submit(s, "key-q", "q", 1, 0, 20.0, q, &ex, &e));
    OK(submit(s, "key-r", "r", 1, 9, 21.0, r, &ex, &e));
    OK(js_cancel(s, q, 22.0, &state, &e));
    TU_CHECK(state == JS_CANCELLED, "a queued job is cancelled at once");
    OK(next(s, "w4", 23.0, &j, &found, &e));
    TU_CHECK(found && !strcmp(j.id, r), "the running one");
    js_job_free(&j);
    OK(next(s, "w5", 23.5, &j, &found, &e));
    TU_CHECK(found && !strcmp(j.id, a), "then the last queued one (%s)", j.id);
    js_job_free(&j);
    OK(next(s, "w5", 23.6, &j, &found, &e));
    TU_CHECK(!found, "nothing left to run");
    OK(js_cancel(s, r, 24.0, &state, &e));
    TU_CHECK(state == JS_RUNNING, "a running job is marked");
    OK(js_progress(s, r, 1, 1, 2, NULL, &cancel, &e));
    TU_CHECK(cancel, "its world learns of the cancel");
    OK(js_cancelled(s, r, 1, 25.0, &e));
    OK(js_get(s, r, &j, &e));
    TU_CHECK(j.state == JS_CANCELLED, "cancelled by its world");
    js_job_free(&j);

    /* a lost world gives its jobs back */
    int n = 0;
    OK(js_requeue_world(s, "w5", "heartbeat lost", 5, 26.0, &n, &e));
    TU_CHECK(n == 1, "w5 ran one job, %d requeued", n);
    OK(js_get(s, a, &j, &e));
    TU_CHECK(j.state == JS_QUEUED && j.infra_failures == 1, "its job is queued again");
    js_job_free(&j);
}

/* models, stages and the hand-off; output names */
static void rules_stages(js_store *s) {
    wf_err e;
    js_job j;
    bool found = false, ex = false;
    char m[JS_ID_LEN], o[JS_ID_LEN], x[JS_ID_LEN];
    const js_new jm = {"key-m", "m", 1, 50, "tiny", 8, "out/m.mp4"};
    const js_new jo = {"key-o", "o", 1, 50, "other", 8, NULL};
    OK(js_submit(s, &jm, 30.0, m, &ex, &e));
    OK(js_submit(s, &jo, 31.0, o, &ex, &e));
    const js_new jx = {"key-x", "x", 1, 0, "tiny", 8, "out/m.mp4"};
    TU_CHECK(js_submit(s, &jx, 32.0, x, &ex, &e) == WF_EINVAL && strstr(e.msg, "output name") &&
                 strstr(e.msg, m), "a second job on job m's output name: %s", e.msg);
    /* a low-noise stage world takes nothing that starts; a world of another model nothing */
    OK(js_next(s, "low", "tiny", JS_TAKE_LOW, 33.0, &j, &found, &e));
    TU_CHECK(!found, "a low stage world took %s, which starts", j.id);
    js_job_free(&j);
    OK(js_next(s, "high", "other", JS_TAKE_START, 33.0, &j, &found, &e));
    TU_CHECK(found && !strcmp(j.id, o) && !strcmp(j.model, "other"), "model 'other' takes %s", o);
    js_job_free(&j);
    OK(js_next(s, "high", "tiny", JS_TAKE_START, 34.0, &j, &found, &e));
    TU_CHECK(found && !strcmp(j.id, m) && j.stage == JS_STAGE_START && j.steps == 8 &&
                 !strcmp(j.output, "out/m.mp4"), "model 'tiny' takes %s (steps from submit)", m);
    js_job_free(&j);
    TU_CHECK(js_handoff(s, m, 9, 4, "m.ckpt.h5", &e) == WF_EINVAL, "a stale hand-off");
    OK(js_handoff(s, m, 1, 4, "m.ckpt.h5", &e));
    OK(js_next(s, "high2", "tiny", JS_TAKE_START, 35.0, &j, &found, &e));
    TU_CHECK(!found, "a high stage world took the handed-on job %s", j.id);
    js_job_free(&j);
    OK(js_next(s, "low", "tiny", JS_TAKE_LOW, 36.0, &j, &found, &e));
    TU_CHECK(found && !strcmp(j.id, m) && j.stage == JS_STAGE_LOW && j.attempts == 2 &&
                 j.step == 4 && !strcmp(j.checkpoint, "m.ckpt.h5") && j.infra_failures == 0 &&
                 j.job_failures == 0, "the low stage world takes %s at step 4", m);
    js_job_free(&j);
    OK(js_finish(s, m, 2, NULL, 0, 37.0, &e));
    TU_CHECK(js_submit(s, &jx, 38.0, x, &ex, &e) == WF_EINVAL, "a done job keeps its output name");
    int st = 0;
    OK(js_cancel(s, o, 39.0, &st, &e));
    bool cancel = false;
    OK(js_progress(s, o, 1, 1, 8, NULL, &cancel, &e));
    OK(js_cancelled(s, o, 1, 40.0, &e));
}

/* the truth after a reopen; another schema version refused */
static void rules_reopen(const char *path) {
    js_store *s = NULL;
    wf_err e;
    js_job j;
    OK(js_open(&s, path, &e));
    if (!s) return;
    OK(js_get(s, b, &j, &e));
    TU_CHECK(j.state == JS_DONE && j.n_outputs == 2, "after a reopen: %s done", b);
    js_job_free(&j);
    OK(js_get(s, a, &j, &e));
    TU_CHECK(j.state == JS_QUEUED && j.attempts == 1, "after a reopen: %s queued", a);
    js_job_free(&j);
    TU_CHECK(js_get(s, "j999999", &j, &e) == WF_EINVAL && strstr(e.msg, "no job"), "unknown id");
    js_close(&s);

    /* another schema version is refused */
    sqlite3 *db = NULL;
    sqlite3_open(path, &db);
    sqlite3_exec(db, "PRAGMA user_version=99", NULL, NULL, NULL);
    sqlite3_close(db);
    TU_CHECK(js_open(&s, path, &e) == WF_EFORMAT && strstr(e.msg, "schema version 99"),
             "schema 99: %s", e.msg);
    js_close(&s);
}

static void test_rules(const char *path) {
    js_store *s = NULL;
    wf_err e;
    OK(js_open(&s, path, &e));
    if (!s) return;
    rules_submit(s);
    rules_run(s);
    rules_retries(s);
    rules_cancel(s);
    rules_stages(s);
    js_close(&s);
    rules_reopen(path);
}

static void count_job(void *ctx, js_job *j) {
    (void)j;
    (*(int *)ctx)++;
}

/* A child submits jobs and writes each acknowledged key to the pipe; it is killed at a random
 * moment. Every acknowledged key must then be in the store. */
static void test_kill(const char *path) {
    srand((unsigned)time(NULL));
    int acked_total = 0;
    for (int round = 0; round < 10; round++) {
        int fd[2];
        WF_ASSERT(pipe(fd) == 0);
        pid_t pid = fork();
        WF_ASSERT(pid >= 0);
        if (pid == 0) {
            close(fd[0]);
            js_store *s = NULL;
            wf_err e;
            if (js_open(&s, path, &e)) _exit(1);
            for (int k = 0;; k++) {
                char key[64], id[JS_ID_LEN];
                bool ex;
                snprintf(key, sizeof key, "kill-%d-%d", round, k);
                if (submit(s, key, key, strlen(key), 0, 1.0, id, &ex, &e)) _exit(1);
                if (write(fd[1], key, sizeof key) != (ssize_t)sizeof key) _exit(1);
            }
        }
        close(fd[1]);
        usleep(20000 + (useconds_t)(rand() % 60000));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        js_store *s = NULL;
        wf_err e;
        OK(js_open(&s, path, &e));
        char key[64];
        int acked = 0, lost = 0;
        while (read(fd[0], key, sizeof key) == (ssize_t)sizeof key) {
            acked++;
            char id[JS_ID_LEN];
            bool ex = false;
            /* the same key and spec: the existing job, if the store has it */
            if (!s || submit(s, key, key, strlen(key), 0, 2.0, id, &ex, &e) || !ex) lost++;
        }
        close(fd[0]);
        TU_CHECK(lost == 0, "round %d: %d of %d acknowledged jobs lost after SIGKILL", round, lost,
                 acked);
        acked_total += acked;
        js_close(&s);
    }
    TU_CHECK(acked_total > 10, "only %d jobs were acknowledged in 10 rounds", acked_total);
    js_store *s = NULL;
    wf_err e;
    int n = 0;
    OK(js_open(&s, path, &e));
    if (s) OK(js_list(s, 0, 1 << 30, count_job, &n, &e));
    TU_CHECK(n >= acked_total, "the store lists %d jobs, %d were acknowledged", n, acked_total);
    js_close(&s);
    printf("test_store: %d jobs acknowledged before 10 SIGKILLs, none lost\n", acked_total);
}

int main(void) {
    char *dir = tu_tmpdir("store");
    WF_ASSERT(dir);
    char p1[4200], p2[4200];
    snprintf(p1, sizeof p1, "%s/jobs.db", dir);
    snprintf(p2, sizeof p2, "%s/kill.db", dir);
    test_rules(p1);
    test_kill(p2);
    tu_rmtree(dir);
    free(dir);
    if (tu_failures) {
        printf("test_store: %d failures\n", tu_failures);
        return 1;
    }
    printf("test_store: OK\n");
    return 0;
}
