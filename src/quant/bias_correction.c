/* bias_correction.c - empirical per-channel bias correction.
 *
 * Quantizing weights (and rounding the input) shifts the mean of a layer's
 * output by a different amount in every channel; the next layers see it as a
 * systematic error. For every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED
 * that runs quantized, the calibration samples are run through two versions
 * of the layer, side by side, on the float model's own input to that layer:
 *
 *   reference  OP(x, W, b)                          (float)
 *   quantized  OP(fq(x), deq(Wq), deq(bq))          (fq: QUANTIZE+DEQUANTIZE
 *                                                    with the input's params)
 *
 * both without the fused activation (the bias acts before it). The mean
 * difference per output channel, over all samples and positions, is the
 * layer's own bias error; it is subtracted from the float bias, which is
 * then quantized as usual (a bias is created for an operator without one).
 * Measuring each layer on the float model's input isolates its own error:
 * every layer's correction is independent of the others, so one pass over
 * the samples corrects all of them. Everything runs on float kernels.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/ptq_internal.h"

typedef struct bc_layer {
    int op;       /* float op */
    int ref, qo;  /* output tensors in the correction graph */
    int channels;
    double *sum;  /* per channel sum of (quantized - reference) */
    int64_t count_per_channel;
    float out_scale;
} bc_layer;

static int add_tensor_like(mopt_graph *g, const mopt_tensor *t, const char *suffix, mopt_dtype dt) {
    char name[512];
    snprintf(name, sizeof(name), "%s%s", t->name, suffix);
    return mopt_graph_add_tensor(g, name, dt, t->rank, t->dims);
}

/* Float constant holding the dequantized values of quantized constant qt of q. */
static int dequantized(mopt_graph *dst, const mopt_graph *q, int qt) {
    const mopt_tensor *t = &q->tensors[qt];
    int64_t n = mopt_tensor_numel(t);
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!f)
        return -1;
    const void *d = mopt_tensor_data(q, qt);
    int64_t inner = 1;
    for (int k = t->quant.axis + 1; k < t->rank; k++) inner *= t->dims[k];
    for (int64_t i = 0; i < n; i++) {
        int c = t->quant.n > 1 ? (int)((i / inner) % t->quant.n) : 0;
        double v = t->dtype == MOPT_INT8    ? ((const int8_t *)d)[i]
                   : t->dtype == MOPT_INT32 ? ((const int32_t *)d)[i]
                   : t->dtype == MOPT_INT64 ? (double)((const int64_t *)d)[i]
                                            : 0.0;
        f[i] = t->quant.n > 0 ? (float)((double)t->quant.scale[c] * (v - (double)t->quant.zero_point[c]))
                              : (float)v;
    }
    int r = add_tensor_like(dst, t, "_dq", MOPT_FLOAT32);
    if (r >= 0 && mopt_graph_set_tensor_data(dst, r, f, (size_t)n * sizeof(float)) != MOPT_OK)
        r = -1;
    free(f);
    return r;
}

static void clear_act(mopt_op *op) {
    if (op->type == MOPT_OP_FULLY_CONNECTED)
        op->p.fc.act = MOPT_ACT_NONE;
    else
        op->p.conv.act = MOPT_ACT_NONE;
}

