/* report.c - layer-by-layer comparison of the quantized model with the float
 * model, and its JSON / HTML forms.
 *
 * Both models run on the same samples; for every tensor an operator of the
 * float model produces, the float value f is compared with the quantized
 * model's value of that tensor, dequantized (q):
 *   SQNR = 10 log10(sum f^2 / sum (q - f)^2)        (dB, higher is better)
 *   RMSE / scale: the RMS error in quantization steps of that tensor
 *   max |q - f| and mean (q - f) (a systematic bias shows up here).
 * The errors accumulate along the graph, so a layer's SQNR includes what
 * its inputs brought; a sudden drop marks the layer that loses precision.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/util.h"
#include "quant/ptq_internal.h"

void mopt_quant_report_free(mopt_quant_report *r) {
    if (!r)
        return;
    for (int i = 0; i < r->n_layers; i++) free(r->layers[i].name);
    free(r->layers);
    free(r->fallback_ops);
    free(r->fallback_precision);
    free(r->log);
    memset(r, 0, sizeof(*r));
}

typedef struct acc {
    int qt;      /* tensor in the quantized graph */
    int ft;      /* float tensor */
    double sf2, se2, se, maxabs;
    int64_t n;
} acc;

static mopt_op_precision kind_prec(mopt_dtype d) {
    return d == MOPT_INT8 ? MOPT_PREC_INT8 : d == MOPT_INT16 ? MOPT_PREC_INT16X8 : MOPT_PREC_FLOAT;
}

