/* bench_engine.c: the bench engine (see bench_engine.h): flags and usage, backend and peak, the
 * peer, the timing loop, the table, the checks, the footer and the JSON report.
 * What it is not: any bench's own maths (the plug-ins in bench_*.c).
 * Run: through any bench, e.g. build/bench/bench_ops --op all --sizes small.
 */
#include "bench_engine.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

/* printf, but nothing on a quiet rank */
static void say(const bn_run *e, const char *fmt, ...) {
    if (e->b->quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------------ */
/* flags */

static int parse_dtype(const char *v, void *dst) {
    bn_opts *o = dst;
    o->wdt = !strcmp(v, "f32") ? WK_F32 : !strcmp(v, "bf16") ? WK_BF16 : WK_DTYPE_COUNT;
    o->dtype = v;
    return o->wdt == WK_DTYPE_COUNT ? -1 : 0;
}

/* The common flags (those with a bit only where the plug-in asks for them) into f; their count. */
static int common_flags(bn_run *e, bn_flag *f) {
    const bn_flag all[] = {{"-w", "N", 'i', &e->o.warm, 0, 1000000, NULL},
                           {"-n", "N", 'i', &e->o.iters, 1, 1000000, NULL},
                           {"--threads", "N", 'i', &e->o.threads, 0, 4096, NULL},
                           {"--check", "0|1", 'i', &e->o.check, 0, 1, NULL},
                           {"--dtype", "f32|bf16", 'p', &e->o, 0, 0, parse_dtype},
                           {"--torch", "0|1", 'i', &e->o.torch, 0, 1, NULL},
                           {"--json", "FILE", 's', &e->o.json, 0, 0, NULL},
                           {"--keep", "0|1", 'i', &e->o.keep, 0, 1, NULL}};
    const unsigned bits[] = {0, 0, 0, 0, BN_DTYPE, BN_TORCH, 0, BN_KEEP};
    int n = 0;
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if ((bits[i] & ~e->b->flag_set) == 0) f[n++] = all[i];
    return n;
}

/* usage: ARGV0 [the plug-in's flags] [the common ones], wrapped; then the plug-in's note. */
static void usage(bn_run *e, const char *argv0) {
    if (e->b->quiet) return;
    bn_flag all[64];
    int n = 0;
    for (const bn_flag *f = e->b->flags; f && f->name && n < 56; f++) all[n++] = *f;
    n += common_flags(e, all + n);
    int col = fprintf(stderr, "usage: %s", argv0);
    for (int i = 0; i < n; i++) {
        char item[96];
        int k = snprintf(item, sizeof item, " [%s%s%s]", all[i].name, all[i].arg ? " " : "",
                         all[i].arg ? all[i].arg : "");
        if (col + k > 96) col = fprintf(stderr, "\n         ");
        col += fprintf(stderr, "%s", item);
    }
    fprintf(stderr, "\n%s\n", e->b->note);
}

/* Stores v per f; 0, or -1 when it is not a valid value. */
static int store(const bn_flag *f, const char *v) {
    if (f->kind == 's') *(const char **)f->dst = v;
    if (f->kind == 'p') return f->parse(v, f->dst);
    if (f->kind != 'i' && f->kind != 'l') return 0;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < f->lo || x > f->hi) return -1;
    if (f->kind == 'i') *(int *)f->dst = (int)x;
    else *(int64_t *)f->dst = x;
    return 0;
}

/* -1 to go on, else the exit status (0 after --help, 2 for a bad flag). */
static int parse(bn_run *e, int argc, char **argv) {
    bn_flag common[8];
    const int nc = common_flags(e, common);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(e, argv[0]);
            return 0;
        }
        const bn_flag *f = e->b->flags;
        while (f && f->name && strcmp(f->name, a)) f++;
        if (!f || !f->name)
            for (f = common; f < common + nc && strcmp(f->name, a); f++) {}
        char why[300] = "", range[64] = "";
        if (f == common + nc) {
            snprintf(why, sizeof why, "unknown option %.100s", a);
        } else if (!f->arg) {
            *(int *)f->dst = 1;
        } else if (!v) {
            snprintf(why, sizeof why, "%s needs a value", a);
        } else if (store(f, v)) {
            if (f->kind == 'i' || f->kind == 'l')
                snprintf(range, sizeof range, " (%lld..%lld)", f->lo, f->hi);
            snprintf(why, sizeof why, "bad value %s %.100s%s", a, v, range);
        } else {
            i++;
        }
        if (*why) {
            if (!e->b->quiet) fprintf(stderr, "%s: %s\n", e->b->name, why);
            usage(e, argv[0]);
            return 2;
        }
    }
    return -1;
}

