/* test_pipeline.c: pl_generate end to end against Diffusers' WanPipeline.
 *
 * For tiny-wan22 (two experts, boundary 0.875: steps 0-1 on transformer, 2-4 on transformer_2) and
 * tiny-wan21 (one transformer) and tiny-ti2v (TI2V-5B-shaped: expand_timesteps, transformer in/out
 * 48, Wan2.2 VAE with z_dim 48 / patch_size 2 / is_residual, 16x spatial, flow_shift 5.0),
 * tests/fixtures/pipeline/<name>.safetensors (make_pipeline_fixtures.py)
 * holds the seeded initial latents, the final latents of output_type="latent", the frames of
 * output_type="np" ([F, H, W, 3] in [0, 1]), the timesteps and the expert of every step.
 * pl_generate runs with the same latents, prompt, negative prompt and settings; checked:
 *   - expert per step equal to Diffusers';
 *   - final latents: max abs difference <= 1e-4;
 *   - frames: the decoded [-1, 1] frames mapped by x * 0.5 + 0.5 (clamped, as Diffusers'
 *     postprocess), max abs difference <= 1e-4; the frame callback covers every frame once, in
 *     order.
 * Also: request validation messages (frames, width, boundary without transformer_2) and pl_noise's
 * determinism and moments.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "safetensors.h"
#include "test_util.h"

static const char *fixtures;

static const char *meta(st_file *f, const char *k) {
    const char *v = st_file_meta(f, k);
    return v ? v : "";
}

typedef struct frames_ctx {
    float *dst; /* [F, H, W, 3] in [0, 1] */
    int64_t next, F;
    int bad;
} frames_ctx;

static wf_status on_frames(void *ctx, int64_t first, int64_t n, int64_t H, int64_t W,
                           const float *rgb, wf_err *err) {
    (void)err;
    frames_ctx *c = ctx;
    if (first != c->next || first + n > c->F) {
        c->bad++;
        return WF_OK;
    }
    size_t m = (size_t)(n * H * W * 3);
    float *d = c->dst + (size_t)first * (size_t)(H * W * 3);
    for (size_t i = 0; i < m; i++) {
        float v = rgb[i] * 0.5f + 0.5f;
        d[i] = v < 0 ? 0 : (v > 1 ? 1 : v);
    }
    c->next = first + n;
    return WF_OK;
}

static int n_progress;
static void on_progress(void *ctx, const pl_progress *pr) {
    (void)ctx;
    n_progress++;
    TU_CHECK(pr->step == n_progress - 1, "progress step %lld", (long long)pr->step);
    /* the step's time by op category (host clock on the CPU): each >= 0, the GEMMs and the
     * attention there, together no more than the step's wall time (the ops run inside it) and
     * most of it (measured: 80-99% on the tiny models; 30% allows a busy machine) */
    const double *o = pr->op_seconds, sum = o[WK_T_GEMM] + o[WK_T_ATTN] + o[WK_T_OTHER];
    TU_CHECK(o[WK_T_GEMM] > 0 && o[WK_T_ATTN] > 0 && o[WK_T_OTHER] > 0 &&
                 sum <= pr->step_seconds * 1.001 + 1e-6 && sum >= 0.3 * pr->step_seconds,
             "step %lld: ops gemm %.3g attention %.3g other %.3g s, step %.3g s",
             (long long)pr->step, o[WK_T_GEMM], o[WK_T_ATTN], o[WK_T_OTHER], pr->step_seconds);
    if (getenv("PL_VERBOSE"))
        printf("    step %lld: %.4f s, ops %.4f (gemm %.4f attention %.4f other %.4f)\n",
               (long long)pr->step, pr->step_seconds, sum, o[WK_T_GEMM], o[WK_T_ATTN],
               o[WK_T_OTHER]);
}

