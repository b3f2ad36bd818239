/* mopt/graph.h - the graph IR every technique transforms.
 *
 * One mopt_graph holds one TFLite model with one subgraph: tensors, constant
 * buffers, operators in execution order, graph inputs and outputs, and the
 * parts of the file mopt keeps without understanding them (description,
 * metadata, signature defs).
 *
 * Conventions (chosen to match TFLite so the reader/writer are 1:1):
 *  - dtype and op type values ARE the TFLite TensorType / BuiltinOperator codes.
 *  - buffers[0] is always the empty sentinel; tensor.buffer == 0 means "no
 *    constant data" (an activation). Several tensors may share a buffer.
 *  - Layouts are TFLite's: activations NHWC; CONV_2D filter [OC,KH,KW,IC];
 *    DEPTHWISE_CONV_2D filter [1,KH,KW,IC*M]; FULLY_CONNECTED weights
 *    [units, depth]; bias [OC].
 *  - Operator input index -1 means an omitted optional input (e.g. FC bias).
 *  - The graph owns all memory reachable from it (names, arrays, buffer data);
 *    mopt_graph_free releases everything. Buffer data is 16-byte aligned so
 *    kernels may cast it to float / int32 / int64 pointers.
 *
 * The structs are transparent so that transformations can walk and edit them,
 * but growth (adding tensors, ops, buffers) goes through the functions below,
 * which keep the capacities consistent. Indices stay stable once assigned.
 */
#ifndef MOPT_GRAPH_H
#define MOPT_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mopt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MOPT_MAX_DIMS 6

/* Element types: values equal TFLite's TensorType enum. */
typedef enum mopt_dtype {
    MOPT_FLOAT32 = 0,
    MOPT_FLOAT16 = 1,
    MOPT_INT32 = 2,
    MOPT_UINT8 = 3,
    MOPT_INT64 = 4,
    MOPT_STRING = 5, /* recognised only to be refused */
    MOPT_BOOL = 6,
    MOPT_INT16 = 7,
    MOPT_INT8 = 9
} mopt_dtype;

/* Operator types: values equal TFLite's BuiltinOperator codes. */
typedef enum mopt_op_type {
    MOPT_OP_ADD = 0,
    MOPT_OP_AVERAGE_POOL_2D = 1,
    MOPT_OP_CONCATENATION = 2,
    MOPT_OP_CONV_2D = 3,
    MOPT_OP_DEPTHWISE_CONV_2D = 4,
    MOPT_OP_DEQUANTIZE = 6,
    MOPT_OP_FULLY_CONNECTED = 9,
    MOPT_OP_LOGISTIC = 14,
    MOPT_OP_MAX_POOL_2D = 17,
    MOPT_OP_MUL = 18,
    MOPT_OP_RELU = 19,
    MOPT_OP_RELU6 = 21,
    MOPT_OP_RESHAPE = 22,
    MOPT_OP_SOFTMAX = 25,
    MOPT_OP_TANH = 28,
    MOPT_OP_PAD = 34,
    MOPT_OP_TRANSPOSE = 39,
    MOPT_OP_MEAN = 40,
    MOPT_OP_SUB = 41,
    MOPT_OP_QUANTIZE = 114,
    MOPT_OP_HARD_SWISH = 117
} mopt_op_type;

typedef enum mopt_padding { MOPT_PAD_SAME = 0, MOPT_PAD_VALID = 1 } mopt_padding;

/* Fused activation: values equal TFLite's ActivationFunctionType. */
typedef enum mopt_activation {
    MOPT_ACT_NONE = 0,
    MOPT_ACT_RELU = 1,
    MOPT_ACT_RELU_N1_TO_1 = 2,
    MOPT_ACT_RELU6 = 3,
    MOPT_ACT_TANH = 4,
    MOPT_ACT_SIGN_BIT = 5
} mopt_activation;

/* real = scale[c] * (q - zero_point[c]). n == 0: not quantized.
 * n == 1: per-tensor; n > 1: per-axis along `axis` (n == dims[axis]).
 * min/max (n_minmax entries each, may be 0) are kept for round trips. */
typedef struct mopt_quant {
    int n;
    float *scale;
    int64_t *zero_point;
    int32_t axis;
    int n_minmax;
    float *min;
    float *max;
} mopt_quant;

typedef struct mopt_tensor {
    char *name; /* never NULL after reading (may be "") */
    mopt_dtype dtype;
    int rank; /* 0..MOPT_MAX_DIMS */
    int32_t dims[MOPT_MAX_DIMS];
    int n_shape_signature;     /* 0 = absent */
    int32_t *shape_signature;  /* -1 = unknown dim; kept for round trips */
    uint32_t buffer;           /* index into graph.buffers; 0 = no data */
    bool is_variable;
    mopt_quant quant;
} mopt_tensor;

