/* q_ops.h - integer (int8, int16x8) and hybrid kernels (internal).
 *
 * Every table below follows the float tables' pattern (ops.h): the registry
 * (src/ops/registry.c) searches them after the float tables. Their dtype
 * predicates never overlap with the float kernels' (they require an integer
 * activation, or int8 weights under float activations for the hybrid ones).
 *
 * The arithmetic follows TFLite's reference kernels (kReference, what
 * LiteRT's BUILTIN_REF resolver runs); docs/INTEGER_KERNELS.md says which
 * kernel each one reproduces and where the pinned oracle deviates from the
 * common (gemmlowp) requantization. */
#ifndef MOPT_OPS_Q_OPS_H
#define MOPT_OPS_Q_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mopt/graph.h"
#include "mopt/qmath.h"
#include "ops/ops.h"
#include "runtime/kernel.h"

extern const mopt_kernel mopt_q_conv_kernels[];
extern const size_t mopt_q_conv_kernels_n;
extern const mopt_kernel mopt_q_fc_kernels[];
extern const size_t mopt_q_fc_kernels_n;
extern const mopt_kernel mopt_q_hybrid_kernels[];
extern const size_t mopt_q_hybrid_kernels_n;
extern const mopt_kernel mopt_q_pool_kernels[];
extern const size_t mopt_q_pool_kernels_n;
extern const mopt_kernel mopt_q_elementwise_kernels[];
extern const size_t mopt_q_elementwise_kernels_n;
extern const mopt_kernel mopt_q_activation_kernels[];
extern const size_t mopt_q_activation_kernels_n;
extern const mopt_kernel mopt_q_softmax_kernels[];
extern const size_t mopt_q_softmax_kernels_n;
extern const mopt_kernel mopt_q_shape_kernels[];
extern const size_t mopt_q_shape_kernels_n;
extern const mopt_kernel mopt_q_reduce_kernels[];
extern const size_t mopt_q_reduce_kernels_n;
extern const mopt_kernel mopt_q_quantize_kernels[];
extern const size_t mopt_q_quantize_kernels_n;

/* ---- requantization of accumulators (q_common.c) ----
 *
 * How one op turns its accumulator into the output scale. The interpreter's
 * mopt_rounding picks it: MOPT_ROUND_DOUBLE means "what the reference kernel
 * of the pinned oracle does", which is gemmlowp's double rounding for most
 * ops but a double-precision multiply + round-half-away for some (see
 * mopt_q_method_for). */
typedef enum mopt_q_method {
    MOPT_QM_MBQM_DOUBLE = 0, /* MultiplyByQuantizedMultiplier, default build */
    MOPT_QM_MBQM_SINGLE,     /* TFLITE_SINGLE_ROUNDING build */
    MOPT_QM_FP32,            /* (float)acc * scale, round half to even */
    MOPT_QM_DOUBLE_ROUND,    /* round_half_away((double)acc * eff), saturated */
    MOPT_QM_MBQM_INT64       /* the int64 overload (16x8 kernels) */
} mopt_q_method;

/* One output channel's requantization constants. */
typedef struct mopt_q_chan {
    int32_t mult; /* QuantizeMultiplier(eff) of the method's build */
    int shift;
    float fscale;  /* XNNPACK-style float scale */
    double dscale; /* eff in double */
} mopt_q_chan;

/* Which kernel family is asking (the oracle's reference kernels differ). */
typedef enum mopt_q_family {
    MOPT_QF_CONV8,   /* CONV_2D / DEPTHWISE int8 */
    MOPT_QF_CONV16,  /* CONV_2D 16x8 */
    MOPT_QF_DW16,    /* DEPTHWISE 16x8 */
    MOPT_QF_FC8,     /* FULLY_CONNECTED int8 */
    MOPT_QF_FC16     /* FULLY_CONNECTED 16x8 */
} mopt_q_family;

mopt_q_method mopt_q_method_for(mopt_q_family fam, mopt_rounding r);

/* Fills ch from the three scales: eff = (double)in * (double)w / (double)out
 * (fscale = in * w / out in binary32). Fails if a scale is not finite and
 * > 0. */
mopt_status mopt_q_chan_from_scales(float in_s, float w_s, float out_s, mopt_q_method m,
                                    mopt_q_chan *ch, mopt_error *err);

/* Requantizes an accumulator (int64 so that 16x8 sums fit; int32 methods
 * first wrap it to int32 as the reference's int32 arithmetic does). */
int32_t mopt_q_requant(int64_t acc, const mopt_q_chan *ch, mopt_q_method m);

/* ---- shared helpers ---- */

/* For CONV_2D / DEPTHWISE / FULLY_CONNECTED (weights = input 1): the n
 * output channels' requantization constants from the input, weight (per
 * tensor, or per channel along `axis`) and output scales, and the bias
 * (input bias_input; int32 or int64, must be constant; zeros if absent)
 * widened to int64. Both arrays are allocated (free them). */
mopt_status mopt_q_prepare_channels(const mopt_kernel_ctx *ctx, int n, int axis, int bias_input,
                                    mopt_q_method method, float in_s, float out_s,
                                    mopt_q_chan **ch_out, int64_t **bias_out, mopt_error *err);

