/* bench_engine.h: the bench engine (prefix bn_), in the nccl-tests shape: one driver, and each
 * bench a plug-in of a few functions.
 *
 * What it is: bn_main parses the flags every bench shares (-w, -n, --threads, --check, --json and,
 * where the plug-in takes them, --dtype, --torch, --keep) and the plug-in's own (a table), prints
 * the usage, creates the CPU backend and measures the sgemm peak, runs the PyTorch peer, times each
 * row (-w warm-up calls, -n timed calls, their median), checks it, prints the table (the
 * plug-in's columns and the engine's metrics beside the correctness column), the footer (peak
 * after, peak RSS, "Out of bounds values : N OK|FAILED") and writes the JSON report. A plug-in
 * (bn_bench) holds what is its own: flags, columns, setup, one call of a row, its reference, its
 * header and footer lines and JSON keys. Every hook may be NULL.
 * What it is not: the benches' maths (FLOP counts, checkpoints, references stay in the plug-ins),
 * a test harness, or an MPI layer (bench_dist's hooks do the MPI; non-root ranks run quiet).
 * Used by every bench/bench_*.c; metrics: bench/PERFORMANCE.md. Run any bench with --help.
 */
#ifndef BN_BENCH_ENGINE_H
#define BN_BENCH_ENGINE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "bench_util.h"

#define BN_REL_L2_TOL 1e-4 /* an output check's bound on ||ours - ref|| / ||ref||: PERFORMANCE.md */

typedef struct bn_run bn_run;

/* One flag of a plug-in (a table ending with a NULL name), stored at dst: 'i' an int and 'l' an
 * int64_t in [lo, hi], 's' the string, 'p' parse(v, dst) == 0. arg NULL: a switch without a value
 * that sets the int at dst to 1. arg is what the usage shows: "[--layers N]". */
typedef struct bn_flag {
    const char *name, *arg;
    char kind;
    void *dst;
    long long lo, hi;
    int (*parse)(const char *v, void *dst);
} bn_flag;

/* The flags every bench takes: -w N, -n N, --threads N (0: all cores), --check 0|1, --json FILE;
 * and those a plug-in asks for in bn_bench.flags (with what else the engine does for it). */
enum {
    BN_DTYPE = 1,     /* --dtype f32|bf16 (the storage dtype; JSON "dtype") */
    BN_TORCH = 2,     /* --torch 0|1 (the peer hook runs) */
    BN_KEEP = 4,      /* --keep 0|1 (bn_run.dir is kept) */
    BN_BACKEND = 8,   /* a CPU backend with --threads threads before setup */
    BN_PEAK = 16,     /* the sgemm peak: header lines, "peak after", %peak, JSON */
    BN_AVERAGES = 32, /* footer: Avg % of peak and Geomean ratio (torch/ours), after the verdict */
};

typedef struct bn_opts {
    int warm, iters, threads, check, torch, keep;
    const char *json, *dtype; /* --json FILE (NULL: none); --dtype's name */
    wk_dtype wdt;
} bn_opts;

/* A column: header, unit line ("(MiB)"; NULL none), width (negative: left-aligned) and what fills
 * it: BN_TEXT the row's cell[] from the plug-in, else an engine metric, printed with fmt (NULL:
 * "%.1f"), "n/a" where the row has none. */
enum { BN_TEXT, BN_MS, BN_TORCH_MS, BN_RATIO, BN_GFLOPS, BN_PCT, BN_ERROR, BN_WRONG, BN_REF,
       BN_ARENA, BN_WS, BN_RSS, BN_TORCH_RSS };
typedef struct bn_col {
    const char *name, *unit;
    int width, what;
    const char *fmt;
} bn_col;

#define BN_CELLS 20
#define BN_CELL 96

/* A row of the table. The plug-in's row hook sets the cells, flops, torch_ms, arena_mib and, for
 * an output check, out/nout, name and partner; the engine times it and checks it. */
typedef struct bn_row {
    char cell[BN_CELLS][BN_CELL]; /* BN_TEXT cells; the first nkeys name the row */
    const char *name;             /* the row as another row's reference ("whole"), or NULL */
    wf_status st;                 /* not WF_OK: the row failed, err says why */
    char err[512];                /* or, when it ran with #wrong > 0, why (printed under it) */
    double flops;                 /* per call */
    double ms, gflops, pct;       /* median time, flops / median, % of the peak */
    double torch_ms;              /* the peer's time for this row (NaN: none) */
    double arena_mib, ws_mib, rss_mib;
    float *out;                   /* what one call writes, for the output check (NULL: none) */
    size_t nout;
    int partner;                  /* without the peer, the row checked against this one's out */
    const char *ref;              /* the check's reference: "torch", a partner's name, "self", or
                                   * the plug-in's own check; NULL: not checked */
    double error;                 /* rel-L2 against ref, or the plug-in's error measure */
    long wrong;                   /* out-of-bounds values (#wrong) */
    int calls, self_same;         /* calls run; first and last output bit-identical (-1: unknown) */
} bn_row;

