/* st_checkpoint.c: one namespace of tensors over a single file, a sharded index or a component
 * folder (see safetensors.h).
 *
 * Sharded index (`*.safetensors.index.json`, as transformers and diffusers write it):
 *   {"metadata": {...}, "weight_map": {"tensor name": "shard file name", ...}}
 * Shard names must be plain file names in the index's folder (no '/', not "." or ".."), so an
 * index cannot make us read outside its folder. Every tensor the index lists must be in its shard;
 * a tensor in two shards is an error; tensors a shard holds beyond the map are kept, as the
 * reference loaders keep them.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsin.h"
#include "safetensors.h"

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

void st_checkpoint_close(st_checkpoint **pc) {
    if (!pc || !*pc) return;
    st_checkpoint *c = *pc;
    for (size_t i = 0; i < c->n_files; i++) st_close(&c->files[i]);
    free(c->files);
    free(c->by_name);
    free(c->path);
    free(c);
    *pc = NULL;
}

static int cmp_ptr_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

/* Builds the sorted by_name table; rejects a name held by two files. */
static wf_status index_tensors(st_checkpoint *c, wf_err *err) {
    size_t n = 0;
    for (size_t i = 0; i < c->n_files; i++) n += c->files[i]->n_tensors;
    c->by_name = malloc((n ? n : 1) * sizeof *c->by_name);
    if (!c->by_name) return wf_fail(err, WF_ENOMEM, "%s: out of memory", c->path);
    c->n_tensors = 0;
    c->total_bytes = 0;
    for (size_t i = 0; i < c->n_files; i++)
        for (size_t j = 0; j < c->files[i]->n_tensors; j++) {
            const st_tensor *t = &c->files[i]->tensors[j];
            c->by_name[c->n_tensors++] = t;
            c->total_bytes += t->end - t->begin;
        }
    qsort(c->by_name, c->n_tensors, sizeof *c->by_name, cmp_ptr_name);
    for (size_t i = 1; i < c->n_tensors; i++)
        if (strcmp(c->by_name[i - 1]->name, c->by_name[i]->name) == 0)
            return wf_fail(err, WF_EFORMAT, "%s: tensor '%s' is in both %s and %s", c->path,
                           c->by_name[i]->name, c->by_name[i - 1]->file, c->by_name[i]->file);
    return WF_OK;
}

static bool plain_file_name(const char *s) {
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static wf_status open_index(st_checkpoint *c, const char *index_path, wf_err *err) {
    json_error_t je;
    json_t *root;
    wf_status st = fsin_json_load(index_path, JSON_REJECT_DUPLICATES, &root, &je, NULL, err);
    if (st == WF_EFORMAT)
        return wf_fail(err, WF_EFORMAT, "%s: not valid JSON: %s (line %d)", index_path, je.text,
                       je.line);
    if (st) return st;
    char *dir = strdup(index_path), *path = NULL;
    const char **shards = NULL;
    if (!dir) {
        st = wf_fail(err, WF_ENOMEM, "out of memory");
        goto out;
    }
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else strcpy(dir, ".");
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map)) {
        st = wf_fail(err, WF_EFORMAT, "%s: field 'weight_map' is missing or not an object",
                     index_path);
        goto out;
    }
    size_t nmap = json_object_size(map);
    shards = calloc(nmap ? nmap : 1, sizeof *shards);
    c->files = calloc(nmap ? nmap : 1, sizeof *c->files);
    path = malloc(strlen(dir) + 4096 + 2);
    if (!shards || !c->files || !path) {
        st = wf_fail(err, WF_ENOMEM, "out of memory");
        goto out;
    }
    const char *name;
    json_t *v;
    size_t n_shards = 0;
    json_object_foreach(map, name, v) {
        if (!json_is_string(v)) {
            st = wf_fail(err, WF_EFORMAT, "%s: weight_map['%s'] is not a string", index_path, name);
            goto out;
        }
        const char *f = json_string_value(v);
        if (!plain_file_name(f) || strlen(f) > 4096) {
            st = wf_fail(err, WF_EFORMAT,
                         "%s: weight_map['%s'] = \"%.200s\" is not a plain file name in the "
                         "index's folder",
                         index_path, name, f);
            goto out;
        }
        size_t k = 0;
        while (k < n_shards && strcmp(shards[k], f) != 0) k++;
        if (k == n_shards) {
            shards[n_shards++] = f;
            sprintf(path, "%s/%s", dir, f);
            if ((st = st_open(&c->files[c->n_files], path, err))) {
                wf_err_prefix(err, "%s lists shard %s: ", index_path, f);
                goto out;
            }
            c->n_files++;
        }
        const st_tensor *t = st_file_find(c->files[k], name);
        if (!t) {
            st = wf_fail(err, WF_EFORMAT, "%s: tensor '%s' is listed in shard %s but missing from it",
                         index_path, name, f);
            goto out;
        }
    }
    if (n_shards == 0) st = wf_fail(err, WF_EFORMAT, "%s: weight_map is empty", index_path);
