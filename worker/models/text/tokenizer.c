/* tokenizer.c: prompt cleaning and T5 tokenisation as the Wan pipeline does them (see
 * tokenizer.h for what is reproduced and what differs).
 *
 * Layout: UTF-8 <-> code points; the two whitespace classes; html.unescape (one pass of
 * CPython's _charref.sub); prompt_clean; reading tokenizer.json's "added_tokens" without parsing
 * its (16 MB for umT5) vocabulary; tokenizer_config.json; loading; splitting on added tokens
 * (tokenizers' AddedVocabulary::find_matches); encoding, truncation and padding.
 */
#include "tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsin.h"
#include "tok_html5.h"

/* ---------------------------------------------------------------------------------------------
 * UTF-8
 * ------------------------------------------------------------------------------------------- */

/* Decodes NUL-terminated or len-byte UTF-8 strictly, as Python's utf-8 codec: no overlong forms,
 * no surrogates, nothing above U+10FFFF. cps must hold len entries. Returns the number of code
 * points, or -1 with *bad set to the offending byte offset. */
static long utf8_decode(const unsigned char *s, size_t len, uint32_t *cps, size_t *bad) {
    size_t i = 0;
    long n = 0;
    while (i < len) {
        unsigned c = s[i];
        uint32_t cp;
        size_t k;
        if (c < 0x80) {
            cp = c;
            k = 0;
        } else if (c >= 0xC2 && c <= 0xDF) {
            cp = c & 0x1F;
            k = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            cp = c & 0x0F;
            k = 2;
        } else if (c >= 0xF0 && c <= 0xF4) {
            cp = c & 0x07;
            k = 3;
        } else {
            *bad = i;
            return -1;
        }
        if (k > len - i - 1) {
            *bad = i;
            return -1;
        }
        for (size_t j = 1; j <= k; j++) {
            unsigned d = s[i + j];
            if ((d & 0xC0) != 0x80) {
                *bad = i;
                return -1;
            }
            cp = (cp << 6) | (d & 0x3F);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10FFFF))) {
            *bad = i;
            return -1;
        }
        if (cps) cps[n] = cp;
        n++;
        i += k + 1;
    }
    return n;
}

