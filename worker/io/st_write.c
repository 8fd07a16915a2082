/* st_write.c: writing safetensors files atomically (see safetensors.h).
 *
 * The header is compact JSON (jansson), padded with spaces to a multiple of 8 bytes. The data are
 * laid out by decreasing element size (then in the caller's order), as the reference writer does,
 * so every tensor starts aligned to its element size in an mmap. Where the bytes go is fileio.h's
 * (fio_write_atomic): a temporary beside the file (a symlink's target), fsync'd and renamed, so a
 * reader sees either the old file or the complete new one, made 0666 & ~umask; a character device
 * is written in place; a FIFO is refused (readers map the file: it is not streamed).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "safetensors.h"

/* order[] = item indices by decreasing dtype size, stable. */
static void layout_order(const st_item *items, size_t n, size_t *order) {
    static const size_t bits[] = {64, 32, 16, 8, 6, 4};
    size_t k = 0;
    for (size_t b = 0; b < sizeof bits / sizeof *bits; b++)
        for (size_t i = 0; i < n; i++)
            if ((unsigned)items[i].dtype < ST_DTYPE_COUNT && st_dtype_bits(items[i].dtype) == bits[b])
                order[k++] = i;
    for (size_t i = 0; i < n; i++) /* invalid dtypes last; build_header refuses them */
        if ((unsigned)items[i].dtype >= ST_DTYPE_COUNT) order[k++] = i;
}

static wf_status build_header(const st_item *items, size_t n, const size_t *order,
                              const char *const *meta, size_t n_meta, const char *path, char **out,
                              size_t **sizes, wf_err *err) {
    wf_status st = WF_OK;
    json_t *root = json_object();
    size_t *nb = calloc(n ? n : 1, sizeof *nb);
    if (!root || !nb) {
        st = wf_fail(err, WF_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if (n_meta) {
        json_t *m = json_object();
        if (!m || json_object_set_new(root, "__metadata__", m)) {
            st = wf_fail(err, WF_ENOMEM, "%s: out of memory", path);
            goto out;
        }
        for (size_t i = 0; i < n_meta; i++)
            if (json_object_set_new(m, meta[2 * i], json_string(meta[2 * i + 1]))) {
                st = wf_fail(err, WF_EINVAL, "%s: metadata key or value %zu is not valid UTF-8",
                             path, i);
                goto out;
            }
    }
    uint64_t off = 0;
    for (size_t oi = 0; oi < n; oi++) {
        size_t i = order[oi];
        const st_item *it = &items[i];
        if (!it->name || !*it->name || strcmp(it->name, "__metadata__") == 0) {
            st = wf_fail(err, WF_EINVAL, "%s: tensor %zu has an empty or reserved name", path, i);
            goto out;
        }
        if (json_object_get(root, it->name)) {
            st = wf_fail(err, WF_EINVAL, "%s: tensor name '%s' is given twice", path, it->name);
            goto out;
        }
        if ((unsigned)it->dtype >= ST_DTYPE_COUNT || it->ndim < 0) {
            st = wf_fail(err, WF_EINVAL, "%s: tensor '%s' has an invalid dtype or rank", path,
                         it->name);
            goto out;
        }
        size_t bytes = st_dtype_bits(it->dtype); /* bits until divided below */
        json_t *shape = json_array();
        for (int d = 0; d < it->ndim; d++) {
            if (it->shape[d] > (uint64_t)INT64_MAX || wf_mul_overflow(bytes, it->shape[d], &bytes)) {
                json_decref(shape);
                st = wf_fail(err, WF_EINVAL, "%s: tensor '%s' is too large", path, it->name);
                goto out;
            }
            json_array_append_new(shape, json_integer((json_int_t)it->shape[d]));
        }
        if (bytes % 8) {
            json_decref(shape);
            st = wf_fail(err, WF_EINVAL, "%s: tensor '%s': its %s elements do not fill whole bytes",
                         path, it->name, st_dtype_name(it->dtype));
            goto out;
        }
        bytes /= 8;
        nb[i] = bytes;
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", st_dtype_name(it->dtype), "shape",
                              shape, "data_offsets", (json_int_t)off, (json_int_t)(off + bytes));
        if (!e || json_object_set_new(root, it->name, e)) {
            st = wf_fail(err, WF_EINVAL, "%s: tensor name '%s' is not valid UTF-8", path,
                         it->name);
            goto out;
        }
        off += bytes;
    }
    *out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!*out) st = wf_fail(err, WF_ENOMEM, "%s: cannot serialise the header", path);
out:
    json_decref(root);
    if (st) free(nb);
    else *sizes = nb;
    return st;
}

wf_status st_write(const char *path, const st_item *items, size_t n, const char *const *meta,
                   size_t n_meta, wf_err *err) {
    char *hdr = NULL;
    size_t *sizes = NULL, *order = malloc((n ? n : 1) * sizeof *order);
    if (!order) return wf_fail(err, WF_ENOMEM, "%s: out of memory", path);
    layout_order(items, n, order);
    wf_status st = build_header(items, n, order, meta, n_meta, path, &hdr, &sizes, err);
    if (st) {
        free(order);
        return st;
    }
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;
    unsigned char prefix[8];
    for (int i = 0; i < 8; i++) prefix[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";
    fio_part *parts = malloc((n + 3) * sizeof *parts);
    if (!parts) {
        st = wf_fail(err, WF_ENOMEM, "%s: out of memory", path);
        goto out_free;
    }
    parts[0] = (fio_part){prefix, 8};
    parts[1] = (fio_part){hdr, hlen};
    parts[2] = (fio_part){spaces, padded - hlen};
    for (size_t oi = 0; oi < n; oi++)
        parts[3 + oi] = (fio_part){items[order[oi]].data, sizes[order[oi]]};
    st = fio_write_atomic(path, parts, n + 3, err);
    free(parts);
out_free:
    free(order);
    free(hdr);
    free(sizes);
    return st;
}
