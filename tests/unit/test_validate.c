/* Unit tests for graph validation and shape inference (src/core/validate.c):
 * one test per rule, each checking the status and that the message names
 * the operator (index and type) or the tensor, and the rule. Expected
 * shapes are worked out by hand from TFLite's rules, not by the code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rt_testutil.h"

/* Validates g, expects status st and every given substring in the message. */
static void expect_fail(const mopt_graph *g, mopt_status st, const char *s1, const char *s2) {
    mopt_error e;
    mopt_error_clear(&e);
    mopt_status got = mopt_graph_validate(g, &e);
    if (got != st || (s1 && !strstr(e.msg, s1)) || (s2 && !strstr(e.msg, s2)))
        fprintf(stderr, "status %d (want %d), message: %s\n", got, st, e.msg);
    assert_int_equal(got, st);
    if (s1) assert_non_null(strstr(e.msg, s1));
    if (s2) assert_non_null(strstr(e.msg, s2));
}

static void expect_ok(const mopt_graph *g) {
    mopt_error e;
    mopt_error_clear(&e);
    mopt_status st = mopt_graph_validate(g, &e);
    if (st) fprintf(stderr, "unexpected: %s\n", e.msg);
    assert_int_equal(st, MOPT_OK);
}

/* x [1,5,5,3] -> CONV_2D (w [4,3,3,3], b [4], SAME, stride 1) -> y [1,5,5,4].
 * Tensor indices: x 0, w 1, b 2, y 3. */
static mopt_graph *conv_graph(void) {
    mopt_graph *g = mopt_graph_create();
    float w[4 * 3 * 3 * 3] = {0}, b[4] = {0};
    int x = t_f32(g, "x", 4, (int32_t[]){1, 5, 5, 3});
    int wt = t_cf32(g, "w", 4, (int32_t[]){4, 3, 3, 3}, w);
    int bt = t_cf32(g, "b", 1, (int32_t[]){4}, b);
    int y = t_f32(g, "y", 4, (int32_t[]){1, 5, 5, 4});
    add_op(g, MOPT_OP_CONV_2D, (int32_t[]){x, wt, bt}, 3, y);
    set_io1(g, x, y);
    return g;
}

/* Unary graph: x (shape) -> op -> y (yshape). */
static mopt_graph *unary_graph(mopt_op_type type, int rank, const int32_t *dims, int yrank,
                               const int32_t *ydims) {
    mopt_graph *g = mopt_graph_create();
    int x = t_f32(g, "x", rank, dims);
    int y = t_f32(g, "y", yrank, ydims);
    add_op(g, type, (int32_t[]){x}, 1, y);
    set_io1(g, x, y);
    return g;
}

static void test_valid_conv(void **state) {
    (void)state;
    mopt_graph *g = conv_graph();
    expect_ok(g);
    /* Bias is optional: -1, or only two inputs. */
    g->ops[0].inputs[2] = -1;
    expect_ok(g);
    g->ops[0].n_inputs = 2;
    expect_ok(g);
    mopt_graph_free(g);
}

static void test_conv_channel_mismatch(void **state) {
    (void)state;
    mopt_graph *g = conv_graph();
    float w[4 * 3 * 3 * 8] = {0};
    int w8 = t_cf32(g, "w8", 4, (int32_t[]){4, 3, 3, 8}, w);
    g->ops[0].inputs[1] = w8;
    expect_fail(g, MOPT_ERR_BAD_INPUT,
                "operator 0 (CONV_2D): filter input channels 8 do not match input channels 3",
                NULL);
    mopt_graph_free(g);
}

static void test_index_out_of_range(void **state) {
    (void)state;
    mopt_graph *g = conv_graph();
    g->ops[0].inputs[0] = 99;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (CONV_2D)", "out of range");
    g->ops[0].inputs[0] = 0;
    g->ops[0].outputs[0] = -3;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (CONV_2D)", "out of range");
    g->ops[0].outputs[0] = 3;
    g->outputs[0] = 17;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "graph output 0", "out of range");
    g->outputs[0] = 3;
    g->inputs[0] = -1;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "graph input 0", "out of range");
    mopt_graph_free(g);
}

