/* threadpool.c - persistent worker pool with a participating caller (see
 * threadpool.h).
 *
 * Protocol. The whole claimable state of the current job is one 64-bit
 * atomic word:
 *
 *     bits  0..11  next   index of the next unclaimed chunk
 *     bits 12..23  nch    number of chunks of the job
 *     bits 24..31  nt     threads allowed (tid < nt may claim)
 *     bits 32..63  gen    job counter (makes every job's word distinct)
 *
 * A thread claims chunk `next` by a compare-and-swap of the word it read to
 * word + 1, which only succeeds while next < nch. The job's description
 * (fn, arg, n, step) lives in plain fields of the pool, written by the
 * caller before it publishes the word (seq_cst store = release) and read by
 * a worker only AFTER a successful claim (acquire). The caller rewrites
 * those fields for the next job only after it has seen `done` reach the
 * number of chunks other threads claimed (acquire), and each worker
 * increments `done` (release) after its chunk returns. Hence:
 *   - a worker that loaded an old word and was descheduled either fails its
 *     CAS (the word moved on) or, if the word happens to match again, claims
 *     a genuinely unclaimed chunk of the job that is live at that moment and
 *     reads that job's fields - it can never act on a finished job nor mix
 *     two jobs' arguments;
 *   - a finished job's word has next == nch, so nothing of it can be
 *     claimed, and the next job's word replaces it in one store.
 *
 * Waiting. The caller never waits for a worker that has not claimed a
 * chunk: when no chunk is left to claim it waits only until `done` equals
 * the chunks claimed by others (spinning briefly, then sleeping on
 * done_cv). Workers spin for a short while between jobs, then sleep on
 * their own condition variable; the caller signals only sleeping workers
 * whose tid the job uses. Both sleep paths use the same Dekker pattern: the
 * sleeper stores its flag then re-reads the predicate, the waker stores
 * the predicate then reads the flag, all seq_cst, and the signal is sent
 * under the mutex the sleeper holds until it waits, so no wake-up is lost.
 */
#include "runtime/threadpool.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

enum {
    CHUNKS_PER_THREAD = 4, /* a slow thread holds up at most ~1/4 of its share */
    MAX_CHUNKS = 4095,     /* fits the 12-bit fields of the word */
    WORKER_SPIN_NS = 100000, /* idle spin of a worker between jobs */
    CALLER_SPIN_NS = 20000   /* caller's spin before sleeping on done_cv */
};

_Static_assert(MOPT_TPOOL_MAX_THREADS <= 255, "nt must fit the 8-bit field of the word");

#define W_NEXT(w) ((uint32_t)((w)&0xfffu))
#define W_NCH(w) ((uint32_t)(((w) >> 12) & 0xfffu))
#define W_NT(w) ((int)(((w) >> 24) & 0xffu))
#define W_GEN(w) ((uint32_t)((w) >> 32))

typedef struct worker {
    _Alignas(64) pthread_cond_t cv;
    atomic_int sleeping;
    int tid;
    struct mopt_tpool *pool;
    pthread_t thread;
} worker;

struct mopt_tpool {
    _Alignas(64) _Atomic uint64_t word;
    _Alignas(64) atomic_uint done; /* chunks finished by workers, this job */
    atomic_int caller_waiting;
    _Alignas(64) atomic_bool busy; /* a job is running */
    atomic_bool shutdown;
    /* Current job; see the protocol above for who may read it when. */
    mopt_range_fn fn;
    void *arg;
    size_t n, step;
    int max_threads;
    int nworkers; /* started; changed only by the busy-flag holder and free */
    unsigned fork_gen;
    pthread_mutex_t mu;
    pthread_cond_t done_cv;
    worker workers[MOPT_TPOOL_MAX_THREADS - 1];
};

/* ---- fork ---- */

/* Bumped in the child of every fork(); a pool whose fork_gen differs was
 * created in an ancestor process whose workers do not exist here. This and
 * the once flag are the only process-wide state of this file. */
static atomic_uint g_fork_gen;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

static void atfork_child(void) {
    atomic_fetch_add_explicit(&g_fork_gen, 1, memory_order_relaxed);
}

static void atfork_register(void) {
    (void)pthread_atfork(NULL, NULL, atfork_child);
}

/* ---- helpers ---- */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline bool claimable(uint64_t w, int tid) {
    return tid < W_NT(w) && W_NEXT(w) < W_NCH(w);
}

