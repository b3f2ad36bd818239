/* test_calib.c - calibration math: streaming histograms (exact re-binning,
 * order independence, bounded memory), percentile / MSE / KL ranges on
 * known distributions, and the streaming sample sources.
 *
 * Expected values come from the distributions themselves (quantiles of the
 * uniform and normal laws) or from brute force over the raw samples
 * (quantizing every sample with a candidate range), never from the code
 * under test. */
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
#include "mopt/quantize.h"
#include "quant/histogram.h"

#ifndef MOPT_SOURCE_DIR
#define MOPT_SOURCE_DIR "."
#endif

/* Deterministic PRNG (splitmix64) and distributions. */
static uint64_t rng_state;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double unif(void) { return (double)(rnd() >> 11) * (1.0 / 9007199254740992.0); }
static double gauss(void) {
    double u = unif(), v = unif();
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* Reference histogram: counts of floor(x / w) over the whole data. */
static void check_exact(const ptq_hist *h, const float *x, size_t n) {
    double w = ptq_hist_bin_width(h);
    assert_true(w > 0);
    uint64_t total = 0;
    for (int j = 0; j < h->nbins; j++) total += h->bins[j];
    assert_int_equal(total, n);
    uint64_t *ref = calloc((size_t)h->nbins, sizeof(uint64_t));
    assert_non_null(ref);
    for (size_t i = 0; i < n; i++) {
        int64_t k = (int64_t)floor((double)x[i] / w) - h->start;
        assert_true(k >= 0 && k < h->nbins);
        ref[k]++;
    }
    assert_memory_equal(ref, h->bins, (size_t)h->nbins * sizeof(uint64_t));
    free(ref);
}

static void test_hist_exact_rebinning(void **state) {
    (void)state;
    enum { N = 20000 };
    float *x = malloc(N * sizeof(float));
    rng_state = 1;
    /* Growing range: the first values are small, later ones much larger, so
     * the histogram re-bins several times, on both sides. */
    for (int i = 0; i < N; i++) x[i] = (float)(gauss() * (1.0 + i / 100.0));
    ptq_hist h;
    assert_int_equal(ptq_hist_init(&h, 256), MOPT_OK);
    for (int i = 0; i < N; i += 50) assert_int_equal(ptq_hist_add(&h, x + i, 50), MOPT_OK);
    check_exact(&h, x, N);
    /* The width is the smallest power of two whose grid holds the range in
     * 256 bins: half of it would need more bins. */
    double w = ptq_hist_bin_width(&h);
    assert_true(floor(h.max / w) - floor(h.min / w) + 1 <= 256);
    assert_true(floor(h.max / (w / 2)) - floor(h.min / (w / 2)) + 1 > 256);
    ptq_hist_free(&h);
    free(x);
}

static void test_hist_order_independent(void **state) {
    (void)state;
    enum { N = 5000 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    rng_state = 7;
    for (int i = 0; i < N; i++) x[i] = (float)(unif() * 10 - 3);
    x[17] = 0.0f;
    /* y: the same values, reversed and fed one by one. */
    for (int i = 0; i < N; i++) y[i] = x[N - 1 - i];
    ptq_hist a, b;
    assert_int_equal(ptq_hist_init(&a, 512), MOPT_OK);
    assert_int_equal(ptq_hist_init(&b, 512), MOPT_OK);
    assert_int_equal(ptq_hist_add(&a, x, N), MOPT_OK);
    for (int i = 0; i < N; i++) assert_int_equal(ptq_hist_add(&b, y + i, 1), MOPT_OK);
    assert_true(ptq_hist_bin_width(&a) == ptq_hist_bin_width(&b));
    /* Same counts per grid bin, whatever the window offsets. */
    for (int j = 0; j < 512; j++) {
        int64_t k = a.start + j - b.start;
        uint64_t cb = k >= 0 && k < 512 ? b.bins[k] : 0;
        assert_int_equal(a.bins[j], cb);
    }
    check_exact(&b, x, N);
    ptq_hist_free(&a);
    ptq_hist_free(&b);
    free(x);
    free(y);
}

static void test_hist_merge(void **state) {
    (void)state;
    /* Two halves merged == everything in one histogram, whatever the
     * halves' own ranges (one starts with zeros only, one is wider). */
    enum { N = 6000 };
    float *x = malloc(N * sizeof(float));
    rng_state = 17;
    for (int i = 0; i < N; i++) x[i] = i < 1000 ? 0.0f : (float)(gauss() * (i < 3000 ? 1 : 25));
    ptq_hist all, a, b;
    assert_int_equal(ptq_hist_init(&all, 300), MOPT_OK);
    assert_int_equal(ptq_hist_init(&a, 300), MOPT_OK);
    assert_int_equal(ptq_hist_init(&b, 300), MOPT_OK);
    assert_int_equal(ptq_hist_add(&all, x, N), MOPT_OK);
    for (int i = 0; i < N; i += 100)
        assert_int_equal(ptq_hist_add(i % 200 ? &b : &a, x + i, 100), MOPT_OK);
    assert_int_equal(ptq_hist_merge(&a, &b), MOPT_OK);
    assert_true(ptq_hist_bin_width(&a) == ptq_hist_bin_width(&all));
    assert_int_equal(a.start, all.start);
    assert_memory_equal(a.bins, all.bins, 300 * sizeof(uint64_t));
    assert_true(a.total == N && a.zeros == all.zeros && a.min == all.min && a.max == all.max);
    check_exact(&a, x, N);
    ptq_hist_free(&all);
    ptq_hist_free(&a);
    ptq_hist_free(&b);
    free(x);
}

static void test_hist_zeros_first(void **state) {
    (void)state;
    /* Exact zeros before any other value (a ReLU output on the first
     * samples) are kept and land in the bin [0, w). */
    float z[100] = {0}, v[3] = {0.5f, -0.25f, 2.0f};
    ptq_hist h;
    assert_int_equal(ptq_hist_init(&h, 64), MOPT_OK);
    assert_int_equal(ptq_hist_add(&h, z, 100), MOPT_OK);
    assert_false(h.has_grid);
    assert_int_equal(ptq_hist_add(&h, v, 3), MOPT_OK);
    float all[103];
    memcpy(all, z, sizeof(z));
    memcpy(all + 100, v, sizeof(v));
    check_exact(&h, all, 103);
    assert_true(h.min == -0.25f && h.max == 2.0f);
    ptq_hist_free(&h);
}

static void test_hist_memory_flat(void **state) {
    (void)state;
    /* A million values in 2048 bins: the histogram never grows. */
    ptq_hist h;
    assert_int_equal(ptq_hist_init(&h, 2048), MOPT_OK);
    uint64_t *bins = h.bins;
    float buf[1000];
    rng_state = 3;
    for (int r = 0; r < 1000; r++) {
        for (int i = 0; i < 1000; i++) buf[i] = (float)(gauss() * (1 + r));
        assert_int_equal(ptq_hist_add(&h, buf, 1000), MOPT_OK);
    }
    assert_ptr_equal(bins, h.bins);
    assert_int_equal(h.nbins, 2048);
    assert_int_equal(h.total, 1000000);
    ptq_hist_free(&h);
}

static void test_quantile_uniform(void **state) {
    (void)state;
    enum { N = 200000 };
    float *x = malloc(N * sizeof(float));
    rng_state = 11;
    for (int i = 0; i < N; i++) x[i] = (float)unif();
    ptq_hist h;
    assert_int_equal(ptq_hist_init(&h, 2048), MOPT_OK);
    assert_int_equal(ptq_hist_add(&h, x, N), MOPT_OK);
    /* U[0,1): the q-quantile is q (sampling error ~ 1/sqrt(N)). */
    for (double q = 0.1; q < 0.95; q += 0.2) assert_true(fabs(ptq_hist_quantile(&h, q) - q) < 0.005);
    float lo, hi;
    ptq_hist_range_percentile(&h, 99.0, false, &lo, &hi);
    assert_true(fabs(lo - 0.01) < 0.003 && fabs(hi - 0.99) < 0.003);
    ptq_hist_free(&h);
    free(x);
}

static void test_percentile_gaussian_outliers(void **state) {
    (void)state;
    enum { N = 100000 };
    float *x = malloc(N * sizeof(float));
    rng_state = 5;
    for (int i = 0; i < N; i++) x[i] = (float)gauss();
    x[10] = 80.0f; /* outliers */
    x[20] = -60.0f;
    ptq_hist h;
    assert_int_equal(ptq_hist_init(&h, 2048), MOPT_OK);
    assert_int_equal(ptq_hist_add(&h, x, N), MOPT_OK);
    float lo, hi;
    /* Two-sided: [0.1%, 99.9%] of N(0,1) is +-3.090. */
    ptq_hist_range_percentile(&h, 99.9, false, &lo, &hi);
    assert_true(fabs(hi - 3.090) < 0.15 && fabs(lo + 3.090) < 0.15);
    /* Symmetric (|x|): the 99.9th percentile of |N(0,1)| is 3.291. */
    ptq_hist_range_percentile(&h, 99.9, true, &lo, &hi);
    assert_true(fabs(hi - 3.291) < 0.15 && lo == -hi);
    /* 100 keeps everything. */
    ptq_hist_range_percentile(&h, 100.0, false, &lo, &hi);
    assert_true(lo == -60.0f && hi == 80.0f);
    ptq_hist_free(&h);
    free(x);
}

/* True mean squared error of quantizing x with the converter's parameters
 * for range [lo, hi] (int8 asymmetric), by brute force. */
static double true_mse8(const float *x, size_t n, float lo, float hi) {
    mopt_qparams q;
    assert_int_equal(mopt_qparams_asymmetric(lo, hi, -128, 127, &q, NULL), MOPT_OK);
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t v = mopt_quantize_value(x[i], q.scale, q.zero_point, -128, 127);
        double d = mopt_dequantize_value(v, q.scale, q.zero_point) - x[i];
        s += d * d;
    }
    return s / (double)n;
}

static void test_mse_laplace(void **state) {
    (void)state;
    /* Heavy tails (Laplace): the chosen range must be at least as good as
     * min/max and within 2% of the best range of a fine brute-force grid
     * (each candidate scored by quantizing every sample). */
    enum { N = 20000 };
    float *x = malloc(N * sizeof(float));
    rng_state = 9;
    for (int i = 0; i < N; i++) {
        double u = unif() - 0.5;
        x[i] = (float)(-(u < 0 ? -1 : 1) * log(1 - 2 * fabs(u)));
    }
    ptq_hist h;
    assert_int_equal(ptq_hist_init(&h, 2048), MOPT_OK);
    assert_int_equal(ptq_hist_add(&h, x, N), MOPT_OK);
    float lo, hi;
    ptq_hist_range_mse(&h, false, &lo, &hi);
    double chosen = true_mse8(x, N, lo, hi), full = true_mse8(x, N, h.min, h.max);
    double best = INFINITY;
    for (double a = 6; a <= 12; a += 0.1)
        for (double b = 6; b <= 12; b += 0.2) {
            double m = true_mse8(x, N, (float)-a, (float)b);
            if (m < best) best = m;
        }
    assert_true(chosen <= full);
    assert_true(hi < h.max || lo > h.min); /* it does clip something */
    assert_true(chosen <= best * 1.02);
    /* The histogram's error estimate agrees with brute force. */
    double est = ptq_hist_quant_mse(&h, false, lo, hi);
    assert_true(fabs(est - chosen) < 0.1 * chosen);
    ptq_hist_free(&h);
    free(x);
}

static void test_mse_uniform_keeps_range(void **state) {
    (void)state;
    /* Uniform data gains nothing from clipping: the range stays ~[0, 1]. */
    enum { N = 50000 };
    float *x = malloc(N * sizeof(float));
    rng_state = 13;
    for (int i = 0; i < N; i++) x[i] = (float)unif();
    ptq_hist h;
    assert_int_equal(ptq_hist_init(&h, 2048), MOPT_OK);
    assert_int_equal(ptq_hist_add(&h, x, N), MOPT_OK);
    float lo, hi;
    ptq_hist_range_mse(&h, false, &lo, &hi);
    assert_true(lo == h.min || lo <= 0.0f);
    assert_true(hi > 0.98f);
    ptq_hist_free(&h);
    free(x);
}

static void test_kl_threshold(void **state) {
    (void)state;
    /* Flat histogram: nothing to gain from clipping -> keep all bins. */
    double flat[1024];
    for (int i = 0; i < 1024; i++) flat[i] = 100;
    assert_int_equal(ptq_kl_threshold_bins(flat, 1024, 128), 1024);
    /* Fewer bins than levels: no search. */
    assert_int_equal(ptq_kl_threshold_bins(flat, 100, 128), 100);
    /* A half-normal bulk (sigma = 100 bins) with a long sparse tail: the
     * threshold clips the tail (below 1024) but keeps more than 2 sigma. */
    double hn[1024];
    for (int i = 0; i < 1024; i++) hn[i] = floor(1e6 * exp(-(double)i * i / 20000.0)) + (i % 7 == 0);
    int t = ptq_kl_threshold_bins(hn, 1024, 128);
    assert_true(t > 200 && t < 1024);
}

static void test_kl_gaussian_with_outliers(void **state) {
    (void)state;
    enum { N = 100000 };
    float *x = malloc(N * sizeof(float));
    rng_state = 21;
    for (int i = 0; i < N; i++) x[i] = (float)gauss();
    for (int i = 0; i < 5; i++) x[100 + i] = 40.0f + i;
    ptq_hist h;
    assert_int_equal(ptq_hist_init(&h, 2048), MOPT_OK);
    assert_int_equal(ptq_hist_add(&h, x, N), MOPT_OK);
    float lo, hi;
    ptq_hist_range_kl(&h, false, &lo, &hi);
    /* The outliers (at 40+) are clipped; the bulk (|x| < 3) is kept. */
    assert_true(hi > 2.5f && hi < 20.0f);
    assert_true(lo < -2.5f);
    ptq_hist_free(&h);
    free(x);
}

/* ---- sample sources ---- */

static void test_source_matches_dataset(void **state) {
    (void)state;
    const char *dir = MOPT_SOURCE_DIR "/tests/data/fashion-mnist-subset";
    mopt_dataset d;
    mopt_error err;
    assert_int_equal(mopt_dataset_load(dir, MOPT_SPLIT_TRAIN, MOPT_SCALE_01, 50, &d, &err), MOPT_OK);
    mopt_sample_source *s;
    assert_int_equal(mopt_sample_source_open(dir, MOPT_SPLIT_TRAIN, MOPT_SCALE_01, &s, &err), MOPT_OK);
    assert_int_equal(mopt_sample_source_count(s), 1000);
    int h, w, c;
    mopt_sample_source_shape(s, &h, &w, &c);
    assert_true(h == 28 && w == 28 && c == 1);
    float x[784];
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 50; i++) {
            int32_t label;
            assert_int_equal(mopt_sample_source_next(s, x, &label, &err), MOPT_OK);
            assert_memory_equal(x, d.images + i * 784, sizeof(x));
            assert_int_equal(label, d.labels[i]);
        }
        assert_int_equal(mopt_sample_source_rewind(s, &err), MOPT_OK);
    }
    mopt_sample_source_close(s);
    mopt_dataset_free(&d);
}

