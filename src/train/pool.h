/* pool.h - the training engine's thread pool (internal).
 *
 * tr_pool_run(pool, n, fn, ctx) calls fn(ctx, begin, end) over [0, n) cut
 * into chunks. The calling thread runs chunks itself; workers that are awake
 * take chunks too; the call returns when every chunk is done. A worker that
 * is not running (another process holds its core) simply takes no chunk, so
 * a busy machine degrades to serial speed instead of stalling at barriers as
 * fork/join OpenMP does. Callers split over outputs only, so which thread
 * runs which chunk never changes a result.
 */
#ifndef MOPT_TRAIN_POOL_H
#define MOPT_TRAIN_POOL_H

#include <stdint.h>

#ifndef MOPT_TRAIN_POOL_T
#define MOPT_TRAIN_POOL_T
typedef struct tr_pool tr_pool;
#endif
typedef void (*tr_range_fn)(void *ctx, int64_t begin, int64_t end);

/* A pool of `threads` threads in total (threads - 1 workers). NULL on
 * failure or when threads <= 1 (tr_pool_run then runs serially). */
tr_pool *tr_pool_create(int threads);
void tr_pool_free(tr_pool *p); /* NULL is a no-op */
int tr_pool_threads(const tr_pool *p); /* 1 for NULL */

/* Runs fn over [0, n): in parallel when pool != NULL and n >= 2, with
 * chunks of at least min_chunk items. */
void tr_pool_run(tr_pool *p, int64_t n, int64_t min_chunk, tr_range_fn fn, void *ctx);

#endif
