/* test_train_gemm.c - the training GEMM: every A/B mode against a naive
 * double-precision product (relative tolerance GEMM_TOL = 1e-5: float32
 * accumulation of up to ~600 products of O(1) values), and bit-identical
 * results for every micro-kernel the CPU supports (scalar reference, AVX2,
 * AVX-512) and for serial vs pooled execution. Shapes are awkward on
 * purpose (primes, tails of every tile size, K spanning several blocks). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "train/gemm.h"
#include "train/pool.h"

#define GEMM_TOL 1e-5

static uint64_t g_seed = 7;
static float frand(void) {
    g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((g_seed >> 40) & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f;
}

static float *rnd(size_t n) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

static int supported_kernels(const tr_ukernel **out) {
    int n = 0;
    out[n++] = &tr_ukernel_ref;
    const tr_ukernel *best = tr_ukernel_best();
    if (best == &tr_ukernel_avx512) {
        out[n++] = &tr_ukernel_avx2;
        out[n++] = &tr_ukernel_avx512;
    } else if (best == &tr_ukernel_avx2) {
        out[n++] = &tr_ukernel_avx2;
    }
    return n;
}

/* Runs the GEMM with every kernel, serial and pooled; all must agree bit
 * for bit; returns the first result (caller frees). c0 seeds C for
 * accumulate. */
static float *run_all(int64_t M, int64_t N, int64_t K, const tr_gemm_a *a, const tr_gemm_b *b,
                      bool acc, const float *c0) {
    const tr_ukernel *ks[3];
    int nk = supported_kernels(ks);
    tr_pool *pool = tr_pool_create(3);
    float *first = NULL;
    for (int k = 0; k < nk; k++)
        for (int par = 0; par < 2; par++) {
            float *c = malloc((size_t)(M * N) * sizeof(float));
            if (c0)
                memcpy(c, c0, (size_t)(M * N) * sizeof(float));
            else
                for (int64_t i = 0; i < M * N; i++) c[i] = 12345.0f; /* must be overwritten */
            tr_gemm_ex(ks[k], M, N, K, a, b, c, N, acc, par ? pool : NULL);
            if (!first) {
                first = c;
            } else {
                if (memcmp(first, c, (size_t)(M * N) * sizeof(float)) != 0)
                    fail_msg("kernel %s (%s) differs from %s", ks[k]->name,
                             par ? "pooled" : "serial", ks[0]->name);
                free(c);
            }
        }
    tr_pool_free(pool);
    return first;
}

static void check_ref(const float *c, const double *ref, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(c[i] - ref[i]) <= GEMM_TOL * fmax(1.0, fabs(ref[i]))))
            fail_msg("element %lld: %.9g vs %.9g", (long long)i, (double)c[i], ref[i]);
}

static void test_rows_and_kmajor(void **st) {
    (void)st;
    const int64_t shapes[][3] = {{1, 1, 1}, {7, 33, 5}, {37, 70, 300}, {97, 31, 513}, {200, 65, 17}};
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A = rnd((size_t)(M * K)), *B = rnd((size_t)(K * N)), *C0 = rnd((size_t)(M * N));
        double *ref = malloc((size_t)(M * N) * sizeof(double));
        for (int mode = 0; mode < 2; mode++)
            for (int acc = 0; acc < 2; acc++) {
                /* mode 0: A row-major, B = B; mode 1: A k-major (A^T stored), B transposed */
                float *At = malloc((size_t)(M * K) * sizeof(float));
                float *Bt = malloc((size_t)(K * N) * sizeof(float));
                for (int64_t i = 0; i < M; i++)
                    for (int64_t k = 0; k < K; k++) At[k * M + i] = A[i * K + k];
                for (int64_t k = 0; k < K; k++)
                    for (int64_t j = 0; j < N; j++) Bt[j * K + k] = B[k * N + j];
                tr_gemm_a a = {mode ? TR_A_KMAJOR : TR_A_ROWS, mode ? At : A, mode ? M : K, NULL,
                               NULL};
                tr_gemm_b b = {TR_B_STRIDED, mode ? Bt : B, mode ? 1 : N, mode ? K : 1, NULL};
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = 0; j < N; j++) {
                        double v = acc ? C0[i * N + j] : 0.0;
                        for (int64_t k = 0; k < K; k++) v += (double)A[i * K + k] * B[k * N + j];
                        ref[i * N + j] = v;
                    }
                float *c = run_all(M, N, K, &a, &b, acc != 0, acc ? C0 : NULL);
                check_ref(c, ref, M * N);
                free(c);
                free(At);
                free(Bt);
            }
        free(A);
        free(B);
        free(C0);
        free(ref);
    }
}

