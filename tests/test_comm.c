/* test_comm.c: the communicator (worker/comm/comm.h, comm.c, comm_nccl.c) under mpirun -np 1..4.
 *
 * Every expected byte is computed here in closed form, never by another MPI call: the byte i of
 * the message from rank s to rank d in check number k is pat(s, d, k, i), a hash of the four. Each
 * output buffer has 64 guard bytes of a sentinel on each side, checked after every call.
 *   - all-to-all and all-gather at 0, 1, 13, 4099 and 65543 bytes a block; all-gather (v) with
 *     unequal counts, one of them zero, a zero count on the last rank, and all counts zero;
 *   - send/recv round a ring (np >= 2) with sizes that depend on the sender; sendrecv as a halo
 *     exchange (-1 on the ends; the absent side's buffer untouched, or NULL) and periodically;
 *   - broadcast from every root; barrier; cm_split into two colors ordered by a reversed key, with
 *     the last rank (np >= 3) passing color -1 and getting NULL;
 *   - the counters after every call: calls and bytes by comm.h's rule (bytes sent to other ranks;
 *     a broadcast on the root only; a sendrecv counts a side only when it is there), all other
 *     kinds unchanged, seconds never decreasing;
 *   - bad peers and roots give WF_EINVAL naming the peer and the communicator, and count nothing;
 *   - WANFARM_TEST_BIG=1 only: messages over 2^31 bytes through send/recv, sendrecv and
 *     all-to-all, which take comm.c's piece paths. Memory: about 4 * np GiB a rank (the
 *     all-to-all's two buffers), so 16 GiB a rank at np 4; np 2 takes about a minute;
 *   - NCCL: in a CUDA build where every node has a GPU per rank, the same data and counter checks
 *     on device buffers through cm_enable_nccl(c, cm_local_rank() % ndev), and a collective
 *     failure (rank 0 names a device that does not exist: every rank returns WF_ECUDA, none
 *     hangs). A CUDA build without GPUs checks that failure on all ranks instead and says the data
 *     checks were skipped; a CPU build checks that cm_enable_nccl says WF_EUNSUPPORTED.
 *   - device buffers through cm_enable_device (CUDA build with a GPU on every rank): NCCL when the
 *     ranks have a GPU each, MPI through host memory when they share one; the same data and
 *     counter checks on a stream of the test's;
 *   - GPU binding (cm_bind_gpu) with the UUIDs of imagined GPUs: four visible to every rank
 *     (rank r takes device r), one per task (each its own), two for more than two ranks (every
 *     rank fails, naming two ranks on one GPU and WANFARM_SHARE_GPU), sharing allowed, and the
 *     last rank seeing none (every rank fails, that rank naming CUDA_VISIBLE_DEVICES).
 * Usage: mpirun -np N test_comm (ctest runs N = 1, 2, 3, 4). Rank 0 prints the summary.
 */
#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef WANFARM_HAVE_CUDA
#include <cuda_runtime.h>
#endif

#include "comm.h"
#include "test_util.h"

enum { GUARD = 64, SENT = 0xA5 };

static int g_rank; /* world rank, for messages */

/* ---- the pattern: byte i of the message from src to dst in check `salt` ---- */

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t pat_key(int src, int dst, uint32_t salt) {
    return mix64(((uint64_t)salt << 32) ^ ((uint64_t)(uint16_t)(src + 8) << 16) ^
                 (uint64_t)(uint16_t)(dst + 8));
}

/* one hash per 8 bytes, so that 2 GiB messages fill and check in seconds */
static void fill_pat(uint8_t *p, size_t n, int src, int dst, uint32_t salt) {
    uint64_t key = pat_key(src, dst, salt), w = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(i & 7)) w = mix64(key ^ ((i >> 3) * 0xD6E8FEB86659FD93ull));
        p[i] = (uint8_t)(w >> (8 * (i & 7)));
    }
}

static bool check_pat(const uint8_t *p, size_t n, int src, int dst, uint32_t salt,
                      const char *tag, const char *what) {
    uint64_t key = pat_key(src, dst, salt), w = 0;
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(i & 7)) w = mix64(key ^ ((i >> 3) * 0xD6E8FEB86659FD93ull));
        if (p[i] != (uint8_t)(w >> (8 * (i & 7))) && !bad++) first = i;
    }
    TU_CHECK(bad == 0, "[%s rank %d] %s: %zu of %zu bytes from rank %d wrong, first at %zu", tag,
             g_rank, what, bad, n, src, first);
    return bad == 0;
}

static bool all_sent(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != SENT) return false;
    return true;
}

/* ---- guarded buffers, on the host or the device ---- */

#ifdef WANFARM_HAVE_CUDA
#define CUDA_OK(call)                                                                            \
    do {                                                                                         \
        cudaError_t e_ = (call);                                                                 \
        if (e_ != cudaSuccess) {                                                                 \
            fprintf(stderr, "rank %d: %s:%d: %s: %s\n", g_rank, __FILE__, __LINE__, #call,      \
                    cudaGetErrorString(e_));                                                     \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                        \
        }                                                                                        \
    } while (0)
#endif

typedef struct tbuf {
    bool dev;
    size_t n;      /* payload bytes */
    uint8_t *host; /* [GUARD | n | GUARD]: the buffer itself, or the device buffer's host image */
    uint8_t *dev_base; /* device buffers: the same layout on the device */
} tbuf;

