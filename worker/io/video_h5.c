/* video_h5.c: the final latents as an HDF5 file (f32 dataset /latents; see video_out.h), in
 * every build (it needs HDF5 only, not FFmpeg).
 *
 * Where the bytes go is fileio.h's: the file is built in memory (HDF5's core driver) and written
 * as one image, to a temporary beside the target, fsync'd and renamed into place; a FIFO is
 * refused (HDF5 needs to seek). HDF5 uses the serial calls (default file access), which work with
 * the parallel library; its automatic error printing is switched off around our calls, whose
 * failures become wf_err lines.
 * Tested by: tests/test_video_out.c (read back exactly).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "fileio.h"
#include "fsin.h"
#include "video_out.h"

/* The HDF5 file as one image in memory (the core driver, no backing store): *img malloc'd. */
static wf_status h5_write(const char *path, const float *data, int ndim, const int64_t *shape,
                          const char *const *attrs, int n_attrs, void **img, size_t *img_n,
                          wf_err *err) {
    wf_status st = WF_OK;
    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID, space = H5I_INVALID_HID,
          dset = H5I_INVALID_HID;
    hsize_t dims[5];
    size_t bytes = sizeof(float);
    for (int d = 0; d < ndim; d++) {
        dims[d] = (hsize_t)shape[d];
        if (wf_mul_overflow(bytes, (size_t)shape[d], &bytes))
            return wf_fail(err, WF_EINVAL, "%s: latents too large", path);
    }
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, bytes + (1u << 16), 0) < 0 ||
        (file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0) {
        st = wf_fail(err, WF_ENOMEM, "%s: HDF5 cannot create the file in memory", path);
        goto out;
    }
    space = H5Screate_simple(ndim, dims, NULL);
    if (space < 0) {
        st = wf_fail(err, WF_EINVAL, "%s: HDF5 refused the dataspace", path);
        goto out;
    }
    dset = H5Dcreate2(file, "latents", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                      H5P_DEFAULT);
    if (dset < 0 || H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        st = wf_fail(err, WF_EIO, "%s: HDF5 cannot write /latents (out of memory?)", path);
        goto out;
    }
    for (int i = 0; i < n_attrs; i++) {
        const char *key = attrs[2 * i], *val = attrs[2 * i + 1];
        hid_t ty = H5Tcopy(H5T_C_S1), as = H5Screate(H5S_SCALAR), a = H5I_INVALID_HID;
        int bad = ty < 0 || as < 0 || H5Tset_size(ty, strlen(val) + 1) < 0 ||
                  H5Tset_cset(ty, H5T_CSET_UTF8) < 0 ||
                  (a = H5Acreate2(dset, key, ty, as, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
                  H5Awrite(a, ty, val) < 0;
        if (a >= 0) H5Aclose(a);
        if (as >= 0) H5Sclose(as);
        if (ty >= 0) H5Tclose(ty);
        if (bad) {
            st = wf_fail(err, WF_EINVAL, "%s: HDF5 cannot write attribute '%s' (given twice?)",
                         path, key);
            goto out;
        }
    }
    if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) {
        st = wf_fail(err, WF_EIO, "%s: HDF5 cannot flush the file", path);
        goto out;
    }
    ssize_t n = H5Fget_file_image(file, NULL, 0);
    if (n <= 0 || !(*img = malloc((size_t)n))) {
        st = wf_fail(err, WF_ENOMEM, "%s: out of memory for the HDF5 image", path);
        goto out;
    }
    if (H5Fget_file_image(file, *img, (size_t)n) != n) {
        free(*img);
        *img = NULL;
        st = wf_fail(err, WF_EIO, "%s: HDF5 cannot copy the file image", path);
        goto out;
    }
    *img_n = (size_t)n;
out:
    if (dset >= 0) H5Dclose(dset);
    if (space >= 0) H5Sclose(space);
    if (file >= 0 && H5Fclose(file) < 0 && !st)
        st = wf_fail(err, WF_EIO, "%s: HDF5 cannot close the file", path);
    if (fapl >= 0) H5Pclose(fapl);
    if (st) {
        free(*img);
        *img = NULL;
    }
    return st;
}