/* Writes cp as UTF-8 (1 to 4 bytes); returns the byte count. */
static size_t utf8_put(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The code point starting at s[i] (valid UTF-8 assumed) and its length in bytes. */
static uint32_t utf8_at(const unsigned char *s, size_t i, size_t *k) {
    unsigned c = s[i];
    if (c < 0x80) {
        *k = 1;
        return c;
    }
    size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    uint32_t cp = c & (0x7F >> n);
    for (size_t j = 1; j < n; j++) cp = (cp << 6) | (s[i + j] & 0x3F);
    *k = n;
    return cp;
}

/* The start of the code point ending just before byte i (i > 0). */
static size_t utf8_prev(const unsigned char *s, size_t i) {
    do i--;
    while (i > 0 && (s[i] & 0xC0) == 0x80);
    return i;
}

static wf_status check_utf8(const char *text, size_t len, const char *what, wf_err *err) {
    size_t bad = 0;
    if (utf8_decode((const unsigned char *)text, len, NULL, &bad) < 0)
        return wf_fail(err, WF_EINVAL,
                       "%s: invalid UTF-8 at byte %zu (0x%02X); prompts must be UTF-8 text", what,
                       bad, (unsigned)(unsigned char)text[bad]);
    return WF_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Whitespace
 * ------------------------------------------------------------------------------------------- */

/* Unicode White_Space: the `regex` module's \s, Rust's char::is_whitespace and regex \s. */
bool tok_is_white_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

/* CPython's str.isspace() (Py_UNICODE_ISSPACE: bidi class WS, B or S, or category Zs): White_Space
 * plus the information separators U+001C-U+001F. */
bool tok_is_py_space(uint32_t cp) { return tok_is_white_space(cp) || (cp >= 0x1C && cp <= 0x1F); }

/* ---------------------------------------------------------------------------------------------
 * html.unescape, one pass: _charref.sub(_replace_charref, s) with
 *   _charref = &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
 * On code points; the output is never longer than the input (every reference is at least as
 * long as its replacement), which the caller's buffer relies on.
 * ------------------------------------------------------------------------------------------- */

static int cmp_entity(const void *key, const void *elem) {
    return strcmp(key, ((const tok_html5_entity *)elem)->name);
}

/* The replacement of the named reference name[0..n) (ASCII), or NULL. */
static const char *html5_lookup(const uint32_t *name, size_t n) {
    char buf[40];
    if (n >= sizeof buf) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (name[i] > 0x7F) return NULL;
        buf[i] = (char)name[i];
    }
    buf[n] = '\0';
    const tok_html5_entity *e = bsearch(buf, tok_html5_entities, TOK_HTML5_N_ENTITIES,
                                        sizeof *tok_html5_entities, cmp_entity);
    return e ? e->value : NULL;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_charref(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = ((const tok_html5_charref *)b)->num;
    return (x > y) - (x < y);
}

/* Appends the code points of a UTF-8 table value. */
static size_t put_value(uint32_t *out, const char *v) {
    size_t n = 0, i = 0, len = strlen(v), k;
    while (i < len) {
        out[n++] = utf8_at((const unsigned char *)v, i, &k);
        i += k;
    }
    return n;
}

static bool is_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static bool is_hex(uint32_t c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static uint32_t hex_val(uint32_t c) {
    return is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
}

#define NUM_TOO_BIG 0x110000u /* any value above U+10FFFF: they all map alike */

/* num * base + d, saturated at NUM_TOO_BIG (Python's int() is unbounded). */
static uint32_t num_acc(uint32_t num, uint32_t base, uint32_t d) {
    uint64_t v = (uint64_t)num * base + d;
    return v > NUM_TOO_BIG ? NUM_TOO_BIG : (uint32_t)v;
}

/* _replace_charref for a numeric reference with value num (saturated at NUM_TOO_BIG). */
static size_t numeric_ref(uint32_t *out, uint32_t num) {
    const tok_html5_charref *r = bsearch(&num, tok_html5_invalid_charrefs,
                                         TOK_HTML5_N_INVALID_CHARREFS,
                                         sizeof *tok_html5_invalid_charrefs, cmp_charref);
    if (r) {
        out[0] = r->cp;
        return 1;
    }
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
        out[0] = 0xFFFD;
        return 1;
    }
    if (bsearch(&num, tok_html5_invalid_codepoints, TOK_HTML5_N_INVALID_CODEPOINTS,
                sizeof *tok_html5_invalid_codepoints, cmp_u32))
        return 0;
    out[0] = num;
    return 1;
}

static bool name_char(uint32_t c) {
    return !(c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' ||
             c == ';');
}

/* One html.unescape pass over in[0..n) into out (capacity n); returns the output length. The
 * output never outgrows the input: a numeric reference ("&#1" at least) becomes at most one code
 * point, a full name ("&lt" at least: no name is shorter than 2) at most two, and a prefix match
 * (always a semicolon-less legacy name, whose value is one code point) plus the rest of the
 * name is shorter than "&" plus the name. */
static size_t html_unescape(const uint32_t *in, size_t n, uint32_t *out) {
    size_t o = 0, i = 0;
    while (i < n) {
        if (in[i] != '&') {
            out[o++] = in[i++];
            continue;
        }
        size_t j = i + 1;
        if (j < n && in[j] == '#') {
            uint32_t num = 0;
            size_t k;
            if (j + 1 < n && is_digit(in[j + 1])) { /* #[0-9]+;? */
                for (k = j + 1; k < n && is_digit(in[k]); k++) num = num_acc(num, 10, in[k] - '0');
            } else if (j + 2 < n && (in[j + 1] == 'x' || in[j + 1] == 'X') && is_hex(in[j + 2])) {
                for (k = j + 2; k < n && is_hex(in[k]); k++) /* #[xX][0-9a-fA-F]+;? */
                    num = num_acc(num, 16, hex_val(in[k]));
            } else { /* '#' cannot start a name either: no match at this '&' */
                out[o++] = in[i++];
                continue;
            }
            if (k < n && in[k] == ';') k++;
            o += numeric_ref(out + o, num);
            i = k;
            continue;
        }
        /* [^\t\n\f <&#;]{1,32};? */
        size_t k = j;
        while (k < n && k - j < 32 && name_char(in[k])) k++;
        if (k == j) {
            out[o++] = in[i++];
            continue;
        }
        if (k < n && in[k] == ';') k++;
        const uint32_t *s = in + j;
        size_t len = k - j;
        const char *v = html5_lookup(s, len);
        if (v) {
            o += put_value(out + o, v);
        } else {
            size_t x = len - 1;
            for (; x >= 2; x--) /* the longest prefix that is a name */
                if ((v = html5_lookup(s, x))) break;
            if (v) {
                o += put_value(out + o, v);
                for (size_t r = x; r < len; r++) out[o++] = s[r];
            } else {
                out[o++] = '&';
                for (size_t r = 0; r < len; r++) out[o++] = s[r];
            }
        }
        i = k;
    }
    return o;
}

/* ---------------------------------------------------------------------------------------------
 * prompt_clean
 * ------------------------------------------------------------------------------------------- */

/* str.strip(): [*b, *e) without leading and trailing str.isspace() characters. */
static void py_strip(const uint32_t *s, size_t *b, size_t *e) {
    while (*b < *e && tok_is_py_space(s[*b])) (*b)++;
    while (*e > *b && tok_is_py_space(s[*e - 1])) (*e)--;
}

wf_status tok_prompt_clean(const char *text, char **out, wf_err *err) {
    *out = NULL;
    size_t len = strlen(text);
    wf_status st = check_utf8(text, len, "prompt", err);
    if (st) return st;
    uint32_t *a = malloc((len + 1) * sizeof *a), *b = malloc((len + 1) * sizeof *b);
    char *res = NULL;
    if (!a || !b) {
        st = wf_fail(err, WF_ENOMEM, "prompt_clean: out of memory for a %zu-byte prompt", len);
        goto out;
    }
    size_t bad;
    size_t n = (size_t)utf8_decode((const unsigned char *)text, len, a, &bad);
    /* basic_clean: html.unescape(html.unescape(text)).strip() */
    n = html_unescape(a, n, b);
    n = html_unescape(b, n, a);
    size_t lo = 0, hi = n;
    py_strip(a, &lo, &hi);
    /* whitespace_clean: regex.sub(r"\s+", " ", text).strip() */
    size_t m = 0;
    for (size_t i = lo; i < hi;) {
        if (tok_is_white_space(a[i])) {
            while (i < hi && tok_is_white_space(a[i])) i++;
            b[m++] = ' ';
        } else {
            b[m++] = a[i++];
        }
    }
    lo = 0;
    py_strip(b, &lo, &m);
    res = malloc(4 * (m - lo) + 1);
    if (!res) {
        st = wf_fail(err, WF_ENOMEM, "prompt_clean: out of memory");
        goto out;
    }
    size_t o = 0;
    for (size_t i = lo; i < m; i++) o += utf8_put(res + o, b[i]);
    res[o] = '\0';
    *out = res;
out:
    free(a);
    free(b);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * tokenizer.json: only its top-level "added_tokens" array is parsed (jansson, from where it
 * starts); every other top-level value, the vocabulary included, is skipped by a scanner that
 * only tracks strings and bracket depth.
 * ------------------------------------------------------------------------------------------- */

static const char *skip_ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* p at '"': returns the byte after the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *e) {
    for (p++; p < e; p++) {
        if (*p == '\\') {
            p++;
            continue;
        }
        if (*p == '"') return p + 1;
    }
    return NULL;
}

/* Skips one JSON value (not validated beyond strings and bracket balance); NULL if malformed. */
static const char *skip_value(const char *p, const char *e) {
    int depth = 0;
    while (p < e) {
        char c = *p;
        if (c == '"') {
            if (!(p = skip_string(p, e))) return NULL;
            if (depth == 0) return p;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0) return p; /* end of the enclosing object: a scalar just ended */
            if (--depth == 0) return p + 1;
        } else if (depth == 0 && c == ',') {
            return p;
        }
        p++;
    }
    return depth == 0 ? p : NULL;
}

typedef wf_status (*member_fn)(void *ctx, const char *key, size_t klen, const char *v,
                               const char *e, wf_err *err);

/* Walks the JSON object starting at p ('{'): calls fn for each member with the start of its
 * value, then skips the value. *end gets the byte after the closing '}'; NULL when the object is
 * malformed or cut (then WF_EFORMAT, with the byte offset from base). */
static wf_status walk_object(const char *p, const char *e, member_fn fn, void *ctx,
                             const char **end, const char *base, const char *path, wf_err *err) {
    wf_status st;
    *end = NULL;
    p = skip_ws(p + 1, e);
    while (p < e && *p != '}') {
        if (*p != '"') break;
        const char *k0 = p + 1, *k1 = skip_string(p, e);
        if (!k1) break;
        p = skip_ws(k1, e);
        if (p == e || *p != ':') break;
        p = skip_ws(p + 1, e);
        if ((st = fn(ctx, k0, (size_t)(k1 - 1 - k0), p, e, err))) return st;
        const char *q = skip_value(p, e);
        if (!q) {
            p = e;
            break;
        }
        p = skip_ws(q, e);
        if (p < e && *p == ',') p = skip_ws(p + 1, e);
    }
    if (p == e || *p != '}')
        return wf_fail(err, WF_EFORMAT, "%s: malformed JSON near byte %zu", path,
                       (size_t)(p - base));
    *end = p + 1;
    return WF_OK;
}

typedef struct tj_doc {
    const char *path, *base;
    json_t *added;  /* "added_tokens" */
    json_t *model;  /* "model" without its "vocab": type, unk_id, byte_fallback, ... */
} tj_doc;

static bool key_is(const char *k, size_t n, const char *want) {
    return n == strlen(want) && memcmp(k, want, n) == 0;
}

static wf_status load_value(const char *v, const char *e, const char *what, const char *path,
                            json_t **out, wf_err *err) {
    json_error_t je;
    *out = json_loadb(v, (size_t)(e - v), JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &je);
    if (!*out) return wf_fail(err, WF_EFORMAT, "%s: %s: %s", path, what, je.text);
    return WF_OK;
}

static wf_status model_member(void *ctx, const char *key, size_t klen, const char *v,
                              const char *e, wf_err *err) {
    tj_doc *d = ctx;
    if (key_is(key, klen, "vocab") || klen >= 64) return WF_OK;
    char name[64];
    memcpy(name, key, klen);
    name[klen] = '\0';
    json_t *val;
    wf_status st = load_value(v, e, "\"model\"", d->path, &val, err);
    if (st) return st;
    json_object_set_new(d->model, name, val);
    return WF_OK;
}

static wf_status top_member(void *ctx, const char *key, size_t klen, const char *v, const char *e,
                            wf_err *err) {
    tj_doc *d = ctx;
    if (key_is(key, klen, "added_tokens")) {
        wf_status st = load_value(v, e, "\"added_tokens\"", d->path, &d->added, err);
        if (st) return st;
        if (!json_is_array(d->added))
            return wf_fail(err, WF_EFORMAT, "%s: \"added_tokens\" must be an array", d->path);
        return WF_OK;
    }
    if (key_is(key, klen, "model") && *v == '{') {
        const char *end;
        if (!(d->model = json_object())) return wf_fail(err, WF_ENOMEM, "out of memory");
        return walk_object(v, e, model_member, d, &end, d->base, d->path, err);
    }
    return WF_OK;
}

/* Reads tokenizer.json's top-level "added_tokens" and the small members of "model" (its
 * vocabulary, 16 MB for umT5, is only scanned). The whole file must be a balanced JSON object:
 * strings and brackets are checked, so a cut file is refused. */
static wf_status read_tokenizer_json(const char *path, tj_doc *d, wf_err *err) {
    *d = (tj_doc){.path = path};
    wf_status st = WF_OK;
    FILE *f;
    char *buf = NULL;
    /* a FIFO, a folder or a device is refused before it is opened (fsin.h) */
    if ((st = fsin_fopen(path, &f, NULL, err))) return st;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || sb.st_size < 0) {
        st = wf_fail(err, WF_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto out;
    }
    size_t len = (size_t)sb.st_size;
    buf = malloc(len + 1);
    if (!buf) {
        st = wf_fail(err, WF_ENOMEM, "%s: out of memory reading %zu bytes", path, len);
        goto out;
    }
    if (len && fread(buf, 1, len, f) != len) {
        st = wf_fail(err, WF_EIO, "%s: read error", path);
        goto out;
    }
    buf[len] = '\0';
    const char *p = buf, *e = buf + len, *end;
    d->base = buf;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3;
    p = skip_ws(p, e);
    if (p == e || *p != '{') {
        st = wf_fail(err, WF_EFORMAT, "%s: not a JSON object (tokenizer.json starts with '{')",
                     path);
        goto out;
    }
    st = walk_object(p, e, top_member, d, &end, buf, path, err);
out:
    if (st) {
        json_decref(d->added);
        json_decref(d->model);
        d->added = d->model = NULL;
    }
    d->base = NULL;
    free(buf);
    fclose(f);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------------------- */

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* An optional file of the folder: *present when it is a regular file. Absent is no error; a FIFO,
 * a folder or a symlink loop in its place is (fsin.h), so that it is not silently skipped. */
static wf_status optional_file(const char *p, bool *present, wf_err *err) {
    bool absent;
    wf_status st = fsin_check(p, &absent, err);
    *present = st == WF_OK;
    return st && absent ? WF_OK : st;
}

void tok_free(tok_tokenizer **pt) {
    if (!pt || !*pt) return;
    tok_tokenizer *t = *pt;
    for (size_t i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    spm_free(t->spm);
    free(t->dir);
    free(t);
    *pt = NULL;
}

static wf_status json_flag(const json_t *o, const char *key, bool *out, const char *path,
                           size_t idx, wf_err *err) {
    const json_t *v = json_object_get(o, key);
    *out = false;
    if (!v) return WF_OK;
    if (!json_is_boolean(v))
        return wf_fail(err, WF_EFORMAT, "%s: added_tokens[%zu].%s must be true or false", path,
                       idx, key);
    *out = json_is_true(v);
    return WF_OK;
}

static wf_status load_added_json(tok_tokenizer *t, const char *path, const json_t *arr,
                                 wf_err *err) {
    size_t n = json_array_size(arr);
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added) return wf_fail(err, WF_ENOMEM, "out of memory");
    char piece[256];
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(arr, i), *jid, *jc;
        if (!json_is_object(o) || !json_is_integer(jid = json_object_get(o, "id")) ||
            !json_is_string(jc = json_object_get(o, "content")))
            return wf_fail(err, WF_EFORMAT,
                           "%s: added_tokens[%zu] must be an object with integer \"id\" and "
                           "string \"content\"",
                           path, i);
        json_int_t id = json_integer_value(jid);
        const char *c = json_string_value(jc);
        size_t clen = json_string_length(jc);
        if (id < 0 || id > INT32_MAX - 1 || clen == 0 || strlen(c) != clen)
            return wf_fail(err, WF_EFORMAT,
                           "%s: added_tokens[%zu] ('%s', id %lld): the id must be >= 0 and the "
                           "content non-empty without NUL",
                           path, i, c, (long long)id);
        tok_added *a = &t->added[t->n_added];
        bool single_word;
        wf_status st;
        if ((st = json_flag(o, "single_word", &single_word, path, i, err)) ||
            (st = json_flag(o, "lstrip", &a->lstrip, path, i, err)) ||
            (st = json_flag(o, "rstrip", &a->rstrip, path, i, err)) ||
            (st = json_flag(o, "normalized", &a->normalized, path, i, err)) ||
            (st = json_flag(o, "special", &a->special, path, i, err)))
            return st;
        if (single_word)
            return wf_fail(err, WF_EUNSUPPORTED,
                           "%s: added token '%s' has \"single_word\": true, which wanfarm's "
                           "tokenizer does not implement (T5/umT5 tokenizers never use it)",
                           path, c);
        if (id < t->n_pieces &&
            (spm_id_to_piece(t->spm, (int)id, piece, sizeof piece) != 0 || strcmp(piece, c) != 0))
            return wf_fail(err, WF_EFORMAT,
                           "%s: added token '%s' has id %lld, but spiece.model's piece %lld is "
                           "'%s': tokenizer.json and spiece.model are not from the same tokenizer",
                           path, c, (long long)id, (long long)id, piece);
        if (!(a->content = strdup(c))) return wf_fail(err, WF_ENOMEM, "out of memory");
        a->len = clen;
        a->id = (int32_t)id;
        t->n_added++;
        for (size_t j = 0; j + 1 < t->n_added; j++)
            if (strcmp(t->added[j].content, c) == 0)
                return wf_fail(err, WF_EFORMAT, "%s: added token '%s' is listed twice", path, c);
    }
    return WF_OK;
}

/* Without tokenizer.json: the pieces transformers' T5 conversion turns into added tokens. */
static wf_status load_added_spm(tok_tokenizer *t, wf_err *err) {
    t->added = calloc((size_t)t->n_pieces, sizeof *t->added);
    if (!t->added) return wf_fail(err, WF_ENOMEM, "out of memory");
    char piece[256];
    for (int32_t id = 0; id < t->n_pieces; id++) {
        if (!spm_is_control(t->spm, id) && !spm_is_unknown(t->spm, id)) continue;
        if (spm_id_to_piece(t->spm, id, piece, sizeof piece) != 0 || !piece[0]) continue;
        tok_added *a = &t->added[t->n_added];
        if (!(a->content = strdup(piece))) return wf_fail(err, WF_ENOMEM, "out of memory");
        a->len = strlen(piece);
        a->id = id;
        a->special = true;
        t->n_added++;
    }
    return WF_OK;
}

/* The id of a special token's text: an added token, else a piece of spiece.model. */
static wf_status resolve_id(const tok_tokenizer *t, const char *text, const char *what,
                            int32_t *id, wf_err *err) {
    for (size_t i = 0; i < t->n_added; i++)
        if (strcmp(t->added[i].content, text) == 0) {
            *id = t->added[i].id;
            return WF_OK;
        }
    int v = spm_piece_to_id(t->spm, text);
    char piece[256];
    if (v < 0 || spm_id_to_piece(t->spm, v, piece, sizeof piece) != 0 || strcmp(piece, text) != 0)
        return wf_fail(err, WF_EFORMAT,
                       "%s: the %s '%s' is neither an added token of tokenizer.json nor a piece "
                       "of spiece.model",
                       t->dir, what, text);
    *id = v;
    return WF_OK;
}

/* A special-token field of tokenizer_config.json: a string or {"content": ...}. */
static wf_status config_token(const json_t *root, const char *key, const char *dflt,
                              const char *path, char *out, size_t cap, wf_err *err) {
    const json_t *v = root ? json_object_get(root, key) : NULL;
    const char *s = dflt;
    if (v && json_is_object(v)) v = json_object_get(v, "content");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v))
            return wf_fail(err, WF_EFORMAT, "%s: field '%s' must be a string or {\"content\": ...}",
                           path, key);
        s = json_string_value(v);
    }
    if (strlen(s) >= cap)
        return wf_fail(err, WF_EFORMAT, "%s: field '%s' is too long", path, key);
    strcpy(out, s);
    return WF_OK;
}

