/* fsin.c: input files opened for reading, non-regular files refused at once (see fsin.h). */
#include "fsin.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *fsin_kind_name(unsigned mode) {
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISLNK(mode)) return "a symbolic link";
    return "not a file";
}

/* stat(path) and the type check shared by the two checks; want is S_IFREG or S_IFDIR. */
static wf_status check_type(const char *path, unsigned want, const char *what, bool *absent,
                            wf_err *err) {
    struct stat sb;
    if (absent) *absent = false;
    if (stat(path, &sb) != 0) {
        int e = errno;
        if (absent) *absent = e == ENOENT;
        return wf_fail(err, WF_EIO, "%s: cannot open: %s", path, strerror(e));
    }
    if ((sb.st_mode & S_IFMT) != want)
        return wf_fail(err, WF_EIO, "%s: is %s, not %s", path, fsin_kind_name(sb.st_mode), what);
    return WF_OK;
}

wf_status fsin_check(const char *path, bool *absent, wf_err *err) {
    return check_type(path, S_IFREG, "a regular file", absent, err);
}

wf_status fsin_check_dir(const char *path, bool *absent, wf_err *err) {
    return check_type(path, S_IFDIR, "a folder", absent, err);
}

wf_status fsin_open(const char *path, int *fd, size_t *size, bool *absent, wf_err *err) {
    *fd = -1;
    wf_status st = fsin_check(path, absent, err);
    if (st) return st;
    /* O_NONBLOCK: if the path became a FIFO since the check, open returns at once instead of
     * waiting for a writer; O_NOCTTY: a terminal never becomes ours */
    int d = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (d < 0) {
        int e = errno;
        if (absent) *absent = e == ENOENT;
        return wf_fail(err, WF_EIO, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat sb;
    if (fstat(d, &sb) != 0) {
        st = wf_fail(err, WF_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto out_close;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = wf_fail(err, WF_EIO, "%s: is %s, not a regular file", path, fsin_kind_name(sb.st_mode));
        goto out_close;
    }
    int fl = fcntl(d, F_GETFL);
    if (fl < 0 || fcntl(d, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        st = wf_fail(err, WF_EIO, "%s: cannot set blocking reads: %s", path, strerror(errno));
        goto out_close;
    }
    if (size) *size = (size_t)sb.st_size;
    *fd = d;
    return WF_OK;
out_close:
    close(d);
    return st;
}

wf_status fsin_fopen(const char *path, FILE **f, bool *absent, wf_err *err) {
    int fd;
    *f = NULL;
    wf_status st = fsin_open(path, &fd, NULL, absent, err);
    if (st) return st;
    if (!(*f = fdopen(fd, "rb"))) {
        st = wf_fail(err, WF_EIO, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
    }
    return st;
}

/* s into buf of cap bytes, cut to fit (jansson's error text is 160 bytes). */
static void copy_cut(char *buf, size_t cap, const char *s) {
    size_t n = strlen(s);
    if (n >= cap) n = cap - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
}

wf_status fsin_json_load(const char *path, size_t flags, json_t **root, json_error_t *je,
                         bool *absent, wf_err *err) {
    wf_err local;
    wf_err *e = err ? err : &local;
    int fd;
    *root = NULL;
    memset(je, 0, sizeof *je);
    wf_status st = fsin_open(path, &fd, NULL, absent, e);
    if (st) {
        je->line = je->column = je->position = -1;
        const char *msg = e->msg;
        size_t n = strlen(path);
        if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
        copy_cut(je->text, sizeof je->text, msg);
        copy_cut(je->source, sizeof je->source, path);
        return st;
    }
    *root = json_loadfd(fd, flags, je);
    close(fd);
    return *root ? WF_OK : WF_EFORMAT;
}
