/* conv.c - float CONV_2D (indirect GEMM over packed weights) and
 * DEPTHWISE_CONV_2D (direct, channel-vectorized). NHWC, TFLite padding. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

void mopt_gemm_op_free(void *p) {
    mopt_gemm_op_state *s = p;
    if (!s) return;
    free(s->packed);
    free(s->zero);
    free(s->ind);
    free(s);
}

bool mopt_match_gemm_f32(const mopt_graph *g, const mopt_op *op) {
    return mopt_match_all_f32(g, op);
}

/* Geometry shared by CONV_2D and DEPTHWISE_CONV_2D. */
static void conv_geom(const mopt_kernel_ctx *ctx, mopt_conv_geom *cg) {
    const mopt_tensor *x = mopt_ctx_tin(ctx, 0), *w = mopt_ctx_tin(ctx, 1),
                      *y = mopt_ctx_tout(ctx, 0);
    const mopt_conv_params *p = &ctx->op->p.conv;
    memset(cg, 0, sizeof *cg);
    cg->batch = x->dims[0];
    cg->in_h = x->dims[1];
    cg->in_w = x->dims[2];
    cg->in_c = x->dims[3];
    cg->out_h = y->dims[1];
    cg->out_w = y->dims[2];
    cg->out_c = y->dims[3];
    cg->k_h = w->dims[1];
    cg->k_w = w->dims[2];
    cg->stride_h = p->stride_h;
    cg->stride_w = p->stride_w;
    cg->dil_h = p->dilation_h;
    cg->dil_w = p->dilation_w;
    mopt_conv_out_size(p->padding, cg->in_h, cg->k_h, cg->stride_h, cg->dil_h, &cg->pad_top);
    mopt_conv_out_size(p->padding, cg->in_w, cg->k_w, cg->stride_w, cg->dil_w, &cg->pad_left);
}

/* Picks the micro-kernel: one row for GEMV-like shapes (few output pixels),
 * else the tile whose column padding wastes least (ties: the wide one). */
static const mopt_f32_igemm_ukernel *pick_ukernel(const mopt_isa *isa, size_t m, size_t n) {
    const mopt_f32_igemm_ukernel *w = &isa->igemm_wide, *nw = &isa->igemm_narrow;
    if (m * 2 <= (size_t)w->mr) return &isa->igemm_row;
    size_t pw = (n + (size_t)w->nr - 1) / (size_t)w->nr * (size_t)w->nr;
    size_t pn = (n + (size_t)nw->nr - 1) / (size_t)nw->nr * (size_t)nw->nr;
    return pn < pw ? nw : w;
}

mopt_status mopt_gemm_op_prepare(const mopt_kernel_ctx *ctx, mopt_gemm_op_state *s,
                                 const char *what, mopt_kernel_plan *plan, mopt_error *err) {
    size_t n = (size_t)s->geom.out_c, kc = (size_t)s->geom.in_c;
    size_t ks = (size_t)s->geom.k_h * (size_t)s->geom.k_w;
    size_t m = (size_t)s->geom.batch * (size_t)s->geom.out_h * (size_t)s->geom.out_w;
    s->uk = pick_ukernel(ctx->isa, m, n);
    /* Hostile shapes could overflow the size arithmetic below: refuse
     * anything whose packed weights or indirection exceed 2^40 bytes. */
    double ind_bytes = ((double)m + s->uk->mr) * (double)ks * sizeof(float *);
    double pack_bytes = ((double)n + s->uk->nr) * (1.0 + (double)ks * (double)kc) * sizeof(float);
    if (ind_bytes > 0x1p40 || pack_bytes > 0x1p40)
        return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED, "layer is too large for the runtime");
    s->packed_floats = mopt_f32_gemm_packed_floats(n, ks, kc, s->uk->nr);
    s->zero = calloc(kc + 1, sizeof(float));
    s->ind = malloc(mopt_f32_conv_indirection_size(&s->geom, s->uk->mr) * sizeof(float *));
    if (!s->zero || !s->ind) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    const float *w = mopt_ctx_in(ctx, 1);
    const float *b = mopt_ctx_in(ctx, 2);
    bool bias_ok = ctx->op->n_inputs < 3 || ctx->op->inputs[2] < 0 || b;
    if (w && bias_ok) {
        s->packed = mopt_state_alloc(s->packed_floats * sizeof(float));
        if (!s->packed) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
        mopt_f32_gemm_pack(n, ks, kc, s->uk->nr, w, b, s->packed);
    } else {
        /* Weights computed at run time (not constant-folded): pack per eval. */
        plan->scratch_bytes = s->packed_floats * sizeof(float);
    }
    snprintf(s->name, sizeof s->name, "%s_%s", what, s->uk->name);
    plan->name = s->name;
    return MOPT_OK;
}

mopt_status mopt_gemm_op_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                              mopt_error *err) {
    mopt_gemm_op_state *s = state;
    const float *packed = s->packed;
    if (!packed) {
        size_t n = (size_t)s->geom.out_c, kc = (size_t)s->geom.in_c;
        size_t ks = (size_t)s->geom.k_h * (size_t)s->geom.k_w;
        mopt_f32_gemm_pack(n, ks, kc, s->uk->nr, mopt_ctx_in(ctx, 1), mopt_ctx_in(ctx, 2), scratch);
        packed = scratch;
    }
    const float *in = mopt_ctx_in(ctx, 0);
    /* Addresses are fixed once the arena is planned: built on first use. */
    if (s->ind_in != in) {
        mopt_f32_conv_indirection_init(&s->geom, s->uk->mr, in, s->zero, s->ind);
        s->ind_in = in;
    }
    mopt_f32_conv_igemm(&s->geom, s->uk, s->ind, packed, mopt_ctx_out(ctx, 0), s->lo, s->hi,
                        ctx->num_threads);
    return MOPT_OK;
}