wf_status vout_h5_write_latents_meta(const char *path, const float *data, int ndim,
                                     const int64_t *shape, const char *const *attrs, int n_attrs,
                                     wf_err *err) {
    if (ndim < 1 || ndim > 5)
        return wf_fail(err, WF_EINVAL, "%s: latents of rank %d: expected 1..5 dimensions", path,
                       ndim);
    for (int d = 0; d < ndim; d++)
        if (shape[d] <= 0)
            return wf_fail(err, WF_EINVAL, "%s: latents dimension %d is %lld: expected > 0", path,
                           d, (long long)shape[d]);
    for (int i = 0; i < n_attrs; i++)
        if (!attrs[2 * i] || !*attrs[2 * i] || !attrs[2 * i + 1])
            return wf_fail(err, WF_EINVAL, "%s: attribute %d has an empty name or no value", path,
                           i);
    /* refuse what cannot be written (a FIFO, a folder, a dangling link) before the work */
    char *target = NULL;
    fio_kind kind;
    wf_status st = fio_target(path, 0, &target, &kind, err);
    free(target);
    if (st) return st;
    void *img = NULL;
    size_t n = 0;
    H5E_BEGIN_TRY { st = h5_write(path, data, ndim, shape, attrs, n_attrs, &img, &n, err); }
    H5E_END_TRY;
    if (!st) st = fio_write_atomic(path, &(fio_part){img, n}, 1, err); /* no FIFO: see above */
    free(img);
    return st;
}

wf_status vout_h5_write_latents(const char *path, const float *data, int ndim, const int64_t *shape,
                                wf_err *err) {
    static const char *const attrs[] = {"producer", "wanfarm"};
    return vout_h5_write_latents_meta(path, data, ndim, shape, attrs, 1, err);
}

static wf_status h5_read(const char *path, float **data, int *ndim, int64_t *shape, wf_err *err) {
    wf_status st = WF_OK;
    hid_t file = H5I_INVALID_HID, dset = H5I_INVALID_HID, space = H5I_INVALID_HID,
          ty = H5I_INVALID_HID;
    float *buf = NULL;
    if ((st = fsin_check(path, NULL, err))) return st; /* a FIFO would block HDF5's open */
    if (access(path, R_OK) != 0)
        return wf_fail(err, WF_EIO, "%s: cannot read: %s", path, strerror(errno));
    if (H5Fis_hdf5(path) <= 0)
        return wf_fail(err, WF_EFORMAT, "%s: not an HDF5 file (expected latents written by wanfarm)",
                       path);
    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        st = wf_fail(err, WF_EIO, "%s: HDF5 cannot open the file", path);
        goto out;
    }
    dset = H5Dopen2(file, "latents", H5P_DEFAULT);
    if (dset < 0) {
        st = wf_fail(err, WF_EFORMAT, "%s: no dataset /latents", path);
        goto out;
    }
    ty = H5Dget_type(dset);
    if (ty < 0 || H5Tget_class(ty) != H5T_FLOAT) {
        st = wf_fail(err, WF_EFORMAT, "%s: /latents is not a floating-point dataset", path);
        goto out;
    }
    space = H5Dget_space(dset);
    int nd = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    if (nd < 1 || nd > 5) {
        st = wf_fail(err, WF_EFORMAT, "%s: /latents has rank %d: expected 1..5", path, nd);
        goto out;
    }
    hsize_t dims[5];
    H5Sget_simple_extent_dims(space, dims, NULL);
    size_t count = 1;
    for (int d = 0; d < nd; d++)
        if (dims[d] > (hsize_t)INT64_MAX || wf_mul_overflow(count, (size_t)dims[d], &count) ||
            wf_mul_overflow(count, sizeof(float), &(size_t){0})) {
            st = wf_fail(err, WF_EFORMAT, "%s: /latents is too large", path);
            goto out;
        }
    buf = malloc(count ? count * sizeof(float) : 1);
    if (!buf) {
        st = wf_fail(err, WF_ENOMEM, "%s: out of memory for %zu floats", path, count);
        goto out;
    }
    if (H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        st = wf_fail(err, WF_EIO, "%s: HDF5 cannot read /latents (truncated file?)", path);
        goto out;
    }
    *ndim = nd;
    for (int d = 0; d < nd; d++) shape[d] = (int64_t)dims[d];
    *data = buf;
    buf = NULL;
out:
    free(buf);
    if (space >= 0) H5Sclose(space);
    if (ty >= 0) H5Tclose(ty);
    if (dset >= 0) H5Dclose(dset);
    if (file >= 0) H5Fclose(file);
    return st;
}

wf_status vout_h5_read_latents(const char *path, float **data, int *ndim, int64_t *shape,
                               wf_err *err) {
    wf_status st;
    *data = NULL;
    H5E_BEGIN_TRY { st = h5_read(path, data, ndim, shape, err); }
    H5E_END_TRY;
    return st;
}
