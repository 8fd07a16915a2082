/* comm_nccl_none.c: the NCCL backend in builds without CUDA (see comm_nccl.h): it refuses. */
#include "comm_nccl.h"

wf_status cm_nccl_init(cm_comm *c, int device, void *stream, wf_err *err) {
    (void)device, (void)stream;
    return wf_fail(err, WF_EUNSUPPORTED,
                   "communicator '%s': NCCL needs a CUDA build of wanfarm (configure with "
                   "-DWANFARM_CUDA=ON on a machine with the CUDA toolkit and NCCL)",
                   c->name);
}
void cm_nccl_destroy(cm_comm *c) { (void)c; }
#define UNREACHABLE(...)                                                                          \
    do {                                                                                          \
        (void)c;                                                                                  \
        return wf_fail(err, WF_EUNSUPPORTED, "NCCL is not in this build");                        \
    } while (0)
wf_status cm_nccl_alltoall(cm_comm *c, const void *s, void *r, size_t b, wf_err *err) {
    (void)s, (void)r, (void)b;
    UNREACHABLE();
}
wf_status cm_nccl_ialltoall(cm_comm *c, const void *s, void *r, size_t b, int *slot,
                            wf_err *err) {
    (void)s, (void)r, (void)b, (void)slot;
    UNREACHABLE();
}
wf_status cm_nccl_wait(cm_comm *c, int slot, wf_err *err) {
    (void)slot;
    UNREACHABLE();
}
wf_status cm_nccl_settle(cm_comm *c, double *seconds, wf_err *err) {
    (void)seconds;
    UNREACHABLE();
}
wf_status cm_nccl_allgather(cm_comm *c, const void *s, void *r, size_t b, wf_err *err) {
    (void)s, (void)r, (void)b;
    UNREACHABLE();
}
wf_status cm_nccl_allgatherv(cm_comm *c, const void *s, void *r, const size_t *n, wf_err *err) {
    (void)s, (void)r, (void)n;
    UNREACHABLE();
}
wf_status cm_nccl_sendrecv(cm_comm *c, const void *s, size_t sb, int d, void *r, size_t rb, int src,
                           wf_err *err) {
    (void)s, (void)sb, (void)d, (void)r, (void)rb, (void)src;
    UNREACHABLE();
}
wf_status cm_nccl_bcast(cm_comm *c, void *b, size_t n, int root, wf_err *err) {
    (void)b, (void)n, (void)root;
    UNREACHABLE();
}
int cm_nccl_shared_gpu(cm_comm *c, int device, wf_err *err) {
    (void)device;
    wf_fail(err, WF_EUNSUPPORTED, "communicator '%s': device buffers need a CUDA build", c->name);
    return -1;
}
wf_status cm_staged_init(cm_comm *c, int device, void *stream, wf_err *err) {
    (void)device, (void)stream;
    return wf_fail(err, WF_EUNSUPPORTED, "communicator '%s': device buffers need a CUDA build",
                   c->name);
}
wf_status cm_staged_copy(cm_comm *c, void *dst, const void *src, size_t bytes, bool to_host,
                         wf_err *err) {
    (void)dst, (void)src, (void)bytes, (void)to_host;
    UNREACHABLE();
}
