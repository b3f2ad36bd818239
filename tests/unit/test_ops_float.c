/* Unit tests for every float kernel, run through the interpreter on one-op
 * graphs and compared with naive references written here (double
 * accumulation, TFLite formulas). Every case also checks that 1 and 2
 * threads give identical bytes and that the guard bytes after the outputs
 * are intact. Sizes are awkward on purpose: primes, channels that are not a
 * multiple of the vector width, stride 2, dilation 2, odd SAME padding,
 * batch > 1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rt_testutil.h"
#include "runtime/interp_internal.h"

#define MAXIO 4

/* Runs g with the given graph inputs (float or raw bytes), 1 and 2 threads;
 * copies output 0 into out (bytes of the output tensor). */
static void run_graph(const mopt_graph *g, const void *const *ins, void *out) {
    void *outs[2] = {NULL, NULL};
    size_t ob = (size_t)mopt_tensor_nbytes(&g->tensors[g->outputs[0]]);
    for (int k = 0; k < 2; k++) {
        mopt_interp_options o = mopt_interp_default_options();
        o.num_threads = k + 1;
        mopt_interp *it = NULL;
        mopt_error e;
        mopt_error_clear(&e);
        mopt_status st = mopt_interp_create(g, &o, &it, &e);
        if (st) fprintf(stderr, "create: %s\n", e.msg);
        assert_int_equal(st, MOPT_OK);
        for (int i = 0; i < g->n_inputs; i++) {
            size_t nb = (size_t)mopt_tensor_nbytes(&g->tensors[g->inputs[i]]);
            memcpy(mopt_interp_input(it, i), ins[i], nb);
        }
        st = mopt_interp_invoke(it, &e);
        if (st) fprintf(stderr, "invoke: %s\n", e.msg);
        assert_int_equal(st, MOPT_OK);
        assert_true(mopt_interp_guards_intact(it));
        for (int i = 0; i < g->n_ops; i++) assert_non_null(mopt_interp_kernel_name(it, i));
        outs[k] = malloc(ob ? ob : 1);
        memcpy(outs[k], mopt_interp_output(it, 0), ob);
        mopt_interp_free(it);
    }
    assert_memory_equal(outs[0], outs[1], ob);
    memcpy(out, outs[0], ob);
    free(outs[0]);
    free(outs[1]);
}

static float *rand_buf(rng *r, size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    rng_fill(r, p, n);
    return p;
}

static float act_apply(mopt_activation a, double v) {
    float f = (float)v;
    switch (a) {
    case MOPT_ACT_RELU: return f < 0 ? 0 : f;
    case MOPT_ACT_RELU6: return f < 0 ? 0 : (f > 6 ? 6 : f);
    case MOPT_ACT_RELU_N1_TO_1: return f < -1 ? -1 : (f > 1 ? 1 : f);
    default: return f;
    }
}

/* ---- CONV_2D / DEPTHWISE_CONV_2D ---- */

typedef struct cv {
    int n, h, w, ic, oc, kh, kw, sh, sw, dh, dw;
    mopt_padding pad;
    mopt_activation act;
    int bias, depthwise;
} cv;

static void conv_case(const cv *c, uint32_t seed) {
    rng r = {seed};
    mopt_graph *g = mopt_graph_create();
    int32_t pt, pl;
    int oh = mopt_conv_out_size(c->pad, c->h, c->kh, c->sh, c->dh, &pt);
    int ow = mopt_conv_out_size(c->pad, c->w, c->kw, c->sw, c->dw, &pl);
    size_t nw = (size_t)c->oc * c->kh * c->kw * (c->depthwise ? 1 : c->ic);
    float *w = rand_buf(&r, nw), *b = rand_buf(&r, (size_t)c->oc);
    size_t ni = (size_t)c->n * c->h * c->w * c->ic, no = (size_t)c->n * oh * ow * c->oc;
    float *x = rand_buf(&r, ni);
    for (size_t i = 0; i < ni; i++) x[i] *= 4.0f; /* exercise the clamps */
    int xt = t_f32(g, "x", 4, (int32_t[]){c->n, c->h, c->w, c->ic});
    int wt = c->depthwise ? t_cf32(g, "w", 4, (int32_t[]){1, c->kh, c->kw, c->oc}, w)
                          : t_cf32(g, "w", 4, (int32_t[]){c->oc, c->kh, c->kw, c->ic}, w);
    int bt = c->bias ? t_cf32(g, "b", 1, (int32_t[]){c->oc}, b) : -1;
    int yt = t_f32(g, "y", 4, (int32_t[]){c->n, oh, ow, c->oc});
    int o = add_op(g, c->depthwise ? MOPT_OP_DEPTHWISE_CONV_2D : MOPT_OP_CONV_2D,
                   (int32_t[]){xt, wt, bt}, 3, yt);
    mopt_conv_params *p = &g->ops[o].p.conv;
    p->padding = c->pad;
    p->stride_h = c->sh;
    p->stride_w = c->sw;
    p->dilation_h = c->dh;
    p->dilation_w = c->dw;
    p->act = c->act;
    p->depth_multiplier = c->depthwise ? c->oc / c->ic : 0;
    set_io1(g, xt, yt);
    float *got = malloc(no * 4);
    run_graph(g, (const void *[]){x}, got);
    int mult = c->oc / c->ic;
    for (int n = 0; n < c->n; n++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int oc = 0; oc < c->oc; oc++) {
                    double acc = c->bias ? b[oc] : 0, mag = fabs(acc);
                    for (int ky = 0; ky < c->kh; ky++)
                        for (int kx = 0; kx < c->kw; kx++) {
                            int iy = oy * c->sh - pt + ky * c->dh,
                                ix = ox * c->sw - pl + kx * c->dw;
                            if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w) continue;
                            const float *xp = x + (((size_t)n * c->h + iy) * c->w + ix) * c->ic;
                            if (c->depthwise) {
                                double t =
                                    (double)xp[oc / mult] * w[(ky * c->kw + kx) * c->oc + oc];
                                acc += t;
                                mag += fabs(t);
                            } else {
                                for (int ic = 0; ic < c->ic; ic++) {
                                    double t = (double)xp[ic] *
                                               w[((oc * c->kh + ky) * c->kw + kx) * c->ic + ic];
                                    acc += t;
                                    mag += fabs(t);
                                }
                            }
                        }
                    size_t i = (((size_t)n * oh + oy) * ow + ox) * c->oc + oc;
                    float want = act_apply(c->act, acc);
                    if (!(fabs(got[i] - want) <= 1e-6 * (mag + 1e-3)))
                        fprintf(stderr, "conv elem %zu: %g vs %g\n", i, (double)got[i],
                                (double)want);
                    assert_true(fabs(got[i] - want) <= 1e-6 * (mag + 1e-3));
                }
    free(w);
    free(b);
    free(x);
    free(got);
    mopt_graph_free(g);
}

