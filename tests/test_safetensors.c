/* test_safetensors.c: the safetensors reader and writer (worker/st_*.c).
 *
 *   - round trip of every dtype, rank-0 and zero-size tensors, NaN/Inf payloads and metadata;
 *   - valid-but-unusual files that must load (empty header, padded header, unaligned data);
 *   - malformed files, made here, each rejected with its own message (and no crash under the
 *     sanitizer build, where CI runs this again);
 *   - sharded indexes, including shard names that try to leave the folder;
 *   - the reference library's own file (tests/fixtures/safetensors), read back value for value.
 * Usage: test_safetensors FIXTURES_DIR
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "safetensors.h"
#include "test_util.h"

static char *tmp;

static char *path_in(const char *dir, const char *name) {
    static char buf[8][4096];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 4096, "%s/%s", dir, name);
    return p;
}

/* A file image: 8-byte little-endian n (or `n_override` when not ~0), header, pad, data. */
static size_t make_image(unsigned char *out, size_t cap, const char *header, uint64_t n_override,
                         size_t data_len) {
    size_t h = strlen(header);
    uint64_t n = n_override != ~0ull ? n_override : h;
    size_t total = 8 + h + data_len;
    if (total > cap) abort();
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(n >> (8 * i));
    memcpy(out + 8, header, h);
    for (size_t i = 0; i < data_len; i++) out[8 + h + i] = (unsigned char)(i * 7 + 1);
    return total;
}

