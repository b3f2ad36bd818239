#!/usr/bin/env bash
# `mopt run`: single runs, N-sample stacking (both layouts), several inputs
# and outputs, dtype/shape errors. Input NPY files are made and output NPY
# files are read with Python's standard library only (npyio.py below), so
# the test needs no numpy; if the venv has numpy, numpy.load must also
# accept what mopt writes.
# Usage: tests/cli/test_cli_run.sh path/to/mopt
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

expect() {
  local want=$1; shift
  "$MOPT" "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ "$rc" = "$want" ]; then ok "mopt $* -> $rc"; else
    bad "mopt $* -> $rc, want $want"; sed 's/^/    /' "$T/err" | head -5; fi
}
one_error_line() {
  local n; n=$(wc -l <"$T/err")
  local all=1
  for s in "$@"; do grep -qF -- "$s" "$T/err" || all=0; done
  if [ "$n" = 1 ] && grep -q '^mopt: ' "$T/err" && [ $all = 1 ]; then ok "  error line mentions: $*"
  else bad "  stderr should be one 'mopt: ' line mentioning: $*; got:"; sed 's/^/    /' "$T/err"; fi
}
pycheck() { # description, python code (reads argv)
  local what=$1; shift
  if "$PY" "$T/npyio.py" "$@" >"$T/py.out" 2>&1; then ok "  $what"; else
    bad "  $what"; sed 's/^/    /' "$T/py.out" | head -10; fi
}

cat >"$T/npyio.py" <<'EOF'
"""Minimal NPY v1 reader/writer and test checks (standard library only)."""
import ast, gzip, struct, sys

CODES = {"<f4": "f", "<f8": "d", "|i1": "b", "|u1": "B", "<i2": "h", "<i4": "i", "<i8": "q"}

