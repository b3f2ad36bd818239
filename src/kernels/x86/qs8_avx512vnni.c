/* qs8_avx512vnni.c - int8 GEMM and depthwise micro-kernels for AVX-512 with
 * VNNI.
 *
 * vpdpbusd multiplies unsigned bytes by signed bytes and adds groups of 4
 * products into int32 lanes without saturation (modulo 2^32, like the
 * reference). Activations are int8, so each is flipped to x + 128 (xor
 * 0x80) and the packed init carries -128 * sum(w) (u8_input = 1, see
 * kernels.h). Compiled for generic x86-64; only called when the CPU has
 * AVX512F/BW/VNNI (dispatch in kernels/qgemm.c). */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <string.h>

#include "kernels/kernels.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2")))

/* Four activation bytes as u8 (x + 128) broadcast to every int32 lane. */
TGT static inline __m512i bcast4u(const int8_t *a) {
    uint32_t v;
    memcpy(&v, a, sizeof v);
    return _mm512_set1_epi32((int32_t)(v ^ 0x80808080u));
}

TGT static void qs8_gemm_8x16c4__avx512vnni(size_t mr, size_t kp, const int8_t *a,
                                            size_t a_stride, const int8_t *w, int32_t *c,
                                            size_t c_stride) {
    const int8_t *ar[8];
    ar[0] = a;
    for (int r = 1; r < 8; r++) ar[r] = (size_t)r < mr ? ar[r - 1] + a_stride : ar[r - 1];
    const int8_t *a0 = ar[0], *a1 = ar[1], *a2 = ar[2], *a3 = ar[3], *a4 = ar[4], *a5 = ar[5],
                 *a6 = ar[6], *a7 = ar[7];
    __m512i init = _mm512_loadu_si512(w);
    w += 64;
    __m512i s0 = init, s1 = init, s2 = init, s3 = init, s4 = init, s5 = init, s6 = init,
            s7 = init;
    for (size_t q = 0; q < kp; q += 4, w += 64) {
        __m512i wv = _mm512_loadu_si512(w);
        s0 = _mm512_dpbusd_epi32(s0, bcast4u(a0 + q), wv);
        s1 = _mm512_dpbusd_epi32(s1, bcast4u(a1 + q), wv);
        s2 = _mm512_dpbusd_epi32(s2, bcast4u(a2 + q), wv);
        s3 = _mm512_dpbusd_epi32(s3, bcast4u(a3 + q), wv);
        s4 = _mm512_dpbusd_epi32(s4, bcast4u(a4 + q), wv);
        s5 = _mm512_dpbusd_epi32(s5, bcast4u(a5 + q), wv);
        s6 = _mm512_dpbusd_epi32(s6, bcast4u(a6 + q), wv);
        s7 = _mm512_dpbusd_epi32(s7, bcast4u(a7 + q), wv);
    }
    __m512i s[8] = {s0, s1, s2, s3, s4, s5, s6, s7};
    for (size_t r = 0; r < mr && r < 8; r++) _mm512_storeu_si512(c + r * c_stride, s[r]);
}

/* One row: four k groups per step on separate accumulators (vpdpbusd has
 * a multi-cycle latency). */
TGT static void qs8_gemm_1x16c4__avx512vnni(size_t mr, size_t kp, const int8_t *a,
                                            size_t a_stride, const int8_t *w, int32_t *c,
                                            size_t c_stride) {
    (void)mr;
    (void)a_stride;
    (void)c_stride;
    __m512i s0 = _mm512_loadu_si512(w);
    w += 64;
    __m512i s1 = _mm512_setzero_si512(), s2 = s1, s3 = s1;
    size_t q = 0;
    for (; q + 16 <= kp; q += 16, w += 256) {
        s0 = _mm512_dpbusd_epi32(s0, bcast4u(a + q), _mm512_loadu_si512(w));
        s1 = _mm512_dpbusd_epi32(s1, bcast4u(a + q + 4), _mm512_loadu_si512(w + 64));
        s2 = _mm512_dpbusd_epi32(s2, bcast4u(a + q + 8), _mm512_loadu_si512(w + 128));
        s3 = _mm512_dpbusd_epi32(s3, bcast4u(a + q + 12), _mm512_loadu_si512(w + 192));
    }
    for (; q < kp; q += 4, w += 64)
        s0 = _mm512_dpbusd_epi32(s0, bcast4u(a + q), _mm512_loadu_si512(w));
    s0 = _mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_add_epi32(s2, s3));
    _mm512_storeu_si512(c, s0);
}

/* Depthwise: 16 channels per step, exact int16 products (|x * w| <= 2^14)
 * widened into int32 lanes. */
TGT static void qs8_dw__avx512vnni(size_t channels, size_t ks, const int8_t *const *in,
                                   const int16_t *w, const int32_t *init, int32_t *acc) {
    size_t cp = (channels + 15) & ~(size_t)15;
    for (size_t c0 = 0; c0 < channels; c0 += 16) {
        size_t nc = channels - c0 < 16 ? channels - c0 : 16;
        __mmask16 m = (__mmask16)(nc == 16 ? 0xFFFFu : ((1u << nc) - 1u));
        __m512i s = _mm512_loadu_si512(init + c0);
        for (size_t t = 0; t < ks; t++) {
            /* Masked byte load: lanes past the row's end are not read. */
            __m128i xb = _mm_maskz_loadu_epi8(m, in[t] + c0);
            __m256i p = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(xb),
                                           _mm256_loadu_si256((const __m256i *)(w + t * cp + c0)));
            s = _mm512_add_epi32(s, _mm512_cvtepi16_epi32(p));
        }
        _mm512_mask_storeu_epi32(acc + c0, m, s);
    }
}

