/* Unit tests for the integer and hybrid kernels (src/ops/q_*.c).
 *
 * Each test builds a one-operator graph and runs the kernel from its table
 * directly (prepare + eval, as the interpreter does), so the tests do not
 * depend on the registry. Expected values are derived by hand next to each
 * case from the reference kernels' arithmetic (docs/INTEGER_KERNELS.md);
 * none is produced by the code under test. Whole-model bit-exactness
 * against LiteRT is tests/interop/test_int_bitexact.py.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ops/q_ops.h"
#include "rt_testutil.h"

/* ---- harness ---- */

static const mopt_kernel *find_q(const mopt_graph *g, const mopt_op *op) {
    static const struct {
        const mopt_kernel *k;
        const size_t *n;
    } T[] = {
        {mopt_q_conv_kernels, &mopt_q_conv_kernels_n},
        {mopt_q_fc_kernels, &mopt_q_fc_kernels_n},
        {mopt_q_hybrid_kernels, &mopt_q_hybrid_kernels_n},
        {mopt_q_pool_kernels, &mopt_q_pool_kernels_n},
        {mopt_q_elementwise_kernels, &mopt_q_elementwise_kernels_n},
        {mopt_q_activation_kernels, &mopt_q_activation_kernels_n},
        {mopt_q_softmax_kernels, &mopt_q_softmax_kernels_n},
        {mopt_q_shape_kernels, &mopt_q_shape_kernels_n},
        {mopt_q_reduce_kernels, &mopt_q_reduce_kernels_n},
        {mopt_q_quantize_kernels, &mopt_q_quantize_kernels_n},
    };
    for (size_t t = 0; t < sizeof T / sizeof T[0]; t++)
        for (size_t i = 0; i < *T[t].n; i++)
            if (T[t].k[i].op == op->type && T[t].k[i].match(g, op)) return &T[t].k[i];
    return NULL;
}

/* Runs op 0 of g: `ins` holds the data of the non-constant inputs in input
 * order, out receives output 0. Returns the prepare / eval status. */
static mopt_status run_q(const mopt_graph *g, mopt_rounding r, const void *const *ins, void *out,
                         mopt_error *err) {
    const mopt_op *op = &g->ops[0];
    const mopt_kernel *k = find_q(g, op);
    if (!k) return mopt_error_set(err, MOPT_ERR_UNSUPPORTED, "no integer kernel");
    void **data = calloc((size_t)g->n_tensors, sizeof *data);
    assert_non_null(data);
    for (int t = 0; t < g->n_tensors; t++)
        if (mopt_tensor_is_constant(g, t)) data[t] = g->buffers[g->tensors[t].buffer].data;
    mopt_kernel_ctx c;
    memset(&c, 0, sizeof c);
    c.g = g;
    c.op = op;
    c.data = data;
    c.num_threads = 1;
    c.rounding = r;
    mopt_kernel_plan plan;
    memset(&plan, 0, sizeof plan);
    mopt_status st = k->prepare(&c, &plan, err);
    void *scratch = NULL;
    if (!st) {
        int j = 0;
        for (int i = 0; i < op->n_inputs; i++)
            if (op->inputs[i] >= 0 && !data[op->inputs[i]]) data[op->inputs[i]] = (void *)ins[j++];
        data[op->outputs[0]] = out;
        scratch = plan.scratch_bytes ? malloc(plan.scratch_bytes) : NULL;
        st = k->eval(&c, plan.state, scratch, err);
    }
    free(scratch);
    if (k->free_state) k->free_state(plan.state);
    free(data);
    return st;
}

static int t_q(mopt_graph *g, mopt_dtype dt, int rank, const int32_t *dims, float s, int64_t zp) {
    int t = t_act(g, "t", dt, rank, dims);
    set_quant1(g, t, s, zp);
    return t;
}

static int t_cq(mopt_graph *g, mopt_dtype dt, int rank, const int32_t *dims, const void *data,
                int nq, const float *s, int32_t axis) {
    int t = t_const(g, "w", dt, rank, dims, data);
    int64_t zp[64] = {0};
    assert_true(nq <= 64);
    assert_int_equal(mopt_tensor_set_quant(&g->tensors[t], nq, s, zp, axis), MOPT_OK);
    return t;
}

/* ---- CONV_2D / DEPTHWISE ---- */

/* 2x2 image of q = 5 with zero point 3 (real 2), 3x3 all-ones filter
 * (scale 1), SAME padding, all scales 1: every output sees the 4 in-image
 * taps, acc = 4 * (5 - 3) = 8. Padding with 0 instead of the zero point
 * would give 4*2 + 5*(0 - 3) = -7. */
static void test_conv_pads_with_input_zero_point(void **state) {
    (void)state;
    mopt_graph *g = mopt_graph_create();
    int32_t xd[4] = {1, 2, 2, 1}, wd[4] = {1, 3, 3, 1}, bd[1] = {1};
    int8_t w[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    int32_t b[1] = {0};
    float ws = 1.0f, bs = 1.0f;
    int x = t_q(g, MOPT_INT8, 4, xd, 1.0f, 3);
    int wt = t_cq(g, MOPT_INT8, 4, wd, w, 1, &ws, 0);
    int bt = t_cq(g, MOPT_INT32, 1, bd, b, 1, &bs, 0);
    int y = t_q(g, MOPT_INT8, 4, xd, 1.0f, -1);
    int32_t ins[3] = {x, wt, bt};
    int oi = add_op(g, MOPT_OP_CONV_2D, ins, 3, y);
    g->ops[oi].p.conv.padding = MOPT_PAD_SAME;
    g->ops[oi].p.conv.stride_h = g->ops[oi].p.conv.stride_w = 1;
    int8_t in[4] = {5, 5, 5, 5}, out[4];
    const void *ip[1] = {in};
    mopt_error e;
    assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, out, &e), MOPT_OK);
    for (int i = 0; i < 4; i++) assert_int_equal(out[i], 8 - 1); /* + output zero point -1 */
    mopt_graph_free(g);
}

