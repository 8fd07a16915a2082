/* wire.c: the checked codec of the farm's messages (see wire.h). The field walk reads only the
 * descriptors protoc-c generated, so a field added to wanfarm.proto is checked without a line
 * here. */
#include "wire.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ProtobufCMessageDescriptor *const k_desc[WP_NKINDS] = {
    &wanfarm__client_request__descriptor, &wanfarm__client_reply__descriptor,
    &wanfarm__worker_message__descriptor, &wanfarm__coord_message__descriptor,
    &wanfarm__event__descriptor};

const char *wp_kind_name(wp_kind k) {
    return k >= 0 && k < WP_NKINDS ? k_desc[k]->short_name : "?";
}

const ProtobufCMessageDescriptor *wp_descriptor(wp_kind k) {
    return k >= 0 && k < WP_NKINDS ? k_desc[k] : NULL;
}

/* ---- the field walk ---- */

/* Valid UTF-8 (no overlongs, surrogates or code points above U+10FFFF). */
static bool utf8_ok(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n) return false;
        unsigned cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        static const unsigned least[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < least[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

/* How many values field f holds in message m (0 when absent), and where they are. */
static size_t field_values(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                           const void **first) {
    const char *base = (const char *)m;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        *first = *(const void *const *)(base + f->offset);
        return *(const size_t *)(base + f->quantifier_offset);
    }
    *first = base + f->offset;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
    if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)
        return *(const void *const *)*first != NULL;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL)
        return *(const protobuf_c_boolean *)(base + f->quantifier_offset) != 0;
    return 1; /* required scalar */
}

static size_t value_size(const ProtobufCFieldDescriptor *f) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    case PROTOBUF_C_TYPE_FLOAT: return sizeof(float);
    case PROTOBUF_C_TYPE_ENUM: return sizeof(int);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    default: return 0; /* integers, bools and bytes: every value is valid */
    }
}

static wf_status check_message(const ProtobufCMessage *m, char *path, size_t len, int depth,
                               wf_err *err);

/* One value of field f (v points at it); path names the field. */
static wf_status check_value(const ProtobufCFieldDescriptor *f, const void *v, char *path,
                             size_t len, int depth, wf_err *err) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_DOUBLE:
        if (!isfinite(*(const double *)v))
            return wf_fail(err, WF_EPROTO, "%s: not a finite number", path);
        return WF_OK;
    case PROTOBUF_C_TYPE_FLOAT:
        if (!isfinite(*(const float *)v))
            return wf_fail(err, WF_EPROTO, "%s: not a finite number", path);
        return WF_OK;
    case PROTOBUF_C_TYPE_ENUM: {
        int e = *(const int *)v;
        if (!protobuf_c_enum_descriptor_get_value(f->descriptor, e))
            return wf_fail(err, WF_EPROTO, "%s: %d is not a value of %s", path, e,
                           ((const ProtobufCEnumDescriptor *)f->descriptor)->short_name);
        return WF_OK;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(const char *const *)v;
        size_t n = s ? strlen(s) : 0;
        if (n > WP_MAX_STRING)
            return wf_fail(err, WF_EPROTO, "%s: a string of %zu bytes (at most %zu)", path, n,
                           WP_MAX_STRING);
        if (!utf8_ok((const unsigned char *)s, n))
            return wf_fail(err, WF_EPROTO, "%s: not valid UTF-8", path);
        return WF_OK;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        return check_message(*(const ProtobufCMessage *const *)v, path, len, depth + 1, err);
    default:
        return WF_OK;
    }
}

static wf_status check_message(const ProtobufCMessage *m, char *path, size_t len, int depth,
                               wf_err *err) {
    if (!m) return WF_OK;
    if (depth > WP_MAX_DEPTH)
        return wf_fail(err, WF_EPROTO, "%s: nested deeper than %d messages", path, WP_MAX_DEPTH);
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const size_t at = strlen(path);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const size_t vs = value_size(f);
        const void *first = NULL;
        const size_t n = vs ? field_values(m, f, &first) : 0;
        if (!n) continue;
        snprintf(path + at, len - at, ".%s", f->name);
        for (size_t k = 0; k < n; k++) {
            const void *v = f->label == PROTOBUF_C_LABEL_REPEATED
                                ? (const char *)first + k * vs
                                : first;
            wf_status st = check_value(f, v, path, len, depth, err);
            if (st) return st;
        }
        path[at] = 0;
    }
    return WF_OK;
}

