/* validate.c - graph validation and TFLite shape inference.
 *
 * mopt_op_infer_shapes checks everything an operator's output shape depends
 * on (arity, index ranges, parameters, input shapes, constant shape-like
 * inputs) and computes the output shapes with TFLite's rules.
 * mopt_graph_validate adds the graph-level rules (tensor sanity, buffer
 * sizes, quantization parameters, producer order, dtypes per op) and checks
 * that the stored output shapes equal the inferred ones.
 *
 * Every message names the object: "operator 3 (CONV_2D): <rule>" or
 * "tensor 7 'name': <rule>".
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/graph.h"

/* ---- messages ---- */

#if defined(__GNUC__)
#define MOPT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MOPT_PRINTF(a, b)
#endif

static const char *op_label(int type) {
    const char *n = mopt_op_name(type);
    return n ? n : "unknown";
}

static const char *tname(const mopt_graph *g, int t) {
    const char *n = g->tensors[t].name;
    return n ? n : "";
}

MOPT_PRINTF(5, 6)
static mopt_status op_fail(mopt_error *err, mopt_status st, const mopt_graph *g, int oi,
                           const char *fmt, ...) {
    char msg[MOPT_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mopt_error_set(err, st, "operator %d (%s): %s", oi, op_label(g->ops[oi].type), msg);
}

MOPT_PRINTF(5, 6)
static mopt_status tensor_fail(mopt_error *err, mopt_status st, const mopt_graph *g, int t,
                               const char *fmt, ...) {
    char msg[MOPT_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mopt_error_set(err, st, "tensor %d '%s': %s", t, tname(g, t), msg);
}

/* Writes "[d0,d1,...]" into buf (for messages). */
static const char *shape_str(char *buf, size_t cap, int rank, const int32_t *dims) {
    size_t pos = 0;
    int n = snprintf(buf, cap, "[");
    pos = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < rank && pos < cap; i++) {
        n = snprintf(buf + pos, cap - pos, i ? ",%d" : "%d", (int)dims[i]);
        if (n < 0) break;
        pos += (size_t)n;
    }
    if (pos < cap) snprintf(buf + pos, cap - pos, "]");
    return buf;
}

/* ---- padding.h rules ---- */

int32_t mopt_conv_out_size(mopt_padding pad, int32_t in, int32_t k, int32_t stride,
                           int32_t dilation, int32_t *pad_before) {
    if (pad_before) *pad_before = 0;
    if (in < 0 || k < 1 || stride < 1 || dilation < 1) return 0;
    /* 64-bit: (k-1)*dilation overflows int32 for hostile parameters. */
    int64_t eff_k = ((int64_t)k - 1) * dilation + 1;
    int64_t out;
    if (pad == MOPT_PAD_SAME) {
        out = ((int64_t)in + stride - 1) / stride;
    } else if (pad == MOPT_PAD_VALID) {
        int64_t span = (int64_t)in - eff_k + 1;
        if (span <= 0) return 0;
        out = (span + stride - 1) / stride;
    } else {
        return 0;
    }
    if (out > INT32_MAX) return 0;
    int64_t total = (out - 1) * stride + eff_k - in;
    if (total < 0) total = 0;
    if (pad_before) *pad_before = (int32_t)(total / 2 > INT32_MAX ? INT32_MAX : total / 2);
    return (int32_t)out;
}

/* ---- operator structure ---- */

typedef struct arity {
    int min_in, max_in; /* max_in < 0: unbounded */
    int n_out;
    unsigned optional; /* bit i: input i may be -1 */
} arity;

static arity op_arity(int type) {
    arity a = {1, 1, 1, 0};
    switch (type) {
    case MOPT_OP_ADD:
    case MOPT_OP_SUB:
    case MOPT_OP_MUL:
    case MOPT_OP_PAD:
    case MOPT_OP_TRANSPOSE:
    case MOPT_OP_MEAN: a.min_in = a.max_in = 2; break;
    case MOPT_OP_CONV_2D:
    case MOPT_OP_DEPTHWISE_CONV_2D:
    case MOPT_OP_FULLY_CONNECTED:
        a.min_in = 2;
        a.max_in = 3;
        a.optional = 1u << 2; /* bias */
        break;
    case MOPT_OP_CONCATENATION:
        a.min_in = 1;
        a.max_in = -1;
        break;
    case MOPT_OP_RESHAPE:
        a.min_in = 1;
        a.max_in = 2;
        a.optional = 1u << 1; /* shape tensor */
        break;
    default: break;
    }
    return a;
}

/* Checks arity and index ranges of op oi. */
static mopt_status check_structure(const mopt_graph *g, int oi, mopt_error *err) {
    const mopt_op *op = &g->ops[oi];
    if (!mopt_op_supported(op->type))
        return mopt_error_set(err, MOPT_ERR_UNSUPPORTED, "operator %d: op type %d is not supported",
                              oi, (int)op->type);
    arity a = op_arity(op->type);
    if (op->n_inputs < a.min_in || (a.max_in >= 0 && op->n_inputs > a.max_in)) {
        if (a.max_in < 0)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "has %d inputs, needs at least %d",
                           op->n_inputs, a.min_in);
        if (a.min_in == a.max_in)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "has %d inputs, needs %d", op->n_inputs,
                           a.min_in);
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "has %d inputs, needs %d to %d",
                       op->n_inputs, a.min_in, a.max_in);
    }
    if (op->n_outputs != a.n_out)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "has %d outputs, needs %d", op->n_outputs,
                       a.n_out);
    if ((op->n_inputs > 0 && !op->inputs) || !op->outputs)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "missing index array");
    for (int i = 0; i < op->n_inputs; i++) {
        int32_t t = op->inputs[i];
        if (t == -1 && i < 32 && (a.optional & (1u << i))) continue;
        if (t == -1)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "input %d is omitted but is required",
                           i);
        if (t < 0 || t >= g->n_tensors)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                           "input %d tensor index %d out of range [0,%d)", i, (int)t, g->n_tensors);
    }
    for (int i = 0; i < op->n_outputs; i++) {
        int32_t t = op->outputs[i];
        if (t < 0 || t >= g->n_tensors)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                           "output %d tensor index %d out of range [0,%d)", i, (int)t,
                           g->n_tensors);
    }
    return MOPT_OK;
}

