/* ptq.c - post-training quantization: the parameter rules and the graph
 * rewrite (float16, dynamic range, int8, int16x8 and mixed precision).
 *
 * The rules reproduce the TF 2.21 converter, which uses two different
 * quantizers (docs/PTQ.md has the details and the evidence):
 *  - int8: the MLIR quantizer (QuantizationDriver). Activation parameters
 *    come from the calibrated range (mopt_qparams_asymmetric); outputs of
 *    same-scale operators (pools, RESHAPE, PAD, TRANSPOSE) take their
 *    input's parameters; a CONCATENATION keeps its own calibrated
 *    parameters and imposes them on the tensors feeding it when their
 *    producers are free to take them (otherwise a requantizing QUANTIZE is
 *    inserted, e.g. after a LOGISTIC); biases wider than 2^30-1 steps get a
 *    larger scale and the filter scale follows (SetBiasParamsWithAdjustments).
 *  - int16x8 and dynamic range: the legacy quantizer (quantize_model.cc,
 *    quantize_weights.cc): symmetric int16 activations, per-channel weights
 *    with scale max|w|/127 (0 for an all-zero channel), int64 biases, a
 *    CONCATENATION keeps its own parameters and its inputs are requantized
 *    when they differ, the bias check uses the int8 scale of the input.
 */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/util.h"
#include "quant/ptq_internal.h"

#define K_BIAS_MAX 1073741823.0 /* INT32_MAX / 2: the converter's bias limit */

/* ------------------------------------------------------------------------
 * Names and defaults
 * ------------------------------------------------------------------------ */

mopt_quant_options mopt_quant_default_options(mopt_quant_mode mode) {
    mopt_quant_options o;
    memset(&o, 0, sizeof(o));
    o.mode = mode;
    o.calib_method = MOPT_CALIB_MINMAX;
    o.percentile = 99.99;
    o.calib_samples = 500;
    o.histogram_bins = 2048;
    o.dynamic_min_elements = 1024;
    o.io = MOPT_QIO_FLOAT;
    return o;
}

static const char *const mode_names[] = {"float16", "dynamic", "int8", "int16x8"};
static const char *const method_names[] = {"minmax", "percentile", "mse", "kl"};

const char *mopt_quant_mode_name(mopt_quant_mode m) {
    return (unsigned)m < 4 ? mode_names[m] : "unknown";
}

int mopt_quant_mode_from_name(const char *s) {
    for (int i = 0; s && i < 4; i++)
        if (strcmp(s, mode_names[i]) == 0)
            return i;
    return -1;
}

const char *mopt_calib_method_name(mopt_calib_method m) {
    return (unsigned)m < 4 ? method_names[m] : "unknown";
}

int mopt_calib_method_from_name(const char *s) {
    for (int i = 0; s && i < 4; i++)
        if (strcmp(s, method_names[i]) == 0)
            return i;
    return -1;
}

/* ------------------------------------------------------------------------
 * Operator classes
 * ------------------------------------------------------------------------ */

bool ptq_same_scale_op(int t) {
    return t == MOPT_OP_MAX_POOL_2D || t == MOPT_OP_AVERAGE_POOL_2D || t == MOPT_OP_RESHAPE ||
           t == MOPT_OP_PAD || t == MOPT_OP_TRANSPOSE;
}

bool ptq_fixed_output_op(int t) {
    return t == MOPT_OP_SOFTMAX || t == MOPT_OP_LOGISTIC || t == MOPT_OP_TANH;
}

mopt_qparams ptq_fixed_params(int t, int k) {
    mopt_qparams q;
    if (k == PTQ_K_I16) {
        q.scale = 1.0f / 32768.0f;
        q.zero_point = 0;
    } else if (t == MOPT_OP_TANH) {
        q.scale = 1.0f / 128.0f;
        q.zero_point = 0;
    } else {
        q.scale = 1.0f / 256.0f;
        q.zero_point = -128;
    }
    return q;
}

static bool is_weight_op(int t) {
    return t == MOPT_OP_CONV_2D || t == MOPT_OP_DEPTHWISE_CONV_2D || t == MOPT_OP_FULLY_CONNECTED;
}

/* Quantized dimension of a weight tensor: output channels. */
static int weight_axis(int t) { return t == MOPT_OP_DEPTHWISE_CONV_2D ? 3 : 0; }

/* The legacy quantizer's int16 activation parameters
 * (GetSymmetricQuantizationParams): max(|min|, |max|) / 32767 in binary32.
 * A range of exactly zero gives FLT_MIN / 32767, the value the converter
 * writes for an activation that is constant 0 (checked against TF 2.21). */
static mopt_qparams sym16(float lo, float hi) {
    mopt_qparams q;
    float a = fabsf(lo) > fabsf(hi) ? fabsf(lo) : fabsf(hi);
    if (lo > 0) a = fabsf(hi);
    if (hi < 0) a = fabsf(lo);
    if (a == 0.0f) a = FLT_MIN;
    q.scale = a / 32767.0f;
    q.zero_point = 0;
    return q;
}

static mopt_qparams asym8(float lo, float hi) {
    mopt_qparams q = {1.0f, 0};
    if (mopt_qparams_asymmetric(lo, hi, -128, 127, &q, NULL) != MOPT_OK) {
        q.scale = 1.0f;
        q.zero_point = 0;
    }
    return q;
}

/* ------------------------------------------------------------------------
 * Plan: precision per operator, parameters per tensor
 * ------------------------------------------------------------------------ */

void ptq_plan_free(ptq_plan *p) {
    if (!p)
        return;
    if (p->bias_override && p->g)
        for (int i = 0; i < p->g->n_ops; i++) free(p->bias_override[i]);
    free(p->bias_override);
    free(p->prec);
    free(p->excluded);
    free(p->p8);
    free(p->p16);
    free(p->has8);
    free(p->has16);
    free(p->rmin);
    free(p->rmax);
    memset(p, 0, sizeof(*p));
}

static bool is_int_mode(mopt_quant_mode m) { return m == MOPT_QUANT_INT8 || m == MOPT_QUANT_INT16X8; }

static const char *op_label(const mopt_graph *g, int oi, char *buf, size_t cap) {
    const mopt_op *op = &g->ops[oi];
    const char *nm = mopt_op_name(op->type);
    const char *out = op->n_outputs > 0 && op->outputs[0] >= 0 ? g->tensors[op->outputs[0]].name : "";
    snprintf(buf, cap, "operator %d (%s, output '%s')", oi, nm ? nm : "?", out);
    return buf;
}

/* Producer operator of every tensor (-1: graph input or constant). */
static int *producers(const mopt_graph *g) {
    int *prod = malloc(((size_t)g->n_tensors + 1) * sizeof(int));
    if (!prod)
        return NULL;
    for (int t = 0; t < g->n_tensors; t++) prod[t] = -1;
    for (int oi = 0; oi < g->n_ops; oi++)
        for (int k = 0; k < g->ops[oi].n_outputs; k++)
            if (g->ops[oi].outputs[k] >= 0)
                prod[g->ops[oi].outputs[k]] = oi;
    return prod;
}

static bool exclude_matches(const mopt_graph *g, int oi, const char *pat) {
    const mopt_op *op = &g->ops[oi];
    const char *nm = mopt_op_name(op->type);
    if (nm && strcmp(nm, pat) == 0)
        return true;
    for (int k = 0; k < op->n_outputs; k++)
        if (op->outputs[k] >= 0 && strcmp(g->tensors[op->outputs[k]].name, pat) == 0)
            return true;
    return false;
}

/* Rejects models that are not float (already quantized, float16). */
mopt_status ptq_check_float_model(const mopt_graph *g, mopt_error *err) {
    for (int t = 0; t < g->n_tensors; t++) {
        const mopt_tensor *tt = &g->tensors[t];
        if (tt->dtype == MOPT_FLOAT32 || tt->dtype == MOPT_INT32 || tt->dtype == MOPT_INT64 ||
            tt->dtype == MOPT_BOOL)
            continue;
        return mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                              "tensor %d '%s' is %s: the model is already quantized (mopt "
                              "quantize takes float models)",
                              t, tt->name, mopt_dtype_name(tt->dtype));
    }
    for (int oi = 0; oi < g->n_ops; oi++)
        if (g->ops[oi].type == MOPT_OP_QUANTIZE || g->ops[oi].type == MOPT_OP_DEQUANTIZE) {
            char b[160];
            return mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                                  "%s: the model is already quantized (mopt quantize takes float "
                                  "models)",
                                  op_label(g, oi, b, sizeof(b)));
        }
    /* NaN / inf weights would give NaN scales or silently saturated
     * values: refuse them, naming the tensor and the element. */
    for (int t = 0; t < g->n_tensors; t++) {
        const mopt_tensor *tt = &g->tensors[t];
        if (tt->dtype != MOPT_FLOAT32 || !mopt_tensor_is_constant(g, t))
            continue;
        const float *d = mopt_tensor_data(g, t);
        int64_t n = mopt_tensor_numel(tt);
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(d[i]))
                return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                      "tensor %d '%s': element %lld is %g; weights must be finite "
                                      "to be quantized",
                                      t, tt->name, (long long)i, (double)d[i]);
    }
    return MOPT_OK;
}

