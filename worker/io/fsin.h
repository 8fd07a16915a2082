/* fsin.h: opening input files for reading (prefix fsin_), refusing at once what is not a regular
 * file, so that a FIFO, a folder or a device node given where a model file, a config, --latents or
 * a tokenizer file is expected is never opened in blocking mode and never waits for a writer.
 *
 * What it is: the one way worker/ opens a file it reads. The path is stat'ed first (symlinks
 * followed), so that a FIFO or a device is refused without being opened; then it is opened with
 * O_NONBLOCK and fstat'ed again (a file swapped for a FIFO between the two cannot block either),
 * and O_NONBLOCK is cleared. Messages name the file and the problem, in the OS's words:
 *   "m/vae/config.json: is a FIFO, not a regular file"
 *   "m/vae/config.json: cannot open: Too many levels of symbolic links"
 * What it is not: a reader or a buffered stream; output files go through fileio.h. The planner
 * (coordinator/planner/) may not use worker/io/ and keeps its own check in pn_cost_load.
 * Tested by: tests/test_inputs.sh (FIFOs, folders, symlink loops in place of every kind of input),
 * tests/test_safetensors.c (a folder and an absent file given to st_open).
 */
#ifndef FSIN_FSIN_H
#define FSIN_FSIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "status.h"

/* "a FIFO", "a directory", "a character device", "a block device", "a socket", "a regular file",
 * ... for a struct stat's st_mode. */
const char *fsin_kind_name(unsigned mode);

/* Checks that path names a regular file (symlinks followed) without opening it: WF_OK, or WF_EIO
 * with "PATH: is a FIFO, not a regular file" or "PATH: cannot open: <strerror>". When absent is
 * not NULL it is set to true if the path does not exist (ENOENT), so a caller can say what should
 * be there (the message is set all the same); an optional file then reads as absent. For
 * libraries that open by name (sentencepiece); everything else uses fsin_open. */
wf_status fsin_check(const char *path, bool *absent, wf_err *err);

/* The same for a folder: "PATH: is a FIFO, not a folder". */
wf_status fsin_check_dir(const char *path, bool *absent, wf_err *err);

/* Opens a regular file for reading (O_CLOEXEC, blocking reads): *fd, and *size (may be NULL). On
 * failure *fd is -1 and the message is fsin_check's; absent as there. */
wf_status fsin_open(const char *path, int *fd, size_t *size, bool *absent, wf_err *err);

/* fsin_open as a stdio stream ("rb"). */
wf_status fsin_fopen(const char *path, FILE **f, bool *absent, wf_err *err);

/* Parses the JSON file at path (jansson flags) through a checked descriptor, in place of
 * json_load_file. WF_OK with *root; WF_EIO with the message of fsin_open (je->text says the same,
 * je->line is -1); WF_EFORMAT when the file is not valid JSON, with je filled by jansson and err
 * left for the caller to word. */
wf_status fsin_json_load(const char *path, size_t flags, json_t **root, json_error_t *je,
                         bool *absent, wf_err *err);

#endif
