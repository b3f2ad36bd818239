/* q_common.c - helpers shared by the integer and hybrid kernels:
 * requantization methods, activation ranges, dtype predicates, and the
 * hybrid kernels' run-time input quantization. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/q_ops.h"

mopt_q_method mopt_q_method_for(mopt_q_family fam, mopt_rounding r) {
    bool wide = fam == MOPT_QF_CONV16 || fam == MOPT_QF_DW16 || fam == MOPT_QF_FC16;
    switch (r) {
    case MOPT_ROUND_SINGLE:
        /* The int64 overload is the same in both builds. */
        return wide ? MOPT_QM_MBQM_INT64 : MOPT_QM_MBQM_SINGLE;
    case MOPT_ROUND_FP32: return MOPT_QM_FP32;
    case MOPT_ROUND_DOUBLE:
    default: break;
    }
    /* The pinned oracle's reference kernels (ai-edge-litert 2.3.0, checked
     * by tests/interop/test_int_bitexact.py): FULLY_CONNECTED (int8 and
     * 16x8) and the 16x8 CONV_2D requantize in double with round half away
     * from zero; DEPTHWISE 16x8 keeps the int64 MultiplyByQuantizedMultiplier;
     * int8 CONV_2D / DEPTHWISE keep gemmlowp's double rounding. */
    switch (fam) {
    case MOPT_QF_FC8:
    case MOPT_QF_FC16: return MOPT_QM_DOUBLE_ROUND;
    case MOPT_QF_CONV16:
    case MOPT_QF_DW16: return MOPT_QM_MBQM_INT64;
    case MOPT_QF_CONV8:
    default: return MOPT_QM_MBQM_DOUBLE;
    }
}

mopt_status mopt_q_chan_from_scales(float in_s, float w_s, float out_s, mopt_q_method m,
                                    mopt_q_chan *ch, mopt_error *err) {
    memset(ch, 0, sizeof *ch);
    if (!isfinite(in_s) || !(in_s > 0.0f) || !isfinite(w_s) || !(w_s > 0.0f) ||
        !isfinite(out_s) || !(out_s > 0.0f))
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "scales (input %g, weights %g, output %g) must be finite and > 0",
                              (double)in_s, (double)w_s, (double)out_s);
    ch->dscale = (double)in_s * (double)w_s / (double)out_s;
    ch->fscale = in_s * w_s / out_s;
    mopt_rounding mode = m == MOPT_QM_MBQM_SINGLE ? MOPT_ROUND_SINGLE : MOPT_ROUND_DOUBLE;
    if (!isfinite(ch->dscale) ||
        mopt_quantize_multiplier_mode(ch->dscale, mode, &ch->mult, &ch->shift) != MOPT_OK)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "effective scale %g cannot be quantized",
                              ch->dscale);
    return MOPT_OK;
}

static int32_t sat32(double v) {
    if (v != v) return 0;
    if (v >= 2147483647.0) return INT32_MAX;
    if (v <= -2147483648.0) return INT32_MIN;
    return (int32_t)v;
}

int32_t mopt_q_requant(int64_t acc, const mopt_q_chan *ch, mopt_q_method m) {
    switch (m) {
    case MOPT_QM_MBQM_SINGLE: return mopt_mbqm_single(mopt_q_wrap32(acc), ch->mult, ch->shift);
    case MOPT_QM_FP32: {
        /* (float)acc rounds to nearest even like cvtdq2ps / cvtsi2ss. */
        float f = (float)acc * ch->fscale;
        return sat32(mopt_round_half_even((double)f));
    }
    case MOPT_QM_DOUBLE_ROUND: return sat32(round((double)acc * ch->dscale));
    case MOPT_QM_MBQM_INT64: return mopt_mbqm_int64(acc, ch->mult, ch->shift);
    case MOPT_QM_MBQM_DOUBLE:
    default: return mopt_mbqm_double(mopt_q_wrap32(acc), ch->mult, ch->shift);
    }
}

void mopt_q_dtype_range(mopt_dtype dt, int32_t *qmin, int32_t *qmax) {
    switch (dt) {
    case MOPT_INT16:
        *qmin = -32768;
        *qmax = 32767;
        break;
    case MOPT_UINT8:
        *qmin = 0;
        *qmax = 255;
        break;
    default:
        *qmin = -128;
        *qmax = 127;
        break;
    }
}

mopt_status mopt_q_tensor_params(const mopt_kernel_ctx *ctx, const mopt_tensor *t,
                                 const char *what, float *scale, int32_t *zp, mopt_error *err) {
    if (t->quant.n < 1 || !t->quant.scale || !t->quant.zero_point)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "%s '%s' is not quantized", what,
                            t->name);
    float s = t->quant.scale[0];
    int64_t z = t->quant.zero_point[0];
    if (!isfinite(s) || !(s > 0.0f))
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "%s '%s' has scale %g, must be > 0",
                            what, t->name, (double)s);
    int32_t qmin = 0, qmax = 0;
    mopt_q_dtype_range(t->dtype, &qmin, &qmax);
    if (t->dtype == MOPT_INT8 || t->dtype == MOPT_INT16 || t->dtype == MOPT_UINT8) {
        if (z < qmin || z > qmax)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                                "%s '%s' has zero point %lld outside [%d, %d]", what, t->name,
                                (long long)z, (int)qmin, (int)qmax);
    } else if (z < INT32_MIN || z > INT32_MAX) {
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "%s '%s' has zero point %lld", what,
                            t->name, (long long)z);
    }
    *scale = s;
    *zp = (int32_t)z;
    return MOPT_OK;
}

