/* q_conv.c - integer CONV_2D and DEPTHWISE_CONV_2D (NHWC), int8 and 16x8.
 *
 * Arithmetic of TFLite's reference_integer_ops::ConvPerChannel and
 * DepthwiseConvPerChannel:
 *   acc = sum over in-image taps of w * (x - in_zp)   (padding contributes 0,
 *         i.e. the image is padded with the input zero point)
 *   acc += bias[oc]; y = requant(acc, oc) + out_zp; clamp to the fused
 *   activation's quantized range.
 * int8 accumulates in int32 (wrapping like the reference), 16x8 in int64
 * with an int64 (or int32) bias. Filters are per-channel (a per-tensor
 * filter scale is broadcast, as PopulateConvolutionQuantizationParams does).
 * The 16x8 DEPTHWISE reference ignores both zero points, which the int16
 * spec fixes at 0: non-zero ones are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/q_ops.h"

typedef struct qconv_state {
    bool dw, wide;
    int32_t batch, in_h, in_w, in_c, out_h, out_w, out_c;
    int32_t k_h, k_w, s_h, s_w, d_h, d_w, pad_t, pad_l;
    int32_t fin_c, groups, oc_per_group, mult;
    int32_t in_off, out_off, lo, hi;
    mopt_q_method method;
    mopt_q_chan *ch; /* out_c */
    int64_t *bias;   /* out_c (zeros when absent) */
    /* Fast int8 paths (kernels/qgemm.c): FAST_GEMM for regular
     * convolutions, FAST_DW for depthwise with multiplier 1. */
    int fast;
    mopt_qs8_gemm_job job; /* FAST_GEMM: in / finish_arg set per eval */
    mopt_conv_geom geom;
    int8_t *packed;  /* FAST_GEMM */
    int16_t *dw_w;   /* FAST_DW: [ks][cp] */
    int32_t *dw_init; /* FAST_DW: [cp] */
    int8_t *zero_row; /* FAST_DW: in_c bytes of the input zero point */
    mopt_qs8_dw_fn dw_fn;
    size_t dw_per_thread;
    mopt_q_fastrq frq;
    const mopt_qs8_isa *qisa;
    char name[96];
} qconv_state;

enum { FAST_NONE = 0, FAST_GEMM, FAST_DW };

static void qconv_free(void *p) {
    qconv_state *s = p;
    if (!s) return;
    free(s->ch);
    free(s->bias);
    free(s->packed);
    free(s->dw_w);
    free(s->dw_init);
    free(s->zero_row);
    free(s->frq.mem);
    free(s);
}

static bool match_conv8(const mopt_graph *g, const mopt_op *op) {
    const mopt_tensor *x = &g->tensors[op->inputs[0]], *w = &g->tensors[op->inputs[1]];
    const mopt_tensor *y = &g->tensors[op->outputs[0]];
    int bi = op->n_inputs > 2 ? op->inputs[2] : -1;
    return x->dtype == MOPT_INT8 && w->dtype == MOPT_INT8 && y->dtype == MOPT_INT8 &&
           (bi < 0 || g->tensors[bi].dtype == MOPT_INT32);
}

static bool match_conv16(const mopt_graph *g, const mopt_op *op) {
    const mopt_tensor *x = &g->tensors[op->inputs[0]], *w = &g->tensors[op->inputs[1]];
    const mopt_tensor *y = &g->tensors[op->outputs[0]];
    int bi = op->n_inputs > 2 ? op->inputs[2] : -1;
    return x->dtype == MOPT_INT16 && w->dtype == MOPT_INT8 && y->dtype == MOPT_INT16 &&
           (bi < 0 || g->tensors[bi].dtype == MOPT_INT64 || g->tensors[bi].dtype == MOPT_INT32);
}

