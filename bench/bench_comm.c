/* bench_comm.c: the communicator's collectives over the MPI world, in the nccl-tests shape
 * (all_to_all_perf, all_gather_perf): for each message size, the median time of -n calls after
 * -w warm-ups, the algorithm and bus bandwidths, and a correctness column (every received byte
 * checked against the pattern its sender wrote).
 *
 * What it is: every rank runs the same sizes through cm_alltoall, cm_ialltoall + cm_wait (the
 * overlapped form the DiT can use) and cm_allgather of comm.h, on host buffers over MPI
 * (--device cpu) or on device buffers (--device cuda: each rank takes visible GPU local_rank % n;
 * NCCL when the ranks are on distinct GPUs, MPI through host memory when they share one, as
 * cm_enable_device decides; the table says which). Bandwidths as nccl-tests defines them:
 * size = the bytes one rank sends and receives in all (all-to-all: np blocks; all-gather: np
 * blocks), algbw = size / time, busbw = algbw (np - 1) / np. The ratio column is busbw over
 * --peak-gbs (default: 450, an H100's NVLink per direction; 0: no ratio), the peer being the
 * link itself: nccl-tests and torch.distributed cannot run here beside it. Rank 0 prints; the
 * exit status is 1 when a check failed.
 * --cost-out FILE writes {"intra_bw": the all-to-all busbw at the largest size, B/s;
 * "intra_latency": the smallest size's time, s} for the planner (pn_cost_load keys), with the
 * backend and rank count as comments; bench/gpu-check.sh merges it into the GPU cost file.
 * What it is not: a test (tests/test_comm.c owns correctness), or an inter-node measurement
 * unless the ranks span nodes.
 * Run:   mpirun -np 2 build/bench/bench_comm [--device cpu|cuda --sizes 4K,1M,64M -w 2 -n 10
 *            --json FILE --cost-out FILE --peak-gbs 450]
 */
#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "backend_load.h"
#include "bench_util.h"
#include "comm.h"

#define MAX_SIZES 32

typedef struct opts {
    bool cuda;
    int64_t sizes[MAX_SIZES]; /* bytes per rank in all */
    int nsizes, warmup, iters;
    const char *json, *cost_out;
    double peak_gbs;
} opts;

typedef enum { OP_A2A = 0, OP_IA2A, OP_AG, NOPS_B } bop;
static const char *op_name[NOPS_B] = {"alltoall", "ialltoall", "allgather"};

typedef struct row {
    bop op;
    int64_t size;
    double us, algbw, busbw;
    int64_t wrong; /* bytes that differ from the pattern, over all ranks */
} row;

/* "4K", "1M", "64M", "1G" or plain bytes */
static bool parse_size(const char *s, int64_t *out) {
    char *end;
    double v = strtod(s, &end);
    int64_t m = 1;
    if (*end == 'K' || *end == 'k') m = 1 << 10, end++;
    else if (*end == 'M' || *end == 'm') m = 1 << 20, end++;
    else if (*end == 'G' || *end == 'g') m = 1 << 30, end++;
    if (end == s || *end || !(v > 0) || v * (double)m > 16e9) return false;
    *out = (int64_t)(v * (double)m);
    return true;
}

static int usage(const char *why) {
    fprintf(stderr, "bench_comm: %s\nusage: mpirun -np N bench_comm [--device cpu|cuda] "
            "[--sizes 4K,1M,64M] [-w 2] [-n 10] [--json FILE] [--cost-out FILE] "
            "[--peak-gbs 450]\n", why);
    return 2;
}

/* One "--flag value" into o (the value's check afterwards); false: not a flag of ours. */
static bool take(opts *o, const char *a, const char *v, const char **sizes) {
    if (!strcmp(a, "--device")) o->cuda = !strcmp(v, "cuda");
    else if (!strcmp(a, "--sizes")) *sizes = v;
    else if (!strcmp(a, "-w")) o->warmup = atoi(v);
    else if (!strcmp(a, "-n")) o->iters = atoi(v);
    else if (!strcmp(a, "--json")) o->json = v;
    else if (!strcmp(a, "--cost-out")) o->cost_out = v;
    else if (!strcmp(a, "--peak-gbs")) o->peak_gbs = atof(v);
    else return false;
    return true;
}

