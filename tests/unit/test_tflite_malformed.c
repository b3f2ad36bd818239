/* Malformed and unsupported .tflite input: every case must give
 * MOPT_ERR_BAD_INPUT or MOPT_ERR_UNSUPPORTED with one non-empty line that
 * starts with the file name, and never crash or leak (run under ASan/UBSan
 * and valgrind).
 *
 * Models are built here directly with the flatbuffer builder, field by field
 * from the schema (not with tflite_write.c), with knobs that break one rule
 * at a time. Byte-level damage (truncation, bad offsets, random mutation) is
 * applied to the valid one. The committed files in tests/malformed/ are read
 * too.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "io/flatbuf.h"
#include "io/tflite_schema.h"
#include "mopt/graph.h"
#include "mopt/tflite.h"

/* ------------------------------------------------------- raw model builder */

typedef struct raw {
    const char *ident;
    uint32_t version;
    int n_subgraphs;
    /* operator code 0 (used by operator 0) */
    int32_t op0_builtin;
    int8_t op0_deprecated;
    const char *op0_custom;
    /* operator 0 */
    uint32_t op0_opcode_index;
    uint8_t op0_opt_type;
    bool op0_custom_options;
    int32_t op0_input0;
    int32_t op0_output0;
    /* tensor 1, the FC weights */
    const char *w_name;
    int w_rank;
    int32_t w_dims[8];
    int8_t w_type;
    uint32_t w_buffer;
    uint32_t w_data_size;
    bool w_quant;
    int w_n_scale, w_n_zp, w_n_min, w_n_max;
    int32_t w_qdim;
    uint8_t w_details_type;
    bool w_sparse;
    int w_n_sig;
    uint32_t w_external_buffer;
    /* buffers, subgraph, metadata, signature */
    bool buf0_data;
    uint64_t buf1_offset;
    int32_t sg_input;
    uint32_t meta_buffer;
    uint32_t sig_tensor;
    uint32_t sig_subgraph;
} raw;

static raw raw_default(void)
{
    raw r;
    memset(&r, 0, sizeof r);
    r.ident = "TFL3";
    r.version = 3;
    r.n_subgraphs = 1;
    r.op0_builtin = MOPT_OP_FULLY_CONNECTED;
    r.op0_deprecated = MOPT_OP_FULLY_CONNECTED;
    r.op0_opt_type = TFL_OPT_FULLY_CONNECTED;
    r.op0_input0 = 0;
    r.op0_output0 = 3;
    r.w_name = "fc/w";
    r.w_rank = 2;
    r.w_dims[0] = 3;
    r.w_dims[1] = 4;
    r.w_type = MOPT_FLOAT32;
    r.w_buffer = 1;
    r.w_data_size = 48;
    r.meta_buffer = 3;
    r.sig_tensor = 0;
    return r;
}

static fb_ref i32_vec(fb_builder *b, const int32_t *v, uint32_t n)
{
    return fb_create_vec(b, v, n, 4, 4);
}

static fb_ref tensor(fb_builder *b, const char *name, int rank, const int32_t *dims, int type,
                     uint32_t buffer)
{
    fb_ref rn = fb_create_string(b, name, strlen(name));
    fb_ref rs = i32_vec(b, dims, (uint32_t)rank);
    fb_start_table(b);
    fb_add_ref(b, TFL_TENSOR_SHAPE, rs);
    fb_add_u8(b, TFL_TENSOR_TYPE, (uint8_t)type);
    fb_add_u32(b, TFL_TENSOR_BUFFER, buffer);
    fb_add_ref(b, TFL_TENSOR_NAME, rn);
    return fb_end_table(b);
}

