/* ops_norm.c - batch normalization (training and inference mode) and
 * dropout.
 *
 * Batch norm normalises over every axis but the last (channels):
 *   training:  mean, var = batch statistics (biased variance), y = gamma *
 *              (x - mean) * invstd + beta, then the fused activation;
 *              running = momentum * running + (1 - momentum) * batch  (Keras);
 *   inference / frozen: the running statistics instead.
 * Backward, with xhat = (x - mean) * invstd and N rows:
 *   dbeta = sum dy, dgamma = sum dy * xhat,
 *   dx = gamma * invstd * (dy - dbeta / N - xhat * dgamma / N)   (batch statistics)
 *   dx = gamma * invstd * dy                                      (frozen statistics)
 * Sums run over TR_RED_CHUNKS fixed row chunks (float inside a chunk,
 * double across chunks, in chunk order): independent of the thread count.
 */
#include <math.h>
#include <string.h>

#include "train/ops_internal.h"
#include "train/vec.h"

typedef struct bn_job {
    const float *x, *y, *shift, *mean, *invstd, *k, *o, *m1, *m2;
    float *dy, *out, *part;
    int64_t rows, nch;
    int C, act;
    bool overwrite;
} bn_job;

static inline void chunk_rows(const bn_job *j, int64_t ch, int64_t *r0, int64_t *n) {
    const int64_t a = j->rows * ch / j->nch, b = j->rows * (ch + 1) / j->nch;
    *r0 = a;
    *n = b - a;
}

/* part[ch]: sums of (x - shift) and (x - shift)^2 per channel */
static void moments_range(void *p, int64_t c0, int64_t c1) {
    const bn_job *j = p;
    for (int64_t ch = c0; ch < c1; ch++) {
        float *s = j->part + 2 * ch * j->C, *q = s + j->C;
        for (int k = 0; k < j->C; k++) s[k] = q[k] = 0.0f;
        int64_t r0, n;
        chunk_rows(j, ch, &r0, &n);
        tr_vec_moments(j->x + r0 * j->C, j->shift, n, j->C, s, q);
    }
}

static void bn_fwd_range(void *p, int64_t c0, int64_t c1) {
    const bn_job *j = p;
    for (int64_t ch = c0; ch < c1; ch++) {
        int64_t r0, n;
        chunk_rows(j, ch, &r0, &n);
        tr_vec_bn_fwd(j->x + r0 * j->C, j->out + r0 * j->C, j->k, j->o, n, j->C, j->act);
    }
}

/* mask dy by the fused ReLU (in place) and sum dy, dy * xhat per channel */
static void bn_reduce_range(void *p, int64_t c0, int64_t c1) {
    const bn_job *j = p;
    for (int64_t ch = c0; ch < c1; ch++) {
        float *p1 = j->part + ch * j->C, *p2 = j->part + (j->nch + ch) * j->C;
        for (int k = 0; k < j->C; k++) p1[k] = p2[k] = 0.0f;
        int64_t r0, n;
        chunk_rows(j, ch, &r0, &n);
        tr_vec_bn_bwd_reduce(j->x + r0 * j->C, j->y + r0 * j->C, j->dy + r0 * j->C, j->mean,
                             j->invstd, n, j->C, j->act, p1, p2);
    }
}

static void bn_dx_range(void *p, int64_t c0, int64_t c1) {
    const bn_job *j = p;
    for (int64_t ch = c0; ch < c1; ch++) {
        int64_t r0, n;
        chunk_rows(j, ch, &r0, &n);
        tr_vec_bn_bwd_dx(j->x + r0 * j->C, j->dy + r0 * j->C, j->mean, j->invstd, j->k, j->m1,
                         j->m2, j->out + r0 * j->C, n, j->C, j->overwrite);
    }
}

/* Saved by forward for backward (node aux, ops_internal.h): mean[C],
 * invstd[C], k[C], o[C]. */
