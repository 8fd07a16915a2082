/* cuda_backend.cu: the CUDA plug-in's entry points, its op table, the wk_cuda state and the memory
 * ops (alloc, free, upload, download, copy, sync).
 *
 * What it is: wk_cuda_plugin_new (opened by kernels/backend_load.c with dlopen) checks the device
 * (runtime answer, compute capability >= 8.0), makes one non-blocking stream, the cuBLASLt handle
 * and its one 32 MiB workspace, the cuDNN handle (optional: without it the backend runs its own
 * kernels, dnn_why says why), two 32 MiB pinned bounce buffers, then the per-file caches
 * (gemm, conv, sdpa), and publishes the full op table. Every device allocation goes through
 * wk_cuda_malloc, which counts calls and live/peak bytes (wk_cuda_plugin_stats reads them: the op
 * test proves a steady-state step adds no cudaMalloc). Every upload goes through the pinned
 * buffers (the host bytes are copied there before upload returns, so the caller may reuse or free
 * its source at once: the runtime does not promise that for a pageable source): small ones are
 * packed one after another into the current buffer, large ones in chunks, double-buffered with
 * events, so that mmap'd checkpoint pages reach the device at full PCIe/NVLink-C2C speed; a buffer
 * is written by the host only after the event of its last transfer. Downloads larger than
 * WK_CUDA_BOUNCE_MIN come back the same way; every download returns when the bytes are there.
 * Environment: WANFARM_CUDA_LOG=1 (verbose: one line per new plan or shape),
 * WANFARM_CUDA_ATTN=own|cudnn|auto (forces an attention path, for the op test).
 * What it is not: the ops themselves (cuda_elementwise.cu, cuda_norm.cu, cuda_layout.cu,
 * cuda_matmul.cu, cuda_conv.cu, cuda_attention.cu, cuda_sdpa.c); a multi-device or multi-thread
 * backend (one device, one stream, one host thread at a time).
 * Tested by: tests/test_backend_ops.c (every op, CPU against CUDA, and the malloc counter) on a
 * GPU machine; compiled with -Werror everywhere (nvcc present, no GPU needed).
 */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_device.cuh"
#include "cuda_internal.h"

#define WK_CUDA_LT_WS_BYTES ((size_t)32 << 20)   /* cuBLASLt's workspace (Hopper: 32 MiB) */
#define WK_CUDA_BOUNCE_BYTES ((size_t)32 << 20)  /* each of the two pinned bounce buffers */
#define WK_CUDA_BOUNCE_MIN ((size_t)256 << 10)   /* smaller downloads go straight (pageable) */

/* One live device allocation (for bytes_live on free). */
typedef struct cuda_alloc {
    void *p;
    size_t bytes;
} cuda_alloc;

/* The backend's private state: wk_cuda first, so that be->impl (a wk_cuda *) is this too. */
typedef struct cuda_be {
    wk_cuda c;
    void *pin[2];          /* pinned host bounce buffers, WK_CUDA_BOUNCE_BYTES each */
    cudaEvent_t pin_ev[2]; /* recorded after the transfer that last used pin[i] */
    int pin_cur;           /* the buffer uploads are packed into now */
    size_t pin_off;        /* its bytes [pin_off, end) are free; [0, pin_off) may be in flight */
    cuda_alloc *allocs;    /* live device allocations */
    size_t n_allocs, cap_allocs;
    bool lt_ok, dnn_ok, gemm_ok, conv_ok, sdpa_ok; /* what destroy must release */
} cuda_be;

static cuda_be *cuda_be_of(wk_cuda *c) { return (cuda_be *)(void *)c; }

/* ---- helpers shared by the op files (cuda_internal.h) ---- */

extern "C" wf_status wk_cuda_fail(wf_err *err, cudaError_t e, const char *what) {
    return wf_fail(err, WF_ECUDA, "%s: %s: %s", what, cudaGetErrorName(e), cudaGetErrorString(e));
}

extern "C" wf_status wk_cuda_launched(wf_err *err, const char *op) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return WF_OK;
    char what[128];
    snprintf(what, sizeof what, "%s: kernel launch", op);
    return wk_cuda_fail(err, e, what);
}

extern "C" void wk_cuda_log(wk_cuda *c, const char *fmt, ...) {
    if (!c || !c->verbose) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "wanfarm cuda[%d]: %s\n", c->device, line);
}

