/* cmd_inspect.c: `wanfarm inspect PATH`: the tensors and configs of a checkpoint.
 *
 * PATH is a .safetensors file, a *.safetensors.index.json, a component folder (config.json +
 * weights) or a whole Diffusers pipeline folder (model_index.json). Every file is validated as
 * it would be for generation; a bad one ends the command with one line naming the file and the
 * problem, and exit code 1.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmds.h"
#include "diffusers.h"
#include "fsin.h"
#include "safetensors.h"

typedef struct inspect_opts {
    bool summary;       /* counts only, no per-tensor rows */
    const char *filter; /* only tensors whose name contains this */
} inspect_opts;

static void print_checkpoint(const st_checkpoint *c, const inspect_opts *o, const char *indent) {
    uint64_t count[ST_DTYPE_COUNT] = {0};
    for (size_t i = 0; i < c->n_tensors; i++) count[c->by_name[i]->dtype]++;
    printf("%s%s: %zu tensors, %.2f MiB in %zu file%s (", indent, c->path, c->n_tensors,
           (double)c->total_bytes / (1 << 20), c->n_files, c->n_files == 1 ? "" : "s");
    int first = 1;
    for (int d = 0; d < ST_DTYPE_COUNT; d++)
        if (count[d]) {
            printf("%s%s %llu", first ? "" : ", ", st_dtype_name((st_dtype)d),
                   (unsigned long long)count[d]);
            first = 0;
        }
    printf("%s)\n", first ? "no tensors" : "");
    for (size_t f = 0; f < c->n_files; f++)
        for (size_t m = 0; m < c->files[f]->n_meta; m++)
            printf("%s  metadata%s%s: %s = %s\n", indent, c->n_files > 1 ? " of " : "",
                   c->n_files > 1 ? c->files[f]->path : "", c->files[f]->meta[2 * m],
                   c->files[f]->meta[2 * m + 1]);
    if (o->summary) return;
    int w = 4;
    for (size_t i = 0; i < c->n_tensors; i++) {
        int l = (int)strlen(c->by_name[i]->name);
        if (l > w && l < 100) w = l;
    }
    printf("%s  %-*s  %-7s  %-24s  %12s%s\n", indent, w, "name", "dtype", "shape", "bytes",
           c->n_files > 1 ? "  file" : "");
    for (size_t i = 0; i < c->n_tensors; i++) {
        const st_tensor *t = c->by_name[i];
        if (o->filter && !strstr(t->name, o->filter)) continue;
        char shape[256];
        size_t k = 0;
        k += (size_t)snprintf(shape, sizeof shape, "[");
        for (int d = 0; d < t->ndim && k < sizeof shape; d++)
            k += (size_t)snprintf(shape + k, sizeof shape - k, "%s%llu", d ? ", " : "",
                                  (unsigned long long)t->shape[d]);
        if (k < sizeof shape) snprintf(shape + k, sizeof shape - k, "]");
        const char *file = strrchr(t->file, '/');
        printf("%s  %-*s  %-7s  %-24s  %12llu%s%s\n", indent, w, t->name, st_dtype_name(t->dtype),
               shape, (unsigned long long)(t->end - t->begin), c->n_files > 1 ? "  " : "",
               c->n_files > 1 ? (file ? file + 1 : t->file) : "");
    }
}

static int inspect_weights(const char *path, const inspect_opts *o, const char *indent) {
    st_checkpoint *c;
    wf_err err;
    if (st_checkpoint_open(&c, path, &err)) {
        fprintf(stderr, "wanfarm inspect: %s\n", err.msg);
        return WF_EXIT_FAIL;
    }
    print_checkpoint(c, o, indent);
    st_checkpoint_close(&c);
    return WF_EXIT_OK;
}

/* Something is there (a symlink loop or an unreadable entry counts: its reader says what is
 * wrong with it, instead of the folder being taken for another kind). */
static bool exists(const char *dir, const char *name) {
    char p[4096];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &sb) == 0 || errno != ENOENT;
}

