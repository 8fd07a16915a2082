#!/usr/bin/env bash
# test_limits.sh: the numbers and limits of `wanfarm generate`, checked before the work (issue 11):
#   1. absurd option values (guidance, shift, boundary, text length, threads, sizes, frames) are
#      refused at once, exit 2, with one line that names the option and the valid range (and the
#      core count for --threads, the model's limit for sizes and frames); `plan --size` too;
#   2. --latents holding NaN or Inf is refused, naming the file and the first bad element;
#   3. a run whose latents stop being finite stops at that step, naming it (1-based of N) and the
#      expert, exit 1, nothing written: a model with one DiT weight tensor overwritten with 3e38
#      (transformer: step 1/2; transformer_2: step 2/2), in one process and over 2 MPI ranks;
#      the largest guidance still runs on a sound model;
#   4. memory stays flat over a queue: peak RSS of --count 12 is within 6 MiB of --count 3 (today
#      each 128x128x17 video's frames and latents stay until exit: +1 MB per video), in one
#      process and on each of 2 MPI ranks;
#   5. --prompt-file: a 1 MB prompt, one prompt per line in order with --prompt, blank lines and
#      CRLF, stdin (also under mpirun), more than 256 prompts, a missing or empty file.
# Every command runs under `timeout` (and, in one process, a virtual-memory limit); a tiny model
# from `wanfarm mkmodel --preset tiny`, runs of 64x64, 5 frames, 2 steps.
# Usage: test_limits.sh WANFARM MPIEXEC FIXTURES_DIR
set -uo pipefail
WF=$1
MPIEXEC=$2
FX=$3
SCRIPTS=$(cd "$(dirname "$0")/../scripts" && pwd)
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
T=$(mktemp -d "${TMPDIR:-/tmp}/wanfarm-limits-XXXXXX")
trap 'rm -rf "$T"' EXIT
fail=0
. "$(dirname "$0")/cli_lib.sh"

# one process: 8 GB of virtual memory and 120 s (no memory limit for a sanitizer build, whose
# shadow memory needs terabytes of address space)
SAN=0
if { (ulimit -v 8000000; exec "$WF" version); } >/dev/null 2>&1; then
  lim() { (ulimit -v 8000000; exec timeout 120 "$@"); }
else
  echo "note: $WF does not start under ulimit -v (a sanitizer build?): time limits only, no RSS checks"
  SAN=1
  lim() { timeout 120 "$@"; }
fi
mpi() { # 2 ranks, 180 s (a sanitizer build: no leak report, for OpenMPI's own leaks at exit)
  if [ $SAN = 1 ]; then
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 timeout 180 "$MPIEXEC" -np 2 "$@"
  else
    timeout 180 "$MPIEXEC" -np 2 "$@"
  fi
}

M="$T/model"
"$WF" mkmodel --preset tiny --force "$M" >/dev/null 2>&1 || { echo "FAIL: mkmodel"; exit 1; }
G=(lim "$WF" generate --model "$M" --prompt "a red fox" --size 64x64 --frames 5 --steps 2
   --seed 1 --threads 1)

# ---- 1. option values: exit 2, one line naming the option and the range ----
refused() { # refused DESCRIPTION EXPECTED_TEXT OPTIONS...
  local what=$1 want=$2; shift 2
  check "$what" 2 "${G[@]}" "$@" --out "$T/x.mp4"
  expect_err "$what" "$want"
}
refused "guidance 1e308" "--guidance '1e308' must be a number in [0, 100]" --guidance 1e308
refused "guidance nan" "--guidance 'nan' must be a number in [0, 100]" --guidance nan
refused "guidance inf" "--guidance 'inf' must be a number in [0, 100]" --guidance inf
refused "guidance-2 -1" "--guidance-2 '-1' must be a number in [0, 100]" --guidance-2 -1
refused "guidance-2 101" "--guidance-2 '101' must be a number in [0, 100]" --guidance-2 101
refused "shift 1e300" "--shift '1e300' must be a number in [0.01, 100]" --shift 1e300
refused "shift 1e-300" "--shift '1e-300' must be a number in [0.01, 100]" --shift 1e-300
refused "boundary 1.5" "--boundary '1.5' must be a number in [0, 1]" --boundary 1.5
refused "max-sequence-length huge" "--max-sequence-length '100000000' must be in 1..4096" \
  --max-sequence-length 100000000