/* Range of a constant float tensor's values. */
static void const_range(const mopt_graph *g, int t, float *lo, float *hi) {
    const float *d = mopt_tensor_data(g, t);
    int64_t n = mopt_tensor_numel(&g->tensors[t]);
    *lo = *hi = n > 0 ? d[0] : 0.0f;
    for (int64_t i = 1; i < n; i++) {
        if (d[i] < *lo) *lo = d[i];
        if (d[i] > *hi) *hi = d[i];
    }
}

/* The converter's calibration artifact (opt->match_converter): for every
 * ADD/SUB/MUL, the first input TFLite's arena planner would share with the
 * output (same size, not a graph input/output, read by this op only) is
 * logged after the op overwrote it, so its range grows to include the
 * output's. Applied to the chosen ranges, outputs taken before any union. */
static void inplace_quirk(ptq_plan *p, const mopt_graph *g, const int *prod) {
    int nt = g->n_tensors;
    int *readers = calloc((size_t)nt + 1, sizeof(int));
    float *lo = malloc(((size_t)nt + 1) * sizeof(float)), *hi = malloc(((size_t)nt + 1) * sizeof(float));
    bool *io = calloc((size_t)nt + 1, sizeof(bool));
    if (!readers || !lo || !hi || !io)
        goto done;
    memcpy(lo, p->rmin, (size_t)nt * sizeof(float));
    memcpy(hi, p->rmax, (size_t)nt * sizeof(float));
    for (int oi = 0; oi < g->n_ops; oi++)
        for (int k = 0; k < g->ops[oi].n_inputs; k++)
            if (g->ops[oi].inputs[k] >= 0) readers[g->ops[oi].inputs[k]]++;
    for (int i = 0; i < g->n_inputs; i++) io[g->inputs[i]] = true;
    for (int i = 0; i < g->n_outputs; i++) io[g->outputs[i]] = true;
    for (int oi = 0; oi < g->n_ops; oi++) {
        const mopt_op *op = &g->ops[oi];
        if ((op->type != MOPT_OP_ADD && op->type != MOPT_OP_SUB && op->type != MOPT_OP_MUL) ||
            op->n_inputs < 2 || op->n_outputs < 1)
            continue;
        int y = op->outputs[0];
        for (int k = 0; k < 2; k++) {
            int x = op->inputs[k];
            if (x < 0 || mopt_tensor_is_constant(g, x) || io[x] || prod[x] < 0 || readers[x] != 1 ||
                mopt_tensor_numel(&g->tensors[x]) != mopt_tensor_numel(&g->tensors[y]) ||
                !p->has8[x] || !p->has8[y])
                continue;
            float a = lo[x] < lo[y] ? lo[x] : lo[y], b = hi[x] > hi[y] ? hi[x] : hi[y];
            p->rmin[x] = a;
            p->rmax[x] = b;
            p->p8[x] = asym8(a, b);
            p->p16[x] = sym16(a, b);
            break;
        }
    }
done:
    free(readers);
    free(lo);
    free(hi);
    free(io);
}

mopt_status ptq_plan_init(ptq_plan *p, const mopt_graph *g, const mopt_quant_options *opt,
                          const ptq_calib *calib, mopt_error *err) {
    memset(p, 0, sizeof(*p));
    p->g = g;
    p->opt = *opt;
    p->calib = calib;
    size_t nt = (size_t)g->n_tensors + 1, no = (size_t)g->n_ops + 1;
    p->prec = calloc(no, sizeof(*p->prec));
    p->excluded = calloc(no, sizeof(bool));
    p->p8 = calloc(nt, sizeof(*p->p8));
    p->p16 = calloc(nt, sizeof(*p->p16));
    p->has8 = calloc(nt, sizeof(bool));
    p->has16 = calloc(nt, sizeof(bool));
    p->rmin = calloc(nt, sizeof(float));
    p->rmax = calloc(nt, sizeof(float));
    p->bias_override = calloc(no, sizeof(float *));
    int *prod = producers(g);
    bool *claimed = calloc(nt, sizeof(bool));
    mopt_status st = MOPT_OK;
    if (!p->prec || !p->excluded || !p->p8 || !p->p16 || !p->has8 || !p->has16 || !p->rmin || !p->rmax ||
        !p->bias_override || !prod || !claimed) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "quantize: out of memory");
        goto done;
    }

    for (int e = 0; e < opt->n_exclude; e++) {
        bool any = false;
        for (int oi = 0; oi < g->n_ops && !any; oi++)
            any = opt->exclude[e] && exclude_matches(g, oi, opt->exclude[e]);
        if (!any) {
            st = mopt_error_set(err, MOPT_ERR_ARG,
                                "exclude '%s' matches no operator (give an operator type such as "
                                "CONV_2D or the name of an operator's output tensor)",
                                opt->exclude[e] ? opt->exclude[e] : "(null)");
            goto done;
        }
    }
    /* Precision of every operator. */
    mopt_op_precision def = opt->mode == MOPT_QUANT_INT16X8 ? MOPT_PREC_INT16X8
                            : opt->mode == MOPT_QUANT_INT8  ? MOPT_PREC_INT8
                                                            : MOPT_PREC_FLOAT;
    for (int oi = 0; oi < g->n_ops; oi++) {
        mopt_op_precision pr = def;
        if (opt->op_precision && oi < opt->n_op_precision && opt->op_precision[oi] != MOPT_PREC_DEFAULT)
            pr = opt->op_precision[oi];
        for (int e = 0; e < opt->n_exclude; e++)
            if (opt->exclude[e] && exclude_matches(g, oi, opt->exclude[e])) {
                pr = MOPT_PREC_FLOAT;
                p->excluded[oi] = true;
            }
        if (!is_int_mode(opt->mode))
            pr = MOPT_PREC_FLOAT;
        if (pr == MOPT_PREC_INT16X8 && g->ops[oi].type == MOPT_OP_HARD_SWISH) {
            bool forced = opt->op_precision && oi < opt->n_op_precision &&
                          opt->op_precision[oi] == MOPT_PREC_INT16X8;
            if (opt->mode == MOPT_QUANT_INT16X8 || forced) {
                char b[160];
                st = mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                                    "%s: TFLite has no int16x8 HARD_SWISH kernel (the converter "
                                    "refuses it too); keep it in float with --exclude HARD_SWISH",
                                    op_label(g, oi, b, sizeof(b)));
                goto done;
            }
            pr = MOPT_PREC_FLOAT;
        }
        p->prec[oi] = pr;
    }
    if (!is_int_mode(opt->mode))
        goto done;

    /* Ranges: calibrated activations, constants from their values. The
     * histogram methods clip tails, but not on logits (tensors read by a
     * SOFTMAX) or model outputs: clipping them merges the top classes. */
    bool *full = calloc(nt, sizeof(bool));
    if (!full) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "quantize: out of memory");
        goto done;
    }
    for (int oi = 0; oi < g->n_ops; oi++)
        if (g->ops[oi].type == MOPT_OP_SOFTMAX && g->ops[oi].inputs[0] >= 0)
            full[g->ops[oi].inputs[0]] = true;
    for (int i = 0; i < g->n_outputs; i++) full[g->outputs[i]] = true;
    mopt_quant_options mm = *opt;
    mm.calib_method = MOPT_CALIB_MINMAX;
    for (int t = 0; t < g->n_tensors; t++) {
        const mopt_quant_options *ro = full[t] ? &mm : opt;
        const mopt_tensor *tt = &g->tensors[t];
        if (tt->dtype != MOPT_FLOAT32)
            continue;
        float lo8, hi8, lo16, hi16;
        if (mopt_tensor_is_constant(g, t)) {
            const_range(g, t, &lo8, &hi8);
            lo16 = lo8;
            hi16 = hi8;
        } else if (!ptq_calib_range(calib, t, ro, false, &lo8, &hi8) ||
                   !ptq_calib_range(calib, t, ro, true, &lo16, &hi16)) {
            continue; /* not reached by the samples (unused tensor) */
        }
        p->rmin[t] = lo8;
        p->rmax[t] = hi8;
        p->p8[t] = asym8(lo8, hi8);
        p->p16[t] = sym16(lo16, hi16);
        p->has8[t] = p->has16[t] = true;
    }
    free(full);
    if (opt->match_converter)
        inplace_quirk(p, g, prod);
    /* Fixed output parameters. */
    for (int oi = 0; oi < g->n_ops; oi++) {
        const mopt_op *op = &g->ops[oi];
        if (!ptq_fixed_output_op(op->type) || op->n_outputs < 1 || op->outputs[0] < 0)
            continue;
        int y = op->outputs[0];
        p->p8[y] = ptq_fixed_params(op->type, PTQ_K_I8);
        p->p16[y] = ptq_fixed_params(op->type, PTQ_K_I16);
        p->has8[y] = p->has16[y] = true;
        p->rmin[y] = op->type == MOPT_OP_TANH ? -1.0f : 0.0f;
        p->rmax[y] = 1.0f;
    }
    /* int8: a CONCATENATION imposes its calibrated parameters on the
     * tensors feeding it when their producers can take them; the converter
     * resolves concatenations from the last one backwards. */
    for (int oi = g->n_ops - 1; oi >= 0; oi--) {
        const mopt_op *op = &g->ops[oi];
        if (op->type != MOPT_OP_CONCATENATION || op->n_outputs < 1 || !p->has8[op->outputs[0]])
            continue;
        mopt_qparams cp = p->p8[op->outputs[0]];
        for (int k = 0; k < op->n_inputs; k++) {
            int x = op->inputs[k];
            if (x < 0 || mopt_tensor_is_constant(g, x) || g->tensors[x].dtype != MOPT_FLOAT32 ||
                claimed[x])
                continue;
            int pr = prod[x];
            if (pr >= 0 && (ptq_same_scale_op(g->ops[pr].type) || ptq_fixed_output_op(g->ops[pr].type)))
                continue; /* keeps its parameters; the emitter requantizes */
            p->p8[x] = cp;
            p->has8[x] = true;
            claimed[x] = true;
        }
    }
    /* Same-scale operators pass their input's parameters on, in order. */
    for (int oi = 0; oi < g->n_ops; oi++) {
        const mopt_op *op = &g->ops[oi];
        if (!ptq_same_scale_op(op->type) || op->n_inputs < 1 || op->n_outputs < 1)
            continue;
        int x = op->inputs[0], y = op->outputs[0];
        if (x < 0 || y < 0 || mopt_tensor_is_constant(g, x))
            continue;
        if (!p->has8[y]) { /* not calibrated: the input's range is its range */
            p->rmin[y] = p->rmin[x];
            p->rmax[y] = p->rmax[x];
        }
        if (p->has8[x] && !claimed[y]) {
            p->p8[y] = p->p8[x];
            p->has8[y] = true;
        }
        if (p->has16[x]) {
            p->p16[y] = p->p16[x];
            p->has16[y] = true;
        }
    }
    /* Every activation a quantized operator touches needs parameters. */
    for (int oi = 0; oi < g->n_ops && st == MOPT_OK; oi++) {
        if (p->prec[oi] == MOPT_PREC_FLOAT)
            continue;
        const mopt_op *op = &g->ops[oi];
        for (int k = 0; k < op->n_outputs; k++) {
            int y = op->outputs[k];
            if (y >= 0 && g->tensors[y].dtype == MOPT_FLOAT32 && !(p->has8[y] && p->has16[y])) {
                char b[160];
                st = mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                    "%s: no calibrated range for tensor '%s' (not reached by the "
                                    "calibration samples)",
                                    op_label(g, oi, b, sizeof(b)), g->tensors[y].name);
            }
        }
    }
