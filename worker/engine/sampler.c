/* sampler.c: sigma grids, UniPC (UniP predictor + UniC corrector) and flow-match Euler steps, and
 * the flat state (see sampler.h). Built with -std=c11, so GCC does not contract a*b+c into FMAs:
 * the float64 grid maths round like numpy's and the fp32 maths like torch's elementwise kernels.
 */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void smp_options_default(smp_options *o) {
    memset(o, 0, sizeof *o);
    o->grid = SMP_GRID_DIFFUSERS;
    o->solver = -1;
}

/* numpy.linspace(start, stop, num)[i] for endpoint=True: i*step + start, the last one = stop. */
static double np_linspace(double start, double stop, int64_t num, int64_t i) {
    if (num == 1) return start;
    if (i == num - 1) return stop;
    double step = (stop - start) / (double)(num - 1);
    double y = (double)i * step;
    return y + start;
}

static double shift_f64(double s, double S) {
    double a = S * s;
    double b = (S - 1.0) * s;
    return a / (1.0 + b);
}

static float shift_f32(float s, double S) { /* torch: fp32 tensor op python float */
    float a = (float)S * s;
    float b = (float)(S - 1.0) * s;
    float c = 1.0f + b;
    return a / c;
}

static uint64_t fnv(uint64_t h, const void *p, size_t len) {
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

static wf_status build_grid(smp_sampler *s, const dfs_scheduler_config *cfg, double *tmp,
                            wf_err *err) {
    int64_t N = s->steps;
    double S = s->shift;
    double T = (double)(cfg->num_train_timesteps > 0 ? cfg->num_train_timesteps : 1000);
    if (s->grid == SMP_GRID_OFFICIAL) {
        double smax = (double)0.999f;
        for (int64_t i = 0; i < N; i++) tmp[i] = shift_f64(np_linspace(smax, 0.0, N + 1, i), S);
        for (int64_t i = 0; i < N; i++) {
            s->timesteps[i] = (int64_t)(tmp[i] * T);
            s->sigmas[i] = (float)tmp[i];
            s->timesteps_f[i] = (float)s->timesteps[i];
        }
        s->sigmas[N] = 0.0f;
        return WF_OK;
    }
    if (s->solver == SMP_UNIPC) {
        for (int64_t i = 0; i < N; i++) tmp[i] = shift_f64(np_linspace(1.0, 1.0 / T, N + 1, i), S);
        if (fabs(tmp[0] - 1.0) < 1e-6) tmp[0] -= 1e-6;
        for (int64_t i = 0; i < N; i++) {
            s->timesteps[i] = (int64_t)(tmp[i] * T);
            s->sigmas[i] = (float)tmp[i];
            s->timesteps_f[i] = (float)s->timesteps[i];
        }
        if (!strcmp(cfg->final_sigmas_type, "sigma_min"))
            s->sigmas[N] = (float)tmp[N - 1];
        else if (!cfg->final_sigmas_type[0] || !strcmp(cfg->final_sigmas_type, "zero"))
            s->sigmas[N] = 0.0f;
        else
            return wf_fail(err, WF_EUNSUPPORTED, "sampler: final_sigmas_type \"%s\" (want zero or "
                           "sigma_min)", cfg->final_sigmas_type);
        return WF_OK;
    }
    /* Euler: the training sigmas t/T (fp32) shifted in fp32; sigma_max/min of those; then the
     * inference linspace of sigma*T in float64, divided by T, shifted again (float64). */
    float tmax = (float)T, tmin = 1.0f;
    float smax = shift_f32(tmax / (float)T, S), smin = shift_f32(tmin / (float)T, S);
    for (int64_t i = 0; i < N; i++) {
        double t = np_linspace((double)smax * T, (double)smin * T, N, i);
        tmp[i] = shift_f64(t / T, S);
        s->sigmas[i] = (float)tmp[i];
        s->timesteps_f[i] = s->sigmas[i] * (float)T;
        s->timesteps[i] = (int64_t)s->timesteps_f[i];
    }
    s->sigmas[N] = 0.0f;
    return WF_OK;
}

void smp_reset(smp_sampler *s) {
    s->step_index = 0;
    s->lower_order_nums = 0;
    s->this_order = 0;
    s->n_hist = 0;
    s->has_last = 0;
    for (int k = 0; k < SMP_MAX_ORDER; k++) s->timestep_list[k] = -1;
}

void smp_free(smp_sampler **sp) {
    if (!sp || !*sp) return;
    smp_sampler *s = *sp;
    free(s->sigmas);
    free(s->timesteps);
    free(s->timesteps_f);
    free(s->corrector_off);
    if (s->be) {
        for (int k = 0; k < SMP_MAX_ORDER; k++) wk_backend_free(s->be, s->hist[k]);
        wk_backend_free(s->be, s->last_sample);
        wk_backend_free(s->be, s->scratch);
    }
    free(s);
    *sp = NULL;
}

/* The UniPC settings of a scheduler config, checked: solver_order, solver_type (bh2), and
 * lower_order_final. An Euler config gets the Wan default, order 2. */
static wf_status unipc_settings(const dfs_scheduler_config *cfg, int *order, bool *bh2, bool *lof,
                                wf_err *err) {
    if (cfg->kind != DFS_SCHED_UNIPC) {
        *order = 2; /* the Wan default when a UniPC solver is asked for on an Euler config */
        return WF_OK;
    }
    *order = (int)cfg->solver_order;
    if (*order < 1 || *order > SMP_MAX_ORDER)
        return wf_fail(err, WF_EUNSUPPORTED, "sampler: solver_order %lld (want 1..%d)",
                       (long long)cfg->solver_order, SMP_MAX_ORDER);
    if (!strcmp(cfg->solver_type, "bh1"))
        *bh2 = false;
    else if (cfg->solver_type[0] && strcmp(cfg->solver_type, "bh2"))
        return wf_fail(err, WF_EUNSUPPORTED, "sampler: solver_type \"%s\" (want bh1, bh2)",
                       cfg->solver_type);
    if (cfg->prediction_type[0] && strcmp(cfg->prediction_type, "flow_prediction"))
        return wf_fail(err, WF_EUNSUPPORTED, "sampler: prediction_type \"%s\" (want "
                       "flow_prediction)", cfg->prediction_type);
    if (!cfg->predict_x0)
        return wf_fail(err, WF_EUNSUPPORTED, "sampler: predict_x0 false with flow "
                       "prediction (Diffusers refuses it too)");
    *lof = cfg->lower_order_final;
    return WF_OK;
}

/* The grids [steps (+ 1)], host memory. False when one is out of memory (smp_free frees the
 * others). */
static bool alloc_grids(smp_sampler *s) {
    const size_t N = (size_t)s->steps;
    s->sigmas = calloc(N + 1, sizeof *s->sigmas);
    s->timesteps = calloc(N, sizeof *s->timesteps);
    s->timesteps_f = calloc(N, sizeof *s->timesteps_f);
    s->corrector_off = calloc(N, sizeof *s->corrector_off);
    return s->sigmas && s->timesteps && s->timesteps_f && s->corrector_off;
}

/* A view of n floats of backend memory at p. */
static wk_tensor flat(const smp_sampler *s, const float *p) {
    wk_tensor t = wk_tensor_1d(WK_F32, (void *)p, (int64_t)s->n);
    t.device = s->be->device;
    return t;
}

/* UniPC's buffers in the backend's memory: the history, the last sample and the scratch [n],
 * zeroed (a saved state is then the same bytes whatever the memory held). */
static wf_status alloc_buffers(smp_sampler *s, wf_err *err) {
    if (s->solver != SMP_UNIPC) return WF_OK;
    const size_t bytes = s->n * sizeof(float);
    float **bufs[SMP_MAX_ORDER + 2];
    int nb = 0;
    for (int k = 0; k < s->order; k++) bufs[nb++] = &s->hist[k];
    bufs[nb++] = &s->last_sample;
    bufs[nb++] = &s->scratch;
    for (int k = 0; k < nb; k++) {
        wf_status st = wk_backend_alloc(s->be, bytes, (void **)bufs[k], err);
        if (st) return st;
        wk_tensor t = flat(s, *bufs[k]);
        if ((st = wk_fill(s->be, &t, 0.0f, err))) return st;
    }
    return WF_OK;
}

/* FNV-1a of the sigma bits, the timesteps, the corrector switches and the settings. */
static uint64_t grid_hash(const smp_sampler *s) {
    const size_t N = (size_t)s->steps;
    uint64_t h = 1469598103934665603ull;
    h = fnv(h, s->sigmas, (N + 1) * sizeof *s->sigmas);
    h = fnv(h, s->timesteps, N * sizeof *s->timesteps);
    h = fnv(h, s->corrector_off, N * sizeof *s->corrector_off);
    int32_t set[4] = {(int32_t)s->grid, (int32_t)s->order, s->bh2, s->lower_order_final};
    return fnv(h, set, sizeof set);
}

wf_status smp_create(smp_sampler **out, const dfs_scheduler_config *cfg, const smp_options *opt,
                     size_t n, wf_err *err) {
    *out = NULL;
    if (!cfg || !opt) return wf_fail(err, WF_EINVAL, "sampler: no config or options");
    if (opt->steps < 1 || opt->steps > SMP_MAX_STEPS)
        return wf_fail(err, WF_EINVAL, "sampler: steps %lld (want 1..%d)", (long long)opt->steps,
                       SMP_MAX_STEPS);
    if (n == 0 || n > ((size_t)1 << 40)) return wf_fail(err, WF_EINVAL, "sampler: %zu elements", n);
    smp_solver solver = opt->solver < 0 ? (cfg->kind == DFS_SCHED_EULER ? SMP_EULER : SMP_UNIPC)
                                        : (smp_solver)opt->solver;
    if (solver != SMP_UNIPC && solver != SMP_EULER)
        return wf_fail(err, WF_EINVAL, "sampler: solver %d", opt->solver);
    double shift = opt->shift > 0 ? opt->shift
                                  : (cfg->kind == DFS_SCHED_EULER ? cfg->shift : cfg->flow_shift);
    if (!(shift > 0) || !isfinite(shift))
        return wf_fail(err, WF_EINVAL, "sampler: shift %g (want > 0)", shift);
    int order = 1;
    bool bh2 = true, lof = true;
    wf_status st = WF_OK;
    if (solver == SMP_UNIPC && (st = unipc_settings(cfg, &order, &bh2, &lof, err))) return st;
    smp_sampler *s = calloc(1, sizeof *s);
    if (!s) return wf_fail(err, WF_ENOMEM, "sampler: out of memory");
    s->solver = solver;
    s->grid = opt->grid;
    s->steps = opt->steps;
    s->shift = shift;
    s->order = order;
    s->bh2 = bh2;
    s->lower_order_final = lof;
    s->n = n;
    s->be = opt->be;
    size_t N = (size_t)opt->steps;
    double *tmp = calloc(N + 1, sizeof *tmp);
    if (!alloc_grids(s) || !tmp) {
        st = wf_fail(err, WF_ENOMEM, "sampler: out of memory (%zu steps)", N);
        goto out;
    }
    if (s->be && (st = alloc_buffers(s, err))) {
        wf_err_prefix(err, "sampler history (%zu elements): ", n);
        goto out;
    }
    WF_TRY(build_grid(s, cfg, tmp, err));
    for (size_t k = 0; k < opt->n_disable_corrector; k++) {
        int64_t i = opt->disable_corrector[k];
        if (i >= 0 && i < (int64_t)N) s->corrector_off[i] = true;
    }
    s->grid_hash = grid_hash(s);
    smp_reset(s);
    *out = s;
    s = NULL;
out:
    free(tmp);
    smp_free(&s);
    return st;
}

/* ---- UniPC ---------------------------------------------------------------------------------- */

static float lambda_of(float sigma) { /* flow sigmas: alpha = 1 - sigma */
    float alpha = 1.0f - sigma;
    return logf(alpha) - logf(sigma);
}

/* Solves A x = b (m x m, m <= 3) by LU with partial pivoting in fp32, as LAPACK sgesv. */
static void solve_small(int m, float A[3][3], float *b) {
    int piv[3] = {0, 1, 2};
    for (int k = 0; k < m; k++) {
        int p = k;
        for (int r = k + 1; r < m; r++)
            if (fabsf(A[r][k]) > fabsf(A[p][k])) p = r;
        if (p != k) {
            for (int c = 0; c < m; c++) {
                float t = A[k][c];
                A[k][c] = A[p][c];
                A[p][c] = t;
            }
            int t = piv[k];
            piv[k] = piv[p];
            piv[p] = t;
            float tb = b[k];
            b[k] = b[p];
            b[p] = tb;
        }
        for (int r = k + 1; r < m; r++) {
            float l = A[r][k] / A[k][k];
            A[r][k] = l;
            for (int c = k + 1; c < m; c++) A[r][c] = A[r][c] - l * A[k][c];
            b[r] = b[r] - l * b[k];
        }
    }
    for (int k = m - 1; k >= 0; k--) {
        float v = b[k];
        for (int c = k + 1; c < m; c++) v = v - A[k][c] * b[c];
        b[k] = v / A[k][k];
    }
}

/* The shared scalar part of UniP / UniC between sigma_s0 (step s0) and sigma_t, with `order`
 * terms; lam_si[j] are the lambdas of the older history points (j = 0..order-2).
 * Fills the coefficients and rhos (predictor: rhos of R[:-1,:-1]; corrector: full R). */
typedef struct bh_coef {
    float ratio;  /* sigma_t / sigma_s0 */
    float a_phi;  /* alpha_t * h_phi_1 */
    float a_B;    /* alpha_t * B_h */
    float rks[SMP_MAX_ORDER];
    float rhos[SMP_MAX_ORDER];
} bh_coef;

static void bh_scalars(const smp_sampler *s, float sigma_t, float sigma_s0, const float *lam_si,
                       int order, bool corrector, bh_coef *c) {
    float alpha_t = 1.0f - sigma_t;
    float lambda_t = lambda_of(sigma_t), lambda_s0 = lambda_of(sigma_s0);
    float h = lambda_t - lambda_s0;
    for (int j = 0; j < order - 1; j++) c->rks[j] = (lam_si[j] - lambda_s0) / h;
    c->rks[order - 1] = 1.0f;
    float hh = -h;
    float h_phi_1 = expm1f(hh);
    float h_phi_k = h_phi_1 / hh - 1.0f;
    float B_h = s->bh2 ? expm1f(hh) : hh;
    float b[SMP_MAX_ORDER], R[3][3];
    long fact = 1;
    for (int i = 1; i <= order; i++) {
        for (int j = 0; j < order; j++) {
            float r = 1.0f;
            for (int e = 0; e < i - 1; e++) r = r * c->rks[j];
            R[i - 1][j] = r;
        }
        b[i - 1] = h_phi_k * (float)fact / B_h;
        fact *= i + 1;
        h_phi_k = h_phi_k / hh - (float)(1.0 / (double)fact);
    }
    c->ratio = sigma_t / sigma_s0;
    c->a_phi = alpha_t * h_phi_1;
    c->a_B = alpha_t * B_h;
    if (!corrector) {
        if (order == 2) {
            c->rhos[0] = 0.5f;
        } else if (order == 3) {
            solve_small(2, R, b);
            c->rhos[0] = b[0];
            c->rhos[1] = b[1];
        }
    } else {
        if (order == 1) {
            c->rhos[0] = 0.5f;
        } else {
            solve_small(order, R, b);
            for (int j = 0; j < order; j++) c->rhos[j] = b[j];
        }
    }
}

/* The x0 history as unipc_update reads it, newest first: m[k] = hist[O-1-k], k < p. */
static void hist_views(const smp_sampler *s, int p, wk_tensor *views, const wk_tensor **m) {
    for (int k = 0; k < p; k++) {
        views[k] = flat(s, s->hist[s->order - 1 - k]);
        m[k] = &views[k];
    }
}

/* One UniC correction (d given) or UniP prediction of y from x at order p, between the sigma of
 * step s0 and sigma_t; lam_si: the lambdas of the older history points. */
static wf_status unipc_apply(smp_sampler *s, float sigma_t, float sigma_s0, const float *lam_si,
                             int p, bool corrector, wk_tensor *y, const wk_tensor *x,
                             const wk_tensor *d, wf_err *err) {
    bh_coef c;
    memset(&c, 0, sizeof c); /* the predictor at order 1 sets no rhos */
    bh_scalars(s, sigma_t, sigma_s0, lam_si, p, corrector, &c);
    wk_unipc_coef k = {p, c.ratio, c.a_phi, c.a_B, {c.rks[0], c.rks[1]},
                       {c.rhos[0], c.rhos[1], c.rhos[2]}};
    wk_tensor views[SMP_MAX_ORDER];
    const wk_tensor *m[SMP_MAX_ORDER] = {NULL, NULL, NULL};
    hist_views(s, p, views, m);
    return wk_unipc_update(s->be, y, x, m, d, &k, err);
}

static wf_status unipc_step(smp_sampler *s, const float *v, float *x, wf_err *err) {
    const int64_t i = s->step_index, N = s->steps;
    const int O = s->order;
    const float *sig = s->sigmas;
    const float sig_i = sig[i];
    const size_t bytes = s->n * sizeof(float);
    bool use_corr = i > 0 && !s->corrector_off[i - 1] && s->has_last;
    wk_tensor xt = flat(s, x), vt = flat(s, v), x0 = flat(s, s->scratch);
    wf_status st = wk_scale_add(s->be, &x0, &xt, &vt, -sig_i, err); /* x0 = x - sigma v */
    if (st) return st;

    if (use_corr) { /* UniC at sigma_i from sigma_{i-1}, order this_order of step i-1 */
        int p = s->this_order;
        float lam[SMP_MAX_ORDER] = {0};
        for (int k = 1; k < p; k++) lam[k - 1] = lambda_of(sig[i - (k + 1)]);
        wk_tensor xl = flat(s, s->last_sample);
        if ((st = unipc_apply(s, sig[i], sig[i - 1], lam, p, true, &xt, &xl, &x0, err))) return st;
    }
    /* push x0 into the history */
    float *old = s->hist[0];
    for (int k = 0; k < O - 1; k++) {
        s->hist[k] = s->hist[k + 1];
        s->timestep_list[k] = s->timestep_list[k + 1];
    }
    s->hist[O - 1] = s->scratch;
    s->timestep_list[O - 1] = s->timesteps[i];
    s->scratch = old;
    if (s->n_hist < O) s->n_hist++;

    int this_order = s->lower_order_final ? (int)(O < N - i ? O : N - i) : O;
    if (this_order > s->lower_order_nums + 1) this_order = s->lower_order_nums + 1;
    s->this_order = this_order;
    if ((st = wk_copy(s->be, s->last_sample, x, bytes, err))) return st;
    s->has_last = 1;

    if (sig[i + 1] == 0.0f) { /* the limit h -> inf: x_{i+1} = x0 (see sampler.h) */
        if ((st = wk_copy(s->be, x, s->hist[O - 1], bytes, err))) return st;
    } else {
        int p = this_order;
        float lam[SMP_MAX_ORDER] = {0};
        for (int k = 1; k < p; k++) lam[k - 1] = lambda_of(sig[i - k]);
        if ((st = unipc_apply(s, sig[i + 1], sig_i, lam, p, false, &xt, &xt, NULL, err))) return st;
    }
    if (s->lower_order_nums < O) s->lower_order_nums++;
    return WF_OK;
}

static wf_status euler_step(smp_sampler *s, const float *v, float *x, wf_err *err) {
    float dt = s->sigmas[s->step_index + 1] - s->sigmas[s->step_index];
    wk_tensor xt = flat(s, x), vt = flat(s, v);
    return wk_scale_add(s->be, &xt, &xt, &vt, dt, err); /* x + dt v */
}

wf_status smp_step(smp_sampler *s, const float *model_out, float *sample, int64_t step,
                   wf_err *err) {
    if (step != s->step_index)
        return wf_fail(err, WF_EINVAL, "sampler: step %lld given, the sampler is at step %lld",
                       (long long)step, (long long)s->step_index);
    if (step < 0 || step >= s->steps)
        return wf_fail(err, WF_EINVAL, "sampler: step %lld outside 0..%lld", (long long)step,
                       (long long)s->steps - 1);
    if (!s->be)
        return wf_fail(err, WF_EINVAL, "sampler: made without a backend (its grid only); give "
                       "smp_options.be to step");
    wf_status st = s->solver == SMP_UNIPC ? unipc_step(s, model_out, sample, err)
                                          : euler_step(s, model_out, sample, err);
    if (st) {
        wf_err_prefix(err, "sampler step %lld: ", (long long)step);
        return st;
    }
    s->step_index++;
    return WF_OK;
}

/* ---- state ---------------------------------------------------------------------------------- */

static const char smp_magic[8] = {'W', 'F', 'S', 'M', 'P', 'S', 'T', '1'};

size_t smp_state_bytes(const smp_sampler *s) {
    size_t bufs = s->solver == SMP_UNIPC ? (size_t)s->order + 1 : 0;
    return sizeof(smp_state_header) + bufs * s->n * sizeof(float);
}

wf_status smp_state_save(const smp_sampler *s, void *buf, wf_err *err) {
    smp_state_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, smp_magic, sizeof h.magic);
    h.version = 1;
    h.solver = (uint32_t)s->solver;
    h.steps = s->steps;
    h.n = s->n;
    h.grid_hash = s->grid_hash;
    h.step_index = s->step_index;
    h.order = s->order;
    h.lower_order_nums = s->lower_order_nums;
    h.this_order = s->this_order;
    h.n_hist = s->n_hist;
    h.has_last = s->has_last;
    for (int k = 0; k < SMP_MAX_ORDER; k++) h.timestep_list[k] = s->timestep_list[k];
    unsigned char *p = buf;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    if (s->solver != SMP_UNIPC) return WF_OK;
    if (!s->be) return wf_fail(err, WF_EINVAL, "sampler state: a grid-only sampler has no history");
    wf_status st = WF_OK;
    for (int k = 0; k < s->order && !st; k++, p += s->n * sizeof(float))
        st = wk_download_bytes(s->be, p, s->hist[k], s->n * sizeof(float), err);
    if (!st) st = wk_download_bytes(s->be, p, s->last_sample, s->n * sizeof(float), err);
    if (st) wf_err_prefix(err, "sampler state: ");
    return st;
}

