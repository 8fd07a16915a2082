/* test_sampler.c: the samplers (worker/engine/sampler.c) against Diffusers' UniPCMultistepScheduler and
 * FlowMatchEulerDiscreteScheduler.
 *
 * For each case of tests/fixtures/sampler (make_sampler_fixtures.py; cases.json lists them):
 *   - sigmas equal Diffusers' fp32 grid to the bit, the integer timesteps exactly, the float
 *     timesteps to the bit;
 *   - fed the stored fake model outputs, the sample after every step is within relative L2 5e-6
 *     of Diffusers'. Why not tighter: torch's fp32 log/expm1 differ from glibc's by one ulp on
 *     some sigmas, and random "model outputs" (unlike a real model's smooth predictions) amplify
 *     that through the multistep history to 8.6e-7 after 12 order-3 bh1 steps on this machine;
 *     another libm may add a little. Any wrong coefficient or history slot costs > 1e-3;
 *     where Diffusers gives NaN (bh1's last step, see sampler.h) the output must be the x0
 *     prediction exactly;
 *   - saving the state after step k, loading it into a fresh sampler and continuing gives
 *     bit-identical samples to the uninterrupted run, for every k; a state is refused by a sampler
 *     with other settings or a truncated buffer;
 *   - the updates run as backend ops (here the CPU backend's: the arrays are host memory); a
 *     sampler made without a backend keeps its grid and refuses to step or save a history.
 * Also: the tiny-wan22 scheduler_config.json read by dfs_read_scheduler_config gives the same grid.
 * Usage: test_sampler FIXTURES_DIR
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffusers.h"
#include "safetensors.h"
#include "sampler.h"
#include "test_util.h"

static const char *fixtures;
static wk_backend *cpu; /* the samplers' backend (host memory: the fixtures' arrays step directly) */

static const void *tensor(st_file *f, const char *name, st_dtype dt, size_t *n) {
    const st_tensor *t = st_file_find(f, name);
    if (!t || t->dtype != dt) return NULL;
    if (n) *n = t->numel;
    return t->data;
}

static const char *meta(st_file *f, const char *k) {
    const char *v = st_file_meta(f, k);
    return v ? v : "";
}

