#!/usr/bin/env bash
# `mopt bench`: JSON fields and their order (min <= median <= max, min <= mean
# <= max), the one-line human output, options and errors.
# Usage: tests/cli/test_cli_bench.sh path/to/mopt
set -u
MOPT=$(realpath "${1:?usage: $0 path/to/mopt}")
cd "$(dirname "$0")/../.."
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
PY=python3

expect() {
  local want=$1; shift
  "$MOPT" "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ "$rc" = "$want" ]; then ok "mopt $* -> $rc"; else
    bad "mopt $* -> $rc, want $want"; sed 's/^/    /' "$T/err" | head -5; fi
}

models=(tests/data/sparse_mlp.tflite tests/data/two_io.tflite)
for m in cnn dscnn resnet mlp mobilenetv2; do
  if [ -f "tests/fixtures/$m.tflite" ]; then models+=("tests/fixtures/$m.tflite")
  else echo "skip: tests/fixtures/$m.tflite missing"; fi
done

for m in "${models[@]}"; do
  expect 0 bench "$m" --runs 5 --warmup 1 --threads 1 --json
  if "$PY" -c '
import json, sys
r = json.load(sys.stdin)
assert r["runs"] == 5 and r["warmup"] == 1 and r["threads"] == 1, r
assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"], r
assert r["min_ms"] <= r["mean_ms"] <= r["max_ms"], r
assert isinstance(r["arena_bytes"], int) and r["arena_bytes"] >= 0, r
' <"$T/out"; then ok "  JSON: min <= median <= max, mean in range"; else bad "  JSON"; cat "$T/out"; fi
done

M=${models[0]}
expect 0 bench "$M" --runs 4 -w 0 -t 2
if [ "$(wc -l <"$T/out")" = 1 ] && grep -qE '4 runs \(0 warm-up, threads 2\)  min [0-9.]+ ms  median [0-9.]+ ms  mean [0-9.]+ ms  max [0-9.]+ ms$' "$T/out"; then
  ok "  one result line"; else bad "  human output"; cat "$T/out"; fi
if [ -s "$T/err" ]; then bad "  stderr not empty when not a terminal"; else ok "  silent stderr"; fi
expect 0 bench "$M" --runs 2 --seed 42
expect 1 bench "$M" --warmup -1
expect 1 bench "$M" --threads 0

echo
if [ "$fails" = 0 ]; then echo "test_cli_bench: all passed"; else echo "test_cli_bench: $fails failed"; exit 1; fi
