/* Unit tests for src/sparsity: pruning schedules, magnitude / block / M:N
 * masks (against numbers recorded from tfmot itself, see
 * tests/golden/make_tfmot_sparse_golden.py, and against their defining
 * properties), weight-layer selection and one-shot graph pruning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mopt/mopt.h"
#include "mopt/report.h"
#include "mopt/sparsity.h"
#include "rt_testutil.h"

#include "../golden/tfmot_sparse_golden.h"

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---------------------------------------------------------------- schedules */

static mopt_prune_schedule sched_from_golden(const golden_sched *g) {
    return g->kind == 0 ? mopt_prune_schedule_constant(g->final_s, g->begin, g->end, g->freq)
                        : mopt_prune_schedule_polynomial(g->initial, g->final_s, g->begin, g->end,
                                                         g->power, g->freq);
}

static void test_schedule_golden(void **state) {
    (void)state;
    for (int i = 0; i < N_OF(golden_scheds); i++) {
        mopt_prune_schedule s = sched_from_golden(&golden_scheds[i]);
        mopt_error e;
        assert_int_equal(mopt_prune_schedule_validate(&s, &e), MOPT_OK);
    }
    int mismatches = 0;
    for (int i = 0; i < N_OF(golden_sched_pts); i++) {
        const golden_sched_pt *pt = &golden_sched_pts[i];
        mopt_prune_schedule s = sched_from_golden(&golden_scheds[pt->sched]);
        bool gate = mopt_prune_schedule_should_prune(&s, pt->step);
        float sp = mopt_prune_schedule_sparsity(&s, pt->step);
        if ((int)gate != pt->prune || memcmp(&sp, &pt->sparsity, sizeof sp) != 0) {
            printf("schedule %d step %lld: mopt (%d, %.9g) tfmot (%d, %.9g)\n", pt->sched,
                   pt->step, (int)gate, (double)sp, pt->prune, (double)pt->sparsity);
            mismatches++;
        }
    }
    assert_int_equal(mismatches, 0);
}

static void test_schedule_formulas(void **state) {
    (void)state;
    /* Hand-checked values (independent of the golden file). */
    mopt_prune_schedule c = mopt_prune_schedule_constant(0.5, 100, 1000, 100);
    assert_false(mopt_prune_schedule_should_prune(&c, 99));
    assert_true(mopt_prune_schedule_should_prune(&c, 100));
    assert_false(mopt_prune_schedule_should_prune(&c, 150));
    assert_true(mopt_prune_schedule_should_prune(&c, 1000));
    assert_false(mopt_prune_schedule_should_prune(&c, 1100));
    assert_true(mopt_prune_schedule_sparsity(&c, 7) == 0.5f);
    mopt_prune_schedule forever = mopt_prune_schedule_constant(0.5, 0, -1, 10);
    assert_true(mopt_prune_schedule_should_prune(&forever, 1000000));
    /* Polynomial 0 -> 0.9 over [0, 1000], power 3: at 500, 0.9 - 0.9/8. */
    mopt_prune_schedule p = mopt_prune_schedule_polynomial(0.0, 0.9, 0, 1000, 3.0, 100);
    assert_float_equal(mopt_prune_schedule_sparsity(&p, 500), 0.7875f, 1e-6f);
    assert_true(mopt_prune_schedule_sparsity(&p, 0) == 0.0f);
    assert_true(mopt_prune_schedule_sparsity(&p, 1000) == 0.9f);
    assert_true(mopt_prune_schedule_sparsity(&p, 5000) == 0.9f); /* p clipped to 1 */
    assert_true(mopt_prune_schedule_sparsity(&p, -5) == 0.0f);   /* p clipped to 0 */
}

