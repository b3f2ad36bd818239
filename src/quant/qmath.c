/* qmath.c - integer quantization arithmetic (see include/mopt/qmath.h and
 * docs/QUANT_ARITHMETIC.md).
 *
 * Written from the published behaviour of TFLite (quantization_util.cc,
 * common.h, kernel_util.cc, reference/quantize.h), gemmlowp fixedpoint.h,
 * XNNPACK's fp32 requantization and the TF 2.x converter
 * (quantization_utils.cc DownCastScale, QuantizeLegacy,
 * SymmetricBiasQuantize). Bit-exactness is the point, so every
 * intermediate has the width and type the original gives it; comments say
 * which.
 *
 * No undefined or implementation-defined behaviour is relied on: signed
 * overflow that the originals leave to the hardware is done in unsigned
 * arithmetic (two's-complement wrap), right shifts of negative values use
 * floor_shift(), narrowing conversions use wrap32()/wrap64().
 */
#include "mopt/qmath.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Contracting a*b+c into an FMA would change results; GCC in ISO C mode
 * does not contract, clang needs to be told. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ------------------------------------------------------------------------
 * Integer helpers
 * ------------------------------------------------------------------------ */

/* Value of u modulo 2^32 as int32_t (two's complement), portably. */
static int32_t wrap32u(uint32_t u) {
    if (u <= (uint32_t)INT32_MAX) return (int32_t)u;
    return (int32_t)(u - 2147483648u) - INT32_MAX - 1;
}

static int32_t wrap32(int64_t v) { return wrap32u((uint32_t)(uint64_t)v); }

static int64_t wrap64u(uint64_t u) {
    if (u <= (uint64_t)INT64_MAX) return (int64_t)u;
    return (int64_t)(u - 9223372036854775808u) - INT64_MAX - 1;
}

/* floor(v / 2^s) for s in [0, 63]: an arithmetic right shift without the
 * implementation-defined >> of a negative value. */
static int64_t floor_shift(int64_t v, int s) {
    if (s <= 0) return v;
    if (s > 63) s = 63;
    if (v >= 0) return v >> s;
    return ~((~v) >> s); /* ~v = -v-1 >= 0 */
}

static int32_t add_wrap(int32_t a, int32_t b) { return wrap32u((uint32_t)a + (uint32_t)b); }
static int32_t sub_wrap(int32_t a, int32_t b) { return wrap32u((uint32_t)a - (uint32_t)b); }
static int32_t neg_wrap(int32_t a) { return wrap32u(0u - (uint32_t)a); }

/* x * 2^s modulo 2^32 (gemmlowp ShiftLeft / TFLite x * (1 << left_shift)). */
static int32_t shl_wrap(int32_t x, int s) {
    if (s <= 0) return x;
    if (s >= 32) return 0;
    return wrap32u((uint32_t)x << s);
}

static int32_t sat32_from_double(double r) {
    if (isnan(r)) return 0;
    if (r >= 2147483647.0) return INT32_MAX;
    if (r <= -2147483648.0) return INT32_MIN;
    return (int32_t)r;
}

static int64_t sat64_from_double(double r) {
    if (isnan(r)) return 0;
    /* 2^63 is exactly representable; anything >= it saturates. */
    if (r >= 9223372036854775808.0) return INT64_MAX;
    if (r <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)r;
}

int mopt_count_leading_zeros32(uint32_t x) {
    if (x == 0) return 32;
    int n = 0;
    while (!(x & 0x80000000u)) {
        x <<= 1;
        n++;
    }
    return n;
}

/* ------------------------------------------------------------------------
 * Rounding and float16
 * ------------------------------------------------------------------------ */

double mopt_round_half_away(double x) {
    /* C's round() is exactly std::round: halfway cases away from zero,
     * without the floor(x + 0.5) error at 0.49999999999999994. */
    return round(x);
}

double mopt_round_half_even(double x) {
    if (!isfinite(x)) return x;
    if (fabs(x) >= 4503599627370496.0) return x; /* >= 2^52: already integral */
    double r = floor(x);
    double d = x - r; /* exact: r and x are within 1 of each other */
    if (d > 0.5 || (d == 0.5 && fmod(r, 2.0) != 0.0)) r += 1.0;
    return copysign(r, x); /* keep the sign of zero, as nearbyint does */
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float mopt_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    if (exp == 0x1F) /* inf / NaN: keep the payload */
        return f32_from_bits(sign | 0x7F800000u | (man << 13));
    if (exp != 0) /* normal: rebias 15 -> 127 */
        return f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
    if (man == 0) return f32_from_bits(sign);
    /* subnormal man * 2^-24 with its top bit at position p (0..9): a float
     * normal 2^(p-24) * (man / 2^p) */
    int p = 9;
    while (!(man & (1u << p))) p--;
    const uint32_t fexp = (uint32_t)(p - 24 + 127);
    return f32_from_bits(sign | (fexp << 23) | ((man << (23 - p)) & 0x7FFFFFu));
}

