#!/usr/bin/env bash
# The OpenXLA executor on the GPU machine, in one go:
#   1. builds cellm (cellm_cli, cellm_xla_bench, test_xla_emit) in build-gpu-xla;
#   2. `cellm verify --device xla` over every fixture under tests/fixtures (4 at a time;
#      the first one alone, so that a module the plugin rejects stops the run early);
#   3. `cellm bench --device xla` (and --device cpu for comparison) on a Llama-3.2-1B-shape
#      random BF16 checkpoint written by tools/make_random_ckpt.py (and MLX 4-bit with
#      BENCH_Q4=1).
# The PJRT plugin is the one beside the installed JAX (or $CELLM_PJRT_PLUGIN). Without
# cJSON/cmocka system packages, put their libraries and headers in build-xla-deps/{lib,include}
# (carried along) and they are used. Everything is logged to $OUT/log (default ./out).
#   [XLA_FIXTURES=REGEX] [BENCH_Q4=1] tests/gpu/xla_run.sh [--no-bench]
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
OUT=${OUT:-$root/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log") 2>&1
bench=1
[ "${1:-}" = "--no-bench" ] && bench=0
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-1}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "== build"
# newer compilers there warn about code elsewhere in the tree; keep building
flags=()
if [ -d build-xla-deps ]; then
  flags=(-DCJSON_LIB="$root/build-xla-deps/lib/libcjson.so" -DCJSON_INC="$root/build-xla-deps/include"
         -DCMOCKA_LIB="$root/build-xla-deps/lib/libcmocka.so")
  export LD_LIBRARY_PATH="$root/build-xla-deps/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
t0=$(date +%s)
cmake -S . -B build-gpu-xla -DCMAKE_BUILD_TYPE=Release "${flags[@]}" >/dev/null || exit 1
cmake --build build-gpu-xla -j"$(nproc)" --target cellm_xla_bench test_xla_emit >/dev/null || exit 1
cmake --build build-gpu-xla -j"$(nproc)" --target cellm_cli >/dev/null || echo "cellm_cli did not build"
echo "built in $(( $(date +%s) - t0 )) s"
./build-gpu-xla/tests/test_xla_emit 2>&1 | tail -1

cellm=./build-gpu-xla/cellm
verify() {  # one fixture; prints its lines prefixed with the fixture name
  local d=$1 s=$(date +%s.%N)
  local out
  out=$($cellm verify -m "$d" --device xla 2>&1)
  local rc=$?
  printf '%s\n' "$out" | grep -v '^PASS\|^FAIL /' | sed "s|^|  ${d#tests/fixtures/}: |"
  printf '%s %s %ss\n' "$([ $rc = 0 ] && echo PASS || echo FAIL)" "${d#tests/fixtures/}" \
    "$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
}
export -f verify
export cellm

if [ -x $cellm ]; then
  echo "== verify --device xla"
  mapfile -t dirs < <(find tests/fixtures -name oracle.safetensors -printf '%h\n' | sort |
                      grep -E -- "${XLA_FIXTURES:-.}")
  t0=$(date +%s)
  first=$(verify "${dirs[0]}")
  echo "$first"
  if echo "$first" | grep -q "^PASS"; then
    printf '%s\n' "${dirs[@]:1}" | xargs -P 4 -I{} bash -c 'verify {}' > "$OUT/verify.txt"
    cat "$OUT/verify.txt"
  else
    echo "first fixture failed: stopping before the others"
  fi
  echo "verify: $(grep -c '^PASS' "$OUT/verify.txt" 2>/dev/null || echo 0) + first of ${#dirs[@]} passed in $(( $(date +%s) - t0 )) s"
fi

[ $bench = 1 ] || exit 0
echo "== bench"
ck=/tmp/cellm-bench/llama-3.2-1b-bf16
t0=$(date +%s)
[ -f $ck/config.json ] || python3 tools/make_random_ckpt.py llama-3.2-1b $ck --format bf16
echo "checkpoint written in $(( $(date +%s) - t0 )) s"
if [ -x $cellm ]; then
  $cellm bench -m $ck --device xla -p 128 -n 64 -r 2
else
  ./build-gpu-xla/cellm_xla_bench -m $ck --device xla -p 128 -n 64
fi
if [ "${BENCH_Q4:-0}" = 1 ]; then
  ck4=/tmp/cellm-bench/llama-3.2-1b-q4
  [ -f $ck4/config.json ] || python3 tools/make_random_ckpt.py llama-3.2-1b $ck4 --format q4
  $cellm bench -m $ck4 --device xla -p 128 -n 64 -r 2
fi
