/* test_train_gemm.c - the training GEMM: every A/B mode against a naive
 * double-precision product (relative tolerance GEMM_TOL = 1e-5: float32
 * accumulation of up to ~600 products of O(1) values), and bit-identical
 * results for every micro-kernel the CPU supports (scalar reference, AVX2,
 * AVX-512) and for serial vs pooled execution. Shapes are awkward on
 * purpose (primes, tails of every tile size, K spanning several blocks).
 *
 * Also the speed paths that must not change a result: the hand-written
 * AVX-512 loops (small-channel convolution forward and weight gradient,
 * Adam) against the portable code / GEMM they replace, bit for bit, and the
 * fused batch norm -> max pooling of the training graph against the unfused
 * ops (forced by an identity activation transform on the batch norm),
 * bit for bit, at 1 and 2 threads. */
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
#include "train/gemm.h"
#include "train/ops_simd.h"
#include "train/pool.h"
#include "train/vec.h"

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


/* ---- AVX-512 loops vs the portable code they replace ---- */

static void test_simd_conv_smallc(void **st) {
    (void)st;
    if (!tr_simd_avx512()) skip();
    /* H, W, C, OC, k, stride, dilation, pad */
    const int cases[][8] = {{28, 28, 1, 32, 3, 1, 1, 1}, {9, 7, 3, 16, 3, 2, 1, 1},
                            {8, 11, 2, 48, 5, 1, 2, 3},  {6, 5, 4, 80, 2, 2, 1, 0},
                            {5, 9, 1, 64, 7, 1, 1, 3}};
    for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
        const int H = cases[ci][0], W = cases[ci][1], C = cases[ci][2], OC = cases[ci][3];
        const int k = cases[ci][4], s = cases[ci][5], d = cases[ci][6], p = cases[ci][7];
        const int OH = (H + 2 * p - d * (k - 1) - 1) / s + 1, OW = (W + 2 * p - d * (k - 1) - 1) / s + 1;
        float *x = rnd((size_t)(H * W * C)), *wt = rnd((size_t)(k * k * C * OC)), *b = rnd((size_t)OC);
        float *y1 = malloc((size_t)(OW * OC) * sizeof(float)), *y2 = malloc((size_t)(OW * OC) * sizeof(float));
        for (int oy = 0; oy < OH; oy++)
            for (int bias = 0; bias < 2; bias++) {
                tr_vec_conv_row_smallc(x, H, W, C, oy, OW, OC, k, k, s, s, d, d, p, p, wt,
                                       bias ? b : NULL, y1);
                tr_avx512_conv_row_smallc(x, H, W, C, oy, OW, OC, k, k, s, s, d, d, p, p, wt,
                                          bias ? b : NULL, y2);
                assert_memory_equal(y1, y2, (size_t)(OW * OC) * sizeof(float));
            }
        free(x);
        free(wt);
        free(b);
        free(y1);
        free(y2);
    }
}

/* dW^T of a few-channel convolution: the GEMM over an explicit im2col (K
 * blocks of TR_GEMM_KC pixels) vs the AVX-512 blocks added in order */
