/* Unit tests for src/io/tflite_{read,write}.c: round trips and the layout
 * rules LiteRT's verifier and kernels rely on.
 *
 * Expected values come from the graph the test builds (not from the code
 * under test); layout rules are checked on the raw bytes with the separately
 * tested flatbuffer reader. The committed converter-made fixtures
 * (tests/fixtures/ *.tflite) are read, written and read again; the test skips
 * them with a message when they are absent.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/flatbuf.h"
#include "io/tflite_schema.h"
#include "mopt/graph.h"
#include "mopt/tflite.h"
#include "mopt/util.h"

/* ------------------------------------------------------------ comparison */

static void assert_str_eq_or_null(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        assert_true(a == b);
    else
        assert_string_equal(a, b);
}

static void assert_bits_equal(const float *a, const float *b, int n)
{
    if (n > 0)
        assert_memory_equal(a, b, (size_t)n * sizeof *a);
}

static void assert_params_equal(const mopt_op *a, const mopt_op *b)
{
    switch (a->type) {
    case MOPT_OP_CONV_2D:
    case MOPT_OP_DEPTHWISE_CONV_2D:
        assert_int_equal(a->p.conv.padding, b->p.conv.padding);
        assert_int_equal(a->p.conv.stride_w, b->p.conv.stride_w);
        assert_int_equal(a->p.conv.stride_h, b->p.conv.stride_h);
        assert_int_equal(a->p.conv.dilation_w, b->p.conv.dilation_w);
        assert_int_equal(a->p.conv.dilation_h, b->p.conv.dilation_h);
        assert_int_equal(a->p.conv.act, b->p.conv.act);
        if (a->type == MOPT_OP_DEPTHWISE_CONV_2D)
            assert_int_equal(a->p.conv.depth_multiplier, b->p.conv.depth_multiplier);
        else
            assert_int_equal(a->p.conv.quantized_bias_type, b->p.conv.quantized_bias_type);
        break;
    case MOPT_OP_AVERAGE_POOL_2D:
    case MOPT_OP_MAX_POOL_2D:
        assert_int_equal(a->p.pool.padding, b->p.pool.padding);
        assert_int_equal(a->p.pool.stride_w, b->p.pool.stride_w);
        assert_int_equal(a->p.pool.stride_h, b->p.pool.stride_h);
        assert_int_equal(a->p.pool.filter_w, b->p.pool.filter_w);
        assert_int_equal(a->p.pool.filter_h, b->p.pool.filter_h);
        assert_int_equal(a->p.pool.act, b->p.pool.act);
        break;
    case MOPT_OP_FULLY_CONNECTED:
        assert_int_equal(a->p.fc.act, b->p.fc.act);
        assert_int_equal(a->p.fc.weights_format, b->p.fc.weights_format);
        assert_int_equal(a->p.fc.keep_num_dims, b->p.fc.keep_num_dims);
        assert_int_equal(a->p.fc.asymmetric_quantize_inputs, b->p.fc.asymmetric_quantize_inputs);
        assert_int_equal(a->p.fc.quantized_bias_type, b->p.fc.quantized_bias_type);
        break;
    case MOPT_OP_ADD:
    case MOPT_OP_SUB:
        assert_int_equal(a->p.binary.pot_scale_int16, b->p.binary.pot_scale_int16);
        /* fall through */
    case MOPT_OP_MUL: assert_int_equal(a->p.binary.act, b->p.binary.act); break;
    case MOPT_OP_SOFTMAX: assert_bits_equal(&a->p.softmax.beta, &b->p.softmax.beta, 1); break;
    case MOPT_OP_CONCATENATION:
        assert_int_equal(a->p.concat.axis, b->p.concat.axis);
        assert_int_equal(a->p.concat.act, b->p.concat.act);
        break;
    case MOPT_OP_RESHAPE:
        assert_int_equal(a->p.reshape.n_new_shape, b->p.reshape.n_new_shape);
        for (int i = 0; i < a->p.reshape.n_new_shape; i++)
            assert_int_equal(a->p.reshape.new_shape[i], b->p.reshape.new_shape[i]);
        break;
    case MOPT_OP_MEAN: assert_int_equal(a->p.reducer.keep_dims, b->p.reducer.keep_dims); break;
    default: break;
    }
}

/* Everything a round trip must keep. `strict_options`: has_options must match
 * too (false when the first graph came from the API, where ops that always
 * get a table may say has_options false). */