/* Splitting on added tokens and encoding each stretch separately reproduces tokenizers only if
 * SentencePiece drops whitespace at the ends of a stretch and collapses runs inside it, as every
 * T5/umT5 model does (remove_extra_whitespaces; transformers' T5 conversion splits on whitespace
 * whatever the model says). The flag is not readable through the public API, so it is probed. */
static wf_status check_whitespace(const tok_tokenizer *t, const char *model, wf_err *err) {
    int *a = NULL, *b = NULL;
    char msg[256] = "";
    long na = spm_encode(t->spm, "a b", 3, &a, msg, sizeof msg);
    long nb = spm_encode(t->spm, " a  b ", 6, &b, msg, sizeof msg);
    bool same = na >= 0 && na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
    free(a);
    free(b);
    if (na < 0 || nb < 0)
        return wf_fail(err, WF_EFORMAT, "%s: sentencepiece cannot encode a probe text: %s", model,
                       msg);
    if (!same)
        return wf_fail(err, WF_EUNSUPPORTED,
                       "%s: the model keeps extra whitespace (remove_extra_whitespaces=false); "
                       "transformers' T5 tokenizer drops it, which wanfarm cannot reproduce with "
                       "this model",
                       model);
    return WF_OK;
}

/* spiece.model: loaded, with its vocabulary size and unknown id, and probed (check_whitespace). */
static wf_status load_spiece(tok_tokenizer *t, const char *model, wf_err *err) {
    /* sentencepiece opens the file by name: its type is checked here first, so that a FIFO is
     * refused instead of blocking sentencepiece's open */
    bool absent;
    wf_status st = fsin_check(model, &absent, err);
    if (st && absent)
        return wf_fail(err, WF_EIO,
                       "%s: missing; the tokenizer folder must hold the SentencePiece model "
                       "spiece.model (the Wan Diffusers repos ship it in tokenizer/)",
                       model);
    if (st) return st;
    char msg[512] = "";
    if (!(t->spm = spm_load(model, msg, sizeof msg)))
        return wf_fail(err, WF_EFORMAT, "%s: sentencepiece cannot load it: %s", model, msg);
    t->n_pieces = spm_vocab_size(t->spm);
    t->unk_id = spm_unk_id(t->spm);
    if (t->n_pieces <= 0) return wf_fail(err, WF_EFORMAT, "%s: the model has no pieces", model);
    return check_whitespace(t, model, err);
}