static void test_schedule_validation(void **state) {
    (void)state;
    mopt_error e;
    mopt_prune_schedule s = mopt_prune_schedule_constant(0.5, -1, 10, 1);
    assert_int_equal(mopt_prune_schedule_validate(&s, &e), MOPT_ERR_ARG);
    assert_non_null(strstr(e.msg, "begin_step"));
    s = mopt_prune_schedule_constant(0.5, 10, 5, 1);
    assert_int_equal(mopt_prune_schedule_validate(&s, &e), MOPT_ERR_ARG);
    assert_non_null(strstr(e.msg, "end_step"));
    s = mopt_prune_schedule_constant(0.5, 0, -2, 1);
    assert_int_equal(mopt_prune_schedule_validate(&s, &e), MOPT_ERR_ARG);
    s = mopt_prune_schedule_constant(0.5, 0, 10, 0);
    assert_int_equal(mopt_prune_schedule_validate(&s, &e), MOPT_ERR_ARG);
    assert_non_null(strstr(e.msg, "frequency"));
    s = mopt_prune_schedule_constant(1.0, 0, 10, 1);
    assert_int_equal(mopt_prune_schedule_validate(&s, &e), MOPT_ERR_ARG);
    assert_non_null(strstr(e.msg, "[0,1)"));
    s = mopt_prune_schedule_constant(-0.1, 0, 10, 1);
    assert_int_equal(mopt_prune_schedule_validate(&s, &e), MOPT_ERR_ARG);
    s = mopt_prune_schedule_polynomial(0.0, 0.5, 0, -1, 3, 1);
    assert_int_equal(mopt_prune_schedule_validate(&s, &e), MOPT_ERR_ARG);
    assert_non_null(strstr(e.msg, "-1"));
    s = mopt_prune_schedule_polynomial(0.0, 0.5, 7, 7, 3, 1);
    assert_int_equal(mopt_prune_schedule_validate(&s, &e), MOPT_ERR_ARG);
    s = mopt_prune_schedule_polynomial(1.5, 0.5, 0, 10, 3, 1);
    assert_int_equal(mopt_prune_schedule_validate(&s, &e), MOPT_ERR_ARG);
    assert_non_null(strstr(e.msg, "initial_sparsity"));
    s = mopt_prune_schedule_polynomial(0.0, 0.5, 0, 10, 3, 1);
    assert_int_equal(mopt_prune_schedule_validate(&s, &e), MOPT_OK);
    s = mopt_prune_schedule_constant(0.0, 0, 0, 1); /* end == begin is fine for constant */
    assert_int_equal(mopt_prune_schedule_validate(&s, &e), MOPT_OK);
}

/* ---------------------------------------------------------------- masks */

static void test_keep_count_rounding(void **state) {
    (void)state;
    assert_int_equal(mopt_prune_keep_count(10, 0.25f), 8); /* 7.5 -> 8 (even) */
    assert_int_equal(mopt_prune_keep_count(6, 0.25f), 4);  /* 4.5 -> 4 (even) */
    assert_int_equal(mopt_prune_keep_count(7, 0.5f), 4);   /* 3.5 -> 4 */
    assert_int_equal(mopt_prune_keep_count(5, 0.5f), 2);   /* 2.5 -> 2 */
    assert_int_equal(mopt_prune_keep_count(100, 0.999f), 1);
    assert_int_equal(mopt_prune_keep_count(3, 0.9f), 1); /* 0.3 -> 0 -> max(., 1) */
    assert_int_equal(mopt_prune_keep_count(1000, 0.0f), 1000);
}

static void test_magnitude_golden(void **state) {
    (void)state;
    for (int c = 0; c < N_OF(golden_mags); c++) {
        const golden_mag *g = &golden_mags[c];
        uint8_t *mask = malloc((size_t)g->n);
        float thr = -1.0f;
        mopt_error e;
        assert_int_equal(mopt_mask_magnitude(g->w, g->n, g->s, mask, &thr, &e), MOPT_OK);
        assert_true(thr == g->thr);
        for (int i = 0; i < g->n; i++)
            if (mask[i] != g->mask[i]) {
                printf("case %d element %d: mopt %d tfmot %d\n", c, i, mask[i], g->mask[i]);
                fail();
            }
        free(mask);
    }
}

