#!/bin/bash
# test_coord.sh: wanfarm-coord and wanctl over ZeroMQ (the client side of the farm).
#   usage: test_coord.sh WANFARM_COORD WANCTL
#   1. two clients submit 6 jobs at once (3 each, with idempotency keys), then again: 6 jobs,
#      the retries named "already submitted"; list, status; a watcher of a job sees its cancel
#      and ends (exit 0); a refused spec (exit 2); a JSON-lines batch with a bad line (named,
#      exit 2; the other lines submitted);
#   2. kill -9 of the coordinator, then a restart on the same store: every job is there, in its
#      state, and a retried submit is still the same job;
#   3. wanctl against no coordinator: a clear error within its --timeout (exit 1); a bind outside
#      the loopback without --allow-remote: refused (exit 2); SIGTERM: a clean stop (exit 0);
#   4. CurveZMQ (keys from wanfarm-coord --keygen): an authorised client key is served, another
#      and a plain client are not (the refusal logged); a world-readable secret key and the
#      published test key are refused at start.
# Nothing is left running (every coordinator this starts is killed on exit).
set -u
COORD=$1
CTL=$2
TMP=$(mktemp -d "${TMPDIR:-/tmp}/wf_test_coord.XXXXXX")
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

start() { # starts a coordinator on the store; sets EP and PID
    rm -f "$TMP/ready"
    "$COORD" --store "$TMP/jobs.db" --model wan-a --model wan-b --clients 'tcp://127.0.0.1:*' \
        --events 'tcp://127.0.0.1:*' --workers 'tcp://127.0.0.1:*' --ready-file "$TMP/ready" 2>>"$TMP/coord.err" &
    PID=$!
    PIDS+=("$PID")
    local i
    for i in $(seq 1 100); do
        [ -s "$TMP/ready" ] && break
        sleep 0.05
    done
    EP=$(head -1 "$TMP/ready" 2>/dev/null)
    [ -n "$EP" ] || fail "the coordinator did not come up: $(tail -2 "$TMP/coord.err")"
}
ctl() { "$CTL" --coordinator "$EP" --timeout 5 "$@"; }

# ---- 1. two clients at once ----
start
client() { # N: three jobs with keys c$N-0..2
    local k
    for k in 0 1 2; do
        ctl --json submit --prompt "client $1 job $k" --size 64x64 --frames 9 --steps 4 --seed $k \
            --key "c$1-$k" --output "c$1/job-$k" || echo "submit c$1-$k failed"
    done
}
client 1 >"$TMP/c1.out" 2>&1 &
p1=$!
client 2 >"$TMP/c2.out" 2>&1 &
p2=$!
wait $p1 $p2
grep -q failed "$TMP/c1.out" "$TMP/c2.out" && fail "a submit failed: $(cat "$TMP/c1.out" "$TMP/c2.out")"
[ "$(ctl list | wc -l)" = 6 ] || fail "6 jobs expected: $(ctl list)"
again=$(ctl submit --prompt "client 1 job 0" --size 64x64 --frames 9 --steps 4 --seed 0 --key c1-0 \
    --output c1/job-0)
echo "$again" | grep -q "already submitted" || fail "a retried submit was not recognised: $again"
[ "$(ctl list | wc -l)" = 6 ] || fail "a retried submit made a new job"
ctl submit --prompt "client 1 job 0 changed" --key c1-0 >/dev/null 2>"$TMP/dup.err"
[ $? -eq 2 ] && grep -q "another spec" "$TMP/dup.err" || fail "a key reused for another spec: $(cat "$TMP/dup.err")"
ctl submit --prompt x --output ../../etc/x >/dev/null 2>"$TMP/bad.err"
[ $? -eq 2 ] && grep -q "'..' is not allowed" "$TMP/bad.err" || fail "a ../ output name: $(cat "$TMP/bad.err")"
first=$(ctl --json list | head -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["job"])')
# a watcher sees the cancel as it happens (the event), and ends with exit 0
ctl watch "$first" --for 20 >"$TMP/watch.out" 2>&1 &
wpid=$!
PIDS+=("$wpid")
for i in $(seq 1 100); do grep -q queued "$TMP/watch.out" && break; sleep 0.05; done
ctl cancel "$first" | grep -q cancelled || fail "cancel $first"
wait "$wpid"
rc=$?
[ $rc -eq 0 ] && grep -q "$first  cancelled" "$TMP/watch.out" ||
    fail "watch did not end with the cancel: exit $rc, $(cat "$TMP/watch.out")"
ctl status j999999 >/dev/null 2>"$TMP/nf.err"
[ $? -eq 1 ] && grep -q "no job" "$TMP/nf.err" || fail "status of an unknown job"

# a batch from a JSON-lines file: each line a job, a bad line named, the others submitted
cat >"$TMP/jobs.jsonl" <<'EOF'
{"prompt": "batch one", "size": "64x64", "frames": 9, "seed": 1, "key": "batch-1", "output": "batch/one"}

