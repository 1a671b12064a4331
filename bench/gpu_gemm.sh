#!/usr/bin/env bash
# The tensor-core GEMM (src/exec/cuda/cuda_gemm.cu) on the GPU machine, in one call: build
# with CUDA (-Werror for the kernels, as CI), its direct test against float64
# (tests/test_cuda_gemm.c), test_batch on cuda, the GPU conformance run (tests/gpu/run.sh,
# modes from CELLM_GPU_MODES), then for each checkpoint spec pp512 and batched decode
# (cellm bench -b) with the GEMM (--exec-opt tc_rows=3) and without it (tc_rows=0: the
# scalar decode kernels below 32 rows, cuBLAS from 32), same machine, same build.
#   bench/gpu_gemm.sh [spec ...]      spec = preset:format (tools/make_random_ckpt.py)
# Logs under $OUT (or ./out); the table is printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
export PATH=$PATH:/usr/local/cuda/bin
B=build-gpu; DATA=${CELLM_BENCH_DATA:-/tmp/cellm-bench}
specs=("$@"); [ ${#specs[@]} -gt 0 ] || specs=(llama-3.1-8b:q4 llama-3.2-1b:bf16 qwen3-0.6b:q4)
. tests/gpu/deps.sh
t0=$(date +%s)
cmake -S . -B $B -DCELLM_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="90-real;90-virtual" \
  -DCMAKE_C_FLAGS="-I$PWD/.gpu-deps/include" "${gpu_cmake_deps[@]}" >"$OUT/cfg.log" 2>&1 &&
  cmake --build $B -j"$(nproc)" --target cellm_cli test_cuda_gemm test_batch >"$OUT/build.log" 2>&1 ||
  { tail -n 40 "$OUT/cfg.log" "$OUT/build.log"; echo "BUILD FAILED"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
echo "== test_cuda_gemm"; ./$B/tests/test_cuda_gemm >"$OUT/gemm_test.log" 2>&1; rc=$?
grep -E "worst|PASSED|FAILED|OK|SKIP" "$OUT/gemm_test.log" | sort | uniq -c | sort -rn | head -8
awk '/worst/ {if ($(NF-2)+0 > m) m = $(NF-2)+0} END {print "test_cuda_gemm worst:", m, "of bound"}' "$OUT/gemm_test.log"
echo "test_cuda_gemm rc=$rc"
echo "== test_batch on cuda"; CELLM_TEST_DEVICE=cuda ./$B/tests/test_batch 2>&1 | grep -E "PASSED|FAILED|FAIL" | tail -3
if [ "${CELLM_GPU_MODES-x}" != none ]; then
  t1=$(date +%s); tests/gpu/run.sh $B >"$OUT/conformance.log" 2>&1
  grep -E "^FAIL|GPU conformance" "$OUT/conformance.log" | head -20
  echo "conformance: $(( $(date +%s) - t1 )) s"
fi
table=()
for spec in "${specs[@]}"; do
  IFS=: read -r preset fmt <<<"$spec"
  dir=$DATA/$preset-$fmt
  [ -f "$dir/config.json" ] || python3 tools/make_random_ckpt.py "$preset" "$dir" --format "$fmt" >/dev/null || exit 1
  for mode in def tc old; do # the default routing; the GEMM for BF16 at every count too; none
    opt=tc_rows=3
    [ $mode = tc ] && opt=tc_rows=3,tc_bf16=1
    [ $mode = old ] && opt=tc_rows=0
    pp=$(./$B/cellm bench --exec-opt $opt -m "$dir" --device cuda -p 512 -n 8 -r 3 2>&1 | tee -a "$OUT/bench.log" | awk '/^prefill:/ {print $4}')
    line="$(printf '%-18s %-3s pp512 %8.1f' "$preset-$fmt" $mode "$pp")"
    for b in ${CELLM_BENCH_STREAMS:-4 16 64}; do
      tg=$(./$B/cellm bench --exec-opt $opt -m "$dir" --device cuda -p 128 -n 32 -b $b 2>&1 | tee -a "$OUT/bench.log" | awk '/^decode:/ {print $(NF-3)}')
      line+="$(printf '  b%-2d %7.1f' $b "$tg")"
    done
    table+=("$line"); echo "$line"
  done
done
echo "== tok/s (pp512: best of 3; bN: aggregate decode of N streams, 32 steps after a 128-token prompt each)"
printf '%s\n' "${table[@]}"