uint16_t mopt_float_to_half(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint16_t)(sign | 0x7E00u); /* NaN */
    uint32_t e = a >> 23;  /* biased float exponent */
    uint32_t m = a & 0x7FFFFFu;
    if (e >= 113) {        /* half normal range or above (unbiased >= -14) */
        if (e >= 143) return (uint16_t)(sign | 0x7C00u); /* >= 2^16: inf */
        uint32_t r = ((e - 112u) << 10) | (m >> 13);
        uint32_t rest = m & 0x1FFFu;
        /* Round to nearest even; a carry out of the mantissa bumps the
         * exponent, and past 0x7BFF it lands exactly on inf (0x7C00). */
        if (rest > 0x1000u || (rest == 0x1000u && (r & 1u))) r++;
        if (r > 0x7C00u) r = 0x7C00u;
        return (uint16_t)(sign | r);
    }
    /* Half subnormal or zero: units of 2^-24. The float is (m | 1<<23) *
     * 2^(e-150) for e >= 1, so the count of units is that >> (126 - e). */
    if (e == 0) return sign; /* float subnormal: < 2^-126, rounds to 0 */
    uint32_t full = m | 0x800000u;
    int s = 126 - (int)e; /* >= 14 */
    if (s > 24) return sign; /* < half a unit */
    uint32_t q = full >> s;
    uint32_t rem = full & ((1u << s) - 1u);
    uint32_t half = 1u << (s - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q); /* q == 0x400 is the smallest normal */
}

uint16_t mopt_float_to_half_clamped(float f) {
    /* std::min(std::max(f, -65504), 65504): NaN passes through. */
    if (f < -65504.0f) f = -65504.0f;
    if (f > 65504.0f) f = 65504.0f;
    return mopt_float_to_half(f);
}

/* ------------------------------------------------------------------------
 * Multipliers
 * ------------------------------------------------------------------------ */

static mopt_status quantize_multiplier_impl(double m, int single, int32_t *M, int *shift) {
    *M = 0;
    *shift = 0;
    if (!isfinite(m)) return MOPT_ERR_ARG;
    if (single && m < 0) return MOPT_ERR_ARG;
    if (m == 0.0) return MOPT_OK;
    int e = 0;
    const double q = frexp(m, &e); /* m = q * 2^e, |q| in [0.5, 1) */
    /* q * 2^31 is exact (power-of-two scaling); |result| <= 2^31. */
    int64_t q_fixed = (int64_t)round(q * 2147483648.0);
    if (q_fixed == ((int64_t)1 << 31)) { /* q rounded up to 1.0 */
        q_fixed /= 2;
        e++;
    }
    if (e < -31) { /* would shift every bit out: flush to zero */
        e = 0;
        q_fixed = 0;
    }
    if (single && e > 30) { /* single-rounding MBQM cannot shift left more */
        e = 30;
        q_fixed = INT32_MAX;
    }
    *M = (int32_t)q_fixed;
    *shift = e;
    return MOPT_OK;
}

mopt_status mopt_quantize_multiplier(double m, int32_t *M, int *shift) {
    return quantize_multiplier_impl(m, 0, M, shift);
}

mopt_status mopt_quantize_multiplier_mode(double m, mopt_rounding mode, int32_t *M, int *shift) {
    return quantize_multiplier_impl(m, mode == MOPT_ROUND_SINGLE, M, shift);
}

mopt_status mopt_quantize_multiplier_smaller_than_one(double m, int32_t *M, int *left_shift) {
    *M = 0;
    *left_shift = 0;
    if (!(m > 0.0 && m < 1.0)) return MOPT_ERR_ARG;
    int s = 0;
    mopt_status st = quantize_multiplier_impl(m, 0, M, &s);
    /* m just below 1 rounds to exactly 1.0 (shift 1): TFLite's CHECK fails. */
    if (st != MOPT_OK || s > 0) {
        *M = 0;
        return MOPT_ERR_ARG;
    }
    *left_shift = s;
    return MOPT_OK;
}

mopt_status mopt_quantize_multiplier_greater_than_one(double m, int32_t *M, int *left_shift) {
    *M = 0;
    *left_shift = 0;
    if (!(m > 1.0) || !isfinite(m)) return MOPT_ERR_ARG;
    return quantize_multiplier_impl(m, 0, M, left_shift); /* shift >= 1 */
}

double mopt_multiplier_to_double(int32_t M, int shift) {
    return ldexp((double)M, shift - 31);
}

