#!/usr/bin/env bash
# test_outputs.sh: where `wanfarm generate` and `wanfarm mkmodel` write (worker/io/fileio.h, the
# preflight of worker/outputs.h), end to end on a tiny random-weight model of `wanfarm mkmodel`:
#   1. character devices (private mknod nodes in the test folder, never the machine's /dev):
#      c 1 3 (null) takes every output in place and stays a device; c 1 7 (full) gives "No space
#      left on device" and exit 1 for the MP4, the contact sheet and the latents;
#   2. FIFOs: without a reader, --out and --contact-sheet are refused at once (before the model
#      loads), --save-latents is refused (HDF5 is not streamed); with a reader, the MP4 arrives as
#      a playable fragmented MP4 (ffprobe counts the frames) and the contact sheet byte for byte
#      equal to the one written to a file;
#   3. symlinks: the target is replaced (the link stays a link, the latents equal a direct run's:
#      SCRIPTS_DIR/compare_latents.py); a dangling link and a loop are errors naming them;
#   4. two outputs on one file (./, a symlink, a -K name of several videos, a frame of
#      --frames-dir) are refused with exit 2 before anything is written; two on /dev/null are not;
#   5. writability before the model loads: a read-only tmpfs (skipped where mount is not
#      allowed), an existing folder as --out, an empty name, a 300-byte name;
#   6. SIGTERM, SIGINT and SIGHUP while the MP4 is being written (the run held on a PNG frame
#      that is a FIFO whose reader does not read) end the run with the signal and leave no
#      *.tmp.* file; after SIGKILL, the next run removes the dead run's temporary (and leaves a
#      live process's one);
#   7. the umask: 022 gives 0644 files, 077 gives 0600 (MP4, PNG, HDF5, mkmodel's safetensors).
# Every command runs under `timeout` (the held runs of 6. under bounded loops), with the address
# space bounded (ulimit -v; not for an ASan build).
# Usage: test_outputs.sh WANFARM SCRIPTS_DIR
set -uo pipefail
WF=$(realpath "$1")
SCRIPTS=$(realpath "$2")
T=$(mktemp -d "${TMPDIR:-/tmp}/wanfarm-outputs-XXXXXX")
BG=() # background processes of the test, ended by pid on exit
cleanup() {
  for p in "${BG[@]}"; do kill "$p" 2>/dev/null; done
  mountpoint -q "$T/ro" 2>/dev/null && umount "$T/ro"
  rm -rf "$T"
}
trap cleanup EXIT
fail=0
. "$(dirname "$0")/cli_lib.sh"
if ldd "$WF" 2>/dev/null | grep -q libasan; then
  echo "note: an ASan build (it maps terabytes of shadow): no address-space limit"
else
  ulimit -v $((8 * 1024 * 1024)) # 8 GiB of address space: a tiny run needs well under 1
fi
TO=60                          # seconds per command
no_tmp() { # no_tmp WHAT DIR...: no temporary file left in the folders
  local left
  left=$(find "${@:2}" -maxdepth 1 -name '*.tmp.*' 2>/dev/null)
  [ -z "$left" ] || { echo "FAIL: $1: temporary files left: $left"; fail=1; }
}
grep_err() { # grep_err WHAT TEXT: stderr contains TEXT (case-insensitive)
  grep -qiF -- "$2" "$T/err" || { echo "FAIL: $1: no '$2' in:"; sed 's/^/  | /' "$T/err" | head -5; fail=1; }
}

M="$T/model"
check "mkmodel" 0 timeout $TO "$WF" mkmodel --preset tiny --force "$M"
[ -f "$M/model_index.json" ] || { echo "FAIL: mkmodel wrote no model"; echo FAILED; exit 1; }
G=(timeout "$TO" "$WF" generate --model "$M" --prompt "a red fox in the snow" --size 64x64 --frames 5
   --steps 2 --seed 7 --threads 2)
D="$T/ref"
mkdir -p "$D"
check "reference run" 0 "${G[@]}" --out "$D/v.mp4" --contact-sheet "$D/s.png" --save-latents "$D/l.h5"

