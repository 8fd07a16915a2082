/* fileio.c: writes that finish, and the temporary-file protocol of the writers (see fileio.h). */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fio_write_all(int fd, const void *p, size_t n) {
    const unsigned char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

wf_status fio_tmp_open(const char *path, char **tmp, int *fd, wf_err *err) {
    char *t = malloc(strlen(path) + 16);
    if (!t) return wf_fail(err, WF_ENOMEM, "%s: out of memory", path);
    sprintf(t, "%s.tmp.XXXXXX", path);
    int f = mkstemp(t);
    if (f < 0) {
        wf_status st = wf_fail(err, WF_EIO,
                               "%s: cannot create a temporary file beside it: %s (check that the "
                               "folder exists and is writable)",
                               path, strerror(errno));
        free(t);
        return st;
    }
    *tmp = t;
    *fd = f;
    return WF_OK;
}

wf_status fio_tmp_create(const char *path, char **tmp, wf_err *err) {
    int fd = -1;
    wf_status st = fio_tmp_open(path, tmp, &fd, err);
    if (!st) close(fd);
    return st;
}

wf_status fio_write_atomic(const char *path, const fio_part *parts, size_t n, wf_err *err) {
    char *tmp = NULL;
    int fd = -1;
    wf_status st = fio_tmp_open(path, &tmp, &fd, err);
    if (st) return st;
    int bad = 0;
    for (size_t i = 0; i < n && !bad; i++) bad = fio_write_all(fd, parts[i].data, parts[i].bytes);
    if (bad) {
        st = wf_fail(err, WF_EIO, "%s: write failed: %s", path, strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    if (close(fd) != 0) {
        st = wf_fail(err, WF_EIO, "%s: close failed: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    st = fio_tmp_commit(tmp, path, err); /* fsync, rename; unlinks tmp on failure */
out:
    free(tmp);
    return st;
}

wf_status fio_tmp_commit(const char *tmp, const char *path, wf_err *err) {
    wf_status st = WF_OK;
    int fd = open(tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        st = wf_fail(err, WF_EIO, "%s: cannot sync the written file: %s", path, strerror(errno));
        goto out;
    }
    if (rename(tmp, path) != 0)
        st = wf_fail(err, WF_EIO, "%s: cannot rename the temporary file into place: %s", path,
                     strerror(errno));
out:
    if (fd >= 0) close(fd);
    if (st) unlink(tmp);
    return st;
}
