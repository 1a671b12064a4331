#!/usr/bin/env bash
# Constrained decoding overhead on the demo model through `cellm serve`: decode ms/token
# (and tok/s) of chat requests with a json_schema response_format against the same
# requests without it, interleaved round by round (bench/grammar_serve.mjs), then the
# engine-level walk and decode comparison of bench/grammar_bench.c on the same model.
#   bench/grammar_bench.sh [--rounds N] [--threads N] [MODEL_DIR]
# Results: bench/grammar_notes.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=8; threads=1; model=models/wordnet-llama
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2;; --threads) threads=$2; shift 2;;
    *) model=$1; shift;;
  esac
done
build=${BUILD:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target cellm_cli grammar_bench >/dev/null
echo "== through cellm serve ($model, $threads thread(s), $rounds rounds; load: $(cut -d' ' -f1-3 /proc/loadavg))"
node bench/grammar_serve.mjs "$build/cellm" "$model" "$rounds" "$threads"
echo "== engine (bench/grammar_bench.c: mask walk at the model's vocabulary, cellm_gen decode)"
"$build/tests/grammar_bench" "$model" -n 128 --threads "$threads" "$model"
