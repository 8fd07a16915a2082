/* service.h: the coordinator's answer to a client (prefix cs_): bytes of a ClientRequest in,
 * bytes of a ClientReply out, over the job store. No sockets here (coord.c holds them), so that
 * every request, hostile ones included, is tested without a network.
 *
 * What it is: cs_handle decodes the request (proto/wire.h: size, version, fields); a request that
 * does not decode gets an Error reply (ERR_VERSION for another protocol version, ERR_INVALID
 * otherwise) with request id "" and the reason, never a crash or silence. Then:
 *   - submit: ERR_BUSY when max_queued jobs already wait (a retried key is still answered);
 *     a spec without a seed gets one drawn from its idempotency key (so that a retry is the same
 *     spec) and without a model the default one, both recorded in the stored spec;
 *     the admission rules (cs_check_spec: the prompt, sizes, frames, steps, numbers, the
 *     sampler, the output name, the model among those served), then js_submit: the job is in the
 *     store before the reply is made; a retried key gives the same job (existing true), a key
 *     reused for another spec ERR_DUPLICATE, as is an output name another job holds;
 *   - status, cancel: the job (ERR_NOT_FOUND when there is none); list: the jobs of a state;
 *   - watch: where the events are published; worlds: the worker worlds the coordinator knows;
 *     drain: a world takes no new job and is shut down once free (the list is the reply).
 * Every state change made here (a job queued, a job cancelled) is published as an Event
 * (StateChange) through svc->publish, after its transaction committed.
 * The model-specific limits (the rotary table's size, the VAE's factors) are the worker's to
 * check when it gets the job: a job that breaks them fails fast as a job fault.
 * What it is not: the worker worlds' side (assignments, heartbeats: worlds.h).
 * Tested by: tests/test_coord.c (every verb, every refusal, hostile bytes) and
 * tests/test_coord.sh (wanfarm-coord and wanctl over ZeroMQ, a kill -9 and a restart).
 */
#ifndef CS_SERVICE_H
#define CS_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "store.h"
#include "wire.h"

#define CS_MAX_MODELS 16
#define CS_OUTPUT_NAME_MAX 200 /* bytes of a job's output name */
#define CS_DEFAULT_STEPS 50    /* a spec without steps: generate's default */

typedef struct cs_service {
    js_store *store;
    const char *models[CS_MAX_MODELS]; /* the model names this farm serves; [0] the default */
    int n_models;
    const char *events;                /* the PUB endpoint, for watch ("" when none) */
    int64_t max_queued;                /* a submit beyond this many queued jobs: ERR_BUSY (0: none) */
    double (*now)(void);               /* the clock (tests pass their own) */
    /* an Event to publish (topic: the job id); NULL: none */
    void (*publish)(void *ctx, const char *job_id, const uint8_t *event, size_t n);
    void *publish_ctx;
    /* the worker worlds, for a Worlds request (NULL: an empty list): fill *wl, then free it */
    wf_status (*list_worlds)(void *ctx, Wanfarm__WorldList *wl, wf_err *err);
    void (*free_worlds)(Wanfarm__WorldList *wl);
    /* a Drain request (NULL: refused); WF_EINVAL "no world ..." when there is none */
    wf_status (*drain_world)(void *ctx, const char *world, const char *reason, wf_err *err);
    void *worlds_ctx;
} cs_service;

/* The reply to one request (see the head of this file): *reply malloc'd, *n bytes. WF_OK
 * whenever a reply was made (an Error reply included); a failure only when none could be (out of
 * memory), which the caller logs. */
wf_status cs_handle(cs_service *svc, const void *req, size_t req_n, uint8_t **reply, size_t *n,
                    wf_err *err);

/* An Event through svc->publish (nothing when it is NULL): a job's state change (from, to: JS_*),
 * or a world's step progress. */
void cs_publish_change(cs_service *svc, const char *id, int from, int to, const char *why);
void cs_publish_progress(cs_service *svc, const Wanfarm__Progress *p);

/* The admission rules of a job spec (WF_EINVAL naming the field and its range). */
wf_status cs_check_spec(const cs_service *svc, const Wanfarm__JobSpec *s, wf_err *err);
/* An output name the farm may write under its root: relative, at most CS_OUTPUT_NAME_MAX
 * bytes, of [A-Za-z0-9._+-] and '/', no empty, "." or ".." component, not starting with '-'. */
wf_status cs_check_output_name(const char *name, wf_err *err);

#endif