out:
    free(path);
    free(shards);
    free(dir);
    json_decref(root);
    return st;
}

wf_status st_checkpoint_open(st_checkpoint **out, const char *path, wf_err *err) {
    *out = NULL;
    st_checkpoint *c = calloc(1, sizeof *c);
    if (!c) return wf_fail(err, WF_ENOMEM, "out of memory");
    wf_status st = WF_OK;
    char *found = NULL;
    if (is_dir(path)) {
        static const char *names[] = {
            "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.safetensors",
            "model.safetensors.index.json", "model.safetensors"};
        found = malloc(strlen(path) + 64);
        if (!found) {
            st = wf_fail(err, WF_ENOMEM, "out of memory");
            goto fail;
        }
        size_t i;
        for (i = 0; i < sizeof names / sizeof *names; i++) {
            sprintf(found, "%s/%s", path, names[i]);
            bool absent;
            /* a name that is there but is a FIFO, a folder or a loop is an error, not a miss */
            if (!(st = fsin_check(found, &absent, err))) break;
            if (!absent) goto fail;
            st = WF_OK;
        }
        if (i == sizeof names / sizeof *names) {
            st = wf_fail(err, WF_EIO,
                         "%s: no safetensors weights here (expected "
                         "diffusion_pytorch_model.safetensors[.index.json] or "
                         "model.safetensors[.index.json]; .bin pickles are not read)",
                         path);
            goto fail;
        }
        path = found;
    }
    c->path = strdup(path);
    if (!c->path) {
        st = wf_fail(err, WF_ENOMEM, "out of memory");
        goto fail;
    }
    if (ends_with(path, ".json")) {
        st = open_index(c, path, err);
    } else {
        c->files = calloc(1, sizeof *c->files);
        if (!c->files) st = wf_fail(err, WF_ENOMEM, "out of memory");
        else if (!(st = st_open(&c->files[0], path, err))) c->n_files = 1;
    }
    if (!st) st = index_tensors(c, err);
    if (st) goto fail;
    free(found);
    *out = c;
    return WF_OK;
fail:
    free(found);
    st_checkpoint_close(&c);
    return st;
}

const st_tensor *st_checkpoint_find(const st_checkpoint *c, const char *name) {
    st_tensor key = {.name = (char *)name};
    const st_tensor *pk = &key;
    const st_tensor **r = bsearch(&pk, c->by_name, c->n_tensors, sizeof *c->by_name, cmp_ptr_name);
    return r ? *r : NULL;
}

ptrdiff_t st_checkpoint_index(const st_checkpoint *c, const char *name) {
    size_t lo = 0, hi = c->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(c->by_name[mid]->name, name);
        if (r == 0) return (ptrdiff_t)mid;
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}