/* ---- requantization (kernels.h: mopt_qs8_rq) ---- */

/* gemmlowp's (p + nudge) / 2^31 with nudge = 2^30 (p >= 0) or 1 - 2^30
 * (p < 0) and truncating division equals floor((p + 2^30) / 2^31) in both
 * cases (for p < 0 the truncation of a negative quotient is the floor of
 * the quotient plus (2^31 - 1) / 2^31, which cancels the nudge change).
 * The low 32 bits of each 64-bit lane are the result; a logical shift
 * gives the same low bits as an arithmetic one. */
TGT static inline __m512i rnd31_512(__m512i p) {
    return _mm512_srli_epi64(_mm512_add_epi64(p, _mm512_set1_epi64(1 << 30)), 31);
}

TGT static inline __m512i srdhm_512(__m512i a, __m512i b) {
    __m512i pe = rnd31_512(_mm512_mul_epi32(a, b));
    __m512i po = rnd31_512(_mm512_mul_epi32(_mm512_srli_epi64(a, 32), _mm512_srli_epi64(b, 32)));
    __m512i r = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
    const __m512i mn = _mm512_set1_epi32(INT32_MIN);
    __mmask16 sat = _mm512_cmpeq_epi32_mask(a, mn) & _mm512_cmpeq_epi32_mask(b, mn);
    return _mm512_mask_blend_epi32(sat, r, _mm512_set1_epi32(INT32_MAX));
}

TGT static inline __m512i rdbp_512(__m512i x, __m512i e) {
    const __m512i one = _mm512_set1_epi32(1);
    __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, e), one);
    __m512i rem = _mm512_and_si512(x, mask);
    __m512i thr = _mm512_add_epi32(_mm512_srli_epi32(mask, 1),
                                   _mm512_and_si512(_mm512_srai_epi32(x, 31), one));
    return _mm512_mask_add_epi32(_mm512_srav_epi32(x, e), _mm512_cmpgt_epi32_mask(rem, thr),
                                 _mm512_srav_epi32(x, e), one);
}

TGT static inline __m256i dround8_512(__m256i acc, const double *scale, __mmask8 m, __m512d lo,
                                      __m512d hi) {
    __m512d x = _mm512_mul_pd(_mm512_cvtepi32_pd(acc), _mm512_maskz_loadu_pd(m, scale));
    __m512d t = _mm512_roundscale_pd(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m512d d = _mm512_sub_pd(x, t); /* exact */
    const __m512d one = _mm512_set1_pd(1.0);
    t = _mm512_mask_add_pd(t, _mm512_cmp_pd_mask(d, _mm512_set1_pd(0.5), _CMP_GE_OQ), t, one);
    t = _mm512_mask_sub_pd(t, _mm512_cmp_pd_mask(d, _mm512_set1_pd(-0.5), _CMP_LE_OQ), t, one);
    t = _mm512_min_pd(_mm512_max_pd(t, lo), hi);
    return _mm512_cvttpd_epi32(t);
}

TGT static void qs8_requant__avx512vnni(size_t n, const int32_t *acc, const mopt_qs8_rq *p,
                                        size_t col0, int8_t *y) {
    /* Clamping v to [lo - off, hi - off] before adding off equals the
     * reference's saturating add then clamp. */
    const __m512i vlo = _mm512_set1_epi32(p->lo - p->out_off),
                  vhi = _mm512_set1_epi32(p->hi - p->out_off), off = _mm512_set1_epi32(p->out_off);
    const __m512d dlo = _mm512_set1_pd((double)(p->lo - p->out_off)),
                  dhi = _mm512_set1_pd((double)(p->hi - p->out_off));
    for (size_t i = 0; i < n; i += 16) {
        size_t c = col0 + i, left = n - i;
        /* Masked loads and stores for the tail: nothing past n is touched. */
        __mmask16 m = (__mmask16)(left >= 16 ? 0xFFFFu : ((1u << left) - 1u));
        __m512i a = _mm512_maskz_loadu_epi32(m, acc + i), v;
        if (p->method == MOPT_QS8_RQ_DROUND) {
            __m256i r0 = dround8_512(_mm512_castsi512_si256(a), p->scale + c, (__mmask8)m, dlo, dhi);
            /* (no pointer past the array is formed for a short tail) */
            const double *s1 = (m >> 8) ? p->scale + c + 8 : p->scale + c;
            __m256i r1 = dround8_512(_mm512_extracti64x4_epi64(a, 1), s1, (__mmask8)(m >> 8), dlo,
                                     dhi);
            v = _mm512_inserti64x4(_mm512_castsi256_si512(r0), r1, 1);
        } else {
            __m512i x = _mm512_sllv_epi32(a, _mm512_maskz_loadu_epi32(m, p->left + c));
            v = srdhm_512(x, _mm512_maskz_loadu_epi32(m, p->mult + c));
            v = rdbp_512(v, _mm512_maskz_loadu_epi32(m, p->right + c));
            v = _mm512_min_epi32(_mm512_max_epi32(v, vlo), vhi);
        }
        v = _mm512_add_epi32(v, off);
        _mm_mask_storeu_epi8(y + i, m, _mm512_cvtepi32_epi8(v));
    }
}

const mopt_qs8_isa mopt_qs8_isa_avx512vnni = {
    "avx512vnni",
    {"qs8_gemm_8x16c4__avx512vnni", 8, 16, 1, qs8_gemm_8x16c4__avx512vnni},
    {"qs8_gemm_1x16c4__avx512vnni", 1, 16, 1, qs8_gemm_1x16c4__avx512vnni},
    qs8_dw__avx512vnni,
    qs8_requant__avx512vnni,
};
#endif
