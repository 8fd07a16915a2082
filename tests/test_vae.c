/* test_vae.c: the Wan VAE (worker/vae_*.c) against Diffusers' AutoencoderKLWan.
 *
 * For each case in tests/fixtures/vae (made by make_vae_fixtures.py with diffusers, fp32 maths):
 *   - decode of the first 1..T latent frames (streaming, Diffusers' chunks) equals the same frames
 *     of Diffusers' decode within relative L2 1e-5. Why 1e-5: the fp32 reference itself is 0.6-2e-6
 *     from an fp64 run (case.json rel_l2_fp32_vs_fp64_run), and a shorter Diffusers run is up to
 *     1.5e-6 from the prefix of the longer one (rel_l2_prefix_run_vs_full_run); measured C errors
 *     are 1-3e-6, while a wrong formula (a dropped gamma, a swapped frame, a missed cache frame)
 *     costs 1e-2 or more;
 *   - the frame callback gets every frame once, in order, as each chunk completes, equal to the
 *     planar output; the whole-video path (VAE_WHOLE) gives the same frames within TOL_SAME (only
 *     the summation order differs; see its definition for why it is 5e-6 and not 1e-6);
 *   - tiled decode/encode (small tiles set as in the fixture's enable_tiling) equal Diffusers'
 *     tiled outputs within 1e-5;
 *   - encode of 1, 5 and 9 frames gives Diffusers' posterior mean within 1e-5; 7 frames give
 *     exactly the 5-frame result (frames past the last whole chunk are dropped);
 *   - first-chunk stage outputs (b8_m1222, w22_b4_m1222) within 1e-5, printed with --stages, to
 *     locate a mismatch;
 *   - the Wan2.2 layout (w22_b4_m1222: patchify, residual blocks, AvgDown3D/DupUp3D) passes the
 *     same checks;
 *   - 8-bit frames: our conversion of Diffusers' float frames equals its pil output exactly, and of
 *     our own frames differs by at most 1 level in a handful of values (those within ~1e-7 of a
 *     rounding boundary);
 *   - latent de-normalisation equals the pipeline's f32 expression bit for bit;
 *   - the arena size from the measuring pass is exactly what a run uses; streaming needs the same
 *     arena for 2 and T latent frames (memory does not grow with the video); a second run gives
 *     the same bits and does not grow the backend workspace;
 *   - the official Wan names (b4_m1244_r2, table from official_names.json, which the generator
 *     checked with diffusers' convert_wan_vae_to_diffusers) give bit-identical outputs;
 *   - broken checkpoints, configs and options are refused with messages naming the tensor or field.
 * Usage: test_vae FIXTURES_DIR [--stages]
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test_util.h"
#include "vae.h"

static const char *fixtures;
static bool show_stages;
static wk_backend *be;
static char *tmp;

#define TOL 1e-5 /* vs Diffusers (see the head of the file) */
/* Streaming vs whole video (and tiled streaming vs tiled whole): the same maths in another
 * summation order (GEMMs over 1 + 2 frames vs all frames). These small-width networks amplify fp32
 * rounding: Diffusers' own fp32 run is 1-2e-6 from its fp64 run, and its decode of a prefix is up
 * to 1.5e-6 from the prefix of the full decode (case.json). Measured here: 3e-7 (encode) to 2.4e-6
 * (decode of b4_m1244_r2). A cache bug (a wrong or missing history frame) costs 1e-2 or more. */
#define TOL_SAME 5e-6

/* ---- fixture access ---- */

typedef struct fx {
    const char *name;
    char dir[4096]; /* .../vae/<case> */
    st_file *io;
    vae_model *m;
} fx;

static const st_tensor *io_t(const fx *f, const char *name) { return st_file_find(f->io, name); }

static const float *io_f(const fx *f, const char *name) {
    const st_tensor *t = io_t(f, name);
    return t && t->dtype == ST_F32 ? (const float *)t->data : NULL;
}

/* rel L2 of a [C, n, HW] block against frames [0, n) of ref [C, Fref, HW] */
static double rel_l2_frames(const float *a, const float *ref, int64_t C, int64_t n, int64_t Fref,
                            int64_t HW) {
    double num = 0, den = 0;
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < n * HW; i++) {
            double r = ref[c * Fref * HW + i], d = (double)a[c * n * HW + i] - r;
            num += d * d;
            den += r * r;
        }
    return sqrt(num) / (den > 0 ? sqrt(den) : 1e-300);
}

/* ---- taps: stage outputs of chunk 0 against the fixture's [1, C, T0, H, W] ---- */

typedef struct tapper {
    const fx *f;
    const char *label;
    int seen;
    double worst;
    char worst_stage[32];
} tapper;