static void assert_graphs_equal(const mopt_graph *a, const mopt_graph *b, bool strict_options)
{
    assert_int_equal(a->n_tensors, b->n_tensors);
    for (int i = 0; i < a->n_tensors; i++) {
        const mopt_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->dtype, y->dtype);
        assert_int_equal(x->rank, y->rank);
        for (int d = 0; d < x->rank; d++)
            assert_int_equal(x->dims[d], y->dims[d]);
        assert_int_equal(x->n_shape_signature, y->n_shape_signature);
        for (int d = 0; d < x->n_shape_signature; d++)
            assert_int_equal(x->shape_signature[d], y->shape_signature[d]);
        assert_int_equal(x->buffer, y->buffer);
        assert_int_equal(x->is_variable, y->is_variable);
        assert_int_equal(x->quant.n, y->quant.n);
        assert_bits_equal(x->quant.scale, y->quant.scale, x->quant.n);
        for (int k = 0; k < x->quant.n; k++)
            assert_true(x->quant.zero_point[k] == y->quant.zero_point[k]);
        assert_int_equal(x->quant.axis, y->quant.axis);
        assert_int_equal(x->quant.n_minmax, y->quant.n_minmax);
        assert_bits_equal(x->quant.min, y->quant.min, x->quant.n_minmax);
        assert_bits_equal(x->quant.max, y->quant.max, x->quant.n_minmax);
    }
    assert_int_equal(a->n_buffers, b->n_buffers);
    for (int i = 0; i < a->n_buffers; i++) {
        assert_int_equal(a->buffers[i].size, b->buffers[i].size);
        if (a->buffers[i].size > 0) {
            assert_memory_equal(a->buffers[i].data, b->buffers[i].data, a->buffers[i].size);
            assert_int_equal((uintptr_t)b->buffers[i].data % 16, 0);
        }
    }
    assert_int_equal(a->n_ops, b->n_ops);
    for (int i = 0; i < a->n_ops; i++) {
        const mopt_op *x = &a->ops[i], *y = &b->ops[i];
        assert_int_equal(x->type, y->type);
        assert_int_equal(x->version, y->version);
        assert_int_equal(x->n_inputs, y->n_inputs);
        for (int k = 0; k < x->n_inputs; k++)
            assert_int_equal(x->inputs[k], y->inputs[k]);
        assert_int_equal(x->n_outputs, y->n_outputs);
        for (int k = 0; k < x->n_outputs; k++)
            assert_int_equal(x->outputs[k], y->outputs[k]);
        if (strict_options)
            assert_int_equal(x->has_options, y->has_options);
        if (x->has_options || !strict_options)
            assert_params_equal(x, y);
    }
    assert_int_equal(a->n_inputs, b->n_inputs);
    for (int k = 0; k < a->n_inputs; k++)
        assert_int_equal(a->inputs[k], b->inputs[k]);
    assert_int_equal(a->n_outputs, b->n_outputs);
    for (int k = 0; k < a->n_outputs; k++)
        assert_int_equal(a->outputs[k], b->outputs[k]);
    assert_str_eq_or_null(a->name, b->name);
    assert_str_eq_or_null(a->description, b->description);
    assert_int_equal(a->n_metadata, b->n_metadata);
    for (int i = 0; i < a->n_metadata; i++) {
        assert_str_eq_or_null(a->metadata[i].name, b->metadata[i].name);
        assert_int_equal(a->metadata[i].buffer, b->metadata[i].buffer);
    }
    assert_int_equal(a->n_signatures, b->n_signatures);
    for (int i = 0; i < a->n_signatures; i++) {
        const mopt_signature *x = &a->signatures[i], *y = &b->signatures[i];
        assert_str_eq_or_null(x->key, y->key);
        assert_int_equal(x->subgraph, y->subgraph);
        assert_int_equal(x->n_inputs, y->n_inputs);
        for (int k = 0; k < x->n_inputs; k++) {
            assert_str_eq_or_null(x->inputs[k].name, y->inputs[k].name);
            assert_int_equal(x->inputs[k].tensor, y->inputs[k].tensor);
        }
        assert_int_equal(x->n_outputs, y->n_outputs);
        for (int k = 0; k < x->n_outputs; k++) {
            assert_str_eq_or_null(x->outputs[k].name, y->outputs[k].name);
            assert_int_equal(x->outputs[k].tensor, y->outputs[k].tensor);
        }
    }
}

/* ------------------------------------------------------------ test graph */

static int add_t(mopt_graph *g, const char *name, mopt_dtype dt, int rank, int32_t d0, int32_t d1,
                 int32_t d2, int32_t d3)
{
    int32_t dims[4] = {d0, d1, d2, d3};
    int t = mopt_graph_add_tensor(g, name, dt, rank, dims);
    assert_true(t >= 0);
    return t;
}