static void test_arity(void **state) {
    (void)state;
    mopt_graph *g = conv_graph();
    g->ops[0].n_inputs = 1;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (CONV_2D)", "has 1 inputs, needs 2 to 3");
    mopt_graph_free(g);
    /* ADD needs two inputs; an omitted (-1) one is not allowed. */
    g = mopt_graph_create();
    int a = t_f32(g, "a", 1, (int32_t[]){4});
    int y = t_f32(g, "y", 1, (int32_t[]){4});
    add_op(g, MOPT_OP_ADD, (int32_t[]){a, -1}, 2, y);
    set_io1(g, a, y);
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (ADD)", "input 1 is omitted");
    g->ops[0].n_inputs = 1;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (ADD)", "has 1 inputs, needs 2");
    mopt_graph_free(g);
}

static void test_unsupported_op_type(void **state) {
    (void)state;
    mopt_graph *g = conv_graph();
    g->ops[0].type = (mopt_op_type)32; /* CUSTOM */
    expect_fail(g, MOPT_ERR_UNSUPPORTED, "operator 0", "not supported");
    mopt_graph_free(g);
}

static void test_conv_params(void **state) {
    (void)state;
    mopt_graph *g = conv_graph();
    g->ops[0].p.conv.stride_w = 0;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (CONV_2D)", "strides");
    g->ops[0].p.conv.stride_w = 1;
    g->ops[0].p.conv.dilation_h = 0;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (CONV_2D)", "dilation");
    g->ops[0].p.conv.dilation_h = 1;
    g->ops[0].p.conv.padding = (mopt_padding)2;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (CONV_2D)", "padding 2");
    g->ops[0].p.conv.padding = MOPT_PAD_SAME;
    g->ops[0].p.conv.act = (mopt_activation)9;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (CONV_2D)", "fused activation 9");
    g->ops[0].p.conv.act = MOPT_ACT_RELU6;
    expect_ok(g);
    mopt_graph_free(g);
}

static void test_conv_window_does_not_fit(void **state) {
    (void)state;
    mopt_graph *g = conv_graph();
    /* VALID 3x3 with dilation 3 spans 7 > 5. */
    g->ops[0].p.conv.padding = MOPT_PAD_VALID;
    g->ops[0].p.conv.dilation_h = g->ops[0].p.conv.dilation_w = 3;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (CONV_2D)", "does not fit");
    mopt_graph_free(g);
}

static void test_bias_shape(void **state) {
    (void)state;
    mopt_graph *g = conv_graph();
    float b[5] = {0};
    g->ops[0].inputs[2] = t_cf32(g, "b5", 1, (int32_t[]){5}, b);
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (CONV_2D)", "bias shape [5]");
    mopt_graph_free(g);
}

static void test_output_shape_mismatch(void **state) {
    (void)state;
    mopt_graph *g = conv_graph();
    g->tensors[3].dims[1] = 4;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (CONV_2D)",
                "has shape [1,4,5,4], inferred [1,5,5,4]");
    mopt_graph_free(g);
}

static void test_conv_shapes_by_hand(void **state) {
    (void)state;
    /* in 7x8, k 3x2, stride 2, dilation (2,1), SAME: out ceil(7/2)=4, ceil(8/2)=4.
     * VALID: eff k 5x2 -> ceil((7-5+1)/2)=2, ceil((8-2+1)/2)=4. */
    mopt_graph *g = mopt_graph_create();
    float w[6 * 3 * 2 * 2] = {0};
    int x = t_f32(g, "x", 4, (int32_t[]){2, 7, 8, 2});
    int wt = t_cf32(g, "w", 4, (int32_t[]){6, 3, 2, 2}, w);
    int y = t_f32(g, "y", 4, (int32_t[]){2, 4, 4, 6});
    int o = add_op(g, MOPT_OP_CONV_2D, (int32_t[]){x, wt}, 2, y);
    g->ops[o].p.conv.stride_h = g->ops[o].p.conv.stride_w = 2;
    g->ops[o].p.conv.dilation_h = 2;
    set_io1(g, x, y);
    expect_ok(g);
    g->ops[o].p.conv.padding = MOPT_PAD_VALID;
    int r[1];
    int32_t d[1][MOPT_MAX_DIMS];
    assert_int_equal(mopt_op_infer_shapes(g, o, r, d, NULL), MOPT_OK);
    assert_int_equal(r[0], 4);
    assert_int_equal(d[0][0], 2);
    assert_int_equal(d[0][1], 2);
    assert_int_equal(d[0][2], 4);
    assert_int_equal(d[0][3], 6);
    mopt_graph_free(g);
}