done:
    free(prod);
    free(claimed);
    if (st != MOPT_OK)
        ptq_plan_free(p);
    return st;
}

/* ------------------------------------------------------------------------
 * Weight quantization
 * ------------------------------------------------------------------------ */

/* [outer][channels][inner] view of a weight tensor along `axis`. */
static void weight_view(const mopt_tensor *w, int axis, size_t *outer, size_t *ch, size_t *inner) {
    size_t o = 1, in = 1;
    for (int d = 0; d < axis; d++) o *= (size_t)w->dims[d];
    for (int d = axis + 1; d < w->rank; d++) in *= (size_t)w->dims[d];
    *outer = o;
    *ch = (size_t)w->dims[axis];
    *inner = in;
}

static int8_t clamp127(float v) {
    double r = mopt_round_half_away((double)v);
    if (r > 127) return 127;
    if (r < -127) return -127;
    return (int8_t)r;
}

/* Legacy per-channel quantization (SymmetricPerChannelQuantization):
 * scale = a / 127, q = round(w * (127 / a)) with a single-precision
 * reciprocal; an all-zero channel gets scale 0. half[c] (the range per
 * channel) may be given (bias-adjusted) or computed (half == NULL -> from w). */
static void legacy_per_channel(const float *w, size_t outer, size_t ch, size_t inner,
                               const float *half, int8_t *q, float *scales) {
    for (size_t c = 0; c < ch; c++) {
        float a = 0;
        if (half) {
            a = half[c];
        } else {
            for (size_t o = 0; o < outer; o++)
                for (size_t i = 0; i < inner; i++) {
                    float v = fabsf(w[(o * ch + c) * inner + i]);
                    if (v > a) a = v;
                }
        }
        scales[c] = a / 127.0f;
        float inv = a == 0.0f ? 0.0f : 127.0f / a;
        for (size_t o = 0; o < outer; o++)
            for (size_t i = 0; i < inner; i++) {
                size_t j = (o * ch + c) * inner + i;
                q[j] = clamp127(w[j] * inv);
            }
    }
}

/* Legacy per-tensor (PortableSymmetricQuantizeFloats): range 0 gives scale 1
 * and zeros. */
static void legacy_per_tensor(const float *w, size_t n, float a, int8_t *q, float *scale) {
    if (a == 0.0f) {
        memset(q, 0, n);
        *scale = 1.0f;
        return;
    }
    *scale = a / 127.0f;
    float inv = 127.0f / a;
    for (size_t i = 0; i < n; i++) q[i] = clamp127(w[i] * inv);
}

static float absmax_f(const float *x, size_t n) {
    float a = 0;
    for (size_t i = 0; i < n; i++)
        if (fabsf(x[i]) > a) a = fabsf(x[i]);
    return a;
}

/* Quantized weights (and bias) of one CONV/DEPTHWISE/FC. */
typedef struct qweights {
    int8_t *q;
    float *wscale;
    int nscale;
    int axis;
    void *bias;      /* int32 / int64 values, NULL without bias */
    float *bscale;
    mopt_dtype bias_dtype;
} qweights;

static void qweights_free(qweights *w) {
    free(w->q);
    free(w->wscale);
    free(w->bias);
    free(w->bscale);
    memset(w, 0, sizeof(*w));
}

/* kind: PTQ_K_I8 (MLIR rules), PTQ_K_I16 (legacy rules), or -1 (dynamic
 * range: legacy weights, no bias). in_scale: the input's scale (bias);
 * in_lo/in_hi: its calibrated range (legacy bias check). */