static void run_case(const char *name) {
    char path[4200];
    snprintf(path, sizeof path, "%s/sampler/%s.safetensors", fixtures, name);
    wf_err err;
    st_file *f = NULL;
    if (st_open(&f, path, &err) != WF_OK) {
        TU_CHECK(0, "%s", err.msg);
        return;
    }
    dfs_scheduler_config cfg;
    memset(&cfg, 0, sizeof cfg);
    bool euler = !strcmp(meta(f, "kind"), "euler");
    cfg.kind = euler ? DFS_SCHED_EULER : DFS_SCHED_UNIPC;
    cfg.num_train_timesteps = 1000;
    snprintf(cfg.prediction_type, sizeof cfg.prediction_type, "flow_prediction");
    cfg.use_flow_sigmas = true;
    double shift = atof(meta(f, "shift"));
    cfg.flow_shift = euler ? 1.0 : shift;
    cfg.shift = euler ? shift : 1.0;
    cfg.solver_order = atoi(meta(f, "solver_order"));
    snprintf(cfg.solver_type, sizeof cfg.solver_type, "%s", meta(f, "solver_type"));
    cfg.lower_order_final = atoi(meta(f, "lower_order_final")) != 0;
    cfg.predict_x0 = true;
    snprintf(cfg.final_sigmas_type, sizeof cfg.final_sigmas_type, "zero");
    smp_options o;
    smp_options_default(&o);
    o.steps = atoll(meta(f, "steps"));
    o.grid = !strcmp(meta(f, "grid"), "official") ? SMP_GRID_OFFICIAL : SMP_GRID_DIFFUSERS;
    int64_t dc[64];
    size_t ndc = 0;
    for (const char *p = meta(f, "disable_corrector"); *p && ndc < 64;) {
        char *end;
        long long val = strtoll(p, &end, 10);
        if (end == p) break;
        dc[ndc++] = val;
        p = *end == ',' ? end + 1 : end;
    }
    o.disable_corrector = dc;
    o.n_disable_corrector = ndc;
    o.be = cpu;

    size_t nsig = 0, nts = 0, ntf = 0, nx = 0, nv = 0, ns = 0;
    const float *sig = tensor(f, "sigmas", ST_F32, &nsig);
    const int64_t *ts = tensor(f, "timesteps", ST_I64, &nts);
    const float *tf = tensor(f, "timesteps_f", ST_F32, &ntf);
    const float *x0 = tensor(f, "x0", ST_F32, &nx);
    const float *mo = tensor(f, "model_out", ST_F32, &nv);
    const float *ref = tensor(f, "samples", ST_F32, &ns);
    int64_t N = o.steps;
    if (!sig || !ts || !tf || !x0 || !mo || !ref || nsig != (size_t)N + 1 || nts != (size_t)N ||
        ntf != (size_t)N || nv != nx * (size_t)N || ns != nv) {
        TU_CHECK(0, "%s: fixture tensors missing or of the wrong size", name);
        st_close(&f);
        return;
    }
    smp_sampler *s = NULL;
    if (smp_create(&s, &cfg, &o, nx, &err) != WF_OK) {
        TU_CHECK(0, "%s: %s", name, err.msg);
        st_close(&f);
        return;
    }
    TU_CHECK(memcmp(s->sigmas, sig, nsig * sizeof *sig) == 0, "%s: sigmas differ from Diffusers'",
             name);
    for (int64_t i = 0; i <= N; i++)
        if (memcmp(&s->sigmas[i], &sig[i], sizeof *sig)) {
            TU_CHECK(0, "%s: sigma[%lld] %.10g, Diffusers %.10g", name, (long long)i,
                     s->sigmas[i], sig[i]);
            break;
        }
    for (int64_t i = 0; i < N; i++) {
        TU_CHECK(s->timesteps[i] == ts[i], "%s: timestep[%lld] %lld, Diffusers %lld", name,
                 (long long)i, (long long)s->timesteps[i], (long long)ts[i]);
        TU_CHECK(memcmp(&s->timesteps_f[i], &tf[i], sizeof *tf) == 0,
                 "%s: timestep_f[%lld] %.9g, Diffusers %.9g", name, (long long)i,
                 s->timesteps_f[i], tf[i]);
    }

    /* the uninterrupted run, keeping every sample and every state */
    size_t sb = smp_state_bytes(s);
    float *traj = malloc((size_t)N * nx * sizeof *traj);
    unsigned char *states = malloc((size_t)N * sb);
    float *x = malloc(nx * sizeof *x);
    memcpy(x, x0, nx * sizeof *x);
    double worst = 0;
    int nan_steps = 0;
    for (int64_t i = 0; i < N; i++) {
        if (smp_step(s, mo + (size_t)i * nx, x, i, &err) != WF_OK) {
            TU_CHECK(0, "%s step %lld: %s", name, (long long)i, err.msg);
            break;
        }
        memcpy(traj + (size_t)i * nx, x, nx * sizeof *x);
        if (smp_state_save(s, states + (size_t)i * sb, &err) != WF_OK)
            TU_CHECK(0, "%s: save after step %lld: %s", name, (long long)i, err.msg);
        const float *r = ref + (size_t)i * nx;
        bool ref_nan = false;
        for (size_t e = 0; e < nx; e++) ref_nan |= isnan(r[e]);
        if (ref_nan) { /* Diffusers' inf*0 (bh1, last step): ours is the x0 prediction */
            nan_steps++;
            TU_CHECK(i == N - 1 && N >= 2, "%s: Diffusers NaN at step %lld", name, (long long)i);
            const float *xin = traj + (size_t)(i - 1) * nx, *v = mo + (size_t)i * nx;
            int bad = 0;
            for (size_t e = 0; e < nx; e++) bad += x[e] != xin[e] - s->sigmas[i] * v[e];
            TU_CHECK(bad == 0, "%s: last step is not the x0 prediction (%d values)", name, bad);
            continue;
        }
        double e = tu_rel_l2_f(x, r, nx);
        if (getenv("SMP_VERBOSE")) printf("    %s step %lld rel L2 %.3e\n", name, (long long)i, e);
        if (e > worst) worst = e;
        TU_CHECK(e <= 5e-6, "%s step %lld: rel L2 %.3e > 5e-6", name, (long long)i, e);
    }

    /* resume from the state after step k, for every k */
    int resumed_bad = 0;
    for (int64_t k = 0; k + 1 < N; k++) {
        smp_sampler *r = NULL;
        if (smp_create(&r, &cfg, &o, nx, &err) != WF_OK) {
            TU_CHECK(0, "%s: %s", name, err.msg);
            break;
        }
        /* dirty the fresh sampler first: load must replace everything */
        memcpy(x, x0, nx * sizeof *x);
        smp_step(r, mo, x, 0, &err);
        if (smp_state_load(r, states + (size_t)k * sb, sb, &err) != WF_OK) {
            TU_CHECK(0, "%s: load after step %lld: %s", name, (long long)k, err.msg);
            smp_free(&r);
            break;
        }
        memcpy(x, traj + (size_t)k * nx, nx * sizeof *x);
        for (int64_t i = k + 1; i < N; i++) {
            smp_step(r, mo + (size_t)i * nx, x, i, &err);
            if (memcmp(x, traj + (size_t)i * nx, nx * sizeof *x)) {
                resumed_bad++;
                TU_CHECK(0, "%s: resumed after step %lld, step %lld differs", name, (long long)k,
                         (long long)i);
                break;
            }
        }
        smp_free(&r);
    }
    /* refusals: another step count, a truncated buffer, a wrong step index */
    if (N >= 2) {
        smp_options o2 = o;
        o2.steps = N + 1;
        smp_sampler *r = NULL;
        if (smp_create(&r, &cfg, &o2, nx, &err) == WF_OK) {
            TU_CHECK(smp_state_load(r, states, smp_state_bytes(r), &err) != WF_OK,
                     "%s: a state of %lld steps loaded into a %lld-step sampler", name,
                     (long long)N, (long long)N + 1);
            smp_free(&r);
        }
        TU_CHECK(smp_state_load(s, states, sb - 1, &err) != WF_OK, "%s: short state loaded",
                 name);
        smp_reset(s);
        TU_CHECK(smp_step(s, mo, x, 1, &err) != WF_OK, "%s: step 1 accepted at step 0", name);
    }
    printf("  %-24s %-5s %-9s steps %3lld  max rel L2 %.3e%s  resume ok for %lld k\n", name,
           euler ? "euler" : "unipc", o.grid == SMP_GRID_OFFICIAL ? "official" : "diffusers",
           (long long)N, worst, nan_steps ? " (Diffusers NaN last step: x0 exact)" : "",
           (long long)(N > 1 ? N - 1 : 0) - resumed_bad);
    free(traj);
    free(states);
    free(x);
    smp_free(&s);
    st_close(&f);
}

