/* test_train_engine.c - optimizers, schedules, the data pipeline, transform
 * hooks, determinism and a small end-to-end training run.
 *
 * Expected optimizer and schedule values are computed by hand from the
 * update rules in train.h (the arithmetic is written out next to each). */
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

/* A graph whose only job is to host variables for optimizer tests. */
static mopt_tgraph *host_graph(void) {
    mopt_arch_options o = mopt_arch_default_options();
    o.in_h = o.in_w = 2;
    o.num_classes = 2;
    mopt_tgraph *tg = NULL;
    mopt_error err;
    assert_int_equal(mopt_tgraph_from_spec("fc classes", &o, &tg, &err), MOPT_OK);
    return tg;
}

/* Adds a trainable 2-element variable w = {1, -2} and freezes everything else. */
static int scalar_var(mopt_tgraph *tg, unsigned flags) {
    for (int i = 0; i < mopt_tgraph_num_vars(tg); i++)
        mopt_tgraph_var(tg, i)->flags &= ~MOPT_TVAR_TRAINABLE;
    int id;
    mopt_error err;
    int32_t d[1] = {2};
    assert_int_equal(mopt_tgraph_add_var(tg, "w", 1, d, flags, &id, &err), MOPT_OK);
    mopt_tvar *v = mopt_tgraph_var(tg, id);
    v->data[0] = 1.0f;
    v->data[1] = -2.0f;
    return id;
}

static void set_grad(mopt_tvar *v, float g0, float g1) {
    v->grad[0] = g0;
    v->grad[1] = g1;
}

#define NEAR(a, b) assert_true(fabs((double)(a) - (double)(b)) <= 1e-6 * fmax(1.0, fabs((double)(b))))

static void test_sgd_momentum(void **st) {
    (void)st;
    mopt_tgraph *tg = host_graph();
    int id = scalar_var(tg, MOPT_TVAR_TRAINABLE);
    mopt_tvar *v = mopt_tgraph_var(tg, id);
    mopt_optim_params p = mopt_optim_default_params(MOPT_OPTIM_SGD);
    p.momentum = 0.9f;
    mopt_optimizer *o;
    mopt_error err;
    assert_int_equal(mopt_optimizer_create(tg, &p, &o, &err), MOPT_OK);
    /* step 1: v = g = 0.5 -> w = 1 - 0.1*0.5 = 0.95; second element g = -1: w = -2 + 0.1 = -1.9 */
    set_grad(v, 0.5f, -1.0f);
    assert_int_equal(mopt_optimizer_step(o, 0.1f, NULL, &err), MOPT_OK);
    NEAR(v->data[0], 0.95);
    NEAR(v->data[1], -1.9);
    /* step 2: v = 0.9*0.5 + 0.5 = 0.95 -> w = 0.95 - 0.095 = 0.855 */
    set_grad(v, 0.5f, -1.0f);
    assert_int_equal(mopt_optimizer_step(o, 0.1f, NULL, &err), MOPT_OK);
    NEAR(v->data[0], 0.855);
    NEAR(v->data[1], -1.71); /* v = -1.9, w = -1.9 + 0.19 */
    assert_int_equal(mopt_optimizer_steps(o), 2);
    mopt_optimizer_free(o);
    mopt_tgraph_free(tg);
}

static void test_sgd_nesterov_decay(void **st) {
    (void)st;
    mopt_tgraph *tg = host_graph();
    int id = scalar_var(tg, MOPT_TVAR_TRAINABLE | MOPT_TVAR_DECAY);
    mopt_tvar *v = mopt_tgraph_var(tg, id);
    mopt_optim_params p = mopt_optim_default_params(MOPT_OPTIM_SGD);
    p.momentum = 0.5f;
    p.nesterov = true;
    p.weight_decay = 0.1f;
    mopt_optimizer *o;
    mopt_error err;
    assert_int_equal(mopt_optimizer_create(tg, &p, &o, &err), MOPT_OK);
    /* g' = 0.5 + 0.1*1 = 0.6; v = 0.6; w = 1 - 0.1*(0.6 + 0.5*0.6) = 0.91 */
    set_grad(v, 0.5f, 0.0f);
    assert_int_equal(mopt_optimizer_step(o, 0.1f, NULL, &err), MOPT_OK);
    NEAR(v->data[0], 0.91);
    /* second element: g' = 0 + 0.1*(-2) = -0.2; v = -0.2; w = -2 - 0.1*(-0.3) = -1.97 */
    NEAR(v->data[1], -1.97);
    /* step 2, first element: g' = 0.5 + 0.091 = 0.591; v = 0.3 + 0.591 = 0.891;
     * w = 0.91 - 0.1*(0.591 + 0.4455) = 0.80635 */
    set_grad(v, 0.5f, 0.0f);
    assert_int_equal(mopt_optimizer_step(o, 0.1f, NULL, &err), MOPT_OK);
    NEAR(v->data[0], 0.80635);
    mopt_optimizer_free(o);
    mopt_tgraph_free(tg);
}

