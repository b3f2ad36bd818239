/* q_activations.c - integer RELU, RELU6, LOGISTIC, TANH, HARD_SWISH.
 *
 * What LiteRT's reference resolver runs for each (activations.cc):
 *  - RELU / RELU6 (int8, int16): ReluX, which also rescales:
 *      y = clamp(out_zp + MBQM(x - in_zp, M), lo, hi), M from the binary32
 *      quotient in_scale / out_scale; lo = out_zp + round(0 / s),
 *      hi = out_zp + round(6 / s) (RELU6) or the type maximum.
 *  - LOGISTIC / TANH int8: a 256-entry table computed in binary32 at
 *    prepare (LUTPopulate): q -> round(f(in_s * (q - in_zp)) / out_s) + out_zp
 *    with f = 1 / (1 + expf(-x)) or tanhf(x). (The gemmlowp fixed-point path
 *    is only the "fixed point optimized" kernel's.)
 *  - LOGISTIC / TANH int16: reference_integer_ops::Logistic / Tanh, linear
 *    interpolation in TFLite's sigmoid table (sigmoid(i/24) in 0.16 fixed
 *    point), input rescaled to 1/(3*4096) units; zero points 0, output scale
 *    2^-15.
 *  - HARD_SWISH int8: reference_ops::HardSwish, 16-bit fixed point. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/q_ops.h"

typedef struct qact_state {
    int kind; /* op type */
    bool wide;
    size_t n;
    /* RELU */
    int32_t in_zp, out_zp, lo, hi;
    mopt_requant_params rq;
    /* int8 tables */
    int8_t lut[256];
    /* int16 LOGISTIC / TANH */
    int32_t in_mult, in_shift;
    /* HARD_SWISH */
    int16_t out_mult16, relu_mult16;
    int out_exp, relu_exp;
} qact_state;

/* TFLite's sigmoid_table_uint16: sigmoid(i / 24) in 0.16 fixed point for
 * i = 0..255 (the values of the reference table; they are not exactly the
 * rounded function values, so they are data, not computed). */
static const uint16_t sigmoid_u16[256] = {
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149, 40794,
    41432, 42064, 42688, 43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369, 47911, 48443,
    48964, 49475, 49975, 50464, 50942, 51409, 51865, 52311, 52745, 53169, 53581, 53983, 54374,
    54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433, 57724, 58007, 58280, 58544,
    58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110, 61279,
    61441, 61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886, 62990,
    63090, 63186, 63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835, 63903, 63968, 64030,
    64090, 64148, 64204, 64257, 64308, 64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652,
    64687, 64721, 64754, 64786, 64816, 64845, 64873, 64900, 64926, 64950, 64974, 64997, 65019,
    65039, 65060, 65079, 65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208, 65221, 65234,
    65246, 65258, 65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360,
    65367, 65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433,
    65438, 65442, 65445, 65449, 65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474, 65476,
    65479, 65481, 65483, 65485, 65488, 65489, 65491, 65493, 65495, 65497, 65498, 65500, 65501,
    65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513, 65514, 65515, 65516,
    65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524,
    65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529, 65529,
    65529, 65530, 65530, 65530, 65530, 65531, 65531, 65531, 65531, 65531, 65532, 65532, 65532,
    65532, 65532, 65532, 65533, 65533, 65533, 65533, 65533, 65533, 65533, 65533, 65534, 65534,
    65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65535};

static bool match_act(const mopt_graph *g, const mopt_op *op) {
    mopt_dtype x = g->tensors[op->inputs[0]].dtype, y = g->tensors[op->outputs[0]].dtype;
    if (x != y) return false;
    if (op->type == MOPT_OP_HARD_SWISH) return x == MOPT_INT8;
    return x == MOPT_INT8 || x == MOPT_INT16;
}

/* CheckedLog2: log2 via logf, rounded; true if within 1e-3 of an integer. */
static bool checked_log2(float x, int *out) {
    const float l = logf(x) * (1.0f / logf(2.0f));
    const float r = roundf(l);
    *out = (int)r;
    return fabsf(l - r) < 1e-3f;
}

static float sigmoidf_ref(float v) { return 1.0f / (1.0f + expf(-v)); }