/* 1x1 conv, 2 output channels with per-channel scales {0.5, 0.25}, input
 * scale 1 (zp 0), output scale 1 (zp 0), bias {1, -2}, input x = 7,
 * weights {1, 2}:
 *   ch0: acc = 7 + 1 = 8, eff 0.5 -> 4
 *   ch1: acc = 14 - 2 = 12, eff 0.25 -> 3
 * and with x = 127, weights {127, 127}, bias 0: ch0 acc 16129 * 0.5 =
 * 8064.5 -> saturates at 127; fused RELU6 (zp 0, scale 1) caps at 6. */
static void run_conv_1x1(int8_t x, const int8_t *w2, const int32_t *b2, mopt_activation act,
                         int8_t *out) {
    mopt_graph *g = mopt_graph_create();
    int32_t xd[4] = {1, 1, 1, 1}, wd[4] = {2, 1, 1, 1}, bd[1] = {2}, yd[4] = {1, 1, 1, 2};
    float ws[2] = {0.5f, 0.25f}, bs[2] = {0.5f, 0.25f};
    int xt = t_q(g, MOPT_INT8, 4, xd, 1.0f, 0);
    int wt = t_cq(g, MOPT_INT8, 4, wd, w2, 2, ws, 0);
    int bt = t_cq(g, MOPT_INT32, 1, bd, b2, 2, bs, 0);
    int y = t_q(g, MOPT_INT8, 4, yd, 1.0f, 0);
    int32_t ins[3] = {xt, wt, bt};
    int oi = add_op(g, MOPT_OP_CONV_2D, ins, 3, y);
    g->ops[oi].p.conv.padding = MOPT_PAD_VALID;
    g->ops[oi].p.conv.stride_h = g->ops[oi].p.conv.stride_w = 1;
    g->ops[oi].p.conv.act = act;
    const void *ip[1] = {&x};
    mopt_error e;
    assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, out, &e), MOPT_OK);
    mopt_graph_free(g);
}

static void test_conv_per_channel_and_saturation(void **state) {
    (void)state;
    int8_t w[2] = {1, 2}, out[2];
    int32_t b[2] = {1, -2};
    run_conv_1x1(7, w, b, MOPT_ACT_NONE, out);
    assert_int_equal(out[0], 4);
    assert_int_equal(out[1], 3);
    int8_t wbig[2] = {127, 127};
    int32_t b0[2] = {0, 0};
    run_conv_1x1(127, wbig, b0, MOPT_ACT_NONE, out);
    assert_int_equal(out[0], 127);
    assert_int_equal(out[1], 127);
    run_conv_1x1(-128, wbig, b0, MOPT_ACT_NONE, out);
    assert_int_equal(out[0], -128);
    run_conv_1x1(127, wbig, b0, MOPT_ACT_RELU6, out);
    assert_int_equal(out[0], 6);
    run_conv_1x1(-128, wbig, b0, MOPT_ACT_RELU6, out);
    assert_int_equal(out[0], 0);
}

/* Depthwise, 2 input channels, multiplier 2, 1x1 filter, odd 3x1 image:
 * output channel oc = ic * 2 + m uses input channel ic. Weights
 * {1, 2, 3, 4}, input pixels (ic0, ic1) = (1, 10), (2, 20), (3, 30),
 * all scales 1, zp 0: outputs (1, 2, 30, 40), (2, 4, 60, 80), (3, 6, 90,
 * 120). */
static void test_depthwise_multiplier(void **state) {
    (void)state;
    mopt_graph *g = mopt_graph_create();
    int32_t xd[4] = {1, 3, 1, 2}, wd[4] = {1, 1, 1, 4}, yd[4] = {1, 3, 1, 4};
    int8_t w[4] = {1, 2, 3, 4};
    float ws[4] = {1, 1, 1, 1};
    int xt = t_q(g, MOPT_INT8, 4, xd, 1.0f, 0);
    int wt = t_cq(g, MOPT_INT8, 4, wd, w, 4, ws, 3);
    int y = t_q(g, MOPT_INT8, 4, yd, 1.0f, 0);
    int32_t ins[2] = {xt, wt};
    int oi = add_op(g, MOPT_OP_DEPTHWISE_CONV_2D, ins, 2, y);
    g->ops[oi].p.conv.padding = MOPT_PAD_VALID;
    g->ops[oi].p.conv.stride_h = g->ops[oi].p.conv.stride_w = 1;
    g->ops[oi].p.conv.depth_multiplier = 2;
    int8_t in[6] = {1, 10, 2, 20, 3, 30}, out[12];
    const int8_t want[12] = {1, 2, 30, 40, 2, 4, 60, 80, 3, 6, 90, 120};
    const void *ip[1] = {in};
    mopt_error e;
    assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, out, &e), MOPT_OK);
    assert_memory_equal(out, want, 12);
    mopt_graph_free(g);
}

/* 16x8: int16 input 1000 (scale 0.001), filter 100 (scale 0.01), int64
 * bias 50000 (scale 1e-5), output scale 0.01:
 *   acc = 100 * 1000 + 50000 = 150000, eff = 1e-5 / 0.01 = 1e-3 -> 150. */
