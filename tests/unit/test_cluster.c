/* Unit tests for src/cluster: centroid initialisations and strip results
 * against numbers recorded from tfmot (tests/golden/), the fast assignment
 * against the brute-force reference, k-means++ / random properties, Lloyd,
 * sparsity preservation, cluster counts and graph-level errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mopt/cluster.h"
#include "mopt/mopt.h"
#include "rt_testutil.h"

#include "../golden/tfmot_sparse_golden.h"

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int64_t n_unique(const float *w, int64_t n) {
    int64_t u = 0;
    for (int64_t i = 0; i < n; i++) {
        bool seen = false;
        for (int64_t j = 0; j < i && !seen; j++)
            seen = w[j] == w[i];
        u += !seen;
    }
    return u;
}

static void test_init_golden(void **state) {
    (void)state;
    int bad = 0;
    for (int c = 0; c < N_OF(golden_cinits); c++) {
        const golden_cinit *g = &golden_cinits[c];
        float out[64];
        int n_out = -1;
        mopt_error e;
        assert_int_equal(mopt_cluster_init_centroids(g->w, g->n, g->k, (mopt_cluster_init)g->init,
                                                     g->preserve, NULL, out, &n_out, &e),
                         MOPT_OK);
        assert_int_equal(n_out, g->n_c);
        for (int i = 0; i < n_out; i++)
            if (memcmp(&out[i], &g->c[i], sizeof(float)) != 0 && !(out[i] == 0 && g->c[i] == 0)) {
                printf("init case %d (%s k=%d preserve=%d) centroid %d: mopt %.9g tfmot %.9g\n", c,
                       mopt_cluster_init_name((mopt_cluster_init)g->init), g->k, g->preserve, i,
                       (double)out[i], (double)g->c[i]);
                bad++;
            }
    }
    assert_int_equal(bad, 0);
}

static void test_assign_golden(void **state) {
    (void)state;
    int32_t a[GOLDEN_ASG_N], b[GOLDEN_ASG_N];
    mopt_cluster_assign_ref(golden_asg_w, GOLDEN_ASG_N, golden_asg_c, GOLDEN_ASG_K, a);
    assert_int_equal(mopt_cluster_assign(golden_asg_w, GOLDEN_ASG_N, golden_asg_c, GOLDEN_ASG_K, b,
                                         NULL),
                     MOPT_OK);
    for (int i = 0; i < GOLDEN_ASG_N; i++) {
        assert_int_equal(a[i], golden_asg_idx[i]);
        assert_int_equal(b[i], golden_asg_idx[i]);
    }
}

static void test_assign_fast_equals_ref(void **state) {
    (void)state;
    rng r = {4242u};
    for (int trial = 0; trial < 200; trial++) {
        int k = 1 + (int)(rng_u32(&r) % 40);
        float c[40];
        for (int j = 0; j < k; j++) {
            c[j] = rng_f(&r);
            if (trial % 3 == 0) /* coarse grid: duplicates and exact midpoints */
                c[j] = (float)(int)(c[j] * 4.0f) / 4.0f;
            if (trial % 5 == 0 && j > 0 && (rng_u32(&r) & 1))
                c[j] = c[j - 1];
        }
        enum { N = 300 };
        float w[N];
        for (int i = 0; i < N; i++) {
            w[i] = rng_f(&r) * 1.5f;
            if (i % 4 == 0) /* midpoints between two centroids */
                w[i] = 0.5f * (c[rng_u32(&r) % k] + c[rng_u32(&r) % k]);
            if (i % 7 == 0)
                w[i] = c[rng_u32(&r) % k];
            if (i % 11 == 0)
                w[i] = (float)(int)(w[i] * 8.0f) / 8.0f;
        }
        /* tiny values where float subtraction rounds and ties further away */
        w[1] = 1e-30f;
        w[2] = -0.0f;
        int32_t a[N], b[N];
        mopt_cluster_assign_ref(w, N, c, k, a);
        assert_int_equal(mopt_cluster_assign(w, N, c, k, b, NULL), MOPT_OK);
        assert_memory_equal(a, b, sizeof a);
    }
    /* Rounding ties with a non-neighbour: 1 - 2^-24 vs 1 and 1 + 2^-23 at a huge value. */
    float c2[3] = {1.0e8f, 1.0e8f + 8.0f, 0.0f};
    float w2[4] = {1.0e8f + 4.0f, 3.0e8f, -1.0f, 5.0e7f};
    int32_t a2[4], b2[4];
    mopt_cluster_assign_ref(w2, 4, c2, 3, a2);
    mopt_cluster_assign(w2, 4, c2, 3, b2, NULL);
    assert_memory_equal(a2, b2, sizeof a2);
}

