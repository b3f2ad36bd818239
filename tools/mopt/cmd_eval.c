/* cmd_eval.c - `mopt eval MODEL --data DATA`: top-1 accuracy and mean
 * latency of a classifier on a dataset split. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const cli_option opts[] = {
    {"data", 'd', true},    {"limit", 'n', true}, {"scale", 0, true},
    {"threads", 't', true}, {"json", 0, false},   {"split", 0, true},
    {"rounding", 0, true},
};
enum { OPT_DATA, OPT_LIMIT, OPT_SCALE, OPT_THREADS, OPT_JSON, OPT_SPLIT, OPT_ROUNDING };

/* Writes one float sample into the model input, quantizing if the input is
 * integer: q = round(x / scale) + zero_point, clamped to the type's range
 * (the TFLite QUANTIZE op's rule, rounding half away from zero). */
static void fill_input(void *dst, const mopt_tensor *t, const float *x, int64_t n) {
    if (t->dtype == MOPT_FLOAT32) {
        memcpy(dst, x, (size_t)n * sizeof(float));
        return;
    }
    const float scale = t->quant.scale[0];
    const int64_t zp = t->quant.zero_point[0];
    int64_t lo = t->dtype == MOPT_INT8 ? -128 : t->dtype == MOPT_UINT8 ? 0 : -32768;
    int64_t hi = t->dtype == MOPT_INT8 ? 127 : t->dtype == MOPT_UINT8 ? 255 : 32767;
    for (int64_t i = 0; i < n; i++) {
        double q = round((double)x[i] / (double)scale) + (double)zp;
        int64_t v = q < (double)lo ? lo : q > (double)hi ? hi : (int64_t)q;
        switch (t->dtype) {
        case MOPT_INT8: ((int8_t *)dst)[i] = (int8_t)v; break;
        case MOPT_UINT8: ((uint8_t *)dst)[i] = (uint8_t)v; break;
        default: ((int16_t *)dst)[i] = (int16_t)v; break;
        }
    }
}

/* Index of the largest element (the first one on ties). For quantized
 * outputs the integers order like the real values (scale > 0). */
static int64_t argmax(const void *data, mopt_dtype dt, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++) {
        bool gt;
        switch (dt) {
        case MOPT_FLOAT32: {
            /* NaN never wins; a NaN at index 0 loses to any number. */
            float a = ((const float *)data)[i], b = ((const float *)data)[best];
            gt = a > b || (isnan(b) && !isnan(a));
            break;
        }
        case MOPT_INT8: gt = ((const int8_t *)data)[i] > ((const int8_t *)data)[best]; break;
        case MOPT_UINT8: gt = ((const uint8_t *)data)[i] > ((const uint8_t *)data)[best]; break;
        case MOPT_INT16: gt = ((const int16_t *)data)[i] > ((const int16_t *)data)[best]; break;
        case MOPT_INT32: gt = ((const int32_t *)data)[i] > ((const int32_t *)data)[best]; break;
        default: gt = false; break;
        }
        if (gt)
            best = i;
    }
    return best;
}