/* Input i's tensor, or NULL when omitted / absent. */
static const mopt_tensor *in_t(const mopt_graph *g, const mopt_op *op, int i) {
    if (i >= op->n_inputs || op->inputs[i] < 0) return NULL;
    return &g->tensors[op->inputs[i]];
}

static bool act_valid(mopt_activation a) { return a >= MOPT_ACT_NONE && a <= MOPT_ACT_SIGN_BIT; }

/* Reads a constant int32 vector input (shape, axes, perm, paddings). The
 * caller has checked the index. Returns NULL (with an error) if it is not a
 * constant int32 tensor whose buffer matches its shape. */
static const int32_t *const_i32(const mopt_graph *g, int oi, int input, const char *what,
                                int64_t *n, mopt_error *err) {
    const mopt_op *op = &g->ops[oi];
    int t = op->inputs[input];
    const mopt_tensor *tt = &g->tensors[t];
    const void *d = mopt_tensor_data(g, t);
    if (!d) {
        op_fail(err, MOPT_ERR_UNSUPPORTED, g, oi, "%s (tensor %d) must be constant", what, t);
        return NULL;
    }
    if (tt->dtype != MOPT_INT32) {
        op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "%s (tensor %d) must be int32, is %s", what, t,
                mopt_dtype_name(tt->dtype));
        return NULL;
    }
    int64_t nb = mopt_tensor_nbytes(tt);
    if (nb < 0 || (uint64_t)nb != (uint64_t)g->buffers[tt->buffer].size) {
        op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "%s (tensor %d) buffer size does not match shape",
                what, t);
        return NULL;
    }
    *n = nb / 4;
    return (const int32_t *)d;
}

static mopt_status check_conv_params(const mopt_graph *g, int oi, int32_t sw, int32_t sh,
                                     int32_t dw, int32_t dh, mopt_padding pad, mopt_activation act,
                                     mopt_error *err) {
    if (pad != MOPT_PAD_SAME && pad != MOPT_PAD_VALID)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "padding %d is not SAME (0) or VALID (1)",
                       (int)pad);
    if (sw < 1 || sh < 1)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "strides %dx%d must be >= 1", (int)sh,
                       (int)sw);
    if (dw < 1 || dh < 1)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "dilation %dx%d must be >= 1", (int)dh,
                       (int)dw);
    if (!act_valid(act))
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "fused activation %d is not a valid enum",
                       (int)act);
    return MOPT_OK;
}

/* Spatial output size of a windowed op; errors when the window does not fit. */
static mopt_status window_out(const mopt_graph *g, int oi, mopt_padding pad, const int32_t *in_d,
                              int32_t kh, int32_t kw, int32_t sh, int32_t sw, int32_t dh,
                              int32_t dw, int32_t *oh, int32_t *ow, mopt_error *err) {
    *oh = mopt_conv_out_size(pad, in_d[1], kh, sh, dh, NULL);
    *ow = mopt_conv_out_size(pad, in_d[2], kw, sw, dw, NULL);
    if (*oh <= 0 || *ow <= 0)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                       "window %dx%d (dilation %dx%d) does not fit input %dx%d with %s padding",
                       (int)kh, (int)kw, (int)dh, (int)dw, (int)in_d[1], (int)in_d[2],
                       pad == MOPT_PAD_SAME ? "SAME" : "VALID");
    return MOPT_OK;
}

static mopt_status need_rank(const mopt_graph *g, int oi, const mopt_tensor *t, const char *what,
                             int rank, mopt_error *err) {
    if (t->rank != rank)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "%s must have rank %d, has rank %d", what,
                       rank, t->rank);
    return MOPT_OK;
}

static mopt_status check_bias(const mopt_graph *g, int oi, const mopt_tensor *b, int32_t n,
                              mopt_error *err) {
    if (!b) return MOPT_OK;
    if (b->rank != 1 || b->dims[0] != n) {
        char s[96];
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "bias shape %s does not match %d outputs",
                       shape_str(s, sizeof s, b->rank, b->dims), (int)n);
    }
    return MOPT_OK;
}

/* ---- per-op shape rules ---- */

