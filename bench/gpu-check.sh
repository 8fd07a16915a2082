#!/usr/bin/env bash
# gpu-check.sh OUTDIR: one command for a fresh GPU machine (H100/H200): build wanfarm there in the
# GPU profile, check the CUDA backend against the CPU, benchmark it, print one table.
#
# What it is, in order (every part under `timeout`, its log and JSON written into OUTDIR as it
# goes, so that one part failing or hanging leaves the others' results):
#   found      what this machine has, and where: nvcc, the GPU (nvidia-smi), python3 and torch, the
#              nvidia/{cublas,cudnn,nccl,cuda_runtime} wheel folders, cmake, ninja, gcc, glibc
#   deps       .gpu-debs/*.deb (bench/gpu-deps.sh, run on a Debian 12 machine beforehand) unpacked
#              with dpkg -x into a private prefix, BUILD/deps (never into /); of the runtime
#              dependencies (.gpu-debs/deps/) only the libraries this machine lacks
#   configure  Release, -G Ninja when there is ninja, CUDA on, FFmpeg and the farm off, the deps
#              prefix (-DWANFARM_DEPS_ROOT) and the wheel folders (-DWANFARM_CUDA_LIBDIRS)
#   build      everything that builds (ninja -k 0: one broken target does not stop the others)
#   devices    `wanfarm devices` (the plug-in's view of the GPU)
#   backend_ops  test_backend_ops --json OUTDIR/backend_ops.json: every op, CUDA against CPU
#   gpu_tests  ctest -L gpu: the tiny pipelines on CUDA against the CPU, the communicator on
#              device buffers (test_comm: NCCL, or MPI through host memory for ranks sharing the
#              GPU) and every layout on 2 and 3 GPU ranks against the CPU (test_dist --device
#              cuda), under the unpacked OpenMPI (and whatever else is labelled gpu)
#   memory     each GPU rank's measured peak against the planner's prediction for it (generate's
#              memory record, --save-latents: no FFmpeg needed), within 10%, for shared Ulysses 2
#              with a parallel decode and CFG parallel on 2 ranks (sharing the GPU when there is
#              one), on the tiny12 model at 256x256, 17 frames
#   comm       bench_comm under mpirun on device buffers, nccl-tests style (all-to-all, the
#              overlapped all-to-all, all-gather; algbw, busbw, checked bytes) for every GPU count
#              the machine has (NCCL), and 2 ranks sharing GPU 0 (MPI through host memory);
#              OUTDIR/comm.cost.json: the planner's intra_bw and intra_latency from the largest
#   ulysses    bench_dist --device cuda at A14B width (1 block, 720p: 75 600 tokens, bf16): the
#              forward's wall, all-to-all, all-gather and compute on 1 GPU rank and on N (N GPUs,
#              blocking and overlapped all-to-alls; on one GPU, 2 ranks sharing it)
#   bench_gpu  bench_gpu --json OUTDIR/bench_gpu.json --cost-file OUTDIR/gpu.cost.json
#   predict    the planner recalibrated from these numbers: gpu.cost.json with comm.cost.json's
#              link rates merged in (OUTDIR/recalibrated.cost.json), then `wanfarm plan` for the
#              A14B 720p video on 8 and on 64 GPUs (OUTDIR/predict-8.json, predict-64.json)
# then one table: part, status, seconds, what failed. OUTDIR/summary.json holds the same, rewritten
# after every part. Each part has a time budget (seconds; GPU_CHECK_<PART>=N overrides), and none
# runs past 470 s from the start (GPU_CHECK_TOTAL): under 8 minutes on an H100/H200 machine.
# GPU_CHECK_TARBALL=FILE re-packs OUTDIR into FILE after every part (for a runner that brings back
# few files). GPU_CHECK_BUILD=DIR sets the build folder (default build-gpu in the working tree);
# GPU_CHECK_CMAKE_ARGS adds configure arguments.
# Exit status: 0 when every part passed, 1 otherwise (a part skipped for want of a device too),
# 2 on usage.
# What it is not: a CI job (CI has no GPU), or an installer: nothing outside the working tree and
# OUTDIR is written.
# Tested by: running it on a GPU machine; its deps/configure half also on a Debian machine without
# GPU against a dpkg -x tree (see the README's "On a GPU").
set -uo pipefail