/* Gives tensor t constant data: bytes seed, seed+1, ... (recognisable). */
static void fill_const(mopt_graph *g, int t, uint8_t seed)
{
    int64_t nb = mopt_tensor_nbytes(&g->tensors[t]);
    assert_true(nb > 0);
    uint8_t *tmp = malloc((size_t)nb);
    assert_non_null(tmp);
    for (int64_t i = 0; i < nb; i++)
        tmp[i] = (uint8_t)(seed + 7 * i);
    assert_int_equal(mopt_graph_set_tensor_data(g, t, tmp, (size_t)nb), MOPT_OK);
    free(tmp);
}

static char *xstrdup(const char *s)
{
    char *d = malloc(strlen(s) + 1);
    assert_non_null(d);
    strcpy(d, s);
    return d;
}

/* One op of every supported type, with non-default parameters where the
 * schema has them. The graph need not be semantically valid. */
static mopt_graph *make_graph(void)
{
    mopt_graph *g = mopt_graph_create();
    assert_non_null(g);
    int x = add_t(g, "input", MOPT_INT8, 4, 1, 8, 8, 3);
    int w = add_t(g, "conv/w", MOPT_INT8, 4, 4, 3, 3, 3);
    int b = add_t(g, "conv/b", MOPT_INT32, 1, 4, 0, 0, 0);
    int y = add_t(g, "conv/out", MOPT_INT8, 4, 1, 8, 8, 4);
    fill_const(g, w, 11);
    fill_const(g, b, 23);
    float sc[4] = {0.5f, 0.25f, 0.125f, 1e-9f};
    int64_t zp[4] = {0, 0, 0, 0};
    assert_int_equal(mopt_tensor_set_quant(&g->tensors[w], 4, sc, zp, 0), MOPT_OK);
    float s1 = 0.02f;
    int64_t z1 = -128;
    assert_int_equal(mopt_tensor_set_quant(&g->tensors[x], 1, &s1, &z1, 0), MOPT_OK);
    /* min/max kept for round trips. */
    mopt_quant *q = &g->tensors[x].quant;
    q->n_minmax = 1;
    q->min = malloc(sizeof(float));
    q->max = malloc(sizeof(float));
    assert_non_null(q->min);
    assert_non_null(q->max);
    q->min[0] = -2.5f;
    q->max[0] = 2.5f;
    g->tensors[x].n_shape_signature = 4;
    g->tensors[x].shape_signature = malloc(4 * sizeof(int32_t));
    assert_non_null(g->tensors[x].shape_signature);
    int32_t sig[4] = {-1, 8, 8, 3};
    memcpy(g->tensors[x].shape_signature, sig, sizeof sig);
    int dw_w = add_t(g, "dw/w", MOPT_INT8, 4, 1, 3, 3, 4);
    fill_const(g, dw_w, 99);
    float sc3[4] = {1, 2, 3, 4};
    int64_t zp3[4] = {1, -1, 127, -128};
    assert_int_equal(mopt_tensor_set_quant(&g->tensors[dw_w], 4, sc3, zp3, 3), MOPT_OK);
    int v = add_t(g, "state", MOPT_FLOAT32, 2, 1, 4, 0, 0);
    g->tensors[v].is_variable = true;
    int f16 = add_t(g, "half", MOPT_FLOAT16, 1, 5, 0, 0, 0);
    fill_const(g, f16, 200);
    int i64 = add_t(g, "i64", MOPT_INT64, 0, 0, 0, 0, 0); /* scalar */
    fill_const(g, i64, 3);
    int bo = add_t(g, "bool", MOPT_BOOL, 1, 3, 0, 0, 0);
    fill_const(g, bo, 1);
    int u8 = add_t(g, "u8", MOPT_UINT8, 1, 0, 0, 0, 0); /* zero elements */
    int i16 = add_t(g, "i16", MOPT_INT16, 2, 2, 2, 0, 0);
    (void)u8;
    (void)i16;
    /* A buffer shared by two tensors, and one used by nothing but metadata. */
    int s2 = add_t(g, "shared", MOPT_INT32, 1, 4, 0, 0, 0);
    g->tensors[s2].buffer = g->tensors[b].buffer;
    int meta_buf = mopt_graph_add_buffer(g, "min_runtime_version\0\0", 21);
    assert_true(meta_buf > 0);

    int32_t in3[3] = {x, w, b}, out1[1] = {y};
    int op;
    op = mopt_graph_add_op(g, MOPT_OP_CONV_2D, in3, 3, out1, 1);
    g->ops[op].version = 3;
    g->ops[op].p.conv = (mopt_conv_params){MOPT_PAD_VALID, 2, 3, 2, 1, 0, MOPT_ACT_RELU6, 9};
    int32_t in_dw[3] = {y, dw_w, -1};
    op = mopt_graph_add_op(g, MOPT_OP_DEPTHWISE_CONV_2D, in_dw, 3, out1, 1);
    g->ops[op].p.conv = (mopt_conv_params){MOPT_PAD_SAME, 1, 1, 1, 3, 1, MOPT_ACT_RELU, 0};
    g->ops[op].version = 6;
    op = mopt_graph_add_op(g, MOPT_OP_AVERAGE_POOL_2D, &y, 1, out1, 1);
    g->ops[op].p.pool = (mopt_pool_params){MOPT_PAD_VALID, 2, 2, 3, 3, MOPT_ACT_NONE};
    op = mopt_graph_add_op(g, MOPT_OP_MAX_POOL_2D, &y, 1, out1, 1);
    g->ops[op].p.pool = (mopt_pool_params){MOPT_PAD_SAME, 1, 2, 2, 1, MOPT_ACT_RELU_N1_TO_1};
    op = mopt_graph_add_op(g, MOPT_OP_FULLY_CONNECTED, in3, 3, out1, 1);
    g->ops[op].p.fc.act = MOPT_ACT_TANH;
    g->ops[op].p.fc.keep_num_dims = true;
    g->ops[op].p.fc.asymmetric_quantize_inputs = true;
    g->ops[op].p.fc.quantized_bias_type = MOPT_INT64;
    op = mopt_graph_add_op(g, MOPT_OP_ADD, in3, 2, out1, 1);
    g->ops[op].p.binary.pot_scale_int16 = false; /* the value that must be written */
    g->ops[op].p.binary.act = MOPT_ACT_RELU;
    op = mopt_graph_add_op(g, MOPT_OP_SUB, in3, 2, out1, 1);
    g->ops[op].version = 5;
    op = mopt_graph_add_op(g, MOPT_OP_MUL, in3, 2, out1, 1);
    g->ops[op].p.binary.act = MOPT_ACT_SIGN_BIT;
    g->ops[op].p.binary.pot_scale_int16 = false; /* MUL has no such field */
    op = mopt_graph_add_op(g, MOPT_OP_MEAN, in3, 2, out1, 1);
    g->ops[op].p.reducer.keep_dims = true;
    op = mopt_graph_add_op(g, MOPT_OP_PAD, in3, 2, out1, 1);
    g->ops[op].has_options = true;
    op = mopt_graph_add_op(g, MOPT_OP_RESHAPE, in3, 2, out1, 1);
    g->ops[op].has_options = true;
    g->ops[op].p.reshape.n_new_shape = 3;
    g->ops[op].p.reshape.new_shape[0] = 1;
    g->ops[op].p.reshape.new_shape[1] = -1;
    g->ops[op].p.reshape.new_shape[2] = 4;
    op = mopt_graph_add_op(g, MOPT_OP_RESHAPE, in3, 2, out1, 1); /* no options at all */
    op = mopt_graph_add_op(g, MOPT_OP_SOFTMAX, &y, 1, out1, 1);
    g->ops[op].p.softmax.beta = 0.5f;
    op = mopt_graph_add_op(g, MOPT_OP_CONCATENATION, in3, 2, out1, 1);
    g->ops[op].p.concat.axis = -1;
    g->ops[op].p.concat.act = MOPT_ACT_RELU6;
    mopt_op_type simple[] = {MOPT_OP_RELU,       MOPT_OP_RELU6,    MOPT_OP_LOGISTIC,
                             MOPT_OP_TANH,       MOPT_OP_HARD_SWISH, MOPT_OP_QUANTIZE,
                             MOPT_OP_DEQUANTIZE, MOPT_OP_TRANSPOSE};
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++) {
        op = mopt_graph_add_op(g, simple[i], &y, 1, out1, 1);
        assert_true(op >= 0);
        /* Give the ops with empty option tables one, alternately. */
        if (simple[i] == MOPT_OP_QUANTIZE || simple[i] == MOPT_OP_HARD_SWISH)
            g->ops[op].has_options = true;
    }
    int32_t gin[2] = {x, v}, gout[1] = {y};
    assert_int_equal(mopt_graph_set_io(g, gin, 2, gout, 1), MOPT_OK);
    g->name = xstrdup("main");
    g->description = xstrdup("mopt test graph");
    g->n_metadata = 1;
    g->metadata = calloc(1, sizeof *g->metadata);
    assert_non_null(g->metadata);
    g->metadata[0].name = xstrdup("min_runtime_version");
    g->metadata[0].buffer = (uint32_t)meta_buf;
    g->n_signatures = 1;
    g->signatures = calloc(1, sizeof *g->signatures);
    assert_non_null(g->signatures);
    mopt_signature *s = &g->signatures[0];
    s->key = xstrdup("serving_default");
    s->n_inputs = 2;
    s->inputs = calloc(2, sizeof *s->inputs);
    s->n_outputs = 1;
    s->outputs = calloc(1, sizeof *s->outputs);
    assert_non_null(s->inputs);
    assert_non_null(s->outputs);
    s->inputs[0] = (mopt_tensor_map){xstrdup("x"), (uint32_t)x};
    s->inputs[1] = (mopt_tensor_map){xstrdup("state"), (uint32_t)v};
    s->outputs[0] = (mopt_tensor_map){xstrdup("output_0"), (uint32_t)y};
    return g;
}

