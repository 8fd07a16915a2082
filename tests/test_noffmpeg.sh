#!/usr/bin/env bash
# test_noffmpeg.sh: a build without FFmpeg (-DWANFARM_FFMPEG=OFF, the GPU check profile; ctest
# registers it only there): `wanfarm generate` refuses every MP4/PNG output before the work with
# one line saying what to do, writes nothing, and still writes the .h5 latents.
# Usage: test_noffmpeg.sh WANFARM
set -uo pipefail
WF=$1
T=$(mktemp -d "${TMPDIR:-/tmp}/wanfarm-noffmpeg-XXXXXX")
trap 'rm -rf "$T"' EXIT
fail=0
. "$(dirname "$0")/cli_lib.sh"

M=$T/m
check "mkmodel tiny" 0 "$WF" mkmodel --preset tiny --seed 5 "$M"
GEN=("$WF" generate --model "$M" --prompt "a red fox" --steps 2 --seed 42 --threads 2 --size 64x32
     --frames 5)
WANT="built without FFmpeg: write .h5 latents (--save-latents FILE.h5) or rebuild with -DWANFARM_FFMPEG=ON"
check "--out x.mp4" 1 "${GEN[@]}" --out "$T/x.mp4"
expect_err "--out x.mp4" "--out: $WANT"
check "--contact-sheet" 1 "${GEN[@]}" --save-latents "$T/y.h5" --contact-sheet "$T/s.png"
expect_err "--contact-sheet" "--contact-sheet: $WANT"
check "--frames-dir" 1 "${GEN[@]}" --frames-dir "$T/frames"
expect_err "--frames-dir" "--frames-dir: $WANT"
for f in x.mp4 y.h5 s.png frames; do
  [ -e "$T/$f" ] && { echo "FAIL: a refused run left $T/$f"; fail=1; }
done
check "--save-latents" 0 "${GEN[@]}" --save-latents "$T/l.h5"
[ -s "$T/l.h5" ] || { echo "FAIL: --save-latents wrote no $T/l.h5"; fail=1; }

[ $fail = 0 ] && echo OK || echo FAILED
exit $fail
