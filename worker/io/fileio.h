/* fileio.h: the file helpers every writer of worker/io/ shares (prefix fio_): a write that
 * finishes or fails (fio_write_all), and the atomic-replace protocol (a temporary file beside the
 * target, fsync, rename), so that a reader sees either the old file or the complete new one.
 *
 * What it is: the one place the writers (st_write.c, video_out.c; the HDF5 denoising checkpoints
 * later) create, sync and rename their files, so that rules about output targets live in one file.
 * What it is not: a file format; a buffered stream.
 * Tested by: tests/test_safetensors.c (round trips), tests/test_video_out.c (no temporary files
 * left after success or failure).
 */
#ifndef FIO_FILEIO_H
#define FIO_FILEIO_H

#include <stddef.h>

#include "status.h"

/* Writes all n bytes (in pieces of at most 1 GiB, retrying on EINTR): 0, or -1 with errno set. */
int fio_write_all(int fd, const void *p, size_t n);

/* A fresh temporary file beside path ("path.tmp.XXXXXX"), open for writing in *fd; *tmp is
 * malloc'd. WF_EIO names the path and says to check the folder. */
wf_status fio_tmp_open(const char *path, char **tmp, int *fd, wf_err *err);
/* The same, closed (for writers that open the file by name: FFmpeg, libpng, HDF5). */
wf_status fio_tmp_create(const char *path, char **tmp, wf_err *err);
/* fsyncs tmp (written and closed by its writer) and renames it to path; unlinks tmp on failure. */
wf_status fio_tmp_commit(const char *tmp, const char *path, wf_err *err);

/* One piece of a file's content. */
typedef struct fio_part {
    const void *data;
    size_t bytes;
} fio_part;
/* Writes the n parts, in order, to path atomically (temporary file, fsync, rename). */
wf_status fio_write_atomic(const char *path, const fio_part *parts, size_t n, wf_err *err);

#endif
