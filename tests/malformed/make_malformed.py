#!/usr/bin/env python3
"""Writes the malformed .tflite files in this folder.

Each file breaks exactly one rule of the TFLite flatbuffer format or of the
structural checks mopt's reader makes; `mopt inspect FILE` must exit 2 with one
line on stderr that names the file (tests/cli/test_malformed.sh), and
mopt_tflite_read_file must refuse each (tests/unit/test_tflite_malformed.c).

Standard library only: the models are assembled by a small FlatBuffers builder
below, written from the wire format (independent of mopt's C writer). The
output is deterministic; rerun with `python3 make_malformed.py [OUTDIR]`.

The valid base model: input [1,4] float32 -> FULLY_CONNECTED (weights [3,4],
bias [3]) -> RELU -> output [1,3], with metadata and a signature def.
"""
import os
import struct
import sys


class Builder:
    """Back-to-front FlatBuffers builder. A ref is an object's distance from
    the end of the buffer; the final address of ref r is len(final) - r."""

    def __init__(self):
        self.data = bytearray()  # grows at the front
        self.minalign = 1

    def size(self):
        return len(self.data)

    def _push(self, b):
        self.data[0:0] = b

    def prep(self, align, extra):
        self.minalign = max(self.minalign, align)
        self._push(b"\0" * ((-(len(self.data) + extra)) % align))

    def _uoffset(self, ref):
        self.prep(4, 0)
        self._push(struct.pack("<I", len(self.data) + 4 - ref))

    def vector(self, fmt, items, align=1):
        es = struct.calcsize("<" + fmt)
        nbytes = es * len(items)
        self.prep(4, nbytes)
        self.prep(max(es, align), nbytes)
        self._push(b"".join(struct.pack("<" + fmt, x) for x in items))
        self._push(struct.pack("<I", len(items)))
        return len(self.data)

    def bytes_vector(self, blob, align=16):
        self.prep(4, len(blob))
        self.prep(align, len(blob))
        self._push(bytes(blob))
        self._push(struct.pack("<I", len(blob)))
        return len(self.data)

    def refs(self, refs):
        self.prep(4, 4 * len(refs))
        for r in reversed(refs):
            self._uoffset(r)
        self._push(struct.pack("<I", len(refs)))
        return len(self.data)

    def string(self, s):
        b = s.encode() if isinstance(s, str) else s
        self.prep(4, len(b) + 1)
        self._push(b + b"\0")
        self._push(struct.pack("<I", len(b)))
        return len(self.data)

    def table(self, fields):
        """fields: list of (id, fmt, value); fmt 'ref' for offsets, None value
        or ref 0 = absent."""
        self.prep(4, 0)
        start = len(self.data)
        locs = {}
        for fid, fmt, value in fields:
            if value is None or (fmt == "ref" and value == 0):
                continue
            if fmt == "ref":
                self._uoffset(value)
            else:
                n = struct.calcsize("<" + fmt)
                self.prep(n, 0)
                self._push(struct.pack("<" + fmt, value))
            locs[fid] = len(self.data)
        self.prep(4, 0)
        self._push(b"\0\0\0\0")
        table = len(self.data)
        n = max(locs) + 1 if locs else 0
        vt = [4 + 2 * n, table - start] + [table - locs[i] if i in locs else 0 for i in range(n)]
        self._push(struct.pack("<%dH" % len(vt), *vt))
        vt_ref = len(self.data)
        # soffset: vtable address = table address - soffset
        pos = len(self.data) - table
        self.data[pos:pos + 4] = struct.pack("<i", vt_ref - table)
        return table

    def finish(self, root, ident=b"TFL3"):
        self.prep(self.minalign, 8)
        self._push(ident)
        self._uoffset(root)
        return bytes(self.data)


FC, RELU = 9, 19