def write(path, descr, shape, values):
    shp = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    d = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shp)
    pad = (64 - (10 + len(d) + 1) % 64) % 64
    hdr = (d + " " * pad + "\n").encode()
    body = struct.pack("<%d%s" % (len(values), CODES[descr]), *values)
    open(path, "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr + body)

def read(path):
    b = open(path, "rb").read()
    assert b[:6] == b"\x93NUMPY" and b[6] == 1, "not NPY v1"
    hl = struct.unpack("<H", b[8:10])[0]
    assert (10 + hl) % 64 == 0, "header not padded to 64 bytes"
    h = ast.literal_eval(b[10:10 + hl].decode("latin1"))
    assert h["fortran_order"] is False
    n = 1
    for s in h["shape"]:
        n *= s
    code = CODES[h["descr"]]
    data = b[10 + hl:]
    assert len(data) == n * struct.calcsize(code), "data size"
    return h["descr"], tuple(h["shape"]), list(struct.unpack("<%d%s" % (n, code), data))

def subset_images(n):
    raw = gzip.decompress(open("tests/data/fashion-mnist-subset/t10k-images-idx3-ubyte.gz", "rb").read())
    return [list(raw[16 + 784 * i:16 + 784 * (i + 1)]) for i in range(n)]

def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make_inputs":
        d = args[0]
        imgs = subset_images(5)
        f = [[p / 255.0 for p in im] for im in imgs]
        flat5 = [v for im in f for v in im]
        write(d + "/x1.npy", "<f4", (1, 28, 28, 1), f[0])
        write(d + "/x1_f64.npy", "<f8", (1, 28, 28, 1), f[0])
        write(d + "/x5_stacked.npy", "<f4", (5, 1, 28, 28, 1), flat5)
        write(d + "/x5_batch.npy", "<f4", (5, 28, 28, 1), flat5)
        write(d + "/x0_batch.npy", "<f4", (0, 28, 28, 1), [])
        write(d + "/x1_i8.npy", "|i1", (1, 28, 28, 1), [p - 128 for p in imgs[0]])
        write(d + "/x1_rank3.npy", "<f4", (1, 28, 28), f[0])
        write(d + "/x_784.npy", "<f4", (1, 784), f[0])
        write(d + "/a.npy", "<f4", (1, 4), [1.0, 2.0, -3.0, 0.5])
        write(d + "/b.npy", "<f4", (1, 4), [4.0, -1.0, 2.0, 8.0])
        write(d + "/a3.npy", "<f4", (3, 1, 4), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
        write(d + "/b3.npy", "<f4", (3, 1, 4), [2, 2, 2, 2, 1, 0, -1, -2, 0.5, 0.5, 0.5, 0.5])
        write(d + "/b2.npy", "<f4", (2, 1, 4), [0] * 8)
        open(d + "/bad.npy", "wb").write(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'")
    elif cmd == "check_stacking":
        d = args[0]
        dt1, s1, y1 = read(d + "/y1.npy")
        dts, ss, ys = read(d + "/y5_stacked.npy")
        dtb, sb, yb = read(d + "/y5_batch.npy")
        _, s64, y64 = read(d + "/y1_f64.npy")
        assert dt1 == dts == dtb == "<f4", (dt1, dts, dtb)
        k = s1[-1]
        assert s1 == (1, k) and ss == (5, 1, k) and sb == (5, k), (s1, ss, sb)
        assert ys == yb, "stacked and batched runs differ"
        assert ys[:k] == y1, "sample 0 of the stack differs from the single run"
        assert y64 == y1, "float64 input (read as float32) gives other results"
        for i in range(5):
            row = ys[i * k:(i + 1) * k]
            assert abs(sum(row) - 1.0) < 1e-4 and min(row) >= 0, f"row {i} is not a softmax: {row}"
        assert len({tuple(ys[i * k:(i + 1) * k]) for i in range(5)}) == 5, "rows should differ"
    elif cmd == "check_empty":
        _, s, y = read(args[0])
        assert s[0] == 0 and y == [], s
    elif cmd == "check_two_io":
        # Outputs are a + b and a * b; which comes first is the model's
        # order, so accept the pair in either order but require both.
        d, n = args[0], int(args[1])
        a = read(d + ("/a.npy" if n == 1 else "/a3.npy"))[2]
        b = read(d + ("/b.npy" if n == 1 else "/b3.npy"))[2]
        s = [x + y for x, y in zip(a, b)]
        p = [x * y for x, y in zip(a, b)]
        _, s0, o0 = read(d + "/o0.npy")
        _, s1, o1 = read(d + "/o1.npy")
        want_shape = (1, 4) if n == 1 else (n, 1, 4)
        assert s0 == s1 == want_shape, (s0, s1)
        assert sorted([o0, o1]) == sorted([s, p]), (o0, o1, s, p)
    else:
        sys.exit("unknown check " + cmd)

main()
EOF

"$PY" "$T/npyio.py" make_inputs "$T" || { echo "FAIL cannot make inputs"; exit 1; }

M=tests/fixtures/cnn.tflite
if [ ! -f "$M" ]; then
  echo "skip: $M missing; using tests/data/sparse_mlp.tflite"
  M=tests/data/sparse_mlp.tflite
fi
expect 0 run "$M" --input "$T/x1.npy" -o "$T/y1.npy"
expect 0 run "$M" --input "$T/x1_f64.npy" -o "$T/y1_f64.npy"
expect 0 run "$M" --input "$T/x5_stacked.npy" -o "$T/y5_stacked.npy"
expect 0 run "$M" -i "$T/x5_batch.npy" --output="$T/y5_batch.npy" --threads 2
pycheck "outputs: [1,K], [5,1,K] (stacked), [5,K] (batch); rows equal to single runs" check_stacking "$T"
expect 0 run "$M" --input "$T/x0_batch.npy" -o "$T/y0.npy"
pycheck "zero samples give an empty [0,K] output" check_empty "$T/y0.npy"

if [ -x "$VPY" ] && "$VPY" -c 'import numpy' 2>/dev/null; then
  if "$VPY" -c 'import numpy as np, sys; a = np.load(sys.argv[1]); b = np.load(sys.argv[2]); assert a.dtype == np.float32 and b.shape[0] == 5 and np.array_equal(a[0], b[0])' \
    "$T/y1.npy" "$T/y5_batch.npy"; then ok "  numpy.load reads mopt's NPY files"; else bad "  numpy.load"; fi
else
  echo "skip: no numpy in $VPY; numpy.load check skipped"
fi

# Without -o: a short summary on stdout.
expect 0 run "$M" --input "$T/x1.npy"
if grep -q "^output 0 '.*' float32 \[1,10\]" "$T/out" && grep -q '^  values:' "$T/out"; then
  ok "  summary printed"; else bad "  summary"; cat "$T/out"; fi

# dtype and shape mismatches, bad files: exit 2 with one line naming the file.
expect 2 run "$M" --input "$T/x1_i8.npy"; one_error_line "x1_i8.npy" "int8" "float32" "[1,28,28,1]"
expect 2 run "$M" --input "$T/x1_rank3.npy"; one_error_line "x1_rank3.npy" "[1,28,28]" "[1,28,28,1]"
expect 2 run "$M" --input "$T/x_784.npy"; one_error_line "x_784.npy" "[1,784]"
expect 2 run "$M" --input "$T/missing.npy"; one_error_line "missing.npy"
expect 2 run "$M" --input "$T/bad.npy"; one_error_line "bad.npy"
expect 2 run "$M" --input "$T/x1.npy" -o "$T/no/such/dir/y.npy"; one_error_line "$T/no/such/dir/y.npy"
expect 1 run "$M" --input "$T/x1.npy" --input "$T/x1.npy"; one_error_line "1 input" "2 --input"
expect 1 run "$M" --input "$T/x1.npy" -o "$T/y.npy" -o "$T/z.npy"; one_error_line "1 output" "2 -o"

# Two inputs, two outputs; N = 3 stacked; mismatched N.
M2=tests/data/two_io.tflite
expect 0 run "$M2" --input "$T/a.npy" --input "$T/b.npy" -o "$T/o0.npy" -o "$T/o1.npy"
pycheck "two inputs / two outputs: a+b and a*b" check_two_io "$T" 1
expect 0 run "$M2" --input "$T/a3.npy" --input "$T/b3.npy" -o "$T/o0.npy" -o "$T/o1.npy"
pycheck "two inputs stacked N=3" check_two_io "$T" 3
expect 2 run "$M2" --input "$T/a3.npy" --input "$T/b2.npy"; one_error_line "b2.npy" "2 samples" "3"
expect 0 run "$M2" --input "$T/a.npy" --input "$T/b.npy"
if [ "$(grep -c '^output ' "$T/out")" = 2 ]; then ok "  two summaries"; else bad "  two summaries"; cat "$T/out"; fi

echo
if [ "$fails" = 0 ]; then echo "test_cli_run: all passed"; else echo "test_cli_run: $fails failed"; exit 1; fi
