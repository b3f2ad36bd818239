/* prune_graph.c - one-shot magnitude pruning of a graph's weight layers
 * (the mask of the final sparsity applied once; what tfmot's
 * prune_low_magnitude + strip_pruning leave in the weights, without the
 * fine-tuning between mask updates). */
#include <stdlib.h>
#include <string.h>

#include "mopt/sparsity.h"
#include "sparsity/sparse_internal.h"

void mopt_prune_result_free(mopt_prune_result *r) {
    if (!r)
        return;
    free(r->layers);
    r->layers = NULL;
    r->n_layers = 0;
}

static int64_t count_zeros(const float *w, int64_t n) {
    int64_t z = 0;
    for (int64_t i = 0; i < n; i++)
        z += w[i] == 0.0f;
    return z;
}

mopt_status mopt_prune_graph(mopt_graph *g, const bool *select, const mopt_prune_params *p,
                             mopt_prune_result *res, mopt_error *err) {
    if (res)
        memset(res, 0, sizeof *res);
    if (!g)
        return mopt_error_set(err, MOPT_ERR_ARG, "prune: NULL graph");
    mopt_status st = mopt_prune_params_validate(p, err);
    if (st != MOPT_OK)
        return st;
    mopt_weight_layer *layers = NULL;
    int n = 0;
    if ((st = mopt_weight_layers_list(g, &layers, &n, err)) != MOPT_OK)
        return st;
    bool *sel = calloc((size_t)(n > 0 ? n : 1), sizeof *sel);
    mopt_prune_layer_result *lr = calloc((size_t)(n > 0 ? n : 1), sizeof *lr);
    float **newdata = calloc((size_t)(n > 0 ? n : 1), sizeof *newdata);
    mopt_graph *work = NULL;
    if (!sel || !lr || !newdata) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "prune: out of memory");
        goto done;
    }
    int nsel = sp_layers_selected(layers, n, select, sel);
    if (nsel == 0) {
        st = mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                            n == 0 ? "no prunable layer: the model has no CONV_2D, "
                                     "DEPTHWISE_CONV_2D or FULLY_CONNECTED op with constant "
                                     "float32 weights"
                                   : "no prunable layer selected");
        goto done;
    }
    /* Compute every mask first, so that a failure leaves the graph untouched. */
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!sel[i])
            continue;
        const mopt_tensor *t = &g->tensors[layers[i].weights];
        const float *w = mopt_tensor_data(g, layers[i].weights);
        int64_t numel = mopt_tensor_numel(t);
        if ((st = sp_check_finite(g, layers[i].weights, w, numel, err)) != MOPT_OK)
            goto done;
        uint8_t *mask = malloc((size_t)numel);
        float *nw = malloc((size_t)numel * sizeof *nw);
        newdata[i] = nw;
        if (!mask || !nw) {
            free(mask);
            st = mopt_error_set(err, MOPT_ERR_NOMEM, "prune: out of memory");
            goto done;
        }
        mopt_prune_layer_result *r = &lr[k++];
        r->op = layers[i].op;
        r->weights = layers[i].weights;
        r->numel = numel;
        r->zeros_before = count_zeros(w, numel);
        st = mopt_prune_mask(layers[i].type, t->rank, t->dims, sp_depth_multiplier(g, layers[i].op),
                             w, p, mask, &r->pattern, &r->threshold, err);
        if (st != MOPT_OK) {
            free(mask);
            mopt_error_prefix(err, "tensor %d '%s'", layers[i].weights, layers[i].name);
            goto done;
        }
        /* weight * mask, as the wrapper assigns (pruned entries become +0 or
         * -0; both are zero). Write exact +0 for pruned entries. */
        for (int64_t j = 0; j < numel; j++)
            nw[j] = mask[j] ? w[j] : 0.0f;
        r->zeros_after = count_zeros(nw, numel);
        free(mask);
    }
    work = mopt_graph_clone(g);
    if (!work) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "prune: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (!sel[i])
            continue;
        size_t bytes = (size_t)mopt_tensor_nbytes(&work->tensors[layers[i].weights]);
        if (sp_tensor_write(work, layers[i].weights, newdata[i], bytes) != MOPT_OK) {
            st = mopt_error_set(err, MOPT_ERR_NOMEM, "prune: out of memory");
            goto done;
        }
    }
    sp_compact_buffers(work);
    sp_graph_swap(g, work);
    if (res) {
        res->n_layers = k;
        res->layers = lr;
        lr = NULL;
    }
    st = MOPT_OK;
done:
    mopt_graph_free(work);
    if (newdata)
        for (int i = 0; i < n; i++)
            free(newdata[i]);
    free(newdata);
    free(lr);
    free(sel);
    free(layers);
    return st;
}
