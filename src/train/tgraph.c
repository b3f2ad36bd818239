/* tgraph.c - the training graph: storage, variables, the forward and
 * backward drivers, the fused softmax cross-entropy and the transform
 * chains. Per-op arithmetic lives in ops_*.c, graph building in build.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mopt/util.h"
#include "train/tg_internal.h"

/* ---- memory ---- */

void *tr_alloc(size_t bytes) {
    if (bytes == 0) bytes = TR_ALIGN;
    size_t rounded = (bytes + TR_ALIGN - 1) / TR_ALIGN * TR_ALIGN;
    void *p = NULL;
    if (posix_memalign(&p, TR_ALIGN, rounded) != 0) return NULL;
    return p;
}

void *tr_calloc(size_t bytes) {
    void *p = tr_alloc(bytes);
    if (p) memset(p, 0, bytes ? bytes : TR_ALIGN);
    return p;
}

void tr_free(void *p) { free(p); }

float *tr_scratch(mopt_tgraph *tg, size_t floats) {
    if (floats <= tg->scratch_floats) return tg->scratch;
    tr_free(tg->scratch);
    tg->scratch = tr_alloc(floats * sizeof(float));
    tg->scratch_floats = tg->scratch ? floats : 0;
    return tg->scratch;
}

const float *tr_zeros(mopt_tgraph *tg, size_t floats) {
    if (floats <= tg->zeros_floats) return tg->zeros;
    tr_free(tg->zeros);
    tg->zeros = tr_calloc(floats * sizeof(float));
    tg->zeros_floats = tg->zeros ? floats : 0;
    return tg->zeros;
}

