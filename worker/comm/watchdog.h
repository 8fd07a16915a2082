/* watchdog.h: the communicator's watchdog (prefix cm_watchdog_, hooks cm_wd_): a thread that ends
 * the MPI job when this rank has waited inside one communicator call far longer than a step takes,
 * so that a stopped, hung or dead rank does not leave the others waiting in MPI forever.
 *
 * What it is: comm.c marks the start and end of every blocking call (cm_wd_enter, cm_wd_leave).
 * Once started and armed (by this rank's first step), the thread looks four times a second; when
 * the call in progress has lasted more than max(floor, factor x the longest step reported so far
 * x the calls' span), it prints one line naming this rank, the call, the group, the ranks waited
 * for (world ranks) and what this rank was doing, and calls MPI_Abort.
 * What it is not: a failure detector for ranks that are not waited for, or a recovery.
 * Tested by: tests/test_watchdog.sh (mpirun -np 2, rank 1 stopped with SIGSTOP).
 */
#ifndef CM_WATCHDOG_H
#define CM_WATCHDOG_H

#include "status.h"

/* Starts the thread: a call may last
 * max(floor_s, factor x the longest step reported so far x its span) seconds; only after this
 * rank's first reported step (loading and the first wait are not watched). prog names the
 * program in its message. Calling MPI_Abort from its thread needs nothing of the MPI thread
 * level beyond what OpenMPI and MPICH allow for aborts. */
wf_status cm_watchdog_start(const char *prog, double floor_s, double factor, wf_err *err);
void cm_watchdog_stop(void);                 /* accepts a watchdog that never started */
void cm_watchdog_step(double seconds);       /* a step of this rank took this long; arms it */
void cm_watchdog_span(double steps);         /* the calls from here may wait this many steps
                                              * (a pipeline hand-off), until the next
                                              * cm_watchdog_step or cm_watchdog_doing (back to 1) */
void cm_watchdog_doing(const char *fmt, ...) /* what this rank is doing, for the message */
    __attribute__((format(printf, 1, 2)));

/* What comm.c tells the watchdog: a blocking call starts (op and group names for messages, this
 * rank, the group's size and its ranks' world ranks, the rank waited for in a point-to-point
 * call or -1), and ends, however it ends. No-ops while the watchdog is not running. The strings
 * and the array must live until cm_wd_leave. */
void cm_wd_enter(const char *op, const char *group, int rank, int size, const int *world_ranks,
                 int peer);
void cm_wd_leave(void);

#endif
