/* vec.c - vectorised leaf loops of the training engine (batch norm,
 * pooling, element-wise updates).
 *
 * The library is built for generic x86-64 at -O2, where GCC does not
 * vectorise loops with run-time trip counts. These loops carry an OpenMP
 * `simd` directive (vectorise regardless of the cost model) and, on x86-64
 * ELF targets, GCC/Clang function multi-versioning: an AVX-512 and an AVX2
 * clone are picked at load time from the CPU (ifunc), the generic clone
 * otherwise. Every loop is element-wise (no reassociated reductions) and the
 * build does not contract a*b+c into FMA (ISO C mode: -ffp-contract=off),
 * so all clones give bit-identical results.
 */
#include "train/vec.h"

#include "train/ops_simd.h"

#include <math.h>

#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

#ifdef MOPT_HAVE_OPENMP
#define SIMD _Pragma("omp simd")
#else
#define SIMD
#endif

CLONES void tr_vec_bn_fwd(const float *x, float *y, const float *k, const float *o, int64_t rows,
                          int C, int act) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        if (act == 1) {
            SIMD for (int j = 0; j < C; j++) {
                float v = xr[j] * k[j] + o[j];
                yr[j] = v > 0.0f ? v : 0.0f;
            }
        } else if (act == 3) {
            SIMD for (int j = 0; j < C; j++) {
                float v = xr[j] * k[j] + o[j];
                v = v > 0.0f ? v : 0.0f;
                yr[j] = v < 6.0f ? v : 6.0f;
            }
        } else {
            SIMD for (int j = 0; j < C; j++) yr[j] = xr[j] * k[j] + o[j];
        }
    }
}

CLONES void tr_vec_moments(const float *x, const float *shift, int64_t rows, int C, float *p,
                           float *q) {
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * C;
        SIMD for (int j = 0; j < C; j++) {
            const float d = row[j] - shift[j];
            p[j] += d;
            q[j] += d * d;
        }
    }
}

CLONES void tr_vec_bn_bwd_reduce(const float *x, const float *y, float *dy, const float *mean,
                                 const float *invstd, int64_t rows, int C, int act, float *p1,
                                 float *p2) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C, *yr = y + r * C;
        float *dr = dy + r * C;
        if (act == 1) {
            SIMD for (int j = 0; j < C; j++) dr[j] = yr[j] > 0.0f ? dr[j] : 0.0f;
        } else if (act == 3) {
            SIMD for (int j = 0; j < C; j++) dr[j] = (yr[j] > 0.0f && yr[j] < 6.0f) ? dr[j] : 0.0f;
        }
        SIMD for (int j = 0; j < C; j++) {
            const float xh = (xr[j] - mean[j]) * invstd[j];
            p1[j] += dr[j];
            p2[j] += dr[j] * xh;
        }
    }
}

CLONES void tr_vec_bn_bwd_dx(const float *x, const float *dy, const float *mean,
                             const float *invstd, const float *k, const float *m1,
                             const float *m2, float *dx, int64_t rows, int C, bool overwrite) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C, *dr = dy + r * C;
        float *o = dx + r * C;
        if (overwrite) {
            SIMD for (int j = 0; j < C; j++) {
                const float xh = (xr[j] - mean[j]) * invstd[j];
                o[j] = k[j] * (dr[j] - m1[j] - xh * m2[j]);
            }
        } else {
            SIMD for (int j = 0; j < C; j++) {
                const float xh = (xr[j] - mean[j]) * invstd[j];
                o[j] += k[j] * (dr[j] - m1[j] - xh * m2[j]);
            }
        }
    }
}