static mopt_status conv_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                mopt_error *err) {
    mopt_gemm_op_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    mopt_status st = mopt_act_range_f32(ctx, ctx->op->p.conv.act, &s->lo, &s->hi, err);
    if (st) return st;
    conv_geom(ctx, &s->geom);
    return mopt_gemm_op_prepare(ctx, s, "conv2d", plan, err);
}

/* ---- DEPTHWISE_CONV_2D ---- */

typedef struct dw_state {
    mopt_conv_geom geom;
    int32_t mult;
    float *zero;
    const float **ind;   /* one pointer per output pixel and tap */
    const float *ind_in; /* input address ind was built for */
    float lo, hi;
} dw_state;

static void dw_free(void *p) {
    dw_state *s = p;
    if (!s) return;
    free(s->zero);
    free(s->ind);
    free(s);
}

static mopt_status dw_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan, mopt_error *err) {
    dw_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    mopt_status st = mopt_act_range_f32(ctx, ctx->op->p.conv.act, &s->lo, &s->hi, err);
    if (st) return st;
    conv_geom(ctx, &s->geom);
    s->mult = s->geom.out_c / s->geom.in_c;
    size_t m = (size_t)s->geom.batch * (size_t)s->geom.out_h * (size_t)s->geom.out_w;
    if ((double)m * s->geom.k_h * s->geom.k_w * sizeof(float *) > 0x1p40)
        return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED, "layer is too large for the runtime");
    s->zero = calloc((size_t)s->geom.in_c + 1, sizeof(float));
    if (s->mult == 1)
        s->ind = malloc(mopt_f32_conv_indirection_size(&s->geom, 1) * sizeof(float *));
    if (!s->zero || (s->mult == 1 && !s->ind))
        return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->name = s->mult == 1 ? "depthwise_conv2d_f32_direct" : "depthwise_conv2d_f32_mult_ref";
    return MOPT_OK;
}

/* Channel multiplier > 1 (rare): scalar loops with the same per-element fma
 * sequence as the vector kernel (padded taps read zeros). */
typedef struct dwm_job {
    const dw_state *s;
    const float *in, *w, *bias;
    float *out;
} dwm_job;

static void dwm_range(void *arg, int tid, size_t begin, size_t end) {
    const dwm_job *j = arg;
    const mopt_conv_geom *g = &j->s->geom;
    size_t ic = (size_t)g->in_c, oc = (size_t)g->out_c, m = (size_t)j->s->mult;
    for (size_t row = begin; row < end; row++) {
        size_t b = row / (size_t)g->out_h;
        int32_t oy = (int32_t)(row % (size_t)g->out_h);
        for (int32_t ox = 0; ox < g->out_w; ox++) {
            float *o = j->out + (row * (size_t)g->out_w + (size_t)ox) * oc;
            for (size_t c = 0; c < oc; c++) o[c] = j->bias ? j->bias[c] : 0.0f;
            for (int32_t ky = 0; ky < g->k_h; ky++) {
                int32_t iy = oy * g->stride_h - g->pad_top + ky * g->dil_h;
                for (int32_t kx = 0; kx < g->k_w; kx++) {
                    int32_t ix = ox * g->stride_w - g->pad_left + kx * g->dil_w;
                    const float *x = j->s->zero;
                    if (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w)
                        x = j->in +
                            ((b * (size_t)g->in_h + (size_t)iy) * (size_t)g->in_w + (size_t)ix) *
                                ic;
                    const float *w = j->w + ((size_t)ky * (size_t)g->k_w + (size_t)kx) * oc;
                    for (size_t c = 0; c < ic; c++)
                        for (size_t k = 0; k < m; k++)
                            o[c * m + k] = fmaf(x[c], w[c * m + k], o[c * m + k]);
                }
            }
            for (size_t c = 0; c < oc; c++) o[c] = mopt_clampf(o[c], j->s->lo, j->s->hi);
        }
    }
}

static mopt_status dw_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                           mopt_error *err) {
    dw_state *s = state;
    const float *in = mopt_ctx_in(ctx, 0), *w = mopt_ctx_in(ctx, 1), *b = mopt_ctx_in(ctx, 2);
    float *out = mopt_ctx_out(ctx, 0);
    if (s->mult == 1) {
        if (s->ind_in != in) {
            mopt_f32_conv_indirection_init(&s->geom, 1, in, s->zero, s->ind);
            s->ind_in = in;
        }
        mopt_f32_dwconv(&s->geom, ctx->isa->dwconv, s->ind, w, b, out, s->lo, s->hi,
                        ctx->num_threads);
    } else {
        dwm_job j = {s, in, w, b, out};
        mopt_parallel_for(ctx->num_threads, (size_t)s->geom.batch * (size_t)s->geom.out_h,
                          dwm_range, &j);
    }
    return MOPT_OK;
}

const mopt_kernel mopt_conv_kernels[] = {
    {MOPT_OP_CONV_2D, "conv2d_f32_igemm", mopt_match_gemm_f32, conv_prepare, mopt_gemm_op_eval,
     mopt_gemm_op_free, 0},
    {MOPT_OP_DEPTHWISE_CONV_2D, "depthwise_conv2d_f32", mopt_match_gemm_f32, dw_prepare, dw_eval,
     dw_free, 0},
};
const size_t mopt_conv_kernels_n = sizeof mopt_conv_kernels / sizeof mopt_conv_kernels[0];
