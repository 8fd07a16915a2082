#!/usr/bin/env bash
# test_plan_cli.sh: `wanfarm plan`: a plan for every world of 1..64 ranks of the A14B preset,
# exit codes, one-line errors that name the flag or the rule, --json parsed by Python's json module
# and checked for consistency (stdlib only), a model folder, a cost file.
# Usage: test_plan_cli.sh WANFARM FIXTURES_DIR
set -uo pipefail
WF=$1
FX=$2
T=$(mktemp -d "${TMPDIR:-/tmp}/wanfarm-plan-cli-XXXXXX")
trap 'rm -rf "$T"' EXIT
fail=0
. "$(dirname "$0")/cli_lib.sh"

check "plan --help" 0 "$WF" plan --help
expect_out "plan --help" "--ranks N"
check "--help lists plan" 0 "$WF" --help
expect_out "--help lists plan" "plan"

# every world size of the preset gets a plan, for one video and for a queue
for n in $(seq 1 64); do
  check "plan --ranks $n" 0 "$WF" plan --ranks "$n" --preset a14b
  grep -q "^layout: " "$T/out" && grep -q "videos/hour" "$T/out" && grep -q "^memory per rank" "$T/out" \
    || { echo "FAIL: plan --ranks $n printed no layout/memory/rate"; fail=1; }
  check "plan --ranks $n --json --queue 50" 0 "$WF" plan --ranks "$n" --json --queue 50
  python3 - "$T/out" "$n" <<'PY' || fail=1
import json, sys
o = json.load(open(sys.argv[1])); n = int(sys.argv[2]); p = o["plan"]
ok = (p["replicas"] * p["ranks"] + p["idle"] == n == o["world"] and p["fits"]
      and p["memory_bytes"]["peak"] <= p["memory_bytes"]["per_rank"]
      and o["request"]["tokens"] == 75600 and o["request"]["steps_high"] + o["request"]["steps_low"] == 40
      and abs(p["videos_per_hour"] - 50 * 3600 / p["queue_s"]) < 1e-8 * p["videos_per_hour"]
      and all(abs(g["t_step"] - g["t_compute"] - g["t_comm"]) < 1e-8 * g["t_step"] for g in p["groups"])
      and sum(g["ranks"] for g in p["groups"]) == p["ranks"])
if not ok:
    print("FAIL: --ranks %d --json: inconsistent plan %s" % (n, json.dumps(p)[:400])); sys.exit(1)
PY
done

# fixed choices are kept
check "fixed split" 0 "$WF" plan --ranks 16 --placement split --ulysses 4 --cfg-parallel --vae-ranks 5 --json
python3 - "$T/out" <<'PY' || fail=1
import json, sys
p = json.load(open(sys.argv[1]))["plan"]
if not (p["placement"] == "split" and p["ulysses"] == [4, 4] and p["cfg_parallel"] and p["vae_ranks"] == 5):
    print("FAIL: fixed choices not kept: %s" % p["layout"]); sys.exit(1)
PY
check "fixed high,low" 0 "$WF" plan --ranks 7 --ulysses 2,5 --no-idle --replicas 1
expect_out "fixed high,low" "layout: split high U=2 + low U=5"
check "--all" 0 "$WF" plan --ranks 16 --all
expect_out "--all" "candidates ("
check "--all --json" 0 "$WF" plan --ranks 16 --all --json
python3 -c 'import json,sys; o=json.load(open(sys.argv[1])); assert len(o["candidates"]) > 1 and o["candidates"][0] == o["plan"]' "$T/out" \
  || { echo "FAIL: --all --json candidates"; fail=1; }

