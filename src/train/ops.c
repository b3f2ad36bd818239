/* ops.c - op dispatch, activations, broadcasting binary ops, shape ops,
 * pooling, MEAN and SOFTMAX: forward and backward.
 *
 * Backward conventions: c->dy is the gradient of this node's output (the op
 * may overwrite it: every consumer has already run); input gradients are
 * ACCUMULATED (+=) because a value may feed several nodes, except when the
 * node is the value's only consumer (c->dx_overwrite). Parallel loops split
 * over elements each iteration owns; scatter-adds (pooling) run one image
 * per task in a fixed order, so results are deterministic.
 */
#include <math.h>
#include <string.h>

#include "train/ops_internal.h"
#include "train/vec.h"

/* Per-item parallel loops: f(c, aux, i) for i in [0, n). */
typedef void (*item_fn)(const tr_ctx *c, const void *aux, int64_t i);
typedef struct item_job {
    const tr_ctx *c;
    const void *aux;
    item_fn f;
} item_job;

static void item_range(void *p, int64_t b, int64_t e) {
    const item_job *j = p;
    for (int64_t i = b; i < e; i++) j->f(j->c, j->aux, i);
}

static void par_items(const tr_ctx *c, int64_t n, item_fn f, const void *aux) {
    item_job j = {c, aux, f};
    tr_pool_run(c->pool, n, 1, item_range, &j);
}

/* Element-wise loops: chunks of at least this many elements. */
#define EW_CHUNK 4096

/* ---- activations ---- */

static inline float hswish(float x) {
    float r = x + 3.0f;
    r = r < 0.0f ? 0.0f : r > 6.0f ? 6.0f : r;
    return x * r / 6.0f;
}

typedef struct act_job {
    mopt_activation act;
    float *y, *dy;
    const float *cy;
} act_job;

