/* export.c - a trained graph as a batch-1 float mopt_graph for inference.
 *
 * Dropout disappears; batch norm after a CONV_2D / DEPTHWISE_CONV_2D /
 * FULLY_CONNECTED whose only consumer it is gets folded into that op:
 *   s[c]  = gamma[c] / sqrt(running_var[c] + eps)
 *   w'    = w * s[c]  for every weight of output channel c
 *   b'[c] = (b[c] - running_mean[c]) * s[c] + beta[c]
 * and a RELU / RELU6 that is the only consumer of the folded result becomes
 * the op's fused activation. Other batch norms become MUL + ADD with the
 * same per-channel constants. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/tg_internal.h"

mopt_export_options mopt_export_default_options(void) {
    mopt_export_options o;
    o.fold_bn = true;
    o.apply_transforms = true;
    o.softmax = true;
    return o;
}

typedef struct xstate {
    const mopt_tgraph *tg;
    const mopt_export_options *o;
    mopt_graph *g;
    int *vmap;     /* value -> exported tensor (-1 = not yet) */
    int *ncons;    /* value -> number of consuming nodes */
    int *cons;     /* value -> the (last) consuming node */
    bool *skip;    /* node absorbed into an earlier op */
} xstate;

static mopt_status oom(mopt_error *err) {
    return mopt_error_set(err, MOPT_ERR_NOMEM, "export: out of memory");
}

static const float *var_values(const xstate *x, int var) {
    return x->o->apply_transforms ? mopt_tgraph_var_effective(x->tg, var)
                                  : x->tg->vars[var]->pub.data;
}

/* Adds a float32 constant tensor. Returns its index or -1. */
static int add_const_f32(mopt_graph *g, const char *name, int rank, const int32_t *dims,
                         const float *data) {
    int t = mopt_graph_add_tensor(g, name, MOPT_FLOAT32, rank, dims);
    if (t < 0) return -1;
    int64_t n = mopt_tensor_numel(&g->tensors[t]);
    if (mopt_graph_set_tensor_data(g, t, data, (size_t)n * sizeof(float)) != MOPT_OK) return -1;
    return t;
}

static int add_const_i32(mopt_graph *g, const char *name, int rank, const int32_t *dims,
                         const int32_t *data) {
    int t = mopt_graph_add_tensor(g, name, MOPT_INT32, rank, dims);
    if (t < 0) return -1;
    int64_t n = mopt_tensor_numel(&g->tensors[t]);
    if (mopt_graph_set_tensor_data(g, t, data, (size_t)n * sizeof(int32_t)) != MOPT_OK) return -1;
    return t;
}

/* Exported tensor for a value (constants are created on first use). */
static int tensor_of(xstate *x, int v, const char *hint) {
    if (x->vmap[v] >= 0) return x->vmap[v];
    const tval *tv = &x->tg->vals[v];
    if (tv->batched) return -1; /* produced later: a bug */
    char name[160];
    snprintf(name, sizeof(name), "%.140s/const", hint);
    x->vmap[v] = add_const_f32(x->g, name, tv->rank, tv->dims, tv->data);
    return x->vmap[v];
}

static int add_act_tensor(xstate *x, int v, const char *name) {
    const tval *tv = &x->tg->vals[v];
    int t = mopt_graph_add_tensor(x->g, name, MOPT_FLOAT32, tv->rank, tv->dims);
    return t;
}

static int add_simple_op(xstate *x, int kind, const int32_t *ins, int n_in, int out_t) {
    return mopt_graph_add_op(x->g, (mopt_op_type)kind, ins, n_in, &out_t, 1);
}

/* TFLite kernels fuse only the ReLU family; any other fused activation
 * (TANH) becomes its own op. prep_split returns the tensor the op must write
 * (a new intermediate when split, -1 when out of memory) and clears *act;
 * finish_split then appends the TANH op. */
static int prep_split(xstate *x, mopt_activation *act, int out_t, int v, const char *name) {
    if (*act != MOPT_ACT_TANH) return out_t;
    char buf[200];
    snprintf(buf, sizeof(buf), "%.180s/pre_tanh", name);
    *act = MOPT_ACT_NONE;
    return add_act_tensor(x, v, buf);
}

static bool finish_split(xstate *x, int op_out, int out_t) {
    if (op_out == out_t) return true;
    return add_simple_op(x, MOPT_OP_TANH, &op_out, 1, out_t) >= 0;
}