static int parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->warmup = 2, o->iters = 10, o->peak_gbs = 450;
    const char *sizes = "4K,64K,1M,16M,64M";
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc || !take(o, argv[i], argv[i + 1], &sizes)) return usage(argv[i]);
        if (!strcmp(argv[i], "--device") && strcmp(argv[i + 1], "cpu") &&
            strcmp(argv[i + 1], "cuda"))
            return usage("--device: cpu or cuda");
    }
    if (o->warmup < 0 || o->iters < 1 || o->iters > 10000 || !(o->peak_gbs >= 0))
        return usage("-w >= 0, 1 <= -n <= 10000, --peak-gbs >= 0");
    char buf[512];
    snprintf(buf, sizeof buf, "%s", sizes);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        if (o->nsizes == MAX_SIZES || !parse_size(t, &o->sizes[o->nsizes]))
            return usage("--sizes: up to 32 sizes such as 4K,1M,64M (at most 16G)");
        o->nsizes++;
    }
    return o->nsizes ? 0 : usage("--sizes: none");
}

/* The byte rank `src` puts at offset i of its block for rank `dst`. */
static uint8_t pat(int src, int dst, size_t i) {
    uint64_t z = (uint64_t)i * 0x9E3779B97F4A7C15ull ^ ((uint64_t)src << 40) ^ ((uint64_t)dst << 20);
    z ^= z >> 29;
    return (uint8_t)(z * 0xBF58476D1CE4E5B9ull >> 56);
}

typedef struct bufs {
    wk_backend *be; /* NULL: host memory */
    void *send, *recv;
    uint8_t *host;  /* staging for fills and checks */
    size_t cap;
} bufs;

static int bufs_init(bufs *b, wk_backend *be, size_t cap) {
    memset(b, 0, sizeof *b);
    b->be = be, b->cap = cap;
    b->host = malloc(cap ? cap : 1);
    if (!b->host) return 1;
    if (!be) {
        b->send = malloc(cap ? cap : 1), b->recv = malloc(cap ? cap : 1);
        return !b->send || !b->recv;
    }
    wf_err e;
    return wk_backend_alloc(be, cap ? cap : 1, &b->send, &e) ||
           wk_backend_alloc(be, cap ? cap : 1, &b->recv, &e);
}

static void bufs_free(bufs *b) {
    if (b->be) {
        wk_backend_free(b->be, b->send);
        wk_backend_free(b->be, b->recv);
    } else {
        free(b->send);
        free(b->recv);
    }
    free(b->host);
}

/* send <- the pattern of this rank; block = bytes per destination (all-gather: one block) */
static int fill(bufs *b, int me, int np, size_t block, bool gather) {
    size_t n = gather ? block : block * (size_t)np;
    for (size_t k = 0; k < n; k++) b->host[k] = pat(me, gather ? 0 : (int)(k / block), k % block);
    wf_err e;
    if (b->be) return wk_upload_bytes(b->be, b->send, b->host, n, &e) != WF_OK;
    memcpy(b->send, b->host, n);
    return 0;
}

/* bytes of recv that differ from what each sender wrote */
static int64_t check(bufs *b, int me, int np, size_t block, bool gather) {
    size_t n = block * (size_t)np;
    wf_err e;
    if (b->be) {
        if (wk_download_bytes(b->be, b->host, b->recv, n, &e)) return (int64_t)n;
    } else {
        memcpy(b->host, b->recv, n);
    }
    int64_t bad = 0;
    for (size_t k = 0; k < n; k++)
        bad += b->host[k] != pat((int)(k / block), gather ? 0 : me, k % block);
    return bad;
}

static wf_status once(cm_comm *c, bop op, bufs *b, size_t block, wf_err *err) {
    if (op == OP_AG) return cm_allgather(c, b->send, b->recv, block, err);
    if (op == OP_A2A) return cm_alltoall(c, b->send, b->recv, block, err);
    cm_request q;
    wf_status st = cm_ialltoall(c, b->send, b->recv, block, &q, err);
    return st ? st : cm_wait(c, &q, err);
}

