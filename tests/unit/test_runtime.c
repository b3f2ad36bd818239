/* Unit tests for the interpreter and the arena planner (src/runtime):
 * brute-force liveness checks (no two simultaneously live buffers overlap),
 * reuse on a chain, guard bytes, repeat invokes, thread-count and ISA
 * independence of results, constant folding of DEQUANTIZE, RESHAPE aliasing,
 * and refusals (quantized kernels, bad arguments). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kernels/kernels.h"
#include "rt_testutil.h"
#include "runtime/interp_internal.h"
#include "runtime/planner.h"

/* ---- planner alone ---- */

static void test_planner_random(void **state) {
    (void)state;
    rng r = {42};
    for (int trial = 0; trial < 200; trial++) {
        int n = 1 + (int)(rng_u32(&r) % 40);
        mopt_plan_buf b[40];
        size_t sum = 0;
        for (int i = 0; i < n; i++) {
            b[i].size = rng_u32(&r) % 5000;
            b[i].first = (int)(rng_u32(&r) % 30);
            b[i].last = b[i].first + (int)(rng_u32(&r) % 10);
            sum += (b[i].size + 63) / 64 * 64;
        }
        size_t total = 0;
        assert_int_equal(mopt_plan_arena(b, n, &total), MOPT_OK);
        assert_true(total <= (sum ? sum : 64));
        for (int i = 0; i < n; i++) {
            assert_int_equal(b[i].offset % MOPT_ARENA_ALIGN, 0);
            assert_true(b[i].offset + b[i].size <= total);
            for (int j = i + 1; j < n; j++) {
                bool live = b[i].first <= b[j].last && b[j].first <= b[i].last;
                bool overlap =
                    b[i].offset < b[j].offset + b[j].size && b[j].offset < b[i].offset + b[i].size;
                if (b[i].size && b[j].size) assert_false(live && overlap);
            }
        }
    }
}

/* ---- interpreter memory plan ---- */

/* Inclusive live range of every tensor computed here from the graph alone
 * (graph inputs and outputs live all run); -1 if not an activation. */
static void liveness(const mopt_graph *g, int *first, int *last) {
    int end = g->n_ops > 0 ? g->n_ops - 1 : 0;
    for (int t = 0; t < g->n_tensors; t++) {
        first[t] = INT32_MAX;
        last[t] = -1;
    }
    for (int i = 0; i < g->n_inputs; i++) {
        first[g->inputs[i]] = 0;
        last[g->inputs[i]] = end;
    }
    for (int i = 0; i < g->n_ops; i++) {
        const mopt_op *op = &g->ops[i];
        for (int k = 0; k < op->n_inputs; k++) {
            int t = op->inputs[k];
            if (t < 0) continue;
            if (i < first[t]) first[t] = i;
            if (i > last[t]) last[t] = i;
        }
        int t = op->outputs[0];
        if (i < first[t]) first[t] = i;
        if (i > last[t]) last[t] = i;
    }
    for (int i = 0; i < g->n_outputs; i++) {
        first[g->outputs[i]] = 0;
        last[g->outputs[i]] = end;
    }
}

/* Every pair of arena tensors (and op scratch) live at the same step must
 * have disjoint bytes, unless they are a RESHAPE alias pair. */
