/* job.c: the local form of a job spec (see gen.h): the queue of `wanfarm generate` as
 * requests (prompt, seed, initial latents, outputs) and their output contexts, which rank writes
 * which job, the per-job output paths, and the initial latents read from --latents. The farm's
 * coordinator will build the same requests from its job records.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"
#include "cmds.h"
#include "safetensors.h"

/* Reads 'latents' [1, C, T, h, w] F32 and checks it against shape. */
wf_status gen_read_latents(const char *path, const int64_t shape[4], float **out, wf_err *err) {
    st_file *f = NULL;
    wf_status st = st_open(&f, path, err);
    if (st) {
        wf_err_prefix(err, "--latents: ");
        return st;
    }
    const st_tensor *t = st_file_find(f, "latents");
    if (!t) {
        st = wf_fail(err, WF_EINVAL, "--latents %s: no tensor 'latents'", path);
    } else if (t->dtype != ST_F32) {
        st = wf_fail(err, WF_EINVAL, "--latents %s: 'latents' is %s, expected F32", path,
                     st_dtype_name(t->dtype));
    } else if (t->ndim != 5 || t->shape[0] != 1 || (int64_t)t->shape[1] != shape[0] ||
               (int64_t)t->shape[2] != shape[1] || (int64_t)t->shape[3] != shape[2] ||
               (int64_t)t->shape[4] != shape[3]) {
        st = wf_fail(err, WF_EINVAL,
                     "--latents %s: 'latents' must be [1, %lld, %lld, %lld, %lld] for this size "
                     "and frame count",
                     path, (long long)shape[0], (long long)shape[1], (long long)shape[2],
                     (long long)shape[3]);
    } else if (!(*out = malloc(t->numel * sizeof(float)))) {
        st = wf_fail(err, WF_ENOMEM, "out of memory");
    } else {
        memcpy(*out, t->data, t->numel * sizeof(float));
    }
    st_close(&f);
    return st;
}

/* The path of job k of n: base itself when n == 1, else "-k" before the extension. */
void gen_job_path(const char *base, int64_t k, int64_t n, char *out, size_t cap) {
    if (n == 1) {
        snprintf(out, cap, "%s", base);
        return;
    }
    const char *slash = strrchr(base, '/'), *dot = strrchr(base, '.');
    if (!dot || (slash && dot < slash) || dot == (slash ? slash + 1 : base)) {
        snprintf(out, cap, "%s-%lld", base, (long long)k);
        return;
    }
    snprintf(out, cap, "%.*s-%lld%s", (int)(dot - base), base, (long long)k, dot);
}

/* Frees the requests, their output contexts and the latents kept for --save-latents. */
void gen_free_run(gen_run *g) {
    for (int64_t k = 0; g->ctx && k < g->njobs; k++) {
        gen_ctx *c = &g->ctx[k];
        vout_mp4_abort(&c->mp4);
        free(c->rgb8);
        for (int64_t i = 0; i < c->n_kept; i++) free(c->kept[i]);
        free(c->kept);
        free((char *)c->mp4_path);
    }
    for (int64_t k = 0; g->lat_out && k < g->njobs; k++) free(g->lat_out[k]);
    free(g->lat_out);
    free(g->ctx);
    free(g->reqs);
}

/* The requests and their output contexts. Job k is written here when `writer` and
 * k % replicas == replica (the worker world that runs it). */
wf_status gen_setup_jobs(gen_run *g, const pl_request *base, const float *lat0, bool writer,
                         int replicas, int replica, wf_err *err) {
    const gen_opts *o = g->o;
    g->reqs = calloc((size_t)g->njobs, sizeof *g->reqs);
    g->ctx = calloc((size_t)g->njobs, sizeof *g->ctx);
    g->lat_out = calloc((size_t)g->njobs, sizeof *g->lat_out);
    if (!g->reqs || !g->ctx || !g->lat_out) return wf_fail(err, WF_ENOMEM, "out of memory");
    size_t n = (size_t)(g->shape[0] * g->shape[1] * g->shape[2] * g->shape[3]);
    for (int64_t k = 0; k < g->njobs; k++) {
        pl_request *r = &g->reqs[k];
        gen_ctx *c = &g->ctx[k];
        *r = *base;
        r->prompt = o->prompts[k / o->count];
        r->seed = base->seed + (uint64_t)(k % o->count);
        r->latents = lat0;
        c->json = o->json;
        c->rank = g->size > 1 ? g->rank : -1;
        c->job = g->njobs > 1 ? k : -1;
        c->gjob = k;
        c->fps = (int)o->fps;
        c->crf = (int)o->crf;
        r->progress = gen_on_progress;
        r->progress_ctx = c;
        r->skip_decode = !o->out && !o->frames_dir && !o->sheet;
        c->mine = writer && k % replicas == replica;
        if (!c->mine) continue;
        c->frames_dir = o->frames_dir;
        c->sheet = o->sheet != NULL;
        if (o->out) {
            char path[4200];
            gen_job_path(o->out, k, g->njobs, path, sizeof path);
            if (!(c->mp4_path = strdup(path))) return wf_fail(err, WF_ENOMEM, "out of memory");
        }
        r->on_frames = gen_on_frames;
        r->frames_ctx = c;
        if (o->save_latents) {
            if (!(g->lat_out[k] = malloc(n * sizeof(float)))) return wf_fail(err, WF_ENOMEM, "out of memory");
            r->latents_out = g->lat_out[k];
        }
    }
    return WF_OK;
}