static mopt_status infer_conv(const mopt_graph *g, int oi, int *r, int32_t *o, mopt_error *err) {
    const mopt_op *op = &g->ops[oi];
    const mopt_conv_params *p = &op->p.conv;
    const mopt_tensor *x = in_t(g, op, 0), *w = in_t(g, op, 1), *b = in_t(g, op, 2);
    mopt_status st = check_conv_params(g, oi, p->stride_w, p->stride_h, p->dilation_w,
                                       p->dilation_h, p->padding, p->act, err);
    if (st) return st;
    if ((st = need_rank(g, oi, x, "input", 4, err))) return st;
    if ((st = need_rank(g, oi, w, "filter", 4, err))) return st;
    for (int i = 0; i < 4; i++)
        if (w->dims[i] < 1)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                           "filter dimension %d is %d, must be >= 1", i, (int)w->dims[i]);
    bool dw = op->type == MOPT_OP_DEPTHWISE_CONV_2D;
    int32_t in_c = x->dims[3], out_c;
    if (dw) {
        if (w->dims[0] != 1)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                           "depthwise filter dims[0] is %d, must be 1", (int)w->dims[0]);
        out_c = w->dims[3];
        if (in_c < 1 || out_c % in_c != 0)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                           "filter output channels %d are not a multiple of input channels %d",
                           (int)out_c, (int)in_c);
    } else {
        if (w->dims[3] != in_c)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                           "filter input channels %d do not match input channels %d",
                           (int)w->dims[3], (int)in_c);
        out_c = w->dims[0];
    }
    if ((st = check_bias(g, oi, b, out_c, err))) return st;
    int32_t oh, ow;
    st = window_out(g, oi, p->padding, x->dims, w->dims[1], w->dims[2], p->stride_h, p->stride_w,
                    p->dilation_h, p->dilation_w, &oh, &ow, err);
    if (st) return st;
    *r = 4;
    o[0] = x->dims[0];
    o[1] = oh;
    o[2] = ow;
    o[3] = out_c;
    return MOPT_OK;
}

static mopt_status infer_pool(const mopt_graph *g, int oi, int *r, int32_t *o, mopt_error *err) {
    const mopt_op *op = &g->ops[oi];
    const mopt_pool_params *p = &op->p.pool;
    const mopt_tensor *x = in_t(g, op, 0);
    mopt_status st =
        check_conv_params(g, oi, p->stride_w, p->stride_h, 1, 1, p->padding, p->act, err);
    if (st) return st;
    if (p->filter_w < 1 || p->filter_h < 1)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "filter %dx%d must be >= 1",
                       (int)p->filter_h, (int)p->filter_w);
    if ((st = need_rank(g, oi, x, "input", 4, err))) return st;
    int32_t oh, ow;
    st = window_out(g, oi, p->padding, x->dims, p->filter_h, p->filter_w, p->stride_h, p->stride_w,
                    1, 1, &oh, &ow, err);
    if (st) return st;
    *r = 4;
    o[0] = x->dims[0];
    o[1] = oh;
    o[2] = ow;
    o[3] = x->dims[3];
    return MOPT_OK;
}

static mopt_status infer_fc(const mopt_graph *g, int oi, int *r, int32_t *o, mopt_error *err) {
    const mopt_op *op = &g->ops[oi];
    const mopt_fc_params *p = &op->p.fc;
    const mopt_tensor *x = in_t(g, op, 0), *w = in_t(g, op, 1), *b = in_t(g, op, 2);
    if (!act_valid(p->act))
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "fused activation %d is not a valid enum",
                       (int)p->act);
    if (p->weights_format != 0)
        return op_fail(err, MOPT_ERR_UNSUPPORTED, g, oi,
                       "weights_format %d is not supported (only DEFAULT 0)",
                       (int)p->weights_format);
    mopt_status st = need_rank(g, oi, w, "weights", 2, err);
    if (st) return st;
    int32_t units = w->dims[0], depth = w->dims[1];
    if (units < 1 || depth < 1)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "weights shape [%d,%d] must be positive",
                       (int)units, (int)depth);
    if (x->rank < 1) return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "input must have rank >= 1");
    int64_t n = mopt_tensor_numel(x);
    if (n < 0) return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "input element count is invalid");
    if (n % depth != 0)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                       "input element count %lld is not a multiple of weights depth %d",
                       (long long)n, (int)depth);
    if ((st = check_bias(g, oi, b, units, err))) return st;
    if (p->keep_num_dims) {
        if (x->dims[x->rank - 1] != depth)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                           "keep_num_dims: input last dimension %d does not match weights depth %d",
                           (int)x->dims[x->rank - 1], (int)depth);
        *r = x->rank;
        memcpy(o, x->dims, sizeof x->dims);
        o[x->rank - 1] = units;
    } else {
        *r = 2;
        o[0] = (int32_t)(n / depth);
        o[1] = units;
    }
    return MOPT_OK;
}

static mopt_status infer_binary(const mopt_graph *g, int oi, int *r, int32_t *o, mopt_error *err) {
    const mopt_op *op = &g->ops[oi];
    const mopt_tensor *a = in_t(g, op, 0), *b = in_t(g, op, 1);
    if (!act_valid(op->p.binary.act))
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "fused activation %d is not a valid enum",
                       (int)op->p.binary.act);
    int rank = a->rank > b->rank ? a->rank : b->rank;
    /* numpy broadcasting: align right; equal dims, or one of them is 1. */
    for (int i = 0; i < rank; i++) {
        int ia = a->rank - rank + i, ib = b->rank - rank + i;
        int32_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da == db || db == 1)
            o[i] = da;
        else if (da == 1)
            o[i] = db;
        else {
            char s1[96], s2[96];
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                           "input shapes %s and %s are not broadcast-compatible",
                           shape_str(s1, sizeof s1, a->rank, a->dims),
                           shape_str(s2, sizeof s2, b->rank, b->dims));
        }
    }
    *r = rank;
    return MOPT_OK;
}

