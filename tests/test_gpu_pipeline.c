/* test_gpu_pipeline.c: the tiny pipelines (the committed Diffusers fixtures) on the CUDA backend,
 * against the CPU backend and against Diffusers.
 *
 * For tiny-wan22 (two experts), tiny-wan21 and tiny-ti2v (tests/fixtures/pipeline/NAME.safetensors,
 * as test_pipeline.c reads them), pl_generate runs with the fixture's latents and settings on:
 *   - the CPU backend (the reference);
 *   - CUDA --precision fp32: final latents within 1e-5 relative L2 of the CPU's (f32 everywhere,
 *     no TF32: only the order of the sums differs) and max abs 1e-4 of Diffusers';
 *   - CUDA --precision bf16: final latents within 3e-2 relative L2 of the CPU's (every GEMM and
 *     attention input rounded to bf16, 2^-9 relative each, over a few blocks and steps of a
 *     random-weight model; the measured value is printed so that the bound can be tightened).
 * Also: the experts per step equal the CPU's, the frames of every path within the same bounds,
 * no device allocation inside a step (wk_backend.mem_allocs at each progress call after the
 * first step equals its value at the first), and no latents over the bus inside the loop (each
 * step after the first moves at most STEP_BUS_MAX bytes through upload/download: the
 * timesteps and the non-finite index), and the text encoder kept on the device under the
 * automatic rule (a tiny model fits: fp32 run) or given back after the prompts when staging is
 * forced (bf16 run); each step's device time by op category (CUDA events) positive for the
 * GEMMs and the attention and within the step's wall time.
 * Without a CUDA device it prints "no CUDA device (...)" and exits 77 (ctest: skipped).
 * Run: test_gpu_pipeline FIXTURES_DIR
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "safetensors.h"
#include "test_util.h"

#define SKIP 77
#define STEP_BUS_MAX 64 /* bytes: two timesteps up, one index down, and room */

static const char *fixtures;

static const char *meta(st_file *f, const char *k) {
    const char *v = st_file_meta(f, k);
    return v ? v : "";
}

typedef struct run_out {
    float *lat, *frames;
    int *expert;
    int64_t nframes_seen;
    size_t allocs_first; /* mem_allocs at the first progress call */
    int alloc_steps;     /* steps after the first that allocated */
    uint64_t up, down;   /* the backend's bus counters at the last progress call */
    uint64_t step_bus;   /* the most bytes one step after the first moved over the bus */
    bool t5_resident;    /* the text encoder's weights still on the backend after the run */
    int bad_timing;      /* steps whose device time by category is not inside their wall time */
    double ops_frac;     /* the smallest (gemm + attention + other) / wall of a step after the first */
    wk_backend *be;
} run_out;

static wf_status on_frames(void *ctx, int64_t first, int64_t n, int64_t H, int64_t W,
                           const float *rgb, wf_err *err) {
    run_out *o = ctx;
    memcpy(o->frames + (size_t)(first * H * W * 3), rgb, (size_t)(n * H * W * 3) * sizeof(float));
    o->nframes_seen += n;
    return WF_OK;
}

static void on_progress(void *ctx, const pl_progress *pr) {
    run_out *o = ctx;
    if (pr->step == 0) o->allocs_first = o->be->mem_allocs;
    else if (o->be->mem_allocs != o->allocs_first) o->alloc_steps++;
    const uint64_t bus = o->be->bytes_up - o->up + o->be->bytes_down - o->down;
    if (pr->step > 0 && bus > o->step_bus) o->step_bus = bus;
    o->up = o->be->bytes_up;
    o->down = o->be->bytes_down;
    const double *t = pr->op_seconds, sum = t[WK_T_GEMM] + t[WK_T_ATTN] + t[WK_T_OTHER];
    if (!(t[WK_T_GEMM] > 0 && t[WK_T_ATTN] > 0 && sum <= pr->step_seconds * 1.001 + 1e-6))
        o->bad_timing++;
    if (pr->step > 0 && (o->ops_frac == 0 || sum / pr->step_seconds < o->ops_frac))
        o->ops_frac = sum / pr->step_seconds;
}

static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 1e-300 ? den : 1e-300));
}

static double max_abs(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN wins */
    }
    return m;
}

/* One pl_generate of the fixture on be into o. */
static wf_status run_on(wk_backend *be, const char *root, st_file *f, int text_policy,
                        run_out *o, wf_err *err) {
    const st_tensor *lin = st_file_find(f, "latents_in"), *fr = st_file_find(f, "frames");
    pl_pipeline *p = NULL;
    wf_status st = pl_open(&p, root, be, 0, err);
    if (st) return st;
    p->text_policy = text_policy;
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
    o->lat = calloc(lin->numel, sizeof *o->lat);
    o->frames = calloc(fr->numel, sizeof *o->frames);
    o->expert = calloc((size_t)r.steps, sizeof *o->expert);
    o->be = be;
    r.latents_out = o->lat;
    r.expert_out = o->expert;
    r.on_frames = on_frames;
    r.frames_ctx = o;
    r.progress = on_progress;
    r.progress_ctx = o;
    st = pl_generate(p, &r, err);
    o->t5_resident = p->t5->dev.be != NULL;
    pl_close(&p);
    return st;
}

static void run_free(run_out *o) {
    free(o->lat);
    free(o->frames);
    free(o->expert);
}