int tr_threads(const mopt_tgraph *tg) {
    if (tg->num_threads > 0) return tg->num_threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

tr_pool *tr_get_pool(mopt_tgraph *tg) {
    const int nt = tr_threads(tg);
    if (nt <= 1) return NULL;
    if (tg->pool && tg->pool_threads == nt) return tg->pool;
    tr_pool_free(tg->pool);
    tg->pool = tr_pool_create(nt);
    tg->pool_threads = tg->pool ? nt : 0;
    return tg->pool;
}

/* ---- lifetime ---- */

mopt_tgraph *tg_new(void) {
    mopt_tgraph *tg = calloc(1, sizeof(*tg));
    if (!tg) return NULL;
    tg->input = -1;
    tg->output = -1;
    tg->seed = 1;
    tg->softmax_beta = 1.0f;
    return tg;
}

static void free_stages(tvar *v) {
    for (int i = 0; i < v->n_stages; i++) {
        if (v->stages[i].t.destroy) v->stages[i].t.destroy(v->stages[i].t.state);
        tr_free(v->stages[i].out);
        tr_free(v->stages[i].gin);
    }
    free(v->stages);
    v->stages = NULL;
    v->n_stages = 0;
    tr_free(v->gsum);
    v->gsum = NULL;
}

static void free_batch_buffers(mopt_tgraph *tg) {
    for (int i = 0; i < tg->n_vals; i++) {
        tval *v = &tg->vals[i];
        if (!v->batched) continue;
        tr_free(v->data);
        tr_free(v->grad);
        v->data = v->grad = NULL;
    }
    for (int i = 0; i < tg->n_nodes; i++) {
        tnode *n = &tg->nodes[i];
        tr_free(n->raw);
        tr_free(n->raw_grad);
        tr_free(n->aux);
        n->raw = n->raw_grad = NULL;
        n->aux = NULL;
        n->aux_cap = 0;
    }
    tg->cap_batch = 0;
}

void mopt_tgraph_free(mopt_tgraph *tg) {
    if (!tg) return;
    free_batch_buffers(tg);
    for (int i = 0; i < tg->n_vals; i++)
        if (!tg->vals[i].batched) tr_free(tg->vals[i].data);
    free(tg->vals);
    for (int i = 0; i < tg->n_nodes; i++) {
        tnode *n = &tg->nodes[i];
        if (n->has_at && n->at.destroy) n->at.destroy(n->at.state);
        free(n->name);
        free(n->in);
        free(n->in_nodes);
    }
    free(tg->nodes);
    for (int i = 0; i < tg->n_vars; i++) {
        tvar *v = tg->vars[i];
        free_stages(v);
        free(v->pub.name);
        tr_free(v->pub.data);
        tr_free(v->pub.grad);
        free(v);
    }
    free(tg->vars);
    free(tg->input_name);
    tr_free(tg->scratch);
    tr_free(tg->zeros);
    tr_pool_free(tg->pool);
    free(tg);
}

/* ---- building blocks ---- */

static char *dup_str(const char *s) {
    size_t n = strlen(s ? s : "");
    char *d = malloc(n + 1);
    if (d) memcpy(d, s ? s : "", n + 1);
    return d;
}

int tg_add_value(mopt_tgraph *tg, int rank, const int32_t *dims, bool batched) {
    if (rank < 0 || rank > MOPT_MAX_DIMS) return -1;
    if (tg->n_vals == tg->cap_vals) {
        int cap = tg->cap_vals ? tg->cap_vals * 2 : 32;
        tval *nv = realloc(tg->vals, (size_t)cap * sizeof(*nv));
        if (!nv) return -1;
        tg->vals = nv;
        tg->cap_vals = cap;
    }
    tval *v = &tg->vals[tg->n_vals];
    memset(v, 0, sizeof(*v));
    v->rank = rank;
    int64_t per = 1;
    for (int i = 0; i < rank; i++) {
        v->dims[i] = dims[i];
        if (dims[i] < 0 || (i == 0 && batched && dims[i] != 1)) return -1;
        if (!(i == 0 && batched)) per *= dims[i];
        if (per > ((int64_t)1 << 31)) return -1;
    }
    v->batched = batched;
    v->per = per;
    v->producer = -2;
    return tg->n_vals++;
}

int tg_add_const(mopt_tgraph *tg, int rank, const int32_t *dims, const float *data) {
    int id = tg_add_value(tg, rank, dims, false);
    if (id < 0) return -1;
    tval *v = &tg->vals[id];
    v->data = tr_alloc((size_t)v->per * sizeof(float));
    if (!v->data) {
        tg->n_vals--;
        return -1;
    }
    if (data)
        memcpy(v->data, data, (size_t)v->per * sizeof(float));
    else
        memset(v->data, 0, (size_t)v->per * sizeof(float));
    return id;
}

static bool name_taken(const mopt_tgraph *tg, const char *name) {
    for (int i = 0; i < tg->n_nodes; i++)
        if (tg->nodes[i].name && strcmp(tg->nodes[i].name, name) == 0) return true;
    return false;
}

void tg_unique_name(const mopt_tgraph *tg, const char *prefix, char *buf, size_t cap) {
    for (int k = 1;; k++) {
        snprintf(buf, cap, "%s%d", prefix, k);
        if (!name_taken(tg, buf)) return;
    }
}

static int producer_node(const mopt_tgraph *tg, int value) {
    int p = tg->vals[value].producer;
    return p >= 0 ? p : (value == tg->input ? -1 : -2);
}

int tg_add_node(mopt_tgraph *tg, int kind, const char *name, const int *in, int n_in, int rank,
                const int32_t *dims) {
    if (tg->n_nodes == tg->cap_nodes) {
        int cap = tg->cap_nodes ? tg->cap_nodes * 2 : 32;
        tnode *nn = realloc(tg->nodes, (size_t)cap * sizeof(*nn));
        if (!nn) return -1;
        tg->nodes = nn;
        tg->cap_nodes = cap;
    }
    int out = tg_add_value(tg, rank, dims, true);
    if (out < 0) return -1;
    tnode *n = &tg->nodes[tg->n_nodes];
    memset(n, 0, sizeof(*n));
    char buf[96];
    if (!name || !*name || name_taken(tg, name)) {
        char pre[64];
        if (name && *name) {
            snprintf(pre, sizeof(pre), "%.60s_", name);
        } else {
            const char *k = kind == MOPT_OP_CONV_2D             ? "conv"
                            : kind == MOPT_OP_DEPTHWISE_CONV_2D ? "dwconv"
                            : kind == MOPT_OP_FULLY_CONNECTED   ? "fc"
                            : kind == MOPT_TNODE_BATCH_NORM     ? "bn"
                            : kind == MOPT_TNODE_DROPOUT        ? "dropout"
                                                                : mopt_op_name(kind);
            snprintf(pre, sizeof(pre), "%s", k ? k : "node");
            for (char *p = pre; *p; p++)
                if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
        }
        tg_unique_name(tg, pre, buf, sizeof(buf));
        name = buf;
    }
    n->name = dup_str(name);
    n->in = malloc((size_t)(n_in > 0 ? n_in : 1) * sizeof(int));
    if (!n->name || !n->in) {
        free(n->name);
        free(n->in);
        tg->n_vals--;
        return -1;
    }
    memcpy(n->in, in, (size_t)n_in * sizeof(int));
    n->n_in = n_in;
    n->in_nodes = malloc((size_t)(n_in > 0 ? n_in : 1) * sizeof(int));
    if (!n->in_nodes) {
        free(n->name);
        free(n->in);
        tg->n_vals--;
        return -1;
    }
    for (int i = 0; i < n_in; i++) {
        int p = producer_node(tg, in[i]);
        if (p >= -1) n->in_nodes[n->n_in_nodes++] = p;
    }
    n->kind = kind;
    n->out = out;
    n->w = n->b = -1;
    n->bn_gamma = n->bn_beta = n->bn_mean = n->bn_var = -1;
    n->key = mopt_hash64(0x6E6F6465ULL, (uint64_t)tg->n_nodes);
    tg->vals[out].producer = tg->n_nodes;
    return tg->n_nodes++;
}

int tg_add_var(mopt_tgraph *tg, const char *name, mopt_tvar_role role, unsigned flags, int node,
               int rank, const int32_t *dims) {
    if (rank < 0 || rank > MOPT_MAX_DIMS) return -1;
    if (tg->n_vars == tg->cap_vars) {
        int cap = tg->cap_vars ? tg->cap_vars * 2 : 32;
        tvar **nv = realloc(tg->vars, (size_t)cap * sizeof(*nv));
        if (!nv) return -1;
        tg->vars = nv;
        tg->cap_vars = cap;
    }
    tvar *v = calloc(1, sizeof(*v));
    if (!v) return -1;
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) {
            free(v);
            return -1;
        }
        v->pub.dims[i] = dims[i];
        numel *= dims[i];
        if (numel > ((int64_t)1 << 31)) {
            free(v);
            return -1;
        }
    }
    v->pub.rank = rank;
    v->pub.numel = numel;
    v->pub.role = role;
    v->pub.flags = flags;
    v->pub.node = node;
    v->pub.name = dup_str(name);
    v->pub.data = tr_calloc((size_t)numel * sizeof(float));
    bool has_grad = role == MOPT_TVAR_WEIGHT || role == MOPT_TVAR_BIAS ||
                    role == MOPT_TVAR_BN_GAMMA || role == MOPT_TVAR_BN_BETA ||
                    (flags & MOPT_TVAR_TRAINABLE);
    if (has_grad) v->pub.grad = tr_calloc((size_t)numel * sizeof(float));
    if (!v->pub.name || !v->pub.data || (has_grad && !v->pub.grad)) {
        free(v->pub.name);
        tr_free(v->pub.data);
        tr_free(v->pub.grad);
        free(v);
        return -1;
    }
    tg->vars[tg->n_vars] = v;
    return tg->n_vars++;
}