static void tap(void *ctx, const char *stage, int64_t chunk, const wk_tensor *t) {
    tapper *tp = ctx;
    const st_tensor *r = io_t(tp->f, stage);
    if (chunk != 0 || !r) return;
    TU_CHECK(r->ndim == 5, "%s: fixture tap %s", tp->label, stage);
    const int64_t C = (int64_t)r->shape[1], T0 = (int64_t)r->shape[2], H = (int64_t)r->shape[3],
                  W = (int64_t)r->shape[4];
    bool ok = t->ndim == 5 && t->shape[1] >= T0 && t->shape[2] == H && t->shape[3] == W &&
              t->shape[4] == C;
    TU_CHECK(ok, "%s %s: tap shape [%lld, %lld, %lld, %lld] vs fixture C %lld T %lld H %lld W %lld",
             tp->label, stage, (long long)t->shape[1], (long long)t->shape[2],
             (long long)t->shape[3], (long long)t->shape[4], (long long)C, (long long)T0,
             (long long)H, (long long)W);
    if (!ok) return;
    const float *x = t->data, *ref = (const float *)r->data;
    double num = 0, den = 0;
    for (int64_t c = 0; c < C; c++)
        for (int64_t p = 0; p < T0 * H * W; p++) {
            double d = (double)x[p * C + c] - ref[c * T0 * H * W + p];
            num += d * d;
            den += (double)ref[c * T0 * H * W + p] * ref[c * T0 * H * W + p];
        }
    double e = sqrt(num / den);
    if (show_stages) printf("    %-24s %-20s rel L2 %.3e\n", tp->label, stage, e);
    TU_CHECK(e <= TOL, "%s stage %s: rel L2 %.3e > %g", tp->label, stage, e, TOL);
    tp->seen++;
    if (e > tp->worst) {
        tp->worst = e;
        snprintf(tp->worst_stage, sizeof tp->worst_stage, "%s", stage);
    }
}

static int count_taps(const fx *f, const char *prefix) {
    int n = 0;
    for (size_t i = 0; i < f->io->n_tensors; i++)
        if (!strncmp(f->io->tensors[i].name, prefix, strlen(prefix))) n++;
    return n;
}

/* ---- frame callback: frames must come in order, once each, equal to the planar output ---- */

typedef struct frames_seen {
    int64_t next, calls, F, H, W;
    float *planar; /* [3, F, H, W], filled from the callback */
    int fail_at;   /* return an error at this call (0: never) */
} frames_seen;

static wf_status on_frames(void *ctx, int64_t first, int64_t n, int64_t H, int64_t W,
                           const float *rgb, wf_err *err) {
    frames_seen *s = ctx;
    s->calls++;
    if (s->fail_at && s->calls == s->fail_at) return wf_fail(err, WF_EIO, "test writer: disk full");
    TU_CHECK(first == s->next && n >= 1 && first + n <= s->F && H == s->H && W == s->W,
             "frames callback: got [%lld, %lld) %lldx%lld, expected from %lld of %lld",
             (long long)first, (long long)(first + n), (long long)H, (long long)W,
             (long long)s->next, (long long)s->F);
    if (first != s->next || first + n > s->F) return WF_OK;
    for (int64_t f = 0; f < n; f++)
        for (int64_t p = 0; p < H * W; p++)
            for (int c = 0; c < 3; c++)
                s->planar[((int64_t)c * s->F + first + f) * H * W + p] =
                    rgb[(f * H * W + p) * 3 + c];
    s->next = first + n;
    return WF_OK;
}

/* ---- running ---- */

typedef struct run_out {
    float *x; /* decode [3, F, H, W] / encode [z, T, h, w] */
    size_t n;
    size_t arena_bytes;
} run_out;

static run_out decode(const fx *f, int64_t T, vae_opts o, tapper *tp, frames_seen *fs) {
    run_out r = {0};
    const st_tensor *zt = io_t(f, "z");
    const int64_t zc = (int64_t)zt->shape[1], Tf = (int64_t)zt->shape[2], h = (int64_t)zt->shape[3],
                  w = (int64_t)zt->shape[4];
    /* z[:, :, :T] as its own contiguous [z, T, h, w] */
    float *z = malloc((size_t)(zc * T * h * w) * sizeof *z);
    for (int64_t c = 0; c < zc; c++)
        memcpy(z + c * T * h * w, (const float *)zt->data + c * Tf * h * w,
               (size_t)(T * h * w) * sizeof *z);
    wf_err err = {0};
    size_t bytes = 0;
    TU_CHECK(vae_decode_arena_bytes(f->m, T, h, w, &o, &bytes, &err) == WF_OK, "%s: %s", f->name,
             err.msg);
    wk_arena ar;
    TU_CHECK(wk_arena_init(&ar, "vae test", bytes ? bytes : 64, &err) == WF_OK, "%s", err.msg);
    const int64_t F = vae_decoded_frames(f->m, T), H = h * f->m->s, W = w * f->m->s;
    r.n = (size_t)(3 * F * H * W);
    r.x = malloc(r.n * sizeof *r.x);
    wf_status st = vae_decode(f->m, be, &ar, &o, z, T, h, w, r.x, fs ? on_frames : NULL, fs,
                              tp ? tap : NULL, tp, &err);
    TU_CHECK(st == WF_OK, "%s: decode T=%lld: %s", f->name, (long long)T, err.msg);
    TU_CHECK(ar.peak == bytes, "%s: decode used %zu arena bytes, the measuring pass said %zu",
             f->name, ar.peak, bytes);
    TU_CHECK(ar.used == 0, "%s: the arena is reset after the decode", f->name);
    r.arena_bytes = bytes;
    wk_arena_free(&ar);
    free(z);
    return r;
}

