/* backend_load.c: the CUDA plug-in loader (backend.h's wk_backend_cuda_new, backend_load.h).
 *
 * What it is: the one place that opens libwanfarm_cuda.so, with dlopen(RTLD_NOW | RTLD_LOCAL),
 * once per process, and finds its entry points: wk_cuda_plugin_new (kernels/cuda/cuda_backend.cu,
 * the backend) and wk_cuda_query (kernels/cuda/device.cu, device discovery). Nothing else in a
 * program links cudart, cuBLASLt, cuDNN or NCCL, so a CPU run loads none of them. The plug-in is
 * looked for, in this order:
 *   1. $WANFARM_CUDA_PLUGIN, when set and not empty (that file only);
 *   2. beside the running executable (/proc/self/exe's folder), then in its ../lib/ (an install:
 *      bin/wanfarm, lib/libwanfarm_cuda.so), then in its ../ (the build tree: the plug-in is
 *      written to the build root, the programs one folder down: worker/, tests/, bench/);
 *   3. the plain name (LD_LIBRARY_PATH, the executable's RUNPATH, the linker cache).
 * The first file that exists in 1-2 is the one: if it cannot be loaded, its loader error is the
 * answer (a missing cuDNN, say), not a quiet fall-through to another copy. The handle stays open
 * for the process's lifetime: backends made by the plug-in point into its code.
 * What it is not: the backend; and no device check of its own beyond the runtime's device count
 * (the plug-in checks the device it is given).
 * Tested by: tests/test_backend_load.c (no CUDA library mapped by a CPU run; the refusals) and
 * tests/test_backend_ops.c (the CUDA backend, opened here, on a GPU machine).
 */
#include "backend.h"
#include "backend_load.h"

#include <stdio.h>
#include <string.h>

#define WK_PLUGIN_FILE "libwanfarm_cuda.so"

static wf_status check_args(wk_backend **out, int device, wk_precision precision, wf_err *err) {
    if (!out)
        return wf_fail(err, WF_EINVAL, "wk_backend_cuda_new: argument out is NULL; expected where "
                       "to put the backend");
    *out = NULL;
    if (device < 0)
        return wf_fail(err, WF_EINVAL, "wk_backend_cuda_new: argument device is %d; expected a "
                       "CUDA device index >= 0", device);
    if (precision != WK_PREC_FP32 && precision != WK_PREC_BF16)
        return wf_fail(err, WF_EINVAL, "wk_backend_cuda_new: argument precision is %d; expected "
                       "WK_PREC_FP32 or WK_PREC_BF16", (int)precision);
    return WF_OK;
}

#ifdef WANFARM_HAVE_CUDA

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

typedef wf_status (*plugin_new_fn)(wk_backend **out, int device, wk_precision precision,
                                   wf_err *err);
typedef int (*query_fn)(wk_cuda_info *info, wk_cuda_device *devs, int max);

static struct {
    pthread_once_t once;
    void *handle;            /* never closed */
    plugin_new_fn make;
    query_fn query;
    char path[PATH_MAX];     /* the file that was loaded */
    char why[WF_ERR_MSG];    /* when handle is NULL: why, and what to do */
} g_plugin = {.once = PTHREAD_ONCE_INIT};

bool wk_cuda_built(void) { return true; }

const char *wk_cuda_plugin_path(void) { return g_plugin.handle ? g_plugin.path : ""; }

/* g_plugin.why = the formatted reason (truncated to fit). */
static void set_why(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_why(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_plugin.why, sizeof g_plugin.why, fmt, ap);
    va_end(ap);
}

/* The running executable's folder (no trailing slash); false when /proc cannot say. */
static bool exe_dir(char *dir, size_t cap) {
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return false;
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    if (!slash) return false;
    *slash = 0;
    int w = snprintf(dir, cap, "%s", buf[0] ? buf : "/");
    return w > 0 && (size_t)w < cap;
}

/* One entry point of the plug-in h, or NULL with the loader's words in e. */
static void *entry(void *h, const char *name, char *e, size_t cap) {
    dlerror();
    void *f = dlsym(h, name);
    if (!f) {
        const char *d = dlerror();
        snprintf(e, cap, "%s", d ? d : "no such symbol");
    }
    return f;
}

/* Opens `path` (a file name, or the plain name for the search path) and resolves the entry
 * points. On failure: false, nothing kept, and either the loader's own words in e (the file or
 * one of its libraries would not load) or, for a plug-in without the entry points, g_plugin.why
 * set and e empty. */
static bool open_file(const char *path, char *e, size_t cap) {
    dlerror();
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *d = dlerror();
        snprintf(e, cap, "%s", d ? d : "unknown loader error");
        return false;
    }
    plugin_new_fn make = (plugin_new_fn)(uintptr_t)entry(h, "wk_cuda_plugin_new", e, cap);
    query_fn query = make ? (query_fn)(uintptr_t)entry(h, "wk_cuda_query", e, cap) : NULL;
    if (!make || !query) {
        set_why("the CUDA plug-in %s lacks %s (%s): it is not from this wanfarm; rebuild the "
                "target wanfarm_cuda", path, !make ? "wk_cuda_plugin_new" : "wk_cuda_query", e);
        e[0] = 0;
        dlclose(h);
        return false;
    }
    /* where it really came from, for the log and `wanfarm devices` */
    Dl_info di;
    const char *from = dladdr((void *)(uintptr_t)make, &di) && di.dli_fname ? di.dli_fname : path;
    snprintf(g_plugin.path, sizeof g_plugin.path, "%s", from);
    g_plugin.make = make;
    g_plugin.query = query;
    g_plugin.handle = h;
    return true;
}

