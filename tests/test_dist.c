/* test_dist.c: distributed generation (pl_dist.h) under mpirun equals one rank.
 *
 * Run as `mpirun -np N test_dist` for N = 1..4. Rank 0 writes a random-weight model with 12 heads
 * (mkmodel preset tiny12, so that Ulysses degrees 1..4 divide them) and computes the reference with
 * pl_generate (the single-rank pipeline, itself checked against Diffusers in test_pipeline.c) for
 * two requests. Then every valid layout of N ranks (shared and split placements, every Ulysses
 * degree, with and without CFG parallelism, one and all decode ranks) generates both requests as a
 * queue, and the writer compares:
 *   - the frames [3, F, H, W] and final latents within 1e-5 of the reference, the expert per step;
 *   - the bytes each rank's communicators moved, against the formula of bench/PERFORMANCE.md
 *     (computed here from the shapes, independently of the code under test).
 * The token count (2 x 5 x 7 = 70) divides by neither 3 nor 4, so those degrees pad.
 * Bad layouts must fail on every rank with the same clear error, without hanging.
 * With --device cuda (ctest: test_dist_gpu_np2, np3, label gpu) every rank computes on a GPU in fp32
 * (the ranks share the machine's GPUs: WANFARM_SHARE_GPU semantics, cm_bind_gpu), the Ulysses and
 * CFG exchanges and the row-parallel decode go over NCCL (or MPI through host memory: the ranks
 * share a GPU), and the same layouts must equal the CPU reference within 1e-5 too; the token padding of the byte formula
 * follows the backend's row quantum (1 on CUDA, 48 on the CPU). Without a usable GPU every rank
 * prints why and exits 77 (skipped).
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_load.h"
#include "layout.h"
#include "mkmodel.h"
#include "pl_dist.h"
#include "test_util.h"

#define NJOBS 2

typedef struct ref {
    float *video, *lat;
    int expert[16];
} ref;

static int world_rank, world_size;
static wk_backend *gpu; /* --device cuda: this rank's GPU backend (NULL: the CPU) */

static void request(pl_request *r, int64_t k, double boundary) {
    pl_request_default(r);
    r->prompt = k ? "waves on a rocky beach" : "a red fox running through snow";
    r->negative_prompt = "blurry";
    r->width = 112; /* latent 14 wide */
    r->height = 80; /* latent 10 rows */
    r->frames = 5;  /* 2 latent frames */
    r->steps = 4;
    r->guidance = 3.0;
    r->guidance_2 = 2.0;
    r->boundary = boundary;
    r->seed = 11 + (uint64_t)k;
    r->max_sequence_length = 16;
}

/* Sizes the reference needs. */
typedef struct dims {
    int64_t shape[4], F, H, W, L, D, NH, layers, P, Cout;
    size_t n, nvideo;
} dims;

static void get_dims(const pl_pipeline *p, const pl_request *r, dims *d) {
    wf_err err;
    WF_ASSERT(pl_check_request(p, r, d->shape, &err) == WF_OK);
    const dfs_transformer_config *c = &p->cfg->transformer;
    d->F = r->frames, d->H = r->height, d->W = r->width;
    d->L = d->shape[1] / c->patch_size[0] * (d->shape[2] / c->patch_size[1]) *
           (d->shape[3] / c->patch_size[2]);
    d->D = c->dim;
    d->NH = c->num_attention_heads;
    d->layers = c->num_layers;
    d->P = c->patch_size[0] * c->patch_size[1] * c->patch_size[2];
    d->Cout = c->out_channels;
    d->n = (size_t)(d->shape[0] * d->shape[1] * d->shape[2] * d->shape[3]);
    d->nvideo = (size_t)(3 * d->F * d->H * d->W);
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= m)) m = e; /* NaN wins */
    }
    return m;
}

/* Steps run by this rank's group under layout l for request r (its i_switch from the timesteps). */
static int64_t group_steps(const ly_layout *l, const ly_role *ro, const ref *rf, int64_t steps) {
    if (l->placement == LY_SHARED) return steps;
    int64_t hi = 0;
    while (hi < steps && rf->expert[hi] == 0) hi++;
    return ro->group == 0 ? hi : steps - hi;
}

