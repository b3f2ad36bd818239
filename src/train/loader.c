/* loader.c - the data pipeline: seeded shuffling, batching, augmentation
 * (random crop with zero padding, horizontal flip) and train/validation
 * splits. Everything random is a function of (seed, epoch, position), so an
 * epoch can be replayed from any batch. */
#include <stdlib.h>
#include <string.h>

#include "train/tg_internal.h"

struct mopt_loader {
    const mopt_dataset *d;
    int64_t *idx;   /* the subset, in the given order */
    int64_t *order; /* this epoch's order */
    int64_t n;
    int batch;
    bool shuffle;
    uint64_t seed;
    mopt_augment aug;
    int64_t epoch;  /* epoch `order` was built for (-1: none) */
    int64_t pos;    /* next position in `order` */
};

mopt_status mopt_loader_create(const mopt_dataset *d, const int64_t *indices, int64_t n,
                               int batch, bool shuffle, uint64_t seed, const mopt_augment *aug,
                               mopt_loader **out, mopt_error *err) {
    if (!d || !out || batch < 1)
        return mopt_error_set(err, MOPT_ERR_ARG, "loader: need a dataset and batch >= 1");
    if (!indices) n = d->n;
    if (n < 1 || n > 0xFFFFFFFFLL)
        return mopt_error_set(err, MOPT_ERR_ARG, "loader: %lld samples (need 1 .. 2^32-1)",
                              (long long)n);
    if (aug && (aug->crop_pad < 0 || aug->crop_pad > 64))
        return mopt_error_set(err, MOPT_ERR_ARG, "loader: crop padding %d outside [0, 64]",
                              aug->crop_pad);
    mopt_loader *l = calloc(1, sizeof(*l));
    if (!l) return mopt_error_set(err, MOPT_ERR_NOMEM, "loader: out of memory");
    l->idx = malloc((size_t)n * sizeof(int64_t));
    l->order = malloc((size_t)n * sizeof(int64_t));
    if (!l->idx || !l->order) {
        mopt_loader_free(l);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "loader: out of memory");
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t s = indices ? indices[i] : i;
        if (s < 0 || s >= d->n) {
            mopt_loader_free(l);
            return mopt_error_set(err, MOPT_ERR_ARG, "loader: index %lld outside the dataset",
                                  (long long)s);
        }
        l->idx[i] = s;
    }
    l->d = d;
    l->n = n;
    l->batch = batch;
    l->shuffle = shuffle;
    l->seed = seed;
    if (aug) l->aug = *aug;
    l->epoch = -1;
    *out = l;
    return MOPT_OK;
}

void mopt_loader_free(mopt_loader *l) {
    if (!l) return;
    free(l->idx);
    free(l->order);
    free(l);
}

int64_t mopt_loader_batches(const mopt_loader *l) { return (l->n + l->batch - 1) / l->batch; }
int64_t mopt_loader_size(const mopt_loader *l) { return l->n; }

static void build_order(mopt_loader *l, int64_t epoch) {
    memcpy(l->order, l->idx, (size_t)l->n * sizeof(int64_t));
    if (l->shuffle) {
        mopt_rng r;
        mopt_rng_seed(&r, l->seed, 0x5348554646ULL + (uint64_t)epoch); /* "SHUFF" + epoch */
        /* Fisher-Yates (n < 2^32, checked at creation) */
        for (int64_t i = l->n - 1; i > 0; i--) {
            int64_t j = (int64_t)mopt_rng_below(&r, (uint32_t)(i + 1));
            int64_t t = l->order[i];
            l->order[i] = l->order[j];
            l->order[j] = t;
        }
    }
    l->epoch = epoch;
}

void mopt_loader_seek(mopt_loader *l, int64_t epoch, int64_t batch_index) {
    if (epoch != l->epoch) build_order(l, epoch);
    int64_t p = batch_index * l->batch;
    l->pos = p < 0 ? 0 : p > l->n ? l->n : p;
}

