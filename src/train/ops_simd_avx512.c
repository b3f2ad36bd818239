/* ops_simd_avx512.c - AVX-512F versions of a few training loops (see
 * ops_simd.h). Compiled for generic x86-64: the target attribute enables
 * AVX-512 in these functions only, and callers use them only when
 * tr_simd_avx512() is true. Each repeats its reference's operations: the
 * small-channel forward and Adam keep multiplies and adds separate, as the
 * portable loops (which the build never contracts into FMA) do; the
 * weight-gradient blocks use FMA, as the GEMM micro-kernels they replace. */
#include "train/ops_simd.h"

#include "train/gemm.h"

bool tr_simd_avx512(void) {
    /* the GEMM's choice: the same CPU check, so both agree */
    return tr_ukernel_best() == &tr_ukernel_avx512;
}

#if defined(__x86_64__)
#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx2,fma")))

/* PX output pixels x NB*16 output channels in registers; taps in (ky, kx,
 * ic) order, out-of-image taps skipped, acc += x * w as mul then add: the
 * portable loop's sequence for every output element. */
#define PX 4

/* always inlined: nb is then a constant and acc stays in registers */
TGT __attribute__((always_inline)) static inline void smallc_block(
    const float *xb, int H, int W, int C, int iy0, int ox0, int npx, int OC, int kh, int kw,
    int sw, int dh, int dw, int pl, const float *wt, const float *bias, float *y, const int nb) {
    __m512 acc[PX][4];
    for (int p = 0; p < PX; p++)
        for (int q = 0; q < nb; q++)
            acc[p][q] = bias ? _mm512_loadu_ps(bias + 16 * q) : _mm512_setzero_ps();
    for (int ky = 0; ky < kh; ky++) {
        const int iy = iy0 + ky * dh;
        if (iy < 0 || iy >= H) continue;
        const float *xrow = xb + (int64_t)iy * W * C;
        for (int kx = 0; kx < kw; kx++) {
            const float *wp = wt + (int64_t)((ky * kw + kx) * C) * OC;
            int ix[PX];
            bool ok[PX];
            for (int p = 0; p < PX; p++) {
                ix[p] = (ox0 + p) * sw - pl + kx * dw;
                ok[p] = p < npx && ix[p] >= 0 && ix[p] < W;
            }
            for (int ic = 0; ic < C; ic++) {
                __m512 wv[4];
                for (int q = 0; q < nb; q++)
                    wv[q] = _mm512_loadu_ps(wp + (int64_t)ic * OC + 16 * q);
                for (int p = 0; p < PX; p++) {
                    if (!ok[p]) continue;
                    const __m512 xv = _mm512_set1_ps(xrow[(int64_t)ix[p] * C + ic]);
                    for (int q = 0; q < nb; q++)
                        acc[p][q] = _mm512_add_ps(acc[p][q], _mm512_mul_ps(xv, wv[q]));
                }
            }
        }
    }
    for (int p = 0; p < npx; p++)
        for (int q = 0; q < nb; q++)
            _mm512_storeu_ps(y + (int64_t)(ox0 + p) * OC + 16 * q, acc[p][q]);
}

TGT void tr_avx512_conv_row_smallc(const float *xb, int H, int W, int C, int oy, int OW, int OC,
                                   int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pl,
                                   const float *wt, const float *bias, float *y) {
    const int iy0 = oy * sh - pt;
    /* groups of up to 64 output channels (4 vectors x PX pixels = 16 registers) */
    for (int o0 = 0; o0 < OC; o0 += 64) {
        const int nb = (OC - o0 >= 64 ? 64 : OC - o0) / 16;
        const float *b = bias ? bias + o0 : NULL;
        for (int ox = 0; ox < OW; ox += PX) {
            const int npx = OW - ox < PX ? OW - ox : PX;
            /* constant nb: the compiler keeps acc in registers */
#define BLOCK(NB)                                                                              \
    smallc_block(xb, H, W, C, iy0, ox, npx, OC, kh, kw, sw, dh, dw, pl, wt + o0, b, y + o0, NB)
            switch (nb) {
            case 1: BLOCK(1); break;
            case 2: BLOCK(2); break;
            case 3: BLOCK(3); break;
            default: BLOCK(4); break;
#undef BLOCK
            }
        }
    }
}

