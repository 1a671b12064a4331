#!/usr/bin/env bash
# The command line as people who know llama.cpp and mlx-lm use it: every friction point of
# issue 25 that is not about chat or downloads.  options.sh CELLM MODEL_DIR WORKDIR
set -euo pipefail
cellm=$1
model=$2
work=$3
fail() { echo "FAIL: $*" >&2; exit 1; }
rm -rf "$work"
mkdir -p "$work"
g() { "$cellm" generate -m "$model" --temp 0 -n 8 --threads 2 "$@"; }
# expects failure (status 1 or 2) and a message matching $1
refuse() {
  local want=$1; shift
  local out rc=0
  out=$("$@" 2>&1 >/dev/null) || rc=$?
  [ $rc = 2 ] || [ $rc = 1 ] || fail "$* exited $rc (expected 1 or 2): $out"
  grep -q <<<"$out" -- "$want" || fail "$*: message '$out' lacks '$want'"
}

# strict numbers: a bad number is an error naming the flag
refuse "-n expects an integer" g -p x -n abc
refuse "-n expects an integer" g -p x -n 5x
refuse "--seed expects an integer" g -p x --seed abc
refuse "--seed expects an integer" g -p x --seed -5
refuse "--top-k expects an integer" g -p x --top-k abc
refuse "--temp expects a number" g -p x --temp 0.7x
refuse "--top-p expects a number in \[0, 1\]" g -p x --top-p 2
refuse "--threads expects an integer" g -p x --threads 0
refuse "--port expects an integer" "$cellm" serve -m "$model" --port 80x
refuse "-n expects an integer" "$cellm" bench -m "$model" -n abc
refuse "--color expects auto, on or off" "$cellm" chat -m "$model" --color sometimes

# executor options: refused by name, listed by --exec-opt help
refuse "unknown option 'bogus'" g -p x --exec-opt bogus=1
refuse "option isa: value 'sse9'" g -p x --exec-opt isa=sse9
refuse "expected KEY=VALUE" g -p x --exec-opt isa
refuse "unknown option 'tc_rows'" "$cellm" verify -m "$model" --exec-options isa=avx2,tc_rows=3
# --kv-gb: the CUDA pool's budget, refused on other devices and when it is not a number
refuse "applies to --device cuda only" g -p x --kv-gb 4
refuse "--kv-gb expects an integer" g -p x --kv-gb lots
eh=$("$cellm" inspect --exec-opt help)
grep -q "isa=auto|portable|avx2|avx512" <<<"$eh" || fail "--exec-opt help lacks the cpu isa key: $eh"
grep -q "dequant=graph|load" <<<"$eh" || fail "--exec-opt help lacks the xla dequant key: $eh"
g -p x --exec-opt isa=portable --exec-options kv_ring=1 >/dev/null || fail "--exec-opt isa=portable"

# unknown options: the nearest flag; llama.cpp's -ngl points to --device cuda
refuse "did you mean --temp" g -p x --tmep 1
refuse "did you mean --system" g -p x --sytem hi
refuse "use --device cuda" g -p x -ngl 99
refuse "did you mean generate" "$cellm" genrate
refuse "unknown option '--bogus-flag'" "$cellm" serve -m "$model" --bogus-flag

# seeds: none or -1 is random (printed with --verbose), a given seed repeats
seeds=""
for i in 1 2 3; do
  s=$(g -p "the act of" --temp 1 --verbose 2>&1 >/dev/null | sed -n 's/^seed: //p')
  [ -n "$s" ] || fail "--verbose printed no seed"
  seeds="$seeds $s"
done
[ "$(echo $seeds | tr ' ' '\n' | sort -u | wc -l)" = 3 ] || fail "no --seed gave the same seed: $seeds"
s=$(g -p x --seed -1 --verbose 2>&1 >/dev/null | sed -n 's/^seed: //p')
[ "$s" != 18446744073709551615 ] && [ -n "$s" ] || fail "--seed -1 gave seed '$s'"
s=$(g -p x --seed 42 --verbose 2>&1 >/dev/null | sed -n 's/^seed: //p')
[ "$s" = 42 ] || fail "--seed 42 reported '$s'"
a=$(g -p "the act of" --temp 1 -s 7 -n 16 2>/dev/null)
b=$(g -p "the act of" --temp 1 --seed 7 -n 16 2>/dev/null)
[ "$a" = "$b" ] || fail "-s 7 '$a' != --seed 7 '$b'"

# llama.cpp's aliases mean the same as cellm's spellings
x=$(g --raw -p "the act of" -n 12 2>/dev/null)
y=$("$cellm" generate --model "$model" --temperature 0 --n-predict 12 -t 2 --raw --prompt "the act of" 2>/dev/null)
[ "$x" = "$y" ] || fail "aliases: '$x' vs '$y'"