static mopt_graph *roundtrip(const mopt_graph *g, uint8_t **bytes, size_t *size)
{
    mopt_error err;
    assert_int_equal(mopt_tflite_write_mem(g, bytes, size, &err), MOPT_OK);
    mopt_graph *h = NULL;
    mopt_status st = mopt_tflite_read_mem(*bytes, *size, "roundtrip", &h, &err);
    if (st != MOPT_OK)
        fail_msg("re-read failed: %s", err.msg);
    return h;
}

static void test_roundtrip_api_graph(void **state)
{
    (void)state;
    mopt_graph *g = make_graph();
    uint8_t *b1, *b2;
    size_t n1, n2;
    mopt_graph *h = roundtrip(g, &b1, &n1);
    assert_graphs_equal(g, h, false);
    /* A second pass is a fixed point, byte for byte (determinism). */
    mopt_graph *k = roundtrip(h, &b2, &n2);
    assert_graphs_equal(h, k, true);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    free(b1);
    free(b2);
    mopt_graph_free(k);
    /* Writing the same graph twice gives the same bytes. */
    assert_int_equal(mopt_tflite_write_mem(h, &b1, &n1, NULL), MOPT_OK);
    assert_int_equal(mopt_tflite_write_mem(h, &b2, &n2, NULL), MOPT_OK);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    free(b1);
    free(b2);
    mopt_graph_free(h);
    mopt_graph_free(g);
}

