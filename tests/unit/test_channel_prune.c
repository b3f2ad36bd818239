/* Unit tests for channel pruning (src/sparsity/channel_prune.c).
 *
 * The main property: when the channels that get removed were already zero
 * (their filters and biases, and the biases of the depthwise convolutions
 * they pass through), the pruned graph computes the same outputs as the
 * original, run with the float runtime. The zeroing below is done by the test
 * itself (a forward walk over the original graph), not by the code under
 * test. Also: valid smaller graphs, residual branches pruned identically,
 * frozen channels, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mopt/mopt.h"
#include "mopt/sparsity.h"
#include "rt_testutil.h"

static float *wdata(mopt_graph *g, int t) {
    return (float *)(void *)g->buffers[g->tensors[t].buffer].data;
}

static int conv(mopt_graph *g, rng *r, int in, int oc, int k, int stride, mopt_padding pad,
                mopt_activation act, const char *name) {
    /* copy what is needed: adding tensors may move g->tensors */
    const int32_t ic = g->tensors[in].dims[3], ih = g->tensors[in].dims[1],
                  iw = g->tensors[in].dims[2];
    int32_t dw[4] = {oc, k, k, ic}, db[1] = {oc};
    float *w = malloc((size_t)(oc * k * k * ic) * sizeof *w), *b = malloc((size_t)oc * sizeof *b);
    rng_fill(r, w, (size_t)(oc * k * k * ic));
    rng_fill(r, b, (size_t)oc);
    char nw[64], nb[64];
    snprintf(nw, sizeof nw, "%s/w", name);
    snprintf(nb, sizeof nb, "%s/b", name);
    int tw = t_cf32(g, nw, 4, dw, w), tb = t_cf32(g, nb, 1, db, b);
    free(w);
    free(b);
    int32_t pb;
    int32_t oh = mopt_conv_out_size(pad, ih, k, stride, 1, &pb);
    int32_t ow = mopt_conv_out_size(pad, iw, k, stride, 1, &pb);
    int32_t dout[4] = {1, oh, ow, oc};
    int out = t_f32(g, name, 4, dout);
    int32_t ins[3] = {in, tw, tb};
    int op = add_op(g, MOPT_OP_CONV_2D, ins, 3, out);
    g->ops[op].has_options = true;
    g->ops[op].p.conv.padding = pad;
    g->ops[op].p.conv.stride_w = g->ops[op].p.conv.stride_h = stride;
    g->ops[op].p.conv.act = act;
    return out;
}

static int dwconv(mopt_graph *g, rng *r, int in, mopt_activation act, const char *name) {
    int32_t shape[4];
    memcpy(shape, g->tensors[in].dims, sizeof shape);
    int c = shape[3];
    int32_t dw[4] = {1, 3, 3, c}, db[1] = {c};
    float *w = malloc((size_t)(9 * c) * sizeof *w), *b = malloc((size_t)c * sizeof *b);
    rng_fill(r, w, (size_t)(9 * c));
    rng_fill(r, b, (size_t)c);
    int tw = t_cf32(g, "dw/w", 4, dw, w), tb = t_cf32(g, "dw/b", 1, db, b);
    free(w);
    free(b);
    int32_t dout[4] = {1, shape[1], shape[2], c};
    int out = t_f32(g, name, 4, dout);
    int32_t ins[3] = {in, tw, tb};
    int op = add_op(g, MOPT_OP_DEPTHWISE_CONV_2D, ins, 3, out);
    g->ops[op].has_options = true;
    g->ops[op].p.conv.padding = MOPT_PAD_SAME;
    g->ops[op].p.conv.stride_w = g->ops[op].p.conv.stride_h = 1;
    g->ops[op].p.conv.depth_multiplier = 1;
    g->ops[op].p.conv.act = act;
    return out;
}

static int binop(mopt_graph *g, mopt_op_type type, int a, int b, mopt_activation act) {
    int32_t dims[MOPT_MAX_DIMS];
    memcpy(dims, g->tensors[a].dims, sizeof dims);
    int out = t_f32(g, "binop", g->tensors[a].rank, dims);
    int32_t ins[2] = {a, b};
    int op = add_op(g, type, ins, 2, out);
    g->ops[op].has_options = true;
    g->ops[op].p.binary.act = act;
    return out;
}

