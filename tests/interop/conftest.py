"""Shared helpers for the LiteRT interop tests.

These are acceptance tests of the built CLI against the pinned LiteRT
interpreter (ai-edge-litert, tests/requirements.txt). They never import
TensorFlow. The CLI is `$MOPT_BIN`, default `<repo>/build/mopt`; a missing
binary or a missing CLI feature is a failure, not a skip. Only absent optional
data (Debian's Fashion-MNIST files) makes a test skip.
"""

import gzip
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest
from ai_edge_litert import interpreter as litert

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
SUBSET_DIR = REPO / "tests" / "data" / "fashion-mnist-subset"
FASHION_DIR = pathlib.Path(os.environ.get("MOPT_FASHION_MNIST_DIR",
                                          "/usr/share/datasets/fashion-mnist"))

with open(FIXTURES / "fixtures.json") as _f:
    FIXTURE_INFO = json.load(_f)["fixtures"]
FIXTURE_NAMES = sorted(FIXTURE_INFO)
TRAINED_NAMES = sorted(n for n, e in FIXTURE_INFO.items() if e.get("trained"))

# Per-run timeout for one CLI call; generous for Debug/sanitizer builds.
CLI_TIMEOUT = float(os.environ.get("MOPT_TEST_TIMEOUT", "1800"))


def mopt_path():
    return pathlib.Path(os.environ.get("MOPT_BIN", REPO / "build" / "mopt"))


@pytest.fixture(scope="session")
def mopt_bin():
    p = mopt_path()
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"mopt CLI not found at {p} (build it or set MOPT_BIN)")
    return p


def run_mopt(mopt, *args):
    """Runs the CLI; fails the test with its stderr on a non-zero exit."""
    cmd = [str(mopt)] + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CLI_TIMEOUT)
    if proc.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` exited {proc.returncode}\n"
                    f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


def ref_interpreter(model_path=None, model_content=None):
    """LiteRT with the reference kernels (the bit-exactness oracle)."""
    it = litert.Interpreter(
        model_path=None if model_path is None else str(model_path),
        model_content=model_content,
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=False)
    it.allocate_tensors()
    return it


def litert_run_batch(it, x):
    """Runs a batch-1 interpreter over every row of x; returns [N, ...] output 0."""
    inp = it.get_input_details()[0]
    out = it.get_output_details()[0]
    ys = []
    for i in range(x.shape[0]):
        it.set_tensor(inp["index"], x[i:i + 1].astype(inp["dtype"], copy=False))
        it.invoke()
        ys.append(it.get_tensor(out["index"]).copy())
    return np.concatenate(ys, axis=0)


# ---------------------------------------------------------------- data ----

def read_idx(path):
    """Parses an IDX file (raw or gzip) with numpy only."""
    raw = pathlib.Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    types = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    assert raw[0] == 0 and raw[1] == 0 and raw[2] in types, f"{path}: bad IDX magic"
    rank = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(raw, dtype=np.dtype(types[raw[2]]), offset=4 + 4 * rank).reshape(dims)


def _find(folder, stems):
    for stem in stems:
        for suffix in (".gz", ""):
            p = folder / (stem + suffix)
            if p.is_file():
                return p
    return None


def subset_images():
    """Real Fashion-MNIST test images as float32 [N,28,28,1] in [0,1], or None.

    Looks in tests/data/fashion-mnist-subset (IDX files or images .npy), then
    at Debian's files.
    """
    for folder in (SUBSET_DIR, FASHION_DIR):
        if not folder.is_dir():
            continue
        p = _find(folder, ["t10k-images-idx3-ubyte", "test-images-idx3-ubyte",
                           "images-idx3-ubyte", "train-images-idx3-ubyte"])
        if p is not None:
            x = read_idx(p)
        else:
            npys = sorted(q for q in folder.glob("*.npy") if "label" not in q.name)
            if not npys:
                continue
            x = np.load(npys[0])
        x = np.asarray(x)
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / np.float32(255.0)
        x = x.astype(np.float32).reshape(-1, 28, 28, 1)
        return x
    return None


def model_inputs(name, n=100, seed=1234):
    """n seeded inputs shaped like the fixture's batch-1 input, as [n, ...]."""
    shape = FIXTURE_INFO[name]["input_shape"][1:]
    rng = np.random.default_rng(seed + sum(map(ord, name)))
    if list(shape) == [28, 28, 1]:
        imgs = subset_images()
        if imgs is not None and imgs.shape[0] > 0:
            idx = rng.choice(imgs.shape[0], size=n, replace=imgs.shape[0] < n)
            return np.ascontiguousarray(imgs[idx])
    return rng.uniform(0.0, 1.0, size=[n] + list(shape)).astype(np.float32)


def fashion_test_available():
    return (_find(FASHION_DIR, ["t10k-images-idx3-ubyte"]) is not None
            and _find(FASHION_DIR, ["t10k-labels-idx1-ubyte"]) is not None)
