/* build.c - node builders of the training graph: shape inference, checks
 * and variable creation for every node kind. Used by the architecture
 * builder (arch.c) and the importer (import.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train/tg_internal.h"

static mopt_status act_ok(mopt_activation act, const char *what, mopt_error *err) {
    switch (act) {
    case MOPT_ACT_NONE:
    case MOPT_ACT_RELU:
    case MOPT_ACT_RELU_N1_TO_1:
    case MOPT_ACT_RELU6:
    case MOPT_ACT_TANH: return MOPT_OK;
    default:
        return mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                              "%s: fused activation %s cannot be trained", what,
                              mopt_activation_name(act));
    }
}

static const tval *batched_in(mopt_tgraph *tg, int in, int rank, const char *what,
                              mopt_error *err) {
    if (in < 0 || in >= tg->n_vals) {
        mopt_error_set(err, MOPT_ERR_INTERNAL, "%s: bad input value %d", what, in);
        return NULL;
    }
    const tval *v = &tg->vals[in];
    if (!v->batched) {
        mopt_error_set(err, MOPT_ERR_UNSUPPORTED, "%s: input is a constant, not an activation",
                       what);
        return NULL;
    }
    if (rank > 0 && v->rank != rank) {
        mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: input has rank %d, expected %d", what,
                       v->rank, rank);
        return NULL;
    }
    return v;
}

static int fail_nomem(mopt_error *err, const char *what) {
    mopt_error_set(err, MOPT_ERR_NOMEM, "%s: out of memory", what);
    return -1;
}

/* Adds "<node>/<suffix>" variable to node. */
static int node_var(mopt_tgraph *tg, int node, const char *suffix, mopt_tvar_role role,
                    unsigned flags, int rank, const int32_t *dims) {
    char name[200];
    snprintf(name, sizeof(name), "%.120s/%.40s", tg->nodes[node].name, suffix);
    /* Keep names unique even if a node name contains a '/' clash. */
    if (mopt_tgraph_find_var(tg, name) >= 0) {
        char base[170];
        snprintf(base, sizeof(base), "%.160s", name);
        for (int k = 2; mopt_tgraph_find_var(tg, name) >= 0; k++)
            snprintf(name, sizeof(name), "%.160s_%d", base, k);
    }
    return tg_add_var(tg, name, role, flags, node, rank, dims);
}

int tgb_conv(mopt_tgraph *tg, int in, const char *name, int oc, int kh, int kw, int sh, int sw,
             int dh, int dw, mopt_padding pad, bool bias, mopt_activation act, mopt_error *err) {
    const char *what = name ? name : "conv";
    const tval *x = batched_in(tg, in, 4, what, err);
    if (!x) return -1;
    if (oc < 1 || kh < 1 || kw < 1 || sh < 1 || sw < 1 || dh < 1 || dw < 1) {
        mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                       "%s: channels, kernel, stride and dilation must be >= 1", what);
        return -1;
    }
    if (act_ok(act, what, err) != MOPT_OK) return -1;
    int32_t pt = 0, pl = 0;
    int32_t oh = mopt_conv_out_size(pad, x->dims[1], kh, sh, dh, &pt);
    int32_t ow = mopt_conv_out_size(pad, x->dims[2], kw, sw, dw, &pl);
    if (oh <= 0 || ow <= 0) {
        mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: %dx%d kernel does not fit the %dx%d input",
                       what, kh, kw, (int)x->dims[1], (int)x->dims[2]);
        return -1;
    }
    int32_t ic = x->dims[3];
    int32_t od[4] = {1, oh, ow, oc};
    int id = tg_add_node(tg, MOPT_OP_CONV_2D, name, &in, 1, 4, od);
    if (id < 0) return fail_nomem(err, what);
    tnode *n = &tg->nodes[id];
    n->act = act;
    n->p.conv = (tr_conv_p){kh, kw, sh, sw, dh, dw, pad, pt, pl, 1};
    int32_t wd[4] = {oc, kh, kw, ic};
    n->w = node_var(tg, id, "weights", MOPT_TVAR_WEIGHT, MOPT_TVAR_TRAINABLE | MOPT_TVAR_DECAY, 4,
                    wd);
    if (n->w < 0) return fail_nomem(err, what);
    if (bias) {
        int32_t bd[1] = {oc};
        n->b = node_var(tg, id, "bias", MOPT_TVAR_BIAS, MOPT_TVAR_TRAINABLE, 1, bd);
        if (n->b < 0) return fail_nomem(err, what);
    }
    return id;
}

