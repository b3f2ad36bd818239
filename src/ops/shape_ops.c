/* shape_ops.c - RESHAPE, TRANSPOSE, PAD, CONCATENATION.
 *
 * RESHAPE and TRANSPOSE only move bytes, so they accept every dtype the
 * validator allows; PAD (pads with 0.0) and CONCATENATION (may clamp with a
 * fused activation) are float32 for now: their quantized forms need the
 * zero point / equal-scale rules and come with the integer kernels. */
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

static bool match_same_dtype(const mopt_graph *g, const mopt_op *op) {
    return g->tensors[op->inputs[0]].dtype == g->tensors[op->outputs[0]].dtype &&
           mopt_dtype_size(g->tensors[op->inputs[0]].dtype) > 0;
}

static mopt_status no_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan, mopt_error *err) {
    return MOPT_OK;
}

/* ---- RESHAPE ---- */

static mopt_status reshape_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                                mopt_error *err) {
    const void *x = mopt_ctx_in(ctx, 0);
    void *y = mopt_ctx_out(ctx, 0);
    /* The planner usually aliases output and input: nothing to move. */
    if (x != y) memcpy(y, x, (size_t)mopt_tensor_nbytes(mopt_ctx_tin(ctx, 0)));
    return MOPT_OK;
}

/* ---- TRANSPOSE ---- */

typedef struct transpose_state {
    int rank;
    size_t out_dims[MOPT_MAX_DIMS];
    size_t in_stride[MOPT_MAX_DIMS]; /* input stride of each output dim */
    size_t esize;
} transpose_state;

static mopt_status transpose_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                     mopt_error *err) {
    transpose_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    const mopt_tensor *x = mopt_ctx_tin(ctx, 0);
    const int32_t *perm = mopt_ctx_in(ctx, 1); /* constant: checked by validation */
    size_t stride[MOPT_MAX_DIMS], acc = 1;
    for (int d = x->rank - 1; d >= 0; d--) {
        stride[d] = acc;
        acc *= (size_t)x->dims[d];
    }
    s->rank = x->rank;
    for (int d = 0; d < x->rank; d++) {
        s->out_dims[d] = (size_t)x->dims[perm[d]];
        s->in_stride[d] = stride[perm[d]];
    }
    if (s->rank == 0) {
        s->rank = 1;
        s->out_dims[0] = 1;
        s->in_stride[0] = 1;
    }
    s->esize = mopt_dtype_size(x->dtype);
    return MOPT_OK;
}

#define TRANSPOSE_INNER(T)                                                                         \
    do {                                                                                           \
        const T *xs = (const T *)x + off;                                                          \
        T *ys = (T *)y + o * n;                                                                    \
        for (size_t i = 0; i < n; i++) ys[i] = xs[i * is];                                         \
    } while (0)

static mopt_status transpose_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                                  mopt_error *err) {
    const transpose_state *s = state;
    const void *x = mopt_ctx_in(ctx, 0);
    void *y = mopt_ctx_out(ctx, 0);
    int r = s->rank;
    size_t n = s->out_dims[r - 1], is = s->in_stride[r - 1], outer = 1;
    for (int d = 0; d < r - 1; d++) outer *= s->out_dims[d];
    if (n == 0) return MOPT_OK;
    for (size_t o = 0; o < outer; o++) {
        size_t off = 0, rem = o;
        for (int d = r - 2; d >= 0; d--) {
            off += (rem % s->out_dims[d]) * s->in_stride[d];
            rem /= s->out_dims[d];
        }
        switch (s->esize) {
        case 1: TRANSPOSE_INNER(uint8_t); break;
        case 2: TRANSPOSE_INNER(uint16_t); break;
        case 4: TRANSPOSE_INNER(uint32_t); break;
        default: TRANSPOSE_INNER(uint64_t); break;
        }
    }
    return MOPT_OK;
}

/* ---- PAD ---- */

typedef struct pad_state {
    int rank;
    size_t in_dims[MOPT_MAX_DIMS], out_dims[MOPT_MAX_DIMS], before[MOPT_MAX_DIMS];
} pad_state;