/* The config file path: dfs_read_scheduler_config on tiny-wan22, with a steps/shift override,
 * gives the grid of the unipc_s3_n40 fixture. */
static void config_file_case(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tiny-wan22/scheduler/scheduler_config.json", fixtures);
    wf_err err;
    dfs_scheduler_config cfg;
    if (dfs_read_scheduler_config(path, &cfg, &err) != WF_OK) {
        TU_CHECK(0, "%s", err.msg);
        return;
    }
    smp_options o;
    smp_options_default(&o);
    o.steps = 40;
    o.shift = 3.0;
    o.solver = SMP_UNIPC;
    smp_sampler *s = NULL;
    if (smp_create(&s, &cfg, &o, 4, &err) != WF_OK) {
        TU_CHECK(0, "%s", err.msg);
        return;
    }
    snprintf(path, sizeof path, "%s/sampler/unipc_s3_n40.safetensors", fixtures);
    st_file *f = NULL;
    if (st_open(&f, path, &err) == WF_OK) {
        const float *sig = tensor(f, "sigmas", ST_F32, NULL);
        TU_CHECK(sig && memcmp(sig, s->sigmas, 41 * sizeof *sig) == 0,
                 "scheduler_config.json grid differs from the fixture's");
        st_close(&f);
    }
    TU_CHECK(s->timesteps[12] == 875 && s->timesteps[13] == 861, "spec 4.1 example timesteps");
    /* made without a backend: the grid only, no step and no state */
    float x[4] = {1, 2, 3, 4}, v[4] = {0};
    TU_CHECK(smp_step(s, v, x, 0, &err) != WF_OK && strstr(err.msg, "without a backend"),
             "a grid-only sampler stepped (%s)", err.msg);
    TU_CHECK(x[0] == 1 && s->step_index == 0, "a refused step changed the sample or the index");
    unsigned char *state = malloc(smp_state_bytes(s));
    TU_CHECK(state && smp_state_save(s, state, &err) != WF_OK, "a grid-only sampler saved a "
             "history");
    free(state);
    smp_free(&s);
    /* bad settings are refused */
    dfs_scheduler_config bad = cfg;
    bad.kind = DFS_SCHED_UNIPC;
    bad.solver_order = 4;
    TU_CHECK(smp_create(&s, &bad, &o, 4, &err) != WF_OK, "solver_order 4 accepted");
    o.steps = 0;
    TU_CHECK(smp_create(&s, &cfg, &o, 4, &err) != WF_OK, "0 steps accepted");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURES_DIR\n", argv[0]);
        return 2;
    }
    fixtures = argv[1];
    wf_err err;
    if (wk_backend_cpu_new(&cpu, 0, &err) != WF_OK) {
        fprintf(stderr, "test_sampler: %s\n", err.msg);
        return 1;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/sampler/cases.json", fixtures);
    json_error_t je;
    json_t *list = json_load_file(path, 0, &je);
    TU_CHECK(json_is_array(list) && json_array_size(list) > 0, "%s: %s", path, je.text);
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        if (json_is_string(v)) run_case(json_string_value(v));
    }
    json_decref(list);
    config_file_case();
    wk_backend_destroy(&cpu);
    if (tu_failures) {
        printf("test_sampler: %d failures\n", tu_failures);
        return 1;
    }
    printf("test_sampler: ok\n");
    return 0;
}
