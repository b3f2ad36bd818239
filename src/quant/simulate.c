/* simulate.c - running a quantized graph, with the integer kernels when the
 * runtime has them and otherwise as a float simulation.
 *
 * The simulation ("fake quantization") is a float graph equivalent to the
 * quantized one: every quantized activation is followed by a QUANTIZE +
 * DEQUANTIZE pair with its parameters (rounding and clamping to the integer
 * grid, including the fused activation's clamp), quantized weights and
 * biases are replaced by their dequantized values, fixed-point SOFTMAX /
 * LOGISTIC / TANH become their float versions followed by the fixed output
 * grid. It differs from the integer kernels only by the requantization
 * rounding (a fraction of one step) and the fixed-point approximations, so
 * it ranks layers and measures accuracy well, but it is not bit-exact: the
 * report says which one was used.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/ptq_internal.h"

static bool is_qint(mopt_dtype d) { return d == MOPT_INT8 || d == MOPT_INT16 || d == MOPT_UINT8; }

typedef struct simb {
    const mopt_graph *q;
    mopt_graph *s;
    int *sim_of; /* q tensor -> s tensor */
    mopt_status st;
} simb;

static int add_like(simb *b, int qt, mopt_dtype dt, const char *suffix) {
    const mopt_tensor *t = &b->q->tensors[qt];
    char name[512];
    snprintf(name, sizeof(name), "%s%s", t->name, suffix);
    int r = mopt_graph_add_tensor(b->s, name, dt, t->rank, t->dims);
    if (r < 0)
        b->st = MOPT_ERR_NOMEM;
    return r;
}

/* QUANTIZE + DEQUANTIZE of float tensor x with the params / dtype of q tensor qt. */
static int fake_quant(simb *b, int x, int qt) {
    if (b->st != MOPT_OK || x < 0)
        return -1;
    const mopt_tensor *t = &b->q->tensors[qt];
    int mid = add_like(b, qt, t->dtype, "_fq");
    int out = add_like(b, qt, MOPT_FLOAT32, "_sim");
    if (mid < 0 || out < 0)
        return -1;
    if (mopt_tensor_set_quant(&b->s->tensors[mid], 1, t->quant.scale, t->quant.zero_point, 0) !=
        MOPT_OK) {
        b->st = MOPT_ERR_NOMEM;
        return -1;
    }
    int32_t i1[1] = {x}, o1[1] = {mid}, i2[1] = {mid}, o2[1] = {out};
    if (mopt_graph_add_op(b->s, MOPT_OP_QUANTIZE, i1, 1, o1, 1) < 0 ||
        mopt_graph_add_op(b->s, MOPT_OP_DEQUANTIZE, i2, 1, o2, 1) < 0) {
        b->st = MOPT_ERR_NOMEM;
        return -1;
    }
    return out;
}

/* Float copy of a constant: dequantized if quantized (per axis). */
static int sim_const(simb *b, int qt) {
    if (b->sim_of[qt] >= 0)
        return b->sim_of[qt];
    const mopt_tensor *t = &b->q->tensors[qt];
    const void *d = mopt_tensor_data(b->q, qt);
    int64_t n = mopt_tensor_numel(t);
    int r;
    if (t->quant.n > 0 && (is_qint(t->dtype) || t->dtype == MOPT_INT32 || t->dtype == MOPT_INT64)) {
        float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
        if (!f) {
            b->st = MOPT_ERR_NOMEM;
            return -1;
        }
        /* channel of element i along the quantized axis */
        int64_t inner = 1;
        for (int d2 = t->quant.axis + 1; d2 < t->rank; d2++) inner *= t->dims[d2];
        for (int64_t i = 0; i < n; i++) {
            int c = t->quant.n > 1 ? (int)((i / inner) % t->quant.n) : 0;
            double v;
            switch (t->dtype) {
            case MOPT_INT8: v = ((const int8_t *)d)[i]; break;
            case MOPT_UINT8: v = ((const uint8_t *)d)[i]; break;
            case MOPT_INT16: v = ((const int16_t *)d)[i]; break;
            case MOPT_INT32: v = ((const int32_t *)d)[i]; break;
            default: v = (double)((const int64_t *)d)[i]; break;
            }
            f[i] = (float)((double)t->quant.scale[c] * (v - (double)t->quant.zero_point[c]));
        }
        r = add_like(b, qt, MOPT_FLOAT32, "");
        if (r >= 0 && mopt_graph_set_tensor_data(b->s, r, f, (size_t)n * sizeof(float)) != MOPT_OK)
            b->st = MOPT_ERR_NOMEM;
        free(f);
    } else {
        r = add_like(b, qt, t->dtype, "");
        if (r >= 0 && mopt_graph_set_tensor_data(b->s, r, d, (size_t)mopt_tensor_nbytes(t)) != MOPT_OK)
            b->st = MOPT_ERR_NOMEM;
    }
    b->sim_of[qt] = r;
    return r;
}