/* One row: the median over ranks' slowest of each timed call (every call ends with a barrier
 * after the data is complete: wk_sync on a device). */
static wf_status measure(cm_comm *c, const opts *o, bop op, int64_t size, bufs *b, row *r,
                         wf_err *err) {
    const int np = c->size, me = c->rank;
    const size_t block = (size_t)size / (size_t)np;
    const bool gather = op == OP_AG;
    memset(r, 0, sizeof *r);
    r->op = op, r->size = (int64_t)(block * (size_t)np);
    if (fill(b, me, np, block, gather)) return wf_fail(err, WF_EIO, "cannot fill the buffers");
    double *t = malloc((size_t)o->iters * sizeof *t);
    if (!t) return wf_fail(err, WF_ENOMEM, "out of memory");
    wf_status st = WF_OK;
    for (int i = 0; i < o->warmup + o->iters && !st; i++) {
        MPI_Barrier(c->mpi);
        double t0 = bu_now_s();
        st = once(c, op, b, block, err);
        if (!st && b->be) st = wk_sync(b->be, err);
        double dt = bu_now_s() - t0, worst = dt;
        MPI_Allreduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, c->mpi);
        if (i >= o->warmup) t[i - o->warmup] = worst;
    }
    if (!st) st = cm_settle(c, err);
    if (!st) {
        qsort(t, (size_t)o->iters, sizeof *t, bu_cmp_double);
        double med = t[o->iters / 2];
        int64_t wrong = check(b, me, np, block, gather), all = 0;
        MPI_Allreduce(&wrong, &all, 1, MPI_INT64_T, MPI_SUM, c->mpi);
        r->us = med * 1e6;
        r->algbw = med > 0 ? (double)r->size / med : 0;
        r->busbw = r->algbw * (double)(np - 1) / (double)np;
        r->wrong = all;
    }
    free(t);
    return st;
}

static const char *backend_name(const cm_comm *c) {
    return c->backend == CM_NCCL ? "nccl" : c->backend == CM_STAGED ? "mpi via host" : "mpi";
}

/* this rank's GPU (local rank % visible) and the comm on its buffers */
static wf_status open_cuda(cm_comm *c, wk_backend **be, wf_err *err) {
    wk_cuda_info info;
    wk_cuda_device devs[16];
    wf_status st = wk_cuda_devices(&info, devs, 16, err);
    int n = st ? 0 : info.n_devices;
    if (!st && n < 1) st = wf_fail(err, WF_EUNSUPPORTED, "no visible GPU");
    if (!st) st = wk_backend_cuda_new(be, cm_local_rank() % (n < 16 ? n : 16), WK_PREC_FP32, err);
    if ((st = cm_agree(c, st, "bench_comm: the GPU backend", err))) return st;
    return cm_enable_device(c, (*be)->ordinal, (*be)->queue, err);
}

static void write_cost(const opts *o, const cm_comm *c, const row *rows, int nrows) {
    double bw = 0, lat = 0;
    int64_t big = -1, small = INT64_MAX;
    for (int k = 0; k < nrows; k++) {
        if (rows[k].op != OP_A2A) continue;
        if (rows[k].size > big) big = rows[k].size, bw = rows[k].busbw;
        if (rows[k].size < small) small = rows[k].size, lat = rows[k].us * 1e-6;
    }
    json_t *j = json_object();
    json_object_set_new(j, "_source", json_sprintf("bench_comm: all-to-all over %d ranks, %s",
                                                   c->size, backend_name(c)));
    if (bw > 0) json_object_set_new(j, "intra_bw", json_real(bw));
    if (lat > 0) json_object_set_new(j, "intra_latency", json_real(lat));
    if (json_dump_file(j, o->cost_out, JSON_INDENT(2)))
        fprintf(stderr, "bench_comm: cannot write %s\n", o->cost_out);
    json_decref(j);
}

