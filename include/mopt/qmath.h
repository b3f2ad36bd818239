/* mopt/qmath.h - integer quantization arithmetic, bit-exact with the
 * runtimes and converters it imitates.
 *
 * Every function here is pure: no allocation, no global state, no I/O; any
 * thread may call any of them at any time. docs/QUANT_ARITHMETIC.md says
 * which TFLite / gemmlowp / XNNPACK / converter code each one reproduces and
 * how the rounding modes differ.
 *
 * Conventions
 *  - A "multiplier" (M, shift) stands for the real number M * 2^(shift - 31);
 *    M is a Q0.31 value in [2^30, 2^31 - 1] (or 0), shift > 0 is a left shift.
 *  - Fixed-point values (mopt_fx_*) are gemmlowp FixedPoint<int32_t, IB>:
 *    the raw int32 r stands for r * 2^(IB - 31), IB = "integer bits".
 *  - Functions returning a plain integer never fail; out-of-range arguments
 *    give the documented result (never undefined behaviour). Where the
 *    runtime itself would overflow int32 (its precondition), the result is
 *    the two's-complement wrap the runtime produces on real hardware.
 *  - Functions returning mopt_status check their arguments and fail with
 *    MOPT_ERR_ARG; those with a mopt_error* fill it (NULL allowed) with one
 *    line naming the function and the broken rule, to be prefixed by the
 *    caller with the tensor/op concerned (mopt_error_prefix).
 */
#ifndef MOPT_QMATH_H
#define MOPT_QMATH_H

#include <stddef.h>
#include <stdint.h>

#include "mopt/graph.h"
#include "mopt/runtime.h"
#include "mopt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Rounding and float16
 * ------------------------------------------------------------------------ */

/* Round half away from zero (std::round / TfLiteRound). NaN and +-inf are
 * returned unchanged. */
double mopt_round_half_away(double x);

/* Round half to even, independent of the current FP rounding mode (what
 * lrintf/nearbyintf do in the default mode). NaN and +-inf unchanged. */
double mopt_round_half_even(double x);

/* IEEE binary16 -> binary32, exact (subnormals, +-0, +-inf; NaN keeps its
 * sign and payload, shifted into the top of the float mantissa). */
float mopt_half_to_float(uint16_t h);

/* binary32 -> binary16, round to nearest even. Overflow gives +-inf (values
 * >= 65520 in magnitude), NaN gives the quiet NaN 0x7E00 with the input's
 * sign (Eigen::half's portable conversion). */
uint16_t mopt_float_to_half(float f);

/* The converter's float16 weight conversion: clamp to [-65504, 65504]
 * (so +-inf become +-65504), then mopt_float_to_half. NaN stays NaN. */
uint16_t mopt_float_to_half_clamped(float f);

/* ------------------------------------------------------------------------
 * Multipliers (TFLite quantization_util.cc)
 * ------------------------------------------------------------------------ */

/* QuantizeMultiplier of the default build: m = q * 2^shift by frexp,
 * M = round_half_away(q * 2^31); M == 2^31 is halved with ++shift;
 * shift < -31 flushes to M = 0, shift = 0; m == 0 gives (0, 0). Negative m
 * gives a negative M, as TFLite does. Fails (MOPT_ERR_ARG, outputs zeroed)
 * only if m is not finite. */
mopt_status mopt_quantize_multiplier(double m, int32_t *M, int *shift);

/* Same with the build variant of `mode`: MOPT_ROUND_SINGLE applies the
 * TFLITE_SINGLE_ROUNDING clamp (shift > 30 becomes shift 30, M 2^31-1) and
 * rejects m < 0; the other modes equal mopt_quantize_multiplier. */
mopt_status mopt_quantize_multiplier_mode(double m, mopt_rounding mode, int32_t *M, int *shift);

/* QuantizeMultiplierSmallerThanOneExp (used by ADD/SUB): requires
 * 0 < m < 1; *left_shift <= 0. */
mopt_status mopt_quantize_multiplier_smaller_than_one(double m, int32_t *M, int *left_shift);

/* QuantizeMultiplierGreaterThanOne (used by SOFTMAX/LOGISTIC/TANH
 * prepare): requires m > 1; *left_shift >= 0. */
mopt_status mopt_quantize_multiplier_greater_than_one(double m, int32_t *M, int *left_shift);

/* The real number a multiplier stands for: M * 2^(shift - 31). */
double mopt_multiplier_to_double(int32_t M, int shift);

/* ------------------------------------------------------------------------
 * Requantization (MultiplyByQuantizedMultiplier and friends)
 * ------------------------------------------------------------------------ */