/* ---- round trip ---- */
static void test_round_trip(void) {
    tu_rng r = tu_rng_new(7);
    enum { NT = ST_DTYPE_COUNT + 4 };
    st_item items[NT];
    uint64_t shapes[NT][3];
    unsigned char *bufs[NT];
    char names[NT][32];
    size_t n = 0;
    for (int d = 0; d < ST_DTYPE_COUNT; d++, n++) {
        shapes[n][0] = 2 + (uint64_t)d % 3;
        shapes[n][1] = 3;
        shapes[n][2] = 1 + (uint64_t)d % 2;
        size_t bytes = shapes[n][0] * shapes[n][1] * shapes[n][2] * st_dtype_bits((st_dtype)d) / 8;
        bufs[n] = malloc(bytes);
        for (size_t i = 0; i < bytes; i++) bufs[n][i] = (unsigned char)tu_next(&r);
        snprintf(names[n], sizeof names[n], "t.%s", st_dtype_name((st_dtype)d));
        items[n] = (st_item){names[n], (st_dtype)d, 3, shapes[n], bufs[n]};
    }
    float scalar = 3.25f;
    items[n++] = (st_item){"scalar", ST_F32, 0, NULL, &scalar};
    shapes[n][0] = 0;
    shapes[n][1] = 3;
    items[n++] = (st_item){"empty", ST_BF16, 2, shapes[n - 1], ""};
    float special[4] = {NAN, INFINITY, -INFINITY, -0.0f};
    shapes[n][0] = 4;
    items[n++] = (st_item){"special", ST_F32, 1, shapes[n - 1], special};
    shapes[n][0] = 0;
    items[n++] = (st_item){"empty2", ST_F64, 1, shapes[n - 1], ""};

    const char *meta[] = {"format", "pt", "note", "wanfarm \xc3\xa9t\xc3\xa9"};
    wf_err err = {0};
    const char *p = path_in(tmp, "rt.safetensors");
    TU_CHECK(st_write(p, items, n, meta, 2, &err) == WF_OK, "write: %s", err.msg);
    st_file *f = NULL;
    TU_CHECK(st_open(&f, p, &err) == WF_OK, "open: %s", err.msg);
    if (!f) return;
    TU_CHECK(f->n_tensors == n, "%zu tensors, wrote %zu", f->n_tensors, n);
    TU_CHECK((8 + f->header_len) % 8 == 0, "header not padded to 8: %llu",
             (unsigned long long)f->header_len);
    TU_CHECK(st_file_meta(f, "note") && !strcmp(st_file_meta(f, "note"), meta[3]), "metadata");
    TU_CHECK(st_file_meta(f, "absent") == NULL, "absent metadata key");
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_file_find(f, items[i].name);
        TU_CHECK(t != NULL, "tensor %s missing", items[i].name);
        if (!t) continue;
        TU_CHECK(t->dtype == items[i].dtype && t->ndim == items[i].ndim, "%s dtype/rank", t->name);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            TU_CHECK(t->shape[d] == items[i].shape[d], "%s shape[%d]", t->name, d);
            numel *= items[i].shape[d];
        }
        size_t bytes = numel * st_dtype_bits(t->dtype) / 8;
        TU_CHECK(t->end - t->begin == bytes, "%s bytes", t->name);
        TU_CHECK(bytes == 0 || memcmp(t->data, items[i].data, bytes) == 0, "%s payload differs",
                 t->name);
    }
    TU_CHECK(st_file_find(f, "nope") == NULL, "lookup of an absent name");
    /* views for the runtime dtypes; others are refused with the tensor's name */
    wk_tensor v;
    const st_tensor *sp = st_file_find(f, "special");
    TU_CHECK(st_tensor_view(sp, &v, &err) == WF_OK && v.dtype == WK_F32 && v.ndim == 1 &&
                 v.shape[0] == 4,
             "view special");
    float got[4];
    memcpy(got, v.data, sizeof got);
    TU_CHECK(isnan(got[0]) && got[1] == INFINITY && got[2] == -INFINITY && signbit(got[3]),
             "NaN/Inf payload must load unchanged");
    TU_CHECK(st_tensor_view(st_file_find(f, "scalar"), &v, &err) == WF_OK && v.ndim == 0 &&
                 wk_tensor_numel(&v) == 1 && *(float *)v.data == 3.25f,
             "rank-0 view");
    TU_CHECK(st_tensor_view(st_file_find(f, "t.BF16"), &v, &err) == WF_OK && v.dtype == WK_BF16,
             "bf16 view");
    TU_CHECK(st_tensor_view(st_file_find(f, "t.F8_E4M3"), &v, &err) == WF_OK &&
                 v.dtype == WK_F8E4M3,
             "fp8 view");
    TU_CHECK(st_tensor_view(st_file_find(f, "t.I64"), &v, &err) == WF_EUNSUPPORTED &&
                 strstr(err.msg, "t.I64") && strstr(err.msg, "I64"),
             "I64 view must be refused naming the tensor: %s", err.msg);
    st_close(&f);
    TU_CHECK(f == NULL, "st_close must NULL the pointer");
    st_close(&f); /* accepts NULL */

    /* writer refusals */
    st_item dup[2] = {{"a", ST_F32, 0, NULL, &scalar}, {"a", ST_F32, 0, NULL, &scalar}};
    TU_CHECK(st_write(path_in(tmp, "dup.safetensors"), dup, 2, NULL, 0, &err) == WF_EINVAL &&
                 strstr(err.msg, "given twice"),
             "writer must refuse duplicate names: %s", err.msg);
    st_item reserved = {"__metadata__", ST_F32, 0, NULL, &scalar};
    TU_CHECK(st_write(path_in(tmp, "res.safetensors"), &reserved, 1, NULL, 0, &err) == WF_EINVAL,
             "writer must refuse __metadata__ as a name");
    struct stat sb;
    TU_CHECK(stat(path_in(tmp, "dup.safetensors"), &sb) != 0, "a refused write leaves no file");
    TU_CHECK(st_write("/nonexistent-dir/x.safetensors", &items[0], 1, NULL, 0, &err) == WF_EIO,
             "write into a missing folder is an I/O error");
    for (int d = 0; d < ST_DTYPE_COUNT; d++) free(bufs[d]);
}

