/* test_ops.c: the table-driven op test (main), in the manner of llama.cpp's test-backend-ops and
 * the report format of nccl-tests.
 *
 * What it is: runs every row of ops_basic_cases (tests/ops_basic.c) and ops_heavy_cases
 * (tests/ops_heavy.c) on the CPU backend, twice each with fresh random inputs, and prints one row
 * per case: op, description, weight dtype, normalised error, tolerance, time of the second run and
 * the result (ok, FAIL, not supported, ERROR: <message>). A case fails when its error exceeds the
 * tolerance, its output is corrupt (guard bytes, NaN/Inf where the reference is finite), the op
 * returns an error, or the second run grows the backend workspace (a steady-state step must not
 * allocate). The footer counts cases, failures and unsupported ones, then says OK or FAILED.
 * What it is not: a benchmark (bench/bench_ops), nor a test of ops outside the backend table.
 * Run: test_ops [--seed S] [--filter SUBSTRING] [--threads N] [--list]; exits 1 on any failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_ops.h"

#define DEFAULT_SEED 1234

wk_tensor ops_weight(wk_dtype dt, float *vals, int ndim, const int64_t *shape, void **storage) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    *storage = malloc(n ? n * wk_dtype_size(dt) : 1);
    if (*storage) {
        wk_convert_from_f32(*storage, dt, vals, n);
        wk_convert_to_f32(vals, *storage, dt, n); /* the reference sees what the op sees */
    }
    return wk_tensor_make(dt, *storage, ndim, shape);
}


int ops_expect(const char *what, wf_status got, wf_status want, const wf_err *e,
               const char *frag1, const char *frag2, const char *frag3) {
    const char *frags[3] = {frag1, frag2, frag3};
    bool ok = got == want;
    for (int i = 0; ok && i < 3; i++) ok = !frags[i] || strstr(e->msg, frags[i]) != NULL;
    if (!ok)
        fprintf(stderr, "  rejects: %s: got status '%s' message '%s'; expected status '%s' naming "
                "'%s', '%s', '%s'\n", what, wf_status_str(got), got ? e->msg : "",
                wf_status_str(want), frag1 ? frag1 : "", frag2 ? frag2 : "", frag3 ? frag3 : "");
    return ok ? 0 : 1;
}

static void usage(FILE *f) {
    fprintf(f, "usage: test_ops [--seed S] [--filter SUBSTRING] [--threads N] [--list]\n"
               "  --seed S        seed of the random inputs (default %d)\n"
               "  --filter SUB    only cases whose op name contains SUB\n"
               "  --threads N     OpenMP threads of the CPU backend (default: all)\n"
               "  --list          list the cases with their tolerance rationale, run nothing\n",
            DEFAULT_SEED);
}

static bool case_selected(const op_case *c, const char *filter) {
    return !filter || strstr(c->op, filter) != NULL;
}

/* The outcome of one case. */
typedef enum { RES_OK, RES_FAIL, RES_UNSUPPORTED, RES_ERROR } case_result;

/* Runs c twice; fills the error, time of the second run and the result, with a reason for
 * failures in why (or the op's message for errors). */
static case_result run_case(const op_case *c, wk_backend *be, uint64_t seed, double *err,
                            char *why, size_t why_len) {
    tu_rng rng = tu_rng_new(seed);
    double e[2] = {0, 0};
    int bad[2] = {0, 0};
    unsigned grows_before = 0;
    why[0] = '\0';
    for (int run = 0; run < 2; run++) {
        wf_err werr;
        wf_err_clear(&werr);
        grows_before = be->ws_grows;
        wf_status st = c->run(c, be, &rng, &e[run], &bad[run], &werr);
        if (st == WF_EUNSUPPORTED && run == 0) return RES_UNSUPPORTED;
        if (st != WF_OK) {
            snprintf(why, why_len, "%s", werr.msg[0] ? werr.msg : wf_status_str(st));
            return RES_ERROR;
        }
    }
    *err = isnan(e[0]) || isnan(e[1]) ? NAN : fmax(e[0], e[1]);
    if (bad[0] || bad[1]) snprintf(why, why_len, "corrupt output: guard bytes or NaN/Inf");
    else if (be->ws_grows != grows_before)
        snprintf(why, why_len, "workspace grew on the second run (%u -> %u)", grows_before,
                 be->ws_grows);
    else if (!(*err <= c->tol)) snprintf(why, why_len, "error above tolerance");
    return why[0] ? RES_FAIL : RES_OK;
}

