/* bench_gemm_blas.c - the training engine's GEMM (src/train/gemm.c) against
 * Debian's OpenBLAS (cblas_sgemm) on the `cnn` architecture's real
 * forward/backward shapes, 1 and 2 threads. Not built by CMake and not a
 * dependency of anything: bench/bench_gemm_blas.sh installs libopenblas-dev
 * (if missing), builds this file against build/libmopt.a and runs it with
 * OPENBLAS_CORETYPE=SkylakeX (OpenBLAS 0.3.21 takes this CPU for Haswell
 * otherwise). By hand:
 *
 *   gcc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc \
 *       -I/usr/include/x86_64-linux-gnu/openblas-pthread bench/bench_gemm_blas.c \
 *       build/libmopt.a -lopenblas -lz -lm -lpthread -fopenmp -o /tmp/bench_gemm_blas
 *   OPENBLAS_CORETYPE=SkylakeX /tmp/bench_gemm_blas [batch] [reps]
 *
 * For each shape: mopt's GEMM in the form the training ops use (implicit
 * im2col for convolutions, in-place transposed operands), OpenBLAS on
 * materialised operands (im2col / col2im time reported separately and
 * added in the "total" column, since mopt never builds them), GFLOP/s as
 * 2*M*N*K / best time of `reps` runs, alternating the two libraries run by
 * run (the machine is shared). "same 1T/2T" says whether the 2-thread
 * result is bit-identical to the 1-thread one (mopt guarantees it;
 * OpenBLAS splits K-reductions differently with the thread count for some
 * shapes).
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "train/gemm.h"
#include "train/pool.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t g_state = 12345;
static float *rnd(size_t n) {
    float *p = malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        g_state = g_state * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = (float)((g_state >> 40) & 0xFFFF) / 32768.0f - 1.0f;
    }
    return p;
}

/* NHWC image batch -> im2col rows (pixel) x (ky, kx, c), SAME padding, stride 1 */
static void im2col(const float *x, int B, int H, int W, int C, int k, float *col) {
    const int p = k / 2;
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < H; oy++)
            for (int ox = 0; ox < W; ox++)
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        const int iy = oy - p + ky, ix = ox - p + kx;
                        if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                            memcpy(col, x + (((int64_t)b * H + iy) * W + ix) * C,
                                   (size_t)C * sizeof(float));
                        else
                            memset(col, 0, (size_t)C * sizeof(float));
                        col += C;
                    }
}

typedef struct shape {
    const char *name;
    int64_t M, N, K;
    int kind; /* see run_mopt / run_blas */
} shape;

enum {
    CONV_FWD,   /* Y[M,OC] = im2col(X) W^T */
    CONV_DW,    /* dW^T[K,OC] = im2col(X)^T dZ */
    CONV_DX,    /* dX[M,C] = im2col(dZ) W' (stride 1: flipped kernel) */
    FC_FWD,     /* Y[B,U] = X W^T   (mopt: Y^T = W X^T, as the FC op does) */
    FC_DW,      /* dW[U,D] = dZ^T X */
    FC_DX       /* dX[B,D] = dZ W */
};

typedef struct data {
    int B;
    float *x2, *dz2, *w2, *wflip2, *col2, *dzcol2; /* conv2: 14x14x32 -> 64 */
    float *x3, *dz3, *w3;                          /* fc1: 3136 -> 128 */
    float *zeros;
    tr_conv_geom g2, g2t;
} data;

