/* test_plan.c: layouts (coordinator/planner/layout.c) and the placement planner (coordinator/planner/plan.c).
 *
 *   - ly_check: every rule refuses what it should, with a message holding its key words, and
 *     valid layouts pass; ly_role_of over small shared/split, CFG/no-CFG layouts;
 *   - the cost model: pn_evaluate's byte and FLOP counts against the formulas recomputed here
 *     another way (per destination rank and head, per block), communication times inside one node
 *     and across nodes, the queue arithmetic (latency, two-stage pipeline, replicas);
 *   - the expert step counts against wan_spec.md §4.1's timestep lists (40 steps, shift 3: 13 high;
 *     shift 12: 26 high) and a model folder (tiny-wan22) against its own sampler;
 *   - pn_choose: a valid plan for 1..64 ranks of the A14B preset (queue 1 and 100, idle ranks
 *     allowed or one world), fixed choices kept, split never chosen for a one-expert model, the
 *     memory limit excluding shared when two experts do not fit, errors that say why;
 *   - comparisons that must hold: more ranks never slow a step for Ulysses degrees that divide the
 *     heads inside a node, and so on.
 * Usage: test_plan FIXTURES_DIR
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffusers.h"
#include "dit.h"
#include "layout.h"
#include "pl_plan.h"
#include "plan.h"
#include "sampler.h"
#include "test_util.h"

static const char *fixtures;

/* Every word of `words` ('|'-separated) appears in msg. */
static bool has_words(const char *msg, const char *words) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", words);
    for (char *w = strtok(buf, "|"); w; w = strtok(NULL, "|"))
        if (!strstr(msg, w)) return false;
    return true;
}

#define CHECK_FAILS(st, err, code, words)                                                        \
    do {                                                                                         \
        wf_status s_ = (st);                                                                     \
        TU_CHECK(s_ == (code), "status %d, expected %d (%s)", (int)s_, (int)(code), (err).msg); \
        TU_CHECK(has_words((err).msg, words), "message '%s' lacks '%s'", (err).msg, words);     \
    } while (0)

static bool rel_eq(double a, double b, double tol) {
    return fabs(a - b) <= tol * fmax(fabs(a), fabs(b)) + 1e-300;
}

/* ------------------------------------------------------------------------------------------ */

static void test_ly_check(void) {
    wf_err e;
    ly_limits lim = {40, 75600, 90, true, true};
    ly_layout ok1 = {LY_SHARED, {8, 0}, false, 8};
    TU_CHECK(ly_check(&ok1, 8, &lim, &e) == WF_OK, "shared U=8: %s", e.msg);
    ly_layout ok2 = {LY_SPLIT, {4, 4}, true, 8};
    TU_CHECK(ly_check(&ok2, 16, &lim, &e) == WF_OK, "split 4+4 cfg: %s", e.msg);
    ly_layout ok3 = {LY_SHARED, {1, 0}, false, 1};
    TU_CHECK(ly_check(&ok3, 1, &lim, &e) == WF_OK, "one rank: %s", e.msg);
    ly_layout ok4 = {LY_SPLIT, {1, 2}, false, 2};
    TU_CHECK(ly_check(&ok4, 3, &lim, &e) == WF_OK, "split 1+2: %s", e.msg);

    ly_limits one = lim;
    one.two_experts = false;
    ly_layout sp = {LY_SPLIT, {1, 1}, false, 1};
    CHECK_FAILS(ly_check(&sp, 2, &one, &e), e, WF_EINVAL, "split needs two experts|placement shared");
    CHECK_FAILS(ly_check(&sp, 1, &lim, &e), e, WF_EINVAL, "at least 2 ranks|world has 1");
    ly_limits nocfg = lim;
    nocfg.cfg = false;
    ly_layout cp = {LY_SHARED, {2, 0}, true, 1};
    CHECK_FAILS(ly_check(&cp, 4, &nocfg, &e), e, WF_EINVAL, "CFG parallelism|guidance > 1|--cfg-parallel");
    ly_layout u0 = {LY_SHARED, {0, 0}, false, 1};
    CHECK_FAILS(ly_check(&u0, 1, &lim, &e), e, WF_EINVAL, "Ulysses degree 0|>= 1");
    ly_layout u3 = {LY_SHARED, {3, 0}, false, 1};
    CHECK_FAILS(ly_check(&u3, 3, &lim, &e), e, WF_EINVAL,
                "Ulysses degree 3 does not divide the 40 attention heads|valid degrees: 1, 2");
    ly_layout u7 = {LY_SPLIT, {2, 3}, false, 1};
    CHECK_FAILS(ly_check(&u7, 5, &lim, &e), e, WF_EINVAL, "low-noise group|degree 3 does not divide");
    ly_limits few = lim;
    few.tokens = 4;
    ly_layout u5 = {LY_SHARED, {5, 0}, false, 1};
    CHECK_FAILS(ly_check(&u5, 5, &few, &e), e, WF_EINVAL, "more than the 4 latent tokens");
    ly_layout c4 = {LY_SHARED, {4, 0}, false, 1};
    CHECK_FAILS(ly_check(&c4, 6, &lim, &e), e, WF_EINVAL, "uses 4 ranks|world has 6|start fewer ranks");
    CHECK_FAILS(ly_check(&c4, 2, &lim, &e), e, WF_EINVAL, "uses 4 ranks|world has 2|start more ranks");
    ly_layout s22 = {LY_SPLIT, {2, 2}, true, 1};
    CHECK_FAILS(ly_check(&s22, 6, &lim, &e), e, WF_EINVAL, "uses 8 ranks|high 4 + low 4|x 2 for CFG");
    ly_layout v0 = {LY_SHARED, {2, 0}, false, 0};
    CHECK_FAILS(ly_check(&v0, 2, &lim, &e), e, WF_EINVAL, "0 VAE decode ranks|1..2");
    ly_limits rows = lim;
    rows.latent_h = 3;
    ly_layout v4 = {LY_SHARED, {4, 0}, false, 4};
    CHECK_FAILS(ly_check(&v4, 4, &rows, &e), e, WF_EINVAL, "4 VAE decode ranks|1..3|latent 3 rows");
    ly_layout vs = {LY_SPLIT, {2, 1}, false, 2};
    CHECK_FAILS(ly_check(&vs, 3, &lim, &e), e, WF_EINVAL, "VAE decode ranks|low-noise group has 1");
    ly_layout bad = {(ly_placement)7, {1, 0}, false, 1};
    CHECK_FAILS(ly_check(&bad, 1, &lim, &e), e, WF_EINVAL, "unknown placement 7");

    char buf[160];
    ly_format(&ok2, buf, sizeof buf);
    TU_CHECK(!strcmp(buf, "split high U=4 + low U=4, cfg-parallel, vae 8"), "format '%s'", buf);
    TU_CHECK(ly_ranks(&ok2) == 16 && ly_groups(&ok2) == 2 && ly_decode_group(&ok2) == 1, "counts");
}