/* Default TFLite build (gemmlowp, two roundings):
 *   RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * 2^left, M), right)
 * with left = max(shift, 0), right = max(-shift, 0). The high-mul rounds
 * ties toward +inf and saturates INT32_MIN * INT32_MIN to INT32_MAX; the
 * divide rounds ties away from zero. shift in [-31, 30] is the range
 * QuantizeMultiplier produces; outside it the result is still defined:
 * x * 2^left wraps modulo 2^32 (TFLite's precondition is that it does not
 * overflow; left >= 32 gives 0) and right > 31 divides exactly with the
 * same rounding. Covers MultiplyByQuantizedMultiplierSmallerThanOneExp
 * (shift <= 0) and ...GreaterThanOne (shift >= 0) of the default build. */
int32_t mopt_mbqm_double(int32_t x, int32_t M, int shift);

/* TFLITE_SINGLE_ROUNDING=1: one rounding, ties toward +inf:
 *   (x * M + 2^(30 - shift)) >> (31 - shift)   (exact, 64-bit)
 * shift is clamped to [-31, 30]; a result outside int32 wraps. */
int32_t mopt_mbqm_single(int32_t x, int32_t M, int shift);

/* The int64 overload (16x8 kernels with int64 accumulators), both builds:
 *   Mr = M < 0x7FFF0000 ? (M + 2^15) >> 16 : 0x7FFF;
 *   (x * Mr + 2^(14 - shift)) >> (15 - shift)
 * Preconditions of the runtime: |x| < 2^47, M >= 0, shift in [-31, 7]
 * (shift is clamped to that range; the product wraps modulo 2^64 and the
 * result modulo 2^32 if violated). */
int32_t mopt_mbqm_int64(int64_t x, int32_t M, int shift);

/* XNNPACK "fp32" requantization: (float)acc * scale in binary32, rounded
 * half to even. The result saturates to the int32 range (XNNPACK clamps
 * to the output range before converting; after the caller's clamp the
 * results agree). NaN gives 0. */
int32_t mopt_requant_fp32(int32_t acc, float scale);

/* Newer TFLite FULLY_CONNECTED reference path: round_half_away((double)acc
 * * scale), saturated to int32. NaN gives 0. */
int32_t mopt_requant_double_round(int32_t acc, double scale);

/* Everything a kernel needs to requantize in one of the runtime modes. */
typedef struct mopt_requant_params {
    mopt_rounding mode;
    int32_t multiplier; /* MOPT_ROUND_DOUBLE / _SINGLE */
    int shift;          /* MOPT_ROUND_DOUBLE / _SINGLE */
    float scale;        /* MOPT_ROUND_FP32 */
} mopt_requant_params;

/* Conv / depthwise / FC parameters from the three tensor scales, formed the
 * way each runtime forms them: DOUBLE and SINGLE use the double product
 * (double)in * (double)w / (double)out (PopulateConvolutionQuantizationParams)
 * through mopt_quantize_multiplier_mode; FP32 uses the float expression
 * in * w / out (XNNPACK). All fields are filled whatever the mode
 * (multiplier/shift of the default build for FP32). Scales must be finite
 * and > 0. */
mopt_status mopt_requant_params_from_scales(float in_scale, float w_scale, float out_scale,
                                            mopt_rounding mode, mopt_requant_params *out,
                                            mopt_error *err);

/* Same from a real multiplier already formed by the caller (finite, >= 0;
 * FP32 uses (float)real). */
mopt_status mopt_requant_params_from_real(double real, mopt_rounding mode,
                                          mopt_requant_params *out, mopt_error *err);

/* Dispatches to mopt_mbqm_double / mopt_mbqm_single / mopt_requant_fp32.
 * An unknown mode behaves as MOPT_ROUND_DOUBLE. */
int32_t mopt_requant(int32_t acc, const mopt_requant_params *p);

/* ------------------------------------------------------------------------
 * Quantization parameters and values (converter and QUANTIZE/DEQUANTIZE)
 * ------------------------------------------------------------------------ */

typedef struct mopt_qparams {
    float scale;
    int32_t zero_point;
} mopt_qparams;

/* Asymmetric activation parameters from calibrated [min, max], as the TF
 * 2.x converter writes them (ConvertStatsToQDQs + DownCastScale with
 * legacy_float_scale, the Python converter's setting):
 *   min' = min(min, 0), max' = max(max, 0)        (double)
 *   if max' - min' < 1e-6: min' -= 1e-6, max' += 1e-6
 *   scale = ((float)max' - (float)min') / (float)(qmax - qmin)   (binary32)
 *   zf = (float)(qmin - min' / (double)scale)
 *   zp = zf < qmin ? qmin : zf > qmax ? qmax : round_half_away(zf)
 * int8: qmin -128, qmax 127; uint8: 0, 255. min/max must be finite,
 * qmin < qmax. */
