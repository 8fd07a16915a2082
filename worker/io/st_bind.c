/* st_bind.c: binding a checkpoint's tensors to a model's weights struct by a name table (see
 * st_bind.h).
 *
 * What it is: find by name, check the shape exactly, take a view, mark it used; and, at the end,
 * refuse the tensors nothing bound. What it is not: a loader; the tables and the rules about
 * namings and config fields stay in dit_load.c, umt5_load.c and vae_load.c.
 * Tested by: tests/test_dit.c, tests/test_umt5.c, tests/test_vae.c (broken checkpoints: a missing
 *   tensor, a wrong shape, an unused tensor, each message checked), also under the sanitizer build.
 */
#include "st_bind.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

wf_status st_binder_init(st_binder *b, const char *dir, wf_err *err) {
    *b = (st_binder){.dir = dir, .prefix = ""};
    b->config_path = malloc(strlen(dir) + 16);
    if (!b->config_path) return wf_fail(err, WF_ENOMEM, "out of memory");
    sprintf(b->config_path, "%s/config.json", dir);
    return WF_OK;
}

wf_status st_binder_open(st_binder *b, st_checkpoint **ckpt, wf_err *err) {
    wf_status st = st_checkpoint_open(ckpt, b->dir, err);
    if (st) return st;
    b->ckpt = *ckpt;
    b->used = calloc(b->ckpt->n_tensors ? b->ckpt->n_tensors : 1, sizeof *b->used);
    if (!b->used) return wf_fail(err, WF_ENOMEM, "out of memory");
    return WF_OK;
}

void st_binder_free(st_binder *b) {
    if (!b) return;
    free(b->config_path);
    free(b->used);
    free(b->bound);
    b->config_path = NULL;
    b->used = NULL;
    b->bound = NULL;
    b->n_bound = b->cap_bound = 0;
}

void st_binder_take_weights(st_binder *b, wk_weight **ws, size_t *n) {
    *ws = b->bound;
    *n = b->n_bound;
    b->bound = NULL;
    b->n_bound = b->cap_bound = 0;
}

static bool keeps_f32(const st_binder *b, const char *name) {
    for (const char *const *k = b->keep_f32_names; k && *k; k++)
        if (strstr(name, *k)) return true;
    return false;
}

static wf_status record(st_binder *b, wk_tensor *t, const char *name, wf_err *err) {
    if (b->n_bound == b->cap_bound) {
        size_t cap = b->cap_bound ? 2 * b->cap_bound : 64;
        wk_weight *nb = realloc(b->bound, cap * sizeof *nb);
        if (!nb) return wf_fail(err, WF_ENOMEM, "out of memory");
        b->bound = nb;
        b->cap_bound = cap;
    }
    b->bound[b->n_bound++] = (wk_weight){.t = t, .keep_f32 = keeps_f32(b, name)};
    return WF_OK;
}

/* "2, 3, 4": as many of the n sizes as fit in len bytes. */
static void shape_str(char *buf, size_t len, const uint64_t *shape, int n) {
    size_t o = 0;
    buf[0] = '\0';
    for (int d = 0; d < n && o + 24 < len; d++)
        o += (size_t)snprintf(buf + o, len - o, "%s%llu", d ? ", " : "",
                              (unsigned long long)shape[d]);
}

/* The field's shape with its symbols replaced by the module's sizes; returns the rank. */
static int resolve_shape(const st_field *f, const st_module *mod, uint64_t *want) {
    int nd = 0;
    for (; nd < ST_BIND_MAX_DIMS && f->shape[nd] != 0; nd++) {
        const int s = f->shape[nd];
        if (s > 0) {
            want[nd] = (uint64_t)s;
        } else {
            WF_ASSERT((size_t)-s < mod->n_dims); /* a symbol the loader did not size */
            want[nd] = (uint64_t)mod->dims[-s];
        }
    }
    return nd;
}

/* Binds the tensor `name` with shape want[0..nd) to *dst and marks it used. */
static wf_status bind_one(st_binder *b, const char *name, const uint64_t *want, int nd,
                          wk_tensor *dst, wf_err *err) {
    const ptrdiff_t i = st_checkpoint_index(b->ckpt, name);
    if (i < 0)
        return wf_fail(err, WF_EFORMAT, "%s: tensor '%s' is missing (%s)", b->dir, name,
                       b->missing);
    const st_tensor *t = b->ckpt->by_name[i];
    b->used[i] = true;
    bool ok = t->ndim == nd;
    for (int d = 0; ok && d < nd; d++) ok = t->shape[d] == want[d];
    if (!ok) {
        char ws[128], hs[128];
        shape_str(ws, sizeof ws, want, nd);
        shape_str(hs, sizeof hs, t->shape, t->ndim);
        return wf_fail(err, WF_EFORMAT,
                       "%s: tensor '%s' has shape [%s], but config.json (%s) needs [%s]%s", b->dir,
                       name, hs, b->config, ws, b->advice ? b->advice : "");
    }
    return st_tensor_view(t, dst, err);
}

