#!/usr/bin/env bash
# `cellm chat` on CUDA: on the GPU machine, builds cellm with the CUDA executor and holds
# conversations whose history is kept by the prefix cache in device memory (blocks of 16
# positions): later turns report cached tokens, and the replies equal those of a session
# without a cache (--cache-gpu 0), on the shipped model and on a sliding-window model
# (tests/cli/chat_window.py with --device cuda, in blocks of 1 as on the CPU: its turns
# are shorter than 16 positions).
#   [CHAT_DEVICE=xla] tests/gpu/chat_run.sh [build-dir]
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build-gpu}
export PATH=$PATH:/usr/local/cuda/bin
. tests/gpu/deps.sh
cmake -S . -B "$B" -DCELLM_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="90-real;90-virtual" "${gpu_cmake_deps[@]}" >"$B.cfg.log" 2>&1 \
  && cmake --build "$B" -j"$(nproc)" --target cellm_cli >"$B.build.log" 2>&1 \
  || { tail -n 30 "$B.cfg.log" "$B.build.log"; echo "BUILD FAILED"; exit 1; }
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "no GPU here: built the CUDA executor, skipped the GPU chat run"
  exit 0
fi
m=models/wordnet-llama
for i in 1 2 3 4 5 6; do echo "What does the word number $i mean in a sentence?"; done >"$B.turns"
dev=${CHAT_DEVICE:-cuda} # CHAT_DEVICE=xla: the same on XLA, whose slot keeps the history
chat() { "$B/cellm" chat -m "$m" --device "$dev" --temp 0 -n 24 "$@" <"$B.turns"; }
chat -v >"$B.chat.out" 2>"$B.chat.err" || { cat "$B.chat.err"; echo "FAIL: chat"; exit 1; }
chat --cache-gpu 0 >"$B.cold.out" 2>"$B.cold.err" || { cat "$B.cold.err"; echo "FAIL: chat cold"; exit 1; }
cat "$B.chat.err"
cmp -s "$B.chat.out" "$B.cold.out" || { diff "$B.chat.out" "$B.cold.out"; echo "FAIL: replies differ with the cache"; exit 1; }
cached=$(sed -n 's/.*new tokens, \([0-9]*\) cached.*/\1/p' "$B.chat.err" | tail -n 1)
[ "${cached:-0}" -gt 100 ] || { echo "FAIL: turn 6 reused ${cached:-0} tokens"; exit 1; }
python3 tests/cli/chat_window.py "$B/cellm" tests/fixtures/gemma3/bf16 "$m" "$B-window" --device "$dev" --cache-block 1 || exit 1
echo "GPU chat ($dev): ok"
