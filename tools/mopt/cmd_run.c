/* cmd_run.c - `mopt run MODEL --input x.npy [-o y.npy]`: runs a model on
 * NPY inputs, one sample or a stack of N samples. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_IO 16

static const cli_option opts[] = {
    {"input", 'i', true},
    {"output", 'o', true},
    {"threads", 't', true},
    {"rounding", 0, true},
};
enum { OPT_INPUT, OPT_OUTPUT, OPT_THREADS, OPT_ROUNDING };

/* How an NPY array maps onto a model input. */
typedef enum {
    FIT_EXACT,   /* same shape: one run */
    FIT_STACKED, /* [N] + input shape: N runs, outputs get a leading N */
    FIT_BATCH    /* input batch 1, NPY [N, rest...]: outputs' batch becomes N */
} fit_mode;

static bool dims_equal(const int64_t *a, const int32_t *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

static bool match_shape(const mopt_array *a, const mopt_tensor *t, fit_mode *mode, int64_t *n) {
    if (a->rank == t->rank && dims_equal(a->dims, t->dims, t->rank)) {
        *mode = FIT_EXACT;
        *n = 1;
        return true;
    }
    if (a->rank == t->rank + 1 && dims_equal(a->dims + 1, t->dims, t->rank)) {
        *mode = FIT_STACKED;
        *n = a->dims[0];
        return true;
    }
    if (t->rank >= 1 && t->dims[0] == 1 && a->rank == t->rank &&
        dims_equal(a->dims + 1, t->dims + 1, t->rank - 1)) {
        *mode = FIT_BATCH;
        *n = a->dims[0];
        return true;
    }
    return false;
}

/* Prints a short summary of an output: shape, range and first values. */
static void print_summary(int k, const mopt_tensor *t, const mopt_array *a) {
    char shape[160], nm[256];
    printf("output %d '%s' %s %s\n", k, cli_printable(t->name, 200, nm, sizeof(nm)),
           mopt_dtype_name(a->dtype), cli_shape_str(a->dims, a->rank, shape, sizeof(shape)));
    int64_t n = mopt_array_numel(a);
    const int64_t show = 16;
    printf("  values:");
    for (int64_t i = 0; i < n && i < show; i++) {
        switch (a->dtype) {
        case MOPT_FLOAT32: printf(" %.6g", ((const float *)a->data)[i]); break;
        case MOPT_INT8: printf(" %d", ((const int8_t *)a->data)[i]); break;
        case MOPT_UINT8:
        case MOPT_BOOL: printf(" %u", ((const uint8_t *)a->data)[i]); break;
        case MOPT_INT16: printf(" %d", ((const int16_t *)a->data)[i]); break;
        case MOPT_INT32: printf(" %" PRId32, ((const int32_t *)a->data)[i]); break;
        case MOPT_INT64: printf(" %" PRId64, ((const int64_t *)a->data)[i]); break;
        default: printf(" ?"); break;
        }
    }
    if (n > show)
        printf(" ... (%" PRId64 " values)", n);
    printf("\n");
}

static int run_main(int argc, char **argv) {
    cli_parser p;
    cli_parser_init(&p, "run", argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])));
    const char *model = NULL, *arg;
    const char *in_paths[MAX_IO], *out_paths[MAX_IO];
    int n_in = 0, n_out = 0;
    int64_t threads = 0;
    int rounding = MOPT_ROUND_DOUBLE;
    int r;
    while ((r = cli_next(&p, &arg)) != CLI_END) {
        switch (r) {
        case CLI_HELP: return cli_print_help(&cli_cmd_run);
        case CLI_BAD: return 1;
        case CLI_POSITIONAL:
            if (model)
                return cli_usage_error("run", "unexpected argument '%s'", arg);
            model = arg;
            break;
        case OPT_INPUT:
            if (n_in == MAX_IO)
                return cli_usage_error("run", "at most %d --input files", MAX_IO);
            in_paths[n_in++] = arg;
            break;
        case OPT_OUTPUT:
            if (n_out == MAX_IO)
                return cli_usage_error("run", "at most %d -o files", MAX_IO);
            out_paths[n_out++] = arg;
            break;
        case OPT_ROUNDING:
            if (!cli_parse_rounding("run", arg, &rounding))
                return 1;
            break;
        case OPT_THREADS:
            if (!cli_parse_int("run", "threads", arg, 1, 1024, &threads))
                return 1;
            break;
        default: return cli_usage_error("run", "internal: unhandled option");
        }
    }
    if (!model)
        return cli_usage_error("run", "missing MODEL");
    if (n_in == 0)
        return cli_usage_error("run", "missing --input FILE.npy");

    cli_model m;
    int rc = cli_model_load(model, false, &m);
    if (rc)
        return rc;
    mopt_interp *it = NULL;
    mopt_array ins[MAX_IO], outs[MAX_IO];
    memset(ins, 0, sizeof(ins));
    memset(outs, 0, sizeof(outs));
    mopt_error err;
    mopt_error_clear(&err);

    if ((rc = cli_interp_create_rounding(&m, (int)threads, rounding, &it)) != 0)
        goto done;
    int mi = mopt_interp_num_inputs(it), mo = mopt_interp_num_outputs(it);
    if (n_in != mi) {
        rc = cli_usage_error("run", "%s has %d input%s but %d --input given", model, mi,
                             mi == 1 ? "" : "s", n_in);
        goto done;
    }
    if (n_out != 0 && n_out != mo) {
        rc = cli_usage_error("run", "%s has %d output%s but %d -o given", model, mo,
                             mo == 1 ? "" : "s", n_out);
        goto done;
    }
    if (mo > MAX_IO) {
        rc = cli_error(MOPT_ERR_UNSUPPORTED, "%s: more than %d outputs", model, MAX_IO);
        goto done;
    }

    /* Read the inputs and work out how many runs they ask for. */
    int64_t nruns = -1;
    bool any_stacked = false, all_exact = true;
    for (int k = 0; k < n_in; k++) {
        mopt_status st = mopt_npy_read(in_paths[k], &ins[k], &err);
        if (st != MOPT_OK) {
            rc = cli_fail(&err);
            goto done;
        }
        const mopt_tensor *t = &m.graph->tensors[mopt_interp_input_index(it, k)];
        char want[160], got[160];
        cli_tensor_shape_str(t, want, sizeof(want));
        cli_shape_str(ins[k].dims, ins[k].rank, got, sizeof(got));
        if (ins[k].dtype != t->dtype) {
            rc = cli_error(MOPT_ERR_BAD_INPUT,
                           "%s: dtype %s %s does not match model input %d '%s' (%s %s)",
                           in_paths[k], mopt_dtype_name(ins[k].dtype), got, k, t->name,
                           mopt_dtype_name(t->dtype), want);
            goto done;
        }
        fit_mode mode;
        int64_t n;
        if (!match_shape(&ins[k], t, &mode, &n)) {
            rc = cli_error(MOPT_ERR_BAD_INPUT,
                           "%s: shape %s does not fit model input %d '%s' %s (expected %s, or N "
                           "samples stacked in a leading dimension)",
                           in_paths[k], got, k, t->name, want, want);
            goto done;
        }
        if (nruns >= 0 && n != nruns) {
            rc =
                cli_error(MOPT_ERR_BAD_INPUT, "%s: holds %" PRId64 " samples but %s holds %" PRId64,
                          in_paths[k], n, in_paths[0], nruns);
            goto done;
        }
        nruns = n;
        any_stacked |= mode == FIT_STACKED;
        all_exact &= mode == FIT_EXACT;
    }

    /* Output arrays: the tensor shape, stacked N times the same way. */
    for (int k = 0; k < mo; k++) {
        const mopt_tensor *t = &m.graph->tensors[mopt_interp_output_index(it, k)];
        mopt_array *a = &outs[k];
        a->dtype = t->dtype;
        if (all_exact) {
            a->rank = t->rank;
            for (int d = 0; d < t->rank; d++)
                a->dims[d] = t->dims[d];
        } else if (any_stacked || t->rank == 0 || t->dims[0] != 1) {
            a->rank = t->rank + 1;
            a->dims[0] = nruns;
            for (int d = 0; d < t->rank; d++)
                a->dims[d + 1] = t->dims[d];
        } else {
            a->rank = t->rank;
            a->dims[0] = nruns;
            for (int d = 1; d < t->rank; d++)
                a->dims[d] = t->dims[d];
        }
        int64_t bytes = mopt_tensor_nbytes(t);
        if (bytes < 0 || (nruns > 0 && bytes > INT64_MAX / nruns) ||
            (uint64_t)(bytes * nruns) > ((uint64_t)1 << 31)) {
            rc = cli_error(MOPT_ERR_BAD_INPUT,
                           "%s: output %d would be too large for %" PRId64 " samples", model, k,
                           nruns);
            goto done;
        }
        a->nbytes = (size_t)(bytes * nruns);
        a->data = malloc(a->nbytes ? a->nbytes : 1);
        if (!a->data) {
            rc = cli_error(MOPT_ERR_NOMEM, "%s: out of memory for outputs", model);
            goto done;
        }
    }

    for (int64_t s = 0; s < nruns; s++) {
        for (int k = 0; k < n_in; k++) {
            size_t bytes =
                (size_t)mopt_tensor_nbytes(&m.graph->tensors[mopt_interp_input_index(it, k)]);
            memcpy(mopt_interp_input(it, k), (const uint8_t *)ins[k].data + (size_t)s * bytes,
                   bytes);
        }
        if (mopt_interp_invoke(it, &err) != MOPT_OK) {
            mopt_error_prefix(&err, "%s", model);
            rc = cli_fail(&err);
            goto done;
        }
        for (int k = 0; k < mo; k++) {
            size_t bytes = outs[k].nbytes / (size_t)nruns;
            memcpy((uint8_t *)outs[k].data + (size_t)s * bytes, mopt_interp_output(it, k), bytes);
        }
    }

    for (int k = 0; k < mo; k++) {
        const mopt_tensor *t = &m.graph->tensors[mopt_interp_output_index(it, k)];
        if (n_out) {
            if (mopt_npy_write(out_paths[k], &outs[k], &err) != MOPT_OK) {
                rc = cli_fail(&err);
                goto done;
            }
        } else {
            print_summary(k, t, &outs[k]);
        }
    }
    rc = 0;

