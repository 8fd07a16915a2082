/* comm_nccl.c: the NCCL backend of the communicator (see comm_nccl.h and comm.h), CUDA builds only.
 *
 * What it is: one ncclComm per group, made from a unique id that the group's rank 0 draws and
 * broadcasts over the group's MPI_Comm, and one non-blocking CUDA stream (its own, or the
 * caller's: a backend's queue, so that a collective follows the kernels that wrote its buffers). Every call enqueues its
 * NCCL work on that stream and synchronises it before returning, so the counters (comm.c keeps
 * them around these calls, for both backends) hold true wall times. Buffers are device pointers; counts are
 * size_t, so no message is split.
 * cudart and NCCL are not linked: the first cm_nccl_init opens libcudart.so.<major> and
 * libnccl.so.<major> with dlopen (the library search path first, then the folders they were found
 * in at build time, CM_CUDA_LIB_DIRS) and resolves the calls below through the table A, so a CPU
 * run of the program never loads them. A rank that cannot load them fails cm_nccl_init like one
 * that cannot bind its GPU: every rank learns it and none switches.
 * cm_ialltoall (cm_nccl_ialltoall/wait/settle) is the one asynchronous call: on a side stream of
 * the comm's own, ordered after the comm's stream by an event and before it again at the wait,
 * with a pair of timing events per exchange for the counters.
 * What it is not: able to recover a comm after a failed call (free it).
 * Tested by: tests/test_comm.c on a machine with GPUs (its NCCL section runs when
 * cudaGetDeviceCount reports one GPU per node-local rank; otherwise it says why it skipped).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "comm_nccl.h"

#ifndef CM_CUDA_LIB_DIRS
#define CM_CUDA_LIB_DIRS ""
#endif

/* The cudart and NCCL calls of this file: name, return type, parameters. */
#define CM_CUDART_CALLS(X)                                                                       \
    X(cudaSetDevice, cudaError_t, (int))                                                         \
    X(cudaStreamCreateWithFlags, cudaError_t, (cudaStream_t *, unsigned int))                    \
    X(cudaStreamSynchronize, cudaError_t, (cudaStream_t))                                        \
    X(cudaStreamDestroy, cudaError_t, (cudaStream_t))                                            \
    X(cudaGetErrorString, const char *, (cudaError_t))                                           \
    X(cudaGetErrorName, const char *, (cudaError_t))                                             \
    X(cudaMemcpyAsync, cudaError_t, (void *, const void *, size_t, enum cudaMemcpyKind,          \
                                     cudaStream_t))                                              \
    X(cudaDeviceGetPCIBusId, cudaError_t, (char *, int, int))                                   \
    X(cudaEventCreateWithFlags, cudaError_t, (cudaEvent_t *, unsigned int))                      \
    X(cudaEventRecord, cudaError_t, (cudaEvent_t, cudaStream_t))                                 \
    X(cudaStreamWaitEvent, cudaError_t, (cudaStream_t, cudaEvent_t, unsigned int))              \
    X(cudaEventSynchronize, cudaError_t, (cudaEvent_t))                                          \
    X(cudaEventElapsedTime, cudaError_t, (float *, cudaEvent_t, cudaEvent_t))                    \
    X(cudaEventDestroy, cudaError_t, (cudaEvent_t))