/* Integer range of an activation dtype. */
void mopt_q_dtype_range(mopt_dtype dt, int32_t *qmin, int32_t *qmax);

/* Quantized clamp range of a fused activation on output tensor y
 * (CalculateActivationRangeQuantized); TANH / SIGN_BIT are refused. */
mopt_status mopt_q_act_range(const mopt_kernel_ctx *ctx, mopt_activation act,
                             const mopt_tensor *y, int32_t *lo, int32_t *hi, mopt_error *err);

/* Per-tensor scale / zero point of tensor t (the first entry), with a check
 * that it is quantized with a finite positive scale. */
mopt_status mopt_q_tensor_params(const mopt_kernel_ctx *ctx, const mopt_tensor *t,
                                 const char *what, float *scale, int32_t *zp, mopt_error *err);

/* Wraps an int64 sum to int32 the way two's-complement int32 arithmetic
 * would have (TFLite accumulates in int32). */
static inline int32_t mopt_q_wrap32(int64_t v) { return (int32_t)(uint32_t)(uint64_t)v; }

static inline int32_t mopt_q_clamp(int32_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/* dtype predicates. */
bool mopt_q_match_all_int8(const mopt_graph *g, const mopt_op *op);
bool mopt_q_match_all_int16(const mopt_graph *g, const mopt_op *op);
/* Input 0 and output 0 share dtype int8 or int16 (other inputs are int32
 * parameters, or checked by the kernel). */
bool mopt_q_match_io_int(const mopt_graph *g, const mopt_op *op);
/* Every data input and the output are int8, or every one is int16. */
bool mopt_q_match_all_int(const mopt_graph *g, const mopt_op *op);

/* LUTLookup for int16 (513-entry table): 9 index bits, 7 interpolated. */
int16_t mopt_q_lut16(int16_t v, const int16_t *lut);

/* Hybrid input quantization (tensor_utils): symmetric per row, scale
 * max|x| / 127 (1 for an all-zero row); asymmetric per row as
 * PortableAsymmetricQuantizeFloats. Exposed for the unit tests. */
void mopt_q_symmetric_quantize_row(const float *x, size_t n, int8_t *q, float *scale);
void mopt_q_asymmetric_quantize_row(const float *x, size_t n, int8_t *q, float *scale,
                                    int32_t *offset);


/* ---- fast int8 paths (q_conv.c, q_fc.c over kernels/qgemm.c) ----
 *
 * The registered CONV_2D / DEPTHWISE / FULLY_CONNECTED int8 kernels run the
 * packed GEMM / vectorized depthwise micro-kernels where they apply and
 * the reference loops otherwise. These tables always run the reference
 * loops: the unit tests compare the two (never registered). */
extern const mopt_kernel mopt_q_conv_ref_kernels[];
extern const size_t mopt_q_conv_ref_kernels_n;
extern const mopt_kernel mopt_q_fc_ref_kernels[];
extern const size_t mopt_q_fc_ref_kernels_n;

/* Where requantized int8 results of a GEMM go: output [rows][y_stride],
 * per-column constants ch[col]. */
typedef struct mopt_q_out8 {
    const mopt_q_chan *ch;
    mopt_q_method method;
    int32_t out_off, lo, hi;
    int8_t *y;
    size_t y_stride;
    /* Vectorized requantization (NULL: the scalar loop). */
    const mopt_qs8_rq *rq;
    mopt_qs8_requant_fn rqfn;
} mopt_q_out8;

/* Per-column constants of the vectorized requantization, for the methods
 * it covers (MBQM_DOUBLE with shifts in [-31, 30], DOUBLE_ROUND). */
typedef struct mopt_q_fastrq {
    mopt_qs8_rq rq;
    void *mem; /* owned */
} mopt_q_fastrq;

/* Fills f for n columns; returns 1 if the method is covered, 0 if not (f
 * unused, the scalar loop applies), -1 if out of memory. */
int mopt_q_fastrq_init(mopt_q_fastrq *f, const mopt_q_chan *ch, size_t n, mopt_q_method m,
                       int32_t out_off, int32_t lo, int32_t hi);

/* mopt_qs8_gemm_job.finish for int8 outputs (arg: a mopt_q_out8): the
 * int32 accumulators (bias and zero points already folded in) requantized
 * exactly as the reference loops do: requant, + out_off, clamp. */
void mopt_q_finish_i8(void *arg, size_t row0, size_t rows, size_t col0, size_t cols,
                      const int32_t *acc, size_t acc_stride);

/* The init values of the packed GEMM / depthwise weights: for output
 * channel c, bias[c] + (in_off - (u8_input ? 128 : 0)) * sum_k w[c][k],
 * wrapped to int32 like the reference's int32 sums. w is [n][k]
 * (stride_c between channels, stride_k between taps). */
void mopt_q_fold_init(size_t n, size_t k, const int8_t *w, size_t stride_c, size_t stride_k,
                      const int64_t *bias, int32_t in_off, int u8_input, int32_t *init);

#endif