static void test_roles(void) {
    /* shared U=2 with CFG: ranks 0,1 conditional (sp 0,1), 2,3 unconditional; vae 3 */
    ly_layout a = {LY_SHARED, {2, 0}, true, 3};
    for (int r = 0; r < 4; r++) {
        ly_role ro = ly_role_of(&a, r);
        TU_CHECK(ro.group == 0 && ro.group_base == 0 && ro.group_rank == r && ro.group_size == 4,
                 "shared cfg rank %d group", r);
        TU_CHECK(ro.half == r / 2 && ro.sp_rank == r % 2 && ro.sp_size == 2, "rank %d half %d sp %d",
                 r, ro.half, ro.sp_rank);
        TU_CHECK(ro.decodes == (r < 3) && ro.writer == (r == 0), "rank %d decode/writer", r);
    }
    /* shared U=3 without CFG */
    ly_layout b = {LY_SHARED, {3, 0}, false, 1};
    for (int r = 0; r < 3; r++) {
        ly_role ro = ly_role_of(&b, r);
        TU_CHECK(ro.half == 0 && ro.sp_rank == r && ro.sp_size == 3 && ro.decodes == (r == 0),
                 "shared U=3 rank %d", r);
    }
    /* split high U=2 + low U=1 with CFG: high = world 0..3, low = 4..5; the low group decodes */
    ly_layout c = {LY_SPLIT, {2, 1}, true, 1};
    const int grp[6] = {0, 0, 0, 0, 1, 1}, gr[6] = {0, 1, 2, 3, 0, 1}, half[6] = {0, 0, 1, 1, 0, 1};
    const int sp[6] = {0, 1, 0, 1, 0, 0};
    for (int r = 0; r < 6; r++) {
        ly_role ro = ly_role_of(&c, r);
        TU_CHECK(ro.group == grp[r] && ro.group_rank == gr[r] && ro.half == half[r] &&
                     ro.sp_rank == sp[r] && ro.group_base == (grp[r] ? 4 : 0) &&
                     ro.group_size == (grp[r] ? 2 : 4) && ro.sp_size == (grp[r] ? 1 : 2),
                 "split rank %d: group %d rank %d half %d sp %d", r, ro.group, ro.group_rank,
                 ro.half, ro.sp_rank);
        TU_CHECK(ro.decodes == (r == 4) && ro.writer == (r == 4), "split rank %d decode/writer", r);
    }
    /* split without CFG, 1 + 3, vae 2 */
    ly_layout d = {LY_SPLIT, {1, 3}, false, 2};
    for (int r = 0; r < 4; r++) {
        ly_role ro = ly_role_of(&d, r);
        TU_CHECK(ro.group == (r > 0) && ro.sp_rank == (r > 0 ? r - 1 : 0) && ro.half == 0 &&
                     ro.decodes == (r == 1 || r == 2) && ro.writer == (r == 1),
                 "split 1+3 rank %d", r);
    }
}

/* ------------------------------------------------------------------------------------------ */

static pn_inputs a14b(int world, int64_t W, int64_t H, int64_t F) {
    pn_inputs in;
    pn_inputs_default(&in);
    in.world = world;
    pn_request r;
    pn_request_default(&r);
    r.width = W;
    r.height = H;
    r.frames = F;
    wf_err e;
    wf_status st = pl_plan_preset_a14b(&in, &r, &e);
    TU_CHECK(st == WF_OK, "preset: %s", e.msg);
    return in;
}

