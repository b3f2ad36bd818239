/* graph.c - the graph IR container: creation, growth, deep copy, queries.
 * Validation and shape inference live in validate.c and src/ops/. */
#include "mopt/graph.h"

#include <stdlib.h>
#include <string.h>

#include "mopt/util.h"

static char *dup_str(const char *s) {
    if (!s) s = "";
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static char *dup_str_or_null(const char *s) { return s ? dup_str(s) : NULL; }

/* Copies n elements of size sz; n == 0 gives NULL (not an error). */
static void *dup_array(const void *src, size_t n, size_t sz, bool *ok) {
    if (n == 0 || !src) return NULL;
    void *d = malloc(n * sz);
    if (!d) {
        *ok = false;
        return NULL;
    }
    memcpy(d, src, n * sz);
    return d;
}

/* Grows *arr to hold at least need elements of size sz. */
static bool grow(void **arr, int *cap, int need, size_t sz) {
    if (need <= *cap) return true;
    int ncap = *cap ? *cap : 8;
    while (ncap < need) {
        if (ncap > (1 << 29)) return false;
        ncap *= 2;
    }
    void *p = realloc(*arr, (size_t)ncap * sz);
    if (!p) return false;
    memset((char *)p + (size_t)*cap * sz, 0, (size_t)(ncap - *cap) * sz);
    *arr = p;
    *cap = ncap;
    return true;
}

mopt_graph *mopt_graph_create(void) {
    mopt_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    if (mopt_graph_add_buffer(g, NULL, 0) != 0) {
        free(g);
        return NULL;
    }
    return g;
}

void mopt_quant_clear(mopt_quant *q) {
    if (!q) return;
    free(q->scale);
    free(q->zero_point);
    free(q->min);
    free(q->max);
    memset(q, 0, sizeof *q);
}

static void tensor_free(mopt_tensor *t) {
    free(t->name);
    free(t->shape_signature);
    mopt_quant_clear(&t->quant);
}

static void op_free(mopt_op *op) {
    free(op->inputs);
    free(op->outputs);
}

static void signature_free(mopt_signature *s) {
    free(s->key);
    for (int i = 0; i < s->n_inputs; i++) free(s->inputs[i].name);
    for (int i = 0; i < s->n_outputs; i++) free(s->outputs[i].name);
    free(s->inputs);
    free(s->outputs);
}

void mopt_graph_free(mopt_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_tensors; i++) tensor_free(&g->tensors[i]);
    for (int i = 0; i < g->n_ops; i++) op_free(&g->ops[i]);
    for (int i = 0; i < g->n_buffers; i++) mopt_aligned_free(g->buffers[i].data);
    for (int i = 0; i < g->n_metadata; i++) free(g->metadata[i].name);
    for (int i = 0; i < g->n_signatures; i++) signature_free(&g->signatures[i]);
    free(g->tensors);
    free(g->ops);
    free(g->buffers);
    free(g->inputs);
    free(g->outputs);
    free(g->name);
    free(g->description);
    free(g->metadata);
    free(g->signatures);
    free(g);
}

