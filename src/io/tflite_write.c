/* io/tflite_write.c - mopt_graph -> .tflite flatbuffer.
 *
 * The output must pass the official FlatBuffers verifier (LiteRT verifies
 * every model it loads) and mean the same to LiteRT as the graph does:
 *  - Buffer.data is declared (force_align: 16): its first byte is put on a
 *    16-byte boundary, so kernels can use constant data in place;
 *  - both OperatorCode fields are filled (deprecated_builtin_code holds
 *    min(code, 127), the placeholder for larger codes);
 *  - option values that differ from the schema default are always written
 *    (the defaults are not all zero: pot_scale_int16 is true, dilation 1);
 *  - buffers[0] is the empty sentinel, Model.version is 3.
 * Objects are written in a fixed order from the graph alone, so the same
 * graph always gives the same bytes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/flatbuf.h"
#include "io/tflite_schema.h"
#include "mopt/tflite.h"
#include "mopt/util.h"

typedef struct opcode_key {
    int32_t code;
    int32_t version;
} opcode_key;

typedef struct writer {
    const mopt_graph *g;
    mopt_error *err;
    fb_builder b;
    int n_opcodes;
    opcode_key *opcodes;
    int *op_opcode; /* opcode index of each operator */
    fb_ref *refs;   /* scratch, sized for the largest object list */
    fb_ref *sig_refs; /* signature defs (refs is busy with their maps) */
} writer;