static mopt_status quantize_weights(const ptq_plan *p, int oi, int kind, float in_scale,
                                    float in_lo, float in_hi, qweights *out, mopt_error *err) {
    const mopt_graph *g = p->g;
    const mopt_op *op = &g->ops[oi];
    memset(out, 0, sizeof(*out));
    int wt = op->inputs[1];
    const mopt_tensor *W = &g->tensors[wt];
    const float *w = mopt_tensor_data(g, wt);
    int axis = weight_axis(op->type);
    if (W->rank <= axis) {
        char b[160];
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: weights of rank %d", op_label(g, oi, b, sizeof(b)),
                              W->rank);
    }
    size_t outer, ch, inner;
    weight_view(W, axis, &outer, &ch, &inner);
    size_t n = outer * ch * inner;
    bool per_channel = !p->opt.per_tensor;
    /* LiteRT 2.3.0's hybrid DEPTHWISE_CONV_2D with a per-tensor filter
     * (version 4) reads uninitialized scaling factors: its outputs change
     * from run to run, on the converter's own models too. Dynamic range
     * depthwise filters therefore stay per channel unless the converter's
     * exact output is asked for. */
    if (kind < 0 && op->type == MOPT_OP_DEPTHWISE_CONV_2D && !p->opt.match_converter)
        per_channel = true;
    size_t ns = per_channel ? ch : 1;
    out->q = malloc(n ? n : 1);
    out->wscale = malloc(ns * sizeof(float));
    out->nscale = (int)ns;
    out->axis = per_channel ? axis : 0;
    if (!out->q || !out->wscale)
        goto nomem;

    int bt = op->n_inputs > 2 ? op->inputs[2] : -1;
    const float *b = NULL;
    size_t nb = 0;
    if (kind >= 0 && bt >= 0 && mopt_tensor_is_constant(g, bt) && g->tensors[bt].dtype == MOPT_FLOAT32) {
        b = p->bias_override && p->bias_override[oi] ? p->bias_override[oi] : mopt_tensor_data(g, bt);
        nb = (size_t)mopt_tensor_numel(&g->tensors[bt]);
        if (nb != ch) {
            char lb[160];
            qweights_free(out);
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: bias has %zu values for %zu channels",
                                  op_label(g, oi, lb, sizeof(lb)), nb, ch);
        }
    } else if (kind >= 0 && bt >= 0 && p->bias_override && p->bias_override[oi]) {
        b = p->bias_override[oi];
        nb = ch;
    } else if (kind >= 0 && bt < 0 && p->bias_override && p->bias_override[oi]) {
        b = p->bias_override[oi]; /* bias correction added a bias */
        nb = ch;
    }
    mopt_status st = MOPT_OK;
    if (kind == PTQ_K_I8) {
        /* MLIR quantizer: scales first, then the bias check may enlarge some. */
        if (per_channel)
            st = mopt_quantize_weights_per_channel(w, outer, ch, inner, out->q, out->wscale, err);
        else
            st = mopt_quantize_weights_per_tensor(w, n, out->q, out->wscale, err);
        if (st != MOPT_OK)
            goto fail;
        if (b) {
            out->bscale = malloc(ns * sizeof(float));
            if (!out->bscale)
                goto nomem;
            bool adjusted = false;
            if (per_channel) {
                for (size_t c = 0; c < ch; c++) {
                    double bs = (double)in_scale * (double)out->wscale[c];
                    double ab = fabs((double)b[c]);
                    if (bs > 0 && ab / bs > K_BIAS_MAX) {
                        double nbs = ab / K_BIAS_MAX;
                        out->wscale[c] = (float)(nbs / (double)in_scale);
                        out->bscale[c] = (float)nbs;
                        adjusted = true;
                    } else {
                        out->bscale[c] = mopt_bias_scale(in_scale, out->wscale[c]);
                    }
                }
            } else {
                double half = 0;
                for (size_t c = 0; c < ch; c++)
                    if (fabs((double)b[c]) > half) half = fabs((double)b[c]);
                double bs = (double)in_scale * (double)out->wscale[0];
                if (bs > 0 && !(half / bs < K_BIAS_MAX)) {
                    double nbs = half / K_BIAS_MAX;
                    out->wscale[0] = (float)(nbs / (double)in_scale);
                    out->bscale[0] = (float)nbs;
                    adjusted = true;
                } else {
                    out->bscale[0] = mopt_bias_scale(in_scale, out->wscale[0]);
                }
            }
            if (adjusted) {
                if (per_channel)
                    st = mopt_quantize_weights_with_scales(w, outer, ch, inner, out->wscale, out->q, err);
                else
                    st = mopt_quantize_weights_with_scales(w, 1, 1, n, out->wscale, out->q, err);
                if (st != MOPT_OK)
                    goto fail;
            }
            out->bias_dtype = MOPT_INT32;
            out->bias = malloc(ch * sizeof(int32_t));
            if (!out->bias)
                goto nomem;
            st = mopt_quantize_bias_int32(b, ch, out->bscale, ns, out->bias, err);
            if (st != MOPT_OK)
                goto fail;
        }
        return MOPT_OK;
    }

    /* Legacy quantizer (int16x8 and dynamic range). */
    float *half = malloc(ns * sizeof(float));
    if (!half)
        goto nomem;
    if (per_channel) {
        for (size_t c = 0; c < ch; c++) {
            float a = 0;
            for (size_t o = 0; o < outer; o++)
                for (size_t i = 0; i < inner; i++) {
                    float v = fabsf(w[(o * ch + c) * inner + i]);
                    if (v > a) a = v;
                }
            half[c] = a;
        }
    } else {
        half[0] = absmax_f(w, n);
    }
    if (b && kind == PTQ_K_I16) {
        /* EnsureBiasScaleCompatibility: the check uses the input's own
         * calibrated range (not parameters propagated to it) with the
         * activation type's (int16) scale. */
        float in8 = sym16(in_lo, in_hi).scale;
        const double kscale = 2147483647.0;
        if (in8 > 0) {
            if (per_channel) {
                for (size_t c = 0; c < ch; c++) {
                    float ws = half[c] / 127.0f;
                    if (fabs((double)b[c]) >= 0.5 * (double)in8 * (double)ws * kscale)
                        half[c] = (float)(2.0 * fabs((double)b[c]) / kscale * (double)(127.0f / in8));
                }
            } else {
                float bhr = 0;
                for (size_t c = 0; c < ch; c++)
                    if (fabsf(b[c]) > bhr) bhr = fabsf(b[c]);
                float ws = half[0] / 127.0f;
                if ((double)bhr / kscale >= 0.5 * (double)in8 * (double)ws)
                    half[0] = (float)(2.0 * (double)bhr / kscale * (double)(127.0f / in8));
            }
        }
    }
    if (per_channel)
        legacy_per_channel(w, outer, ch, inner, half, out->q, out->wscale);
    else
        legacy_per_tensor(w, n, half[0], out->q, out->wscale);
    free(half);
    if (b && kind == PTQ_K_I16) {
        out->bscale = malloc(ns * sizeof(float));
        out->bias = malloc(ch * sizeof(int64_t));
        if (!out->bscale || !out->bias)
            goto nomem;
        for (size_t c = 0; c < ns; c++) out->bscale[c] = mopt_bias_scale(in_scale, out->wscale[c]);
        out->bias_dtype = MOPT_INT64;
        st = mopt_quantize_bias_int64(b, ch, out->bscale, ns, out->bias, err);
        if (st != MOPT_OK)
            goto fail;
    }
    return MOPT_OK;
nomem:
    qweights_free(out);
    return mopt_error_set(err, MOPT_ERR_NOMEM, "quantize: out of memory");
fail:
    qweights_free(out);
    {
        char lb[160];
        mopt_error_prefix(err, "%s", op_label(g, oi, lb, sizeof(lb)));
    }
    return st;
}

/* ------------------------------------------------------------------------
 * Emitter
 * ------------------------------------------------------------------------ */

typedef struct variant {
    int kind;
    float scale;
    int32_t zp;
    int t;
} variant;

typedef struct emitter {
    const ptq_plan *p;
    const mopt_graph *g;
    mopt_graph *o;
    mopt_error *err;
    mopt_status st;
    int *home;      /* float tensor -> out tensor (its representation as produced) */
    int *home_kind;
    variant **vars; /* per float tensor: other representations */
    int *n_vars, *cap_vars;
    int *copy;      /* constant tensor -> out tensor holding a plain copy */
    int *copy16;    /* float16 mode: float constant -> DEQUANTIZE output of its FLOAT16 copy */
    int *bias16;    /* match_converter: bias tensor -> its first int64 quantization */
    /* out tensor -> float tensor; out op -> float op */
    int *src_t, cap_src_t;
    int *src_op, cap_src_op;
} emitter;

static bool e_ok(emitter *e) { return e->st == MOPT_OK; }