/* Finds op i's table in a written model. */
static void open_op(fb_reader *r, const uint8_t *data, size_t size, uint32_t i, fb_table *model,
                    fb_table *op)
{
    fb_vec v;
    fb_table sg;
    assert_true(fb_reader_init(r, data, size, TFL_IDENTIFIER));
    assert_true(fb_root(r, model));
    assert_true(fb_get_vec(r, model, TFL_MODEL_SUBGRAPHS, 4, 4, &v, NULL));
    assert_int_equal(v.n, 1);
    assert_true(fb_vec_table(r, &v, 0, &sg));
    assert_true(fb_get_vec(r, &sg, TFL_SUBGRAPH_OPERATORS, 4, 4, &v, NULL));
    assert_true(fb_vec_table(r, &v, i, op));
}

/* Layout rules checked on the bytes: identifier, version, buffers[0] empty,
 * 16-byte aligned buffer data, both opcode fields, option tables. */
static void test_written_layout(void **state)
{
    (void)state;
    mopt_graph *g = make_graph();
    uint8_t *data;
    size_t size;
    assert_int_equal(mopt_tflite_write_mem(g, &data, &size, NULL), MOPT_OK);
    assert_memory_equal(data + 4, "TFL3", 4);

    fb_reader r;
    fb_table model, t, op;
    fb_vec v, bytes;
    uint32_t version;
    assert_true(fb_reader_init(&r, data, size, "TFL3"));
    assert_true(fb_root(&r, &model));
    assert_true(fb_get_u32(&r, &model, TFL_MODEL_VERSION, 0, &version));
    assert_int_equal(version, 3);

    assert_true(fb_get_vec(&r, &model, TFL_MODEL_BUFFERS, 4, 4, &v, NULL));
    assert_int_equal(v.n, g->n_buffers);
    for (uint32_t i = 0; i < v.n; i++) {
        assert_true(fb_vec_table(&r, &v, i, &t));
        assert_true(fb_get_vec(&r, &t, TFL_BUFFER_DATA, 1, 1, &bytes, NULL));
        assert_int_equal(bytes.n, g->buffers[i].size);
        if (bytes.n > 0) {
            assert_int_equal(bytes.pos % 16, 0);
            assert_memory_equal(fb_vec_bytes(&r, &bytes), g->buffers[i].data, bytes.n);
        }
    }

    assert_true(fb_get_vec(&r, &model, TFL_MODEL_OPERATOR_CODES, 4, 4, &v, NULL));
    /* SUB v5 differs from nothing else; CONV v3, DW v6: each (type,version) once. */
    for (uint32_t i = 0; i < v.n; i++) {
        int8_t dep;
        int32_t code, ver;
        assert_true(fb_vec_table(&r, &v, i, &t));
        assert_true(fb_present(&r, &t, TFL_OPCODE_DEPRECATED_BUILTIN_CODE));
        assert_true(fb_present(&r, &t, TFL_OPCODE_BUILTIN_CODE));
        assert_true(fb_get_i8(&r, &t, TFL_OPCODE_DEPRECATED_BUILTIN_CODE, -1, &dep));
        assert_true(fb_get_i32(&r, &t, TFL_OPCODE_BUILTIN_CODE, -1, &code));
        assert_true(fb_get_i32(&r, &t, TFL_OPCODE_VERSION, -1, &ver));
        assert_int_equal(dep, code < 127 ? code : 127);
        assert_true(ver >= 1);
    }
    assert_int_equal(v.n, g->n_ops - 1); /* the two RESHAPEs share (22, 1) */

    /* Per op: which option table was written. */
    static const struct {
        int op;
        int type;
    } want[] = {
        {0, TFL_OPT_CONV2D},  {1, TFL_OPT_DEPTHWISE_CONV2D},
        {2, TFL_OPT_POOL2D},  {3, TFL_OPT_POOL2D},
        {4, TFL_OPT_FULLY_CONNECTED}, {5, TFL_OPT_ADD},
        {6, TFL_OPT_SUB},     {7, TFL_OPT_MUL},
        {8, TFL_OPT_REDUCER}, {9, TFL_OPT_PAD},
        {10, TFL_OPT_RESHAPE}, {11, TFL_OPT_NONE},
        {12, TFL_OPT_SOFTMAX}, {13, TFL_OPT_CONCATENATION},
        {14, TFL_OPT_NONE},   {15, TFL_OPT_NONE}, /* RELU, RELU6 */
        {16, TFL_OPT_NONE},   {17, TFL_OPT_NONE}, /* LOGISTIC, TANH */
        {18, TFL_OPT_HARD_SWISH}, {19, TFL_OPT_QUANTIZE},
        {20, TFL_OPT_NONE},   {21, TFL_OPT_NONE}, /* DEQUANTIZE, TRANSPOSE */
    };
    assert_int_equal(g->n_ops, (int)(sizeof want / sizeof want[0]));
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        uint8_t type;
        bool has;
        open_op(&r, data, size, (uint32_t)want[k].op, &model, &op);
        assert_true(fb_get_u8(&r, &op, TFL_OP_BUILTIN_OPTIONS_TYPE, 0, &type));
        assert_true(fb_get_table(&r, &op, TFL_OP_BUILTIN_OPTIONS, &t, &has));
        assert_int_equal(type, want[k].type);
        assert_int_equal(has, want[k].type != TFL_OPT_NONE);
    }

    /* Values whose schema default is not what the graph holds are stored. */
    bool pot = true;
    open_op(&r, data, size, 5, &model, &op); /* ADD, pot_scale_int16 false */
    assert_true(fb_get_table(&r, &op, TFL_OP_BUILTIN_OPTIONS, &t, NULL));
    assert_true(fb_present(&r, &t, TFL_ADDSUB_POT_SCALE_INT16));
    assert_true(fb_get_bool(&r, &t, TFL_ADDSUB_POT_SCALE_INT16, true, &pot));
    assert_false(pot);
    open_op(&r, data, size, 6, &model, &op); /* SUB, pot_scale_int16 true: default */
    assert_true(fb_get_table(&r, &op, TFL_OP_BUILTIN_OPTIONS, &t, NULL));
    assert_false(fb_present(&r, &t, TFL_ADDSUB_POT_SCALE_INT16));
    open_op(&r, data, size, 0, &model, &op); /* CONV: strides 2,3 dilation 2,1 */
    assert_true(fb_get_table(&r, &op, TFL_OP_BUILTIN_OPTIONS, &t, NULL));
    int32_t i32;
    assert_true(fb_get_i32(&r, &t, TFL_CONV_STRIDE_W, 0, &i32));
    assert_int_equal(i32, 2);
    assert_true(fb_get_i32(&r, &t, TFL_CONV_STRIDE_H, 0, &i32));
    assert_int_equal(i32, 3);
    assert_true(fb_get_i32(&r, &t, TFL_CONV_DILATION_W, 1, &i32));
    assert_int_equal(i32, 2);
    assert_true(fb_get_i32(&r, &t, TFL_CONV_DILATION_H, 1, &i32));
    assert_int_equal(i32, 1);
    open_op(&r, data, size, 12, &model, &op); /* SOFTMAX beta 0.5 */
    assert_true(fb_get_table(&r, &op, TFL_OP_BUILTIN_OPTIONS, &t, NULL));
    float beta = 0;
    assert_true(fb_get_f32(&r, &t, TFL_SOFTMAX_BETA, 0, &beta));
    assert_true(beta == 0.5f);
    free(data);
    mopt_graph_free(g);
}

