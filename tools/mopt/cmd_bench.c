/* cmd_bench.c - `mopt bench MODEL`: latency of invoke on random inputs. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const cli_option opts[] = {
    {"threads", 't', true}, {"runs", 'r', true}, {"warmup", 'w', true},
    {"seed", 0, true},      {"json", 0, false},
    {"rounding", 0, true},
};
enum { OPT_THREADS, OPT_RUNS, OPT_WARMUP, OPT_SEED, OPT_JSON, OPT_ROUNDING };

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench_main(int argc, char **argv) {
    cli_parser p;
    cli_parser_init(&p, "bench", argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])));
    const char *model = NULL, *arg;
    int64_t threads = 0, runs = 50, warmup = 5, seed = 1;
    int rounding = MOPT_ROUND_DOUBLE;
    bool json = false;
    int r;
    while ((r = cli_next(&p, &arg)) != CLI_END) {
        switch (r) {
        case CLI_HELP: return cli_print_help(&cli_cmd_bench);
        case CLI_BAD: return 1;
        case CLI_POSITIONAL:
            if (model)
                return cli_usage_error("bench", "unexpected argument '%s'", arg);
            model = arg;
            break;
        case OPT_ROUNDING:
            if (!cli_parse_rounding("bench", arg, &rounding))
                return 1;
            break;
        case OPT_THREADS:
            if (!cli_parse_int("bench", "threads", arg, 1, 1024, &threads))
                return 1;
            break;
        case OPT_RUNS:
            if (!cli_parse_int("bench", "runs", arg, 1, 10000000, &runs))
                return 1;
            break;
        case OPT_WARMUP:
            if (!cli_parse_int("bench", "warmup", arg, 0, 10000000, &warmup))
                return 1;
            break;
        case OPT_SEED:
            if (!cli_parse_int("bench", "seed", arg, 0, INT64_MAX, &seed))
                return 1;
            break;
        case OPT_JSON: json = true; break;
        default: return cli_usage_error("bench", "internal: unhandled option");
        }
    }
    if (!model)
        return cli_usage_error("bench", "missing MODEL");

    cli_model m;
    int rc = cli_model_load(model, false, &m);
    if (rc)
        return rc;
    mopt_interp *it = NULL;
    double *times = NULL;
    mopt_error err;
    mopt_error_clear(&err);
    if ((rc = cli_interp_create_rounding(&m, (int)threads, rounding, &it)) != 0)
        goto done;

    /* Same inputs on every run and every machine: a fixed-seed PRNG. */
    uint64_t state = (uint64_t)seed;
    for (int k = 0; k < mopt_interp_num_inputs(it); k++) {
        const mopt_tensor *t = &m.graph->tensors[mopt_interp_input_index(it, k)];
        int64_t n = mopt_tensor_numel(t), bytes = mopt_tensor_nbytes(t);
        void *in = mopt_interp_input(it, k);
        if (n <= 0 || bytes <= 0 || !in)
            continue;
        memset(in, 0, (size_t)bytes);
        cli_fill_random(in, t->dtype, n, &state);
    }

    times = malloc((size_t)runs * sizeof(double));
    if (!times) {
        rc = cli_error(MOPT_ERR_NOMEM, "%s: out of memory", model);
        goto done;
    }
    cli_progress prog;
    cli_progress_begin(&prog, "bench", warmup + runs);
    for (int64_t i = 0; i < warmup + runs; i++) {
        double t0 = mopt_now();
        mopt_status st = mopt_interp_invoke(it, &err);
        double dt = mopt_now() - t0;
        if (st != MOPT_OK) {
            cli_progress_end(&prog);
            mopt_error_prefix(&err, "%s", model);
            rc = cli_fail(&err);
            goto done;
        }
        if (i >= warmup)
            times[i - warmup] = dt * 1000.0;
        cli_progress_update(&prog, i + 1);
    }
    cli_progress_end(&prog);

    double sum = 0;
    for (int64_t i = 0; i < runs; i++)
        sum += times[i];
    qsort(times, (size_t)runs, sizeof(double), cmp_double);
    double mn = times[0], mx = times[runs - 1], mean = sum / (double)runs;
    double median = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);

    if (json) {
        cli_json j;
        cli_json_init(&j, stdout);
        cli_json_object_begin(&j, NULL);
        cli_json_string(&j, "model", model);
        if (threads > 0)
            cli_json_int(&j, "threads", threads);
        else
            cli_json_null(&j, "threads");
        cli_json_int(&j, "runs", runs);
        cli_json_int(&j, "warmup", warmup);
        cli_json_int(&j, "seed", seed);
        cli_json_double(&j, "min_ms", mn);
        cli_json_double(&j, "median_ms", median);
        cli_json_double(&j, "mean_ms", mean);
        cli_json_double(&j, "max_ms", mx);
        cli_json_int(&j, "arena_bytes", (int64_t)mopt_interp_arena_bytes(it));
        cli_json_object_end(&j);
        cli_json_finish(&j);
    } else {
        char th[32];
        if (threads > 0)
            snprintf(th, sizeof(th), "%" PRId64, threads);
        else
            snprintf(th, sizeof(th), "default");
        printf("%s: %" PRId64 " runs (%" PRId64 " warm-up, threads %s)  min %.3f ms  median "
               "%.3f ms  mean %.3f ms  max %.3f ms\n",
               model, runs, warmup, th, mn, median, mean, mx);
    }
    rc = 0;

done:
    free(times);
    mopt_interp_free(it);
    cli_model_free(&m);
    return rc;
}

const cli_command cli_cmd_bench = {
    "bench",
    "latency of a model on random inputs (min, median, mean)",
    "usage: mopt bench MODEL [--threads N] [--runs N] [--warmup N] [--seed S] [--json]\n"
    "                  [--rounding double|single|fp32]\n"
    "\n"
    "Fills the inputs once with pseudo-random values from a fixed seed (float32:\n"
    "uniform in [-1, 1); int8/uint8: uniform over the type), runs WARMUP untimed\n"
    "invocations, then times RUNS invocations and prints min, median, mean and max\n"
    "latency in milliseconds.\n"
    "\n"
    "options:\n"
    "  -t, --threads N   threads for the runtime (default: all cores)\n"    "      --rounding MODE   integer requantization: double (TFLite reference,\n"
    "                        default), single (TFLITE_SINGLE_ROUNDING) or fp32\n"
    "                        (float multiply, round half to even, as XNNPACK)\n"
    "  -r, --runs N      timed runs (default 50)\n"
    "  -w, --warmup N    untimed runs first (default 5)\n"
    "  --seed S          PRNG seed for the inputs (default 1)\n"
    "  --json            {\"min_ms\", \"median_ms\", \"mean_ms\", \"max_ms\", ...}\n",
    bench_main,
};
