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

/* Saved by forward for backward (node aux): mean[C], invstd[C]. */
static float *saved(tr_ctx *c) { return (float *)c->n->aux; }

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
    /* scratch: 2*nch*C floats of partial sums, then k[C], o[C] */
    float *buf = tr_alloc((size_t)(2 * j.nch * C + 2 * C) * sizeof(float));
    if (!buf) return mopt_error_set(err, MOPT_ERR_NOMEM, "node '%s': out of memory", n->name);
    float *k = buf + 2 * j.nch * C, *o = k + C;
    if (batch_stats) {
        /* sums of x - x[row 0]: a value from the data keeps E[d^2] - E[d]^2
         * free of cancellation when the mean is large against the spread */
        j.shift = j.x;
        j.part = buf;
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
    j.k = k;
    j.o = o;
    j.act = (act == MOPT_ACT_RELU || act == MOPT_ACT_RELU6) ? (int)act : 0;
    tr_pool_run(c->pool, j.nch, 1, bn_fwd_range, &j);
    if (act != MOPT_ACT_NONE && j.act == 0) tr_act_forward(act, c->y, j.rows * C, c->pool);
    tr_free(buf);
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
    if (act != MOPT_ACT_NONE && j.act == 0) tr_act_backward(act, c->y, c->dy, j.rows * C, c->pool);
    float *buf = tr_alloc((size_t)(2 * j.nch * C + 3 * C) * sizeof(float));
    if (!buf) return mopt_error_set(err, MOPT_ERR_NOMEM, "node '%s': out of memory", n->name);
    j.part = buf;
    tr_pool_run(c->pool, j.nch, 1, bn_reduce_range, &j);
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
    if (xv->grad) {
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