static mopt_status infer_concat(const mopt_graph *g, int oi, int *r, int32_t *o, mopt_error *err) {
    const mopt_op *op = &g->ops[oi];
    const mopt_tensor *x0 = in_t(g, op, 0);
    if (!act_valid(op->p.concat.act))
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "fused activation %d is not a valid enum",
                       (int)op->p.concat.act);
    int rank = x0->rank;
    int32_t axis = op->p.concat.axis;
    if (rank < 1 || axis < -rank || axis >= rank)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "axis %d out of range for rank %d",
                       (int)axis, rank);
    if (axis < 0) axis += rank;
    memcpy(o, x0->dims, sizeof x0->dims);
    int64_t sum = 0;
    for (int i = 0; i < op->n_inputs; i++) {
        const mopt_tensor *x = in_t(g, op, i);
        if (x->rank != rank)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "input %d has rank %d, input 0 has %d",
                           i, x->rank, rank);
        for (int d = 0; d < rank; d++)
            if (d != axis && x->dims[d] != x0->dims[d])
                return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                               "input %d dimension %d is %d, input 0 has %d", i, d, (int)x->dims[d],
                               (int)x0->dims[d]);
        sum += x->dims[axis];
    }
    if (sum > INT32_MAX)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "concatenated dimension overflows");
    o[axis] = (int32_t)sum;
    *r = rank;
    return MOPT_OK;
}

static mopt_status resolve_shape(const mopt_graph *g, int oi, const int32_t *shape, int64_t n,
                                 int64_t numel, int *r, int32_t *o, mopt_error *err) {
    if (n > MOPT_MAX_DIMS)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "new shape has %lld dimensions (max %d)",
                       (long long)n, MOPT_MAX_DIMS);
    int stretch = -1;
    int64_t prod = 1;
    for (int i = 0; i < (int)n; i++) {
        if (shape[i] == -1) {
            if (stretch >= 0)
                return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "new shape has more than one -1");
            stretch = i;
        } else if (shape[i] < 0) {
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "new shape dimension %d is %d", i,
                           (int)shape[i]);
        } else {
            prod *= shape[i];
            if (prod > INT32_MAX)
                return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "new shape element count overflows");
        }
        o[i] = shape[i];
    }
    if (stretch >= 0) {
        if (prod == 0 || numel % prod != 0)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                           "cannot infer -1 in new shape: %lld elements, %lld in other dims",
                           (long long)numel, (long long)prod);
        o[stretch] = (int32_t)(numel / prod);
        prod = numel;
    }
    if (prod != numel)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                       "new shape has %lld elements, input has %lld", (long long)prod,
                       (long long)numel);
    *r = (int)n;
    return MOPT_OK;
}

static mopt_status infer_reshape(const mopt_graph *g, int oi, int *r, int32_t *o, mopt_error *err) {
    const mopt_op *op = &g->ops[oi];
    const mopt_tensor *x = in_t(g, op, 0), *s = in_t(g, op, 1);
    int64_t numel = mopt_tensor_numel(x);
    if (numel < 0) return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "input element count is invalid");
    /* TFLite (reshape.cc) prefers a 1-D int32 shape tensor and falls back to
     * the option's new_shape otherwise. */
    if (s && s->rank == 1 && s->dtype == MOPT_INT32 && mopt_tensor_is_constant(g, op->inputs[1])) {
        int64_t n;
        const int32_t *d = const_i32(g, oi, 1, "shape", &n, err);
        if (!d) return err ? err->status : MOPT_ERR_BAD_INPUT;
        return resolve_shape(g, oi, d, n, numel, r, o, err);
    }
    if (op->p.reshape.n_new_shape >= 0) {
        int64_t n = op->p.reshape.n_new_shape;
        /* Legacy models write new_shape [0] for a scalar (reshape.cc). */
        if (n == 1 && op->p.reshape.new_shape[0] == 0) n = 0;
        return resolve_shape(g, oi, op->p.reshape.new_shape, n, numel, r, o, err);
    }
    if (s) {
        /* A computed shape tensor: shapes are static in mopt, so the stored
         * output shape stands in for its value as long as sizes agree. */
        const mopt_tensor *y = &g->tensors[op->outputs[0]];
        if (y->rank < 0 || y->rank > MOPT_MAX_DIMS)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "output rank %d is invalid", y->rank);
        return resolve_shape(g, oi, y->dims, y->rank, numel, r, o, err);
    }
    return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                   "no new shape: neither a shape tensor nor a new_shape option");
}

static mopt_status infer_mean(const mopt_graph *g, int oi, int *r, int32_t *o, mopt_error *err) {
    const mopt_op *op = &g->ops[oi];
    const mopt_tensor *x = in_t(g, op, 0), *a = in_t(g, op, 1);
    if (a->rank > 1)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "axes must have rank 0 or 1, has %d",
                       a->rank);
    int64_t n;
    const int32_t *ax = const_i32(g, oi, 1, "axes", &n, err);
    if (!ax) return err ? err->status : MOPT_ERR_BAD_INPUT;
    bool red[MOPT_MAX_DIMS] = {false};
    for (int64_t i = 0; i < n; i++) {
        int32_t v = ax[i];
        if (v < -x->rank || v >= x->rank)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "axis %d out of range for rank %d",
                           (int)v, x->rank);
        red[v < 0 ? v + x->rank : v] = true; /* duplicates allowed, as in TFLite */
    }
    int k = 0;
    for (int d = 0; d < x->rank; d++) {
        if (!red[d])
            o[k++] = x->dims[d];
        else if (op->p.reducer.keep_dims)
            o[k++] = 1;
    }
    *r = k;
    return MOPT_OK;
}

