/* Unit tests for the fast int8 paths (kernels/qgemm.c, x86/qs8_*.c and the
 * FAST_* paths of src/ops/q_conv.c / q_fc.c).
 *
 * Two levels, both with expected values that do not come from the code
 * under test:
 *  - micro-kernels (GEMM, GEMM row, depthwise) of every int8 ISA level this
 *    CPU supports against plain int64 sums wrapped to int32, written here;
 *  - whole CONV_2D / DEPTHWISE / FULLY_CONNECTED ops on random shapes, zero
 *    points, strides, dilations, padding, fused activations, per-channel and
 *    per-tensor filters, rounding modes and thread counts: the registered
 *    (fast) kernels forced to each float ISA level must give the same bytes
 *    as the reference loops (mopt_q_*_ref_kernels), which are themselves
 *    checked by hand in test_qkernels.c and against LiteRT in
 *    tests/interop/test_int_bitexact.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/kernels.h"
#include "ops/q_ops.h"
#include "rt_testutil.h"

static int32_t rnd_range(rng *r, int32_t lo, int32_t hi) {
    return lo + (int32_t)(rng_u32(r) % (uint32_t)(hi - lo + 1));
}

static int8_t rnd_i8(rng *r) {
    /* A quarter of the values at the extremes, where a saturating
     * instruction (vpmaddubsw) would go wrong. */
    uint32_t u = rng_u32(r);
    if ((u & 7) == 0) return -128;
    if ((u & 7) == 1) return 127;
    return (int8_t)(int32_t)((u >> 8) % 256u - 128u);
}

static int32_t rnd_init(rng *r) {
    /* Near the int32 limits now and then, so the sums wrap. */
    uint32_t u = rng_u32(r);
    if ((u & 7) == 0) return INT32_MAX - (int32_t)(u >> 20);
    if ((u & 7) == 1) return INT32_MIN + (int32_t)(u >> 20);
    return (int32_t)(rng_u32(r) % 200001u) - 100000;
}

static int32_t wrap_i64(int64_t v) { return (int32_t)(uint32_t)(uint64_t)v; }

/* ---- micro-kernels ---- */

static void check_gemm_uk(const mopt_qs8_gemm_ukernel *uk, rng *r, size_t k) {
    size_t mr = (size_t)uk->mr, nr = (size_t)uk->nr, kp = mopt_qs8_round_k(k);
    size_t n = nr - (size_t)rnd_range(r, 0, (int32_t)nr - 1); /* 1..nr real columns */
    int8_t *a = malloc(mr * kp + 1), *w = malloc(n * k + 1);
    int32_t *init = malloc(n * sizeof *init), *c = malloc(mr * nr * sizeof *c);
    int8_t *packed = malloc(mopt_qs8_gemm_packed_bytes(n, kp, uk->nr));
    assert_non_null(a);
    assert_non_null(w);
    assert_non_null(init);
    assert_non_null(c);
    assert_non_null(packed);
    for (size_t i = 0; i < mr * kp; i++) a[i] = rnd_i8(r);
    for (size_t i = 0; i < n * k; i++) w[i] = rnd_i8(r);
    for (size_t j = 0; j < n; j++) init[j] = rnd_init(r);
    mopt_qs8_gemm_pack(n, k, kp, uk->nr, w, init, packed);
    for (size_t rows = 1; rows <= mr; rows++) {
        memset(c, 0x5a, mr * nr * sizeof *c);
        uk->fn(rows, kp, a, kp, packed, c, nr);
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < n; j++) {
                int64_t s = init[j];
                for (size_t q = 0; q < k; q++)
                    s += (int64_t)a[i * kp + q] * (int64_t)w[j * k + q];
                /* u8 kernels see a + 128 (their callers fold -128 * sum w
                 * into init), so add it here. */
                if (uk->u8_input)
                    for (size_t q = 0; q < k; q++) s += 128 * (int64_t)w[j * k + q];
                if (c[i * nr + j] != wrap_i64(s))
                    fail_msg("%s rows %zu k %zu: C[%zu][%zu] = %d, want %d", uk->name, rows, k,
                             i, j, (int)c[i * nr + j], (int)wrap_i64(s));
            }
        /* Rows past `rows` are not written. */
        for (size_t i = rows; i < mr; i++)
            for (size_t j = 0; j < nr; j++) assert_int_equal(c[i * nr + j], 0x5a5a5a5a);
    }
    free(a);
    free(w);
    free(init);
    free(c);
    free(packed);
}

