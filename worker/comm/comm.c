/* comm.c: the communicator (see comm.h): groups, counters, and the MPI backend. The NCCL backend
 * is comm_nccl.c (CUDA builds); this file dispatches to it through cm_nccl_* when c->backend is
 * CM_NCCL. */
#include "comm.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm_nccl.h"
#include "watchdog.h"

/* MPI counts are int: larger messages go in pieces of at most this many bytes. */
#define CM_PIECE ((size_t)1 << 30)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static wf_status mpi_fail(wf_err *err, const cm_comm *c, int rc, const char *what) {
    cm_wd_leave();
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(rc, s, &n) != MPI_SUCCESS) snprintf(s, sizeof s, "error %d", rc);
    return wf_fail(err, WF_EMPI, "%s on communicator '%s' (rank %d of %d): %s", what,
                   c ? c->name : "?", c ? c->rank : -1, c ? c->size : 0, s);
}

/* A blocking call starts: the watchdog is told, and its start time taken for the counters. */
static double enter(cm_comm *c, cm_op op, int peer) {
    cm_wd_enter(cm_op_name(op), c->name, c->rank, c->size, c->world_ranks, peer);
    return now_s();
}

static void count(cm_comm *c, cm_op op, size_t bytes, double t0) {
    cm_wd_leave();
    c->stats.calls[op]++;
    c->stats.bytes[op] += bytes;
    c->stats.seconds[op] += now_s() - t0;
}

/* The counters of both backends are kept here, around the backend's call. */
static wf_status counted(cm_comm *c, wf_status st, cm_op op, size_t bytes, double t0) {
    if (!st) count(c, op, bytes, t0);
    else cm_wd_leave();
    return st;
}

/* A side counts only when it is there, so that cm_send/cm_recv (which the NCCL backend runs as a
 * one-sided sendrecv) and halo exchanges at the ends count alike; the time goes to the receive,
 * if any. */
static void count_sendrecv(cm_comm *c, size_t sbytes, int dst, size_t rbytes, int src,
                           double t0) {
    if (src >= 0) {
        if (dst >= 0) {
            c->stats.calls[CM_SEND]++;
            c->stats.bytes[CM_SEND] += sbytes;
        }
        count(c, CM_RECV, rbytes, t0);
    } else if (dst >= 0) {
        count(c, CM_SEND, sbytes, t0);
    }
}

static wf_status wrap(cm_comm **out, MPI_Comm mpi, bool borrowed, const char *name, wf_err *err) {
    cm_comm *c = calloc(1, sizeof *c);
    if (!c) return wf_fail(err, WF_ENOMEM, "cm: out of memory");
    c->mpi = mpi;
    c->borrowed = borrowed;
    c->backend = CM_MPI;
    c->device = -1;
    snprintf(c->name, sizeof c->name, "%s", name ? name : "comm");
    int rc;
    if ((rc = MPI_Comm_rank(mpi, &c->rank)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size(mpi, &c->size)) != MPI_SUCCESS) {
        wf_status st = mpi_fail(err, c, rc, "MPI_Comm_rank/size");
        free(c);
        return st;
    }
    c->icounts = malloc(2 * (size_t)c->size * sizeof *c->icounts);
    c->zdispl = malloc((size_t)c->size * sizeof *c->zdispl);
    c->reqs = malloc(2 * (size_t)c->size * sizeof *c->reqs);
    c->world_ranks = malloc((size_t)c->size * sizeof *c->world_ranks);
    if (!c->icounts || !c->zdispl || !c->reqs || !c->world_ranks) {
        free(c->icounts);
        free(c->zdispl);
        free(c->reqs);
        free(c->world_ranks);
        int n = c->size;
        free(c);
        return wf_fail(err, WF_ENOMEM, "cm: out of memory for a communicator of %d ranks", n);
    }
    /* each rank's world rank, for messages */
    MPI_Group g, gw;
    for (int r = 0; r < c->size; r++) c->icounts[r] = c->world_ranks[r] = r;
    if (MPI_Comm_group(mpi, &g) == MPI_SUCCESS) {
        if (MPI_Comm_group(MPI_COMM_WORLD, &gw) == MPI_SUCCESS) {
            MPI_Group_translate_ranks(g, c->size, c->icounts, gw, c->world_ranks);
            MPI_Group_free(&gw);
        }
        MPI_Group_free(&g);
    }
    /* errors come back as codes, so that they can be reported with context */
    MPI_Comm_set_errhandler(mpi, MPI_ERRORS_RETURN);
    *out = c;
    return WF_OK;
}