static float *saved(tr_ctx *c) { return tr_bn_saved(c->n); }

/* ---- fusion with a following max pooling ----
 * When the batch norm's only consumer is a MAX_POOL_2D with disjoint
 * windows (stride >= window: every input pixel is in at most one window)
 * and neither node has an activation transform or other activation than
 * ReLU/ReLU6 on the norm, the norm's forward writes the pooling's output and
 * argmax directly from x (act(x * k + o) computed on the fly, never stored),
 * and its backward rebuilds its dy from the pooling's dy and argmax: the
 * normalised tensor, the largest of the block, is never written or read
 * (it is not needed: nothing else consumes it). The pooling node sees the
 * flag in its aux and skips both passes. Arithmetic is that of the unfused
 * ops, so results are bit-identical either way (tested). */
static tnode *fused_pool(const tr_ctx *c) {
    const mopt_tgraph *tg = c->tg;
    const tnode *n = c->n;
    const tval *xv = &tg->vals[n->in[0]], *ov = &tg->vals[n->out];
    if (n->out == tg->output || ov->n_cons != 1 || ov->consumer < 0 || xv->rank != 4) return NULL;
    tnode *m = &tg->nodes[ov->consumer];
    if (m->kind != MOPT_OP_MAX_POOL_2D || !m->aux) return NULL;
    const bool ok = !n->has_at && !m->has_at && m->n_in == 1 && m->in[0] == n->out &&
                    m->act == MOPT_ACT_NONE &&
                    (n->act == MOPT_ACT_NONE || n->act == MOPT_ACT_RELU ||
                     n->act == MOPT_ACT_RELU6) &&
                    m->p.pool.sh >= m->p.pool.kh && m->p.pool.sw >= m->p.pool.kw &&
                    xv->dims[3] <= 1024;
    /* the flag is rewritten on every forward: the pair always agrees */
    *tr_aux_flag(m) = ok;
    return ok ? m : NULL;
}

typedef struct bnpool_job {
    const tr_ctx *c;
    const tnode *m;
    const float *x;
    int H, W, C, OH, OW, kh, kw, sh, sw, pt, pl;
    tr_bnpool g;
    const float *dp;
    const int32_t *arg;
    float *part, *dx;   /* dx: the row of pixel dx_r0 */
    int64_t rows, nch, dx_r0;
    bool overwrite;
} bnpool_job;

static bnpool_job bnpool_setup(const tr_ctx *c, const tnode *m) {
    bnpool_job j;
    memset(&j, 0, sizeof(j));
    const tval *xv = &c->tg->vals[c->n->in[0]], *pv = &c->tg->vals[m->out];
    j.c = c;
    j.m = m;
    j.x = xv->data;
    j.H = xv->dims[1];
    j.W = xv->dims[2];
    j.C = xv->dims[3];
    j.OH = pv->dims[1];
    j.OW = pv->dims[2];
    j.kh = m->p.pool.kh;
    j.kw = m->p.pool.kw;
    j.sh = m->p.pool.sh;
    j.sw = m->p.pool.sw;
    j.pt = m->p.pool.pad_top;
    j.pl = m->p.pool.pad_left;
    j.rows = (int64_t)c->batch * j.H * j.W;
    j.nch = j.rows < TR_RED_CHUNKS ? j.rows : TR_RED_CHUNKS;
    j.g.C = j.C;
    j.g.OW = j.OW;
    j.g.kw = j.kw;
    j.g.sw = j.sw;
    j.g.pl = j.pl;
    j.g.act = (c->n->act == MOPT_ACT_RELU || c->n->act == MOPT_ACT_RELU6) ? (int)c->n->act : 0;
    const float *sv = tr_bn_saved(c->n);
    j.g.mean = sv;
    j.g.invstd = sv + j.C;
    j.g.k = sv + 2 * j.C;
    j.g.o = sv + 3 * j.C;
    j.dp = pv->grad;
    j.arg = tr_pool_args(m);
    return j;
}

