#!/usr/bin/env python3
"""Post-training quantization: the TFLite converter vs `mopt quantize`.

For every float fixture, in one run:
  - conversion wall time: the TF 2.21 converter (converter.convert() with
    the representative dataset; the float .tflite is rebuilt as a TF
    function first, outside the timing, see tests/ptq/tflite_to_tf.py) and
    the mopt CLI (process start, load, calibrate, quantize, write);
  - both use the same representative samples: the first N (default 500)
    Fashion-MNIST training images, x/255;
  - top-1 on the Fashion-MNIST test set (default: all 10,000) under LiteRT's
    reference kernels for the float model, the converter's int8 model and
    mopt's int8 model for each calibration method;
  - file sizes;
  - calibration memory: peak RSS of `mopt quantize` with 500 and with 50,000
    calibration samples (streamed from Debian's Fashion-MNIST training set).

    /tmp/tfvenv/bin/python bench/bench_ptq.py [--mopt build/mopt] [--samples 500]
        [--test-limit N] [--only cnn ...] [--json out.json]

Needs TensorFlow (the converter), ai-edge-litert and Debian's
dataset-fashion-mnist (or MOPT_FASHION_MNIST_DIR). Results go to stdout as a
Markdown table (for docs/BENCHMARKS.md) and optionally JSON.
"""

