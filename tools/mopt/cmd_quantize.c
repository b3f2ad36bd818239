/* cmd_quantize.c - `mopt quantize IN.tflite --mode M -o OUT.tflite`:
 * post-training quantization (float16, dynamic range, int8, int16x8). */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mopt/quantize.h"

static const cli_option opts[] = {
    {"mode", 'm', true},          {"output", 'o', true},        {"calib", 'c', true},
    {"calib-samples", 'n', true}, {"calib-method", 0, true},    {"percentile", 0, true},
    {"bins", 0, true},            {"per-tensor", 0, false},     {"io", 0, true},
    {"bias-correction", 0, false}, {"exclude", 'x', true},      {"fallback", 0, true},
    {"max-drop", 0, true},        {"eval", 0, true},            {"eval-samples", 0, true},
    {"report", 'r', true},        {"dynamic-min-elements", 0, true},
    {"match-converter", 0, false}, {"scale", 0, true},          {"threads", 't', true},
    {"json", 0, false},
};
enum {
    OPT_MODE, OPT_OUTPUT, OPT_CALIB, OPT_CALIB_SAMPLES, OPT_CALIB_METHOD, OPT_PERCENTILE,
    OPT_BINS, OPT_PER_TENSOR, OPT_IO, OPT_BIAS_CORRECTION, OPT_EXCLUDE, OPT_FALLBACK,
    OPT_MAX_DROP, OPT_EVAL, OPT_EVAL_SAMPLES, OPT_REPORT, OPT_DYN_MIN, OPT_MATCH, OPT_SCALE,
    OPT_THREADS, OPT_JSON
};

#define MAX_EXCLUDE 256

/* Also declared by CLI_COMMANDS in cli.h once `quantize` is registered
 * there; declared here so this file compiles either way. */
extern const cli_command cli_cmd_quantize;

typedef struct progress_ctx {
    cli_progress bar;
    const char *stage;
} progress_ctx;

static void on_progress(void *ctx, const char *stage, int64_t done, int64_t total) {
    progress_ctx *p = ctx;
    if (!p->stage || strcmp(p->stage, stage) != 0) {
        cli_progress_end(&p->bar);
        cli_progress_begin(&p->bar, stage, total);
        p->stage = stage;
    }
    cli_progress_update(&p->bar, done);
}