static fb_ref weights_tensor(fb_builder *b, const raw *o)
{
    fb_ref rn = fb_create_string(b, o->w_name, strlen(o->w_name));
    fb_ref rs = i32_vec(b, o->w_dims, (uint32_t)o->w_rank);
    fb_ref rq = 0, rsp = 0, rsig = 0;
    if (o->w_quant) {
        float f[8] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
        int64_t z[8] = {0};
        fb_ref rmin = o->w_n_min ? fb_create_vec(b, f, (uint32_t)o->w_n_min, 4, 4) : 0;
        fb_ref rmax = o->w_n_max ? fb_create_vec(b, f, (uint32_t)o->w_n_max, 4, 4) : 0;
        fb_ref rsc = o->w_n_scale ? fb_create_vec(b, f, (uint32_t)o->w_n_scale, 4, 4) : 0;
        fb_ref rzp = o->w_n_zp ? fb_create_vec(b, z, (uint32_t)o->w_n_zp, 8, 8) : 0;
        fb_ref rdet = 0;
        if (o->w_details_type) {
            fb_start_table(b);
            rdet = fb_end_table(b);
        }
        fb_start_table(b);
        fb_add_ref(b, TFL_QUANT_MIN, rmin);
        fb_add_ref(b, TFL_QUANT_MAX, rmax);
        fb_add_ref(b, TFL_QUANT_SCALE, rsc);
        fb_add_ref(b, TFL_QUANT_ZERO_POINT, rzp);
        if (o->w_details_type) {
            fb_add_u8(b, TFL_QUANT_DETAILS_TYPE, o->w_details_type);
            fb_add_ref(b, TFL_QUANT_DETAILS, rdet);
        }
        fb_add_i32(b, TFL_QUANT_QUANTIZED_DIMENSION, o->w_qdim);
        rq = fb_end_table(b);
    }
    if (o->w_sparse) {
        int32_t order[2] = {0, 1};
        fb_ref ro = i32_vec(b, order, 2);
        fb_start_table(b);
        fb_add_ref(b, 0, ro);
        rsp = fb_end_table(b);
    }
    if (o->w_n_sig) {
        int32_t sig[8] = {-1, 4, 4, 4, 4, 4, 4, 4};
        rsig = i32_vec(b, sig, (uint32_t)o->w_n_sig);
    }
    fb_start_table(b);
    fb_add_ref(b, TFL_TENSOR_SHAPE, rs);
    fb_add_u8(b, TFL_TENSOR_TYPE, (uint8_t)o->w_type);
    fb_add_u32(b, TFL_TENSOR_BUFFER, o->w_buffer);
    fb_add_ref(b, TFL_TENSOR_NAME, rn);
    fb_add_ref(b, TFL_TENSOR_QUANTIZATION, rq);
    fb_add_ref(b, TFL_TENSOR_SPARSITY, rsp);
    fb_add_ref(b, TFL_TENSOR_SHAPE_SIGNATURE, rsig);
    if (o->w_external_buffer)
        fb_add_u32(b, TFL_TENSOR_EXTERNAL_BUFFER, o->w_external_buffer);
    return fb_end_table(b);
}

static fb_ref subgraph(fb_builder *b, const raw *o)
{
    int32_t d_in[2] = {1, 4}, d_b[1] = {3}, d_out[2] = {1, 3};
    fb_ref t[5];
    t[0] = tensor(b, "in", 2, d_in, MOPT_FLOAT32, 0);
    t[1] = weights_tensor(b, o);
    t[2] = tensor(b, "fc/b", 1, d_b, MOPT_FLOAT32, 2);
    t[3] = tensor(b, "fc/out", 2, d_out, MOPT_FLOAT32, 0);
    t[4] = tensor(b, "out", 2, d_out, MOPT_FLOAT32, 0);
    fb_ref tensors = fb_create_vec_refs(b, t, 5);

    /* operator 0: FULLY_CONNECTED (by default) */
    int32_t in0[3] = {o->op0_input0, 1, 2}, out0[1] = {o->op0_output0};
    fb_ref ri = i32_vec(b, in0, 3), ro = i32_vec(b, out0, 1);
    fb_ref rco = 0;
    if (o->op0_custom_options) {
        uint8_t blob[4] = {1, 2, 3, 4};
        rco = fb_create_vec(b, blob, 4, 1, 1);
    }
    fb_ref ropt = 0;
    if (o->op0_opt_type != 0) {
        fb_start_table(b);
        fb_add_u8(b, 0, MOPT_ACT_RELU); /* field 0 is an activation in FC options */
        ropt = fb_end_table(b);
    }
    fb_start_table(b);
    fb_add_u32(b, TFL_OP_OPCODE_INDEX, o->op0_opcode_index);
    fb_add_ref(b, TFL_OP_INPUTS, ri);
    fb_add_ref(b, TFL_OP_OUTPUTS, ro);
    if (ropt) {
        fb_add_u8(b, TFL_OP_BUILTIN_OPTIONS_TYPE, o->op0_opt_type);
        fb_add_ref(b, TFL_OP_BUILTIN_OPTIONS, ropt);
    }
    fb_add_ref(b, TFL_OP_CUSTOM_OPTIONS, rco);
    fb_ref op0 = fb_end_table(b);

    /* operator 1: RELU, no options */
    int32_t in1[1] = {3}, out1[1] = {4};
    ri = i32_vec(b, in1, 1);
    ro = i32_vec(b, out1, 1);
    fb_start_table(b);
    fb_add_u32(b, TFL_OP_OPCODE_INDEX, 1);
    fb_add_ref(b, TFL_OP_INPUTS, ri);
    fb_add_ref(b, TFL_OP_OUTPUTS, ro);
    fb_ref op1 = fb_end_table(b);
    fb_ref opsv[2] = {op0, op1};
    fb_ref ops = fb_create_vec_refs(b, opsv, 2);

    int32_t gin[1] = {o->sg_input}, gout[1] = {4};
    fb_ref rgi = i32_vec(b, gin, 1), rgo = i32_vec(b, gout, 1);
    fb_ref name = fb_create_string(b, "main", 4);
    fb_start_table(b);
    fb_add_ref(b, TFL_SUBGRAPH_TENSORS, tensors);
    fb_add_ref(b, TFL_SUBGRAPH_INPUTS, rgi);
    fb_add_ref(b, TFL_SUBGRAPH_OUTPUTS, rgo);
    fb_add_ref(b, TFL_SUBGRAPH_OPERATORS, ops);
    fb_add_ref(b, TFL_SUBGRAPH_NAME, name);
    return fb_end_table(b);
}

