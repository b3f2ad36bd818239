/* registry.c - the kernel tables the interpreter chooses from.
 *
 * New kernels (int8, int16, hybrid) are added by defining another table in
 * their op file and listing it here: the first entry whose op type and dtype
 * predicate match wins, so more specific kernels go in earlier tables. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "ops/ops.h"
#include "ops/q_ops.h"

typedef struct table {
    const mopt_kernel *k;
    const size_t *n;
} table;

static const table tables[] = {
    {mopt_conv_kernels, &mopt_conv_kernels_n},
    {mopt_fc_kernels, &mopt_fc_kernels_n},
    {mopt_pool_kernels, &mopt_pool_kernels_n},
    {mopt_elementwise_kernels, &mopt_elementwise_kernels_n},
    {mopt_activation_kernels, &mopt_activation_kernels_n},
    {mopt_shape_kernels, &mopt_shape_kernels_n},
    {mopt_reduce_kernels, &mopt_reduce_kernels_n},
    {mopt_softmax_kernels, &mopt_softmax_kernels_n},
    {mopt_quant_kernels, &mopt_quant_kernels_n},
    /* Integer kernels (int8, int16x8, hybrid), bit-exact with LiteRT's
     * reference resolver: see docs/INTEGER_KERNELS.md. */
    {mopt_q_conv_kernels, &mopt_q_conv_kernels_n},
    {mopt_q_fc_kernels, &mopt_q_fc_kernels_n},
    {mopt_q_hybrid_kernels, &mopt_q_hybrid_kernels_n},
    {mopt_q_pool_kernels, &mopt_q_pool_kernels_n},
    {mopt_q_elementwise_kernels, &mopt_q_elementwise_kernels_n},
    {mopt_q_activation_kernels, &mopt_q_activation_kernels_n},
    {mopt_q_softmax_kernels, &mopt_q_softmax_kernels_n},
    {mopt_q_shape_kernels, &mopt_q_shape_kernels_n},
    {mopt_q_reduce_kernels, &mopt_q_reduce_kernels_n},
    {mopt_q_quantize_kernels, &mopt_q_quantize_kernels_n},
};

const mopt_kernel *mopt_kernel_lookup(const mopt_graph *g, const mopt_op *op) {
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        for (size_t i = 0; i < *tables[t].n; i++) {
            const mopt_kernel *k = &tables[t].k[i];
            if (k->op == op->type && k->match(g, op)) return k;
        }
    return NULL;
}

/* ---- helpers shared by the op files ---- */

mopt_status mopt_op_fail(const mopt_kernel_ctx *ctx, mopt_error *err, mopt_status st,
                         const char *fmt, ...) {
    char msg[MOPT_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *name = mopt_op_name(ctx->op->type);
    return mopt_error_set(err, st, "operator %d (%s): %s", ctx->op_index, name ? name : "unknown",
                          msg);
}

mopt_status mopt_act_range_f32(const mopt_kernel_ctx *ctx, mopt_activation act, float *lo,
                               float *hi, mopt_error *err) {
    switch (act) {
    case MOPT_ACT_NONE:
        *lo = -INFINITY;
        *hi = INFINITY;
        return MOPT_OK;
    case MOPT_ACT_RELU:
        *lo = 0.0f;
        *hi = INFINITY;
        return MOPT_OK;
    case MOPT_ACT_RELU_N1_TO_1:
        *lo = -1.0f;
        *hi = 1.0f;
        return MOPT_OK;
    case MOPT_ACT_RELU6:
        *lo = 0.0f;
        *hi = 6.0f;
        return MOPT_OK;
    default: break;
    }
    return mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                          "operator %d (%s): fused activation %s is not supported", ctx->op_index,
                          mopt_op_name(ctx->op->type), mopt_activation_name(act));
}

bool mopt_match_all_f32(const mopt_graph *g, const mopt_op *op) {
    for (int i = 0; i < op->n_inputs; i++)
        if (op->inputs[i] >= 0 && g->tensors[op->inputs[i]].dtype != MOPT_FLOAT32) return false;
    for (int i = 0; i < op->n_outputs; i++)
        if (g->tensors[op->outputs[i]].dtype != MOPT_FLOAT32) return false;
    return true;
}

bool mopt_match_io_f32(const mopt_graph *g, const mopt_op *op) {
    return g->tensors[op->inputs[0]].dtype == MOPT_FLOAT32 &&
           g->tensors[op->outputs[0]].dtype == MOPT_FLOAT32;
}

void *mopt_state_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes > SIZE_MAX - 64) return NULL;
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    return p;
}