/* LUTPopulate<int8_t>. */
static void lut_populate_i8(float in_s, int32_t in_zp, float out_s, int32_t out_zp,
                            float (*f)(float), int8_t *lut) {
    const float inv = 1.0f / out_s;
    for (int32_t v = -128; v <= 127; v++) {
        const float deq = in_s * (float)(v - in_zp);
        const float r = roundf(f(deq) * inv);
        const float qf = r + (float)out_zp;
        int32_t q = qf != qf ? 0 : (qf >= 2147483647.0f ? INT32_MAX : (qf <= -2147483648.0f ? INT32_MIN : (int32_t)qf));
        q = q < -128 ? -128 : (q > 127 ? 127 : q);
        lut[(uint8_t)(int8_t)v] = (int8_t)q;
    }
}

static int32_t trunc_i32(double d) {
    return d >= 2147483647.0 ? INT32_MAX : (d <= -2147483648.0 ? INT32_MIN : (int32_t)d);
}

/* DownScaleInt32ToInt16Multiplier. */
static int16_t down16(int32_t m) {
    if (m >= INT32_MAX - (1 << 15)) return INT16_MAX;
    return (int16_t)((m + (1 << 15)) >> 16);
}

static mopt_status qact_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                mopt_error *err) {
    qact_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    const mopt_tensor *x = mopt_ctx_tin(ctx, 0), *y = mopt_ctx_tout(ctx, 0);
    s->kind = ctx->op->type;
    s->wide = x->dtype == MOPT_INT16;
    s->n = mopt_numel(x);
    if (mopt_numel(y) != s->n)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "input and output sizes differ");
    float xs = 0.0f, ys = 0.0f;
    int32_t xz = 0, yz = 0;
    mopt_status st;
    if ((st = mopt_q_tensor_params(ctx, x, "input", &xs, &xz, err))) return st;
    if ((st = mopt_q_tensor_params(ctx, y, "output", &ys, &yz, err))) return st;
    s->in_zp = xz;
    s->out_zp = yz;
    int32_t qmin = 0, qmax = 0;
    mopt_q_dtype_range(x->dtype, &qmin, &qmax);
    switch (s->kind) {
    case MOPT_OP_RELU:
    case MOPT_OP_RELU6: {
        if (s->wide && (xz != 0 || yz != 0))
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                                "int16 zero points must be 0 (input %d, output %d)", (int)xz,
                                (int)yz);
        /* in_scale / out_scale is a binary32 quotient in the reference. */
        double real = (double)(xs / ys);
        mopt_error e;
        if (mopt_requant_params_from_real(real, ctx->rounding, &s->rq, &e) != MOPT_OK)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "%s", e.msg);
        int64_t lo = (int64_t)yz + trunc_i32(roundf(0.0f / ys));
        s->lo = lo < qmin ? qmin : (int32_t)(lo > qmax ? qmax : lo);
        s->hi = qmax;
        if (s->kind == MOPT_OP_RELU6) {
            int64_t hi = (int64_t)yz + trunc_i32(roundf(6.0f / ys));
            s->hi = hi > qmax ? qmax : (int32_t)(hi < qmin ? qmin : hi);
        }
        plan->name = s->kind == MOPT_OP_RELU ? (s->wide ? "relu_i16_ref" : "relu_i8_ref")
                                             : (s->wide ? "relu6_i16_ref" : "relu6_i8_ref");
        return MOPT_OK;
    }
    case MOPT_OP_LOGISTIC:
    case MOPT_OP_TANH: {
        bool logistic = s->kind == MOPT_OP_LOGISTIC;
        if (!s->wide) {
            if (logistic && !(ys == 1.0f / 256.0f))
                return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                                    "int8 LOGISTIC output scale must be 1/256 (has %g)",
                                    (double)ys);
            lut_populate_i8(xs, xz, ys, yz, logistic ? sigmoidf_ref : tanhf, s->lut);
            plan->name = logistic ? "logistic_i8_lut" : "tanh_i8_lut";
            return MOPT_OK;
        }
        if (xz != 0 || yz != 0)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                                "int16 zero points must be 0 (input %d, output %d)", (int)xz,
                                (int)yz);
        int l2 = 0;
        bool pot = checked_log2(xs, &l2);
        s->in_shift = 12 + l2;
        pot = pot && (s->in_shift == 0 || (!logistic && s->in_shift == 1));
        s->in_mult = 0;
        if (!pot) {
            double m = (double)xs * 4096.0 * 3.0;
            s->in_shift = 0;
            while (m <= 32767.0 / 2.0 && s->in_shift <= 30) {
                s->in_shift++;
                m *= 2.0;
            }
            s->in_mult = trunc_i32(m);
        }
        int ol2 = 0;
        if (!checked_log2(ys, &ol2) || ol2 != -15)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                                "int16 output scale must be 2^-15 (has %g)", (double)ys);
        if (s->in_mult == 0) { /* power-of-two case of the kernel */
            s->in_mult = 3 << s->in_shift;
            s->in_shift = 0;
        }
        plan->name = logistic ? "logistic_i16_ref" : "tanh_i16_ref";
        return MOPT_OK;
    }
    case MOPT_OP_HARD_SWISH: {
        const float hires = (1.0f / 128.0f) * xs;
        const float out_m = hires / ys;
        const float relu_m = hires / (3.0f / 32768.0f);
        int32_t m32 = 0;
        int e = 0;
        if (mopt_quantize_multiplier((double)out_m, &m32, &e) != MOPT_OK)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "bad scales");
        s->out_mult16 = down16(m32);
        s->out_exp = e;
        if (s->out_exp > 0)
            return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                                "input scale / output scale too large (%g / %g)", (double)xs,
                                (double)ys);
        if (mopt_quantize_multiplier((double)relu_m, &m32, &e) != MOPT_OK)
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "bad scales");
        s->relu_mult16 = down16(m32);
        s->relu_exp = e;
        plan->name = "hard_swish_i8_ref";
        return MOPT_OK;
    }
    default: break;
    }
    return mopt_op_fail(ctx, err, MOPT_ERR_INTERNAL, "not an activation");
}