static int eval_main(int argc, char **argv) {
    cli_parser p;
    cli_parser_init(&p, "eval", argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])));
    const char *model = NULL, *data = NULL, *arg;
    int64_t limit = 0, threads = 0;
    int rounding = MOPT_ROUND_DOUBLE;
    mopt_scale scale = MOPT_SCALE_01;
    mopt_split split = MOPT_SPLIT_TEST;
    bool json = false;
    int r;
    while ((r = cli_next(&p, &arg)) != CLI_END) {
        switch (r) {
        case CLI_HELP: return cli_print_help(&cli_cmd_eval);
        case CLI_BAD: return 1;
        case CLI_POSITIONAL:
            if (model)
                return cli_usage_error("eval", "unexpected argument '%s'", arg);
            model = arg;
            break;
        case OPT_DATA: data = arg; break;
        case OPT_LIMIT:
            if (!cli_parse_int("eval", "limit", arg, 1, INT64_MAX, &limit))
                return 1;
            break;
        case OPT_SCALE:
            if (strcmp(arg, "01") == 0)
                scale = MOPT_SCALE_01;
            else if (strcmp(arg, "pm1") == 0)
                scale = MOPT_SCALE_PM1;
            else if (strcmp(arg, "none") == 0)
                scale = MOPT_SCALE_NONE;
            else
                return cli_usage_error("eval", "--scale expects 01, pm1 or none, got '%s'", arg);
            break;
        case OPT_SPLIT:
            if (strcmp(arg, "test") == 0)
                split = MOPT_SPLIT_TEST;
            else if (strcmp(arg, "train") == 0)
                split = MOPT_SPLIT_TRAIN;
            else
                return cli_usage_error("eval", "--split expects test or train, got '%s'", arg);
            break;
        case OPT_ROUNDING:
            if (!cli_parse_rounding("eval", arg, &rounding))
                return 1;
            break;
        case OPT_THREADS:
            if (!cli_parse_int("eval", "threads", arg, 1, 1024, &threads))
                return 1;
            break;
        case OPT_JSON: json = true; break;
        default: return cli_usage_error("eval", "internal: unhandled option");
        }
    }
    if (!model)
        return cli_usage_error("eval", "missing MODEL");
    if (!data)
        return cli_usage_error("eval", "missing --data DATA");

    cli_model m;
    int rc = cli_model_load(model, false, &m);
    if (rc)
        return rc;
    mopt_interp *it = NULL;
    mopt_dataset ds;
    memset(&ds, 0, sizeof(ds));
    mopt_error err;
    mopt_error_clear(&err);

    if ((rc = cli_interp_create_rounding(&m, (int)threads, rounding, &it)) != 0)
        goto done;
    if (mopt_interp_num_inputs(it) != 1 || mopt_interp_num_outputs(it) < 1) {
        rc = cli_error(MOPT_ERR_BAD_INPUT,
                       "%s: eval needs a model with one input and at least one output (has %d "
                       "inputs, %d outputs)",
                       model, mopt_interp_num_inputs(it), mopt_interp_num_outputs(it));
        goto done;
    }
    int in_idx = mopt_interp_input_index(it, 0), out_idx = mopt_interp_output_index(it, 0);
    const mopt_tensor *tin = &m.graph->tensors[in_idx];
    const mopt_tensor *tout = &m.graph->tensors[out_idx];
    char shape[160];
    cli_tensor_shape_str(tin, shape, sizeof(shape));
    if (tin->dtype != MOPT_FLOAT32 && tin->dtype != MOPT_INT8 && tin->dtype != MOPT_UINT8 &&
        tin->dtype != MOPT_INT16) {
        rc = cli_error(MOPT_ERR_UNSUPPORTED,
                       "%s: input %d '%s' has dtype %s; eval feeds float32, "
                       "int8, uint8 or int16 inputs",
                       model, in_idx, tin->name, mopt_dtype_name(tin->dtype));
        goto done;
    }
    if (tin->dtype != MOPT_FLOAT32 &&
        (tin->quant.n < 1 || !(tin->quant.scale[0] > 0) || !isfinite(tin->quant.scale[0]))) {
        rc = cli_error(MOPT_ERR_BAD_INPUT,
                       "%s: integer input %d '%s' has no valid quantization scale", model, in_idx,
                       tin->name);
        goto done;
    }
    int64_t out_n = mopt_tensor_numel(tout);
    if (tout->dtype != MOPT_FLOAT32 && tout->dtype != MOPT_INT8 && tout->dtype != MOPT_UINT8 &&
        tout->dtype != MOPT_INT16 && tout->dtype != MOPT_INT32) {
        rc = cli_error(MOPT_ERR_UNSUPPORTED, "%s: output %d '%s' has dtype %s; eval needs scores",
                       model, out_idx, tout->name, mopt_dtype_name(tout->dtype));
        goto done;
    }
    if (out_n < 2) {
        rc = cli_error(MOPT_ERR_BAD_INPUT,
                       "%s: output %d '%s' has %" PRId64 " element(s); eval needs one score per "
                       "class",
                       model, out_idx, tout->name, out_n);
        goto done;
    }

    if (mopt_dataset_load(data, split, scale, limit, &ds, &err) != MOPT_OK) {
        rc = cli_fail(&err);
        goto done;
    }
    /* [1,28,28,1], [1,28,28], [1,784], ... all take a 28x28x1 sample as long
     * as the element counts agree (NHWC order is kept). */
    int64_t per = (int64_t)ds.h * ds.w * ds.c;
    int64_t in_n = mopt_tensor_numel(tin);
    if (in_n != per) {
        rc = cli_error(MOPT_ERR_BAD_INPUT,
                       "%s: input %d '%s' %s has %" PRId64 " elements but %s samples are %dx%dx%d "
                       "(%" PRId64 ")",
                       model, in_idx, tin->name, shape, in_n, data, ds.h, ds.w, ds.c, per);
        goto done;
    }
    if (ds.num_classes > out_n) {
        rc = cli_error(MOPT_ERR_BAD_INPUT,
                       "%s: output %d '%s' has %" PRId64 " scores but %s has %d classes", model,
                       out_idx, tout->name, out_n, data, ds.num_classes);
        goto done;
    }

    cli_progress prog;
    cli_progress_begin(&prog, "eval", ds.n);
    int64_t correct = 0;
    double total_s = 0;
    void *in = mopt_interp_input(it, 0);
    for (int64_t i = 0; i < ds.n; i++) {
        fill_input(in, tin, ds.images + i * per, per);
        double t0 = mopt_now();
        mopt_status st = mopt_interp_invoke(it, &err);
        total_s += mopt_now() - t0;
        if (st != MOPT_OK) {
            cli_progress_end(&prog);
            mopt_error_prefix(&err, "%s", model);
            rc = cli_fail(&err);
            goto done;
        }
        correct += argmax(mopt_interp_output(it, 0), tout->dtype, out_n) == ds.labels[i];
        cli_progress_update(&prog, i + 1);
    }
    cli_progress_end(&prog);

    double acc = (double)correct / (double)ds.n;
    double lat_ms = 1000.0 * total_s / (double)ds.n;
    if (json) {
        cli_json j;
        cli_json_init(&j, stdout);
        cli_json_object_begin(&j, NULL);
        cli_json_string(&j, "model", model);
        cli_json_string(&j, "data", data);
        cli_json_string(&j, "split", split == MOPT_SPLIT_TEST ? "test" : "train");
        cli_json_int(&j, "samples", ds.n);
        cli_json_int(&j, "correct", correct);
        cli_json_double(&j, "accuracy", acc);
        cli_json_double(&j, "top1_percent", 100.0 * acc);
        cli_json_double(&j, "latency_ms", lat_ms);
        if (threads > 0)
            cli_json_int(&j, "threads", threads);
        else
            cli_json_null(&j, "threads");
        cli_json_object_end(&j);
        cli_json_finish(&j);
    } else {
        printf("top-1 %.2f%% (%" PRId64 "/%" PRId64 ")  latency %.3f ms/sample\n", 100.0 * acc,
               correct, ds.n, lat_ms);
    }
    rc = 0;

