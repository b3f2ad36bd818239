/* gemm_ref.c - scalar reference micro-kernels of the training GEMM. They
 * define the result (see gemm.h): one fmaf per (i, j, k) in k order. */
#include <math.h>

#include "train/gemm.h"

#define REF_MR 4
#define REF_NR 8

static void store(float acc[REF_MR][REF_NR], float *c, size_t ldc, size_t mr, size_t nr,
                  bool accumulate) {
    for (size_t r = 0; r < mr; r++)
        for (size_t j = 0; j < nr; j++)
            c[r * ldc + j] = accumulate ? c[r * ldc + j] + acc[r][j] : acc[r][j];
}

static void ref_rows(size_t kc, size_t ks, const float *const *a, const float *bp, size_t ldb,
                     float *c, size_t ldc, size_t mr, size_t nr, bool accumulate) {
    float acc[REF_MR][REF_NR] = {{0}};
    for (size_t t = 0; t < ks; t++)
        for (size_t k = 0; k < kc; k++) {
            const float *b = bp + (t * kc + k) * ldb;
            for (size_t r = 0; r < REF_MR; r++)
                for (size_t j = 0; j < REF_NR; j++)
                    acc[r][j] = fmaf(a[t * REF_MR + r][k], b[j], acc[r][j]);
        }
    store(acc, c, ldc, mr, nr, accumulate);
}

static void ref_kmajor(size_t kc, const float *a, size_t lda, const float *bp, size_t ldb,
                       float *c, size_t ldc, size_t mr, size_t nr, bool accumulate) {
    float acc[REF_MR][REF_NR] = {{0}};
    for (size_t k = 0; k < kc; k++) {
        const float *b = bp + k * ldb, *ak = a + k * lda;
        for (size_t r = 0; r < REF_MR; r++)
            for (size_t j = 0; j < REF_NR; j++) acc[r][j] = fmaf(ak[r], b[j], acc[r][j]);
    }
    store(acc, c, ldc, mr, nr, accumulate);
}

static void ref_kptr(size_t kc, const float *const *a, size_t off, const float *bp, size_t ldb,
                     float *c, size_t ldc, size_t mr, size_t nr, bool accumulate) {
    float acc[REF_MR][REF_NR] = {{0}};
    for (size_t k = 0; k < kc; k++) {
        const float *b = bp + k * ldb, *ak = a[k] + off;
        for (size_t r = 0; r < REF_MR; r++)
            for (size_t j = 0; j < REF_NR; j++) acc[r][j] = fmaf(ak[r], b[j], acc[r][j]);
    }
    store(acc, c, ldc, mr, nr, accumulate);
}

const tr_ukernel tr_ukernel_ref = {"f32_gemm_4x8__scalar", REF_MR, REF_NR, ref_rows, ref_kmajor,
                                   ref_kptr};
