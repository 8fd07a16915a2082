#!/usr/bin/env bash
# run_dist.sh: bench_dist (one Ulysses DiT forward over the MPI world) at np 1, 2 and 4, the three
# tables as bench_dist prints them, then a speed-up table: the 1-rank forward time over the
# np-rank forward time (wall, max over ranks). Metrics: bench/PERFORMANCE.md, "bench_dist".
# Usage: bench/run_dist.sh [BUILD_DIR] [bench_dist flags...]
#   BUILD_DIR: the CMake build folder holding bench/bench_dist (default: build, from the repo root
#   or the current folder). Flags go to every run (e.g. --layers 1 --latent 5,40,40).
#   NPS="1 2 3" bench/run_dist.sh build   runs other world sizes (each must divide the 12 heads).
# Threads: each rank gets cores/np OpenMP threads (at least 1); np 4 on a 2-core machine is
# oversubscribed (4 single-threaded ranks on 2 cores). Exit status: 1 if any run said FAILED.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
[ $# -gt 0 ] && shift
if [ ! -x "$BUILD/bench/bench_dist" ] && [ -x "$ROOT/$BUILD/bench/bench_dist" ]; then
  BUILD="$ROOT/$BUILD"
fi
BIN="$BUILD/bench/bench_dist"
if [ ! -x "$BIN" ]; then
  echo "run_dist.sh: no $BIN; build it: cmake --build $BUILD --target bench_dist" >&2
  exit 2
fi
MPIRUN=${MPIRUN:-mpirun}
NPS=${NPS:-"1 2 4"}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
CORES=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)
OUT=$(mktemp -d "${TMPDIR:-/tmp}/run_dist.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

fail=0
for np in $NPS; do
  thr=$((CORES / np)); [ "$thr" -ge 1 ] || thr=1
  echo "## np $np ($thr OpenMP thread(s) per rank, $CORES cores)"
  # --bind-to none: Open MPI binds np <= 2 ranks to one core each by default, which would put a
  # rank's threads on a single core
  OMP_NUM_THREADS=$thr "$MPIRUN" -np "$np" --bind-to none "$BIN" --threads "$thr" "$@" \
    2>&1 | tee "$OUT/np$np.txt"
  rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || { echo "## np $np: exit status $rc"; fail=1; }
  echo
done

# the speed-up table, from each run's "# Forward : X ms wall ..." line
fwd() { sed -n 's/^# Forward : \([0-9.]*\) ms wall.*/\1/p' "$OUT/np$1.txt" | head -1; }
comp() { sed -n 's/^# Forward : .* ms wall (max over ranks), \([0-9.]*\) ms compute.*/\1/p' "$OUT/np$1.txt" | head -1; }
coll() { sed -n 's/^# Forward : .* ms compute (mean), \([0-9.]*\) ms in collectives.*/\1/p' "$OUT/np$1.txt" | head -1; }
first=${NPS%% *}
base=$(fwd "$first")
echo "## speed-up (forward wall, max over ranks; base: np $first)"
printf '# %4s %7s %10s %12s %15s %8s\n' np thr/rank "wall(ms)" "compute(ms)" "collectives(ms)" speedup
for np in $NPS; do
  thr=$((CORES / np)); [ "$thr" -ge 1 ] || thr=1
  w=$(fwd "$np"); c=$(comp "$np"); k=$(coll "$np")
  if [ -n "$w" ] && [ -n "$base" ]; then
    s=$(awk -v b="$base" -v w="$w" 'BEGIN { printf "%.2f", b / w }')
  else
    s=n/a; w=${w:-n/a}; c=${c:-n/a}; k=${k:-n/a}
  fi
  printf '  %4s %7s %10s %12s %15s %8s\n' "$np" "$thr" "$w" "$c" "$k" "$s"
done
over=""
for np in $NPS; do [ "$np" -gt "$CORES" ] && over="$over $np"; done
[ -n "$over" ] && echo "# np$over: more ranks than the $CORES cores (oversubscribed): not a scaling figure"
exit $fail
