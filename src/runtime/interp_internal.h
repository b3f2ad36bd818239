/* interp_internal.h - interpreter hooks for tests and benchmarks (not part
 * of the public API). */
#ifndef MOPT_RUNTIME_INTERP_INTERNAL_H
#define MOPT_RUNTIME_INTERP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/kernels.h"
#include "mopt/runtime.h"

/* mopt_interp_create with a forced kernel ISA level (NULL = best). */
mopt_status mopt_interp_create_isa(const mopt_graph *g, const mopt_interp_options *opts,
                                   const mopt_isa *isa, mopt_interp **out, mopt_error *err);

/* The ISA level the interpreter uses. */
const mopt_isa *mopt_interp_isa(const mopt_interp *it);

/* Where tensor t lives in the arena: returns false if it is not an arena
 * tensor (constant, folded or unused); else *offset / *bytes (data bytes,
 * without alignment padding or guard). */
bool mopt_interp_tensor_slot(const mopt_interp *it, int t, size_t *offset, size_t *bytes);

/* Scratch slot of op i in the arena (false if it has none). */
bool mopt_interp_scratch_slot(const mopt_interp *it, int op_index, size_t *offset, size_t *bytes);

/* True if op i was evaluated once at create (all inputs constant). */
bool mopt_interp_op_folded(const mopt_interp *it, int op_index);

/* The arena base pointer (for tests that poison it). */
unsigned char *mopt_interp_arena(mopt_interp *it);

/* mopt_interp_invoke that also adds each op's wall time (seconds) to
 * op_seconds[op] (n_ops entries, caller-zeroed). For profiling. */
mopt_status mopt_interp_invoke_timed(mopt_interp *it, double *op_seconds, mopt_error *err);

/* True while the guard bytes after every graph output are intact. */
bool mopt_interp_guards_intact(const mopt_interp *it);

#define MOPT_GUARD_BYTES 64
#define MOPT_GUARD_BYTE 0xA5

#endif