static void tbuf_init(tbuf *b, bool dev, size_t n) {
    b->dev = dev;
    b->n = n;
    b->dev_base = NULL;
    b->host = malloc(n + 2 * GUARD);
    if (!b->host) {
        fprintf(stderr, "rank %d: test_comm: out of host memory for %zu bytes\n", g_rank, n);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    memset(b->host, SENT, n + 2 * GUARD);
#ifdef WANFARM_HAVE_CUDA
    if (dev) {
        CUDA_OK(cudaMalloc((void **)&b->dev_base, n + 2 * GUARD));
        CUDA_OK(cudaMemset(b->dev_base, SENT, n + 2 * GUARD));
    }
#endif
}

/* what the communicator is given */
static void *tbuf_ptr(tbuf *b) { return (b->dev ? b->dev_base : b->host) + GUARD; }
/* the payload's host image */
static uint8_t *tbuf_data(tbuf *b) { return b->host + GUARD; }

static void tbuf_push(tbuf *b) {
#ifdef WANFARM_HAVE_CUDA
    if (b->dev)
        CUDA_OK(cudaMemcpy(b->dev_base, b->host, b->n + 2 * GUARD, cudaMemcpyHostToDevice));
#else
    (void)b;
#endif
}

static void tbuf_pull(tbuf *b) {
#ifdef WANFARM_HAVE_CUDA
    if (b->dev)
        CUDA_OK(cudaMemcpy(b->host, b->dev_base, b->n + 2 * GUARD, cudaMemcpyDeviceToHost));
#else
    (void)b;
#endif
}

static void tbuf_free(tbuf *b) {
#ifdef WANFARM_HAVE_CUDA
    if (b->dev_base) cudaFree(b->dev_base);
#endif
    free(b->host);
    b->host = b->dev_base = NULL;
}

static bool tbuf_guards_ok(const tbuf *b) {
    return all_sent(b->host, GUARD) && all_sent(b->host + GUARD + b->n, GUARD);
}

/* ---- what a check runs on, and the counters ---- */

typedef struct tctx {
    cm_comm *c;
    bool dev;        /* device buffers (NCCL) */
    const char *tag; /* "mpi", "nccl" */
    uint32_t salt;   /* a new value per check */
} tctx;

typedef struct want {
    uint64_t calls[CM_NOPS], bytes[CM_NOPS];
} want;

static void check_stats(const tctx *t, const cm_stats *before, const want *w, const char *what) {
    const cm_stats *s = &t->c->stats;
    for (int op = 0; op < CM_NOPS; op++) {
        uint64_t dc = s->calls[op] - before->calls[op], db = s->bytes[op] - before->bytes[op];
        double ds = s->seconds[op] - before->seconds[op];
        TU_CHECK(dc == w->calls[op], "[%s rank %d] %s: %s calls +%llu, want +%llu", t->tag, g_rank,
                 what, cm_op_name(op), (unsigned long long)dc, (unsigned long long)w->calls[op]);
        TU_CHECK(db == w->bytes[op], "[%s rank %d] %s: %s bytes +%llu, want +%llu", t->tag, g_rank,
                 what, cm_op_name(op), (unsigned long long)db, (unsigned long long)w->bytes[op]);
        TU_CHECK(ds >= 0 && (w->calls[op] || ds == 0), "[%s rank %d] %s: %s seconds +%g", t->tag,
                 g_rank, what, cm_op_name(op), ds);
    }
}

#define EXPECT_OK(t, st, err, what)                                                              \
    TU_CHECK((st) == WF_OK, "[%s rank %d] %s: %s: %s", (t)->tag, g_rank, (what),                \
             wf_status_str(st), (err).msg)

/* ---- collectives ---- */

static const size_t k_sizes[] = {0, 1, 13, 4099, 65543};
#define NSIZES (sizeof k_sizes / sizeof k_sizes[0])

static void test_alltoall_n(tctx *t, size_t n) {
    cm_comm *c = t->c;
    int me = c->rank, np = c->size;
    uint32_t salt = ++t->salt;
    char what[64];
    snprintf(what, sizeof what, "alltoall %zu B", n);
    tbuf s, r;
    tbuf_init(&s, t->dev, n * (size_t)np);
    tbuf_init(&r, t->dev, n * (size_t)np);
    for (int p = 0; p < np; p++) fill_pat(tbuf_data(&s) + (size_t)p * n, n, me, p, salt);
    tbuf_push(&s);
    cm_stats before = c->stats;
    wf_err err = {0};
    wf_status st = cm_alltoall(c, tbuf_ptr(&s), tbuf_ptr(&r), n, &err);
    EXPECT_OK(t, st, err, what);
    tbuf_pull(&r);
    for (int p = 0; p < np; p++)
        check_pat(tbuf_data(&r) + (size_t)p * n, n, p, me, salt, t->tag, what);
    TU_CHECK(tbuf_guards_ok(&r), "[%s rank %d] %s: guard bytes overwritten", t->tag, g_rank, what);
    want w = {0};
    w.calls[CM_ALLTOALL] = 1;
    w.bytes[CM_ALLTOALL] = n * (size_t)(np - 1);
    check_stats(t, &before, &w, what);
    tbuf_free(&s);
    tbuf_free(&r);
}

/* cm_ialltoall: two exchanges in flight at once (different salts), waited for in reverse order,
 * then settled: the same blocks as cm_alltoall, counted at the waits. */
static void test_ialltoall_n(tctx *t, size_t n) {
    cm_comm *c = t->c;
    int me = c->rank, np = c->size;
    uint32_t salt[2] = {++t->salt, ++t->salt};
    char what[64];
    snprintf(what, sizeof what, "ialltoall %zu B", n);
    tbuf s[2], r[2];
    for (int k = 0; k < 2; k++) {
        tbuf_init(&s[k], t->dev, n * (size_t)np);
        tbuf_init(&r[k], t->dev, n * (size_t)np);
        for (int p = 0; p < np; p++) fill_pat(tbuf_data(&s[k]) + (size_t)p * n, n, me, p, salt[k]);
        tbuf_push(&s[k]);
    }
    cm_stats before = c->stats;
    wf_err err = {0};
    cm_request q[2];
    for (int k = 0; k < 2; k++) {
        wf_status st = cm_ialltoall(c, tbuf_ptr(&s[k]), tbuf_ptr(&r[k]), n, &q[k], &err);
        EXPECT_OK(t, st, err, what);
    }
    for (int k = 1; k >= 0; k--) {
        wf_status st = cm_wait(c, &q[k], &err);
        EXPECT_OK(t, st, err, what);
        TU_CHECK(!q[k].active, "[%s rank %d] %s: still active after the wait", t->tag, g_rank, what);
    }
    wf_status st = cm_settle(c, &err);
    EXPECT_OK(t, st, err, what);
    for (int k = 0; k < 2; k++) {
        tbuf_pull(&r[k]);
        for (int p = 0; p < np; p++)
            check_pat(tbuf_data(&r[k]) + (size_t)p * n, n, p, me, salt[k], t->tag, what);
        TU_CHECK(tbuf_guards_ok(&r[k]), "[%s rank %d] %s: guard bytes overwritten", t->tag, g_rank,
                 what);
    }
    want w = {0};
    w.calls[CM_ALLTOALL] = 2;
    w.bytes[CM_ALLTOALL] = 2 * n * (size_t)(np - 1);
    check_stats(t, &before, &w, what);
    for (int k = 0; k < 2; k++) {
        tbuf_free(&s[k]);
        tbuf_free(&r[k]);
    }
}

static void test_allgather_n(tctx *t, size_t n) {
    cm_comm *c = t->c;
    int me = c->rank, np = c->size;
    uint32_t salt = ++t->salt;
    char what[64];
    snprintf(what, sizeof what, "allgather %zu B", n);
    tbuf s, r;
    tbuf_init(&s, t->dev, n);
    tbuf_init(&r, t->dev, n * (size_t)np);
    fill_pat(tbuf_data(&s), n, me, -1, salt);
    tbuf_push(&s);
    cm_stats before = c->stats;
    wf_err err = {0};
    wf_status st = cm_allgather(c, tbuf_ptr(&s), tbuf_ptr(&r), n, &err);
    EXPECT_OK(t, st, err, what);
    tbuf_pull(&r);
    for (int p = 0; p < np; p++)
        check_pat(tbuf_data(&r) + (size_t)p * n, n, p, -1, salt, t->tag, what);
    TU_CHECK(tbuf_guards_ok(&r), "[%s rank %d] %s: guard bytes overwritten", t->tag, g_rank, what);
    want w = {0};
    w.calls[CM_ALLGATHER] = 1;
    w.bytes[CM_ALLGATHER] = n * (size_t)(np - 1);
    check_stats(t, &before, &w, what);
    tbuf_free(&s);
    tbuf_free(&r);
}

/* counts[r] = count(pattern, r, np) */
static size_t gv_count(int pattern, int r, int np) {
    switch (pattern) {
    case 0: return r % 3 == 1 ? 0 : 1 + 977 * (size_t)r + 13 * (size_t)r * (size_t)r;
    case 1: return r == np - 1 ? 0 : 4099 - (size_t)r;
    default: return 0;
    }
}

static void test_allgatherv_p(tctx *t, int pattern) {
    cm_comm *c = t->c;
    int me = c->rank, np = c->size;
    uint32_t salt = ++t->salt;
    char what[64];
    snprintf(what, sizeof what, "allgatherv pattern %d", pattern);
    size_t *counts = malloc((size_t)np * sizeof *counts), total = 0;
    if (!counts) MPI_Abort(MPI_COMM_WORLD, 1);
    for (int p = 0; p < np; p++) total += counts[p] = gv_count(pattern, p, np);
    tbuf s, r;
    tbuf_init(&s, t->dev, counts[me]);
    tbuf_init(&r, t->dev, total);
    fill_pat(tbuf_data(&s), counts[me], me, -1, salt);
    tbuf_push(&s);
    cm_stats before = c->stats;
    wf_err err = {0};
    wf_status st = cm_allgatherv(c, tbuf_ptr(&s), tbuf_ptr(&r), counts, &err);
    EXPECT_OK(t, st, err, what);
    tbuf_pull(&r);
    size_t off = 0;
    for (int p = 0; p < np; p++) {
        check_pat(tbuf_data(&r) + off, counts[p], p, -1, salt, t->tag, what);
        off += counts[p];
    }
    TU_CHECK(tbuf_guards_ok(&r), "[%s rank %d] %s: guard bytes overwritten", t->tag, g_rank, what);
    want w = {0};
    w.calls[CM_ALLGATHER] = 1;
    w.bytes[CM_ALLGATHER] = counts[me] * (size_t)(np - 1);
    check_stats(t, &before, &w, what);
    tbuf_free(&s);
    tbuf_free(&r);
    free(counts);
}

static void test_bcast(tctx *t) {
    cm_comm *c = t->c;
    int me = c->rank, np = c->size;
    for (int root = 0; root < np; root++) {
        size_t sizes[] = {0, 1, 5003 + (size_t)root};
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            size_t n = sizes[k];
            uint32_t salt = ++t->salt;
            char what[64];
            snprintf(what, sizeof what, "bcast %zu B from %d", n, root);
            tbuf b;
            tbuf_init(&b, t->dev, n);
            /* non-roots hold something else, which must be overwritten */
            fill_pat(tbuf_data(&b), n, me == root ? root : 100 + me, -2, salt);
            tbuf_push(&b);
            cm_stats before = c->stats;
            wf_err err = {0};
            wf_status st = cm_bcast(c, tbuf_ptr(&b), n, root, &err);
            EXPECT_OK(t, st, err, what);
            tbuf_pull(&b);
            check_pat(tbuf_data(&b), n, root, -2, salt, t->tag, what);
            TU_CHECK(tbuf_guards_ok(&b), "[%s rank %d] %s: guard bytes overwritten", t->tag,
                     g_rank, what);
            want w = {0};
            w.calls[CM_BCAST] = 1;
            w.bytes[CM_BCAST] = me == root && np > 1 ? n : 0;
            check_stats(t, &before, &w, what);
            tbuf_free(&b);
        }
    }
}

