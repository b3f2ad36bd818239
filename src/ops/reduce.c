/* reduce.c - float MEAN over any set of axes (keep_dims only changes the
 * output shape). As TFLite's reference: float sums in input order, then one
 * division by the number of reduced elements. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

typedef struct mean_state {
    int nd; /* collapsed input dims */
    size_t dims[MOPT_MAX_DIMS];
    size_t ostride[MOPT_MAX_DIMS]; /* output stride per input dim, 0 = reduced */
    size_t in_n, out_n;
    float count;
} mean_state;

static mopt_status mean_prepare(const mopt_kernel_ctx *ctx, mopt_kernel_plan *plan,
                                mopt_error *err) {
    mean_state *s = calloc(1, sizeof *s);
    if (!s) return mopt_op_fail(ctx, err, MOPT_ERR_NOMEM, "out of memory");
    plan->state = s;
    const mopt_tensor *x = mopt_ctx_tin(ctx, 0), *at = mopt_ctx_tin(ctx, 1);
    const int32_t *axes = mopt_ctx_in(ctx, 1); /* constant int32: checked by validation */
    size_t n_axes = mopt_numel(at);
    bool red[MOPT_MAX_DIMS] = {false};
    for (size_t i = 0; i < n_axes; i++) red[axes[i] < 0 ? axes[i] + x->rank : axes[i]] = true;
    double count = 1;
    size_t d_in[MOPT_MAX_DIMS];
    bool r_in[MOPT_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < x->rank; d++) {
        if (red[d]) count *= (double)x->dims[d];
        if (x->dims[d] == 1) continue;
        if (nd > 0 && r_in[nd - 1] == red[d]) {
            d_in[nd - 1] *= (size_t)x->dims[d]; /* merge neighbours of the same kind */
            continue;
        }
        d_in[nd] = (size_t)x->dims[d];
        r_in[nd] = red[d];
        nd++;
    }
    if (nd == 0) {
        d_in[0] = 1;
        r_in[0] = false;
        nd = 1;
    }
    size_t acc = 1;
    for (int d = nd - 1; d >= 0; d--) {
        s->dims[d] = d_in[d];
        s->ostride[d] = r_in[d] ? 0 : acc;
        if (!r_in[d]) acc *= d_in[d];
    }
    s->nd = nd;
    s->out_n = acc;
    s->in_n = mopt_numel(x);
    s->count = (float)count;
    return MOPT_OK;
}

static mopt_status mean_eval(const mopt_kernel_ctx *ctx, void *state, void *scratch,
                             mopt_error *err) {
    const mean_state *s = state;
    const float *x = mopt_ctx_in(ctx, 0);
    float *y = mopt_ctx_out(ctx, 0);
    for (size_t i = 0; i < s->out_n; i++) y[i] = 0.0f;
    int nd = s->nd;
    size_t n = s->dims[nd - 1], os = s->ostride[nd - 1];
    size_t rows = n ? s->in_n / n : 0;
    for (size_t row = 0; row < rows; row++) {
        size_t off = 0, rem = row;
        for (int d = nd - 2; d >= 0; d--) {
            off += (rem % s->dims[d]) * s->ostride[d];
            rem /= s->dims[d];
        }
        const float *xr = x + row * n;
        if (os == 0) {
            float a = y[off];
            for (size_t i = 0; i < n; i++) a += xr[i];
            y[off] = a;
        } else {
            ctx->isa->vbinary_vv[MOPT_VOP_ADD](n, y + off, xr, y + off, -INFINITY, INFINITY);
        }
    }
    ctx->isa->vbinary_vs[MOPT_VOP_DIV](s->out_n, y, &s->count, y, -INFINITY, INFINITY);
    return MOPT_OK;
}

const mopt_kernel mopt_reduce_kernels[] = {
    {MOPT_OP_MEAN, "mean_f32", mopt_match_io_f32, mean_prepare, mean_eval, free, 0},
};
const size_t mopt_reduce_kernels_n = sizeof mopt_reduce_kernels / sizeof mopt_reduce_kernels[0];
