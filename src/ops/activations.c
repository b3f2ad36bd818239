/* activations.c - float RELU, RELU6, LOGISTIC, TANH, HARD_SWISH, with the
 * formulas of TFLite's reference kernels (NaN passes through the clamps). */
#include <math.h>
#include <stdlib.h>

#include "ops/ops.h"

typedef struct act_job {
    int kind;
    const mopt_isa *isa;
    const float *x;
    float *y;
} act_job;

static void act_range(void *arg, int tid, size_t begin, size_t end) {
    const act_job *j = arg;
    const float *restrict x = j->x;
    float *restrict y = j->y;
    switch (j->kind) {
    /* x < 0 ? 0 : x and clamp(x, 0, 6) are exactly the ISA clamp. */
    case MOPT_OP_RELU: j->isa->vclamp(end - begin, x + begin, y + begin, 0.0f, INFINITY); break;
    case MOPT_OP_RELU6: j->isa->vclamp(end - begin, x + begin, y + begin, 0.0f, 6.0f); break;
    case MOPT_OP_LOGISTIC:
        for (size_t i = begin; i < end; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case MOPT_OP_TANH:
        for (size_t i = begin; i < end; i++) y[i] = tanhf(x[i]);
        break;
    default: /* HARD_SWISH: x * relu6(x + 3) / 6 */
        for (size_t i = begin; i < end; i++) {
            float r = x[i] + 3.0f;
            r = r < 0.0f ? 0.0f : (r > 6.0f ? 6.0f : r);
            y[i] = x[i] * r / 6.0f;
        }
        break;
    }
}

static mopt_status act_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                               mopt_error *err) {
    return MOPT_OK;
}

static mopt_status act_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                            mopt_error *err) {
    act_job j = {ctx->op->type, ctx->isa, mopt_ctx_in(ctx, 0), mopt_ctx_out(ctx, 0)};
    size_t n = mopt_numel(mopt_ctx_tin(ctx, 0));
    bool heavy = j.kind == MOPT_OP_LOGISTIC || j.kind == MOPT_OP_TANH;
    mopt_parallel_for(n < (heavy ? 4096u : 65536u) ? 1 : ctx->num_threads, n, act_range, &j);
    return MOPT_OK;
}

const mopt_kernel mopt_activation_kernels[] = {
    {MOPT_OP_RELU, "relu_f32", mopt_match_all_f32, act_prepare, act_eval, NULL, 0},
    {MOPT_OP_RELU6, "relu6_f32", mopt_match_all_f32, act_prepare, act_eval, NULL, 0},
    {MOPT_OP_LOGISTIC, "logistic_f32", mopt_match_all_f32, act_prepare, act_eval, NULL, 0},
    {MOPT_OP_TANH, "tanh_f32", mopt_match_all_f32, act_prepare, act_eval, NULL, 0},
    {MOPT_OP_HARD_SWISH, "hard_swish_f32", mopt_match_all_f32, act_prepare, act_eval, NULL, 0},
};
const size_t mopt_activation_kernels_n =
    sizeof mopt_activation_kernels / sizeof mopt_activation_kernels[0];
