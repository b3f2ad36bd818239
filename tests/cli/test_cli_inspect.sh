#!/usr/bin/env bash
# `mopt inspect` on the fixtures and on the small models in tests/data:
# human output, JSON validity and the JSON values against independent sources
# (tests/fixtures/fixtures.json from the converter, Python's zlib, and - when
# the venv with numpy + ai-edge-litert exists - the constant tensors as LiteRT
# reads them).
# Usage: tests/cli/test_cli_inspect.sh path/to/mopt
set -u
MOPT=$(realpath "${1:?usage: $0 path/to/mopt}")
cd "$(dirname "$0")/../.."
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
PY=python3
VPY="${MOPT_VENV:-$PWD/.venv}/bin/python"

models=()
for m in cnn dscnn resnet mlp mobilenetv2; do
  if [ -f "tests/fixtures/$m.tflite" ]; then models+=("tests/fixtures/$m.tflite")
  else echo "skip: tests/fixtures/$m.tflite missing"; fi
done
models+=(tests/data/sparse_mlp.tflite tests/data/sparse_mlp_int8.tflite tests/data/two_io.tflite)

for m in "${models[@]}"; do
  name=$(basename "$m" .tflite)
  if "$MOPT" inspect "$m" >"$T/h.txt" 2>"$T/err"; then
    ok "inspect $m"
    n_ops=$(grep -oE '^operators \([0-9]+\)' "$T/h.txt" | grep -oE '[0-9]+')
    grep -q '^  size: [0-9]* bytes' "$T/h.txt" && grep -q '^  arena: ' "$T/h.txt" &&
      [ -n "$n_ops" ] && ok "  human output has size, arena, operators ($n_ops)" ||
      bad "  human output incomplete"
  else
    bad "inspect $m -> $?"; cat "$T/err"; continue
  fi
  if ! "$MOPT" inspect "$m" --json >"$T/j.json" 2>"$T/err"; then
    bad "inspect --json $m"; cat "$T/err"; continue
  fi
  if "$PY" -c 'import json,sys; json.load(sys.stdin)' <"$T/j.json"; then ok "  --json parses"; else
    bad "  --json is not valid JSON"; continue; fi

  # Structural checks and checks against independent sources.
  if "$PY" - "$m" "$name" "$T/j.json" "$n_ops" <<'EOF'
import json, math, os, sys, zlib
path, name, jpath, n_ops = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
d = json.load(open(jpath))
errs = []
def check(cond, msg):
    if not cond: errs.append(msg)
