/* cmd_devices.c: `wanfarm devices`: what GPUs this process can use, and why not when none.
 * The answer comes from the CUDA plug-in (backend_load.h's wk_cuda_devices): this program links
 * no CUDA library, so without the plug-in (or its libraries) it says that, and still succeeds.
 * Under mpirun or srun every rank also binds its GPU as a GPU run would (comm.h's cm_bind_gpu:
 * one physical GPU per rank, unless WANFARM_SHARE_GPU=1) and rank 0 prints one line per rank;
 * two ranks on one GPU make it fail (exit 1) with the fix, so that a batch script can check its
 * placement before a long run.
 * Tested by: tests/test_cli.sh, tests/test_dist.sh (under mpirun, without a GPU).
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_load.h"
#include "cmds.h"
#include "comm.h"
#include "gen.h"

#define MAX_DEVS 64

static void print_devices(const wk_cuda_info *info, const wk_cuda_device *devs) {
    printf("cuda runtime %d.%d, driver %d.%d, cuBLASLt %zu, NCCL %d\n",
           info->runtime_version / 1000, info->runtime_version % 1000 / 10,
           info->driver_version / 1000, info->driver_version % 1000 / 10, info->cublaslt_version,
           info->nccl_version);
    if (info->n_devices <= 0) {
        printf("devices: none (%s); the CPU backend will be used\n", info->why);
        return;
    }
    printf("devices: %d\n", info->n_devices);
    for (int i = 0; i < info->n_devices && i < MAX_DEVS; i++)
        printf("  %d: %s, sm_%d%d, %d SMs, %.1f GiB (%.1f GiB free), %s, pci %s\n", devs[i].index,
               devs[i].name, devs[i].cc_major, devs[i].cc_minor, devs[i].sm_count,
               (double)devs[i].total_mem / (1 << 30), (double)devs[i].free_mem / (1 << 30),
               devs[i].uuid, devs[i].pci);
}

/* What one process sees: the devices (n_visible < 0: the plug-in or runtime says why). */
typedef struct seen {
    wk_cuda_info info;
    wk_cuda_device devs[MAX_DEVS];
    int n;             /* usable devices, 0 when none */
    char why[WF_ERR_MSG];
} seen;

static void look(seen *s) {
    memset(s, 0, sizeof *s);
    wf_err err;
    if (!wk_cuda_built()) {
        snprintf(s->why, sizeof s->why, "this wanfarm was built without CUDA: -DWANFARM_CUDA=OFF "
                 "or no nvcc");
        return;
    }
    wf_status st = wk_cuda_devices(&s->info, s->devs, MAX_DEVS, &err);
    if (st) {
        snprintf(s->why, sizeof s->why, "%s", err.msg);
        return;
    }
    s->n = s->info.n_devices > 0 ? (s->info.n_devices < MAX_DEVS ? s->info.n_devices : MAX_DEVS)
                                 : 0;
    if (!s->n) snprintf(s->why, sizeof s->why, "%s", s->info.why);
}

/* Under a launcher: every rank binds; rank 0 prints a line per rank. */
static int devices_ranks(void) {
    int provided = 0, rank = 0, size = 1;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "wanfarm devices: MPI_Init failed\n");
        return WF_EXIT_FAIL;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    cm_comm *world = NULL;
    wf_err err = {0};
    int rc = WF_EXIT_OK;
    seen *s = malloc(sizeof *s);
    char (*ids)[CM_GPU_ID_LEN] = calloc(MAX_DEVS, CM_GPU_ID_LEN);
    char line[320], *lines = rank == 0 ? malloc((size_t)size * sizeof line) : NULL;
    if (!s || !ids || (rank == 0 && !lines) || cm_world(&world, &err)) {
        fprintf(stderr, "wanfarm devices: rank %d: %s\n", rank, err.msg[0] ? err.msg : "out of "
                "memory");
        MPI_Abort(MPI_COMM_WORLD, WF_EXIT_FAIL);
    }
    look(s);
    for (int k = 0; k < s->n; k++) snprintf(ids[k], CM_GPU_ID_LEN, "%s", s->devs[k].uuid);
    cm_gpu_binding b;
    wf_status st = cm_bind_gpu(world, s->n, (const char (*)[CM_GPU_ID_LEN])ids,
                               cm_bind_share_allowed(), &b, &err);
    if (rank == 0) print_devices(&s->info, s->devs);
    if (b.device >= 0)
        snprintf(line, sizeof line, "rank %d: %.63s local rank %d of %d -> cuda:%d %.96s (%.47s)",
                 rank, b.host, b.local_rank, b.local_size, b.device, s->devs[b.device].name,
                 b.uuid);
    else
        snprintf(line, sizeof line, "rank %d: %.63s local rank %d of %d -> no GPU (%.160s)", rank,
                 b.host, b.local_rank, b.local_size, s->n ? "binding failed" : s->why);
    MPI_Gather(line, (int)sizeof line, MPI_CHAR, lines, (int)sizeof line, MPI_CHAR, 0,
               MPI_COMM_WORLD);
    if (rank == 0) {
        printf("ranks: %d\n", size);
        for (int r = 0; r < size; r++) printf("  %s\n", lines + (size_t)r * sizeof line);
        if (st && s->n) { /* GPUs are there, the placement is wrong */
            fprintf(stderr, "wanfarm devices: %s\n", err.msg);
            rc = WF_EXIT_FAIL;
        } else if (st) {
            printf("GPU runs: not possible here (%s); the CPU backend will be used\n", err.msg);
        }
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    free(lines);
    free(ids);
    free(s);
    cm_free(&world);
    MPI_Finalize();
    return rc;
}

int cmd_devices(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: wanfarm devices\n\nLists the CUDA devices this process sees, with the "
                   "CUDA runtime, driver, cuBLASLt and NCCL versions (through the CUDA plug-in, "
                   "libwanfarm_cuda.so).\nSucceeds (exit 0) when there is no GPU or no plug-in, "
                   "saying why.\nUnder mpirun or srun every rank binds its GPU as a GPU run "
                   "does (one per rank; WANFARM_SHARE_GPU=1 lets ranks share one) and rank 0 "
                   "prints a line per rank; two ranks on one GPU fail (exit 1).\n");
            return WF_EXIT_OK;
        }
        fprintf(stderr, "wanfarm devices: unexpected argument '%s'\n", argv[i]);
        return WF_EXIT_USAGE;
    }
    if (gen_under_launcher()) return devices_ranks();
    if (!wk_cuda_built()) {
        printf("devices: none (this wanfarm was built without CUDA: -DWANFARM_CUDA=OFF or no "
               "nvcc); the CPU backend will be used\n");
        return WF_EXIT_OK;
    }
    wk_cuda_info info;
    wk_cuda_device devs[MAX_DEVS];
    wf_err err;
    wf_status st = wk_cuda_devices(&info, devs, MAX_DEVS, &err);
    if (st == WF_EUNSUPPORTED) {
        printf("devices: none (%s); the CPU backend will be used\n", err.msg);
        return WF_EXIT_OK;
    }
    if (st) {
        fprintf(stderr, "wanfarm devices: %s\n", err.msg);
        return WF_EXIT_FAIL;
    }
    print_devices(&info, devs);
    return WF_EXIT_OK;
}
