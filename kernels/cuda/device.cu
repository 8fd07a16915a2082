/* device.cu: CUDA device discovery through cudart, cuBLASLt and NCCL (see device.h). */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <string.h>

#include "device.h"

extern "C" int wk_cuda_query(wk_cuda_info *info, wk_cuda_device *devs, int max) {
    memset(info, 0, sizeof *info);
    cudaRuntimeGetVersion(&info->runtime_version);
    cudaDriverGetVersion(&info->driver_version);
    ncclGetVersion(&info->nccl_version);
    info->cublaslt_version = cublasLtGetVersion();
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n); /* does not write n on failure */
    if (e != cudaSuccess) {
        info->n_devices = -1;
        snprintf(info->why, sizeof info->why, "%s: %s", cudaGetErrorName(e), cudaGetErrorString(e));
        cudaGetLastError(); /* clear the sticky-free error state */
        return 0;
    }
    info->n_devices = n;
    if (n == 0) snprintf(info->why, sizeof info->why, "the CUDA runtime sees no device");
    for (int i = 0; i < n && i < max; i++) {
        cudaDeviceProp p;
        wk_cuda_device *d = &devs[i];
        memset(d, 0, sizeof *d);
        d->index = i;
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
            snprintf(d->name, sizeof d->name, "(properties unavailable)");
            continue;
        }
        snprintf(d->name, sizeof d->name, "%s", p.name);
        d->cc_major = p.major;
        d->cc_minor = p.minor;
        d->total_mem = p.totalGlobalMem;
        d->sm_count = p.multiProcessorCount;
        const unsigned char *u = (const unsigned char *)p.uuid.bytes;
        snprintf(d->uuid, sizeof d->uuid,
                 "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
                 u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
                 u[14], u[15]);
        if (cudaDeviceGetPCIBusId(d->pci, (int)sizeof d->pci, i) != cudaSuccess) d->pci[0] = '\0';
        size_t fr = 0, tot = 0;
        if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&fr, &tot) == cudaSuccess)
            d->free_mem = fr;
    }
    return 0;
}
