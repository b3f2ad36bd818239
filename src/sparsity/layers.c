/* layers.c - the weight layers of a graph (what pruning and clustering
 * operate on), selection by regular expression, and small shared queries. */
#include <math.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/sparsity.h"
#include "sparsity/sparse_internal.h"

static bool const_f32(const mopt_graph *g, int t, int rank) {
    if (t < 0 || t >= g->n_tensors)
        return false;
    const mopt_tensor *x = &g->tensors[t];
    return x->dtype == MOPT_FLOAT32 && (rank < 0 || x->rank == rank) &&
           mopt_tensor_is_constant(g, t) && mopt_tensor_numel(x) > 0;
}

mopt_status mopt_weight_layers_list(const mopt_graph *g, mopt_weight_layer **out, int *n,
                                    mopt_error *err) {
    if (!g || !out || !n)
        return mopt_error_set(err, MOPT_ERR_ARG, "weight layers: NULL argument");
    *out = NULL;
    *n = 0;
    mopt_weight_layer *v = NULL;
    int cnt = 0;
    for (int i = 0; i < g->n_ops; i++) {
        const mopt_op *op = &g->ops[i];
        int rank = op->type == MOPT_OP_FULLY_CONNECTED                                    ? 2
                   : (op->type == MOPT_OP_CONV_2D || op->type == MOPT_OP_DEPTHWISE_CONV_2D) ? 4
                                                                                            : -1;
        if (rank < 0 || op->n_inputs < 2 || !const_f32(g, op->inputs[1], rank))
            continue;
        bool dup = false;
        for (int j = 0; j < cnt && !dup; j++)
            dup = v[j].weights == op->inputs[1];
        if (dup)
            continue;
        mopt_weight_layer *nv = realloc(v, (size_t)(cnt + 1) * sizeof *v);
        if (!nv) {
            free(v);
            return mopt_error_set(err, MOPT_ERR_NOMEM, "weight layers: out of memory");
        }
        v = nv;
        mopt_weight_layer *l = &v[cnt++];
        l->op = i;
        l->type = op->type;
        l->weights = op->inputs[1];
        l->bias = op->n_inputs >= 3 && const_f32(g, op->inputs[2], 1) ? op->inputs[2] : -1;
        l->channel_axis = op->type == MOPT_OP_DEPTHWISE_CONV_2D ? 3 : 0;
        l->name = g->tensors[l->weights].name ? g->tensors[l->weights].name : "";
    }
    *out = v;
    *n = cnt;
    return MOPT_OK;
}

mopt_status mopt_weight_layers_match(const mopt_graph *g, const mopt_weight_layer *layers, int n,
                                     const char *regex, bool *selected, int *n_matched,
                                     mopt_error *err) {
    if (!g || (n > 0 && (!layers || !selected)) || !regex)
        return mopt_error_set(err, MOPT_ERR_ARG, "layer regex: NULL argument");
    regex_t re;
    int rc = regcomp(&re, regex, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char msg[160];
        regerror(rc, &re, msg, sizeof msg);
        return mopt_error_set(err, MOPT_ERR_ARG, "--layers: invalid regular expression '%s': %s",
                              regex, msg);
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        const mopt_op *op = &g->ops[layers[i].op];
        const char *wn = layers[i].name ? layers[i].name : "";
        const char *on = "";
        if (op->n_outputs > 0 && op->outputs[0] >= 0 && op->outputs[0] < g->n_tensors &&
            g->tensors[op->outputs[0]].name)
            on = g->tensors[op->outputs[0]].name;
        selected[i] = regexec(&re, wn, 0, NULL, 0) == 0 || regexec(&re, on, 0, NULL, 0) == 0;
        m += selected[i];
    }
    regfree(&re);
    if (n_matched)
        *n_matched = m;
    return MOPT_OK;
}

int sp_layers_selected(const mopt_weight_layer *layers, int n, const bool *select, bool *sel) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        sel[i] = !select || select[layers[i].op];
        k += sel[i];
    }
    return k;
}

mopt_status sp_check_finite(const mopt_graph *g, int t, const float *w, int64_t n,
                            mopt_error *err) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(w[i]))
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                  "tensor %d '%s': weight %lld is %s (weights must be finite)", t,
                                  g->tensors[t].name ? g->tensors[t].name : "", (long long)i,
                                  isnan(w[i]) ? "NaN" : "infinite");
    return MOPT_OK;
}

int sp_depth_multiplier(const mopt_graph *g, int op_index) {
    const mopt_op *op = &g->ops[op_index];
    if (op->type != MOPT_OP_DEPTHWISE_CONV_2D)
        return 1;
    if (op->n_inputs >= 2 && op->inputs[0] >= 0 && op->inputs[1] >= 0) {
        const mopt_tensor *in = &g->tensors[op->inputs[0]], *w = &g->tensors[op->inputs[1]];
        if (in->rank == 4 && w->rank == 4 && in->dims[3] > 0 && w->dims[3] % in->dims[3] == 0)
            return w->dims[3] / in->dims[3];
    }
    return op->p.conv.depth_multiplier > 0 ? op->p.conv.depth_multiplier : 1;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int64_t sp_count_unique(const float *w, int64_t n, float *scratch) {
    if (n <= 0)
        return 0;
    /* Sort canonical bit patterns: no NaN-ordering trouble, -0 == 0. */
    uint32_t *u = (uint32_t *)(void *)scratch;
    for (int64_t i = 0; i < n; i++) {
        float v = w[i];
        uint32_t b;
        if (v == 0.0f)
            b = 0u;
        else if (isnan(v))
            b = 0x7fc00000u;
        else
            memcpy(&b, &v, sizeof b);
        u[i] = b;
    }
    qsort(u, (size_t)n, sizeof *u, cmp_u32);
    int64_t k = 1;
    for (int64_t i = 1; i < n; i++)
        k += u[i] != u[i - 1];
    return k;
}

int64_t sp_max_unique_along(const float *w, int rank, const int32_t *dims, int axis) {
    if (rank <= 0 || axis < 0 || axis >= rank)
        return -1;
    int64_t outer = 1, inner = 1, ch = dims[axis];
    for (int i = 0; i < axis; i++)
        outer *= dims[i];
    for (int i = axis + 1; i < rank; i++)
        inner *= dims[i];
    int64_t per = outer * inner;
    if (ch <= 0 || per <= 0)
        return 0;
    float *slice = malloc((size_t)per * sizeof *slice);
    float *scratch = malloc((size_t)per * sizeof *scratch);
    if (!slice || !scratch) {
        free(slice);
        free(scratch);
        return -1;
    }
    int64_t best = 0;
    for (int64_t c = 0; c < ch; c++) {
        int64_t k = 0;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t i = 0; i < inner; i++)
                slice[k++] = w[(o * ch + c) * inner + i];
        int64_t u = sp_count_unique(slice, per, scratch);
        if (u > best)
            best = u;
    }
    free(slice);
    free(scratch);
    return best;
}