/* The usual softmax beta 1.0 differs from the schema default 0.0. */
static void test_softmax_beta_default(void **state)
{
    (void)state;
    mopt_graph *g = mopt_graph_create();
    int32_t d[2] = {1, 4};
    int a = mopt_graph_add_tensor(g, "a", MOPT_FLOAT32, 2, d);
    int b = mopt_graph_add_tensor(g, "b", MOPT_FLOAT32, 2, d);
    int32_t in = a, out = b;
    int op = mopt_graph_add_op(g, MOPT_OP_SOFTMAX, &in, 1, &out, 1);
    g->ops[op].p.softmax.beta = 1.0f;
    g->ops[op].has_options = false; /* softmax gets its table anyway */
    uint8_t *data;
    size_t size;
    mopt_graph *h = roundtrip(g, &data, &size);
    assert_true(h->ops[0].has_options);
    assert_true(h->ops[0].p.softmax.beta == 1.0f);
    free(data);
    mopt_graph_free(h);
    mopt_graph_free(g);
}

/* ------------------------------------------------------------- fixtures */

static int fixture_count;

static void roundtrip_file(const char *path)
{
    mopt_error err;
    mopt_graph *g = NULL;
    mopt_status st = mopt_tflite_read_file(path, &g, &err);
    if (st != MOPT_OK)
        fail_msg("%s: %s", path, err.msg);
    uint8_t *b1, *b2;
    size_t n1, n2;
    mopt_graph *h = roundtrip(g, &b1, &n1);
    assert_graphs_equal(g, h, true);
    mopt_graph *k = roundtrip(h, &b2, &n2);
    assert_graphs_equal(h, k, true);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);

    /* The counts in the original file itself (read with the flatbuffer
     * reader alone) survive too: nothing was dropped on the way in. */
    uint8_t *orig;
    size_t n_orig;
    assert_int_equal(mopt_file_read_all(path, 0, &orig, &n_orig, NULL), MOPT_OK);
    fb_reader r;
    fb_table model, sg;
    fb_vec v;
    assert_true(fb_reader_init(&r, orig, n_orig, TFL_IDENTIFIER));
    assert_true(fb_root(&r, &model));
    assert_true(fb_get_vec(&r, &model, TFL_MODEL_BUFFERS, 4, 4, &v, NULL));
    assert_int_equal(v.n, k->n_buffers);
    assert_true(fb_get_vec(&r, &model, TFL_MODEL_METADATA, 4, 4, &v, NULL));
    assert_int_equal(v.n, k->n_metadata);
    assert_true(fb_get_vec(&r, &model, TFL_MODEL_SIGNATURE_DEFS, 4, 4, &v, NULL));
    assert_int_equal(v.n, k->n_signatures);
    assert_true(fb_get_vec(&r, &model, TFL_MODEL_SUBGRAPHS, 4, 4, &v, NULL));
    assert_true(fb_vec_table(&r, &v, 0, &sg));
    assert_true(fb_get_vec(&r, &sg, TFL_SUBGRAPH_TENSORS, 4, 4, &v, NULL));
    assert_int_equal(v.n, k->n_tensors);
    assert_true(fb_get_vec(&r, &sg, TFL_SUBGRAPH_OPERATORS, 4, 4, &v, NULL));
    assert_int_equal(v.n, k->n_ops);
    free(orig);

    free(b1);
    free(b2);
    mopt_graph_free(g);
    mopt_graph_free(h);
    mopt_graph_free(k);
    fixture_count++;
}

