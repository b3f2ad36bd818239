/* ops_conv.c - CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: forward
 * (training or inference) and backward.
 *
 * CONV_2D as GEMM over im2col rows (one row per output pixel, columns in the
 * weight layout's (ky, kx, ic) order), W [OC, K] with K = KH*KW*IC:
 *   forward   Y[M,OC]  = Xcol[M,K] * W^T + b
 *   backward  dW[OC,K] += dZ^T * Xcol        (reduction over M inside the GEMM)
 *             dXcol    = dZ * W, then col2im (per image, serial: deterministic)
 *             db       += column sums of dZ  (fixed chunks, summed in order)
 * The batch is processed in chunks of images so im2col needs bounded scratch;
 * chunk boundaries depend only on the shapes, never on the thread count.
 */
#include <string.h>

#include "train/ops_internal.h"
#include "train/vec.h"

/* col2im scratch budget per chunk of images (floats). */
#define CONV_CHUNK_FLOATS ((int64_t)4 << 20)
/* Below this many input channels the per-tap blocks of the implicit GEMM are
 * too short: im2col explicitly (cheap for so few channels). */
#define CONV_MIN_IMPLICIT_C 8
/* Up to this many input channels (and K = KH*KW*C <= 64) the forward pass is
 * a direct loop (tr_vec_conv_row_smallc). */
#define CONV_DIRECT_MAX_C 4

typedef struct cgeom {
    int B, H, W, C, OH, OW, OC;
    int kh, kw, sh, sw, dh, dw, pt, pl;
    int64_t K;
} cgeom;

static cgeom conv_geom(const tr_ctx *c) {
    const mopt_tgraph *tg = c->tg;
    const tnode *n = c->n;
    const tval *x = &tg->vals[n->in[0]], *y = &tg->vals[n->out];
    cgeom g;
    g.B = c->batch;
    g.H = x->dims[1];
    g.W = x->dims[2];
    g.C = x->dims[3];
    g.OH = y->dims[1];
    g.OW = y->dims[2];
    g.OC = y->dims[3];
    g.kh = n->p.conv.kh;
    g.kw = n->p.conv.kw;
    g.sh = n->p.conv.sh;
    g.sw = n->p.conv.sw;
    g.dh = n->p.conv.dh;
    g.dw = n->p.conv.dw;
    g.pt = n->p.conv.pad_top;
    g.pl = n->p.conv.pad_left;
    g.K = (int64_t)g.kh * g.kw * g.C;
    return g;
}

static tr_conv_geom to_tr(const cgeom *g) {
    tr_conv_geom t = {g->B,  g->H,  g->W,  g->C,  g->OH, g->OW, g->OC,
                      g->kh, g->kw, g->sh, g->sw, g->dh, g->dw, g->pt, g->pl};
    return t;
}

static bool is_pointwise(const cgeom *g) {
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->pt == 0 && g->pl == 0;
}

typedef struct col_job {
    const cgeom *g;
    const float *x;
    float *col, *dx;
    const float *ccol;
    int b0;
} col_job;

/* im2col rows of output row r (image b0 + r / OH, row r % OH) */
static void im2col_range(void *p, int64_t r0, int64_t r1) {
    const col_job *j = p;
    const cgeom *g = j->g;
    const size_t cbytes = (size_t)g->C * sizeof(float);
    for (int64_t r = r0; r < r1; r++) {
        const int b = j->b0 + (int)(r / g->OH), oy = (int)(r % g->OH);
        const float *xb = j->x + (int64_t)b * g->H * g->W * g->C;
        float *dst = j->col + r * g->OW * g->K;
        if (g->C == 1) {
            /* single channel (the first layer): plain loads, no memcpy calls */
            for (int ox = 0; ox < g->OW; ox++)
                for (int ky = 0; ky < g->kh; ky++) {
                    const int iy = oy * g->sh - g->pt + ky * g->dh;
                    const bool row_ok = iy >= 0 && iy < g->H;
                    for (int kx = 0; kx < g->kw; kx++) {
                        const int ix = ox * g->sw - g->pl + kx * g->dw;
                        *dst++ = (row_ok && ix >= 0 && ix < g->W) ? xb[(int64_t)iy * g->W + ix] : 0.0f;
                    }
                }
            continue;
        }
        for (int ox = 0; ox < g->OW; ox++)
            for (int ky = 0; ky < g->kh; ky++) {
                const int iy = oy * g->sh - g->pt + ky * g->dh;
                for (int kx = 0; kx < g->kw; kx++) {
                    const int ix = ox * g->sw - g->pl + kx * g->dw;
                    if (iy >= 0 && iy < g->H && ix >= 0 && ix < g->W)
                        memcpy(dst, xb + ((int64_t)iy * g->W + ix) * g->C, cbytes);
                    else
                        memset(dst, 0, cbytes);
                    dst += g->C;
                }
            }
    }
}

