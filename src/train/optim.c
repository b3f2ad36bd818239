/* optim.c - optimizers (SGD with momentum / Nesterov, Adam, AdamW) and
 * learning-rate schedules.
 *
 * Update rules (g = gradient after clipping; wd = weight decay, applied to
 * variables flagged MOPT_TVAR_DECAY):
 *   SGD:    g += wd*w;  v = mu*v + g;  w -= lr * (nesterov ? g + mu*v : v)
 *           (PyTorch's formulation; mu = 0 is plain SGD)
 *   Adam:   g += wd*w;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
 *           w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
 *   AdamW:  Adam without the g += wd*w, then w -= lr*wd*w (decoupled,
 *           Loshchilov & Hutter; as Keras and PyTorch apply it)
 * t is the 1-based step count. Gradient clipping scales all gradients by
 * clip / max(norm, clip) with the global L2 norm summed in double in
 * variable order (deterministic).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/optim_internal.h"
#include "train/vec.h"

mopt_optim_params mopt_optim_default_params(mopt_optim_kind kind) {
    mopt_optim_params p;
    memset(&p, 0, sizeof(p));
    p.kind = kind;
    p.momentum = 0.9f;
    p.nesterov = false;
    p.beta1 = 0.9f;
    p.beta2 = 0.999f;
    p.eps = 1e-7f;
    p.weight_decay = 0.0f;
    p.clip_norm = 0.0f;
    return p;
}

int mopt_optim_kind_from_name(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "sgd")) return MOPT_OPTIM_SGD;
    if (!strcmp(name, "adam")) return MOPT_OPTIM_ADAM;
    if (!strcmp(name, "adamw")) return MOPT_OPTIM_ADAMW;
    return -1;
}

const char *mopt_optim_kind_name(mopt_optim_kind kind) {
    switch (kind) {
    case MOPT_OPTIM_SGD: return "sgd";
    case MOPT_OPTIM_ADAM: return "adam";
    case MOPT_OPTIM_ADAMW: return "adamw";
    default: return "unknown";
    }
}

int tr_optim_slots(const mopt_optimizer *o) { return o->p.kind == MOPT_OPTIM_SGD ? 1 : 2; }

static mopt_status check_params(const mopt_optim_params *p, mopt_error *err) {
    if (p->kind != MOPT_OPTIM_SGD && p->kind != MOPT_OPTIM_ADAM && p->kind != MOPT_OPTIM_ADAMW)
        return mopt_error_set(err, MOPT_ERR_ARG, "optimizer: unknown kind %d", (int)p->kind);
    if (!(p->momentum >= 0.0f && p->momentum < 1.0f))
        return mopt_error_set(err, MOPT_ERR_ARG, "optimizer: momentum %g outside [0, 1)",
                              (double)p->momentum);
    if (!(p->beta1 >= 0.0f && p->beta1 < 1.0f) || !(p->beta2 >= 0.0f && p->beta2 < 1.0f))
        return mopt_error_set(err, MOPT_ERR_ARG, "optimizer: beta1/beta2 must be in [0, 1)");
    if (!(p->eps > 0.0f) || !(p->weight_decay >= 0.0f) || !(p->clip_norm >= 0.0f) ||
        !isfinite(p->weight_decay) || !isfinite(p->clip_norm))
        return mopt_error_set(err, MOPT_ERR_ARG,
                              "optimizer: eps must be > 0, weight decay and clip norm >= 0");
    return MOPT_OK;
}

mopt_status mopt_optimizer_create(mopt_tgraph *tg, const mopt_optim_params *p,
                                  mopt_optimizer **out, mopt_error *err) {
    if (!tg || !p || !out) return mopt_error_set(err, MOPT_ERR_ARG, "optimizer: NULL argument");
    mopt_status st = check_params(p, err);
    if (st != MOPT_OK) return st;
    mopt_optimizer *o = calloc(1, sizeof(*o));
    if (!o) return mopt_error_set(err, MOPT_ERR_NOMEM, "optimizer: out of memory");
    o->tg = tg;
    o->p = *p;
    *out = o;
    return MOPT_OK;
}

void mopt_optimizer_free(mopt_optimizer *o) {
    if (!o) return;
    for (int i = 0; i < o->n_slots; i++) {
        tr_free(o->m[i]);
        tr_free(o->v[i]);
    }
    free(o->m);
    free(o->v);
    free(o);
}

int64_t mopt_optimizer_steps(const mopt_optimizer *o) { return o ? o->t : 0; }

mopt_status tr_optim_ensure(mopt_optimizer *o, mopt_error *err) {
    int n = mopt_tgraph_num_vars(o->tg);
    if (n <= o->n_slots) return MOPT_OK;
    float **nm = realloc(o->m, (size_t)n * sizeof(*nm));
    if (!nm) return mopt_error_set(err, MOPT_ERR_NOMEM, "optimizer: out of memory");
    o->m = nm;
    float **nv = realloc(o->v, (size_t)n * sizeof(*nv));
    if (!nv) return mopt_error_set(err, MOPT_ERR_NOMEM, "optimizer: out of memory");
    o->v = nv;
    for (int i = o->n_slots; i < n; i++) o->m[i] = o->v[i] = NULL;
    for (int i = o->n_slots; i < n; i++) {
        const mopt_tvar *v = mopt_tgraph_var_c(o->tg, i);
        if (!v->grad) continue;
        o->m[i] = tr_calloc((size_t)v->numel * sizeof(float));
        if (tr_optim_slots(o) > 1) o->v[i] = tr_calloc((size_t)v->numel * sizeof(float));
        if (!o->m[i] || (tr_optim_slots(o) > 1 && !o->v[i])) {
            for (int j = o->n_slots; j <= i; j++) {
                tr_free(o->m[j]);
                tr_free(o->v[j]);
                o->m[j] = o->v[j] = NULL;
            }
            return mopt_error_set(err, MOPT_ERR_NOMEM, "optimizer: out of memory");
        }
    }
    o->n_slots = n;
    return MOPT_OK;
}

typedef struct opt_job {
    float *w;
    const float *g;
    float *m, *v;
    float gscale, dec, mu, lr, b1, b2, c1, c2, eps;
    bool decoupled, sgd, nesterov;
} opt_job;

static void opt_range(void *p, int64_t b, int64_t e) {
    const opt_job *j = p;
    if (j->sgd)
        tr_vec_sgd(j->w + b, j->g + b, j->m + b, e - b, j->gscale, j->dec, j->mu, j->nesterov,
                   j->lr);
    else
        tr_vec_adam(j->w + b, j->g + b, j->m + b, j->v + b, e - b, j->gscale, j->dec, j->decoupled,
                    j->lr, j->b1, j->b2, j->c1, j->c2, j->eps);
}

mopt_status mopt_optimizer_step(mopt_optimizer *o, float lr, double *grad_norm, mopt_error *err) {
    if (!o) return mopt_error_set(err, MOPT_ERR_ARG, "optimizer: NULL");
    if (!isfinite(lr) || lr < 0.0f)
        return mopt_error_set(err, MOPT_ERR_ARG, "optimizer: learning rate %g is not valid",
                              (double)lr);
    mopt_status st = tr_optim_ensure(o, err);
    if (st != MOPT_OK) return st;
    mopt_tgraph *tg = o->tg;
    const int n = mopt_tgraph_num_vars(tg);
    double ss = 0.0;
    for (int i = 0; i < n; i++) {
        const mopt_tvar *v = mopt_tgraph_var_c(tg, i);
        if (!(v->flags & MOPT_TVAR_TRAINABLE) || !v->grad) continue;
        /* fixed 4096-element blocks: the sum is independent of threads and ISA */
        for (int64_t k = 0; k < v->numel; k += 4096)
            ss += tr_vec_sumsq(v->grad + k, v->numel - k < 4096 ? v->numel - k : 4096);
    }
    double norm = sqrt(ss);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm))
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "optimizer: gradient norm is not finite (diverged training?)");
    float gscale = 1.0f;
    if (o->p.clip_norm > 0.0f && norm > o->p.clip_norm) gscale = (float)(o->p.clip_norm / norm);
    o->t++;
    const float wd = o->p.weight_decay, mu = o->p.momentum;
    const float b1 = o->p.beta1, b2 = o->p.beta2, eps = o->p.eps;
    const double bc1 = 1.0 - pow((double)b1, (double)o->t);
    const double bc2 = 1.0 - pow((double)b2, (double)o->t);
    tr_pool *pool = tr_get_pool(tg);
    for (int i = 0; i < n; i++) {
        mopt_tvar *v = mopt_tgraph_var(tg, i);
        if (!(v->flags & MOPT_TVAR_TRAINABLE) || !v->grad) continue;
        float *w = v->data;
        const float *g = v->grad;
        float *m = o->m[i], *s2 = o->v[i];
        const float dec = (v->flags & MOPT_TVAR_DECAY) ? wd : 0.0f;
        const int64_t ne = v->numel;
        /* element-wise: any split over threads gives the same result */
        opt_job j = {w, g, m, s2, gscale, dec, mu, lr, b1, b2, (float)(1.0 / bc1),
                     (float)(1.0 / bc2), eps, o->p.kind == MOPT_OPTIM_ADAMW,
                     o->p.kind == MOPT_OPTIM_SGD, o->p.nesterov};
        tr_pool_run(ne >= 65536 ? pool : NULL, ne, 16384, opt_range, &j);
    }
    return MOPT_OK;
}