/* ------------------------------------------------------------------------
 * Fixed-point primitives (gemmlowp)
 * ------------------------------------------------------------------------ */

int32_t mopt_fx_srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    /* C division truncates toward zero, as in gemmlowp; the quotient fits
     * int32 once the single overflowing input pair is excluded. */
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

int32_t mopt_fx_rounding_divide_by_pot(int32_t x, int exponent) {
    if (exponent <= 0) return x;
    if (exponent > 62) return 0; /* |x| / 2^63 < 2^-32: rounds to 0 */
    /* gemmlowp: (x >> e) + (remainder > threshold), threshold =
     * (mask >> 1) + (x < 0); in 64 bits this is also exact for e >= 32. */
    const int64_t v = x;
    const int64_t mask = ((int64_t)1 << exponent) - 1;
    const int64_t q = floor_shift(v, exponent);
    const int64_t rem = v - q * ((int64_t)1 << exponent); /* = v & mask, in [0, mask] */
    const int64_t threshold = (mask >> 1) + (v < 0 ? 1 : 0);
    return (int32_t)(q + (rem > threshold ? 1 : 0));
}

int32_t mopt_fx_sat_rounding_mul_by_pot(int32_t x, int exponent) {
    if (exponent == 0) return x;
    if (exponent < 0) {
        /* -INT_MIN would overflow; any exponent below -62 gives 0 anyway. */
        return mopt_fx_rounding_divide_by_pot(x, exponent < -62 ? 63 : -exponent);
    }
    if (exponent >= 31) /* only 0 survives unsaturated */
        return x > 0 ? INT32_MAX : (x < 0 ? INT32_MIN : 0);
    const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return shl_wrap(x, exponent); /* in range: no wrap happens */
}

int32_t mopt_fx_rounding_half_sum(int32_t a, int32_t b) {
    const int64_t sum = (int64_t)a + (int64_t)b;
    const int64_t sign = sum >= 0 ? 1 : -1;
    return (int32_t)((sum + sign) / 2); /* truncating division, as gemmlowp */
}

int32_t mopt_fx_rescale(int32_t x, int src_integer_bits, int dst_integer_bits) {
    return mopt_fx_sat_rounding_mul_by_pot(x, src_integer_bits - dst_integer_bits);
}

/* Q0.31 constants of gemmlowp (each the rounded value of the real noted). */
#define FX_ONE_Q0 INT32_MAX                     /* "1" in Q0.31 */
#define FX_EXP_MINUS_ONE_EIGHTH 1895147668      /* exp(-1/8) */
#define FX_ONE_THIRD 715827883                  /* 1/3 */
#define FX_48_OVER_17_Q2 1515870810             /* 48/17 in Q2.29 */
#define FX_NEG_32_OVER_17_Q2 (-1010580540)      /* -32/17 in Q2.29 */
#define FX_ONE_Q2 ((int32_t)1 << 29)            /* 1 in Q2.29 */

int32_t mopt_fx_exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a) {
    /* Taylor expansion of exp around -1/8 in x = a + 1/8 (1/8 = 2^28 in
     * Q0.31): exp(a) = e^(-1/8) * (1 + x + x^2/2 + x^3/6 + x^4/24). */
    const int32_t x = add_wrap(a, (int32_t)1 << 28);
    const int32_t x2 = mopt_fx_srdhm(x, x);
    const int32_t x3 = mopt_fx_srdhm(x2, x);
    const int32_t x4 = mopt_fx_srdhm(x2, x2);
    const int32_t x4_over_4 = mopt_fx_rounding_divide_by_pot(x4, 2);
    const int32_t poly = mopt_fx_rounding_divide_by_pot(
        add_wrap(mopt_fx_srdhm(add_wrap(x4_over_4, x3), FX_ONE_THIRD), x2), 1);
    return add_wrap(FX_EXP_MINUS_ONE_EIGHTH,
                    mopt_fx_srdhm(FX_EXP_MINUS_ONE_EIGHTH, add_wrap(x, poly)));
}