static mopt_status infer_pad(const mopt_graph *g, int oi, int *r, int32_t *o, mopt_error *err) {
    const mopt_op *op = &g->ops[oi];
    const mopt_tensor *x = in_t(g, op, 0), *pt = in_t(g, op, 1);
    if (pt->rank != 2 || pt->dims[0] != x->rank || pt->dims[1] != 2) {
        char s[96];
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                       "paddings shape %s must be [%d,2] (input rank)",
                       shape_str(s, sizeof s, pt->rank, pt->dims), x->rank);
    }
    int64_t n;
    const int32_t *pd = const_i32(g, oi, 1, "paddings", &n, err);
    if (!pd) return err ? err->status : MOPT_ERR_BAD_INPUT;
    for (int d = 0; d < x->rank; d++) {
        int32_t lo = pd[2 * d], hi = pd[2 * d + 1];
        if (lo < 0 || hi < 0)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                           "paddings of dimension %d are (%d,%d), must be >= 0", d, (int)lo,
                           (int)hi);
        int64_t v = (int64_t)x->dims[d] + lo + hi;
        if (v > INT32_MAX)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "padded dimension %d overflows", d);
        o[d] = (int32_t)v;
    }
    *r = x->rank;
    return MOPT_OK;
}

static mopt_status infer_transpose(const mopt_graph *g, int oi, int *r, int32_t *o,
                                   mopt_error *err) {
    const mopt_op *op = &g->ops[oi];
    const mopt_tensor *x = in_t(g, op, 0), *pt = in_t(g, op, 1);
    if (pt->rank != 1 || pt->dims[0] != x->rank) {
        char s[96];
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "perm shape %s must be [%d] (input rank)",
                       shape_str(s, sizeof s, pt->rank, pt->dims), x->rank);
    }
    int64_t n;
    const int32_t *perm = const_i32(g, oi, 1, "perm", &n, err);
    if (!perm) return err ? err->status : MOPT_ERR_BAD_INPUT;
    bool seen[MOPT_MAX_DIMS] = {false};
    for (int d = 0; d < x->rank; d++) {
        int32_t v = perm[d];
        if (v < 0 || v >= x->rank || seen[v])
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                           "perm is not a permutation of 0..%d (entry %d is %d)", x->rank - 1, d,
                           (int)v);
        seen[v] = true;
        o[d] = x->dims[v];
    }
    *r = x->rank;
    return MOPT_OK;
}

static mopt_status infer_softmax(const mopt_graph *g, int oi, int *r, int32_t *o, mopt_error *err) {
    const mopt_op *op = &g->ops[oi];
    const mopt_tensor *x = in_t(g, op, 0);
    if (x->rank < 1) return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "input must have rank >= 1");
    if (!isfinite(op->p.softmax.beta))
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi, "beta is not finite");
    *r = x->rank;
    memcpy(o, x->dims, sizeof x->dims);
    return MOPT_OK;
}

static mopt_status infer_same(const mopt_graph *g, int oi, int *r, int32_t *o) {
    const mopt_tensor *x = in_t(g, &g->ops[oi], 0);
    *r = x->rank;
    memcpy(o, x->dims, sizeof x->dims);
    return MOPT_OK;
}

/* Tensor-level shape sanity every rule relies on. */
static mopt_status check_tensor_shape(const mopt_graph *g, int t, mopt_error *err) {
    const mopt_tensor *tt = &g->tensors[t];
    if (tt->rank < 0 || tt->rank > MOPT_MAX_DIMS)
        return tensor_fail(err, MOPT_ERR_BAD_INPUT, g, t, "rank %d out of range [0,%d]", tt->rank,
                           MOPT_MAX_DIMS);
    for (int d = 0; d < tt->rank; d++)
        if (tt->dims[d] < 0)
            return tensor_fail(err, MOPT_ERR_BAD_INPUT, g, t, "dimension %d is negative (%d)", d,
                               (int)tt->dims[d]);
    if (mopt_tensor_numel(tt) < 0)
        return tensor_fail(err, MOPT_ERR_BAD_INPUT, g, t, "element count overflows 2^31-1");
    return MOPT_OK;
}

