"""Rebuilds a float .tflite model as a TensorFlow function so that the TFLite
converter can quantize exactly the same float model mopt quantizes.

The converter only accepts TensorFlow graphs (Keras models, SavedModels,
concrete functions), while mopt's fixtures are float .tflite files. This
module reads the flatbuffer with TensorFlow's own schema bindings
(tensorflow.lite.tools.flatbuffer_utils, i.e. independent of mopt), and maps
every operator of mopt's op set to the TensorFlow op the converter lowers
back to the same TFLite operator, with the same constant weights. Converting
the result without optimizations reproduces the original operator list (the
scripts check this), so converter and mopt quantize identical models.

Used by tests/ptq/make_converter_goldens.py and bench/bench_ptq.py.
"""

import numpy as np
import tensorflow as tf
from tensorflow.lite.tools import flatbuffer_utils

# BuiltinOperator codes (schema.fbs).
ADD, AVERAGE_POOL_2D, CONCATENATION, CONV_2D, DEPTHWISE_CONV_2D = 0, 1, 2, 3, 4
DEQUANTIZE, FULLY_CONNECTED, LOGISTIC, MAX_POOL_2D, MUL = 6, 9, 14, 17, 18
RELU, RELU6, RESHAPE, SOFTMAX, TANH, PAD, TRANSPOSE, MEAN, SUB = 19, 21, 22, 25, 28, 34, 39, 40, 41
HARD_SWISH = 117

_NP = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64, 7: np.int16, 9: np.int8, 3: np.uint8}


def _act(x, a):
    if a == 0:
        return x
    if a == 1:
        return tf.nn.relu(x)
    if a == 3:
        return tf.nn.relu6(x)
    if a == 2:
        return tf.clip_by_value(x, -1.0, 1.0)
    if a == 4:
        return tf.tanh(x)
    raise ValueError(f"fused activation {a} not supported")


def _pad(p):
    return "SAME" if p == 0 else "VALID"