static int fc(mopt_graph *g, rng *r, int in, int units, mopt_activation act, const char *name) {
    int depth = g->tensors[in].dims[g->tensors[in].rank - 1];
    int32_t dw[2] = {units, depth}, db[1] = {units}, dout[2] = {1, units};
    float *w = malloc((size_t)(units * depth) * sizeof *w), *b = malloc((size_t)units * sizeof *b);
    rng_fill(r, w, (size_t)(units * depth));
    rng_fill(r, b, (size_t)units);
    char nw[64];
    snprintf(nw, sizeof nw, "%s/w", name);
    int tw = t_cf32(g, nw, 2, dw, w), tb = t_cf32(g, "fc/b", 1, db, b);
    free(w);
    free(b);
    int out = t_f32(g, name, 2, dout);
    int32_t ins[3] = {in, tw, tb};
    int op = add_op(g, MOPT_OP_FULLY_CONNECTED, ins, 3, out);
    g->ops[op].has_options = true;
    g->ops[op].p.fc.act = act;
    return out;
}

static int flatten(mopt_graph *g, int in) {
    int32_t f = g->tensors[in].dims[1] * g->tensors[in].dims[2] * g->tensors[in].dims[3];
    int32_t shape[2] = {-1, f}, ds[1] = {2}, dout[2] = {1, f};
    int ts = t_ci32(g, "shape", 1, ds, shape);
    int out = t_f32(g, "flat", 2, dout);
    int32_t ins[2] = {in, ts};
    int op = add_op(g, MOPT_OP_RESHAPE, ins, 2, out);
    g->ops[op].has_options = true;
    g->ops[op].p.reshape.n_new_shape = 2;
    g->ops[op].p.reshape.new_shape[0] = -1;
    g->ops[op].p.reshape.new_shape[1] = f;
    return out;
}

static int softmax(mopt_graph *g, int in) {
    int32_t dims[2] = {g->tensors[in].dims[0], g->tensors[in].dims[1]};
    int out = t_f32(g, "prob", 2, dims);
    int32_t ins[1] = {in};
    int op = add_op(g, MOPT_OP_SOFTMAX, ins, 1, out);
    g->ops[op].has_options = true;
    g->ops[op].p.softmax.beta = 1.0f;
    return out;
}

/* conv-relu, residual (conv, conv || 1x1 conv) + ADD relu, depthwise relu6,
 * max pool, conv, concat with another conv, mean, FC relu, FC, softmax. */
static mopt_graph *resnet_like(void) {
    mopt_graph *g = mopt_graph_create();
    rng r = {11u};
    int32_t din[4] = {1, 10, 10, 3};
    int in = t_f32(g, "input", 4, din);
    int a = conv(g, &r, in, 12, 3, 1, MOPT_PAD_SAME, MOPT_ACT_RELU, "c1");
    int b = conv(g, &r, a, 16, 3, 1, MOPT_PAD_SAME, MOPT_ACT_RELU, "c2");
    int b2 = conv(g, &r, b, 16, 3, 1, MOPT_PAD_SAME, MOPT_ACT_NONE, "c3");
    int sc = conv(g, &r, a, 16, 1, 1, MOPT_PAD_SAME, MOPT_ACT_NONE, "proj");
    int s = binop(g, MOPT_OP_ADD, b2, sc, MOPT_ACT_RELU);
    int d = dwconv(g, &r, s, MOPT_ACT_RELU6, "dw");
    int32_t dp[4] = {1, 5, 5, 16};
    int p = t_f32(g, "pool", 4, dp);
    int32_t pin[1] = {d};
    int op = add_op(g, MOPT_OP_MAX_POOL_2D, pin, 1, p);
    g->ops[op].has_options = true;
    g->ops[op].p.pool.padding = MOPT_PAD_VALID;
    g->ops[op].p.pool.filter_w = g->ops[op].p.pool.filter_h = 2;
    g->ops[op].p.pool.stride_w = g->ops[op].p.pool.stride_h = 2;
    int e1 = conv(g, &r, p, 8, 3, 1, MOPT_PAD_SAME, MOPT_ACT_RELU, "c4");
    int e2 = conv(g, &r, p, 6, 1, 1, MOPT_PAD_SAME, MOPT_ACT_RELU6, "c5");
    int32_t dcat[4] = {1, 5, 5, 14};
    int cat = t_f32(g, "cat", 4, dcat);
    int32_t cin[2] = {e1, e2};
    op = add_op(g, MOPT_OP_CONCATENATION, cin, 2, cat);
    g->ops[op].has_options = true;
    g->ops[op].p.concat.axis = -1;
    int32_t axes[2] = {1, 2}, dax[1] = {2}, dm[2] = {1, 14};
    int tax = t_ci32(g, "axes", 1, dax, axes);
    int m = t_f32(g, "mean", 2, dm);
    int32_t min_[2] = {cat, tax};
    op = add_op(g, MOPT_OP_MEAN, min_, 2, m);
    g->ops[op].has_options = true;
    int f1 = fc(g, &r, m, 20, MOPT_ACT_RELU, "fc1");
    int f2 = fc(g, &r, f1, 5, MOPT_ACT_NONE, "fc2");
    int out = softmax(g, f2);
    set_io1(g, in, out);
    return g;
}