static void test_strip_golden(void **state) {
    (void)state;
    for (int c = 0; c < N_OF(golden_strips); c++) {
        const golden_strip *g = &golden_strips[c];
        int rank = g->kind == 0 ? 2 : 4;
        int n = g->dims[0] * g->dims[1] * g->dims[2] * g->dims[3];
        float *w = malloc((size_t)n * sizeof *w);
        memcpy(w, g->w, (size_t)n * sizeof *w);
        mopt_cluster_params p = mopt_cluster_default_params();
        p.clusters = g->k;
        p.init = (mopt_cluster_init)g->init;
        p.per_channel = g->per_channel;
        p.preserve_sparsity = g->preserve;
        p.lloyd_iters = 0; /* tfmot without training */
        mopt_error e;
        int64_t mu = 0;
        assert_int_equal(mopt_cluster_tensor(w, rank, g->dims, 0, &p, 1, &mu, &e), MOPT_OK);
        for (int i = 0; i < n; i++)
            if (memcmp(&w[i], &g->out[i], sizeof(float)) != 0 && !(w[i] == 0 && g->out[i] == 0)) {
                printf("strip case %d element %d: mopt %.9g tfmot %.9g\n", c, i, (double)w[i],
                       (double)g->out[i]);
                fail();
            }
        assert_true(mu <= g->k);
        free(w);
    }
}

static void test_kmeanspp_properties(void **state) {
    (void)state;
    rng r = {77u};
    enum { N = 500 };
    float w[N];
    rng_fill(&r, w, N);
    for (int k = 2; k <= 64; k *= 2) {
        float c1[64], c2[64], c3[64];
        int n1, n2, n3;
        mopt_rng a, b, d;
        mopt_rng_seed(&a, 9, 1);
        mopt_rng_seed(&b, 9, 1);
        mopt_rng_seed(&d, 10, 1);
        assert_int_equal(mopt_cluster_init_centroids(w, N, k, MOPT_CLUSTER_KMEANS_PP, false, &a, c1,
                                                     &n1, NULL),
                         MOPT_OK);
        mopt_cluster_init_centroids(w, N, k, MOPT_CLUSTER_KMEANS_PP, false, &b, c2, &n2, NULL);
        mopt_cluster_init_centroids(w, N, k, MOPT_CLUSTER_KMEANS_PP, false, &d, c3, &n3, NULL);
        assert_int_equal(n1, k);
        assert_memory_equal(c1, c2, (size_t)k * sizeof(float)); /* deterministic */
        assert_true(memcmp(c1, c3, (size_t)k * sizeof(float)) != 0); /* seed matters */
        assert_int_equal(n_unique(c1, k), k);                        /* distinct */
        for (int j = 0; j < k; j++) {                                /* data points */
            bool found = false;
            for (int i = 0; i < N && !found; i++)
                found = w[i] == c1[j];
            assert_true(found);
        }
    }
    /* Fewer distinct values than k: only the distinct ones come back. */
    float v[20];
    for (int i = 0; i < 20; i++)
        v[i] = (float)(i % 3);
    float c[8];
    int nc;
    mopt_rng a;
    mopt_rng_seed(&a, 9, 0);
    assert_int_equal(mopt_cluster_init_centroids(v, 20, 8, MOPT_CLUSTER_KMEANS_PP, false, &a, c,
                                                 &nc, NULL),
                     MOPT_OK);
    assert_int_equal(nc, 3);
    assert_int_equal(n_unique(c, nc), 3);
    /* k-means++ spreads out: two well-separated groups get one centre each. */
    float two[100];
    for (int i = 0; i < 100; i++)
        two[i] = (i < 50 ? -10.0f : 10.0f) + 0.001f * (float)(i % 7);
    for (uint64_t seed = 0; seed < 20; seed++) {
        mopt_rng_seed(&a, seed, 3);
        mopt_cluster_init_centroids(two, 100, 2, MOPT_CLUSTER_KMEANS_PP, false, &a, c, &nc, NULL);
        assert_true((c[0] < 0) != (c[1] < 0));
    }
}

static void test_random_init(void **state) {
    (void)state;
    float w[5] = {-0.5f, 0.25f, 0.75f, 0.1f, -0.2f};
    float c[32];
    int nc;
    mopt_rng a;
    mopt_rng_seed(&a, 1, 2);
    assert_int_equal(mopt_cluster_init_centroids(w, 5, 32, MOPT_CLUSTER_RANDOM, false, &a, c, &nc,
                                                 NULL),
                     MOPT_OK);
    assert_int_equal(nc, 32);
    for (int i = 0; i < 32; i++)
        assert_true(c[i] >= -0.5f && c[i] <= 0.75f);
    mopt_error e;
    assert_int_equal(mopt_cluster_init_centroids(w, 5, 4, MOPT_CLUSTER_RANDOM, false, NULL, c, &nc,
                                                 &e),
                     MOPT_ERR_ARG);
}