int tgb_dwconv(mopt_tgraph *tg, int in, const char *name, int mult, int kh, int kw, int sh,
               int sw, int dh, int dw, mopt_padding pad, bool bias, mopt_activation act,
               mopt_error *err) {
    const char *what = name ? name : "depthwise";
    const tval *x = batched_in(tg, in, 4, what, err);
    if (!x) return -1;
    if (mult < 1 || kh < 1 || kw < 1 || sh < 1 || sw < 1 || dh < 1 || dw < 1) {
        mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                       "%s: multiplier, kernel, stride and dilation must be >= 1", what);
        return -1;
    }
    if (act_ok(act, what, err) != MOPT_OK) return -1;
    int32_t pt = 0, pl = 0;
    int32_t oh = mopt_conv_out_size(pad, x->dims[1], kh, sh, dh, &pt);
    int32_t ow = mopt_conv_out_size(pad, x->dims[2], kw, sw, dw, &pl);
    if (oh <= 0 || ow <= 0) {
        mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: %dx%d kernel does not fit the %dx%d input",
                       what, kh, kw, (int)x->dims[1], (int)x->dims[2]);
        return -1;
    }
    int32_t oc = x->dims[3] * mult;
    int32_t od[4] = {1, oh, ow, oc};
    int id = tg_add_node(tg, MOPT_OP_DEPTHWISE_CONV_2D, name, &in, 1, 4, od);
    if (id < 0) return fail_nomem(err, what);
    tnode *n = &tg->nodes[id];
    n->act = act;
    n->p.conv = (tr_conv_p){kh, kw, sh, sw, dh, dw, pad, pt, pl, mult};
    int32_t wd[4] = {1, kh, kw, oc};
    n->w = node_var(tg, id, "weights", MOPT_TVAR_WEIGHT, MOPT_TVAR_TRAINABLE | MOPT_TVAR_DECAY, 4,
                    wd);
    if (n->w < 0) return fail_nomem(err, what);
    if (bias) {
        int32_t bd[1] = {oc};
        n->b = node_var(tg, id, "bias", MOPT_TVAR_BIAS, MOPT_TVAR_TRAINABLE, 1, bd);
        if (n->b < 0) return fail_nomem(err, what);
    }
    return id;
}

int tgb_fc(mopt_tgraph *tg, int in, const char *name, int units, bool bias, bool keep_dims,
           mopt_activation act, mopt_error *err) {
    const char *what = name ? name : "fc";
    const tval *x = batched_in(tg, in, 0, what, err);
    if (!x) return -1;
    if (units < 1) {
        mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: units must be >= 1", what);
        return -1;
    }
    if (act_ok(act, what, err) != MOPT_OK) return -1;
    int32_t od[MOPT_MAX_DIMS];
    int orank;
    int32_t depth;
    if (keep_dims) {
        if (x->rank < 2) {
            mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: keep_num_dims needs rank >= 2", what);
            return -1;
        }
        depth = x->dims[x->rank - 1];
        orank = x->rank;
        memcpy(od, x->dims, sizeof(od));
        od[orank - 1] = units;
    } else {
        /* TFLite flattens the input to [numel / depth, depth]; only one row
         * per sample keeps the batch axis first. */
        depth = (int32_t)x->per;
        orank = 2;
        od[0] = 1;
        od[1] = units;
    }
    int id = tg_add_node(tg, MOPT_OP_FULLY_CONNECTED, name, &in, 1, orank, od);
    if (id < 0) return fail_nomem(err, what);
    tnode *n = &tg->nodes[id];
    n->act = act;
    int32_t wd[2] = {units, depth};
    n->w = node_var(tg, id, "weights", MOPT_TVAR_WEIGHT, MOPT_TVAR_TRAINABLE | MOPT_TVAR_DECAY, 2,
                    wd);
    if (n->w < 0) return fail_nomem(err, what);
    if (bias) {
        int32_t bd[1] = {units};
        n->b = node_var(tg, id, "bias", MOPT_TVAR_BIAS, MOPT_TVAR_TRAINABLE, 1, bd);
        if (n->b < 0) return fail_nomem(err, what);
    }
    return id;
}