static void test_conv_16x8_int64_bias(void **state) {
    (void)state;
    mopt_graph *g = mopt_graph_create();
    int32_t xd[4] = {1, 1, 1, 1}, wd[4] = {1, 1, 1, 1}, bd[1] = {1};
    int8_t w[1] = {100};
    int64_t b[1] = {50000};
    float ws = 0.01f, bs = 1e-5f;
    int xt = t_q(g, MOPT_INT16, 4, xd, 0.001f, 0);
    int wt = t_cq(g, MOPT_INT8, 4, wd, w, 1, &ws, 0);
    int bt = t_cq(g, MOPT_INT64, 1, bd, b, 1, &bs, 0);
    int y = t_q(g, MOPT_INT16, 4, xd, 0.01f, 0);
    int32_t ins[3] = {xt, wt, bt};
    int oi = add_op(g, MOPT_OP_CONV_2D, ins, 3, y);
    g->ops[oi].p.conv.padding = MOPT_PAD_VALID;
    g->ops[oi].p.conv.stride_h = g->ops[oi].p.conv.stride_w = 1;
    int16_t in = 1000, out = 0;
    const void *ip[1] = {&in};
    mopt_error e;
    assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, &out, &e), MOPT_OK);
    assert_int_equal(out, 150);
    /* 32767 * 127 * 1e-3 = 4161.4 -> 4161 + bias 50 = 4211; far from int16
     * limits, so check saturation with a huge bias instead. */
    in = 32767;
    assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, &out, &e), MOPT_OK);
    assert_int_equal(out, 3327); /* (3276700 + 50000) * 1e-3 = 3326.7 -> 3327 */
    mopt_graph_free(g);
}

/* ---- FULLY_CONNECTED and the rounding modes ---- */

/* depth 1, weight 1 (scale 0.5), input -5 (scale 1), output scale 1:
 * acc = -5, eff 0.5, exact -2.5.
 *   reference FC (double multiply, round half away): -3
 *   gemmlowp double rounding (CONV_2D): SRDHM rounds -2.5 up to -2
 *   single rounding: (-5 * 2^30 + 2^30) >> 31 = -2
 *   fp32 (ties to even): -2 */
static int8_t fc_or_conv(mopt_op_type type, mopt_rounding r, int8_t x) {
    mopt_graph *g = mopt_graph_create();
    float ws = 0.5f;
    int8_t w[1] = {1};
    int y, xt, wt;
    if (type == MOPT_OP_FULLY_CONNECTED) {
        int32_t xd[2] = {1, 1}, wd[2] = {1, 1};
        xt = t_q(g, MOPT_INT8, 2, xd, 1.0f, 0);
        wt = t_cq(g, MOPT_INT8, 2, wd, w, 1, &ws, 0);
        y = t_q(g, MOPT_INT8, 2, xd, 1.0f, 0);
    } else {
        int32_t xd[4] = {1, 1, 1, 1};
        xt = t_q(g, MOPT_INT8, 4, xd, 1.0f, 0);
        wt = t_cq(g, MOPT_INT8, 4, xd, w, 1, &ws, 0);
        y = t_q(g, MOPT_INT8, 4, xd, 1.0f, 0);
    }
    int32_t ins[2] = {xt, wt};
    int oi = add_op(g, type, ins, 2, y);
    if (type == MOPT_OP_CONV_2D) {
        g->ops[oi].p.conv.padding = MOPT_PAD_VALID;
        g->ops[oi].p.conv.stride_h = g->ops[oi].p.conv.stride_w = 1;
    }
    int8_t out = 0;
    const void *ip[1] = {&x};
    mopt_error e;
    assert_int_equal(run_q(g, r, ip, &out, &e), MOPT_OK);
    mopt_graph_free(g);
    return out;
}

static void test_fc_requantizes_like_the_oracle(void **state) {
    (void)state;
    assert_int_equal(fc_or_conv(MOPT_OP_FULLY_CONNECTED, MOPT_ROUND_DOUBLE, -5), -3);
    assert_int_equal(fc_or_conv(MOPT_OP_CONV_2D, MOPT_ROUND_DOUBLE, -5), -2);
    assert_int_equal(fc_or_conv(MOPT_OP_FULLY_CONNECTED, MOPT_ROUND_SINGLE, -5), -2);
    assert_int_equal(fc_or_conv(MOPT_OP_CONV_2D, MOPT_ROUND_SINGLE, -5), -2);
    assert_int_equal(fc_or_conv(MOPT_OP_FULLY_CONNECTED, MOPT_ROUND_FP32, -5), -2);
    /* +2.5: every mode but fp32 (ties to even -> 2) gives 3. */
    assert_int_equal(fc_or_conv(MOPT_OP_FULLY_CONNECTED, MOPT_ROUND_DOUBLE, 5), 3);
    assert_int_equal(fc_or_conv(MOPT_OP_CONV_2D, MOPT_ROUND_DOUBLE, 5), 3);
    assert_int_equal(fc_or_conv(MOPT_OP_CONV_2D, MOPT_ROUND_FP32, 5), 2);
}

/* Two rows, depth 3, two units, input zero point 2, bias {10, -10}, all
 * scales 1: row (3, 4, 5) -> x - zp = (1, 2, 3); weights u0 = (1, 1, 1),
 * u1 = (-1, 0, 2): u0 = 6 + 10 = 16, u1 = 5 - 10 = -5; row (2, 2, 2) ->
 * 0 + bias = (10, -10). */
static void test_fc_rows_and_zero_point(void **state) {
    (void)state;
    mopt_graph *g = mopt_graph_create();
    int32_t xd[2] = {2, 3}, wd[2] = {2, 3}, bd[1] = {2}, yd[2] = {2, 2};
    int8_t w[6] = {1, 1, 1, -1, 0, 2};
    int32_t b[2] = {10, -10};
    float ws = 1.0f;
    int xt = t_q(g, MOPT_INT8, 2, xd, 1.0f, 2);
    int wt = t_cq(g, MOPT_INT8, 2, wd, w, 1, &ws, 0);
    int bt = t_cq(g, MOPT_INT32, 1, bd, b, 1, &ws, 0);
    int y = t_q(g, MOPT_INT8, 2, yd, 1.0f, 0);
    int32_t ins[3] = {xt, wt, bt};
    add_op(g, MOPT_OP_FULLY_CONNECTED, ins, 3, y);
    int8_t in[6] = {3, 4, 5, 2, 2, 2}, out[4];
    const int8_t want[4] = {16, -5, 10, -10};
    const void *ip[1] = {in};
    mopt_error e;
    assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, out, &e), MOPT_OK);
    assert_memory_equal(out, want, 4);
    mopt_graph_free(g);
}