static mopt_status wfail(writer *w, mopt_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static mopt_status wfail(writer *w, mopt_status st, const char *fmt, ...)
{
    char msg[MOPT_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mopt_error_set(w->err, st, "%s", msg);
}

static int32_t op_version(const mopt_op *op) { return op->version >= 1 ? op->version : 1; }

/* ------------------------------------------------------------- checks */

/* The writer trusts nothing it would index with: a graph edited by a
 * transformation may be inconsistent, and that must give an error, not a
 * bad read or a file mopt itself would refuse. */
static mopt_status check_graph(writer *w)
{
    const mopt_graph *g = w->g;
    if (g->n_tensors < 0 || g->n_ops < 0 || g->n_buffers < 1 || g->n_inputs < 0 ||
        g->n_outputs < 0 || g->n_metadata < 0 || g->n_signatures < 0)
        return wfail(w, MOPT_ERR_ARG, "graph: negative count or missing buffer 0");
    if ((g->n_tensors > 0 && !g->tensors) || (g->n_ops > 0 && !g->ops) || !g->buffers ||
        (g->n_inputs > 0 && !g->inputs) || (g->n_outputs > 0 && !g->outputs) ||
        (g->n_metadata > 0 && !g->metadata) || (g->n_signatures > 0 && !g->signatures))
        return wfail(w, MOPT_ERR_ARG, "graph: array missing for a non-zero count");
    if (g->buffers[0].size != 0)
        return wfail(w, MOPT_ERR_BAD_INPUT, "buffer 0: must be empty (holds %zu bytes)",
                     g->buffers[0].size);
    for (int i = 0; i < g->n_buffers; i++) {
        const mopt_buffer *b = &g->buffers[i];
        if (b->size > FB_MAX_SIZE || (b->size > 0 && !b->data))
            return wfail(w, MOPT_ERR_BAD_INPUT, "buffer %d: size %zu without data or too large", i,
                         b->size);
    }
    for (int i = 0; i < g->n_tensors; i++) {
        const mopt_tensor *t = &g->tensors[i];
        const char *nm = t->name ? t->name : "";
        if (t->rank < 0 || t->rank > MOPT_MAX_DIMS)
            return wfail(w, MOPT_ERR_BAD_INPUT, "tensor %d '%s': rank %d out of range", i, nm,
                         t->rank);
        for (int d = 0; d < t->rank; d++)
            if (t->dims[d] < 0)
                return wfail(w, MOPT_ERR_BAD_INPUT, "tensor %d '%s': dimension %d is negative", i,
                             nm, d);
        if (tfl_type_name((int)t->dtype) == NULL || mopt_dtype_size(t->dtype) == 0)
            return wfail(w, MOPT_ERR_BAD_INPUT, "tensor %d '%s': unsupported type %d", i, nm,
                         (int)t->dtype);
        if (t->buffer >= (uint32_t)g->n_buffers)
            return wfail(w, MOPT_ERR_BAD_INPUT, "tensor %d '%s': buffer %u out of range (%d buffers)",
                         i, nm, t->buffer, g->n_buffers);
        size_t bsize = g->buffers[t->buffer].size;
        if (bsize > 0) {
            int64_t nb = mopt_tensor_nbytes(t);
            if (nb < 0 || (uint64_t)nb != (uint64_t)bsize)
                return wfail(w, MOPT_ERR_BAD_INPUT,
                             "tensor %d '%s': buffer %u holds %zu bytes but the shape needs %lld",
                             i, nm, t->buffer, bsize, (long long)nb);
        }
        const mopt_quant *q = &t->quant;
        if (q->n < 0 || q->n_minmax < 0 || (q->n > 0 && (!q->scale || !q->zero_point)) ||
            (q->n_minmax > 0 && (!q->min || !q->max)))
            return wfail(w, MOPT_ERR_BAD_INPUT, "tensor %d '%s': inconsistent quantization arrays",
                         i, nm);
        if (q->n > 1 && (q->axis < 0 || q->axis >= t->rank || q->n != t->dims[q->axis]))
            return wfail(w, MOPT_ERR_BAD_INPUT,
                         "tensor %d '%s': %d per-axis scales do not match axis %d", i, nm, q->n,
                         (int)q->axis);
        if (t->n_shape_signature < 0 || (t->n_shape_signature > 0 && !t->shape_signature) ||
            t->n_shape_signature > MOPT_MAX_DIMS)
            return wfail(w, MOPT_ERR_BAD_INPUT, "tensor %d '%s': bad shape_signature", i, nm);
    }
    for (int i = 0; i < g->n_ops; i++) {
        const mopt_op *op = &g->ops[i];
        if (!mopt_op_supported((int)op->type))
            return wfail(w, MOPT_ERR_BAD_INPUT, "operator %d: unknown type %d", i, (int)op->type);
        if (op->n_inputs < 0 || op->n_outputs < 0 || (op->n_inputs > 0 && !op->inputs) ||
            (op->n_outputs > 0 && !op->outputs))
            return wfail(w, MOPT_ERR_BAD_INPUT, "operator %d (%s): bad input/output arrays", i,
                         mopt_op_name((int)op->type));
        for (int k = 0; k < op->n_inputs; k++)
            if (op->inputs[k] < -1 || op->inputs[k] >= g->n_tensors)
                return wfail(w, MOPT_ERR_BAD_INPUT,
                             "operator %d (%s): input %d is tensor %d, out of range (%d tensors)",
                             i, mopt_op_name((int)op->type), k, (int)op->inputs[k], g->n_tensors);
        for (int k = 0; k < op->n_outputs; k++)
            if (op->outputs[k] < 0 || op->outputs[k] >= g->n_tensors)
                return wfail(w, MOPT_ERR_BAD_INPUT,
                             "operator %d (%s): output %d is tensor %d, out of range (%d tensors)",
                             i, mopt_op_name((int)op->type), k, (int)op->outputs[k], g->n_tensors);
        if (op->type == MOPT_OP_RESHAPE && op->p.reshape.n_new_shape > MOPT_MAX_DIMS)
            return wfail(w, MOPT_ERR_BAD_INPUT, "operator %d (RESHAPE): new_shape too long", i);
    }
    for (int k = 0; k < g->n_inputs; k++)
        if (g->inputs[k] < 0 || g->inputs[k] >= g->n_tensors)
            return wfail(w, MOPT_ERR_BAD_INPUT, "graph input %d: tensor %d out of range", k,
                         (int)g->inputs[k]);
    for (int k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] < 0 || g->outputs[k] >= g->n_tensors)
            return wfail(w, MOPT_ERR_BAD_INPUT, "graph output %d: tensor %d out of range", k,
                         (int)g->outputs[k]);
    for (int i = 0; i < g->n_metadata; i++)
        if (g->metadata[i].buffer >= (uint32_t)g->n_buffers)
            return wfail(w, MOPT_ERR_BAD_INPUT, "metadata %d: buffer %u out of range", i,
                         g->metadata[i].buffer);
    for (int i = 0; i < g->n_signatures; i++) {
        const mopt_signature *s = &g->signatures[i];
        if (s->n_inputs < 0 || s->n_outputs < 0 || (s->n_inputs > 0 && !s->inputs) ||
            (s->n_outputs > 0 && !s->outputs))
            return wfail(w, MOPT_ERR_BAD_INPUT, "signature %d: bad tensor maps", i);
        for (int k = 0; k < s->n_inputs; k++)
            if (s->inputs[k].tensor >= (uint32_t)g->n_tensors)
                return wfail(w, MOPT_ERR_BAD_INPUT, "signature %d: input %d: tensor out of range",
                             i, k);
        for (int k = 0; k < s->n_outputs; k++)
            if (s->outputs[k].tensor >= (uint32_t)g->n_tensors)
                return wfail(w, MOPT_ERR_BAD_INPUT, "signature %d: output %d: tensor out of range",
                             i, k);
    }
    return MOPT_OK;
}

/* One OperatorCode per distinct (type, version), in order of first use. */
static mopt_status collect_opcodes(writer *w)
{
    const mopt_graph *g = w->g;
    if (g->n_ops == 0)
        return MOPT_OK;
    w->opcodes = calloc((size_t)g->n_ops, sizeof *w->opcodes);
    w->op_opcode = calloc((size_t)g->n_ops, sizeof *w->op_opcode);
    if (!w->opcodes || !w->op_opcode)
        return wfail(w, MOPT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < g->n_ops; i++) {
        opcode_key k = {(int32_t)g->ops[i].type, op_version(&g->ops[i])};
        int j = 0;
        while (j < w->n_opcodes && (w->opcodes[j].code != k.code || w->opcodes[j].version != k.version))
            j++;
        if (j == w->n_opcodes)
            w->opcodes[w->n_opcodes++] = k;
        w->op_opcode[i] = j;
    }
    return MOPT_OK;
}

/* ------------------------------------------------------------- objects */

static fb_ref str_ref(fb_builder *b, const char *s)
{
    return s ? fb_create_string(b, s, strlen(s)) : 0;
}

static fb_ref write_quant(writer *w, const mopt_quant *q)
{
    fb_builder *b = &w->b;
    fb_ref rmin = 0, rmax = 0, rscale = 0, rzp = 0;
    if (q->n_minmax > 0) {
        rmin = fb_create_vec(b, q->min, (uint32_t)q->n_minmax, 4, 4);
        rmax = fb_create_vec(b, q->max, (uint32_t)q->n_minmax, 4, 4);
    }
    if (q->n > 0) {
        rscale = fb_create_vec(b, q->scale, (uint32_t)q->n, 4, 4);
        rzp = fb_create_vec(b, q->zero_point, (uint32_t)q->n, 8, 8);
    }
    fb_start_table(b);
    fb_add_ref(b, TFL_QUANT_MIN, rmin);
    fb_add_ref(b, TFL_QUANT_MAX, rmax);
    fb_add_ref(b, TFL_QUANT_SCALE, rscale);
    fb_add_ref(b, TFL_QUANT_ZERO_POINT, rzp);
    if (q->axis != 0)
        fb_add_i32(b, TFL_QUANT_QUANTIZED_DIMENSION, q->axis);
    return fb_end_table(b);
}

static fb_ref write_tensor(writer *w, const mopt_tensor *t)
{
    fb_builder *b = &w->b;
    fb_ref name = fb_create_string(b, t->name ? t->name : "", t->name ? strlen(t->name) : 0);
    fb_ref shape = fb_create_vec(b, t->dims, (uint32_t)t->rank, 4, 4);
    fb_ref sig = 0, quant = 0;
    if (t->n_shape_signature > 0)
        sig = fb_create_vec(b, t->shape_signature, (uint32_t)t->n_shape_signature, 4, 4);
    if (t->quant.n > 0 || t->quant.n_minmax > 0)
        quant = write_quant(w, &t->quant);
    fb_start_table(b);
    fb_add_ref(b, TFL_TENSOR_SHAPE, shape);
    if (t->dtype != MOPT_FLOAT32)
        fb_add_u8(b, TFL_TENSOR_TYPE, (uint8_t)t->dtype);
    if (t->buffer != 0)
        fb_add_u32(b, TFL_TENSOR_BUFFER, t->buffer);
    fb_add_ref(b, TFL_TENSOR_NAME, name);
    fb_add_ref(b, TFL_TENSOR_QUANTIZATION, quant);
    if (t->is_variable)
        fb_add_u8(b, TFL_TENSOR_IS_VARIABLE, 1);
    fb_add_ref(b, TFL_TENSOR_SHAPE_SIGNATURE, sig);
    /* mopt shapes are always known, and the converter marks them so too. */
    fb_add_u8(b, TFL_TENSOR_HAS_RANK, 1);
    return fb_end_table(b);
}

/* Options table of op, or 0 when none is written; *type gets the union
 * type to store next to it. */
static fb_ref write_options(writer *w, const mopt_op *op, uint8_t *type)
{
    fb_builder *b = &w->b;
    *type = TFL_OPT_NONE;
    bool always = false;
    switch (op->type) {
    case MOPT_OP_CONV_2D:
    case MOPT_OP_DEPTHWISE_CONV_2D:
    case MOPT_OP_AVERAGE_POOL_2D:
    case MOPT_OP_MAX_POOL_2D:
    case MOPT_OP_FULLY_CONNECTED:
    case MOPT_OP_SOFTMAX:
    case MOPT_OP_CONCATENATION:
    case MOPT_OP_ADD:
    case MOPT_OP_SUB:
    case MOPT_OP_MUL:
    case MOPT_OP_MEAN: always = true; break;
    case MOPT_OP_RESHAPE: always = op->p.reshape.n_new_shape >= 0; break;
    case MOPT_OP_PAD:
    case MOPT_OP_TRANSPOSE:
    case MOPT_OP_QUANTIZE:
    case MOPT_OP_DEQUANTIZE:
    case MOPT_OP_HARD_SWISH: break;
    default: return 0; /* RELU, RELU6, LOGISTIC, TANH have no options table */
    }
    if (!always && !op->has_options)
        return 0;

    fb_ref new_shape = 0;
    if (op->type == MOPT_OP_RESHAPE && op->p.reshape.n_new_shape >= 0)
        new_shape = fb_create_vec(b, op->p.reshape.new_shape, (uint32_t)op->p.reshape.n_new_shape,
                                  4, 4);
    fb_start_table(b);
    switch (op->type) {
    case MOPT_OP_CONV_2D: {
        const mopt_conv_params *c = &op->p.conv;
        *type = TFL_OPT_CONV2D;
        if (c->padding != MOPT_PAD_SAME) fb_add_u8(b, TFL_CONV_PADDING, (uint8_t)c->padding);
        if (c->stride_w != 0) fb_add_i32(b, TFL_CONV_STRIDE_W, c->stride_w);
        if (c->stride_h != 0) fb_add_i32(b, TFL_CONV_STRIDE_H, c->stride_h);
        if (c->act != MOPT_ACT_NONE) fb_add_u8(b, TFL_CONV_ACTIVATION, (uint8_t)c->act);
        if (c->dilation_w != 1) fb_add_i32(b, TFL_CONV_DILATION_W, c->dilation_w);
        if (c->dilation_h != 1) fb_add_i32(b, TFL_CONV_DILATION_H, c->dilation_h);
        if (c->quantized_bias_type != 0)
            fb_add_u8(b, TFL_CONV_QUANTIZED_BIAS_TYPE, (uint8_t)c->quantized_bias_type);
        break;
    }
    case MOPT_OP_DEPTHWISE_CONV_2D: {
        const mopt_conv_params *c = &op->p.conv;
        *type = TFL_OPT_DEPTHWISE_CONV2D;
        if (c->padding != MOPT_PAD_SAME) fb_add_u8(b, TFL_DW_PADDING, (uint8_t)c->padding);
        if (c->stride_w != 0) fb_add_i32(b, TFL_DW_STRIDE_W, c->stride_w);
        if (c->stride_h != 0) fb_add_i32(b, TFL_DW_STRIDE_H, c->stride_h);
        if (c->depth_multiplier != 0) fb_add_i32(b, TFL_DW_DEPTH_MULTIPLIER, c->depth_multiplier);
        if (c->act != MOPT_ACT_NONE) fb_add_u8(b, TFL_DW_ACTIVATION, (uint8_t)c->act);
        if (c->dilation_w != 1) fb_add_i32(b, TFL_DW_DILATION_W, c->dilation_w);
        if (c->dilation_h != 1) fb_add_i32(b, TFL_DW_DILATION_H, c->dilation_h);
        break;
    }
    case MOPT_OP_AVERAGE_POOL_2D:
    case MOPT_OP_MAX_POOL_2D: {
        const mopt_pool_params *p = &op->p.pool;
        *type = TFL_OPT_POOL2D;
        if (p->padding != MOPT_PAD_SAME) fb_add_u8(b, TFL_POOL_PADDING, (uint8_t)p->padding);
        if (p->stride_w != 0) fb_add_i32(b, TFL_POOL_STRIDE_W, p->stride_w);
        if (p->stride_h != 0) fb_add_i32(b, TFL_POOL_STRIDE_H, p->stride_h);
        if (p->filter_w != 0) fb_add_i32(b, TFL_POOL_FILTER_W, p->filter_w);
        if (p->filter_h != 0) fb_add_i32(b, TFL_POOL_FILTER_H, p->filter_h);
        if (p->act != MOPT_ACT_NONE) fb_add_u8(b, TFL_POOL_ACTIVATION, (uint8_t)p->act);
        break;
    }
    case MOPT_OP_FULLY_CONNECTED: {
        const mopt_fc_params *p = &op->p.fc;
        *type = TFL_OPT_FULLY_CONNECTED;
        if (p->act != MOPT_ACT_NONE) fb_add_u8(b, TFL_FC_ACTIVATION, (uint8_t)p->act);
        if (p->weights_format != 0) fb_add_u8(b, TFL_FC_WEIGHTS_FORMAT, (uint8_t)p->weights_format);
        if (p->keep_num_dims) fb_add_u8(b, TFL_FC_KEEP_NUM_DIMS, 1);
        if (p->asymmetric_quantize_inputs) fb_add_u8(b, TFL_FC_ASYMMETRIC_QUANTIZE_INPUTS, 1);
        if (p->quantized_bias_type != 0)
            fb_add_u8(b, TFL_FC_QUANTIZED_BIAS_TYPE, (uint8_t)p->quantized_bias_type);
        break;
    }
    case MOPT_OP_SOFTMAX: {
        /* The schema default is 0.0, so the usual 1.0 must be written;
         * compare bits so that -0.0 survives too. */
        uint32_t bits;
        memcpy(&bits, &op->p.softmax.beta, sizeof bits);
        *type = TFL_OPT_SOFTMAX;
        if (bits != 0) fb_add_f32(b, TFL_SOFTMAX_BETA, op->p.softmax.beta);
        break;
    }
    case MOPT_OP_CONCATENATION:
        *type = TFL_OPT_CONCATENATION;
        if (op->p.concat.axis != 0) fb_add_i32(b, TFL_CONCAT_AXIS, op->p.concat.axis);
        if (op->p.concat.act != MOPT_ACT_NONE)
            fb_add_u8(b, TFL_CONCAT_ACTIVATION, (uint8_t)op->p.concat.act);
        break;
    case MOPT_OP_ADD:
    case MOPT_OP_SUB:
        *type = op->type == MOPT_OP_ADD ? TFL_OPT_ADD : TFL_OPT_SUB;
        if (op->p.binary.act != MOPT_ACT_NONE)
            fb_add_u8(b, TFL_ADDSUB_ACTIVATION, (uint8_t)op->p.binary.act);
        /* Default true: false is the value that must be written. */
        if (!op->p.binary.pot_scale_int16) fb_add_u8(b, TFL_ADDSUB_POT_SCALE_INT16, 0);
        break;
    case MOPT_OP_MUL:
        *type = TFL_OPT_MUL;
        if (op->p.binary.act != MOPT_ACT_NONE)
            fb_add_u8(b, TFL_MUL_ACTIVATION, (uint8_t)op->p.binary.act);
        break;
    case MOPT_OP_RESHAPE:
        *type = TFL_OPT_RESHAPE;
        fb_add_ref(b, TFL_RESHAPE_NEW_SHAPE, new_shape);
        break;
    case MOPT_OP_MEAN:
        *type = TFL_OPT_REDUCER;
        if (op->p.reducer.keep_dims) fb_add_u8(b, TFL_REDUCER_KEEP_DIMS, 1);
        break;
    case MOPT_OP_PAD: *type = TFL_OPT_PAD; break;
    case MOPT_OP_TRANSPOSE: *type = TFL_OPT_TRANSPOSE; break;
    case MOPT_OP_QUANTIZE: *type = TFL_OPT_QUANTIZE; break;
    case MOPT_OP_DEQUANTIZE: *type = TFL_OPT_DEQUANTIZE; break;
    case MOPT_OP_HARD_SWISH: *type = TFL_OPT_HARD_SWISH; break;
    default: break;
    }
    return fb_end_table(b);
}

static fb_ref write_operator(writer *w, int i)
{
    fb_builder *b = &w->b;
    const mopt_op *op = &w->g->ops[i];
    fb_ref in = fb_create_vec(b, op->inputs, (uint32_t)op->n_inputs, 4, 4);
    fb_ref out = fb_create_vec(b, op->outputs, (uint32_t)op->n_outputs, 4, 4);
    uint8_t opt_type;
    fb_ref opts = write_options(w, op, &opt_type);
    fb_start_table(b);
    if (w->op_opcode[i] != 0)
        fb_add_u32(b, TFL_OP_OPCODE_INDEX, (uint32_t)w->op_opcode[i]);
    fb_add_ref(b, TFL_OP_INPUTS, in);
    fb_add_ref(b, TFL_OP_OUTPUTS, out);
    if (opts != 0) {
        fb_add_u8(b, TFL_OP_BUILTIN_OPTIONS_TYPE, opt_type);
        fb_add_ref(b, TFL_OP_BUILTIN_OPTIONS, opts);
    }
    return fb_end_table(b);
}

static fb_ref write_subgraph(writer *w)
{
    const mopt_graph *g = w->g;
    fb_builder *b = &w->b;
    for (int i = 0; i < g->n_tensors; i++)
        w->refs[i] = write_tensor(w, &g->tensors[i]);
    fb_ref tensors = fb_create_vec_refs(b, w->refs, (uint32_t)g->n_tensors);
    for (int i = 0; i < g->n_ops; i++)
        w->refs[i] = write_operator(w, i);
    fb_ref ops = fb_create_vec_refs(b, w->refs, (uint32_t)g->n_ops);
    fb_ref in = fb_create_vec(b, g->inputs, (uint32_t)g->n_inputs, 4, 4);
    fb_ref out = fb_create_vec(b, g->outputs, (uint32_t)g->n_outputs, 4, 4);
    fb_ref name = str_ref(b, g->name);
    fb_start_table(b);
    fb_add_ref(b, TFL_SUBGRAPH_TENSORS, tensors);
    fb_add_ref(b, TFL_SUBGRAPH_INPUTS, in);
    fb_add_ref(b, TFL_SUBGRAPH_OUTPUTS, out);
    fb_add_ref(b, TFL_SUBGRAPH_OPERATORS, ops);
    fb_add_ref(b, TFL_SUBGRAPH_NAME, name);
    return fb_end_table(b);
}

static fb_ref write_tensor_maps(writer *w, const mopt_tensor_map *maps, int n)
{
    fb_builder *b = &w->b;
    fb_ref *refs = w->refs;
    for (int i = 0; i < n; i++) {
        fb_ref name = str_ref(b, maps[i].name);
        fb_start_table(b);
        fb_add_ref(b, TFL_TENSORMAP_NAME, name);
        if (maps[i].tensor != 0)
            fb_add_u32(b, TFL_TENSORMAP_TENSOR_INDEX, maps[i].tensor);
        refs[i] = fb_end_table(b);
    }
    return fb_create_vec_refs(b, refs, (uint32_t)n);
}

static fb_ref write_model(writer *w)
{
    const mopt_graph *g = w->g;
    fb_builder *b = &w->b;

    /* Buffers first: written back to front, their (large) data ends up at
     * the end of the file, as the converter lays it out. */
    for (int i = 0; i < g->n_buffers; i++) {
        const mopt_buffer *buf = &g->buffers[i];
        fb_ref data = 0;
        if (buf->size > 0)
            data = fb_create_vec(b, buf->data, (uint32_t)buf->size, 1, TFL_BUFFER_ALIGN);
        fb_start_table(b);
        fb_add_ref(b, TFL_BUFFER_DATA, data);
        w->refs[i] = fb_end_table(b);
    }
    fb_ref buffers = fb_create_vec_refs(b, w->refs, (uint32_t)g->n_buffers);

    fb_ref subgraph = write_subgraph(w);
    fb_ref subgraphs = fb_create_vec_refs(b, &subgraph, 1);

    for (int i = 0; i < w->n_opcodes; i++) {
        int32_t code = w->opcodes[i].code;
        fb_start_table(b);
        fb_add_u8(b, TFL_OPCODE_DEPRECATED_BUILTIN_CODE,
                  (uint8_t)(code < TFL_OP_CODE_PLACEHOLDER_FOR_GREATER
                                ? code
                                : TFL_OP_CODE_PLACEHOLDER_FOR_GREATER));
        fb_add_i32(b, TFL_OPCODE_VERSION, w->opcodes[i].version);
        fb_add_i32(b, TFL_OPCODE_BUILTIN_CODE, code);
        w->refs[i] = fb_end_table(b);
    }
    fb_ref opcodes = fb_create_vec_refs(b, w->refs, (uint32_t)w->n_opcodes);

    fb_ref description = str_ref(b, g->description);

    fb_ref metadata = 0;
    if (g->n_metadata > 0) {
        for (int i = 0; i < g->n_metadata; i++) {
            fb_ref name = str_ref(b, g->metadata[i].name);
            fb_start_table(b);
            fb_add_ref(b, TFL_METADATA_NAME, name);
            fb_add_u32(b, TFL_METADATA_BUFFER, g->metadata[i].buffer);
            w->refs[i] = fb_end_table(b);
        }
        metadata = fb_create_vec_refs(b, w->refs, (uint32_t)g->n_metadata);
    }

    fb_ref sigdefs = 0;
    if (g->n_signatures > 0) {
        fb_ref *sig_refs = w->sig_refs;
        for (int i = 0; i < g->n_signatures; i++) {
            const mopt_signature *s = &g->signatures[i];
            fb_ref ins = write_tensor_maps(w, s->inputs, s->n_inputs);
            fb_ref outs = write_tensor_maps(w, s->outputs, s->n_outputs);
            fb_ref key = str_ref(b, s->key);
            fb_start_table(b);
            fb_add_ref(b, TFL_SIGDEF_INPUTS, ins);
            fb_add_ref(b, TFL_SIGDEF_OUTPUTS, outs);
            fb_add_ref(b, TFL_SIGDEF_SIGNATURE_KEY, key);
            if (s->subgraph != 0)
                fb_add_u32(b, TFL_SIGDEF_SUBGRAPH_INDEX, s->subgraph);
            sig_refs[i] = fb_end_table(b);
        }
        sigdefs = fb_create_vec_refs(b, sig_refs, (uint32_t)g->n_signatures);
    }

    fb_start_table(b);
    fb_add_u32(b, TFL_MODEL_VERSION, TFL_SCHEMA_VERSION);
    fb_add_ref(b, TFL_MODEL_OPERATOR_CODES, opcodes);
    fb_add_ref(b, TFL_MODEL_SUBGRAPHS, subgraphs);
    fb_add_ref(b, TFL_MODEL_DESCRIPTION, description);
    fb_add_ref(b, TFL_MODEL_BUFFERS, buffers);
    fb_add_ref(b, TFL_MODEL_METADATA, metadata);
    fb_add_ref(b, TFL_MODEL_SIGNATURE_DEFS, sigdefs);
    return fb_end_table(b);
}

mopt_status mopt_tflite_write_mem(const mopt_graph *g, uint8_t **out_data, size_t *out_size,
                                  mopt_error *err)
{
    writer w;
    memset(&w, 0, sizeof w);
    w.g = g;
    w.err = err;
    if (out_data)
        *out_data = NULL;
    if (out_size)
        *out_size = 0;
    if (g == NULL || out_data == NULL || out_size == NULL)
        return wfail(&w, MOPT_ERR_ARG, "mopt_tflite_write_mem: NULL argument");
    mopt_status st = check_graph(&w);
    if (st == MOPT_OK)
        st = collect_opcodes(&w);
    if (st == MOPT_OK) {
        /* One scratch array of refs, big enough for any object list. */
        int n = g->n_tensors;
        if (g->n_ops > n) n = g->n_ops;
        if (g->n_buffers > n) n = g->n_buffers;
        if (g->n_metadata > n) n = g->n_metadata;
        for (int i = 0; i < g->n_signatures; i++) {
            if (g->signatures[i].n_inputs > n) n = g->signatures[i].n_inputs;
            if (g->signatures[i].n_outputs > n) n = g->signatures[i].n_outputs;
        }
        w.refs = calloc((size_t)n + 1, sizeof *w.refs);
        w.sig_refs = calloc((size_t)g->n_signatures + 1, sizeof *w.sig_refs);
        if (w.refs == NULL || w.sig_refs == NULL)
            st = wfail(&w, MOPT_ERR_NOMEM, "out of memory");
    }
    if (st == MOPT_OK) {
        fb_builder_init(&w.b);
        fb_ref root = write_model(&w);
        if (!fb_finish(&w.b, root, TFL_IDENTIFIER))
            st = wfail(&w, strcmp(w.b.why ? w.b.why : "", "out of memory") == 0
                               ? MOPT_ERR_NOMEM
                               : MOPT_ERR_BAD_INPUT,
                       "cannot serialise the model: %s", w.b.why ? w.b.why : "unknown error");
        else {
            *out_data = fb_release(&w.b, out_size);
            if (*out_data == NULL)
                st = wfail(&w, MOPT_ERR_NOMEM, "out of memory");
        }
        fb_builder_free(&w.b);
    }
    free(w.opcodes);
    free(w.op_opcode);
    free(w.refs);
    free(w.sig_refs);
    if (st == MOPT_OK)
        mopt_error_clear(err);
    return st;
}

mopt_status mopt_tflite_write_file(const mopt_graph *g, const char *path, mopt_error *err)
{
    uint8_t *data;
    size_t size;
    if (path == NULL)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_tflite_write_file: no path");
    mopt_status st = mopt_tflite_write_mem(g, &data, &size, err);
    if (st != MOPT_OK) {
        mopt_error_prefix(err, "%s", path);
        return st;
    }
    st = mopt_file_write_atomic(path, data, size, err);
    free(data);
    return st;
}
