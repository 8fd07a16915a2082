/* cmd_plan.c: `wanfarm plan`: the placement planner (plan.h) on the command line.
 *
 * Prints the chosen layout for a world of --ranks ranks: per-group step counts, the predicted step
 * time of each group with its compute/communication split, per-rank memory, seconds per video and
 * videos/hour for a queue; --all adds every valid candidate, ranked; --json prints one JSON object
 * instead. Choices given on the command line (--placement, --ulysses, --cfg-parallel, --vae-ranks,
 * --replicas) are kept; the planner picks the rest.
 * Exit codes: 0 a plan was printed; 1 the model folder or cost file is bad, or no layout fits;
 * 2 bad command line (including values the model cannot take, and fixed choices that break a
 * layout rule).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "diffusers.h"
#include "pl_plan.h"

#define PROG "wanfarm plan"

static void help(void) {
    printf("usage: wanfarm plan --ranks N [options]\n\n"
           "Chooses how N ranks generate videos (placement, Ulysses and CFG degrees, VAE decode\n"
           "ranks, worker worlds) and predicts step time, memory and videos/hour.\n"
           "The cost model and its stated defaults: bench/PERFORMANCE.md.\n\n"
           "  --ranks N              ranks (GPUs) available\n"
           "  --ranks-per-node R     ranks per node (default 8); rank r is on node r / R\n"
           "  --mem-gb G             device memory per rank in GB of 1e9 bytes (default: the cost\n"
           "                         model's, 80)\n"
           "  --model DIR            plan for a Diffusers WanPipeline folder (its configs; its VAE\n"
           "                         for the decode's exact memory)\n"
           "  --preset a14b          plan for Wan2.2-T2V-A14B without a folder (the default)\n"
           "  --size WxH             video size (default 1280x720)\n"
           "  --frames F             4k+1 frames (default 81)\n"
           "  --steps S              denoising steps (default 40)\n"
           "  --boundary B           expert boundary ratio in [0, 1] (default: the model's)\n"
           "  --shift S              sampler shift (default: the scheduler's)\n"
           "  --guidance G           CFG scale; <= 1 turns CFG off (default 5)\n"
           "  --text-len N           text tokens (default 512)\n"
           "  --queue Q              videos to plan for (default 1: latency)\n"
           "  --cost FILE.json       cost model parameters (keys: bench/PERFORMANCE.md)\n"
           "fixed choices (the planner picks what is not given):\n"
           "  --placement shared|split\n"
           "  --ulysses N | H,L      Ulysses degree (both groups, or high,low with split)\n"
           "  --cfg-parallel | --no-cfg-parallel\n"
           "  --vae-ranks N          ranks of the decoding group that decode\n"
           "  --replicas N           independent worker worlds of the layout\n"
           "  --no-idle              every rank must be used (no idle ranks)\n"
           "output:\n"
           "  --all                  also every valid candidate, best first\n"
           "  --json                 one JSON object on stdout\n"
           "exit codes: 0 plan printed, 1 bad model/cost file or no layout fits, 2 bad command line\n");
}

#define usage_err(...) cmd_usage_err(PROG, __VA_ARGS__)

static void print_candidates(const pn_plan *v, size_t n, FILE *f) {
    fprintf(f, "\ncandidates (%zu, best first):\n", n);
    fprintf(f, "  %4s  %-44s %4s %4s %5s %9s %9s %10s %9s %8s\n", "#", "layout", "rk", "wld",
            "idle", "step(s)", "comm%", "latency(s)", "videos/h", "GB/rank");
    for (size_t i = 0; i < n; i++) {
        char lay[160];
        ly_format(&v[i].layout, lay, sizeof lay);
        const pn_group *g = &v[i].group[0];
        fprintf(f, "  %4zu  %-44s %4d %4d %5d %9.3f %8.1f%% %10.1f %9.2f %8.1f\n", i + 1, lay,
                v[i].ranks, v[i].replicas, v[i].idle, g->t_step, 100.0 * g->t_comm / g->t_step,
                v[i].latency, v[i].videos_per_hour, v[i].mem.peak / 1e9);
    }
}

/* What the command line asks for. */
typedef struct plan_args {
    pn_inputs in;   /* the world and the fixed choices (the model and request come later) */
    pn_request r;
    const char *model, *preset, *cost;
    bool json, all, have_ranks, help;
    double mem_gb;  /* NaN: the cost model's */
    pl_pipeline *shell;   /* --model: its configs and VAE, for the exact stage sizes */
    pl_plan_exact exact;
} plan_args;