static double sq_err(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s;
}

static void test_lloyd_lowers_error(void **state) {
    (void)state;
    rng r = {31u};
    enum { N = 2000 };
    float w[N], w0[N], w1[N];
    for (int i = 0; i < N; i++) /* a skewed distribution */
        w[i] = rng_f(&r) * rng_f(&r) * rng_f(&r);
    for (int init = 0; init < 4; init++) {
        mopt_cluster_params p = mopt_cluster_default_params();
        p.clusters = 8;
        p.init = (mopt_cluster_init)init;
        int32_t dims[1] = {N};
        memcpy(w0, w, sizeof w);
        memcpy(w1, w, sizeof w);
        p.lloyd_iters = 0;
        assert_int_equal(mopt_cluster_tensor(w0, 1, dims, 0, &p, 5, NULL, NULL), MOPT_OK);
        p.lloyd_iters = 30;
        assert_int_equal(mopt_cluster_tensor(w1, 1, dims, 0, &p, 5, NULL, NULL), MOPT_OK);
        assert_true(sq_err(w1, w, N) <= sq_err(w0, w, N));
        assert_true(n_unique(w1, N) <= 8);
    }
    /* fix_zero keeps the zero centroid at exactly 0 */
    float c[4] = {-0.3f, 0.001f, 0.2f, 0.5f};
    int32_t idx[N];
    int it = 0;
    assert_int_equal(mopt_cluster_lloyd(w, N, c, 4, 50, true, idx, &it, NULL), MOPT_OK);
    assert_true(c[1] == 0.0f);
    assert_true(it >= 1);
}

static void test_preserve_sparsity(void **state) {
    (void)state;
    rng r = {555u};
    int32_t dims[4] = {6, 3, 3, 10};
    enum { N = 6 * 3 * 3 * 10 };
    float w[N], orig[N];
    for (int trial = 0; trial < 16; trial++) {
        for (int i = 0; i < N; i++) {
            w[i] = rng_f(&r);
            if ((rng_u32(&r) % 100) < 75)
                w[i] = (trial & 1) ? -0.0f : 0.0f;
        }
        memcpy(orig, w, sizeof w);
        mopt_cluster_params p = mopt_cluster_default_params();
        p.preserve_sparsity = true;
        p.clusters = 3 + trial % 6;
        p.init = (mopt_cluster_init)(trial % 4);
        p.per_channel = trial >= 8;
        p.lloyd_iters = trial % 3 ? 10 : 0;
        int64_t mu = -1;
        mopt_error e;
        assert_int_equal(mopt_cluster_tensor(w, 4, dims, 0, &p, (uint64_t)trial, &mu, &e), MOPT_OK);
        for (int i = 0; i < N; i++)
            if (orig[i] == 0.0f)
                assert_true(w[i] == 0.0f);
        assert_true(mu >= 1 && mu <= p.clusters);
    }
    /* Split of the non-zero clusters: k = 4 -> 3 non-zero; 1 negative of 2
     * non-zeros -> 1.5 -> 2 (half to even) negative centroids, 1 positive. */
    float v[4] = {-1.0f, 0.0f, 1.0f, 0.0f};
    float c[4];
    int nc;
    assert_int_equal(mopt_cluster_init_centroids(v, 4, 4, MOPT_CLUSTER_LINEAR, true, NULL, c, &nc,
                                                 NULL),
                     MOPT_OK);
    assert_int_equal(nc, 4);
    assert_true(c[0] < 0 && c[1] < 0 && c[2] == 0.0f && c[3] > 0);
    /* all zeros: the single centroid 0 */
    float z[5] = {0};
    assert_int_equal(mopt_cluster_init_centroids(z, 5, 8, MOPT_CLUSTER_DENSITY, true, NULL, c, &nc,
                                                 NULL),
                     MOPT_OK);
    assert_int_equal(nc, 1);
    assert_true(c[0] == 0.0f);
}

