/* Unit tests for the worker pool behind mopt_parallel_for
 * (src/runtime/threadpool.c, parallel.c):
 *  - every index of [0, n) is covered exactly once, by contiguous ranges,
 *    for many (n, threads) pairs, on the process pool and on private pools;
 *  - tids are in [0, threads) and never shared by two chunks running at the
 *    same time; workers really take part in slow jobs;
 *  - nested calls and two callers on two threads at once (inline fallback)
 *    neither deadlock nor lose work; two interpreters on two threads give
 *    the single-threaded results;
 *  - 100k tiny jobs (2 and 8 threads on this small machine) finish, and a
 *    child process after fork() can still run jobs;
 *  - private pools start and join their workers cleanly (valgrind / TSan).
 * A watchdog (alarm) turns any deadlock into a failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mopt/mopt.h"
#include "runtime/kernel.h"
#include "runtime/threadpool.h"

/* ---- coverage checking ---- */

typedef struct cover {
    size_t n;
    int nt;
    atomic_uchar *hits;         /* per index */
    atomic_int in_use[MOPT_TPOOL_MAX_THREADS + 1]; /* per tid: chunk running */
    atomic_int bad;             /* any violation seen */
    atomic_int worker_chunks;   /* chunks run with tid != 0 */
    atomic_size_t calls;
    unsigned sleep_us;          /* per chunk, to let workers join */
} cover;

static void cover_init(cover *c, size_t n, int nt) {
    memset(c, 0, sizeof *c);
    c->n = n;
    c->nt = nt;
    c->hits = calloc(n ? n : 1, sizeof *c->hits);
    assert_non_null(c->hits);
}