typedef struct mopt_buffer {
    uint8_t *data; /* 16-byte aligned, owned; NULL when size == 0 */
    size_t size;
} mopt_buffer;

/* ---- typed operator parameters (TFLite builtin options) ---- */

typedef struct mopt_conv_params { /* CONV_2D and DEPTHWISE_CONV_2D */
    mopt_padding padding;
    int32_t stride_w, stride_h;
    int32_t dilation_w, dilation_h; /* default 1 */
    int32_t depth_multiplier;       /* DEPTHWISE only; redundant with shapes */
    mopt_activation act;
    int32_t quantized_bias_type;    /* 0 = not set (TensorType otherwise) */
} mopt_conv_params;

typedef struct mopt_pool_params { /* AVERAGE_POOL_2D, MAX_POOL_2D */
    mopt_padding padding;
    int32_t stride_w, stride_h;
    int32_t filter_w, filter_h;
    mopt_activation act;
} mopt_pool_params;

typedef struct mopt_fc_params {
    mopt_activation act;
    int32_t weights_format; /* 0 DEFAULT; others refused by the runtime */
    bool keep_num_dims;
    bool asymmetric_quantize_inputs;
    int32_t quantized_bias_type;
} mopt_fc_params;

typedef struct mopt_binary_params { /* ADD, SUB, MUL */
    mopt_activation act;
    bool pot_scale_int16; /* ADD/SUB only; TFLite default is TRUE */
} mopt_binary_params;

typedef struct mopt_softmax_params {
    float beta;
} mopt_softmax_params;

typedef struct mopt_concat_params {
    int32_t axis; /* may be negative, as in the file */
    mopt_activation act;
} mopt_concat_params;

typedef struct mopt_reshape_params {
    int n_new_shape;                 /* -1 = option table or field absent */
    int32_t new_shape[MOPT_MAX_DIMS];
} mopt_reshape_params;

typedef struct mopt_reducer_params { /* MEAN */
    bool keep_dims;
} mopt_reducer_params;

typedef struct mopt_op {
    mopt_op_type type;
    int32_t version; /* OperatorCode.version written for this op */
    int n_inputs;
    int32_t *inputs; /* tensor indices; -1 = omitted optional input */
    int n_outputs;
    int32_t *outputs;
    /* false when the file had no builtin options table for this op; the
     * writer then writes none (RELU, LOGISTIC, ... never have one). */
    bool has_options;
    union {
        mopt_conv_params conv;
        mopt_pool_params pool;
        mopt_fc_params fc;
        mopt_binary_params binary;
        mopt_softmax_params softmax;
        mopt_concat_params concat;
        mopt_reshape_params reshape;
        mopt_reducer_params reducer;
    } p;
} mopt_op;

typedef struct mopt_metadata {
    char *name;
    uint32_t buffer;
} mopt_metadata;

typedef struct mopt_tensor_map {
    char *name;
    uint32_t tensor;
} mopt_tensor_map;

typedef struct mopt_signature {
    char *key;
    uint32_t subgraph;
    int n_inputs;
    mopt_tensor_map *inputs;
    int n_outputs;
    mopt_tensor_map *outputs;
} mopt_signature;

typedef struct mopt_graph {
    int n_tensors, cap_tensors;
    mopt_tensor *tensors;
    int n_ops, cap_ops;
    mopt_op *ops;
    int n_buffers, cap_buffers;
    mopt_buffer *buffers;
    int n_inputs;
    int32_t *inputs;
    int n_outputs;
    int32_t *outputs;
    char *name;        /* subgraph name, may be NULL */
    char *description; /* model description, may be NULL */
    int n_metadata;
    mopt_metadata *metadata;
    int n_signatures;
    mopt_signature *signatures;
} mopt_graph;

/* ---- lifetime ---- */

/* New empty graph with the buffer-0 sentinel. NULL on allocation failure. */
mopt_graph *mopt_graph_create(void);
/* Frees everything the graph owns. NULL is a no-op. */
void mopt_graph_free(mopt_graph *g);
/* Deep copy (tensors, ops, buffers, metadata). NULL on allocation failure. */
mopt_graph *mopt_graph_clone(const mopt_graph *g);

/* ---- building and editing (return the new index, or -1 when out of memory) ---- */