static mopt_status pad_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                               mopt_error *err) {
    pad_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    const mopt_tensor *x = mopt_ctx_tin(ctx, 0), *y = mopt_ctx_tout(ctx, 0);
    const int32_t *pd = mopt_ctx_in(ctx, 1); /* constant [rank,2]: checked by validation */
    s->rank = x->rank;
    for (int d = 0; d < x->rank; d++) {
        s->in_dims[d] = (size_t)x->dims[d];
        s->out_dims[d] = (size_t)y->dims[d];
        s->before[d] = (size_t)pd[2 * d];
    }
    /* Dims inside the innermost padded one are contiguous in both tensors:
     * fold them into its rows so each memcpy moves as much as possible. */
    int j = s->rank - 1;
    while (j > 0 && s->in_dims[j] == s->out_dims[j]) j--;
    size_t inner = 1;
    for (int d = j + 1; d < s->rank; d++) inner *= s->in_dims[d];
    if (s->rank > 0) {
        s->in_dims[j] *= inner;
        s->out_dims[j] *= inner;
        s->before[j] *= inner;
        s->rank = j + 1;
    }
    if (s->rank == 0) {
        s->rank = 1;
        s->in_dims[0] = s->out_dims[0] = 1;
    }
    return MOPT_OK;
}

static mopt_status pad_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                            mopt_error *err) {
    const pad_state *s = state;
    const float *x = mopt_ctx_in(ctx, 0);
    float *y = mopt_ctx_out(ctx, 0);
    int r = s->rank;
    size_t out_n = 1, rows = 1;
    for (int d = 0; d < r; d++) out_n *= s->out_dims[d];
    for (int d = 0; d < r - 1; d++) rows *= s->in_dims[d];
    memset(y, 0, out_n * sizeof(float));
    size_t n = s->in_dims[r - 1];
    if (n == 0) return MOPT_OK;
    size_t ostride[MOPT_MAX_DIMS], acc = 1;
    for (int d = r - 1; d >= 0; d--) {
        ostride[d] = acc;
        acc *= s->out_dims[d];
    }
    for (size_t row = 0; row < rows; row++) {
        size_t off = s->before[r - 1], rem = row;
        for (int d = r - 2; d >= 0; d--) {
            off += (rem % s->in_dims[d] + s->before[d]) * ostride[d];
            rem /= s->in_dims[d];
        }
        memcpy(y + off, x + row * n, n * sizeof(float));
    }
    return MOPT_OK;
}

/* ---- CONCATENATION ---- */

typedef struct concat_state {
    size_t outer, out_chunk, esize;
    float lo, hi;
    bool clamp;
} concat_state;

static mopt_status concat_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                  mopt_error *err) {
    concat_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    mopt_activation act = ctx->op->p.concat.act;
    mopt_status st = mopt_act_range_f32(ctx, act, &s->lo, &s->hi, err);
    if (st) return st;
    s->clamp = act != MOPT_ACT_NONE;
    const mopt_tensor *y = mopt_ctx_tout(ctx, 0);
    int axis = ctx->op->p.concat.axis;
    if (axis < 0) axis += y->rank;
    s->outer = 1;
    for (int d = 0; d < axis; d++) s->outer *= (size_t)y->dims[d];
    s->esize = mopt_dtype_size(y->dtype);
    size_t outer = s->outer ? s->outer : 1;
    s->out_chunk = mopt_numel(y) / outer * s->esize;
    return MOPT_OK;
}

static mopt_status concat_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                               mopt_error *err) {
    const concat_state *s = state;
    unsigned char *y = mopt_ctx_out(ctx, 0);
    size_t pos = 0;
    for (int i = 0; i < ctx->op->n_inputs; i++) {
        const unsigned char *x = mopt_ctx_in(ctx, i);
        size_t outer = s->outer ? s->outer : 1;
        size_t chunk = mopt_numel(mopt_ctx_tin(ctx, i)) / outer * s->esize;
        for (size_t o = 0; o < s->outer; o++)
            memcpy(y + o * s->out_chunk + pos, x + o * chunk, chunk);
        pos += chunk;
    }
    if (s->clamp) {
        float *f = (float *)(void *)y;
        ctx->isa->vclamp(mopt_numel(mopt_ctx_tout(ctx, 0)), f, f, s->lo, s->hi);
    }
    return MOPT_OK;
}

const mopt_kernel mopt_shape_kernels[] = {
    {MOPT_OP_RESHAPE, "reshape_copy", match_same_dtype, no_prepare, reshape_eval, NULL,
     MOPT_KERNEL_ALIAS_IO},
    {MOPT_OP_TRANSPOSE, "transpose", match_same_dtype, transpose_prepare, transpose_eval, free, 0},
    {MOPT_OP_PAD, "pad_f32", mopt_match_io_f32, pad_prepare, pad_eval, free, 0},
    {MOPT_OP_CONCATENATION, "concatenation_f32", mopt_match_all_f32, concat_prepare, concat_eval,
     free, 0},
};
const size_t mopt_shape_kernels_n = sizeof mopt_shape_kernels / sizeof mopt_shape_kernels[0];