static void test_adam(void **st) {
    (void)st;
    mopt_tgraph *tg = host_graph();
    int id = scalar_var(tg, MOPT_TVAR_TRAINABLE);
    mopt_tvar *v = mopt_tgraph_var(tg, id);
    mopt_optim_params p = mopt_optim_default_params(MOPT_OPTIM_ADAM);
    p.eps = 1e-8f;
    mopt_optimizer *o;
    mopt_error err;
    assert_int_equal(mopt_optimizer_create(tg, &p, &o, &err), MOPT_OK);
    /* step 1: m = 0.1*g, v = 0.001*g^2, mhat = g, vhat = g^2: w -= lr * g/(|g| + eps) = lr*sign */
    set_grad(v, 0.5f, -3.0f);
    assert_int_equal(mopt_optimizer_step(o, 0.01f, NULL, &err), MOPT_OK);
    NEAR(v->data[0], 1.0 - 0.01 * 0.5 / (0.5 + 1e-8));
    NEAR(v->data[1], -2.0 + 0.01 * 3.0 / (3.0 + 1e-8));
    /* step 2 with g = 0.25: m = 0.9*0.05 + 0.1*0.25 = 0.07, mhat = 0.07/0.19;
     * v = 0.999*0.00025 + 0.001*0.0625 = 0.00031225, vhat = v/0.001999 */
    set_grad(v, 0.25f, 0.0f);
    assert_int_equal(mopt_optimizer_step(o, 0.01f, NULL, &err), MOPT_OK);
    double mh = 0.07 / 0.19, vh = 0.00031225 / (1.0 - 0.999 * 0.999);
    double w1 = 1.0 - 0.01 * 0.5 / (0.5 + 1e-8);
    assert_true(fabs(v->data[0] - (w1 - 0.01 * mh / (sqrt(vh) + 1e-8))) < 2e-6);
    mopt_optimizer_free(o);
    mopt_tgraph_free(tg);
}

static void test_adamw_vs_adam_decay(void **st) {
    (void)st;
    /* Decoupled decay (AdamW): w -= lr*wd*w, independent of the gradient
     * scale; coupled (Adam): wd*w enters the normalised step. With g = 0: */
    for (int k = 0; k < 2; k++) {
        mopt_tgraph *tg = host_graph();
        int id = scalar_var(tg, MOPT_TVAR_TRAINABLE | MOPT_TVAR_DECAY);
        mopt_tvar *v = mopt_tgraph_var(tg, id);
        mopt_optim_params p = mopt_optim_default_params(k ? MOPT_OPTIM_ADAMW : MOPT_OPTIM_ADAM);
        p.eps = 1e-8f;
        p.weight_decay = 0.1f;
        mopt_optimizer *o;
        mopt_error err;
        assert_int_equal(mopt_optimizer_create(tg, &p, &o, &err), MOPT_OK);
        set_grad(v, 0.0f, 0.0f);
        assert_int_equal(mopt_optimizer_step(o, 0.01f, NULL, &err), MOPT_OK);
        if (k) {
            NEAR(v->data[0], 1.0 - 0.01 * 0.1 * 1.0); /* 0.999; the Adam part is 0 */
            NEAR(v->data[1], -2.0 + 0.01 * 0.1 * 2.0);
        } else {
            NEAR(v->data[0], 1.0 - 0.01 * 0.1 / (0.1 + 1e-8)); /* g' = 0.1: sign step */
            NEAR(v->data[1], -2.0 + 0.01 * 0.2 / (0.2 + 1e-8));
        }
        mopt_optimizer_free(o);
        mopt_tgraph_free(tg);
    }
}

static void test_clipping_and_nonfinite(void **st) {
    (void)st;
    mopt_tgraph *tg = host_graph();
    int id = scalar_var(tg, MOPT_TVAR_TRAINABLE);
    mopt_tvar *v = mopt_tgraph_var(tg, id);
    mopt_optim_params p = mopt_optim_default_params(MOPT_OPTIM_SGD);
    p.momentum = 0.0f;
    p.clip_norm = 1.0f;
    mopt_optimizer *o;
    mopt_error err;
    assert_int_equal(mopt_optimizer_create(tg, &p, &o, &err), MOPT_OK);
    /* |g| = 5 -> scaled to norm 1: (0.6, 0.8) */
    set_grad(v, 3.0f, 4.0f);
    double norm;
    assert_int_equal(mopt_optimizer_step(o, 1.0f, &norm, &err), MOPT_OK);
    NEAR(norm, 5.0);
    NEAR(v->data[0], 0.4);
    NEAR(v->data[1], -2.8);
    set_grad(v, NAN, 1.0f);
    assert_int_equal(mopt_optimizer_step(o, 1.0f, NULL, &err), MOPT_ERR_BAD_INPUT);
    NEAR(v->data[0], 0.4); /* untouched */
    assert_int_equal(mopt_optimizer_step(o, -1.0f, NULL, &err), MOPT_ERR_ARG);
    mopt_optimizer_free(o);
    mopt_tgraph_free(tg);
}

