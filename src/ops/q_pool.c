/* q_pool.c - integer AVERAGE_POOL_2D and MAX_POOL_2D (int8, int16), NHWC.
 *
 * reference_integer_ops::AveragePool / MaxPool: input and output share
 * scale and zero point (the spec), so the kernels work on the raw integers:
 * the average sums the in-image taps (int64) and divides by their count,
 * rounding half away from zero ((sum +- count/2) / count, C division); the
 * maximum starts from the type's lowest value. Both then clamp to the fused
 * activation's quantized range. */
#include <math.h>
#include <stdlib.h>

#include "ops/q_ops.h"

typedef struct qpool_state {
    bool avg, wide;
    int32_t batch, in_h, in_w, c, out_h, out_w;
    int32_t f_h, f_w, s_h, s_w, pad_t, pad_l;
    int32_t lo, hi;
} qpool_state;

static mopt_status qpool_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                 mopt_error *err) {
    qpool_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    const mopt_tensor *x = mopt_ctx_tin(ctx, 0), *y = mopt_ctx_tout(ctx, 0);
    const mopt_pool_params *p = &ctx->op->p.pool;
    if (x->rank != 4 || y->rank != 4 || x->dims[3] != y->dims[3] || x->dims[0] != y->dims[0])
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "input and output must be NHWC alike");
    s->avg = ctx->op->type == MOPT_OP_AVERAGE_POOL_2D;
    s->wide = x->dtype == MOPT_INT16;
    s->batch = x->dims[0];
    s->in_h = x->dims[1];
    s->in_w = x->dims[2];
    s->c = x->dims[3];
    s->out_h = y->dims[1];
    s->out_w = y->dims[2];
    s->f_h = p->filter_h;
    s->f_w = p->filter_w;
    s->s_h = p->stride_h;
    s->s_w = p->stride_w;
    mopt_conv_out_size(p->padding, s->in_h, s->f_h, s->s_h, 1, &s->pad_t);
    mopt_conv_out_size(p->padding, s->in_w, s->f_w, s->s_w, 1, &s->pad_l);
    float xs = 0.0f, ys = 0.0f;
    int32_t xz = 0, yz = 0;
    mopt_status st;
    if ((st = mopt_q_tensor_params(ctx, x, "input", &xs, &xz, err))) return st;
    if ((st = mopt_q_tensor_params(ctx, y, "output", &ys, &yz, err))) return st;
    /* The kernel does not rescale: unequal parameters would silently give
     * wrong values (TFLite checks the same, to 1e-6). */
    if (xz != yz || fabsf(xs - ys) > 1e-6f)
        return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                            "input (%g, %d) and output (%g, %d) quantization must be equal",
                            (double)xs, (int)xz, (double)ys, (int)yz);
    plan->name = s->avg ? (s->wide ? "average_pool2d_i16_ref" : "average_pool2d_i8_ref")
                        : (s->wide ? "max_pool2d_i16_ref" : "max_pool2d_i8_ref");
    return mopt_q_act_range(ctx, p->act, y, &s->lo, &s->hi, err);
}

static mopt_status qpool_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                              mopt_error *err) {
    (void)scratch;
    const qpool_state *s = state;
    const void *xin = mopt_ctx_in(ctx, 0);
    void *yout = mopt_ctx_out(ctx, 0);
    const size_t C = (size_t)s->c;
    for (int32_t b = 0; b < s->batch; b++)
        for (int32_t oy = 0; oy < s->out_h; oy++)
            for (int32_t ox = 0; ox < s->out_w; ox++) {
                const int32_t y0 = oy * s->s_h - s->pad_t, x0 = ox * s->s_w - s->pad_l;
                const int32_t fy0 = y0 < 0 ? -y0 : 0, fx0 = x0 < 0 ? -x0 : 0;
                const int32_t fy1 = s->in_h - y0 < s->f_h ? s->in_h - y0 : s->f_h;
                const int32_t fx1 = s->in_w - x0 < s->f_w ? s->in_w - x0 : s->f_w;
                const int32_t count = (fy1 - fy0) * (fx1 - fx0);
                if (fy1 <= fy0 || fx1 <= fx0)
                    return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                                        "pooling window at output (%d, %d) covers no input",
                                        (int)oy, (int)ox);
                size_t obase =
                    (((size_t)b * (size_t)s->out_h + (size_t)oy) * (size_t)s->out_w + (size_t)ox) *
                    C;
                for (size_t c = 0; c < C; c++) {
                    int64_t acc = 0;
                    int32_t mx = s->wide ? -32768 : -128;
                    for (int32_t fy = fy0; fy < fy1; fy++)
                        for (int32_t fx = fx0; fx < fx1; fx++) {
                            size_t i = (((size_t)b * (size_t)s->in_h + (size_t)(y0 + fy)) *
                                            (size_t)s->in_w +
                                        (size_t)(x0 + fx)) *
                                           C +
                                       c;
                            int32_t v = s->wide ? ((const int16_t *)xin)[i]
                                                : ((const int8_t *)xin)[i];
                            acc += v;
                            if (v > mx) mx = v;
                        }
                    int64_t r;
                    if (s->avg)
                        r = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    else
                        r = mx;
                    r = r < s->lo ? s->lo : (r > s->hi ? s->hi : r);
                    if (s->wide)
                        ((int16_t *)yout)[obase + c] = (int16_t)r;
                    else
                        ((int8_t *)yout)[obase + c] = (int8_t)r;
                }
            }
    return MOPT_OK;
}

const mopt_kernel mopt_q_pool_kernels[] = {
    {MOPT_OP_AVERAGE_POOL_2D, "average_pool2d_int_ref", mopt_q_match_all_int, qpool_prepare,
     qpool_eval, free, 0},
    {MOPT_OP_MAX_POOL_2D, "max_pool2d_int_ref", mopt_q_match_all_int, qpool_prepare, qpool_eval,
     free, 0},
};
const size_t mopt_q_pool_kernels_n = sizeof mopt_q_pool_kernels / sizeof mopt_q_pool_kernels[0];
