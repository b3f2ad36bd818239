#!/usr/bin/env bash
# `mopt prune` and `mopt cluster` (one-shot): outputs are valid float models
# with the promised structure (checked through `mopt inspect --json`, an
# independent reader of the written file), the report's JSON agrees, and every
# bad input gets a one-line error naming the option or layer, exit 1 or 2, and
# no output file.
# Usage: tests/cli/test_cli_prune_cluster.sh path/to/mopt
set -u
MOPT=$(realpath "${1:?usage: $0 path/to/mopt}")
cd "$(dirname "$0")/../.."
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
PY=python3
CNN=tests/fixtures/cnn.tflite
SUBSET=tests/data/fashion-mnist-subset

if ! "$MOPT" help prune >/dev/null 2>&1 || ! "$MOPT" help cluster >/dev/null 2>&1; then
  echo "FAIL: 'prune' / 'cluster' are not registered in tools/mopt/cli.h (CLI_COMMANDS)"
  exit 1
fi

# Weight tensors (inputs 1 of CONV_2D / DEPTHWISE / FC) of a model: name, numel, sparsity, unique.
weights_json() { # model out.json
  "$MOPT" inspect "$1" --json >"$T/i.json" 2>"$T/err" || return 1
  "$PY" - "$T/i.json" >"$2" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
out = []
for op in d["operators"]:
    if op["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        t = d["tensors"][op["inputs"][1]]
        n = 1
        for s in t["shape"]:
            n *= s
        out.append({"name": t["name"], "shape": t["shape"], "n": n,
                    "zeros": round(t["sparsity"] * n), "unique": t["unique_values"]})
json.dump({"param_count": d["param_count"], "weights": out}, sys.stdout)
EOF
}

# ---- magnitude pruning: per-tensor sparsity = tfmot's rounding -------------
for s in 0.5 0.9; do
  out="$T/p$s.tflite"
  if "$MOPT" prune "$CNN" --sparsity $s -o "$out" --json >"$T/rep.json" 2>"$T/err" && [ -f "$out" ]; then
    ok "prune --sparsity $s"
  else bad "prune --sparsity $s"; cat "$T/err"; continue; fi
  weights_json "$out" "$T/w.json" || { bad "  inspect the output"; continue; }
  if "$PY" - "$T/w.json" "$T/rep.json" $s <<'EOF'
import json, sys
import struct
w = json.load(open(sys.argv[1])); rep = json.load(open(sys.argv[2])); s = float(sys.argv[3])
f32 = lambda x: struct.unpack("f", struct.pack("f", x))[0]  # round to float32
for t in w["weights"]:
    # k = max(round_half_even(float32(n) * (1 - s)), 1) in float32 arithmetic
    # (Python's round is half-to-even); trained weights: no ties
    k = max(int(round(f32(f32(t["n"]) * f32(1.0 - f32(s))))), 1)
    if t["zeros"] != t["n"] - k:
        sys.exit(f"{t['name']}: {t['zeros']} zeros, expected {t['n'] - k}")
lay = {l["name"]: l for l in rep["layers"]}
for t in w["weights"]:
    l = lay[t["name"]]
    if abs(l["sparsity"] - t["zeros"] / t["n"]) > 1e-9 or l["unique"] != t["unique"]:
        sys.exit(f"report disagrees with the file for {t['name']}")
if not (rep["after"]["gzip_bytes"] < rep["before"]["gzip_bytes"]):
    sys.exit("gzip size did not drop")
EOF
  then ok "  every weight tensor has n - k zeros; report matches the file"; else bad "  sparsity per tensor"; fi
  "$MOPT" run "$out" -o "$T/run" >/dev/null 2>&1 || "$MOPT" eval "$out" --data "$SUBSET" >/dev/null 2>"$T/err" ||
    { bad "  the pruned model does not run"; cat "$T/err"; }
done

# ---- 2:4 --------------------------------------------------------------------
if "$MOPT" prune "$CNN" --m-by-n 2:4 -o "$T/mn.tflite" >"$T/out" 2>"$T/err"; then ok "prune --m-by-n 2:4"
else bad "prune --m-by-n 2:4"; cat "$T/err"; fi
if weights_json "$T/mn.tflite" "$T/w.json" && "$PY" - "$T/w.json" <<'EOF'
import json, sys
for t in json.load(open(sys.argv[1]))["weights"]:
    ic = t["shape"][-1]
    # groups of 4 along the input channels: exactly half zero when IC % 4 == 0;
    # IC = 1 (the first conv) keeps its single weight per group, as tfmot does
    want = t["n"] // 2 if ic % 4 == 0 else 0 if ic == 1 else None
    if want is not None and t["zeros"] != want:
        sys.exit(f"{t['name']}: {t['zeros']} zeros, expected {want}")
EOF
then ok "  2 zeros in every group of 4 input channels"; else bad "  2:4 sparsity"; fi

# ---- block ------------------------------------------------------------------
if "$MOPT" prune "$CNN" --sparsity 0.5 --block 1x4 --block-pool max -o "$T/blk.tflite" >"$T/out" 2>"$T/err" &&
  grep -q "block 1x4 max" "$T/out"; then ok "prune --block 1x4 --block-pool max"
else bad "prune --block 1x4"; cat "$T/err"; fi

# ---- channel pruning: a smaller valid model that still classifies ----------
if "$MOPT" prune "$CNN" --structure channels --sparsity 0.5 --eval "$SUBSET" -o "$T/ch.tflite" --json \
    >"$T/rep.json" 2>"$T/err"; then ok "prune --structure channels --sparsity 0.5"
else bad "prune --structure channels"; cat "$T/err"; fi
if "$PY" - "$T/rep.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
b, a = r["before"], r["after"]
if not (a["params"] < 0.5 * b["params"]):
    sys.exit(f"params {b['params']} -> {a['params']}")
convs = [l for l in r["layers"] if l["type"] == "CONV_2D"]
for l in convs:
    if l["shape"][0] * 2 != l["shape_before"][0]:
        sys.exit(f"{l['name']}: {l['shape_before']} -> {l['shape']}")
if r["accuracy_before"] is None or r["accuracy_after"] is None:
    sys.exit("no accuracy")
EOF
then ok "  half the conv channels gone, parameters more than halved, accuracy measured"
else bad "  channel pruning result"; fi
if "$MOPT" eval "$T/ch.tflite" --data "$SUBSET" >/dev/null 2>"$T/err"; then ok "  mopt eval runs the pruned model"
else bad "  eval of the channel-pruned model"; cat "$T/err"; fi

# ---- clustering -------------------------------------------------------------
for args in "--clusters 16" "--clusters 8 --init linear --per-channel" "--clusters 32 --init density --lloyd 0" \
  "--clusters 4 --init random --seed 3"; do
  if "$MOPT" cluster "$CNN" $args -o "$T/c.tflite" >"$T/out" 2>"$T/err"; then ok "cluster $args"
  else bad "cluster $args"; cat "$T/err"; continue; fi
  k=$(echo "$args" | sed 's/.*--clusters \([0-9]*\).*/\1/')
  per=$([[ "$args" == *per-channel* ]] && echo 1 || echo 0)
  weights_json "$T/c.tflite" "$T/w.json" && "$PY" - "$T/w.json" "$k" "$per" <<'EOF' && ok "  at most K distinct values" || bad "  unique values"
import json, sys
k, per = int(sys.argv[2]), int(sys.argv[3])
for t in json.load(open(sys.argv[1]))["weights"]:
    lim = k * t["shape"][0] if per else k
    if t["unique"] > lim:
        sys.exit(f"{t['name']}: {t['unique']} distinct values > {lim}")
EOF
done

# sparsity-preserving clustering of the 90%-pruned model keeps every zero
"$MOPT" cluster "$T/p0.9.tflite" --clusters 8 --preserve-sparsity -o "$T/pc.tflite" >"$T/out" 2>"$T/err" ||
  { bad "cluster --preserve-sparsity"; cat "$T/err"; }
weights_json "$T/p0.9.tflite" "$T/w0.json" && weights_json "$T/pc.tflite" "$T/w1.json" &&
  "$PY" - "$T/w0.json" "$T/w1.json" <<'EOF' && ok "cluster --preserve-sparsity: zeros kept, <= 8 values" || bad "  preserve sparsity"
import json, sys
a, b = (json.load(open(p))["weights"] for p in sys.argv[1:3])
for x, y in zip(a, b):
    if y["zeros"] < x["zeros"] or y["unique"] > 8:
        sys.exit(f"{x['name']}: zeros {x['zeros']} -> {y['zeros']}, unique {y['unique']}")
EOF

# ---- bad input: one line, exit 1 or 2, no output file ----------------------
expect_fail() { # expected_rc pattern -- args...
  local want=$1 pat=$2; shift 3
  rm -f "$T/bad.tflite"
  "$MOPT" "$@" -o "$T/bad.tflite" >"$T/out" 2>"$T/err"
  local rc=$?
  local lines; lines=$(wc -l <"$T/err")
  if [ $rc = "$want" ] && [ "$lines" = 1 ] && grep -q "^mopt: .*$pat" "$T/err" && [ ! -e "$T/bad.tflite" ]; then
    ok "$* -> $rc: $(cat "$T/err")"
  else bad "$* -> rc $rc (want $want), stderr: $(cat "$T/err")"; fi
}
expect_fail 1 "sparsity" -- prune "$CNN" --sparsity 1.0
expect_fail 1 "sparsity" -- prune "$CNN" --sparsity -0.1
expect_fail 1 "sparsity" -- prune "$CNN"
expect_fail 1 "m-by-n" -- prune "$CNN" --m-by-n 4:4
expect_fail 1 "m-by-n" -- prune "$CNN" --m-by-n 4:2
expect_fail 1 "block" -- prune "$CNN" --sparsity 0.5 --block 0x4
expect_fail 1 "end_step" -- prune "$CNN" --sparsity 0.5 --schedule polynomial --begin-step 100 --end-step 10
expect_fail 1 "layers" -- prune "$CNN" --sparsity 0.5 --layers 'no_such_layer'
expect_fail 1 "layers" -- prune "$CNN" --sparsity 0.5 --layers '(['
expect_fail 1 "not available yet" -- prune "$CNN" --sparsity 0.5 --data "$SUBSET"
expect_fail 2 "no prunable layer" -- prune tests/data/two_io.tflite --sparsity 0.5
expect_fail 2 "no prunable layer" -- prune tests/data/two_io.tflite --sparsity 0.5 --structure channels
expect_fail 2 "data: images are 28x28x1" -- prune tests/fixtures/mobilenetv2.tflite --sparsity 0.5 --eval "$SUBSET"
expect_fail 1 "clusters" -- cluster "$CNN" --clusters 1
expect_fail 1 "clusters" -- cluster "$CNN" --clusters 2 --preserve-sparsity
expect_fail 1 "conv2d_1/convolution.*200 clusters but only 144 weights" -- cluster "$CNN" --clusters 200
expect_fail 1 "per output channel" -- cluster "$CNN" --clusters 16 --per-channel
expect_fail 1 "init" -- cluster "$CNN" --clusters 8 --init kmeans
expect_fail 1 "layers" -- cluster "$CNN" --clusters 8 --layers 'zzz'
expect_fail 1 "not available yet" -- cluster "$CNN" --clusters 8 --data "$SUBSET"
expect_fail 2 "no clusterable layer" -- cluster tests/data/two_io.tflite --clusters 8
expect_fail 2 "" -- cluster tests/malformed/truncated_half.tflite --clusters 8
if ls "$T"/*.tmp* >/dev/null 2>&1; then bad "temporary files left behind"; else ok "no temporary files left"; fi

echo
if [ "$fails" = 0 ]; then echo "test_cli_prune_cluster: all passed"; else echo "test_cli_prune_cluster: $fails failed"; exit 1; fi
