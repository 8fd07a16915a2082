/* op_check.c: argument checks shared by the backends (see op_check.h). */
#include "op_check.h"

#include "backend.h"

wf_status wk_check_broadcast(const wk_tensor *a, const wk_tensor *b, const char *op,
                             int64_t bstride[WK_MAX_DIMS], wf_err *err) {
    char sa[96], sb[96];
    int off = a->ndim - b->ndim; /* b dim j sits under a dim j + off */
    for (int j = 0; j < -off; j++)
        if (b->shape[j] != 1)
            return wf_fail(err, WF_EINVAL, "%s: b shape %s has more dims than a shape %s", op,
                           wk_tensor_shape_str(b, sb, sizeof sb),
                           wk_tensor_shape_str(a, sa, sizeof sa));
    int64_t stride = 1;
    for (int i = a->ndim - 1; i >= 0; i--) {
        int j = i - off;
        int64_t bd = j >= 0 ? b->shape[j] : 1;
        if (bd != 1 && bd != a->shape[i])
            return wf_fail(err, WF_EINVAL,
                           "%s: b shape %s does not broadcast to a shape %s (dim %d: %lld vs %lld)",
                           op, wk_tensor_shape_str(b, sb, sizeof sb),
                           wk_tensor_shape_str(a, sa, sizeof sa), i, (long long)bd,
                           (long long)a->shape[i]);
        bstride[i] = bd == 1 ? 0 : stride;
        stride *= bd;
    }
    return WF_OK;
}

/* The box [off, off + ext) must fit t in every dim. */
static wf_status box_fits(const wk_tensor *t, const int64_t *off, const int64_t *ext,
                          const char *arg, wf_err *err) {
    char s[96];
    for (int d = 0; d < t->ndim; d++)
        if (off[d] < 0 || ext[d] < 0 || off[d] > t->shape[d] - ext[d])
            return wf_fail(err, WF_EINVAL,
                           "copy_box: dim %d: box [%lld, %lld) does not fit %s shape %s", d,
                           (long long)off[d], (long long)(off[d] + ext[d]), arg,
                           wk_tensor_shape_str(t, s, sizeof s));
    return WF_OK;
}

wf_status wk_check_copy_box(const wk_tensor *y, const int64_t *y_off, const wk_tensor *x,
                            const int64_t *x_off, const int64_t *ext, wf_err *err) {
    wf_status st;
    char s1[96], s2[96];
    if (x->dtype != y->dtype)
        return wf_fail(err, WF_EINVAL, "copy_box: y has dtype %s, x %s: expected the same",
                       wk_dtype_name(y->dtype), wk_dtype_name(x->dtype));
    if (wk_dtype_size(x->dtype) == 0)
        return wf_fail(err, WF_EUNSUPPORTED, "copy_box: x has an unknown dtype (%d)",
                       (int)x->dtype);
    if (x->ndim != y->ndim || x->ndim < 1)
        return wf_fail(err, WF_EINVAL,
                       "copy_box: y shape %s and x shape %s: expected the same number (>= 1) of "
                       "dims", wk_tensor_shape_str(y, s1, sizeof s1),
                       wk_tensor_shape_str(x, s2, sizeof s2));
    if ((st = box_fits(x, x_off, ext, "x", err))) return st;
    return box_fits(y, y_off, ext, "y", err);
}

wf_status wk_check_permute(const wk_tensor *y, const wk_tensor *x, int nd, const int64_t *shape,
                           const int *perm, int64_t *n, wf_err *err) {
    char s1[96];
    size_t esz = wk_dtype_size(x->dtype);
    if (x->dtype != y->dtype || (esz != 1 && esz != 2 && esz != 4))
        return wf_fail(err, WF_EINVAL,
                       "permute: y has dtype %s, x %s: expected the same dtype, of 1, 2 or 4 "
                       "bytes", wk_dtype_name(y->dtype), wk_dtype_name(x->dtype));
    if (nd < 1 || nd > WK_MAX_PERM_DIMS)
        return wf_fail(err, WF_EINVAL, "permute: %d dims, expected 1 to %d", nd,
                       WK_MAX_PERM_DIMS);
    unsigned seen = 0;
    *n = 1;
    for (int i = 0; i < nd; i++) {
        if (perm[i] < 0 || perm[i] >= nd || (seen >> perm[i] & 1u))
            return wf_fail(err, WF_EINVAL,
                           "permute: perm[%d] = %d: expected a permutation of 0..%d", i, perm[i],
                           nd - 1);
        seen |= 1u << perm[i];
        if (shape[i] < 0)
            return wf_fail(err, WF_EINVAL, "permute: shape[%d] = %lld is negative", i,
                           (long long)shape[i]);
        *n *= shape[i];
    }
    if (wk_tensor_numel(x) != *n)
        return wf_fail(err, WF_EINVAL,
                       "permute: x shape %s has %lld elements, the shape to read it as has %lld",
                       wk_tensor_shape_str(x, s1, sizeof s1), (long long)wk_tensor_numel(x),
                       (long long)*n);
    if (wk_tensor_numel(y) < *n)
        return wf_fail(err, WF_EINVAL,
                       "permute: y shape %s has %lld elements, fewer than the %lld permuted ones",
                       wk_tensor_shape_str(y, s1, sizeof s1), (long long)wk_tensor_numel(y),
                       (long long)*n);
    return WF_OK;
}

