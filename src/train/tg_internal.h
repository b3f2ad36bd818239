/* tg_internal.h - internal structures of the training engine (src/train).
 *
 * A tgraph holds:
 *  - values (tval): activations with a variable batch dimension ("batched",
 *    dims[0] is a placeholder 1 and the real batch is tg->batch) or
 *    constants (full shape, never batched, no gradient);
 *  - nodes (tnode) in execution (topological) order, each producing one
 *    value from input values and variables;
 *  - variables (tvar, the public mopt_tvar plus the transform chain).
 * Every activation of the last forward is kept for backward (the networks
 * this engine trains are small; keeping everything avoids recomputation).
 */
#ifndef MOPT_TRAIN_TG_INTERNAL_H
#define MOPT_TRAIN_TG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mopt/train.h"

#include "train/pool.h"

/* Parallel loops: tr_pool_run(pool, n, min_chunk, fn, ctx) (pool.h). Every
 * parallel loop splits over outputs only, so results never depend on the
 * split or the thread count. */

#define TR_ALIGN 64

/* Node kinds that are not TFLite ops also include MOPT_TNODE_* (train.h). */

typedef struct tval {
    int rank;
    int32_t dims[MOPT_MAX_DIMS]; /* dims[0] == 1 placeholder when batched */
    bool batched;
    int64_t per;        /* elements per sample (batched) or in total (constant) */
    float *data;        /* forward values: cap_batch * per (batched) or per */
    float *grad;        /* gradient (batched values that need one) */
    bool need_grad;
    int producer;       /* node index; -1 = graph input; -2 = constant */
    int n_cons;         /* input slots of nodes reading this value */
    int consumer;       /* the last such node */
} tval;

typedef struct tr_conv_p {
    int32_t kh, kw, sh, sw, dh, dw;
    mopt_padding padding;
    int32_t pad_top, pad_left; /* derived from the input shape */
    int32_t depth_mult;        /* depthwise */
} tr_conv_p;

typedef struct tr_pool_p {
    int32_t kh, kw, sh, sw;
    mopt_padding padding;
    int32_t pad_top, pad_left;
} tr_pool_p;

typedef struct tnode {
    int kind;           /* mopt_op_type or MOPT_TNODE_* */
    char *name;
    int n_in;
    int *in;            /* value indices */
    int n_in_nodes;
    int *in_nodes;      /* producers of non-constant inputs (-1 = graph input) */
    int out;            /* value index */
    mopt_activation act;
    int w, b;           /* variables or -1 */
    int bn_gamma, bn_beta, bn_mean, bn_var;
    float bn_eps, bn_momentum;
    bool bn_batch_stats; /* the saved statistics are the batch's (training forward) */
    bool bn_frozen;      /* training forwards use the running statistics (fine-tuning) */
    float rate;         /* dropout */
    union {
        tr_conv_p conv;
        tr_pool_p pool;
        int axis;                   /* CONCATENATION (normalised, > 0) */
        struct { int32_t before[MOPT_MAX_DIMS], after[MOPT_MAX_DIMS]; } pad;
        struct { bool axes[MOPT_MAX_DIMS]; bool keep; } mean;
        int32_t perm[MOPT_MAX_DIMS]; /* TRANSPOSE */
        float beta;                 /* SOFTMAX */
    } p;
    /* activation transform: when set, the op writes `raw` and the transform
     * writes the value consumers read */
    bool has_at;
    mopt_act_transform at;
    float *raw, *raw_grad;
    /* op-specific data kept from forward for backward (capacity aux_cap) */
    void *aux;
    size_t aux_cap;
    uint64_t key;       /* per-node noise key (dropout) */
    double t_fwd, t_bwd; /* accumulated seconds when tg->profile is on */
} tnode;

typedef struct wstage {
    mopt_weight_transform t;
    float *out;         /* this stage's output (numel) */
    float *gin;         /* gradient w.r.t. this stage's input (stages > 0) */
} wstage;

typedef struct tvar {
    mopt_tvar pub;
    int n_stages;
    wstage *stages;
    float *gsum;        /* gradient w.r.t. the effective weights when a chain exists */
} tvar;

struct mopt_tgraph {
    int n_vals, cap_vals;
    tval *vals;
    int n_nodes, cap_nodes;
    tnode *nodes;
    int n_vars, cap_vars;
    tvar **vars;

    int input;          /* value index of the graph input */
    int output;         /* value index of the logits */
    int batch;          /* batch of the last forward */
    int cap_batch;      /* capacity of batched buffers */
    int num_threads;
    uint64_t seed;
    int64_t step;
    bool trained_fw;    /* last forward was a training forward */
    bool out_grad_ready;
    bool input_grad;
    bool profile;       /* accumulate per-node times (internal, for benchmarks) */

    /* export hints */
    bool end_softmax;   /* export ends with SOFTMAX */
    float softmax_beta;
    char *input_name;

    tr_pool *pool;      /* created on first use for tr_threads(tg) threads */
    int pool_threads;
    /* im2col / col2im scratch, and zeros for padded convolution taps */
    float *scratch;
    size_t scratch_floats;
    float *zeros;
    size_t zeros_floats;
};

/* ---- memory ---- */
void *tr_alloc(size_t bytes);              /* 64-byte aligned, NULL on failure */
void *tr_calloc(size_t bytes);             /* zeroed */
void tr_free(void *p);
float *tr_scratch(mopt_tgraph *tg, size_t floats); /* grows tg->scratch */
const float *tr_zeros(mopt_tgraph *tg, size_t floats); /* at least `floats` zeros */
int tr_threads(const mopt_tgraph *tg);
/* The graph's pool (NULL = run serially: one thread, or creation failed). */
tr_pool *tr_get_pool(mopt_tgraph *tg);

