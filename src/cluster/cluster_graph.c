/* cluster_graph.c - one-shot clustering of weight tensors and graphs:
 * initialise, optionally refine with Lloyd iterations, assign, strip. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/cluster.h"
#include "sparsity/sparse_internal.h"

mopt_cluster_params mopt_cluster_default_params(void) {
    mopt_cluster_params p;
    memset(&p, 0, sizeof p);
    p.clusters = 16;
    p.init = MOPT_CLUSTER_KMEANS_PP;
    p.per_channel = false;
    p.preserve_sparsity = false;
    p.seed = 9;
    p.lloyd_iters = MOPT_CLUSTER_DEFAULT_LLOYD;
    return p;
}

mopt_status mopt_cluster_params_validate(const mopt_cluster_params *p, mopt_error *err) {
    if (!p)
        return mopt_error_set(err, MOPT_ERR_ARG, "cluster: NULL parameters");
    /* tfmot: number_of_clusters must be greater than 1 (2 with sparsity
     * preservation, which spends one cluster on the zeros). */
    int lim = p->preserve_sparsity ? 3 : 2;
    if (p->clusters < lim)
        return mopt_error_set(err, MOPT_ERR_ARG, "--clusters: %d is fewer than %d%s", p->clusters,
                              lim, p->preserve_sparsity ? " (with --preserve-sparsity)" : "");
    if (p->clusters > 65536)
        return mopt_error_set(err, MOPT_ERR_ARG, "--clusters: %d is more than 65536", p->clusters);
    if ((unsigned)p->init > 3u)
        return mopt_error_set(err, MOPT_ERR_ARG, "--init: unknown initialisation %d",
                              (int)p->init);
    if (p->lloyd_iters < 0 || p->lloyd_iters > 100000)
        return mopt_error_set(err, MOPT_ERR_ARG, "--lloyd: %d is outside 0..100000",
                              p->lloyd_iters);
    return MOPT_OK;
}

/* Clusters one contiguous unit in place. */
static mopt_status cluster_unit(float *w, int64_t n, const mopt_cluster_params *p, mopt_rng *rng,
                                float *c, int32_t *idx, float *scratch, int64_t *unique,
                                mopt_error *err) {
    int kc = 0;
    mopt_status st = mopt_cluster_init_centroids(w, n, p->clusters, p->init, p->preserve_sparsity,
                                                 rng, c, &kc, err);
    if (st != MOPT_OK)
        return st;
    /* tfmot's wrapper finds zero_idx and pins that centroid to 0; the init
     * already put an exact 0 there, so fix_zero only keeps it. */
    if ((st = mopt_cluster_lloyd(w, n, c, kc, p->lloyd_iters, p->preserve_sparsity, idx, NULL,
                                 err)) != MOPT_OK)
        return st;
    for (int64_t i = 0; i < n; i++) {
        float v = c[idx[i]];
        /* With preservation every zero keeps the exact zero centroid (it is
         * the nearest with distance 0); assert the invariant cheaply. */
        if (p->preserve_sparsity && w[i] == 0.0f && v != 0.0f)
            return mopt_error_set(err, MOPT_ERR_INTERNAL,
                                  "cluster: a zero weight lost its zero centroid");
        w[i] = v;
    }
    if (unique)
        *unique = sp_count_unique(w, n, scratch);
    return MOPT_OK;
}

mopt_status mopt_cluster_tensor(float *w, int rank, const int32_t *dims, int channel_axis,
                                const mopt_cluster_params *p, uint64_t stream, int64_t *max_unique,
                                mopt_error *err) {
    mopt_status st = mopt_cluster_params_validate(p, err);
    if (st != MOPT_OK)
        return st;
    if (!w || !dims || rank < 1 || rank > MOPT_MAX_DIMS)
        return mopt_error_set(err, MOPT_ERR_ARG, "cluster: bad tensor");
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] <= 0)
            return mopt_error_set(err, MOPT_ERR_ARG, "cluster: empty tensor");
        numel *= dims[i];
        if (numel > INT32_MAX)
            return mopt_error_set(err, MOPT_ERR_ARG, "cluster: tensor too large");
    }
    int64_t units = 1, outer = 1, inner = 1, ch = 1;
    if (p->per_channel) {
        if (channel_axis < 0 || channel_axis >= rank)
            return mopt_error_set(err, MOPT_ERR_ARG, "cluster: channel axis %d out of range",
                                  channel_axis);
        ch = units = dims[channel_axis];
        for (int i = 0; i < channel_axis; i++)
            outer *= dims[i];
        for (int i = channel_axis + 1; i < rank; i++)
            inner *= dims[i];
    }
    const int64_t per = numel / units;
    if (per < p->clusters)
        return mopt_error_set(err, MOPT_ERR_ARG,
                              "--clusters: %d clusters but only %lld weights%s", p->clusters,
                              (long long)per, p->per_channel ? " per output channel" : "");
    float *unit = malloc((size_t)per * sizeof *unit);
    float *scratch = malloc((size_t)per * sizeof *scratch);
    float *c = malloc((size_t)p->clusters * sizeof *c);
    int32_t *idx = malloc((size_t)per * sizeof *idx);
    if (!unit || !scratch || !c || !idx) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "cluster: out of memory");
        goto done;
    }
    int64_t best = 0;
    for (int64_t u = 0; u < units; u++) {
        /* Own stream per (tensor, unit): results do not depend on which
         * other layers or channels are clustered. */
        mopt_rng rng;
        mopt_rng_seed(&rng, p->seed, mopt_hash64(stream, (uint64_t)u));
        int64_t k = 0;
        if (p->per_channel) {
            for (int64_t o = 0; o < outer; o++)
                for (int64_t i = 0; i < inner; i++)
                    unit[k++] = w[(o * ch + u) * inner + i];
        } else {
            memcpy(unit, w, (size_t)per * sizeof *unit);
        }
        int64_t uq = 0;
        if ((st = cluster_unit(unit, per, p, &rng, c, idx, scratch, &uq, err)) != MOPT_OK)
            goto done;
        if (uq > best)
            best = uq;
        k = 0;
        if (p->per_channel) {
            for (int64_t o = 0; o < outer; o++)
                for (int64_t i = 0; i < inner; i++)
                    w[(o * ch + u) * inner + i] = unit[k++];
        } else {
            memcpy(w, unit, (size_t)per * sizeof *unit);
        }
    }
    if (max_unique)
        *max_unique = best;
    st = MOPT_OK;
