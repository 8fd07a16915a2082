#!/usr/bin/env bash
# scripts/demo.sh: build wanfarm and run the main job on the built-in demo model: write a
# random-weight Wan2.2 text-to-video model in the full Diffusers layout (`wanfarm mkmodel`), then
# generate a 17-frame 64x64 video from a prompt with it (both experts, UniPC, 8 steps) as an H.264
# MP4, PNG frames and the final latents (HDF5). The weights are random, so the video is
# noise-like: the demo shows the whole path (tokenizer, umT5, two DiT experts, sampler, VAE
# decode, MP4), not a picture of a fox. Then the same video over 2 MPI ranks, and as a farm job
# (wanfarm-coord, one wanfarm worker world, wanctl): both must equal the one-process run (within
# 1e-5; bit for bit on BLAS cores that allow it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
WF=build/worker/wanfarm
echo "== wanfarm devices =="
$WF devices
echo "== wanfarm mkmodel --preset tiny build/demo-model =="
$WF mkmodel --preset tiny --force build/demo-model
rm -rf build/demo-frames
GEN=($WF generate --model build/demo-model --prompt "a red fox running through snow at sunset"
     --size 64x64 --frames 17 --steps 8 --seed 42 --out build/demo.mp4
     --frames-dir build/demo-frames --save-latents build/demo-latents.h5
     --contact-sheet build/demo-sheet.png)
echo "== ${GEN[*]} =="
if [ -x /usr/bin/time ] && /usr/bin/time -v true >/dev/null 2>&1; then
  /usr/bin/time -v -o build/demo-time.txt "${GEN[@]}"
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' build/demo-time.txt)
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' build/demo-time.txt)
else
  "${GEN[@]}"
  rss=""
fi
echo "== ffprobe build/demo.mp4 =="
if command -v ffprobe >/dev/null; then
  ffprobe -v error -select_streams v:0 -count_frames \
          -show_entries stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames \
          -show_entries format=duration,size -of default=noprint_wrappers=1 build/demo.mp4 |
    paste -sd' ' -
else
  echo "(ffprobe not installed)"
fi
echo "frames: build/demo-frames/ ($(ls build/demo-frames | wc -l) PNG), latents: build/demo-latents.h5, contact sheet: build/demo-sheet.png"
[ -n "$rss" ] && echo "generate: wall $wall, peak RSS $((rss / 1024)) MiB ($rss KiB)"
echo "== wanfarm inspect --summary build/demo-model =="
$WF inspect --summary build/demo-model | head -40
# The same video over 2 MPI ranks (the layout the planner picks and prints: on CPU ranks, CFG
# parallelism, the conditional pass on rank 0 and the unconditional one on rank 1, and a two-rank
# VAE decode; --placement split etc. choose others): the final latents must equal
# the one-process run's within 1e-5; with OpenBLAS's Haswell/Zen kernels they are identical, bit
# for bit, whatever the thread counts (the CPU backend cuts its GEMMs on BLAS-tile multiples).
echo "== mpirun -np 2 ${GEN[0]} generate ... (2 ranks) =="
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
mpirun -np 2 $WF generate --model build/demo-model --prompt "a red fox running through snow at sunset" \
  --size 64x64 --frames 17 --steps 8 --seed 42 --out build/demo-np2.mp4 \
  --save-latents build/demo-np2-latents.h5
if cmp_out=$(scripts/compare_latents.py build/demo-latents.h5 build/demo-np2-latents.h5); then
  echo "2 ranks: build/demo-np2.mp4; final latents vs the one-process run: $cmp_out"
else
  echo "2 ranks: final latents DIFFER from the one-process run: $cmp_out" >&2
  exit 1
fi
# The same video as a farm job: a coordinator on a fresh store, one worker world, a client that
# submits the spec and waits for it; its final latents must be the one-process run's (within 1e-5).
if [ -x build/coordinator/wanfarm-coord ]; then
  echo "== the farm: wanfarm-coord, one wanfarm worker world, wanctl submit/watch/result =="
  F=build/demo-farm
  rm -rf "$F" && mkdir -p "$F"
  build/coordinator/wanfarm-coord --store "$F/farm.db" --model demo --clients 'tcp://127.0.0.1:*' \
    --events 'tcp://127.0.0.1:*' --workers 'tcp://127.0.0.1:*' --ready-file "$F/ready" \
    2>"$F/coord.log" &
  coord=$!
  world=""
  trap 'kill $coord $world 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do [ -s "$F/ready" ] && break; sleep 0.05; done
  $WF worker --coordinator "$(sed -n 3p "$F/ready")" --model build/demo-model --model-name demo \
    --output-root "$F/videos" --checkpoint-root "$F/ckpt" 2>"$F/world.log" &
  world=$!
  CTL=(build/coordinator/wanctl --coordinator "$(sed -n 1p "$F/ready")")
  job=$("${CTL[@]}" submit --prompt "a red fox running through snow at sunset" --size 64x64 \
        --frames 17 --steps 8 --seed 42 --output fox.mp4 --save-latents --key demo-fox)
  "${CTL[@]}" watch "$job" --for 120
  out=$("${CTL[@]}" result "$job" --root "$F/videos" | head -1)
  # as for 2 ranks: equal within 1e-5, bit for bit where the BLAS core allows (Haswell/Zen)
  if cmp_out=$(scripts/compare_latents.py build/demo-latents.h5 "${out%.mp4}.h5"); then
    same="its MP4 is byte for byte build/demo.mp4"
    cmp -s "$out" build/demo.mp4 || same="its MP4 differs in bytes (the BLAS core rounds otherwise)"
    echo "farm job $job: $out; final latents vs the one-process run: $cmp_out; $same"
  else
    echo "farm job $job: final latents DIFFER from the one-process run: $cmp_out" >&2
    exit 1
  fi
  kill -TERM $world $coord
  wait $world $coord 2>/dev/null || true
  trap - EXIT
fi
