/* cmd_args.c: option value parsing shared by the subcommands (see cmds.h). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"

bool cmd_parse_i64(const char *s, int64_t *out) {
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (errno || e == s || *e) return false;
    *out = v;
    return true;
}

bool cmd_parse_u64(const char *s, uint64_t *out) {
    char *e;
    errno = 0;
    if (*s == '-') return false;
    unsigned long long v = strtoull(s, &e, 10);
    if (errno || e == s || *e) return false;
    *out = v;
    return true;
}

bool cmd_parse_f64(const char *s, double *out) {
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (errno || e == s || *e || !isfinite(v)) return false;
    *out = v;
    return true;
}

bool cmd_parse_int(const char *s, int lo, int hi, int *out) {
    int64_t v;
    if (!cmd_parse_i64(s, &v) || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

/* One side of a size: a whole number in [1, CMD_SIZE_MAX], else a reason in why. */
static bool parse_side(const char *what, const char *s, int64_t *out, char *why, size_t cap) {
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (e == s || *e) {
        snprintf(why, cap, "must be WIDTHxHEIGHT with whole numbers, e.g. 832x480 (the %s is "
                 "'%s')", what, s);
        return false;
    }
    if (errno == ERANGE || v > CMD_SIZE_MAX) {
        snprintf(why, cap, "has a %s of %s: at most %d (and the model's own limit)", what, s,
                 CMD_SIZE_MAX);
        return false;
    }
    if (v <= 0) {
        snprintf(why, cap, "has a %s of %lld: width and height must be positive multiples of 16, "
                 "e.g. 832x480", what, v);
        return false;
    }
    *out = v;
    return true;
}

bool cmd_parse_size(const char *s, int64_t *w, int64_t *h, char *why, size_t cap) {
    const char *x = strchr(s, 'x');
    if (!x) x = strchr(s, 'X');
    char wbuf[64];
    size_t wl = x ? (size_t)(x - s) : 0;
    if (!x || wl == 0 || !x[1]) {
        snprintf(why, cap, "must be WIDTHxHEIGHT, e.g. 832x480");
        return false;
    }
    if (wl >= sizeof wbuf) {
        snprintf(why, cap, "has a width of %zu characters: at most %d", wl, CMD_SIZE_MAX);
        return false;
    }
    memcpy(wbuf, s, wl);
    wbuf[wl] = 0;
    int64_t a, b;
    if (!parse_side("width", wbuf, &a, why, cap) || !parse_side("height", x + 1, &b, why, cap))
        return false;
    *w = a;
    *h = b;
    return true;
}

int cmd_usage_err(const char *prog, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see --help)\n");
    va_end(ap);
    return WF_EXIT_USAGE;
}