mopt_status mopt_qparams_asymmetric(float min, float max, int32_t qmin, int32_t qmax,
                                    mopt_qparams *out, mopt_error *err);

/* Symmetric int16 activation parameters (16x8), zero point 0:
 *   scale = max(|min|, |max|) / 32767.0f   (binary32)
 * (matches the TF 2.21 converter). If both are 0 the scale is
 * 1e-6f / 32767.0f, never 0 (this corner is not checked against the
 * converter). min/max must be finite. */
mopt_status mopt_qparams_symmetric_int16(float min, float max, mopt_qparams *out,
                                         mopt_error *err);

/* Narrow-range symmetric int8 weights, per tensor (zero point 0):
 *   a = max|w|; range = 2a if 2a > 1e-6 else 2 * (float)5e-7
 *   *scale = range / 254.0f  (= a / 127 in binary32)
 *   q = clamp(round_half_away(w * (127.0f / a)), -127, 127)  (0 if a == 0)
 * (GetUniformQuantizedTypeForWeight + QuantizeLegacy ->
 * PortableSymmetricQuantizeFloats). n may be 0 (scale as for a == 0).
 * Fails on a non-finite weight, naming its index. */
mopt_status mopt_quantize_weights_per_tensor(const float *w, size_t n, int8_t *q,
                                             float *scale, mopt_error *err);

/* Per channel: w is viewed as [outer][channels][inner] (conv filter
 * [OC,KH,KW,IC] axis 0: outer 1, inner KH*KW*IC; depthwise [1,KH,KW,C]
 * axis 3: outer KH*KW, inner 1). For each channel c the scale is formed as
 * in the per-tensor case from a_c = max|w| over the channel, and
 *   q = clamp(round_half_away(w * (float)(1.0 / (double)scales[c])), -127, 127)
 * (SymmetricPerChannelQuantizeValues: the reciprocal of the float scale,
 * rounded to float, not a division). scales has `channels` entries. */
mopt_status mopt_quantize_weights_per_channel(const float *w, size_t outer, size_t channels,
                                              size_t inner, int8_t *q, float *scales,
                                              mopt_error *err);

/* Quantizes [outer][channels][inner] weights with given per-channel scales
 * (finite, > 0), as above: q = clamp(round_half_away(w * (float)(1.0 /
 * (double)scales[c])), -127, 127). For scales the caller adjusted, e.g. the
 * converter's enlargement of a filter scale when |bias| / bias_scale would
 * exceed 2^30 (docs/QUANT_ARITHMETIC.md). Non-finite weights quantize as
 * NaN -> 0, +-inf -> +-127. */
mopt_status mopt_quantize_weights_with_scales(const float *w, size_t outer, size_t channels,
                                              size_t inner, const float *scales, int8_t *q,
                                              mopt_error *err);

/* Bias scale the converter writes: (float)((double)in_scale * (double)w_scale). */
float mopt_bias_scale(float in_scale, float w_scale);

/* Bias values (SymmetricBiasQuantize): inv = scale == 0 ? 0 :
 * (float)(1.0 / (double)scale); q = round_half_away(b * inv) in binary32,
 * saturated, then clamped to [-(2^31-1), 2^31-1] (int32) or
 * [-(2^63-1), 2^63-1] (int64); NaN gives 0. nscales is 1 (per tensor) or n
 * (per channel). */
mopt_status mopt_quantize_bias_int32(const float *b, size_t n, const float *scales,
                                     size_t nscales, int32_t *q, mopt_error *err);
mopt_status mopt_quantize_bias_int64(const float *b, size_t n, const float *scales,
                                     size_t nscales, int64_t *q, mopt_error *err);

/* Reference QUANTIZE (AffineQuantize): clamp(round_half_away(x / scale)
 * + zp, qmin, qmax) with x / scale in binary32. NaN gives clamp(zp). */
int32_t mopt_quantize_value(float x, float scale, int32_t zero_point, int32_t qmin, int32_t qmax);

/* Reference DEQUANTIZE: (float)((double)scale * (q - zero_point)). */
float mopt_dequantize_value(int32_t q, float scale, int32_t zero_point);

