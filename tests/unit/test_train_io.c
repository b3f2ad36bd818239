/* test_train_io.c - export (batch-norm folding), import of float graphs,
 * checkpoints (round trip, refusal of corrupt or mismatched files) and
 * bit-identical resume, divergence handling.
 *
 * Reference outputs come from mopt's inference runtime (src/runtime, not
 * the training engine) and from the training graph's own inference mode;
 * the folding tolerance FOLD_TOL = 1e-5 (relative to max(1, |y|)) covers
 * the reassociation w*s vs (x*w)*s in float32. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mopt/mopt.h"
#include "mopt/train.h"

#define FOLD_TOL 1e-5

static uint64_t g_seed = 99;
static float frand(void) {
    g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((g_seed >> 40) & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f;
}

static void randomize_bn(mopt_tgraph *tg) {
    for (int i = 0; i < mopt_tgraph_num_vars(tg); i++) {
        mopt_tvar *v = mopt_tgraph_var(tg, i);
        for (int64_t k = 0; k < v->numel; k++) {
            switch (v->role) {
            case MOPT_TVAR_BN_GAMMA: v->data[k] = 1.0f + 0.5f * frand(); break;
            case MOPT_TVAR_BN_BETA: v->data[k] = 0.3f * frand(); break;
            case MOPT_TVAR_BN_MEAN: v->data[k] = 0.2f * frand(); break;
            case MOPT_TVAR_BN_VAR: v->data[k] = 0.5f + 0.4f * fabsf(frand()); break;
            case MOPT_TVAR_BIAS: v->data[k] = 0.1f * frand(); break;
            default: break;
            }
        }
    }
}

/* Runs g on x with mopt's runtime; returns n outputs in out. */
static void run_runtime(const mopt_graph *g, const float *x, int64_t nin, float *out, int64_t n) {
    mopt_interp *it = NULL;
    mopt_error err;
    mopt_interp_options o = mopt_interp_default_options();
    o.num_threads = 1;
    if (mopt_interp_create(g, &o, &it, &err) != MOPT_OK) fail_msg("interp: %s", err.msg);
    memcpy(mopt_interp_input(it, 0), x, (size_t)nin * sizeof(float));
    if (mopt_interp_invoke(it, &err) != MOPT_OK) fail_msg("invoke: %s", err.msg);
    memcpy(out, mopt_interp_output(it, 0), (size_t)n * sizeof(float));
    mopt_interp_free(it);
}

static void check_close(const float *a, const float *b, int64_t n, double tol) {
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)a[i] - b[i]) <= tol * fmax(1.0, fabs((double)b[i]))))
            fail_msg("element %lld: %.9g vs %.9g", (long long)i, (double)a[i], (double)b[i]);
}

/* The exported graph (batch norm folded) computes what the training graph
 * computes in inference mode. */