extern "C" wf_status wk_cuda_check_dev(const wk_tensor *t, const char *op, const char *arg,
                                       wf_err *err) {
    if (t->device == WK_DEV_CUDA) return WF_OK;
    return wf_fail(err, WF_EINVAL,
                   "%s: %s%s%s is not CUDA device memory (device %d): the CUDA backend takes "
                   "tensors on its device (wk_arena_init_on, wk_backend_alloc + upload)",
                   op, arg, t->name ? " " : "", t->name ? t->name : "", (int)t->device);
}

extern "C" wf_status wk_cuda_check_act(const wk_tensor *t, const char *op, const char *arg,
                                       wf_err *err) {
    wf_status st = wk_cuda_check_dev(t, op, arg, err);
    if (st) return st;
    return wk_check_dtype(t, WK_F32, op, arg, err);
}

/* ---- counted device memory ---- */

static wf_status alloc_track(cuda_be *b, void *p, size_t bytes, wf_err *err) {
    if (b->n_allocs == b->cap_allocs) {
        size_t cap = b->cap_allocs ? 2 * b->cap_allocs : 64;
        cuda_alloc *n = (cuda_alloc *)realloc(b->allocs, cap * sizeof *n);
        if (!n) return wf_fail(err, WF_ENOMEM, "cuda memory: out of host memory for its table");
        b->allocs = n;
        b->cap_allocs = cap;
    }
    b->allocs[b->n_allocs].p = p;
    b->allocs[b->n_allocs].bytes = bytes;
    b->n_allocs++;
    return WF_OK;
}

extern "C" wf_status wk_cuda_malloc(wk_cuda *c, size_t bytes, void **out, wf_err *err) {
    cuda_be *b = cuda_be_of(c);
    size_t n = bytes < 256 ? 256 : bytes; /* a real pointer even for 0 bytes; 256-aligned */
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, n);
    c->n_mallocs++;
    if (c->be) c->be->mem_allocs++; /* every device allocation, the caches' too */
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        return wf_fail(err, WF_ENOMEM,
                       "cuda memory: cannot allocate %.1f MiB on device %d (%s; %.1f MiB free of "
                       "%.1f MiB, %.1f MiB held by this backend)",
                       (double)n / (1 << 20), c->device, cudaGetErrorString(e),
                       (double)fr / (1 << 20), (double)tot / (1 << 20),
                       (double)c->bytes_live / (1 << 20));
    }
    wf_status st = alloc_track(b, p, n, err);
    if (st) {
        cudaFree(p);
        return st;
    }
    c->bytes_live += n;
    if (c->bytes_live > c->bytes_peak) c->bytes_peak = c->bytes_live;
    if (c->be) {
        c->be->mem_peak = c->bytes_peak;
        c->be->mem_live = c->bytes_live;
    }
    *out = p;
    return WF_OK;
}

extern "C" void wk_cuda_free(wk_cuda *c, void *p) {
    if (!p) return;
    cuda_be *b = cuda_be_of(c);
    size_t bytes = 0;
    bool found = false;
    for (size_t i = 0; i < b->n_allocs; i++)
        if (b->allocs[i].p == p) {
            bytes = b->allocs[i].bytes;
            c->bytes_live -= bytes;
            if (c->be) c->be->mem_live = c->bytes_live;
            b->allocs[i] = b->allocs[--b->n_allocs]; /* the record goes first: forget below frees
                                                      * (and so re-orders) other records */
            found = true;
            break;
        }
    /* packed conv weights cached for addresses in this block must not outlive it */
    if (found && c->conv) wk_cuda_conv_forget(c, p, bytes);
    cudaFree(p); /* synchronises the device: never inside a step */
}

extern "C" void wk_cuda_plugin_stats(wk_backend *be, size_t *n_mallocs, size_t *bytes_live,
                                     size_t *bytes_peak) {
    wk_cuda *c = wk_cuda_of(be);
    if (n_mallocs) *n_mallocs = c->n_mallocs;
    if (bytes_live) *bytes_live = c->bytes_live;
    if (bytes_peak) *bytes_peak = c->bytes_peak;
}

/* ---- memory ops of the table ---- */

static wf_status cuda_alloc_op(wk_backend *be, size_t bytes, void **out, wf_err *err) {
    return wk_cuda_malloc(wk_cuda_of(be), bytes, out, err);
}

static void cuda_free_op(wk_backend *be, void *p) { wk_cuda_free(wk_cuda_of(be), p); }

/* bytes of the bounce chunk at off */
static size_t bounce_chunk(size_t bytes, size_t off) {
    return bytes - off < WK_CUDA_BOUNCE_BYTES ? bytes - off : WK_CUDA_BOUNCE_BYTES;
}