#define CM_NCCL_CALLS(X)                                                                         \
    X(ncclGetLastError, const char *, (ncclComm_t))                                              \
    X(ncclGetErrorString, const char *, (ncclResult_t))                                          \
    X(ncclCommGetAsyncError, ncclResult_t, (ncclComm_t, ncclResult_t *))                         \
    X(ncclGetUniqueId, ncclResult_t, (ncclUniqueId *))                                           \
    X(ncclCommInitRank, ncclResult_t, (ncclComm_t *, int, ncclUniqueId, int))                    \
    X(ncclCommDestroy, ncclResult_t, (ncclComm_t))                                               \
    X(ncclGroupStart, ncclResult_t, (void))                                                      \
    X(ncclGroupEnd, ncclResult_t, (void))                                                        \
    X(ncclSend, ncclResult_t, (const void *, size_t, ncclDataType_t, int, ncclComm_t,            \
                               cudaStream_t))                                                    \
    X(ncclRecv, ncclResult_t, (void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t))   \
    X(ncclAllGather, ncclResult_t, (const void *, void *, size_t, ncclDataType_t, ncclComm_t,    \
                                    cudaStream_t))                                               \
    X(ncclBroadcast, ncclResult_t, (const void *, void *, size_t, ncclDataType_t, int,           \
                                    ncclComm_t, cudaStream_t))

#define CM_FIELD(name, ret, params) ret(*name) params;
static struct {
    CM_CUDART_CALLS(CM_FIELD)
    CM_NCCL_CALLS(CM_FIELD)
} A;
#undef CM_FIELD

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static bool g_loaded;
static char g_why[WF_ERR_MSG / 2]; /* why not, when !g_loaded */

/* dlopen of `soname` by the search path, then in each folder of CM_CUDA_LIB_DIRS. NULL with
 * g_why set when none loads (the first loader error is kept: it is the search path's). */
static void *open_lib(const char *soname) {
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (h) return h;
    const char *e = dlerror();
    snprintf(g_why, sizeof g_why, "%s", e ? e : soname);
    const char *dirs = CM_CUDA_LIB_DIRS;
    while (*dirs) {
        size_t n = strcspn(dirs, ":");
        char path[4096];
        if (n && snprintf(path, sizeof path, "%.*s/%s", (int)n, dirs, soname) < (int)sizeof path &&
            (h = dlopen(path, RTLD_NOW | RTLD_LOCAL)))
            return h;
        dirs += n + (dirs[n] == ':');
    }
    return NULL;
}

