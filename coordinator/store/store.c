/* store.c: the coordinator's job store over SQLite (see store.h). Every public call that changes
 * anything is one BEGIN IMMEDIATE ... COMMIT; a failure inside rolls it back. */
#include "store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

struct js_store {
    sqlite3 *db;
    char path[512];
};

static const char k_schema[] =
    "CREATE TABLE IF NOT EXISTS jobs ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT UNIQUE,"
    " idem_key TEXT UNIQUE NOT NULL,"
    " spec BLOB NOT NULL,"
    " priority INTEGER NOT NULL,"
    " state INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " job_failures INTEGER NOT NULL DEFAULT 0,"
    " infra_failures INTEGER NOT NULL DEFAULT 0,"
    " step INTEGER NOT NULL DEFAULT 0,"
    " steps INTEGER NOT NULL DEFAULT 0,"
    " checkpoint TEXT NOT NULL DEFAULT '',"
    " world TEXT NOT NULL DEFAULT '',"
    " cancel_requested INTEGER NOT NULL DEFAULT 0,"
    " submitted_at REAL NOT NULL,"
    " started_at REAL NOT NULL DEFAULT 0,"
    " finished_at REAL NOT NULL DEFAULT 0,"
    " model TEXT NOT NULL DEFAULT '',"
    " stage INTEGER NOT NULL DEFAULT 1,"
    " output TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX IF NOT EXISTS jobs_output ON jobs(output);"
    "CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(state, priority DESC, seq);"
    "CREATE TABLE IF NOT EXISTS reasons (job TEXT NOT NULL, at REAL NOT NULL, text TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS reasons_job ON reasons(job);"
    "CREATE TABLE IF NOT EXISTS outputs (job TEXT NOT NULL, path TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS outputs_job ON outputs(job);";

static wf_status db_fail(js_store *s, wf_err *err, const char *what) {
    return wf_fail(err, WF_EIO, "job store %s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

static wf_status exec(js_store *s, const char *sql, wf_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) == SQLITE_OK) return WF_OK;
    wf_status st = wf_fail(err, WF_EIO, "job store %s: %s: %s", s->path, sql, msg ? msg : "?");
    sqlite3_free(msg);
    return st;
}

/* One prepared statement with its values bound by a format: i int, I int64, d double, t text,
 * b blob (pointer then size). */
static wf_status prep(js_store *s, sqlite3_stmt **st, const char *sql, const char *fmt,
                      wf_err *err, ...) {
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK) return db_fail(s, err, sql);
    va_list ap;
    va_start(ap, err);
    int rc = SQLITE_OK;
    for (int k = 0; fmt[k] && rc == SQLITE_OK; k++) {
        switch (fmt[k]) {
        case 'i': rc = sqlite3_bind_int(*st, k + 1, va_arg(ap, int)); break;
        case 'I': rc = sqlite3_bind_int64(*st, k + 1, va_arg(ap, int64_t)); break;
        case 'd': rc = sqlite3_bind_double(*st, k + 1, va_arg(ap, double)); break;
        case 't': rc = sqlite3_bind_text(*st, k + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT); break;
        case 'b': {
            const void *p = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            rc = sqlite3_bind_blob64(*st, k + 1, p, n, SQLITE_TRANSIENT);
            break;
        }
        default: rc = SQLITE_MISUSE;
        }
    }
    va_end(ap);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(*st);
        *st = NULL;
        return db_fail(s, err, "binding values");
    }
    return WF_OK;
}

/* Runs a statement that returns no rows, then finalizes it. */
static wf_status run(js_store *s, sqlite3_stmt *st, wf_err *err) {
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? WF_OK : db_fail(s, err, "a change");
}

static wf_status begin(js_store *s, wf_err *err) { return exec(s, "BEGIN IMMEDIATE", err); }

/* COMMIT when st is WF_OK, else ROLLBACK; returns the first failure. */
static wf_status end(js_store *s, wf_status st, wf_err *err) {
    if (st) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return st;
    }
    return exec(s, "COMMIT", err);
}