/* After a failed transfer: nothing may still be in flight from or into the pinned buffers when
 * the host next writes them. */
static void pin_settle(cuda_be *b) {
    cudaStreamSynchronize(b->c.stream);
    cudaGetLastError();
    b->pin_cur = 0;
    b->pin_off = 0;
}

/* Room for n <= WK_CUDA_BOUNCE_BYTES bytes that no transfer still reads: the free tail of the
 * current buffer, else the other buffer once the event of its last transfer has completed. */
static cudaError_t pin_take(cuda_be *b, size_t n, char **p) {
    if (b->pin_off + n > WK_CUDA_BOUNCE_BYTES) {
        b->pin_cur ^= 1;
        b->pin_off = 0;
        cudaError_t e = cudaEventSynchronize(b->pin_ev[b->pin_cur]);
        if (e != cudaSuccess) return e;
    }
    *p = (char *)b->pin[b->pin_cur] + b->pin_off;
    b->pin_off += (n + 255) & ~(size_t)255; /* the buffer size is a multiple of 256 */
    return cudaSuccess;
}

/* Host -> device through the two pinned buffers: each chunk is copied into free pinned bytes
 * (pin_take), sent on the stream, and the buffer's event recorded after it; the host copy of
 * chunk k + 1 overlaps the DMA of chunk k. src is fully read when this returns. */
static wf_status upload_bounced(cuda_be *b, char *dst, const char *src, size_t bytes,
                                wf_err *err) {
    cudaStream_t s = b->c.stream;
    cudaError_t e = cudaSuccess;
    for (size_t off = 0; off < bytes && e == cudaSuccess; off += WK_CUDA_BOUNCE_BYTES) {
        const size_t n = bounce_chunk(bytes, off);
        char *p = NULL;
        if ((e = pin_take(b, n, &p)) != cudaSuccess) break;
        memcpy(p, src + off, n);
        if ((e = cudaMemcpyAsync(dst + off, p, n, cudaMemcpyHostToDevice, s)) != cudaSuccess)
            break;
        e = cudaEventRecord(b->pin_ev[b->pin_cur], s);
    }
    if (e == cudaSuccess) return WF_OK;
    pin_settle(b);
    return wk_cuda_fail(err, e, "cuda upload");
}

static wf_status cuda_upload(wk_backend *be, void *dst, const void *src, size_t bytes,
                             wf_err *err) {
    cuda_be *b = cuda_be_of(wk_cuda_of(be));
    if (!bytes) return WF_OK;
    if (b->pin[0]) return upload_bounced(b, (char *)dst, (const char *)src, bytes, err);
    /* no pinned buffers: a pageable async copy is not promised to have read src on return */
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, b->c.stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(b->c.stream);
    return e == cudaSuccess ? WF_OK : wk_cuda_fail(err, e, "cuda upload");
}

/* Device -> host through the pinned buffers: chunk k + 1's DMA runs while the host copies chunk
 * k out of its buffer. */
static wf_status download_bounced(cuda_be *b, char *dst, const char *src, size_t bytes,
                                  wf_err *err) {
    cudaStream_t s = b->c.stream;
    cudaError_t e = cudaSuccess;
    const size_t nchunk = (bytes + WK_CUDA_BOUNCE_BYTES - 1) / WK_CUDA_BOUNCE_BYTES;
    for (size_t k = 0; k <= nchunk && e == cudaSuccess; k++) {
        if (k < nchunk) { /* issue chunk k */
            const size_t off = k * WK_CUDA_BOUNCE_BYTES, i = k & 1;
            const size_t n = bounce_chunk(bytes, off);
            if ((e = cudaMemcpyAsync(b->pin[i], src + off, n, cudaMemcpyDeviceToHost, s)) !=
                cudaSuccess)
                break;
            if ((e = cudaEventRecord(b->pin_ev[i], s)) != cudaSuccess) break;
        }
        if (k > 0) { /* drain chunk k - 1 */
            const size_t off = (k - 1) * WK_CUDA_BOUNCE_BYTES, i = (k - 1) & 1;
            const size_t n = bounce_chunk(bytes, off);
            if ((e = cudaEventSynchronize(b->pin_ev[i])) != cudaSuccess) break;
            memcpy(dst + off, b->pin[i], n);
        }
    }
    if (e != cudaSuccess) {
        pin_settle(b);
        return wk_cuda_fail(err, e, "cuda download");
    }
    /* the stream has run up to the last chunk: no earlier upload reads the buffers any more */
    b->pin_cur = 0;
    b->pin_off = 0;
    return WF_OK;
}

