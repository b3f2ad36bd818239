/* qs8_avx2.c - int8 GEMM and depthwise micro-kernels for AVX2.
 *
 * The GEMM widens both operands to int16 and multiplies with vpmaddwd
 * (int16 x int16 -> pairs summed into int32): exact for int8 inputs, unlike
 * vpmaddubsw whose int16 pair sums saturate. Accumulation is vpaddd, i.e.
 * modulo 2^32 like the reference (kernels.h). Compiled for generic x86-64;
 * only called when the CPU has AVX2 (dispatch in kernels/qgemm.c). */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <string.h>

#include "kernels/kernels.h"

#define TGT __attribute__((target("avx2")))

/* Four activation bytes a[0..3], widened to int16 and repeated in every
 * 64-bit chunk (matching the 4-byte column groups of the packed panel). */
TGT static inline __m256i bcast4(const int8_t *a) {
    int32_t v;
    memcpy(&v, a, sizeof v);
    return _mm256_broadcastq_epi64(_mm_cvtepi8_epi16(_mm_cvtsi32_si128(v)));
}

/* Per row, accLo holds (col 0..3) x (k pair) partial sums, accHi cols 4..7;
 * one horizontal add and a lane permute give the 8 column sums in order. */
TGT static inline __m256i reduce8(__m256i lo, __m256i hi, __m256i init) {
    __m256i s = _mm256_hadd_epi32(lo, hi);
    return _mm256_add_epi32(_mm256_permute4x64_epi64(s, 0xD8), init);
}

TGT static void qs8_gemm_4x8c4__avx2(size_t mr, size_t kp, const int8_t *a, size_t a_stride,
                                     const int8_t *w, int32_t *c, size_t c_stride) {
    const int8_t *a0 = a;
    const int8_t *a1 = mr > 1 ? a0 + a_stride : a0;
    const int8_t *a2 = mr > 2 ? a1 + a_stride : a1;
    const int8_t *a3 = mr > 3 ? a2 + a_stride : a2;
    __m256i init = _mm256_loadu_si256((const __m256i *)w);
    w += 32;
    __m256i l0 = _mm256_setzero_si256(), h0 = l0, l1 = l0, h1 = l0, l2 = l0, h2 = l0, l3 = l0,
            h3 = l0;
    for (size_t q = 0; q < kp; q += 4, w += 32) {
        __m256i wb = _mm256_loadu_si256((const __m256i *)w);
        __m256i wl = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(wb));
        __m256i wh = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(wb, 1));
        __m256i x = bcast4(a0 + q);
        l0 = _mm256_add_epi32(l0, _mm256_madd_epi16(wl, x));
        h0 = _mm256_add_epi32(h0, _mm256_madd_epi16(wh, x));
        x = bcast4(a1 + q);
        l1 = _mm256_add_epi32(l1, _mm256_madd_epi16(wl, x));
        h1 = _mm256_add_epi32(h1, _mm256_madd_epi16(wh, x));
        x = bcast4(a2 + q);
        l2 = _mm256_add_epi32(l2, _mm256_madd_epi16(wl, x));
        h2 = _mm256_add_epi32(h2, _mm256_madd_epi16(wh, x));
        x = bcast4(a3 + q);
        l3 = _mm256_add_epi32(l3, _mm256_madd_epi16(wl, x));
        h3 = _mm256_add_epi32(h3, _mm256_madd_epi16(wh, x));
    }
    _mm256_storeu_si256((__m256i *)c, reduce8(l0, h0, init));
    if (mr > 1) _mm256_storeu_si256((__m256i *)(c + c_stride), reduce8(l1, h1, init));
    if (mr > 2) _mm256_storeu_si256((__m256i *)(c + 2 * c_stride), reduce8(l2, h2, init));
    if (mr > 3) _mm256_storeu_si256((__m256i *)(c + 3 * c_stride), reduce8(l3, h3, init));
}

/* One row (FC with a single batch row): two k groups per step on separate
 * accumulators so the adds do not serialize. */