static void test_magnitude_properties(void **state) {
    (void)state;
    rng r = {12345u};
    const int sizes[] = {1, 2, 3, 17, 100, 257, 1000};
    const float sps[] = {0.0f, 0.1f, 0.5f, 0.75f, 0.9f, 0.99f};
    for (int a = 0; a < N_OF(sizes); a++) {
        for (int b = 0; b < N_OF(sps); b++) {
            int n = sizes[a];
            float *w = malloc((size_t)n * sizeof *w);
            uint8_t *m = malloc((size_t)n);
            rng_fill(&r, w, (size_t)n);
            /* Quantize half the cases so ties at the threshold happen. */
            if (b % 2)
                for (int i = 0; i < n; i++)
                    w[i] = (float)(int)(w[i] * 8.0f) / 8.0f;
            float thr;
            assert_int_equal(mopt_mask_magnitude(w, n, sps[b], m, &thr, NULL), MOPT_OK);
            int64_t k = mopt_prune_keep_count(n, sps[b]);
            int kept = 0, at_thr_or_above = 0;
            for (int i = 0; i < n; i++) {
                kept += m[i];
                at_thr_or_above += fabsf(w[i]) >= thr;
                /* kept iff |w| >= threshold: ties are kept */
                assert_int_equal(m[i], fabsf(w[i]) >= thr);
            }
            assert_true(kept >= k);
            /* exactly k kept unless ties at the threshold */
            int strictly_above = 0, equal = 0;
            for (int i = 0; i < n; i++) {
                strictly_above += fabsf(w[i]) > thr;
                equal += fabsf(w[i]) == thr;
            }
            assert_true(strictly_above < k && strictly_above + equal >= k);
            assert_int_equal(kept, at_thr_or_above);
            free(w);
            free(m);
        }
    }
}

static void test_block_golden(void **state) {
    (void)state;
    for (int c = 0; c < N_OF(golden_blks); c++) {
        const golden_blk *g = &golden_blks[c];
        int n = g->rows * g->cols;
        uint8_t *mask = malloc((size_t)n);
        float thr;
        assert_int_equal(mopt_mask_block(g->w, g->rows, g->cols, g->bh, g->bw,
                                         (mopt_block_pool)g->pool, g->s, mask, &thr, NULL),
                         MOPT_OK);
        assert_float_equal(thr, g->thr, 1e-6f * (1.0f + fabsf(g->thr)));
        for (int i = 0; i < n; i++)
            if (mask[i] != g->mask[i]) {
                printf("block case %d element %d: mopt %d tfmot %d\n", c, i, mask[i], g->mask[i]);
                fail();
            }
        free(mask);
    }
}

static void test_block_structure(void **state) {
    (void)state;
    /* Blocks aligned at 0 are constant within a block (the expansion). */
    rng r = {99u};
    const int rows = 13, cols = 22, bh = 2, bw = 4;
    float w[13 * 22];
    uint8_t m[13 * 22];
    rng_fill(&r, w, sizeof w / sizeof w[0]);
    assert_int_equal(mopt_mask_block(w, rows, cols, bh, bw, MOPT_BLOCK_POOL_MAX, 0.5f, m, NULL,
                                     NULL),
                     MOPT_OK);
    int zeros = 0;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            assert_int_equal(m[i * cols + j], m[(i / bh * bh) * cols + j / bw * bw]);
            zeros += !m[i * cols + j];
        }
    assert_true(zeros > 0);
    /* 1x1 blocks are the element-wise rule. */
    uint8_t m1[13 * 22], m2[13 * 22];
    mopt_mask_block(w, rows, cols, 1, 1, MOPT_BLOCK_POOL_AVG, 0.3f, m1, NULL, NULL);
    mopt_mask_magnitude(w, rows * cols, 0.3f, m2, NULL, NULL);
    assert_memory_equal(m1, m2, sizeof m1);
}

static void test_m_by_n_golden(void **state) {
    (void)state;
    mopt_prune_params p = mopt_prune_default_params();
    for (int c = 0; c < N_OF(golden_mns); c++) {
        const golden_mn *g = &golden_mns[c];
        p.m = g->m;
        p.n = g->n;
        mopt_op_type type = g->kind == 0   ? MOPT_OP_FULLY_CONNECTED
                            : g->kind == 1 ? MOPT_OP_CONV_2D
                                           : MOPT_OP_DEPTHWISE_CONV_2D;
        int rank = g->kind == 0 ? 2 : 4;
        int n = g->dims[0] * g->dims[1] * g->dims[2] * g->dims[3];
        uint8_t *mask = malloc((size_t)n);
        mopt_prune_pattern pat;
        float thr;
        mopt_error e;
        assert_int_equal(
            mopt_prune_mask(type, rank, g->dims, g->mult, g->w, &p, mask, &pat, &thr, &e),
            MOPT_OK);
        assert_int_equal(pat, MOPT_PRUNE_M_BY_N);
        assert_true(thr == 999.0f);
        for (int i = 0; i < n; i++)
            if (mask[i] != g->mask[i]) {
                printf("M:N case %d element %d: mopt %d tfmot %d\n", c, i, mask[i], g->mask[i]);
                fail();
            }
        free(mask);
    }
}

