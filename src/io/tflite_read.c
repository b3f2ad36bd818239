/* io/tflite_read.c - .tflite flatbuffer -> mopt_graph.
 *
 * Every byte is untrusted. The flatbuffer layer (flatbuf_read.c) checks
 * offsets, lengths, alignment and nesting; this file checks the TFLite rules
 * on top: indices in range, shapes, buffer sizes, quantization parameters,
 * option tables of the right type, and the op set mopt supports. Semantic
 * checks (arity, dtypes, shape inference) are mopt_graph_validate's job.
 *
 * Every failure is one line "<file>: <object>: <rule>".
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/flatbuf.h"
#include "io/tflite_schema.h"
#include "mopt/tflite.h"
#include "mopt/util.h"

typedef struct opcode_info {
    int32_t code;
    int32_t version;
    const char *custom; /* points into the file; NULL if absent */
} opcode_info;

typedef struct reader {
    fb_reader fb;
    char file[320]; /* printable form of the name for messages */
    mopt_error *err;
    mopt_graph *g;
    /* Bytes the reader may still copy out of the file. A well-formed file
     * never copies much more than its own size, but one flatbuffer object
     * may be referenced many times (e.g. 10^5 tensors sharing one name), so
     * without a bound a small file could demand gigabytes. */
    uint64_t budget;
    int n_opcodes;
    opcode_info *opcodes;
} reader;

/* Copies s into dst replacing control characters (and, unless keep_high,
 * non-ASCII bytes) by '?' and shortening long text, so names from the file
 * cannot break the one-line message. Paths keep their UTF-8 so that the
 * message still contains the path the user typed. */
static void printable(char *dst, size_t cap, const char *s, size_t max_chars, bool keep_high)
{
    size_t k = 0;
    if (s == NULL)
        s = "";
    for (; *s && k + 1 < cap; s++) {
        if (k >= max_chars) {
            if (k + 4 < cap) {
                memcpy(dst + k, "...", 3);
                k += 3;
            }
            break;
        }
        unsigned char c = (unsigned char)*s;
        bool ok = (c >= 0x20 && c < 0x7f) || (keep_high && c >= 0x80);
        dst[k++] = ok ? (char)c : '?';
    }
    dst[k] = '\0';
}

static mopt_status failv(reader *r, mopt_status st, const char *obj, const char *fmt, va_list ap)
{
    char rule[MOPT_ERROR_MSG_MAX];
    vsnprintf(rule, sizeof rule, fmt, ap);
    return mopt_error_set(r->err, st, "%s: %s: %s", r->file, obj, rule);
}

