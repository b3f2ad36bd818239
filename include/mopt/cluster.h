/* mopt/cluster.h - weight clustering (weight sharing): centroid
 * initialisation, nearest-centroid assignment, Lloyd iterations and one-shot
 * clustering of a graph.
 *
 * Semantics follow the reference toolkit (tfmot clustering/keras
 * clustering_centroids.py, clustering_algorithm.py, cluster_wrapper.py):
 *  - the four initialisations LINEAR, RANDOM, DENSITY_BASED and
 *    KMEANS_PLUS_PLUS, in float32 where tfmot computes in float32 (LINEAR and
 *    DENSITY_BASED reproduce tfmot's numbers; RANDOM and KMEANS_PLUS_PLUS use
 *    the same algorithms on mopt's seeded PCG32 stream, not TF's Philox, so
 *    their draws differ from tfmot's);
 *  - assignment idx = argmin_j |w - c_j| in float32, first j on ties;
 *  - sparsity preservation: one centroid fixed at exactly 0, the other k - 1
 *    split between negative and positive weights in proportion to their
 *    counts (round half to even), each side initialised separately; all-zero
 *    weights get the single centroid 0; zeros stay exactly zero;
 *  - strip: every weight becomes its centroid, so a tensor (or each output
 *    channel with per-channel clustering) holds at most k distinct values.
 * tfmot itself never runs k-means iterations: it initialises centroids and
 * then fine-tunes them by gradient descent. Without training data mopt offers
 * Lloyd iterations (mopt_cluster_params.lloyd_iters), which only lower the
 * weights' squared reconstruction error; 0 reproduces tfmot's
 * cluster-then-strip without training.
 */
#ifndef MOPT_CLUSTER_H
#define MOPT_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mopt/graph.h"
#include "mopt/sparsity.h"
#include "mopt/status.h"
#include "mopt/train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mopt_cluster_init {
    MOPT_CLUSTER_LINEAR = 0,   /* linspace(min, max, k), endpoints included */
    MOPT_CLUSTER_RANDOM = 1,   /* k draws from uniform [min, max) */
    MOPT_CLUSTER_DENSITY = 2,  /* inverse of a 30-point CDF at linspace(0.01, 1, k) */
    MOPT_CLUSTER_KMEANS_PP = 3 /* k-means++ with 2 + floor(ln k) retries (tfmot default) */
} mopt_cluster_init;

/* "linear", "random", "density", "kmeans++". */
const char *mopt_cluster_init_name(mopt_cluster_init init);
/* Parses those names (also "kmeans_plus_plus", "density_based"); -1 if unknown. */
int mopt_cluster_init_from_name(const char *name);

/* Default Lloyd iterations for one-shot clustering. Measured (docs/
 * PRUNING_CLUSTERING.md): a few iterations recover most of what a poor
 * initialisation loses (mean top-1 drop without fine-tuning, cnn + resnet,
 * 3 inits, K = 4/8/16: 16.9 pt with 0, 7.6 with 5, 8.4 with 20, 8.9 with
 * 100); iterating to convergence minimises the weights' squared error but
 * pulls centroids into the dense middle, away from the few large weights. */
#define MOPT_CLUSTER_DEFAULT_LLOYD 5

typedef struct mopt_cluster_params {
    int clusters;           /* k >= 2 (>= 3 with preserve_sparsity, as tfmot) */
    mopt_cluster_init init; /* default KMEANS_PP (tfmot's default) */
    bool per_channel;       /* one codebook per output channel (CONV_2D axis 0,
                               DEPTHWISE axis 3, FC axis 0; tfmot: Conv2D only) */
    bool preserve_sparsity; /* keep every zero weight exactly zero */
    uint64_t seed;          /* RANDOM / KMEANS_PP seed (default 9, tfmot's k-means++ seed) */
    int lloyd_iters;        /* Lloyd iterations after the initialisation, >= 0
                               (default MOPT_CLUSTER_DEFAULT_LLOYD); stops early when
                               no assignment changes */
} mopt_cluster_params;

/* 16 clusters, KMEANS_PP, per tensor, no sparsity preservation, seed 9,
 * MOPT_CLUSTER_DEFAULT_LLOYD iterations. */
