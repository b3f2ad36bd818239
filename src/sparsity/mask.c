/* mask.c - the reference definitions of tfmot's pruning masks
 * (pruning_impl.py _update_mask, _maybe_update_block_mask,
 * _update_mask_sparsity_m_by_n; pruning_utils.py factorized_pool,
 * expand_tensor, weights_rearrange, generate_m_by_n_mask), on raw arrays and
 * on mopt's TFLite weight layouts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/sparsity.h"
#include "sparsity/sparse_internal.h"

float sp_round_half_even(float x) {
    /* Explicit, so the result does not depend on the FP rounding mode
     * (tf.math.round is round-half-to-even). */
    float f = floorf(x);
    float d = x - f; /* exact for |x| < 2^24; above that x is an integer and d == 0 */
    if (d > 0.5f)
        return f + 1.0f;
    if (d < 0.5f)
        return f;
    return fmodf(f, 2.0f) == 0.0f ? f : f + 1.0f;
}

int64_t mopt_prune_keep_count(int64_t n, float sparsity) {
    if (n <= 0)
        return 0;
    /* k = cast<int32>(max(round(cast<float>(size) * (1 - sparsity)), 1)) */
    float keep = 1.0f - sparsity;
    float prod = (float)n * keep;
    float r = sp_round_half_even(prod);
    if (!(r >= 1.0f))
        r = 1.0f;
    int64_t k = r >= (float)n ? n : (int64_t)r;
    return k < 1 ? 1 : k;
}

/* Descending order; NaN sorts after every number so it is never a threshold
 * unless nothing else is left. */
static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    bool xn = isnan(x), yn = isnan(y);
    if (xn || yn)
        return (int)xn - (int)yn;
    return (x < y) - (x > y);
}

mopt_status mopt_mask_magnitude(const float *w, int64_t n, float sparsity, uint8_t *mask,
                                float *threshold, mopt_error *err) {
    if (!w || !mask || n <= 0)
        return mopt_error_set(err, MOPT_ERR_ARG, "magnitude mask: empty or NULL weights");
    if (!(sparsity >= 0.0f && sparsity < 1.0f))
        return mopt_error_set(err, MOPT_ERR_ARG, "magnitude mask: sparsity %g outside [0, 1)",
                              (double)sparsity);
    float *a = malloc((size_t)n * sizeof *a);
    if (!a)
        return mopt_error_set(err, MOPT_ERR_NOMEM, "magnitude mask: out of memory (%lld weights)",
                              (long long)n);
    for (int64_t i = 0; i < n; i++)
        a[i] = fabsf(w[i]);
    int64_t k = mopt_prune_keep_count(n, sparsity);
    /* top_k over everything, then values[k - 1]. */
    qsort(a, (size_t)n, sizeof *a, cmp_desc);
    float thr = a[k - 1];
    free(a);
    for (int64_t i = 0; i < n; i++)
        mask[i] = fabsf(w[i]) >= thr ? 1 : 0;
    if (threshold)
        *threshold = thr;
    return MOPT_OK;
}

/* TF 'SAME' pooling geometry along one axis with window == stride == b. */
static void same_geometry(int64_t len, int b, int64_t *out, int64_t *pad_before) {
    *out = (len + b - 1) / b;
    int64_t total = *out * b - len; /* (out - 1) * stride + window - len, >= 0 */
    *pad_before = total / 2;
}

