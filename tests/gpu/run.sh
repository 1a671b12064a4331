#!/usr/bin/env bash
# GPU conformance: on the GPU machine, builds cellm with the CUDA executor (sm_90) and runs
# `cellm verify --device cuda` over every fixture in tests/fixtures and the shipped models,
# in these modes:
#   default     batches of 3 or more rows through the default routing (the tensor-core GEMM,
#               cuda_gemm.cuh, for affine weights at 3+ rows and BF16 at 8..31 rows),
#               other formats' prefill through cuBLAS, decode through the fused kernels
#               (4-bit weights at one or two rows on the tensor cores, cuda_mvt.cuh)
#               and decode attention as one thread-block cluster per (row, head)
#               (cuda_attn_dec.cu) for every model (attn_dec=2; the default
#               takes the grouped clusters below for 2..8 q heads per kv head)
#   grouped     attn_dec=3: decode attention as one cluster per kv head, its
#               query heads sharing each key tile, for every model
#   scalar      mma=0,attn_dec=0: the scalar fused products for 4-bit
#               weights and the single-block fused decode attention
#   matvec      gemm_rows=100000,tc_rows=0: every product through the
#               decode kernels
#   gemm        gemm_rows=1,tc_rows=0: every product through cuBLAS
#               (bf16x3 split for BF16)
#   tc          tc_rows=1,tc_bf16=1: every product the tensor-core GEMM takes through it,
#               decode steps of one row too
#   unfused     fuse=0: the first-generation kernels (separate norm, GLU, q/k/v
#               epilogue and attention kernels; per-row attention at prefill)
#   rowmajor    tiled=0: 4-bit codes in row order on the device
#   qold        qdecode=0: GPTQ/AWQ in the input-major layout through cuda_mvq.cu, FP8
#               and MX codes decoded element by element (not in the default list: run it
#               with CELLM_GPU_MODES)
#   paged       kv_paged=1: the KV cache in blocks from a per-context pool (cuda_kv.c);
#               every other mode keeps one contiguous cache per sequence (the default
#               until this mode has passed on a GPU)
#   once        gemm with bf16_once=1: BF16 products take the activations' three-way split
#               as one cuBLAS product (the default until this mode has passed on a GPU)
# Every mode adds untested=1, so the models whose CUDA kernels had not yet run on a GPU
# (Mistral 3, Llama 4, LFM2, dense Qwen3.5; cuda.c) are verified here.
# Each mode is a set of executor options (`cellm verify --exec-options ...`; `cellm inspect
# --exec-opt help` lists them). The first seven modes add tiled=2: every 4-bit weight whose shape qualifies is
# stored step-ordered (cuda_int.h), not only those of CU_RING_COLS columns or more, as by
# default; in the llama-tiled fixtures every product and the tied embedding qualify (made
# on the GPU machine by ../shared/oracle/make_fixtures.py --cases tests/gpu/llama-tiled-case.json).
# On the fixtures, the default (no weight that wide) is what rowmajor runs.
# Before the fixtures it runs the per-op tests (tests/test_cuda_ops.c, test_cuda_attn.c,
# test_cuda_state.c: every CUDA launcher against the CPU op on random inputs, each weight format at 1, 2,
# 3-31 and >= 32 rows; test_cuda_layout.c: the device layout of the formats of
# docs/formats.md decoded on the host; logs in $B.test_cuda_*.log).
# Then it compares 40 greedy ids, cuda against the CPU, on two real-size checkpoints with
# fixed random weights (below).
# It prints one line per fixture and mode, then a summary. Exit status 0 only if all pass.
#   tests/gpu/run.sh [build-dir]
# Built with -Werror, like CI.
# Without a GPU (CI) it only says so and exits 0 after the build.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build-gpu}
export PATH=$PATH:/usr/local/cuda/bin
. tests/gpu/deps.sh # libcjson/cmocka: the system's or the copies in .gpu-deps/
cmake -S . -B "$B" -DCELLM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="90-real;90-virtual" "${gpu_cmake_deps[@]}" >"$B.cfg.log" 2>&1 \
  && cmake --build "$B" -j"$(nproc)" --target cellm_cli test_cuda_ops test_cuda_attn test_cuda_state test_cuda_layout test_cuda_kv >"$B.build.log" 2>&1 \
  || { tail -n 30 "$B.cfg.log" "$B.build.log"; echo "BUILD FAILED"; exit 1; }
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "no GPU here: built the CUDA executor, skipped the GPU conformance run"
  exit 0
fi
nvidia-smi -L
# per-op tests first: a failing kernel is named here before the end-to-end modes
pass=0; fail=0; failed=()
for t in test_cuda_ops test_cuda_attn test_cuda_state test_cuda_layout test_cuda_kv; do
  if "$B/tests/$t" >"$B.$t.log" 2>&1; then
    pass=$((pass+1)); echo "ok   per-op   $t ($(grep -c '^ok' "$B.$t.log") cases)"
  else
    fail=$((fail+1)); failed+=("$t")
    echo "FAIL per-op   $t: each FAIL line names the op, format, shape and worst error"
    grep -E '^FAIL|\[  (FAILED|ERROR)|cases,' "$B.$t.log" | sed 's/^/     /'
  fi