class Rebuilt:
    """A float .tflite model as a callable TensorFlow graph."""

    def __init__(self, path):
        self.model = flatbuffer_utils.read_model(path)
        if len(self.model.subgraphs) != 1:
            raise ValueError(f"{path}: one subgraph expected")
        self.sg = self.model.subgraphs[0]
        self.codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in self.model.operatorCodes]
        self.input_shapes = [list(self.sg.tensors[i].shape) for i in self.sg.inputs]

    def const(self, t):
        ten = self.sg.tensors[t]
        buf = self.model.buffers[ten.buffer]
        if buf.data is None or len(buf.data) == 0:
            return None
        arr = np.frombuffer(bytes(bytearray(buf.data)), dtype=_NP[ten.type])
        return arr.reshape(list(ten.shape)) if len(ten.shape) else arr.reshape(())

    def __call__(self, *inputs):
        vals = {}
        for i, t in enumerate(self.sg.inputs):
            vals[t] = inputs[i]

        def get(t):
            if t in vals:
                return vals[t]
            c = self.const(t)
            if c is None:
                raise ValueError(f"tensor {t} used before it is produced")
            return tf.constant(c)

        for op in self.sg.operators:
            code = self.codes[op.opcodeIndex]
            o = op.builtinOptions
            ins = list(op.inputs)
            if code == CONV_2D:
                x = get(ins[0])
                w = np.transpose(self.const(ins[1]), (1, 2, 3, 0))  # OHWI -> HWIO
                y = tf.nn.conv2d(x, tf.constant(w), strides=[1, o.strideH, o.strideW, 1],
                                 padding=_pad(o.padding),
                                 dilations=[1, o.dilationHFactor, o.dilationWFactor, 1])
                if len(ins) > 2 and ins[2] >= 0:
                    y = tf.nn.bias_add(y, get(ins[2]))
                y = _act(y, o.fusedActivationFunction)
            elif code == DEPTHWISE_CONV_2D:
                x = get(ins[0])
                w = self.const(ins[1])  # [1, KH, KW, C*M]
                c = int(x.shape[-1])
                w = w.reshape(w.shape[1], w.shape[2], c, w.shape[3] // c)
                y = tf.nn.depthwise_conv2d(x, tf.constant(w), strides=[1, o.strideH, o.strideW, 1],
                                           padding=_pad(o.padding),
                                           dilations=[o.dilationHFactor, o.dilationWFactor])
                if len(ins) > 2 and ins[2] >= 0:
                    y = tf.nn.bias_add(y, get(ins[2]))
                y = _act(y, o.fusedActivationFunction)
            elif code == FULLY_CONNECTED:
                x = get(ins[0])
                w = self.const(ins[1])  # [units, depth]
                out_shape = list(self.sg.tensors[op.outputs[0]].shape)
                x2 = tf.reshape(x, [-1, w.shape[1]]) if len(x.shape) != 2 else x
                y = tf.matmul(x2, tf.constant(w.T))
                if len(ins) > 2 and ins[2] >= 0:
                    y = tf.nn.bias_add(y, get(ins[2]))
                y = _act(y, o.fusedActivationFunction)
                if list(y.shape) != out_shape:
                    y = tf.reshape(y, out_shape)
            elif code in (MAX_POOL_2D, AVERAGE_POOL_2D):
                x = get(ins[0])
                f = tf.nn.max_pool2d if code == MAX_POOL_2D else tf.nn.avg_pool2d
                y = f(x, ksize=[1, o.filterHeight, o.filterWidth, 1],
                      strides=[1, o.strideH, o.strideW, 1], padding=_pad(o.padding))
                y = _act(y, o.fusedActivationFunction)
            elif code in (ADD, SUB, MUL):
                a, b = get(ins[0]), get(ins[1])
                y = a + b if code == ADD else a - b if code == SUB else a * b
                y = _act(y, o.fusedActivationFunction if o is not None else 0)
            elif code == RELU:
                y = tf.nn.relu(get(ins[0]))
            elif code == RELU6:
                y = tf.nn.relu6(get(ins[0]))
            elif code == LOGISTIC:
                y = tf.sigmoid(get(ins[0]))
            elif code == TANH:
                y = tf.tanh(get(ins[0]))
            elif code == HARD_SWISH:
                x = get(ins[0])
                y = x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)
            elif code == SOFTMAX:
                x = get(ins[0])
                beta = o.beta if o is not None else 1.0
                y = tf.nn.softmax(x * beta if beta != 1.0 else x)
            elif code == RESHAPE:
                shape = list(self.sg.tensors[op.outputs[0]].shape)
                y = tf.reshape(get(ins[0]), shape)
            elif code == MEAN:
                axes = self.const(ins[1]).reshape(-1).tolist()
                y = tf.reduce_mean(get(ins[0]), axis=axes, keepdims=bool(o.keepDims))
            elif code == PAD:
                y = tf.pad(get(ins[0]), tf.constant(self.const(ins[1])))
            elif code == CONCATENATION:
                y = tf.concat([get(t) for t in ins], axis=o.axis)
                y = _act(y, o.fusedActivationFunction)
            elif code == TRANSPOSE:
                y = tf.transpose(get(ins[0]), self.const(ins[1]).reshape(-1).tolist())
            else:
                raise ValueError(f"operator code {code} not supported by the rebuilder")
            vals[op.outputs[0]] = y
        outs = [vals[t] for t in self.sg.outputs]
        return outs[0] if len(outs) == 1 else outs

    def concrete_function(self):
        sig = [tf.TensorSpec(s, tf.float32) for s in self.input_shapes]
        return tf.function(self.__call__, input_signature=sig).get_concrete_function()

    def converter(self):
        fn = self.concrete_function()
        return tf.lite.TFLiteConverter.from_concrete_functions([fn])


def op_names(flat):
    """Operator names of a converted model, in order."""
    from ai_edge_litert import interpreter as litert
    it = litert.Interpreter(model_content=bytes(flat))
    return [d["op_name"] for d in it._get_ops_details()]
