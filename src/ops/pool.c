/* pool.c - float AVERAGE_POOL_2D and MAX_POOL_2D (NHWC). As in TFLite's
 * reference kernels, the average counts only the taps inside the image, and
 * the maximum starts from the lowest finite float. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "ops/ops.h"

typedef struct pool_state {
    int32_t batch, in_h, in_w, c, out_h, out_w;
    int32_t f_h, f_w, s_h, s_w, pad_top, pad_left;
    float lo, hi;
    bool avg;
} pool_state;

typedef struct pool_job {
    const pool_state *s;
    const mopt_isa *isa;
    const float *in;
    float *out;
} pool_job;

static void pool_range(void *arg, int tid, size_t begin, size_t end) {
    const pool_job *j = arg;
    const pool_state *s = j->s;
    size_t c = (size_t)s->c;
    for (size_t row = begin; row < end; row++) {
        size_t b = row / (size_t)s->out_h;
        int32_t oy = (int32_t)(row % (size_t)s->out_h);
        int32_t y0 = oy * s->s_h - s->pad_top;
        int32_t fy0 = y0 < 0 ? -y0 : 0;
        int32_t fy1 = s->in_h - y0 < s->f_h ? s->in_h - y0 : s->f_h;
        for (int32_t ox = 0; ox < s->out_w; ox++) {
            int32_t x0 = ox * s->s_w - s->pad_left;
            int32_t fx0 = x0 < 0 ? -x0 : 0;
            int32_t fx1 = s->in_w - x0 < s->f_w ? s->in_w - x0 : s->f_w;
            float *o = j->out + (row * (size_t)s->out_w + (size_t)ox) * c;
            const float init = s->avg ? 0.0f : -FLT_MAX;
            for (size_t k = 0; k < c; k++) o[k] = init;
            /* Accumulate in TFLite's tap order (rows, then columns). */
            mopt_f32_vbinary_fn acc = j->isa->vbinary_vv[s->avg ? MOPT_VOP_ADD : MOPT_VOP_MAX];
            for (int32_t fy = fy0; fy < fy1; fy++)
                for (int32_t fx = fx0; fx < fx1; fx++) {
                    const float *x =
                        j->in + ((b * (size_t)s->in_h + (size_t)(y0 + fy)) * (size_t)s->in_w +
                                 (size_t)(x0 + fx)) *
                                    c;
                    acc(c, o, x, o, -INFINITY, INFINITY);
                }
            if (s->avg) {
                int32_t count = (fy1 - fy0) * (fx1 - fx0);
                const float n = count > 0 ? (float)count : 1.0f;
                j->isa->vbinary_vs[MOPT_VOP_DIV](c, o, &n, o, s->lo, s->hi);
            } else {
                j->isa->vclamp(c, o, o, s->lo, s->hi);
            }
        }
    }
}

static mopt_status pool_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                mopt_error *err) {
    pool_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    const mopt_pool_params *p = &ctx->op->p.pool;
    mopt_status st = mopt_act_range_f32(ctx, p->act, &s->lo, &s->hi, err);
    if (st) return st;
    const mopt_tensor *x = mopt_ctx_tin(ctx, 0), *y = mopt_ctx_tout(ctx, 0);
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
    mopt_conv_out_size(p->padding, s->in_h, s->f_h, s->s_h, 1, &s->pad_top);
    mopt_conv_out_size(p->padding, s->in_w, s->f_w, s->s_w, 1, &s->pad_left);
    s->avg = ctx->op->type == MOPT_OP_AVERAGE_POOL_2D;
    return MOPT_OK;
}

static mopt_status pool_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                             mopt_error *err) {
    const pool_state *s = state;
    pool_job j = {s, ctx->isa, mopt_ctx_in(ctx, 0), mopt_ctx_out(ctx, 0)};
    size_t rows = (size_t)s->batch * (size_t)s->out_h;
    double work = (double)rows * s->out_w * s->c * s->f_h * s->f_w;
    mopt_parallel_for(work < 2e5 ? 1 : ctx->num_threads, rows, pool_range, &j);
    return MOPT_OK;
}

const mopt_kernel mopt_pool_kernels[] = {
    {MOPT_OP_AVERAGE_POOL_2D, "average_pool2d_f32", mopt_match_all_f32, pool_prepare, pool_eval,
     free, 0},
    {MOPT_OP_MAX_POOL_2D, "max_pool2d_f32", mopt_match_all_f32, pool_prepare, pool_eval, free, 0},
};
const size_t mopt_pool_kernels_n = sizeof mopt_pool_kernels / sizeof mopt_pool_kernels[0];