static void report(const opts *o, const cm_comm *c, const row *rows, int nrows) {
    printf("# bench_comm: %d ranks, %s buffers, %s; median of %d calls after %d warm-ups\n",
           c->size, o->cuda ? "device" : "host", backend_name(c), o->iters, o->warmup);
    printf("# %-10s %12s %12s %10s %10s %8s %8s\n", "op", "size(B)", "time(us)", "algbw(GB/s)",
           "busbw(GB/s)", "vs peak", "#wrong");
    json_t *arr = json_array();
    for (int k = 0; k < nrows; k++) {
        const row *r = &rows[k];
        char ratio[16] = "n/a";
        if (o->peak_gbs > 0) snprintf(ratio, sizeof ratio, "%.2f", r->busbw / 1e9 / o->peak_gbs);
        printf("  %-10s %12lld %12.1f %10.2f %10.2f %8s %8lld\n", op_name[r->op],
               (long long)r->size, r->us, r->algbw / 1e9, r->busbw / 1e9, ratio,
               (long long)r->wrong);
        json_array_append_new(arr, json_pack("{s:s,s:I,s:f,s:f,s:f,s:I}", "op", op_name[r->op],
                                             "size", (json_int_t)r->size, "time_us", r->us,
                                             "algbw", r->algbw, "busbw", r->busbw, "wrong",
                                             (json_int_t)r->wrong));
    }
    if (o->json) {
        json_t *j = json_pack("{s:i,s:s,s:s,s:o}", "ranks", c->size, "buffers",
                              o->cuda ? "device" : "host", "backend", backend_name(c), "rows", arr);
        if (json_dump_file(j, o->json, JSON_INDENT(2)))
            fprintf(stderr, "bench_comm: cannot write %s\n", o->json);
        json_decref(j);
    } else {
        json_decref(arr);
    }
}

/* Every op at every size into rows; *wrong: the bytes that failed the check, over all. */
static wf_status measure_all(cm_comm *c, const opts *o, bufs *b, row *rows, int *nrows,
                             int64_t *wrong, wf_err *err) {
    for (int op = 0; op < NOPS_B; op++)
        for (int k = 0; k < o->nsizes; k++) {
            wf_status st = measure(c, o, (bop)op, o->sizes[k], b, &rows[*nrows], err);
            if (st) return st;
            *wrong += rows[(*nrows)++].wrong;
        }
    return WF_OK;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    opts o;
    int rc = parse(argc, argv, &o);
    cm_comm *world = NULL, *c = NULL;
    wk_backend *be = NULL;
    row rows[NOPS_B * MAX_SIZES];
    int nrows = 0;
    wf_err err;
    bufs b;
    memset(&b, 0, sizeof b);
    if (rc) goto done;
    rc = 1;
    if (cm_world(&world, &err) || cm_split(world, 0, world->rank, "bench", &c, &err)) goto fail;
    if (o.cuda && open_cuda(c, &be, &err)) goto fail;
    int64_t most = 0;
    for (int k = 0; k < o.nsizes; k++) most = o.sizes[k] > most ? o.sizes[k] : most;
    if (bufs_init(&b, be, (size_t)most)) {
        err.msg[0] = 0;
        snprintf(err.msg, sizeof err.msg, "cannot allocate 2 x %lld bytes", (long long)most);
        goto fail;
    }
    int64_t wrong = 0;
    if (measure_all(c, &o, &b, rows, &nrows, &wrong, &err)) goto fail;
    if (c->rank == 0) {
        report(&o, c, rows, nrows);
        if (o.cost_out) write_cost(&o, c, rows, nrows);
        printf("# %s\n", wrong ? "FAILED: received bytes differ from what was sent" : "OK");
    }
    rc = wrong ? 1 : 0;
    goto done;
fail:
    fprintf(stderr, "bench_comm (rank %d): %s\n", world ? world->rank : -1, err.msg);
    bufs_free(&b);
    MPI_Abort(MPI_COMM_WORLD, 1);
done:
    bufs_free(&b);
    cm_free(&c);
    wk_backend_destroy(&be);
    cm_free(&world);
    MPI_Finalize();
    return rc;
}