{"prompt": "batch two", "frames": 10, "key": "batch-2"}
{"prompt": "batch three", "steps": "4", "guidance": 3.5, "key": "batch-3", "save_latents": true}
EOF
ctl submit --file "$TMP/jobs.jsonl" >"$TMP/batch.out" 2>"$TMP/batch.err"
rc=$?
[ $rc -eq 2 ] && grep -q "4k+1" "$TMP/batch.err" && [ "$(wc -l <"$TMP/batch.out")" = 2 ] ||
    fail "batch: exit $rc, out $(cat "$TMP/batch.out"), err $(cat "$TMP/batch.err")"
ctl list | grep -q "batch three" || fail "batch: the third line was not submitted"
[ "$(ctl list | wc -l)" = 8 ] || fail "batch: 8 jobs expected, $(ctl list | wc -l)"

# ---- 2. kill -9 and a restart ----
kill -9 "$PID"
wait "$PID" 2>/dev/null
start
[ "$(ctl list | wc -l)" = 8 ] || fail "after kill -9 and a restart: $(ctl list | wc -l) jobs, 8 expected"
[ "$(ctl list --state cancelled | wc -l)" = 1 ] || fail "after the restart the cancel is gone"
ctl submit --prompt "client 2 job 2" --size 64x64 --frames 9 --steps 4 --seed 2 --key c2-2 \
    --output c2/job-2 | grep -q "already submitted" || fail "after the restart a retried submit made a new job"

# ---- 3. no coordinator, a remote bind, SIGTERM ----
kill -TERM "$PID"
wait "$PID"
rc=$?
[ $rc -eq 0 ] && grep -q stopped "$TMP/coord.err" || fail "SIGTERM: exit $rc"
t0=$(date +%s)
"$CTL" --coordinator "$EP" --timeout 1 list >/dev/null 2>"$TMP/none.err"
rc=$?
[ $rc -eq 1 ] && grep -q "no answer from the coordinator" "$TMP/none.err" &&
    [ $(($(date +%s) - t0)) -le 4 ] || fail "no coordinator: exit $rc, $(cat "$TMP/none.err")"
"$COORD" --store "$TMP/jobs.db" --model wan-a --clients 'tcp://0.0.0.0:*' >/dev/null 2>"$TMP/remote.err"
rc=$?
[ $rc -eq 2 ] && grep -q "allow-remote" "$TMP/remote.err" || fail "a remote bind: exit $rc"

# ---- 4. CurveZMQ: an authorised key is served, another is refused, so is a plain client ----
mkdir -p "$TMP/clients"
for k in server alice mallory; do "$COORD" --keygen "$TMP/$k" >/dev/null || fail "keygen $k"; done
cp "$TMP/alice.key" "$TMP/clients/"
rm -f "$TMP/ready"
"$COORD" --store "$TMP/curve.db" --model wan-a --clients 'tcp://127.0.0.1:*' \
    --events 'tcp://127.0.0.1:*' --workers 'tcp://127.0.0.1:*' --ready-file "$TMP/ready" --curve-secret "$TMP/server.secret" \
    --curve-clients "$TMP/clients" 2>"$TMP/curve.err" &
PID=$!
PIDS+=("$PID")
for i in $(seq 1 100); do [ -s "$TMP/ready" ] && break; sleep 0.05; done
EP=$(head -1 "$TMP/ready")
keys() { echo --curve-server-key "$TMP/server.key" --curve-key "$TMP/$1.secret"; }
# shellcheck disable=SC2046
"$CTL" --coordinator "$EP" --timeout 5 $(keys alice) submit --prompt "a fox" --key curve-1 \
    >/dev/null 2>"$TMP/alice.err" || fail "an authorised key was not served: $(cat "$TMP/alice.err")"
# shellcheck disable=SC2046
"$CTL" --coordinator "$EP" --timeout 1 $(keys mallory) list >/dev/null 2>&1 &&
    fail "an unauthorised key was served"
grep -q "unauthorised key was refused" "$TMP/curve.err" || fail "the refusal was not logged"
"$CTL" --coordinator "$EP" --timeout 1 list >/dev/null 2>&1 && fail "a plain client was served"
kill -TERM "$PID"
wait "$PID"
chmod 644 "$TMP/server.secret"
"$COORD" --store "$TMP/curve.db" --model wan-a --curve-secret "$TMP/server.secret" \
    --curve-clients "$TMP/clients" >/dev/null 2>"$TMP/perm.err"
[ $? -eq 1 ] && grep -q "chmod 600" "$TMP/perm.err" || fail "a world-readable secret key was taken"
printf 'JTKVSB%%%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6\n' >"$TMP/test.secret"
chmod 600 "$TMP/test.secret"
"$COORD" --store "$TMP/curve.db" --model wan-a --curve-secret "$TMP/test.secret" \
    --curve-clients "$TMP/clients" >/dev/null 2>"$TMP/testkey.err"
[ $? -eq 1 ] && grep -q "published test key" "$TMP/testkey.err" || fail "the published test key was taken"

[ $fails -eq 0 ] && echo "test_coord.sh: OK" || echo "test_coord.sh: $fails failure(s)"
[ $fails -eq 0 ]
