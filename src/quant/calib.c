/* calib.c - calibration: runs the float model on the representative samples
 * and records every float activation (running min/max, and a histogram for
 * the histogram-based methods).
 *
 * The activations are observed without touching the runtime: a clone of the
 * graph lists every float activation as a graph output, and the arena
 * planner never reuses an output's memory, so after each invoke all of them
 * can be read with mopt_interp_tensor. Memory is one activation arena plus,
 * per tensor, two floats and (histogram methods) a fixed number of bins:
 * nothing grows with the number of samples.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quant/ptq_internal.h"

void ptq_calib_free(ptq_calib *c) {
    if (!c)
        return;
    if (c->hist)
        for (int t = 0; t < c->n_tensors; t++) ptq_hist_free(&c->hist[t]);
    free(c->hist);
    free(c->seen);
    free(c->min);
    free(c->max);
    memset(c, 0, sizeof(*c));
}

mopt_graph *ptq_observer_graph(const mopt_graph *g) {
    mopt_graph *o = mopt_graph_clone(g);
    if (!o)
        return NULL;
    int32_t *outs = malloc(((size_t)g->n_tensors + (size_t)g->n_outputs + 1) * sizeof(int32_t));
    bool *used = calloc((size_t)g->n_tensors + 1, sizeof(bool));
    if (!outs || !used) {
        free(outs);
        free(used);
        mopt_graph_free(o);
        return NULL;
    }
    int n = 0;
    for (int i = 0; i < g->n_outputs; i++)
        if (!used[g->outputs[i]]) {
            used[g->outputs[i]] = true;
            outs[n++] = g->outputs[i];
        }
    for (int oi = 0; oi < g->n_ops; oi++)
        for (int k = 0; k < g->ops[oi].n_outputs; k++) {
            int t = g->ops[oi].outputs[k];
            if (t >= 0 && !used[t] && g->tensors[t].dtype == MOPT_FLOAT32) {
                used[t] = true;
                outs[n++] = t;
            }
        }
    mopt_status st = mopt_graph_set_io(o, g->inputs, g->n_inputs, outs, n);
    free(outs);
    free(used);
    if (st != MOPT_OK) {
        mopt_graph_free(o);
        return NULL;
    }
    return o;
}

static void tensor_shape_str(const mopt_tensor *t, char *buf, size_t cap) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int d = 0; d < t->rank && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%d", d ? "," : "", (int)t->dims[d]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

mopt_status ptq_check_source(const mopt_graph *g, const mopt_sample_source *src, const char *what,
                             mopt_error *err) {
    if (!src)
        return mopt_error_set(err, MOPT_ERR_ARG, "%s: none given", what);
    if (g->n_inputs != 1)
        return mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                              "%s: image samples can feed only a model with one input (this one "
                              "has %d)",
                              what, g->n_inputs);
    if (mopt_sample_source_count(src) <= 0)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: the set is empty (no samples)", what);
    const mopt_tensor *in = &g->tensors[g->inputs[0]];
    int h, w, c;
    mopt_sample_source_shape(src, &h, &w, &c);
    int64_t per = (int64_t)h * w * c, numel = mopt_tensor_numel(in);
    bool ok = per == numel;
    /* An NHWC image input must match the image shape exactly (a 28x28x1
     * sample must not silently feed a [1,14,56,1] input). */
    if (ok && in->rank == 4)
        ok = in->dims[1] == h && in->dims[2] == w && in->dims[3] == c;
    if (!ok) {
        char shape[96];
        tensor_shape_str(in, shape, sizeof(shape));
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "%s: samples are %dx%dx%d (%lld values) but input '%s' is %s (%lld "
                              "values)",
                              what, h, w, c, (long long)per, in->name, shape, (long long)numel);
    }
    return MOPT_OK;
}

/* Multiply-accumulates of one inference (CONV, DEPTHWISE, FC). */
static double graph_macs(const mopt_graph *g) {
    double macs = 0;
    for (int oi = 0; oi < g->n_ops; oi++) {
        const mopt_op *op = &g->ops[oi];
        if (op->n_inputs < 2 || op->n_outputs < 1 || op->inputs[1] < 0 || op->outputs[0] < 0)
            continue;
        const mopt_tensor *w = &g->tensors[op->inputs[1]], *y = &g->tensors[op->outputs[0]];
        double out = (double)mopt_tensor_numel(y);
        if (op->type == MOPT_OP_CONV_2D && w->rank == 4)
            macs += out * w->dims[1] * w->dims[2] * w->dims[3];
        else if (op->type == MOPT_OP_DEPTHWISE_CONV_2D && w->rank == 4)
            macs += out * w->dims[1] * w->dims[2];
        else if (op->type == MOPT_OP_FULLY_CONNECTED && w->rank == 2)
            macs += out * w->dims[1];
    }
    return macs;
}