static void test_bn_folding_equivalence(void **st) {
    (void)st;
    mopt_arch_options o = mopt_arch_default_options();
    o.in_h = 9;
    o.in_w = 8;
    o.in_c = 2;
    o.num_classes = 5;
    mopt_tgraph *tg = NULL;
    mopt_error err;
    assert_int_equal(mopt_tgraph_from_spec("conv 6 3 bn relu; dw 3 s 2 bn relu6; conv 7 1 bn; "
                                           "maxpool 2 same; bn; mark a; conv 7 3 tanh; add a; "
                                           "flatten; dropout 0.5; fc 8 bn relu; fc classes",
                                           &o, &tg, &err),
                     MOPT_OK);
    randomize_bn(tg);
    mopt_export_options eo = mopt_export_default_options();
    eo.softmax = false;
    mopt_graph *g = NULL;
    assert_int_equal(mopt_tgraph_export(tg, &eo, &g, &err), MOPT_OK);
    /* every batch norm that follows a conv/FC is gone; the one after the
     * pool becomes MUL + ADD; dropout is gone */
    int n_mul = 0, n_conv = 0;
    for (int i = 0; i < g->n_ops; i++) {
        n_mul += g->ops[i].type == MOPT_OP_MUL;
        n_conv += g->ops[i].type == MOPT_OP_CONV_2D || g->ops[i].type == MOPT_OP_DEPTHWISE_CONV_2D;
    }
    assert_int_equal(n_mul, 1);
    assert_int_equal(n_conv, 4);
    assert_int_equal(g->tensors[g->inputs[0]].dims[0], 1);
    for (int s = 0; s < 3; s++) {
        float x[9 * 8 * 2], want[5], got[5];
        for (int i = 0; i < 9 * 8 * 2; i++) x[i] = frand();
        assert_int_equal(mopt_tgraph_forward(tg, x, 1, false, 0, &err), MOPT_OK);
        memcpy(want, mopt_tgraph_output(tg), sizeof(want));
        run_runtime(g, x, 9 * 8 * 2, got, 5);
        check_close(got, want, 5, FOLD_TOL);
    }
    /* with softmax: the file round trip through the TFLite writer/reader */
    mopt_graph_free(g);
    assert_int_equal(mopt_tgraph_export(tg, NULL, &g, &err), MOPT_OK);
    assert_int_equal(g->ops[g->n_ops - 1].type, MOPT_OP_SOFTMAX);
    uint8_t *buf;
    size_t size;
    assert_int_equal(mopt_tflite_write_mem(g, &buf, &size, &err), MOPT_OK);
    mopt_graph *g2 = NULL;
    assert_int_equal(mopt_tflite_read_mem(buf, size, "export", &g2, &err), MOPT_OK);
    assert_int_equal(mopt_graph_validate(g2, &err), MOPT_OK);
    free(buf);
    float x[9 * 8 * 2], p1[5], p2[5];
    for (int i = 0; i < 9 * 8 * 2; i++) x[i] = frand();
    run_runtime(g, x, 144, p1, 5);
    run_runtime(g2, x, 144, p2, 5);
    assert_memory_equal(p1, p2, sizeof(p1));
    double s = 0;
    for (int i = 0; i < 5; i++) s += p1[i];
    assert_true(fabs(s - 1.0) < 1e-5);
    mopt_graph_free(g);
    mopt_graph_free(g2);
    mopt_tgraph_free(tg);
}

/* ---- import ---- */

static int add_const(mopt_graph *g, const char *name, int rank, const int32_t *dims, float scale) {
    int t = mopt_graph_add_tensor(g, name, MOPT_FLOAT32, rank, dims);
    int64_t n = mopt_tensor_numel(&g->tensors[t]);
    float *d = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) d[i] = scale * frand();
    assert_int_equal(mopt_graph_set_tensor_data(g, t, d, (size_t)n * sizeof(float)), MOPT_OK);
    free(d);
    return t;
}

/* input [1,6,6,2] -> CONV(relu) -> DEPTHWISE s2 -> ADD const -> MEAN(1,2) ->
 * FC -> SOFTMAX */
