/* fault_enospc.c: an LD_PRELOAD library for the fault tests: a disk that fills up.
 *
 * write(2) to a file whose path contains $WF_FAULT_MATCH fails with ENOSPC once
 * $WF_FAULT_AFTER such files (told apart by their inode) have been written: the first ones are
 * written whole, every later one fails at its first write, as a disk that is full from then on.
 * Everything else passes through. Used by tests/test_farm.sh (a checkpoint that cannot be
 * written: the previous one survives, the job is retried, no corrupt output appears).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

typedef ssize_t (*write_fn)(int, const void *, size_t);

#define MAX_FILES 64
static ino_t g_seen[MAX_FILES];
static int g_n;

/* whether this write must fail */
static int full(int fd) {
    const char *match = getenv("WF_FAULT_MATCH");
    if (!match || !*match || fd <= 2) return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    if (!strstr(path, match)) return 0;
    struct stat sb;
    if (fstat(fd, &sb) != 0) return 0;
    int k = 0;
    while (k < g_n && g_seen[k] != sb.st_ino) k++;
    if (k == g_n && g_n < MAX_FILES) g_seen[g_n++] = sb.st_ino;
    const char *after = getenv("WF_FAULT_AFTER");
    return k >= (after ? atoi(after) : 0);
}

ssize_t write(int fd, const void *buf, size_t n) {
    static write_fn real;
    if (!real) real = (write_fn)dlsym(RTLD_NEXT, "write");
    if (full(fd)) {
        errno = ENOSPC;
        return -1;
    }
    return real(fd, buf, n);
}