/* conv-relu, maxpool, conv-relu, flatten, FC relu, FC, softmax (the cnn). */
static mopt_graph *cnn_like(void) {
    mopt_graph *g = mopt_graph_create();
    rng r = {5u};
    int32_t din[4] = {1, 12, 12, 1};
    int in = t_f32(g, "input", 4, din);
    int a = conv(g, &r, in, 8, 3, 1, MOPT_PAD_SAME, MOPT_ACT_RELU, "conv1");
    int b = conv(g, &r, a, 10, 3, 2, MOPT_PAD_VALID, MOPT_ACT_RELU, "conv2");
    int f = flatten(g, b);
    int h = fc(g, &r, f, 16, MOPT_ACT_RELU, "dense1");
    int o = fc(g, &r, h, 4, MOPT_ACT_NONE, "dense2");
    set_io1(g, in, softmax(g, o));
    return g;
}

/* ---- the test's own zeroing: forward walk of "channels that will vanish" ---- */

typedef struct zset {
    int n;
    uint8_t *z; /* per last-axis index */
} zset;

static void zero_planned(mopt_graph *g, const mopt_channel_prune_result *res) {
    zset *zs = calloc((size_t)g->n_tensors, sizeof *zs);
    for (int t = 0; t < g->n_tensors; t++) {
        const mopt_tensor *x = &g->tensors[t];
        zs[t].n = x->rank > 0 ? x->dims[x->rank - 1] : 0;
        zs[t].z = calloc((size_t)(zs[t].n + 1), 1);
    }
    for (int oi = 0; oi < g->n_ops; oi++) {
        const mopt_op *op = &g->ops[oi];
        int in0 = op->inputs[0], out = op->outputs[0];
        switch (op->type) {
        case MOPT_OP_CONV_2D:
        case MOPT_OP_FULLY_CONNECTED:
            for (int i = 0; i < res->n_layers; i++) {
                if (res->layers[i].op != oi)
                    continue;
                const mopt_tensor *w = &g->tensors[op->inputs[1]];
                int64_t per = mopt_tensor_numel(w) / w->dims[0];
                for (int k = 0; k < res->layers[i].n_removed; k++) {
                    int ch = res->layers[i].removed[k];
                    memset(wdata(g, op->inputs[1]) + ch * per, 0, (size_t)per * sizeof(float));
                    if (op->n_inputs > 2 && op->inputs[2] >= 0)
                        wdata(g, op->inputs[2])[ch] = 0.0f;
                    zs[out].z[ch] = 1;
                }
            }
            break;
        case MOPT_OP_DEPTHWISE_CONV_2D: {
            int c = zs[in0].n;
            for (int ch = 0; ch < c; ch++)
                if (zs[in0].z[ch]) {
                    for (int s = 0; s < 9; s++)
                        wdata(g, op->inputs[1])[s * c + ch] = 0.0f;
                    wdata(g, op->inputs[2])[ch] = 0.0f;
                    zs[out].z[ch] = 1;
                }
            break;
        }
        case MOPT_OP_ADD:
            for (int ch = 0; ch < zs[out].n; ch++)
                zs[out].z[ch] = zs[op->inputs[0]].z[ch] && zs[op->inputs[1]].z[ch];
            break;
        case MOPT_OP_CONCATENATION: {
            int off = 0;
            for (int i = 0; i < op->n_inputs; i++) {
                int t = op->inputs[i];
                memcpy(zs[out].z + off, zs[t].z, (size_t)zs[t].n);
                off += zs[t].n;
            }
            break;
        }
        case MOPT_OP_RESHAPE: {
            int c = zs[in0].n;
            for (int f = 0; f < zs[out].n; f++)
                zs[out].z[f] = zs[in0].z[f % c];
            break;
        }
        case MOPT_OP_SOFTMAX: break;
        default: /* RELU, pools, PAD, MEAN: channels pass through */
            if (zs[out].n == zs[in0].n)
                memcpy(zs[out].z, zs[in0].z, (size_t)zs[in0].n);
            break;
        }
    }
    for (int t = 0; t < g->n_tensors; t++)
        free(zs[t].z);
    free(zs);
}

