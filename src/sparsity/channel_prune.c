/* channel_prune.c - structured pruning that removes whole output channels of
 * CONV_2D / FULLY_CONNECTED layers and rewrites everything the channels flow
 * through.
 *
 * Model: every channel (last-axis index) of every activation tensor is a node.
 * Ops that carry channels through unchanged (activations, pools, depthwise
 * conv with multiplier 1, elementwise ops, concatenation with offsets, the
 * NHWC flatten) unite the nodes that must disappear together (union-find);
 * ops that cannot lose a channel (SOFTMAX, TRANSPOSE, graph inputs and
 * outputs, ...) freeze them. A class of nodes can be removed when it is not
 * frozen and contains at least one output channel of a selected layer (a
 * "source"); its norm is the summed filter norm of its sources. Layers whose
 * channels share classes (residual ADDs) form a group and are pruned
 * together. The rewrite slices constants (weights, biases, broadcast
 * operands, RESHAPE shapes) and shrinks tensor shapes; a constant used by
 * ops that need different slices is copied. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/sparsity.h"
#include "sparsity/sparse_internal.h"

#define CP_MAX_NODES (1 << 26)

typedef struct cp {
    mopt_graph *g;
    int32_t *base;       /* per tensor: first node, -1 = not an activation */
    int32_t *nch;        /* per tensor: nodes (last dim) */
    int64_t n_nodes;
    int32_t *parent;     /* union-find */
    const char **reason; /* per node: why frozen (NULL = free) */
} cp;

static int32_t uf_find(int32_t *p, int32_t x) {
    while (p[x] != x) {
        p[x] = p[p[x]];
        x = p[x];
    }
    return x;
}

static void uf_union(int32_t *p, int32_t a, int32_t b) {
    a = uf_find(p, a);
    b = uf_find(p, b);
    if (a != b) /* lower index as root: deterministic */
        p[a > b ? a : b] = a < b ? a : b;
}

static bool is_act(const cp *c, int t) { return t >= 0 && t < c->g->n_tensors && c->base[t] >= 0; }

static void freeze(cp *c, int t, const char *why) {
    if (!is_act(c, t))
        return;
    for (int32_t i = 0; i < c->nch[t]; i++)
        if (!c->reason[c->base[t] + i])
            c->reason[c->base[t] + i] = why;
}

static void freeze_op(cp *c, const mopt_op *op, const char *why) {
    for (int i = 0; i < op->n_inputs; i++)
        freeze(c, op->inputs[i], why);
    for (int i = 0; i < op->n_outputs; i++)
        freeze(c, op->outputs[i], why);
}

static void link_same(cp *c, int a, int b) {
    if (!is_act(c, a) || !is_act(c, b))
        return;
    if (c->nch[a] != c->nch[b]) { /* cannot happen in a valid graph; stay safe */
        freeze(c, a, "channel count mismatch");
        freeze(c, b, "channel count mismatch");
        return;
    }
    for (int32_t i = 0; i < c->nch[a]; i++)
        uf_union(c->parent, c->base[a] + i, c->base[b] + i);
}

static int64_t prod_dims(const mopt_tensor *t, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++)
        p *= t->dims[i];
    return p;
}

static const int32_t *const_i32(const mopt_graph *g, int t, int64_t *n) {
    if (t < 0 || t >= g->n_tensors || g->tensors[t].dtype != MOPT_INT32 ||
        !mopt_tensor_is_constant(g, t))
        return NULL;
    *n = mopt_tensor_numel(&g->tensors[t]);
    return mopt_tensor_data(g, t);
}

/* Builds the channel classes: unions for pass-through ops, freezes for the
 * rest. is_source[op] marks the selected CONV_2D / FC layers. */