done:
    mopt_dataset_free(&ds);
    mopt_interp_free(it);
    cli_model_free(&m);
    return rc;
}

const cli_command cli_cmd_eval = {
    "eval",
    "top-1 accuracy and latency of a classifier on a dataset",
    "usage: mopt eval MODEL --data DATA [--limit N] [--scale 01|pm1|none]\n"
    "                 [--split test|train] [--threads N] [--json]\n"
    "                 [--rounding double|single|fp32]\n"
    "\n"
    "Runs MODEL on every sample of the dataset's test split and reports the top-1\n"
    "accuracy and the mean latency per sample (time spent in invoke). The model\n"
    "input may have any shape with the sample's element count ([1,28,28,1],\n"
    "[1,28,28], [1,784] for Fashion-MNIST). Integer (quantized) inputs are fed\n"
    "q = round(x / scale) + zero_point; the class is the argmax of output 0.\n"
    "\n"
    "DATA is 'fashion-mnist' (Debian's dataset-fashion-mnist, or\n"
    "$MOPT_FASHION_MNIST_DIR), a folder of {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]\n"
    "files, or IMAGES.npy,LABELS.npy.\n"
    "\n"
    "options:\n"
    "  -d, --data DATA     the dataset (required)\n"
    "  -n, --limit N       use only the first N samples\n"
    "  --scale S           pixel scaling of integer images: 01 = x/255 (default),\n"
    "                      pm1 = x/127.5-1, none = raw values\n"
    "  --split S           test (default) or train\n"
    "  -t, --threads N     threads for the runtime (default: all cores)\n"    "      --rounding MODE   integer requantization: double (TFLite reference,\n"
    "                        default), single (TFLITE_SINGLE_ROUNDING) or fp32\n"
    "                        (float multiply, round half to even, as XNNPACK)\n"
    "  --json              {\"accuracy\", \"top1_percent\", \"samples\", \"latency_ms\", ...}\n",
    eval_main,
};
