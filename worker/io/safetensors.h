/* safetensors.h: reading and writing safetensors checkpoints (prefix st_).
 *
 * What it is:
 *   - st_file: one .safetensors file, mmap'd read-only, with its header validated the way the
 *     reference implementation (the `safetensors` Rust crate behind the Python package) does:
 *     header length <= 100 MB and inside the file, UTF-8, starts with '{', JSON (parsed with
 *     jansson), duplicate names rejected, every dtype known, shape x dtype bits a whole number of
 *     bytes equal to the byte span, spans contiguous from 0 with no gap or overlap, no trailing bytes, and every size
 *     computed with overflow checks. Rank-0 and zero-size tensors and NaN/Inf payloads load.
 *   - st_checkpoint: a model's weights as one namespace, from a single file, a sharded
 *     `*.safetensors.index.json` (shard names must be plain file names beside the index), or a
 *     Diffusers/transformers component folder holding one of those.
 *   - st_write: writes a file atomically (temporary name, fsync, rename), 8-byte aligned header.
 * What it is not: a converter; tensors are views into the mapping (st_tensor_view), and dtypes
 *   outside the runtime's four (f32, bf16, f16, f8e4m3) can be listed but not viewed.
 * Tested by: tests/test_safetensors.c (round trip, >20 malformed files, sharded index, the
 *   reference library's own files from tests/fixtures/safetensors), also under the sanitizer build.
 */
#ifndef ST_SAFETENSORS_H
#define ST_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tensor.h"

#define ST_MAX_HEADER 100000000u /* bytes, as the reference */

/* Every dtype of the format (safetensors 0.8), including the sub-byte F4 / F6 ones. */
typedef enum st_dtype {
    ST_BOOL = 0, ST_F4, ST_F6_E2M3, ST_F6_E3M2, ST_U8, ST_I8, ST_F8_E5M2, ST_F8_E4M3, ST_F8_E8M0,
    ST_F8_E4M3FNUZ, ST_F8_E5M2FNUZ, ST_I16, ST_U16, ST_F16, ST_BF16, ST_I32, ST_U32, ST_F32, ST_C64,
    ST_F64, ST_I64, ST_U64, ST_DTYPE_COUNT
} st_dtype;

const char *st_dtype_name(st_dtype dt);    /* the header spelling: "BF16" */
size_t st_dtype_bits(st_dtype dt);         /* bits per element (4 and 6 for F4 / F6) */
size_t st_dtype_size(st_dtype dt);         /* bytes per element; 0 for the sub-byte dtypes */
int st_dtype_parse(const char *s, st_dtype *out); /* 0 on success */

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;
    uint64_t *shape;            /* ndim entries (NULL when ndim == 0) */
    uint64_t numel;
    uint64_t begin, end;        /* byte offsets in the data section */
    const unsigned char *data;  /* begin of the bytes in the mapping */
    const char *file;           /* path of the file holding it */
} st_tensor;

typedef struct st_file {
    char *path;
    unsigned char *map;    /* whole file, read-only */
    size_t size;           /* file size */
    uint64_t header_len;   /* N of the 8-byte prefix */
    st_tensor *tensors;    /* sorted by name */
    size_t n_tensors;
    char **meta;           /* __metadata__ as key, value, key, value ... */
    size_t n_meta;         /* number of pairs */
} st_file;

/* Opens and validates path. On error *out is NULL and err names the file and the problem. */
wf_status st_open(st_file **out, const char *path, wf_err *err);
/* Validates an in-memory file image (no copy is made: tensors point into buf, which must
 * outlive the result). label names it in messages. Used by st_open, tests and fuzzers. */
wf_status st_parse(st_file **out, const unsigned char *buf, size_t len, const char *label,
                   wf_err *err);
void st_close(st_file **f);
const st_tensor *st_file_find(const st_file *f, const char *name);
const char *st_file_meta(const st_file *f, const char *key); /* NULL when absent */

typedef struct st_checkpoint {
    char *path;            /* what was opened */
    st_file **files;
    size_t n_files;
    const st_tensor **by_name; /* all tensors of all shards, sorted by name */
    size_t n_tensors;
    uint64_t total_bytes;  /* sum of tensor byte spans */
} st_checkpoint;

/* path: a .safetensors file, a *.safetensors.index.json, or a folder holding
 * diffusion_pytorch_model.safetensors[.index.json] or model.safetensors[.index.json]. */
wf_status st_checkpoint_open(st_checkpoint **out, const char *path, wf_err *err);
void st_checkpoint_close(st_checkpoint **c);
const st_tensor *st_checkpoint_find(const st_checkpoint *c, const char *name);
/* Position of `name` in c->by_name, or -1: lets a loader keep a used[] array beside by_name and
 * report the tensors its config does not use. */
ptrdiff_t st_checkpoint_index(const st_checkpoint *c, const char *name);

/* A runtime tensor over the mapped bytes (F32, BF16, F16, F8_E4M3 only; others give
 * WF_EUNSUPPORTED naming the tensor). Rank above WK_MAX_DIMS is WF_EUNSUPPORTED. */
wf_status st_tensor_view(const st_tensor *t, wk_tensor *out, wf_err *err);
/* st dtype of a runtime dtype */
st_dtype st_dtype_of(wk_dtype dt);

typedef struct st_item {
    const char *name;
    st_dtype dtype;
    int ndim;
    const uint64_t *shape;
    const void *data;       /* numel * dtype size bytes */
} st_item;

/* Writes items (in this order) and optional metadata pairs (meta[2i] key, meta[2i+1] value)
 * to path atomically. Rejects duplicate or empty names and __metadata__ as a tensor name. */
wf_status st_write(const char *path, const st_item *items, size_t n, const char *const *meta,
                   size_t n_meta, wf_err *err);

#endif