/* ---- pooling ---- */

/* AVERAGE 2x2 stride 2 on a 2x4 image: windows {1, 2, 1, 2} = 6/4 = 1.5 ->
 * 2 (half away) and {-1, -2, -1, -2} = -6/4 -> -2; SAME 2x2 on a 1x3 row:
 * the last window sees only the in-image tap. MAX picks the largest. */
static void test_pools(void **state) {
    (void)state;
    for (int avg = 0; avg < 2; avg++) {
        mopt_graph *g = mopt_graph_create();
        int32_t xd[4] = {1, 2, 4, 1}, yd[4] = {1, 1, 2, 1};
        int xt = t_q(g, MOPT_INT8, 4, xd, 0.5f, 3);
        int y = t_q(g, MOPT_INT8, 4, yd, 0.5f, 3);
        int32_t ins[1] = {xt};
        int oi = add_op(g, avg ? MOPT_OP_AVERAGE_POOL_2D : MOPT_OP_MAX_POOL_2D, ins, 1, y);
        mopt_pool_params *p = &g->ops[oi].p.pool;
        p->padding = MOPT_PAD_VALID;
        p->filter_h = p->filter_w = p->stride_h = p->stride_w = 2;
        int8_t in[8] = {1, 2, -1, -2, 1, 2, -1, -2}, out[2];
        const void *ip[1] = {in};
        mopt_error e;
        assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, out, &e), MOPT_OK);
        assert_int_equal(out[0], 2);
        assert_int_equal(out[1], avg ? -2 : -1);
        mopt_graph_free(g);
    }
    /* SAME padding, 1x3 row, 1x2 window stride 2: outputs (1+2)/2 -> 2
     * and the lone tap 7 (a count of 2 would give 4). */
    mopt_graph *g = mopt_graph_create();
    int32_t xd[4] = {1, 1, 3, 1}, yd[4] = {1, 1, 2, 1};
    int xt = t_q(g, MOPT_INT8, 4, xd, 1.0f, 0);
    int y = t_q(g, MOPT_INT8, 4, yd, 1.0f, 0);
    int32_t ins[1] = {xt};
    int oi = add_op(g, MOPT_OP_AVERAGE_POOL_2D, ins, 1, y);
    mopt_pool_params *p = &g->ops[oi].p.pool;
    p->padding = MOPT_PAD_SAME;
    p->filter_h = 1;
    p->filter_w = 2;
    p->stride_h = 1;
    p->stride_w = 2;
    int8_t in[3] = {1, 2, 7}, out[2];
    const void *ip[1] = {in};
    mopt_error e;
    assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, out, &e), MOPT_OK);
    assert_int_equal(out[0], 2);
    assert_int_equal(out[1], 7);
    mopt_graph_free(g);
}

/* ---- ADD / SUB / MUL ---- */

/* a, b scale 0.5, output scale 1, zero points 0: 3 + 4 -> 3.5 -> 4 (the
 * final RoundingDivideByPOT rounds the exact tie away from zero);
 * -3 + -4 -> -4; b is broadcast from shape [1]. SUB: 3 - 4 -> -0.5 -> -1.
 * MUL with output scale 0.25: 3 * 5 * 0.25 / 0.25 = 15. */
static void binop(mopt_op_type type, float ys, const int8_t *a, int8_t b, int8_t *out) {
    mopt_graph *g = mopt_graph_create();
    int32_t ad[2] = {1, 2}, bd[1] = {1};
    int at = t_q(g, MOPT_INT8, 2, ad, 0.5f, 0);
    int bt = t_q(g, MOPT_INT8, 1, bd, 0.5f, 0);
    int y = t_q(g, MOPT_INT8, 2, ad, ys, 0);
    int32_t ins[2] = {at, bt};
    add_op(g, type, ins, 2, y);
    const void *ip[2] = {a, &b};
    mopt_error e;
    assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, out, &e), MOPT_OK);
    mopt_graph_free(g);
}

static void test_add_sub_mul(void **state) {
    (void)state;
    int8_t out[2];
    const int8_t a1[2] = {3, -3};
    binop(MOPT_OP_ADD, 1.0f, a1, 4, out);
    assert_int_equal(out[0], 4);  /* 3.5 */
    assert_int_equal(out[1], 1);  /* 0.5 -> 1 */
    const int8_t a2[2] = {-3, -4};
    binop(MOPT_OP_ADD, 1.0f, a2, -4, out);
    assert_int_equal(out[0], -4); /* -3.5 */
    assert_int_equal(out[1], -4); /* -4 */
    binop(MOPT_OP_SUB, 1.0f, a1, 4, out);
    assert_int_equal(out[0], -1); /* -0.5 -> -1 */
    assert_int_equal(out[1], -4); /* -3.5 -> -4 */
    const int8_t a3[2] = {3, 127};
    binop(MOPT_OP_MUL, 0.25f, a3, 5, out);
    assert_int_equal(out[0], 15);
    assert_int_equal(out[1], 127); /* 635 saturates */
}

/* ---- activations ---- */

static void unary(mopt_op_type type, mopt_dtype dt, float xs, int32_t xz, float ys, int32_t yz,
                  const void *in, void *out, size_t n, mopt_status want_st) {
    mopt_graph *g = mopt_graph_create();
    int32_t d[1] = {(int32_t)n};
    int xt = t_q(g, dt, 1, d, xs, xz);
    int y = t_q(g, dt, 1, d, ys, yz);
    int32_t ins[1] = {xt};
    add_op(g, type, ins, 1, y);
    const void *ip[1] = {in};
    mopt_error e;
    assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, out, &e), want_st);
    mopt_graph_free(g);
}

