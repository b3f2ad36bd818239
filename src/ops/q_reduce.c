/* q_reduce.c - integer MEAN (int8, int16) over constant axes.
 *
 * reference_ops::QuantizedMeanOrSum: raw values are summed in int32 over
 * the reduced axes, the zero point is removed as zp * count, and the sum is
 * requantized with M = QuantizeMultiplier(in_scale / out_scale) folded with
 * 1/count: shift = min(floor(log2(count)), 32, 31 + out_shift),
 * M' = (M << shift) / count (int64, truncating), out_shift' = out_shift - shift;
 * y = MBQM(sum - zp * count, M', out_shift') + out_zp, clamped. */
#include <stdlib.h>
#include <string.h>

#include "ops/q_ops.h"

typedef struct qmean_state {
    bool wide;
    int rank;
    size_t in_dims[MOPT_MAX_DIMS];
    bool reduced[MOPT_MAX_DIMS];
    size_t n_out, count;
    int32_t in_zp, out_zp, mult;
    int shift;
    mopt_rounding rounding;
    float fscale; /* FP32 mode: in_scale / out_scale / count */
} qmean_state;

static bool match_qmean(const mopt_graph *g, const mopt_op *op) {
    return mopt_q_match_io_int(g, op);
}

static mopt_status qmean_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                 mopt_error *err) {
    qmean_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    const mopt_tensor *x = mopt_ctx_tin(ctx, 0), *ax = mopt_ctx_tin(ctx, 1),
                      *y = mopt_ctx_tout(ctx, 0);
    const int32_t *axes = mopt_ctx_in(ctx, 1);
    if (!ax || ax->dtype != MOPT_INT32 || !axes)
        return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED, "axes must be a constant int32 tensor");
    s->wide = x->dtype == MOPT_INT16;
    s->rank = x->rank;
    for (int d = 0; d < x->rank; d++) s->in_dims[d] = (size_t)x->dims[d];
    size_t na = mopt_numel(ax);
    for (size_t i = 0; i < na; i++) {
        int32_t a = axes[i] < 0 ? axes[i] + x->rank : axes[i];
        if (a < 0 || a >= x->rank)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "axis %d out of range for rank %d",
                                (int)axes[i], x->rank);
        s->reduced[a] = true;
    }
    s->count = 1;
    s->n_out = 1;
    for (int d = 0; d < x->rank; d++) {
        if (s->reduced[d])
            s->count *= s->in_dims[d];
        else
            s->n_out *= s->in_dims[d];
    }
    if (mopt_numel(y) != s->n_out)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "output has %zu values, expected %zu",
                            mopt_numel(y), s->n_out);
    float xs = 0.0f, ys = 0.0f;
    int32_t xz = 0, yz = 0;
    mopt_status st;
    if ((st = mopt_q_tensor_params(ctx, x, "input", &xs, &xz, err))) return st;
    if ((st = mopt_q_tensor_params(ctx, y, "output", &ys, &yz, err))) return st;
    if (s->wide && (xz != 0 || yz != 0))
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "int16 zero points must be 0");
    s->in_zp = xz;
    s->out_zp = yz;
    s->rounding = ctx->rounding;
    int32_t m = 0;
    int sh = 0;
    if (mopt_quantize_multiplier((double)xs / (double)ys, &m, &sh) != MOPT_OK)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "bad scales");
    if (s->count > 0) {
        int fl = 63;
        while (fl > 0 && !((uint64_t)s->count >> fl)) fl--;
        int k = fl < 32 ? fl : 32;
        if (k > 31 + sh) k = 31 + sh;
        if (k < 0) k = 0;
        s->mult = (int32_t)(((int64_t)m * ((int64_t)1 << k)) / (int64_t)s->count);
        s->shift = sh - k;
        s->fscale = (float)((double)xs / (double)ys / (double)s->count);
    }
    plan->name = s->wide ? "mean_i16_ref" : "mean_i8_ref";
    return MOPT_OK;
}

static mopt_status qmean_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                              mopt_error *err) {
    (void)scratch;
    (void)err;
    const qmean_state *s = state;
    const void *xv = mopt_ctx_in(ctx, 0);
    void *yv = mopt_ctx_out(ctx, 0);
    int32_t qmin = s->wide ? -32768 : -128, qmax = s->wide ? 32767 : 127;
    /* Output strides over the kept dims. */
    size_t ostride[MOPT_MAX_DIMS], o = 1;
    for (int d = s->rank - 1; d >= 0; d--) {
        ostride[d] = s->reduced[d] ? 0 : o;
        if (!s->reduced[d]) o *= s->in_dims[d];
    }
    int32_t *sum = scratch;
    for (size_t i = 0; i < s->n_out; i++) sum[i] = 0;
    size_t idx[MOPT_MAX_DIMS] = {0}, oi = 0, n = 1;
    for (int d = 0; d < s->rank; d++) n *= s->in_dims[d];
    for (size_t i = 0; i < n; i++) {
        int32_t v = s->wide ? ((const int16_t *)xv)[i] : ((const int8_t *)xv)[i];
        sum[oi] = (int32_t)((uint32_t)sum[oi] + (uint32_t)v);
        for (int d = s->rank - 1; d >= 0; d--) {
            idx[d]++;
            oi += ostride[d];
            if (idx[d] < s->in_dims[d]) break;
            oi -= ostride[d] * idx[d];
            idx[d] = 0;
        }
    }
    for (size_t i = 0; i < s->n_out; i++) {
        int32_t r = s->out_zp;
        if (s->count > 0) {
            int32_t shifted = mopt_q_wrap32((int64_t)sum[i] - (int64_t)s->in_zp * (int64_t)s->count);
            int32_t q;
            if (s->rounding == MOPT_ROUND_SINGLE)
                q = mopt_mbqm_single(shifted, s->mult, s->shift);
            else if (s->rounding == MOPT_ROUND_FP32)
                q = mopt_requant_fp32(shifted, s->fscale);
            else
                q = mopt_mbqm_double(shifted, s->mult, s->shift);
            int64_t t = (int64_t)q + s->out_zp;
            r = (int32_t)(t < qmin ? qmin : (t > qmax ? qmax : t));
        }
        if (s->wide)
            ((int16_t *)yv)[i] = (int16_t)r;
        else
            ((int8_t *)yv)[i] = (int8_t)r;
    }
    return MOPT_OK;
}

static mopt_status qmean_prepare_scratch(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                         mopt_error *err) {
    mopt_status st = qmean_prepare(ctx, plan, err);
    if (st) return st;
    const qmean_state *s = plan->state;
    plan->scratch_bytes = (s->n_out ? s->n_out : 1) * sizeof(int32_t);
    return MOPT_OK;
}

const mopt_kernel mopt_q_reduce_kernels[] = {
    {MOPT_OP_MEAN, "mean_int_ref", match_qmean, qmean_prepare_scratch, qmean_eval, free, 0},
};
const size_t mopt_q_reduce_kernels_n = sizeof mopt_q_reduce_kernels / sizeof mopt_q_reduce_kernels[0];
