/* import.c - a training graph from an imported float mopt_graph (a .tflite
 * read by mopt): convolution and FC weights and biases become trainable
 * variables named after their tensors, everything else keeps its meaning. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/tg_internal.h"

typedef struct istate {
    const mopt_graph *g;
    mopt_tgraph *tg;
    int *tmap;      /* tensor -> value (-1: none yet) */
    float **folded; /* tensor -> float data of a folded DEQUANTIZE (owned) */
    mopt_error *err;
} istate;

static mopt_status op_err(istate *s, int oi, mopt_status st, const char *fmt, const char *arg) {
    char msg[256];
    snprintf(msg, sizeof(msg), fmt, arg);
    const char *name = mopt_op_name(s->g->ops[oi].type);
    return mopt_error_set(s->err, st, "operator %d (%s): %s", oi, name ? name : "?", msg);
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1F, m = h & 0x3FF;
    float f;
    if (e == 0) {
        f = ldexpf((float)m, -24); /* subnormal (or zero) */
        return sign ? -f : f;
    }
    if (e == 31) return m ? NAN : (sign ? -INFINITY : INFINITY);
    uint32_t bits = sign | ((e + 112) << 23) | (m << 13);
    memcpy(&f, &bits, 4);
    return f;
}

/* Float values of constant tensor t (float32 data, or a folded DEQUANTIZE). */
static const float *const_floats(istate *s, int t) {
    if (t < 0) return NULL;
    if (s->folded[t]) return s->folded[t];
    const mopt_tensor *ts = &s->g->tensors[t];
    if (ts->dtype != MOPT_FLOAT32 || !mopt_tensor_is_constant(s->g, t)) return NULL;
    return mopt_tensor_data(s->g, t);
}

static int value_of(istate *s, int t) {
    if (t < 0) return -1;
    if (s->tmap[t] >= 0) return s->tmap[t];
    const float *d = const_floats(s, t);
    if (!d) return -1;
    const mopt_tensor *ts = &s->g->tensors[t];
    s->tmap[t] = tg_add_const(s->tg, ts->rank, ts->dims, d);
    return s->tmap[t];
}

static const int32_t *const_i32(istate *s, int t, int64_t *n) {
    if (t < 0 || !mopt_tensor_is_constant(s->g, t)) return NULL;
    const mopt_tensor *ts = &s->g->tensors[t];
    if (ts->dtype != MOPT_INT32) return NULL;
    *n = mopt_tensor_numel(ts);
    return mopt_tensor_data(s->g, t);
}

static char *dup_str(const char *src) {
    size_t n = strlen(src);
    char *d = malloc(n + 1);
    if (d) memcpy(d, src, n + 1);
    return d;
}

/* Gives variable `var` the tensor's name when it is non-empty and unused. */
static void rename_var(istate *s, int var, int t) {
    const char *name = s->g->tensors[t].name;
    if (!name || !*name || mopt_tgraph_find_var(s->tg, name) >= 0) return;
    char *d = dup_str(name);
    if (!d) return;
    free(s->tg->vars[var]->pub.name);
    s->tg->vars[var]->pub.name = d;
}

static const char *node_name(istate *s, int out_t) {
    const char *n = s->g->tensors[out_t].name;
    return n && *n ? n : NULL;
}

/* The op's output must have the shape the node computed (batch aside). */
static mopt_status check_shape(istate *s, int oi, int node, int out_t) {
    const tval *v = &s->tg->vals[s->tg->nodes[node].out];
    const mopt_tensor *t = &s->g->tensors[out_t];
    bool ok = v->rank == t->rank && t->rank >= 1 && t->dims[0] == 1;
    for (int i = 1; ok && i < t->rank; i++) ok = v->dims[i] == t->dims[i];
    if (!ok) return op_err(s, oi, MOPT_ERR_BAD_INPUT, "output tensor '%s' does not keep the batch "
                                                      "as its first dimension of size 1",
                           t->name ? t->name : "");
    s->tmap[out_t] = s->tg->nodes[node].out;
    return MOPT_OK;
}