/* RELU with input scale 1, output scale 0.5 (zp 0): 3 -> 6, -2 -> 0,
 * 100 -> 200 saturates to 127. RELU6: upper limit round(6 / 0.5) = 12. */
static void test_relu_rescales(void **state) {
    (void)state;
    int8_t in[4] = {3, -2, 100, 5}, out[4];
    unary(MOPT_OP_RELU, MOPT_INT8, 1.0f, 0, 0.5f, 0, in, out, 4, MOPT_OK);
    assert_int_equal(out[0], 6);
    assert_int_equal(out[1], 0);
    assert_int_equal(out[2], 127);
    unary(MOPT_OP_RELU6, MOPT_INT8, 1.0f, 0, 0.5f, 0, in, out, 4, MOPT_OK);
    assert_int_equal(out[0], 6);
    assert_int_equal(out[2], 12);
    assert_int_equal(out[3], 10);
    int16_t i16[2] = {-7, 7}, o16[2];
    unary(MOPT_OP_RELU, MOPT_INT16, 1.0f, 0, 1.0f, 0, i16, o16, 2, MOPT_OK);
    assert_int_equal(o16[0], 0);
    assert_int_equal(o16[1], 7);
}

/* LOGISTIC int8 (output 1/256, zp -128): sigmoid(0) = 0.5 -> 0; a large
 * input -> 1.0 -> 128 clamps to 127; a very negative one -> -128.
 * TANH int8 (1/128, 0): tanh(0) = 0, large -> 127, very negative -> -128
 * (tanh = -1 -> -128). A LOGISTIC output scale other than 1/256 is
 * refused. */
static void test_logistic_tanh_int8(void **state) {
    (void)state;
    int8_t in[3] = {0, 127, -128}, out[3];
    unary(MOPT_OP_LOGISTIC, MOPT_INT8, 0.1f, 0, 1.0f / 256, -128, in, out, 3, MOPT_OK);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 127);
    assert_int_equal(out[2], -128);
    unary(MOPT_OP_TANH, MOPT_INT8, 0.1f, 0, 1.0f / 128, 0, in, out, 3, MOPT_OK);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 127);
    assert_int_equal(out[2], -128);
    unary(MOPT_OP_LOGISTIC, MOPT_INT8, 0.1f, 0, 1.0f / 128, -128, in, out, 3,
          MOPT_ERR_BAD_INPUT);
}

/* int16 LOGISTIC / TANH (zero points 0, output 2^-15), power-of-two input
 * scale 2^-12 (so the kernel uses multiplier 3): x = 0 -> logistic 0.5 =
 * 16384, tanh 0; x = 32767 (~8): logistic(8) = 0.999665 -> 32757 (+-2 for the
 * table interpolation), tanh saturates to 32767; x = -32768: logistic
 * ~0.0003 -> 0..11, tanh -> -32767. */
static void test_logistic_tanh_int16(void **state) {
    (void)state;
    int16_t in[3] = {0, 32767, -32768}, out[3];
    unary(MOPT_OP_LOGISTIC, MOPT_INT16, 1.0f / 4096, 0, 1.0f / 32768, 0, in, out, 3, MOPT_OK);
    assert_int_equal(out[0], 16384);
    assert_true(out[1] >= 32755 && out[1] <= 32759);
    assert_true(out[2] >= 0 && out[2] <= 11);
    unary(MOPT_OP_TANH, MOPT_INT16, 1.0f / 4096, 0, 1.0f / 32768, 0, in, out, 3, MOPT_OK);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 32767);
    assert_int_equal(out[2], -32767);
}

/* HARD_SWISH int8, scales 0.1 / 0.1, zero points 0: x <= -3 -> 0;
 * x = 0 -> 0; x >= 3 (q >= 30) -> x, i.e. q = 100 -> 100 within the
 * kernel's 16-bit fixed-point error of one step; x = 1 (q 10):
 * 1 * 4 / 6 = 0.667 -> q 6.67, 6 or 7. */
static void test_hard_swish_int8(void **state) {
    (void)state;
    int8_t in[4] = {-50, 0, 100, 10}, out[4];
    unary(MOPT_OP_HARD_SWISH, MOPT_INT8, 0.1f, 0, 0.1f, 0, in, out, 4, MOPT_OK);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 0);
    assert_true(out[2] >= 99 && out[2] <= 100);
    assert_true(out[3] == 6 || out[3] == 7);
}

/* ---- SOFTMAX ---- */

/* Equal logits over 4 classes: 0.25 each -> 0.25 * 256 - 128 = -64 (int8)
 * and 0.25 * 32768 = 8192 (int16, within the LUT error of 1). A single
 * class: probability 1 -> 128 saturates to 127. */
static void test_softmax(void **state) {
    (void)state;
    for (int depth = 1; depth <= 4; depth += 3) {
        mopt_graph *g = mopt_graph_create();
        int32_t d[2] = {1, depth};
        int xt = t_q(g, MOPT_INT8, 2, d, 0.1f, 0);
        int y = t_q(g, MOPT_INT8, 2, d, 1.0f / 256, -128);
        int32_t ins[1] = {xt};
        int oi = add_op(g, MOPT_OP_SOFTMAX, ins, 1, y);
        g->ops[oi].p.softmax.beta = 1.0f;
        int8_t in[4] = {5, 5, 5, 5}, out[4];
        const void *ip[1] = {in};
        mopt_error e;
        assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, out, &e), MOPT_OK);
        for (int i = 0; i < depth; i++) assert_int_equal(out[i], depth == 1 ? 127 : -64);
        mopt_graph_free(g);
    }
    mopt_graph *g = mopt_graph_create();
    int32_t d[2] = {1, 4};
    int xt = t_q(g, MOPT_INT16, 2, d, 0.001f, 0);
    int y = t_q(g, MOPT_INT16, 2, d, 1.0f / 32768, 0);
    int32_t ins[1] = {xt};
    int oi = add_op(g, MOPT_OP_SOFTMAX, ins, 1, y);
    g->ops[oi].p.softmax.beta = 1.0f;
    int16_t in[4] = {100, 100, 100, 100}, out[4];
    const void *ip[1] = {in};
    mopt_error e;
    assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, out, &e), MOPT_OK);
    for (int i = 0; i < 4; i++) assert_true(abs(out[i] - 8192) <= 1);
    mopt_graph_free(g);
}