static void test_gemm_ukernels(void **state) {
    (void)state;
    const mopt_qs8_isa *list[8];
    int n = mopt_qs8_isa_supported(list, 8);
    assert_true(n >= 1);
    assert_ptr_equal(list[0], &mopt_qs8_isa_ref);
    rng r = {12345};
    static const size_t ks[] = {1, 3, 4, 5, 8, 12, 16, 17, 33, 64, 100, 257};
    for (int i = 0; i < n; i++)
        for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
            check_gemm_uk(&list[i]->gemm, &r, ks[t]);
            check_gemm_uk(&list[i]->gemm_row, &r, ks[t]);
        }
}

static void test_dw_ukernels(void **state) {
    (void)state;
    const mopt_qs8_isa *list[8];
    int n = mopt_qs8_isa_supported(list, 8);
    rng r = {777};
    for (int i = 0; i < n; i++)
        for (size_t ch = 1; ch <= 50; ch += (ch < 18 ? 1 : 7))
            for (size_t ks = 1; ks <= 10; ks += 3) {
                size_t cp = (ch + 15) & ~(size_t)15;
                /* Each tap row is its own allocation of exactly ch bytes, so
                 * ASan catches a read past a row. */
                int8_t **rows = malloc(ks * sizeof *rows);
                int16_t *w = calloc(ks * cp, sizeof *w);
                int32_t *init = calloc(cp, sizeof *init), *acc = malloc((ch + 1) * sizeof *acc);
                assert_non_null(rows);
                assert_non_null(w);
                assert_non_null(init);
                assert_non_null(acc);
                for (size_t t = 0; t < ks; t++) {
                    rows[t] = malloc(ch);
                    assert_non_null(rows[t]);
                    for (size_t c = 0; c < ch; c++) {
                        rows[t][c] = rnd_i8(&r);
                        w[t * cp + c] = rnd_i8(&r);
                    }
                }
                for (size_t c = 0; c < ch; c++) init[c] = rnd_init(&r);
                acc[ch] = 0x1234567;
                list[i]->dw(ch, ks, (const int8_t *const *)rows, w, init, acc);
                for (size_t c = 0; c < ch; c++) {
                    int64_t s = init[c];
                    for (size_t t = 0; t < ks; t++) s += (int64_t)rows[t][c] * w[t * cp + c];
                    if (acc[c] != wrap_i64(s))
                        fail_msg("%s dw ch %zu ks %zu: acc[%zu] = %d, want %d", list[i]->name,
                                 ch, ks, c, (int)acc[c], (int)wrap_i64(s));
                }
                assert_int_equal(acc[ch], 0x1234567); /* nothing past the channels */
                for (size_t t = 0; t < ks; t++) free(rows[t]);
                free(rows);
                free(w);
                free(init);
                free(acc);
            }
}

/* Requantization kernels against qmath's scalar functions (checked on
 * their own in test_qmath.c): gemmlowp MBQM over every shift QuantizeMultiplier
 * produces, and the double round-half-away with exact ties. */
