/* st_read.c: safetensors header validation and mmap'd files (see safetensors.h).
 *
 * The order of the checks follows the reference implementation, so the first problem a file has
 * is the one reported. Every message names the file (label) and says what is wrong.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fsin.h"
#include "safetensors.h"

static const struct {
    const char *name;
    size_t bits;
} st_dtypes[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 8},        [ST_F4] = {"F4", 4},
    [ST_F6_E2M3] = {"F6_E2M3", 6},  [ST_F6_E3M2] = {"F6_E3M2", 6},
    [ST_U8] = {"U8", 8},            [ST_I8] = {"I8", 8},
    [ST_F8_E5M2] = {"F8_E5M2", 8},  [ST_F8_E4M3] = {"F8_E4M3", 8},
    [ST_F8_E8M0] = {"F8_E8M0", 8},  [ST_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [ST_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [ST_I16] = {"I16", 16},         [ST_U16] = {"U16", 16},
    [ST_F16] = {"F16", 16},         [ST_BF16] = {"BF16", 16},
    [ST_I32] = {"I32", 32},         [ST_U32] = {"U32", 32},
    [ST_F32] = {"F32", 32},         [ST_C64] = {"C64", 64},
    [ST_F64] = {"F64", 64},         [ST_I64] = {"I64", 64},
    [ST_U64] = {"U64", 64},
};

const char *st_dtype_name(st_dtype dt) {
    return (unsigned)dt < ST_DTYPE_COUNT ? st_dtypes[dt].name : "?";
}
size_t st_dtype_bits(st_dtype dt) { return (unsigned)dt < ST_DTYPE_COUNT ? st_dtypes[dt].bits : 0; }
size_t st_dtype_size(st_dtype dt) {
    return (unsigned)dt < ST_DTYPE_COUNT && st_dtypes[dt].bits % 8 == 0 ? st_dtypes[dt].bits / 8 : 0;
}

int st_dtype_parse(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(s, st_dtypes[i].name) == 0) {
            *out = (st_dtype)i;
            return 0;
        }
    return -1;
}

/* Strict UTF-8 (no overlong forms, no surrogates, <= U+10FFFF). Returns the offset of the
 * first bad byte, or len when valid. */
static size_t utf8_bad_offset(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { n = 1; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { n = 2; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { n = 3; cp = c & 0x07; }
        else return i;
        if (len - i <= n) return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += n + 1;
    }
    return len;
}

static void tensors_free(st_tensor *t, size_t n) {
    if (!t) return;
    for (size_t i = 0; i < n; i++) {
        free(t[i].name);
        free(t[i].shape);
    }
    free(t);
}

void st_close(st_file **pf) {
    if (!pf || !*pf) return;
    st_file *f = *pf;
    tensors_free(f->tensors, f->n_tensors);
    for (size_t i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->meta);
    if (f->map && f->path) munmap(f->map, f->size); /* only st_open maps; st_parse borrows */
    free(f->path);
    free(f);
    *pf = NULL;
}

static int cmp_by_offset(const void *a, const void *b) {
    const st_tensor *x = *(st_tensor *const *)a, *y = *(st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

/* Reads a JSON integer in [0, 2^63) into *out. */
static int json_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v)) return -1;
    json_int_t i = json_integer_value(v);
    if (i < 0) return -1;
    *out = (uint64_t)i;
    return 0;
}