/* ---- files that are valid per the format and must load ---- */
static void test_valid_edge_cases(void) {
    unsigned char img[4096];
    wf_err err;
    st_file *f;
    struct {
        const char *what, *header;
        size_t data, n_tensors;
    } ok[] = {
        {"empty header", "{}", 0, 0},
        {"header padded with spaces", "{}      ", 0, 0},
        {"metadata only", "{\"__metadata__\":{\"a\":\"b\"}}", 0, 0},
        {"unaligned data start (header of odd length)",
         "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 1},
        {"two zero-size tensors at one offset",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
         "\"b\":{\"dtype\":\"BF16\",\"shape\":[5,0],\"data_offsets\":[0,0]},"
         "\"c\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}",
         3, 3},
        {"rank-0 tensor", "{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]}}", 8, 1},
        {"unknown extra fields in an entry are ignored, as the reference does",
         "{\"x\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":1}}", 1, 1},
        {"tensors listed out of offset order",
         "{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]},"
         "\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}",
         5, 2},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        size_t len = make_image(img, sizeof img, ok[i].header, ~0ull, ok[i].data);
        const char *p = path_in(tmp, "valid.safetensors");
        tu_write_file(p, img, len);
        f = NULL;
        wf_status st = st_open(&f, p, &err);
        TU_CHECK(st == WF_OK, "%s: must load, got: %s", ok[i].what, err.msg);
        if (f) TU_CHECK(f->n_tensors == ok[i].n_tensors, "%s: tensor count", ok[i].what);
        st_close(&f);
    }
}

/* ---- malformed files ---- */
typedef struct bad_case {
    const char *what;
    const char *header;
    uint64_t n_override; /* ~0: the header's length */
    size_t data;
    size_t truncate_to;  /* 0: keep all */
    const char *expect;  /* substring of the message */
} bad_case;

#define T1(dtype, shape, b, e)                                                                   \
    "{\"t\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}}"

static const bad_case bad[] = {
    {"length prefix cut short", "", ~0ull, 0, 5, "too small"},
    {"header length above 100 MB", "{}", 100000001ull, 0, 0, "100 MB limit"},
    {"header length 2^64-1", "{}", ~0ull - 1, 0, 0, "100 MB limit"},
    {"header length past the end of the file", "{}", 64, 0, 0, "runs past the end"},
    {"header is not UTF-8", "{\"\xff\":1}", ~0ull, 0, 0, "not valid UTF-8"},
    {"overlong UTF-8 in the header", "{\"\xc0\x80\":1}", ~0ull, 0, 0, "not valid UTF-8"},
    {"UTF-16 surrogate in the header", "{\"\xed\xa0\x80\":1}", ~0ull, 0, 0, "not valid UTF-8"},
    {"header does not start with {", "[]", ~0ull, 0, 0, "does not start with '{'"},
    {"header starts with a space", " {}", ~0ull, 0, 0, "does not start with '{'"},
    {"empty header", "", ~0ull, 0, 0, "does not start with '{'"},
    {"truncated JSON", "{\"t\":{\"dtype\":", ~0ull, 0, 0, "not valid JSON"},
    {"JSON with a trailing comma", "{\"a\":1,}", ~0ull, 0, 0, "not valid JSON"},
    {"two JSON values", "{}{}", ~0ull, 0, 0, "not valid JSON"},
    {"NUL byte in the header", "{}\0", 3, 0, 0, "NUL byte"},
    {"duplicate tensor name",
     "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
     "\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
     ~0ull, 2, 0, "duplicate key"},
    {"unknown dtype", T1("F17", "[1]", 0, 4), ~0ull, 4, 0, "unknown dtype \"F17\""},
    {"lower-case dtype", T1("f32", "[1]", 0, 4), ~0ull, 4, 0, "unknown dtype"},
    {"dtype is a number", "{\"t\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", ~0ull, 4,
     0, "dtype is not a string"},
    {"missing data_offsets", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", ~0ull, 4, 0,
     "lacks 'data_offsets'"},
    {"missing shape", "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", ~0ull, 4, 0,
     "lacks 'shape'"},
    {"missing dtype", "{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", ~0ull, 4, 0,
     "lacks 'dtype'"},
    {"entry is not an object", "{\"t\":[1,2]}", ~0ull, 0, 0, "is not an object"},
    {"shape is not an array", T1("F32", "4", 0, 4), ~0ull, 4, 0, "shape is not an array"},
    {"negative dimension", T1("F32", "[-1]", 0, 4), ~0ull, 4, 0,
     "shape[0] is not a non-negative integer"},
    {"fractional dimension", T1("F32", "[1.5]", 0, 4), ~0ull, 4, 0,
     "shape[0] is not a non-negative integer"},
    {"three data offsets", "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}",
     ~0ull, 2, 0, "data_offsets must be [begin, end]"},
    {"negative data offset", T1("U8", "[1]", -1, 0), ~0ull, 1, 0, "data_offsets must be"},
    {"end before begin", T1("U8", "[0]", 4, 2), ~0ull, 4, 0, "end 2 < begin 4"},
    {"shape and byte span disagree", T1("F32", "[2,2]", 0, 12), ~0ull, 12, 0,
     "needs 16 bytes but data_offsets span 12"},
    {"element count overflows", T1("F32", "[4294967296,4294967296]", 0, 0), ~0ull, 0, 0,
     "overflows 64 bits"},
    {"bytes overflow", T1("F64", "[2305843009213693952,4]", 0, 0), ~0ull, 0, 0,
     "overflows 64 bits"},
    {"F4 elements that do not fill a byte", T1("F4", "[3]", 0, 2), ~0ull, 2, 0,
     "3 elements of F4 are not a whole number of bytes"},
    {"F6 elements that do not fill a byte", T1("F6_E2M3", "[2]", 0, 2), ~0ull, 2, 0,
     "not a whole number of bytes"},
    {"first tensor does not start at 0", T1("U8", "[2]", 2, 4), ~0ull, 4, 0,
     "starts at byte 2 of the data, expected 0"},
    {"gap between tensors",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
     "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}",
     ~0ull, 5, 0, "'b' starts at byte 3 of the data, expected 2"},
    {"overlapping tensors",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}",
     ~0ull, 4, 0, "starts at byte 2 of the data, expected"},
    {"trailing bytes after the data", T1("U8", "[2]", 0, 2), ~0ull, 3, 0, "trailing bytes"},
    {"data cut short (truncated download)", T1("F32", "[4]", 0, 16), ~0ull, 16, 30,
     "truncated file"},
    {"metadata value not a string", "{\"__metadata__\":{\"k\":1}}", ~0ull, 0, 0,
     "__metadata__ value of 'k' is not a string"},
    {"metadata not an object", "{\"__metadata__\":[]}", ~0ull, 0, 0,
     "__metadata__ is not an object"},
    {"integer too large for JSON", T1("U8", "[99999999999999999999999]", 0, 0), ~0ull, 0, 0,
     "not valid JSON"},
};