static mopt_graph *hand_graph(void) {
    mopt_graph *g = mopt_graph_create();
    int32_t di[4] = {1, 6, 6, 2}, dw1[4] = {4, 3, 3, 2}, db[1] = {4}, dc[4] = {1, 6, 6, 4};
    int32_t dw2[4] = {1, 3, 3, 4}, dd[4] = {1, 3, 3, 4}, dm[2] = {1, 4}, dfw[2] = {3, 4};
    int32_t dfb[1] = {3}, dout[2] = {1, 3}, dax[1] = {2};
    int x = mopt_graph_add_tensor(g, "image", MOPT_FLOAT32, 4, di);
    int w1 = add_const(g, "conv/kernel", 4, dw1, 0.5f), b1 = add_const(g, "conv/bias", 1, db, 0.1f);
    int c1 = mopt_graph_add_tensor(g, "conv_out", MOPT_FLOAT32, 4, dc);
    int w2 = add_const(g, "dw/kernel", 4, dw2, 0.5f), b2 = add_const(g, "dw/bias", 1, db, 0.1f);
    int c2 = mopt_graph_add_tensor(g, "dw_out", MOPT_FLOAT32, 4, dd);
    int k = add_const(g, "shift", 1, db, 0.3f);
    int a = mopt_graph_add_tensor(g, "add_out", MOPT_FLOAT32, 4, dd);
    int ax = mopt_graph_add_tensor(g, "axes", MOPT_INT32, 1, dax);
    int32_t axv[2] = {1, 2};
    mopt_graph_set_tensor_data(g, ax, axv, sizeof(axv));
    int m = mopt_graph_add_tensor(g, "mean_out", MOPT_FLOAT32, 2, dm);
    int fw = add_const(g, "dense/kernel", 2, dfw, 0.7f), fb = add_const(g, "dense/bias", 1, dfb, 0.1f);
    int f = mopt_graph_add_tensor(g, "logits", MOPT_FLOAT32, 2, dout);
    int p = mopt_graph_add_tensor(g, "probs", MOPT_FLOAT32, 2, dout);
    int32_t i1[3] = {x, w1, b1}, i2[3] = {c1, w2, b2}, i3[2] = {c2, k}, i4[2] = {a, ax},
            i5[3] = {m, fw, fb}, i6[1] = {f};
    int o = mopt_graph_add_op(g, MOPT_OP_CONV_2D, i1, 3, &c1, 1);
    g->ops[o].has_options = true;
    g->ops[o].p.conv.padding = MOPT_PAD_SAME;
    g->ops[o].p.conv.stride_h = g->ops[o].p.conv.stride_w = 1;
    g->ops[o].p.conv.act = MOPT_ACT_RELU;
    o = mopt_graph_add_op(g, MOPT_OP_DEPTHWISE_CONV_2D, i2, 3, &c2, 1);
    g->ops[o].has_options = true;
    g->ops[o].p.conv.padding = MOPT_PAD_SAME;
    g->ops[o].p.conv.stride_h = g->ops[o].p.conv.stride_w = 2;
    g->ops[o].p.conv.depth_multiplier = 1;
    o = mopt_graph_add_op(g, MOPT_OP_ADD, i3, 2, &a, 1);
    g->ops[o].has_options = true;
    o = mopt_graph_add_op(g, MOPT_OP_MEAN, i4, 2, &m, 1);
    g->ops[o].has_options = true;
    o = mopt_graph_add_op(g, MOPT_OP_FULLY_CONNECTED, i5, 3, &f, 1);
    g->ops[o].has_options = true;
    o = mopt_graph_add_op(g, MOPT_OP_SOFTMAX, i6, 1, &p, 1);
    g->ops[o].has_options = true;
    g->ops[o].p.softmax.beta = 1.0f;
    int32_t gi[1] = {x}, go[1] = {p};
    mopt_graph_set_io(g, gi, 1, go, 1);
    mopt_error err;
    if (mopt_graph_validate(g, &err) != MOPT_OK) fail_msg("hand graph: %s", err.msg);
    return g;
}

static void softmax3(const float *z, float *p) {
    double m = fmax(z[0], fmax(z[1], z[2])), s = 0;
    for (int i = 0; i < 3; i++) s += exp(z[i] - m);
    for (int i = 0; i < 3; i++) p[i] = (float)(exp(z[i] - m) / s);
}