/* A component folder: config.json says what it is. */
static int inspect_component(const char *dir, const inspect_opts *o) {
    char p[4096];
    wf_err err = {0};
    wf_status st = WF_OK;
    snprintf(p, sizeof p, "%s/scheduler_config.json", dir);
    if (exists(dir, "scheduler_config.json")) {
        dfs_scheduler_config s;
        if (!(st = dfs_read_scheduler_config(p, &s, &err))) {
            dfs_print_scheduler(stdout, "", &s);
            return WF_EXIT_OK; /* a scheduler has no weights */
        }
        goto out;
    }
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_error_t je;
    json_t *root;
    /* fsin: a FIFO, a folder or a loop in place of config.json is refused without blocking */
    if ((st = fsin_json_load(p, 0, &root, &je, NULL, &err))) {
        if (st == WF_EIO) fprintf(stderr, "wanfarm inspect: %s\n", err.msg);
        else fprintf(stderr, "wanfarm inspect: %s: no readable config.json (%s)\n", dir, je.text);
        return WF_EXIT_FAIL;
    }
    const char *cls = json_string_value(json_object_get(root, "_class_name"));
    const char *mt = json_string_value(json_object_get(root, "model_type"));
    if (cls && !strcmp(cls, "WanTransformer3DModel")) {
        dfs_transformer_config t;
        if (!(st = dfs_read_transformer_config(p, &t, &err))) dfs_print_transformer(stdout, "", &t);
    } else if (cls && !strcmp(cls, "AutoencoderKLWan")) {
        dfs_vae_config v;
        if (!(st = dfs_read_vae_config(p, &v, &err))) dfs_print_vae(stdout, "", &v);
    } else if (mt && (!strcmp(mt, "umt5") || !strcmp(mt, "t5"))) {
        dfs_umt5_config u;
        if (!(st = dfs_read_umt5_config(p, &u, &err))) dfs_print_umt5(stdout, "", &u);
    } else {
        printf("%s: config of class %s (not a component wanfarm runs)\n", p,
               cls ? cls : mt ? mt : "unknown");
    }
    json_decref(root);
out:
    if (st) {
        fprintf(stderr, "wanfarm inspect: %s\n", err.msg);
        return WF_EXIT_FAIL;
    }
    return inspect_weights(dir, o, "");
}

static int inspect_pipeline(const char *dir, const inspect_opts *o) {
    dfs_pipeline *p;
    wf_err err;
    if (dfs_open(&p, dir, &err)) {
        fprintf(stderr, "wanfarm inspect: %s\n", err.msg);
        return WF_EXIT_FAIL;
    }
    dfs_print_pipeline(stdout, p);
    static const char *weights[] = {"transformer", "transformer_2", "vae", "text_encoder"};
    int rc = WF_EXIT_OK;
    for (size_t i = 0; i < sizeof weights / sizeof *weights && rc == WF_EXIT_OK; i++) {
        if (i == 1 && !p->has_transformer_2) continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", dir, weights[i]);
        printf("%s weights:\n", weights[i]);
        rc = inspect_weights(sub, o, "  ");
    }
    dfs_close(&p);
    return rc;
}

static void help(void) {
    printf("usage: wanfarm inspect [--summary] [--filter TEXT] PATH\n\n"
           "PATH is a .safetensors file, a *.safetensors.index.json (sharded), a component folder\n"
           "(config.json + weights) or a Diffusers pipeline folder (model_index.json).\n"
           "Prints each tensor's name, dtype, shape and bytes, and the parsed configs.\n\n"
           "  --summary      counts and totals only\n"
           "  --filter TEXT  only tensors whose name contains TEXT\n\n"
           "exit codes: 0 valid, 1 a file is bad (stderr names it and the problem), 2 usage\n");
}

int cmd_inspect(int argc, char **argv) {
    inspect_opts o = {0};
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            help();
            return WF_EXIT_OK;
        } else if (!strcmp(argv[i], "--summary")) {
            o.summary = true;
        } else if (!strcmp(argv[i], "--filter")) {
            if (++i == argc) {
                fprintf(stderr, "wanfarm inspect: --filter needs a value\n");
                return WF_EXIT_USAGE;
            }
            o.filter = argv[i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "wanfarm inspect: unknown option '%s' (see --help)\n", argv[i]);
            return WF_EXIT_USAGE;
        } else if (path) {
            fprintf(stderr, "wanfarm inspect: one PATH only ('%s' is extra)\n", argv[i]);
            return WF_EXIT_USAGE;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        fprintf(stderr, "wanfarm inspect: missing PATH (see --help)\n");
        return WF_EXIT_USAGE;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT) fprintf(stderr, "wanfarm inspect: %s: no such file or folder\n", path);
        else fprintf(stderr, "wanfarm inspect: %s: cannot open: %s\n", path, strerror(errno));
        return WF_EXIT_FAIL;
    }
    if (S_ISDIR(sb.st_mode)) {
        if (exists(path, "model_index.json")) return inspect_pipeline(path, &o);
        if (exists(path, "config.json") || exists(path, "scheduler_config.json"))
            return inspect_component(path, &o);
        return inspect_weights(path, &o, "");
    }
    return inspect_weights(path, &o, "");
}
