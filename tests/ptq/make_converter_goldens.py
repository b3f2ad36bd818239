#!/usr/bin/env python3
"""Records what the TFLite converter produces for post-training quantization,
as goldens for mopt's quantizer (tests/unit/test_ptq.c, tests/interop/test_ptq.py).

For every float model (the fixtures in tests/fixtures/ and the small "zoo"
models below, written to tests/ptq/models/) and every mode, the TF converter
quantizes the model with the same representative samples mopt's tests use:
the first CALIB_SAMPLES training images of tests/data/fashion-mnist-subset,
scaled x/255 (mopt's default). The converter's outputs are committed in
tests/ptq/converter/ with MANIFEST.txt listing them; nothing here depends on
mopt, so the goldens cannot inherit mopt's mistakes.

The fixtures are float .tflite files, which the converter cannot read; they
are rebuilt as TensorFlow functions with the same weights (tflite_to_tf.py)
and the script checks that converting the rebuilt function without
optimizations gives back the same operators.

    /tmp/tfvenv/bin/python tests/ptq/make_converter_goldens.py

Versions used for the committed files: see converter/VERSIONS.txt (written by
this script).
"""

import gzip
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import tflite_to_tf  # noqa: E402

CALIB_SAMPLES = 200
SUBSET = os.path.join(ROOT, "tests", "data", "fashion-mnist-subset")
SUPPORTED_OPS = {
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SUB", "MUL",
    "AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "PAD", "RESHAPE", "SOFTMAX",
    "CONCATENATION", "RELU", "RELU6", "LOGISTIC", "TANH", "HARD_SWISH",
    "QUANTIZE", "DEQUANTIZE", "TRANSPOSE",
}

# (model, mode, per_tensor): which conversions are recorded. Modes:
# float16, dynamic, int8 (float I/O), int8io (int8 I/O), int16x8 (float I/O).
CASES = [
    ("cnn", "float16", False), ("cnn", "dynamic", False), ("cnn", "dynamic", True),
    ("cnn", "int8", False), ("cnn", "int8", True), ("cnn", "int8io", False),
    ("cnn", "int16x8", False), ("cnn", "int16x8", True),
    ("dscnn", "dynamic", False), ("dscnn", "int8", False), ("dscnn", "int8", True),
    ("dscnn", "int16x8", False),
    ("resnet", "int8", False), ("resnet", "int16x8", False), ("resnet", "dynamic", False),
    ("mlp", "float16", False), ("mlp", "int8", False), ("mlp", "int8io", False),
    ("mlp", "dynamic", False),
    ("zoo_act", "int8", False), ("zoo_act", "int8io", False), ("zoo_act", "int16x8", False),
    ("zoo_act", "float16", False),
    ("zoo_conv", "int8", False), ("zoo_conv", "int16x8", False), ("zoo_conv", "dynamic", False),
    ("zoo_conv", "dynamic", True), ("zoo_conv", "int8", True),
    ("zoo_edge", "int8", False), ("zoo_edge", "int16x8", False), ("zoo_edge", "dynamic", False),
]


def calib_images():
    with open(os.path.join(SUBSET, "train-images-idx3-ubyte.gz"), "rb") as f:
        raw = gzip.decompress(f.read())
    n = int.from_bytes(raw[4:8], "big")
    x = np.frombuffer(raw, np.uint8, offset=16).reshape(n, 28, 28, 1)
    return (x[:CALIB_SAMPLES].astype(np.float32) / np.float32(255.0))


# ------------------------------------------------------------ zoo models --
# Small seeded models that exercise the parameter rules the fixtures do not:
# fixed-range outputs feeding a concatenation, constants in ADD/SUB/MUL, a
# FULLY_CONNECTED without bias, a depthwise filter large enough for dynamic
# range quantization, PAD/TRANSPOSE/MEAN/standalone RELU and RELU6, a
# concatenation of a tensor with itself, all-zero and tiny filter channels,
# a bias too large for its scale, and activations that are constant.

def _w(rng, *shape, scale=0.2):
    return tf.constant(rng.normal(0.0, scale, shape).astype(np.float32))


def zoo_act(rng):
    w1, b1 = _w(rng, 784, 32, scale=0.05), _w(rng, 32)
    w2, b2 = _w(rng, 784, 32, scale=0.05), _w(rng, 32)
    w3 = _w(rng, 64, 10)
    vec = tf.constant(rng.uniform(0.5, 2.0, (64,)).astype(np.float32))
    vec2 = tf.constant(rng.normal(0.0, 0.3, (64,)).astype(np.float32))

    def f(x):
        h = tf.reshape(x, [1, 784])
        a = tf.sigmoid(tf.matmul(h, w1) + b1)
        t = tf.tanh(tf.matmul(h, w2) + b2)
        c = tf.concat([a, t], axis=1)
        r = tf.nn.relu(c - 0.25)
        m = r * vec + vec2
        r6 = tf.nn.relu6(m * 4.0)
        o = tf.matmul(r6, w3)
        return tf.nn.softmax(o)
    return f


