/* fileio.h: output targets, the one home of the rules about where a writer's bytes go (prefix
 * fio_): a write that finishes or fails (fio_write_all), what an output path names and how it is
 * written (fio_target, fio_out_*), the preflight probe (fio_probe), and the cleanup of temporary
 * files on a signal (fio_cleanup_install).
 *
 * The rules, for every output (MP4, PNG, HDF5, safetensors):
 *   - a new name or an existing regular file is replaced atomically: a temporary beside it,
 *     NAME.tmp.<pid>-<host>.XXXXXX, fsync, rename, so that a reader sees either the old file or
 *     the complete new one. <host> tags this host and pid namespace. The first time a process
 *     writes into a folder, the leftovers there of killed runs of this host (*.tmp.<pid>-<host>.*
 *     whose pid is dead) are removed;
 *   - an existing symlink is followed: its target is replaced (temporary beside the target); a
 *     dangling link or a loop is an error that names it;
 *   - an existing character device is written in place (/dev/null; /dev/full says "No space left
 *     on device"); it is never replaced by a file;
 *   - an existing FIFO is streamed to when the format allows it (FIO_STREAMABLE) and refused
 *     otherwise; it is opened without blocking, so a FIFO with no reader is an error at once;
 *   - a folder, a block device or a socket is refused;
 *   - files are made 0666 & ~umask (the umask read once), as other tools make them;
 *   - once fio_cleanup_install has run, SIGTERM, SIGINT and SIGHUP (those not ignored) remove
 *     the live temporaries (a registry of at most FIO_MAX_LIVE) and end the process with the
 *     signal's default action.
 * What it is not: a file format; a buffered stream.
 * Tested by: tests/test_safetensors.c (round trips), tests/test_video_out.c (no temporary files
 * left after success or failure; devices, FIFOs, symlinks, modes), tests/test_outputs.sh (the
 * `wanfarm generate` outputs end to end: devices, FIFOs, signals, umask).
 */
#ifndef FIO_FILEIO_H
#define FIO_FILEIO_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

/* Writes all n bytes (in pieces of at most 1 GiB, retrying on EINTR): 0, or -1 with errno set. */
int fio_write_all(int fd, const void *p, size_t n);

/* What an output path is. */
typedef enum fio_kind {
    FIO_REPLACE, /* a new name or a regular file: a temporary beside it, renamed over it */
    FIO_DEVICE,  /* an existing character device: written in place */
    FIO_FIFO,    /* an existing FIFO: streamed to its reader */
} fio_kind;

/* fio_target and fio_out_open flags. */
#define FIO_STREAMABLE 1u /* the format can be written front to back in one pass: FIFOs allowed */

/* Temporaries the signal handler can remove at one time (more are made, but not registered). */
#define FIO_MAX_LIVE 32

/* What path names: *target (malloc'd) is the absolute file that would be written, with every
 * symlink followed (for a new name: the resolved folder and the name); *kind how. Refused, with
 * the path and the reason: an empty name, a name ending in '/', a name too long for the file
 * system, a missing folder, a dangling symlink or a loop, a folder, a block device or socket, a
 * FIFO without FIO_STREAMABLE. WF_EIO (WF_EINVAL for an empty name). */
wf_status fio_target(const char *path, unsigned flags, char **target, fio_kind *kind,
                     wf_err *err);

/* Checks that path can be written, without writing it: fio_target, then for FIO_REPLACE a
 * temporary created and removed beside the target (the folder is writable and the temporary's
 * name fits), for FIO_DEVICE write permission, for FIO_FIFO that a reader is there (opened
 * without blocking; the end stays open until fio_out_open opens the FIFO, so that the reader
 * does not see an end of file before the first byte). */
wf_status fio_probe(const char *path, unsigned flags, wf_err *err);

/* One output being written (embedded: fio_out_open ... fio_out_commit or fio_out_abort). */
typedef struct fio_out {
    char *path;   /* as given, for messages (malloc'd) */
    char *target; /* the file written (fio_target; malloc'd) */
    char *tmp;    /* FIO_REPLACE: the temporary beside target, else NULL (malloc'd) */
    int fd;       /* open for writing: tmp, the device or the FIFO; -1 once closed */
    fio_kind kind;
    int slot;     /* tmp's slot in the signal-cleanup registry, or -1 */
} fio_out;

/* Opens path for writing by the rules above. A writer that opens the file by name (FFmpeg)
 * closes o->fd and writes o->tmp; FIO_DEVICE and FIO_FIFO must be written through o->fd. A FIFO
 * with no reader is refused at once (WF_EIO naming it). */
wf_status fio_out_open(fio_out *o, const char *path, unsigned flags, wf_err *err);
/* Writes n bytes to o->fd (a FIFO whose reader went away gives EPIPE, not SIGPIPE): 0, or -1
 * with errno set. */
int fio_out_write(fio_out *o, const void *p, size_t n);
/* Finishes o: closes fd; FIO_REPLACE: fsync and rename the temporary over the target (removed on
 * failure). Frees o's fields; accepts a closed or zeroed o. */
wf_status fio_out_commit(fio_out *o, wf_err *err);
/* Abandons o: closes fd, removes the temporary, frees o's fields; accepts a closed or zeroed o. */
void fio_out_abort(fio_out *o);

/* One piece of a file's content. */
typedef struct fio_part {
    const void *data;
    size_t bytes;
} fio_part;
/* Writes the n parts, in order, to path by the rules above (flags: FIO_STREAMABLE or 0). */
wf_status fio_write_parts(const char *path, const fio_part *parts, size_t n, unsigned flags,
                          wf_err *err);
/* fio_write_parts without FIO_STREAMABLE (a FIFO is refused). */
wf_status fio_write_atomic(const char *path, const fio_part *parts, size_t n, wf_err *err);

/* The process's umask, read once (umask(2) twice; the first call reads it). */
unsigned fio_umask(void);
/* Installs the handler of SIGTERM, SIGINT and SIGHUP (each one that is not ignored) that removes
 * the live temporaries and re-raises the signal with its default action; reads the umask. Call
 * once, early, from a command's main (wanfarm generate, wanfarm mkmodel). */
void fio_cleanup_install(void);

#endif
