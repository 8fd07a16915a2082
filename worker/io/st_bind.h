/* st_bind.h: binding a component folder's checkpoint to a model's weights struct by a name table
 * (prefix st_bind_ / st_binder_).
 *
 * What it is: the part the three loaders (DiT, umT5, VAE) share. A loader describes its weights as
 * tables of st_field (where the wk_tensor sits in its struct, the checkpoint name under each
 * naming, the shape in symbols) and binds one module at a time (st_bind_fields): the tensor is
 * found by name, its shape checked exactly against the sizes the loader derived from config.json,
 * and the field becomes a view of the mapped bytes (st_tensor_view: no copy, storage dtype kept).
 * The binder remembers which tensors were bound, so st_binder_finish can refuse, by name, the ones
 * the config does not use. Messages name the folder, the tensor, its shape, the shape config.json
 * needs and the config values involved (the loader words those: missing, config, advice).
 * What it is not: a model description. Which naming a checkpoint uses, which fields a config
 * enables (the `when` bits) and the sizes behind the symbols are the loader's rules.
 * Tested by: the loaders' broken-checkpoint tests, which check these messages (tests/test_dit.c,
 *   tests/test_umt5.c, tests/test_vae.c, tests/test_cli.sh), also under the sanitizer build.
 */
#ifndef ST_BIND_H
#define ST_BIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"
#include "status.h"
#include "tensor.h"
#include "weights.h"

#define ST_BIND_MAX_DIMS 6 /* entries of st_field.shape */
#define ST_BIND_NAMINGS 2  /* 0: Diffusers / transformers (or the only naming), 1: official Wan */

/* One weight of a module. shape: per dimension a literal size (> 0), or a symbol (< 0) that
 * stands for dims[-symbol] of the module being bound; 0 ends the shape. */
typedef struct st_field {
    size_t offset;                     /* of the wk_tensor in the module's struct */
    const char *name[ST_BIND_NAMINGS]; /* after the scope, per naming; NULL: as name[0] */
    int shape[ST_BIND_MAX_DIMS];
    unsigned char when; /* 0: always bound; k: only when the module's `when` has bit k */
} st_field;

/* One instance of a table: where its fields go and what their symbols stand for. */
typedef struct st_module {
    void *base;                         /* the struct the fields' offsets point into */
    const char *scope[ST_BIND_NAMINGS]; /* before each name ("blocks.3."); NULL: scope[0], or "" */
    const int64_t *dims;                /* dims[-symbol]: the size a shape symbol stands for */
    size_t n_dims;
    unsigned when; /* bit k set: bind the fields whose `when` is k too */
} st_module;

typedef struct st_binder {
    const char *dir;   /* the component folder, as messages name it */
    char *config_path; /* <dir>/config.json */
    const st_checkpoint *ckpt;
    bool *used;         /* one per ckpt->by_name entry: bound (or accounted for by the loader) */
    int naming;         /* which st_field.name / st_module.scope to use */
    const char *prefix; /* before every name: "" or ComfyUI's "model.diffusion_model." */
    char missing[320];  /* a missing tensor's message ends "(<missing>)" */
    char config[256];   /* a wrong shape's message reads "but config.json (<config>) needs" */
    const char *advice; /* appended to a wrong shape's message; NULL: nothing */
    /* Every bound field, in binding order, for the one upload of the weights (weights.h):
     * keep_f32 set where the checkpoint name contains one of keep_f32_names (NULL-terminated;
     * NULL: none). st_binder_take_weights hands the list over. */
    const char *const *keep_f32_names;
    /* Scaled fp8 (ComfyUI's "fp8_scaled" files): when set, a bound 2-D f8e4m3 tensor "X.weight"
     * takes the one-element "X.scale_weight" beside it as its qscale (tensor.h), and the
     * file's "scaled_fp8" marker is accounted for. Only for loaders whose every 2-D weight is a
     * GEMM weight (the DiT). Any other scale (of a wider weight, an input scale) stays unused,
     * and st_binder_finish names it. */
    bool fp8_scales;
    wk_weight *bound;
    size_t n_bound, cap_bound;
} st_binder;

/* Starts binding the folder dir (kept, not copied): sets config_path; naming 0, no prefix. Only
 * fails for memory. st_binder_free must follow in every case. */
wf_status st_binder_init(st_binder *b, const char *dir, wf_err *err);
/* Opens the checkpoint in the folder into *ckpt (which the caller owns and closes; the binder
 * only reads it) and starts the record of bound tensors. */
wf_status st_binder_open(st_binder *b, st_checkpoint **ckpt, wf_err *err);
/* Frees what the binder allocated; accepts a zeroed or already freed binder. */
void st_binder_free(st_binder *b);

/* Binds fields[0..n) of one module: field f's tensor is prefix + scope + f->name (per naming),
 * its shape must equal f->shape resolved against mod->dims, and the view lands at
 * mod->base + f->offset. Fields with a `when` outside mod->when are skipped. WF_EFORMAT names a
 * missing tensor or a wrong shape; st_tensor_view's errors pass through. */
wf_status st_bind_fields(st_binder *b, const st_field *fields, size_t n, const st_module *mod,
                         wf_err *err);

/* The list of bound fields (caller frees *ws with free); the binder's copy is dropped. */
void st_binder_take_weights(st_binder *b, wk_weight **ws, size_t *n);
/* WF_OK when every tensor was bound; else WF_EFORMAT "<dir>: N tensor(s) the config does not
 * use, e.g. '<first>' (<why>)". */
wf_status st_binder_finish(const st_binder *b, const char *why, wf_err *err);

#endif