static void analyse_ops(cp *c, const bool *is_source) {
    mopt_graph *g = c->g;
    for (int oi = 0; oi < g->n_ops; oi++) {
        const mopt_op *op = &g->ops[oi];
        int in0 = op->n_inputs > 0 ? op->inputs[0] : -1;
        int out = op->n_outputs > 0 ? op->outputs[0] : -1;
        switch (op->type) {
        case MOPT_OP_CONV_2D:
        case MOPT_OP_FULLY_CONNECTED: {
            bool wconst = op->n_inputs >= 2 && op->inputs[1] >= 0 &&
                          mopt_tensor_is_constant(g, op->inputs[1]) &&
                          g->tensors[op->inputs[1]].dtype == MOPT_FLOAT32;
            if (!wconst) {
                freeze_op(c, op, "layer without constant float32 weights");
                break;
            }
            const mopt_tensor *w = &g->tensors[op->inputs[1]];
            /* The input's channels are absorbed by the weights' columns. */
            if (is_act(c, in0) && c->nch[in0] != w->dims[w->rank - 1])
                freeze(c, in0, "FULLY_CONNECTED input whose last axis is not its depth");
            if (!is_source[oi])
                freeze(c, out, "layer not selected");
            break;
        }
        case MOPT_OP_DEPTHWISE_CONV_2D: {
            bool wconst = op->n_inputs >= 2 && op->inputs[1] >= 0 &&
                          mopt_tensor_is_constant(g, op->inputs[1]);
            if (!wconst || sp_depth_multiplier(g, oi) != 1)
                freeze_op(c, op, "depthwise convolution with depth multiplier > 1");
            else
                link_same(c, in0, out);
            break;
        }
        case MOPT_OP_RELU:
        case MOPT_OP_RELU6:
        case MOPT_OP_LOGISTIC:
        case MOPT_OP_TANH:
        case MOPT_OP_HARD_SWISH:
        case MOPT_OP_MAX_POOL_2D:
        case MOPT_OP_AVERAGE_POOL_2D: link_same(c, in0, out); break;
        case MOPT_OP_PAD: {
            int64_t n = 0;
            const int32_t *pads = op->n_inputs >= 2 ? const_i32(g, op->inputs[1], &n) : NULL;
            int r = is_act(c, in0) ? g->tensors[in0].rank : 0;
            if (!pads || n != 2 * (int64_t)r || r < 1 || pads[2 * (r - 1)] != 0 ||
                pads[2 * (r - 1) + 1] != 0)
                freeze_op(c, op, "PAD on the channel axis");
            else
                link_same(c, in0, out);
            break;
        }
        case MOPT_OP_MEAN: {
            int64_t n = 0;
            const int32_t *axes = op->n_inputs >= 2 ? const_i32(g, op->inputs[1], &n) : NULL;
            int r = is_act(c, in0) ? g->tensors[in0].rank : 0;
            bool ok = axes && r >= 1;
            for (int64_t i = 0; ok && i < n; i++) {
                int a = axes[i] < 0 ? axes[i] + r : axes[i];
                if (a == r - 1)
                    ok = false;
            }
            if (!ok)
                freeze_op(c, op, "MEAN over the channel axis");
            else
                link_same(c, in0, out);
            break;
        }
        case MOPT_OP_ADD:
        case MOPT_OP_SUB:
        case MOPT_OP_MUL: {
            if (!is_act(c, out)) {
                freeze_op(c, op, "unsupported operand");
                break;
            }
            for (int i = 0; i < op->n_inputs; i++) {
                int t = op->inputs[i];
                if (t < 0)
                    continue;
                const mopt_tensor *x = &g->tensors[t];
                if (x->rank == 0 || x->dims[x->rank - 1] == 1)
                    continue; /* broadcast along the channels: unaffected */
                if (is_act(c, t))
                    link_same(c, t, out);
                else if (x->dims[x->rank - 1] != c->nch[out])
                    freeze_op(c, op, "broadcast operand with another channel count");
                /* constants of the output's channel count are sliced */
            }
            break;
        }
        case MOPT_OP_CONCATENATION: {
            if (!is_act(c, out)) {
                freeze_op(c, op, "unsupported operand");
                break;
            }
            int r = g->tensors[out].rank;
            int axis = op->p.concat.axis < 0 ? op->p.concat.axis + r : op->p.concat.axis;
            bool any_const = false;
            for (int i = 0; i < op->n_inputs; i++)
                any_const |= !is_act(c, op->inputs[i]);
            if (any_const) {
                freeze_op(c, op, "CONCATENATION with a constant");
                break;
            }
            if (axis == r - 1) {
                int32_t off = 0;
                for (int i = 0; i < op->n_inputs; i++) {
                    int t = op->inputs[i];
                    for (int32_t k = 0; k < c->nch[t] && off + k < c->nch[out]; k++)
                        uf_union(c->parent, c->base[t] + k, c->base[out] + off + k);
                    off += c->nch[t];
                }
            } else {
                for (int i = 0; i < op->n_inputs; i++)
                    link_same(c, op->inputs[i], out);
            }
            break;
        }
        case MOPT_OP_RESHAPE: {
            if (!is_act(c, in0) || !is_act(c, out)) {
                freeze_op(c, op, "unsupported RESHAPE");
                break;
            }
            const mopt_tensor *x = &g->tensors[in0], *y = &g->tensors[out];
            int32_t C = c->nch[in0];
            if (c->nch[out] == C && prod_dims(x, 0, x->rank - 1) == prod_dims(y, 0, y->rank - 1)) {
                link_same(c, in0, out); /* channels stay the minor axis */
            } else if (x->rank >= 2 && y->rank == 2 && y->dims[0] == x->dims[0] &&
                       y->dims[1] == prod_dims(x, 1, x->rank) && C > 0) {
                /* NHWC flatten: feature f = s * C + ch (channel-minor). */
                for (int32_t f = 0; f < c->nch[out]; f++)
                    uf_union(c->parent, c->base[out] + f, c->base[in0] + f % C);
            } else {
                freeze_op(c, op, "RESHAPE that moves the channel axis");
            }
            break;
        }
        case MOPT_OP_SOFTMAX: freeze_op(c, op, "feeds SOFTMAX (normalises over the channels)"); break;
        case MOPT_OP_TRANSPOSE: freeze_op(c, op, "TRANSPOSE"); break;
        default: freeze_op(c, op, "unsupported operator"); break;
        }
    }
    for (int i = 0; i < g->n_inputs; i++)
        freeze(c, g->inputs[i], "graph input");
    for (int i = 0; i < g->n_outputs; i++)
        freeze(c, g->outputs[i], "graph output");
}