static wf_status cuda_download(wk_backend *be, void *dst, const void *src, size_t bytes,
                               wf_err *err) {
    cuda_be *b = cuda_be_of(wk_cuda_of(be));
    if (!bytes) return WF_OK;
    if (bytes >= WK_CUDA_BOUNCE_MIN && b->pin[0])
        return download_bounced(b, (char *)dst, (const char *)src, bytes, err);
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, b->c.stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(b->c.stream);
    return e == cudaSuccess ? WF_OK : wk_cuda_fail(err, e, "cuda download");
}

static wf_status cuda_copy(wk_backend *be, void *dst, const void *src, size_t bytes,
                           wf_err *err) {
    if (!bytes || dst == src) return WF_OK;
    const char *d = (const char *)dst, *sp = (const char *)src;
    if (d < sp + bytes && sp < d + bytes) /* cudaMemcpyAsync's areas may not overlap */
        return wf_fail(err, WF_EINVAL, "copy: dst %p and src %p overlap (%zu bytes); expected "
                       "separate areas of backend memory", dst, src, bytes);
    cudaError_t e =
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, wk_cuda_of(be)->stream);
    return e == cudaSuccess ? WF_OK : wk_cuda_fail(err, e, "cuda copy");
}

static wf_status cuda_sync(wk_backend *be, wf_err *err) {
    cudaError_t e = cudaStreamSynchronize(wk_cuda_of(be)->stream);
    return e == cudaSuccess ? WF_OK : wk_cuda_fail(err, e, "cuda sync (an earlier op failed)");
}

/* ---- the op table: every op of wk_ops ---- */

static wk_ops cuda_ops;

/* Fills the table by name (two ops of one signature cannot be swapped), then checks that no entry
 * is left NULL: an op added to backend.h without a CUDA entry fails at the first backend made. */
static void cuda_ops_fill(void) {
    wk_ops *o = &cuda_ops;
    o->matmul = wk_cuda_matmul;
    o->add = wk_cuda_add;
    o->mul = wk_cuda_mul;
    o->layer_norm = wk_cuda_layer_norm;
    o->rms_norm = wk_cuda_rms_norm;
    o->rms_norm_l2 = wk_cuda_rms_norm_l2;
    o->softmax = wk_cuda_softmax;
    o->gelu_tanh = wk_cuda_gelu_tanh;
    o->silu = wk_cuda_silu;
    o->rope = wk_cuda_rope;
    o->attention = wk_cuda_attention;
    o->conv3d = wk_cuda_conv3d;
    o->conv2d = wk_cuda_conv2d;
    o->upsample2x = wk_cuda_upsample2x;
    o->rope_table = wk_cuda_rope_table;
    o->matmul_gelu = wk_cuda_matmul_gelu;
    o->ln_modulate = wk_cuda_ln_modulate;
    o->gate_residual = wk_cuda_gate_residual;
    o->rms_norm_rope = wk_cuda_rms_norm_rope;
    o->rms_norm_l2_silu = wk_cuda_rms_norm_l2_silu;
    o->convert = wk_cuda_convert;
    o->fill = wk_cuda_fill;
    o->copy_box = wk_cuda_copy_box;
    o->permute = wk_cuda_permute;
    o->timestep_embed = wk_cuda_timestep_embed;
    o->embedding = wk_cuda_embedding;
    o->t5_bias = wk_cuda_t5_bias;
    o->blend = wk_cuda_blend;
    o->avgdown3d = wk_cuda_avgdown3d;
    o->dupup3d = wk_cuda_dupup3d;
    o->scale_add = wk_cuda_scale_add;
    o->guidance = wk_cuda_guidance;
    o->unipc_update = wk_cuda_unipc_update;
    o->first_nonfinite = wk_cuda_first_nonfinite;
    o->alloc = cuda_alloc_op;
    o->free = cuda_free_op;
    o->upload = cuda_upload;
    o->download = cuda_download;
    o->copy = cuda_copy;
    o->sync = cuda_sync;
    o->time_enable = wk_cuda_time_enable;
    o->time_mark = wk_cuda_time_mark;
    o->time_take = wk_cuda_time_take;
    void *slots[sizeof(wk_ops) / sizeof(void *)];
    memcpy(slots, o, sizeof slots);
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) WF_ASSERT(slots[i] != NULL);
}
static_assert(sizeof(wk_ops) == 43 * sizeof(void *),
              "wk_ops changed: add the new op to cuda_ops_fill and update this count");

