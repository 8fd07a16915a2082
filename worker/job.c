/* job.c: the local form of a job spec (see gen.h): the queue of `wanfarm generate` as
 * requests (prompt, seed, initial latents, outputs) and their output contexts, which rank writes
 * which job, the per-job output paths, the initial latents read from --latents and the prompts
 * read from --prompt-file. One job is in progress at a time on a rank (gen_job_begin ..
 * gen_job_end), so that memory stays flat over a queue of any length. The farm's coordinator
 * will build the same requests from its job records.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gen.h"
#include "cmds.h"
#include "safetensors.h"

/* Reads 'latents' [1, C, T, h, w] F32 and checks it against shape; every value must be finite. */
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
        size_t bad = pl_first_nonfinite(*out, t->numel);
        if (bad < t->numel) {
            size_t i = bad;
            const size_t x = i % (size_t)shape[3], y = i / (size_t)shape[3] % (size_t)shape[2];
            const size_t tt = i / (size_t)(shape[3] * shape[2]) % (size_t)shape[1];
            const size_t c = i / (size_t)(shape[3] * shape[2] * shape[1]);
            st = wf_fail(err, WF_EINVAL,
                         "--latents %s: 'latents' element %zu ([0, %zu, %zu, %zu, %zu]) is %g; "
                         "every value must be finite",
                         path, bad, c, tt, y, x, (double)(*out)[bad]);
            free(*out);
            *out = NULL;
        }
    }
    st_close(&f);
    return st;
}