wf_status cm_world(cm_comm **out, wf_err *err) {
    int init = 0;
    MPI_Initialized(&init);
    if (!init) return wf_fail(err, WF_EMPI, "cm_world: MPI is not initialised");
    return wrap(out, MPI_COMM_WORLD, true, "world", err);
}

wf_status cm_wrap(cm_comm **out, MPI_Comm mpi, const char *name, wf_err *err) {
    return wrap(out, mpi, true, name, err);
}

wf_status cm_split(cm_comm *parent, int color, int key, const char *name, cm_comm **out,
                   wf_err *err) {
    *out = NULL;
    MPI_Comm m;
    int rc = MPI_Comm_split(parent->mpi, color < 0 ? MPI_UNDEFINED : color, key, &m);
    if (rc != MPI_SUCCESS) return mpi_fail(err, parent, rc, "MPI_Comm_split");
    if (m == MPI_COMM_NULL) return WF_OK;
    wf_status st = wrap(out, m, false, name, err);
    if (st) MPI_Comm_free(&m);
    return st;
}

void cm_free(cm_comm **pc) {
    if (!pc || !*pc) return;
    cm_comm *c = *pc;
    if (c->backend == CM_NCCL) cm_nccl_destroy(c); /* and its async state */
    if (!c->borrowed) MPI_Comm_free(&c->mpi);
    free(c->icounts);
    free(c->zdispl);
    free(c->reqs);
    free(c->world_ranks);
    free(c->bounce);
    free(c);
    *pc = NULL;
}

wf_status cm_enable_nccl(cm_comm *c, int device, wf_err *err) {
    return cm_nccl_init(c, device, NULL, err);
}

wf_status cm_enable_nccl_on(cm_comm *c, int device, void *stream, wf_err *err) {
    return cm_nccl_init(c, device, stream, err);
}

wf_status cm_enable_device(cm_comm *c, int device, void *stream, wf_err *err) {
    const int shared = cm_nccl_shared_gpu(c, device, err);
    if (shared < 0) return err && err->status ? err->status : WF_ECUDA;
    return shared ? cm_staged_init(c, device, stream, err) : cm_nccl_init(c, device, stream, err);
}

/* ---- CM_STAGED: device buffers through the host bounce buffer ----
 * stage_begin: the bounce holds sb + rb bytes ([0, sb) the send side, [sb, sb + rb) the receive
 * side), the device send buffer is copied into it, and c runs as CM_MPI until stage_end, which
 * copies the receive side back to the device when the MPI call succeeded. The MPI call counts
 * the bytes as it would for host buffers. */
static wf_status stage_begin(cm_comm *c, const void *send, size_t sb, size_t rb, char **hs,
                             char **hr, wf_err *err) {
    const size_t need = sb + rb;
    if (need > c->bounce_cap) {
        void *b = realloc(c->bounce, need);
        if (!b) return wf_fail(err, WF_ENOMEM, "communicator '%s': no host memory for a %.1f MiB "
                               "staging buffer", c->name, (double)need / (1 << 20));
        c->bounce = b;
        c->bounce_cap = need;
    }
    *hs = c->bounce;
    *hr = (char *)c->bounce + sb;
    wf_status st = send ? cm_staged_copy(c, *hs, send, sb, true, err) : WF_OK;
    if (!st) c->backend = CM_MPI;
    return st;
}