static void test_lr_schedules(void **st) {
    (void)st;
    mopt_lr_schedule s = mopt_lr_default_schedule();
    assert_int_equal(s.kind, MOPT_LR_COSINE);
    s.kind = MOPT_LR_CONSTANT;
    s.base_lr = 0.1f;
    NEAR(mopt_lr_at(&s, 0), 0.1);
    NEAR(mopt_lr_at(&s, 12345), 0.1);
    s.kind = MOPT_LR_STEP;
    s.step_size = 10;
    s.gamma = 0.5f;
    NEAR(mopt_lr_at(&s, 9), 0.1);
    NEAR(mopt_lr_at(&s, 10), 0.05);
    NEAR(mopt_lr_at(&s, 25), 0.025);
    s.warmup_steps = 4; /* warm-up: 0.025, 0.05, 0.075, 0.1; then steps counted after it */
    NEAR(mopt_lr_at(&s, 0), 0.025);
    NEAR(mopt_lr_at(&s, 3), 0.1);
    NEAR(mopt_lr_at(&s, 13), 0.1);
    NEAR(mopt_lr_at(&s, 14), 0.05);
    s.kind = MOPT_LR_COSINE;
    s.warmup_steps = 10;
    s.total_steps = 110;
    s.min_lr = 0.0f;
    NEAR(mopt_lr_at(&s, 4), 0.05);
    NEAR(mopt_lr_at(&s, 10), 0.1);                                  /* cos(0) */
    NEAR(mopt_lr_at(&s, 60), 0.05);                                 /* half way: cos(pi/2) */
    NEAR(mopt_lr_at(&s, 35), 0.1 * 0.5 * (1 + cos(3.14159265358979 * 0.25)));
    NEAR(mopt_lr_at(&s, 110), 0.0);
    NEAR(mopt_lr_at(&s, 500), 0.0);
    s.min_lr = 0.01f;
    NEAR(mopt_lr_at(&s, 60), 0.055);
    assert_int_equal(mopt_lr_kind_from_name("cosine"), MOPT_LR_COSINE);
    assert_int_equal(mopt_lr_kind_from_name("bogus"), -1);
    assert_int_equal(mopt_optim_kind_from_name("adamw"), MOPT_OPTIM_ADAMW);
    assert_int_equal(mopt_optim_kind_from_name("rmsprop"), -1);
}

/* ---- data pipeline ---- */

static mopt_dataset make_ds(int64_t n, int h, int w, int classes) {
    mopt_dataset d;
    memset(&d, 0, sizeof(d));
    d.n = n;
    d.h = h;
    d.w = w;
    d.c = 1;
    d.images = malloc((size_t)(n * h * w) * sizeof(float));
    d.labels = malloc((size_t)n * sizeof(int32_t));
    d.num_classes = classes;
    for (int64_t i = 0; i < n; i++) {
        d.labels[i] = (int32_t)(i % classes);
        for (int k = 0; k < h * w; k++) d.images[i * h * w + k] = (float)i + (float)k / 1000.0f;
    }
    return d;
}

static void epoch_order(mopt_loader *l, int64_t epoch, int64_t n, int64_t *order, int hw) {
    float *x = malloc((size_t)(4 * hw) * sizeof(float));
    int32_t lab[4];
    mopt_loader_seek(l, epoch, 0);
    int64_t k = 0;
    int cnt;
    for (;;) {
        mopt_loader_next(l, x, lab, &cnt);
        if (!cnt) break;
        for (int i = 0; i < cnt; i++) order[k++] = (int64_t)x[i * hw]; /* image i holds i */
    }
    assert_int_equal(k, n);
    free(x);
}

