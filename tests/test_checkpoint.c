/* test_checkpoint.c: denoising checkpoints (worker/io/checkpoint.h).
 *   - a checkpoint reads back bit for bit (latents, sampler state, every field);
 *   - a second write keeps the first as PATH.prev; ck_load_latest takes the newest usable one:
 *     after a flipped byte in the newest it falls back to .prev (and says why), with neither it
 *     finds nothing;
 *   - refused, naming the reason: another spec, model, seed, step count, latent shape or state
 *     size, a file that is not a checkpoint;
 *   - every truncation and 2 000 flipped bytes are refused by the checksum before HDF5 reads
 *     them (no crash; label parser, so also under ASan/UBSan);
 *   - a full disk while writing (RLIMIT_FSIZE: the write fails with EFBIG) leaves the previous
 *     checkpoint whole and found;
 *   - ck_model_id changes when a config or a tensor header changes, and only then.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "test_util.h"

static ck_meta meta(int64_t step) {
    ck_meta m = {step, 6, 42, 0x1234abcd5678ef90ull, 0x0fedcba987654321ull, {16, 3, 8, 10}};
    return m;
}

static void fill(float *x, size_t n, unsigned char *s, size_t sb, uint64_t seed) {
    tu_rng r = tu_rng_new(seed);
    tu_fill_normal(&r, x, n, 1.0f);
    for (size_t k = 0; k < sb; k++) s[k] = (unsigned char)tu_next(&r);
}

static size_t file_size(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 ? (size_t)sb.st_size : 0;
}

static unsigned char *slurp(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    *n = file_size(p);
    unsigned char *b = malloc(*n ? *n : 1);
    if (b && fread(b, 1, *n, f) != *n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

static int notes;
static char last_note[1100];
static void note(void *ctx, const char *file, const char *why) {
    (void)ctx, (void)file;
    notes++;
    snprintf(last_note, sizeof last_note, "%s", why);
}

static void expect_refused(const char *path, const ck_meta *want, size_t sb, const char *text,
                           const char *what) {
    ck_data d;
    wf_err e = {0};
    wf_status st = ck_read(path, want, sb, &d, &e);
    TU_CHECK(st != WF_OK && strstr(e.msg, text), "%s: status %d, '%s' (want '%s')", what, st,
             e.msg, text);
    if (!st) ck_data_free(&d);
}

int main(void) {
    char *dir = tu_tmpdir("ckpt");
    WF_ASSERT(dir);
    char path[4200], prev[4300];
    snprintf(path, sizeof path, "%s/job-0.ckpt.h5", dir);
    snprintf(prev, sizeof prev, "%s.prev", path);
    const ck_meta m2 = meta(2), m4 = meta(4);
    const size_t n = 16 * 3 * 8 * 10, sb = 3 * n * 4 + 40;
    float *x2 = malloc(n * 4), *x4 = malloc(n * 4);
    unsigned char *s2 = malloc(sb), *s4 = malloc(sb);
    WF_ASSERT(x2 && x4 && s2 && s4);
    fill(x2, n, s2, sb, 1);
    fill(x4, n, s4, sb, 2);
    wf_err e;

    /* round trip */
    TU_CHECK(ck_write(path, &m2, x2, s2, sb, &e) == WF_OK, "write: %s", e.msg);
    ck_data d;
    TU_CHECK(ck_read(path, &m2, sb, &d, &e) == WF_OK && d.meta.step == 2 && d.n == n &&
                 d.state_bytes == sb && !memcmp(d.latents, x2, n * 4) && !memcmp(d.state, s2, sb),
             "read back: %s", e.msg);
    ck_data_free(&d);

    /* the second write keeps the first as .prev; the newest wins */
    TU_CHECK(ck_write(path, &m4, x4, s4, sb, &e) == WF_OK, "write 2: %s", e.msg);
    bool found = false;
    TU_CHECK(ck_load_latest(path, &m4, sb, &d, &found, note, NULL, &e) == WF_OK && found &&
                 d.meta.step == 4 && !memcmp(d.latents, x4, n * 4),
             "latest should be step 4");
    ck_data_free(&d);
    TU_CHECK(ck_read(prev, &m2, sb, &d, &e) == WF_OK && d.meta.step == 2, ".prev: %s", e.msg);
    ck_data_free(&d);

    /* mismatches */
    ck_meta w = m4;
    w.spec_hash ^= 1;
    expect_refused(path, &w, sb, "another the job spec", "spec");
    w = m4, w.model_id ^= 1;
    expect_refused(path, &w, sb, "another the model", "model");
    w = m4, w.seed = 43;
    expect_refused(path, &w, sb, "another the seed", "seed");
    w = m4, w.steps = 7;
    expect_refused(path, &w, sb, "another the number of steps", "steps");
    w = m4, w.shape[3] = 11;
    expect_refused(path, &w, sb, "/latents are not f32", "shape");
    expect_refused(path, &m4, sb + 4, "a sampler state of", "state size");
    char junk[4300];
    snprintf(junk, sizeof junk, "%s/junk.h5", dir);
    tu_write_file(junk, "not a checkpoint at all, not even close", 40);
    expect_refused(junk, &m4, sb, "checksum", "junk");

    /* truncations and flipped bytes never get past the checksum */
    size_t fn = 0;
    unsigned char *img = slurp(path, &fn);
    WF_ASSERT(img && fn > 100);
    char bad[4300];
    snprintf(bad, sizeof bad, "%s/bad.h5", dir);
    int passed = 0;
    for (size_t cut = 0; cut < fn; cut += 1 + cut / 64) {
        tu_write_file(bad, img, cut);
        ck_data t;
        wf_err te;
        if (ck_read(bad, &m4, sb, &t, &te) == WF_OK) {
            passed++;
            ck_data_free(&t);
        }
    }
    tu_rng rng = tu_rng_new(5);
    for (int it = 0; it < 2000; it++) {
        size_t at = tu_next(&rng) % fn;
        img[at] ^= (unsigned char)(1u << (tu_next(&rng) % 8));
        tu_write_file(bad, img, fn);
        ck_data t;
        wf_err te;
        if (ck_read(bad, &m4, sb, &t, &te) == WF_OK) {
            passed++;
            ck_data_free(&t);
        }
    }
    TU_CHECK(passed == 0, "%d damaged or truncated files were read", passed);
    free(img);

    /* a flipped byte in the newest: .prev is taken, and the refusal is told */
    img = slurp(path, &fn);
    WF_ASSERT(img);
    img[fn / 2] ^= 0x40;
    tu_write_file(path, img, fn);
    free(img);
    notes = 0;
    TU_CHECK(ck_load_latest(path, &m2, sb, &d, &found, note, NULL, &e) == WF_OK && found &&
                 d.meta.step == 2 && notes == 1 && strstr(last_note, "damaged"),
             "fallback to .prev: found %d, step %lld, notes %d '%s'", found,
             (long long)d.meta.step, notes, last_note);
    ck_data_free(&d);

    /* a full disk: the write fails, the previous checkpoint stays whole */
    TU_CHECK(ck_write(path, &m2, x2, s2, sb, &e) == WF_OK, "rewrite: %s", e.msg); /* prev: bad */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 4096;
    setrlimit(RLIMIT_FSIZE, &lim);
    wf_status st = ck_write(path, &m4, x4, s4, sb, &e);
    setrlimit(RLIMIT_FSIZE, &old);
    TU_CHECK(st != WF_OK, "a write past RLIMIT_FSIZE succeeded");
    TU_CHECK(ck_load_latest(path, &m2, sb, &d, &found, NULL, NULL, &e) == WF_OK && found &&
                 d.meta.step == 2 && !memcmp(d.latents, x2, n * 4),
             "after a full disk the step-2 checkpoint must be found");
    ck_data_free(&d);

    /* nothing there: a fresh start */
    unlink(path);
    unlink(prev);
    TU_CHECK(ck_load_latest(path, &m2, sb, &d, &found, NULL, NULL, &e) == WF_OK && !found,
             "no checkpoint should be found");

    /* the model's identity follows its configs */
    char mdir[4300], cfg[4400];
    snprintf(mdir, sizeof mdir, "%s/model", dir);
    snprintf(cfg, sizeof cfg, "%s/transformer", mdir);
    mkdir(mdir, 0755);
    mkdir(cfg, 0755);
    snprintf(cfg, sizeof cfg, "%s/transformer/config.json", mdir);
    tu_write_file(cfg, "{\"num_layers\": 2}", 17);
    uint64_t a = 0, b = 0, c = 0;
    TU_CHECK(ck_model_id(mdir, &a, &e) == WF_OK && ck_model_id(mdir, &b, &e) == WF_OK && a == b,
             "model id unstable: %s", e.msg);
    tu_write_file(cfg, "{\"num_layers\": 3}", 17);
    TU_CHECK(ck_model_id(mdir, &c, &e) == WF_OK && c != a, "model id blind to a config change");

    free(x2);
    free(x4);
    free(s2);
    free(s4);
    tu_rmtree(dir);
    free(dir);
    if (tu_failures) {
        printf("test_checkpoint: %d failures\n", tu_failures);
        return 1;
    }
    printf("test_checkpoint: OK\n");
    return 0;
}
