/* plan_world.h: the coordinator's layout for a job on a world (prefix cp_): the placement planner
 * (coordinator/planner/plan.h) over the model description a world gives in its Hello.
 *
 * What it is: cp_model_from checks a PlanModel from the network (every number positive and
 * within bounds a real model keeps: a hostile Hello cannot make the planner divide by zero or
 * overflow) into a pn_model; cp_layout fills the planner's inputs from it, the world's ranks,
 * memory and rates (CPU ranks: pn_cost_cpu with their threads; GPU ranks: the stated rates) and a
 * job spec (generate's defaults for what it leaves out), fixes placement shared (the only one
 * whose jobs checkpoint for now) and asks pn_choose for the fastest layout that fits.
 * What it is not: the exact activation sizes (the world's own planner, in generate, reads them
 * from its loaded VAE and arenas; this one uses the formulas of bench/PERFORMANCE.md).
 * Tested by: tests/test_worlds.c (a world's hello with a model description: its assignment
 * carries the planner's layout; hostile descriptions refused) and tests/test_farm.sh (the
 * layouts worlds ran equal the ones generate's planner picks).
 */
#ifndef CP_PLAN_WORLD_H
#define CP_PLAN_WORLD_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"
#include "plan.h"
#include "wire.h"

typedef struct cp_world_model {
    pn_model model;
    int64_t row_quantum;
    double cpu_threads; /* 0: GPU ranks */
} cp_world_model;

/* WF_EINVAL naming the first field out of bounds. */
wf_status cp_model_from(const Wanfarm__PlanModel *pm, cp_world_model *out, wf_err *err);
/* The layout for spec on a world of `ranks` ranks with mem bytes each (0: unknown); desc gets
 * it in words. WF_EINVAL when no layout fits (the message is the planner's). */
wf_status cp_layout(const cp_world_model *m, int ranks, double mem, const Wanfarm__JobSpec *spec,
                    ly_layout *out, char *desc, size_t cap, wf_err *err);

#endif