/* One header entry -> t. The caller has checked that v is the entry of key `name`. */
static wf_status parse_entry(st_tensor *t, const char *name, json_t *v, const char *label,
                             wf_err *err) {
    if (!json_is_object(v))
        return wf_fail(err, WF_EFORMAT, "%s: header entry '%s' is not an object", label, name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!jd || !js || !jo)
        return wf_fail(err, WF_EFORMAT, "%s: tensor '%s' lacks '%s'", label, name,
                       !jd ? "dtype" : !js ? "shape" : "data_offsets");
    if (!json_is_string(jd))
        return wf_fail(err, WF_EFORMAT, "%s: tensor '%s': dtype is not a string", label, name);
    if (st_dtype_parse(json_string_value(jd), &t->dtype))
        return wf_fail(err, WF_EFORMAT,
                       "%s: tensor '%s' has unknown dtype \"%.32s\" (known: BOOL U8 I8 I16 U16 "
                       "I32 U32 I64 U64 F4 F6_E2M3 F6_E3M2 F8_E4M3 F8_E5M2 F8_E8M0 F8_E4M3FNUZ "
                       "F8_E5M2FNUZ F16 BF16 F32 F64 C64)",
                       label, name, json_string_value(jd));
    if (!json_is_array(js))
        return wf_fail(err, WF_EFORMAT, "%s: tensor '%s': shape is not an array", label, name);
    size_t nd = json_array_size(js);
    if (nd > 1024)
        return wf_fail(err, WF_EFORMAT, "%s: tensor '%s' has %zu dimensions (limit 1024)", label,
                       name, nd);
    t->ndim = (int)nd;
    t->shape = nd ? calloc(nd, sizeof *t->shape) : NULL;
    if (nd && !t->shape) return wf_fail(err, WF_ENOMEM, "%s: out of memory", label);
    uint64_t numel = 1;
    int overflow = 0;
    for (size_t i = 0; i < nd; i++) {
        if (json_u64(json_array_get(js, i), &t->shape[i]))
            return wf_fail(err, WF_EFORMAT,
                           "%s: tensor '%s': shape[%zu] is not a non-negative integer", label,
                           name, i);
        if (__builtin_mul_overflow(numel, t->shape[i], &numel)) overflow = 1;
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        json_u64(json_array_get(jo, 0), &t->begin) || json_u64(json_array_get(jo, 1), &t->end))
        return wf_fail(err, WF_EFORMAT,
                       "%s: tensor '%s': data_offsets must be [begin, end] with non-negative "
                       "integers",
                       label, name);
    uint64_t nbits;
    /* like the reference's checked try_fold: an overflow at any step is an error, even when a
     * later dimension is 0 */
    if (overflow || __builtin_mul_overflow(numel, (uint64_t)st_dtype_bits(t->dtype), &nbits))
        return wf_fail(err, WF_EFORMAT, "%s: tensor '%s': shape x dtype size overflows 64 bits",
                       label, name);
    if (nbits % 8)
        return wf_fail(err, WF_EFORMAT,
                       "%s: tensor '%s': %llu elements of %s are not a whole number of bytes",
                       label, name, (unsigned long long)numel, st_dtype_name(t->dtype));
    uint64_t nbytes = nbits / 8;
    t->numel = numel;
    if (t->end < t->begin)
        return wf_fail(err, WF_EFORMAT, "%s: tensor '%s': data_offsets end %llu < begin %llu",
                       label, name, (unsigned long long)t->end, (unsigned long long)t->begin);
    if (t->end - t->begin != nbytes)
        return wf_fail(err, WF_EFORMAT,
                       "%s: tensor '%s': %s shape needs %llu bytes but data_offsets span %llu",
                       label, name, st_dtype_name(t->dtype), (unsigned long long)nbytes,
                       (unsigned long long)(t->end - t->begin));
    return WF_OK;
}

static wf_status parse_metadata(st_file *f, json_t *v, const char *label, wf_err *err) {
    if (!json_is_object(v))
        return wf_fail(err, WF_EFORMAT, "%s: __metadata__ is not an object of strings", label);
    size_t n = json_object_size(v);
    f->meta = calloc(2 * n + 1, sizeof *f->meta);
    if (!f->meta) return wf_fail(err, WF_ENOMEM, "%s: out of memory", label);
    const char *k;
    json_t *val;
    json_object_foreach(v, k, val) {
        if (!json_is_string(val))
            return wf_fail(err, WF_EFORMAT, "%s: __metadata__ value of '%s' is not a string",
                           label, k);
        f->meta[2 * f->n_meta] = strdup(k);
        f->meta[2 * f->n_meta + 1] = strdup(json_string_value(val));
        f->n_meta++;
        if (!f->meta[2 * f->n_meta - 2] || !f->meta[2 * f->n_meta - 1])
            return wf_fail(err, WF_ENOMEM, "%s: out of memory", label);
    }
    return WF_OK;
}