static void check_plan(const mopt_graph *g, const mopt_interp *it) {
    int nt = g->n_tensors;
    int *first = malloc(sizeof(int) * (size_t)nt), *last = malloc(sizeof(int) * (size_t)nt);
    liveness(g, first, last);
    for (int a = 0; a < nt; a++) {
        size_t oa, ba;
        if (!mopt_interp_tensor_slot(it, a, &oa, &ba)) continue;
        assert_int_equal(oa % 64, 0);
        assert_true(oa + ba <= mopt_interp_arena_bytes(it));
        assert_true(last[a] >= 0);
        for (int b = a + 1; b < nt; b++) {
            size_t ob, bb;
            if (!mopt_interp_tensor_slot(it, b, &ob, &bb)) continue;
            bool live = first[a] <= last[b] && first[b] <= last[a];
            bool overlap = oa < ob + bb && ob < oa + ba;
            if (live && overlap) {
                /* Only an in-place RESHAPE may share: same offset, the op links them. */
                bool alias = false;
                for (int i = 0; i < g->n_ops; i++)
                    if (g->ops[i].type == MOPT_OP_RESHAPE &&
                        ((g->ops[i].inputs[0] == a && g->ops[i].outputs[0] == b) ||
                         (g->ops[i].inputs[0] == b && g->ops[i].outputs[0] == a)))
                        alias = true;
                if (!alias) fprintf(stderr, "tensors %d and %d overlap while live\n", a, b);
                assert_true(alias && oa == ob);
            }
        }
        for (int i = 0; i < g->n_ops; i++) {
            size_t os, bs;
            if (!mopt_interp_scratch_slot(it, i, &os, &bs)) continue;
            bool live = first[a] <= i && i <= last[a];
            assert_false(live && oa < os + bs && os < oa + ba);
        }
    }
    free(first);
    free(last);
}

/* A small branchy float net, in [1,9,9,3] -> out [1,10]:
 * conv3x3(8) relu -> dwconv3x3 s2 relu6 -> conv1x1(8) -> add(with pooled
 * conv output) -> concat(with itself path) -> mean(1,2) -> reshape ->
 * fc(10) -> softmax. Weights from seed. */
static mopt_graph *branchy_net(uint32_t seed) {
    rng r = {seed};
    mopt_graph *g = mopt_graph_create();
    float w1[8 * 3 * 3 * 3], b1[8], w2[1 * 3 * 3 * 8], b2[8], w3[8 * 8], w4[10 * 16], b4[10];
    rng_fill(&r, w1, 216);
    rng_fill(&r, b1, 8);
    rng_fill(&r, w2, 72);
    rng_fill(&r, b2, 8);
    rng_fill(&r, w3, 64);
    rng_fill(&r, w4, 160);
    rng_fill(&r, b4, 10);
    int x = t_f32(g, "x", 4, (int32_t[]){1, 9, 9, 3});
    int c1 = t_f32(g, "c1", 4, (int32_t[]){1, 9, 9, 8});
    int d2 = t_f32(g, "d2", 4, (int32_t[]){1, 5, 5, 8});
    int c3 = t_f32(g, "c3", 4, (int32_t[]){1, 5, 5, 8});
    int p1 = t_f32(g, "p1", 4, (int32_t[]){1, 5, 5, 8});
    int s = t_f32(g, "s", 4, (int32_t[]){1, 5, 5, 8});
    int cat = t_f32(g, "cat", 4, (int32_t[]){1, 5, 5, 16});
    int m = t_f32(g, "m", 4, (int32_t[]){1, 1, 1, 16});
    int flat = t_f32(g, "flat", 2, (int32_t[]){1, 16});
    int logits = t_f32(g, "logits", 2, (int32_t[]){1, 10});
    int y = t_f32(g, "y", 2, (int32_t[]){1, 10});
    int w1t = t_cf32(g, "w1", 4, (int32_t[]){8, 3, 3, 3}, w1),
        b1t = t_cf32(g, "b1", 1, (int32_t[]){8}, b1);
    int w2t = t_cf32(g, "w2", 4, (int32_t[]){1, 3, 3, 8}, w2),
        b2t = t_cf32(g, "b2", 1, (int32_t[]){8}, b2);
    int w3t = t_cf32(g, "w3", 4, (int32_t[]){8, 1, 1, 8}, w3);
    int w4t = t_cf32(g, "w4", 2, (int32_t[]){10, 16}, w4),
        b4t = t_cf32(g, "b4", 1, (int32_t[]){10}, b4);
    int axes = t_ci32(g, "axes", 1, (int32_t[]){2}, (int32_t[]){1, 2});
    int shp = t_ci32(g, "shape", 1, (int32_t[]){2}, (int32_t[]){1, 16});
    int o = add_op(g, MOPT_OP_CONV_2D, (int32_t[]){x, w1t, b1t}, 3, c1);
    g->ops[o].p.conv.act = MOPT_ACT_RELU;
    o = add_op(g, MOPT_OP_DEPTHWISE_CONV_2D, (int32_t[]){c1, w2t, b2t}, 3, d2);
    g->ops[o].p.conv.stride_h = g->ops[o].p.conv.stride_w = 2;
    g->ops[o].p.conv.act = MOPT_ACT_RELU6;
    o = add_op(g, MOPT_OP_CONV_2D, (int32_t[]){d2, w3t, -1}, 3, c3);
    o = add_op(g, MOPT_OP_MAX_POOL_2D, (int32_t[]){c1}, 1, p1);
    g->ops[o].p.pool.filter_h = g->ops[o].p.pool.filter_w = 3;
    g->ops[o].p.pool.stride_h = g->ops[o].p.pool.stride_w = 2;
    add_op(g, MOPT_OP_ADD, (int32_t[]){c3, p1}, 2, s);
    o = add_op(g, MOPT_OP_CONCATENATION, (int32_t[]){s, d2}, 2, cat);
    g->ops[o].p.concat.axis = 3;
    g->ops[add_op(g, MOPT_OP_MEAN, (int32_t[]){cat, axes}, 2, m)].p.reducer.keep_dims = true;
    g->ops[add_op(g, MOPT_OP_RESHAPE, (int32_t[]){m, shp}, 2, flat)].p.reshape.n_new_shape = -1;
    add_op(g, MOPT_OP_FULLY_CONNECTED, (int32_t[]){flat, w4t, b4t}, 3, logits);
    add_op(g, MOPT_OP_SOFTMAX, (int32_t[]){logits}, 1, y);
    set_io1(g, x, y);
    return g;
}