static void test_m_by_n_every_group(void **state) {
    (void)state;
    rng r = {7u};
    const int pats[][2] = {{2, 4}, {1, 4}, {3, 8}, {1, 2}, {5, 7}};
    const int shapes[][2] = {{1, 1}, {3, 4}, {5, 13}, {16, 64}, {7, 3}, {2, 9}};
    for (int a = 0; a < N_OF(pats); a++)
        for (int b = 0; b < N_OF(shapes); b++) {
            int rows = shapes[b][0], cols = shapes[b][1], m = pats[a][0], n = pats[a][1];
            float *w = malloc((size_t)(rows * cols) * sizeof *w);
            uint8_t *mk = malloc((size_t)(rows * cols));
            rng_fill(&r, w, (size_t)(rows * cols));
            assert_int_equal(mopt_mask_m_by_n(w, rows, cols, m, n, mk, NULL), MOPT_OK);
            for (int i = 0; i < rows; i++)
                for (int c0 = 0; c0 < cols; c0 += n) {
                    int len = cols - c0 < n ? cols - c0 : n, kept = 0;
                    float min_kept = INFINITY, max_cut = -1.0f;
                    for (int j = 0; j < len; j++) {
                        float v = fabsf(w[i * cols + c0 + j]);
                        if (mk[i * cols + c0 + j]) {
                            kept++;
                            min_kept = v < min_kept ? v : min_kept;
                        } else {
                            max_cut = v > max_cut ? v : max_cut;
                        }
                    }
                    /* a full group has exactly m zeros; a short one keeps min(n-m, len) */
                    assert_int_equal(kept, len < n - m ? len : n - m);
                    assert_true(max_cut <= min_kept);
                }
            free(w);
            free(mk);
        }
    mopt_error e;
    float w[8] = {0};
    uint8_t mk[8];
    assert_int_equal(mopt_mask_m_by_n(w, 2, 4, 4, 4, mk, &e), MOPT_ERR_ARG);
    assert_int_equal(mopt_mask_m_by_n(w, 2, 4, 0, 4, mk, &e), MOPT_ERR_ARG);
}

static void test_params_validation(void **state) {
    (void)state;
    mopt_error e;
    mopt_prune_params p = mopt_prune_default_params();
    assert_int_equal(mopt_prune_params_validate(&p, &e), MOPT_OK);
    p.sparsity = 1.0f;
    assert_int_equal(mopt_prune_params_validate(&p, &e), MOPT_ERR_ARG);
    assert_non_null(strstr(e.msg, "--sparsity"));
    p.sparsity = -0.01f;
    assert_int_equal(mopt_prune_params_validate(&p, &e), MOPT_ERR_ARG);
    p = mopt_prune_default_params();
    p.m = 4;
    p.n = 4;
    assert_int_equal(mopt_prune_params_validate(&p, &e), MOPT_ERR_ARG);
    assert_non_null(strstr(e.msg, "--m-by-n"));
    p.m = 2;
    p.block_w = 4;
    assert_int_equal(mopt_prune_params_validate(&p, &e), MOPT_ERR_ARG);
    p = mopt_prune_default_params();
    p.block_h = 0;
    assert_int_equal(mopt_prune_params_validate(&p, &e), MOPT_ERR_ARG);
    assert_non_null(strstr(e.msg, "--block"));
}

/* ---------------------------------------------------------------- graphs */

/* conv [8,3,3,4] -> dw [1,3,3,8] -> FC [10, 8*6*6]; weights share buffers
 * between the FC and an unused-by-pruning constant to test copy-on-write. */
