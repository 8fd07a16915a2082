/* layout.c: placement layouts, their rules and the rank roles (see layout.h). */
#include "layout.h"

#include <stdio.h>
#include <string.h>

int ly_groups(const ly_layout *l) { return l->placement == LY_SPLIT ? 2 : 1; }

int ly_group_size(const ly_layout *l, int g) {
    return l->ulysses[g] * (l->cfg_parallel ? 2 : 1);
}

int ly_ranks(const ly_layout *l) {
    int n = ly_group_size(l, 0);
    if (l->placement == LY_SPLIT) n += ly_group_size(l, 1);
    return n;
}

int ly_decode_group(const ly_layout *l) { return l->placement == LY_SPLIT ? 1 : 0; }

/* "1, 2, 3, 4, 6, 12" (divisors of heads up to max) */
static void divisors(int64_t heads, int64_t max, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (int64_t d = 1; d <= heads && d <= max && n + 24 < cap; d++)
        if (heads % d == 0) n += (size_t)snprintf(buf + n, cap - n, "%s%lld", n ? ", " : "", (long long)d);
}

wf_status ly_check(const ly_layout *l, int world, const ly_limits *lim, wf_err *err) {
    const char *gname[2] = {l->placement == LY_SPLIT ? "high-noise group" : "group",
                            "low-noise group"};
    if (l->placement != LY_SHARED && l->placement != LY_SPLIT)
        return wf_fail(err, WF_EINVAL, "unknown placement %d", (int)l->placement);
    if (l->placement == LY_SPLIT) {
        if (!lim->two_experts)
            return wf_fail(err, WF_EINVAL,
                           "placement split needs two experts (transformer and transformer_2 "
                           "with a boundary); this model/request has one: use placement shared");
        if (world < 2)
            return wf_fail(err, WF_EINVAL,
                           "placement split needs at least 2 ranks (one per expert group), the "
                           "world has %d: use placement shared, or start more ranks",
                           world);
    }
    if (l->cfg_parallel && !lim->cfg)
        return wf_fail(err, WF_EINVAL,
                       "CFG parallelism needs classifier-free guidance (guidance > 1), which this "
                       "request turns off: drop --cfg-parallel");
    for (int g = 0; g < ly_groups(l); g++) {
        int64_t u = l->ulysses[g];
        char valid[256];
        divisors(lim->heads, lim->tokens < world ? lim->tokens : world, valid, sizeof valid);
        if (u < 1)
            return wf_fail(err, WF_EINVAL, "%s: Ulysses degree %lld must be >= 1", gname[g],
                           (long long)u);
        if (lim->heads % u)
            return wf_fail(err, WF_EINVAL,
                           "%s: Ulysses degree %lld does not divide the %lld attention heads "
                           "(heads cannot be padded); valid degrees: %s",
                           gname[g], (long long)u, (long long)lim->heads, valid);
        if (u > lim->tokens)
            return wf_fail(err, WF_EINVAL,
                           "%s: Ulysses degree %lld is more than the %lld latent tokens (every "
                           "rank needs at least one): too many ranks for this video size",
                           gname[g], (long long)u, (long long)lim->tokens);
    }
    int need = ly_ranks(l);
    if (need != world) {
        if (l->placement == LY_SPLIT)
            return wf_fail(err, WF_EINVAL,
                           "the layout uses %d ranks (high %d + low %d, Ulysses %d/%d%s) but the "
                           "world has %d: %s",
                           need, ly_group_size(l, 0), ly_group_size(l, 1), l->ulysses[0],
                           l->ulysses[1], l->cfg_parallel ? " x 2 for CFG" : "", world,
                           need < world ? "too many ranks for this layout; raise the degrees or "
                                          "start fewer ranks"
                                        : "start more ranks or lower the degrees");
        return wf_fail(err, WF_EINVAL,
                       "the layout uses %d ranks (Ulysses %d%s) but the world has %d: %s", need,
                       l->ulysses[0], l->cfg_parallel ? " x 2 for CFG" : "", world,
                       need < world ? "too many ranks for this layout; raise the Ulysses degree "
                                      "or start fewer ranks"
                                    : "start more ranks or lower the Ulysses degree");
    }
    int dg = ly_decode_group(l), gs = ly_group_size(l, dg);
    int64_t vmax = gs < lim->latent_h ? gs : lim->latent_h;
    if (l->vae_ranks < 1 || l->vae_ranks > vmax)
        return wf_fail(err, WF_EINVAL,
                       "%d VAE decode ranks: must be in 1..%lld (the decoding %s has %d ranks, the "
                       "latent %lld rows)",
                       l->vae_ranks, (long long)vmax, gname[dg], gs, (long long)lim->latent_h);
    return WF_OK;
}

void ly_format(const ly_layout *l, char *buf, size_t cap) {
    if (l->placement == LY_SPLIT)
        snprintf(buf, cap, "split high U=%d + low U=%d%s, vae %d", l->ulysses[0], l->ulysses[1],
                 l->cfg_parallel ? ", cfg-parallel" : "", l->vae_ranks);
    else
        snprintf(buf, cap, "shared U=%d%s, vae %d", l->ulysses[0],
                 l->cfg_parallel ? ", cfg-parallel" : "", l->vae_ranks);
}

ly_role ly_role_of(const ly_layout *l, int rank) {
    ly_role r;
    memset(&r, 0, sizeof r);
    int g0 = ly_group_size(l, 0);
    r.group = (l->placement == LY_SPLIT && rank >= g0) ? 1 : 0;
    r.group_base = r.group ? g0 : 0;
    r.group_rank = rank - r.group_base;
    r.group_size = ly_group_size(l, r.group);
    r.sp_size = l->ulysses[r.group];
    r.half = l->cfg_parallel ? r.group_rank / r.sp_size : 0;
    r.sp_rank = r.group_rank % r.sp_size;
    bool dgroup = r.group == ly_decode_group(l);
    r.decodes = dgroup && r.group_rank < l->vae_ranks;
    r.writer = dgroup && r.group_rank == 0;
    return r;
}
