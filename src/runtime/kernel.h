/* kernel.h - the interpreter's internal kernel interface.
 *
 * A kernel is an entry in a table: {op type, dtype predicate, prepare, eval,
 * free_state, name}. The interpreter looks kernels up by op type and the
 * predicate (src/ops/registry.c), so int8 / int16 / hybrid kernels are added
 * by registering new entries; the interpreter itself does not change.
 *
 * Lifecycle, per op:
 *   prepare(ctx, &plan, err)   once at mopt_interp_create; may allocate state
 *                              (packed weights, multipliers) and asks for
 *                              scratch bytes. Activation data pointers are
 *                              NULL here; constants (and outputs of constant-
 *                              folded ops) are available.
 *   eval(ctx, state, scratch)  at every invoke; never allocates. scratch is
 *                              plan.scratch_bytes, 64-byte aligned, in the
 *                              arena (contents undefined on entry). eval may
 *                              fill caches in state that depend on arena
 *                              addresses (indirection buffers), so one
 *                              interpreter is never invoked concurrently.
 *   free_state(state)          at mopt_interp_free (NULL-safe).
 */
#ifndef MOPT_RUNTIME_KERNEL_H
#define MOPT_RUNTIME_KERNEL_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/kernels.h"
#include "mopt/graph.h"
#include "mopt/runtime.h"
#include "mopt/status.h"

typedef struct mopt_kernel_ctx {
    const mopt_graph *g;
    const mopt_op *op;
    int op_index;
    /* data[t]: the tensor's memory (arena, graph constant or folded
     * constant); NULL for activations during prepare. */
    void *const *data;
    int num_threads;
    mopt_rounding rounding;
    const mopt_isa *isa;
} mopt_kernel_ctx;

typedef struct mopt_kernel_plan {
    void *state;          /* owned by the kernel, freed by free_state */
    size_t scratch_bytes; /* arena scratch needed by eval */
    const char *name;     /* optional: overrides the table name (e.g. tile/ISA) */
} mopt_kernel_plan;

/* Kernel may let its single output share its first input's memory (RESHAPE). */
#define MOPT_KERNEL_ALIAS_IO 1u

typedef struct mopt_kernel {
    mopt_op_type op;
    const char *name;
    /* dtype predicate: true if this kernel handles the op's tensor types. */
    bool (*match)(const mopt_graph *g, const mopt_op *op);
    mopt_status (*prepare)(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan, mopt_error *err);
    mopt_status (*eval)(const mopt_kernel_ctx *ctx, void *state, void *scratch, mopt_error *err);
    void (*free_state)(void *state);
    unsigned flags;
} mopt_kernel;

/* First registered kernel for the op, or NULL (src/ops/registry.c). */
const mopt_kernel *mopt_kernel_lookup(const mopt_graph *g, const mopt_op *op);

/* Splits [0, n) into contiguous ranges and runs fn(arg, thread_id, begin,
 * end) for each, on up to num_threads threads (the runtime thread pool, runtime/parallel.c); thread_id is in
 * [0, num_threads). Which thread runs which range is not fixed, so results
 * must not depend on the split: callers split over outputs only. */
typedef void (*mopt_range_fn)(void *arg, int tid, size_t begin, size_t end);
void mopt_parallel_for(int num_threads, size_t n, mopt_range_fn fn, void *arg);

/* Data pointer helpers for kernels. */
static inline const void *mopt_ctx_in(const mopt_kernel_ctx *c, int i) {
    return i < c->op->n_inputs && c->op->inputs[i] >= 0 ? c->data[c->op->inputs[i]] : NULL;
}
static inline void *mopt_ctx_out(const mopt_kernel_ctx *c, int i) {
    return c->data[c->op->outputs[i]];
}
static inline const mopt_tensor *mopt_ctx_tin(const mopt_kernel_ctx *c, int i) {
    return i < c->op->n_inputs && c->op->inputs[i] >= 0 ? &c->g->tensors[c->op->inputs[i]] : NULL;
}
static inline const mopt_tensor *mopt_ctx_tout(const mopt_kernel_ctx *c, int i) {
    return &c->g->tensors[c->op->outputs[i]];
}

#endif