/* gemmlowp 16-bit SaturatingRoundingDoublingHighMul. */
static int16_t srdhm16(int16_t a, int16_t b) {
    if (a == b && a == INT16_MIN) return INT16_MAX;
    int32_t ab = (int32_t)a * (int32_t)b;
    int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
    return (int16_t)((ab + nudge) / (1 << 15));
}

/* SQDMULH-like: truncating doubling high multiply. */
static int16_t sdhm16(int16_t a, int16_t b) {
    if (a == b && a == INT16_MIN) return INT16_MAX;
    return (int16_t)(((int32_t)a * (int32_t)b) / (1 << 15));
}

static int16_t rdbp16(int16_t x, int e) {
    const int32_t mask = (1 << e) - 1;
    const int32_t rem = (int32_t)((uint32_t)(int32_t)x & (uint32_t)mask);
    const int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    int32_t q = x >= 0 ? (int32_t)x >> e : -((-(int32_t)x + mask) >> e); /* floor */
    return (int16_t)(q + (rem > thr ? 1 : 0));
}

static int16_t sat_lshift16(int16_t v, int amount) {
    int64_t r = (int64_t)v * ((int64_t)1 << amount);
    return (int16_t)(r > INT16_MAX ? INT16_MAX : (r < INT16_MIN ? INT16_MIN : r));
}

static int8_t hard_swish1(const qact_state *s, int8_t xq) {
    const int16_t in = (int16_t)((int32_t)xq - s->in_zp);
    const int16_t hires = (int16_t)(in * 128);
    const int16_t pre_out = srdhm16(hires, s->out_mult16);
    int16_t r = hires;
    if (s->relu_exp > 0) r = sat_lshift16(r, s->relu_exp - 1);
    r = srdhm16(r, s->relu_mult16);
    if (s->relu_exp > 0) r = sat_lshift16(r, 1);
    if (s->relu_exp < 0) r = rdbp16(r, -s->relu_exp);
    r = (int16_t)(((int32_t)r + (1 << 15)) >> 1);
    const int16_t pre = sdhm16(r, pre_out);
    int16_t o = rdbp16(pre, -s->out_exp);
    o = (int16_t)((int32_t)o + s->out_zp);
    return (int8_t)(o > 127 ? 127 : (o < -128 ? -128 : o));
}

/* Arithmetic (floor) right shift without relying on implementation-defined
 * behaviour of >> on negative values. */
static inline int32_t asr32(int32_t v, int n) {
    return v >= 0 ? v >> n : -(int32_t)(((uint32_t)(-(int64_t)v) + ((1u << n) - 1)) >> n);
}