if [ $# -ne 1 ] || [ "${1:0:1}" = - ]; then
    echo "usage: bench/gpu-check.sh OUTDIR   (see the head of this file)" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${GPU_CHECK_BUILD:-$ROOT/build-gpu}
DEPS=$BUILD/deps
DEBS=${GPU_DEBS_DIR:-$ROOT/.gpu-debs}
NPROC=$(nproc 2>/dev/null || echo 4)
T_START=$(date +%s)

# time budgets, seconds; a part never runs past the whole check's deadline (GPU_CHECK_TOTAL, 470 s)
B_DEPS=${GPU_CHECK_DEPS:-40}
B_CONFIGURE=${GPU_CHECK_CONFIGURE:-60}
B_BUILD=${GPU_CHECK_BUILD_S:-180}
B_DEVICES=${GPU_CHECK_DEVICES:-30}
B_OPS=${GPU_CHECK_OPS:-60}
B_TESTS=${GPU_CHECK_TESTS:-90}
B_MEMORY=${GPU_CHECK_MEMORY:-40}
B_COMM=${GPU_CHECK_COMM:-30}
B_ULYSSES=${GPU_CHECK_ULYSSES:-60}
B_BENCH=${GPU_CHECK_BENCH:-100}
B_PREDICT=${GPU_CHECK_PREDICT:-15}
DEADLINE=$((T_START + ${GPU_CHECK_TOTAL:-470}))

PARTS=()     # "name|status|seconds|what" per finished part
log() { printf '%s\n' "$*" | tee -a "$OUT/gpu-check.log"; }
: >"$OUT/gpu-check.log"

json_str() { # a JSON string of $1 (quotes, backslashes, control characters escaped)
    printf '%s' "$1" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))' 2>/dev/null ||
        printf '"%s"' "$(printf '%s' "$1" | tr -d '"\\' | tr '\n\t' '  ')"
}

write_summary() {
    local first=1 p name status secs what
    {
        printf '{"outdir": %s, "elapsed_seconds": %d, "parts": [' "$(json_str "$OUT")" \
            $(($(date +%s) - T_START))
        for p in "${PARTS[@]}"; do
            IFS='|' read -r name status secs what <<<"$p"
            [ $first = 1 ] || printf ','
            first=0
            printf '\n  {"part": "%s", "status": "%s", "seconds": %s, "what": %s}' \
                "$name" "$status" "$secs" "$(json_str "$what")"
        done
        printf '\n]}\n'
    } >"$OUT/summary.json.tmp" && mv "$OUT/summary.json.tmp" "$OUT/summary.json"
    if [ -n "${GPU_CHECK_TARBALL:-}" ]; then
        tar -czf "$GPU_CHECK_TARBALL.tmp" -C "$OUT" . 2>/dev/null && mv "$GPU_CHECK_TARBALL.tmp" "$GPU_CHECK_TARBALL"
    fi
}

# finish NAME STATUS SECONDS WHAT: records a part (its JSON file, the summary).
finish() {
    local name=$1 status=$2 secs=$3 what=${4:-}
    what=${what//|//}
    PARTS+=("$name|$status|$secs|$what")
    printf '{"part": "%s", "status": "%s", "seconds": %s, "log": "%s.log", "what": %s}\n' \
        "$name" "$status" "$secs" "$name" "$(json_str "$what")" >"$OUT/$name.status.json"
    log "== $name: $status (${secs} s)${what:+: $what}"
    write_summary
}

# The first lines of a log that say what went wrong (for the table).
what_failed() {
    grep -m 3 -E 'FAIL|[Ee]rror|error:|not found|No such|cannot|refused|Timeout|\*\*\*' "$1" 2>/dev/null |
        cut -c1-160 | tr '\n' ';' | sed 's/;$//'
}

# run_part NAME BUDGET CMD...: CMD under timeout, output to OUTDIR/NAME.log; 77 is "skipped".
run_part() {
    local name=$1 budget=$2 t0 rc secs status left
    shift 2
    left=$((DEADLINE - $(date +%s)))
    if [ $left -lt 5 ]; then
        finish "$name" "no time" 0 "the check's ${GPU_CHECK_TOTAL:-470} s were used up before it"
        return
    fi
    [ $left -lt "$budget" ] && budget=$left
    log "== $name: $* (budget ${budget} s)"
    t0=$(date +%s.%N)
    timeout --kill-after=10 "$budget" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    tail -n 25 "$OUT/$name.log" | tee -a "$OUT/gpu-check.log"
    case $rc in
        0) status=ok ;;
        77) status=skipped ;;
        124 | 137) status=timeout ;;
        *) status=failed ;;
    esac
    local what=""
    [ $status = ok ] || what="rc $rc; $(what_failed "$OUT/$name.log")"
    [ $status = timeout ] && what="over its ${budget} s budget; ${what#rc * }"
    [ $status = skipped ] && what=$(tail -n 1 "$OUT/$name.log" | cut -c1-160)
    finish "$name" "$status" "$secs" "$what"
}

