#!/usr/bin/env python3
"""Regenerates the converter-made seeds of the fuzz corpus (tests/fuzz/corpus/tflite/).

Needs TensorFlow (tests only; the pinned environment has tensorflow-cpu 2.21.0).
Small random-weight Keras models that together use every op mopt reads, in
float32, int8 (int8 and float I/O), float16 and 16x8 form. The other seeds are
copies of tests/malformed/*.tflite and valid_base.tflite.ok, made by
tests/malformed/make_malformed.py.

    python3 tests/fuzz/make_tflite_corpus.py [OUTDIR]
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

L = tf.keras.layers


def main_model():
    inp = tf.keras.Input((8, 8, 2), batch_size=1)
    x = L.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inp)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    z = L.Conv2D(4, 1)(y)
    a = L.Add()([x, z])
    b = L.Concatenate()([a, y])
    b = L.MaxPooling2D(2)(b)
    c = L.ZeroPadding2D(1)(b)
    c = L.AveragePooling2D(2, padding="same")(c)
    m = L.GlobalAveragePooling2D()(b)
    r = L.Flatten()(c)
    d = L.Dense(4, activation="sigmoid")(r)
    e = L.Dense(4, activation="tanh")(m)
    f = L.Multiply()([d, e])
    f = L.Subtract()([f, e])
    return tf.keras.Model(inp, L.Softmax()(f))


def misc_model():
    inp = tf.keras.Input((3, 4), batch_size=1)
    x = L.ReLU()(inp)
    x = L.Activation("hard_swish")(x)
    x = L.Permute((2, 1))(x)
    return tf.keras.Model(inp, L.Reshape((12,))(x))


def rep():
    rng = np.random.default_rng(0)
    for _ in range(4):
        yield [rng.random((1, 8, 8, 2), dtype=np.float32)]


def convert(model, mode):
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "float":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode in ("int8", "int8_floatio", "int16x8"):
        c.representative_dataset = rep
    if mode == "int8":
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = tf.int8
        c.inference_output_type = tf.int8
    if mode == "fp16":
        c.target_spec.supported_types = [tf.float16]
    if mode == "int16x8":
        c.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return c.convert()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus", "tflite")
    tf.keras.utils.set_random_seed(0)
    m = main_model()
    for mode in ("float", "int8", "int8_floatio", "fp16", "int16x8"):
        with open(os.path.join(out, "conv_%s.tflite" % mode), "wb") as f:
            f.write(convert(m, mode))
    with open(os.path.join(out, "misc_float.tflite"), "wb") as f:
        f.write(convert(misc_model(), "float"))


if __name__ == "__main__":
    main()
