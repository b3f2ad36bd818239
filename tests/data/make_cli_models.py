#!/usr/bin/env python3
"""Writes the small models the CLI tests use beyond tests/fixtures/:

  sparse_mlp.tflite       float: [1,28,28,1] -> RESHAPE -> FC(16, relu) -> FC(10)
                          -> SOFTMAX; the first FC's weights are exactly 50%
                          zeros (every other input column), seeded random
                          weights otherwise (not trained).
  sparse_mlp_int8.tflite  the same model, full-integer quantized with int8
                          input and output (calibrated on the committed
                          subset's first 100 training images), so its weight
                          zeros become q == zero_point.
  two_io.tflite           two inputs a, b [1,4] float32 and two outputs
                          a + b and a * b (for `mopt run` with several
                          --input / -o).

Needs TensorFlow (tests/requirements-fixtures.txt). Nothing is downloaded.

    python tests/data/make_cli_models.py
"""

import contextlib
import gzip
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
import tensorflow as tf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
layers = tf.keras.layers
SEED = 7


def subset_train_images(n):
    raw = gzip.decompress(open(os.path.join(HERE, "fashion-mnist-subset",
                                            "train-images-idx3-ubyte.gz"), "rb").read())
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 28, 28, 1)[:n]
    return x.astype(np.float32) / np.float32(255.0)


def convert(model, int8=False, calib=None):
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(calib.shape[0]))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        return conv.convert()


def sparse_mlp():
    tf.keras.utils.set_random_seed(SEED)
    inp = layers.Input((28, 28, 1), batch_size=1)
    x = layers.Reshape((784,))(inp)
    fc1 = layers.Dense(16, activation="relu")
    x = fc1(x)
    out = layers.Softmax()(layers.Dense(10)(x))
    model = tf.keras.Model(inp, out)
    w, b = fc1.get_weights()           # w: [784, 16]
    w[1::2, :] = 0.0                   # every other input -> exactly half zeros
    b[:] = 0.01
    fc1.set_weights([w, b])
    return model


def two_io():
    a = layers.Input((4,), batch_size=1, name="a")
    b = layers.Input((4,), batch_size=1, name="b")
    return tf.keras.Model([a, b], [layers.Add()([a, b]), layers.Multiply()([a, b])])


def main():
    model = sparse_mlp()
    files = {
        "sparse_mlp.tflite": convert(model),
        "sparse_mlp_int8.tflite": convert(model, int8=True, calib=subset_train_images(100)),
        "two_io.tflite": convert(two_io()),
    }
    for name, data in files.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
