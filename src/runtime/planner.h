/* planner.h - static activation arena planning (internal).
 *
 * Each buffer has a size and an inclusive lifetime [first, last] in op
 * steps. Buffers whose lifetimes intersect get disjoint byte ranges; others
 * may share. Strategy: greedy by size (largest first), each placed at the
 * lowest 64-byte aligned offset that does not overlap a placed buffer with an
 * intersecting lifetime (first fit), as in TFLite's "greedy by size" planner.
 */
#ifndef MOPT_RUNTIME_PLANNER_H
#define MOPT_RUNTIME_PLANNER_H

#include <stddef.h>

#include "mopt/status.h"

#define MOPT_ARENA_ALIGN 64

typedef struct mopt_plan_buf {
    size_t size;     /* bytes; rounded up to MOPT_ARENA_ALIGN when placed */
    int first, last; /* inclusive lifetime in op steps */
    size_t offset;   /* result */
} mopt_plan_buf;

/* Assigns offsets; *arena_bytes gets the total (a multiple of the alignment,
 * at least one alignment unit). Returns MOPT_ERR_NOMEM or MOPT_OK. */
mopt_status mopt_plan_arena(mopt_plan_buf *bufs, int n, size_t *arena_bytes);

#endif
