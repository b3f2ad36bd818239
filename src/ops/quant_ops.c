/* quant_ops.c - float side of QUANTIZE and DEQUANTIZE.
 *
 * DEQUANTIZE: float16 -> float32 exactly; int8/uint8/int16 -> float32 as
 *   scale * (q - zero_point), computed in double and rounded once, which is
 *   exactly TFLite's per-tensor (double) and per-axis (float) results: the
 *   product of a float and an integer below 2^17 is exact in double.
 * QUANTIZE: float32 -> int8/uint8/int16 as TFLite's reference AffineQuantize:
 *   q = clamp(zp + round_half_away(x / scale)), the division in float. */
#include <math.h>
#include <stdlib.h>

#include "mopt/qmath.h"
#include "ops/ops.h"

typedef struct q_state {
    mopt_dtype qtype; /* the integer side */
    size_t n, inner, channels;
    int per_axis;
    const float *scale; /* graph-owned quant arrays */
    const int64_t *zp;
} q_state;

static bool is_int_q(mopt_dtype d) { return d == MOPT_INT8 || d == MOPT_UINT8 || d == MOPT_INT16; }

static bool match_dequant(const mopt_graph *g, const mopt_op *op) {
    mopt_dtype x = g->tensors[op->inputs[0]].dtype, y = g->tensors[op->outputs[0]].dtype;
    return y == MOPT_FLOAT32 && (x == MOPT_FLOAT16 || is_int_q(x));
}

static bool match_quant(const mopt_graph *g, const mopt_op *op) {
    mopt_dtype x = g->tensors[op->inputs[0]].dtype, y = g->tensors[op->outputs[0]].dtype;
    return x == MOPT_FLOAT32 && is_int_q(y);
}

static mopt_status q_prepare_common(const mopt_kernel_ctx *ctx, const mopt_tensor *qt,
                                    mopt_kernel_plan *plan, mopt_error *err) {
    q_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    s->qtype = qt->dtype;
    s->n = mopt_numel(qt);
    if (qt->dtype == MOPT_FLOAT16) return MOPT_OK;
    const mopt_quant *q = &qt->quant; /* n >= 1: checked by validation */
    s->scale = q->scale;
    s->zp = q->zero_point;
    s->per_axis = q->n > 1;
    s->channels = 1;
    s->inner = 1;
    if (s->per_axis) {
        s->channels = (size_t)qt->dims[q->axis];
        for (int d = q->axis + 1; d < qt->rank; d++) s->inner *= (size_t)qt->dims[d];
    }
    for (int i = 0; i < q->n; i++)
        if (!(q->scale[i] > 0.0f) && ctx->op->type == MOPT_OP_QUANTIZE)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "output scale %d is %g, must be > 0",
                                i, (double)q->scale[i]);
    return MOPT_OK;
}

static mopt_status dequant_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                   mopt_error *err) {
    plan->name =
        mopt_ctx_tin(ctx, 0)->dtype == MOPT_FLOAT16 ? "dequantize_f16_f32" : "dequantize_int_f32";
    return q_prepare_common(ctx, mopt_ctx_tin(ctx, 0), plan, err);
}

static mopt_status quant_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                 mopt_error *err) {
    return q_prepare_common(ctx, mopt_ctx_tout(ctx, 0), plan, err);
}

static inline size_t chan(const q_state *s, size_t i) {
    return s->per_axis ? (i / s->inner) % s->channels : 0;
}

static mopt_status dequant_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                                mopt_error *err) {
    const q_state *s = state;
    const void *x = mopt_ctx_in(ctx, 0);
    float *y = mopt_ctx_out(ctx, 0);
    size_t n = s->n;
    switch (s->qtype) {
    case MOPT_FLOAT16: {
        const uint16_t *h = x;
        for (size_t i = 0; i < n; i++) y[i] = mopt_half_to_float(h[i]);
        break;
    }
    case MOPT_INT8: {
        const int8_t *q = x;
        for (size_t i = 0; i < n; i++) {
            size_t c = chan(s, i);
            y[i] = (float)((double)s->scale[c] * (double)((int64_t)q[i] - s->zp[c]));
        }
        break;
    }
    case MOPT_UINT8: {
        const uint8_t *q = x;
        for (size_t i = 0; i < n; i++) {
            size_t c = chan(s, i);
            y[i] = (float)((double)s->scale[c] * (double)((int64_t)q[i] - s->zp[c]));
        }
        break;
    }
    default: { /* INT16 */
        const int16_t *q = x;
        for (size_t i = 0; i < n; i++) {
            size_t c = chan(s, i);
            y[i] = (float)((double)s->scale[c] * (double)((int64_t)q[i] - s->zp[c]));
        }
        break;
    }
    }
    return MOPT_OK;
}

/* zp + round(x / scale) clamped to [qmin, qmax]. The rounded quotient is
 * clamped in float first, so huge values and NaN never reach an int cast
 * (NaN maps to the zero point). */
static inline int32_t quantize1(float x, float scale, int64_t zp, int32_t qmin, int32_t qmax) {
    float r = roundf(x / scale);
    if (r != r) r = 0.0f;
    float lo = (float)((int64_t)qmin - zp) - 1.0f, hi = (float)((int64_t)qmax - zp) + 1.0f;
    r = r < lo ? lo : (r > hi ? hi : r);
    int64_t v = (int64_t)r + zp;
    return (int32_t)(v < qmin ? qmin : (v > qmax ? qmax : v));
}

static mopt_status quant_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                              mopt_error *err) {
    const q_state *s = state;
    const float *x = mopt_ctx_in(ctx, 0);
    void *y = mopt_ctx_out(ctx, 0);
    size_t n = s->n;
    switch (s->qtype) {
    case MOPT_INT8: {
        int8_t *q = y;
        for (size_t i = 0; i < n; i++) {
            size_t c = chan(s, i);
            q[i] = (int8_t)quantize1(x[i], s->scale[c], s->zp[c], -128, 127);
        }
        break;
    }
    case MOPT_UINT8: {
        uint8_t *q = y;
        for (size_t i = 0; i < n; i++) {
            size_t c = chan(s, i);
            q[i] = (uint8_t)quantize1(x[i], s->scale[c], s->zp[c], 0, 255);
        }
        break;
    }
    default: { /* INT16 */
        int16_t *q = y;
        for (size_t i = 0; i < n; i++) {
            size_t c = chan(s, i);
            q[i] = (int16_t)quantize1(x[i], s->scale[c], s->zp[c], -32768, 32767);
        }
        break;
    }
    }
    return MOPT_OK;
}

const mopt_kernel mopt_quant_kernels[] = {
    {MOPT_OP_DEQUANTIZE, "dequantize_f32", match_dequant, dequant_prepare, dequant_eval, free, 0},
    {MOPT_OP_QUANTIZE, "quantize_f32", match_quant, quant_prepare, quant_eval, free, 0},
};
const size_t mopt_quant_kernels_n = sizeof mopt_quant_kernels / sizeof mopt_quant_kernels[0];