static void cover_range(void *arg, int tid, size_t b, size_t e) {
    cover *c = arg;
    int lim = c->nt < 1 ? 1 : c->nt;
    if (tid < 0 || tid >= lim || tid > MOPT_TPOOL_MAX_THREADS || b >= e || e > c->n) {
        atomic_store(&c->bad, 1);
        return;
    }
    if (atomic_exchange(&c->in_use[tid], 1) != 0) atomic_store(&c->bad, 2);
    if (tid != 0) atomic_fetch_add(&c->worker_chunks, 1);
    atomic_fetch_add(&c->calls, 1);
    for (size_t i = b; i < e; i++) atomic_fetch_add(&c->hits[i], 1);
    if (c->sleep_us) {
        struct timespec ts = {0, (long)c->sleep_us * 1000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&c->in_use[tid], 0);
}

/* Checks and frees; returns the number of chunks that ran on workers. */
static int cover_check(cover *c) {
    assert_int_equal(atomic_load(&c->bad), 0);
    for (size_t i = 0; i < c->n; i++)
        if (atomic_load(&c->hits[i]) != 1) {
            fprintf(stderr, "n=%zu nt=%d: index %zu covered %d times\n", c->n, c->nt, i,
                    (int)atomic_load(&c->hits[i]));
            fail();
        }
    if (c->n == 0) assert_int_equal(atomic_load(&c->calls), 0);
    int w = atomic_load(&c->worker_chunks);
    free(c->hits);
    c->hits = NULL;
    return w;
}

static const size_t sizes[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 63, 64, 65, 100, 257,
                               1000, 4095, 4096, 4097, 16383, 100003};
static const int threads[] = {-1, 0, 1, 2, 3, 4, 5, 7, 8, 16, 64, 65, 1000};

static void test_cover_process_pool(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        for (size_t k = 0; k < sizeof threads / sizeof *threads; k++)
            for (int rep = 0; rep < 3; rep++) {
                cover c;
                cover_init(&c, sizes[i], threads[k]);
                mopt_parallel_for(threads[k], sizes[i], cover_range, &c);
                cover_check(&c);
            }
}

static void test_cover_private_pool(void **state) {
    (void)state;
    /* A pool smaller than the requests: jobs are clamped to its size. */
    mopt_tpool *p = mopt_tpool_create(3);
    assert_non_null(p);
    assert_int_equal(mopt_tpool_workers(p), 0); /* lazy */
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        for (size_t k = 0; k < sizeof threads / sizeof *threads; k++) {
            cover c;
            cover_init(&c, sizes[i], threads[k] < 3 ? threads[k] : 3);
            mopt_tpool_run(p, threads[k], sizes[i], cover_range, &c);
            cover_check(&c);
        }
    assert_true(mopt_tpool_workers(p) <= 2);
    mopt_tpool_free(p);
    mopt_tpool_free(NULL);
    /* NULL pool: inline. */
    cover c;
    cover_init(&c, 10, 1);
    mopt_tpool_run(NULL, 4, 10, cover_range, &c);
    assert_int_equal(atomic_load(&c.calls), 1);
    cover_check(&c);
}

static void test_workers_take_part(void **state) {
    (void)state;
    /* Slow chunks (1 ms): a worker wakes up well within one job. Several
     * jobs so a loaded machine cannot make this flaky. */
    int on_workers = 0;
    for (int rep = 0; rep < 50 && on_workers == 0; rep++) {
        cover c;
        cover_init(&c, 16, 2);
        c.sleep_us = 1000;
        mopt_parallel_for(2, 16, cover_range, &c);
        on_workers += cover_check(&c);
    }
    assert_true(on_workers > 0);
    /* Same for 4 threads on a private pool: tids stay distinct. */
    mopt_tpool *p = mopt_tpool_create(4);
    assert_non_null(p);
    on_workers = 0;
    for (int rep = 0; rep < 50 && on_workers == 0; rep++) {
        cover c;
        cover_init(&c, 40, 4);
        c.sleep_us = 500;
        mopt_tpool_run(p, 4, 40, cover_range, &c);
        on_workers += cover_check(&c);
    }
    assert_true(on_workers > 0);
    assert_int_equal(mopt_tpool_workers(p), 3);
    mopt_tpool_free(p);
}

/* ---- nesting ---- */

typedef struct nest {
    cover inner[8];
    atomic_int bad;
} nest;

static void nest_range(void *arg, int tid, size_t b, size_t e) {
    nest *s = arg;
    for (size_t i = b; i < e; i++) {
        /* The pool is busy with the outer job: this runs inline, tid 0. */
        mopt_parallel_for(2, s->inner[i].n, cover_range, &s->inner[i]);
        if (atomic_load(&s->inner[i].calls) != 1) atomic_store(&s->bad, 1);
    }
    (void)tid;
}

static void test_nested(void **state) {
    (void)state;
    for (int rep = 0; rep < 50; rep++) {
        nest s;
        memset(&s, 0, sizeof s);
        for (int i = 0; i < 8; i++) cover_init(&s.inner[i], 100 + (size_t)i, 2);
        mopt_parallel_for(2, 8, nest_range, &s);
        assert_int_equal(atomic_load(&s.bad), 0);
        for (int i = 0; i < 8; i++) cover_check(&s.inner[i]);
    }
}

/* ---- two callers at once ---- */

typedef struct caller_arg {
    int nt;
    int jobs;
    uint32_t seed;
    atomic_int *failures;
} caller_arg;

static void *caller_main(void *p) {
    caller_arg *a = p;
    uint32_t s = a->seed;
    for (int j = 0; j < a->jobs; j++) {
        s = s * 1664525u + 1013904223u;
        size_t n = (s >> 8) % 3000;
        cover c;
        memset(&c, 0, sizeof c);
        c.n = n;
        c.nt = a->nt;
        c.hits = calloc(n ? n : 1, sizeof *c.hits);
        if (!c.hits) abort();
        mopt_parallel_for(a->nt, n, cover_range, &c);
        int ok = atomic_load(&c.bad) == 0;
        for (size_t i = 0; i < n && ok; i++) ok = atomic_load(&c.hits[i]) == 1;
        if (!ok) atomic_fetch_add(a->failures, 1);
        free(c.hits);
    }
    return NULL;
}

static void test_two_callers(void **state) {
    (void)state;
    atomic_int failures = 0;
    caller_arg a[3] = {{2, 3000, 1, &failures}, {3, 3000, 2, &failures}, {2, 3000, 3, &failures}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++) assert_int_equal(pthread_create(&th[i], NULL, caller_main, &a[i]), 0);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&failures), 0);
}

/* ---- stress ---- */