mopt_status ptq_build_report(const ptq_plan *p, const mopt_graph *q, const ptq_map *map,
                             mopt_sample_source *src, int64_t limit, mopt_quant_report *r,
                             mopt_error *err) {
    const mopt_graph *g = p->g;
    mopt_status st = ptq_check_source(g, src, "report samples", err);
    if (st != MOPT_OK)
        return st;
    /* Tensors to compare: the input, then each operator's float outputs. */
    int cap = g->n_tensors + 1, n = 0;
    acc *a = calloc((size_t)cap, sizeof(acc));
    int *layer_op = calloc((size_t)cap, sizeof(int));
    if (!a || !layer_op) {
        free(a);
        free(layer_op);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "report: out of memory");
    }
    int in_t = g->inputs[0];
    if (map->home[in_t] >= 0) {
        /* With float I/O the input's error is made by its QUANTIZE. */
        int qt = map->home[in_t];
        for (int oi = 0; oi < q->n_ops && q->tensors[qt].dtype == MOPT_FLOAT32; oi++)
            if (q->ops[oi].type == MOPT_OP_QUANTIZE && q->ops[oi].inputs[0] == qt)
                qt = q->ops[oi].outputs[0];
        a[n].ft = in_t;
        a[n].qt = qt;
        layer_op[n++] = -1;
    }
    for (int oi = 0; oi < g->n_ops; oi++)
        for (int k = 0; k < g->ops[oi].n_outputs; k++) {
            int t = g->ops[oi].outputs[k];
            if (t < 0 || g->tensors[t].dtype != MOPT_FLOAT32 || map->home[t] < 0)
                continue;
            a[n].ft = t;
            a[n].qt = map->home[t];
            layer_op[n++] = oi;
        }
    mopt_graph *fg = ptq_observer_graph(g);
    mopt_interp *fit = NULL;
    ptq_qrun *qr = NULL;
    float *x = NULL;
    if (!fg) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "report: out of memory");
        goto done;
    }
    if ((st = ptq_interp(fg, &p->opt, &fit, err)) != MOPT_OK)
        goto done;
    if ((st = ptq_qrun_create(q, &p->opt, true, &qr, err)) != MOPT_OK) {
        mopt_error_prefix(err, "report");
        goto done;
    }
    int64_t per = mopt_tensor_numel(&g->tensors[in_t]);
    x = malloc((size_t)per * sizeof(float));
    if (!x) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "report: out of memory");
        goto done;
    }
    int64_t ns = mopt_sample_source_count(src);
    if (limit > 0 && limit < ns)
        ns = limit;
    if ((st = mopt_sample_source_rewind(src, err)) != MOPT_OK)
        goto done;
    for (int64_t s = 0; s < ns; s++) {
        if ((st = mopt_sample_source_next(src, x, NULL, err)) != MOPT_OK)
            goto done;
        memcpy(mopt_interp_input(fit, 0), x, (size_t)per * sizeof(float));
        if ((st = mopt_interp_invoke(fit, err)) != MOPT_OK ||
            (st = ptq_qrun_invoke(qr, x, err)) != MOPT_OK) {
            mopt_error_prefix(err, "report sample %lld", (long long)s);
            goto done;
        }
        for (int i = 0; i < n; i++) {
            const float *f = a[i].ft == in_t ? x : mopt_interp_tensor(fit, a[i].ft);
            if (!f)
                continue;
            int64_t m = mopt_tensor_numel(&g->tensors[a[i].ft]);
            for (int64_t j = 0; j < m; j++) {
                double fv = f[j], d = ptq_qrun_value(qr, a[i].qt, j) - fv;
                a[i].sf2 += fv * fv;
                a[i].se2 += d * d;
                a[i].se += d;
                if (fabs(d) > a[i].maxabs) a[i].maxabs = fabs(d);
            }
            a[i].n += m;
        }
        if (p->opt.progress)
            p->opt.progress(p->opt.progress_ctx, "report", s + 1, ns);
    }
    r->report_samples = ns;
    r->simulated = ptq_qrun_simulated(qr);
    r->layers = calloc((size_t)(n > 0 ? n : 1), sizeof(mopt_quant_layer_stats));
    if (!r->layers) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "report: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        mopt_quant_layer_stats *L = &r->layers[i];
        const mopt_tensor *qt = &q->tensors[a[i].qt];
        L->name = strdup(g->tensors[a[i].ft].name);
        if (!L->name) {
            st = mopt_error_set(err, MOPT_ERR_NOMEM, "report: out of memory");
            r->n_layers = i;
            goto done;
        }
        r->n_layers = i + 1;
        L->op_index = layer_op[i];
        L->op_type = layer_op[i] >= 0 ? (int)g->ops[layer_op[i]].type : -1;
        L->precision = kind_prec(qt->dtype);
        L->scale = qt->quant.n > 0 ? qt->quant.scale[0] : 0.0f;
        L->zero_point = qt->quant.n > 0 ? (int32_t)qt->quant.zero_point[0] : 0;
        bool calibrated = p->opt.mode == MOPT_QUANT_INT8 || p->opt.mode == MOPT_QUANT_INT16X8;
        L->range_min = calibrated ? p->rmin[a[i].ft] : NAN;
        L->range_max = calibrated ? p->rmax[a[i].ft] : NAN;
        double cnt = a[i].n > 0 ? (double)a[i].n : 1.0;
        L->sqnr_db = a[i].se2 == 0 ? INFINITY : a[i].sf2 == 0 ? -INFINITY : 10.0 * log10(a[i].sf2 / a[i].se2);
        double rmse = sqrt(a[i].se2 / cnt);
        L->rmse_over_scale = L->scale > 0 ? rmse / L->scale : NAN;
        L->max_abs_error = a[i].maxabs;
        L->mean_error = a[i].se / cnt;
    }
    /* Flag the worst quantized layers: the three lowest SQNR (at most a
     * fifth of them), and any below 10 dB. */
    int nq = 0;
    for (int i = 0; i < r->n_layers; i++)
        if (r->layers[i].precision != MOPT_PREC_FLOAT) nq++;
    /* float16 / dynamic models have float activations only: rank them all */
    bool all = nq == 0;
    if (all)
        nq = r->n_layers;
    int k = nq / 5 < 3 ? (nq / 5 > 0 ? nq / 5 : 1) : 3;
    if (nq == 0)
        k = 0;
    for (int pick = 0; pick < k; pick++) {
        int best = -1;
        for (int i = 0; i < r->n_layers; i++) {
            mopt_quant_layer_stats *L = &r->layers[i];
            if (L->flagged || (!all && L->precision == MOPT_PREC_FLOAT) || isinf(L->sqnr_db) > 0 ||
                isnan(L->sqnr_db))
                continue;
            if (best < 0 || L->sqnr_db < r->layers[best].sqnr_db) best = i;
        }
        if (best >= 0) r->layers[best].flagged = true;
    }
    for (int i = 0; i < r->n_layers; i++)
        if ((all || r->layers[i].precision != MOPT_PREC_FLOAT) && r->layers[i].sqnr_db < 10.0)
            r->layers[i].flagged = true;
    if (r->simulated)
        ptq_report_log(r, "the runtime has no integer kernel for some operator: errors were "
                          "measured on a float simulation of the quantized model");
done:
    ptq_qrun_free(qr);
    mopt_interp_free(fit);
    mopt_graph_free(fg);
    free(x);
    free(a);
    free(layer_op);
    return st;
}

/* ------------------------------------------------------------------------
 * Writers
 * ------------------------------------------------------------------------ */

static const char *prec_str(mopt_op_precision p) {
    switch (p) {
    case MOPT_PREC_INT8: return "int8";
    case MOPT_PREC_INT16X8: return "int16x8";
    case MOPT_PREC_FLOAT: return "float";
    default: return "default";
    }
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.9g", v);
    else fputs("null", f); /* JSON has no NaN / inf */
}