def zoo_conv(rng):
    w1, b1 = _w(rng, 3, 3, 1, 16), _w(rng, 16, scale=0.05)
    wd, bd = _w(rng, 3, 3, 16, 8), _w(rng, 128, scale=0.05)
    w2, b2 = _w(rng, 1, 1, 128, 16, scale=0.1), _w(rng, 16, scale=0.05)
    w3 = _w(rng, 32, 10)

    def f(x):
        y = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w1, 1, "SAME"), b1))
        y = tf.nn.relu6(tf.nn.bias_add(tf.nn.depthwise_conv2d(y, wd, [1, 2, 2, 1], "SAME"), bd))
        p = tf.nn.avg_pool2d(y, 2, 2, "VALID")
        p = tf.pad(p, [[0, 0], [1, 1], [1, 1], [0, 0]])
        y2 = tf.nn.bias_add(tf.nn.conv2d(p, w2, 1, "VALID"), b2)
        c = tf.concat([y2, y2], axis=-1)
        t = tf.transpose(c, [0, 3, 1, 2])
        m = tf.reduce_mean(t, axis=[2, 3])
        return tf.matmul(m, w3)
    return f


def zoo_edge(rng):
    w = rng.normal(0.0, 0.2, (3, 3, 1, 8)).astype(np.float32)
    w[..., 0] *= 1e-6          # tiny channel: its bias does not fit in int32
    w[..., 1] = 0.0            # all-zero channel
    b = rng.normal(0.0, 0.05, (8,)).astype(np.float32)
    b[0] = 40.0
    b[1] = 0.5
    w, b = tf.constant(w), tf.constant(b)
    wz, bz = tf.zeros([3, 3, 8, 8]), tf.zeros([8])            # constant-zero branch
    wc, bc = tf.zeros([3, 3, 8, 8]), tf.fill([8], 0.75)       # constant-0.75 branch
    w2 = _w(rng, 8 * 14 * 14, 10, scale=0.02)
    b2 = _w(rng, 10, scale=0.02)

    def f(x):
        y = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b))
        z = tf.nn.bias_add(tf.nn.conv2d(y, wz, 1, "SAME"), bz)
        k = tf.nn.bias_add(tf.nn.conv2d(y, wc, 1, "SAME"), bc)
        s = y + z
        s = s * k
        p = tf.nn.max_pool2d(s, 2, 2, "VALID")
        h = tf.reshape(p, [1, 8 * 14 * 14])
        return tf.matmul(h, w2) + b2
    return f


ZOO = {"zoo_act": (zoo_act, 11), "zoo_conv": (zoo_conv, 12), "zoo_edge": (zoo_edge, 13)}


def zoo_converter(name):
    build, seed = ZOO[name]
    f = build(np.random.default_rng(20240601 + seed))
    fn = tf.function(f, input_signature=[tf.TensorSpec([1, 28, 28, 1], tf.float32)])
    return tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)


def float_model_path(name):
    if name in ZOO:
        return os.path.join(HERE, "models", name + ".tflite")
    return os.path.join(ROOT, "tests", "fixtures", name + ".tflite")


def make_converter(name):
    if name in ZOO:
        return zoo_converter(name)
    return tflite_to_tf.Rebuilt(float_model_path(name)).converter()


def quantize(name, mode, per_tensor, data):
    c = make_converter(name)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    if per_tensor:
        c._experimental_disable_per_channel = True

    def rep():
        for i in range(data.shape[0]):
            yield [data[i:i + 1]]
    if mode == "float16":
        c.target_spec.supported_types = [tf.float16]
    elif mode in ("int8", "int8io"):
        c.representative_dataset = rep
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if mode == "int8io":
            c.inference_input_type = tf.int8
            c.inference_output_type = tf.int8
    elif mode == "int16x8":
        c.representative_dataset = rep
        c.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    elif mode != "dynamic":
        raise ValueError(mode)
    return c.convert()


def main():
    data = calib_images()
    os.makedirs(os.path.join(HERE, "models"), exist_ok=True)
    outdir = os.path.join(HERE, "converter")
    os.makedirs(outdir, exist_ok=True)
    for name in ZOO:
        flat = zoo_converter(name).convert()
        ops = set(tflite_to_tf.op_names(flat))
        if ops - SUPPORTED_OPS:
            raise SystemExit(f"{name}: operators outside mopt's set: {sorted(ops - SUPPORTED_OPS)}")
        with open(float_model_path(name), "wb") as f:
            f.write(flat)
        print(f"{name}: float model, ops {tflite_to_tf.op_names(flat)}", flush=True)
    for name in ("cnn", "dscnn", "resnet", "mlp"):
        want = tflite_to_tf.op_names(open(float_model_path(name), "rb").read())
        got = tflite_to_tf.op_names(make_converter(name).convert())
        if sorted(want) != sorted(got):
            raise SystemExit(f"{name}: rebuilt model converts to {got}, fixture has {want}")
    lines = []
    for name, mode, per_tensor in CASES:
        flat = quantize(name, mode, per_tensor, data)
        out = f"{name}_{mode}{'_pt' if per_tensor else ''}.tflite"
        with open(os.path.join(outdir, out), "wb") as f:
            f.write(flat)
        rel = os.path.relpath(float_model_path(name), ROOT)
        lines.append(f"{out} {rel} {mode} {'per-tensor' if per_tensor else 'per-channel'} "
                     f"{CALIB_SAMPLES}")
        print(f"{out}: {len(flat)} bytes", flush=True)
    with open(os.path.join(outdir, "MANIFEST.txt"), "w") as f:
        f.write("# converter-output float-model mode weights calibration-samples\n")
        f.write("# calibration: first N training images of tests/data/fashion-mnist-subset, x/255\n")
        f.write("\n".join(lines) + "\n")
    from importlib.metadata import version
    with open(os.path.join(outdir, "VERSIONS.txt"), "w") as f:
        f.write(f"tensorflow {tf.__version__}\nai-edge-litert {version('ai-edge-litert')}\n"
                f"numpy {np.__version__}\n")


if __name__ == "__main__":
    main()