static void test_shuffle_determinism(void **st) {
    (void)st;
    const int64_t n = 37;
    mopt_dataset d = make_ds(n, 3, 3, 5);
    mopt_loader *a, *b, *c;
    mopt_error err;
    assert_int_equal(mopt_loader_create(&d, NULL, n, 4, true, 7, NULL, &a, &err), MOPT_OK);
    assert_int_equal(mopt_loader_create(&d, NULL, n, 4, true, 7, NULL, &b, &err), MOPT_OK);
    assert_int_equal(mopt_loader_create(&d, NULL, n, 4, true, 8, NULL, &c, &err), MOPT_OK);
    assert_int_equal(mopt_loader_batches(a), 10);
    int64_t oa[37], ob[37], oc[37], oa1[37];
    epoch_order(a, 0, n, oa, 9);
    epoch_order(b, 0, n, ob, 9);
    epoch_order(c, 0, n, oc, 9);
    epoch_order(a, 1, n, oa1, 9);
    assert_memory_equal(oa, ob, sizeof(oa));              /* same seed: same order */
    assert_memory_not_equal(oa, oc, sizeof(oa));          /* other seed: other order */
    assert_memory_not_equal(oa, oa1, sizeof(oa));         /* next epoch: other order */
    /* each epoch is a permutation */
    int seen[37] = {0};
    for (int i = 0; i < 37; i++) seen[oa1[i]]++;
    for (int i = 0; i < 37; i++) assert_int_equal(seen[i], 1);
    /* seeking into an epoch replays the same samples */
    float x[4 * 9];
    int32_t lab[4];
    int cnt;
    mopt_loader_seek(b, 1, 3);
    mopt_loader_next(b, x, lab, &cnt);
    assert_int_equal(cnt, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal((int64_t)x[i * 9], oa1[12 + i]);
        assert_int_equal(lab[i], (int32_t)(oa1[12 + i] % 5));
    }
    /* the last batch is short */
    mopt_loader_seek(b, 1, 9);
    mopt_loader_next(b, x, lab, &cnt);
    assert_int_equal(cnt, 1);
    mopt_loader_free(a);
    mopt_loader_free(b);
    mopt_loader_free(c);
    mopt_dataset_free(&d);
}

static void test_split_indices(void **st) {
    (void)st;
    int64_t *tr, *va, ntr, nva;
    mopt_error err;
    assert_int_equal(mopt_split_indices(100, 0.2, 3, &tr, &ntr, &va, &nva, &err), MOPT_OK);
    assert_int_equal(ntr, 80);
    assert_int_equal(nva, 20);
    int seen[100] = {0};
    for (int64_t i = 0; i < ntr; i++) seen[tr[i]]++;
    for (int64_t i = 0; i < nva; i++) seen[va[i]]++;
    for (int i = 0; i < 100; i++) assert_int_equal(seen[i], 1);
    int64_t *tr2, *va2, n2, m2;
    assert_int_equal(mopt_split_indices(100, 0.2, 3, &tr2, &n2, &va2, &m2, &err), MOPT_OK);
    assert_memory_equal(va, va2, 20 * sizeof(int64_t));
    free(tr);
    free(va);
    free(tr2);
    free(va2);
    assert_int_equal(mopt_split_indices(100, 1.5, 3, &tr, &ntr, &va, &nva, &err), MOPT_ERR_ARG);
}

static void test_augmentation(void **st) {
    (void)st;
    /* one 4x5 image with distinct pixels */
    mopt_dataset d;
    memset(&d, 0, sizeof(d));
    d.n = 1;
    d.h = 4;
    d.w = 5;
    d.c = 1;
    float img[20];
    for (int i = 0; i < 20; i++) img[i] = (float)(i + 1);
    int32_t lab = 0;
    d.images = img;
    d.labels = &lab;
    d.num_classes = 1;
    mopt_augment aug = {0, true};
    mopt_loader *l;
    mopt_error err;
    assert_int_equal(mopt_loader_create(&d, NULL, 1, 1, false, 5, &aug, &l, &err), MOPT_OK);
    int flipped = 0, plain = 0;
    for (int e = 0; e < 40; e++) {
        float x[20];
        int cnt;
        int32_t y;
        mopt_loader_seek(l, e, 0);
        mopt_loader_next(l, x, &y, &cnt);
        bool is_plain = true, is_flip = true;
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < 5; c++) {
                is_plain &= x[r * 5 + c] == img[r * 5 + c];
                is_flip &= x[r * 5 + c] == img[r * 5 + (4 - c)];
            }
        assert_true(is_plain || is_flip);
        flipped += is_flip;
        plain += is_plain;
    }
    assert_true(flipped > 5 && plain > 5);
    mopt_loader_free(l);
    /* random crop with padding 1: a shifted copy with zero borders */
    mopt_augment crop = {1, false};
    assert_int_equal(mopt_loader_create(&d, NULL, 1, 1, false, 5, &crop, &l, &err), MOPT_OK);
    int shifted = 0;
    for (int e = 0; e < 40; e++) {
        float x[20];
        int cnt;
        int32_t y;
        mopt_loader_seek(l, e, 0);
        mopt_loader_next(l, x, &y, &cnt);
        bool found = false;
        for (int dy = -1; dy <= 1 && !found; dy++)
            for (int dx = -1; dx <= 1 && !found; dx++) {
                bool ok = true;
                for (int r = 0; r < 4; r++)
                    for (int c = 0; c < 5; c++) {
                        int sr = r + dy, sc = c + dx;
                        float want = (sr < 0 || sr >= 4 || sc < 0 || sc >= 5) ? 0.0f : img[sr * 5 + sc];
                        ok &= x[r * 5 + c] == want;
                    }
                if (ok) {
                    found = true;
                    shifted += dy != 0 || dx != 0;
                }
            }
        assert_true(found);
    }
    assert_true(shifted > 10);
    mopt_loader_free(l);
}

