/* parallel.c - the one place the interpreter parallelises. Kernels describe
 * work as ranges of independent outputs; mopt_parallel_for hands the range
 * to a persistent worker pool (threadpool.c) in which the caller works too
 * and never waits for a worker that has not started a chunk. (The previous
 * OpenMP parallel-for waited at its closing barrier for every team member:
 * with the other core busy, each region cost a scheduler time slice.)
 *
 * The pool is process-wide, created on first use under pthread_once and
 * never freed (its workers sleep when idle and end with the process). It
 * holds up to MOPT_TPOOL_MAX_THREADS threads, started lazily as far as the
 * largest num_threads asked for. One job runs on it at a time: a second
 * interpreter calling from another thread while a job runs, or a kernel
 * nesting a call, runs its job single-threaded on its own thread. Results
 * do not depend on this, since callers split over outputs only. */
#include "runtime/kernel.h"
#include "runtime/threadpool.h"

#include <pthread.h>

static pthread_once_t g_pool_once = PTHREAD_ONCE_INIT;
static mopt_tpool *g_pool; /* written once under g_pool_once; NULL: inline */

static void pool_init(void) {
    g_pool = mopt_tpool_create(MOPT_TPOOL_MAX_THREADS);
}

void mopt_parallel_for(int num_threads, size_t n, mopt_range_fn fn, void *arg) {
    if (n == 0) return;
    /* One item, or one thread: no pool (and none is ever created by
     * single-threaded users). */
    if (num_threads < 2 || n < 2) {
        fn(arg, 0, 0, n);
        return;
    }
    pthread_once(&g_pool_once, pool_init);
    mopt_tpool_run(g_pool, num_threads, n, fn, arg);
}
