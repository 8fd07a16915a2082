#!/usr/bin/env bash
# scripts/setup.sh: install, idempotently, every Debian package wanfarm needs to build, test and run.
# Re-running it is cheap: packages already present are skipped by apt, and `apt-get update` runs
# only when something is missing. The CUDA toolkit is not installed here: when /usr/local/cuda
# exists, CMake finds it (-DWANFARM_CUDA=AUTO), otherwise the CPU-only build is made.
#
#   scripts/setup.sh            # build + test dependencies
#   WANFARM_SETUP_SLURM=1 scripts/setup.sh   # also the Slurm daemons, for the Slurm tests
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libopenmpi-dev openmpi-bin                 # MPI (required)
  libhdf5-openmpi-dev hdf5-tools             # parallel HDF5: checkpoints, latents
  libzmq3-dev                                # coordinator <-> workers
  libprotobuf-c-dev protobuf-c-compiler      # wire protocol
  libsqlite3-dev                             # the coordinator's job store
  libopenblas-openmp-dev                     # CPU sgemm (OpenMP build: no oversubscription in omp regions)
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev ffmpeg   # MP4 out, ffprobe in tests
  libsentencepiece-dev sentencepiece         # tokenizer
  libjansson-dev                             # config.json / safetensors headers
  python3                                    # fixture checks and bench helpers (stdlib only)
  time                                       # /usr/bin/time -v: the demo reports peak RSS
)
if [ "${WANFARM_SETUP_SLURM:-0}" = 1 ]; then
  PKGS+=(slurm-wlm slurmctld slurmd munge slurm-client)
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "setup.sh: not root and no sudo; install as root: ${PKGS[*]}" >&2; exit 1; }
  SUDO=sudo
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup.sh: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "setup.sh: installing ${#missing[@]} packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup.sh: done"