static void run_random(const mopt_graph *g, float *out, size_t out_n, uint32_t seed) {
    const mopt_tensor *in = &g->tensors[g->inputs[0]];
    int64_t n = mopt_tensor_numel(in);
    float *x = malloc((size_t)n * sizeof *x);
    rng r = {seed};
    for (int64_t i = 0; i < n; i++)
        x[i] = rng_f(&r);
    mopt_error e;
    mopt_status st = run1(g, 1, x, (size_t)n * sizeof *x, out, out_n * sizeof *out, &e);
    if (st != MOPT_OK)
        fprintf(stderr, "run: %s\n", e.msg);
    assert_int_equal(st, MOPT_OK);
    free(x);
}

/* Plan on a copy, zero the planned channels in the original, prune the
 * zeroed graph: same plan, same outputs, fewer parameters. */
static void check_zero_channels_unchanged(mopt_graph *g, float sparsity, mopt_channel_norm norm,
                                          const char *what) {
    mopt_channel_prune_params p = mopt_channel_prune_default_params();
    p.sparsity = sparsity;
    p.norm = norm;
    mopt_error e;
    mopt_graph *plan_g = mopt_graph_clone(g);
    mopt_channel_prune_result plan;
    mopt_status st = mopt_channel_prune(plan_g, NULL, &p, &plan, &e);
    if (st != MOPT_OK)
        fprintf(stderr, "%s: %s\n", what, e.msg);
    assert_int_equal(st, MOPT_OK);
    int removed_any = 0;
    for (int i = 0; i < plan.n_layers; i++)
        removed_any += plan.layers[i].n_removed;
    assert_true(removed_any > 0);

    zero_planned(g, &plan);
    mopt_graph *pruned = mopt_graph_clone(g);
    mopt_channel_prune_result res;
    assert_int_equal(mopt_channel_prune(pruned, NULL, &p, &res, &e), MOPT_OK);
    assert_int_equal(res.n_layers, plan.n_layers);
    for (int i = 0; i < res.n_layers; i++) {
        assert_int_equal(res.layers[i].n_removed, plan.layers[i].n_removed);
        assert_memory_equal(res.layers[i].removed, plan.layers[i].removed,
                            (size_t)res.layers[i].n_removed * sizeof(int32_t));
    }
    assert_true(res.params_after < res.params_before);
    assert_int_equal(res.params_after, mopt_graph_param_count(pruned));
    assert_int_equal(mopt_graph_validate(pruned, &e), MOPT_OK);
    /* model I/O shapes unchanged */
    assert_memory_equal(g->tensors[g->inputs[0]].dims, pruned->tensors[pruned->inputs[0]].dims,
                        sizeof(int32_t) * MOPT_MAX_DIMS);
    const mopt_tensor *o = &g->tensors[g->outputs[0]];
    size_t on = (size_t)mopt_tensor_numel(o);
    assert_memory_equal(o->dims, pruned->tensors[pruned->outputs[0]].dims,
                        sizeof(int32_t) * MOPT_MAX_DIMS);
    float *ya = malloc(on * sizeof *ya), *yb = malloc(on * sizeof *yb);
    for (uint32_t s = 1; s <= 3; s++) {
        run_random(g, ya, on, s * 77u);
        run_random(pruned, yb, on, s * 77u);
        assert_true(close_f32(yb, ya, on, 1e-5f, 1e-4f, what));
    }
    /* And the written file is smaller and reads back. */
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    assert_int_equal(mopt_tflite_write_mem(g, &b1, &n1, &e), MOPT_OK);
    assert_int_equal(mopt_tflite_write_mem(pruned, &b2, &n2, &e), MOPT_OK);
    assert_true(n2 < n1);
    mopt_graph *back = NULL;
    assert_int_equal(mopt_tflite_read_mem(b2, n2, "pruned", &back, &e), MOPT_OK);
    assert_int_equal(mopt_graph_validate(back, &e), MOPT_OK);
    mopt_graph_free(back);
    free(b1);
    free(b2);
    free(ya);
    free(yb);
    mopt_channel_prune_result_free(&plan);
    mopt_channel_prune_result_free(&res);
    mopt_graph_free(plan_g);
    mopt_graph_free(pruned);
}