# bad command lines: exit 2, one line naming the flag
check "no --ranks" 2 "$WF" plan
expect_err "no --ranks" "missing --ranks"
check "--ranks 0" 2 "$WF" plan --ranks 0
expect_err "--ranks 0" "--ranks: bad value '0'"
check "--ranks x" 2 "$WF" plan --ranks x
expect_err "--ranks x" "--ranks: bad value 'x'"
check "unknown option" 2 "$WF" plan --ranks 2 --bogus 1
expect_err "unknown option" "unknown option '--bogus'"
check "--placement" 2 "$WF" plan --ranks 2 --placement ring
expect_err "--placement" "--placement 'ring': use shared or split"
check "--size" 2 "$WF" plan --ranks 2 --size 1280
expect_err "--size" "--size '1280' must be WIDTHxHEIGHT"
check "--preset" 2 "$WF" plan --ranks 2 --preset b14
expect_err "--preset" "the presets are: a14b"
check "--ulysses" 2 "$WF" plan --ranks 2 --ulysses 2,
expect_err "--ulysses" "--ulysses '2,' must be N or HIGH,LOW"
check "--model and --preset" 2 "$WF" plan --ranks 2 --model "$FX/tiny-wan22" --preset a14b
expect_err "--model and --preset" "exclude each other"
check "value without option" 2 "$WF" plan --ranks
expect_err "value without option" "--ranks needs a value"
# values the model cannot take, fixed choices that break a rule: exit 2, the rule's words
check "frames 10" 2 "$WF" plan --ranks 2 --frames 10
expect_err "frames 10" "try 9 or 13"
check "size 1000x720" 2 "$WF" plan --ranks 2 --size 1000x720
expect_err "size 1000x720" "width 1000 must be a positive multiple of 16"
check "--ulysses 3" 2 "$WF" plan --ranks 3 --ulysses 3
expect_err "--ulysses 3" "Ulysses degree 3 does not divide the 40 attention heads"
check "--cfg-parallel without CFG" 2 "$WF" plan --ranks 4 --cfg-parallel --guidance 1
expect_err "--cfg-parallel without CFG" "drop --cfg-parallel"
check "--placement split on one rank" 2 "$WF" plan --ranks 1 --placement split
expect_err "--placement split on one rank" "placement split needs at least 2 ranks"
check "layout bigger than the world" 2 "$WF" plan --ranks 6 --ulysses 8 --placement shared
expect_err "layout bigger than the world" "world has 6"
# no layout: exit 1 and why
check "64 ranks, one world, no idle" 1 "$WF" plan --ranks 64 --replicas 1 --no-idle
expect_err "64 ranks, one world, no idle" "no layout of 64 ranks fits: 40 heads are divisible by 1, 2, 4, 5, 8, 10, 20, 40"
check "too little memory" 1 "$WF" plan --ranks 1 --mem-gb 40
expect_err "too little memory" "no layout of 1 rank fits in 40.0 GB per rank"
check "split when shared does not fit" 0 "$WF" plan --ranks 8 --mem-gb 50
expect_out "split when shared does not fit" "layout: split"

# a model folder (one expert: never split; two experts: its scheduler's step counts)
check "tiny-wan21" 0 "$WF" plan --ranks 4 --model "$FX/tiny-wan21" --size 64x32 --frames 9 --steps 5 --all
expect_out "tiny-wan21" "one expert"
grep -q "split" "$T/out" && { echo "FAIL: split planned for a one-expert model"; fail=1; }
check "tiny-wan22" 0 "$WF" plan --ranks 4 --model "$FX/tiny-wan22" --size 64x32 --frames 9 --steps 5 --json
python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["request"]; assert r["steps_high"]+r["steps_low"]==5 and r["boundary_t"]==875' "$T/out" \
  || { echo "FAIL: tiny-wan22 step counts"; fail=1; }
check "missing model folder" 1 "$WF" plan --ranks 2 --model "$T/nomodel"
expect_err "missing model folder" "no model_index.json"
check "boundary on a one-expert model" 2 "$WF" plan --ranks 2 --model "$FX/tiny-wan21" --size 64x32 --frames 9 --boundary 0.5
expect_err "boundary on a one-expert model" "needs two experts"

# a cost file overrides the stated numbers; a bad one is exit 1 naming the key
echo '{"gemm_flops": 300e12, "attn_flops": 250e12, "_note": "half rates"}' >"$T/cost.json"
check "--cost" 0 "$WF" plan --ranks 8 --cost "$T/cost.json" --json
python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["cost"]; assert c["gemm_flops"]==300e12 and c["_source"].endswith("cost.json")' "$T/out" \
  || { echo "FAIL: --cost not applied"; fail=1; }
echo '{"gemm_flopz": 1}' >"$T/bad.json"
check "--cost unknown key" 1 "$WF" plan --ranks 8 --cost "$T/bad.json"
expect_err "--cost unknown key" "unknown key 'gemm_flopz'"
echo '{"gemm_flops": ' >"$T/broken.json"
check "--cost broken JSON" 1 "$WF" plan --ranks 8 --cost "$T/broken.json"
expect_err "--cost broken JSON" "broken.json"

[ $fail = 0 ] && echo OK || echo FAILED
exit $fail
