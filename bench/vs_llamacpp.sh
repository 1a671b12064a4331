#!/usr/bin/env bash
# cellm against llama.cpp on the CPU, side by side in one run on one machine.
#
#   bench/vs_llamacpp.sh LLAMA_BIN [-t THREADS] [-p 128] [-n 64] [-r ROUNDS] [--batched]
#                        [presets...]
#
# LLAMA_BIN holds llama-bench, llama-quantize and llama-batched-bench, as built by
# ../shared/peer/build.sh OUTDIR cpu (it prints that folder). For each preset
# (default: qwen2.5-0.5b llama-3.2-1b) the script writes random checkpoints of the real
# shape (BF16 and MLX affine 4-bit g64) under $CELLM_BENCH_DATA (default bench/data, git
# ignored), their GGUF twins (BF16, and Q4_0 quantized from it: 4.5 bits per weight, like
# MLX q4 g64), and then, ROUNDS times in turn, runs llama-bench and `cellm bench` in exact
# and (when this build has it) fast precision. The median of the rounds is printed with
# the ratios cellm / llama.cpp, and decode as a fraction of the read-bandwidth probe over
# the checkpoint's own mapped file. --batched adds aggregate decode tok/s at 1, 4 and 16
# parallel sequences: llama-batched-bench (S_TG) beside `cellm serve` (bench/serve_bench.mjs).
#
# GGUF conversion needs Debian's python3-numpy and a real tokenizer.json for the
# vocabulary (tests/data/hub, fetched by ./scripts/test.sh); llama.cpp's gguf-py comes from
# the snapshot next to LLAMA_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=${1:?usage: bench/vs_llamacpp.sh LLAMA_BIN [-t T] [-p P] [-n N] [-r R] [--batched] [presets...]}
shift
T=2; P=128; N=64; R=3; batched=0; presets=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t) T=$2; shift 2;; -p) P=$2; shift 2;; -n) N=$2; shift 2;; -r) R=$2; shift 2;;
    --batched) batched=1; shift;;
    *) presets+=("$1"); shift;;
  esac
done
[ ${#presets[@]} -gt 0 ] || presets=(qwen2.5-0.5b llama-3.2-1b)
for t in llama-bench llama-quantize; do
  [ -x "$bin/$t" ] || { echo "vs_llamacpp: $bin/$t not found (build it with ../shared/peer/build.sh)" >&2; exit 1; }
done
data=${CELLM_BENCH_DATA:-bench/data}
mkdir -p "$data"
build=${BUILD:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target cellm_cli >/dev/null
cellm=$root/$build/cellm
cc -O2 -o "$data/membw" bench/membw.c -lpthread
# gguf-py of the snapshot: LLAMA_BIN is OUTDIR/build/bin
gguf_py=$(cd "$bin/../.." && pwd)/gguf-py
st2gguf=${ST2GGUF:-$root/../shared/peer/st2gguf.py}
have_fast=0
"$cellm" bench --help 2>&1 | grep -q -- --precision && have_fast=1

tokdir_of() {
  case "$1" in
    qwen*) echo tests/data/hub/qwen2_5;;
    llama-3.2*) echo tests/data/hub/llama3_2;;
    *) echo tests/data/hub/llama3_1;;
  esac
}

