/* q_fc.c - integer FULLY_CONNECTED, int8 and 16x8.
 *
 * reference_integer_ops::FullyConnected / FullyConnectedPerChannel: the
 * input is viewed as [rows, depth] (depth = the weights' last dim),
 *   acc = sum_d (w[u,d] - w_zp) * (x[r,d] - in_zp) + bias[u]
 * (per-channel weights are symmetric and their zero point is not applied),
 * then requantized, + out_zp, clamped. int8 accumulates in int32; 16x8 in
 * int64, or int32 when the bias is int32 (the reference's BiasType). The
 * requantization of the pinned oracle's reference path is a double multiply
 * rounded half away from zero (mopt_q_method_for), not gemmlowp's. */
#include <stdio.h>
#include <stdlib.h>

#include "ops/q_ops.h"

typedef struct qfc_state {
    bool wide, acc32;
    size_t rows, depth, units;
    int32_t in_off, w_off, out_off, lo, hi;
    mopt_q_method method;
    mopt_q_chan *ch; /* units */
    int64_t *bias;   /* units */
    /* Fast int8 path (kernels/qgemm.c): packed weights, GEMM rows are the
     * input rows (copied and padded when depth is not a multiple of 4). */
    int fast;
    mopt_conv_geom geom;
    mopt_qs8_gemm_job job;
    int8_t *packed;
    mopt_q_fastrq frq;
    const mopt_qs8_isa *qisa;
    char name[96];
} qfc_state;

static void qfc_free(void *p) {
    qfc_state *s = p;
    if (!s) return;
    free(s->ch);
    free(s->bias);
    free(s->packed);
    free(s->frq.mem);
    free(s);
}

static bool match_fc8(const mopt_graph *g, const mopt_op *op) {
    int bi = op->n_inputs > 2 ? op->inputs[2] : -1;
    return g->tensors[op->inputs[0]].dtype == MOPT_INT8 &&
           g->tensors[op->inputs[1]].dtype == MOPT_INT8 &&
           g->tensors[op->outputs[0]].dtype == MOPT_INT8 &&
           (bi < 0 || g->tensors[bi].dtype == MOPT_INT32);
}

static bool match_fc16(const mopt_graph *g, const mopt_op *op) {
    int bi = op->n_inputs > 2 ? op->inputs[2] : -1;
    return g->tensors[op->inputs[0]].dtype == MOPT_INT16 &&
           g->tensors[op->inputs[1]].dtype == MOPT_INT8 &&
           g->tensors[op->outputs[0]].dtype == MOPT_INT16 &&
           (bi < 0 || g->tensors[bi].dtype == MOPT_INT64 || g->tensors[bi].dtype == MOPT_INT32);
}

static mopt_status qfc_prepare_ref(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                   mopt_error *err) {
    qfc_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    const mopt_tensor *x = mopt_ctx_tin(ctx, 0), *w = mopt_ctx_tin(ctx, 1),
                      *y = mopt_ctx_tout(ctx, 0), *b = mopt_ctx_tin(ctx, 2);
    if (w->rank != 2 || w->dims[1] <= 0)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "weights must be 2-D [units, depth]");
    s->wide = x->dtype == MOPT_INT16;
    s->acc32 = !s->wide || (b && b->dtype == MOPT_INT32);
    s->units = (size_t)w->dims[0];
    s->depth = (size_t)w->dims[1];
    if (mopt_numel(x) % s->depth)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT,
                            "input size %zu is not a multiple of the depth %zu", mopt_numel(x),
                            s->depth);
    s->rows = mopt_numel(x) / s->depth;
    if (mopt_numel(y) != s->rows * s->units)
        return mopt_op_fail(ctx, err, MOPT_ERR_BAD_INPUT, "output size %zu, expected %zu",
                            mopt_numel(y), s->rows * s->units);
    if (!mopt_ctx_in(ctx, 1))
        return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED,
                            "weights must be constant for integer kernels");
    if (ctx->op->p.fc.weights_format != 0)
        return mopt_op_fail(ctx, err, MOPT_ERR_UNSUPPORTED, "shuffled weights are not supported");
    float in_s = 0.0f, out_s = 0.0f, ws = 0.0f;
    int32_t in_zp = 0, out_zp = 0, wzp = 0;
    mopt_status st;
    if ((st = mopt_q_tensor_params(ctx, x, "input", &in_s, &in_zp, err))) return st;
    if ((st = mopt_q_tensor_params(ctx, y, "output", &out_s, &out_zp, err))) return st;
    if ((st = mopt_q_tensor_params(ctx, w, "weights", &ws, &wzp, err))) return st;
    s->in_off = -in_zp;
    s->out_off = out_zp;
    /* Per-tensor weights keep their zero point (backward compatibility in
     * the reference); per-channel ones are symmetric by spec. */
    s->w_off = w->quant.n == 1 ? -wzp : 0;
    if ((st = mopt_q_act_range(ctx, ctx->op->p.fc.act, y, &s->lo, &s->hi, err))) return st;
    s->method = mopt_q_method_for(s->wide ? MOPT_QF_FC16 : MOPT_QF_FC8, ctx->rounding);
    plan->name = s->wide ? "fully_connected_i16x8_ref" : "fully_connected_i8_ref";
    return mopt_q_prepare_channels(ctx, (int)s->units, 0, 2, s->method, in_s, out_s, &s->ch,
                                   &s->bias, err);
}

