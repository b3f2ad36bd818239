#!/usr/bin/env bash
# `mopt copy`: a read + write round trip keeps every operator, tensor,
# quantization parameter and constant statistic (compared through
# `mopt inspect --json`), and a failed write leaves nothing behind.
# Usage: tests/cli/test_cli_copy.sh path/to/mopt
set -u
MOPT=$(realpath "${1:?usage: $0 path/to/mopt}")
cd "$(dirname "$0")/../.."
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
PY=python3

models=(tests/data/sparse_mlp.tflite tests/data/sparse_mlp_int8.tflite tests/data/two_io.tflite)
for m in cnn dscnn resnet mlp mobilenetv2; do
  if [ -f "tests/fixtures/$m.tflite" ]; then models+=("tests/fixtures/$m.tflite")
  else echo "skip: tests/fixtures/$m.tflite missing"; fi
done

for m in "${models[@]}"; do
  out="$T/$(basename "$m")"
  if ! "$MOPT" copy "$m" -o "$out" 2>"$T/err"; then bad "copy $m"; cat "$T/err"; continue; fi
  ok "copy $m"
  "$MOPT" inspect "$m" --json >"$T/a.json" 2>/dev/null &&
    "$MOPT" inspect "$out" --json >"$T/b.json" 2>/dev/null || { bad "  inspect after copy"; continue; }
  if "$PY" - "$T/a.json" "$T/b.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for k in ("param_count", "inputs", "outputs", "operators", "tensors", "arena_bytes"):
    if a[k] != b[k]:
        sys.exit(f"'{k}' differs after the round trip")
EOF
  then ok "  same graph after the round trip"; else bad "  round trip changed the graph"; fi
done

"$MOPT" copy tests/data/two_io.tflite -o "$T/no/such/dir/x.tflite" 2>"$T/err"
rc=$?
if [ $rc = 2 ] && grep -q "^mopt: .*no/such/dir/x.tflite" "$T/err"; then ok "copy to a missing folder -> 2"; else
  bad "copy to a missing folder -> $rc"; cat "$T/err"; fi
if ls "$T"/*.tmp.* >/dev/null 2>&1; then bad "temporary files left behind"; else ok "no temporary files left"; fi

echo
if [ "$fails" = 0 ]; then echo "test_cli_copy: all passed"; else echo "test_cli_copy: $fails failed"; exit 1; fi
