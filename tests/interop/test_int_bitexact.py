"""mopt's integer runtime against LiteRT's reference kernels, bit for bit.

For every quantized fixture in tests/fixtures/quant (made by the TF 2.21
converter, see its README), 100 inputs are run through `mopt run` and through
the pinned LiteRT interpreter with `OpResolverType.BUILTIN_REF`:

* full-integer models (int8 with float or int8 I/O, int16x8): every output
  element must be identical. With int8 I/O the int8 tensors are compared; with
  float I/O the float outputs themselves (DEQUANTIZE is exact, so identical
  integers give identical floats).
* dynamic-range (hybrid) and float16 models: their float kernels are not
  bit-exact across runtimes (summation order), so the outputs are compared
  with the documented tolerance below (docs/INTEGER_KERNELS.md).

Imports only numpy and ai_edge_litert; the CLI is $MOPT_BIN (conftest).
"""

import json

import numpy as np
import pytest

from conftest import FIXTURES, model_inputs, ref_interpreter, run_mopt

QUANT_DIR = FIXTURES / "quant"
with open(QUANT_DIR / "fixtures.json") as _f:
    QUANT_INFO = json.load(_f)["fixtures"]
QUANT_NAMES = sorted(QUANT_INFO)
EXACT_MODES = {"int8", "int8io", "int16x8"}
N_SAMPLES = 100

# Hybrid / float16: max |mopt - litert| over the batch, relative to the
# largest |litert| output (as tests/interop/test_run_parity.py). The hybrid
# kernels themselves match LiteRT exactly on identical inputs; the float ops
# around them differ by a few ulps, which can move one run-time quantized
# input value by one step, hence a looser bound than the float parity test.
REL_TOL = {"dynamic": 2e-3, "float16": 1e-4}


def quantize_input(x, detail):
    """float32 batch -> the model's integer input dtype (round half away)."""
    scale, zp = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    q = np.floor(np.abs(x / np.float32(scale)) + 0.5) * np.sign(x)
    return np.clip(q + zp, info.min, info.max).astype(detail["dtype"])


def run_both(mopt_bin, tmp_path, name):
    entry = QUANT_INFO[name]
    model = QUANT_DIR / f"{name}.tflite"
    it = ref_interpreter(model)
    ind = it.get_input_details()[0]
    outd = it.get_output_details()[0]
    x = model_inputs(entry["model"], N_SAMPLES)
    if ind["dtype"] != np.float32:
        x = quantize_input(x, ind)
    want = []
    for i in range(N_SAMPLES):
        it.set_tensor(ind["index"], x[i:i + 1])
        it.invoke()
        want.append(it.get_tensor(outd["index"]).copy())
    want = np.concatenate(want, axis=0)
    xin, yout = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(xin, x)
    run_mopt(mopt_bin, "run", model, "--input", xin, "-o", yout)
    got = np.load(yout)
    assert got.dtype == want.dtype, f"{name}: output dtype {got.dtype}, LiteRT {want.dtype}"
    assert got.size == want.size, f"{name}: output shape {got.shape}, LiteRT {want.shape}"
    return got.reshape(want.shape), want


def test_fixture_list_is_complete():
    # Every model in every integer mode must be there (the bit-exactness
    # claim is "all fixtures, all integer modes").
    models = {e["model"] for e in QUANT_INFO.values()}
    assert models == {"cnn", "dscnn", "resnet", "mlp", "mobilenetv2"}
    for m in models:
        for mode in ("int8", "int16x8"):
            assert f"{m}_{mode}" in QUANT_INFO, f"missing fixture {m}_{mode}"
    for name in QUANT_NAMES:
        assert (QUANT_DIR / f"{name}.tflite").is_file(), name


@pytest.mark.parametrize("name", QUANT_NAMES)
def test_quantized_fixture_matches_reference(mopt_bin, tmp_path, name):
    mode = QUANT_INFO[name]["mode"]
    got, want = run_both(mopt_bin, tmp_path, name)
    if mode in EXACT_MODES:
        diff = got != want
        n_diff = int(np.count_nonzero(diff))
        if n_diff:
            first = tuple(int(v) for v in np.argwhere(diff)[0])
            pytest.fail(f"{name}: {n_diff}/{want.size} output elements differ from LiteRT "
                        f"BUILTIN_REF; first at {first}: mopt {got[first]}, LiteRT {want[first]}")
        return
    g = got.astype(np.float64)
    w = want.astype(np.float64)
    assert np.all(np.isfinite(g)), f"{name}: mopt output has NaN/Inf"
    err = float(np.max(np.abs(g - w))) / max(float(np.max(np.abs(w))), 1e-6)
    assert err <= REL_TOL[mode], f"{name}: relative error {err:.3g} > {REL_TOL[mode]}"
    agree = float(np.mean(np.argmax(g.reshape(N_SAMPLES, -1), 1) ==
                          np.argmax(w.reshape(N_SAMPLES, -1), 1)))
    assert agree >= 0.99, f"{name}: top-1 agreement {agree:.2f}"


def test_exact_comparison_can_fail(mopt_bin, tmp_path):
    # The comparison above must be able to fail: flipping one integer of
    # mopt's output is detected.
    got, want = run_both(mopt_bin, tmp_path, "cnn_int8io")
    assert np.array_equal(got, want)
    bad = got.copy()
    bad.flat[0] = np.int8(int(bad.flat[0]) ^ 1)
    assert not np.array_equal(bad, want)


@pytest.mark.parametrize("name", ["mlp_int16x8", "dscnn_int8"])
def test_thread_count_does_not_change_integers(mopt_bin, tmp_path, name):
    model = QUANT_DIR / f"{name}.tflite"
    x = model_inputs(QUANT_INFO[name]["model"], 20)
    xin = tmp_path / "x.npy"
    np.save(xin, x)
    outs = []
    for t in ("1", "2"):
        y = tmp_path / f"y{t}.npy"
        run_mopt(mopt_bin, "run", model, "--input", xin, "-o", y, "--threads", t)
        outs.append(np.load(y))
    assert np.array_equal(outs[0], outs[1])