# target_state T: "built" (its file is there), "defined" (in the build, not built) or "absent".
target_state() {
    local t=$1 f
    for f in "$BUILD/tests/$t" "$BUILD/bench/$t" "$BUILD/worker/$t" "$BUILD/$t"; do
        [ -x "$f" ] && { echo "built $f"; return; }
    done
    if cmake --build "$BUILD" --target help 2>/dev/null | grep -Eq "(^|[ .])$t(:| |$)"; then
        echo defined
    else
        echo absent
    fi
}

# ---- found: what this machine has -------------------------------------------------------------
found() {
    local py torch
    echo "host: $(uname -srm), $(nproc) cores; $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
    echo "glibc: $(ldd --version 2>/dev/null | head -1)"
    echo "nvcc: $(command -v nvcc || echo "not on PATH") $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*')"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=index,name,compute_cap,driver_version,memory.total --format=csv,noheader 2>&1 |
            sed 's/^/gpu: /'
    else
        echo "gpu: no nvidia-smi"
    fi
    echo "cmake: $(command -v cmake) $(cmake --version 2>/dev/null | head -1)"
    echo "ninja: $(command -v ninja || echo none) $(ninja --version 2>/dev/null)"
    echo "cc: $(command -v cc) $(cc --version 2>/dev/null | head -1)"
    echo "pkg-config: $(command -v pkg-config || echo "none (CMake finds jansson and sentencepiece by their files)")"
    py=$(command -v python3 || echo "")
    echo "python3: ${py:-none}"
    if [ -n "$py" ]; then
        torch=$(python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())' 2>&1 | tail -1)
        echo "torch: $torch"
    fi
    echo "wheel folders:"
    wheel_dirs | sed 's/^/  /'
    echo "debs: $(ls "$DEBS"/*.deb 2>/dev/null | wc -l) + $(ls "$DEBS"/deps/*.deb 2>/dev/null | wc -l) in $DEBS"
}

# The nvidia/<lib> folders of python3's site-packages that hold include/ or lib/, one a line.
wheel_dirs() {
    python3 - <<'EOF' 2>/dev/null
import os
try:
    import nvidia
    roots = list(nvidia.__path__)
except Exception:
    roots = []
for r in roots:
    for n in ("cublas", "cudnn", "nccl", "cuda_runtime", "cu13", "cuda_nvrtc"):
        d = os.path.join(r, n)
        if os.path.isdir(os.path.join(d, "lib")) or os.path.isdir(os.path.join(d, "include")):
            print(d)
EOF
}

# ---- deps: the .debs into the private prefix -------------------------------------------------
unpack_deb() { # unpack_deb FILE DIR: dpkg-deb -x, or ar + tar where there is no dpkg
    if command -v dpkg-deb >/dev/null; then
        dpkg-deb -x "$1" "$2"
    else
        local t
        t=$(mktemp -d) && (cd "$t" && ar x "$1" && tar -xf data.tar.* -C "$2") && rm -rf "$t"
    fi
}