/* --ulysses N (both groups) or HIGH,LOW (placement split). */
static int parse_ulysses(const char *v, pn_inputs *in) {
    const char *c = strchr(v, ',');
    bool ok;
    if (c) {
        char b0[32];
        size_t n0 = (size_t)(c - v);
        ok = n0 > 0 && n0 < sizeof b0;
        if (ok) {
            memcpy(b0, v, n0);
            b0[n0] = 0;
            ok = cmd_parse_int(b0, 1, 1000000, &in->ulysses[0]) &&
                 cmd_parse_int(c + 1, 1, 1000000, &in->ulysses[1]);
        }
        if (ok && in->placement == LY_SHARED)
            return usage_err("--ulysses '%s': two degrees (high,low) need placement split%s", v, "");
        if (ok && in->placement == PN_FREE) in->placement = LY_SPLIT;
    } else {
        ok = cmd_parse_int(v, 1, 1000000, &in->ulysses[0]);
        in->ulysses[1] = in->ulysses[0];
    }
    if (!ok) return usage_err("--ulysses '%s' must be N or HIGH,LOW (integers >= 1)%s", v, "");
    return WF_EXIT_OK;
}

/* One option with a value; WF_EXIT_OK or WF_EXIT_USAGE after the message. */
static int parse_valued(plan_args *p, const char *a, const char *v) {
    pn_inputs *in = &p->in;
    pn_request *r = &p->r;
    bool ok = true;
    if (!strcmp(a, "--ranks")) ok = p->have_ranks = cmd_parse_int(v, 1, 1000000, &in->world);
    else if (!strcmp(a, "--ranks-per-node")) ok = cmd_parse_int(v, 1, 1000000, &in->ranks_per_node);
    else if (!strcmp(a, "--mem-gb")) ok = cmd_parse_f64(v, &p->mem_gb) && p->mem_gb > 0;
    else if (!strcmp(a, "--model")) p->model = v;
    else if (!strcmp(a, "--preset")) {
        if (strcmp(v, "a14b")) return usage_err("--preset '%s': the presets are: a14b%s", v, "");
        p->preset = v;
    } else if (!strcmp(a, "--size")) {
        char why[160];
        if (!cmd_parse_size(v, &r->width, &r->height, why, sizeof why))
            return usage_err("--size '%s' %s", v, why);
    } else if (!strcmp(a, "--frames")) ok = cmd_parse_i64(v, &r->frames) && r->frames >= 1;
    else if (!strcmp(a, "--steps")) ok = cmd_parse_i64(v, &r->steps) && r->steps >= 1;
    else if (!strcmp(a, "--boundary"))
        ok = cmd_parse_f64(v, &r->boundary) && r->boundary >= 0 && r->boundary <= 1;
    else if (!strcmp(a, "--shift")) ok = cmd_parse_f64(v, &r->shift) && r->shift > 0;
    else if (!strcmp(a, "--guidance")) ok = cmd_parse_f64(v, &r->guidance);
    else if (!strcmp(a, "--text-len")) ok = cmd_parse_i64(v, &r->text_len) && r->text_len >= 1;
    else if (!strcmp(a, "--queue"))
        ok = cmd_parse_i64(v, &in->queue) && in->queue >= 1 && in->queue <= 1000000000;
    else if (!strcmp(a, "--cost")) p->cost = v;
    else if (!strcmp(a, "--placement")) {
        if (!strcmp(v, "shared")) in->placement = LY_SHARED;
        else if (!strcmp(v, "split")) in->placement = LY_SPLIT;
        else return usage_err("--placement '%s': use shared or split%s", v, "");
    } else if (!strcmp(a, "--ulysses")) return parse_ulysses(v, in);
    else if (!strcmp(a, "--vae-ranks")) ok = cmd_parse_int(v, 1, 1000000, &in->vae_ranks);
    else if (!strcmp(a, "--replicas")) ok = cmd_parse_int(v, 1, 1000000, &in->replicas);
    else return usage_err("unknown option '%s'%s", a, "");
    if (!ok) return usage_err("%s: bad value '%s'", a, v);
    return WF_EXIT_OK;
}

