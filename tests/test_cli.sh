#!/usr/bin/env bash
# test_cli.sh: the `wanfarm` command line: exit codes, one-line errors for bad files, and
# `inspect` listings checked against an independent reading of the same files (Python's json
# module on the raw safetensors headers; stdlib only, no torch).
# Usage: test_cli.sh WANFARM FIXTURES_DIR
set -uo pipefail
WF=$1
FX=$2
T=$(mktemp -d "${TMPDIR:-/tmp}/wanfarm-cli-XXXXXX")
trap 'rm -rf "$T"' EXIT
fail=0
. "$(dirname "$0")/cli_lib.sh"

check "no arguments" 2 "$WF"
check "--help" 0 "$WF" --help
grep -q "inspect" "$T/out" || { echo "FAIL: --help lists no inspect"; fail=1; }
check "unknown command" 2 "$WF" frobnicate
expect_err "unknown command" "unknown command 'frobnicate'"
check "version" 0 "$WF" version
check "devices" 0 "$WF" devices
grep -q "^devices: " "$T/out" || { echo "FAIL: devices prints no devices line"; fail=1; }
check "inspect --help" 0 "$WF" inspect --help
check "inspect without PATH" 2 "$WF" inspect
check "inspect unknown option" 2 "$WF" inspect --bogus x
check "inspect absent path" 1 "$WF" inspect "$T/absent.safetensors"
expect_err "absent path" "no such file"

# malformed files: exit 1 and one line naming the file and the problem
printf 'abc' >"$T/short.safetensors"
check "short file" 1 "$WF" inspect "$T/short.safetensors"
expect_err "short file" "$T/short.safetensors: file of 3 bytes is too small"
printf '\x40\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":"F32"' >"$T/trunc.safetensors"
check "truncated header" 1 "$WF" inspect "$T/trunc.safetensors"
expect_err "truncated header" "runs past the end"
python3 - "$T/gap.safetensors" <<'PY'
import json, struct, sys
h = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}}).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + bytes(16))
PY
check "gap" 1 "$WF" inspect "$T/gap.safetensors"
expect_err "gap" "tensor 'b' starts at byte 12 of the data, expected 8"
mkdir -p "$T/badpipe"
echo '{"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"]}' >"$T/badpipe/model_index.json"
check "pipeline without components" 1 "$WF" inspect "$T/badpipe"
expect_err "pipeline without components" "component 'vae' is missing"

