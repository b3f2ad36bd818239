/* f32_avx2.c - AVX2+FMA float kernels (igemm 6x16, 8x8 and 1x16,
 * depthwise, elementwise). Only called when the CPU supports AVX2 and FMA (dispatch.c).
 * Bit-exact with src/kernels/ref (fma per element, same order). */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/kernels.h"

#define TGT __attribute__((target("avx2,fma")))
#define INL __attribute__((always_inline)) inline

/* Lane mask with the first n (0..8) lanes set, for partial stores. */
TGT static INL __m256i lane_mask(size_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}

TGT static INL void igemm_body(const size_t MR, const size_t NV, size_t mr, size_t nc, size_t kc,
                               size_t ks, const float *const *a, const float *w, float *c,
                               size_t c_stride, float vmin, float vmax) {
    __m256 acc[8][2];
#pragma GCC unroll 8
    for (size_t r = 0; r < MR; r++)
#pragma GCC unroll 2
        for (size_t v = 0; v < NV; v++) acc[r][v] = _mm256_loadu_ps(w + 8 * v);
    w += 8 * NV;
    for (size_t t = 0; t < ks; t++) {
        const float *ap[8];
#pragma GCC unroll 8
        for (size_t r = 0; r < MR; r++) ap[r] = a[t * MR + r];
        for (size_t k = 0; k < kc; k++) {
            __m256 b[2];
#pragma GCC unroll 2
            for (size_t v = 0; v < NV; v++) b[v] = _mm256_loadu_ps(w + 8 * v);
            w += 8 * NV;
#pragma GCC unroll 8
            for (size_t r = 0; r < MR; r++) {
                __m256 x = _mm256_broadcast_ss(ap[r] + k);
#pragma GCC unroll 2
                for (size_t v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(x, b[v], acc[r][v]);
            }
        }
    }
    const __m256 lo = _mm256_set1_ps(vmin), hi = _mm256_set1_ps(vmax);
#pragma GCC unroll 8
    for (size_t r = 0; r < MR; r++) {
        if (r >= mr) break;
        float *cr = c + r * c_stride;
#pragma GCC unroll 2
        for (size_t v = 0; v < NV; v++) {
            __m256 y = _mm256_min_ps(hi, _mm256_max_ps(lo, acc[r][v]));
            size_t col = 8 * v;
            if (col + 8 <= nc)
                _mm256_storeu_ps(cr + col, y);
            else if (col < nc)
                _mm256_maskstore_ps(cr + col, lane_mask(nc - col), y);
        }
    }
}

TGT static void f32_igemm_6x16(size_t mr, size_t nc, size_t kc, size_t ks, const float *const *a,
                               const float *w, float *c, size_t c_stride, float vmin, float vmax) {
    igemm_body(6, 2, mr, nc, kc, ks, a, w, c, c_stride, vmin, vmax);
}

TGT static void f32_igemm_8x8(size_t mr, size_t nc, size_t kc, size_t ks, const float *const *a,
                              const float *w, float *c, size_t c_stride, float vmin, float vmax) {
    igemm_body(8, 1, mr, nc, kc, ks, a, w, c, c_stride, vmin, vmax);
}

TGT static void f32_igemm_1x16(size_t mr, size_t nc, size_t kc, size_t ks, const float *const *a,
                               const float *w, float *c, size_t c_stride, float vmin, float vmax) {
    igemm_body(1, 2, mr, nc, kc, ks, a, w, c, c_stride, vmin, vmax);
}

TGT static void f32_dwconv(size_t channels, size_t ks, const float *const *in, const float *w,
                           const float *bias, float *out, float vmin, float vmax) {
    const __m256 lo = _mm256_set1_ps(vmin), hi = _mm256_set1_ps(vmax);
    size_t c = 0;
    for (; c + 16 <= channels; c += 16) {
        __m256 a0 = bias ? _mm256_loadu_ps(bias + c) : _mm256_setzero_ps();
        __m256 a1 = bias ? _mm256_loadu_ps(bias + c + 8) : _mm256_setzero_ps();
        const float *wp = w + c;
        for (size_t t = 0; t < ks; t++, wp += channels) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(in[t] + c), _mm256_loadu_ps(wp), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(in[t] + c + 8), _mm256_loadu_ps(wp + 8), a1);
        }
        _mm256_storeu_ps(out + c, _mm256_min_ps(hi, _mm256_max_ps(lo, a0)));
        _mm256_storeu_ps(out + c + 8, _mm256_min_ps(hi, _mm256_max_ps(lo, a1)));
    }
    for (; c < channels; c += 8) {
        size_t n = channels - c < 8 ? channels - c : 8;
        __m256i m = lane_mask(n);
        __m256 a0 = bias ? _mm256_maskload_ps(bias + c, m) : _mm256_setzero_ps();
        const float *wp = w + c;
        for (size_t t = 0; t < ks; t++, wp += channels)
            a0 = _mm256_fmadd_ps(_mm256_maskload_ps(in[t] + c, m), _mm256_maskload_ps(wp, m), a0);
        _mm256_maskstore_ps(out + c, m, _mm256_min_ps(hi, _mm256_max_ps(lo, a0)));
    }
}