/* Rows of images [b0, b0+nb) into col [nb*OH*OW][K]. */
static void im2col(const cgeom *g, const float *x, int b0, int nb, float *col, tr_pool *pool) {
    col_job j = {g, x, col, NULL, NULL, b0};
    tr_pool_run(pool, (int64_t)nb * g->OH, 1, im2col_range, &j);
}

/* dx of images b0+bi += col2im: one image per item (images never overlap,
 * inside an image the order is fixed). */
static void col2im_range(void *p, int64_t i0, int64_t i1) {
    const col_job *j = p;
    const cgeom *g = j->g;
    for (int64_t bi = i0; bi < i1; bi++) {
        float *xb = j->dx + (int64_t)(j->b0 + bi) * g->H * g->W * g->C;
        const float *src = j->ccol + bi * g->OH * g->OW * g->K;
        for (int oy = 0; oy < g->OH; oy++)
            for (int ox = 0; ox < g->OW; ox++)
                for (int ky = 0; ky < g->kh; ky++) {
                    const int iy = oy * g->sh - g->pt + ky * g->dh;
                    for (int kx = 0; kx < g->kw; kx++, src += g->C) {
                        const int ix = ox * g->sw - g->pl + kx * g->dw;
                        if (iy < 0 || iy >= g->H || ix < 0 || ix >= g->W) continue;
                        tr_vec_add(xb + ((int64_t)iy * g->W + ix) * g->C, src, g->C);
                    }
                }
    }
}

static void col2im_add(const cgeom *g, const float *col, int b0, int nb, float *dx,
                       tr_pool *pool) {
    col_job j = {g, NULL, NULL, dx, col, b0};
    tr_pool_run(pool, nb, 1, col2im_range, &j);
}

static int chunk_images(const cgeom *g) {
    int64_t per = (int64_t)g->OH * g->OW * g->K;
    int64_t nb = per > 0 ? CONV_CHUNK_FLOATS / per : g->B;
    if (nb < 1) nb = 1;
    if (nb > g->B) nb = g->B;
    return (int)nb;
}

typedef struct rows_job {
    float *y;
    const float *m, *b, *t;
    float *part;
    int64_t rows, cols, nch;
} rows_job;

static void fill_bias_range(void *p, int64_t r0, int64_t r1) {
    const rows_job *j = p;
    for (int64_t r = r0; r < r1; r++) memcpy(j->y + r * j->cols, j->b, (size_t)j->cols * sizeof(float));
}

static void fill_bias(float *y, int64_t rows, int64_t cols, const float *b, tr_pool *pool) {
    rows_job j = {y, NULL, b, NULL, NULL, rows, cols, 0};
    tr_pool_run(pool, rows, 16, fill_bias_range, &j);
}

static void colsum_range(void *p, int64_t c0, int64_t c1) {
    const rows_job *j = p;
    for (int64_t ch = c0; ch < c1; ch++) {
        float *pp = j->part + ch * j->cols;
        for (int64_t k = 0; k < j->cols; k++) pp[k] = 0.0f;
        const int64_t r0 = j->rows * ch / j->nch, r1 = j->rows * (ch + 1) / j->nch;
        tr_vec_colsum(j->m + r0 * j->cols, r1 - r0, j->cols, pp);
    }
}