static void test_plan_liveness_branchy(void **state) {
    (void)state;
    mopt_graph *g = branchy_net(1);
    mopt_interp *it = NULL;
    mopt_error e;
    mopt_status st = mopt_interp_create(g, NULL, &it, &e);
    if (st) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(st, MOPT_OK);
    check_plan(g, it);
    assert_true(mopt_interp_arena_bytes(it) % 64 == 0);
    /* The reshape shares its input's bytes. */
    size_t o1, b1, o2, b2;
    assert_true(mopt_interp_tensor_slot(it, 7, &o1, &b1)); /* m */
    assert_true(mopt_interp_tensor_slot(it, 8, &o2, &b2)); /* flat */
    assert_true(o1 == o2 && b1 == b2);
    mopt_interp_free(it);
    mopt_graph_free(g);
}

static void test_chain_reuses_memory(void **state) {
    (void)state;
    /* x -> 12 alternating RELU/TANH ops, each [64,64]. Without reuse 13
     * tensors; with reuse only input, output and two temporaries. */
    mopt_graph *g = mopt_graph_create();
    int prev = t_f32(g, "x", 2, (int32_t[]){64, 64});
    int x = prev;
    for (int i = 0; i < 12; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        int t = t_f32(g, name, 2, (int32_t[]){64, 64});
        add_op(g, i % 2 ? MOPT_OP_TANH : MOPT_OP_RELU, (int32_t[]){prev}, 1, t);
        prev = t;
    }
    set_io1(g, x, prev);
    mopt_interp *it = NULL;
    assert_int_equal(mopt_interp_create(g, NULL, &it, NULL), MOPT_OK);
    size_t tb = 64 * 64 * 4;
    assert_int_equal(mopt_interp_naive_bytes(it), 13 * tb);
    assert_true(mopt_interp_arena_bytes(it) < mopt_interp_naive_bytes(it));
    assert_true(mopt_interp_arena_bytes(it) <= 4 * tb + 64);
    check_plan(g, it);
    /* Results are still right after reuse. */
    float *in = mopt_interp_input(it, 0);
    for (int i = 0; i < 64 * 64; i++) in[i] = (float)(i % 17) - 8.0f;
    assert_int_equal(mopt_interp_invoke(it, NULL), MOPT_OK);
    const float *out = mopt_interp_output(it, 0);
    for (int i = 0; i < 64 * 64; i++) {
        double v = (double)(i % 17) - 8.0;
        for (int k = 0; k < 12; k++) v = k % 2 ? tanh(v) : (v < 0 ? 0 : v);
        assert_true(fabs(out[i] - v) < 1e-6);
    }
    assert_true(mopt_interp_guards_intact(it));
    mopt_interp_free(it);
    mopt_graph_free(g);
}