static mopt_status built(istate *s, int oi, int node, int out_t) {
    if (node < 0) {
        const char *name = mopt_op_name(s->g->ops[oi].type);
        mopt_error_prefix(s->err, "operator %d (%s)", oi, name ? name : "?");
        return s->err ? s->err->status : MOPT_ERR_BAD_INPUT;
    }
    return check_shape(s, oi, node, out_t);
}

static mopt_status fold_dequantize(istate *s, int oi) {
    const mopt_op *op = &s->g->ops[oi];
    int in = op->inputs[0], out = op->outputs[0];
    if (!mopt_tensor_is_constant(s->g, in))
        return op_err(s, oi, MOPT_ERR_UNSUPPORTED,
                      "%sDEQUANTIZE of a computed tensor (a quantized model) cannot be trained", "");
    const mopt_tensor *t = &s->g->tensors[in];
    int64_t n = mopt_tensor_numel(t);
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!f) return mopt_error_set(s->err, MOPT_ERR_NOMEM, "import: out of memory");
    const void *d = mopt_tensor_data(s->g, in);
    if (t->dtype == MOPT_FLOAT16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, (const uint8_t *)d + 2 * i, 2);
            f[i] = half_to_float(h);
        }
    } else if ((t->dtype == MOPT_INT8 || t->dtype == MOPT_UINT8 || t->dtype == MOPT_INT16) &&
               t->quant.n >= 1) {
        /* per-axis: channel of element i along quant.axis */
        int64_t inner = 1;
        int axis = t->quant.n > 1 ? t->quant.axis : 0;
        for (int k = axis + 1; k < t->rank; k++) inner *= t->dims[k];
        for (int64_t i = 0; i < n; i++) {
            int64_t q = t->dtype == MOPT_INT8    ? ((const int8_t *)d)[i]
                        : t->dtype == MOPT_UINT8 ? ((const uint8_t *)d)[i]
                                                 : ((const int16_t *)d)[i];
            int c = t->quant.n > 1 ? (int)((i / inner) % t->quant.n) : 0;
            f[i] = t->quant.scale[c] * (float)(q - t->quant.zero_point[c]);
        }
    } else {
        free(f);
        return op_err(s, oi, MOPT_ERR_UNSUPPORTED, "DEQUANTIZE of a %s constant", mopt_dtype_name(t->dtype));
    }
    s->folded[out] = f;
    return MOPT_OK;
}