mopt_status ptq_interp(const mopt_graph *g, const mopt_quant_options *opt, mopt_interp **it,
                       mopt_error *err) {
    mopt_interp_options io = mopt_interp_default_options();
    if (opt && opt->num_threads > 0)
        io.num_threads = opt->num_threads;
    else if (graph_macs(g) < 2e7)
        io.num_threads = 1; /* a few million MACs: threads cost more than they save */
    return mopt_interp_create(g, &io, it, err);
}

/* min and max of x[0..n) (n >= 1); false if any value is NaN or +-inf.
 * Eight independent lanes without early exit so the compiler vectorizes
 * it: calibration reads every activation of every sample. */
static bool minmax_finite(const float *x, int64_t n, float *lo_out, float *hi_out) {
    float lo[8], hi[8], bad[8];
    for (int k = 0; k < 8; k++) {
        lo[k] = hi[k] = x[0];
        bad[k] = 0.0f;
    }
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) {
            float v = x[j + k];
            lo[k] = v < lo[k] ? v : lo[k];
            hi[k] = v > hi[k] ? v : hi[k];
            bad[k] += v - v; /* NaN for NaN and +-inf, 0 otherwise */
        }
    for (; j < n; j++) {
        float v = x[j];
        lo[0] = v < lo[0] ? v : lo[0];
        hi[0] = v > hi[0] ? v : hi[0];
        bad[0] += v - v;
    }
    for (int k = 1; k < 8; k++) {
        lo[0] = lo[k] < lo[0] ? lo[k] : lo[0];
        hi[0] = hi[k] > hi[0] ? hi[k] : hi[0];
        bad[0] += bad[k];
    }
    *lo_out = lo[0];
    *hi_out = hi[0];
    return bad[0] == 0.0f;
}


/* ---- the calibration run ----
 * Samples are handed out one at a time to W workers (one per core by
 * default), each with its own interpreter (single-threaded) and its own
 * statistics; the statistics are merged at the end. Min/max and the
 * histograms (exact power-of-two re-binning, histogram.h) do not depend on
 * the order in which values arrive, so the result is identical for any
 * number of workers. */

typedef struct cal_shared {
    const mopt_graph *g;
    const mopt_graph *og;
    const mopt_quant_options *opt;
    mopt_sample_source *src;
    pthread_mutex_t lock;
    int64_t next, n, done;
    bool stop;
    const int *obs;
    int n_obs, in_t;
    int64_t per;
    int bins;
    bool use_hist;
} cal_shared;

typedef struct cal_worker {
    cal_shared *sh;
    mopt_interp *it;
    float *sample;
    ptq_calib c; /* this worker's statistics */
    mopt_status st;
    mopt_error err;
    int64_t fail_sample; /* sample the worker last took (0 before any): the failing one if st != OK */
} cal_worker;

static mopt_status worker_init(cal_worker *w, cal_shared *sh, int interp_threads) {
    const mopt_graph *g = sh->g;
    w->sh = sh;
    w->c.n_tensors = g->n_tensors;
    w->c.seen = calloc((size_t)g->n_tensors + 1, sizeof(bool));
    w->c.min = calloc((size_t)g->n_tensors + 1, sizeof(float));
    w->c.max = calloc((size_t)g->n_tensors + 1, sizeof(float));
    if (sh->use_hist)
        w->c.hist = calloc((size_t)g->n_tensors + 1, sizeof(ptq_hist));
    w->sample = malloc((size_t)sh->per * sizeof(float));
    if (!w->c.seen || !w->c.min || !w->c.max || (sh->use_hist && !w->c.hist) || !w->sample)
        return mopt_error_set(&w->err, MOPT_ERR_NOMEM, "calibration: out of memory");
    if (sh->use_hist)
        for (int i = 0; i < sh->n_obs; i++)
            if (ptq_hist_init(&w->c.hist[sh->obs[i]], sh->bins) != MOPT_OK)
                return mopt_error_set(&w->err, MOPT_ERR_ARG,
                                      "calibration: histogram_bins %d out of range 16..1048576",
                                      sh->bins);
    mopt_interp_options io = mopt_interp_default_options();
    io.num_threads = interp_threads;
    mopt_status st = mopt_interp_create(sh->og, &io, &w->it, &w->err);
    if (st != MOPT_OK)
        mopt_error_prefix(&w->err, "calibration");
    return st;
}