static void test_requant_ukernels(void **state) {
    (void)state;
    const mopt_qs8_isa *list[8];
    int n_isa = mopt_qs8_isa_supported(list, 8);
    rng r = {31337};
    enum { N = 61 }; /* not a multiple of 8 or 16: tails */
    int32_t acc[N], mult[N], left[N], right[N];
    double scale[N];
    int8_t y[N + 1];
    for (int iter = 0; iter < 400; iter++) {
        for (int c = 0; c < N; c++) {
            uint32_t u = rng_u32(&r);
            acc[c] = (u & 15) == 0 ? INT32_MIN
                     : (u & 15) == 1 ? INT32_MAX
                     : (u & 15) < 8  ? (int32_t)(rng_u32(&r) % 20001u) - 10000
                                     : (int32_t)rng_u32(&r);
            int shift = rnd_range(&r, -31, 30);
            if (iter % 2) shift = rnd_range(&r, -12, 2); /* the common range */
            uint32_t um = rng_u32(&r) & 31;
            /* 0 (tiny scales), INT32_MIN (the one saturating product of
             * the doubling high multiply, with acc INT32_MIN and shift
             * <= 0) and the normal [2^30, 2^31) range. */
            mult[c] = um == 0   ? 0
                      : um == 1 ? INT32_MIN
                                : (int32_t)((1u << 30) + (rng_u32(&r) >> 2));
            left[c] = shift > 0 ? shift : 0;
            right[c] = shift > 0 ? 0 : -shift;
            /* Scales k / 2^j make (double)acc * scale land on exact halves. */
            scale[c] = (rng_u32(&r) & 1) ? (double)rnd_range(&r, 1, 7) / (double)(1 << rnd_range(&r, 1, 4))
                                         : 1e-4 * (1.0 + (double)(rng_u32(&r) % 1000u));
        }
        int32_t off = rnd_range(&r, -128, 127), lo = rnd_range(&r, -128, 0),
                hi = rnd_range(&r, 0, 127);
        for (int method = 0; method < 2; method++) {
            mopt_qs8_rq p = {method, mult, left, right, scale, off, lo, hi};
            for (int i = 0; i < n_isa; i++) {
                size_t col0 = (size_t)rnd_range(&r, 0, 5), n = N - col0;
                y[n] = 0x33;
                list[i]->requant(n, acc + col0, &p, col0, y);
                assert_int_equal(y[n], 0x33);
                for (size_t k = 0; k < n; k++) {
                    size_t c = col0 + k;
                    int64_t v;
                    if (method == MOPT_QS8_RQ_MBQM) {
                        v = mopt_mbqm_double(acc[c], mult[c], left[c] - right[c]);
                    } else {
                        double d = mopt_round_half_away((double)acc[c] * scale[c]);
                        v = d > 2147483647.0 ? INT32_MAX : d < -2147483648.0 ? INT32_MIN : (int64_t)d;
                    }
                    v += off;
                    int8_t want = (int8_t)(v > hi ? hi : v < lo ? lo : v);
                    if (y[k] != want)
                        fail_msg("%s requant method %d: acc %d mult %d shift %d scale %.17g: %d, "
                                 "want %d",
                                 list[i]->name, method, (int)acc[c], (int)mult[c],
                                 (int)(left[c] - right[c]), scale[c], y[k], want);
                }
            }
        }
    }
}

/* ---- whole ops: fast vs reference ---- */

static const mopt_kernel *find_in(const mopt_kernel *tab, size_t n, const mopt_graph *g,
                                  const mopt_op *op) {
    for (size_t i = 0; i < n; i++)
        if (tab[i].op == op->type && tab[i].match(g, op)) return &tab[i];
    return NULL;
}

/* Runs op 0 of g with kernel k: input tensor x gets `in`, out receives
 * output 0. Returns the plan name (static or the state's, copied). */
static void run_k(const mopt_kernel *k, const mopt_graph *g, const mopt_isa *isa, int threads,
                  mopt_rounding rnd, int x, const int8_t *in, int8_t *out, char *name,
                  size_t name_size) {
    const mopt_op *op = &g->ops[0];
    void **data = calloc((size_t)g->n_tensors, sizeof *data);
    assert_non_null(data);
    for (int t = 0; t < g->n_tensors; t++)
        if (mopt_tensor_is_constant(g, t)) data[t] = g->buffers[g->tensors[t].buffer].data;
    mopt_kernel_ctx c;
    memset(&c, 0, sizeof c);
    c.g = g;
    c.op = op;
    c.data = data;
    c.num_threads = threads;
    c.rounding = rnd;
    c.isa = isa;
    mopt_kernel_plan plan;
    memset(&plan, 0, sizeof plan);
    mopt_error e;
    memset(&e, 0, sizeof e);
    mopt_status st = k->prepare(&c, &plan, &e);
    if (st != MOPT_OK) fail_msg("prepare %s: %s", k->name, e.msg);
    snprintf(name, name_size, "%s", plan.name ? plan.name : k->name);
    data[x] = (void *)in;
    data[op->outputs[0]] = out;
    void *scratch = NULL;
    if (plan.scratch_bytes) {
        scratch = aligned_alloc(64, (plan.scratch_bytes + 63) & ~(size_t)63);
        assert_non_null(scratch);
    }
    st = k->eval(&c, plan.state, scratch, &e);
    if (st != MOPT_OK) fail_msg("eval %s: %s", k->name, e.msg);
    free(scratch);
    if (k->free_state) k->free_state(plan.state);
    free(data);
}