CLONES void tr_vec_add(float *dst, const float *src, int64_t n) {
    SIMD for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

CLONES void tr_vec_colsum(const float *m, int64_t rows, int64_t cols, float *acc) {
    for (int64_t r = 0; r < rows; r++) {
        const float *row = m + r * cols;
        SIMD for (int64_t j = 0; j < cols; j++) acc[j] += row[j];
    }
}

/* Max pooling of one output row: for each output pixel, the max over the
 * (clipped) window, channels vectorised; arg gets the flat input index
 * (iy*W + ix)*C + c of the first maximum. */
CLONES void tr_vec_maxpool_row(const float *xb, int H, int W, int C, int ys, int ye, int OW,
                               int sw, int kw, int pl, float *y, int32_t *arg) {
    (void)H;
    for (int ox = 0; ox < OW; ox++) {
        const int x0 = ox * sw - pl;
        const int xs = x0 < 0 ? 0 : x0, xe = x0 + kw > W ? W : x0 + kw;
        float *yo = y + (int64_t)ox * C;
        int32_t *ao = arg + (int64_t)ox * C;
        if (ys >= ye || xs >= xe) {
            SIMD for (int c = 0; c < C; c++) {
                yo[c] = -INFINITY;
                ao[c] = -1;
            }
            continue;
        }
        /* the first window element initialises; later ones win only when
         * strictly greater (first maximum; a NaN only as the first) */
        {
            const int32_t base = (int32_t)(((int64_t)ys * W + xs) * C);
            const float *xp = xb + base;
            SIMD for (int c = 0; c < C; c++) {
                yo[c] = xp[c];
                ao[c] = base + c;
            }
        }
        for (int iy = ys; iy < ye; iy++)
            for (int ix = (iy == ys ? xs + 1 : xs); ix < xe; ix++) {
                const int32_t base = (int32_t)(((int64_t)iy * W + ix) * C);
                const float *xp = xb + base;
                SIMD for (int c = 0; c < C; c++) {
                    const bool take = xp[c] > yo[c];
                    yo[c] = take ? xp[c] : yo[c];
                    ao[c] = take ? base + c : ao[c];
                }
            }
    }
}

/* GCC keeps sqrtf scalar here (errno handling is control flow in the loop),
 * so the AVX-512 path is written by hand (ops_simd_avx512.c, the same
 * operations); this portable loop is the reference and the fallback. */
CLONES void tr_vec_adam_portable(float *w, const float *g, float *m, float *v, int64_t n,
                                  float gscale, float dec, bool decoupled, float lr, float b1,
                                  float b2, float c1, float c2, float eps) {
    SIMD for (int64_t k = 0; k < n; k++) {
        float gk = g[k] * gscale;
        if (!decoupled) gk += dec * w[k];
        m[k] = b1 * m[k] + (1.0f - b1) * gk;
        v[k] = b2 * v[k] + (1.0f - b2) * gk * gk;
        const float upd = (m[k] * c1) / (sqrtf(v[k] * c2) + eps);
        float wk = w[k];
        if (decoupled) wk -= lr * dec * wk;
        w[k] = wk - lr * upd;
    }
}

void tr_vec_adam(float *w, const float *g, float *m, float *v, int64_t n, float gscale, float dec,
                 bool decoupled, float lr, float b1, float b2, float c1, float c2, float eps) {
    if (tr_simd_avx512())
        tr_avx512_adam(w, g, m, v, n, gscale, dec, decoupled, lr, b1, b2, c1, c2, eps);
    else
        tr_vec_adam_portable(w, g, m, v, n, gscale, dec, decoupled, lr, b1, b2, c1, c2, eps);
}

CLONES void tr_vec_sgd(float *w, const float *g, float *m, int64_t n, float gscale, float dec,
                       float mu, bool nesterov, float lr) {
    SIMD for (int64_t k = 0; k < n; k++) {
        const float gk = g[k] * gscale + dec * w[k];
        m[k] = mu * m[k] + gk;
        w[k] -= lr * (nesterov ? gk + mu * m[k] : m[k]);
    }
}

CLONES void tr_vec_dropout(const float *x, float *y, int64_t i0, int64_t n, uint32_t key,
                           uint32_t thresh, float scale) {
    SIMD for (int64_t i = 0; i < n; i++)
        y[i] = tr_drop_bits(key, (uint32_t)(i0 + i)) >= thresh ? x[i] * scale : 0.0f;
}

CLONES void tr_vec_dropout_bwd(const float *dy, float *dx, int64_t i0, int64_t n, uint32_t key,
                               uint32_t thresh, float scale, bool overwrite) {
    if (overwrite) {
        SIMD for (int64_t i = 0; i < n; i++)
            dx[i] = tr_drop_bits(key, (uint32_t)(i0 + i)) >= thresh ? dy[i] * scale : 0.0f;
    } else {
        SIMD for (int64_t i = 0; i < n; i++)
            dx[i] += tr_drop_bits(key, (uint32_t)(i0 + i)) >= thresh ? dy[i] * scale : 0.0f;
    }
}

/* Max-pool backward for one output pixel of a non-overlapping window:
 * every in-window input position gets dy where it was the argmax. */
CLONES void tr_vec_maxpool_bwd_px(float *dxb, const float *dy, const int32_t *arg, int W, int C,
                                  int ys, int ye, int xs, int xe) {
    for (int iy = ys; iy < ye; iy++)
        for (int ix = xs; ix < xe; ix++) {
            const int32_t base = (int32_t)(((int64_t)iy * W + ix) * C);
            float *d = dxb + base;
            SIMD for (int c = 0; c < C; c++) d[c] += arg[c] == base + c ? dy[c] : 0.0f;
        }
}

/* Sum of squares with 16 fixed lanes (lane l takes elements l, l+16, ...),
 * lanes added in order: the same arithmetic for every vector width. */
CLONES double tr_vec_sumsq(const float *g, int64_t n) {
    float lane[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        SIMD for (int l = 0; l < 16; l++) lane[l] += g[i + l] * g[i + l];
    }
    double s = 0.0;
    for (int l = 0; l < 16; l++) s += lane[l];
    for (; i < n; i++) s += (double)g[i] * g[i];
    return s;
}

/* acc[c] += x[c] * w[c] (depthwise tap, multiplier 1) */
CLONES void tr_vec_fma_acc(float *acc, const float *x, const float *w, int64_t n) {
    SIMD for (int64_t i = 0; i < n; i++) acc[i] += x[i] * w[i];
}

/* Direct convolution of one output row for inputs with few channels (the
 * first layer): y[ox][oc] = b[oc] + sum over in-bounds taps and channels of
 * x * wt[(tap*C + ic)*OC + oc], channels of the output vectorised. Taps
 * outside the image contribute nothing (zero padding). */
CLONES void tr_vec_conv_row_smallc(const float *xb, int H, int W, int C, int oy, int OW, int OC,
                                   int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pl,
                                   const float *wt, const float *bias, float *y) {
    for (int ox = 0; ox < OW; ox++) {
        float *acc = y + (int64_t)ox * OC;
        if (bias) {
            SIMD for (int o = 0; o < OC; o++) acc[o] = bias[o];
        } else {
            SIMD for (int o = 0; o < OC; o++) acc[o] = 0.0f;
        }
        for (int ky = 0; ky < kh; ky++) {
            const int iy = oy * sh - pt + ky * dh;
            if (iy < 0 || iy >= H) continue;
            for (int kx = 0; kx < kw; kx++) {
                const int ix = ox * sw - pl + kx * dw;
                if (ix < 0 || ix >= W) continue;
                const float *xp = xb + ((int64_t)iy * W + ix) * C;
                const float *wp = wt + (int64_t)((ky * kw + kx) * C) * OC;
                for (int ic = 0; ic < C; ic++) {
                    const float xv = xp[ic];
                    const float *w = wp + (int64_t)ic * OC;
                    SIMD for (int o = 0; o < OC; o++) acc[o] += xv * w[o];
                }
            }
        }
    }
}

static inline float bn_act(float v, int act) {
    if (act == 1) return v > 0.0f ? v : 0.0f;
    if (act == 3) {
        v = v > 0.0f ? v : 0.0f;
        return v < 6.0f ? v : 6.0f;
    }
    return v;
}

CLONES void tr_vec_bn_maxpool_row(const float *xb, int W, int C, int ys, int ye, int OW, int sw,
                                  int kw, int pl, const float *k, const float *o, int act,
                                  float *y, int32_t *arg) {
    for (int ox = 0; ox < OW; ox++) {
        const int x0 = ox * sw - pl;
        const int xs = x0 < 0 ? 0 : x0, xe = x0 + kw > W ? W : x0 + kw;
        float *yo = y + (int64_t)ox * C;
        int32_t *ao = arg + (int64_t)ox * C;
        if (ys >= ye || xs >= xe) {
            SIMD for (int c = 0; c < C; c++) {
                yo[c] = -INFINITY;
                ao[c] = -1;
            }
            continue;
        }
        {
            const int32_t base = (int32_t)(((int64_t)ys * W + xs) * C);
            const float *xp = xb + base;
            SIMD for (int c = 0; c < C; c++) {
                yo[c] = bn_act(xp[c] * k[c] + o[c], act);
                ao[c] = base + c;
            }
        }
        for (int iy = ys; iy < ye; iy++)
            for (int ix = (iy == ys ? xs + 1 : xs); ix < xe; ix++) {
                const int32_t base = (int32_t)(((int64_t)iy * W + ix) * C);
                const float *xp = xb + base;
                SIMD for (int c = 0; c < C; c++) {
                    const float v = bn_act(xp[c] * k[c] + o[c], act);
                    const bool take = v > yo[c];
                    yo[c] = take ? v : yo[c];
                    ao[c] = take ? base + c : ao[c];
                }
            }
    }
}

/* dy of channel c of one pixel: routed from the pooling (0 + dy where this
 * pixel was the argmax, as the zeroed scatter of the unfused backward
 * gives) and masked by the activation's derivative recomputed from
 * v = x * k + o (ReLU6: min(max(v, 0), 6) is inside (0, 6) iff v is). */
static inline float bnpool_r(bool take, float dq, float v, int act) {
    const float r = 0.0f + (take ? dq : 0.0f);
    if (act == 1) return v > 0.0f ? r : 0.0f;
    if (act == 3) return (v > 0.0f && v < 6.0f) ? r : 0.0f;
    return r;
}

/* Walks the pooling column of consecutive pixels without a division per
 * pixel: window ox, offset wx in its stride; the pixel is in the window when
 * ox < OW and wx < kw. */
typedef struct bnpool_pos {
    int ox, wx;
} bnpool_pos;
static inline bnpool_pos bnpool_start(const tr_bnpool *g, int ix) {
    bnpool_pos p;
    p.ox = (ix + g->pl) / g->sw;
    p.wx = ix + g->pl - p.ox * g->sw;
    return p;
}
static inline int bnpool_next(const tr_bnpool *g, bnpool_pos *p) {
    const int ox = (p->ox < g->OW && p->wx < g->kw) ? p->ox : -1;
    if (++p->wx == g->sw) {
        p->wx = 0;
        p->ox++;
    }
    return ox;
}

CLONES void tr_vec_bnpool_reduce(const tr_bnpool *g, const float *x, int ix0, int n,
                                 const float *dp, const int32_t *arg, int32_t rowbase, float *p1,
                                 float *p2) {
    const int C = g->C, act = g->act;
    const float *mean = g->mean, *invstd = g->invstd, *k = g->k, *o = g->o;
    bnpool_pos pos = bnpool_start(g, ix0);
    for (int i = 0; i < n; i++) {
        const float *xr = x + (int64_t)i * C;
        const int ox = bnpool_next(g, &pos);
        if (!dp) continue;
        /* dy == +0: adding it and +0 * xhat changes no sum (p1 and p2 are never
         * -0; only a non-finite xhat would, and then the loss is NaN anyway) */
        if (ox < 0) continue;
        const float *dq = dp + (int64_t)ox * C;
        const int32_t *aq = arg + (int64_t)ox * C;
        const int32_t base = rowbase + (ix0 + i) * C;
        SIMD for (int j = 0; j < C; j++) {
            const float d = bnpool_r(aq[j] == base + j, dq[j], xr[j] * k[j] + o[j], act);
            const float xh = (xr[j] - mean[j]) * invstd[j];
            p1[j] += d;
            p2[j] += d * xh;
        }
    }
}

CLONES void tr_vec_bnpool_dx(const tr_bnpool *g, const float *x, int ix0, int n, const float *dp,
                             const int32_t *arg, int32_t rowbase, float *dx, bool overwrite) {
    const int C = g->C, act = g->act;
    const float *mean = g->mean, *invstd = g->invstd, *k = g->k, *o = g->o;
    const float *kd = g->kd, *m1 = g->m1, *m2 = g->m2;
    bnpool_pos pos = bnpool_start(g, ix0);
    for (int i = 0; i < n; i++) {
        const float *xr = x + (int64_t)i * C;
        float *out = dx + (int64_t)i * C;
        const int o_ = bnpool_next(g, &pos);
        const int ox = dp ? o_ : -1;
        if (ox < 0) {
            /* dy == 0 */
            if (overwrite) {
                SIMD for (int j = 0; j < C; j++) {
                    const float xh = (xr[j] - mean[j]) * invstd[j];
                    out[j] = kd[j] * (0.0f - m1[j] - xh * m2[j]);
                }
            } else {
                SIMD for (int j = 0; j < C; j++) {
                    const float xh = (xr[j] - mean[j]) * invstd[j];
                    out[j] += kd[j] * (0.0f - m1[j] - xh * m2[j]);
                }
            }
            continue;
        }
        const float *dq = dp + (int64_t)ox * C;
        const int32_t *aq = arg + (int64_t)ox * C;
        const int32_t base = rowbase + (ix0 + i) * C;
        if (overwrite) {
            SIMD for (int j = 0; j < C; j++) {
                const float d = bnpool_r(aq[j] == base + j, dq[j], xr[j] * k[j] + o[j], act);
                const float xh = (xr[j] - mean[j]) * invstd[j];
                out[j] = kd[j] * (d - m1[j] - xh * m2[j]);
            }
        } else {
            SIMD for (int j = 0; j < C; j++) {
                const float d = bnpool_r(aq[j] == base + j, dq[j], xr[j] * k[j] + o[j], act);
                const float xh = (xr[j] - mean[j]) * invstd[j];
                out[j] += kd[j] * (d - m1[j] - xh * m2[j]);
            }
        }
    }
}
