/* io/tflite_schema.h - field ids and enum values of the TFLite schema (v3).
 *
 * Field ids follow declaration order in schema.fbs (deprecated fields keep
 * their id; a union takes two ids: its _type then its value). Only the
 * tables mopt reads or writes are listed.
 */
#ifndef MOPT_IO_TFLITE_SCHEMA_H
#define MOPT_IO_TFLITE_SCHEMA_H

#define TFL_IDENTIFIER "TFL3"
#define TFL_SCHEMA_VERSION 3

/* Model (root table) */
enum {
    TFL_MODEL_VERSION = 0,
    TFL_MODEL_OPERATOR_CODES = 1,
    TFL_MODEL_SUBGRAPHS = 2,
    TFL_MODEL_DESCRIPTION = 3,
    TFL_MODEL_BUFFERS = 4,
    TFL_MODEL_METADATA_BUFFER = 5,
    TFL_MODEL_METADATA = 6,
    TFL_MODEL_SIGNATURE_DEFS = 7,
    TFL_MODEL_EXTERNAL_BUFFER_GROUPS = 8,
    TFL_MODEL_EXTERNAL_BUFFERS = 9
};

/* SubGraph */
enum {
    TFL_SUBGRAPH_TENSORS = 0,
    TFL_SUBGRAPH_INPUTS = 1,
    TFL_SUBGRAPH_OUTPUTS = 2,
    TFL_SUBGRAPH_OPERATORS = 3,
    TFL_SUBGRAPH_NAME = 4,
    TFL_SUBGRAPH_DEBUG_METADATA_INDEX = 5
};

/* Tensor */
enum {
    TFL_TENSOR_SHAPE = 0,
    TFL_TENSOR_TYPE = 1,
    TFL_TENSOR_BUFFER = 2,
    TFL_TENSOR_NAME = 3,
    TFL_TENSOR_QUANTIZATION = 4,
    TFL_TENSOR_IS_VARIABLE = 5,
    TFL_TENSOR_SPARSITY = 6,
    TFL_TENSOR_SHAPE_SIGNATURE = 7,
    TFL_TENSOR_HAS_RANK = 8,
    TFL_TENSOR_VARIANT_TENSORS = 9,
    TFL_TENSOR_EXTERNAL_BUFFER = 10
};

/* QuantizationParameters */
enum {
    TFL_QUANT_MIN = 0,
    TFL_QUANT_MAX = 1,
    TFL_QUANT_SCALE = 2,
    TFL_QUANT_ZERO_POINT = 3,
    TFL_QUANT_DETAILS_TYPE = 4,
    TFL_QUANT_DETAILS = 5,
    TFL_QUANT_QUANTIZED_DIMENSION = 6
};

/* Buffer */
enum { TFL_BUFFER_DATA = 0, TFL_BUFFER_OFFSET = 1, TFL_BUFFER_SIZE = 2 };
/* Buffer.data is declared (force_align: 16). */
#define TFL_BUFFER_ALIGN 16

/* Metadata */
enum { TFL_METADATA_NAME = 0, TFL_METADATA_BUFFER = 1 };

/* OperatorCode */
enum {
    TFL_OPCODE_DEPRECATED_BUILTIN_CODE = 0,
    TFL_OPCODE_CUSTOM_CODE = 1,
    TFL_OPCODE_VERSION = 2,
    TFL_OPCODE_BUILTIN_CODE = 3
};

/* Operator */
enum {
    TFL_OP_OPCODE_INDEX = 0,
    TFL_OP_INPUTS = 1,
    TFL_OP_OUTPUTS = 2,
    TFL_OP_BUILTIN_OPTIONS_TYPE = 3,
    TFL_OP_BUILTIN_OPTIONS = 4,
    TFL_OP_CUSTOM_OPTIONS = 5,
    TFL_OP_CUSTOM_OPTIONS_FORMAT = 6,
    TFL_OP_MUTATING_VARIABLE_INPUTS = 7,
    TFL_OP_INTERMEDIATES = 8,
    TFL_OP_LARGE_CUSTOM_OPTIONS_OFFSET = 9,
    TFL_OP_LARGE_CUSTOM_OPTIONS_SIZE = 10,
    TFL_OP_BUILTIN_OPTIONS_2_TYPE = 11,
    TFL_OP_BUILTIN_OPTIONS_2 = 12,
    TFL_OP_DEBUG_METADATA_INDEX = 13
};