/* tokenizer_config.json (tc), when there is one: *cfg is its root object (NULL without the file;
 * the caller frees it). Padding and truncation must be on the right. */
static wf_status load_config(const char *tc, json_t **cfg, wf_err *err) {
    *cfg = NULL;
    bool present;
    wf_status st = optional_file(tc, &present, err);
    if (st || !present) return st;
    json_error_t je;
    /* integers as reals: transformers writes model_max_length as 1e30 in integer form */
    st = fsin_json_load(tc, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, cfg, &je, NULL, err);
    if (st == WF_EIO) return st;
    if (st || !json_is_object(*cfg))
        return wf_fail(err, WF_EFORMAT, "%s: %s", tc,
                       *cfg ? "the root must be an object" : je.text);
    static const char *const sides[] = {"padding_side", "truncation_side"};
    for (int i = 0; i < 2; i++) {
        const json_t *v = json_object_get(*cfg, sides[i]);
        if (v && !json_is_null(v) &&
            (!json_is_string(v) || strcmp(json_string_value(v), "right") != 0))
            return wf_fail(err, WF_EUNSUPPORTED,
                           "%s: %s must be \"right\" (as the Wan pipelines use it)", tc, sides[i]);
    }
    return WF_OK;
}

/* The added tokens: tokenizer.json's (tj) when the folder has one, else the pieces of spiece.model
 * that transformers' T5 conversion adds (then tokenizer_config.json may not declare extra_ids). */
