/* parallel.c - the one place that talks to OpenMP. Kernels describe work as
 * ranges of independent outputs; this splits the range into contiguous
 * chunks run by the team. */
#include "runtime/kernel.h"

#ifdef MOPT_HAVE_OPENMP
#include <omp.h>
#endif

void mopt_parallel_for(int num_threads, size_t n, mopt_range_fn fn, void *arg) {
    if (n == 0) return;
    int nt = num_threads < 1 ? 1 : num_threads;
    if ((size_t)nt > n) nt = (int)n;
    if (nt == 1) {
        fn(arg, 0, 0, n);
        return;
    }
#ifdef MOPT_HAVE_OPENMP
    /* A few chunks per thread, handed out dynamically: a thread slowed down
     * by another process on its core does not hold the others up. Chunk
     * boundaries never change results (callers split over outputs). */
    size_t chunks = (size_t)nt * 4 < n ? (size_t)nt * 4 : n;
    size_t step = (n + chunks - 1) / chunks;
    chunks = (n + step - 1) / step;
    long long nc = (long long)chunks;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (long long c = 0; c < nc; c++) {
        size_t b = (size_t)c * step, e = b + step < n ? b + step : n;
        fn(arg, omp_get_thread_num(), b, e);
    }
#else
    fn(arg, 0, 0, n);
#endif
}