mopt_status mopt_q_act_range(const mopt_kernel_ctx *ctx, mopt_activation act,
                             const mopt_tensor *y, int32_t *lo, int32_t *hi, mopt_error *err) {
    if (act != MOPT_ACT_NONE && act != MOPT_ACT_RELU && act != MOPT_ACT_RELU6 &&
        act != MOPT_ACT_RELU_N1_TO_1)
        return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                            "fused activation %s is not supported on integer tensors",
                            mopt_activation_name(act));
    float s = 0.0f;
    int32_t zp = 0, qmin = 0, qmax = 0;
    mopt_status st = mopt_q_tensor_params(ctx, y, "output", &s, &zp, err);
    if (st) return st;
    mopt_q_dtype_range(y->dtype, &qmin, &qmax);
    if (mopt_activation_range_quantized(act, s, zp, qmin, qmax, lo, hi) != MOPT_OK)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "bad output quantization");
    if (*lo > *hi)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                            "fused %s gives an empty output range [%d, %d]",
                            mopt_activation_name(act), (int)*lo, (int)*hi);
    return MOPT_OK;
}

static bool all_of(const mopt_graph *g, const mopt_op *op, mopt_dtype dt) {
    for (int i = 0; i < op->n_inputs; i++)
        if (op->inputs[i] >= 0 && g->tensors[op->inputs[i]].dtype != dt) return false;
    for (int i = 0; i < op->n_outputs; i++)
        if (g->tensors[op->outputs[i]].dtype != dt) return false;
    return true;
}

bool mopt_q_match_all_int8(const mopt_graph *g, const mopt_op *op) {
    return all_of(g, op, MOPT_INT8);
}

bool mopt_q_match_all_int16(const mopt_graph *g, const mopt_op *op) {
    return all_of(g, op, MOPT_INT16);
}

bool mopt_q_match_all_int(const mopt_graph *g, const mopt_op *op) {
    return all_of(g, op, MOPT_INT8) || all_of(g, op, MOPT_INT16);
}

bool mopt_q_match_io_int(const mopt_graph *g, const mopt_op *op) {
    mopt_dtype x = g->tensors[op->inputs[0]].dtype, y = g->tensors[op->outputs[0]].dtype;
    return x == y && (x == MOPT_INT8 || x == MOPT_INT16);
}

/* ---- hybrid input quantization (portable_tensor_utils.cc) ---- */

/* Float -> int32 after rounding, never UB: values outside int32 saturate. */
static int32_t f2i(float v) {
    if (v != v) return 0;
    if (v >= 2147483647.0f) return INT32_MAX;
    if (v <= -2147483648.0f) return INT32_MIN;
    return (int32_t)v;
}

void mopt_q_symmetric_quantize_row(const float *x, size_t n, int8_t *q, float *scale) {
    float mn = n ? x[0] : 0.0f, mx = mn;
    for (size_t i = 1; i < n; i++) {
        /* std::minmax_element: strict comparisons, first minimum, last
         * maximum (only the values matter here). */
        if (x[i] < mn) mn = x[i];
        if (!(x[i] < mx)) mx = x[i];
    }
    float range = fabsf(mn) > fabsf(mx) ? fabsf(mn) : fabsf(mx);
    if (range == 0.0f) {
        memset(q, 0, n);
        *scale = 1.0f;
        return;
    }
    *scale = range / 127.0f;
    const float inv = 127.0f / range;
    for (size_t i = 0; i < n; i++) {
        int32_t v = f2i(roundf(x[i] * inv));
        q[i] = (int8_t)(v < -127 ? -127 : (v > 127 ? 127 : v));
    }
}