mopt_status ptq_simulated_graph(const mopt_graph *q, const ptq_map *qmap, mopt_graph **out,
                                int **sim_of_out, mopt_error *err) {
    (void)qmap;
    *out = NULL;
    *sim_of_out = NULL;
    simb b = {q, mopt_graph_create(), malloc(((size_t)q->n_tensors + 1) * sizeof(int)), MOPT_OK};
    if (!b.s || !b.sim_of) {
        mopt_graph_free(b.s);
        free(b.sim_of);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "simulation: out of memory");
    }
    for (int t = 0; t < q->n_tensors; t++) b.sim_of[t] = -1;
    int32_t *gin = malloc(((size_t)q->n_inputs + 1) * sizeof(int32_t));
    int32_t *gout = malloc(((size_t)q->n_outputs + 1) * sizeof(int32_t));
    if (!gin || !gout)
        b.st = MOPT_ERR_NOMEM;
    for (int i = 0; i < q->n_inputs && b.st == MOPT_OK; i++) {
        int qt = q->inputs[i];
        gin[i] = add_like(&b, qt, is_qint(q->tensors[qt].dtype) ? MOPT_FLOAT32 : q->tensors[qt].dtype, "");
        b.sim_of[qt] = is_qint(q->tensors[qt].dtype) ? fake_quant(&b, gin[i], qt) : gin[i];
    }
    for (int oi = 0; oi < q->n_ops && b.st == MOPT_OK; oi++) {
        const mopt_op *op = &q->ops[oi];
        if (op->n_inputs > 16 || op->n_outputs > 8) {
            b.st = MOPT_ERR_UNSUPPORTED;
            break;
        }
        int32_t ins[16], outs[8];
        for (int k = 0; k < op->n_inputs; k++) {
            int t = op->inputs[k];
            ins[k] = t < 0 ? -1 : mopt_tensor_is_constant(q, t) ? sim_const(&b, t) : b.sim_of[t];
        }
        if (op->type == MOPT_OP_QUANTIZE) {
            b.sim_of[op->outputs[0]] = fake_quant(&b, ins[0], op->outputs[0]);
            continue;
        }
        if (op->type == MOPT_OP_DEQUANTIZE && !mopt_tensor_is_constant(q, op->inputs[0]) &&
            is_qint(q->tensors[op->inputs[0]].dtype)) {
            b.sim_of[op->outputs[0]] = ins[0]; /* already dequantized values */
            continue;
        }
        for (int k = 0; k < op->n_outputs; k++) {
            int t = op->outputs[k];
            outs[k] = t < 0 ? -1 : add_like(&b, t, is_qint(q->tensors[t].dtype) ? MOPT_FLOAT32 : q->tensors[t].dtype, is_qint(q->tensors[t].dtype) ? "_f" : "");
        }
        int no = mopt_graph_add_op(b.s, op->type, ins, op->n_inputs, outs, op->n_outputs);
        if (no < 0) {
            b.st = MOPT_ERR_NOMEM;
            break;
        }
        mopt_op *so = &b.s->ops[no];
        so->p = op->p;
        so->has_options = op->has_options;
        so->version = 1;
        if (op->type == MOPT_OP_FULLY_CONNECTED) {
            so->p.fc.asymmetric_quantize_inputs = false;
            so->p.fc.quantized_bias_type = 0;
        }
        if (op->type == MOPT_OP_CONV_2D || op->type == MOPT_OP_DEPTHWISE_CONV_2D)
            so->p.conv.quantized_bias_type = 0;
        if (op->type == MOPT_OP_DEQUANTIZE)
            so->version = op->version;
        for (int k = 0; k < op->n_outputs; k++) {
            int t = op->outputs[k];
            if (t >= 0)
                b.sim_of[t] = is_qint(q->tensors[t].dtype) ? fake_quant(&b, outs[k], t) : outs[k];
        }
    }
    for (int i = 0; i < q->n_outputs && b.st == MOPT_OK; i++) gout[i] = b.sim_of[q->outputs[i]];
    if (b.st == MOPT_OK && mopt_graph_set_io(b.s, gin, q->n_inputs, gout, q->n_outputs) != MOPT_OK)
        b.st = MOPT_ERR_NOMEM;
    free(gin);
    free(gout);
    if (b.st != MOPT_OK) {
        mopt_graph_free(b.s);
        free(b.sim_of);
        return mopt_error_set(err, b.st, "simulation: cannot build the float simulation (%s)",
                              mopt_status_str(b.st));
    }
    *out = b.s;
    *sim_of_out = b.sim_of;
    return MOPT_OK;
}

