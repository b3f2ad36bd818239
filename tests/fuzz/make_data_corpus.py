#!/usr/bin/env python3
"""Regenerates the NPY and IDX seeds of the fuzz corpus
(tests/fuzz/corpus/npy/ and tests/fuzz/corpus/idx/).

Valid files of every dtype and header version the readers accept (written by
numpy itself where numpy can write them) and malformed ones that each break
one rule: magic, version, header length, dict syntax, dtype, order, shape
overflow, truncated or trailing data, gzip truncation, corruption and
trailing bytes. Every file is a few hundred bytes at most.

    python3 tests/fuzz/make_data_corpus.py [CORPUS_DIR]
"""
import gzip
import io
import os
import struct
import sys

import numpy as np


def npy_bytes(arr, version=None):
    f = io.BytesIO()
    if version is None:
        np.save(f, arr)
    else:
        np.lib.format.write_array(f, arr, version=version)
    return f.getvalue()


def npy_raw(header, data=b"", version=1):
    """An NPY file with a hand-written header dict (padded like numpy)."""
    h = header.encode("latin1")
    prefix = 10 if version == 1 else 12
    total = prefix + len(h) + 1
    pad = (64 - total % 64) % 64
    h = h + b" " * pad + b"\n"
    if version == 1:
        head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h))
    else:
        head = b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(h))
    return head + h + data