deps() {
    local f so d stage have
    [ -n "$(ls "$DEBS"/*.deb 2>/dev/null)" ] || {
        echo "no .debs in $DEBS: run bench/gpu-deps.sh on a Debian 12 machine first (they travel with the working tree)"
        return 1
    }
    rm -rf "$DEPS" && mkdir -p "$DEPS" || return 1
    for f in "$DEBS"/*.deb; do unpack_deb "$f" "$DEPS" || { echo "cannot unpack $f"; return 1; }; done
    echo "unpacked $(ls "$DEBS"/*.deb | wc -l) packages into $DEPS"
    # runtime dependencies: a library only when this machine has no library of that soname
    stage=$(mktemp -d)
    for f in "$DEBS"/deps/*.deb; do [ -e "$f" ] && unpack_deb "$f" "$stage"; done
    have=$(ldconfig -p 2>/dev/null | awk '{print $1}')
    d="$DEPS/usr/lib/$MULTI"
    mkdir -p "$d"
    local taken=0 kept=0
    # by soname (libfoo.so.N, a link or the file itself), copied as that name with its contents
    while IFS= read -r so; do
        if grep -qxF "$(basename "$so")" <<<"$have"; then
            kept=$((kept + 1))
        else
            cp -L "$so" "$d/" && taken=$((taken + 1))
        fi
    done < <(find "$stage" \( -type f -o -type l \) -path '*/lib/*' -regex '.*/lib[^/]*\.so\.[0-9]+$')
    rm -rf "$stage"
    echo "runtime libraries: $taken taken from .gpu-debs/deps, $kept already on this machine"
    # links that point to /usr/... inside the tree would leave it: make them relative to it
    find "$DEPS" -type l -lname '/*' | while IFS= read -r l; do
        local t
        t=$(readlink "$l")
        [ -e "$DEPS$t" ] && ln -sfn "$DEPS$t" "$l"
    done
    ls "$DEPS/usr/include/jansson.h" "$DEPS/usr/lib/$MULTI/openblas-openmp/libopenblas.so" \
       "$DEPS/usr/lib/$MULTI/openmpi/lib/libmpi.so" "$DEPS/usr/lib/$MULTI/hdf5/openmpi/libhdf5.so"
}

# ---- main -------------------------------------------------------------------------------------
MULTI=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
[ -n "$MULTI" ] || MULTI=x86_64-linux-gnu
log "gpu-check: $ROOT -> $BUILD, results in $OUT ($(date -u +%FT%TZ))"

t0=$(date +%s)
found >"$OUT/found.log" 2>&1
tee -a "$OUT/gpu-check.log" <"$OUT/found.log"
finish found ok $(($(date +%s) - t0)) ""

WHEELS=$(wheel_dirs | tr '\n' ';' | sed 's/;$//')
L=$DEPS/usr/lib/$MULTI
export LD_LIBRARY_PATH="$L:$L/openblas-openmp:$L/openmpi/lib:$L/hdf5/openmpi${WHEELS:+:$(echo "$WHEELS" | sed 's#;#/lib:#g')/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OPAL_PREFIX=$DEPS/usr # a relocated OpenMPI (only used under mpirun)
log "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

export -f deps unpack_deb
export DEPS DEBS MULTI
run_part deps "$B_DEPS" bash -c deps

ARCHS=${CMAKE_CUDA_ARCHITECTURES:-}
if [ -z "$ARCHS" ]; then
    cc_=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
    case $cc_ in
        "") ARCHS=90 ;;   # no nvidia-smi answer: Hopper, the check's target
        *) ARCHS=$cc_ ;;
    esac
fi
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
[ -f "$BUILD/CMakeCache.txt" ] && ! grep -q "CMAKE_GENERATOR:INTERNAL=${GEN[1]:-Unix Makefiles}" "$BUILD/CMakeCache.txt" &&
    rm -rf "$BUILD/CMakeCache.txt" "$BUILD/CMakeFiles"
run_part configure "$B_CONFIGURE" cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DWANFARM_CUDA=ON -DWANFARM_FFMPEG=OFF -DWANFARM_FARM=OFF -DWANFARM_DEPS_ROOT="$DEPS" \
    -DWANFARM_CUDA_LIBDIRS="$WHEELS" -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" ${GPU_CHECK_CMAKE_ARGS:-}

