/* vec.h - vectorised leaf loops (vec.c). Row-major [rows][C] blocks; the
 * callers split rows over threads. act: 0 none, 1 ReLU, 3 ReLU6 (the
 * mopt_activation codes). Accumulating outputs are added to (+=). */
#ifndef MOPT_TRAIN_VEC_H
#define MOPT_TRAIN_VEC_H

#include <stdbool.h>
#include <stdint.h>

/* y = act(x * k + o) per channel */
void tr_vec_bn_fwd(const float *x, float *y, const float *k, const float *o, int64_t rows, int C,
                   int act);
/* p += sum (x - shift), q += sum (x - shift)^2 per channel */
void tr_vec_moments(const float *x, const float *shift, int64_t rows, int C, float *p, float *q);
/* dy *= act'(y) in place; p1 += sum dy, p2 += sum dy * (x - mean) * invstd */
void tr_vec_bn_bwd_reduce(const float *x, const float *y, float *dy, const float *mean,
                          const float *invstd, int64_t rows, int C, int act, float *p1, float *p2);
/* dx (+)= k * (dy - m1 - (x - mean) * invstd * m2); overwrite: = instead of += */
void tr_vec_bn_bwd_dx(const float *x, const float *dy, const float *mean, const float *invstd,
                      const float *k, const float *m1, const float *m2, float *dx, int64_t rows,
                      int C, bool overwrite);
void tr_vec_add(float *dst, const float *src, int64_t n);
/* acc[j] += sum over rows of m[r][j] */
void tr_vec_colsum(const float *m, int64_t rows, int64_t cols, float *acc);
/* One output row of max pooling over input rows [ys, ye) of image xb. */
void tr_vec_maxpool_row(const float *xb, int H, int W, int C, int ys, int ye, int OW, int sw,
                        int kw, int pl, float *y, int32_t *arg);

/* Fused batch norm (+ReLU/ReLU6) -> max pooling, forward: one output row
 * of the pooling of act(x * k + o), computed on the fly (the normalised
 * values are never stored); the same values and first-maximum rule as
 * tr_vec_bn_fwd followed by tr_vec_maxpool_row. */
void tr_vec_bn_maxpool_row(const float *xb, int W, int C, int ys, int ye, int OW, int sw, int kw,
                           int pl, const float *k, const float *o, int act, float *y,
                           int32_t *arg);

/* Fused backward of batch norm (+ReLU/ReLU6) -> max pooling with disjoint
 * windows, over a run of n pixels (ix0 ...) of one input row of an image.
 * dy of a pixel is rebuilt from the pooling's dy and argmax (dp, arg: the
 * pooling output row whose windows cover this input row, NULL when none
 * does; rowbase: the row's flat index iy*W*C), then masked by the
 * activation recomputed from x * k + o. As tr_vec_bn_bwd_reduce and
 * tr_vec_bn_bwd_dx on the materialised dy, bit for bit. */
typedef struct tr_bnpool {
    int C, OW, kw, sw, pl, act;
    const float *mean, *invstd, *k, *o; /* forward: the activation mask */
    const float *kd, *m1, *m2;          /* dx = kd * (dy - m1 - xhat * m2) */
} tr_bnpool;
void tr_vec_bnpool_reduce(const tr_bnpool *g, const float *x, int ix0, int n, const float *dp,
                          const int32_t *arg, int32_t rowbase, float *p1, float *p2);
void tr_vec_bnpool_dx(const tr_bnpool *g, const float *x, int ix0, int n, const float *dp,
                      const int32_t *arg, int32_t rowbase, float *dx, bool overwrite);

/* acc[i] += x[i] * w[i] (separate multiply and add, as everywhere) */
void tr_vec_fma_acc(float *acc, const float *x, const float *w, int64_t n);

/* One output row of a direct convolution for few input channels; wt is the
 * weight transposed to [KH*KW*C][OC]; bias may be NULL. */
void tr_vec_conv_row_smallc(const float *xb, int H, int W, int C, int oy, int OW, int OC, int kh,
                            int kw, int sh, int sw, int dh, int dw, int pt, int pl,
                            const float *wt, const float *bias, float *y);

/* Max-pool backward of one output pixel whose window overlaps no other. */
void tr_vec_maxpool_bwd_px(float *dxb, const float *dy, const int32_t *arg, int W, int C, int ys,
                           int ye, int xs, int xe);

/* Dropout mask: element i is kept when tr_drop_bits(key, i) >= thresh
 * (24-bit threshold). A 32-bit integer hash (Wellons' lowbias32 finaliser
 * of i*golden + key) that vectorises; forward and backward share it. */
static inline uint32_t tr_drop_bits(uint32_t key, uint32_t i) {
    uint32_t x = i * 0x9E3779B1u + key;
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    x ^= x >> 16;
    return x >> 8;
}
/* y = keep ? x * scale : 0 over elements [i0, i0 + n) */
void tr_vec_dropout(const float *x, float *y, int64_t i0, int64_t n, uint32_t key, uint32_t thresh,
                    float scale);
/* dx = or += keep ? dy * scale : 0 */
void tr_vec_dropout_bwd(const float *dy, float *dx, int64_t i0, int64_t n, uint32_t key,
                        uint32_t thresh, float scale, bool overwrite);

/* sum of g^2 (16 fixed float lanes per call, combined in double) */
double tr_vec_sumsq(const float *g, int64_t n);

/* One optimizer update of n elements (rules in optim.c). */
void tr_vec_adam(float *w, const float *g, float *m, float *v, int64_t n, float gscale, float dec,
                 bool decoupled, float lr, float b1, float b2, float c1, float c2, float eps);
/* The portable Adam loop (the reference the AVX-512 path must match). */
void tr_vec_adam_portable(float *w, const float *g, float *m, float *v, int64_t n, float gscale,
                          float dec, bool decoupled, float lr, float b1, float b2, float c1,
                          float c2, float eps);
void tr_vec_sgd(float *w, const float *g, float *m, int64_t n, float gscale, float dec, float mu,
                bool nesterov, float lr);

#endif
