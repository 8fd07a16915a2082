/* comm.h: the communicator every distributed part of wanfarm talks through (prefix cm_).
 *
 * What it is: one interface, two backends.
 *   - MPI (CM_MPI): buffers are host memory; every operation is the MPI collective or point-to-point
 *     call of the same name on the group's MPI_Comm. CPU runs and CI use it.
 *   - NCCL (CM_NCCL): buffers are device memory; one ncclComm per group, made from a unique id that
 *     the group's rank 0 draws and broadcasts over the group's MPI_Comm (cm_enable_nccl). Each call
 *     is enqueued on the communicator's stream and waited for before returning (so counters hold
 *     true wall times). Only in CUDA builds; elsewhere cm_enable_nccl says so.
 * Groups come from MPI_Comm_split (cm_split), so a group always has an MPI_Comm, whatever its data
 * backend: the NCCL id is broadcast over it, and barriers use it.
 *
 * Sizes are bytes. Every rank of the group calls a collective with the same sizes (all-to-all and
 * all-gather: `bytes` is the block one rank sends to, or receives from, each rank). Messages of any
 * size are split into pieces MPI's int counts can take.
 *
 * Counters (cm_stats): per operation kind, the calls, the bytes this rank *sent to other ranks*
 * (its own block of an all-to-all or all-gather stays home and is not counted; a broadcast counts
 * `bytes` on the root only, as a tree would send it at least once; barrier 0), and the wall seconds
 * spent inside the calls (waiting included). bench/PERFORMANCE.md states the per-step formulas these
 * must match.
 *
 * Rank -> GPU binding (bind.c, cm_bind_gpu): the node's ranks by MPI_COMM_TYPE_SHARED, each
 * takes visible device local_rank % count, and no two ranks of a node may land on one physical
 * GPU (compared by UUID) unless sharing is allowed. cm_local_rank() reads SLURM_LOCALID, then
 * OMPI_COMM_WORLD_LOCAL_RANK, then MPI_COMM_TYPE_SHARED.
 *
 * Watchdog (watchdog.h): once started, a thread ends the MPI job, with one line naming the call,
 * the group and the ranks waited for, when a call of this rank lasts far longer than a step, so
 * that a stopped or hung rank does not leave the others waiting forever.
 *
 * Asynchronous: only cm_ialltoall (with cm_wait, cm_settle), for exchanges that overlap compute.
 * What it is not: fault tolerant (a dead rank makes MPI abort the job).
 * Tested by: tests/test_comm.c under mpirun (np 1..4) against the MPI reference results and the
 * counter formulas; the NCCL path by the same test on a GPU machine (cm_enable_nccl).
 */
#ifndef CM_COMM_H
#define CM_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "status.h"

/* CM_STAGED: device buffers through MPI via a host bounce buffer (download, MPI, upload): the
 * data path of a communicator whose ranks share a GPU, which NCCL refuses (cm_enable_device). */
typedef enum cm_backend { CM_MPI = 0, CM_NCCL, CM_STAGED } cm_backend;

typedef enum cm_op {
    CM_ALLTOALL = 0,
    CM_ALLGATHER,
    CM_SEND,
    CM_RECV,
    CM_BCAST,
    CM_BARRIER,
    CM_AGREE,
    CM_NOPS
} cm_op;

typedef struct cm_stats {
    uint64_t calls[CM_NOPS];
    uint64_t bytes[CM_NOPS];  /* sent to other ranks (CM_RECV: received) */
    double seconds[CM_NOPS];
} cm_stats;

