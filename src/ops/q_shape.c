/* q_shape.c - integer PAD and CONCATENATION (int8, int16).
 *
 * Both move raw integers: the spec requires equal input / output
 * quantization (TFLite's int8 CONCATENATION enforces it exactly; PAD pads
 * with the output zero point, which is the input's). Unequal parameters are
 * refused rather than silently mis-scaled. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/q_ops.h"

/* ---- PAD ---- */

typedef struct qpad_state {
    int rank;
    size_t esize;
    size_t in_dims[MOPT_MAX_DIMS], out_dims[MOPT_MAX_DIMS], before[MOPT_MAX_DIMS];
    int32_t pad_value;
} qpad_state;

static bool same_params(const mopt_tensor *a, const mopt_tensor *b) {
    return a->quant.n >= 1 && b->quant.n >= 1 && a->quant.zero_point[0] == b->quant.zero_point[0] &&
           fabsf(a->quant.scale[0] - b->quant.scale[0]) <= 1e-6f * fabsf(b->quant.scale[0]);
}

static mopt_status qpad_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                mopt_error *err) {
    qpad_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    const mopt_tensor *x = mopt_ctx_tin(ctx, 0), *p = mopt_ctx_tin(ctx, 1),
                      *y = mopt_ctx_tout(ctx, 0);
    const void *pd = mopt_ctx_in(ctx, 1);
    if (!p || !pd || (p->dtype != MOPT_INT32 && p->dtype != MOPT_INT64) ||
        mopt_numel(p) != (size_t)x->rank * 2)
        return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                            "paddings must be a constant int32/int64 [rank, 2] tensor");
    if (y->rank != x->rank)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "output rank differs from input rank");
    s->rank = x->rank;
    s->esize = mopt_dtype_size(x->dtype);
    for (int d = 0; d < x->rank; d++) {
        int64_t b = p->dtype == MOPT_INT32 ? ((const int32_t *)pd)[2 * d]
                                           : ((const int64_t *)pd)[2 * d];
        int64_t a = p->dtype == MOPT_INT32 ? ((const int32_t *)pd)[2 * d + 1]
                                           : ((const int64_t *)pd)[2 * d + 1];
        if (b < 0 || a < 0 || (int64_t)x->dims[d] + b + a != (int64_t)y->dims[d])
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                                "paddings (%lld, %lld) on dimension %d do not give %d",
                                (long long)b, (long long)a, d, (int)y->dims[d]);
        s->in_dims[d] = (size_t)x->dims[d];
        s->out_dims[d] = (size_t)y->dims[d];
        s->before[d] = (size_t)b;
    }
    if (!same_params(x, y))
        return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                            "input and output quantization must be equal");
    s->pad_value = (int32_t)y->quant.zero_point[0];
    plan->name = x->dtype == MOPT_INT16 ? "pad_i16" : "pad_i8";
    return MOPT_OK;
}

static mopt_status qpad_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                             mopt_error *err) {
    (void)scratch;
    (void)err;
    const qpad_state *s = state;
    const unsigned char *x = mopt_ctx_in(ctx, 0);
    unsigned char *y = mopt_ctx_out(ctx, 0);
    size_t n_out = 1;
    for (int d = 0; d < s->rank; d++) n_out *= s->out_dims[d];
    /* Fill with the zero point, then copy the input's innermost rows. */
    if (s->esize == 1) {
        memset(y, (int)(int8_t)s->pad_value & 0xFF, n_out);
    } else {
        int16_t v = (int16_t)s->pad_value;
        for (size_t i = 0; i < n_out; i++) memcpy(y + 2 * i, &v, 2);
    }
    if (s->rank == 0) {
        memcpy(y, x, s->esize);
        return MOPT_OK;
    }
    size_t n_in = 1;
    for (int d = 0; d < s->rank; d++) n_in *= s->in_dims[d];
    const size_t inner = s->in_dims[s->rank - 1];
    if (inner == 0) return MOPT_OK;
    size_t idx[MOPT_MAX_DIMS] = {0};
    for (size_t row = 0; row < n_in / inner; row++) {
        size_t off = 0;
        for (int d = 0; d < s->rank; d++) off = off * s->out_dims[d] + idx[d] + s->before[d];
        memcpy(y + off * s->esize, x + row * inner * s->esize, inner * s->esize);
        for (int d = s->rank - 2; d >= 0; d--) {
            if (++idx[d] < s->in_dims[d]) break;
            idx[d] = 0;
        }
    }
    return MOPT_OK;
}

