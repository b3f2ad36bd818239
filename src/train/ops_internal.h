/* ops_internal.h - per-op forward/backward entry points (src/train/ops_*.c). */
#ifndef MOPT_TRAIN_OPS_INTERNAL_H
#define MOPT_TRAIN_OPS_INTERNAL_H

#include "train/tg_internal.h"

/* out[j] += sum over rows of m[r][j] (fixed chunks in double, summed in order). */
void tr_colsum_add(const float *m, int64_t rows, int64_t cols, float *out, tr_pool *pool);

/* Fusion of a batch norm's input gradient with the weight gradient of the
 * few-channel convolution before it (ops_conv.c): the CONV_2D node whose
 * output is c's (the batch norm's) only input and whose backward reduces to
 * the AVX-512 small-channel dW (no bias, no activation or transform, no
 * input gradient), or NULL. tr_conv_dw_fused then computes that dW with dZ
 * produced block by block by fill (rows for pixels [p0, p0 + n) into dz,
 * written, not added), never materialising dZ, and flags the convolution so
 * its own backward does nothing. Results are those of the unfused ops. */
typedef void (*tr_dz_fill_fn)(void *ctx, int64_t p0, int64_t n, float *dz);
tnode *tr_conv_dw_fusable(const tr_ctx *c);
mopt_status tr_conv_dw_fused(tr_ctx *c, tnode *cv, tr_dz_fill_fn fill, void *fctx,
                             mopt_error *err);

mopt_status tr_conv_forward(tr_ctx *c, mopt_error *err);
mopt_status tr_conv_backward(tr_ctx *c, mopt_error *err);
mopt_status tr_dwconv_forward(tr_ctx *c, mopt_error *err);
mopt_status tr_dwconv_backward(tr_ctx *c, mopt_error *err);
mopt_status tr_fc_forward(tr_ctx *c, mopt_error *err);
mopt_status tr_fc_backward(tr_ctx *c, mopt_error *err);

/* Node aux layouts (tr_op_aux_bytes). Both start with a TR_AUX_HDR-byte
 * header (keeps the arrays after it 64-byte aligned):
 *   CONV_2D         header: int "backward done by the consumer" flag
 *   MAX_POOL_2D     header: int "done by the producer" flag; then int32 argmax
 *                   (flat input index) per output element
 *   BATCH_NORM      header: int "fused with the max pool after it" flag, int
 *                   "batch moments already computed by the producer" flag;
 *                   then mean[C], invstd[C], k[C], o[C] (y = act(x * k + o)),
 *                   then the moments: 2 * TR_RED_CHUNKS * C floats (per row
 *                   chunk, sums then sums of squares of x - x[row 0]) */
#define TR_AUX_HDR 64
static inline int *tr_aux_flag(const tnode *n) { return (int *)n->aux; }
static inline int32_t *tr_pool_args(const tnode *n) {
    return (int32_t *)((char *)n->aux + TR_AUX_HDR);
}
static inline float *tr_bn_saved(const tnode *n) { return (float *)((char *)n->aux + TR_AUX_HDR); }
static inline float *tr_bn_moments(const mopt_tgraph *tg, const tnode *n) {
    const tval *o = &tg->vals[n->out];
    return tr_bn_saved(n) + 4 * (size_t)o->dims[o->rank - 1];
}

mopt_status tr_bn_forward(tr_ctx *c, mopt_error *err);
mopt_status tr_bn_backward(tr_ctx *c, mopt_error *err);
mopt_status tr_dropout_forward(tr_ctx *c, mopt_error *err);
mopt_status tr_dropout_backward(tr_ctx *c, mopt_error *err);

#endif