def model(**k):
    """The base model with knobs; returns (bytes, refs) where refs maps a few
    object names to their refs for byte-level damage."""
    o = dict(ident=b"TFL3", version=3, n_subgraphs=1, op0_code=FC, op0_dep=FC, op0_custom=None,
             op0_opcode_index=0, op0_opt_type=8, op0_in0=0, w_name="fc/w", w_shape=[3, 4],
             w_type=0, w_buffer=1, w_bytes=48, w_scale=0, w_zp=0, w_sparse=False,
             w_external=0, buf1_offset=0, sg_in=0, meta_buffer=3)
    o.update(k)
    b = Builder()
    refs = {}
    data = bytes((i * 13 + 5) & 0xFF for i in range(512))
    bufs = [b.table([])]
    d1 = b.bytes_vector(data[:o["w_bytes"]]) if o["w_bytes"] else 0
    bufs.append(b.table([(0, "ref", d1), (1, "Q", o["buf1_offset"] or None),
                         (2, "Q", 16 if o["buf1_offset"] else None)]))
    bufs.append(b.table([(0, "ref", b.bytes_vector(data[:12]))]))
    bufs.append(b.table([(0, "ref", b.bytes_vector(b"1.5.0\0\0\0"))]))
    buffers = b.refs(bufs)

    def tensor(name, shape, buf, ttype=0, extra=()):
        rn, rs = b.string(name), b.vector("i", shape)
        return b.table([(0, "ref", rs), (1, "b", ttype), (2, "I", buf), (3, "ref", rn)] + list(extra))

    def subgraph():
        ts = [tensor("in", [1, 4], 0)]
        extra = []
        if o["w_scale"] or o["w_zp"]:
            rs = b.vector("f", [0.5] * o["w_scale"]) if o["w_scale"] else 0
            rz = b.vector("q", [0] * o["w_zp"]) if o["w_zp"] else 0
            extra.append((4, "ref", b.table([(2, "ref", rs), (3, "ref", rz)])))
        if o["w_sparse"]:
            extra.append((6, "ref", b.table([(0, "ref", b.vector("i", [0, 1]))])))
        if o["w_external"]:
            extra.append((10, "I", o["w_external"]))
        ts.append(tensor(o["w_name"], o["w_shape"], o["w_buffer"], o["w_type"], extra))
        ts.append(tensor("fc/b", [3], 2))
        ts.append(tensor("fc/out", [1, 3], 0))
        ts.append(tensor("out", [1, 3], 0))
        refs["tensors"] = b.refs(ts)
        ri, ro = b.vector("i", [o["op0_in0"], 1, 2]), b.vector("i", [3])
        opt = b.table([(0, "b", 1)]) if o["op0_opt_type"] else 0
        op0 = b.table([(0, "I", o["op0_opcode_index"]), (1, "ref", ri), (2, "ref", ro),
                       (3, "B", o["op0_opt_type"] or None), (4, "ref", opt)])
        ri, ro = b.vector("i", [3]), b.vector("i", [4])
        op1 = b.table([(0, "I", 1), (1, "ref", ri), (2, "ref", ro)])
        ops = b.refs([op0, op1])
        gi, go, name = b.vector("i", [o["sg_in"]]), b.vector("i", [4]), b.string("main")
        return b.table([(0, "ref", refs["tensors"]), (1, "ref", gi), (2, "ref", go),
                        (3, "ref", ops), (4, "ref", name)])

    subgraphs = b.refs([subgraph() for _ in range(o["n_subgraphs"])])
    custom = b.string(o["op0_custom"]) if o["op0_custom"] else 0
    c0 = b.table([(0, "b", o["op0_dep"]), (1, "ref", custom), (2, "i", 1), (3, "i", o["op0_code"])])
    c1 = b.table([(0, "b", RELU), (3, "i", RELU)])
    opcodes = b.refs([c0, c1])
    md = b.table([(0, "ref", b.string("min_runtime_version")), (1, "I", o["meta_buffer"])])
    metadata = b.refs([md])
    m_in = b.table([(0, "ref", b.string("in")), (1, "I", 0)])
    m_out = b.table([(0, "ref", b.string("out")), (1, "I", 4)])
    sd = b.table([(0, "ref", b.refs([m_in])), (1, "ref", b.refs([m_out])),
                  (2, "ref", b.string("serving_default"))])
    sigs = b.refs([sd])
    desc = b.string("malformed test model")
    root = b.table([(0, "I", o["version"]), (1, "ref", opcodes), (2, "ref", subgraphs),
                    (3, "ref", desc), (4, "ref", buffers), (6, "ref", metadata),
                    (7, "ref", sigs)])
    refs["root"] = root
    out = b.finish(root, o["ident"])
    return out, {k: len(out) - v for k, v in refs.items()}


def patch32(blob, at, value):
    b = bytearray(blob)
    b[at:at + 4] = struct.pack("<I", value & 0xFFFFFFFF)
    return bytes(b)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    base, pos = model()
    files = {}
    files["empty"] = b""
    files["short_header"] = base[:6]
    files["truncated_half"] = base[: len(base) // 2]
    files["truncated_last_byte"] = base[:-1]
    files["bad_identifier"] = model(ident=b"TFL2")[0]
    files["root_out_of_range"] = patch32(base, 0, len(base) + 64)
    files["root_misaligned"] = patch32(base, 0, struct.unpack_from("<I", base, 0)[0] + 2)
    files["vtable_out_of_range"] = patch32(base, pos["root"], 0x7FFFFF00)
    files["vector_too_long"] = patch32(base, pos["tensors"], 0x3FFFFFFF)
    i = base.index(b"fc/w\0")
    files["string_unterminated"] = base[: i + 4] + b"X" + base[i + 5:]
    files["schema_version_2"] = model(version=2)[0]
    files["two_subgraphs"] = model(n_subgraphs=2)[0]
    files["unsupported_op_batch_matmul"] = model(op0_code=126, op0_dep=126)[0]
    files["custom_op"] = model(op0_code=32, op0_dep=32, op0_custom="MyCustomOp")[0]
    files["opcode_index_out_of_range"] = model(op0_opcode_index=7)[0]
    files["options_type_mismatch"] = model(op0_opt_type=1)[0]
    files["op_input_out_of_range"] = model(op0_in0=40)[0]
    files["tensor_buffer_out_of_range"] = model(w_buffer=99)[0]
    files["buffer_size_mismatch"] = model(w_bytes=44)[0]
    files["negative_dim"] = model(w_shape=[-3, 4])[0]
    files["rank7"] = model(w_shape=[3, 4, 1, 1, 1, 1, 1])[0]
    files["unknown_tensor_type"] = model(w_type=99)[0]
    files["quant_length_mismatch"] = model(w_scale=3, w_zp=2)[0]
    files["sparse_tensor"] = model(w_sparse=True)[0]
    files["external_buffer"] = model(buf1_offset=4096)[0]
    files["graph_input_out_of_range"] = model(sg_in=12)[0]
    files["metadata_buffer_out_of_range"] = model(meta_buffer=50)[0]
    for name, blob in sorted(files.items()):
        with open(os.path.join(outdir, name + ".tflite"), "wb") as f:
            f.write(blob)
    # The valid base, for checking the builder itself (not a malformed file).
    with open(os.path.join(outdir, "valid_base.tflite.ok"), "wb") as f:
        f.write(base)
    print("wrote %d malformed files to %s" % (len(files), outdir))


if __name__ == "__main__":
    main()