static wf_status load_added(tok_tokenizer *t, const char *dir, const char *tj, const json_t *cfg,
                            wf_err *err) {
    wf_status st = WF_OK;
    tj_doc doc = {0};
    bool present;
    if ((st = optional_file(tj, &present, err))) return st;
    if (!present) {
        const json_t *x = cfg ? json_object_get(cfg, "extra_ids") : NULL;
        if (x && !json_is_null(x) && (!json_is_number(x) || json_number_value(x) != 0))
            return wf_fail(err, WF_EUNSUPPORTED,
                           "%s: tokenizer_config.json declares extra_ids, but tokenizer.json "
                           "(which gives their ids) is missing; copy tokenizer.json from the "
                           "model repo",
                           dir);
        return load_added_spm(t, err);
    }
    WF_TRY(read_tokenizer_json(tj, &doc, err));
    if (!doc.added) {
        st = wf_fail(err, WF_EFORMAT, "%s: no top-level \"added_tokens\" array", tj);
        goto out;
    }
    const json_t *type = doc.model ? json_object_get(doc.model, "type") : NULL;
    if (!type || !json_is_string(type) || strcmp(json_string_value(type), "Unigram") != 0) {
        st = wf_fail(err, WF_EUNSUPPORTED,
                     "%s: \"model\".\"type\" is %s%s%s; a T5 tokenizer is \"Unigram\" (the "
                     "SentencePiece model that spiece.model holds)",
                     tj, type && json_is_string(type) ? "\"" : "",
                     type && json_is_string(type) ? json_string_value(type) : "missing",
                     type && json_is_string(type) ? "\"" : "");
        goto out;
    }
    t->byte_fallback = json_is_true(json_object_get(doc.model, "byte_fallback"));
    WF_TRY(load_added_json(t, tj, doc.added, err));
    t->added_from_json = true;
out:
    json_decref(doc.added);
    json_decref(doc.model);
    return st;
}