mopt_status mopt_op_infer_shapes(const mopt_graph *g, int op_index, int *out_rank,
                                 int32_t (*out_dims)[MOPT_MAX_DIMS], mopt_error *err) {
    if (!g || !out_rank || !out_dims || op_index < 0 || op_index >= g->n_ops)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_op_infer_shapes: invalid argument");
    mopt_status st = check_structure(g, op_index, err);
    if (st) return st;
    const mopt_op *op = &g->ops[op_index];
    for (int i = 0; i < op->n_inputs; i++)
        if (op->inputs[i] >= 0 && (st = check_tensor_shape(g, op->inputs[i], err))) return st;
    int32_t o[MOPT_MAX_DIMS] = {0};
    int r = 0;
    switch (op->type) {
    case MOPT_OP_CONV_2D:
    case MOPT_OP_DEPTHWISE_CONV_2D: st = infer_conv(g, op_index, &r, o, err); break;
    case MOPT_OP_AVERAGE_POOL_2D:
    case MOPT_OP_MAX_POOL_2D: st = infer_pool(g, op_index, &r, o, err); break;
    case MOPT_OP_FULLY_CONNECTED: st = infer_fc(g, op_index, &r, o, err); break;
    case MOPT_OP_ADD:
    case MOPT_OP_SUB:
    case MOPT_OP_MUL: st = infer_binary(g, op_index, &r, o, err); break;
    case MOPT_OP_CONCATENATION: st = infer_concat(g, op_index, &r, o, err); break;
    case MOPT_OP_RESHAPE: st = infer_reshape(g, op_index, &r, o, err); break;
    case MOPT_OP_MEAN: st = infer_mean(g, op_index, &r, o, err); break;
    case MOPT_OP_PAD: st = infer_pad(g, op_index, &r, o, err); break;
    case MOPT_OP_TRANSPOSE: st = infer_transpose(g, op_index, &r, o, err); break;
    case MOPT_OP_SOFTMAX: st = infer_softmax(g, op_index, &r, o, err); break;
    case MOPT_OP_DEQUANTIZE:
    case MOPT_OP_QUANTIZE:
    case MOPT_OP_LOGISTIC:
    case MOPT_OP_RELU:
    case MOPT_OP_RELU6:
    case MOPT_OP_TANH:
    case MOPT_OP_HARD_SWISH: st = infer_same(g, op_index, &r, o); break;
    }
    if (st) return st;
    /* Every op in the set has exactly one output. */
    out_rank[0] = r;
    memcpy(out_dims[0], o, sizeof o);
    int64_t numel = 1;
    for (int d = 0; d < r; d++) {
        numel *= o[d];
        if (numel > INT32_MAX)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, op_index,
                           "output element count overflows 2^31-1");
    }
    return MOPT_OK;
}

/* ---- tensors ---- */

static bool zp_in_range(mopt_dtype dt, int64_t zp) {
    switch (dt) {
    case MOPT_INT8: return zp >= -128 && zp <= 127;
    case MOPT_UINT8: return zp >= 0 && zp <= 255;
    case MOPT_INT16: return zp >= -32768 && zp <= 32767;
    default: return true;
    }
}

static mopt_status check_tensor(const mopt_graph *g, int t, mopt_error *err) {
    const mopt_tensor *tt = &g->tensors[t];
    mopt_status st = check_tensor_shape(g, t, err);
    if (st) return st;
    if (mopt_dtype_size(tt->dtype) == 0)
        return tensor_fail(err, MOPT_ERR_UNSUPPORTED, g, t, "dtype %s (%d) is not supported",
                           mopt_dtype_name(tt->dtype), (int)tt->dtype);
    if (tt->is_variable)
        return tensor_fail(err, MOPT_ERR_UNSUPPORTED, g, t, "variable tensors are not supported");
    if (tt->buffer >= (uint32_t)g->n_buffers)
        return tensor_fail(err, MOPT_ERR_BAD_INPUT, g, t, "buffer index %u out of range [0,%d)",
                           (unsigned)tt->buffer, g->n_buffers);
    const mopt_buffer *b = &g->buffers[tt->buffer];
    if (tt->buffer != 0 && b->size > 0) {
        int64_t nb = mopt_tensor_nbytes(tt);
        if (!b->data)
            return tensor_fail(err, MOPT_ERR_BAD_INPUT, g, t, "buffer %u has no data",
                               (unsigned)tt->buffer);
        if (nb < 0 || (uint64_t)nb != (uint64_t)b->size)
            return tensor_fail(err, MOPT_ERR_BAD_INPUT, g, t,
                               "buffer %u holds %zu bytes, shape needs %lld", (unsigned)tt->buffer,
                               b->size, (long long)nb);
    }
    if (tt->n_shape_signature < 0 || (tt->n_shape_signature > 0 && !tt->shape_signature))
        return tensor_fail(err, MOPT_ERR_BAD_INPUT, g, t, "shape signature is inconsistent");
    const mopt_quant *q = &tt->quant;
    if (q->n < 0 || q->n_minmax < 0)
        return tensor_fail(err, MOPT_ERR_BAD_INPUT, g, t, "negative quantization array length");
    if (q->n_minmax > 0 && (!q->min || !q->max))
        return tensor_fail(err, MOPT_ERR_BAD_INPUT, g, t, "quantization min/max arrays missing");
    if (q->n > 0) {
        if (!q->scale || !q->zero_point)
            return tensor_fail(err, MOPT_ERR_BAD_INPUT, g, t,
                               "quantization has %d scales but no zero points", q->n);
        if (q->n > 1) {
            if (q->axis < 0 || q->axis >= tt->rank)
                return tensor_fail(err, MOPT_ERR_BAD_INPUT, g, t,
                                   "quantized dimension %d out of range for rank %d", (int)q->axis,
                                   tt->rank);
            if (q->n != tt->dims[q->axis])
                return tensor_fail(err, MOPT_ERR_BAD_INPUT, g, t,
                                   "%d quantization scales, dimension %d has %d", q->n,
                                   (int)q->axis, (int)tt->dims[q->axis]);
        }
        for (int i = 0; i < q->n; i++) {
            if (!isfinite(q->scale[i]) || q->scale[i] < 0.0f)
                return tensor_fail(err, MOPT_ERR_BAD_INPUT, g, t,
                                   "quantization scale %d (%g) must be finite and >= 0", i,
                                   (double)q->scale[i]);
            if (!zp_in_range(tt->dtype, q->zero_point[i]))
                return tensor_fail(err, MOPT_ERR_BAD_INPUT, g, t,
                                   "zero point %lld out of range for %s",
                                   (long long)q->zero_point[i], mopt_dtype_name(tt->dtype));
        }
    }
    return MOPT_OK;
}