KEEP_GOING=()
[ ${#GEN[@]} -gt 0 ] && KEEP_GOING=(-- -k 0)
run_part build "$B_BUILD" cmake --build "$BUILD" -j "$NPROC" "${KEEP_GOING[@]}"

# part_exe NAME TARGET BUDGET ARGS...: runs a built target as a part, or says why it cannot.
part_exe() {
    local name=$1 target=$2 budget=$3 state
    shift 3
    state=$(target_state "$target")
    case $state in
        built*) run_part "$name" "$budget" "${state#built }" "$@" ;;
        defined) finish "$name" "not built" 0 "target $target is in the build but did not build (see build.log)" ;;
        *) finish "$name" missing 0 "target $target does not exist yet" ;;
    esac
}

part_exe devices wanfarm "$B_DEVICES" devices
part_exe backend_ops test_backend_ops "$B_OPS" --json "$OUT/backend_ops.json"

if [ -f "$BUILD/CTestTestfile.cmake" ] && ctest --test-dir "$BUILD" -N -L gpu 2>/dev/null | grep -q 'Total Tests: [1-9]'; then
    run_part gpu_tests "$B_TESTS" ctest --test-dir "$BUILD" -L gpu --output-on-failure --timeout "$B_TESTS" \
        --output-junit "$OUT/gpu_tests.xml"
else
    finish gpu_tests missing 0 "no ctest test is labelled gpu yet (or the build has no tests)"
fi

# ---- multi-rank parts: the build's MPI launcher, as root, ranks may share a GPU -------------
MPIEXEC=$(sed -n 's/^MPIEXEC_EXECUTABLE:FILEPATH=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none WANFARM_SHARE_GPU=1
NGPU=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | wc -l)
[ "$NGPU" -ge 1 ] 2>/dev/null || NGPU=0
export MPIEXEC NGPU OUT BUILD

comm_rows() { # bench_comm for 1..NGPU GPU ranks (NCCL), then 2 ranks on GPU 0 (through host)
    local k exe=$BUILD/bench/bench_comm rc=0
    [ -x "$exe" ] || { echo "bench_comm is not built"; return 1; }
    [ -n "$MPIEXEC" ] || { echo "no MPI launcher in the build (MPIEXEC_EXECUTABLE)"; return 1; }
    [ "$NGPU" -ge 1 ] || { echo "no GPU"; return 77; }
    for k in $(seq 1 "$NGPU"); do
        "$MPIEXEC" -np "$k" "$exe" --device cuda --sizes 64K,1M,16M,128M -w 2 -n 10 \
            --json "$OUT/comm-$k.json" --cost-out "$OUT/comm.cost.json" || rc=1
    done
    if [ "$NGPU" -eq 1 ]; then
        CUDA_VISIBLE_DEVICES=0 "$MPIEXEC" -np 2 "$exe" --device cuda --sizes 64K,1M,16M -w 1 -n 5 \
            --json "$OUT/comm-shared-2.json" || rc=1
    fi
    return $rc
}

ulysses_rows() { # the A14B-width Ulysses forward on 1 GPU rank, then on N (blocking, overlapped)
    local exe=$BUILD/bench/bench_dist rc=0 n ov
    [ -x "$exe" ] || { echo "bench_dist is not built"; return 1; }
    [ "$NGPU" -ge 1 ] || { echo "no GPU"; return 77; }
    local args=(--device cuda --width a14b --layers 1 --latent 21,90,160 --text-len 512 -w 1 -n 3)
    "$MPIEXEC" -np 1 "$exe" "${args[@]}" --json "$OUT/ulysses-1.json" || rc=1
    n=$NGPU
    [ "$n" -gt 8 ] && n=8
    [ "$n" -lt 2 ] && n=2 # one GPU: 2 ranks share it (its all-to-alls go through host memory)
    for ov in 0 1; do
        [ "$NGPU" -lt 2 ] && [ $ov = 1 ] && continue # overlap needs NCCL between distinct GPUs
        "$MPIEXEC" -np "$n" "$exe" "${args[@]}" --overlap $ov --json "$OUT/ulysses-$n-ov$ov.json" ||
            rc=1
    done
    return $rc
}