static void test_import_and_finetune(void **st) {
    (void)st;
    mopt_graph *g = hand_graph();
    mopt_tgraph *tg = NULL;
    mopt_error err;
    assert_int_equal(mopt_tgraph_from_graph(g, &tg, &err), MOPT_OK);
    /* weights and biases became variables named after their tensors */
    const char *names[6] = {"conv/kernel", "conv/bias", "dw/kernel", "dw/bias", "dense/kernel",
                            "dense/bias"};
    for (int i = 0; i < 6; i++) {
        int v = mopt_tgraph_find_var(tg, names[i]);
        assert_true(v >= 0);
        assert_true(mopt_tgraph_var(tg, v)->flags & MOPT_TVAR_TRAINABLE);
    }
    assert_int_equal(mopt_tgraph_num_outputs(tg), 3);
    for (int s = 0; s < 3; s++) {
        float x[72], z[3], want[3], got[3];
        for (int i = 0; i < 72; i++) x[i] = frand();
        assert_int_equal(mopt_tgraph_forward(tg, x, 1, false, 0, &err), MOPT_OK);
        memcpy(z, mopt_tgraph_output(tg), sizeof(z));
        softmax3(z, want);
        run_runtime(g, x, 72, got, 3);
        check_close(got, want, 3, 1e-5);
    }
    /* fine-tune a few steps on a batch, export, and the export is valid and
     * differs from the original weights */
    mopt_optimizer *o;
    mopt_optim_params p = mopt_optim_default_params(MOPT_OPTIM_ADAM);
    assert_int_equal(mopt_optimizer_create(tg, &p, &o, &err), MOPT_OK);
    float xb[4 * 72];
    int32_t lab[4] = {0, 1, 2, 1};
    for (int i = 0; i < 4 * 72; i++) xb[i] = frand();
    double l0 = 0, l1 = 0;
    for (int s = 0; s < 30; s++) {
        double l;
        assert_int_equal(mopt_tgraph_train_step(tg, o, xb, lab, 4, 0.01f, &l, NULL, &err), MOPT_OK);
        if (s == 0) l0 = l;
        l1 = l;
    }
    assert_true(l1 < l0);
    mopt_graph *e = NULL;
    assert_int_equal(mopt_tgraph_export(tg, NULL, &e, &err), MOPT_OK);
    assert_int_equal(e->ops[e->n_ops - 1].type, MOPT_OP_SOFTMAX);
    float x[72], want[3], got[3];
    for (int i = 0; i < 72; i++) x[i] = frand();
    assert_int_equal(mopt_tgraph_forward(tg, x, 1, false, 0, &err), MOPT_OK);
    softmax3(mopt_tgraph_output(tg), want);
    run_runtime(e, x, 72, got, 3);
    check_close(got, want, 3, 1e-5);
    mopt_graph_free(e);
    mopt_optimizer_free(o);
    mopt_tgraph_free(tg);
    mopt_graph_free(g);
}

static void test_import_refusals(void **st) {
    (void)st;
    mopt_graph *g = hand_graph();
    mopt_error err;
    mopt_tgraph *tg = NULL;
    /* a quantized input is refused */
    g->tensors[g->inputs[0]].dtype = MOPT_INT8;
    assert_true(mopt_tgraph_from_graph(g, &tg, &err) != MOPT_OK);
    assert_null(tg);
    mopt_graph_free(g);
}

/* ---- checkpoints ---- */

static mopt_dataset quadrants(int64_t n, uint64_t seed) {
    mopt_dataset d;
    memset(&d, 0, sizeof(d));
    d.n = n;
    d.h = d.w = 8;
    d.c = 1;
    d.num_classes = 4;
    d.images = malloc((size_t)(n * 64) * sizeof(float));
    d.labels = malloc((size_t)n * sizeof(int32_t));
    mopt_rng r;
    mopt_rng_seed(&r, seed, 1);
    for (int64_t i = 0; i < n; i++) {
        int q = (int)mopt_rng_below(&r, 4);
        d.labels[i] = q;
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++)
                d.images[i * 64 + y * 8 + x] =
                    0.3f * mopt_rng_uniform(&r) + (((y >= 4) * 2 + (x >= 4)) == q ? 0.5f : 0.0f);
    }
    return d;
}