static void run_mopt(const data *d, const shape *s, float *c, tr_pool *pool) {
    const tr_ukernel *uk = tr_ukernel_best();
    tr_gemm_a A;
    tr_gemm_b Bm;
    memset(&A, 0, sizeof(A));
    memset(&Bm, 0, sizeof(Bm));
    Bm.mode = TR_B_STRIDED;
    switch (s->kind) {
    case CONV_FWD:
        A.mode = TR_A_CONV;
        A.a = d->x2;
        A.conv = &d->g2;
        A.zero = d->zeros;
        Bm.b = d->w2;
        Bm.rs = 1;
        Bm.cs = s->K;
        tr_gemm_ex(uk, s->M, s->N, s->K, &A, &Bm, c, s->N, false, pool);
        break;
    case CONV_DW:
        A.mode = TR_A_CONVT;
        A.a = d->x2;
        A.conv = &d->g2;
        A.zero = d->zeros;
        Bm.b = d->dz2;
        Bm.rs = s->N;
        Bm.cs = 1;
        tr_gemm_ex(uk, s->M, s->N, s->K, &A, &Bm, c, s->N, false, pool);
        break;
    case CONV_DX:
        A.mode = TR_A_CONV;
        A.a = d->dz2;
        A.conv = &d->g2t;
        A.zero = d->zeros;
        Bm.b = d->wflip2;
        Bm.rs = s->N;
        Bm.cs = 1;
        tr_gemm_ex(uk, s->M, s->N, s->K, &A, &Bm, c, s->N, false, pool);
        break;
    case FC_FWD: /* Y^T[U,B] = W[U,D] X^T: W read in place, X^T packed */
        tr_gemm(s->N, s->M, s->K, d->w3, s->K, 1, d->x3, 1, s->K, c, s->M, false, pool);
        break;
    case FC_DW:
        tr_gemm(s->M, s->N, s->K, d->dz3, 1, s->M, d->x3, s->N, 1, c, s->N, false, pool);
        break;
    case FC_DX:
        tr_gemm(s->M, s->N, s->K, d->dz3, s->K, 1, d->w3, s->N, 1, c, s->N, false, pool);
        break;
    }
}