/* pthread_once body: both libraries and every call of the table, or g_why. Never closed. */
static void load_libs(void) {
    char cudart[64], nccl[64];
    snprintf(cudart, sizeof cudart, "libcudart.so.%d", CUDART_VERSION / 1000);
    snprintf(nccl, sizeof nccl, "libnccl.so.%d", NCCL_MAJOR);
    void *hc = open_lib(cudart), *hn = hc ? open_lib(nccl) : NULL;
    if (!hc || !hn) return;
    const char *missing = NULL;
#define CM_RESOLVE(name, ret, params)                                                            \
    if (!missing && !(*(void **)&A.name = dlsym(H, #name))) missing = #name;
#define H hc
    CM_CUDART_CALLS(CM_RESOLVE)
#undef H
#define H hn
    CM_NCCL_CALLS(CM_RESOLVE)
#undef H
#undef CM_RESOLVE
    if (missing) {
        snprintf(g_why, sizeof g_why, "%s lacks %s (a different version than wanfarm was built "
                 "with: CUDA %d, NCCL %d)", strncmp(missing, "nccl", 4) ? cudart : nccl, missing,
                 CUDART_VERSION / 1000, NCCL_MAJOR);
        return;
    }
    g_loaded = true;
}

/* The libraries, for cm_nccl_init (WF_EUNSUPPORTED with the loader's reason). */
static wf_status libs_ready(const cm_comm *c, wf_err *err) {
    pthread_once(&g_once, load_libs);
    if (g_loaded) return WF_OK;
    return wf_fail(err, WF_EUNSUPPORTED,
                   "NCCL on communicator '%s' (rank %d of %d): cannot load the CUDA runtime and "
                   "NCCL: %s; put their folders on LD_LIBRARY_PATH", c->name, c->rank, c->size,
                   g_why);
}

#define NC(c) ((ncclComm_t)(c)->nccl)
#define ST(c) ((cudaStream_t)(c)->stream)



static wf_status cuda_fail(wf_err *err, const cm_comm *c, cudaError_t e, const char *what) {
    return wf_fail(err, WF_ECUDA, "%s on communicator '%s' (rank %d of %d, device %d): %s (%s)",
                   what, c->name, c->rank, c->size, c->device, A.cudaGetErrorString(e),
                   A.cudaGetErrorName(e));
}

static wf_status nccl_fail(wf_err *err, const cm_comm *c, ncclResult_t r, const char *what) {
    const char *last = A.ncclGetLastError(c->backend == CM_NCCL ? NC(c) : NULL);
    return wf_fail(err, WF_ECUDA, "%s on communicator '%s' (rank %d of %d, device %d): %s%s%s",
                   what, c->name, c->rank, c->size, c->device, A.ncclGetErrorString(r),
                   last && *last ? ": " : "", last ? last : "");
}

static wf_status mpi_fail(wf_err *err, const cm_comm *c, int rc, const char *what) {
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(rc, s, &n) != MPI_SUCCESS) snprintf(s, sizeof s, "error %d", rc);
    return wf_fail(err, WF_EMPI, "%s on communicator '%s' (rank %d of %d): %s", what, c->name,
                   c->rank, c->size, s);
}

/* Waits for the stream; a failure there is also where an asynchronous NCCL error shows. */
static wf_status sync_stream(cm_comm *c, const char *what, wf_err *err) {
    cudaError_t e = A.cudaStreamSynchronize(ST(c));
    if (e != cudaSuccess) return cuda_fail(err, c, e, what);
    ncclResult_t ae = ncclSuccess;
    if (A.ncclCommGetAsyncError(NC(c), &ae) == ncclSuccess && ae != ncclSuccess)
        return nccl_fail(err, c, ae, what);
    return WF_OK;
}

/* The lowest rank whose flag is false, or c->size when every rank's is true (collective). */
static int first_failed(cm_comm *c, bool ok, int *rc) {
    int mine = ok ? c->size : c->rank, first = c->size;
    *rc = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, c->mpi);
    return first;
}

/* ---- life cycle ---- */

wf_status cm_nccl_init(cm_comm *c, int device, void *ext_stream, wf_err *err) {
    if (c->backend == CM_NCCL)
        return wf_fail(err, WF_EINVAL, "communicator '%s' (rank %d) already uses NCCL on device %d",
                       c->name, c->rank, c->device);
    wf_status st = WF_OK;
    int rc, bad;
    cudaStream_t stream = NULL;
    ncclComm_t comm = NULL;

    /* 1. every rank binds its device; all learn whether all could, so none waits in NCCL's init
     * for a rank that will never come */
    cudaError_t e = cudaSuccess;
    st = libs_ready(c, err);
    if (st == WF_OK && (e = A.cudaSetDevice(device)) != cudaSuccess)
        st = wf_fail(err, WF_ECUDA,
                     "cudaSetDevice(%d) for NCCL on communicator '%s' (rank %d of %d): %s (%s); "
                     "check CUDA_VISIBLE_DEVICES and that each rank has a GPU",
                     device, c->name, c->rank, c->size, A.cudaGetErrorString(e),
                     A.cudaGetErrorName(e));
    bad = first_failed(c, st == WF_OK, &rc);
    if (rc != MPI_SUCCESS) return mpi_fail(err, c, rc, "MPI_Allreduce (NCCL device check)");
    if (bad < c->size) {
        if (st == WF_OK)
            st = wf_fail(err, WF_ECUDA,
                         "NCCL on communicator '%s' (rank %d of %d): rank %d could not bind its "
                         "GPU or load CUDA and NCCL (see that rank's error); no rank switched "
                         "to NCCL",
                         c->name, c->rank, c->size, bad);
        return st;
    }

    /* 2. rank 0 draws the unique id and broadcasts it, with whether it could */
    struct {
        int ok;
        ncclUniqueId id;
    } msg;
    memset(&msg, 0, sizeof msg);
    ncclResult_t r = ncclSuccess;
    if (c->rank == 0) {
        r = A.ncclGetUniqueId(&msg.id);
        msg.ok = r == ncclSuccess;
    }
    rc = MPI_Bcast(&msg, (int)sizeof msg, MPI_BYTE, 0, c->mpi);
    if (rc != MPI_SUCCESS) return mpi_fail(err, c, rc, "MPI_Bcast (NCCL unique id)");
    if (!msg.ok) {
        if (c->rank == 0) return nccl_fail(err, c, r, "ncclGetUniqueId");
        return wf_fail(err, WF_ECUDA,
                       "NCCL on communicator '%s' (rank %d of %d): rank 0 could not draw the NCCL "
                       "unique id (see rank 0's error); no rank switched to NCCL",
                       c->name, c->rank, c->size);
    }

    /* 3. the communicator and the stream; then all agree that all have both */
    int old_device = c->device;
    c->device = device; /* for the messages below */
    r = A.ncclCommInitRank(&comm, c->size, msg.id, c->rank);
    if (r != ncclSuccess) {
        comm = NULL;
        st = nccl_fail(err, c, r, "ncclCommInitRank");
    } else if (ext_stream) {
        stream = (cudaStream_t)ext_stream; /* the backend's queue: borrowed */
    } else if ((e = A.cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)) != cudaSuccess) {
        stream = NULL;
        st = cuda_fail(err, c, e, "cudaStreamCreateWithFlags");
    }
    bad = first_failed(c, st == WF_OK, &rc);
    if (rc != MPI_SUCCESS && st == WF_OK) st = mpi_fail(err, c, rc, "MPI_Allreduce (NCCL init)");
    else if (bad < c->size && st == WF_OK)
        st = wf_fail(err, WF_ECUDA,
                     "NCCL on communicator '%s' (rank %d of %d): rank %d failed to create its NCCL "
                     "communicator or stream (see that rank's error); no rank switched to NCCL",
                     c->name, c->rank, c->size, bad);
    if (st != WF_OK) goto out_destroy;

    c->nccl = comm;
    c->stream = stream;
    c->stream_borrowed = ext_stream != NULL;
    c->backend = CM_NCCL;
    return WF_OK;

out_destroy:
    if (stream && !ext_stream) A.cudaStreamDestroy(stream);
    if (comm) A.ncclCommDestroy(comm);
    c->device = old_device;
    return st;
}

