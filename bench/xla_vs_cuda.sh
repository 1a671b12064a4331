#!/usr/bin/env bash
# On the GPU machine: decode and prefill speed of --device cuda beside --device xla (and
# the CPU) on real-size random checkpoints (tools/make_random_ckpt.py).
#   bench/xla_vs_cuda.sh [preset:format ...]   (default llama-3.2-1b:bf16 qwen3-0.6b:q4)
set -uo pipefail
cd "$(dirname "$0")/.."
B=build-gpu; DATA=${CELLM_BENCH_DATA:-/tmp/cellm-bench}
specs=("$@")
[ ${#specs[@]} -gt 0 ] || specs=(llama-3.2-1b:bf16 qwen3-0.6b:q4)
export PATH=$PATH:/usr/local/cuda/bin
. tests/gpu/deps.sh # libcjson/cmocka: the system's or the copies in .gpu-deps/
cmake -S . -B $B -DCELLM_CUDA=ON "${gpu_cmake_deps[@]}" >/dev/null &&
  cmake --build $B -j"$(nproc)" --target cellm_cli >/dev/null || exit 1
for spec in "${specs[@]}"; do
  preset=${spec%%:*}; fmt=${spec#*:}
  dir=$DATA/$preset-$fmt
  [ -f "$dir/config.json" ] || python3 tools/make_random_ckpt.py "$preset" "$dir" --format "$fmt" || exit 1
  for dev in cuda xla; do
    echo "== $preset $fmt --device $dev"
    $B/cellm bench -m "$dir" --device $dev -p 128 -n 64 -r 2 | grep -E 'device|prefill|decode'
  done
done