cores=$(getconf _NPROCESSORS_ONLN)
refused "threads far above the cores" \
  "--threads $((4 * cores + 1)) is more than 4x the $cores online cores of this machine; use at most $((4 * cores))" \
  --threads $((4 * cores + 1))
refused "size 0x0" "--size '0x0' has a width of 0: width and height must be positive multiples of 16" \
  --size 0x0
refused "size -16x16" "--size '-16x16' has a width of -16: width and height must be positive" \
  --size -16x16
refused "size 64x-16" "--size '64x-16' has a height of -16: width and height must be positive" \
  --size 64x-16
refused "size overflowing" "--size '99999999999999999999x16' has a width of 99999999999999999999: at most 65536" \
  --size 99999999999999999999x16
refused "size 64x99999" "has a height of 99999: at most 65536" --size 64x99999
refused "size past the model" \
  "width 1024 is more than this model's limit 512 (rope_max_seq_len 32 x patch 2 x the VAE spatial factor 8)" \
  --size 1024x64
refused "frames past the model" "frames 1001 is more than this model's limit 125" --frames 1001
refused "size without x" "--size '64' must be WIDTHxHEIGHT" --size 64
[ -e "$T/x.mp4" ] && { echo "FAIL: a refused run wrote $T/x.mp4"; fail=1; }
check "plan --size 0x0" 2 timeout 30 "$WF" plan --ranks 2 --size 0x0
expect_err "plan --size 0x0" "--size '0x0' has a width of 0"
check "plan --size past the model" 2 timeout 30 "$WF" plan --ranks 2 --model "$FX/tiny-wan22" \
  --size 4096x32 --frames 9 --steps 5
expect_err "plan --size past the model" "width 4096 is more than this model's limit"
check "generate --help" 0 "$WF" generate --help
for want in "in [0, 100]" "in [0.01, 100]" "1..4096" "4x the online cores" "--prompt-file FILE"; do
  expect_out "generate --help states '$want'" "$want"
done
check "the largest guidance runs" 0 "${G[@]}" --guidance 100 --guidance-2 100 --out "$T/g.mp4"

# ---- 2. --latents holding NaN or Inf ----
python3 - "$T" <<'PY'
import json, struct, sys
n = 16 * 2 * 8 * 8  # [1, 16, 2, 8, 8]: 64x64, 5 frames
h = json.dumps({"latents": {"dtype": "F32", "shape": [1, 16, 2, 8, 8],
                            "data_offsets": [0, 4 * n]}}).encode()
for name, at, bad in (("nan", 307, float("nan")), ("inf", 2047, float("-inf"))):
    v = [0.5] * n
    v[at] = bad
    open("%s/%s.safetensors" % (sys.argv[1], name), "wb").write(
        struct.pack("<Q", len(h)) + h + struct.pack("<%df" % n, *v))
PY
L=(lim "$WF" generate --model "$M" --prompt "a red fox" --size 64x64 --frames 5 --steps 2 --threads 1)
check "--latents with a NaN" 1 "${L[@]}" --latents "$T/nan.safetensors" --out "$T/x.mp4"
expect_err "--latents with a NaN" \
  "--latents $T/nan.safetensors: 'latents' element 307 ([0, 2, 0, 6, 3]) is nan; every value must be finite"
check "--latents with an Inf" 1 "${L[@]}" --latents "$T/inf.safetensors" --out "$T/x.mp4"
expect_err "--latents with an Inf" "'latents' element 2047 ([0, 15, 1, 7, 7]) is -inf"
check "--latents with a NaN, 2 ranks" 1 mpi "$WF" generate --model "$M" --prompt x --size 64x64 \
  --frames 5 --steps 2 --threads 1 --latents "$T/nan.safetensors" --out "$T/x.mp4"