static wf_status parse_header(st_file *f, const unsigned char *buf, size_t len, const char *label,
                              wf_err *err) {
    if (len < 8)
        return wf_fail(err, WF_EFORMAT,
                       "%s: file of %zu bytes is too small for a safetensors header (8-byte "
                       "length prefix missing)",
                       label, len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    f->header_len = n;
    if (n > ST_MAX_HEADER)
        return wf_fail(err, WF_EFORMAT, "%s: header length %llu exceeds the 100 MB limit", label,
                       (unsigned long long)n);
    if (n > len - 8)
        return wf_fail(err, WF_EFORMAT,
                       "%s: header length %llu runs past the end of the %zu-byte file "
                       "(truncated file?)",
                       label, (unsigned long long)n, len);
    const unsigned char *h = buf + 8;
    size_t bad = utf8_bad_offset(h, n);
    if (bad != n)
        return wf_fail(err, WF_EFORMAT, "%s: header is not valid UTF-8 (byte %zu of the header)",
                       label, bad);
    if (n == 0 || h[0] != '{')
        return wf_fail(err, WF_EFORMAT, "%s: header does not start with '{'", label);
    if (memchr(h, 0, n))
        return wf_fail(err, WF_EFORMAT, "%s: header contains a NUL byte", label);

    json_error_t je;
    json_t *root = json_loadb((const char *)h, n, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (json_error_code(&je) == json_error_duplicate_key)
            return wf_fail(err, WF_EFORMAT, "%s: header has a duplicate key, e.g. a repeated tensor name (%s)", label,
                           je.text);
        return wf_fail(err, WF_EFORMAT, "%s: header is not valid JSON: %s at byte %d", label,
                       je.text, je.position);
    }
    wf_status st = WF_OK;
    if (!json_is_object(root)) {
        st = wf_fail(err, WF_EFORMAT, "%s: header is not a JSON object", label);
        goto out_root;
    }
    size_t cap = json_object_size(root);
    f->tensors = calloc(cap ? cap : 1, sizeof *f->tensors);
    if (!f->tensors) {
        st = wf_fail(err, WF_ENOMEM, "%s: out of memory", label);
        goto out_root;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if ((st = parse_metadata(f, val, label, err))) goto out_root;
            continue;
        }
        st_tensor *t = &f->tensors[f->n_tensors++];
        t->name = strdup(key);
        if (!t->name) {
            st = wf_fail(err, WF_ENOMEM, "%s: out of memory", label);
            goto out_root;
        }
        if ((st = parse_entry(t, key, val, label, err))) goto out_root;
    }

    /* Contiguity, in offset order: each span starts where the previous ended, from 0. */
    st_tensor **order = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *order);
    if (!order) {
        st = wf_fail(err, WF_ENOMEM, "%s: out of memory", label);
        goto out_root;
    }
    for (size_t i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
    qsort(order, f->n_tensors, sizeof *order, cmp_by_offset);
    uint64_t end = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        if (order[i]->begin != end) {
            st = wf_fail(err, WF_EFORMAT,
                         "%s: tensor '%s' starts at byte %llu of the data, expected %llu "
                         "(tensors must be contiguous, without gaps or overlaps)",
                         label, order[i]->name, (unsigned long long)order[i]->begin,
                         (unsigned long long)end);
            free(order);
            goto out_root;
        }
        end = order[i]->end;
    }
    free(order);
    uint64_t data_len = (uint64_t)len - 8 - n;
    if (end != data_len) {
        st = wf_fail(err, WF_EFORMAT,
                     "%s: tensors cover %llu data bytes but the file holds %llu after the header "
                     "(%s)",
                     label, (unsigned long long)end, (unsigned long long)data_len,
                     end < data_len ? "trailing bytes" : "truncated file");
        goto out_root;
    }
    for (size_t i = 0; i < f->n_tensors; i++) f->tensors[i].data = h + n + f->tensors[i].begin;
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_by_name);
out_root:
    json_decref(root);
    return st;
}

