/* q_softmax.c - integer SOFTMAX over the last dimension.
 *
 * int8 input (int8 or int16 output): reference_ops::Softmax, gemmlowp fixed
 * point. diff = x - max(row) is scaled to Q5.26 by the multiplier of
 * PreprocessSoftmaxScaling(beta, input_scale, 5); diffs below diff_min
 * (-CalculateInputRadius(5, shift)) contribute nothing and output the type's
 * minimum; exp() values (Q0.31) are summed in Q12.19, inverted with
 * GetReciprocal, multiplied back and rounded to the output type, offset by
 * its minimum (output zero point -128 / -32768, scale 1/256 / 1/32768).
 *
 * int16: reference_ops::SoftmaxInt16 with two 513-entry interpolated tables
 * (exp on [-10, 0] and 1/(1+x) on [0, 1]) built as LUTPopulate<int16_t>
 * builds them, in double. */
#include <math.h>
#include <stdlib.h>

#include "ops/q_ops.h"

typedef struct qsm_state {
    mopt_dtype in_t, out_t;
    size_t rows, depth;
    int32_t mult;
    int shift;
    int32_t diff_min;
    bool single; /* MOPT_ROUND_SINGLE: the TFLITE_SINGLE_ROUNDING build */
    int16_t exp_lut[513], inv_lut[513];
} qsm_state;

static bool match_qsm(const mopt_graph *g, const mopt_op *op) {
    mopt_dtype x = g->tensors[op->inputs[0]].dtype, y = g->tensors[op->outputs[0]].dtype;
    return (x == MOPT_INT8 && (y == MOPT_INT8 || y == MOPT_INT16)) ||
           (x == MOPT_INT16 && y == MOPT_INT16);
}

/* LUTPopulateInt16<double>: 512 segments over the input range, each entry
 * biased by half the midpoint error of linear interpolation. */
static void lut_populate_i16(double in_scale, int32_t in_zp, double out_scale, int32_t out_zp,
                             double (*f)(double), int16_t *lut) {
    const double in_min = in_scale * (double)(-32768 - in_zp);
    const double in_max = in_scale * (double)(32767 - in_zp);
    const double out_min = out_scale * (double)(-32768 - out_zp);
    const double out_max = out_scale * (double)(32767 - out_zp);
    const int steps = 512;
    const double step = (in_max - in_min) / steps, half = step / 2;
    const double inv = 65536.0 / (out_max - out_min);
    for (int i = 0; i < steps; i++) {
        double v = f(in_min + i * step);
        double vm = f(in_min + i * step + half);
        double vn = f(in_min + (i + 1) * step);
        double sample = round(v * inv);
        double interp = round((vn * inv + round(v * inv)) / 2);
        double mid = round(vm * inv);
        double bias = round((interp - mid) / 2);
        double r = sample - bias;
        lut[i] = (int16_t)(r < -32768.0 ? -32768.0 : (r > 32767.0 ? 32767.0 : r));
    }
    double r = round(f(in_max) * inv);
    lut[steps] = (int16_t)(r < -32768.0 ? -32768.0 : (r > 32767.0 ? 32767.0 : r));
}

int16_t mopt_q_lut16(int16_t v, const int16_t *lut) {
    const int idx = 256 + (v >= 0 ? v / 128 : -((-v + 127) / 128)); /* v >> 7, floor */
    const int32_t off = (int32_t)((uint32_t)(int32_t)v & 0x7fu);
    const int32_t base = lut[idx];
    const int32_t slope = (int32_t)lut[idx + 1] - (int32_t)lut[idx];
    /* (slope * off + 64) >> 7 with an arithmetic shift (floor). */
    int32_t t = slope * off + 64;
    int32_t delta = t >= 0 ? t / 128 : -((-t + 127) / 128);
    return (int16_t)(base + delta);
}

static double f_exp(double x) { return exp(x); }
static double f_inv1p(double x) { return 1.0 / (1.0 + x); }