/* g_plugin.why for a plug-in file that exists but would not load (unless open_file said why). */
static void why_not_loaded(const char *path, const char *e) {
    if (!e[0]) return;
    set_why("cannot load the CUDA plug-in %s: %s; its libraries (cudart, cuBLASLt, cuDNN 9, "
            "NCCL) must be where it was linked against them or on LD_LIBRARY_PATH", path, e);
}

/* pthread_once body: the search of the head comment. */
static void open_plugin(void) {
    char e[WF_ERR_MSG / 2];
    const char *env = getenv("WANFARM_CUDA_PLUGIN");
    if (env && *env) {
        if (access(env, F_OK) != 0)
            set_why("WANFARM_CUDA_PLUGIN=%s: no such file; point it at libwanfarm_cuda.so or "
                    "unset it to look beside the program", env);
        else if (!open_file(env, e, sizeof e))
            why_not_loaded(env, e);
        return;
    }
    char dir[PATH_MAX], path[PATH_MAX + 64];
    static const char *const rel[] = {"", "/../lib", "/.."};
    bool have_dir = exe_dir(dir, sizeof dir);
    for (size_t i = 0; have_dir && i < sizeof rel / sizeof rel[0]; i++) {
        int w = snprintf(path, sizeof path, "%s%s/" WK_PLUGIN_FILE, dir, rel[i]);
        if (w > 0 && (size_t)w < sizeof path && access(path, F_OK) == 0) {
            if (!open_file(path, e, sizeof e)) why_not_loaded(path, e);
            return;
        }
    }
    if (open_file(WK_PLUGIN_FILE, e, sizeof e)) return;
    /* the loader names the file it could not open: the plug-in itself, or one it needs */
    if (strncmp(e, WK_PLUGIN_FILE ":", sizeof WK_PLUGIN_FILE) == 0)
        set_why("the CUDA plug-in " WK_PLUGIN_FILE " is not beside %s, in its ../lib/ or ../, "
                "nor on the library search path; build the target wanfarm_cuda (part of `all` in "
                "a CUDA build) or set WANFARM_CUDA_PLUGIN to its path",
                have_dir ? dir : "the program");
    else
        why_not_loaded(WK_PLUGIN_FILE, e);
}

static wf_status plugin_ready(wf_err *err) {
    pthread_once(&g_plugin.once, open_plugin);
    if (!g_plugin.handle) return wf_fail(err, WF_EUNSUPPORTED, "%s", g_plugin.why);
    return WF_OK;
}

wf_status wk_cuda_devices(wk_cuda_info *info, wk_cuda_device *devs, int max, wf_err *err) {
    if (!info || (max > 0 && !devs))
        return wf_fail(err, WF_EINVAL, "wk_cuda_devices: argument %s is NULL; expected a place "
                       "for the answer", !info ? "info" : "devs");
    wf_status st = plugin_ready(err);
    if (st) return st;
    if (g_plugin.query(info, devs, max < 0 ? 0 : max) != 0)
        return wf_fail(err, WF_ECUDA, "wk_cuda_devices: the CUDA device query of %s failed",
                       g_plugin.path);
    return WF_OK;
}

wf_status wk_backend_cuda_new(wk_backend **out, int device, wk_precision precision, wf_err *err) {
    wf_status st = check_args(out, device, precision, err);
    if (st) return st;
    if ((st = plugin_ready(err))) return st;
    /* the device count only (max 0): no context is made on any device here */
    wk_cuda_info info;
    if (g_plugin.query(&info, NULL, 0) != 0)
        return wf_fail(err, WF_ECUDA, "CUDA backend: the device query of %s failed",
                       g_plugin.path);
    if (info.n_devices <= 0)
        return wf_fail(err, WF_EUNSUPPORTED, "no CUDA device: %s (the CPU backend needs none: "
                       "--device cpu)", info.why);
    if (device >= info.n_devices)
        return wf_fail(err, WF_EUNSUPPORTED, "CUDA device %d: the runtime sees %d device%s "
                       "(0..%d); check CUDA_VISIBLE_DEVICES", device, info.n_devices,
                       info.n_devices == 1 ? "" : "s", info.n_devices - 1);
    st = g_plugin.make(out, device, precision, err);
    if (st) *out = NULL;
    return st;
}

#else /* no CUDA in this build */

#define WK_NO_CUDA "this wanfarm was built without CUDA: reconfigure with -DWANFARM_CUDA=ON " \
                   "(needs nvcc, cuBLASLt, cuDNN 9 and NCCL) and rebuild"

bool wk_cuda_built(void) { return false; }

const char *wk_cuda_plugin_path(void) { return ""; }

wf_status wk_cuda_devices(wk_cuda_info *info, wk_cuda_device *devs, int max, wf_err *err) {
    (void)info, (void)devs, (void)max;
    return wf_fail(err, WF_EUNSUPPORTED, "%s", WK_NO_CUDA);
}

wf_status wk_backend_cuda_new(wk_backend **out, int device, wk_precision precision, wf_err *err) {
    wf_status st = check_args(out, device, precision, err);
    if (st) return st;
    return wf_fail(err, WF_EUNSUPPORTED, "CUDA backend: %s", WK_NO_CUDA);
}

#endif
