/* compress_cli.c - shared flow of `mopt prune` and `mopt cluster`. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "compress_cli.h"
#include "mopt/report.h"
#include "mopt/sparsity.h"

bool cc_parse_real(const char *cmd, const char *opt, const char *s, double lo, double hi,
                   bool hi_open, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    bool ok = errno == 0 && end != s && *end == '\0' && isfinite(v) && v >= lo &&
              (hi_open ? v < hi : v <= hi);
    if (!ok) {
        cli_usage_error(cmd, "--%s expects a number in [%g, %g%c, got '%s'", opt, lo, hi,
                        hi_open ? ')' : ']', s);
        return false;
    }
    *out = v;
    return true;
}

bool cc_parse_pair(const char *cmd, const char *opt, const char *s, char sep, int *a, int *b) {
    char *end = NULL;
    errno = 0;
    long x = strtol(s, &end, 10);
    bool ok = errno == 0 && end != s && *end == sep && x >= 0 && x <= 65536;
    long y = 0;
    if (ok) {
        const char *s2 = end + 1;
        errno = 0;
        y = strtol(s2, &end, 10);
        ok = errno == 0 && end != s2 && *end == '\0' && y >= 0 && y <= 65536;
    }
    if (!ok) {
        cli_usage_error(cmd, "--%s expects %s, got '%s'", opt,
                        sep == 'x' ? "HxW (e.g. 1x4)" : "M:N (e.g. 2:4)", s);
        return false;
    }
    *a = (int)x;
    *b = (int)y;
    return true;
}

char *cc_strdupf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Op-indexed selection from --layers (all weight layers without it). */
static int select_layers(const cc_options *o, const mopt_graph *g, bool *select) {
    mopt_error err;
    mopt_error_clear(&err);
    mopt_weight_layer *wl = NULL;
    int n = 0;
    if (mopt_weight_layers_list(g, &wl, &n, &err) != MOPT_OK)
        return cli_fail(&err);
    if (n == 0) {
        free(wl);
        return cli_error(MOPT_ERR_BAD_INPUT,
                         "%s: no %s layer: the model has no CONV_2D, DEPTHWISE_CONV_2D or "
                         "FULLY_CONNECTED op with constant float32 weights",
                         o->model, strcmp(o->cmd, "cluster") == 0 ? "clusterable" : "prunable");
    }
    bool *sel = calloc((size_t)n, sizeof *sel);
    if (!sel) {
        free(wl);
        return cli_error(MOPT_ERR_NOMEM, "out of memory");
    }
    int m = n;
    if (o->layers) {
        if (mopt_weight_layers_match(g, wl, n, o->layers, sel, &m, &err) != MOPT_OK) {
            free(wl);
            free(sel);
            return cli_fail(&err);
        }
    } else {
        for (int i = 0; i < n; i++)
            sel[i] = true;
    }
    if (m == 0) {
        int rc = cli_usage_error(o->cmd, "--layers '%s' matches no layer of %s (%d weight layers, "
                                         "e.g. '%s'; see 'mopt inspect')",
                                 o->layers, o->model, n, wl[0].name);
        free(wl);
        free(sel);
        return rc;
    }
    for (int i = 0; i < n; i++)
        select[wl[i].op] = sel[i];
    free(wl);
    free(sel);
    return 0;
}

static int fail_prefixed(mopt_error *err, const char *fmt, const char *arg) {
    mopt_error_prefix(err, fmt, arg);
    return cli_fail(err);
}

int cc_run(const cc_options *o, cc_transform fn, void *ctx) {
    cli_model m;
    int rc = cli_model_load(o->model, false, &m);
    if (rc)
        return rc;
    mopt_error err;
    mopt_error_clear(&err);
    mopt_dataset ds;
    memset(&ds, 0, sizeof ds);
    mopt_model_stats before, after;
    memset(&before, 0, sizeof before);
    memset(&after, 0, sizeof after);
    mopt_graph *g = m.graph;
    int n_ops = g->n_ops;
    bool *select = calloc((size_t)(n_ops > 0 ? n_ops : 1), sizeof *select);
    char **op_notes = calloc((size_t)(n_ops > 0 ? n_ops : 1), sizeof *op_notes);
    const char **notes = NULL;
    double acc_before = NAN, acc_after = NAN;
    if (!select || !op_notes) {
        rc = cli_error(MOPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = select_layers(o, g, select)) != 0)
        goto done;
    if (o->eval) {
        /* Load and check the data first: a mismatch must fail before any
         * output is written. */
        if (mopt_dataset_load(o->eval, MOPT_SPLIT_TEST, MOPT_SCALE_01, o->eval_limit, &ds, &err) !=
            MOPT_OK) {
            rc = fail_prefixed(&err, "--eval %s", o->eval);
            goto done;
        }
        if (mopt_eval_top1(g, &ds, (int)o->threads, &acc_before, &err) != MOPT_OK) {
            rc = fail_prefixed(&err, "--eval %s", o->eval);
            goto done;
        }
    }
    if (mopt_model_stats_compute(g, &before, &err) != MOPT_OK) {
        rc = fail_prefixed(&err, "%s", o->model);
        goto done;
    }
    if (fn(ctx, g, select, op_notes, &err) != MOPT_OK) {
        rc = fail_prefixed(&err, "%s", o->model);
        goto done;
    }
    if (mopt_model_stats_compute(g, &after, &err) != MOPT_OK) {
        rc = fail_prefixed(&err, "%s", o->model);
        goto done;
    }
    if (o->eval && mopt_eval_top1(g, &ds, (int)o->threads, &acc_after, &err) != MOPT_OK) {
        rc = fail_prefixed(&err, "--eval %s (optimized model)", o->eval);
        goto done;
    }
    notes = calloc((size_t)(after.n_layers > 0 ? after.n_layers : 1), sizeof *notes);
    if (!notes) {
        rc = cli_error(MOPT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < after.n_layers; i++) {
        int op = after.layers[i].op;
        notes[i] = op >= 0 && op < n_ops ? (op_notes[op] ? op_notes[op] : "-") : "-";
    }
    if (mopt_tflite_write_file(g, o->output, &err) != MOPT_OK) {
        rc = cli_fail(&err);
        goto done;
    }
    mopt_compression_report r;
    memset(&r, 0, sizeof r);
    r.command = o->cmd;
    r.settings = o->settings;
    r.input = o->model;
    r.output = o->output;
    r.before = &before;
    r.after = &after;
    r.notes = notes;
    r.n_notes = after.n_layers;
    r.accuracy_before = acc_before;
    r.accuracy_after = acc_after;
    r.accuracy_samples = o->eval ? ds.n : 0;
    mopt_status st = o->json ? mopt_compression_report_write_json(&r, stdout, &err)
                             : mopt_compression_report_write_text(&r, stdout, &err);
    rc = st == MOPT_OK ? 0 : cli_fail(&err);
done:
    if (op_notes)
        for (int i = 0; i < n_ops; i++)
            free(op_notes[i]);
    free(op_notes);
    free(notes);
    free(select);
    mopt_model_stats_free(&before);
    mopt_model_stats_free(&after);
    mopt_dataset_free(&ds);
    cli_model_free(&m);
    return rc;
}