/* OpenBLAS on materialised operands; returns the im2col time (s) separately */
static double run_blas(const data *d, const shape *s, float *c) {
    double t_col = 0.0;
    const int M = (int)s->M, N = (int)s->N, K = (int)s->K;
    switch (s->kind) {
    case CONV_FWD: {
        const double t0 = now();
        im2col(d->x2, d->B, 14, 14, 32, 3, d->col2);
        t_col = now() - t0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, d->col2, K, d->w2, K,
                    0.0f, c, N);
        break;
    }
    case CONV_DW: {
        const double t0 = now();
        im2col(d->x2, d->B, 14, 14, 32, 3, d->col2);
        t_col = now() - t0;
        /* dW^T[288,64] = col^T[288,P] dZ[P,64] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, 1.0f, d->col2, M, d->dz2, N,
                    0.0f, c, N);
        break;
    }
    case CONV_DX: {
        const double t0 = now();
        im2col(d->dz2, d->B, 14, 14, 64, 3, d->dzcol2);
        t_col = now() - t0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, d->dzcol2, K,
                    d->wflip2, N, 0.0f, c, N);
        break;
    }
    case FC_FWD:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, d->x3, K, d->w3, K,
                    0.0f, c, N);
        break;
    case FC_DW:
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, 1.0f, d->dz3, M, d->x3, N,
                    0.0f, c, N);
        break;
    case FC_DX:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, d->dz3, K, d->w3,
                    N, 0.0f, c, N);
        break;
    }
    return t_col;
}

int main(int argc, char **argv) {
    const int B = argc > 1 ? atoi(argv[1]) : 64;
    const int reps = argc > 2 ? atoi(argv[2]) : 15;
    if (B < 1 || B > 4096 || reps < 1) {
        fprintf(stderr, "usage: %s [batch 1..4096] [reps]\n", argv[0]);
        return 2;
    }
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf("batch %d, best of %d; mopt kernel %s; OpenBLAS %s (core %s, OPENBLAS_CORETYPE=%s)\n",
           B, reps, tr_ukernel_best()->name, openblas_get_config(), openblas_get_corename(),
           ct ? ct : "(unset)");
    data d;
    memset(&d, 0, sizeof(d));
    d.B = B;
    const int64_t P2 = (int64_t)B * 14 * 14;
    d.x2 = rnd((size_t)(P2 * 32));
    d.dz2 = rnd((size_t)(P2 * 64));
    d.w2 = rnd(64 * 288);
    d.wflip2 = rnd(576 * 32);
    d.col2 = rnd((size_t)(P2 * 288));
    d.dzcol2 = rnd((size_t)(P2 * 576));
    d.x3 = rnd((size_t)B * 3136);
    d.dz3 = rnd((size_t)B * 128);
    d.w3 = rnd(128 * 3136);
    d.zeros = calloc(64, sizeof(float));
    const tr_conv_geom g2 = {B, 14, 14, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1};
    const tr_conv_geom g2t = {B, 14, 14, 64, 14, 14, 32, 3, 3, 1, 1, 1, 1, 1, 1};
    d.g2 = g2;
    d.g2t = g2t;
    const shape shapes[] = {
        {"conv2 forward  Y = im2col(X) W^T", P2, 64, 288, CONV_FWD},
        {"conv2 dW^T = im2col(X)^T dZ", 288, 64, P2, CONV_DW},
        {"conv2 dX = im2col(dZ) W'", P2, 32, 576, CONV_DX},
        {"fc1 forward  Y = X W^T", B, 128, 3136, FC_FWD},
        {"fc1 dW = dZ^T X", 128, 3136, B, FC_DW},
        {"fc1 dX = dZ W", B, 3136, 128, FC_DX},
    };
    tr_pool *pool2 = tr_pool_create(2);
    printf("\n| GEMM (M x N x K) | threads | mopt GFLOP/s | OpenBLAS GFLOP/s (GEMM only) | "
           "OpenBLAS + im2col GFLOP/s | mopt / OpenBLAS+im2col | same 1T/2T mopt | same 1T/2T "
           "OpenBLAS |\n|---|---|---|---|---|---|---|---|\n");
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        const shape *s = &shapes[si];
        const size_t cn = (size_t)(s->M * s->N);
        float *cm[2], *cb[2];
        for (int t = 0; t < 2; t++) {
            cm[t] = malloc(cn * sizeof(float));
            cb[t] = malloc(cn * sizeof(float));
        }
        const double flop = 2.0 * (double)s->M * (double)s->N * (double)s->K;
        for (int t = 1; t <= 2; t++) {
            openblas_set_num_threads(t);
            tr_pool *pool = t == 2 ? pool2 : NULL;
            double bm = 1e30, bb = 1e30, bbc = 1e30;
            for (int r = 0; r < reps + 1; r++) { /* run 0 warms up */
                double t0 = now();
                run_mopt(&d, s, cm[t - 1], pool);
                const double tm = now() - t0;
                t0 = now();
                const double tc = run_blas(&d, s, cb[t - 1]);
                const double tb = now() - t0;
                if (r == 0) continue;
                if (tm < bm) bm = tm;
                if (tb - tc < bb) bb = tb - tc;
                if (tb < bbc) bbc = tb;
            }
            const bool col = s->kind == CONV_FWD || s->kind == CONV_DW || s->kind == CONV_DX;
            char same_m[8] = "", same_b[8] = "";
            if (t == 2) {
                snprintf(same_m, sizeof(same_m), "%s", memcmp(cm[0], cm[1], cn * 4) ? "no" : "yes");
                snprintf(same_b, sizeof(same_b), "%s", memcmp(cb[0], cb[1], cn * 4) ? "no" : "yes");
            }
            char colbuf[32];
            snprintf(colbuf, sizeof(colbuf), "%.1f", flop / bbc * 1e-9);
            printf("| %s (%lld x %lld x %lld) | %d | %.1f | %.1f | %s | %.2fx | %s | %s |\n", s->name,
                   (long long)s->M, (long long)s->N, (long long)s->K, t, flop / bm * 1e-9,
                   flop / bb * 1e-9, col ? colbuf : "(no im2col)", bbc / bm, same_m, same_b);
        }
        /* sanity: both libraries computed the same product (float rounding aside) */
        double maxd = 0.0, maxv = 0.0;
        for (size_t i = 0; i < cn; i++) {
            /* mopt's FC forward writes Y^T */
            const size_t im = s->kind == FC_FWD ? (i % (size_t)s->N) * (size_t)s->M + i / (size_t)s->N : i;
            const double df = fabs((double)cm[0][im] - (double)cb[0][i]);
            if (df > maxd) maxd = df;
            if (fabs(cb[0][i]) > maxv) maxv = fabs(cb[0][i]);
        }
        if (!(maxd <= 1e-4 * (maxv > 1.0 ? maxv : 1.0) * sqrt((double)s->K))) {
            fprintf(stderr, "%s: mopt and OpenBLAS disagree (max |diff| %g)\n", s->name, maxd);
            return 1;
        }
        for (int t = 0; t < 2; t++) {
            free(cm[t]);
            free(cb[t]);
        }
    }
    tr_pool_free(pool2);
    return 0;
}