/* The bytes one rank sends per forward, counted per destination rank and head. */
static double ref_a2a_bytes(int64_t L, int U, int64_t heads, int64_t hd, int64_t layers, double e) {
    int64_t Ll = (L + 48 * U - 1) / (48 * U) * 48; /* every rank: a multiple of 48 tokens */
    double per_a2a = 0;
    for (int dst = 0; dst < U; dst++) {
        if (dst == 0) continue; /* rank 0's view: itself is not a transfer */
        for (int64_t hh = 0; hh < heads; hh++)
            if (hh / (heads / U) == dst) per_a2a += (double)Ll * (double)hd * e;
    }
    return (double)layers * 4 /* q, k, v in; o back */ * per_a2a;
}

/* bench_dit's FLOP count (PERFORMANCE.md), per rank: Ll query tokens, Lp keys over NH/U heads. */
static double ref_gemm_flops(int64_t Ll, double Lt) {
    const double D = 5120, FF = 13824, l = (double)Ll;
    double block = 8 * l * D * D + 4 * l * D * D + 4 * Lt * D * D + 4 * l * D * FF;
    double small = 2 * l * D * 64 + 2 * (256 * D + 7 * D * D) + 2 * Lt * (4096 * D + D * D) + 2 * l * D * 64;
    return 40 * block + small;
}

static void test_counts(void) {
    /* 848x480, 81 frames: 21 x 30 x 53 = 33390 tokens, which most degrees do not divide */
    pn_inputs in = a14b(80, 848, 480, 81);
    TU_CHECK(in.tokens == 33390 && in.T == 21 && in.h == 60 && in.w == 106, "tokens %lld",
             (long long)in.tokens);
    const int us[8] = {1, 2, 4, 5, 8, 10, 20, 40};
    for (int i = 0; i < 8; i++)
        for (int cp = 0; cp <= 1; cp++) {
            int U = us[i];
            ly_layout l = {LY_SHARED, {U, 0}, cp != 0, 1};
            pn_plan p;
            wf_err e;
            if (pn_evaluate(&in, &l, 1, &p, &e) != WF_OK) {
                TU_CHECK(0, "evaluate U=%d: %s", U, e.msg);
                continue;
            }
            const pn_group *g = &p.group[0];
            int64_t Ll = (33390 + 48 * U - 1) / (48 * U) * 48;
            TU_CHECK(g->tokens_local == Ll && g->tokens_padded == Ll * U, "U=%d Ll %lld", U,
                     (long long)g->tokens_local);
            double a2a = ref_a2a_bytes(33390, U, 40, 128, 40, 2);
            TU_CHECK(rel_eq(g->a2a_bytes, a2a, 1e-12), "U=%d a2a %.6g vs %.6g", U, g->a2a_bytes, a2a);
            double gat = (double)(U - 1) * (double)Ll * 1 * 2 * 2 * 16 * 2; /* pt ph pw Cout e */
            TU_CHECK(rel_eq(g->gather_bytes, gat, 1e-12) || (U == 1 && g->gather_bytes == 0),
                     "U=%d gather %.6g vs %.6g", U, g->gather_bytes, gat);
            double cfgb = cp ? 16.0 * 21 * 60 * 106 * 4 : 0;
            TU_CHECK(g->cfg_bytes == cfgb, "U=%d cfg bytes %.6g", U, g->cfg_bytes);
            int f = cp ? 1 : 2;
            TU_CHECK(g->forwards_per_step == f, "forwards %d", g->forwards_per_step);
            TU_CHECK(rel_eq(g->bytes_step, f * (a2a + gat) + cfgb, 1e-12), "U=%d bytes/step", U);
            TU_CHECK(rel_eq(g->gemm_flops, ref_gemm_flops(Ll, 512), 1e-12), "U=%d gemm %.6g vs %.6g",
                     U, g->gemm_flops, ref_gemm_flops(Ll, 512));
            double Lp = (double)(Ll * U);
            double att = 40 * (4 * Lp * Lp * 128 * (40.0 / U) + 4 * (double)Ll * 512 * 5120);
            TU_CHECK(rel_eq(g->attn_flops, att, 1e-12), "U=%d attention flops", U);
            /* collective bytes per video: steps x bytes/step x ranks + text broadcast + frames */
            double frames = 81.0 * 480 * 848 * 3 * 4 * (p.layout.vae_ranks - 1) / p.layout.vae_ranks;
            double emb = 2.0 * 512 * 4096 * 4 * (g->ranks - 1);
            double bpv = 40.0 * g->bytes_step * g->ranks + frames + emb;
            TU_CHECK(rel_eq(p.bytes_per_video, bpv, 1e-12), "U=%d bytes/video %.6g vs %.6g", U,
                     p.bytes_per_video, bpv);
        }

    /* times: an all-to-all inside one node uses NVLink; U=10 over ranks 0..9 (8 per node) is set
     * by ranks 8 and 9, which have 8 peers off-node and 1 on it */
    pn_inputs t = a14b(16, 1280, 720, 81);
    const pn_cost *c = &t.cost;
    ly_layout l8 = {LY_SHARED, {8, 0}, false, 1}, l10 = {LY_SHARED, {10, 0}, false, 1};
    pn_plan p8, p10;
    wf_err e;
    TU_CHECK(pn_evaluate(&t, &l8, 1, &p8, &e) == WF_OK && pn_evaluate(&t, &l10, 1, &p10, &e) == WF_OK,
             "%s", e.msg);
    /* Ll = ceil(75600 / 48U) 48: 9456 (U 8), 7584 (U 10) */
    double c8 = 9456.0 * 640 * 2, c10 = 7584.0 * 512 * 2;
    double a8 = 2 * 160 * (c->intra_latency + 7 * c8 / c->intra_bw);
    double a10 = 2 * 160 * (c->inter_latency + fmax(1 * c10 / c->intra_bw, 8 * c10 / c->inter_bw));
    TU_CHECK(rel_eq(p8.group[0].t_a2a, a8, 1e-12), "a2a U=8 %.6g vs %.6g", p8.group[0].t_a2a, a8);
    TU_CHECK(rel_eq(p10.group[0].t_a2a, a10, 1e-12), "a2a U=10 %.6g vs %.6g", p10.group[0].t_a2a, a10);
    TU_CHECK(p8.group[0].offnode_peers == 0 && p10.group[0].offnode_peers == 8, "off-node peers %d %d",
             p8.group[0].offnode_peers, p10.group[0].offnode_peers);
    TU_CHECK(rel_eq(p8.group[0].t_step, p8.group[0].t_compute + p8.group[0].t_comm, 1e-12) &&
                 rel_eq(p8.group[0].t_compute,
                        p8.group[0].t_gemm + p8.group[0].t_attn + p8.group[0].t_elem, 1e-12),
             "step = compute + comm");
    /* a shared video: text + all steps + decode; queue 1 = latency */
    TU_CHECK(rel_eq(p8.latency, p8.t_text + 40 * p8.group[0].t_step + p8.t_decode, 1e-12), "latency");
    TU_CHECK(rel_eq(p8.videos_per_hour, 3600 / p8.latency, 1e-9), "queue 1 = latency");
}