static void run_layout(const char *dir, const ly_layout *l, const dims *dm, ref *refs,
                       double boundary) {
    char name[128];
    ly_format(l, name, sizeof name);
    wf_err err;
    cm_comm *world = NULL;
    WF_ASSERT(cm_world(&world, &err) == WF_OK);
    pd_world *d = NULL;
    wf_status st = pd_open(&d, world, l, dir, gpu, 1, &err);
    TU_CHECK(st == WF_OK, "%s: pd_open: %s", name, err.msg);
    if (st) MPI_Abort(MPI_COMM_WORLD, 1);
    pl_request rq[NJOBS];
    float *video[NJOBS], *lat[NJOBS];
    int expert[NJOBS][16];
    for (int k = 0; k < NJOBS; k++) {
        request(&rq[k], k, boundary);
        video[k] = calloc(dm->nvideo, sizeof(float));
        lat[k] = calloc(dm->n, sizeof(float));
        WF_ASSERT(video[k] && lat[k]);
        for (int i = 0; i < 16; i++) expert[k][i] = -1;
        rq[k].video_out = video[k];
        rq[k].latents_out = lat[k];
        rq[k].expert_out = expert[k];
    }
    st = pd_run(d, rq, NJOBS, &err);
    TU_CHECK(st == WF_OK, "%s: pd_run on rank %d: %s", name, world_rank, err.msg);
    if (st) MPI_Abort(MPI_COMM_WORLD, 1);
    if (d->role.writer) {
        for (int k = 0; k < NJOBS; k++) {
            double dv = max_diff(video[k], refs[k].video, dm->nvideo);
            double dl = max_diff(lat[k], refs[k].lat, dm->n);
            TU_CHECK(dv <= 1e-5 && dl <= 1e-5,
                     "%s: request %d differs from one rank: frames %.3g, latents %.3g", name, k,
                     dv, dl);
            for (int64_t i = 0; i < rq[k].steps; i++)
                TU_CHECK(expert[k][i] == refs[k].expert[i], "%s: request %d step %lld: expert %d, "
                         "one rank used %d", name, k, (long long)i, expert[k][i],
                         refs[k].expert[i]);
            printf("np %d%s  %-44s request %d: max |frames - 1 CPU rank| %.2e, latents %.2e\n",
                   world_size, gpu ? " cuda" : "", name, k, dv, dl);
        }
    }
    /* bytes moved, from the formula (bench/PERFORMANCE.md "Bytes per step") */
    const ly_role *ro = &d->role;
    int64_t U = l->ulysses[ro->group];
    const int64_t q = gpu ? gpu->row_quantum : 48; /* the backend's row quantum */
    int64_t Ll = (dm->L + q * U - 1) / (q * U) * q; /* padded to a multiple of q tokens */
    uint64_t a2a = 0, gather = 0, pairb = 0;
    for (int k = 0; k < NJOBS; k++) {
        int64_t s = group_steps(l, ro, &refs[k], rq[k].steps);
        int64_t fwd = l->cfg_parallel ? 1 : 2; /* CFG is on in both requests */
        a2a += (uint64_t)(s * fwd * 4 * dm->layers * (U - 1) * Ll * (dm->D / U) * 4);
        gather += (uint64_t)(s * fwd * (U - 1) * Ll * dm->P * dm->Cout * 4);
        if (l->cfg_parallel) pairb += (uint64_t)s * dm->n * 4;
    }
    TU_CHECK(d->sp->stats.bytes[CM_ALLTOALL] == a2a,
             "%s rank %d: all-to-all sent %llu bytes, the formula says %llu", name, world_rank,
             (unsigned long long)d->sp->stats.bytes[CM_ALLTOALL], (unsigned long long)a2a);
    TU_CHECK(d->sp->stats.bytes[CM_ALLGATHER] == gather,
             "%s rank %d: head all-gather sent %llu bytes, the formula says %llu", name,
             world_rank, (unsigned long long)d->sp->stats.bytes[CM_ALLGATHER],
             (unsigned long long)gather);
    if (d->pair)
        TU_CHECK(d->pair->stats.bytes[CM_ALLGATHER] == pairb,
                 "%s rank %d: CFG exchange sent %llu bytes, the formula says %llu", name,
                 world_rank, (unsigned long long)d->pair->stats.bytes[CM_ALLGATHER],
                 (unsigned long long)pairb);
    /* the split hand-off, per video: a 40-byte header, the latents, the whole sampler state and
     * both text embeddings (CFG), sent by the high group's rank 0 only */
    if (d->bridge && ro->group == 0) {
        smp_options so;
        smp_options_default(&so);
        so.steps = rq[0].steps;
        smp_sampler *smp = NULL;
        WF_ASSERT(smp_create(&smp, &d->p->cfg->scheduler, &so, dm->n, &err) == WF_OK);
        uint64_t per = 40 + dm->n * 4 + smp_state_bytes(smp) +
                       2 * (uint64_t)rq[0].max_sequence_length * 32 * 4; /* text d_model 32 */
        smp_free(&smp);
        TU_CHECK(d->bridge->stats.bytes[CM_SEND] == NJOBS * per,
                 "%s: the hand-off sent %llu bytes, the formula says %llu", name,
                 (unsigned long long)d->bridge->stats.bytes[CM_SEND],
                 (unsigned long long)(NJOBS * per));
    }
    for (int k = 0; k < NJOBS; k++) {
        free(video[k]);
        free(lat[k]);
    }
    pd_close(&d);
    cm_free(&world);
}

