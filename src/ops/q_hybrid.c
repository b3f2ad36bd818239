/* q_hybrid.c - dynamic-range ("hybrid") CONV_2D, DEPTHWISE_CONV_2D and
 * FULLY_CONNECTED: float activations, int8 symmetric weights, float bias.
 *
 * As TFLite's hybrid kernels (fully_connected.cc EvalHybridDense,
 * conv.cc EvalHybridPerChannel, depthwise_conv.cc EvalHybridPerChannel with
 * the reference integer loops):
 *  - FULLY_CONNECTED quantizes each input row at run time, symmetrically
 *    (scale max|x| / 127, values in [-127, 127]) or, with
 *    asymmetric_quantize_inputs, asymmetrically (PortableAsymmetricQuantize-
 *    Floats); then y = bias + (float)(dot - row_sum(w) * zp) * (s_x * s_w[u])
 *    and the fused activation in float.
 *  - CONV_2D / DEPTHWISE quantize the whole image of each batch
 *    asymmetrically; acc = sum over in-image taps of w * (q - zp);
 *    CONV: y = (float)acc * s_w[oc] * s_x + bias, DEPTHWISE:
 *    y = (float)acc * (s_w[oc] * s_x) + bias (the two references group the
 *    products differently), then the activation in float.
 * Per-tensor CONV_2D filters take TFLite's optimized HybridConv (symmetric
 * input, im2col GEMM); mopt computes the same products with the reference
 * loop, so its results can differ in the last float bits there.
 * Float results depend on the order of float operations, so hybrid outputs
 * are compared with a tolerance (docs/INTEGER_KERNELS.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/q_ops.h"

typedef struct qhyb_state {
    int kind;
    bool asym, per_tensor_conv;
    /* FC */
    size_t rows, depth, units;
    /* conv / depthwise */
    int32_t batch, in_h, in_w, in_c, out_h, out_w, out_c;
    int32_t k_h, k_w, s_h, s_w, d_h, d_w, pad_t, pad_l, mult;
    float lo, hi;
    float *wscale;   /* per output channel */
    int32_t *rowsum; /* FC: per unit, sum of weights */
    size_t per_batch; /* elements quantized together */
} qhyb_state;

static void qhyb_free(void *p) {
    qhyb_state *s = p;
    if (!s) return;
    free(s->wscale);
    free(s->rowsum);
    free(s);
}

static bool match_hybrid(const mopt_graph *g, const mopt_op *op) {
    int bi = op->n_inputs > 2 ? op->inputs[2] : -1;
    return g->tensors[op->inputs[0]].dtype == MOPT_FLOAT32 &&
           g->tensors[op->inputs[1]].dtype == MOPT_INT8 &&
           g->tensors[op->outputs[0]].dtype == MOPT_FLOAT32 &&
           (bi < 0 || g->tensors[bi].dtype == MOPT_FLOAT32);
}