/* ---- construction and destruction ---- */

/* wk_backend.device_used: what the runtime says is in use on the device (every process's) */
static size_t cuda_device_used(wk_backend *be) {
    cuda_be *b = cuda_be_of(wk_cuda_of(be));
    size_t fr = 0, tot = 0;
    if (cudaSetDevice(b->c.device) != cudaSuccess || cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return tot > fr ? tot - fr : 0;
}

static void cuda_destroy(wk_backend *be) {
    wk_cuda *c = wk_cuda_of(be);
    if (!c) return;
    cuda_be *b = cuda_be_of(c);
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    /* NULL-safe: a cache whose init failed half-way is released too */
    wk_cuda_timing_free(c);
    wk_cuda_sdpa_free(c);
    wk_cuda_conv_free(c);
    wk_cuda_gemm_free(c);
    if (b->dnn_ok) cudnnDestroy((cudnnHandle_t)c->dnn);
    if (b->lt_ok) cublasLtDestroy((cublasLtHandle_t)c->lt);
    wk_cuda_free(c, c->lt_ws);
    if (b->n_allocs) /* memory whose owner did not give it back: released with the backend */
        wk_cuda_log(c, "destroy: %zu allocation(s), %.1f MiB, still live; freed", b->n_allocs,
                    (double)c->bytes_live / (1 << 20));
    while (b->n_allocs) wk_cuda_free(c, b->allocs[b->n_allocs - 1].p);
    for (int i = 0; i < 2; i++) {
        if (b->pin_ev[i]) cudaEventDestroy(b->pin_ev[i]);
        if (b->pin[i]) cudaFreeHost(b->pin[i]);
    }
    if (c->stream) cudaStreamDestroy(c->stream);
    cudaGetLastError(); /* nothing sticky left behind by a failed teardown call */
    free(b->allocs);
    free(b);
    be->impl = NULL;
}

/* The device exists, answers, and is Ampere or newer; fills the wk_cuda device fields. */
static wf_status cuda_pick_device(wk_cuda *c, int device, wf_err *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return wf_fail(err, WF_EUNSUPPORTED,
                       "cuda: no usable CUDA device: the runtime says %s: %s (driver missing or "
                       "too old for CUDA %d.%d?)", cudaGetErrorName(e), cudaGetErrorString(e),
                       CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
    }
    if (n == 0) return wf_fail(err, WF_EUNSUPPORTED, "cuda: the CUDA runtime sees no device");
    if (device < 0 || device >= n)
        return wf_fail(err, WF_EINVAL, "cuda: device %d does not exist: this machine has %d "
                       "CUDA device(s), 0 to %d", device, n, n - 1);
    cudaDeviceProp p;
    if ((e = cudaGetDeviceProperties(&p, device)) != cudaSuccess)
        return wk_cuda_fail(err, e, "cuda: cudaGetDeviceProperties");
    c->device = device;
    c->cc_major = p.major;
    c->cc_minor = p.minor;
    c->sm_count = p.multiProcessorCount;
    snprintf(c->device_name, sizeof c->device_name, "%s", p.name);
    if (p.major < 8)
        return wf_fail(err, WF_EUNSUPPORTED, "cuda: device %d (%s) has compute capability %d.%d; "
                       "the CUDA backend needs 8.0 or newer (Ampere, Hopper)", device, p.name,
                       p.major, p.minor);
    if ((e = cudaSetDevice(device)) != cudaSuccess)
        return wk_cuda_fail(err, e, "cuda: cudaSetDevice");
    return WF_OK;
}

/* Stream, cuBLASLt handle + workspace, cuDNN handle (optional), pinned bounce buffers. */
static wf_status cuda_make_handles(cuda_be *b, wf_err *err) {
    wk_cuda *c = &b->c;
    wf_status st = WF_OK;
    cudaError_t e;
    if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess)
        return wk_cuda_fail(err, e, "cuda: cudaStreamCreateWithFlags");
    cublasLtHandle_t lt;
    cublasStatus_t ls = cublasLtCreate(&lt);
    if (ls != CUBLAS_STATUS_SUCCESS)
        return wf_fail(err, WF_ECUDA, "cuda: cublasLtCreate: %s (%d)", cublasLtGetStatusString(ls),
                       (int)ls);
    c->lt = lt;
    b->lt_ok = true;
    if ((st = wk_cuda_malloc(c, WK_CUDA_LT_WS_BYTES, &c->lt_ws, err))) return st;
    c->lt_ws_bytes = WK_CUDA_LT_WS_BYTES;
    cudnnHandle_t dnn;
    cudnnStatus_t ds = cudnnCreate(&dnn);
    if (ds == CUDNN_STATUS_SUCCESS && (ds = cudnnSetStream(dnn, c->stream)) != CUDNN_STATUS_SUCCESS)
        cudnnDestroy(dnn);
    if (ds == CUDNN_STATUS_SUCCESS) {
        c->dnn = dnn;
        b->dnn_ok = true;
    } else {
        snprintf(c->dnn_why, sizeof c->dnn_why, "cudnnCreate/cudnnSetStream: %s (%d), cuDNN %zu",
                 cudnnGetErrorString(ds), (int)ds, cudnnGetVersion());
        cudaGetLastError();
    }
    for (int i = 0; i < 2; i++) {
        if ((e = cudaMallocHost(&b->pin[i], WK_CUDA_BOUNCE_BYTES)) != cudaSuccess)
            return wk_cuda_fail(err, e, "cuda: cudaMallocHost (pinned upload buffer, 32 MiB)");
        if ((e = cudaEventCreateWithFlags(&b->pin_ev[i], cudaEventDisableTiming)) != cudaSuccess)
            return wk_cuda_fail(err, e, "cuda: cudaEventCreateWithFlags");
    }
    return WF_OK;
}

