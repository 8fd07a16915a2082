/* watchdog.c: the communicator's watchdog (see watchdog.h): a thread that ends the MPI job when
 * this rank has waited inside one communicator call far longer than a step takes.
 *
 * What it is: every blocking call of comm.c marks its start and end here (cm_wd_enter,
 * cm_wd_leave: a mutex and a few stores). Once armed, the thread looks four times a second; when
 * the call in progress has lasted more than limit = max(floor, factor x the longest step so far x
 * the steps this wait may span), it prints one line naming this rank, the call, the group, the
 * peers it waits for (world ranks), what this rank was doing and the limit, and calls
 * MPI_Abort, so that a stopped, hung or dead rank ends the run instead of leaving the others
 * spinning in MPI forever. Steps come from the caller (cm_watchdog_step), as does the
 * description of the work (cm_watchdog_doing).
 * What it is not: a failure detector for ranks that are not waited for, or a recovery: the
 * coordinator's worker will report the same line as a failure.
 * Tested by: tests/test_watchdog.sh (mpirun -np 2, one rank stopped with SIGSTOP).
 */
#include "watchdog.h"

#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct {
    pthread_mutex_t mu;
    pthread_t thread;
    int stop, armed;
    double floor_s, factor;
    double longest_step;  /* seconds */
    double span_steps;    /* the calls may last this many steps (>= 1), until the next step or
                           * description */
    /* the call in progress */
    int in_call;
    double t_enter;
    const char *op, *group;
    int rank, size;
    const int *world_ranks; /* [size], the group's */
    int peer;             /* point-to-point: the peer's rank in the group; -1 otherwise */
    char doing[160];
    char prog[64];
} wd = {.mu = PTHREAD_MUTEX_INITIALIZER, .span_steps = 1};
static atomic_int wd_running; /* the thread runs: the hooks do something */

static double wd_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cm_wd_enter(const char *op, const char *group, int rank, int size, const int *world_ranks,
                 int peer) {
    if (!wd_running) return;
    pthread_mutex_lock(&wd.mu);
    wd.in_call = 1;
    wd.t_enter = wd_now();
    wd.op = op;
    wd.group = group;
    wd.rank = rank;
    wd.size = size;
    wd.world_ranks = world_ranks;
    wd.peer = peer;
    pthread_mutex_unlock(&wd.mu);
}

void cm_wd_leave(void) {
    if (!wd_running) return;
    pthread_mutex_lock(&wd.mu);
    wd.in_call = 0;
    pthread_mutex_unlock(&wd.mu);
}

/* "world rank 3" or "one of world ranks 2, 3, 5" (the group's other ranks). */
static void who(char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    if (!wd.world_ranks) {
        snprintf(buf, cap, "another rank");
        return;
    }
    if (wd.peer >= 0 && wd.peer < wd.size) {
        snprintf(buf, cap, "world rank %d", wd.world_ranks[wd.peer]);
        return;
    }
    int others = wd.size - 1;
    n += (size_t)snprintf(buf + n, cap - n, others == 1 ? "world rank" : "one of world ranks");
    for (int r = 0, k = 0; r < wd.size && n + 16 < cap; r++)
        if (r != wd.rank)
            n += (size_t)snprintf(buf + n, cap - n, "%s %d", k++ ? "," : "", wd.world_ranks[r]);
}

static void *wd_main(void *arg) {
    (void)arg;
    for (;;) {
        usleep(250000);
        pthread_mutex_lock(&wd.mu);
        if (wd.stop) {
            pthread_mutex_unlock(&wd.mu);
            return NULL;
        }
        double limit = wd.factor * wd.longest_step * (wd.span_steps > 1 ? wd.span_steps : 1);
        if (limit < wd.floor_s) limit = wd.floor_s;
        double waited = wd.in_call ? wd_now() - wd.t_enter : 0;
        if (!wd.armed || !wd.in_call || waited <= limit) {
            pthread_mutex_unlock(&wd.mu);
            continue;
        }
        char peers[512];
        who(peers, sizeof peers);
        int me = wd.world_ranks ? wd.world_ranks[wd.rank] : -1;
        fprintf(stderr,
                "%s (rank %d): watchdog: %s on '%s' (%d rank%s) has waited %.0f s, over the limit "
                "of %.0f s (%g x the longest step, %.1f s, at least %g s; --watchdog sets it): %s "
                "did not arrive (stopped, hung or dead); this rank was %s; ending the run\n",
                wd.prog, me, wd.op ? wd.op : "?", wd.group ? wd.group : "?", wd.size,
                wd.size == 1 ? "" : "s", waited, limit, wd.factor, wd.longest_step,
                wd.floor_s, peers, wd.doing[0] ? wd.doing : "in a collective");
        fflush(stderr);
        pthread_mutex_unlock(&wd.mu);
        MPI_Abort(MPI_COMM_WORLD, 1);
        _exit(1); /* MPI_Abort does not return */
    }
}

wf_status cm_watchdog_start(const char *prog, double floor_s, double factor, wf_err *err) {
    if (!(floor_s > 0) || !(factor >= 1))
        return wf_fail(err, WF_EINVAL, "watchdog: floor %g s must be > 0 and factor %g >= 1",
                       floor_s, factor);
    if (wd_running) return WF_OK;
    pthread_mutex_lock(&wd.mu);
    wd.floor_s = floor_s;
    wd.factor = factor;
    wd.stop = 0;
    wd.armed = 0;
    wd.longest_step = 0;
    snprintf(wd.prog, sizeof wd.prog, "%s", prog ? prog : "wanfarm");
    pthread_mutex_unlock(&wd.mu);
    if (pthread_create(&wd.thread, NULL, wd_main, NULL) != 0)
        return wf_fail(err, WF_ENOMEM, "watchdog: cannot start its thread");
    wd_running = 1;
    return WF_OK;
}

void cm_watchdog_stop(void) {
    if (!wd_running) return;
    pthread_mutex_lock(&wd.mu);
    wd.stop = 1;
    pthread_mutex_unlock(&wd.mu);
    pthread_join(wd.thread, NULL);
    wd_running = 0;
}

void cm_watchdog_step(double seconds) {
    if (!wd_running) return;
    pthread_mutex_lock(&wd.mu);
    if (seconds > wd.longest_step) wd.longest_step = seconds;
    wd.span_steps = 1;
    wd.armed = 1; /* waits before this rank's first step (loading, the first hand-off) are free */
    pthread_mutex_unlock(&wd.mu);
}

void cm_watchdog_span(double steps) {
    if (!wd_running) return;
    pthread_mutex_lock(&wd.mu);
    wd.span_steps = steps > 1 ? steps : 1;
    pthread_mutex_unlock(&wd.mu);
}

void cm_watchdog_doing(const char *fmt, ...) {
    if (!wd_running) return;
    pthread_mutex_lock(&wd.mu);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(wd.doing, sizeof wd.doing, fmt, ap);
    va_end(ap);
    wd.span_steps = 1;
    pthread_mutex_unlock(&wd.mu);
}