int tgb_bn(mopt_tgraph *tg, int in, const char *name, float momentum, float eps,
           mopt_activation act, mopt_error *err) {
    const char *what = name ? name : "batch norm";
    if (act_ok(act, what, err) != MOPT_OK) return -1;
    const tval *x = batched_in(tg, in, 0, what, err);
    if (!x) return -1;
    if (x->rank < 2) {
        mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: input needs a channel axis", what);
        return -1;
    }
    if (!(momentum >= 0.0f && momentum < 1.0f) || !(eps > 0.0f)) {
        mopt_error_set(err, MOPT_ERR_ARG, "%s: momentum must be in [0, 1) and eps > 0", what);
        return -1;
    }
    int32_t c = x->dims[x->rank - 1];
    int32_t dims[MOPT_MAX_DIMS];
    memcpy(dims, x->dims, sizeof(dims));
    int id = tg_add_node(tg, MOPT_TNODE_BATCH_NORM, name, &in, 1, x->rank, dims);
    if (id < 0) return fail_nomem(err, what);
    tnode *n = &tg->nodes[id];
    n->bn_momentum = momentum;
    n->bn_eps = eps;
    n->act = act;
    int32_t cd[1] = {c};
    n->bn_gamma = node_var(tg, id, "gamma", MOPT_TVAR_BN_GAMMA, MOPT_TVAR_TRAINABLE, 1, cd);
    n->bn_beta = node_var(tg, id, "beta", MOPT_TVAR_BN_BETA, MOPT_TVAR_TRAINABLE, 1, cd);
    n->bn_mean = node_var(tg, id, "moving_mean", MOPT_TVAR_BN_MEAN, 0, 1, cd);
    n->bn_var = node_var(tg, id, "moving_variance", MOPT_TVAR_BN_VAR, 0, 1, cd);
    if (n->bn_gamma < 0 || n->bn_beta < 0 || n->bn_mean < 0 || n->bn_var < 0)
        return fail_nomem(err, what);
    for (int i = 0; i < c; i++) {
        tg->vars[n->bn_gamma]->pub.data[i] = 1.0f;
        tg->vars[n->bn_var]->pub.data[i] = 1.0f;
    }
    return id;
}

int tgb_unary(mopt_tgraph *tg, int kind, int in, const char *name, mopt_error *err) {
    const char *what = name ? name : mopt_op_name(kind);
    if (kind != MOPT_OP_RELU && kind != MOPT_OP_RELU6 && kind != MOPT_OP_LOGISTIC &&
        kind != MOPT_OP_TANH && kind != MOPT_OP_HARD_SWISH) {
        mopt_error_set(err, MOPT_ERR_INTERNAL, "unary builder: kind %d", kind);
        return -1;
    }
    const tval *x = batched_in(tg, in, 0, what ? what : "unary", err);
    if (!x) return -1;
    int32_t dims[MOPT_MAX_DIMS];
    memcpy(dims, x->dims, sizeof(dims));
    int id = tg_add_node(tg, kind, name, &in, 1, x->rank, dims);
    if (id < 0) return fail_nomem(err, what ? what : "unary");
    return id;
}

