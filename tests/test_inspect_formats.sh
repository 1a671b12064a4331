#!/usr/bin/env bash
# test_inspect_formats.sh CELLM TEST_FORMATS_LOAD: `cellm inspect` on a checkpoint of each
# format of docs/formats.md (written by test_formats_load --write), checking that it names
# the format, code and scale types, group and bits per weight.
set -u
cellm=$1
writer=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$writer" --write "$tmp" || { echo "FAIL: $writer --write"; exit 1; }
fails=0
check() { # DIR REGEX...
  local dir=$1
  shift
  local out
  if ! out=$("$cellm" inspect -m "$tmp/$dir" 2>&1); then
    echo "FAIL $dir: exit status non-zero: $out"
    fails=$((fails + 1))
    return
  fi
  for re in "$@"; do
    grep -Eq -- "$re" <<<"$out" || { echo "FAIL $dir: no line matching '$re'"; echo "$out"; fails=$((fails + 1)); }
  done
}
check mxfp4 '^quantization mode mxfp4, 4-bit, group 32 \(config.json\)' \
  '^  attention q, k, v, o +mxfp4 E2M1 g32 e8m0 scales, 4\.25 bpw$'
check mxfp8 '^quantization mode mxfp8, 8-bit, group 32 ' \
  '^  mlp gate, up, down +mxfp8 E4M3 g32 e8m0 scales, 8\.25 bpw$'
check nvfp4 '^quantization mode nvfp4, 4-bit, group 16 ' \
  '^  attention q, k, v, o +nvfp4 E2M1 g16 e4m3 scales, 4\.50 bpw$'
check gptoss-mxfp4 '^quantization mxfp4 blocks \(quantization_config\)' \
  '^  attention q, k, v, o +mxfp4 E2M1 g32 e8m0 scales, 4\.25 bpw$'
check fp8 '^quantization fp8 E4M3, weight_block_size \[32, 32\] \(quantization_config\)' \
  '^  attention q, k, v, o +fp8 E4M3 blocks 32x32 f32 scales, 8\.0[0-9] bpw$'
check gptq '^quantization gptq 4-bit, group 32, desc_act, v1 zeros \(quantization_config\)' \
  '^  attention q, o +gptq 4-bit g32 f16 scales, g_idx, 5\.12 bpw$'
check awq '^quantization awq 4-bit, group 32 \(quantization_config\)' \
  '^  mlp gate, up, down +awq 4-bit g32 f16 scales, [0-9.]+ bpw$'
[ $fails -eq 0 ] && echo "inspect on 7 formats: ok"
exit $((fails > 0))