static void test_barrier(tctx *t) {
    cm_stats before = t->c->stats;
    wf_err err = {0};
    wf_status st = cm_barrier(t->c, &err);
    EXPECT_OK(t, st, err, "barrier");
    want w = {0};
    w.calls[CM_BARRIER] = 1;
    check_stats(t, &before, &w, "barrier");
}

/* cm_agree: all OK; then the last rank fails (and, when np >= 3, rank 1 too with a lower code):
 * every rank gets the worst status, the others with the failing rank's message. */
static void test_agree(tctx *t) {
    cm_stats before = t->c->stats;
    wf_err err = {0};
    wf_status st = cm_agree(t->c, WF_OK, "agree test", &err);
    EXPECT_OK(t, st, err, "agree (all OK)");
    const int n = t->c->size, last = n - 1;
    wf_status mine = WF_OK;
    if (g_rank == last) mine = wf_fail(&err, WF_EIO, "disk full on rank %d", g_rank);
    else if (g_rank == 1) mine = wf_fail(&err, WF_EINVAL, "a lesser failure on rank 1");
    st = cm_agree(t->c, mine, "agree test", &err);
    char want_msg[128];
    snprintf(want_msg, sizeof want_msg, "agree test: rank %d of %d failed: disk full on rank %d",
             last, n, last);
    TU_CHECK(st == WF_EIO, "[%s rank %d] agree: status %d, want WF_EIO", t->tag, g_rank, (int)st);
    char own[64];
    snprintf(own, sizeof own, "disk full on rank %d", last);
    TU_CHECK(!strcmp(err.msg, g_rank == last ? own : want_msg),
             "[%s rank %d] agree: message '%s', want '%s'", t->tag, g_rank, err.msg,
             g_rank == last ? "(its own)" : want_msg);
    want w = {0};
    w.calls[CM_AGREE] = 2;
    check_stats(t, &before, &w, "agree");
}