/* ---- results ---- */

static void run_branchy(const mopt_graph *g, const mopt_isa *isa, int threads, const float *in,
                        float *out, int repeats) {
    mopt_interp_options o = mopt_interp_default_options();
    o.num_threads = threads;
    mopt_interp *it = NULL;
    mopt_error e;
    assert_int_equal(mopt_interp_create_isa(g, &o, isa, &it, &e), MOPT_OK);
    memcpy(mopt_interp_input(it, 0), in, 243 * sizeof(float));
    for (int k = 0; k < repeats; k++) {
        assert_int_equal(mopt_interp_invoke(it, &e), MOPT_OK);
        if (k == 0)
            memcpy(out, mopt_interp_output(it, 0), 10 * sizeof(float));
        else /* inputs survive, so repeated invokes agree */
            assert_memory_equal(out, mopt_interp_output(it, 0), 10 * sizeof(float));
    }
    assert_true(mopt_interp_guards_intact(it));
    mopt_interp_free(it);
}

static void test_threads_and_isa_identical(void **state) {
    (void)state;
    mopt_graph *g = branchy_net(2);
    float in[243], ref[10], got[10];
    rng r = {77};
    rng_fill(&r, in, 243);
    run_branchy(g, &mopt_isa_ref, 1, in, ref, 3);
    float sum = 0;
    for (int i = 0; i < 10; i++) sum += ref[i];
    assert_true(fabsf(sum - 1.0f) < 1e-5f); /* softmax output */
    const mopt_isa *isas[8];
    int n = mopt_isa_supported(isas, 8);
    for (int k = 0; k < n; k++)
        for (int t = 1; t <= 4; t++) {
            run_branchy(g, isas[k], t, in, got, 2);
            assert_memory_equal(got, ref, sizeof ref);
        }
    mopt_graph_free(g);
}

static void test_big_conv_threads_identical(void **state) {
    (void)state;
    /* Large enough that every threaded path really splits. */
    rng r = {8};
    mopt_graph *g = mopt_graph_create();
    int x = t_f32(g, "x", 4, (int32_t[]){2, 23, 19, 24});
    float *w = malloc(40 * 9 * 24 * 4), *wd = malloc(9 * 40 * 4);
    rng_fill(&r, w, 40 * 9 * 24);
    rng_fill(&r, wd, 9 * 40);
    int wt = t_cf32(g, "w", 4, (int32_t[]){40, 3, 3, 24}, w);
    int wdt = t_cf32(g, "wd", 4, (int32_t[]){1, 3, 3, 40}, wd);
    int c = t_f32(g, "c", 4, (int32_t[]){2, 23, 19, 40});
    int y = t_f32(g, "y", 4, (int32_t[]){2, 12, 10, 40});
    add_op(g, MOPT_OP_CONV_2D, (int32_t[]){x, wt}, 2, c);
    int o = add_op(g, MOPT_OP_DEPTHWISE_CONV_2D, (int32_t[]){c, wdt}, 2, y);
    g->ops[o].p.conv.stride_h = g->ops[o].p.conv.stride_w = 2;
    set_io1(g, x, y);
    size_t ni = 2 * 23 * 19 * 24, no = 2 * 12 * 10 * 40;
    float *in = malloc(ni * 4), *a = malloc(no * 4), *b = malloc(no * 4);
    rng_fill(&r, in, ni);
    assert_int_equal(run1(g, 1, in, ni * 4, a, no * 4, NULL), MOPT_OK);
    for (int t = 2; t <= 3; t++) {
        assert_int_equal(run1(g, t, in, ni * 4, b, no * 4, NULL), MOPT_OK);
        assert_memory_equal(a, b, no * 4);
    }
    free(w);
    free(wd);
    free(in);
    free(a);
    free(b);
    mopt_graph_free(g);
}