/* ---- cm_ialltoall: a side stream, and events that order it and time it ---- */

static ncclResult_t enqueue_alltoall(cm_comm *c, const void *send, void *recv, size_t bytes,
                                     cudaStream_t stream);

#define CM_ASYNC_SLOTS 32 /* exchanges between two settles (more: the oldest are settled) */
typedef struct nccl_async {
    cudaStream_t side;
    cudaEvent_t ready;                                     /* the comm's stream, at the start */
    cudaEvent_t t0[CM_ASYNC_SLOTS], t1[CM_ASYNC_SLOTS];    /* each exchange's start and end */
    int used;                                              /* slots since the last settle */
    int made;                                              /* events created (for destroy) */
} nccl_async;

static void async_free(cm_comm *c) {
    nccl_async *a = c->async;
    if (!a) return;
    if (a->side) A.cudaStreamDestroy(a->side);
    if (a->made > 0) A.cudaEventDestroy(a->ready);
    for (int k = 0; k < (a->made - 1) / 2; k++) { /* made = 1 + 2 x the slots made */
        A.cudaEventDestroy(a->t0[k]);
        A.cudaEventDestroy(a->t1[k]);
    }
    free(a);
    c->async = NULL;
}

/* The side stream and its events, made at the first exchange (once: none inside a later step). */
static wf_status async_get(cm_comm *c, nccl_async **out, wf_err *err) {
    if (c->async) {
        *out = c->async;
        return WF_OK;
    }
    nccl_async *a = calloc(1, sizeof *a);
    if (!a) return wf_fail(err, WF_ENOMEM, "communicator '%s': out of memory", c->name);
    c->async = a;
    cudaError_t e = A.cudaStreamCreateWithFlags(&a->side, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = A.cudaEventCreateWithFlags(&a->ready, cudaEventDisableTiming);
    if (e == cudaSuccess) a->made = 1;
    for (int k = 0; k < CM_ASYNC_SLOTS && e == cudaSuccess; k++) {
        e = A.cudaEventCreateWithFlags(&a->t0[k], cudaEventDefault);
        if (e == cudaSuccess && (e = A.cudaEventCreateWithFlags(&a->t1[k], cudaEventDefault)) !=
                                    cudaSuccess)
            A.cudaEventDestroy(a->t0[k]);
        if (e == cudaSuccess) a->made += 2;
    }
    if (e != cudaSuccess) {
        wf_status st = cuda_fail(err, c, e, "the all-to-all side stream and its events");
        async_free(c);
        return st;
    }
    *out = a;
    return WF_OK;
}

wf_status cm_nccl_settle(cm_comm *c, double *seconds, wf_err *err) {
    nccl_async *a = c->async;
    if (!a) return WF_OK;
    for (int k = 0; k < a->used; k++) {
        float ms = 0;
        cudaError_t e = A.cudaEventSynchronize(a->t1[k]);
        if (e == cudaSuccess) e = A.cudaEventElapsedTime(&ms, a->t0[k], a->t1[k]);
        if (e != cudaSuccess) return cuda_fail(err, c, e, "all-to-all (its device time)");
        *seconds += 1e-3 * (double)ms;
    }
    a->used = 0;
    return WF_OK;
}

wf_status cm_nccl_ialltoall(cm_comm *c, const void *send, void *recv, size_t bytes, int *slot,
                            wf_err *err) {
    nccl_async *a = NULL;
    wf_status st = async_get(c, &a, err);
    if (st) return st;
    if (a->used == CM_ASYNC_SLOTS && (st = cm_nccl_settle(c, &c->stats.seconds[CM_ALLTOALL], err)))
        return st;
    const int k = a->used++;
    *slot = k;
    /* the side stream starts when the comm's stream has written the send buffer */
    cudaError_t e = A.cudaEventRecord(a->ready, ST(c));
    if (e == cudaSuccess) e = A.cudaStreamWaitEvent(a->side, a->ready, 0);
    if (e == cudaSuccess) e = A.cudaEventRecord(a->t0[k], a->side);
    if (e != cudaSuccess) return cuda_fail(err, c, e, "all-to-all (started)");
    ncclResult_t r = enqueue_alltoall(c, send, recv, bytes, a->side);
    if (r != ncclSuccess) return nccl_fail(err, c, r, "all-to-all (started)");
    if ((e = A.cudaEventRecord(a->t1[k], a->side)) != cudaSuccess)
        return cuda_fail(err, c, e, "all-to-all (started)");
    return WF_OK;
}

wf_status cm_nccl_wait(cm_comm *c, int slot, wf_err *err) {
    nccl_async *a = c->async;
    if (!a || slot < 0 || slot >= CM_ASYNC_SLOTS)
        return wf_fail(err, WF_EINVAL, "communicator '%s': no such all-to-all in flight", c->name);
    cudaError_t e = A.cudaStreamWaitEvent(ST(c), a->t1[slot], 0); /* the device waits, not us */
    if (e != cudaSuccess) return cuda_fail(err, c, e, "all-to-all (wait)");
    ncclResult_t ae = ncclSuccess;
    if (A.ncclCommGetAsyncError(NC(c), &ae) == ncclSuccess && ae != ncclSuccess)
        return nccl_fail(err, c, ae, "all-to-all (wait)");
    return WF_OK;
}

void cm_nccl_destroy(cm_comm *c) {
    if (!c || c->backend != CM_NCCL) return;
    async_free(c);
    if (c->nccl) A.ncclCommDestroy(NC(c));
    if (c->stream && !c->stream_borrowed) A.cudaStreamDestroy(ST(c));
    c->stream = NULL;
    c->stream_borrowed = false;
    c->nccl = NULL;
    c->backend = CM_MPI;
}

/* ---- operations ---- */

/* Closes a group whatever happened inside it; the first failure wins. */
static ncclResult_t group_end(ncclResult_t r) {
    ncclResult_t r2 = A.ncclGroupEnd();
    return r != ncclSuccess ? r : r2;
}

/* The all-to-all as one group of sends and receives, enqueued on `stream` (nothing for 0 bytes). */
static ncclResult_t enqueue_alltoall(cm_comm *c, const void *send, void *recv, size_t bytes,
                                     cudaStream_t stream) {
    if (!bytes) return ncclSuccess;
    const char *s = send;
    char *d = recv;
    ncclResult_t r = A.ncclGroupStart();
    if (r != ncclSuccess) return r;
    for (int p = 0; p < c->size && r == ncclSuccess; p++) {
        r = A.ncclSend(s + (size_t)p * bytes, bytes, ncclUint8, p, NC(c), stream);
        if (r == ncclSuccess) r = A.ncclRecv(d + (size_t)p * bytes, bytes, ncclUint8, p, NC(c), stream);
    }
    return group_end(r);
}

wf_status cm_nccl_alltoall(cm_comm *c, const void *send, void *recv, size_t bytes, wf_err *err) {
    if (bytes) {
        ncclResult_t r = enqueue_alltoall(c, send, recv, bytes, ST(c));
        if (r != ncclSuccess) return nccl_fail(err, c, r, "all-to-all");
        wf_status st = sync_stream(c, "all-to-all", err);
        if (st) return st;
    }
    return WF_OK;
}

wf_status cm_nccl_allgather(cm_comm *c, const void *send, void *recv, size_t bytes, wf_err *err) {
    if (bytes) {
        ncclResult_t r = A.ncclAllGather(send, recv, bytes, ncclUint8, NC(c), ST(c));
        if (r != ncclSuccess) return nccl_fail(err, c, r, "all-gather");
        wf_status st = sync_stream(c, "all-gather", err);
        if (st) return st;
    }
    return WF_OK;
}

/* One broadcast per rank with something to say, fused in a group: rank r's counts[r] bytes land
 * at recv + sum(counts[<r]) everywhere (its own block too, as MPI_Allgatherv does). */
wf_status cm_nccl_allgatherv(cm_comm *c, const void *send, void *recv, const size_t *counts,
                             wf_err *err) {
    size_t total = 0;
    for (int p = 0; p < c->size; p++) total += counts[p];
    if (total) {
        char *d = recv;
        size_t off = 0;
        ncclResult_t r = A.ncclGroupStart();
        if (r == ncclSuccess) {
            for (int p = 0; p < c->size && r == ncclSuccess; p++) {
                if (counts[p])
                    r = A.ncclBroadcast(p == c->rank ? send : NULL, d + off, counts[p], ncclUint8, p,
                                      NC(c), ST(c));
                off += counts[p];
            }
            r = group_end(r);
        }
        if (r != ncclSuccess) return nccl_fail(err, c, r, "all-gather (v)");
        wf_status st = sync_stream(c, "all-gather (v)", err);
        if (st) return st;
    }
    return WF_OK;
}

/* Also cm_send (src < 0) and cm_recv (dst < 0): the counting is comm.c's cm_sendrecv, which
 * counts each side only when it is there, so those two count as their MPI versions do. */
wf_status cm_nccl_sendrecv(cm_comm *c, const void *send, size_t sbytes, int dst, void *recv,
                           size_t rbytes, int src, wf_err *err) {
    bool s = dst >= 0 && sbytes, rv = src >= 0 && rbytes;
    if (s || rv) {
        ncclResult_t r = A.ncclGroupStart();
        if (r == ncclSuccess) {
            if (s) r = A.ncclSend(send, sbytes, ncclUint8, dst, NC(c), ST(c));
            if (rv && r == ncclSuccess) r = A.ncclRecv(recv, rbytes, ncclUint8, src, NC(c), ST(c));
            r = group_end(r);
        }
        if (r != ncclSuccess) return nccl_fail(err, c, r, "send/recv");
        wf_status st = sync_stream(c, "send/recv", err);
        if (st) return st;
    }
    return WF_OK;
}

wf_status cm_nccl_bcast(cm_comm *c, void *buf, size_t bytes, int root, wf_err *err) {
    if (bytes) {
        ncclResult_t r = A.ncclBroadcast(buf, buf, bytes, ncclUint8, root, NC(c), ST(c));
        if (r != ncclSuccess) return nccl_fail(err, c, r, "broadcast");
        wf_status st = sync_stream(c, "broadcast", err);
        if (st) return st;
    }
    return WF_OK;
}

/* ---- ranks sharing a GPU: MPI through host memory (CM_STAGED) ---- */

int cm_nccl_shared_gpu(cm_comm *c, int device, wf_err *err) {
    wf_status st = libs_ready(c, err);
    char mine[32] = {0};
    cudaError_t e = cudaSuccess;
    if (!st && (e = A.cudaDeviceGetPCIBusId(mine, (int)sizeof mine, device)) != cudaSuccess)
        st = cuda_fail(err, c, e, "cudaDeviceGetPCIBusId");
    int rc, bad = first_failed(c, st == WF_OK, &rc);
    if (rc != MPI_SUCCESS) {
        mpi_fail(err, c, rc, "MPI_Allreduce (device ids)");
        return -1;
    }
    if (bad < c->size) {
        if (!st)
            wf_fail(err, WF_ECUDA, "communicator '%s' (rank %d of %d): rank %d could not name its "
                    "GPU (see that rank's error)", c->name, c->rank, c->size, bad);
        return -1;
    }
    char *all = calloc((size_t)c->size, sizeof mine);
    if (!all) {
        wf_fail(err, WF_ENOMEM, "communicator '%s': out of memory", c->name);
        return -1;
    }
    rc = MPI_Allgather(mine, (int)sizeof mine, MPI_CHAR, all, (int)sizeof mine, MPI_CHAR, c->mpi);
    int shared = 0;
    for (int i = 0; rc == MPI_SUCCESS && i < c->size && !shared; i++)
        for (int j = 0; j < i && !shared; j++)
            shared = !strncmp(all + (size_t)i * sizeof mine, all + (size_t)j * sizeof mine,
                              sizeof mine);
    free(all);
    if (rc != MPI_SUCCESS) {
        mpi_fail(err, c, rc, "MPI_Allgather (device ids)");
        return -1;
    }
    return shared;
}

wf_status cm_staged_init(cm_comm *c, int device, void *stream, wf_err *err) {
    if (c->backend != CM_MPI)
        return wf_fail(err, WF_EINVAL, "communicator '%s' (rank %d) already carries device data",
                       c->name, c->rank);
    wf_status st = libs_ready(c, err);
    cudaError_t e = cudaSuccess;
    if (!st && (e = A.cudaSetDevice(device)) != cudaSuccess) st = cuda_fail(err, c, e, "cudaSetDevice");
    if (st) return st;
    c->device = device;
    c->stream = stream;
    c->stream_borrowed = true;
    c->backend = CM_STAGED;
    return WF_OK;
}

wf_status cm_staged_copy(cm_comm *c, void *dst, const void *src, size_t bytes, bool to_host,
                         wf_err *err) {
    if (!bytes) return WF_OK;
    cudaError_t e = A.cudaMemcpyAsync(dst, src, bytes, to_host ? cudaMemcpyDeviceToHost
                                                               : cudaMemcpyHostToDevice, ST(c));
    if (e == cudaSuccess) e = A.cudaStreamSynchronize(ST(c));
    return e == cudaSuccess ? WF_OK : cuda_fail(err, c, e, to_host ? "staging to host"
                                                                  : "staging to the device");
}