static bool parse_double(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(v) || v < lo || v > hi) {
        cli_usage_error("quantize", "--%s expects a number in [%g, %g], got '%s'", opt, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

static const char *prec_name(mopt_op_precision p) {
    switch (p) {
    case MOPT_PREC_INT8: return "int8";
    case MOPT_PREC_INT16X8: return "int16x8";
    case MOPT_PREC_FLOAT: return "float";
    default: return "default";
    }
}

static int quantize_main(int argc, char **argv) {
    cli_parser p;
    cli_parser_init(&p, "quantize", argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])));
    const char *in_path = NULL, *out_path = NULL, *calib = NULL, *eval = NULL, *report_path = NULL;
    const char *fallback = NULL, *arg;
    const char *excl[MAX_EXCLUDE];
    char *excl_buf[MAX_EXCLUDE];
    int n_excl = 0, n_excl_buf = 0;
    int mode = -1;
    bool have_samples = false, have_drop = false, json = false, io_int = false;
    const char *io_arg = NULL;
    int64_t threads = 0, eval_samples = 0, tmp;
    double max_drop = 0;
    mopt_scale scale = MOPT_SCALE_01;
    mopt_quant_options o = mopt_quant_default_options(MOPT_QUANT_INT8);
    bool method_set = false, pct_set = false;
    int rc = 1, r;
    while ((r = cli_next(&p, &arg)) != CLI_END) {
        switch (r) {
        case CLI_HELP: rc = cli_print_help(&cli_cmd_quantize); goto out;
        case CLI_BAD: goto out;
        case CLI_POSITIONAL:
            if (in_path) {
                rc = cli_usage_error("quantize", "unexpected argument '%s'", arg);
                goto out;
            }
            in_path = arg;
            break;
        case OPT_MODE:
            mode = mopt_quant_mode_from_name(arg);
            if (mode < 0) {
                rc = cli_usage_error("quantize",
                                     "--mode expects float16, dynamic, int8 or int16x8, got '%s'", arg);
                goto out;
            }
            break;
        case OPT_OUTPUT: out_path = arg; break;
        case OPT_CALIB: calib = arg; break;
        case OPT_CALIB_SAMPLES:
            if (!cli_parse_int("quantize", "calib-samples", arg, 1, INT64_MAX, &o.calib_samples))
                goto out;
            have_samples = true;
            break;
        case OPT_CALIB_METHOD: {
            int m = mopt_calib_method_from_name(arg);
            if (m < 0) {
                rc = cli_usage_error("quantize",
                                     "--calib-method expects minmax, percentile, mse or kl, got '%s'",
                                     arg);
                goto out;
            }
            o.calib_method = (mopt_calib_method)m;
            method_set = true;
            break;
        }
        case OPT_PERCENTILE:
            if (!parse_double("percentile", arg, 50.0, 100.0, &o.percentile))
                goto out;
            if (o.percentile <= 50.0) {
                cli_usage_error("quantize", "--percentile must be above 50, got '%s'", arg);
                goto out;
            }
            pct_set = true;
            break;
        case OPT_BINS:
            if (!cli_parse_int("quantize", "bins", arg, 128, 65536, &tmp))
                goto out;
            o.histogram_bins = (int)tmp;
            break;
        case OPT_PER_TENSOR: o.per_tensor = true; break;
        case OPT_IO: io_arg = arg; break;
        case OPT_BIAS_CORRECTION: o.bias_correction = true; break;
        case OPT_EXCLUDE: {
            /* Repeatable, and each value may be a comma-separated list. */
            char *copy = strdup(arg);
            if (!copy || n_excl_buf == MAX_EXCLUDE) {
                free(copy);
                rc = cli_error(MOPT_ERR_NOMEM, "quantize: too many --exclude values");
                goto out;
            }
            excl_buf[n_excl_buf++] = copy;
            for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
                if (n_excl == MAX_EXCLUDE) {
                    rc = cli_usage_error("quantize", "more than %d --exclude values", MAX_EXCLUDE);
                    goto out;
                }
                if (*tok) excl[n_excl++] = tok;
            }
            break;
        }
        case OPT_FALLBACK:
            if (strcmp(arg, "auto") != 0) {
                rc = cli_usage_error("quantize", "--fallback expects 'auto', got '%s'", arg);
                goto out;
            }
            fallback = arg;
            break;
        case OPT_MAX_DROP:
            if (!parse_double("max-drop", arg, 0.0, 100.0, &max_drop))
                goto out;
            have_drop = true;
            break;
        case OPT_EVAL: eval = arg; break;
        case OPT_EVAL_SAMPLES:
            if (!cli_parse_int("quantize", "eval-samples", arg, 1, INT64_MAX, &eval_samples))
                goto out;
            break;
        case OPT_REPORT: report_path = arg; break;
        case OPT_DYN_MIN:
            if (!cli_parse_int("quantize", "dynamic-min-elements", arg, 0, INT64_MAX,
                               &o.dynamic_min_elements))
                goto out;
            break;
        case OPT_MATCH: o.match_converter = true; break;
        case OPT_SCALE:
            if (strcmp(arg, "01") == 0) scale = MOPT_SCALE_01;
            else if (strcmp(arg, "pm1") == 0) scale = MOPT_SCALE_PM1;
            else if (strcmp(arg, "none") == 0) scale = MOPT_SCALE_NONE;
            else {
                rc = cli_usage_error("quantize", "--scale expects 01, pm1 or none, got '%s'", arg);
                goto out;
            }
            break;
        case OPT_THREADS:
            if (!cli_parse_int("quantize", "threads", arg, 1, 1024, &threads))
                goto out;
            break;
        case OPT_JSON: json = true; break;
        default: rc = cli_usage_error("quantize", "internal: unhandled option"); goto out;
        }
    }
    rc = 1;
    if (!in_path) { cli_usage_error("quantize", "missing IN.tflite"); goto out; }
    if (mode < 0) { cli_usage_error("quantize", "missing --mode float16|dynamic|int8|int16x8"); goto out; }
    if (!out_path) { cli_usage_error("quantize", "missing -o OUT.tflite"); goto out; }
    o.mode = (mopt_quant_mode)mode;
    bool int_mode = o.mode == MOPT_QUANT_INT8 || o.mode == MOPT_QUANT_INT16X8;
    if (io_arg) {
        if (strcmp(io_arg, "float") == 0) {
            io_int = false;
        } else if ((strcmp(io_arg, "int8") == 0 && o.mode == MOPT_QUANT_INT8) ||
                   (strcmp(io_arg, "int16") == 0 && o.mode == MOPT_QUANT_INT16X8)) {
            io_int = true;
        } else {
            cli_usage_error("quantize", "--io %s does not fit --mode %s (use float, or int8 with "
                            "int8 / int16 with int16x8)", io_arg, mopt_quant_mode_name(o.mode));
            goto out;
        }
    }
    o.io = io_int ? MOPT_QIO_INT : MOPT_QIO_FLOAT;
    if (int_mode && !calib) {
        cli_usage_error("quantize", "--mode %s needs --calib DATA (representative samples)",
                        mopt_quant_mode_name(o.mode));
        goto out;
    }
    if (!int_mode && (method_set || pct_set || o.bias_correction || fallback || io_int ||
                      (calib && !report_path) || (have_samples && !report_path))) {
        cli_usage_error("quantize",
                        "--calib-method, --percentile, --bias-correction, --fallback and --io apply "
                        "to int8 and int16x8 only, and --calib to them or to --report (mode %s "
                        "needs no calibration)",
                        mopt_quant_mode_name(o.mode));
        goto out;
    }
    if (!int_mode && report_path && !calib) {
        cli_usage_error("quantize", "--report with mode %s needs --calib DATA (the samples the "
                        "float and quantized models are compared on)", mopt_quant_mode_name(o.mode));
        goto out;
    }
    if (pct_set && o.calib_method != MOPT_CALIB_PERCENTILE) {
        cli_usage_error("quantize", "--percentile needs --calib-method percentile");
        goto out;
    }
    if (fallback && (!have_drop || !eval)) {
        cli_usage_error("quantize", "--fallback auto needs --max-drop POINTS and --eval DATA");
        goto out;
    }
    if (!fallback && (have_drop || eval || eval_samples)) {
        cli_usage_error("quantize", "--max-drop, --eval and --eval-samples go with --fallback auto");
        goto out;
    }
    o.n_exclude = n_excl;
    o.exclude = excl;
    o.num_threads = (int)threads;

    cli_model m;
    if ((rc = cli_model_load(in_path, false, &m)) != 0)
        goto out;
    mopt_error err;
    mopt_error_clear(&err);
    mopt_sample_source *src = NULL, *esrc = NULL;
    mopt_graph *q = NULL;
    mopt_quant_report rep;
    memset(&rep, 0, sizeof(rep));
    progress_ctx pc;
    memset(&pc, 0, sizeof(pc));
    o.progress = on_progress;
    o.progress_ctx = &pc;
    double t0 = mopt_now();
    if (calib && mopt_sample_source_open(calib, MOPT_SPLIT_TRAIN, scale, &src, &err) != MOPT_OK) {
        rc = cli_fail(&err);
        goto done;
    }
    if (eval && mopt_sample_source_open(eval, MOPT_SPLIT_TEST, scale, &esrc, &err) != MOPT_OK) {
        rc = cli_fail(&err);
        goto done;
    }
    mopt_status st;
    bool want_report = report_path || fallback;
    if (fallback)
        st = mopt_quantize_fallback(m.graph, &o, src, esrc, eval_samples, max_drop, &q, &rep, &err);
    else
        st = mopt_quantize_source(m.graph, &o, src, &q, want_report ? &rep : NULL, &err);
    cli_progress_end(&pc.bar);
    if (st != MOPT_OK) {
        mopt_error_prefix(&err, "%s", in_path);
        rc = cli_fail(&err);
        goto done;
    }
    uint8_t *bytes = NULL;
    size_t size = 0;
    if (mopt_tflite_write_mem(q, &bytes, &size, &err) != MOPT_OK ||
        mopt_file_write_atomic(out_path, bytes, size, &err) != MOPT_OK) {
        free(bytes);
        rc = cli_fail(&err);
        goto done;
    }
    free(bytes);
    if (report_path && mopt_quant_report_write(&rep, report_path, &err) != MOPT_OK) {
        rc = cli_fail(&err);
        goto done;
    }
    double secs = mopt_now() - t0;
    long long in_size = 0;
    {
        uint8_t *ib = NULL;
        size_t isz = 0;
        if (mopt_file_read_all(in_path, 0, &ib, &isz, NULL) == MOPT_OK) in_size = (long long)isz;
        free(ib);
    }
    const char *wt = o.per_tensor ? "per-tensor" : "per-channel";
    if (!want_report && src) {
        int64_t avail = mopt_sample_source_count(src);
        rep.calib_samples = o.calib_samples > 0 && o.calib_samples < avail ? o.calib_samples : avail;
    }
    if (json) {
        cli_json j;
        cli_json_init(&j, stdout);
        cli_json_object_begin(&j, NULL);
        cli_json_string(&j, "input", in_path);
        cli_json_string(&j, "output", out_path);
        cli_json_string(&j, "mode", mopt_quant_mode_name(o.mode));
        cli_json_string(&j, "weights", wt);
        if (int_mode) {
            cli_json_string(&j, "calib_method", mopt_calib_method_name(o.calib_method));
            cli_json_int(&j, "calib_samples", rep.calib_samples);
        }
        cli_json_int(&j, "input_bytes", in_size);
        cli_json_int(&j, "output_bytes", (int64_t)size);
        cli_json_double(&j, "seconds", secs);
        if (fallback) {
            cli_json_double(&j, "float_accuracy", rep.float_accuracy);
            cli_json_double(&j, "quant_accuracy", rep.quant_accuracy);
            cli_json_double(&j, "final_accuracy", rep.final_accuracy);
            cli_json_array_begin(&j, "fallback", false);
            for (int i = 0; i < rep.n_fallback; i++) {
                cli_json_object_begin(&j, NULL);
                cli_json_int(&j, "op_index", rep.fallback_ops[i]);
                const mopt_op *op = &m.graph->ops[rep.fallback_ops[i]];
                cli_json_string(&j, "op", mopt_op_name(op->type));
                cli_json_string(&j, "output", m.graph->tensors[op->outputs[0]].name);
                cli_json_string(&j, "precision", prec_name(rep.fallback_precision[i]));
                cli_json_object_end(&j);
            }
            cli_json_array_end(&j);
        }
        if (report_path) cli_json_string(&j, "report", report_path);
        cli_json_object_end(&j);
        cli_json_finish(&j);
    } else {
        printf("%s -> %s: %s", in_path, out_path, mopt_quant_mode_name(o.mode));
        if (o.mode != MOPT_QUANT_FLOAT16) printf(", %s weights", wt);
        if (int_mode)
            printf(", %s calibration on %" PRId64 " samples", mopt_calib_method_name(o.calib_method),
                   rep.calib_samples);
        printf("\n  size %lld -> %zu bytes (%.2fx smaller), %.2f s\n", in_size, size,
               size ? (double)in_size / (double)size : 0.0, secs);
        if (rep.n_bias_corrected)
            printf("  bias correction: %d operators, mean |correction| %.3f output steps\n",
                   rep.n_bias_corrected, rep.mean_bias_correction_steps);
        if (fallback) {
            printf("  accuracy: float %.2f%%, all-%s %.2f%%, final %.2f%% (max drop %.2f points)\n",
                   100 * rep.float_accuracy, mopt_quant_mode_name(o.mode), 100 * rep.quant_accuracy,
                   100 * rep.final_accuracy, max_drop);
            if (rep.n_fallback == 0)
                printf("  fallback: none needed\n");
            for (int i = 0; i < rep.n_fallback; i++) {
                const mopt_op *op = &m.graph->ops[rep.fallback_ops[i]];
                char nb[96];
                printf("  fallback: operator %d %s '%s' -> %s\n", rep.fallback_ops[i],
                       mopt_op_name(op->type),
                       cli_printable(m.graph->tensors[op->outputs[0]].name, 60, nb, sizeof(nb)),
                       prec_name(rep.fallback_precision[i]));
            }
        }
        if (report_path) {
            printf("  report: %s", report_path);
            int shown = 0;
            for (int i = 0; i < rep.n_layers; i++)
                if (rep.layers[i].flagged) {
                    char nb[64];
                    printf("%s%s (%.1f dB)", shown++ ? ", " : "; worst: ",
                           cli_printable(rep.layers[i].name, 40, nb, sizeof(nb)), rep.layers[i].sqnr_db);
                }
            printf("\n");
        }
    }
    rc = 0;