static void test_malformed(void) {
    static unsigned char img[1 << 16];
    int n = 0;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const bad_case *b = &bad[i];
        size_t len = make_image(img, sizeof img, b->header, b->n_override, b->data);
        if (b->n_override == 3 && strcmp(b->what, "NUL byte in the header") == 0) {
            memcpy(img + 8, "{}\0", 3);
            len = 11;
        }
        if (b->truncate_to) len = b->truncate_to;
        const char *p = path_in(tmp, "bad.safetensors");
        tu_write_file(p, img, len);
        st_file *f = (st_file *)1;
        wf_err err = {0};
        wf_status st = st_open(&f, p, &err);
        TU_CHECK(st != WF_OK && f == NULL, "%s: accepted", b->what);
        TU_CHECK(strstr(err.msg, b->expect) != NULL, "%s: message '%s' lacks '%s'", b->what,
                 err.msg, b->expect);
        TU_CHECK(strstr(err.msg, p) != NULL, "%s: message '%s' does not name the file", b->what,
                 err.msg);
        /* the in-memory parser gives the same verdict */
        st_file *g = NULL;
        wf_err e2;
        TU_CHECK(st_parse(&g, img, len, "mem", &e2) != WF_OK, "%s: st_parse accepted", b->what);
        n++;
    }
    /* deep nesting must not blow the stack */
    size_t depth = 100000, len = 0;
    unsigned char *deep = malloc(8 + 2 * depth + 8);
    char *h = (char *)deep + 8;
    h[len++] = '{';
    h[len++] = '"';
    h[len++] = 'a';
    h[len++] = '"';
    h[len++] = ':';
    for (size_t i = 0; i < depth; i++) h[len++] = '[';
    for (int i = 0; i < 8; i++) deep[i] = (unsigned char)((uint64_t)len >> (8 * i));
    st_file *g = NULL;
    wf_err err;
    TU_CHECK(st_parse(&g, deep, 8 + len, "deep", &err) == WF_EFORMAT, "deep nesting accepted");
    free(deep);
    n++;
    /* not a file at all */
    st_file *f = NULL;
    TU_CHECK(st_open(&f, tmp, &err) == WF_EIO && strstr(err.msg, "not a regular file"),
             "a folder: %s", err.msg);
    TU_CHECK(st_open(&f, path_in(tmp, "absent.safetensors"), &err) == WF_EIO &&
                 strstr(err.msg, "cannot open"),
             "an absent file: %s", err.msg);
    tu_write_file(path_in(tmp, "empty.safetensors"), "", 0);
    TU_CHECK(st_open(&f, path_in(tmp, "empty.safetensors"), &err) == WF_EFORMAT &&
                 strstr(err.msg, "too small"),
             "an empty file: %s", err.msg);
    n += 3;
    printf("malformed: %d files rejected\n", n);
    TU_CHECK(n >= 20, "at least 20 malformed cases");
}

