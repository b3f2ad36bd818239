/* test_grad_ops.c - finite-difference gradient checks for every op of the
 * training engine.
 *
 * Each case builds a tiny training graph around one op, draws random
 * inputs and weights, and compares the analytic gradient of
 *     L = sum_i out_i * R_i        (R a fixed random projection)
 * w.r.t. the input and every trainable variable with central differences
 *     n = (L(x + h) - L(x - h)) / 2h,   L evaluated in double from float outputs.
 *
 * Tolerances (float32 engine):
 *  - GRAD_H = 1e-2 relative step (scaled by max(1, |x|)): large enough that
 *    float rounding of the outputs (~1e-7 relative, amplified by 1/h) stays
 *    ~1e-5, small enough that the O(h^2) truncation error of the central
 *    difference stays below ~1e-4 for these smooth-by-construction ops.
 *  - |analytic - numeric| <= GRAD_ATOL + GRAD_RTOL * max(|a|, |n|) with
 *    GRAD_RTOL = 1e-2 and GRAD_ATOL = 2e-3 * scale, scale = the largest
 *    |gradient| of the tensor (errors are absolute float noise of L).
 *  - Kinks (ReLU at 0, max-pool ties, clamps): a difference that straddles a
 *    non-differentiable point is detected by comparing steps h and h/2; the
 *    check then retries with steps 10x and 50x smaller. An element passes
 *    when the analytic value matches either estimate at some step size; it
 *    fails when it matches neither at the smallest step although the two
 *    estimates agree there (a smooth mismatch: a real error); otherwise it
 *    is skipped, and at most MAX_SKIP_FRAC of the elements may be.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mopt/train.h"
#include "train/tg_internal.h"

#define GRAD_H 1e-2
#define GRAD_RTOL 1e-2
#define GRAD_ATOL_FRAC 2e-3
#define MAX_SKIP_FRAC 0.1
#define MAX_CHECKS 160 /* elements checked per tensor (evenly spread) */

typedef struct gcase {
    mopt_tgraph *tg;
    int batch;
    float *x;
    float *r;
    int64_t nin, nout;
    uint64_t step;
} gcase;

static uint64_t g_seed = 12345;