static void test_cnn_like(void **state) {
    (void)state;
    const float sps[] = {0.25f, 0.5f, 0.9f};
    for (int i = 0; i < 3; i++) {
        mopt_graph *g = cnn_like();
        check_zero_channels_unchanged(g, sps[i], i == 1 ? MOPT_CHANNEL_L2 : MOPT_CHANNEL_L1,
                                      "cnn_like");
        mopt_graph_free(g);
    }
    /* Shapes: 50% of conv1 (8 -> 4), conv2 (10 -> 5), dense1 (16 -> 8); the
     * flatten and dense1's input columns follow conv2 (5x5x10 -> 5x5x5). */
    mopt_graph *g = cnn_like();
    mopt_channel_prune_params p = mopt_channel_prune_default_params();
    mopt_channel_prune_result res;
    assert_int_equal(mopt_channel_prune(g, NULL, &p, &res, NULL), MOPT_OK);
    assert_int_equal(res.n_layers, 4);
    assert_int_equal(res.layers[0].channels_after, 4);
    assert_int_equal(res.layers[1].channels_after, 5);
    assert_int_equal(res.layers[2].channels_after, 8);
    assert_true(res.layers[3].frozen); /* dense2 feeds SOFTMAX -> graph output */
    assert_non_null(res.layers[3].reason);
    assert_int_equal(res.layers[3].channels_after, 4);
    const mopt_op *fc1 = &g->ops[3];
    assert_int_equal(g->tensors[fc1->inputs[0]].dims[1], 125);
    assert_int_equal(g->tensors[fc1->inputs[1]].dims[1], 125);
    assert_int_equal(g->tensors[fc1->inputs[1]].dims[0], 8);
    const int32_t *shape = mopt_tensor_data(g, g->ops[2].inputs[1]);
    assert_int_equal(shape[0], -1);
    assert_int_equal(shape[1], 125);
    assert_int_equal(g->ops[2].p.reshape.new_shape[1], 125);
    mopt_channel_prune_result_free(&res);
    mopt_graph_free(g);
}

static void test_resnet_like(void **state) {
    (void)state;
    const float sps[] = {0.3f, 0.5f, 0.75f};
    for (int i = 0; i < 3; i++) {
        mopt_graph *g = resnet_like();
        check_zero_channels_unchanged(g, sps[i], MOPT_CHANNEL_L1, "resnet_like");
        mopt_graph_free(g);
    }
    /* The two ADD branches (c3 and proj) lose the same channels, in one group. */
    mopt_graph *g = resnet_like();
    mopt_channel_prune_params p = mopt_channel_prune_default_params();
    mopt_channel_prune_result res;
    assert_int_equal(mopt_channel_prune(g, NULL, &p, &res, NULL), MOPT_OK);
    const mopt_channel_prune_layer *c3 = NULL, *proj = NULL, *c2 = NULL;
    for (int i = 0; i < res.n_layers; i++) {
        const char *nm = g->tensors[g->ops[res.layers[i].op].outputs[0]].name;
        if (strcmp(nm, "c3") == 0)
            c3 = &res.layers[i];
        if (strcmp(nm, "proj") == 0)
            proj = &res.layers[i];
        if (strcmp(nm, "c2") == 0)
            c2 = &res.layers[i];
    }
    assert_non_null(c3);
    assert_non_null(proj);
    assert_int_equal(c3->group, proj->group);
    assert_true(c3->group != c2->group);
    assert_int_equal(c3->n_removed, 8);
    assert_int_equal(c3->n_removed, proj->n_removed);
    assert_memory_equal(c3->removed, proj->removed, (size_t)c3->n_removed * sizeof(int32_t));
    mopt_channel_prune_result_free(&res);
    mopt_graph_free(g);
}