static void act_fwd_range(void *p, int64_t b, int64_t e) {
    const act_job *j = p;
    float *y = j->y;
    switch (j->act) {
    case MOPT_ACT_RELU:
        for (int64_t i = b; i < e; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
        break;
    case MOPT_ACT_RELU6:
        for (int64_t i = b; i < e; i++) y[i] = y[i] > 0.0f ? (y[i] < 6.0f ? y[i] : 6.0f) : 0.0f;
        break;
    case MOPT_ACT_RELU_N1_TO_1:
        for (int64_t i = b; i < e; i++) y[i] = y[i] > -1.0f ? (y[i] < 1.0f ? y[i] : 1.0f) : -1.0f;
        break;
    case MOPT_ACT_TANH:
        for (int64_t i = b; i < e; i++) y[i] = tanhf(y[i]);
        break;
    default: break;
    }
}

void tr_act_forward(mopt_activation act, float *y, int64_t n, tr_pool *pool) {
    if (act == MOPT_ACT_NONE) return;
    act_job j = {act, y, NULL, NULL};
    tr_pool_run(pool, n, EW_CHUNK, act_fwd_range, &j);
}

/* The derivative is read from the output: ReLU-type clamps pass the
 * gradient strictly inside their range (0 at the kinks, as TF does). */
static void act_bwd_range(void *p, int64_t b, int64_t e) {
    const act_job *j = p;
    const float *y = j->cy;
    float *dy = j->dy;
    switch (j->act) {
    case MOPT_ACT_RELU:
        for (int64_t i = b; i < e; i++) dy[i] = y[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case MOPT_ACT_RELU6:
        for (int64_t i = b; i < e; i++) dy[i] = (y[i] > 0.0f && y[i] < 6.0f) ? dy[i] : 0.0f;
        break;
    case MOPT_ACT_RELU_N1_TO_1:
        for (int64_t i = b; i < e; i++) dy[i] = (y[i] > -1.0f && y[i] < 1.0f) ? dy[i] : 0.0f;
        break;
    case MOPT_ACT_TANH:
        for (int64_t i = b; i < e; i++) dy[i] *= 1.0f - y[i] * y[i];
        break;
    default: break;
    }
}

void tr_act_backward(mopt_activation act, const float *y, float *dy, int64_t n, tr_pool *pool) {
    if (act == MOPT_ACT_NONE) return;
    act_job j = {act, NULL, dy, y};
    tr_pool_run(pool, n, EW_CHUNK, act_bwd_range, &j);
}

typedef struct unary_job {
    int kind;
    bool ow;
    const float *x, *y, *dy;
    float *out;
} unary_job;

static void unary_fwd_range(void *p, int64_t b, int64_t e) {
    const unary_job *j = p;
    const float *x = j->x;
    float *y = j->out;
    switch (j->kind) {
    case MOPT_OP_RELU:
        for (int64_t i = b; i < e; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case MOPT_OP_RELU6:
        for (int64_t i = b; i < e; i++) y[i] = x[i] > 0.0f ? (x[i] < 6.0f ? x[i] : 6.0f) : 0.0f;
        break;
    case MOPT_OP_LOGISTIC:
        for (int64_t i = b; i < e; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case MOPT_OP_TANH:
        for (int64_t i = b; i < e; i++) y[i] = tanhf(x[i]);
        break;
    case MOPT_OP_HARD_SWISH:
        for (int64_t i = b; i < e; i++) y[i] = hswish(x[i]);
        break;
    default: break;
    }
}

static mopt_status unary_forward(tr_ctx *c) {
    const tval *xv = &c->tg->vals[c->n->in[0]];
    unary_job j = {c->n->kind, false, xv->data, NULL, NULL, c->y};
    tr_pool_run(c->pool, (int64_t)c->batch * xv->per, EW_CHUNK, unary_fwd_range, &j);
    return MOPT_OK;
}

/* dx (+)= dy * f'(x, y): written when the node is the only consumer.
 * RESHAPE uses the identity (kind 0). */
#define UNARY_BWD(EXPR)                                                 \
    do {                                                                \
        if (j->ow)                                                      \
            for (int64_t i = b; i < e; i++) dx[i] = (EXPR);             \
        else                                                            \
            for (int64_t i = b; i < e; i++) dx[i] += (EXPR);            \
    } while (0)

static void unary_bwd_range(void *p, int64_t b, int64_t e) {
    const unary_job *j = p;
    const float *x = j->x, *y = j->y, *dy = j->dy;
    float *dx = j->out;
    switch (j->kind) {
    case MOPT_OP_RELU: UNARY_BWD(x[i] > 0.0f ? dy[i] : 0.0f); break;
    case MOPT_OP_RELU6: UNARY_BWD((x[i] > 0.0f && x[i] < 6.0f) ? dy[i] : 0.0f); break;
    case MOPT_OP_LOGISTIC: UNARY_BWD(dy[i] * y[i] * (1.0f - y[i])); break;
    case MOPT_OP_TANH: UNARY_BWD(dy[i] * (1.0f - y[i] * y[i])); break;
    case MOPT_OP_HARD_SWISH:
        /* d/dx x*relu6(x+3)/6 = 0 (x < -3), 1 (x > 3), (2x + 3)/6 between. */
        UNARY_BWD(dy[i] * (x[i] < -3.0f ? 0.0f : x[i] > 3.0f ? 1.0f : (2.0f * x[i] + 3.0f) / 6.0f));
        break;
    default: UNARY_BWD(dy[i]); break;
    }
}

static mopt_status unary_backward(tr_ctx *c) {
    tval *xv = &c->tg->vals[c->n->in[0]];
    if (!xv->grad) return MOPT_OK;
    const int kind = c->n->kind == MOPT_OP_RESHAPE ? 0 : c->n->kind;
    unary_job j = {kind, c->dx_overwrite, xv->data, c->y, c->dy, xv->grad};
    tr_pool_run(c->pool, (int64_t)c->batch * xv->per, EW_CHUNK, unary_bwd_range, &j);
    return MOPT_OK;
}

/* ---- broadcasting binary ops ---- */

typedef struct bcast {
    int rank;
    int64_t dims[MOPT_MAX_DIMS];           /* output dims (batch filled in) */
    int64_t sa[MOPT_MAX_DIMS], sb[MOPT_MAX_DIMS]; /* element strides (0 = broadcast) */
    int64_t n;
    bool a_full, b_full;                   /* operand has the output's shape */
} bcast;

static void strides_for(const tval *v, int rank, const int64_t *odims, int batch, int64_t *s,
                        bool *full) {
    int off = rank - v->rank;
    int64_t st = 1;
    *full = off == 0;
    for (int i = rank - 1; i >= 0; i--) {
        int vi = i - off;
        int64_t d = vi >= 0 ? (vi == 0 && v->batched ? batch : v->dims[vi]) : 1;
        s[i] = d == 1 && odims[i] != 1 ? 0 : st;
        if (d != odims[i]) *full = false;
        st *= d;
    }
}

static bcast make_bcast(const tr_ctx *c) {
    const tval *a = &c->tg->vals[c->n->in[0]], *b = &c->tg->vals[c->n->in[1]];
    const tval *o = &c->tg->vals[c->n->out];
    bcast bc;
    bc.rank = o->rank;
    bc.n = 1;
    for (int i = 0; i < o->rank; i++) {
        bc.dims[i] = i == 0 ? c->batch : o->dims[i];
        bc.n *= bc.dims[i];
    }
    strides_for(a, bc.rank, bc.dims, c->batch, bc.sa, &bc.a_full);
    strides_for(b, bc.rank, bc.dims, c->batch, bc.sb, &bc.b_full);
    return bc;
}

/* Offsets of operand a and b for output row `row` (all dims but the last). */
static void row_offsets(const bcast *bc, int64_t row, int64_t *oa, int64_t *ob) {
    int64_t a = 0, b = 0;
    for (int i = bc->rank - 2; i >= 0; i--) {
        int64_t idx = row % bc->dims[i];
        row /= bc->dims[i];
        a += idx * bc->sa[i];
        b += idx * bc->sb[i];
    }
    *oa = a;
    *ob = b;
}

static inline float binop(int kind, float a, float b) {
    return kind == MOPT_OP_ADD ? a + b : kind == MOPT_OP_SUB ? a - b : a * b;
}

typedef struct bin_job {
    const bcast *bc;
    int kind;
    const float *a, *b, *dy, *other;
    float *y, *dst;
    float sign;
} bin_job;

static void bin_full_range(void *p, int64_t b, int64_t e) {
    const bin_job *j = p;
    for (int64_t i = b; i < e; i++) j->y[i] = binop(j->kind, j->a[i], j->b[i]);
}

/* rows of the broadcast output (all dims but the last) */
static void bin_bcast_range(void *p, int64_t b, int64_t e) {
    const bin_job *j = p;
    const bcast *bc = j->bc;
    const int64_t inner = bc->rank > 0 ? bc->dims[bc->rank - 1] : 1;
    const int64_t la = bc->rank > 0 ? bc->sa[bc->rank - 1] : 0;
    const int64_t lb = bc->rank > 0 ? bc->sb[bc->rank - 1] : 0;
    for (int64_t r = b; r < e; r++) {
        int64_t oa, ob;
        row_offsets(bc, r, &oa, &ob);
        float *yr = j->y + r * inner;
        for (int64_t k = 0; k < inner; k++) yr[k] = binop(j->kind, j->a[oa + k * la], j->b[ob + k * lb]);
    }
}

static mopt_status binary_forward(tr_ctx *c) {
    const bcast bc = make_bcast(c);
    bin_job j;
    memset(&j, 0, sizeof(j));
    j.bc = &bc;
    j.kind = c->n->kind;
    j.a = c->tg->vals[c->n->in[0]].data;
    j.b = c->tg->vals[c->n->in[1]].data;
    j.y = c->y;
    if (bc.a_full && bc.b_full) {
        tr_pool_run(c->pool, bc.n, EW_CHUNK, bin_full_range, &j);
    } else {
        const int64_t inner = bc.rank > 0 ? bc.dims[bc.rank - 1] : 1;
        tr_pool_run(c->pool, bc.n / (inner ? inner : 1), 1, bin_bcast_range, &j);
    }
    tr_act_forward(c->n->act, c->y, bc.n, c->pool);
    return MOPT_OK;
}

static void bin_grad_full_range(void *p, int64_t b, int64_t e) {
    const bin_job *j = p;
    if (j->kind == MOPT_OP_MUL)
        for (int64_t i = b; i < e; i++) j->dst[i] += j->dy[i] * j->other[i];
    else
        for (int64_t i = b; i < e; i++) j->dst[i] += j->sign * j->dy[i];
}

/* d(operand) += g(dy, other) where g = dy (ADD, SUB's a), -dy (SUB's b), dy * other (MUL). */
static void binary_grad(const tr_ctx *c, const bcast *bc, int which, float *dst) {
    const int kind = c->n->kind;
    const float *other = c->tg->vals[c->n->in[1 - which]].data;
    const float *dy = c->dy;
    const float sign = (kind == MOPT_OP_SUB && which == 1) ? -1.0f : 1.0f;
    const bool full = which == 0 ? bc->a_full : bc->b_full;
    const bool other_full = which == 0 ? bc->b_full : bc->a_full;
    if (full && (kind != MOPT_OP_MUL || other_full)) {
        bin_job j;
        memset(&j, 0, sizeof(j));
        j.kind = kind;
        j.dy = dy;
        j.other = other;
        j.dst = dst;
        j.sign = sign;
        tr_pool_run(c->pool, bc->n, EW_CHUNK, bin_grad_full_range, &j);
        return;
    }
    /* General broadcast: serial (fixed order) accumulation. */
    const int64_t inner = bc->rank > 0 ? bc->dims[bc->rank - 1] : 1;
    const int64_t rows = bc->n / (inner ? inner : 1);
    const int64_t *sme = which == 0 ? bc->sa : bc->sb;
    const int64_t *sot = which == 0 ? bc->sb : bc->sa;
    const int64_t lme = bc->rank > 0 ? sme[bc->rank - 1] : 0;
    const int64_t lot = bc->rank > 0 ? sot[bc->rank - 1] : 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t oa, ob;
        row_offsets(bc, r, &oa, &ob);
        int64_t ome = which == 0 ? oa : ob, oot = which == 0 ? ob : oa;
        const float *dr = dy + r * inner;
        for (int64_t j = 0; j < inner; j++) {
            float g = kind == MOPT_OP_MUL ? dr[j] * other[oot + j * lot] : sign * dr[j];
            dst[ome + j * lme] += g;
        }
    }
}

static mopt_status binary_backward(tr_ctx *c) {
    const bcast bc = make_bcast(c);
    tr_act_backward(c->n->act, c->y, c->dy, bc.n, c->pool);
    for (int which = 0; which < 2; which++) {
        tval *v = &c->tg->vals[c->n->in[which]];
        if (v->grad) binary_grad(c, &bc, which, v->grad);
    }
    return MOPT_OK;
}

/* ---- concatenation ---- */

static void concat_geom(const tr_ctx *c, int64_t *outer, int64_t *tail) {
    const tval *o = &c->tg->vals[c->n->out];
    int axis = c->n->p.axis;
    int64_t ou = c->batch, t = 1;
    for (int i = 1; i < axis; i++) ou *= o->dims[i];
    for (int i = axis + 1; i < o->rank; i++) t *= o->dims[i];
    *outer = ou;
    *tail = t;
}

typedef struct cat_aux {
    int64_t orow, tail;
} cat_aux;

static void concat_fwd_item(const tr_ctx *c, const void *aux, int64_t r) {
    const cat_aux *a = aux;
    int64_t off = 0;
    for (int i = 0; i < c->n->n_in; i++) {
        const tval *x = &c->tg->vals[c->n->in[i]];
        const int64_t len = (int64_t)x->dims[c->n->p.axis] * a->tail;
        memcpy(c->y + r * a->orow + off, x->data + r * len, (size_t)len * sizeof(float));
        off += len;
    }
}

static void concat_bwd_item(const tr_ctx *c, const void *aux, int64_t r) {
    const cat_aux *a = aux;
    int64_t off = 0;
    for (int i = 0; i < c->n->n_in; i++) {
        const tval *x = &c->tg->vals[c->n->in[i]];
        const int64_t len = (int64_t)x->dims[c->n->p.axis] * a->tail;
        if (x->grad) tr_vec_add(x->grad + r * len, c->dy + r * a->orow + off, len);
        off += len;
    }
}

static mopt_status concat_forward(tr_ctx *c) {
    int64_t outer, tail;
    concat_geom(c, &outer, &tail);
    const tval *o = &c->tg->vals[c->n->out];
    cat_aux a = {(int64_t)o->dims[c->n->p.axis] * tail, tail};
    par_items(c, outer, concat_fwd_item, &a);
    tr_act_forward(c->n->act, c->y, outer * a.orow, c->pool);
    return MOPT_OK;
}

static mopt_status concat_backward(tr_ctx *c) {
    int64_t outer, tail;
    concat_geom(c, &outer, &tail);
    const tval *o = &c->tg->vals[c->n->out];
    cat_aux a = {(int64_t)o->dims[c->n->p.axis] * tail, tail};
    tr_act_backward(c->n->act, c->y, c->dy, outer * a.orow, c->pool);
    par_items(c, outer, concat_bwd_item, &a);
    return MOPT_OK;
}

/* ---- generic N-d index walks (PAD, TRANSPOSE, MEAN), one image per item ---- */

static void full_dims(const tval *v, int batch, int64_t *d) {
    for (int i = 0; i < MOPT_MAX_DIMS; i++)
        d[i] = i < v->rank ? (i == 0 && v->batched ? batch : v->dims[i]) : 1;
}

static void row_major_strides(const int64_t *d, int rank, int64_t *s) {
    int64_t st = 1;
    for (int i = rank - 1; i >= 0; i--) {
        s[i] = st;
        st *= d[i];
    }
}

/* Input element e of image b maps to output offset b*ostride + sum idx_i * map_i
 * (+ shift_i * map_i for PAD). MEAN adds, PAD/TRANSPOSE copy. */
typedef struct walk_aux {
    int rank;
    int64_t xd[MOPT_MAX_DIMS], map[MOPT_MAX_DIMS], shift[MOPT_MAX_DIMS];
    int64_t per, ostride;
    bool backward, mean;
    float inv;
    const float *x;
    float *dx;
} walk_aux;

static void walk_item(const tr_ctx *c, const void *aux, int64_t b) {
    const walk_aux *w = aux;
    float *yb = c->y + b * w->ostride;
    const float *dyb = c->dy ? c->dy + b * w->ostride : NULL;
    if (w->mean && !w->backward) memset(yb, 0, (size_t)w->ostride * sizeof(float));
    for (int64_t e = 0; e < w->per; e++) {
        int64_t rem = e, off = 0;
        for (int i = w->rank - 1; i >= 1; i--) {
            const int64_t idx = rem % w->xd[i];
            rem /= w->xd[i];
            off += (idx + w->shift[i]) * w->map[i];
        }
        const int64_t xi = b * w->per + e;
        if (w->backward)
            w->dx[xi] += w->mean ? dyb[off] * w->inv : dyb[off];
        else if (w->mean)
            yb[off] += w->x[xi];
        else
            yb[off] = w->x[xi];
    }
    if (w->mean && !w->backward)
        for (int64_t j = 0; j < w->ostride; j++) yb[j] *= w->inv;
}

static mopt_status walk_run(tr_ctx *c, bool backward) {
    const tval *xv = &c->tg->vals[c->n->in[0]], *ov = &c->tg->vals[c->n->out];
    walk_aux w;
    memset(&w, 0, sizeof(w));
    w.rank = xv->rank;
    w.per = xv->per;
    w.ostride = ov->per;
    w.backward = backward;
    w.x = xv->data;
    w.dx = c->tg->vals[c->n->in[0]].grad;
    if (backward && !w.dx) return MOPT_OK;
    full_dims(xv, c->batch, w.xd);
    int64_t od[MOPT_MAX_DIMS], os[MOPT_MAX_DIMS];
    full_dims(ov, c->batch, od);
    row_major_strides(od, ov->rank, os);
    switch (c->n->kind) {
    case MOPT_OP_PAD:
        for (int i = 0; i < w.rank; i++) {
            w.map[i] = os[i];
            w.shift[i] = c->n->p.pad.before[i];
        }
        if (!backward) memset(c->y, 0, (size_t)((int64_t)c->batch * ov->per) * sizeof(float));
        break;
    case MOPT_OP_TRANSPOSE:
        /* input axis perm[i] goes to output axis i */
        for (int i = 0; i < ov->rank; i++) w.map[c->n->p.perm[i]] = os[i];
        break;
    default: { /* MEAN: the output keeps the non-reduced axes in order */
        int64_t kd[MOPT_MAX_DIMS], ks[MOPT_MAX_DIMS], count = 1;
        for (int i = 0; i < w.rank; i++) {
            kd[i] = c->n->p.mean.axes[i] ? 1 : w.xd[i];
            if (c->n->p.mean.axes[i]) count *= w.xd[i];
        }
        row_major_strides(kd, w.rank, ks);
        for (int i = 0; i < w.rank; i++) w.map[i] = c->n->p.mean.axes[i] ? 0 : ks[i];
        w.mean = true;
        w.inv = 1.0f / (float)count;
        break;
    }
    }
    par_items(c, c->batch, walk_item, &w);
    return MOPT_OK;
}

/* ---- pooling ----
 * As TFLite: windows are clipped to the input; AVERAGE divides by the number
 * of in-bounds elements; MAX keeps the first maximum (its input index is
 * saved for backward). */

typedef struct pgeom {
    int B, H, W, C, OH, OW, kh, kw, sh, sw, pt, pl;
} pgeom;

static pgeom pool_geom(const tr_ctx *c) {
    const tval *x = &c->tg->vals[c->n->in[0]], *y = &c->tg->vals[c->n->out];
    const tr_pool_p *p = &c->n->p.pool;
    pgeom g = {c->batch, x->dims[1], x->dims[2], x->dims[3], y->dims[1], y->dims[2],
               p->kh,    p->kw,      p->sh,      p->sw,      p->pad_top, p->pad_left};
    return g;
}

/* one output row (image b, row oy) per item */
static void pool_fwd_item(const tr_ctx *c, const void *aux, int64_t r) {
    const pgeom g = *(const pgeom *)aux;
    const float *x = c->tg->vals[c->n->in[0]].data;
    float *y = c->y;
    const int b = (int)(r / g.OH), oy = (int)(r % g.OH);
    const int y0 = oy * g.sh - g.pt;
    const int ys = y0 < 0 ? 0 : y0, ye = y0 + g.kh > g.H ? g.H : y0 + g.kh;
    const float *xb = x + (int64_t)b * g.H * g.W * g.C;
    if (c->n->kind == MOPT_OP_MAX_POOL_2D) {
        int32_t *arg = tr_pool_args(c->n);
        tr_vec_maxpool_row(xb, g.H, g.W, g.C, ys, ye, g.OW, g.sw, g.kw, g.pl, y + r * g.OW * g.C,
                           arg + r * g.OW * g.C);
        return;
    }
    for (int ox = 0; ox < g.OW; ox++) {
        const int x0 = ox * g.sw - g.pl;
        const int xs = x0 < 0 ? 0 : x0, xe = x0 + g.kw > g.W ? g.W : x0 + g.kw;
        float *yo = y + (r * g.OW + ox) * g.C;
        for (int ch = 0; ch < g.C; ch++) yo[ch] = 0.0f;
        for (int iy = ys; iy < ye; iy++)
            for (int ix = xs; ix < xe; ix++)
                tr_vec_add(yo, xb + ((int64_t)iy * g.W + ix) * g.C, g.C);
        const int cnt = (ye - ys) * (xe - xs);
        const float inv = cnt > 0 ? 1.0f / (float)cnt : 0.0f;
        for (int ch = 0; ch < g.C; ch++) yo[ch] = cnt > 0 ? yo[ch] * inv : 0.0f;
    }
}

static mopt_status pool_forward(tr_ctx *c) {
    /* the batch norm before it already wrote this output (ops_norm.c) */
    if (c->n->kind == MOPT_OP_MAX_POOL_2D && *tr_aux_flag(c->n)) return MOPT_OK;
    const pgeom g = pool_geom(c);
    par_items(c, (int64_t)g.B * g.OH, pool_fwd_item, &g);
    tr_act_forward(c->n->act, c->y, (int64_t)g.B * g.OH * g.OW * g.C, c->pool);
    return MOPT_OK;
}

/* one image per item: windows may overlap, so the scatter stays in order */
static void pool_bwd_item(const tr_ctx *c, const void *aux, int64_t bi) {
    const pgeom g = *(const pgeom *)aux;
    const int b = (int)bi;
    float *dxb = c->tg->vals[c->n->in[0]].grad + (int64_t)b * g.H * g.W * g.C;
    const int32_t *arg = tr_pool_args(c->n);
    const bool is_max = c->n->kind == MOPT_OP_MAX_POOL_2D;
    /* sole consumer of its input (max pooling only): dx is written, so it
     * starts from zeros here, one image at a time while it is in cache */
    if (c->dx_overwrite) memset(dxb, 0, (size_t)g.H * g.W * g.C * sizeof(float));
    /* windows that never overlap: a vectorised compare-and-route per window */
    const bool disjoint = g.sh >= g.kh && g.sw >= g.kw;
    const float *dy = c->dy;
    for (int oy = 0; oy < g.OH; oy++) {
        const int y0 = oy * g.sh - g.pt;
        const int ys = y0 < 0 ? 0 : y0, ye = y0 + g.kh > g.H ? g.H : y0 + g.kh;
        for (int ox = 0; ox < g.OW; ox++) {
            const int64_t o = (((int64_t)b * g.OH + oy) * g.OW + ox) * g.C;
            const int x0 = ox * g.sw - g.pl;
            const int xs = x0 < 0 ? 0 : x0, xe = x0 + g.kw > g.W ? g.W : x0 + g.kw;
            if (is_max) {
                if (disjoint) {
                    tr_vec_maxpool_bwd_px(dxb, dy + o, arg + o, g.W, g.C, ys, ye, xs, xe);
                    continue;
                }
                for (int ch = 0; ch < g.C; ch++)
                    if (arg[o + ch] >= 0) dxb[arg[o + ch]] += dy[o + ch];
                continue;
            }
            const int cnt = (ye - ys) * (xe - xs);
            if (cnt <= 0) continue;
            const float inv = 1.0f / (float)cnt;
            for (int iy = ys; iy < ye; iy++)
                for (int ix = xs; ix < xe; ix++) {
                    float *d = dxb + ((int64_t)iy * g.W + ix) * g.C;
                    for (int ch = 0; ch < g.C; ch++) d[ch] += dy[o + ch] * inv;
                }
        }
    }
}

static mopt_status pool_backward(tr_ctx *c) {
    /* fused: the batch norm's backward reads this node's dy directly */
    if (c->n->kind == MOPT_OP_MAX_POOL_2D && *tr_aux_flag(c->n)) return MOPT_OK;
    const pgeom g = pool_geom(c);
    tr_act_backward(c->n->act, c->y, c->dy, (int64_t)g.B * g.OH * g.OW * g.C, c->pool);
    if (!c->tg->vals[c->n->in[0]].grad) return MOPT_OK;
    par_items(c, g.B, pool_bwd_item, &g);
    return MOPT_OK;
}

/* ---- softmax (inside a graph; the loss has its own fused version) ---- */

static void softmax_fwd_item(const tr_ctx *c, const void *aux, int64_t r) {
    (void)aux;
    const tval *xv = &c->tg->vals[c->n->in[0]];
    const int64_t inner = xv->dims[xv->rank - 1];
    const float beta = c->n->p.beta;
    const float *xr = xv->data + r * inner;
    float *yr = c->y + r * inner;
    float m = xr[0] * beta;
    for (int64_t j = 1; j < inner; j++)
        if (xr[j] * beta > m) m = xr[j] * beta;
    double s = 0.0;
    for (int64_t j = 0; j < inner; j++) {
        yr[j] = expf(xr[j] * beta - m);
        s += yr[j];
    }
    const float inv = (float)(1.0 / s);
    for (int64_t j = 0; j < inner; j++) yr[j] *= inv;
}

static void softmax_bwd_item(const tr_ctx *c, const void *aux, int64_t r) {
    (void)aux;
    const tval *xv = &c->tg->vals[c->n->in[0]];
    const int64_t inner = xv->dims[xv->rank - 1];
    const float beta = c->n->p.beta;
    const float *yr = c->y + r * inner, *dr = c->dy + r * inner;
    float *dx = xv->grad + r * inner;
    double dot = 0.0;
    for (int64_t j = 0; j < inner; j++) dot += (double)dr[j] * yr[j];
    for (int64_t j = 0; j < inner; j++) dx[j] += beta * yr[j] * (dr[j] - (float)dot);
}

static mopt_status softmax_forward(tr_ctx *c) {
    const tval *xv = &c->tg->vals[c->n->in[0]];
    par_items(c, (int64_t)c->batch * xv->per / xv->dims[xv->rank - 1], softmax_fwd_item, NULL);
    return MOPT_OK;
}

static mopt_status softmax_backward(tr_ctx *c) {
    const tval *xv = &c->tg->vals[c->n->in[0]];
    if (!xv->grad) return MOPT_OK;
    par_items(c, (int64_t)c->batch * xv->per / xv->dims[xv->rank - 1], softmax_bwd_item, NULL);
    return MOPT_OK;
}

/* ---- reshape ---- */

static mopt_status reshape_forward(tr_ctx *c) {
    const tval *xv = &c->tg->vals[c->n->in[0]];
    memcpy(c->y, xv->data, (size_t)((int64_t)c->batch * xv->per) * sizeof(float));
    return MOPT_OK;
}

bool tr_op_can_overwrite_dx(int kind) {
    switch (kind) {
    case MOPT_OP_CONV_2D:
    case MOPT_OP_FULLY_CONNECTED:
    case MOPT_OP_MAX_POOL_2D:
    case MOPT_TNODE_BATCH_NORM:
    case MOPT_TNODE_DROPOUT:
    case MOPT_OP_RESHAPE:
    case MOPT_OP_RELU:
    case MOPT_OP_RELU6:
    case MOPT_OP_LOGISTIC:
    case MOPT_OP_TANH:
    case MOPT_OP_HARD_SWISH: return true;
    default: return false;
    }
}

/* ---- dispatch ---- */

size_t tr_op_aux_bytes(const mopt_tgraph *tg, const tnode *n, int batch) {
    const tval *o = &tg->vals[n->out];
    switch (n->kind) {
    case MOPT_OP_CONV_2D: return TR_AUX_HDR;
    case MOPT_OP_MAX_POOL_2D: return TR_AUX_HDR + (size_t)batch * (size_t)o->per * sizeof(int32_t);
    case MOPT_TNODE_BATCH_NORM:
        return TR_AUX_HDR + (4 + 2 * TR_RED_CHUNKS) * (size_t)o->dims[o->rank - 1] * sizeof(float);
    default: return 0;
    }
}

mopt_status tr_op_forward(tr_ctx *c, mopt_error *err) {
    switch (c->n->kind) {
    case MOPT_OP_CONV_2D: return tr_conv_forward(c, err);
    case MOPT_OP_DEPTHWISE_CONV_2D: return tr_dwconv_forward(c, err);
    case MOPT_OP_FULLY_CONNECTED: return tr_fc_forward(c, err);
    case MOPT_TNODE_BATCH_NORM: return tr_bn_forward(c, err);
    case MOPT_TNODE_DROPOUT: return tr_dropout_forward(c, err);
    case MOPT_OP_RELU:
    case MOPT_OP_RELU6:
    case MOPT_OP_LOGISTIC:
    case MOPT_OP_TANH:
    case MOPT_OP_HARD_SWISH: return unary_forward(c);
    case MOPT_OP_ADD:
    case MOPT_OP_SUB:
    case MOPT_OP_MUL: return binary_forward(c);
    case MOPT_OP_CONCATENATION: return concat_forward(c);
    case MOPT_OP_PAD:
    case MOPT_OP_TRANSPOSE:
    case MOPT_OP_MEAN: return walk_run(c, false);
    case MOPT_OP_RESHAPE: return reshape_forward(c);
    case MOPT_OP_AVERAGE_POOL_2D:
    case MOPT_OP_MAX_POOL_2D: return pool_forward(c);
    case MOPT_OP_SOFTMAX: return softmax_forward(c);
    default:
        return mopt_error_set(err, MOPT_ERR_INTERNAL, "node '%s': no forward for kind %d",
                              tn_name(c->n), c->n->kind);
    }
}

mopt_status tr_op_backward(tr_ctx *c, mopt_error *err) {
    switch (c->n->kind) {
    case MOPT_OP_CONV_2D: return tr_conv_backward(c, err);
    case MOPT_OP_DEPTHWISE_CONV_2D: return tr_dwconv_backward(c, err);
    case MOPT_OP_FULLY_CONNECTED: return tr_fc_backward(c, err);
    case MOPT_TNODE_BATCH_NORM: return tr_bn_backward(c, err);
    case MOPT_TNODE_DROPOUT: return tr_dropout_backward(c, err);
    case MOPT_OP_RELU:
    case MOPT_OP_RELU6:
    case MOPT_OP_LOGISTIC:
    case MOPT_OP_TANH:
    case MOPT_OP_HARD_SWISH: return unary_backward(c);
    case MOPT_OP_ADD:
    case MOPT_OP_SUB:
    case MOPT_OP_MUL: return binary_backward(c);
    case MOPT_OP_CONCATENATION: return concat_backward(c);
    case MOPT_OP_PAD:
    case MOPT_OP_TRANSPOSE:
    case MOPT_OP_MEAN: return walk_run(c, true);
    case MOPT_OP_RESHAPE: return unary_backward(c);
    case MOPT_OP_AVERAGE_POOL_2D:
    case MOPT_OP_MAX_POOL_2D: return pool_backward(c);
    case MOPT_OP_SOFTMAX: return softmax_backward(c);
    default:
        return mopt_error_set(err, MOPT_ERR_INTERNAL, "node '%s': no backward for kind %d",
                              tn_name(c->n), c->n->kind);
    }
}
