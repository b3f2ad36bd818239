/* elementwise.c - float ADD / SUB / MUL with numpy broadcasting (up to 6-D)
 * and a fused activation: y = clamp(a op b).
 *
 * Prepare collapses the broadcast into at most 6 loops: size-1 output dims
 * are dropped and neighbouring dims merged when both inputs walk them
 * contiguously (or both broadcast them), so the common cases become one
 * flat loop or [outer, inner] with one operand repeated. */
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

typedef struct bin_state {
    int nd;
    size_t dims[MOPT_MAX_DIMS];
    size_t sa[MOPT_MAX_DIMS], sb[MOPT_MAX_DIMS]; /* element strides, 0 = broadcast */
    size_t outer;                                /* product of dims[0..nd-2] */
    int kind;                                    /* op type */
    float lo, hi;
} bin_state;

static mopt_status bin_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                               mopt_error *err) {
    bin_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    mopt_activation act = ctx->op->p.binary.act;
    mopt_status st = mopt_act_range_f32(ctx, act, &s->lo, &s->hi, err);
    if (st) return st;
    s->kind = ctx->op->type;
    const mopt_tensor *a = mopt_ctx_tin(ctx, 0), *b = mopt_ctx_tin(ctx, 1),
                      *y = mopt_ctx_tout(ctx, 0);
    int r = y->rank;
    size_t od[MOPT_MAX_DIMS], ad[MOPT_MAX_DIMS], bd[MOPT_MAX_DIMS];
    for (int i = 0; i < r; i++) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        od[i] = (size_t)y->dims[i];
        ad[i] = ia >= 0 ? (size_t)a->dims[ia] : 1;
        bd[i] = ib >= 0 ? (size_t)b->dims[ib] : 1;
    }
    size_t csa[MOPT_MAX_DIMS], csb[MOPT_MAX_DIMS], ca = 1, cb = 1;
    for (int i = r - 1; i >= 0; i--) {
        csa[i] = ad[i] == 1 ? 0 : ca;
        csb[i] = bd[i] == 1 ? 0 : cb;
        ca *= ad[i];
        cb *= bd[i];
    }
    int nd = 0;
    for (int i = 0; i < r; i++) {
        if (od[i] == 1) continue;
        if (nd > 0 && s->sa[nd - 1] == csa[i] * od[i] && s->sb[nd - 1] == csb[i] * od[i]) {
            /* Merge into the previous (outer) dim. */
            s->dims[nd - 1] *= od[i];
            s->sa[nd - 1] = csa[i];
            s->sb[nd - 1] = csb[i];
            continue;
        }
        s->dims[nd] = od[i];
        s->sa[nd] = csa[i];
        s->sb[nd] = csb[i];
        nd++;
    }
    if (nd == 0) {
        s->dims[0] = 1;
        s->sa[0] = s->sb[0] = 0;
        nd = 1;
    }
    s->nd = nd;
    s->outer = 1;
    for (int i = 0; i < nd - 1; i++) s->outer *= s->dims[i];
    return MOPT_OK;
}

/* Inner loop over n elements with operand strides 0 or 1, using the ISA's
 * elementwise kernels (a + b == b + a and a * b == b * a exactly, so the
 * scalar-first forms swap operands; SUB uses RSUB). */
static void inner(const mopt_isa *isa, int kind, size_t n, const float *a, size_t sa,
                  const float *b, size_t sb, float *y, float lo, float hi) {
    mopt_vop op = kind == MOPT_OP_ADD   ? MOPT_VOP_ADD
                  : kind == MOPT_OP_SUB ? MOPT_VOP_SUB
                                        : MOPT_VOP_MUL;
    if (sa && sb) {
        isa->vbinary_vv[op](n, a, b, y, lo, hi);
    } else if (sa) {
        isa->vbinary_vs[op](n, a, b, y, lo, hi);
    } else if (sb) {
        isa->vbinary_vs[op == MOPT_VOP_SUB ? MOPT_VOP_RSUB : op](n, b, a, y, lo, hi);
    } else {
        isa->vbinary_vs[op](1, a, b, y, lo, hi);
        for (size_t i = 1; i < n; i++) y[i] = y[0];
    }
}

typedef struct bin_job {
    const bin_state *s;
    const mopt_isa *isa;
    const float *a, *b;
    float *y;
} bin_job;

static void bin_range(void *arg, int tid, size_t begin, size_t end) {
    const bin_job *j = arg;
    const bin_state *s = j->s;
    int nd = s->nd;
    size_t n = s->dims[nd - 1];
    if (nd == 1) {
        /* Flat: [begin, end) are element indices. */
        size_t sa = s->sa[0], sb = s->sb[0];
        inner(j->isa, s->kind, end - begin, j->a + begin * sa, sa, j->b + begin * sb, sb,
              j->y + begin, s->lo, s->hi);
        return;
    }
    for (size_t o = begin; o < end; o++) {
        size_t oa = 0, ob = 0, rem = o;
        for (int d = nd - 2; d >= 0; d--) {
            size_t i = rem % s->dims[d];
            rem /= s->dims[d];
            oa += i * s->sa[d];
            ob += i * s->sb[d];
        }
        inner(j->isa, s->kind, n, j->a + oa, s->sa[nd - 1], j->b + ob, s->sb[nd - 1], j->y + o * n,
              s->lo, s->hi);
    }
}

static mopt_status bin_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                            mopt_error *err) {
    const bin_state *s = state;
    bin_job j = {s, ctx->isa, mopt_ctx_in(ctx, 0), mopt_ctx_in(ctx, 1), mopt_ctx_out(ctx, 0)};
    size_t units = s->nd == 1 ? s->dims[0] : s->outer;
    size_t total = s->outer * s->dims[s->nd - 1];
    mopt_parallel_for(total < (1u << 16) ? 1 : ctx->num_threads, units, bin_range, &j);
    return MOPT_OK;
}

const mopt_kernel mopt_elementwise_kernels[] = {
    {MOPT_OP_ADD, "add_f32", mopt_match_all_f32, bin_prepare, bin_eval, free, 0},
    {MOPT_OP_SUB, "sub_f32", mopt_match_all_f32, bin_prepare, bin_eval, free, 0},
    {MOPT_OP_MUL, "mul_f32", mopt_match_all_f32, bin_prepare, bin_eval, free, 0},
};
const size_t mopt_elementwise_kernels_n =
    sizeof mopt_elementwise_kernels / sizeof mopt_elementwise_kernels[0];