mopt_status mopt_q_prepare_channels(const mopt_kernel_ctx *ctx, int n, int axis, int bias_input,
                                    mopt_q_method method, float in_s, float out_s,
                                    mopt_q_chan **ch_out, int64_t **bias_out, mopt_error *err) {
    const mopt_tensor *w = mopt_ctx_tin(ctx, 1);
    const mopt_quant *wq = &w->quant;
    if (wq->n != 1 && (wq->n != n || wq->axis != axis))
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                            "weights have %d scales along dimension %d for %d output channels "
                            "(dimension %d)",
                            wq->n, (int)wq->axis, n, axis);
    for (int i = 0; i < wq->n; i++)
        if (wq->zero_point[i] != 0 && wq->n > 1)
            return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                                "per-channel weights must be symmetric (zero point %lld)",
                                (long long)wq->zero_point[i]);
    if (n <= 0)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "%d output channels", n);
    mopt_q_chan *ch = calloc((size_t)n, sizeof *ch);
    int64_t *bias = calloc((size_t)n, sizeof *bias);
    *ch_out = ch;
    *bias_out = bias;
    if (!ch || !bias) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    for (int c = 0; c < n; c++) {
        mopt_error e;
        float ws = wq->scale[wq->n == 1 ? 0 : c];
        if (mopt_q_chan_from_scales(in_s, ws, out_s, method, &ch[c], &e) != MOPT_OK)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "output channel %d: %s", c, e.msg);
    }
    const mopt_tensor *bt = mopt_ctx_tin(ctx, bias_input);
    if (bt) {
        const void *b = mopt_ctx_in(ctx, bias_input);
        if (!b)
            return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                                "bias must be constant for integer kernels");
        if (mopt_numel(bt) != (size_t)n)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "bias has %zu values, expected %d",
                                mopt_numel(bt), n);
        for (int c = 0; c < n; c++)
            bias[c] = bt->dtype == MOPT_INT64 ? ((const int64_t *)b)[c]
                                              : (int64_t)((const int32_t *)b)[c];
    }
    return MOPT_OK;
}

static mopt_status qconv_prepare_ref(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                     mopt_error *err) {
    qconv_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    const mopt_tensor *x = mopt_ctx_tin(ctx, 0), *w = mopt_ctx_tin(ctx, 1),
                      *y = mopt_ctx_tout(ctx, 0);
    const mopt_conv_params *p = &ctx->op->p.conv;
    s->dw = ctx->op->type == MOPT_OP_DEPTHWISE_CONV_2D;
    s->wide = x->dtype == MOPT_INT16;
    if (x->rank != 4 || w->rank != 4 || y->rank != 4)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "input, filter and output must be 4-D");
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
    if (s->dw) {
        if (w->dims[0] != 1 || w->dims[3] != s->out_c || s->in_c <= 0 || s->out_c % s->in_c)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                                "depthwise filter [%d,%d,%d,%d] does not fit %d input channels",
                                (int)w->dims[0], (int)w->dims[1], (int)w->dims[2],
                                (int)w->dims[3], (int)s->in_c);
        s->mult = s->out_c / s->in_c;
    } else {
        s->fin_c = w->dims[3];
        if (w->dims[0] != s->out_c || s->fin_c <= 0 || s->in_c % s->fin_c)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                                "filter [%d,%d,%d,%d] does not fit %d input channels",
                                (int)w->dims[0], (int)w->dims[1], (int)w->dims[2],
                                (int)w->dims[3], (int)s->in_c);
        s->groups = s->in_c / s->fin_c;
        if (s->out_c % s->groups)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                                "%d output channels are not divisible into %d groups",
                                (int)s->out_c, (int)s->groups);
        s->oc_per_group = s->out_c / s->groups;
    }
    if (!mopt_ctx_in(ctx, 1))
        return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                            "filter must be constant for integer kernels");
    float in_s = 0.0f, out_s = 0.0f, ws = 0.0f;
    int32_t in_zp = 0, out_zp = 0, wzp = 0;
    mopt_status st;
    if ((st = mopt_q_tensor_params(ctx, x, "input", &in_s, &in_zp, err))) return st;
    if ((st = mopt_q_tensor_params(ctx, y, "output", &out_s, &out_zp, err))) return st;
    if ((st = mopt_q_tensor_params(ctx, w, "filter", &ws, &wzp, err))) return st;
    if (wzp != 0)
        return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                            "filter zero point %d: integer convolutions need symmetric weights",
                            (int)wzp);
    if (s->wide && s->dw && (in_zp != 0 || out_zp != 0))
        return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                            "int16 depthwise needs zero points 0 (input %d, output %d)",
                            (int)in_zp, (int)out_zp);
    s->in_off = -in_zp;
    s->out_off = out_zp;
    if ((st = mopt_q_act_range(ctx, p->act, y, &s->lo, &s->hi, err))) return st;
    mopt_q_family fam = !s->wide ? MOPT_QF_CONV8 : (s->dw ? MOPT_QF_DW16 : MOPT_QF_CONV16);
    s->method = mopt_q_method_for(fam, ctx->rounding);
    plan->name = s->dw ? (s->wide ? "depthwise_conv2d_i16x8_ref" : "depthwise_conv2d_i8_ref")
                       : (s->wide ? "conv2d_i16x8_ref" : "conv2d_i8_ref");
    return mopt_q_prepare_channels(ctx, s->out_c, s->dw ? 3 : 0, 2, s->method, in_s, out_s, &s->ch, &s->bias,
                                   err);
}