static wf_status stage_end(cm_comm *c, wf_status st, const char *hr, void *recv, size_t rb,
                           wf_err *err) {
    c->backend = CM_STAGED;
    if (!st && recv) st = cm_staged_copy(c, recv, hr, rb, false, err);
    return st;
}

int cm_local_rank(void) {
    const char *v = getenv("SLURM_LOCALID");
    if (!v || !*v) v = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    if (v && *v) {
        char *e;
        long r = strtol(v, &e, 10);
        if (!*e && r >= 0 && r < INT_MAX) return (int)r;
    }
    int init = 0, rank = 0;
    MPI_Initialized(&init);
    if (!init) return 0;
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) !=
        MPI_SUCCESS)
        return 0;
    MPI_Comm_rank(node, &rank);
    MPI_Comm_free(&node);
    return rank;
}

/* ---- point to point, in pieces ---- */

static int send_pieces(cm_comm *c, const void *buf, size_t bytes, int peer, int tag) {
    const char *p = buf;
    do {
        size_t n = bytes < CM_PIECE ? bytes : CM_PIECE;
        int rc = MPI_Send(p, (int)n, MPI_BYTE, peer, tag, c->mpi);
        if (rc != MPI_SUCCESS) return rc;
        p += n;
        bytes -= n;
    } while (bytes);
    return MPI_SUCCESS;
}