/* CalculateActivationRangeQuantized: with quantize(f) = zp +
 * round_half_away(f / scale) (binary32 division, saturated to int32):
 * RELU [max(qmin, quantize(0)), qmax]; RELU6 [max(qmin, quantize(0)),
 * min(qmax, quantize(6))]; RELU_N1_TO_1 [max(qmin, quantize(-1)),
 * min(qmax, quantize(1))]; any other activation [qmin, qmax].
 * scale must be finite and > 0, qmin <= qmax. */
mopt_status mopt_activation_range_quantized(mopt_activation act, float scale, int32_t zero_point,
                                            int32_t qmin, int32_t qmax, int32_t *lo, int32_t *hi);

/* ------------------------------------------------------------------------
 * gemmlowp fixed point (fixedpoint.h) for LOGISTIC / TANH / SOFTMAX int8
 * ------------------------------------------------------------------------ */

/* Number of leading zero bits of x (32 for 0). */
int mopt_count_leading_zeros32(uint32_t x);

/* SaturatingRoundingDoublingHighMul (ARM VQRDMULH): round(a * b / 2^31)
 * with ties toward +inf; INT32_MIN * INT32_MIN saturates to INT32_MAX. */
int32_t mopt_fx_srdhm(int32_t a, int32_t b);

/* RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from
 * zero. exponent < 0 is treated as 0; exponent >= 32 gives the exact
 * rounded quotient (0, or -1 for x == INT32_MIN with exponent 32). */
int32_t mopt_fx_rounding_divide_by_pot(int32_t x, int exponent);

/* SaturatingRoundingMultiplyByPOT: exponent > 0 is a left shift saturating
 * to [INT32_MIN, INT32_MAX], exponent < 0 is mopt_fx_rounding_divide_by_pot. */
int32_t mopt_fx_sat_rounding_mul_by_pot(int32_t x, int exponent);

/* RoundingHalfSum: (a + b) / 2 rounded, ties away from zero. */
int32_t mopt_fx_rounding_half_sum(int32_t a, int32_t b);

/* Rescale from src to dst integer bits (saturating/rounding). */
int32_t mopt_fx_rescale(int32_t x, int src_integer_bits, int dst_integer_bits);

/* exp(a) for a in [-1/4, 0), a and result in Q0.31. */
int32_t mopt_fx_exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a);

/* exp(a) for a <= 0 given with `integer_bits` (clamped to [0, 29]);
 * result Q0.31 (a == 0 gives INT32_MAX; a < -32 gives 0 when
 * integer_bits > 5). */
int32_t mopt_fx_exp_on_negative_values(int32_t a, int integer_bits);

/* 1 / (1 + a) and (1 - a) / (1 + a) for a in [0, 1), Q0.31 in and out
 * (Newton-Raphson, three iterations, as gemmlowp). */
int32_t mopt_fx_one_over_one_plus_x_for_x_in_0_1(int32_t a);
int32_t mopt_fx_one_minus_x_over_one_plus_x_for_x_in_0_1(int32_t a);

/* logistic(a) and tanh(a), a with `integer_bits` (logistic: clamped to
 * [0, 29]; tanh: [0, 28]), result Q0.31. */
int32_t mopt_fx_logistic(int32_t a, int integer_bits);
int32_t mopt_fx_tanh(int32_t a, int integer_bits);

/* TFLite GetReciprocal: for x > 0 with x_integer_digits integer bits,
 * returns 1/x as a Q0.31 value scaled by 2^-*num_bits_over_unit
 * (shifted_scale of the softmax kernels). */
int32_t mopt_fx_get_reciprocal(int32_t x, int x_integer_digits, int *num_bits_over_unit);

/* PreprocessSoftmaxScaling: real = min(beta * input_scale *
 * 2^(31 - input_integer_bits), cap) with cap 2^31 - 1 (2^30 - 1 for
 * MOPT_ROUND_SINGLE), then QuantizeMultiplierGreaterThanOne. Fails if the
 * product is not finite or not > 1. */
mopt_status mopt_preprocess_softmax_scaling(double beta, double input_scale,
                                            int input_integer_bits, mopt_rounding mode,
                                            int32_t *M, int *left_shift);

/* CalculateInputRadius: floor((2^IB - 1) * 2^(total_signed_bits - IB) /
 * 2^input_left_shift), IB = input_integer_bits (total_signed_bits is 31 in
 * TFLite's int8 kernels). Arguments are clamped to IB in [0, 31],
 * total_signed_bits in [IB, 62], input_left_shift in [0, 62]; a result
 * above INT32_MAX saturates. */
int32_t mopt_calculate_input_radius(int input_integer_bits, int input_left_shift,
                                    int total_signed_bits);

#ifdef __cplusplus
}
#endif
#endif