static void test_steps(void) {
    pn_inputs in = a14b(1, 1280, 720, 81);
    TU_CHECK(in.steps == 40 && in.steps_high == 13 && in.steps_low == 27 && in.boundary_t == 875.0,
             "40 steps shift 3: %lld high, %lld low", (long long)in.steps_high, (long long)in.steps_low);
    TU_CHECK(in.tokens == 75600 && in.two_experts && in.cfg, "a14b 720p");
    pn_request r;
    pn_request_default(&r);
    r.shift = 12;
    wf_err e;
    TU_CHECK(pl_plan_preset_a14b(&in, &r, &e) == WF_OK && in.steps_high == 26 && in.steps_low == 14,
             "shift 12: %lld high", (long long)in.steps_high);
    r.shift = 0;
    r.boundary = 1.0; /* only transformer_2 */
    TU_CHECK(pl_plan_preset_a14b(&in, &r, &e) == WF_OK && in.steps_high == 0 && in.steps_low == 40, "b=1");
    r.boundary = NAN;
    r.guidance = 1.0;
    TU_CHECK(pl_plan_preset_a14b(&in, &r, &e) == WF_OK && !in.cfg, "guidance 1 turns CFG off");
    pn_request_default(&r);
    r.width = 1000;
    CHECK_FAILS(pl_plan_preset_a14b(&in, &r, &e), e, WF_EINVAL, "width 1000|multiple of 16|try 992 or 1008");
    pn_request_default(&r);
    r.frames = 10;
    CHECK_FAILS(pl_plan_preset_a14b(&in, &r, &e), e, WF_EINVAL, "frames 10|try 9 or 13");
    pn_request_default(&r);
    r.boundary = 1.5;
    CHECK_FAILS(pl_plan_preset_a14b(&in, &r, &e), e, WF_EINVAL, "boundary 1.5");

    /* a model folder: its scheduler decides, and its transformer_2 */
    char path[4200];
    snprintf(path, sizeof path, "%s/tiny-wan22", fixtures);
    dfs_pipeline *p = NULL;
    if (dfs_open(&p, path, &e) != WF_OK) {
        TU_CHECK(0, "%s", e.msg);
        return;
    }
    pn_request_default(&r);
    r.width = 64;
    r.height = 32;
    r.frames = 9;
    r.steps = 7;
    pn_inputs_default(&in);
    TU_CHECK(pl_plan_inputs(&in, p, &r, &e) == WF_OK, "%s", e.msg);
    smp_options so;
    smp_options_default(&so);
    so.steps = 7;
    smp_sampler *s = NULL;
    int64_t hi = 0;
    if (smp_create(&s, &p->scheduler, &so, 4, &e) == WF_OK) {
        for (int i = 0; i < 7; i++) hi += s->timesteps[i] >= 875;
        smp_free(&s);
    }
    TU_CHECK(in.steps_high == hi && in.steps_low == 7 - hi && hi > 0 && hi < 7, "tiny-wan22 %lld high",
             (long long)in.steps_high);
    TU_CHECK(in.model.heads == p->transformer.num_attention_heads && in.model.has_expert_2 &&
                 in.two_experts && in.tokens == 3 * 2 * 4,
             "tiny-wan22 model (tokens %lld)", (long long)in.tokens);
    dfs_close(&p);
    /* a one-expert folder refuses a boundary */
    snprintf(path, sizeof path, "%s/tiny-wan21", fixtures);
    if (dfs_open(&p, path, &e) == WF_OK) {
        r.boundary = 0.5;
        CHECK_FAILS(pl_plan_inputs(&in, p, &r, &e), e, WF_EINVAL, "needs two experts");
        dfs_close(&p);
    }
}

