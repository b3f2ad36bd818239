/* Unit tests for the float GEMM / depthwise micro-kernels and drivers
 * (src/kernels): the scalar reference against a naive double-precision
 * convolution written here (tolerance), and every ISA variant this CPU
 * supports against the reference (bit-exact: same fma sequence), for
 * awkward sizes, with guard bytes after every output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kernels/kernels.h"
#include "rt_testutil.h"

#define GUARD 64
#define GUARD_VAL 12345.678f

/* Output buffer with GUARD floats of a sentinel after n floats. */
static float *guarded(size_t n) {
    float *p = malloc((n + GUARD) * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < n + GUARD; i++) p[i] = GUARD_VAL;
    return p;
}

static void check_guard(const float *p, size_t n) {
    for (size_t i = n; i < n + GUARD; i++) assert_true(p[i] == GUARD_VAL);
}

/* Naive NHWC convolution in double; padded taps skipped. */
static void conv_naive(const mopt_conv_geom *g, const float *in, const float *w, const float *b,
                       float lo, float hi, float *out, double *mag) {
    for (int n = 0; n < g->batch; n++)
        for (int oy = 0; oy < g->out_h; oy++)
            for (int ox = 0; ox < g->out_w; ox++)
                for (int oc = 0; oc < g->out_c; oc++) {
                    double acc = b ? b[oc] : 0.0, m = b ? fabs(b[oc]) : 0.0;
                    for (int ky = 0; ky < g->k_h; ky++)
                        for (int kx = 0; kx < g->k_w; kx++) {
                            int iy = oy * g->stride_h - g->pad_top + ky * g->dil_h;
                            int ix = ox * g->stride_w - g->pad_left + kx * g->dil_w;
                            if (iy < 0 || iy >= g->in_h || ix < 0 || ix >= g->in_w) continue;
                            for (int ic = 0; ic < g->in_c; ic++) {
                                double p =
                                    (double)in[((n * g->in_h + iy) * g->in_w + ix) * g->in_c + ic] *
                                    w[((oc * g->k_h + ky) * g->k_w + kx) * g->in_c + ic];
                                acc += p;
                                m += fabs(p);
                            }
                        }
                    size_t o = (((size_t)n * g->out_h + oy) * g->out_w + ox) * g->out_c + oc;
                    float v = (float)acc;
                    out[o] = v < lo ? lo : (v > hi ? hi : v);
                    mag[o] = m;
                }
}

static void run_igemm(const mopt_conv_geom *g, const mopt_f32_igemm_ukernel *uk, const float *in,
                      const float *w, const float *b, float lo, float hi, float *out, int threads) {
    size_t ks = (size_t)g->k_h * g->k_w;
    size_t pf = mopt_f32_gemm_packed_floats((size_t)g->out_c, ks, (size_t)g->in_c, uk->nr);
    float *packed = malloc(pf * sizeof(float));
    float *zero = calloc((size_t)g->in_c + 1, sizeof(float));
    const float **ind = malloc(mopt_f32_conv_indirection_size(g, uk->mr) * sizeof(float *));
    assert_true(packed && zero && ind);
    mopt_f32_gemm_pack((size_t)g->out_c, ks, (size_t)g->in_c, uk->nr, w, b, packed);
    mopt_f32_conv_indirection_init(g, uk->mr, in, zero, ind);
    mopt_f32_conv_igemm(g, uk, ind, packed, out, lo, hi, threads);
    free(packed);
    free(zero);
    free(ind);
}

static void run_dw(const mopt_conv_geom *g, mopt_f32_dwconv_fn fn, const float *in, const float *w,
                   const float *b, float lo, float hi, float *out, int threads) {
    float *zero = calloc((size_t)g->in_c + 1, sizeof(float));
    const float **ind = malloc(mopt_f32_conv_indirection_size(g, 1) * sizeof(float *));
    assert_true(zero && ind);
    mopt_f32_conv_indirection_init(g, 1, in, zero, ind);
    mopt_f32_dwconv(g, fn, ind, w, b, out, lo, hi, threads);
    free(zero);
    free(ind);
}

typedef struct conv_case {
    int batch, in_h, in_w, in_c, out_c, k_h, k_w, s_h, s_w, d_h, d_w;
    mopt_padding pad;
    int relu6, bias;
} conv_case;

