#!/bin/bash
# Decode and prefill of the quantized formats per CPU second (bench/formats_cpu.md): one
# thread, user CPU time (the development box is shared; wall time is not meaningful there),
# cellm and llama.cpp interleaved.
#   bench/formats_cpu.sh CKPT_DIR [LLAMA_BIN_DIR GGUF...]
# CKPT_DIR holds q05-FORMAT directories from
#   tools/make_random_ckpt.py qwen2.5-0.5b CKPT_DIR/q05-FORMAT --format FORMAT --seed 1
# (and q05-q4 from --format q4). Prints user seconds of base (-p 1 -n 1), decode (-p 1 -n 33)
# and prefill (-p 128 -n 1) runs; tokens per CPU second = tokens / (run - base).
set -e
C=$(dirname "$0")/../build/cellm
D=$1
LB=$2
shift 2 || true
u() { /usr/bin/time -f "%U" "$@" 2>&1 >/dev/null | tail -1; }
cm() {
    echo "cellm $(basename "$1") base $(u "$C" bench -m "$1" -p 1 -n 1 -t 1)" \
        "decode33 $(u "$C" bench -m "$1" -p 1 -n 33 -t 1) prefill128 $(u "$C" bench -m "$1" -p 128 -n 1 -t 1)"
}
lm() {
    local B=(env LD_LIBRARY_PATH="$LB" "$LB/llama-bench" -m "$1" -t 1 -r 1 --no-warmup)
    echo "llama.cpp $(basename "$1") base $(u "${B[@]}" -p 1 -n 0)" \
        "decode32 $(u "${B[@]}" -p 0 -n 32) prefill128 $(u "${B[@]}" -p 128 -n 0)"
}
for f in q4 mxfp4 nvfp4 mxfp8 fp8 gptq awq; do
    [ -d "$D/q05-$f" ] && cm "$D/q05-$f"
    if [ $# -gt 0 ] && [ -n "$LB" ]; then lm "$1"; shift; fi
done