/* ---- MEAN, PAD, CONCATENATION, QUANTIZE ---- */

/* Mean of {1, 2, 3, 4} with equal scales: 2.5 -> 3; of {-1, -2, -3, -4}:
 * -2.5 -> -3 (the folded multiplier 2^30 / shift -1 ends in a tie that
 * RoundingDivideByPOT rounds away from zero). Input zero point 1, output
 * zero point -1: {2, 3, 4, 5} -> mean(x - 1) = 2.5 -> 3 - 1 = 2. */
static int8_t mean4(const int8_t *v, int32_t xz, int32_t yz) {
    mopt_graph *g = mopt_graph_create();
    int32_t xd[4] = {1, 2, 2, 1}, ad[1] = {2}, yd[4] = {1, 1, 1, 1};
    int32_t axes[2] = {1, 2};
    int xt = t_q(g, MOPT_INT8, 4, xd, 0.5f, xz);
    int at = t_ci32(g, "axes", 1, ad, axes);
    int y = t_q(g, MOPT_INT8, 4, yd, 0.5f, yz);
    int32_t ins[2] = {xt, at};
    int oi = add_op(g, MOPT_OP_MEAN, ins, 2, y);
    g->ops[oi].p.reducer.keep_dims = true;
    int8_t out = 0;
    const void *ip[1] = {v};
    mopt_error e;
    assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, &out, &e), MOPT_OK);
    mopt_graph_free(g);
    return out;
}

static void test_mean(void **state) {
    (void)state;
    const int8_t a[4] = {1, 2, 3, 4}, b[4] = {-1, -2, -3, -4}, c[4] = {2, 3, 4, 5};
    assert_int_equal(mean4(a, 0, 0), 3);
    assert_int_equal(mean4(b, 0, 0), -3);
    assert_int_equal(mean4(c, 1, -1), 2);
}

/* PAD pads with the zero point (-3), not with 0. */
static void test_pad_uses_zero_point(void **state) {
    (void)state;
    mopt_graph *g = mopt_graph_create();
    int32_t xd[4] = {1, 1, 1, 1}, pd[2] = {4, 2}, yd[4] = {1, 3, 3, 1};
    int32_t pads[8] = {0, 0, 1, 1, 1, 1, 0, 0};
    int xt = t_q(g, MOPT_INT8, 4, xd, 0.5f, -3);
    int pt = t_ci32(g, "pads", 2, pd, pads);
    int y = t_q(g, MOPT_INT8, 4, yd, 0.5f, -3);
    int32_t ins[2] = {xt, pt};
    add_op(g, MOPT_OP_PAD, ins, 2, y);
    int8_t in = 7, out[9];
    const int8_t want[9] = {-3, -3, -3, -3, 7, -3, -3, -3, -3};
    const void *ip[1] = {&in};
    mopt_error e;
    assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, out, &e), MOPT_OK);
    assert_memory_equal(out, want, 9);
    mopt_graph_free(g);
}

/* CONCATENATION on the last axis of [1,2] and [1,1] int16; unequal input
 * parameters are refused (they would need rescaling the spec forbids). */
static void test_concat(void **state) {
    (void)state;
    for (int bad = 0; bad < 2; bad++) {
        mopt_graph *g = mopt_graph_create();
        int32_t ad[2] = {1, 2}, bd[2] = {1, 1}, yd[2] = {1, 3};
        int at = t_q(g, MOPT_INT16, 2, ad, 0.5f, 0);
        int bt = t_q(g, MOPT_INT16, 2, bd, bad ? 0.25f : 0.5f, 0);
        int y = t_q(g, MOPT_INT16, 2, yd, 0.5f, 0);
        int32_t ins[2] = {at, bt};
        int oi = add_op(g, MOPT_OP_CONCATENATION, ins, 2, y);
        g->ops[oi].p.concat.axis = -1;
        int16_t a[2] = {-300, 300}, b = 7, out[3];
        const void *ip[2] = {a, &b};
        mopt_error e;
        mopt_status st = run_q(g, MOPT_ROUND_DOUBLE, ip, out, &e);
        if (bad) {
            assert_int_equal(st, MOPT_ERR_UNSUPPORTED);
            assert_non_null(strstr(e.msg, "CONCATENATION"));
        } else {
            assert_int_equal(st, MOPT_OK);
            assert_int_equal(out[0], -300);
            assert_int_equal(out[1], 300);
            assert_int_equal(out[2], 7);
        }
        mopt_graph_free(g);
    }
}

/* int8 -> int8 QUANTIZE, input scale 1 (zp 0), output scale 2 (zp 10):
 * M = 0.5; 5 -> 2.5 -> SRDHM rounds the tie up -> 3 + 10 = 13;
 * -5 -> -2.5 -> -2 + 10 = 8; 127 -> 64 + 10 = 74. int8 -> int16 with
 * output scale 0.5: 100 -> 200. */