data = open(path, "rb").read()
check(d["size_bytes"] == len(data), f"size_bytes {d['size_bytes']} != {len(data)}")
gz = len(zlib.compress(data, 9))
check(d["gzip_bytes"] is not None and abs(d["gzip_bytes"] - gz) <= max(16, gz // 100),
      f"gzip_bytes {d['gzip_bytes']} far from zlib level 9 ({gz})")
check(d["arena_bytes"] is None or (isinstance(d["arena_bytes"], int) and d["arena_bytes"] >= 0),
      "arena_bytes must be a non-negative int or null")
check(len(d["operators"]) == n_ops, "JSON and text disagree on the operator count")
nt = len(d["tensors"])
params = 0
for i, t in enumerate(d["tensors"]):
    check(t["index"] == i, f"tensor {i}: index {t['index']}")
    for key in ("name", "shape", "dtype", "is_constant", "sparsity", "unique_values", "quantization"):
        check(key in t, f"tensor {i}: no '{key}'")
    numel = math.prod(t["shape"])
    if t["is_constant"]:
        params += numel
        check(t["sparsity"] is not None and 0.0 <= t["sparsity"] <= 1.0, f"tensor {i}: sparsity {t['sparsity']}")
        check(t["unique_values"] is not None and 1 <= t["unique_values"] <= max(1, numel),
              f"tensor {i}: unique_values {t['unique_values']} (numel {numel})")
    else:
        check(t["sparsity"] is None and t["unique_values"] is None, f"tensor {i}: stats on an activation")
    q = t["quantization"]
    if q is not None:
        check(len(q["scale"]) == len(q["zero_point"]) >= 1, f"tensor {i}: scale/zero_point lengths")
        if len(q["scale"]) > 1:
            check(0 <= q["quantized_dimension"] < len(t["shape"]) and
                  t["shape"][q["quantized_dimension"]] == len(q["scale"]), f"tensor {i}: quantized_dimension")
check(d["param_count"] == params, f"param_count {d['param_count']} != {params}")
for k, op in enumerate(d["operators"]):
    check(op["index"] == k and isinstance(op["op"], str), f"operator {k}: index/op")
    for x in op["inputs"] + op["outputs"]:
        check(-1 <= x < nt, f"operator {k}: tensor index {x} out of range")
# The converter's own record of the fixtures.
fx = json.load(open("tests/fixtures/fixtures.json"))["fixtures"] if os.path.exists("tests/fixtures/fixtures.json") else {}
if path.startswith("tests/fixtures/") and name in fx:
    f = fx[name]
    check(f["bytes"] == len(data), f"{len(data)} bytes, fixtures.json says {f['bytes']}")
    check(len(d["operators"]) == f["num_ops"], f"{len(d['operators'])} operators, fixtures.json says {f['num_ops']}")
    check(sorted({o["op"] for o in d["operators"]}) == sorted(f["ops"]), "operator set differs from fixtures.json")
    tin = d["tensors"][d["inputs"][0]]
    tout = d["tensors"][d["outputs"][0]]
    check(tin["shape"] == f["input_shape"], f"input shape {tin['shape']} != {f['input_shape']}")
    check(tout["shape"] == f["output_shape"], f"output shape {tout['shape']} != {f['output_shape']}")
if name == "sparse_mlp":
    # make_cli_models.py zeroes exactly every other input column of FC 1.
    w = [t for t in d["tensors"] if t["shape"] == [16, 784]]
    check(len(w) == 1 and w[0]["sparsity"] == 0.5, f"FC weights sparsity {w and w[0]['sparsity']}, want 0.5")
if name == "sparse_mlp_int8":
    tin = d["tensors"][d["inputs"][0]]
    check(tin["dtype"] == "int8" and tin["quantization"] is not None and len(tin["quantization"]["scale"]) == 1,
          "int8 input with per-tensor quantization expected")
    w = [t for t in d["tensors"] if t["shape"] == [16, 784]]
    check(len(w) == 1 and w[0]["sparsity"] >= 0.5 and w[0]["quantization"]["quantized_dimension"] == 0
          and len(w[0]["quantization"]["scale"]) == 16, "per-channel int8 FC weights with >= 50% zero points")
for e in errs:
    print("    " + e)
sys.exit(1 if errs else 0)
EOF
  then ok "  JSON fields consistent and match independent sources"; else bad "  JSON checks ($m)"; fi

  # Constant tensors as LiteRT reads them: sparsity, distinct values, quantization.
  if [ -x "$VPY" ] && "$VPY" -c 'import numpy, ai_edge_litert' 2>/dev/null; then
    if "$VPY" - "$m" "$T/j.json" <<'EOF'
import json, sys
import numpy as np
from ai_edge_litert import interpreter as litert
path, jpath = sys.argv[1], sys.argv[2]
d = json.load(open(jpath))
it = litert.Interpreter(model_path=path, experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
it.allocate_tensors()
errs = []
details = {t["index"]: t for t in it.get_tensor_details()}
for t in d["tensors"]:
    if not t["is_constant"]:
        continue
    lt = details.get(t["index"])
    if lt is None:
        errs.append(f"tensor {t['index']}: unknown to LiteRT"); continue
    v = it.get_tensor(t["index"])
    if list(v.shape) != t["shape"]:
        errs.append(f"tensor {t['index']}: shape {list(v.shape)} vs {t['shape']}"); continue
    qp = lt["quantization_parameters"]
    zps = np.asarray(qp["zero_points"], dtype=np.int64)
    if v.dtype.kind == "f":
        zeros = np.count_nonzero(v == 0)
        uniq = len(np.unique(np.where(v == 0, 0, v)))
    else:
        if zps.size > 1:
            shape = [1] * v.ndim
            shape[qp["quantized_dimension"]] = -1
            zeros = np.count_nonzero(v.astype(np.int64) == zps.reshape(shape))
        else:
            zeros = np.count_nonzero(v.astype(np.int64) == (zps[0] if zps.size else 0))
        uniq = len(np.unique(v))
    sp = zeros / max(1, v.size)
    if abs(sp - t["sparsity"]) > 1e-9 or uniq != t["unique_values"]:
        errs.append(f"tensor {t['index']}: mopt sparsity {t['sparsity']} unique {t['unique_values']}, LiteRT {sp} {uniq}")
    q = t["quantization"]
    if zps.size:
        if q is None or not np.allclose(q["scale"], qp["scales"], rtol=1e-6) or q["zero_point"] != zps.tolist():
            errs.append(f"tensor {t['index']}: quantization differs from LiteRT's")
    elif q is not None:
        errs.append(f"tensor {t['index']}: LiteRT sees no quantization")
for e in errs[:10]:
    print("    " + e)
sys.exit(1 if errs else 0)
EOF
    then ok "  constant tensors agree with LiteRT (sparsity, unique values, quantization)"
    else bad "  constant tensors differ from LiteRT ($m)"; fi
  else
    echo "skip: $VPY with numpy + ai_edge_litert not found (set MOPT_VENV); LiteRT cross-check skipped"
  fi
done

# Hostile tensor names (quote, backslash, control characters, invalid UTF-8)
# must still give strict, valid UTF-8 JSON. The name is patched in place
# (same length) in a copy of two_io.tflite.
"$PY" - "$T/hostile.tflite" <<'EOF'
import sys
data = open("tests/data/two_io.tflite", "rb").read()
old = b"serving_default_a:0"
new = b'q"\\\x01\xff\xc3(\t\xe2\x82\xac\xed\xa0\x80z\x7f!!!'
assert len(new) == len(old) and data.count(old) == 1, (len(new), len(old))
open(sys.argv[1], "wb").write(data.replace(old, new))
EOF
if "$MOPT" inspect "$T/hostile.tflite" --json >"$T/h.json" 2>"$T/err" &&
  "$PY" - "$T/h.json" <<'EOF'
import json, sys
d = json.loads(open(sys.argv[1], "rb").read().decode("utf-8", errors="strict"))
names = [t["name"] for t in d["tensors"]]
# invalid bytes (a lone 0xff, a truncated sequence, an encoded surrogate)
# become U+FFFD; valid UTF-8 (the euro sign) is kept.
want = 'q"\\\x01\ufffd\ufffd(\t\u20ac\ufffd\ufffd\ufffdz\x7f!!!'
assert want in names, names
EOF
then ok "hostile tensor names give valid JSON"; else bad "hostile tensor names"; cat "$T/err"; fi
if "$MOPT" inspect "$T/hostile.tflite" >/dev/null 2>&1; then ok "  human output works too"; else bad "  human output on hostile names"; fi

echo
if [ "$fails" = 0 ]; then echo "test_cli_inspect: all passed"; else echo "test_cli_inspect: $fails failed"; exit 1; fi