done:
    cli_progress_end(&pc.bar);
    mopt_quant_report_free(&rep);
    mopt_graph_free(q);
    mopt_sample_source_close(src);
    mopt_sample_source_close(esrc);
    cli_model_free(&m);
out:
    for (int i = 0; i < n_excl_buf; i++) free(excl_buf[i]);
    return rc;
}

const cli_command cli_cmd_quantize = {
    "quantize",
    "post-training quantization: float16, dynamic range, int8, int16x8",
    "usage: mopt quantize IN.tflite --mode float16|dynamic|int8|int16x8 -o OUT.tflite\n"
    "                     [--calib DATA] [--calib-samples N] [--calib-method M]\n"
    "                     [--percentile P] [--per-tensor] [--io float|int8|int16]\n"
    "                     [--bias-correction] [--exclude NAME_OR_OP ...]\n"
    "                     [--fallback auto --max-drop POINTS --eval DATA]\n"
    "                     [--report FILE.json|FILE.html] [--json]\n"
    "\n"
    "Quantizes a float model the way the TFLite converter (TF 2.21) does:\n"
    "  float16  float16 weights read through DEQUANTIZE; float activations\n"
    "  dynamic  int8 weights (per channel) for CONV_2D, DEPTHWISE_CONV_2D and\n"
    "           FULLY_CONNECTED weights of at least 1024 elements; hybrid kernels\n"
    "  int8     int8 activations (asymmetric, calibrated), int8 weights (per\n"
    "           channel), int32 biases; QUANTIZE/DEQUANTIZE at float inputs/outputs\n"
    "  int16x8  int16 activations (symmetric), int8 weights, int64 biases\n"
    "\n"
    "The integer modes calibrate on representative samples: DATA is 'fashion-mnist',\n"
    "a folder of IDX files (its train split is used), an image file (.npy or IDX)\n"
    "or IMAGES.npy,LABELS.npy. Samples are streamed: memory does not grow with N.\n"
    "\n"
    "options:\n"
    "  -m, --mode M            float16, dynamic, int8 or int16x8 (required)\n"
    "  -o, --output OUT        the quantized model (required; written atomically)\n"
    "  -c, --calib DATA        calibration samples (int8, int16x8)\n"
    "  -n, --calib-samples N   samples to calibrate on (default 500)\n"
    "  --calib-method M        minmax (default; the converter's), percentile, mse\n"
    "                          (range minimizing the quantization error) or kl\n"
    "                          (entropy calibration); the last three use a 2048-bin\n"
    "                          histogram per tensor\n"
    "  --percentile P          percentile method: keep [100-P, P] percentiles\n"
    "                          (default 99.99)\n"
    "  --bins N                histogram bins (default 2048)\n"
    "  --per-tensor            one scale per weight tensor instead of per channel\n"
    "  --io T                  model input/output type: float (default), int8 (int8\n"
    "                          mode) or int16 (int16x8 mode)\n"
    "  --dynamic-min-elements N  dynamic mode: smaller weights stay float (default 1024)\n"
    "  --bias-correction       empirical per-channel bias correction of CONV_2D,\n"
    "                          DEPTHWISE_CONV_2D and FULLY_CONNECTED on the samples\n"
    "  -x, --exclude X         keep operators in float: an operator type (SOFTMAX)\n"
    "                          or an operator's output tensor name; repeatable,\n"
    "                          comma-separated lists accepted\n"
    "  --fallback auto         keep the most sensitive operators in int16x8 (or\n"
    "                          float) until the top-1 drop on --eval is at most\n"
    "                          --max-drop percentage points; prints the choices\n"
    "  --max-drop P            accuracy budget in percentage points\n"
    "  --eval DATA             labelled evaluation data (its test split)\n"
    "  --eval-samples N        evaluate on the first N samples only\n"
    "  -r, --report F          per-layer errors (SQNR dB, RMSE/scale, max and mean\n"
    "                          error) against the float model on the calibration\n"
    "                          samples (float16 / dynamic: give --calib for it); .html\n"
    "                          gives a self-contained page with a chart, else JSON\n"
    "  --match-converter       reproduce the converter's calibration artifacts\n"
    "                          (in-place ADD/SUB/MUL ranges, shared int16 biases)\n"
    "  --scale S               scaling of integer images: 01 = x/255 (default),\n"
    "                          pm1 = x/127.5-1, none\n"
    "  -t, --threads N         runtime threads for calibration and evaluation\n"
    "  --json                  print a JSON summary\n",
    quantize_main,
};