/* A layout that must be refused with `want` in the message, on every rank. */
static void bad_layout(const char *dir, const ly_layout *l, double boundary, double guidance,
                       const char *want) {
    wf_err err;
    cm_comm *world = NULL;
    WF_ASSERT(cm_world(&world, &err) == WF_OK);
    pd_world *d = NULL;
    wf_status st = pd_open(&d, world, l, dir, NULL, 1, &err);
    if (!st) {
        pl_request r;
        request(&r, 0, boundary);
        r.guidance = guidance;
        st = pd_run(d, &r, 1, &err);
    }
    TU_CHECK(st == WF_EINVAL && strstr(err.msg, want),
             "rank %d: expected an error with '%s', got status %d: %s", world_rank, want, (int)st,
             st ? err.msg : "(ok)");
    pd_close(&d);
    cm_free(&world);
    MPI_Barrier(MPI_COMM_WORLD); /* nobody hangs: everyone gets here */
}

/* One DiT forward over the world's ranks (Ulysses, U = world size) equals the one-rank forward to
 * the bit, with a scalar timestep and with one timestep per token (TI2V's path: each rank takes
 * its tokens' values, padding gets 0). */
static void test_dit_sp(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/transformer", dir);
    wf_err err;
    dit_model *m = NULL;
    wk_backend *be = NULL;
    cm_comm *world = NULL;
    WF_ASSERT(dit_load(&m, path, &err) == WF_OK && wk_backend_cpu_new(&be, 1, &err) == WF_OK &&
              cm_world(&world, &err) == WF_OK);
    const int64_t Lt = 16, text_dim = m->cfg.text_dim;
    for (int per_token = 0; per_token < 2; per_token++) {
        dit_shape sh = {2, 10, 14, Lt, per_token != 0};
        const int64_t L = 2 * 5 * 7, n = m->cfg.in_channels * 2 * 10 * 14;
        float *x = malloc((size_t)n * sizeof *x), *txt = malloc((size_t)(Lt * text_dim) * 4);
        float *ts = malloc((size_t)L * sizeof *ts), *ref = malloc((size_t)n * 4), *out = malloc((size_t)n * 4);
        WF_ASSERT(x && txt && ts && ref && out);
        tu_rng rng = tu_rng_new(99); /* the same inputs on every rank */
        tu_fill_normal(&rng, x, (size_t)n, 1.0f);
        tu_fill_normal(&rng, txt, (size_t)(Lt * text_dim), 1.0f);
        for (int64_t l = 0; l < L; l++) ts[l] = per_token ? (float)(999 - 7 * l) : 999.0f;
        size_t b1 = 0, bu = 0;
        WF_ASSERT(dit_arena_bytes(m, be, &sh, 1, &b1, &err) == WF_OK &&
                  dit_arena_bytes(m, be, &sh, world_size, &bu, &err) == WF_OK);
        wk_arena a1, au;
        WF_ASSERT(wk_arena_init(&a1, "ref", b1, &err) == WF_OK &&
                  wk_arena_init(&au, "sp", bu, &err) == WF_OK);
        WF_ASSERT(dit_forward(m, be, &a1, &sh, NULL, x, ts, txt, ref, NULL, NULL, &err) == WF_OK);
        wf_status st = dit_forward(m, be, &au, &sh, world, x, ts, txt, out, NULL, NULL, &err);
        /* with the all-to-alls overlapped (cm_ialltoall): the same ops, the same bits */
        float *ov = malloc((size_t)n * 4);
        WF_ASSERT(ov);
        world->overlap = true;
        wf_status st2 = dit_forward(m, be, &au, &sh, world, x, ts, txt, ov, NULL, NULL, &err);
        world->overlap = false;
        TU_CHECK(st2 == WF_OK && !memcmp(ov, out, (size_t)n * 4),
                 "rank %d: the overlapped Ulysses forward differs from the plain one: %s",
                 world_rank, st2 ? err.msg : "values");
        free(ov);
        double d = 0;
        for (int64_t k = 0; k < n; k++) d = fmax(d, fabs((double)out[k] - (double)ref[k]));
        const bool exact = tu_blas_bit_exact(); /* else the bound is 1e-5 (test_util.h) */
        TU_CHECK(st == WF_OK && (exact ? !memcmp(out, ref, (size_t)n * 4) : d <= 1e-5),
                 "rank %d: DiT over %d ranks (%s timestep) differs from one rank%s: %s "
                 "(max diff %.3g)", world_rank, world_size, per_token ? "per-token" : "scalar",
                 exact ? " (bit for bit)" : "", st ? err.msg : "values", d);
        wk_arena_free(&a1);
        wk_arena_free(&au);
        free(x);
        free(txt);
        free(ts);
        free(ref);
        free(out);
    }
    cm_free(&world);
    wk_backend_destroy(&be);
    dit_free(&m);
}