/* Claims a chunk for tid; returns its index or -1 when none is left. */
static long claim(mopt_tpool *p, int tid) {
    uint64_t w = atomic_load_explicit(&p->word, memory_order_relaxed);
    while (claimable(w, tid)) {
        if (atomic_compare_exchange_weak_explicit(&p->word, &w, w + 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return (long)W_NEXT(w);
    }
    return -1;
}

static void run_chunk(mopt_range_fn fn, void *arg, int tid, size_t n, size_t step, long c) {
    size_t b = (size_t)c * step;
    size_t e = n - b < step ? n : b + step;
    fn(arg, tid, b, e);
}

/* ---- workers ---- */

static void worker_finish_chunk(mopt_tpool *p) {
    atomic_fetch_add_explicit(&p->done, 1, memory_order_seq_cst);
    /* Once done counts this chunk the caller may return and publish the
     * next job: from here on only pool-lifetime fields are touched (a stale
     * caller_waiting costs at most a spurious signal). */
    if (atomic_load_explicit(&p->caller_waiting, memory_order_seq_cst)) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_signal(&p->done_cv);
        pthread_mutex_unlock(&p->mu);
    }
}

static void *worker_main(void *self) {
    worker *me = self;
    mopt_tpool *p = me->pool;
    const int tid = me->tid;
    for (;;) {
        long c;
        while ((c = claim(p, tid)) >= 0) {
            /* Claimed: the job's fields are this job's until done counts
             * this chunk. */
            run_chunk(p->fn, p->arg, tid, p->n, p->step, c);
            worker_finish_chunk(p);
        }
        if (atomic_load_explicit(&p->shutdown, memory_order_acquire)) return NULL;
        /* Spin a little: interpreters issue jobs back to back. */
        int64_t t0 = now_ns();
        bool got = false;
        for (unsigned i = 1;; i++) {
            uint64_t w = atomic_load_explicit(&p->word, memory_order_relaxed);
            if (claimable(w, tid) || atomic_load_explicit(&p->shutdown, memory_order_relaxed)) {
                got = true;
                break;
            }
            cpu_relax();
            if ((i & 63) == 0 && now_ns() - t0 > WORKER_SPIN_NS) break;
        }
        if (got) continue;
        pthread_mutex_lock(&p->mu);
        atomic_store_explicit(&me->sleeping, 1, memory_order_seq_cst);
        while (!claimable(atomic_load_explicit(&p->word, memory_order_seq_cst), tid) &&
               !atomic_load_explicit(&p->shutdown, memory_order_seq_cst))
            pthread_cond_wait(&me->cv, &p->mu);
        atomic_store_explicit(&me->sleeping, 0, memory_order_relaxed);
        pthread_mutex_unlock(&p->mu);
    }
}

/* Starts workers until `want` exist (or thread creation fails). Called by
 * the busy-flag holder only. Workers block every signal: asynchronous
 * signals go to the application's own threads. */
static void start_workers(mopt_tpool *p, int want) {
    if (p->nworkers >= want) return;
    sigset_t all, old;
    sigfillset(&all);
    if (pthread_sigmask(SIG_SETMASK, &all, &old) != 0) return;
    while (p->nworkers < want) {
        worker *w = &p->workers[p->nworkers];
        w->tid = p->nworkers + 1;
        w->pool = p;
        atomic_init(&w->sleeping, 0);
        if (pthread_cond_init(&w->cv, NULL) != 0) break;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            pthread_cond_destroy(&w->cv);
            break;
        }
        p->nworkers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* ---- public ---- */

mopt_tpool *mopt_tpool_create(int max_threads) {
    pthread_once(&g_atfork_once, atfork_register);
    mopt_tpool *p = aligned_alloc(64, (sizeof(mopt_tpool) + 63) / 64 * 64);
    if (!p) return NULL;
    atomic_init(&p->word, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->caller_waiting, 0);
    atomic_init(&p->busy, false);
    atomic_init(&p->shutdown, false);
    p->fn = NULL;
    p->arg = NULL;
    p->n = p->step = 0;
    p->max_threads = max_threads < 1 ? 1
                     : max_threads > MOPT_TPOOL_MAX_THREADS ? MOPT_TPOOL_MAX_THREADS
                                                            : max_threads;
    p->nworkers = 0;
    p->fork_gen = atomic_load_explicit(&g_fork_gen, memory_order_relaxed);
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->done_cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    return p;
}

void mopt_tpool_free(mopt_tpool *p) {
    if (!p) return;
    if (p->fork_gen != atomic_load_explicit(&g_fork_gen, memory_order_relaxed)) {
        /* Created before a fork: its threads and the state of its mutex
         * belong to the parent; only the memory is ours. */
        free(p);
        return;
    }
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->shutdown, true, memory_order_seq_cst);
    for (int i = 0; i < p->nworkers; i++) pthread_cond_signal(&p->workers[i].cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nworkers; i++) {
        pthread_join(p->workers[i].thread, NULL);
        pthread_cond_destroy(&p->workers[i].cv);
    }
    pthread_cond_destroy(&p->done_cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int mopt_tpool_workers(const mopt_tpool *p) {
    return p ? p->nworkers : 0;
}

void mopt_tpool_run(mopt_tpool *p, int num_threads, size_t n, mopt_range_fn fn, void *arg) {
    if (n == 0) return;
    int nt = num_threads < 1 ? 1 : num_threads;
    if (p && nt > p->max_threads) nt = p->max_threads;
    if ((size_t)nt > n) nt = (int)n;
    if (nt < 2 || !p || p->fork_gen != atomic_load_explicit(&g_fork_gen, memory_order_relaxed) ||
        atomic_exchange_explicit(&p->busy, true, memory_order_acquire)) {
        fn(arg, 0, 0, n);
        return;
    }
    start_workers(p, nt - 1);
    if (nt > p->nworkers + 1) nt = p->nworkers + 1;
    if (nt < 2) {
        atomic_store_explicit(&p->busy, false, memory_order_release);
        fn(arg, 0, 0, n);
        return;
    }

    size_t nch = (size_t)nt * CHUNKS_PER_THREAD;
    if (nch > n) nch = n;
    if (nch > MAX_CHUNKS) nch = MAX_CHUNKS;
    size_t step = n / nch + (n % nch != 0);
    nch = n / step + (n % step != 0); /* no empty trailing chunk */

    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->step = step;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&p->word, memory_order_relaxed);
    uint64_t w = ((uint64_t)(W_GEN(old) + 1u) << 32) | ((uint64_t)nt << 24) | ((uint64_t)nch << 12);
    atomic_store_explicit(&p->word, w, memory_order_seq_cst);

    /* Wake the sleeping workers this job can use. */
    bool any = false;
    for (int i = 0; i < nt - 1 && !any; i++)
        any = atomic_load_explicit(&p->workers[i].sleeping, memory_order_seq_cst) != 0;
    if (any) {
        pthread_mutex_lock(&p->mu);
        for (int i = 0; i < nt - 1; i++)
            if (atomic_load_explicit(&p->workers[i].sleeping, memory_order_relaxed))
                pthread_cond_signal(&p->workers[i].cv);
        pthread_mutex_unlock(&p->mu);
    }

    unsigned mine = 0;
    long c;
    while ((c = claim(p, 0)) >= 0) {
        run_chunk(fn, arg, 0, n, step, c);
        mine++;
    }
    /* Every chunk is claimed; wait only for those other threads hold. */
    const unsigned others = (unsigned)nch - mine;
    if (atomic_load_explicit(&p->done, memory_order_acquire) != others) {
        int64_t t0 = now_ns();
        bool finished = false;
        for (unsigned i = 1;; i++) {
            if (atomic_load_explicit(&p->done, memory_order_acquire) == others) {
                finished = true;
                break;
            }
            cpu_relax();
            if ((i & 63) == 0 && now_ns() - t0 > CALLER_SPIN_NS) break;
        }
        if (!finished) {
            /* Sleeping frees this core for a preempted worker to finish. */
            pthread_mutex_lock(&p->mu);
            atomic_store_explicit(&p->caller_waiting, 1, memory_order_seq_cst);
            while (atomic_load_explicit(&p->done, memory_order_seq_cst) != others)
                pthread_cond_wait(&p->done_cv, &p->mu);
            atomic_store_explicit(&p->caller_waiting, 0, memory_order_relaxed);
            pthread_mutex_unlock(&p->mu);
        }
    }
    atomic_store_explicit(&p->busy, false, memory_order_release);
}