static int recv_pieces(cm_comm *c, void *buf, size_t bytes, int peer, int tag) {
    char *p = buf;
    do {
        size_t n = bytes < CM_PIECE ? bytes : CM_PIECE;
        int rc = MPI_Recv(p, (int)n, MPI_BYTE, peer, tag, c->mpi, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return rc;
        p += n;
        bytes -= n;
    } while (bytes);
    return MPI_SUCCESS;
}

/* A block exchange with every rank over nonblocking point-to-point, piece by piece: the path for
 * blocks MPI's int counts cannot describe. sendoff(r)/recvoff(r): where rank r's block lies. */
static int exchange_big(cm_comm *c, const char *send, size_t sstride, char *recv,
                        const size_t *counts, const size_t *displs, size_t bytes) {
    MPI_Request *rq = c->reqs;
    int rc = MPI_SUCCESS;
    for (size_t off = 0; rc == MPI_SUCCESS; off += CM_PIECE) {
        int nr = 0, more = 0;
        for (int r = 0; r < c->size; r++) {
            size_t rb = counts ? counts[r] : bytes, dr = displs ? displs[r] : (size_t)r * bytes;
            if (off < rb) {
                size_t n = rb - off < CM_PIECE ? rb - off : CM_PIECE;
                if (rb - off > CM_PIECE) more = 1;
                if ((rc = MPI_Irecv(recv + dr + off, (int)n, MPI_BYTE, r, 7, c->mpi, &rq[nr++]))) {
                    rq[nr - 1] = MPI_REQUEST_NULL; /* not a request: Waitall must skip it */
                    break;
                }
            }
            size_t sb = counts ? counts[c->rank] : bytes;
            if (off < sb) {
                size_t n = sb - off < CM_PIECE ? sb - off : CM_PIECE;
                if (sb - off > CM_PIECE) more = 1;
                if ((rc = MPI_Isend(send + (size_t)r * sstride + off, (int)n, MPI_BYTE, r, 7,
                                    c->mpi, &rq[nr++]))) {
                    rq[nr - 1] = MPI_REQUEST_NULL;
                    break;
                }
            }
        }
        int rc2 = MPI_Waitall(nr, rq, MPI_STATUSES_IGNORE);
        if (rc == MPI_SUCCESS) rc = rc2;
        if (!more) break;
    }
    return rc;
}

/* ---- collectives ---- */

wf_status cm_alltoall(cm_comm *c, const void *send, void *recv, size_t bytes, wf_err *err) {
    if (c->backend == CM_STAGED) {
        const size_t tot = bytes * (size_t)c->size;
        char *hs = NULL, *hr = NULL;
        wf_status st = stage_begin(c, send, tot, tot, &hs, &hr, err);
        if (!st) st = stage_end(c, cm_alltoall(c, hs, hr, bytes, err), hr, recv, tot, err);
        return st;
    }
    double t0 = enter(c, CM_ALLTOALL, -1);
    if (c->backend == CM_NCCL)
        return counted(c, cm_nccl_alltoall(c, send, recv, bytes, err), CM_ALLTOALL,
                       bytes * (size_t)(c->size - 1), t0);
    int rc = bytes <= INT_MAX
                 ? MPI_Alltoall(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, c->mpi)
                 : exchange_big(c, send, bytes, recv, NULL, NULL, bytes);
    if (rc != MPI_SUCCESS) return mpi_fail(err, c, rc, "all-to-all");
    count(c, CM_ALLTOALL, bytes * (size_t)(c->size - 1), t0);
    return WF_OK;
}

wf_status cm_ialltoall(cm_comm *c, const void *send, void *recv, size_t bytes, cm_request *q,
                       wf_err *err) {
    memset(q, 0, sizeof *q);
    q->bytes = bytes * (size_t)(c->size - 1);
    if (c->backend == CM_NCCL) { /* the device time comes from its events (cm_settle) */
        wf_status st = cm_nccl_ialltoall(c, send, recv, bytes, &q->slot, err);
        if (st) return st;
        q->active = true;
        return WF_OK;
    }
    if (c->backend == CM_STAGED || bytes > INT_MAX) { /* at once, blocking */
        const cm_stats before = c->stats;
        wf_status st = cm_alltoall(c, send, recv, bytes, err);
        if (st) return st;
        q->seconds = c->stats.seconds[CM_ALLTOALL] - before.seconds[CM_ALLTOALL];
        c->stats = before; /* counted at cm_wait, like the others */
        q->active = true;
        return WF_OK;
    }
    double t0 = enter(c, CM_ALLTOALL, -1);
    int rc = MPI_Ialltoall(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, c->mpi, &q->req);
    cm_wd_leave();
    q->seconds = now_s() - t0;
    if (rc != MPI_SUCCESS) return mpi_fail(err, c, rc, "all-to-all (started)");
    q->mpi = q->active = true;
    return WF_OK;
}

wf_status cm_wait(cm_comm *c, cm_request *q, wf_err *err) {
    if (!q->active) return WF_OK;
    q->active = false;
    if (c->backend == CM_NCCL) {
        wf_status st = cm_nccl_wait(c, q->slot, err);
        if (st) return st;
        c->stats.calls[CM_ALLTOALL]++;
        c->stats.bytes[CM_ALLTOALL] += q->bytes;
        return WF_OK;
    }
    double t0 = now_s();
    if (q->mpi) {
        cm_wd_enter("all-to-all (wait)", c->name, c->rank, c->size, c->world_ranks, -1);
        int rc = MPI_Wait(&q->req, MPI_STATUS_IGNORE);
        cm_wd_leave();
        if (rc != MPI_SUCCESS) return mpi_fail(err, c, rc, "all-to-all (wait)");
    }
    c->stats.calls[CM_ALLTOALL]++;
    c->stats.bytes[CM_ALLTOALL] += q->bytes;
    c->stats.seconds[CM_ALLTOALL] += q->seconds + (now_s() - t0);
    return WF_OK;
}

wf_status cm_settle(cm_comm *c, wf_err *err) {
    if (!c || c->backend != CM_NCCL || !c->async) return WF_OK;
    return cm_nccl_settle(c, &c->stats.seconds[CM_ALLTOALL], err);
}

wf_status cm_allgather(cm_comm *c, const void *send, void *recv, size_t bytes, wf_err *err) {
    if (c->backend == CM_STAGED) {
        const size_t tot = bytes * (size_t)c->size;
        char *hs = NULL, *hr = NULL;
        wf_status st = stage_begin(c, send, bytes, tot, &hs, &hr, err);
        if (!st) st = stage_end(c, cm_allgather(c, hs, hr, bytes, err), hr, recv, tot, err);
        return st;
    }
    double t0 = enter(c, CM_ALLGATHER, -1);
    if (c->backend == CM_NCCL)
        return counted(c, cm_nccl_allgather(c, send, recv, bytes, err), CM_ALLGATHER,
                       bytes * (size_t)(c->size - 1), t0);
    int rc = bytes <= INT_MAX
                 ? MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, c->mpi)
                 : exchange_big(c, send, 0, recv, NULL, NULL, bytes);
    if (rc != MPI_SUCCESS) return mpi_fail(err, c, rc, "all-gather");
    count(c, CM_ALLGATHER, bytes * (size_t)(c->size - 1), t0);
    return WF_OK;
}