void tr_colsum_add(const float *m, int64_t rows, int64_t cols, float *out, tr_pool *pool) {
    if (rows <= 0 || cols <= 0) return;
    /* float sums within fixed row chunks (vectorised across columns), double
     * across chunks, in chunk order */
    const int64_t nch = rows < TR_RED_CHUNKS ? rows : TR_RED_CHUNKS;
    float *part = tr_alloc((size_t)(nch * cols) * sizeof(float));
    if (!part) {
        for (int64_t k = 0; k < cols; k++) {
            double tot = 0.0;
            for (int64_t ch = 0; ch < nch; ch++) {
                const int64_t r0 = rows * ch / nch, r1 = rows * (ch + 1) / nch;
                float s = 0.0f;
                for (int64_t r = r0; r < r1; r++) s += m[r * cols + k];
                tot += s;
            }
            out[k] += (float)tot;
        }
        return;
    }
    rows_job j = {NULL, m, NULL, NULL, part, rows, cols, nch};
    tr_pool_run(pool, nch, 1, colsum_range, &j);
    for (int64_t k = 0; k < cols; k++) {
        double tot = 0.0;
        for (int64_t ch = 0; ch < nch; ch++) tot += part[ch * cols + k];
        out[k] += (float)tot;
    }
    tr_free(part);
}

static const tr_ukernel *uk(void) { return tr_ukernel_best(); }

/* direct convolution for few input channels: one output row per item */
typedef struct smallc_job {
    const cgeom *g;
    const float *x, *wt, *b;
    float *y;
} smallc_job;

static void smallc_range(void *p, int64_t r0, int64_t r1) {
    const smallc_job *j = p;
    const cgeom *g = j->g;
    for (int64_t r = r0; r < r1; r++) {
        const int b = (int)(r / g->OH), oy = (int)(r % g->OH);
        tr_vec_conv_row_smallc(j->x + (int64_t)b * g->H * g->W * g->C, g->H, g->W, g->C, oy, g->OW,
                               g->OC, g->kh, g->kw, g->sh, g->sw, g->dh, g->dw, g->pt, g->pl, j->wt,
                               j->b, j->y + r * g->OW * g->OC);
    }
}

mopt_status tr_conv_forward(tr_ctx *c, mopt_error *err) {
    const cgeom g = conv_geom(c);
    if (g.C <= CONV_DIRECT_MAX_C && g.K <= 64) {
        /* Few input channels (the first layer): a direct loop over taps with
         * the output channels vectorised beats any GEMM formulation here. */
        float *wt = tr_scratch(c->tg, (size_t)(g.K * g.OC));
        if (!wt) return mopt_error_set(err, MOPT_ERR_NOMEM, "node '%s': out of memory",
                                       tn_name(c->n));
        for (int oc = 0; oc < g.OC; oc++)
            for (int64_t k = 0; k < g.K; k++) wt[k * g.OC + oc] = c->w[(int64_t)oc * g.K + k];
        smallc_job j = {&g, c->tg->vals[c->n->in[0]].data, wt, c->b, c->y};
        tr_pool_run(c->pool, (int64_t)g.B * g.OH, 1, smallc_range, &j);
        tr_act_forward(c->n->act, c->y, (int64_t)g.B * g.OH * g.OW * g.OC, c->pool);
        return MOPT_OK;
    }
    const tr_conv_geom tg = to_tr(&g);
    const float *x = c->tg->vals[c->n->in[0]].data;
    const int64_t M = (int64_t)g.B * g.OH * g.OW;
    if (c->b) fill_bias(c->y, M, g.OC, c->b, c->pool);
    /* B = W^T: B(k, oc) = W[oc*K + k] */
    tr_gemm_b B = {TR_B_STRIDED, c->w, 1, (ptrdiff_t)g.K, NULL};
    tr_gemm_a A;
    memset(&A, 0, sizeof(A));
    if (is_pointwise(&g)) {
        A.mode = TR_A_ROWS;
        A.a = x;
        A.lda = g.C;
        tr_gemm_ex(uk(), M, g.OC, g.K, &A, &B, c->y, g.OC, c->b != NULL, c->pool);
    } else if (g.C >= CONV_MIN_IMPLICIT_C || (int64_t)g.kh * g.kw <= 64) {
        /* indirect GEMM: all taps in one K block (few channels included) */
        A.mode = TR_A_CONV;
        A.a = x;
        A.conv = &tg;
        A.zero = tr_zeros(c->tg, (size_t)g.C);
        if (!A.zero) return mopt_error_set(err, MOPT_ERR_NOMEM, "node '%s': out of memory",
                                           tn_name(c->n));
        tr_gemm_ex(uk(), M, g.OC, g.K, &A, &B, c->y, g.OC, c->b != NULL, c->pool);
    } else {
        const int cb = chunk_images(&g);
        float *col = tr_scratch(c->tg, (size_t)((int64_t)cb * g.OH * g.OW * g.K));
        if (!col) return mopt_error_set(err, MOPT_ERR_NOMEM, "node '%s': out of memory (im2col)",
                                        tn_name(c->n));
        for (int b0 = 0; b0 < g.B; b0 += cb) {
            const int nb = g.B - b0 < cb ? g.B - b0 : cb;
            im2col(&g, x, b0, nb, col, c->pool);
            A.mode = TR_A_ROWS;
            A.a = col;
            A.lda = g.K;
            tr_gemm_ex(uk(), (int64_t)nb * g.OH * g.OW, g.OC, g.K, &A, &B,
                       c->y + (int64_t)b0 * g.OH * g.OW * g.OC, g.OC, c->b != NULL, c->pool);
        }
    }
    tr_act_forward(c->n->act, c->y, M * g.OC, c->pool);
    return MOPT_OK;
}