static void test_roundtrip_fixtures(void **state)
{
    (void)state;
    const char *dir = MOPT_SOURCE_DIR "/tests/fixtures";
    DIR *d = opendir(dir);
    fixture_count = 0;
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            size_t n = strlen(e->d_name);
            if (n < 8 || strcmp(e->d_name + n - 7, ".tflite") != 0)
                continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            roundtrip_file(path);
        }
        closedir(d);
    }
    if (fixture_count == 0) {
        print_message("no fixtures in %s: skipping the converter-made models\n", dir);
        skip();
    }
    print_message("%d converter-made fixtures round-tripped\n", fixture_count);
}

/* ---------------------------------------------------------------- files */

static void test_file_api(void **state)
{
    (void)state;
    char dir[] = "/tmp/mopt_tflite_io_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], bad[256];
    snprintf(path, sizeof path, "%s/m.tflite", dir);
    snprintf(bad, sizeof bad, "%s/missing/m.tflite", dir);

    mopt_graph *g = make_graph();
    mopt_error err;
    assert_int_equal(mopt_tflite_write_file(g, path, &err), MOPT_OK);
    mopt_graph *h = NULL;
    assert_int_equal(mopt_tflite_read_file(path, &h, &err), MOPT_OK);
    assert_graphs_equal(g, h, false);
    mopt_graph_free(h);

    /* Failing writes leave nothing behind; failing reads say which file. */
    assert_int_equal(mopt_tflite_write_file(g, bad, &err), MOPT_ERR_IO);
    assert_non_null(strstr(err.msg, bad));
    struct stat st;
    assert_int_not_equal(stat(bad, &st), 0);
    h = (mopt_graph *)1;
    assert_int_equal(mopt_tflite_read_file(bad, &h, &err), MOPT_ERR_IO);
    assert_null(h);
    assert_non_null(strstr(err.msg, bad));

    unlink(path);
    rmdir(dir);
    mopt_graph_free(g);
}