/* ---- transforms ---- */

/* A custom transform like weight clustering's: eff = latent * mask + shift,
 * where `mask` is state and `shift` a trainable variable the transform owns.
 * Straight-through: d latent = d eff (mask ignored, as tfmot does), and
 * d shift = sum d eff. */
typedef struct shift_state {
    int mask, shift;
    int forward_calls;
} shift_state;

static mopt_status shift_fwd(void *s, const mopt_wt_args *a, mopt_error *err) {
    (void)err;
    shift_state *st = s;
    const float *mask = mopt_tgraph_var(a->tg, st->mask)->data;
    const float sh = mopt_tgraph_var(a->tg, st->shift)->data[0];
    for (int64_t i = 0; i < a->n; i++) a->out[i] = a->in[i] * mask[i] + sh;
    st->forward_calls++;
    return MOPT_OK;
}

static mopt_status shift_bwd(void *s, const mopt_wt_args *a, mopt_error *err) {
    (void)err;
    shift_state *st = s;
    float *gs = mopt_tgraph_var(a->tg, st->shift)->grad;
    double sum = 0;
    for (int64_t i = 0; i < a->n; i++) {
        a->din[i] = a->dout[i];
        sum += a->dout[i];
    }
    gs[0] += (float)sum;
    return MOPT_OK;
}

static mopt_tgraph *tiny_fc_graph(void) {
    mopt_arch_options o = mopt_arch_default_options();
    o.in_h = 3;
    o.in_w = 2;
    o.num_classes = 3;
    mopt_tgraph *tg = NULL;
    mopt_error err;
    assert_int_equal(mopt_tgraph_from_spec("fc 4 tanh; fc classes", &o, &tg, &err), MOPT_OK);
    mopt_tgraph_set_num_threads(tg, 1);
    return tg;
}

