/* f32_avx512.c - AVX-512F float kernels (igemm 8x32, 8x16 and 1x32,
 * depthwise, elementwise). Compiled for generic x86-64; the target attribute enables
 * AVX-512 only inside these functions, which dispatch.c calls only when the
 * CPU supports it. Bit-exact with src/kernels/ref (fma per element, same
 * order). */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/kernels.h"

#define TGT __attribute__((target("avx512f,avx2,fma")))
#define INL __attribute__((always_inline)) inline

/* The body is written once for any MR x (NV*16) tile; always_inline plus
 * constant MR/NV lets the compiler unroll the loops and keep acc[][] in
 * registers. */
TGT static INL void igemm_body(const size_t MR, const size_t NV, size_t mr, size_t nc, size_t kc,
                               size_t ks, const float *const *a, const float *w, float *c,
                               size_t c_stride, float vmin, float vmax) {
    __m512 acc[8][2];
#pragma GCC unroll 8
    for (size_t r = 0; r < MR; r++)
#pragma GCC unroll 2
        for (size_t v = 0; v < NV; v++) acc[r][v] = _mm512_loadu_ps(w + 16 * v);
    w += 16 * NV;
    for (size_t t = 0; t < ks; t++) {
        const float *ap[8];
#pragma GCC unroll 8
        for (size_t r = 0; r < MR; r++) ap[r] = a[t * MR + r];
        for (size_t k = 0; k < kc; k++) {
            __m512 b[2];
#pragma GCC unroll 2
            for (size_t v = 0; v < NV; v++) b[v] = _mm512_loadu_ps(w + 16 * v);
            w += 16 * NV;
#pragma GCC unroll 8
            for (size_t r = 0; r < MR; r++) {
                __m512 x = _mm512_set1_ps(ap[r][k]);
#pragma GCC unroll 2
                for (size_t v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(x, b[v], acc[r][v]);
            }
        }
    }
    const __m512 lo = _mm512_set1_ps(vmin), hi = _mm512_set1_ps(vmax);
#pragma GCC unroll 8
    for (size_t r = 0; r < MR; r++) {
        if (r >= mr) break;
        float *cr = c + r * c_stride;
#pragma GCC unroll 2
        for (size_t v = 0; v < NV; v++) {
            /* max(lo, x) returns x when unordered: NaN propagates. */
            __m512 y = _mm512_min_ps(hi, _mm512_max_ps(lo, acc[r][v]));
            size_t col = 16 * v;
            if (col + 16 <= nc) {
                _mm512_storeu_ps(cr + col, y);
            } else if (col < nc) {
                __mmask16 m = (__mmask16)((1u << (nc - col)) - 1u);
                _mm512_mask_storeu_ps(cr + col, m, y);
            }
        }
    }
}

TGT static void f32_igemm_8x32(size_t mr, size_t nc, size_t kc, size_t ks, const float *const *a,
                               const float *w, float *c, size_t c_stride, float vmin, float vmax) {
    igemm_body(8, 2, mr, nc, kc, ks, a, w, c, c_stride, vmin, vmax);
}

TGT static void f32_igemm_8x16(size_t mr, size_t nc, size_t kc, size_t ks, const float *const *a,
                               const float *w, float *c, size_t c_stride, float vmin, float vmax) {
    igemm_body(8, 1, mr, nc, kc, ks, a, w, c, c_stride, vmin, vmax);
}

TGT static void f32_igemm_1x32(size_t mr, size_t nc, size_t kc, size_t ks, const float *const *a,
                               const float *w, float *c, size_t c_stride, float vmin, float vmax) {
    igemm_body(1, 2, mr, nc, kc, ks, a, w, c, c_stride, vmin, vmax);
}

TGT static void f32_dwconv(size_t channels, size_t ks, const float *const *in, const float *w,
                           const float *bias, float *out, float vmin, float vmax) {
    const __m512 lo = _mm512_set1_ps(vmin), hi = _mm512_set1_ps(vmax);
    size_t c = 0;
    /* Two vectors per step: two independent fma chains hide latency. */
    for (; c + 32 <= channels; c += 32) {
        __m512 a0 = bias ? _mm512_loadu_ps(bias + c) : _mm512_setzero_ps();
        __m512 a1 = bias ? _mm512_loadu_ps(bias + c + 16) : _mm512_setzero_ps();
        const float *wp = w + c;
        for (size_t t = 0; t < ks; t++, wp += channels) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(in[t] + c), _mm512_loadu_ps(wp), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(in[t] + c + 16), _mm512_loadu_ps(wp + 16), a1);
        }
        _mm512_storeu_ps(out + c, _mm512_min_ps(hi, _mm512_max_ps(lo, a0)));
        _mm512_storeu_ps(out + c + 16, _mm512_min_ps(hi, _mm512_max_ps(lo, a1)));
    }
    for (; c < channels; c += 16) {
        size_t n = channels - c < 16 ? channels - c : 16;
        __mmask16 m = (__mmask16)((1u << n) - 1u);
        __m512 a0 = bias ? _mm512_maskz_loadu_ps(m, bias + c) : _mm512_setzero_ps();
        const float *wp = w + c;
        for (size_t t = 0; t < ks; t++, wp += channels)
            a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, in[t] + c), _mm512_maskz_loadu_ps(m, wp),
                                 a0);
        _mm512_mask_storeu_ps(out + c, m, _mm512_min_ps(hi, _mm512_max_ps(lo, a0)));
    }
}

