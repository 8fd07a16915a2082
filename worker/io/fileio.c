/* fileio.c: output targets (see fileio.h): what a path names, the temporary-file protocol, writes
 * in place to devices and FIFOs, the umask, and the registry of live temporaries that the signal
 * handler removes.
 *
 * The registry is a fixed array of name buffers, each with an atomic state (free, being filled,
 * live), so that the handler reads only what is complete and calls only unlink(2), sigaction(2)
 * and raise(3) (async-signal-safe). A temporary is made and registered with the cleanup signals
 * blocked, so a signal never falls between the two.
 */
#include "fileio.h"
#include "fsin.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef NAME_MAX
#define NAME_MAX 255
#endif

/* ---- the registry of live temporaries ---- */

enum { SLOT_FREE, SLOT_FILLING, SLOT_LIVE };
static atomic_int g_slot_state[FIO_MAX_LIVE];
static char g_slot_name[FIO_MAX_LIVE][PATH_MAX];
static const int g_cleanup_signals[] = {SIGTERM, SIGINT, SIGHUP};
#define N_CLEANUP_SIGNALS ((int)(sizeof g_cleanup_signals / sizeof *g_cleanup_signals))

static void block_cleanup_signals(sigset_t *old) {
    sigset_t s;
    sigemptyset(&s);
    for (int i = 0; i < N_CLEANUP_SIGNALS; i++) sigaddset(&s, g_cleanup_signals[i]);
    pthread_sigmask(SIG_BLOCK, &s, old);
}

/* A slot holding name, or -1 when every slot is taken (the name then goes unregistered). */
static int slot_add(const char *name) {
    if (strlen(name) >= PATH_MAX) return -1;
    for (int i = 0; i < FIO_MAX_LIVE; i++) {
        int expect = SLOT_FREE;
        if (atomic_compare_exchange_strong(&g_slot_state[i], &expect, SLOT_FILLING)) {
            strcpy(g_slot_name[i], name);
            atomic_store(&g_slot_state[i], SLOT_LIVE);
            return i;
        }
    }
    return -1;
}

static void slot_drop(int *slot) {
    if (*slot >= 0) atomic_store(&g_slot_state[*slot], SLOT_FREE);
    *slot = -1;
}

static void on_signal(int sig) {
    int saved = errno;
    for (int i = 0; i < FIO_MAX_LIVE; i++)
        if (atomic_load(&g_slot_state[i]) == SLOT_LIVE) unlink(g_slot_name[i]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
    errno = saved;
    raise(sig); /* SA_NODEFER: delivered now, with the default action */
}

static mode_t g_umask;
static atomic_int g_umask_read;

unsigned fio_umask(void) {
    if (!atomic_load(&g_umask_read)) {
        mode_t m = umask(0);
        umask(m);
        g_umask = m;
        atomic_store(&g_umask_read, 1);
    }
    return (unsigned)g_umask;
}

void fio_cleanup_install(void) {
    fio_umask();
    for (int i = 0; i < N_CLEANUP_SIGNALS; i++) {
        struct sigaction old, sa;
        if (sigaction(g_cleanup_signals[i], NULL, &old) != 0) continue;
        if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN) continue; /* nohup, & */
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        for (int k = 0; k < N_CLEANUP_SIGNALS; k++) sigaddset(&sa.sa_mask, g_cleanup_signals[k]);
        sa.sa_flags = SA_NODEFER; /* our own raise() is delivered inside the handler */
        sigaction(g_cleanup_signals[i], &sa, NULL);
    }
}

/* ---- FIFOs opened by fio_probe, held until their writer opens them ---- */

/* A probe that found a FIFO's reader keeps its end open: closing it would give the reader an
 * end of file before the first byte. fio_out_open closes it once its own end is open. */
enum { MAX_HELD = 8 };
static struct {
    char *target;
    int fd;
} g_held[MAX_HELD];

static void held_add(char *target, int fd) {
    for (int i = 0; i < MAX_HELD; i++)
        if (!g_held[i].target) {
            g_held[i].target = target;
            g_held[i].fd = fd;
            return;
        }
    free(target); /* no room: the reader may see an end of file early */
    close(fd);
}