static void *worker_main(void *arg) {
    cal_worker *w = arg;
    cal_shared *sh = w->sh;
    const mopt_graph *g = sh->g;
    for (;;) {
        pthread_mutex_lock(&sh->lock);
        if (sh->stop || sh->next >= sh->n) {
            pthread_mutex_unlock(&sh->lock);
            break;
        }
        int64_t s = sh->next++;
        w->fail_sample = s; /* kept only if this sample fails */
        w->st = mopt_sample_source_next(sh->src, w->sample, NULL, &w->err);
        if (w->st != MOPT_OK)
            sh->stop = true;
        pthread_mutex_unlock(&sh->lock);
        if (w->st != MOPT_OK)
            break;
        memcpy(mopt_interp_input(w->it, 0), w->sample, (size_t)sh->per * sizeof(float));
        w->st = mopt_interp_invoke(w->it, &w->err);
        if (w->st != MOPT_OK) {
            mopt_error_prefix(&w->err, "calibration sample %lld", (long long)s);
            break;
        }
        for (int i = 0; i < sh->n_obs && w->st == MOPT_OK; i++) {
            int t = sh->obs[i];
            const float *x = t == sh->in_t ? w->sample : (const float *)mopt_interp_tensor(w->it, t);
            int64_t m = mopt_tensor_numel(&g->tensors[t]);
            if (!x || m <= 0)
                continue;
            float lo, hi;
            if (!minmax_finite(x, m, &lo, &hi)) {
                int64_t j = 0;
                while (j < m && isfinite(x[j])) j++;
                w->st = mopt_error_set(&w->err, MOPT_ERR_BAD_INPUT,
                                       "calibration sample %lld: tensor %d '%s' holds %g; the float "
                                       "model must produce finite values",
                                       (long long)s, t, g->tensors[t].name, (double)x[j < m ? j : 0]);
                break;
            }
            if (!w->c.seen[t]) {
                w->c.seen[t] = true;
                w->c.min[t] = lo;
                w->c.max[t] = hi;
            } else {
                if (lo < w->c.min[t]) w->c.min[t] = lo;
                if (hi > w->c.max[t]) w->c.max[t] = hi;
            }
            if (sh->use_hist && ptq_hist_add(&w->c.hist[t], x, (size_t)m) != MOPT_OK)
                w->st = mopt_error_set(&w->err, MOPT_ERR_NOMEM, "calibration: out of memory");
        }
        pthread_mutex_lock(&sh->lock);
        if (w->st != MOPT_OK)
            sh->stop = true;
        else
            sh->done++;
        if (w->st == MOPT_OK && sh->opt && sh->opt->progress)
            sh->opt->progress(sh->opt->progress_ctx, "calibrate", sh->done, sh->n);
        pthread_mutex_unlock(&sh->lock);
        if (w->st != MOPT_OK)
            break;
    }
    return NULL;
}

static int online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 8 ? 8 : (int)n;
}

