/* cmd_devices.c: `wanfarm devices`: what GPUs this process can use, and why not when none.
 * The answer comes from the CUDA plug-in (backend_load.h's wk_cuda_devices): this program links
 * no CUDA library, so without the plug-in (or its libraries) it says that, and still succeeds.
 * Tested by: tests/test_cli.sh.
 */
#include <stdio.h>
#include <string.h>

#include "backend_load.h"
#include "cmds.h"

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
        printf("  %d: %s, sm_%d%d, %d SMs, %.1f GiB (%.1f GiB free)\n", devs[i].index,
               devs[i].name, devs[i].cc_major, devs[i].cc_minor, devs[i].sm_count,
               (double)devs[i].total_mem / (1 << 30), (double)devs[i].free_mem / (1 << 30));
}

int cmd_devices(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: wanfarm devices\n\nLists the CUDA devices this process sees, with the "
                   "CUDA runtime, driver, cuBLASLt and NCCL versions (through the CUDA plug-in, "
                   "libwanfarm_cuda.so).\nSucceeds (exit 0) when there is no GPU or no plug-in, "
                   "saying why.\n");
            return WF_EXIT_OK;
        }
        fprintf(stderr, "wanfarm devices: unexpected argument '%s'\n", argv[i]);
        return WF_EXIT_USAGE;
    }
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