int bn_pick_rows(const char *list, const char *const *names, int n, int *on) {
    char buf[256];
    int any = 0;
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = 0;
        while (k < n && strcmp(t, names[k])) k++;
        if (k == n) return -1;
        on[k] = any = 1;
    }
    return any ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------ */
/* timing and checks */

double bn_median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, bu_cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

wf_status bn_time(bn_run *e, bn_call_fn run, int row, int ncalls, bn_row *r, double *times,
                  wf_err *err) {
    const int warm = e->o.warm, iters = e->o.iters;
    float *first = NULL;
    wf_status st = WF_OK;
    for (int c = 0; c < ncalls && !st; c++) {
        double t0 = bu_now_s();
        st = run(e, row, c, err);
        double t = bu_now_s() - t0;
        if (c >= warm && c < warm + iters) times[c - warm] = t;
        if (!r) continue;
        r->calls++;
        if (c == 0 && !st && r->out && (first = malloc(r->nout * sizeof *first)))
            memcpy(first, r->out, r->nout * sizeof *first);
    }
    if (!st && r && first && r->calls >= 2)
        r->self_same = memcmp(first, r->out, r->nout * sizeof *first) == 0;
    free(first);
    return st;
}

/* What an output check compares row r with (before the row runs, only "self" or not matters). */
static const char *ref_kind(const bn_run *e, const bn_row *r) {
    if (!e->o.check) return NULL;
    if (e->peer.ran) return "torch";
    return r->partner >= 0 ? e->rows[r->partner].name : "self";
}

/* The output check: NaN/Inf anywhere, then rel-L2 against the peer's output or the partner's, or
 * first vs last call. */
static void check_output(bn_run *e, int i, bn_row *r) {
    for (size_t k = 0; k < r->nout; k++) r->wrong += !isfinite(r->out[k]);
    if (!(r->ref = ref_kind(e, r))) return;
    if (!strcmp(r->ref, "self")) {
        r->wrong += r->self_same != 1;
        return;
    }
    const bn_row *p = r->partner >= 0 ? &e->rows[r->partner] : NULL;
    const float *ref = e->peer.ran ? e->b->reference(e, i) : p->st ? NULL : p->out;
    if (ref) r->error = bu_rel_l2(r->out, ref, r->nout);
    if (!(r->error <= BN_REL_L2_TOL)) r->wrong++; /* NaN too */
}

float *bn_peer_output(const bn_run *e, const char *name, int ndim, const uint64_t *shape) {
    char path[1200], why[512] = "";
    wf_err err = {0};
    st_file *f = NULL;
    float *v = NULL;
    snprintf(path, sizeof path, "%s/torch_out.safetensors", e->dir);
    if (st_open(&f, path, &err) == WF_OK) v = bu_load_f32(f, name, ndim, shape, why, sizeof why);
    else snprintf(why, sizeof why, "%.400s", err.msg);
    st_close(&f);
    if (!v) say(e, "# FAILED reading torch's output '%s': %s\n", name, why);
    return v;
}

/* ------------------------------------------------------------------------------------------ */
/* the table */

static void print_head(const bn_run *e) {
    const bn_bench *b = e->b;
    int units = 0;
    say(e, "#\n#");
    for (int c = 0; c < b->ncols; c++) {
        say(e, " %*s", b->cols[c].width, b->cols[c].name);
        units |= b->cols[c].unit != NULL;
    }
    say(e, "\n");
    if (!units) return;
    say(e, "#");
    for (int c = 0; c < b->ncols; c++)
        say(e, " %*s", b->cols[c].width, b->cols[c].unit ? b->cols[c].unit : "");
    say(e, "\n");
}