/* encodes frames [0, F) of the fixture's "sample" */
static run_out encode(const fx *f, int64_t F, vae_opts o, tapper *tp) {
    run_out r = {0};
    const st_tensor *s = io_t(f, "sample");
    const int64_t Fs = (int64_t)s->shape[2], H = (int64_t)s->shape[3], W = (int64_t)s->shape[4];
    float *v = malloc((size_t)(3 * F * H * W) * sizeof *v);
    for (int64_t c = 0; c < 3; c++)
        memcpy(v + c * F * H * W, (const float *)s->data + c * Fs * H * W,
               (size_t)(F * H * W) * sizeof *v);
    wf_err err = {0};
    size_t bytes = 0;
    TU_CHECK(vae_encode_arena_bytes(f->m, F, H, W, &o, &bytes, &err) == WF_OK, "%s: %s", f->name,
             err.msg);
    wk_arena ar;
    TU_CHECK(wk_arena_init(&ar, "vae test", bytes ? bytes : 64, &err) == WF_OK, "%s", err.msg);
    const int64_t T = vae_encoded_frames(f->m, F), h = vae_encoded_size(f->m, H),
                  w = vae_encoded_size(f->m, W);
    r.n = (size_t)(f->m->cfg.z_dim * T * h * w);
    r.x = malloc(r.n * sizeof *r.x);
    wf_status st = vae_encode(f->m, be, &ar, &o, v, F, H, W, r.x, tp ? tap : NULL, tp, &err);
    TU_CHECK(st == WF_OK, "%s: encode F=%lld: %s", f->name, (long long)F, err.msg);
    TU_CHECK(ar.peak == bytes, "%s: encode used %zu arena bytes, the measuring pass said %zu",
             f->name, ar.peak, bytes);
    r.arena_bytes = bytes;
    wk_arena_free(&ar);
    free(v);
    return r;
}

static vae_opts opts(vae_schedule s, const fx *f, bool tiled) {
    vae_opts o = vae_opts_default();
    o.schedule = s;
    if (tiled) {
        char p[4200];
        snprintf(p, sizeof p, "%s/case.json", f->dir);
        json_error_t je;
        json_t *doc = json_load_file(p, 0, &je);
        json_t *t = doc ? json_object_get(doc, "tiles") : NULL;
        TU_CHECK(t && json_is_object(t), "%s: case.json has no tiles", f->name);
        if (t && json_is_object(t)) {
            o.tiling.enabled = true;
            o.tiling.sample_min_h =
                json_integer_value(json_object_get(t, "tile_sample_min_height"));
            o.tiling.sample_min_w = json_integer_value(json_object_get(t, "tile_sample_min_width"));
            o.tiling.sample_stride_h =
                json_integer_value(json_object_get(t, "tile_sample_stride_height"));
            o.tiling.sample_stride_w =
                json_integer_value(json_object_get(t, "tile_sample_stride_width"));
        }
        json_decref(doc);
    }
    return o;
}

/* ---- one case ---- */