/* Per-channel BN scale and shift from the running statistics. */
static void bn_affine(const xstate *x, const tnode *bn, float *s, float *sh, int C) {
    const mopt_tgraph *tg = x->tg;
    const float *gamma = tg->vars[bn->bn_gamma]->pub.data, *beta = tg->vars[bn->bn_beta]->pub.data;
    const float *mean = tg->vars[bn->bn_mean]->pub.data, *var = tg->vars[bn->bn_var]->pub.data;
    for (int c = 0; c < C; c++) {
        double k = (double)gamma[c] / sqrt((double)var[c] + (double)bn->bn_eps);
        s[c] = (float)k;
        sh[c] = (float)((double)beta[c] - (double)mean[c] * k);
    }
}

static mopt_status export_weighted(xstate *x, int ni, mopt_error *err) {
    const mopt_tgraph *tg = x->tg;
    const tnode *n = &tg->nodes[ni];
    const mopt_tvar *wv = &tg->vars[n->w]->pub;
    const int64_t nw = wv->numel;
    /* output channels: axis 0 of CONV_2D / FC weights, the last of DEPTHWISE */
    const int out_c = n->kind == MOPT_OP_DEPTHWISE_CONV_2D ? wv->dims[wv->rank - 1] : wv->dims[0];
    float *w = malloc((size_t)nw * sizeof(float));
    float *b = calloc((size_t)out_c, sizeof(float));
    if (!w || !b) {
        free(w);
        free(b);
        return oom(err);
    }
    memcpy(w, var_values(x, n->w), (size_t)nw * sizeof(float));
    if (n->b >= 0) memcpy(b, var_values(x, n->b), (size_t)out_c * sizeof(float));
    int last = ni;         /* last node fused into this op */
    int out_val = n->out;  /* value whose tensor is the op's output */
    mopt_activation act = n->act;
    bool has_bias = n->b >= 0;
    /* fold a following batch norm */
    if (x->o->fold_bn && act == MOPT_ACT_NONE && !n->has_at && x->ncons[n->out] == 1 &&
        out_val != tg->output) {
        const tnode *bn = &tg->nodes[x->cons[n->out]];
        if (bn->kind == MOPT_TNODE_BATCH_NORM) {
            float *s = malloc((size_t)out_c * sizeof(float) * 2);
            if (!s) {
                free(w);
                free(b);
                return oom(err);
            }
            float *sh = s + out_c;
            bn_affine(x, bn, s, sh, out_c);
            /* channel of weight element i: axis 0 for CONV/FC ([OC, ...]),
             * the last axis for DEPTHWISE ([1, KH, KW, OC]) */
            if (n->kind == MOPT_OP_DEPTHWISE_CONV_2D) {
                for (int64_t i = 0; i < nw; i++) w[i] *= s[i % out_c];
            } else {
                int64_t per = nw / out_c;
                for (int64_t i = 0; i < nw; i++) w[i] *= s[i / per];
            }
            for (int c = 0; c < out_c; c++) b[c] = b[c] * s[c] + sh[c];
            free(s);
            has_bias = true;
            act = bn->act; /* the activation fused into the batch norm */
            last = x->cons[n->out];
            x->skip[last] = true;
            out_val = bn->out;
        }
    }
    /* fuse a following RELU / RELU6 */
    if (act == MOPT_ACT_NONE && x->ncons[out_val] == 1 && out_val != tg->output &&
        !tg->nodes[last].has_at) {
        const tnode *a = &tg->nodes[x->cons[out_val]];
        if (a->kind == MOPT_OP_RELU || a->kind == MOPT_OP_RELU6) {
            act = a->kind == MOPT_OP_RELU ? MOPT_ACT_RELU : MOPT_ACT_RELU6;
            last = x->cons[out_val];
            x->skip[last] = true;
            out_val = a->out;
        }
    }
    int in_t = tensor_of(x, n->in[0], n->name);
    int w_t = add_const_f32(x->g, wv->name, wv->rank, wv->dims, w);
    int b_t = -1;
    if (has_bias) {
        char bname[200];
        if (n->b >= 0)
            snprintf(bname, sizeof(bname), "%s", tg->vars[n->b]->pub.name);
        else
            snprintf(bname, sizeof(bname), "%.180s/bias", n->name);
        int32_t bd[1] = {out_c};
        b_t = add_const_f32(x->g, bname, 1, bd, b);
    }
    free(w);
    free(b);
    int out_t = add_act_tensor(x, out_val, tg->nodes[last].name);
    if (in_t < 0 || w_t < 0 || (has_bias && b_t < 0) || out_t < 0) return oom(err);
    int32_t ins[3] = {in_t, w_t, b_t};
    const int op_out = prep_split(x, &act, out_t, out_val, tg->nodes[last].name);
    if (op_out < 0) return oom(err);
    int op = mopt_graph_add_op(x->g, (mopt_op_type)n->kind, ins, 3, &op_out, 1);
    if (op < 0) return oom(err);
    mopt_op *o = &x->g->ops[op];
    o->has_options = true;
    if (n->kind == MOPT_OP_FULLY_CONNECTED) {
        o->p.fc.act = act;
        o->p.fc.keep_num_dims = tg->vals[n->out].rank > 2;
    } else {
        const tr_conv_p *c = &n->p.conv;
        o->p.conv.padding = c->padding;
        o->p.conv.stride_h = c->sh;
        o->p.conv.stride_w = c->sw;
        o->p.conv.dilation_h = c->dh;
        o->p.conv.dilation_w = c->dw;
        o->p.conv.act = act;
        if (n->kind == MOPT_OP_DEPTHWISE_CONV_2D) {
            o->p.conv.depth_multiplier = c->depth_mult;
            if (c->dh != 1 || c->dw != 1) o->version = 2; /* dilation needs DEPTHWISE_CONV_2D v2 */
        }
    }
    if (!finish_split(x, op_out, out_t)) return oom(err);
    x->vmap[out_val] = out_t;
    return MOPT_OK;
}