static size_t align64(size_t v) { return (v + 63) & ~(size_t)63; }

/* Packs the filter for the int8 GEMM: w [OC][KH][KW][IC] is already the
 * GEMM's [n][k] with k = KH*KW*IC in im2col order. */
static mopt_status prepare_gemm(const mopt_kernel_ctx *ctx, qconv_state *s,
                                const mopt_qs8_isa *qi, mopt_kernel_plan *plan, mopt_error *err) {
    const int8_t *w = mopt_ctx_in(ctx, 1);
    mopt_conv_geom *g = &s->geom;
    size_t m = (size_t)s->batch * (size_t)s->out_h * (size_t)s->out_w;
    const mopt_qs8_gemm_ukernel *uk = m * 2 <= (size_t)qi->gemm.mr ? &qi->gemm_row : &qi->gemm;
    size_t n = (size_t)s->out_c, k = (size_t)s->k_h * (size_t)s->k_w * (size_t)s->in_c;
    size_t kp = mopt_qs8_round_k(k);
    int32_t *init = malloc(n * sizeof *init);
    s->packed = malloc(mopt_qs8_gemm_packed_bytes(n, kp, uk->nr));
    if (!init || !s->packed) {
        free(init);
        return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    }
    mopt_q_fold_init(n, k, w, k, 1, s->bias, s->in_off, uk->u8_input, init);
    mopt_qs8_gemm_pack(n, k, kp, uk->nr, w, init, s->packed);
    free(init);
    mopt_qs8_gemm_job *j = &s->job;
    j->uk = uk;
    j->g = g;
    j->pad_value = (int8_t)(-s->in_off);
    j->m = m;
    j->n = n;
    j->k = k;
    j->kp = kp;
    /* 1x1, stride 1, no padding, depth a multiple of 4: the input pixels
     * are the GEMM rows as they are. */
    j->direct = s->k_h == 1 && s->k_w == 1 && s->s_h == 1 && s->s_w == 1 && s->pad_t == 0 &&
                s->pad_l == 0 && s->out_h == s->in_h && s->out_w == s->in_w && k == kp;
    j->packed = s->packed;
    j->finish = mopt_q_finish_i8;
    plan->scratch_bytes = mopt_qs8_gemm_scratch(j, ctx->num_threads);
    snprintf(s->name, sizeof s->name, "conv2d_i8_gemm/%s", uk->name);
    return MOPT_OK;
}

/* Depthwise multiplier 1: int16 weights [ks][cp] and folded init. */
static mopt_status prepare_dw(const mopt_kernel_ctx *ctx, qconv_state *s,
                              const mopt_qs8_isa *qi, mopt_kernel_plan *plan, mopt_error *err) {
    const int8_t *w = mopt_ctx_in(ctx, 1);
    size_t c = (size_t)s->out_c, cp = (c + 15) & ~(size_t)15;
    size_t ks = (size_t)s->k_h * (size_t)s->k_w;
    s->dw_w = calloc(ks * cp + 1, sizeof *s->dw_w); /* + 1: a 0-tap filter */
    s->dw_init = calloc(cp, sizeof *s->dw_init);
    s->zero_row = malloc(c);
    if (!s->dw_w || !s->dw_init || !s->zero_row)
        return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    for (size_t t = 0; t < ks; t++)
        for (size_t i = 0; i < c; i++) s->dw_w[t * cp + i] = w[t * c + i];
    /* Filter [1][KH][KW][C]: channel i's taps are w[t * c + i]. */
    mopt_q_fold_init(c, ks, w, 1, c, s->bias, s->in_off, 0, s->dw_init);
    memset(s->zero_row, (int8_t)(-s->in_off), c);
    s->dw_fn = qi->dw;
    s->dw_per_thread = align64(ks * sizeof(const int8_t *)) + align64(cp * sizeof(int32_t));
    plan->scratch_bytes = s->dw_per_thread * (size_t)(ctx->num_threads < 1 ? 1 : ctx->num_threads);
    snprintf(s->name, sizeof s->name, "depthwise_conv2d_i8/%s", qi->name);
    return MOPT_OK;
}