static void test_requantize(void **state) {
    (void)state;
    mopt_graph *g = mopt_graph_create();
    int32_t d[1] = {3};
    int xt = t_q(g, MOPT_INT8, 1, d, 1.0f, 0);
    int y = t_q(g, MOPT_INT8, 1, d, 2.0f, 10);
    int32_t ins[1] = {xt};
    add_op(g, MOPT_OP_QUANTIZE, ins, 1, y);
    int8_t in[3] = {5, -5, 127}, out[3];
    const void *ip[1] = {in};
    mopt_error e;
    assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, out, &e), MOPT_OK);
    assert_int_equal(out[0], 13);
    assert_int_equal(out[1], 8);
    assert_int_equal(out[2], 74);
    mopt_graph_free(g);
    g = mopt_graph_create();
    xt = t_q(g, MOPT_INT8, 1, d, 1.0f, 0);
    y = t_q(g, MOPT_INT16, 1, d, 0.5f, 0);
    add_op(g, MOPT_OP_QUANTIZE, ins, 1, y);
    int8_t in2[3] = {100, -100, 0};
    int16_t o16[3];
    ip[0] = in2;
    assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, o16, &e), MOPT_OK);
    assert_int_equal(o16[0], 200);
    assert_int_equal(o16[1], -200);
    assert_int_equal(o16[2], 0);
    mopt_graph_free(g);
}

/* ---- hybrid ---- */

/* Row quantization. Symmetric: max|x| = 1 -> scale 1/127, x * 127:
 * (1, -0.5, 0.25) -> (127, -63.5 -> -64, 31.75 -> 32). All-zero row ->
 * zeros, scale 1. Asymmetric [-0.5, 0.5]: float scale 1/255 =
 * 0x1.010102p-8, zero point 0 (not -1), q = round(x * inv) + 0 with
 * inv = 1 / scale = 254.999985 in binary32: (-0.5, 0.5, 0.25) ->
 * (-127.49999 -> -127, 127.49999 -> 127, 63.75 -> 64). Non-negative rows
 * take zero point -128. */
static void test_hybrid_row_quantization(void **state) {
    (void)state;
    const float x[3] = {1.0f, -0.5f, 0.25f};
    int8_t q[3];
    float s;
    int32_t zp;
    mopt_q_symmetric_quantize_row(x, 3, q, &s);
    assert_true(s == 1.0f / 127.0f);
    assert_int_equal(q[0], 127);
    assert_int_equal(q[1], -64);
    assert_int_equal(q[2], 32);
    const float z[2] = {0.0f, 0.0f};
    mopt_q_symmetric_quantize_row(z, 2, q, &s);
    assert_true(s == 1.0f);
    assert_int_equal(q[0], 0);
    const float a[3] = {-0.5f, 0.5f, 0.25f};
    mopt_q_asymmetric_quantize_row(a, 3, q, &s, &zp);
    assert_true(s == 1.0f / 255.0f);
    assert_int_equal(zp, 0);
    assert_int_equal(q[0], -127);
    assert_int_equal(q[1], 127);
    assert_int_equal(q[2], 64);
    const float p[2] = {0.0f, 2.55f};
    mopt_q_asymmetric_quantize_row(p, 2, q, &s, &zp);
    assert_int_equal(zp, -128);
    assert_int_equal(q[0], -128);
    assert_int_equal(q[1], 127);
}

/* Hybrid FC, symmetric inputs: x = (1, -0.5) -> q = (127, -64), scale
 * 1/127; weights (1, 2) with scale 0.5; bias 0.25:
 *   dot = 127 - 128 = -1, y = 0.25 + (-1) * (1/127 * 0.5). */
static void test_hybrid_fc(void **state) {
    (void)state;
    mopt_graph *g = mopt_graph_create();
    int32_t xd[2] = {1, 2}, wd[2] = {1, 2}, bd[1] = {1}, yd[2] = {1, 1};
    int8_t w[2] = {1, 2};
    float ws = 0.5f, b = 0.25f;
    int xt = t_f32(g, "x", 2, xd);
    int wt = t_cq(g, MOPT_INT8, 2, wd, w, 1, &ws, 0);
    int bt = t_cf32(g, "b", 1, bd, &b);
    int y = t_f32(g, "y", 2, yd);
    int32_t ins[3] = {xt, wt, bt};
    add_op(g, MOPT_OP_FULLY_CONNECTED, ins, 3, y);
    float in[2] = {1.0f, -0.5f}, out = 0;
    const void *ip[1] = {in};
    mopt_error e;
    assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, &out, &e), MOPT_OK);
    const float sc = (1.0f / 127.0f) * 0.5f;
    assert_true(out == 0.25f + -1.0f * sc);
    mopt_graph_free(g);
}

/* Hybrid depthwise (2 channels, 1x1 filter, per-channel scales 1 and 2)
 * on a 1x1 image (0, 2): asymmetric scale 2/255, zero point -128,
 * q = (-128, 127); acc = w * (q + 128) = (1 * 0, 3 * 255), y = acc *
 * (s_w * s_x): (0, 765 * (2 * 2/255)) = (0, 12 within float rounding). */
static void test_hybrid_depthwise(void **state) {
    (void)state;
    mopt_graph *g = mopt_graph_create();
    int32_t xd[4] = {1, 1, 1, 2}, wd[4] = {1, 1, 1, 2};
    int8_t w[2] = {1, 3};
    float ws[2] = {1.0f, 2.0f};
    int xt = t_f32(g, "x", 4, xd);
    int wt = t_cq(g, MOPT_INT8, 4, wd, w, 2, ws, 3);
    int y = t_f32(g, "y", 4, xd);
    int32_t ins[2] = {xt, wt};
    int oi = add_op(g, MOPT_OP_DEPTHWISE_CONV_2D, ins, 2, y);
    g->ops[oi].p.conv.padding = MOPT_PAD_VALID;
    g->ops[oi].p.conv.stride_h = g->ops[oi].p.conv.stride_w = 1;
    g->ops[oi].p.conv.depth_multiplier = 1;
    float in[2] = {0.0f, 2.0f}, out[2];
    const void *ip[1] = {in};
    mopt_error e;
    assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, out, &e), MOPT_OK);
    assert_true(out[0] == 0.0f);
    assert_true(fabsf(out[1] - 12.0f) < 1e-5f);
    mopt_graph_free(g);
}

