/* fallback.c - accuracy measurement and automatic mixed precision.
 *
 * mopt_quantize_fallback quantizes the whole model, measures top-1 on the
 * evaluation data against the float model and, while the drop is above the
 * budget, gives the most sensitive operator a higher precision (int16x8 when
 * TFLite has an int16x8 kernel for it and the model is int8, float
 * otherwise) and tries again. Sensitivity comes from one per-layer
 * comparison of the fully quantized model with the float model (report.c):
 * the noise an operator adds, i.e. the noise-to-signal ratio of its output
 * minus the largest one among its inputs. Calibration is done once; each
 * step only requantizes and evaluates.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/util.h"
#include "quant/ptq_internal.h"

mopt_status ptq_accuracy(const mopt_graph *g, const mopt_quant_options *opt,
                         mopt_sample_source *src, int64_t limit, double *acc, int64_t *used,
                         mopt_error *err) {
    mopt_status st = ptq_check_source(g, src, "evaluation data", err);
    if (st != MOPT_OK)
        return st;
    ptq_qrun *r = NULL;
    if ((st = ptq_qrun_create(g, opt, false, &r, err)) != MOPT_OK)
        return st;
    int64_t per = mopt_tensor_numel(&g->tensors[g->inputs[0]]);
    int ot = g->outputs[0];
    int64_t nout = mopt_tensor_numel(&g->tensors[ot]);
    float *x = malloc((size_t)per * sizeof(float));
    int64_t n = mopt_sample_source_count(src), correct = 0;
    if (limit > 0 && limit < n)
        n = limit;
    if (!x) {
        ptq_qrun_free(r);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "evaluation: out of memory");
    }
    st = mopt_sample_source_rewind(src, err);
    for (int64_t s = 0; st == MOPT_OK && s < n; s++) {
        int32_t label;
        if ((st = mopt_sample_source_next(src, x, &label, err)) != MOPT_OK)
            break;
        if (label < 0) {
            st = mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                "evaluation data has no labels (give IMAGES.npy,LABELS.npy or a "
                                "dataset folder)");
            break;
        }
        if ((st = ptq_qrun_invoke(r, x, err)) != MOPT_OK)
            break;
        int64_t best = 0;
        double bv = ptq_qrun_value(r, ot, 0);
        for (int64_t j = 1; j < nout; j++) {
            double v = ptq_qrun_value(r, ot, j);
            if (v > bv) {
                bv = v;
                best = j;
            }
        }
        correct += best == label;
        if (opt->progress)
            opt->progress(opt->progress_ctx, "evaluate", s + 1, n);
    }
    free(x);
    ptq_qrun_free(r);
    if (st != MOPT_OK)
        return st;
    *acc = n > 0 ? (double)correct / (double)n : 0;
    if (used)
        *used = n;
    return MOPT_OK;
}

/* Sensitivity of each operator from a per-layer report: noise it adds. */
static void rank_ops(const mopt_graph *g, const mopt_quant_report *rep, int *order, int *n_order) {
    double *nsr = malloc(((size_t)g->n_tensors + 1) * sizeof(double));
    double *score = malloc(((size_t)g->n_ops + 1) * sizeof(double));
    *n_order = 0;
    if (!nsr || !score) {
        free(nsr);
        free(score);
        return;
    }
    for (int t = 0; t < g->n_tensors; t++) nsr[t] = 0;
    for (int i = 0; i < rep->n_layers; i++) {
        const mopt_quant_layer_stats *L = &rep->layers[i];
        int t = L->op_index >= 0 ? g->ops[L->op_index].outputs[0] : g->inputs[0];
        nsr[t] = isinf(L->sqnr_db) ? (L->sqnr_db > 0 ? 0 : 1e9) : pow(10.0, -L->sqnr_db / 10.0);
    }
    for (int oi = 0; oi < g->n_ops; oi++) {
        const mopt_op *op = &g->ops[oi];
        double in = 0;
        for (int k = 0; k < op->n_inputs; k++)
            if (op->inputs[k] >= 0 && !mopt_tensor_is_constant(g, op->inputs[k]) && nsr[op->inputs[k]] > in)
                in = nsr[op->inputs[k]];
        score[oi] = op->n_outputs > 0 && op->outputs[0] >= 0 ? nsr[op->outputs[0]] - in : 0;
        order[(*n_order)++] = oi;
    }
    /* Sort by score, largest first (insertion sort: few operators). */
    for (int i = 1; i < *n_order; i++) {
        int v = order[i], j = i;
        while (j > 0 && score[order[j - 1]] < score[v]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
    free(nsr);
    free(score);
}

mopt_status mopt_quantize_fallback(const mopt_graph *in, const mopt_quant_options *opt,
                                   mopt_sample_source *calib, mopt_sample_source *eval,
                                   int64_t eval_limit, double max_drop_points, mopt_graph **out,
                                   mopt_quant_report *report, mopt_error *err) {
    if (!in || !opt || !out || !report)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_quantize_fallback: NULL argument");
    *out = NULL;
    memset(report, 0, sizeof(*report));
    mopt_status st = ptq_check_options(opt, err);
    if (st != MOPT_OK)
        return st;
    if (opt->mode != MOPT_QUANT_INT8 && opt->mode != MOPT_QUANT_INT16X8)
        return mopt_error_set(err, MOPT_ERR_ARG, "fallback: needs mode int8 or int16x8");
    if (!(max_drop_points >= 0))
        return mopt_error_set(err, MOPT_ERR_ARG, "fallback: max drop must be >= 0 points");
    if (!calib || !eval)
        return mopt_error_set(err, MOPT_ERR_ARG, "fallback: needs calibration and evaluation data");
    if ((st = mopt_graph_validate(in, err)) != MOPT_OK) {
        mopt_error_prefix(err, "input model");
        return st;
    }
    if ((st = ptq_check_float_model(in, err)) != MOPT_OK)
        return st;
    if ((st = ptq_check_source(in, eval, "evaluation data", err)) != MOPT_OK)
        return st;
    double t0 = mopt_now();
    ptq_calib cal;
    if ((st = ptq_calibrate(in, opt, calib, opt->calib_samples, &cal, err)) != MOPT_OK)
        return st;
    double t1 = mopt_now();
    int n = in->n_ops;
    mopt_op_precision *prec = calloc((size_t)n + 1, sizeof(*prec));
    int *order = malloc(((size_t)n + 1) * sizeof(int));
    mopt_graph *q = NULL;
    ptq_plan plan;
    ptq_map map;
    memset(&plan, 0, sizeof(plan));
    memset(&map, 0, sizeof(map));
    if (!prec || !order) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "fallback: out of memory");
        goto done;
    }
    /* Start from the caller's per-op choices, if any. */
    for (int i = 0; i < n; i++)
        prec[i] = opt->op_precision && i < opt->n_op_precision ? opt->op_precision[i] : MOPT_PREC_DEFAULT;
    mopt_quant_options o = *opt;
    o.op_precision = prec;
    o.n_op_precision = n;
    double facc;
    int64_t used = 0;
    if ((st = ptq_accuracy(in, &o, eval, eval_limit, &facc, &used, err)) != MOPT_OK)
        goto done;
    report->float_accuracy = facc;
    ptq_report_log(report, "float model: top-1 %.2f%% on %lld evaluation samples", 100 * facc,
                   (long long)used);
    int n_order = 0, next = 0, step = 1, rounds = 0;
    for (;;) {
        mopt_graph_free(q);
        q = NULL;
        ptq_plan_free(&plan);
        ptq_map_free(&map);
        if ((st = ptq_quantize_calibrated(in, &o, &cal, calib, &q, &plan, &map, report, err)) != MOPT_OK)
            goto done;
        double qacc;
        if ((st = ptq_accuracy(q, &o, eval, eval_limit, &qacc, NULL, err)) != MOPT_OK)
            goto done;
        double drop = 100 * (facc - qacc);
        if (rounds == 0) {
            report->quant_accuracy = qacc;
            ptq_report_log(report, "all %s: top-1 %.2f%% (drop %.2f points, budget %.2f)",
                           mopt_quant_mode_name(opt->mode), 100 * qacc, drop, max_drop_points);
            /* Rank once, on the fully quantized model. */
            mopt_quant_report tmp;
            memset(&tmp, 0, sizeof(tmp));
            int64_t lim = opt->calib_samples > 0 && opt->calib_samples < 100 ? opt->calib_samples : 100;
            if ((st = ptq_build_report(&plan, q, &map, calib, lim, &tmp, err)) != MOPT_OK)
                goto done;
            rank_ops(in, &tmp, order, &n_order);
            mopt_quant_report_free(&tmp);
        } else {
            ptq_report_log(report, "  -> top-1 %.2f%% (drop %.2f points)", 100 * qacc, drop);
        }
        report->final_accuracy = qacc;
        rounds++;
        if (drop <= max_drop_points)
            break;
        /* Next operators to promote: int8 -> int16x8 where TFLite has the
         * kernel, anything else -> float. The search moves one operator at a
         * time, then in growing steps after eight rounds. */
        int moved = 0;
        while (moved < step && next < 2 * n_order) {
            int oi = order[next % n_order];
            bool second_pass = next >= n_order;
            next++;
            mopt_op_precision cur = prec[oi] != MOPT_PREC_DEFAULT ? prec[oi]
                                    : opt->mode == MOPT_QUANT_INT8 ? MOPT_PREC_INT8
                                                                   : MOPT_PREC_INT16X8;
            mopt_op_precision to;
            if (cur == MOPT_PREC_FLOAT)
                continue;
            if (!second_pass && cur == MOPT_PREC_INT8 && in->ops[oi].type != MOPT_OP_HARD_SWISH)
                to = MOPT_PREC_INT16X8;
            else if (second_pass || cur == MOPT_PREC_INT16X8 || in->ops[oi].type == MOPT_OP_HARD_SWISH)
                to = MOPT_PREC_FLOAT;
            else
                continue;
            /* operators that add no noise (reshapes) are not worth a step */
            prec[oi] = to;
            moved++;
            const mopt_op *op = &in->ops[oi];
            ptq_report_log(report, "operator %d %s '%s' -> %s", oi, mopt_op_name(op->type),
                           op->n_outputs > 0 ? in->tensors[op->outputs[0]].name : "",
                           to == MOPT_PREC_FLOAT ? "float" : "int16x8");
        }
        if (moved == 0) {
            ptq_report_log(report, "every operator is in higher precision; the budget cannot be met");
            break;
        }
        if (rounds >= 8)
            step *= 2;
    }
    /* Record the choices and the final per-layer comparison. */
    report->fallback_ops = malloc(((size_t)n + 1) * sizeof(int));
    report->fallback_precision = malloc(((size_t)n + 1) * sizeof(mopt_op_precision));
    if (!report->fallback_ops || !report->fallback_precision) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "fallback: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++)
        if (prec[i] != MOPT_PREC_DEFAULT && (!opt->op_precision || i >= opt->n_op_precision ||
                                             opt->op_precision[i] != prec[i])) {
            report->fallback_ops[report->n_fallback] = i;
            report->fallback_precision[report->n_fallback++] = prec[i];
        }
    {
        int64_t lim = opt->calib_samples > 0 && opt->calib_samples < 200 ? opt->calib_samples : 200;
        if ((st = ptq_build_report(&plan, q, &map, calib, lim, report, err)) != MOPT_OK)
            goto done;
    }
    snprintf(report->mode, sizeof(report->mode), "%s", mopt_quant_mode_name(opt->mode));
    snprintf(report->calib_method, sizeof(report->calib_method), "%s",
             mopt_calib_method_name(opt->calib_method));
    report->calib_samples = cal.samples;
    report->seconds_calibrate = t1 - t0;
    report->seconds_total = mopt_now() - t0;
    report->seconds_quantize = report->seconds_total - report->seconds_calibrate;
    *out = q;
    q = NULL;
done:
    mopt_graph_free(q);
    ptq_plan_free(&plan);
    ptq_map_free(&map);
    ptq_calib_free(&cal);
    free(prec);
    free(order);
    if (st != MOPT_OK)
        mopt_quant_report_free(report);
    return st;
}
