/* layout.h: how the ranks of a worker world are arranged to generate videos (prefix ly_).
 *
 * What it is: the placement choices of ../shared/DESIGN.md §2 as one value, its validation, and the
 * role it gives each rank:
 *   - placement shared: one group of every rank; each rank loads both experts.
 *     placement split: a high-noise group (world ranks [0, G0)) and a low-noise group
 *     ([G0, G0 + G1)); each loads only its own expert. The high group hands latents and sampler
 *     state to the low group at the boundary and starts the next video (a two-stage pipeline).
 *   - inside a group of size G = U * (cfg_parallel ? 2 : 1): half = group_rank / U (0 runs the
 *     conditional pass, 1 the unconditional one), sp_rank = group_rank % U is the rank inside its
 *     Ulysses (sequence-parallel) group of degree U.
 *   - the decoding group (shared: the group; split: the low group) decodes on its first vae_ranks
 *     ranks; its rank 0 is the writer (it alone writes files).
 * Rules (ly_check, all with messages that say what would be valid):
 *   U >= 1 divides the head count (Ulysses gives each rank heads/U heads; heads cannot be padded);
 *   U <= tokens (every rank holds at least one token; tokens that do not divide are padded);
 *   the layout's rank count equals the world size; split needs two experts and >= 2 ranks;
 *   cfg_parallel needs CFG (guidance > 1); 1 <= vae_ranks <= min(decoding group, latent rows).
 * What it is not: the planner that picks a layout (plan.h), or the communicators (pl_dist.c).
 * Tested by: tests/test_plan.c (rules), tests/test_dist.sh (bad layouts through the CLI).
 */
#ifndef LY_LAYOUT_H
#define LY_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef enum ly_placement { LY_SHARED = 0, LY_SPLIT } ly_placement;

typedef struct ly_layout {
    ly_placement placement;
    int ulysses[2];    /* Ulysses degree of group 0 (shared or high noise) and group 1 (low noise) */
    bool cfg_parallel; /* each group is two halves: conditional and unconditional passes */
    int vae_ranks;     /* ranks of the decoding group that decode (its first ones) */
} ly_layout;

/* What the rules depend on. */
typedef struct ly_limits {
    int64_t heads;    /* attention heads of the transformer(s) */
    int64_t tokens;   /* sequence length L of the request (latent tokens) */
    int64_t latent_h; /* latent rows (parallel VAE decode splits them) */
    bool two_experts; /* transformer_2 present and a boundary in use */
    bool cfg;         /* guidance > 1 (two passes per step) */
} ly_limits;

int ly_groups(const ly_layout *l);            /* 1 (shared) or 2 (split) */
int ly_group_size(const ly_layout *l, int g); /* U_g * (cfg_parallel ? 2 : 1) */
int ly_ranks(const ly_layout *l);             /* ranks the layout uses */
int ly_decode_group(const ly_layout *l);      /* 0 shared, 1 split */

/* WF_EINVAL with a message naming the rule, the values and the valid choices. */
wf_status ly_check(const ly_layout *l, int world, const ly_limits *lim, wf_err *err);

/* "shared U=4 cfg vae=2" / "split high U=2 + low U=2, cfg, vae=2" */
void ly_format(const ly_layout *l, char *buf, size_t cap);

typedef struct ly_role {
    int group;                /* 0 shared / high noise, 1 low noise */
    int group_rank, group_size;
    int half;                 /* 0 conditional, 1 unconditional (0 without cfg_parallel) */
    int sp_rank, sp_size;     /* inside the Ulysses group */
    bool decodes;             /* one of the vae_ranks of the decoding group */
    bool writer;              /* rank 0 of the decoding group */
    int group_base;           /* world rank of the group's rank 0 */
} ly_role;

/* The role of world rank `rank` (0 <= rank < ly_ranks(l)). */
ly_role ly_role_of(const ly_layout *l, int rank);

#endif
