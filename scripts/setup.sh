#!/usr/bin/env bash
# One command from a fresh Debian 12 machine: install the build and test dependencies
# (Debian packages only, scripts/deps.sh), build cellm, and generate text on the CPU with
# the model this repository ships (models/, trained by tools/train_demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target cellm_cli
model=models/wordnet-llama   # BF16; models/wordnet-llama-4bit is its MLX 4-bit copy
prompt=${1:-"the act of"}
# --raw: a sentence to complete, not a question for the chat template
echo "$ ./build/cellm generate -m $model --raw -p \"$prompt\" -n 48"
./build/cellm generate -m "$model" --raw -p "$prompt" -n 48