/* SignatureDef and TensorMap */
enum {
    TFL_SIGDEF_INPUTS = 0,
    TFL_SIGDEF_OUTPUTS = 1,
    TFL_SIGDEF_SIGNATURE_KEY = 2,
    TFL_SIGDEF_DEPRECATED_TAG = 3,
    TFL_SIGDEF_SUBGRAPH_INDEX = 4
};
enum { TFL_TENSORMAP_NAME = 0, TFL_TENSORMAP_TENSOR_INDEX = 1 };

/* BuiltinOperator codes outside mopt_op_type, used in messages and rules. */
enum {
    TFL_OP_CODE_CUSTOM = 32,
    TFL_OP_CODE_PLACEHOLDER_FOR_GREATER = 127
};

/* BuiltinOptions union type values. */
enum {
    TFL_OPT_NONE = 0,
    TFL_OPT_CONV2D = 1,
    TFL_OPT_DEPTHWISE_CONV2D = 2,
    TFL_OPT_POOL2D = 5,
    TFL_OPT_FULLY_CONNECTED = 8,
    TFL_OPT_SOFTMAX = 9,
    TFL_OPT_CONCATENATION = 10,
    TFL_OPT_ADD = 11,
    TFL_OPT_RESHAPE = 17,
    TFL_OPT_MUL = 21,
    TFL_OPT_PAD = 22,
    TFL_OPT_TRANSPOSE = 26,
    TFL_OPT_REDUCER = 27,
    TFL_OPT_SUB = 28,
    TFL_OPT_DEQUANTIZE = 38,
    TFL_OPT_QUANTIZE = 89,
    TFL_OPT_HARD_SWISH = 91
};

/* Conv2DOptions */
enum {
    TFL_CONV_PADDING = 0,
    TFL_CONV_STRIDE_W = 1,
    TFL_CONV_STRIDE_H = 2,
    TFL_CONV_ACTIVATION = 3,
    TFL_CONV_DILATION_W = 4,
    TFL_CONV_DILATION_H = 5,
    TFL_CONV_QUANTIZED_BIAS_TYPE = 6
};

/* DepthwiseConv2DOptions */
enum {
    TFL_DW_PADDING = 0,
    TFL_DW_STRIDE_W = 1,
    TFL_DW_STRIDE_H = 2,
    TFL_DW_DEPTH_MULTIPLIER = 3,
    TFL_DW_ACTIVATION = 4,
    TFL_DW_DILATION_W = 5,
    TFL_DW_DILATION_H = 6
};

/* Pool2DOptions */
enum {
    TFL_POOL_PADDING = 0,
    TFL_POOL_STRIDE_W = 1,
    TFL_POOL_STRIDE_H = 2,
    TFL_POOL_FILTER_W = 3,
    TFL_POOL_FILTER_H = 4,
    TFL_POOL_ACTIVATION = 5
};

/* FullyConnectedOptions */
enum {
    TFL_FC_ACTIVATION = 0,
    TFL_FC_WEIGHTS_FORMAT = 1,
    TFL_FC_KEEP_NUM_DIMS = 2,
    TFL_FC_ASYMMETRIC_QUANTIZE_INPUTS = 3,
    TFL_FC_QUANTIZED_BIAS_TYPE = 4,
    TFL_FC_QUANT_SPEC = 5 /* newest schemas: blockwise quantization spec */
};

enum { TFL_SOFTMAX_BETA = 0 };
enum { TFL_CONCAT_AXIS = 0, TFL_CONCAT_ACTIVATION = 1 };
/* AddOptions and SubOptions share the layout. */
enum { TFL_ADDSUB_ACTIVATION = 0, TFL_ADDSUB_POT_SCALE_INT16 = 1 };
enum { TFL_MUL_ACTIVATION = 0 };
enum { TFL_RESHAPE_NEW_SHAPE = 0 };
enum { TFL_REDUCER_KEEP_DIMS = 0 };

/* Highest TensorType value mopt knows the name of (FLOAT8_E5M2). */
#define TFL_TENSOR_TYPE_MAX 22

/* Names of BuiltinOperator codes and TensorType values (tflite_names.c);
 * NULL for values the schema does not define. */
const char *tfl_builtin_name(int code);
const char *tfl_type_name(int type);

#endif