static void test_fixtures(void **state) {
    (void)state;
    const char *names[] = {"cnn", "dscnn", "resnet", "mobilenetv2"};
    for (int i = 0; i < 4; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/tests/fixtures/%s.tflite", MOPT_SOURCE_DIR, names[i]);
        mopt_graph *g = NULL;
        mopt_error e;
        assert_int_equal(mopt_tflite_read_file(path, &g, &e), MOPT_OK);
        check_zero_channels_unchanged(g, 0.5f, MOPT_CHANNEL_L1, names[i]);
        mopt_graph_free(g);
    }
}

static void test_select_and_errors(void **state) {
    (void)state;
    mopt_graph *g = cnn_like();
    mopt_error e;
    mopt_channel_prune_params p = mopt_channel_prune_default_params();
    bool *sel = calloc((size_t)g->n_ops, sizeof *sel);
    sel[1] = true; /* conv2 only */
    mopt_channel_prune_result res;
    assert_int_equal(mopt_channel_prune(g, sel, &p, &res, &e), MOPT_OK);
    assert_int_equal(res.n_layers, 1);
    assert_int_equal(res.layers[0].channels_after, 5);
    assert_int_equal(g->tensors[g->ops[0].outputs[0]].dims[3], 8); /* conv1 untouched */
    mopt_channel_prune_result_free(&res);
    memset(sel, 0, (size_t)g->n_ops);
    assert_int_equal(mopt_channel_prune(g, sel, &p, NULL, &e), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(e.msg, "no prunable layer"));
    p.sparsity = 1.0f;
    assert_int_equal(mopt_channel_prune(g, NULL, &p, NULL, &e), MOPT_ERR_ARG);
    assert_non_null(strstr(e.msg, "--sparsity"));
    /* quantized graphs are refused, untouched */
    p.sparsity = 0.5f;
    set_quant1(g, g->inputs[0], 0.5f, 0);
    mopt_graph *before = mopt_graph_clone(g);
    assert_int_equal(mopt_channel_prune(g, NULL, &p, NULL, &e), MOPT_ERR_UNSUPPORTED);
    assert_int_equal(g->n_tensors, before->n_tensors);
    assert_memory_equal(g->tensors[1].dims, before->tensors[1].dims, sizeof g->tensors[1].dims);
    mopt_graph_free(before);
    free(sel);
    mopt_graph_free(g);
}

static void test_zero_sparsity_is_identity(void **state) {
    (void)state;
    mopt_graph *g = resnet_like();
    mopt_graph *orig = mopt_graph_clone(g);
    mopt_channel_prune_params p = mopt_channel_prune_default_params();
    p.sparsity = 0.0f;
    mopt_channel_prune_result res;
    assert_int_equal(mopt_channel_prune(g, NULL, &p, &res, NULL), MOPT_OK);
    for (int i = 0; i < res.n_layers; i++)
        assert_int_equal(res.layers[i].n_removed, 0);
    assert_int_equal(res.params_after, res.params_before);
    for (int t = 0; t < orig->n_tensors; t++)
        assert_memory_equal(g->tensors[t].dims, orig->tensors[t].dims, sizeof g->tensors[t].dims);
    mopt_channel_prune_result_free(&res);
    mopt_graph_free(orig);
    mopt_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cnn_like),
        cmocka_unit_test(test_resnet_like),
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_select_and_errors),
        cmocka_unit_test(test_zero_sparsity_is_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