typedef struct cm_comm {
    MPI_Comm mpi;      /* owned (freed by cm_free) unless borrowed */
    bool borrowed;
    int rank, size;
    cm_backend backend;
    void *nccl;        /* ncclComm_t when backend == CM_NCCL */
    void *stream;      /* cudaStream_t */
    bool stream_borrowed; /* the caller's (cm_enable_nccl_on): not destroyed */
    void *bounce;      /* CM_STAGED: host memory for the send and receive sides, bounce_cap */
    size_t bounce_cap; /* bytes; grows at the first call of each size, never inside a step after */
    int device;
    char name[32];     /* for messages: "world", "high", "ulysses", ... */
    int *world_ranks;  /* [size]: each rank's rank in MPI_COMM_WORLD (for messages) */
    bool overlap;      /* the caller may overlap this comm's all-to-alls with its compute
                        * (cm_ialltoall): set by its owner (the DiT's Ulysses group reads it) */
    void *async;       /* CM_NCCL: the side stream and events of cm_ialltoall */
    cm_stats stats;
    /* per-rank scratch for counts and requests, sized at creation: no collective allocates */
    int *icounts;      /* [2 size]: counts, displacements */
    size_t *zdispl;    /* [size] */
    MPI_Request *reqs; /* [2 size] */
} cm_comm;

/* Wraps MPI_COMM_WORLD (MPI must be initialised; the comm is borrowed, not freed). */
wf_status cm_world(cm_comm **out, wf_err *err);
/* Wraps any MPI communicator (borrowed). */
wf_status cm_wrap(cm_comm **out, MPI_Comm mpi, const char *name, wf_err *err);
/* MPI_Comm_split of parent: ranks with the same color form a group, ordered by key. color < 0:
 * this rank joins no group and *out is NULL. Collective over parent. The child uses the MPI
 * backend; call cm_enable_nccl on it for NCCL. */
wf_status cm_split(cm_comm *parent, int color, int key, const char *name, cm_comm **out,
                   wf_err *err);
void cm_free(cm_comm **c); /* NULLs *c; accepts NULL */

/* Switches c to NCCL on `device` (collective over c). WF_EUNSUPPORTED in builds without CUDA. */
wf_status cm_enable_nccl(cm_comm *c, int device, wf_err *err);
/* The same on a stream of the caller's (a backend's queue, wk_backend.queue; borrowed, not
 * destroyed): the collectives are enqueued behind the work already on it, so no sync is needed
 * between the ops that fill a buffer and its exchange. NULL: a stream of the comm's own. */
wf_status cm_enable_nccl_on(cm_comm *c, int device, void *stream, wf_err *err);
/* For a communicator that carries device buffers on `stream` (a backend's queue): NCCL when its
 * ranks are on distinct GPUs (compared by PCI bus id; collective), else CM_STAGED (ranks sharing
 * a GPU: NCCL refuses duplicate devices in one communicator). WF_EUNSUPPORTED without CUDA. */
wf_status cm_enable_device(cm_comm *c, int device, void *stream, wf_err *err);

/* The node-local rank (see the head of this file), for device binding. */
int cm_local_rank(void);

/* ---- which GPU a rank computes on (bind.c) ---- */
#define CM_GPU_ID_LEN 48 /* a device's UUID, "GPU-..." (wk_cuda_device.uuid) */
typedef struct cm_gpu_binding {
    int local_rank, local_size; /* among the ranks of this node (MPI_COMM_TYPE_SHARED) */
    int device;                 /* the visible device this rank takes (-1: none) */
    char uuid[CM_GPU_ID_LEN];   /* its physical identity */
    char host[64];
} cm_gpu_binding;
/* Collective over world: each rank takes visible device local_rank % n_visible (uuids[k]: the
 * id of visible device k), then the node's choices are compared by UUID: two ranks on one
 * physical GPU fail the binding (unless allow_share), as does a rank that sees no GPU; every
 * rank of the world then returns the same error (cm_agree), naming the ranks, host and GPU. */
wf_status cm_bind_gpu(cm_comm *world, int n_visible, const char (*uuids)[CM_GPU_ID_LEN],
                      bool allow_share, cm_gpu_binding *out, wf_err *err);
/* The visible device a node-local rank takes: local_rank % n_visible (-1 when none is visible). */
int cm_bind_pick(int local_rank, int n_visible);
/* WANFARM_SHARE_GPU=1: several ranks may share a device (tests on a machine with one GPU). */
bool cm_bind_share_allowed(void);

