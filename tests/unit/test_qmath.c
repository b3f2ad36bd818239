/* Unit tests for src/quant/qmath.c: multipliers, requantization in every
 * rounding mode, converter quantization parameters, float16, and the
 * gemmlowp fixed-point functions.
 *
 * Where the expected values come from (never from mopt itself):
 *  - hand derivations, written next to each case (checked with Python's
 *    decimal module and numpy.float32);
 *  - independent models of the definitions: long double / __int128
 *    arithmetic for the requantization variants, libm nearbyintf for fp32,
 *    the compiler's _Float16 conversions for float16;
 *  - the real gemmlowp fixedpoint/fixedpoint.h (C++, from the tensorflow
 *    2.21.0 wheel) for the fixed-point goldens;
 *  - the real TF 2.21.0 converter (tf.lite.TFLiteConverter, full-integer
 *    and 16x8 post-training quantization of a small conv model) for the
 *    converter goldens.
 */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mopt/qmath.h"

/* Deterministic test RNG (splitmix64). */
static uint64_t rng_state = 0x243F6A8885A308D3ull;
static uint64_t rng_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int32_t rng_i32(void) { return (int32_t)(uint32_t)rng_u64(); }
/* Random int32 with a random magnitude, so small values and shifts that do
 * not overflow are common. */