wf_status js_open(js_store **out, const char *path, wf_err *err) {
    *out = NULL;
    js_store *s = calloc(1, sizeof *s);
    if (!s) return wf_fail(err, WF_ENOMEM, "job store: out of memory");
    snprintf(s->path, sizeof s->path, "%s", path);
    wf_status st = WF_OK;
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                          SQLITE_OPEN_NOFOLLOW, NULL) != SQLITE_OK) {
        st = wf_fail(err, WF_EIO, "job store %s: cannot open it: %s", path,
                     s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(s->db, 5000);
    int ver = -1;
    sqlite3_stmt *q = NULL;
    if ((st = exec(s, "PRAGMA journal_mode=WAL", err)) || (st = exec(s, "PRAGMA synchronous=FULL", err)))
        goto out;
    if ((st = prep(s, &q, "PRAGMA user_version", "", err))) goto out;
    if (sqlite3_step(q) == SQLITE_ROW) ver = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    if (ver != 0 && ver != JS_FORMAT) {
        st = wf_fail(err, WF_EFORMAT, "job store %s: schema version %d; this build keeps version "
                     "%d: use the wanfarm-coord that made it, or another store", path, ver, JS_FORMAT);
        goto out;
    }
    if ((st = begin(s, err))) goto out;
    st = exec(s, k_schema, err);
    if (!st) st = exec(s, "PRAGMA user_version=" JS_FORMAT_STR, err);
    if ((st = end(s, st, err))) {
        wf_err_prefix(err, "not a job store (or a damaged one): ");
        goto out;
    }
    *out = s;
    return WF_OK;
out:
    js_close(&s);
    return st;
}

void js_close(js_store **ps) {
    if (!ps || !*ps) return;
    sqlite3_close((*ps)->db);
    free(*ps);
    *ps = NULL;
}

/* ---- jobs ---- */

wf_status js_submit(js_store *s, const js_new *n, double now, char id[JS_ID_LEN], bool *existing,
                    wf_err *err) {
    *existing = false;
    id[0] = 0;
    const char *idem_key = n->idem_key, *model = n->model ? n->model : "";
    const char *output = n->output ? n->output : "";
    if (!idem_key || !*idem_key) return wf_fail(err, WF_EINVAL, "a job needs an idempotency key");
    wf_status st = begin(s, err);
    if (st) return st;
    sqlite3_stmt *q = NULL;
    if ((st = prep(s, &q, "SELECT id, spec FROM jobs WHERE idem_key = ?", "t", err, idem_key)))
        return end(s, st, err);
    if (sqlite3_step(q) == SQLITE_ROW) {
        const void *b = sqlite3_column_blob(q, 1);
        const size_t nb = (size_t)sqlite3_column_bytes(q, 1);
        if (nb != n->spec_bytes || (nb && memcmp(b, n->spec, nb)))
            st = wf_fail(err, WF_EINVAL, "idempotency key '%.64s' names job %s, of another spec: "
                         "use a new key for a new job", idem_key,
                         (const char *)sqlite3_column_text(q, 0));
        else
            snprintf(id, JS_ID_LEN, "%s", (const char *)sqlite3_column_text(q, 0)), *existing = true;
        sqlite3_finalize(q);
        return end(s, st, err);
    }
    sqlite3_finalize(q);
    /* an output name belongs to one job that is waiting, running or done (its file) */
    if (*output) {
        if ((st = prep(s, &q, "SELECT id FROM jobs WHERE output = ? AND state IN (1, 2, 3)", "t",
                       err, output)))
            return end(s, st, err);
        if (sqlite3_step(q) == SQLITE_ROW)
            st = wf_fail(err, WF_EINVAL, "output name '%.64s' is job %s's: choose another name "
                         "(a job may not replace another's output)", output,
                         (const char *)sqlite3_column_text(q, 0));
        sqlite3_finalize(q);
        if (st) return end(s, st, err);
    }
    if ((st = prep(s, &q, "INSERT INTO jobs(idem_key, spec, priority, state, submitted_at, model,"
                   " steps, output) VALUES (?, ?, ?, 1, ?, ?, ?, ?)", "tbidtIt", err, idem_key,
                   n->spec, n->spec_bytes, n->priority, now, model, n->steps, output)) ||
        (st = run(s, q, err)))
        return end(s, st, err);
    snprintf(id, JS_ID_LEN, "j%06lld", (long long)sqlite3_last_insert_rowid(s->db));
    if (!(st = prep(s, &q, "UPDATE jobs SET id = ? WHERE seq = ?", "tI", err, id,
                    (int64_t)sqlite3_last_insert_rowid(s->db))))
        st = run(s, q, err);
    return end(s, st, err);
}

/* The row of job id into j (its reasons and outputs too). */
static wf_status load(js_store *s, const char *id, js_job *j, wf_err *err) {
    memset(j, 0, sizeof *j);
    sqlite3_stmt *q = NULL;
    wf_status st = prep(s, &q, "SELECT id, state, priority, attempts, job_failures, infra_failures,"
                        " step, steps, cancel_requested, submitted_at, started_at, finished_at,"
                        " world, checkpoint, spec, model, stage, output FROM jobs WHERE id = ?",
                        "t", err, id);
    if (st) return st;
    if (sqlite3_step(q) != SQLITE_ROW) {
        sqlite3_finalize(q);
        return wf_fail(err, WF_EINVAL, "no job %.32s", id);
    }
    snprintf(j->id, sizeof j->id, "%s", (const char *)sqlite3_column_text(q, 0));
    j->state = sqlite3_column_int(q, 1);
    j->priority = sqlite3_column_int(q, 2);
    j->attempts = sqlite3_column_int(q, 3);
    j->job_failures = sqlite3_column_int(q, 4);
    j->infra_failures = sqlite3_column_int(q, 5);
    j->step = sqlite3_column_int64(q, 6);
    j->steps = sqlite3_column_int64(q, 7);
    j->cancel_requested = sqlite3_column_int(q, 8) != 0;
    j->submitted_at = sqlite3_column_double(q, 9);
    j->started_at = sqlite3_column_double(q, 10);
    j->finished_at = sqlite3_column_double(q, 11);
    snprintf(j->world, sizeof j->world, "%s", (const char *)sqlite3_column_text(q, 12));
    snprintf(j->checkpoint, sizeof j->checkpoint, "%s", (const char *)sqlite3_column_text(q, 13));
    j->spec_bytes = (size_t)sqlite3_column_bytes(q, 14);
    j->spec = malloc(j->spec_bytes ? j->spec_bytes : 1);
    if (j->spec && j->spec_bytes) memcpy(j->spec, sqlite3_column_blob(q, 14), j->spec_bytes);
    snprintf(j->model, sizeof j->model, "%s", (const char *)sqlite3_column_text(q, 15));
    j->stage = sqlite3_column_int(q, 16);
    snprintf(j->output, sizeof j->output, "%s", (const char *)sqlite3_column_text(q, 17));
    sqlite3_finalize(q);
    if (!j->spec) return wf_fail(err, WF_ENOMEM, "job store: out of memory");
    const char *lists[2] = {"SELECT text FROM reasons WHERE job = ? ORDER BY rowid",
                            "SELECT path FROM outputs WHERE job = ? ORDER BY rowid"};
    char ***dst[2] = {&j->reasons, &j->outputs};
    size_t *cnt[2] = {&j->n_reasons, &j->n_outputs};
    for (int k = 0; k < 2; k++) {
        if ((st = prep(s, &q, lists[k], "t", err, id))) return st;
        while (sqlite3_step(q) == SQLITE_ROW) {
            char **g = realloc(*dst[k], (*cnt[k] + 1) * sizeof *g);
            char *t = g ? strdup((const char *)sqlite3_column_text(q, 0)) : NULL;
            if (g) *dst[k] = g;
            if (!t) {
                sqlite3_finalize(q);
                return wf_fail(err, WF_ENOMEM, "job store: out of memory");
            }
            (*dst[k])[(*cnt[k])++] = t;
        }
        sqlite3_finalize(q);
    }
    return WF_OK;
}

void js_job_free(js_job *j) {
    if (!j) return;
    free(j->spec);
    for (size_t k = 0; k < j->n_reasons; k++) free(j->reasons[k]);
    for (size_t k = 0; k < j->n_outputs; k++) free(j->outputs[k]);
    free(j->reasons);
    free(j->outputs);
    memset(j, 0, sizeof *j);
}

wf_status js_get(js_store *s, const char *id, js_job *job, wf_err *err) {
    wf_status st = load(s, id, job, err);
    if (st) js_job_free(job);
    return st;
}

wf_status js_next(js_store *s, const char *world, const char *model, unsigned stages, double now,
                  js_job *job, bool *found, wf_err *err) {
    *found = false;
    memset(job, 0, sizeof *job);
    wf_status st = begin(s, err);
    if (st) return st;
    sqlite3_stmt *q = NULL;
    char id[JS_ID_LEN] = "";
    if ((st = prep(s, &q, "SELECT id FROM jobs WHERE state = 1 AND (? = '' OR model = ?) AND"
                   " ((? & 1 AND stage = 1) OR (? & 2 AND stage = 3))"
                   " ORDER BY priority DESC, seq LIMIT 1", "ttii", err, model ? model : "",
                   model ? model : "", (int)stages, (int)stages)))
        return end(s, st, err);
    if (sqlite3_step(q) == SQLITE_ROW) snprintf(id, sizeof id, "%s", sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    if (!id[0]) return end(s, WF_OK, err);
    if (!(st = prep(s, &q, "UPDATE jobs SET state = 2, attempts = attempts + 1, world = ?,"
                    " started_at = ? WHERE id = ?", "tdt", err, world, now, id)))
        st = run(s, q, err);
    if ((st = end(s, st, err))) return st;
    *found = true;
    return js_get(s, id, job, err);
}

/* Inside a transaction: job id must be running under this attempt. */
static wf_status fenced(js_store *s, const char *id, int attempt, wf_err *err) {
    sqlite3_stmt *q = NULL;
    wf_status st = prep(s, &q, "SELECT state, attempts FROM jobs WHERE id = ?", "t", err, id);
    if (st) return st;
    int state = 0, at = 0;
    bool row = sqlite3_step(q) == SQLITE_ROW;
    if (row) state = sqlite3_column_int(q, 0), at = sqlite3_column_int(q, 1);
    sqlite3_finalize(q);
    if (!row) return wf_fail(err, WF_EINVAL, "no job %.32s", id);
    if (state != JS_RUNNING || at != attempt)
        return wf_fail(err, WF_EINVAL, "job %.32s: stale attempt %d (the job is at attempt %d, "
                       "state %d): its world's message is ignored", id, attempt, at, state);
    return WF_OK;
}

static wf_status add_reason(js_store *s, const char *id, double now, const char *text,
                            wf_err *err) {
    sqlite3_stmt *q = NULL;
    wf_status st = prep(s, &q, "INSERT INTO reasons(job, at, text) VALUES (?, ?, ?)", "tdt", err,
                        id, now, text ? text : "");
    return st ? st : run(s, q, err);
}

wf_status js_progress(js_store *s, const char *id, int attempt, int64_t step, int64_t steps,
                      const char *checkpoint, bool *cancel, wf_err *err) {
    *cancel = false;
    wf_status st = begin(s, err);
    if (st) return st;
    sqlite3_stmt *q = NULL;
    if (!(st = fenced(s, id, attempt, err)) &&
        !(st = prep(s, &q, "UPDATE jobs SET step = ?, steps = ?, checkpoint = CASE WHEN ? = '' "
                    "THEN checkpoint ELSE ? END WHERE id = ?", "IIttt", err, step, steps,
                    checkpoint ? checkpoint : "", checkpoint ? checkpoint : "", id)) &&
        !(st = run(s, q, err)) &&
        !(st = prep(s, &q, "SELECT cancel_requested FROM jobs WHERE id = ?", "t", err, id))) {
        if (sqlite3_step(q) == SQLITE_ROW) *cancel = sqlite3_column_int(q, 0) != 0;
        sqlite3_finalize(q);
    }
    return end(s, st, err);
}

wf_status js_finish(js_store *s, const char *id, int attempt, const char *const *outputs,
                    size_t n_outputs, double now, wf_err *err) {
    wf_status st = begin(s, err);
    if (st) return st;
    sqlite3_stmt *q = NULL;
    if (!(st = fenced(s, id, attempt, err)) &&
        !(st = prep(s, &q, "UPDATE jobs SET state = 3, finished_at = ? WHERE id = ?",
                    "dt", err, now, id)))
        st = run(s, q, err);
    for (size_t k = 0; k < n_outputs && !st; k++)
        if (!(st = prep(s, &q, "INSERT INTO outputs(job, path) VALUES (?, ?)", "tt", err, id,
                        outputs[k])))
            st = run(s, q, err);
    return end(s, st, err);
}

wf_status js_handoff(js_store *s, const char *id, int attempt, int64_t step,
                     const char *checkpoint, wf_err *err) {
    wf_status st = begin(s, err);
    if (st) return st;
    sqlite3_stmt *q = NULL;
    if (!(st = fenced(s, id, attempt, err)) &&
        !(st = prep(s, &q, "UPDATE jobs SET state = 1, stage = 3, step = ?, checkpoint = ?,"
                    " world = '' WHERE id = ?", "Itt", err, step, checkpoint ? checkpoint : "", id)))
        st = run(s, q, err);
    return end(s, st, err);
}

/* Inside a transaction: a failure of a running job (already fenced). */
static wf_status charge(js_store *s, const char *id, bool infra, const char *reason, int max_job,
                        int max_infra, double now, int *state, wf_err *err) {
    sqlite3_stmt *q = NULL;
    wf_status st = prep(s, &q, "SELECT job_failures, infra_failures FROM jobs WHERE id = ?", "t",
                        err, id);
    if (st) return st;
    int jf = 0, inf = 0;
    if (sqlite3_step(q) == SQLITE_ROW) jf = sqlite3_column_int(q, 0), inf = sqlite3_column_int(q, 1);
    sqlite3_finalize(q);
    if (infra) inf++;
    else jf++;
    const bool give_up = jf >= max_job || inf > max_infra;
    *state = give_up ? JS_FAILED : JS_QUEUED;
    char why[600];
    snprintf(why, sizeof why, "%s%s", infra ? "infrastructure: " : "job: ", reason ? reason : "");
    if ((st = add_reason(s, id, now, why, err))) return st;
    if ((st = prep(s, &q, "UPDATE jobs SET state = ?, job_failures = ?, infra_failures = ?,"
                   " world = '', finished_at = ? WHERE id = ?", "iiidt", err, *state, jf, inf,
                   give_up ? now : 0.0, id)))
        return st;
    return run(s, q, err);
}

wf_status js_fail(js_store *s, const char *id, int attempt, bool infra, const char *reason,
                  int max_job, int max_infra, double now, int *state, wf_err *err) {
    wf_status st = begin(s, err);
    if (st) return st;
    if (!(st = fenced(s, id, attempt, err)))
        st = charge(s, id, infra, reason, max_job, max_infra, now, state, err);
    return end(s, st, err);
}

wf_status js_cancel(js_store *s, const char *id, double now, int *state, wf_err *err) {
    wf_status st = begin(s, err);
    if (st) return st;
    js_job j;
    if ((st = load(s, id, &j, err))) {
        js_job_free(&j);
        return end(s, st, err);
    }
    *state = j.state;
    sqlite3_stmt *q = NULL;
    if (j.state == JS_QUEUED) {
        *state = JS_CANCELLED;
        if (!(st = prep(s, &q, "UPDATE jobs SET state = 5, finished_at = ? WHERE id = ?", "dt",
                        err, now, id)))
            st = run(s, q, err);
    } else if (j.state == JS_RUNNING) {
        if (!(st = prep(s, &q, "UPDATE jobs SET cancel_requested = 1 WHERE id = ?", "t", err, id)))
            st = run(s, q, err);
    }
    js_job_free(&j);
    return end(s, st, err);
}

wf_status js_cancelled(js_store *s, const char *id, int attempt, double now, wf_err *err) {
    wf_status st = begin(s, err);
    if (st) return st;
    sqlite3_stmt *q = NULL;
    if (!(st = fenced(s, id, attempt, err)) &&
        !(st = prep(s, &q, "UPDATE jobs SET state = 5, finished_at = ?, world = '' WHERE id = ?",
                    "dt", err, now, id)))
        st = run(s, q, err);
    return end(s, st, err);
}

wf_status js_requeue_world(js_store *s, const char *world, const char *reason, int max_infra,
                           double now, int *n, wf_err *err) {
    *n = 0;
    wf_status st = begin(s, err);
    if (st) return st;
    sqlite3_stmt *q = NULL;
    char (*ids)[JS_ID_LEN] = NULL;
    size_t cnt = 0;
    if ((st = prep(s, &q, "SELECT id FROM jobs WHERE state = 2 AND world = ?", "t", err, world)))
        return end(s, st, err);
    while (sqlite3_step(q) == SQLITE_ROW) {
        char (*g)[JS_ID_LEN] = realloc(ids, (cnt + 1) * sizeof *ids);
        if (!g) {
            st = wf_fail(err, WF_ENOMEM, "job store: out of memory");
            break;
        }
        ids = g;
        snprintf(ids[cnt++], JS_ID_LEN, "%s", (const char *)sqlite3_column_text(q, 0));
    }
    sqlite3_finalize(q);
    for (size_t k = 0; k < cnt && !st; k++) {
        int state;
        st = charge(s, ids[k], true, reason, 1 << 30, max_infra, now, &state, err);
    }
    free(ids);
    if (!st) *n = (int)cnt;
    return end(s, st, err);
}

bool js_key_exists(js_store *s, const char *key) {
    sqlite3_stmt *q = NULL;
    wf_err e;
    if (prep(s, &q, "SELECT 1 FROM jobs WHERE idem_key = ?", "t", &e, key)) return false;
    const bool found = sqlite3_step(q) == SQLITE_ROW;
    sqlite3_finalize(q);
    return found;
}

wf_status js_count(js_store *s, int state, int64_t *n, wf_err *err) {
    sqlite3_stmt *q = NULL;
    wf_status st = prep(s, &q, "SELECT count(*) FROM jobs WHERE (? = 0 OR state = ?)", "ii", err,
                        state, state);
    if (st) return st;
    *n = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
    sqlite3_finalize(q);
    return WF_OK;
}

wf_status js_list(js_store *s, int state, int limit, void (*fn)(void *ctx, js_job *job),
                  void *ctx, wf_err *err) {
    sqlite3_stmt *q = NULL;
    wf_status st = prep(s, &q, "SELECT id FROM jobs WHERE (? = 0 OR state = ?) ORDER BY seq "
                        "LIMIT ?", "iii", err, state, state, limit > 0 ? limit : 1000);
    if (st) return st;
    while (!st && sqlite3_step(q) == SQLITE_ROW) {
        js_job j;
        char id[JS_ID_LEN];
        snprintf(id, sizeof id, "%s", (const char *)sqlite3_column_text(q, 0));
        if (!(st = load(s, id, &j, err))) fn(ctx, &j);
        js_job_free(&j);
    }
    sqlite3_finalize(q);
    return st;
}
