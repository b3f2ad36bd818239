#!/usr/bin/env python3
"""Integer latency: mopt's int8 / int16x8 runtime vs LiteRT (XNNPACK), and
optionally vs an older mopt build (before/after a kernel change).

Models: tests/fixtures/quant/*_int8*.tflite and *_int16x8.tflite (converter-
quantized, committed) plus, with --ptq, `mopt quantize --mode int8` outputs
of every tests/fixtures/*.tflite calibrated on 200 samples of the committed
Fashion-MNIST subset (written to a temporary folder).

For every model and T in --threads (default 1):
  * mopt:     `mopt bench MODEL --threads T --runs R --json` (invoke only,
              after warm-up; its median);
  * baseline: the same with --baseline MOPT_BIN (e.g. a build of the
              previous commit), if given;
  * LiteRT:   ai_edge_litert Interpreter(model_path, num_threads=T) with the
              default op resolver (XNNPACK for what it supports, TFLite's
              optimized kernels otherwise); median of R timed invokes.
They run alternately for --rounds rounds in one process so all see the same
machine load; the figure is the median of the per-round medians. Prints a
markdown table (ratio = mopt / LiteRT, < 1 means mopt is faster), CPU, load
and date; --out FILE also writes it.

Needs: Python 3.10+, numpy, ai-edge-litert 2.3.0 (the repo's
tests/requirements-fixtures.txt; `scripts/setup.sh --tf` makes .venv-tf).

Usage: python bench/bench_int8.py [--mopt build/mopt] [--baseline OLD/mopt]
                                  [--runs 100] [--rounds 3] [--threads 1 2]
                                  [--models cnn_int8 ...] [--ptq] [--out FILE]
"""

import argparse
import datetime
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from ai_edge_litert import interpreter as litert

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_float import _version, cpu_isa, cpu_model, mopt_median_ms  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
QUANT = FIXTURES / "quant"
SUBSET = REPO / "tests" / "data" / "fashion-mnist-subset"


class LiteRT:
    def __init__(self, model, threads):
        self.it = litert.Interpreter(model_path=str(model), num_threads=threads)
        self.it.allocate_tensors()
        rng = np.random.default_rng(0)
        self.inputs = []
        for d in self.it.get_input_details():
            dt = np.dtype(d["dtype"])
            if dt.kind == "f":
                x = rng.uniform(-1, 1, size=d["shape"]).astype(dt)
            else:
                info = np.iinfo(dt)
                x = rng.integers(info.min, info.max + 1, size=d["shape"]).astype(dt)
            self.inputs.append((d["index"], x))
        self._feed()
        for _ in range(5):  # warm-up (XNNPACK packs weights on first run)
            self.it.invoke()

    def _feed(self):
        for idx, x in self.inputs:
            self.it.set_tensor(idx, x)

    def median_ms(self, runs):
        times = []
        for _ in range(runs):
            self._feed()
            t0 = time.perf_counter_ns()
            self.it.invoke()
            times.append((time.perf_counter_ns() - t0) * 1e-6)
        return statistics.median(times)


def ptq_models(mopt, out_dir):
    made = []
    for f in sorted(FIXTURES.glob("*.tflite")):
        out = pathlib.Path(out_dir) / f"{f.stem}_ptq_int8.tflite"
        cmd = [str(mopt), "quantize", str(f), "--mode", "int8", "-o", str(out),
               "--calib", str(SUBSET), "--calib-samples", "200"]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            print(f"# skip {f.stem}: {p.stderr.strip()}", file=sys.stderr)
            continue
        made.append(out)
    return made


def main():
    ap = argparse.ArgumentParser(description="mopt vs LiteRT integer latency")
    ap.add_argument("--mopt", default=os.environ.get("MOPT_BIN", str(REPO / "build" / "mopt")))
    ap.add_argument("--baseline", default=None, help="another mopt binary to compare")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--models", nargs="+", default=None, help="stems in tests/fixtures/quant")
    ap.add_argument("--ptq", action="store_true", help="also mopt-quantized int8 fixtures")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    load0 = os.getloadavg()[0]
    if args.models:
        models = [QUANT / f"{m}.tflite" for m in args.models]
    else:
        models = sorted(p for p in QUANT.glob("*.tflite")
                        if "_int8" in p.stem or "_int16x8" in p.stem)
    tmp = tempfile.TemporaryDirectory()
    if args.ptq:
        models += ptq_models(args.mopt, tmp.name)
    rows = []
    for model in models:
        for t in args.threads:
            peer = LiteRT(model, t)
            m_meds, b_meds, l_meds = [], [], []
            for _ in range(args.rounds):
                m_meds.append(mopt_median_ms(args.mopt, model, t, args.runs))
                if args.baseline:
                    b_meds.append(mopt_median_ms(args.baseline, model, t, args.runs))
                l_meds.append(peer.median_ms(args.runs))
            m, l = statistics.median(m_meds), statistics.median(l_meds)
            b = statistics.median(b_meds) if b_meds else None
            rows.append((model.stem, t, b, m, l))
            print(f"# {model.stem} T={t}: mopt {m:.3f} ms"
                  + (f", baseline {b:.3f} ms" if b is not None else "")
                  + f", LiteRT {l:.3f} ms", file=sys.stderr, flush=True)

    base = args.baseline is not None
    lines = [
        f"Machine: {cpu_model()} ({cpu_isa()}), {os.cpu_count()} logical CPUs, "
        f"load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end; "
        f"date {datetime.date.today().isoformat()}; median of {args.rounds} rounds x "
        f"{args.runs} runs; LiteRT = ai-edge-litert {_version('ai-edge-litert')} "
        "default resolver (XNNPACK).",
        "",
        "| model | threads | " + ("mopt before (ms) | " if base else "")
        + "mopt (ms) | LiteRT (ms) | mopt / LiteRT |",
        "|---|---:|" + ("---:|" if base else "") + "---:|---:|---:|",
    ]
    for name, t, b, m, l in rows:
        lines.append(f"| {name} | {t} | " + (f"{b:.3f} | " if base else "")
                     + f"{m:.3f} | {l:.3f} | {m / l:.2f} |")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        pathlib.Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
