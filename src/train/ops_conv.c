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
#include <stdatomic.h>
#include <string.h>

#include "train/ops_internal.h"
#include "train/ops_simd.h"
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
    bool avx512; /* the register-blocked kernel (same arithmetic) */
} smallc_job;

/* pixels [ox0, ox1) of output row r (image r / OH, row r % OH): the row
 * kernels see a narrower row whose left padding is shifted accordingly */
static void smallc_px(const smallc_job *j, int64_t r, int ox0, int ox1) {
    const cgeom *g = j->g;
    const int b = (int)(r / g->OH), oy = (int)(r % g->OH);
    const float *xb = j->x + (int64_t)b * g->H * g->W * g->C;
    float *y = j->y + (r * g->OW + ox0) * g->OC;
    const int pl = g->pl - ox0 * g->sw;
    if (j->avx512)
        tr_avx512_conv_row_smallc(xb, g->H, g->W, g->C, oy, ox1 - ox0, g->OC, g->kh, g->kw, g->sh,
                                  g->sw, g->dh, g->dw, g->pt, pl, j->wt, j->b, y);
    else
        tr_vec_conv_row_smallc(xb, g->H, g->W, g->C, oy, ox1 - ox0, g->OC, g->kh, g->kw, g->sh,
                               g->sw, g->dh, g->dw, g->pt, pl, j->wt, j->b, y);
}

static void smallc_range(void *p, int64_t r0, int64_t r1) {
    const smallc_job *j = p;
    for (int64_t r = r0; r < r1; r++) smallc_px(j, r, 0, j->g->OW);
}

/* Convolution + the batch statistics of the batch norm after it: chunk ch
 * of the norm's TR_RED_CHUNKS row chunks computes its pixels, then their
 * moments while they are in cache (tr_vec_moments, as the norm would,
 * relative to pixel 0, which is computed first), into the norm's aux. */
typedef struct smallc_mom {
    const smallc_job *j;
    float *part; /* 2 * nch * OC: sums and sums of squares per chunk */
    int64_t rows, nch;
} smallc_mom;

static void smallc_mom_range(void *p, int64_t c0, int64_t c1) {
    const smallc_mom *m = p;
    const cgeom *g = m->j->g;
    for (int64_t ch = c0; ch < c1; ch++) {
        const int64_t a = m->rows * ch / m->nch, b = m->rows * (ch + 1) / m->nch;
        /* pixel 0 exists already (other chunks read it as the shift) */
        int64_t px = a == 0 ? 1 : a;
        while (px < b) {
            const int64_t r = px / g->OW;
            const int ox0 = (int)(px % g->OW);
            const int ox1 = b - r * g->OW < g->OW ? (int)(b - r * g->OW) : g->OW;
            smallc_px(m->j, r, ox0, ox1);
            px = r * g->OW + ox1;
        }
        float *sp = m->part + 2 * ch * g->OC, *qp = sp + g->OC;
        for (int k = 0; k < g->OC; k++) sp[k] = qp[k] = 0.0f;
        tr_vec_moments(m->j->y + a * g->OC, m->j->y, b - a, g->OC, sp, qp);
    }
}

/* The batch norm reading this convolution's output when its statistics can
 * be gathered here (training with batch statistics, sole consumer). */