# prompts from anywhere: -p -, a piped stdin, -f FILE (one trailing newline dropped)
printf 'the act of\n' > "$work/prompt.txt"
p1=$(echo "the act of" | g --raw -p - 2>/dev/null)
p2=$(echo "the act of" | g --raw 2>/dev/null)
p3=$(g --raw -f "$work/prompt.txt" 2>/dev/null)
p4=$(g --raw -p "the act of" 2>/dev/null)
[ "$p1" = "$p4" ] && [ "$p2" = "$p4" ] && [ "$p3" = "$p4" ] || fail "prompt sources differ: '$p1' '$p2' '$p3' '$p4'"
refuse "the prompt is empty" g < /dev/null
refuse "give one of" g -p x -f "$work/prompt.txt"
refuse "prompt.nope" g -f "$work/prompt.nope"

# the chat template by default for a model that has one; --raw opts out; --system implies it
ids_default=$(g -p "a small dog" --verbose 2>&1 >/dev/null | sed -n 's/^prompt ids: //p')
ids_chat=$(g -p "a small dog" --chat --verbose 2>&1 >/dev/null | sed -n 's/^prompt ids: //p')
ids_raw=$(g -p "a small dog" --raw --verbose 2>&1 >/dev/null | sed -n 's/^prompt ids: //p')
want_raw=$("$cellm" tokenize -m "$model" "a small dog")
[ "$ids_default" = "$ids_chat" ] || fail "default '$ids_default' is not the template's '$ids_chat'"
[ "$ids_raw" = "$want_raw" ] || fail "--raw ids '$ids_raw' != tokenize '$want_raw'"
ids_sys=$(g -p "a small dog" --system "define words" --verbose 2>&1 >/dev/null | sed -n 's/^prompt ids: //p')
sys_tok=$("$cellm" tokenize -m "$model" --no-special "<|system|>")
case ",$ids_sys," in *",$sys_tok,"*) ;; *) fail "--system did not reach the template: $ids_sys";; esac
ids_sys2=$(g -p "a small dog" -sys "define words" --verbose 2>&1 >/dev/null | sed -n 's/^prompt ids: //p')
ids_sys3=$(g -p "a small dog" --system-prompt "define words" --verbose 2>&1 >/dev/null | sed -n 's/^prompt ids: //p')
[ "$ids_sys" = "$ids_sys2" ] && [ "$ids_sys" = "$ids_sys3" ] || fail "-sys/--system-prompt differ from --system"
refuse "cannot go with --system" g -p x --raw --system hi

# --chat-template FILE replaces the checkpoint's template (generate; chat and serve parse it)
printf '%s' '{{ bos_token }}{% for m in messages %}Q: {{ m.content }}{% endfor %}A:' > "$work/t.jinja"
ids_t=$(g -p "a small dog" --chat-template "$work/t.jinja" --verbose 2>&1 >/dev/null | sed -n 's/^prompt ids: //p')
want_t=$("$cellm" tokenize -m "$model" "Q: a small dogA:")
[ "$ids_t" = "$want_t" ] || fail "--chat-template ids '$ids_t' != '$want_t'"
refuse "t.nope" g -p x --chat-template "$work/t.nope"
out=$(printf 'a small dog\n' | "$cellm" chat -m "$model" --chat-template "$work/t.jinja" --temp 0 -n 4 --threads 2 2>&1) ||
  fail "chat --chat-template: $out"

# one id format in and out: tokenize prints commas; --decode and --prompt-ids take commas or spaces
ids=$("$cellm" tokenize -m "$model" "the act of")
case "$ids" in *" "*) fail "tokenize printed spaces: $ids";; *,*) ;; *) fail "tokenize: $ids";; esac
d1=$("$cellm" tokenize -m "$model" --decode "$ids")
d2=$("$cellm" tokenize -m "$model" --decode "$(echo "$ids" | tr , ' ')")
d3=$("$cellm" tokenize -m "$model" --decode "$(echo "$ids" | sed 's/,/, /g')")
[ "$d1" = "$d2" ] && [ "$d1" = "$d3" ] || fail "--decode: '$d1' '$d2' '$d3'"
o1=$(g --prompt-ids "$ids" --ids 2>/dev/null)
o2=$(g --prompt-ids "$(echo "$ids" | tr , ' ')" --ids 2>/dev/null)
[ "$o1" = "$o2" ] || fail "--prompt-ids with spaces: '$o2' vs '$o1'"
"$cellm" tokenize -m "$model" --decode "$o1" >/dev/null || fail "--decode rejects generate --ids output '$o1'"

# -c/--ctx-size: a context that fills up ends the output with "length" and a note, not
# an error; a prompt that leaves no room is refused naming -c
out=$(g --raw -p "the act of" -c 8 -n 100 --ignore-eos --ids 2>"$work/ctx.err") ||
  fail "-c 8: $(cat "$work/ctx.err")"