static mopt_status fail(reader *r, mopt_status st, const char *obj, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static mopt_status fail(reader *r, mopt_status st, const char *obj, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mopt_status s = failv(r, st, obj, fmt, ap);
    va_end(ap);
    return s;
}

/* A flatbuffer-level failure while reading `field` of `obj`. */
static mopt_status fb_fail(reader *r, const char *obj, const char *field)
{
    return fail(r, MOPT_ERR_BAD_INPUT, obj, "%s: %s", field, r->fb.why);
}

static mopt_status nomem(reader *r, const char *obj)
{
    return fail(r, MOPT_ERR_NOMEM, obj, "out of memory");
}

/* Charges `bytes` against the copy budget. */
static mopt_status spend(reader *r, const char *obj, uint64_t bytes)
{
    if (bytes > r->budget)
        return fail(r, MOPT_ERR_BAD_INPUT, obj,
                    "objects shared so often that copying them would exceed %llu bytes",
                    (unsigned long long)r->budget);
    r->budget -= bytes;
    return MOPT_OK;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Reads an optional string field into a new heap copy (NULL when absent). */
static mopt_status read_str(reader *r, const fb_table *t, unsigned id, const char *obj,
                            const char *field, char **out)
{
    const char *s;
    uint32_t n;
    bool present;
    *out = NULL;
    if (!fb_get_str(&r->fb, t, id, &s, &n, &present))
        return fb_fail(r, obj, field);
    if (!present)
        return MOPT_OK;
    mopt_status st = spend(r, obj, (uint64_t)n + 1);
    if (st != MOPT_OK)
        return st;
    *out = dup_n(s, n);
    return *out ? MOPT_OK : nomem(r, obj);
}

static const char *op_display_name(int32_t code)
{
    const char *n = tfl_builtin_name(code);
    return n ? n : "unknown";
}

/* ------------------------------------------------------------- buffers */

static mopt_status read_buffers(reader *r, const fb_table *model)
{
    fb_vec v;
    bool present;
    char obj[64];
    if (!fb_get_vec(&r->fb, model, TFL_MODEL_BUFFERS, 4, 4, &v, &present))
        return fb_fail(r, "model", "buffers");
    for (uint32_t i = 0; i < v.n; i++) {
        fb_table b;
        fb_vec data;
        uint64_t offset, size;
        snprintf(obj, sizeof obj, "buffer %u", i);
        if (!fb_vec_table(&r->fb, &v, i, &b))
            return fb_fail(r, obj, "table");
        if (!fb_get_vec(&r->fb, &b, TFL_BUFFER_DATA, 1, 1, &data, NULL))
            return fb_fail(r, obj, "data");
        if (!fb_get_u64(&r->fb, &b, TFL_BUFFER_OFFSET, 0, &offset))
            return fb_fail(r, obj, "offset");
        if (!fb_get_u64(&r->fb, &b, TFL_BUFFER_SIZE, 0, &size))
            return fb_fail(r, obj, "size");
        /* Models over 2 GB keep their data after the flatbuffer; the schema
         * defines offset as valid only when > 1. */
        if (offset > 1 || size > 0)
            return fail(r, MOPT_ERR_UNSUPPORTED, obj,
                        "data stored outside the flatbuffer (offset %llu, size %llu) is not "
                        "supported",
                        (unsigned long long)offset, (unsigned long long)size);
        if (i == 0) {
            if (data.n != 0)
                return fail(r, MOPT_ERR_BAD_INPUT, obj,
                            "must be the empty sentinel but holds %u bytes", data.n);
            continue; /* the graph already has its sentinel */
        }
        mopt_status st = spend(r, obj, data.n);
        if (st != MOPT_OK)
            return st;
        int idx = mopt_graph_add_buffer(r->g, fb_vec_bytes(&r->fb, &data), data.n);
        if (idx < 0)
            return nomem(r, obj);
        if (idx != (int)i)
            return fail(r, MOPT_ERR_INTERNAL, obj, "graph assigned buffer index %d", idx);
    }
    return MOPT_OK;
}

/* ---------------------------------------------------------- opcodes */

static mopt_status read_opcodes(reader *r, const fb_table *model)
{
    fb_vec v;
    char obj[64];
    if (!fb_get_vec(&r->fb, model, TFL_MODEL_OPERATOR_CODES, 4, 4, &v, NULL))
        return fb_fail(r, "model", "operator_codes");
    if (v.n == 0)
        return MOPT_OK;
    r->opcodes = calloc(v.n, sizeof *r->opcodes);
    if (r->opcodes == NULL)
        return nomem(r, "model");
    r->n_opcodes = (int)v.n;
    for (uint32_t i = 0; i < v.n; i++) {
        fb_table t;
        int8_t dep;
        int32_t code, version;
        const char *custom;
        uint32_t custom_len;
        snprintf(obj, sizeof obj, "operator code %u", i);
        if (!fb_vec_table(&r->fb, &v, i, &t))
            return fb_fail(r, obj, "table");
        if (!fb_get_i8(&r->fb, &t, TFL_OPCODE_DEPRECATED_BUILTIN_CODE, 0, &dep))
            return fb_fail(r, obj, "deprecated_builtin_code");
        if (!fb_get_i32(&r->fb, &t, TFL_OPCODE_BUILTIN_CODE, 0, &code))
            return fb_fail(r, obj, "builtin_code");
        if (!fb_get_i32(&r->fb, &t, TFL_OPCODE_VERSION, 1, &version))
            return fb_fail(r, obj, "version");
        if (!fb_get_str(&r->fb, &t, TFL_OPCODE_CUSTOM_CODE, &custom, &custom_len, NULL))
            return fb_fail(r, obj, "custom_code");
        /* Files from before builtin_code existed only fill the deprecated
         * byte; newer files put 127 there for codes above it (schema_utils). */
        if (dep > code)
            code = dep;
        if (code < 0)
            return fail(r, MOPT_ERR_BAD_INPUT, obj, "negative builtin code %d", code);
        r->opcodes[i].code = code;
        r->opcodes[i].version = version;
        r->opcodes[i].custom = custom;
    }
    return MOPT_OK;
}

/* ---------------------------------------------------------- tensors */

static void tensor_obj(char *obj, size_t cap, uint32_t i, const char *name)
{
    char shown[80];
    if (name == NULL || name[0] == '\0') {
        snprintf(obj, cap, "tensor %u", i);
        return;
    }
    printable(shown, sizeof shown, name, 64, false);
    snprintf(obj, cap, "tensor %u '%s'", i, shown);
}

static mopt_status read_quant(reader *r, const fb_table *q, mopt_tensor *t, const char *obj)
{
    fb_vec vmin, vmax, vscale, vzp;
    uint8_t details_type;
    int32_t axis;
    fb_reader *fb = &r->fb;
    if (!fb_get_vec(fb, q, TFL_QUANT_MIN, 4, 4, &vmin, NULL))
        return fb_fail(r, obj, "quantization.min");
    if (!fb_get_vec(fb, q, TFL_QUANT_MAX, 4, 4, &vmax, NULL))
        return fb_fail(r, obj, "quantization.max");
    if (!fb_get_vec(fb, q, TFL_QUANT_SCALE, 4, 4, &vscale, NULL))
        return fb_fail(r, obj, "quantization.scale");
    if (!fb_get_vec(fb, q, TFL_QUANT_ZERO_POINT, 8, 8, &vzp, NULL))
        return fb_fail(r, obj, "quantization.zero_point");
    if (!fb_get_u8(fb, q, TFL_QUANT_DETAILS_TYPE, 0, &details_type))
        return fb_fail(r, obj, "quantization.details_type");
    if (!fb_get_i32(fb, q, TFL_QUANT_QUANTIZED_DIMENSION, 0, &axis))
        return fb_fail(r, obj, "quantization.quantized_dimension");
    if (details_type != 0 || fb_present(fb, q, TFL_QUANT_DETAILS))
        return fail(r, MOPT_ERR_UNSUPPORTED, obj,
                    "quantization details (custom or blockwise quantization, type %u) are not "
                    "supported",
                    details_type);
    if (vmin.n != vmax.n)
        return fail(r, MOPT_ERR_BAD_INPUT, obj, "quantization has %u min but %u max values",
                    vmin.n, vmax.n);
    /* As the interpreter: a scale requires a zero point per scale. */
    if (vscale.n != vzp.n)
        return fail(r, MOPT_ERR_BAD_INPUT, obj,
                    "quantization has %u scales but %u zero points", vscale.n, vzp.n);
    if (vscale.n > 1) {
        if (axis < 0 || axis >= t->rank)
            return fail(r, MOPT_ERR_BAD_INPUT, obj,
                        "quantized_dimension %d out of range for rank %d", (int)axis, t->rank);
        if ((int64_t)vscale.n != t->dims[axis])
            return fail(r, MOPT_ERR_BAD_INPUT, obj,
                        "%u per-axis scales but dimension %d has size %d", vscale.n, (int)axis,
                        (int)t->dims[axis]);
    } else if (axis < 0) {
        return fail(r, MOPT_ERR_BAD_INPUT, obj, "negative quantized_dimension %d", (int)axis);
    }
    mopt_status st = spend(r, obj, (uint64_t)vscale.n * 12 + (uint64_t)vmin.n * 8);
    if (st != MOPT_OK)
        return st;
    mopt_quant *dq = &t->quant;
    if (vscale.n > 0) {
        dq->scale = malloc(vscale.n * sizeof *dq->scale);
        dq->zero_point = malloc(vscale.n * sizeof *dq->zero_point);
        if (dq->scale == NULL || dq->zero_point == NULL)
            return nomem(r, obj); /* the graph frees what was allocated */
        for (uint32_t i = 0; i < vscale.n; i++) {
            dq->scale[i] = fb_vec_f32(fb, &vscale, i);
            dq->zero_point[i] = fb_vec_i64(fb, &vzp, i);
        }
        dq->n = (int)vscale.n;
    }
    dq->axis = axis;
    if (vmin.n > 0) {
        dq->min = malloc(vmin.n * sizeof *dq->min);
        dq->max = malloc(vmin.n * sizeof *dq->max);
        if (dq->min == NULL || dq->max == NULL)
            return nomem(r, obj);
        for (uint32_t i = 0; i < vmin.n; i++) {
            dq->min[i] = fb_vec_f32(fb, &vmin, i);
            dq->max[i] = fb_vec_f32(fb, &vmax, i);
        }
        dq->n_minmax = (int)vmin.n;
    }
    return MOPT_OK;
}

static mopt_status read_tensor(reader *r, const fb_vec *tensors, uint32_t i)
{
    fb_reader *fb = &r->fb;
    fb_table t, q, sp;
    fb_vec shape, sig, variants;
    int8_t type;
    uint32_t buffer, ext;
    bool is_var, has_q, has_sp, has_sig;
    const char *name;
    uint32_t name_len;
    char obj[128];
    int32_t dims[MOPT_MAX_DIMS] = {0};

    tensor_obj(obj, sizeof obj, i, NULL);
    if (!fb_vec_table(fb, tensors, i, &t))
        return fb_fail(r, obj, "table");
    if (!fb_get_str(fb, &t, TFL_TENSOR_NAME, &name, &name_len, NULL))
        return fb_fail(r, obj, "name");
    tensor_obj(obj, sizeof obj, i, name);
    if (!fb_get_vec(fb, &t, TFL_TENSOR_SHAPE, 4, 4, &shape, NULL))
        return fb_fail(r, obj, "shape");
    if (!fb_get_i8(fb, &t, TFL_TENSOR_TYPE, 0, &type))
        return fb_fail(r, obj, "type");
    if (!fb_get_u32(fb, &t, TFL_TENSOR_BUFFER, 0, &buffer))
        return fb_fail(r, obj, "buffer");
    if (!fb_get_bool(fb, &t, TFL_TENSOR_IS_VARIABLE, false, &is_var))
        return fb_fail(r, obj, "is_variable");
    if (!fb_get_table(fb, &t, TFL_TENSOR_QUANTIZATION, &q, &has_q))
        return fb_fail(r, obj, "quantization");
    if (!fb_get_table(fb, &t, TFL_TENSOR_SPARSITY, &sp, &has_sp))
        return fb_fail(r, obj, "sparsity");
    if (!fb_get_vec(fb, &t, TFL_TENSOR_SHAPE_SIGNATURE, 4, 4, &sig, &has_sig))
        return fb_fail(r, obj, "shape_signature");
    if (!fb_get_vec(fb, &t, TFL_TENSOR_VARIANT_TENSORS, 4, 4, &variants, NULL))
        return fb_fail(r, obj, "variant_tensors");
    if (!fb_get_u32(fb, &t, TFL_TENSOR_EXTERNAL_BUFFER, 0, &ext))
        return fb_fail(r, obj, "external_buffer");

    if (shape.n > MOPT_MAX_DIMS)
        return fail(r, MOPT_ERR_UNSUPPORTED, obj, "rank %u exceeds the maximum of %d", shape.n,
                    MOPT_MAX_DIMS);
    for (uint32_t d = 0; d < shape.n; d++) {
        dims[d] = fb_vec_i32(fb, &shape, d);
        if (dims[d] < 0)
            return fail(r, MOPT_ERR_BAD_INPUT, obj, "dimension %u is negative (%d)", d,
                        (int)dims[d]);
    }
    const char *tname = tfl_type_name(type);
    if (tname == NULL)
        return fail(r, MOPT_ERR_BAD_INPUT, obj, "unknown tensor type %d", (int)type);
    if (type == MOPT_STRING || mopt_dtype_size((mopt_dtype)type) == 0)
        return fail(r, MOPT_ERR_UNSUPPORTED, obj, "tensor type %s (%d) is not supported", tname,
                    (int)type);
    if (has_sp)
        return fail(r, MOPT_ERR_UNSUPPORTED, obj, "sparse tensors are not supported");
    if (variants.n > 0)
        return fail(r, MOPT_ERR_UNSUPPORTED, obj, "variant tensors are not supported");
    if (ext != 0)
        return fail(r, MOPT_ERR_UNSUPPORTED, obj,
                    "external buffer %u: data outside the flatbuffer is not supported", ext);
    if (buffer >= (uint32_t)r->g->n_buffers)
        return fail(r, MOPT_ERR_BAD_INPUT, obj, "buffer %u out of range (%d buffers)", buffer,
                    r->g->n_buffers);
    if (has_sig && sig.n != shape.n)
        return fail(r, MOPT_ERR_BAD_INPUT, obj, "shape_signature has %u entries but rank is %u",
                    sig.n, shape.n);

    mopt_status st = spend(r, obj, (uint64_t)name_len + 1 + (uint64_t)sig.n * 4);
    if (st != MOPT_OK)
        return st;
    int idx = mopt_graph_add_tensor(r->g, name, (mopt_dtype)type, (int)shape.n, dims);
    if (idx < 0)
        return nomem(r, obj);
    mopt_tensor *mt = &r->g->tensors[idx];
    mt->buffer = buffer;
    mt->is_variable = is_var;

    if (sig.n > 0) {
        mt->shape_signature = malloc(sig.n * sizeof *mt->shape_signature);
        if (mt->shape_signature == NULL)
            return nomem(r, obj);
        for (uint32_t d = 0; d < sig.n; d++) {
            int32_t v = fb_vec_i32(fb, &sig, d);
            if (v < -1)
                return fail(r, MOPT_ERR_BAD_INPUT, obj, "shape_signature entry %u is %d", d,
                            (int)v);
            mt->shape_signature[d] = v;
        }
        mt->n_shape_signature = (int)sig.n;
    }

    /* Constant data must match the shape exactly: kernels index it by shape. */
    const mopt_buffer *b = &r->g->buffers[buffer];
    if (b->size > 0) {
        int64_t nbytes = mopt_tensor_nbytes(mt);
        if (nbytes < 0)
            return fail(r, MOPT_ERR_BAD_INPUT, obj, "shape has more than 2^31-1 elements");
        if ((uint64_t)nbytes != (uint64_t)b->size)
            return fail(r, MOPT_ERR_BAD_INPUT, obj,
                        "buffer %u holds %zu bytes but the shape needs %lld", buffer, b->size,
                        (long long)nbytes);
    }
    if (has_q)
        return read_quant(r, &q, mt, obj);
    return MOPT_OK;
}

/* ---------------------------------------------------------- operators */

/* The BuiltinOptions union member each supported op takes (NONE: none). */
static int expected_options(int code)
{
    switch (code) {
    case MOPT_OP_CONV_2D: return TFL_OPT_CONV2D;
    case MOPT_OP_DEPTHWISE_CONV_2D: return TFL_OPT_DEPTHWISE_CONV2D;
    case MOPT_OP_AVERAGE_POOL_2D:
    case MOPT_OP_MAX_POOL_2D: return TFL_OPT_POOL2D;
    case MOPT_OP_FULLY_CONNECTED: return TFL_OPT_FULLY_CONNECTED;
    case MOPT_OP_SOFTMAX: return TFL_OPT_SOFTMAX;
    case MOPT_OP_CONCATENATION: return TFL_OPT_CONCATENATION;
    case MOPT_OP_ADD: return TFL_OPT_ADD;
    case MOPT_OP_SUB: return TFL_OPT_SUB;
    case MOPT_OP_MUL: return TFL_OPT_MUL;
    case MOPT_OP_RESHAPE: return TFL_OPT_RESHAPE;
    case MOPT_OP_PAD: return TFL_OPT_PAD;
    case MOPT_OP_TRANSPOSE: return TFL_OPT_TRANSPOSE;
    case MOPT_OP_MEAN: return TFL_OPT_REDUCER;
    case MOPT_OP_DEQUANTIZE: return TFL_OPT_DEQUANTIZE;
    case MOPT_OP_QUANTIZE: return TFL_OPT_QUANTIZE;
    case MOPT_OP_HARD_SWISH: return TFL_OPT_HARD_SWISH;
    default: return TFL_OPT_NONE; /* RELU, RELU6, LOGISTIC, TANH */
    }
}

/* Schema defaults of the options of `type` (used when the table or a field
 * is absent; they differ from mopt_graph_add_op's convenient defaults). */
static void schema_defaults(mopt_op *op)
{
    memset(&op->p, 0, sizeof op->p);
    switch (op->type) {
    case MOPT_OP_CONV_2D:
    case MOPT_OP_DEPTHWISE_CONV_2D:
        op->p.conv.dilation_w = 1;
        op->p.conv.dilation_h = 1;
        break;
    case MOPT_OP_ADD:
    case MOPT_OP_SUB: op->p.binary.pot_scale_int16 = true; break;
    case MOPT_OP_RESHAPE: op->p.reshape.n_new_shape = -1; break;
    default: break;
    }
}

static mopt_status check_enum(reader *r, const char *obj, const char *field, int v, int max)
{
    if (v < 0 || v > max)
        return fail(r, MOPT_ERR_BAD_INPUT, obj, "%s has invalid value %d", field, v);
    return MOPT_OK;
}

#define TRY(expr)                                                                        \
    do {                                                                                 \
        mopt_status try_st_ = (expr);                                                    \
        if (try_st_ != MOPT_OK)                                                          \
            return try_st_;                                                              \
    } while (0)

#define GET(fn, id, def, dst, field)                                                     \
    do {                                                                                 \
        if (!fn(fb, o, id, def, dst))                                                    \
            return fb_fail(r, obj, field);                                               \
    } while (0)

/* Parses the options table `o` of op into op->p. */
static mopt_status read_options(reader *r, const fb_table *o, mopt_op *op, const char *obj)
{
    fb_reader *fb = &r->fb;
    int8_t pad = 0, act = 0, qbt = 0;
    switch (op->type) {
    case MOPT_OP_CONV_2D: {
        mopt_conv_params *c = &op->p.conv;
        GET(fb_get_i8, TFL_CONV_PADDING, 0, &pad, "Conv2DOptions.padding");
        GET(fb_get_i32, TFL_CONV_STRIDE_W, 0, &c->stride_w, "Conv2DOptions.stride_w");
        GET(fb_get_i32, TFL_CONV_STRIDE_H, 0, &c->stride_h, "Conv2DOptions.stride_h");
        GET(fb_get_i8, TFL_CONV_ACTIVATION, 0, &act, "Conv2DOptions.fused_activation_function");
        GET(fb_get_i32, TFL_CONV_DILATION_W, 1, &c->dilation_w, "Conv2DOptions.dilation_w_factor");
        GET(fb_get_i32, TFL_CONV_DILATION_H, 1, &c->dilation_h, "Conv2DOptions.dilation_h_factor");
        GET(fb_get_i8, TFL_CONV_QUANTIZED_BIAS_TYPE, 0, &qbt, "Conv2DOptions.quantized_bias_type");
        TRY(check_enum(r, obj, "Conv2DOptions.padding", pad, MOPT_PAD_VALID));
        TRY(check_enum(r, obj, "Conv2DOptions.fused_activation_function", act, MOPT_ACT_SIGN_BIT));
        TRY(check_enum(r, obj, "Conv2DOptions.quantized_bias_type", qbt, TFL_TENSOR_TYPE_MAX));
        c->padding = (mopt_padding)pad;
        c->act = (mopt_activation)act;
        c->quantized_bias_type = qbt;
        return MOPT_OK;
    }
    case MOPT_OP_DEPTHWISE_CONV_2D: {
        mopt_conv_params *c = &op->p.conv;
        GET(fb_get_i8, TFL_DW_PADDING, 0, &pad, "DepthwiseConv2DOptions.padding");
        GET(fb_get_i32, TFL_DW_STRIDE_W, 0, &c->stride_w, "DepthwiseConv2DOptions.stride_w");
        GET(fb_get_i32, TFL_DW_STRIDE_H, 0, &c->stride_h, "DepthwiseConv2DOptions.stride_h");
        GET(fb_get_i32, TFL_DW_DEPTH_MULTIPLIER, 0, &c->depth_multiplier,
            "DepthwiseConv2DOptions.depth_multiplier");
        GET(fb_get_i8, TFL_DW_ACTIVATION, 0, &act,
            "DepthwiseConv2DOptions.fused_activation_function");
        GET(fb_get_i32, TFL_DW_DILATION_W, 1, &c->dilation_w,
            "DepthwiseConv2DOptions.dilation_w_factor");
        GET(fb_get_i32, TFL_DW_DILATION_H, 1, &c->dilation_h,
            "DepthwiseConv2DOptions.dilation_h_factor");
        TRY(check_enum(r, obj, "DepthwiseConv2DOptions.padding", pad, MOPT_PAD_VALID));
        TRY(check_enum(r, obj, "DepthwiseConv2DOptions.fused_activation_function", act,
                       MOPT_ACT_SIGN_BIT));
        c->padding = (mopt_padding)pad;
        c->act = (mopt_activation)act;
        return MOPT_OK;
    }
    case MOPT_OP_AVERAGE_POOL_2D:
    case MOPT_OP_MAX_POOL_2D: {
        mopt_pool_params *p = &op->p.pool;
        GET(fb_get_i8, TFL_POOL_PADDING, 0, &pad, "Pool2DOptions.padding");
        GET(fb_get_i32, TFL_POOL_STRIDE_W, 0, &p->stride_w, "Pool2DOptions.stride_w");
        GET(fb_get_i32, TFL_POOL_STRIDE_H, 0, &p->stride_h, "Pool2DOptions.stride_h");
        GET(fb_get_i32, TFL_POOL_FILTER_W, 0, &p->filter_w, "Pool2DOptions.filter_width");
        GET(fb_get_i32, TFL_POOL_FILTER_H, 0, &p->filter_h, "Pool2DOptions.filter_height");
        GET(fb_get_i8, TFL_POOL_ACTIVATION, 0, &act, "Pool2DOptions.fused_activation_function");
        TRY(check_enum(r, obj, "Pool2DOptions.padding", pad, MOPT_PAD_VALID));
        TRY(check_enum(r, obj, "Pool2DOptions.fused_activation_function", act, MOPT_ACT_SIGN_BIT));
        p->padding = (mopt_padding)pad;
        p->act = (mopt_activation)act;
        return MOPT_OK;
    }
    case MOPT_OP_FULLY_CONNECTED: {
        mopt_fc_params *p = &op->p.fc;
        int8_t wf = 0;
        GET(fb_get_i8, TFL_FC_ACTIVATION, 0, &act, "FullyConnectedOptions.fused_activation_function");
        GET(fb_get_i8, TFL_FC_WEIGHTS_FORMAT, 0, &wf, "FullyConnectedOptions.weights_format");
        GET(fb_get_bool, TFL_FC_KEEP_NUM_DIMS, false, &p->keep_num_dims,
            "FullyConnectedOptions.keep_num_dims");
        GET(fb_get_bool, TFL_FC_ASYMMETRIC_QUANTIZE_INPUTS, false, &p->asymmetric_quantize_inputs,
            "FullyConnectedOptions.asymmetric_quantize_inputs");
        GET(fb_get_i8, TFL_FC_QUANTIZED_BIAS_TYPE, 0, &qbt,
            "FullyConnectedOptions.quantized_bias_type");
        if (fb_present(fb, o, TFL_FC_QUANT_SPEC))
            return fail(r, MOPT_ERR_UNSUPPORTED, obj,
                        "FullyConnectedOptions.quant_spec is not supported");
        TRY(check_enum(r, obj, "FullyConnectedOptions.fused_activation_function", act,
                       MOPT_ACT_SIGN_BIT));
        TRY(check_enum(r, obj, "FullyConnectedOptions.weights_format", wf, 1));
        TRY(check_enum(r, obj, "FullyConnectedOptions.quantized_bias_type", qbt,
                       TFL_TENSOR_TYPE_MAX));
        p->act = (mopt_activation)act;
        p->weights_format = wf;
        p->quantized_bias_type = qbt;
        return MOPT_OK;
    }
    case MOPT_OP_SOFTMAX:
        GET(fb_get_f32, TFL_SOFTMAX_BETA, 0.0f, &op->p.softmax.beta, "SoftmaxOptions.beta");
        return MOPT_OK;
    case MOPT_OP_CONCATENATION:
        GET(fb_get_i32, TFL_CONCAT_AXIS, 0, &op->p.concat.axis, "ConcatenationOptions.axis");
        GET(fb_get_i8, TFL_CONCAT_ACTIVATION, 0, &act,
            "ConcatenationOptions.fused_activation_function");
        TRY(check_enum(r, obj, "ConcatenationOptions.fused_activation_function", act,
                       MOPT_ACT_SIGN_BIT));
        op->p.concat.act = (mopt_activation)act;
        return MOPT_OK;
    case MOPT_OP_ADD:
    case MOPT_OP_SUB: {
        const char *an = op->type == MOPT_OP_ADD ? "AddOptions.fused_activation_function"
                                                 : "SubOptions.fused_activation_function";
        GET(fb_get_i8, TFL_ADDSUB_ACTIVATION, 0, &act, an);
        GET(fb_get_bool, TFL_ADDSUB_POT_SCALE_INT16, true, &op->p.binary.pot_scale_int16,
            op->type == MOPT_OP_ADD ? "AddOptions.pot_scale_int16" : "SubOptions.pot_scale_int16");
        TRY(check_enum(r, obj, an, act, MOPT_ACT_SIGN_BIT));
        op->p.binary.act = (mopt_activation)act;
        return MOPT_OK;
    }
    case MOPT_OP_MUL:
        GET(fb_get_i8, TFL_MUL_ACTIVATION, 0, &act, "MulOptions.fused_activation_function");
        TRY(check_enum(r, obj, "MulOptions.fused_activation_function", act, MOPT_ACT_SIGN_BIT));
        op->p.binary.act = (mopt_activation)act;
        op->p.binary.pot_scale_int16 = false; /* no such field for MUL */
        return MOPT_OK;
    case MOPT_OP_RESHAPE: {
        fb_vec ns;
        bool present;
        if (!fb_get_vec(fb, o, TFL_RESHAPE_NEW_SHAPE, 4, 4, &ns, &present))
            return fb_fail(r, obj, "ReshapeOptions.new_shape");
        if (!present)
            return MOPT_OK;
        if (ns.n > MOPT_MAX_DIMS)
            return fail(r, MOPT_ERR_UNSUPPORTED, obj,
                        "ReshapeOptions.new_shape has %u entries (maximum %d)", ns.n,
                        MOPT_MAX_DIMS);
        for (uint32_t i = 0; i < ns.n; i++)
            op->p.reshape.new_shape[i] = fb_vec_i32(fb, &ns, i);
        op->p.reshape.n_new_shape = (int)ns.n;
        return MOPT_OK;
    }
    case MOPT_OP_MEAN:
        GET(fb_get_bool, TFL_REDUCER_KEEP_DIMS, false, &op->p.reducer.keep_dims,
            "ReducerOptions.keep_dims");
        return MOPT_OK;
    default:
        return MOPT_OK; /* empty option tables */
    }
}

#undef GET

/* Reads an index vector (op inputs/outputs, graph inputs/outputs) and
 * checks each entry against n_tensors; -1 is allowed if allow_omitted. */
static mopt_status read_indices(reader *r, const fb_table *t, unsigned id, const char *obj,
                                const char *field, bool allow_omitted, int32_t **out, int *n_out)
{
    fb_vec v;
    *out = NULL;
    *n_out = 0;
    if (!fb_get_vec(&r->fb, t, id, 4, 4, &v, NULL))
        return fb_fail(r, obj, field);
    if (v.n == 0)
        return MOPT_OK;
    TRY(spend(r, obj, (uint64_t)v.n * 4));
    int32_t *a = malloc(v.n * sizeof *a);
    if (a == NULL)
        return nomem(r, obj);
    for (uint32_t i = 0; i < v.n; i++) {
        int32_t x = fb_vec_i32(&r->fb, &v, i);
        if (x == -1 && allow_omitted) {
            a[i] = x;
            continue;
        }
        if (x < 0 || x >= r->g->n_tensors) {
            free(a);
            return fail(r, MOPT_ERR_BAD_INPUT, obj, "%s[%u]: tensor %d out of range (%d tensors)",
                        field, i, (int)x, r->g->n_tensors);
        }
        a[i] = x;
    }
    *out = a;
    *n_out = (int)v.n;
    return MOPT_OK;
}

static mopt_status read_operator(reader *r, const fb_vec *ops, uint32_t i)
{
    fb_reader *fb = &r->fb;
    fb_table t, o;
    fb_vec custom_opts;
    uint32_t opcode_index;
    uint8_t opt_type, opt2_type;
    bool has_o;
    char obj[96];

    snprintf(obj, sizeof obj, "operator %u", i);
    if (!fb_vec_table(fb, ops, i, &t))
        return fb_fail(r, obj, "table");
    if (!fb_get_u32(fb, &t, TFL_OP_OPCODE_INDEX, 0, &opcode_index))
        return fb_fail(r, obj, "opcode_index");
    if (opcode_index >= (uint32_t)r->n_opcodes)
        return fail(r, MOPT_ERR_BAD_INPUT, obj, "opcode_index %u out of range (%d operator codes)",
                    opcode_index, r->n_opcodes);
    const opcode_info *oc = &r->opcodes[opcode_index];
    if (oc->code == TFL_OP_CODE_CUSTOM) {
        char shown[80];
        printable(shown, sizeof shown, oc->custom ? oc->custom : "", 64, false);
        return fail(r, MOPT_ERR_UNSUPPORTED, obj, "unsupported operator CUSTOM '%s'", shown);
    }
    if (!mopt_op_supported(oc->code))
        return fail(r, MOPT_ERR_UNSUPPORTED, obj, "unsupported operator %s (code %d)",
                    op_display_name(oc->code), (int)oc->code);
    snprintf(obj, sizeof obj, "operator %u (%s)", i, op_display_name(oc->code));

    if (!fb_get_u8(fb, &t, TFL_OP_BUILTIN_OPTIONS_TYPE, 0, &opt_type))
        return fb_fail(r, obj, "builtin_options_type");
    if (!fb_get_table(fb, &t, TFL_OP_BUILTIN_OPTIONS, &o, &has_o))
        return fb_fail(r, obj, "builtin_options");
    if (!fb_get_vec(fb, &t, TFL_OP_CUSTOM_OPTIONS, 1, 1, &custom_opts, NULL))
        return fb_fail(r, obj, "custom_options");
    if (!fb_get_u8(fb, &t, TFL_OP_BUILTIN_OPTIONS_2_TYPE, 0, &opt2_type))
        return fb_fail(r, obj, "builtin_options_2_type");
    int want = expected_options(oc->code);
    /* NONE (no table) is legal for every op: the schema defaults apply. */
    if (opt_type != TFL_OPT_NONE && opt_type != want)
        return fail(r, MOPT_ERR_BAD_INPUT, obj,
                    "builtin_options_type %u does not match the operator (expected %d)", opt_type,
                    want);
    if (opt_type == TFL_OPT_NONE && has_o)
        return fail(r, MOPT_ERR_BAD_INPUT, obj, "builtin_options present without a type");
    if (custom_opts.n > 0)
        return fail(r, MOPT_ERR_UNSUPPORTED, obj, "custom_options on a builtin operator");
    if (opt2_type != 0 || fb_present(fb, &t, TFL_OP_BUILTIN_OPTIONS_2))
        return fail(r, MOPT_ERR_UNSUPPORTED, obj, "builtin_options_2 (type %u) not supported",
                    opt2_type);

    int32_t *in = NULL, *out = NULL;
    int n_in = 0, n_out = 0;
    mopt_status st = read_indices(r, &t, TFL_OP_INPUTS, obj, "inputs", true, &in, &n_in);
    if (st == MOPT_OK)
        st = read_indices(r, &t, TFL_OP_OUTPUTS, obj, "outputs", false, &out, &n_out);
    if (st == MOPT_OK) {
        int idx = mopt_graph_add_op(r->g, (mopt_op_type)oc->code, in, n_in, out, n_out);
        if (idx < 0) {
            st = nomem(r, obj);
        } else {
            mopt_op *op = &r->g->ops[idx];
            op->version = oc->version;
            op->has_options = has_o;
            schema_defaults(op);
            if (has_o)
                st = read_options(r, &o, op, obj);
        }
    }
    free(in);
    free(out);
    return st;
}

/* ---------------------------------------------------------- subgraph */

static mopt_status read_subgraph(reader *r, const fb_table *model)
{
    fb_reader *fb = &r->fb;
    fb_vec subgraphs, tensors, ops;
    fb_table sg;
    if (!fb_get_vec(fb, model, TFL_MODEL_SUBGRAPHS, 4, 4, &subgraphs, NULL))
        return fb_fail(r, "model", "subgraphs");
    if (subgraphs.n == 0)
        return fail(r, MOPT_ERR_BAD_INPUT, "model", "no subgraph");
    if (subgraphs.n > 1)
        return fail(r, MOPT_ERR_UNSUPPORTED, "model",
                    "%u subgraphs; only single-subgraph models are supported", subgraphs.n);
    if (!fb_vec_table(fb, &subgraphs, 0, &sg))
        return fb_fail(r, "subgraph 0", "table");
    if (!fb_get_vec(fb, &sg, TFL_SUBGRAPH_TENSORS, 4, 4, &tensors, NULL))
        return fb_fail(r, "subgraph 0", "tensors");
    for (uint32_t i = 0; i < tensors.n; i++)
        TRY(read_tensor(r, &tensors, i));
    if (!fb_get_vec(fb, &sg, TFL_SUBGRAPH_OPERATORS, 4, 4, &ops, NULL))
        return fb_fail(r, "subgraph 0", "operators");
    for (uint32_t i = 0; i < ops.n; i++)
        TRY(read_operator(r, &ops, i));
    mopt_graph *g = r->g;
    TRY(read_indices(r, &sg, TFL_SUBGRAPH_INPUTS, "subgraph 0", "inputs", false, &g->inputs,
                     &g->n_inputs));
    TRY(read_indices(r, &sg, TFL_SUBGRAPH_OUTPUTS, "subgraph 0", "outputs", false, &g->outputs,
                     &g->n_outputs));
    return read_str(r, &sg, TFL_SUBGRAPH_NAME, "subgraph 0", "name", &g->name);
}

/* ------------------------------------------------ metadata, signatures */

static mopt_status read_metadata(reader *r, const fb_table *model)
{
    fb_vec v;
    char obj[64];
    mopt_graph *g = r->g;
    if (!fb_get_vec(&r->fb, model, TFL_MODEL_METADATA, 4, 4, &v, NULL))
        return fb_fail(r, "model", "metadata");
    if (v.n == 0)
        return MOPT_OK;
    TRY(spend(r, "model", (uint64_t)v.n * sizeof *g->metadata));
    g->metadata = calloc(v.n, sizeof *g->metadata);
    if (g->metadata == NULL)
        return nomem(r, "model");
    for (uint32_t i = 0; i < v.n; i++) {
        fb_table t;
        mopt_metadata *m = &g->metadata[i];
        g->n_metadata = (int)i + 1; /* so the graph frees what is filled */
        snprintf(obj, sizeof obj, "metadata %u", i);
        if (!fb_vec_table(&r->fb, &v, i, &t))
            return fb_fail(r, obj, "table");
        TRY(read_str(r, &t, TFL_METADATA_NAME, obj, "name", &m->name));
        if (!fb_get_u32(&r->fb, &t, TFL_METADATA_BUFFER, 0, &m->buffer))
            return fb_fail(r, obj, "buffer");
        if (m->buffer >= (uint32_t)g->n_buffers)
            return fail(r, MOPT_ERR_BAD_INPUT, obj, "buffer %u out of range (%d buffers)",
                        m->buffer, g->n_buffers);
    }
    return MOPT_OK;
}

static mopt_status read_tensor_maps(reader *r, const fb_table *sd, unsigned id, const char *obj,
                                    const char *field, mopt_tensor_map **out, int *n_out)
{
    fb_vec v;
    char fname[64];
    if (!fb_get_vec(&r->fb, sd, id, 4, 4, &v, NULL))
        return fb_fail(r, obj, field);
    if (v.n == 0)
        return MOPT_OK;
    TRY(spend(r, obj, (uint64_t)v.n * sizeof **out));
    *out = calloc(v.n, sizeof **out);
    if (*out == NULL)
        return nomem(r, obj);
    for (uint32_t i = 0; i < v.n; i++) {
        fb_table t;
        mopt_tensor_map *m = &(*out)[i];
        *n_out = (int)i + 1;
        snprintf(fname, sizeof fname, "%s[%u]", field, i);
        if (!fb_vec_table(&r->fb, &v, i, &t))
            return fb_fail(r, obj, fname);
        TRY(read_str(r, &t, TFL_TENSORMAP_NAME, obj, fname, &m->name));
        if (!fb_get_u32(&r->fb, &t, TFL_TENSORMAP_TENSOR_INDEX, 0, &m->tensor))
            return fb_fail(r, obj, fname);
        if (m->tensor >= (uint32_t)r->g->n_tensors)
            return fail(r, MOPT_ERR_BAD_INPUT, obj, "%s: tensor %u out of range (%d tensors)",
                        fname, m->tensor, r->g->n_tensors);
    }
    return MOPT_OK;
}

static mopt_status read_signatures(reader *r, const fb_table *model)
{
    fb_vec v;
    char obj[64];
    mopt_graph *g = r->g;
    if (!fb_get_vec(&r->fb, model, TFL_MODEL_SIGNATURE_DEFS, 4, 4, &v, NULL))
        return fb_fail(r, "model", "signature_defs");
    if (v.n == 0)
        return MOPT_OK;
    TRY(spend(r, "model", (uint64_t)v.n * sizeof *g->signatures));
    g->signatures = calloc(v.n, sizeof *g->signatures);
    if (g->signatures == NULL)
        return nomem(r, "model");
    for (uint32_t i = 0; i < v.n; i++) {
        fb_table t;
        mopt_signature *s = &g->signatures[i];
        g->n_signatures = (int)i + 1;
        snprintf(obj, sizeof obj, "signature %u", i);
        if (!fb_vec_table(&r->fb, &v, i, &t))
            return fb_fail(r, obj, "table");
        TRY(read_str(r, &t, TFL_SIGDEF_SIGNATURE_KEY, obj, "signature_key", &s->key));
        if (!fb_get_u32(&r->fb, &t, TFL_SIGDEF_SUBGRAPH_INDEX, 0, &s->subgraph))
            return fb_fail(r, obj, "subgraph_index");
        if (s->subgraph != 0)
            return fail(r, MOPT_ERR_BAD_INPUT, obj, "subgraph_index %u out of range (1 subgraph)",
                        s->subgraph);
        TRY(read_tensor_maps(r, &t, TFL_SIGDEF_INPUTS, obj, "inputs", &s->inputs, &s->n_inputs));
        TRY(read_tensor_maps(r, &t, TFL_SIGDEF_OUTPUTS, obj, "outputs", &s->outputs,
                             &s->n_outputs));
    }
    return MOPT_OK;
}

/* ---------------------------------------------------------------- model */

static mopt_status read_model(reader *r, const void *data, size_t size)
{
    fb_table model;
    uint32_t version;
    fb_vec ext;
    if (!fb_reader_init(&r->fb, data, size, TFL_IDENTIFIER))
        return fail(r, MOPT_ERR_BAD_INPUT, "model", "%s", r->fb.why);
    if (!fb_root(&r->fb, &model))
        return fb_fail(r, "model", "root table");
    r->budget = 2 * (uint64_t)size + (1u << 20);
    if (!fb_get_u32(&r->fb, &model, TFL_MODEL_VERSION, 0, &version))
        return fb_fail(r, "model", "version");
    if (version != TFL_SCHEMA_VERSION)
        return fail(r, MOPT_ERR_UNSUPPORTED, "model",
                    "schema version %u is not supported (expected %d)", version,
                    TFL_SCHEMA_VERSION);
    for (unsigned id = TFL_MODEL_EXTERNAL_BUFFER_GROUPS; id <= TFL_MODEL_EXTERNAL_BUFFERS; id++) {
        if (!fb_get_vec(&r->fb, &model, id, 4, 4, &ext, NULL))
            return fb_fail(r, "model", "external buffers");
        if (ext.n > 0)
            return fail(r, MOPT_ERR_UNSUPPORTED, "model",
                        "external buffers (data outside the flatbuffer) are not supported");
    }
    TRY(read_buffers(r, &model));
    TRY(read_opcodes(r, &model));
    TRY(read_subgraph(r, &model));
    TRY(read_str(r, &model, TFL_MODEL_DESCRIPTION, "model", "description", &r->g->description));
    TRY(read_metadata(r, &model));
    return read_signatures(r, &model);
}

mopt_status mopt_tflite_read_mem(const void *data, size_t size, const char *name,
                                 mopt_graph **out, mopt_error *err)
{
    reader r;
    memset(&r, 0, sizeof r);
    r.err = err;
    printable(r.file, sizeof r.file, name ? name : "<memory>", 300, true);
    if (out == NULL || (data == NULL && size > 0))
        return fail(&r, MOPT_ERR_ARG, "model", "no output pointer or no data");
    *out = NULL;
    r.g = mopt_graph_create();
    if (r.g == NULL)
        return nomem(&r, "model");
    mopt_status st = read_model(&r, data, size);
    free(r.opcodes);
    if (st != MOPT_OK) {
        mopt_graph_free(r.g);
        return st;
    }
    mopt_error_clear(err);
    *out = r.g;
    return MOPT_OK;
}

mopt_status mopt_tflite_read_file(const char *path, mopt_graph **out, mopt_error *err)
{
    uint8_t *data = NULL;
    size_t size = 0;
    if (out)
        *out = NULL;
    if (path == NULL)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_tflite_read_file: no path");
    mopt_status st = mopt_file_read_all(path, FB_MAX_SIZE, &data, &size, err);
    if (st != MOPT_OK)
        return st;
    st = mopt_tflite_read_mem(data, size, path, out, err);
    free(data);
    return st;
}