int32_t mopt_fx_exp_on_negative_values(int32_t a, int integer_bits) {
    if (integer_bits < 0) integer_bits = 0;
    if (integer_bits > 29) integer_bits = 29; /* 1/4 must be representable */
    const int frac_bits = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (frac_bits - 2);
    const int32_t mask = one_quarter - 1;
    /* a = (a mod 1/4 - 1/4) - remainder, remainder a non-negative multiple
     * of 1/4 whose bits select the exp(-2^k) factors below. */
    const int32_t a_mod_quarter_minus_one_quarter = sub_wrap((int32_t)(a & mask), one_quarter);
    int32_t result = mopt_fx_exp_on_interval_between_negative_one_quarter_and_0_excl(
        mopt_fx_rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0));
    const int32_t remainder = sub_wrap(a_mod_quarter_minus_one_quarter, a);

    /* exp(-2^k) in Q0.31 for k = -2 .. 4 */
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308,
                                      39332535,   720401,     242};
    for (int k = -2; k <= 4; k++) {
        if (integer_bits > k) {
            const int bit = frac_bits + k; /* <= 30 */
            if ((uint32_t)remainder & ((uint32_t)1 << bit))
                result = mopt_fx_srdhm(result, barrel[k + 2]);
        }
    }
    if (integer_bits > 5) { /* below -32 the result is exactly 0 */
        const int32_t clamp = -((int32_t)1 << (36 - integer_bits));
        if (a < clamp) result = 0;
    }
    if (a == 0) result = FX_ONE_Q0;
    return result;
}

/* Newton-Raphson iterations shared by the two divisions below: returns x
 * ~= 1 / half_denominator in Q2.29, for half_denominator in [1/2, 1). */
static int32_t fx_newton_reciprocal_q2(int32_t half_denominator) {
    int32_t x = add_wrap(FX_48_OVER_17_Q2, mopt_fx_srdhm(half_denominator, FX_NEG_32_OVER_17_Q2));
    for (int i = 0; i < 3; i++) {
        const int32_t half_denominator_times_x = mopt_fx_srdhm(half_denominator, x);
        const int32_t one_minus = sub_wrap(FX_ONE_Q2, half_denominator_times_x);
        /* x * one_minus is Q4.27; rescale to Q2.29 */
        x = add_wrap(x, mopt_fx_rescale(mopt_fx_srdhm(x, one_minus), 4, 2));
    }
    return x;
}

int32_t mopt_fx_one_over_one_plus_x_for_x_in_0_1(int32_t a) {
    const int32_t half_denominator = mopt_fx_rounding_half_sum(a, FX_ONE_Q0);
    const int32_t x = fx_newton_reciprocal_q2(half_denominator);
    /* 1/(1+a) = x/2: reinterpret Q2.29 as Q1.30 (exact halving), then
     * rescale Q1 -> Q0. */
    return mopt_fx_rescale(x, 1, 0);
}

int32_t mopt_fx_one_minus_x_over_one_plus_x_for_x_in_0_1(int32_t a) {
    const int32_t half_denominator = mopt_fx_rounding_half_sum(a, FX_ONE_Q0);
    const int32_t x = fx_newton_reciprocal_q2(half_denominator);
    /* (1-a)/(1+a) = 2/(1+a) - 1 = x - 1 (Q2.29), rescaled to Q0.31 */
    return mopt_fx_rescale(sub_wrap(x, FX_ONE_Q2), 2, 0);
}

int32_t mopt_fx_tanh(int32_t a, int integer_bits) {
    if (integer_bits < 0) integer_bits = 0;
    if (integer_bits > 28) integer_bits = 28; /* 2a needs one more bit */
    if (a == 0) return 0;
    const int negative = a < 0;
    const int32_t n = negative ? a : neg_wrap(a); /* -|a| */
    /* -tanh(n) for n < 0: (1 - e^(2n)) / (1 + e^(2n)); 2n is the same raw
     * value read with one more integer bit. */
    const int32_t t = mopt_fx_one_minus_x_over_one_plus_x_for_x_in_0_1(
        mopt_fx_exp_on_negative_values(n, integer_bits + 1));
    return negative ? neg_wrap(t) : t;
}

int32_t mopt_fx_logistic(int32_t a, int integer_bits) {
    if (integer_bits < 0) integer_bits = 0;
    if (integer_bits > 29) integer_bits = 29;
    if (a == 0) return (int32_t)1 << 30; /* 1/2 */
    const int positive = a > 0;
    const int32_t abs_input = positive ? a : neg_wrap(a);
    /* logistic(|a|) = 1 / (1 + exp(-|a|)) */
    const int32_t r = mopt_fx_one_over_one_plus_x_for_x_in_0_1(
        mopt_fx_exp_on_negative_values(neg_wrap(abs_input), integer_bits));
    return positive ? r : sub_wrap(FX_ONE_Q0, r);
}

int32_t mopt_fx_get_reciprocal(int32_t x, int x_integer_digits, int *num_bits_over_unit) {
    const int headroom_plus_one = mopt_count_leading_zeros32((uint32_t)x);
    *num_bits_over_unit = x_integer_digits - headroom_plus_one;
    /* x normalised to [1, 2) as an unsigned Q1.31, minus 1 -> Q0.31 */
    const uint32_t shifted = headroom_plus_one >= 32 ? 0u : ((uint32_t)x << headroom_plus_one);
    const int32_t shifted_sum_minus_one = wrap32u(shifted - ((uint32_t)1 << 31));
    return mopt_fx_one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one);
}

