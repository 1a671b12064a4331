#!/usr/bin/env bash
# cellm against llama.cpp on the GPU machine, side by side in one run on one card.
#
#   bench/gpu_vs_llamacpp.sh [--npl "1 4 16 64"] [--rounds R] [--no-serve] [--no-ttft]
#                            [spec ...]          spec = preset:bf16 | preset:q4
#
# Builds llama.cpp with CUDA from the snapshot in $PEER_SRC (default ../shared/peer; its
# build.sh) into $PEER in the background while cellm builds, writes random checkpoints of
# the real shapes (tools/make_random_ckpt.py: BF16, and MLX affine 4-bit g64) and their
# GGUF twins (BF16; Q4_0 and Q4_K_M quantized from it), then prints, per spec:
#   - llama-bench -p 512 -n 128 -ngl 99 -fa 1 beside `cellm bench -p 512 -n 128`
#     (pp512 and decode at batch 1), rounds interleaved, the best of each;
#   - llama-batched-bench -npp 128 -ntg 128 -npl LIST (S_TG: decode only; S: whole) beside
#     `cellm serve --parallel 64` driven by N concurrent greedy requests of 128 prompt and
#     128 generated tokens (bench/serve_drive.py: aggregate over whole requests, prefill
#     included) and `cellm bench -b N` (aggregate decode of N streams, decode only);
#   - time to first token of a 4096-token prompt (prefill of 4096 tokens), both engines.
# Ratios are cellm / llama.cpp. GGUF vocabularies come from the tokenizer.json of the
# family in $TOKDATA (default tests/data/hub; a folder of FAMILY/tokenizer.json(.xz)).
# Logs under $OUT (default ./out).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
OUT=${OUT:-$root/out}; mkdir -p "$OUT"
PEER_SRC=$(cd "${PEER_SRC:-$root/../shared/peer}" && pwd)
PEER=${PEER:-/tmp/peer-llama}
DATA=${CELLM_BENCH_DATA:-/tmp/cellm-bench}
TOKDATA=${TOKDATA:-tests/data/hub}
export PATH=$PATH:/usr/local/cuda/bin
npl="1 4 16 64"; R=2; serve=1; ttft=1; specs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --npl) npl=$2; shift 2;; --rounds) R=$2; shift 2;;
    --no-serve) serve=0; shift;; --no-ttft) ttft=0; shift;;
    *) specs+=("$1"); shift;;
  esac
