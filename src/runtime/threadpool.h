/* threadpool.h - a persistent pthread worker pool for range jobs.
 *
 * A job is fn(arg, tid, begin, end) over contiguous chunks of [0, n). The
 * calling thread takes part (tid 0) and claims chunks from the same atomic
 * counter as the workers (tids 1 .. nt-1), so a job needs no worker at all
 * to finish: the caller returns as soon as every chunk is done and waits
 * only for chunks another thread has already claimed. A worker that is
 * descheduled, asleep or late never holds the caller up, which is what an
 * OpenMP barrier does on a loaded machine.
 *
 * Workers are started lazily (up to max_threads - 1), spin briefly after
 * each job and then sleep on a condition variable.
 *
 * One job runs on a pool at a time. A caller that finds the pool busy (a
 * job from another thread, or a nested call from inside a chunk) runs its
 * job inline on its own thread with tid 0, so two interpreters on two
 * threads never block each other and nesting cannot deadlock.
 *
 * After fork() the child cannot use the parent's workers: every job of a
 * pool created before the fork runs inline in the child.
 */
#ifndef MOPT_RUNTIME_THREADPOOL_H
#define MOPT_RUNTIME_THREADPOOL_H

#include <stddef.h>

#include "runtime/kernel.h"

/* Hard cap on threads per job (caller included); larger requests are
 * clamped. */
#define MOPT_TPOOL_MAX_THREADS 64

typedef struct mopt_tpool mopt_tpool;

/* A pool for jobs of up to max_threads threads (caller included; clamped
 * to [1, MOPT_TPOOL_MAX_THREADS]). No thread starts until a job needs it.
 * NULL when out of memory. */
mopt_tpool *mopt_tpool_create(int max_threads);

/* Stops and joins the workers and frees the pool. NULL is a no-op. Must
 * not run concurrently with mopt_tpool_run on the same pool. */
void mopt_tpool_free(mopt_tpool *p);

/* Runs fn over [0, n) split into contiguous chunks on up to num_threads
 * threads (the caller included), and returns once every chunk has run.
 * Each index is covered by exactly one call; tids of calls that run at the
 * same time are distinct and in [0, num_threads). p == NULL, n < 2 or
 * num_threads < 2 run fn(arg, 0, 0, n) inline. */
void mopt_tpool_run(mopt_tpool *p, int num_threads, size_t n, mopt_range_fn fn, void *arg);

/* Worker threads started so far (for tests). */
int mopt_tpool_workers(const mopt_tpool *p);

#endif