mopt_status tg_finalize(mopt_tgraph *tg, int output_value, mopt_error *err) {
    if (tg->input < 0 || output_value < 0 || output_value >= tg->n_vals)
        return mopt_error_set(err, MOPT_ERR_INTERNAL, "training graph: no input or output");
    tval *o = &tg->vals[output_value];
    if (!o->batched || o->producer < 0)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "training graph: the output does not depend on the input");
    if (o->per < 1 || o->per > (1 << 20))
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "training graph: output has %lld values per sample",
                              (long long)o->per);
    tg->output = output_value;
    for (int i = 0; i < tg->n_vals; i++) {
        tg->vals[i].n_cons = 0;
        tg->vals[i].consumer = -1;
    }
    for (int i = 0; i < tg->n_nodes; i++)
        for (int k = 0; k < tg->nodes[i].n_in; k++) {
            tval *v = &tg->vals[tg->nodes[i].in[k]];
            v->n_cons++;
            v->consumer = i;
        }
    /* Every batched value produced by a node gets a gradient buffer. */
    for (int i = 0; i < tg->n_vals; i++)
        tg->vals[i].need_grad = tg->vals[i].batched && tg->vals[i].producer >= 0;
    tg->vals[tg->input].need_grad = tg->input_grad;
    return MOPT_OK;
}

/* ---- queries ---- */

int mopt_tgraph_num_nodes(const mopt_tgraph *tg) { return tg ? tg->n_nodes : 0; }
int mopt_tgraph_num_vars(const mopt_tgraph *tg) { return tg ? tg->n_vars : 0; }

mopt_tvar *mopt_tgraph_var(mopt_tgraph *tg, int i) {
    return tg && i >= 0 && i < tg->n_vars ? &tg->vars[i]->pub : NULL;
}
const mopt_tvar *mopt_tgraph_var_c(const mopt_tgraph *tg, int i) {
    return tg && i >= 0 && i < tg->n_vars ? &tg->vars[i]->pub : NULL;
}

int mopt_tgraph_find_var(const mopt_tgraph *tg, const char *name) {
    if (!tg || !name) return -1;
    for (int i = 0; i < tg->n_vars; i++)
        if (strcmp(tg->vars[i]->pub.name, name) == 0) return i;
    return -1;
}

const float *mopt_tgraph_var_effective(const mopt_tgraph *tg, int i) {
    if (!tg || i < 0 || i >= tg->n_vars) return NULL;
    const tvar *v = tg->vars[i];
    return v->n_stages ? v->stages[v->n_stages - 1].out : v->pub.data;
}

