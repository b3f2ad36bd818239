"""Outputs of `mopt prune` / `mopt cluster` are plain float models that the
pinned LiteRT runs, computing what `mopt run` computes, with the structure the
command promises, read back by LiteRT itself (not by mopt):

  - magnitude pruning: each weight tensor has n - k zeros, k = tfmot's rounding;
  - 2:4: every group of 4 consecutive input channels has at least 2 zeros;
  - channel pruning: conv output channels halved, the model still runs;
  - clustering: at most K distinct values per weight tensor / output channel;
  - sparsity-preserving clustering of a pruned model keeps every zero.
"""

import struct

import numpy as np
import pytest

from conftest import FIXTURES, litert_run_batch, model_inputs, ref_interpreter, run_mopt

N_SAMPLES = 20
REL_TOL = 1e-4
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def weight_tensors(model_path):
    """{name: (op type, array)} of the weights of CONV_2D / DEPTHWISE / FC ops,
    read with LiteRT (ops from its op details, data from get_tensor)."""
    it = ref_interpreter(model_path)
    out = {}
    for op in it._get_ops_details():
        if op["op_name"] in WEIGHT_OPS:
            t = op["inputs"][1]
            d = [x for x in it.get_tensor_details() if x["index"] == t][0]
            out[d["name"]] = (op["op_name"], np.array(it.get_tensor(t)))
    assert out, f"{model_path}: no weight tensors found"
    return out


def check_parity(mopt_bin, tmp_path, model, name):
    x = model_inputs(name, N_SAMPLES)
    np.save(tmp_path / "x.npy", x)
    run_mopt(mopt_bin, "run", model, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    got = np.load(tmp_path / "y.npy")
    want = litert_run_batch(ref_interpreter(model), x)
    got = got.reshape(want.shape)
    scale = max(float(np.max(np.abs(want))), 1e-6)
    assert float(np.max(np.abs(got - want))) / scale <= REL_TOL


def keep_count(n, s):
    f32 = lambda v: struct.unpack("f", struct.pack("f", v))[0]
    return max(int(round(f32(f32(n) * f32(1.0 - f32(s))))), 1)


@pytest.mark.parametrize("name", ["cnn", "dscnn", "resnet", "mobilenetv2"])
def test_magnitude_pruning(mopt_bin, tmp_path, name):
    out = tmp_path / "p.tflite"
    run_mopt(mopt_bin, "prune", FIXTURES / f"{name}.tflite", "--sparsity", "0.75", "-o", out)
    check_parity(mopt_bin, tmp_path, out, name)
    for tname, (_, w) in weight_tensors(out).items():
        n = w.size
        assert int(np.sum(w == 0)) == n - keep_count(n, 0.75), tname


@pytest.mark.parametrize("name", ["cnn", "resnet", "mobilenetv2"])
def test_two_four(mopt_bin, tmp_path, name):
    out = tmp_path / "mn.tflite"
    run_mopt(mopt_bin, "prune", FIXTURES / f"{name}.tflite", "--m-by-n", "2:4", "-o", out)
    check_parity(mopt_bin, tmp_path, out, name)
    for tname, (op, w) in weight_tensors(out).items():
        if op == "DEPTHWISE_CONV_2D":
            continue
        rows = w.reshape(-1, w.shape[-1])  # input channels are the last axis
        ic = rows.shape[1]
        pad = (-ic) % 4
        g = np.pad(rows, ((0, 0), (0, pad)), constant_values=1.0).reshape(rows.shape[0], -1, 4)
        zeros = np.sum(g == 0, axis=2)
        full = zeros[:, : ic // 4]
        assert np.all(full >= 2), f"{tname}: a full group of 4 with fewer than 2 zeros"


@pytest.mark.parametrize("name", ["cnn", "dscnn", "resnet", "mobilenetv2"])
def test_channel_pruning(mopt_bin, tmp_path, name):
    src = FIXTURES / f"{name}.tflite"
    out = tmp_path / "ch.tflite"
    run_mopt(mopt_bin, "prune", src, "--structure", "channels", "--sparsity", "0.5", "-o", out)
    check_parity(mopt_bin, tmp_path, out, name)
    before = sum(w.size for _, w in weight_tensors(src).values())
    after = sum(w.size for _, w in weight_tensors(out).values())
    assert after < 0.6 * before, f"{name}: weights {before} -> {after}"


@pytest.mark.parametrize("args,per_channel", [(["--clusters", "16"], False),
                                              (["--clusters", "8", "--per-channel", "--init", "linear"], True),
                                              (["--clusters", "32", "--init", "density"], False)])
def test_clustering(mopt_bin, tmp_path, args, per_channel):
    out = tmp_path / "c.tflite"
    run_mopt(mopt_bin, "cluster", FIXTURES / "resnet.tflite", *args, "-o", out)
    check_parity(mopt_bin, tmp_path, out, "resnet")
    k = int(args[1])
    for tname, (op, w) in weight_tensors(out).items():
        if per_channel:
            axis = 3 if op == "DEPTHWISE_CONV_2D" else 0
            for c in range(w.shape[axis]):
                assert np.unique(np.take(w, c, axis=axis)).size <= k, tname
        else:
            assert np.unique(w).size <= k, tname


def test_preserve_sparsity(mopt_bin, tmp_path):
    pruned = tmp_path / "p.tflite"
    out = tmp_path / "pc.tflite"
    run_mopt(mopt_bin, "prune", FIXTURES / "cnn.tflite", "--sparsity", "0.75", "-o", pruned)
    run_mopt(mopt_bin, "cluster", pruned, "--clusters", "16", "--preserve-sparsity", "-o", out)
    a, b = weight_tensors(pruned), weight_tensors(out)
    for tname in a:
        wa, wb = a[tname][1], b[tname][1]
        assert np.all(wb[wa == 0] == 0), f"{tname}: a zero weight changed"
        assert np.unique(wb).size <= 16, tname