static void tiny_range(void *arg, int tid, size_t b, size_t e) {
    atomic_size_t *sum = arg;
    size_t s = 0;
    for (size_t i = b; i < e; i++) s += i + 1;
    atomic_fetch_add_explicit(sum, s, memory_order_relaxed);
    (void)tid;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void stress(int nt, int jobs) {
    double t0 = now_s();
    for (int j = 0; j < jobs; j++) {
        size_t n = 2 + (size_t)(j % 31);
        atomic_size_t sum = 0;
        mopt_parallel_for(nt, n, tiny_range, &sum);
        /* every job is complete when the call returns */
        if (atomic_load(&sum) != n * (n + 1) / 2) {
            fprintf(stderr, "job %d (n=%zu, %d threads): sum %zu\n", j, n, nt,
                    (size_t)atomic_load(&sum));
            fail();
        }
    }
    fprintf(stderr, "# %d tiny jobs on %d threads: %.2f us/job\n", jobs, nt,
            1e6 * (now_s() - t0) / jobs);
}

static void test_stress_tiny_jobs(void **state) {
    (void)state;
    stress(2, 100000);
    /* More threads than cores: jobs must not wait for descheduled workers. */
    stress(8, 100000);
}

static void test_pool_create_free_cycles(void **state) {
    (void)state;
    for (int k = 0; k < 50; k++) {
        mopt_tpool *p = mopt_tpool_create(2 + k % 4);
        assert_non_null(p);
        if (k % 3 != 0) {
            atomic_size_t sum = 0;
            mopt_tpool_run(p, 8, 100, tiny_range, &sum);
            assert_int_equal(atomic_load(&sum), 5050);
        }
        mopt_tpool_free(p); /* joins workers whether asleep, spinning or never started */
    }
}

static void test_fork_child(void **state) {
    (void)state;
    atomic_size_t sum = 0;
    mopt_parallel_for(2, 1000, tiny_range, &sum); /* pool and worker exist */
    assert_int_equal(atomic_load(&sum), 500500);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(20);
        for (int j = 0; j < 1000; j++) {
            atomic_size_t s = 0;
            mopt_parallel_for(2, 1000, tiny_range, &s);
            if (atomic_load(&s) != 500500) _exit(1);
        }
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- interpreters ---- */

typedef struct interp_run {
    const mopt_graph *g;
    int threads, repeats;
    const float *in;
    size_t in_n;
    float *out;
    size_t out_n;
    mopt_status st;
} interp_run;

static void *interp_main(void *p) {
    interp_run *r = p;
    mopt_interp_options o = mopt_interp_default_options();
    o.num_threads = r->threads;
    mopt_interp *it = NULL;
    mopt_error e;
    r->st = mopt_interp_create(r->g, &o, &it, &e);
    if (r->st) return NULL;
    for (int k = 0; k < r->repeats && r->st == MOPT_OK; k++) {
        memcpy(mopt_interp_input(it, 0), r->in, r->in_n * sizeof(float));
        r->st = mopt_interp_invoke(it, &e);
        if (r->st == MOPT_OK && k == 0)
            memcpy(r->out, mopt_interp_output(it, 0), r->out_n * sizeof(float));
        else if (r->st == MOPT_OK &&
                 memcmp(r->out, mopt_interp_output(it, 0), r->out_n * sizeof(float)) != 0)
            r->st = MOPT_ERR_INTERNAL;
    }
    mopt_interp_free(it);
    return NULL;
}

static void test_interpreters_on_two_threads(void **state) {
    (void)state;
    mopt_graph *g = NULL;
    mopt_error e;
    const char *path = MOPT_SOURCE_DIR "/tests/fixtures/mobilenetv2.tflite";
    if (mopt_tflite_read_file(path, &g, &e) != MOPT_OK) {
        fprintf(stderr, "%s\n", e.msg);
        fail();
    }
    size_t in_n = (size_t)mopt_tensor_numel(&g->tensors[g->inputs[0]]);
    size_t out_n = (size_t)mopt_tensor_numel(&g->tensors[g->outputs[0]]);
    float *in = malloc(in_n * sizeof(float));
    float *ref = malloc(out_n * sizeof(float));
    float *outs[3];
    assert_non_null(in);
    assert_non_null(ref);
    uint32_t s = 12345;
    for (size_t i = 0; i < in_n; i++) {
        s = s * 1664525u + 1013904223u;
        in[i] = (float)(s >> 8) / 8388608.0f - 1.0f;
    }
    interp_run r0 = {g, 1, 1, in, in_n, ref, out_n, MOPT_OK};
    interp_main(&r0);
    assert_int_equal(r0.st, MOPT_OK);
    /* Thread counts one after the other, then three interpreters at once. */
    for (int t = 2; t <= 5; t++) {
        interp_run r = {g, t, 2, in, in_n, malloc(out_n * sizeof(float)), out_n, MOPT_OK};
        interp_main(&r);
        assert_int_equal(r.st, MOPT_OK);
        assert_memory_equal(r.out, ref, out_n * sizeof(float));
        free(r.out);
    }
    interp_run rs[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        outs[i] = malloc(out_n * sizeof(float));
        assert_non_null(outs[i]);
        rs[i] = (interp_run){g, 2 + i % 2, 20, in, in_n, outs[i], out_n, MOPT_OK};
        assert_int_equal(pthread_create(&th[i], NULL, interp_main, &rs[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(rs[i].st, MOPT_OK);
        assert_memory_equal(outs[i], ref, out_n * sizeof(float));
        free(outs[i]);
    }
    free(in);
    free(ref);
    mopt_graph_free(g);
}

static int arm_watchdog(void **state) {
    (void)state;
    /* Default action of SIGALRM ends the process: a deadlock fails. */
    alarm(300);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_cover_process_pool, arm_watchdog),
        cmocka_unit_test_setup(test_cover_private_pool, arm_watchdog),
        cmocka_unit_test_setup(test_workers_take_part, arm_watchdog),
        cmocka_unit_test_setup(test_nested, arm_watchdog),
        cmocka_unit_test_setup(test_two_callers, arm_watchdog),
        cmocka_unit_test_setup(test_stress_tiny_jobs, arm_watchdog),
        cmocka_unit_test_setup(test_pool_create_free_cycles, arm_watchdog),
        cmocka_unit_test_setup(test_fork_child, arm_watchdog),
        cmocka_unit_test_setup(test_interpreters_on_two_threads, arm_watchdog),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