static void test_decode(fx *f) {
    const st_tensor *zt = io_t(f, "z"), *st = io_t(f, "sample");
    const int64_t T = (int64_t)zt->shape[2], Fs = (int64_t)st->shape[2];
    const int64_t HW = (int64_t)(st->shape[3] * st->shape[4]);
    const float *sample = io_f(f, "sample");
    const bool taps = count_taps(f, "dec.") > 0;
    size_t bytes2 = 0;
    for (int64_t k = 1; k <= T; k++) {
        const int64_t F = vae_decoded_frames(f->m, k);
        tapper tp = {.f = f, .label = "decode"};
        frames_seen fs = {.F = F, .H = (int64_t)st->shape[3], .W = (int64_t)st->shape[4]};
        fs.planar = calloc((size_t)(3 * F * HW), sizeof(float));
        if (show_stages && k == T && taps) printf("  %s decode, first chunk:\n", f->name);
        run_out r = decode(f, k, opts(VAE_STREAM, f, false), k == T && taps ? &tp : NULL, &fs);
        double e = rel_l2_frames(r.x, sample, 3, F, Fs, HW);
        TU_CHECK(e <= TOL, "%s: decode of %lld latent frames: rel L2 %.3e > %g", f->name,
                 (long long)k, e, TOL);
        TU_CHECK(fs.next == F && memcmp(fs.planar, r.x, r.n * sizeof(float)) == 0,
                 "%s: the frame callback saw %lld of %lld frames, or other values than the output",
                 f->name, (long long)fs.next, (long long)F);
        TU_CHECK(fs.calls == k, "%s: %lld frame callbacks for %lld chunks", f->name,
                 (long long)fs.calls, (long long)k);
        if (k == T && taps)
            TU_CHECK(tp.seen == count_taps(f, "dec."), "%s: %d decoder stages compared of %d",
                     f->name, tp.seen, count_taps(f, "dec."));
        printf("  %-12s decode  T=%lld -> %2lld frames %3lldx%-3lld streaming  rel L2 %.2e  arena "
               "%.1f KiB%s\n",
               f->name, (long long)k, (long long)F, (long long)st->shape[3],
               (long long)st->shape[4], e, (double)r.arena_bytes / 1024, k == T && taps ? "" : "");
        if (k == 2) bytes2 = r.arena_bytes;
        if (k == T) {
            TU_CHECK(k < 2 || r.arena_bytes == bytes2,
                     "%s: streaming decode of %lld latent frames needs %zu arena bytes, of 2 "
                     "frames %zu: "
                     "memory must not grow with the video",
                     f->name, (long long)k, r.arena_bytes, bytes2);
            /* the same frames without chunking, and a second run without workspace growth */
            unsigned grows = be->ws_grows;
            run_out r2 = decode(f, k, opts(VAE_STREAM, f, false), NULL, NULL);
            TU_CHECK(memcmp(r.x, r2.x, r.n * sizeof(float)) == 0,
                     "%s: a second decode must give the same bits", f->name);
            TU_CHECK(be->ws_grows == grows, "%s: a second decode grew the workspace", f->name);
            run_out w = decode(f, k, opts(VAE_WHOLE, f, false), NULL, NULL);
            double es = tu_rel_l2_f(w.x, r.x, r.n), ew = rel_l2_frames(w.x, sample, 3, F, Fs, HW);
            TU_CHECK(es <= TOL_SAME, "%s: whole-video decode vs streaming: rel L2 %.3e > %g",
                     f->name, es, TOL_SAME);
            TU_CHECK(ew <= TOL, "%s: whole-video decode: rel L2 %.3e > %g", f->name, ew, TOL);
            TU_CHECK(k < 2 || w.arena_bytes > r.arena_bytes,
                     "%s: the whole-video arena (%zu) should exceed the streaming one (%zu)",
                     f->name, w.arena_bytes, r.arena_bytes);
            printf("  %-12s decode  T=%lld whole video: vs streaming %.2e, vs Diffusers %.2e, "
                   "arena %.1f KiB\n",
                   f->name, (long long)k, es, ew, (double)w.arena_bytes / 1024);
            /* 8-bit frames */
            const st_tensor *rgb = io_t(f, "rgb8");
            const int64_t n8 = (int64_t)rgb->shape[0];
            uint8_t *ours = malloc((size_t)(n8 * HW * 3)), *theirs = malloc((size_t)(n8 * HW * 3));
            float *ref5 = malloc((size_t)(3 * n8 * HW) * sizeof(float)),
                  *our5 = malloc((size_t)(3 * n8 * HW) * sizeof(float));
            for (int c = 0; c < 3; c++) {
                memcpy(ref5 + c * n8 * HW, sample + c * Fs * HW, (size_t)(n8 * HW) * sizeof(float));
                memcpy(our5 + c * n8 * HW, r.x + c * F * HW, (size_t)(n8 * HW) * sizeof(float));
            }
            vae_to_rgb8_planar(ref5, n8, (int64_t)st->shape[3], (int64_t)st->shape[4], theirs);
            TU_CHECK(memcmp(theirs, rgb->data, (size_t)(n8 * HW * 3)) == 0,
                     "%s: 8-bit conversion of Diffusers' frames differs from its pil output",
                     f->name);
            vae_to_rgb8_planar(our5, n8, (int64_t)st->shape[3], (int64_t)st->shape[4], ours);
            int ndiff = 0, maxd = 0;
            for (int64_t i = 0; i < n8 * HW * 3; i++) {
                int d = abs((int)ours[i] - (int)((const uint8_t *)rgb->data)[i]);
                ndiff += d != 0;
                if (d > maxd) maxd = d;
            }
            TU_CHECK(maxd <= 1 && ndiff <= 8,
                     "%s: our 8-bit frames differ from pil in %d values (max %d)", f->name, ndiff,
                     maxd);
            printf("  %-12s rgb8    %lld frames: Diffusers' floats convert exactly; ours differ in "
                   "%d of %lld values (max %d)\n",
                   f->name, (long long)n8, ndiff, (long long)(n8 * HW * 3), maxd);
            free(ours);
            free(theirs);
            free(ref5);
            free(our5);
            free(r2.x);
            free(w.x);
        }
        free(r.x);
        free(fs.planar);
    }
    const st_tensor *tt = io_t(f, "sample_tiled");
    if (!tt) return;
    const int64_t Tt = (int64_t)((tt->shape[2] - 1) / f->m->s_t + 1), Ft = (int64_t)tt->shape[2];
    for (int64_t k = 1; k <= Tt; k++) {
        const int64_t F = vae_decoded_frames(f->m, k);
        frames_seen fs = {.F = F, .H = (int64_t)tt->shape[3], .W = (int64_t)tt->shape[4]};
        fs.planar = calloc((size_t)(3 * F * HW), sizeof(float));
        run_out r = decode(f, k, opts(VAE_STREAM, f, true), NULL, &fs);
        double e = rel_l2_frames(r.x, (const float *)tt->data, 3, F, Ft, HW);
        double eu = rel_l2_frames(r.x, sample, 3, F, Fs, HW);
        TU_CHECK(e <= TOL, "%s: tiled decode of %lld latent frames: rel L2 %.3e > %g", f->name,
                 (long long)k, e, TOL);
        TU_CHECK(eu > 1e-3,
                 "%s: the tiled decode equals the untiled one (%.2e): tiling was not used", f->name,
                 eu);
        TU_CHECK(fs.next == F && memcmp(fs.planar, r.x, r.n * sizeof(float)) == 0,
                 "%s: tiled: the frame callback saw %lld of %lld frames, or other values", f->name,
                 (long long)fs.next, (long long)F);
        run_out w = decode(f, k, opts(VAE_WHOLE, f, true), NULL, NULL);
        double es = tu_rel_l2_f(w.x, r.x, r.n);
        TU_CHECK(es <= TOL_SAME, "%s: tiled whole-video vs streaming: rel L2 %.3e", f->name, es);
        printf("  %-12s decode  T=%lld -> %2lld frames tiled      rel L2 %.2e  (whole video %.2e; "
               "untiled differs by %.2e) arena %.1f KiB\n",
               f->name, (long long)k, (long long)F, e, es, eu, (double)r.arena_bytes / 1024);
        free(r.x);
        free(w.x);
        free(fs.planar);
    }
}

