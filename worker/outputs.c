/* outputs.c: the output preflight of `wanfarm generate` (see outputs.h): names resolved and
 * compared, then a probe file in each output folder, all before the model loads.
 * Tested by: tests/test_outputs.sh.
 */
#include "outputs.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fileio.h"

/* One output file of one video. */
typedef struct out_name {
    const char *opt;  /* "--out", ... */
    char *given;      /* the name as the video gets it (with -K) */
    char *canon;      /* resolved (fio_target) */
    int64_t job;      /* -1: one video */
    bool device;      /* an existing character device: may be shared */
} out_name;

typedef struct out_file_opt {
    const char *opt, *path;
    unsigned flags; /* FIO_STREAMABLE where the format can go to a FIFO */
} out_file_opt;

static int file_opts(const gen_opts *o, out_file_opt *f) {
    int n = 0;
    if (o->out) f[n++] = (out_file_opt){"--out", o->out, FIO_STREAMABLE};
    if (o->save_latents) f[n++] = (out_file_opt){"--save-latents", o->save_latents, 0};
    if (o->sheet) f[n++] = (out_file_opt){"--contact-sheet", o->sheet, FIO_STREAMABLE};
    return n;
}

/* The videos whose names are checked one by one: 0.., then the last. */
static int64_t checked_job(int64_t i, int64_t njobs) {
    if (njobs <= GEN_OUTPUTS_CHECKED_JOBS || i < GEN_OUTPUTS_CHECKED_JOBS - 1) return i;
    return njobs - 1;
}

static int64_t n_checked(int64_t njobs) {
    return njobs < GEN_OUTPUTS_CHECKED_JOBS ? njobs : GEN_OUTPUTS_CHECKED_JOBS;
}

static int cmp_canon(const void *a, const void *b) {
    return strcmp(((const out_name *)a)->canon, ((const out_name *)b)->canon);
}

/* "--out v.mp4" or "--out v.mp4 (video 3: v-2.mp4)". */
static void describe(const out_name *x, const char *base, char *s, size_t cap) {
    if (x->job < 0) snprintf(s, cap, "%s %s", x->opt, base);
    else snprintf(s, cap, "%s %s (video %lld: %s)", x->opt, base, (long long)x->job + 1, x->given);
}

/* The frames folder, resolved (it may not exist yet: its parent then), or NULL. */
static char *frames_dir_canon(const char *dir) {
    char *r = realpath(dir, NULL);
    if (r) return r;
    size_t n = strlen(dir);
    char *d = strdup(dir);
    if (!d) return NULL;
    while (n > 1 && d[n - 1] == '/') d[--n] = 0;
    char *slash = strrchr(d, '/');
    const char *base = slash ? slash + 1 : d;
    char *parent = slash ? (slash == d ? strdup("/") : strndup(d, (size_t)(slash - d))) : strdup(".");
    char *rp = parent ? realpath(parent, NULL) : NULL;
    char *out = NULL;
    if (rp && (out = malloc(strlen(rp) + strlen(base) + 2)))
        sprintf(out, "%s%s%s", rp, strcmp(rp, "/") ? "/" : "", base);
    free(rp);
    free(parent);
    free(d);
    return out;
}

/* digits: at least min of them at *s; advances *s. */
static bool skip_digits(const char **s, int min) {
    int n = 0;
    while (**s >= '0' && **s <= '9') (*s)++, n++;
    return n >= min;
}

/* A name that --frames-dir's PNGs take: frame_NNNNN.png or jobK_frame_NNNNN.png. */
static bool is_frame_name(const char *s) {
    if (!strncmp(s, "job", 3)) {
        s += 3;
        if (!skip_digits(&s, 1) || *s++ != '_') return false;
    }
    if (strncmp(s, "frame_", 6)) return false;
    s += 6;
    return skip_digits(&s, 5) && !strcmp(s, ".png");
}