/* 0 when the case ran (pass or fail), SKIP when there is no CUDA device. */
static int run_case(const char *name) {
    char path[4200], root[4200];
    snprintf(path, sizeof path, "%s/pipeline/%s.safetensors", fixtures, name);
    snprintf(root, sizeof root, "%s/%s", fixtures, name);
    wf_err err;
    st_file *f = NULL;
    if (st_open(&f, path, &err) != WF_OK) {
        TU_CHECK(0, "%s", err.msg);
        return 0;
    }
    const st_tensor *lin = st_file_find(f, "latents_in"), *lout = st_file_find(f, "latents_out"),
                    *fr = st_file_find(f, "frames");
    int rc = 0;
    run_out cpu = {0};
    wk_backend *cb = NULL;
    WF_ASSERT(lin && lout && fr && wk_backend_cpu_new(&cb, 0, &err) == WF_OK);
    wf_status st = run_on(cb, root, f, PL_TEXT_AUTO, &cpu, &err);
    TU_CHECK(st == WF_OK, "%s on the CPU: %s", name, err.msg);
    const int64_t steps = atoll(meta(f, "steps"));
    static const struct { wk_precision prec; double tol; } modes[] = {
        {WK_PREC_FP32, 1e-5}, {WK_PREC_BF16, 3e-2}};
    for (int m = 0; st == WF_OK && m < 2; m++) {
        wk_backend *gb = NULL;
        if (wk_backend_cuda_new(&gb, 0, modes[m].prec, &err) != WF_OK) {
            printf("test_gpu_pipeline: no CUDA device (%s): skipped\n", err.msg);
            rc = SKIP;
            break;
        }
        run_out g = {0};
        /* fp32: the automatic rule (a tiny model fits: umT5 stays); bf16: staged forced */
        const int policy = modes[m].prec == WK_PREC_FP32 ? PL_TEXT_AUTO : PL_TEXT_STAGED;
        st = run_on(gb, root, f, policy, &g, &err);
        const char *pn = wk_precision_name(modes[m].prec);
        TU_CHECK(st == WF_OK, "%s cuda %s: %s", name, pn, err.msg);
        if (st == WF_OK) {
            double dl = rel_l2(g.lat, cpu.lat, lin->numel), df = rel_l2(g.frames, cpu.frames,
                                                                        fr->numel);
            double dd = max_abs(g.lat, (const float *)lout->data, lin->numel);
            printf("%s cuda %s: latents rel L2 vs CPU %.3g (bound %.0e), frames %.3g, max abs vs "
                   "Diffusers %.3g; allocating steps %d; bus bytes per step <= %llu\n",
                   name, pn, dl, modes[m].tol, df, dd, g.alloc_steps,
                   (unsigned long long)g.step_bus);
            TU_CHECK(dl <= modes[m].tol, "%s cuda %s: latents rel L2 %g > %g", name, pn, dl,
                     modes[m].tol);
            TU_CHECK(df <= modes[m].tol, "%s cuda %s: frames rel L2 %g > %g", name, pn, df,
                     modes[m].tol);
            if (modes[m].prec == WK_PREC_FP32)
                TU_CHECK(dd <= 1e-4, "%s cuda fp32: latents max abs vs Diffusers %g", name, dd);
            TU_CHECK(g.nframes_seen == (int64_t)fr->shape[0], "%s cuda %s: %lld frames", name, pn,
                     (long long)g.nframes_seen);
            TU_CHECK(g.alloc_steps == 0, "%s cuda %s: %d steps allocated device memory", name,
                     pn, g.alloc_steps);
            printf("%s cuda %s: device time by op category >= %.0f%% of every step's wall time\n",
                   name, pn, 100 * g.ops_frac);
            TU_CHECK(g.bad_timing == 0, "%s cuda %s: %d steps whose device times (CUDA events) "
                     "are not inside their wall time", name, pn, g.bad_timing);
            TU_CHECK(g.t5_resident == (policy == PL_TEXT_AUTO),
                     "%s cuda %s: the text encoder %s the device (%s)", name, pn,
                     g.t5_resident ? "stayed on" : "left",
                     policy == PL_TEXT_AUTO ? "automatic: a tiny model fits, it must stay"
                                            : "staged forced: it must be given back");
            /* a step uploads the timestep (4 bytes per forward) and downloads the non-finite
             * index (8): the latents never cross the bus inside the loop */
            TU_CHECK(g.step_bus <= STEP_BUS_MAX, "%s cuda %s: a step moved %llu bytes over the "
                     "bus (latents: %zu bytes)", name, pn, (unsigned long long)g.step_bus,
                     lin->numel * sizeof(float));
            for (int64_t i = 0; i < steps; i++)
                TU_CHECK(g.expert[i] == cpu.expert[i], "%s cuda %s: step %lld expert %d, CPU %d",
                         name, pn, (long long)i, g.expert[i], cpu.expert[i]);
        }
        run_free(&g);
        wk_backend_destroy(&gb);
        st = WF_OK;
    }
    run_free(&cpu);
    wk_backend_destroy(&cb);
    st_close(&f);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_gpu_pipeline FIXTURES_DIR\n");
        return 2;
    }
    fixtures = argv[1];
    static const char *cases[] = {"tiny-wan22", "tiny-wan21", "tiny-ti2v"};
    for (int i = 0; i < 3; i++)
        if (run_case(cases[i]) == SKIP) return tu_failures ? 1 : SKIP;
    printf("test_gpu_pipeline: %s (%d failures)\n", tu_failures ? "FAILED" : "OK", tu_failures);
    return tu_failures ? 1 : 0;
}