static tnode *moments_target(const tr_ctx *c) {
    const mopt_tgraph *tg = c->tg;
    const tnode *n = c->n;
    const tval *ov = &tg->vals[n->out];
    if (!c->training || n->act != MOPT_ACT_NONE || n->has_at || n->out == tg->output ||
        ov->n_cons != 1 || ov->consumer < 0 || ov->rank != 4)
        return NULL;
    tnode *bn = &tg->nodes[ov->consumer];
    if (bn->kind != MOPT_TNODE_BATCH_NORM || bn->in[0] != n->out || bn->bn_frozen || !bn->aux)
        return NULL;
    return bn;
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
        smallc_job j = {&g, c->tg->vals[c->n->in[0]].data, wt, c->b, c->y,
                        g.OC % 16 == 0 && tr_simd_avx512()};
        tnode *bn = moments_target(c);
        if (bn) {
            smallc_mom m = {&j, tr_bn_moments(c->tg, bn), (int64_t)g.B * g.OH * g.OW, 0};
            m.nch = m.rows < TR_RED_CHUNKS ? m.rows : TR_RED_CHUNKS;
            smallc_px(&j, 0, 0, 1);
            tr_pool_run(c->pool, m.nch, 1, smallc_mom_range, &m);
            tr_aux_flag(bn)[1] = 1; /* the norm's forward uses these moments */
            return MOPT_OK;
        }
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

typedef struct dwsmall_job {
    const tr_dw_geom *g;
    const int64_t *blk; /* (first pixel, length) per K block */
    float *out;         /* K*OC floats per block */
    tr_dz_fill_fn fill; /* NULL: g->dz holds all of dZ */
    void *fctx;
    atomic_int failed;  /* a thread had no memory for its dZ block */
} dwsmall_job;

static void dwsmall_range(void *p, int64_t q0, int64_t q1) {
    const dwsmall_job *j = p;
    const int64_t kn = (int64_t)j->g->kh * j->g->kw * j->g->C * j->g->OC;
    float *buf = NULL;
    if (j->fill) {
        buf = tr_alloc((size_t)TR_GEMM_KC * (size_t)j->g->OC * sizeof(float));
        if (!buf) {
            atomic_store(&((dwsmall_job *)p)->failed, 1); /* reported by the caller */
            return;
        }
    }
    for (int64_t q = q0; q < q1; q++) {
        const int64_t p0 = j->blk[2 * q], n = j->blk[2 * q + 1];
        if (j->fill) {
            /* this block's dZ, produced while it is used (stays in L1/L2) */
            tr_dw_geom g = *j->g;
            j->fill(j->fctx, p0, n, buf);
            g.dz = buf;
            g.dz_p0 = p0;
            tr_avx512_conv_dw_block(&g, p0, n, j->out + q * kn);
        } else {
            tr_avx512_conv_dw_block(j->g, p0, n, j->out + q * kn);
        }
    }
    tr_free(buf);
}

/* dW[oc][k] += the block sums of row k of dW^T, added in block order */
typedef struct dwsum_job {
    const cgeom *g;
    const float *out;
    int64_t nblk;
    float *gw;
} dwsum_job;

static void dwsum_range(void *p, int64_t k0, int64_t k1) {
    const dwsum_job *j = p;
    const int OC = j->g->OC;
    const int64_t kn = j->g->K * OC;
    float s[64];
    for (int64_t k = k0; k < k1; k++)
        for (int o0 = 0; o0 < OC; o0 += 64) {
            const int n = OC - o0 < 64 ? OC - o0 : 64;
            for (int o = 0; o < n; o++) s[o] = j->out[k * OC + o0 + o];
            for (int64_t b = 1; b < j->nblk; b++) {
                const float *src = j->out + b * kn + k * OC + o0;
                for (int o = 0; o < n; o++) s[o] += src[o];
            }
            for (int o = 0; o < n; o++) j->gw[(int64_t)(o0 + o) * j->g->K + k] += s[o];
        }
}

/* dW += im2col(x)^T * dZ for few input channels with AVX-512, the same
 * sums as the im2col GEMM path (K blocks of TR_GEMM_KC pixels from the
 * start of each chunk of images, block sums added in block order): the
 * blocks are computed in parallel (the GEMM ran this small dW as a single
 * tile, on one thread), then added in order. dZ from dz, or from fill. */
static mopt_status conv_dw_smallc(tr_ctx *c, const cgeom *g, const float *x, const float *dz,
                                  tr_dz_fill_fn fill, void *fctx, mopt_error *err) {
    const int cb = chunk_images(g);
    const int64_t hw = (int64_t)g->OH * g->OW, kn = g->K * g->OC;
    int64_t nblk = 0;
    for (int b0 = 0; b0 < g->B; b0 += cb) {
        const int64_t m = (int64_t)(g->B - b0 < cb ? g->B - b0 : cb) * hw;
        nblk += (m + TR_GEMM_KC - 1) / TR_GEMM_KC;
    }
    int64_t *blk = tr_alloc((size_t)(2 * nblk) * sizeof(int64_t));
    float *out = tr_scratch(c->tg, (size_t)(nblk * kn));
    if (!blk || !out) {
        tr_free(blk);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "node '%s': out of memory", tn_name(c->n));
    }
    int64_t q = 0;
    for (int b0 = 0; b0 < g->B; b0 += cb) {
        const int64_t m = (int64_t)(g->B - b0 < cb ? g->B - b0 : cb) * hw;
        for (int64_t k0 = 0; k0 < m; k0 += TR_GEMM_KC, q++) {
            blk[2 * q] = (int64_t)b0 * hw + k0;
            blk[2 * q + 1] = m - k0 < TR_GEMM_KC ? m - k0 : TR_GEMM_KC;
        }
    }
    const tr_dw_geom dg = {x,     dz,    g->H,  g->W,  g->C,  g->OH, g->OW, g->OC, g->kh,
                           g->kw, g->sh, g->sw, g->dh, g->dw, g->pt, g->pl, 0};
    dwsmall_job j;
    j.g = &dg;
    j.blk = blk;
    j.out = out;
    j.fill = fill;
    j.fctx = fctx;
    atomic_init(&j.failed, 0);
    tr_pool_run(c->pool, nblk, 1, dwsmall_range, &j);
    tr_free(blk);
    if (atomic_load(&j.failed))
        return mopt_error_set(err, MOPT_ERR_NOMEM, "node '%s': out of memory", tn_name(c->n));
    dwsum_job sj = {g, out, nblk, c->gw};
    tr_pool_run(c->pool, g->K, 1, dwsum_range, &sj);
    return MOPT_OK;
}

