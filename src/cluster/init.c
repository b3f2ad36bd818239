/* init.c - tfmot's four centroid initialisations
 * (clustering_centroids.py) and the sparsity-preserving split, plus the
 * k-means++ seeding of TF's KmeansPlusPlusInitialization op
 * (core/kernels/clustering_ops.cc) on mopt's PCG32 stream. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/cluster.h"

static const char *const init_names[] = {"linear", "random", "density", "kmeans++"};

const char *mopt_cluster_init_name(mopt_cluster_init init) {
    return (unsigned)init < 4u ? init_names[init] : "unknown";
}

int mopt_cluster_init_from_name(const char *name) {
    if (!name)
        return -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(name, init_names[i]) == 0)
            return i;
    if (strcmp(name, "density_based") == 0 || strcmp(name, "density-based") == 0)
        return MOPT_CLUSTER_DENSITY;
    if (strcmp(name, "kmeans_plus_plus") == 0 || strcmp(name, "kmeanspp") == 0)
        return MOPT_CLUSTER_KMEANS_PP;
    return -1;
}

/* tf.linspace(start, stop, num) in float32 (math_ops.linspace_nd): start,
 * start + delta * i for 0 < i < num - 1, then exactly stop;
 * delta = (stop - start) / (num - 1). */
static void linspace_f32(float start, float stop, int num, float *out) {
    if (num <= 0)
        return;
    out[0] = start;
    if (num == 1)
        return;
    float delta = (stop - start) / (float)(num - 1);
    for (int i = 1; i < num - 1; i++) {
        float step = delta * (float)i;
        out[i] = start + step;
    }
    out[num - 1] = stop;
}

static void min_max(const float *w, int64_t n, float *lo, float *hi) {
    float a = w[0], b = w[0];
    for (int64_t i = 1; i < n; i++) {
        if (w[i] < a)
            a = w[i];
        if (w[i] > b)
            b = w[i];
    }
    *lo = a;
    *hi = b;
}

/* DensityBasedCentroidsInitialisation._calculate_centroids_for_interval. */
static mopt_status init_density(const float *w, int64_t n, int k, bool preserve, float *c) {
    enum { GRID = 30 };
    float lo, hi;
    min_max(w, n, &lo, &hi);
    float gap = 0.01f;
    if (preserve) {
        float m = fabsf(lo) < fabsf(hi) ? fabsf(lo) : fabsf(hi);
        float half = m / 2.0f;
        gap = half < 0.01f ? half : 0.01f;
    }
    float grid[GRID], cdf[GRID];
    linspace_f32(lo - gap, hi + gap, GRID, grid);
    const float size = (float)n;
    for (int j = 0; j < GRID; j++) {
        int64_t cnt = 0;
        for (int64_t i = 0; i < n; i++)
            cnt += w[i] <= grid[j];
        cdf[j] = (float)cnt / size; /* count_nonzero(w <= x) / size, float32 */
    }
    float *probs = malloc((size_t)k * sizeof *probs);
    if (!probs)
        return MOPT_ERR_NOMEM;
    linspace_f32(0.01f, 1.0f, k, probs);
    for (int i = 0; i < k; i++) {
        float p = probs[i];
        /* searchsorted(cdf, p, side='right') = number of cdf values <= p. */
        int idx = 0;
        while (idx < GRID && cdf[idx] <= p)
            idx++;
        int ic = idx < GRID - 1 ? idx : GRID - 1;
        int ip = ic - 1 > 0 ? ic - 1 : 0;
        float x1 = grid[ic], x2 = grid[ip], y1 = cdf[ic], y2 = cdf[ip];
        if (y2 == y1) {
            c[i] = x1;
        } else {
            /* TFLinearEquationSolver(x1, y1, x2, y2).solve_for_x(y1), in
             * float32 operation by operation (x2 < x1, so the max picks 0.001:
             * the result is x1 up to rounding, as in tfmot). */
            float dx = x2 - x1;
            float den = dx > 0.001f ? dx : 0.001f;
            float dy = y2 - y1;
            float a = dy / den;
            float slope = dy / den;
            float x1s = x1 * slope;
            float b = y1 - x1s;
            float num = y1 - b;
            c[i] = num / a;
        }
    }
    free(probs);
    return MOPT_OK;
}

