#!/usr/bin/env python3
"""Writes tests/data/subset_oracle.json: for every Fashion-MNIST fixture in
tests/fixtures/ (28x28x1 input), the number of correctly classified images of
the committed subset's 500 test images under LiteRT's reference kernels
(BUILTIN_REF op resolver), with inputs scaled x/255 (float32) and, for
comparison, x/127.5-1.

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
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "*.tflite"))):
        name = os.path.splitext(os.path.basename(path))[0]
        it = litert.Interpreter(model_path=path,
                                experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
        it.allocate_tensors()
        inp = it.get_input_details()[0]
        out = it.get_output_details()[0]
        if int(np.prod(inp["shape"])) != 28 * 28 or inp["dtype"] != np.float32:
            continue
        # The test refuses a stale oracle: fixtures are regenerated now and then.
        entry = {"sha256": hashlib.sha256(open(path, "rb").read()).hexdigest()}
        for key, xs in scalings.items():
            correct = 0
            for i in range(xs.shape[0]):
                it.set_tensor(inp["index"], xs[i].reshape(inp["shape"]))
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