static void write_json(FILE *f, const mopt_quant_report *r) {
    fprintf(f, "{\n  \"mode\": ");
    json_str(f, r->mode);
    fprintf(f, ",\n  \"calib_method\": ");
    json_str(f, r->calib_method);
    fprintf(f, ",\n  \"calib_samples\": %lld,\n  \"report_samples\": %lld,\n  \"simulated\": %s,\n",
            (long long)r->calib_samples, (long long)r->report_samples, r->simulated ? "true" : "false");
    fprintf(f, "  \"seconds\": {\"calibrate\": ");
    json_num(f, r->seconds_calibrate);
    fprintf(f, ", \"quantize\": ");
    json_num(f, r->seconds_quantize);
    fprintf(f, ", \"total\": ");
    json_num(f, r->seconds_total);
    fprintf(f, "},\n  \"layers\": [");
    for (int i = 0; i < r->n_layers; i++) {
        const mopt_quant_layer_stats *L = &r->layers[i];
        const char *op = L->op_type >= 0 ? mopt_op_name(L->op_type) : "input";
        fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
        json_str(f, L->name);
        fprintf(f, ", \"op_index\": %d, \"op\": ", L->op_index);
        json_str(f, op ? op : "?");
        fprintf(f, ", \"precision\": \"%s\", \"scale\": ", prec_str(L->precision));
        json_num(f, L->scale);
        fprintf(f, ", \"zero_point\": %d, \"range\": [", (int)L->zero_point);
        json_num(f, L->range_min);
        fputs(", ", f);
        json_num(f, L->range_max);
        fprintf(f, "], \"sqnr_db\": ");
        json_num(f, L->sqnr_db);
        fprintf(f, ", \"rmse_over_scale\": ");
        json_num(f, L->rmse_over_scale);
        fprintf(f, ", \"max_abs_error\": ");
        json_num(f, L->max_abs_error);
        fprintf(f, ", \"mean_error\": ");
        json_num(f, L->mean_error);
        fprintf(f, ", \"flagged\": %s}", L->flagged ? "true" : "false");
    }
    fprintf(f, "\n  ],\n  \"bias_correction\": {\"operators\": %d, \"mean_abs_correction_steps\": ",
            r->n_bias_corrected);
    json_num(f, r->mean_bias_correction_steps);
    fprintf(f, "},\n  \"accuracy\": {\"float\": ");
    json_num(f, r->float_accuracy >= 0 ? r->float_accuracy : NAN);
    fprintf(f, ", \"quantized\": ");
    json_num(f, r->quant_accuracy >= 0 ? r->quant_accuracy : NAN);
    fprintf(f, ", \"final\": ");
    json_num(f, r->final_accuracy >= 0 ? r->final_accuracy : NAN);
    fprintf(f, "},\n  \"fallback\": [");
    for (int i = 0; i < r->n_fallback; i++)
        fprintf(f, "%s{\"op_index\": %d, \"precision\": \"%s\"}", i ? ", " : "", r->fallback_ops[i],
                prec_str(r->fallback_precision[i]));
    fprintf(f, "],\n  \"log\": [");
    int first = 1;
    if (r->log) {
        const char *p = r->log;
        while (*p) {
            const char *e = strchr(p, '\n');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            char *line = malloc(len + 1);
            if (line) {
                memcpy(line, p, len);
                line[len] = '\0';
                fputs(first ? "" : ", ", f);
                json_str(f, line);
                first = 0;
                free(line);
            }
            p += len + (e ? 1 : 0);
        }
    }
    fprintf(f, "]\n}\n");
}

static void html_str(FILE *f, const char *s) {
    for (const char *p = s ? s : ""; *p; p++) {
        switch (*p) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*p, f);
        }
    }
}

static void html_num(FILE *f, double v, const char *fmt) {
    if (isnan(v)) fputs("&ndash;", f);
    else if (isinf(v)) fputs(v > 0 ? "exact" : "&minus;&infin;", f);
    else fprintf(f, fmt, v);
}

