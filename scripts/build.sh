#!/usr/bin/env bash
# scripts/build.sh: configure and build wanfarm into build/ (Release, warnings as errors).
#   WANFARM_CUDA=AUTO|ON|OFF   CUDA parts (default AUTO: on when nvcc is found)
#   BUILD_DIR=build            where to build
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DWANFARM_WERROR=ON \
      -DWANFARM_CUDA="${WANFARM_CUDA:-AUTO}" >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