static void test_expert_params(void) {
    pn_inputs in = a14b(1, 1280, 720, 81);
    /* ~14.3e9 per expert, ~5.7e9 umT5-XXL (the published sizes) */
    TU_CHECK(fabs(in.model.expert_params - 14.29e9) < 0.02e9, "expert %.4g", in.model.expert_params);
    TU_CHECK(fabs(in.model.t5_params - 5.68e9) < 0.02e9, "umt5 %.4g", in.model.t5_params);
}

static void test_choose_all(void) {
    for (int q = 0; q < 2; q++)
        for (int world = 1; world <= 64; world++) {
            pn_inputs in = a14b(world, 1280, 720, 81);
            in.queue = q ? 100 : 1;
            pn_plan p;
            wf_err e;
            wf_status st = pn_choose(&in, &p, &e);
            TU_CHECK(st == WF_OK, "%d ranks, queue %lld: %s", world, (long long)in.queue, e.msg);
            if (st) continue;
            ly_limits lim = pn_limits(&in);
            TU_CHECK(ly_check(&p.layout, p.ranks, &lim, &e) == WF_OK, "%d ranks: %s", world, e.msg);
            TU_CHECK(p.replicas * p.ranks <= world && p.idle == world - p.replicas * p.ranks && p.fits,
                     "%d ranks: %d x %d", world, p.replicas, p.ranks);
            TU_CHECK(p.videos_per_hour > 0 && isfinite(p.videos_per_hour), "%d ranks: rate", world);
            /* one world (what `wanfarm generate` asks) */
            in.replicas = 1;
            st = pn_choose(&in, &p, &e);
            TU_CHECK(st == WF_OK && p.replicas == 1, "%d ranks, one world: %s", world, e.msg);
        }
    /* queue 1: more ranks never predict a longer video */
    double prev = INFINITY;
    for (int world = 1; world <= 64; world++) {
        pn_inputs in = a14b(world, 1280, 720, 81);
        pn_plan p;
        wf_err e;
        if (pn_choose(&in, &p, &e)) continue;
        TU_CHECK(p.latency <= prev * (1 + 1e-12), "%d ranks: latency %.3f > %.3f", world, p.latency, prev);
        prev = p.latency;
    }
}

static void test_fixed(void) {
    pn_inputs in = a14b(16, 1280, 720, 81);
    pn_plan p;
    wf_err e;
    in.placement = LY_SPLIT;
    TU_CHECK(pn_choose(&in, &p, &e) == WF_OK && p.layout.placement == LY_SPLIT, "split kept");
    in.placement = PN_FREE;
    in.ulysses[0] = in.ulysses[1] = 4;
    TU_CHECK(pn_choose(&in, &p, &e) == WF_OK && p.layout.ulysses[0] == 4 &&
                 (p.layout.placement == LY_SHARED || p.layout.ulysses[1] == 4),
             "U=4 kept");
    in.ulysses[0] = in.ulysses[1] = PN_FREE;
    in.cfg_parallel = 0;
    TU_CHECK(pn_choose(&in, &p, &e) == WF_OK && !p.layout.cfg_parallel, "no cfg-parallel kept");
    in.cfg_parallel = 1;
    TU_CHECK(pn_choose(&in, &p, &e) == WF_OK && p.layout.cfg_parallel, "cfg-parallel kept");
    in.cfg_parallel = PN_FREE;
    in.vae_ranks = 3;
    TU_CHECK(pn_choose(&in, &p, &e) == WF_OK && p.layout.vae_ranks == 3, "vae 3 kept");
    in.vae_ranks = PN_FREE;
    in.replicas = 2;
    TU_CHECK(pn_choose(&in, &p, &e) == WF_OK && p.replicas == 2 && p.ranks <= 8, "2 worlds kept");
    /* every choice given: exactly that layout */
    pn_inputs f = a14b(16, 1280, 720, 81);
    f.placement = LY_SPLIT;
    f.ulysses[0] = 2;
    f.ulysses[1] = 5;
    f.cfg_parallel = 1;
    f.vae_ranks = 7;
    f.replicas = 1;
    f.allow_idle = false;
    CHECK_FAILS(pn_choose(&f, &p, &e), e, WF_EINVAL, "uses 14 ranks|world has 16");
    f.world = 14;
    TU_CHECK(pn_choose(&f, &p, &e) == WF_OK && p.layout.placement == LY_SPLIT &&
                 p.layout.ulysses[0] == 2 && p.layout.ulysses[1] == 5 && p.layout.cfg_parallel &&
                 p.layout.vae_ranks == 7 && p.ranks == 14,
             "the given layout: %s", e.msg);
    /* broken fixed choices: the rule's message, WF_EINVAL */
    pn_inputs b = a14b(12, 1280, 720, 81);
    b.ulysses[0] = b.ulysses[1] = 3;
    CHECK_FAILS(pn_choose(&b, &p, &e), e, WF_EINVAL, "degree 3 does not divide the 40|valid degrees");
    b = a14b(12, 1280, 720, 81);
    b.vae_ranks = 100;
    CHECK_FAILS(pn_choose(&b, &p, &e), e, WF_EINVAL, "100 VAE decode ranks|must be in 1..");
    b = a14b(1, 1280, 720, 81);
    b.placement = LY_SPLIT;
    CHECK_FAILS(pn_choose(&b, &p, &e), e, WF_EINVAL, "at least 2 ranks");
}

