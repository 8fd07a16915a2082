/* link.h: a worker world's line to the coordinator (prefix fl_), on the world's rank 0.
 *
 * What it is: a thread that owns one ZeroMQ DEALER socket connected to wanfarm-coord's worker
 * ROUTER (worlds.h is the other end), so that the world keeps beating while its main thread is
 * inside a step, a decode or an MPI collective:
 *   - it says Hello (again whenever the coordinator answers that it does not know the world: a
 *     coordinator restarted; and each second while another live world holds its id), takes the
 *     Welcome's heartbeat period and beats with the jobs in hand (running, or finished with a
 *     Result not yet acknowledged); its routing id is its own and survives reconnections;
 *   - Assignments wait in a queue for fl_next; a CancelJob for the job in hand sets the flag
 *     fl_cancelled reads; a Shutdown ends fl_next;
 *   - fl_send sends a message once (progress); fl_send_reliable keeps a Result or Failure and
 *     sends it again at every beat until the coordinator acknowledges it (Ack), so that one in
 *     flight when the coordinator dies reaches the next one;
 *   - the step watchdog: once the job in hand has reported a step, a wait of more than
 *     max(floor, factor x the longest step) for the next report (a hung rank 0, or a hung decode)
 *     stops the beats and calls the abort callback (MPI_Abort for the world), after a Failure
 *     (infrastructure) has been sent.
 * Sockets: ZMQ_MAXMSGSIZE = WP_MAX_MSG, linger bounded by fl_close, CurveZMQ when keys are given
 * (the server's public key; this world's key pair).
 * What it is not: MPI (the other ranks hear of assignments from rank 0, cmd_worker.c), or the
 * job's work.
 * Tested by: tests/test_farm.sh (real worlds against wanfarm-coord) and tests/test_coord.c (the
 * coordinator side of every message).
 */
#ifndef FL_LINK_H
#define FL_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "wire.h"

typedef struct fl_link fl_link;

typedef struct fl_config {
    const char *endpoint;      /* the coordinator's worker ROUTER, e.g. tcp://host:5557 */
    const char *world_id;      /* 1..63 bytes */
    const Wanfarm__Hello *hello; /* copied */
    const char *server_key;    /* CurveZMQ: the coordinator's public key file, or NULL */
    const char *client_key;    /* this world's key pair: FILE.key and FILE.secret, or NULL */
    double connect_timeout;    /* seconds to wait for the first Welcome */
    double watchdog_floor;     /* the step watchdog (0: off) */
    double watchdog_factor;
    void (*abort_world)(const char *why); /* the step watchdog fired (after its Failure) */
} fl_config;

/* Connects, says Hello and waits for the Welcome (WF_ETIMEOUT naming the endpoint when none
 * comes within connect_timeout; WF_EINVAL with the coordinator's reason when it refuses the
 * world). */
wf_status fl_open(fl_link **out, const fl_config *c, wf_err *err);
/* Sends what is still unacknowledged for up to linger seconds, then stops the thread. */
void fl_close(fl_link **l, double linger);
/* Waits up to seconds for every reliable message to be acknowledged: true when they were. */
bool fl_flush(fl_link *l, double seconds);

/* The next assignment (*a, free with wp_free on its envelope: *env) or a shutdown (*a NULL,
 * why its reason). Waits until one comes or stopping() (polled ten times a second) is true:
 * then *env and *a are NULL. */
void fl_next(fl_link *l, bool (*stopping)(void), Wanfarm__CoordMessage **env,
             Wanfarm__Assignment **a, char *why, size_t why_cap);

/* The job in hand (NULL: none): its id is beaten, its cancel watched, its steps watched. */
void fl_hold(fl_link *l, const char *job_id, uint32_t attempt);
bool fl_cancelled(fl_link *l);
/* A step of the job in hand was reported after `seconds` (arms the step watchdog). */
void fl_step(fl_link *l, double seconds);

/* A WorkerMessage (version and world_id filled here). Reliable ones (result, failure) wait for
 * their Ack and keep their job beaten until then. */
void fl_send(fl_link *l, Wanfarm__WorkerMessage *m);
void fl_send_reliable(fl_link *l, Wanfarm__WorkerMessage *m, const char *job_id, uint32_t attempt);

#endif