/* Column c of row r into cell. */
static void format_cell(const bn_run *e, const bn_row *r, const bn_col *col, char *cell) {
    const char *fmt = col->fmt ? col->fmt : "%.1f";
    const int checked = r->ref != NULL, peer = e->peer.ran;
    double v = NAN;
    switch (col->what) {
    case BN_TEXT: snprintf(cell, BN_CELL, "%s", r->cell[col - e->b->cols]); return;
    case BN_REF: snprintf(cell, BN_CELL, "%s", checked ? r->ref : "n/a"); return;
    case BN_WRONG:
        if (checked) snprintf(cell, BN_CELL, "%ld", r->wrong);
        else snprintf(cell, BN_CELL, "n/a");
        return;
    case BN_ERROR: /* a self check: "same" (with a ref column), "self:same" (without) */
        if (checked && !strcmp(r->ref, "self")) {
            int ref_col = 0;
            for (int c = 0; c < e->b->ncols; c++) ref_col |= e->b->cols[c].what == BN_REF;
            snprintf(cell, BN_CELL, "%s%s", ref_col ? "" : "self:",
                     r->self_same == 1 ? "same" : "DIFF");
        } else if (checked) {
            snprintf(cell, BN_CELL, fmt, r->error); /* NaN shows as nan: a failed comparison */
        } else {
            snprintf(cell, BN_CELL, "n/a");
        }
        return;
    case BN_MS: v = r->ms; break;
    case BN_TORCH_MS: v = r->torch_ms; break;
    case BN_RATIO: v = r->torch_ms / r->ms; break;
    case BN_GFLOPS: v = r->gflops; break;
    case BN_PCT: v = r->pct; break;
    case BN_ARENA: v = r->arena_mib; break;
    case BN_WS: v = r->ws_mib; break;
    case BN_RSS: v = r->rss_mib; break;
    case BN_TORCH_RSS: v = peer ? e->peer.rss_mib : NAN; break;
    }
    if (isfinite(v)) snprintf(cell, BN_CELL, fmt, v);
    else snprintf(cell, BN_CELL, "n/a");
}

/* Prints row r and adds it to the totals. */
static void finish_row(bn_run *e, const bn_row *r) {
    const bn_bench *b = e->b;
    char cell[BN_CELL];
    say(e, " ");
    for (int c = 0; c < (r->st ? b->nkeys : b->ncols); c++) {
        format_cell(e, r, &b->cols[c], cell);
        say(e, " %*s", b->cols[c].width, cell);
    }
    if (r->st) say(e, " FAILED: %s\n", r->err);
    else say(e, r->wrong && r->err[0] ? "\n#   ^ %s\n" : "\n", r->err);
    fflush(stdout);
    if (r->st) e->failed_runs++;
    else e->out_of_bounds += r->wrong;
}

/* Every row: prepared, timed, checked, printed (rows with an output check after all ran, since
 * one may be another's reference). */
static void run_rows(bn_run *e) {
    const bn_bench *b = e->b;
    wf_err err = {0};
    double *times = malloc((size_t)e->o.iters * sizeof *times);
    if (e->nrows && (!(e->rows = calloc((size_t)e->nrows, sizeof *e->rows)) || !times)) {
        say(e, "# FAILED: out of memory for %d rows\n", e->nrows);
        e->failed_runs++;
        e->nrows = 0;
    }
    for (int i = 0; i < e->nrows; i++) {
        bn_row *r = &e->rows[i];
        *r = (bn_row){.ms = NAN, .gflops = NAN, .pct = NAN, .torch_ms = NAN, .arena_mib = NAN,
                      .ws_mib = NAN, .rss_mib = NAN, .error = NAN, .partner = -1, .self_same = -1};
        r->st = b->row ? b->row(e, i, r, &err) : WF_OK;
        if (!r->st && b->run) {
            const char *ref = b->reference ? ref_kind(e, r) : NULL;
            const int n = e->o.warm + e->o.iters;
            const int extra = ref && !strcmp(ref, "self") && n < 2; /* a self check needs 2 calls */
            r->st = bn_time(e, b->run, i, n + extra, r, times, &err);
            if (!r->st) {
                double med = bn_median(times, e->o.iters);
                r->ms = med * 1e3;
                r->gflops = r->flops * 1e-9 / med;
                r->pct = 100.0 * r->gflops / e->peak;
            }
            if (e->be) r->ws_mib = bu_mib((double)e->be->ws_cap);
            r->rss_mib = bu_peak_rss_mib();
        }
        if (r->st && !r->err[0])
            snprintf(r->err, sizeof r->err, "%s: %.480s", wf_status_str(r->st), err.msg);
        if (b->row_done) b->row_done(e, i, r);
        if (!b->reference) finish_row(e, r);
    }
    for (int i = 0; b->reference && i < e->nrows; i++) {
        if (!e->rows[i].st) check_output(e, i, &e->rows[i]);
        finish_row(e, &e->rows[i]);
    }
    free(times);
}

/* ------------------------------------------------------------------------------------------ */
/* the peer, the footer, the report */