mopt_status mopt_mask_block(const float *w, int64_t rows, int64_t cols, int bh, int bw,
                            mopt_block_pool pool, float sparsity, uint8_t *mask,
                            float *threshold, mopt_error *err) {
    if (!w || !mask || rows <= 0 || cols <= 0)
        return mopt_error_set(err, MOPT_ERR_ARG, "block mask: empty or NULL weights");
    if (bh < 1 || bw < 1)
        return mopt_error_set(err, MOPT_ERR_ARG, "block mask: block %dx%d must be at least 1x1",
                              bh, bw);
    if (pool != MOPT_BLOCK_POOL_AVG && pool != MOPT_BLOCK_POOL_MAX)
        return mopt_error_set(err, MOPT_ERR_ARG, "block mask: unknown pooling %d", (int)pool);
    if (bh == 1 && bw == 1)
        return mopt_mask_magnitude(w, rows * cols, sparsity, mask, threshold, err);

    int64_t prow, pcol, pad_r, pad_c;
    same_geometry(rows, bh, &prow, &pad_r);
    same_geometry(cols, bw, &pcol, &pad_c);
    /* Stage 1 pools along the columns (tfmot's first pass runs over the Keras
     * kernel's rows, i.e. the input axis = our columns), stage 2 along rows. */
    float *stage = malloc((size_t)(rows * pcol) * sizeof *stage);
    float *pooled = malloc((size_t)(prow * pcol) * sizeof *pooled);
    uint8_t *pmask = malloc((size_t)(prow * pcol));
    if (!stage || !pooled || !pmask) {
        free(stage);
        free(pooled);
        free(pmask);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "block mask: out of memory");
    }
    const bool avg = pool == MOPT_BLOCK_POOL_AVG;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < pcol; j++) {
            int64_t c0 = j * bw - pad_c, c1 = c0 + bw;
            if (c0 < 0)
                c0 = 0;
            if (c1 > cols)
                c1 = cols;
            /* Padded cells are excluded: TF's AvgPool divides by the count of
             * valid cells and MaxPool ignores padding. */
            float acc = avg ? 0.0f : -INFINITY;
            for (int64_t c = c0; c < c1; c++) {
                float v = fabsf(w[r * cols + c]);
                acc = avg ? acc + v : (v > acc ? v : acc);
            }
            stage[r * pcol + j] = avg ? acc / (float)(c1 - c0) : acc;
        }
    }
    for (int64_t i = 0; i < prow; i++) {
        int64_t r0 = i * bh - pad_r, r1 = r0 + bh;
        if (r0 < 0)
            r0 = 0;
        if (r1 > rows)
            r1 = rows;
        for (int64_t j = 0; j < pcol; j++) {
            float acc = avg ? 0.0f : -INFINITY;
            for (int64_t r = r0; r < r1; r++) {
                float v = stage[r * pcol + j];
                acc = avg ? acc + v : (v > acc ? v : acc);
            }
            pooled[i * pcol + j] = avg ? acc / (float)(r1 - r0) : acc;
        }
    }
    free(stage);
    mopt_status st = mopt_mask_magnitude(pooled, prow * pcol, sparsity, pmask, threshold, err);
    if (st == MOPT_OK) {
        /* expand_tensor is a Kronecker product with a bh x bw block of ones,
         * anchored at (0, 0) whatever the pooling padding was, then cropped. */
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                mask[r * cols + c] = pmask[(r / bh) * pcol + c / bw];
    }
    free(pooled);
    free(pmask);
    return st;
}

typedef struct mag_idx {
    float a;
    int32_t i;
} mag_idx;

/* Descending magnitude, lower index first on ties (TF top_k's order). */
static int cmp_mag_idx(const void *pa, const void *pb) {
    const mag_idx *x = pa, *y = pb;
    bool xn = isnan(x->a), yn = isnan(y->a);
    if (xn != yn)
        return (int)xn - (int)yn;
    if (!xn && x->a != y->a)
        return x->a < y->a ? 1 : -1;
    return (x->i > y->i) - (x->i < y->i);
}

mopt_status mopt_mask_m_by_n(const float *w, int64_t rows, int64_t cols, int m, int n,
                             uint8_t *mask, mopt_error *err) {
    if (!w || !mask || rows <= 0 || cols <= 0)
        return mopt_error_set(err, MOPT_ERR_ARG, "M:N mask: empty or NULL weights");
    if (m < 1 || n <= m || n > 65536)
        return mopt_error_set(err, MOPT_ERR_ARG,
                              "M:N mask: %d:%d needs 0 < M < N <= 65536 (M zeros in every N)", m,
                              n);
    mag_idx *g = malloc((size_t)n * sizeof *g);
    if (!g)
        return mopt_error_set(err, MOPT_ERR_NOMEM, "M:N mask: out of memory");
    const int keep = n - m;
    for (int64_t r = 0; r < rows; r++) {
        const float *wr = w + r * cols;
        uint8_t *mr = mask + r * cols;
        for (int64_t c0 = 0; c0 < cols; c0 += n) {
            int len = (int)(cols - c0 < n ? cols - c0 : n);
            for (int j = 0; j < len; j++) {
                g[j].a = fabsf(wr[c0 + j]);
                g[j].i = j;
                mr[c0 + j] = 0;
            }
            if (len <= keep) { /* the zero padding loses every tie */
                for (int j = 0; j < len; j++)
                    mr[c0 + j] = 1;
                continue;
            }
            qsort(g, (size_t)len, sizeof *g, cmp_mag_idx);
            for (int j = 0; j < keep; j++)
                mr[c0 + g[j].i] = 1;
        }
    }
    free(g);
    return MOPT_OK;
}

mopt_prune_params mopt_prune_default_params(void) {
    mopt_prune_params p = {0.5f, 1, 1, MOPT_BLOCK_POOL_AVG, 0, 0};
    return p;
}

mopt_status mopt_prune_params_validate(const mopt_prune_params *p, mopt_error *err) {
    if (!p)
        return mopt_error_set(err, MOPT_ERR_ARG, "prune: NULL parameters");
    const bool mn = p->m != 0 || p->n != 0;
    if (!mn && !(p->sparsity >= 0.0f && p->sparsity < 1.0f))
        return mopt_error_set(err, MOPT_ERR_ARG, "--sparsity: %g is outside [0, 1)",
                              (double)p->sparsity);
    if (p->block_h < 1 || p->block_w < 1 || p->block_h > 65536 || p->block_w > 65536)
        return mopt_error_set(err, MOPT_ERR_ARG, "--block: %dx%d is not a block shape (1..65536)",
                              p->block_h, p->block_w);
    if (p->block_pool != MOPT_BLOCK_POOL_AVG && p->block_pool != MOPT_BLOCK_POOL_MAX)
        return mopt_error_set(err, MOPT_ERR_ARG, "--block-pool: unknown pooling %d",
                              (int)p->block_pool);
    if (mn) {
        if (p->m < 1 || p->n > 65536 || p->m >= p->n)
            return mopt_error_set(err, MOPT_ERR_ARG,
                                  "--m-by-n: %d:%d needs 0 < M < N <= 65536 (M zeros in every "
                                  "N consecutive input channels)",
                                  p->m, p->n);
        if (p->block_h * (int64_t)p->block_w > 1)
            return mopt_error_set(err, MOPT_ERR_ARG,
                                  "--m-by-n: cannot be combined with --block %dx%d", p->block_h,
                                  p->block_w);
    }
    return MOPT_OK;
}