static void copy_sample(const mopt_loader *l, int64_t sample, int64_t position, float *dst) {
    const mopt_dataset *d = l->d;
    const int H = d->h, W = d->w, C = d->c;
    const float *src = d->images + sample * (int64_t)H * W * C;
    const int pad = l->aug.crop_pad;
    if (pad <= 0 && !l->aug.hflip) {
        memcpy(dst, src, (size_t)H * W * C * sizeof(float));
        return;
    }
    uint64_t h = mopt_hash64(l->seed ^ 0x4155474DULL, ((uint64_t)l->epoch << 32) ^ (uint64_t)position);
    int dy = 0, dx = 0;
    if (pad > 0) {
        dy = (int)((h & 0xFFFF) % (uint64_t)(2 * pad + 1)) - pad;
        dx = (int)(((h >> 16) & 0xFFFF) % (uint64_t)(2 * pad + 1)) - pad;
    }
    const bool flip = l->aug.hflip && ((h >> 32) & 1u);
    for (int y = 0; y < H; y++) {
        int sy = y + dy;
        for (int x = 0; x < W; x++) {
            int sx = (flip ? W - 1 - x : x) + dx;
            float *o = dst + ((int64_t)y * W + x) * C;
            if (sy < 0 || sy >= H || sx < 0 || sx >= W)
                memset(o, 0, (size_t)C * sizeof(float));
            else
                memcpy(o, src + ((int64_t)sy * W + sx) * C, (size_t)C * sizeof(float));
        }
    }
}

void mopt_loader_next(mopt_loader *l, float *x, int32_t *labels, int *count) {
    if (l->epoch < 0) build_order(l, 0);
    int64_t left = l->n - l->pos;
    int cnt = left < l->batch ? (int)left : l->batch;
    const int64_t per = (int64_t)l->d->h * l->d->w * l->d->c;
    for (int i = 0; i < cnt; i++) {
        int64_t s = l->order[l->pos + i];
        copy_sample(l, s, l->pos + i, x + (int64_t)i * per);
        if (labels) labels[i] = l->d->labels ? l->d->labels[s] : 0;
    }
    l->pos += cnt;
    *count = cnt;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

mopt_status mopt_split_indices(int64_t n, double val_fraction, uint64_t seed, int64_t **train,
                               int64_t *n_train, int64_t **val, int64_t *n_val, mopt_error *err) {
    if (n < 1 || n > 0xFFFFFFFFLL)
        return mopt_error_set(err, MOPT_ERR_ARG, "split: %lld samples", (long long)n);
    if (!(val_fraction >= 0.0 && val_fraction < 1.0))
        return mopt_error_set(err, MOPT_ERR_ARG, "split: validation fraction %g outside [0, 1)",
                              val_fraction);
    int64_t nv = (int64_t)(val_fraction * (double)n + 0.5);
    if (nv >= n) nv = n - 1;
    int64_t *perm = malloc((size_t)n * sizeof(int64_t));
    if (!perm) return mopt_error_set(err, MOPT_ERR_NOMEM, "split: out of memory");
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    mopt_rng r;
    mopt_rng_seed(&r, seed, 0x53504C4954ULL); /* "SPLIT" */
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)mopt_rng_below(&r, (uint32_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int64_t *tr = malloc((size_t)(n - nv) * sizeof(int64_t));
    int64_t *va = nv ? malloc((size_t)nv * sizeof(int64_t)) : NULL;
    if (!tr || (nv && !va)) {
        free(perm);
        free(tr);
        free(va);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "split: out of memory");
    }
    memcpy(tr, perm, (size_t)(n - nv) * sizeof(int64_t));
    if (nv) memcpy(va, perm + (n - nv), (size_t)nv * sizeof(int64_t));
    free(perm);
    /* Sorted: each subset is read in file order (cache friendly); the loader
     * shuffles per epoch anyway. */
    qsort(tr, (size_t)(n - nv), sizeof(int64_t), cmp_i64);
    if (nv) qsort(va, (size_t)nv, sizeof(int64_t), cmp_i64);
    *train = tr;
    *n_train = n - nv;
    *val = va;
    *n_val = nv;
    return MOPT_OK;
}