/* im2col reference for the conv modes */
static float col_at(const tr_conv_geom *g, const float *x, int64_t m, int64_t k) {
    const int64_t hw = (int64_t)g->OH * g->OW;
    const int64_t b = m / hw, rem = m % hw;
    const int oy = (int)(rem / g->OW), ox = (int)(rem % g->OW);
    const int tap = (int)(k / g->C), ic = (int)(k % g->C);
    const int iy = oy * g->sh - g->pt + (tap / g->kw) * g->dh;
    const int ix = ox * g->sw - g->pl + (tap % g->kw) * g->dw;
    if (iy < 0 || iy >= g->H || ix < 0 || ix >= g->W) return 0.0f;
    return x[((b * g->H + iy) * g->W + ix) * g->C + ic];
}

static void test_conv_modes(void **st) {
    (void)st;
    /* B, H, W, C, OH, OW, OC, kh, kw, sh, sw, dh, dw, pt, pl */
    const tr_conv_geom geoms[] = {
        {2, 7, 6, 8, 7, 6, 9, 3, 3, 1, 1, 1, 1, 1, 1},
        {3, 9, 8, 16, 5, 4, 40, 3, 3, 2, 2, 1, 1, 1, 1},
        {2, 8, 8, 8, 4, 4, 33, 3, 3, 1, 1, 2, 2, 0, 0},
        {1, 5, 5, 300, 5, 5, 17, 1, 1, 1, 1, 1, 1, 0, 0}, /* C > KC: per-tap blocks */
        {2, 6, 7, 264, 6, 7, 12, 2, 2, 1, 1, 1, 1, 0, 0},
    };
    for (size_t s = 0; s < sizeof(geoms) / sizeof(geoms[0]); s++) {
        const tr_conv_geom *g = &geoms[s];
        const int64_t M = (int64_t)g->B * g->OH * g->OW, K = (int64_t)g->kh * g->kw * g->C;
        const int64_t N = g->OC;
        float *x = rnd((size_t)((int64_t)g->B * g->H * g->W * g->C));
        float *w = rnd((size_t)(N * K)); /* [OC][K] */
        float *zero = calloc((size_t)g->C + 64, sizeof(float));
        /* forward: Y[M,N] = im2col(x) * W^T */
        double *ref = malloc((size_t)(M * N) * sizeof(double));
        for (int64_t m = 0; m < M; m++)
            for (int64_t j = 0; j < N; j++) {
                double v = 0;
                for (int64_t k = 0; k < K; k++) v += (double)col_at(g, x, m, k) * w[j * K + k];
                ref[m * N + j] = v;
            }
        tr_gemm_a a = {TR_A_CONV, x, 0, g, zero};
        tr_gemm_b b = {TR_B_STRIDED, w, 1, K, NULL};
        float *c = run_all(M, N, K, &a, &b, false, NULL);
        check_ref(c, ref, M * N);
        free(c);
        free(ref);
        /* weight gradient, B = im2col(x): D[N2, K] = dz^T [N2, M] * im2col(x) [M, K] */
        const int64_t N2 = 11;
        float *dz = rnd((size_t)(M * N2));
        ref = malloc((size_t)(N2 * K) * sizeof(double));
        for (int64_t i = 0; i < N2; i++)
            for (int64_t k = 0; k < K; k++) {
                double v = 0;
                for (int64_t m = 0; m < M; m++) v += (double)dz[m * N2 + i] * col_at(g, x, m, k);
                ref[i * K + k] = v;
            }
        tr_gemm_a a2 = {TR_A_KMAJOR, dz, N2, NULL, NULL};
        tr_gemm_b b2 = {TR_B_CONV, x, 0, 0, g};
        c = run_all(N2, K, M, &a2, &b2, false, NULL);
        check_ref(c, ref, N2 * K);
        free(c);
        free(ref);
        /* transposed im2col as A (needs C % MR == 0 for every kernel's MR: 8, 6, 4 -> 24) */
        if (g->C % 24 == 0 || g->C == 8 || g->C == 16) {
            const tr_ukernel *ks[3];
            int nk = supported_kernels(ks);
            /* D^T[K, N2] = im2col(x)^T * dz */
            ref = malloc((size_t)(K * N2) * sizeof(double));
            for (int64_t k = 0; k < K; k++)
                for (int64_t i = 0; i < N2; i++) {
                    double v = 0;
                    for (int64_t m = 0; m < M; m++) v += (double)col_at(g, x, m, k) * dz[m * N2 + i];
                    ref[k * N2 + i] = v;
                }
            tr_gemm_a a3 = {TR_A_CONVT, x, 0, g, zero};
            tr_gemm_b b3 = {TR_B_STRIDED, dz, N2, 1, NULL};
            float *first = NULL;
            for (int k = 0; k < nk; k++) {
                if (g->C % ks[k]->mr != 0) continue;
                float *cc = malloc((size_t)(K * N2) * sizeof(float));
                tr_gemm_ex(ks[k], K, N2, M, &a3, &b3, cc, N2, false, NULL);
                check_ref(cc, ref, K * N2);
                if (!first) first = cc;
                else {
                    assert_memory_equal(first, cc, (size_t)(K * N2) * sizeof(float));
                    free(cc);
                }
            }
            free(first);
            free(ref);
        }
        free(dz);
        free(x);
        free(w);
        free(zero);
    }
}