wf_status wp_validate(const ProtobufCMessage *m, const char *path, wf_err *err) {
    char p[256];
    snprintf(p, sizeof p, "%s", path && *path ? path : m ? m->descriptor->short_name : "?");
    return check_message(m, p, sizeof p, 0, err);
}

/* ---- the envelope ---- */

/* The envelope rules: a version field 1 equal to WP_VERSION, and a body (its oneof) set. */
static wf_status check_envelope(const ProtobufCMessage *m, wf_err *err) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const ProtobufCFieldDescriptor *v = protobuf_c_message_descriptor_get_field_by_name(d, "version");
    if (!v || v->type != PROTOBUF_C_TYPE_UINT32)
        return wf_fail(err, WF_EPROTO, "%s is not an envelope (no version)", d->short_name);
    const uint32_t ver = *(const uint32_t *)((const char *)m + v->offset);
    if (ver != WP_VERSION)
        return wf_fail(err, WF_EPROTO,
                       "%s of protocol version %u; this build speaks version %u: run the same "
                       "wanfarm release on both sides", d->short_name, ver, WP_VERSION);
    const ProtobufCFieldDescriptor *body = NULL;
    for (unsigned i = 0; i < d->n_fields; i++)
        if (d->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            body = &d->fields[i];
            break;
        }
    if (body && *(const uint32_t *)((const char *)m + body->quantifier_offset) == 0)
        return wf_fail(err, WF_EPROTO, "%s without a body: nothing to do", d->short_name);
    return WF_OK;
}

wf_status wp_decode(wp_kind k, const void *buf, size_t n, ProtobufCMessage **out, wf_err *err) {
    *out = NULL;
    if (k < 0 || k >= WP_NKINDS) return wf_fail(err, WF_EINVAL, "wp_decode: no such kind %d", k);
    const char *name = k_desc[k]->short_name;
    if (n > WP_MAX_MSG)
        return wf_fail(err, WF_EPROTO, "a %s of %zu bytes is over the %zu-byte limit", name, n,
                       WP_MAX_MSG);
    if (!buf && n) return wf_fail(err, WF_EINVAL, "wp_decode: no bytes");
    ProtobufCMessage *m = protobuf_c_message_unpack(k_desc[k], NULL, n, (const uint8_t *)buf);
    if (!m)
        return wf_fail(err, WF_EPROTO, "not a valid %s (%zu bytes: malformed or truncated, or a "
                       "required field is missing)", name, n);
    wf_status st = check_envelope(m, err);
    if (!st) st = wp_validate(m, name, err);
    if (st) {
        protobuf_c_message_free_unpacked(m, NULL);
        return st;
    }
    *out = m;
    return WF_OK;
}

wf_status wp_encode(const ProtobufCMessage *m, uint8_t **buf, size_t *n, wf_err *err) {
    *buf = NULL;
    *n = 0;
    if (!m || !protobuf_c_message_check(m))
        return wf_fail(err, WF_EINVAL, "wp_encode: %s lacks a required field",
                       m ? m->descriptor->short_name : "(null)");
    wf_status st = check_envelope(m, err);
    if (!st) st = wp_validate(m, NULL, err);
    if (st) return st;
    const size_t size = protobuf_c_message_get_packed_size(m);
    if (size > WP_MAX_MSG)
        return wf_fail(err, WF_EINVAL, "a %s of %zu bytes would be over the %zu-byte limit",
                       m->descriptor->short_name, size, WP_MAX_MSG);
    uint8_t *b = malloc(size ? size : 1);
    if (!b) return wf_fail(err, WF_ENOMEM, "out of memory for a %zu-byte message", size);
    if (protobuf_c_message_pack(m, b) != size) {
        free(b);
        return wf_fail(err, WF_EINVAL, "wp_encode: %s packed to an unexpected size",
                       m->descriptor->short_name);
    }
    *buf = b;
    *n = size;
    return WF_OK;
}

void wp_free(ProtobufCMessage *m) {
    if (m) protobuf_c_message_free_unpacked(m, NULL);
}
