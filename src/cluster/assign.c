/* assign.c - nearest-centroid assignment (tfmot's get_pulling_indices:
 * argmin over |w - c| in float32, first index on ties) and Lloyd
 * iterations. mopt_cluster_assign_ref defines the result; the fast version
 * must return the same indices bit for bit (tests compare them). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/cluster.h"

void mopt_cluster_assign_ref(const float *w, int64_t n, const float *c, int k, int32_t *idx) {
    for (int64_t i = 0; i < n; i++) {
        int32_t best = 0;
        float bd = fabsf(w[i] - c[0]);
        for (int j = 1; j < k; j++) {
            float d = fabsf(w[i] - c[j]);
            if (d < bd) { /* strict: the first minimum wins, like tf.argmin */
                bd = d;
                best = j;
            }
        }
        idx[i] = best;
    }
}

typedef struct cent {
    float v;
    int32_t i;
} cent;

static int cmp_cent(const void *a, const void *b) {
    const cent *x = a, *y = b;
    if (x->v != y->v)
        return x->v < y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

mopt_status mopt_cluster_assign(const float *w, int64_t n, const float *c, int k, int32_t *idx,
                                mopt_error *err) {
    if (!w || !c || !idx || k < 1)
        return mopt_error_set(err, MOPT_ERR_ARG, "cluster assign: no centroids");
    for (int j = 0; j < k; j++)
        if (isnan(c[j])) { /* ordering by value is undefined: use the definition */
            mopt_cluster_assign_ref(w, n, c, k, idx);
            return MOPT_OK;
        }
    cent *u = malloc((size_t)k * sizeof *u);
    if (!u)
        return mopt_error_set(err, MOPT_ERR_NOMEM, "cluster assign: out of memory");
    for (int j = 0; j < k; j++) {
        u[j].v = c[j];
        u[j].i = j;
    }
    qsort(u, (size_t)k, sizeof *u, cmp_cent);
    /* Equal values: only the lowest index can ever win. -0 == 0 merge too
     * (same distances). */
    int m = 0;
    for (int j = 0; j < k; j++)
        if (m == 0 || u[j].v != u[m - 1].v)
            u[m++] = u[j];
    for (int64_t t = 0; t < n; t++) {
        const float x = w[t];
        if (isnan(x)) { /* every distance is NaN: tf.argmin keeps index 0 */
            idx[t] = 0;
            continue;
        }
        int lo = 0, hi = m;
        while (lo < hi) { /* first centroid >= x */
            int mid = lo + (hi - lo) / 2;
            if (u[mid].v < x)
                lo = mid + 1;
            else
                hi = mid;
        }
        /* fl(x - c) is monotone in c, so the nearest centroids are the two
         * neighbours; rounding can make a run of further ones tie with them,
         * and the lowest original index among all ties wins. */
        float dl = lo > 0 ? fabsf(x - u[lo - 1].v) : INFINITY;
        float dr = lo < m ? fabsf(x - u[lo].v) : INFINITY;
        float d = dl < dr ? dl : dr;
        int32_t best = INT32_MAX;
        if (lo > 0 && dl == d)
            for (int q = lo - 1; q >= 0 && fabsf(x - u[q].v) == d; q--)
                if (u[q].i < best)
                    best = u[q].i;
        if (lo < m && dr == d)
            for (int q = lo; q < m && fabsf(x - u[q].v) == d; q++)
                if (u[q].i < best)
                    best = u[q].i;
        if (best == INT32_MAX) /* only infinite distances: argmin keeps the first */
            best = 0;
        idx[t] = best;
    }
    free(u);
    return MOPT_OK;
}

mopt_status mopt_cluster_lloyd(const float *w, int64_t n, float *c, int k, int max_iters,
                               bool fix_zero, int32_t *idx, int *iters, mopt_error *err) {
    if (iters)
        *iters = 0;
    if (!w || !c || !idx || k < 1 || n < 1 || max_iters < 0)
        return mopt_error_set(err, MOPT_ERR_ARG, "lloyd: bad arguments");
    int zero = -1;
    if (fix_zero) { /* tfmot's zero_idx = argmin |c| */
        zero = 0;
        for (int j = 1; j < k; j++)
            if (fabsf(c[j]) < fabsf(c[zero]))
                zero = j;
        c[zero] = 0.0f;
    }
    mopt_status st = mopt_cluster_assign(w, n, c, k, idx, err);
    if (st != MOPT_OK || max_iters == 0)
        return st;
    double *sum = malloc((size_t)k * sizeof *sum);
    int64_t *cnt = malloc((size_t)k * sizeof *cnt);
    int32_t *next = malloc((size_t)n * sizeof *next);
    if (!sum || !cnt || !next) {
        free(sum);
        free(cnt);
        free(next);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "lloyd: out of memory");
    }
    int it = 0;
    while (it < max_iters) {
        memset(sum, 0, (size_t)k * sizeof *sum);
        memset(cnt, 0, (size_t)k * sizeof *cnt);
        for (int64_t i = 0; i < n; i++) {
            sum[idx[i]] += (double)w[i];
            cnt[idx[i]]++;
        }
        for (int j = 0; j < k; j++)
            if (cnt[j] > 0 && j != zero)
                c[j] = (float)(sum[j] / (double)cnt[j]);
        it++;
        if ((st = mopt_cluster_assign(w, n, c, k, next, err)) != MOPT_OK)
            break;
        bool changed = memcmp(next, idx, (size_t)n * sizeof *idx) != 0;
        memcpy(idx, next, (size_t)n * sizeof *idx);
        if (!changed)
            break;
    }
    free(sum);
    free(cnt);
    free(next);
    if (iters)
        *iters = it;
    return st;
}