/* The command line into p; WF_EXIT_OK (p->help: --help was asked) or WF_EXIT_USAGE. */
static int parse_args(int argc, char **argv, plan_args *p) {
    memset(p, 0, sizeof *p);
    pn_inputs_default(&p->in);
    pn_request_default(&p->r);
    p->mem_gb = NAN;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            p->help = true;
            return WF_EXIT_OK;
        }
        if (!strcmp(a, "--json")) p->json = true;
        else if (!strcmp(a, "--all")) p->all = true;
        else if (!strcmp(a, "--cfg-parallel")) p->in.cfg_parallel = 1;
        else if (!strcmp(a, "--no-cfg-parallel")) p->in.cfg_parallel = 0;
        else if (!strcmp(a, "--no-idle")) p->in.allow_idle = false;
        else {
            if (strncmp(a, "--", 2)) return usage_err("unexpected argument '%s'%s", a, "");
            if (i + 1 == argc) return usage_err("%s needs a value%s", a, "");
            int rc = parse_valued(p, a, argv[++i]);
            if (rc != WF_EXIT_OK) return rc;
        }
    }
    if (!p->have_ranks) return usage_err("missing --ranks N%s%s", "", "");
    if (p->model && p->preset) return usage_err("--model and --preset exclude each other%s%s", "", "");
    if (p->in.placement == LY_SHARED && p->in.ulysses[0] != p->in.ulysses[1] &&
        p->in.ulysses[1] != PN_FREE)
        return usage_err("--ulysses: placement shared has one degree%s%s", "", "");
    return WF_EXIT_OK;
}

/* The cost model, the memory per rank and the model's and request's numbers into p->in;
 * WF_EXIT_OK, or the exit code after the message. */
static int fill_inputs(plan_args *p) {
    pn_inputs *in = &p->in;
    wf_err err;
    if (p->cost && pn_cost_load(&in->cost, p->cost, &err)) {
        fprintf(stderr, PROG ": --cost: %s\n", err.msg);
        return WF_EXIT_FAIL;
    }
    if (!isnan(p->mem_gb)) in->cost.mem_per_rank = p->mem_gb * 1e9;
    if (in->cost.mem_reserve >= in->cost.mem_per_rank) {
        fprintf(stderr, PROG ": --mem-gb %g: must be more than the runtime reserve of %.1f GB (see "
                "--help)\n", p->mem_gb, in->cost.mem_reserve / 1e9);
        return WF_EXIT_USAGE;
    }
    wf_status st;
    if (p->model) {
        /* the configs and, for the decode's exact activations, the VAE (mapped, not copied);
         * without a loadable VAE the planner's per-pixel formula stands in */
        if (pl_open_parts(&p->shell, p->model, NULL, 1, PL_PART_VAE, &err)) {
            wf_err e2;
            if (pl_open_parts(&p->shell, p->model, NULL, 1, 0, &e2)) {
                fprintf(stderr, PROG ": %s\n", e2.msg);
                return WF_EXIT_FAIL;
            }
            fprintf(stderr, PROG ": note: the VAE's decode memory is estimated (%s)\n", err.msg);
        }
        st = pl_plan_inputs(in, p->shell->cfg, &p->r, &err);
        p->exact = (pl_plan_exact){p->shell->cfg, p->shell->vae, in->row_quantum};
        pl_plan_use_exact(in, &p->exact);
    } else {
        st = pl_plan_preset_a14b(in, &p->r, &err);
    }
    if (st) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        return st == WF_EINVAL ? WF_EXIT_USAGE : WF_EXIT_FAIL;
    }
    return WF_EXIT_OK;
}

