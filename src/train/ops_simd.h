/* ops_simd.h - hand-vectorised variants of a few training loops whose
 * compiler-vectorised forms (vec.c) are slow (ops_simd_avx512.c). Each
 * performs exactly the arithmetic of its portable counterpart, in the same
 * order, so results do not depend on which one runs. tr_simd_avx512() says
 * whether the CPU can run them (checked at run time; the library is built
 * for generic x86-64). */
#ifndef MOPT_TRAIN_OPS_SIMD_H
#define MOPT_TRAIN_OPS_SIMD_H

#include <stdbool.h>
#include <stdint.h>

bool tr_simd_avx512(void);

/* As tr_vec_conv_row_smallc (vec.h); needs OC % 16 == 0. */
void tr_avx512_conv_row_smallc(const float *xb, int H, int W, int C, int oy, int OW, int OC,
                               int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pl,
                               const float *wt, const float *bias, float *y);

/* Weight gradient of a convolution with few input channels (K = kh*kw*C <=
 * TR_SIMD_DW_MAXK, OC % 16 == 0), one K block of the GEMM formulation
 * dW^T[K][OC] = im2col(x)^T * dZ: out[t][oc] = the fmaf chain over the
 * block's len pixels from global pixel p0 (images in order, then rows,
 * then columns), starting from 0, exactly as the GEMM micro-kernels
 * compute one K block. */
#define TR_SIMD_DW_MAXK 27
typedef struct tr_dw_geom {
    const float *x, *dz; /* dz[0] is the row of pixel dz_p0 */
    int H, W, C, OH, OW, OC, kh, kw, sh, sw, dh, dw, pt, pl;
    int64_t dz_p0;
} tr_dw_geom;
void tr_avx512_conv_dw_block(const tr_dw_geom *g, int64_t p0, int64_t len, float *out);

/* As tr_vec_adam (vec.h). */
void tr_avx512_adam(float *w, const float *g, float *m, float *v, int64_t n, float gscale,
                    float dec, bool decoupled, float lr, float b1, float b2, float c1, float c2,
                    float eps);

#endif