grep -qF "'latents' element 307" "$T/err" || { echo "FAIL: 2 ranks, NaN latents: no message"; fail=1; }
[ -e "$T/x.mp4" ] && { echo "FAIL: a refused run wrote $T/x.mp4"; fail=1; }

# ---- 3. latents that become non-finite: the step and the expert, exit 1 ----
poison() { # poison MODEL_COPY EXPERT_FOLDER: every proj_out.weight value 3e38 (stdlib only)
  rm -rf "$1"; cp -r "$M" "$1"
  python3 - "$1/$2/diffusion_pytorch_model.safetensors" proj_out.weight <<'PY'
import json, struct, sys
path, name = sys.argv[1], sys.argv[2]
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    t = json.loads(f.read(n))[name]
    assert t["dtype"] == "F32", t["dtype"]
    a, b = t["data_offsets"]
    f.seek(8 + n + a)
    f.write(struct.pack("<f", 3e38) * ((b - a) // 4))
PY
}
poison "$T/bad1" transformer
poison "$T/bad2" transformer_2
PROGN="wanfarm generate"
P=(generate --prompt "a red fox" --size 64x64 --frames 5 --steps 2 --seed 1 --threads 1)
for run in "bad1 step 1/2 (transformer):" "bad2 step 2/2 (transformer_2):"; do
  m=${run%% *}; want=${run#* }
  check "$m: non-finite latents" 1 lim "$WF" "${P[@]}" --model "$T/$m" --out "$T/x.mp4"
  tail -1 "$T/err" | grep -qF "$PROGN: $want the latents are not finite after this step" ||
    { echo "FAIL: $m: the last line is not '$want ...':"; sed 's/^/  | /' "$T/err" | head -5; fail=1; }
  check "$m: non-finite latents, 2 ranks" 1 mpi "$WF" "${P[@]}" --model "$T/$m" --out "$T/x.mp4"
  grep -qF "request 0, $want the latents are not finite" "$T/err" ||
    { echo "FAIL: $m, 2 ranks: no '$want' line:"; sed 's/^/  | /' "$T/err" | head -5; fail=1; }
  [ -e "$T/x.mp4" ] && { echo "FAIL: $m: a failed run wrote $T/x.mp4"; rm -f "$T/x.mp4"; fail=1; }
done

# ---- 4. memory flat over a queue ----
cat >"$T/rss.py" <<'PY'
import os, resource, subprocess, sys
# rss.py OUT CMD...: runs CMD, writes its peak RSS in KiB to OUT (.RANK under mpirun); its exit code
rc = subprocess.call(sys.argv[2:], stdout=subprocess.DEVNULL)
rank = os.environ.get("OMPI_COMM_WORLD_RANK")
open(sys.argv[1] + ("." + rank if rank else ""), "w").write(
    str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)
PY
Q=(generate --model "$M" --prompt "a red fox" --size 128x128 --frames 17 --steps 1 --seed 1
   --threads 1 --json-progress)
for c in 3 12; do
  rm -rf "$T/q"; mkdir "$T/q"
  lim python3 "$T/rss.py" "$T/rss$c" "$WF" "${Q[@]}" --count $c --out "$T/q/v.mp4" \
    --save-latents "$T/q/l.h5" --contact-sheet "$T/q/s.png" 2>"$T/err" ||
    { echo "FAIL: --count $c: $(tail -1 "$T/err")"; fail=1; }
  rm -rf "$T/q"; mkdir "$T/q"
  mpi python3 "$T/rss.py" "$T/mrss$c" "$WF" "${Q[@]}" --count $c --placement shared --ulysses 1 \
    --cfg-parallel --vae-ranks 2 --out "$T/q/v.mp4" --save-latents "$T/q/l.h5" \
    --contact-sheet "$T/q/s.png" 2>"$T/err" ||
    { echo "FAIL: 2 ranks, --count $c: $(tail -1 "$T/err")"; fail=1; }
done
flat() { # flat WHAT FILE3 FILE12
  local a b; a=$(cat "$2" 2>/dev/null || echo 0); b=$(cat "$3" 2>/dev/null || echo 0)
  echo "peak RSS $1: --count 3 $a KiB, --count 12 $b KiB"
  [ "$a" -gt 0 ] && [ "$b" -gt 0 ] && [ $((b - a)) -lt 6144 ] ||
    { echo "FAIL: $1: memory grows with the queue ($a KiB -> $b KiB)"; fail=1; }
}
if [ $SAN = 0 ]; then # a sanitizer's quarantine keeps freed memory: no flat peak there
  flat "one process" "$T/rss3" "$T/rss12"
  flat "rank 0 of 2" "$T/mrss3.0" "$T/mrss12.0"
  flat "rank 1 of 2" "$T/mrss3.1" "$T/mrss12.1"
fi

# ---- 5. --prompt-file ----
python3 -c "import sys; sys.stdout.write('a red fox running through snow ' * 33000 + '\n')" >"$T/big.txt"
S=(lim "$WF" generate --model "$M" --size 64x64 --frames 5 --steps 2 --seed 1 --threads 1)
check "a 1 MB prompt from a file" 0 "${S[@]}" --prompt-file "$T/big.txt" --out "$T/big.mp4"
[ -s "$T/big.mp4" ] || { echo "FAIL: the 1 MB prompt wrote no video"; fail=1; }
printf 'one\n\n  \t\r\nthree\r\n' >"$T/few.txt"
check "--prompt and --prompt-file in order" 0 "${S[@]}" --prompt first --prompt-file "$T/few.txt" \
  --prompt last --save-latents "$T/l.h5" --json-progress
expect_out "--prompt and --prompt-file: 4 videos" '"videos":4'
check "the third prompt alone" 0 "${S[@]}" --prompt three --save-latents "$T/three.h5"
if command -v h5dump >/dev/null; then
  "$SCRIPTS/compare_latents.py" "$T/l-2.h5" "$T/three.h5" 0 >/dev/null ||
    { echo "FAIL: video 2 of --prompt first --prompt-file (one, three) --prompt last is not 'three'"; fail=1; }
  "$SCRIPTS/compare_latents.py" "$T/l-1.h5" "$T/three.h5" 0 >/dev/null &&
    { echo "FAIL: videos 1 and 2 have the same latents"; fail=1; }
else
  echo "note: h5dump not installed, prompt order not compared"
fi
feed() { printf "$1" | "${@:2}"; } # feed TEXT CMD...: CMD with TEXT on stdin
check "--prompt-file - (stdin)" 0 feed 'x\ny\n' "${S[@]}" --prompt-file - --save-latents "$T/s.h5" \
  --json-progress
expect_out "--prompt-file -: 2 videos" '"videos":2'
check "--prompt-file - under mpirun" 0 feed 'x\ny\nz\n' mpi "$WF" generate --model "$M" --size 64x64 \
  --frames 5 --steps 2 --seed 1 --threads 1 --prompt-file - --save-latents "$T/m.h5"
[ -s "$T/m-2.h5" ] || { echo "FAIL: --prompt-file - under mpirun: no third video"; fail=1; }
python3 -c "
for i in range(300): print('prompt %d' % i)" >"$T/many.txt"
mkdir -p "$T/many"
check "300 prompts from a file" 0 "${S[@]}" --prompt-file "$T/many.txt" --save-latents "$T/many/l.h5"
[ -s "$T/many/l-299.h5" ] || { echo "FAIL: 300 prompts: no l-299.h5"; fail=1; }
args=(); for i in $(seq 300); do args+=(--prompt "p$i"); done
check "300 --prompt options" 0 "${S[@]}" "${args[@]}" --save-latents "$T/many/p.h5"
check "--prompt-file missing" 1 "${S[@]}" --prompt-file "$T/absent.txt" --out "$T/x.mp4"
expect_err "--prompt-file missing" "--prompt-file $T/absent.txt: cannot open: No such file or directory"
printf '\n \n' >"$T/empty.txt"
check "--prompt-file empty" 1 "${S[@]}" --prompt-file "$T/empty.txt" --out "$T/x.mp4"
expect_err "--prompt-file empty" "--prompt-file $T/empty.txt: no prompt in it (every line is empty)"

[ $fail = 0 ] && echo "test_limits: OK"
exit $fail