static mopt_status qconv_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                 mopt_error *err) {
    mopt_status st = qconv_prepare_ref(ctx, plan, err);
    qconv_state *s = plan->state;
    if (st != MOPT_OK || s->wide) return st;
    const mopt_qs8_isa *qi = mopt_qs8_isa_for(ctx->isa);
    mopt_conv_geom *g = &s->geom;
    *g = (mopt_conv_geom){s->batch, s->in_h, s->in_w, s->in_c, s->out_h, s->out_w, s->out_c,
                          s->k_h,   s->k_w,  s->s_h,  s->s_w,  s->d_h,   s->d_w,   s->pad_t,
                          s->pad_l};
    if (!s->dw && s->groups == 1) {
        s->fast = FAST_GEMM;
        st = prepare_gemm(ctx, s, qi, plan, err);
    } else if (s->dw && s->mult == 1) {
        s->fast = FAST_DW;
        st = prepare_dw(ctx, s, qi, plan, err);
    }
    if (st == MOPT_OK && s->fast) {
        plan->name = s->name;
        s->qisa = qi;
        if (mopt_q_fastrq_init(&s->frq, s->ch, (size_t)s->out_c, s->method, s->out_off, s->lo,
                               s->hi) < 0)
            return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    }
    return st;
}

typedef struct qconv_job {
    const qconv_state *s;
    const void *x;
    const int8_t *w;
    void *y;
} qconv_job;

static inline int32_t in_at(const qconv_state *s, const void *x, size_t i) {
    return s->wide ? (int32_t)((const int16_t *)x)[i] : (int32_t)((const int8_t *)x)[i];
}

/* One output row (b, oy) of a regular (grouped) convolution. */
static void conv_row(const qconv_job *j, int32_t b, int32_t oy) {
    const qconv_state *s = j->s;
    const int32_t y0 = oy * s->s_h - s->pad_t;
    for (int32_t ox = 0; ox < s->out_w; ox++) {
        const int32_t x0 = ox * s->s_w - s->pad_l;
        size_t obase = (((size_t)b * (size_t)s->out_h + (size_t)oy) * (size_t)s->out_w +
                        (size_t)ox) *
                       (size_t)s->out_c;
        for (int32_t oc = 0; oc < s->out_c; oc++) {
            const int32_t g = oc / s->oc_per_group;
            int64_t acc = 0;
            for (int32_t ky = 0; ky < s->k_h; ky++) {
                const int32_t iy = y0 + s->d_h * ky;
                if (iy < 0 || iy >= s->in_h) continue;
                for (int32_t kx = 0; kx < s->k_w; kx++) {
                    const int32_t ix = x0 + s->d_w * kx;
                    if (ix < 0 || ix >= s->in_w) continue;
                    size_t xi = (((size_t)b * (size_t)s->in_h + (size_t)iy) * (size_t)s->in_w +
                                 (size_t)ix) *
                                    (size_t)s->in_c +
                                (size_t)g * (size_t)s->fin_c;
                    const int8_t *wp =
                        j->w + (((size_t)oc * (size_t)s->k_h + (size_t)ky) * (size_t)s->k_w +
                                (size_t)kx) *
                                   (size_t)s->fin_c;
                    int64_t part = 0;
                    if (s->wide) {
                        const int16_t *xp = (const int16_t *)j->x + xi;
                        for (int32_t ic = 0; ic < s->fin_c; ic++)
                            part += (int64_t)wp[ic] * ((int64_t)xp[ic] + s->in_off);
                    } else {
                        const int8_t *xp = (const int8_t *)j->x + xi;
                        int32_t p32 = 0; /* |w*(x+off)| < 2^15: no overflow below 2^16 taps */
                        int32_t ic = 0;
                        for (; ic < s->fin_c; ic++) {
                            p32 += (int32_t)wp[ic] * ((int32_t)xp[ic] + s->in_off);
                            if ((ic & 0x7FFF) == 0x7FFF) {
                                part += p32;
                                p32 = 0;
                            }
                        }
                        part += p32;
                    }
                    acc += part;
                }
            }
            if (!s->wide) acc = mopt_q_wrap32(acc);
            acc += s->bias[oc];
            if (!s->wide) acc = mopt_q_wrap32(acc);
            int32_t v = mopt_q_requant(acc, &s->ch[oc], s->method);
            /* v + out_off cannot overflow int32 meaningfully: the reference
             * adds in int32; do it in int64 and saturate before the clamp
             * (identical for every non-overflowing value). */
            int64_t o = (int64_t)v + s->out_off;
            int32_t r = o > s->hi ? s->hi : (o < s->lo ? s->lo : (int32_t)o);
            if (s->wide)
                ((int16_t *)j->y)[obase + (size_t)oc] = (int16_t)r;
            else
                ((int8_t *)j->y)[obase + (size_t)oc] = (int8_t)r;
        }
    }
}

