/* checkpoint.h: denoising checkpoints (prefix ck_): a job's state between two steps, on disk.
 *
 * What it is: one HDF5 file per job holding /latents (f32 [C, T, h, w], the latents after
 * `step` steps), /sampler (the sampler's whole state as smp_state_save writes it: the history,
 * the last sample, the grid's hash) and root attributes: the format (CK_FORMAT), step, steps,
 * seed, the job spec's hash and the model's identity (ck_meta). The HDF5 image is built in memory
 * and followed by a 16-byte trailer, "WFCKPT01" and the FNV-1a 64 of the image, so that
 *   - ck_read checks the size, the trailer and the checksum before HDF5 sees one byte (a
 *     malformed HDF5 file is an attack surface, and a torn write must not be half-read), then
 *     opens the verified image from memory (the core driver), then checks every field against
 *     what the caller expects (format, spec, model, shape, step range, the state's size);
 *   - ck_write first renames the current checkpoint to PATH.prev (the previous one is kept),
 *     then writes the new one to a temporary, fsyncs and renames it into place (fileio.h): a crash
 *     or a full disk at any point leaves PATH or PATH.prev whole;
 *   - ck_load_latest takes PATH, else PATH.prev, else nothing (a fresh start), reporting why each
 *     refused file was refused: a checkpoint never yields a wrong video.
 * The model's identity is the FNV-1a 64 of its configs and of its safetensors headers (every
 * tensor's name, dtype, shape and offsets), not of the weights' bytes (hashing 57 GB per job would
 * cost seconds): a re-trained model of the same shapes and configs is not told apart.
 * What it is not: a format for other programs (h5dump reads it; the trailer follows the image),
 * or safe against a writer who forges the checksum (only the farm's own files are opened).
 * Tested by: tests/test_checkpoint.c (round trip; every refusal; the .prev fallback; truncations
 * and flipped bytes never reach HDF5), tests/test_resume.sh (generate --checkpoint-dir --resume).
 */
#ifndef CK_CHECKPOINT_H
#define CK_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define CK_FORMAT 1
#define CK_MAX_BYTES ((size_t)8 << 30) /* a checkpoint file larger than this is refused */

typedef struct ck_meta {
    int64_t step;        /* steps done: the next step to run */
    int64_t steps;       /* the job's steps */
    uint64_t seed;
    uint64_t spec_hash;  /* ck_fnv of the spec's canonical text (the caller's) */
    uint64_t model_id;   /* ck_model_id */
    int64_t shape[4];    /* latents C, T, h, w */
} ck_meta;

typedef struct ck_data {
    ck_meta meta;
    float *latents;      /* [C T h w] */
    size_t n;            /* floats */
    void *state;         /* the sampler state */
    size_t state_bytes;
} ck_data;

/* FNV-1a 64 (h: the running value; start with CK_FNV_INIT). */
#define CK_FNV_INIT 1469598103934665603ull
uint64_t ck_fnv(uint64_t h, const void *p, size_t n);

/* The identity of a Diffusers folder: its model_index.json and every component's config.json
 * (those present) and safetensors headers, hashed in a fixed order. */
wf_status ck_model_id(const char *root, uint64_t *id, wf_err *err);

/* Writes the checkpoint (see the head of this file). state: state_bytes of sampler state. */
wf_status ck_write(const char *path, const ck_meta *m, const float *latents, const void *state,
                   size_t state_bytes, wf_err *err);
/* Reads and checks path against want (its step is not compared; steps, seed, spec_hash,
 * model_id and shape are; state_bytes: the size the caller's sampler takes, 0: any). *out
 * (ck_data_free) only on WF_OK; WF_EFORMAT naming the mismatch or damage otherwise, WF_EIO when
 * it cannot be read. */
wf_status ck_read(const char *path, const ck_meta *want, size_t state_bytes, ck_data *out,
                  wf_err *err);
void ck_data_free(ck_data *d);

/* The newest usable checkpoint: path, else path.prev. *found false (and WF_OK) when neither is
 * there or usable; note(ctx, file, why) is told of each file refused. */
wf_status ck_load_latest(const char *path, const ck_meta *want, size_t state_bytes, ck_data *out,
                         bool *found, void (*note)(void *ctx, const char *file, const char *why),
                         void *ctx, wf_err *err);

#endif
