#!/usr/bin/env bash
# test_inputs.sh: input files that never answer. Every file wanfarm reads (each file of a Diffusers
# folder: model_index.json, the component configs, the index, a shard and the single-file weights,
# the tokenizer's spiece.model, tokenizer.json and tokenizer_config.json; --model, --latents,
# --cost) is replaced in a copy of tests/fixtures/tiny-wan22 by a FIFO, a folder, a symlink loop
# and, as root, a private character device made with mknod in the test folder (never the machine's
# /dev). Each `inspect`, `generate` and `plan` must exit 1 within seconds with one line that names
# the file and the problem ("is a FIFO, not a regular file", "Too many levels of symbolic links"):
# a blocking open of a FIFO would wait for a writer forever, and a loop is not "missing".
# Every command runs under `timeout`; a timeout is a failure, and after 3 of them the script stops.
# Usage: test_inputs.sh WANFARM FIXTURES_DIR
set -uo pipefail
WF=$1
FX=$2
LIMIT=${WANFARM_INPUT_TIMEOUT:-20}
T=$(mktemp -d "${TMPDIR:-/tmp}/wanfarm-inputs-XXXXXX")
trap 'rm -rf "$T"' EXIT
fail=0
hung=0
n=0
. "$(dirname "$0")/cli_lib.sh"

LOOP="Too many levels of symbolic links"
declare -A WHY=([fifo]="is a FIFO, not a regular file" [dir]="is a directory, not a regular file"
                [loop]="cannot open: $LOOP" [chr]="is a character device, not a regular file")
KINDS="fifo dir loop"
if mknod "$T/probe-chr" c 1 3 2>/dev/null; then
  KINDS="$KINDS chr"
  rm -f "$T/probe-chr"
else
  echo "SKIP: character devices (mknod is not allowed here: not root, or no CAP_MKNOD)"
fi

# replace KIND PATH: PATH becomes a FIFO, a folder, a symlink loop (PATH -> PATH.other -> PATH) or
# a private device node with /dev/null's numbers (never opened: the type is refused first)
replace() {
  rm -rf "$2" "$2.other"
  case $1 in
    fifo) mkfifo "$2" ;;
    dir) mkdir "$2" ;;
    loop) ln -s "$(basename "$2").other" "$2"; ln -s "$(basename "$2")" "$2.other" ;;
    chr) mknod "$2" c 1 3 ;;
  esac
}

# refused DESCRIPTION TEXT CMD...: exit 1 before the time limit, stderr one line containing TEXT
refused() {
  local what=$1 text=$2; shift 2
  if [ $hung -ge 3 ]; then return; fi
  n=$((n + 1))
  timeout -k 5 "$LIMIT" "$@" >"$T/out" 2>"$T/err" </dev/null
  local rc=$?
  if [ $rc = 124 ] || [ $rc = 137 ]; then
    echo "FAIL: $what: still running after ${LIMIT} s (a blocking open?)"; fail=1; hung=$((hung + 1))
    [ $hung = 3 ] && echo "FAIL: 3 commands hung; the remaining cases are not run"
    return
  fi
  if [ $rc != 1 ]; then
    echo "FAIL: $what: exit $rc, expected 1"; sed 's/^/  | /' "$T/err" | head -5; fail=1; return
  fi
  expect_err "$what" "$text"
}

fresh() { # fresh NAME: a copy of the tiny Wan2.2 model in $T/NAME, printed
  rm -rf "${T:?}/$1"; cp -r "$FX/tiny-wan22" "$T/$1"; echo "$T/$1"
}

GEN=(generate --prompt x --size 64x64 --frames 5 --steps 2) # with --seed 1 or --latents

