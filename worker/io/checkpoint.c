/* checkpoint.c: denoising checkpoints (see checkpoint.h). */
#include "checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "fileio.h"
#include "fsin.h"
#include "safetensors.h"

#define TRAILER_MAGIC "WFCKPT01"
#define TRAILER_BYTES 16

uint64_t ck_fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* All `size` bytes of an open file into *out (malloc'd); closes fd. 0, or -1 (ENOMEM or a short
 * read). */
static int read_all(int fd, size_t size, unsigned char **out) {
    unsigned char *b = malloc(size ? size : 1);
    size_t got = 0;
    while (b && got < size) {
        ssize_t r = read(fd, b + got, size - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (!b || got != size) {
        free(b);
        return -1;
    }
    *out = b;
    return 0;
}

/* ---- the model's identity ---- */

/* h over the bytes of root/rel, when it is there (a small file: at most 256 MiB) */
static wf_status hash_file(const char *root, const char *rel, uint64_t *h, wf_err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    int fd = -1;
    size_t size = 0;
    bool absent = false;
    wf_status st = fsin_open(path, &fd, &size, &absent, err);
    if (st || absent) return absent ? WF_OK : st;
    if (size > ((size_t)256 << 20)) {
        close(fd);
        return wf_fail(err, WF_EFORMAT, "%s: %zu bytes: too large for a config", path, size);
    }
    unsigned char *b = NULL;
    if (read_all(fd, size, &b)) return wf_fail(err, WF_EIO, "%s: cannot read it", path);
    *h = ck_fnv(ck_fnv(*h, rel, strlen(rel) + 1), b, size);
    free(b);
    return WF_OK;
}

/* h over every safetensors header of root/comp (names, dtypes, shapes, offsets), if any */
static wf_status hash_tensors(const char *root, const char *comp, uint64_t *h, wf_err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", root, comp);
    bool absent = false;
    wf_status st = fsin_check_dir(path, &absent, err);
    if (st || absent) return absent ? WF_OK : st;
    st_checkpoint *c = NULL;
    if (st_checkpoint_open(&c, path, err)) return WF_OK; /* no weights here (the tokenizer) */
    for (size_t k = 0; k < c->n_files; k++) {
        const st_file *f = c->files[k];
        *h = ck_fnv(*h, f->map + 8, (size_t)f->header_len);
    }
    st_checkpoint_close(&c);
    return WF_OK;
}

wf_status ck_model_id(const char *root, uint64_t *id, wf_err *err) {
    static const char *const files[] = {
        "model_index.json",           "transformer/config.json", "transformer_2/config.json",
        "vae/config.json",            "text_encoder/config.json",
        "scheduler/scheduler_config.json", "tokenizer/tokenizer_config.json",
        "tokenizer/spiece.model",     "tokenizer/tokenizer.json"};
    static const char *const comps[] = {"transformer", "transformer_2", "vae", "text_encoder"};
    uint64_t h = CK_FNV_INIT;
    wf_status st = WF_OK;
    for (size_t k = 0; k < sizeof files / sizeof *files && !st; k++)
        st = hash_file(root, files[k], &h, err);
    for (size_t k = 0; k < sizeof comps / sizeof *comps && !st; k++)
        st = hash_tensors(root, comps[k], &h, err);
    *id = h;
    return st;
}

/* ---- writing ---- */

static int put_attr(hid_t loc, const char *key, const char *val) {
    hid_t ty = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a = H5I_INVALID_HID;
    int bad = ty < 0 || sp < 0 || H5Tset_size(ty, strlen(val) + 1) < 0 ||
              (a = H5Acreate2(loc, key, ty, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
              H5Awrite(a, ty, val) < 0;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (ty >= 0) H5Tclose(ty);
    return bad;
}

static int put_dataset(hid_t file, const char *name, hid_t ftype, hid_t mtype, int ndim,
                       const hsize_t *dims, const void *data) {
    hid_t sp = H5Screate_simple(ndim, dims, NULL), d = H5I_INVALID_HID;
    int bad = sp < 0 || (d = H5Dcreate2(file, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT,
                                        H5P_DEFAULT)) < 0 ||
              H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0;
    if (d >= 0) H5Dclose(d);
    if (sp >= 0) H5Sclose(sp);
    return bad;
}

/* The HDF5 image of a checkpoint, in memory (*img malloc'd). */
static wf_status build_image(const char *path, const ck_meta *m, const float *latents,
                             const void *state, size_t state_bytes, void **img, size_t *img_n,
                             wf_err *err) {
    const size_t n = (size_t)(m->shape[0] * m->shape[1] * m->shape[2] * m->shape[3]);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), file = H5I_INVALID_HID;
    wf_status st = WF_OK;
    *img = NULL;
    if (fapl < 0 || H5Pset_fapl_core(fapl, 4 * n + state_bytes + (1u << 16), 0) < 0 ||
        (file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0) {
        st = wf_fail(err, WF_ENOMEM, "%s: HDF5 cannot make the checkpoint in memory", path);
        goto out;
    }
    const hsize_t ld[4] = {(hsize_t)m->shape[0], (hsize_t)m->shape[1], (hsize_t)m->shape[2],
                           (hsize_t)m->shape[3]};
    const hsize_t sd[1] = {(hsize_t)state_bytes};
    char v[7][32];
    snprintf(v[0], sizeof v[0], "%d", CK_FORMAT);
    snprintf(v[1], sizeof v[1], "%" PRId64, m->step);
    snprintf(v[2], sizeof v[2], "%" PRId64, m->steps);
    snprintf(v[3], sizeof v[3], "%" PRIu64, m->seed);
    snprintf(v[4], sizeof v[4], "%016" PRIx64, m->spec_hash);
    snprintf(v[5], sizeof v[5], "%016" PRIx64, m->model_id);
    snprintf(v[6], sizeof v[6], "wanfarm");
    static const char *const keys[7] = {"format", "step", "steps", "seed", "spec_hash",
                                        "model_id", "written_by"};
    int bad = put_dataset(file, "latents", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, ld, latents) ||
              put_dataset(file, "sampler", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 1, sd, state);
    for (int k = 0; k < 7 && !bad; k++) bad = put_attr(file, keys[k], v[k]);
    if (bad || H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) {
        st = wf_fail(err, WF_ENOMEM, "%s: HDF5 cannot write the checkpoint (out of memory?)", path);
        goto out;
    }
    ssize_t sz = H5Fget_file_image(file, NULL, 0);
    if (sz <= 0 || !(*img = malloc((size_t)sz)) || H5Fget_file_image(file, *img, (size_t)sz) != sz) {
        st = wf_fail(err, WF_ENOMEM, "%s: cannot copy the HDF5 image", path);
        goto out;
    }
    *img_n = (size_t)sz;
out:
    if (file >= 0) H5Fclose(file);
    if (fapl >= 0) H5Pclose(fapl);
    if (st) {
        free(*img);
        *img = NULL;
    }
    return st;
}

wf_status ck_write(const char *path, const ck_meta *m, const float *latents, const void *state,
                   size_t state_bytes, wf_err *err) {
    for (int d = 0; d < 4; d++)
        if (m->shape[d] <= 0)
            return wf_fail(err, WF_EINVAL, "%s: latents dimension %d is %lld", path, d,
                           (long long)m->shape[d]);
    if (m->step < 0 || m->step > m->steps || !state_bytes)
        return wf_fail(err, WF_EINVAL, "%s: step %lld of %lld, %zu state bytes", path,
                       (long long)m->step, (long long)m->steps, state_bytes);
    H5E_auto2_t fn;
    void *cd;
    H5Eget_auto2(H5E_DEFAULT, &fn, &cd);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    void *img = NULL;
    size_t img_n = 0;
    wf_status st = build_image(path, m, latents, state, state_bytes, &img, &img_n, err);
    H5Eset_auto2(H5E_DEFAULT, fn, cd);
    if (st) return st;
    unsigned char trailer[TRAILER_BYTES];
    memcpy(trailer, TRAILER_MAGIC, 8);
    const uint64_t sum = ck_fnv(CK_FNV_INIT, img, img_n);
    for (int k = 0; k < 8; k++) trailer[8 + k] = (unsigned char)(sum >> (8 * k));
    /* the current checkpoint becomes the previous one; then the new one, atomically */
    char prev[4200];
    snprintf(prev, sizeof prev, "%s.prev", path);
    if (rename(path, prev) != 0 && errno != ENOENT) {
        free(img);
        return wf_fail(err, WF_EIO, "%s: cannot keep it as %s: %s", path, prev, strerror(errno));
    }
    fio_part parts[2] = {{img, img_n}, {trailer, sizeof trailer}};
    st = fio_write_atomic(path, parts, 2, err);
    free(img);
    return st;
}

/* ---- reading ---- */

static wf_status read_whole(const char *path, unsigned char **buf, size_t *n, wf_err *err) {
    int fd = -1;
    size_t size = 0;
    bool absent = false;
    *buf = NULL;
    wf_status st = fsin_open(path, &fd, &size, &absent, err);
    if (st) return st;
    if (absent) return wf_fail(err, WF_EIO, "%s: no such checkpoint", path);
    if (size < TRAILER_BYTES + 8 || size > CK_MAX_BYTES) {
        close(fd);
        return wf_fail(err, WF_EFORMAT, "%s: %zu bytes: not a checkpoint (truncated?)", path, size);
    }
    unsigned char *b = NULL;
    if (read_all(fd, size, &b)) return wf_fail(err, WF_EIO, "%s: cannot read it", path);
    *buf = b;
    *n = size;
    return WF_OK;
}

static int get_attr(hid_t loc, const char *key, char *out, size_t cap) {
    hid_t a = H5Aopen(loc, key, H5P_DEFAULT), ty = H5I_INVALID_HID, mt = H5I_INVALID_HID;
    int bad = a < 0 || (ty = H5Aget_type(a)) < 0 || H5Tget_class(ty) != H5T_STRING ||
              H5Tis_variable_str(ty) > 0 || H5Tget_size(ty) >= cap || (mt = H5Tcopy(ty)) < 0 ||
              H5Aread(a, mt, out) < 0;
    if (!bad) out[cap - 1] = 0;
    if (mt >= 0) H5Tclose(mt);
    if (ty >= 0) H5Tclose(ty);
    if (a >= 0) H5Aclose(a);
    return bad;
}

/* A 1-D or 4-D dataset of exactly `count` elements of the given class and size into dst. */
static int get_dataset(hid_t file, const char *name, int ndim, H5T_class_t cls, size_t esize,
                       hid_t mtype, size_t count, hsize_t *dims, void *dst) {
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT), sp = H5I_INVALID_HID, ty = H5I_INVALID_HID;
    int bad = d < 0 || (sp = H5Dget_space(d)) < 0 || H5Sget_simple_extent_ndims(sp) != ndim ||
              H5Sget_simple_extent_dims(sp, dims, NULL) != ndim || (ty = H5Dget_type(d)) < 0 ||
              H5Tget_class(ty) != cls || H5Tget_size(ty) != esize ||
              (hsize_t)H5Sget_simple_extent_npoints(sp) != (hsize_t)count;
    if (!bad && dst) bad = H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0;
    if (ty >= 0) H5Tclose(ty);
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    return bad;
}

/* the attributes into m (numbers parsed strictly) */
static wf_status read_meta(hid_t file, const char *path, ck_meta *m, wf_err *err) {
    static const char *const keys[6] = {"format", "step", "steps", "seed", "spec_hash", "model_id"};
    char v[6][40];
    for (int k = 0; k < 6; k++)
        if (get_attr(file, keys[k], v[k], sizeof v[k]))
            return wf_fail(err, WF_EFORMAT, "%s: no readable attribute '%s'", path, keys[k]);
    char *end;
    errno = 0;
    long fmt = strtol(v[0], &end, 10);
    if (*end || fmt != CK_FORMAT)
        return wf_fail(err, WF_EFORMAT, "%s: checkpoint format '%s'; this build reads %d", path,
                       v[0], CK_FORMAT);
    m->step = strtoll(v[1], &end, 10);
    int bad = *end != 0;
    m->steps = strtoll(v[2], &end, 10);
    bad |= *end != 0;
    m->seed = strtoull(v[3], &end, 10);
    bad |= *end != 0;
    m->spec_hash = strtoull(v[4], &end, 16);
    bad |= *end != 0 || strlen(v[4]) != 16;
    m->model_id = strtoull(v[5], &end, 16);
    bad |= *end != 0 || strlen(v[5]) != 16 || errno != 0;
    if (bad) return wf_fail(err, WF_EFORMAT, "%s: a malformed number among its attributes", path);
    return WF_OK;
}

/* The fields that bind a checkpoint to its job, against want: NULL, or what differs. */
static const char *mismatch(const ck_meta *m, const ck_meta *want) {
    return m->steps != want->steps         ? "the number of steps"
           : m->seed != want->seed           ? "the seed"
           : m->spec_hash != want->spec_hash ? "the job spec (prompt, size, settings)"
           : m->model_id != want->model_id   ? "the model (configs or tensors)"
           : m->step < 0 || m->step > m->steps ? "a step outside the job"
                                               : NULL;
}

/* The sampler state's size from its dataspace (before anything is allocated for it). */
static wf_status state_size(hid_t file, const char *path, size_t want, size_t *out, wf_err *err) {
    hid_t d = H5Dopen2(file, "sampler", H5P_DEFAULT), sp = d >= 0 ? H5Dget_space(d) : -1;
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    if (np <= 0 || (size_t)np > CK_MAX_BYTES || (want && (size_t)np != want))
        return wf_fail(err, WF_EFORMAT, "%s: a sampler state of %lld bytes, expected %zu "
                       "(another sampler or order)", path, (long long)np, want);
    *out = (size_t)np;
    return WF_OK;
}

/* /latents (f32 of want's shape) and /sampler into out's buffers. */
static wf_status read_data(hid_t file, const char *path, const ck_meta *want, ck_data *out,
                           wf_err *err) {
    const int64_t *s = want->shape;
    out->n = (size_t)(s[0] * s[1] * s[2] * s[3]);
    out->latents = malloc(out->n * sizeof(float));
    out->state = malloc(out->state_bytes);
    if (!out->latents || !out->state) return wf_fail(err, WF_ENOMEM, "%s: out of memory", path);
    hsize_t dims[4] = {0}, sd[1] = {0};
    if (get_dataset(file, "latents", 4, H5T_FLOAT, 4, H5T_NATIVE_FLOAT, out->n, dims,
                    out->latents) ||
        dims[0] != (hsize_t)s[0] || dims[1] != (hsize_t)s[1] || dims[2] != (hsize_t)s[2] ||
        dims[3] != (hsize_t)s[3])
        return wf_fail(err, WF_EFORMAT, "%s: its /latents are not f32 [%lld, %lld, %lld, %lld]",
                       path, (long long)s[0], (long long)s[1], (long long)s[2], (long long)s[3]);
    if (get_dataset(file, "sampler", 1, H5T_INTEGER, 1, H5T_NATIVE_UCHAR, out->state_bytes, sd,
                    out->state))
        return wf_fail(err, WF_EFORMAT, "%s: its /sampler cannot be read", path);
    return WF_OK;
}

/* The verified image opened from memory, its fields checked against want. */
static wf_status read_image(const char *path, const void *img, size_t img_n, const ck_meta *want,
                            size_t state_bytes, ck_data *out, wf_err *err) {
    wf_status st = WF_OK;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), file = H5I_INVALID_HID;
    if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 16, 0) < 0 ||
        H5Pset_file_image(fapl, (void *)img, img_n) < 0 ||
        (file = H5Fopen("checkpoint-image", H5F_ACC_RDONLY, fapl)) < 0) {
        st = wf_fail(err, WF_EFORMAT, "%s: not an HDF5 checkpoint", path);
        goto out;
    }
    ck_meta m = {0};
    if ((st = read_meta(file, path, &m, err))) goto out;
    memcpy(m.shape, want->shape, sizeof m.shape);
    const char *what = mismatch(&m, want);
    if (what) {
        st = wf_fail(err, WF_EFORMAT, "%s: written for another %s", path, what);
        goto out;
    }
    if ((st = state_size(file, path, state_bytes, &out->state_bytes, err)) ||
        (st = read_data(file, path, want, out, err)))
        goto out;
    out->meta = m;
out:
    if (file >= 0) H5Fclose(file);
    if (fapl >= 0) H5Pclose(fapl);
    return st;
}

