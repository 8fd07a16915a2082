/* test_util.c: shared test helpers (see test_util.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test_util.h"

#include <cblas.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int tu_failures = 0;

tu_rng tu_rng_new(uint64_t seed) { return (tu_rng){seed * 0x9e3779b97f4a7c15ull + 1}; }

uint64_t tu_next(tu_rng *r) { /* splitmix64 */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double tu_uniform(tu_rng *r) { return (double)(tu_next(r) >> 11) * 0x1p-53; }

double tu_normal(tu_rng *r) {
    double u1 = tu_uniform(r), u2 = tu_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void tu_fill_normal(tu_rng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)tu_normal(r) * scale;
}

void tu_fill_uniform(tu_rng *r, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)tu_uniform(r);
}

#define TU_GUARD_FLOATS 16
#define TU_SENTINEL 0x7fa5a5a5u /* a NaN pattern no op writes */

float *tu_guarded_alloc(size_t n) {
    float *base = aligned_alloc(64, ((n + 2 * TU_GUARD_FLOATS) * sizeof(float) + 63) / 64 * 64);
    if (!base) return NULL;
    uint32_t s = TU_SENTINEL;
    for (size_t i = 0; i < TU_GUARD_FLOATS; i++) {
        memcpy(base + i, &s, 4);
        memcpy(base + TU_GUARD_FLOATS + n + i, &s, 4);
    }
    return base + TU_GUARD_FLOATS;
}

bool tu_guard_ok(const float *p, size_t n) {
    const float *base = p - TU_GUARD_FLOATS;
    for (size_t i = 0; i < TU_GUARD_FLOATS; i++) {
        uint32_t a, b;
        memcpy(&a, base + i, 4);
        memcpy(&b, p + n + i, 4);
        if (a != TU_SENTINEL || b != TU_SENTINEL) return false;
    }
    return true;
}

void tu_guarded_free(float *p) {
    if (p) free(p - TU_GUARD_FLOATS);
}

double tu_rel_l2(const float *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    if (isnan(num)) return INFINITY;
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

double tu_rel_l2_f(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    if (isnan(num)) return INFINITY;
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

double tu_max_abs_diff(const float *a, const double *ref, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (isnan(d)) return INFINITY;
        if (d > m) m = d;
    }
    return m;
}

size_t tu_count_nonfinite(const float *a, const double *ref, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i]) && isfinite(ref[i])) c++;
    return c;
}

void tu_report(const char *file, int line, const char *expr, const char *fmt, ...) {
    fprintf(stderr, "FAIL %s:%d: %s: ", file, line, expr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

char *tu_tmpdir(const char *tag) {
    const char *t = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/wanfarm-%s-XXXXXX", t && *t ? t : "/tmp", tag);
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

void tu_rmtree(const char *dir) {
    if (dir) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int tu_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = len ? fwrite(data, 1, len, f) : 0;
    int rc = fclose(f);
    return (w == len && rc == 0) ? 0 : -1;
}

bool tu_blas_bit_exact(void) {
    const char *core = openblas_get_corename();
    if (!core) return false;
    return !strcasecmp(core, "Haswell") || !strcasecmp(core, "Zen");
}