/* ---- rewrite of constants ---- */

typedef struct cp_edit {
    int op, slot, tensor;
    int rank;
    int32_t dims[MOPT_MAX_DIMS];
    void *data;
    size_t size;
    int group; /* edits of the same tensor with identical results share a group */
} cp_edit;

typedef struct cp_edits {
    cp_edit *v;
    int n, cap;
} cp_edits;

static bool edits_push(cp_edits *e, int op, int slot, int tensor, int rank, const int32_t *dims,
                       void *data, size_t size) {
    if (e->n == e->cap) {
        int nc = e->cap ? 2 * e->cap : 16;
        cp_edit *nv = realloc(e->v, (size_t)nc * sizeof *nv);
        if (!nv)
            return false;
        e->v = nv;
        e->cap = nc;
    }
    cp_edit *x = &e->v[e->n++];
    memset(x, 0, sizeof *x);
    x->op = op;
    x->slot = slot;
    x->tensor = tensor;
    x->rank = rank;
    memcpy(x->dims, dims, (size_t)rank * sizeof *dims);
    x->data = data;
    x->size = size;
    x->group = -1;
    return true;
}

/* Kept channel indices of activation tensor t (ascending); *n gets the count.
 * NULL keep list = tensor not an activation. */
static int32_t *kept_list(const cp *c, const uint8_t *removed, int t, int32_t *n) {
    *n = 0;
    if (!is_act(c, t))
        return NULL;
    int32_t *k = malloc((size_t)(c->nch[t] > 0 ? c->nch[t] : 1) * sizeof *k);
    if (!k)
        return NULL;
    for (int32_t i = 0; i < c->nch[t]; i++)
        if (!removed[uf_find(c->parent, c->base[t] + i)])
            k[(*n)++] = i;
    return k;
}

/* Gathers a float tensor: axis 0 by rows (NULL = all), last axis by cols
 * (NULL = all). */
static float *gather_f32(const float *src, int rank, const int32_t *dims, const int32_t *rows,
                         int32_t nrows, const int32_t *cols, int32_t ncols, int32_t *new_dims) {
    int64_t inner = 1;
    for (int i = 1; i < rank - 1; i++)
        inner *= dims[i];
    int32_t R = dims[0], C = dims[rank - 1];
    if (rank == 1) { /* a vector: rows and cols are the same axis */
        const int32_t *sel = rows ? rows : cols;
        int32_t ns = rows ? nrows : ncols;
        float *o = malloc((size_t)(ns > 0 ? ns : 1) * sizeof *o);
        if (!o)
            return NULL;
        for (int32_t i = 0; i < ns; i++)
            o[i] = src[sel[i]];
        new_dims[0] = ns;
        return o;
    }
    int32_t nr = rows ? nrows : R, nc = cols ? ncols : C;
    float *o = malloc((size_t)((int64_t)nr * inner * nc) * sizeof *o);
    if (!o)
        return NULL;
    int64_t k = 0;
    for (int32_t r = 0; r < nr; r++) {
        int32_t sr = rows ? rows[r] : r;
        for (int64_t m = 0; m < inner; m++) {
            const float *row = src + ((int64_t)sr * inner + m) * C;
            for (int32_t q = 0; q < nc; q++)
                o[k++] = row[cols ? cols[q] : q];
        }
    }
    memcpy(new_dims, dims, (size_t)rank * sizeof *dims);
    new_dims[0] = nr;
    new_dims[rank - 1] = nc;
    return o;
}