static mopt_status qsm_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                               mopt_error *err) {
    qsm_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    const mopt_tensor *x = mopt_ctx_tin(ctx, 0), *y = mopt_ctx_tout(ctx, 0);
    if (x->rank < 1)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "input must have at least 1 dimension");
    s->in_t = x->dtype;
    s->single = ctx->rounding == MOPT_ROUND_SINGLE;
    s->out_t = y->dtype;
    s->depth = (size_t)x->dims[x->rank - 1];
    s->rows = s->depth ? mopt_numel(x) / s->depth : 0;
    float xs = 0.0f, ys = 0.0f;
    int32_t xz = 0, yz = 0;
    mopt_status st;
    if ((st = mopt_q_tensor_params(ctx, x, "input", &xs, &xz, err))) return st;
    if ((st = mopt_q_tensor_params(ctx, y, "output", &ys, &yz, err))) return st;
    const double beta = (double)ctx->op->p.softmax.beta;
    if (s->out_t == MOPT_INT8 && (yz != -128 || fabsf(ys - 1.0f / 256) > 0.001f / 256))
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                            "int8 output must have scale 1/256 and zero point -128 (has %g, %d)",
                            (double)ys, (int)yz);
    if (s->out_t == MOPT_INT16 && (yz != 0 || fabsf(ys - 1.0f / 32768) > 0.001f / 32768))
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                            "int16 output must have scale 1/32768 and zero point 0 (has %g, %d)",
                            (double)ys, (int)yz);
    if (s->in_t == MOPT_INT8) {
        /* The reference's input zero point drops out of x - max(row). */
        mopt_rounding r = ctx->rounding == MOPT_ROUND_SINGLE ? MOPT_ROUND_SINGLE : MOPT_ROUND_DOUBLE;
        if (mopt_preprocess_softmax_scaling(beta, (double)xs, 5, r, &s->mult, &s->shift) !=
            MOPT_OK)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                                "beta %g x input scale %g cannot be represented", beta, (double)xs);
        s->diff_min = -mopt_calculate_input_radius(5, s->shift, 31);
        plan->name = s->out_t == MOPT_INT8 ? "softmax_i8_ref" : "softmax_i8_i16_ref";
    } else {
        if (xz != 0)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                                "int16 input zero point must be 0 (has %d)", (int)xz);
        lut_populate_i16(10.0 / 65535.0, 32767, 2.0 / 65535.0, 0, f_exp, s->exp_lut);
        lut_populate_i16(1.0 / 65535.0, -32768, 2.0 / 65535.0, 0, f_inv1p, s->inv_lut);
        /* input_scale * beta in binary32, as the kernel's float members. */
        double m = (double)(xs * (float)beta) / (10.0 / 65535.0);
        if (mopt_quantize_multiplier(m, &s->mult, &s->shift) != MOPT_OK)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "bad input scale %g", (double)xs);
        plan->name = "softmax_i16_ref";
    }
    return MOPT_OK;
}

static int32_t mbqm(const qsm_state *s, int32_t x) {
    return s->single ? mopt_mbqm_single(x, s->mult, s->shift) : mopt_mbqm_double(x, s->mult, s->shift);
}

static void softmax_i8(const qsm_state *s, const int8_t *x, void *yv) {
    const bool out16 = s->out_t == MOPT_INT16;
    const int32_t omin = out16 ? -32768 : -128, omax = out16 ? 32767 : 127;
    const int out_bits = out16 ? 16 : 8;
    for (size_t r = 0; r < s->rows; r++) {
        const int8_t *xr = x + r * s->depth;
        int32_t mx = -128;
        for (size_t c = 0; c < s->depth; c++)
            if (xr[c] > mx) mx = xr[c];
        int32_t sum = 0; /* Q12.19 */
        for (size_t c = 0; c < s->depth; c++) {
            int32_t d = (int32_t)xr[c] - mx;
            if (d >= s->diff_min) {
                int32_t sd = mbqm(s, d);
                int32_t e = mopt_fx_exp_on_negative_values(sd, 5);
                sum = (int32_t)((uint32_t)sum + (uint32_t)mopt_fx_rescale(e, 0, 12));
            }
        }
        int nbits = 0;
        int32_t scale = mopt_fx_get_reciprocal(sum, 12, &nbits);
        int exponent = nbits + 31 - out_bits;
        if (exponent < 0) exponent = 0;
        if (exponent > 31) exponent = 31;
        for (size_t c = 0; c < s->depth; c++) {
            int32_t d = (int32_t)xr[c] - mx;
            int32_t v = omin;
            if (d >= s->diff_min) {
                int32_t sd = mbqm(s, d);
                int32_t e = mopt_fx_exp_on_negative_values(sd, 5);
                int32_t u = mopt_fx_rounding_divide_by_pot(mopt_fx_srdhm(scale, e), exponent);
                int64_t o = (int64_t)u + omin;
                v = (int32_t)(o > omax ? omax : (o < omin ? omin : o));
            }
            if (out16)
                ((int16_t *)yv)[r * s->depth + c] = (int16_t)v;
            else
                ((int8_t *)yv)[r * s->depth + c] = (int8_t)v;
        }
    }
}