TGT static void qs8_gemm_1x8c4__avx2(size_t mr, size_t kp, const int8_t *a, size_t a_stride,
                                     const int8_t *w, int32_t *c, size_t c_stride) {
    (void)mr;
    (void)a_stride;
    (void)c_stride;
    __m256i init = _mm256_loadu_si256((const __m256i *)w);
    w += 32;
    __m256i l0 = _mm256_setzero_si256(), h0 = l0, l1 = l0, h1 = l0;
    size_t q = 0;
    for (; q + 8 <= kp; q += 8, w += 64) {
        __m256i wb0 = _mm256_loadu_si256((const __m256i *)w);
        __m256i wb1 = _mm256_loadu_si256((const __m256i *)(w + 32));
        __m256i x0 = bcast4(a + q), x1 = bcast4(a + q + 4);
        l0 = _mm256_add_epi32(
            l0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(wb0)), x0));
        h0 = _mm256_add_epi32(
            h0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(wb0, 1)), x0));
        l1 = _mm256_add_epi32(
            l1, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(wb1)), x1));
        h1 = _mm256_add_epi32(
            h1, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(wb1, 1)), x1));
    }
    if (q < kp) {
        __m256i wb0 = _mm256_loadu_si256((const __m256i *)w);
        __m256i x0 = bcast4(a + q);
        l0 = _mm256_add_epi32(
            l0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(wb0)), x0));
        h0 = _mm256_add_epi32(
            h0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(wb0, 1)), x0));
    }
    _mm256_storeu_si256((__m256i *)c,
                        reduce8(_mm256_add_epi32(l0, l1), _mm256_add_epi32(h0, h1), init));
}

/* Depthwise: 16 channels per step; int8 x int16 products fit int16
 * (|x * w| <= 128 * 128), so vpmullw is exact; they are widened and
 * summed in int32. The channel tail goes through a small copy so no read
 * passes the end of a row. */
TGT static void qs8_dw__avx2(size_t channels, size_t ks, const int8_t *const *in,
                             const int16_t *w, const int32_t *init, int32_t *acc) {
    size_t cp = (channels + 15) & ~(size_t)15;
    for (size_t c0 = 0; c0 < channels; c0 += 16) {
        size_t nc = channels - c0 < 16 ? channels - c0 : 16;
        __m256i s0 = _mm256_loadu_si256((const __m256i *)(init + c0));
        __m256i s1 = _mm256_loadu_si256((const __m256i *)(init + c0 + 8));
        for (size_t t = 0; t < ks; t++) {
            __m128i xb;
            if (nc == 16) {
                xb = _mm_loadu_si128((const __m128i *)(in[t] + c0));
            } else {
                int8_t tmp[16] = {0};
                memcpy(tmp, in[t] + c0, nc);
                xb = _mm_loadu_si128((const __m128i *)tmp);
            }
            __m256i p = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(xb),
                                           _mm256_loadu_si256((const __m256i *)(w + t * cp + c0)));
            s0 = _mm256_add_epi32(s0, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(p)));
            s1 = _mm256_add_epi32(s1, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(p, 1)));
        }
        if (nc == 16) {
            _mm256_storeu_si256((__m256i *)(acc + c0), s0);
            _mm256_storeu_si256((__m256i *)(acc + c0 + 8), s1);
        } else {
            int32_t tmp[16];
            _mm256_storeu_si256((__m256i *)tmp, s0);
            _mm256_storeu_si256((__m256i *)(tmp + 8), s1);
            memcpy(acc + c0, tmp, nc * sizeof *acc);
        }
    }
}

/* ---- requantization (kernels.h: mopt_qs8_rq) ---- */

/* gemmlowp's (p + nudge) / 2^31 with nudge = 2^30 (p >= 0) or 1 - 2^30
 * (p < 0) and truncating division equals floor((p + 2^30) / 2^31) in both
 * cases (for p < 0, truncating a negative quotient is flooring it after
 * adding 2^31 - 1, which cancels the nudge change). The low 32 bits of each
 * 64-bit lane are the result; a logical shift leaves the same low bits as
 * an arithmetic one. */
TGT static inline __m256i rnd31_avx2(__m256i p) {
    return _mm256_srli_epi64(_mm256_add_epi64(p, _mm256_set1_epi64x(1 << 30)), 31);
}

/* SaturatingRoundingDoublingHighMul, 8 lanes. */
TGT static inline __m256i srdhm_avx2(__m256i a, __m256i b) {
    __m256i pe = rnd31_avx2(_mm256_mul_epi32(a, b));
    __m256i po = rnd31_avx2(_mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(b, 32)));
    __m256i r = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
    const __m256i mn = _mm256_set1_epi32(INT32_MIN);
    __m256i sat = _mm256_and_si256(_mm256_cmpeq_epi32(a, mn), _mm256_cmpeq_epi32(b, mn));
    return _mm256_blendv_epi8(r, _mm256_set1_epi32(INT32_MAX), sat);
}

