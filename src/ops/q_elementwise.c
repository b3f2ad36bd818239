/* q_elementwise.c - integer ADD, SUB, MUL (int8, int16) with numpy
 * broadcasting up to 6-D and a fused activation.
 *
 * ADD / SUB (add.cc, sub.cc general path): both operands are brought to a
 * common scale with 20 (int8) or 15 (int16) bits of headroom:
 *   a' = MBQM((a - zp_a) << L, Ma), b' = MBQM((b - zp_b) << L, Mb),
 *   y  = MBQM(a' +- b', Mo) + zp_y, clamped;
 * with twice_max = 2 * max(s_a, s_b) (binary32, exact), Ma = s_a / twice_max,
 * Mb = s_b / twice_max, Mo = twice_max / (2^L * s_y) (double quotients).
 * int16 ADD / SUB with pot_scale_int16 set and power-of-two scales take
 * TFLite's separate POT path, which is not implemented (refused).
 * MUL (mul.cc): y = MBQM((a - zp_a) * (b - zp_b), M) + zp_y with
 * M = s_a * s_b / s_y evaluated in binary32. */
#include <math.h>
#include <stdlib.h>

#include "ops/q_ops.h"

typedef struct qbin_state {
    int kind;
    bool wide;
    int nd;
    size_t dims[MOPT_MAX_DIMS];
    size_t sa[MOPT_MAX_DIMS], sb[MOPT_MAX_DIMS];
    size_t n;
    int32_t a_off, b_off, y_off, lo, hi;
    int left_shift;
    mopt_requant_params ra, rb, ro;
} qbin_state;

static bool checked_log2(float x, int *out) {
    const float l = logf(x) * (1.0f / logf(2.0f));
    const float r = roundf(l);
    *out = (int)r;
    return fabsf(l - r) < 1e-3f;
}

static mopt_status from_real(const mopt_kernel_ctx *ctx, double real, mopt_requant_params *p,
                             mopt_error *err) {
    mopt_error e;
    if (mopt_requant_params_from_real(real, ctx->rounding, p, &e) != MOPT_OK)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "%s", e.msg);
    return MOPT_OK;
}

static mopt_status qbin_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                mopt_error *err) {
    qbin_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    const mopt_tensor *a = mopt_ctx_tin(ctx, 0), *b = mopt_ctx_tin(ctx, 1),
                      *y = mopt_ctx_tout(ctx, 0);
    s->kind = ctx->op->type;
    s->wide = y->dtype == MOPT_INT16;
    /* Broadcast strides, right-aligned (validation checked compatibility). */
    int r = y->rank;
    s->nd = r > 0 ? r : 1;
    s->dims[0] = 1;
    s->sa[0] = s->sb[0] = 0;
    size_t ca = 1, cb = 1;
    for (int i = r - 1; i >= 0; i--) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        size_t ad = ia >= 0 ? (size_t)a->dims[ia] : 1, bd = ib >= 0 ? (size_t)b->dims[ib] : 1;
        s->dims[i] = (size_t)y->dims[i];
        if ((ad != 1 && ad != s->dims[i]) || (bd != 1 && bd != s->dims[i]))
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "shapes do not broadcast");
        s->sa[i] = ad == 1 ? 0 : ca;
        s->sb[i] = bd == 1 ? 0 : cb;
        ca *= ad;
        cb *= bd;
    }
    s->n = mopt_numel(y);
    float as = 0.0f, bs = 0.0f, ys = 0.0f;
    int32_t az = 0, bz = 0, yz = 0;
    mopt_status st;
    if ((st = mopt_q_tensor_params(ctx, a, "input 0", &as, &az, err))) return st;
    if ((st = mopt_q_tensor_params(ctx, b, "input 1", &bs, &bz, err))) return st;
    if ((st = mopt_q_tensor_params(ctx, y, "output", &ys, &yz, err))) return st;
    s->a_off = -az;
    s->b_off = -bz;
    s->y_off = yz;
    if ((st = mopt_q_act_range(ctx, ctx->op->p.binary.act, y, &s->lo, &s->hi, err))) return st;
    if (s->kind == MOPT_OP_MUL) {
        if (s->wide && (az || bz || yz))
            return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                                "int16 MUL needs zero points 0 (%d, %d, %d)", (int)az, (int)bz,
                                (int)yz);
        plan->name = s->wide ? "mul_i16_ref" : "mul_i8_ref";
        return from_real(ctx, (double)(as * bs / ys), &s->ro, err);
    }
    if (s->wide && ctx->op->p.binary.pot_scale_int16) {
        int l1, l2, l3;
        bool p1 = checked_log2(as, &l1), p2 = checked_log2(bs, &l2), p3 = checked_log2(ys, &l3);
        if (p1 && p2 && p3)
            return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                                "int16 with pot_scale_int16 and power-of-two scales (TFLite's "
                                "LSTM-only POT path) is not supported");
    }
    s->left_shift = s->wide ? 15 : 20;
    const double twice_max = (double)(2.0f * (as > bs ? as : bs));
    if ((st = from_real(ctx, (double)as / twice_max, &s->ra, err))) return st;
    if ((st = from_real(ctx, (double)bs / twice_max, &s->rb, err))) return st;
    if ((st = from_real(ctx, twice_max / (double)((float)(1 << s->left_shift) * ys), &s->ro, err)))
        return st;
    plan->name = s->kind == MOPT_OP_ADD ? (s->wide ? "add_i16_ref" : "add_i8_ref")
                                        : (s->wide ? "sub_i16_ref" : "sub_i8_ref");
    return MOPT_OK;
}

