/* mopt/tflite.h - reading and writing .tflite (FlatBuffers, schema v3).
 *
 * The reader treats every byte as untrusted: every offset, length and
 * alignment is checked, recursion and object counts are limited, and a
 * malformed file is rejected with one line such as
 *   "model.tflite: tensor 4: buffer index 99 out of range (12 buffers)".
 * Ops outside mopt's op set are refused by name ("unsupported operator
 * BATCH_MATMUL (code 126) at operator 5"). Models with more than one subgraph
 * are refused. Description, metadata and signature defs are kept.
 *
 * The writer produces a verifier-clean flatbuffer: buffers' data 16-byte
 * aligned, both opcode fields filled (deprecated_builtin_code = min(code,127)),
 * non-default option values written, buffers[0] empty.
 */
#ifndef MOPT_TFLITE_H
#define MOPT_TFLITE_H

#include <stddef.h>
#include <stdint.h>

#include "mopt/graph.h"
#include "mopt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Parses a TFLite flatbuffer held in memory. `name` is used in error
 * messages (typically the path; may be NULL -> "<memory>"). The data is not
 * kept: the graph owns copies of everything. On success *out is a new graph
 * (free with mopt_graph_free). The result is structurally sound (indices in
 * range, buffer sizes match shapes) but not yet semantically validated: call
 * mopt_graph_validate. */
mopt_status mopt_tflite_read_mem(const void *data, size_t size, const char *name,
                                 mopt_graph **out, mopt_error *err);

/* Reads a file and calls mopt_tflite_read_mem. */
mopt_status mopt_tflite_read_file(const char *path, mopt_graph **out, mopt_error *err);

/* Serialises the graph. On success *out_data is a malloc'ed buffer (free())
 * of *out_size bytes. */
mopt_status mopt_tflite_write_mem(const mopt_graph *g, uint8_t **out_data, size_t *out_size,
                                  mopt_error *err);

/* Serialises and writes atomically (temporary file in the same folder, then
 * rename); on any failure no file is left at `path`. */
mopt_status mopt_tflite_write_file(const mopt_graph *g, const char *path, mopt_error *err);

#ifdef __cplusplus
}
#endif
#endif