static void e_fail(emitter *e, mopt_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void e_fail(emitter *e, mopt_status st, const char *fmt, ...) {
    if (e->st != MOPT_OK)
        return;
    char msg[MOPT_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    e->st = mopt_error_set(e->err, st, "%s", msg);
}

static bool grow_int(int **a, int *cap, int need) {
    if (need <= *cap)
        return true;
    int nc = *cap ? *cap * 2 : 64;
    while (nc < need) nc *= 2;
    int *n = realloc(*a, (size_t)nc * sizeof(int));
    if (!n)
        return false;
    for (int i = *cap; i < nc; i++) n[i] = -1;
    *a = n;
    *cap = nc;
    return true;
}

static void note_tensor(emitter *e, int out_t, int src) {
    if (!grow_int(&e->src_t, &e->cap_src_t, out_t + 1)) {
        e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
        return;
    }
    e->src_t[out_t] = src;
}

/* New tensor with src's shape, name + suffix, dtype, optional params. */
static int new_tensor(emitter *e, int src, const char *suffix, mopt_dtype dt, const mopt_qparams *q) {
    if (!e_ok(e))
        return -1;
    const mopt_tensor *s = &e->g->tensors[src];
    char *name = malloc(strlen(s->name) + strlen(suffix) + 1);
    if (!name) {
        e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
        return -1;
    }
    strcpy(name, s->name);
    strcat(name, suffix);
    int t = mopt_graph_add_tensor(e->o, name, dt, s->rank, s->dims);
    free(name);
    if (t < 0) {
        e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
        return -1;
    }
    mopt_tensor *nt = &e->o->tensors[t];
    if (s->n_shape_signature > 0) {
        nt->shape_signature = malloc((size_t)s->n_shape_signature * sizeof(int32_t));
        if (nt->shape_signature) {
            memcpy(nt->shape_signature, s->shape_signature,
                   (size_t)s->n_shape_signature * sizeof(int32_t));
            nt->n_shape_signature = s->n_shape_signature;
        }
    }
    if (q) {
        int64_t zp = q->zero_point;
        if (mopt_tensor_set_quant(nt, 1, &q->scale, &zp, 0) != MOPT_OK)
            e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
    }
    note_tensor(e, t, src);
    return t;
}

static int add_op(emitter *e, mopt_op_type type, const int32_t *in, int nin, const int32_t *out,
                  int nout, int src_op) {
    if (!e_ok(e))
        return -1;
    int oi = mopt_graph_add_op(e->o, type, in, nin, out, nout);
    if (oi < 0 || !grow_int(&e->src_op, &e->cap_src_op, oi + 1)) {
        e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
        return -1;
    }
    e->src_op[oi] = src_op;
    return oi;
}

static mopt_dtype kind_dtype(int k) {
    return k == PTQ_K_I8 ? MOPT_INT8 : k == PTQ_K_I16 ? MOPT_INT16 : MOPT_FLOAT32;
}
static const char *kind_suffix(int k) {
    return k == PTQ_K_I8 ? "_int8" : k == PTQ_K_I16 ? "_int16" : "_float";
}

static int prec_kind(mopt_op_precision pr) {
    return pr == MOPT_PREC_INT8 ? PTQ_K_I8 : pr == MOPT_PREC_INT16X8 ? PTQ_K_I16 : PTQ_K_FLOAT;
}

static mopt_qparams default_params(const emitter *e, int t, int k) {
    return k == PTQ_K_I16 ? e->p->p16[t] : e->p->p8[t];
}

static bool same_params(const mopt_tensor *t, const mopt_qparams *q) {
    return t->quant.n == 1 && t->quant.scale[0] == q->scale && t->quant.zero_point[0] == q->zero_point;
}

static void add_variant(emitter *e, int t, int kind, const mopt_qparams *q, int out_t) {
    if (e->n_vars[t] == e->cap_vars[t]) {
        int nc = e->cap_vars[t] ? e->cap_vars[t] * 2 : 2;
        variant *nv = realloc(e->vars[t], (size_t)nc * sizeof(variant));
        if (!nv) {
            e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
            return;
        }
        e->vars[t] = nv;
        e->cap_vars[t] = nc;
    }
    variant v = {kind, q ? q->scale : 0.0f, q ? q->zero_point : 0, out_t};
    e->vars[t][e->n_vars[t]++] = v;
}

static int find_variant(const emitter *e, int t, int kind, const mopt_qparams *q) {
    for (int i = 0; i < e->n_vars[t]; i++) {
        const variant *v = &e->vars[t][i];
        if (v->kind == kind && (kind == PTQ_K_FLOAT || (v->scale == q->scale && v->zp == q->zero_point)))
            return v->t;
    }
    return -1;
}

static int quant_version(mopt_dtype in, mopt_dtype out) {
    (void)out;
    return in == MOPT_INT16 ? 2 : 1; /* requantizing int16 -> int16: 2 */
}

/* Representation `kind` (params q for integers; NULL = the tensor's own)
 * of activation t, converting (and caching) as needed. */
static int activation(emitter *e, int t, int kind, const mopt_qparams *qin) {
    if (!e_ok(e))
        return -1;
    int h = e->home[t];
    if (h < 0) {
        e_fail(e, MOPT_ERR_INTERNAL, "quantize: tensor %d '%s' used before it is produced", t,
               e->g->tensors[t].name);
        return -1;
    }
    mopt_qparams q = {0, 0};
    if (kind != PTQ_K_FLOAT)
        q = qin ? *qin : default_params(e, t, kind);
    int hk = e->home_kind[t];
    if (hk == kind && (kind == PTQ_K_FLOAT || same_params(&e->o->tensors[h], &q)))
        return h;
    int v = find_variant(e, t, kind, &q);
    if (v >= 0)
        return v;
    if (kind == PTQ_K_FLOAT) {
        /* DEQUANTIZE from the home representation. */
        int y = new_tensor(e, t, "_float", MOPT_FLOAT32, NULL);
        int32_t in[1] = {h}, out[1] = {y};
        int oi = add_op(e, MOPT_OP_DEQUANTIZE, in, 1, out, 1, -1);
        if (oi >= 0) e->o->ops[oi].version = 2;
        add_variant(e, t, kind, NULL, y);
        return y;
    }
    int src = h;
    mopt_dtype hdt = e->o->tensors[h].dtype;
    if (hk != PTQ_K_FLOAT && hdt != kind_dtype(kind))
        src = activation(e, t, PTQ_K_FLOAT, NULL); /* int8 <-> int16 through float */
    if (src < 0)
        return -1;
    bool requant = e->o->tensors[src].dtype != MOPT_FLOAT32;
    int y = new_tensor(e, t, requant ? "_requantized" : kind_suffix(kind), kind_dtype(kind), &q);
    int32_t in[1] = {src}, out[1] = {y};
    int oi = add_op(e, MOPT_OP_QUANTIZE, in, 1, out, 1, -1);
    if (oi >= 0)
        e->o->ops[oi].version = quant_version(e->o->tensors[src].dtype, kind_dtype(kind));
    add_variant(e, t, kind, &q, y);
    return y;
}

/* Copy of a non-float constant, or of a float constant kept in float
 * (float16 mode: FLOAT16 data read through DEQUANTIZE). */
static int const_copy(emitter *e, int t, bool fp16) {
    if (!e_ok(e))
        return -1;
    const mopt_tensor *s = &e->g->tensors[t];
    fp16 = fp16 && s->dtype == MOPT_FLOAT32;
    int *cache = fp16 ? e->copy16 : e->copy;
    if (cache[t] >= 0)
        return cache[t];
    const void *d = mopt_tensor_data(e->g, t);
    size_t nb = (size_t)mopt_tensor_nbytes(s);
    int y;
    if (fp16) {
        size_t n = (size_t)mopt_tensor_numel(s);
        uint16_t *h = malloc(n ? n * 2 : 2);
        if (!h) {
            e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
            return -1;
        }
        for (size_t i = 0; i < n; i++) h[i] = mopt_float_to_half_clamped(((const float *)d)[i]);
        int c = new_tensor(e, t, "_fp16", MOPT_FLOAT16, NULL);
        if (c >= 0 && mopt_graph_set_tensor_data(e->o, c, h, n * 2) != MOPT_OK)
            e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
        free(h);
        y = new_tensor(e, t, "", MOPT_FLOAT32, NULL);
        int32_t in[1] = {c}, out[1] = {y};
        int oi = add_op(e, MOPT_OP_DEQUANTIZE, in, 1, out, 1, -1);
        if (oi >= 0) e->o->ops[oi].version = 3;
    } else {
        y = new_tensor(e, t, "", s->dtype, NULL);
        if (y >= 0 && mopt_graph_set_tensor_data(e->o, y, d, nb) != MOPT_OK)
            e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
    }
    cache[t] = y;
    return y;
}

/* A float constant operand quantized like an activation: int8 asymmetric
 * from its own range (or the given params), int16 symmetric. */
static int const_quant(emitter *e, int t, int kind, const mopt_qparams *qin) {
    if (!e_ok(e))
        return -1;
    mopt_qparams q = qin ? *qin : default_params(e, t, kind);
    int v = find_variant(e, t, kind, &q);
    if (v >= 0)
        return v;
    const mopt_tensor *s = &e->g->tensors[t];
    const float *d = mopt_tensor_data(e->g, t);
    size_t n = (size_t)mopt_tensor_numel(s);
    int y = new_tensor(e, t, "", kind_dtype(kind), &q);
    if (y < 0)
        return -1;
    void *buf = malloc(n ? n * 2 : 2);
    if (!buf) {
        e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
        return -1;
    }
    if (kind == PTQ_K_I8) {
        for (size_t i = 0; i < n; i++)
            ((int8_t *)buf)[i] = (int8_t)mopt_quantize_value(d[i], q.scale, q.zero_point, -128, 127);
    } else {
        /* SymmetricQuantizeFloatsToInt16: x * (1 / scale) in binary32. */
        float inv = q.scale == 0.0f ? 0.0f : (float)(1.0 / (double)q.scale);
        for (size_t i = 0; i < n; i++) {
            double r = mopt_round_half_away((double)(d[i] * inv));
            if (r > 32767) r = 32767;
            if (r < -32767) r = -32767;
            ((int16_t *)buf)[i] = (int16_t)r;
        }
    }
    if (mopt_graph_set_tensor_data(e->o, y, buf, n * (kind == PTQ_K_I8 ? 1 : 2)) != MOPT_OK)
        e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
    free(buf);
    add_variant(e, t, kind, &q, y);
    return y;
}

/* Any operand of an op running at `kind` (fp16: float16 mode, operator
 * not excluded). */
static int operand(emitter *e, int t, int kind, const mopt_qparams *q, bool fp16) {
    if (t < 0)
        return -1;
    const mopt_tensor *s = &e->g->tensors[t];
    if (mopt_tensor_is_constant(e->g, t)) {
        if (s->dtype != MOPT_FLOAT32 || kind == PTQ_K_FLOAT)
            return const_copy(e, t, fp16);
        return const_quant(e, t, kind, q);
    }
    return activation(e, t, kind, q);
}

static int add_const_tensor(emitter *e, int src, const char *suffix, mopt_dtype dt, const void *data,
                            size_t bytes, int nq, const float *scales, int axis) {
    int y = new_tensor(e, src, suffix, dt, NULL);
    if (y < 0)
        return -1;
    if (mopt_graph_set_tensor_data(e->o, y, data, bytes) != MOPT_OK) {
        e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
        return -1;
    }
    if (nq > 0) {
        int64_t *zp = calloc((size_t)nq, sizeof(int64_t));
        if (!zp || mopt_tensor_set_quant(&e->o->tensors[y], nq, scales, zp, axis) != MOPT_OK)
            e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
        free(zp);
    }
    return y;
}

/* Operator version the converter writes (TF 2.21, observed). */
static int version_for(const mopt_op *op, int kind, bool hybrid, bool per_channel) {
    if (hybrid) {
        switch (op->type) {
        case MOPT_OP_CONV_2D: return per_channel ? 5 : 2;
        case MOPT_OP_DEPTHWISE_CONV_2D: return per_channel ? 6 : 4;
        case MOPT_OP_FULLY_CONNECTED: return per_channel ? 12 : 9;
        default: return op->version;
        }
    }
    if (kind == PTQ_K_FLOAT)
        return op->version > 0 ? op->version : 1;
    switch (op->type) {
    case MOPT_OP_CONV_2D:
    case MOPT_OP_DEPTHWISE_CONV_2D: return 3;
    case MOPT_OP_FULLY_CONNECTED: return op->p.fc.keep_num_dims ? 5 : 4;
    case MOPT_OP_RESHAPE:
    case MOPT_OP_HARD_SWISH: return 1;
    default: return 2;
    }
}

static void emit_op(emitter *e, int oi) {
    const mopt_graph *g = e->g;
    const ptq_plan *p = e->p;
    const mopt_op *op = &g->ops[oi];
    int kind = prec_kind(p->prec[oi]);
    int32_t ins[16], outs[8];
    if (op->n_inputs > 16 || op->n_outputs > 8) {
        e_fail(e, MOPT_ERR_UNSUPPORTED, "operator %d: too many inputs/outputs", oi);
        return;
    }
    bool hybrid = false, per_channel = !p->opt.per_tensor;
    bool fp16 = p->opt.mode == MOPT_QUANT_FLOAT16 && !p->excluded[oi];
    if (p->opt.mode == MOPT_QUANT_DYNAMIC && op->type == MOPT_OP_DEPTHWISE_CONV_2D &&
        !p->opt.match_converter)
        per_channel = true; /* see quantize_weights */
    qweights qw;
    memset(&qw, 0, sizeof(qw));

    if (p->opt.mode == MOPT_QUANT_DYNAMIC && !p->excluded[oi] && is_weight_op(op->type) &&
        op->n_inputs >= 2 &&
        op->inputs[1] >= 0 && mopt_tensor_is_constant(g, op->inputs[1]) &&
        g->tensors[op->inputs[1]].dtype == MOPT_FLOAT32 &&
        mopt_tensor_numel(&g->tensors[op->inputs[1]]) >= p->opt.dynamic_min_elements) {
        hybrid = true;
        if ((e->st = quantize_weights(p, oi, -1, 0, 0, 0, &qw, e->err)) != MOPT_OK)
            return;
    }

    if (kind == PTQ_K_FLOAT) {
        for (int k = 0; k < op->n_inputs; k++) {
            int t = op->inputs[k];
            if (hybrid && k == 1) {
                const mopt_tensor *W = &g->tensors[t];
                ins[k] = add_const_tensor(e, t, "", MOPT_INT8, qw.q, (size_t)mopt_tensor_numel(W),
                                          qw.nscale, qw.wscale, qw.axis);
            } else {
                ins[k] = t < 0 ? -1 : operand(e, t, PTQ_K_FLOAT, NULL, fp16);
            }
        }
        for (int k = 0; k < op->n_outputs; k++) {
            int t = op->outputs[k];
            outs[k] = t < 0 ? -1 : new_tensor(e, t, "", g->tensors[t].dtype, NULL);
            if (t >= 0) {
                e->home[t] = outs[k];
                e->home_kind[t] = PTQ_K_FLOAT;
            }
        }
    } else if (is_weight_op(op->type)) {
        int x = op->inputs[0], wt = op->inputs[1];
        if (!mopt_tensor_is_constant(g, wt) || g->tensors[wt].dtype != MOPT_FLOAT32) {
            e_fail(e, MOPT_ERR_UNSUPPORTED,
                   "operator %d (%s): weights must be constant float32 to be quantized", oi,
                   mopt_op_name(op->type));
            return;
        }
        ins[0] = activation(e, x, kind, NULL);
        if (!e_ok(e))
            return;
        const mopt_tensor *xin = &e->o->tensors[ins[0]];
        float in_scale = xin->quant.scale[0];
        if ((e->st = quantize_weights(p, oi, kind, in_scale, p->rmin[x], p->rmax[x], &qw, e->err)) !=
            MOPT_OK)
            return;
        const mopt_tensor *W = &g->tensors[wt];
        ins[1] = add_const_tensor(e, wt, "", MOPT_INT8, qw.q, (size_t)mopt_tensor_numel(W),
                                  qw.nscale, qw.wscale, qw.axis);
        int nin = op->n_inputs;
        if (nin > 2) {
            int bt = op->inputs[2];
            if (qw.bias) {
                size_t nb = (size_t)W->dims[weight_axis(op->type)];
                size_t es = qw.bias_dtype == MOPT_INT64 ? 8 : 4;
                if (bt >= 0 && kind == PTQ_K_I16 && p->opt.match_converter && e->bias16[bt] >= 0) {
                    /* The legacy quantizer quantizes a bias shared by several
                     * operators once, with the first one's scales, and the
                     * others reuse it (a converter bug, reproduced only to
                     * match its output). */
                    ins[2] = e->bias16[bt];
                } else if (bt >= 0) {
                    ins[2] = add_const_tensor(e, bt, "", qw.bias_dtype, qw.bias, nb * es, qw.nscale,
                                              qw.bscale, 0);
                    if (kind == PTQ_K_I16) e->bias16[bt] = ins[2];
                } else {
                    /* bias correction created a bias for a bias-less op */
                    int32_t dims1[1] = {(int32_t)nb};
                    char nm[256];
                    snprintf(nm, sizeof(nm), "%s_bias", g->tensors[op->outputs[0]].name);
                    int y = mopt_graph_add_tensor(e->o, nm, qw.bias_dtype, 1, dims1);
                    if (y < 0 || mopt_graph_set_tensor_data(e->o, y, qw.bias, nb * es) != MOPT_OK) {
                        e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
                    } else {
                        int64_t *zp = calloc((size_t)qw.nscale, sizeof(int64_t));
                        if (!zp || mopt_tensor_set_quant(&e->o->tensors[y], qw.nscale, qw.bscale, zp, 0) != MOPT_OK)
                            e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
                        free(zp);
                        note_tensor(e, y, -1);
                    }
                    ins[2] = y;
                }
            } else {
                ins[2] = bt < 0 ? -1 : operand(e, bt, PTQ_K_FLOAT, NULL, false);
            }
        } else if (qw.bias) {
            /* FC without a bias input that bias correction gave one */
            size_t nb = (size_t)W->dims[weight_axis(op->type)];
            size_t es = qw.bias_dtype == MOPT_INT64 ? 8 : 4;
            int32_t dims1[1] = {(int32_t)nb};
            char nm[256];
            snprintf(nm, sizeof(nm), "%s_bias", g->tensors[op->outputs[0]].name);
            int y = mopt_graph_add_tensor(e->o, nm, qw.bias_dtype, 1, dims1);
            if (y < 0 || mopt_graph_set_tensor_data(e->o, y, qw.bias, nb * es) != MOPT_OK) {
                e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
            } else {
                int64_t *zp = calloc((size_t)qw.nscale, sizeof(int64_t));
                if (!zp || mopt_tensor_set_quant(&e->o->tensors[y], qw.nscale, qw.bscale, zp, 0) != MOPT_OK)
                    e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
                free(zp);
                note_tensor(e, y, -1);
            }
            ins[2] = y;
            nin = 3;
        }
        int y = op->outputs[0];
        mopt_qparams qy = default_params(e, y, kind);
        outs[0] = new_tensor(e, y, "", kind_dtype(kind), &qy);
        e->home[y] = outs[0];
        e->home_kind[y] = kind;
        int noi = add_op(e, op->type, ins, nin, outs, 1, oi);
        if (noi >= 0) {
            mopt_op *no = &e->o->ops[noi];
            no->p = op->p;
            no->has_options = op->has_options;
            no->version = version_for(op, kind, false, per_channel);
            if (kind == PTQ_K_I16) {
                if (op->type == MOPT_OP_CONV_2D) no->p.conv.quantized_bias_type = MOPT_INT64;
                if (op->type == MOPT_OP_FULLY_CONNECTED) no->p.fc.quantized_bias_type = MOPT_INT64;
            }
        }
        qweights_free(&qw);
        return;
    } else {
        /* Other integer operators: activations and constants at `kind`;
         * same-scale operators read their inputs with the output's params. */
        int y0 = op->n_outputs > 0 ? op->outputs[0] : -1;
        mopt_qparams qy = y0 >= 0 ? default_params(e, y0, kind) : (mopt_qparams){0, 0};
        bool same = ptq_same_scale_op(op->type) || op->type == MOPT_OP_CONCATENATION;
        for (int k = 0; k < op->n_inputs; k++) {
            int t = op->inputs[k];
            if (t < 0) {
                ins[k] = -1;
            } else if (g->tensors[t].dtype != MOPT_FLOAT32) {
                ins[k] = const_copy(e, t, false);
            } else {
                bool data_in = op->type == MOPT_OP_CONCATENATION || k == 0;
                ins[k] = operand(e, t, kind, same && data_in ? &qy : NULL, false);
            }
        }
        for (int k = 0; k < op->n_outputs; k++) {
            int t = op->outputs[k];
            if (t < 0) {
                outs[k] = -1;
                continue;
            }
            mopt_qparams q = default_params(e, t, kind);
            outs[k] = new_tensor(e, t, "", kind_dtype(kind), &q);
            e->home[t] = outs[k];
            e->home_kind[t] = kind;
        }
    }
    int noi = add_op(e, op->type, ins, op->n_inputs, outs, op->n_outputs, oi);
    if (noi >= 0) {
        mopt_op *no = &e->o->ops[noi];
        no->p = op->p;
        no->has_options = op->has_options;
        no->version = version_for(op, kind, hybrid, per_channel);
        if (hybrid && op->type == MOPT_OP_FULLY_CONNECTED) no->p.fc.asymmetric_quantize_inputs = true;
        if (kind == PTQ_K_I16 && (op->type == MOPT_OP_ADD || op->type == MOPT_OP_SUB))
            no->p.binary.pot_scale_int16 = false;
        if ((op->type == MOPT_OP_ADD || op->type == MOPT_OP_SUB) && kind == PTQ_K_I16)
            no->has_options = true;
    }
    qweights_free(&qw);
}

void ptq_map_free(ptq_map *m) {
    if (!m)
        return;
    free(m->src_tensor);
    free(m->home);
    free(m->src_op_of_out);
    memset(m, 0, sizeof(*m));
}

/* min_runtime_version the converter writes for an operator version
 * (tflite/tools/versioning/runtime_version.cc; entries for the versions
 * mopt emits, checked against the converter's outputs). NULL if unknown. */
static const char *runtime_version(int type, int v) {
    static const struct { int type, v; const char *rt; } tab[] = {
        {MOPT_OP_ADD, 1, "1.5.0"}, {MOPT_OP_ADD, 2, "1.14.0"}, {MOPT_OP_ADD, 3, "2.4.0"},
        {MOPT_OP_AVERAGE_POOL_2D, 1, "1.5.0"}, {MOPT_OP_AVERAGE_POOL_2D, 2, "1.14.0"},
        {MOPT_OP_AVERAGE_POOL_2D, 3, "2.3.0"},
        {MOPT_OP_CONCATENATION, 1, "1.5.0"}, {MOPT_OP_CONCATENATION, 2, "1.14.0"},
        {MOPT_OP_CONCATENATION, 3, "2.3.0"},
        {MOPT_OP_CONV_2D, 1, "1.5.0"}, {MOPT_OP_CONV_2D, 2, "1.14.0"}, {MOPT_OP_CONV_2D, 3, "1.14.0"},
        {MOPT_OP_CONV_2D, 4, "2.3.0"}, {MOPT_OP_CONV_2D, 5, "2.4.0"},
        {MOPT_OP_DEPTHWISE_CONV_2D, 1, "1.5.0"}, {MOPT_OP_DEPTHWISE_CONV_2D, 2, "1.12.0"},
        {MOPT_OP_DEPTHWISE_CONV_2D, 3, "1.14.0"}, {MOPT_OP_DEPTHWISE_CONV_2D, 4, "2.2.0"},
        {MOPT_OP_DEPTHWISE_CONV_2D, 5, "2.3.0"}, {MOPT_OP_DEPTHWISE_CONV_2D, 6, "2.3.0"},
        {MOPT_OP_DEQUANTIZE, 1, "1.13.1"}, {MOPT_OP_DEQUANTIZE, 2, "1.14.0"},
        {MOPT_OP_DEQUANTIZE, 3, "1.15.0"},
        {MOPT_OP_FULLY_CONNECTED, 1, "1.5.0"}, {MOPT_OP_FULLY_CONNECTED, 2, "1.10.0"},
        {MOPT_OP_FULLY_CONNECTED, 3, "1.14.0"}, {MOPT_OP_FULLY_CONNECTED, 4, "1.14.0"},
        {MOPT_OP_FULLY_CONNECTED, 5, "2.0.0"}, {MOPT_OP_FULLY_CONNECTED, 6, "2.1.0"},
        {MOPT_OP_FULLY_CONNECTED, 9, "2.3.0"}, {MOPT_OP_FULLY_CONNECTED, 12, "2.17.0"},
        {MOPT_OP_HARD_SWISH, 1, "1.15.0"},
        {MOPT_OP_LOGISTIC, 1, "1.5.0"}, {MOPT_OP_LOGISTIC, 2, "1.14.0"},
        {MOPT_OP_MAX_POOL_2D, 1, "1.5.0"}, {MOPT_OP_MAX_POOL_2D, 2, "1.14.0"},
        {MOPT_OP_MEAN, 1, "1.6.0"}, {MOPT_OP_MEAN, 2, "1.14.0"},
        {MOPT_OP_MUL, 1, "1.5.0"}, {MOPT_OP_MUL, 2, "1.14.0"}, {MOPT_OP_MUL, 3, "1.15.0"},
        {MOPT_OP_PAD, 1, "1.5.0"}, {MOPT_OP_PAD, 2, "1.14.0"},
        {MOPT_OP_QUANTIZE, 1, "1.14.0"}, {MOPT_OP_QUANTIZE, 2, "1.15.0"},
        {MOPT_OP_RELU, 1, "1.5.0"}, {MOPT_OP_RELU, 2, "2.1.0"},
        {MOPT_OP_RELU6, 1, "1.5.0"}, {MOPT_OP_RELU6, 2, "1.14.0"},
        {MOPT_OP_RESHAPE, 1, "1.5.0"},
        {MOPT_OP_SOFTMAX, 1, "1.5.0"}, {MOPT_OP_SOFTMAX, 2, "1.14.0"},
        {MOPT_OP_SUB, 1, "1.6.0"}, {MOPT_OP_SUB, 2, "1.14.0"},
        {MOPT_OP_TANH, 1, "1.14.0"}, {MOPT_OP_TANH, 2, "1.14.0"},
        {MOPT_OP_TRANSPOSE, 1, "1.6.0"}, {MOPT_OP_TRANSPOSE, 2, "1.14.0"},
    };
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (tab[i].type == type && tab[i].v == v)
            return tab[i].rt;
    return NULL;
}

/* Numeric comparison of dotted versions. */
static int version_cmp(const char *a, const char *b) {
    while (*a || *b) {
        long x = strtol(a, (char **)&a, 10), y = strtol(b, (char **)&b, 10);
        if (x != y) return x < y ? -1 : 1;
        if (*a == '.') a++;
        if (*b == '.') b++;
        if (!*a && !*b) break;
        if (!*a || !*b) return *a ? 1 : -1;
    }
    return 0;
}

/* Copies description, metadata (with their buffers) and signatures. */
static void copy_extras(emitter *e) {
    const mopt_graph *g = e->g;
    mopt_graph *o = e->o;
    if (g->name && !(o->name = strdup(g->name)))
        e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
    if (g->description && !(o->description = strdup(g->description)))
        e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
    if (g->n_metadata > 0) {
        o->metadata = calloc((size_t)g->n_metadata, sizeof(mopt_metadata));
        if (!o->metadata) {
            e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
            return;
        }
        /* The MLIR converter recomputes min_runtime_version from the
         * operator versions (16 bytes, NUL padded); the legacy int16x8 path
         * keeps the float model's. */
        const char *rt = NULL;
        if (e->p->opt.mode != MOPT_QUANT_INT16X8)
            for (int i = 0; i < o->n_ops; i++) {
                const char *v = runtime_version(o->ops[i].type, o->ops[i].version);
                if (v && (!rt || version_cmp(v, rt) > 0)) rt = v;
            }
        for (int i = 0; i < g->n_metadata; i++) {
            const mopt_buffer *b = &g->buffers[g->metadata[i].buffer];
            int nb;
            if (rt && g->metadata[i].name && strcmp(g->metadata[i].name, "min_runtime_version") == 0) {
                char v16[16] = {0};
                snprintf(v16, sizeof(v16), "%s", rt);
                nb = mopt_graph_add_buffer(o, v16, sizeof(v16));
            } else {
                nb = mopt_graph_add_buffer(o, b->data, b->size);
            }
            o->metadata[i].name = strdup(g->metadata[i].name ? g->metadata[i].name : "");
            o->metadata[i].buffer = nb < 0 ? 0 : (uint32_t)nb;
            o->n_metadata = i + 1;
            if (nb < 0 || !o->metadata[i].name)
                e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
        }
    }
    if (g->n_signatures > 0) {
        o->signatures = calloc((size_t)g->n_signatures, sizeof(mopt_signature));
        if (!o->signatures) {
            e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
            return;
        }
        o->n_signatures = g->n_signatures;
        for (int i = 0; i < g->n_signatures; i++) {
            const mopt_signature *s = &g->signatures[i];
            mopt_signature *d = &o->signatures[i];
            d->key = strdup(s->key ? s->key : "");
            d->subgraph = s->subgraph;
            d->inputs = calloc((size_t)s->n_inputs + 1, sizeof(mopt_tensor_map));
            d->outputs = calloc((size_t)s->n_outputs + 1, sizeof(mopt_tensor_map));
            if (!d->key || !d->inputs || !d->outputs) {
                e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
                return;
            }
            for (int k = 0; k < s->n_inputs; k++) {
                int t = (int)s->inputs[k].tensor, nt = -1;
                for (int j = 0; j < g->n_inputs; j++)
                    if (g->inputs[j] == t) nt = o->inputs[j];
                if (nt < 0) continue;
                d->inputs[d->n_inputs].name = strdup(s->inputs[k].name ? s->inputs[k].name : "");
                d->inputs[d->n_inputs++].tensor = (uint32_t)nt;
            }
            for (int k = 0; k < s->n_outputs; k++) {
                int t = (int)s->outputs[k].tensor, nt = -1;
                for (int j = 0; j < g->n_outputs; j++)
                    if (g->outputs[j] == t) nt = o->outputs[j];
                if (nt < 0) continue;
                d->outputs[d->n_outputs].name = strdup(s->outputs[k].name ? s->outputs[k].name : "");
                d->outputs[d->n_outputs++].tensor = (uint32_t)nt;
            }
        }
    }
}

/* One OperatorCode per builtin: the converter writes every operator of a
 * type with the highest version any of them needs. */
static void harmonize_versions(mopt_graph *o) {
    for (int i = 0; i < o->n_ops; i++) {
        int v = o->ops[i].version;
        for (int j = 0; j < o->n_ops; j++)
            if (o->ops[j].type == o->ops[i].type && o->ops[j].version > v) v = o->ops[j].version;
        o->ops[i].version = v;
    }
}

mopt_status ptq_emit(const ptq_plan *p, mopt_graph **out, ptq_map *map, mopt_error *err) {
    *out = NULL;
    if (map)
        memset(map, 0, sizeof(*map));
    const mopt_graph *g = p->g;
    emitter E;
    memset(&E, 0, sizeof(E));
    emitter *e = &E;
    e->p = p;
    e->g = g;
    e->err = err;
    size_t nt = (size_t)g->n_tensors + 1;
    e->home = malloc(nt * sizeof(int));
    e->home_kind = calloc(nt, sizeof(int));
    e->copy = malloc(nt * sizeof(int));
    e->copy16 = malloc(nt * sizeof(int));
    e->bias16 = malloc(nt * sizeof(int));
    e->vars = calloc(nt, sizeof(variant *));
    e->n_vars = calloc(nt, sizeof(int));
    e->cap_vars = calloc(nt, sizeof(int));
    e->o = mopt_graph_create();
    if (!e->home || !e->home_kind || !e->copy || !e->copy16 || !e->bias16 || !e->vars || !e->n_vars || !e->cap_vars || !e->o) {
        e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
        goto done;
    }
    for (size_t t = 0; t < nt; t++) e->home[t] = e->copy[t] = e->copy16[t] = e->bias16[t] = -1;

    bool int_mode = is_int_mode(p->opt.mode);
    int io_kind = int_mode && p->opt.io == MOPT_QIO_INT
                      ? (p->opt.mode == MOPT_QUANT_INT16X8 ? PTQ_K_I16 : PTQ_K_I8)
                      : PTQ_K_FLOAT;
    /* Graph inputs. */
    int32_t *gin = malloc(((size_t)g->n_inputs + 1) * sizeof(int32_t));
    int32_t *gout = malloc(((size_t)g->n_outputs + 1) * sizeof(int32_t));
    if (!gin || !gout) {
        free(gin);
        free(gout);
        e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
        goto done;
    }
    for (int i = 0; i < g->n_inputs; i++) {
        int t = g->inputs[i];
        int k = g->tensors[t].dtype == MOPT_FLOAT32 ? io_kind : PTQ_K_FLOAT;
        mopt_qparams q = k == PTQ_K_FLOAT ? (mopt_qparams){0, 0} : default_params(e, t, k);
        gin[i] = new_tensor(e, t, "", k == PTQ_K_FLOAT ? g->tensors[t].dtype : kind_dtype(k),
                            k == PTQ_K_FLOAT ? NULL : &q);
        e->home[t] = gin[i];
        e->home_kind[t] = k;
    }
    /* float16: every float constant becomes FLOAT16 + DEQUANTIZE, all at the
     * start of the graph as the converter places them. */
    if (p->opt.mode == MOPT_QUANT_FLOAT16)
        for (int oi = 0; oi < g->n_ops; oi++)
            for (int k = 0; k < g->ops[oi].n_inputs && !p->excluded[oi]; k++) {
                int t = g->ops[oi].inputs[k];
                if (t >= 0 && g->tensors[t].dtype == MOPT_FLOAT32 && mopt_tensor_is_constant(g, t))
                    const_copy(e, t, true);
            }
    for (int oi = 0; oi < g->n_ops && e_ok(e); oi++) emit_op(e, oi);
    /* Graph outputs in the I/O type; a converted output takes the original
     * name, the internal tensor gets a suffix. */
    for (int i = 0; i < g->n_outputs && e_ok(e); i++) {
        int t = g->outputs[i];
        int k = g->tensors[t].dtype == MOPT_FLOAT32 ? io_kind : PTQ_K_FLOAT;
        int h = e->home[t];
        int y = k == PTQ_K_FLOAT && g->tensors[t].dtype != MOPT_FLOAT32 ? h : activation(e, t, k, NULL);
        if (!e_ok(e))
            break;
        if (y != h && h >= 0) {
            const char *orig = g->tensors[t].name;
            const char *suf = kind_suffix(e->home_kind[t]);
            char *hn = malloc(strlen(orig) + strlen(suf) + 1), *yn = strdup(orig);
            if (!hn || !yn) {
                free(hn);
                free(yn);
                e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
                break;
            }
            strcpy(hn, orig);
            strcat(hn, suf);
            free(e->o->tensors[h].name);
            e->o->tensors[h].name = hn;
            free(e->o->tensors[y].name);
            e->o->tensors[y].name = yn;
        }
        gout[i] = y;
    }
    if (e_ok(e) && mopt_graph_set_io(e->o, gin, g->n_inputs, gout, g->n_outputs) != MOPT_OK)
        e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
    free(gin);
    free(gout);
    if (e_ok(e))
        copy_extras(e);
    if (e_ok(e))
        harmonize_versions(e->o);
    if (e_ok(e) && map) {
        map->n = e->o->n_tensors;
        map->n_ops = e->o->n_ops;
        map->src_tensor = malloc(((size_t)map->n + 1) * sizeof(int));
        map->home = malloc(nt * sizeof(int));
        map->src_op_of_out = malloc(((size_t)map->n_ops + 1) * sizeof(int));
        if (!map->src_tensor || !map->home || !map->src_op_of_out) {
            e_fail(e, MOPT_ERR_NOMEM, "quantize: out of memory");
        } else {
            for (int i = 0; i < map->n; i++) map->src_tensor[i] = i < e->cap_src_t ? e->src_t[i] : -1;
            for (size_t t = 0; t < nt; t++) map->home[t] = e->home[t];
            for (int i = 0; i < map->n_ops; i++)
                map->src_op_of_out[i] = i < e->cap_src_op ? e->src_op[i] : -1;
        }
    }
done:
    if (e->vars)
        for (size_t t = 0; t < nt; t++) free(e->vars[t]);
    free(e->vars);
    free(e->n_vars);
    free(e->cap_vars);
    free(e->home);
    free(e->home_kind);
    free(e->copy);
    free(e->copy16);
    free(e->bias16);
    free(e->src_t);
    free(e->src_op);
    if (e->st != MOPT_OK) {
        mopt_graph_free(e->o);
        if (map)
            ptq_map_free(map);
        return e->st;
    }
    *out = e->o;
    return MOPT_OK;
}