static mopt_status import_op(istate *s, int oi, bool *dropped_softmax) {
    const mopt_graph *g = s->g;
    const mopt_op *op = &g->ops[oi];
    mopt_tgraph *tg = s->tg;
    mopt_error *err = s->err;
    const int out_t = op->outputs[0];
    const char *nm = node_name(s, out_t);
    int x = op->n_inputs > 0 ? value_of(s, op->inputs[0]) : -1;
    if (op->type == MOPT_OP_DEQUANTIZE) return fold_dequantize(s, oi);
    if (op->type == MOPT_OP_QUANTIZE)
        return op_err(s, oi, MOPT_ERR_UNSUPPORTED, "%sthe model is quantized; training needs a "
                                                   "float model", "");
    for (int i = 0; i < op->n_outputs; i++)
        if (g->tensors[op->outputs[i]].dtype != MOPT_FLOAT32)
            return op_err(s, oi, MOPT_ERR_UNSUPPORTED, "output is %s; training needs float32",
                          mopt_dtype_name(g->tensors[op->outputs[i]].dtype));
    if (x < 0)
        return op_err(s, oi, MOPT_ERR_UNSUPPORTED, "%sinput 0 is neither computed nor a float "
                                                   "constant", "");
    int node = -1;
    switch (op->type) {
    case MOPT_OP_CONV_2D:
    case MOPT_OP_DEPTHWISE_CONV_2D: {
        const float *w = const_floats(s, op->inputs[1]);
        const float *b = op->n_inputs > 2 ? const_floats(s, op->inputs[2]) : NULL;
        if (!w || (op->n_inputs > 2 && op->inputs[2] >= 0 && !b))
            return op_err(s, oi, MOPT_ERR_UNSUPPORTED, "%sweights and bias must be float "
                                                       "constants", "");
        const mopt_tensor *wt = &g->tensors[op->inputs[1]];
        const mopt_conv_params *c = &op->p.conv;
        const tval *xv = &tg->vals[x];
        if (xv->rank != 4 || wt->rank != 4)
            return op_err(s, oi, MOPT_ERR_BAD_INPUT, "%sneeds rank-4 input and weights", "");
        if (op->type == MOPT_OP_CONV_2D) {
            if (wt->dims[3] != xv->dims[3])
                return op_err(s, oi, MOPT_ERR_UNSUPPORTED, "%sgrouped convolution is not "
                                                           "supported", "");
            node = tgb_conv(tg, x, nm, wt->dims[0], wt->dims[1], wt->dims[2], c->stride_h,
                            c->stride_w, c->dilation_h, c->dilation_w, c->padding, b != NULL,
                            c->act, err);
        } else {
            int ic = xv->dims[3];
            if (ic < 1 || wt->dims[3] % ic != 0)
                return op_err(s, oi, MOPT_ERR_BAD_INPUT, "%sweight channels are not a multiple "
                                                         "of the input channels", "");
            node = tgb_dwconv(tg, x, nm, wt->dims[3] / ic, wt->dims[1], wt->dims[2], c->stride_h,
                              c->stride_w, c->dilation_h, c->dilation_w, c->padding, b != NULL,
                              c->act, err);
        }
        if (node >= 0) {
            tnode *n = &tg->nodes[node];
            mopt_tvar *wv = &tg->vars[n->w]->pub;
            memcpy(wv->data, w, (size_t)wv->numel * sizeof(float));
            rename_var(s, n->w, op->inputs[1]);
            if (b) {
                mopt_tvar *bv = &tg->vars[n->b]->pub;
                memcpy(bv->data, b, (size_t)bv->numel * sizeof(float));
                rename_var(s, n->b, op->inputs[2]);
            }
        }
        break;
    }
    case MOPT_OP_FULLY_CONNECTED: {
        const float *w = const_floats(s, op->inputs[1]);
        const float *b = op->n_inputs > 2 ? const_floats(s, op->inputs[2]) : NULL;
        if (!w || (op->n_inputs > 2 && op->inputs[2] >= 0 && !b))
            return op_err(s, oi, MOPT_ERR_UNSUPPORTED, "%sweights and bias must be float "
                                                       "constants", "");
        const mopt_tensor *wt = &g->tensors[op->inputs[1]];
        const tval *xv = &tg->vals[x];
        if (wt->rank != 2)
            return op_err(s, oi, MOPT_ERR_BAD_INPUT, "%sweights must have rank 2", "");
        bool keep = op->p.fc.keep_num_dims;
        if (keep ? xv->dims[xv->rank - 1] != wt->dims[1] : xv->per != wt->dims[1])
            return op_err(s, oi, MOPT_ERR_UNSUPPORTED,
                          "%sthe input would be split into several rows per sample", "");
        node = tgb_fc(tg, x, nm, wt->dims[0], b != NULL, keep, op->p.fc.act, err);
        if (node >= 0) {
            tnode *n = &tg->nodes[node];
            mopt_tvar *wv = &tg->vars[n->w]->pub;
            memcpy(wv->data, w, (size_t)wv->numel * sizeof(float));
            rename_var(s, n->w, op->inputs[1]);
            if (b) {
                mopt_tvar *bv = &tg->vars[n->b]->pub;
                memcpy(bv->data, b, (size_t)bv->numel * sizeof(float));
                rename_var(s, n->b, op->inputs[2]);
            }
        }
        break;
    }
    case MOPT_OP_ADD:
    case MOPT_OP_SUB:
    case MOPT_OP_MUL: {
        int y = value_of(s, op->inputs[1]);
        if (y < 0)
            return op_err(s, oi, MOPT_ERR_UNSUPPORTED, "%sinput 1 is neither computed nor a float "
                                                       "constant", "");
        node = tgb_binary(tg, op->type, x, y, nm, op->p.binary.act, err);
        break;
    }
    case MOPT_OP_CONCATENATION: {
        int *ins = malloc((size_t)op->n_inputs * sizeof(int));
        if (!ins) return mopt_error_set(err, MOPT_ERR_NOMEM, "import: out of memory");
        for (int i = 0; i < op->n_inputs; i++) {
            ins[i] = value_of(s, op->inputs[i]);
            if (ins[i] < 0 || !tg->vals[ins[i]].batched) {
                free(ins);
                return op_err(s, oi, MOPT_ERR_UNSUPPORTED, "%sconstant inputs are not supported",
                              "");
            }
        }
        node = tgb_concat(tg, ins, op->n_inputs, nm, op->p.concat.axis, op->p.concat.act, err);
        free(ins);
        break;
    }
    case MOPT_OP_PAD: {
        const mopt_tensor *pt = &g->tensors[op->inputs[1]];
        int rank = tg->vals[x].rank;
        int32_t before[MOPT_MAX_DIMS] = {0}, after[MOPT_MAX_DIMS] = {0};
        if (!mopt_tensor_is_constant(g, op->inputs[1]) || mopt_tensor_numel(pt) != 2 * rank)
            return op_err(s, oi, MOPT_ERR_UNSUPPORTED, "%spaddings must be a constant [rank, 2]",
                          "");
        const void *pd = mopt_tensor_data(g, op->inputs[1]);
        for (int i = 0; i < rank; i++) {
            int64_t a = pt->dtype == MOPT_INT64 ? ((const int64_t *)pd)[2 * i]
                                                : ((const int32_t *)pd)[2 * i];
            int64_t z = pt->dtype == MOPT_INT64 ? ((const int64_t *)pd)[2 * i + 1]
                                                : ((const int32_t *)pd)[2 * i + 1];
            if (a < 0 || z < 0 || a > 65536 || z > 65536)
                return op_err(s, oi, MOPT_ERR_BAD_INPUT, "%sbad padding", "");
            before[i] = (int32_t)a;
            after[i] = (int32_t)z;
        }
        node = tgb_pad(tg, x, nm, before, after, err);
        break;
    }
    case MOPT_OP_RESHAPE: {
        const mopt_tensor *ot = &g->tensors[out_t];
        if (ot->rank < 1 || ot->dims[0] != 1)
            return op_err(s, oi, MOPT_ERR_UNSUPPORTED, "%sthe new shape does not keep the batch "
                                                       "first", "");
        node = tgb_reshape(tg, x, nm, ot->rank, ot->dims, err);
        break;
    }
    case MOPT_OP_TRANSPOSE: {
        int64_t n = 0;
        const int32_t *perm = const_i32(s, op->inputs[1], &n);
        if (!perm || n != tg->vals[x].rank)
            return op_err(s, oi, MOPT_ERR_UNSUPPORTED, "%sthe permutation must be a constant", "");
        node = tgb_transpose(tg, x, nm, perm, err);
        break;
    }
    case MOPT_OP_MEAN: {
        int64_t n = 0;
        const int32_t *ax = const_i32(s, op->inputs[1], &n);
        int rank = tg->vals[x].rank;
        if (!ax) return op_err(s, oi, MOPT_ERR_UNSUPPORTED, "%saxes must be a constant", "");
        bool axes[MOPT_MAX_DIMS] = {false};
        for (int64_t i = 0; i < n; i++) {
            int a = ax[i] < 0 ? ax[i] + rank : ax[i];
            if (a < 0 || a >= rank) return op_err(s, oi, MOPT_ERR_BAD_INPUT, "%saxis out of range", "");
            axes[a] = true;
        }
        node = tgb_mean(tg, x, nm, axes, op->p.reducer.keep_dims, err);
        break;
    }
    case MOPT_OP_AVERAGE_POOL_2D:
    case MOPT_OP_MAX_POOL_2D: {
        const mopt_pool_params *p = &op->p.pool;
        node = tgb_pool(tg, op->type, x, nm, p->filter_h, p->filter_w, p->stride_h, p->stride_w,
                        p->padding, p->act, err);
        break;
    }
    case MOPT_OP_RELU:
    case MOPT_OP_RELU6:
    case MOPT_OP_LOGISTIC:
    case MOPT_OP_TANH:
    case MOPT_OP_HARD_SWISH: node = tgb_unary(tg, op->type, x, nm, err); break;
    case MOPT_OP_SOFTMAX: {
        bool is_last = oi == g->n_ops - 1 && g->n_outputs == 1 && g->outputs[0] == out_t;
        if (is_last) {
            /* the loss fuses softmax; export re-adds it */
            tg->end_softmax = true;
            tg->softmax_beta = op->p.softmax.beta;
            s->tmap[out_t] = x;
            *dropped_softmax = true;
            return MOPT_OK;
        }
        node = tgb_softmax(tg, x, nm, op->p.softmax.beta, err);
        break;
    }
    default:
        return op_err(s, oi, MOPT_ERR_UNSUPPORTED, "%shas no training support", "");
    }
    return built(s, oi, node, out_t);
}