int tgb_dropout(mopt_tgraph *tg, int in, const char *name, float rate, mopt_error *err) {
    const char *what = name ? name : "dropout";
    const tval *x = batched_in(tg, in, 0, what, err);
    if (!x) return -1;
    if (!(rate >= 0.0f && rate < 1.0f)) {
        mopt_error_set(err, MOPT_ERR_ARG, "%s: rate %g outside [0, 1)", what, (double)rate);
        return -1;
    }
    int32_t dims[MOPT_MAX_DIMS];
    memcpy(dims, x->dims, sizeof(dims));
    int id = tg_add_node(tg, MOPT_TNODE_DROPOUT, name, &in, 1, x->rank, dims);
    if (id < 0) return fail_nomem(err, what);
    tg->nodes[id].rate = rate;
    return id;
}

int tgb_pool(mopt_tgraph *tg, int kind, int in, const char *name, int kh, int kw, int sh, int sw,
             mopt_padding pad, mopt_activation act, mopt_error *err) {
    const char *what = name ? name : "pool";
    const tval *x = batched_in(tg, in, 4, what, err);
    if (!x) return -1;
    if (kh < 1 || kw < 1 || sh < 1 || sw < 1) {
        mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: filter and stride must be >= 1", what);
        return -1;
    }
    if (act_ok(act, what, err) != MOPT_OK) return -1;
    int32_t pt = 0, pl = 0;
    int32_t oh = mopt_conv_out_size(pad, x->dims[1], kh, sh, 1, &pt);
    int32_t ow = mopt_conv_out_size(pad, x->dims[2], kw, sw, 1, &pl);
    if (oh <= 0 || ow <= 0) {
        mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: %dx%d window does not fit the %dx%d input",
                       what, kh, kw, (int)x->dims[1], (int)x->dims[2]);
        return -1;
    }
    int32_t od[4] = {1, oh, ow, x->dims[3]};
    int id = tg_add_node(tg, kind, name, &in, 1, 4, od);
    if (id < 0) return fail_nomem(err, what);
    tnode *n = &tg->nodes[id];
    n->act = act;
    n->p.pool = (tr_pool_p){kh, kw, sh, sw, pad, pt, pl};
    return id;
}

int tgb_mean(mopt_tgraph *tg, int in, const char *name, const bool *axes, bool keep,
             mopt_error *err) {
    const char *what = name ? name : "mean";
    const tval *x = batched_in(tg, in, 0, what, err);
    if (!x) return -1;
    if (axes[0]) {
        mopt_error_set(err, MOPT_ERR_UNSUPPORTED, "%s: MEAN over the batch axis cannot be trained",
                       what);
        return -1;
    }
    int32_t od[MOPT_MAX_DIMS];
    int orank = 0;
    for (int i = 0; i < x->rank; i++) {
        if (!axes[i])
            od[orank++] = x->dims[i];
        else if (keep)
            od[orank++] = 1;
    }
    int id = tg_add_node(tg, MOPT_OP_MEAN, name, &in, 1, orank, od);
    if (id < 0) return fail_nomem(err, what);
    tnode *n = &tg->nodes[id];
    for (int i = 0; i < MOPT_MAX_DIMS; i++) n->p.mean.axes[i] = i < x->rank && axes[i];
    n->p.mean.keep = keep;
    return id;
}

