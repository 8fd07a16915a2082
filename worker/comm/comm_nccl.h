/* comm_nccl.h: the NCCL backend of the communicator (comm.h), internal to comm.c.
 * comm_nccl.c implements it in CUDA builds; comm_nccl_none.c in the others, where cm_nccl_init
 * refuses with WF_EUNSUPPORTED and the rest are never reached (no comm can be CM_NCCL).
 * Buffers are device pointers; every call synchronises the comm's stream before returning.
 * Counting is comm.c's, around these calls, for both backends. */
#ifndef CM_COMM_NCCL_H
#define CM_COMM_NCCL_H

#include "comm.h"

/* stream: the caller's (borrowed), or NULL for one of the comm's own. */
wf_status cm_nccl_init(cm_comm *c, int device, void *stream, wf_err *err);
void cm_nccl_destroy(cm_comm *c);
wf_status cm_nccl_alltoall(cm_comm *c, const void *send, void *recv, size_t bytes, wf_err *err);
wf_status cm_nccl_allgather(cm_comm *c, const void *send, void *recv, size_t bytes, wf_err *err);
wf_status cm_nccl_allgatherv(cm_comm *c, const void *send, void *recv, const size_t *counts,
                             wf_err *err);
/* dst < 0: no send; src < 0: no receive. */
wf_status cm_nccl_sendrecv(cm_comm *c, const void *send, size_t sbytes, int dst, void *recv,
                           size_t rbytes, int src, wf_err *err);
wf_status cm_nccl_bcast(cm_comm *c, void *buf, size_t bytes, int root, wf_err *err);
/* cm_ialltoall on NCCL: *slot gets the exchange's events; wait: the comm's stream waits for
 * them; settle: *seconds += the device time of the exchanges waited for, which are then
 * forgotten. */
wf_status cm_nccl_ialltoall(cm_comm *c, const void *send, void *recv, size_t bytes, int *slot,
                            wf_err *err);
wf_status cm_nccl_wait(cm_comm *c, int slot, wf_err *err);
wf_status cm_nccl_settle(cm_comm *c, double *seconds, wf_err *err);
/* 1 when two ranks of c are on one GPU (PCI bus ids gathered over c's MPI_Comm; collective),
 * 0 when not; WF_* status through err on failure (then -1). */
int cm_nccl_shared_gpu(cm_comm *c, int device, wf_err *err);
/* CM_STAGED: binds the device and the stream (borrowed). */
wf_status cm_staged_init(cm_comm *c, int device, void *stream, wf_err *err);
/* bytes between device memory and host memory on c's stream, waited for. */
wf_status cm_staged_copy(cm_comm *c, void *dst, const void *src, size_t bytes, bool to_host,
                         wf_err *err);

#endif