mopt_status mopt_preprocess_softmax_scaling(double beta, double input_scale,
                                            int input_integer_bits, mopt_rounding mode,
                                            int32_t *M, int *left_shift) {
    *M = 0;
    *left_shift = 0;
    if (input_integer_bits < 0 || input_integer_bits > 31) return MOPT_ERR_ARG;
    const double cap = mode == MOPT_ROUND_SINGLE ? ((double)((int64_t)1 << 30) - 1.0)
                                                 : ((double)((int64_t)1 << 31) - 1.0);
    /* beta * input_scale * (1 << (31 - IB)), in this order, in double */
    double real = beta * input_scale * (double)((int64_t)1 << (31 - input_integer_bits));
    if (isnan(real)) return MOPT_ERR_ARG;
    if (real > cap) real = cap;
    return mopt_quantize_multiplier_greater_than_one(real, M, left_shift);
}

int32_t mopt_calculate_input_radius(int input_integer_bits, int input_left_shift,
                                    int total_signed_bits) {
    if (input_integer_bits < 0) input_integer_bits = 0;
    if (input_integer_bits > 31) input_integer_bits = 31;
    if (total_signed_bits < input_integer_bits) total_signed_bits = input_integer_bits;
    if (total_signed_bits > 62) total_signed_bits = 62;
    if (input_left_shift < 0) input_left_shift = 0;
    if (input_left_shift > 62) input_left_shift = 62;
    /* TFLite computes this in double; every step is exact (integers times
     * powers of two below 2^63), so integer arithmetic gives the same floor. */
    const int64_t top = (((int64_t)1 << input_integer_bits) - 1);
    const int64_t shifted_up = top << (total_signed_bits - input_integer_bits); /* < 2^62 */
    const int64_t r = shifted_up >> input_left_shift;
    return r > INT32_MAX ? INT32_MAX : (int32_t)r;
}

/* ------------------------------------------------------------------------
 * Requantization
 * ------------------------------------------------------------------------ */

int32_t mopt_mbqm_double(int32_t x, int32_t M, int shift) {
    const int left = shift > 0 ? shift : 0;
    const int right = shift >= 0 ? 0 : (shift < -62 ? 63 : -shift);
    return mopt_fx_rounding_divide_by_pot(mopt_fx_srdhm(shl_wrap(x, left), M), right);
}

int32_t mopt_mbqm_single(int32_t x, int32_t M, int shift) {
    if (shift < -31) shift = -31;
    if (shift > 30) shift = 30;
    const int total_shift = 31 - shift; /* [1, 62] */
    /* |x * M| <= 2^62 and the rounding term <= 2^61: no int64 overflow */
    const int64_t v = (int64_t)x * (int64_t)M + ((int64_t)1 << (total_shift - 1));
    return wrap32(floor_shift(v, total_shift));
}

int32_t mopt_mbqm_int64(int64_t x, int32_t M, int shift) {
    if (shift < -31) shift = -31;
    if (shift > 7) shift = 7;
    const int64_t reduced = M < 0x7FFF0000 ? floor_shift((int64_t)M + (1 << 15), 16) : 0x7FFF;
    const int total_shift = 15 - shift; /* [8, 46] */
    /* In range (|x| < 2^47) nothing wraps; outside it, wrap like hardware. */
    const uint64_t prod = (uint64_t)x * (uint64_t)reduced;
    const int64_t v = wrap64u(prod + ((uint64_t)1 << (total_shift - 1)));
    return wrap32(floor_shift(v, total_shift));
}

int32_t mopt_requant_fp32(int32_t acc, float scale) {
    /* (float)acc rounds to nearest even above 2^24, like cvtdq2ps. */
    const float f = (float)acc * scale;
    if (isnan(f)) return 0;
    return sat32_from_double(mopt_round_half_even((double)f));
}

int32_t mopt_requant_double_round(int32_t acc, double scale) {
    const double v = (double)acc * scale;
    if (isnan(v)) return 0;
    return sat32_from_double(round(v));
}

static mopt_status check_scale(const char *fn, const char *what, float s, mopt_error *err) {
    if (!isfinite(s) || !(s > 0.0f))
        return mopt_error_set(err, MOPT_ERR_ARG, "%s: %s %g must be finite and > 0", fn, what,
                              (double)s);
    return MOPT_OK;
}