# 1. character devices
if mknod "$T/null" c 1 3 2>/dev/null && mknod "$T/full" c 1 7 2>/dev/null &&
   (echo x >"$T/null") 2>/dev/null; then
  check "every output on a null device" 0 "${G[@]}" --out "$T/null" --contact-sheet "$T/null" \
    --save-latents "$T/null" --frames-dir "$T/frnull"
  [ -c "$T/null" ] || { echo "FAIL: the null device was replaced by a file"; fail=1; }
  check "two videos on a null device" 0 "${G[@]}" --count 2 --out "$T/null" --save-latents "$T/null"
  [ -e "$T/null-0" ] || [ -e "$T/null-1" ] &&
    { echo "FAIL: two videos on a device made files beside it (null-0, null-1)"; fail=1; }
  for opt in --out --contact-sheet --save-latents; do
    check "$opt on a full device" 1 "${G[@]}" "$opt" "$T/full"
    grep_err "$opt on a full device" "no space left on device"
    [ -c "$T/full" ] || { echo "FAIL: $opt: the full device was replaced by a file"; fail=1; }
  done
  no_tmp "devices" "$T"
else
  echo "note: mknod or device nodes not allowed in $T: device checks skipped"
fi

# 2. FIFOs
mkfifo "$T/fifo"
for opt in --out --contact-sheet; do
  check "$opt on a FIFO without a reader" 1 "${G[@]}" "$opt" "$T/fifo"
  expect_err "$opt on a FIFO without a reader" "$T/fifo is a FIFO with no reader"
done
check "--save-latents on a FIFO" 1 "${G[@]}" --save-latents "$T/fifo"
expect_err "--save-latents on a FIFO" "is a FIFO, and this format cannot be written"
with_reader() { # with_reader OUTFILE OPT: generate OPT into the FIFO while cat copies it to OUTFILE
  for _ in 1 2 3; do
    timeout $TO cat "$T/fifo" >"$1" &
    local cat_pid=$!
    BG+=("$cat_pid")
    sleep 0.3 # let cat reach its open
    "${G[@]}" "$2" "$T/fifo" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ $rc = 1 ] && grep -q "no reader" "$T/err"; then kill "$cat_pid" 2>/dev/null; continue; fi
    wait "$cat_pid"
    return $rc
  done
  return 1
}
with_reader "$T/fifo.mp4" --out || { echo "FAIL: --out to a FIFO with a reader"; sed 's/^/  | /' "$T/err" | tail -3; fail=1; }
if command -v ffprobe >/dev/null; then
  got=$(timeout $TO ffprobe -v error -select_streams v:0 -count_frames \
        -show_entries stream=codec_name,width,height,nb_read_frames -of default=nw=1 "$T/fifo.mp4" |
        sort | paste -sd' ' -)
  [ "$got" = "codec_name=h264 height=64 nb_read_frames=5 width=64" ] ||
    { echo "FAIL: the MP4 streamed to a FIFO: ffprobe says '$got'"; fail=1; }
else
  echo "note: ffprobe not installed, the streamed MP4 not probed"
fi
with_reader "$T/fifo.png" --contact-sheet || { echo "FAIL: --contact-sheet to a FIFO with a reader"; fail=1; }
cmp -s "$T/fifo.png" "$D/s.png" || { echo "FAIL: the contact sheet through a FIFO differs from the file"; fail=1; }
[ -p "$T/fifo" ] || { echo "FAIL: the FIFO was replaced"; fail=1; }

# 3. symlinks
mkdir -p "$T/tgt"
cp "$D/s.png" "$T/tgt/s.png" && printf 'old' >"$T/tgt/l.h5"
ln -s "$T/tgt/s.png" "$T/s-link.png"
ln -s ../tgt/l.h5 "$T/ref/l-link.h5"
check "outputs through symlinks" 0 "${G[@]}" --contact-sheet "$T/s-link.png" --save-latents "$T/ref/l-link.h5"
[ -L "$T/s-link.png" ] && [ -L "$T/ref/l-link.h5" ] || { echo "FAIL: a symlink was replaced"; fail=1; }
cmp -s "$T/tgt/s.png" "$D/s.png" || { echo "FAIL: the contact sheet's symlink target was not written"; fail=1; }
"$SCRIPTS/compare_latents.py" "$T/tgt/l.h5" "$D/l.h5" 0 >/dev/null 2>&1 ||
  { echo "FAIL: the latents' symlink target differs from a direct run's"; fail=1; }