static void test_fold_float16_weights(void **state) {
    (void)state;
    /* conv with float16 weights behind DEQUANTIZE == conv with the same
     * (exactly representable) float weights; the DEQUANTIZE is folded. */
    const float wf[2 * 3] = {0.5f, -1.25f, 2.0f, 0.125f, 3.0f, -0.75f};
    const uint16_t wh[2 * 3] = {0x3800, 0xBD00, 0x4000, 0x3000, 0x4200, 0xBA00};
    mopt_graph *g1 = mopt_graph_create(), *g2 = mopt_graph_create();
    int x1 = t_f32(g1, "x", 4, (int32_t[]){1, 3, 3, 3});
    int w1 = t_cf32(g1, "w", 4, (int32_t[]){2, 1, 1, 3}, wf);
    int y1 = t_f32(g1, "y", 4, (int32_t[]){1, 3, 3, 2});
    add_op(g1, MOPT_OP_CONV_2D, (int32_t[]){x1, w1}, 2, y1);
    set_io1(g1, x1, y1);
    int x2 = t_f32(g2, "x", 4, (int32_t[]){1, 3, 3, 3});
    int wh2 = t_const(g2, "wh", MOPT_FLOAT16, 4, (int32_t[]){2, 1, 1, 3}, wh);
    int w2 = t_f32(g2, "w", 4, (int32_t[]){2, 1, 1, 3});
    int y2 = t_f32(g2, "y", 4, (int32_t[]){1, 3, 3, 2});
    add_op(g2, MOPT_OP_DEQUANTIZE, (int32_t[]){wh2}, 1, w2);
    add_op(g2, MOPT_OP_CONV_2D, (int32_t[]){x2, w2}, 2, y2);
    set_io1(g2, x2, y2);
    float in[27], a[18], b[18];
    rng r = {9};
    rng_fill(&r, in, 27);
    assert_int_equal(run1(g1, 1, in, sizeof in, a, sizeof a, NULL), MOPT_OK);
    assert_int_equal(run1(g2, 1, in, sizeof in, b, sizeof b, NULL), MOPT_OK);
    assert_memory_equal(a, b, sizeof a);
    mopt_interp *it = NULL;
    assert_int_equal(mopt_interp_create(g2, NULL, &it, NULL), MOPT_OK);
    assert_true(mopt_interp_op_folded(it, 0));
    assert_false(mopt_interp_op_folded(it, 1));
    assert_string_equal(mopt_interp_kernel_name(it, 0), "folded");
    size_t off, nb;
    assert_false(mopt_interp_tensor_slot(it, w2, &off, &nb)); /* not in the arena */
    const float *wd = mopt_interp_tensor(it, w2);
    assert_non_null(wd);
    assert_memory_equal(wd, wf, sizeof wf);
    mopt_interp_free(it);
    mopt_graph_free(g1);
    mopt_graph_free(g2);
}

static void test_refuses_quantized_kernels(void **state) {
    (void)state;
    /* A valid uint8 conv (legacy asymmetric quantization): validation passes,
     * the runtime has no uint8 conv kernel and says so. */
    mopt_graph *g = mopt_graph_create();
    uint8_t w[4 * 3] = {0};
    int32_t b[4] = {0};
    int x = t_act(g, "x", MOPT_UINT8, 4, (int32_t[]){1, 2, 2, 3});
    int wt = t_const(g, "w", MOPT_UINT8, 4, (int32_t[]){4, 1, 1, 3}, w);
    int bt = t_const(g, "b", MOPT_INT32, 1, (int32_t[]){4}, b);
    int y = t_act(g, "y", MOPT_UINT8, 4, (int32_t[]){1, 2, 2, 4});
    set_quant1(g, x, 0.1f, 0);
    set_quant1(g, wt, 0.1f, 0);
    set_quant1(g, bt, 0.01f, 0);
    set_quant1(g, y, 0.1f, 0);
    add_op(g, MOPT_OP_CONV_2D, (int32_t[]){x, wt, bt}, 3, y);
    set_io1(g, x, y);
    assert_int_equal(mopt_graph_validate(g, NULL), MOPT_OK);
    mopt_interp *it = NULL;
    mopt_error e;
    assert_int_equal(mopt_interp_create(g, NULL, &it, &e), MOPT_ERR_UNSUPPORTED);
    assert_null(it);
    assert_non_null(strstr(e.msg, "operator 0 (CONV_2D)"));
    assert_non_null(strstr(e.msg, "uint8"));
    mopt_graph_free(g);
}