/* ng groups of 16 output channels at once (the taps of a pixel are read
 * once for all of them) */
TGT __attribute__((always_inline)) static inline void dw_block(const tr_dw_geom *g, int64_t p0,
                                                               int64_t len, int o0, float *out,
                                                               const int ng) {
    const int C = g->C, K = g->kh * g->kw * C;
    const int64_t hw = (int64_t)g->OH * g->OW;
    int toff[TR_SIMD_DW_MAXK]; /* tap offsets from the window's top-left input */
    for (int ky = 0, t = 0; ky < g->kh; ky++)
        for (int kx = 0; kx < g->kw; kx++)
            for (int ic = 0; ic < C; ic++, t++) toff[t] = (ky * g->dh * g->W + kx * g->dw) * C + ic;
    __m512 acc[TR_SIMD_DW_MAXK][2];
    for (int t = 0; t < K; t++)
        for (int q = 0; q < ng; q++) acc[t][q] = _mm512_setzero_ps();
    int64_t bi = p0 / hw;
    int oy = (int)(p0 % hw / g->OW), ox = (int)(p0 % hw % g->OW);
    const float *d = g->dz + (p0 - g->dz_p0) * g->OC + o0;
    float col[TR_SIMD_DW_MAXK];
    for (int64_t i = 0; i < len; i++, d += g->OC) {
        const float *xb = g->x + bi * g->H * g->W * C;
        const int iy0 = oy * g->sh - g->pt, ix0 = ox * g->sw - g->pl;
        const float *src;
        const int *off;
        static const int iota[TR_SIMD_DW_MAXK] = {0,  1,  2,  3,  4,  5,  6,  7,  8,
                                                  9,  10, 11, 12, 13, 14, 15, 16, 17,
                                                  18, 19, 20, 21, 22, 23, 24, 25, 26};
        if (iy0 >= 0 && iy0 + (g->kh - 1) * g->dh < g->H && ix0 >= 0 &&
            ix0 + (g->kw - 1) * g->dw < g->W) {
            /* interior: every tap in the image */
            src = xb + ((int64_t)iy0 * g->W + ix0) * C;
            off = toff;
        } else {
            /* border: the im2col row with zeros for padding taps */
            for (int ky = 0, t = 0; ky < g->kh; ky++) {
                const int iy = iy0 + ky * g->dh;
                for (int kx = 0; kx < g->kw; kx++) {
                    const int ix = ix0 + kx * g->dw;
                    const bool in = iy >= 0 && iy < g->H && ix >= 0 && ix < g->W;
                    const int64_t o = ((int64_t)iy * g->W + ix) * C;
                    for (int ic = 0; ic < C; ic++, t++) col[t] = in ? xb[o + ic] : 0.0f;
                }
            }
            src = col;
            off = iota;
        }
        __m512 dv[2];
        for (int q = 0; q < ng; q++) dv[q] = _mm512_loadu_ps(d + 16 * q);
        for (int t = 0; t < K; t++) {
            const __m512 xv = _mm512_set1_ps(src[off[t]]);
            for (int q = 0; q < ng; q++) acc[t][q] = _mm512_fmadd_ps(xv, dv[q], acc[t][q]);
        }
        if (++ox == g->OW) {
            ox = 0;
            if (++oy == g->OH) {
                oy = 0;
                bi++;
            }
        }
    }
    for (int t = 0; t < K; t++)
        for (int q = 0; q < ng; q++)
            _mm512_storeu_ps(out + (int64_t)t * g->OC + o0 + 16 * q, acc[t][q]);
}

