#!/usr/bin/env python3
"""Training throughput: mopt vs Keras on the same architecture, batch size,
data and two cores, in one run.

    python3 bench/bench_train_vs_keras.py --mopt build/mopt [--arch cnn] [--batch 64]
           [--samples 12000] [--threads 2] [--repeat 1] [--json out.json]

--batch and --threads take comma-separated lists (e.g. --batch 32,64,128
--threads 1,2): every combination is measured, mopt then Keras back to back
(the same minute, so background load hits both alike), --repeat times, and
the table shows each run plus, per combination, the median speed-up.

Needs (tests/requirements-fixtures.txt, `scripts/setup.sh --tf` makes the
venv .venv-tf): tensorflow-cpu 2.21 (Keras 3), numpy; mopt built.

The architecture is mopt's built-in spec (printed by `mopt train --summary`
is not needed: the spec is parsed here and rebuilt layer by layer in Keras:
conv/bn/relu/maxpool/flatten/dropout/fc). Both train on the first --samples
Fashion-MNIST training images for one epoch after a warm-up; samples/s is the
training throughput (mopt: its own timer over the epoch, Keras: wall time of
model.fit). Adam, lr 1e-3, softmax cross-entropy, no validation in the timed
part.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

SPECS = {
    # keep in sync with src/train/arch.c
    "mlp": "flatten; fc 512 relu; dropout 0.2; fc 256 relu; dropout 0.2; fc classes",
    "cnn": "conv 32 3 bn relu; maxpool 2; conv 64 3 bn relu; maxpool 2; flatten; "
           "fc 128 relu; dropout 0.3; fc classes",
}


def keras_model(spec, classes=10):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from keras import layers
    m = [keras.Input((28, 28, 1))]
    for layer in spec.split(";"):
        t = layer.split()
        if not t:
            continue
        w = t[0]
        acts = [a for a in t[1:] if a in ("relu", "relu6", "tanh", "sigmoid")]
        bn = "bn" in t
        if w == "conv":
            m.append(layers.Conv2D(int(t[1]), int(t[2]), padding="same", use_bias=not bn,
                                   activation=None if bn else (acts[0] if acts else None)))
            if bn:
                m.append(layers.BatchNormalization())
                if acts:
                    m.append(layers.Activation(acts[0]))
        elif w == "maxpool":
            m.append(layers.MaxPooling2D(int(t[1])))
        elif w == "flatten":
            m.append(layers.Flatten())
        elif w == "dropout":
            m.append(layers.Dropout(float(t[1])))
        elif w == "fc":
            units = classes if t[1] == "classes" else int(t[1])
            m.append(layers.Dense(units, activation=acts[0] if acts else None))
        else:
            raise SystemExit(f"layer '{w}' not supported by this benchmark")
    return keras.Sequential(m)


def load_fashion(n):
    import gzip
    import numpy as np
    d = os.environ.get("MOPT_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
    with gzip.open(os.path.join(d, "train-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)[:n]
    with gzip.open(os.path.join(d, "train-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    return x.astype("float32") / 255.0, y.astype("int32")


_TF_THREADS = None


def run_keras(spec, batch, n, threads):
    global _TF_THREADS
    import tensorflow as tf
    if _TF_THREADS is None:  # settable once per process, before TF starts
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        _TF_THREADS = threads
    import keras
    x, y = load_fashion(n)
    model = keras_model(spec)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[: batch * 20], y[: batch * 20], batch_size=batch, epochs=1, verbose=0)  # warm-up
    t = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=True)
    return n / (time.perf_counter() - t)


def run_mopt(mopt, arch, batch, n, threads):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "m.tflite")
        cmd = [mopt, "train", "--arch", arch, "--data", "fashion-mnist", "--limit", str(n),
               "--epochs", "1", "--batch", str(batch), "--threads", str(threads),
               "--val-split", "0", "--json", "-o", out]
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(r.stdout)["epochs"][0]["samples_per_sec"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mopt", required=True)
    ap.add_argument("--arch", default="cnn", choices=sorted(SPECS))
    ap.add_argument("--batch", default="64", help="batch size(s), comma-separated")
    ap.add_argument("--samples", type=int, default=12000)
    ap.add_argument("--threads", default="2", help="thread count(s), comma-separated")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json")
    a = ap.parse_args()
    if "OPENBLAS_CORETYPE" not in os.environ:
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    batches = [int(b) for b in a.batch.split(",")]
    threads = [int(t) for t in a.threads.split(",")]
    if len(threads) > 1:
        # TensorFlow fixes its thread pools once per process: one Keras
        # process per thread count (this script re-run with --threads T)
        res = []
        for t in threads:
            with tempfile.NamedTemporaryFile(suffix=".json") as f:
                cmd = [sys.executable, __file__, "--mopt", a.mopt, "--arch", a.arch,
                       "--batch", a.batch, "--samples", str(a.samples), "--threads", str(t),
                       "--repeat", str(a.repeat), "--json", f.name]
                subprocess.run(cmd, check=True)
                res += json.load(open(f.name))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=2)
        return 0
    t = threads[0]
    res = []
    print(f"| arch | batch | threads | run | mopt samples/s | Keras samples/s | speed-up |")
    print(f"|---|---|---|---|---|---|---|")
    for rep in range(a.repeat):
        for b in batches:
            m = run_mopt(a.mopt, a.arch, b, a.samples, t)
            k = run_keras(SPECS[a.arch], b, a.samples, t)
            res.append({"arch": a.arch, "batch": b, "samples": a.samples, "threads": t,
                        "run": rep + 1, "mopt_samples_per_sec": round(m, 1),
                        "keras_samples_per_sec": round(k, 1), "speedup": round(m / k, 2)})
            print(f"| {a.arch} | {b} | {t} | {rep + 1} | {m:.0f} | {k:.0f} | {m / k:.2f}x |",
                  flush=True)
    if a.repeat > 1:
        for b in batches:
            sp = sorted(r["speedup"] for r in res if r["batch"] == b)
            print(f"batch {b}, {t} thread(s): median speed-up {sp[len(sp) // 2]:.2f}x "
                  f"(runs: {', '.join(f'{x:.2f}' for x in sp)})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
