/* json_cfg.c: typed config fields with file- and field-naming errors (see json_cfg.h). */
#include "json_cfg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsin.h"

const char *jc_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

wf_status jc_load(jc_doc *d, const char *path, const char *label, wf_err *err) {
    *d = (jc_doc){0};
    json_error_t je;
    json_t *root;
    /* fsin: a FIFO, a folder or a device is refused before it is opened */
    wf_status st = fsin_json_load(path, JSON_REJECT_DUPLICATES, &root, &je, NULL, err);
    if (st == WF_EFORMAT)
        return wf_fail(err, WF_EFORMAT, "%s: not valid JSON: %s (line %d, column %d)", path,
                       je.text, je.line, je.column);
    if (st) return st;
    if (!json_is_object(root)) {
        wf_fail(err, WF_EFORMAT, "%s: the top level must be a JSON object, found %s", path,
                jc_type_name(root));
        json_decref(root);
        return WF_EFORMAT;
    }
    d->root = root;
    d->file = strdup(path);
    d->label = label;
    if (!d->file) {
        jc_free(d);
        return wf_fail(err, WF_ENOMEM, "out of memory");
    }
    return WF_OK;
}

void jc_free(jc_doc *d) {
    if (!d) return;
    json_decref(d->root);
    free(d->file);
    *d = (jc_doc){0};
}

bool jc_has(const jc_doc *d, const char *field) {
    json_t *v = json_object_get(d->root, field);
    return v && !json_is_null(v);
}

/* The value of field, or NULL when the default applies. Sets *st on error. */
static json_t *get(const jc_doc *d, const char *field, int flags, wf_status *st, wf_err *err) {
    *st = WF_OK;
    json_t *v = json_object_get(d->root, field);
    if (v && json_is_null(v)) {
        if (flags & JC_NULLABLE) return NULL;
        *st = wf_fail(err, WF_EFORMAT, "%s: field '%s' must not be null", d->file, field);
        return NULL;
    }
    if (!v && (flags & JC_REQUIRED))
        *st = wf_fail(err, WF_EFORMAT, "%s: required field '%s' is missing", d->file, field);
    return v;
}