mopt_status ptq_calibrate(const mopt_graph *g, const mopt_quant_options *opt,
                          mopt_sample_source *src, int64_t limit, ptq_calib *c, mopt_error *err) {
    memset(c, 0, sizeof(*c));
    mopt_status st = ptq_check_source(g, src, "calibration data", err);
    if (st != MOPT_OK)
        return st;
    if (g->tensors[g->inputs[0]].dtype != MOPT_FLOAT32)
        return mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                              "calibration: input '%s' is %s; the model must be float",
                              g->tensors[g->inputs[0]].name,
                              mopt_dtype_name(g->tensors[g->inputs[0]].dtype));
    int64_t n = mopt_sample_source_count(src);
    if (limit > 0 && limit < n)
        n = limit;
    cal_shared sh;
    memset(&sh, 0, sizeof(sh));
    sh.g = g;
    sh.opt = opt;
    sh.src = src;
    sh.n = n;
    sh.in_t = g->inputs[0];
    sh.per = mopt_tensor_numel(&g->tensors[sh.in_t]);
    sh.use_hist = opt->calib_method != MOPT_CALIB_MINMAX;
    sh.bins = opt->histogram_bins > 0 ? opt->histogram_bins : 2048;
    mopt_graph *og = ptq_observer_graph(g);
    int *obs = malloc(((size_t)g->n_tensors + 1) * sizeof(int));
    bool *skip = calloc((size_t)g->n_tensors + 1, sizeof(bool));
    cal_worker *w = NULL;
    int nw = 0;
    if (!og || !obs || !skip) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "calibration: out of memory");
        goto done;
    }
    sh.og = og;
    /* Tensors to observe: the input and every float activation, except the
     * outputs of same-scale operators (pools, RESHAPE, PAD, TRANSPOSE) and
     * of fixed-range ones (SOFTMAX, LOGISTIC, TANH), which never get
     * parameters from their own range (a fifth of the work on typical
     * CNNs). Graph outputs are observed anyway. */
    int n_obs = 0;
    obs[n_obs++] = sh.in_t;
    for (int oi = 0; oi < g->n_ops; oi++) {
        const mopt_op *op = &g->ops[oi];
        if ((ptq_same_scale_op(op->type) || ptq_fixed_output_op(op->type)) && op->n_outputs > 0 &&
            op->outputs[0] >= 0)
            skip[op->outputs[0]] = true;
    }
    for (int i = 0; i < g->n_outputs; i++) skip[g->outputs[i]] = false;
    for (int i = 0; i < og->n_outputs; i++)
        if (og->tensors[og->outputs[i]].dtype == MOPT_FLOAT32 && og->outputs[i] != sh.in_t &&
            !skip[og->outputs[i]])
            obs[n_obs++] = og->outputs[i];
    sh.obs = obs;
    sh.n_obs = n_obs;
    /* Workers: the requested thread count, else one per core; each runs
     * its interpreter on one thread. */
    nw = opt->num_threads > 0 ? opt->num_threads : online_cpus();
    if (nw > 64) nw = 64;
    if (nw > n) nw = (int)(n > 0 ? n : 1);
    w = calloc((size_t)nw, sizeof(cal_worker));
    if (!w) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "calibration: out of memory");
        goto done;
    }
    for (int i = 0; i < nw && st == MOPT_OK; i++) {
        st = worker_init(&w[i], &sh, 1);
        if (st != MOPT_OK && err)
            *err = w[i].err;
    }
    if (st != MOPT_OK)
        goto done;
    if ((st = mopt_sample_source_rewind(src, err)) != MOPT_OK)
        goto done;
    if (pthread_mutex_init(&sh.lock, NULL) != 0) {
        st = mopt_error_set(err, MOPT_ERR_INTERNAL, "calibration: cannot create a mutex");
        goto done;
    }
    pthread_t *th = calloc((size_t)nw, sizeof(pthread_t));
    bool *started = calloc((size_t)nw, sizeof(bool));
    if (!th || !started) {
        free(th);
        free(started);
        pthread_mutex_destroy(&sh.lock);
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "calibration: out of memory");
        goto done;
    }
    /* Worker 0 runs on the calling thread. */
    for (int i = 1; i < nw; i++) started[i] = pthread_create(&th[i], NULL, worker_main, &w[i]) == 0;
    worker_main(&w[0]);
    for (int i = 1; i < nw; i++)
        if (started[i]) pthread_join(th[i], NULL);
    /* A worker that could not start leaves its share to the others; if
     * none ran past the failure, the loop below still reports it. */
    for (int i = 1; i < nw; i++)
        if (!started[i] && sh.next < sh.n) worker_main(&w[i]);
    free(th);
    free(started);
    pthread_mutex_destroy(&sh.lock);
    /* First error in sample order wins (deterministic message): samples are
     * handed out in order and a worker always finishes the sample it holds,
     * so every sample before the earliest failing one was fully processed. */
    {
        int first = -1;
        for (int i = 0; i < nw; i++)
            if (w[i].st != MOPT_OK && (first < 0 || w[i].fail_sample < w[first].fail_sample))
                first = i;
        if (first >= 0) {
            st = w[first].st;
            if (err) *err = w[first].err;
        }
    }
    if (st != MOPT_OK)
        goto done;
    /* Merge into worker 0's statistics, then hand them over. */
    for (int i = 1; i < nw && st == MOPT_OK; i++)
        for (int k = 0; k < n_obs && st == MOPT_OK; k++) {
            int t = obs[k];
            if (!w[i].c.seen[t])
                continue;
            if (!w[0].c.seen[t]) {
                w[0].c.seen[t] = true;
                w[0].c.min[t] = w[i].c.min[t];
                w[0].c.max[t] = w[i].c.max[t];
            } else {
                if (w[i].c.min[t] < w[0].c.min[t]) w[0].c.min[t] = w[i].c.min[t];
                if (w[i].c.max[t] > w[0].c.max[t]) w[0].c.max[t] = w[i].c.max[t];
            }
            if (sh.use_hist && ptq_hist_merge(&w[0].c.hist[t], &w[i].c.hist[t]) != MOPT_OK)
                st = mopt_error_set(err, MOPT_ERR_NOMEM, "calibration: out of memory");
        }
    if (st == MOPT_OK) {
        *c = w[0].c;
        c->samples = sh.done;
        memset(&w[0].c, 0, sizeof(w[0].c));
    }