/* eos and pad: tokenizer_config.json's (tc) tokens, or the T5 defaults, and their ids. */
static wf_status special_ids(tok_tokenizer *t, const json_t *cfg, const char *tc, wf_err *err) {
    char eos[128], pad[128];
    wf_status st = WF_OK;
    WF_TRY(config_token(cfg, "eos_token", "</s>", tc, eos, sizeof eos, err));
    WF_TRY(config_token(cfg, "pad_token", "<pad>", tc, pad, sizeof pad, err));
    WF_TRY(resolve_id(t, eos, "eos_token", &t->eos_id, err));
    WF_TRY(resolve_id(t, pad, "pad_token", &t->pad_id, err));
out:
    return st;
}

wf_status tok_load(tok_tokenizer **out, const char *dir, wf_err *err) {
    *out = NULL;
    wf_status st = WF_OK;
    tok_tokenizer *t = calloc(1, sizeof *t);
    char *model = path_join(dir, "spiece.model"), *tj = path_join(dir, "tokenizer.json"),
         *tc = path_join(dir, "tokenizer_config.json");
    json_t *cfg = NULL;
    if (!t || !model || !tj || !tc || !(t->dir = strdup(dir))) {
        st = wf_fail(err, WF_ENOMEM, "out of memory");
        goto out;
    }
    WF_TRY(load_spiece(t, model, err));
    WF_TRY(load_config(tc, &cfg, err));
    WF_TRY(load_added(t, dir, tj, cfg, err));
    WF_TRY(special_ids(t, cfg, tc, err));
    t->n_ids = t->n_pieces;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id >= t->n_ids) t->n_ids = t->added[i].id + 1;
