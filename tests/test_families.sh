#!/usr/bin/env bash
# test_families.sh CELLM README: the README's family table is what `cellm inspect
# --families` prints (one source of truth: the family table in src/model/family.c).
set -u
cellm=$1
readme=$2
want=$("$cellm" inspect --families) || { echo "FAIL: cellm inspect --families exited non-zero"; exit 1; }
got=$(sed -n '/<!-- families: begin -->/,/<!-- families: end -->/p' "$readme" | sed '1d;$d')
if [ -z "$got" ]; then
  echo "FAIL: $readme has no <!-- families: begin --> ... <!-- families: end --> block"
  exit 1
fi
if [ "$got" != "$want" ]; then
  echo "FAIL: the README's family table differs from cellm inspect --families:"
  diff <(echo "$got") <(echo "$want")
  exit 1
fi
# every listed model type is accepted by the config parser's family lookup
n=$(grep -c '^| `' <<<"$want")
[ "$n" -ge 9 ] || { echo "FAIL: only $n families listed"; exit 1; }
echo "ok: $n families, README and program agree"