int tgb_reshape(mopt_tgraph *tg, int in, const char *name, int rank, const int32_t *dims,
                mopt_error *err) {
    const char *what = name ? name : "reshape";
    const tval *x = batched_in(tg, in, 0, what, err);
    if (!x) return -1;
    if (rank < 1 || rank > MOPT_MAX_DIMS || (dims[0] != 1 && dims[0] != -1)) {
        mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                       "%s: the new shape must keep the batch as its first dimension", what);
        return -1;
    }
    int32_t od[MOPT_MAX_DIMS];
    int64_t known = 1;
    int infer = -1;
    for (int i = 1; i < rank; i++) {
        if (dims[i] == -1 && infer < 0) {
            infer = i;
            continue;
        }
        if (dims[i] < 0) {
            mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: bad dimension %d", what, (int)dims[i]);
            return -1;
        }
        known *= dims[i];
    }
    od[0] = 1;
    for (int i = 1; i < rank; i++) od[i] = dims[i];
    if (infer > 0) {
        if (known == 0 || x->per % known != 0) {
            mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: cannot infer a dimension for %lld values",
                           what, (long long)x->per);
            return -1;
        }
        od[infer] = (int32_t)(x->per / known);
        known = x->per;
    }
    if (known != x->per) {
        mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                       "%s: new shape has %lld values per sample, input has %lld", what,
                       (long long)known, (long long)x->per);
        return -1;
    }
    int id = tg_add_node(tg, MOPT_OP_RESHAPE, name, &in, 1, rank, od);
    if (id < 0) return fail_nomem(err, what);
    return id;
}

int tgb_binary(mopt_tgraph *tg, int kind, int a, int b, const char *name, mopt_activation act,
               mopt_error *err) {
    const char *what = name ? name : mopt_op_name(kind);
    if (!what) what = "binary";
    if (a < 0 || b < 0 || a >= tg->n_vals || b >= tg->n_vals) {
        mopt_error_set(err, MOPT_ERR_INTERNAL, "%s: bad inputs", what);
        return -1;
    }
    if (act_ok(act, what, err) != MOPT_OK) return -1;
    const tval *va = &tg->vals[a], *vb = &tg->vals[b];
    if (!va->batched && !vb->batched) {
        mopt_error_set(err, MOPT_ERR_UNSUPPORTED, "%s: both inputs are constants", what);
        return -1;
    }
    int rank = va->rank > vb->rank ? va->rank : vb->rank;
    /* A batched operand must have the full rank so its batch axis stays
     * first; the batch axis of a constant must be 1 (broadcast). */
    if ((va->batched && va->rank != rank) || (vb->batched && vb->rank != rank)) {
        mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                       "%s: a constant operand of higher rank would broadcast over the batch",
                       what);
        return -1;
    }
    int32_t od[MOPT_MAX_DIMS];
    for (int i = 0; i < rank; i++) {
        int ia = i - (rank - va->rank), ib = i - (rank - vb->rank);
        int32_t da = ia >= 0 ? va->dims[ia] : 1, db = ib >= 0 ? vb->dims[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: shapes do not broadcast (axis %d: %d vs %d)",
                           what, i, (int)da, (int)db);
            return -1;
        }
        od[i] = da > db ? da : db;
    }
    od[0] = 1;
    int ins[2] = {a, b};
    int id = tg_add_node(tg, kind, name, ins, 2, rank, od);
    if (id < 0) return fail_nomem(err, what);
    tg->nodes[id].act = act;
    return id;
}

int tgb_concat(mopt_tgraph *tg, const int *in, int n, const char *name, int axis,
               mopt_activation act, mopt_error *err) {
    const char *what = name ? name : "concat";
    if (n < 1) {
        mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: no inputs", what);
        return -1;
    }
    if (act_ok(act, what, err) != MOPT_OK) return -1;
    const tval *x0 = batched_in(tg, in[0], 0, what, err);
    if (!x0) return -1;
    int rank = x0->rank;
    if (axis < 0) axis += rank;
    if (axis <= 0 || axis >= rank) {
        mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                       "%s: concatenation axis must be a non-batch axis (got %d, rank %d)", what,
                       axis, rank);
        return -1;
    }
    int32_t od[MOPT_MAX_DIMS];
    memcpy(od, x0->dims, sizeof(od));
    od[axis] = 0;
    for (int i = 0; i < n; i++) {
        const tval *x = batched_in(tg, in[i], rank, what, err);
        if (!x) return -1;
        for (int d = 1; d < rank; d++)
            if (d != axis && x->dims[d] != x0->dims[d]) {
                mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: input %d differs on axis %d", what,
                               i, d);
                return -1;
            }
        od[axis] += x->dims[axis];
    }
    int id = tg_add_node(tg, MOPT_OP_CONCATENATION, name, in, n, rank, od);
    if (id < 0) return fail_nomem(err, what);
    tg->nodes[id].p.axis = axis;
    tg->nodes[id].act = act;
    return id;
}