/* dX for stride 1 as a convolution of dZ with the flipped, transposed
 * kernel W'[ic][ky'][kx'][oc] = W[oc][kh-1-ky'][kw-1-kx'][ic]: input pixel iy
 * receives from oy = iy + pt - ky*dh, i.e. padding (kh-1)*dh - pt. */
static mopt_status conv_dx_stride1(tr_ctx *c, const cgeom *g, const float *dz, float *dx,
                                   mopt_error *err) {
    const int64_t taps = (int64_t)g->kh * g->kw;
    float *wt = tr_alloc((size_t)(g->K * g->OC) * sizeof(float));
    if (!wt) return mopt_error_set(err, MOPT_ERR_NOMEM, "node '%s': out of memory", tn_name(c->n));
    /* wt as B[k'][ic] with k' = (tap', oc): wt[(tap' * OC + oc) * C + ic] */
    for (int64_t t = 0; t < taps; t++) {
        const int64_t src_tap = taps - 1 - t;
        for (int oc = 0; oc < g->OC; oc++) {
            const float *s = c->w + ((int64_t)oc * taps + src_tap) * g->C;
            float *d = wt + (t * g->OC + oc) * g->C;
            memcpy(d, s, (size_t)g->C * sizeof(float));
        }
    }
    tr_conv_geom tg = {g->B,  g->OH, g->OW, g->OC, g->H,
                       g->W,  g->C,  g->kh, g->kw, 1,
                       1,     g->dh, g->dw, (g->kh - 1) * g->dh - g->pt, (g->kw - 1) * g->dw - g->pl};
    tr_gemm_a A;
    memset(&A, 0, sizeof(A));
    A.mode = TR_A_CONV;
    A.a = dz;
    A.conv = &tg;
    A.zero = tr_zeros(c->tg, (size_t)g->OC);
    tr_gemm_b B = {TR_B_STRIDED, wt, g->C, 1, NULL};
    if (!A.zero) {
        tr_free(wt);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "node '%s': out of memory", tn_name(c->n));
    }
    tr_gemm_ex(uk(), (int64_t)g->B * g->H * g->W, g->C, taps * g->OC, &A, &B, dx, g->C,
               !c->dx_overwrite, c->pool);
    tr_free(wt);
    return MOPT_OK;
}