wf_status smp_state_load(smp_sampler *s, const void *buf, size_t len, wf_err *err) {
    smp_state_header h;
    if (len < sizeof h) return wf_fail(err, WF_EFORMAT, "sampler state: %zu bytes, too short", len);
    memcpy(&h, buf, sizeof h);
    if (memcmp(h.magic, smp_magic, sizeof h.magic) || h.version != 1)
        return wf_fail(err, WF_EFORMAT, "sampler state: bad magic or version %u", h.version);
    if (len != smp_state_bytes(s))
        return wf_fail(err, WF_EFORMAT, "sampler state: %zu bytes, this sampler needs %zu", len,
                       smp_state_bytes(s));
    if (h.solver != (uint32_t)s->solver || h.steps != s->steps || h.n != s->n ||
        h.grid_hash != s->grid_hash || h.order != s->order)
        return wf_fail(err, WF_EINVAL, "sampler state: made by another sampler (solver %u steps "
                       "%lld n %llu order %d; this one: solver %d steps %lld n %zu order %d, or "
                       "another grid)", h.solver, (long long)h.steps, (unsigned long long)h.n,
                       h.order, (int)s->solver, (long long)s->steps, s->n, s->order);
    if (s->solver == SMP_UNIPC && !s->be)
        return wf_fail(err, WF_EINVAL, "sampler state: a grid-only sampler has no history to "
                       "load it into");
    if (h.step_index < 0 || h.step_index > s->steps || h.lower_order_nums < 0 ||
        h.lower_order_nums > s->order || h.this_order < 0 || h.this_order > s->order ||
        h.n_hist < 0 || h.n_hist > s->order)
        return wf_fail(err, WF_EFORMAT, "sampler state: counters out of range (step %lld)",
                       (long long)h.step_index);
    s->step_index = h.step_index;
    s->lower_order_nums = h.lower_order_nums;
    s->this_order = h.this_order;
    s->n_hist = h.n_hist;
    s->has_last = h.has_last;
    for (int k = 0; k < SMP_MAX_ORDER; k++) s->timestep_list[k] = h.timestep_list[k];
    if (s->solver != SMP_UNIPC) return WF_OK;
    const unsigned char *p = (const unsigned char *)buf + sizeof h;
    wf_status st = WF_OK;
    for (int k = 0; k < s->order && !st; k++, p += s->n * sizeof(float))
        st = wk_upload_bytes(s->be, s->hist[k], p, s->n * sizeof(float), err);
    if (!st) st = wk_upload_bytes(s->be, s->last_sample, p, s->n * sizeof(float), err);
    if (st) wf_err_prefix(err, "sampler state: ");
    return st;
}