void mopt_q_asymmetric_quantize_row(const float *x, size_t n, int8_t *q, float *scale,
                                    int32_t *offset) {
    float mn = n ? x[0] : 0.0f, mx = mn;
    for (size_t i = 1; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (!(x[i] < mx)) mx = x[i];
    }
    const double rmin = (double)(mn < 0.0f ? mn : 0.0f);
    const double rmax = (double)(mx > 0.0f ? mx : 0.0f);
    if (rmin == rmax) {
        memset(q, 0, n);
        *scale = 1.0f;
        *offset = 0;
        return;
    }
    const double qmin = -128.0, qmax = 127.0;
    /* The pinned oracle's scale is binary32 arithmetic, (max - min) / 255
     * on floats, and the zero point is derived from that float scale in
     * double. This differs from the portable source (all double): with
     * [-0.5, 0.5] the double zero point is exactly -0.5 (-> -1) while the
     * oracle gives 0 (zero point -0.4999999 from the float scale), and an
     * input with both signs gets a scale one ulp away when max - min is
     * inexact in float. Both found against ai-edge-litert 2.3.0
     * (docs/INTEGER_KERNELS.md). */
    const double s = (double)(((float)rmax - (float)rmin) / 255.0f);
    const double zp_min = qmin - rmin / s, zp_max = qmax - rmax / s;
    const double err_min = fabs(qmin) + fabs(rmin / s), err_max = fabs(qmax) + fabs(rmax / s);
    const double zpd = err_min < err_max ? zp_min : zp_max;
    int32_t zp;
    if (zpd <= qmin)
        zp = -128;
    else if (zpd >= qmax)
        zp = 127;
    else
        zp = (int32_t)round(zpd);
    *scale = (float)s;
    *offset = zp;
    /* round(x / s) + zp, the product rounded before the offset is added
     * (the oracle quantizes 12.5 - 128 to -115 where the portable source's
     * round(zp + x / s) would give -116). */
    const float inv = 1.0f / *scale;
    for (size_t i = 0; i < n; i++) {
        int64_t v = (int64_t)f2i(roundf(x[i] * inv)) + zp;
        q[i] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
    }
}

/* ---- fast int8 paths ---- */

void mopt_q_finish_i8(void *arg, size_t row0, size_t rows, size_t col0, size_t cols,
                      const int32_t *acc, size_t acc_stride) {
    const mopt_q_out8 *o = arg;
    if (o->rq) {
        for (size_t r = 0; r < rows; r++)
            o->rqfn(cols, acc + r * acc_stride, o->rq, col0,
                    o->y + (row0 + r) * o->y_stride + col0);
        return;
    }
    /* The method switch is hoisted out of the element loop; each case is
     * the same expression mopt_q_requant evaluates. */
    for (size_t r = 0; r < rows; r++) {
        const int32_t *a = acc + r * acc_stride;
        int8_t *y = o->y + (row0 + r) * o->y_stride + col0;
        const mopt_q_chan *ch = o->ch + col0;
        for (size_t c = 0; c < cols; c++) {
            int32_t v;
            switch (o->method) {
            case MOPT_QM_MBQM_DOUBLE: v = mopt_mbqm_double(a[c], ch[c].mult, ch[c].shift); break;
            case MOPT_QM_DOUBLE_ROUND: v = sat32(round((double)a[c] * ch[c].dscale)); break;
            default: v = mopt_q_requant(a[c], &ch[c], o->method); break;
            }
            int64_t q = (int64_t)v + o->out_off;
            y[c] = (int8_t)(q > o->hi ? o->hi : (q < o->lo ? o->lo : (int32_t)q));
        }
    }
}

void mopt_q_fold_init(size_t n, size_t k, const int8_t *w, size_t stride_c, size_t stride_k,
                      const int64_t *bias, int32_t in_off, int u8_input, int32_t *init) {
    int64_t off = (int64_t)in_off - (u8_input ? 128 : 0);
    for (size_t c = 0; c < n; c++) {
        int64_t sw = 0;
        for (size_t i = 0; i < k; i++) sw += w[c * stride_c + i * stride_k];
        /* |bias| < 2^63 as int64 from int32; the product is < 2^32: the sum
         * is taken modulo 2^64 (unsigned) and wrapped to int32, the same
         * residue as the reference's int32 arithmetic. */
        init[c] = mopt_q_wrap32((int64_t)((uint64_t)bias[c] + (uint64_t)(off * sw)));
    }
}

int mopt_q_fastrq_init(mopt_q_fastrq *f, const mopt_q_chan *ch, size_t n, mopt_q_method m,
                       int32_t out_off, int32_t lo, int32_t hi) {
    memset(f, 0, sizeof *f);
    if (m != MOPT_QM_MBQM_DOUBLE && m != MOPT_QM_DOUBLE_ROUND) return 0;
    if (m == MOPT_QM_MBQM_DOUBLE)
        for (size_t c = 0; c < n; c++)
            if (ch[c].shift < -31 || ch[c].shift > 30) return 0;
    /* doubles first (alignment), then mult, left, right */
    char *mem = malloc(n * (sizeof(double) + 3 * sizeof(int32_t)) + 1);
    if (!mem) return -1;
    double *scale = (double *)(void *)mem;
    int32_t *mult = (int32_t *)(void *)(mem + n * sizeof(double));
    int32_t *left = mult + n, *right = left + n;
    for (size_t c = 0; c < n; c++) {
        scale[c] = ch[c].dscale;
        mult[c] = ch[c].mult;
        left[c] = ch[c].shift > 0 ? ch[c].shift : 0;
        right[c] = ch[c].shift > 0 ? 0 : -ch[c].shift;
    }
    f->mem = mem;
    f->rq = (mopt_qs8_rq){m == MOPT_QM_DOUBLE_ROUND ? MOPT_QS8_RQ_DROUND : MOPT_QS8_RQ_MBQM,
                          mult, left, right, scale, out_off, lo, hi};
    return 1;
}