int main(int argc, char **argv) {
    uint64_t seed = DEFAULT_SEED;
    const char *filter = NULL;
    int threads = 0;
    bool list = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 0);
        } else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc) {
            filter = argv[++i];
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--list") == 0) {
            list = true;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "test_ops: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    const op_case *tables[] = {ops_basic_cases, ops_heavy_cases, ops_layout_cases, ops_vae_cases,
                               ops_sampler_cases};
    const int counts[] = {ops_basic_count, ops_heavy_count, ops_layout_count, ops_vae_count,
                          ops_sampler_count};
    const int ntables = (int)(sizeof counts / sizeof counts[0]);

    int dw = 11, nsel = 0; /* width of the description column: the longest one selected */
    for (int t = 0; t < ntables; t++)
        for (int i = 0; i < counts[t]; i++)
            if (case_selected(&tables[t][i], filter)) {
                nsel++;
                dw = (int)strlen(tables[t][i].desc) > dw ? (int)strlen(tables[t][i].desc) : dw;
            }
    if (nsel == 0) {
        fprintf(stderr, "test_ops: no case's op name contains '%s' (see --list)\n", filter);
        return 2;
    }

    if (list) {
        printf("# %-12s %-*s %-7s %9s  %s\n", "op", dw, "description", "wdtype", "tol", "why");
        for (int t = 0; t < ntables; t++)
            for (int i = 0; i < counts[t]; i++) {
                const op_case *c = &tables[t][i];
                if (!case_selected(c, filter)) continue;
                printf("  %-12s %-*s %-7s %9.2e  %s\n", c->op, dw, c->desc,
                       wk_dtype_name(c->wdt), c->tol, c->why);
            }
        return 0;
    }

    wk_backend *be = NULL;
    wf_err err;
    wf_err_clear(&err);
    if (wk_backend_cpu_new(&be, threads, &err)) {
        fprintf(stderr, "test_ops: %s\n", err.msg);
        return 1;
    }
    printf("# wanfarm op test: backend %s, %d threads, seed %llu%s%s\n", be->name, be->nthreads,
           (unsigned long long)seed, filter ? ", filter " : "", filter ? filter : "");
    printf("# error = ||out - ref|| / ||ref|| against a double-precision reference, worst of 2 "
           "runs\n# (speed is measured in bench/, not here)\n#\n");
    printf("# %-12s %-*s %-7s %9s %9s  %s\n", "op", dw, "description", "wdtype", "error",
           "tol", "result");

    int ncases = 0, nfail = 0, nunsup = 0;
    for (int t = 0; t < ntables; t++)
        for (int i = 0; i < counts[t]; i++) {
            const op_case *c = &tables[t][i];
            if (!case_selected(c, filter)) continue;
            double e = 0;
            char why[WF_ERR_MSG];
            /* each case's inputs depend on the seed and its place, not on the filter */
            case_result r = run_case(c, be, seed * 1000003u + (uint64_t)(t * 10000 + i), &e, why,
                                     sizeof why);
            ncases++;
            printf("  %-12s %-*s %-7s ", c->op, dw, c->desc, wk_dtype_name(c->wdt));
            switch (r) {
            case RES_OK: printf("%9.2e %9.2e  ok\n", e, c->tol); break;
            case RES_FAIL:
                nfail++;
                printf("%9.2e %9.2e  FAIL (%s)\n", e, c->tol, why);
                break;
            case RES_UNSUPPORTED:
                nunsup++;
                printf("%9s %9.2e  not supported\n", "-", c->tol);
                break;
            case RES_ERROR:
                nfail++;
                printf("%9s %9.2e  ERROR: %s\n", "-", c->tol, why);
                break;
            }
            fflush(stdout);
        }
    printf("# %d cases, %d failed, %d not supported\n", ncases, nfail, nunsup);
    printf("%s\n", nfail ? "FAILED" : "OK");
    wk_backend_destroy(&be);
    return nfail ? 1 : 0;
}