static wf_status int_value(const jc_doc *d, const char *field, const json_t *v, int64_t lo,
                           int64_t hi, int64_t *out, wf_err *err) {
    int64_t x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9e15) {
        x = (int64_t)json_real_value(v); /* 16.0 is accepted, as Python would */
    } else {
        return wf_fail(err, WF_EFORMAT, "%s: field '%s' must be an integer, found %s", d->file,
                       field, jc_type_name(v));
    }
    if (x < lo || x > hi)
        return wf_fail(err, WF_EFORMAT, "%s: field '%s' = %lld is outside [%lld, %lld]", d->file,
                       field, (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return WF_OK;
}

static wf_status num_value(const jc_doc *d, const char *field, const json_t *v, double lo,
                           double hi, double *out, wf_err *err) {
    if (!json_is_number(v))
        return wf_fail(err, WF_EFORMAT, "%s: field '%s' must be a number, found %s", d->file, field,
                       jc_type_name(v));
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return wf_fail(err, WF_EFORMAT, "%s: field '%s' = %g is outside [%g, %g]", d->file, field,
                       x, lo, hi);
    *out = x;
    return WF_OK;
}

wf_status jc_int(const jc_doc *d, const char *field, int flags, int64_t dflt, int64_t lo, int64_t hi,
                 int64_t *out, wf_err *err) {
    wf_status st;
    json_t *v = get(d, field, flags, &st, err);
    if (st) return st;
    if (!v) {
        *out = dflt;
        return WF_OK;
    }
    return int_value(d, field, v, lo, hi, out, err);
}

wf_status jc_num(const jc_doc *d, const char *field, int flags, double dflt, double lo, double hi,
                 double *out, wf_err *err) {
    wf_status st;
    json_t *v = get(d, field, flags, &st, err);
    if (st) return st;
    if (!v) {
        *out = dflt;
        return WF_OK;
    }
    return num_value(d, field, v, lo, hi, out, err);
}

wf_status jc_bool(const jc_doc *d, const char *field, int flags, bool dflt, bool *out, wf_err *err) {
    wf_status st;
    json_t *v = get(d, field, flags, &st, err);
    if (st) return st;
    if (!v) {
        *out = dflt;
        return WF_OK;
    }
    if (!json_is_boolean(v))
        return wf_fail(err, WF_EFORMAT, "%s: field '%s' must be true or false, found %s", d->file,
                       field, jc_type_name(v));
    *out = json_is_true(v);
    return WF_OK;
}

wf_status jc_str(const jc_doc *d, const char *field, int flags, const char *dflt, char *out,
                 size_t cap, wf_err *err) {
    wf_status st;
    json_t *v = get(d, field, flags, &st, err);
    if (st) return st;
    const char *s = dflt ? dflt : "";
    if (v) {
        if (!json_is_string(v))
            return wf_fail(err, WF_EFORMAT, "%s: field '%s' must be a string, found %s", d->file,
                           field, jc_type_name(v));
        s = json_string_value(v);
    }
    if (strlen(s) >= cap)
        return wf_fail(err, WF_EFORMAT, "%s: field '%s' is longer than %zu characters", d->file,
                       field, cap - 1);
    strcpy(out, s);
    return WF_OK;
}

/* Shared array walk: checks type and length, then calls one element reader. */
typedef wf_status (*elem_fn)(const jc_doc *d, const char *name, const json_t *v, size_t i,
                             void *out, const void *ctx, wf_err *err);

static wf_status array_walk(const jc_doc *d, const char *field, int flags, size_t n_exact,
                            size_t cap, elem_fn fn, void *out, const void *ctx, size_t *n,
                            wf_err *err) {
    wf_status st;
    json_t *v = get(d, field, flags, &st, err);
    *n = 0;
    if (st || !v) return st;
    if (!json_is_array(v))
        return wf_fail(err, WF_EFORMAT, "%s: field '%s' must be an array, found %s", d->file,
                       field, jc_type_name(v));
    size_t len = json_array_size(v);
    if (n_exact && len != n_exact)
        return wf_fail(err, WF_EFORMAT, "%s: field '%s' must have %zu entries, found %zu", d->file,
                       field, n_exact, len);
    if (len > cap)
        return wf_fail(err, WF_EFORMAT, "%s: field '%s' has %zu entries, at most %zu are supported",
                       d->file, field, len, cap);
    for (size_t i = 0; i < len; i++) {
        char name[160];
        snprintf(name, sizeof name, "%s[%zu]", field, i);
        if ((st = fn(d, name, json_array_get(v, i), i, out, ctx, err))) return st;
    }
    *n = len;
    return WF_OK;
}

static wf_status int_elem(const jc_doc *d, const char *name, const json_t *v, size_t i, void *out,
                          const void *ctx, wf_err *err) {
    const int64_t *lohi = ctx;
    return int_value(d, name, v, lohi[0], lohi[1], (int64_t *)out + i, err);
}

static wf_status num_elem(const jc_doc *d, const char *name, const json_t *v, size_t i, void *out,
                          const void *ctx, wf_err *err) {
    return num_value(d, name, v, -HUGE_VAL, HUGE_VAL, (double *)out + i, err);
}

static wf_status bool_elem(const jc_doc *d, const char *name, const json_t *v, size_t i, void *out,
                           const void *ctx, wf_err *err) {
    if (!json_is_boolean(v))
        return wf_fail(err, WF_EFORMAT, "%s: field '%s' must be true or false, found %s", d->file,
                       name, jc_type_name(v));
    ((bool *)out)[i] = json_is_true(v);
    return WF_OK;
}

wf_status jc_int_array(const jc_doc *d, const char *field, int flags, size_t n_exact, size_t cap,
                       int64_t lo, int64_t hi, int64_t *out, size_t *n, wf_err *err) {
    int64_t lohi[2] = {lo, hi};
    return array_walk(d, field, flags, n_exact, cap, int_elem, out, lohi, n, err);
}

wf_status jc_num_array(const jc_doc *d, const char *field, int flags, size_t n_exact, size_t cap,
                       double *out, size_t *n, wf_err *err) {
    return array_walk(d, field, flags, n_exact, cap, num_elem, out, NULL, n, err);
}

wf_status jc_bool_array(const jc_doc *d, const char *field, int flags, size_t n_exact, size_t cap,
                        bool *out, size_t *n, wf_err *err) {
    return array_walk(d, field, flags, n_exact, cap, bool_elem, out, NULL, n, err);
}