out:
    json_decref(cfg);
    free(model);
    free(tj);
    free(tc);
    if (st) tok_free(&t);
    *out = t;
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------------------------- */

typedef struct ids_buf {
    int32_t *v;
    size_t n, cap;
} ids_buf;

static wf_status ids_push(ids_buf *b, const int *src, size_t n, wf_err *err) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n) cap *= 2;
        int32_t *v = realloc(b->v, cap * sizeof *v);
        if (!v) return wf_fail(err, WF_ENOMEM, "tokenizer: out of memory for %zu ids", cap);
        b->v = v;
        b->cap = cap;
    }
    for (size_t i = 0; i < n; i++) b->v[b->n++] = (int32_t)src[i];
    return WF_OK;
}

/* SentencePiece ids of s[0..len). */
static wf_status encode_plain(const tok_tokenizer *t, const char *s, size_t len, ids_buf *b,
                              wf_err *err) {
    if (len == 0) return WF_OK;
    int *ids = NULL;
    char msg[512] = "";
    long n = spm_encode(t->spm, s, len, &ids, msg, sizeof msg);
    if (n < 0)
        return wf_fail(err, WF_EINVAL, "%s/spiece.model: sentencepiece cannot encode the text: %s",
                       t->dir, msg);
    if (!t->byte_fallback) {
        /* SentencePiece spells a run of unknown characters (fused into one <unk>, as tokenizers
         * fuses them too) as <0xXX> byte pieces when the model was trained with byte fallback;
         * tokenizers without byte_fallback keeps the one <unk>. */
        long o = 0;
        bool prev_byte = false;
        for (long i = 0; i < n; i++) {
            bool is_byte = spm_is_byte(t->spm, ids[i]) != 0;
            if (!(is_byte && prev_byte)) ids[o++] = is_byte ? t->unk_id : ids[i];
            prev_byte = is_byte;
        }
        n = o;
    }
    wf_status st = ids_push(b, ids, (size_t)n, err);
    free(ids);
    return st;
}

