#!/usr/bin/env python3
"""Writes tests/data/fashion-mnist-subset/: the first 1,000 training and the
first 500 test images and labels of Fashion-MNIST, as gzip IDX files with the
standard names, so that the folder is a valid `--data` spec for mopt.

Source: Debian's package dataset-fashion-mnist
(/usr/share/datasets/fashion-mnist), or $MOPT_FASHION_MNIST_DIR. Nothing is
downloaded. Needs numpy only.

    python3 tests/data/make_subset.py [--out DIR]

The gzip streams are written with mtime 0 and no file name so the output is
byte-for-byte reproducible.
"""

import argparse
import gzip
import io
import os
import struct

import numpy as np

SPLITS = {"train": 1000, "t10k": 500}
IDX_UBYTE = 0x08


def source_dir():
    return os.environ.get("MOPT_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    zero, dtype, ndims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != IDX_UBYTE:
        raise SystemExit(f"{path}: not a ubyte IDX file")
    dims = struct.unpack(">" + "I" * ndims, raw[4:4 + 4 * ndims])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndims)
    if data.size != int(np.prod(dims)):
        raise SystemExit(f"{path}: data size does not match the header")
    return data.reshape(dims)


def write_idx_gz(path, arr):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = struct.pack(">HBB", 0, IDX_UBYTE, arr.ndim)
    header += struct.pack(">" + "I" * arr.ndim, *arr.shape)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(header + arr.tobytes())
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(here, "fashion-mnist-subset"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    src = source_dir()
    for split, n in SPLITS.items():
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{split}-{kind}-ubyte"
            path = os.path.join(src, name + ".gz")
            if not os.path.exists(path):
                path = os.path.join(src, name)
            arr = read_idx(path)[:n]
            write_idx_gz(os.path.join(args.out, name + ".gz"), arr)
            print(f"{name}.gz: shape {arr.shape}")


if __name__ == "__main__":
    main()