/* Half-squared distance is what TF's op uses; the scale does not matter for
 * the sampling probabilities, so plain squared distances in double. */
static double sqd(float a, float b) {
    double d = (double)a - (double)b;
    return d * d;
}

static double uniform01(mopt_rng *r) {
    /* 53 random bits in [0, 1). */
    uint64_t hi = mopt_rng_u32(r) >> 5, lo = mopt_rng_u32(r) >> 6;
    return ((double)hi * 67108864.0 + (double)lo) / 9007199254740992.0;
}

/* KmeansPlusPlusInitializationOp with num_retries_per_sample = -1
 * (2 + floor(ln k) retries): every centre (the first one included) is the
 * best of 1 + retries candidates by total potential; candidates after the
 * first centre are drawn with probability proportional to the squared
 * distance to the nearest chosen centre (inverse CDF on the cumulative
 * sum). Points at distance 0 (chosen ones and their duplicates) are never
 * drawn; when every remaining point is at distance 0 the seeding stops early
 * and returns fewer centres (TF would read out of range there). */
static mopt_status init_kmeanspp(const float *w, int64_t n, int k, mopt_rng *rng, float *c,
                                 int *n_out, mopt_error *err) {
    if (k > n)
        k = (int)n;
    const int retries = 2 + (int)log((double)k);
    double *mind = malloc((size_t)n * sizeof *mind);
    double *cand = malloc((size_t)n * sizeof *cand);
    double *best = malloc((size_t)n * sizeof *best);
    double *cum = malloc((size_t)n * sizeof *cum);
    if (!mind || !cand || !best || !cum) {
        free(mind);
        free(cand);
        free(best);
        free(cum);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "k-means++: out of memory (%lld points)",
                              (long long)n);
    }
    int got = 0;
    for (int i = 0; i < k; i++) {
        if (i > 0) {
            double s = 0.0;
            for (int64_t j = 0; j < n; j++) {
                s += mind[j];
                cum[j] = s;
            }
            if (!(s > 0.0))
                break; /* every point coincides with a centre */
        }
        double best_pot = INFINITY;
        int64_t best_idx = -1;
        for (int t = 0; t <= retries; t++) {
            int64_t idx;
            if (i == 0) {
                idx = (int64_t)mopt_rng_below(rng, (uint32_t)n);
            } else {
                double total = cum[n - 1];
                double v = uniform01(rng) * total;
                /* upper_bound: first j with cum[j] > v. */
                int64_t lo = 0, hi = n;
                while (lo < hi) {
                    int64_t mid = lo + (hi - lo) / 2;
                    if (cum[mid] > v)
                        hi = mid;
                    else
                        lo = mid + 1;
                }
                idx = lo < n ? lo : n - 1;
                while (idx > 0 && !(mind[idx] > 0.0)) /* rounding at the top end */
                    idx--;
            }
            double pot = 0.0;
            for (int64_t j = 0; j < n; j++) {
                double d = sqd(w[j], w[idx]);
                cand[j] = i == 0 || d < mind[j] ? d : mind[j];
                pot += cand[j];
            }
            if (pot < best_pot || best_idx < 0) {
                best_pot = pot;
                best_idx = idx;
                double *tmp = best;
                best = cand;
                cand = tmp;
            }
        }
        c[got++] = w[best_idx];
        double *tmp = mind;
        mind = best;
        best = tmp;
    }
    free(mind);
    free(cand);
    free(best);
    free(cum);
    *n_out = got;
    return MOPT_OK;
}

