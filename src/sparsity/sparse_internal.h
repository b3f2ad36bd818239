/* sparse_internal.h - helpers shared by the pruning, clustering and report
 * sources (not part of the public API). */
#ifndef MOPT_SPARSE_INTERNAL_H
#define MOPT_SPARSE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mopt/graph.h"
#include "mopt/sparsity.h"
#include "mopt/status.h"

/* Round half to even, independent of the FP environment. */
float sp_round_half_even(float x);

/* Tensors (and metadata entries) that reference buffer b. */
int sp_buffer_users(const mopt_graph *g, uint32_t b);

/* Replaces the constant data of tensor t (size must equal its byte size). The
 * data is written in place when no other tensor shares the buffer, else the
 * tensor gets a new buffer (copy-on-write). */
mopt_status sp_tensor_write(mopt_graph *g, int t, const void *data, size_t size);

/* Frees buffers that no tensor or metadata entry references and renumbers
 * the others (buffer 0 stays the empty sentinel). Cannot fail. */
void sp_compact_buffers(mopt_graph *g);

/* Exchanges the contents of two graphs (used to commit a rewritten clone). */
void sp_graph_swap(mopt_graph *a, mopt_graph *b);

/* Layer selection: sel[i] for layer i from an op-indexed `select` array
 * (NULL = all). Returns the number selected. */
int sp_layers_selected(const mopt_weight_layer *layers, int n, const bool *select, bool *sel);

/* Error unless every value is finite; names the tensor. */
mopt_status sp_check_finite(const mopt_graph *g, int t, const float *w, int64_t n,
                            mopt_error *err);

/* Depth multiplier of a DEPTHWISE_CONV_2D op (from the input and weight
 * channels, falling back to the option), 1 for other ops. */
int sp_depth_multiplier(const mopt_graph *g, int op);

/* Distinct values of n floats (0 and -0 count once, NaNs once). Uses
 * `scratch` (n floats, may alias nothing else). */
int64_t sp_count_unique(const float *w, int64_t n, float *scratch);

/* Distinct values per slice along `axis` of a rank-`rank` tensor: the
 * largest count over the slices. Returns -1 when out of memory. */
int64_t sp_max_unique_along(const float *w, int rank, const int32_t *dims, int axis);

#endif