/* ---- sharded ---- */
static void write_shard(const char *dir, const char *name, const char *t1, const char *t2, float v) {
    static float vals[2][6];
    uint64_t shape[2] = {2, 3};
    for (int i = 0; i < 6; i++) vals[0][i] = v + (float)i, vals[1][i] = -v - (float)i;
    st_item it[2] = {{t1, ST_F32, 2, shape, vals[0]}, {t2, ST_F32, 2, shape, vals[1]}};
    wf_err err;
    TU_CHECK(st_write(path_in(dir, name), it, t2 ? 2 : 1, NULL, 0, &err) == WF_OK, "%s", err.msg);
}

static void write_index(const char *dir, const char *fname, const char *map_json) {
    char buf[2048];
    snprintf(buf, sizeof buf, "{\"metadata\":{\"total_size\":96},\"weight_map\":%s}", map_json);
    tu_write_file(path_in(dir, fname), buf, strlen(buf));
}

static void test_sharded(void) {
    char *dir = tu_tmpdir("shards");
    write_shard(dir, "m-00001-of-00002.safetensors", "blocks.0.w", "blocks.0.b", 1);
    write_shard(dir, "m-00002-of-00002.safetensors", "blocks.1.w", "head.w", 100);
    write_index(dir, "diffusion_pytorch_model.safetensors.index.json",
                "{\"blocks.0.w\":\"m-00001-of-00002.safetensors\","
                "\"blocks.0.b\":\"m-00001-of-00002.safetensors\","
                "\"blocks.1.w\":\"m-00002-of-00002.safetensors\","
                "\"head.w\":\"m-00002-of-00002.safetensors\"}");
    wf_err err;
    for (int via_dir = 0; via_dir < 2; via_dir++) {
        st_checkpoint *c = NULL;
        const char *p = via_dir ? dir : path_in(dir, "diffusion_pytorch_model.safetensors.index.json");
        TU_CHECK(st_checkpoint_open(&c, p, &err) == WF_OK, "sharded open (%s): %s", p, err.msg);
        if (!c) continue;
        TU_CHECK(c->n_files == 2 && c->n_tensors == 4, "2 files, 4 tensors: %zu %zu", c->n_files,
                 c->n_tensors);
        TU_CHECK(c->total_bytes == 4 * 24, "total bytes %llu", (unsigned long long)c->total_bytes);
        const st_tensor *t = st_checkpoint_find(c, "head.w");
        TU_CHECK(t && strstr(t->file, "m-00002") && ((const float *)t->data)[5] == -105.0f,
                 "head.w from shard 2");
        t = st_checkpoint_find(c, "blocks.0.b");
        TU_CHECK(t && strstr(t->file, "m-00001") && ((const float *)t->data)[0] == -1.0f,
                 "blocks.0.b from shard 1");
        TU_CHECK(st_checkpoint_find(c, "blocks.2.w") == NULL, "absent name");
        st_checkpoint_close(&c);
    }
    struct {
        const char *what, *map, *expect;
    } badidx[] = {
        {"listed tensor missing from its shard",
         "{\"blocks.0.w\":\"m-00001-of-00002.safetensors\",\"ghost\":\"m-00001-of-00002.safetensors\"}",
         "'ghost' is listed in shard m-00001-of-00002.safetensors but missing"},
        {"shard outside the folder", "{\"blocks.0.w\":\"../m-00001-of-00002.safetensors\"}",
         "not a plain file name"},
        {"absolute shard path", "{\"blocks.0.w\":\"/etc/passwd\"}", "not a plain file name"},
        {"shard name ..", "{\"blocks.0.w\":\"..\"}", "not a plain file name"},
        {"missing shard file", "{\"blocks.0.w\":\"m-00009-of-00009.safetensors\"}", "cannot open"},
        {"weight_map value not a string", "{\"blocks.0.w\":7}", "is not a string"},
        {"empty weight_map", "{}", "weight_map is empty"},
        {"weight_map not an object", "[]", "'weight_map' is missing or not an object"},
    };
    for (size_t i = 0; i < sizeof badidx / sizeof *badidx; i++) {
        write_index(dir, "bad.safetensors.index.json", badidx[i].map);
        st_checkpoint *c = NULL;
        TU_CHECK(st_checkpoint_open(&c, path_in(dir, "bad.safetensors.index.json"), &err) != WF_OK &&
                     c == NULL,
                 "%s: accepted", badidx[i].what);
        TU_CHECK(strstr(err.msg, badidx[i].expect) != NULL, "%s: message '%s' lacks '%s'",
                 badidx[i].what, err.msg, badidx[i].expect);
    }
    /* one name in two shards */
    write_shard(dir, "dup.safetensors", "head.w", NULL, 5);
    write_index(dir, "bad.safetensors.index.json",
                "{\"head.w\":\"m-00002-of-00002.safetensors\",\"x\":\"dup.safetensors\"}");
    st_checkpoint *c = NULL;
    TU_CHECK(st_checkpoint_open(&c, path_in(dir, "bad.safetensors.index.json"), &err) != WF_OK,
             "a tensor in two shards must be refused");
    TU_CHECK(strstr(err.msg, "missing") || strstr(err.msg, "in both"), "%s", err.msg);
    write_index(dir, "bad.safetensors.index.json",
                "{\"blocks.1.w\":\"m-00002-of-00002.safetensors\",\"head.w\":\"dup.safetensors\"}");
    TU_CHECK(st_checkpoint_open(&c, path_in(dir, "bad.safetensors.index.json"), &err) != WF_OK &&
                 strstr(err.msg, "'head.w' is in both"),
             "duplicate across shards: %s", err.msg);
    /* a bad shard is reported with the index that named it */
    tu_write_file(path_in(dir, "broken.safetensors"), "\x02\0\0\0\0\0\0\0[]", 10);
    write_index(dir, "bad.safetensors.index.json", "{\"a\":\"broken.safetensors\"}");
    TU_CHECK(st_checkpoint_open(&c, path_in(dir, "bad.safetensors.index.json"), &err) != WF_OK &&
                 strstr(err.msg, "lists shard broken.safetensors") &&
                 strstr(err.msg, "does not start with"),
             "bad shard: %s", err.msg);
    /* a folder without weights */
    char *empty = tu_tmpdir("noweights");
    TU_CHECK(st_checkpoint_open(&c, empty, &err) == WF_EIO && strstr(err.msg, "no safetensors weights"),
             "empty folder: %s", err.msg);
    tu_rmtree(empty);
    free(empty);
    tu_rmtree(dir);
    free(dir);
}

