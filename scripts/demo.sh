#!/usr/bin/env bash
# scripts/demo.sh: build wanfarm and run what exists of the main job on the built-in demo model.
# Today (foundation issue) that is: the devices this machine offers, a full inspection of the
# tiny Wan2.2-layout Diffusers model in tests/fixtures/tiny-wan22 (configs parsed, every
# safetensors file validated), and the CPU op benchmark at small sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
echo "== wanfarm devices =="
build/worker/wanfarm devices
echo "== wanfarm inspect tests/fixtures/tiny-wan22 =="
build/worker/wanfarm inspect tests/fixtures/tiny-wan22
echo "== bench_ops --sizes small =="
build/bench/bench_ops --op all --sizes small