static void test_encode(fx *f) {
    const st_tensor *mt = io_t(f, "enc_mean");
    const int64_t zc = (int64_t)mt->shape[1], Tm = (int64_t)mt->shape[2];
    const int64_t hw = (int64_t)(mt->shape[3] * mt->shape[4]);
    const int64_t Fe = 1 + 4 * ((Tm - 1) / (4 / f->m->s_t));
    const bool taps = count_taps(f, "enc.") > 0;
    for (int tiled = 0; tiled < 2; tiled++) {
        const st_tensor *ref = io_t(f, tiled ? "enc_mean_tiled" : "enc_mean");
        if (!ref) continue;
        run_out five = {0};
        for (int64_t F = 1; F <= Fe; F += 4) {
            const int64_t T = vae_encoded_frames(f->m, F);
            tapper tp = {.f = f, .label = "encode"};
            if (show_stages && F == Fe && taps && !tiled)
                printf("  %s encode, first chunk:\n", f->name);
            run_out r =
                encode(f, F, opts(VAE_STREAM, f, tiled), F == Fe && taps && !tiled ? &tp : NULL);
            double e = rel_l2_frames(r.x, (const float *)ref->data, zc, T, Tm, hw);
            TU_CHECK(e <= TOL, "%s: %sencode of %lld frames: rel L2 %.3e > %g", f->name,
                     tiled ? "tiled " : "", (long long)F, e, TOL);
            if (F == Fe && taps && !tiled)
                TU_CHECK(tp.seen == count_taps(f, "enc."), "%s: %d encoder stages compared of %d",
                         f->name, tp.seen, count_taps(f, "enc."));
            printf("  %-12s encode  F=%lld -> %lld latent frames %s rel L2 %.2e  arena %.1f KiB\n",
                   f->name, (long long)F, (long long)T, tiled ? "tiled    " : "streaming", e,
                   (double)r.arena_bytes / 1024);
            if (F == 5) {
                five = r;
                r.x = NULL;
                /* 7 frames: the last two are dropped, exactly as Diffusers drops them */
                for (int whole = 0; whole < 2; whole++) {
                    const vae_schedule sc = whole ? VAE_WHOLE : VAE_STREAM;
                    run_out a5 = encode(f, 5, opts(sc, f, tiled), NULL),
                            a7 = encode(f, 7, opts(sc, f, tiled), NULL);
                    TU_CHECK(a7.n == a5.n && memcmp(a7.x, a5.x, a5.n * sizeof(float)) == 0,
                             "%s: %s encode of 7 frames must equal encode of 5", f->name,
                             whole ? "whole-video" : "streaming");
                    free(a5.x);
                    free(a7.x);
                }
            }
            if (F == Fe) {
                run_out w = encode(f, F, opts(VAE_WHOLE, f, tiled), NULL);
                double es = tu_rel_l2_f(w.x, r.x, r.n);
                TU_CHECK(es <= TOL_SAME, "%s: %swhole-video encode vs streaming: rel L2 %.3e",
                         f->name, tiled ? "tiled " : "", es);
                printf("  %-12s encode  F=%lld whole video %s vs streaming %.2e\n", f->name,
                       (long long)F, tiled ? "(tiled)" : "", es);
                free(w.x);
            }
            free(r.x);
        }
        free(five.x);
    }
}

