#!/usr/bin/env bash
# On the GPU machine, in one call: build with CUDA; batched-equals-alone (tests/test_batch)
# on --device cuda (BATCH_DEVICES="cuda xla" adds xla); `cellm verify --device xla` over every fixture; and
# the XLA in-graph vs at-load dequantization benchmark (bench/xla_dequant.sh).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/final.log") 2>&1
export PATH=$PATH:/usr/local/cuda/bin TF_CPP_MIN_LOG_LEVEL=2
B=build-gpu
. tests/gpu/deps.sh # libcjson/cmocka: the system's or the copies in .gpu-deps/
cmake -S . -B $B -DCELLM_CUDA=ON "${gpu_cmake_deps[@]}" >/dev/null &&
  cmake --build $B -j"$(nproc)" --target cellm_cli test_batch >/dev/null || exit 1
for dev in ${BATCH_DEVICES:-cuda}; do
  echo "== test_batch --device $dev"
  CELLM_TEST_DEVICE=$dev ./$B/tests/test_batch 2>&1 | grep -E "OK|FAIL|PASSED|FAILED" | tail -3
done
echo "== verify --device xla"
ls -d tests/fixtures/*/*/ models/*/ | xargs -P 8 -I{} sh -c \
  './'$B'/cellm verify -m {} --device xla >/tmp/v.$$.$(echo {} | tr / _) 2>&1 && echo "PASS {}" || { echo "FAIL {}"; tail -4 /tmp/v.$$.$(echo {} | tr / _); }' |
  sort | tee /tmp/xla_verify.txt | grep -v ^PASS
echo "xla verify: $(grep -c ^PASS /tmp/xla_verify.txt) passed, $(grep -c ^FAIL /tmp/xla_verify.txt) failed"
bash bench/xla_dequant.sh