/* Queues the new version of constant input `slot` of op `oi`. */
static mopt_status queue_slice(cp *c, cp_edits *e, int oi, int slot, const int32_t *rows,
                               int32_t nrows, const int32_t *cols, int32_t ncols) {
    mopt_graph *g = c->g;
    const mopt_op *op = &g->ops[oi];
    if (slot >= op->n_inputs || op->inputs[slot] < 0)
        return MOPT_OK;
    int t = op->inputs[slot];
    const mopt_tensor *x = &g->tensors[t];
    if (x->dtype != MOPT_FLOAT32 || !mopt_tensor_is_constant(g, t) || x->rank < 1)
        return MOPT_OK;
    int32_t nd[MOPT_MAX_DIMS];
    float *d = gather_f32(mopt_tensor_data(g, t), x->rank, x->dims, rows, nrows, cols, ncols, nd);
    if (!d)
        return MOPT_ERR_NOMEM;
    int64_t numel = 1;
    for (int i = 0; i < x->rank; i++)
        numel *= nd[i];
    if (!edits_push(e, oi, slot, t, x->rank, nd, d, (size_t)numel * sizeof(float))) {
        free(d);
        return MOPT_ERR_NOMEM;
    }
    return MOPT_OK;
}

static bool same_result(const cp_edit *a, const cp_edit *b) {
    return a->rank == b->rank && memcmp(a->dims, b->dims, (size_t)a->rank * sizeof(int32_t)) == 0 &&
           a->size == b->size && memcmp(a->data, b->data, a->size) == 0;
}

/* Applies the queued constant edits: when every user of a tensor wants the
 * same new content it is changed in place, otherwise users get copies. */
static mopt_status apply_edits(cp *c, cp_edits *e) {
    mopt_graph *g = c->g;
    for (int i = 0; i < e->n; i++) {
        cp_edit *x = &e->v[i];
        if (x->group >= 0)
            continue;
        x->group = i;
        for (int j = i + 1; j < e->n; j++)
            if (e->v[j].group < 0 && e->v[j].tensor == x->tensor && same_result(x, &e->v[j]))
                e->v[j].group = i;
    }
    for (int i = 0; i < e->n; i++) {
        cp_edit *x = &e->v[i];
        if (x->group != i)
            continue;
        int t = x->tensor;
        /* Users of t: op input slots (and graph outputs) */
        int users = 0, mine = 0;
        for (int oi = 0; oi < g->n_ops; oi++)
            for (int s = 0; s < g->ops[oi].n_inputs; s++)
                if (g->ops[oi].inputs[s] == t)
                    users++;
        for (int j = 0; j < e->n; j++)
            mine += e->v[j].group == i;
        bool first_group_of_t = true;
        for (int j = 0; j < i; j++)
            if (e->v[j].tensor == t && e->v[j].group == j)
                first_group_of_t = false;
        int target = t;
        if (!(users == mine && first_group_of_t)) {
            /* Copy for these users; name it after the original. */
            char *name = g->tensors[t].name;
            size_t len = strlen(name ? name : "");
            char *nn = malloc(len + 16);
            if (!nn)
                return MOPT_ERR_NOMEM;
            memcpy(nn, name ? name : "", len);
            memcpy(nn + len, "/pruned", 8);
            target = mopt_graph_add_tensor(g, nn, g->tensors[t].dtype, x->rank, x->dims);
            free(nn);
            if (target < 0)
                return MOPT_ERR_NOMEM;
        } else {
            mopt_tensor *tt = &g->tensors[t];
            tt->rank = x->rank;
            memcpy(tt->dims, x->dims, (size_t)x->rank * sizeof(int32_t));
            free(tt->shape_signature);
            tt->shape_signature = NULL;
            tt->n_shape_signature = 0;
        }
        if (mopt_graph_set_tensor_data(g, target, x->data, x->size) != MOPT_OK)
            return MOPT_ERR_NOMEM;
        for (int j = 0; j < e->n; j++)
            if (e->v[j].group == i)
                g->ops[e->v[j].op].inputs[e->v[j].slot] = target;
    }
    return MOPT_OK;
}

/* ---- main ---- */

mopt_channel_prune_params mopt_channel_prune_default_params(void) {
    mopt_channel_prune_params p = {0.5f, MOPT_CHANNEL_L1};
    return p;
}

void mopt_channel_prune_result_free(mopt_channel_prune_result *r) {
    if (!r)
        return;
    for (int i = 0; i < r->n_layers; i++)
        free(r->layers[i].removed);
    free(r->layers);
    memset(r, 0, sizeof *r);
}

typedef struct cp_class {
    double norm;
    int32_t key_ch; /* smallest source channel, for ties */
    int32_t key_op;
    int group;
} cp_class;

static int32_t grp_find(int32_t *p, int32_t x) { return uf_find(p, x); }

/* Removal order: ascending norm; on equal norms the higher channel first
 * (the lower index survives, as top_k keeps it). qsort has no context
 * argument in C11, so a bottom-up merge sort on class indices. */
static int cmp_removal(const cp_class *x, const cp_class *y) {
    if (x->norm != y->norm)
        return x->norm < y->norm ? -1 : 1;
    if (x->key_ch != y->key_ch)
        return x->key_ch > y->key_ch ? -1 : 1;
    return (x->key_op < y->key_op) - (x->key_op > y->key_op);
}