static void write_html(FILE *f, const mopt_quant_report *r) {
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
               "<title>mopt quantization report</title>\n<style>\n"
               "body{font-family:sans-serif;margin:1.5em;color:#222}"
               "table{border-collapse:collapse;font-size:13px}"
               "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
               "td.n{text-align:left;max-width:34em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}"
               "tr.flag{background:#fde2e2}"
               ".note{color:#555;font-size:13px}\n</style></head><body>\n");
    fprintf(f, "<h1>Quantization report</h1>\n<p>mode <b>");
    html_str(f, r->mode);
    fprintf(f, "</b>, calibration <b>");
    html_str(f, r->calib_method);
    fprintf(f, "</b> on %lld samples; errors measured on %lld samples%s.</p>\n",
            (long long)r->calib_samples, (long long)r->report_samples,
            r->simulated ? " with a float simulation of the quantized model (no integer kernels)"
                         : " with the integer runtime");
    if (r->float_accuracy >= 0)
        fprintf(f, "<p>top-1: float %.2f%%, quantized %.2f%%, final %.2f%% (%d operators kept in "
                   "higher precision)</p>\n",
                100 * r->float_accuracy, 100 * r->quant_accuracy, 100 * r->final_accuracy,
                r->n_fallback);
    if (r->n_bias_corrected)
        fprintf(f, "<p>bias correction: %d operators, mean |correction| %.3f output steps</p>\n",
                r->n_bias_corrected, r->mean_bias_correction_steps);
    /* Bar chart of SQNR (dB): one bar per layer, flagged ones in red. */
    double top = 10;
    for (int i = 0; i < r->n_layers; i++)
        if (isfinite(r->layers[i].sqnr_db) && r->layers[i].sqnr_db > top) top = r->layers[i].sqnr_db;
    int bar = 14, width = 640, left = 50, h = r->n_layers * bar + 40;
    fprintf(f, "<h2>SQNR per layer (dB)</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
               "height=\"%d\" font-size=\"10\">\n",
            left + width + 60, h);
    for (int i = 0; i < r->n_layers; i++) {
        const mopt_quant_layer_stats *L = &r->layers[i];
        double v = isfinite(L->sqnr_db) ? L->sqnr_db : (L->sqnr_db > 0 ? top : 0);
        if (v < 0) v = 0;
        int w = (int)(width * v / top);
        int y = 20 + i * bar;
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%d</text>", left - 4, y + 10, i);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"><title>", left, y,
                w, bar - 3, L->flagged ? "#d9534f" : L->precision == MOPT_PREC_FLOAT ? "#999" : "#4a7fc1");
        html_str(f, L->name);
        fprintf(f, "</title></rect><text x=\"%d\" y=\"%d\">", left + w + 4, y + 10);
        html_num(f, L->sqnr_db, "%.1f");
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</svg>\n<h2>Layers</h2>\n<table><tr><th>#</th><th>op</th><th>tensor</th>"
               "<th>precision</th><th>scale</th><th>zp</th><th>range</th><th>SQNR dB</th>"
               "<th>RMSE/scale</th><th>max |err|</th><th>mean err</th></tr>\n");
    for (int i = 0; i < r->n_layers; i++) {
        const mopt_quant_layer_stats *L = &r->layers[i];
        const char *op = L->op_type >= 0 ? mopt_op_name(L->op_type) : "input";
        fprintf(f, "<tr%s><td>%d</td><td>%s</td><td class=\"n\" title=\"", L->flagged ? " class=\"flag\"" : "",
                i, op ? op : "?");
        html_str(f, L->name);
        fprintf(f, "\">");
        html_str(f, L->name);
        fprintf(f, "</td><td>%s</td><td>%.4g</td><td>%d</td><td>", prec_str(L->precision),
                (double)L->scale, (int)L->zero_point);
        if (isnan(L->range_min))
            fputs("&ndash;", f);
        else
            fprintf(f, "[%.4g, %.4g]", (double)L->range_min, (double)L->range_max);
        fprintf(f, "</td><td>");
        html_num(f, L->sqnr_db, "%.2f");
        fprintf(f, "</td><td>");
        html_num(f, L->rmse_over_scale, "%.3f");
        fprintf(f, "</td><td>%.4g</td><td>%.3g</td></tr>\n", L->max_abs_error, L->mean_error);
    }
    fprintf(f, "</table>\n<p class=\"note\">SQNR = 10&middot;log10(&Sigma;f&sup2; / &Sigma;(q&minus;f)&sup2;) "
               "between the float model's value f and the quantized model's dequantized value q "
               "of each tensor; errors accumulate along the graph. Flagged rows: the worst layers.</p>\n");
    if (r->log) {
        fprintf(f, "<pre class=\"note\">");
        html_str(f, r->log);
        fprintf(f, "</pre>\n");
    }
    fprintf(f, "</body></html>\n");
}

mopt_status mopt_quant_report_write(const mopt_quant_report *r, const char *path, mopt_error *err) {
    if (!r || !path)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_quant_report_write: NULL argument");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return mopt_error_set(err, MOPT_ERR_NOMEM, "%s: out of memory", path);
    size_t pl = strlen(path);
    bool html = (pl >= 5 && strcmp(path + pl - 5, ".html") == 0) ||
                (pl >= 4 && strcmp(path + pl - 4, ".htm") == 0);
    if (html)
        write_html(f, r);
    else
        write_json(f, r);
    if (fclose(f) != 0) {
        free(buf);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "%s: out of memory", path);
    }
    mopt_status st = mopt_file_write_atomic(path, buf, len, err);
    free(buf);
    return st;
}