/* recv[r * bytes ...] = the block rank r sent to us; send[r * bytes ...] goes to rank r. */
wf_status cm_alltoall(cm_comm *c, const void *send, void *recv, size_t bytes, wf_err *err);
/* recv[r * bytes ...] = rank r's send. */
wf_status cm_allgather(cm_comm *c, const void *send, void *recv, size_t bytes, wf_err *err);
/* Ranks may send different sizes: counts[r] bytes from rank r land at recv + sum(counts[<r]). */
wf_status cm_allgatherv(cm_comm *c, const void *send, void *recv, const size_t *counts,
                        wf_err *err);
wf_status cm_send(cm_comm *c, const void *buf, size_t bytes, int peer, int tag, wf_err *err);
wf_status cm_recv(cm_comm *c, void *buf, size_t bytes, int peer, int tag, wf_err *err);
/* An all-to-all in flight: cm_ialltoall starts it, cm_wait completes it. */
typedef struct cm_request {
    bool active;
    bool mpi;          /* an MPI request to wait for (else done at once, or NCCL's slot) */
    MPI_Request req;
    int slot;          /* CM_NCCL: its events */
    size_t bytes;      /* sent to other ranks, for the counters */
    double seconds;    /* host seconds inside the calls so far */
} cm_request;
/* Starts cm_alltoall's exchange and returns before it completes: send and recv must not be
 * touched until cm_wait(req). MPI: MPI_Ialltoall (blocks larger than MPI's int counts, and
 * CM_STAGED, complete at once); NCCL: enqueued on the comm's side stream behind the work already
 * on its stream (the backend's queue), and cm_wait makes that stream wait for it: the host never
 * waits, and the kernels issued in between overlap the exchange. Counted at cm_wait: the calls,
 * the bytes, and the seconds (MPI: inside the two calls; NCCL: the exchange's device time,
 * measured by events and added by cm_settle). */
wf_status cm_ialltoall(cm_comm *c, const void *send, void *recv, size_t bytes, cm_request *req,
                       wf_err *err);
wf_status cm_wait(cm_comm *c, cm_request *req, wf_err *err);
/* Adds the device time of NCCL exchanges waited for since the last call to the counters (waits
 * for them to end; nothing to do on MPI). Called before the counters are read. */
wf_status cm_settle(cm_comm *c, wf_err *err);

/* Sends to dst and receives from src at once (either may be -1: none), as halo exchanges need. */
wf_status cm_sendrecv(cm_comm *c, const void *send, size_t sbytes, int dst, void *recv,
                      size_t rbytes, int src, int tag, wf_err *err);
wf_status cm_bcast(cm_comm *c, void *buf, size_t bytes, int root, wf_err *err);
wf_status cm_barrier(cm_comm *c, wf_err *err);
/* Every rank passes its status; every rank returns the worst one of the group (the highest code;
 * ties: the lowest rank), the failing rank with its own message and the others with
 * "<what>: rank r of n failed: <its message>". A control exchange over the MPI_Comm whatever the
 * backend (one all-reduce of an int pair, then a broadcast of the message only on failure);
 * counted as CM_AGREE with 0 bytes. Lets a group stop together when one rank fails before the
 * next collective. */
wf_status cm_agree(cm_comm *c, wf_status st, const char *what, wf_err *err);

/* The smallest and largest of every rank's v (one all-reduce over the MPI_Comm, counted as
 * CM_AGREE; lo or hi may be NULL): for the choices every rank must make alike. */
wf_status cm_range(cm_comm *c, int64_t v, int64_t *lo, int64_t *hi, wf_err *err);

/* The counters. */
void cm_stats_reset(cm_comm *c);
const char *cm_op_name(cm_op op); /* "alltoall", ... */
/* Sum of a group of counters into total (for reports over several comms). */
void cm_stats_add(cm_stats *total, const cm_stats *s);

#endif
