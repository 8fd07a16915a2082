/* tensor.c: tensor headers, sizes and argument checks (see tensor.h). */
#include "tensor.h"

#include <stdio.h>

wk_tensor wk_tensor_make(wk_dtype dt, void *data, int ndim, const int64_t *shape) {
    WF_ASSERT(ndim >= 0 && ndim <= WK_MAX_DIMS);
    wk_tensor t = {.dtype = dt, .device = WK_DEV_CPU, .ndim = ndim, .data = data};
    for (int i = 0; i < WK_MAX_DIMS; i++) t.shape[i] = i < ndim ? shape[i] : 1;
    return t;
}

wk_tensor wk_tensor_1d(wk_dtype dt, void *data, int64_t d0) {
    return wk_tensor_make(dt, data, 1, (int64_t[]){d0});
}
wk_tensor wk_tensor_2d(wk_dtype dt, void *data, int64_t d0, int64_t d1) {
    return wk_tensor_make(dt, data, 2, (int64_t[]){d0, d1});
}
wk_tensor wk_tensor_3d(wk_dtype dt, void *data, int64_t d0, int64_t d1, int64_t d2) {
    return wk_tensor_make(dt, data, 3, (int64_t[]){d0, d1, d2});
}
wk_tensor wk_tensor_4d(wk_dtype dt, void *data, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    return wk_tensor_make(dt, data, 4, (int64_t[]){d0, d1, d2, d3});
}
wk_tensor wk_tensor_5d(wk_dtype dt, void *data, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                       int64_t d4) {
    return wk_tensor_make(dt, data, 5, (int64_t[]){d0, d1, d2, d3, d4});
}

int64_t wk_tensor_numel(const wk_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t wk_tensor_nbytes(const wk_tensor *t) {
    return (size_t)wk_tensor_numel(t) * wk_dtype_size(t->dtype);
}

int64_t wk_tensor_inner(const wk_tensor *t, int from) {
    int64_t n = 1;
    for (int i = from; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

bool wk_tensor_same_shape(const wk_tensor *a, const wk_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *wk_tensor_shape_str(const wk_tensor *t, char *buf, size_t len) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, o < len ? len - o : 0, "[");
    for (int i = 0; i < t->ndim; i++)
        o += (size_t)snprintf(buf + o, o < len ? len - o : 0, "%s%lld", i ? ", " : "",
                              (long long)t->shape[i]);
    snprintf(buf + o, o < len ? len - o : 0, "]");
    return buf;
}

wf_status wk_check_dtype(const wk_tensor *t, wk_dtype dt, const char *op, const char *arg,
                         wf_err *err) {
    if (t->dtype == dt) return WF_OK;
    return wf_fail(err, WF_EUNSUPPORTED, "%s: %s%s%s has dtype %s, expected %s", op, arg,
                   t->name ? " " : "", t->name ? t->name : "", wk_dtype_name(t->dtype),
                   wk_dtype_name(dt));
}

wf_status wk_check_ndim(const wk_tensor *t, int ndim, const char *op, const char *arg,
                        wf_err *err) {
    if (t->ndim == ndim) return WF_OK;
    char s[96];
    return wf_fail(err, WF_EINVAL, "%s: %s has shape %s, expected %d dimensions", op, arg,
                   wk_tensor_shape_str(t, s, sizeof s), ndim);
}

wf_status wk_check_same_shape(const wk_tensor *a, const wk_tensor *b, const char *op,
                              const char *an, const char *bn, wf_err *err) {
    if (wk_tensor_same_shape(a, b)) return WF_OK;
    char sa[96], sb[96];
    return wf_fail(err, WF_EINVAL, "%s: %s shape %s differs from %s shape %s", op, an,
                   wk_tensor_shape_str(a, sa, sizeof sa), bn, wk_tensor_shape_str(b, sb, sizeof sb));
}