typedef struct case_cfg {
    mopt_op_type type;
    int32_t batch, h, w, ic, oc, kh, kw, sh, sw, dh, dw;
    mopt_padding pad;
    mopt_activation act;
    int per_channel, rounding, in_zp, out_zp, with_bias;
} case_cfg;

static const mopt_activation ACTS[] = {MOPT_ACT_NONE, MOPT_ACT_RELU, MOPT_ACT_RELU6,
                                       MOPT_ACT_RELU_N1_TO_1};
static const mopt_rounding ROUNDS[] = {MOPT_ROUND_DOUBLE, MOPT_ROUND_SINGLE, MOPT_ROUND_FP32};

/* Builds the graph of one case, runs reference and fast kernels (every
 * float ISA level, 1 and 3 threads) and compares bytes. Returns the fast
 * plan name of the last run. */
static void run_case(const case_cfg *cf, rng *r, char *fast_name, size_t fast_name_size) {
    mopt_graph *g = mopt_graph_create();
    assert_non_null(g);
    bool fc = cf->type == MOPT_OP_FULLY_CONNECTED, dw = cf->type == MOPT_OP_DEPTHWISE_CONV_2D;
    int32_t oh = 1, ow = 1, pt = 0;
    if (!fc) {
        oh = mopt_conv_out_size(cf->pad, cf->h, cf->kh, cf->sh, cf->dh, &pt);
        ow = mopt_conv_out_size(cf->pad, cf->w, cf->kw, cf->sw, cf->dw, &pt);
    }
    int32_t xd[4] = {cf->batch, cf->h, cf->w, cf->ic}, yd[4] = {cf->batch, oh, ow, cf->oc};
    int32_t wd[4] = {cf->oc, cf->kh, cf->kw, cf->ic};
    int xr = 4, wr = 4, yr = 4;
    if (fc) {
        xd[0] = cf->batch;
        xd[1] = cf->ic;
        xr = 2;
        wd[0] = cf->oc;
        wd[1] = cf->ic;
        wr = 2;
        yd[0] = cf->batch;
        yd[1] = cf->oc;
        yr = 2;
    } else if (dw) {
        wd[0] = 1;
        wd[3] = cf->oc;
    }
    size_t ktot = fc ? (size_t)cf->ic
                     : (size_t)cf->kh * (size_t)cf->kw * (size_t)(dw ? 1 : cf->ic);
    size_t wn = (size_t)wd[0] * (size_t)wd[1] * (size_t)(wr == 4 ? wd[2] * wd[3] : 1);
    int8_t *w = malloc(wn);
    assert_non_null(w);
    for (size_t i = 0; i < wn; i++) w[i] = rnd_i8(r);
    float in_s = 0.05f, wsc[64];
    int nq = cf->per_channel ? cf->oc : 1;
    assert_true(nq <= 64);
    for (int i = 0; i < nq; i++) wsc[i] = 0.01f * (0.5f + (float)(rng_u32(r) % 1000u) / 666.0f);
    /* Effective scale ~ 1 / (80 sqrt(k)) keeps most outputs off the rails. */
    double sq = 1.0;
    while (sq * sq < (double)ktot) sq += 1.0;
    float out_s = (float)(0.05 * 0.01 * 80.0 * sq);
    int xt = t_act(g, "x", MOPT_INT8, xr, xd);
    set_quant1(g, xt, in_s, cf->in_zp);
    int wt = t_const(g, "w", MOPT_INT8, wr, wd, w);
    int64_t zps[64] = {0};
    assert_int_equal(mopt_tensor_set_quant(&g->tensors[wt], nq, wsc, zps, dw ? 3 : 0), MOPT_OK);
    int32_t ins[3] = {xt, wt, -1};
    int nin = 2;
    if (cf->with_bias) {
        int32_t bd[1] = {cf->oc}, b[64];
        float bs[64];
        for (int i = 0; i < cf->oc; i++) {
            b[i] = rnd_init(r);
            bs[i] = in_s * wsc[nq == 1 ? 0 : i];
        }
        int bt = t_const(g, "b", MOPT_INT32, 1, bd, b);
        assert_int_equal(mopt_tensor_set_quant(&g->tensors[bt], nq, bs, zps, 0), MOPT_OK);
        ins[2] = bt;
        nin = 3;
    }
    int yt = t_act(g, "y", MOPT_INT8, yr, yd);
    set_quant1(g, yt, out_s, cf->out_zp);
    int oi = add_op(g, cf->type, ins, nin, yt);
    if (fc) {
        g->ops[oi].p.fc.act = cf->act;
    } else {
        mopt_conv_params *p = &g->ops[oi].p.conv;
        p->padding = cf->pad;
        p->stride_h = cf->sh;
        p->stride_w = cf->sw;
        p->dilation_h = cf->dh;
        p->dilation_w = cf->dw;
        p->act = cf->act;
        p->depth_multiplier = 1;
    }
    size_t xn = (size_t)dims_numel(xr, xd), yn = (size_t)dims_numel(yr, yd);
    int8_t *x = malloc(xn), *want = malloc(yn + 1), *got = malloc(yn + 1);
    assert_non_null(x);
    assert_non_null(want);
    assert_non_null(got);
    for (size_t i = 0; i < xn; i++) x[i] = rnd_i8(r);
    const mopt_op *op = &g->ops[0];
    const mopt_kernel *kref =
        fc ? find_in(mopt_q_fc_ref_kernels, mopt_q_fc_ref_kernels_n, g, op)
           : find_in(mopt_q_conv_ref_kernels, mopt_q_conv_ref_kernels_n, g, op);
    const mopt_kernel *kfast = fc ? find_in(mopt_q_fc_kernels, mopt_q_fc_kernels_n, g, op)
                                  : find_in(mopt_q_conv_kernels, mopt_q_conv_kernels_n, g, op);
    assert_non_null(kref);
    assert_non_null(kfast);
    char name[128];
    mopt_rounding rnd = ROUNDS[cf->rounding];
    run_k(kref, g, &mopt_isa_ref, 1, rnd, xt, x, want, name, sizeof name);
    const mopt_isa *isas[4];
    int n_isa = mopt_isa_supported(isas, 4);
    for (int i = 0; i < n_isa; i++)
        for (int threads = 1; threads <= 3; threads += 2) {
            memset(got, 0x11, yn + 1);
            run_k(kfast, g, isas[i], threads, rnd, xt, x, got, fast_name, fast_name_size);
            for (size_t e = 0; e < yn; e++)
                if (got[e] != want[e])
                    fail_msg("%s (isa %s, %d threads) b%d %dx%dx%d -> %dx%dx%d k%dx%d s%d,%d "
                             "d%d,%d pad %d act %d pc %d rnd %d zp %d/%d: y[%zu] = %d, want %d",
                             fast_name, isas[i]->name, threads, (int)cf->batch, (int)cf->h,
                             (int)cf->w, (int)cf->ic, (int)oh, (int)ow, (int)cf->oc,
                             (int)cf->kh, (int)cf->kw, (int)cf->sh, (int)cf->sw, (int)cf->dh,
                             (int)cf->dw, (int)cf->pad, (int)cf->act, cf->per_channel,
                             cf->rounding, cf->in_zp, cf->out_zp, e, got[e], want[e]);
            assert_int_equal(got[yn], 0x11); /* nothing written past the output */
        }
    free(x);
    free(want);
    free(got);
    free(w);
    mopt_graph_free(g);
}

