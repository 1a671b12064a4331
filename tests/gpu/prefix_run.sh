#!/usr/bin/env bash
# GPU prefix cache: on the GPU machine, builds cellm with the CUDA executor and runs
# test_prefix_cache on it (CELLM_TEST_DEVICE=cuda): on every fixture, logits after a
# prefix attached from the cache (device-to-device block copies, cuda.c's kv_* ops) equal
# a cold run's within the numeric contract, greedy ids identical, and evictions keep the
# cache within its budget. Then the prefix benchmark's CUDA half, if asked
# (PREFIX_BENCH=1: bench/prefix_bench.sh --device cuda).
#   tests/gpu/prefix_run.sh [build-dir]
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build-gpu}
export PATH=$PATH:/usr/local/cuda/bin
. tests/gpu/deps.sh
cmake -S . -B "$B" -DCELLM_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="90-real;90-virtual" "${gpu_cmake_deps[@]}" >"$B.cfg.log" 2>&1 \
  && cmake --build "$B" -j"$(nproc)" --target test_prefix_cache cellm_cli >"$B.build.log" 2>&1 \
  || { tail -n 30 "$B.cfg.log" "$B.build.log"; echo "BUILD FAILED"; exit 1; }
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "no GPU here: built the CUDA executor, skipped the GPU prefix-cache run"
  exit 0
fi
CELLM_TEST_DEVICE=cuda "$B/tests/test_prefix_cache" || exit 1
if [ "${PREFIX_BENCH:-0}" = 1 ]; then
  bench/prefix_bench.sh "$B/cellm" --device cuda
fi