/* ---- point to point ---- */

/* size of the ring message from rank r */
static size_t ring_n(int r) { return 1000 + 37 * (size_t)r; }

/* Even ranks send first, odd ranks receive first: no cycle of blocking sends, at any np >= 2. */
static void test_ring(tctx *t) {
    cm_comm *c = t->c;
    int me = c->rank, np = c->size;
    if (np < 2) return; /* a blocking send to oneself has no partner; sendrecv covers np = 1 */
    int right = (me + 1) % np, left = (me + np - 1) % np;
    uint32_t salt = ++t->salt;
    tbuf s, r;
    tbuf_init(&s, t->dev, ring_n(me));
    tbuf_init(&r, t->dev, ring_n(left));
    fill_pat(tbuf_data(&s), s.n, me, right, salt);
    tbuf_push(&s);
    for (int step = 0; step < 2; step++) {
        bool sending = (step == 0) == (me % 2 == 0);
        cm_stats before = c->stats;
        wf_err err = {0};
        want w = {0};
        if (sending) {
            wf_status st = cm_send(c, tbuf_ptr(&s), s.n, right, 5, &err);
            EXPECT_OK(t, st, err, "ring send");
            w.calls[CM_SEND] = 1;
            w.bytes[CM_SEND] = s.n;
            check_stats(t, &before, &w, "ring send");
        } else {
            wf_status st = cm_recv(c, tbuf_ptr(&r), r.n, left, 5, &err);
            EXPECT_OK(t, st, err, "ring recv");
            w.calls[CM_RECV] = 1;
            w.bytes[CM_RECV] = r.n;
            check_stats(t, &before, &w, "ring recv");
        }
    }
    tbuf_pull(&r);
    check_pat(tbuf_data(&r), r.n, left, me, salt, t->tag, "ring recv");
    TU_CHECK(tbuf_guards_ok(&r), "[%s rank %d] ring: guard bytes overwritten", t->tag, g_rank);
    tbuf_free(&s);
    tbuf_free(&r);
}

/* size of the halo that rank r sends */
static size_t halo_n(int r) { return 500 + 11 * (size_t)r; }

/* One sendrecv: to dst (or -1), from src (or -1). null_absent: the absent side passes NULL and 0
 * bytes; otherwise it passes a real buffer, which must stay untouched. */
static void sendrecv_once(tctx *t, int dst, int src, bool null_absent, const char *what) {
    cm_comm *c = t->c;
    int me = c->rank;
    uint32_t salt = ++t->salt;
    size_t sn = halo_n(me), rn = src >= 0 ? halo_n(src) : 77;
    if (null_absent && dst < 0) sn = 0;
    if (null_absent && src < 0) rn = 0;
    tbuf s, r;
    tbuf_init(&s, t->dev, sn);
    tbuf_init(&r, t->dev, rn);
    fill_pat(tbuf_data(&s), sn, me, dst, salt);
    tbuf_push(&s);
    cm_stats before = c->stats;
    wf_err err = {0};
    wf_status st = cm_sendrecv(c, null_absent && dst < 0 ? NULL : tbuf_ptr(&s), sn, dst,
                               null_absent && src < 0 ? NULL : tbuf_ptr(&r), rn, src, 9, &err);
    EXPECT_OK(t, st, err, what);
    tbuf_pull(&r);
    if (src >= 0)
        check_pat(tbuf_data(&r), rn, src, me, salt, t->tag, what);
    else
        TU_CHECK(all_sent(tbuf_data(&r), rn), "[%s rank %d] %s: no source, yet the receive "
                 "buffer changed", t->tag, g_rank, what);
    TU_CHECK(tbuf_guards_ok(&r), "[%s rank %d] %s: guard bytes overwritten", t->tag, g_rank, what);
    want w = {0};
    w.calls[CM_SEND] = dst >= 0;
    w.bytes[CM_SEND] = dst >= 0 ? sn : 0;
    w.calls[CM_RECV] = src >= 0;
    w.bytes[CM_RECV] = src >= 0 ? rn : 0;
    check_stats(t, &before, &w, what);
    tbuf_free(&s);
    tbuf_free(&r);
}

