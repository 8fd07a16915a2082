/* wire.h: the farm's messages on the wire (prefix wp_): the protoc-c codec of wanfarm.proto behind
 * one checked door.
 *
 * What it is: wp_decode takes bytes from a socket and gives a message only when all of these hold,
 * in this order, each failure a WF_EPROTO error that names it:
 *   1. the size is at most WP_MAX_MSG (checked before anything is parsed);
 *   2. protobuf-c unpacks it (malformed, truncated, or a required field missing: refused);
 *   3. the envelope's version is WP_VERSION (another: refused, naming both);
 *   4. the envelope has a body (one of its oneof);
 *   5. every field present, recursively: enum values the schema defines, finite floats, strings
 *      of at most WP_MAX_STRING bytes that are valid UTF-8 (the path of the first bad field is in
 *      the message: "ClientRequest.submit.spec.guidance: not a finite number").
 * Fields this build does not know are tolerated (protobuf-c keeps them aside; wp_encode drops
 * them). wp_encode runs checks 3 to 5 on our own messages before packing, so a bug here fails here
 * and not at the peer.
 * What it is not: the job's admission rules (sizes, frames, steps against the model, output
 * names): those need the model and the farm's roots and are the coordinator's.
 * Tested by: tests/test_proto.c (every message round-trips; unknown fields; missing required
 * fields; every truncation; oversized, wrong-version, garbage and hostile bytes; also under
 * ASan/UBSan, label parser) and tests/fuzz_proto.c (libFuzzer).
 */
#ifndef WP_WIRE_H
#define WP_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "wanfarm.pb-c.h"

#define WP_VERSION 1u
#define WP_MAX_MSG ((size_t)1 << 20)    /* bytes of one message (also the sockets' ZMQ_MAXMSGSIZE) */
#define WP_MAX_STRING ((size_t)1 << 16) /* bytes of one string field */
#define WP_MAX_DEPTH 8                  /* nested messages */

typedef enum wp_kind {
    WP_CLIENT_REQUEST = 0, /* Wanfarm__ClientRequest: wanctl -> coordinator */
    WP_CLIENT_REPLY,       /* Wanfarm__ClientReply: coordinator -> wanctl */
    WP_WORKER_MESSAGE,     /* Wanfarm__WorkerMessage: a world's rank 0 -> coordinator */
    WP_COORD_MESSAGE,      /* Wanfarm__CoordMessage: coordinator -> a world */
    WP_EVENT,              /* Wanfarm__Event: the coordinator's PUB */
    WP_NKINDS
} wp_kind;

/* "ClientRequest", ... */
const char *wp_kind_name(wp_kind k);
/* The envelope's descriptor. */
const ProtobufCMessageDescriptor *wp_descriptor(wp_kind k);

/* Bytes -> a checked message of kind k (*out: free with wp_free), or WF_EPROTO naming the
 * problem (*out NULL). */
wf_status wp_decode(wp_kind k, const void *buf, size_t n, ProtobufCMessage **out, wf_err *err);
/* A message (an envelope of wp_kind, version set) -> *buf (malloc'd, *n bytes), after checks 3 to
 * 5 and the size limit. */
wf_status wp_encode(const ProtobufCMessage *m, uint8_t **buf, size_t *n, wf_err *err);
void wp_free(ProtobufCMessage *m); /* accepts NULL */

/* Checks 5 on any message (what wp_decode and wp_encode run), with `path` naming it. */
wf_status wp_validate(const ProtobufCMessage *m, const char *path, wf_err *err);

#endif
