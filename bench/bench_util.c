/* bench_util.c: the helpers under the bench engine (see bench_util.h).
 * Run: through any bench (build/bench/bench_ops --op all --sizes small). */
#include "bench_util.h"

#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double bu_now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

uint64_t bu_rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double bu_rng_uniform(uint64_t *s) { return (double)(bu_rng_next(s) >> 11) * 0x1p-53; }

uint64_t bu_name_seed(const char *name) { /* FNV-1a: values do not depend on tensor order */
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    return h;
}

/* x[i] = mean + std * N(0, 1) (Box-Muller) */
void bu_fill_normal(float *x, size_t n, double mean, double std, uint64_t seed) {
    uint64_t s = seed;
    for (size_t i = 0; i < n; i += 2) {
        double u1 = bu_rng_uniform(&s), u2 = bu_rng_uniform(&s);
        double r = sqrt(-2.0 * log(1.0 - u1)), a = 2.0 * M_PI * u2;
        x[i] = (float)(mean + std * r * cos(a));
        if (i + 1 < n) x[i + 1] = (float)(mean + std * r * sin(a));
    }
}

int bu_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bu_mib(double bytes) { return bytes / (1024.0 * 1024.0); }

double bu_peak_rss_mib(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return NAN;
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

/* Removes the regular files in dir (only what this bench wrote there), then dir. */
void bu_remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1200];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

void bu_json_str_copy(json_t *o, const char *key, char *dst, size_t n) {
    const char *v = json_string_value(json_object_get(o, key));
    snprintf(dst, n, "%s", v ? v : "?");
}

/* A malloc'd copy of an F32 tensor of `f`, checking its shape. */
float *bu_load_f32(const st_file *f, const char *name, int ndim, const uint64_t *shape,
                       char *why, size_t nwhy) {
    const st_tensor *t = st_file_find(f, name);
    int ok = t && t->dtype == ST_F32 && t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
    if (!ok) {
        snprintf(why, nwhy, "%s: tensor '%s' missing or not F32 of the expected shape", f->path,
                 name);
        return NULL;
    }
    float *v = malloc((size_t)t->numel * sizeof *v + 1);
    if (!v) {
        snprintf(why, nwhy, "out of memory");
        return NULL;
    }
    memcpy(v, t->data, (size_t)t->numel * sizeof *v);
    return v;
}

double bu_rel_l2(const float *x, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)x[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1e-300));
}

json_t *bu_real_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

double bu_measure_peak(int threads) {
    const int n = 2048;
    float *a = malloc((size_t)n * n * sizeof(float)), *b = malloc((size_t)n * n * sizeof(float));
    float *c = malloc((size_t)n * n * sizeof(float));
    double best = 1e30;
    if (a && b && c) {
        bu_fill_normal(a, (size_t)n * n, 0.0, 1.0, 11);
        bu_fill_normal(b, (size_t)n * n, 0.0, 1.0, 12);
        openblas_set_num_threads(threads);
        /* best of up to 10 calls or 2 s after a warm-up call (as bench_ops) */
        double start = bu_now_s();
        for (int it = 0; it < 11 && (it < 3 || bu_now_s() - start < 2.0); it++) {
            double t0 = bu_now_s();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n,
                        0.0f, c, n);
            double t = bu_now_s() - t0;
            if (it > 0 && t < best) best = t;
        }
    }
    free(a);
    free(b);
    free(c);
    return best < 1e30 ? 2.0 * n * n * (double)n / best * 1e-9 : NAN;
}

int bu_find_python(const char *modules, char *py, size_t npy, char *why, size_t nwhy) {
    const char *env = getenv("WANFARM_TORCH_PYTHON"), *home = getenv("HOME");
    if (env && *env) {
        snprintf(py, npy, "%s", env);
    } else {
        snprintf(py, npy, "%s/.venvs/ref/bin/python", home ? home : "");
        if (access(py, X_OK) != 0) {
            snprintf(why, nwhy, "WANFARM_TORCH_PYTHON unset and %.200s not found", py);
            return -1;
        }
    }
    if (strchr(py, '\'')) {
        snprintf(why, nwhy, "the python path contains a quote: %.200s", py);
        return -1;
    }
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import %s' >/dev/null 2>&1", py, modules);
    if (system(cmd) != 0) {
        snprintf(why, nwhy, "%.200s cannot import %s", py, modules);
        return -1;
    }
    return 0;
}