wf_status st_parse(st_file **out, const unsigned char *buf, size_t len, const char *label,
                   wf_err *err) {
    *out = NULL;
    st_file *f = calloc(1, sizeof *f);
    if (!f) return wf_fail(err, WF_ENOMEM, "%s: out of memory", label);
    f->map = (unsigned char *)buf;
    f->size = len;
    wf_status st = parse_header(f, buf, len, label, err);
    if (st) {
        st_close(&f);
        return st;
    }
    for (size_t i = 0; i < f->n_tensors; i++) f->tensors[i].file = label;
    *out = f;
    return WF_OK;
}

wf_status st_open(st_file **out, const char *path, wf_err *err) {
    *out = NULL;
    int fd;
    size_t len;
    /* a FIFO, a folder or a device is refused before it is opened (fsin.h) */
    wf_status st = fsin_open(path, &fd, &len, NULL, err);
    if (st) return st;
    if (len < 8) {
        close(fd);
        return wf_fail(err, WF_EFORMAT,
                       "%s: file of %zu bytes is too small for a safetensors header (8-byte "
                       "length prefix missing)",
                       path, len);
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return wf_fail(err, WF_EIO, "%s: cannot map: %s", path, strerror(errno));
    st_file *f = NULL;
    char *p = strdup(path);
    st = p ? st_parse(&f, map, len, path, err) : wf_fail(err, WF_ENOMEM, "out of memory");
    if (st) {
        free(p);
        munmap(map, len);
        return st;
    }
    f->path = p;
    for (size_t i = 0; i < f->n_tensors; i++) f->tensors[i].file = f->path;
    *out = f;
    return WF_OK;
}

const st_tensor *st_file_find(const st_file *f, const char *name) {
    st_tensor key = {.name = (char *)name};
    return bsearch(&key, f->tensors, f->n_tensors, sizeof *f->tensors, cmp_by_name);
}

const char *st_file_meta(const st_file *f, const char *key) {
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}

st_dtype st_dtype_of(wk_dtype dt) {
    switch (dt) {
    case WK_F32: return ST_F32;
    case WK_BF16: return ST_BF16;
    case WK_F16: return ST_F16;
    case WK_F8E4M3: return ST_F8_E4M3;
    default: return ST_DTYPE_COUNT;
    }
}

wf_status st_tensor_view(const st_tensor *t, wk_tensor *out, wf_err *err) {
    wk_dtype dt;
    switch (t->dtype) {
    case ST_F32: dt = WK_F32; break;
    case ST_BF16: dt = WK_BF16; break;
    case ST_F16: dt = WK_F16; break;
    case ST_F8_E4M3: dt = WK_F8E4M3; break;
    default:
        return wf_fail(err, WF_EUNSUPPORTED,
                       "%s: tensor '%s' has dtype %s; the runtime computes with F32, BF16, F16 or "
                       "F8_E4M3 weights",
                       t->file, t->name, st_dtype_name(t->dtype));
    }
    if ((uintptr_t)t->data % wk_dtype_size(dt))
        return wf_fail(err, WF_EUNSUPPORTED,
                       "%s: tensor '%s' is not aligned to its %zu-byte elements in the file; "
                       "re-save the checkpoint with the safetensors library, which aligns them",
                       t->file, t->name, wk_dtype_size(dt));
    if (t->ndim > WK_MAX_DIMS)
        return wf_fail(err, WF_EUNSUPPORTED, "%s: tensor '%s' has %d dimensions (the runtime holds %d)",
                       t->file, t->name, t->ndim, WK_MAX_DIMS);
    int64_t shape[WK_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] > (uint64_t)INT64_MAX)
            return wf_fail(err, WF_EUNSUPPORTED, "%s: tensor '%s': dimension too large", t->file,
                           t->name);
        shape[i] = (int64_t)t->shape[i];
    }
    *out = wk_tensor_make(dt, (void *)t->data, t->ndim, shape);
    out->name = t->name;
    return WF_OK;
}