/* The A14B preset with only transformer (no transformer_2, no boundary). */
static pn_inputs one_expert(int world) {
    pn_inputs in = a14b(world, 1280, 720, 81);
    in.model.has_expert_2 = false;
    in.two_experts = false;
    in.steps_high = in.steps;
    in.steps_low = 0;
    in.boundary_t = NAN;
    return in;
}

static void test_one_expert(void) {
    for (int world = 1; world <= 64; world++) {
        pn_inputs in = one_expert(world);
        for (int q = 1; q <= 100; q += 99) {
            in.queue = q;
            pn_plan *v = NULL;
            size_t n = 0;
            wf_err e;
            if (pn_enumerate(&in, &v, &n, &e) != WF_OK) {
                TU_CHECK(0, "%d ranks: %s", world, e.msg);
                continue;
            }
            for (size_t i = 0; i < n; i++)
                TU_CHECK(v[i].layout.placement == LY_SHARED, "%d ranks: split for one expert", world);
            free(v);
        }
    }
    pn_inputs in = one_expert(3);
    in.replicas = 1;
    in.allow_idle = false;
    pn_plan p;
    wf_err e;
    CHECK_FAILS(pn_choose(&in, &p, &e), e, WF_EUNSUPPORTED,
                "no layout of 3 ranks fits: 40 heads are divisible by 1, 2, 4, 5, 8, 10, 20, 40|"
                "two experts|use 2 or 4 ranks");
    in.placement = LY_SPLIT;
    in.allow_idle = true;
    CHECK_FAILS(pn_choose(&in, &p, &e), e, WF_EINVAL, "split needs two experts");
    /* with two experts, 3 ranks split 1 + 2 */
    pn_inputs two = a14b(3, 1280, 720, 81);
    two.replicas = 1;
    two.allow_idle = false;
    TU_CHECK(pn_choose(&two, &p, &e) == WF_OK && p.layout.placement == LY_SPLIT && p.ranks == 3,
             "3 ranks, two experts: %s", e.msg);
}

static void test_memory(void) {
    /* 50 GB: two bf16 experts (57 GB) never fit, so shared is out and split is chosen */
    for (int world = 2; world <= 16; world++) {
        pn_inputs in = a14b(world, 1280, 720, 81);
        in.cost.mem_per_rank = 50e9;
        pn_plan p;
        wf_err e;
        ly_layout sh = {LY_SHARED, {1, 0}, false, 1};
        TU_CHECK(pn_evaluate(&in, &sh, 1, &p, &e) == WF_OK && !p.fits, "shared fits in 50 GB");
        wf_status st = pn_choose(&in, &p, &e);
        TU_CHECK(st == WF_OK && p.layout.placement == LY_SPLIT && p.mem.peak <= 50e9,
                 "%d ranks in 50 GB: %s", world, e.msg);
    }
    pn_inputs in = a14b(1, 1280, 720, 81);
    in.cost.mem_per_rank = 50e9;
    pn_plan p;
    wf_err e;
    CHECK_FAILS(pn_choose(&in, &p, &e), e, WF_EUNSUPPORTED,
                "no layout of 1 rank fits in 50.0 GB|expert weights 57.2|--mem-gb");
    /* at 80 GB one rank holds both experts only with the text encoder staged */
    in.cost.mem_per_rank = 80e9;
    TU_CHECK(pn_choose(&in, &p, &e) == WF_OK && p.text_staged && p.mem.peak <= 80e9, "1 rank 80 GB");
    in.world = 8;
    TU_CHECK(pn_choose(&in, &p, &e) == WF_OK && !p.text_staged, "8 ranks: text encoder resident");
    /* memory parts: experts counted twice for shared, once for split; activations shrink with U */
    ly_layout s1 = {LY_SHARED, {1, 0}, false, 1}, s8 = {LY_SHARED, {8, 0}, false, 8};
    ly_layout sp = {LY_SPLIT, {4, 4}, false, 1};
    pn_plan a, b, c;
    TU_CHECK(pn_evaluate(&in, &s1, 1, &a, &e) == WF_OK && pn_evaluate(&in, &s8, 1, &b, &e) == WF_OK &&
                 pn_evaluate(&in, &sp, 1, &c, &e) == WF_OK,
             "%s", e.msg);
    TU_CHECK(rel_eq(a.mem.experts, 2 * in.model.expert_params * 2, 1e-12) &&
                 rel_eq(c.mem.experts, in.model.expert_params * 2, 1e-12),
             "expert bytes");
    /* U = 8 holds an eighth of the tokens, but also their head-sharded q, k, v, o and the whole
     * sequence's patches and gathered head output: between a fifth and an eighth */
    TU_CHECK(b.mem.dit_act < a.mem.dit_act / 5 && b.mem.dit_act > a.mem.dit_act / 8,
             "activations / U: %g vs %g", b.mem.dit_act, a.mem.dit_act);
    const pn_plan *all[3] = {&a, &b, &c};
    for (int i = 0; i < 3; i++) {
        const pn_mem *m = &all[i]->mem;
        double sum = m->reserve + m->experts + m->text_weights + m->vae_weights + m->video +
                     fmax(m->dit_act, fmax(m->vae_act, m->text_act));
        TU_CHECK(rel_eq(m->peak, sum, 1e-12), "peak = resident + largest stage");
    }
    /* 8 ranks resident: rank 0 holds the text encoder; the VAE decode of rows / V */
    TU_CHECK(b.mem.text_weights > 11e9 && b.mem.vae_act < a.mem.vae_act, "text resident, VAE split");
}

