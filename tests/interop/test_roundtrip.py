"""`mopt copy IN -o OUT` reads a model and writes it back unchanged.

Unchanged means, checked with LiteRT only:
  * the same tensors (count, names, shapes, dtypes, quantization), the same
    buffer count, the same operator list with the same inputs/outputs and
    options, the same signatures and metadata entries;
  * every constant tensor holds the same bytes (read through the LiteRT
    interpreter's get_tensor and through the flatbuffer object API);
  * LiteRT gives bit-identical results on the copy for every tensor of the
    graph (intermediates included) on seeded inputs.
The file bytes themselves may differ (layout, alignment, description string).
"""

import numpy as np
import pytest
from ai_edge_litert import interpreter as litert
from ai_edge_litert import schema_py_generated as schema

from conftest import FIXTURE_NAMES, FIXTURES, model_inputs, run_mopt

N_SAMPLES = 5


@pytest.fixture(scope="module")
def copies(mopt_bin, tmp_path_factory):
    """Copies every fixture once; maps name -> (original path, copy path)."""
    out = {}
    d = tmp_path_factory.mktemp("copies")
    for name in FIXTURE_NAMES:
        src = FIXTURES / f"{name}.tflite"
        dst = d / f"{name}.copy.tflite"
        run_mopt(mopt_bin, "copy", src, "-o", dst)
        assert dst.is_file(), f"mopt copy wrote no file for {name}"
        out[name] = (src, dst)
    return out


def load_schema(path):
    buf = path.read_bytes()
    return schema.ModelT.InitFromPackedBuf(buf, 0), buf


def buffer_bytes(model, raw, index):
    """Contents of buffer `index` (inline data or offset/size form)."""
    b = model.buffers[index]
    if b.offset and b.offset > 1:
        return bytes(raw[b.offset:b.offset + b.size])
    return b"" if b.data is None else np.asarray(b.data, dtype=np.uint8).tobytes()


def plain(obj):
    """Turns a flatbuffer object-API value into comparable plain data."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "__dict__"):
        return {k: plain(v) for k, v in sorted(vars(obj).items())}
    return repr(obj)


def quant(q):
    """Quantization parameters; an empty table means the same as none."""
    p = plain(q)
    if p is None:
        return None
    if not any(p.get(k) for k in ("scale", "zeroPoint", "min", "max", "details")):
        return None
    return p


def normalize(path):
    """The model's meaning with buffer indices replaced by buffer contents."""
    m, raw = load_schema(path)
    opcodes = []
    for oc in m.operatorCodes:
        # Codes < 127 may live in either field; the larger of the two is the op.
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        opcodes.append({"code": code, "custom": plain(oc.customCode), "version": oc.version})
    subgraphs = []
    for sg in m.subgraphs:
        tensors = []
        for t in sg.tensors:
            tensors.append({
                "name": plain(t.name), "shape": plain(t.shape),
                "shape_signature": plain(t.shapeSignature), "type": t.type,
                "data": buffer_bytes(m, raw, t.buffer),
                "quantization": quant(t.quantization), "is_variable": t.isVariable,
                "sparsity": plain(t.sparsity), "has_rank": t.hasRank,
            })
        ops = []
        for op in sg.operators:
            ops.append({
                "op": opcodes[op.opcodeIndex], "inputs": plain(op.inputs),
                "outputs": plain(op.outputs), "options_type": op.builtinOptionsType,
                "options": plain(op.builtinOptions), "custom_options": plain(op.customOptions),
                "options2_type": op.builtinOptions2Type, "options2": plain(op.builtinOptions2),
                "intermediates": plain(op.intermediates),
            })
        subgraphs.append({"tensors": tensors, "operators": ops, "inputs": plain(sg.inputs),
                          "outputs": plain(sg.outputs), "name": plain(sg.name)})
    metadata = {plain(md.name): buffer_bytes(m, raw, md.buffer) for md in (m.metadata or [])}
    signatures = plain(m.signatureDefs)
    return {"version": m.version, "subgraphs": subgraphs, "metadata": metadata,
            "signatures": signatures, "num_buffers": len(m.buffers)}