# listings against Python's own reading of every safetensors header in the fixtures
listing_matches() { # listing_matches WEIGHTS_PATH: inspect output has each (name dtype shape bytes)
  python3 - "$1" "$T/out" <<'PY'
import glob, json, os, struct, sys
path, out = sys.argv[1], open(sys.argv[2]).read().split("\n")
files = []
if os.path.isdir(path):
    for n in ("diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.safetensors",
              "model.safetensors.index.json", "model.safetensors"):
        if os.path.exists(os.path.join(path, n)):
            path = os.path.join(path, n); break
if path.endswith(".json"):
    files = sorted({os.path.join(os.path.dirname(path), f) for f in json.load(open(path))["weight_map"].values()})
else:
    files = [path]
rows = {}
for f in files:
    b = open(f, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    for k, v in json.loads(b[8:8 + n]).items():
        if k == "__metadata__": continue
        rows[k] = (v["dtype"], "[" + ", ".join(map(str, v["shape"])) + "]", v["data_offsets"][1] - v["data_offsets"][0])
seen = 0
for line in out:
    parts = line.split()
    if parts and parts[0] in rows:
        d, s, nb = rows[parts[0]]
        rest = line.split(None, 2)[2] if len(parts) > 2 else ""
        if parts[1] != d or s not in line or str(nb) not in line.split():
            print("row differs for", parts[0], ":", line.strip(), "expected", d, s, nb); sys.exit(1)
        seen += 1
if seen != len(rows):
    print(f"{seen} of {len(rows)} tensors listed"); sys.exit(1)
print(f"{len(rows)} tensors match")
PY
}
for comp in transformer transformer_2 vae text_encoder; do
  check "inspect $comp" 0 "$WF" inspect "$FX/tiny-wan22/$comp"
  listing_matches "$FX/tiny-wan22/$comp" >/dev/null || { echo "FAIL: listing of $comp"; listing_matches "$FX/tiny-wan22/$comp"; fail=1; }
done
idx=$(ls "$FX"/tiny-wan22/transformer/*.index.json | head -1)
check "inspect sharded index" 0 "$WF" inspect "$idx"
listing_matches "$idx" >/dev/null || { echo "FAIL: listing of $idx"; fail=1; }
grep -q "in 2 files\|in 3 files" "$T/out" || { echo "FAIL: sharded index should span several files"; fail=1; }
check "inspect reference file" 0 "$WF" inspect "$FX/safetensors/reference.safetensors"
listing_matches "$FX/safetensors/reference.safetensors" >/dev/null || { echo "FAIL: listing of reference.safetensors"; fail=1; }
check "inspect pipeline" 0 "$WF" inspect "$FX/tiny-wan22"
for want in "boundary_ratio: 0.875" "transformer_2 (low-noise expert)" "UniPCMultistepScheduler" \
            "AutoencoderKLWan" "UMT5EncoderModel" "heads 2 x head_dim 12 = dim 24"; do
  grep -qF "$want" "$T/out" || { echo "FAIL: pipeline inspection lacks '$want'"; fail=1; }
done
check "inspect --summary" 0 "$WF" inspect --summary "$FX/tiny-wan21"
check "inspect scheduler folder" 0 "$WF" inspect "$FX/tiny-wan22/scheduler"
grep -q "flow_shift 3" "$T/out" || { echo "FAIL: scheduler folder"; fail=1; }

# mkmodel, then generate on the result: MP4 checked with ffprobe, PNG contact sheet
M="$T/model"
check "mkmodel --help" 0 "$WF" mkmodel --help
check "mkmodel without DIR" 2 "$WF" mkmodel
check "mkmodel unknown preset" 2 "$WF" mkmodel --preset huge "$T/m0"
check "mkmodel tiny" 0 "$WF" mkmodel --preset tiny --seed 5 "$M"
for f in model_index.json transformer/config.json transformer_2/config.json vae/config.json \
         text_encoder/config.json tokenizer/spiece.model tokenizer/tokenizer_config.json \
         scheduler/scheduler_config.json; do
  [ -s "$M/$f" ] || { echo "FAIL: mkmodel wrote no $f"; fail=1; }
done
check "inspect mkmodel folder" 0 "$WF" inspect "$M"
for want in "boundary_ratio: 0.875" "transformer_2 (low-noise expert)" "flow_shift 3"; do
  grep -qF "$want" "$T/out" || { echo "FAIL: mkmodel folder inspection lacks '$want'"; fail=1; }
done
check "mkmodel into a non-empty dir" 1 "$WF" mkmodel "$M"
expect_err "mkmodel into a non-empty dir" "is not empty; refusing to overwrite it (use --force)"
check "mkmodel --force" 0 "$WF" mkmodel --force --seed 5 "$M"
BASE=("$WF" generate --model "$M" --prompt "a red fox running through snow at sunset" --steps 3
      --seed 42 --threads 2)
GEN=("${BASE[@]}" --size 64x32 --frames 17)
check "generate on the mkmodel folder" 0 "${GEN[@]}" --out "$T/v.mp4" --contact-sheet "$T/sheet.png"
if command -v ffprobe >/dev/null; then
  got=$(ffprobe -v error -select_streams v:0 -count_frames \
        -show_entries stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames \
        -of default=noprint_wrappers=1 "$T/v.mp4" | sort | paste -sd' ' -)
  want="codec_name=h264 height=32 nb_read_frames=17 pix_fmt=yuv420p r_frame_rate=16/1 width=64"
  [ "$got" = "$want" ] || { echo "FAIL: ffprobe of the MP4: '$got', expected '$want'"; fail=1; }
else
  echo "note: ffprobe not installed, MP4 not probed"
fi
python3 - "$T/sheet.png" <<'PY' || { echo "FAIL: contact sheet"; fail=1; }
import struct, sys
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h = struct.unpack(">II", b[16:24])
assert (w, h) == (5 * 64, 4 * 32), (w, h)  # 17 frames in 5 columns, 4 rows
PY

# bad command lines and inputs of generate
check "generate without --model" 2 "$WF" generate --prompt x --out "$T/x.mp4"
expect_err "generate without --model" "missing --model"
check "generate frames 10" 2 "${BASE[@]}" --size 64x32 --frames 10 --out "$T/x.mp4"
expect_err "generate frames 10" "try 9 or 13"
check "generate size 40x40" 2 "${BASE[@]}" --size 40x40 --frames 17 --out "$T/x.mp4"
expect_err "generate size 40x40" "width 40 must be a positive multiple of 16"
check "generate unknown sampler" 2 "${GEN[@]}" --sampler dpm --out "$T/x.mp4"
expect_err "generate unknown sampler" "--sampler 'dpm'"
check "generate missing model folder" 1 "$WF" generate --model "$T/nomodel" --prompt x --seed 1 --out "$T/x.mp4"
expect_err "generate missing model folder" "no model_index.json"
python3 - "$T/lat.safetensors" <<'PY'
import json, struct, sys
h = json.dumps({"latents": {"dtype": "F32", "shape": [1, 16, 5, 4, 4], "data_offsets": [0, 16 * 5 * 16 * 4]}}).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + bytes(16 * 5 * 16 * 4))
PY
check "generate --latents of the wrong shape" 1 "$WF" generate --model "$M" --prompt x --size 64x32 \
  --frames 17 --steps 2 --latents "$T/lat.safetensors" --out "$T/x.mp4"
expect_err "generate --latents of the wrong shape" "'latents' must be [1, 16, 5, 4, 8]"
check "generate --out in a missing folder" 1 "${GEN[@]}" --out "$T/absent/x.mp4"
expect_err "generate --out in a missing folder" "the folder $T/absent does not exist"
[ -e "$T/x.mp4" ] && { echo "FAIL: a failed generate left $T/x.mp4"; fail=1; }

# --device / --precision: bad values and impossible combinations exit 2 before any work
check "generate --device gpu" 2 "${GEN[@]}" --device gpu --out "$T/x.mp4"
expect_err "generate --device gpu" "--device 'gpu': use auto, cpu, cuda or cuda:N"
check "generate --device cuda:x" 2 "${GEN[@]}" --device cuda:x --out "$T/x.mp4"
expect_err "generate --device cuda:x" "the device index must be 0..1023"
check "generate --precision fp16" 2 "${GEN[@]}" --precision fp16 --out "$T/x.mp4"
expect_err "generate --precision fp16" "--precision 'fp16': use bf16 (GPU default) or fp32"
check "generate --device cpu --precision bf16" 2 "${GEN[@]}" --device cpu --precision bf16 --out "$T/x.mp4"
expect_err "generate --device cpu --precision bf16" "--precision bf16 needs a GPU (--device cuda)"
if [ ! -e /proc/driver/nvidia/version ] && [ ! -e /dev/nvidia0 ] && [ ! -e /dev/nvidiactl ]; then
  # no GPU here: cuda is refused with the reason, auto says it runs on the CPU and matches cpu
  check "generate --device cuda without a GPU" 1 "${GEN[@]}" --device cuda --out "$T/x.mp4"
  expect_err "generate --device cuda without a GPU" "--device cuda:0: "
  check "generate --device auto without a GPU" 0 "${GEN[@]}" --device auto --save-latents "$T/auto.h5"
  check "generate --device cpu" 0 "${GEN[@]}" --device cpu --save-latents "$T/cpu.h5"
  "$(dirname "$0")/../scripts/compare_latents.py" "$T/auto.h5" "$T/cpu.h5" 0 >/dev/null ||
    { echo "FAIL: --device auto (CPU) and --device cpu latents differ"; fail=1; }
else
  echo "note: an NVIDIA driver is present: the no-GPU --device checks are skipped"
fi
[ -e "$T/x.mp4" ] && { echo "FAIL: a refused --device run left $T/x.mp4"; fail=1; }

[ $fail = 0 ] && echo OK || echo FAILED
exit $fail
