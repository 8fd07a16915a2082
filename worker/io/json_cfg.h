/* json_cfg.h: typed reading of config.json fields (prefix jc_), with errors that name the file and
 * the field.
 *
 * What it is: the one place where a JSON config value becomes a C value. Every reader takes flags
 * (JC_REQUIRED: absent is an error; JC_NULLABLE: JSON null reads as the default), a default and,
 * for numbers, an inclusive range. Messages look like
 *   "transformer/config.json: field 'num_layers' must be an integer, found string".
 * What it is not: a JSON parser (that is jansson).
 * Tested by: tests/test_diffusers.c (missing and mistyped fields in every config kind).
 */
#ifndef JC_JSON_CFG_H
#define JC_JSON_CFG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

enum { JC_OPTIONAL = 0, JC_REQUIRED = 1, JC_NULLABLE = 2 };

typedef struct jc_doc {
    json_t *root;      /* owned */
    char *file;        /* path for messages, owned */
    const char *label; /* short name for messages: "transformer/config.json" */
} jc_doc;

/* Loads path (strict JSON, duplicate keys rejected); the root must be an object. A path that is
 * not a regular file (a FIFO, a folder, a device) is refused before it is opened (fsin.h). */
wf_status jc_load(jc_doc *d, const char *path, const char *label, wf_err *err);
void jc_free(jc_doc *d);

bool jc_has(const jc_doc *d, const char *field); /* present and not null */
wf_status jc_int(const jc_doc *d, const char *field, int flags, int64_t dflt, int64_t lo, int64_t hi,
                 int64_t *out, wf_err *err);
wf_status jc_num(const jc_doc *d, const char *field, int flags, double dflt, double lo, double hi,
                 double *out, wf_err *err);
wf_status jc_bool(const jc_doc *d, const char *field, int flags, bool dflt, bool *out, wf_err *err);
/* Copies a string (truncation is an error); dflt may be NULL for "". */
wf_status jc_str(const jc_doc *d, const char *field, int flags, const char *dflt, char *out,
                 size_t cap, wf_err *err);
/* Arrays: n_exact > 0 demands that length; otherwise 0..cap entries. *n gets the length; an
 * absent optional array gives *n = 0. */
wf_status jc_int_array(const jc_doc *d, const char *field, int flags, size_t n_exact, size_t cap,
                       int64_t lo, int64_t hi, int64_t *out, size_t *n, wf_err *err);
wf_status jc_num_array(const jc_doc *d, const char *field, int flags, size_t n_exact, size_t cap,
                       double *out, size_t *n, wf_err *err);
wf_status jc_bool_array(const jc_doc *d, const char *field, int flags, size_t n_exact, size_t cap,
                        bool *out, size_t *n, wf_err *err);

const char *jc_type_name(const json_t *v); /* "string", "integer", ... */

#endif
