#!/usr/bin/env bash
# End-to-end text generation from a checkpoint directory with a real tokenizer.json:
# text in -> tokenizer -> model -> sampler -> streaming detokenizer -> text out.
#   generate.sh CELLM MODEL_DIR
set -euo pipefail
cellm=$1
model=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
prompt="the act of"

# greedy text equals the decoded greedy ids (EOS dropped from the text)
ids=$("$cellm" generate -m "$model" -p "$prompt" -n 24 --temp 0 --ids 2>/dev/null)
text=$("$cellm" generate -m "$model" -p "$prompt" -n 24 --temp 0 2>/dev/null)
[ -n "$ids" ] || fail "no ids generated"
decoded=$("$cellm" tokenize -m "$model" --decode "$ids" --skip-special)
[ "$text" = "$decoded" ] || fail "streamed text '$text' != decoded ids '$decoded'"
echo "greedy: $prompt ->$text"
grep -q <<<"$text" '[a-z][a-z]' || fail "no words in '$text'"

# the prompt the model saw is the tokenizer's encoding (--raw: no chat template)
verbose=$("$cellm" generate -m "$model" -p "$prompt" -n 1 --temp 0 --raw --verbose 2>&1 >/dev/null |
          sed -n 's/^prompt ids: //p')
want=$("$cellm" tokenize -m "$model" "$prompt")
[ "$verbose" = "$want" ] || fail "prompt ids '$verbose' != tokenize '$want'"

# a stop string ends the output just before it and is not printed
word=$(echo "$text" | awk '{print $2}')
if [ -n "$word" ]; then
  stopped=$("$cellm" generate -m "$model" -p "$prompt" -n 24 --temp 0 --stop "$word" 2>/dev/null)
  case "$text" in
    "$stopped$word"*) ;;
    *) fail "--stop '$word': got '$stopped' from '$text'";;
  esac
  case "$stopped" in *"$word"*) fail "--stop printed the stop string";; esac
fi

# same seed, same output; sampling differs across seeds
a=$("$cellm" generate -m "$model" -p "$prompt" -n 24 --temp 1 --seed 7 2>/dev/null)
b=$("$cellm" generate -m "$model" -p "$prompt" -n 24 --temp 1 --seed 7 2>/dev/null)
[ "$a" = "$b" ] || fail "seed 7 gave '$a' then '$b'"
differs=0
for s in 1 2 3 4; do
  c=$("$cellm" generate -m "$model" -p "$prompt" -n 24 --temp 1 --seed $s 2>/dev/null)
  [ "$c" = "$a" ] || differs=1
done
[ $differs = 1 ] || fail "five seeds gave the same sampled text"

# top-k 1 is greedy
k1=$("$cellm" generate -m "$model" -p "$prompt" -n 24 --temp 1 --top-k 1 --seed 3 2>/dev/null)
[ "$k1" = "$text" ] || fail "top-k 1 '$k1' != greedy '$text'"

# chat: the template is applied and generation runs
chat=$("$cellm" generate -m "$model" -p "a small dog" --chat --system "define words" -n 16 --temp 0 --verbose 2>&1)
grep -q <<<"$chat" '^prompt ids:' || fail "chat run: $chat"
# the generation loop the server shares: EOS is not printed with --ids (it ends the
# output), penalties apply at --temp 0, and a full context is "length" with a note
eos=$(tr -d '\n' <"$model/config.json" | sed -n 's/.*"eos_token_id": *\[\{0,1\}\([0-9, ]*\).*/\1/p' | tr ',' ' ')
[ -n "$eos" ] || fail "no eos_token_id in $model/config.json"
for e in $eos; do
  case ",$ids," in *",$e,"*) fail "--ids printed the EOS id $e: $ids";; esac
done
plain=$("$cellm" generate -m "$model" -p "$prompt" -n 48 --ignore-eos --temp 0 --ids 2>/dev/null)
pen=$("$cellm" generate -m "$model" -p "$prompt" -n 48 --ignore-eos --temp 0 --repeat-penalty 3 --ids 2>/dev/null)
[ "$pen" != "$plain" ] || fail "--repeat-penalty 3 at --temp 0 changed nothing: $pen"
maxc=$(sed -n 's/.*"max_position_embeddings": *\([0-9]*\).*/\1/p' "$model/config.json")
long=$(printf 'word %.0s' $(seq 1 $((maxc - 20))))
out=$("$cellm" generate -m "$model" -p "$long" -n $((maxc + 10)) --ignore-eos --temp 0 2>&1 >/dev/null) ||
  fail "a full context is an error: $out"
grep -q <<<"$out" "context is full" || fail "no note about the full context: $out"
echo "ok"