/* The path of job k of n: base itself when n == 1, else "-k" before the extension. */
void gen_job_path(const char *base, int64_t k, int64_t n, char *out, size_t cap) {
    struct stat sb;
    if (n == 1 || (stat(base, &sb) == 0 && S_ISCHR(sb.st_mode))) { /* a device takes every video */
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

void gen_job_end(gen_run *g) {
    if (!g->active) return;
    gen_ctx *c = &g->ctx;
    if (c->mine) {
        g->videos++;
        g->frames += c->written;
    }
    vout_mp4_abort(&c->mp4);
    free(c->rgb8);
    free(c->kept);
    free((char *)c->mp4_path);
    free(g->lat_out);
    g->lat_out = NULL;
    gen_ckpt_end(g);
    memset(c, 0, sizeof *c);
    memset(&g->req, 0, sizeof g->req);
    g->active = false;
}

void gen_free_run(gen_run *g) { gen_job_end(g); }

/* Job k's request and output context. It is written here when `writer` and
 * k % replicas == replica (the worker world that runs it). */
wf_status gen_job_begin(gen_run *g, int64_t k, wf_err *err) {
    gen_job_end(g);
    const gen_opts *o = g->o;
    pl_request *r = &g->req;
    gen_ctx *c = &g->ctx;
    const size_t n = (size_t)(g->shape[0] * g->shape[1] * g->shape[2] * g->shape[3]);
    g->active = true;
    *r = *g->base;
    r->prompt = o->prompts[k / o->count];
    r->seed = g->base->seed + (uint64_t)(k % o->count);
    r->latents = g->lat0;
    c->json = o->json;
    c->rank = g->size > 1 ? g->rank : -1;
    c->job = g->njobs > 1 ? k : -1;
    c->gjob = k;
    c->fps = (int)o->fps;
    c->crf = (int)o->crf;
    r->progress = gen_on_progress;
    r->progress_ctx = c;
    r->skip_decode = !o->out && !o->frames_dir && !o->sheet;
    wf_status st = gen_ckpt_setup(g, k, err);
    if (st) return st;
    c->mine = g->writer && k % g->replicas == g->replica;
    if (!c->mine) return WF_OK;
    c->frames_dir = o->frames_dir;
    c->sheet = o->sheet != NULL;
    c->frames_hint = r->frames;
    if (o->out) {
        char path[4200];
        gen_job_path(o->out, k, g->njobs, path, sizeof path);
        if (!(c->mp4_path = strdup(path))) return wf_fail(err, WF_ENOMEM, "out of memory");
    }
    r->on_frames = gen_on_frames;
    r->frames_ctx = c;
    if (o->save_latents) {
        if (!(g->lat_out = malloc(n * sizeof(float))))
            return wf_fail(err, WF_ENOMEM, "out of memory for the latents of --save-latents");
        r->latents_out = g->lat_out;
    }
    return WF_OK;
}

/* ---- prompts ---- */

static wf_status grow(void **p, int64_t *cap, int64_t need, size_t elem, wf_err *err) {
    if (need <= *cap) return WF_OK;
    int64_t c = *cap ? 2 * *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return wf_fail(err, WF_ENOMEM, "out of memory for the prompts");
    *p = q;
    *cap = c;
    return WF_OK;
}

wf_status gen_add_prompt(gen_opts *o, const char *text, wf_err *err) {
    wf_status st = grow((void **)&o->prompts, &o->prompts_cap, o->nprompts + 1, sizeof *o->prompts,
                        err);
    if (st) return st;
    o->prompts[o->nprompts++] = text;
    return WF_OK;
}

wf_status gen_slurp(const char *path, char **out, size_t *n, wf_err *err) {
    *out = NULL;
    *n = 0;
    const bool in = !strcmp(path, "-");
    FILE *f = in ? stdin : fopen(path, "rb");
    if (!f)
        return wf_fail(err, WF_EIO, "--prompt-file %s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap + 1);
    wf_status st = WF_OK;
    if (!b) {
        st = wf_fail(err, WF_ENOMEM, "--prompt-file %s: out of memory", path);
        goto out;
    }
    for (;;) {
        if (len == cap) {
            if (cap >= GEN_PROMPT_FILE_MAX) {
                st = wf_fail(err, WF_EINVAL, "--prompt-file %s: more than %zu MiB; split it",
                             in ? "(stdin)" : path, GEN_PROMPT_FILE_MAX >> 20);
                goto out;
            }
            char *q = realloc(b, 2 * cap + 1);
            if (!q) {
                st = wf_fail(err, WF_ENOMEM, "--prompt-file %s: out of memory", path);
                goto out;
            }
            b = q;
            cap *= 2;
        }
        size_t got = fread(b + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        st = wf_fail(err, WF_EIO, "--prompt-file %s: read error: %s", in ? "(stdin)" : path,
                     strerror(errno));
        goto out;
    }
    b[len] = 0;
    *out = b;
    *n = len;
    b = NULL;
out:
    free(b);
    if (!in) fclose(f);
    return st;
}

wf_status gen_add_prompt_lines(gen_opts *o, const char *path, char *b, size_t n, wf_err *err) {
    wf_status st = grow((void **)&o->owned, &o->owned_cap, o->nowned + 1, sizeof *o->owned, err);
    if (st) {
        free(b);
        return st;
    }
    o->owned[o->nowned++] = b; /* freed by gen_free_opts, whatever happens next */
    const char *nul = memchr(b, 0, n);
    if (nul)
        return wf_fail(err, WF_EINVAL, "--prompt-file %s: holds a NUL byte (byte %zu); it must "
                       "be UTF-8 text, one prompt per line", path, (size_t)(nul - b));
    int64_t before = o->nprompts;
    for (char *line = b; line < b + n;) {
        char *nl = memchr(line, '\n', (size_t)(b + n - line));
        char *end = nl ? nl : b + n;
        if (end > line && end[-1] == '\r') end--; /* CRLF files */
        *end = 0;
        bool blank = true;
        for (const char *q = line; *q && blank; q++)
            blank = *q == ' ' || *q == '\t' || *q == '\v' || *q == '\f';
        if (!blank && (st = gen_add_prompt(o, line, err))) return st;
        line = nl ? nl + 1 : b + n;
    }
    if (o->nprompts == before)
        return wf_fail(err, WF_EINVAL, "--prompt-file %s: no prompt in it (every line is empty)",
                       path);
    return WF_OK;
}

wf_status gen_read_prompt_file(gen_opts *o, const char *path, wf_err *err) {
    char *b = NULL;
    size_t n = 0;
    wf_status st = gen_slurp(path, &b, &n, err);
    return st ? st : gen_add_prompt_lines(o, path, b, n, err);
}

void gen_free_opts(gen_opts *o) {
    for (int64_t i = 0; i < o->nowned; i++) free(o->owned[i]);
    free(o->owned);
    free(o->prompts);
    o->owned = NULL;
    o->prompts = NULL;
    o->nowned = o->owned_cap = o->nprompts = o->prompts_cap = 0;
}