/* The scale of the scaled-fp8 GEMM weight `name` ("X.weight", f8e4m3, 2-D), from
 * "X.scale_weight" when the checkpoint has it: one finite value > 0 in a float dtype. */
static wf_status bind_scale(st_binder *b, const char *name, wk_tensor *dst, wf_err *err) {
    const size_t len = strlen(name), suf = strlen(".weight");
    if (!b->fp8_scales || dst->dtype != WK_F8E4M3 || dst->ndim != 2 || len <= suf ||
        strcmp(name + len - suf, ".weight"))
        return WF_OK;
    char sname[280];
    snprintf(sname, sizeof sname, "%.*s.scale_weight", (int)(len - suf), name);
    const ptrdiff_t i = st_checkpoint_index(b->ckpt, sname);
    if (i < 0) return WF_OK; /* a plain fp8 weight */
    const st_tensor *t = b->ckpt->by_name[i];
    wk_tensor v;
    wf_status st = t->numel == 1 ? st_tensor_view(t, &v, err) : WF_EFORMAT;
    float f = 0.0f;
    if (!st) wk_convert_to_f32(&f, v.data, v.dtype, 1);
    if (st || !(f > 0.0f && f <= 3.402823466e38f))
        return wf_fail(err, WF_EFORMAT, "%s: '%s' must be one finite value > 0 in a float dtype "
                       "(%llu elements%s): the per-tensor scale of the fp8 weight '%s'", b->dir,
                       sname, (unsigned long long)t->numel, st ? "" : ", value out of range",
                       name);
    b->used[i] = true;
    dst->qscale = f;
    return WF_OK;
}

wf_status st_bind_fields(st_binder *b, const st_field *fields, size_t n, const st_module *mod,
                         wf_err *err) {
    WF_ASSERT(b->naming >= 0 && b->naming < ST_BIND_NAMINGS);
    const char *scope = mod->scope[b->naming] ? mod->scope[b->naming] : mod->scope[0];
    for (size_t k = 0; k < n; k++) {
        const st_field *f = &fields[k];
        if (f->when && !(mod->when & (1u << f->when))) continue;
        const char *fname = f->name[b->naming] ? f->name[b->naming] : f->name[0];
        char name[256];
        uint64_t want[ST_BIND_MAX_DIMS];
        snprintf(name, sizeof name, "%s%s%s", b->prefix, scope ? scope : "", fname);
        const int nd = resolve_shape(f, mod, want);
        wk_tensor *dst = (wk_tensor *)((char *)mod->base + f->offset);
        wf_status st = bind_one(b, name, want, nd, dst, err);
        if (!st) st = bind_scale(b, name, dst, err);
        if (!st) st = record(b, dst, name, err);
        if (st) return st;
    }
    return WF_OK;
}

/* Tensors not bound so far; *first gets the first of them by name. */
static size_t count_unused(const st_binder *b, size_t *first) {
    size_t unused = 0;
    for (size_t i = 0; i < b->ckpt->n_tensors; i++)
        if (!b->used[i] && unused++ == 0) *first = i;
    return unused;
}

wf_status st_binder_finish(const st_binder *b, const char *why, wf_err *err) {
    if (b->fp8_scales) { /* ComfyUI's marker of a scaled-fp8 file: no weight of its own */
        char marker[280];
        snprintf(marker, sizeof marker, "%sscaled_fp8", b->prefix);
        for (int k = 0; k < 2; k++) { /* under the prefix, or at the top */
            const ptrdiff_t i = st_checkpoint_index(b->ckpt, k ? "scaled_fp8" : marker);
            if (i >= 0) b->used[i] = true;
        }
    }
    size_t first = 0;
    const size_t unused = count_unused(b, &first);
    if (!unused) return WF_OK;
    return wf_fail(err, WF_EFORMAT, "%s: %zu tensor%s the config does not use, e.g. '%s' (%s)",
                   b->dir, unused, unused == 1 ? "" : "s", b->ckpt->by_name[first]->name, why);
}
