/* cuda_gemm_util.cuh: what cuda_matmul.cu and cuda_conv.cu share (C++/nvcc only, prefix wk_tile_
 * and wk_table).
 *
 * What it is:
 *   - wk_tile_gemm_kernel<Op>: the tiled SIMT GEMM that runs what cuBLASLt or cuDNN cannot
 *     (C[m, n] = sum_k A(m, k) B(n, k), f32 accumulation in fmaf order k = 0, 1, ..., any M, N,
 *     K). 64 x 64 output tiles, K in steps of 16 through shared memory, 256 threads with 4 x 4
 *     outputs each. Op supplies the loads and the store, so the same kernel is the matmul
 *     fallback (A = x rows, B = w rows) and the implicit-GEMM convolution (A = the input window
 *     of an output position, B = the permuted filter): Op::arow(m) is computed once per row and
 *     thread, Op::acol(k) once per K step, Op::a(row, col), Op::b(n, k), Op::store(m, n, v).
 *   - wk_table<K, V>: a small open-addressing hash table (host memory) for the per-shape plan
 *     caches. Keys are plain structs, zeroed before they are filled (hashed and compared as
 *     bytes); values are plain structs the owner destroys (wk_table_free's callback).
 * What it is not: a fast GEMM (it is the fallback; the fast paths are cuBLASLt and cuDNN).
 * Tested by: tests/test_backend_ops.c (the matmul and conv rows whose shapes cuBLASLt/cuDNN
 * refuse, and WANFARM_CUDA_GEMM=simt / WANFARM_CUDA_CONV=own forcing the fallbacks).
 */
#ifndef WK_CUDA_GEMM_UTIL_CUH
#define WK_CUDA_GEMM_UTIL_CUH

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WK_TILE_M 64
#define WK_TILE_N 64
#define WK_TILE_K 16
#define WK_TILE_THREADS 256

/* grid for M x N outputs: x over N tiles, y over M tiles (capped; the kernel loops over the
 * rest) */
static inline dim3 wk_tile_grid(int64_t M, int64_t N) {
    int64_t nt = (N + WK_TILE_N - 1) / WK_TILE_N, mt = (M + WK_TILE_M - 1) / WK_TILE_M;
    if (mt > 65535) mt = 65535;
    return dim3((unsigned)nt, (unsigned)(mt > 0 ? mt : 1), 1);
}

template <class Op>
__global__ void __launch_bounds__(WK_TILE_THREADS, 2)
    wk_tile_gemm_kernel(Op op, int64_t M, int64_t N, int64_t K) {
    __shared__ float As[WK_TILE_K][WK_TILE_M + 4]; /* As[k][m]: A's tile, transposed */
    __shared__ float Bs[WK_TILE_K][WK_TILE_N + 4]; /* Bs[k][n] */
    const int tid = threadIdx.x;
    const int lk = tid % WK_TILE_K, lr = tid / WK_TILE_K; /* load: k column, first row (0..15) */
    const int tx = tid % 16, ty = tid / 16;               /* compute: n = tx + 16 j, m = ty + 16 i */
    const int64_t n0 = (int64_t)blockIdx.x * WK_TILE_N;
    const int64_t mtiles = (M + WK_TILE_M - 1) / WK_TILE_M;
    for (int64_t mt = blockIdx.y; mt < mtiles; mt += gridDim.y) {
        const int64_t m0 = mt * WK_TILE_M;
        typename Op::ARow rows[4];
        bool row_ok[4], col_ok[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int64_t m = m0 + lr + 16 * i, n = n0 + lr + 16 * i;
            row_ok[i] = m < M;
            col_ok[i] = n < N;
            rows[i] = op.arow(row_ok[i] ? m : 0);
        }
        float acc[4][4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
        for (int64_t k0 = 0; k0 < K; k0 += WK_TILE_K) {
            const int64_t k = k0 + lk;
            const bool k_ok = k < K;
            const typename Op::ACol col = op.acol(k_ok ? k : 0);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                As[lk][lr + 16 * i] = (k_ok && row_ok[i]) ? op.a(rows[i], col) : 0.0f;
                Bs[lk][lr + 16 * i] = (k_ok && col_ok[i]) ? op.b(n0 + lr + 16 * i, k) : 0.0f;
            }
            __syncthreads();
#pragma unroll
            for (int kk = 0; kk < WK_TILE_K; kk++) {
                float a[4], b[4];
#pragma unroll
                for (int i = 0; i < 4; i++) a[i] = As[kk][ty + 16 * i];
#pragma unroll
                for (int j = 0; j < 4; j++) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
            }
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int64_t m = m0 + ty + 16 * i;
            if (m >= M) continue;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int64_t n = n0 + tx + 16 * j;
                if (n < N) op.store(m, n, acc[i][j]);
            }
        }
    }
}

/* ---- the open-addressing table ---- */

template <class K, class V> struct wk_table {
    struct slot {
        uint64_t hash;
        int used;
        K key;
        V val;
    };
    slot *s;
    size_t cap, n;
};

static inline uint64_t wk_table_hash(const void *p, size_t len) {
    const unsigned char *b = (const unsigned char *)p;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h ? h : 1;
}

/* The value stored under key, or NULL. */
template <class K, class V> V *wk_table_find(wk_table<K, V> *t, const K *key) {
    if (!t->cap) return NULL;
    const uint64_t h = wk_table_hash(key, sizeof *key);
    for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        typename wk_table<K, V>::slot *sl = &t->s[i];
        if (!sl->used) return NULL;
        if (sl->hash == h && memcmp(&sl->key, key, sizeof *key) == 0) return &sl->val;
    }
}

/* Places (key, zeroed value) in a table with room (no growth). */
template <class K, class V> V *wk_table_place(wk_table<K, V> *t, const K *key, uint64_t h) {
    size_t i = h & (t->cap - 1);
    while (t->s[i].used) i = (i + 1) & (t->cap - 1);
    t->s[i].used = 1;
    t->s[i].hash = h;
    t->s[i].key = *key;
    memset(&t->s[i].val, 0, sizeof t->s[i].val);
    t->n++;
    return &t->s[i].val;
}

/* A new zeroed value under key (which must not be there yet); NULL when out of host memory.
 * Keeps the load at most 1/2 (doubling, from 64 slots). */
template <class K, class V> V *wk_table_insert(wk_table<K, V> *t, const K *key) {
    typedef typename wk_table<K, V>::slot slot;
    if (2 * (t->n + 1) > t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        slot *s = (slot *)calloc(cap, sizeof(slot));
        if (!s) return NULL;
        slot *old = t->s;
        size_t ocap = t->cap;
        t->s = s;
        t->cap = cap;
        t->n = 0;
        for (size_t i = 0; i < ocap; i++)
            if (old[i].used) *wk_table_place(t, &old[i].key, old[i].hash) = old[i].val;
        free(old);
    }
    return wk_table_place(t, key, wk_table_hash(key, sizeof *key));
}

/* Calls destroy on every value, then frees the slots; the table is empty afterwards. */
template <class K, class V, class Ctx>
void wk_table_free(wk_table<K, V> *t, void (*destroy)(Ctx *ctx, V *v), Ctx *ctx) {
    for (size_t i = 0; i < t->cap; i++)
        if (t->s[i].used && destroy) destroy(ctx, &t->s[i].val);
    free(t->s);
    t->s = NULL;
    t->cap = t->n = 0;
}

#endif