mopt_status mopt_tgraph_node_info(const mopt_tgraph *tg, int node, mopt_tnode_info *out,
                                  mopt_error *err) {
    if (!tg || !out || node < 0 || node >= tg->n_nodes)
        return mopt_error_set(err, MOPT_ERR_ARG, "node index %d out of range (%d nodes)", node,
                              tg ? tg->n_nodes : 0);
    const tnode *n = &tg->nodes[node];
    memset(out, 0, sizeof(*out));
    out->kind = n->kind;
    out->name = n->name;
    int k = n->n_in_nodes;
    out->n_inputs = k;
    out->inputs = n->in_nodes;
    for (int j = node + 1; j < tg->n_nodes; j++)
        for (int i = 0; i < tg->nodes[j].n_in; i++)
            if (tg->nodes[j].in[i] == n->out) {
                out->n_consumers++;
                break;
            }
    out->is_output = n->out == tg->output;
    out->act = n->act;
    out->weights = n->w;
    out->bias = n->b;
    out->bn_gamma = n->bn_gamma;
    out->bn_beta = n->bn_beta;
    out->bn_mean = n->bn_mean;
    out->bn_var = n->bn_var;
    out->bn_eps = n->bn_eps;
    out->bn_momentum = n->bn_momentum;
    out->dropout_rate = n->rate;
    const tval *v = &tg->vals[n->out];
    out->rank = v->rank;
    memcpy(out->dims, v->dims, sizeof(out->dims));
    return MOPT_OK;
}

int64_t mopt_tgraph_input_size(const mopt_tgraph *tg, int *rank, int32_t *dims) {
    const tval *v = &tg->vals[tg->input];
    if (rank) *rank = v->rank - 1;
    if (dims)
        for (int i = 1; i < v->rank; i++) dims[i - 1] = v->dims[i];
    return v->per;
}

int mopt_tgraph_num_outputs(const mopt_tgraph *tg) { return (int)tg->vals[tg->output].per; }

int64_t mopt_tgraph_param_count(const mopt_tgraph *tg) {
    int64_t n = 0;
    for (int i = 0; i < tg->n_vars; i++)
        if (tg->vars[i]->pub.flags & MOPT_TVAR_TRAINABLE) n += tg->vars[i]->pub.numel;
    return n;
}

static const char *kind_name(int kind) {
    if (kind == MOPT_TNODE_BATCH_NORM) return "BATCH_NORM";
    if (kind == MOPT_TNODE_DROPOUT) return "DROPOUT";
    const char *s = mopt_op_name(kind);
    return s ? s : "?";
}

void mopt_tgraph_summary(const mopt_tgraph *tg, char *buf, size_t cap) {
    if (!buf || cap == 0) return;
    size_t off = 0;
    buf[0] = 0;
#define APPEND(...)                                                              \
    do {                                                                         \
        if (off < cap) {                                                         \
            int w_ = snprintf(buf + off, cap - off, __VA_ARGS__);                \
            if (w_ > 0) off += (size_t)w_;                                       \
        }                                                                        \
    } while (0)
    for (int i = 0; i < tg->n_nodes; i++) {
        const tnode *n = &tg->nodes[i];
        const tval *v = &tg->vals[n->out];
        APPEND("%-14s %-18s [", n->name, kind_name(n->kind));
        for (int d = 0; d < v->rank; d++) {
            if (d == 0)
                APPEND("N");
            else
                APPEND(",%d", (int)v->dims[d]);
        }
        APPEND("]");
        int64_t params = 0;
        int vids[4] = {n->w, n->b, n->bn_gamma, n->bn_beta};
        for (int k = 0; k < 4; k++)
            if (vids[k] >= 0) params += tg->vars[vids[k]]->pub.numel;
        if (params) APPEND("  params %lld", (long long)params);
        if (n->act != MOPT_ACT_NONE) APPEND("  +%s", mopt_activation_name(n->act));
        APPEND("\n");
    }
    APPEND("trainable parameters: %lld\n", (long long)mopt_tgraph_param_count(tg));
#undef APPEND
}

/* ---- execution ---- */

void mopt_tgraph_set_num_threads(mopt_tgraph *tg, int n) { tg->num_threads = n > 0 ? n : 0; }
void mopt_tgraph_set_seed(mopt_tgraph *tg, uint64_t seed) { tg->seed = seed; }

void mopt_tgraph_set_input_grad(mopt_tgraph *tg, bool on) {
    if (tg->input_grad == on) return;
    tg->input_grad = on;
    tg->vals[tg->input].need_grad = on;
    free_batch_buffers(tg); /* reallocated (with or without the input grad) on the next forward */
}

void mopt_tgraph_set_bn_frozen(mopt_tgraph *tg, bool frozen) {
    for (int i = 0; i < tg->n_nodes; i++) tg->nodes[i].bn_frozen = frozen;
}