static mopt_tgraph *net(uint64_t seed) {
    mopt_arch_options o = mopt_arch_default_options();
    o.in_h = o.in_w = 8;
    o.num_classes = 4;
    o.seed = seed;
    o.bn_momentum = 0.9f;
    mopt_tgraph *tg = NULL;
    mopt_error err;
    assert_int_equal(mopt_tgraph_from_spec("conv 6 3 bn relu; maxpool 2; flatten; dropout 0.2; "
                                           "fc 12 relu; fc classes",
                                           &o, &tg, &err),
                     MOPT_OK);
    mopt_tgraph_set_num_threads(tg, 1);
    return tg;
}

static char g_dir[256];

static const char *tmp_path(const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s", g_dir, name);
    return buf;
}

static void assert_same_vars(mopt_tgraph *a, mopt_tgraph *b) {
    assert_int_equal(mopt_tgraph_num_vars(a), mopt_tgraph_num_vars(b));
    for (int i = 0; i < mopt_tgraph_num_vars(a); i++) {
        const mopt_tvar *va = mopt_tgraph_var(a, i), *vb = mopt_tgraph_var(b, i);
        assert_string_equal(va->name, vb->name);
        assert_memory_equal(va->data, vb->data, (size_t)va->numel * sizeof(float));
    }
}

static void test_checkpoint_round_trip_and_refusal(void **st) {
    (void)st;
    char path[512], p2[512];
    tmp_path("ck.bin", path, sizeof(path));
    mopt_error err;
    mopt_dataset d = quadrants(64, 5);
    mopt_tgraph *a = net(1), *b = net(2);
    mopt_optim_params p = mopt_optim_default_params(MOPT_OPTIM_ADAM);
    mopt_optimizer *oa, *ob;
    assert_int_equal(mopt_optimizer_create(a, &p, &oa, &err), MOPT_OK);
    assert_int_equal(mopt_optimizer_create(b, &p, &ob, &err), MOPT_OK);
    for (int s = 0; s < 3; s++)
        assert_int_equal(mopt_tgraph_train_step(a, oa, d.images + s * 16 * 64, d.labels + s * 16,
                                                16, 1e-2f, NULL, NULL, &err),
                         MOPT_OK);
    mopt_train_state ts = {3, 0, 3, 42, 16, 1.5, 7, 48}, got;
    assert_int_equal(mopt_checkpoint_save(path, a, oa, &ts, &err), MOPT_OK);
    assert_int_equal(mopt_checkpoint_load(path, b, ob, &got, &err), MOPT_OK);
    assert_same_vars(a, b);
    assert_int_equal(mopt_optimizer_steps(ob), 3);
    assert_memory_equal(&ts, &got, sizeof(ts));
    /* the optimizer state came along: one more identical step stays identical */
    assert_int_equal(mopt_tgraph_train_step(a, oa, d.images, d.labels, 16, 1e-2f, NULL, NULL, &err),
                     MOPT_OK);
    assert_int_equal(mopt_tgraph_train_step(b, ob, d.images, d.labels, 16, 1e-2f, NULL, NULL, &err),
                     MOPT_OK);
    assert_same_vars(a, b);

    /* corrupt one byte: refused by the CRC, graph untouched */
    uint8_t *buf;
    size_t size;
    assert_int_equal(mopt_file_read_all(path, 0, &buf, &size, &err), MOPT_OK);
    buf[size / 2] ^= 0x40;
    tmp_path("corrupt.bin", p2, sizeof(p2));
    assert_int_equal(mopt_file_write_atomic(p2, buf, size, &err), MOPT_OK);
    mopt_tgraph *c = net(3), *c0 = net(3);
    assert_int_equal(mopt_checkpoint_load(p2, c, NULL, NULL, &err), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(err.msg, "CRC"));
    assert_same_vars(c, c0);
    /* truncated */
    assert_int_equal(mopt_file_write_atomic(p2, buf, size - 9, &err), MOPT_OK);
    assert_int_equal(mopt_checkpoint_load(p2, c, NULL, NULL, &err), MOPT_ERR_BAD_INPUT);
    /* not a checkpoint */
    assert_int_equal(mopt_file_write_atomic(p2, "hello", 5, &err), MOPT_OK);
    assert_int_equal(mopt_checkpoint_load(p2, c, NULL, NULL, &err), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(err.msg, "magic"));
    free(buf);
    /* another architecture: refused, naming what differs */
    mopt_arch_options o = mopt_arch_default_options();
    o.in_h = o.in_w = 8;
    o.num_classes = 4;
    mopt_tgraph *other = NULL;
    assert_int_equal(mopt_tgraph_from_spec("conv 5 3 bn relu; maxpool 2; flatten; fc 12 relu; "
                                           "fc classes",
                                           &o, &other, &err),
                     MOPT_OK);
    assert_int_equal(mopt_checkpoint_load(path, other, NULL, NULL, &err), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(err.msg, "different model"));
    /* another optimizer */
    mopt_optim_params ps = mopt_optim_default_params(MOPT_OPTIM_SGD);
    mopt_optimizer *os;
    assert_int_equal(mopt_optimizer_create(c, &ps, &os, &err), MOPT_OK);
    assert_int_equal(mopt_checkpoint_load(path, c, os, NULL, &err), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(err.msg, "adam"));
    assert_same_vars(c, c0);
    /* a missing file is an I/O error */
    tmp_path("missing.bin", p2, sizeof(p2));
    assert_int_equal(mopt_checkpoint_load(p2, c, NULL, NULL, &err), MOPT_ERR_IO);
    mopt_optimizer_free(os);
    mopt_optimizer_free(oa);
    mopt_optimizer_free(ob);
    mopt_tgraph_free(a);
    mopt_tgraph_free(b);
    mopt_tgraph_free(c);
    mopt_tgraph_free(c0);
    mopt_tgraph_free(other);
    mopt_dataset_free(&d);
}

