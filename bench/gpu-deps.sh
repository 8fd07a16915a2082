#!/usr/bin/env bash
# gpu-deps.sh: fetches, here (Debian 12), the Debian packages that a GPU check build needs, for
# bench/gpu-check.sh to unpack on the GPU machine (which has nvcc, CMake, ninja, gcc and the
# PyTorch wheels' cuBLAS/cuDNN/NCCL, but none of these libraries and no network).
#
# What it is: `apt-get download` (no install, no root needed) of
#   - the libraries wanfarm links in the GPU profile (-DWANFARM_FFMPEG=OFF -DWANFARM_FARM=OFF),
#     with their headers: jansson, OpenBLAS (OpenMP build), sentencepiece, OpenMPI, parallel HDF5
#     (.gpu-debs/*.deb);
#   - the shared libraries those need at link and run time, found by their ELF NEEDED entries
#     (not by package dependencies, which would drag in compilers and X11), less the ones every
#     Linux with gcc has (glibc, libgcc_s, libstdc++, libgomp, libquadmath, zlib)
#     (.gpu-debs/deps/*.deb: gpu-check.sh installs one of these only when the machine lacks its
#     library, so the system's own copy wins).
# Idempotent: a .deb already there is kept. Prints the total size (about 25 MB; it must stay well
# under the 64 MiB a working tree may carry).
# What it is not: an installer; nothing is unpacked into /.
# Tested by: running it (it checks that every NEEDED library of what it fetched is either fetched
# or in the assumed base set, and says which are not).
#
#   bench/gpu-deps.sh            # into .gpu-debs/ of the working tree (git-ignored)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${GPU_DEBS_DIR:-$ROOT/.gpu-debs}

# The libraries the build links (with their -dev packages: headers, .so links, .pc files) and the
# OpenMPI launcher (mpirun, orted) for multi-rank checks.
DIRECT=(libjansson-dev libjansson4
        libopenblas0-openmp libopenblas-openmp-dev libgfortran5
        libsentencepiece-dev libsentencepiece0
        libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common
        libhdf5-openmpi-dev libhdf5-openmpi-103-1)
# Sonames assumed on any GPU machine that has gcc: never fetched.
BASE_RE='^(libc|libm|libdl|libpthread|librt|libutil|libresolv|libanl|ld-linux-x86-64|ld-linux-aarch64|libgcc_s|libstdc\+\+|libgomp|libquadmath|libz|linux-vdso)\.so'

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null && command -v readelf >/dev/null || {
    echo "gpu-deps.sh: needs apt-get, dpkg-deb and readelf (a Debian machine with binutils)" >&2
    exit 1
}
mkdir -p "$OUT/deps"

# fetch DIR PKG: the .deb of PKG's candidate version into DIR, unless one is already there.
fetch() {
    local dir=$1 pkg=$2 f
    for f in "$dir/${pkg}_"*.deb; do
        [ -s "$f" ] && return 0
    done
    (cd "$dir" && apt-get download -q "$pkg" >/dev/null 2>"$TMP/apt.err") || {
        echo "gpu-deps.sh: apt-get download $pkg failed: $(tail -1 "$TMP/apt.err") (apt-get update?)" >&2
        return 1
    }
    echo "  fetched $(basename "$dir")/$(cd "$dir" && ls "${pkg}_"*.deb)"
}

# The package (name) that ships the library with this soname here, or nothing.
provider() {
    local so=$1 path p
    path=$(ldconfig -p | awk -v s="$so" '$1 == s && /x86-64|AArch64/ {print $NF; exit}')
    [ -n "$path" ] || return 0
    for p in "$path" "$(readlink -f "$path")" "${path/#\/lib\//\/usr\/lib\/}" "${path/#\/usr\/lib\//\/lib\/}"; do
        dpkg -S "$p" 2>/dev/null | head -1 | cut -d: -f1 && return 0
    done
    return 0
}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "gpu-deps.sh: into $OUT"
for p in "${DIRECT[@]}"; do fetch "$OUT" "$p"; done

# The NEEDED closure: unpack what we have into a scratch tree, list every NEEDED soname that the
# tree does not provide and the base set does not cover, fetch its package; repeat until closed.
declare -A have_pkg=()
missing=()
for _ in 1 2 3 4 5 6 7 8; do
    for f in "$OUT"/*.deb "$OUT"/deps/*.deb; do
        [ -e "$f" ] || continue
        name=$(dpkg-deb -f "$f" Package)
        [ -n "${have_pkg[$name]:-}" ] && continue
        have_pkg[$name]=1
        dpkg-deb -x "$f" "$TMP/tree"
    done
    provided=$(find "$TMP/tree" \( -type f -o -type l \) -name '*.so*' -printf '%f\n' | sort -u)
    needed=$(find "$TMP/tree" -type f \( -name '*.so*' -o -perm -u+x \) -print0 |
             xargs -0 readelf -d 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u || true)
    new=0
    missing=()
    for so in $needed; do
        grep -qxF "$so" <<<"$provided" && continue
        [[ $so =~ $BASE_RE ]] && continue
        pkg=$(provider "$so")
        if [ -z "$pkg" ]; then missing+=("$so"); continue; fi
        [ -n "${have_pkg[$pkg]:-}" ] && continue
        fetch "$OUT/deps" "$pkg" && new=1
    done
    [ $new = 0 ] && break
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "gpu-deps.sh: no package here provides: ${missing[*]} (the GPU machine must have them)" >&2
fi

n_direct=$(ls "$OUT"/*.deb | wc -l)
n_deps=$(ls "$OUT"/deps/*.deb 2>/dev/null | wc -l)
bytes=$(cat "$OUT"/*.deb "$OUT"/deps/*.deb 2>/dev/null | wc -c)
echo "gpu-deps.sh: $n_direct packages linked + $n_deps runtime dependencies, $(awk -v b="$bytes" 'BEGIN {printf "%.1f MB", b / 1e6}') in $OUT"
if [ "$bytes" -gt 60000000 ]; then
    echo "gpu-deps.sh: over 60 MB: the working tree may carry 64 MiB in all; trim the list" >&2
    exit 1
fi