def first_difference(a, b, path="model"):
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}.{k}: present in only one model"
            d = first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    if a != b:
        sa, sb = repr(a), repr(b)
        return f"{path}: {sa[:120]} vs {sb[:120]}"
    return None


def test_first_difference_detects_changes():
    a = {"t": [{"data": b"\x00\x01"}], "n": 3}
    assert first_difference(a, {"t": [{"data": b"\x00\x01"}], "n": 3}) is None
    assert "data" in first_difference(a, {"t": [{"data": b"\x00\x02"}], "n": 3})
    assert "length" in first_difference(a, {"t": [], "n": 3})


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_copy_is_structurally_identical(copies, name):
    src, dst = copies[name]
    a, b = normalize(src), normalize(dst)
    assert a["num_buffers"] == b["num_buffers"], "buffer count changed"
    diff = first_difference(a, b)
    assert diff is None, f"{name}: copy differs at {diff}"


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_copy_same_in_litert(copies, name):
    src, dst = copies[name]
    kw = {"experimental_op_resolver_type": litert.OpResolverType.BUILTIN_REF,
          "experimental_preserve_all_tensors": True}
    ia = litert.Interpreter(model_path=str(src), **kw)
    ib = litert.Interpreter(model_path=str(dst), **kw)
    ia.allocate_tensors()
    ib.allocate_tensors()

    ta, tb = ia.get_tensor_details(), ib.get_tensor_details()
    assert len(ta) == len(tb), f"tensor count {len(ta)} -> {len(tb)}"
    for x, y in zip(ta, tb):
        for key in ("name", "index", "dtype"):
            assert x[key] == y[key], f"tensor {x['index']} {key}: {x[key]} -> {y[key]}"
        assert np.array_equal(x["shape"], y["shape"]), f"tensor {x['name']} shape"
        qa, qb = x["quantization_parameters"], y["quantization_parameters"]
        for key in ("scales", "zero_points"):
            assert np.array_equal(qa[key], qb[key]), f"tensor {x['name']} {key}"
        assert qa["quantized_dimension"] == qb["quantized_dimension"]

    oa = [(o["op_name"], list(o["inputs"]), list(o["outputs"])) for o in ia._get_ops_details()]
    ob = [(o["op_name"], list(o["inputs"]), list(o["outputs"])) for o in ib._get_ops_details()]
    assert oa == ob, f"op list differs:\n{oa}\n{ob}"

    # Constant data through the interpreter (tensors backed by a non-empty
    # buffer in the original file).
    m, raw = load_schema(src)
    consts = [i for i, t in enumerate(m.subgraphs[0].tensors)
              if buffer_bytes(m, raw, t.buffer)]
    assert consts, "fixture has no constant tensors?"
    for i in consts:
        assert ia.get_tensor(i).tobytes() == ib.get_tensor(i).tobytes(), \
            f"constant tensor {i} ({ta[i]['name']}) changed"

    # Bit-identical results on every tensor, intermediates included.
    x = model_inputs(name, N_SAMPLES)
    inp = ia.get_input_details()[0]["index"]
    assert ib.get_input_details()[0]["index"] == inp
    for s in range(N_SAMPLES):
        ia.set_tensor(inp, x[s:s + 1])
        ib.set_tensor(inp, x[s:s + 1])
        ia.invoke()
        ib.invoke()
        for t in ta:
            try:
                va = ia.get_tensor(t["index"])
            except ValueError:
                continue  # tensors LiteRT does not expose (e.g. no data)
            vb = ib.get_tensor(t["index"])
            assert va.tobytes() == vb.tobytes(), \
                f"{name}: sample {s}, tensor {t['index']} ({t['name']}) differs"


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_copy_of_copy_is_stable(mopt_bin, copies, tmp_path, name):
    # Writing what mopt wrote must again give the same model (no drift).
    _, dst = copies[name]
    again = tmp_path / f"{name}.copy2.tflite"
    run_mopt(mopt_bin, "copy", dst, "-o", again)
    diff = first_difference(normalize(dst), normalize(again))
    assert diff is None, f"{name}: second copy differs at {diff}"