static int64_t prod_dims(int rank, const int32_t *dims) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] <= 0)
            return -1;
        n *= dims[i];
        if (n > INT32_MAX)
            return -1;
    }
    return n;
}

mopt_status mopt_prune_mask(mopt_op_type type, int rank, const int32_t *dims,
                            int depth_multiplier, const float *w, const mopt_prune_params *p,
                            uint8_t *mask, mopt_prune_pattern *pattern, float *threshold,
                            mopt_error *err) {
    mopt_status st = mopt_prune_params_validate(p, err);
    if (st != MOPT_OK)
        return st;
    if (!w || !mask || !dims)
        return mopt_error_set(err, MOPT_ERR_ARG, "prune mask: NULL argument");
    int want = type == MOPT_OP_FULLY_CONNECTED ? 2
               : (type == MOPT_OP_CONV_2D || type == MOPT_OP_DEPTHWISE_CONV_2D) ? 4
                                                                             : -1;
    if (want < 0)
        return mopt_error_set(err, MOPT_ERR_ARG, "prune mask: %s has no prunable weights",
                              mopt_op_name(type) ? mopt_op_name(type) : "operator");
    int64_t numel = prod_dims(rank, dims);
    if (rank != want || numel <= 0)
        return mopt_error_set(err, MOPT_ERR_ARG, "prune mask: %s weights must have rank %d",
                              mopt_op_name(type), want);

    if (p->m > 0) {
        if (pattern)
            *pattern = MOPT_PRUNE_M_BY_N;
        if (threshold)
            *threshold = 999.0f; /* tfmot returns a dummy threshold for M:N */
        if (type == MOPT_OP_FULLY_CONNECTED)
            return mopt_mask_m_by_n(w, dims[0], dims[1], p->m, p->n, mask, err);
        if (type == MOPT_OP_CONV_2D)
            return mopt_mask_m_by_n(w, (int64_t)dims[0] * dims[1] * dims[2], dims[3], p->m, p->n,
                                    mask, err);
        /* DEPTHWISE [1,KH,KW,C*M]: tfmot's Keras kernel [KH,KW,C,M] becomes
         * [M*KH*KW, C], so groups run along C for each (m, kh, kw). */
        int mult = depth_multiplier > 0 ? depth_multiplier : 1;
        if (dims[0] != 1 || dims[3] % mult != 0)
            return mopt_error_set(err, MOPT_ERR_ARG,
                                  "prune mask: depthwise weights [%d,%d,%d,%d] do not fit depth "
                                  "multiplier %d",
                                  dims[0], dims[1], dims[2], dims[3], mult);
        const int64_t khkw = (int64_t)dims[1] * dims[2], C = dims[3] / mult;
        float *t = malloc((size_t)numel * sizeof *t);
        uint8_t *tm = malloc((size_t)numel);
        if (!t || !tm) {
            free(t);
            free(tm);
            return mopt_error_set(err, MOPT_ERR_NOMEM, "prune mask: out of memory");
        }
        for (int64_t mm = 0; mm < mult; mm++)
            for (int64_t s = 0; s < khkw; s++)
                for (int64_t c = 0; c < C; c++)
                    t[(mm * khkw + s) * C + c] = w[(s * C + c) * mult + mm];
        st = mopt_mask_m_by_n(t, mult * khkw, C, p->m, p->n, tm, err);
        if (st == MOPT_OK)
            for (int64_t mm = 0; mm < mult; mm++)
                for (int64_t s = 0; s < khkw; s++)
                    for (int64_t c = 0; c < C; c++)
                        mask[(s * C + c) * mult + mm] = tm[(mm * khkw + s) * C + c];
        free(t);
        free(tm);
        return st;
    }
    if (type == MOPT_OP_FULLY_CONNECTED && (p->block_h > 1 || p->block_w > 1)) {
        if (pattern)
            *pattern = MOPT_PRUNE_BLOCK;
        return mopt_mask_block(w, dims[0], dims[1], p->block_h, p->block_w, p->block_pool,
                               p->sparsity, mask, threshold, err);
    }
    if (pattern)
        *pattern = MOPT_PRUNE_ELEMENT;
    return mopt_mask_magnitude(w, numel, p->sparsity, mask, threshold, err);
}