# every file of the folder, through `inspect` of the pipeline folder (the tokenizer's json files
# are read by the tokenizer only, so by `generate` below)
PIPE_FILES="model_index.json transformer/config.json
transformer/diffusion_pytorch_model.safetensors.index.json
transformer/diffusion_pytorch_model-00002-of-00003.safetensors transformer_2/config.json
transformer_2/diffusion_pytorch_model.safetensors vae/config.json
vae/diffusion_pytorch_model.safetensors text_encoder/config.json text_encoder/model.safetensors
scheduler/scheduler_config.json tokenizer/spiece.model"
TOK_FILES="tokenizer/tokenizer.json tokenizer/tokenizer_config.json"
for kind in $KINDS; do
  for f in $PIPE_FILES; do
    M=$(fresh m); replace "$kind" "$M/$f"
    refused "inspect, $f as $kind" "$M/$f: ${WHY[$kind]}" "$WF" inspect --summary "$M"
  done
  for f in $PIPE_FILES $TOK_FILES; do
    M=$(fresh m); replace "$kind" "$M/$f"
    refused "generate, $f as $kind" "$M/$f: ${WHY[$kind]}" "$WF" "${GEN[@]}" --seed 1 --model "$M" --out "$T/o.mp4"
  done
  # a component folder, and a single weights file or index given to inspect
  M=$(fresh m); replace "$kind" "$M/vae/config.json"
  refused "inspect vae/, config.json as $kind" "$M/vae/config.json: ${WHY[$kind]}" "$WF" inspect "$M/vae"
  M=$(fresh m); replace "$kind" "$M/scheduler/scheduler_config.json"
  refused "inspect scheduler/, scheduler_config.json as $kind" \
    "$M/scheduler/scheduler_config.json: ${WHY[$kind]}" "$WF" inspect "$M/scheduler"
  if [ "$kind" != dir ]; then # a folder given as PATH is read as a component folder
    replace "$kind" "$T/w.safetensors"
    refused "inspect FILE.safetensors as $kind" "$T/w.safetensors: ${WHY[$kind]}" "$WF" inspect "$T/w.safetensors"
    replace "$kind" "$T/w.safetensors.index.json"
    refused "inspect FILE.index.json as $kind" "$T/w.safetensors.index.json: ${WHY[$kind]}" \
      "$WF" inspect "$T/w.safetensors.index.json"
  fi
  # --latents (read after the model loads) and --cost
  M=$(fresh m); replace "$kind" "$T/lat.safetensors"
  refused "generate --latents as $kind" "--latents: $T/lat.safetensors: ${WHY[$kind]}" \
    "$WF" "${GEN[@]}" --model "$M" --latents "$T/lat.safetensors" --out "$T/o.mp4"
  replace "$kind" "$T/cost.json"
  refused "plan --cost as $kind" "$T/cost.json: ${WHY[$kind]}" "$WF" plan --ranks 2 --cost "$T/cost.json"
done

# --model itself: a FIFO, a loop, a file; a component folder that is a file (ENOTDIR, not
# "missing"). EACCES is not tried: the suite may run as root, which reads anything.
replace fifo "$T/model"
refused "generate --model FIFO" "$T/model: is a FIFO, not a folder" "$WF" "${GEN[@]}" --seed 1 --model "$T/model" --out "$T/o.mp4"
refused "plan --model FIFO" "$T/model: is a FIFO, not a folder" "$WF" plan --ranks 2 --model "$T/model"
replace loop "$T/model"
refused "generate --model loop" "$LOOP" "$WF" "${GEN[@]}" --seed 1 --model "$T/model" --out "$T/o.mp4"
refused "inspect loop" "$T/model: cannot open: $LOOP" "$WF" inspect "$T/model"
M=$(fresh m); rm -rf "$M/vae"; echo x >"$M/vae"
refused "inspect, vae/ as a file" "$M/vae/config.json: cannot open: Not a directory" "$WF" inspect "$M"
refused "generate --latents under a file" "$M/vae/lat.safetensors: cannot open: Not a directory" \
  "$WF" "${GEN[@]}" --model "$FX/tiny-wan22" --latents "$M/vae/lat.safetensors" --out "$T/o.mp4"
# a name longer than the file system allows: the OS's words, not "no such file"
LONG="$T/$(printf 'a%.0s' $(seq 300)).safetensors"
refused "inspect a too long name" "cannot open: File name too long" "$WF" inspect "$LONG"
refused "plan --cost a too long name" "cannot open: File name too long" "$WF" plan --ranks 2 --cost "$LONG"

# nothing was written, and the untouched model still loads (the checks refuse only what is wrong)
[ -e "$T/o.mp4" ] && { echo "FAIL: an output was written by a refused run"; fail=1; }
check "inspect the untouched fixture" 0 timeout -k 5 "$LIMIT" "$WF" inspect --summary "$FX/tiny-wan22"
echo "$n cases refused"
[ $fail = 0 ] && echo OK || echo FAILED
exit $fail