static void test_conv_out_size(void **state) {
    (void)state;
    int32_t pad = -1;
    /* SAME, in 5, k 3, s 2: out 3, total pad (3-1)*2+3-5 = 2 -> before 1. */
    assert_int_equal(mopt_conv_out_size(MOPT_PAD_SAME, 5, 3, 2, 1, &pad), 3);
    assert_int_equal(pad, 1);
    /* SAME, in 6, k 3, s 2: out 3, total (2*2+3-6)=1 -> before 0 (odd goes after). */
    assert_int_equal(mopt_conv_out_size(MOPT_PAD_SAME, 6, 3, 2, 1, &pad), 3);
    assert_int_equal(pad, 0);
    /* SAME, in 6, k 4, s 1: total 3 -> before 1. */
    assert_int_equal(mopt_conv_out_size(MOPT_PAD_SAME, 6, 4, 1, 1, &pad), 6);
    assert_int_equal(pad, 1);
    /* SAME with dilation 2, k 3 (eff 5), in 10, s 1: total 4 -> 2. */
    assert_int_equal(mopt_conv_out_size(MOPT_PAD_SAME, 10, 3, 1, 2, &pad), 10);
    assert_int_equal(pad, 2);
    /* VALID, in 10, k 3, dilation 2 (eff 5), s 2: ceil(6/2) = 3, no padding. */
    assert_int_equal(mopt_conv_out_size(MOPT_PAD_VALID, 10, 3, 2, 2, &pad), 3);
    assert_int_equal(pad, 0);
    /* VALID window larger than the input: no output. */
    assert_true(mopt_conv_out_size(MOPT_PAD_VALID, 4, 5, 1, 1, &pad) <= 0);
    /* Bad parameters never divide by zero. */
    assert_true(mopt_conv_out_size(MOPT_PAD_SAME, 4, 3, 0, 1, &pad) <= 0);
    assert_true(mopt_conv_out_size(MOPT_PAD_SAME, 4, 3, 1, 0, NULL) <= 0);
    assert_true(mopt_conv_out_size(MOPT_PAD_VALID, 100, 2147483647, 1, 2147483647, NULL) <= 0);
}

static void test_depthwise(void **state) {
    (void)state;
    mopt_graph *g = mopt_graph_create();
    float w[1 * 3 * 3 * 6] = {0}, b[6] = {0};
    int x = t_f32(g, "x", 4, (int32_t[]){1, 6, 6, 3});
    int wt = t_cf32(g, "w", 4, (int32_t[]){1, 3, 3, 6}, w);
    int bt = t_cf32(g, "b", 1, (int32_t[]){6}, b);
    int y = t_f32(g, "y", 4, (int32_t[]){1, 3, 3, 6});
    int o = add_op(g, MOPT_OP_DEPTHWISE_CONV_2D, (int32_t[]){x, wt, bt}, 3, y);
    g->ops[o].p.conv.stride_h = g->ops[o].p.conv.stride_w = 2;
    set_io1(g, x, y);
    expect_ok(g); /* multiplier 2 */
    g->tensors[x].dims[3] = 4;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (DEPTHWISE_CONV_2D)",
                "filter output channels 6 are not a multiple of input channels 4");
    g->tensors[x].dims[3] = 3;
    float w2[2 * 3 * 3 * 6] = {0};
    g->ops[o].inputs[1] = t_cf32(g, "w2", 4, (int32_t[]){2, 3, 3, 6}, w2);
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (DEPTHWISE_CONV_2D)", "dims[0] is 2");
    mopt_graph_free(g);
}

static void test_pool(void **state) {
    (void)state;
    /* 7x7, filter 2x2 stride 2 SAME -> 4x4. */
    mopt_graph *g =
        unary_graph(MOPT_OP_MAX_POOL_2D, 4, (int32_t[]){1, 7, 7, 5}, 4, (int32_t[]){1, 4, 4, 5});
    g->ops[0].p.pool.filter_h = g->ops[0].p.pool.filter_w = 2;
    g->ops[0].p.pool.stride_h = g->ops[0].p.pool.stride_w = 2;
    expect_ok(g);
    g->ops[0].p.pool.filter_w = 0;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (MAX_POOL_2D)", "filter 2x0");
    g->ops[0].p.pool.filter_w = 2;
    g->ops[0].p.pool.stride_h = -1;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (MAX_POOL_2D)", "strides");
    mopt_graph_free(g);
    g = unary_graph(MOPT_OP_AVERAGE_POOL_2D, 3, (int32_t[]){7, 7, 5}, 3, (int32_t[]){7, 7, 5});
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (AVERAGE_POOL_2D)", "rank 4");
    mopt_graph_free(g);
}

