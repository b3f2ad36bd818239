/* ops_internal.h - per-op forward/backward entry points (src/train/ops_*.c). */
#ifndef MOPT_TRAIN_OPS_INTERNAL_H
#define MOPT_TRAIN_OPS_INTERNAL_H

#include "train/tg_internal.h"

/* out[j] += sum over rows of m[r][j] (fixed chunks in double, summed in order). */
void tr_colsum_add(const float *m, int64_t rows, int64_t cols, float *out, tr_pool *pool);

mopt_status tr_conv_forward(tr_ctx *c, mopt_error *err);
mopt_status tr_conv_backward(tr_ctx *c, mopt_error *err);
mopt_status tr_dwconv_forward(tr_ctx *c, mopt_error *err);
mopt_status tr_dwconv_backward(tr_ctx *c, mopt_error *err);
mopt_status tr_fc_forward(tr_ctx *c, mopt_error *err);
mopt_status tr_fc_backward(tr_ctx *c, mopt_error *err);

mopt_status tr_bn_forward(tr_ctx *c, mopt_error *err);
mopt_status tr_bn_backward(tr_ctx *c, mopt_error *err);
mopt_status tr_dropout_forward(tr_ctx *c, mopt_error *err);
mopt_status tr_dropout_backward(tr_ctx *c, mopt_error *err);

#endif