static void test_latents(fx *f) {
    const st_tensor *zm = io_t(f, "z_model");
    float *z = malloc(zm->numel * sizeof *z);
    memcpy(z, zm->data, zm->numel * sizeof *z);
    vae_latents_denormalize(&f->m->cfg, z, (int64_t)(zm->numel / (size_t)f->m->cfg.z_dim));
    TU_CHECK(memcmp(z, io_f(f, "z"), zm->numel * sizeof *z) == 0,
             "%s: de-normalised latents differ from the pipeline's f32 expression", f->name);
    vae_latents_normalize(&f->m->cfg, z, (int64_t)(zm->numel / (size_t)f->m->cfg.z_dim));
    TU_CHECK(tu_rel_l2_f(z, io_f(f, "z_model"), zm->numel) < 1e-6, "%s: normalize does not invert",
             f->name);
    free(z);
}

/* ---- official names: a copy of the checkpoint renamed with the generator's verified table ---- */

static void test_official(fx *f) {
    char p[4300], dst[4200];
    snprintf(p, sizeof p, "%s/official_names.json", f->dir);
    json_error_t je;
    json_t *names = json_load_file(p, 0, &je);
    if (!names) return;
    snprintf(dst, sizeof dst, "%s/official", tmp);
    mkdir(dst, 0755);
    const st_checkpoint *c = f->m->ckpt;
    st_item *items = calloc(c->n_tensors, sizeof *items);
    for (size_t i = 0; i < c->n_tensors; i++) {
        const st_tensor *t = c->by_name[i];
        const char *on = json_string_value(json_object_get(names, t->name));
        TU_CHECK(on != NULL, "official_names.json lacks %s", t->name);
        items[i] = (st_item){on ? on : t->name, t->dtype, t->ndim, t->shape, t->data};
    }
    wf_err err;
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model.safetensors", dst);
    TU_CHECK(st_write(p, items, c->n_tensors, NULL, 0, &err) == WF_OK, "%s", err.msg);
    free(items);
    json_decref(names);
    char src[4300], cfg[4300];
    snprintf(src, sizeof src, "%s/vae/config.json", f->dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dst);
    FILE *in = fopen(src, "rb");
    char buf[8192];
    size_t len = fread(buf, 1, sizeof buf, in);
    fclose(in);
    tu_write_file(cfg, buf, len);
    fx o = *f;
    o.m = NULL;
    TU_CHECK(vae_load(&o.m, dst, &err) == WF_OK, "official names: %s", err.msg);
    if (!o.m) return;
    TU_CHECK(o.m->names == VAE_NAMES_OFFICIAL, "official names not detected");
    const int64_t T = (int64_t)io_t(f, "z")->shape[2];
    run_out a = decode(f, T, opts(VAE_STREAM, f, false), NULL, NULL),
            b = decode(&o, T, opts(VAE_STREAM, f, false), NULL, NULL);
    TU_CHECK(a.n == b.n && memcmp(a.x, b.x, a.n * sizeof(float)) == 0,
             "official names must decode exactly like Diffusers names");
    run_out ea = encode(f, 5, opts(VAE_STREAM, f, false), NULL),
            eb = encode(&o, 5, opts(VAE_STREAM, f, false), NULL);
    TU_CHECK(ea.n == eb.n && memcmp(ea.x, eb.x, ea.n * sizeof(float)) == 0,
             "official names must encode exactly like Diffusers names");
    printf("  %-12s official Wan names: decode and encode bit-identical\n", f->name);
    free(a.x);
    free(b.x);
    free(ea.x);
    free(eb.x);
    vae_free(&o.m);
}

/* ---- broken checkpoints ---- */

typedef int (*item_edit)(st_item *it, void *ctx); /* returns 0 to drop the item */

/* A copy of case `f`'s vae/ in tmp/bad with `edit` applied; config.json with `from` replaced by
 * `to` (when from is not NULL); an extra tensor named `extra` (a copy of quant_conv.bias). */