static void test_sendrecv(tctx *t) {
    int me = t->c->rank, np = t->c->size;
    int next = me + 1 < np ? me + 1 : -1, prev = me > 0 ? me - 1 : -1;
    sendrecv_once(t, next, prev, false, "halo rightwards");
    sendrecv_once(t, prev, next, true, "halo leftwards (NULL ends)");
    sendrecv_once(t, (me + 1) % np, (me + np - 1) % np, false, "periodic sendrecv");
}

/* ---- groups ---- */

static void test_split(cm_comm *world) {
    int me = world->rank, np = world->size;
    /* color: rank parity; the last rank of 3 or more stays out. key: reversed rank. */
#define COLOR(r) (np >= 3 && (r) == np - 1 ? -1 : (r) % 2)
    int color = COLOR(me);
    uint64_t world_gathers = world->stats.calls[CM_ALLGATHER];
    cm_comm *g = (cm_comm *)1;
    wf_err err = {0};
    wf_status st = cm_split(world, color, -me, "parity", &g, &err);
    TU_CHECK(st == WF_OK, "[split rank %d] cm_split: %s", g_rank, err.msg);
    if (st != WF_OK) return;
    if (color < 0) {
        TU_CHECK(g == NULL, "[split rank %d] color -1 should give NULL", g_rank);
        return;
    }
    TU_CHECK(g != NULL, "[split rank %d] color %d gave NULL", g_rank, color);
    if (!g) return;
    int members = 0, above = 0;
    for (int r = 0; r < np; r++)
        if (COLOR(r) == color) {
            members++;
            above += r > me;
        }
#undef COLOR
    TU_CHECK(g->size == members && g->rank == above,
             "[split rank %d] group rank %d of %d, want %d of %d", g_rank, g->rank, g->size, above,
             members);
    TU_CHECK(!strcmp(g->name, "parity") && g->backend == CM_MPI, "[split rank %d] name '%s'",
             g_rank, g->name);
    cm_stats zero;
    memset(&zero, 0, sizeof zero);
    TU_CHECK(!memcmp(&g->stats, &zero, sizeof zero), "[split rank %d] new group's counters not 0",
             g_rank);
    /* who is in the group, in group order: world ranks of this color, descending */
    int *got = malloc((size_t)g->size * sizeof *got);
    if (!got) MPI_Abort(MPI_COMM_WORLD, 1);
    st = cm_allgather(g, &me, got, sizeof me, &err);
    TU_CHECK(st == WF_OK, "[split rank %d] allgather in group: %s", g_rank, err.msg);
    for (int k = 0, r = np - 1; st == WF_OK && k < g->size; r--) {
        if (r < 0 || (np >= 3 && r == np - 1) || r % 2 != color) continue;
        TU_CHECK(got[k] == r, "[split rank %d] group rank %d is world rank %d, want %d", g_rank,
                 k, got[k], r);
        k++;
    }
    TU_CHECK(g->stats.calls[CM_ALLGATHER] == 1 && world->stats.calls[CM_ALLGATHER] == world_gathers,
             "[split rank %d] counters are per communicator", g_rank);
    st = cm_barrier(g, &err);
    TU_CHECK(st == WF_OK, "[split rank %d] barrier in group: %s", g_rank, err.msg);
    free(got);
    cm_free(&g);
    TU_CHECK(g == NULL, "[split rank %d] cm_free must NULL the pointer", g_rank);
    cm_free(&g);  /* accepts NULL */
    cm_free(NULL);
}

/* ---- bad input: local checks, no communication, nothing counted ---- */

static void test_bad(tctx *t) {
    cm_comm *c = t->c;
    int np = c->size;
    char want_peer[48];
    cm_stats before = c->stats;
    wf_err err = {0};
    void *p = NULL; /* never touched: each call is refused before it reads a buffer */
    wf_status st = cm_send(c, p, 8, np, 1, &err);
    snprintf(want_peer, sizeof want_peer, "peer %d", np);
    TU_CHECK(st == WF_EINVAL && strstr(err.msg, want_peer) && strstr(err.msg, c->name),
             "[%s rank %d] send to peer %d: %s '%s'", t->tag, g_rank, np, wf_status_str(st),
             err.msg);
    st = cm_recv(c, p, 8, -1, 1, &err);
    TU_CHECK(st == WF_EINVAL && strstr(err.msg, "peer -1"), "[%s rank %d] recv from -1: %s '%s'",
             t->tag, g_rank, wf_status_str(st), err.msg);
    st = cm_bcast(c, p, 8, np, &err);
    TU_CHECK(st == WF_EINVAL && strstr(err.msg, want_peer), "[%s rank %d] bcast root %d: %s '%s'",
             t->tag, g_rank, np, wf_status_str(st), err.msg);
    st = cm_sendrecv(c, p, 8, np + 3, p, 8, -1, 1, &err);
    snprintf(want_peer, sizeof want_peer, "peer %d", np + 3);
    TU_CHECK(st == WF_EINVAL && strstr(err.msg, want_peer),
             "[%s rank %d] sendrecv to %d: %s '%s'", t->tag, g_rank, np + 3, wf_status_str(st),
             err.msg);
    st = cm_sendrecv(c, p, 8, -1, p, 8, np, 1, &err);
    TU_CHECK(st == WF_EINVAL, "[%s rank %d] sendrecv from %d: %s '%s'", t->tag, g_rank, np,
             wf_status_str(st), err.msg);
    want w = {0};
    check_stats(t, &before, &w, "refused calls");
}

/* ---- messages over 2^31 bytes (WANFARM_TEST_BIG=1) ---- */

#define BIG_P2P (((size_t)1 << 31) + 4099) /* three pieces of comm.c's 1 GiB */
#define BIG_A2A (((size_t)1 << 31) + 13)   /* a block over INT_MAX */