static mopt_status fill_requant(double real, float scale_f32, mopt_rounding mode,
                                mopt_requant_params *out, const char *fn, mopt_error *err) {
    memset(out, 0, sizeof *out);
    out->mode = mode;
    if (!isfinite(real) || real < 0.0)
        return mopt_error_set(err, MOPT_ERR_ARG, "%s: real multiplier %g must be finite and >= 0",
                              fn, real);
    out->scale = scale_f32;
    if (mopt_quantize_multiplier_mode(real, mode, &out->multiplier, &out->shift) != MOPT_OK)
        return mopt_error_set(err, MOPT_ERR_ARG, "%s: cannot quantize multiplier %g", fn, real);
    return MOPT_OK;
}

mopt_status mopt_requant_params_from_scales(float in_scale, float w_scale, float out_scale,
                                            mopt_rounding mode, mopt_requant_params *out,
                                            mopt_error *err) {
    static const char fn[] = "requant_params_from_scales";
    mopt_status st;
    memset(out, 0, sizeof *out);
    if ((st = check_scale(fn, "input scale", in_scale, err)) != MOPT_OK) return st;
    if ((st = check_scale(fn, "weight scale", w_scale, err)) != MOPT_OK) return st;
    if ((st = check_scale(fn, "output scale", out_scale, err)) != MOPT_OK) return st;
    /* TFLite: double product; XNNPACK: float expression, left to right. */
    const double real = (double)in_scale * (double)w_scale / (double)out_scale;
    const float prod = in_scale * w_scale;
    const float scale_f32 = prod / out_scale;
    return fill_requant(real, scale_f32, mode, out, fn, err);
}

mopt_status mopt_requant_params_from_real(double real, mopt_rounding mode,
                                          mopt_requant_params *out, mopt_error *err) {
    return fill_requant(real, (float)real, mode, out, "requant_params_from_real", err);
}

int32_t mopt_requant(int32_t acc, const mopt_requant_params *p) {
    switch (p->mode) {
    case MOPT_ROUND_SINGLE:
        return mopt_mbqm_single(acc, p->multiplier, p->shift);
    case MOPT_ROUND_FP32:
        return mopt_requant_fp32(acc, p->scale);
    case MOPT_ROUND_DOUBLE:
    default:
        return mopt_mbqm_double(acc, p->multiplier, p->shift);
    }
}

/* ------------------------------------------------------------------------
 * Quantization parameters and values
 * ------------------------------------------------------------------------ */

#define NEAR_ZERO_TOLERANCE 1.0e-6 /* converter's kNearZeroTolerance */

mopt_status mopt_qparams_asymmetric(float min, float max, int32_t qmin, int32_t qmax,
                                    mopt_qparams *out, mopt_error *err) {
    static const char fn[] = "qparams_asymmetric";
    out->scale = 0.0f;
    out->zero_point = 0;
    if (!isfinite(min) || !isfinite(max))
        return mopt_error_set(err, MOPT_ERR_ARG, "%s: range [%g, %g] must be finite", fn,
                              (double)min, (double)max);
    if (qmin >= qmax)
        return mopt_error_set(err, MOPT_ERR_ARG, "%s: quantized range [%d, %d] is empty", fn,
                              (int)qmin, (int)qmax);
    /* ConvertStatsToQDQs: stats as double, widened to include 0 ... */
    double rmin = (double)min < 0.0 ? (double)min : 0.0;
    double rmax = (double)max > 0.0 ? (double)max : 0.0;
    /* ... and a range narrower than 1e-6 widened by 1e-6 on both sides. */
    if (fabs(rmax - rmin) < NEAR_ZERO_TOLERANCE) {
        rmin -= NEAR_ZERO_TOLERANCE;
        rmax += NEAR_ZERO_TOLERANCE;
    }
    /* DownCastScale: scale in binary32 ... */
    const float fmin = (float)rmin, fmax = (float)rmax;
    const float span = fmax - fmin;
    const float scale = span / (float)((int64_t)qmax - (int64_t)qmin);
    if (!isfinite(scale) || !(scale > 0.0f))
        return mopt_error_set(err, MOPT_ERR_ARG, "%s: range [%g, %g] gives scale %g", fn,
                              (double)min, (double)max, (double)scale);
    /* ... zero point from the min side: the double quotient stored to a
     * float, then rounded half away from zero. */
    const float zf = (float)((double)qmin - rmin / (double)scale);
    int32_t zp;
    if (zf < (float)qmin)
        zp = qmin;
    else if (zf > (float)qmax)
        zp = qmax;
    else
        zp = (int32_t)round((double)zf);
    out->scale = scale;
    out->zero_point = zp;
    return MOPT_OK;
}

