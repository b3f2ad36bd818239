#!/usr/bin/env python3
"""Float latency: mopt vs LiteRT (XNNPACK) on the committed fixtures.

For every tests/fixtures/*.tflite and T in --threads (default 1 2):
  * mopt:   `build/mopt bench MODEL --threads T --runs R --json` (its own
            timing of invoke only, after warm-up; we take its median);
  * LiteRT: ai_edge_litert Interpreter(model_path, num_threads=T) with the
            default op resolver, i.e. XNNPACK, which is what a LiteRT user
            gets; median of R timed invokes after warm-up.
The two are run alternately for --rounds rounds in the same process so both
see the same machine load; the reported figure is the median of the per-round
medians. Prints a markdown table (ratio = mopt / LiteRT, < 1 means mopt is
faster), the CPU model and the date; --out FILE also writes it to FILE.

Usage: python bench/bench_float.py [--mopt build/mopt] [--runs 200] [--rounds 5]
                                   [--threads 1 2] [--models cnn ...] [--out FILE]
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
from ai_edge_litert import interpreter as litert

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"

_UNITS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def _unit_of(key):
    k = key.lower()
    for suffix, scale in _UNITS.items():
        if k.endswith("_" + suffix) or k == suffix:
            return scale
    return None


def find_median_ms(doc, unit=None):
    """Finds the median latency in mopt's JSON, in milliseconds.

    Accepts flat keys such as "median_ms"/"median_us"/"latency_median_ms" or
    a nested object such as {"latency_ms": {"median": ...}}."""
    if isinstance(doc, dict):
        for key, val in doc.items():
            scale = _unit_of(key) or unit
            if "median" in key.lower() and isinstance(val, (int, float)) and scale:
                return float(val) * scale
        for key, val in doc.items():
            if isinstance(val, (dict, list)):
                got = find_median_ms(val, _unit_of(key) or unit)
                if got is not None:
                    return got
    elif isinstance(doc, list):
        for val in doc:
            got = find_median_ms(val, unit)
            if got is not None:
                return got
    return None


def mopt_median_ms(mopt, model, threads, runs):
    cmd = [str(mopt), "bench", str(model), "--threads", str(threads), "--runs", str(runs), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    text = proc.stdout.strip()
    # Take the last JSON object on stdout (tolerates a log line before it).
    start = text.rfind("\n{")
    doc = json.loads(text[start + 1:] if start >= 0 else text)
    ms = find_median_ms(doc)
    if ms is None:
        sys.exit(f"no median latency in mopt bench output: {text}")
    return ms


class LiteRT:
    def __init__(self, model, threads):
        self.it = litert.Interpreter(model_path=str(model), num_threads=threads)
        self.it.allocate_tensors()
        d = self.it.get_input_details()[0]
        rng = np.random.default_rng(0)
        self.inp = d["index"]
        self.x = rng.uniform(0, 1, size=d["shape"]).astype(d["dtype"])
        self.it.set_tensor(self.inp, self.x)
        for _ in range(5):  # warm-up (XNNPACK packs weights on first run)
            self.it.invoke()

    def median_ms(self, runs):
        times = []
        for _ in range(runs):
            self.it.set_tensor(self.inp, self.x)
            t0 = time.perf_counter_ns()
            self.it.invoke()
            times.append((time.perf_counter_ns() - t0) * 1e-6)
        return statistics.median(times)


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_isa():
    """The SIMD extensions that matter for the kernels, from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), [])
    except OSError:
        return "?"
    want = ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"]
    return " ".join(w for w in want if w in flags) or "no AVX2"


def main():
    ap = argparse.ArgumentParser(description="mopt vs LiteRT float latency")
    ap.add_argument("--mopt", default=os.environ.get("MOPT_BIN", str(REPO / "build" / "mopt")))
    ap.add_argument("--runs", type=int, default=200, help="timed invokes per round and side")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--models", nargs="+", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    load0 = os.getloadavg()[0]
    names = args.models or sorted(p.stem for p in FIXTURES.glob("*.tflite"))
    rows = []
    for name in names:
        model = FIXTURES / f"{name}.tflite"
        for t in args.threads:
            peer = LiteRT(model, t)
            m_meds, l_meds = [], []
            for _ in range(args.rounds):
                m_meds.append(mopt_median_ms(args.mopt, model, t, args.runs))
                l_meds.append(peer.median_ms(args.runs))
            m, l = statistics.median(m_meds), statistics.median(l_meds)
            rows.append((name, t, m, l, m / l))
            print(f"# {name} T={t}: mopt {m:.3f} ms, LiteRT {l:.3f} ms", file=sys.stderr, flush=True)

    lines = [
        f"Machine: {cpu_model()} ({cpu_isa()}), {os.cpu_count()} logical CPUs, "
        f"load average {load0:.1f} at start; "
        f"date {datetime.date.today().isoformat()}; "
        f"median of {args.rounds} rounds x {args.runs} runs; LiteRT = ai-edge-litert "
        f"{_version('ai-edge-litert')} default resolver (XNNPACK).",
        "",
        "| model | threads | mopt (ms) | LiteRT XNNPACK (ms) | mopt / LiteRT |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, t, m, l, r in rows:
        lines.append(f"| {name} | {t} | {m:.3f} | {l:.3f} | {r:.2f} |")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        pathlib.Path(args.out).write_text(text)
    return 0


def _version(pkg):
    try:
        from importlib.metadata import version
        return version(pkg)
    except Exception:  # noqa: BLE001 - informational only
        return "?"


if __name__ == "__main__":
    sys.exit(main())