static void dw_row(const qconv_job *j, int32_t b, int32_t oy) {
    const qconv_state *s = j->s;
    const int32_t y0 = oy * s->s_h - s->pad_t;
    for (int32_t ox = 0; ox < s->out_w; ox++) {
        const int32_t x0 = ox * s->s_w - s->pad_l;
        size_t obase = (((size_t)b * (size_t)s->out_h + (size_t)oy) * (size_t)s->out_w +
                        (size_t)ox) *
                       (size_t)s->out_c;
        for (int32_t ic = 0; ic < s->in_c; ic++) {
            for (int32_t m = 0; m < s->mult; m++) {
                const int32_t oc = ic * s->mult + m;
                int64_t acc = 0;
                for (int32_t ky = 0; ky < s->k_h; ky++) {
                    const int32_t iy = y0 + s->d_h * ky;
                    if (iy < 0 || iy >= s->in_h) continue;
                    for (int32_t kx = 0; kx < s->k_w; kx++) {
                        const int32_t ix = x0 + s->d_w * kx;
                        if (ix < 0 || ix >= s->in_w) continue;
                        size_t xi =
                            (((size_t)b * (size_t)s->in_h + (size_t)iy) * (size_t)s->in_w +
                             (size_t)ix) *
                                (size_t)s->in_c +
                            (size_t)ic;
                        int32_t wv = j->w[((size_t)ky * (size_t)s->k_w + (size_t)kx) *
                                              (size_t)s->out_c +
                                          (size_t)oc];
                        acc += (int64_t)wv * ((int64_t)in_at(s, j->x, xi) + s->in_off);
                    }
                }
                if (!s->wide) acc = mopt_q_wrap32(acc);
                acc += s->bias[oc];
                if (!s->wide) acc = mopt_q_wrap32(acc);
                int32_t v = mopt_q_requant(acc, &s->ch[oc], s->method);
                int64_t o = (int64_t)v + s->out_off;
                int32_t r = o > s->hi ? s->hi : (o < s->lo ? s->lo : (int32_t)o);
                if (s->wide)
                    ((int16_t *)j->y)[obase + (size_t)oc] = (int16_t)r;
                else
                    ((int8_t *)j->y)[obase + (size_t)oc] = (int8_t)r;
            }
        }
    }
}

static void qconv_range(void *arg, int tid, size_t begin, size_t end) {
    (void)tid;
    const qconv_job *j = arg;
    for (size_t r = begin; r < end; r++) {
        int32_t b = (int32_t)(r / (size_t)j->s->out_h), oy = (int32_t)(r % (size_t)j->s->out_h);
        if (j->s->dw)
            dw_row(j, b, oy);
        else
            conv_row(j, b, oy);
    }
}

typedef struct qdw_job {
    const qconv_state *s;
    const int8_t *x;
    int8_t *y;
    char *scratch;
} qdw_job;

