/* device.h: CUDA device discovery (prefix wk_cuda_), callable from C.
 *
 * What it is: the first piece of the CUDA backend: it asks the CUDA runtime, cuBLASLt and NCCL
 * what this process can use, so `wanfarm devices` and the rank -> GPU binding can say
 * precisely why a GPU is or is not usable. It never links libcuda (only cudart), so the binary
 * loads on machines without a driver and reports "no driver" instead of failing to start.
 * What it is not: the CUDA op backend (a later issue).
 * Tested by: tests/test_cli.sh runs `wanfarm devices`, which must succeed with or without a GPU.
 */
#ifndef WK_CUDA_DEVICE_H
#define WK_CUDA_DEVICE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wk_cuda_device {
    int index;
    char name[256];
    int cc_major, cc_minor;
    size_t total_mem, free_mem;
    int sm_count;
    char uuid[48]; /* "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi -L prints it:
                    * the physical device, whatever CUDA_VISIBLE_DEVICES renumbers */
    char pci[20];  /* "0000:3b:00.0" */
} wk_cuda_device;

typedef struct wk_cuda_info {
    int runtime_version, driver_version; /* 12040 = 12.4; driver 0 when none */
    int nccl_version;
    size_t cublaslt_version;
    int n_devices;                       /* -1 when the runtime could not be initialised */
    char why[256];                       /* when n_devices <= 0: the runtime's reason */
} wk_cuda_info;

/* Fills info and up to max devices. Returns 0 when the runtime answered (even with 0 devices),
 * non-zero only on a bug-level failure. */
int wk_cuda_query(wk_cuda_info *info, wk_cuda_device *devs, int max);

#ifdef __cplusplus
}
#endif
#endif