static mopt_status qfc_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                               mopt_error *err) {
    mopt_status st = qfc_prepare_ref(ctx, plan, err);
    qfc_state *s = plan->state;
    /* Per-tensor weights with a zero point would need a per-row input sum
     * term; converters never produce them for int8, so they keep the
     * reference loops. */
    if (st != MOPT_OK || s->wide || s->w_off != 0) return st;
    const mopt_qs8_isa *qi = mopt_qs8_isa_for(ctx->isa);
    const mopt_qs8_gemm_ukernel *uk =
        s->rows * 2 <= (size_t)qi->gemm.mr ? &qi->gemm_row : &qi->gemm;
    const int8_t *w = mopt_ctx_in(ctx, 1);
    size_t n = s->units, k = s->depth, kp = mopt_qs8_round_k(k);
    int32_t *init = malloc(n * sizeof *init);
    s->packed = malloc(mopt_qs8_gemm_packed_bytes(n, kp, uk->nr));
    if (!init || !s->packed) {
        free(init);
        return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    }
    mopt_q_fold_init(n, k, w, k, 1, s->bias, s->in_off, uk->u8_input, init);
    mopt_qs8_gemm_pack(n, k, kp, uk->nr, w, init, s->packed);
    free(init);
    /* FC as a 1x1 convolution over a [rows, 1, 1, depth] image. */
    s->geom = (mopt_conv_geom){(int32_t)s->rows, 1, 1, (int32_t)k, 1, 1, (int32_t)n,
                               1, 1, 1, 1, 1, 1, 0, 0};
    mopt_qs8_gemm_job *j = &s->job;
    j->uk = uk;
    j->g = &s->geom;
    j->pad_value = 0;
    j->m = s->rows;
    j->n = n;
    j->k = k;
    j->kp = kp;
    j->direct = k == kp;
    j->packed = s->packed;
    j->finish = mopt_q_finish_i8;
    plan->scratch_bytes = mopt_qs8_gemm_scratch(j, ctx->num_threads);
    s->fast = 1;
    s->qisa = qi;
    if (mopt_q_fastrq_init(&s->frq, s->ch, n, s->method, s->out_off, s->lo, s->hi) < 0)
        return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    snprintf(s->name, sizeof s->name, "fully_connected_i8_gemm/%s", uk->name);
    plan->name = s->name;
    return MOPT_OK;
}

typedef struct qfc_job {
    const qfc_state *s;
    const void *x;
    const int8_t *w;
    void *y;
} qfc_job;

static void qfc_range(void *arg, int tid, size_t begin, size_t end) {
    (void)tid;
    const qfc_job *j = arg;
    const qfc_state *s = j->s;
    /* Work items are (row, unit) pairs so a single-row FC still splits. */
    for (size_t i = begin; i < end; i++) {
        size_t r = i / s->units, u = i % s->units;
        const int8_t *wp = j->w + u * s->depth;
        int64_t acc = 0;
        if (s->wide) {
            const int16_t *xp = (const int16_t *)j->x + r * s->depth;
            for (size_t d = 0; d < s->depth; d++)
                acc += ((int64_t)wp[d] + s->w_off) * ((int64_t)xp[d] + s->in_off);
        } else {
            const int8_t *xp = (const int8_t *)j->x + r * s->depth;
            for (size_t d = 0; d < s->depth; d++)
                acc += ((int64_t)wp[d] + s->w_off) * ((int64_t)xp[d] + s->in_off);
        }
        if (s->acc32) acc = mopt_q_wrap32(acc);
        acc += s->bias[u];
        if (s->acc32) acc = mopt_q_wrap32(acc);
        int64_t o = (int64_t)mopt_q_requant(acc, &s->ch[u], s->method) + s->out_off;
        int32_t v = o > s->hi ? s->hi : (o < s->lo ? s->lo : (int32_t)o);
        if (s->wide)
            ((int16_t *)j->y)[i] = (int16_t)v;
        else
            ((int8_t *)j->y)[i] = (int8_t)v;
    }
}

static mopt_status qfc_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                            mopt_error *err) {
    (void)err;
    const qfc_state *s = state;
    if (s->fast) {
        mopt_qs8_gemm_job gj = s->job;
        mopt_q_out8 o = {s->ch,         s->method, s->out_off,
                         s->lo,         s->hi,     mopt_ctx_out(ctx, 0),
                         s->units,      s->frq.mem ? &s->frq.rq : NULL,
                         s->qisa->requant};
        gj.in = mopt_ctx_in(ctx, 0);
        gj.finish_arg = &o;
        mopt_qs8_gemm_run(&gj, scratch, ctx->num_threads);
        return MOPT_OK;
    }
    qfc_job j = {s, mopt_ctx_in(ctx, 0), mopt_ctx_in(ctx, 1), mopt_ctx_out(ctx, 0)};
    size_t n = s->rows * s->units;
    int threads = n * s->depth < (1u << 16) ? 1 : ctx->num_threads;
    mopt_parallel_for(threads, n, qfc_range, &j);
    return MOPT_OK;
}

const mopt_kernel mopt_q_fc_kernels[] = {
    {MOPT_OP_FULLY_CONNECTED, "fully_connected_i8_ref", match_fc8, qfc_prepare, qfc_eval,
     qfc_free, 0},
    {MOPT_OP_FULLY_CONNECTED, "fully_connected_i16x8_ref", match_fc16, qfc_prepare, qfc_eval,
     qfc_free, 0},
};
const size_t mopt_q_fc_kernels_n = sizeof mopt_q_fc_kernels / sizeof mopt_q_fc_kernels[0];

const mopt_kernel mopt_q_fc_ref_kernels[] = {
    {MOPT_OP_FULLY_CONNECTED, "fully_connected_i8_ref", match_fc8, qfc_prepare_ref, qfc_eval,
     qfc_free, 0},
};
const size_t mopt_q_fc_ref_kernels_n = sizeof mopt_q_fc_ref_kernels / sizeof mopt_q_fc_ref_kernels[0];
