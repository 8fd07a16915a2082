/* gen_device.c: which backend `wanfarm generate` computes on (--device, --precision; gen.h).
 *
 * auto (the default) takes the first CUDA device when the plug-in loads and a device is usable,
 * else the CPU: silently where no NVIDIA driver is loaded (nothing is tried, no CUDA library is
 * loaded), with one line saying why where a driver is there but no device is usable. cuda[:N] insists: a missing plug-in, library or device is an
 * error naming the reason. The GPU computes in bf16 by default (fp32 accumulation and residual
 * stream) and in fp32 with --precision fp32 (no TF32: the mode that checks a GPU against the
 * CPU); the CPU always computes fp32, so --precision bf16 with --device cpu is refused.
 * Under MPI (gen_backend_ranks) every rank takes its own GPU (comm.h's cm_bind_gpu); auto runs on
 * GPUs only when every rank has one, else every rank on the CPU.
 * Tested by: tests/test_cli.sh (option errors; auto on a machine without a GPU equals cpu),
 * tests/test_dist.sh (the same under mpirun, and GPU ranks when the machine has a GPU).
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend_load.h"
#include "cmds.h"
#include "gen.h"

int gen_parse_device(const char *v, gen_opts *o) {
    if (!strcmp(v, "auto")) o->device = GEN_DEV_AUTO;
    else if (!strcmp(v, "cpu")) o->device = GEN_DEV_CPU;
    else if (!strcmp(v, "cuda")) o->device = GEN_DEV_CUDA, o->device_index = 0;
    else if (!strncmp(v, "cuda:", 5)) {
        int idx = 0;
        if (!cmd_parse_int(v + 5, 0, 1023, &idx)) {
            fprintf(stderr, PROG ": --device '%s': the device index must be 0..1023 (cuda:0 is "
                            "the first visible GPU)\n", v);
            return WF_EXIT_USAGE;
        }
        o->device = GEN_DEV_CUDA;
        o->device_index = idx;
    } else {
        fprintf(stderr, PROG ": --device '%s': use auto, cpu, cuda or cuda:N\n", v);
        return WF_EXIT_USAGE;
    }
    return WF_EXIT_OK;
}

int gen_parse_precision(const char *v, gen_opts *o) {
    if (!strcmp(v, "bf16")) o->precision = WK_PREC_BF16;
    else if (!strcmp(v, "fp32")) o->precision = WK_PREC_FP32;
    else {
        fprintf(stderr, PROG ": --precision '%s': use bf16 (GPU default) or fp32\n", v);
        return WF_EXIT_USAGE;
    }
    return WF_EXIT_OK;
}

/* The NVIDIA kernel driver is loaded (its proc file or a device node exists). */
static bool driver_present(void) {
    return access("/proc/driver/nvidia/version", F_OK) == 0 || access("/dev/nvidia0", F_OK) == 0 ||
           access("/dev/nvidiactl", F_OK) == 0;
}

wf_status gen_backend_new(const gen_opts *o, bool quiet, wk_backend **be, int *exit_code,
                          wf_err *err) {
    *be = NULL;
    *exit_code = WF_EXIT_FAIL;
    if (o->device == GEN_DEV_CPU && o->precision == WK_PREC_BF16) {
        *exit_code = WF_EXIT_USAGE;
        return wf_fail(err, WF_EINVAL, "--precision bf16 needs a GPU (--device cuda); the CPU "
                                       "backend computes fp32");
    }
    if (o->device == GEN_DEV_AUTO && !driver_present()) {
        /* no NVIDIA driver: nothing to try, the plug-in's libraries stay unloaded, and a CPU
         * machine's runs print what they always did */
        return wk_backend_cpu_new(be, (int)o->threads, err);
    }
    if (o->device != GEN_DEV_CPU) {
        wk_precision prec = o->precision >= 0 ? (wk_precision)o->precision : WK_PREC_BF16;
        wf_status st = wk_backend_cuda_new(be, o->device_index, prec, err);
        if (st == WF_OK) {
            if (!quiet)
                fprintf(stderr, PROG ": computing on cuda:%d, %s\n", o->device_index,
                        wk_precision_name(prec));
            return WF_OK;
        }
        if (o->device == GEN_DEV_CUDA || st != WF_EUNSUPPORTED) {
            wf_err_prefix(err, "--device cuda:%d: ", o->device_index);
            return st;
        }
        if (!quiet) fprintf(stderr, PROG ": no usable GPU (%s): computing on the CPU\n", err->msg);
        wf_err_clear(err);
        if (o->precision == WK_PREC_BF16 && !quiet)
            fprintf(stderr, PROG ": --precision bf16 does not apply to the CPU: computing fp32\n");
    }
    return wk_backend_cpu_new(be, (int)o->threads, err);
}

