/* bind.c: which GPU each rank of a world computes on (cm_bind_gpu, comm.h).
 *
 * What it is: the node's ranks are found with MPI_COMM_TYPE_SHARED (the MPI library's own notion
 * of "same host", which agrees with SLURM_LOCALID and OMPI_COMM_WORLD_LOCAL_RANK); a rank takes
 * the visible device local_rank % n_visible, which is its own device under both ways a launcher
 * exposes GPUs: every GPU visible to every task (local rank r takes device r), or one per task
 * (Slurm's --gpus-per-task / --gpu-bind: each sees one device, index 0, a different one). The
 * physical identity of the chosen devices (their UUIDs) is then gathered over the node, so a rank
 * that would share a GPU with another is found however the devices were renumbered; unless
 * sharing is allowed (tests on a one-GPU machine), every rank of the world fails with the same
 * message, naming the ranks, the host, the GPU and the fix.
 * What it is not: device discovery (the caller gives the visible devices' UUIDs, from the CUDA
 * plug-in), nor the creation of the backend on the device.
 * Tested by: tests/test_comm.c under mpirun (np 1..4): the choice and the sharing rule with the
 * UUIDs of imagined GPUs (one per task, fewer than the ranks, sharing allowed), the refusal on
 * every rank, a rank that sees none.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"

int cm_bind_pick(int local_rank, int n_visible) {
    return n_visible > 0 && local_rank >= 0 ? local_rank % n_visible : -1;
}

/* This rank's part: its node rank and size, and the device it picks (or why it cannot). */
static wf_status bind_local(cm_comm *world, int n_visible, const char (*uuids)[CM_GPU_ID_LEN],
                            cm_gpu_binding *b, MPI_Comm *node, wf_err *err) {
    int rc = MPI_Comm_split_type(world->mpi, MPI_COMM_TYPE_SHARED, world->rank, MPI_INFO_NULL,
                                 node);
    if (rc != MPI_SUCCESS) {
        *node = MPI_COMM_NULL;
        return wf_fail(err, WF_EMPI, "GPU binding: MPI_Comm_split_type failed (%d)", rc);
    }
    MPI_Comm_rank(*node, &b->local_rank);
    MPI_Comm_size(*node, &b->local_size);
    b->device = cm_bind_pick(b->local_rank, n_visible);
    if (b->device < 0) {
        const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
        return wf_fail(err, WF_EUNSUPPORTED,
                       "rank %d (local rank %d on %s) sees no GPU (CUDA_VISIBLE_DEVICES=%s): give "
                       "every task a GPU (srun --gpus-per-task=1, or one rank per GPU with "
                       "mpirun), or run on the CPU (--device cpu)",
                       world->rank, b->local_rank, b->host, cvd ? cvd : "(unset)");
    }
    snprintf(b->uuid, sizeof b->uuid, "%s", uuids[b->device]);
    return WF_OK;
}

/* What each rank of the node chose: its world rank and its GPU's id ("" when it has none). */
typedef struct bind_rec {
    int world;
    char id[CM_GPU_ID_LEN];
} bind_rec;

/* Two ranks of the node on one GPU: the message (every rank of the node holds the same table,
 * so every one of them finds the same pair). */
static wf_status bind_check_shared(const cm_gpu_binding *b, const bind_rec *all, wf_err *err) {
    for (int i = 1; i < b->local_size; i++)
        for (int j = 0; j < i; j++)
            if (all[i].id[0] && !strncmp(all[i].id, all[j].id, CM_GPU_ID_LEN))
                return wf_fail(err, WF_EINVAL,
                               "ranks %d and %d on %s would share GPU %s (%d ranks on this node, "
                               "one GPU per rank): start at most as many ranks per node as it "
                               "has GPUs (or give each task its own: srun --gpus-per-task=1), or "
                               "set WANFARM_SHARE_GPU=1 to let ranks share a device (for tests)",
                               all[j].world, all[i].world, b->host, all[i].id, b->local_size);
    return WF_OK;
}

wf_status cm_bind_gpu(cm_comm *world, int n_visible, const char (*uuids)[CM_GPU_ID_LEN],
                      bool allow_share, cm_gpu_binding *out, wf_err *err) {
    memset(out, 0, sizeof *out);
    out->device = -1;
    if (gethostname(out->host, sizeof out->host - 1)) snprintf(out->host, sizeof out->host, "?");
    MPI_Comm node = MPI_COMM_NULL;
    wf_status st = bind_local(world, n_visible, uuids, out, &node, err);
    if (node != MPI_COMM_NULL) {
        /* every rank of the node takes part in the gather, a failed one with an empty id */
        bind_rec mine, *all = calloc((size_t)out->local_size, sizeof *all);
        WF_ASSERT(all); /* a record per rank of the node: a few KiB at most */
        memset(&mine, 0, sizeof mine);
        mine.world = world->rank;
        if (!st) snprintf(mine.id, sizeof mine.id, "%s", out->uuid);
        int rc = MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE,
                               node);
        if (!st && rc != MPI_SUCCESS)
            st = wf_fail(err, WF_EMPI, "GPU binding: gathering the node's GPUs failed (%d)", rc);
        if (!st && !allow_share) st = bind_check_shared(out, all, err);
        free(all);
        MPI_Comm_free(&node);
    }
    return cm_agree(world, st, "GPU binding", err);
}

bool cm_bind_share_allowed(void) {
    const char *v = getenv("WANFARM_SHARE_GPU");
    return v && !strcmp(v, "1");
}