static mopt_status export_node(xstate *x, int ni, mopt_error *err) {
    const mopt_tgraph *tg = x->tg;
    const tnode *n = &tg->nodes[ni];
    if (x->skip[ni]) return MOPT_OK;
    switch (n->kind) {
    case MOPT_OP_CONV_2D:
    case MOPT_OP_DEPTHWISE_CONV_2D:
    case MOPT_OP_FULLY_CONNECTED: return export_weighted(x, ni, err);
    case MOPT_TNODE_DROPOUT: {
        int t = tensor_of(x, n->in[0], n->name);
        if (t < 0) return oom(err);
        x->vmap[n->out] = t;
        return MOPT_OK;
    }
    default: break;
    }
    int32_t ins[8];
    int n_in = 0;
    if (n->n_in > 8 && n->kind != MOPT_OP_CONCATENATION)
        return mopt_error_set(err, MOPT_ERR_INTERNAL, "export: node '%s' has too many inputs",
                              n->name);
    int32_t *cins = NULL;
    if (n->kind == MOPT_OP_CONCATENATION) {
        cins = malloc((size_t)n->n_in * sizeof(int32_t));
        if (!cins) return oom(err);
        for (int i = 0; i < n->n_in; i++) {
            cins[i] = tensor_of(x, n->in[i], n->name);
            if (cins[i] < 0) {
                free(cins);
                return oom(err);
            }
        }
    } else {
        for (int i = 0; i < n->n_in; i++) {
            ins[n_in] = tensor_of(x, n->in[i], n->name);
            if (ins[n_in] < 0) return oom(err);
            n_in++;
        }
    }
    const tval *ov = &tg->vals[n->out];
    const int final_t = add_act_tensor(x, n->out, n->name);
    mopt_activation act = n->act;
    const int out_t = final_t < 0 ? -1 : prep_split(x, &act, final_t, n->out, n->name);
    if (out_t < 0) {
        free(cins);
        return oom(err);
    }
    int op = -1;
    char cname[200];
    switch (n->kind) {
    case MOPT_TNODE_BATCH_NORM: {
        /* y = x * s + sh as MUL and ADD with per-channel constants */
        const int C = ov->dims[ov->rank - 1];
        float *s = malloc((size_t)C * 2 * sizeof(float));
        if (!s) return oom(err);
        bn_affine(x, n, s, s + C, C);
        int32_t cd[1] = {C};
        snprintf(cname, sizeof(cname), "%.180s/scale", n->name);
        int st = add_const_f32(x->g, cname, 1, cd, s);
        snprintf(cname, sizeof(cname), "%.180s/shift", n->name);
        int sht = add_const_f32(x->g, cname, 1, cd, s + C);
        free(s);
        snprintf(cname, sizeof(cname), "%.180s/scaled", n->name);
        int mid = add_act_tensor(x, n->out, cname);
        if (st < 0 || sht < 0 || mid < 0) return oom(err);
        int32_t mi[2] = {ins[0], st};
        int m = add_simple_op(x, MOPT_OP_MUL, mi, 2, mid);
        if (m < 0) return oom(err);
        x->g->ops[m].has_options = true;
        int32_t ai[2] = {mid, sht};
        op = add_simple_op(x, MOPT_OP_ADD, ai, 2, out_t);
        if (op >= 0) {
            x->g->ops[op].has_options = true;
            x->g->ops[op].p.binary.act = act;
        }
        break;
    }
    case MOPT_OP_RELU:
    case MOPT_OP_RELU6:
    case MOPT_OP_LOGISTIC:
    case MOPT_OP_TANH:
    case MOPT_OP_HARD_SWISH: op = add_simple_op(x, n->kind, ins, 1, out_t); break;
    case MOPT_OP_ADD:
    case MOPT_OP_SUB:
    case MOPT_OP_MUL:
        op = add_simple_op(x, n->kind, ins, 2, out_t);
        if (op >= 0) {
            x->g->ops[op].has_options = true;
            x->g->ops[op].p.binary.act = act;
        }
        break;
    case MOPT_OP_CONCATENATION:
        op = add_simple_op(x, n->kind, cins, n->n_in, out_t);
        if (op >= 0) {
            x->g->ops[op].has_options = true;
            x->g->ops[op].p.concat.axis = n->p.axis;
            x->g->ops[op].p.concat.act = act;
        }
        break;
    case MOPT_OP_PAD: {
        int32_t pads[2 * MOPT_MAX_DIMS];
        int rank = tg->vals[n->in[0]].rank;
        for (int i = 0; i < rank; i++) {
            pads[2 * i] = n->p.pad.before[i];
            pads[2 * i + 1] = n->p.pad.after[i];
        }
        int32_t pd[2] = {rank, 2};
        snprintf(cname, sizeof(cname), "%.180s/paddings", n->name);
        int pt = add_const_i32(x->g, cname, 2, pd, pads);
        if (pt < 0) return oom(err);
        ins[1] = pt;
        op = add_simple_op(x, n->kind, ins, 2, out_t);
        break;
    }
    case MOPT_OP_RESHAPE: {
        int32_t sd[1] = {ov->rank};
        snprintf(cname, sizeof(cname), "%.180s/shape", n->name);
        int sh = add_const_i32(x->g, cname, 1, sd, ov->dims);
        if (sh < 0) return oom(err);
        ins[1] = sh;
        op = add_simple_op(x, n->kind, ins, 2, out_t);
        if (op >= 0) {
            mopt_op *o = &x->g->ops[op];
            o->has_options = true;
            o->p.reshape.n_new_shape = ov->rank;
            memcpy(o->p.reshape.new_shape, ov->dims, sizeof(int32_t) * (size_t)ov->rank);
        }
        break;
    }
    case MOPT_OP_TRANSPOSE: {
        int rank = ov->rank;
        int32_t pd[1] = {rank};
        snprintf(cname, sizeof(cname), "%.180s/perm", n->name);
        int pt = add_const_i32(x->g, cname, 1, pd, n->p.perm);
        if (pt < 0) return oom(err);
        ins[1] = pt;
        op = add_simple_op(x, n->kind, ins, 2, out_t);
        break;
    }
    case MOPT_OP_MEAN: {
        int32_t axes[MOPT_MAX_DIMS];
        int na = 0;
        for (int i = 0; i < tg->vals[n->in[0]].rank; i++)
            if (n->p.mean.axes[i]) axes[na++] = i;
        int32_t ad[1] = {na};
        snprintf(cname, sizeof(cname), "%.180s/axes", n->name);
        int at = add_const_i32(x->g, cname, 1, ad, axes);
        if (at < 0) return oom(err);
        ins[1] = at;
        op = add_simple_op(x, n->kind, ins, 2, out_t);
        if (op >= 0) {
            x->g->ops[op].has_options = true;
            x->g->ops[op].p.reducer.keep_dims = n->p.mean.keep;
        }
        break;
    }
    case MOPT_OP_AVERAGE_POOL_2D:
    case MOPT_OP_MAX_POOL_2D:
        op = add_simple_op(x, n->kind, ins, 1, out_t);
        if (op >= 0) {
            mopt_op *o = &x->g->ops[op];
            o->has_options = true;
            o->p.pool.padding = n->p.pool.padding;
            o->p.pool.stride_h = n->p.pool.sh;
            o->p.pool.stride_w = n->p.pool.sw;
            o->p.pool.filter_h = n->p.pool.kh;
            o->p.pool.filter_w = n->p.pool.kw;
            o->p.pool.act = act;
        }
        break;
    case MOPT_OP_SOFTMAX:
        op = add_simple_op(x, n->kind, ins, 1, out_t);
        if (op >= 0) {
            x->g->ops[op].has_options = true;
            x->g->ops[op].p.softmax.beta = n->p.beta;
        }
        break;
    default:
        free(cins);
        return mopt_error_set(err, MOPT_ERR_INTERNAL, "export: node '%s' of kind %d", n->name,
                              n->kind);
    }
    free(cins);
    if (op < 0 || !finish_split(x, out_t, final_t)) return oom(err);
    x->vmap[n->out] = final_t;
    return MOPT_OK;
}