static void qdw_range(void *arg, int tid, size_t begin, size_t end) {
    const qdw_job *j = arg;
    const qconv_state *s = j->s;
    const int8_t **ind = (const int8_t **)(void *)(j->scratch + (size_t)tid * s->dw_per_thread);
    size_t ks = (size_t)s->k_h * (size_t)s->k_w, c = (size_t)s->out_c;
    int32_t *acc = (int32_t *)(void *)(j->scratch + (size_t)tid * s->dw_per_thread +
                                       align64(ks * sizeof *ind));
    mopt_q_out8 o = {s->ch, s->method, s->out_off, s->lo, s->hi, NULL, c,
                     s->frq.mem ? &s->frq.rq : NULL, s->qisa->requant};
    for (size_t r = begin; r < end; r++) {
        size_t b = r / (size_t)s->out_h;
        int32_t oy = (int32_t)(r % (size_t)s->out_h), y0 = oy * s->s_h - s->pad_t;
        for (int32_t ox = 0; ox < s->out_w; ox++) {
            int32_t x0 = ox * s->s_w - s->pad_l;
            size_t t = 0;
            for (int32_t ky = 0; ky < s->k_h; ky++) {
                int32_t iy = y0 + s->d_h * ky;
                for (int32_t kx = 0; kx < s->k_w; kx++, t++) {
                    int32_t ix = x0 + s->d_w * kx;
                    ind[t] = (iy < 0 || iy >= s->in_h || ix < 0 || ix >= s->in_w)
                                 ? s->zero_row
                                 : j->x + ((b * (size_t)s->in_h + (size_t)iy) * (size_t)s->in_w +
                                           (size_t)ix) *
                                              c;
                }
            }
            s->dw_fn(c, ks, ind, s->dw_w, s->dw_init, acc);
            o.y = j->y + (r * (size_t)s->out_w + (size_t)ox) * c;
            mopt_q_finish_i8(&o, 0, 1, 0, c, acc, c);
        }
    }
}

static mopt_status qconv_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                              mopt_error *err) {
    (void)err;
    const qconv_state *s = state;
    if (s->fast == FAST_GEMM) {
        mopt_qs8_gemm_job j = s->job;
        mopt_q_out8 o = {s->ch,
                         s->method,
                         s->out_off,
                         s->lo,
                         s->hi,
                         mopt_ctx_out(ctx, 0),
                         (size_t)s->out_c,
                         s->frq.mem ? &s->frq.rq : NULL,
                         s->qisa->requant};
        j.in = mopt_ctx_in(ctx, 0);
        j.finish_arg = &o;
        mopt_qs8_gemm_run(&j, scratch, ctx->num_threads);
        return MOPT_OK;
    }
    if (s->fast == FAST_DW) {
        qdw_job j = {s, mopt_ctx_in(ctx, 0), mopt_ctx_out(ctx, 0), scratch};
        size_t rows = (size_t)s->batch * (size_t)s->out_h;
        double work = (double)rows * (double)s->out_w * (double)s->out_c * s->k_h * s->k_w;
        mopt_parallel_for(work < 2e5 ? 1 : ctx->num_threads, rows, qdw_range, &j);
        return MOPT_OK;
    }
    qconv_job j = {s, mopt_ctx_in(ctx, 0), mopt_ctx_in(ctx, 1), mopt_ctx_out(ctx, 0)};
    size_t rows = (size_t)s->batch * (size_t)s->out_h;
    mopt_parallel_for(ctx->num_threads, rows, qconv_range, &j);
    return MOPT_OK;
}

const mopt_kernel mopt_q_conv_kernels[] = {
    {MOPT_OP_CONV_2D, "conv2d_i8_ref", match_conv8, qconv_prepare, qconv_eval, qconv_free, 0},
    {MOPT_OP_CONV_2D, "conv2d_i16x8_ref", match_conv16, qconv_prepare, qconv_eval, qconv_free,
     0},
    {MOPT_OP_DEPTHWISE_CONV_2D, "depthwise_conv2d_i8_ref", match_conv8, qconv_prepare, qconv_eval,
     qconv_free, 0},
    {MOPT_OP_DEPTHWISE_CONV_2D, "depthwise_conv2d_i16x8_ref", match_conv16, qconv_prepare,
     qconv_eval, qconv_free, 0},
};
const size_t mopt_q_conv_kernels_n = sizeof mopt_q_conv_kernels / sizeof mopt_q_conv_kernels[0];

const mopt_kernel mopt_q_conv_ref_kernels[] = {
    {MOPT_OP_CONV_2D, "conv2d_i8_ref", match_conv8, qconv_prepare_ref, qconv_eval, qconv_free,
     0},
    {MOPT_OP_DEPTHWISE_CONV_2D, "depthwise_conv2d_i8_ref", match_conv8, qconv_prepare_ref,
     qconv_eval, qconv_free, 0},
};
const size_t mopt_q_conv_ref_kernels_n =
    sizeof mopt_q_conv_ref_kernels / sizeof mopt_q_conv_ref_kernels[0];
