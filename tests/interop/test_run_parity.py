"""`mopt run` must compute what LiteRT's reference kernels compute.

Error definition (per output tensor, over the whole batch):

    rel_err = max_i |mopt_i - litert_i| / max(max_i |litert_i|, TINY)

i.e. the largest absolute difference measured against the output's own
magnitude. A per-element |a-b|/|b| would explode for outputs near zero (e.g.
softmax probabilities of 1e-12), where float kernels with a different
summation order legitimately differ by a few ULPs of the largest value.
TINY only guards against an all-zero reference output.
"""

import numpy as np
import pytest

from conftest import (FIXTURE_NAMES, FIXTURES, litert_run_batch, model_inputs,
                      ref_interpreter, run_mopt)

REL_TOL = 1e-4
TINY = 1e-6
N_SAMPLES = 100


def rel_err(got, want):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    scale = max(float(np.max(np.abs(want))), TINY)
    return float(np.max(np.abs(got - want))) / scale


def test_rel_err_definition():
    # The metric itself must be able to fail: an error of 1% of the largest
    # value is reported as 1e-2, and tiny outputs do not blow it up.
    want = np.array([[1.0, 1e-12, 0.5]])
    assert rel_err(want, want) == 0.0
    assert rel_err(want + [[0.0, 1e-9, 0.0]], want) == pytest.approx(1e-9)
    assert rel_err(want + [[0.01, 0.0, 0.0]], want) == pytest.approx(1e-2)
    assert rel_err(np.zeros(3), np.zeros(3)) == 0.0


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_run_matches_litert_ref(mopt_bin, tmp_path, name):
    model = FIXTURES / f"{name}.tflite"
    x = model_inputs(name, N_SAMPLES)
    xin = tmp_path / "x.npy"
    yout = tmp_path / "y.npy"
    np.save(xin, x)
    run_mopt(mopt_bin, "run", model, "--input", xin, "-o", yout)
    assert yout.is_file(), "mopt run wrote no output file"
    got = np.load(yout)

    it = ref_interpreter(model)
    want = litert_run_batch(it, x)

    assert got.dtype == np.float32, f"output dtype {got.dtype}, want float32"
    assert got.shape[0] == N_SAMPLES, f"output shape {got.shape}: leading dim must be {N_SAMPLES}"
    assert got.size == want.size, f"output shape {got.shape}, LiteRT {want.shape}"
    got = got.reshape(want.shape)
    assert np.all(np.isfinite(got)), "mopt output has NaN/Inf"
    err = rel_err(got, want)
    # Report the worst sample to make a failure easy to chase.
    worst = int(np.argmax(np.max(np.abs(got.reshape(N_SAMPLES, -1).astype(np.float64)
                                        - want.reshape(N_SAMPLES, -1)), axis=1)))
    assert err <= REL_TOL, (f"{name}: rel err {err:.3g} > {REL_TOL} "
                            f"(worst sample {worst}: mopt {got[worst]}, LiteRT {want[worst]})")
    # Top-1 decisions must agree too (they do whenever err is tiny, unless
    # two classes tie to within err; report rather than hide such a case).
    agree = np.mean(np.argmax(got.reshape(N_SAMPLES, -1), 1) == np.argmax(want.reshape(N_SAMPLES, -1), 1))
    assert agree >= 0.99, f"{name}: top-1 agreement {agree:.2f}"
