#!/bin/bash
# test_resume.sh: `wanfarm generate --checkpoint-dir DIR [--checkpoint-every N] [--resume]`.
#   usage: test_resume.sh WANFARM MPIEXEC
# On a random-weight model (wanfarm mkmodel), against the uninterrupted one-process run of the
# same job (its final latents, within 1e-5; the same bits where the BLAS core allows):
#   1. checkpoints every 2 steps change nothing; resuming from the newest (after step 4 of 6)
#      gives the same latents; a damaged newest falls back to .prev (said) with the same result;
#      another prompt's job refuses the file (said) and starts from the noise;
#   2. SIGTERM in the middle of a run: exit 3 after a checkpoint, and --resume finishes it equal;
#   3. layout-independent resume: checkpointed on 2 ranks (CFG parallel) -> resumed on 1 rank,
#      and from 1 rank -> resumed on 3 ranks (Ulysses 3); SIGUSR1 to mpirun: every rank stops
#      at the same step, exit 3, and 1 rank resumes it equal;
#   4. refusals (exit 2): --resume or --checkpoint-every without --checkpoint-dir, --resume
#      without --seed, --checkpoint-dir with placement split.
set -u
WF=$1
MPIEXEC=$2
SCRIPTS=$(cd "$(dirname "$0")/../scripts" && pwd)
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
TMP=$(mktemp -d "${TMPDIR:-/tmp}/wf_test_resume.XXXXXX")
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
same() { "$SCRIPTS/compare_latents.py" "$1" "$2" 1e-5 >/dev/null; }

"$WF" mkmodel --preset tiny12 --seed 3 "$TMP/model" >/dev/null 2>&1 || { echo "FAIL: mkmodel"; exit 1; }
G=(generate --model "$TMP/model" --prompt "a red fox" --size 64x64 --frames 9 --steps 6 --seed 7
   --guidance 3 --threads 1)

# ---- 1. one process ----
"$WF" "${G[@]}" --save-latents "$TMP/ref.h5" 2>"$TMP/ref.err" || fail "reference: $(tail -1 "$TMP/ref.err")"
"$WF" "${G[@]}" --save-latents "$TMP/a.h5" --checkpoint-dir "$TMP/ck1" --checkpoint-every 2 \
    2>"$TMP/a.err" || fail "checkpointed run: $(tail -1 "$TMP/a.err")"
same "$TMP/ref.h5" "$TMP/a.h5" || fail "checkpoints changed the result"
[ "$(grep -c 'checkpoint after step' "$TMP/a.err")" = 2 ] || fail "expected checkpoints after steps 2 and 4"
[ -s "$TMP/ck1/job-0.ckpt.h5" ] && [ -s "$TMP/ck1/job-0.ckpt.h5.prev" ] || fail "no checkpoint and .prev"
"$WF" "${G[@]}" --save-latents "$TMP/b.h5" --checkpoint-dir "$TMP/ck1" --resume 2>"$TMP/b.err" ||
    fail "resume: $(tail -1 "$TMP/b.err")"
grep -q "resuming after step 4 of 6" "$TMP/b.err" || fail "resume did not start after step 4: $(cat "$TMP/b.err")"
same "$TMP/ref.h5" "$TMP/b.h5" || fail "resumed after step 4: latents differ"
python3 - "$TMP/ck1/job-0.ckpt.h5" <<'EOF'  # one flipped byte in the newest
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x20
open(p, "wb").write(b)
EOF
"$WF" "${G[@]}" --save-latents "$TMP/c.h5" --checkpoint-dir "$TMP/ck1" --resume 2>"$TMP/c.err" ||
    fail "resume from .prev: $(tail -1 "$TMP/c.err")"
grep -q "damaged" "$TMP/c.err" && grep -q "resuming after step 2 of 6" "$TMP/c.err" ||
    fail "a damaged newest did not fall back to .prev: $(cat "$TMP/c.err")"
same "$TMP/ref.h5" "$TMP/c.h5" || fail "resumed from .prev: latents differ"
"$WF" "${G[@]/a red fox/a blue fox}" --save-latents "$TMP/d.h5" --checkpoint-dir "$TMP/ck1" --resume \
    2>"$TMP/d.err" || fail "another job: $(tail -1 "$TMP/d.err")"
grep -q "another the job spec" "$TMP/d.err" && grep -q "starting from the noise" "$TMP/d.err" ||
    fail "another prompt's job took the checkpoint: $(cat "$TMP/d.err")"

# ---- 2. SIGTERM mid-run, then --resume ----
L=(generate --model "$TMP/model" --prompt "a red fox" --size 256x256 --frames 17 --steps 30
   --seed 9 --threads 1)
