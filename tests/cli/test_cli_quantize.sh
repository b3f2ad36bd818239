#!/usr/bin/env bash
# `mopt quantize`: every mode writes a model mopt can load, validate and run
# (checked with `mopt inspect` and `mopt eval` on the committed
# Fashion-MNIST subset); integer I/O, exclusions, reports, bias correction
# and the fallback search work end to end; usage errors exit 1 and bad input
# exits 2, with one "mopt: " line on stderr and no output file.
# Usage: tests/cli/test_cli_quantize.sh path/to/mopt
set -u
MOPT=$(realpath "${1:?usage: $0 path/to/mopt}")
cd "$(dirname "$0")/../.."
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
DATA=tests/data/fashion-mnist-subset
CNN=tests/fixtures/cnn.tflite

if ! "$MOPT" help quantize >/dev/null 2>&1; then
  echo "FAIL: 'mopt quantize' is not registered in this binary"
  exit 1
fi

# Every mode: the output validates (inspect) and keeps the float accuracy
# on the 500-image subset within 2 points.
float_acc=$("$MOPT" eval "$CNN" --data "$DATA" --json | sed -n 's/.*"accuracy": *\([0-9.]*\).*/\1/p')
for mode in float16 dynamic int8 int16x8; do
  out="$T/cnn_$mode.tflite"
  calib=()
  case $mode in int8|int16x8) calib=(--calib "$DATA" --calib-samples 200) ;; esac
  if ! "$MOPT" quantize "$CNN" --mode $mode "${calib[@]}" -o "$out" >"$T/out" 2>"$T/err"; then
    bad "quantize --mode $mode"; cat "$T/err"; continue
  fi
  grep -q "$mode" "$T/out" && ok "quantize --mode $mode" || bad "summary of --mode $mode"
  "$MOPT" inspect "$out" >/dev/null 2>&1 && ok "  inspect $mode" || bad "  inspect $mode"
  acc=$("$MOPT" eval "$out" --data "$DATA" --json 2>/dev/null | sed -n 's/.*"accuracy": *\([0-9.]*\).*/\1/p')
  if [ -n "$acc" ] && awk -v a="$acc" -v f="$float_acc" 'BEGIN{exit !(a >= f - 0.02)}'; then
    ok "  eval $mode: $acc (float $float_acc)"
  else
    bad "  eval $mode: '$acc' (float $float_acc)"
  fi
done

# Integer I/O, per-tensor weights, a calibration method, an exclusion.
"$MOPT" quantize "$CNN" --mode int8 --io int8 --per-tensor --calib "$DATA" --calib-samples 50 \
  --calib-method mse --exclude SOFTMAX -o "$T/io.tflite" --json >"$T/io.json" 2>"$T/err" &&
  grep -q '"calib_method": "mse"' "$T/io.json" && ok "int8 io, per-tensor, mse, --exclude" ||
  { bad "int8 io, per-tensor, mse, --exclude"; cat "$T/err"; }
"$MOPT" inspect "$T/io.tflite" --json >"$T/io_inspect.json" 2>/dev/null &&
  python3 - "$T/io_inspect.json" <<'EOF' && ok "  int8 input, float SOFTMAX" || bad "  int8 input, float SOFTMAX"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["tensors"][m["inputs"][0]]["dtype"] == "int8", m["inputs"]
sm = [o for o in m["operators"] if o["op"] == "SOFTMAX"][0]
assert m["tensors"][sm["outputs"][0]]["dtype"] == "float32"
EOF

# Report (JSON and HTML) with bias correction.
if "$MOPT" quantize "$CNN" --mode int8 --calib "$DATA" --calib-samples 100 --bias-correction \
     --report "$T/r.json" -o "$T/bc.tflite" >"$T/out" 2>"$T/err" &&
   python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert len(r['layers'])==9 and r['bias_correction']['operators']==4" "$T/r.json"; then
  ok "--report JSON with --bias-correction"
else
  bad "--report JSON with --bias-correction"; cat "$T/err"
fi
"$MOPT" quantize "$CNN" --mode int8 --calib "$DATA" --calib-samples 50 --report "$T/r.html" \
  -o "$T/h.tflite" >/dev/null 2>&1 && grep -q "<svg" "$T/r.html" && ok "--report HTML" || bad "--report HTML"

# Fallback: a generous budget needs no promotion and says so.
"$MOPT" quantize "$CNN" --mode int8 --calib "$DATA" --calib-samples 50 --fallback auto \
  --max-drop 5 --eval "$DATA" --eval-samples 100 -o "$T/fb.tflite" >"$T/out" 2>"$T/err" &&
  grep -q "fallback: none needed" "$T/out" && ok "--fallback auto (no promotion needed)" ||
  { bad "--fallback auto"; cat "$T/out" "$T/err"; }

# Errors: exit code, one line, no output file left behind.
check() { # expected-rc description args...
  local want=$1 what=$2; shift 2
  rm -f "$T/e.tflite"
  "$MOPT" quantize "$@" -o "$T/e.tflite" >/dev/null 2>"$T/err"
  local rc=$?
  if [ $rc = "$want" ] && [ "$(wc -l <"$T/err")" = 1 ] && grep -q '^mopt: ' "$T/err" && [ ! -e "$T/e.tflite" ]; then
    ok "$what -> $rc"
  else
    bad "$what: rc $rc (want $want)"; cat "$T/err"
  fi
}
check 1 "no --mode" "$CNN"
check 1 "unknown mode" "$CNN" --mode int4
check 1 "int8 without --calib" "$CNN" --mode int8
check 1 "--calib with float16" "$CNN" --mode float16 --calib "$DATA"
check 1 "--io int16 with int8" "$CNN" --mode int8 --io int16 --calib "$DATA"
check 1 "--fallback without --eval" "$CNN" --mode int8 --calib "$DATA" --fallback auto --max-drop 1
check 1 "unknown --exclude" "$CNN" --mode int8 --calib "$DATA" --exclude NOPE
check 2 "wrong-shape calibration" tests/fixtures/mobilenetv2.tflite --mode int8 --calib "$DATA"
check 2 "HARD_SWISH in int16x8" tests/fixtures/mlp.tflite --mode int16x8 --calib "$DATA"
check 2 "missing calibration data" "$CNN" --mode int8 --calib "$T/none"
check 2 "already quantized" tests/data/sparse_mlp_int8.tflite --mode dynamic

[ $fails = 0 ] && echo "all ok" || echo "$fails failure(s)"
exit $((fails > 0))