predict_rows() { # the planner on 8 and 64 GPUs from this machine's measured rates
    local wf=$BUILD/worker/wanfarm k
    [ -s "$OUT/gpu.cost.json" ] || { echo "no gpu.cost.json (bench_gpu did not write one)"; return 1; }
    python3 - "$OUT/gpu.cost.json" "$OUT/comm.cost.json" "$OUT/recalibrated.cost.json" <<'EOF' || return 1
import json, os, sys
cost = json.load(open(sys.argv[1]))
if os.path.exists(sys.argv[2]):
    comm = json.load(open(sys.argv[2]))
    for k in ("intra_bw", "intra_latency"):
        if k in comm: cost[k] = comm[k]
    cost["_comm_source"] = comm.get("_source", "bench_comm")
json.dump(cost, open(sys.argv[3], "w"), indent=2)
print("recalibrated cost:", json.dumps(cost))
EOF
    for k in 8 64; do
        "$wf" plan --preset a14b --ranks $k --cost "$OUT/recalibrated.cost.json" --json \
            >"$OUT/predict-$k.json" || return 1
        python3 - "$OUT/predict-$k.json" $k <<'EOF' || return 1
import json, sys
p = json.load(open(sys.argv[1]))
b = p["plan"]
print("%s GPUs: layout %s, %.1f s per 720p video (text %.2f s, decode %.2f s), %.1f videos/hour, "
      "%.0f GB of collectives per video" % (sys.argv[2], b["layout"], b["latency_s"], b["t_text"],
      b["t_decode"], b["videos_per_hour"], b["bytes_per_video"] / 1e9))
EOF
    done
}
memory_rows() { # the planner's per-rank memory against the measured peaks, on GPU ranks
    local wf=$BUILD/worker/wanfarm m=$OUT/memory-model rc=0 name
    [ "$NGPU" -ge 1 ] || { echo "no GPU"; return 77; }
    rm -rf "$m" && "$wf" mkmodel --preset tiny12 --seed 3 "$m" >/dev/null || return 1
    for name in "shared --ulysses 2 --no-cfg-parallel --vae-ranks 2" \
                "shared --ulysses 1 --cfg-parallel --vae-ranks 1"; do
        # shellcheck disable=SC2086
        "$MPIEXEC" -np 2 "$wf" generate --model "$m" --prompt "a red fox" --size 256x256 \
            --frames 17 --steps 2 --seed 7 --device cuda --precision fp32 --json-progress \
            --save-latents "$OUT/memory.h5" --placement $name >"$OUT/memory.json" || { rc=1; continue; }
        python3 - "$OUT/memory.json" "$name" <<'EOF' || rc=1
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"event":"memory"' in l]
bad = not ev
for r in (ev[0]["ranks"] if ev else []):
    p, m = r["predicted_bytes"], r["peak_bytes"]
    off = abs(m - p) / p if p > 0 else 1.0
    bad |= off > 0.10
    print("%-45s rank %d: peak %8.1f MiB, planner %8.1f MiB (%+5.1f%%), workspace %.1f MiB, "
          "device in use %.2f GiB" % (sys.argv[2], r["rank"], m / 2**20, p / 2**20,
          100 * (m - p) / p if p else 0, r["workspace_bytes"] / 2**20,
          r["device_used_bytes"] / 2**30))
sys.exit(1 if bad else 0)
EOF
    done
    return $rc
}
export -f comm_rows ulysses_rows predict_rows memory_rows
run_part memory "$B_MEMORY" bash -c memory_rows
run_part comm "$B_COMM" bash -c comm_rows
run_part ulysses "$B_ULYSSES" bash -c ulysses_rows

part_exe bench_gpu bench_gpu "$B_BENCH" --json "$OUT/bench_gpu.json" --cost-file "$OUT/gpu.cost.json"
run_part predict "$B_PREDICT" bash -c predict_rows

# ---- the table -------------------------------------------------------------------------------
fail=0
{
    echo
    printf '%-12s %-10s %8s  %s\n' part status seconds "what failed"
    for p in "${PARTS[@]}"; do
        IFS='|' read -r name status secs what <<<"$p"
        printf '%-12s %-10s %8s  %s\n' "$name" "$status" "$secs" "${what:0:110}"
    done
    echo "total $(($(date +%s) - T_START)) s; logs and JSON in $OUT"
} | tee -a "$OUT/gpu-check.log"
for p in "${PARTS[@]}"; do # a skipped part (no device) is a failure of a GPU check
    IFS='|' read -r name status secs what <<<"$p"
    [ "$status" = ok ] || fail=1
done
write_summary
exit $fail