static void test_source_npy_and_errors(void **state) {
    (void)state;
    char dir[] = "/tmp/mopt_test_calib_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char ipath[256], bad[256], trunc[256];
    snprintf(ipath, sizeof(ipath), "%s/x.npy", dir);
    snprintf(bad, sizeof(bad), "%s/none.npy", dir);
    snprintf(trunc, sizeof(trunc), "%s/t.npy", dir);
    float data[3 * 4 * 2];
    for (int i = 0; i < 24; i++) data[i] = (float)i * 0.5f;
    mopt_array a = {MOPT_FLOAT32, 4, {3, 2, 2, 2}, data, sizeof(data)};
    mopt_error err;
    assert_int_equal(mopt_npy_write(ipath, &a, &err), MOPT_OK);
    mopt_sample_source *s;
    assert_int_equal(mopt_sample_source_open(ipath, MOPT_SPLIT_TRAIN, MOPT_SCALE_01, &s, &err), MOPT_OK);
    assert_int_equal(mopt_sample_source_count(s), 3);
    float x[8];
    int32_t label;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mopt_sample_source_next(s, x, &label, &err), MOPT_OK);
        assert_memory_equal(x, data + 8 * i, sizeof(x)); /* float data is not rescaled */
        assert_int_equal(label, -1);
    }
    assert_int_equal(mopt_sample_source_next(s, x, NULL, &err), MOPT_ERR_BAD_INPUT);
    mopt_sample_source_close(s);
    /* Missing file; truncated data (header says 3 samples, 2 present). */
    assert_int_equal(mopt_sample_source_open(bad, MOPT_SPLIT_TRAIN, MOPT_SCALE_01, &s, &err), MOPT_ERR_IO);
    FILE *f = fopen(ipath, "rb");
    uint8_t buf[512];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    f = fopen(trunc, "wb");
    fwrite(buf, 1, n - 8 * sizeof(float), f);
    fclose(f);
    assert_int_equal(mopt_sample_source_open(trunc, MOPT_SPLIT_TRAIN, MOPT_SCALE_01, &s, &err), MOPT_OK);
    assert_int_equal(mopt_sample_source_next(s, x, NULL, &err), MOPT_OK);
    assert_int_equal(mopt_sample_source_next(s, x, NULL, &err), MOPT_OK);
    assert_int_equal(mopt_sample_source_next(s, x, NULL, &err), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(err.msg, "truncated at sample 2"));
    mopt_sample_source_close(s);
    unlink(ipath);
    unlink(trunc);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_exact_rebinning),
        cmocka_unit_test(test_hist_order_independent),
        cmocka_unit_test(test_hist_merge),
        cmocka_unit_test(test_hist_zeros_first),
        cmocka_unit_test(test_hist_memory_flat),
        cmocka_unit_test(test_quantile_uniform),
        cmocka_unit_test(test_percentile_gaussian_outliers),
        cmocka_unit_test(test_mse_laplace),
        cmocka_unit_test(test_mse_uniform_keeps_range),
        cmocka_unit_test(test_kl_threshold),
        cmocka_unit_test(test_kl_gaussian_with_outliers),
        cmocka_unit_test(test_source_matches_dataset),
        cmocka_unit_test(test_source_npy_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
