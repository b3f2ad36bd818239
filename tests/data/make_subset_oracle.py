#!/usr/bin/env python3
"""Writes tests/data/subset_oracle.json: for every model with a 784-element
input in tests/fixtures/ and tests/data/, the number of correctly classified
images of the committed subset's 500 test images under LiteRT's reference
kernels (BUILTIN_REF op resolver), with inputs scaled x/255 (float32) and
x/127.5-1. Integer (int8/uint8) inputs are quantized the way `mopt eval`
does it: q = round_half_away_from_zero(x / scale) + zero_point, clamped; the
class is the argmax of the raw output (first maximum on ties).

`tests/cli/test_cli_eval.sh` checks that `mopt eval` reproduces these counts.
Needs numpy and ai-edge-litert (the pinned oracle, tests/requirements.txt).

    python tests/data/make_subset_oracle.py
"""

import glob
import gzip
import hashlib
import json
import os

import numpy as np
from ai_edge_litert import interpreter as litert

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SUBSET = os.path.join(HERE, "fashion-mnist-subset")


def read_idx_gz(path, header):
    raw = gzip.decompress(open(path, "rb").read())
    return np.frombuffer(raw, dtype=np.uint8, offset=header)


def feed(inp, x):
    x = x.reshape(inp["shape"])
    if inp["dtype"] == np.float32:
        return x
    scale, zp = inp["quantization"]
    info = np.iinfo(inp["dtype"])
    v = x.astype(np.float64) / np.float64(np.float32(scale))
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zp
    return np.clip(q, info.min, info.max).astype(inp["dtype"])


def main():
    x = read_idx_gz(os.path.join(SUBSET, "t10k-images-idx3-ubyte.gz"), 16).reshape(-1, 28, 28, 1)
    y = read_idx_gz(os.path.join(SUBSET, "t10k-labels-idx1-ubyte.gz"), 8).astype(np.int64)
    scalings = {
        "01": x.astype(np.float32) / np.float32(255.0),
        "pm1": x.astype(np.float32) / np.float32(127.5) - np.float32(1.0),
    }
    result = {
        "generator": "tests/data/make_subset_oracle.py",
        "oracle": "ai-edge-litert reference kernels (OpResolverType.BUILTIN_REF)",
        "samples": int(x.shape[0]),
        "models": {},
    }
    try:
        from importlib.metadata import version
        result["oracle"] += f" {version('ai-edge-litert')}"
    except Exception:  # pragma: no cover - metadata missing
        pass
    paths = sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "*.tflite")))
    paths += sorted(glob.glob(os.path.join(HERE, "*.tflite")))
    for path in paths:
        name = os.path.relpath(path, ROOT)
        it = litert.Interpreter(model_path=path,
                                experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
        it.allocate_tensors()
        inp = it.get_input_details()[0]
        out = it.get_output_details()[0]
        if int(np.prod(inp["shape"])) != 28 * 28 or len(it.get_input_details()) != 1:
            continue
        # The test refuses a stale oracle: fixtures are regenerated now and then.
        entry = {"sha256": hashlib.sha256(open(path, "rb").read()).hexdigest()}
        for key, xs in scalings.items():
            correct = 0
            for i in range(xs.shape[0]):
                it.set_tensor(inp["index"], feed(inp, xs[i]))
                it.invoke()
                correct += int(np.argmax(it.get_tensor(out["index"]).reshape(-1)) == y[i])
            entry[f"correct_{key}"] = correct
        result["models"][name] = entry
        print(name, entry)
    with open(os.path.join(HERE, "subset_oracle.json"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