/* ---- files written by the reference library ---- */
static int hex_equal(const char *hex, const unsigned char *p, size_t n) {
    if (strlen(hex) != 2 * n) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1 || v != p[i]) return 0;
    }
    return 1;
}

/* The reference's value of element i, when this test can decode the dtype itself. Returns 0 when
 * it cannot (F4, F6, FNUZ, E8M0, C64, E5M2: checked by raw bytes only). */
static int decoded_matches(const st_tensor *t, size_t i, json_t *want, double *got_out) {
    const unsigned char *p = t->data + i * st_dtype_size(t->dtype);
    double a;
    switch (t->dtype) {
    case ST_F32: { float f; memcpy(&f, p, 4); a = f; break; }
    case ST_F64: memcpy(&a, p, 8); break;
    case ST_F16: { uint16_t h; memcpy(&h, p, 2); a = wk_f16_to_f32(h); break; }
    case ST_BF16: { uint16_t h; memcpy(&h, p, 2); a = wk_bf16_to_f32(h); break; }
    case ST_F8_E4M3: a = wk_f8e4m3_to_f32(p[0]); break;
    case ST_BOOL: a = p[0]; break;
    case ST_U8: a = p[0]; break;
    case ST_I8: a = (int8_t)p[0]; break;
    case ST_I16: { int16_t v; memcpy(&v, p, 2); a = v; break; }
    case ST_U16: { uint16_t v; memcpy(&v, p, 2); a = v; break; }
    case ST_I32: { int32_t v; memcpy(&v, p, 4); a = v; break; }
    case ST_U32: { uint32_t v; memcpy(&v, p, 4); a = v; break; }
    case ST_I64: { /* decimal strings: compare exactly as integers */
        int64_t v; memcpy(&v, p, 8);
        *got_out = (double)v;
        return json_is_string(want) && strtoll(json_string_value(want), NULL, 10) == v ? 1 : -1;
    }
    case ST_U64: {
        uint64_t v; memcpy(&v, p, 8);
        *got_out = (double)v;
        return json_is_string(want) && strtoull(json_string_value(want), NULL, 10) == v ? 1 : -1;
    }
    default: return 0;
    }
    *got_out = a;
    double b;
    if (json_is_boolean(want)) b = json_is_true(want);
    else if (json_is_number(want)) b = json_number_value(want);
    else if (json_is_string(want) && !strcmp(json_string_value(want), "nan")) b = NAN;
    else if (json_is_string(want) && !strcmp(json_string_value(want), "inf")) b = INFINITY;
    else if (json_is_string(want) && !strcmp(json_string_value(want), "-inf")) b = -INFINITY;
    else return -1;
    return ((isnan(a) && isnan(b)) || (a == b && signbit(a) == signbit(b))) ? 1 : -1;
}