static mopt_graph *fc_graph(const int32_t *xd, int xr, int units, int depth, const int32_t *yd,
                            int yr) {
    mopt_graph *g = mopt_graph_create();
    float *w = calloc((size_t)(units * depth), sizeof(float));
    int x = t_f32(g, "x", xr, xd);
    int wt = t_cf32(g, "w", 2, (int32_t[]){units, depth}, w);
    int y = t_f32(g, "y", yr, yd);
    add_op(g, MOPT_OP_FULLY_CONNECTED, (int32_t[]){x, wt, -1}, 3, y);
    set_io1(g, x, y);
    free(w);
    return g;
}

static void test_fc(void **state) {
    (void)state;
    /* [2,3,4] with depth 4: batches = 24/4 = 6 -> [6,5]. */
    mopt_graph *g = fc_graph((int32_t[]){2, 3, 4}, 3, 5, 4, (int32_t[]){6, 5}, 2);
    expect_ok(g);
    g->ops[0].p.fc.keep_num_dims = true;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (FULLY_CONNECTED)", "inferred [2,3,5]");
    g->tensors[g->ops[0].outputs[0]].rank = 3;
    memcpy(g->tensors[g->ops[0].outputs[0]].dims, (int32_t[]){2, 3, 5}, 3 * sizeof(int32_t));
    expect_ok(g);
    g->ops[0].p.fc.weights_format = 1;
    expect_fail(g, MOPT_ERR_UNSUPPORTED, "operator 0 (FULLY_CONNECTED)", "weights_format 1");
    mopt_graph_free(g);
    /* 2x7 = 14 elements are not a multiple of depth 4. */
    g = fc_graph((int32_t[]){2, 7}, 2, 5, 4, (int32_t[]){3, 5}, 2);
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (FULLY_CONNECTED)", "not a multiple");
    mopt_graph_free(g);
}

static mopt_graph *binary_graph(mopt_op_type type, int ra, const int32_t *da, int rb,
                                const int32_t *db, int ry, const int32_t *dy) {
    mopt_graph *g = mopt_graph_create();
    int a = t_f32(g, "a", ra, da);
    int b = t_f32(g, "b", rb, db);
    int y = t_f32(g, "y", ry, dy);
    add_op(g, type, (int32_t[]){a, b}, 2, y);
    int32_t ins[2] = {a, b}, outs[1] = {y};
    mopt_graph_set_io(g, ins, 2, outs, 1);
    return g;
}

static void test_broadcast(void **state) {
    (void)state;
    /* [2,1,3] + [4,1] -> [2,4,3]. */
    mopt_graph *g = binary_graph(MOPT_OP_ADD, 3, (int32_t[]){2, 1, 3}, 2, (int32_t[]){4, 1}, 3,
                                 (int32_t[]){2, 4, 3});
    expect_ok(g);
    mopt_graph_free(g);
    /* 6-D with a scalar. */
    g = binary_graph(MOPT_OP_MUL, 6, (int32_t[]){1, 2, 1, 3, 1, 2}, 0, NULL, 6,
                     (int32_t[]){1, 2, 1, 3, 1, 2});
    expect_ok(g);
    mopt_graph_free(g);
    g = binary_graph(MOPT_OP_SUB, 2, (int32_t[]){2, 3}, 2, (int32_t[]){4, 3}, 2, (int32_t[]){4, 3});
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (SUB)",
                "input shapes [2,3] and [4,3] are not broadcast-compatible");
    mopt_graph_free(g);
}

static void test_concat(void **state) {
    (void)state;
    mopt_graph *g = binary_graph(MOPT_OP_CONCATENATION, 3, (int32_t[]){2, 3, 4}, 3,
                                 (int32_t[]){2, 3, 5}, 3, (int32_t[]){2, 3, 9});
    g->ops[0].p.concat.axis = -1;
    expect_ok(g);
    g->ops[0].p.concat.axis = 2;
    expect_ok(g);
    g->ops[0].p.concat.axis = 3;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (CONCATENATION)", "axis 3 out of range");
    g->ops[0].p.concat.axis = -4;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (CONCATENATION)", "axis -4 out of range");
    g->ops[0].p.concat.axis = 1;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (CONCATENATION)", "input 1 dimension 2 is 5");
    mopt_graph_free(g);
}

