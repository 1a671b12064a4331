#!/usr/bin/env bash
# One command from a fresh Debian 12 machine: install the build dependencies (Debian
# packages only), build cellm, and generate text on the CPU with the model this
# repository ships (models/, trained by tools/train_demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
pkgs="cmake make gcc libcjson-dev libcmocka-dev libmicrohttpd-dev"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target cellm_cli
model=models/wordnet-llama   # BF16; models/wordnet-llama-4bit is its MLX 4-bit copy
prompt=${1:-"the act of"}
echo "$ ./build/cellm generate -m $model -p \"$prompt\" -n 48"
./build/cellm generate -m "$model" -p "$prompt" -n 48
