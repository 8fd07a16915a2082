/* worlds.h: the coordinator's side of the worker worlds (prefix cw_): bytes of a WorkerMessage
 * in, CoordMessages out, over the job store. No sockets here (coord.c holds them), so that every
 * message, hostile ones included, and every fault (a silent world, a stale attempt, a restart) is
 * tested without a network.
 *
 * What it is:
 *   - Hello registers a world (its id, ranks, devices, model name, stage) and is answered with a
 *     Welcome (how often to beat, how many beats may be missed). A world of a model this farm does
 *     not serve is refused (ERR_INVALID), and so is an id that another live connection holds
 *     (ERR_DUPLICATE, until that one is declared lost). Any other message from a world this coordinator does
 *     not know (it restarted) is answered ERR_NOT_FOUND: the world says Hello again and carries on
 *     with its job, whose attempt the store still holds.
 *   - cw_tick: a world silent for more than heartbeat x liveness seconds is declared lost and its
 *     running jobs go back to the queue (an infrastructure fault: js_requeue_world), to resume from
 *     their last checkpoint on another world; then every idle world gets the next job of its model
 *     and stages (js_next), as an Assignment (the job, its attempt: the fencing token, the spec
 *     with the seed resolved, the checkpoint to resume from, checkpoint_every, and the layout
 *     the placement planner chooses for the job on a world of its size, when the world described
 *     its model: plan_world.h).
 *   - Progress and CheckpointWritten update the store (js_progress) and are published as events;
 *     a cancel asked by a client, or a stale attempt (the job was requeued meanwhile), is answered
 *     with a CancelJob, also at each heartbeat for a job still running.
 *   - Result (done: js_finish with the outputs; handed on: js_handoff; cancelled: js_cancelled) and
 *     Failure (js_fail: the job's fault counted up to max_job, the infrastructure's up to max_infra)
 *     are acknowledged (Ack) once the store took them or found them stale, so that a world resends
 *     them until then and none is lost with a coordinator.
 *   - cw_drain (a client's Drain): the world takes no new job and is sent a Shutdown once it is
 *     free (its ranks end, it says goodbye).
 *   - Goodbye (a world that ends on purpose): it is forgotten at once, its running jobs (none,
 *     normally: a stopped job was reported first) back in the queue.
 *   - A heartbeat that no longer lists a job the store has running on that world (for longer than
 *     two beats after its assignment) gives it back to the queue: the world lost it.
 *   - At start (cw_init) the store's running jobs keep their worlds, which have heartbeat x
 *     liveness seconds to come back (say Hello again) before they are declared lost.
 * What it is not: the client side (service.h), thread-safe.
 * Tested by: tests/test_coord.c (worlds: hello, assignment, progress, cancel, stale attempts, a
 * silent world, a coordinator restart, hostile bytes) and tests/test_farm.sh (wanfarm-coord,
 * wanfarm worker worlds and wanctl, with the faults of the issue).
 */
#ifndef CW_WORLDS_H
#define CW_WORLDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plan_world.h"
#include "service.h"

#define CW_ROUTE_MAX 256 /* bytes of a ZeroMQ routing id */
#define CW_WORLD_ID_MAX 63
#define CW_MAX_WORLDS 4096
#define CW_MAX_RUNNING 2 /* jobs a world holds at once */

typedef struct cw_running {
    char job[JS_ID_LEN];
    int attempt;
    double since; /* when it was assigned (or adopted at start) */
} cw_running;

typedef struct cw_world {
    char id[CW_WORLD_ID_MAX + 1];
    uint8_t route[CW_ROUTE_MAX];
    size_t route_n;  /* 0: not heard since this coordinator started (a world of the store) */
    int ranks;
    int stage;       /* Wanfarm__Stage */
    char model[72];
    char host[64];
    char layout[160];
    int pid;
    bool has_plan;        /* it gave its model's description: the coordinator plans its jobs */
    bool draining;        /* no new job; a Shutdown once it is free */
    char drain_reason[128];
    cp_world_model plan;
    double mem;           /* bytes per rank (its first device's), 0 unknown */
    double last_seen;
    int n_running;
    cw_running running[CW_MAX_RUNNING];
} cw_world;

typedef struct cw_farm {
    cs_service *svc;          /* the store, the served models, the clock, the events */
    cw_world *worlds;
    int n, cap;
    double heartbeat;         /* seconds between a world's beats */
    int liveness;             /* beats missed before a world is lost */
    int max_job, max_infra;   /* the retry budgets (js_fail) */
    uint32_t checkpoint_every;
    /* one message to the world at route (NULL: tests collect none) */
    void (*send)(void *ctx, const uint8_t *route, size_t route_n, const uint8_t *msg, size_t n);
    void *send_ctx;
    double (*clock)(void); /* liveness (monotonic: a wall clock's step must not lose worlds);
                            * NULL: svc->now */
    void (*log)(void *ctx, const char *line); /* NULL: stderr */
    void *log_ctx;
} cw_farm;

/* f's fields above set (svc, heartbeat, ...): adopts the store's running jobs with their worlds. */
wf_status cw_init(cw_farm *f, wf_err *err);
void cw_free(cw_farm *f);

/* One WorkerMessage from route (every reply through f->send; never fails: a message that cannot
 * be taken is answered with an Error or logged). */
void cw_handle(cw_farm *f, const uint8_t *route, size_t route_n, const void *msg, size_t n);
/* Liveness, then assignments (call it a few times a heartbeat). */
void cw_tick(cw_farm *f);
/* Assignments only: every idle world gets the next job of its model and stages (call it after
 * a client's request, which may have queued one; a world that becomes idle gets its next job at
 * once in cw_handle). */
void cw_dispatch(cw_farm *f);

/* The worlds as a WorldList (cs_service.list_worlds; ctx: the farm), freed by cw_list_free. */
wf_status cw_list(void *farm, Wanfarm__WorldList *wl, wf_err *err);
void cw_list_free(Wanfarm__WorldList *wl);

/* Drains world id (cs_service.drain_world; ctx: the farm): it gets no new job, and a Shutdown
 * at once when free, else when its job ends. WF_EINVAL when there is no such world. */
wf_status cw_drain(void *farm, const char *id, const char *reason, wf_err *err);

/* The world of that id, or NULL. */
cw_world *cw_find(cw_farm *f, const char *id);

#endif
