"""Models exported by `mopt train` run unchanged in LiteRT and agree with mopt.

For every built-in architecture (and a fine-tuned imported model), a short
training run on the committed Fashion-MNIST subset (tests/data/fashion-mnist-
subset: 1,000 train / 500 test images) exports a float .tflite with batch norm
folded. The oracle is LiteRT 2.3.0 with the reference kernels:
  * the file loads and runs;
  * the logits agree with `mopt run` (max |diff| <= 1e-4 * max(1, |logit|));
  * LiteRT's top-1 on the 500 test images equals the test accuracy that
    `mopt train --json` reported and `mopt eval` measures (within 0.05 point,
    the issue's tolerance; in practice identical).
"""

import json

import numpy as np
import pytest

from conftest import SUBSET_DIR, read_idx, ref_interpreter, litert_run_batch, run_mopt

ARCHS = ["mlp", "cnn", "dscnn", "mobilenet", "resnet"]


def subset_test():
    x = read_idx(SUBSET_DIR / "t10k-images-idx3-ubyte.gz").astype(np.float32) / np.float32(255)
    y = read_idx(SUBSET_DIR / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return x.reshape(-1, 28, 28, 1), y


def check_exported(mopt_bin, tmp_path, model, reported_acc):
    x, y = subset_test()
    it = ref_interpreter(model)
    logits = litert_run_batch(it, x).reshape(x.shape[0], -1)
    litert_acc = float(np.mean(np.argmax(logits, axis=1) == y))

    ev = json.loads(run_mopt(mopt_bin, "eval", model, "--data", SUBSET_DIR, "--json").stdout)
    assert abs(ev["accuracy"] - litert_acc) <= 0.0005, (ev["accuracy"], litert_acc)
    if reported_acc is not None:
        assert abs(reported_acc - litert_acc) <= 0.0005, (reported_acc, litert_acc)

    # Logits of the first 20 images, mopt vs LiteRT.
    xs = tmp_path / "x.npy"
    np.save(xs, x[:20])
    out = tmp_path / "y.npy"
    run_mopt(mopt_bin, "run", model, "--input", xs, "-o", out)
    got = np.load(out).reshape(20, -1)
    want = logits[:20]
    tol = 1e-4 * np.maximum(1.0, np.abs(want))
    assert np.all(np.abs(got - want) <= tol), float(np.max(np.abs(got - want)))


@pytest.mark.parametrize("arch", ARCHS)
def test_trained_model_runs_in_litert(mopt_bin, tmp_path, arch):
    model = tmp_path / f"{arch}.tflite"
    proc = run_mopt(mopt_bin, "train", "--arch", arch, "--data", SUBSET_DIR, "--epochs", "1",
                    "--batch", "32", "--seed", "7", "--threads", "2", "--json", "-o", model)
    rep = json.loads(proc.stdout)
    check_exported(mopt_bin, tmp_path, model, rep["test_accuracy"])


def test_fine_tuned_import_runs_in_litert(mopt_bin, tmp_path):
    base = tmp_path / "base.tflite"
    run_mopt(mopt_bin, "train", "--arch", "cnn", "--data", SUBSET_DIR, "--epochs", "1",
             "--batch", "32", "--seed", "3", "-o", base)
    ft = tmp_path / "ft.tflite"
    proc = run_mopt(mopt_bin, "train", "--from", base, "--data", SUBSET_DIR, "--epochs", "1",
                    "--lr", "1e-4", "--seed", "3", "--json", "-o", ft)
    check_exported(mopt_bin, tmp_path, ft, json.loads(proc.stdout)["test_accuracy"])