int mopt_graph_add_tensor(mopt_graph *g, const char *name, mopt_dtype dtype, int rank,
                          const int32_t *dims) {
    if (!g || rank < 0 || rank > MOPT_MAX_DIMS || (rank > 0 && !dims)) return -1;
    if (!grow((void **)&g->tensors, &g->cap_tensors, g->n_tensors + 1, sizeof *g->tensors))
        return -1;
    mopt_tensor *t = &g->tensors[g->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = dup_str(name);
    if (!t->name) return -1;
    t->dtype = dtype;
    t->rank = rank;
    for (int i = 0; i < rank; i++) t->dims[i] = dims[i];
    return g->n_tensors++;
}

int mopt_graph_add_buffer(mopt_graph *g, const void *data, size_t size) {
    if (!g) return -1;
    if (!grow((void **)&g->buffers, &g->cap_buffers, g->n_buffers + 1, sizeof *g->buffers))
        return -1;
    mopt_buffer *b = &g->buffers[g->n_buffers];
    b->data = NULL;
    b->size = size;
    if (size > 0) {
        b->data = mopt_aligned_alloc(size);
        if (!b->data) return -1;
        if (data)
            memcpy(b->data, data, size);
        else
            memset(b->data, 0, size);
    }
    return g->n_buffers++;
}

mopt_status mopt_graph_set_tensor_data(mopt_graph *g, int t, const void *data, size_t size) {
    if (!g || t < 0 || t >= g->n_tensors) return MOPT_ERR_ARG;
    int64_t nb = mopt_tensor_nbytes(&g->tensors[t]);
    if (nb < 0 || (uint64_t)nb != (uint64_t)size) return MOPT_ERR_ARG;
    int b = mopt_graph_add_buffer(g, data, size);
    if (b < 0) return MOPT_ERR_NOMEM;
    g->tensors[t].buffer = (uint32_t)b;
    return MOPT_OK;
}

int mopt_graph_add_op(mopt_graph *g, mopt_op_type type, const int32_t *inputs, int n_inputs,
                      const int32_t *outputs, int n_outputs) {
    if (!g || n_inputs < 0 || n_outputs < 0) return -1;
    if (!grow((void **)&g->ops, &g->cap_ops, g->n_ops + 1, sizeof *g->ops)) return -1;
    mopt_op *op = &g->ops[g->n_ops];
    memset(op, 0, sizeof *op);
    bool ok = true;
    op->inputs = dup_array(inputs, (size_t)n_inputs, sizeof *inputs, &ok);
    op->outputs = dup_array(outputs, (size_t)n_outputs, sizeof *outputs, &ok);
    if (!ok) {
        op_free(op);
        return -1;
    }
    op->type = type;
    op->version = 1;
    op->n_inputs = n_inputs;
    op->n_outputs = n_outputs;
    /* TFLite schema defaults that are not zero. */
    switch (type) {
    case MOPT_OP_CONV_2D:
    case MOPT_OP_DEPTHWISE_CONV_2D:
        op->p.conv.dilation_w = 1;
        op->p.conv.dilation_h = 1;
        op->p.conv.stride_w = 1;
        op->p.conv.stride_h = 1;
        op->has_options = true;
        break;
    case MOPT_OP_ADD:
    case MOPT_OP_SUB:
        op->p.binary.pot_scale_int16 = true;
        op->has_options = true;
        break;
    case MOPT_OP_RESHAPE: op->p.reshape.n_new_shape = -1; break;
    case MOPT_OP_SOFTMAX:
        op->p.softmax.beta = 1.0f;
        op->has_options = true;
        break;
    case MOPT_OP_AVERAGE_POOL_2D:
    case MOPT_OP_MAX_POOL_2D:
        op->p.pool.stride_w = op->p.pool.stride_h = 1;
        op->p.pool.filter_w = op->p.pool.filter_h = 1;
        op->has_options = true;
        break;
    case MOPT_OP_FULLY_CONNECTED:
    case MOPT_OP_MUL:
    case MOPT_OP_CONCATENATION:
    case MOPT_OP_MEAN: op->has_options = true; break;
    default: break;
    }
    return g->n_ops++;
}

mopt_status mopt_graph_set_io(mopt_graph *g, const int32_t *inputs, int n_inputs,
                              const int32_t *outputs, int n_outputs) {
    if (!g || n_inputs < 0 || n_outputs < 0) return MOPT_ERR_ARG;
    bool ok = true;
    int32_t *in = dup_array(inputs, (size_t)n_inputs, sizeof *inputs, &ok);
    int32_t *out = dup_array(outputs, (size_t)n_outputs, sizeof *outputs, &ok);
    if (!ok) {
        free(in);
        free(out);
        return MOPT_ERR_NOMEM;
    }
    free(g->inputs);
    free(g->outputs);
    g->inputs = in;
    g->outputs = out;
    g->n_inputs = n_inputs;
    g->n_outputs = n_outputs;
    return MOPT_OK;
}

mopt_status mopt_tensor_set_quant(mopt_tensor *t, int n, const float *scale,
                                  const int64_t *zero_point, int32_t axis) {
    if (!t || n < 0 || (n > 0 && (!scale || !zero_point))) return MOPT_ERR_ARG;
    bool ok = true;
    float *s = dup_array(scale, (size_t)n, sizeof *scale, &ok);
    int64_t *z = dup_array(zero_point, (size_t)n, sizeof *zero_point, &ok);
    if (!ok) {
        free(s);
        free(z);
        return MOPT_ERR_NOMEM;
    }
    mopt_quant_clear(&t->quant);
    t->quant.n = n;
    t->quant.scale = s;
    t->quant.zero_point = z;
    t->quant.axis = axis;
    return MOPT_OK;
}

/* ---- deep copy ---- */

static bool copy_quant(mopt_quant *d, const mopt_quant *s) {
    bool ok = true;
    *d = *s;
    d->scale = dup_array(s->scale, (size_t)s->n, sizeof *s->scale, &ok);
    d->zero_point = dup_array(s->zero_point, (size_t)s->n, sizeof *s->zero_point, &ok);
    d->min = dup_array(s->min, (size_t)s->n_minmax, sizeof *s->min, &ok);
    d->max = dup_array(s->max, (size_t)s->n_minmax, sizeof *s->max, &ok);
    return ok;
}

mopt_graph *mopt_graph_clone(const mopt_graph *s) {
    if (!s) return NULL;
    mopt_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    bool ok = true;
    /* Buffers (including the sentinel) in order, so indices are preserved. */
    for (int i = 0; i < s->n_buffers && ok; i++)
        ok = mopt_graph_add_buffer(g, s->buffers[i].data, s->buffers[i].size) == i;
    for (int i = 0; i < s->n_tensors && ok; i++) {
        const mopt_tensor *st = &s->tensors[i];
        int t = mopt_graph_add_tensor(g, st->name, st->dtype, st->rank, st->dims);
        if (t != i) {
            ok = false;
            break;
        }
        mopt_tensor *dt = &g->tensors[t];
        dt->buffer = st->buffer;
        dt->is_variable = st->is_variable;
        dt->n_shape_signature = st->n_shape_signature;
        dt->shape_signature = dup_array(st->shape_signature, (size_t)st->n_shape_signature,
                                        sizeof *st->shape_signature, &ok);
        if (!copy_quant(&dt->quant, &st->quant)) {
            ok = false;
        }
    }
    for (int i = 0; i < s->n_ops && ok; i++) {
        const mopt_op *so = &s->ops[i];
        int o = mopt_graph_add_op(g, so->type, so->inputs, so->n_inputs, so->outputs,
                                  so->n_outputs);
        if (o != i) {
            ok = false;
            break;
        }
        mopt_op *d = &g->ops[o];
        d->version = so->version;
        d->has_options = so->has_options;
        d->p = so->p;
    }
    if (ok) ok = mopt_graph_set_io(g, s->inputs, s->n_inputs, s->outputs, s->n_outputs) == MOPT_OK;
    if (ok && s->name) ok = (g->name = dup_str(s->name)) != NULL;
    if (ok && s->description) ok = (g->description = dup_str(s->description)) != NULL;
    if (ok && s->n_metadata > 0) {
        g->metadata = calloc((size_t)s->n_metadata, sizeof *g->metadata);
        ok = g->metadata != NULL;
        for (int i = 0; ok && i < s->n_metadata; i++) {
            g->metadata[i].buffer = s->metadata[i].buffer;
            g->metadata[i].name = dup_str_or_null(s->metadata[i].name);
            g->n_metadata = i + 1;
            ok = g->metadata[i].name || !s->metadata[i].name;
        }
    }
    if (ok && s->n_signatures > 0) {
        g->signatures = calloc((size_t)s->n_signatures, sizeof *g->signatures);
        ok = g->signatures != NULL;
        for (int i = 0; ok && i < s->n_signatures; i++) {
            const mopt_signature *ss = &s->signatures[i];
            mopt_signature *ds = &g->signatures[i];
            g->n_signatures = i + 1;
            ds->subgraph = ss->subgraph;
            ds->key = dup_str_or_null(ss->key);
            ok = ds->key || !ss->key;
            if (ok && ss->n_inputs) {
                ds->inputs = calloc((size_t)ss->n_inputs, sizeof *ds->inputs);
                ok = ds->inputs != NULL;
                for (int j = 0; ok && j < ss->n_inputs; j++) {
                    ds->n_inputs = j + 1;
                    ds->inputs[j].tensor = ss->inputs[j].tensor;
                    ds->inputs[j].name = dup_str_or_null(ss->inputs[j].name);
                    ok = ds->inputs[j].name || !ss->inputs[j].name;
                }
            }
            if (ok && ss->n_outputs) {
                ds->outputs = calloc((size_t)ss->n_outputs, sizeof *ds->outputs);
                ok = ds->outputs != NULL;
                for (int j = 0; ok && j < ss->n_outputs; j++) {
                    ds->n_outputs = j + 1;
                    ds->outputs[j].tensor = ss->outputs[j].tensor;
                    ds->outputs[j].name = dup_str_or_null(ss->outputs[j].name);
                    ok = ds->outputs[j].name || !ss->outputs[j].name;
                }
            }
        }
    }
    if (!ok) {
        mopt_graph_free(g);
        return NULL;
    }
    return g;
}

/* ---- queries ---- */

size_t mopt_dtype_size(mopt_dtype dt) {
    switch (dt) {
    case MOPT_FLOAT32: return 4;
    case MOPT_FLOAT16: return 2;
    case MOPT_INT32: return 4;
    case MOPT_UINT8: return 1;
    case MOPT_INT64: return 8;
    case MOPT_BOOL: return 1;
    case MOPT_INT16: return 2;
    case MOPT_INT8: return 1;
    case MOPT_STRING: return 0;
    }
    return 0;
}

static const struct {
    mopt_dtype dt;
    const char *name;
} dtype_names[] = {
    {MOPT_FLOAT32, "float32"}, {MOPT_FLOAT16, "float16"}, {MOPT_INT32, "int32"},
    {MOPT_UINT8, "uint8"},     {MOPT_INT64, "int64"},     {MOPT_STRING, "string"},
    {MOPT_BOOL, "bool"},       {MOPT_INT16, "int16"},     {MOPT_INT8, "int8"},
};

const char *mopt_dtype_name(mopt_dtype dt) {
    for (size_t i = 0; i < sizeof dtype_names / sizeof dtype_names[0]; i++)
        if (dtype_names[i].dt == dt) return dtype_names[i].name;
    return "unknown";
}

int mopt_dtype_from_name(const char *name) {
    if (!name) return -1;
    for (size_t i = 0; i < sizeof dtype_names / sizeof dtype_names[0]; i++)
        if (strcmp(dtype_names[i].name, name) == 0) return (int)dtype_names[i].dt;
    return -1;
}

static const struct {
    int code;
    const char *name;
} op_names[] = {
    {MOPT_OP_ADD, "ADD"},
    {MOPT_OP_AVERAGE_POOL_2D, "AVERAGE_POOL_2D"},
    {MOPT_OP_CONCATENATION, "CONCATENATION"},
    {MOPT_OP_CONV_2D, "CONV_2D"},
    {MOPT_OP_DEPTHWISE_CONV_2D, "DEPTHWISE_CONV_2D"},
    {MOPT_OP_DEQUANTIZE, "DEQUANTIZE"},
    {MOPT_OP_FULLY_CONNECTED, "FULLY_CONNECTED"},
    {MOPT_OP_LOGISTIC, "LOGISTIC"},
    {MOPT_OP_MAX_POOL_2D, "MAX_POOL_2D"},
    {MOPT_OP_MUL, "MUL"},
    {MOPT_OP_RELU, "RELU"},
    {MOPT_OP_RELU6, "RELU6"},
    {MOPT_OP_RESHAPE, "RESHAPE"},
    {MOPT_OP_SOFTMAX, "SOFTMAX"},
    {MOPT_OP_TANH, "TANH"},
    {MOPT_OP_PAD, "PAD"},
    {MOPT_OP_TRANSPOSE, "TRANSPOSE"},
    {MOPT_OP_MEAN, "MEAN"},
    {MOPT_OP_SUB, "SUB"},
    {MOPT_OP_QUANTIZE, "QUANTIZE"},
    {MOPT_OP_HARD_SWISH, "HARD_SWISH"},
};

const char *mopt_op_name(int op_type) {
    for (size_t i = 0; i < sizeof op_names / sizeof op_names[0]; i++)
        if (op_names[i].code == op_type) return op_names[i].name;
    return NULL;
}

bool mopt_op_supported(int op_type) { return mopt_op_name(op_type) != NULL; }

const char *mopt_activation_name(mopt_activation a) {
    switch (a) {
    case MOPT_ACT_NONE: return "NONE";
    case MOPT_ACT_RELU: return "RELU";
    case MOPT_ACT_RELU_N1_TO_1: return "RELU_N1_TO_1";
    case MOPT_ACT_RELU6: return "RELU6";
    case MOPT_ACT_TANH: return "TANH";
    case MOPT_ACT_SIGN_BIT: return "SIGN_BIT";
    }
    return "UNKNOWN";
}

int64_t mopt_tensor_numel(const mopt_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) {
        if (t->dims[i] < 0) return -1;
        n *= t->dims[i];
        if (n > INT32_MAX) return -1;
    }
    return n;
}

int64_t mopt_tensor_nbytes(const mopt_tensor *t) {
    int64_t n = mopt_tensor_numel(t);
    size_t sz = mopt_dtype_size(t->dtype);
    if (n < 0 || sz == 0) return -1;
    return n * (int64_t)sz;
}

const void *mopt_tensor_data(const mopt_graph *g, int t) {
    if (!g || t < 0 || t >= g->n_tensors) return NULL;
    uint32_t b = g->tensors[t].buffer;
    if (b == 0 || b >= (uint32_t)g->n_buffers) return NULL;
    return g->buffers[b].size ? g->buffers[b].data : NULL;
}

bool mopt_tensor_is_constant(const mopt_graph *g, int t) { return mopt_tensor_data(g, t) != NULL; }

int64_t mopt_graph_param_count(const mopt_graph *g) {
    int64_t n = 0;
    for (int i = 0; i < g->n_tensors; i++)
        if (mopt_tensor_is_constant(g, i)) {
            int64_t e = mopt_tensor_numel(&g->tensors[i]);
            if (e > 0) n += e;
        }
    return n;
}