wf_status wk_check_shortcut(const wk_tensor *y, const wk_tensor *x, int64_t ft, int64_t fs,
                            const char *op, wf_err *err) {
    wf_status st;
    char s[96];
    if ((st = wk_check_ndim(x, 5, op, "x [1, T, H, W, C]", err))) return st;
    if ((st = wk_check_ndim(y, 5, op, "y [1, T, H, W, C]", err))) return st;
    if (x->shape[0] != 1 || y->shape[0] != 1)
        return wf_fail(err, WF_EINVAL, "%s: %s has shape %s, expected a batch of 1", op,
                       x->shape[0] != 1 ? "x" : "y",
                       wk_tensor_shape_str(x->shape[0] != 1 ? x : y, s, sizeof s));
    if (ft < 1 || fs < 1 || ft > 64 || fs > 64)
        return wf_fail(err, WF_EINVAL, "%s: factors ft %lld, fs %lld, expected each in [1, 64]", op,
                       (long long)ft, (long long)fs);
    return WF_OK;
}

wf_status wk_check_shortcut_y(const wk_tensor *y, const wk_tensor *x, int64_t To, int64_t Ho,
                              int64_t Wo, const char *op, wf_err *err) {
    char sx[96], sy[96];
    if (y->shape[1] == To && y->shape[2] == Ho && y->shape[3] == Wo) return WF_OK;
    return wf_fail(err, WF_EINVAL, "%s: y has shape %s, expected [1, %lld, %lld, %lld, C] for x %s",
                   op, wk_tensor_shape_str(y, sy, sizeof sy), (long long)To, (long long)Ho,
                   (long long)Wo, wk_tensor_shape_str(x, sx, sizeof sx));
}

wf_status wk_check_flat(wk_dev_check dev, const wk_tensor *t, int64_t n, const char *op,
                        const char *arg, wf_err *err) {
    char s[96];
    wf_status st = dev(t, op, arg, err);
    if (!st) st = wk_check_dtype(t, WK_F32, op, arg, err);
    if (st) return st;
    if (wk_tensor_numel(t) == n) return WF_OK;
    return wf_fail(err, WF_EINVAL, "%s: %s has shape %s (%lld elements), expected %lld elements "
                   "(y's)", op, arg, wk_tensor_shape_str(t, s, sizeof s),
                   (long long)wk_tensor_numel(t), (long long)n);
}

wf_status wk_check_update(wk_dev_check dev, const wk_tensor *y, const wk_tensor *a,
                          const wk_tensor *b, const char *op, const char *an, const char *bn,
                          wf_err *err) {
    const int64_t n = wk_tensor_numel(y);
    wf_status st = wk_check_flat(dev, y, n, op, "y", err);
    if (!st) st = wk_check_flat(dev, a, n, op, an, err);
    if (!st) st = wk_check_flat(dev, b, n, op, bn, err);
    return st;
}

wf_status wk_check_unipc(wk_dev_check dev, const wk_tensor *y, const wk_tensor *x,
                         const wk_tensor *const *m, const wk_tensor *d, const wk_unipc_coef *c,
                         wf_err *err) {
    static const char *names[3] = {"m[0]", "m[1]", "m[2]"};
    const char *op = "unipc_update";
    if (!c || c->order < 1 || c->order > 3)
        return wf_fail(err, WF_EINVAL, "unipc_update: order %d, expected 1, 2 or 3",
                       c ? c->order : 0);
    const int64_t n = wk_tensor_numel(y);
    wf_status st = wk_check_flat(dev, y, n, op, "y", err);
    if (!st) st = wk_check_flat(dev, x, n, op, "x", err);
    if (!st && d) st = wk_check_flat(dev, d, n, op, "d", err);
    for (int k = 0; !st && k < c->order; k++) {
        if (!m || !m[k])
            return wf_fail(err, WF_EINVAL, "unipc_update: order %d reads %s, which is missing",
                           c->order, names[k]);
        st = wk_check_flat(dev, m[k], n, op, names[k], err);
    }
    return st;
}