static fb_ref buffer(fb_builder *b, const uint8_t *data, uint32_t n, uint64_t offset)
{
    fb_ref rd = n ? fb_create_vec(b, data, n, 1, 16) : 0;
    fb_start_table(b);
    fb_add_ref(b, TFL_BUFFER_DATA, rd);
    if (offset) {
        fb_add_u64(b, TFL_BUFFER_OFFSET, offset);
        fb_add_u64(b, TFL_BUFFER_SIZE, 16);
    }
    return fb_end_table(b);
}

static uint8_t *build_raw(const raw *o, size_t *size)
{
    fb_builder b;
    fb_builder_init(&b);
    uint8_t data[512];
    for (int i = 0; i < (int)sizeof data; i++)
        data[i] = (uint8_t)(i * 13 + 5);
    fb_ref bufs[4];
    bufs[0] = buffer(&b, data, o->buf0_data ? 8 : 0, 0);
    bufs[1] = buffer(&b, data, o->w_data_size, o->buf1_offset);
    bufs[2] = buffer(&b, data, 12, 0);
    bufs[3] = buffer(&b, (const uint8_t *)"1.5.0\0\0\0", 8, 0);
    fb_ref buffers = fb_create_vec_refs(&b, bufs, 4);

    fb_ref sgs[2];
    for (int i = 0; i < o->n_subgraphs; i++)
        sgs[i] = subgraph(&b, o);
    fb_ref subgraphs = fb_create_vec_refs(&b, sgs, (uint32_t)o->n_subgraphs);

    fb_ref codes[2];
    fb_ref custom = o->op0_custom ? fb_create_string(&b, o->op0_custom, strlen(o->op0_custom)) : 0;
    fb_start_table(&b);
    fb_add_u8(&b, TFL_OPCODE_DEPRECATED_BUILTIN_CODE, (uint8_t)o->op0_deprecated);
    fb_add_ref(&b, TFL_OPCODE_CUSTOM_CODE, custom);
    fb_add_i32(&b, TFL_OPCODE_VERSION, 4);
    fb_add_i32(&b, TFL_OPCODE_BUILTIN_CODE, o->op0_builtin);
    codes[0] = fb_end_table(&b);
    fb_start_table(&b);
    fb_add_u8(&b, TFL_OPCODE_DEPRECATED_BUILTIN_CODE, MOPT_OP_RELU);
    fb_add_i32(&b, TFL_OPCODE_BUILTIN_CODE, MOPT_OP_RELU);
    codes[1] = fb_end_table(&b); /* version absent: default 1 */
    fb_ref opcodes = fb_create_vec_refs(&b, codes, 2);

    fb_ref mname = fb_create_string(&b, "min_runtime_version", 19);
    fb_start_table(&b);
    fb_add_ref(&b, TFL_METADATA_NAME, mname);
    fb_add_u32(&b, TFL_METADATA_BUFFER, o->meta_buffer);
    fb_ref md = fb_end_table(&b);
    fb_ref metadata = fb_create_vec_refs(&b, &md, 1);

    fb_ref n_in = fb_create_string(&b, "in", 2);
    fb_start_table(&b);
    fb_add_ref(&b, TFL_TENSORMAP_NAME, n_in);
    fb_add_u32(&b, TFL_TENSORMAP_TENSOR_INDEX, o->sig_tensor);
    fb_ref m_in = fb_end_table(&b);
    fb_ref v_in = fb_create_vec_refs(&b, &m_in, 1);
    fb_ref n_out = fb_create_string(&b, "out", 3);
    fb_start_table(&b);
    fb_add_ref(&b, TFL_TENSORMAP_NAME, n_out);
    fb_add_u32(&b, TFL_TENSORMAP_TENSOR_INDEX, 4);
    fb_ref m_out = fb_end_table(&b);
    fb_ref v_out = fb_create_vec_refs(&b, &m_out, 1);
    fb_ref key = fb_create_string(&b, "serving_default", 15);
    fb_start_table(&b);
    fb_add_ref(&b, TFL_SIGDEF_INPUTS, v_in);
    fb_add_ref(&b, TFL_SIGDEF_OUTPUTS, v_out);
    fb_add_ref(&b, TFL_SIGDEF_SIGNATURE_KEY, key);
    fb_add_u32(&b, TFL_SIGDEF_SUBGRAPH_INDEX, o->sig_subgraph);
    fb_ref sd = fb_end_table(&b);
    fb_ref sigs = fb_create_vec_refs(&b, &sd, 1);

    fb_ref desc = fb_create_string(&b, "hand-built", 10);
    fb_start_table(&b);
    fb_add_u32(&b, TFL_MODEL_VERSION, o->version);
    fb_add_ref(&b, TFL_MODEL_OPERATOR_CODES, opcodes);
    fb_add_ref(&b, TFL_MODEL_SUBGRAPHS, subgraphs);
    fb_add_ref(&b, TFL_MODEL_DESCRIPTION, desc);
    fb_add_ref(&b, TFL_MODEL_BUFFERS, buffers);
    fb_add_ref(&b, TFL_MODEL_METADATA, metadata);
    fb_add_ref(&b, TFL_MODEL_SIGNATURE_DEFS, sigs);
    fb_ref model = fb_end_table(&b);
    assert_true(fb_finish(&b, model, o->ident));
    uint8_t *out = fb_release(&b, size);
    assert_non_null(out);
    fb_builder_free(&b);
    return out;
}