static float frand(void) {
    g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((g_seed >> 40) & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f;
}

/* Starts a graph with a batched input of the given full shape (dims[0] = 1). */
static mopt_tgraph *new_graph(int rank, const int32_t *dims) {
    mopt_tgraph *tg = tg_new();
    assert_non_null(tg);
    tg->input = tg_add_value(tg, rank, dims, true);
    assert_true(tg->input >= 0);
    tg->vals[tg->input].producer = -1;
    return tg;
}

static int out_of(mopt_tgraph *tg, int node) {
    assert_true(node >= 0);
    return tg->nodes[node].out;
}

static double eval_loss(gcase *c) {
    mopt_error err;
    assert_int_equal(mopt_tgraph_forward(c->tg, c->x, c->batch, true, (int64_t)c->step, &err),
                     MOPT_OK);
    const float *y = mopt_tgraph_output(c->tg);
    double l = 0.0;
    for (int64_t i = 0; i < c->nout; i++) l += (double)y[i] * c->r[i];
    return l;
}

/* Finalises the graph, randomises variables and input (scaled by in_scale). */
static void setup_case(gcase *c, mopt_tgraph *tg, int output_value, int batch, float in_scale) {
    mopt_error err;
    tg->input_grad = true;
    assert_int_equal(tg_finalize(tg, output_value, &err), MOPT_OK);
    /* one thread: thousands of tiny forwards; thread counts are covered by
     * the determinism tests in test_train_engine.c */
    mopt_tgraph_set_num_threads(tg, 1);
    c->tg = tg;
    c->batch = batch;
    c->step = 7;
    c->nin = (int64_t)batch * tg->vals[tg->input].per;
    c->nout = (int64_t)batch * tg->vals[tg->output].per;
    c->x = malloc((size_t)c->nin * sizeof(float));
    c->r = malloc((size_t)c->nout * sizeof(float));
    for (int64_t i = 0; i < c->nin; i++) c->x[i] = frand() * in_scale;
    for (int64_t i = 0; i < c->nout; i++) c->r[i] = frand();
    for (int i = 0; i < mopt_tgraph_num_vars(tg); i++) {
        mopt_tvar *v = mopt_tgraph_var(tg, i);
        for (int64_t k = 0; k < v->numel; k++) {
            float u = frand();
            if (v->role == MOPT_TVAR_BN_GAMMA)
                v->data[k] = 1.0f + 0.5f * u;
            else if (v->role == MOPT_TVAR_BN_VAR)
                v->data[k] = 1.0f + 0.5f * fabsf(u);
            else
                v->data[k] = 0.5f * u;
        }
    }
}

static void free_case(gcase *c) {
    mopt_tgraph_free(c->tg);
    free(c->x);
    free(c->r);
}

/* Checks d L / d p for the n floats at p against `grad`. */
static void check_tensor(gcase *c, const char *what, float *p, const float *grad, int64_t n) {
    float *g = malloc((size_t)n * sizeof(float));
    memcpy(g, grad, (size_t)n * sizeof(float));
    double scale = 0.0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(g[i]));
    const double atol = GRAD_ATOL_FRAC * fmax(scale, 1e-3);
    int64_t stride = n > MAX_CHECKS ? n / MAX_CHECKS : 1;
    int checked = 0, skipped = 0, bad = 0;
    static const double levels[3] = {GRAD_H, GRAD_H / 10, GRAD_H / 50};
    for (int64_t i = 0; i < n; i += stride) {
        const float orig = p[i];
        const double a = g[i];
        bool ok = false, smooth_mismatch = false;
        double n1 = 0, n2 = 0;
        checked++;
        for (int lv = 0; lv < 3 && !ok; lv++) {
            /* steps as actually representable in float */
            const float xp = (float)(orig + levels[lv] * fmax(1.0, fabs(orig)));
            const float xm = (float)(orig - levels[lv] * fmax(1.0, fabs(orig)));
            const float xp2 = (float)(orig + levels[lv] / 2 * fmax(1.0, fabs(orig)));
            const float xm2 = (float)(orig - levels[lv] / 2 * fmax(1.0, fabs(orig)));
            p[i] = xp;
            double lp = eval_loss(c);
            p[i] = xm;
            double lm = eval_loss(c);
            p[i] = xp2;
            double lp2 = eval_loss(c);
            p[i] = xm2;
            double lm2 = eval_loss(c);
            p[i] = orig;
            n1 = (lp - lm) / ((double)xp - (double)xm);
            n2 = (lp2 - lm2) / ((double)xp2 - (double)xm2);
            bool smooth = fabs(n1 - n2) <= atol + GRAD_RTOL * fmax(fabs(n1), fabs(n2));
            ok = fabs(a - n1) <= atol + GRAD_RTOL * fmax(fabs(a), fabs(n1)) ||
                 fabs(a - n2) <= atol + GRAD_RTOL * fmax(fabs(a), fabs(n2));
            /* not ok and smooth: a real mismatch unless a smaller step agrees;
             * not smooth: a kink inside the step, try a smaller one */
            smooth_mismatch = !ok && smooth;
        }
        if (ok) continue;
        if (smooth_mismatch) {
            if (bad < 5)
                print_error("%s[%lld]: analytic %.6g numeric %.6g (h/2: %.6g)\n", what,
                            (long long)i, a, n1, n2);
            bad++;
        } else {
            skipped++; /* non-smooth at every step size tried */
            if (getenv("GRAD_DEBUG"))
                print_error("%s[%lld]: skipped, analytic %.6g, last numeric %.6g / %.6g\n", what,
                            (long long)i, a, n1, n2);
        }
    }
    if (skipped > MAX_SKIP_FRAC * checked + 1)
        print_error("%s: %d of %d elements skipped as kinks\n", what, skipped, checked);
    assert_true(skipped <= MAX_SKIP_FRAC * checked + 1);
    assert_int_equal(bad, 0);
    free(g);
}