static const conv_case cases[] = {
    {1, 5, 5, 3, 4, 3, 3, 1, 1, 1, 1, MOPT_PAD_SAME, 0, 1},
    {2, 7, 11, 5, 17, 3, 3, 2, 2, 1, 1, MOPT_PAD_SAME, 1, 1},   /* odd SAME padding */
    {1, 13, 9, 7, 33, 3, 2, 1, 2, 2, 1, MOPT_PAD_VALID, 0, 0},  /* dilation, no bias */
    {1, 8, 8, 16, 64, 1, 1, 1, 1, 1, 1, MOPT_PAD_VALID, 0, 1},  /* 1x1 = plain GEMM */
    {3, 6, 6, 1, 1, 5, 5, 1, 1, 1, 1, MOPT_PAD_SAME, 1, 1},     /* one channel */
    {1, 10, 10, 19, 48, 3, 3, 2, 1, 2, 2, MOPT_PAD_SAME, 0, 1}, /* 48: narrow tile */
    {1, 1, 1, 37, 131, 1, 1, 1, 1, 1, 1, MOPT_PAD_VALID, 0, 1}, /* FC-like, M = 1 */
    {2, 9, 4, 8, 9, 4, 2, 3, 1, 1, 3, MOPT_PAD_SAME, 0, 1},     /* even kernel, stride 3 */
};

static void make_geom(const conv_case *c, mopt_conv_geom *g) {
    memset(g, 0, sizeof *g);
    g->batch = c->batch;
    g->in_h = c->in_h;
    g->in_w = c->in_w;
    g->in_c = c->in_c;
    g->out_c = c->out_c;
    g->k_h = c->k_h;
    g->k_w = c->k_w;
    g->stride_h = c->s_h;
    g->stride_w = c->s_w;
    g->dil_h = c->d_h;
    g->dil_w = c->d_w;
    g->out_h = mopt_conv_out_size(c->pad, c->in_h, c->k_h, c->s_h, c->d_h, &g->pad_top);
    g->out_w = mopt_conv_out_size(c->pad, c->in_w, c->k_w, c->s_w, c->d_w, &g->pad_left);
}

static void test_ref_vs_naive(void **state) {
    (void)state;
    rng r = {7};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const conv_case *c = &cases[ci];
        mopt_conv_geom g;
        make_geom(c, &g);
        size_t ni = (size_t)g.batch * g.in_h * g.in_w * g.in_c;
        size_t nw = (size_t)g.out_c * g.k_h * g.k_w * g.in_c;
        size_t no = (size_t)g.batch * g.out_h * g.out_w * g.out_c;
        float *in = malloc(ni * 4), *w = malloc(nw * 4), *b = malloc((size_t)g.out_c * 4);
        float *want = malloc(no * 4), *got = guarded(no);
        double *mag = malloc(no * sizeof(double));
        rng_fill(&r, in, ni);
        rng_fill(&r, w, nw);
        rng_fill(&r, b, (size_t)g.out_c);
        float lo = c->relu6 ? 0.0f : -INFINITY, hi = c->relu6 ? 6.0f : INFINITY;
        conv_naive(&g, in, w, c->bias ? b : NULL, lo, hi, want, mag);
        run_igemm(&g, &mopt_isa_ref.igemm_wide, in, w, c->bias ? b : NULL, lo, hi, got, 1);
        check_guard(got, no);
        for (size_t i = 0; i < no; i++) {
            double tol = 1e-6 * (mag[i] + 1e-3);
            if (fabs((double)got[i] - want[i]) > tol)
                fprintf(stderr, "case %zu elem %zu: %g vs %g\n", ci, i, (double)got[i],
                        (double)want[i]);
            assert_true(fabs((double)got[i] - want[i]) <= tol);
        }
        free(in);
        free(w);
        free(b);
        free(want);
        free(got);
        free(mag);
    }
}

static void test_isa_bit_exact(void **state) {
    (void)state;
    const mopt_isa *isas[8];
    int n_isa = mopt_isa_supported(isas, 8);
    assert_true(n_isa >= 1);
    assert_ptr_equal(isas[0], &mopt_isa_ref);
    assert_ptr_equal(mopt_isa_best(), isas[n_isa - 1]);
    rng r = {99};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const conv_case *c = &cases[ci];
        mopt_conv_geom g;
        make_geom(c, &g);
        size_t ni = (size_t)g.batch * g.in_h * g.in_w * g.in_c;
        size_t nw = (size_t)g.out_c * g.k_h * g.k_w * g.in_c;
        size_t no = (size_t)g.batch * g.out_h * g.out_w * g.out_c;
        float *in = malloc(ni * 4), *w = malloc(nw * 4), *b = malloc((size_t)g.out_c * 4);
        float *want = guarded(no), *got = guarded(no);
        rng_fill(&r, in, ni);
        rng_fill(&r, w, nw);
        rng_fill(&r, b, (size_t)g.out_c);
        float lo = c->relu6 ? 0.0f : -INFINITY, hi = c->relu6 ? 6.0f : INFINITY;
        run_igemm(&g, &mopt_isa_ref.igemm_wide, in, w, c->bias ? b : NULL, lo, hi, want, 1);
        for (int k = 0; k < n_isa; k++) {
            const mopt_f32_igemm_ukernel *uks[3] = {&isas[k]->igemm_wide, &isas[k]->igemm_narrow,
                                                    &isas[k]->igemm_row};
            for (int u = 0; u < 3; u++)
                for (int threads = 1; threads <= 3; threads++) {
                    for (size_t i = 0; i < no; i++) got[i] = NAN;
                    run_igemm(&g, uks[u], in, w, c->bias ? b : NULL, lo, hi, got, threads);
                    check_guard(got, no);
                    if (memcmp(got, want, no * 4) != 0)
                        fprintf(stderr, "case %zu: %s differs from the reference\n", ci,
                                uks[u]->name);
                    assert_memory_equal(got, want, no * 4);
                }
        }
        free(in);
        free(w);
        free(b);
        free(want);
        free(got);
    }
}

