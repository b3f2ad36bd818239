/* mopt/util.h - small helpers shared by the library and the CLI. */
#ifndef MOPT_UTIL_H
#define MOPT_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "mopt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads a whole file into a malloc'ed buffer (free()). Refuses files over
 * max_size bytes (0 = 2 GiB). */
mopt_status mopt_file_read_all(const char *path, size_t max_size, uint8_t **out, size_t *out_size,
                               mopt_error *err);

/* Writes data to `path` atomically: a temporary file in the same folder,
 * fsync, then rename. On failure the temporary file is removed and `path`
 * is untouched. */
mopt_status mopt_file_write_atomic(const char *path, const void *data, size_t size,
                                   mopt_error *err);

/* 16-byte aligned allocation (free with mopt_aligned_free). size 0 -> NULL. */
void *mopt_aligned_alloc(size_t size);
void mopt_aligned_free(void *p);

/* zlib level-9 compressed size of data (as the reference toolkit measures
 * model size), or -1 on failure. */
int64_t mopt_gzip_size(const void *data, size_t size);

/* Monotonic time in seconds. */
double mopt_now(void);

#ifdef __cplusplus
}
#endif
#endif
