/* pool.c - work-sharing thread pool (see pool.h).
 *
 * Job protocol: the caller writes the job (fn, ctx, n), then stores the chunk
 * word `next` = job:32 | chunks:16 | index:16 and publishes `seq` = job. A
 * thread claims chunk i with a compare-exchange of next from (job, chunks, i)
 * to (job, chunks, i + 1). The chunk count travels in the same word as the
 * job id and the index, so a straggler still holding an older job id can
 * neither claim a chunk of a newer job nor misread its chunk count; every
 * chunk runs exactly once. `done` counts finished chunks; the caller returns
 * when done == chunks, so all chunks of a job finish before the next job is
 * written.
 */
#include "train/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Idle workers spin this many polls before sleeping: keeps back-to-back
 * jobs (one per op) cheap without burning a core between training steps. */
#define WORKER_SPIN 20000
#define CALLER_SPIN 2000

struct tr_pool {
    int n_workers;
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint_fast32_t seq;
    atomic_bool stop;
    atomic_int sleeping;
    /* the current job */
    tr_range_fn fn;  /* read only after a chunk was claimed (job still active) */
    void *ctx;
    int64_t n;
    atomic_uint_fast64_t next; /* job:32 | chunks:16 | index:16 */
    atomic_int_fast64_t done;
};

#define MAX_CHUNKS 0xFFFF

static void run_chunks(tr_pool *p, uint32_t job) {
    for (;;) {
        uint_fast64_t v = atomic_load_explicit(&p->next, memory_order_acquire);
        for (;;) {
            if ((uint32_t)(v >> 32) != job || (v & 0xFFFFu) >= ((v >> 16) & 0xFFFFu)) return;
            if (atomic_compare_exchange_weak_explicit(&p->next, &v, v + 1, memory_order_acq_rel,
                                                      memory_order_acquire))
                break;
        }
        /* a genuine claim of this job: it cannot finish (so its fields cannot
         * be rewritten) before this chunk is counted done */
        const int64_t i = (int64_t)(v & 0xFFFFu), nch = (int64_t)((v >> 16) & 0xFFFFu);
        const int64_t b = p->n * i / nch, e = p->n * (i + 1) / nch;
        p->fn(p->ctx, b, e);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_acq_rel);
    }
}

static void *worker(void *arg) {
    tr_pool *p = arg;
    uint32_t seen = (uint32_t)atomic_load(&p->seq);
    for (;;) {
        int spins = 0;
        uint32_t s;
        while ((s = (uint32_t)atomic_load_explicit(&p->seq, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&p->stop, memory_order_relaxed)) {
            if (++spins < WORKER_SPIN) {
                CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleeping, 1);
            while ((uint32_t)atomic_load(&p->seq) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleeping, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = s;
        run_chunks(p, s);
    }
}

tr_pool *tr_pool_create(int threads) {
    if (threads <= 1) return NULL;
    tr_pool *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->th = calloc((size_t)threads - 1, sizeof(pthread_t));
    if (!p->th || pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p->th);
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p->th);
        free(p);
        return NULL;
    }
    atomic_init(&p->seq, 0);
    atomic_init(&p->stop, false);
    atomic_init(&p->sleeping, 0);
    atomic_init(&p->next, 0);
    atomic_init(&p->done, 0);
    for (int i = 0; i < threads - 1; i++) {
        if (pthread_create(&p->th[i], NULL, worker, p) != 0) break;
        p->n_workers++;
    }
    if (p->n_workers == 0) {
        tr_pool_free(p);
        return NULL;
    }
    return p;
}

void tr_pool_free(tr_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++) pthread_join(p->th[i], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->th);
    free(p);
}

int tr_pool_threads(const tr_pool *p) { return p ? p->n_workers + 1 : 1; }

void tr_pool_run(tr_pool *p, int64_t n, int64_t min_chunk, tr_range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (min_chunk < 1) min_chunk = 1;
    int64_t chunks = p ? (int64_t)(p->n_workers + 1) * 4 : 1;
    if (chunks > n / min_chunk) chunks = n / min_chunk;
    if (chunks > MAX_CHUNKS) chunks = MAX_CHUNKS;
    if (!p || chunks < 2) {
        fn(ctx, 0, n);
        return;
    }
    const uint32_t job = (uint32_t)atomic_load(&p->seq) + 1u;
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->next, (uint_fast64_t)job << 32 | (uint_fast64_t)chunks << 16,
                          memory_order_release);
    atomic_store_explicit(&p->seq, job, memory_order_release);
    if (atomic_load(&p->sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    run_chunks(p, job);
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < chunks) {
        if (++spins < CALLER_SPIN)
            CPU_RELAX();
        else
            sched_yield(); /* let a preempted worker finish its chunk */
    }
}