grep -q "context is full.*-c 8" "$work/ctx.err" || fail "-c 8: no note: $(cat "$work/ctx.err")"
np=$("$cellm" tokenize -m "$model" "the act of" | tr , '\n' | wc -l)
[ "$(echo "$out" | tr , '\n' | wc -l)" = $((8 - np)) ] || fail "-c 8 generated '$out' ($np prompt ids)"
out2=$(g --raw -p "the act of" --ctx-size 8 -n 100 --ignore-eos --ids 2>/dev/null)
[ "$out2" = "$out" ] || fail "--ctx-size 8 '$out2' != -c 8 '$out'"
refuse "context holds 3 (-c)" g --raw -p "the act of" -c 3
refuse "-c expects an integer" g -p x -c 12k

# useful messages for a missing directory, a GGUF file, a single .safetensors file
refuse "no such directory" g -m "$work/nonexistent" -p x
printf 'GGUF\003\000\000\000' > "$work/model.gguf"
refuse "is a GGUF file" g -m "$work/model.gguf" -p x
refuse "single .safetensors file.*-m $model" g -m "$model/model.safetensors" -p x

# --version: version, git revision and build options
v=$("$cellm" --version)
grep -q <<<"$v" "^cellm [0-9]" || fail "--version: $v"
grep -q <<<"$v" "git " || fail "--version has no revision: $v"
grep -q <<<"$v" "CUDA: " && grep -q <<<"$v" "XLA: " && grep -q <<<"$v" "CPU kernels: " ||
  fail "--version lacks the build options: $v"

# --help lists every option each command accepts, aliases included
hg=$("$cellm" generate --help)
for f in -m --model --download --device -t --threads --pjrt-plugin -p --prompt -f --file \
         --prompt-ids -n --n-predict --max-tokens --ids --chat --raw --system -sys \
         --system-prompt --chat-template --no-think --stop --ignore-eos --min-tokens -c \
         --ctx-size -i --interactive -v \
         --verbose --temp --temperature --top-k --top-p --min-p --repeat-penalty \
         --frequency-penalty --presence-penalty -s --seed -h --help; do
  grep -q -- "$f\b" <<<"$hg" || fail "generate --help lacks $f"
done
hc=$("$cellm" chat --help)
for f in --system -sys --system-prompt --chat-template -p --prompt -n --n-predict --max-tokens -c \
         --ctx-size --no-think --color --ignore-eos --cache-ram --cache-gpu --cache-block -v \
         --verbose --temp --top-k --seed -m --threads /clear /save /load /system /set; do
  grep -q -- "$f\b" <<<"$hc" || fail "chat --help lacks $f"
done
if "$cellm" serve --help >/dev/null 2>&1; then
  hs=$("$cellm" serve --help)
  for f in --host --port --parallel -np --queue --ctx-size -c --api-key --name --chat-template --model -t --threads --device \
           --cache-ram --cache-gpu --cache-block --cors-origin --max-body --quiet --http-threads \
           --max-connections --per-client --request-timeout --idle-timeout --prep-threads \
           --prep-queue --shutdown-timeout --allowed-hosts -h --help; do
    grep -q -- "$f\b" <<<"$hs" || fail "serve --help lacks $f"
  done
fi
for cmd in "tokenize -m --model --download --no-special --pieces --decode --skip-special" \
           "inspect -m --model --download --device --threads" "verify --oracle -m --download" \
           "bench -p -n -r -m --model --download --device -t --threads" "pull -q --quiet"; do
  set -- $cmd
  h=$("$cellm" "$1" --help)
  c=$1
  shift
  for f in "$@" -h --help; do
    grep -q <<<"$h" -- "$f\b" || fail "$c --help lacks $f"
  done
done

# chat's multi-line input: a trailing backslash continues a line, a """ block is one turn
printf 'first \\\nsecond\n"""\nthird\nfourth\n"""\n/save %s\n' "$work/ml.json" |
  "$cellm" chat -m "$model" --temp 0 -n 4 --threads 2 >/dev/null 2>&1 || fail "chat multi-line input"
grep -qF '"first \nsecond"' "$work/ml.json" && grep -qF '"third\nfourth"' "$work/ml.json" &&
  [ "$(grep -c '"role":' "$work/ml.json")" = 4 ] || fail "multi-line turns saved as $(cat "$work/ml.json")"

# generate -i is the chat: piped turns get replies
out=$(printf 'What does "dog" mean?\n' | g -i 2>&1) || fail "generate -i: $out"
grep -q <<<"$out" "reply: [0-9]* tokens" || fail "generate -i: no reply stats: $out"
echo ok
