#!/usr/bin/env bash
# Models by name against a local fake hub (tests/cli/fake_hub.py) and fake caches; never
# the network.  pull.sh CELLM MODEL_DIR WORKDIR
set -euo pipefail
cellm=$1
model=$2
work=$3
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
rm -rf "$work"
mkdir -p "$work/repos/org"
unset HF_TOKEN HF_HOME HF_HUB_CACHE HF_ENDPOINT XDG_CACHE_HOME
export HOME=$work/home # no token file of the user's, no cache of the user's

# repositories: the shipped model (plus files a checkpoint does not need), a gated copy,
# and one whose reported sha256 is wrong
files="config.json generation_config.json tokenizer.json tokenizer_config.json special_tokens_map.json model.safetensors"
for r in tiny tiny2 tiny3 gated badsha; do
  mkdir -p "$work/repos/org/$r"
  for f in $files; do ln -s "$(cd "$model" && pwd)/$f" "$work/repos/org/$r/$f"; done
  echo "# a model card" > "$work/repos/org/$r/README.md"
  cp "$model/oracle.safetensors" "$work/repos/org/$r/oracle.safetensors"
done
echo '{"cut": {"model.safetensors": 100000}}' > "$work/repos/org/tiny/.hub.json"
echo '{"gated": true, "token": "sekrit"}' > "$work/repos/org/gated/.hub.json"
echo '{"lie_sha": ["model.safetensors"]}' > "$work/repos/org/badsha/.hub.json"

python3 "$here/fake_hub.py" "$work/repos" "$work/port" "$work/log" &
hub=$!
trap 'kill $hub 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || fail "the fake hub did not start"
export HF_ENDPOINT=http://127.0.0.1:$(cat "$work/port")
export HF_HUB_CACHE=$work/cache

want=$("$cellm" generate -m "$model" --raw -p "the act of" -n 8 --temp 0 2>/dev/null)

# not in the cache: the message says how to get it
if out=$("$cellm" generate -m org/tiny -p x 2>&1); then fail "-m org/tiny before pull: $out"; fi
grep -q <<<"$out" "cellm pull org/tiny" || fail "no pull advice: $out"

# pull: an interrupted transfer is resumed with a Range request; only checkpoint files come
"$cellm" pull org/tiny > "$work/pull.out" 2> "$work/pull.err" || fail "pull: $(cat "$work/pull.err")"
snap=$(cat "$work/pull.out")
[ "$snap" = "$work/cache/models--org--tiny/snapshots/0123456789abcdef0123456789abcdef01234567" ] ||
  fail "pull printed '$snap'"
grep -q "resolve/.*/model.safetensors bytes=100000- " "$work/log" || fail "no resumed request: $(cat "$work/log")"
cmp -s "$snap/model.safetensors" "$model/model.safetensors" || fail "weights differ after the resume"
[ -L "$snap/config.json" ] || fail "the snapshot does not link into blobs/"
[ ! -e "$snap/README.md" ] && [ ! -e "$snap/oracle.safetensors" ] || fail "files a checkpoint does not need were pulled"
[ "$(cat "$work/cache/models--org--tiny/refs/main")" = 0123456789abcdef0123456789abcdef01234567 ] || fail "refs/main"
got=$("$cellm" generate -m org/tiny --raw -p "the act of" -n 8 --temp 0 2>/dev/null)
[ "$got" = "$want" ] || fail "-m org/tiny gave '$got', the directory '$want'"
echo "pull with a resumed transfer: ok"

# a second pull finds everything in place
"$cellm" pull org/tiny >/dev/null 2>"$work/err" || fail "second pull: $(cat "$work/err")"
grep -q "already in the cache" "$work/err" || fail "second pull re-downloaded: $(cat "$work/err")"

# a transfer left by an earlier run is resumed from where it stopped
sha=$(sha256sum "$model/model.safetensors" | cut -d' ' -f1)
mkdir -p "$work/cache/models--org--tiny2/blobs"
head -c 12345 "$model/model.safetensors" > "$work/cache/models--org--tiny2/blobs/$sha.incomplete"
"$cellm" pull -q org/tiny2 >/dev/null 2>"$work/err" || fail "pull tiny2: $(cat "$work/err")"
grep -q "org/tiny2/resolve/.*/model.safetensors bytes=12345- " "$work/log" || fail "no resume from the .incomplete file"
cmp -s "$work/cache/models--org--tiny2/blobs/$sha" "$model/model.safetensors" || fail "resumed blob differs"
echo "resume from an earlier run: ok"

# a sha256 mismatch names the file and leaves no half file
if "$cellm" pull org/badsha >/dev/null 2>"$work/err"; then fail "badsha pulled"; fi
grep -q "model.safetensors: sha256 mismatch" "$work/err" || fail "mismatch message: $(cat "$work/err")"
left=$(find "$work/cache/models--org--badsha" -name "*.incomplete" -o -type f -size +1M | wc -l)
[ "$left" = 0 ] || fail "a half file was left: $(find "$work/cache/models--org--badsha")"
[ ! -e "$work/cache/models--org--badsha/snapshots/0123456789abcdef0123456789abcdef01234567/model.safetensors" ] ||
  fail "the bad file was linked"
echo "sha256 mismatch: ok"

# a gated repository without a token: the hub's message, and what to do
if "$cellm" pull org/gated >/dev/null 2>"$work/err"; then fail "gated pulled without a token"; fi
grep -q "Access to model org/gated is restricted" "$work/err" || fail "gated message: $(cat "$work/err")"
grep -q "HF_TOKEN" "$work/err" || fail "no HF_TOKEN advice: $(cat "$work/err")"
HF_TOKEN=sekrit "$cellm" pull -q org/gated >/dev/null 2>"$work/err" || fail "gated with token: $(cat "$work/err")"
grep -q "org/gated/resolve/.* Bearer sekrit" "$work/log" || fail "HF_TOKEN was not sent"
echo "gated: ok"

# HF_HOME (when HF_HUB_CACHE is unset) holds the cache in HF_HOME/hub; --download pulls
# what is missing before loading
unset HF_HUB_CACHE
export HF_HOME=$work/hfhome
got=$("$cellm" generate -m org/tiny3 --download --raw -p "the act of" -n 8 --temp 0 2>"$work/err") ||
  fail "--download: $(cat "$work/err")"
[ "$got" = "$want" ] || fail "--download gave '$got'"
[ -d "$work/hfhome/hub/models--org--tiny3/snapshots" ] || fail "HF_HOME not honoured"
unset HF_HOME

# default cache: ~/.cache/huggingface/hub; a cache tree made by hand, with a revision
fake=$work/home/.cache/huggingface/hub/models--acme--m
mkdir -p "$fake/refs" "$fake/snapshots/abc123"
echo abc123 > "$fake/refs/main"
for f in $files; do ln -s "$(cd "$model" && pwd)/$f" "$fake/snapshots/abc123/$f"; done
for m in acme/m acme/m@main acme/m@abc123; do
  got=$("$cellm" generate -m $m --raw -p "the act of" -n 8 --temp 0 2>"$work/err") || fail "-m $m: $(cat "$work/err")"
  [ "$got" = "$want" ] || fail "-m $m gave '$got'"
done
if "$cellm" generate -m acme/m@nope -p x 2>/dev/null; then fail "acme/m@nope resolved"; fi
echo "cache resolution: ok"
echo ok