static void run_peer(bn_run *e, wf_status setup) {
    const bn_bench *b = e->b;
    char detail[600] = "", lib[96] = "";
    e->peer.num = NAN;
    if (!b->peer) return;
    if (!e->o.torch) snprintf(e->peer.why, sizeof e->peer.why, "--torch 0");
    else if (setup) snprintf(e->peer.why, sizeof e->peer.why, "our setup failed");
    else b->peer(e, detail, sizeof detail);
    if (b->peer_lib) snprintf(lib, sizeof lib, ", %s %s", b->peer_lib, e->peer.lib);
    if (e->peer.ran)
        say(e, "# torch peer: torch %s%s, %d threads (%s)\n", e->peer.torch, lib, e->o.threads,
            detail);
    else say(e, "# torch peer: skipped (%s)\n", e->peer.why);
}

static void print_footer(bn_run *e) {
    const bn_bench *b = e->b;
    e->rss_mib = bu_peak_rss_mib(); /* before the second peak measurement, which allocates */
    if (b->flag_set & BN_PEAK) {
        e->peak_after = bu_measure_peak(e->o.threads);
        e->noisy = fabs(e->peak_after - e->peak) > 0.15 * fmax(e->peak, e->peak_after);
        say(e, "# peak after: %.1f GFLOP/s%s\n", e->peak_after,
            e->noisy ? " -- moved by more than 15%: the machine is loaded, timings are noisy" : "");
    }
    if (b->footer) b->footer(e);
    if (b->peer_lib && e->peer.ran)
        say(e, "# Peak RSS (MiB) : ours %.1f, torch %.1f (of which %.1f after importing torch and "
            "%s)\n", e->rss_mib, e->peer.rss_mib, e->peer.rss_import_mib, b->peer_lib);
    else if (b->peer_lib) say(e, "# Peak RSS (MiB) : ours %.1f\n", e->rss_mib);
    e->ok = e->out_of_bounds == 0 && e->failed_runs == 0;
    say(e, "# Out of bounds values : %ld %s\n", e->out_of_bounds, e->ok ? "OK" : "FAILED");
    if (e->failed_runs) say(e, "# Failed runs : %d\n", e->failed_runs);
    if (b->flag_set & BN_AVERAGES) {
        double pct = 0, lsum = 0;
        int n = 0, nr = 0;
        for (int i = 0; i < e->nrows; i++) {
            const bn_row *r = &e->rows[i];
            if (r->st) continue;
            pct += r->pct;
            n++;
            if (isfinite(r->torch_ms / r->ms) && r->torch_ms > 0) {
                lsum += log(r->torch_ms / r->ms);
                nr++;
            }
        }
        say(e, "# Avg %% of peak : %.1f\n", n ? pct / n : 0.0);
        if (e->peer.ran && nr) say(e, "# Geomean ratio (torch/ours) : %.2f\n", exp(lsum / nr));
    }
    fflush(stdout);
}

void bn_row_json(const bn_run *e, const bn_row *r, json_t *o) {
    const int good = !r->st, peer = e->peer.ran;
    json_object_set_new(o, "ms", bu_real_or_null(good ? r->ms : NAN));
    json_object_set_new(o, "gflops", bu_real_or_null(good ? r->gflops : NAN));
    json_object_set_new(o, "pct_peak", bu_real_or_null(good ? r->pct : NAN));
    json_object_set_new(o, "torch_ms", bu_real_or_null(r->torch_ms));
    json_object_set_new(o, "ratio", bu_real_or_null(good ? r->torch_ms / r->ms : NAN));
    if (!e->b->reference) return;
    json_object_set_new(o, "ok", json_boolean(good));
    json_object_set_new(o, "gflop", bu_real_or_null(r->flops * 1e-9));
    json_object_set_new(o, "check", r->ref ? json_string(r->ref) : json_null());
    json_object_set_new(o, "rel_l2", bu_real_or_null(r->error));
    json_object_set_new(o, "self_identical",
                        r->self_same < 0 ? json_null() : json_boolean(r->self_same));
    json_object_set_new(o, "arena_mib", bu_real_or_null(r->arena_mib));
    json_object_set_new(o, "ws_mib", bu_real_or_null(good ? r->ws_mib : NAN));
    json_object_set_new(o, "rss_mib", bu_real_or_null(good ? r->rss_mib : NAN));
    json_object_set_new(o, "torch_rss_mib", bu_real_or_null(peer ? e->peer.rss_mib : NAN));
    json_object_set_new(o, "error", good ? json_null() : json_string(r->err));
}

