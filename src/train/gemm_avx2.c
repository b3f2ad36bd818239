/* gemm_avx2.c - AVX2+FMA micro-kernels (6 x 16 tile) of the training GEMM.
 * Target attribute per function; called only when the CPU has AVX2 and FMA.
 * Bit-identical with gemm_ref.c (same fma sequence per element). */
#include "train/gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma")))
#define MR 6
#define NR 16

TGT static inline __m256i tail_mask(size_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}

TGT static inline void store_tile(__m256 acc[MR][2], float *c, size_t ldc, size_t mr, size_t nr,
                                  bool accumulate) {
    const __m256i m0 = tail_mask(nr >= 8 ? 8 : nr), m1 = tail_mask(nr > 8 ? nr - 8 : 0);
    for (size_t r = 0; r < mr; r++) {
        float *cr = c + r * ldc;
        __m256 y0 = acc[r][0], y1 = acc[r][1];
        if (accumulate) {
            y0 = _mm256_add_ps(_mm256_maskload_ps(cr, m0), y0);
            y1 = _mm256_add_ps(_mm256_maskload_ps(cr + 8, m1), y1);
        }
        _mm256_maskstore_ps(cr, m0, y0);
        _mm256_maskstore_ps(cr + 8, m1, y1);
    }
}

TGT static void k_rows(size_t kc, size_t ks, const float *const *a, const float *bp, size_t ldb,
                       float *c, size_t ldc, size_t mr, size_t nr, bool accumulate) {
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (size_t t = 0; t < ks; t++, a += MR) {
        const float *ap[MR];
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) ap[r] = a[r];
        for (size_t k = 0; k < kc; k++) {
            const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
#pragma GCC unroll 6
            for (int r = 0; r < MR; r++) {
                const __m256 x = _mm256_broadcast_ss(ap[r] + k);
                acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
            }
            bp += ldb;
        }
    }
    store_tile(acc, c, ldc, mr, nr, accumulate);
}

TGT static void k_kmajor(size_t kc, const float *a, size_t lda, const float *bp, size_t ldb,
                         float *c, size_t ldc, size_t mr, size_t nr, bool accumulate) {
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (size_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __m256 x = _mm256_broadcast_ss(a + r);
            acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
        }
        a += lda;
        bp += ldb;
    }
    store_tile(acc, c, ldc, mr, nr, accumulate);
}

TGT static void k_kptr(size_t kc, const float *const *a, size_t off, const float *bp, size_t ldb,
                       float *c, size_t ldc, size_t mr, size_t nr, bool accumulate) {
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (size_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
        const float *ak = a[k] + off;
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __m256 x = _mm256_broadcast_ss(ak + r);
            acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
        }
        bp += ldb;
    }
    store_tile(acc, c, ldc, mr, nr, accumulate);
}

const tr_ukernel tr_ukernel_avx2 = {"f32_gemm_6x16__avx2_fma", MR, NR, k_rows, k_kmajor, k_kptr};
#else
const tr_ukernel tr_ukernel_avx2 = {"none", 4, 8, NULL, NULL, NULL};
#endif