/* --device cuda: every rank's GPU (shared when there are fewer than ranks), fp32. False, after
 * one line on rank 0, when some rank has none (then every rank skips). */
static bool gpu_ranks(void) {
    wf_err err = {0};
    wk_cuda_info info;
    wk_cuda_device devs[16];
    char ids[16][CM_GPU_ID_LEN];
    int n = 0;
    memset(&info, 0, sizeof info);
    if (wk_cuda_devices(&info, devs, 16, &err) == WF_OK && info.n_devices > 0)
        n = info.n_devices < 16 ? info.n_devices : 16;
    for (int k = 0; k < n; k++) snprintf(ids[k], sizeof ids[k], "%s", devs[k].uuid);
    cm_comm *world = NULL;
    WF_ASSERT(cm_world(&world, &err) == WF_OK);
    cm_gpu_binding b;
    wf_status st = cm_bind_gpu(world, n, (const char (*)[CM_GPU_ID_LEN])ids, true, &b, &err);
    if (!st) st = wk_backend_cuda_new(&gpu, b.device, WK_PREC_FP32, &err);
    st = cm_agree(world, st, "cuda backend", &err);
    cm_free(&world);
    if (st) {
        if (world_rank == 0)
            printf("test_dist --device cuda: no CUDA device on every rank (%s): skipped\n",
                   err.msg);
        wk_backend_destroy(&gpu);
        MPI_Finalize();
        return false;
    }
    if (world_rank == 0) printf("test_dist: GPU ranks (fp32), %d rank(s)\n", world_size);
    return true;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    if (argc > 2 && !strcmp(argv[1], "--device") && !strcmp(argv[2], "cuda") && !gpu_ranks())
        return 77; /* before anything is written */
    wf_err err;
    char dir[4096] = {0};
    if (world_rank == 0) {
        char *t = tu_tmpdir("dist");
        WF_ASSERT(t);
        snprintf(dir, sizeof dir, "%s/model", t);
        free(t);
        WF_ASSERT(mk_write_model(dir, mk_find_preset("tiny12"), 5, &err) == WF_OK);
    }
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);

    if (!gpu) test_dit_sp(dir);

    /* the reference, on rank 0, and a boundary between steps 1 and 2 */
    pl_pipeline *p = NULL;
    WF_ASSERT(pl_open(&p, dir, NULL, 1, &err) == WF_OK);
    smp_options so;
    smp_options_default(&so);
    so.steps = 4;
    smp_sampler *smp = NULL;
    WF_ASSERT(smp_create(&smp, &p->cfg->scheduler, &so, 1, &err) == WF_OK);
    double boundary = 0.5 * (double)(smp->timesteps[1] + smp->timesteps[2]) /
                      (double)p->cfg->scheduler.num_train_timesteps;
    smp_free(&smp);
    pl_request r0;
    request(&r0, 0, boundary);
    dims dm;
    get_dims(p, &r0, &dm);
    ref refs[NJOBS];
    for (int k = 0; k < NJOBS; k++) {
        refs[k].video = malloc(dm.nvideo * sizeof(float));
        refs[k].lat = malloc(dm.n * sizeof(float));
        WF_ASSERT(refs[k].video && refs[k].lat);
        if (world_rank == 0) {
            pl_request r;
            request(&r, k, boundary);
            r.video_out = refs[k].video;
            r.latents_out = refs[k].lat;
            r.expert_out = refs[k].expert;
            WF_ASSERT(pl_generate(p, &r, &err) == WF_OK);
        }
        MPI_Bcast(refs[k].video, (int)dm.nvideo, MPI_FLOAT, 0, MPI_COMM_WORLD);
        MPI_Bcast(refs[k].lat, (int)dm.n, MPI_FLOAT, 0, MPI_COMM_WORLD);
        MPI_Bcast(refs[k].expert, 16, MPI_INT, 0, MPI_COMM_WORLD);
    }
    TU_CHECK(refs[0].expert[1] == 0 && refs[0].expert[2] == 1,
             "the boundary should switch experts between steps 1 and 2");
    pl_close(&p);

    /* every valid layout of world_size ranks */
    ly_limits lim = {dm.NH, dm.L, dm.shape[2], true, true};
    int tried = 0;
    for (int pl = 0; pl < 2; pl++)
        for (int cfgp = 0; cfgp < 2; cfgp++)
            for (int u0 = 1; u0 <= world_size; u0++)
                for (int u1 = 1; u1 <= (pl ? world_size : 1); u1++)
                    for (int vr = 0; vr < 2; vr++) {
                        ly_layout l = {pl ? LY_SPLIT : LY_SHARED, {u0, pl ? u1 : u0}, cfgp != 0,
                                       1};
                        if (ly_ranks(&l) != world_size) continue;
                        int gs = ly_group_size(&l, ly_decode_group(&l));
                        l.vae_ranks = vr ? gs : 1;
                        if (vr && gs == 1) continue;
                        if (ly_check(&l, world_size, &lim, &err)) continue;
                        run_layout(dir, &l, &dm, refs, boundary);
                        if (gpu && l.ulysses[0] > 1) { /* and with the exchanges overlapped */
                            setenv("WANFARM_OVERLAP", "1", 1);
                            run_layout(dir, &l, &dm, refs, boundary);
                            unsetenv("WANFARM_OVERLAP");
                        }
                        tried++;
                    }
    TU_CHECK(tried >= 1, "no layout of %d ranks was tried", world_size);

    /* bad layouts: the same error everywhere, no hang */
    ly_layout too_few = {LY_SHARED, {world_size + 1, world_size + 1}, false, 1};
    bad_layout(dir, &too_few, boundary, 3.0, "start more ranks");
    if (world_size == 1) {
        ly_layout split1 = {LY_SPLIT, {1, 1}, false, 1};
        /* the rank count is checked first by pd_open; the split rule by ly_check */
        TU_CHECK(ly_check(&split1, 1, &lim, &err) == WF_EINVAL && strstr(err.msg, "at least 2"),
                 "split on 1 rank: %s", err.msg);
    } else {
        ly_layout cfg_off = {LY_SHARED, {world_size / 2, 0}, true, 1};
        if (world_size % 2 == 0) bad_layout(dir, &cfg_off, boundary, 1.0, "guidance");
    }
    if (world_size == 3 || world_size == 4) { /* more decode ranks than the group has */
        ly_layout v = {LY_SHARED, {world_size, world_size}, false, world_size + 1};
        bad_layout(dir, &v, boundary, 3.0, "VAE decode ranks");
    }
    ly_layout heads5 = {LY_SHARED, {5, 5}, false, 1};
    TU_CHECK(ly_check(&heads5, 5, &lim, &err) == WF_EINVAL && strstr(err.msg, "valid degrees: 1, 2, 3, 4"),
             "5 does not divide 12 heads: %s", err.msg);

    for (int k = 0; k < NJOBS; k++) {
        free(refs[k].video);
        free(refs[k].lat);
    }
    int fails = tu_failures, total = 0;
    MPI_Allreduce(&fails, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (world_rank == 0) {
        printf("np %d: %d layouts, %s\n", world_size, tried, total ? "FAILED" : "OK");
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        tu_rmtree(dir);
    }
    wk_backend_destroy(&gpu);
    MPI_Finalize();
    return total ? 1 : 0;
}