/* The pool runs every item exactly once, whatever the chunking, and never
 * after tr_pool_run returned (jobs of changing sizes: a straggler of a
 * finished job must not claim a chunk of the next one). */
typedef struct {
    volatile int alive;
    int64_t n;
    int late;
    int *cnt;
} life_job;
static void life_range(void *p, int64_t b, int64_t e) {
    life_job *j = p;
    if (!j->alive) j->late++;
    for (int64_t i = b; i < e; i++) __atomic_fetch_add(&j->cnt[i], 1, __ATOMIC_RELAXED);
    if (!j->alive) j->late++;
}

static void test_pool_job_boundaries(void **st) {
    (void)st;
    tr_pool *p = tr_pool_create(3);
    assert_non_null(p);
    int cnt[64];
    int late = 0;
    for (int it = 0; it < 20000; it++) {
        life_job j;
        memset(cnt, 0, sizeof(cnt));
        j.alive = 1;
        j.n = (it & 1) ? 2 : 13 + it % 40;
        j.late = 0;
        j.cnt = cnt;
        tr_pool_run(p, j.n, 1, life_range, &j);
        for (int64_t i = 0; i < j.n; i++) assert_int_equal(cnt[i], 1);
        j.alive = 0;
        late += j.late;
    }
    assert_int_equal(late, 0);
    tr_pool_free(p);
}

typedef struct { int *hits; } hit_job;
static void hit_range(void *p, int64_t b, int64_t e) {
    hit_job *j = p;
    for (int64_t i = b; i < e; i++) j->hits[i]++;
}

static void test_pool(void **st) {
    (void)st;
    tr_pool *p = tr_pool_create(3);
    assert_non_null(p);
    assert_int_equal(tr_pool_threads(p), 3);
    int *hits = calloc(1000, sizeof(int));
    hit_job j = {hits};
    for (int rep = 0; rep < 300; rep++) tr_pool_run(p, 1 + rep * 3, 1, hit_range, &j);
    for (int i = 0; i < 1000; i++) {
        int want = 0;
        for (int rep = 0; rep < 300; rep++) want += i < 1 + rep * 3;
        assert_int_equal(hits[i], want);
    }
    tr_pool_free(p);
    tr_pool_free(NULL);
    assert_null(tr_pool_create(1));
    memset(hits, 0, 1000 * sizeof(int));
    tr_pool_run(NULL, 10, 1, hit_range, &j); /* serial */
    assert_int_equal(hits[9], 1);
    free(hits);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_and_kmajor),
        cmocka_unit_test(test_conv_modes),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_pool_job_boundaries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
