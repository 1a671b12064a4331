#!/usr/bin/env bash
# Rebuild models/wordnet-llama and models/wordnet-llama-4bit (see tools/train_demo.py).
#
#   tools/train_demo.sh corpus   here (Debian): install wordnet-base, write .demo-data/wordnet.jsonl.gz
#                                (add "/.demo-data/" to .git/info/exclude so that it stays untracked)
#   tools/train_demo.sh gpu      on the GPU machine, from the repository root, with .demo-data carried:
#                                a quick end-to-end check with a tiny model, then the real training
#                                (TRAIN_SECONDS, default 45; TINY=0 skips the check); writes $OUT/train.log and the two model
#                                directories as $OUT/wordnet-llama*.tgz.NN (split into 15 MiB parts)
#   tools/train_demo.sh unpack DIR   here: unpack DIR/*.tgz.* into models/
set -euo pipefail
cd "$(dirname "$0")/.."
name=wordnet-llama
case "${1:-}" in
corpus)
    if [ ! -f /usr/share/wordnet/data.noun ]; then
        apt-get update -qq && apt-get install -y -qq wordnet-base
    fi
    python3 tools/train_demo.py corpus --out .demo-data/wordnet.jsonl.gz
    ;;
gpu)
    : "${OUT:?set OUT to the folder that receives the results}"
    export PYTHONUNBUFFERED=1
    nvidia-smi -L || true
    if [ "${TINY:-1}" != 0 ]; then
        python3 tools/train_demo.py train --tiny --work /tmp/demo-tiny 2>&1 | tee "$OUT/tiny.log"
    fi
    python3 tools/train_demo.py train --work /tmp/demo --seconds "${TRAIN_SECONDS:-45}" 2>&1 | tee "$OUT/train.log"
    for d in "$name" "$name-4bit"; do
        tar -C /tmp/demo -czf - "$d" | split -b 15m -d - "$OUT/$d.tgz."
    done
    ls -l "$OUT"
    ;;
unpack)
    src="${2:?usage: $0 unpack DIR}"
    mkdir -p models
    for d in "$name" "$name-4bit"; do
        rm -rf "models/$d"
        cat "$src/$d.tgz."* | tar -C models -xzf -
        chmod 644 "models/$d"/*
    done
    du -sh models/*
    ;;
*)
    sed -n '2,11p' "$0"
    exit 2
    ;;
esac