static mopt_graph *small_graph(void) {
    mopt_graph *g = mopt_graph_create();
    rng r = {2024u};
    int32_t din[4] = {1, 8, 8, 4}, dw_c[4] = {8, 3, 3, 4}, dw_d[4] = {1, 3, 3, 8};
    int32_t d1[4] = {1, 6, 6, 8}, dfl[2] = {1, 288}, dfc[2] = {10, 288}, dout[2] = {1, 10};
    int32_t db8[1] = {8}, db10[1] = {10}, dshape[1] = {2};
    float wc[8 * 36], wd[72], wf[2880], b8[8], b10[10];
    rng_fill(&r, wc, 288);
    rng_fill(&r, wd, 72);
    rng_fill(&r, wf, 2880);
    rng_fill(&r, b8, 8);
    rng_fill(&r, b10, 10);
    int32_t shape[2] = {1, 288};
    int in = t_f32(g, "input", 4, din);
    int tw = t_cf32(g, "conv/w", 4, dw_c, wc), tb = t_cf32(g, "conv/b", 1, db8, b8);
    int t1 = t_f32(g, "conv/out", 4, d1);
    int tdw = t_cf32(g, "dw/w", 4, dw_d, wd), tdb = t_cf32(g, "dw/b", 1, db8, b8);
    int t2 = t_f32(g, "dw/out", 4, d1);
    int ts = t_ci32(g, "shape", 1, dshape, shape);
    int t3 = t_f32(g, "flat", 2, dfl);
    int tf = t_cf32(g, "fc/w", 2, dfc, wf), tfb = t_cf32(g, "fc/b", 1, db10, b10);
    int out = t_f32(g, "logits", 2, dout);
    int32_t i0[3] = {in, tw, tb}, i1[3] = {t1, tdw, tdb}, i2[2] = {t2, ts}, i3[3] = {t3, tf, tfb};
    int op = add_op(g, MOPT_OP_CONV_2D, i0, 3, t1);
    g->ops[op].p.conv.padding = MOPT_PAD_VALID;
    g->ops[op].p.conv.stride_w = g->ops[op].p.conv.stride_h = 1;
    g->ops[op].has_options = true;
    op = add_op(g, MOPT_OP_DEPTHWISE_CONV_2D, i1, 3, t2);
    g->ops[op].p.conv.padding = MOPT_PAD_SAME;
    g->ops[op].p.conv.stride_w = g->ops[op].p.conv.stride_h = 1;
    g->ops[op].p.conv.depth_multiplier = 1;
    g->ops[op].has_options = true;
    add_op(g, MOPT_OP_RESHAPE, i2, 2, t3);
    add_op(g, MOPT_OP_FULLY_CONNECTED, i3, 3, out);
    set_io1(g, in, out);
    /* "shadow" shares the FC weights' buffer and must not change. */
    int shadow = t_f32(g, "shadow", 2, dfc);
    g->tensors[shadow].buffer = g->tensors[tf].buffer;
    return g;
}

static int64_t zeros_of(const mopt_graph *g, int t) {
    const float *w = mopt_tensor_data(g, t);
    int64_t n = mopt_tensor_numel(&g->tensors[t]), z = 0;
    for (int64_t i = 0; i < n; i++)
        z += w[i] == 0.0f;
    return z;
}

static void test_weight_layers(void **state) {
    (void)state;
    mopt_graph *g = small_graph();
    mopt_weight_layer *l = NULL;
    int n = 0;
    assert_int_equal(mopt_weight_layers_list(g, &l, &n, NULL), MOPT_OK);
    assert_int_equal(n, 3);
    assert_int_equal(l[0].type, MOPT_OP_CONV_2D);
    assert_int_equal(l[1].channel_axis, 3);
    assert_string_equal(l[2].name, "fc/w");
    bool sel[3];
    int m = -1;
    assert_int_equal(mopt_weight_layers_match(g, l, n, "^(conv|dw)/", sel, &m, NULL), MOPT_OK);
    assert_int_equal(m, 2);
    assert_true(sel[0] && sel[1] && !sel[2]);
    assert_int_equal(mopt_weight_layers_match(g, l, n, "logits", sel, &m, NULL), MOPT_OK);
    assert_int_equal(m, 1); /* matches the FC op's output tensor name */
    assert_true(sel[2]);
    mopt_error e;
    assert_int_equal(mopt_weight_layers_match(g, l, n, "([", sel, &m, &e), MOPT_ERR_ARG);
    assert_non_null(strstr(e.msg, "--layers"));
    free(l);
    mopt_graph_free(g);
}