/* ---- schedules ---- */

mopt_lr_schedule mopt_lr_default_schedule(void) {
    mopt_lr_schedule s;
    memset(&s, 0, sizeof(s));
    s.kind = MOPT_LR_COSINE;
    s.base_lr = 1e-3f;
    s.warmup_steps = 0;
    s.step_size = 1000;
    s.gamma = 0.1f;
    s.total_steps = 0;
    s.min_lr = 0.0f;
    return s;
}

int mopt_lr_kind_from_name(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "constant")) return MOPT_LR_CONSTANT;
    if (!strcmp(name, "step")) return MOPT_LR_STEP;
    if (!strcmp(name, "cosine")) return MOPT_LR_COSINE;
    return -1;
}

float mopt_lr_at(const mopt_lr_schedule *s, int64_t step) {
    if (step < 0) step = 0;
    const double base = s->base_lr;
    if (s->warmup_steps > 0 && step < s->warmup_steps)
        return (float)(base * (double)(step + 1) / (double)s->warmup_steps);
    const int64_t t = step - (s->warmup_steps > 0 ? s->warmup_steps : 0);
    switch (s->kind) {
    case MOPT_LR_STEP: {
        int64_t k = s->step_size > 0 ? t / s->step_size : 0;
        return (float)(base * pow((double)s->gamma, (double)k));
    }
    case MOPT_LR_COSINE: {
        int64_t span = s->total_steps - (s->warmup_steps > 0 ? s->warmup_steps : 0);
        if (span <= 0) return (float)base;
        double f = (double)t / (double)span;
        if (f > 1.0) f = 1.0;
        return (float)(s->min_lr + (base - s->min_lr) * 0.5 * (1.0 + cos(3.141592653589793 * f)));
    }
    default: return (float)base;
    }
}
