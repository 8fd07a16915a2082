/* cmd_devices.c: `wanfarm devices`: what GPUs this process can use, and why not when none. */
#include <stdio.h>
#include <string.h>

#include "cmds.h"
#ifdef WANFARM_HAVE_CUDA
#include "cuda/device.h"
#endif

int cmd_devices(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: wanfarm devices\n\nLists the CUDA devices this process sees, with the "
                   "CUDA runtime, driver, cuBLASLt and NCCL versions.\nSucceeds (exit 0) when "
                   "there is no GPU, saying why.\n");
            return WF_EXIT_OK;
        }
        fprintf(stderr, "wanfarm devices: unexpected argument '%s'\n", argv[i]);
        return WF_EXIT_USAGE;
    }
#ifdef WANFARM_HAVE_CUDA
    wk_cuda_info info;
    wk_cuda_device devs[64];
    if (wk_cuda_query(&info, devs, 64) != 0) {
        fprintf(stderr, "wanfarm devices: the CUDA query failed\n");
        return WF_EXIT_FAIL;
    }
    printf("cuda runtime %d.%d, driver %d.%d, cuBLASLt %zu, NCCL %d\n",
           info.runtime_version / 1000, info.runtime_version % 1000 / 10,
           info.driver_version / 1000, info.driver_version % 1000 / 10, info.cublaslt_version,
           info.nccl_version);
    if (info.n_devices <= 0) {
        printf("devices: none (%s); the CPU backend will be used\n", info.why);
        return WF_EXIT_OK;
    }
    printf("devices: %d\n", info.n_devices);
    for (int i = 0; i < info.n_devices && i < 64; i++)
        printf("  %d: %s, sm_%d%d, %d SMs, %.1f GiB (%.1f GiB free)\n", devs[i].index,
               devs[i].name, devs[i].cc_major, devs[i].cc_minor, devs[i].sm_count,
               (double)devs[i].total_mem / (1 << 30), (double)devs[i].free_mem / (1 << 30));
#else
    printf("devices: none (this wanfarm was built without CUDA: -DWANFARM_CUDA=OFF or no nvcc); "
           "the CPU backend will be used\n");
#endif
    return WF_EXIT_OK;
}