static void test_api_edges(void **state) {
    (void)state;
    mopt_interp_free(NULL);
    mopt_error e;
    assert_int_equal(mopt_interp_invoke(NULL, &e), MOPT_ERR_ARG);
    mopt_graph *g = branchy_net(3);
    assert_int_equal(mopt_interp_create(g, NULL, NULL, &e), MOPT_ERR_ARG);
    mopt_interp_options o = mopt_interp_default_options();
    o.rounding = (mopt_rounding)7;
    mopt_interp *it = (mopt_interp *)(uintptr_t)1;
    assert_int_equal(mopt_interp_create(g, &o, &it, &e), MOPT_ERR_ARG);
    assert_null(it);
    /* An invalid graph is refused with the validator's message. */
    g->ops[0].p.conv.stride_w = 0;
    assert_int_equal(mopt_interp_create(g, NULL, &it, &e), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(e.msg, "operator 0 (CONV_2D)"));
    g->ops[0].p.conv.stride_w = 1;
    assert_int_equal(mopt_interp_create(g, NULL, &it, &e), MOPT_OK);
    assert_int_equal(mopt_interp_num_inputs(it), 1);
    assert_int_equal(mopt_interp_num_outputs(it), 1);
    assert_int_equal(mopt_interp_input_index(it, 0), 0);
    assert_int_equal(mopt_interp_output_index(it, 0), 10);
    assert_int_equal(mopt_interp_input_index(it, 1), -1);
    assert_null(mopt_interp_input(it, 3));
    assert_null(mopt_interp_output(it, -1));
    assert_null(mopt_interp_tensor(it, 999));
    assert_non_null(mopt_interp_tensor(it, 11)); /* a constant */
    assert_null(mopt_interp_kernel_name(it, 99));
    assert_non_null(strstr(mopt_interp_kernel_name(it, 0), "conv2d_f32"));
    /* The guard check notices a write past an output. */
    unsigned char *out = (unsigned char *)(uintptr_t)mopt_interp_output(it, 0);
    assert_true(mopt_interp_guards_intact(it));
    out[10 * sizeof(float)] ^= 1;
    assert_false(mopt_interp_guards_intact(it));
    out[10 * sizeof(float)] ^= 1;
    mopt_interp_free(it);
    mopt_graph_free(g);
}

static void test_passthrough_and_constant_outputs(void **state) {
    (void)state;
    /* Graph with no ops: the output is the input. */
    mopt_graph *g = mopt_graph_create();
    int x = t_f32(g, "x", 1, (int32_t[]){3});
    set_io1(g, x, x);
    mopt_interp *it = NULL;
    assert_int_equal(mopt_interp_create(g, NULL, &it, NULL), MOPT_OK);
    float *in = mopt_interp_input(it, 0);
    in[0] = 1;
    in[1] = 2;
    in[2] = 3;
    assert_int_equal(mopt_interp_invoke(it, NULL), MOPT_OK);
    assert_ptr_equal(mopt_interp_output(it, 0), in);
    mopt_interp_free(it);
    mopt_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planner_random),
        cmocka_unit_test(test_plan_liveness_branchy),
        cmocka_unit_test(test_chain_reuses_memory),
        cmocka_unit_test(test_threads_and_isa_identical),
        cmocka_unit_test(test_big_conv_threads_identical),
        cmocka_unit_test(test_fold_float16_weights),
        cmocka_unit_test(test_refuses_quantized_kernels),
        cmocka_unit_test(test_api_edges),
        cmocka_unit_test(test_passthrough_and_constant_outputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