/* RoundingDivideByPOT, exponents in [0, 31]. */
TGT static inline __m256i rdbp_avx2(__m256i x, __m256i e) {
    const __m256i one = _mm256_set1_epi32(1);
    __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, e), one);
    __m256i rem = _mm256_and_si256(x, mask);
    __m256i thr = _mm256_add_epi32(_mm256_srli_epi32(mask, 1),
                                   _mm256_and_si256(_mm256_srai_epi32(x, 31), one));
    /* cmpgt gives -1 where rem > thr: subtracting adds the rounding 1. */
    return _mm256_sub_epi32(_mm256_srav_epi32(x, e), _mm256_cmpgt_epi32(rem, thr));
}

/* round_half_away((double)acc * scale) for 4 lanes, clamped to [lo, hi]
 * (a subrange of int32, so the clamp also saturates). */
TGT static inline __m128i dround4_avx2(__m128i acc, const double *scale, __m256d lo, __m256d hi) {
    __m256d x = _mm256_mul_pd(_mm256_cvtepi32_pd(acc), _mm256_loadu_pd(scale));
    __m256d t = _mm256_round_pd(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256d d = _mm256_sub_pd(x, t); /* exact */
    const __m256d one = _mm256_set1_pd(1.0);
    t = _mm256_add_pd(t, _mm256_and_pd(_mm256_cmp_pd(d, _mm256_set1_pd(0.5), _CMP_GE_OQ), one));
    t = _mm256_sub_pd(t, _mm256_and_pd(_mm256_cmp_pd(d, _mm256_set1_pd(-0.5), _CMP_LE_OQ), one));
    t = _mm256_min_pd(_mm256_max_pd(t, lo), hi);
    return _mm256_cvttpd_epi32(t);
}

TGT static void qs8_requant__avx2(size_t n, const int32_t *acc, const mopt_qs8_rq *p, size_t col0,
                                  int8_t *y) {
    /* Clamping v to [lo - off, hi - off] before adding off equals the
     * reference's saturating add then clamp. */
    const __m256i vlo = _mm256_set1_epi32(p->lo - p->out_off),
                  vhi = _mm256_set1_epi32(p->hi - p->out_off), off = _mm256_set1_epi32(p->out_off);
    const __m256d dlo = _mm256_set1_pd((double)(p->lo - p->out_off)),
                  dhi = _mm256_set1_pd((double)(p->hi - p->out_off));
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        size_t c = col0 + i;
        __m256i a = _mm256_loadu_si256((const __m256i *)(acc + i)), v;
        if (p->method == MOPT_QS8_RQ_DROUND) {
            __m128i r0 = dround4_avx2(_mm256_castsi256_si128(a), p->scale + c, dlo, dhi);
            __m128i r1 = dround4_avx2(_mm256_extracti128_si256(a, 1), p->scale + c + 4, dlo, dhi);
            v = _mm256_inserti128_si256(_mm256_castsi128_si256(r0), r1, 1);
        } else {
            __m256i x = _mm256_sllv_epi32(a, _mm256_loadu_si256((const __m256i *)(p->left + c)));
            v = srdhm_avx2(x, _mm256_loadu_si256((const __m256i *)(p->mult + c)));
            v = rdbp_avx2(v, _mm256_loadu_si256((const __m256i *)(p->right + c)));
            v = _mm256_min_epi32(_mm256_max_epi32(v, vlo), vhi);
        }
        v = _mm256_add_epi32(v, off);
        /* Values are in int8 range: the saturating packs are exact. */
        __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        _mm_storel_epi64((__m128i *)(y + i), _mm_packs_epi16(p16, p16));
    }
    for (; i < n; i++) y[i] = mopt_qs8_requant1(acc[i], p, col0 + i);
}

const mopt_qs8_isa mopt_qs8_isa_avx2 = {
    "avx2",
    {"qs8_gemm_4x8c4__avx2", 4, 8, 0, qs8_gemm_4x8c4__avx2},
    {"qs8_gemm_1x8c4__avx2", 1, 8, 0, qs8_gemm_1x8c4__avx2},
    qs8_dw__avx2,
    qs8_requant__avx2,
};
#endif
