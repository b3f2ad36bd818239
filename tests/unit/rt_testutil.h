/* rt_testutil.h - small graph-building and comparison helpers shared by the
 * runtime / validation / kernel tests. Everything is static so each test
 * executable gets its own copy. */
#ifndef MOPT_TESTS_RT_TESTUTIL_H
#define MOPT_TESTS_RT_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/mopt.h"

/* Deterministic generator (xorshift32), values in [-1, 1). */
typedef struct rng {
    uint32_t s;
} rng;

static inline uint32_t rng_u32(rng *r) {
    uint32_t x = r->s ? r->s : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    r->s = x;
    return x;
}

static inline float rng_f(rng *r) { return (float)((double)rng_u32(r) / 2147483648.0 - 1.0); }

static inline void rng_fill(rng *r, float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = rng_f(r);
}

static inline int64_t dims_numel(int rank, const int32_t *dims) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    return n;
}

/* Activation tensor. */
static inline int t_act(mopt_graph *g, const char *name, mopt_dtype dt, int rank,
                        const int32_t *dims) {
    int t = mopt_graph_add_tensor(g, name, dt, rank, dims);
    if (t < 0) abort();
    return t;
}

/* Constant tensor with a copy of data (nbytes from the shape). */
static inline int t_const(mopt_graph *g, const char *name, mopt_dtype dt, int rank,
                          const int32_t *dims, const void *data) {
    int t = t_act(g, name, dt, rank, dims);
    int64_t nb = mopt_tensor_nbytes(&g->tensors[t]);
    if (nb > 0 && mopt_graph_set_tensor_data(g, t, data, (size_t)nb) != MOPT_OK) abort();
    return t;
}

static inline int t_f32(mopt_graph *g, const char *name, int rank, const int32_t *dims) {
    return t_act(g, name, MOPT_FLOAT32, rank, dims);
}

static inline int t_cf32(mopt_graph *g, const char *name, int rank, const int32_t *dims,
                         const float *data) {
    return t_const(g, name, MOPT_FLOAT32, rank, dims, data);
}

static inline int t_ci32(mopt_graph *g, const char *name, int rank, const int32_t *dims,
                         const int32_t *data) {
    return t_const(g, name, MOPT_INT32, rank, dims, data);
}

static inline int add_op(mopt_graph *g, mopt_op_type type, const int32_t *ins, int n_in, int out) {
    int32_t o = out;
    int i = mopt_graph_add_op(g, type, ins, n_in, &o, 1);
    if (i < 0) abort();
    return i;
}

static inline void set_io1(mopt_graph *g, int in, int out) {
    int32_t i = in, o = out;
    if (mopt_graph_set_io(g, &i, 1, &o, 1) != MOPT_OK) abort();
}

static inline void set_quant1(mopt_graph *g, int t, float scale, int64_t zp) {
    if (mopt_tensor_set_quant(&g->tensors[t], 1, &scale, &zp, 0) != MOPT_OK) abort();
}

/* |a-b| <= atol + rtol*|b| for every element; prints the first failure. */
static inline int close_f32(const float *a, const float *b, size_t n, float atol, float rtol,
                            const char *what) {
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= atol + rtol * fabsf(b[i])) && !(isnan(a[i]) && isnan(b[i]))) {
            fprintf(stderr, "%s: element %zu: got %.9g, want %.9g\n", what, i, (double)a[i],
                    (double)b[i]);
            return 0;
        }
    }
    return 1;
}

/* Creates an interpreter, copies `in` (if non-NULL) into input 0, invokes,
 * copies output 0 into `out`. Returns the status of the first failing step. */
static inline mopt_status run1(const mopt_graph *g, int threads, const void *in, size_t in_bytes,
                               void *out, size_t out_bytes, mopt_error *err) {
    mopt_interp_options o = mopt_interp_default_options();
    o.num_threads = threads;
    mopt_interp *it = NULL;
    mopt_status st = mopt_interp_create(g, &o, &it, err);
    if (st) return st;
    if (in) memcpy(mopt_interp_input(it, 0), in, in_bytes);
    st = mopt_interp_invoke(it, err);
    if (!st) memcpy(out, mopt_interp_output(it, 0), out_bytes);
    mopt_interp_free(it);
    return st;
}

#endif