done:
    free(unit);
    free(scratch);
    free(c);
    free(idx);
    return st;
}

void mopt_cluster_result_free(mopt_cluster_result *r) {
    if (!r)
        return;
    free(r->layers);
    r->layers = NULL;
    r->n_layers = 0;
}

mopt_status mopt_cluster_graph(mopt_graph *g, const bool *select, const mopt_cluster_params *p,
                               mopt_cluster_result *res, mopt_error *err) {
    if (res)
        memset(res, 0, sizeof *res);
    if (!g)
        return mopt_error_set(err, MOPT_ERR_ARG, "cluster: NULL graph");
    mopt_status st = mopt_cluster_params_validate(p, err);
    if (st != MOPT_OK)
        return st;
    mopt_weight_layer *layers = NULL;
    int n = 0;
    if ((st = mopt_weight_layers_list(g, &layers, &n, err)) != MOPT_OK)
        return st;
    size_t cap = (size_t)(n > 0 ? n : 1);
    bool *sel = calloc(cap, sizeof *sel);
    mopt_cluster_layer_result *lr = calloc(cap, sizeof *lr);
    float **newdata = calloc(cap, sizeof *newdata);
    mopt_graph *work = NULL;
    if (!sel || !lr || !newdata) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "cluster: out of memory");
        goto done;
    }
    int nsel = sp_layers_selected(layers, n, select, sel);
    if (nsel == 0) {
        st = mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                            n == 0 ? "no clusterable layer: the model has no CONV_2D, "
                                     "DEPTHWISE_CONV_2D or FULLY_CONNECTED op with constant "
                                     "float32 weights"
                                   : "no clusterable layer selected");
        goto done;
    }
    /* Check every selected layer before the (slow) clustering. */
    for (int i = 0; i < n; i++) {
        if (!sel[i])
            continue;
        const mopt_tensor *t = &g->tensors[layers[i].weights];
        int64_t numel = mopt_tensor_numel(t);
        int64_t per = p->per_channel ? numel / t->dims[layers[i].channel_axis] : numel;
        if (per < p->clusters) {
            st = mopt_error_set(err, MOPT_ERR_ARG,
                                "tensor %d '%s': %d clusters but only %lld weights%s (choose "
                                "fewer clusters or leave the layer out with --layers)",
                                layers[i].weights, layers[i].name, p->clusters, (long long)per,
                                p->per_channel ? " per output channel" : "");
            goto done;
        }
        st = sp_check_finite(g, layers[i].weights, mopt_tensor_data(g, layers[i].weights), numel,
                             err);
        if (st != MOPT_OK)
            goto done;
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!sel[i])
            continue;
        const mopt_tensor *t = &g->tensors[layers[i].weights];
        const float *w = mopt_tensor_data(g, layers[i].weights);
        int64_t numel = mopt_tensor_numel(t);
        float *nw = malloc((size_t)numel * sizeof *nw);
        newdata[i] = nw;
        if (!nw) {
            st = mopt_error_set(err, MOPT_ERR_NOMEM, "cluster: out of memory");
            goto done;
        }
        memcpy(nw, w, (size_t)numel * sizeof *nw);
        mopt_cluster_layer_result *r = &lr[k++];
        r->op = layers[i].op;
        r->weights = layers[i].weights;
        r->numel = numel;
        r->units = p->per_channel ? t->dims[layers[i].channel_axis] : 1;
        st = mopt_cluster_tensor(nw, t->rank, t->dims, layers[i].channel_axis, p,
                                 (uint64_t)layers[i].op, &r->max_unique, err);
        if (st != MOPT_OK) {
            mopt_error_prefix(err, "tensor %d '%s'", layers[i].weights, layers[i].name);
            goto done;
        }
        double se = 0.0;
        for (int64_t j = 0; j < numel; j++) {
            double d = (double)nw[j] - (double)w[j];
            se += d * d;
        }
        r->mse = se / (double)numel;
    }
    work = mopt_graph_clone(g);
    if (!work) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "cluster: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (!sel[i])
            continue;
        size_t bytes = (size_t)mopt_tensor_nbytes(&work->tensors[layers[i].weights]);
        if (sp_tensor_write(work, layers[i].weights, newdata[i], bytes) != MOPT_OK) {
            st = mopt_error_set(err, MOPT_ERR_NOMEM, "cluster: out of memory");
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