/* The writer refuses graphs it would have to index out of bounds. */
static void test_writer_rejects_inconsistent(void **state)
{
    (void)state;
    mopt_error err;
    uint8_t *data = (uint8_t *)1;
    size_t size = 1;

    mopt_graph *g = make_graph();
    g->tensors[1].buffer = 999;
    assert_int_equal(mopt_tflite_write_mem(g, &data, &size, &err), MOPT_ERR_BAD_INPUT);
    assert_null(data);
    assert_int_equal(size, 0);
    assert_non_null(strstr(err.msg, "tensor 1 'conv/w': buffer 999 out of range"));
    mopt_graph_free(g);

    g = make_graph();
    g->ops[0].inputs[1] = 12345;
    assert_int_equal(mopt_tflite_write_mem(g, &data, &size, &err), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(err.msg, "operator 0 (CONV_2D)"));
    mopt_graph_free(g);

    g = make_graph();
    g->tensors[1].dims[0] = 5; /* constant data no longer matches the shape */
    assert_int_equal(mopt_tflite_write_mem(g, &data, &size, &err), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(err.msg, "bytes"));
    mopt_graph_free(g);

    g = make_graph();
    g->ops[0].type = (mopt_op_type)126;
    assert_int_equal(mopt_tflite_write_mem(g, &data, &size, &err), MOPT_ERR_BAD_INPUT);
    mopt_graph_free(g);

    assert_int_equal(mopt_tflite_write_mem(NULL, &data, &size, &err), MOPT_ERR_ARG);
    assert_int_equal(mopt_tflite_read_mem(NULL, 0, NULL, NULL, &err), MOPT_ERR_ARG);
}

/* An empty graph (no tensors, ops, metadata) is written and read back. */
static void test_empty_graph(void **state)
{
    (void)state;
    mopt_graph *g = mopt_graph_create();
    uint8_t *data;
    size_t size;
    mopt_graph *h = roundtrip(g, &data, &size);
    assert_graphs_equal(g, h, true);
    assert_int_equal(h->n_buffers, 1);
    free(data);
    mopt_graph_free(h);
    mopt_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_api_graph),
        cmocka_unit_test(test_written_layout),
        cmocka_unit_test(test_softmax_beta_default),
        cmocka_unit_test(test_roundtrip_fixtures),
        cmocka_unit_test(test_file_api),
        cmocka_unit_test(test_writer_rejects_inconsistent),
        cmocka_unit_test(test_empty_graph),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