done:
    if (w)
        for (int i = 0; i < nw; i++) {
            ptq_calib_free(&w[i].c);
            mopt_interp_free(w[i].it);
            free(w[i].sample);
        }
    free(w);
    free(obs);
    free(skip);
    mopt_graph_free(og);
    return st;
}

bool ptq_calib_range(const ptq_calib *c, int t, const mopt_quant_options *opt, bool symmetric,
                     float *lo, float *hi) {
    if (!c || t < 0 || t >= c->n_tensors || !c->seen[t])
        return false;
    *lo = c->min[t];
    *hi = c->max[t];
    if (!c->hist || opt->calib_method == MOPT_CALIB_MINMAX)
        return true;
    const ptq_hist *h = &c->hist[t];
    switch (opt->calib_method) {
    case MOPT_CALIB_PERCENTILE:
        ptq_hist_range_percentile(h, opt->percentile > 0 ? opt->percentile : 99.99, symmetric, lo,
                                  hi);
        break;
    case MOPT_CALIB_MSE: ptq_hist_range_mse(h, symmetric, lo, hi); break;
    case MOPT_CALIB_KL: ptq_hist_range_kl(h, symmetric, lo, hi); break;
    default: break;
    }
    return true;
}

/* ---- shared helpers for running quantized or float models ---- */

void ptq_fill_input(void *dst, const mopt_tensor *t, const float *x, int64_t n) {
    if (t->dtype == MOPT_FLOAT32) {
        memcpy(dst, x, (size_t)n * sizeof(float));
        return;
    }
    const float scale = t->quant.n > 0 ? t->quant.scale[0] : 1.0f;
    const int32_t zp = t->quant.n > 0 ? (int32_t)t->quant.zero_point[0] : 0;
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case MOPT_INT8: ((int8_t *)dst)[i] = (int8_t)mopt_quantize_value(x[i], scale, zp, -128, 127); break;
        case MOPT_UINT8: ((uint8_t *)dst)[i] = (uint8_t)mopt_quantize_value(x[i], scale, zp, 0, 255); break;
        case MOPT_INT16:
            ((int16_t *)dst)[i] = (int16_t)mopt_quantize_value(x[i], scale, zp, -32768, 32767);
            break;
        default: break;
        }
    }
}

double ptq_value(const void *data, const mopt_tensor *t, int64_t i) {
    float scale = t->quant.n > 0 ? t->quant.scale[0] : 1.0f;
    int32_t zp = t->quant.n > 0 ? (int32_t)t->quant.zero_point[0] : 0;
    switch (t->dtype) {
    case MOPT_FLOAT32: return ((const float *)data)[i];
    case MOPT_INT8: return mopt_dequantize_value(((const int8_t *)data)[i], scale, zp);
    case MOPT_UINT8: return mopt_dequantize_value(((const uint8_t *)data)[i], scale, zp);
    case MOPT_INT16: return mopt_dequantize_value(((const int16_t *)data)[i], scale, zp);
    default: return 0;
    }
}
