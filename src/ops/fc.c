/* fc.c - float FULLY_CONNECTED: a 1x1 convolution whose "pixels" are the
 * input rows (numel / depth of them), run by the same packed-weight GEMM as
 * CONV_2D (conv.c). keep_num_dims only changes the output shape, not the
 * memory layout. */
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

static mopt_status fc_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan, mopt_error *err) {
    mopt_gemm_op_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    mopt_status st = mopt_act_range_f32(ctx, ctx->op->p.fc.act, &s->lo, &s->hi, err);
    if (st) return st;
    const mopt_tensor *x = mopt_ctx_tin(ctx, 0), *w = mopt_ctx_tin(ctx, 1);
    int32_t units = w->dims[0], depth = w->dims[1];
    int32_t rows = (int32_t)(mopt_numel(x) / (size_t)depth);
    mopt_conv_geom *cg = &s->geom;
    cg->batch = 1;
    cg->in_h = cg->out_h = 1;
    cg->in_w = cg->out_w = rows;
    cg->in_c = depth;
    cg->out_c = units;
    cg->k_h = cg->k_w = cg->stride_h = cg->stride_w = cg->dil_h = cg->dil_w = 1;
    return mopt_gemm_op_prepare(ctx, s, "fully_connected", plan, err);
}

const mopt_kernel mopt_fc_kernels[] = {
    {MOPT_OP_FULLY_CONNECTED, "fully_connected_f32_igemm", mopt_match_gemm_f32, fc_prepare,
     mopt_gemm_op_eval, mopt_gemm_op_free, 0},
};
const size_t mopt_fc_kernels_n = sizeof mopt_fc_kernels / sizeof mopt_fc_kernels[0];