static void test_big(tctx *t) {
    cm_comm *c = t->c;
    int me = c->rank, np = c->size;
    if (me == 0) printf("[%s] big messages: %zu B send/recv and sendrecv, %zu B a block "
                        "all-to-all\n", t->tag, BIG_P2P, BIG_A2A);
    /* send/recv in pairs (0,1), (2,3), ...: there and back */
    int mate = me % 2 ? me - 1 : me + 1;
    if (mate < np) {
        uint32_t salt = ++t->salt;
        tbuf b;
        tbuf_init(&b, t->dev, BIG_P2P);
        for (int step = 0; step < 2; step++) {
            int sender = step == 0 ? (me & ~1) : (me | 1), receiver = sender ^ 1;
            cm_stats before = c->stats;
            wf_err err = {0};
            want w = {0};
            if (me == sender) {
                fill_pat(tbuf_data(&b), b.n, me, receiver, salt + (uint32_t)step);
                tbuf_push(&b);
                wf_status st = cm_send(c, tbuf_ptr(&b), b.n, receiver, 3, &err);
                EXPECT_OK(t, st, err, "big send");
                w.calls[CM_SEND] = 1;
                w.bytes[CM_SEND] = b.n;
            } else {
                memset(tbuf_data(&b), SENT, b.n);
                tbuf_push(&b);
                wf_status st = cm_recv(c, tbuf_ptr(&b), b.n, sender, 3, &err);
                EXPECT_OK(t, st, err, "big recv");
                tbuf_pull(&b);
                check_pat(tbuf_data(&b), b.n, sender, me, salt + (uint32_t)step, t->tag,
                          "big recv");
                TU_CHECK(tbuf_guards_ok(&b), "[%s rank %d] big recv: guards", t->tag, g_rank);
                w.calls[CM_RECV] = 1;
                w.bytes[CM_RECV] = b.n;
            }
            check_stats(t, &before, &w, "big send/recv");
        }
        t->salt++;
        tbuf_free(&b);
    }
    /* sendrecv round the ring (to oneself at np = 1) */
    {
        uint32_t salt = ++t->salt;
        int right = (me + 1) % np, left = (me + np - 1) % np;
        tbuf s, r;
        tbuf_init(&s, t->dev, BIG_P2P);
        tbuf_init(&r, t->dev, BIG_P2P);
        fill_pat(tbuf_data(&s), s.n, me, right, salt);
        tbuf_push(&s);
        cm_stats before = c->stats;
        wf_err err = {0};
        wf_status st = cm_sendrecv(c, tbuf_ptr(&s), s.n, right, tbuf_ptr(&r), r.n, left, 4, &err);
        EXPECT_OK(t, st, err, "big sendrecv");
        tbuf_free(&s);
        tbuf_pull(&r);
        check_pat(tbuf_data(&r), r.n, left, me, salt, t->tag, "big sendrecv");
        TU_CHECK(tbuf_guards_ok(&r), "[%s rank %d] big sendrecv: guards", t->tag, g_rank);
        want w = {0};
        w.calls[CM_SEND] = w.calls[CM_RECV] = 1;
        w.bytes[CM_SEND] = w.bytes[CM_RECV] = BIG_P2P;
        check_stats(t, &before, &w, "big sendrecv");
        tbuf_free(&r);
    }
    test_alltoall_n(t, BIG_A2A);
}

/* ---- one backend's whole set of data checks ---- */

static void run_data_checks(tctx *t, bool big) {
    for (size_t k = 0; k < NSIZES; k++) test_alltoall_n(t, k_sizes[k]);
    for (size_t k = 0; k < NSIZES; k++) test_ialltoall_n(t, k_sizes[k]);
    for (size_t k = 0; k < NSIZES; k++) test_allgather_n(t, k_sizes[k]);
    for (int p = 0; p < 3; p++) test_allgatherv_p(t, p);
    test_ring(t);
    test_sendrecv(t);
    test_bcast(t);
    test_barrier(t);
    if (!t->dev) test_agree(t); /* a control exchange on host memory, whatever the backend */
    test_bad(t);
    if (big) test_big(t);
}

/* ---- NCCL ---- */

#ifdef WANFARM_HAVE_CUDA
/* A collective failure: rank 0 (or, with no GPU, every rank) names a device that cannot be
 * bound. Every rank must come back with WF_ECUDA naming the communicator, and stay on MPI. */
static void test_nccl_refusal(cm_comm *world, int ndev) {
    cm_comm *c = NULL;
    wf_err err = {0};
    wf_status st = cm_split(world, 0, world->rank, "nccl-bad", &c, &err);
    TU_CHECK(st == WF_OK && c, "[nccl rank %d] split: %s", g_rank, err.msg);
    if (st != WF_OK || !c) return;
    int device = c->rank == 0 || ndev == 0 ? ndev : cm_local_rank() % ndev;
    st = cm_enable_nccl(c, device, &err);
    TU_CHECK(st == WF_ECUDA && strstr(err.msg, "nccl-bad") && c->backend == CM_MPI,
             "[nccl rank %d] device %d on rank 0: want every rank to fail with WF_ECUDA, got %s "
             "'%s'", g_rank, device, wf_status_str(st), err.msg);
    if (c->rank == 0 || ndev == 0)
        TU_CHECK(strstr(err.msg, "cudaSetDevice") != NULL, "[nccl rank %d] '%s'", g_rank,
                 err.msg);
    else
        TU_CHECK(strstr(err.msg, "rank 0 could not bind") != NULL, "[nccl rank %d] '%s'", g_rank,
                 err.msg);
    cm_free(&c);
}

/* Whether every rank of the node gets a GPU of its own at cm_local_rank() % ndev (by PCI bus id,
 * so that one visible GPU a rank, as SLURM binds them, counts as well as all GPUs visible). */