mopt_status mopt_qparams_symmetric_int16(float min, float max, mopt_qparams *out,
                                         mopt_error *err) {
    static const char fn[] = "qparams_symmetric_int16";
    out->scale = 0.0f;
    out->zero_point = 0;
    if (!isfinite(min) || !isfinite(max))
        return mopt_error_set(err, MOPT_ERR_ARG, "%s: range [%g, %g] must be finite", fn,
                              (double)min, (double)max);
    float a = fabsf(min) > fabsf(max) ? fabsf(min) : fabsf(max);
    if (a == 0.0f) a = 1e-6f;
    out->scale = a / 32767.0f;
    return MOPT_OK;
}

/* Scale of a narrow-range symmetric weight range [-a, a] as the converter
 * forms it: GetQuantizedType widens ranges of 1e-6 or less to +-5e-7
 * (ExpandVerySmallRange), DownCastScale divides the float span by 254. */
static float weight_scale_from_absmax(float a) {
    double lo = -(double)a, hi = (double)a;
    if (!(hi - lo > NEAR_ZERO_TOLERANCE)) {
        lo = -NEAR_ZERO_TOLERANCE / 2;
        hi = NEAR_ZERO_TOLERANCE / 2;
    }
    const float span = (float)hi - (float)lo;
    return span / 254.0f;
}

static int8_t clamp_q127(float r) {
    /* r is already integral (rounded); saturate like the int32 clamp */
    if (r >= 127.0f) return 127;
    if (r <= -127.0f) return -127;
    return (int8_t)r;
}

/* One channel of SymmetricPerChannelQuantizeValues: QuantizeLegacy passes
 * 1.0 / scale computed in double and stored as float; the product and the
 * rounding are binary32. */
static void quantize_channel(const float *w, size_t outer, size_t channels, size_t inner,
                             size_t c, float scale, int8_t *q) {
    const float inv = (float)(1.0 / (double)scale);
    for (size_t o = 0; o < outer; o++) {
        const float *p = w + (o * channels + c) * inner;
        int8_t *d = q + (o * channels + c) * inner;
        for (size_t i = 0; i < inner; i++) {
            const float prod = p[i] * inv;
            d[i] = isnan(prod) ? 0 : clamp_q127((float)round((double)prod));
        }
    }
}

mopt_status mopt_quantize_weights_per_tensor(const float *w, size_t n, int8_t *q,
                                             float *scale, mopt_error *err) {
    static const char fn[] = "quantize_weights_per_tensor";
    float a = 0.0f;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(w[i]))
            return mopt_error_set(err, MOPT_ERR_ARG, "%s: weight %zu is %g (not finite)", fn, i,
                                  (double)w[i]);
        const float v = fabsf(w[i]);
        if (v > a) a = v;
    }
    const float s = weight_scale_from_absmax(a);
    if (!isfinite(s))
        return mopt_error_set(err, MOPT_ERR_ARG, "%s: max |w| %g overflows the scale", fn,
                              (double)a);
    *scale = s;
    if (a == 0.0f) {
        if (n) memset(q, 0, n);
        return MOPT_OK;
    }
    const float inv = 127.0f / a; /* PortableSymmetricQuantizeFloats */
    for (size_t i = 0; i < n; i++) {
        const float prod = w[i] * inv;
        q[i] = clamp_q127((float)round((double)prod));
    }
    return MOPT_OK;
}

mopt_status mopt_quantize_weights_per_channel(const float *w, size_t outer, size_t channels,
                                              size_t inner, int8_t *q, float *scales,
                                              mopt_error *err) {
    static const char fn[] = "quantize_weights_per_channel";
    if (channels == 0)
        return mopt_error_set(err, MOPT_ERR_ARG, "%s: no channels", fn);
    for (size_t c = 0; c < channels; c++) {
        float a = 0.0f;
        for (size_t o = 0; o < outer; o++) {
            const float *p = w + (o * channels + c) * inner;
            for (size_t i = 0; i < inner; i++) {
                if (!isfinite(p[i]))
                    return mopt_error_set(err, MOPT_ERR_ARG,
                                          "%s: weight %zu (channel %zu) is %g (not finite)", fn,
                                          (o * channels + c) * inner + i, c, (double)p[i]);
                const float v = fabsf(p[i]);
                if (v > a) a = v;
            }
        }
        const float s = weight_scale_from_absmax(a);
        if (!isfinite(s))
            return mopt_error_set(err, MOPT_ERR_ARG, "%s: channel %zu max |w| %g overflows the scale",
                                  fn, c, (double)a);
        scales[c] = s;
        quantize_channel(w, outer, channels, inner, c, s, q);
    }
    return MOPT_OK;
}

mopt_status mopt_quantize_weights_with_scales(const float *w, size_t outer, size_t channels,
                                              size_t inner, const float *scales, int8_t *q,
                                              mopt_error *err) {
    for (size_t c = 0; c < channels; c++)
        if (!isfinite(scales[c]) || !(scales[c] > 0.0f))
            return mopt_error_set(err, MOPT_ERR_ARG,
                                  "quantize_weights_with_scales: scale %zu is %g (need finite, > 0)",
                                  c, (double)scales[c]);
    for (size_t c = 0; c < channels; c++) quantize_channel(w, outer, channels, inner, c, scales[c], q);
    return MOPT_OK;
}