mopt_status tr_conv_backward(tr_ctx *c, mopt_error *err) {
    const cgeom g = conv_geom(c);
    const tr_conv_geom tg = to_tr(&g);
    tval *xv = &c->tg->vals[c->n->in[0]];
    const float *x = xv->data;
    float *dx = xv->grad;
    float *dz = c->dy;
    const int64_t M = (int64_t)g.B * g.OH * g.OW;
    tr_act_backward(c->n->act, c->y, dz, M * g.OC, c->pool);
    if (c->gb) tr_colsum_add(dz, M, g.OC, c->gb, c->pool);
    const bool pw = is_pointwise(&g);
    if (c->gw && !pw && g.C % uk()->mr == 0) {
        /* dW^T[K, OC] = Xcol^T * dZ with Xcol^T read in place (one pointer per
         * pixel), then transposed into dW: no im2col matrix is built. */
        const tr_conv_geom tgc = tg;
        float *dwt = tr_scratch(c->tg, (size_t)(g.K * g.OC));
        const float *zero = tr_zeros(c->tg, (size_t)g.C);
        if (!dwt || !zero)
            return mopt_error_set(err, MOPT_ERR_NOMEM, "node '%s': out of memory", tn_name(c->n));
        tr_gemm_a A;
        memset(&A, 0, sizeof(A));
        A.mode = TR_A_CONVT;
        A.a = x;
        A.conv = &tgc;
        A.zero = zero;
        tr_gemm_b B = {TR_B_STRIDED, dz, g.OC, 1, NULL};
        tr_gemm_ex(uk(), g.K, g.OC, M, &A, &B, dwt, g.OC, false, c->pool);
        for (int oc = 0; oc < g.OC; oc++) {
            float *d = c->gw + (int64_t)oc * g.K;
            for (int64_t k = 0; k < g.K; k++) d[k] += dwt[k * g.OC + oc];
        }
    } else if (c->gw && !pw && g.K < g.OC) {
        /* Few input channels (K = KH*KW*C small, e.g. the first layer):
         * dW^T[K, OC] = im2col(x)^T * dZ with the (chunked) im2col matrix read
         * k-major in place and dZ as B: every OC column of a panel is used. */
        const int cb = chunk_images(&g);
        const size_t chunk = (size_t)((int64_t)cb * g.OH * g.OW * g.K);
        float *col = tr_scratch(c->tg, chunk + (size_t)(g.K * g.OC));
        if (!col)
            return mopt_error_set(err, MOPT_ERR_NOMEM, "node '%s': out of memory", tn_name(c->n));
        float *dwt = col + chunk;
        for (int b0 = 0; b0 < g.B; b0 += cb) {
            const int nb = g.B - b0 < cb ? g.B - b0 : cb;
            im2col(&g, x, b0, nb, col, c->pool);
            tr_gemm_a A;
            memset(&A, 0, sizeof(A));
            A.mode = TR_A_KMAJOR;
            A.a = col;
            A.lda = g.K;
            tr_gemm_b B = {TR_B_STRIDED, dz + (int64_t)b0 * g.OH * g.OW * g.OC, g.OC, 1, NULL};
            tr_gemm_ex(uk(), g.K, g.OC, (int64_t)nb * g.OH * g.OW, &A, &B, dwt, g.OC, b0 > 0,
                       c->pool);
        }
        for (int oc = 0; oc < g.OC; oc++) {
            float *d = c->gw + (int64_t)oc * g.K;
            for (int64_t k = 0; k < g.K; k++) d[k] += dwt[k * g.OC + oc];
        }
    } else if (c->gw) {
        /* dW[OC, K] += dZ^T * Xcol: A = dZ^T (k-major, lda OC), B = im2col(x) */
        tr_gemm_a A;
        memset(&A, 0, sizeof(A));
        A.mode = TR_A_KMAJOR;
        A.a = dz;
        A.lda = g.OC;
        tr_gemm_b B;
        memset(&B, 0, sizeof(B));
        if (pw) {
            B.mode = TR_B_STRIDED;
            B.b = x;
            B.rs = g.C;
            B.cs = 1;
        } else {
            B.mode = TR_B_CONV;
            B.b = x;
            B.conv = &tg;
        }
        tr_gemm_ex(uk(), g.OC, g.K, M, &A, &B, c->gw, g.K, true, c->pool);
    }
    if (!dx) return MOPT_OK;
    tr_gemm_a A;
    memset(&A, 0, sizeof(A));
    A.mode = TR_A_ROWS;
    A.a = dz;
    A.lda = g.OC;
    tr_gemm_b B = {TR_B_STRIDED, c->w, (ptrdiff_t)g.K, 1, NULL}; /* B = W [OC, K] */
    if (pw) {
        tr_gemm_ex(uk(), M, g.K, g.OC, &A, &B, dx, g.K, !c->dx_overwrite, c->pool);
        return MOPT_OK;
    }
    if (g.sh == 1 && g.sw == 1 && g.OC >= CONV_MIN_IMPLICIT_C)
        return conv_dx_stride1(c, &g, dz, dx, err);
    const int cb = chunk_images(&g);
    float *dcol = tr_scratch(c->tg, (size_t)((int64_t)cb * g.OH * g.OW * g.K));
    if (!dcol) return mopt_error_set(err, MOPT_ERR_NOMEM, "node '%s': out of memory (col2im)",
                                     tn_name(c->n));
    if (c->dx_overwrite) memset(dx, 0, (size_t)((int64_t)g.B * g.H * g.W * g.C) * sizeof(float));
    for (int b0 = 0; b0 < g.B; b0 += cb) {
        const int nb = g.B - b0 < cb ? g.B - b0 : cb;
        A.a = dz + (int64_t)b0 * g.OH * g.OW * g.OC;
        tr_gemm_ex(uk(), (int64_t)nb * g.OH * g.OW, g.K, g.OC, &A, &B, dcol, g.K, false, c->pool);
        col2im_add(&g, dcol, b0, nb, dx, c->pool);
    }
    return MOPT_OK;
}