TGT void tr_avx512_conv_dw_block(const tr_dw_geom *g, int64_t p0, int64_t len, float *out) {
    const int K = g->kh * g->kw * g->C;
    int o0 = 0;
    if (K <= 14)
        for (; o0 + 32 <= g->OC; o0 += 32) dw_block(g, p0, len, o0, out, 2);
    for (; o0 < g->OC; o0 += 16) dw_block(g, p0, len, o0, out, 1);
}

TGT void tr_avx512_adam(float *w, const float *g, float *m, float *v, int64_t n, float gscale,
                        float dec, bool decoupled, float lr, float b1, float b2, float c1, float c2,
                        float eps) {
    const __m512 vgs = _mm512_set1_ps(gscale), vdec = _mm512_set1_ps(dec);
    const __m512 vb1 = _mm512_set1_ps(b1), vb1m = _mm512_set1_ps(1.0f - b1);
    const __m512 vb2 = _mm512_set1_ps(b2), vb2m = _mm512_set1_ps(1.0f - b2);
    const __m512 vc1 = _mm512_set1_ps(c1), vc2 = _mm512_set1_ps(c2), veps = _mm512_set1_ps(eps);
    const __m512 vlr = _mm512_set1_ps(lr), vlrdec = _mm512_set1_ps(lr * dec);
    for (int64_t k = 0; k < n; k += 16) {
        const __mmask16 mk = n - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - k)) - 1u);
        const __m512 wk0 = _mm512_maskz_loadu_ps(mk, w + k);
        __m512 gk = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, g + k), vgs);
        if (!decoupled) gk = _mm512_add_ps(gk, _mm512_mul_ps(vdec, wk0));
        const __m512 mm = _mm512_add_ps(_mm512_mul_ps(vb1, _mm512_maskz_loadu_ps(mk, m + k)),
                                        _mm512_mul_ps(vb1m, gk));
        const __m512 vv = _mm512_add_ps(_mm512_mul_ps(vb2, _mm512_maskz_loadu_ps(mk, v + k)),
                                        _mm512_mul_ps(_mm512_mul_ps(vb2m, gk), gk));
        _mm512_mask_storeu_ps(m + k, mk, mm);
        _mm512_mask_storeu_ps(v + k, mk, vv);
        const __m512 den = _mm512_add_ps(_mm512_sqrt_ps(_mm512_mul_ps(vv, vc2)), veps);
        const __m512 upd = _mm512_div_ps(_mm512_mul_ps(mm, vc1), den);
        __m512 wk = wk0;
        if (decoupled) wk = _mm512_sub_ps(wk, _mm512_mul_ps(vlrdec, wk));
        _mm512_mask_storeu_ps(w + k, mk, _mm512_sub_ps(wk, _mm512_mul_ps(vlr, upd)));
    }
}
#else
void tr_avx512_conv_row_smallc(const float *xb, int H, int W, int C, int oy, int OW, int OC,
                               int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pl,
                               const float *wt, const float *bias, float *y) {
    (void)xb; (void)H; (void)W; (void)C; (void)oy; (void)OW; (void)OC; (void)kh; (void)kw;
    (void)sh; (void)sw; (void)dh; (void)dw; (void)pt; (void)pl; (void)wt; (void)bias; (void)y;
}
void tr_avx512_conv_dw_block(const tr_dw_geom *g, int64_t p0, int64_t len, float *out) {
    (void)g; (void)p0; (void)len; (void)out;
}
void tr_avx512_adam(float *w, const float *g, float *m, float *v, int64_t n, float gscale,
                    float dec, bool decoupled, float lr, float b1, float b2, float c1, float c2,
                    float eps) {
    (void)w; (void)g; (void)m; (void)v; (void)n; (void)gscale; (void)dec; (void)decoupled;
    (void)lr; (void)b1; (void)b2; (void)c1; (void)c2; (void)eps;
}
#endif
