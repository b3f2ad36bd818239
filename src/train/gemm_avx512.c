/* gemm_avx512.c - AVX-512F micro-kernels (8 x 32 tile) of the training GEMM.
 * Compiled for generic x86-64: the target attribute enables AVX-512 in these
 * functions only, and gemm.c calls them only when the CPU has AVX-512F.
 * Per element they perform the reference's fma sequence (gemm_ref.c), so
 * results are bit-identical. */
#include "train/gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx2,fma")))
#define MR 8
#define NR 32

TGT static inline void store_tile(__m512 acc[MR][2], float *c, size_t ldc, size_t mr, size_t nr,
                                  bool accumulate) {
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF
                         : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1u)
                                   : (__mmask16)0;
    for (size_t r = 0; r < mr; r++) {
        float *cr = c + r * ldc;
        __m512 y0 = acc[r][0], y1 = acc[r][1];
        if (accumulate) {
            y0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), y0);
            y1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), y1);
        }
        _mm512_mask_storeu_ps(cr, m0, y0);
        _mm512_mask_storeu_ps(cr + 16, m1, y1);
    }
}

TGT static void k_rows(size_t kc, size_t ks, const float *const *a, const float *bp, size_t ldb,
                       float *c, size_t ldc, size_t mr, size_t nr, bool accumulate) {
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (size_t t = 0; t < ks; t++, a += MR) {
        const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
        const float *a4 = a[4], *a5 = a[5], *a6 = a[6], *a7 = a[7];
        for (size_t k = 0; k < kc; k++) {
            const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
            __m512 x;
#define ROW(r, p)                                                                              \
    x = _mm512_set1_ps(p[k]);                                                                  \
    acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);                                             \
    acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
            ROW(0, a0) ROW(1, a1) ROW(2, a2) ROW(3, a3) ROW(4, a4) ROW(5, a5) ROW(6, a6) ROW(7, a7)
#undef ROW
            bp += ldb;
        }
    }
    store_tile(acc, c, ldc, mr, nr, accumulate);
}

TGT static void k_kmajor(size_t kc, const float *a, size_t lda, const float *bp, size_t ldb,
                         float *c, size_t ldc, size_t mr, size_t nr, bool accumulate) {
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (size_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            const __m512 x = _mm512_set1_ps(a[r]);
            acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
        }
        a += lda;
        bp += ldb;
    }
    store_tile(acc, c, ldc, mr, nr, accumulate);
}

TGT static void k_kptr(size_t kc, const float *const *a, size_t off, const float *bp, size_t ldb,
                       float *c, size_t ldc, size_t mr, size_t nr, bool accumulate) {
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (size_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
        const float *ak = a[k] + off;
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            const __m512 x = _mm512_set1_ps(ak[r]);
            acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
        }
        bp += ldb;
    }
    store_tile(acc, c, ldc, mr, nr, accumulate);
}

const tr_ukernel tr_ukernel_avx512 = {"f32_gemm_8x32__avx512f", MR, NR, k_rows, k_kmajor, k_kptr};
#else
const tr_ukernel tr_ukernel_avx512 = {"none", 4, 8, NULL, NULL, NULL};
#endif
