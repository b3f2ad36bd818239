/* bench_interp.c - float latency of mopt's interpreter on a .tflite file,
 * with a per-op profile. Not built by CMake; build by hand, e.g.:
 *   gcc -O2 -fopenmp -DMOPT_HAVE_OPENMP=1 -Iinclude -Isrc bench/bench_interp.c \
 *       build/libmopt.a -lz -lm -o /tmp/bench_interp
 * Usage: bench_interp MODEL.tflite [threads] [runs] [--ref | --avx2] [--profile] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/mopt.h"
#include "runtime/interp_internal.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.tflite [threads] [runs] [--ref | --avx2] [--profile]\n",
                argv[0]);
        return 1;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 1, runs = argc > 3 ? atoi(argv[3]) : 100;
    int use_ref = 0, profile = 0;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--ref")) use_ref = 1;
        if (!strcmp(argv[i], "--avx2")) use_ref = 2;
        if (!strcmp(argv[i], "--profile")) profile = 1;
    }
    if (runs < 1) runs = 1;
    mopt_error e;
    mopt_graph *g = NULL;
    if (mopt_tflite_read_file(argv[1], &g, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 2;
    }
    mopt_interp_options o = mopt_interp_default_options();
    o.num_threads = threads;
    mopt_interp *it = NULL;
    double t0 = mopt_now();
    if (mopt_interp_create_isa(g, &o,
                               use_ref == 1   ? &mopt_isa_ref
                               : use_ref == 2 ? &mopt_isa_avx2
                                              : NULL,
                               &it, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 2;
    }
    double t_create = mopt_now() - t0;
    for (int i = 0; i < mopt_interp_num_inputs(it); i++) {
        const mopt_tensor *t = &g->tensors[mopt_interp_input_index(it, i)];
        float *p = mopt_interp_input(it, i);
        int64_t n = mopt_tensor_numel(t);
        for (int64_t k = 0; k < n; k++) p[k] = (float)((k * 7919) % 1000) / 1000.0f;
    }
    for (int k = 0; k < 10; k++) mopt_interp_invoke(it, &e);
    double *lat = malloc(sizeof(double) * (size_t)runs);
    double *ops = calloc((size_t)g->n_ops + 1, sizeof(double));
    double *opmin = malloc(sizeof(double) * ((size_t)g->n_ops + 1));
    for (int i = 0; i <= g->n_ops; i++) opmin[i] = 1e30;
    for (int k = 0; k < runs; k++) {
        double s = mopt_now();
        for (int i = 0; i < g->n_ops; i++) ops[i] = 0;
        if ((profile ? mopt_interp_invoke_timed(it, ops, &e) : mopt_interp_invoke(it, &e))) {
            fprintf(stderr, "%s\n", e.msg);
            return 2;
        }
        lat[k] = mopt_now() - s;
        for (int i = 0; i < g->n_ops; i++) opmin[i] = ops[i] < opmin[i] ? ops[i] : opmin[i];
    }
    qsort(lat, (size_t)runs, sizeof(double), cmp_d);
    printf("%s: isa %s, threads %d, create %.2f ms, median %.3f ms, min %.3f ms, arena %zu B "
           "(naive %zu B)\n",
           argv[1], mopt_interp_isa(it)->name, threads, t_create * 1e3, lat[runs / 2] * 1e3,
           lat[0] * 1e3, mopt_interp_arena_bytes(it), mopt_interp_naive_bytes(it));
    if (profile)
        for (int i = 0; i < g->n_ops; i++)
            printf("  op %3d %-18s %-52s %8.4f ms (min)\n", i, mopt_op_name(g->ops[i].type),
                   mopt_interp_kernel_name(it, i), opmin[i] * 1e3);
    free(lat);
    free(ops);
    free(opmin);
    mopt_interp_free(it);
    mopt_graph_free(g);
    return 0;
}