/* Elementwise: one 8-lane vector per step, masked tail. OP(x, z) is the
 * operation on vectors a and b; the clamp keeps NaN (see kernels.h). */
#define V256_BIN(NAME, OP)                                                                         \
    TGT static void NAME##_vv(size_t n, const float *a, const float *b, float *y, float lo,        \
                              float hi) {                                                          \
        const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);                           \
        size_t i = 0;                                                                              \
        for (; i + 8 <= n; i += 8) {                                                               \
            __m256 x = _mm256_loadu_ps(a + i), z = _mm256_loadu_ps(b + i);                         \
            _mm256_storeu_ps(y + i, _mm256_min_ps(vhi, _mm256_max_ps(vlo, OP(x, z))));             \
        }                                                                                          \
        if (i < n) {                                                                               \
            __m256i m = lane_mask(n - i);                                                          \
            __m256 x = _mm256_maskload_ps(a + i, m), z = _mm256_maskload_ps(b + i, m);             \
            _mm256_maskstore_ps(y + i, m, _mm256_min_ps(vhi, _mm256_max_ps(vlo, OP(x, z))));       \
        }                                                                                          \
    }                                                                                              \
    TGT static void NAME##_vs(size_t n, const float *a, const float *b, float *y, float lo,        \
                              float hi) {                                                          \
        const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);                           \
        const __m256 z = _mm256_set1_ps(b[0]);                                                     \
        size_t i = 0;                                                                              \
        for (; i + 8 <= n; i += 8) {                                                               \
            __m256 x = _mm256_loadu_ps(a + i);                                                     \
            _mm256_storeu_ps(y + i, _mm256_min_ps(vhi, _mm256_max_ps(vlo, OP(x, z))));             \
        }                                                                                          \
        if (i < n) {                                                                               \
            __m256i m = lane_mask(n - i);                                                          \
            __m256 x = _mm256_maskload_ps(a + i, m);                                               \
            _mm256_maskstore_ps(y + i, m, _mm256_min_ps(vhi, _mm256_max_ps(vlo, OP(x, z))));       \
        }                                                                                          \
    }

/* MAXPS(p, q) = p > q ? p : q, so MAX(a, b) = a < b ? b : a is max_ps(b, a). */
#define OP_ADD(x, z) _mm256_add_ps(x, z)
#define OP_SUB(x, z) _mm256_sub_ps(x, z)
#define OP_RSUB(x, z) _mm256_sub_ps(z, x)
#define OP_MUL(x, z) _mm256_mul_ps(x, z)
#define OP_DIV(x, z) _mm256_div_ps(x, z)
#define OP_MAX(x, z) _mm256_max_ps(z, x)
#define OP_MIN(x, z) _mm256_min_ps(z, x)
V256_BIN(add, OP_ADD)
V256_BIN(sub, OP_SUB)
V256_BIN(rsub, OP_RSUB)
V256_BIN(mul, OP_MUL)
V256_BIN(div, OP_DIV)
V256_BIN(max, OP_MAX)
V256_BIN(min, OP_MIN)

TGT static void vclamp(size_t n, const float *x, float *y, float lo, float hi) {
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_min_ps(vhi, _mm256_max_ps(vlo, _mm256_loadu_ps(x + i))));
    if (i < n) {
        __m256i m = lane_mask(n - i);
        __m256 v = _mm256_maskload_ps(x + i, m);
        _mm256_maskstore_ps(y + i, m, _mm256_min_ps(vhi, _mm256_max_ps(vlo, v)));
    }
}

const mopt_isa mopt_isa_avx2 = {
    "avx2",
    {"f32_igemm_minmax_6x16__avx2_fma", 6, 16, f32_igemm_6x16},
    {"f32_igemm_minmax_8x8__avx2_fma", 8, 8, f32_igemm_8x8},
    {"f32_igemm_minmax_1x16__avx2_fma", 1, 16, f32_igemm_1x16},
    f32_dwconv,
    {add_vv, sub_vv, rsub_vv, mul_vv, div_vv, max_vv, min_vv},
    {add_vs, sub_vs, rsub_vs, mul_vs, div_vs, max_vs, min_vs},
    vclamp,
};
#endif