json_t *bu_run_peer(const char *py, const char *bench_dir, const char *script, const char *args,
                    int threads, const char *key, char *why, size_t nwhy) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=%d '%s' '%s/%s' %s 2>&1", threads, py, bench_dir,
             script, args);
    FILE *f = popen(cmd, "r");
    if (!f) {
        snprintf(why, nwhy, "cannot start %.150s: %.80s", py, strerror(errno));
        return NULL;
    }
    char line[8192], last[256] = "";
    json_t *lines = json_array();
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *o = line[0] == '{' ? json_loads(line, 0, NULL) : NULL;
        if (json_is_object(o)) {
            found |= json_object_get(o, key) != NULL;
            json_array_append_new(lines, o);
            continue;
        }
        json_decref(o);
        line[strcspn(line, "\n")] = 0;
        if (*line) snprintf(last, sizeof last, "%.200s", line);
    }
    int rc = pclose(f);
    if (rc != 0 || !found) {
        snprintf(why, nwhy, "%s failed (status %d): %.200s", script, rc, last);
        json_decref(lines);
        return NULL;
    }
    return lines;
}

double bu_json_num_or_nan(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

int bu_write_in_child(const char *bench, int (*write)(const char *dir, const void *ctx),
                      const void *ctx, int keep, char *dir, size_t ndir, double *secs) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, ndir, "%s/%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", bench);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "%s: cannot create a folder %s: %s\n", bench, dir, strerror(errno));
        return 1;
    }
    double t0 = bu_now_s();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) _exit(write(dir, ctx));
    int wst = 0;
    if (pid < 0 || waitpid(pid, &wst, 0) != pid || !WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
        fprintf(stderr, "%s: writing the checkpoint into %s failed\n", bench, dir);
        if (!keep) bu_remove_dir(dir);
        return 1;
    }
    *secs = bu_now_s() - t0;
    return 0;
}

int bu_parse_latent(const char *v, int64_t cin, int64_t *F, int64_t *H, int64_t *W) {
    long long ch, f, h, w;
    char extra;
    int k = sscanf(v, "%lld,%lld,%lld,%lld%c", &ch, &f, &h, &w, &extra);
    if (k == 3) { /* F,H,W */
        w = h;
        h = f;
        f = ch;
    }
    if ((k != 3 && k != 4) || (k == 4 && ch != cin)) return -1;
    *F = f;
    *H = h;
    *W = w;
    return 0;
}

void bu_peer_run(bu_peer *p, const bu_peer_spec *s, const char *bench_dir, const char *dir,
                 int threads, int warm, int iters, const char *extra) {
    char py[1024], args[4096];
    p->num = NAN;
    if (bu_find_python(s->modules, py, sizeof py, p->why, sizeof p->why)) return;
    snprintf(args, sizeof args,
             "'%s' '%s/inputs.safetensors' '%s/torch_out.safetensors' --threads %d --warmup %d "
             "--iters %d%s",
             dir, dir, dir, threads, warm, iters, extra);
    json_t *lines = bu_run_peer(py, bench_dir, s->script, args, threads, s->need_key, p->why,
                                sizeof p->why), *o = NULL;
    for (size_t i = 0; lines && !o && i < json_array_size(lines); i++)
        if (json_object_get(json_array_get(lines, i), s->need_key)) o = json_array_get(lines, i);
    if (!o) {
        json_decref(lines);
        return;
    }
    bu_json_str_copy(o, "torch", p->torch, sizeof p->torch);
    bu_json_str_copy(o, s->lib_key, p->lib, sizeof p->lib);
    if (s->str_key) bu_json_str_copy(o, s->str_key, p->str, sizeof p->str);
    if (s->num_key) p->num = bu_json_num_or_nan(o, s->num_key);
    p->ms = bu_json_num_or_nan(o, "ms");
    p->load_s = bu_json_num_or_nan(o, "load_s");
    p->rss_mib = bu_json_num_or_nan(o, "peak_rss_mib");
    p->rss_import_mib = bu_json_num_or_nan(o, "rss_import_mib");
    json_decref(lines);
    p->ran = 1;
}

void *bu_random_tensor(const char *name, size_t n, double mean, double std, wk_dtype dt) {
    float *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return NULL;
    bu_fill_normal(v, n, mean, std, bu_name_seed(name));
    if (dt == WK_F32) return v;
    void *w = malloc((n ? n : 1) * wk_dtype_size(dt));
    if (w) wk_convert_from_f32(w, dt, v, n);
    free(v);
    return w;
}