wf_status ck_read(const char *path, const ck_meta *want, size_t state_bytes, ck_data *out,
                  wf_err *err) {
    memset(out, 0, sizeof *out);
    unsigned char *b = NULL;
    size_t n = 0;
    wf_status st = read_whole(path, &b, &n, err);
    if (st) return st;
    const size_t img_n = n - TRAILER_BYTES;
    uint64_t sum = 0;
    for (int k = 0; k < 8; k++) sum |= (uint64_t)b[img_n + 8 + k] << (8 * k);
    if (memcmp(b + img_n, TRAILER_MAGIC, 8) || sum != ck_fnv(CK_FNV_INIT, b, img_n)) {
        free(b);
        return wf_fail(err, WF_EFORMAT, "%s: damaged (its checksum does not match: a torn write "
                       "or a changed byte)", path);
    }
    H5E_auto2_t fn;
    void *cd;
    H5Eget_auto2(H5E_DEFAULT, &fn, &cd);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    st = read_image(path, b, img_n, want, state_bytes, out, err);
    H5Eset_auto2(H5E_DEFAULT, fn, cd);
    free(b);
    if (st) ck_data_free(out);
    return st;
}

void ck_data_free(ck_data *d) {
    if (!d) return;
    free(d->latents);
    free(d->state);
    memset(d, 0, sizeof *d);
}

wf_status ck_load_latest(const char *path, const ck_meta *want, size_t state_bytes, ck_data *out,
                         bool *found, void (*note)(void *ctx, const char *file, const char *why),
                         void *ctx, wf_err *err) {
    *found = false;
    memset(out, 0, sizeof *out);
    char prev[4200];
    snprintf(prev, sizeof prev, "%s.prev", path);
    const char *files[2] = {path, prev};
    for (int k = 0; k < 2; k++) {
        bool absent = false;
        wf_err e;
        if (fsin_check(files[k], &absent, &e) == WF_OK && absent) continue;
        if (ck_read(files[k], want, state_bytes, out, &e) == WF_OK) {
            *found = true;
            return WF_OK;
        }
        if (note) note(ctx, files[k], e.msg);
    }
    (void)err;
    return WF_OK;
}