/* Byte offset where the White_Space run ending at s[end] starts (Rust's \s*$ on s[..end]). */
static size_t space_run_before(const unsigned char *s, size_t end) {
    size_t i = end, k;
    while (i > 0) {
        size_t p = utf8_prev(s, i);
        if (!tok_is_white_space(utf8_at(s, p, &k))) break;
        i = p;
    }
    return i;
}

/* Byte offset where the White_Space run starting at s[start] ends (^\s* on s[start..len)). */
static size_t space_run_after(const unsigned char *s, size_t start, size_t len) {
    size_t i = start, k;
    while (i < len && tok_is_white_space(utf8_at(s, i, &k))) i += k;
    return i;
}

/* Encodes s[0..len): pass == 0 splits out the non-normalized added tokens, and each stretch
 * between them goes through pass 1 (the normalized ones), whose stretches go to SentencePiece.
 * Within a pass: tokenizers' find_matches: leftmost-longest non-overlapping matches over the
 * whole stretch first, then lstrip/rstrip widen each match over adjacent White_Space (never
 * back into the previous match). */
static wf_status encode_span(const tok_tokenizer *t, const char *s, size_t len, int pass,
                             ids_buf *b, wf_err *err) {
    if (pass == 2) return encode_plain(t, s, len, b, err);
    const unsigned char *u = (const unsigned char *)s;
    wf_status st;
    size_t start_offset = 0, pos = 0;
    while (pos < len) {
        /* the leftmost position where a token of this pass matches, and the longest there */
        const tok_added *best = NULL;
        size_t at;
        for (at = pos; at < len; at++) {
            for (size_t i = 0; i < t->n_added; i++) {
                const tok_added *a = &t->added[i];
                if (a->normalized != (pass == 1) || a->len > len - at) continue;
                if (memcmp(s + at, a->content, a->len) == 0 && (!best || a->len > best->len))
                    best = a;
            }
            if (best) break;
        }
        if (!best) break;
        size_t mstart = at, mstop = at + best->len;
        if (best->lstrip) {
            size_t ns = space_run_before(u, mstart);
            mstart = ns > start_offset ? ns : start_offset;
        }
        if (best->rstrip) mstop = space_run_after(u, mstop, len);
        if (start_offset < mstart &&
            (st = encode_span(t, s + start_offset, mstart - start_offset, pass + 1, b, err)))
            return st;
        int id = best->id;
        if ((st = ids_push(b, &id, 1, err))) return st;
        /* The next match is searched after the widened match; tokenizers searches after the
         * unwidened one, which differs only for a token that begins with whitespace. (The
         * widening itself never changes the ids here: SentencePiece drops whitespace at the ends
         * of a stretch anyway, see check_whitespace. It is kept to mirror tokenizers.) */
        start_offset = pos = mstop;
    }
    if (start_offset < len)
        return encode_span(t, s + start_offset, len - start_offset, pass + 1, b, err);
    return WF_OK;
}

wf_status tok_encode(const tok_tokenizer *t, const char *text, int64_t max_len, int32_t *ids,
                     int32_t *mask, int64_t *n_real, int64_t *n_full, wf_err *err) {
    if (max_len < 1)
        return wf_fail(err, WF_EINVAL, "tokenizer: max_sequence_length is %lld, need at least 1",
                       (long long)max_len);
    size_t len = strlen(text);
    wf_status st = check_utf8(text, len, "prompt", err);
    if (st) return st;
    ids_buf b = {0};
    WF_TRY(encode_span(t, text, len, 0, &b, err));
    /* truncation=True: keep max_len - 1 text tokens, then </s>; pad to max_len */
    size_t keep = b.n < (size_t)(max_len - 1) ? b.n : (size_t)(max_len - 1);
    for (size_t i = 0; i < keep; i++) ids[i] = b.v[i];
    ids[keep] = t->eos_id;
    for (int64_t i = 0; i < max_len; i++) {
        mask[i] = i <= (int64_t)keep;
        if (i > (int64_t)keep) ids[i] = t->pad_id;
    }
    if (n_real) *n_real = (int64_t)keep + 1;
    if (n_full) *n_full = (int64_t)b.n + 1;
out:
    free(b.v);
    return st;
}

wf_status tok_encode_prompt(const tok_tokenizer *t, const char *prompt, int64_t max_len,
                            int32_t *ids, int32_t *mask, int64_t *n_real, int64_t *n_full,
                            wf_err *err) {
    char *clean = NULL;
    wf_status st = tok_prompt_clean(prompt, &clean, err);
    if (st) return st;
    st = tok_encode(t, clean, max_len, ids, mask, n_real, n_full, err);
    free(clean);
    return st;
}
