/* schedule.c - tfmot's pruning schedules (pruning_schedule.py):
 * ConstantSparsity and PolynomialDecay, with the same gate, the same
 * validation and the same float32 arithmetic. */
#include <math.h>

#include "mopt/sparsity.h"

mopt_prune_schedule mopt_prune_schedule_constant(double target, int64_t begin_step,
                                                 int64_t end_step, int64_t frequency) {
    mopt_prune_schedule s = {MOPT_SCHEDULE_CONSTANT, 0.0, target, begin_step, end_step,
                             frequency, 3.0};
    return s;
}

mopt_prune_schedule mopt_prune_schedule_polynomial(double initial, double final_sparsity,
                                                   int64_t begin_step, int64_t end_step,
                                                   double power, int64_t frequency) {
    mopt_prune_schedule s = {MOPT_SCHEDULE_POLYNOMIAL, initial, final_sparsity, begin_step,
                             end_step, frequency, power};
    return s;
}

static bool sparsity_ok(double s) { return s >= 0.0 && s < 1.0; } /* false for NaN */

mopt_status mopt_prune_schedule_validate(const mopt_prune_schedule *s, mopt_error *err) {
    if (!s)
        return mopt_error_set(err, MOPT_ERR_ARG, "pruning schedule: NULL");
    if (s->kind != MOPT_SCHEDULE_CONSTANT && s->kind != MOPT_SCHEDULE_POLYNOMIAL)
        return mopt_error_set(err, MOPT_ERR_ARG, "pruning schedule: unknown kind %d",
                              (int)s->kind);
    const bool poly = s->kind == MOPT_SCHEDULE_POLYNOMIAL;
    /* The messages are tfmot's (_validate_step / _validate_sparsity). */
    if (s->begin_step < 0)
        return mopt_error_set(err, MOPT_ERR_ARG, "begin_step should be >= 0 (got %lld)",
                              (long long)s->begin_step);
    if (poly && s->end_step == -1)
        return mopt_error_set(err, MOPT_ERR_ARG,
                              "end_step cannot be -1 for the polynomial schedule");
    if (s->end_step != -1) {
        if (s->end_step < 0)
            return mopt_error_set(err, MOPT_ERR_ARG, "end_step can be -1 or >= 0 (got %lld)",
                                  (long long)s->end_step);
        if (s->end_step < s->begin_step)
            return mopt_error_set(err, MOPT_ERR_ARG,
                                  "begin_step should be <= end_step if end_step != -1 "
                                  "(begin %lld, end %lld)",
                                  (long long)s->begin_step, (long long)s->end_step);
    }
    if (s->frequency <= 0)
        return mopt_error_set(err, MOPT_ERR_ARG, "frequency should be > 0 (got %lld)",
                              (long long)s->frequency);
    if (poly && !sparsity_ok(s->initial_sparsity))
        return mopt_error_set(err, MOPT_ERR_ARG, "initial_sparsity must be in range [0,1) (got %g)",
                              s->initial_sparsity);
    if (!sparsity_ok(s->final_sparsity))
        return mopt_error_set(err, MOPT_ERR_ARG, "%s must be in range [0,1) (got %g)",
                              poly ? "final_sparsity" : "target_sparsity", s->final_sparsity);
    if (poly) {
        /* Not checked by tfmot, where they produce NaN / infinite sparsities. */
        if (s->end_step == s->begin_step)
            return mopt_error_set(err, MOPT_ERR_ARG,
                                  "end_step must be greater than begin_step for the polynomial "
                                  "schedule (both %lld; the decay divides by end - begin)",
                                  (long long)s->begin_step);
        if (!(s->power > 0.0) || !isfinite(s->power))
            return mopt_error_set(err, MOPT_ERR_ARG, "power must be a finite number > 0 (got %g)",
                                  s->power);
    }
    return MOPT_OK;
}

bool mopt_prune_schedule_should_prune(const mopt_prune_schedule *s, int64_t step) {
    if (!s || s->frequency <= 0)
        return false;
    bool in_range = step >= s->begin_step && (step <= s->end_step || s->end_step < 0);
    if (!in_range)
        return false;
    /* step >= begin here, so C's % equals TF's floormod. */
    return (step - s->begin_step) % s->frequency == 0;
}

float mopt_prune_schedule_sparsity(const mopt_prune_schedule *s, int64_t step) {
    if (!s)
        return 0.0f;
    if (s->kind == MOPT_SCHEDULE_CONSTANT)
        return (float)s->final_sparsity; /* tf.constant(target, float32) */
    /* p = min(1, max(0, cast<float>(step - begin) / float(end - begin))) */
    float num = (float)(step - s->begin_step);
    float den = (float)(s->end_step - s->begin_step);
    float p = num / den;
    if (!(p > 0.0f))
        p = 0.0f;
    if (p > 1.0f)
        p = 1.0f;
    /* multiply(initial - final [a Python float -> float32], pow(1 - p, power)) + final;
     * every operation rounds to float32 (C11 without FP contraction). */
    float diff = (float)(s->initial_sparsity - s->final_sparsity);
    float base = 1.0f - p;
    float pw = powf(base, (float)s->power);
    float prod = diff * pw;
    return prod + (float)s->final_sparsity;
}