static mopt_graph *mean_graph(const int32_t *axes, int n_axes, bool keep, int ry,
                              const int32_t *dy) {
    mopt_graph *g = mopt_graph_create();
    int x = t_f32(g, "x", 4, (int32_t[]){2, 3, 4, 5});
    int a = t_ci32(g, "axes", 1, (int32_t[]){n_axes}, axes);
    int y = t_f32(g, "y", ry, dy);
    int o = add_op(g, MOPT_OP_MEAN, (int32_t[]){x, a}, 2, y);
    g->ops[o].p.reducer.keep_dims = keep;
    set_io1(g, x, y);
    return g;
}

static void test_mean(void **state) {
    (void)state;
    mopt_graph *g = mean_graph((int32_t[]){1, 2}, 2, true, 4, (int32_t[]){2, 1, 1, 5});
    expect_ok(g);
    mopt_graph_free(g);
    /* Negative and duplicate axes: -1 is 3; {3, -1, 0} removes dims 0 and 3. */
    g = mean_graph((int32_t[]){3, -1, 0}, 3, false, 2, (int32_t[]){3, 4});
    expect_ok(g);
    mopt_graph_free(g);
    g = mean_graph((int32_t[]){4}, 1, false, 3, (int32_t[]){2, 3, 4});
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (MEAN)", "axis 4 out of range");
    mopt_graph_free(g);
    /* Axes must be a constant. */
    g = mean_graph((int32_t[]){1}, 1, false, 3, (int32_t[]){2, 4, 5});
    g->tensors[1].buffer = 0;
    int32_t ins[2] = {0, 1}, outs[1] = {2};
    mopt_graph_set_io(g, ins, 2, outs, 1);
    expect_fail(g, MOPT_ERR_UNSUPPORTED, "operator 0 (MEAN)", "axes (tensor 1) must be constant");
    mopt_graph_free(g);
}

static mopt_graph *pad_graph(const int32_t *pads, int rows, const int32_t *dy) {
    mopt_graph *g = mopt_graph_create();
    int x = t_f32(g, "x", 3, (int32_t[]){2, 3, 4});
    int p = t_ci32(g, "paddings", 2, (int32_t[]){rows, 2}, pads);
    int y = t_f32(g, "y", 3, dy);
    add_op(g, MOPT_OP_PAD, (int32_t[]){x, p}, 2, y);
    set_io1(g, x, y);
    return g;
}

static void test_pad(void **state) {
    (void)state;
    mopt_graph *g = pad_graph((int32_t[]){0, 1, 2, 0, 1, 3}, 3, (int32_t[]){3, 5, 8});
    expect_ok(g);
    mopt_graph_free(g);
    g = pad_graph((int32_t[]){0, 1, -2, 0, 1, 3}, 3, (int32_t[]){3, 1, 8});
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (PAD)", "paddings of dimension 1 are (-2,0)");
    mopt_graph_free(g);
    g = pad_graph((int32_t[]){0, 1, 2, 0}, 2, (int32_t[]){3, 5, 4});
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (PAD)", "paddings shape [2,2] must be [3,2]");
    mopt_graph_free(g);
}

static mopt_graph *transpose_graph(const int32_t *perm, const int32_t *dy) {
    mopt_graph *g = mopt_graph_create();
    int x = t_f32(g, "x", 3, (int32_t[]){2, 3, 4});
    int p = t_ci32(g, "perm", 1, (int32_t[]){3}, perm);
    int y = t_f32(g, "y", 3, dy);
    add_op(g, MOPT_OP_TRANSPOSE, (int32_t[]){x, p}, 2, y);
    set_io1(g, x, y);
    return g;
}

static void test_transpose(void **state) {
    (void)state;
    mopt_graph *g = transpose_graph((int32_t[]){2, 0, 1}, (int32_t[]){4, 2, 3});
    expect_ok(g);
    mopt_graph_free(g);
    g = transpose_graph((int32_t[]){2, 0, 2}, (int32_t[]){4, 2, 4});
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (TRANSPOSE)", "not a permutation");
    mopt_graph_free(g);
}