/* ---- dtypes per op ---- */

static bool is_q(mopt_dtype d) { return d == MOPT_INT8 || d == MOPT_UINT8 || d == MOPT_INT16; }

static mopt_status need_quant(const mopt_graph *g, int oi, int t, const char *what,
                              mopt_error *err) {
    const mopt_tensor *tt = &g->tensors[t];
    if (is_q(tt->dtype) && tt->quant.n < 1)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                       "%s (tensor %d, %s) has no quantization parameters", what, t,
                       mopt_dtype_name(tt->dtype));
    return MOPT_OK;
}

static mopt_status dtype_fail(const mopt_graph *g, int oi, const char *what, int t,
                              mopt_error *err) {
    return op_fail(err, MOPT_ERR_UNSUPPORTED, g, oi, "%s (tensor %d) has unsupported dtype %s",
                   what, t, mopt_dtype_name(g->tensors[t].dtype));
}

static mopt_status check_op_dtypes(const mopt_graph *g, int oi, mopt_error *err) {
    const mopt_op *op = &g->ops[oi];
    int xi = op->inputs[0], yi = op->outputs[0];
    mopt_dtype xd = g->tensors[xi].dtype, yd = g->tensors[yi].dtype;
    mopt_status st;
    switch (op->type) {
    case MOPT_OP_CONV_2D:
    case MOPT_OP_DEPTHWISE_CONV_2D:
    case MOPT_OP_FULLY_CONNECTED: {
        int wi = op->inputs[1], bi = op->n_inputs > 2 ? op->inputs[2] : -1;
        mopt_dtype wd = g->tensors[wi].dtype;
        mopt_dtype bd = bi >= 0 ? g->tensors[bi].dtype : MOPT_FLOAT32;
        bool ok;
        /* Accepted combinations (TFLite): float; hybrid (float activations,
         * int8 weights); int8; 16x8 (int64 or int32 bias); legacy uint8. */
        if (xd == MOPT_FLOAT32)
            ok = yd == MOPT_FLOAT32 && (wd == MOPT_FLOAT32 || wd == MOPT_INT8) &&
                 (bi < 0 || bd == MOPT_FLOAT32);
        else if (xd == MOPT_INT8)
            ok = yd == MOPT_INT8 && wd == MOPT_INT8 && (bi < 0 || bd == MOPT_INT32);
        else if (xd == MOPT_INT16)
            ok = yd == MOPT_INT16 && wd == MOPT_INT8 &&
                 (bi < 0 || bd == MOPT_INT64 || bd == MOPT_INT32);
        else if (xd == MOPT_UINT8)
            ok = yd == MOPT_UINT8 && wd == MOPT_UINT8 && (bi < 0 || bd == MOPT_INT32);
        else
            ok = false;
        if (!ok)
            return op_fail(err, MOPT_ERR_UNSUPPORTED, g, oi,
                           "unsupported dtype combination input %s, weights %s, bias %s, output %s",
                           mopt_dtype_name(xd), mopt_dtype_name(wd),
                           bi >= 0 ? mopt_dtype_name(bd) : "none", mopt_dtype_name(yd));
        if ((st = need_quant(g, oi, xi, "input", err))) return st;
        if ((st = need_quant(g, oi, wi, "weights", err))) return st;
        if ((st = need_quant(g, oi, yi, "output", err))) return st;
        return MOPT_OK;
    }
    case MOPT_OP_DEQUANTIZE:
        if (xd != MOPT_FLOAT16 && !is_q(xd)) return dtype_fail(g, oi, "input", xi, err);
        if (yd != MOPT_FLOAT32) return dtype_fail(g, oi, "output", yi, err);
        return need_quant(g, oi, xi, "input", err);
    case MOPT_OP_QUANTIZE:
        if (xd != MOPT_FLOAT32 && !is_q(xd)) return dtype_fail(g, oi, "input", xi, err);
        if (!is_q(yd)) return dtype_fail(g, oi, "output", yi, err);
        if ((st = need_quant(g, oi, xi, "input", err))) return st;
        return need_quant(g, oi, yi, "output", err);
    default: break;
    }
    /* The remaining ops keep the dtype: every data input and the output share
     * one dtype (SOFTMAX may also map int8 to int16). */
    bool ok;
    switch (op->type) {
    case MOPT_OP_RESHAPE:
    case MOPT_OP_TRANSPOSE:
    case MOPT_OP_CONCATENATION:
        ok = xd == MOPT_FLOAT32 || is_q(xd) || xd == MOPT_INT32 || xd == MOPT_INT64 ||
             xd == MOPT_BOOL;
        break;
    case MOPT_OP_ADD:
    case MOPT_OP_SUB:
    case MOPT_OP_MUL:
    case MOPT_OP_PAD:
    case MOPT_OP_MEAN: ok = xd == MOPT_FLOAT32 || is_q(xd) || xd == MOPT_INT32; break;
    default: ok = xd == MOPT_FLOAT32 || is_q(xd); break;
    }
    if (!ok) return dtype_fail(g, oi, "input", xi, err);
    bool out_ok = yd == xd || (op->type == MOPT_OP_SOFTMAX && xd == MOPT_INT8 && yd == MOPT_INT16);
    if (!out_ok)
        return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                       "output dtype %s does not match input dtype %s", mopt_dtype_name(yd),
                       mopt_dtype_name(xd));
    int n_data = 1;
    if (op->type == MOPT_OP_CONCATENATION || op->type == MOPT_OP_ADD || op->type == MOPT_OP_SUB ||
        op->type == MOPT_OP_MUL)
        n_data = op->n_inputs;
    for (int i = 1; i < n_data; i++) {
        int ti = op->inputs[i];
        if (g->tensors[ti].dtype != xd)
            return op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                           "input %d dtype %s does not match input 0 dtype %s", i,
                           mopt_dtype_name(g->tensors[ti].dtype), mopt_dtype_name(xd));
        if ((st = need_quant(g, oi, ti, "input", err))) return st;
    }
    if ((st = need_quant(g, oi, xi, "input", err))) return st;
    return need_quant(g, oi, yi, "output", err);
}

