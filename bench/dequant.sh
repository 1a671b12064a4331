#!/usr/bin/env bash
# Builds and runs the dequantization benchmark: F16 and BF16 widening and 4-bit g64 affine
# dequantization of >= 1 GiB each, over all threads, next to memcpy over the same bytes.
#   bench/dequant.sh [--gib N] [--threads T] [--reps R] [--cols C]
# CELLM_CPU_ISA=portable|avx2 caps the kernels' instruction set.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${CELLM_BENCH_BUILD:-build-bench}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target dequant_bench -j"$(nproc)" >/dev/null
"$build/tests/dequant_bench" "$@"