import argparse
import gzip
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "ptq"))
FIXTURES = REPO / "tests" / "fixtures"
FASHION = pathlib.Path(os.environ.get("MOPT_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
TRAINED = ["cnn", "dscnn", "resnet", "mlp"]
METHODS = ["minmax", "percentile", "mse", "kl"]


def read_idx(path):
    raw = pathlib.Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    rank = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * rank).reshape(dims)


def find(stem):
    for s in (".gz", ""):
        p = FASHION / (stem + s)
        if p.is_file():
            return p
    raise SystemExit(f"{FASHION}/{stem}[.gz] not found (apt-get install dataset-fashion-mnist)")


def litert_top1(path, x, y):
    from ai_edge_litert import interpreter as litert
    it = litert.Interpreter(model_path=str(path),
                            experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    correct = 0
    for i in range(x.shape[0]):
        xi = x[i:i + 1]
        if inp["dtype"] != np.float32:
            s, z = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            xi = np.clip(np.round(xi / s) + z, info.min, info.max).astype(inp["dtype"])
        it.set_tensor(inp["index"], xi)
        it.invoke()
        correct += int(np.argmax(it.get_tensor(out["index"])[0]) == y[i])
    return correct / x.shape[0]


def converter_int8(name, calib):
    """Returns (model bytes, seconds in convert(), seconds including the
    converter's construction from the traced TF function)."""
    import tensorflow as tf
    import tflite_to_tf
    rebuilt = tflite_to_tf.Rebuilt(str(FIXTURES / f"{name}.tflite"))
    fn = rebuilt.concrete_function()
    t_all = time.perf_counter()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

    def rep():
        for i in range(calib.shape[0]):
            yield [calib[i:i + 1]]
    conv.representative_dataset = rep
    t0 = time.perf_counter()
    flat = conv.convert()
    t1 = time.perf_counter()
    return flat, t1 - t0, t1 - t_all


def run_mopt(mopt, args):
    t0 = time.perf_counter()
    p = subprocess.run([str(mopt)] + [str(a) for a in args], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"mopt {' '.join(map(str, args))} failed:\n{p.stderr}")
    return dt


def peak_rss_kib(mopt, args):
    """Peak RSS of one mopt run in KiB, measured by GNU time: the rusage of
    a child forked from this (large) Python process would report the
    parent's high-water mark, not mopt's."""
    p = subprocess.run(["/usr/bin/time", "-f", "%M", str(mopt)] + [str(a) for a in args],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"mopt {' '.join(map(str, args))} failed: {p.stderr}")
    return int(p.stderr.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mopt", default=str(REPO / "build" / "mopt"))
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--test-limit", type=int, default=0, help="0 = all 10,000 test images")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--json")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    mopt = pathlib.Path(args.mopt)

    xtr = read_idx(find("train-images-idx3-ubyte"))
    xte = read_idx(find("t10k-images-idx3-ubyte")).astype(np.float32) / np.float32(255.0)
    yte = read_idx(find("t10k-labels-idx1-ubyte"))
    xte = xte.reshape(-1, 28, 28, 1)
    if args.test_limit:
        xte, yte = xte[:args.test_limit], yte[:args.test_limit]
    calib = (xtr[:args.samples].astype(np.float32) / np.float32(255.0)).reshape(-1, 28, 28, 1)

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench_ptq_"))
    # mopt reads the same first N training images through the dataset folder.
    results = {"samples": args.samples, "test_images": int(xte.shape[0]), "models": {}}
    for name in TRAINED:
        if args.only and name not in args.only:
            continue
        src = FIXTURES / f"{name}.tflite"
        r = {"float_bytes": src.stat().st_size}
        r["float_top1"] = litert_top1(src, xte, yte)
        flat, conv_s, _ = converter_int8(name, calib)  # warm-up: TF's first conversion is slower
        flat, conv_s, _ = converter_int8(name, calib)
        cpath = tmp / f"{name}_converter_int8.tflite"
        cpath.write_bytes(flat)
        r["converter_seconds"] = conv_s
        r["converter_bytes"] = len(flat)
        r["converter_top1"] = litert_top1(cpath, xte, yte)
        for m in METHODS:
            out = tmp / f"{name}_mopt_{m}.tflite"
            margs = ["quantize", src, "--mode", "int8", "--calib", FASHION,
                     "--calib-samples", args.samples, "--calib-method", m, "-o", out]
            dt = min(run_mopt(mopt, margs) for _ in range(3))
            r[f"mopt_{m}_seconds"] = dt
            r[f"mopt_{m}_bytes"] = out.stat().st_size
            r[f"mopt_{m}_top1"] = litert_top1(out, xte, yte)
        r["speedup_minmax"] = conv_s / r["mopt_minmax_seconds"]
        results["models"][name] = r
        print(f"{name}: {json.dumps(r)}", file=sys.stderr, flush=True)

    if not args.skip_memory:
        mem = {}
        for n in (500, 50000):
            out = tmp / f"mem_{n}.tflite"
            mem[str(n)] = peak_rss_kib(mopt, ["quantize", FIXTURES / "cnn.tflite", "--mode", "int8",
                                               "--calib", FASHION, "--calib-samples", n, "-o", out])
        mem["ratio"] = mem["50000"] / mem["500"]
        results["calibration_peak_rss_kib"] = mem

    # Markdown
    print(f"Representative samples: first {args.samples} Fashion-MNIST training images; "
          f"top-1 on {xte.shape[0]} test images (LiteRT reference kernels).\n")
    print("| model | float top-1 | converter int8 | mopt minmax | mopt percentile | mopt mse | "
          "mopt kl | converter s | mopt s | speedup | float bytes | converter bytes | mopt bytes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results["models"].items():
        print(f"| {name} | {100 * r['float_top1']:.2f} | {100 * r['converter_top1']:.2f} | "
              + " | ".join(f"{100 * r[f'mopt_{m}_top1']:.2f}" for m in METHODS)
              + f" | {r['converter_seconds']:.2f} | {r['mopt_minmax_seconds']:.2f} | "
              f"{r['speedup_minmax']:.1f}x | {r['float_bytes']} | {r['converter_bytes']} | "
              f"{r['mopt_minmax_bytes']} |")
    if "calibration_peak_rss_kib" in results:
        m = results["calibration_peak_rss_kib"]
        print(f"\nCalibration memory (cnn, int8): peak RSS {m['500']} KiB with 500 samples, "
              f"{m['50000']} KiB with 50,000 ({100 * (m['ratio'] - 1):+.1f}%).")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
