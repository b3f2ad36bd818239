/* compression.c - per-layer sparsity / distinct values, model sizes (raw and
 * zlib level 9), the before/after compression report as a text table or
 * JSON, and top-1 accuracy for the "accuracy before / after" lines. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/report.h"
#include "mopt/runtime.h"
#include "mopt/sparsity.h"
#include "mopt/tflite.h"
#include "mopt/util.h"
#include "sparsity/sparse_internal.h"

void mopt_model_stats_free(mopt_model_stats *s) {
    if (!s)
        return;
    for (int i = 0; i < s->n_layers; i++)
        free(s->layers[i].name);
    free(s->layers);
    memset(s, 0, sizeof *s);
}

mopt_status mopt_model_stats_compute(const mopt_graph *g, mopt_model_stats *out, mopt_error *err) {
    if (!out)
        return mopt_error_set(err, MOPT_ERR_ARG, "model stats: NULL output");
    memset(out, 0, sizeof *out);
    if (!g)
        return mopt_error_set(err, MOPT_ERR_ARG, "model stats: NULL graph");
    mopt_weight_layer *wl = NULL;
    int n = 0;
    mopt_status st = mopt_weight_layers_list(g, &wl, &n, err);
    if (st != MOPT_OK)
        return st;
    out->layers = calloc((size_t)(n > 0 ? n : 1), sizeof *out->layers);
    if (!out->layers) {
        free(wl);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "model stats: out of memory");
    }
    for (int i = 0; i < n; i++) {
        mopt_layer_stats *L = &out->layers[i];
        const mopt_tensor *t = &g->tensors[wl[i].weights];
        const float *w = mopt_tensor_data(g, wl[i].weights);
        L->op = wl[i].op;
        L->type = wl[i].type;
        L->weights = wl[i].weights;
        L->rank = t->rank;
        memcpy(L->dims, t->dims, sizeof L->dims);
        L->channel_axis = wl[i].channel_axis;
        L->params = mopt_tensor_numel(t);
        L->name = strdup(wl[i].name ? wl[i].name : "");
        float *scratch = malloc((size_t)L->params * sizeof *scratch);
        out->n_layers = i + 1;
        if (!L->name || !scratch) {
            free(scratch);
            free(wl);
            mopt_model_stats_free(out);
            return mopt_error_set(err, MOPT_ERR_NOMEM, "model stats: out of memory");
        }
        for (int64_t j = 0; j < L->params; j++)
            L->zeros += w[j] == 0.0f;
        L->unique = sp_count_unique(w, L->params, scratch);
        free(scratch);
        L->unique_per_channel_max = sp_max_unique_along(w, t->rank, t->dims, L->channel_axis);
        out->weight_params += L->params;
        out->weight_zeros += L->zeros;
    }
    free(wl);
    out->params = mopt_graph_param_count(g);
    uint8_t *bytes = NULL;
    size_t size = 0;
    if ((st = mopt_tflite_write_mem(g, &bytes, &size, err)) != MOPT_OK) {
        mopt_model_stats_free(out);
        return st;
    }
    out->raw_bytes = (int64_t)size;
    out->gzip_bytes = mopt_gzip_size(bytes, size);
    free(bytes);
    if (out->gzip_bytes < 0) {
        mopt_model_stats_free(out);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "model stats: zlib compression failed");
    }
    return MOPT_OK;
}

/* ---- formatting helpers ---- */

/* Copies a name for a terminal: control bytes become '?', long names are cut
 * on a UTF-8 boundary and end in "...". */