/* Makes every batched buffer hold `batch` samples. */
static mopt_status ensure_capacity(mopt_tgraph *tg, int batch, mopt_error *err) {
    if (batch <= tg->cap_batch) return MOPT_OK;
    free_batch_buffers(tg);
    for (int i = 0; i < tg->n_vals; i++) {
        tval *v = &tg->vals[i];
        if (!v->batched) continue;
        size_t bytes = (size_t)batch * (size_t)v->per * sizeof(float);
        v->data = tr_calloc(bytes);
        if (v->need_grad) v->grad = tr_calloc(bytes);
        if (!v->data || (v->need_grad && !v->grad)) goto nomem;
    }
    for (int i = 0; i < tg->n_nodes; i++) {
        tnode *n = &tg->nodes[i];
        size_t bytes = (size_t)batch * (size_t)tg->vals[n->out].per * sizeof(float);
        if (n->has_at) {
            n->raw = tr_calloc(bytes);
            n->raw_grad = tr_calloc(bytes);
            if (!n->raw || !n->raw_grad) goto nomem;
        }
        size_t aux = tr_op_aux_bytes(tg, n, batch);
        if (aux) {
            n->aux = tr_calloc(aux);
            if (!n->aux) goto nomem;
            n->aux_cap = aux;
        }
    }
    tg->cap_batch = batch;
    return MOPT_OK;
nomem:
    free_batch_buffers(tg);
    return mopt_error_set(err, MOPT_ERR_NOMEM, "training graph: out of memory for batch %d",
                          batch);
}

static mopt_status run_weight_chains(mopt_tgraph *tg, bool training, int64_t step,
                                     mopt_error *err) {
    for (int i = 0; i < tg->n_vars; i++) {
        tvar *v = tg->vars[i];
        for (int s = 0; s < v->n_stages; s++) {
            mopt_wt_args a;
            memset(&a, 0, sizeof(a));
            a.tg = tg;
            a.var = i;
            a.v = &v->pub;
            a.n = v->pub.numel;
            a.latent = v->pub.data;
            a.in = s == 0 ? v->pub.data : v->stages[s - 1].out;
            a.out = v->stages[s].out;
            a.training = training;
            a.step = step;
            a.num_threads = tr_threads(tg);
            mopt_status st = v->stages[s].t.forward(v->stages[s].t.state, &a, err);
            if (st != MOPT_OK) {
                mopt_error_prefix(err, "variable '%s': transform '%s'", v->pub.name,
                                  v->stages[s].t.name ? v->stages[s].t.name : "?");
                return st;
            }
        }
    }
    return MOPT_OK;
}

static void fill_ctx(mopt_tgraph *tg, tnode *n, tr_ctx *c, bool training) {
    memset(c, 0, sizeof(*c));
    c->tg = tg;
    c->n = n;
    c->batch = tg->batch;
    c->nt = tr_threads(tg);
    /* Waking threads costs microseconds (much more on a busy machine): small
     * nodes run on one thread. Results do not depend on the count. */
    {
        const tval *o = &tg->vals[n->out];
        int64_t work = (int64_t)tg->batch * o->per;
        for (int i = 0; i < n->n_in; i++) work += tv_numel(tg, &tg->vals[n->in[i]]);
        if (n->kind == MOPT_OP_CONV_2D && n->w >= 0) work *= tg->vars[n->w]->pub.numel / 8 + 1;
        if (work < 32768) c->nt = 1;
    }
    c->pool = c->nt > 1 ? tr_get_pool(tg) : NULL;
    if (!c->pool) c->nt = 1;
    c->training = training;
    if (n->w >= 0) {
        tvar *v = tg->vars[n->w];
        c->w = mopt_tgraph_var_effective(tg, n->w);
        if (v->n_stages)
            c->gw = v->gsum;
        else if (v->pub.flags & MOPT_TVAR_TRAINABLE)
            c->gw = v->pub.grad;
    }
    if (n->b >= 0) {
        tvar *v = tg->vars[n->b];
        c->b = mopt_tgraph_var_effective(tg, n->b);
        if (v->n_stages)
            c->gb = v->gsum;
        else if (v->pub.flags & MOPT_TVAR_TRAINABLE)
            c->gb = v->pub.grad;
    }
    c->y = n->has_at ? n->raw : tg->vals[n->out].data;
}