static void test_dwconv_bit_exact(void **state) {
    (void)state;
    const mopt_isa *isas[8];
    int n_isa = mopt_isa_supported(isas, 8);
    rng r = {5};
    /* channels: below, at and past the vector widths. */
    const int chans[] = {1, 3, 8, 15, 16, 17, 31, 32, 33, 70};
    for (size_t ci = 0; ci < sizeof chans / sizeof chans[0]; ci++) {
        mopt_conv_geom g;
        memset(&g, 0, sizeof g);
        g.batch = 2;
        g.in_h = 7;
        g.in_w = 6;
        g.in_c = g.out_c = chans[ci];
        g.k_h = g.k_w = 3;
        g.stride_h = 2;
        g.stride_w = 1;
        g.dil_h = 1;
        g.dil_w = 2;
        g.out_h = mopt_conv_out_size(MOPT_PAD_SAME, g.in_h, 3, 2, 1, &g.pad_top);
        g.out_w = mopt_conv_out_size(MOPT_PAD_SAME, g.in_w, 3, 1, 2, &g.pad_left);
        size_t ni = (size_t)g.batch * g.in_h * g.in_w * g.in_c, nw = 9 * (size_t)g.in_c;
        size_t no = (size_t)g.batch * g.out_h * g.out_w * g.out_c;
        float *in = malloc(ni * 4), *w = malloc(nw * 4), *b = malloc((size_t)g.in_c * 4);
        float *want = guarded(no), *got = guarded(no);
        rng_fill(&r, in, ni);
        rng_fill(&r, w, nw);
        rng_fill(&r, b, (size_t)g.in_c);
        run_dw(&g, mopt_isa_ref.dwconv, in, w, b, -0.5f, 0.5f, want, 1);
        /* Reference vs a naive loop (depthwise: filter [1,kh,kw,c]). */
        for (int n = 0; n < g.batch; n++)
            for (int oy = 0; oy < g.out_h; oy++)
                for (int ox = 0; ox < g.out_w; ox++)
                    for (int c = 0; c < g.in_c; c++) {
                        double acc = b[c];
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                int iy = oy * 2 - g.pad_top + ky, ix = ox - g.pad_left + kx * 2;
                                if (iy < 0 || iy >= g.in_h || ix < 0 || ix >= g.in_w) continue;
                                acc += (double)in[((n * g.in_h + iy) * g.in_w + ix) * g.in_c + c] *
                                       w[(ky * 3 + kx) * g.in_c + c];
                            }
                        double v = acc < -0.5 ? -0.5 : (acc > 0.5 ? 0.5 : acc);
                        size_t o = (((size_t)n * g.out_h + oy) * g.out_w + ox) * g.out_c + c;
                        assert_true(fabs(want[o] - v) <= 1e-5);
                    }
        for (int k = 0; k < n_isa; k++) {
            run_dw(&g, isas[k]->dwconv, in, w, b, -0.5f, 0.5f, got, 2);
            check_guard(got, no);
            assert_memory_equal(got, want, no * 4);
            /* No bias. */
            run_dw(&g, mopt_isa_ref.dwconv, in, w, NULL, -INFINITY, INFINITY, want, 1);
            run_dw(&g, isas[k]->dwconv, in, w, NULL, -INFINITY, INFINITY, got, 1);
            check_guard(got, no);
            assert_memory_equal(got, want, no * 4);
            run_dw(&g, mopt_isa_ref.dwconv, in, w, b, -0.5f, 0.5f, want, 1);
        }
        free(in);
        free(w);
        free(b);
        free(want);
        free(got);
    }
}

static void test_pack_layout(void **state) {
    (void)state;
    /* n=3 outputs, ks=2 taps, kc=2, nr=2 -> 2 panels of 2*(1+4) floats. */
    float w[3 * 4], b[3] = {100, 101, 102}, p[20];
    for (int i = 0; i < 12; i++) w[i] = (float)i; /* w[o][k] = 4*o + k */
    assert_int_equal(mopt_f32_gemm_packed_floats(3, 2, 2, 2), 20);
    mopt_f32_gemm_pack(3, 2, 2, 2, w, b, p);
    const float want[20] = {100, 101, 0, 4, 1, 5, 2, 6, 3, 7, 102, 0, 8, 0, 9, 0, 10, 0, 11, 0};
    assert_memory_equal(p, want, sizeof want);
}

