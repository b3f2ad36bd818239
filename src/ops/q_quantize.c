/* q_quantize.c - QUANTIZE between integer types (requantization).
 *
 * (float -> int and int -> float are the float runtime's quant_ops.c.)
 * reference_ops::Requantize: y = clamp(MBQM(x - in_zp, M) + out_zp) with
 * M = QuantizeMultiplier((double)in_scale / (double)out_scale), for
 * int8 / uint8 / int16 on either side. */
#include <stdlib.h>

#include "ops/q_ops.h"

typedef struct qreq_state {
    mopt_dtype in_t, out_t;
    size_t n;
    int32_t in_zp, out_zp, qmin, qmax;
    mopt_requant_params rq;
} qreq_state;

static bool is_int(mopt_dtype d) { return d == MOPT_INT8 || d == MOPT_UINT8 || d == MOPT_INT16; }

static bool match_requant(const mopt_graph *g, const mopt_op *op) {
    return is_int(g->tensors[op->inputs[0]].dtype) && is_int(g->tensors[op->outputs[0]].dtype);
}

static mopt_status qreq_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                mopt_error *err) {
    qreq_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    const mopt_tensor *x = mopt_ctx_tin(ctx, 0), *y = mopt_ctx_tout(ctx, 0);
    s->in_t = x->dtype;
    s->out_t = y->dtype;
    s->n = mopt_numel(x);
    if (mopt_numel(y) != s->n)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "input and output sizes differ");
    if (x->quant.n > 1 || y->quant.n > 1)
        return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                            "per-channel requantization is not supported");
    float xs = 0.0f, ys = 0.0f;
    mopt_status st;
    if ((st = mopt_q_tensor_params(ctx, x, "input", &xs, &s->in_zp, err))) return st;
    if ((st = mopt_q_tensor_params(ctx, y, "output", &ys, &s->out_zp, err))) return st;
    mopt_q_dtype_range(y->dtype, &s->qmin, &s->qmax);
    mopt_error e;
    if (mopt_requant_params_from_real((double)xs / (double)ys, ctx->rounding, &s->rq, &e))
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "%s", e.msg);
    plan->name = "requantize_ref";
    return MOPT_OK;
}

static inline int32_t load(mopt_dtype t, const void *p, size_t i) {
    switch (t) {
    case MOPT_INT16: return ((const int16_t *)p)[i];
    case MOPT_UINT8: return ((const uint8_t *)p)[i];
    default: return ((const int8_t *)p)[i];
    }
}

static mopt_status qreq_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                             mopt_error *err) {
    (void)scratch;
    (void)err;
    const qreq_state *s = state;
    const void *x = mopt_ctx_in(ctx, 0);
    void *y = mopt_ctx_out(ctx, 0);
    for (size_t i = 0; i < s->n; i++) {
        int64_t v = (int64_t)mopt_requant(load(s->in_t, x, i) - s->in_zp, &s->rq) + s->out_zp;
        int32_t r = (int32_t)(v < s->qmin ? s->qmin : (v > s->qmax ? s->qmax : v));
        switch (s->out_t) {
        case MOPT_INT16: ((int16_t *)y)[i] = (int16_t)r; break;
        case MOPT_UINT8: ((uint8_t *)y)[i] = (uint8_t)r; break;
        default: ((int8_t *)y)[i] = (int8_t)r; break;
        }
    }
    return MOPT_OK;
}

const mopt_kernel mopt_q_quantize_kernels[] = {
    {MOPT_OP_QUANTIZE, "requantize_ref", match_requant, qreq_prepare, qreq_eval, free, 0},
};
const size_t mopt_q_quantize_kernels_n =
    sizeof mopt_q_quantize_kernels / sizeof mopt_q_quantize_kernels[0];