def npy_seeds():
    rng = np.random.default_rng(7)
    s = {}
    s["f4_2x3.npy"] = npy_bytes(rng.standard_normal((2, 3)).astype("<f4"))
    s["f8_5.npy"] = npy_bytes(np.array([0.5, -1e300, np.inf, np.nan, 3.0], "<f8"))
    s["i1_4.npy"] = npy_bytes(np.array([-128, -1, 0, 127], "i1"))
    s["u1_2x2.npy"] = npy_bytes(np.array([[0, 1], [254, 255]], "u1"))
    s["i2_3.npy"] = npy_bytes(np.array([-32768, 7, 32767], "<i2"))
    s["i4_2x1x2.npy"] = npy_bytes(np.arange(4, dtype="<i4").reshape(2, 1, 2))
    s["i8_3.npy"] = npy_bytes(np.array([-(2**63), 0, 2**63 - 1], "<i8"))
    s["b1_5.npy"] = npy_bytes(np.array([True, False, True, True, False]))
    s["scalar.npy"] = npy_bytes(np.array(1.5, "<f4"))
    s["empty_0x4.npy"] = npy_bytes(np.zeros((0, 4), "<f4"))
    s["v2.npy"] = npy_bytes(np.arange(6, dtype="<f4").reshape(3, 2), version=(2, 0))
    s["v3.npy"] = npy_bytes(np.arange(3, dtype="<i4"), version=(3, 0))
    s["rank8.npy"] = npy_bytes(np.zeros((1, 1, 1, 1, 1, 1, 1, 2), "u1"))
    # Hand-written headers numpy accepts: double quotes, Python 2 "L", '='.
    s["dquote_long.npy"] = npy_raw('{"descr": "=i2", "fortran_order": False, "shape": (2L,)}',
                                   b"\x01\x00\x02\x00")
    # Malformed: one rule each.
    good = s["f4_2x3.npy"]
    s["bad_magic.npy"] = b"\x93NUMPX" + good[6:]
    s["short.npy"] = good[:9]
    s["version4.npy"] = good[:6] + b"\x04\x00" + good[8:]
    s["hlen_too_big.npy"] = good[:8] + struct.pack("<H", 0xFFFF) + good[10:]
    s["truncated_data.npy"] = good[:-5]
    s["trailing.npy"] = good + b"\x00\x00\x00\x00"
    s["fortran.npy"] = npy_raw("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }",
                               b"\x00" * 4)
    s["big_endian.npy"] = npy_raw("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }",
                                  b"\x00" * 4)
    s["complex.npy"] = npy_raw("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }",
                               b"\x00" * 8)
    s["structured.npy"] = npy_raw(
        "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", b"\x00" * 4)
    s["shape_overflow.npy"] = npy_raw(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }")
    s["shape_huge_digits.npy"] = npy_raw(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }")
    s["shape_negative.npy"] = npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }")
    s["rank9.npy"] = npy_raw(
        "{'descr': '|u1', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", b"\x00")
    s["missing_key.npy"] = npy_raw("{'descr': '<f4', 'shape': (1,), }", b"\x00" * 4)
    s["unknown_key.npy"] = npy_raw(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", b"\x00" * 4)
    s["unterminated.npy"] = npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (1,", b"")
    s["escape.npy"] = npy_raw("{'descr': '<f\\4', 'fortran_order': False, 'shape': (1,), }")
    s["v2_hlen_overflow.npy"] = b"\x93NUMPY\x02\x00\xff\xff\xff\xff" + b"{" * 20
    return s


IDX_TYPES = {"u1": 0x08, "i1": 0x09, ">i2": 0x0B, ">i4": 0x0C, ">f4": 0x0D, ">f8": 0x0E}


def idx_bytes(arr, dtype):
    a = np.asarray(arr, dtype=dtype)
    head = bytes([0, 0, IDX_TYPES[dtype], a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape)
    return head + a.tobytes()


def gz(b, mtime=0):
    return gzip.compress(b, compresslevel=9, mtime=mtime)


def idx_seeds():
    s = {}
    s["ubyte_3x4.idx"] = idx_bytes(np.arange(12).reshape(3, 4), "u1")
    s["images_2x4x4.idx3"] = idx_bytes(np.arange(32).reshape(2, 4, 4) * 7 % 256, "u1")
    s["labels_5.idx1"] = idx_bytes([9, 0, 3, 2, 7], "u1")
    s["byte_4.idx"] = idx_bytes([-128, -1, 0, 127], "i1")
    s["short_3.idx"] = idx_bytes([-32768, 258, 32767], ">i2")
    s["int_2x2.idx"] = idx_bytes([[-(2**31), 1], [65536, 2**31 - 1]], ">i4")
    s["float_3.idx"] = idx_bytes([1.5, -0.0, np.inf], ">f4")
    s["double_3.idx"] = idx_bytes([1e300, -2.5, np.nan], ">f8")
    s["zero_items.idx"] = bytes([0, 0, 8, 2]) + struct.pack(">II", 0, 28)
    s["rank8.idx"] = bytes([0, 0, 8, 8]) + struct.pack(">8I", 1, 1, 1, 1, 1, 1, 1, 3) + b"abc"
    s["images.idx3.gz"] = gz(s["images_2x4x4.idx3"])
    s["labels.idx1.gz"] = gz(s["labels_5.idx1"])
    s["two_members.idx.gz"] = gz(s["short_3.idx"][:7]) + gz(s["short_3.idx"][7:])
    # Malformed: one rule each.
    good = s["ubyte_3x4.idx"]
    s["bad_magic.idx"] = b"\x01" + good[1:]
    s["unknown_type.idx"] = good[:2] + b"\x0a" + good[3:]
    s["rank0.idx"] = bytes([0, 0, 8, 0])
    s["rank9.idx"] = bytes([0, 0, 8, 9]) + struct.pack(">9I", *([1] * 9)) + b"a"
    s["truncated_dims.idx"] = good[:9]
    s["truncated_data.idx"] = good[:-1]
    s["trailing.idx"] = good + b"\x00"
    s["huge_dims.idx"] = bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 65536, 65536, 65536)
    s["over_2gib.idx"] = bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 0x20000000)
    g = gz(s["images_2x4x4.idx3"])
    s["gz_truncated.idx.gz"] = g[:-6]
    s["gz_trailing_garbage.idx.gz"] = g + b"junk"
    s["gz_trailing_data.idx.gz"] = gz(s["labels_5.idx1"] + b"\x01")
    s["gz_short_data.idx.gz"] = gz(s["labels_5.idx1"][:-1])
    bad_crc = bytearray(g)
    bad_crc[-8] ^= 0xFF
    s["gz_bad_crc.idx.gz"] = bytes(bad_crc)
    s["gz_bomb_claim.idx.gz"] = gz(bytes([0, 0, 8, 1]) + struct.pack(">I", 0x7FFFFFF0))
    s["gz_header_only.idx.gz"] = g[:10]
    return s


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    for sub, seeds in (("npy", npy_seeds()), ("idx", idx_seeds())):
        d = os.path.join(root, sub)
        os.makedirs(d, exist_ok=True)
        for name, data in sorted(seeds.items()):
            assert len(data) < 2048, name
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print(f"{d}: {len(seeds)} files, {sum(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    main()