static void test_simd_conv_dw(void **st) {
    (void)st;
    if (!tr_simd_avx512()) skip();
    const int cases[][9] = {/* B, H, W, C, OC, k, stride, pad, dilation */
                            {3, 28, 28, 1, 32, 3, 1, 1, 1},
                            {2, 9, 13, 3, 16, 3, 2, 1, 1},
                            {5, 7, 6, 2, 48, 3, 1, 2, 2}};
    for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
        const int B = cases[ci][0], H = cases[ci][1], W = cases[ci][2], C = cases[ci][3];
        const int OC = cases[ci][4], k = cases[ci][5], s = cases[ci][6], p = cases[ci][7];
        const int d = cases[ci][8];
        const int OH = (H + 2 * p - d * (k - 1) - 1) / s + 1, OW = (W + 2 * p - d * (k - 1) - 1) / s + 1;
        const int64_t M = (int64_t)B * OH * OW, K = (int64_t)k * k * C;
        float *x = rnd((size_t)(B * H * W * C)), *dz = rnd((size_t)(M * OC));
        tr_conv_geom g = {B, H, W, C, OH, OW, OC, k, k, s, s, d, d, p, p};
        float *col = malloc((size_t)(M * K) * sizeof(float));
        for (int64_t m = 0; m < M; m++)
            for (int64_t kk = 0; kk < K; kk++) col[m * K + kk] = col_at(&g, x, m, kk);
        tr_gemm_a a = {TR_A_KMAJOR, col, K, NULL, NULL};
        tr_gemm_b bm = {TR_B_STRIDED, dz, OC, 1, NULL};
        float *want = run_all(K, OC, M, &a, &bm, false, NULL);
        const tr_dw_geom dg = {x, dz, H, W, C, OH, OW, OC, k, k, s, s, d, d, p, p, 0};
        const int64_t nblk = (M + TR_GEMM_KC - 1) / TR_GEMM_KC;
        float *blk = malloc((size_t)(nblk * K * OC) * sizeof(float));
        for (int64_t q = 0; q < nblk; q++)
            tr_avx512_conv_dw_block(&dg, q * TR_GEMM_KC,
                                    M - q * TR_GEMM_KC < TR_GEMM_KC ? M - q * TR_GEMM_KC : TR_GEMM_KC,
                                    blk + q * K * OC);
        for (int64_t i = 0; i < K * OC; i++) {
            float sum = blk[i];
            for (int64_t q = 1; q < nblk; q++) sum += blk[q * K * OC + i];
            if (memcmp(&sum, &want[i], sizeof(float)) != 0)
                fail_msg("case %zu element %lld: %.9g vs GEMM %.9g", ci, (long long)i, sum, want[i]);
        }
        free(blk);
        free(want);
        free(col);
        free(x);
        free(dz);
    }
}