/* ---- depthwise ---- */

typedef struct dw_job {
    const tr_ctx *c;
    cgeom g;
    int M;
    const float *x, *dz;
    float *part;
    int nch;
} dw_job;

/* forward: one output row (image, oy) per item */
static void dw_fwd_range(void *p, int64_t r0, int64_t r1) {
    const dw_job *j = p;
    const cgeom g = j->g;
    const int M = j->M;
    const float *w = j->c->w, *bias = j->c->b;
    for (int64_t r = r0; r < r1; r++) {
        const int b = (int)(r / g.OH), oy = (int)(r % g.OH);
        const float *xb = j->x + (int64_t)b * g.H * g.W * g.C;
        for (int ox = 0; ox < g.OW; ox++) {
            float *acc = j->c->y + (r * g.OW + ox) * g.OC;
            if (bias)
                memcpy(acc, bias, (size_t)g.OC * sizeof(float));
            else
                memset(acc, 0, (size_t)g.OC * sizeof(float));
            for (int ky = 0; ky < g.kh; ky++) {
                const int iy = oy * g.sh - g.pt + ky * g.dh;
                if (iy < 0 || iy >= g.H) continue;
                for (int kx = 0; kx < g.kw; kx++) {
                    const int ix = ox * g.sw - g.pl + kx * g.dw;
                    if (ix < 0 || ix >= g.W) continue;
                    const float *xp = xb + ((int64_t)iy * g.W + ix) * g.C;
                    const float *wp = w + ((int64_t)ky * g.kw + kx) * g.OC;
                    if (M == 1) {
                        tr_vec_fma_acc(acc, xp, wp, g.C);
                    } else {
                        for (int ci = 0; ci < g.C; ci++)
                            for (int m = 0; m < M; m++) acc[ci * M + m] += xp[ci] * wp[ci * M + m];
                    }
                }
            }
        }
    }
}