# cellm bench output -> "prefill decode GB/s"
cellm_run() {
  # -r 2: the best of two, so the first run's page faults on the mapped file do not count
  # (llama-bench warms up before it measures)
  "$cellm" bench -m "$1" -p "$P" -n "$N" -r 2 --threads "$T" "${@:2}" 2>&1 |
    awk '/^prefill:/ {pp=$4} /^decode:/ {tg=$4; gb=$6} END {print pp, tg, gb}'
}
# llama-bench -> "prefill decode"
llama_run() {
  "$bin/llama-bench" -m "$1" -t "$T" -p "$P" -n "$N" -r 1 -o json 2>/dev/null |
    python3 -c 'import json,sys
rows=json.load(sys.stdin); pp=[r["avg_ts"] for r in rows if r["n_prompt"]>0]; tg=[r["avg_ts"] for r in rows if r["n_gen"]>0]
print(pp[0] if pp else 0, tg[0] if tg else 0)'
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for preset in "${presets[@]}"; do
  for fmt in bf16 q4; do
    dir=$data/$preset-$fmt
    [ -f "$dir/config.json" ] || python3 tools/make_random_ckpt.py "$preset" "$dir" --format $fmt --seed 1
  done
  g16=$data/$preset-bf16.gguf; g4=$data/$preset-q4_0.gguf
  [ -f "$g16" ] || GGUF_PY=$gguf_py /usr/bin/python3 "$st2gguf" "$data/$preset-bf16" "$(tokdir_of "$preset")" "$g16" >/dev/null
  [ -f "$g4" ] || "$bin/llama-quantize" "$g16" "$g4" Q4_0 >/dev/null 2>&1
  for fmt in bf16 q4; do
    dir=$data/$preset-$fmt
    gguf=$([ $fmt = bf16 ] && echo "$g16" || echo "$g4")
    probe=$("$data/membw" "$T" 1024 "$dir"/model*.safetensors | awk '{print $3}')
    for r in $(seq "$R"); do
      echo "$preset $fmt llama $(llama_run "$gguf")" >>"$results"
      echo "$preset $fmt exact $(cellm_run "$dir")" >>"$results"
      [ $have_fast = 1 ] && echo "$preset $fmt fast $(cellm_run "$dir" --precision fast)" >>"$results"
      echo "  $preset $fmt round $r done" >&2
    done
    echo "$preset $fmt probe $probe" >>"$results"
  done
done

echo "cellm vs llama.cpp, CPU, $T threads, -p $P -n $N, median of $R interleaved rounds"
echo "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F))"
printf '%-14s %-7s | %9s %9s %6s %9s %6s | %8s %8s %6s %8s %6s | %s\n' model fmt \
  "pp llama" "pp exact" ratio "pp fast" ratio "tg llama" "tg exact" ratio "tg fast" ratio \
  "exact decode GB/s, % of probe"
for preset in "${presets[@]}"; do
  for fmt in bf16 q4; do
    col() { awk -v p="$preset" -v f="$fmt" -v m="$1" -v c="$2" '$1==p && $2==f && $3==m {print $c}' "$results" | median; }
    lp=$(col llama 4); lt=$(col llama 5)
    ep=$(col exact 4); et=$(col exact 5); eg=$(col exact 6)
    fp=$(col fast 4); ft=$(col fast 5)
    probe=$(col probe 4)
    awk -v m="$preset" -v f="$fmt" -v lp="$lp" -v lt="$lt" -v ep="$ep" -v et="$et" -v eg="$eg" \
        -v fp="${fp:-0}" -v ft="${ft:-0}" -v pr="$probe" 'BEGIN {
      printf "%-14s %-7s | %9.1f %9.1f %5.2fx %9.1f %5.2fx | %8.1f %8.1f %5.2fx %8.1f %5.2fx | %.1f of %.1f = %.0f%%\n",
        m, (f == "q4" ? "q4/Q4_0" : f), lp, ep, (lp ? ep / lp : 0), fp, (lp ? fp / lp : 0),
        lt, et, (lt ? et / lt : 0), ft, (lt ? ft / lt : 0), eg, pr, (pr ? 100 * eg / pr : 0) }'
  done
done

if [ $batched = 1 ]; then
  echo
  echo "aggregate decode tok/s at 1/4/16 parallel sequences (8-token prompts, $N tokens each)"
  for preset in "${presets[@]}"; do
    for fmt in bf16 q4; do
      gguf=$([ $fmt = bf16 ] && echo "$data/$preset-bf16.gguf" || echo "$data/$preset-q4_0.gguf")
      echo "== $preset $fmt: llama-batched-bench (S_TG t/s)"
      "$bin/llama-batched-bench" -m "$gguf" -t "$T" -npp 8 -ntg "$N" -npl 1,4,16 2>/dev/null |
        awk -F'|' 'NF > 8 && $2 ~ /[0-9]/ {printf "  npl %s  S_TG %s\n", $4, $9}'
      echo "== $preset $fmt: cellm serve"
      THREADS=$T node bench/serve_bench.mjs "$cellm" "$data/$preset-$fmt" "$N" 1 4 16 | sed 's/^/  /'
    done
  done
fi