static void write_bad(const fx *f, const char *from, const char *to, item_edit edit, void *ctx,
                      const char *extra) {
    char dst[4200], p[4300];
    snprintf(dst, sizeof dst, "%s/bad", tmp);
    tu_rmtree(dst);
    mkdir(dst, 0755);
    const st_checkpoint *c = f->m->ckpt;
    st_item *items = calloc(c->n_tensors + 1, sizeof *items);
    size_t n = 0;
    for (size_t i = 0; i < c->n_tensors; i++) {
        const st_tensor *t = c->by_name[i];
        items[n] = (st_item){t->name, t->dtype, t->ndim, t->shape, t->data};
        if (!edit || edit(&items[n], ctx)) n++;
    }
    if (extra) {
        const st_tensor *t = st_checkpoint_find(c, "quant_conv.bias");
        items[n++] = (st_item){extra, t->dtype, t->ndim, t->shape, t->data};
    }
    wf_err err;
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model.safetensors", dst);
    if (st_write(p, items, n, NULL, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    free(items);
    char src[4300];
    snprintf(src, sizeof src, "%s/vae/config.json", f->dir);
    FILE *in = fopen(src, "rb");
    char buf[8192], out[8400];
    size_t len = fread(buf, 1, sizeof buf - 1, in);
    fclose(in);
    buf[len] = 0;
    const char *k = from ? strstr(buf, from) : NULL;
    TU_CHECK(!from || k, "config.json lacks '%s'", from);
    if (k)
        snprintf(out, sizeof out, "%.*s%s%s", (int)(k - buf), buf, to, k + strlen(from));
    else
        snprintf(out, sizeof out, "%s", buf);
    snprintf(p, sizeof p, "%s/config.json", dst);
    tu_write_file(p, out, strlen(out));
}

static void expect_load_error(const char *what, wf_status want, const char *needle) {
    char d[4200];
    snprintf(d, sizeof d, "%s/bad", tmp);
    vae_model *m = NULL;
    wf_err err = {0};
    wf_status st = vae_load(&m, d, &err);
    TU_CHECK(st == want && m == NULL, "%s: status %d (want %d)", what, (int)st, (int)want);
    TU_CHECK(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, needle);
    vae_free(&m);
}

static int drop_named(st_item *it, void *ctx) { return strcmp(it->name, ctx) != 0; }

static uint64_t narrow_shape[5];
static int narrow(st_item *it, void *ctx) { /* claim one output row fewer */
    if (strcmp(it->name, ctx) == 0) {
        memcpy(narrow_shape, it->shape, (size_t)it->ndim * sizeof *narrow_shape);
        narrow_shape[0]--;
        it->shape = narrow_shape;
    }
    return 1;
}

static void test_broken(fx *f) {
    write_bad(f, NULL, NULL, drop_named, "decoder.up_blocks.1.resnets.0.norm2.gamma", NULL);
    expect_load_error("missing tensor", WF_EFORMAT,
                      "tensor 'decoder.up_blocks.1.resnets.0.norm2.gamma' is missing");
    write_bad(f, NULL, NULL, narrow, "encoder.down_blocks.2.conv1.weight", NULL);
    expect_load_error("wrong shape", WF_EFORMAT,
                      "tensor 'encoder.down_blocks.2.conv1.weight' has shape [15, 8, 3, 3, 3], but "
                      "config.json (base_dim 8");
    write_bad(f, NULL, NULL, NULL, NULL, "decoder.up_blocks.9.resnets.0.conv1.bias");
    expect_load_error("extra tensor", WF_EFORMAT,
                      "config does not use, e.g. 'decoder.up_blocks.9.resnets.0.conv1.bias'");
    write_bad(f, "\"base_dim\": 8", "\"base_dim\": 16", NULL, NULL, NULL);
    expect_load_error(
        "config base_dim disagrees", WF_EFORMAT,
        "tensor 'encoder.conv_in.weight' has shape [8, 3, 3, 3, 3], but config.json (base_dim 16");
    write_bad(f, "\"num_res_blocks\": 1", "\"num_res_blocks\": 2", NULL, NULL, NULL);
    expect_load_error("config num_res_blocks too large", WF_EFORMAT, "is missing (config.json:");
    write_bad(f, "\"decoder_base_dim\": null", "\"decoder_base_dim\": 16", NULL, NULL, NULL);
    expect_load_error(
        "config decoder_base_dim disagrees", WF_EFORMAT,
        "tensor 'decoder.conv_in.weight' has shape [16, 16, 3, 3, 3], but config.json "
        "(base_dim 8, decoder_base_dim 16, z_dim 16, dim_mult [1, 2, 2, 2], "
        "num_res_blocks 1, is_residual false) needs [32, 16, 3, 3, 3]");
    write_bad(f, "\"z_dim\": 16", "\"z_dim\": 8", NULL, NULL, NULL);
    expect_load_error("config z_dim disagrees with latents_mean", WF_EFORMAT,
                      "'latents_mean' must have 8 entries");
    write_bad(f, "\"is_residual\": false", "\"is_residual\": true", NULL, NULL, NULL);
    expect_load_error(
        "is_residual with Wan2.1 weights", WF_EFORMAT,
        "tensor 'encoder.down_blocks.0.resnets.0.norm1.gamma' is missing (config.json: "
        "base_dim 8, decoder_base_dim 8, z_dim 16, dim_mult [1, 2, 2, 2], num_res_blocks 1, "
        "is_residual true)");
    write_bad(f, "\"in_channels\": 3", "\"in_channels\": 12", NULL, NULL, NULL);
    expect_load_error("in_channels without patch_size", WF_EUNSUPPORTED,
                      "needs 3 * patch_size^2 = 3");
    write_bad(f, NULL, NULL, drop_named, "decoder.conv_in.weight", NULL);
    expect_load_error("not a Wan VAE", WF_EFORMAT, "not a Wan VAE checkpoint");

    /* options, sizes, arena, callback failures */
    wf_err err;
    vae_opts o = opts(VAE_STREAM, f, true);
    o.tiling.sample_stride_w = 12;
    TU_CHECK(vae_check_opts(f->m, &o, &err) == WF_EINVAL &&
                 strstr(err.msg, "tile_sample_stride_width = 12"),
             "tile stride not a multiple of 8: %s", err.msg);
    o = opts(VAE_STREAM, f, true);
    o.tiling.sample_min_h = 8;
    o.tiling.sample_stride_h = 16;
    TU_CHECK(vae_check_opts(f->m, &o, &err) == WF_EINVAL && strstr(err.msg, "at least the stride"),
             "tile smaller than its stride: %s", err.msg);
    o = vae_opts_default();
    size_t bytes;
    TU_CHECK(vae_encode_arena_bytes(f->m, 5, 4, 16, &o, &bytes, &err) == WF_EINVAL &&
                 strstr(err.msg, "resample.1.weight") && strstr(err.msg, "too small"),
             "a 4-pixel-high video is too small for 3 downsamplings: %s", err.msg);
    TU_CHECK(vae_decode_arena_bytes(f->m, 0, 4, 6, &o, &bytes, &err) == WF_EINVAL,
             "T = 0 is refused");
    wk_arena small;
    wk_arena_init(&small, "too small", 4096, &err);
    float dummy[16 * 24] = {0}, out[3 * 32 * 48];
    TU_CHECK(vae_decode(f->m, be, &small, &o, dummy, 1, 4, 6, out, NULL, NULL, NULL, NULL, &err) ==
                     WF_ENOMEM &&
                 strstr(err.msg, "too small"),
             "a too-small arena is refused: %s", err.msg);
    TU_CHECK(small.used == 0, "the arena is reset after a failure");
    wk_arena_free(&small);
    frames_seen fs = {.F = 5, .H = 32, .W = 48, .fail_at = 2};
    fs.planar = calloc(3 * 5 * 32 * 48, sizeof(float));
    vae_decode_arena_bytes(f->m, 2, 4, 6, &o, &bytes, &err);
    wk_arena ar;
    wk_arena_init(&ar, "vae test", bytes, &err);
    float z2[16 * 2 * 24];
    for (int i = 0; i < 16 * 2 * 24; i++) z2[i] = (float)((i * 37) % 11) / 5.0f - 1.0f;
    TU_CHECK(vae_decode(f->m, be, &ar, &o, z2, 2, 4, 6, NULL, on_frames, &fs, NULL, NULL, &err) ==
                     WF_EIO &&
                 strstr(err.msg, "frames 1..4") && strstr(err.msg, "disk full"),
             "a failing frame callback stops the decode: %s", err.msg);
    wk_arena_free(&ar);
    free(fs.planar);
}

static void run_case(const char *name) {
    fx f = {.name = name};
    snprintf(f.dir, sizeof f.dir, "%s/vae/%s", fixtures, name);
    char p[4200];
    wf_err err = {0};
    snprintf(p, sizeof p, "%s/io.safetensors", f.dir);
    TU_CHECK(st_open(&f.io, p, &err) == WF_OK, "%s: %s", name, err.msg);
    snprintf(p, sizeof p, "%s/vae", f.dir);
    TU_CHECK(vae_load(&f.m, p, &err) == WF_OK, "%s: load: %s", name, err.msg);
    if (f.io && f.m && io_f(&f, "z") && io_f(&f, "sample") && io_f(&f, "enc_mean")) {
        test_latents(&f);
        test_decode(&f);
        test_encode(&f);
        test_official(&f);
        if (!strcmp(name, "b8_m1222")) test_broken(&f);
    } else {
        TU_CHECK(0, "%s: fixture incomplete", name);
    }
    vae_free(&f.m);
    st_close(&f.io);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_vae FIXTURES_DIR [--stages]\n");
        return 2;
    }
    fixtures = argv[1];
    show_stages = argc > 2 && !strcmp(argv[2], "--stages");
    wf_err err;
    if (wk_backend_cpu_new(&be, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    tmp = tu_tmpdir("vae");
    static const char *cases[] = {"b8_m1222", "b4_m1244_r2", "b4_m122_tTF", "w22_b4_m1222"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(cases[i]);
    tu_rmtree(tmp);
    free(tmp);
    wk_backend_destroy(&be);
    printf("%s\n", tu_failures ? "FAILED" : "OK");
    return tu_failures ? 1 : 0;
}