/* forward: one pooling output row (image, oy) per item */
static void bnpool_fwd_range(void *p, int64_t r0, int64_t r1) {
    const bnpool_job *j = p;
    float *y = j->c->tg->vals[j->m->out].data;
    int32_t *arg = tr_pool_args(j->m);
    for (int64_t r = r0; r < r1; r++) {
        const int b = (int)(r / j->OH), oy = (int)(r % j->OH);
        const int y0 = oy * j->sh - j->pt;
        const int ys = y0 < 0 ? 0 : y0, ye = y0 + j->kh > j->H ? j->H : y0 + j->kh;
        tr_vec_bn_maxpool_row(j->x + (int64_t)b * j->H * j->W * j->C, j->W, j->C, ys, ye, j->OW,
                              j->sw, j->kw, j->pl, j->g.k, j->g.o, j->g.act,
                              y + r * j->OW * j->C, arg + r * j->OW * j->C);
    }
}

/* Calls f over the pixels [r0, r0 + n) in runs within one input row, with
 * the pooling output row covering that input row (or NULL). */
static void bnpool_walk(const bnpool_job *j, int64_t r0, int64_t n, bool dx_pass, float *p1,
                        float *p2) {
    const int64_t hw = (int64_t)j->H * j->W;
    int64_t r = r0;
    const int64_t end = r0 + n;
    while (r < end) {
        const int64_t b = r / hw, rem = r % hw;
        const int iy = (int)(rem / j->W), ix = (int)(rem % j->W);
        int run = j->W - ix;
        if (run > end - r) run = (int)(end - r);
        const int oy = (iy + j->pt) / j->sh;
        const bool in = oy < j->OH && iy + j->pt - oy * j->sh < j->kh;
        const int64_t po = ((b * j->OH + oy) * j->OW) * j->C;
        const float *dp = in ? j->dp + po : NULL;
        const int32_t *arg = in ? j->arg + po : NULL;
        const float *x = j->x + r * j->C;
        const int32_t rowbase = (int32_t)((int64_t)iy * j->W * j->C);
        if (dx_pass)
            tr_vec_bnpool_dx(&j->g, x, ix, run, dp, arg, rowbase, j->dx + (r - j->dx_r0) * j->C,
                             j->overwrite);
        else
            tr_vec_bnpool_reduce(&j->g, x, ix, run, dp, arg, rowbase, p1, p2);
        r += run;
    }
}

static void bnpool_reduce_range(void *p, int64_t c0, int64_t c1) {
    const bnpool_job *j = p;
    for (int64_t ch = c0; ch < c1; ch++) {
        float *p1 = j->part + ch * j->C, *p2 = j->part + (j->nch + ch) * j->C;
        for (int k = 0; k < j->C; k++) p1[k] = p2[k] = 0.0f;
        const int64_t a = j->rows * ch / j->nch, b = j->rows * (ch + 1) / j->nch;
        bnpool_walk(j, a, b - a, false, p1, p2);
    }
}

static void bnpool_dx_range(void *p, int64_t c0, int64_t c1) {
    const bnpool_job *j = p;
    for (int64_t ch = c0; ch < c1; ch++) {
        const int64_t a = j->rows * ch / j->nch, b = j->rows * (ch + 1) / j->nch;
        bnpool_walk(j, a, b - a, true, NULL, NULL);
    }
}

/* dZ rows of the convolution before the norm (tr_conv_dw_fused): the norm's
 * input gradient for pixels [p0, p0 + n), written into dz */
typedef struct bn_fill {
    const bn_job *j;
    const bnpool_job *bj; /* fused with the pooling after it, or NULL */
} bn_fill;