mopt_status mopt_tgraph_forward(mopt_tgraph *tg, const float *x, int batch, bool training,
                                int64_t step, mopt_error *err) {
    if (!tg || !x || batch < 1)
        return mopt_error_set(err, MOPT_ERR_ARG, "forward: need an input and batch >= 1 (got %d)",
                              batch);
    mopt_status st = ensure_capacity(tg, batch, err);
    if (st != MOPT_OK) return st;
    tg->batch = batch;
    tg->step = step;
    tg->trained_fw = false;
    tg->out_grad_ready = false;
    tval *in = &tg->vals[tg->input];
    memcpy(in->data, x, (size_t)batch * (size_t)in->per * sizeof(float));
    if ((st = run_weight_chains(tg, training, step, err)) != MOPT_OK) return st;
    for (int i = 0; i < tg->n_nodes; i++) {
        tnode *n = &tg->nodes[i];
        tr_ctx c;
        fill_ctx(tg, n, &c, training);
        const double t0 = tg->profile ? mopt_now() : 0.0;
        if ((st = tr_op_forward(&c, err)) != MOPT_OK) return st;
        if (tg->profile) n->t_fwd += mopt_now() - t0;
        if (n->has_at) {
            tval *o = &tg->vals[n->out];
            mopt_at_args a;
            memset(&a, 0, sizeof(a));
            int32_t dims[MOPT_MAX_DIMS];
            memcpy(dims, o->dims, sizeof(dims));
            dims[0] = batch;
            a.tg = tg;
            a.node = i;
            a.rank = o->rank;
            a.dims = dims;
            a.n = tv_numel(tg, o);
            a.in = n->raw;
            a.out = o->data;
            a.training = training;
            a.step = step;
            a.num_threads = c.nt;
            if ((st = n->at.forward(n->at.state, &a, err)) != MOPT_OK) {
                mopt_error_prefix(err, "node '%s': activation transform '%s'", n->name,
                                  n->at.name ? n->at.name : "?");
                return st;
            }
        }
    }
    tg->trained_fw = training;
    return MOPT_OK;
}

const float *mopt_tgraph_output(const mopt_tgraph *tg) { return tg->vals[tg->output].data; }

const float *mopt_tgraph_input_grad(const mopt_tgraph *tg) { return tg->vals[tg->input].grad; }

mopt_status mopt_tgraph_loss_softmax_ce(mopt_tgraph *tg, const int32_t *labels, double *loss,
                                        int *correct, mopt_error *err) {
    tval *o = &tg->vals[tg->output];
    const int B = tg->batch, C = (int)o->per;
    if (B < 1 || !o->data)
        return mopt_error_set(err, MOPT_ERR_ARG, "loss: no forward pass has run");
    for (int b = 0; b < B; b++)
        if (labels[b] < 0 || labels[b] >= C)
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                  "loss: label %d of sample %d is outside [0, %d)", (int)labels[b],
                                  b, C);
    /* Per-sample losses in double (log-sum-exp with the row max subtracted),
     * summed in sample order: deterministic and overflow-free. */
    double total = 0.0;
    int hits = 0;
    const float inv_b = 1.0f / (float)B;
    for (int b = 0; b < B; b++) {
        const float *z = o->data + (size_t)b * C;
        float *g = o->grad + (size_t)b * C;
        int arg = 0;
        float m = z[0];
        for (int j = 1; j < C; j++)
            if (z[j] > m || (isnan(m) && !isnan(z[j]))) {
                m = z[j];
                arg = j;
            }
        double s = 0.0;
        for (int j = 0; j < C; j++) s += exp((double)z[j] - (double)m);
        double lse = (double)m + log(s);
        total += lse - (double)z[labels[b]];
        hits += arg == labels[b];
        for (int j = 0; j < C; j++) {
            float p = (float)(exp((double)z[j] - lse));
            g[j] = (p - (j == labels[b] ? 1.0f : 0.0f)) * inv_b;
        }
    }
    if (loss) *loss = total / B;
    if (correct) *correct = hits;
    tg->out_grad_ready = true;
    return MOPT_OK;
}

mopt_status mopt_tgraph_set_output_grad(mopt_tgraph *tg, const float *dy, mopt_error *err) {
    tval *o = &tg->vals[tg->output];
    if (tg->batch < 1 || !o->grad)
        return mopt_error_set(err, MOPT_ERR_ARG, "set_output_grad: no forward pass has run");
    memcpy(o->grad, dy, (size_t)tg->batch * (size_t)o->per * sizeof(float));
    tg->out_grad_ready = true;
    return MOPT_OK;
}

static mopt_status run_chain_backward(mopt_tgraph *tg, int i, mopt_error *err) {
    tvar *v = tg->vars[i];
    for (int s = v->n_stages - 1; s >= 0; s--) {
        wstage *ws = &v->stages[s];
        mopt_wt_args a;
        memset(&a, 0, sizeof(a));
        a.tg = tg;
        a.var = i;
        a.v = &v->pub;
        a.n = v->pub.numel;
        a.latent = v->pub.data;
        a.in = s == 0 ? v->pub.data : v->stages[s - 1].out;
        a.out = ws->out;
        a.dout = s == v->n_stages - 1 ? v->gsum : v->stages[s + 1].gin;
        a.din = s == 0 ? v->pub.grad : ws->gin;
        a.training = true;
        a.step = tg->step;
        a.num_threads = tr_threads(tg);
        if (!a.din) continue; /* frozen variable without gradient */
        if (ws->t.backward) {
            mopt_status st = ws->t.backward(ws->t.state, &a, err);
            if (st != MOPT_OK) {
                mopt_error_prefix(err, "variable '%s': transform '%s' backward", v->pub.name,
                                  ws->t.name ? ws->t.name : "?");
                return st;
            }
        } else {
            memcpy(a.din, a.dout, (size_t)a.n * sizeof(float));
        }
    }
    return MOPT_OK;
}