/* One interval (the whole unit, or its negative / positive part). */
static mopt_status init_interval(const float *w, int64_t n, int k, mopt_cluster_init init,
                                 bool preserve, mopt_rng *rng, float *c, int *n_out,
                                 mopt_error *err) {
    *n_out = 0;
    if (k <= 0 || n <= 0)
        return MOPT_OK; /* tfmot returns an empty centroid list */
    float lo, hi;
    switch (init) {
    case MOPT_CLUSTER_LINEAR:
        min_max(w, n, &lo, &hi);
        linspace_f32(lo, hi, k, c);
        *n_out = k;
        return MOPT_OK;
    case MOPT_CLUSTER_RANDOM:
        /* tf.random.uniform(minval=min, maxval=max): u * (max - min) + min. */
        min_max(w, n, &lo, &hi);
        for (int i = 0; i < k; i++) {
            float u = mopt_rng_uniform(rng);
            float range = hi - lo;
            float t = u * range;
            c[i] = t + lo;
        }
        *n_out = k;
        return MOPT_OK;
    case MOPT_CLUSTER_DENSITY:
        if (init_density(w, n, k, preserve, c) != MOPT_OK)
            return mopt_error_set(err, MOPT_ERR_NOMEM, "cluster init: out of memory");
        *n_out = k;
        return MOPT_OK;
    case MOPT_CLUSTER_KMEANS_PP: return init_kmeanspp(w, n, k, rng, c, n_out, err);
    }
    return mopt_error_set(err, MOPT_ERR_ARG, "cluster: unknown initialisation %d", (int)init);
}

static double round_half_even_d(double x) {
    double f = floor(x), d = x - f;
    if (d > 0.5)
        return f + 1.0;
    if (d < 0.5)
        return f;
    return fmod(f, 2.0) == 0.0 ? f : f + 1.0;
}

mopt_status mopt_cluster_init_centroids(const float *w, int64_t n, int k, mopt_cluster_init init,
                                        bool preserve_sparsity, mopt_rng *rng, float *centroids,
                                        int *n_out, mopt_error *err) {
    if (!w || !centroids || !n_out || n <= 0 || k < 1)
        return mopt_error_set(err, MOPT_ERR_ARG, "cluster init: empty input or k < 1");
    if ((unsigned)init > 3u)
        return mopt_error_set(err, MOPT_ERR_ARG, "cluster init: unknown initialisation %d",
                              (int)init);
    if ((init == MOPT_CLUSTER_RANDOM || init == MOPT_CLUSTER_KMEANS_PP) && !rng)
        return mopt_error_set(err, MOPT_ERR_ARG, "cluster init: %s needs a random generator",
                              mopt_cluster_init_name(init));
    if (n > (int64_t)UINT32_MAX)
        return mopt_error_set(err, MOPT_ERR_ARG, "cluster init: too many values (%lld)",
                              (long long)n);
    if (!preserve_sparsity)
        return init_interval(w, n, k, init, false, rng, centroids, n_out, err);

    /* _zero_centroid_initialization */
    int64_t neg = 0, pos = 0;
    for (int64_t i = 0; i < n; i++) {
        neg += w[i] < 0.0f;
        pos += w[i] > 0.0f;
    }
    if (neg + pos == 0) {
        centroids[0] = 0.0f;
        *n_out = 1;
        return MOPT_OK;
    }
    /* int32 / int32 is a float64 division in TF; round half to even. */
    double ratio = (double)neg / (double)(neg + pos);
    int n_neg = (int)round_half_even_d((double)(k - 1) * ratio);
    int n_pos = k - 1 - n_neg;
    float *part = malloc((size_t)(neg > pos ? neg : pos) * sizeof *part);
    if (!part)
        return mopt_error_set(err, MOPT_ERR_NOMEM, "cluster init: out of memory");
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (w[i] < 0.0f)
            part[m++] = w[i];
    int got_neg = 0, got_pos = 0;
    mopt_status st = init_interval(part, m, n_neg, init, true, rng, centroids, &got_neg, err);
    if (st == MOPT_OK) {
        centroids[got_neg] = 0.0f;
        m = 0;
        for (int64_t i = 0; i < n; i++)
            if (w[i] > 0.0f)
                part[m++] = w[i];
        st = init_interval(part, m, n_pos, init, true, rng, centroids + got_neg + 1, &got_pos,
                           err);
    }
    free(part);
    *n_out = got_neg + 1 + got_pos;
    return st;
}