static int32_t rng_i32_mag(void) {
    int32_t v = rng_i32();
    int k = (int)(rng_u64() % 32);
    return k == 0 ? v : (int32_t)(v / ((int64_t)1 << k));
}
static int rng_range(int lo, int hi) { return lo + (int)(rng_u64() % (uint64_t)(hi - lo + 1)); }

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
#if defined(__FLT16_MAX__)
static float ffrom(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
#endif

/* ------------------------------------------------------------------------
 * Rounding helpers
 * ------------------------------------------------------------------------ */

static void test_rounding_helpers(void **state) {
    (void)state;
    /* half away from zero */
    assert_true(mopt_round_half_away(0.5) == 1.0);
    assert_true(mopt_round_half_away(-0.5) == -1.0);
    assert_true(mopt_round_half_away(2.5) == 3.0);
    assert_true(mopt_round_half_away(-2.5) == -3.0);
    assert_true(mopt_round_half_away(0.49999999999999994) == 0.0); /* floor(x+0.5) gets 1 */
    assert_true(mopt_round_half_away(-1.4999999) == -1.0);
    /* half to even */
    assert_true(mopt_round_half_even(0.5) == 0.0);
    assert_true(mopt_round_half_even(1.5) == 2.0);
    assert_true(mopt_round_half_even(2.5) == 2.0);
    assert_true(mopt_round_half_even(-2.5) == -2.0);
    assert_true(mopt_round_half_even(-3.5) == -4.0);
    assert_true(mopt_round_half_even(2.5000001) == 3.0);
    assert_true(mopt_round_half_even(4503599627370497.0) == 4503599627370497.0);
    assert_true(signbit(mopt_round_half_even(-0.25)));
    assert_true(isnan(mopt_round_half_even(NAN)));
    /* against libm nearbyint (default rounding mode) on random values */
    for (int i = 0; i < 200000; i++) {
        double x = (double)rng_i32_mag() / 64.0 + (rng_u64() & 1 ? 0.5 : 0.0);
        assert_true(mopt_round_half_even(x) == nearbyint(x));
        assert_true(mopt_round_half_away(x) == round(x));
    }
}

/* ------------------------------------------------------------------------
 * QuantizeMultiplier
 * ------------------------------------------------------------------------ */

static void expect_qm(double m, mopt_rounding mode, int32_t M, int shift) {
    int32_t gotM = -7;
    int gots = -7;
    assert_int_equal(mopt_quantize_multiplier_mode(m, mode, &gotM, &gots), MOPT_OK);
    if (gotM != M || gots != shift)
        fail_msg("m=%.17g mode %d: got (%d, %d), want (%d, %d)", m, (int)mode, (int)gotM, gots,
                 (int)M, shift);
}

static void test_quantize_multiplier(void **state) {
    (void)state;
    const mopt_rounding D = MOPT_ROUND_DOUBLE, S = MOPT_ROUND_SINGLE;
    expect_qm(0.0, D, 0, 0);
    /* 0.5 = 0.5 * 2^0 -> 0.5 * 2^31 = 2^30 */
    expect_qm(0.5, D, 1073741824, 0);
    /* 1.0 = 0.5 * 2^1 (frexp) */
    expect_qm(1.0, D, 1073741824, 1);
    /* 0.75 * 2^31 = 1610612736; 3.0 = 0.75 * 2^2; 1.5 = 0.75 * 2^1 */
    expect_qm(0.75, D, 1610612736, 0);
    expect_qm(3.0, D, 1610612736, 2);
    expect_qm(1.5, D, 1610612736, 1);
    /* 0.1 = 0.8 * 2^-3; 0.8 * 2^31 = 1717986918.4000001 -> 1717986918 */
    expect_qm(0.1, D, 1717986918, -3);
    /* 1/3 = (2/3) * 2^-1; (2/3) * 2^31 = 1431655765.333 -> 1431655765 */
    expect_qm(1.0 / 3.0, D, 1431655765, -1);
    /* 1e10 = 0.582076609134674 * 2^34; * 2^31 = 1250000000 exactly */
    expect_qm(1e10, D, 1250000000, 34);
    /* single-rounding build clamps shift > 30 */
    expect_qm(1e10, S, INT32_MAX, 30);
    expect_qm(ldexp(1.0, 40), D, 1073741824, 41);
    expect_qm(ldexp(1.0, 40), S, INT32_MAX, 30);
    expect_qm(ldexp(0.75, 30), S, 1610612736, 30); /* shift 30 itself is kept */
    /* m just below 1: q = m, q * 2^31 = 2^31 - 2^-9 rounds to 2^31 -> fix-up
     * halves it to 2^30 and bumps the shift to 1. */
    expect_qm(1.0 - ldexp(1.0, -40), D, 1073741824, 1);
    /* tie: q * 2^31 = 2^31 - 0.5 rounds half away from zero to 2^31 too */
    expect_qm(1.0 - ldexp(1.0, -32), D, 1073741824, 1);
    /* 1 - 2^-31: q * 2^31 = 2^31 - 1 exactly, no fix-up */
    expect_qm(1.0 - ldexp(1.0, -31), D, INT32_MAX, 0);
    /* tie below: q * 2^31 = 2^30 + 0.5 (q = 0.5 + 2^-32) -> away -> 2^30 + 1 */
    expect_qm(0.5 + ldexp(1.0, -32), D, 1073741825, 0);
    /* tiny: 2^-32 = 0.5 * 2^-31 is kept; 2^-33 = 0.5 * 2^-32 flushes */
    expect_qm(ldexp(1.0, -32), D, 1073741824, -31);
    expect_qm(ldexp(0.75, -31), D, 1610612736, -31);
    expect_qm(ldexp(1.0, -33), D, 0, 0);
    expect_qm(ldexp(0.999, -32), D, 0, 0);
    expect_qm(1e-300, D, 0, 0);
    /* the fix-up happens before the flush: (1 - 2^-40) * 2^-32 has frexp
     * exponent -32 but rounds up to 2^-32 = 0.5 * 2^-31 */
    expect_qm(ldexp(1.0 - ldexp(1.0, -40), -32), D, 1073741824, -31);
    /* negative multipliers: the default build keeps the sign */
    expect_qm(-0.75, D, -1610612736, 0);
    expect_qm(-0.5, D, -1073741824, 0);
    int32_t M = 1;
    int s = 1;
    assert_int_equal(mopt_quantize_multiplier_mode(-0.75, S, &M, &s), MOPT_ERR_ARG);
    assert_int_equal(mopt_quantize_multiplier(NAN, &M, &s), MOPT_ERR_ARG);
    assert_int_equal(M, 0);
    assert_int_equal(s, 0);
    assert_int_equal(mopt_quantize_multiplier(INFINITY, &M, &s), MOPT_ERR_ARG);
    assert_int_equal(mopt_quantize_multiplier(-INFINITY, &M, &s), MOPT_ERR_ARG);
    /* plain entry point = default build */
    assert_int_equal(mopt_quantize_multiplier(1e10, &M, &s), MOPT_OK);
    assert_int_equal(M, 1250000000);
    assert_int_equal(s, 34);

    /* SmallerThanOneExp: 1/255 = 0.00392156862745098 = 0.50196... * 2^-7 */
    assert_int_equal(mopt_quantize_multiplier_smaller_than_one(1.0 / 255.0, &M, &s), MOPT_OK);
    /* q = 128/255 (as a double: 0.5019607843137255); q * 2^31 =
     * 1077952576.2509804 -> 1077952576 */
    assert_int_equal(M, 1077952576);
    assert_int_equal(s, -7);
    assert_int_equal(mopt_quantize_multiplier_smaller_than_one(1.0 - ldexp(1.0, -40), &M, &s),
                     MOPT_ERR_ARG); /* rounds to 1.0: TFLite's CHECK(shift <= 0) fails */
    assert_int_equal(mopt_quantize_multiplier_smaller_than_one(1.0, &M, &s), MOPT_ERR_ARG);
    assert_int_equal(mopt_quantize_multiplier_smaller_than_one(0.0, &M, &s), MOPT_ERR_ARG);
    assert_int_equal(mopt_quantize_multiplier_smaller_than_one(-0.5, &M, &s), MOPT_ERR_ARG);
    /* GreaterThanOne: 1.5 = 0.75 * 2^1 */
    assert_int_equal(mopt_quantize_multiplier_greater_than_one(1.5, &M, &s), MOPT_OK);
    assert_int_equal(M, 1610612736);
    assert_int_equal(s, 1);
    assert_int_equal(mopt_quantize_multiplier_greater_than_one(1.0, &M, &s), MOPT_ERR_ARG);
    assert_int_equal(mopt_quantize_multiplier_greater_than_one(INFINITY, &M, &s), MOPT_ERR_ARG);

    /* Round trip: the represented value is within half a unit of m. */
    for (int i = 0; i < 100000; i++) {
        /* [0.5, 1) * 2^e, e in [-30, 30]: never flushed */
        double m = ldexp(0.5 + (double)(rng_u64() >> 11) / 18014398509481984.0, rng_range(-30, 30));
        assert_int_equal(mopt_quantize_multiplier(m, &M, &s), MOPT_OK);
        assert_true(M >= 1073741824);
        double back = mopt_multiplier_to_double(M, s);
        assert_true(fabs(back - m) <= ldexp(0.5, s - 31));
    }
}
/* ------------------------------------------------------------------------
 * MultiplyByQuantizedMultiplier variants
 * ------------------------------------------------------------------------ */

#if defined(__SIZEOF_INT128__)
__extension__ typedef __int128 i128;
/* floor(v / 2^s) on 128-bit integers, by division (not by shifting) */
static i128 floor_div_pow2(i128 v, int s) {
    i128 d = (i128)1 << s;
    i128 q = v / d;
    if ((v % d) != 0 && v < 0) q -= 1;
    return q;
}
static int32_t wrap_i128(i128 v) {
    uint32_t u = (uint32_t)(v & 0xFFFFFFFF);
    return u >= 0x80000000u ? (int32_t)((int64_t)u - 4294967296LL) : (int32_t)u;
}
/* single rounding: floor(x*M / 2^t + 1/2), t = 31 - shift */
static int32_t model_mbqm_single(int32_t x, int32_t M, int shift) {
    int t = 31 - shift;
    return wrap_i128(floor_div_pow2((i128)x * M + ((i128)1 << (t - 1)), t));
}
/* int64 overload: reduce M to 16 bits (round half up), then one rounding */
static int32_t model_mbqm_int64(int64_t x, int32_t M, int shift) {
    int64_t Mr = M < 0x7FFF0000 ? (int64_t)floor_div_pow2((i128)M + 32768, 16) : 0x7FFF;
    int t = 15 - shift;
    return wrap_i128(floor_div_pow2((i128)x * Mr + ((i128)1 << (t - 1)), t));
}
#endif

/* Independent model of the default build, straight from the definition:
 * the high-mul is floor(a*M / 2^31 + 1/2) (ties toward +inf), the divide
 * is round-half-away(h / 2^right), both on exact wide integers (__int128),
 * or, without __int128, in long double (64-bit mantissa: |a*M| <= 2^62 and
 * a*M/2^31 + 1/2 need at most 63 bits). */
static int32_t model_mbqm_double(int32_t x, int32_t M, int shift) {
    int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    /* x * 2^left modulo 2^32, the documented wrap */
    uint32_t ua = left >= 32 ? 0u : (uint32_t)x << left;
    int64_t a = ua >= 0x80000000u ? (int64_t)ua - 4294967296LL : (int64_t)ua;
#if defined(__SIZEOF_INT128__)
    i128 h = (a == INT32_MIN && M == INT32_MIN)
                 ? (i128)INT32_MAX
                 : floor_div_pow2((i128)a * M + ((i128)1 << 30), 31);
    if (right == 0) return (int32_t)h;
    i128 mag = h < 0 ? -h : h;
    i128 r = floor_div_pow2(mag + ((i128)1 << (right - 1)), right); /* half up on |h| */
    return (int32_t)(h < 0 ? -r : r);
#else
    long double h;
    if (a == INT32_MIN && M == INT32_MIN)
        h = (long double)INT32_MAX;
    else
        h = floorl((long double)a * (long double)M / 2147483648.0L + 0.5L);
    return (int32_t)roundl(h / ldexpl(1.0L, right));
#endif
}

static void test_mbqm_hand(void **state) {
    (void)state;
    const int32_t HALF = 1073741824;     /* 0.5 in Q0.31 */
    const int32_t THREE_Q = 1610612736; /* 0.75 */
    /* 3 * 0.5 = 1.5: SRDHM rounds the tie up -> 2; single also ties up -> 2 */
    assert_int_equal(mopt_mbqm_double(3, HALF, 0), 2);
    assert_int_equal(mopt_mbqm_single(3, HALF, 0), 2);
    /* -3 * 0.5 = -1.5: ties toward +inf in both -> -1 */
    assert_int_equal(mopt_mbqm_double(-3, HALF, 0), -1);
    assert_int_equal(mopt_mbqm_single(-3, HALF, 0), -1);
    /* -6 * 0.5 * 2^-1 = -1.5 exactly. Double: SRDHM(-6, 0.5) = -3 exactly,
     * RoundingDivideByPOT(-3, 1) = -1.5 -> away from zero -> -2.
     * Single: (-6 * 2^30 + 2^31) >> 32 = -2^32 >> 32 = -1 (tie up). */
    assert_int_equal(mopt_mbqm_double(-6, HALF, -1), -2);
    assert_int_equal(mopt_mbqm_single(-6, HALF, -1), -1);
    assert_int_equal(mopt_mbqm_double(6, HALF, -1), 2);
    assert_int_equal(mopt_mbqm_single(6, HALF, -1), 2);
    /* Double rounding on a value that is not a tie: 5 * 0.5 * 2^-1 = 1.25.
     * Double: SRDHM(5, 0.5) = 2.5 -> 3, then 3 / 2 = 1.5 -> 2.
     * Single: (5 * 2^30 + 2^31) >> 32 = (7 * 2^30) >> 32 = 1. */
    assert_int_equal(mopt_mbqm_double(5, HALF, -1), 2);
    assert_int_equal(mopt_mbqm_single(5, HALF, -1), 1);
    /* M = 2^31 - 1 (1 - 2^-31), shift -1: exact 5 * (1 - 2^-31) / 2 =
     * 2.4999999988. Double: SRDHM = round(5 - 2.3e-9) = 5, 5 / 2 = 2.5 -> 3.
     * Single: (5 * (2^31 - 1) + 2^31) >> 32 = (3 * 2^32 - 5) >> 32 = 2. */
    assert_int_equal(mopt_mbqm_double(5, INT32_MAX, -1), 3);
    assert_int_equal(mopt_mbqm_single(5, INT32_MAX, -1), 2);
    /* RoundingDivideByPOT ties away from zero: SRDHM(x, 0.5) with x = 10
     * is 5, / 2 = 2.5 -> 3; x = -10 -> -2.5 -> -3 */
    assert_int_equal(mopt_mbqm_double(10, HALF, -1), 3);
    assert_int_equal(mopt_mbqm_double(-10, HALF, -1), -3);
    /* INT32_MIN * INT32_MIN is the one SRDHM overflow: saturates */
    assert_int_equal(mopt_mbqm_double(INT32_MIN, INT32_MIN, 0), INT32_MAX);
    assert_int_equal(mopt_fx_srdhm(INT32_MIN, INT32_MIN), INT32_MAX);
    /* INT32_MIN * 0.5 = -2^30 exactly */
    assert_int_equal(mopt_mbqm_double(INT32_MIN, HALF, 0), -1073741824);
    assert_int_equal(mopt_mbqm_single(INT32_MIN, HALF, 0), -1073741824);
    /* left shift: 1000 * 2^2 * 0.75 = 3000 */
    assert_int_equal(mopt_mbqm_double(1000, THREE_Q, 2), 3000);
    assert_int_equal(mopt_mbqm_single(1000, THREE_Q, 2), 3000);
    /* shift -31: (2^31-1)^2 / 2^31 = 2^31 - 2 + 2^-31 -> SRDHM 2147483646;
     * / 2^31 = 0.99999999907 -> 1 */
    assert_int_equal(mopt_mbqm_double(INT32_MAX, INT32_MAX, -31), 1);
    /* M = 0 (flushed multiplier) gives 0 */
    assert_int_equal(mopt_mbqm_double(123456, 0, 0), 0);
    assert_int_equal(mopt_mbqm_single(-123456, 0, -5), 0);
    /* out-of-range shifts are defined: x * 2^40 wraps to 0 */
    assert_int_equal(mopt_mbqm_double(7, HALF, 40), 0);
    assert_int_equal(mopt_mbqm_double(7, HALF, -100), 0);

    /* int64 overload: Mr = (2^30 + 2^15) >> 16 = 16384 (0.5 in Q0.15).
     * x = 3, shift 0: (3 * 16384 + 2^14) >> 15 = 65536 >> 15 = 2 (1.5 up) */
    assert_int_equal(mopt_mbqm_int64(3, HALF, 0), 2);
    assert_int_equal(mopt_mbqm_int64(-3, HALF, 0), -1);
    /* x = 2^46, M = 0.75, shift 0: Mr = (1610612736 + 32768) >> 16 = 24576;
     * 2^46 * 24576 / 2^15 = 2^46 * 0.75 = 52776558133248 -> wraps? no:
     * the caller's precondition is a result in int32, so use x = 2^30:
     * 2^30 * 0.75 = 805306368 */
    assert_int_equal(mopt_mbqm_int64((int64_t)1 << 30, THREE_Q, 0), 805306368);
    /* M >= 0x7FFF0000 saturates Mr to 0x7FFF instead of overflowing to 2^15:
     * x = 2^15, M = INT32_MAX: 2^15 * 32767 / 2^15 = 32767 */
    assert_int_equal(mopt_mbqm_int64(32768, INT32_MAX, 0), 32767);
    /* large accumulator, small multiplier: x = 2^46 - 1, M = 2^30, shift -20:
     * (2^46 - 1) * 0.5 * 2^-20 = 2^25 - 2^-21 -> 33554432 */
    assert_int_equal(mopt_mbqm_int64(((int64_t)1 << 46) - 1, HALF, -20), 33554432);
}

static void test_mbqm_random(void **state) {
    (void)state;
#if defined(__SIZEOF_INT128__) || LDBL_MANT_DIG >= 64
    for (int i = 0; i < 1000000; i++) {
        int32_t x = rng_i32_mag();
        int32_t M;
        switch (i % 4) {
        case 0: M = rng_i32(); break;                                  /* anything */
        case 1: M = (int32_t)(0x40000000u + (uint32_t)(rng_u64() % 0x40000000u)); break; /* normal */
        case 2: M = rng_range(0, 3) == 0 ? INT32_MIN : (int32_t)0x40000000; break;
        default: M = rng_i32_mag(); break;
        }
        if (i % 97 == 0) x = (i & 1) ? INT32_MIN : INT32_MAX;
        int shift = rng_range(-31, 30);
        if (i % 5 == 0) shift = rng_range(-3, 3);
        int32_t want = model_mbqm_double(x, M, shift);
        int32_t got = mopt_mbqm_double(x, M, shift);
        if (got != want)
            fail_msg("mbqm_double(%d, %d, %d) = %d, model %d", (int)x, (int)M, shift, (int)got,
                     (int)want);
    }
#else
    print_message("no __int128 and a short long double: double-rounding model skipped\n");
#endif
#if defined(__SIZEOF_INT128__)
    for (int i = 0; i < 1000000; i++) {
        int32_t x = rng_i32_mag();
        int32_t M = (i & 1) ? (int32_t)(0x40000000u + (uint32_t)(rng_u64() % 0x40000000u))
                            : (int32_t)(rng_u64() % 0x80000000u);
        int shift = rng_range(-31, 30);
        int32_t want = model_mbqm_single(x, M, shift);
        int32_t got = mopt_mbqm_single(x, M, shift);
        if (got != want)
            fail_msg("mbqm_single(%d, %d, %d) = %d, model %d", (int)x, (int)M, shift, (int)got,
                     (int)want);
    }
    for (int i = 0; i < 1000000; i++) {
        int64_t x = (int64_t)(rng_u64() >> (17 + rng_range(0, 40)));
        if (rng_u64() & 1) x = -x;
        int32_t M = (i % 7 == 0) ? (int32_t)(0x7FFF0000u + (uint32_t)(rng_u64() % 0x10000u))
                                 : (int32_t)(rng_u64() % 0x80000000u);
        int shift = rng_range(-31, 7);
        int32_t want = model_mbqm_int64(x, M, shift);
        int32_t got = mopt_mbqm_int64(x, M, shift);
        if (got != want)
            fail_msg("mbqm_int64(%lld, %d, %d) = %d, model %d", (long long)x, (int)M, shift,
                     (int)got, (int)want);
    }
#else
    print_message("no __int128: single-rounding and int64 models skipped\n");
#endif
}

static void test_requant_float_paths(void **state) {
    (void)state;
    /* fp32: ties to even. scale 0.5: 5 -> 2.5 -> 2, 7 -> 3.5 -> 4, -5 -> -2 */
    assert_int_equal(mopt_requant_fp32(5, 0.5f), 2);
    assert_int_equal(mopt_requant_fp32(7, 0.5f), 4);
    assert_int_equal(mopt_requant_fp32(-5, 0.5f), -2);
    assert_int_equal(mopt_requant_fp32(-7, 0.5f), -4);
    /* the newer FC reference path: ties away. 5 * 0.5 -> 3, -5 -> -3 */
    assert_int_equal(mopt_requant_double_round(5, 0.5), 3);
    assert_int_equal(mopt_requant_double_round(-5, 0.5), -3);
    /* and gemmlowp for the same multiplier (0.5 = 2^30, shift 0): 2.5 -> 3
     * (tie up), -2.5 -> -2 */
    assert_int_equal(mopt_mbqm_double(5, 1073741824, 0), 3);
    assert_int_equal(mopt_mbqm_double(-5, 1073741824, 0), -2);
    /* (float)acc rounds: 2^24 + 1 becomes 2^24 before the multiply */
    assert_int_equal(mopt_requant_fp32(16777217, 1.0f), 16777216);
    assert_int_equal(mopt_requant_double_round(16777217, 1.0), 16777217);
    /* 10000001 * 0.5f = 5000000.5 exactly (binary32) -> even -> 5000000 */
    assert_int_equal(mopt_requant_fp32(10000001, 0.5f), 5000000);
    /* saturation and NaN */
    assert_int_equal(mopt_requant_fp32(INT32_MAX, 4.0f), INT32_MAX);
    assert_int_equal(mopt_requant_fp32(INT32_MIN, 4.0f), INT32_MIN);
    assert_int_equal(mopt_requant_fp32(5, NAN), 0);
    assert_int_equal(mopt_requant_double_round(INT32_MIN, 2.0), INT32_MIN);
    assert_int_equal(mopt_requant_double_round(3, NAN), 0);
    /* random against libm: nearbyintf on the float product (default mode),
     * round on the double product */
    for (int i = 0; i < 500000; i++) {
        int32_t acc = rng_i32_mag();
        float scale = ldexpf((float)(rng_u64() % 16777216u) / 16777216.0f, rng_range(-20, 2));
        float f = (float)acc * scale;
        float r = nearbyintf(f);
        int32_t want = r >= 2147483648.0f ? INT32_MAX : (r < -2147483648.0f ? INT32_MIN : (int32_t)r);
        assert_int_equal(mopt_requant_fp32(acc, scale), want);
        double d = round((double)acc * (double)scale);
        int32_t want2 = d >= 2147483647.0 ? INT32_MAX : (d <= -2147483648.0 ? INT32_MIN : (int32_t)d);
        assert_int_equal(mopt_requant_double_round(acc, (double)scale), want2);
    }
}

static void test_requant_dispatch(void **state) {
    (void)state;
    mopt_requant_params p;
    mopt_error err;
    /* 0.5 * 0.25 / 0.125 = 1.0 in both double and float: M 2^30, shift 1 */
    assert_int_equal(mopt_requant_params_from_scales(0.5f, 0.25f, 0.125f, MOPT_ROUND_DOUBLE, &p, &err),
                     MOPT_OK);
    assert_int_equal(p.multiplier, 1073741824);
    assert_int_equal(p.shift, 1);
    assert_true(p.scale == 1.0f);
    /* FP32 keeps XNNPACK's float expression (in * w) / out; the multiplier
     * fields hold TFLite's double product */
    assert_int_equal(mopt_requant_params_from_scales(0.1f, 0.3f, 0.7f, MOPT_ROUND_FP32, &p, &err),
                     MOPT_OK);
    {
        float prod = 0.1f * 0.3f;
        float want = prod / 0.7f;
        assert_true(fbits(p.scale) == fbits(want));
        double real = (double)0.1f * (double)0.3f / (double)0.7f;
        int32_t M;
        int s;
        assert_int_equal(mopt_quantize_multiplier(real, &M, &s), MOPT_OK);
        assert_int_equal(p.multiplier, M);
        assert_int_equal(p.shift, s);
    }
    for (int i = 0; i < 20000; i++) {
        int32_t acc = rng_i32_mag() / 256;
        float in = ldexpf(1.0f + (float)(rng_u64() % 1000) / 1000.0f, rng_range(-10, 0));
        float w = ldexpf(1.0f + (float)(rng_u64() % 1000) / 1000.0f, rng_range(-10, 0));
        float out = ldexpf(1.0f + (float)(rng_u64() % 1000) / 1000.0f, rng_range(-12, 0));
        for (int mode = 0; mode < 3; mode++) {
            assert_int_equal(mopt_requant_params_from_scales(in, w, out, (mopt_rounding)mode, &p, &err),
                             MOPT_OK);
            int32_t want = mode == MOPT_ROUND_DOUBLE ? mopt_mbqm_double(acc, p.multiplier, p.shift)
                           : mode == MOPT_ROUND_SINGLE ? mopt_mbqm_single(acc, p.multiplier, p.shift)
                                                       : mopt_requant_fp32(acc, p.scale);
            assert_int_equal(mopt_requant(acc, &p), want);
        }
    }
    /* single mode clamps the multiplier like the single-rounding build */
    assert_int_equal(mopt_requant_params_from_real(ldexp(1.0, 40), MOPT_ROUND_SINGLE, &p, &err), MOPT_OK);
    assert_int_equal(p.multiplier, INT32_MAX);
    assert_int_equal(p.shift, 30);
    assert_int_equal(mopt_requant_params_from_real(ldexp(1.0, 40), MOPT_ROUND_DOUBLE, &p, &err), MOPT_OK);
    assert_int_equal(p.shift, 41);
    /* errors name the function and the rule */
    assert_int_equal(mopt_requant_params_from_scales(0.0f, 1.0f, 1.0f, MOPT_ROUND_DOUBLE, &p, &err),
                     MOPT_ERR_ARG);
    assert_non_null(strstr(err.msg, "input scale"));
    assert_int_equal(mopt_requant_params_from_scales(1.0f, NAN, 1.0f, MOPT_ROUND_DOUBLE, &p, &err),
                     MOPT_ERR_ARG);
    assert_non_null(strstr(err.msg, "weight scale"));
    assert_int_equal(mopt_requant_params_from_scales(1.0f, 1.0f, -2.0f, MOPT_ROUND_DOUBLE, &p, NULL),
                     MOPT_ERR_ARG);
    assert_int_equal(mopt_requant_params_from_real(-1.0, MOPT_ROUND_DOUBLE, &p, &err), MOPT_ERR_ARG);
    assert_non_null(strstr(err.msg, "requant_params_from_real"));
}
/* ------------------------------------------------------------------------
 * Converter parameters
 * ------------------------------------------------------------------------ */

static void test_qparams_hand(void **state) {
    (void)state;
    mopt_qparams p;
    mopt_error err;
    /* [-1, 1] int8: scale = 2.0f / 255 = 0x1.010102p-7 (0.0078431377);
     * zf = (float)(-128 + 1 / 0.0078431377) = -0.50000757 -> round away -> -1 */
    assert_int_equal(mopt_qparams_asymmetric(-1.0f, 1.0f, -128, 127, &p, &err), MOPT_OK);
    assert_true(fbits(p.scale) == fbits(0x1.010102p-7f));
    assert_int_equal(p.zero_point, -1);
    /* [0, 6] uint8: scale 6/255 = 0x1.818182p-6, zf = 0 */
    assert_int_equal(mopt_qparams_asymmetric(0.0f, 6.0f, 0, 255, &p, &err), MOPT_OK);
    assert_true(fbits(p.scale) == fbits(0x1.818182p-6f));
    assert_int_equal(p.zero_point, 0);
    /* [0.5, 2]: min widened to 0 -> zf = -128 exactly */
    assert_int_equal(mopt_qparams_asymmetric(0.5f, 2.0f, -128, 127, &p, &err), MOPT_OK);
    assert_true(fbits(p.scale) == fbits(0x1.010102p-7f));
    assert_int_equal(p.zero_point, -128);
    /* [-3, -1]: max widened to 0; scale 3/255 = 0x1.818182p-7;
     * zf = (float)(-128 + 3 / scale) = 126.99999 -> 127 */
    assert_int_equal(mopt_qparams_asymmetric(-3.0f, -1.0f, -128, 127, &p, &err), MOPT_OK);
    assert_true(fbits(p.scale) == fbits(0x1.818182p-7f));
    assert_int_equal(p.zero_point, 127);
    /* [0, 0]: widened to [-1e-6, 1e-6]: scale = (float)2e-6 / 255
     * = 0x1.0d7cf6p-27, zf = -0.49999273 -> 0 */
    assert_int_equal(mopt_qparams_asymmetric(0.0f, 0.0f, -128, 127, &p, &err), MOPT_OK);
    assert_true(fbits(p.scale) == fbits(0x1.0d7cf6p-27f));
    assert_int_equal(p.zero_point, 0);
    /* errors */
    assert_int_equal(mopt_qparams_asymmetric(NAN, 1.0f, -128, 127, &p, &err), MOPT_ERR_ARG);
    assert_non_null(strstr(err.msg, "qparams_asymmetric"));
    assert_int_equal(mopt_qparams_asymmetric(-1.0f, INFINITY, -128, 127, &p, &err), MOPT_ERR_ARG);
    assert_int_equal(mopt_qparams_asymmetric(-1.0f, 1.0f, 5, 5, &p, &err), MOPT_ERR_ARG);
    assert_int_equal(mopt_qparams_asymmetric(-FLT_MAX, FLT_MAX, -128, 127, &p, &err), MOPT_ERR_ARG);
    /* int16 symmetric: max(|-0.5|, |2|) / 32767 */
    assert_int_equal(mopt_qparams_symmetric_int16(-0.5f, 2.0f, &p, &err), MOPT_OK);
    assert_true(fbits(p.scale) == fbits(2.0f / 32767.0f));
    assert_int_equal(p.zero_point, 0);
    assert_int_equal(mopt_qparams_symmetric_int16(-3.0f, 2.0f, &p, &err), MOPT_OK);
    assert_true(fbits(p.scale) == fbits(3.0f / 32767.0f));
    assert_int_equal(mopt_qparams_symmetric_int16(0.0f, 0.0f, &p, &err), MOPT_OK);
    assert_true(p.scale > 0.0f);
    assert_int_equal(mopt_qparams_symmetric_int16(NAN, 0.0f, &p, &err), MOPT_ERR_ARG);
}

static void test_weights_and_bias_hand(void **state) {
    (void)state;
    mopt_error err;
    /* per tensor: a = 1.27f, scale = 2a / 254 = a / 127 = 0x1.47ae14p-7;
     * inv = 127 / 1.27f = 100.0f exactly; 0.635f * 100 = 63.5 (tie) -> 64 */
    const float w[6] = {0.5f, -1.27f, 0.3f, 0.635f, -0.635f, 0.0f};
    int8_t q[6];
    float s = 0;
    assert_int_equal(mopt_quantize_weights_per_tensor(w, 6, q, &s, &err), MOPT_OK);
    assert_true(fbits(s) == fbits(0x1.47ae14p-7f));
    const int8_t want[6] = {50, -127, 30, 64, -64, 0};
    assert_memory_equal(q, want, 6);
    /* all-zero tensor: converter widens to +-5e-7: scale (2 * 5e-7f) / 254 */
    const float z[3] = {0, 0, 0};
    memset(q, 99, sizeof q);
    assert_int_equal(mopt_quantize_weights_per_tensor(z, 3, q, &s, &err), MOPT_OK);
    assert_true(fbits(s) == fbits(0x1.0e8c94p-28f));
    assert_int_equal(q[0] | q[1] | q[2], 0);
    const float bad[2] = {1.0f, NAN};
    assert_int_equal(mopt_quantize_weights_per_tensor(bad, 2, q, &s, &err), MOPT_ERR_ARG);
    assert_non_null(strstr(err.msg, "weight 1"));

    /* per channel, [outer 2][channels 3][inner 2]: channel 1 all zero,
     * channel 2 tiny (max 4e-7 -> range 8e-7 <= 1e-6, widened to +-5e-7) */
    const float wc[12] = {1.0f, -0.5f, 0.0f, 0.0f, 2e-7f, -4e-7f,
                          0.25f, 0.1f, 0.0f, -0.0f, 1e-7f, 3e-7f};
    int8_t qc[12];
    float sc[3];
    assert_int_equal(mopt_quantize_weights_per_channel(wc, 2, 3, 2, qc, sc, &err), MOPT_OK);
    /* channel 0: a = 1, scale = 2 / 254 = 0x1.020408p-7; inv = (float)(1 /
     * (double)scale) = 127.0f; q = 127, -63.5 -> -64, 31.75 -> 32, 12.7 -> 13 */
    assert_true(fbits(sc[0]) == fbits(0x1.020408p-7f));
    assert_true(fbits(sc[1]) == fbits(0x1.0e8c94p-28f));
    assert_true(fbits(sc[2]) == fbits(0x1.0e8c94p-28f));
    /* channel 2: inv = 1 / 3.937008e-9 = 254000000; 2e-7 * inv = 50.8 -> 51,
     * -4e-7 -> -101.6 -> -102, 1e-7 -> 25.4 -> 25, 3e-7 -> 76.2 -> 76 */
    const int8_t wantc[12] = {127, -64, 0, 0, 51, -102, 32, 13, 0, 0, 25, 76};
    assert_memory_equal(qc, wantc, 12);
    /* with given scales (the converter's bias-driven adjustment) */
    const float given[3] = {0.5f, 1.0f, 1e-7f};
    assert_int_equal(mopt_quantize_weights_with_scales(wc, 2, 3, 2, given, qc, &err), MOPT_OK);
    /* 1 / 0.5 = 2: 2, -1, 0.5 -> 1 (tie away), 0.2 -> 0; 2e-7 / 1e-7f = 2,
     * -4, 1, 3 (inv = (float)(1 / (double)1e-7f) = 1e7 to float precision) */
    const int8_t wantg[12] = {2, -1, 0, 0, 2, -4, 1, 0, 0, 0, 1, 3};
    assert_memory_equal(qc, wantg, 12);
    const float badscale[3] = {0.5f, 0.0f, 1.0f};
    assert_int_equal(mopt_quantize_weights_with_scales(wc, 2, 3, 2, badscale, qc, &err), MOPT_ERR_ARG);
    assert_non_null(strstr(err.msg, "scale 1"));
    assert_int_equal(mopt_quantize_weights_per_channel(wc, 2, 0, 2, qc, sc, &err), MOPT_ERR_ARG);

    /* bias: inv = (float)(1.0 / scale); 2.5 * 1 -> 3, -2.5 -> -3 (away);
     * 1e10 saturates at 2^31 - 1, -1e10 at -(2^31 - 1) (not INT32_MIN);
     * NaN -> 0; scale 0 -> inv 0 -> 0 */
    const float b[5] = {2.5f, -2.5f, 1e10f, -1e10f, NAN};
    const float one = 1.0f;
    int32_t qb[5];
    assert_int_equal(mopt_quantize_bias_int32(b, 5, &one, 1, qb, &err), MOPT_OK);
    const int32_t wantb[5] = {3, -3, INT32_MAX, -INT32_MAX, 0};
    assert_memory_equal(qb, wantb, sizeof wantb);
    const float bs[2] = {0.25f, 0.0f};
    assert_int_equal(mopt_quantize_bias_int32(b, 2, bs, 2, qb, &err), MOPT_OK);
    assert_int_equal(qb[0], 10);
    assert_int_equal(qb[1], 0);
    int64_t qb64[5];
    assert_int_equal(mopt_quantize_bias_int64(b, 5, &one, 1, qb64, &err), MOPT_OK);
    assert_true(qb64[2] == (int64_t)1e10f);
    assert_true(qb64[3] == -(int64_t)1e10f);
    assert_true(qb64[4] == 0);
    assert_int_equal(mopt_quantize_bias_int32(b, 5, bs, 2, qb, &err), MOPT_ERR_ARG);
    assert_non_null(strstr(err.msg, "2 scales for 5 values"));
    /* bias scale: the float product, via an exact double product */
    assert_true(fbits(mopt_bias_scale(0.1f, 0.3f)) == fbits((float)((double)0.1f * (double)0.3f)));
}

/* Goldens from the TF 2.21.0 converter (see the file comment). */
/* {min, max, scale, zero point} of int8 inputs */
static const struct { float min, max, scale; int32_t zp; } conv_act_int8[] = {
    {-0x1.b5961c0000000p-1f, 0x1.3930a40000000p+2f, 0x1.7154bc0000000p-6f, -90},
    {-0x1.5cc1860000000p+1f, 0x1.a4e7600000000p+1f, 0x1.8256ca0000000p-6f, -12},
    {-0x1.2327540000000p-1f, 0x1.ada0980000000p+0f, 0x1.20bada0000000p-7f, -63},
    {-0x1.7889b80000000p+0f, 0x1.94f6700000000p+1f, 0x1.29c76e0000000p-6f, -47},
    {0x1.45af180000000p-2f, 0x1.57e4460000000p-1f, 0x1.593d840000000p-9f, -128},
    {-0x1.0450ca0000000p+0f, 0x1.591e720000000p-1f, 0x1.b292960000000p-8f, 25},
};
static const struct { float min, max, scale; } conv_act_int16[] = {
    {0x1.d0c7780000000p-2f, 0x1.9f940e0000000p+1f, 0x1.9f974e0000000p-14f},
    {-0x1.e0a5640000000p-1f, 0x1.97b7a20000000p+1f, 0x1.97bad20000000p-14f},
    {-0x1.6a69ee0000000p+1f, 0x1.06f1320000000p+2f, 0x1.06f3400000000p-13f},
};
/* per-channel conv filter [4,3,3,3] */
static const float conv_w_pc[108] = {-0x1.54cfc80000000p+1f, -0x1.3323400000000p-1f, 0x1.258f680000000p+0f, -0x1.a8dae80000000p-1f, 0x1.79b8000000000p-1f, -0x1.305e280000000p+1f, -0x1.40d48a0000000p-2f, 0x1.2fdc720000000p+1f, 0x1.a30c780000000p-2f, 0x1.c5e7f00000000p-2f, -0x1.9a6d840000000p+0f, -0x1.2e6eec0000000p+0f, 0x1.764d2e0000000p+0f, -0x1.aa0b160000000p-1f, -0x1.8a8c040000000p+1f, -0x1.33e0960000000p+1f, -0x1.bfe4a00000000p+1f, -0x1.18c6b20000000p+1f, -0x1.a9979a0000000p-1f, -0x1.4df09e0000000p-3f, -0x1.d36b7c0000000p-2f, -0x1.36e2c40000000p+1f, -0x1.4516920000000p+1f, 0x1.f6e1d80000000p+0f, -0x1.ab1f820000000p-3f, -0x1.ecdc100000000p-2f, -0x1.078cbe0000000p-2f, -0x1.1d151c0000000p-1f, 0x1.8dde740000000p-4f, -0x1.627ce40000000p-2f, -0x1.433ede0000000p-5f, -0x1.6c0b780000000p+0f, -0x1.b59e280000000p-1f, -0x1.6f90fe0000000p+0f, 0x1.ef78440000000p-2f, -0x1.14c7d00000000p-3f, 0x1.b29f3e0000000p-3f, -0x1.21f01a0000000p-1f, 0x1.c53e840000000p-1f, -0x1.b6c53a0000000p-4f, -0x1.348a8e0000000p-2f, -0x1.4dd88c0000000p-2f, -0x1.9dd1180000000p-1f, -0x1.9901a80000000p+0f, 0x1.e114440000000p-2f, 0x1.c0467a0000000p-2f, -0x1.638c340000000p-1f, 0x1.98787a0000000p-2f, 0x1.525d9a0000000p+0f, 0x1.cb45820000000p-2f, 0x1.951f780000000p-4f, 0x1.30176a0000000p-2f, 0x1.6865900000000p-1f, 0x1.871d620000000p-1f, -0x1.bbb9940000000p-2f, 0x1.de7b260000000p-2f, -0x1.ac79080000000p-2f, -0x1.13e9fe0000000p-1f, -0x1.91f5080000000p-4f, -0x1.afb4500000000p-2f, -0x1.e08e4e0000000p-3f, -0x1.0e3a3a0000000p-3f, 0x1.5cb6060000000p-5f, 0x1.576e8e0000000p-2f, 0x1.b34d8e0000000p-2f, 0x1.a27ae40000000p-4f, -0x1.7917240000000p-1f, 0x1.4ecdd20000000p-2f, 0x1.1ad5320000000p-3f, -0x1.0a49260000000p-4f, -0x1.518f720000000p-3f, 0x1.c8ae2a0000000p-2f, -0x1.e736320000000p-3f, 0x1.713c1e0000000p-3f, -0x1.1b5f1e0000000p-4f, 0x1.3a09300000000p-1f, -0x1.4def5c0000000p-2f, -0x1.255ac20000000p-4f, 0x1.ec4bc60000000p-1f, 0x1.09f1860000000p-4f, -0x1.52796e0000000p-2f, 0x1.8383140000000p-3f, 0x1.37522c0000000p-1f, -0x1.27ac4e0000000p-1f, -0x1.9bac6c0000000p-1f, 0x1.350a4e0000000p-2f, 0x1.d64cb80000000p-2f, 0x1.6fea200000000p-1f, -0x1.4ebd020000000p+0f, 0x1.17d44e0000000p+0f, -0x1.74680e0000000p-3f, 0x1.6e2d060000000p-2f, -0x1.e653d40000000p-1f, 0x1.761c1e0000000p-2f, -0x1.8dcc300000000p+0f, -0x1.e2b2860000000p-2f, 0x1.e9e4320000000p-2f, -0x1.153f4a0000000p-2f, -0x1.9970e40000000p-2f, -0x1.fd295a0000000p-1f, -0x1.6ea0700000000p-2f, -0x1.cc221a0000000p-2f, -0x1.10d10c0000000p+0f, 0x1.6026e80000000p-7f, -0x1.57b62a0000000p-2f, 0x1.8275a80000000p-1f, -0x1.0cc6ac0000000p+0f, 0x1.53a5000000000p-1f};
static const int8_t conv_q_pc[108] = {-97, -22, 42, -30, 27, -86, -11, 86, 15, 16, -58, -43, 53, -30, -112, -87, -127, -80, -30, -6, -17, -88, -92, 71, -8, -17, -9, -44, 8, -28, -3, -113, -68, -114, 38, -11, 17, -45, 70, -9, -24, -26, -64, -127, 37, 35, -55, 32, 105, 36, 8, 24, 56, 61, -57, 62, -55, -71, -13, -56, -31, -17, 6, 44, 56, 13, -97, 43, 18, -9, -22, 59, -31, 24, -9, 81, -43, -9, 127, 9, -44, 15, 50, -47, -66, 25, 38, 59, -107, 89, -15, 29, -78, 30, -127, -39, 39, -22, -33, -81, -29, -37, -87, 1, -27, 62, -86, 54};
static const float conv_s_pc[4] = {0x1.c36b760000000p-6f, 0x1.9c3a1c0000000p-7f, 0x1.f02c1e0000000p-8f, 0x1.90ee0c0000000p-7f};
static const float conv_b[4] = {0x1.1697820000000p-3f, 0x1.35ca260000000p-2f, -0x1.1625040000000p-3f, -0x1.c18ed20000000p-2f};
static const float conv_b_scale[4] = {0x1.45a1a80000000p-11f, 0x1.295c1a0000000p-12f, 0x1.65e9ea0000000p-13f, 0x1.2135ea0000000p-12f};
static const int32_t conv_b_q[4] = {219, 1067, -796, -1592};
/* per-tensor conv filter [4,3,3,3] */
static const float conv_w_pt[108] = {0x1.6dcfc20000000p+1f, -0x1.0a721e0000000p-1f, 0x1.c9dcfa0000000p-3f, 0x1.c869020000000p-1f, 0x1.1e66c20000000p+1f, 0x1.7da34e0000000p-1f, -0x1.7e5c000000000p+0f, -0x1.eaee1a0000000p-1f, -0x1.0d37f80000000p+1f, 0x1.954b700000000p+1f, -0x1.07ecea0000000p+1f, 0x1.6736220000000p-1f, 0x1.45486a0000000p+0f, -0x1.4fd0f20000000p+0f, 0x1.2761860000000p+2f, -0x1.8aa7160000000p+0f, 0x1.682a100000000p-1f, 0x1.0ffae20000000p+0f, 0x1.11491e0000000p+1f, -0x1.e54f860000000p+0f, 0x1.6979a80000000p-2f, 0x1.a73f360000000p+0f, 0x1.b803f40000000p-2f, -0x1.ad94420000000p-1f, 0x1.63e7140000000p-1f, -0x1.606a1e0000000p+0f, 0x1.a21a3a0000000p-2f, 0x1.0810960000000p+1f, 0x1.a3a5580000000p+2f, 0x1.6b082c0000000p+1f, 0x1.3753200000000p-2f, 0x1.41102e0000000p+2f, -0x1.266d9a0000000p+2f, -0x1.18708e0000000p+2f, -0x1.433b100000000p+1f, -0x1.7b831c0000000p+0f, 0x1.d627e00000000p-2f, -0x1.9384680000000p-1f, -0x1.c1157a0000000p-1f, 0x1.3ec6420000000p+0f, 0x1.806b580000000p+0f, 0x1.d540fe0000000p-2f, -0x1.8524f60000000p+2f, -0x1.e890700000000p+1f, -0x1.35279c0000000p+2f, 0x1.298a340000000p+0f, -0x1.332ce20000000p+1f, 0x1.83fca40000000p+2f, 0x1.2f7f180000000p+0f, 0x1.0aad320000000p+1f, 0x1.c932680000000p+1f, -0x1.bb4eea0000000p+1f, -0x1.b8007e0000000p+0f, 0x1.26bbe20000000p+2f, -0x1.9917240000000p-4f, -0x1.8dd8140000000p-4f, -0x1.2bfa380000000p-12f, 0x1.12b2000000000p-4f, -0x1.2a0dcc0000000p-7f, 0x1.03fbcc0000000p-5f, -0x1.7af3280000000p-6f, -0x1.da8d920000000p-5f, -0x1.c59ad40000000p-4f, 0x1.a410060000000p-3f, 0x1.1f68180000000p-7f, 0x1.75a3280000000p-4f, 0x1.a8aec20000000p-6f, 0x1.ea0a300000000p-5f, -0x1.0ecca40000000p-3f, 0x1.55f7120000000p-5f, 0x1.78ebaa0000000p-6f, 0x1.9e85b80000000p-8f, 0x1.8f2ee60000000p-3f, 0x1.047b100000000p-3f, 0x1.ffa6840000000p-9f, -0x1.e3663c0000000p-4f, -0x1.fe015a0000000p-5f, -0x1.c1dc280000000p-4f, -0x1.89cc560000000p-3f, -0x1.8974fe0000000p-7f, 0x1.5886680000000p-5f, -0x1.bbe7fc0000000p-3f, 0x1.6816cc0000000p+0f, 0x1.9b33940000000p-2f, 0x1.6e098e0000000p-2f, -0x1.88080c0000000p-3f, -0x1.126b0c0000000p-1f, 0x1.0ae8060000000p-1f, -0x1.3cfa8e0000000p-3f, -0x1.08119a0000000p-3f, -0x1.6ad4d60000000p-1f, 0x1.87adc00000000p-2f, -0x1.75cd620000000p-4f, 0x1.cef4820000000p-3f, -0x1.f83ace0000000p-2f, -0x1.9b40820000000p+0f, -0x1.166c000000000p+0f, 0x1.19d1040000000p+0f, -0x1.87608e0000000p-2f, 0x1.b520220000000p-3f, -0x1.ee07d40000000p-1f, -0x1.b88bb40000000p-1f, 0x1.aab9b40000000p-1f, 0x1.3560000000000p+0f, 0x1.6a72d40000000p-2f, -0x1.5bb06e0000000p-1f, 0x1.292ab20000000p+1f, 0x1.2ea2920000000p+0f};
static const int8_t conv_q_pt[108] = {55, -10, 4, 17, 43, 14, -29, -19, -41, 61, -40, 14, 25, -25, 89, -30, 14, 21, 41, -37, 7, 32, 8, -16, 13, -27, 8, 40, 127, 55, 6, 97, -89, -85, -49, -29, 9, -15, -17, 24, 29, 9, -118, -74, -94, 23, -46, 117, 23, 40, 69, -67, -33, 89, -2, -2, 0, 1, 0, 1, 0, -1, -2, 4, 0, 2, 1, 1, -3, 1, 0, 0, 4, 2, 0, -2, -1, -2, -4, 0, 1, -4, 27, 8, 7, -4, -10, 10, -3, -2, -14, 7, -2, 4, -10, -31, -21, 21, -7, 4, -19, -17, 16, 23, 7, -13, 45, 23};
static const float conv_s_pt = 0x1.a6f33e0000000p-5f;

static void test_converter_goldens(void **state) {
    (void)state;
    mopt_qparams p;
    for (size_t i = 0; i < sizeof conv_act_int8 / sizeof conv_act_int8[0]; i++) {
        assert_int_equal(mopt_qparams_asymmetric(conv_act_int8[i].min, conv_act_int8[i].max, -128,
                                                 127, &p, NULL),
                         MOPT_OK);
        assert_true(fbits(p.scale) == fbits(conv_act_int8[i].scale));
        assert_int_equal(p.zero_point, conv_act_int8[i].zp);
    }
    for (size_t i = 0; i < sizeof conv_act_int16 / sizeof conv_act_int16[0]; i++) {
        assert_int_equal(mopt_qparams_symmetric_int16(conv_act_int16[i].min, conv_act_int16[i].max,
                                                      &p, NULL),
                         MOPT_OK);
        assert_true(fbits(p.scale) == fbits(conv_act_int16[i].scale));
        assert_int_equal(p.zero_point, 0);
    }
    /* per-channel filter [OC 4][3*3*3]: outer 1, inner 27 */
    int8_t q[108];
    float s[4];
    assert_int_equal(mopt_quantize_weights_per_channel(conv_w_pc, 1, 4, 27, q, s, NULL), MOPT_OK);
    for (int c = 0; c < 4; c++) assert_true(fbits(s[c]) == fbits(conv_s_pc[c]));
    assert_memory_equal(q, conv_q_pc, sizeof q);
    float sc = 0;
    assert_int_equal(mopt_quantize_weights_per_tensor(conv_w_pt, 108, q, &sc, NULL), MOPT_OK);
    assert_true(fbits(sc) == fbits(conv_s_pt));
    assert_memory_equal(q, conv_q_pt, sizeof q);
    /* bias: scale = input scale (first int8 case) * filter scale */
    for (int c = 0; c < 4; c++)
        assert_true(fbits(mopt_bias_scale(conv_act_int8[0].scale, conv_s_pc[c])) ==
                    fbits(conv_b_scale[c]));
    int32_t qb[4];
    assert_int_equal(mopt_quantize_bias_int32(conv_b, 4, conv_b_scale, 4, qb, NULL), MOPT_OK);
    assert_memory_equal(qb, conv_b_q, sizeof qb);
}

static void test_quantize_dequantize_range(void **state) {
    (void)state;
    /* 0.25 / 0.5 = 0.5 -> away -> 1, + 3 = 4; -0.25 -> -1 + 3 = 2 */
    assert_int_equal(mopt_quantize_value(0.25f, 0.5f, 3, -128, 127), 4);
    assert_int_equal(mopt_quantize_value(-0.25f, 0.5f, 3, -128, 127), 2);
    assert_int_equal(mopt_quantize_value(1000.0f, 0.5f, 3, -128, 127), 127);
    assert_int_equal(mopt_quantize_value(-1e30f, 1e-30f, 0, -32768, 32767), -32768);
    assert_int_equal(mopt_quantize_value(INFINITY, 0.5f, 0, 0, 255), 255);
    assert_int_equal(mopt_quantize_value(NAN, 0.5f, 3, -128, 127), 3);
    /* binary32 division: 1 / 0.4f = 2.49999996 in double, 2.5f in float */
    assert_int_equal(mopt_quantize_value(1.0f, 0.4f, 0, -128, 127), 3);
    /* dequantize: (double)0.1f * 2 rounded to float */
    assert_true(fbits(mopt_dequantize_value(5, 0.1f, 3)) == fbits((float)((double)0.1f * 2.0)));
    assert_true(mopt_dequantize_value(-128, 0.5f, 127) == -127.5f);

    int32_t lo, hi;
    /* scale 0.05, zp -10: quantize(0) = -10, 6 / 0.05f = 120 -> 110,
     * -1 / 0.05f = -20 -> -30, 1 -> 10 */
    assert_int_equal(mopt_activation_range_quantized(MOPT_ACT_RELU, 0.05f, -10, -128, 127, &lo, &hi), MOPT_OK);
    assert_int_equal(lo, -10);
    assert_int_equal(hi, 127);
    assert_int_equal(mopt_activation_range_quantized(MOPT_ACT_RELU6, 0.05f, -10, -128, 127, &lo, &hi), MOPT_OK);
    assert_int_equal(lo, -10);
    assert_int_equal(hi, 110);
    assert_int_equal(mopt_activation_range_quantized(MOPT_ACT_RELU_N1_TO_1, 0.05f, -10, -128, 127, &lo, &hi), MOPT_OK);
    assert_int_equal(lo, -30);
    assert_int_equal(hi, 10);
    assert_int_equal(mopt_activation_range_quantized(MOPT_ACT_NONE, 0.05f, -10, -128, 127, &lo, &hi), MOPT_OK);
    assert_int_equal(lo, -128);
    assert_int_equal(hi, 127);
    assert_int_equal(mopt_activation_range_quantized(MOPT_ACT_TANH, 0.05f, -10, -128, 127, &lo, &hi), MOPT_OK);
    assert_int_equal(lo, -128);
    /* 1 / 0.4f is 2.5f in binary32 -> 3 (a double division would give 2) */
    assert_int_equal(mopt_activation_range_quantized(MOPT_ACT_RELU_N1_TO_1, 0.4f, 0, -128, 127, &lo, &hi), MOPT_OK);
    assert_int_equal(lo, -3);
    assert_int_equal(hi, 3);
    /* clamped by qmin/qmax: RELU6 with a tiny scale */
    assert_int_equal(mopt_activation_range_quantized(MOPT_ACT_RELU6, 1e-3f, -128, -128, 127, &lo, &hi), MOPT_OK);
    assert_int_equal(lo, -128);
    assert_int_equal(hi, 127);
    assert_int_equal(mopt_activation_range_quantized(MOPT_ACT_RELU6, 1e-30f, 0, -32768, 32767, &lo, &hi), MOPT_OK);
    assert_int_equal(hi, 32767);
    assert_int_equal(mopt_activation_range_quantized(MOPT_ACT_RELU, 0.0f, 0, -128, 127, &lo, &hi), MOPT_ERR_ARG);
    assert_int_equal(mopt_activation_range_quantized(MOPT_ACT_RELU, 1.0f, 0, 5, 4, &lo, &hi), MOPT_ERR_ARG);
}
/* ------------------------------------------------------------------------
 * float16
 * ------------------------------------------------------------------------ */

static int half_is_nan(uint16_t h) { return (h & 0x7C00u) == 0x7C00u && (h & 0x3FFu) != 0; }

static void test_float16(void **state) {
    (void)state;
    /* every half: half -> float -> half is the identity (NaN: stays a NaN
     * with its sign; the payload is canonicalised to 0x7E00) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = mopt_half_to_float((uint16_t)h);
        uint16_t back = mopt_float_to_half(f);
        if (half_is_nan((uint16_t)h)) {
            assert_true(isnan(f));
            assert_int_equal(back, (h & 0x8000u) | 0x7E00u);
        } else if (back != h) {
            fail_msg("half 0x%04x -> %a -> 0x%04x", (unsigned)h, (double)f, (unsigned)back);
        }
    }
    /* exact values, from the definition value = (-1)^s 2^(e-15) (1 + m/1024) */
    assert_true(mopt_half_to_float(0x3C00) == 1.0f);
    assert_true(mopt_half_to_float(0xC000) == -2.0f);
    assert_true(mopt_half_to_float(0x7BFF) == 65504.0f);
    assert_true(mopt_half_to_float(0x0001) == 0x1p-24f);   /* smallest subnormal */
    assert_true(mopt_half_to_float(0x03FF) == 0x1.ff8p-15f); /* largest subnormal */
    assert_true(mopt_half_to_float(0x0400) == 0x1p-14f);   /* smallest normal */
    assert_true(isinf(mopt_half_to_float(0x7C00)) && mopt_half_to_float(0x7C00) > 0);
    assert_true(isinf(mopt_half_to_float(0xFC00)) && mopt_half_to_float(0xFC00) < 0);
    assert_true(signbit(mopt_half_to_float(0x8000)) && mopt_half_to_float(0x8000) == 0.0f);

    /* float -> half rounding at boundaries (round to nearest even) */
    assert_int_equal(mopt_float_to_half(65504.0f), 0x7BFF);
    assert_int_equal(mopt_float_to_half(65519.99f), 0x7BFF); /* below the midpoint 65520 */
    assert_int_equal(mopt_float_to_half(65520.0f), 0x7C00);  /* midpoint, even -> inf */
    assert_int_equal(mopt_float_to_half(1e6f), 0x7C00);
    assert_int_equal(mopt_float_to_half(-INFINITY), 0xFC00);
    assert_int_equal(mopt_float_to_half(NAN), 0x7E00);
    assert_int_equal(mopt_float_to_half(-NAN) & 0x8000, 0x8000);
    assert_int_equal(mopt_float_to_half(0x1p-24f), 0x0001);
    assert_int_equal(mopt_float_to_half(0x1p-25f), 0x0000);       /* tie -> even 0 */
    assert_int_equal(mopt_float_to_half(0x1.000002p-25f), 0x0001); /* just above the tie */
    assert_int_equal(mopt_float_to_half(0x1.8p-24f), 0x0002);     /* 1.5 units: tie -> even 2 */
    assert_int_equal(mopt_float_to_half(0x1.4p-23f), 0x0002);     /* 2.5 units -> 2 */
    assert_int_equal(mopt_float_to_half(0x1.ffcp-15f), 0x0400);   /* 1023.5 units -> 1024 = min normal */
    assert_int_equal(mopt_float_to_half(1.0f + 0x1p-11f), 0x3C00);  /* tie -> even */
    assert_int_equal(mopt_float_to_half(1.0f + 0x3p-11f), 0x3C02);  /* tie -> even (up) */
    assert_int_equal(mopt_float_to_half(0x1.002002p+0f), 0x3C01); /* 1 + 2^-11 + 2^-23: above the tie */
    assert_int_equal(mopt_float_to_half(0x1p-149f), 0x0000); /* float subnormal */
    assert_int_equal(mopt_float_to_half(-0x1p-130f), 0x8000);
    /* the converter's weight clamp */
    assert_int_equal(mopt_float_to_half_clamped(65520.0f), 0x7BFF);
    assert_int_equal(mopt_float_to_half_clamped(INFINITY), 0x7BFF);
    assert_int_equal(mopt_float_to_half_clamped(-1e30f), 0xFBFF);
    assert_int_equal(mopt_float_to_half_clamped(NAN), 0x7E00);
    assert_int_equal(mopt_float_to_half_clamped(1.0f), 0x3C00);

    /* every midpoint between adjacent finite halves rounds to the even one,
     * and one float ulp either side rounds to the nearer one */
    for (uint32_t h = 0; h < 0x7BFF; h++) {
        float a = mopt_half_to_float((uint16_t)h), b = mopt_half_to_float((uint16_t)(h + 1));
        double mid = ((double)a + (double)b) / 2.0; /* exact in float: halves have 11 bits */
        float fm = (float)mid;
        assert_true((double)fm == mid);
        uint16_t even = (h & 1u) ? (uint16_t)(h + 1) : (uint16_t)h;
        assert_int_equal(mopt_float_to_half(fm), even);
        assert_int_equal(mopt_float_to_half(-fm), even | 0x8000);
        assert_int_equal(mopt_float_to_half(nextafterf(fm, 0.0f)), h);
        assert_int_equal(mopt_float_to_half(nextafterf(fm, INFINITY)), h + 1);
    }
#if defined(__FLT16_MAX__)
    /* the compiler's own binary16 conversions as an independent oracle */
    for (uint32_t h = 0; h < 65536; h++) {
        if (half_is_nan((uint16_t)h)) continue;
        _Float16 v;
        uint16_t hh = (uint16_t)h;
        memcpy(&v, &hh, 2);
        assert_true(fbits((float)v) == fbits(mopt_half_to_float(hh)));
    }
    for (int i = 0; i < 2000000; i++) {
        float f = ffrom((uint32_t)rng_u64());
        if (isnan(f)) continue;
        if (i & 1) f = ldexpf(f, -rng_range(0, 120)); /* bias toward the half range */
        _Float16 v = (_Float16)f;
        uint16_t want;
        memcpy(&want, &v, 2);
        if (mopt_float_to_half(f) != want)
            fail_msg("float %a: got 0x%04x, _Float16 0x%04x", (double)f,
                     (unsigned)mopt_float_to_half(f), (unsigned)want);
    }
#else
    print_message("no _Float16: compiler oracle skipped\n");
#endif
}

/* ------------------------------------------------------------------------
 * gemmlowp fixed point
 * ------------------------------------------------------------------------ */

/* Generated by a throwaway C++ program from gemmlowp fixedpoint/fixedpoint.h
 * as bundled with the tensorflow 2.21.0 wheel (include/external/gemmlowp). */
static const int32_t golden_exp_ib0[][2] = {
    {0, 2147483647},
    {-1, 2147483155},
    {-1, 2147483155},
    {-2, 2147483154},
    {-2, 2147483154},
    {-2147483648, 790015308},
    {-2147483647, 790015308},
    {-2147483647, 790015308},
    {-1073741824, 1302515042},
    {-1073741824, 1302515042},
    {-536870912, 1672462419},
    {-536870912, 1672462419},
    {-67108864, 2081412406},
    {-67108864, 2081412406},
    {-123456789, 2027508506},
    {-123456789, 2027508506},
    {-268435456, 1895147668},
    {-268435456, 1895147668},
    {-402653184, 1780326490},
    {-402653184, 1780326490},
    {-359, 2147482797},
    {-1278963638, 1183803910},
    {-1133916350, 1266523503},
    {-221, 2147482936},
    {-160559091, 1992779913},
    {-275375781, 1889032739},
    {-63442, 2147419716},
    {-221599805, 1936934000},
    {-1515576097, 1060299776},
    {-1253936, 2146229598},
    {-1638107161, 1001494653},
    {-937965170, 1387526548},
    {-888672481, 1419743739},
    {-190526609, 1965164377},
    {-180267649, 1974574821},
    {-136237, 2147346925},
    {-2073484000, 817712547},
    {-638377538, 1595247717},
    {-64492, 2147418666},
    {-1843847429, 909999157},
    {-645310075, 1590106226},
    {-1709155, 2145774697},
    {-819514095, 1466209901},
    {-327947375, 1843349623},
    {-2786, 2147480371},
    {-689550889, 1557683221},
    {-1476538181, 1079750612},
    {-709724, 2146773556},
};
static const int32_t golden_exp_ib1[][2] = {
    {0, 2147483647},
    {-1, 2147483154},
    {-1, 2147483154},
    {-2, 2147483153},
    {-2, 2147483153},
    {-2147483648, 290630390},
    {-2147483647, 290630390},
    {-2147483647, 290630390},
    {-1073741824, 790015308},
    {-1073741824, 790015308},
    {-536870912, 1302515042},
    {-536870912, 1302515042},
    {-67108864, 2017374176},
    {-67108864, 2017374176},
    {-123456789, 1914236151},
    {-123456789, 1914236151},
    {-268435456, 1672462419},
    {-268435456, 1672462419},
    {-402653184, 1475942488},
    {-402653184, 1475942488},
    {-5873, 2147471411},
    {-1505229960, 528581709},
    {-106162041, 1945318380},
    {-6698, 2147469761},
    {-775780254, 1042680892},
    {-1893631624, 368142477},
    {-976, 2147481204},
    {-2028291577, 324750861},
    {-1252940084, 668583072},
    {-836536, 2145810751},
    {-1852912635, 382371545},
    {-543689219, 1294269625},
    {-838342095, 983664678},
    {-1649819871, 461987349},
    {-1833389079, 389387673},
    {-455, 2147482246},
    {-463126208, 1395115034},
    {-482029845, 1370768463},
    {-458, 2147482240},
    {-2136633880, 293581962},
    {-554572737, 1281217166},
    {-34099145, 2080356770},
    {-1954913173, 347719899},
    {-1246450436, 672636194},
    {-18422645, 2110952410},
    {-1947438617, 350148898},
    {-520888642, 1322047350},
    {-251602943, 1698887122},
};
static const int32_t golden_exp_ib4[][2] = {
    {0, 2147483647},
    {-1, 2147483140},
    {-1, 2147483140},
    {-2, 2147483124},
    {-2, 2147483124},
    {-2147483648, 242},
    {-2147483647, 242},
    {-2147483647, 242},
    {-1073741824, 720401},
    {-1073741824, 720401},
    {-536870912, 39332546},
    {-536870912, 39332546},
    {-67108864, 1302515042},
    {-67108864, 1302515042},
    {-123456789, 855963115},
    {-123456789, 855963115},
    {-268435456, 290630390},
    {-268435456, 290630390},
    {-402653184, 106916946},
    {-402653184, 106916946},
    {-18654, 2147184716},
    {-283205644, 260344451},
    {-945694501, 1870263},
    {-143, 2147480869},
    {-944044737, 1893393},
    {-94286703, 1063756069},
    {-63411959, 1338890023},
    {-259085246, 311598823},
    {-1131113694, 469822},
    {-500, 2147475156},
    {-1146617521, 418569},
    {-352806161, 155002509},
    {-17960, 2147195818},
    {-1566803982, 18287},
    {-1312726521, 121417},
    {-22905, 2147116712},
    {-331536058, 181619891},
    {-1449547808, 43809},
    {-342402649, 167494998},
    {-6471832, 2046391164},
    {-881833373, 3009823},
    {-200808, 2144272660},
    {-166176283, 622623759},
    {-1379447104, 73857},
    {-5210, 2147399799},
    {-1196401677, 288854},
    {-1659196434, 9187},
    {-6150, 2147384760},
};
static const int32_t golden_exp_ib5[][2] = {
    {0, 2147483647},
    {-1, 2147483124},
    {-1, 2147483124},
    {-2, 2147483093},
    {-2, 2147483093},
    {-2147483648, 0},
    {-2147483647, 0},
    {-2147483647, 0},
    {-1073741824, 242},
    {-1073741824, 242},
    {-536870912, 720401},
    {-536870912, 720401},
    {-67108864, 790015308},
    {-67108864, 790015308},
    {-123456789, 341177383},
    {-123456789, 341177383},
    {-268435456, 39332546},
    {-268435456, 39332546},
    {-402653184, 5323081},
    {-402653184, 5323081},
    {-1106726, 2112358601},
    {-1328483406, 5},
    {-2042833020, 0},
    {-410808, 2134377564},
    {-1468056308, 1},
    {-214794982, 87475382},
    {-3300, 2147377560},
    {-861029237, 5752},
    {-473226587, 1859721},
    {-65524, 2145387431},
    {-1351682990, 4},
    {-1444598637, 1},
    {-523464334, 879700},
    {-2076844784, 0},
    {-1355537320, 4},
    {-17630, 2146919076},
    {-180184625, 146509739},
    {-1200718845, 36},
    {-128798, 2143365610},
    {-1118082095, 125},
    {-318857914, 18554246},
    {-296308856, 25963871},
    {-1410304358, 2},
    {-216164067, 85708886},
    {-710726745, 54009},
    {-1341559681, 4},
    {-504504397, 1166900},
    {-14832, 2147008589},
};
static const int32_t golden_exp_ib6[][2] = {
    {0, 2147483647},
    {-1, 2147483093},
    {-1, 2147483093},
    {-2, 2147483028},
    {-2, 2147483028},
    {-2147483648, 0},
    {-2147483647, 0},
    {-2147483647, 0},
    {-1073741824, 0},
    {-1073741824, 0},
    {-536870912, 242},
    {-536870912, 242},
    {-67108864, 290630390},
    {-67108864, 290630390},
    {-123456789, 54203908},
    {-123456789, 54203908},
    {-268435456, 720401},
    {-268435456, 720401},
    {-402653184, 13195},
    {-402653184, 13195},
    {-576212581, 75},
    {-2071604290, 0},
    {-110384885, 80023959},
    {-1888, 2147362329},
    {-643380924, 10},
    {-1821958262, 0},
    {-10073897, 1590536238},
    {-1235846378, 0},
    {-432688256, 5391},
    {-16252, 2146443290},
    {-1494004532, 0},
    {-541679849, 210},
    {-102071, 2140960595},
    {-1876357159, 0},
    {-1906784763, 0},
    {-62816420, 330291910},
    {-135440382, 37925134},
    {-1681935324, 0},
    {-1450471300, 0},
    {-1488719176, 0},
    {-1413546309, 0},
    {-2353494, 2002020998},
    {-941734200, 0},
    {-924826295, 0},
    {-16515, 2146426466},
    {-1800165722, 0},
    {-619519854, 21},
    {-5529, 2147129332},
};
static const int32_t golden_exp_ib12[][2] = {
    {0, 2147483647},
    {-1, 2147479060},
    {-1, 2147479060},
    {-2, 2147474965},
    {-2, 2147474965},
    {-2147483648, 0},
    {-2147483647, 0},
    {-2147483647, 0},
    {-1073741824, 0},
    {-1073741824, 0},
    {-536870912, 0},
    {-536870912, 0},
    {-67108864, 0},
    {-67108864, 0},
    {-123456789, 0},
    {-123456789, 0},
    {-268435456, 0},
    {-268435456, 0},
    {-402653184, 0},
    {-402653184, 0},
    {-78656, 1848311181},
    {-1665503785, 0},
    {-893190532, 0},
    {-252, 2146451222},
    {-1984135397, 0},
    {-2069502091, 0},
    {-36746, 2002125415},
    {-1595188049, 0},
    {-871332233, 0},
    {-172285, 1546028215},
    {-1955018012, 0},
    {-1507203195, 0},
    {-32294806, 0},
    {-989780838, 0},
    {-1776201641, 0},
    {-65607679, 0},
    {-1961393192, 0},
    {-1129956084, 0},
    {-19896, 2067516469},
    {-431035341, 0},
    {-1074587470, 0},
    {-23955, 2051571735},
    {-1987469433, 0},
    {-555868096, 0},
    {-1356, 2141936206},
    {-1755043400, 0},
    {-860550445, 0},
    {-899, 2143804041},
};
static const int32_t golden_logistic_ib4[][2] = {
    {0, 1073741824},
    {1, 1073741948},
    {-1, 1073741699},
    {2, 1073741954},
    {-2, 1073741693},
    {-2147483647, 241},
    {2147483647, 2147483406},
    {1073741824, 2146763492},
    {-1073741824, 720155},
    {536870912, 2108858542},
    {-536870912, 38625105},
    {67108864, 1336721090},
    {-67108864, 810762557},
    {123456789, 1535464548},
    {-123456789, 612019099},
    {268435456, 1891497262},
    {-268435456, 255986385},
    {402653184, 2045637336},
    {-402653184, 101846311},
    {121, 1073742426},
    {2005047154, 2147482952},
    {-2114916475, 311},
    {10474334, 1115617908},
    {-734271657, 8998901},
    {491311821, 2093639122},
    {256, 1073742972},
    {-599516072, 24383095},
    {-1998271657, 737},
    {-79944, 1073421929},
    {-1574911271, 17211},
    {1770709505, 2147479644},
    {-49393687, 878367121},
    {-1544200851, 21639},
    {1335776727, 2147381398},
    {334052, 1075078140},
    {1910002640, 2147482228},
    {-2023517818, 605},
    {6275, 1073767048},
    {-130163575, 590389501},
    {320754555, 1967195476},
    {7163240, 1102387990},
    {26807424, 1180616456},
    {-699560747, 11640415},
    {-5338, 1073720349},
    {-90302225, 725568715},
    {-802699734, 5413791},
    {9814, 1073781206},
};
static const int32_t golden_logistic_ib0[][2] = {
    {0, 1073741824},
    {1, 1073741948},
    {-1, 1073741699},
    {2, 1073741948},
    {-2, 1073741699},
    {-2147483647, 577547421},
    {2147483647, 1569936226},
    {1073741824, 1336721090},
    {-1073741824, 810762557},
    {536870912, 1207264694},
    {-536870912, 940218953},
    {67108864, 1090517706},
    {-67108864, 1056965941},
    {123456789, 1104597526},
    {-123456789, 1042886121},
    {268435456, 1140763444},
    {-268435456, 1006720203},
    {402653184, 1174111236},
    {-402653184, 973372411},
    {504, 1073742072},
    {-933184428, 844048841},
    {-57191412, 1059444779},
    {-510173, 1073614161},
    {-508587140, 947186091},
    {-1425052390, 730001073},
    {-467, 1073741583},
    {1635925840, 1464029122},
    {-1873482634, 632978161},
    {-196, 1073741655},
    {289443830, 1145993434},
    {-2142500601, 578527661},
    {21403421, 1079092720},
    {-790022749, 878433899},
    {1309785141, 1391401244},
    {-489587643, 951872367},
    {694933275, 1245974754},
    {1689590522, 1475619458},
    {1919271539, 1523981970},
    {-815245710, 872343361},
    {91586009, 1096634872},
    {1982919, 1074237670},
    {-1874924040, 632678571},
    {77609035, 1093141994},
    {-1948843, 1073254493},
    {-1699628349, 669708159},
    {-1549120512, 702425551},
    {442551, 1073852584},
};
static const int32_t golden_logistic_ib8[][2] = {
    {0, 1073741824},
    {1, 1073742012},
    {-1, 1073741635},
    {2, 1073742076},
    {-2, 1073741571},
    {-2147483647, 0},
    {2147483647, 2147483647},
    {1073741824, 2147483647},
    {-1073741824, 0},
    {536870912, 2147483647},
    {-536870912, 0},
    {67108864, 2146763492},
    {-67108864, 720155},
    {123456789, 2147482774},
    {-123456789, 873},
    {268435456, 2147483647},
    {-268435456, 0},
    {402653184, 2147483647},
    {-402653184, 0},
    {-483, 1073710787},
    {990499205, 2147483647},
    {459677966, 2147483647},
    {-928, 1073682311},
    {-1600775354, 0},
    {-36497131, 27342461},
    {-2794462, 896532021},
    {-1171455258, 0},
    {-1964346574, 0},
    {187, 1073753916},
    {284751933, 2147483647},
    {1299445949, 2147483647},
    {8259, 1074270520},
    {-442604720, 0},
    {223363656, 2147483647},
    {40245, 1076317602},
    {1366155301, 2147483647},
    {30687545, 2093517314},
    {163683, 1084217256},
    {846449332, 2147483647},
    {1247913521, 2147483647},
    {7820, 1074242420},
    {324025547, 2147483647},
    {1887631535, 2147483647},
    {-530220, 1039819031},
    {1137435730, 2147483647},
    {592426237, 2147483647},
    {5227, 1074076468},
};
static const int32_t golden_tanh_ib4[][2] = {
    {0, 0},
    {1, 260},
    {-1, -260},
    {2, 276},
    {-2, -276},
    {-2147483647, -2147483647},
    {2147483647, 2147483647},
    {1073741824, 2147483164},
    {-1073741824, -2147483164},
    {536870912, 2146043336},
    {-536870912, -2146043336},
    {67108864, 992388804},
    {-67108864, -992388804},
    {123456789, 1558674772},
    {-123456789, -1558674772},
    {268435456, 2070233436},
    {-268435456, -2070233436},
    {402653184, 2136863820},
    {-402653184, -2136863820},
    {224, 3824},
    {-118153589, -1517360496},
    {-2126439065, -2147483647},
    {22696, 363388},
    {1728161676, 2147483647},
    {1697209558, 2147483647},
    {16557, 265160},
    {-1658900841, -2147483647},
    {145422500, 1706147416},
    {1553749, 24858964},
    {1084289412, 2147483232},
    {1751564137, 2147483647},
    {-140041, -2240876},
    {-1018196559, -2147482536},
    {1669924132, 2147483647},
    {-3473, -55816},
    {-319578405, -2111082572},
    {-692401939, -2147341720},
    {-2034980630, -2147483647},
    {-335668797, -2118790988},
    {1050066806, 2147482956},
    {283, 4772},
    {-516679416, -2145537944},
    {1533823511, 2147483647},
    {422608008, 2139590380},
    {891960224, 2147476392},
    {-1981039860, -2147483647},
    {1219447, 19510732},
};
static const int32_t golden_tanh_ib0[][2] = {
    {0, 0},
    {1, 248},
    {-1, -248},
    {2, 252},
    {-2, -252},
    {-2147483647, -1635510876},
    {2147483647, 1635510876},
    {1073741824, 992388804},
    {-1073741824, -992388804},
    {536870912, 525958532},
    {-536870912, -525958532},
    {67108864, 67087036},
    {-67108864, -67087036},
    {123456789, 123320952},
    {-123456789, -123320952},
    {268435456, 267045740},
    {-268435456, -267045740},
    {402653184, 398000012},
    {-402653184, -398000012},
    {-73, -320},
    {912404775, 861197912},
    {-1848951561, -1496291200},
    {-184587223, -184133972},
    {959561764, 900419296},
    {840990753, 800481560},
    {-212324, -212560},
    {-1418545088, -1242828220},
    {-1204535872, -1092315692},
    {-31947, -32192},
    {741083767, 713002172},
    {-1354432729, -1199452988},
    {428334, 428580},
    {-684880636, -662567896},
    {704209129, 680007576},
    {-133077299, -132907208},
    {-551275451, -539477028},
    {-521558903, -511540212},
    {3613867, 3614080},
    {-1826905446, -1484866772},
    {-35894115, -35890832},
    {20577392, 20576868},
    {-57931101, -57917064},
    {380308969, 376382376},
    {-5612598, -5612780},
    {768788986, 737546736},
    {1753950320, 1445890676},
    {243101, 243344},
};
static const int32_t golden_tanh_ib7[][2] = {
    {0, 0},
    {1, 376},
    {-1, -376},
    {2, 504},
    {-2, -504},
    {-2147483647, -2147483647},
    {2147483647, 2147483647},
    {1073741824, 2147483647},
    {-1073741824, -2147483647},
    {536870912, 2147483647},
    {-536870912, -2147483647},
    {67108864, 2146043336},
    {-67108864, -2146043336},
    {123456789, 2147481900},
    {-123456789, -2147481900},
    {268435456, 2147483647},
    {-268435456, -2147483647},
    {402653184, 2147483647},
    {-402653184, -2147483647},
    {-12341, -1579876},
    {-1567159665, -2147483647},
    {1580100250, 2147483647},
    {-980, -125684},
    {1629396193, 2147483647},
    {554173748, 2147483647},
    {69107, 8845828},
    {-167302152, -2147483644},
    {107248827, 2147471616},
    {-2094983, -266772400},
    {1810330109, 2147483647},
    {443620525, 2147483647},
    {-16, -2296},
    {-134540099, -2147483188},
    {1113682652, 2147483647},
    {-133, -17268},
    {776499357, 2147483647},
    {-1977353703, -2147483647},
    {63467930, 2145260964},
    {-1109728369, -2147483647},
    {2122417376, 2147483647},
    {21119, 2703456},
    {-1200569301, -2147483647},
    {1128995706, 2147483647},
    {99858764, 2147454604},
    {-1034977167, -2147483647},
    {-1755101354, -2147483647},
    {-444890886, -2147483647},
};
static const int32_t golden_one_over_one_plus_x[][2] = {
    {0, 2147483647},
    {1, 2147483647},
    {1, 2147483647},
    {2, 2147483647},
    {2, 2147483647},
    {2147483647, 1073741820},
    {2147483647, 1073741820},
    {2147483647, 1073741820},
    {1073741824, 1431655762},
    {1073741824, 1431655762},
    {536870912, 1717986914},
    {536870912, 1717986914},
    {67108864, 2082408382},
    {67108864, 2082408382},
    {123456789, 2030738432},
    {123456789, 2030738432},
    {268435456, 1908874352},
    {268435456, 1908874352},
    {402653184, 1808407284},
    {402653184, 1808407284},
    {2100, 2147481548},
    {1775488054, 1175559338},
    {1566725147, 1241633490},
    {98424, 2147385226},
    {1326987115, 1327306036},
    {355039175, 1842814766},
    {13604635, 2133964660},
    {783328806, 1573517952},
    {1245263457, 1359277860},
    {1353, 2147482292},
    {640546053, 1654102188},
    {323986715, 1865968568},
    {3415, 2147480234},
    {1799558256, 1168390440},
    {1856918833, 1151653972},
    {330350, 2147153350},
    {1613446049, 1226209048},
    {323106934, 1866633046},
    {233, 2147483418},
    {488876804, 1749262328},
    {360248788, 1838986470},
    {6748, 2147476896},
    {443934249, 1779599510},
    {2094149433, 1087243034},
    {40652347, 2107586564},
    {850562075, 1538230718},
    {899419605, 1513564964},
    {457714, 2147026030},
};
static const int32_t golden_one_minus_x_over_one_plus_x[][2] = {
    {0, 2147483647},
    {1, 2147483647},
    {1, 2147483647},
    {2, 2147483647},
    {2, 2147483647},
    {2147483647, -8},
    {2147483647, -8},
    {2147483647, -8},
    {1073741824, 715827876},
    {1073741824, 715827876},
    {536870912, 1288490180},
    {536870912, 1288490180},
    {67108864, 2017333116},
    {67108864, 2017333116},
    {123456789, 1913993216},
    {123456789, 1913993216},
    {268435456, 1670265056},
    {268435456, 1670265056},
    {402653184, 1469330920},
    {402653184, 1469330920},
    {96680966, 1962451956},
    {707471838, 1083169896},
    {1560985181, 339626932},
    {4374807, 2138751816},
    {1588053443, 321604956},
    {417645632, 1448191664},
    {16776, 2147450100},
    {860623561, 918687676},
    {502711159, 1332778264},
    {12089, 2147459472},
    {1476092464, 397894664},
    {1757783943, 214293576},
    {136609450, 1890605712},
    {1480516141, 394791044},
    {1928248035, 115514208},
    {433, 2147482776},
    {1056687062, 731068360},
    {659507736, 1138373268},
    {253012172, 1694794256},
    {1703015386, 247886920},
    {2102348583, 22807208},
    {3390231, 2140713884},
    {1913107370, 123952200},
    {458963114, 1391192892},
    {480, 2147482684},
    {1927588946, 115880208},
    {973728619, 807577152},
    {32070983, 2084285500},
};
static const int32_t golden_exp_quarter[][2] = {
    {-1, 2147483155},
    {-1, 2147483155},
    {-1, 2147483155},
    {-2, 2147483154},
    {-2, 2147483154},
    {-1, 2147483155},
    {-536870911, 1672462420},
    {-536870911, 1672462420},
    {-1, 2147483155},
    {-1, 2147483155},
    {-1, 2147483155},
    {-1, 2147483155},
    {-67108864, 2081412406},
    {-67108864, 2081412406},
    {-123456789, 2027508506},
    {-123456789, 2027508506},
    {-268435456, 1895147668},
    {-268435456, 1895147668},
    {-402653184, 1780326490},
    {-402653184, 1780326490},
    {-185, 2147482972},
    {-361368798, 1814883544},
    {-212507083, 1945152614},
    {-352094289, 1822738575},
    {-203903356, 1952961349},
    {-295488474, 1871423213},
    {-219502, 2147263668},
    {-462795565, 1731158498},
    {-214866448, 1943016717},
    {-108013012, 2042142015},
    {-400822054, 1781845197},
    {-466711223, 1728004842},
    {-24991, 2147458166},
    {-4494311, 2142993585},
    {-184295539, 1970874715},
    {-89673701, 2059656371},
    {-489491664, 1709771177},
    {-254630114, 1907370084},
    {-566471, 2146916765},
    {-363295631, 1813255867},
    {-494165736, 1706053869},
    {-604, 2147482553},
    {-180357410, 1974492288},
    {-313959955, 1855395283},
    {-417, 2147482740},
    {-168209425, 1985693337},
    {-340404569, 1832687614},
    {-62322329, 2086056835},
};
/* a, b, SaturatingRoundingDoublingHighMul, RoundingHalfSum */
static const int32_t golden_srdhm[][4] = {
    {0, 2, 0, 1},
    {1, 536870912, 0, 268435457},
    {-1, -268435456, 0, -134217729},
    {2, 175123503, 0, 87561753},
    {-2, -1780341578, 2, -890170790},
    {-2147483648, 900936, -900936, -1073291356},
    {-2147483647, 141118231, -141118231, -1003182708},
    {2147483647, -2, -2, 1073741823},
    {1073741824, -536870912, -268435456, 268435456},
    {-1073741824, 402653184, -201326592, -335544320},
    {536870912, 1591007713, 397751928, 1063939313},
    {-536870912, 74, -18, -268435419},
    {67108864, 22948393, 717137, 45028629},
    {-67108864, -1891321275, 59103790, -979215070},
    {123456789, -2147483648, -123456789, -1012013430},
    {-123456789, 67108864, -3858025, -28173963},
    {268435456, -402653184, -50331648, -67108864},
    {-268435456, 43638, -5455, -134195909},
    {402653184, 1504411313, 282077121, 953532249},
    {-402653184, -1749920661, 328110124, -1076286923},
    {27486494, 247369, 3166, 13866932},
    {-692483616, -2147483647, 692483616, -1419983632},
    {1164289919, -67108864, -36384060, 548590528},
    {-179, 27486494, -2, 13743158},
    {175123503, 404761590, 33007594, 289942547},
    {1591007713, -673598202, -499049171, 458704756},
    {43638, 512466, 10, 278052},
    {404761590, 0, 0, 202380795},
    {307227943, 2147483647, 307227943, 1227355795},
    {244, 123456789, 14, 61728517},
    {-1357907973, -692483616, 437874824, -1025195795},
    {-1780341578, 307227943, -254703071, -736556818},
    {74, 1111738, 0, 555906},
    {1504411313, -1519306864, -1064344511, -7447776},
    {-673598202, 1, 0, -336799101},
    {1111738, 1073741824, 555869, 537426781},
    {1298230708, -123456789, -74634047, 587386960},
    {1608229214, 1164289919, 871925178, 1386259567},
    {900936, 244, 0, 450590},
    {22948393, 1298230708, 13873125, 660589551},
    {-1749920661, 1051169534, -856566842, -349375564},
    {512466, -1, 0, 256233},
    {-1519306864, -1073741824, 759653432, -1296524344},
    {1051169534, 268435456, 131396192, 659802495},
    {-11750121, -179, 1, -5875150},
    {141118231, -1357907973, -89232610, -608394871},
    {-1891321275, 1608229214, -1416391752, -141546031},
    {247369, -11750121, -1353, -5751376},
    {-2147483648, -2147483648, 2147483647, -2147483648},
};
/* x, exponent, RoundingDivideByPOT */
static const int32_t golden_rdbp[][3] = {
    {0, 0, 0},
    {1, 1, 1},
    {-1, 2, 0},
    {2, 3, 0},
    {-2, 4, 0},
    {-2147483648, 5, -67108864},
    {-2147483647, 6, -33554432},
    {2147483647, 7, 16777216},
    {1073741824, 8, 4194304},
    {-1073741824, 9, -2097152},
    {536870912, 10, 524288},
    {-536870912, 11, -262144},
    {67108864, 12, 16384},
    {-67108864, 13, -8192},
    {123456789, 14, 7535},
    {-123456789, 15, -3768},
    {268435456, 16, 4096},
    {-268435456, 17, -2048},
    {402653184, 18, 1536},
    {-402653184, 19, -768},
    {27486494, 20, 26},
    {-692483616, 21, -330},
    {1164289919, 22, 278},
    {-179, 23, 0},
    {175123503, 24, 10},
    {1591007713, 25, 47},
    {43638, 26, 0},
    {404761590, 27, 3},
    {307227943, 28, 1},
    {244, 29, 0},
    {-1357907973, 30, -1},
    {-1780341578, 31, -1},
    {74, 0, 74},
    {1504411313, 1, 752205657},
    {-673598202, 2, -168399551},
    {1111738, 3, 138967},
    {1298230708, 4, 81139419},
    {1608229214, 5, 50257163},
    {900936, 6, 14077},
    {22948393, 7, 179284},
    {-1749920661, 8, -6835628},
    {512466, 9, 1001},
    {-1519306864, 10, -1483698},
    {1051169534, 11, 513266},
    {-11750121, 12, -2869},
    {141118231, 13, 17226},
    {-1891321275, 14, -115437},
    {247369, 15, 8},
};
/* x, SaturatingRoundingMultiplyByPOT<3>, <-5>, Rescale<0> of Q2 */
static const int32_t golden_srmpot[][4] = {
    {0, 0, 0, 0},
    {1, 8, 0, 4},
    {-1, -8, 0, -4},
    {2, 16, 0, 8},
    {-2, -16, 0, -8},
    {-2147483648, -2147483648, -67108864, -2147483648},
    {-2147483647, -2147483648, -67108864, -2147483648},
    {2147483647, 2147483647, 67108864, 2147483647},
    {1073741824, 2147483647, 33554432, 2147483647},
    {-1073741824, -2147483648, -33554432, -2147483648},
    {536870912, 2147483647, 16777216, 2147483647},
    {-536870912, -2147483648, -16777216, -2147483648},
    {67108864, 536870912, 2097152, 268435456},
    {-67108864, -536870912, -2097152, -268435456},
    {123456789, 987654312, 3858025, 493827156},
    {-123456789, -987654312, -3858025, -493827156},
    {268435456, 2147483647, 8388608, 1073741824},
    {-268435456, -2147483648, -8388608, -1073741824},
    {402653184, 2147483647, 12582912, 1610612736},
    {-402653184, -2147483648, -12582912, -1610612736},
    {27486494, 219891952, 858953, 109945976},
    {-692483616, -2147483648, -21640113, -2147483648},
    {1164289919, 2147483647, 36384060, 2147483647},
    {-179, -1432, -6, -716},
    {175123503, 1400988024, 5472609, 700494012},
    {1591007713, 2147483647, 49718991, 2147483647},
    {43638, 349104, 1364, 174552},
    {404761590, 2147483647, 12648800, 1619046360},
    {307227943, 2147483647, 9600873, 1228911772},
    {244, 1952, 8, 976},
    {-1357907973, -2147483648, -42434624, -2147483648},
    {-1780341578, -2147483648, -55635674, -2147483648},
    {74, 592, 2, 296},
    {1504411313, 2147483647, 47012854, 2147483647},
    {-673598202, -2147483648, -21049944, -2147483648},
    {1111738, 8893904, 34742, 4446952},
    {1298230708, 2147483647, 40569710, 2147483647},
    {1608229214, 2147483647, 50257163, 2147483647},
    {900936, 7207488, 28154, 3603744},
    {22948393, 183587144, 717137, 91793572},
    {-1749920661, -2147483648, -54685021, -2147483648},
    {512466, 4099728, 16015, 2049864},
    {-1519306864, -2147483648, -47478340, -2147483648},
    {1051169534, 2147483647, 32849048, 2147483647},
    {-11750121, -94000968, -367191, -47000484},
    {141118231, 1128945848, 4409945, 564472924},
    {-1891321275, -2147483648, -59103790, -2147483648},
    {247369, 1978952, 7730, 989476},
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static void check_unary(const char *name, const int32_t (*g)[2], size_t n, int ib,
                        int32_t (*fn)(int32_t, int)) {
    for (size_t i = 0; i < n; i++) {
        int32_t got = fn(g[i][0], ib);
        if (got != g[i][1])
            fail_msg("%s(%d, IB %d) = %d, gemmlowp %d", name, (int)g[i][0], ib, (int)got,
                     (int)g[i][1]);
    }
}

static int32_t exp_adapter(int32_t a, int ib) { return mopt_fx_exp_on_negative_values(a, ib); }
static int32_t oneover_adapter(int32_t a, int ib) {
    (void)ib;
    return mopt_fx_one_over_one_plus_x_for_x_in_0_1(a);
}
static int32_t oneminus_adapter(int32_t a, int ib) {
    (void)ib;
    return mopt_fx_one_minus_x_over_one_plus_x_for_x_in_0_1(a);
}
static int32_t quarter_adapter(int32_t a, int ib) {
    (void)ib;
    return mopt_fx_exp_on_interval_between_negative_one_quarter_and_0_excl(a);
}

static void test_fixedpoint_goldens(void **state) {
    (void)state;
    check_unary("exp", golden_exp_ib0, N_OF(golden_exp_ib0), 0, exp_adapter);
    check_unary("exp", golden_exp_ib1, N_OF(golden_exp_ib1), 1, exp_adapter);
    check_unary("exp", golden_exp_ib4, N_OF(golden_exp_ib4), 4, exp_adapter);
    check_unary("exp", golden_exp_ib5, N_OF(golden_exp_ib5), 5, exp_adapter);
    check_unary("exp", golden_exp_ib6, N_OF(golden_exp_ib6), 6, exp_adapter);
    check_unary("exp", golden_exp_ib12, N_OF(golden_exp_ib12), 12, exp_adapter);
    check_unary("logistic", golden_logistic_ib4, N_OF(golden_logistic_ib4), 4, mopt_fx_logistic);
    check_unary("logistic", golden_logistic_ib0, N_OF(golden_logistic_ib0), 0, mopt_fx_logistic);
    check_unary("logistic", golden_logistic_ib8, N_OF(golden_logistic_ib8), 8, mopt_fx_logistic);
    check_unary("tanh", golden_tanh_ib4, N_OF(golden_tanh_ib4), 4, mopt_fx_tanh);
    check_unary("tanh", golden_tanh_ib0, N_OF(golden_tanh_ib0), 0, mopt_fx_tanh);
    check_unary("tanh", golden_tanh_ib7, N_OF(golden_tanh_ib7), 7, mopt_fx_tanh);
    check_unary("one_over_one_plus_x", golden_one_over_one_plus_x, N_OF(golden_one_over_one_plus_x),
                0, oneover_adapter);
    check_unary("one_minus_x_over_one_plus_x", golden_one_minus_x_over_one_plus_x,
                N_OF(golden_one_minus_x_over_one_plus_x), 0, oneminus_adapter);
    check_unary("exp_quarter", golden_exp_quarter, N_OF(golden_exp_quarter), 0, quarter_adapter);
    for (size_t i = 0; i < N_OF(golden_srdhm); i++) {
        assert_int_equal(mopt_fx_srdhm(golden_srdhm[i][0], golden_srdhm[i][1]), golden_srdhm[i][2]);
        assert_int_equal(mopt_fx_rounding_half_sum(golden_srdhm[i][0], golden_srdhm[i][1]),
                         golden_srdhm[i][3]);
    }
    for (size_t i = 0; i < N_OF(golden_rdbp); i++)
        assert_int_equal(mopt_fx_rounding_divide_by_pot(golden_rdbp[i][0], golden_rdbp[i][1]),
                         golden_rdbp[i][2]);
    for (size_t i = 0; i < N_OF(golden_srmpot); i++) {
        assert_int_equal(mopt_fx_sat_rounding_mul_by_pot(golden_srmpot[i][0], 3), golden_srmpot[i][1]);
        assert_int_equal(mopt_fx_sat_rounding_mul_by_pot(golden_srmpot[i][0], -5), golden_srmpot[i][2]);
        assert_int_equal(mopt_fx_rescale(golden_srmpot[i][0], 2, 0), golden_srmpot[i][3]);
    }
}

static void test_fixedpoint_properties(void **state) {
    (void)state;
    /* hand values: logistic(0) = 1/2, tanh(0) = 0, exp(0) = 1 (INT32_MAX) */
    assert_int_equal(mopt_fx_logistic(0, 4), 1 << 30);
    assert_int_equal(mopt_fx_tanh(0, 4), 0);
    assert_int_equal(mopt_fx_exp_on_negative_values(0, 5), INT32_MAX);
    /* exp(-33) with 6 integer bits is below the -32 clamp -> exactly 0 */
    assert_int_equal(mopt_fx_exp_on_negative_values(-33 * (1 << 25), 6), 0);
    /* RoundingDivideByPOT edge cases beyond gemmlowp's asserted range */
    assert_int_equal(mopt_fx_rounding_divide_by_pot(INT32_MIN, 31), -1);
    assert_int_equal(mopt_fx_rounding_divide_by_pot(INT32_MIN, 32), -1); /* -0.5 -> away */
    assert_int_equal(mopt_fx_rounding_divide_by_pot(INT32_MAX, 32), 0);
    assert_int_equal(mopt_fx_rounding_divide_by_pot(INT32_MIN, 40), 0);
    assert_int_equal(mopt_fx_sat_rounding_mul_by_pot(1, 31), INT32_MAX);
    assert_int_equal(mopt_fx_sat_rounding_mul_by_pot(-1, 40), INT32_MIN);
    assert_int_equal(mopt_fx_sat_rounding_mul_by_pot(0, 40), 0);
    assert_int_equal(mopt_fx_sat_rounding_mul_by_pot(INT32_MIN, INT32_MIN), 0);
    assert_int_equal(mopt_count_leading_zeros32(0), 32);
    assert_int_equal(mopt_count_leading_zeros32(1), 31);
    assert_int_equal(mopt_count_leading_zeros32(0x80000000u), 0);
    /* accuracy against libm over the kernels' ranges (Q4.27 inputs) */
    for (int i = 0; i < 200000; i++) {
        int32_t a = rng_i32();
        double x = ldexp((double)a, -27); /* [-16, 16) */
        double lg = ldexp((double)mopt_fx_logistic(a, 4), -31);
        double th = ldexp((double)mopt_fx_tanh(a, 4), -31);
        /* measured over a 2^22-point sweep: 7.1e-8, 1.4e-7, 2.3e-7 */
        assert_true(fabs(lg - 1.0 / (1.0 + exp(-x))) < 2e-7);
        assert_true(fabs(th - tanh(x)) < 3e-7);
        int32_t n = a > 0 ? -a : a;
        if (n == INT32_MIN) n = INT32_MIN + 1;
        double ex = ldexp((double)mopt_fx_exp_on_negative_values(n, 5), -31); /* Q5.26 */
        assert_true(fabs(ex - exp(ldexp((double)n, -26))) < 5e-7);
    }
    /* GetReciprocal: for x = X * 2^(31 - 12) (Q12.19), 1/X is
     * shifted_scale * 2^-31 * 2^-num_bits_over_unit */
    for (int i = 0; i < 100000; i++) {
        int32_t x = (int32_t)(1 + rng_u64() % 0x7FFFFFFFu);
        int nbou = 99;
        int32_t r = mopt_fx_get_reciprocal(x, 12, &nbou);
        double X = ldexp((double)x, -19);
        double recip = ldexp((double)r, -31 - nbou);
        assert_true(fabs(recip * X - 1.0) < 1e-8); /* measured max 4.7e-9 */
    }
    /* softmax prepare: beta 1, scale 0.1, IB 5: 0.1 * 2^26 = 6710886.4 =
     * 0.8 * 2^23 -> (1717986918, 23); radius floor(31 * 2^26 / 2^23) = 248 */
    int32_t M;
    int s;
    assert_int_equal(mopt_preprocess_softmax_scaling(1.0, 0.1, 5, MOPT_ROUND_DOUBLE, &M, &s), MOPT_OK);
    assert_int_equal(M, 1717986918);
    assert_int_equal(s, 23);
    assert_int_equal(mopt_calculate_input_radius(5, 23, 31), 248);
    /* logistic int8 prepare: IB 4, left shift 0 -> (2^4-1) * 2^27 = 2013265920 */
    assert_int_equal(mopt_calculate_input_radius(4, 0, 31), 2013265920);
    assert_int_equal(mopt_calculate_input_radius(31, 0, 62), INT32_MAX); /* saturates */
    /* cap: 1e9 * 2^26 > 2^31 - 1 -> (2^31 - 1) = (1 - 2^-31) * 2^31 -> (INT32_MAX, 31);
     * single-rounding cap 2^30 - 1 -> q * 2^31 = 2^31 - 2 -> (2147483646, 30) */
    assert_int_equal(mopt_preprocess_softmax_scaling(1e9, 1.0, 5, MOPT_ROUND_DOUBLE, &M, &s), MOPT_OK);
    assert_int_equal(M, INT32_MAX);
    assert_int_equal(s, 31);
    assert_int_equal(mopt_preprocess_softmax_scaling(1e9, 1.0, 5, MOPT_ROUND_SINGLE, &M, &s), MOPT_OK);
    assert_int_equal(M, 2147483646);
    assert_int_equal(s, 30);
    assert_int_equal(mopt_preprocess_softmax_scaling(1.0, 1e-12, 5, MOPT_ROUND_DOUBLE, &M, &s),
                     MOPT_ERR_ARG); /* product <= 1: not a GreaterThanOne multiplier */
    assert_int_equal(mopt_preprocess_softmax_scaling(NAN, 1.0, 5, MOPT_ROUND_DOUBLE, &M, &s), MOPT_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rounding_helpers),
        cmocka_unit_test(test_quantize_multiplier),
        cmocka_unit_test(test_mbqm_hand),
        cmocka_unit_test(test_mbqm_random),
        cmocka_unit_test(test_requant_float_paths),
        cmocka_unit_test(test_requant_dispatch),
        cmocka_unit_test(test_qparams_hand),
        cmocka_unit_test(test_weights_and_bias_hand),
        cmocka_unit_test(test_converter_goldens),
        cmocka_unit_test(test_quantize_dequantize_range),
        cmocka_unit_test(test_float16),
        cmocka_unit_test(test_fixedpoint_goldens),
        cmocka_unit_test(test_fixedpoint_properties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