mopt_status tr_dwconv_forward(tr_ctx *c, mopt_error *err) {
    (void)err;
    dw_job j;
    memset(&j, 0, sizeof(j));
    j.c = c;
    j.g = conv_geom(c);
    j.M = c->n->p.conv.depth_mult;
    j.x = c->tg->vals[c->n->in[0]].data;
    tr_pool_run(c->pool, (int64_t)j.g.B * j.g.OH, 1, dw_fwd_range, &j);
    tr_act_forward(c->n->act, c->y, (int64_t)j.g.B * j.g.OH * j.g.OW * j.g.OC, c->pool);
    return MOPT_OK;
}

/* weight gradient partials: one fixed chunk of images per item */
static void dw_dw_range(void *p, int64_t c0, int64_t c1) {
    const dw_job *j = p;
    const cgeom g = j->g;
    const int M = j->M;
    const int64_t wn = (int64_t)g.kh * g.kw * g.OC;
    for (int64_t ch = c0; ch < c1; ch++) {
        float *pp0 = j->part + ch * wn;
        memset(pp0, 0, (size_t)wn * sizeof(float));
        const int b0 = (int)((int64_t)g.B * ch / j->nch), b1 = (int)((int64_t)g.B * (ch + 1) / j->nch);
        for (int b = b0; b < b1; b++) {
            const float *xb = j->x + (int64_t)b * g.H * g.W * g.C;
            for (int oy = 0; oy < g.OH; oy++)
                for (int ox = 0; ox < g.OW; ox++) {
                    const float *d = j->dz + (((int64_t)b * g.OH + oy) * g.OW + ox) * g.OC;
                    for (int ky = 0; ky < g.kh; ky++) {
                        const int iy = oy * g.sh - g.pt + ky * g.dh;
                        if (iy < 0 || iy >= g.H) continue;
                        for (int kx = 0; kx < g.kw; kx++) {
                            const int ix = ox * g.sw - g.pl + kx * g.dw;
                            if (ix < 0 || ix >= g.W) continue;
                            const float *xp = xb + ((int64_t)iy * g.W + ix) * g.C;
                            float *pp = pp0 + ((int64_t)ky * g.kw + kx) * g.OC;
                            if (M == 1) {
                                tr_vec_fma_acc(pp, d, xp, g.C);
                            } else {
                                for (int ci = 0; ci < g.C; ci++)
                                    for (int m = 0; m < M; m++) pp[ci * M + m] += d[ci * M + m] * xp[ci];
                            }
                        }
                    }
                }
        }
    }
}

/* input gradient: one image per item (scatter within the image, in order) */
static void dw_dx_range(void *p, int64_t i0, int64_t i1) {
    const dw_job *j = p;
    const cgeom g = j->g;
    const int M = j->M;
    const float *w = j->c->w;
    float *dx = j->c->tg->vals[j->c->n->in[0]].grad;
    for (int64_t bi = i0; bi < i1; bi++) {
        const int b = (int)bi;
        float *xb = dx + (int64_t)b * g.H * g.W * g.C;
        for (int oy = 0; oy < g.OH; oy++)
            for (int ox = 0; ox < g.OW; ox++) {
                const float *d = j->dz + (((int64_t)b * g.OH + oy) * g.OW + ox) * g.OC;
                for (int ky = 0; ky < g.kh; ky++) {
                    const int iy = oy * g.sh - g.pt + ky * g.dh;
                    if (iy < 0 || iy >= g.H) continue;
                    for (int kx = 0; kx < g.kw; kx++) {
                        const int ix = ox * g.sw - g.pl + kx * g.dw;
                        if (ix < 0 || ix >= g.W) continue;
                        float *xp = xb + ((int64_t)iy * g.W + ix) * g.C;
                        const float *wp = w + ((int64_t)ky * g.kw + kx) * g.OC;
                        if (M == 1) {
                            tr_vec_fma_acc(xp, d, wp, g.C);
                        } else {
                            for (int ci = 0; ci < g.C; ci++) {
                                float s = 0.0f;
                                for (int m = 0; m < M; m++) s += d[ci * M + m] * wp[ci * M + m];
                                xp[ci] += s;
                            }
                        }
                    }
                }
            }
    }
}