mopt_status ptq_bias_correction(ptq_plan *p, mopt_sample_source *src, int64_t limit,
                                mopt_quant_report *report, mopt_error *err) {
    const mopt_graph *g = p->g;
    mopt_status st = ptq_check_source(g, src, "bias correction samples", err);
    if (st != MOPT_OK)
        return st;
    mopt_graph *q = NULL, *bc = NULL;
    ptq_map map;
    memset(&map, 0, sizeof(map));
    bc_layer *L = NULL;
    int nl = 0;
    mopt_interp *it = NULL;
    float *x = NULL;
    int32_t *outs = NULL;
    if ((st = ptq_emit(p, &q, &map, err)) != MOPT_OK)
        return st;
    bc = mopt_graph_clone(g);
    L = calloc((size_t)g->n_ops + 1, sizeof(bc_layer));
    outs = malloc(((size_t)g->n_outputs + 2 * (size_t)g->n_ops + 1) * sizeof(int32_t));
    if (!bc || !L || !outs) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "bias correction: out of memory");
        goto done;
    }
    int nout = 0;
    for (int i = 0; i < g->n_outputs; i++) outs[nout++] = g->outputs[i];
    for (int qo = 0; qo < q->n_ops; qo++) {
        int oi = map.src_op_of_out[qo];
        if (oi < 0)
            continue;
        const mopt_op *fop = &g->ops[oi];
        if ((fop->type != MOPT_OP_CONV_2D && fop->type != MOPT_OP_DEPTHWISE_CONV_2D &&
             fop->type != MOPT_OP_FULLY_CONNECTED) ||
            p->prec[oi] == MOPT_PREC_FLOAT)
            continue;
        const mopt_op *qop = &q->ops[qo];
        const mopt_tensor *qin = &q->tensors[qop->inputs[0]];
        if (qin->quant.n < 1)
            continue;
        int y = fop->outputs[0];
        const mopt_tensor *yt = &g->tensors[y];
        int ch = yt->dims[yt->rank - 1];
        /* reference: the float op without its activation */
        int ref = add_tensor_like(bc, yt, "_bc_ref", MOPT_FLOAT32);
        /* input fake-quantized with the quantized input's parameters */
        int xq = add_tensor_like(bc, &g->tensors[fop->inputs[0]], "_bc_q", qin->dtype);
        int xf = add_tensor_like(bc, &g->tensors[fop->inputs[0]], "_bc_fq", MOPT_FLOAT32);
        int wd = dequantized(bc, q, qop->inputs[1]);
        int bd = qop->n_inputs > 2 && qop->inputs[2] >= 0 ? dequantized(bc, q, qop->inputs[2]) : -1;
        int qy = add_tensor_like(bc, yt, "_bc_quant", MOPT_FLOAT32);
        if (ref < 0 || xq < 0 || xf < 0 || wd < 0 || qy < 0 ||
            (qop->n_inputs > 2 && qop->inputs[2] >= 0 && bd < 0) ||
            mopt_tensor_set_quant(&bc->tensors[xq], 1, qin->quant.scale, qin->quant.zero_point, 0) != MOPT_OK) {
            st = mopt_error_set(err, MOPT_ERR_NOMEM, "bias correction: out of memory");
            goto done;
        }
        int32_t rin[3] = {fop->inputs[0], fop->inputs[1], fop->n_inputs > 2 ? fop->inputs[2] : -1};
        int32_t qin3[3] = {xf, wd, bd};
        int32_t a1[1] = {fop->inputs[0]}, a2[1] = {xq}, a3[1] = {xq}, a4[1] = {xf}, r1[1] = {ref},
                q1[1] = {qy};
        int nin = fop->n_inputs > 2 ? 3 : 2;
        int o1 = mopt_graph_add_op(bc, fop->type, rin, nin, r1, 1);
        int o2 = mopt_graph_add_op(bc, MOPT_OP_QUANTIZE, a1, 1, a2, 1);
        int o3 = mopt_graph_add_op(bc, MOPT_OP_DEQUANTIZE, a3, 1, a4, 1);
        int o4 = mopt_graph_add_op(bc, fop->type, qin3, bd >= 0 || nin == 3 ? 3 : 2, q1, 1);
        if (o1 < 0 || o2 < 0 || o3 < 0 || o4 < 0) {
            st = mopt_error_set(err, MOPT_ERR_NOMEM, "bias correction: out of memory");
            goto done;
        }
        for (int k = 0; k < 2; k++) {
            mopt_op *no = &bc->ops[k == 0 ? o1 : o4];
            no->p = fop->p;
            no->has_options = fop->has_options;
            no->version = 1;
            clear_act(no);
        }
        bc_layer *l = &L[nl++];
        l->op = oi;
        l->ref = ref;
        l->qo = qy;
        l->channels = ch;
        l->sum = calloc((size_t)ch, sizeof(double));
        l->out_scale = q->tensors[map.home[y]].quant.n > 0 ? q->tensors[map.home[y]].quant.scale[0] : 0.0f;
        if (!l->sum) {
            st = mopt_error_set(err, MOPT_ERR_NOMEM, "bias correction: out of memory");
            goto done;
        }
        outs[nout++] = ref;
        outs[nout++] = qy;
    }
    if (nl == 0)
        goto done;
    if (mopt_graph_set_io(bc, g->inputs, g->n_inputs, outs, nout) != MOPT_OK) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "bias correction: out of memory");
        goto done;
    }
    if ((st = ptq_interp(bc, &p->opt, &it, err)) != MOPT_OK) {
        mopt_error_prefix(err, "bias correction");
        goto done;
    }
    int64_t per = mopt_tensor_numel(&g->tensors[g->inputs[0]]);
    x = malloc((size_t)per * sizeof(float));
    if (!x) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "bias correction: out of memory");
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
        memcpy(mopt_interp_input(it, 0), x, (size_t)per * sizeof(float));
        if ((st = mopt_interp_invoke(it, err)) != MOPT_OK) {
            mopt_error_prefix(err, "bias correction sample %lld", (long long)s);
            goto done;
        }
        for (int i = 0; i < nl; i++) {
            const float *r = mopt_interp_tensor(it, L[i].ref), *qq = mopt_interp_tensor(it, L[i].qo);
            int64_t m = mopt_tensor_numel(&bc->tensors[L[i].ref]);
            int c = L[i].channels;
            for (int64_t j = 0; j < m; j++) L[i].sum[j % c] += (double)qq[j] - (double)r[j];
            L[i].count_per_channel += m / c;
        }
        if (p->opt.progress)
            p->opt.progress(p->opt.progress_ctx, "bias-correction", s + 1, ns);
    }
    /* New float biases. */
    double total_steps = 0;
    int64_t n_ch = 0;
    for (int i = 0; i < nl; i++) {
        const mopt_op *fop = &g->ops[L[i].op];
        int c = L[i].channels;
        float *nb = malloc((size_t)c * sizeof(float));
        if (!nb) {
            st = mopt_error_set(err, MOPT_ERR_NOMEM, "bias correction: out of memory");
            goto done;
        }
        int bt = fop->n_inputs > 2 ? fop->inputs[2] : -1;
        const float *b = bt >= 0 ? mopt_tensor_data(g, bt) : NULL;
        for (int k = 0; k < c; k++) {
            double d = L[i].count_per_channel > 0 ? L[i].sum[k] / (double)L[i].count_per_channel : 0;
            nb[k] = (float)((b ? (double)b[k] : 0.0) - d);
            if (L[i].out_scale > 0) {
                total_steps += fabs(d) / L[i].out_scale;
                n_ch++;
            }
        }
        free(p->bias_override[L[i].op]);
        p->bias_override[L[i].op] = nb;
    }
    if (report) {
        report->n_bias_corrected = nl;
        report->mean_bias_correction_steps = n_ch ? total_steps / (double)n_ch : 0;
        ptq_report_log(report, "bias correction: %d operators on %lld samples", nl, (long long)ns);
    }
done:
    if (L)
        for (int i = 0; i < nl; i++) free(L[i].sum);
    free(L);
    free(outs);
    free(x);
    mopt_interp_free(it);
    mopt_graph_free(bc);
    mopt_graph_free(q);
    ptq_map_free(&map);
    return st;
}
