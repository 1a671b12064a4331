#!/usr/bin/env bash
# On the GPU machine: --device xla with MLX 4-bit weights dequantized in the graph (the
# default: packed codes uploaded) against dequantized once at load (--exec-opt dequant=load,
# f32 weights uploaded), on a real-size random checkpoint.
#   bench/xla_dequant.sh [preset]   (default llama-3.2-1b)
set -uo pipefail
cd "$(dirname "$0")/.."
preset=${1:-llama-3.2-1b}; B=build-gpu; DATA=${CELLM_BENCH_DATA:-/tmp/cellm-bench}
. tests/gpu/deps.sh # libcjson/cmocka: the system's or the copies in .gpu-deps/
[ -x $B/cellm ] || { cmake -S . -B $B "${gpu_cmake_deps[@]}" >/dev/null &&
  cmake --build $B -j"$(nproc)" --target cellm_cli >/dev/null; } || exit 1
dir=$DATA/$preset-q4
[ -f "$dir/config.json" ] || python3 tools/make_random_ckpt.py "$preset" "$dir" --format q4 || exit 1
for mode in graph load; do
  echo "== $preset 4-bit, dequantized in the $mode"
  $B/cellm bench -m "$dir" --device xla --exec-opt dequant=$mode -p 128 -n 64 -r 2 2>/dev/null | grep -E 'load|prefill|decode'
done