typedef struct stopper {
    int64_t stop_at;
} stopper;

static bool stop_cb(void *u, const mopt_epoch_stats *s) {
    return s->step < ((stopper *)u)->stop_at;
}

/* An interrupted run resumed from its checkpoint ends bit-identical to an
 * uninterrupted one. */
static void test_resume_bit_identical(void **st) {
    (void)st;
    char pa[512], pb[512];
    tmp_path("run_a.ckpt", pa, sizeof(pa));
    tmp_path("run_b.ckpt", pb, sizeof(pb));
    unlink(pa);
    unlink(pb);
    mopt_dataset d = quadrants(200, 9);
    mopt_train_options o = mopt_train_default_options();
    o.epochs = 3;
    o.batch_size = 24; /* 180 training samples: 8 batches per epoch, the last one short */
    o.seed = 5;
    o.num_threads = 1;
    o.val_fraction = 0.1;
    o.augment.hflip = true;
    o.checkpoint_every = 4;
    mopt_error err;
    mopt_tgraph *a = net(1);
    o.checkpoint = pa;
    mopt_train_result ra;
    assert_int_equal(mopt_train(a, &d, &o, &ra, &err), MOPT_OK);
    assert_false(ra.resumed);
    /* interrupted after step 14 (checkpoints at steps 4, 8 (epoch end), 12) */
    mopt_tgraph *b = net(1);
    stopper sp = {14};
    o.checkpoint = pb;
    o.on_step = stop_cb;
    o.user = &sp;
    mopt_train_result rb;
    assert_int_equal(mopt_train(b, &d, &o, &rb, &err), MOPT_OK);
    assert_true(rb.stopped_early);
    /* a fresh process: new graph (other init), resume */
    mopt_tgraph *c = net(77);
    o.on_step = NULL;
    o.resume = true;
    mopt_train_result rc;
    assert_int_equal(mopt_train(c, &d, &o, &rc, &err), MOPT_OK);
    assert_true(rc.resumed);
    assert_int_equal(rc.resumed_step, 12);
    assert_int_equal(rc.steps, ra.steps);
    assert_same_vars(a, c);
    /* resuming a finished run changes nothing */
    mopt_tgraph *e = net(5);
    mopt_train_result re;
    assert_int_equal(mopt_train(e, &d, &o, &re, &err), MOPT_OK);
    assert_same_vars(a, e);
    /* a checkpoint from another seed is refused */
    o.seed = 6;
    assert_int_equal(mopt_train(e, &d, &o, &re, &err), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(err.msg, "seed"));
    mopt_tgraph_free(a);
    mopt_tgraph_free(b);
    mopt_tgraph_free(c);
    mopt_tgraph_free(e);
    mopt_dataset_free(&d);
}