typedef wf_status (*bn_call_fn)(bn_run *e, int row, int call, wf_err *err);

/* A bench: its name, flags and columns, and its hooks in the order bn_main calls them. */
typedef struct bn_bench {
    const char *name;      /* "bench_dit": messages, the JSON "bench" */
    const char *note;      /* the usage's last line */
    const bn_flag *flags;  /* its own flags */
    unsigned flag_set;     /* BN_* above */
    int warm, iters;       /* -w and -n defaults */
    const bn_col *cols;    /* the table */
    int ncols, nkeys;      /* columns; the first nkeys name a row (printed before FAILED) */
    const char *peer_lib;  /* "diffusers": the peer's library (peer line, RSS line, JSON key) */
    int json_digits;       /* significant digits of JSON reals (0: 6) */
    int quiet;             /* print nothing on stdout (bench_dist's ranks > 0) */
    /* flags parsed: check them (2 and a message: bad value), write the checkpoint (1: failed) */
    int (*init)(bn_run *e);
    /* backend ready: load, allocate, set e->nrows, print the bench's header lines */
    wf_status (*setup)(bn_run *e, wf_err *err);
    /* run the peer into e->peer (ran 0 and why when it cannot); detail: the peer line's (...) */
    void (*peer)(bn_run *e, char *detail, size_t n);
    wf_status (*row)(bn_run *e, int i, bn_row *r, wf_err *err); /* prepare row i */
    bn_call_fn run;        /* one call of row i, timed; NULL: rows are not timed */
    /* the peer's output for row i (NULL: unreadable). Set: rows are checked by their out (rel-L2
     * vs the peer, else vs the partner, else self bit-identity) after every row ran. */
    const float *(*reference)(bn_run *e, int i);
    void (*row_done)(bn_run *e, int i, bn_row *r); /* after the calls: own checks, frees */
    void (*footer)(bn_run *e);                     /* lines before the verdict */
    void (*json)(bn_run *e, json_t *o);            /* the report's own keys */
    void (*row_json)(bn_run *e, int i, const bn_row *r, json_t *jr); /* NULL: no "rows" */
    void (*teardown)(bn_run *e);                   /* frees; may clear e->ok */
} bn_bench;

/* What a run holds; the hooks read and fill it. */
struct bn_run {
    const bn_bench *b;
    bn_opts o;
    wk_backend *be;             /* BN_BACKEND, or the plug-in's; destroyed by the engine */
    double peak, peak_after;    /* GFLOP/s (BN_PEAK) */
    int noisy;                  /* the two peaks differ by more than 15% */
    char dir[1100];             /* the plug-in's temporary folder: removed at the end unless --keep */
    double write_s;             /* seconds the plug-in took to write it */
    bu_peer peer;               /* the PyTorch peer (ran 0: why) */
    bn_row *rows;
    int nrows;
    double rss_mib;             /* peak RSS before the footer */
    long out_of_bounds;         /* sum of #wrong over the rows that ran */
    int failed_runs, ok;
};

/* Runs bench b on argv: the exit status (0 OK, 1 FAILED, 2 bad flags). */
int bn_main(const bn_bench *b, int argc, char **argv);

/* ncalls calls of run(e, row, call): calls [warm, warm + iters) are timed into times[]; with r,
 * r->calls counts them and, when r->out is set, r->self_same compares the first output with the
 * last. Stops at the first failure. */
wf_status bn_time(bn_run *e, bn_call_fn run, int row, int ncalls, bn_row *r, double *times,
                  wf_err *err);
double bn_median(double *t, int n); /* sorts t */

/* A --rows LIST: on[k] = 1 for each of the n names the comma-separated list holds. 0, or -1 when
 * it holds another name or none. */
int bn_pick_rows(const char *list, const char *const *names, int n, int *on);

/* Tensor `name` [shape] of e->dir/torch_out.safetensors (malloc'd), or NULL after printing why. */
float *bn_peer_output(const bn_run *e, const char *name, int ndim, const uint64_t *shape);

/* A timed row's JSON keys (ms, gflops, pct_peak, torch_ms, ratio; with an output check also ok,
 * gflop, check, rel_l2, self_identical, arena_mib, ws_mib, rss_mib, torch_rss_mib, error). */
void bn_row_json(const bn_run *e, const bn_row *r, json_t *o);

#endif