/* ------------------------------------------------------------ assertions */

/* Reads data and checks the error contract; returns the status. */
static mopt_status read_expect_error(const uint8_t *data, size_t size, const char *name)
{
    mopt_error err;
    mopt_graph *g = (mopt_graph *)1;
    memset(&err, 0, sizeof err);
    mopt_status st = mopt_tflite_read_mem(data, size, name, &g, &err);
    if (st == MOPT_OK) {
        mopt_graph_free(g);
        fail_msg("%s: accepted", name);
    }
    assert_null(g);
    if (st != MOPT_ERR_BAD_INPUT && st != MOPT_ERR_UNSUPPORTED)
        fail_msg("%s: status %d (%s)", name, st, err.msg);
    assert_int_equal(err.status, st);
    assert_true(strlen(err.msg) > strlen(name) + 2);
    assert_null(strchr(err.msg, '\n'));
    assert_int_equal(strncmp(err.msg, name, strlen(name)), 0);
    assert_memory_equal(err.msg + strlen(name), ": ", 2);
    return st;
}

static void expect(const raw *o, mopt_status want, const char *msg_part)
{
    size_t size;
    uint8_t *data = build_raw(o, &size);
    mopt_error err;
    mopt_graph *g = NULL;
    mopt_status st = mopt_tflite_read_mem(data, size, "bad.tflite", &g, &err);
    if (st == MOPT_OK) {
        mopt_graph_free(g);
        fail_msg("accepted; expected '%s'", msg_part); /* leaks data: the test is over */
    }
    read_expect_error(data, size, "bad.tflite");
    if (getenv("MOPT_TEST_VERBOSE"))
        print_message("%s\n", err.msg);
    if (st != want || strstr(err.msg, msg_part) == NULL)
        fail_msg("got %d '%s'; expected %d '%s'", st, err.msg, want, msg_part);
    free(data);
}

/* ------------------------------------------------------------------ tests */

