#!/usr/bin/env bash
# The CPU executor on a machine with AVX-512 (the GPU machine's host CPU): builds cellm
# without CUDA and runs the conformance suite on every ISA level the CPU has, plus the
# kernel and pool unit tests. Uses build-xla-deps/{lib,include} for cJSON/cmocka when
# the machine lacks the Debian packages (as the GPU image does).
#   tests/gpu/cpu_isa_run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
OUT=${OUT:-$root/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/cpu_isa.log") 2>&1
flags=()
if [ -d build-xla-deps ]; then
  flags=(-DCJSON_LIB="$root/build-xla-deps/lib/libcjson.so" -DCJSON_INC="$root/build-xla-deps/include"
         -DCMOCKA_LIB="$root/build-xla-deps/lib/libcmocka.so")
  export LD_LIBRARY_PATH="$root/build-xla-deps/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
grep -o -m1 -w -E 'avx512f|avx2' /proc/cpuinfo | head -1
cmake -S . -B build-cpu-isa -DCMAKE_BUILD_TYPE=Release "${flags[@]}" >/dev/null || exit 1
cmake --build build-cpu-isa -j"$(nproc)" --target cellm_cli test_quant test_threadpool test_memory >/dev/null || exit 1
./build-cpu-isa/tests/test_quant | tail -1
./build-cpu-isa/tests/test_threadpool | tail -1
./build-cpu-isa/tests/test_memory | tail -2
for isa in avx512 avx2 portable; do
  pass=0; fail=0
  for d in tests/fixtures/*/*/ models/*/; do
    [ -f "$d/oracle.safetensors" ] || continue
    if out=$(./build-cpu-isa/cellm verify -m "$d" --threads 4 --exec-opt isa=$isa 2>&1); then
      pass=$((pass + 1))
    else
      fail=$((fail + 1)); echo "FAIL [$isa] $d"; echo "$out" | tail -4
    fi
  done
  echo "isa $isa: $pass passed, $fail failed ($(./build-cpu-isa/cellm inspect -m tests/fixtures/llama3-untied/bf16 --exec-opt isa=$isa | grep ^device))"
done
