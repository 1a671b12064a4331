#!/usr/bin/env bash
# CPU decode benchmark (issue: reference CPU engine): builds cellm, writes real-size
# random checkpoints (Qwen2.5-0.5B and Llama-3.2-1B shapes, BF16 and MLX 4-bit) under
# bench/data/, measures read bandwidth in the same run, and prints cellm bench's numbers
# with decode bytes/s as a fraction of that bandwidth.
#   bench/cpu_bench.sh [-p 128] [-n 64] [--threads N] [presets...]
set -euo pipefail
cd "$(dirname "$0")/.."
P=128; N=64; T=$(nproc); presets=()
while [ $# -gt 0 ]; do
  case "$1" in
    -p) P=$2; shift 2;; -n) N=$2; shift 2;; --threads) T=$2; shift 2;;
    *) presets+=("$1"); shift;;
  esac
done
[ ${#presets[@]} -gt 0 ] || presets=(qwen2.5-0.5b llama-3.2-1b)
cmake -S . -B build >/dev/null && cmake --build build -j"$(nproc)" --target cellm_cli >/dev/null
mkdir -p bench/data
cc -O2 -o bench/data/membw bench/membw.c -lpthread
bw=$(bench/data/membw "$T" 1024 | tee /dev/stderr | awk '{print $3}')
for preset in "${presets[@]}"; do
  for fmt in bf16 q4; do
    dir=bench/data/$preset-$fmt
    [ -f "$dir/config.json" ] || python3 tools/make_random_ckpt.py "$preset" "$dir" --format $fmt
    echo "== $preset $fmt"
    out=$(./build/cellm bench -m "$dir" -p "$P" -n "$N" --threads "$T")
    echo "$out"
    gbs=$(echo "$out" | awk '/^decode:/ {print $(NF-3)}')
    # the same probe over the checkpoint's own mapped pages: what decode can read at most
    fbw=$(bench/data/membw "$T" 1024 "$dir"/model*.safetensors | awk '{print $3}')
    awk -v g="$gbs" -v b="$bw" -v f="$fbw" 'BEGIN {printf "decode bandwidth: %.2f GB/s = %.0f%% of the probe'"'"'s %.2f GB/s (anonymous memory), %.0f%% of %.2f GB/s reading the mapped checkpoint\n", g, 100*g/b, b, 100*g/f, f}'
  done
done
