#!/bin/bash
# test_dist.sh: `wanfarm generate` under mpirun (the CLI side of pl_dist.h).
#   usage: test_dist.sh WANFARM MPIEXEC
# Checks, on a random-weight model written by `wanfarm mkmodel`:
#   1. a queue of two videos in split placement over 2 ranks: the high-noise group (rank 0) runs
#      video 1's steps while the low-noise group (rank 1) runs video 0's (overlapping step times in
#      the JSON progress log), and each video's final latents equal a one-process run's;
#   2. the planner's choice (no layout flags) over 2 and 3 ranks equals one process, and so do two
#      worker worlds in one MPI job (--replicas 2);
#   3. bad layouts fail fast on every rank with a clear message and exit code 2, never hanging:
#      more ranks than the layout uses, a Ulysses degree that does not divide the 12 heads, split on
#      one rank, more decode ranks than the group has;
#   4. `wanfarm devices` under mpirun: one line per rank with its node rank and GPU binding;
#   5. GPU ranks: without a GPU, --device cuda fails on every rank and bf16 is a usage error; with
#      one, shared + Ulysses 2, split and CFG-parallel on two ranks sharing it (fp32) equal the
#      one-process CPU run within 1e-5;
#   6. each rank's measured peak memory is within 10% of the planner's prediction for it
#      (shared Ulysses 2 with a parallel decode, CFG parallel, split 1 + 2, latents only without
#      a decode), on GPU ranks too.
set -u
WF=$1
MPIEXEC=$2
SCRIPTS=$(cd "$(dirname "$0")/../scripts" && pwd)
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
TMP=$(mktemp -d "${TMPDIR:-/tmp}/wf_test_dist.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

"$WF" mkmodel --preset tiny12 --seed 3 "$TMP/model" >/dev/null 2>&1 || { echo "FAIL: mkmodel"; exit 1; }
GEN=(generate --model "$TMP/model" --size 96x96 --frames 9 --steps 6 --guidance 2
     --max-sequence-length 16)

same_latents() { # a.h5 b.h5: /latents within 1e-5 (identical with OpenBLAS's Haswell/Zen cores)
    "$SCRIPTS/compare_latents.py" "$1" "$2" 1e-5 >/dev/null
}

# ---- 1. two videos, split placement: pipelined, and equal to one process ----
"$WF" "${GEN[@]}" --prompt "a red fox" --count 2 --seed 7 --save-latents "$TMP/one.h5" \
    2>"$TMP/one.err" || fail "one-process run: $(tail -1 "$TMP/one.err")"
timeout 300 "$MPIEXEC" -np 2 "$WF" "${GEN[@]}" --prompt "a red fox" --count 2 --seed 7 \
    --placement split --ulysses 1 --no-cfg-parallel --vae-ranks 1 --json-progress \
    --save-latents "$TMP/split.h5" --out "$TMP/split.mp4" >"$TMP/split.json" 2>"$TMP/split.err"
rc=$?
[ $rc -eq 0 ] || fail "split run exited $rc: $(tail -3 "$TMP/split.err")"
for k in 0 1; do
    [ -s "$TMP/split-$k.mp4" ] || fail "split run: no $TMP/split-$k.mp4"
    same_latents "$TMP/one-$k.h5" "$TMP/split-$k.h5" || fail "video $k: split latents differ from one process"
done
python3 - "$TMP/split.json" <<'EOF' || fail "split run: the two groups did not work at the same time"
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"event":"step"' in l]
def span(job, group):
    s = [e for e in steps if e["job"] == job and e["group"] == group]
    if not s: sys.exit("no steps of job %d on group %d" % (job, group))
    return min(e["wall_end"] - e["step_seconds"] for e in s), max(e["wall_end"] for e in s)
hi1, lo0 = span(1, 0), span(0, 1)
overlap = min(hi1[1], lo0[1]) - max(hi1[0], lo0[0])
print("high group on video 1: %.3f..%.3f s; low group on video 0: %.3f..%.3f s; overlap %.3f s"
      % (hi1[0] - hi1[0], hi1[1] - hi1[0], lo0[0] - hi1[0], lo0[1] - hi1[0], overlap))
assert {e["group"] for e in steps if e["expert"] == "transformer"} == {0}
assert {e["group"] for e in steps if e["expert"] == "transformer_2"} == {1}
sys.exit(0 if overlap > 0 else 1)
EOF

# ---- 1b. the per-step collective bytes in the progress log equal the formula, and the planner's
# prediction (the "plan" record, whose rows are named as the step records') says the same ----
# shared U=2 without CFG parallelism: 2 forwards per step, each 4 layers' all-to-alls and the head
# all-gather (bench/PERFORMANCE.md), computed here from the model's config.json
timeout 300 "$MPIEXEC" -np 2 "$WF" "${GEN[@]}" --prompt "a red fox" --seed 7 --placement shared \
    --ulysses 2 --no-cfg-parallel --vae-ranks 1 --json-progress --save-latents "$TMP/u2.h5" \
    >"$TMP/u2.json" 2>"$TMP/u2.err" || fail "shared U=2: $(tail -2 "$TMP/u2.err")"
python3 - "$TMP/u2.json" "$TMP/model/transformer/config.json" <<'EOF' || fail "shared U=2: comm_bytes per step differ from the formula"
import json, math, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"event":"step"' in l]
c = json.load(open(sys.argv[2]))
D, layers = c["num_attention_heads"] * c["attention_head_dim"], c["num_layers"]
pt, ph, pw = c["patch_size"]
T, h, w, U = (9 - 1) // 4 + 1, 96 // 8, 96 // 8, 2           # --frames 9 --size 96x96
L = (T // pt) * (h // ph) * (w // pw)
Ll = math.ceil(L / (48 * U)) * 48
per_fwd = 4 * layers * (U - 1) * Ll * (D // U) * 4 + (U - 1) * Ll * pt * ph * pw * c["out_channels"] * 4
want = 2 * per_fwd                                            # CFG on, not parallel: 2 forwards
got = {e["comm_bytes"] for e in steps}
plan = [json.loads(l) for l in open(sys.argv[1]) if '"event":"plan"' in l]
pred = {g["comm_bytes"] for p in plan for g in p["groups"]}
print("comm_bytes per step:", sorted(got), "formula:", want, "the planner's:", sorted(pred))
keys = ("step_seconds", "gemm_seconds", "attention_seconds", "other_seconds", "alltoall_seconds")
ok = len(plan) == 1 and pred == {want} and all(k in g for g in plan[0]["groups"] for k in keys)
sys.exit(0 if steps and got == {want} and ok and all(e["comm_seconds"] >= 0 for e in steps) else 1)
EOF

# ---- 2. the planner's layout equals one process ----
for np in 2 3; do
    timeout 300 "$MPIEXEC" -np $np "$WF" "${GEN[@]}" --prompt "a red fox" --count 2 --seed 7 \
        --save-latents "$TMP/plan$np.h5" >/dev/null 2>"$TMP/plan$np.err" ||
        fail "np $np with the planner: $(tail -2 "$TMP/plan$np.err")"
    grep -q "layout" "$TMP/plan$np.err" || fail "np $np: the chosen layout is not printed"
    for k in 0 1; do
        same_latents "$TMP/one-$k.h5" "$TMP/plan$np-$k.h5" || fail "np $np video $k differs from one process"
    done
done

# ---- 2b. two worker worlds of one rank each in one MPI job, videos dealt round-robin ----
timeout 300 "$MPIEXEC" -np 2 "$WF" "${GEN[@]}" --prompt "a red fox" --count 2 --seed 7 \
    --placement shared --ulysses 1 --no-cfg-parallel --vae-ranks 1 --replicas 2 \
    --save-latents "$TMP/rep.h5" >/dev/null 2>"$TMP/rep.err" ||
    fail "2 replicas: $(tail -2 "$TMP/rep.err")"
grep -q "2 worker worlds of 1 ranks" "$TMP/rep.err" || fail "2 replicas: not announced"
for k in 0 1; do
    same_latents "$TMP/one-$k.h5" "$TMP/rep-$k.h5" || fail "2 replicas: video $k differs from one process"
done

# ---- 3. bad layouts: exit 2, one clear line, no hang ----
bad() { # np want-text args...
    local np=$1 want=$2
    shift 2
    timeout 60 "$MPIEXEC" -np "$np" "$WF" "${GEN[@]}" --prompt x --seed 1 --out "$TMP/bad.mp4" \
        "$@" >/dev/null 2>"$TMP/bad.err"
    local rc=$?
    [ $rc -ne 124 ] || { fail "np $np $*: hung (killed after 60 s)"; return; }
    [ $rc -eq 2 ] || fail "np $np $*: exit $rc, expected 2: $(grep -v '^-\|^ \|^$' "$TMP/bad.err" | head -2)"
    grep -q -- "$want" "$TMP/bad.err" || fail "np $np $*: no '$want' in: $(head -3 "$TMP/bad.err")"
    [ ! -e "$TMP/bad.mp4" ] || fail "np $np $*: wrote an output"
}
bad 3 "too many ranks" --placement shared --ulysses 1 --no-cfg-parallel --vae-ranks 1
bad 2 "start more ranks" --placement split --ulysses 2 --no-cfg-parallel --vae-ranks 1
bad 3 "valid degrees: 1, 2, 3" --placement shared --ulysses 5 --no-cfg-parallel --vae-ranks 1
bad 1 "at least 2 ranks" --placement split --ulysses 1 --no-cfg-parallel --vae-ranks 1
bad 2 "VAE decode ranks" --placement shared --ulysses 2 --no-cfg-parallel --vae-ranks 3
bad 2 "guidance" --placement shared --ulysses 1 --cfg-parallel --vae-ranks 1 --guidance 1
bad 3 "raise --replicas" --placement shared --ulysses 1 --no-cfg-parallel --vae-ranks 1 --replicas 2

# an srun step of several tasks whose MPI does not see them (no PMI plugin): every task would
# otherwise make the same video alone
SLURM_STEP_NUM_TASKS=4 timeout 60 "$WF" "${GEN[@]}" --prompt x --seed 1 --out "$TMP/bad.mp4" \
    >/dev/null 2>"$TMP/srun.err"
rc=$?
[ $rc -eq 2 ] && grep -q "srun started 4 tasks but MPI sees a world of 1" "$TMP/srun.err" ||
    fail "srun without PMI: exit $rc: $(head -2 "$TMP/srun.err")"

# ---- 4. `wanfarm devices` under mpirun: a line per rank with its node rank and GPU, exit 0 on a
# machine without one (the CPU runs); with GPUs, two ranks on one GPU exit 1 naming the fix ----
timeout 60 "$MPIEXEC" -np 3 "$WF" devices >"$TMP/dev.out" 2>"$TMP/dev.err"
rc=$?
ngpu=$(sed -n 's/^devices: \([0-9][0-9]*\)$/\1/p' "$TMP/dev.out")
if [ -z "$ngpu" ]; then # no GPU: every rank says so, none fails
    [ $rc -eq 0 ] || fail "devices under mpirun without a GPU: exit $rc: $(head -2 "$TMP/dev.err")"
    grep -q "^ranks: 3$" "$TMP/dev.out" || fail "devices under mpirun: no 'ranks: 3'"
    for r in 0 1 2; do
        grep -q "^  rank $r: .* local rank $r of 3 -> no GPU" "$TMP/dev.out" ||
            fail "devices under mpirun: no line for rank $r: $(cat "$TMP/dev.out")"
    done
elif [ "$ngpu" -lt 3 ]; then # fewer GPUs than ranks: refused, unless sharing is allowed
    [ $rc -eq 1 ] && grep -q "would share GPU" "$TMP/dev.err" ||
        fail "devices: 3 ranks on $ngpu GPUs: exit $rc, $(head -2 "$TMP/dev.err")"
    WANFARM_SHARE_GPU=1 timeout 60 "$MPIEXEC" -np 3 "$WF" devices >/dev/null 2>&1 ||
        fail "devices: WANFARM_SHARE_GPU=1 did not let 3 ranks share $ngpu GPUs"
else
    [ $rc -eq 0 ] || fail "devices: 3 ranks on $ngpu GPUs: exit $rc"
fi

# ---- 5. GPU ranks: without a GPU, --device cuda fails on every rank naming the fix and bf16 is a
# usage error; with one, every layout on GPU ranks sharing it (--precision fp32) equals the
# one-process CPU run within 1e-5 ----
if [ -z "$ngpu" ]; then
    timeout 60 "$MPIEXEC" -np 2 "$WF" "${GEN[@]}" --prompt x --seed 1 --device cuda \
        --out "$TMP/gpu.mp4" >/dev/null 2>"$TMP/gpu.err"
    rc=$?
    [ $rc -eq 1 ] && grep -q "sees no GPU" "$TMP/gpu.err" && [ ! -e "$TMP/gpu.mp4" ] ||
        fail "--device cuda under mpirun without a GPU: exit $rc: $(head -2 "$TMP/gpu.err")"
    timeout 60 "$MPIEXEC" -np 2 "$WF" "${GEN[@]}" --prompt x --seed 1 --precision bf16 \
        --out "$TMP/gpu.mp4" >/dev/null 2>"$TMP/gpu.err"
    rc=$?
    [ $rc -eq 2 ] && grep -q "bf16 needs GPUs" "$TMP/gpu.err" ||
        fail "--precision bf16 under mpirun without a GPU: exit $rc: $(head -2 "$TMP/gpu.err")"
else
    gpu_layout() { # name args...
        local name=$1
        shift
        WANFARM_SHARE_GPU=1 timeout 300 "$MPIEXEC" -np 2 "$WF" "${GEN[@]}" --prompt "a red fox" \
            --count 2 --seed 7 --device cuda --precision fp32 --save-latents "$TMP/g-$name.h5" \
            "$@" >/dev/null 2>"$TMP/g-$name.err" || {
            fail "GPU ranks, $name: $(tail -2 "$TMP/g-$name.err")"
            return
        }
        for k in 0 1; do
            same_latents "$TMP/one-$k.h5" "$TMP/g-$name-$k.h5" ||
                fail "GPU ranks, $name: video $k differs from the CPU's by more than 1e-5"
        done
    }
    gpu_layout shared-ulysses2 --placement shared --ulysses 2 --no-cfg-parallel --vae-ranks 1
    gpu_layout split --placement split --ulysses 1 --no-cfg-parallel --vae-ranks 1
    gpu_layout cfg-parallel --placement shared --ulysses 1 --cfg-parallel --vae-ranks 1
fi

# ---- 6. each rank's peak memory (weights, arenas, a video's buffers; the JSON "memory" event)
# is within 10% of what the planner predicts for that rank, for the main layouts (on GPU ranks
# too when there is a GPU: there the weights and the plug-in's caches count) ----
mem_check() { # name np args...
    local name=$1 np=$2
    shift 2
    local dev=()
    [ -z "$ngpu" ] || dev=(--device cuda --precision fp32)
    WANFARM_SHARE_GPU=1 timeout 300 "$MPIEXEC" -np "$np" "$WF" generate --model "$TMP/model" \
        --size 192x160 --frames 9 --steps 2 --guidance 2 --max-sequence-length 16 \
        --prompt "a red fox" --seed 7 --json-progress "${MEM_OUT[@]}" "${dev[@]}" "$@" \
        >"$TMP/m-$name.json" 2>"$TMP/m-$name.err" || {
        fail "memory, $name: $(tail -2 "$TMP/m-$name.err")"
        return
    }
    python3 - "$TMP/m-$name.json" "$np" <<'EOF' || fail "memory, $name: a rank's peak is not within 10% of the planner's"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"event":"memory"' in l]
if len(ev) != 1: sys.exit("expected one memory event, got %d" % len(ev))
ranks = ev[0]["ranks"]
if len(ranks) != int(sys.argv[2]): sys.exit("memory event for %d ranks" % len(ranks))
bad = 0
for r in ranks:
    if r["idle"]: continue
    p, m = r["predicted_bytes"], r["peak_bytes"]
    ok = p > 0 and abs(m - p) <= 0.10 * p
    bad += not ok
    print("rank %d: peak %.2f MiB, planner %.2f MiB (%+.1f%%), workspace %.2f MiB%s"
          % (r["rank"], m / 2**20, p / 2**20, 100 * (m - p) / p if p else 0,
             r["workspace_bytes"] / 2**20, "" if ok else "  <- off"))
sys.exit(1 if bad else 0)
EOF
}
MEM_OUT=(--out "$TMP/m.mp4")
mem_check shared-u2 2 --placement shared --ulysses 2 --no-cfg-parallel --vae-ranks 2
mem_check cfg-parallel 2 --placement shared --ulysses 1 --cfg-parallel --vae-ranks 1
mem_check split-1-2 3 --placement split --ulysses 1,2 --no-cfg-parallel --vae-ranks 2
MEM_OUT=(--save-latents "$TMP/m.h5") # latents only: no decode stage
mem_check latents-only 2 --placement shared --ulysses 2 --no-cfg-parallel --vae-ranks 2

[ $fails -eq 0 ] && echo "test_dist.sh: OK" || echo "test_dist.sh: $fails failure(s)"
[ $fails -eq 0 ]