static mopt_graph *reshape_graph(const int32_t *shape, int n, int ry, const int32_t *dy) {
    mopt_graph *g = mopt_graph_create();
    int x = t_f32(g, "x", 3, (int32_t[]){2, 3, 4});
    int y = t_f32(g, "y", ry, dy);
    if (shape) {
        int s = t_ci32(g, "shape", 1, (int32_t[]){n}, shape);
        add_op(g, MOPT_OP_RESHAPE, (int32_t[]){x, s}, 2, y);
    } else {
        add_op(g, MOPT_OP_RESHAPE, (int32_t[]){x}, 1, y);
    }
    set_io1(g, x, y);
    return g;
}

static void test_reshape(void **state) {
    (void)state;
    mopt_graph *g = reshape_graph((int32_t[]){-1, 6}, 2, 2, (int32_t[]){4, 6});
    expect_ok(g);
    mopt_graph_free(g);
    g = reshape_graph((int32_t[]){5, 5}, 2, 2, (int32_t[]){5, 5});
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (RESHAPE)",
                "new shape has 25 elements, input has 24");
    mopt_graph_free(g);
    g = reshape_graph((int32_t[]){-1, -1}, 2, 2, (int32_t[]){4, 6});
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (RESHAPE)", "more than one -1");
    mopt_graph_free(g);
    /* From the options when there is no shape tensor. */
    g = reshape_graph(NULL, 0, 1, (int32_t[]){24});
    g->ops[0].p.reshape.n_new_shape = 1;
    g->ops[0].p.reshape.new_shape[0] = 24;
    expect_ok(g);
    g->ops[0].p.reshape.n_new_shape = -1;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (RESHAPE)", "no new shape");
    mopt_graph_free(g);
}

static void test_softmax_and_unary(void **state) {
    (void)state;
    mopt_graph *g = unary_graph(MOPT_OP_SOFTMAX, 2, (int32_t[]){3, 7}, 2, (int32_t[]){3, 7});
    expect_ok(g);
    g->ops[0].p.softmax.beta = NAN;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (SOFTMAX)", "beta");
    mopt_graph_free(g);
    g = unary_graph(MOPT_OP_HARD_SWISH, 2, (int32_t[]){3, 7}, 2, (int32_t[]){7, 3});
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (HARD_SWISH)", "inferred [3,7]");
    mopt_graph_free(g);
}

static void test_producer_order(void **state) {
    (void)state;
    /* x -> RELU -> a -> RELU -> y, ops stored in the wrong order. */
    mopt_graph *g = mopt_graph_create();
    int x = t_f32(g, "x", 1, (int32_t[]){4});
    int a = t_f32(g, "a", 1, (int32_t[]){4});
    int y = t_f32(g, "y", 1, (int32_t[]){4});
    add_op(g, MOPT_OP_RELU, (int32_t[]){a}, 1, y);
    add_op(g, MOPT_OP_RELU, (int32_t[]){x}, 1, a);
    set_io1(g, x, y);
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (RELU)",
                "input 0 (tensor 1 'a') is not a graph input, a constant or the output of an "
                "earlier operator");
    mopt_graph_free(g);
}

static void test_produced_twice(void **state) {
    (void)state;
    mopt_graph *g = mopt_graph_create();
    int x = t_f32(g, "x", 1, (int32_t[]){4});
    int y = t_f32(g, "y", 1, (int32_t[]){4});
    add_op(g, MOPT_OP_RELU, (int32_t[]){x}, 1, y);
    add_op(g, MOPT_OP_RELU6, (int32_t[]){x}, 1, y);
    set_io1(g, x, y);
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 1 (RELU6)",
                "output 0 (tensor 1 'y') is already produced by operator 0");
    /* Writing a graph input is the same violation. */
    g->ops[1].outputs[0] = x;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 1 (RELU6)", "is a graph input");
    mopt_graph_free(g);
}

static void test_constants_as_io(void **state) {
    (void)state;
    mopt_graph *g = mopt_graph_create();
    float c[4] = {1, 2, 3, 4};
    int x = t_f32(g, "x", 1, (int32_t[]){4});
    int k = t_cf32(g, "k", 1, (int32_t[]){4}, c);
    add_op(g, MOPT_OP_RELU, (int32_t[]){x}, 1, k);
    set_io1(g, x, k);
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (RELU)",
                "output 0 (tensor 1 'k') is a constant");
    g->ops[0].outputs[0] = x;
    g->inputs[0] = k;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "tensor 1 'k'", "graph input 0 is a constant");
    mopt_graph_free(g);
    g = mopt_graph_create();
    x = t_f32(g, "x", 1, (int32_t[]){4});
    int y = t_f32(g, "y", 1, (int32_t[]){4});
    add_op(g, MOPT_OP_RELU, (int32_t[]){x}, 1, y);
    set_io1(g, x, y);
    g->tensors[y].is_variable = true;
    expect_fail(g, MOPT_ERR_UNSUPPORTED, "tensor 1 'y'", "variable");
    mopt_graph_free(g);
}