static void bn_fill_dz(void *p, int64_t p0, int64_t n, float *dz) {
    const bn_fill *f = p;
    if (f->bj) {
        bnpool_job b = *f->bj;
        b.dx = dz;
        b.dx_r0 = p0;
        b.overwrite = true;
        bnpool_walk(&b, p0, n, true, NULL, NULL);
    } else {
        const bn_job *j = f->j;
        tr_vec_bn_bwd_dx(j->x + p0 * j->C, j->dy + p0 * j->C, j->mean, j->invstd, j->k, j->m1,
                         j->m2, dz, n, j->C, true);
    }
}

mopt_status tr_bn_forward(tr_ctx *c, mopt_error *err) {
    mopt_tgraph *tg = c->tg;
    tnode *n = c->n;
    const tval *xv = &tg->vals[n->in[0]];
    const int C = xv->dims[xv->rank - 1];
    bn_job j;
    memset(&j, 0, sizeof(j));
    j.rows = (int64_t)c->batch * xv->per / C;
    j.nch = j.rows < TR_RED_CHUNKS ? j.rows : TR_RED_CHUNKS;
    j.C = C;
    j.x = xv->data;
    j.out = c->y;
    const float *gamma = tg->vars[n->bn_gamma]->pub.data, *beta = tg->vars[n->bn_beta]->pub.data;
    float *rmean = tg->vars[n->bn_mean]->pub.data, *rvar = tg->vars[n->bn_var]->pub.data;
    float *mean = saved(c), *invstd = mean + C;
    const bool batch_stats = c->training && !n->bn_frozen;
    /* scratch: 2*nch*C floats of partial sums */
    float *buf = tr_alloc((size_t)(2 * j.nch * C) * sizeof(float));
    if (!buf) return mopt_error_set(err, MOPT_ERR_NOMEM, "node '%s': out of memory", n->name);
    float *k = mean + 2 * C, *o = mean + 3 * C;
    const bool have_moments = tr_aux_flag(n)[1] != 0; /* gathered by the convolution before */
    tr_aux_flag(n)[1] = 0;
    if (batch_stats) {
        /* sums of x - x[row 0]: a value from the data keeps E[d^2] - E[d]^2
         * free of cancellation when the mean is large against the spread */
        j.shift = j.x;
        j.part = buf;
        if (have_moments)
            memcpy(buf, tr_bn_moments(tg, n), (size_t)(2 * j.nch * C) * sizeof(float));
        else
            tr_pool_run(c->pool, j.nch, 1, moments_range, &j);
        const float m = n->bn_momentum;
        for (int q = 0; q < C; q++) {
            double s1 = 0.0, s2 = 0.0;
            for (int64_t ch = 0; ch < j.nch; ch++) {
                s1 += buf[2 * ch * C + q];
                s2 += buf[(2 * ch + 1) * C + q];
            }
            const double dm = s1 / (double)j.rows;
            double var = s2 / (double)j.rows - dm * dm;
            if (var < 0.0) var = 0.0;
            mean[q] = (float)((double)j.x[q] + dm);
            invstd[q] = (float)(1.0 / sqrt(var + (double)n->bn_eps));
            rmean[q] = m * rmean[q] + (1.0f - m) * mean[q];
            rvar[q] = m * rvar[q] + (1.0f - m) * (float)var;
        }
    } else {
        for (int q = 0; q < C; q++) {
            mean[q] = rmean[q];
            invstd[q] = (float)(1.0 / sqrt((double)rvar[q] + (double)n->bn_eps));
        }
    }
    /* y = x * k + o with k = gamma * invstd, o = beta - mean * k, then the
     * fused activation (ReLU / ReLU6 in the same pass) */
    for (int q = 0; q < C; q++) {
        k[q] = gamma[q] * invstd[q];
        o[q] = beta[q] - mean[q] * k[q];
    }
    const mopt_activation act = n->act;
    tr_free(buf);
    const tnode *m = fused_pool(c);
    *tr_aux_flag(n) = m != NULL;
    if (m) {
        bnpool_job bj = bnpool_setup(c, m);
        tr_pool_run(c->pool, (int64_t)c->batch * bj.OH, 1, bnpool_fwd_range, &bj);
        n->bn_batch_stats = batch_stats;
        return MOPT_OK;
    }
    j.k = k;
    j.o = o;
    j.act = (act == MOPT_ACT_RELU || act == MOPT_ACT_RELU6) ? (int)act : 0;
    tr_pool_run(c->pool, j.nch, 1, bn_fwd_range, &j);
    if (act != MOPT_ACT_NONE && j.act == 0) tr_act_forward(act, c->y, j.rows * C, c->pool);
    n->bn_batch_stats = batch_stats; /* backward differs for frozen statistics */
    return MOPT_OK;
}