static bool sort_by_removal(int32_t *idx, int32_t n, const cp_class *cls) {
    int32_t *tmp = malloc((size_t)(n > 0 ? n : 1) * sizeof *tmp);
    if (!tmp)
        return false;
    for (int32_t w = 1; w < n; w *= 2) {
        for (int32_t lo = 0; lo < n; lo += 2 * w) {
            int32_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int32_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi) {
                tmp[k++] = cmp_removal(&cls[idx[a]], &cls[idx[b]]) <= 0 ? idx[a++] : idx[b++];
            }
            while (a < mid)
                tmp[k++] = idx[a++];
            while (b < hi)
                tmp[k++] = idx[b++];
        }
        memcpy(idx, tmp, (size_t)n * sizeof *idx);
    }
    free(tmp);
    return true;
}

mopt_status mopt_channel_prune(mopt_graph *g_in, const bool *select,
                               const mopt_channel_prune_params *p, mopt_channel_prune_result *res,
                               mopt_error *err) {
    if (res)
        memset(res, 0, sizeof *res);
    if (!g_in || !p)
        return mopt_error_set(err, MOPT_ERR_ARG, "channel prune: NULL argument");
    if (!(p->sparsity >= 0.0f && p->sparsity < 1.0f))
        return mopt_error_set(err, MOPT_ERR_ARG, "--sparsity: %g is outside [0, 1)",
                              (double)p->sparsity);
    if (p->norm != MOPT_CHANNEL_L1 && p->norm != MOPT_CHANNEL_L2)
        return mopt_error_set(err, MOPT_ERR_ARG, "--norm: unknown norm %d", (int)p->norm);
    for (int t = 0; t < g_in->n_tensors; t++) {
        const mopt_tensor *x = &g_in->tensors[t];
        if (x->quant.n > 0 || (x->dtype != MOPT_FLOAT32 && x->dtype != MOPT_INT32))
            return mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                                  "tensor %d '%s': channel pruning needs a float model (%s%s)", t,
                                  x->name ? x->name : "", mopt_dtype_name(x->dtype),
                                  x->quant.n > 0 ? ", quantized" : "");
    }

    mopt_status st = MOPT_OK;
    mopt_graph *g = mopt_graph_clone(g_in);
    mopt_weight_layer *layers = NULL;
    int n_layers = 0;
    cp c;
    memset(&c, 0, sizeof c);
    bool *is_source = NULL;
    int32_t *cls_group = NULL, *lgroup = NULL, *order = NULL;
    cp_class *cls = NULL;
    uint8_t *removed = NULL, *eligible = NULL;
    int n_src = 0;
    int *src_ops = NULL;
    cp_edits edits = {NULL, 0, 0};
    mopt_channel_prune_layer *out_layers = NULL;
    int32_t **kept = NULL, *nkept = NULL;
    int64_t params_before = mopt_graph_param_count(g_in);
    size_t nt = (size_t)(g_in->n_tensors > 0 ? g_in->n_tensors : 1), nn = 1;
    int64_t nodes = 0;
    if (!g) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "channel prune: out of memory");
        goto done;
    }
    if ((st = mopt_weight_layers_list(g, &layers, &n_layers, err)) != MOPT_OK)
        goto done;
    c.g = g;
    c.base = malloc(nt * sizeof *c.base);
    c.nch = calloc(nt, sizeof *c.nch);
    is_source = calloc((size_t)(g->n_ops > 0 ? g->n_ops : 1), sizeof *is_source);
    src_ops = malloc((size_t)(n_layers > 0 ? n_layers : 1) * sizeof *src_ops);
    if (!c.base || !c.nch || !is_source || !src_ops) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "channel prune: out of memory");
        goto done;
    }
    /* Nodes: every non-constant tensor's last axis. */
    for (int t = 0; t < g->n_tensors; t++) {
        const mopt_tensor *x = &g->tensors[t];
        c.base[t] = -1;
        if (mopt_tensor_is_constant(g, t) || x->rank < 1 || x->dims[x->rank - 1] < 1)
            continue;
        c.base[t] = (int32_t)nodes;
        c.nch[t] = x->dims[x->rank - 1];
        nodes += c.nch[t];
        if (nodes > CP_MAX_NODES) {
            st = mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                                "channel prune: too many activation channels (over %d)",
                                CP_MAX_NODES);
            goto done;
        }
    }
    c.n_nodes = nodes;
    nn = (size_t)(nodes > 0 ? nodes : 1);
    c.parent = malloc(nn * sizeof *c.parent);
    c.reason = calloc(nn, sizeof *c.reason);
    if (!c.parent || !c.reason) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "channel prune: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < nodes; i++)
        c.parent[i] = (int32_t)i;

    /* Sources: selected CONV_2D / FC weight layers with an activation output. */
    for (int i = 0; i < n_layers; i++) {
        int oi = layers[i].op;
        const mopt_op *op = &g->ops[oi];
        if ((layers[i].type != MOPT_OP_CONV_2D && layers[i].type != MOPT_OP_FULLY_CONNECTED) ||
            (select && !select[oi]) || op->n_outputs < 1 || !is_act(&c, op->outputs[0]))
            continue;
        /* A weight tensor listed once but used by several ops: only its
         * first op is a source; the others keep their channels. */
        is_source[oi] = true;
        src_ops[n_src++] = oi;
    }
    if (n_src == 0) {
        st = mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                            "no prunable layer: channel pruning needs a selected CONV_2D or "
                            "FULLY_CONNECTED layer with constant float32 weights");
        goto done;
    }
    /* A weight tensor shared by another op: its rows cannot follow one op's
     * channels only. Freeze such layers. */
    for (int s = 0; s < n_src; s++) {
        int oi = src_ops[s], wt = g->ops[oi].inputs[1];
        for (int o2 = 0; o2 < g->n_ops; o2++)
            if (o2 != oi && g->ops[o2].n_inputs >= 2 && g->ops[o2].inputs[1] == wt)
                freeze(&c, g->ops[oi].outputs[0], "weights shared with another op");
    }
    analyse_ops(&c, is_source);

    /* Classes: norm, eligibility, group of layers. */
    cls = calloc(nn, sizeof *cls);
    eligible = calloc(nn, 1);
    removed = calloc(nn, 1);
    cls_group = malloc(nn * sizeof *cls_group);
    lgroup = malloc((size_t)n_src * sizeof *lgroup);
    if (!cls || !eligible || !removed || !cls_group || !lgroup) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "channel prune: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < nodes; i++) {
        cls_group[i] = -1;
        cls[i].key_ch = INT32_MAX;
        cls[i].key_op = INT32_MAX;
    }
    for (int s = 0; s < n_src; s++)
        lgroup[s] = s;
    uint8_t *frozen_cls = calloc(nn, 1);
    if (!frozen_cls) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "channel prune: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < nodes; i++)
        if (c.reason[i])
            frozen_cls[uf_find(c.parent, (int32_t)i)] = 1;
    for (int s = 0; s < n_src; s++) {
        int oi = src_ops[s], y = g->ops[oi].outputs[0];
        const mopt_tensor *wt = &g->tensors[g->ops[oi].inputs[1]];
        const float *w = mopt_tensor_data(g, g->ops[oi].inputs[1]);
        int64_t per = mopt_tensor_numel(wt) / wt->dims[0];
        for (int32_t ch = 0; ch < c.nch[y] && ch < wt->dims[0]; ch++) {
            int32_t r = uf_find(c.parent, c.base[y] + ch);
            double acc = 0.0;
            for (int64_t k = 0; k < per; k++) {
                double v = (double)w[ch * per + k];
                acc += p->norm == MOPT_CHANNEL_L1 ? fabs(v) : v * v;
            }
            cls[r].norm += acc;
            if (ch < cls[r].key_ch || (ch == cls[r].key_ch && oi < cls[r].key_op)) {
                cls[r].key_ch = ch;
                cls[r].key_op = oi;
            }
            eligible[r] = !frozen_cls[r];
            if (cls_group[r] < 0)
                cls_group[r] = s;
            else /* the class couples two layers: same group */
                uf_union(lgroup, grp_find(lgroup, cls_group[r]), s);
        }
    }
    free(frozen_cls);
    if (p->norm == MOPT_CHANNEL_L2)
        for (int64_t i = 0; i < nodes; i++)
            cls[i].norm = sqrt(cls[i].norm);

    /* Per group: T classes, keep max(round(T * (1 - s)), 1). */
    order = malloc(nn * sizeof *order);
    uint8_t *seen = calloc(nn, 1);
    if (!order || !seen) {
        free(seen);
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "channel prune: out of memory");
        goto done;
    }
    for (int s0 = 0; s0 < n_src; s0++) {
        if (grp_find(lgroup, s0) != s0)
            continue; /* handle each group at its root */
        int32_t T = 0, P = 0;
        for (int s = 0; s < n_src; s++) {
            if (grp_find(lgroup, s) != s0)
                continue;
            int y = g->ops[src_ops[s]].outputs[0];
            for (int32_t ch = 0; ch < c.nch[y]; ch++) {
                int32_t r = uf_find(c.parent, c.base[y] + ch);
                if (seen[r])
                    continue;
                seen[r] = 1;
                cls[r].group = s0;
                T++;
                if (eligible[r])
                    order[P++] = r;
            }
        }
        int64_t keep = mopt_prune_keep_count(T, p->sparsity);
        int64_t n_remove = T - keep < P ? T - keep : P;
        if (!sort_by_removal(order, P, cls)) {
            free(seen);
            st = mopt_error_set(err, MOPT_ERR_NOMEM, "channel prune: out of memory");
            goto done;
        }
        for (int64_t i = 0; i < n_remove; i++)
            removed[order[i]] = 1;
    }
    free(seen);
    /* Every activation keeps at least one channel: restore the best class. */
    for (int t = 0; t < g->n_tensors; t++) {
        if (!is_act(&c, t))
            continue;
        int32_t left = 0, best = -1;
        for (int32_t ch = 0; ch < c.nch[t]; ch++) {
            int32_t r = uf_find(c.parent, c.base[t] + ch);
            if (!removed[r])
                left++;
            else if (best < 0 || cls[r].norm > cls[best].norm)
                best = r;
        }
        if (left == 0 && best >= 0)
            removed[best] = 0;
    }

    /* ---- rewrite ---- */
    kept = calloc(nt, sizeof *kept);
    nkept = calloc(nt, sizeof *nkept);
    if (!kept || !nkept) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "channel prune: out of memory");
        goto done;
    }
    for (int t = 0; t < g->n_tensors; t++)
        if (is_act(&c, t) && !(kept[t] = kept_list(&c, removed, t, &nkept[t]))) {
            st = mopt_error_set(err, MOPT_ERR_NOMEM, "channel prune: out of memory");
            goto done;
        }
    for (int oi = 0; oi < g->n_ops && st == MOPT_OK; oi++) {
        mopt_op *op = &g->ops[oi];
        int in0 = op->n_inputs > 0 ? op->inputs[0] : -1;
        int out = op->n_outputs > 0 ? op->outputs[0] : -1;
        bool in_changed = is_act(&c, in0) && nkept[in0] != c.nch[in0];
        bool out_changed = is_act(&c, out) && nkept[out] != c.nch[out];
        const int32_t *k_in = is_act(&c, in0) ? kept[in0] : NULL;
        const int32_t *k_out = is_act(&c, out) ? kept[out] : NULL;
        int32_t nk_in = is_act(&c, in0) ? nkept[in0] : 0, nk_out = is_act(&c, out) ? nkept[out] : 0;
        mopt_status s2 = MOPT_OK;
        switch (op->type) {
        case MOPT_OP_CONV_2D:
        case MOPT_OP_FULLY_CONNECTED:
            /* weights: rows = output channels, last axis = input channels */
            if (in_changed || out_changed)
                s2 = queue_slice(&c, &edits, oi, 1, out_changed ? k_out : NULL, nk_out,
                                 in_changed ? k_in : NULL, nk_in);
            if (s2 == MOPT_OK && out_changed)
                s2 = queue_slice(&c, &edits, oi, 2, k_out, nk_out, NULL, 0);
            break;
        case MOPT_OP_DEPTHWISE_CONV_2D: /* [1,KH,KW,C]: last axis */
            if (out_changed)
                s2 = queue_slice(&c, &edits, oi, 1, NULL, 0, k_out, nk_out);
            if (s2 == MOPT_OK && out_changed)
                s2 = queue_slice(&c, &edits, oi, 2, k_out, nk_out, NULL, 0);
            break;
        case MOPT_OP_ADD:
        case MOPT_OP_SUB:
        case MOPT_OP_MUL:
            for (int s = 0; out_changed && s < op->n_inputs && s2 == MOPT_OK; s++) {
                int t = op->inputs[s];
                if (t < 0 || is_act(&c, t))
                    continue;
                const mopt_tensor *x = &g->tensors[t];
                if (x->rank >= 1 && x->dims[x->rank - 1] == c.nch[out] && c.nch[out] > 1)
                    s2 = x->rank == 1 ? queue_slice(&c, &edits, oi, s, k_out, nk_out, NULL, 0)
                                      : queue_slice(&c, &edits, oi, s, NULL, 0, k_out, nk_out);
            }
            break;
        case MOPT_OP_RESHAPE: {
            if (!out_changed)
                break;
            /* New output shape: explicit entries follow the new dims, -1 stays. */
            const mopt_tensor *y = &g->tensors[out];
            int32_t nd[MOPT_MAX_DIMS];
            memcpy(nd, y->dims, sizeof nd);
            nd[y->rank - 1] = nk_out;
            if (op->p.reshape.n_new_shape == y->rank)
                for (int i = 0; i < y->rank; i++)
                    if (op->p.reshape.new_shape[i] != -1)
                        op->p.reshape.new_shape[i] = nd[i];
            int64_t n = 0;
            const int32_t *sh = op->n_inputs >= 2 ? const_i32(g, op->inputs[1], &n) : NULL;
            if (sh && n == y->rank) {
                int32_t *ns = malloc((size_t)n * sizeof *ns);
                if (!ns) {
                    s2 = MOPT_ERR_NOMEM;
                    break;
                }
                for (int64_t i = 0; i < n; i++)
                    ns[i] = sh[i] == -1 ? -1 : nd[i];
                int32_t d1[1] = {(int32_t)n};
                if (!edits_push(&edits, oi, 1, op->inputs[1], 1, d1, ns, (size_t)n * sizeof *ns)) {
                    free(ns);
                    s2 = MOPT_ERR_NOMEM;
                }
            }
            break;
        }
        default: break;
        }
        if (s2 != MOPT_OK)
            st = mopt_error_set(err, s2, "channel prune: out of memory");
    }
    if (st != MOPT_OK)
        goto done;
    if (apply_edits(&c, &edits) != MOPT_OK) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "channel prune: out of memory");
        goto done;
    }
    /* Activation shapes (tensors added by apply_edits are constants, t < nt). */
    for (int t = 0; t < (int)nt && t < g->n_tensors; t++) {
        if (!is_act(&c, t) || nkept[t] == c.nch[t])
            continue;
        mopt_tensor *x = &g->tensors[t];
        x->dims[x->rank - 1] = nkept[t];
        if (x->n_shape_signature == x->rank && x->shape_signature[x->rank - 1] != -1)
            x->shape_signature[x->rank - 1] = nkept[t];
    }
    sp_compact_buffers(g);
    mopt_error verr;
    mopt_error_clear(&verr);
    if (mopt_graph_validate(g, &verr) != MOPT_OK) {
        st = mopt_error_set(err, MOPT_ERR_INTERNAL, "channel prune produced an invalid graph: %s",
                            verr.msg);
        goto done;
    }

    /* ---- result ---- */
    if (res) {
        const char **cls_reason = calloc(nn, sizeof *cls_reason);
        out_layers = calloc((size_t)n_src, sizeof *out_layers);
        int32_t *gid = malloc((size_t)n_src * sizeof *gid);
        if (!cls_reason || !out_layers || !gid) {
            free(cls_reason);
            free(gid);
            st = mopt_error_set(err, MOPT_ERR_NOMEM, "channel prune: out of memory");
            goto done;
        }
        for (int64_t i = 0; i < nodes; i++) {
            int32_t r = uf_find(c.parent, (int32_t)i);
            if (c.reason[i] && !cls_reason[r])
                cls_reason[r] = c.reason[i];
        }
        int n_groups = 0;
        for (int s = 0; s < n_src; s++)
            gid[s] = -1;
        for (int s = 0; s < n_src; s++) {
            int root = grp_find(lgroup, s);
            if (gid[root] < 0)
                gid[root] = n_groups++;
            mopt_channel_prune_layer *L = &out_layers[s];
            int y = g_in->ops[src_ops[s]].outputs[0];
            L->op = src_ops[s];
            L->group = gid[root];
            L->channels_before = c.nch[y];
            L->channels_after = nkept[y];
            L->removed = malloc((size_t)(c.nch[y] > 0 ? c.nch[y] : 1) * sizeof *L->removed);
            if (!L->removed) {
                free(cls_reason);
                free(gid);
                st = mopt_error_set(err, MOPT_ERR_NOMEM, "channel prune: out of memory");
                goto done;
            }
            bool any_eligible = false;
            const char *why = NULL;
            for (int32_t ch = 0; ch < c.nch[y]; ch++) {
                int32_t r = uf_find(c.parent, c.base[y] + ch);
                if (removed[r])
                    L->removed[L->n_removed++] = ch;
                any_eligible |= eligible[r];
                if (!why && cls_reason[r])
                    why = cls_reason[r];
            }
            L->frozen = !any_eligible;
            L->reason = L->frozen ? why : NULL;
        }
        free(cls_reason);
        free(gid);
    }
    sp_graph_swap(g_in, g); /* commit; g now holds the old graph and is freed */
    if (res) {
        res->n_layers = n_src;
        res->layers = out_layers;
        out_layers = NULL;
        res->params_before = params_before;
        res->params_after = mopt_graph_param_count(g_in);
    }
    st = MOPT_OK;
done:
    if (out_layers) {
        for (int s = 0; s < n_src; s++)
            free(out_layers[s].removed);
        free(out_layers);
    }
    if (kept)
        for (int t = 0; t < (int)nt; t++)
            free(kept[t]);
    free(kept);
    free(nkept);
    free(order);
    free(cls);
    free(eligible);
    free(removed);
    free(cls_group);
    free(lgroup);
    for (int i = 0; i < edits.n; i++)
        free(edits.v[i].data);
    free(edits.v);
    free(c.base);
    free(c.nch);
    free(c.parent);
    free(c.reason);
    free(is_source);
    free(src_ops);
    free(layers);
    mopt_graph_free(g);
    return st;
}