#define GEN_MAX_GPUS 64

/* The GPUs this rank can use (none on a machine without the driver under auto: nothing is
 * loaded), their UUIDs into ids; returns how many. */
static int visible_gpus(const gen_opts *o, wk_cuda_device *devs, char (*ids)[CM_GPU_ID_LEN]) {
    wk_cuda_info info;
    wf_err look = {0};
    int n = 0;
    memset(&info, 0, sizeof info);
    if ((o->device == GEN_DEV_CUDA || driver_present()) && wk_cuda_built() &&
        wk_cuda_devices(&info, devs, GEN_MAX_GPUS, &look) == WF_OK && info.n_devices > 0)
        n = info.n_devices < GEN_MAX_GPUS ? info.n_devices : GEN_MAX_GPUS;
    for (int k = 0; k < n; k++) snprintf(ids[k], CM_GPU_ID_LEN, "%s", devs[k].uuid);
    return n;
}

wf_status gen_backend_ranks(const gen_opts *o, cm_comm *world, bool quiet, wk_backend **be,
                            double *mem, int *exit_code, wf_err *err) {
    *be = NULL;
    *mem = 0;
    *exit_code = WF_EXIT_FAIL;
    if (o->device == GEN_DEV_CPU && o->precision == WK_PREC_BF16) {
        *exit_code = WF_EXIT_USAGE;
        return wf_fail(err, WF_EINVAL, "--precision bf16 needs GPUs (--device cuda); the CPU "
                                       "backend computes fp32");
    }
    if (o->device == GEN_DEV_CPU) return WF_OK;
    wk_cuda_device *devs = calloc(GEN_MAX_GPUS, sizeof *devs);
    char (*ids)[CM_GPU_ID_LEN] = calloc(GEN_MAX_GPUS, CM_GPU_ID_LEN);
    if (!devs || !ids) {
        free(devs);
        free(ids);
        return wf_fail(err, WF_ENOMEM, "out of memory");
    }
    int n = visible_gpus(o, devs, ids);
    int64_t fewest = n, most = n;
    wf_status st = cm_range(world, n, &fewest, &most, err);
    if (st) goto out;
    if (o->device == GEN_DEV_AUTO && fewest == 0) { /* some rank has none: all on the CPU */
        if (!quiet && most > 0) /* silent where no rank has one: a CPU machine as always */
            fprintf(stderr, PROG ": not every rank has a usable GPU: computing on the CPU\n");
        if (o->precision == WK_PREC_BF16) {
            *exit_code = WF_EXIT_USAGE;
            st = wf_fail(err, WF_EINVAL, "--precision bf16 needs GPUs on every rank; the CPU "
                                         "backend computes fp32");
        }
        goto out;
    }
    cm_gpu_binding b;
    if ((st = cm_bind_gpu(world, n, (const char (*)[CM_GPU_ID_LEN])ids, cm_bind_share_allowed(),
                          &b, err)))
        goto out;
    wk_precision prec = o->precision >= 0 ? (wk_precision)o->precision : WK_PREC_BF16;
    st = wk_backend_cuda_new(be, b.device, prec, err);
    if (st) wf_err_prefix(err, "rank %d, cuda:%d: ", world->rank, b.device);
    if ((st = cm_agree(world, st, "the GPU backend", err))) {
        wk_backend_destroy(be);
        goto out;
    }
    *mem = (double)devs[b.device].total_mem;
    if (!quiet) fprintf(stderr, PROG ": computing on %d GPU rank%s, %s\n", world->size,
                        world->size == 1 ? "" : "s", wk_precision_name(prec));
out:
    free(devs);
    free(ids);
    return st;
}