wf_status gen_outputs_check_names(const gen_opts *o, int64_t njobs, wf_err *err) {
#ifndef WANFARM_HAVE_FFMPEG
    /* a build without FFmpeg (video_none.c) writes the .h5 latents only */
    const char *av = o->out ? "--out" : o->frames_dir ? "--frames-dir" : o->sheet ? "--contact-sheet"
                                                                                  : NULL;
    if (av)
        return wf_fail(err, WF_EUNSUPPORTED, "%s: built without FFmpeg: write .h5 latents "
                       "(--save-latents FILE.h5) or rebuild with -DWANFARM_FFMPEG=ON", av);
#endif
    out_file_opt f[3];
    int nf = file_opts(o, f);
    if (o->frames_dir && !*o->frames_dir)
        return wf_fail(err, WF_EINVAL, "--frames-dir: the folder name is empty");
    for (int i = 0; i < nf; i++)
        if (!*f[i].path) return wf_fail(err, WF_EINVAL, "%s: the file name is empty", f[i].opt);
    int64_t per = n_checked(njobs);
    out_name *names = calloc((size_t)(nf * per) + 1, sizeof *names);
    if (!names) return wf_fail(err, WF_ENOMEM, "out of memory");
    size_t nn = 0;
    wf_status st = WF_OK;
    char path[PATH_MAX + 64];
    for (int i = 0; i < nf && !st; i++)
        for (int64_t c = 0; c < per && !st; c++) {
            int64_t k = checked_job(c, njobs);
            gen_job_path(f[i].path, k, njobs, path, sizeof path);
            out_name *x = &names[nn];
            fio_kind kind;
            x->opt = f[i].opt;
            x->job = njobs > 1 ? k : -1;
            if (!(x->given = strdup(path))) {
                st = wf_fail(err, WF_ENOMEM, "out of memory");
                break;
            }
            nn++;
            if ((st = fio_target(path, f[i].flags, &x->canon, &kind, err))) {
                wf_err_prefix(err, "%s: ", f[i].opt);
                break;
            }
            x->device = kind == FIO_DEVICE;
        }
    if (st) goto out;
    /* one file for two outputs */
    qsort(names, nn, sizeof *names, cmp_canon);
    for (size_t i = 0; i + 1 < nn; i++) {
        const out_name *a = &names[i], *b = &names[i + 1];
        if (strcmp(a->canon, b->canon) || (a->device && b->device)) continue;
        char da[PATH_MAX + 128], db[PATH_MAX + 128];
        const char *base_a = a->opt, *base_b = b->opt;
        for (int j = 0; j < nf; j++) {
            if (!strcmp(f[j].opt, a->opt)) base_a = f[j].path;
            if (!strcmp(f[j].opt, b->opt)) base_b = f[j].path;
        }
        describe(a, base_a, da, sizeof da);
        describe(b, base_b, db, sizeof db);
        st = wf_fail(err, WF_EINVAL, "%s and %s are the same file (%s); give each output its own "
                     "name", da, db, a->canon);
        goto out;
    }
    /* a file output that is the frames folder or one of its PNGs */
    if (o->frames_dir) {
        char *fd = frames_dir_canon(o->frames_dir);
        size_t fl = fd ? strlen(fd) : 0;
        for (size_t i = 0; fd && i < nn && !st; i++) {
            const char *c = names[i].canon;
            if (!strcmp(c, fd))
                st = wf_fail(err, WF_EINVAL, "--frames-dir %s and %s %s are the same path (%s); "
                             "give each output its own name", o->frames_dir, names[i].opt,
                             names[i].given, fd);
            else if (!strncmp(c, fd, fl) && (c[fl] == '/' || (fl == 1 && fd[0] == '/')) &&
                     !strchr(c + fl + (c[fl] == '/'), '/') && is_frame_name(c + fl + (c[fl] == '/')))
                st = wf_fail(err, WF_EINVAL, "%s %s is a frame name of --frames-dir %s (it would be "
                             "overwritten by a PNG frame); give it another name", names[i].opt,
                             names[i].given, o->frames_dir);
        }
        free(fd);
    }
out:
    for (size_t i = 0; i < nn; i++) {
        free(names[i].given);
        free(names[i].canon);
    }
    free(names);
    return st;
}

wf_status gen_outputs_probe(const gen_opts *o, int64_t njobs, wf_err *err) {
    out_file_opt f[3];
    int nf = file_opts(o, f);
    char path[PATH_MAX + 64];
    wf_status st;
    /* the first and the last video's names (the last is the longest) */
    for (int i = 0; i < nf; i++)
        for (int64_t k = 0; k < njobs; k = (k == njobs - 1 ? njobs : njobs - 1)) {
            gen_job_path(f[i].path, k, njobs, path, sizeof path);
            if ((st = fio_probe(path, f[i].flags, err))) {
                wf_err_prefix(err, "%s: ", f[i].opt);
                return st;
            }
        }
    if (o->frames_dir) {
        if (njobs > 1)
            snprintf(path, sizeof path, "%s/job%lld_frame_00000.png", o->frames_dir,
                     (long long)(njobs - 1));
        else
            snprintf(path, sizeof path, "%s/frame_00000.png", o->frames_dir);
        if ((st = fio_probe(path, FIO_STREAMABLE, err))) {
            wf_err_prefix(err, "--frames-dir %s: ", o->frames_dir);
            return st;
        }
    }
    return WF_OK;
}