no_tmp "symlinks" "$T" "$T/tgt" "$T/ref"
ln -s "$T/nowhere/x.mp4" "$T/dangling.mp4"
check "dangling symlink" 1 "${G[@]}" --out "$T/dangling.mp4"
expect_err "dangling symlink" "$T/dangling.mp4 is a dangling symbolic link"
ln -s "$T/loop-b.png" "$T/loop-a.png" && ln -s "$T/loop-a.png" "$T/loop-b.png"
check "symlink loop" 1 "${G[@]}" --contact-sheet "$T/loop-a.png"
expect_err "symlink loop" "too many levels of symbolic links"

# 4. two outputs on one file
S="$T/same"
mkdir -p "$S" && cd "$S" || exit 1
check "same path with ./" 2 "${G[@]}" --out "$S/a.mp4" --save-latents "$S/./a.mp4"
expect_err "same path with ./" "are the same file"
check "same path relative and absolute" 2 "${G[@]}" --contact-sheet a.png --out "$S/a.png"
expect_err "same path relative and absolute" "are the same file ($S/a.png)"
touch "$S/v.mp4" && ln -s v.mp4 "$S/link.png"
check "same path through a symlink" 2 "${G[@]}" --out "$S/v.mp4" --contact-sheet "$S/link.png"
expect_err "same path through a symlink" "are the same file ($S/v.mp4)"
touch "$S/q-1.mp4" && ln -s q-1.mp4 "$S/sheet-0.png"
check "same path of the -K names" 2 "${G[@]}" --count 2 --out "$S/q.mp4" --contact-sheet "$S/sheet.png"
expect_err "same path of the -K names" "(video 2: $S/q-1.mp4)"
check "--out is the --frames-dir" 2 "${G[@]}" --out "$S/fr" --frames-dir "$S/./fr"
expect_err "--out is the --frames-dir" "are the same path"
mkdir -p "$S/fr2"
check "--contact-sheet is a frame" 2 "${G[@]}" --contact-sheet "$S/fr2/frame_00002.png" --frames-dir "$S/fr2"
expect_err "--contact-sheet is a frame" "is a frame name of --frames-dir"
[ -e "$S/a.mp4" ] || [ -e "$S/a.png" ] || [ -e "$S/fr" ] || [ -e "$S/q-0.mp4" ] ||
  [ -e "$S/fr2/frame_00000.png" ] &&
  { echo "FAIL: a refused run created an output"; fail=1; }
[ -s "$S/v.mp4" ] && { echo "FAIL: a refused run wrote v.mp4"; fail=1; }
if [ -c "$T/null" ]; then
  check "two outputs on one null device" 0 "${G[@]}" --out "$T/null" --save-latents "$T/null"
fi
cd "$T" || exit 1
no_tmp "same path" "$S"

# 5. writability, before the model loads (one line on stderr: nothing loaded)
mkdir -p "$T/ro"
if mount -t tmpfs -o ro,size=1m tmpfs "$T/ro" 2>/dev/null; then
  for opt in --out --save-latents --contact-sheet; do
    check "$opt in a read-only folder" 1 "${G[@]}" "$opt" "$T/ro/x.out"
    expect_err "$opt in a read-only folder" "Read-only file system"
  done
  check "--frames-dir read-only" 1 "${G[@]}" --frames-dir "$T/ro"
  expect_err "--frames-dir read-only" "Read-only file system"
  umount "$T/ro"
else
  echo "note: mount not allowed: the read-only folder checks skipped"
fi
mkdir -p "$T/adir"
check "--out an existing folder" 1 "${G[@]}" --out "$T/adir"
expect_err "--out an existing folder" "--out: $T/adir is a folder"
check "--out empty" 2 "${G[@]}" --out ""
expect_err "--out empty" "--out: the file name is empty"
check "--save-latents empty" 2 "${G[@]}" --save-latents ""
expect_err "--save-latents empty" "--save-latents: the file name is empty"
long=$(printf 'n%.0s' $(seq 300))
check "--out a 300-byte name" 1 "${G[@]}" --out "$T/$long.mp4"
expect_err "--out a 300-byte name" "the name is too long for the file system"
check "--contact-sheet a 300-byte name" 1 "${G[@]}" --contact-sheet "$T/$long.png"
expect_err "--contact-sheet a 300-byte name" "--contact-sheet: "
long250=$(printf 'm%.0s' $(seq 250))
check "--out a 250-byte name (its temporary is cut to fit)" 0 "${G[@]}" --out "$T/$long250"
[ -s "$T/$long250" ] || { echo "FAIL: the 250-byte name was not written"; fail=1; }
no_tmp "writability" "$T"