done:
    for (int k = 0; k < MAX_IO; k++) {
        mopt_array_free(&ins[k]);
        mopt_array_free(&outs[k]);
    }
    mopt_interp_free(it);
    cli_model_free(&m);
    return rc;
}

const cli_command cli_cmd_run = {
    "run",
    "run a model on NPY inputs and write NPY outputs",
    "usage: mopt run MODEL --input X.npy [--input X2.npy ...] [-o Y.npy ...] [--threads N]\n"
    "                [--rounding double|single|fp32]\n"
    "\n"
    "Runs MODEL on the arrays in the NPY files (one --input per model input, in\n"
    "order). If an array has the input's shape, the model runs once. If it has one\n"
    "more leading dimension N ([N] + input shape), or the model's batch is 1 and the\n"
    "array's first dimension is N, the model runs N times and the outputs are\n"
    "stacked the same way. The array dtype must be the input's dtype (float32 for\n"
    "float models, int8/uint8 for quantized inputs; float64 is read as float32).\n"
    "\n"
    "options:\n"
    "  -i, --input FILE    input array (.npy), repeat for several inputs\n"
    "  -o, --output FILE   write output k to FILE (.npy), repeat for several outputs;\n"
    "                      without -o a short summary of each output is printed\n"
    "  -t, --threads N     threads for the runtime (default: all cores)\n"    "      --rounding MODE   integer requantization: double (TFLite reference,\n"
    "                        default), single (TFLITE_SINGLE_ROUNDING) or fp32\n"
    "                        (float multiply, round half to even, as XNNPACK)\n",
    run_main,
};