static void test_reference_fixture(const char *fixtures) {
    char sp[4096], jp[4096];
    snprintf(sp, sizeof sp, "%s/safetensors/reference.safetensors", fixtures);
    snprintf(jp, sizeof jp, "%s/safetensors/reference.json", fixtures);
    json_error_t je;
    json_t *want = json_load_file(jp, 0, &je);
    TU_CHECK(want != NULL, "%s: %s", jp, je.text);
    if (!want) return;
    st_file *f = NULL;
    wf_err err;
    TU_CHECK(st_open(&f, sp, &err) == WF_OK, "reference file: %s", err.msg);
    if (!f) {
        json_decref(want);
        return;
    }
    TU_CHECK((json_int_t)f->header_len == json_integer_value(json_object_get(want, "header_len")),
             "header length");
    json_t *meta = json_object_get(want, "metadata");
    const char *name;
    json_t *w;
    json_object_foreach(meta, name, w)
        TU_CHECK(st_file_meta(f, name) && !strcmp(st_file_meta(f, name), json_string_value(w)),
                 "metadata %s", name);
    size_t checked = 0, values = 0;
    json_t *tensors = json_object_get(want, "tensors");
    json_object_foreach(tensors, name, w) {
        if (!json_is_object(w) || !json_object_get(w, "dtype")) continue;
        const st_tensor *t = st_file_find(f, name);
        TU_CHECK(t != NULL, "reference tensor %s not found", name);
        if (!t) continue;
        checked++;
        TU_CHECK(!strcmp(st_dtype_name(t->dtype), json_string_value(json_object_get(w, "dtype"))),
                 "%s dtype %s", name, st_dtype_name(t->dtype));
        json_t *shape = json_object_get(w, "shape"), *offs = json_object_get(w, "data_offsets");
        TU_CHECK(json_array_size(shape) == (size_t)t->ndim, "%s rank", name);
        for (int d = 0; d < t->ndim && d < (int)json_array_size(shape); d++)
            TU_CHECK((uint64_t)json_integer_value(json_array_get(shape, d)) == t->shape[d],
                     "%s shape[%d]", name, d);
        TU_CHECK((uint64_t)json_integer_value(json_array_get(offs, 0)) == t->begin &&
                     (uint64_t)json_integer_value(json_array_get(offs, 1)) == t->end,
                 "%s data_offsets", name);
        const char *hex = json_string_value(json_object_get(w, "raw_hex"));
        TU_CHECK(hex && hex_equal(hex, t->data, t->end - t->begin), "%s raw bytes differ", name);
        json_t *vals = json_object_get(w, "values");
        for (size_t i = 0; json_is_array(vals) && i < json_array_size(vals) && i < t->numel; i++) {
            double got = 0;
            int r = decoded_matches(t, i, json_array_get(vals, i), &got);
            TU_CHECK(r >= 0, "%s[%zu]: decoded %.17g differs from the reference", name, i, got);
            values += r > 0;
        }
    }
    printf("reference fixture: %zu tensors (every dtype of safetensors %s) byte-identical, %zu "
           "values decoded as the reference decodes them\n",
           checked, "0.8", values);
    TU_CHECK(checked >= 20, "the reference fixture lists every dtype (%zu)", checked);
    st_close(&f);
    json_decref(want);

    /* the sharded checkpoint transformers wrote */
    snprintf(jp, sizeof jp, "%s/safetensors/sharded.json", fixtures);
    want = json_load_file(jp, 0, &je);
    TU_CHECK(want != NULL, "%s: %s", jp, je.text);
    if (!want) return;
    snprintf(sp, sizeof sp, "%s/safetensors/%s", fixtures,
             json_string_value(json_object_get(want, "index")));
    st_checkpoint *c = NULL;
    TU_CHECK(st_checkpoint_open(&c, sp, &err) == WF_OK, "sharded reference: %s", err.msg);
    if (c) {
        json_t *tens = json_object_get(want, "tensors");
        TU_CHECK(c->n_tensors == json_object_size(tens), "sharded: %zu tensors, reference %zu",
                 c->n_tensors, json_object_size(tens));
        TU_CHECK(c->total_bytes == (uint64_t)json_integer_value(json_object_get(want, "total_size")),
                 "sharded total size %llu", (unsigned long long)c->total_bytes);
        TU_CHECK(c->n_files == json_array_size(json_object_get(want, "shards")), "shard count");
        json_object_foreach(tens, name, w) {
            const st_tensor *t = st_checkpoint_find(c, name);
            TU_CHECK(t != NULL, "sharded: %s missing", name);
            if (!t) continue;
            const char *shard = json_string_value(json_object_get(w, "shard"));
            const char *base = strrchr(t->file, '/');
            TU_CHECK(shard && base && !strcmp(base + 1, shard), "%s in %s, reference says %s", name,
                     t->file, shard);
            TU_CHECK(!strcmp(st_dtype_name(t->dtype), json_string_value(json_object_get(w, "dtype"))) &&
                         (uint64_t)json_integer_value(json_object_get(w, "nbytes")) == t->end - t->begin,
                     "%s dtype/bytes", name);
        }
        st_checkpoint_close(&c);
    }
    json_decref(want);
}

int main(int argc, char **argv) {
    tmp = tu_tmpdir("st");
    if (!tmp) {
        fprintf(stderr, "cannot make a temporary folder\n");
        return 1;
    }
    test_round_trip();
    test_valid_edge_cases();
    test_malformed();
    test_sharded();
    if (argc > 1) test_reference_fixture(argv[1]);
    else printf("reference fixture: skipped (no FIXTURES_DIR argument)\n");
    tu_rmtree(tmp);
    free(tmp);
    printf("%s\n", tu_failures ? "FAILED" : "OK");
    return tu_failures ? 1 : 0;
}