# 6. signals while the MP4 is written
SG="$T/sig"
mkdir -p "$SG/fr"
mkfifo "$SG/fr/frame_00000.png"
sleep 300 <>"$SG/fr/frame_00000.png" & # a reader that never reads: the PNG write blocks
BG+=($!)
run_held() { # starts the held run in the background (job control on: SIGINT is not ignored);
  # no `timeout` in between, so that the signals reach wanfarm itself (the loops bound it)
  set -m
  "${G[@]:2}" --size 256x256 --frames-dir "$SG/fr" --out "$SG/v.mp4" >/dev/null 2>"$T/err" &
  held=$!
  set +m
  BG+=("$held")
  for _ in $(seq 600); do # up to 30 s
    tmpname=$(find "$SG" -maxdepth 1 -name 'v.mp4.tmp.*' | head -1)
    # the MP4's own temporary stays (the run is held); the preflight's probe file does not
    [ -n "$tmpname" ] && sleep 0.3 && [ -e "$tmpname" ] && return 0
    kill -0 "$held" 2>/dev/null || break
    sleep 0.05
  done
  echo "FAIL: the held run never made its MP4 temporary"; sed 's/^/  | /' "$T/err" | tail -3; fail=1
  kill -KILL "$held" 2>/dev/null
  return 1
}
for sig in TERM INT HUP; do # (bash's job notices, "Hangup", go to /dev/null)
  run_held || continue
  kill -"$sig" "$held"
  for _ in $(seq 100); do kill -0 "$held" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$held" 2>/dev/null
  { wait "$held"; } 2>/dev/null
  rc=$?
  want=$((128 + $(kill -l "$sig")))
  [ "$rc" = "$want" ] || { echo "FAIL: SIG$sig: exit $rc, expected $want (killed by the signal)"; fail=1; }
  no_tmp "SIG$sig while writing" "$SG" "$SG/fr"
  [ -e "$SG/v.mp4" ] && { echo "FAIL: SIG$sig: a partial v.mp4 was left"; fail=1; }
done 2>/dev/null
# SIGKILL cannot be handled: the next run removes the dead run's temporary, not a live one's
if run_held; then
  dead=$tmpname
  kill -KILL "$held"
  wait "$held" 2>/dev/null
  tag=$(basename "$dead" | sed -E 's/^v\.mp4\.tmp\.[0-9]+-([0-9a-f]{8})\..{6}$/\1/')
  live="$SG/v.mp4.tmp.$$-$tag.abcdef" # this shell is alive
  touch "$live"
  [ -e "$dead" ] || { echo "FAIL: no temporary after SIGKILL (the check below is void)"; fail=1; }
  check "a run after a killed one" 0 "${G[@]}" --out "$SG/v.mp4"
  [ -e "$dead" ] && { echo "FAIL: the killed run's temporary $dead was not removed"; fail=1; }
  [ -e "$live" ] || { echo "FAIL: a live process's temporary was removed"; fail=1; }
  rm -f "$live"
fi

# 7. the umask
for mask in 022 077; do
  want=$([ $mask = 022 ] && echo 644 || echo 600)
  U="$T/umask$mask"
  mkdir -p "$U"
  (umask $mask && "${G[@]}" --out "$U/v.mp4" --save-latents "$U/l.h5" --contact-sheet "$U/s.png" \
     --frames-dir "$U/fr" >/dev/null 2>&1 && timeout $TO "$WF" mkmodel --force "$U/m" >/dev/null 2>&1) ||
    { echo "FAIL: umask $mask: the run failed"; fail=1; }
  for f in "$U/v.mp4" "$U/l.h5" "$U/s.png" "$U/fr/frame_00000.png" \
           "$U/m/transformer/diffusion_pytorch_model.safetensors"; do
    got=$(stat -c %a "$f" 2>/dev/null)
    [ "$got" = "$want" ] || { echo "FAIL: umask $mask: $f has mode '$got', expected $want"; fail=1; }
  done
done

[ $fail = 0 ] && echo OK || echo FAILED
exit $fail