static bool own_gpu_each(int ndev, int lr, char *why, size_t cap) {
    enum { BUS = 32 };
    char bus[BUS] = "";
    if (ndev > 0 && cudaDeviceGetPCIBusId(bus, BUS, lr % ndev) != cudaSuccess) bus[0] = 0;
    MPI_Comm node;
    int nlocal = 1, me = 0;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &nlocal);
    MPI_Comm_rank(node, &me);
    char *all = calloc((size_t)nlocal, BUS);
    if (!all) MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Allgather(bus, BUS, MPI_CHAR, all, BUS, MPI_CHAR, node);
    MPI_Comm_free(&node);
    bool ok = bus[0] != 0;
    if (!ok) snprintf(why, cap, "node rank %d found no usable GPU", me);
    for (int r = 0; ok && r < nlocal; r++)
        if (r != me && !strncmp(all + (size_t)r * BUS, bus, BUS)) {
            ok = false;
            snprintf(why, cap, "node ranks %d and %d would share GPU %s (%d visible); NCCL needs "
                     "a GPU per rank: run with np <= GPUs per node", me, r, bus, ndev);
        }
    free(all);
    return ok;
}

static void test_nccl(cm_comm *world, bool big) {
    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess) ndev = 0;
    int lr = cm_local_rank();
    char why[256] = "";
    int mine = own_gpu_each(ndev, lr, why, sizeof why), all = 0, most = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&ndev, &most, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (!all) {
        if (most == 0) {
            if (g_rank == 0)
                printf("NCCL checks skipped: no CUDA device (cudaGetDeviceCount: %s); checked "
                       "that cm_enable_nccl fails on every rank\n",
                       e == cudaSuccess ? "0 devices" : cudaGetErrorString(e));
            /* without any GPU the collective refusal is still checkable, and must not hang */
            test_nccl_refusal(world, 0);
        } else {
            /* the first rank with a reason says it */
            int first = 0, cand = mine ? world->size : g_rank;
            MPI_Allreduce(&cand, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
            if (g_rank == first) printf("NCCL checks skipped: world rank %d: %s\n", g_rank, why);
        }
        return;
    }
    cm_comm *c = NULL;
    wf_err err = {0};
    wf_status st = cm_split(world, 0, world->rank, "nccl", &c, &err);
    TU_CHECK(st == WF_OK && c, "[nccl rank %d] split: %s", g_rank, err.msg);
    if (st != WF_OK || !c) return;
    int device = lr % ndev;
    st = cm_enable_nccl(c, device, &err);
    TU_CHECK(st == WF_OK && c->backend == CM_NCCL && c->device == device,
             "[nccl rank %d] cm_enable_nccl(device %d): %s", g_rank, device, err.msg);
    int ok = st == WF_OK, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (all_ok) {
        if (g_rank == 0) printf("NCCL checks: %d rank(s), %d GPU(s) a node\n", world->size, ndev);
        tctx t = {.c = c, .dev = true, .tag = "nccl", .salt = 1000};
        run_data_checks(&t, big);
        /* a second switch is refused, and leaves the comm working */
        st = cm_enable_nccl(c, device, &err);
        TU_CHECK(st == WF_EINVAL && c->backend == CM_NCCL, "[nccl rank %d] second enable: %s",
                 g_rank, err.msg);
    }
    cm_free(&c);
    TU_CHECK(c == NULL, "[nccl rank %d] cm_free must NULL the pointer", g_rank);
    if (all_ok) test_nccl_refusal(world, ndev);
}

/* cm_enable_device: NCCL when the ranks have a GPU each, else (ranks sharing one, which NCCL
 * refuses) MPI through host memory; the same data and counter checks on device buffers, on a
 * stream of the test's, as a backend's queue would be. */
static void test_device_comm(cm_comm *world, bool big) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess) ndev = 0;
    int fewest = 0;
    MPI_Allreduce(&ndev, &fewest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (fewest == 0) {
        if (g_rank == 0) printf("device-buffer checks (cm_enable_device) skipped: no GPU\n");
        return;
    }
    char why[256];
    const int device = cm_local_rank() % ndev;
    const bool own = own_gpu_each(ndev, cm_local_rank(), why, sizeof why);
    int own_all = 0, mine = own;
    MPI_Allreduce(&mine, &own_all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    cudaSetDevice(device);
    cudaStream_t stream = NULL;
    TU_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess,
             "[device rank %d] stream", g_rank);
    cm_comm *c = NULL;
    wf_err err = {0};
    wf_status st = cm_split(world, 0, world->rank, "device data", &c, &err);
    if (!st) st = cm_enable_device(c, device, stream, &err);
    const cm_backend want = own_all ? CM_NCCL : CM_STAGED;
    TU_CHECK(st == WF_OK && c->backend == want && c->stream == stream,
             "[device rank %d] cm_enable_device: %s (backend %d, want %d)", g_rank, err.msg,
             c ? (int)c->backend : -1, (int)want);
    int ok = st == WF_OK, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (all_ok) {
        if (g_rank == 0)
            printf("device-buffer checks: %d rank(s), %s\n", world->size,
                   want == CM_NCCL ? "NCCL (a GPU each)" : "MPI through host memory (a shared GPU)");
        tctx t = {.c = c, .dev = true, .tag = want == CM_NCCL ? "device/nccl" : "device/staged",
                  .salt = 2000};
        run_data_checks(&t, big);
    }
    cm_free(&c);
    cudaStreamDestroy(stream);
}
#else
static void test_device_comm(cm_comm *world, bool big) {
    (void)big;
    wf_err err = {0};
    wf_status st = cm_enable_device(world, 0, NULL, &err);
    TU_CHECK(st == WF_EUNSUPPORTED && world->backend == CM_MPI,
             "rank %d: cm_enable_device in a CPU build: %s '%s'", g_rank, wf_status_str(st),
             err.msg);
}
static void test_nccl(cm_comm *world, bool big) {
    (void)big;
    wf_err err = {0};
    wf_status st = cm_enable_nccl(world, 0, &err);
    TU_CHECK(st == WF_EUNSUPPORTED && strstr(err.msg, "CUDA build") && world->backend == CM_MPI,
             "rank %d: cm_enable_nccl in a CPU build: %s '%s'", g_rank, wf_status_str(st),
             err.msg);
    if (g_rank == 0) printf("NCCL checks skipped: this build has no CUDA (refusal checked)\n");
}
#endif

/* GPU binding (bind.c) with the UUIDs of imagined GPUs: every rank of the node must take its own
 * device, or all fail together with the message. nlocal: the ranks on this node. */
