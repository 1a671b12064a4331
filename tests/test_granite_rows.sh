#!/usr/bin/env bash
# test_granite_rows.sh CELLM FIXTURES: the granite row of src/model/family.c on the CPU.
# Granite is Llama with four multipliers; with the multipliers that make it Llama
# (embedding, residual and logits 1, attention head_dim^-0.5) a Llama fixture's
# checkpoint, read as granite, must pass `cellm verify` against the Llama reference
# exactly, and a residual multiplier or logits scaling other than 1 must change the
# result. (Granite's own transformers fixtures are for the GPU machine's oracle; this
# checks the family row and the plumbing of its keys, not the multipliers' rounding.)
set -u
cellm=$1
fixtures=$2
fails=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# as_granite DIR ATTN RESID LOGITS: DIR's checkpoint under a granite config, in $tmp/g
as_granite() {
  rm -rf "$tmp/g"
  mkdir "$tmp/g"
  for f in "$1"/*; do
    [ "$(basename "$f")" = config.json ] || ln -s "$(realpath "$f")" "$tmp/g/"
  done
  sed -e "s/\"model_type\": \"llama\"/\"model_type\": \"granite\", \"embedding_multiplier\": 1.0, \"attention_multiplier\": $2, \"residual_multiplier\": $3, \"logits_scaling\": $4/" \
    "$1/config.json" >"$tmp/g/config.json"
  grep -q '"model_type": "granite"' "$tmp/g/config.json"
}

# head_dim 16 (attention 0.25) and 64 (0.125): multipliers exact in binary
for case in llama-tied/bf16:0.25 llama3-untied/bf16:0.25 llama3-untied/q4-g64-bf16:0.25 \
  llama-tiled/q4-g64-bf16:0.125; do
  rel=${case%%:*}
  att=${case#*:}
  dir=$fixtures/$rel
  [ -d "$dir" ] || { echo "FAIL $rel: no fixture"; fails=$((fails + 1)); continue; }
  as_granite "$dir" "$att" 1.0 1.0 || { echo "FAIL $rel: config not rewritten"; fails=$((fails + 1)); continue; }
  out=$("$cellm" inspect -m "$tmp/g" 2>&1)
  grep -q '^family       granite$' <<<"$out" || { echo "FAIL $rel: inspect: $out"; fails=$((fails + 1)); }
  if ! out=$("$cellm" verify -m "$tmp/g" --threads 2 2>&1); then
    echo "FAIL $rel: granite with Llama's multipliers does not verify:"
    echo "$out" | tail -5
    fails=$((fails + 1))
  fi
  for bad in "1.0 0.5:residual_multiplier" "2.0 1.0:logits_scaling"; do
    vals=${bad%%:*}
    as_granite "$dir" "$att" ${vals% *} ${vals#* }
    if "$cellm" verify -m "$tmp/g" --threads 2 >/dev/null 2>&1; then
      echo "FAIL $rel: ${bad#*:} other than 1 changed nothing"
      fails=$((fails + 1))
    fi
  done
done
# the executors that lack the multipliers refuse them by name (XLA's refusal comes after
# its plugin is found, so without one this check has nothing to see)
as_granite "$fixtures/llama-tied/bf16" 0.25 0.5 1.0
out=$("$cellm" inspect -m "$tmp/g" --device xla 2>&1)
if ! grep -q 'residual_multiplier 0.5' <<<"$out" && ! grep -q 'needs a PJRT plugin' <<<"$out"; then
  echo "FAIL: --device xla did not refuse residual_multiplier 0.5: $out"
  fails=$((fails + 1))
fi
[ $fails -eq 0 ] && echo "ok: granite row checked on 4 checkpoints"
exit $((fails > 0))