/* The same seed and thread count give the same .tflite bytes. */
static void test_same_seed_same_file(void **st) {
    (void)st;
    mopt_dataset d = quadrants(96, 12);
    uint8_t *bytes[2];
    size_t sizes[2];
    for (int k = 0; k < 2; k++) {
        mopt_tgraph *tg = net(4);
        mopt_train_options o = mopt_train_default_options();
        o.epochs = 2;
        o.batch_size = 16;
        o.num_threads = 2;
        o.seed = 8;
        o.augment.crop_pad = 1;
        mopt_error err;
        assert_int_equal(mopt_train(tg, &d, &o, NULL, &err), MOPT_OK);
        mopt_graph *g = NULL;
        assert_int_equal(mopt_tgraph_export(tg, NULL, &g, &err), MOPT_OK);
        assert_int_equal(mopt_tflite_write_mem(g, &bytes[k], &sizes[k], &err), MOPT_OK);
        mopt_graph_free(g);
        mopt_tgraph_free(tg);
    }
    assert_int_equal(sizes[0], sizes[1]);
    assert_memory_equal(bytes[0], bytes[1], sizes[0]);
    free(bytes[0]);
    free(bytes[1]);
    mopt_dataset_free(&d);
}

static void test_divergence_keeps_checkpoint(void **st) {
    (void)st;
    char path[512];
    tmp_path("nan.ckpt", path, sizeof(path));
    unlink(path);
    mopt_dataset d = quadrants(128, 4);
    mopt_train_options o = mopt_train_default_options();
    o.epochs = 5;
    o.batch_size = 16;
    o.num_threads = 1;
    o.optim = mopt_optim_default_params(MOPT_OPTIM_SGD);
    o.schedule.base_lr = 1e4f;
    o.checkpoint = path;
    o.checkpoint_every = 1;
    mopt_tgraph *tg = net(1);
    mopt_error err;
    assert_int_equal(mopt_train(tg, &d, &o, NULL, &err), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(err.msg, "diverged"));
    /* the checkpoint left behind loads and holds finite weights */
    mopt_tgraph *c = net(1);
    mopt_train_state ts;
    assert_int_equal(mopt_checkpoint_load(path, c, NULL, &ts, &err), MOPT_OK);
    for (int i = 0; i < mopt_tgraph_num_vars(c); i++) {
        const mopt_tvar *v = mopt_tgraph_var(c, i);
        for (int64_t k = 0; k < v->numel; k++) assert_true(isfinite(v->data[k]));
    }
    mopt_tgraph_free(tg);
    mopt_tgraph_free(c);
    mopt_dataset_free(&d);
}

static int setup_dir(void **st) {
    (void)st;
    snprintf(g_dir, sizeof(g_dir), "/tmp/mopt_test_train_io_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **st) {
    (void)st;
    const char *files[] = {"ck.bin", "corrupt.bin", "run_a.ckpt", "run_b.ckpt", "nan.ckpt"};
    char p[512];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) unlink(tmp_path(files[i], p, sizeof(p)));
    rmdir(g_dir);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bn_folding_equivalence),
        cmocka_unit_test(test_import_and_finetune),
        cmocka_unit_test(test_import_refusals),
        cmocka_unit_test(test_checkpoint_round_trip_and_refusal),
        cmocka_unit_test(test_resume_bit_identical),
        cmocka_unit_test(test_same_seed_same_file),
        cmocka_unit_test(test_divergence_keeps_checkpoint),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