/* Elementwise: one 16-lane vector per step, masked tail. OP(x, z) is the
 * operation on vectors a and b; the clamp keeps NaN (see kernels.h). */
#define V512_BIN(NAME, OP)                                                                         \
    TGT static void NAME##_vv(size_t n, const float *a, const float *b, float *y, float lo,        \
                              float hi) {                                                          \
        const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);                           \
        size_t i = 0;                                                                              \
        for (; i + 16 <= n; i += 16) {                                                             \
            __m512 x = _mm512_loadu_ps(a + i), z = _mm512_loadu_ps(b + i);                         \
            _mm512_storeu_ps(y + i, _mm512_min_ps(vhi, _mm512_max_ps(vlo, OP(x, z))));             \
        }                                                                                          \
        if (i < n) {                                                                               \
            __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);                                       \
            __m512 x = _mm512_maskz_loadu_ps(m, a + i), z = _mm512_maskz_loadu_ps(m, b + i);       \
            _mm512_mask_storeu_ps(y + i, m, _mm512_min_ps(vhi, _mm512_max_ps(vlo, OP(x, z))));     \
        }                                                                                          \
    }                                                                                              \
    TGT static void NAME##_vs(size_t n, const float *a, const float *b, float *y, float lo,        \
                              float hi) {                                                          \
        const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);                           \
        const __m512 z = _mm512_set1_ps(b[0]);                                                     \
        size_t i = 0;                                                                              \
        for (; i + 16 <= n; i += 16) {                                                             \
            __m512 x = _mm512_loadu_ps(a + i);                                                     \
            _mm512_storeu_ps(y + i, _mm512_min_ps(vhi, _mm512_max_ps(vlo, OP(x, z))));             \
        }                                                                                          \
        if (i < n) {                                                                               \
            __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);                                       \
            __m512 x = _mm512_maskz_loadu_ps(m, a + i);                                            \
            _mm512_mask_storeu_ps(y + i, m, _mm512_min_ps(vhi, _mm512_max_ps(vlo, OP(x, z))));     \
        }                                                                                          \
    }

/* MAXPS(p, q) = p > q ? p : q, so MAX(a, b) = a < b ? b : a is max_ps(b, a). */
#define OP_ADD(x, z) _mm512_add_ps(x, z)
#define OP_SUB(x, z) _mm512_sub_ps(x, z)
#define OP_RSUB(x, z) _mm512_sub_ps(z, x)
#define OP_MUL(x, z) _mm512_mul_ps(x, z)
#define OP_DIV(x, z) _mm512_div_ps(x, z)
#define OP_MAX(x, z) _mm512_max_ps(z, x)
#define OP_MIN(x, z) _mm512_min_ps(z, x)
V512_BIN(add, OP_ADD)
V512_BIN(sub, OP_SUB)
V512_BIN(rsub, OP_RSUB)
V512_BIN(mul, OP_MUL)
V512_BIN(div, OP_DIV)
V512_BIN(max, OP_MAX)
V512_BIN(min, OP_MIN)

TGT static void vclamp(size_t n, const float *x, float *y, float lo, float hi) {
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_min_ps(vhi, _mm512_max_ps(vlo, _mm512_loadu_ps(x + i))));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_min_ps(vhi, _mm512_max_ps(vlo, v)));
    }
}

const mopt_isa mopt_isa_avx512 = {
    "avx512f",
    {"f32_igemm_minmax_8x32__avx512f", 8, 32, f32_igemm_8x32},
    {"f32_igemm_minmax_8x16__avx512f", 8, 16, f32_igemm_8x16},
    {"f32_igemm_minmax_1x32__avx512f", 1, 32, f32_igemm_1x32},
    f32_dwconv,
    {add_vv, sub_vv, rsub_vv, mul_vv, div_vv, max_vv, min_vv},
    {add_vs, sub_vs, rsub_vs, mul_vs, div_vs, max_vs, min_vs},
    vclamp,
};
#endif