static void test_raw_valid(void **state)
{
    (void)state;
    raw o = raw_default();
    size_t size;
    uint8_t *data = build_raw(&o, &size);
    mopt_error err;
    mopt_graph *g = NULL;
    if (mopt_tflite_read_mem(data, size, "ok.tflite", &g, &err) != MOPT_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(g->n_tensors, 5);
    assert_string_equal(g->tensors[1].name, "fc/w");
    assert_int_equal(g->tensors[1].rank, 2);
    assert_int_equal(g->tensors[1].dims[1], 4);
    assert_int_equal(g->tensors[1].buffer, 1);
    assert_int_equal(g->n_buffers, 4);
    assert_int_equal(g->buffers[1].size, 48);
    assert_int_equal(g->buffers[1].data[1], 18);
    assert_int_equal(g->n_ops, 2);
    assert_int_equal(g->ops[0].type, MOPT_OP_FULLY_CONNECTED);
    assert_int_equal(g->ops[0].version, 4);
    assert_true(g->ops[0].has_options);
    assert_int_equal(g->ops[0].p.fc.act, MOPT_ACT_RELU);
    assert_int_equal(g->ops[1].type, MOPT_OP_RELU);
    assert_int_equal(g->ops[1].version, 1);
    assert_false(g->ops[1].has_options);
    assert_string_equal(g->name, "main");
    assert_string_equal(g->description, "hand-built");
    assert_int_equal(g->n_metadata, 1);
    assert_string_equal(g->metadata[0].name, "min_runtime_version");
    assert_int_equal(g->metadata[0].buffer, 3);
    assert_int_equal(g->n_signatures, 1);
    assert_string_equal(g->signatures[0].key, "serving_default");
    assert_int_equal(g->signatures[0].outputs[0].tensor, 4);
    mopt_graph_free(g);
    free(data);

    /* Files from before builtin_code existed only set the deprecated byte. */
    o.op0_builtin = 0;
    data = build_raw(&o, &size);
    assert_int_equal(mopt_tflite_read_mem(data, size, "old.tflite", &g, &err), MOPT_OK);
    assert_int_equal(g->ops[0].type, MOPT_OP_FULLY_CONNECTED);
    mopt_graph_free(g);
    free(data);

    /* Per-axis quantization along a dimension of matching size is fine. */
    o = raw_default();
    o.w_quant = true;
    o.w_n_scale = o.w_n_zp = 3;
    o.w_n_min = o.w_n_max = 1;
    data = build_raw(&o, &size);
    assert_int_equal(mopt_tflite_read_mem(data, size, "q.tflite", &g, &err), MOPT_OK);
    assert_int_equal(g->tensors[1].quant.n, 3);
    assert_int_equal(g->tensors[1].quant.n_minmax, 1);
    mopt_graph_free(g);
    free(data);
}

static void test_raw_rules(void **state)
{
    (void)state;
    raw o;
#define CASE(stmt, want, part)                                                           \
    do {                                                                                 \
        o = raw_default();                                                               \
        stmt;                                                                            \
        expect(&o, want, part);                                                          \
    } while (0)
    const mopt_status BAD = MOPT_ERR_BAD_INPUT, UNS = MOPT_ERR_UNSUPPORTED;

    CASE(o.ident = "TFL2", BAD, "bad.tflite: model: wrong file identifier \"TFL2\"");
    CASE(o.version = 2, UNS, "model: schema version 2");
    CASE(o.n_subgraphs = 2, UNS, "model: 2 subgraphs");
    CASE(o.n_subgraphs = 0, BAD, "model: no subgraph");
    CASE((o.op0_builtin = 126, o.op0_deprecated = 126), UNS,
         "bad.tflite: operator 0: unsupported operator BATCH_MATMUL (code 126)");
    CASE((o.op0_builtin = 150, o.op0_deprecated = 127), UNS, "unsupported operator GELU (code 150)");
    CASE((o.op0_builtin = 100000, o.op0_deprecated = 127), UNS,
         "unsupported operator unknown (code 100000)");
    CASE((o.op0_builtin = 32, o.op0_deprecated = 32, o.op0_custom = "MyOp"), UNS,
         "operator 0: unsupported operator CUSTOM 'MyOp'");
    CASE((o.op0_builtin = -5, o.op0_deprecated = -5), BAD, "negative builtin code");
    CASE(o.op0_opcode_index = 5, BAD, "operator 0: opcode_index 5 out of range (2 operator codes)");
    CASE(o.op0_opt_type = TFL_OPT_CONV2D, BAD,
         "operator 0 (FULLY_CONNECTED): builtin_options_type 1 does not match");
    CASE(o.op0_custom_options = true, UNS, "custom_options");
    CASE(o.op0_input0 = 77, BAD, "operator 0 (FULLY_CONNECTED): inputs[0]: tensor 77 out of range (5 tensors)");
    CASE(o.op0_input0 = -2, BAD, "inputs[0]: tensor -2 out of range");
    CASE(o.op0_output0 = -1, BAD, "outputs[0]: tensor -1 out of range");
    CASE((o.w_rank = 7, o.w_dims[2] = o.w_dims[3] = o.w_dims[4] = o.w_dims[5] = o.w_dims[6] = 1),
         UNS, "tensor 1 'fc/w': rank 7 exceeds the maximum of 6");
    CASE(o.w_dims[0] = -3, BAD, "tensor 1 'fc/w': dimension 0 is negative (-3)");
    CASE(o.w_type = 99, BAD, "unknown tensor type 99");
    CASE(o.w_type = -1, BAD, "unknown tensor type -1");
    CASE(o.w_type = 5, UNS, "tensor type STRING (5) is not supported");
    CASE(o.w_type = 17, UNS, "tensor type INT4 (17) is not supported");
    CASE(o.w_type = 10, UNS, "FLOAT64");
    CASE(o.w_buffer = 99, BAD, "bad.tflite: tensor 1 'fc/w': buffer 99 out of range (4 buffers)");
    CASE(o.w_data_size = 47, BAD, "buffer 1 holds 47 bytes but the shape needs 48");
    CASE(o.w_data_size = 96, BAD, "buffer 1 holds 96 bytes but the shape needs 48");
    CASE((o.w_quant = true, o.w_n_scale = 2, o.w_n_zp = 1), BAD, "2 scales but 1 zero points");
    CASE((o.w_quant = true, o.w_n_scale = 1, o.w_n_zp = 0), BAD, "1 scales but 0 zero points");
    CASE((o.w_quant = true, o.w_n_scale = 3, o.w_n_zp = 3, o.w_qdim = 1), BAD,
         "3 per-axis scales but dimension 1 has size 4");
    CASE((o.w_quant = true, o.w_n_scale = 3, o.w_n_zp = 3, o.w_qdim = 2), BAD,
         "quantized_dimension 2 out of range for rank 2");
    CASE((o.w_quant = true, o.w_n_scale = 3, o.w_n_zp = 3, o.w_qdim = -1), BAD,
         "quantized_dimension -1 out of range");
    CASE((o.w_quant = true, o.w_n_min = 1, o.w_n_max = 2), BAD, "1 min but 2 max");
    CASE((o.w_quant = true, o.w_details_type = 1), UNS, "quantization details");
    CASE(o.w_sparse = true, UNS, "tensor 1 'fc/w': sparse tensors are not supported");
    CASE(o.w_n_sig = 3, BAD, "shape_signature has 3 entries but rank is 2");
    CASE(o.w_external_buffer = 1, UNS, "external buffer 1");
    CASE(o.buf0_data = true, BAD, "buffer 0: must be the empty sentinel");
    CASE(o.buf1_offset = 100, UNS, "buffer 1: data stored outside the flatbuffer");
    CASE(o.sg_input = 50, BAD, "subgraph 0: inputs[0]: tensor 50 out of range (5 tensors)");
    CASE(o.meta_buffer = 9, BAD, "metadata 0: buffer 9 out of range (4 buffers)");
    CASE(o.sig_tensor = 9, BAD, "signature 0: inputs[0]: tensor 9 out of range");
    CASE(o.sig_subgraph = 1, BAD, "signature 0: subgraph_index 1 out of range");
    /* Names from the file cannot break the one-line message. */
    CASE((o.w_name = "a\001b\nc", o.w_buffer = 99), BAD, "tensor 1 'a?b?c': buffer 99");
#undef CASE
}

/* Byte offset of field `id` of a table, from its vtable. */
static uint32_t field_at(const uint8_t *d, const fb_table *t, unsigned id)
{
    uint32_t slot = t->vt + 4 + 2 * id;
    uint16_t off = (uint16_t)(d[slot] | (d[slot + 1] << 8));
    assert_true(off != 0);
    return t->pos + off;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void test_truncated(void **state)
{
    (void)state;
    raw o = raw_default();
    size_t size;
    uint8_t *data = build_raw(&o, &size);
    char name[64];
    for (size_t len = 0; len < size; len++) {
        /* An exact-size copy so ASan catches any read past `len`. */
        uint8_t *cut = malloc(len ? len : 1);
        assert_non_null(cut);
        memcpy(cut, data, len);
        snprintf(name, sizeof name, "cut%zu.tflite", len);
        read_expect_error(cut, len, name);
        free(cut);
    }
    free(data);
}

static void test_damaged_offsets(void **state)
{
    (void)state;
    raw o = raw_default();
    size_t size;
    uint8_t *good = build_raw(&o, &size);
    uint8_t *d = malloc(size);
    assert_non_null(d);
    fb_reader r;
    fb_table model, sg, t0;
    fb_vec v;
    assert_true(fb_reader_init(&r, good, size, "TFL3"));
    assert_true(fb_root(&r, &model));
    assert_true(fb_get_vec(&r, &model, TFL_MODEL_SUBGRAPHS, 4, 4, &v, NULL));
    assert_true(fb_vec_table(&r, &v, 0, &sg));
    assert_true(fb_get_vec(&r, &sg, TFL_SUBGRAPH_TENSORS, 4, 4, &v, NULL));
    uint32_t tensors_count_at = v.pos - 4;
    assert_true(fb_vec_table(&r, &v, 1, &t0));
    uint32_t name_field = field_at(good, &t0, TFL_TENSOR_NAME);
    uint32_t name_at = name_field + get32(good + name_field);
    uint32_t tensors_field = field_at(good, &sg, TFL_SUBGRAPH_TENSORS);
    uint32_t buffer_field = field_at(good, &t0, TFL_TENSOR_BUFFER);

    struct {
        const char *what;
        uint32_t at;
        uint32_t value;
        const char *part;
    } cases[] = {
        {"root past end", 0, (uint32_t)size + 100, "root offset"},
        {"root misaligned", 0, get32(good) + 2, "aligned"},
        {"root zero", 0, 0, "root offset"},
        {"vtable out of range", model.pos, 0x7fffff00u, "vtable"},
        {"vtable negative", model.pos, 0x80000000u, "vtable"},
        {"vtable misaligned", model.pos, get32(good + model.pos) + 1, "aligned"},
        {"tensor vector huge", tensors_count_at, 0x3fffffffu, "past end of file"},
        {"tensor vector max", tensors_count_at, 0xffffffffu, "past end of file"},
        {"vector offset misaligned", tensors_field, get32(good + tensors_field) + 1, "aligned"},
        {"vector offset past end", tensors_field, 0x7ffffff0u, "past end"},
        {"string length huge", name_at, 0xfffffff0u, "past end"},
        {"buffer index huge", buffer_field, 0xffffffffu, "out of range"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(d, good, size);
        put32(d + cases[i].at, cases[i].value);
        mopt_error err;
        mopt_graph *g = NULL;
        mopt_status st = mopt_tflite_read_mem(d, size, "dmg.tflite", &g, &err);
        if (st == MOPT_OK) {
            mopt_graph_free(g);
            fail_msg("%s: accepted", cases[i].what);
        }
        read_expect_error(d, size, "dmg.tflite");
        if (strstr(err.msg, cases[i].part) == NULL)
            fail_msg("%s: message '%s' lacks '%s'", cases[i].what, err.msg, cases[i].part);
    }

    /* Unterminated string: the NUL after the tensor name is overwritten. */
    memcpy(d, good, size);
    uint32_t len = get32(good + name_at);
    assert_int_equal(d[name_at + 4 + len], 0);
    d[name_at + 4 + len] = 'X';
    read_expect_error(d, size, "nonul.tflite");

    /* Wrong identifier. */
    memcpy(d, good, size);
    memcpy(d + 4, "\xff\n\0Z", 4);
    read_expect_error(d, size, "ident.tflite");

    free(d);
    free(good);
}

/* Random damage: never a crash or leak; a file that is still accepted must
 * be structurally sound, i.e. writable and readable again. */
static void test_random_mutations(void **state)
{
    (void)state;
    raw o = raw_default();
    o.w_quant = true;
    o.w_n_scale = o.w_n_zp = 3;
    size_t size;
    uint8_t *good = build_raw(&o, &size);
    uint8_t *d = malloc(size);
    assert_non_null(d);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int accepted = 0, refused = 0;
    const uint32_t interesting[] = {0, 1, 4, 0x7fffffffu, 0x80000000u, 0xffffffffu, 0xfffffffcu,
                                    (uint32_t)size, (uint32_t)size - 4, 0x10000u};
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(d, good, size);
        int n = 1 + (int)(x % 4);
        for (int k = 0; k < n; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            size_t at = (size_t)(x % size);
            if ((x >> 32) % 3 == 0 && at + 4 <= size)
                put32(d + (at & ~(size_t)3), interesting[(x >> 40) % 10]);
            else
                d[at] = (uint8_t)(x >> 24);
        }
        mopt_error err;
        mopt_graph *g = NULL;
        mopt_status st = mopt_tflite_read_mem(d, size, "mut.tflite", &g, &err);
        if (st == MOPT_OK) {
            uint8_t *out;
            size_t out_size;
            if (mopt_tflite_write_mem(g, &out, &out_size, &err) != MOPT_OK)
                fail_msg("iteration %d: accepted graph not writable: %s", iter, err.msg);
            mopt_graph *h = NULL;
            if (mopt_tflite_read_mem(out, out_size, "again", &h, &err) != MOPT_OK)
                fail_msg("iteration %d: rewritten model refused: %s", iter, err.msg);
            mopt_graph_free(h);
            free(out);
            mopt_graph_free(g);
            accepted++;
        } else {
            read_expect_error(d, size, "mut.tflite");
            refused++;
        }
    }
    print_message("random mutations: %d accepted, %d refused\n", accepted, refused);
    assert_true(refused > 1000);
    free(d);
    free(good);
}

/* The committed malformed files (tests/malformed/make_malformed.py): each is
 * refused for the reason its name gives, while the script's valid base model
 * is accepted (so the refusals are not an artefact of the script). */
static const struct {
    const char *file;
    const char *part;
} committed[] = {
    {"bad_identifier", "wrong file identifier"},
    {"buffer_size_mismatch", "buffer 1 holds 44 bytes but the shape needs 48"},
    {"custom_op", "unsupported operator CUSTOM 'MyCustomOp'"},
    {"empty", "too short"},
    {"external_buffer", "outside the flatbuffer"},
    {"graph_input_out_of_range", "inputs[0]: tensor 12 out of range"},
    {"metadata_buffer_out_of_range", "metadata 0: buffer 50 out of range"},
    {"negative_dim", "dimension 0 is negative"},
    {"op_input_out_of_range", "inputs[0]: tensor 40 out of range"},
    {"opcode_index_out_of_range", "opcode_index 7 out of range"},
    {"options_type_mismatch", "builtin_options_type 1 does not match"},
    {"quant_length_mismatch", "3 scales but 2 zero points"},
    {"rank7", "rank 7"},
    {"root_misaligned", "aligned"},
    {"root_out_of_range", "root offset"},
    {"schema_version_2", "schema version 2"},
    {"short_header", "too short"},
    {"sparse_tensor", "sparse"},
    {"string_unterminated", "not NUL-terminated"},
    {"tensor_buffer_out_of_range", "buffer 99 out of range (4 buffers)"},
    {"truncated_half", "past end of file"},
    {"truncated_last_byte", "past end of file"},
    {"two_subgraphs", "2 subgraphs"},
    {"unknown_tensor_type", "unknown tensor type 99"},
    {"unsupported_op_batch_matmul", "unsupported operator BATCH_MATMUL (code 126)"},
    {"vector_too_long", "past end of file"},
    {"vtable_out_of_range", "vtable"},
};

static void test_committed_files(void **state)
{
    (void)state;
    const char *dir = MOPT_SOURCE_DIR "/tests/malformed";
    char path[1024];
    mopt_error err;
    mopt_graph *g = NULL;
    snprintf(path, sizeof path, "%s/valid_base.tflite.ok", dir);
    mopt_status st = mopt_tflite_read_file(path, &g, &err);
    if (st == MOPT_ERR_IO) {
        print_message("no files in %s: %s\n", dir, err.msg);
        skip();
    }
    if (st != MOPT_OK)
        fail_msg("valid base refused: %s", err.msg);
    mopt_graph_free(g);

    /* Every .tflite there must be in the table, and be refused as it says. */
    int n = 0;
    DIR *dd = opendir(dir);
    assert_non_null(dd);
    struct dirent *e;
    while ((e = readdir(dd)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 8 || strcmp(e->d_name + len - 7, ".tflite") != 0)
            continue;
        const char *part = NULL;
        for (size_t i = 0; i < sizeof committed / sizeof committed[0]; i++)
            if (strlen(committed[i].file) == len - 7 &&
                strncmp(committed[i].file, e->d_name, len - 7) == 0)
                part = committed[i].part;
        if (part == NULL)
            fail_msg("%s: not listed in this test", e->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        g = NULL;
        st = mopt_tflite_read_file(path, &g, &err);
        if (st == MOPT_OK) {
            mopt_graph_free(g);
            fail_msg("%s: accepted", path);
        }
        if (st != MOPT_ERR_BAD_INPUT && st != MOPT_ERR_UNSUPPORTED)
            fail_msg("%s: status %d: %s", path, st, err.msg);
        if (strncmp(err.msg, path, strlen(path)) != 0 || strstr(err.msg, part) == NULL)
            fail_msg("%s: message '%s' lacks '%s'", path, err.msg, part);
        assert_null(strchr(err.msg, '\n'));
        n++;
    }
    closedir(dd);
    assert_int_equal(n, (int)(sizeof committed / sizeof committed[0]));
    print_message("%d committed malformed files refused\n", n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_valid),        cmocka_unit_test(test_raw_rules),
        cmocka_unit_test(test_truncated),        cmocka_unit_test(test_damaged_offsets),
        cmocka_unit_test(test_random_mutations), cmocka_unit_test(test_committed_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