static void softmax_i16(const qsm_state *s, const int16_t *x, int16_t *y) {
    for (size_t r = 0; r < s->rows; r++) {
        const int16_t *xr = x + r * s->depth;
        int16_t *yr = y + r * s->depth;
        int32_t mx = -32768;
        for (size_t c = 0; c < s->depth; c++)
            if (xr[c] > mx) mx = xr[c];
        int32_t sum = 0; /* Q16.15 */
        for (size_t c = 0; c < s->depth; c++) {
            int32_t d = (int32_t)xr[c] - mx;
            int32_t sd = mbqm(s, d) + 32767;
            int16_t sat = (int16_t)(sd < -32768 ? -32768 : (sd > 32767 ? 32767 : sd));
            yr[c] = mopt_q_lut16(sat, s->exp_lut);
            sum = (int32_t)((uint32_t)sum + (uint32_t)(int32_t)yr[c]);
        }
        int hp1 = mopt_count_leading_zeros32((uint32_t)sum);
        /* ((sum << (hp1 - 1)) + 2^13) >> 14 in int64 (hp1 >= 1 as sum > 0). */
        int64_t sh = hp1 >= 1 ? ((int64_t)sum * ((int64_t)1 << (hp1 - 1))) : (int64_t)sum / 2;
        int64_t t = sh + (1 << 13);
        int32_t shifted = (int32_t)(t >= 0 ? t >> 14 : -((-t + 16383) >> 14));
        int32_t sym = shifted - ((1 << 15) + (1 << 16));
        int16_t sat = (int16_t)(sym < -32768 ? -32768 : (sym > 32767 ? 32767 : sym));
        int32_t recip = mopt_q_lut16(sat, s->inv_lut);
        int rs = 31 - hp1;
        for (size_t c = 0; c < s->depth; c++) {
            int64_t p = (int64_t)yr[c] * recip;
            int32_t res;
            if (rs >= 1) {
                int64_t q = p + ((int64_t)1 << (rs - 1));
                res = (int32_t)(q >= 0 ? q >> rs : -((-q + ((int64_t)1 << rs) - 1) >> rs));
            } else {
                res = (int32_t)p;
            }
            yr[c] = (int16_t)(res < 0 ? 0 : (res > 32767 ? 32767 : res));
        }
    }
}

static mopt_status qsm_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                            mopt_error *err) {
    (void)scratch;
    (void)err;
    const qsm_state *s = state;
    if (s->in_t == MOPT_INT8)
        softmax_i8(s, mopt_ctx_in(ctx, 0), mopt_ctx_out(ctx, 0));
    else
        softmax_i16(s, mopt_ctx_in(ctx, 0), mopt_ctx_out(ctx, 0));
    return MOPT_OK;
}

const mopt_kernel mopt_q_softmax_kernels[] = {
    {MOPT_OP_SOFTMAX, "softmax_int_ref", match_qsm, qsm_prepare, qsm_eval, free, 0},
};
const size_t mopt_q_softmax_kernels_n =
    sizeof mopt_q_softmax_kernels / sizeof mopt_q_softmax_kernels[0];
