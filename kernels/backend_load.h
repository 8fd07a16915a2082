/* backend_load.h: the CUDA plug-in loader's second entry point (prefix wk_), beside backend.h's
 * wk_backend_cuda_new.
 *
 * What it is: device discovery through the plug-in (libwanfarm_cuda.so's wk_cuda_query), so that
 * a program asks what GPUs there are without linking cudart, cuBLASLt or NCCL itself: the
 * libraries load only when this (or wk_backend_cuda_new) is called.
 * What it is not: the backend, nor the search rules (backend_load.c's head says where the
 * plug-in is looked for).
 * Tested by: tests/test_backend_load.c (no CUDA library in a CPU run; the refusals), and
 * tests/test_cli.sh through `wanfarm devices`.
 */
#ifndef WK_BACKEND_LOAD_H
#define WK_BACKEND_LOAD_H

#include <stdbool.h>

#include "cuda/device.h"
#include "status.h"

/* Fills info and up to max devices through the plug-in (see device.h: info->n_devices <= 0 with
 * info->why when the runtime has no usable device; that is still WF_OK). WF_EUNSUPPORTED, with
 * the reason and what to do, when this build has no CUDA or the plug-in cannot be loaded. */
wf_status wk_cuda_devices(wk_cuda_info *info, wk_cuda_device *devs, int max, wf_err *err);

/* The file the plug-in was loaded from ("" before a successful load). */
const char *wk_cuda_plugin_path(void);

/* Whether this build has the CUDA plug-in at all (configured with CUDA). */
bool wk_cuda_built(void);

#endif