static void cuda_read_env(wk_cuda *c) {
    const char *v = getenv("WANFARM_CUDA_LOG");
    c->verbose = v && v[0] && strcmp(v, "0") != 0;
    const char *a = getenv("WANFARM_CUDA_ATTN");
    c->attn_path = WK_CUDA_ATTN_AUTO;
    if (a && strcmp(a, "own") == 0) c->attn_path = WK_CUDA_ATTN_OWN;
    else if (a && strcmp(a, "cudnn") == 0) c->attn_path = WK_CUDA_ATTN_CUDNN;
}

extern "C" wf_status wk_cuda_plugin_new(wk_backend **out, int device, wk_precision precision,
                                        wf_err *err) {
    wf_status st = WF_OK;
    wk_backend *be = NULL;
    cuda_be *b = (cuda_be *)calloc(1, sizeof *b);
    if (!b) return wf_fail(err, WF_ENOMEM, "cuda backend: out of host memory");
    *out = NULL;
    be = (wk_backend *)calloc(1, sizeof *be);
    if (!be) {
        free(b);
        return wf_fail(err, WF_ENOMEM, "cuda backend: out of host memory");
    }
    be->impl = &b->c;
    b->c.be = be;
    be->destroy = cuda_destroy;
    be->device_used = cuda_device_used;
    cuda_read_env(&b->c);
    WF_TRY(cuda_pick_device(&b->c, device, err));
    WF_TRY(cuda_make_handles(b, err));
    WF_TRY(wk_cuda_gemm_init(&b->c, err));
    b->gemm_ok = true;
    WF_TRY(wk_cuda_conv_init(&b->c, err));
    b->conv_ok = true;
    WF_TRY(wk_cuda_sdpa_init(&b->c, err));
    b->sdpa_ok = true;
    be->name = "cuda";
    be->device = WK_DEV_CUDA;
    be->nthreads = 1;
    /* 1: the elementwise, norm and layout kernels compute each row alone, wherever it starts;
     * a cuBLASLt GEMM's bits depend on the algorithm chosen for its M, which no start alignment
     * fixes, so padding rank shares would cost work without buying equal bits. */
    be->row_quantum = 1;
    be->precision = precision;
    be->queue = b->c.stream; /* NCCL enqueues on it, after the ops that made its buffers */
    be->ordinal = b->c.device;
    {
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) == cudaSuccess) be->mem_total = tot;
    }
    cuda_ops_fill();
    be->ops = &cuda_ops;
    wk_cuda_log(&b->c, "%s (cc %d.%d, %d SMs), %s, cuDNN %s%s", b->c.device_name, b->c.cc_major,
                b->c.cc_minor, b->c.sm_count, wk_precision_name(precision),
                b->c.dnn ? "on" : "off: ", b->c.dnn ? "" : b->c.dnn_why);
    *out = be;
out:
    if (st) {
        if (b->c.verbose) fprintf(stderr, "wanfarm cuda: %s\n", err ? err->msg : "failed");
        cuda_destroy(be);
        free(be);
    }
    return st;
}
