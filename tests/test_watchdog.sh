#!/bin/bash
# test_watchdog.sh: a stopped rank does not leave the others waiting forever.
#   usage: test_watchdog.sh WANFARM MPIEXEC
# Under `mpirun -np 2`, rank 1 of a distributed `wanfarm generate` is stopped (SIGSTOP) after the
# first steps. With --watchdog 3, rank 0's watchdog (worker/comm/watchdog.c) must end the run
# within a bounded time, non-zero, with one line that names the call it waited in, the rank that
# did not arrive (world rank 1) and what rank 0 was doing. Also: a run that is not stopped is not
# ended by the watchdog, and --watchdog refuses bad values.
set -u
WF=$1
MPIEXEC=$2
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
TMP=$(mktemp -d "${TMPDIR:-/tmp}/wf_test_watchdog.XXXXXX")
pids_of_run() { # the wanfarm ranks started from this test's folder
    for p in $(pgrep -f "generate --model $TMP/model" 2>/dev/null); do
        [ -r "/proc/$p/environ" ] && tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null |
            grep -q '^OMPI_COMM_WORLD_RANK=' && echo "$p"
    done
}
cleanup() {
    for p in $(pids_of_run); do kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

"$WF" mkmodel --preset tiny --seed 5 "$TMP/model" >/dev/null 2>&1 || { echo "FAIL: mkmodel"; exit 1; }
GEN=(generate --model "$TMP/model" --prompt "a fox" --size 64x64 --frames 9 --steps 1000
     --seed 1 --save-latents "$TMP/out.h5" --json-progress)

# 1. rank 1 stopped after two steps: the run ends within the bound, naming rank 1
"$MPIEXEC" -np 2 "$WF" "${GEN[@]}" --watchdog 3 >"$TMP/stop.json" 2>"$TMP/stop.err" &
mp=$!
for _ in $(seq 1 600); do # up to 60 s for the first steps (loading included)
    [ "$(grep -c '"event":"step"' "$TMP/stop.json" 2>/dev/null)" -ge 2 ] && break
    kill -0 "$mp" 2>/dev/null || break
    sleep 0.1
done
r1=""
for p in $(pids_of_run); do
    tr '\0' '\n' <"/proc/$p/environ" | grep -qx 'OMPI_COMM_WORLD_RANK=1' && r1=$p
done
if [ -z "$r1" ]; then
    fail "could not find rank 1 of the run (did it start? $(head -c 300 "$TMP/stop.err"))"
else
    kill -STOP "$r1"
    t0=$(date +%s)
    ended=0
    for _ in $(seq 1 450); do # the watchdog fires after ~3 s; allow 45 s on a loaded machine
        kill -0 "$mp" 2>/dev/null || { ended=1; break; }
        sleep 0.1
    done
    wait "$mp" 2>/dev/null
    rc=$?
    secs=$(($(date +%s) - t0))
    if [ "$ended" != 1 ]; then
        fail "a stopped rank 1 left the run waiting for more than 45 s"
    else
        [ "$rc" != 0 ] || fail "the watchdog ended the run with exit 0"
        grep -q "watchdog: .* world rank 1 did not arrive" "$TMP/stop.err" ||
            fail "no watchdog line naming world rank 1 in: $(grep -m3 watchdog "$TMP/stop.err")"
        grep -q "this rank was request 0, step [0-9]*/1000" "$TMP/stop.err" ||
            fail "the watchdog line does not say what rank 0 was doing: $(grep -m1 watchdog "$TMP/stop.err")"
        echo "stopped rank: the run ended after ${secs} s, exit $rc"
    fi
fi
for p in $(pids_of_run); do kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done

# 2. not stopped: a short run finishes normally with a tight watchdog
timeout 120 "$MPIEXEC" -np 2 "$WF" generate --model "$TMP/model" --prompt "a fox" --size 64x64 \
    --frames 9 --steps 4 --seed 1 --save-latents "$TMP/ok.h5" --watchdog 3 >/dev/null 2>"$TMP/ok.err" ||
    fail "a healthy run under --watchdog 3 failed: $(head -c 300 "$TMP/ok.err")"
grep -q watchdog "$TMP/ok.err" && fail "the watchdog spoke in a healthy run"

# 3. bad values are refused before any work
for v in 0.0001x -1 nan inf 1e9; do
    timeout 30 "$WF" generate --model "$TMP/model" --prompt x --size 64x64 --frames 5 --steps 2 \
        --save-latents "$TMP/b.h5" --watchdog "$v" >/dev/null 2>"$TMP/bad.err"
    rc=$?
    [ "$rc" = 2 ] && grep -q -- "--watchdog" "$TMP/bad.err" ||
        fail "--watchdog $v: exit $rc, $(head -c 200 "$TMP/bad.err")"
done

[ "$fails" = 0 ] && echo "test_watchdog: OK" || echo "test_watchdog: $fails failure(s)"
[ "$fails" = 0 ]