static void test_graph_output_not_produced(void **state) {
    (void)state;
    mopt_graph *g = mopt_graph_create();
    int x = t_f32(g, "x", 1, (int32_t[]){4});
    int y = t_f32(g, "y", 1, (int32_t[]){4});
    int z = t_f32(g, "z", 1, (int32_t[]){4});
    add_op(g, MOPT_OP_RELU, (int32_t[]){x}, 1, y);
    set_io1(g, x, z);
    expect_fail(g, MOPT_ERR_BAD_INPUT, "tensor 2 'z'", "neither produced");
    /* A constant output is fine. */
    float c[4] = {1, 2, 3, 4};
    g->outputs[0] = t_cf32(g, "c", 1, (int32_t[]){4}, c);
    expect_ok(g);
    mopt_graph_free(g);
}

static void test_tensor_rules(void **state) {
    (void)state;
    mopt_graph *g = conv_graph();
    /* Buffer size must equal the shape's byte size. */
    g->tensors[2].dims[0] = 5; /* bias buffer holds 4 floats */
    expect_fail(g, MOPT_ERR_BAD_INPUT, "tensor 2 'b'", "holds 16 bytes, shape needs 20");
    g->tensors[2].dims[0] = 4;
    g->tensors[0].dims[2] = -5;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "tensor 0 'x'", "negative");
    g->tensors[0].dims[2] = 5;
    g->tensors[0].rank = 7;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "tensor 0 'x'", "rank 7");
    g->tensors[0].rank = 4;
    g->tensors[1].buffer = 1000;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "tensor 1 'w'", "buffer index 1000");
    g->tensors[1].buffer = 1;
    g->tensors[0].dtype = MOPT_STRING;
    expect_fail(g, MOPT_ERR_UNSUPPORTED, "tensor 0 'x'", "string");
    g->tensors[0].dtype = MOPT_FLOAT32;
    expect_ok(g);
    mopt_graph_free(g);
}

static void test_quant_params(void **state) {
    (void)state;
    mopt_graph *g = conv_graph();
    float sc[3] = {0.1f, 0.2f, 0.3f};
    int64_t zp[3] = {0, 0, 0};
    /* Per-axis on the weights: 3 scales for 4 output channels. */
    assert_int_equal(mopt_tensor_set_quant(&g->tensors[1], 3, sc, zp, 0), MOPT_OK);
    expect_fail(g, MOPT_ERR_BAD_INPUT, "tensor 1 'w'", "3 quantization scales, dimension 0 has 4");
    g->tensors[1].quant.axis = 5;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "tensor 1 'w'", "quantized dimension 5");
    mopt_quant_clear(&g->tensors[1].quant);
    expect_ok(g);
    mopt_graph_free(g);
}

static void test_dtypes(void **state) {
    (void)state;
    /* ADD float32 + int8 */
    mopt_graph *g =
        binary_graph(MOPT_OP_ADD, 1, (int32_t[]){4}, 1, (int32_t[]){4}, 1, (int32_t[]){4});
    g->tensors[1].dtype = MOPT_INT8;
    set_quant1(g, 1, 0.5f, 0);
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (ADD)", "input 1 dtype int8");
    mopt_graph_free(g);
    /* int8 conv with float weights. */
    g = conv_graph();
    g->tensors[0].dtype = MOPT_INT8;
    expect_fail(g, MOPT_ERR_UNSUPPORTED, "operator 0 (CONV_2D)", "input int8, weights float32");
    mopt_graph_free(g);
    /* int8 activations need quantization parameters. */
    g = unary_graph(MOPT_OP_RELU, 1, (int32_t[]){4}, 1, (int32_t[]){4});
    g->tensors[0].dtype = g->tensors[1].dtype = MOPT_INT8;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "operator 0 (RELU)", "no quantization parameters");
    set_quant1(g, 0, 0.1f, -3);
    set_quant1(g, 1, 0.1f, -3);
    expect_ok(g);
    g->tensors[1].quant.zero_point[0] = 300;
    expect_fail(g, MOPT_ERR_BAD_INPUT, "tensor 1 'y'", "zero point 300 out of range for int8");
    mopt_graph_free(g);
}

