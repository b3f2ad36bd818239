/* mopt/runtime.h - running a graph.
 *
 * Lifecycle (plan, then run):
 *   mopt_interp_create   validates the graph, picks a kernel for every op
 *                        from its dtypes, prepares per-op state (packed
 *                        weights, multipliers) and plans ONE activation arena
 *                        with liveness-based reuse;
 *   mopt_interp_input / mopt_interp_output   pointers into the arena;
 *   mopt_interp_invoke   runs all ops; no allocation on this path;
 *   mopt_interp_free     releases everything (NULL is a no-op).
 *
 * The interpreter keeps a pointer to the graph and reads constant buffers
 * from it: the graph must outlive the interpreter and must not be edited
 * while it exists. Shapes are the graph's static shapes.
 *
 * Determinism: for a given graph and input, results are identical for any
 * thread count (work is split over outputs, never over reductions).
 */
#ifndef MOPT_RUNTIME_H
#define MOPT_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "mopt/graph.h"
#include "mopt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Requantization rounding used by integer kernels (see docs/DESIGN.md). */
typedef enum mopt_rounding {
    MOPT_ROUND_DOUBLE = 0, /* TFLite reference default (gemmlowp, two roundings) */
    MOPT_ROUND_SINGLE = 1, /* TFLITE_SINGLE_ROUNDING */
    MOPT_ROUND_FP32 = 2    /* float multiply, round half to even (XNNPACK) */
} mopt_rounding;

typedef struct mopt_interp_options {
    int num_threads;       /* <= 0: one per online core (runtime thread pool) */
    mopt_rounding rounding;
} mopt_interp_options;

typedef struct mopt_interp mopt_interp;

mopt_interp_options mopt_interp_default_options(void);

/* opts may be NULL (defaults). */
mopt_status mopt_interp_create(const mopt_graph *g, const mopt_interp_options *opts,
                               mopt_interp **out, mopt_error *err);
void mopt_interp_free(mopt_interp *it);

/* Bytes of the activation arena (what a static plan needs for activations). */
size_t mopt_interp_arena_bytes(const mopt_interp *it);
/* Sum of all activation tensor sizes without reuse (for comparison). */
size_t mopt_interp_naive_bytes(const mopt_interp *it);

int mopt_interp_num_inputs(const mopt_interp *it);
int mopt_interp_num_outputs(const mopt_interp *it);
/* Tensor index in the graph of input/output i. */
int mopt_interp_input_index(const mopt_interp *it, int i);
int mopt_interp_output_index(const mopt_interp *it, int i);
/* Data pointers (in the arena; valid until mopt_interp_free). Write inputs
 * before invoke; read outputs after. Layout: the tensor's dtype, row-major. */
void *mopt_interp_input(mopt_interp *it, int i);
const void *mopt_interp_output(const mopt_interp *it, int i);
/* Any tensor's data (activations in the arena, constants in the graph);
 * activation contents are only meaningful while not reused by the plan. */
const void *mopt_interp_tensor(const mopt_interp *it, int tensor_index);

mopt_status mopt_interp_invoke(mopt_interp *it, mopt_error *err);

/* Name of the kernel chosen for op i (e.g. "conv2d_f32_gemm"), for logs. */
const char *mopt_interp_kernel_name(const mopt_interp *it, int op_index);

#ifdef __cplusplus
}
#endif
#endif