done
# every (mode, fixture) pair is independent: run them several at a time (one GPU), then
# report in order
jobs=${CELLM_GPU_JOBS:-8}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
one() { # mode dir index
  local mode=$1 dir=$2 idx=$3 opts=
  case $mode in
    default) opts=attn_dec=2,;;
    grouped) opts=attn_dec=3,;;
    scalar) opts=mma=0,attn_dec=0,;;
    matvec) opts=gemm_rows=100000,tc_rows=0,;;
    gemm) opts=gemm_rows=1,tc_rows=0,;;
    tc) opts=tc_rows=1,tc_bf16=1,;;
    unfused) opts=fuse=0,;;
    qold) opts=qdecode=0,;;
    paged) opts=kv_paged=1,;;
    once) opts=bf16_once=1,gemm_rows=1,tc_rows=0,;;
  esac
  # untested=1: the models whose kernels had not yet run on a GPU (cuda.c says which) run in
  # every mode, so this script is what verifies them
  if [ "$mode" = rowmajor ]; then opts=untested=1,tiled=0; else opts+=untested=1,tiled=2; fi
  "$B/cellm" verify -m "$dir" --device cuda --exec-options "$opts" >"$tmp/$idx.out" 2>&1
  echo $? >"$tmp/$idx.rc"
}
export -f one; export B tmp
list=(); idx=0
for mode in ${CELLM_GPU_MODES:-default grouped scalar matvec gemm tc unfused rowmajor paged once}; do
  for dir in tests/fixtures/*/*/ models/*/; do
    [ -f "$dir/oracle.safetensors" ] || continue
    list+=("$mode $dir $idx"); idx=$((idx+1))
  done
done
printf '%s\n' "${list[@]}" | xargs -P "$jobs" -L 1 bash -c 'one "$0" "$1" "$2"'
for item in "${list[@]}"; do
  read -r mode dir i <<<"$item"
  name=${dir#tests/fixtures/}; name=${name%/}; name=${name#models/}
  out=$(cat "$tmp/$i.out"); rc=$(cat "$tmp/$i.rc" 2>/dev/null || echo 1)
  worst=$(echo "$out" | grep -o '([0-9.]* of tolerance)' | tr -d '()' | awk '{if ($1>m) m=$1} END {printf "%.3f", m}')
  if [ "$rc" -eq 0 ]; then
    pass=$((pass+1)); printf 'ok   %-8s %-32s worst %s of tolerance\n' "$mode" "$name" "$worst"
  else
    fail=$((fail+1)); failed+=("$mode:$name"); printf 'FAIL %-8s %-32s\n' "$mode" "$name"
    echo "$out" | sed 's/^/     /'
  fi
done
# Greedy at length. The fixtures' prompts are short; a race in the decode attention once
# showed only after tens of tokens (bench/cuda_notes.md round 7). Two real-size
# checkpoints with fixed random weights (tools/make_random_ckpt.py --seed): 40 greedy
# tokens after a 13-token prompt on cuda must equal the CPU's, with the attention's
# clusters scheduled early (PDL) and not, three runs each.
data=${CELLM_GPU_DATA:-/tmp/cellm-gpu-greedy}
prompt=128000,791,6864,315,9822,374,12366,13,578,6864,315,9635,374
gen() { "$B/cellm" generate -m "$1" --device "$2" --prompt-ids $prompt -n 40 --ids --ignore-eos --temp 0 "${@:3}" 2>/dev/null | head -n 1; }
for spec in "llama-3.2-1b bf16" "qwen3-0.6b q4"; do
  read -r preset fmt <<<"$spec"
  dir=$data/$preset-$fmt-seed7 name="greedy40 $preset-$fmt"
  if [ ! -f "$dir/config.json" ] && ! python3 tools/make_random_ckpt.py "$preset" "$dir" --format "$fmt" --seed 7 >/dev/null; then
    fail=$((fail+1)); failed+=("$name"); echo "FAIL $name: could not write $dir"; continue
  fi
  ref=$(gen "$dir" cpu)
  for pdl in 0 1; do
    for run in 1 2 3; do
      got=$(gen "$dir" cuda --exec-opt attn_pdl=$pdl)
      if [ -n "$ref" ] && [ "$got" = "$ref" ]; then
        pass=$((pass+1)); printf 'ok   %-8s %-32s run %d: 40 ids equal to the CPU\n' "pdl=$pdl" "$name" "$run"
      else
        fail=$((fail+1)); failed+=("pdl=$pdl:$name:run$run")
        step=$(awk -v a="$got" -v b="$ref" 'BEGIN { n = split(a, x, ","); split(b, y, ","); for (i = 1; i <= n; i++) if (x[i] != y[i]) { print i - 1; exit } print "-" }')
        printf 'FAIL %-8s %-32s run %d: cuda left the CPU at step %s\n     cuda: %s\n     cpu:  %s\n' "pdl=$pdl" "$name" "$run" "$step" "$got" "$ref"
      fi
    done
  done
done
echo "GPU conformance: $pass passed, $fail failed"
[ $fail -eq 0 ] || { printf '  failed: %s\n' "${failed[@]}"; exit 1; }
