#!/bin/bash
# test_farm.sh: the farm end to end: wanfarm-coord, `wanfarm worker` worlds (one process, or
# mpirun -np 2) and wanctl, on a random-weight model, with the faults of a long cluster run.
#   usage: test_farm.sh WANFARM WANFARM_COORD WANCTL FAULT_ENOSPC_SO
#   1. two worlds (1 and 2 ranks) serve 6 jobs from two clients: every MP4 equals the one
#      `wanfarm generate` makes of the same spec on the layout of the world that ran it, and the
#      layout the coordinator planned for the 2-rank world is the one generate's planner picks;
#   2. kill -9 of the coordinator mid-job, then a restart on the same store: every job
#      completes, identical, none lost, none run twice (one attempt each); watch shows a
#      progress bar with an ETA;
#   3. kill -9 of one rank of the 2-rank world mid-job: the world is declared lost within
#      3 heartbeats (plus a tick), no process of it is left, and a relaunched world resumes the
#      job from its checkpoint: identical output, the fault charged to the infrastructure;
#   4. SIGSTOP of one rank (a hang): its world's watchdog ends the world, the same outcome;
#   5. SIGTERM to a 1-rank world and SIGUSR1 to a 2-rank one (through mpirun), mid-job: a
#      checkpoint, exit 3, the job requeued at once (the reason says so), the next world
#      resumes it: identical output;
#   6. cancel of a running job reaches its world (of 1 rank, and of 2), which stops at the next
#      step and takes the next job; no output is left for the cancelled one; `wanctl drain`
#      ends a 2-rank world (the Shutdown reaches both ranks, exit 0);
#   7. a disk that fills up after the first checkpoint (LD_PRELOAD: write fails with ENOSPC):
#      the job fails as an infrastructure fault, the previous checkpoint survives, a healthy
#      world resumes from it: identical output, no temporary or partial file anywhere;
#   8. a world of a model the farm does not serve is refused (exit 1, the reason), so is one
#      whose id a live world holds, and a world whose coordinator does not answer gives up
#      within --connect-timeout (exit 1);
#   9. stage worlds: a high-noise one (only transformer/ loaded) runs each job to the switch and
#      hands it on through its checkpoint to a low-noise one (only transformer_2/): the outputs
#      equal the single run's, two attempts each, nothing charged; the same with two 2-rank
#      stage worlds against generate on 2 ranks;
#  10. CurveZMQ on: a world whose key is authorised is served (a job done), another never
#      hears from the coordinator (exit 1 after --connect-timeout).
# Nothing is left running: every process this starts is killed on exit.
set -u
WF=$1
COORD=$2
CTL=$3
ENOSPC=$4
TMP=$(mktemp -d "${TMPDIR:-/tmp}/wf_test_farm.XXXXXX")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    pkill -9 -f -- "$TMP" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
fatal() { # a failure the rest cannot survive: stop here
    fail "$*"
    echo "test_farm.sh: stopped at the first fatal failure; the coordinator's last lines:"
    tail -15 "$TMP/coord.err"
    exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CP=$(free_port)
EVP=$(free_port)
WP=$(free_port)
EP=tcp://127.0.0.1:$CP
WEP=tcp://127.0.0.1:$WP
HB=0.5
WENV=() # the environment of the next world (start_world)
"$WF" mkmodel --preset tiny12 --seed 3 "$TMP/model" >/dev/null 2>&1 || { echo "FAIL: mkmodel"; exit 1; }

start_coord() { # on the same store and ports every time
    rm -f "$TMP/ready"
    "$COORD" --store "$TMP/jobs.db" --model tiny --clients "$EP" --events "tcp://127.0.0.1:$EVP" \
        --workers "$WEP" --heartbeat $HB --liveness 3 --checkpoint-every 2 --ready-file "$TMP/ready" \
        2>>"$TMP/coord.err" &
    CPID=$!
    PIDS+=("$CPID")
    local i
    for i in $(seq 1 200); do [ -s "$TMP/ready" ] && return 0; sleep 0.05; done
    fatal "the coordinator did not come up: $(tail -2 "$TMP/coord.err")"
}
ctl() { "$CTL" --coordinator "$EP" --timeout 5 "$@"; }
# start_world NAME NP [worker options]: a world; waits until the coordinator has it
start_world() {
    local name=$1 np=$2
    shift 2
    local cmd=("$WF" worker --coordinator "$WEP" --model "$TMP/model" --model-name tiny
        --output-root "$TMP/out" --checkpoint-root "$TMP/ck" --world-id "$name" --threads 1
        --connect-timeout 20 "$@")
    if [ "$np" = 1 ]; then env "${WENV[@]}" "${cmd[@]}" 2>"$TMP/$name.err" &
    else mpirun -np "$np" "${cmd[@]}" 2>"$TMP/$name.err" & fi
    WPID=$!
    PIDS+=("$WPID")
    local i
    for i in $(seq 1 200); do grep -q "world $name joined" "$TMP/coord.err" && return 0; sleep 0.05; done
    fatal "world $name did not join: $(tail -5 "$TMP/$name.err")"
}
field() { # JOB KEY: a field of wanctl --json status
    ctl --json status "$1" 2>/dev/null | python3 -c "import json,sys; v=json.load(sys.stdin).get('$2'); print(v if v is not None else '')"
}
wait_state() { # JOB STATE SECONDS
    local i
    for i in $(seq 1 $(($3 * 10))); do [ "$(field "$1" state)" = "$2" ] && return 0; sleep 0.1; done
    fail "job $1 is $(field "$1" state), not $2, after $3 s"
    return 1
}
wait_step() { # JOB STEP SECONDS: running with at least STEP steps done
    local i s
    for i in $(seq 1 $(($3 * 20))); do
        s=$(field "$1" step)
        [ "$(field "$1" state)" = running ] && [ "${s:-0}" -ge "$2" ] && return 0
        sleep 0.05
    done
    fail "job $1 did not reach step $2 running (state $(field "$1" state), step $(field "$1" step))"
    return 1
}
gone() { # PATTERN SECONDS: no process whose command line holds PATTERN
    local i
    for i in $(seq 1 $(($2 * 10))); do pgrep -f -- "$1" >/dev/null || return 0; sleep 0.1; done
    return 1
}
rank_pid() { # MPIRUN_PID RANK: the pid of that rank (its OMPI_COMM_WORLD_RANK)
    local p
    for p in $(pgrep -P "$1"); do
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && echo "$p" && return
    done
}

# the references: generate on each world's layout
SHORT=(--size 64x64 --frames 9 --steps 6)
LONG=(--prompt "a slow river at dusk" --size 192x192 --frames 17 --steps 40 --seed 11)
ref() { # NP OUT ARGS...: generate's MP4 of a spec on NP ranks
    local np=$1 out=$2
    shift 2
    if [ "$np" = 1 ]; then "$WF" generate --model "$TMP/model" --threads 1 --out "$out" "$@" 2>/dev/null
    else mpirun -np "$np" "$WF" generate --model "$TMP/model" --threads 1 --placement shared --out "$out" "$@" 2>"$out.err"; fi
}
mkdir -p "$TMP/ref"
ref 1 "$TMP/ref/long-1.mp4" "${LONG[@]}" || fail "reference generate (1 rank)"
ref 2 "$TMP/ref/long-2.mp4" "${LONG[@]}" || fail "reference generate (2 ranks)"
same() { # JOB REF: the job's MP4 is the reference's, byte for byte
    local out
    out=$(ctl result "$1" --root "$TMP/out" | head -1)
    [ -n "$out" ] && cmp -s "$out" "$2" || fail "job $1: its output ${out:-(none)} differs from $2"
}

# ---- 1. two worlds, two clients, six jobs ----
start_coord
start_world w1 1
start_world w2 2
client() { # N: three jobs
    local k
    for k in 0 1 2; do
        ctl submit --prompt "client $1 video $k" "${SHORT[@]}" --seed $((10 * $1 + k)) \
            --key "c$1-$k" --output "c$1/video-$k.mp4" $([ $k = 2 ] && echo --guidance 1) ||
            echo "submit c$1-$k failed"
    done
}
client 1 >"$TMP/c1.out" 2>&1 &
p1=$!
client 2 >"$TMP/c2.out" 2>&1 &
p2=$!
wait $p1 $p2
grep -q failed "$TMP/c1.out" "$TMP/c2.out" && fail "a submit failed: $(cat "$TMP/c1.out" "$TMP/c2.out")"
ctl worlds >"$TMP/worlds.out"
grep -q "^w1 .* 1 rank " "$TMP/worlds.out" && grep -q "^w2 .* 2 ranks" "$TMP/worlds.out" ||
    fail "wanctl worlds: $(cat "$TMP/worlds.out")"
ctl watch $(cat "$TMP/c1.out" "$TMP/c2.out") --for 120 >"$TMP/watch1.out" 2>&1 || fail "the six jobs did not end well: $(tail -5 "$TMP/watch1.out")"
worlds=""
for c in 1 2; do
    for k in 0 1 2; do
        id=$(sed -n "$((k + 1))p" "$TMP/c$c.out")
        w=$(field "$id" world)
        worlds="$worlds $w"
        np=1
        [ "$w" = w2 ] && np=2
        ref $np "$TMP/ref/c$c-$k.mp4" --prompt "client $c video $k" "${SHORT[@]}" --seed $((10 * c + k)) \
            $([ $k = 2 ] && echo --guidance 1)
        same "$id" "$TMP/ref/c$c-$k.mp4"
        if [ $np = 2 ]; then # the coordinator's planner chose the layout generate's chooses
            mine=$(sed -n "s/.*job $id (attempt 1) to world w2, layout \(.*\)/\1/p" "$TMP/coord.err")
            theirs=$(sed -n 's/.*2 ranks, layout \(.*\)/\1/p' "$TMP/ref/c$c-$k.mp4.err")
            [ -n "$mine" ] && [ "$mine" = "$theirs" ] ||
                fail "job $id: the coordinator planned '$mine', generate '$theirs'"
        fi
        [ "$(ctl result "$id")" = "c$c/video-$k.mp4" ] || fail "job $id: result $(ctl result "$id")"
    done
done
echo "$worlds" | grep -q w1 && echo "$worlds" | grep -q w2 || fail "both worlds should have served jobs: $worlds"

# ---- 2. kill -9 of the coordinator mid-job, a restart ----
a=$(ctl submit "${LONG[@]}" --key long-a --output kill/a.mp4)
b=$(ctl submit "${LONG[@]}" --key long-b --output kill/b.mp4)
ctl watch "$a" --for 60 >"$TMP/watch2.out" 2>&1 &
wpid=$!
PIDS+=("$wpid")
wait_step "$a" 6 30
wa=$(field "$a" world)
kill -9 "$CPID"
wait "$CPID" 2>/dev/null
sleep 1
start_coord
wait_state "$a" done 60 && wait_state "$b" done 60
for j in "$a" "$b"; do
    [ "$(field "$j" attempts)" = 1 ] || fail "job $j ran $(field "$j" attempts) times (a restart must not rerun it)"
done
np=1
[ "$wa" = w2 ] && np=2
same "$a" "$TMP/ref/long-$np.mp4"
np=1
[ "$(field "$b" world)" = w2 ] && np=2
same "$b" "$TMP/ref/long-$np.mp4"
grep -q "is back" "$TMP/coord.err" || fail "no world came back to the restarted coordinator"
wait "$wpid" 2>/dev/null
grep -q "\[#.*ETA" "$TMP/watch2.out" || fail "watch showed no progress bar: $(head -5 "$TMP/watch2.out")"
[ "$(ctl list | grep -c '^j')" = 8 ] || fail "8 jobs expected after the restart: $(ctl list)"

# from here on one world at a time: stop w1 (idle: exit 0)
kill -TERM $(pgrep -f -- "--world-id w1 ") 2>/dev/null
gone "--world-id w1 " 10 || fail "w1 did not stop on SIGTERM when idle"

# ---- 3. kill -9 of one rank mid-job ----
c=$(ctl submit "${LONG[@]}" --key long-c --output rank/c.mp4)
wait_step "$c" 6 30
mpid=$(pgrep -f -- "^mpirun.*--world-id w2 " | head -1)
r1=$(rank_pid "$mpid" 1)
[ -n "$r1" ] || fail "rank 1 of w2 not found"
kill -9 "$r1"
# mpirun ends the rest of the world (it gives rank 0 a moment to handle its SIGTERM); from the
# moment the world is gone the coordinator must see it lost within 3 beats and a tick
gone "--world-id w2 " 10 || fail "a process of w2 was left: $(pgrep -af -- '--world-id w2 ')"
t0=$(date +%s.%N)
for i in $(seq 1 100); do grep -q "world w2 lost" "$TMP/coord.err" && break; sleep 0.05; done
t1=$(date +%s.%N)
python3 -c "import sys; d=$t1-$t0; sys.exit(0 if d <= 3*$HB + 0.5 else 1)" ||
    fail "the lost world was detected $(python3 -c "print(round($t1-$t0,2))") s after it was gone (3 beats of $HB s and a tick expected)"
start_world w2b 2
wait_state "$c" done 60
same "$c" "$TMP/ref/long-2.mp4"
grep -q "resuming after step" "$TMP/w2b.err" || fail "w2b did not resume job $c from its checkpoint"
field "$c" reasons | grep -q "lost" || fail "job $c: the lost world is not among its reasons"

# ---- 4. SIGSTOP of one rank (a hang) ----
kill -TERM $(pgrep -f -- "^mpirun.*--world-id w2b ") 2>/dev/null
gone "--world-id w2b " 10 || fail "w2b did not stop"
start_world w2c 2 --watchdog 2
d=$(ctl submit "${LONG[@]}" --key long-d --output hang/d.mp4)
wait_step "$d" 6 30
r1=$(rank_pid "$(pgrep -f -- "^mpirun.*--world-id w2c " | head -1)" 1)
kill -STOP "$r1"
gone "--world-id w2c " 20 || fail "the watchdog did not end w2c (a stopped rank): $(tail -3 "$TMP/w2c.err")"
grep -q "watchdog" "$TMP/w2c.err" || fail "w2c's log does not name the watchdog"
start_world w2d 2
wait_state "$d" done 60
same "$d" "$TMP/ref/long-2.mp4"
grep -q "resuming after step" "$TMP/w2d.err" || fail "w2d did not resume job $d"

# ---- 5. SIGUSR1 to a 2-rank world, SIGTERM to a 1-rank one ----
e=$(ctl submit "${LONG[@]}" --key long-e --output sig/e.mp4)
wait_step "$e" 6 30
kill -USR1 "$WPID"
wait "$WPID" 2>/dev/null
rc=$?
[ $rc -eq 3 ] || fail "SIGUSR1: the world's exit code $rc, 3 expected: $(tail -3 "$TMP/w2d.err")"
wait_state "$e" queued 5
field "$e" reasons | grep -q "stopped by a signal" || fail "job $e: $(field "$e" reasons)"
start_world w2e 2
wait_state "$e" done 60
same "$e" "$TMP/ref/long-2.mp4"
grep -q "resuming after step" "$TMP/w2e.err" || fail "w2e did not resume job $e"
# a cancel on a world of 2 ranks: both stop, and the world serves the next job
g2=$(ctl submit "${LONG[@]}" --key long-g2 --output cancel/g2.mp4)
wait_step "$g2" 4 30
ctl cancel "$g2" >/dev/null
wait_state "$g2" cancelled 10
h2=$(ctl submit --prompt "after a 2-rank cancel" "${SHORT[@]}" --seed 6 --key after-cancel-2)
wait_state "$h2" done 30
[ "$(field "$h2" world)" = w2e ] || fail "the 2-rank world did not go on after a cancel"
# a drain: the coordinator's Shutdown reaches every rank, the world ends with exit 0
ctl drain w2e --reason "for the test" | grep -q "^w2e .* drain" || fail "wanctl drain w2e"
wait "$WPID" 2>/dev/null
rc=$?
[ $rc -eq 0 ] || fail "a drained world's exit code $rc, 0 expected: $(tail -3 "$TMP/w2e.err")"
gone "--world-id w2e " 10 || fail "w2e did not stop"
grep -q "shuts this world down: for the test" "$TMP/w2e.err" || fail "w2e's log does not say why it ended"
start_world w1b 1
f=$(ctl submit "${LONG[@]}" --key long-f --output sig/f.mp4)
wait_step "$f" 6 30
kill -TERM "$WPID"
wait "$WPID" 2>/dev/null
rc=$?
[ $rc -eq 3 ] || fail "SIGTERM: the world's exit code $rc, 3 expected: $(tail -3 "$TMP/w1b.err")"
wait_state "$f" queued 5
start_world w1c 1
wait_state "$f" done 60
same "$f" "$TMP/ref/long-1.mp4"
grep -q "resuming after step" "$TMP/w1c.err" || fail "w1c did not resume job $f"

# ---- 6. cancel reaches the world ----
g=$(ctl submit "${LONG[@]}" --key long-g --output cancel/g.mp4)
wait_step "$g" 4 30
ctl cancel "$g" >/dev/null
wait_state "$g" cancelled 10
[ "$(field "$g" step)" -lt 40 ] || fail "the cancelled job ran to its end"
[ -e "$TMP/out/cancel/g.mp4" ] && fail "the cancelled job left an output"
[ -e "$TMP/ck/$g.ckpt.h5" ] && fail "the cancelled job left its checkpoint"
h=$(ctl submit --prompt "after the cancel" "${SHORT[@]}" --seed 5 --key after-cancel)
wait_state "$h" done 30
[ "$(field "$h" world)" = w1c ] || fail "the world of the cancelled job did not take the next one"

# ---- 7. a disk that fills up after the first checkpoint ----
kill -TERM "$WPID"
wait "$WPID" 2>/dev/null
WENV=(LD_PRELOAD="$ENOSPC" WF_FAULT_MATCH=.ckpt.h5 WF_FAULT_AFTER=1)
start_world full 1
WENV=()
k=$(ctl submit "${LONG[@]}" --key long-k --output full/k.mp4)
for i in $(seq 1 300); do field "$k" reasons | grep -q "No space left" && break; sleep 0.1; done
field "$k" reasons | grep -q "infrastructure.*No space left" || fail "job $k: the full disk is not its reason: $(field "$k" reasons)"
kill -9 "$WPID"
wait "$WPID" 2>/dev/null
gone "--world-id full " 10
[ -e "$TMP/out/full/k.mp4" ] && fail "a job whose checkpoint failed left an output"
ls "$TMP/ck/$k.ckpt.h5"* >/dev/null 2>&1 || fail "the first checkpoint of job $k did not survive"
start_world healthy 1
wait_state "$k" done 90
same "$k" "$TMP/ref/long-1.mp4"
grep -q "resuming after step 2 " "$TMP/healthy.err" || fail "the healthy world did not resume job $k after step 2: $(grep -i resum "$TMP/healthy.err")"
left=$(find "$TMP/out" "$TMP/ck" -name '*.tmp.*')
[ -z "$left" ] || fail "temporary files left: $left"

# ---- 8. a world the farm refuses; no coordinator ----
"$WF" worker --coordinator "$WEP" --model "$TMP/model" --model-name other --output-root "$TMP/out" \
    --checkpoint-root "$TMP/ck" --connect-timeout 10 >/dev/null 2>"$TMP/other.err"
rc=$?
[ $rc -eq 1 ] && grep -q "does not" "$TMP/other.err" || fail "a world of another model: exit $rc, $(cat "$TMP/other.err")"
t0=$(date +%s)
"$WF" worker --coordinator "tcp://127.0.0.1:$(free_port)" --model "$TMP/model" --output-root "$TMP/out" \
    --checkpoint-root "$TMP/ck" --connect-timeout 1 >/dev/null 2>"$TMP/none.err"
rc=$?
[ $rc -eq 1 ] && grep -q "no coordinator answered" "$TMP/none.err" && [ $(($(date +%s) - t0)) -le 4 ] ||
    fail "no coordinator: exit $rc, $(cat "$TMP/none.err")"

"$WF" worker --coordinator "$WEP" --model "$TMP/model" --model-name tiny --output-root "$TMP/out" \
    --checkpoint-root "$TMP/ck" --world-id healthy --connect-timeout 2 >/dev/null 2>"$TMP/dupid.err"
rc=$?
[ $rc -eq 1 ] && grep -q "another live world holds this world id" "$TMP/dupid.err" ||
    fail "a second world with a live world's id: exit $rc, $(cat "$TMP/dupid.err")"

# ---- 9. stage worlds: the high-noise expert on one, the low-noise one on another ----
kill -TERM $(pgrep -f -- "--world-id healthy ") 2>/dev/null
gone "--world-id healthy " 10 || fail "the healthy world did not stop"
start_world hi 1 --stage high
start_world lo 1 --stage low
s1=$(ctl submit "${LONG[@]}" --key stage-1 --output stage/1.mp4)
s2=$(ctl submit "${LONG[@]}" --key stage-2 --output stage/2.mp4)
wait_state "$s1" done 90 && wait_state "$s2" done 90
for j in "$s1" "$s2"; do
    same "$j" "$TMP/ref/long-1.mp4"
    [ "$(field "$j" world)" = lo ] && [ "$(field "$j" attempts)" = 2 ] &&
        [ "$(field "$j" reasons)" = "[]" ] ||
        fail "job $j: world $(field "$j" world), $(field "$j" attempts) attempts, reasons $(field "$j" reasons) (lo, 2, none expected)"
done
[ "$(grep -c "handed on to a low-noise world on world hi" "$TMP/coord.err")" = 2 ] ||
    fail "world hi did not hand both jobs on: $(grep -c "handed on" "$TMP/coord.err")"
grep -q "handed on after step" "$TMP/hi.err" || fail "hi's log does not say where it stopped"
# the same with two 2-rank stage worlds (the layouts as generate's on 2 ranks: bit for bit)
for name in hi lo; do kill -TERM $(pgrep -f -- "--world-id $name ") 2>/dev/null; done
gone "--world-id hi " 10 && gone "--world-id lo " 10 || fail "the 1-rank stage worlds did not stop"
start_world hi2 2 --stage high
start_world lo2 2 --stage low
s3=$(ctl submit "${LONG[@]}" --key stage-3 --output stage/3.mp4)
wait_state "$s3" done 90
same "$s3" "$TMP/ref/long-2.mp4"
[ "$(field "$s3" world)" = lo2 ] && [ "$(field "$s3" attempts)" = 2 ] ||
    fail "job $s3 on 2-rank stage worlds: world $(field "$s3" world), $(field "$s3" attempts) attempts"
"$WF" worker --coordinator "$WEP" --model "$TMP/model" --output-root "$TMP/out" --checkpoint-root "$TMP/ck" \
    --stage middle >/dev/null 2>"$TMP/stage.err"
[ $? -eq 2 ] && grep -q "all, high or low" "$TMP/stage.err" || fail "--stage middle: $(cat "$TMP/stage.err")"

kill -TERM "$CPID"
wait "$CPID"
[ $? -eq 0 ] || fail "the coordinator did not stop cleanly"

# ---- 10. CurveZMQ: an authorised world is served, another is not ----
mkdir -p "$TMP/keys/allowed"
for k in server good bad; do "$COORD" --keygen "$TMP/keys/$k" >/dev/null || fail "keygen $k"; done
cp "$TMP/keys/good.key" "$TMP/keys/allowed/"
rm -f "$TMP/ready"
"$COORD" --store "$TMP/curve.db" --model tiny --clients 'tcp://127.0.0.1:*' --events 'tcp://127.0.0.1:*' \
    --workers 'tcp://127.0.0.1:*' --curve-secret "$TMP/keys/server.secret" \
    --curve-clients "$TMP/keys/allowed" --ready-file "$TMP/ready" 2>"$TMP/curve.err" &
CPID=$!
PIDS+=("$CPID")
for i in $(seq 1 200); do [ -s "$TMP/ready" ] && break; sleep 0.05; done
CEP=$(sed -n 1p "$TMP/ready")
CWEP=$(sed -n 3p "$TMP/ready")
curve() { echo --curve-server-key "$TMP/keys/server.key" --curve-key "$TMP/keys/$1.secret"; }
# shellcheck disable=SC2046
"$WF" worker --coordinator "$CWEP" --model "$TMP/model" --model-name tiny --output-root "$TMP/out" \
    --checkpoint-root "$TMP/ck" --world-id curve-bad --connect-timeout 2 $(curve bad) \
    >/dev/null 2>"$TMP/curve-bad.err"
[ $? -eq 1 ] && grep -q "no coordinator answered" "$TMP/curve-bad.err" ||
    fail "an unauthorised world was served: $(cat "$TMP/curve-bad.err")"
# shellcheck disable=SC2046
"$WF" worker --coordinator "$CWEP" --model "$TMP/model" --model-name tiny --output-root "$TMP/out" \
    --checkpoint-root "$TMP/ck" --world-id curve-good --threads 1 $(curve good) 2>"$TMP/curve-good.err" &
PIDS+=("$!")
# shellcheck disable=SC2046
cj=$("$CTL" --coordinator "$CEP" --timeout 5 $(curve good) submit --prompt "behind curve" "${SHORT[@]}" \
    --seed 9 --key curve-1 --output curve/1.mp4)
# shellcheck disable=SC2046
"$CTL" --coordinator "$CEP" --timeout 5 $(curve good) watch "$cj" --for 60 >/dev/null ||
    fail "the job behind CurveZMQ did not finish: $(tail -3 "$TMP/curve-good.err")"
[ -s "$TMP/out/curve/1.mp4" ] || fail "no output from the CurveZMQ world"
kill -TERM "$CPID"
wait "$CPID" 2>/dev/null
[ $fails -eq 0 ] && echo "test_farm.sh: OK" || { echo "test_farm.sh: $fails failure(s)"; tail -20 "$TMP/coord.err"; }
[ $fails -eq 0 ]