static void test_prune_graph(void **state) {
    (void)state;
    const float sps[] = {0.5f, 0.75f, 0.9f};
    for (int s = 0; s < N_OF(sps); s++) {
        mopt_graph *g = small_graph();
        mopt_graph *orig = mopt_graph_clone(g);
        mopt_prune_params p = mopt_prune_default_params();
        p.sparsity = sps[s];
        mopt_prune_result res;
        mopt_error e;
        assert_int_equal(mopt_prune_graph(g, NULL, &p, &res, &e), MOPT_OK);
        assert_int_equal(res.n_layers, 3);
        for (int i = 0; i < res.n_layers; i++) {
            int t = res.layers[i].weights;
            int64_t n = mopt_tensor_numel(&g->tensors[t]);
            int64_t k = mopt_prune_keep_count(n, sps[s]);
            /* random weights: no ties, so exactly n - k zeros */
            assert_int_equal(zeros_of(g, t), n - k);
            assert_int_equal(res.layers[i].zeros_after, n - k);
            /* kept weights are unchanged */
            const float *a = mopt_tensor_data(orig, t), *b = mopt_tensor_data(g, t);
            for (int64_t j = 0; j < n; j++)
                assert_true(b[j] == 0.0f || b[j] == a[j]);
        }
        /* The shadow tensor shared the FC buffer: it must be intact. */
        int shadow = g->n_tensors - 1;
        assert_memory_equal(mopt_tensor_data(g, shadow), mopt_tensor_data(orig, shadow),
                            (size_t)mopt_tensor_nbytes(&g->tensors[shadow]));
        assert_int_equal(zeros_of(g, shadow), 0);
        assert_int_equal(mopt_graph_validate(g, &e), MOPT_OK);
        mopt_prune_result_free(&res);
        mopt_graph_free(orig);
        mopt_graph_free(g);
    }
}

static void test_prune_graph_select_and_patterns(void **state) {
    (void)state;
    mopt_graph *g = small_graph();
    bool *sel = calloc((size_t)g->n_ops, sizeof *sel);
    sel[3] = true; /* the FC only */
    mopt_prune_params p = mopt_prune_default_params();
    p.m = 2;
    p.n = 4;
    mopt_prune_result res;
    assert_int_equal(mopt_prune_graph(g, sel, &p, &res, NULL), MOPT_OK);
    assert_int_equal(res.n_layers, 1);
    assert_int_equal(res.layers[0].pattern, MOPT_PRUNE_M_BY_N);
    assert_int_equal(zeros_of(g, 1), 0); /* conv untouched */
    int fc = res.layers[0].weights;
    const float *w = mopt_tensor_data(g, fc);
    for (int r = 0; r < 10; r++)
        for (int c0 = 0; c0 < 288; c0 += 4) {
            int z = 0;
            for (int j = 0; j < 4; j++)
                z += w[r * 288 + c0 + j] == 0.0f;
            assert_true(z >= 2);
        }
    mopt_prune_result_free(&res);
    /* Nothing selected: "no prunable layer", graph untouched. */
    memset(sel, 0, (size_t)g->n_ops);
    mopt_error e;
    p = mopt_prune_default_params();
    assert_int_equal(mopt_prune_graph(g, sel, &p, NULL, &e), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(e.msg, "no prunable layer"));
    /* Block on an FC, element-wise fallback on conv. */
    p.block_h = 1;
    p.block_w = 4;
    assert_int_equal(mopt_prune_graph(g, NULL, &p, &res, NULL), MOPT_OK);
    assert_int_equal(res.layers[0].pattern, MOPT_PRUNE_ELEMENT);
    assert_int_equal(res.layers[2].pattern, MOPT_PRUNE_BLOCK);
    mopt_prune_result_free(&res);
    free(sel);
    mopt_graph_free(g);
}