wf_status cm_allgatherv(cm_comm *c, const void *send, void *recv, const size_t *counts,
                        wf_err *err) {
    if (c->backend == CM_STAGED) {
        size_t tot = 0;
        for (int r = 0; r < c->size; r++) tot += counts[r];
        char *hs = NULL, *hr = NULL;
        wf_status st = stage_begin(c, send, counts[c->rank], tot, &hs, &hr, err);
        if (!st) st = stage_end(c, cm_allgatherv(c, hs, hr, counts, err), hr, recv, tot, err);
        return st;
    }
    double t0 = enter(c, CM_ALLGATHER, -1);
    if (c->backend == CM_NCCL)
        return counted(c, cm_nccl_allgatherv(c, send, recv, counts, err), CM_ALLGATHER,
                       counts[c->rank] * (size_t)(c->size - 1), t0);
    int *ic = c->icounts;
    size_t *dz = c->zdispl;
    size_t total = 0;
    bool small = true;
    for (int r = 0; r < c->size; r++) {
        dz[r] = total;
        total += counts[r];
        if (counts[r] > INT_MAX || dz[r] > INT_MAX) small = false;
        else {
            ic[r] = (int)counts[r];
            ic[c->size + r] = (int)dz[r];
        }
    }
    int rc = small ? MPI_Allgatherv(send, ic[c->rank], MPI_BYTE, recv, ic, ic + c->size,
                                    MPI_BYTE, c->mpi)
                   : exchange_big(c, send, 0, recv, counts, dz, 0);
    if (rc != MPI_SUCCESS) return mpi_fail(err, c, rc, "all-gather (v)");
    count(c, CM_ALLGATHER, counts[c->rank] * (size_t)(c->size - 1), t0);
    return WF_OK;
}

static wf_status check_peer(cm_comm *c, int peer, const char *what, wf_err *err) {
    if (peer < 0 || peer >= c->size)
        return wf_fail(err, WF_EINVAL, "%s: peer %d is not a rank of '%s' (size %d)", what, peer,
                       c->name, c->size);
    return WF_OK;
}

wf_status cm_send(cm_comm *c, const void *buf, size_t bytes, int peer, int tag, wf_err *err) {
    wf_status st = check_peer(c, peer, "send", err);
    if (st) return st;
    if (c->backend == CM_STAGED) {
        char *hs = NULL, *hr = NULL;
        if (!(st = stage_begin(c, buf, bytes, 0, &hs, &hr, err)))
            st = stage_end(c, cm_send(c, hs, bytes, peer, tag, err), hr, NULL, 0, err);
        return st;
    }
    double t0 = enter(c, CM_SEND, peer);
    if (c->backend == CM_NCCL)
        return counted(c, cm_nccl_sendrecv(c, buf, bytes, peer, NULL, 0, -1, err), CM_SEND,
                       bytes, t0);
    int rc = send_pieces(c, buf, bytes, peer, tag);
    if (rc != MPI_SUCCESS) return mpi_fail(err, c, rc, "send");
    count(c, CM_SEND, bytes, t0);
    return WF_OK;
}