static mopt_status qhyb_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                mopt_error *err) {
    qhyb_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    s->kind = ctx->op->type;
    const mopt_tensor *x = mopt_ctx_tin(ctx, 0), *w = mopt_ctx_tin(ctx, 1),
                      *y = mopt_ctx_tout(ctx, 0), *b = mopt_ctx_tin(ctx, 2);
    const int8_t *wd = mopt_ctx_in(ctx, 1);
    if (!wd)
        return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED, "hybrid weights must be constant");
    if (b && !mopt_ctx_in(ctx, 2))
        return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED, "hybrid bias must be constant");
    const mopt_quant *wq = &w->quant;
    if (wq->n < 1)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "weights are not quantized");
    for (int i = 0; i < wq->n; i++) {
        if (!isfinite(wq->scale[i]) || !(wq->scale[i] > 0.0f))
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "weight scale %d is %g", i,
                                (double)wq->scale[i]);
        if (wq->zero_point[i] != 0)
            return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                                "hybrid weights must be symmetric (zero point %lld)",
                                (long long)wq->zero_point[i]);
    }
    mopt_activation act =
        s->kind == MOPT_OP_FULLY_CONNECTED ? ctx->op->p.fc.act : ctx->op->p.conv.act;
    mopt_status st = mopt_act_range_f32(ctx, act, &s->lo, &s->hi, err);
    if (st) return st;
    int n_oc;
    if (s->kind == MOPT_OP_FULLY_CONNECTED) {
        if (w->rank != 2 || w->dims[1] <= 0)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "weights must be [units, depth]");
        s->units = (size_t)w->dims[0];
        s->depth = (size_t)w->dims[1];
        if (mopt_numel(x) % s->depth || mopt_numel(y) != mopt_numel(x) / s->depth * s->units)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "input / output sizes do not fit");
        s->rows = mopt_numel(x) / s->depth;
        s->asym = ctx->op->p.fc.asymmetric_quantize_inputs;
        s->per_batch = s->depth;
        n_oc = (int)s->units;
        s->rowsum = calloc(s->units ? s->units : 1, sizeof *s->rowsum);
        if (!s->rowsum) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
        for (size_t u = 0; u < s->units; u++) {
            int32_t r = 0;
            for (size_t d = 0; d < s->depth; d++) r += wd[u * s->depth + d];
            s->rowsum[u] = r;
        }
        plan->name = s->asym ? "fully_connected_hybrid_asym" : "fully_connected_hybrid";
    } else {
        const mopt_conv_params *p = &ctx->op->p.conv;
        if (x->rank != 4 || w->rank != 4 || y->rank != 4)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "tensors must be 4-D");
        s->batch = x->dims[0];
        s->in_h = x->dims[1];
        s->in_w = x->dims[2];
        s->in_c = x->dims[3];
        s->out_h = y->dims[1];
        s->out_w = y->dims[2];
        s->out_c = y->dims[3];
        s->k_h = w->dims[1];
        s->k_w = w->dims[2];
        s->s_h = p->stride_h;
        s->s_w = p->stride_w;
        s->d_h = p->dilation_h;
        s->d_w = p->dilation_w;
        mopt_conv_out_size(p->padding, s->in_h, s->k_h, s->s_h, s->d_h, &s->pad_t);
        mopt_conv_out_size(p->padding, s->in_w, s->k_w, s->s_w, s->d_w, &s->pad_l);
        if (s->kind == MOPT_OP_CONV_2D) {
            if (w->dims[0] != s->out_c || w->dims[3] != s->in_c)
                return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                                    "hybrid CONV_2D needs filter [%d,KH,KW,%d] (no groups)",
                                    (int)s->out_c, (int)s->in_c);
            s->per_tensor_conv = wq->n == 1;
        } else {
            if (w->dims[0] != 1 || w->dims[3] != s->out_c || s->in_c <= 0 ||
                s->out_c % s->in_c)
                return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                                    "depthwise filter does not fit the input");
            s->mult = s->out_c / s->in_c;
        }
        s->per_batch = (size_t)s->in_h * (size_t)s->in_w * (size_t)s->in_c;
        n_oc = (int)s->out_c;
        plan->name = s->kind == MOPT_OP_CONV_2D ? "conv2d_hybrid_ref" : "depthwise_conv2d_hybrid_ref";
    }
    if (wq->n != 1 && wq->n != n_oc)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "%d weight scales for %d channels",
                            wq->n, n_oc);
    s->wscale = malloc(sizeof *s->wscale * (size_t)(n_oc > 0 ? n_oc : 1));
    if (!s->wscale) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    for (int c = 0; c < n_oc; c++) s->wscale[c] = wq->scale[wq->n == 1 ? 0 : c];
    /* Scratch: quantized input, then one (scale, offset) pair per row. */
    size_t nq = s->kind == MOPT_OP_FULLY_CONNECTED ? s->rows * s->depth
                                                    : (size_t)s->batch * s->per_batch;
    size_t nrows = s->kind == MOPT_OP_FULLY_CONNECTED ? s->rows : (size_t)s->batch;
    plan->scratch_bytes = ((nq + 15) & ~(size_t)15) + nrows * (sizeof(float) + sizeof(int32_t)) + 16;
    return MOPT_OK;
}