/* ---- graph ---- */

mopt_status mopt_graph_validate(const mopt_graph *g, mopt_error *err) {
    if (!g) return mopt_error_set(err, MOPT_ERR_ARG, "mopt_graph_validate: graph is NULL");
    if (g->n_tensors < 0 || g->n_ops < 0 || g->n_buffers < 1 || g->n_inputs < 0 ||
        g->n_outputs < 0 || (g->n_tensors > 0 && !g->tensors) || (g->n_ops > 0 && !g->ops) ||
        !g->buffers || (g->n_inputs > 0 && !g->inputs) || (g->n_outputs > 0 && !g->outputs))
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "graph: inconsistent array sizes");
    if (g->buffers[0].size != 0)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "buffer 0: the sentinel buffer must be empty");
    mopt_status st;
    for (int t = 0; t < g->n_tensors; t++)
        if ((st = check_tensor(g, t, err))) return st;

    /* producer[t]: -2 none yet, -1 graph input or constant, >= 0 op index. */
    int *producer = malloc(sizeof *producer * (size_t)(g->n_tensors > 0 ? g->n_tensors : 1));
    if (!producer) return mopt_error_set(err, MOPT_ERR_NOMEM, "graph validation: out of memory");
    for (int t = 0; t < g->n_tensors; t++) producer[t] = mopt_tensor_is_constant(g, t) ? -1 : -2;
    st = MOPT_OK;
    for (int i = 0; i < g->n_inputs && !st; i++) {
        int32_t t = g->inputs[i];
        if (t < 0 || t >= g->n_tensors)
            st = mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                "graph input %d: tensor index %d out of range [0,%d)", i, (int)t,
                                g->n_tensors);
        else if (mopt_tensor_is_constant(g, t))
            st = tensor_fail(err, MOPT_ERR_BAD_INPUT, g, t, "graph input %d is a constant", i);
        else
            producer[t] = -1;
    }
    for (int oi = 0; oi < g->n_ops && !st; oi++) {
        const mopt_op *op = &g->ops[oi];
        if ((st = check_structure(g, oi, err))) break;
        for (int i = 0; i < op->n_inputs && !st; i++) {
            int32_t t = op->inputs[i];
            if (t >= 0 && producer[t] == -2)
                st = op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                             "input %d (tensor %d '%s') is not a graph input, a constant or the "
                             "output of an earlier operator",
                             i, (int)t, tname(g, t));
        }
        if (st) break;
        for (int i = 0; i < op->n_outputs && !st; i++) {
            int32_t t = op->outputs[i];
            if (mopt_tensor_is_constant(g, t))
                st = op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                             "output %d (tensor %d '%s') is a constant", i, (int)t, tname(g, t));
            else if (producer[t] == -1)
                st = op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                             "output %d (tensor %d '%s') is a graph input", i, (int)t, tname(g, t));
            else if (producer[t] >= 0)
                st = op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                             "output %d (tensor %d '%s') is already produced by operator %d", i,
                             (int)t, tname(g, t), producer[t]);
            else
                producer[t] = oi;
        }
        if (st) break;
        int rank[1];
        int32_t dims[1][MOPT_MAX_DIMS];
        if ((st = mopt_op_infer_shapes(g, oi, rank, dims, err))) break;
        if ((st = check_op_dtypes(g, oi, err))) break;
        const mopt_tensor *y = &g->tensors[op->outputs[0]];
        bool same = y->rank == rank[0];
        for (int d = 0; same && d < rank[0]; d++) same = y->dims[d] == dims[0][d];
        if (!same) {
            char s1[96], s2[96];
            st = op_fail(err, MOPT_ERR_BAD_INPUT, g, oi,
                         "output tensor %d '%s' has shape %s, inferred %s", (int)op->outputs[0],
                         tname(g, op->outputs[0]), shape_str(s1, sizeof s1, y->rank, y->dims),
                         shape_str(s2, sizeof s2, rank[0], dims[0]));
        }
    }
    for (int i = 0; i < g->n_outputs && !st; i++) {
        int32_t t = g->outputs[i];
        if (t < 0 || t >= g->n_tensors)
            st = mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                "graph output %d: tensor index %d out of range [0,%d)", i, (int)t,
                                g->n_tensors);
        else if (producer[t] == -2)
            st = tensor_fail(err, MOPT_ERR_BAD_INPUT, g, t,
                             "graph output %d is neither produced by an operator nor constant", i);
    }
    free(producer);
    return st;
}