static void test_simd_adam(void **st) {
    (void)st;
    if (!tr_simd_avx512()) skip();
    const int64_t n = 1000 + 13;
    for (int dec = 0; dec < 2; dec++) {
        float *w = rnd((size_t)n), *g = rnd((size_t)n), *m = rnd((size_t)n), *v = rnd((size_t)n);
        for (int64_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
        float *w2 = malloc((size_t)n * 4), *m2 = malloc((size_t)n * 4), *v2 = malloc((size_t)n * 4);
        memcpy(w2, w, (size_t)n * 4);
        memcpy(m2, m, (size_t)n * 4);
        memcpy(v2, v, (size_t)n * 4);
        tr_vec_adam_portable(w, g, m, v, n, 0.7f, 0.01f, dec, 1e-3f, 0.9f, 0.999f, 3.1f, 2.7f, 1e-7f);
        tr_avx512_adam(w2, g, m2, v2, n, 0.7f, 0.01f, dec, 1e-3f, 0.9f, 0.999f, 3.1f, 2.7f, 1e-7f);
        assert_memory_equal(w, w2, (size_t)n * 4);
        assert_memory_equal(m, m2, (size_t)n * 4);
        assert_memory_equal(v, v2, (size_t)n * 4);
        free(w);
        free(g);
        free(m);
        free(v);
        free(w2);
        free(m2);
        free(v2);
    }
}

/* ---- fused batch norm -> max pooling vs unfused ---- */

static mopt_status ident_at(void *s, const mopt_at_args *a, mopt_error *e) {
    (void)s;
    (void)e;
    memcpy(a->out, a->in, (size_t)a->n * sizeof(float));
    return MOPT_OK;
}

/* one training step's logits, input gradient and every variable gradient */
static float *train_step(const char *spec, int batch, int threads, bool unfuse, bool in_grad,
                         size_t *len) {
    mopt_error e;
    mopt_tgraph *tg = NULL;
    mopt_arch_options o = mopt_arch_default_options();
    o.in_h = 12;
    o.in_w = 11;
    o.in_c = 2;
    if (mopt_tgraph_from_spec(spec, &o, &tg, &e) != MOPT_OK) fail_msg("%s", e.msg);
    mopt_tgraph_set_num_threads(tg, threads);
    /* an input gradient also disables the convolution + batch norm fusion */
    mopt_tgraph_set_input_grad(tg, in_grad);
    if (unfuse) {
        /* activation transforms on the batch norms and convolutions disable
         * both fusions */
        for (int i = 0; i < mopt_tgraph_num_nodes(tg); i++) {
            mopt_tnode_info info;
            assert_int_equal(mopt_tgraph_node_info(tg, i, &info, &e), MOPT_OK);
            if (info.kind != MOPT_TNODE_BATCH_NORM && info.kind != MOPT_OP_CONV_2D) continue;
            mopt_act_transform t = {"ident", NULL, ident_at, NULL, NULL};
            assert_int_equal(mopt_tgraph_set_act_transform(tg, i, &t, &e), MOPT_OK);
        }
    }
    const int64_t in = 12 * 11 * 2;
    float *x = rnd((size_t)(batch * in));
    int32_t *lab = malloc((size_t)batch * sizeof(int32_t));
    for (int b = 0; b < batch; b++) lab[b] = b % 10;
    /* two steps: the second sees updated running statistics too */
    for (int step = 0; step < 2; step++) {
        if (mopt_tgraph_forward(tg, x, batch, true, step, &e) != MOPT_OK ||
            mopt_tgraph_loss_softmax_ce(tg, lab, NULL, NULL, &e) != MOPT_OK ||
            mopt_tgraph_backward(tg, &e) != MOPT_OK)
            fail_msg("%s", e.msg);
    }
    size_t n = (size_t)batch * 10 + (in_grad ? (size_t)(batch * in) : 0);
    for (int i = 0; i < mopt_tgraph_num_vars(tg); i++) n += (size_t)mopt_tgraph_var(tg, i)->numel;
    float *out = malloc(n * sizeof(float)), *p = out;
    memcpy(p, mopt_tgraph_output(tg), (size_t)batch * 10 * sizeof(float));
    p += batch * 10;
    if (in_grad) {
        memcpy(p, mopt_tgraph_input_grad(tg), (size_t)(batch * in) * sizeof(float));
        p += batch * in;
    }
    for (int i = 0; i < mopt_tgraph_num_vars(tg); i++) {
        const mopt_tvar *v = mopt_tgraph_var(tg, i);
        /* gradients, or the values for state (running statistics) */
        memcpy(p, v->grad ? v->grad : v->data, (size_t)v->numel * sizeof(float));
        p += v->numel;
    }
    *len = n;
    free(x);
    free(lab);
    mopt_tgraph_free(tg);
    return out;
}

static void test_fused_bn_pool(void **st) {
    (void)st;
    const char *specs[] = {
        "conv 8 3 bn relu; maxpool 2; conv 16 3 bn relu; maxpool 2; fc classes",
        "conv 5 3 bn relu6; maxpool 3 same; fc classes",       /* SAME, clipped windows */
        "conv 6 3 bn; maxpool 2 s 3; fc classes",              /* gaps between windows */
        "conv 7 3 s 2 bn relu; maxpool 3 s 3 same; fc classes",
        /* few input channels (2): the convolution's dW fuses with the norm */
        "conv 32 3 bn relu; maxpool 2; fc classes",
        "conv 32 3 s 2 bn relu6; fc classes",                  /* no pooling */
        "conv 48 3 d 2 bn; maxpool 2 s 3; conv 16 3 bn relu; fc classes",
        /* 9 pixels per image: fewer rows than reduction chunks at batch 3 */
        "conv 32 3 s 4 bn relu; maxpool 2 same; fc classes",
    };
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
        for (int batch = 3; batch <= 37; batch += 34) {
            const bool in_grad = batch == 3;
            size_t n1, n2, n3;
            g_seed = 99;
            float *fused = train_step(specs[i], batch, 1, false, in_grad, &n1);
            g_seed = 99;
            float *plain = train_step(specs[i], batch, 1, true, in_grad, &n2);
            g_seed = 99;
            float *fused2 = train_step(specs[i], batch, 2, false, in_grad, &n3);
            assert_int_equal(n1, n2);
            assert_int_equal(n1, n3);
            for (size_t k = 0; k < n1; k++)
                if (memcmp(&fused[k], &plain[k], sizeof(float)) != 0)
                    fail_msg("'%s' batch %d: value %zu fused %.9g, unfused %.9g", specs[i], batch,
                             k, fused[k], plain[k]);
            assert_memory_equal(fused, fused2, n1 * sizeof(float));
            free(fused);
            free(plain);
            free(fused2);
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_and_kmajor),
        cmocka_unit_test(test_conv_modes),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_pool_job_boundaries),
        cmocka_unit_test(test_simd_conv_smallc),
        cmocka_unit_test(test_simd_conv_dw),
        cmocka_unit_test(test_simd_adam),
        cmocka_unit_test(test_fused_bn_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