/* Runs the analytic pass and checks the input and every trainable variable. */
static void run_check(gcase *c) {
    mopt_error err;
    /* restore a state where the forward matches */
    eval_loss(c);
    assert_int_equal(mopt_tgraph_set_output_grad(c->tg, c->r, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_backward(c->tg, &err), MOPT_OK);
    const int nv = mopt_tgraph_num_vars(c->tg);
    float **grads = calloc((size_t)nv + 1, sizeof(float *));
    for (int i = 0; i < nv; i++) {
        mopt_tvar *v = mopt_tgraph_var(c->tg, i);
        if (!(v->flags & MOPT_TVAR_TRAINABLE) || !v->grad) continue;
        grads[i] = malloc((size_t)v->numel * sizeof(float));
        memcpy(grads[i], v->grad, (size_t)v->numel * sizeof(float));
    }
    float *gx = malloc((size_t)c->nin * sizeof(float));
    memcpy(gx, mopt_tgraph_input_grad(c->tg), (size_t)c->nin * sizeof(float));
    check_tensor(c, "input", c->x, gx, c->nin);
    for (int i = 0; i < nv; i++) {
        mopt_tvar *v = mopt_tgraph_var(c->tg, i);
        if (grads[i]) check_tensor(c, v->name, v->data, grads[i], v->numel);
        free(grads[i]);
    }
    free(grads);
    free(gx);
}

/* ---- cases ---- */

static void conv_case(int h, int w, int ic, int oc, int k, int s, int d, mopt_padding pad,
                      bool bias, mopt_activation act) {
    int32_t dims[4] = {1, h, w, ic};
    mopt_tgraph *tg = new_graph(4, dims);
    mopt_error err;
    int n = tgb_conv(tg, tg->input, NULL, oc, k, k, s, s, d, d, pad, bias, act, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 2, 1.0f);
    run_check(&c);
    free_case(&c);
}

static void test_conv_same_stride1(void **st) {
    (void)st;
    conv_case(5, 6, 3, 4, 3, 1, 1, MOPT_PAD_SAME, true, MOPT_ACT_NONE);
}
static void test_conv_same_stride2_odd_pad(void **st) {
    (void)st;
    /* 7 wide, k 4, stride 2: total SAME padding 3 (odd): 1 before, 2 after */
    conv_case(7, 7, 2, 3, 4, 2, 1, MOPT_PAD_SAME, true, MOPT_ACT_TANH);
}
static void test_conv_valid_dilation2(void **st) {
    (void)st;
    conv_case(7, 8, 2, 3, 3, 1, 2, MOPT_PAD_VALID, false, MOPT_ACT_NONE);
}
static void test_conv_same_dilation2_stride2_relu(void **st) {
    (void)st;
    conv_case(8, 7, 3, 5, 3, 2, 2, MOPT_PAD_SAME, true, MOPT_ACT_RELU);
}
static void test_conv_pointwise_relu6(void **st) {
    (void)st;
    conv_case(4, 3, 5, 6, 1, 1, 1, MOPT_PAD_VALID, true, MOPT_ACT_RELU6);
}
static void test_conv_large_chunks(void **st) {
    (void)st;
    /* Bigger than one GEMM block in every dimension (K > 256 via 30 channels * 9). */
    conv_case(9, 9, 30, 40, 3, 1, 1, MOPT_PAD_SAME, true, MOPT_ACT_NONE);
}

static void test_conv_implicit_paths(void **st) {
    (void)st;
    /* >= 8 channels: implicit-GEMM forward and the flipped-kernel dX */
    conv_case(6, 7, 9, 10, 4, 1, 1, MOPT_PAD_SAME, true, MOPT_ACT_NONE); /* odd SAME padding */
    conv_case(7, 6, 8, 9, 3, 1, 2, MOPT_PAD_SAME, false, MOPT_ACT_TANH); /* dilation 2 */
    conv_case(7, 7, 8, 8, 3, 2, 1, MOPT_PAD_SAME, true, MOPT_ACT_NONE);  /* stride 2: col2im */
    conv_case(6, 6, 8, 8, 2, 1, 1, MOPT_PAD_VALID, true, MOPT_ACT_NONE); /* VALID */
}

static void test_conv_few_input_channels(void **st) {
    (void)st;
    /* K = KH*KW*C below OC: the k-major im2col weight-gradient path */
    conv_case(6, 5, 1, 12, 3, 1, 1, MOPT_PAD_SAME, true, MOPT_ACT_NONE);
    conv_case(7, 7, 2, 9, 2, 2, 1, MOPT_PAD_SAME, false, MOPT_ACT_TANH);
}

static void dw_case(int h, int w, int ic, int mult, int k, int s, int d, mopt_padding pad,
                    mopt_activation act) {
    int32_t dims[4] = {1, h, w, ic};
    mopt_tgraph *tg = new_graph(4, dims);
    mopt_error err;
    int n = tgb_dwconv(tg, tg->input, NULL, mult, k, k, s, s, d, d, pad, true, act, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 2, 1.0f);
    run_check(&c);
    free_case(&c);
}

static void test_dw_same(void **st) {
    (void)st;
    dw_case(6, 5, 4, 1, 3, 1, 1, MOPT_PAD_SAME, MOPT_ACT_NONE);
}
static void test_dw_mult2_stride2(void **st) {
    (void)st;
    dw_case(7, 7, 3, 2, 4, 2, 1, MOPT_PAD_SAME, MOPT_ACT_TANH);
}
static void test_dw_dilation2_valid(void **st) {
    (void)st;
    dw_case(8, 8, 3, 1, 3, 1, 2, MOPT_PAD_VALID, MOPT_ACT_RELU);
}

static void test_fc(void **st) {
    (void)st;
    int32_t dims[4] = {1, 3, 2, 5};
    mopt_tgraph *tg = new_graph(4, dims);
    mopt_error err;
    int n = tgb_fc(tg, tg->input, NULL, 7, true, false, MOPT_ACT_TANH, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 3, 1.0f);
    run_check(&c);
    free_case(&c);
}

static void test_fc_keep_dims(void **st) {
    (void)st;
    int32_t dims[3] = {1, 4, 6};
    mopt_tgraph *tg = new_graph(3, dims);
    mopt_error err;
    int n = tgb_fc(tg, tg->input, NULL, 5, true, true, MOPT_ACT_NONE, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 2, 1.0f);
    run_check(&c);
    free_case(&c);
}

static void test_batch_norm(void **st) {
    (void)st;
    int32_t dims[4] = {1, 3, 4, 5};
    mopt_tgraph *tg = new_graph(4, dims);
    mopt_error err;
    /* conv -> bn: gradients flow through the batch statistics into the conv */
    int n = tgb_conv(tg, tg->input, NULL, 4, 3, 3, 1, 1, 1, 1, MOPT_PAD_SAME, false,
                     MOPT_ACT_NONE, &err);
    n = tgb_bn(tg, out_of(tg, n), NULL, 0.9f, 1e-3f, MOPT_ACT_NONE, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 3, 1.0f);
    run_check(&c);
    free_case(&c);
}

static void test_batch_norm_relu(void **st) {
    (void)st;
    int32_t dims[4] = {1, 4, 3, 6};
    mopt_tgraph *tg = new_graph(4, dims);
    mopt_error err;
    int n = tgb_bn(tg, tg->input, NULL, 0.9f, 1e-3f, MOPT_ACT_RELU, &err);
    n = tgb_bn(tg, out_of(tg, n), NULL, 0.9f, 1e-3f, MOPT_ACT_RELU6, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 2, 1.0f);
    run_check(&c);
    free_case(&c);
}

static void test_batch_norm_frozen(void **st) {
    (void)st;
    /* frozen statistics: an affine map per channel */
    int32_t dims[4] = {1, 3, 2, 5};
    mopt_tgraph *tg = new_graph(4, dims);
    mopt_error err;
    int n = tgb_bn(tg, tg->input, NULL, 0.9f, 1e-3f, MOPT_ACT_TANH, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 2, 1.0f);
    mopt_tgraph_set_bn_frozen(tg, true);
    const mopt_tvar *mean = mopt_tgraph_var(tg, tg->nodes[n].bn_mean);
    float m0 = mean->data[0];
    run_check(&c);
    assert_true(mean->data[0] == m0); /* not updated */
    free_case(&c);
}

static void test_batch_norm_2d(void **st) {
    (void)st;
    int32_t dims[2] = {1, 6};
    mopt_tgraph *tg = new_graph(2, dims);
    mopt_error err;
    int n = tgb_bn(tg, tg->input, NULL, 0.99f, 1e-3f, MOPT_ACT_TANH, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 5, 1.0f);
    run_check(&c);
    free_case(&c);
}

static void binary_case(int kind, bool bcast_const, bool bcast_batched) {
    int32_t dims[4] = {1, 3, 4, 5};
    mopt_tgraph *tg = new_graph(4, dims);
    mopt_error err;
    int a = tg->input, b;
    if (bcast_const) {
        int32_t cd[1] = {5};
        float cv[5] = {0.5f, -1.0f, 2.0f, 0.25f, -0.75f};
        b = tg_add_const(tg, 1, cd, cv);
    } else if (bcast_batched) {
        bool axes[MOPT_MAX_DIMS] = {false, true, true, false, false, false};
        b = out_of(tg, tgb_mean(tg, a, NULL, axes, true, &err)); /* [B,1,1,C] */
    } else {
        b = out_of(tg, tgb_unary(tg, MOPT_OP_TANH, a, NULL, &err));
    }
    int n = tgb_binary(tg, kind, a, b, NULL, MOPT_ACT_NONE, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 2, 1.0f);
    run_check(&c);
    free_case(&c);
}

static void test_add(void **st) {
    (void)st;
    binary_case(MOPT_OP_ADD, false, false);
    binary_case(MOPT_OP_ADD, true, false);
    binary_case(MOPT_OP_ADD, false, true);
}
static void test_sub(void **st) {
    (void)st;
    binary_case(MOPT_OP_SUB, false, false);
    binary_case(MOPT_OP_SUB, true, false);
    binary_case(MOPT_OP_SUB, false, true);
}
static void test_mul(void **st) {
    (void)st;
    binary_case(MOPT_OP_MUL, false, false);
    binary_case(MOPT_OP_MUL, true, false);
    binary_case(MOPT_OP_MUL, false, true);
}

static void test_add_fused_relu_reversed_bcast(void **st) {
    (void)st;
    /* constant first, batched second, fused activation */
    int32_t dims[3] = {1, 4, 3};
    mopt_tgraph *tg = new_graph(3, dims);
    mopt_error err;
    int32_t cd[3] = {1, 4, 1};
    float cv[4] = {0.3f, -0.2f, 0.1f, 0.7f};
    int b = tg_add_const(tg, 3, cd, cv);
    int n = tgb_binary(tg, MOPT_OP_SUB, b, tg->input, NULL, MOPT_ACT_RELU, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 3, 1.0f);
    run_check(&c);
    free_case(&c);
}

static void test_concat(void **st) {
    (void)st;
    for (int axis = 1; axis <= 3; axis++) {
        int32_t dims[4] = {1, 3, 2, 4};
        mopt_tgraph *tg = new_graph(4, dims);
        mopt_error err;
        int t = out_of(tg, tgb_unary(tg, MOPT_OP_TANH, tg->input, NULL, &err));
        int s = out_of(tg, tgb_unary(tg, MOPT_OP_LOGISTIC, tg->input, NULL, &err));
        int ins[3] = {t, tg->input, s};
        int n = tgb_concat(tg, ins, 3, NULL, axis == 3 ? -1 : axis, MOPT_ACT_NONE, &err);
        gcase c;
        setup_case(&c, tg, out_of(tg, n), 2, 1.0f);
        run_check(&c);
        free_case(&c);
    }
}

static void test_pad(void **st) {
    (void)st;
    int32_t dims[4] = {1, 3, 2, 3};
    mopt_tgraph *tg = new_graph(4, dims);
    mopt_error err;
    int32_t before[4] = {0, 1, 0, 2}, after[4] = {0, 2, 1, 0};
    int n = tgb_pad(tg, tg->input, NULL, before, after, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 2, 1.0f);
    run_check(&c);
    free_case(&c);
}

static void test_reshape(void **st) {
    (void)st;
    int32_t dims[4] = {1, 3, 2, 4};
    mopt_tgraph *tg = new_graph(4, dims);
    mopt_error err;
    int32_t nd[3] = {-1, 6, -1};
    int n = tgb_reshape(tg, tg->input, NULL, 3, nd, &err);
    assert_true(n >= 0);
    assert_int_equal(tg->vals[tg->nodes[n].out].dims[2], 4);
    /* tanh after so the loss is not linear in every element */
    n = tgb_unary(tg, MOPT_OP_TANH, out_of(tg, n), NULL, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 2, 1.0f);
    run_check(&c);
    free_case(&c);
}

static void test_transpose(void **st) {
    (void)st;
    int32_t dims[4] = {1, 3, 2, 4};
    mopt_tgraph *tg = new_graph(4, dims);
    mopt_error err;
    int32_t perm[4] = {0, 3, 1, 2};
    int n = tgb_transpose(tg, tg->input, NULL, perm, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 2, 1.0f);
    run_check(&c);
    free_case(&c);
}

static void pool_case(int kind, int h, int w, int k, int s, mopt_padding pad,
                      mopt_activation act) {
    int32_t dims[4] = {1, h, w, 3};
    mopt_tgraph *tg = new_graph(4, dims);
    mopt_error err;
    int n = tgb_pool(tg, kind, tg->input, NULL, k, k, s, s, pad, act, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 2, 1.0f);
    run_check(&c);
    free_case(&c);
}

static void test_avg_pool(void **st) {
    (void)st;
    pool_case(MOPT_OP_AVERAGE_POOL_2D, 6, 6, 2, 2, MOPT_PAD_VALID, MOPT_ACT_NONE);
    pool_case(MOPT_OP_AVERAGE_POOL_2D, 7, 5, 3, 2, MOPT_PAD_SAME, MOPT_ACT_NONE); /* clipped windows */
    pool_case(MOPT_OP_AVERAGE_POOL_2D, 5, 5, 3, 1, MOPT_PAD_SAME, MOPT_ACT_TANH);
}

static void test_max_pool(void **st) {
    (void)st;
    pool_case(MOPT_OP_MAX_POOL_2D, 6, 6, 2, 2, MOPT_PAD_VALID, MOPT_ACT_NONE);
    pool_case(MOPT_OP_MAX_POOL_2D, 7, 5, 3, 2, MOPT_PAD_SAME, MOPT_ACT_NONE); /* overlapping */
    pool_case(MOPT_OP_MAX_POOL_2D, 5, 5, 3, 1, MOPT_PAD_SAME, MOPT_ACT_RELU6);
}

static void test_mean(void **st) {
    (void)st;
    bool cases[3][MOPT_MAX_DIMS] = {
        {false, true, true, false, false, false},
        {false, false, true, true, false, false},
        {false, true, false, true, false, false},
    };
    for (int k = 0; k < 3; k++)
        for (int keep = 0; keep < 2; keep++) {
            int32_t dims[4] = {1, 3, 4, 5};
            mopt_tgraph *tg = new_graph(4, dims);
            mopt_error err;
            int n = tgb_mean(tg, tg->input, NULL, cases[k], keep != 0, &err);
            gcase c;
            setup_case(&c, tg, out_of(tg, n), 2, 1.0f);
            run_check(&c);
            free_case(&c);
        }
}

static void unary_case(int kind, float scale) {
    int32_t dims[3] = {1, 5, 7};
    mopt_tgraph *tg = new_graph(3, dims);
    mopt_error err;
    int n = tgb_unary(tg, kind, tg->input, NULL, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 3, scale);
    run_check(&c);
    free_case(&c);
}

static void test_relu(void **st) {
    (void)st;
    unary_case(MOPT_OP_RELU, 2.0f);
}
static void test_relu6(void **st) {
    (void)st;
    unary_case(MOPT_OP_RELU6, 9.0f); /* values on both clamps */
}
static void test_logistic(void **st) {
    (void)st;
    unary_case(MOPT_OP_LOGISTIC, 4.0f);
}
static void test_tanh(void **st) {
    (void)st;
    unary_case(MOPT_OP_TANH, 3.0f);
}
static void test_hard_swish(void **st) {
    (void)st;
    unary_case(MOPT_OP_HARD_SWISH, 5.0f); /* all three pieces */
}

static void test_softmax_op(void **st) {
    (void)st;
    int32_t dims[2] = {1, 6};
    mopt_tgraph *tg = new_graph(2, dims);
    mopt_error err;
    int n = tgb_softmax(tg, tg->input, NULL, 1.5f, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 3, 2.0f);
    run_check(&c);
    free_case(&c);
}

static void test_dropout(void **st) {
    (void)st;
    int32_t dims[2] = {1, 40};
    mopt_tgraph *tg = new_graph(2, dims);
    mopt_error err;
    int n = tgb_dropout(tg, tg->input, NULL, 0.3f, &err);
    n = tgb_unary(tg, MOPT_OP_TANH, out_of(tg, n), NULL, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 4, 1.0f);
    /* the mask is a function of (seed, step): same in every evaluation */
    run_check(&c);
    /* about 30% dropped; inference is the identity */
    eval_loss(&c);
    const float *y = c.tg->vals[c.tg->nodes[0].out].data;
    int zeros = 0;
    for (int64_t i = 0; i < c.nin; i++) zeros += y[i] == 0.0f;
    assert_true(zeros > c.nin / 10 && zeros < c.nin / 2);
    assert_int_equal(mopt_tgraph_forward(c.tg, c.x, c.batch, false, 0, &err), MOPT_OK);
    y = c.tg->vals[c.tg->nodes[0].out].data;
    for (int64_t i = 0; i < c.nin; i++) assert_true(y[i] == c.x[i]);
    free_case(&c);
}

/* Softmax cross-entropy: gradient of the mean loss w.r.t. the logits. */
static void test_softmax_ce(void **st) {
    (void)st;
    int32_t dims[2] = {1, 5};
    mopt_tgraph *tg = new_graph(2, dims);
    mopt_error err;
    int n = tgb_reshape(tg, tg->input, NULL, 2, (int32_t[]){1, 5}, &err);
    gcase c;
    setup_case(&c, tg, out_of(tg, n), 4, 3.0f);
    int32_t labels[4] = {0, 3, 4, 1};
    /* large logits must not overflow */
    c.x[0] = 80.0f;
    c.x[1] = -90.0f;
    double loss;
    int correct;
    assert_int_equal(mopt_tgraph_forward(tg, c.x, 4, true, 0, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_loss_softmax_ce(tg, labels, &loss, &correct, &err), MOPT_OK);
    assert_true(isfinite(loss));
    assert_int_equal(mopt_tgraph_backward(tg, &err), MOPT_OK);
    const float *gx = mopt_tgraph_input_grad(tg);
    for (int b = 0; b < 4; b++)
        for (int j = 0; j < 5; j++) {
            float *p = &c.x[b * 5 + j];
            float o = *p;
            double h = 1e-2;
            double l[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                *p = (float)(o + (sgn ? -h : h));
                /* the loss in double directly from the definition */
                double tot = 0;
                for (int bb = 0; bb < 4; bb++) {
                    double m = -1e300, s = 0;
                    for (int k = 0; k < 5; k++) m = fmax(m, c.x[bb * 5 + k]);
                    for (int k = 0; k < 5; k++) s += exp(c.x[bb * 5 + k] - m);
                    tot += m + log(s) - c.x[bb * 5 + labels[bb]];
                }
                l[sgn] = tot / 4;
            }
            *p = o;
            double num = (l[0] - l[1]) / (2 * h);
            assert_true(fabs(num - gx[b * 5 + j]) <= 1e-4 + 1e-3 * fabs(num));
        }
    /* the definition of the loss value itself */
    double tot = 0;
    for (int bb = 0; bb < 4; bb++) {
        double m = -1e300, s = 0;
        for (int k = 0; k < 5; k++) m = fmax(m, c.x[bb * 5 + k]);
        for (int k = 0; k < 5; k++) s += exp(c.x[bb * 5 + k] - m);
        tot += m + log(s) - c.x[bb * 5 + labels[bb]];
    }
    assert_true(fabs(tot / 4 - loss) < 1e-5 * fmax(1.0, fabs(loss)));
    free_case(&c);
}

/* A small network through several ops at once (residual adds, depthwise,
 * batch norm, concat, global pooling). Smooth activations: with batch norm
 * over few samples, ReLU kinks are hit by even the smallest steps. */
static void test_composite_network(void **st) {
    (void)st;
    mopt_arch_options o = mopt_arch_default_options();
    o.in_h = 6;
    o.in_w = 6;
    o.num_classes = 3;
    mopt_tgraph *tg = NULL;
    mopt_error err;
    assert_int_equal(
        mopt_tgraph_from_spec("conv 4 3 bn tanh; mark r; conv 4 3 bn tanh; conv 4 3 bn; add r; "
                              "tanh; dw 3 s 2 bn tanh; conv 6 1 bn tanh; avgpool 1; mark a; "
                              "conv 6 1 tanh; add a; concat a; gap; fc classes",
                              &o, &tg, &err),
        MOPT_OK);
    gcase c;
    memset(&c, 0, sizeof(c));
    mopt_tgraph_set_input_grad(tg, true);
    mopt_tgraph_set_num_threads(tg, 1);
    c.tg = tg;
    c.batch = 3;
    c.step = 3;
    c.nin = 3 * 36;
    c.nout = 3 * 3;
    c.x = malloc((size_t)c.nin * sizeof(float));
    c.r = malloc((size_t)c.nout * sizeof(float));
    for (int64_t i = 0; i < c.nin; i++) c.x[i] = frand();
    for (int64_t i = 0; i < c.nout; i++) c.r[i] = frand();
    run_check(&c);
    free_case(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_same_stride1),
        cmocka_unit_test(test_conv_same_stride2_odd_pad),
        cmocka_unit_test(test_conv_valid_dilation2),
        cmocka_unit_test(test_conv_same_dilation2_stride2_relu),
        cmocka_unit_test(test_conv_pointwise_relu6),
        cmocka_unit_test(test_conv_large_chunks),
        cmocka_unit_test(test_conv_implicit_paths),
        cmocka_unit_test(test_conv_few_input_channels),
        cmocka_unit_test(test_dw_same),
        cmocka_unit_test(test_dw_mult2_stride2),
        cmocka_unit_test(test_dw_dilation2_valid),
        cmocka_unit_test(test_fc),
        cmocka_unit_test(test_fc_keep_dims),
        cmocka_unit_test(test_batch_norm),
        cmocka_unit_test(test_batch_norm_2d),
        cmocka_unit_test(test_batch_norm_frozen),
        cmocka_unit_test(test_batch_norm_relu),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_sub),
        cmocka_unit_test(test_mul),
        cmocka_unit_test(test_add_fused_relu_reversed_bcast),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_pad),
        cmocka_unit_test(test_reshape),
        cmocka_unit_test(test_transpose),
        cmocka_unit_test(test_avg_pool),
        cmocka_unit_test(test_max_pool),
        cmocka_unit_test(test_mean),
        cmocka_unit_test(test_relu),
        cmocka_unit_test(test_relu6),
        cmocka_unit_test(test_logistic),
        cmocka_unit_test(test_tanh),
        cmocka_unit_test(test_hard_swish),
        cmocka_unit_test(test_softmax_op),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_softmax_ce),
        cmocka_unit_test(test_composite_network),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