mopt_status tr_bn_backward(tr_ctx *c, mopt_error *err) {
    mopt_tgraph *tg = c->tg;
    tnode *n = c->n;
    tval *xv = &tg->vals[n->in[0]];
    const int C = xv->dims[xv->rank - 1];
    bn_job j;
    memset(&j, 0, sizeof(j));
    j.rows = (int64_t)c->batch * xv->per / C;
    j.nch = j.rows < TR_RED_CHUNKS ? j.rows : TR_RED_CHUNKS;
    j.C = C;
    j.x = xv->data;
    j.y = c->y;
    j.dy = c->dy;
    j.mean = saved(c);
    j.invstd = j.mean + C;
    const float *gamma = tg->vars[n->bn_gamma]->pub.data;
    tvar *vg = tg->vars[n->bn_gamma], *vb = tg->vars[n->bn_beta];
    float *dgamma_out = (vg->pub.flags & MOPT_TVAR_TRAINABLE) ? vg->pub.grad : NULL;
    float *dbeta_out = (vb->pub.flags & MOPT_TVAR_TRAINABLE) ? vb->pub.grad : NULL;
    const mopt_activation act = n->act;
    j.act = (act == MOPT_ACT_RELU || act == MOPT_ACT_RELU6) ? (int)act : 0;
    const bool fused = *tr_aux_flag(n) != 0;
    if (!fused && act != MOPT_ACT_NONE && j.act == 0)
        tr_act_backward(act, c->y, c->dy, j.rows * C, c->pool);
    float *buf = tr_alloc((size_t)(2 * j.nch * C + 3 * C) * sizeof(float));
    if (!buf) return mopt_error_set(err, MOPT_ERR_NOMEM, "node '%s': out of memory", n->name);
    bnpool_job bj;
    if (fused) {
        /* the max pooling after it is the only consumer (fused in forward) */
        bj = bnpool_setup(c, &tg->nodes[tg->vals[n->out].consumer]);
        bj.part = buf;
        tr_pool_run(c->pool, bj.nch, 1, bnpool_reduce_range, &bj);
    } else {
        j.part = buf;
        tr_pool_run(c->pool, j.nch, 1, bn_reduce_range, &j);
    }
    float *k = buf + 2 * j.nch * C, *m1 = k + C, *m2 = m1 + C;
    const bool batch_stats = n->bn_batch_stats;
    for (int q = 0; q < C; q++) {
        double a = 0.0, b = 0.0;
        for (int64_t ch = 0; ch < j.nch; ch++) {
            a += buf[ch * C + q];
            b += buf[(j.nch + ch) * C + q];
        }
        if (dbeta_out) dbeta_out[q] = (float)a;  /* the node owns these: written, not added */
        if (dgamma_out) dgamma_out[q] = (float)b;
        k[q] = gamma[q] * j.invstd[q];
        m1[q] = batch_stats ? (float)(a / (double)j.rows) : 0.0f;
        m2[q] = batch_stats ? (float)(b / (double)j.rows) : 0.0f;
    }
    tnode *cv = xv->grad ? tr_conv_dw_fusable(c) : NULL;
    if (cv) {
        /* the input gradient only feeds the convolution's weight gradient:
         * produce it block by block inside that computation (never stored) */
        j.k = k;
        j.m1 = m1;
        j.m2 = m2;
        bj.g.kd = k;
        bj.g.m1 = m1;
        bj.g.m2 = m2;
        bn_fill f = {&j, fused ? &bj : NULL};
        mopt_status st = tr_conv_dw_fused(c, cv, bn_fill_dz, &f, err);
        tr_free(buf);
        return st;
    }
    if (xv->grad && fused) {
        bj.g.kd = k;
        bj.g.m1 = m1;
        bj.g.m2 = m2;
        bj.dx = xv->grad;
        bj.overwrite = c->dx_overwrite;
        tr_pool_run(c->pool, bj.nch, 1, bnpool_dx_range, &bj);
    } else if (xv->grad) {
        j.k = k;
        j.m1 = m1;
        j.m2 = m2;
        j.out = xv->grad;
        j.overwrite = c->dx_overwrite;
        tr_pool_run(c->pool, j.nch, 1, bn_dx_range, &j);
    }
    tr_free(buf);
    return MOPT_OK;
}

