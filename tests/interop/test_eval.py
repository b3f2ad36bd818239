"""`mopt eval MODEL --data fashion-mnist` reproduces the recorded accuracy.

The oracle is tests/fixtures/fixtures.json: the float .tflite's top-1 accuracy
under LiteRT's reference kernels on the full 10,000-image test set (and the
Keras accuracy of the same weights), both measured by make_fixtures.py with
TensorFlow. mopt must land within 0.1 percentage point of both.

The test asks for `--json`. Output format accepted: a JSON object with an "accuracy" (or "top1") field,
or a line containing "accuracy" / "top-1" followed by a number, either as a
fraction (0.8829) or as a percentage (88.29%, or any number > 1).
"""

import json
import re

import pytest

from conftest import FIXTURE_INFO, FIXTURES, TRAINED_NAMES, fashion_test_available, run_mopt

TOL = 0.001  # 0.1 percentage point, as a fraction

_ACC_RE = re.compile(r"(?:accuracy|top-?1)[^0-9\n]*?([0-9]+(?:\.[0-9]+)?)\s*(%?)", re.IGNORECASE)


def parse_accuracy(text):
    """Returns the accuracy printed by `mopt eval` as a fraction in [0, 1]."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except json.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            for key in ("accuracy", "top1", "top1_accuracy", "top-1"):
                if key in doc:
                    v = float(doc[key])
                    return v / 100.0 if v > 1.0 else v
    m = _ACC_RE.search(text)
    if not m:
        return None
    v = float(m.group(1))
    return v / 100.0 if (m.group(2) == "%" or v > 1.0) else v


def test_parse_accuracy():
    assert parse_accuracy("accuracy: 0.8829 (8829/10000)") == pytest.approx(0.8829)
    assert parse_accuracy("top-1 accuracy 88.29%") == pytest.approx(0.8829)
    assert parse_accuracy('{"accuracy": 0.5, "n": 10}') == pytest.approx(0.5)
    assert parse_accuracy("nothing here") is None


@pytest.mark.parametrize("name", TRAINED_NAMES)
def test_eval_reproduces_recorded_accuracy(mopt_bin, name):
    if not fashion_test_available():
        pytest.skip("Debian's Fashion-MNIST files are absent (apt-get install dataset-fashion-mnist)")
    info = FIXTURE_INFO[name]
    proc = run_mopt(mopt_bin, "eval", FIXTURES / f"{name}.tflite", "--data", "fashion-mnist",
                    "--json")
    acc = parse_accuracy(proc.stdout)
    assert acc is not None, f"no accuracy found in mopt eval output:\n{proc.stdout}"
    want = info["litert_ref_test_accuracy"]
    assert abs(acc - want) <= TOL, f"{name}: mopt eval {acc:.4f}, LiteRT {want:.4f}"
    keras = info["keras_test_accuracy"]
    assert abs(acc - keras) <= TOL, f"{name}: mopt eval {acc:.4f}, Keras {keras:.4f}"