/* Adds an activation tensor (buffer 0, not quantized). name is copied
 * (NULL is stored as ""). dims has `rank` entries (may be NULL if rank == 0). */
int mopt_graph_add_tensor(mopt_graph *g, const char *name, mopt_dtype dtype, int rank,
                          const int32_t *dims);
/* Adds a buffer holding a copy of `size` bytes of data (data may be NULL to
 * get zero-filled memory). */
int mopt_graph_add_buffer(mopt_graph *g, const void *data, size_t size);
/* Gives tensor t its own new buffer with a copy of data (size must be its
 * nbytes). Returns MOPT_OK or MOPT_ERR_NOMEM / MOPT_ERR_ARG. */
mopt_status mopt_graph_set_tensor_data(mopt_graph *g, int t, const void *data, size_t size);
/* Adds an operator with copies of the index arrays; params are zeroed except
 * the TFLite defaults (dilation 1, pot_scale_int16 true, version 1,
 * n_new_shape -1). */
int mopt_graph_add_op(mopt_graph *g, mopt_op_type type, const int32_t *inputs, int n_inputs,
                      const int32_t *outputs, int n_outputs);
/* Sets the graph inputs / outputs (copies the arrays). */
mopt_status mopt_graph_set_io(mopt_graph *g, const int32_t *inputs, int n_inputs,
                              const int32_t *outputs, int n_outputs);
/* Replaces the tensor's quantization parameters (copies the arrays; n == 0
 * clears them). */
mopt_status mopt_tensor_set_quant(mopt_tensor *t, int n, const float *scale,
                                  const int64_t *zero_point, int32_t axis);
/* Frees a quant struct's arrays and zeroes it. */
void mopt_quant_clear(mopt_quant *q);

/* ---- queries ---- */

/* Bytes per element; 0 for types mopt cannot hold (STRING, unknown). */
size_t mopt_dtype_size(mopt_dtype dt);
/* "float32", "int8", ...; "unknown" otherwise. Never NULL. */
const char *mopt_dtype_name(mopt_dtype dt);
/* Parses a name from mopt_dtype_name; returns -1 if unknown. */
int mopt_dtype_from_name(const char *name);
/* "CONV_2D", ...; NULL for codes outside mopt's op set. */
const char *mopt_op_name(int op_type);
/* True if op_type is in mopt's op set. */
bool mopt_op_supported(int op_type);
/* "NONE", "RELU", ... */
const char *mopt_activation_name(mopt_activation a);

/* Number of elements (1 for rank 0). Returns -1 on a negative dim or overflow
 * past 2^31-1 elements. */
int64_t mopt_tensor_numel(const mopt_tensor *t);
/* numel * dtype size, or -1 as above. */
int64_t mopt_tensor_nbytes(const mopt_tensor *t);
/* Constant data of tensor t, or NULL if it has none. */
const void *mopt_tensor_data(const mopt_graph *g, int t);
/* True if tensor t has a non-empty buffer. */
bool mopt_tensor_is_constant(const mopt_graph *g, int t);
/* Number of parameters: elements of all constant tensors. */
int64_t mopt_graph_param_count(const mopt_graph *g);

/* ---- validation ----
 * Checks every index is in range, every op input is produced before use (or is
 * a graph input or constant), no tensor has two producers, constant buffer
 * sizes equal the shape's byte size, quantization parameters are consistent,
 * each op has the arity, dtypes and parameters its type requires, and the
 * stored output shapes equal the inferred ones. The first violation is
 * reported as "operator 3 (CONV_2D): <rule>" or "tensor 7 'name': <rule>".
 * Returns MOPT_OK, MOPT_ERR_BAD_INPUT or MOPT_ERR_UNSUPPORTED. */
mopt_status mopt_graph_validate(const mopt_graph *g, mopt_error *err);

/* Shape inference for operator `op_index` from its inputs' stored shapes
 * (and constant data, e.g. RESHAPE's shape tensor). Writes one shape per
 * output into out_rank/out_dims. Errors name the op and the rule. */
mopt_status mopt_op_infer_shapes(const mopt_graph *g, int op_index, int *out_rank,
                                 int32_t (*out_dims)[MOPT_MAX_DIMS], mopt_error *err);

/* Output size and padding of a windowed op along one axis, as TFLite's
 * kernels/padding.h computes them. Returns the output size (<= 0 when the
 * window does not fit); *pad_before gets the leading padding. */
int32_t mopt_conv_out_size(mopt_padding pad, int32_t in, int32_t k, int32_t stride,
                           int32_t dilation, int32_t *pad_before);

#ifdef __cplusplus
}
#endif
#endif