/* ---- CONCATENATION ---- */

typedef struct qcat_state {
    int n;
    size_t outer, esize;
    size_t *inner; /* per input: dims[axis..] product */
    size_t out_inner;
} qcat_state;

static void qcat_free(void *p) {
    qcat_state *s = p;
    if (!s) return;
    free(s->inner);
    free(s);
}

static mopt_status qcat_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                mopt_error *err) {
    qcat_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    const mopt_tensor *y = mopt_ctx_tout(ctx, 0);
    int axis = ctx->op->p.concat.axis;
    if (axis < 0) axis += y->rank;
    if (axis < 0 || axis >= y->rank)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "axis %d out of range",
                            (int)ctx->op->p.concat.axis);
    if (ctx->op->p.concat.act != MOPT_ACT_NONE)
        return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                            "fused activation on integer CONCATENATION is not supported");
    s->n = ctx->op->n_inputs;
    s->esize = mopt_dtype_size(y->dtype);
    s->inner = calloc((size_t)(s->n > 0 ? s->n : 1), sizeof *s->inner);
    if (!s->inner) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    s->outer = 1;
    for (int d = 0; d < axis; d++) s->outer *= (size_t)y->dims[d];
    size_t total = 0;
    for (int i = 0; i < s->n; i++) {
        const mopt_tensor *x = mopt_ctx_tin(ctx, i);
        if (!x || x->rank != y->rank)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "input %d has the wrong rank", i);
        if (!same_params(x, y))
            return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                                "input %d quantization (%g, %lld) differs from the output's "
                                "(%g, %lld)",
                                i, (double)x->quant.scale[0], (long long)x->quant.zero_point[0],
                                (double)y->quant.scale[0], (long long)y->quant.zero_point[0]);
        size_t in = 1;
        for (int d = axis; d < x->rank; d++) in *= (size_t)x->dims[d];
        s->inner[i] = in;
        total += in;
    }
    s->out_inner = 1;
    for (int d = axis; d < y->rank; d++) s->out_inner *= (size_t)y->dims[d];
    if (total != s->out_inner)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "input sizes do not add up");
    plan->name = y->dtype == MOPT_INT16 ? "concatenation_i16" : "concatenation_i8";
    return MOPT_OK;
}

static mopt_status qcat_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                             mopt_error *err) {
    (void)scratch;
    (void)err;
    const qcat_state *s = state;
    unsigned char *y = mopt_ctx_out(ctx, 0);
    for (size_t o = 0; o < s->outer; o++) {
        size_t off = o * s->out_inner;
        for (int i = 0; i < s->n; i++) {
            const unsigned char *x = mopt_ctx_in(ctx, i);
            memcpy(y + off * s->esize, x + o * s->inner[i] * s->esize, s->inner[i] * s->esize);
            off += s->inner[i];
        }
    }
    return MOPT_OK;
}

const mopt_kernel mopt_q_shape_kernels[] = {
    {MOPT_OP_PAD, "pad_int", mopt_q_match_io_int, qpad_prepare, qpad_eval, free, 0},
    {MOPT_OP_CONCATENATION, "concatenation_int", mopt_q_match_all_int, qcat_prepare, qcat_eval,
     qcat_free, 0},
};
const size_t mopt_q_shape_kernels_n = sizeof mopt_q_shape_kernels / sizeof mopt_q_shape_kernels[0];