static void test_comparisons(void) {
    /* inside one node, a larger Ulysses degree that divides the heads never slows a step */
    pn_inputs in = a14b(64, 1280, 720, 81);
    const int us[8] = {1, 2, 4, 5, 8, 10, 20, 40};
    double prev = INFINITY;
    for (int i = 0; i < 8; i++) {
        ly_layout l = {LY_SHARED, {us[i], 0}, false, 1};
        pn_plan p;
        wf_err e;
        TU_CHECK(pn_evaluate(&in, &l, 1, &p, &e) == WF_OK, "%s", e.msg);
        TU_CHECK(p.group[0].t_step < prev, "U=%d: step %.4f not faster than %.4f", us[i],
                 p.group[0].t_step, prev);
        prev = p.group[0].t_step;
    }
    /* CFG parallelism halves the compute of a step at the same rank count */
    ly_layout u8 = {LY_SHARED, {8, 0}, false, 1}, u4c = {LY_SHARED, {4, 0}, true, 1};
    pn_plan a, b;
    wf_err e;
    TU_CHECK(pn_evaluate(&in, &u8, 1, &a, &e) == WF_OK && pn_evaluate(&in, &u4c, 1, &b, &e) == WF_OK, "%s", e.msg);
    TU_CHECK(rel_eq(a.group[0].gemm_flops * 2, b.group[0].gemm_flops, 0.01), "U=4 cfg per forward");
    /* split: two groups form a two-stage pipeline: period = max(stages), latency = sum, and a
     * queue of q takes latency + (q - 1) period */
    ly_layout sp = {LY_SPLIT, {4, 4}, true, 8};
    in.queue = 10;
    pn_plan s;
    TU_CHECK(pn_evaluate(&in, &sp, 1, &s, &e) == WF_OK, "%s", e.msg);
    TU_CHECK(rel_eq(s.latency, s.t_stage[0] + s.t_stage[1], 1e-12) &&
                 rel_eq(s.period, fmax(s.t_stage[0], s.t_stage[1]), 1e-12) && s.period < s.latency,
             "split stages");
    TU_CHECK(rel_eq(s.t_stage[0], s.t_text + 13 * s.group[0].t_step + s.t_handoff, 1e-12) &&
                 rel_eq(s.t_stage[1], 27 * s.group[1].t_step + s.t_decode, 1e-12),
             "split stage times");
    TU_CHECK(rel_eq(s.queue_seconds, s.latency + 9 * s.period, 1e-9), "queue of 10: %.4f vs %.4f",
             s.queue_seconds, s.latency + 9 * s.period);
    TU_CHECK(rel_eq(s.videos_per_hour, 10 * 3600 / s.queue_seconds, 1e-12), "videos/hour");
    /* the split pipeline beats the same 16 ranks as one shared group for a long queue of these
     * (13 high, 27 low) steps only if its stages balance: 4+4 does not, so here shared wins */
    ly_layout sh = {LY_SHARED, {8, 0}, true, 16};
    pn_plan h;
    TU_CHECK(pn_evaluate(&in, &sh, 1, &h, &e) == WF_OK, "%s", e.msg);
    TU_CHECK(s.period > h.period * 0.5 && s.period < h.period * 1.5, "split period in range");
    /* replicas: 4 node-aligned worlds of 8 take ceil(q / 4) videos each */
    ly_layout u4 = {LY_SHARED, {4, 0}, true, 8};
    in.queue = 10;
    pn_plan r;
    TU_CHECK(pn_evaluate(&in, &u4, 4, &r, &e) == WF_OK, "%s", e.msg);
    TU_CHECK(rel_eq(r.queue_seconds, r.latency + 2 * r.period, 1e-9) && r.idle == 32,
             "4 worlds, queue 10: %.4f vs %.4f", r.queue_seconds, r.latency + 2 * r.period);
}

/* The planner pads tokens by the rule the DiT's Ulysses forward uses, with the quantum it is
 * given: the CPU backend's (the default), and others (a GPU backend's may differ). */
static void test_row_quantum(void) {
    wk_backend *be = NULL;
    wf_err e;
    TU_CHECK(wk_backend_cpu_new(&be, 1, &e) == WF_OK, "%s", e.msg);
    if (!be) return;
    pn_inputs in;
    pn_inputs_default(&in);
    TU_CHECK(in.row_quantum == be->row_quantum, "default row quantum %lld, the CPU backend's %d",
             (long long)in.row_quantum, be->row_quantum);
    const int64_t qs[] = {1, 8, 48, 128};
    const int64_t Ls[] = {1, 47, 48, 49, 70, 4000, 75600};
    for (size_t a = 0; a < sizeof qs / sizeof *qs; a++)
        for (size_t b = 0; b < sizeof Ls / sizeof *Ls; b++)
            for (int U = 1; U <= 8; U++) {
                in.row_quantum = qs[a];
                in.tokens = Ls[b];
                int64_t p = pn_tokens_per_rank(&in, U), d = dit_tokens_per_rank(Ls[b], U, qs[a]);
                TU_CHECK(p == d && p % qs[a] == 0 && p * U >= Ls[b] && (p - qs[a]) * U < Ls[b],
                         "q %lld L %lld U %d: planner %lld, DiT %lld", (long long)qs[a],
                         (long long)Ls[b], U, (long long)p, (long long)d);
            }
    wk_backend_destroy(&be);
}

