/* bench_util.h: the helpers under the bench engine (prefix bu_): timing, a seeded RNG, random
 * tensors, the measured sgemm peak, peak RSS, reading tensors back, relative L2, finding and
 * running the PyTorch peer, writing a checkpoint from a child process.
 * What it is not: the bench engine (bench_engine.h: flags, rows, table, footer, JSON).
 * Used by bench_engine.c and the bench plug-ins (bench_*.c).
 */
#ifndef BU_BENCH_UTIL_H
#define BU_BENCH_UTIL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

double bu_now_s(void);                       /* monotonic seconds */
uint64_t bu_rng_next(uint64_t *s);           /* splitmix64 */
double bu_rng_uniform(uint64_t *s);          /* [0, 1) */
uint64_t bu_name_seed(const char *name);     /* FNV-1a of a tensor name: order-independent values */
void bu_fill_normal(float *x, size_t n, double mean, double std, uint64_t seed);
int bu_cmp_double(const void *a, const void *b); /* for qsort */
double bu_mib(double bytes);
double bu_peak_rss_mib(void);                /* this process's peak RSS */
void bu_remove_dir(const char *dir);         /* the regular files in dir, then dir */
void bu_json_str_copy(json_t *o, const char *key, char *dst, size_t n);
/* A malloc'd copy of F32 tensor `name` of f with exactly this shape; NULL and `why` otherwise. */
float *bu_load_f32(const st_file *f, const char *name, int ndim, const uint64_t *shape, char *why,
                   size_t nwhy);
double bu_rel_l2(const float *a, const float *ref, size_t n); /* ||a - ref|| / ||ref|| */
json_t *bu_real_or_null(double v);
/* The best of up to ten 2048^3 f32 sgemm calls (after a warm-up) on `threads` threads, GFLOP/s:
 * the practical f32 peak every bench reports its %peak against. */
double bu_measure_peak(int threads);

/* The PyTorch peer. bu_find_python: WANFARM_TORCH_PYTHON, else ~/.venvs/ref/bin/python, which
 * must import `modules` ("torch, diffusers"); 0 on success, else -1 and `why`.
 * bu_run_peer: runs `script` (in WANFARM_BENCH_DIR) with `args` under that python with
 * OMP_NUM_THREADS=threads, and returns an array of the lines of its output that are JSON objects,
 * when it exits 0 and one of them holds `key`; NULL and `why` (exit status and last output line)
 * otherwise. The caller decrefs. */
int bu_find_python(const char *modules, char *py, size_t npy, char *why, size_t nwhy);
json_t *bu_run_peer(const char *py, const char *bench_dir, const char *script, const char *args,
                    int threads, const char *key, char *why, size_t nwhy);
double bu_json_num_or_nan(json_t *o, const char *key);

/* Makes a fresh $TMPDIR/<bench>.XXXXXX folder into dir and runs write(dir, ctx) in a child process,
 * so the memory of generating random checkpoints never counts in the bench's peak RSS and no
 * OpenMP thread exists yet when it forks. 0 on success (seconds taken in *secs); otherwise prints
 * why, removes the folder unless keep, and returns non-zero. */
int bu_write_in_child(const char *bench, int (*write)(const char *dir, const void *ctx),
                      const void *ctx, int keep, char *dir, size_t ndir, double *secs);

/* A --latent value: "F,H,W" or, with the channels, "C,F,H,W" (C must be cin). 0 on success. */
int bu_parse_latent(const char *v, int64_t cin, int64_t *F, int64_t *H, int64_t *W);

/* A PyTorch peer run (bench/torch_*_peer.py) and what it reported. */
typedef struct bu_peer {
    int ran;
    char why[256];           /* reason when skipped or failed */
    char torch[64], lib[64]; /* versions: torch and the peer library (diffusers, transformers) */
    char str[64];            /* the spec's str_key value ("" when none) */
    double ms, load_s, rss_mib, rss_import_mib;
    double num;              /* the spec's num_key value (NaN when none) */
} bu_peer;

typedef struct bu_peer_spec {
    const char *modules;  /* python modules it needs: "torch, diffusers" */
    const char *script;   /* in bench_dir: "torch_dit_peer.py" */
    const char *need_key; /* a key its JSON line must have (bu_run_peer) */
    const char *lib_key;  /* the peer library's version key: "diffusers" */
    const char *str_key;  /* NULL, or one more string to keep in str */
    const char *num_key;  /* NULL, or one more number to keep in num */
} bu_peer_spec;

/* Runs the peer on `dir` with the arguments every model peer takes ('dir' 'dir/inputs.safetensors'
 * 'dir/torch_out.safetensors' --threads --warmup --iters) plus `extra` (may be ""), and fills p.
 * On any failure p->ran is 0 and p->why says why. */
void bu_peer_run(bu_peer *p, const bu_peer_spec *s, const char *bench_dir, const char *dir,
                 int threads, int warm, int iters, const char *extra);

/* n values N(mean, std) seeded by the tensor's name (bu_name_seed), stored as dtype dt: a malloc'd
 * buffer (free()), or NULL when out of memory. The random weights of the bench checkpoints. */
void *bu_random_tensor(const char *name, size_t n, double mean, double std, wk_dtype dt);

#endif
