/* pipeline.c - the public entry points: calibrate, plan, (bias correction),
 * emit, validate, report. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/util.h"
#include "quant/ptq_internal.h"

mopt_status ptq_check_options(const mopt_quant_options *o, mopt_error *err) {
    if ((unsigned)o->mode > MOPT_QUANT_INT16X8)
        return mopt_error_set(err, MOPT_ERR_ARG, "quantize: unknown mode %d", (int)o->mode);
    if ((unsigned)o->calib_method > MOPT_CALIB_KL)
        return mopt_error_set(err, MOPT_ERR_ARG, "quantize: unknown calibration method %d",
                              (int)o->calib_method);
    if (o->calib_method == MOPT_CALIB_PERCENTILE && !(o->percentile > 50.0 && o->percentile <= 100.0))
        return mopt_error_set(err, MOPT_ERR_ARG, "quantize: percentile %g out of range (50, 100]",
                              o->percentile);
    if (o->calib_method != MOPT_CALIB_MINMAX &&
        (o->histogram_bins < 128 || o->histogram_bins > 65536))
        return mopt_error_set(err, MOPT_ERR_ARG, "quantize: histogram_bins %d out of range 128..65536",
                              o->histogram_bins);
    if (o->dynamic_min_elements < 0)
        return mopt_error_set(err, MOPT_ERR_ARG, "quantize: dynamic_min_elements must be >= 0");
    if (o->io != MOPT_QIO_FLOAT && o->io != MOPT_QIO_INT)
        return mopt_error_set(err, MOPT_ERR_ARG, "quantize: unknown io type %d", (int)o->io);
    if (o->io == MOPT_QIO_INT && o->mode != MOPT_QUANT_INT8 && o->mode != MOPT_QUANT_INT16X8)
        return mopt_error_set(err, MOPT_ERR_ARG,
                              "quantize: integer input/output needs mode int8 or int16x8 (%s keeps "
                              "float activations)",
                              mopt_quant_mode_name(o->mode));
    if (o->bias_correction && o->mode != MOPT_QUANT_INT8 && o->mode != MOPT_QUANT_INT16X8)
        return mopt_error_set(err, MOPT_ERR_ARG,
                              "quantize: bias correction needs mode int8 or int16x8 (%s has no "
                              "quantized bias)",
                              mopt_quant_mode_name(o->mode));
    if (o->n_exclude < 0 || (o->n_exclude > 0 && !o->exclude))
        return mopt_error_set(err, MOPT_ERR_ARG, "quantize: invalid exclude list");
    if (o->n_op_precision < 0 || (o->n_op_precision > 0 && !o->op_precision))
        return mopt_error_set(err, MOPT_ERR_ARG, "quantize: invalid precision list");
    return MOPT_OK;
}

void ptq_report_log(mopt_quant_report *r, const char *fmt, ...) {
    if (!r)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    size_t old = r->log ? strlen(r->log) : 0, add = strlen(line);
    char *n = realloc(r->log, old + add + 2);
    if (!n)
        return;
    memcpy(n + old, line, add);
    n[old + add] = '\n';
    n[old + add + 1] = '\0';
    r->log = n;
}

static bool is_int(mopt_quant_mode m) { return m == MOPT_QUANT_INT8 || m == MOPT_QUANT_INT16X8; }

mopt_status ptq_quantize_calibrated(const mopt_graph *in, const mopt_quant_options *opt,
                                    const ptq_calib *cal, mopt_sample_source *src,
                                    mopt_graph **out, ptq_plan *plan_out, ptq_map *map_out,
                                    mopt_quant_report *report, mopt_error *err) {
    ptq_plan plan;
    mopt_status st = ptq_plan_init(&plan, in, opt, cal, err);
    if (st != MOPT_OK)
        return st;
    if (opt->bias_correction) {
        st = ptq_bias_correction(&plan, src, opt->calib_samples, report, err);
        if (st != MOPT_OK) {
            ptq_plan_free(&plan);
            return st;
        }
    }
    ptq_map map;
    st = ptq_emit(&plan, out, &map, err);
    if (st == MOPT_OK) {
        mopt_error verr;
        if (mopt_graph_validate(*out, &verr) != MOPT_OK) {
            st = mopt_error_set(err, MOPT_ERR_INTERNAL, "quantize: the quantized graph is invalid: %s",
                                verr.msg);
            mopt_graph_free(*out);
            *out = NULL;
            ptq_map_free(&map);
        }
    }
    if (st == MOPT_OK && map_out)
        *map_out = map;
    else if (st == MOPT_OK)
        ptq_map_free(&map);
    if (st == MOPT_OK && plan_out)
        *plan_out = plan;
    else
        ptq_plan_free(&plan);
    return st;
}

mopt_status mopt_quantize_source(const mopt_graph *in, const mopt_quant_options *opt,
                                 mopt_sample_source *calib, mopt_graph **out,
                                 mopt_quant_report *report, mopt_error *err) {
    if (!in || !opt || !out)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_quantize: NULL argument");
    *out = NULL;
    if (report)
        memset(report, 0, sizeof(*report));
    mopt_status st = ptq_check_options(opt, err);
    if (st != MOPT_OK)
        return st;
    if ((st = mopt_graph_validate(in, err)) != MOPT_OK) {
        mopt_error_prefix(err, "input model");
        return st;
    }
    if ((st = ptq_check_float_model(in, err)) != MOPT_OK)
        return st;
    double t0 = mopt_now();
    ptq_calib cal;
    memset(&cal, 0, sizeof(cal));
    if (is_int(opt->mode)) {
        if (!calib)
            return mopt_error_set(err, MOPT_ERR_ARG,
                                  "quantize: mode %s needs calibration samples (representative "
                                  "data)",
                                  mopt_quant_mode_name(opt->mode));
        st = ptq_calibrate(in, opt, calib, opt->calib_samples, &cal, err);
        if (st != MOPT_OK)
            return st;
    }
    double t1 = mopt_now();
    ptq_plan plan;
    ptq_map map;
    st = ptq_quantize_calibrated(in, opt, is_int(opt->mode) ? &cal : NULL, calib, out,
                                 report ? &plan : NULL, report ? &map : NULL, report, err);
    double t2 = mopt_now();
    if (st == MOPT_OK && report) {
        snprintf(report->mode, sizeof(report->mode), "%s", mopt_quant_mode_name(opt->mode));
        snprintf(report->calib_method, sizeof(report->calib_method), "%s",
                 is_int(opt->mode) ? mopt_calib_method_name(opt->calib_method) : "none");
        report->calib_samples = cal.samples;
        report->seconds_calibrate = t1 - t0;
        report->seconds_quantize = t2 - t1;
        report->float_accuracy = report->quant_accuracy = report->final_accuracy = -1;
        /* float16 / dynamic: compared on the given samples too, if any. */
        if (calib) {
            int64_t lim = opt->calib_samples > 0 && opt->calib_samples < 200 ? opt->calib_samples : 200;
            st = ptq_build_report(&plan, *out, &map, calib, lim, report, err);
        }
        report->seconds_total = mopt_now() - t0;
        ptq_plan_free(&plan);
        ptq_map_free(&map);
        if (st != MOPT_OK) {
            mopt_graph_free(*out);
            *out = NULL;
            mopt_quant_report_free(report);
        }
    }
    ptq_calib_free(&cal);
    return st;
}

mopt_status mopt_quantize(const mopt_graph *in, const mopt_quant_options *opt,
                          const mopt_dataset *calib, mopt_graph **out, mopt_quant_report *report,
                          mopt_error *err) {
    if (out)
        *out = NULL;
    mopt_sample_source *src = NULL;
    if (calib) {
        mopt_status st = mopt_sample_source_from_dataset(calib, &src, err);
        if (st != MOPT_OK)
            return st;
    }
    mopt_status st = mopt_quantize_source(in, opt, src, out, report, err);
    mopt_sample_source_close(src);
    return st;
}
