/* softmax.c - float SOFTMAX over the last axis:
 * y = exp(beta*(x - max)) / sum(exp(beta*(x - max))), as TFLite's reference
 * (max subtracted first so exp cannot overflow). */
#include <math.h>
#include <stdlib.h>

#include "ops/ops.h"

typedef struct sm_job {
    const float *x;
    float *y;
    size_t depth;
    float beta;
} sm_job;

static void sm_range(void *arg, int tid, size_t begin, size_t end) {
    const sm_job *j = arg;
    size_t n = j->depth;
    for (size_t r = begin; r < end; r++) {
        const float *x = j->x + r * n;
        float *y = j->y + r * n;
        float m = x[0];
        for (size_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
        float sum = 0.0f;
        for (size_t i = 0; i < n; i++) {
            y[i] = expf((x[i] - m) * j->beta);
            sum += y[i];
        }
        for (size_t i = 0; i < n; i++) y[i] = y[i] / sum;
    }
}

static mopt_status sm_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan, mopt_error *err) {
    return MOPT_OK;
}

static mopt_status sm_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                           mopt_error *err) {
    const mopt_tensor *xt = mopt_ctx_tin(ctx, 0);
    size_t depth = (size_t)xt->dims[xt->rank - 1];
    if (depth == 0) return MOPT_OK;
    size_t rows = mopt_numel(xt) / depth;
    sm_job j = {mopt_ctx_in(ctx, 0), mopt_ctx_out(ctx, 0), depth, ctx->op->p.softmax.beta};
    mopt_parallel_for(rows * depth < 8192 ? 1 : ctx->num_threads, rows, sm_range, &j);
    return MOPT_OK;
}

const mopt_kernel mopt_softmax_kernels[] = {
    {MOPT_OP_SOFTMAX, "softmax_f32", mopt_match_all_f32, sm_prepare, sm_eval, NULL, 0},
};
const size_t mopt_softmax_kernels_n = sizeof mopt_softmax_kernels / sizeof mopt_softmax_kernels[0];