static void test_bind(cm_comm *world, int nlocal) {
    char ids[4][CM_GPU_ID_LEN];
    for (int k = 0; k < 4; k++) snprintf(ids[k], sizeof ids[k], "GPU-imagined-%d", k);
    char own[1][CM_GPU_ID_LEN]; /* one device per task, as srun --gpus-per-task=1 shows it */
    snprintf(own[0], sizeof own[0], "GPU-task-%d", g_rank);
    cm_gpu_binding b;
    wf_err err = {0};
    TU_CHECK(cm_bind_pick(0, 2) == 0 && cm_bind_pick(3, 2) == 1 && cm_bind_pick(5, 8) == 5 &&
                 cm_bind_pick(1, 0) == -1,
             "cm_bind_pick");
    /* four visible GPUs, every one visible to every rank: rank r takes device r */
    wf_status st = cm_bind_gpu(world, 4, (const char (*)[CM_GPU_ID_LEN])ids, false, &b, &err);
    TU_CHECK(st == WF_OK && b.local_size == nlocal && b.device == b.local_rank &&
                 !strcmp(b.uuid, ids[b.local_rank]),
             "rank %d: 4 visible GPUs: %s (device %d, local rank %d)", g_rank, err.msg, b.device,
             b.local_rank);
    /* one per task: index 0 each, all different */
    st = cm_bind_gpu(world, 1, (const char (*)[CM_GPU_ID_LEN])own, false, &b, &err);
    TU_CHECK(st == WF_OK && b.device == 0 && !strcmp(b.uuid, own[0]),
             "rank %d: one GPU per task: %s", g_rank, err.msg);
    /* two visible GPUs for more than two ranks: every rank fails, naming two ranks on one GPU */
    st = cm_bind_gpu(world, 2, (const char (*)[CM_GPU_ID_LEN])ids, false, &b, &err);
    if (nlocal > 2)
        TU_CHECK(st == WF_EINVAL && strstr(err.msg, "would share GPU GPU-imagined-0") &&
                     strstr(err.msg, "WANFARM_SHARE_GPU"),
                 "rank %d: %d ranks on 2 GPUs: status %d, '%s'", g_rank, nlocal, (int)st, err.msg);
    else
        TU_CHECK(st == WF_OK, "rank %d: %d ranks on 2 GPUs: %s", g_rank, nlocal, err.msg);
    /* ... unless sharing is allowed */
    st = cm_bind_gpu(world, 1, (const char (*)[CM_GPU_ID_LEN])ids, true, &b, &err);
    TU_CHECK(st == WF_OK && b.device == 0, "rank %d: sharing allowed: %s", g_rank, err.msg);
    /* the last rank sees no GPU: all fail, its message names CUDA_VISIBLE_DEVICES */
    const bool none = g_rank == world->size - 1;
    st = cm_bind_gpu(world, none ? 0 : 4, (const char (*)[CM_GPU_ID_LEN])ids, false, &b, &err);
    TU_CHECK(st == WF_EUNSUPPORTED && strstr(err.msg, "sees no GPU") &&
                 (none || strstr(err.msg, "GPU binding: rank")),
             "rank %d: a rank without a GPU: status %d, '%s'", g_rank, (int)st, err.msg);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    const char *bv = getenv("WANFARM_TEST_BIG");
    bool big = bv && !strcmp(bv, "1");

    cm_comm *world = NULL;
    wf_err err = {0};
    wf_status st = cm_world(&world, &err);
    if (st != WF_OK) {
        fprintf(stderr, "rank %d: cm_world: %s\n", g_rank, err.msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    TU_CHECK(world->rank == g_rank && world->backend == CM_MPI && world->device == -1 &&
                 !strcmp(world->name, "world"),
             "rank %d: cm_world gave rank %d backend %d device %d name '%s'", g_rank, world->rank,
             (int)world->backend, world->device, world->name);
    if (g_rank == 0)
        printf("test_comm: np %d%s\n", world->size, big ? ", big messages" : "");

    /* node-local rank: the launcher's variable or MPI's shared-memory split, same answer */
    MPI_Comm node;
    int nlocal = 1, node_rank = 0, lr = cm_local_rank();
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &nlocal);
    MPI_Comm_rank(node, &node_rank);
    MPI_Comm_free(&node);
    TU_CHECK(lr >= 0 && lr < nlocal, "rank %d: cm_local_rank() = %d, node rank %d of %d", g_rank,
             lr, node_rank, nlocal);

    test_bind(world, nlocal);

    tctx t = {.c = world, .dev = false, .tag = "mpi", .salt = 0};
    run_data_checks(&t, big);
    test_split(world);

    /* the counters' helpers */
    cm_stats total;
    memset(&total, 0, sizeof total);
    cm_stats_add(&total, &world->stats);
    cm_stats_add(&total, &world->stats);
    TU_CHECK(total.calls[CM_ALLTOALL] == 2 * world->stats.calls[CM_ALLTOALL] &&
                 total.bytes[CM_BCAST] == 2 * world->stats.bytes[CM_BCAST],
             "rank %d: cm_stats_add", g_rank);
    TU_CHECK(!strcmp(cm_op_name(CM_ALLTOALL), "alltoall") && !strcmp(cm_op_name(CM_BARRIER),
                                                                        "barrier"),
             "cm_op_name");
    cm_stats_reset(world);
    TU_CHECK(world->stats.calls[CM_ALLTOALL] == 0 && world->stats.seconds[CM_BARRIER] == 0,
             "rank %d: cm_stats_reset", g_rank);

    test_nccl(world, big);
    test_device_comm(world, big);

    int failures = 0;
    MPI_Allreduce(&tu_failures, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (g_rank == 0)
        printf("test_comm np %d: %s (%d failure(s) over all ranks)\n", world->size,
               failures ? "FAILED" : "OK", failures);
    cm_free(&world);
    MPI_Finalize();
    return failures ? 1 : 0;
}
