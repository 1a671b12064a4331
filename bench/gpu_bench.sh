#!/usr/bin/env bash
# GPU benchmark (run on the GPU machine): builds cellm with CUDA, measures device copy
# bandwidth, writes real-size checkpoints with random weights (tools/make_random_ckpt.py),
# and for each runs `cellm bench --device cuda -p 512 -n 128` and Hugging Face
# transformers (bf16, static cache; bench/gpu_peer.py) on the same checkpoint. Prints
# decode tok/s at batch 1, pp512 tok/s, decode bytes/s as a fraction of copy bandwidth,
# and the ratio to transformers. With --greedy, also checks the Llama-3.1-8B-shape BF16
# 4-shard greedy ids (32 tokens, cuda and cpu) against transformers float32.
# With --also OPTS, each checkpoint is measured a second time with --exec-options OPTS (e.g.
# qdecode=0: the older decode of the formats of docs/formats.md), a row of its own.
# --opts OPTS passes --exec-options OPTS to every cellm run (e.g. untested=1 for the models
# whose CUDA kernels are opt-in); --long N adds a row with the prefill of N tokens (for the
# hybrids, qwen3.5-0.8b and lfm2-1.2b, whose state layers make long prompts cheap).
#   bench/gpu_bench.sh [--greedy] [--no-peer] [--also OPTS] [--opts OPTS] [--long N] [spec ...]
#   spec = preset:format:shards
set -uo pipefail
cd "$(dirname "$0")/.."
B=build-gpu; DATA=${CELLM_BENCH_DATA:-/tmp/cellm-bench}; P=512; N=128; greedy=0; peer=1; specs=(); also=
opts=; long=0
while [ $# -gt 0 ]; do
  case "$1" in
    --greedy) greedy=1; shift;; --no-peer) peer=0; shift;;
    --also) also=$2; shift 2;;
    --opts) opts=$2; shift 2;;
    --long) long=$2; shift 2;;
    *) specs+=("$1"); shift;;
  esac
done
[ ${#specs[@]} -gt 0 ] || specs=(qwen3-0.6b:q4:1 llama-3.2-1b:bf16:1 llama-3.1-8b:q4:1 llama-3.1-8b:bf16:4)
export PATH=$PATH:/usr/local/cuda/bin
. tests/gpu/deps.sh # libcjson/cmocka: the system's or the copies in .gpu-deps/
if [ ! -x $B/cellm ]; then
  cmake -S . -B $B -DCELLM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="90-real;90-virtual" "${gpu_cmake_deps[@]}" >/dev/null && cmake --build $B -j"$(nproc)" --target cellm_cli >/dev/null || exit 1
fi
bw=$(python3 - <<'PY'
import torch
x = torch.empty(2 << 30, dtype=torch.uint8, device="cuda"); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
ts = []
for _ in range(10):
    s.record(); y.copy_(x); e.record(); e.synchronize(); ts.append(s.elapsed_time(e))
ts.sort(); print(f"{2 * x.numel() / (ts[len(ts)//2] * 1e-3) / 1e9:.1f}")
PY
)
echo "device copy bandwidth: $bw GB/s (read + write, median of 10 copies of 2 GiB)"
mkdir -p "$DATA"
table=()
for spec in "${specs[@]}"; do
  IFS=: read -r preset fmt shards <<<"$spec"
  dir=$DATA/$preset-$fmt-s$shards
  if [ ! -f "$dir/config.json" ]; then
    t0=$(date +%s); python3 tools/make_random_ckpt.py "$preset" "$dir" --format "$fmt" --shards "$shards" || exit 1
    echo "wrote $dir in $(( $(date +%s) - t0 )) s"
  fi
  echo "== $preset $fmt ($shards shards)"
  out=$($B/cellm bench -m "$dir" --device cuda -p $P -n $N -r 2 ${opts:+--exec-options "$opts"} 2>&1); echo "$out"
  dec=$(echo "$out" | awk '/^decode:/ {print $4}'); pp=$(echo "$out" | awk '/^prefill:/ {print $4}')
  gbs=$(echo "$out" | awk '/^decode:/ {print $(NF-3)}')
  pdec=-; ppp=-
  if [ $peer = 1 ]; then
    pout=$(PYTHONUNBUFFERED=1 python3 bench/gpu_peer.py "$dir" -p $P -n $N 2>&1 | grep -v Warning); echo "$pout"
    pdec=$(echo "$pout" | awk '/^peer decode:/ {print $5}'); ppp=$(echo "$pout" | awk '/^peer prefill:/ {print $5}')
  fi
  table+=("$(awk -v n="$preset $fmt" -v d="$dec" -v p="$pp" -v g="$gbs" -v b="$bw" -v pd="$pdec" -v pp="$ppp" 'BEGIN {
    r1 = (pd+0 > 0) ? sprintf("%.2fx", d/pd) : "-"; r2 = (pp+0 > 0) ? sprintf("%.2fx", p/pp) : "-";
    printf "%-22s decode %8.1f tok/s (%5.1f%% of copy bw)  pp512 %8.1f tok/s | transformers decode %s pp512 %s | ratio decode %s pp %s", n, d, 100*g/b, p, pd, pp, r1, r2 }')")
  if [ "$long" -gt 0 ]; then
    out=$($B/cellm bench -m "$dir" --device cuda -p "$long" -n 1 -r 1 ${opts:+--exec-options "$opts"} 2>&1); echo "$out"
    table+=("$(printf '%-22s pp%s %s tok/s' "$preset $fmt" "$long" "$(echo "$out" | awk '/^prefill:/ {print $4}')")")
  fi
  if [ -n "$also" ]; then
    echo "== $preset $fmt ($shards shards), --exec-options $also"
    out=$($B/cellm bench -m "$dir" --device cuda -p $P -n $N -r 2 --exec-options "${opts:+$opts,}$also" 2>&1); echo "$out"
    dec=$(echo "$out" | awk '/^decode:/ {print $4}'); pp=$(echo "$out" | awk '/^prefill:/ {print $4}')
    gbs=$(echo "$out" | awk '/^decode:/ {print $(NF-3)}')
    table+=("$(awk -v n="$preset $fmt [$also]" -v d="$dec" -v p="$pp" -v g="$gbs" -v b="$bw" 'BEGIN {
      printf "%-22s decode %8.1f tok/s (%5.1f%% of copy bw)  pp512 %8.1f tok/s", n, d, 100*g/b, p }')")
  fi
done
if [ $greedy = 1 ]; then
  dir=$DATA/llama-3.1-8b-bf16-s4
  [ -f "$dir/config.json" ] || python3 tools/make_random_ckpt.py llama-3.1-8b "$dir" --format bf16 --shards 4
  prompt=128000,791,6864,315,9822,374,12366,13,578,6864,315,9635,374
  gc=$($B/cellm generate -m "$dir" --device cuda --prompt-ids $prompt -n 32 --ids --ignore-eos 2>/dev/null | tr -s ' \n' ',' )
  gp=$($B/cellm generate -m "$dir" --device cpu --prompt-ids $prompt -n 32 --ids --ignore-eos 2>/dev/null | tr -s ' \n' ',' )
  echo "cellm cuda ids: $gc"; echo "cellm cpu ids:  $gp"
  python3 bench/gpu_peer.py "$dir" --greedy $prompt --check "$gc" --check "$gp" 2>&1 | grep -v Warning
fi
echo; echo "== summary (H100, copy bandwidth $bw GB/s; cellm bench -p $P -n $N -r 2 --device cuda)"
printf '%s\n' "${table[@]}"