mopt_status tr_dwconv_backward(tr_ctx *c, mopt_error *err) {
    dw_job j;
    memset(&j, 0, sizeof(j));
    j.c = c;
    j.g = conv_geom(c);
    j.M = c->n->p.conv.depth_mult;
    j.x = c->tg->vals[c->n->in[0]].data;
    j.dz = c->dy;
    const cgeom g = j.g;
    const int64_t Mrows = (int64_t)g.B * g.OH * g.OW;
    tr_act_backward(c->n->act, c->y, c->dy, Mrows * g.OC, c->pool);
    if (c->gb) tr_colsum_add(c->dy, Mrows, g.OC, c->gb, c->pool);
    if (c->gw) {
        /* Partial weight gradients per fixed chunk of images, summed in order. */
        j.nch = g.B < TR_RED_CHUNKS ? g.B : TR_RED_CHUNKS;
        const int64_t wn = (int64_t)g.kh * g.kw * g.OC;
        j.part = tr_scratch(c->tg, (size_t)(j.nch * wn));
        if (!j.part)
            return mopt_error_set(err, MOPT_ERR_NOMEM, "node '%s': out of memory", tn_name(c->n));
        tr_pool_run(c->pool, j.nch, 1, dw_dw_range, &j);
        for (int ch = 0; ch < j.nch; ch++) tr_vec_add(c->gw, j.part + (int64_t)ch * wn, wn);
    }
    if (c->tg->vals[c->n->in[0]].grad) tr_pool_run(c->pool, g.B, 1, dw_dx_range, &j);
    return MOPT_OK;
}

/* ---- fully connected ---- */

static void fc_dims(const tr_ctx *c, int64_t *rows, int64_t *depth, int64_t *units) {
    const mopt_tvar *w = &c->tg->vars[c->n->w]->pub;
    *units = w->dims[0];
    *depth = w->dims[1];
    const tval *x = &c->tg->vals[c->n->in[0]];
    *rows = (int64_t)c->batch * x->per / *depth;
}

mopt_status tr_fc_forward(tr_ctx *c, mopt_error *err) {
    int64_t rows, depth, units;
    fc_dims(c, &rows, &depth, &units);
    const float *x = c->tg->vals[c->n->in[0]].data;
    if (rows < units) {
        /* Few rows (a batch of samples), many units: Y^T = W * X^T reads W in
         * place and packs only the smaller X, then transposes (+ bias). */
        float *yt = tr_scratch(c->tg, (size_t)(rows * units));
        if (!yt) return mopt_error_set(err, MOPT_ERR_NOMEM, "node '%s': out of memory",
                                       tn_name(c->n));
        tr_gemm(units, rows, depth, c->w, depth, 1, x, 1, depth, yt, rows, false, c->pool);
        const float *b = c->b;
        float *y = c->y;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t u = 0; u < units; u++)
                y[r * units + u] = b ? b[u] + yt[u * rows + r] : yt[u * rows + r];
    } else {
        if (c->b) fill_bias(c->y, rows, units, c->b, c->pool);
        tr_gemm(rows, units, depth, x, depth, 1, c->w, 1, depth, c->y, units, c->b != NULL, c->pool);
    }
    tr_act_forward(c->n->act, c->y, rows * units, c->pool);
    return MOPT_OK;
}

mopt_status tr_fc_backward(tr_ctx *c, mopt_error *err) {
    (void)err;
    int64_t rows, depth, units;
    fc_dims(c, &rows, &depth, &units);
    tval *xv = &c->tg->vals[c->n->in[0]];
    float *dz = c->dy;
    tr_act_backward(c->n->act, c->y, dz, rows * units, c->pool);
    if (c->gb) tr_colsum_add(dz, rows, units, c->gb, c->pool);
    if (c->gw) tr_gemm(units, depth, rows, dz, 1, units, xv->data, depth, 1, c->gw, depth, true, c->pool);
    if (xv->grad)
        tr_gemm(rows, depth, units, dz, units, 1, c->w, depth, 1, xv->grad, depth,
                !c->dx_overwrite, c->pool);
    return MOPT_OK;
}