static inline int32_t qbin1(const qbin_state *s, int32_t av, int32_t bv) {
    const int32_t a = av + s->a_off, b = bv + s->b_off;
    int64_t out;
    if (s->kind == MOPT_OP_MUL) {
        out = (int64_t)mopt_requant(a * b, &s->ro) + s->y_off;
    } else {
        /* (a - zp) * 2^L fits int32 for both widths (|a| <= 65535, L <= 20
         * for int8 where |a| <= 255). */
        const int32_t sa = mopt_requant(a * (1 << s->left_shift), &s->ra);
        const int32_t sb = mopt_requant(b * (1 << s->left_shift), &s->rb);
        const int32_t raw = (int32_t)(s->kind == MOPT_OP_ADD ? (uint32_t)sa + (uint32_t)sb
                                                             : (uint32_t)sa - (uint32_t)sb);
        out = (int64_t)mopt_requant(raw, &s->ro) + s->y_off;
    }
    return (int32_t)(out < s->lo ? s->lo : (out > s->hi ? s->hi : out));
}

static mopt_status qbin_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                             mopt_error *err) {
    (void)scratch;
    (void)err;
    const qbin_state *s = state;
    const void *av = mopt_ctx_in(ctx, 0), *bv = mopt_ctx_in(ctx, 1);
    void *yv = mopt_ctx_out(ctx, 0);
    size_t idx[MOPT_MAX_DIMS] = {0};
    size_t oa = 0, ob = 0;
    for (size_t i = 0; i < s->n; i++) {
        int32_t x1, x2;
        if (s->wide) {
            x1 = ((const int16_t *)av)[oa];
            x2 = ((const int16_t *)bv)[ob];
        } else {
            x1 = ((const int8_t *)av)[oa];
            x2 = ((const int8_t *)bv)[ob];
        }
        int32_t v = qbin1(s, x1, x2);
        if (s->wide)
            ((int16_t *)yv)[i] = (int16_t)v;
        else
            ((int8_t *)yv)[i] = (int8_t)v;
        /* Odometer over the output index, innermost dim fastest. */
        for (int d = s->nd - 1; d >= 0; d--) {
            idx[d]++;
            oa += s->sa[d];
            ob += s->sb[d];
            if (idx[d] < s->dims[d]) break;
            oa -= s->sa[d] * idx[d];
            ob -= s->sb[d] * idx[d];
            idx[d] = 0;
        }
    }
    return MOPT_OK;
}

static bool match_bin(const mopt_graph *g, const mopt_op *op) {
    return op->n_inputs == 2 && mopt_q_match_all_int(g, op);
}

const mopt_kernel mopt_q_elementwise_kernels[] = {
    {MOPT_OP_ADD, "add_int_ref", match_bin, qbin_prepare, qbin_eval, free, 0},
    {MOPT_OP_SUB, "sub_int_ref", match_bin, qbin_prepare, qbin_eval, free, 0},
    {MOPT_OP_MUL, "mul_int_ref", match_bin, qbin_prepare, qbin_eval, free, 0},
};
const size_t mopt_q_elementwise_kernels_n =
    sizeof mopt_q_elementwise_kernels / sizeof mopt_q_elementwise_kernels[0];