mopt_status mopt_tgraph_from_graph(const mopt_graph *g, mopt_tgraph **out, mopt_error *err) {
    if (!g || !out) return mopt_error_set(err, MOPT_ERR_ARG, "import: NULL argument");
    *out = NULL;
    mopt_status st = mopt_graph_validate(g, err);
    if (st != MOPT_OK) return st;
    if (g->n_inputs != 1 || g->n_outputs != 1)
        return mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                              "training needs a model with one input and one output (has %d and "
                              "%d)",
                              g->n_inputs, g->n_outputs);
    const mopt_tensor *it = &g->tensors[g->inputs[0]];
    if (it->dtype != MOPT_FLOAT32 || it->rank < 1 || it->dims[0] != 1)
        return mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                              "input tensor %d '%s': training needs a float32 input with batch 1 "
                              "first",
                              g->inputs[0], it->name ? it->name : "");
    istate s;
    memset(&s, 0, sizeof(s));
    s.g = g;
    s.err = err;
    s.tg = tg_new();
    s.tmap = malloc((size_t)(g->n_tensors > 0 ? g->n_tensors : 1) * sizeof(int));
    s.folded = calloc((size_t)(g->n_tensors > 0 ? g->n_tensors : 1), sizeof(float *));
    if (!s.tg || !s.tmap || !s.folded) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "import: out of memory");
        goto done;
    }
    for (int i = 0; i < g->n_tensors; i++) s.tmap[i] = -1;
    s.tg->input = tg_add_value(s.tg, it->rank, it->dims, true);
    s.tg->input_name = dup_str(it->name ? it->name : "input");
    if (s.tg->input < 0 || !s.tg->input_name) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "import: out of memory");
        goto done;
    }
    s.tg->vals[s.tg->input].producer = -1;
    s.tmap[g->inputs[0]] = s.tg->input;
    bool dropped = false;
    for (int i = 0; i < g->n_ops && st == MOPT_OK; i++) st = import_op(&s, i, &dropped);
    if (st != MOPT_OK) goto done;
    {
        int ov = s.tmap[g->outputs[0]];
        if (ov < 0 || !s.tg->vals[ov].batched) {
            st = mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                                "the model output does not depend on its input");
            goto done;
        }
        st = tg_finalize(s.tg, ov, err);
    }
done:
    if (s.folded)
        for (int i = 0; i < g->n_tensors; i++) free(s.folded[i]);
    free(s.folded);
    free(s.tmap);
    if (st == MOPT_OK) {
        *out = s.tg;
    } else {
        mopt_tgraph_free(s.tg);
    }
    return st;
}
