#!/usr/bin/env bash
# Prefix-cache benchmark: time to first token of each turn of a 10-turn chat whose
# history grows to about 2,000 tokens, on `cellm serve` with the prefix cache and without
# it (--cache-ram 0 / --cache-gpu 0). Each turn sends the whole conversation again, as
# chat clients do; with the cache only the new user message is prefilled.
# The model is the shipped demo model (models/wordnet-llama, real tokenizer and chat
# template) with its context raised to 4096 positions in a copy of config.json (RoPE
# positions beyond its training length: the text is worse, the cost is the same), unless
# a model directory is given.
#   bench/prefix_bench.sh [CELLM_BIN] [--device cpu|cuda] [--threads N] [--model DIR]
# Prints one line per turn: prompt tokens, cached tokens, TTFT with and without the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/cellm}
[ $# -gt 0 ] && shift
device=cpu; threads=$(nproc); model=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2;; --threads) threads=$2; shift 2;; --model) model=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
if [ -z "$model" ]; then
  model=$(mktemp -d); trap 'rm -rf "$model"' EXIT
  for f in models/wordnet-llama/*; do
    [ "$(basename "$f")" = config.json ] || ln -s "$PWD/$f" "$model/"
  done
  sed 's/"max_position_embeddings": *[0-9]*/"max_position_embeddings": 4096/' \
    models/wordnet-llama/config.json >"$model/config.json"
fi
if command -v node >/dev/null; then
  DEVICE=$device THREADS=$threads node bench/prefix_bench.mjs "$bin" "$model"
else # the GPU machine has no node: the same chat from Python
  python3 bench/prefix_drive.py "$bin" "$model" --device "$device" --threads "$threads"
fi