/* ---- building (tgraph.c) ---- */
mopt_tgraph *tg_new(void);
/* Adds a value; returns its index or -1 (out of memory). */
int tg_add_value(mopt_tgraph *tg, int rank, const int32_t *dims, bool batched);
/* Adds a constant value holding a copy of data (numel floats). */
int tg_add_const(mopt_tgraph *tg, int rank, const int32_t *dims, const float *data);
/* Adds a node producing a new value of the given shape; inputs copied.
 * Returns the node index or -1. */
int tg_add_node(mopt_tgraph *tg, int kind, const char *name, const int *in, int n_in, int rank,
                const int32_t *dims);
/* Adds a variable (zero-filled); returns its index or -1. */
int tg_add_var(mopt_tgraph *tg, const char *name, mopt_tvar_role role, unsigned flags, int node,
               int rank, const int32_t *dims);
/* Makes a unique node name from a prefix ("conv" -> "conv3"). */
void tg_unique_name(const mopt_tgraph *tg, const char *prefix, char *buf, size_t cap);
/* Finalises after building: marks which values need gradients. */
mopt_status tg_finalize(mopt_tgraph *tg, int output_value, mopt_error *err);

/* Builders (src/train/build.c): each validates shapes and returns the node
 * index, or -1 with err set. `name` may be NULL (a unique one is made). */
int tgb_conv(mopt_tgraph *tg, int in, const char *name, int oc, int kh, int kw, int sh, int sw,
             int dh, int dw, mopt_padding pad, bool bias, mopt_activation act, mopt_error *err);
int tgb_dwconv(mopt_tgraph *tg, int in, const char *name, int mult, int kh, int kw, int sh,
               int sw, int dh, int dw, mopt_padding pad, bool bias, mopt_activation act,
               mopt_error *err);
int tgb_fc(mopt_tgraph *tg, int in, const char *name, int units, bool bias, bool keep_dims,
           mopt_activation act, mopt_error *err);
int tgb_bn(mopt_tgraph *tg, int in, const char *name, float momentum, float eps,
           mopt_activation act, mopt_error *err);
int tgb_unary(mopt_tgraph *tg, int kind, int in, const char *name, mopt_error *err);
int tgb_dropout(mopt_tgraph *tg, int in, const char *name, float rate, mopt_error *err);
int tgb_pool(mopt_tgraph *tg, int kind, int in, const char *name, int kh, int kw, int sh, int sw,
             mopt_padding pad, mopt_activation act, mopt_error *err);
int tgb_mean(mopt_tgraph *tg, int in, const char *name, const bool *axes, bool keep,
             mopt_error *err);
/* dims: the new full shape; dims[0] must be 1 (the batch) or -1 for "infer". */
int tgb_reshape(mopt_tgraph *tg, int in, const char *name, int rank, const int32_t *dims,
                mopt_error *err);
int tgb_binary(mopt_tgraph *tg, int kind, int a, int b, const char *name, mopt_activation act,
               mopt_error *err);
int tgb_concat(mopt_tgraph *tg, const int *in, int n, const char *name, int axis,
               mopt_activation act, mopt_error *err);
int tgb_pad(mopt_tgraph *tg, int in, const char *name, const int32_t *before,
            const int32_t *after, mopt_error *err);
int tgb_transpose(mopt_tgraph *tg, int in, const char *name, const int32_t *perm,
                  mopt_error *err);
int tgb_softmax(mopt_tgraph *tg, int in, const char *name, float beta, mopt_error *err);

/* Glorot-uniform initialisation of a weight variable from a seeded stream. */
void tr_init_glorot(float *w, int64_t n, int64_t fan_in, int64_t fan_out, uint64_t seed,
                    uint64_t stream);

/* ---- ops (ops_*.c) ---- */
typedef struct tr_ctx {
    mopt_tgraph *tg;
    tnode *n;
    int batch;
    int nt;               /* threads available (1 for small nodes) */
    tr_pool *pool;        /* NULL when nt == 1 */
    bool training;
    const float *w, *b;   /* effective weights / bias (or NULL) */
    float *gw, *gb;       /* where their gradients accumulate (NULL: not needed) */
    float *y;             /* op output (raw when an activation transform is set) */
    float *dy;            /* gradient w.r.t. y (backward; may be modified in place) */
    bool dx_overwrite;    /* backward: this node is the only consumer of input 0, whose
                             grad was not zeroed: WRITE it instead of adding */
} tr_ctx;

/* Scratch bytes the op keeps for backward, for `batch` samples. */
size_t tr_op_aux_bytes(const mopt_tgraph *tg, const tnode *n, int batch);
mopt_status tr_op_forward(tr_ctx *c, mopt_error *err);
mopt_status tr_op_backward(tr_ctx *c, mopt_error *err);

/* True for node kinds whose backward can write (not add) their input's
 * gradient when they are its only consumer (saves zeroing it). */
bool tr_op_can_overwrite_dx(int kind);

/* Fused activations (in place); backward multiplies dy by the derivative
 * evaluated from the output y. */
void tr_act_forward(mopt_activation act, float *y, int64_t n, tr_pool *pool);
void tr_act_backward(mopt_activation act, const float *y, float *dy, int64_t n, tr_pool *pool);

/* Element counts of a value for the current batch. */
static inline int64_t tv_numel(const mopt_tgraph *tg, const tval *v) {
    return v->batched ? (int64_t)tg->batch * v->per : v->per;
}
static inline const char *tn_name(const tnode *n) { return n->name ? n->name : "?"; }

/* Deterministic fixed-chunk reductions: the split into chunks depends only on
 * n (never on the thread count), chunks are summed in order. */
#define TR_RED_CHUNKS 32

#include "train/gemm.h"

#endif