/* Value i's gradient is written (not accumulated) by its only consumer. */
static bool single_writer(const mopt_tgraph *tg, int i) {
    const tval *v = &tg->vals[i];
    if (v->n_cons != 1 || v->consumer < 0) return false;
    const tnode *n = &tg->nodes[v->consumer];
    return n->n_in == 1 && n->in[0] == i && tr_op_can_overwrite_dx(n->kind);
}

mopt_status mopt_tgraph_backward(mopt_tgraph *tg, mopt_error *err) {
    if (!tg->trained_fw)
        return mopt_error_set(err, MOPT_ERR_ARG,
                              "backward: the last forward pass was not a training pass");
    if (!tg->out_grad_ready)
        return mopt_error_set(err, MOPT_ERR_ARG,
                              "backward: no output gradient (call a loss or set_output_grad)");
    const int B = tg->batch;
    for (int i = 0; i < tg->n_vals; i++) {
        tval *v = &tg->vals[i];
        if (!v->grad || i == tg->output || single_writer(tg, i)) continue;
        memset(v->grad, 0, (size_t)B * (size_t)v->per * sizeof(float));
    }
    for (int i = 0; i < tg->n_vars; i++) {
        tvar *v = tg->vars[i];
        if (v->pub.grad) memset(v->pub.grad, 0, (size_t)v->pub.numel * sizeof(float));
        if (v->gsum) memset(v->gsum, 0, (size_t)v->pub.numel * sizeof(float));
    }
    mopt_status st;
    for (int i = tg->n_nodes - 1; i >= 0; i--) {
        tnode *n = &tg->nodes[i];
        tval *o = &tg->vals[n->out];
        tr_ctx c;
        fill_ctx(tg, n, &c, true);
        c.dy = o->grad;
        c.dx_overwrite = n->n_in == 1 && single_writer(tg, n->in[0]);
        if (n->has_at) {
            if (n->at.backward) {
                mopt_at_args a;
                memset(&a, 0, sizeof(a));
                int32_t dims[MOPT_MAX_DIMS];
                memcpy(dims, o->dims, sizeof(dims));
                dims[0] = B;
                a.tg = tg;
                a.node = i;
                a.rank = o->rank;
                a.dims = dims;
                a.n = tv_numel(tg, o);
                a.in = n->raw;
                a.out = o->data;
                a.dout = o->grad;
                a.din = n->raw_grad;
                a.training = true;
                a.step = tg->step;
                a.num_threads = c.nt;
                if ((st = n->at.backward(n->at.state, &a, err)) != MOPT_OK) {
                    mopt_error_prefix(err, "node '%s': activation transform '%s' backward",
                                      n->name, n->at.name ? n->at.name : "?");
                    return st;
                }
            } else {
                memcpy(n->raw_grad, o->grad, (size_t)tv_numel(tg, o) * sizeof(float));
            }
            c.dy = n->raw_grad;
        }
        const double t0 = tg->profile ? mopt_now() : 0.0;
        if ((st = tr_op_backward(&c, err)) != MOPT_OK) return st;
        if (tg->profile) n->t_bwd += mopt_now() - t0;
    }
    for (int i = 0; i < tg->n_vars; i++)
        if (tg->vars[i]->n_stages && (st = run_chain_backward(tg, i, err)) != MOPT_OK) return st;
    tg->out_grad_ready = false;
    return MOPT_OK;
}

/* ---- transforms ---- */

