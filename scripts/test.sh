#!/usr/bin/env bash
# scripts/test.sh: build and run the whole test suite, then run the parser tests (safetensors,
# Diffusers configs, checkpoint loaders, CLI) again under AddressSanitizer + UndefinedBehaviorSanitizer.
#   WANFARM_CUDA=AUTO|ON|OFF   as scripts/build.sh (CI sets ON so CUDA code always compiles)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
(cd build && ctest --output-on-failure --timeout 900)

echo "== parser tests under address,undefined sanitizers =="
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DWANFARM_WERROR=ON -DWANFARM_CUDA=OFF \
      -DWANFARM_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$(nproc)"
(cd build-asan && ctest --output-on-failure -L parser --timeout 900)