float mopt_bias_scale(float in_scale, float w_scale) {
    return (float)((double)in_scale * (double)w_scale);
}

static mopt_status check_bias_args(const char *fn, size_t n, const float *scales, size_t nscales,
                                   mopt_error *err) {
    if (nscales != 1 && nscales != n)
        return mopt_error_set(err, MOPT_ERR_ARG, "%s: %zu scales for %zu values (need 1 or %zu)",
                              fn, nscales, n, n);
    for (size_t i = 0; i < nscales; i++)
        if (!isfinite(scales[i]) || scales[i] < 0.0f)
            return mopt_error_set(err, MOPT_ERR_ARG, "%s: scale %zu is %g (need finite, >= 0)",
                                  fn, i, (double)scales[i]);
    return MOPT_OK;
}

static float bias_inv(float s) { return s == 0.0f ? 0.0f : (float)(1.0 / (double)s); }

mopt_status mopt_quantize_bias_int32(const float *b, size_t n, const float *scales,
                                     size_t nscales, int32_t *q, mopt_error *err) {
    mopt_status st = check_bias_args("quantize_bias_int32", n, scales, nscales, err);
    if (st != MOPT_OK) return st;
    for (size_t i = 0; i < n; i++) {
        const float inv = bias_inv(scales[nscales == 1 ? 0 : i]);
        const float prod = b[i] * inv;
        int32_t v = sat32_from_double(round((double)prod)); /* SafeCast */
        if (v < -INT32_MAX) v = -INT32_MAX;
        q[i] = v;
    }
    return MOPT_OK;
}

mopt_status mopt_quantize_bias_int64(const float *b, size_t n, const float *scales,
                                     size_t nscales, int64_t *q, mopt_error *err) {
    mopt_status st = check_bias_args("quantize_bias_int64", n, scales, nscales, err);
    if (st != MOPT_OK) return st;
    for (size_t i = 0; i < n; i++) {
        const float inv = bias_inv(scales[nscales == 1 ? 0 : i]);
        const float prod = b[i] * inv;
        int64_t v = sat64_from_double(round((double)prod));
        if (v < -INT64_MAX) v = -INT64_MAX;
        q[i] = v;
    }
    return MOPT_OK;
}

int32_t mopt_quantize_value(float x, float scale, int32_t zero_point, int32_t qmin, int32_t qmax) {
    const float ratio = x / scale; /* binary32 division, as AffineQuantize */
    double v = isnan(ratio) ? (double)zero_point : round((double)ratio) + (double)zero_point;
    if (v < (double)qmin) v = (double)qmin;
    if (v > (double)qmax) v = (double)qmax;
    return (int32_t)v;
}

float mopt_dequantize_value(int32_t q, float scale, int32_t zero_point) {
    return (float)((double)scale * (double)((int64_t)q - (int64_t)zero_point));
}

/* zp + (int32)round(f / scale), binary32 division, saturated. */
static int32_t act_quantize(float f, float scale, int32_t zp) {
    const float ratio = f / scale;
    const int64_t v = (int64_t)sat32_from_double(round((double)ratio)) + (int64_t)zp;
    return v > INT32_MAX ? INT32_MAX : (v < INT32_MIN ? INT32_MIN : (int32_t)v);
}

static int32_t max32(int32_t a, int32_t b) { return a > b ? a : b; }
static int32_t min32(int32_t a, int32_t b) { return a < b ? a : b; }

mopt_status mopt_activation_range_quantized(mopt_activation act, float scale, int32_t zero_point,
                                            int32_t qmin, int32_t qmax, int32_t *lo, int32_t *hi) {
    *lo = qmin;
    *hi = qmax;
    if (!isfinite(scale) || !(scale > 0.0f) || qmin > qmax) return MOPT_ERR_ARG;
    switch (act) {
    case MOPT_ACT_RELU:
        *lo = max32(qmin, act_quantize(0.0f, scale, zero_point));
        break;
    case MOPT_ACT_RELU6:
        *lo = max32(qmin, act_quantize(0.0f, scale, zero_point));
        *hi = min32(qmax, act_quantize(6.0f, scale, zero_point));
        break;
    case MOPT_ACT_RELU_N1_TO_1:
        *lo = max32(qmin, act_quantize(-1.0f, scale, zero_point));
        *hi = min32(qmax, act_quantize(1.0f, scale, zero_point));
        break;
    default:
        break;
    }
    return MOPT_OK;
}
