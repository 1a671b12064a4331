#!/usr/bin/env bash
# Serving benchmark: aggregate decode tok/s of `cellm serve` at 1, 4, 16 and 64
# concurrent streams on a random checkpoint of Qwen2.5-0.5B's shape (BF16 by default,
# --bits 4 for MLX 4-bit), generated into bench/data/ (gitignored) on first use.
#   bench/serve_bench.sh [--bits 16|4] [--tokens N] [--threads N] [levels...]
set -euo pipefail
cd "$(dirname "$0")/.."
bits=16; tokens=16; threads=$(nproc); levels=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bits) bits=$2; shift 2;; --tokens) tokens=$2; shift 2;; --threads) threads=$2; shift 2;;
    *) levels+=("$1"); shift;;
  esac
done
build=${BUILD:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target cellm_cli >/dev/null
fmt=$([ "$bits" = 4 ] && echo q4 || echo bf16)
dir=bench/data/qwen2.5-0.5b-$fmt
[ -f "$dir/model.safetensors" ] || python3 tools/make_random_ckpt.py qwen2.5-0.5b "$dir" --format $fmt
THREADS=$threads node bench/serve_bench.mjs "$build/cellm" "$dir" "$tokens" "${levels[@]}"