static double max_abs(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

static void run_case(const char *name) {
    char path[4200], root[4200];
    snprintf(path, sizeof path, "%s/pipeline/%s.safetensors", fixtures, name);
    snprintf(root, sizeof root, "%s/%s", fixtures, name);
    wf_err err;
    st_file *f = NULL;
    if (st_open(&f, path, &err) != WF_OK) {
        TU_CHECK(0, "%s", err.msg);
        return;
    }
    pl_pipeline *p = NULL;
    if (pl_open(&p, root, NULL, 0, &err) != WF_OK) {
        TU_CHECK(0, "%s: %s", name, err.msg);
        st_close(&f);
        return;
    }
    const st_tensor *lin = st_file_find(f, "latents_in"), *lout = st_file_find(f, "latents_out"),
                    *fr = st_file_find(f, "frames"), *ex = st_file_find(f, "expert");
    TU_CHECK(lin && lout && fr && ex, "%s: fixture tensors missing", name);
    if (!lin || !lout || !fr || !ex) goto out;

    pl_request r;
    pl_request_default(&r);
    r.prompt = meta(f, "prompt");
    r.negative_prompt = meta(f, "negative_prompt");
    r.width = atoll(meta(f, "width"));
    r.height = atoll(meta(f, "height"));
    r.frames = atoll(meta(f, "frames"));
    r.steps = atoll(meta(f, "steps"));
    r.guidance = atof(meta(f, "guidance"));
    r.guidance_2 = atof(meta(f, "guidance_2"));
    r.max_sequence_length = atoll(meta(f, "max_sequence_length"));
    r.latents = (const float *)lin->data;
    size_t n = lin->numel;
    float *lat = malloc(n * sizeof *lat);
    float *frames = calloc(fr->numel, sizeof *frames);
    int *expert = calloc((size_t)r.steps, sizeof *expert);
    frames_ctx fc = {frames, 0, (int64_t)fr->shape[0], 0};
    r.latents_out = lat;
    r.expert_out = expert;
    r.on_frames = on_frames;
    r.frames_ctx = &fc;
    r.progress = on_progress;
    n_progress = 0;
    int64_t shape[4];
    wf_status st = pl_check_request(p, &r, shape, &err);
    TU_CHECK(st == WF_OK, "%s: %s", name, err.msg);
    TU_CHECK((size_t)(shape[0] * shape[1] * shape[2] * shape[3]) == n, "%s: latent shape", name);
    st = pl_generate(p, &r, &err);
    TU_CHECK(st == WF_OK, "%s: %s", name, err.msg);
    if (st == WF_OK) {
        const int64_t *ref_e = (const int64_t *)ex->data;
        for (int64_t i = 0; i < r.steps; i++)
            TU_CHECK(expert[i] == ref_e[i], "%s: step %lld expert %d, Diffusers %lld", name,
                     (long long)i, expert[i], (long long)ref_e[i]);
        TU_CHECK(n_progress == r.steps, "%s: %d progress calls", name, n_progress);
        double dl = max_abs(lat, (const float *)lout->data, n);
        double df = max_abs(frames, (const float *)fr->data, fr->numel);
        printf("%s: latents max abs %.3g (rel L2 %.3g), frames max abs %.3g, experts", name, dl,
               tu_rel_l2_f(lat, (const float *)lout->data, n), df);
        for (int64_t i = 0; i < r.steps; i++) printf(" %d", expert[i]);
        printf("\n");
        TU_CHECK(dl <= 1e-4, "%s: final latents max abs diff %g > 1e-4", name, dl);
        TU_CHECK(df <= 1e-4, "%s: frames max abs diff %g > 1e-4", name, df);
        TU_CHECK(fc.bad == 0 && fc.next == fc.F, "%s: frame callback order (%d bad, %lld of %lld)",
                 name, fc.bad, (long long)fc.next, (long long)fc.F);
    }

    /* validation */
    pl_request b = r;
    b.frames = 10;
    st = pl_check_request(p, &b, shape, &err);
    TU_CHECK(st == WF_EINVAL && strstr(err.msg, "try 9 or 13"), "%s: frames 10: %s", name, err.msg);
    b = r;
    b.width = 40;
    st = pl_check_request(p, &b, shape, &err);
    TU_CHECK(st == WF_EINVAL && strstr(err.msg, "width 40"), "%s: width 40: %s", name, err.msg);
    b = r;
    b.boundary = 0.5;
    st = pl_check_request(p, &b, shape, &err);
    if (p->dit[1]) TU_CHECK(st == WF_OK, "%s: boundary 0.5: %s", name, err.msg);
    else TU_CHECK(st == WF_EINVAL && strstr(err.msg, "transformer_2"), "%s: boundary: %s", name, err.msg);
    b = r;
    b.prompt = NULL;
    TU_CHECK(pl_check_request(p, &b, shape, &err) == WF_EINVAL, "%s: no prompt", name);

    /* the same bits on any thread count (matmul.c, conv.c and attention.c cut their work on
     * multiples of the BLAS tiles): 1 and 3 threads against the default's, with 512 text tokens */
    if (st == WF_OK) {
        float *video = calloc(fr->numel, sizeof *video), *video_t = calloc(fr->numel, sizeof *video_t);
        float *lat_t = malloc(n * sizeof *lat_t);
        pl_request q = r;
        q.max_sequence_length = 512; /* GEMMs big enough for OpenBLAS to thread them itself */
        q.latents_out = lat;
        q.on_frames = NULL;
        q.progress = NULL;
        q.expert_out = NULL;
        q.video_out = video;
        wk_backend *own = p->be;
        WF_ASSERT(video && video_t && lat_t && pl_generate(p, &q, &err) == WF_OK);
        const int nth[2] = {1, 3};
        for (int k = 0; k < 2; k++) {
            wk_backend *be = NULL;
            WF_ASSERT(wk_backend_cpu_new(&be, nth[k], &err) == WF_OK);
            p->be = be;
            q.video_out = video_t;
            q.latents_out = lat_t;
            st = pl_generate(p, &q, &err);
            p->be = own;
            wk_backend_destroy(&be);
            const bool same = !memcmp(lat_t, lat, n * sizeof *lat) &&
                              !memcmp(video_t, video, fr->numel * sizeof *video);
            const double dl = max_abs(lat_t, lat, n), dv = max_abs(video_t, video, fr->numel);
            if (tu_blas_bit_exact())
                TU_CHECK(st == WF_OK && same,
                         "%s: %d thread(s) do not give the same bits as %d (latents max diff "
                         "%.3g, frames %.3g)", name, nth[k], own->nthreads, dl, dv);
            else
                TU_CHECK(st == WF_OK && dl <= 1e-5 && dv <= 1e-5,
                         "%s: %d thread(s) vs %d: latents max diff %.3g, frames %.3g (bound 1e-5 "
                         "on this BLAS core)", name, nth[k], own->nthreads, dl, dv);
        }
        free(video);
        free(video_t);
        free(lat_t);
    }
    free(lat);
    free(frames);
    free(expert);
out:
    pl_close(&p);
    st_close(&f);
}

static void test_noise(void) {
    enum { N = 100001 };
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    pl_noise(42, a, N);
    pl_noise(42, b, N);
    TU_CHECK(!memcmp(a, b, N * sizeof *a), "pl_noise not deterministic");
    double s = 0, s2 = 0;
    for (int i = 0; i < N; i++) {
        s += a[i];
        s2 += (double)a[i] * a[i];
    }
    double mean = s / N, var = s2 / N - mean * mean;
    TU_CHECK(fabs(mean) < 0.02 && fabs(var - 1) < 0.02, "pl_noise mean %g var %g", mean, var);
    pl_noise(43, b, N);
    TU_CHECK(memcmp(a, b, N * sizeof *a), "pl_noise ignores the seed");
    free(a);
    free(b);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_pipeline FIXTURES_DIR\n");
        return 2;
    }
    fixtures = argv[1];
    test_noise();
    run_case("tiny-wan22");
    run_case("tiny-wan21");
    run_case("tiny-ti2v");
    if (tu_failures) printf("%d failure(s)\n", tu_failures);
    else printf("ok\n");
    return tu_failures ? 1 : 0;
}
