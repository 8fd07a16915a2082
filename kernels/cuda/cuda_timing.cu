/* cuda_timing.cu: per-op device timing of the CUDA backend (the time_enable, time_mark and
 * time_take ops; semantics in backend.h's wk_timing_*).
 *
 * What it is: a pool of CUDA event pairs made by the first time_enable (before a loop, so that
 * a step creates none; kept until the backend is destroyed); each timed op records the pair's first event before it and the second after
 * it on the backend's stream, with its category; time_take waits for the last event, adds each
 * pair's elapsed time to its category and starts over. A step that times more ops than the pool
 * holds (WK_CUDA_TIME_PAIRS) stops recording and says so once on stderr; the sums then cover
 * the ops recorded. Events are created with default flags (timing on, no blocking sync).
 * What it is not: a profiler (Nsight Systems shows each kernel); the gaps between ops (host
 * launch overhead) are in no category.
 * Tested by: tests/test_gpu_pipeline.c (the categories of a step add up to at most its wall time
 * and to most of it) on a GPU machine; the CPU's host-clock path by tests/test_pipeline.c.
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_internal.h"

#define WK_CUDA_TIME_PAIRS 16384 /* ops one step may time: a 40-block DiT step with CFG ~2500 */

struct wk_cuda_timing {
    cudaEvent_t *ev;   /* [2 WK_CUDA_TIME_PAIRS] */
    unsigned char *cat;/* [WK_CUDA_TIME_PAIRS] */
    int n_ev;          /* events created (2 per pair) */
    int used;          /* pairs recorded since the last take */
    int open;          /* a pair begun, not yet ended */
    bool overflow_said;
};

extern "C" void wk_cuda_timing_free(wk_cuda *c) {
    wk_cuda_timing *t = c->timing;
    if (!t) return;
    for (int i = 0; i < t->n_ev; i++) cudaEventDestroy(t->ev[i]);
    free(t->ev);
    free(t->cat);
    free(t);
    c->timing = NULL;
}

extern "C" wf_status wk_cuda_time_enable(wk_backend *be, bool on, wf_err *err) {
    wk_cuda *c = wk_cuda_of(be);
    if (!on) return WF_OK; /* the pool stays for the next loop, freed with the backend */
    if (c->timing) {
        c->timing->used = c->timing->open = 0;
        return WF_OK;
    }
    wk_cuda_timing *t = (wk_cuda_timing *)calloc(1, sizeof *t);
    if (t) {
        t->ev = (cudaEvent_t *)calloc(2 * WK_CUDA_TIME_PAIRS, sizeof *t->ev);
        t->cat = (unsigned char *)calloc(WK_CUDA_TIME_PAIRS, 1);
    }
    c->timing = t;
    if (!t || !t->ev || !t->cat) {
        wk_cuda_timing_free(c);
        return wf_fail(err, WF_ENOMEM, "cuda timing: out of host memory for the event pool");
    }
    for (; t->n_ev < 2 * WK_CUDA_TIME_PAIRS; t->n_ev++) {
        cudaError_t e = cudaEventCreate(&t->ev[t->n_ev]);
        if (e != cudaSuccess) {
            wk_cuda_timing_free(c);
            return wk_cuda_fail(err, e, "cuda timing: cudaEventCreate");
        }
    }
    return WF_OK;
}

extern "C" void wk_cuda_time_mark(wk_backend *be, int cat, int begin) {
    wk_cuda *c = wk_cuda_of(be);
    wk_cuda_timing *t = c->timing;
    if (!t) return;
    if (begin) {
        if (t->used >= WK_CUDA_TIME_PAIRS) {
            if (!t->overflow_said)
                fprintf(stderr, "wanfarm cuda: timing: more than %d ops in a step; the rest are "
                        "not timed\n", WK_CUDA_TIME_PAIRS);
            t->overflow_said = true;
            return;
        }
        t->cat[t->used] = (unsigned char)cat;
        cudaEventRecord(t->ev[2 * t->used], c->stream);
        t->open = 1;
    } else if (t->open) {
        cudaEventRecord(t->ev[2 * t->used + 1], c->stream);
        t->used++;
        t->open = 0;
    }
}

extern "C" wf_status wk_cuda_time_take(wk_backend *be, double *secs, wf_err *err) {
    wk_cuda *c = wk_cuda_of(be);
    wk_cuda_timing *t = c->timing;
    if (!t || !t->used) return WF_OK;
    cudaError_t e = cudaEventSynchronize(t->ev[2 * t->used - 1]);
    for (int k = 0; e == cudaSuccess && k < t->used; k++) {
        float ms = 0;
        e = cudaEventElapsedTime(&ms, t->ev[2 * k], t->ev[2 * k + 1]);
        if (e == cudaSuccess && t->cat[k] < WK_T_NCATS) secs[t->cat[k]] += 1e-3 * (double)ms;
    }
    t->used = t->open = 0;
    return e == cudaSuccess ? WF_OK : wk_cuda_fail(err, e, "cuda timing: reading the events");
}