/* The JSON report: the engine's keys around the plug-in's. 0, or -1 after printing why. */
static int write_report(bn_run *e) {
    const bn_bench *b = e->b;
    const int peer = e->peer.ran;
    json_t *o = json_object(), *rows = b->row_json ? json_array() : NULL;
    json_object_set_new(o, "bench", json_string(b->name));
    if (b->flag_set & BN_PEAK) {
        json_object_set_new(o, "threads", json_integer(e->o.threads));
        json_object_set_new(o, "peak_gflops", bu_real_or_null(e->peak));
        json_object_set_new(o, "peak_gflops_after", bu_real_or_null(e->peak_after));
        json_object_set_new(o, "noisy", json_boolean(e->noisy));
        json_object_set_new(o, "warmup", json_integer(e->o.warm));
        json_object_set_new(o, "iters", json_integer(e->o.iters));
    }
    if (b->flag_set & BN_DTYPE) json_object_set_new(o, "dtype", json_string(e->o.dtype));
    if (b->peer) json_object_set_new(o, "torch", peer ? json_string(e->peer.torch) : json_null());
    if (b->peer_lib)
        json_object_set_new(o, b->peer_lib, peer ? json_string(e->peer.lib) : json_null());
    if (b->json) b->json(e, o);
    for (int i = 0; b->row_json && i < e->nrows; i++) {
        json_t *jr = json_object();
        b->row_json(e, i, &e->rows[i], jr);
        if (b->run) bn_row_json(e, &e->rows[i], jr);
        json_array_append_new(rows, jr);
    }
    if (rows) json_object_set_new(o, "rows", rows);
    if (b->peer_lib) {
        json_object_set_new(o, "rss_mib", bu_real_or_null(e->rss_mib));
        json_object_set_new(o, "torch_rss_mib", bu_real_or_null(peer ? e->peer.rss_mib : NAN));
        json_object_set_new(o, "torch_rss_import_mib",
                            bu_real_or_null(peer ? e->peer.rss_import_mib : NAN));
    }
    json_object_set_new(o, "out_of_bounds", json_integer(e->out_of_bounds));
    json_object_set_new(o, "failed_runs", json_integer(e->failed_runs));
    json_object_set_new(o, "ok", json_boolean(e->ok));
    FILE *f = fopen(e->o.json, "w");
    const size_t flags = JSON_INDENT(1) | JSON_REAL_PRECISION(b->json_digits ? b->json_digits : 6);
    int r = f ? json_dumpf(o, f, flags) : -1;
    if (f && (fputc('\n', f) == EOF || fclose(f) != 0)) r = -1;
    if (r) fprintf(stderr, "%s: cannot write %s: %s\n", b->name, e->o.json, strerror(errno));
    json_decref(o);
    return r ? -1 : 0;
}

/* ------------------------------------------------------------------------------------------ */

int bn_main(const bn_bench *b, int argc, char **argv) {
    bn_run run = {.b = b, .o = {.warm = b->warm, .iters = b->iters, .check = 1, .torch = 1,
                                .dtype = "f32", .wdt = WK_F32}};
    bn_run *e = &run;
    wf_err err = {0};
    int rc = parse(e, argc, argv);
    if (rc >= 0) return rc;
    if (b->init && (rc = b->init(e)) != 0) {
        if (rc == 2) usage(e, argv[0]);
        return rc;
    }
    if (b->flag_set & BN_BACKEND) {
        if (wk_backend_cpu_new(&e->be, e->o.threads, &err) != WF_OK) {
            fprintf(stderr, "%s: %s\n", b->name, err.msg);
            if (e->dir[0] && !e->o.keep) bu_remove_dir(e->dir);
            return 1;
        }
        e->o.threads = e->be->nthreads;
        omp_set_num_threads(e->o.threads);
    }
    if (b->flag_set & BN_PEAK) {
        e->peak = bu_measure_peak(e->o.threads);
        say(e, "# %s: wanfarm CPU backend, %d threads, OpenBLAS %s\n", b->name, e->o.threads,
            openblas_get_config());
        say(e, "# peak: %.1f GFLOP/s (f32 cblas_sgemm 2048^3, best of <= 10 calls after a "
            "warm-up)\n", e->peak);
    }
    wf_status st = b->setup ? b->setup(e, &err) : WF_OK;
    fflush(stdout);
    if (st) {
        say(e, "# FAILED before the rows: %s: %s\n", wf_status_str(st), err.msg);
        e->failed_runs++;
        e->nrows = 0;
    }
    run_peer(e, st);
    print_head(e);
    fflush(stdout);
    run_rows(e);
    print_footer(e);
    if (e->o.json && !b->quiet && write_report(e)) e->ok = 0;
    if (b->teardown) b->teardown(e);
    if (e->dir[0] && e->o.keep) say(e, "# kept %s\n", e->dir);
    else if (e->dir[0]) bu_remove_dir(e->dir);
    wk_backend_destroy(&e->be);
    free(e->rows);
    return e->ok ? 0 : 1;
}