static case_cfg random_cfg(rng *r, mopt_op_type type) {
    case_cfg c;
    memset(&c, 0, sizeof c);
    c.type = type;
    c.batch = rnd_range(r, 1, 2);
    c.h = rnd_range(r, 1, 9);
    c.w = rnd_range(r, 1, 9);
    c.ic = rnd_range(r, 1, 24);
    c.oc = type == MOPT_OP_DEPTHWISE_CONV_2D ? c.ic : rnd_range(r, 1, 40);
    c.kh = rnd_range(r, 1, 4);
    c.kw = rnd_range(r, 1, 4);
    c.sh = rnd_range(r, 1, 3);
    c.sw = rnd_range(r, 1, 3);
    c.dh = rnd_range(r, 1, 2);
    c.dw = rnd_range(r, 1, 2);
    c.pad = rng_u32(r) % 2 ? MOPT_PAD_SAME : MOPT_PAD_VALID;
    /* VALID needs the (dilated) kernel inside the image. */
    if (c.pad == MOPT_PAD_VALID) {
        if ((c.kh - 1) * c.dh + 1 > c.h) c.h = (c.kh - 1) * c.dh + 1;
        if ((c.kw - 1) * c.dw + 1 > c.w) c.w = (c.kw - 1) * c.dw + 1;
    }
    c.act = ACTS[rng_u32(r) % 4];
    c.per_channel = (int)(rng_u32(r) % 2);
    c.rounding = (int)(rng_u32(r) % 3);
    c.in_zp = rnd_range(r, -128, 127);
    c.out_zp = rnd_range(r, -128, 127);
    c.with_bias = rng_u32(r) % 4 != 0;
    return c;
}