static void test_conv2d(void **state) {
    (void)state;
    const cv cases[] = {
        {1, 5, 5, 3, 4, 3, 3, 1, 1, 1, 1, MOPT_PAD_SAME, MOPT_ACT_NONE, 1, 0},
        {2, 7, 9, 5, 17, 3, 3, 2, 2, 1, 1, MOPT_PAD_SAME, MOPT_ACT_RELU, 1, 0},
        {1, 11, 13, 7, 33, 3, 3, 1, 1, 2, 2, MOPT_PAD_SAME, MOPT_ACT_RELU6, 0, 0},
        {1, 12, 10, 16, 40, 1, 1, 1, 1, 1, 1, MOPT_PAD_VALID, MOPT_ACT_RELU_N1_TO_1, 1, 0},
        {3, 6, 8, 2, 8, 4, 2, 2, 3, 1, 1, MOPT_PAD_SAME, MOPT_ACT_NONE, 1, 0},
        {1, 9, 9, 3, 5, 5, 5, 2, 2, 1, 1, MOPT_PAD_VALID, MOPT_ACT_NONE, 1, 0},
        {1, 4, 4, 64, 129, 3, 3, 1, 1, 1, 1, MOPT_PAD_SAME, MOPT_ACT_RELU, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        conv_case(&cases[i], 11 + (uint32_t)i);
}

static void test_depthwise(void **state) {
    (void)state;
    const cv cases[] = {
        {1, 7, 7, 17, 17, 3, 3, 1, 1, 1, 1, MOPT_PAD_SAME, MOPT_ACT_RELU6, 1, 1},
        {2, 9, 8, 33, 33, 3, 3, 2, 2, 1, 1, MOPT_PAD_SAME, MOPT_ACT_NONE, 1, 1},
        {1, 10, 11, 5, 5, 3, 3, 1, 2, 2, 2, MOPT_PAD_SAME, MOPT_ACT_RELU, 0, 1},
        {1, 6, 7, 3, 6, 3, 3, 1, 1, 1, 1, MOPT_PAD_SAME, MOPT_ACT_NONE, 1, 1},    /* mult 2 */
        {2, 8, 5, 4, 12, 2, 3, 2, 1, 2, 1, MOPT_PAD_VALID, MOPT_ACT_RELU6, 1, 1}, /* mult 3 */
        {1, 5, 5, 64, 64, 5, 5, 2, 2, 1, 1, MOPT_PAD_SAME, MOPT_ACT_NONE, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        conv_case(&cases[i], 31 + (uint32_t)i);
}

static void test_conv_refuses_tanh_act(void **state) {
    (void)state;
    mopt_graph *g = mopt_graph_create();
    float w[2 * 3] = {0};
    int x = t_f32(g, "x", 4, (int32_t[]){1, 2, 2, 3});
    int wt = t_cf32(g, "w", 4, (int32_t[]){2, 1, 1, 3}, w);
    int y = t_f32(g, "y", 4, (int32_t[]){1, 2, 2, 2});
    int o = add_op(g, MOPT_OP_CONV_2D, (int32_t[]){x, wt}, 2, y);
    g->ops[o].p.conv.act = MOPT_ACT_TANH;
    set_io1(g, x, y);
    mopt_interp *it = NULL;
    mopt_error e;
    assert_int_equal(mopt_interp_create(g, NULL, &it, &e), MOPT_ERR_UNSUPPORTED);
    assert_null(it);
    assert_non_null(strstr(e.msg, "operator 0 (CONV_2D)"));
    assert_non_null(strstr(e.msg, "TANH"));
    mopt_graph_free(g);
}

/* ---- FULLY_CONNECTED ---- */

static void fc_case(int rank, const int32_t *xd, int units, bool keep, bool bias,
                    mopt_activation act) {
    rng r = {(uint32_t)(units * 7 + rank)};
    mopt_graph *g = mopt_graph_create();
    int depth = xd[rank - 1];
    size_t ni = (size_t)dims_numel(rank, xd), rows = ni / (size_t)depth;
    float *x = rand_buf(&r, ni), *w = rand_buf(&r, (size_t)units * depth),
          *b = rand_buf(&r, (size_t)units);
    int xt = t_f32(g, "x", rank, xd);
    int wt = t_cf32(g, "w", 2, (int32_t[]){units, depth}, w);
    int bt = bias ? t_cf32(g, "b", 1, (int32_t[]){units}, b) : -1;
    int32_t yd[MOPT_MAX_DIMS];
    int yr;
    if (keep) {
        memcpy(yd, xd, sizeof(int32_t) * (size_t)rank);
        yd[rank - 1] = units;
        yr = rank;
    } else {
        yd[0] = (int32_t)rows;
        yd[1] = units;
        yr = 2;
    }
    int yt = t_f32(g, "y", yr, yd);
    int o = add_op(g, MOPT_OP_FULLY_CONNECTED, (int32_t[]){xt, wt, bt}, bias ? 3 : 2, yt);
    g->ops[o].p.fc.keep_num_dims = keep;
    g->ops[o].p.fc.act = act;
    set_io1(g, xt, yt);
    float *got = malloc(rows * (size_t)units * 4);
    run_graph(g, (const void *[]){x}, got);
    for (size_t m = 0; m < rows; m++)
        for (int u = 0; u < units; u++) {
            double acc = bias ? b[u] : 0, mag = fabs(acc);
            for (int k = 0; k < depth; k++) {
                double t = (double)x[m * depth + k] * w[(size_t)u * depth + k];
                acc += t;
                mag += fabs(t);
            }
            float want = act_apply(act, acc);
            assert_true(fabs(got[m * units + u] - want) <= 1e-6 * (mag + 1e-3));
        }
    free(x);
    free(w);
    free(b);
    free(got);
    mopt_graph_free(g);
}

static void test_fully_connected(void **state) {
    (void)state;
    fc_case(2, (int32_t[]){1, 37}, 10, false, true, MOPT_ACT_NONE);
    fc_case(2, (int32_t[]){3, 129}, 67, false, false, MOPT_ACT_RELU);
    fc_case(3, (int32_t[]){2, 5, 23}, 7, true, true, MOPT_ACT_RELU6);
    fc_case(4, (int32_t[]){2, 3, 1, 11}, 33, false, true, MOPT_ACT_NONE);
    fc_case(2, (int32_t[]){1, 1024}, 300, false, true, MOPT_ACT_NONE); /* threads split N */
}

/* ---- ADD / SUB / MUL ---- */

static void binary_case(mopt_op_type type, int ra, const int32_t *da, int rb, const int32_t *db,
                        mopt_activation act) {
    rng r = {(uint32_t)(type * 13 + ra * 3 + rb)};
    mopt_graph *g = mopt_graph_create();
    int ry = ra > rb ? ra : rb;
    int32_t dy[MOPT_MAX_DIMS];
    for (int i = 0; i < ry; i++) {
        int ia = i - (ry - ra), ib = i - (ry - rb);
        int32_t x = ia >= 0 ? da[ia] : 1, y = ib >= 0 ? db[ib] : 1;
        dy[i] = x == 1 ? y : x;
    }
    size_t na = (size_t)dims_numel(ra, da), nb = (size_t)dims_numel(rb, db),
           ny = (size_t)dims_numel(ry, dy);
    float *a = rand_buf(&r, na), *b = rand_buf(&r, nb);
    for (size_t i = 0; i < na; i++) a[i] *= 3;
    int at = t_f32(g, "a", ra, da), bt = t_f32(g, "b", rb, db), yt = t_f32(g, "y", ry, dy);
    int o = add_op(g, type, (int32_t[]){at, bt}, 2, yt);
    g->ops[o].p.binary.act = act;
    int32_t ins[2] = {at, bt}, outs[1] = {yt};
    mopt_graph_set_io(g, ins, 2, outs, 1);
    float *got = malloc(ny * 4);
    run_graph(g, (const void *[]){a, b}, got);
    /* Naive: decompose the output index and map it into each input. */
    for (size_t i = 0; i < ny; i++) {
        size_t rem = i, ia = 0, ib = 0, sa = 1, sb = 1;
        for (int d = ry - 1; d >= 0; d--) {
            size_t idx = rem % (size_t)dy[d];
            rem /= (size_t)dy[d];
            int ka = d - (ry - ra), kb = d - (ry - rb);
            if (ka >= 0) {
                if (da[ka] != 1) ia += idx * sa;
                sa *= (size_t)da[ka];
            }
            if (kb >= 0) {
                if (db[kb] != 1) ib += idx * sb;
                sb *= (size_t)db[kb];
            }
        }
        float v = type == MOPT_OP_ADD   ? a[ia] + b[ib]
                  : type == MOPT_OP_SUB ? a[ia] - b[ib]
                                        : a[ia] * b[ib];
        float want = act_apply(act, v);
        if (got[i] != want) fprintf(stderr, "binary elem %zu: %g vs %g\n", i, got[i], want);
        assert_true(got[i] == want);
    }
    free(a);
    free(b);
    free(got);
    mopt_graph_free(g);
}

static void test_binary_broadcast(void **state) {
    (void)state;
    binary_case(MOPT_OP_ADD, 4, (int32_t[]){2, 5, 7, 3}, 4, (int32_t[]){2, 5, 7, 3}, MOPT_ACT_NONE);
    binary_case(MOPT_OP_ADD, 4, (int32_t[]){2, 5, 7, 3}, 1, (int32_t[]){3}, MOPT_ACT_RELU);
    binary_case(MOPT_OP_SUB, 1, (int32_t[]){3}, 4, (int32_t[]){2, 5, 7, 3}, MOPT_ACT_RELU6);
    binary_case(MOPT_OP_MUL, 4, (int32_t[]){2, 5, 7, 3}, 4, (int32_t[]){2, 1, 1, 3}, MOPT_ACT_NONE);
    binary_case(MOPT_OP_MUL, 3, (int32_t[]){4, 1, 6}, 2, (int32_t[]){5, 1}, MOPT_ACT_RELU_N1_TO_1);
    binary_case(MOPT_OP_SUB, 0, NULL, 2, (int32_t[]){3, 7}, MOPT_ACT_NONE);
    binary_case(MOPT_OP_ADD, 6, (int32_t[]){2, 1, 3, 1, 2, 5}, 6, (int32_t[]){1, 4, 3, 2, 1, 5},
                MOPT_ACT_NONE);
    binary_case(MOPT_OP_MUL, 4, (int32_t[]){1, 40, 40, 48}, 4, (int32_t[]){1, 40, 40, 48},
                MOPT_ACT_NONE); /* large enough to use 2 threads */
    binary_case(MOPT_OP_ADD, 4, (int32_t[]){1, 64, 33, 32}, 4, (int32_t[]){1, 1, 33, 1},
                MOPT_ACT_RELU);
}

/* ---- pooling ---- */

static void pool_case(mopt_op_type type, int n, int h, int w, int c, int fh, int fw, int sh, int sw,
                      mopt_padding pad, mopt_activation act) {
    rng r = {(uint32_t)(h * 31 + w + c)};
    mopt_graph *g = mopt_graph_create();
    int32_t pt, pl;
    int oh = mopt_conv_out_size(pad, h, fh, sh, 1, &pt),
        ow = mopt_conv_out_size(pad, w, fw, sw, 1, &pl);
    size_t ni = (size_t)n * h * w * c, no = (size_t)n * oh * ow * c;
    float *x = rand_buf(&r, ni);
    int xt = t_f32(g, "x", 4, (int32_t[]){n, h, w, c}),
        yt = t_f32(g, "y", 4, (int32_t[]){n, oh, ow, c});
    int o = add_op(g, type, (int32_t[]){xt}, 1, yt);
    mopt_pool_params *p = &g->ops[o].p.pool;
    p->filter_h = fh;
    p->filter_w = fw;
    p->stride_h = sh;
    p->stride_w = sw;
    p->padding = pad;
    p->act = act;
    set_io1(g, xt, yt);
    float *got = malloc(no * 4);
    run_graph(g, (const void *[]){x}, got);
    for (int b = 0; b < n; b++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int ch = 0; ch < c; ch++) {
                    double sum = 0, mx = -INFINITY;
                    int count = 0;
                    for (int fy = 0; fy < fh; fy++)
                        for (int fx = 0; fx < fw; fx++) {
                            int iy = oy * sh - pt + fy, ix = ox * sw - pl + fx;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                            float v = x[(((size_t)b * h + iy) * w + ix) * c + ch];
                            sum += v;
                            mx = v > mx ? v : mx;
                            count++;
                        }
                    float want = act_apply(act, type == MOPT_OP_MAX_POOL_2D ? mx : sum / count);
                    float gv = got[(((size_t)b * oh + oy) * ow + ox) * c + ch];
                    assert_true(fabsf(gv - want) <= 1e-6f);
                }
    free(x);
    free(got);
    mopt_graph_free(g);
}

static void test_pooling(void **state) {
    (void)state;
    pool_case(MOPT_OP_AVERAGE_POOL_2D, 2, 7, 9, 5, 3, 3, 2, 2, MOPT_PAD_SAME, MOPT_ACT_NONE);
    pool_case(MOPT_OP_AVERAGE_POOL_2D, 1, 6, 6, 17, 4, 2, 1, 3, MOPT_PAD_SAME, MOPT_ACT_RELU);
    pool_case(MOPT_OP_AVERAGE_POOL_2D, 1, 8, 8, 3, 8, 8, 1, 1, MOPT_PAD_VALID, MOPT_ACT_NONE);
    pool_case(MOPT_OP_MAX_POOL_2D, 2, 9, 7, 33, 2, 2, 2, 2, MOPT_PAD_SAME, MOPT_ACT_NONE);
    pool_case(MOPT_OP_MAX_POOL_2D, 1, 11, 5, 4, 3, 2, 2, 1, MOPT_PAD_VALID, MOPT_ACT_RELU6);
    pool_case(MOPT_OP_MAX_POOL_2D, 1, 64, 64, 32, 3, 3, 2, 2, MOPT_PAD_SAME, MOPT_ACT_NONE);
}

/* ---- MEAN ---- */

static void mean_case(int rank, const int32_t *xd, const int32_t *axes, int n_axes, bool keep) {
    rng r = {(uint32_t)(rank * 5 + n_axes)};
    mopt_graph *g = mopt_graph_create();
    bool red[MOPT_MAX_DIMS] = {false};
    for (int i = 0; i < n_axes; i++) red[axes[i] < 0 ? axes[i] + rank : axes[i]] = true;
    int32_t yd[MOPT_MAX_DIMS];
    int yr = 0;
    for (int d = 0; d < rank; d++)
        if (!red[d])
            yd[yr++] = xd[d];
        else if (keep)
            yd[yr++] = 1;
    size_t nx = (size_t)dims_numel(rank, xd);
    float *x = rand_buf(&r, nx);
    int xt = t_f32(g, "x", rank, xd), at = t_ci32(g, "axes", 1, (int32_t[]){n_axes}, axes);
    int yt = t_f32(g, "y", yr, yd);
    int o = add_op(g, MOPT_OP_MEAN, (int32_t[]){xt, at}, 2, yt);
    g->ops[o].p.reducer.keep_dims = keep;
    set_io1(g, xt, yt);
    size_t ny = (size_t)dims_numel(yr, yd);
    float *got = malloc(ny * 4);
    double *sum = calloc(ny, sizeof(double));
    double count = 1;
    for (int d = 0; d < rank; d++)
        if (red[d]) count *= xd[d];
    run_graph(g, (const void *[]){x}, got);
    for (size_t i = 0; i < nx; i++) {
        size_t rem = i, oi = 0, os = 1;
        for (int d = rank - 1; d >= 0; d--) {
            size_t idx = rem % (size_t)xd[d];
            rem /= (size_t)xd[d];
            if (!red[d]) {
                oi += idx * os;
                os *= (size_t)xd[d];
            }
        }
        sum[oi] += x[i];
    }
    for (size_t i = 0; i < ny; i++) assert_true(fabs(got[i] - sum[i] / count) <= 1e-5);
    free(x);
    free(got);
    free(sum);
    mopt_graph_free(g);
}

static void test_mean(void **state) {
    (void)state;
    mean_case(4, (int32_t[]){2, 7, 5, 3}, (int32_t[]){1, 2}, 2, true);
    mean_case(4, (int32_t[]){2, 7, 5, 3}, (int32_t[]){1, 2}, 2, false);
    mean_case(4, (int32_t[]){2, 7, 5, 3}, (int32_t[]){-1, 0}, 2, false);
    mean_case(3, (int32_t[]){4, 1, 6}, (int32_t[]){1}, 1, true);
    mean_case(3, (int32_t[]){4, 5, 6}, (int32_t[]){0, 1, 2}, 3, false);
    mean_case(5, (int32_t[]){2, 3, 2, 5, 3}, (int32_t[]){3, 1, 1}, 3, true);
}

/* ---- shape ops ---- */

static void test_pad(void **state) {
    (void)state;
    rng r = {3};
    mopt_graph *g = mopt_graph_create();
    int32_t pads[8] = {1, 0, 0, 2, 3, 1, 0, 0};
    float *x = rand_buf(&r, 2 * 3 * 4 * 5);
    int xt = t_f32(g, "x", 4, (int32_t[]){2, 3, 4, 5});
    int pt = t_ci32(g, "p", 2, (int32_t[]){4, 2}, pads);
    int yt = t_f32(g, "y", 4, (int32_t[]){3, 5, 8, 5});
    add_op(g, MOPT_OP_PAD, (int32_t[]){xt, pt}, 2, yt);
    set_io1(g, xt, yt);
    float got[3 * 5 * 8 * 5];
    run_graph(g, (const void *[]){x}, got);
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 5; b++)
            for (int c = 0; c < 8; c++)
                for (int d = 0; d < 5; d++) {
                    int ia = a - 1, ib = b, ic = c - 3;
                    float want = 0;
                    if (ia >= 0 && ia < 2 && ib < 3 && ic >= 0 && ic < 4)
                        want = x[((ia * 3 + ib) * 4 + ic) * 5 + d];
                    assert_true(got[((a * 5 + b) * 8 + c) * 5 + d] == want);
                }
    free(x);
    mopt_graph_free(g);
}

static void test_transpose(void **state) {
    (void)state;
    rng r = {4};
    mopt_graph *g = mopt_graph_create();
    int32_t perm[4] = {2, 0, 3, 1};
    const int32_t xd[4] = {2, 3, 5, 7};
    float *x = rand_buf(&r, 210);
    int xt = t_f32(g, "x", 4, xd);
    int pt = t_ci32(g, "perm", 1, (int32_t[]){4}, perm);
    int yt = t_f32(g, "y", 4, (int32_t[]){5, 2, 7, 3});
    add_op(g, MOPT_OP_TRANSPOSE, (int32_t[]){xt, pt}, 2, yt);
    set_io1(g, xt, yt);
    float got[210];
    run_graph(g, (const void *[]){x}, got);
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 2; b++)
            for (int c = 0; c < 7; c++)
                for (int d = 0; d < 3; d++) /* y[a,b,c,d] = x[b,d,a,c] */
                    assert_true(got[((a * 2 + b) * 7 + c) * 3 + d] ==
                                x[((b * 3 + d) * 5 + a) * 7 + c]);
    free(x);
    mopt_graph_free(g);
}

static void test_transpose_int8(void **state) {
    (void)state;
    /* Byte movers accept quantized tensors. */
    mopt_graph *g = mopt_graph_create();
    int32_t perm[2] = {1, 0};
    int xt = t_act(g, "x", MOPT_INT8, 2, (int32_t[]){2, 3});
    int pt = t_ci32(g, "perm", 1, (int32_t[]){2}, perm);
    int yt = t_act(g, "y", MOPT_INT8, 2, (int32_t[]){3, 2});
    set_quant1(g, xt, 0.5f, 1);
    set_quant1(g, yt, 0.5f, 1);
    add_op(g, MOPT_OP_TRANSPOSE, (int32_t[]){xt, pt}, 2, yt);
    set_io1(g, xt, yt);
    int8_t x[6] = {1, 2, 3, 4, 5, 6}, got[6];
    const int8_t want[6] = {1, 4, 2, 5, 3, 6};
    run_graph(g, (const void *[]){x}, got);
    assert_memory_equal(got, want, 6);
    mopt_graph_free(g);
}

static void test_reshape(void **state) {
    (void)state;
    rng r = {5};
    mopt_graph *g = mopt_graph_create();
    float *x = rand_buf(&r, 60);
    int32_t shape[2] = {-1, 12};
    int xt = t_f32(g, "x", 3, (int32_t[]){3, 4, 5});
    int st = t_ci32(g, "s", 1, (int32_t[]){2}, shape);
    int yt = t_f32(g, "y", 2, (int32_t[]){5, 12});
    add_op(g, MOPT_OP_RESHAPE, (int32_t[]){xt, st}, 2, yt);
    set_io1(g, xt, yt);
    float got[60];
    run_graph(g, (const void *[]){x}, got);
    assert_memory_equal(got, x, sizeof got);
    free(x);
    mopt_graph_free(g);
}

static void concat_case(int axis) {
    rng r = {(uint32_t)(axis + 10)};
    mopt_graph *g = mopt_graph_create();
    const int32_t base[3] = {2, 3, 4};
    int a = axis < 0 ? axis + 3 : axis;
    int32_t d0[3], d1[3], d2[3], dy[3];
    memcpy(d0, base, sizeof d0);
    memcpy(d1, base, sizeof d1);
    memcpy(d2, base, sizeof d2);
    d1[a] = 1;
    d2[a] = 5;
    memcpy(dy, base, sizeof dy);
    dy[a] = d0[a] + d1[a] + d2[a];
    size_t n0 = (size_t)dims_numel(3, d0), n1 = (size_t)dims_numel(3, d1),
           n2 = (size_t)dims_numel(3, d2), ny = (size_t)dims_numel(3, dy);
    float *x0 = rand_buf(&r, n0), *x1 = rand_buf(&r, n1), *x2 = rand_buf(&r, n2);
    int t0 = t_f32(g, "a", 3, d0), t1 = t_f32(g, "b", 3, d1), t2 = t_f32(g, "c", 3, d2);
    int yt = t_f32(g, "y", 3, dy);
    int o = add_op(g, MOPT_OP_CONCATENATION, (int32_t[]){t0, t1, t2}, 3, yt);
    g->ops[o].p.concat.axis = axis;
    g->ops[o].p.concat.act = MOPT_ACT_RELU;
    int32_t ins[3] = {t0, t1, t2}, outs[1] = {yt};
    mopt_graph_set_io(g, ins, 3, outs, 1);
    float *got = malloc(ny * 4);
    run_graph(g, (const void *[]){x0, x1, x2}, got);
    for (int i = 0; i < dy[0]; i++)
        for (int j = 0; j < dy[1]; j++)
            for (int k = 0; k < dy[2]; k++) {
                int idx[3] = {i, j, k};
                const float *src = x0;
                const int32_t *sd = d0;
                if (idx[a] >= d0[a] + d1[a]) {
                    idx[a] -= d0[a] + d1[a];
                    src = x2;
                    sd = d2;
                } else if (idx[a] >= d0[a]) {
                    idx[a] -= d0[a];
                    src = x1;
                    sd = d1;
                }
                float v = src[(idx[0] * sd[1] + idx[1]) * sd[2] + idx[2]];
                assert_true(got[(i * dy[1] + j) * dy[2] + k] == (v < 0 ? 0 : v));
            }
    free(x0);
    free(x1);
    free(x2);
    free(got);
    mopt_graph_free(g);
}

static void test_concatenation(void **state) {
    (void)state;
    concat_case(0);
    concat_case(1);
    concat_case(2);
    concat_case(-1);
    concat_case(-3);
}

/* ---- softmax and activations ---- */

static void test_softmax(void **state) {
    (void)state;
    rng r = {6};
    const float betas[2] = {1.0f, 0.37f};
    for (int bi = 0; bi < 2; bi++) {
        mopt_graph *g = mopt_graph_create();
        float *x = rand_buf(&r, 3 * 2 * 11);
        for (int i = 0; i < 66; i++) x[i] *= 30; /* large logits: needs the max shift */
        int xt = t_f32(g, "x", 3, (int32_t[]){3, 2, 11}),
            yt = t_f32(g, "y", 3, (int32_t[]){3, 2, 11});
        int o = add_op(g, MOPT_OP_SOFTMAX, (int32_t[]){xt}, 1, yt);
        g->ops[o].p.softmax.beta = betas[bi];
        set_io1(g, xt, yt);
        float got[66];
        run_graph(g, (const void *[]){x}, got);
        for (int row = 0; row < 6; row++) {
            double m = -INFINITY, s = 0;
            for (int i = 0; i < 11; i++) m = x[row * 11 + i] > m ? x[row * 11 + i] : m;
            for (int i = 0; i < 11; i++) s += exp(((double)x[row * 11 + i] - m) * betas[bi]);
            for (int i = 0; i < 11; i++) {
                double want = exp(((double)x[row * 11 + i] - m) * betas[bi]) / s;
                assert_true(fabs(got[row * 11 + i] - want) <= 1e-6 + 1e-5 * want);
            }
        }
        free(x);
        mopt_graph_free(g);
    }
}

static void unary_case(mopt_op_type type, size_t n) {
    rng r = {(uint32_t)type};
    mopt_graph *g = mopt_graph_create();
    float *x = rand_buf(&r, n), *got = malloc(n * 4);
    for (size_t i = 0; i < n; i++) x[i] *= 9; /* cover both clamp sides */
    int xt = t_f32(g, "x", 2, (int32_t[]){(int32_t)(n / 7), 7}),
        yt = t_f32(g, "y", 2, (int32_t[]){(int32_t)(n / 7), 7});
    add_op(g, type, (int32_t[]){xt}, 1, yt);
    set_io1(g, xt, yt);
    run_graph(g, (const void *[]){x}, got);
    for (size_t i = 0; i < n; i++) {
        double v = x[i], want;
        switch (type) {
        case MOPT_OP_RELU: want = v < 0 ? 0 : v; break;
        case MOPT_OP_RELU6: want = v < 0 ? 0 : (v > 6 ? 6 : v); break;
        case MOPT_OP_LOGISTIC: want = 1.0 / (1.0 + exp(-v)); break;
        case MOPT_OP_TANH: want = tanh(v); break;
        default: want = v * fmin(6.0, fmax(0.0, v + 3.0)) / 6.0; break; /* HARD_SWISH */
        }
        if (!(fabs(got[i] - want) <= 1e-6 + 1e-6 * fabs(want)))
            fprintf(stderr, "op %d x=%g: %g vs %g\n", type, v, (double)got[i], want);
        assert_true(fabs(got[i] - want) <= 1e-6 + 1e-6 * fabs(want));
    }
    free(x);
    free(got);
    mopt_graph_free(g);
}

static void test_activations(void **state) {
    (void)state;
    const mopt_op_type ops[5] = {MOPT_OP_RELU, MOPT_OP_RELU6, MOPT_OP_LOGISTIC, MOPT_OP_TANH,
                                 MOPT_OP_HARD_SWISH};
    for (int i = 0; i < 5; i++) {
        unary_case(ops[i], 7 * 13);
        unary_case(ops[i], 7 * 20000); /* 2-thread path */
    }
}

/* ---- DEQUANTIZE / QUANTIZE ---- */

static void test_dequantize_f16(void **state) {
    (void)state;
    /* Exact half values worked out by hand. */
    const uint16_t h[10] = {0x3C00, 0xC000, 0x0001, 0x03FF, 0x0400,
                            0x7BFF, 0xFC00, 0x3555, 0x8000, 0x7E00};
    const float want[9] = {1.0f,
                           -2.0f,
                           5.9604644775390625e-08f,
                           6.097555160522461e-05f,
                           6.103515625e-05f,
                           65504.0f,
                           -INFINITY,
                           0.333251953125f,
                           -0.0f};
    mopt_graph *g = mopt_graph_create();
    int xt = t_act(g, "h", MOPT_FLOAT16, 1, (int32_t[]){10}),
        yt = t_f32(g, "y", 1, (int32_t[]){10});
    add_op(g, MOPT_OP_DEQUANTIZE, (int32_t[]){xt}, 1, yt);
    set_io1(g, xt, yt);
    float got[10];
    run_graph(g, (const void *[]){h}, got);
    assert_memory_equal(got, want, sizeof want);
    assert_true(isnan(got[9]));
    mopt_graph_free(g);
}

static void test_dequantize_int(void **state) {
    (void)state;
    /* int8 per-tensor */
    mopt_graph *g = mopt_graph_create();
    int xt = t_act(g, "q", MOPT_INT8, 1, (int32_t[]){5}), yt = t_f32(g, "y", 1, (int32_t[]){5});
    set_quant1(g, xt, 0.25f, -3);
    add_op(g, MOPT_OP_DEQUANTIZE, (int32_t[]){xt}, 1, yt);
    set_io1(g, xt, yt);
    int8_t q[5] = {-128, -3, 0, 5, 127};
    float got[5];
    run_graph(g, (const void *[]){q}, got);
    const float want[5] = {-31.25f, 0.0f, 0.75f, 2.0f, 32.5f};
    assert_memory_equal(got, want, sizeof want);
    mopt_graph_free(g);
    /* int8 per-axis on dim 1 of [2,3]: scales 1, 0.5, 0.1. */
    g = mopt_graph_create();
    xt = t_act(g, "q", MOPT_INT8, 2, (int32_t[]){2, 3});
    yt = t_f32(g, "y", 2, (int32_t[]){2, 3});
    float sc[3] = {1.0f, 0.5f, 0.1f};
    int64_t zp[3] = {0, 1, -1};
    mopt_tensor_set_quant(&g->tensors[xt], 3, sc, zp, 1);
    add_op(g, MOPT_OP_DEQUANTIZE, (int32_t[]){xt}, 1, yt);
    set_io1(g, xt, yt);
    int8_t q2[6] = {1, 3, 9, -2, -1, 99};
    float got2[6];
    run_graph(g, (const void *[]){q2}, got2);
    const float want2[6] = {1.0f, 1.0f, 1.0f, -2.0f, -1.0f, 10.0f};
    assert_memory_equal(got2, want2, sizeof want2);
    mopt_graph_free(g);
    /* uint8 and int16 */
    g = mopt_graph_create();
    xt = t_act(g, "q", MOPT_UINT8, 1, (int32_t[]){3});
    yt = t_f32(g, "y", 1, (int32_t[]){3});
    set_quant1(g, xt, 2.0f, 128);
    add_op(g, MOPT_OP_DEQUANTIZE, (int32_t[]){xt}, 1, yt);
    set_io1(g, xt, yt);
    uint8_t q3[3] = {0, 128, 255};
    float got3[3];
    run_graph(g, (const void *[]){q3}, got3);
    assert_true(got3[0] == -256.0f && got3[1] == 0.0f && got3[2] == 254.0f);
    g->tensors[xt].dtype = MOPT_INT16;
    g->tensors[xt].quant.zero_point[0] = 0;
    int16_t q4[3] = {-32768, 1, 32767};
    run_graph(g, (const void *[]){q4}, got3);
    assert_true(got3[0] == -65536.0f && got3[1] == 2.0f && got3[2] == 65534.0f);
    mopt_graph_free(g);
}

static void test_quantize(void **state) {
    (void)state;
    /* int8, scale 0.5, zp -1: x/scale = 2*x; round half away from zero. */
    mopt_graph *g = mopt_graph_create();
    int xt = t_f32(g, "x", 1, (int32_t[]){8}), yt = t_act(g, "q", MOPT_INT8, 1, (int32_t[]){8});
    set_quant1(g, yt, 0.5f, -1);
    add_op(g, MOPT_OP_QUANTIZE, (int32_t[]){xt}, 1, yt);
    set_io1(g, xt, yt);
    const float x[8] = {1.25f, -1.25f, 0.2f, 100.0f, -100.0f, NAN, INFINITY, 0.75f};
    /* 2.5 -> 3, -2.5 -> -3, 0.4 -> 0, clamp, clamp, NaN -> zp, inf -> 127, 1.5 -> 2 */
    const int8_t want[8] = {2, -4, -1, 127, -128, -1, 127, 1};
    int8_t got[8];
    run_graph(g, (const void *[]){x}, got);
    assert_memory_equal(got, want, sizeof want);
    /* uint8 zp 128 */
    g->tensors[yt].dtype = MOPT_UINT8;
    g->tensors[yt].quant.zero_point[0] = 128;
    const uint8_t want_u[8] = {131, 125, 128, 255, 0, 128, 255, 130};
    uint8_t got_u[8];
    run_graph(g, (const void *[]){x}, got_u);
    assert_memory_equal(got_u, want_u, sizeof want_u);
    /* int16 zp 0, scale 1/1024 */
    g->tensors[yt].dtype = MOPT_INT16;
    g->tensors[yt].quant.zero_point[0] = 0;
    g->tensors[yt].quant.scale[0] = 1.0f / 1024.0f;
    const int16_t want_s[8] = {1280, -1280, 205, 32767, -32768, 0, 32767, 768};
    int16_t got_s[8];
    run_graph(g, (const void *[]){x}, got_s);
    assert_memory_equal(got_s, want_s, sizeof want_s);
    mopt_graph_free(g);
    /* per-axis int8 on dim 0 of [2,2]: scales 1 and 0.1 */
    g = mopt_graph_create();
    xt = t_f32(g, "x", 2, (int32_t[]){2, 2});
    yt = t_act(g, "q", MOPT_INT8, 2, (int32_t[]){2, 2});
    float sc[2] = {1.0f, 0.1f};
    int64_t zp[2] = {0, 5};
    mopt_tensor_set_quant(&g->tensors[yt], 2, sc, zp, 0);
    add_op(g, MOPT_OP_QUANTIZE, (int32_t[]){xt}, 1, yt);
    set_io1(g, xt, yt);
    const float x2[4] = {2.5f, -7.0f, 0.25f, -1.0f};
    const int8_t want2[4] = {3, -7, 8, -5};
    int8_t got2[4];
    run_graph(g, (const void *[]){x2}, got2);
    assert_memory_equal(got2, want2, sizeof want2);
    mopt_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_depthwise),
        cmocka_unit_test(test_conv_refuses_tanh_act),
        cmocka_unit_test(test_fully_connected),
        cmocka_unit_test(test_binary_broadcast),
        cmocka_unit_test(test_pooling),
        cmocka_unit_test(test_mean),
        cmocka_unit_test(test_pad),
        cmocka_unit_test(test_transpose),
        cmocka_unit_test(test_transpose_int8),
        cmocka_unit_test(test_reshape),
        cmocka_unit_test(test_concatenation),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_dequantize_f16),
        cmocka_unit_test(test_dequantize_int),
        cmocka_unit_test(test_quantize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