static int16_t logistic16(const qact_state *s, int16_t xq) {
    const int32_t round = s->in_shift > 0 ? 1 << (s->in_shift - 1) : 0;
    const int32_t in = asr32((int32_t)xq * s->in_mult + round, s->in_shift);
    const uint32_t a = (uint32_t)(in < 0 ? -in : in);
    const uint32_t uh = a >> 9;
    uint32_t res;
    if (uh >= 255) {
        res = 0x7FFFu << 10;
    } else {
        const uint32_t ua = sigmoid_u16[uh], ub = sigmoid_u16[uh + 1], ut = a & 0x1ff;
        res = (ua << 9) + ut * (ub - ua);
    }
    res = in >= 0 ? res + (1u << 9) : (1u << 25) - res + (1u << 9) - 1;
    res >>= 10;
    return (int16_t)(int32_t)res;
}

static int16_t tanh16(const qact_state *s, int16_t xq) {
    const int32_t round = s->in_shift > 0 ? 1 << (s->in_shift - 1) : 0;
    const int32_t in = asr32((int32_t)xq * s->in_mult + round, s->in_shift);
    const uint32_t a = (uint32_t)(in < 0 ? -in : in);
    const uint32_t uh = a >> 8;
    int32_t res;
    if (uh >= 255) {
        res = 0xFFFF << 8;
    } else {
        const uint32_t ua = sigmoid_u16[uh], ub = sigmoid_u16[uh + 1];
        const uint32_t ut = a & 0xFF;
        res = (int32_t)((ua << 8) + ut * (ub - ua));
    }
    res = in >= 0 ? res - (1 << 23) + (1 << 7) : -res + (1 << 23) + (1 << 7) - 1;
    res = asr32(res, 8);
    return (int16_t)res;
}

static mopt_status qact_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                             mopt_error *err) {
    (void)scratch;
    (void)err;
    const qact_state *s = state;
    const void *xv = mopt_ctx_in(ctx, 0);
    void *yv = mopt_ctx_out(ctx, 0);
    switch (s->kind) {
    case MOPT_OP_RELU:
    case MOPT_OP_RELU6:
        for (size_t i = 0; i < s->n; i++) {
            int32_t v = s->wide ? ((const int16_t *)xv)[i] : ((const int8_t *)xv)[i];
            int64_t o = (int64_t)s->out_zp + mopt_requant(v - s->in_zp, &s->rq);
            int32_t r = o < s->lo ? s->lo : (o > s->hi ? s->hi : (int32_t)o);
            if (s->wide)
                ((int16_t *)yv)[i] = (int16_t)r;
            else
                ((int8_t *)yv)[i] = (int8_t)r;
        }
        break;
    case MOPT_OP_LOGISTIC:
    case MOPT_OP_TANH:
        if (!s->wide) {
            const int8_t *x = xv;
            int8_t *y = yv;
            for (size_t i = 0; i < s->n; i++) y[i] = s->lut[(uint8_t)x[i]];
        } else {
            const int16_t *x = xv;
            int16_t *y = yv;
            for (size_t i = 0; i < s->n; i++)
                y[i] = s->kind == MOPT_OP_LOGISTIC ? logistic16(s, x[i]) : tanh16(s, x[i]);
        }
        break;
    default: { /* HARD_SWISH */
        const int8_t *x = xv;
        int8_t *y = yv;
        for (size_t i = 0; i < s->n; i++) y[i] = hard_swish1(s, x[i]);
        break;
    }
    }
    return MOPT_OK;
}

const mopt_kernel mopt_q_activation_kernels[] = {
    {MOPT_OP_RELU, "relu_int_ref", match_act, qact_prepare, qact_eval, free, 0},
    {MOPT_OP_RELU6, "relu6_int_ref", match_act, qact_prepare, qact_eval, free, 0},
    {MOPT_OP_LOGISTIC, "logistic_int_ref", match_act, qact_prepare, qact_eval, free, 0},
    {MOPT_OP_TANH, "tanh_int_ref", match_act, qact_prepare, qact_eval, free, 0},
    {MOPT_OP_HARD_SWISH, "hard_swish_i8_ref", match_act, qact_prepare, qact_eval, free, 0},
};
const size_t mopt_q_activation_kernels_n =
    sizeof mopt_q_activation_kernels / sizeof mopt_q_activation_kernels[0];