mopt_status mopt_tgraph_push_weight_transform(mopt_tgraph *tg, int var,
                                              const mopt_weight_transform *t, mopt_error *err) {
    if (!t || !t->forward) {
        if (t && t->destroy) t->destroy(t->state);
        return mopt_error_set(err, MOPT_ERR_ARG, "weight transform without a forward function");
    }
    if (!tg || var < 0 || var >= tg->n_vars) {
        if (t->destroy) t->destroy(t->state);
        return mopt_error_set(err, MOPT_ERR_ARG, "weight transform: variable %d out of range",
                              var);
    }
    tvar *v = tg->vars[var];
    if (v->pub.role != MOPT_TVAR_WEIGHT && v->pub.role != MOPT_TVAR_BIAS) {
        if (t->destroy) t->destroy(t->state);
        return mopt_error_set(err, MOPT_ERR_ARG,
                              "weight transform: variable '%s' is not a weight or bias",
                              v->pub.name);
    }
    size_t bytes = (size_t)v->pub.numel * sizeof(float);
    wstage *ns = realloc(v->stages, (size_t)(v->n_stages + 1) * sizeof(*ns));
    if (!ns) goto nomem;
    v->stages = ns;
    wstage *s = &v->stages[v->n_stages];
    memset(s, 0, sizeof(*s));
    s->out = tr_calloc(bytes);
    if (!s->out) goto nomem;
    if (v->n_stages > 0) {
        s->gin = tr_calloc(bytes);
        if (!s->gin) {
            tr_free(s->out);
            goto nomem;
        }
    }
    if (!v->gsum) {
        v->gsum = tr_calloc(bytes);
        if (!v->gsum) {
            tr_free(s->out);
            tr_free(s->gin);
            goto nomem;
        }
    }
    /* Until the first forward, the stage output mirrors its input. */
    memcpy(s->out, v->n_stages ? v->stages[v->n_stages - 1].out : v->pub.data, bytes);
    s->t = *t;
    v->n_stages++;
    return MOPT_OK;
nomem:
    if (t->destroy) t->destroy(t->state);
    return mopt_error_set(err, MOPT_ERR_NOMEM, "weight transform on '%s': out of memory",
                          v->pub.name);
}

void mopt_tgraph_clear_weight_transforms(mopt_tgraph *tg, int var) {
    if (!tg || var < 0 || var >= tg->n_vars) return;
    free_stages(tg->vars[var]);
}

int mopt_tgraph_num_weight_transforms(const mopt_tgraph *tg, int var) {
    if (!tg || var < 0 || var >= tg->n_vars) return 0;
    return tg->vars[var]->n_stages;
}

mopt_status mopt_tgraph_set_act_transform(mopt_tgraph *tg, int node, const mopt_act_transform *t,
                                          mopt_error *err) {
    if (!tg || node < 0 || node >= tg->n_nodes) {
        if (t && t->destroy) t->destroy(t->state);
        return mopt_error_set(err, MOPT_ERR_ARG, "activation transform: node %d out of range",
                              node);
    }
    if (t && !t->forward) {
        if (t->destroy) t->destroy(t->state);
        return mopt_error_set(err, MOPT_ERR_ARG,
                              "activation transform without a forward function");
    }
    tnode *n = &tg->nodes[node];
    if (n->has_at && n->at.destroy) n->at.destroy(n->at.state);
    n->has_at = t != NULL;
    if (t)
        n->at = *t;
    else
        memset(&n->at, 0, sizeof(n->at));
    free_batch_buffers(tg); /* raw buffers are (re)allocated on the next forward */
    return MOPT_OK;
}

mopt_status mopt_tgraph_add_var(mopt_tgraph *tg, const char *name, int rank, const int32_t *dims,
                                unsigned flags, int *out_index, mopt_error *err) {
    if (!tg || !name || !*name)
        return mopt_error_set(err, MOPT_ERR_ARG, "add_var: a name is required");
    if (mopt_tgraph_find_var(tg, name) >= 0)
        return mopt_error_set(err, MOPT_ERR_ARG, "add_var: variable '%s' already exists", name);
    if (rank < 0 || rank > MOPT_MAX_DIMS || (rank > 0 && !dims))
        return mopt_error_set(err, MOPT_ERR_ARG, "add_var '%s': bad rank %d", name, rank);
    for (int i = 0; i < rank; i++)
        if (dims[i] < 0)
            return mopt_error_set(err, MOPT_ERR_ARG, "add_var '%s': negative dimension", name);
    int id = tg_add_var(tg, name, MOPT_TVAR_EXTRA, flags, -1, rank, dims);
    if (id < 0)
        return mopt_error_set(err, MOPT_ERR_NOMEM, "add_var '%s': out of memory or too large",
                              name);
    if (out_index) *out_index = id;
    return MOPT_OK;
}

static mopt_status identity_fwd(void *state, const mopt_wt_args *a, mopt_error *err) {
    (void)state;
    (void)err;
    if (a->out != a->in) memcpy(a->out, a->in, (size_t)a->n * sizeof(float));
    return MOPT_OK;
}

mopt_weight_transform mopt_identity_transform(void) {
    mopt_weight_transform t;
    memset(&t, 0, sizeof(t));
    t.name = "identity";
    t.forward = identity_fwd;
    t.backward = NULL; /* straight-through */
    return t;
}

mopt_status mopt_tgraph_bake_transforms(mopt_tgraph *tg, mopt_error *err) {
    mopt_status st = run_weight_chains(tg, false, tg->step, err);
    if (st != MOPT_OK) return st;
    for (int i = 0; i < tg->n_vars; i++) {
        tvar *v = tg->vars[i];
        if (!v->n_stages) continue;
        memcpy(v->pub.data, v->stages[v->n_stages - 1].out,
               (size_t)v->pub.numel * sizeof(float));
        free_stages(v);
    }
    return MOPT_OK;
}