wf_status cm_recv(cm_comm *c, void *buf, size_t bytes, int peer, int tag, wf_err *err) {
    wf_status st = check_peer(c, peer, "recv", err);
    if (st) return st;
    if (c->backend == CM_STAGED) {
        char *hs = NULL, *hr = NULL;
        if (!(st = stage_begin(c, NULL, 0, bytes, &hs, &hr, err)))
            st = stage_end(c, cm_recv(c, hr, bytes, peer, tag, err), hr, buf, bytes, err);
        return st;
    }
    double t0 = enter(c, CM_RECV, peer);
    if (c->backend == CM_NCCL)
        return counted(c, cm_nccl_sendrecv(c, NULL, 0, -1, buf, bytes, peer, err), CM_RECV,
                       bytes, t0);
    int rc = recv_pieces(c, buf, bytes, peer, tag);
    if (rc != MPI_SUCCESS) return mpi_fail(err, c, rc, "recv");
    count(c, CM_RECV, bytes, t0);
    return WF_OK;
}

wf_status cm_sendrecv(cm_comm *c, const void *send, size_t sbytes, int dst, void *recv,
                      size_t rbytes, int src, int tag, wf_err *err) {
    wf_status st;
    if (dst >= 0 && (st = check_peer(c, dst, "sendrecv", err))) return st;
    if (src >= 0 && (st = check_peer(c, src, "sendrecv", err))) return st;
    if (c->backend == CM_STAGED) {
        const size_t sb = dst >= 0 ? sbytes : 0, rb = src >= 0 ? rbytes : 0;
        char *hs = NULL, *hr = NULL;
        if (!(st = stage_begin(c, sb ? send : NULL, sb, rb, &hs, &hr, err)))
            st = stage_end(c, cm_sendrecv(c, hs, sb, dst, hr, rb, src, tag, err), hr,
                           rb ? recv : NULL, rb, err);
        return st;
    }
    double t0 = enter(c, src >= 0 ? CM_RECV : CM_SEND, src >= 0 ? src : dst);
    if (c->backend == CM_NCCL) {
        if ((st = cm_nccl_sendrecv(c, send, sbytes, dst, recv, rbytes, src, err))) {
            cm_wd_leave();
            return st;
        }
        count_sendrecv(c, sbytes, dst, rbytes, src, t0);
        return WF_OK;
    }
    int rc;
    if (sbytes <= INT_MAX && rbytes <= INT_MAX) {
        rc = MPI_Sendrecv(send, dst < 0 ? 0 : (int)sbytes, MPI_BYTE,
                          dst < 0 ? MPI_PROC_NULL : dst, tag, recv, src < 0 ? 0 : (int)rbytes,
                          MPI_BYTE, src < 0 ? MPI_PROC_NULL : src, tag, c->mpi,
                          MPI_STATUS_IGNORE);
    } else {
        MPI_Request rq;
        rc = MPI_SUCCESS;
        /* pieces: post the receive side first, one piece at a time, against blocking sends */
        const char *sp = send;
        char *rp = recv;
        size_t sl = dst < 0 ? 0 : sbytes, rl = src < 0 ? 0 : rbytes;
        while (rc == MPI_SUCCESS && (sl || rl)) {
            size_t rn = rl < CM_PIECE ? rl : CM_PIECE, sn = sl < CM_PIECE ? sl : CM_PIECE;
            rc = MPI_Irecv(rp, (int)rn, MPI_BYTE, rl ? src : MPI_PROC_NULL, tag, c->mpi, &rq);
            if (rc == MPI_SUCCESS)
                rc = MPI_Send(sp, (int)sn, MPI_BYTE, sl ? dst : MPI_PROC_NULL, tag, c->mpi);
            if (rc == MPI_SUCCESS) rc = MPI_Wait(&rq, MPI_STATUS_IGNORE);
            sp += sn;
            sl -= sn;
            rp += rn;
            rl -= rn;
        }
    }
    if (rc != MPI_SUCCESS) return mpi_fail(err, c, rc, "sendrecv");
    count_sendrecv(c, sbytes, dst, rbytes, src, t0);
    return WF_OK;
}