static void test_float16_and_quantize_chain(void **state) {
    (void)state;
    /* float16 weights -> DEQUANTIZE -> CONV_2D; float -> QUANTIZE int8 ->
     * DEQUANTIZE -> float. */
    mopt_graph *g = mopt_graph_create();
    uint16_t wh[2 * 1 * 1 * 3] = {0x3C00, 0, 0, 0, 0x3C00, 0};
    int x = t_f32(g, "x", 4, (int32_t[]){1, 2, 2, 3});
    int w16 = t_const(g, "w16", MOPT_FLOAT16, 4, (int32_t[]){2, 1, 1, 3}, wh);
    int w = t_f32(g, "w", 4, (int32_t[]){2, 1, 1, 3});
    int c = t_f32(g, "c", 4, (int32_t[]){1, 2, 2, 2});
    int q = t_act(g, "q", MOPT_INT8, 4, (int32_t[]){1, 2, 2, 2});
    int y = t_f32(g, "y", 4, (int32_t[]){1, 2, 2, 2});
    set_quant1(g, q, 0.05f, 3);
    add_op(g, MOPT_OP_DEQUANTIZE, (int32_t[]){w16}, 1, w);
    add_op(g, MOPT_OP_CONV_2D, (int32_t[]){x, w}, 2, c);
    add_op(g, MOPT_OP_QUANTIZE, (int32_t[]){c}, 1, q);
    add_op(g, MOPT_OP_DEQUANTIZE, (int32_t[]){q}, 1, y);
    set_io1(g, x, y);
    expect_ok(g);
    /* float16 anywhere else is refused. */
    g->tensors[c].dtype = MOPT_FLOAT16;
    expect_fail(g, MOPT_ERR_UNSUPPORTED, "operator 1 (CONV_2D)", "float16");
    g->tensors[c].dtype = MOPT_FLOAT32;
    /* QUANTIZE to float is not a quantization. */
    g->tensors[q].dtype = MOPT_FLOAT32;
    expect_fail(g, MOPT_ERR_UNSUPPORTED, "operator 2 (QUANTIZE)", "output (tensor 4)");
    mopt_graph_free(g);
}

static void test_infer_api(void **state) {
    (void)state;
    mopt_graph *g = conv_graph();
    int r[1];
    int32_t d[1][MOPT_MAX_DIMS];
    mopt_error e;
    assert_int_equal(mopt_op_infer_shapes(g, 5, r, d, &e), MOPT_ERR_ARG);
    assert_int_equal(mopt_op_infer_shapes(NULL, 0, r, d, &e), MOPT_ERR_ARG);
    assert_int_equal(mopt_op_infer_shapes(g, 0, r, d, &e), MOPT_OK);
    assert_int_equal(r[0], 4);
    assert_int_equal(d[0][3], 4);
    assert_int_equal(mopt_graph_validate(NULL, &e), MOPT_ERR_ARG);
    mopt_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_conv),
        cmocka_unit_test(test_conv_channel_mismatch),
        cmocka_unit_test(test_index_out_of_range),
        cmocka_unit_test(test_arity),
        cmocka_unit_test(test_unsupported_op_type),
        cmocka_unit_test(test_conv_params),
        cmocka_unit_test(test_conv_window_does_not_fit),
        cmocka_unit_test(test_bias_shape),
        cmocka_unit_test(test_output_shape_mismatch),
        cmocka_unit_test(test_conv_shapes_by_hand),
        cmocka_unit_test(test_conv_out_size),
        cmocka_unit_test(test_depthwise),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_fc),
        cmocka_unit_test(test_broadcast),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_mean),
        cmocka_unit_test(test_pad),
        cmocka_unit_test(test_transpose),
        cmocka_unit_test(test_reshape),
        cmocka_unit_test(test_softmax_and_unary),
        cmocka_unit_test(test_producer_order),
        cmocka_unit_test(test_produced_twice),
        cmocka_unit_test(test_constants_as_io),
        cmocka_unit_test(test_graph_output_not_produced),
        cmocka_unit_test(test_tensor_rules),
        cmocka_unit_test(test_quant_params),
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_float16_and_quantize_chain),
        cmocka_unit_test(test_infer_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