mopt_cluster_params mopt_cluster_default_params(void);
/* Messages name the option (clusters, init, lloyd). */
mopt_status mopt_cluster_params_validate(const mopt_cluster_params *p, mopt_error *err);

/* ---- the building blocks (one clustering unit: a tensor or a channel) ---- */

/* Initial centroids of n >= 1 values. Without sparsity preservation k
 * centroids are written in the initialiser's order (LINEAR / DENSITY sorted
 * ascending). With it: [negative..., 0, positive...] (or just [0] when all
 * values are zero). KMEANS_PP cannot draw more centres than it has points
 * (TF's op refuses); mopt then returns fewer centroids (all distinct points),
 * so *n_out <= k always. `rng` feeds RANDOM and KMEANS_PP (may be NULL for
 * the others). centroids has room for k floats. */
mopt_status mopt_cluster_init_centroids(const float *w, int64_t n, int k, mopt_cluster_init init,
                                        bool preserve_sparsity, mopt_rng *rng, float *centroids,
                                        int *n_out, mopt_error *err);

/* The reference assignment: idx[i] = argmin_j fabsf(w[i] - c[j]) (float32
 * subtraction, first j on ties), by brute force. */
void mopt_cluster_assign_ref(const float *w, int64_t n, const float *c, int k, int32_t *idx);

/* Same result as mopt_cluster_assign_ref (bit-identical indices), in
 * O((n + k) log k) via sorted centroids. Allocates O(k) scratch. */
mopt_status mopt_cluster_assign(const float *w, int64_t n, const float *c, int k, int32_t *idx,
                                mopt_error *err);

/* Lloyd iterations: assign, then move every centroid to the mean of its
 * members (empty clusters stay put), until no assignment changes or
 * max_iters updates. With fix_zero, the centroid argmin_j |c_j| (tfmot's
 * zero_idx) is set to exactly 0 and never moves. On return idx holds the
 * assignment to the final centroids; *iters (may be NULL) gets the number of
 * centroid updates done. */
mopt_status mopt_cluster_lloyd(const float *w, int64_t n, float *c, int k, int max_iters,
                               bool fix_zero, int32_t *idx, int *iters, mopt_error *err);

/* Clusters one weight tensor in place (the strip step included): init,
 * Lloyd, assign, w[i] = c[idx[i]]. With p->per_channel every slice along
 * channel_axis is clustered on its own. `stream` selects the RNG stream
 * (mopt uses the op index) so that layers do not depend on each other.
 * Fails (MOPT_ERR_ARG) when a unit has fewer values than p->clusters.
 * *max_unique (may be NULL) gets the largest number of distinct values in a
 * unit afterwards. */
mopt_status mopt_cluster_tensor(float *w, int rank, const int32_t *dims, int channel_axis,
                                const mopt_cluster_params *p, uint64_t stream, int64_t *max_unique,
                                mopt_error *err);

/* ---- one-shot clustering of a graph ---- */

typedef struct mopt_cluster_layer_result {
    int op, weights;
    int64_t numel;
    int units;          /* 1, or the number of channels with per_channel */
    int64_t max_unique; /* distinct values per unit afterwards (largest over units) */
    double mse;         /* mean squared change of the weights */
} mopt_cluster_layer_result;

typedef struct mopt_cluster_result {
    int n_layers;
    mopt_cluster_layer_result *layers;
} mopt_cluster_result;

void mopt_cluster_result_free(mopt_cluster_result *r); /* NULL ok; zeroes *r */

/* Clusters the weights of the selected layers (select as in
 * mopt_prune_graph: g->n_ops entries or NULL for all weight layers). Errors,
 * which leave the graph unchanged: no layer selected (MOPT_ERR_BAD_INPUT "no
 * clusterable layer"), a selected layer with fewer weights (per unit) than
 * clusters (MOPT_ERR_ARG, naming the layer), NaN / infinite weights. */
mopt_status mopt_cluster_graph(mopt_graph *g, const bool *select, const mopt_cluster_params *p,
                               mopt_cluster_result *res, mopt_error *err);

#ifdef __cplusplus
}
#endif
#endif