/* the weight gradient target of a convolution (as tgraph.c's fill_ctx) */
static float *conv_gw(const mopt_tgraph *tg, const tnode *n) {
    if (n->w < 0) return NULL;
    const tvar *v = tg->vars[n->w];
    if (v->n_stages) return v->gsum;
    return (v->pub.flags & MOPT_TVAR_TRAINABLE) ? v->pub.grad : NULL;
}

static bool dw_smallc_ok(const cgeom *g) {
    return !is_pointwise(g) && g->C % uk()->mr != 0 && g->K < g->OC &&
           g->K <= TR_SIMD_DW_MAXK && g->OC % 16 == 0 && tr_simd_avx512();
}

tnode *tr_conv_dw_fusable(const tr_ctx *c) {
    const mopt_tgraph *tg = c->tg;
    const tval *xv = &tg->vals[c->n->in[0]];
    if (xv->producer < 0 || xv->n_cons != 1 || !xv->grad || !c->dx_overwrite) return NULL;
    tnode *cv = &tg->nodes[xv->producer];
    if (cv->kind != MOPT_OP_CONV_2D || !cv->aux) return NULL;
    *tr_aux_flag(cv) = 0;
    if (cv->act != MOPT_ACT_NONE || cv->has_at || cv->b >= 0 || !conv_gw(tg, cv) ||
        tg->vals[cv->in[0]].grad)
        return NULL;
    tr_ctx cc = *c;
    cc.n = cv;
    const cgeom g = conv_geom(&cc);
    return dw_smallc_ok(&g) ? cv : NULL;
}

mopt_status tr_conv_dw_fused(tr_ctx *c, tnode *cv, tr_dz_fill_fn fill, void *fctx,
                             mopt_error *err) {
    tr_ctx cc = *c;
    cc.n = cv;
    cc.gw = conv_gw(c->tg, cv);
    cc.gb = NULL;
    const cgeom g = conv_geom(&cc);
    mopt_status st = conv_dw_smallc(&cc, &g, c->tg->vals[cv->in[0]].data, NULL, fill, fctx, err);
    if (st == MOPT_OK) *tr_aux_flag(cv) = 1; /* its backward has nothing left to do */
    return st;
}

mopt_status tr_conv_backward(tr_ctx *c, mopt_error *err) {
    if (c->n->aux && *tr_aux_flag(c->n)) {
        *tr_aux_flag(c->n) = 0; /* done by the batch norm after it (tr_conv_dw_fused) */
        return MOPT_OK;
    }
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
    } else if (c->gw && dw_smallc_ok(&g)) {
        mopt_status st = conv_dw_smallc(c, &g, x, dz, NULL, NULL, err);
        if (st != MOPT_OK) return st;
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