"$WF" "${L[@]}" --save-latents "$TMP/lref.h5" 2>/dev/null || fail "long reference"
stop_after_two_steps() { # pid log: waits for two step records, then sends the signal ($3)
    local i
    for i in $(seq 1 600); do
        [ "$(grep -c '"event":"step"' "$2" 2>/dev/null)" -ge 2 ] && { kill -"$3" "$1"; return 0; }
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
stopped_run() { # NAME SIGNAL CMD...: CMD in the background, the signal after two steps; exit 3
    local name=$1 sig=$2 pid rc
    shift 2
    "$@" --json-progress >"$TMP/$name.json" 2>"$TMP/$name.err" &
    pid=$!
    PIDS+=("$pid")
    stop_after_two_steps "$pid" "$TMP/$name.json" "$sig" ||
        fail "SIG$sig ($name): the run ended before it could be stopped"
    wait "$pid"
    rc=$?
    [ $rc -eq 3 ] || fail "SIG$sig ($name): exit $rc, expected 3: $(grep -v '^\[' "$TMP/$name.err" | tail -3)"
}
stopped_run l TERM "$WF" "${L[@]}" --save-latents "$TMP/l.h5" --checkpoint-dir "$TMP/ck2"
grep -q '"event":"checkpoint"' "$TMP/l.json" || fail "SIGTERM: no checkpoint record"
[ ! -e "$TMP/l.h5" ] || fail "SIGTERM: a stopped run wrote its output"
"$WF" "${L[@]}" --save-latents "$TMP/l2.h5" --checkpoint-dir "$TMP/ck2" --resume 2>"$TMP/l2.err" ||
    fail "resume after SIGTERM: $(tail -1 "$TMP/l2.err")"
grep -q "resuming after step" "$TMP/l2.err" || fail "after SIGTERM: did not resume"
same "$TMP/lref.h5" "$TMP/l2.h5" || fail "resumed after SIGTERM: latents differ"

# ---- 3. across layouts ----
timeout 300 "$MPIEXEC" -np 2 "$WF" "${G[@]}" --save-latents "$TMP/m2.h5" --checkpoint-dir "$TMP/ck3" \
    --checkpoint-every 3 --placement shared --ulysses 1 --cfg-parallel --vae-ranks 1 \
    >/dev/null 2>"$TMP/m2.err" || fail "2 ranks: $(tail -2 "$TMP/m2.err")"
same "$TMP/ref.h5" "$TMP/m2.h5" || fail "2 ranks with checkpoints: latents differ"
"$WF" "${G[@]}" --save-latents "$TMP/m1.h5" --checkpoint-dir "$TMP/ck3" --resume 2>"$TMP/m1.err" ||
    fail "2 ranks -> 1: $(tail -1 "$TMP/m1.err")"
grep -q "resuming after step 3 of 6" "$TMP/m1.err" || fail "2 ranks -> 1: did not resume after step 3"
same "$TMP/ref.h5" "$TMP/m1.h5" || fail "checkpointed on 2 ranks, resumed on 1: latents differ"
"$WF" "${G[@]}" --save-latents /dev/null --checkpoint-dir "$TMP/ck4" --checkpoint-every 3 \
    2>/dev/null || fail "1 rank with checkpoints"
timeout 300 "$MPIEXEC" -np 3 "$WF" "${G[@]}" --save-latents "$TMP/m3.h5" --checkpoint-dir "$TMP/ck4" \
    --resume --placement shared --ulysses 3 --no-cfg-parallel --vae-ranks 1 >/dev/null \
    2>"$TMP/m3.err" || fail "1 rank -> 3: $(tail -2 "$TMP/m3.err")"
grep -q "resuming after step 3 of 6" "$TMP/m3.err" || fail "1 rank -> 3: did not resume after step 3"
same "$TMP/ref.h5" "$TMP/m3.h5" || fail "checkpointed on 1 rank, resumed on 3: latents differ"
stopped_run u USR1 "$MPIEXEC" -np 2 "$WF" "${L[@]}" --save-latents "$TMP/u.h5" \
    --checkpoint-dir "$TMP/ck5" --placement shared --ulysses 2 --no-cfg-parallel --vae-ranks 1
"$WF" "${L[@]}" --save-latents "$TMP/u1.h5" --checkpoint-dir "$TMP/ck5" --resume 2>"$TMP/u1.err" ||
    fail "resume after SIGUSR1: $(tail -1 "$TMP/u1.err")"
grep -q "resuming after step" "$TMP/u1.err" || fail "after SIGUSR1: did not resume"
same "$TMP/lref.h5" "$TMP/u1.h5" || fail "stopped on 2 ranks, resumed on 1: latents differ"

# ---- 4. refusals ----
bad() { # want args...
    local want=$1
    shift
    timeout 60 "$WF" "$@" --save-latents "$TMP/bad.h5" >/dev/null 2>"$TMP/bad.err"
    local rc=$?
    [ $rc -eq 2 ] && grep -q -- "$want" "$TMP/bad.err" || fail "$*: exit $rc, $(head -2 "$TMP/bad.err")"
}
bad "needs --checkpoint-dir" "${G[@]}" --resume
bad "needs --checkpoint-dir" "${G[@]}" --checkpoint-every 2
bad "needs the job's --seed" generate --model "$TMP/model" --prompt x --steps 2 --checkpoint-dir "$TMP/ck6" --resume
timeout 60 "$MPIEXEC" -np 2 "$WF" "${G[@]}" --save-latents "$TMP/bad.h5" --checkpoint-dir "$TMP/ck7" \
    --placement split --ulysses 1 --no-cfg-parallel --vae-ranks 1 >/dev/null 2>"$TMP/bad.err"
rc=$?
[ $rc -eq 2 ] && grep -q "placement shared only" "$TMP/bad.err" || fail "split with checkpoints: exit $rc"

[ $fails -eq 0 ] && echo "test_resume.sh: OK" || echo "test_resume.sh: $fails failure(s)"
[ $fails -eq 0 ]