static const char *printable(const char *s, size_t max, char *buf, size_t cap) {
    size_t n = 0, len = s ? strlen(s) : 0;
    bool cut = len > max;
    size_t lim = cut ? max - 3 : len;
    while (cut && lim > 0 && ((unsigned char)s[lim] & 0xC0) == 0x80)
        lim--;
    for (size_t i = 0; i < lim && n + 1 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        buf[n++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    if (cut)
        for (int i = 0; i < 3 && n + 1 < cap; i++)
            buf[n++] = '.';
    buf[n] = 0;
    return buf;
}

static const char *shape_str(const int32_t *d, int rank, char *buf, size_t cap) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId32, i ? "," : "", d[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
    return buf;
}

static double pct(int64_t a, int64_t b) { return b > 0 ? 100.0 * (double)a / (double)b : 0.0; }

static const mopt_layer_stats *find_layer(const mopt_model_stats *s, int op) {
    if (!s)
        return NULL;
    for (int i = 0; i < s->n_layers; i++)
        if (s->layers[i].op == op)
            return &s->layers[i];
    return NULL;
}

static const char *short_type(mopt_op_type t) {
    return t == MOPT_OP_CONV_2D ? "conv" : t == MOPT_OP_DEPTHWISE_CONV_2D ? "dwconv" : "fc";
}

static const char *fmt_bytes(int64_t b, char *buf, size_t cap) {
    if (b >= 10 * 1024 * 1024)
        snprintf(buf, cap, "%.1f MiB", (double)b / 1048576.0);
    else if (b >= 10 * 1024)
        snprintf(buf, cap, "%.1f KiB", (double)b / 1024.0);
    else
        snprintf(buf, cap, "%" PRId64 " B", b);
    return buf;
}

mopt_status mopt_compression_report_write_text(const mopt_compression_report *r, FILE *f,
                                               mopt_error *err) {
    if (!r || !f || !r->after)
        return mopt_error_set(err, MOPT_ERR_ARG, "report: NULL argument");
    const mopt_model_stats *a = r->after, *b = r->before;
    char nb[64], s1[72], s2[72], row[640];
    fprintf(f, "mopt %s: %s -> %s\n", r->command ? r->command : "report",
            r->input ? r->input : "(model)", r->output ? r->output : "(not written)");
    if (r->settings)
        fprintf(f, "  %s\n", r->settings);
    fprintf(f, "\n  %3s  %-36s  %-6s  %-26s  %8s  %-16s  %-17s  %s\n", "op", "layer", "type",
            "shape", "params", "sparsity", "unique values", "note");
    for (int i = 0; i < a->n_layers; i++) {
        const mopt_layer_stats *L = &a->layers[i];
        const mopt_layer_stats *B = find_layer(b, L->op);
        char shape[160], sp[40], un[48];
        shape_str(L->dims, L->rank, s2, sizeof s2);
        if (B && (B->rank != L->rank || memcmp(B->dims, L->dims, sizeof L->dims) != 0)) {
            shape_str(B->dims, B->rank, s1, sizeof s1);
            snprintf(shape, sizeof shape, "%s->%s", s1, s2);
        } else {
            snprintf(shape, sizeof shape, "%s", s2);
        }
        if (B) {
            snprintf(sp, sizeof sp, "%.1f%% -> %.1f%%", pct(B->zeros, B->params),
                     pct(L->zeros, L->params));
            snprintf(un, sizeof un, "%" PRId64 " -> %" PRId64, B->unique, L->unique);
        } else {
            snprintf(sp, sizeof sp, "%.1f%%", pct(L->zeros, L->params));
            snprintf(un, sizeof un, "%" PRId64, L->unique);
        }
        const char *note = r->notes && i < r->n_notes && r->notes[i] ? r->notes[i] : "";
        snprintf(row, sizeof row, "  %3d  %-36s  %-6s  %-26s  %8" PRId64 "  %-16s  %-17s  %s", L->op,
                 printable(L->name, 36, nb, sizeof nb), short_type(L->type), shape, L->params, sp,
                 un, note);
        /* trailing spaces off */
        size_t n = strlen(row);
        while (n > 0 && row[n - 1] == ' ')
            row[--n] = 0;
        fprintf(f, "%s\n", row);
    }
    fprintf(f, "\n  %-22s  %14s  %14s  %8s\n", "model", "before", "after", "ratio");
    if (b) {
        fprintf(f, "  %-22s  %14" PRId64 "  %14" PRId64 "  %7.2fx\n", "parameters", b->params,
                a->params, a->params > 0 ? (double)b->params / (double)a->params : 0.0);
        fprintf(f, "  %-22s  %13.1f%%  %13.1f%%\n", "weight sparsity",
                pct(b->weight_zeros, b->weight_params), pct(a->weight_zeros, a->weight_params));
        fprintf(f, "  %-22s  %14s  %14s  %7.2fx\n", "size", fmt_bytes(b->raw_bytes, s1, sizeof s1),
                fmt_bytes(a->raw_bytes, s2, sizeof s2),
                a->raw_bytes > 0 ? (double)b->raw_bytes / (double)a->raw_bytes : 0.0);
        fprintf(f, "  %-22s  %14s  %14s  %7.2fx\n", "gzip size (zlib -9)",
                fmt_bytes(b->gzip_bytes, s1, sizeof s1), fmt_bytes(a->gzip_bytes, s2, sizeof s2),
                a->gzip_bytes > 0 ? (double)b->gzip_bytes / (double)a->gzip_bytes : 0.0);
    } else {
        fprintf(f, "  %-22s  %14s  %14" PRId64 "\n", "parameters", "", a->params);
        fprintf(f, "  %-22s  %14s  %13.1f%%\n", "weight sparsity", "",
                pct(a->weight_zeros, a->weight_params));
        fprintf(f, "  %-22s  %14s  %14s\n", "size", "", fmt_bytes(a->raw_bytes, s2, sizeof s2));
        fprintf(f, "  %-22s  %14s  %14s\n", "gzip size (zlib -9)", "",
                fmt_bytes(a->gzip_bytes, s2, sizeof s2));
    }
    if (!isnan(r->accuracy_before) || !isnan(r->accuracy_after)) {
        char ab[32] = "-", aa[32] = "-";
        if (!isnan(r->accuracy_before))
            snprintf(ab, sizeof ab, "%.2f%%", 100.0 * r->accuracy_before);
        if (!isnan(r->accuracy_after))
            snprintf(aa, sizeof aa, "%.2f%%", 100.0 * r->accuracy_after);
        fprintf(f, "  %-22s  %14s  %14s", "top-1 accuracy", ab, aa);
        if (!isnan(r->accuracy_before) && !isnan(r->accuracy_after))
            fprintf(f, "  %+.2f pt", 100.0 * (r->accuracy_after - r->accuracy_before));
        fprintf(f, "  (%" PRId64 " samples)\n", r->accuracy_samples);
    } else {
        fprintf(f, "  %-22s  %14s  %14s\n", "top-1 accuracy", "n/a", "n/a");
    }
    if (ferror(f))
        return mopt_error_set(err, MOPT_ERR_IO, "report: write error");
    return MOPT_OK;
}

/* ---- JSON ---- */

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

static void json_dims(FILE *f, const int32_t *d, int rank) {
    fputc('[', f);
    for (int i = 0; i < rank; i++)
        fprintf(f, "%s%" PRId32, i ? ", " : "", d[i]);
    fputc(']', f);
}

static void json_model(FILE *f, const char *key, const mopt_model_stats *s) {
    fprintf(f, "  \"%s\": ", key);
    if (!s) {
        fputs("null", f);
        return;
    }
    fprintf(f,
            "{\"params\": %" PRId64 ", \"weight_params\": %" PRId64 ", \"weight_zeros\": %" PRId64
            ", \"weight_sparsity\": ",
            s->params, s->weight_params, s->weight_zeros);
    json_num(f, s->weight_params > 0 ? (double)s->weight_zeros / (double)s->weight_params : 0.0);
    fprintf(f, ", \"raw_bytes\": %" PRId64 ", \"gzip_bytes\": %" PRId64 "}", s->raw_bytes,
            s->gzip_bytes);
}

mopt_status mopt_compression_report_write_json(const mopt_compression_report *r, FILE *f,
                                               mopt_error *err) {
    if (!r || !f || !r->after)
        return mopt_error_set(err, MOPT_ERR_ARG, "report: NULL argument");
    const mopt_model_stats *a = r->after, *b = r->before;
    fputs("{\n  \"command\": ", f);
    json_str(f, r->command ? r->command : "report");
    fputs(",\n  \"settings\": ", f);
    if (r->settings)
        json_str(f, r->settings);
    else
        fputs("null", f);
    fputs(",\n  \"input\": ", f);
    if (r->input)
        json_str(f, r->input);
    else
        fputs("null", f);
    fputs(",\n  \"output\": ", f);
    if (r->output)
        json_str(f, r->output);
    else
        fputs("null", f);
    fputs(",\n  \"layers\": [", f);
    for (int i = 0; i < a->n_layers; i++) {
        const mopt_layer_stats *L = &a->layers[i];
        const mopt_layer_stats *B = find_layer(b, L->op);
        fprintf(f, "%s\n    {\"op\": %d, \"type\": ", i ? "," : "", L->op);
        json_str(f, mopt_op_name(L->type));
        fputs(", \"name\": ", f);
        json_str(f, L->name);
        fputs(", \"shape_before\": ", f);
        if (B)
            json_dims(f, B->dims, B->rank);
        else
            fputs("null", f);
        fputs(", \"shape\": ", f);
        json_dims(f, L->dims, L->rank);
        fprintf(f, ", \"params_before\": ");
        if (B)
            fprintf(f, "%" PRId64, B->params);
        else
            fputs("null", f);
        fprintf(f, ", \"params\": %" PRId64 ", \"sparsity_before\": ", L->params);
        if (B)
            json_num(f, B->params ? (double)B->zeros / (double)B->params : 0.0);
        else
            fputs("null", f);
        fputs(", \"sparsity\": ", f);
        json_num(f, L->params ? (double)L->zeros / (double)L->params : 0.0);
        fputs(", \"unique_before\": ", f);
        if (B)
            fprintf(f, "%" PRId64, B->unique);
        else
            fputs("null", f);
        fprintf(f, ", \"unique\": %" PRId64 ", \"unique_per_channel_max\": %" PRId64, L->unique,
                L->unique_per_channel_max);
        fputs(", \"note\": ", f);
        if (r->notes && i < r->n_notes && r->notes[i])
            json_str(f, r->notes[i]);
        else
            fputs("null", f);
        fputc('}', f);
    }
    fputs(a->n_layers ? "\n  ],\n" : "],\n", f);
    json_model(f, "before", b);
    fputs(",\n", f);
    json_model(f, "after", a);
    fputs(",\n  \"gzip_ratio\": ", f);
    json_num(f, b && a->gzip_bytes > 0 ? (double)b->gzip_bytes / (double)a->gzip_bytes : NAN);
    fputs(",\n  \"accuracy_before\": ", f);
    json_num(f, r->accuracy_before);
    fputs(",\n  \"accuracy_after\": ", f);
    json_num(f, r->accuracy_after);
    fprintf(f, ",\n  \"accuracy_samples\": %" PRId64 "\n}\n", r->accuracy_samples);
    if (ferror(f))
        return mopt_error_set(err, MOPT_ERR_IO, "report: write error");
    return MOPT_OK;
}

/* ---- accuracy ---- */

mopt_status mopt_eval_top1(const mopt_graph *g, const mopt_dataset *d, int threads,
                           double *accuracy, mopt_error *err) {
    if (!g || !d || !accuracy)
        return mopt_error_set(err, MOPT_ERR_ARG, "eval: NULL argument");
    if (!d->labels || d->n <= 0)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "eval: the dataset has no labelled samples");
    if (g->n_inputs != 1 || g->n_outputs < 1)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "eval: the model must have one input and an output (has %d, %d)",
                              g->n_inputs, g->n_outputs);
    const mopt_tensor *in = &g->tensors[g->inputs[0]], *out = &g->tensors[g->outputs[0]];
    char sb[96];
    if (in->dtype != MOPT_FLOAT32 || out->dtype != MOPT_FLOAT32)
        return mopt_error_set(err, MOPT_ERR_UNSUPPORTED, "eval: needs a float32 input and output");
    if (in->rank != 4 || in->dims[0] != 1 || in->dims[1] != d->h || in->dims[2] != d->w ||
        in->dims[3] != d->c)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "data: images are %dx%dx%d but the model input is %s", d->h, d->w,
                              d->c, shape_str(in->dims, in->rank, sb, sizeof sb));
    int64_t classes = mopt_tensor_numel(out);
    if (classes < d->num_classes)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "data: %d classes but the model output %s has %" PRId64, d->num_classes,
                              shape_str(out->dims, out->rank, sb, sizeof sb), classes);
    mopt_interp_options o = mopt_interp_default_options();
    o.num_threads = threads;
    mopt_interp *it = NULL;
    mopt_status st = mopt_interp_create(g, &o, &it, err);
    if (st != MOPT_OK)
        return st;
    const size_t per = (size_t)d->h * (size_t)d->w * (size_t)d->c;
    int64_t correct = 0;
    for (int64_t i = 0; i < d->n; i++) {
        memcpy(mopt_interp_input(it, 0), d->images + (size_t)i * per, per * sizeof(float));
        if ((st = mopt_interp_invoke(it, err)) != MOPT_OK)
            break;
        const float *y = mopt_interp_output(it, 0);
        int64_t best = 0;
        for (int64_t k = 1; k < classes; k++)
            if (y[k] > y[best] || (isnan(y[best]) && !isnan(y[k])))
                best = k;
        correct += best == d->labels[i];
    }
    mopt_interp_free(it);
    if (st == MOPT_OK)
        *accuracy = (double)correct / (double)d->n;
    return st;
}