/* ---- refusals ---- */

/* Per-channel weights with a non-zero zero point, an int16 depthwise with
 * a non-zero input zero point and a non-constant filter are refused with
 * a message naming the operator. */
static void test_refusals(void **state) {
    (void)state;
    mopt_error e;
    {
        mopt_graph *g = mopt_graph_create();
        int32_t xd[4] = {1, 1, 1, 1}, wd[4] = {2, 1, 1, 1}, yd[4] = {1, 1, 1, 2};
        int8_t w[2] = {1, 1};
        float ws[2] = {1, 1};
        int64_t zps[2] = {0, 3};
        int xt = t_q(g, MOPT_INT8, 4, xd, 1.0f, 0);
        int wt = t_const(g, "w", MOPT_INT8, 4, wd, w);
        assert_int_equal(mopt_tensor_set_quant(&g->tensors[wt], 2, ws, zps, 0), MOPT_OK);
        int y = t_q(g, MOPT_INT8, 4, yd, 1.0f, 0);
        int32_t ins[2] = {xt, wt};
        int oi = add_op(g, MOPT_OP_CONV_2D, ins, 2, y);
        g->ops[oi].p.conv.padding = MOPT_PAD_VALID;
        g->ops[oi].p.conv.stride_h = g->ops[oi].p.conv.stride_w = 1;
        int8_t in = 1, out[2];
        const void *ip[1] = {&in};
        assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, out, &e), MOPT_ERR_UNSUPPORTED);
        assert_non_null(strstr(e.msg, "operator 0 (CONV_2D)"));
        mopt_graph_free(g);
    }
    {
        mopt_graph *g = mopt_graph_create();
        int32_t xd[4] = {1, 1, 1, 1};
        int8_t w[1] = {1};
        float ws = 1.0f;
        int xt = t_q(g, MOPT_INT16, 4, xd, 1.0f, 5);
        int wt = t_cq(g, MOPT_INT8, 4, xd, w, 1, &ws, 3);
        int y = t_q(g, MOPT_INT16, 4, xd, 1.0f, 0);
        int32_t ins[2] = {xt, wt};
        int oi = add_op(g, MOPT_OP_DEPTHWISE_CONV_2D, ins, 2, y);
        g->ops[oi].p.conv.padding = MOPT_PAD_VALID;
        g->ops[oi].p.conv.stride_h = g->ops[oi].p.conv.stride_w = 1;
        int16_t in = 1, out;
        const void *ip[1] = {&in};
        assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, &out, &e), MOPT_ERR_UNSUPPORTED);
        assert_non_null(strstr(e.msg, "zero points 0"));
        mopt_graph_free(g);
    }
    {
        mopt_graph *g = mopt_graph_create();
        int32_t xd[2] = {1, 1};
        int xt = t_q(g, MOPT_INT8, 2, xd, 1.0f, 0);
        int wt = t_q(g, MOPT_INT8, 2, xd, 1.0f, 0); /* activation, not constant */
        int y = t_q(g, MOPT_INT8, 2, xd, 1.0f, 0);
        int32_t ins[2] = {xt, wt};
        add_op(g, MOPT_OP_FULLY_CONNECTED, ins, 2, y);
        int8_t in = 1, w = 1, out;
        const void *ip[2] = {&in, &w};
        assert_int_equal(run_q(g, MOPT_ROUND_DOUBLE, ip, &out, &e), MOPT_ERR_UNSUPPORTED);
        assert_non_null(strstr(e.msg, "constant"));
        mopt_graph_free(g);
    }
}

/* The integer predicates never claim float graphs (so the float kernels
 * keep them) and the hybrid one needs int8 weights. */
static void test_predicates_do_not_overlap_float(void **state) {
    (void)state;
    mopt_graph *g = mopt_graph_create();
    int32_t xd[2] = {1, 2}, wd[2] = {1, 2};
    float w[2] = {1, 2};
    int xt = t_f32(g, "x", 2, xd);
    int wt = t_cf32(g, "w", 2, wd, w);
    int y = t_f32(g, "y", 2, xd);
    int32_t ins[2] = {xt, wt};
    add_op(g, MOPT_OP_FULLY_CONNECTED, ins, 2, y);
    int32_t ins2[2] = {xt, xt};
    int y2 = t_f32(g, "y2", 2, xd);
    add_op(g, MOPT_OP_ADD, ins2, 2, y2);
    assert_null(find_q(g, &g->ops[0]));
    assert_null(find_q(g, &g->ops[1]));
    mopt_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_pads_with_input_zero_point),
        cmocka_unit_test(test_conv_per_channel_and_saturation),
        cmocka_unit_test(test_depthwise_multiplier),
        cmocka_unit_test(test_conv_16x8_int64_bias),
        cmocka_unit_test(test_fc_requantizes_like_the_oracle),
        cmocka_unit_test(test_fc_rows_and_zero_point),
        cmocka_unit_test(test_pools),
        cmocka_unit_test(test_add_sub_mul),
        cmocka_unit_test(test_relu_rescales),
        cmocka_unit_test(test_logistic_tanh_int8),
        cmocka_unit_test(test_logistic_tanh_int16),
        cmocka_unit_test(test_hard_swish_int8),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_mean),
        cmocka_unit_test(test_pad_uses_zero_point),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_requantize),
        cmocka_unit_test(test_hybrid_row_quantization),
        cmocka_unit_test(test_hybrid_fc),
        cmocka_unit_test(test_hybrid_depthwise),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_predicates_do_not_overlap_float),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
