/* test_util.h: what every test shares (prefix tu_): a seeded RNG, guarded buffers, error norms
 * and a tiny check/report vocabulary.
 *
 * What it is not: a test framework. Each test is a plain main() that returns 0 on success, so
 * ctest runs it directly (and under the sanitizer build).
 */
#ifndef TU_TEST_UTIL_H
#define TU_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tu_rng {
    uint64_t s;
} tu_rng;

tu_rng tu_rng_new(uint64_t seed);
uint64_t tu_next(tu_rng *r);
double tu_uniform(tu_rng *r);                 /* [0, 1) */
double tu_normal(tu_rng *r);                  /* N(0, 1) */
void tu_fill_normal(tu_rng *r, float *x, size_t n, float scale);
void tu_fill_uniform(tu_rng *r, float *x, size_t n, float lo, float hi);

/* n floats with 64 guard bytes of a sentinel on each side; tu_guard_ok checks them. */
float *tu_guarded_alloc(size_t n);
bool tu_guard_ok(const float *p, size_t n);
void tu_guarded_free(float *p);

/* ||a - ref|| / max(||ref||, tiny): the normalised error every op test reports. */
double tu_rel_l2(const float *a, const double *ref, size_t n);
double tu_rel_l2_f(const float *a, const float *ref, size_t n);
double tu_max_abs_diff(const float *a, const double *ref, size_t n);
/* number of NaN/Inf entries of a that are finite in ref */
size_t tu_count_nonfinite(const float *a, const double *ref, size_t n);

/* Checks that print "FAIL file:line: ..." and count failures in tu_failures. */
extern int tu_failures;
#define TU_CHECK(cond, ...)                                                                      \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            tu_failures++;                                                                       \
            tu_report(__FILE__, __LINE__, #cond, __VA_ARGS__);                                   \
        }                                                                                        \
    } while (0)
void tu_report(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A fresh directory under $TMPDIR (or /tmp) for files a test writes; removed by tu_rmtree. */
char *tu_tmpdir(const char *tag);
void tu_rmtree(const char *dir);
/* Writes len bytes to path; returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t len);

/* True when the BLAS is one whose GEMM kernels this project checked to give the same bits for an
 * element wherever the calls are cut on multiples of 48 rows (OpenBLAS's Haswell/Zen cores): the
 * bit-for-bit tests (thread counts, Ulysses degrees) then assert equality; elsewhere (e.g. cores
 * with size-dependent small-matrix kernels) they assert 1e-5 and say so. */
bool tu_blas_bit_exact(void);

#endif
