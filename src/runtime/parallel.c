/* parallel.c - the one place that talks to OpenMP. Kernels describe work as
 * ranges of independent outputs; this splits the range statically into
 * contiguous chunks, one per thread. */
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
#pragma omp parallel num_threads(nt)
    {
        /* The team may be smaller than asked (nested regions, limits). */
        int tid = omp_get_thread_num(), team = omp_get_num_threads();
        size_t chunk = n / (size_t)team, extra = n % (size_t)team;
        size_t b = (size_t)tid * chunk + ((size_t)tid < extra ? (size_t)tid : extra);
        size_t e = b + chunk + ((size_t)tid < extra ? 1 : 0);
        if (b < e) fn(arg, tid, b, e);
    }
#else
    fn(arg, 0, 0, n);
#endif
}