/* ---- runner ---- */

struct ptq_qrun {
    const mopt_graph *q;
    mopt_graph *run_graph; /* observer clone of q, or of its simulation */
    mopt_interp *it;
    bool simulated;
    int *sim_of;           /* simulated: q tensor -> run_graph tensor */
    float *scratch;        /* quantized input buffer helper */
};

void ptq_qrun_free(ptq_qrun *r) {
    if (!r)
        return;
    mopt_interp_free(r->it);
    mopt_graph_free(r->run_graph);
    free(r->sim_of);
    free(r->scratch);
    free(r);
}

/* Clone of g whose outputs are all activations (any dtype) plus its own. */
static mopt_graph *observe_all(const mopt_graph *g) {
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
            if (t >= 0 && !used[t]) {
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

mopt_status ptq_qrun_create(const mopt_graph *q, const mopt_quant_options *opt, bool observe,
                            ptq_qrun **out, mopt_error *err) {
    *out = NULL;
    ptq_qrun *r = calloc(1, sizeof(*r));
    if (!r)
        return mopt_error_set(err, MOPT_ERR_NOMEM, "out of memory");
    r->q = q;
    r->run_graph = observe ? observe_all(q) : mopt_graph_clone(q);
    if (!r->run_graph) {
        ptq_qrun_free(r);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "out of memory");
    }
    mopt_error e2;
    mopt_status st = ptq_interp(r->run_graph, opt, &r->it, &e2);
    if (st == MOPT_ERR_UNSUPPORTED) {
        /* No integer kernels for some operator: simulate in float. */
        mopt_graph_free(r->run_graph);
        r->run_graph = NULL;
        mopt_graph *s = NULL;
        st = ptq_simulated_graph(q, NULL, &s, &r->sim_of, err);
        if (st == MOPT_OK) {
            r->run_graph = observe ? observe_all(s) : mopt_graph_clone(s);
            mopt_graph_free(s);
            if (!r->run_graph)
                st = mopt_error_set(err, MOPT_ERR_NOMEM, "out of memory");
        }
        if (st == MOPT_OK) {
            st = ptq_interp(r->run_graph, opt, &r->it, err);
            if (st != MOPT_OK)
                mopt_error_prefix(err, "simulation");
        }
        r->simulated = true;
    } else if (st != MOPT_OK && err) {
        *err = e2;
    }
    if (st != MOPT_OK) {
        ptq_qrun_free(r);
        return st;
    }
    int64_t n = mopt_tensor_numel(&q->tensors[q->inputs[0]]);
    r->scratch = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!r->scratch) {
        ptq_qrun_free(r);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "out of memory");
    }
    *out = r;
    return MOPT_OK;
}

bool ptq_qrun_simulated(const ptq_qrun *r) { return r->simulated; }

mopt_status ptq_qrun_invoke(ptq_qrun *r, const float *x, mopt_error *err) {
    int qin = r->q->inputs[0];
    const mopt_tensor *t = &r->q->tensors[qin];
    int64_t n = mopt_tensor_numel(t);
    if (r->simulated)
        memcpy(mopt_interp_input(r->it, 0), x, (size_t)n * sizeof(float)); /* the sim quantizes */
    else
        ptq_fill_input(mopt_interp_input(r->it, 0), t, x, n);
    return mopt_interp_invoke(r->it, err);
}

/* Value i of q tensor qt as a real number (dequantized). */
double ptq_qrun_value(const ptq_qrun *r, int qt, int64_t i) {
    if (r->simulated) {
        int st = r->sim_of[qt];
        const float *d = st >= 0 ? mopt_interp_tensor(r->it, st) : NULL;
        return d ? d[i] : 0.0;
    }
    const void *d = mopt_interp_tensor(r->it, qt);
    return d ? ptq_value(d, &r->q->tensors[qt], i) : 0.0;
}

int ptq_qrun_output_tensor(const ptq_qrun *r, int k) { return r->q->outputs[k]; }