static void test_transform_ste(void **st) {
    (void)st;
    mopt_error err;
    mopt_tgraph *tg = tiny_fc_graph();
    int w = mopt_tgraph_find_var(tg, "fc1/weights");
    assert_true(w >= 0);
    const mopt_tvar *wv = mopt_tgraph_var(tg, w);
    /* identity transform: effective == latent, gradients unchanged */
    float x[12], dy[6];
    for (int i = 0; i < 12; i++) x[i] = (float)(i % 5) * 0.3f - 0.5f;
    for (int i = 0; i < 6; i++) dy[i] = (float)i * 0.1f - 0.2f;
    assert_int_equal(mopt_tgraph_forward(tg, x, 2, true, 0, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_set_output_grad(tg, dy, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_backward(tg, &err), MOPT_OK);
    float *g0 = malloc((size_t)wv->numel * sizeof(float));
    memcpy(g0, wv->grad, (size_t)wv->numel * sizeof(float));
    mopt_weight_transform id = mopt_identity_transform();
    assert_int_equal(mopt_tgraph_push_weight_transform(tg, w, &id, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_forward(tg, x, 2, true, 0, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_set_output_grad(tg, dy, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_backward(tg, &err), MOPT_OK);
    assert_memory_equal(g0, wv->grad, (size_t)wv->numel * sizeof(float));
    assert_memory_equal(mopt_tgraph_var_effective(tg, w), wv->data,
                        (size_t)wv->numel * sizeof(float));
    mopt_tgraph_clear_weight_transforms(tg, w);

    /* custom transform: mask + trainable shift */
    shift_state *ss = calloc(1, sizeof(*ss));
    int32_t md[2] = {wv->dims[0], wv->dims[1]}, sd[1] = {1};
    assert_int_equal(mopt_tgraph_add_var(tg, "fc1/weights/mask", 2, md, 0, &ss->mask, &err),
                     MOPT_OK);
    assert_int_equal(mopt_tgraph_add_var(tg, "fc1/weights/shift", 1, sd, MOPT_TVAR_TRAINABLE,
                                         &ss->shift, &err),
                     MOPT_OK);
    wv = mopt_tgraph_var(tg, w); /* (pointers stay valid; re-read for clarity) */
    float *mask = mopt_tgraph_var(tg, ss->mask)->data;
    for (int64_t i = 0; i < wv->numel; i++) mask[i] = (i % 3 == 0) ? 0.0f : 1.0f;
    mopt_tgraph_var(tg, ss->shift)->data[0] = 0.05f;
    mopt_weight_transform t = {"shift", ss, shift_fwd, shift_bwd, free};
    assert_int_equal(mopt_tgraph_push_weight_transform(tg, w, &t, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_num_weight_transforms(tg, w), 1);

    /* Reference: the same graph without the transform, latent = effective. */
    mopt_tgraph *ref = tiny_fc_graph();
    mopt_tvar *rw = mopt_tgraph_var(ref, mopt_tgraph_find_var(ref, "fc1/weights"));
    for (int64_t i = 0; i < rw->numel; i++) rw->data[i] = wv->data[i] * mask[i] + 0.05f;

    assert_int_equal(mopt_tgraph_forward(tg, x, 2, true, 0, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_forward(ref, x, 2, true, 0, &err), MOPT_OK);
    assert_memory_equal(mopt_tgraph_output(tg), mopt_tgraph_output(ref), 6 * sizeof(float));
    const float *eff = mopt_tgraph_var_effective(tg, w);
    for (int64_t i = 0; i < wv->numel; i++) assert_true(eff[i] == rw->data[i]);
    assert_int_equal(mopt_tgraph_set_output_grad(tg, dy, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_set_output_grad(ref, dy, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_backward(tg, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_backward(ref, &err), MOPT_OK);
    /* STE: the latent gradient is the gradient w.r.t. the effective weights */
    assert_memory_equal(wv->grad, rw->grad, (size_t)wv->numel * sizeof(float));
    double sum = 0;
    for (int64_t i = 0; i < rw->numel; i++) sum += rw->grad[i];
    assert_true(fabs(mopt_tgraph_var(tg, ss->shift)->grad[0] - sum) < 1e-6);
    /* the optimizer trains the transform's variable too */
    mopt_optim_params p = mopt_optim_default_params(MOPT_OPTIM_SGD);
    p.momentum = 0.0f;
    mopt_optimizer *o;
    assert_int_equal(mopt_optimizer_create(tg, &p, &o, &err), MOPT_OK);
    float before = mopt_tgraph_var(tg, ss->shift)->data[0];
    assert_int_equal(mopt_optimizer_step(o, 0.5f, NULL, &err), MOPT_OK);
    assert_true(fabs(mopt_tgraph_var(tg, ss->shift)->data[0] - (before - 0.5 * sum)) < 1e-6);
    /* the mask (state) is not trained */
    assert_true(mask[0] == 0.0f && mask[1] == 1.0f);
    assert_true(ss->forward_calls == 1);
    /* bake: latent := effective, chain removed (the state is destroyed) */
    const int shift_var = ss->shift;
    assert_int_equal(mopt_tgraph_bake_transforms(tg, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_num_weight_transforms(tg, w), 0);
    assert_true(wv->data[0] == mopt_tgraph_var(tg, shift_var)->data[0]); /* mask 0: shift only */
    mopt_optimizer_free(o);
    free(g0);
    mopt_tgraph_free(ref);
    mopt_tgraph_free(tg);
}

/* Activation transform: y = 2*x forward, straight-through x2 backward. */
static mopt_status dbl_fwd(void *s, const mopt_at_args *a, mopt_error *err) {
    (void)s;
    (void)err;
    for (int64_t i = 0; i < a->n; i++) a->out[i] = 2.0f * a->in[i];
    return MOPT_OK;
}
static mopt_status dbl_bwd(void *s, const mopt_at_args *a, mopt_error *err) {
    (void)s;
    (void)err;
    for (int64_t i = 0; i < a->n; i++) a->din[i] = 2.0f * a->dout[i];
    return MOPT_OK;
}

static void test_activation_transform(void **st) {
    (void)st;
    mopt_error err;
    mopt_tgraph *tg = tiny_fc_graph(), *ref = tiny_fc_graph();
    /* ref doubles fc1's weights and bias: same as doubling fc1's output
     * before tanh? No: fc1 has tanh fused, so double the output of the
     * last node instead (fc2, linear): y2 = 2*(W x + b) */
    mopt_tnode_info info;
    const int last = mopt_tgraph_num_nodes(tg) - 1;
    assert_int_equal(mopt_tgraph_node_info(tg, last, &info, &err), MOPT_OK);
    assert_true(info.is_output && info.kind == MOPT_OP_FULLY_CONNECTED);
    mopt_act_transform at = {"double", NULL, dbl_fwd, dbl_bwd, NULL};
    assert_int_equal(mopt_tgraph_set_act_transform(tg, last, &at, &err), MOPT_OK);
    mopt_tvar *rw = mopt_tgraph_var(ref, info.weights), *rb = mopt_tgraph_var(ref, info.bias);
    for (int64_t i = 0; i < rw->numel; i++) rw->data[i] *= 2.0f;
    for (int64_t i = 0; i < rb->numel; i++) rb->data[i] *= 2.0f;
    float x[6] = {0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f};
    float dy[3] = {0.3f, -0.1f, 0.2f};
    assert_int_equal(mopt_tgraph_forward(tg, x, 1, true, 0, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_forward(ref, x, 1, true, 0, &err), MOPT_OK);
    for (int i = 0; i < 3; i++)
        assert_true(fabsf(mopt_tgraph_output(tg)[i] - mopt_tgraph_output(ref)[i]) < 1e-6f);
    assert_int_equal(mopt_tgraph_set_output_grad(tg, dy, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_set_output_grad(ref, dy, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_backward(tg, &err), MOPT_OK);
    assert_int_equal(mopt_tgraph_backward(ref, &err), MOPT_OK);
    /* d fc1 weights agree (fc2 weights differ by the factor, by design) */
    const mopt_tvar *g1 = mopt_tgraph_var(tg, mopt_tgraph_find_var(tg, "fc1/weights"));
    const mopt_tvar *r1 = mopt_tgraph_var(ref, mopt_tgraph_find_var(ref, "fc1/weights"));
    for (int64_t i = 0; i < g1->numel; i++) assert_true(fabsf(g1->grad[i] - r1->grad[i]) < 1e-6f);
    mopt_tgraph_free(tg);
    mopt_tgraph_free(ref);
}

/* ---- training ---- */

/* Synthetic separable problem: 8x8 images, class = which quadrant is bright. */
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
            for (int x = 0; x < 8; x++) {
                int qq = (y >= 4) * 2 + (x >= 4);
                d.images[i * 64 + y * 8 + x] =
                    0.3f * mopt_rng_uniform(&r) + (qq == q ? 0.5f : 0.0f);
            }
    }
    return d;
}

static mopt_tgraph *small_cnn(int threads) {
    mopt_arch_options o = mopt_arch_default_options();
    o.in_h = o.in_w = 8;
    o.num_classes = 4;
    o.seed = 11;
    o.bn_momentum = 0.9f; /* few steps: running statistics must catch up */
    mopt_tgraph *tg = NULL;
    mopt_error err;
    assert_int_equal(mopt_tgraph_from_spec("conv 8 3 bn relu; maxpool 2; conv 12 3 s 2 bn relu; "
                                           "flatten; dropout 0.1; fc 16 relu; fc classes",
                                           &o, &tg, &err),
                     MOPT_OK);
    mopt_tgraph_set_num_threads(tg, threads);
    return tg;
}

static void test_train_reduces_loss(void **st) {
    (void)st;
    mopt_dataset tr = quadrants(512, 1), te = quadrants(256, 2);
    mopt_tgraph *tg = small_cnn(1);
    mopt_error err;
    double loss0, acc0;
    assert_int_equal(mopt_tgraph_evaluate(tg, &te, NULL, 0, 64, &loss0, &acc0, &err), MOPT_OK);
    mopt_train_options o = mopt_train_default_options();
    o.epochs = 3;
    o.batch_size = 32;
    o.num_threads = 1;
    o.schedule.base_lr = 3e-3f;
    mopt_train_result r;
    assert_int_equal(mopt_train(tg, &tr, &o, &r, &err), MOPT_OK);
    double loss1, acc1;
    assert_int_equal(mopt_tgraph_evaluate(tg, &te, NULL, 0, 64, &loss1, &acc1, &err), MOPT_OK);
    if (getenv("TRAIN_DEBUG"))
        print_message("loss %g -> %g, accuracy %g -> %g\n", loss0, loss1, acc0, acc1);
    assert_int_equal(r.epochs_done, 3);
    assert_int_equal(r.steps, 3 * 16);
    assert_true(loss1 < 0.5 * loss0);
    assert_true(acc1 > 0.95);
    mopt_tgraph_free(tg);
    mopt_dataset_free(&tr);
    mopt_dataset_free(&te);
}

/* Identical weights for 1 and 2 threads, and for two runs. */
static void test_thread_determinism(void **st) {
    (void)st;
    mopt_dataset tr = quadrants(300, 3);
    mopt_tgraph *a = small_cnn(1), *b = small_cnn(2), *c = small_cnn(2);
    mopt_train_options o = mopt_train_default_options();
    o.epochs = 1;
    o.batch_size = 50;
    o.augment.hflip = true;
    o.augment.crop_pad = 1;
    mopt_error err;
    o.num_threads = 1;
    assert_int_equal(mopt_train(a, &tr, &o, NULL, &err), MOPT_OK);
    o.num_threads = 2;
    assert_int_equal(mopt_train(b, &tr, &o, NULL, &err), MOPT_OK);
    assert_int_equal(mopt_train(c, &tr, &o, NULL, &err), MOPT_OK);
    for (int i = 0; i < mopt_tgraph_num_vars(a); i++) {
        const mopt_tvar *va = mopt_tgraph_var(a, i), *vb = mopt_tgraph_var(b, i),
                        *vc = mopt_tgraph_var(c, i);
        assert_memory_equal(va->data, vb->data, (size_t)va->numel * sizeof(float));
        assert_memory_equal(vb->data, vc->data, (size_t)va->numel * sizeof(float));
    }
    mopt_tgraph_free(a);
    mopt_tgraph_free(b);
    mopt_tgraph_free(c);
    mopt_dataset_free(&tr);
}

static void test_bad_data_and_options(void **st) {
    (void)st;
    mopt_dataset tr = quadrants(64, 3);
    mopt_tgraph *tg = small_cnn(1);
    mopt_train_options o = mopt_train_default_options();
    o.epochs = 1;
    mopt_error err;
    tr.labels[5] = 4; /* the model has 4 classes: 0..3 */
    assert_int_equal(mopt_train(tg, &tr, &o, NULL, &err), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(err.msg, "label 4"));
    tr.labels[5] = 0;
    tr.w = 4; /* shape mismatch: 32 values per sample, the model takes 64 */
    assert_int_equal(mopt_train(tg, &tr, &o, NULL, &err), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(err.msg, "model input"));
    tr.h = tr.w = 8;
    o.batch_size = 0;
    assert_int_equal(mopt_train(tg, &tr, &o, NULL, &err), MOPT_ERR_ARG);
    mopt_tgraph_free(tg);
    mopt_dataset_free(&tr);
    mopt_tgraph *bad = NULL;
    assert_int_equal(mopt_tgraph_from_arch("vgg", NULL, &bad, &err), MOPT_ERR_ARG);
    assert_non_null(strstr(err.msg, "vgg"));
    assert_int_equal(mopt_tgraph_from_spec("conv 8 3; frobnicate; fc classes", NULL, &bad, &err),
                     MOPT_ERR_ARG);
    assert_non_null(strstr(err.msg, "frobnicate"));
    assert_int_equal(mopt_tgraph_from_spec("conv 8 3; gap", NULL, &bad, &err), MOPT_ERR_ARG);
    assert_null(bad);
}

static void test_builtin_architectures(void **st) {
    (void)st;
    const char *const *names = mopt_arch_names();
    int n = 0;
    for (; names[n]; n++) {
        mopt_tgraph *tg = NULL;
        mopt_error err;
        assert_int_equal(mopt_tgraph_from_arch(names[n], NULL, &tg, &err), MOPT_OK);
        assert_int_equal(mopt_tgraph_num_outputs(tg), 10);
        assert_int_equal(mopt_tgraph_input_size(tg, NULL, NULL), 28 * 28);
        assert_true(mopt_tgraph_param_count(tg) > 1000);
        mopt_tgraph_free(tg);
    }
    assert_int_equal(n, 5);
    /* width multiplier scales channels */
    mopt_arch_options o = mopt_arch_default_options();
    mopt_tgraph *a = NULL, *b = NULL;
    mopt_error err;
    assert_int_equal(mopt_tgraph_from_arch("mobilenet", &o, &a, &err), MOPT_OK);
    o.width = 0.5f;
    assert_int_equal(mopt_tgraph_from_arch("mobilenet", &o, &b, &err), MOPT_OK);
    assert_true(mopt_tgraph_param_count(b) < mopt_tgraph_param_count(a) / 2);
    mopt_tgraph_free(a);
    mopt_tgraph_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_sgd_nesterov_decay),
        cmocka_unit_test(test_adam),
        cmocka_unit_test(test_adamw_vs_adam_decay),
        cmocka_unit_test(test_clipping_and_nonfinite),
        cmocka_unit_test(test_lr_schedules),
        cmocka_unit_test(test_shuffle_determinism),
        cmocka_unit_test(test_split_indices),
        cmocka_unit_test(test_augmentation),
        cmocka_unit_test(test_transform_ste),
        cmocka_unit_test(test_activation_transform),
        cmocka_unit_test(test_train_reduces_loss),
        cmocka_unit_test(test_thread_determinism),
        cmocka_unit_test(test_bad_data_and_options),
        cmocka_unit_test(test_builtin_architectures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