static void test_prune_graph_rejects_nan(void **state) {
    (void)state;
    mopt_graph *g = small_graph();
    float *w = (float *)(void *)g->buffers[g->tensors[1].buffer].data;
    w[5] = NAN;
    mopt_graph *orig = mopt_graph_clone(g);
    mopt_prune_params p = mopt_prune_default_params();
    mopt_error e;
    assert_int_equal(mopt_prune_graph(g, NULL, &p, NULL, &e), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(e.msg, "conv/w"));
    assert_non_null(strstr(e.msg, "NaN"));
    /* untouched */
    assert_int_equal(g->n_buffers, orig->n_buffers);
    const int fc_w = 9; /* tensor index in small_graph */
    assert_memory_equal(mopt_tensor_data(g, fc_w), mopt_tensor_data(orig, fc_w), 10 * 288 * 4);
    mopt_graph_free(orig);
    mopt_graph_free(g);
}

static void test_model_stats_and_report(void **state) {
    (void)state;
    mopt_graph *g = small_graph();
    /* a name that needs escaping, and values that test the distinct count */
    free(g->tensors[1].name);
    g->tensors[1].name = strdup("conv\"w\n");
    float *w = (float *)(void *)g->buffers[g->tensors[1].buffer].data;
    for (int i = 0; i < 288; i++)
        w[i] = (float)(i % 5) - 2.0f; /* -2..2 */
    w[0] = -0.0f;                        /* same value as 0 */
    g->tensors[g->n_tensors - 1].buffer = 0; /* no shared buffer: pruning shrinks the file */
    mopt_model_stats a, b;
    mopt_error e;
    assert_int_equal(mopt_model_stats_compute(g, &b, &e), MOPT_OK);
    assert_int_equal(b.n_layers, 3);
    assert_int_equal(b.layers[0].params, 288);
    assert_int_equal(b.layers[0].unique, 5);
    assert_int_equal(b.layers[0].zeros, 58 + 1); /* i = 2, 7, ..., 287, plus w[0] */
    assert_int_equal(b.layers[0].unique_per_channel_max, 5);
    assert_true(b.gzip_bytes > 0 && b.gzip_bytes < b.raw_bytes);
    mopt_prune_params p = mopt_prune_default_params();
    assert_int_equal(mopt_prune_graph(g, NULL, &p, NULL, &e), MOPT_OK);
    assert_int_equal(mopt_model_stats_compute(g, &a, &e), MOPT_OK);
    assert_true(a.weight_zeros > b.weight_zeros);
    assert_true(a.gzip_bytes < b.gzip_bytes);
    const char *notes[3] = {"n\"1", NULL, "x"};
    mopt_compression_report r;
    memset(&r, 0, sizeof r);
    r.command = "prune";
    r.before = &b;
    r.after = &a;
    r.notes = notes;
    r.n_notes = 3;
    r.accuracy_before = NAN;
    r.accuracy_after = 0.5;
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(mopt_compression_report_write_json(&r, f, &e), MOPT_OK);
    assert_int_equal(mopt_compression_report_write_text(&r, f, &e), MOPT_OK);
    rewind(f);
    char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    assert_non_null(strstr(buf, "\"name\": \"conv\\\"w\\n\""));
    assert_non_null(strstr(buf, "\"accuracy_before\": null"));
    assert_non_null(strstr(buf, "\"accuracy_after\": 0.5"));
    assert_non_null(strstr(buf, "\"note\": \"n\\\"1\""));
    assert_non_null(strstr(buf, "conv\"w?")); /* text: control characters shown as '?' */
    mopt_model_stats_free(&a);
    mopt_model_stats_free(&b);
    mopt_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_golden),
        cmocka_unit_test(test_schedule_formulas),
        cmocka_unit_test(test_schedule_validation),
        cmocka_unit_test(test_keep_count_rounding),
        cmocka_unit_test(test_magnitude_golden),
        cmocka_unit_test(test_magnitude_properties),
        cmocka_unit_test(test_block_golden),
        cmocka_unit_test(test_block_structure),
        cmocka_unit_test(test_m_by_n_golden),
        cmocka_unit_test(test_m_by_n_every_group),
        cmocka_unit_test(test_params_validation),
        cmocka_unit_test(test_weight_layers),
        cmocka_unit_test(test_prune_graph),
        cmocka_unit_test(test_prune_graph_select_and_patterns),
        cmocka_unit_test(test_prune_graph_rejects_nan),
        cmocka_unit_test(test_model_stats_and_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