static void test_cluster_counts_per_channel(void **state) {
    (void)state;
    rng r = {8u};
    int32_t dims[4] = {1, 3, 3, 7}; /* depthwise: channels on axis 3 */
    float w[63];
    for (int k = 2; k <= 9; k++)
        for (int init = 0; init < 4; init++) {
            rng_fill(&r, w, 63);
            mopt_cluster_params p = mopt_cluster_default_params();
            p.clusters = k;
            p.init = (mopt_cluster_init)init;
            p.per_channel = true;
            int64_t mu = -1;
            assert_int_equal(mopt_cluster_tensor(w, 4, dims, 3, &p, 1, &mu, NULL), MOPT_OK);
            for (int ch = 0; ch < 7; ch++) {
                float s[9];
                for (int i = 0; i < 9; i++)
                    s[i] = w[i * 7 + ch];
                assert_true(n_unique(s, 9) <= k);
            }
            assert_true(mu <= k);
        }
    /* per channel with fewer weights than clusters is refused */
    mopt_cluster_params p = mopt_cluster_default_params();
    p.clusters = 10;
    p.per_channel = true;
    mopt_error e;
    assert_int_equal(mopt_cluster_tensor(w, 4, dims, 3, &p, 1, NULL, &e), MOPT_ERR_ARG);
    assert_non_null(strstr(e.msg, "per output channel"));
}

static mopt_graph *fc_graph(int units, int depth) {
    mopt_graph *g = mopt_graph_create();
    rng r = {1u};
    int32_t din[2] = {1, depth}, dw[2] = {units, depth}, db[1] = {units}, dout[2] = {1, units};
    float *w = malloc((size_t)(units * depth) * sizeof *w), *b = malloc((size_t)units * sizeof *b);
    rng_fill(&r, w, (size_t)(units * depth));
    rng_fill(&r, b, (size_t)units);
    int in = t_f32(g, "x", 2, din);
    int tw = t_cf32(g, "dense/w", 2, dw, w), tb = t_cf32(g, "dense/b", 1, db, b);
    int out = t_f32(g, "y", 2, dout);
    int32_t ins[3] = {in, tw, tb};
    add_op(g, MOPT_OP_FULLY_CONNECTED, ins, 3, out);
    set_io1(g, in, out);
    free(w);
    free(b);
    return g;
}

static void test_cluster_graph(void **state) {
    (void)state;
    mopt_graph *g = fc_graph(12, 30);
    mopt_cluster_params p = mopt_cluster_default_params();
    p.clusters = 16;
    mopt_cluster_result res;
    mopt_error e;
    assert_int_equal(mopt_cluster_graph(g, NULL, &p, &res, &e), MOPT_OK);
    assert_int_equal(res.n_layers, 1);
    assert_true(res.layers[0].max_unique <= 16);
    assert_true(res.layers[0].mse > 0);
    assert_true(n_unique(mopt_tensor_data(g, 1), 360) <= 16);
    /* the bias is not clustered */
    assert_int_equal(n_unique(mopt_tensor_data(g, 2), 12), 12);
    assert_int_equal(mopt_graph_validate(g, &e), MOPT_OK);
    mopt_cluster_result_free(&res);

    /* errors leave the graph unchanged and name the layer / option */
    mopt_graph *before = mopt_graph_clone(g);
    p.clusters = 361;
    assert_int_equal(mopt_cluster_graph(g, NULL, &p, NULL, &e), MOPT_ERR_ARG);
    assert_non_null(strstr(e.msg, "dense/w"));
    p.clusters = 1;
    assert_int_equal(mopt_cluster_graph(g, NULL, &p, NULL, &e), MOPT_ERR_ARG);
    assert_non_null(strstr(e.msg, "--clusters"));
    p.clusters = 2;
    p.preserve_sparsity = true;
    assert_int_equal(mopt_cluster_graph(g, NULL, &p, NULL, &e), MOPT_ERR_ARG);
    p.preserve_sparsity = false;
    bool sel[1] = {false};
    assert_int_equal(mopt_cluster_graph(g, sel, &p, NULL, &e), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(e.msg, "no clusterable layer"));
    assert_memory_equal(mopt_tensor_data(g, 1), mopt_tensor_data(before, 1), 360 * sizeof(float));
    mopt_graph_free(before);
    mopt_graph_free(g);
}

static void test_init_names(void **state) {
    (void)state;
    for (int i = 0; i < 4; i++)
        assert_int_equal(mopt_cluster_init_from_name(mopt_cluster_init_name((mopt_cluster_init)i)),
                         i);
    assert_int_equal(mopt_cluster_init_from_name("kmeans_plus_plus"), MOPT_CLUSTER_KMEANS_PP);
    assert_int_equal(mopt_cluster_init_from_name("nope"), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_golden),
        cmocka_unit_test(test_assign_golden),
        cmocka_unit_test(test_assign_fast_equals_ref),
        cmocka_unit_test(test_strip_golden),
        cmocka_unit_test(test_kmeanspp_properties),
        cmocka_unit_test(test_random_init),
        cmocka_unit_test(test_lloyd_lowers_error),
        cmocka_unit_test(test_preserve_sparsity),
        cmocka_unit_test(test_cluster_counts_per_channel),
        cmocka_unit_test(test_cluster_graph),
        cmocka_unit_test(test_init_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
