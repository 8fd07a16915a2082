/* test_backend_load.c: the CUDA plug-in loader (kernels/backend_load.c) and the promise behind it:
 * a CPU run maps no CUDA library.
 *
 * What it is: with /proc/self/maps as the witness,
 *   - at start, and after the CPU backend has made and run a matmul, no libcudart, libcublas(Lt),
 *     libcudnn or libnccl is mapped (this program links wk only);
 *   - wk_backend_cuda_new refuses bad arguments (NULL out, device -1, an unknown precision) with
 *     WF_EINVAL, before loading anything;
 *   - then it is asked for device 0: in a build without CUDA it says WF_EUNSUPPORTED "built without
 *     CUDA"; in a CUDA build it either makes the backend (a GPU machine: then it is destroyed) or
 *     says WF_EUNSUPPORTED with the reason ("no CUDA device: ..." where the plug-in loads but the
 *     runtime has no device; the plug-in's loader error otherwise), and wk_cuda_devices agrees;
 *   - a second call gives the same answer (the plug-in is opened once);
 *   - --expect-missing PATH (run with WANFARM_CUDA_PLUGIN=PATH, a file that does not exist): the
 *     answer names the variable and the path, and still no CUDA library is mapped.
 * What it is not: a test of the backend's ops (tests/test_backend_ops.c).
 * Run: test_backend_load [--expect-missing PATH]   (exit 0 when every check holds)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_load.h"
#include "test_util.h"

/* The first CUDA library mapped into this process (its maps line), or NULL. */
static const char *cuda_mapped(char *line, size_t cap) {
    static const char *const libs[] = {"libcudart", "libcublas", "libcudnn", "libnccl"};
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return NULL;
    const char *hit = NULL;
    while (!hit && fgets(line, (int)cap, f))
        for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++)
            if (strstr(line, libs[i])) hit = line;
    fclose(f);
    return hit;
}

static void check_no_cuda(const char *when) {
    char line[1024];
    const char *m = cuda_mapped(line, sizeof line);
    TU_CHECK(m == NULL, "%s: a CUDA library is mapped: %s", when, m ? m : "");
}

/* A small matmul on the CPU backend: y[2, 3] = x[2, 4] . w[3, 4]^T. */
static void run_cpu(void) {
    wk_backend *be = NULL;
    wf_err err;
    wf_status st = wk_backend_cpu_new(&be, 1, &err);
    TU_CHECK(st == WF_OK, "wk_backend_cpu_new: %s", err.msg);
    if (st) return;
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, w[12] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0}, y[6];
    wk_tensor tx = wk_tensor_2d(WK_F32, x, 2, 4), tw = wk_tensor_2d(WK_F32, w, 3, 4),
              ty = wk_tensor_2d(WK_F32, y, 2, 3);
    st = wk_matmul(be, &ty, &tx, &tw, NULL, &err);
    TU_CHECK(st == WF_OK && y[0] == 1 && y[2] == 3 && y[5] == 7, "cpu matmul: %s",
             st ? err.msg : "wrong values");
    wk_backend_destroy(&be);
}

static void check_bad_args(void) {
    wk_backend *be = (wk_backend *)&be; /* not NULL: the call must clear it */
    wf_err err;
    TU_CHECK(wk_backend_cuda_new(NULL, 0, WK_PREC_FP32, &err) == WF_EINVAL &&
                 strstr(err.msg, "argument out"), "NULL out: %s", err.msg);
    TU_CHECK(wk_backend_cuda_new(&be, -1, WK_PREC_FP32, &err) == WF_EINVAL && !be &&
                 strstr(err.msg, "argument device is -1"), "device -1: %s", err.msg);
    TU_CHECK(wk_backend_cuda_new(&be, 0, (wk_precision)7, &err) == WF_EINVAL &&
                 strstr(err.msg, "argument precision is 7"), "precision 7: %s", err.msg);
}

static char g_refusal[WF_ERR_MSG]; /* check_device0's answer, for check_devices */

/* Device 0, twice; returns whether a backend was made. */
static bool check_device0(const char *want) {
    wk_backend *be = NULL;
    wf_err err, err2;
    wf_status st = wk_backend_cuda_new(&be, 0, WK_PREC_FP32, &err);
    printf("wk_backend_cuda_new(0): %s%s%s\n", wf_status_str(st), st ? ": " : "",
           st ? err.msg : (be ? be->name : "?"));
    if (st == WF_OK) {
        TU_CHECK(be && be->device == WK_DEV_CUDA && !want, "a backend, %s", want ? want : "");
        wk_backend_destroy(&be);
        return true;
    }
    TU_CHECK(st == WF_EUNSUPPORTED && !be, "want WF_EUNSUPPORTED and no backend, got %s",
             wf_status_str(st));
    snprintf(g_refusal, sizeof g_refusal, "%s", err.msg);
    if (want) TU_CHECK(strstr(err.msg, want) != NULL, "want '%s' in '%s'", want, err.msg);
    wf_status st2 = wk_backend_cuda_new(&be, 0, WK_PREC_BF16, &err2);
    TU_CHECK(st2 == st && !strcmp(err.msg, err2.msg), "second call: %s / %s", err.msg, err2.msg);
    return false;
}

static void check_devices(bool made) {
    wk_cuda_info info;
    wk_cuda_device devs[8];
    wf_err err;
    wf_status st = wk_cuda_devices(&info, devs, 8, &err);
    if (!wk_cuda_built()) {
        TU_CHECK(st == WF_EUNSUPPORTED && strstr(err.msg, "built without CUDA"), "%s", err.msg);
        return;
    }
    if (st == WF_OK) {
        printf("plug-in %s: %d device(s)%s%s\n", wk_cuda_plugin_path(), info.n_devices,
               info.n_devices <= 0 ? ": " : "", info.n_devices <= 0 ? info.why : "");
        TU_CHECK(made == (info.n_devices > 0), "backend %s but %d devices", made ? "made" : "not",
                 info.n_devices);
        TU_CHECK(*wk_cuda_plugin_path(), "no plug-in path after a load");
        if (info.n_devices <= 0)
            TU_CHECK(strstr(g_refusal, "no CUDA device: ") != NULL, "the plug-in loads and sees no "
                     "device, but the backend's refusal was '%s'", g_refusal);
    } else {
        TU_CHECK(st == WF_EUNSUPPORTED && !made, "wk_cuda_devices: %s", err.msg);
    }
}

int main(int argc, char **argv) {
    const char *missing = argc == 3 && !strcmp(argv[1], "--expect-missing") ? argv[2] : NULL;
    if (argc != 1 && !missing) {
        fprintf(stderr, "usage: test_backend_load [--expect-missing PATH]\n");
        return 2;
    }
    check_no_cuda("at start");
    run_cpu();
    check_no_cuda("after a CPU matmul");
    check_bad_args();
    check_no_cuda("after the argument checks");
    char want[600];
    if (!wk_cuda_built()) snprintf(want, sizeof want, "built without CUDA");
    else if (missing) snprintf(want, sizeof want, "WANFARM_CUDA_PLUGIN=%s: no such file", missing);
    bool made = check_device0(wk_cuda_built() && !missing ? NULL : want);
    if (missing || !wk_cuda_built()) check_no_cuda("after the refusal");
    check_devices(made);
    printf("test_backend_load: %s (%d failures)\n", tu_failures ? "FAILED" : "OK", tu_failures);
    return tu_failures ? 1 : 0;
}
