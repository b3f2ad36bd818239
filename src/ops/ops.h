/* ops.h - operator kernels (internal): tables registered in registry.c and
 * helpers shared by the op families. */
#ifndef MOPT_OPS_OPS_H
#define MOPT_OPS_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mopt/graph.h"
#include "runtime/kernel.h"

/* Kernel tables, one per op family (each file defines its table + count). */
extern const mopt_kernel mopt_conv_kernels[];
extern const size_t mopt_conv_kernels_n;
extern const mopt_kernel mopt_fc_kernels[];
extern const size_t mopt_fc_kernels_n;
extern const mopt_kernel mopt_pool_kernels[];
extern const size_t mopt_pool_kernels_n;
extern const mopt_kernel mopt_elementwise_kernels[];
extern const size_t mopt_elementwise_kernels_n;
extern const mopt_kernel mopt_activation_kernels[];
extern const size_t mopt_activation_kernels_n;
extern const mopt_kernel mopt_shape_kernels[];
extern const size_t mopt_shape_kernels_n;
extern const mopt_kernel mopt_reduce_kernels[];
extern const size_t mopt_reduce_kernels_n;
extern const mopt_kernel mopt_softmax_kernels[];
extern const size_t mopt_softmax_kernels_n;
extern const mopt_kernel mopt_quant_kernels[];
extern const size_t mopt_quant_kernels_n;

/* "operator 3 (CONV_2D): <msg>" for kernels. */
mopt_status mopt_op_fail(const mopt_kernel_ctx *ctx, mopt_error *err, mopt_status st,
                         const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Float clamp range of a fused activation; TANH / SIGN_BIT are refused. */
mopt_status mopt_act_range_f32(const mopt_kernel_ctx *ctx, mopt_activation act, float *lo,
                               float *hi, mopt_error *err);

/* dtype predicate: every present input and output is float32. */
bool mopt_match_all_f32(const mopt_graph *g, const mopt_op *op);
/* dtype predicate: input 0 and output 0 are float32 (other inputs are
 * int32 parameters checked by validation). */
bool mopt_match_io_f32(const mopt_graph *g, const mopt_op *op);

/* GEMM-backed ops (CONV_2D, FULLY_CONNECTED) share one state and eval. */
typedef struct mopt_gemm_op_state {
    mopt_conv_geom geom;
    const mopt_f32_igemm_ukernel *uk;
    float *packed;        /* constant weights packed at prepare, or NULL */
    size_t packed_floats; /* size when packing at eval (dynamic weights) */
    float *zero;          /* in_c zeros for padded taps */
    const float **ind;    /* indirection buffer (allocated at prepare) */
    const float *ind_in;  /* input address ind was built for (NULL: not yet) */
    float lo, hi;
    char name[96];
} mopt_gemm_op_state;
/* Sets s->uk, packs constant weights (input 1, bias input 2) or sizes the
 * scratch to pack them per eval; s->geom and s->lo/hi must be set. */
mopt_status mopt_gemm_op_prepare(const mopt_kernel_ctx *ctx, mopt_gemm_op_state *s,
                                 const char *what, mopt_kernel_plan *plan, mopt_error *err);
mopt_status mopt_gemm_op_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                              mopt_error *err);
void mopt_gemm_op_free(void *state);
bool mopt_match_gemm_f32(const mopt_graph *g, const mopt_op *op);

/* Element-count helper (validated shapes: never negative). */
static inline size_t mopt_numel(const mopt_tensor *t) { return (size_t)mopt_tensor_numel(t); }

/* Rounded-up allocation helpers for kernel state (64-byte aligned; free with
 * free()). Returns NULL on overflow / out of memory. */
void *mopt_state_alloc(size_t bytes);

#endif