static void print_json(const pn_inputs *in, const pn_plan *v, size_t n, bool all) {
    json_t *o = json_object(), *req = json_object();
    json_object_set_new(o, "model", json_string(in->model.name));
    json_object_set_new(req, "width", json_integer(in->width));
    json_object_set_new(req, "height", json_integer(in->height));
    json_object_set_new(req, "frames", json_integer(in->frames));
    json_object_set_new(req, "latent", json_pack("[IIII]", (json_int_t)in->model.in_channels,
                                                 (json_int_t)in->T, (json_int_t)in->h,
                                                 (json_int_t)in->w));
    json_object_set_new(req, "tokens", json_integer(in->tokens));
    json_object_set_new(req, "text_len", json_integer(in->text_len));
    json_object_set_new(req, "steps", json_integer(in->steps));
    json_object_set_new(req, "steps_high", json_integer(in->steps_high));
    json_object_set_new(req, "steps_low", json_integer(in->steps_low));
    json_object_set_new(req, "boundary_t",
                        isnan(in->boundary_t) ? json_null() : json_real(in->boundary_t));
    json_object_set_new(req, "shift", json_real(in->shift));
    json_object_set_new(req, "cfg", json_boolean(in->cfg));
    json_object_set_new(req, "queue", json_integer(in->queue));
    json_object_set_new(o, "request", req);
    json_object_set_new(o, "world", json_integer(in->world));
    json_object_set_new(o, "ranks_per_node", json_integer(in->ranks_per_node));
    json_object_set_new(o, "cost", pn_cost_json(&in->cost));
    json_object_set_new(o, "plan", pn_plan_json(&v[0]));
    if (all) {
        json_t *c = json_array();
        for (size_t i = 0; i < n; i++) json_array_append_new(c, pn_plan_json(&v[i]));
        json_object_set_new(o, "candidates", c);
    }
    char *s = json_dumps(o, JSON_INDENT(1) | JSON_REAL_PRECISION(12));
    if (s) puts(s);
    free(s);
    json_decref(o);
}

static void print_text(const pn_inputs *in, const pn_plan *v, size_t n, bool all) {
    int nodes = (in->world + in->ranks_per_node - 1) / in->ranks_per_node;
    printf("wanfarm plan: %d rank%s (%d per node, %d node%s), %.1f GB per rank; %s\n", in->world,
           in->world == 1 ? "" : "s", in->ranks_per_node, nodes, nodes == 1 ? "" : "s",
           in->cost.mem_per_rank / 1e9, in->model.name);
    printf("request: %lldx%lld, %lld frames -> latent %lldx%lldx%lldx%lld, %lld tokens (text "
           "%lld); CFG %s\n",
           (long long)in->width, (long long)in->height, (long long)in->frames,
           (long long)in->model.in_channels, (long long)in->T, (long long)in->h, (long long)in->w,
           (long long)in->tokens, (long long)in->text_len,
           in->cfg ? "on (2 passes per step)" : "off");
    if (isnan(in->boundary_t))
        printf("steps: %lld, one expert (shift %g)\n", (long long)in->steps, in->shift);
    else
        printf("steps: %lld (shift %g): %lld high-noise (t >= %g), %lld low-noise\n",
               (long long)in->steps, in->shift, (long long)in->steps_high, in->boundary_t,
               (long long)in->steps_low);
    printf("cost model: %s\n\n", in->cost.source);
    pn_print(&v[0], stdout);
    if (all) print_candidates(v, n, stdout);
}

int cmd_plan(int argc, char **argv) {
    plan_args p;
    int rc = parse_args(argc, argv, &p);
    if (rc != WF_EXIT_OK) return rc;
    if (p.help) {
        help();
        return WF_EXIT_OK;
    }
    if ((rc = fill_inputs(&p)) != WF_EXIT_OK) {
        pl_close(&p.shell);
        return rc;
    }
    pn_plan *v = NULL;
    size_t n = 0;
    wf_err err;
    wf_status st = pn_enumerate(&p.in, &v, &n, &err);
    if (st) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        pl_close(&p.shell);
        return st == WF_EINVAL ? WF_EXIT_USAGE : WF_EXIT_FAIL;
    }
    if (p.json) print_json(&p.in, v, n, p.all);
    else print_text(&p.in, v, n, p.all);
    free(v);
    pl_close(&p.shell);
    return WF_EXIT_OK;
}