done
[ ${#specs[@]} -gt 0 ] || specs=(llama-3.1-8b:q4 llama-3.1-8b:bf16 qwen3-0.6b:q4 llama-3.2-1b:bf16)
log() { echo "$*" | tee -a "$OUT/summary.txt"; }

peer_pid=
if [ ! -x "$PEER/build/bin/llama-batched-bench" ]; then
  setsid bash "$PEER_SRC/build.sh" "$PEER" cuda >"$OUT/peer_build.log" 2>&1 &
  peer_pid=$!
fi
B=build-gpu
. tests/gpu/deps.sh # also libmicrohttpd for cellm serve
t0=$(date +%s)
cmake -S . -B $B -DCELLM_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="90-real;90-virtual" \
  -DCMAKE_C_FLAGS="-Wno-error" "${gpu_cmake_deps[@]}" >"$OUT/cfg.log" 2>&1 &&
  cmake --build $B -j"$(nproc)" --target cellm_cli >"$OUT/build.log" 2>&1 ||
  { tail -n 40 "$OUT/cfg.log" "$OUT/build.log"; echo "BUILD FAILED"; exit 1; }
cellm=$root/$B/cellm
log "cellm build: $(( $(date +%s) - t0 )) s; $(nvidia-smi --query-gpu=name --format=csv,noheader)"

mkdir -p "$DATA"
for spec in "${specs[@]}"; do # checkpoints while llama.cpp builds
  IFS=: read -r preset fmt <<<"$spec"
  for f in "$fmt" bf16; do
    d=$DATA/$preset-$f
    [ -f "$d/config.json" ] || python3 tools/make_random_ckpt.py "$preset" "$d" --format "$f" >/dev/null ||
      { echo "checkpoint $d failed"; exit 1; }
  done
done
[ -z "$peer_pid" ] || wait "$peer_pid" || { tail -n 30 "$OUT/peer_build.log" "$PEER/build.log"; echo "PEER BUILD FAILED"; exit 1; }
bin=$PEER/build/bin
log "llama.cpp build: $(( $(date +%s) - t0 )) s after the start"

family_of() { case "$1" in qwen2.5*) echo qwen2_5;; qwen3*) echo qwen3;; llama-3.2*) echo llama3_2;; *) echo llama3_1;; esac; }
tokenizer_dir() { # a folder holding the family's tokenizer.json (+ tokenizer_config.json)
  local fam; fam=$(family_of "$1"); local d=$DATA/tok-$fam
  mkdir -p "$d"
  for f in tokenizer.json tokenizer_config.json; do
    [ -f "$d/$f" ] && continue
    if [ -f "$TOKDATA/$fam/$f" ]; then cp "$TOKDATA/$fam/$f" "$d/"; elif [ -f "$TOKDATA/$fam/$f.xz" ]; then xz -dc "$TOKDATA/$fam/$f.xz" >"$d/$f"; fi
  done
  echo "$d"
}
gguf_of() { # preset -> BF16 GGUF path (made once)
  local preset=$1 g=$DATA/$1-bf16.gguf ck=$DATA/$1-bf16 tok
  [ -f "$g" ] && { echo "$g"; return; }
  tok=$(tokenizer_dir "$preset")
  if grep -q '"qwen3"' "$ck/config.json"; then # st2gguf.py knows qwen2/llama; llama.cpp's own converter does qwen3
    local tmp=$DATA/$preset-hf; mkdir -p "$tmp"
    ln -sf "$ck"/* "$tmp/"; cp "$tok"/* "$tmp/"; rm -f "$tmp/config.json"
    # the converter picks its model class by config.json's "architectures"
    python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["architectures"] = ["Qwen3ForCausalLM"]; json.dump(c, open(sys.argv[2], "w"))' \
      "$ck/config.json" "$tmp/config.json"
    python3 "$PEER/convert_hf_to_gguf.py" "$tmp" --outtype bf16 --outfile "$g" >>"$OUT/gguf.log" 2>&1
  else
    GGUF_PY=$PEER/gguf-py python3 "$PEER_SRC/st2gguf.py" "$ck" "$tok" "$g" >>"$OUT/gguf.log" 2>&1
  fi
  [ -f "$g" ] || { echo "GGUF of $preset failed (see $OUT/gguf.log)" >&2; return 1; }
  echo "$g"
}
quant_of() { # preset type -> quantized GGUF
  local q=$DATA/$1-$2.gguf src
  [ -f "$q" ] || { src=$(gguf_of "$1") && "$bin/llama-quantize" "$src" "$q" "$2" >>"$OUT/gguf.log" 2>&1; } || return 1
  echo "$q"
}
llama_pp_tg() { # gguf -> "pp tg"
  "$bin/llama-bench" -m "$1" -p 512 -n 128 -ngl 99 -fa 1 -r 3 -o json 2>>"$OUT/llama.err" |
    python3 -c 'import json,sys
r=json.load(sys.stdin); pp=[x["avg_ts"] for x in r if x["n_prompt"]>0]; tg=[x["avg_ts"] for x in r if x["n_gen"]>0]
print(pp[0] if pp else 0, tg[0] if tg else 0)'
}
cellm_pp_tg() {
  "$cellm" bench -m "$1" --device cuda -p 512 -n 128 -r 3 2>>"$OUT/cellm.err" |
    awk '/^prefill:/ {pp=$4} /^decode:/ {tg=$4} END {print pp+0, tg+0}'
}
best() { awk -v a="$1" -v b="$2" 'BEGIN {print (a+0 > b+0) ? a : b}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b+0 > 0) printf "%.2fx", a/b; else print "-"}'; }

for spec in "${specs[@]}"; do
  IFS=: read -r preset fmt <<<"$spec"
  ck=$DATA/$preset-$fmt
  if [ "$fmt" = q4 ]; then peers=(Q4_0 Q4_K_M); else peers=(BF16); fi
  log ""
  log "== $preset $fmt (cellm: $ck)"
  # pp512 / tg128, rounds interleaved
  declare -A P=() T=()
  for ((r = 0; r < R; r++)); do
    read -r pp tg < <(cellm_pp_tg "$ck"); P[cellm]=$(best "${P[cellm]:-0}" "$pp"); T[cellm]=$(best "${T[cellm]:-0}" "$tg")
    for q in "${peers[@]}"; do
      if [ $q = BF16 ]; then g=$(gguf_of "$preset"); else g=$(quant_of "$preset" $q); fi || continue
      read -r pp tg < <(llama_pp_tg "$g"); P[$q]=$(best "${P[$q]:-0}" "$pp"); T[$q]=$(best "${T[$q]:-0}" "$tg")
    done
  done
  for q in "${peers[@]}"; do
    log "$(printf 'pp512  cellm %9.1f  llama.cpp %-6s %9.1f  %s' "${P[cellm]}" $q "${P[$q]:-0}" "$(ratio "${P[cellm]}" "${P[$q]:-0}")")"
    log "$(printf 'tg128  cellm %9.1f  llama.cpp %-6s %9.1f  %s' "${T[cellm]}" $q "${T[$q]:-0}" "$(ratio "${T[cellm]}" "${T[$q]:-0}")")"
  done
  unset P T
  # many streams
  q=${peers[0]}
  if [ $q = BF16 ]; then g=$(gguf_of "$preset"); else g=$(quant_of "$preset" $q); fi
  "$bin/llama-batched-bench" -m "$g" -npp 128 -ntg 128 -npl "$(echo $npl | tr ' ' ,)" -ngl 99 -fa on \
    >"$OUT/batched-$preset-$fmt.log" 2>&1
  port=$((18000 + RANDOM % 1000)); spid=
  if [ $serve = 1 ]; then
    "$cellm" serve -m "$ck" --device cuda --port $port --parallel 64 --queue 256 --per-client 256 -c 512 \
      --cache-gpu 0 --quiet >"$OUT/serve-$preset-$fmt.log" 2>&1 &
    spid=$!
    for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 1; done
  fi
  vocab=$(python3 -c "import json; print(json.load(open('$ck/config.json'))['vocab_size'])")
  for n in $npl; do
    stg=$(awk -v n=$n -F'|' '$2+0 == 128 && $4+0 == n {gsub(/ /, "", $9); print $9}' "$OUT/batched-$preset-$fmt.log" | head -1)
    sall=$(awk -v n=$n -F'|' '$2+0 == 128 && $4+0 == n {gsub(/ /, "", $11); print $11}' "$OUT/batched-$preset-$fmt.log" | head -1)
    cb=$("$cellm" bench -m "$ck" --device cuda -p 128 -n 128 -b $n 2>>"$OUT/cellm.err" | awk '/^decode:/ {print $(NF-3)}')
    [ $n = 1 ] && cb=$("$cellm" bench -m "$ck" --device cuda -p 128 -n 128 2>>"$OUT/cellm.err" | awk '/^decode:/ {print $4}')
    sv=-
    [ -n "$spid" ] && sv=$(python3 bench/serve_drive.py $port $n --vocab "$vocab" 2>>"$OUT/cellm.err" | awk '{print $(NF-6)}')
    log "$(printf 'streams %-3s llama.cpp %s S_TG %8.1f S %8.1f | cellm bench -b %8.1f (%s of S_TG) | cellm serve %8s (%s of S)' \
      $n $q "${stg:-0}" "${sall:-0}" "${cb:-0}" "$(ratio "${cb:-0}" "${stg:-0}")" "$sv" "$(ratio "$sv" "${sall:-0}")")"
  done
  [ -n "$spid" ] && { kill $spid; wait $spid 2>/dev/null; }
  if [ $ttft = 1 ]; then
    ct=$("$cellm" bench -m "$ck" --device cuda -p 4096 -n 1 -r 2 2>>"$OUT/cellm.err" | awk '/^prefill:/ {print $4}')
    lt=$("$bin/llama-bench" -m "$g" -p 4096 -n 0 -ngl 99 -fa 1 -r 2 -o json 2>>"$OUT/llama.err" |
      python3 -c 'import json,sys; r=json.load(sys.stdin); print(r[0]["avg_ts"])')
    log "$(awk -v c="$ct" -v l="$lt" -v q=$q 'BEGIN {printf "ttft 4096  cellm %.0f ms  llama.cpp %s %.0f ms", (c > 0) ? 4096000 / c : 0, q, (l > 0) ? 4096000 / l : 0}')"
  fi
done
echo; echo "== summary"; cat "$OUT/summary.txt"