static void test_conv_fast_matches_reference(void **state) {
    (void)state;
    rng r = {2024};
    char name[128];
    for (int i = 0; i < 120; i++) {
        case_cfg c = random_cfg(&r, MOPT_OP_CONV_2D);
        run_case(&c, &r, name, sizeof name);
        assert_non_null(strstr(name, "gemm")); /* the fast path did run */
    }
    /* 1x1 stride 1, depth a multiple of 4: the direct (no im2col) rows. */
    for (int i = 0; i < 20; i++) {
        case_cfg c = random_cfg(&r, MOPT_OP_CONV_2D);
        c.kh = c.kw = c.sh = c.sw = 1;
        c.ic = 4 * rnd_range(&r, 1, 12);
        run_case(&c, &r, name, sizeof name);
    }
}

static void test_depthwise_fast_matches_reference(void **state) {
    (void)state;
    rng r = {99};
    char name[128];
    for (int i = 0; i < 120; i++) {
        case_cfg c = random_cfg(&r, MOPT_OP_DEPTHWISE_CONV_2D);
        if (i % 10 == 0) c.ic = c.oc = rnd_range(&r, 30, 60); /* several 16-channel blocks */
        run_case(&c, &r, name, sizeof name);
        assert_non_null(strstr(name, "depthwise_conv2d_i8/"));
    }
}

static void test_fc_fast_matches_reference(void **state) {
    (void)state;
    rng r = {4242};
    char name[128];
    for (int i = 0; i < 150; i++) {
        case_cfg c = random_cfg(&r, MOPT_OP_FULLY_CONNECTED);
        c.batch = i % 3 == 0 ? 1 : rnd_range(&r, 1, 20);
        c.ic = rnd_range(&r, 1, 300);
        c.oc = rnd_range(&r, 1, 64);
        run_case(&c, &r, name, sizeof name);
        assert_non_null(strstr(name, "gemm"));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_ukernels),
        cmocka_unit_test(test_dw_ukernels),
        cmocka_unit_test(test_requant_ukernels),
        cmocka_unit_test(test_conv_fast_matches_reference),
        cmocka_unit_test(test_depthwise_fast_matches_reference),
        cmocka_unit_test(test_fc_fast_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