static void held_release(const char *target) {
    for (int i = 0; i < MAX_HELD; i++)
        if (g_held[i].target && !strcmp(g_held[i].target, target)) {
            close(g_held[i].fd);
            free(g_held[i].target);
            g_held[i].target = NULL;
        }
}

/* ---- writes ---- */

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

/* fio_write_all with SIGPIPE blocked: a reader that went away gives EPIPE. A SIGPIPE raised by
 * our write is taken back (unless one was pending already). */
static int write_nosigpipe(int fd, const void *p, size_t n) {
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    int r = fio_write_all(fd, p, n);
    int e = errno;
    if (r != 0 && e == EPIPE && !was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return r;
}

int fio_out_write(fio_out *o, const void *p, size_t n) {
    if (o->fd < 0) {
        errno = EBADF;
        return -1;
    }
    return o->kind == FIO_REPLACE ? fio_write_all(o->fd, p, n) : write_nosigpipe(o->fd, p, n);
}

/* ---- what a path names ---- */

/* The folder part of path ("." when none) and the name part, both malloc'd. */
static wf_status split_path(const char *path, char **dir, char **base, wf_err *err) {
    const char *slash = strrchr(path, '/');
    size_t dn = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
    *dir = malloc(dn + 1);
    *base = strdup(slash ? slash + 1 : path);
    if (!*dir || !*base) {
        free(*dir);
        free(*base);
        return wf_fail(err, WF_ENOMEM, "%s: out of memory", path);
    }
    memcpy(*dir, !slash ? "." : path, dn);
    (*dir)[dn] = 0;
    return WF_OK;
}

static char *join(const char *dir, const char *base) {
    size_t dn = strlen(dir);
    char *s = malloc(dn + strlen(base) + 2);
    if (s) sprintf(s, "%s%s%s", dir, dn && dir[dn - 1] == '/' ? "" : "/", base);
    return s;
}

/* The longest name the folder's file system takes (NAME_MAX where it does not say). */
static size_t name_max(const char *dir) {
    long m = pathconf(dir, _PC_NAME_MAX);
    return m > 0 && m < 4096 ? (size_t)m : NAME_MAX;
}

/* How the existing, resolved target (sb: its stat) is written, or why it is refused. */
static wf_status classify(const char *path, const struct stat *sb, unsigned flags, fio_kind *kind,
                          wf_err *err) {
    if (S_ISREG(sb->st_mode)) *kind = FIO_REPLACE;
    else if (S_ISCHR(sb->st_mode)) *kind = FIO_DEVICE;
    else if (S_ISFIFO(sb->st_mode)) {
        if (!(flags & FIO_STREAMABLE))
            return wf_fail(err, WF_EIO,
                           "%s is a FIFO, and this format cannot be written front to back in one "
                           "pass; give a regular file",
                           path);
        *kind = FIO_FIFO;
    } else if (S_ISDIR(sb->st_mode))
        return wf_fail(err, WF_EIO, "%s is a folder; give a file name (e.g. %s/NAME)", path, path);
    else
        return wf_fail(err, WF_EIO,
                       "%s is %s (not a regular file, a character device or a FIFO); refusing to "
                       "replace it",
                       path, fsin_kind_name(sb->st_mode));
    return WF_OK;
}

wf_status fio_target(const char *path, unsigned flags, char **target, fio_kind *kind,
                     wf_err *err) {
    *target = NULL;
    if (!path || !*path) return wf_fail(err, WF_EINVAL, "the file name is empty");
    size_t n = strlen(path);
    if (path[n - 1] == '/')
        return wf_fail(err, WF_EIO, "%s ends with '/': give a file name, not a folder", path);
    if (n >= PATH_MAX)
        return wf_fail(err, WF_EIO, "%s: the name is too long for the file system (%zu bytes; "
                       "at most %d)", path, n, PATH_MAX - 1);
    char *dir = NULL, *base = NULL;
    wf_status st = split_path(path, &dir, &base, err);
    if (st) return st;
    size_t nm = name_max(dir);
    if (strlen(base) > nm) {
        st = wf_fail(err, WF_EIO, "%s: the name is too long for the file system (a name of %zu "
                     "bytes; at most %zu)", path, strlen(base), nm);
        goto out;
    }
    struct stat lsb, sb;
    if (lstat(path, &lsb) != 0) {
        if (errno != ENOENT) {
            st = wf_fail(err, WF_EIO, "%s: %s", path,
                         errno == ENAMETOOLONG ? "the name is too long for the file system"
                                               : strerror(errno));
            goto out;
        }
        char *rd = realpath(dir, NULL); /* a new name in an existing folder */
        if (!rd) {
            st = wf_fail(err, WF_EIO, "%s: the folder %s %s", path, dir,
                         errno == ENOENT ? "does not exist" : strerror(errno));
            goto out;
        }
        if (stat(rd, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            st = wf_fail(err, WF_EIO, "%s: %s is not a folder", path, dir);
            free(rd);
            goto out;
        }
        *target = join(rd, base);
        free(rd);
        *kind = FIO_REPLACE;
        if (!*target) st = wf_fail(err, WF_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    char *rt = realpath(path, NULL);
    if (!rt) {
        int e = errno;
        if (S_ISLNK(lsb.st_mode) && e == ENOENT) {
            char to[PATH_MAX];
            ssize_t k = readlink(path, to, sizeof to - 1);
            to[k < 0 ? 0 : k] = 0;
            st = wf_fail(err, WF_EIO,
                         "%s is a dangling symbolic link (to %s, which does not exist); remove it "
                         "or create its target",
                         path, to);
        } else {
            st = wf_fail(err, WF_EIO, "%s: %s", path,
                         e == ELOOP ? "too many levels of symbolic links" : strerror(e));
        }
        goto out;
    }
    if (stat(rt, &sb) != 0) {
        st = wf_fail(err, WF_EIO, "%s: %s", path, strerror(errno));
        free(rt);
        goto out;
    }
    if ((st = classify(path, &sb, flags, kind, err))) {
        free(rt);
        goto out;
    }
    *target = rt;
out:
    free(dir);
    free(base);
    return st;
}

/* ---- temporaries ---- */

/* 8 hex digits of this host's name and pid namespace: the pids of temporaries with another tag
 * (another host on a shared folder, another container) cannot be checked, so they are left be. */
static const char *host_tag(void) {
    static char tag[9];
    static atomic_int done;
    if (!atomic_load(&done)) {
        char h[256 + PATH_MAX] = {0};
        gethostname(h, 255);
        size_t n = strlen(h);
        ssize_t k = readlink("/proc/self/ns/pid", h + n + 1, PATH_MAX - 1);
        if (k > 0) h[n] = '/'; /* "host/pid:[inode]" */
        uint32_t x = 2166136261u; /* FNV-1a */
        for (const char *c = h; *c; c++) x = (x ^ (unsigned char)*c) * 16777619u;
        snprintf(tag, sizeof tag, "%08x", (unsigned)x);
        atomic_store(&done, 1);
    }
    return tag;
}

/* The part of target's name that its temporaries start with: the name, cut so that the whole
 * temporary name (".tmp." pid "-" tag "." XXXXXX) still fits the folder's longest name. */
enum { TMP_SUFFIX_MAX = 5 + 10 + 1 + 8 + 1 + 6 };
static void tmp_stem(const char *dir, const char *base, char *stem) {
    size_t n = strlen(base), nm = name_max(dir);
    size_t cap = nm > TMP_SUFFIX_MAX + 1 ? nm - TMP_SUFFIX_MAX : 1;
    if (cap > NAME_MAX - TMP_SUFFIX_MAX) cap = NAME_MAX - TMP_SUFFIX_MAX; /* stem's buffer */
    if (n > cap) n = cap;
    memcpy(stem, base, n);
    stem[n] = 0;
}

/* The pid of a temporary of ours, NAME.tmp.<pid>-<tag>.XXXXXX with this host's tag, or 0. */
static long tmp_pid(const char *s) {
    size_t n = strlen(s);
    if (n < 5 + 1 + 1 + 8 + 1 + 6) return 0;
    const char *t = s + n - 6 - 1 - 8; /* the tag */
    if (t[8] != '.' || t[-1] != '-' || strncmp(t, host_tag(), 8)) return 0;
    const char *p = t - 1; /* back over the pid's digits */
    while (p > s && p[-1] >= '0' && p[-1] <= '9') p--;
    if (p == t - 1 || t - 1 - p > 10 || p - s < 5 || strncmp(p - 5, ".tmp.", 5)) return 0;
    long pid = strtol(p, NULL, 10);
    return pid > 0 && pid <= INT_MAX ? pid : 0;
}

/* Removes from dir the temporaries of this host whose process is dead (a killed run's), once
 * per folder and process (a folder of many frames is not read once per frame). */
static void clean_stale(const char *dir) {
    enum { MAX_SEEN = 16 };
    static char *seen[MAX_SEEN];
    static int n_seen;
    for (int i = 0; i < n_seen; i++)
        if (!strcmp(seen[i], dir)) return;
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid = tmp_pid(e->d_name);
        if (!pid || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
    if (n_seen < MAX_SEEN && (seen[n_seen] = strdup(dir))) n_seen++;
}

/* A fresh temporary beside target, open in *fd, registered in *slot; *tmp malloc'd. */
static wf_status tmp_make(const char *path, const char *target, char **tmp, int *fd, int *slot,
                          wf_err *err) {
    char *dir = NULL, *base = NULL;
    wf_status st = split_path(target, &dir, &base, err);
    if (st) return st;
    char stem[NAME_MAX + 1];
    tmp_stem(dir, base, stem);
    clean_stale(dir);
    char *t = malloc(strlen(dir) + strlen(stem) + TMP_SUFFIX_MAX + 3);
    if (!t) {
        st = wf_fail(err, WF_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    sprintf(t, "%s/%s.tmp.%ld-%s.XXXXXX", dir, stem, (long)getpid(), host_tag());
    sigset_t old;
    block_cleanup_signals(&old);
    int f = mkstemp(t);
    int e = errno;
    *slot = f >= 0 ? slot_add(t) : -1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (f < 0) {
        st = wf_fail(err, WF_EIO,
                     "%s: cannot create a file in the folder %s: %s (check that the folder "
                     "exists and is writable)",
                     path, dir, strerror(e));
        free(t);
        goto out;
    }
    if (fchmod(f, 0666 & ~(mode_t)fio_umask()) != 0) {
        st = wf_fail(err, WF_EIO, "%s: cannot set the mode of %s: %s", path, t, strerror(errno));
        close(f);
        unlink(t);
        slot_drop(slot);
        free(t);
        goto out;
    }
    *tmp = t;
    *fd = f;
out:
    free(dir);
    free(base);
    return st;
}

wf_status fio_probe(const char *path, unsigned flags, wf_err *err) {
    char *target = NULL, *tmp = NULL;
    fio_kind kind;
    wf_status st = fio_target(path, flags, &target, &kind, err);
    if (st) return st;
    if (kind == FIO_REPLACE) {
        int fd = -1, slot = -1;
        if (!(st = tmp_make(path, target, &tmp, &fd, &slot, err))) {
            close(fd);
            unlink(tmp);
            slot_drop(&slot);
        }
    } else if (kind == FIO_DEVICE && access(target, W_OK) != 0) {
        st = wf_fail(err, WF_EIO, "%s: cannot write to the device: %s", path, strerror(errno));
    } else if (kind == FIO_FIFO) { /* a reader must be there now; its end stays open for it */
        int fd = open(target, O_WRONLY | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
            st = errno == ENXIO ? wf_fail(err, WF_EIO,
                                          "%s is a FIFO with no reader; start the reader first "
                                          "(e.g. cat %s > FILE &)",
                                          path, path)
                                : wf_fail(err, WF_EIO, "%s: cannot open for writing: %s", path,
                                          strerror(errno));
        else {
            held_add(target, fd);
            target = NULL;
        }
    }
    free(tmp);
    free(target);
    return st;
}

wf_status fio_out_open(fio_out *o, const char *path, unsigned flags, wf_err *err) {
    memset(o, 0, sizeof *o);
    o->fd = -1;
    o->slot = -1;
    wf_status st = fio_target(path, flags, &o->target, &o->kind, err);
    if (st) return st;
    if (!(o->path = strdup(path))) {
        st = wf_fail(err, WF_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    if (o->kind == FIO_REPLACE) {
        if ((st = tmp_make(path, o->target, &o->tmp, &o->fd, &o->slot, err))) goto fail;
        return WF_OK;
    }
    /* in place: never created, never truncated; a FIFO without a reader fails now (ENXIO) */
    int fd = open(o->target, O_WRONLY | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENXIO && o->kind == FIO_FIFO)
            st = wf_fail(err, WF_EIO,
                         "%s is a FIFO with no reader; start the reader first (e.g. cat %s > "
                         "FILE &)",
                         path, path);
        else
            st = wf_fail(err, WF_EIO, "%s: cannot open for writing: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    int fl = fcntl(fd, F_GETFL);
    if (fstat(fd, &sb) != 0 || (o->kind == FIO_FIFO ? !S_ISFIFO(sb.st_mode) : !S_ISCHR(sb.st_mode)) ||
        fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        st = wf_fail(err, WF_EIO, "%s changed while it was opened; try again", path);
        close(fd);
        goto fail;
    }
    o->fd = fd;
    if (o->kind == FIO_FIFO) held_release(o->target); /* a probe's end: ours is open now */
    return WF_OK;
fail:
    fio_out_abort(o);
    return st;
}

static void out_free(fio_out *o) {
    free(o->path);
    free(o->target);
    free(o->tmp);
    o->path = o->target = o->tmp = NULL;
}

void fio_out_abort(fio_out *o) {
    if (!o) return;
    if (o->fd >= 0) close(o->fd);
    o->fd = -1;
    if (o->tmp) unlink(o->tmp);
    slot_drop(&o->slot);
    out_free(o);
}

wf_status fio_out_commit(fio_out *o, wf_err *err) {
    wf_status st = WF_OK;
    const char *p = o->path ? o->path : "(output)";
    if (o->kind != FIO_REPLACE || !o->tmp) {
        if (o->fd >= 0 && close(o->fd) != 0 && errno != EINTR)
            st = wf_fail(err, WF_EIO, "%s: close failed: %s", p, strerror(errno));
        o->fd = -1;
        out_free(o);
        return st;
    }
    int fd = o->fd >= 0 ? o->fd : open(o->tmp, O_RDONLY | O_CLOEXEC);
    o->fd = -1;
    if (fd < 0 || fsync(fd) != 0) {
        st = wf_fail(err, WF_EIO, "%s: cannot sync the written file: %s", p, strerror(errno));
        if (fd >= 0) close(fd);
        goto out;
    }
    if (close(fd) != 0 && errno != EINTR) {
        st = wf_fail(err, WF_EIO, "%s: close failed: %s", p, strerror(errno));
        goto out;
    }
    if (rename(o->tmp, o->target) != 0)
        st = wf_fail(err, WF_EIO, "%s: cannot rename the temporary file into place: %s", p,
                     strerror(errno));
out:
    if (st) unlink(o->tmp);
    slot_drop(&o->slot);
    out_free(o);
    return st;
}

wf_status fio_write_parts(const char *path, const fio_part *parts, size_t n, unsigned flags,
                          wf_err *err) {
    fio_out o;
    wf_status st = fio_out_open(&o, path, flags, err);
    if (st) return st;
    for (size_t i = 0; i < n; i++)
        if (fio_out_write(&o, parts[i].data, parts[i].bytes) != 0) {
            st = wf_fail(err, WF_EIO, "%s: write failed: %s%s", path, strerror(errno),
                         errno == EPIPE ? " (the reader of the FIFO went away)" : "");
            fio_out_abort(&o);
            return st;
        }
    return fio_out_commit(&o, err);
}

wf_status fio_write_atomic(const char *path, const fio_part *parts, size_t n, wf_err *err) {
    return fio_write_parts(path, parts, n, 0, err);
}