mopt_status mopt_tgraph_export(const mopt_tgraph *tg, const mopt_export_options *opts,
                               mopt_graph **out, mopt_error *err) {
    if (!tg || !out) return mopt_error_set(err, MOPT_ERR_ARG, "export: NULL argument");
    *out = NULL;
    mopt_export_options o = opts ? *opts : mopt_export_default_options();
    xstate x;
    memset(&x, 0, sizeof(x));
    x.tg = tg;
    x.o = &o;
    x.g = mopt_graph_create();
    x.vmap = malloc((size_t)tg->n_vals * sizeof(int));
    x.ncons = calloc((size_t)tg->n_vals, sizeof(int));
    x.cons = malloc((size_t)tg->n_vals * sizeof(int));
    x.skip = calloc((size_t)tg->n_nodes + 1, sizeof(bool));
    mopt_status st = MOPT_OK;
    if (!x.g || !x.vmap || !x.ncons || !x.cons || !x.skip) {
        st = oom(err);
        goto done;
    }
    for (int i = 0; i < tg->n_vals; i++) x.vmap[i] = -1;
    /* consumers of every value (folding needs "only consumer") */
    for (int i = 0; i < tg->n_nodes; i++) {
        const tnode *n = &tg->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            bool dup = false;
            for (int j = 0; j < k; j++) dup |= n->in[j] == n->in[k];
            if (dup) continue;
            x.ncons[n->in[k]]++;
            x.cons[n->in[k]] = i;
        }
    }
    {
        const tval *iv = &tg->vals[tg->input];
        int t = mopt_graph_add_tensor(x.g, tg->input_name ? tg->input_name : "input",
                                      MOPT_FLOAT32, iv->rank, iv->dims);
        if (t < 0) {
            st = oom(err);
            goto done;
        }
        x.vmap[tg->input] = t;
    }
    for (int i = 0; i < tg->n_nodes && st == MOPT_OK; i++) st = export_node(&x, i, err);
    if (st != MOPT_OK) goto done;
    int out_t = x.vmap[tg->output];
    if (out_t < 0) {
        st = mopt_error_set(err, MOPT_ERR_INTERNAL, "export: output not produced");
        goto done;
    }
    if (o.softmax && tg->end_softmax && tg->nodes[tg->vals[tg->output].producer].kind != MOPT_OP_SOFTMAX) {
        const tval *ov = &tg->vals[tg->output];
        int sm = mopt_graph_add_tensor(x.g, "softmax", MOPT_FLOAT32, ov->rank, ov->dims);
        if (sm < 0) {
            st = oom(err);
            goto done;
        }
        int32_t in1[1] = {out_t};
        int op = add_simple_op(&x, MOPT_OP_SOFTMAX, in1, 1, sm);
        if (op < 0) {
            st = oom(err);
            goto done;
        }
        x.g->ops[op].has_options = true;
        x.g->ops[op].p.softmax.beta = tg->softmax_beta;
        out_t = sm;
    }
    int32_t gin[1] = {x.vmap[tg->input]}, gout[1] = {out_t};
    if ((st = mopt_graph_set_io(x.g, gin, 1, gout, 1)) != MOPT_OK) {
        st = oom(err);
        goto done;
    }
    st = mopt_graph_validate(x.g, err);
    if (st != MOPT_OK) {
        mopt_error_prefix(err, "export produced an invalid graph");
        st = MOPT_ERR_INTERNAL;
        if (err) err->status = st;
    }
done:
    if (st == MOPT_OK)
        *out = x.g;
    else
        mopt_graph_free(x.g);
    free(x.vmap);
    free(x.ncons);
    free(x.cons);
    free(x.skip);
    return st;
}