static inline float clampf(float v, float lo, float hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

static void hybrid_fc(const qhyb_state *s, const float *x, const int8_t *w, const float *bias,
                      float *y, int8_t *q, float *sf, int32_t *zp) {
    for (size_t r = 0; r < s->rows; r++) {
        if (s->asym)
            mopt_q_asymmetric_quantize_row(x + r * s->depth, s->depth, q + r * s->depth, &sf[r],
                                           &zp[r]);
        else {
            mopt_q_symmetric_quantize_row(x + r * s->depth, s->depth, q + r * s->depth, &sf[r]);
            zp[r] = 0;
        }
    }
    for (size_t r = 0; r < s->rows; r++) {
        const int8_t *qr = q + r * s->depth;
        for (size_t u = 0; u < s->units; u++) {
            const int8_t *wr = w + u * s->depth;
            int32_t dot = 0;
            for (size_t d = 0; d < s->depth; d++) dot += (int32_t)wr[d] * (int32_t)qr[d];
            dot = mopt_q_wrap32((int64_t)dot - (int64_t)s->rowsum[u] * zp[r]);
            /* Per-tensor: the kernel folds the weight scale into the row
             * scale first; per-channel multiplies it in per unit. Both are
             * the same binary32 product sf * s_w. */
            const float scale = sf[r] * s->wscale[u];
            float acc = bias ? bias[u] : 0.0f;
            acc += (float)dot * scale;
            y[r * s->units + u] = clampf(acc, s->lo, s->hi);
        }
    }
}

static void hybrid_conv(const qhyb_state *s, const float *x, const int8_t *w, const float *bias,
                        float *y, int8_t *q, float *sf, int32_t *zp) {
    const bool dw = s->kind == MOPT_OP_DEPTHWISE_CONV_2D;
    for (int32_t b = 0; b < s->batch; b++) {
        const float *xb = x + (size_t)b * s->per_batch;
        int8_t *qb = q + (size_t)b * s->per_batch;
        if (s->per_tensor_conv) {
            mopt_q_symmetric_quantize_row(xb, s->per_batch, qb, &sf[b]);
            zp[b] = 0;
        } else {
            mopt_q_asymmetric_quantize_row(xb, s->per_batch, qb, &sf[b], &zp[b]);
        }
    }
    const size_t C = (size_t)s->in_c;
    for (int32_t b = 0; b < s->batch; b++)
        for (int32_t oy = 0; oy < s->out_h; oy++)
            for (int32_t ox = 0; ox < s->out_w; ox++) {
                const int32_t y0 = oy * s->s_h - s->pad_t, x0 = ox * s->s_w - s->pad_l;
                float *yo = y + (((size_t)b * (size_t)s->out_h + (size_t)oy) * (size_t)s->out_w +
                                 (size_t)ox) *
                                    (size_t)s->out_c;
                for (int32_t oc = 0; oc < s->out_c; oc++) {
                    const int32_t ic0 = dw ? oc / s->mult : 0;
                    int32_t acc = 0;
                    for (int32_t ky = 0; ky < s->k_h; ky++) {
                        const int32_t iy = y0 + s->d_h * ky;
                        if (iy < 0 || iy >= s->in_h) continue;
                        for (int32_t kx = 0; kx < s->k_w; kx++) {
                            const int32_t ix = x0 + s->d_w * kx;
                            if (ix < 0 || ix >= s->in_w) continue;
                            const int8_t *qp =
                                q + (((size_t)b * (size_t)s->in_h + (size_t)iy) * (size_t)s->in_w +
                                     (size_t)ix) *
                                        C;
                            if (dw) {
                                int32_t wv = w[((size_t)ky * (size_t)s->k_w + (size_t)kx) *
                                                   (size_t)s->out_c +
                                               (size_t)oc];
                                acc += wv * ((int32_t)qp[ic0] - zp[b]);
                            } else {
                                const int8_t *wp =
                                    w + (((size_t)oc * (size_t)s->k_h + (size_t)ky) *
                                             (size_t)s->k_w +
                                         (size_t)kx) *
                                            C;
                                for (size_t ic = 0; ic < C; ic++)
                                    acc += (int32_t)wp[ic] * ((int32_t)qp[ic] - zp[b]);
                            }
                        }
                    }
                    float v;
                    if (dw)
                        v = (float)acc * (s->wscale[oc] * sf[b]);
                    else if (s->per_tensor_conv)
                        v = (float)acc * (sf[b] * s->wscale[oc]);
                    else
                        v = (float)acc * s->wscale[oc] * sf[b];
                    if (bias) v += bias[oc];
                    yo[oc] = clampf(v, s->lo, s->hi);
                }
            }
}

static mopt_status qhyb_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                             mopt_error *err) {
    (void)err;
    const qhyb_state *s = state;
    size_t nq = s->kind == MOPT_OP_FULLY_CONNECTED ? s->rows * s->depth
                                                    : (size_t)s->batch * s->per_batch;
    size_t nrows = s->kind == MOPT_OP_FULLY_CONNECTED ? s->rows : (size_t)s->batch;
    int8_t *q = scratch;
    float *sf = (float *)(void *)((unsigned char *)scratch + ((nq + 15) & ~(size_t)15));
    int32_t *zp = (int32_t *)(void *)(sf + nrows);
    const float *x = mopt_ctx_in(ctx, 0);
    const int8_t *w = mopt_ctx_in(ctx, 1);
    const float *bias = mopt_ctx_in(ctx, 2);
    float *y = mopt_ctx_out(ctx, 0);
    if (s->kind == MOPT_OP_FULLY_CONNECTED)
        hybrid_fc(s, x, w, bias, y, q, sf, zp);
    else
        hybrid_conv(s, x, w, bias, y, q, sf, zp);
    return MOPT_OK;
}

const mopt_kernel mopt_q_hybrid_kernels[] = {
    {MOPT_OP_FULLY_CONNECTED, "fully_connected_hybrid", match_hybrid, qhyb_prepare, qhyb_eval,
     qhyb_free, 0},
    {MOPT_OP_CONV_2D, "conv2d_hybrid_ref", match_hybrid, qhyb_prepare, qhyb_eval, qhyb_free, 0},
    {MOPT_OP_DEPTHWISE_CONV_2D, "depthwise_conv2d_hybrid_ref", match_hybrid, qhyb_prepare,
     qhyb_eval, qhyb_free, 0},
};
const size_t mopt_q_hybrid_kernels_n = sizeof mopt_q_hybrid_kernels / sizeof mopt_q_hybrid_kernels[0];