wf_status cm_bcast(cm_comm *c, void *buf, size_t bytes, int root, wf_err *err) {
    wf_status st = check_peer(c, root, "broadcast", err);
    if (st) return st;
    if (c->backend == CM_STAGED) {
        char *hs = NULL, *hr = NULL;
        if (!(st = stage_begin(c, c->rank == root ? buf : NULL, bytes, 0, &hs, &hr, err)))
            st = stage_end(c, cm_bcast(c, hs, bytes, root, err), hs, buf, bytes, err);
        return st;
    }
    double t0 = enter(c, CM_BCAST, c->rank == root ? -1 : root);
    if (c->backend == CM_NCCL)
        return counted(c, cm_nccl_bcast(c, buf, bytes, root, err), CM_BCAST,
                       c->rank == root && c->size > 1 ? bytes : 0, t0);
    char *p = buf;
    size_t left = bytes;
    int rc = MPI_SUCCESS;
    do {
        size_t n = left < CM_PIECE ? left : CM_PIECE;
        rc = MPI_Bcast(p, (int)n, MPI_BYTE, root, c->mpi);
        p += n;
        left -= n;
    } while (rc == MPI_SUCCESS && left);
    if (rc != MPI_SUCCESS) return mpi_fail(err, c, rc, "broadcast");
    count(c, CM_BCAST, c->rank == root && c->size > 1 ? bytes : 0, t0);
    return WF_OK;
}

wf_status cm_barrier(cm_comm *c, wf_err *err) {
    double t0 = enter(c, CM_BARRIER, -1);
    int rc = MPI_Barrier(c->mpi);
    if (rc != MPI_SUCCESS) return mpi_fail(err, c, rc, "barrier");
    count(c, CM_BARRIER, 0, t0);
    return WF_OK;
}

wf_status cm_agree(cm_comm *c, wf_status st, const char *what, wf_err *err) {
    double t0 = enter(c, CM_AGREE, -1);
    struct {
        int st, rank;
    } mine = {(int)st, c->rank}, worst;
    int rc = MPI_Allreduce(&mine, &worst, 1, MPI_2INT, MPI_MAXLOC, c->mpi);
    if (rc != MPI_SUCCESS) return mpi_fail(err, c, rc, "status agreement");
    count(c, CM_AGREE, 0, t0);
    if (worst.st == WF_OK) return WF_OK;
    char msg[WF_ERR_MSG] = {0};
    if (c->rank == worst.rank) snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
    rc = MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, worst.rank, c->mpi);
    if (rc != MPI_SUCCESS) snprintf(msg, sizeof msg, "(its message was lost: MPI error %d)", rc);
    msg[sizeof msg - 1] = 0;
    if (c->rank == worst.rank) return st;
    return wf_fail(err, (wf_status)worst.st, "%s: rank %d of %d failed: %s", what, worst.rank,
                   c->size, msg);
}

wf_status cm_range(cm_comm *c, int64_t v, int64_t *lo, int64_t *hi, wf_err *err) {
    double t0 = enter(c, CM_AGREE, -1);
    int64_t mine[2] = {v, -v}, most[2] = {v, -v};
    int rc = MPI_Allreduce(mine, most, 2, MPI_INT64_T, MPI_MAX, c->mpi);
    if (rc != MPI_SUCCESS) return mpi_fail(err, c, rc, "value agreement");
    count(c, CM_AGREE, 0, t0);
    if (lo) *lo = -most[1];
    if (hi) *hi = most[0];
    return WF_OK;
}

void cm_stats_reset(cm_comm *c) { memset(&c->stats, 0, sizeof c->stats); }

const char *cm_op_name(cm_op op) {
    static const char *n[CM_NOPS] = {"alltoall", "allgather", "send", "recv",
                                     "bcast",    "barrier",   "agree"};
    return op >= 0 && op < CM_NOPS ? n[op] : "?";
}

void cm_stats_add(cm_stats *t, const cm_stats *s) {
    for (int i = 0; i < CM_NOPS; i++) {
        t->calls[i] += s->calls[i];
        t->bytes[i] += s->bytes[i];
        t->seconds[i] += s->seconds[i];
    }
}
