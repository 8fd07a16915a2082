/* gen_device.c: which backend `wanfarm generate` computes on (--device, --precision; gen.h).
 *
 * auto (the default) takes the first CUDA device when the plug-in loads and a device is usable,
 * else the CPU: silently where no NVIDIA driver is loaded (nothing is tried, no CUDA library is
 * loaded), with one line saying why where a driver is there but no device is usable. cuda[:N] insists: a missing plug-in, library or device is an
 * error naming the reason. The GPU computes in bf16 by default (fp32 accumulation and residual
 * stream) and in fp32 with --precision fp32 (no TF32: the mode that checks a GPU against the
 * CPU); the CPU always computes fp32, so --precision bf16 with --device cpu is refused.
 * Under MPI (several ranks) the GPU path is not wired yet: gen_dist.c refuses --device cuda.
 * Tested by: tests/test_cli.sh (option errors; auto on a machine without a GPU equals cpu).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