/* ---- dropout ----
 * Inverted dropout: kept values are scaled by 1/(1-rate) in training, so
 * inference is the identity. The keep decision of element i is a hash of
 * (graph seed, node, step, i) (tr_drop_bits): independent of threads and
 * replayable (backward and resumed runs see the same mask). */

static uint32_t dropout_key(const tr_ctx *c) {
    return (uint32_t)(mopt_hash64(c->tg->seed ^ c->n->key, (uint64_t)c->tg->step) >> 32);
}

typedef struct drop_job {
    uint32_t key, thresh;
    float scale;
    const float *in;
    float *out;
    bool overwrite;
} drop_job;

static void drop_fwd_range(void *p, int64_t b, int64_t e) {
    const drop_job *j = p;
    tr_vec_dropout(j->in + b, j->out + b, b, e - b, j->key, j->thresh, j->scale);
}

static void drop_bwd_range(void *p, int64_t b, int64_t e) {
    const drop_job *j = p;
    tr_vec_dropout_bwd(j->in + b, j->out + b, b, e - b, j->key, j->thresh, j->scale, j->overwrite);
}

static drop_job drop_setup(const tr_ctx *c) {
    drop_job j;
    memset(&j, 0, sizeof(j));
    const float rate = c->n->rate;
    j.thresh = (uint32_t)((double)rate * 16777216.0);
    j.scale = 1.0f / (1.0f - rate);
    j.key = dropout_key(c);
    return j;
}

mopt_status tr_dropout_forward(tr_ctx *c, mopt_error *err) {
    (void)err;
    const tval *xv = &c->tg->vals[c->n->in[0]];
    const int64_t n = (int64_t)c->batch * xv->per;
    if (!c->training || c->n->rate <= 0.0f) {
        memcpy(c->y, xv->data, (size_t)n * sizeof(float));
        return MOPT_OK;
    }
    drop_job j = drop_setup(c);
    j.in = xv->data;
    j.out = c->y;
    tr_pool_run(c->pool, n, 4096, drop_fwd_range, &j);
    return MOPT_OK;
}

mopt_status tr_dropout_backward(tr_ctx *c, mopt_error *err) {
    (void)err;
    tval *xv = &c->tg->vals[c->n->in[0]];
    if (!xv->grad) return MOPT_OK;
    const int64_t n = (int64_t)c->batch * xv->per;
    if (c->n->rate <= 0.0f) {
        if (c->dx_overwrite)
            memcpy(xv->grad, c->dy, (size_t)n * sizeof(float));
        else
            tr_vec_add(xv->grad, c->dy, n);
        return MOPT_OK;
    }
    drop_job j = drop_setup(c);
    j.in = c->dy;
    j.out = xv->grad;
    j.overwrite = c->dx_overwrite;
    tr_pool_run(c->pool, n, 4096, drop_bwd_range, &j);
    return MOPT_OK;
}