/* The planner's formulas (no model at hand: bench_scaling, `wanfarm plan --preset`) against the
 * implementation's own sizes (pl_plan_use_exact: the DiT's and umT5's arenas, which pl_dist
 * allocates): the DiT's within 0.5% at A14B width for every Ulysses degree, row cut and
 * resolution, the text encoder's within 10%. (The decode's formula is per pixel, measured on the
 * Wan2.1 VAE: bench/PERFORMANCE.md.) */
static void test_stage_formulas(void) {
    dfs_pipeline cfg;
    pl_preset_a14b_config(&cfg);
    const int64_t sizes[][3] = {{1280, 720, 81}, {832, 480, 81}, {480, 320, 17}};
    const int64_t qs[] = {1, 48};
    for (size_t k = 0; k < 3; k++)
        for (size_t a = 0; a < 2; a++)
            for (int U = 1; U <= 8; U *= 2) {
                pn_inputs in = a14b(8, sizes[k][0], sizes[k][1], sizes[k][2]);
                in.row_quantum = qs[a];
                ly_layout l = {LY_SHARED, {U, 0}, false, 1};
                pn_mem f = pn_mem_of_rank(&in, &l, false, 0);
                pl_plan_exact x = {&cfg, NULL, qs[a]};
                pl_plan_use_exact(&in, &x);
                pn_mem e = pn_mem_of_rank(&in, &l, false, 0);
                TU_CHECK(e.dit_act > 0 && rel_eq(f.dit_act, e.dit_act, 5e-3),
                         "%lldx%lld U %d q %lld: DiT formula %.4g B, arena %.4g B",
                         (long long)sizes[k][0], (long long)sizes[k][1], U, (long long)qs[a],
                         f.dit_act, e.dit_act);
                TU_CHECK(e.text_act > 0 && rel_eq(f.text_act, e.text_act, 0.10),
                         "text encoder formula %.4g B, arena %.4g B", f.text_act, e.text_act);
                TU_CHECK(rel_eq(f.vae_act, e.vae_act, 1e-12), "no VAE: the formula stands");
            }
}

static void test_cost_file(void) {
    char *dir = tu_tmpdir("plan");
    char path[4200];
    snprintf(path, sizeof path, "%s/cost.json", dir);
    const char *good = "{\"gemm_flops\": 1e12, \"inter_bw\": 25e9, \"_source\": \"test\"}";
    tu_write_file(path, good, strlen(good));
    pn_cost c;
    pn_cost_default(&c);
    wf_err e;
    TU_CHECK(pn_cost_load(&c, path, &e) == WF_OK && c.gemm_flops == 1e12 && c.inter_bw == 25e9 &&
                 c.attn_flops == 500e12,
             "cost file: %s", e.msg);
    const char *unknown = "{\"gemm_flop\": 1e12}";
    tu_write_file(path, unknown, strlen(unknown));
    CHECK_FAILS(pn_cost_load(&c, path, &e), e, WF_EFORMAT, "unknown key 'gemm_flop'|gemm_flops");
    const char *neg = "{\"intra_bw\": -1}";
    tu_write_file(path, neg, strlen(neg));
    CHECK_FAILS(pn_cost_load(&c, path, &e), e, WF_EFORMAT, "'intra_bw'|> 0");
    const char *str = "{\"intra_bw\": \"fast\"}";
    tu_write_file(path, str, strlen(str));
    CHECK_FAILS(pn_cost_load(&c, path, &e), e, WF_EFORMAT, "'intra_bw'|must be a number");
    snprintf(path, sizeof path, "%s/absent.json", dir);
    TU_CHECK(pn_cost_load(&c, path, &e) != WF_OK && strstr(e.msg, "absent.json"), "absent: %s", e.msg);
    /* slower GEMMs, slower steps */
    pn_inputs in = a14b(8, 1280, 720, 81);
    ly_layout l = {LY_SHARED, {8, 0}, false, 1};
    pn_plan a, b;
    TU_CHECK(pn_evaluate(&in, &l, 1, &a, &e) == WF_OK, "%s", e.msg);
    in.cost.gemm_flops /= 2;
    TU_CHECK(pn_evaluate(&in, &l, 1, &b, &e) == WF_OK, "%s", e.msg);
    TU_CHECK(rel_eq(b.group[0].t_gemm, 2 * a.group[0].t_gemm, 1e-12), "gemm time scales");
    tu_rmtree(dir);
    free(dir);
}

int main(int argc, char **argv) {
    fixtures = argc > 1 ? argv[1] : "tests/fixtures";
    test_ly_check();
    test_roles();
    test_counts();
    test_steps();
    test_expert_params();
    test_choose_all();
    test_fixed();
    test_one_expert();
    test_memory();
    test_comparisons();
    test_cost_file();
    test_row_quantum();
    test_stage_formulas();
    if (tu_failures) {
        printf("test_plan: %d failures\n", tu_failures);
        return 1;
    }
    printf("test_plan: OK\n");
    return 0;
}