int tgb_pad(mopt_tgraph *tg, int in, const char *name, const int32_t *before,
            const int32_t *after, mopt_error *err) {
    const char *what = name ? name : "pad";
    const tval *x = batched_in(tg, in, 0, what, err);
    if (!x) return -1;
    if (before[0] != 0 || after[0] != 0) {
        mopt_error_set(err, MOPT_ERR_UNSUPPORTED, "%s: padding the batch axis cannot be trained",
                       what);
        return -1;
    }
    int32_t od[MOPT_MAX_DIMS];
    for (int i = 0; i < x->rank; i++) {
        if (before[i] < 0 || after[i] < 0) {
            mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: negative padding", what);
            return -1;
        }
        od[i] = x->dims[i] + before[i] + after[i];
    }
    int id = tg_add_node(tg, MOPT_OP_PAD, name, &in, 1, x->rank, od);
    if (id < 0) return fail_nomem(err, what);
    tnode *n = &tg->nodes[id];
    for (int i = 0; i < MOPT_MAX_DIMS; i++) {
        n->p.pad.before[i] = i < x->rank ? before[i] : 0;
        n->p.pad.after[i] = i < x->rank ? after[i] : 0;
    }
    return id;
}

int tgb_transpose(mopt_tgraph *tg, int in, const char *name, const int32_t *perm,
                  mopt_error *err) {
    const char *what = name ? name : "transpose";
    const tval *x = batched_in(tg, in, 0, what, err);
    if (!x) return -1;
    bool seen[MOPT_MAX_DIMS] = {false};
    for (int i = 0; i < x->rank; i++) {
        if (perm[i] < 0 || perm[i] >= x->rank || seen[perm[i]]) {
            mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: invalid permutation", what);
            return -1;
        }
        seen[perm[i]] = true;
    }
    if (perm[0] != 0) {
        mopt_error_set(err, MOPT_ERR_UNSUPPORTED, "%s: the batch axis must stay first", what);
        return -1;
    }
    int32_t od[MOPT_MAX_DIMS];
    for (int i = 0; i < x->rank; i++) od[i] = x->dims[perm[i]];
    int id = tg_add_node(tg, MOPT_OP_TRANSPOSE, name, &in, 1, x->rank, od);
    if (id < 0) return fail_nomem(err, what);
    for (int i = 0; i < MOPT_MAX_DIMS; i++) tg->nodes[id].p.perm[i] = i < x->rank ? perm[i] : i;
    return id;
}

int tgb_softmax(mopt_tgraph *tg, int in, const char *name, float beta, mopt_error *err) {
    const char *what = name ? name : "softmax";
    const tval *x = batched_in(tg, in, 0, what, err);
    if (!x) return -1;
    int32_t od[MOPT_MAX_DIMS];
    memcpy(od, x->dims, sizeof(od));
    int id = tg_add_node(tg, MOPT_OP_SOFTMAX, name, &in, 1, x->rank, od);
    if (id < 0) return fail_nomem(err, what);
    tg->nodes[id].p.beta = beta;
    return id;
}

void tr_init_glorot(float *w, int64_t n, int64_t fan_in, int64_t fan_out, uint64_t seed,
                    uint64_t stream) {
    mopt_rng r;
    mopt_rng_seed(&r, seed, stream);
    double limit = sqrt(6.0 / (double)(fan_in + fan_out > 0 ? fan_in + fan_out : 1));
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)((2.0 * (double)mopt_rng_uniform(&r) - 1.0) * limit);
}