static void test_nan_and_clamp_semantics(void **state) {
    (void)state;
    /* NaN propagates through the clamp in every variant; values clamp. */
    const mopt_isa *isas[8];
    int n_isa = mopt_isa_supported(isas, 8);
    mopt_conv_geom g;
    memset(&g, 0, sizeof g);
    g.batch = g.in_h = g.out_h = 1;
    g.in_w = g.out_w = 3;
    g.in_c = 1;
    g.out_c = 2;
    g.k_h = g.k_w = g.stride_h = g.stride_w = g.dil_h = g.dil_w = 1;
    float in[3] = {NAN, 10.0f, -10.0f}, w[2] = {1.0f, 0.5f};
    for (int k = 0; k < n_isa; k++) {
        float out[6];
        const mopt_f32_igemm_ukernel *uks[3] = {&isas[k]->igemm_wide, &isas[k]->igemm_narrow,
                                                &isas[k]->igemm_row};
        for (int u = 0; u < 3; u++) {
            run_igemm(&g, uks[u], in, w, NULL, 0.0f, 4.0f, out, 1);
            assert_true(isnan(out[0]) && isnan(out[1]));
            assert_true(out[2] == 4.0f && out[3] == 4.0f);
            assert_true(out[4] == 0.0f && out[5] == 0.0f);
        }
    }
}

static void test_vbinary_bit_exact(void **state) {
    (void)state;
    const mopt_isa *isas[8];
    int n_isa = mopt_isa_supported(isas, 8);
    rng r = {21};
    float a[70], b[70], want[70 + GUARD], got[70 + GUARD];
    for (size_t n = 0; n <= 70; n += (n < 20 ? 1 : 17)) {
        rng_fill(&r, a, 70);
        rng_fill(&r, b, 70);
        a[n / 2] = NAN;     /* NaN in a: kept by MAX/MIN and the clamp */
        b[n / 3 + 1] = NAN; /* NaN in b: dropped by MAX/MIN */
        a[n / 4] = -0.0f;
        for (int op = 0; op < MOPT_VOP_COUNT; op++)
            for (int vs = 0; vs < 2; vs++)
                for (int cl = 0; cl < 2; cl++) {
                    float lo = cl ? -0.25f : -INFINITY, hi = cl ? 0.5f : INFINITY;
                    const mopt_f32_vbinary_fn *rt =
                        vs ? mopt_isa_ref.vbinary_vs : mopt_isa_ref.vbinary_vv;
                    for (size_t i = 0; i < 70 + GUARD; i++) want[i] = got[i] = GUARD_VAL;
                    rt[op](n, a, b, want, lo, hi);
                    /* The reference itself, spot-checked by hand. */
                    if (n > 3 && op == MOPT_VOP_SUB && !vs && !cl)
                        assert_true(want[3] == a[3] - b[3] || isnan(want[3]));
                    if (n > 5 && op == MOPT_VOP_MAX && !cl) {
                        float z = vs ? b[0] : b[5];
                        assert_true(memcmp(&want[5], a[5] < z ? &z : &a[5], 4) == 0);
                    }
                    for (int k = 0; k < n_isa; k++) {
                        const mopt_f32_vbinary_fn *f =
                            vs ? isas[k]->vbinary_vs : isas[k]->vbinary_vv;
                        f[op](n, a, b, got, lo, hi);
                        check_guard(got, n);
                        assert_memory_equal(got, want, n * 4);
                        /* In place (y == a). */
                        memcpy(got, a, n * 4);
                        f[op](n, got, b, got, lo, hi);
                        assert_memory_equal(got, want, n * 4);
                    }
                }
        for (int k = 0; k < n_isa; k++) {
            mopt_isa_ref.vclamp(n, a, want, -0.1f, 0.2f);
            isas[k]->vclamp(n, a, got, -0.1f, 0.2f);
            assert_memory_equal(got, want, n * 4);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_layout),
        cmocka_unit_test(test_ref_vs_naive),
        cmocka_unit_test(test_isa_bit_exact),
        cmocka_unit_test(test_dwconv_bit_exact),
        cmocka_unit_test(test_nan_and_clamp_semantics),
        cmocka_unit_test(test_vbinary_bit_exact),
    };
    const mopt_isa *isas[8];
    int n = mopt_isa_supported(isas, 8);
    for (int i = 0; i < n; i++) fprintf(stderr, "testing ISA level %s\n", isas[i]->name);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
