/* test_ptq.c - post-training quantization against the TFLite converter.
 *
 * tests/ptq/converter/ holds what TF 2.21's converter produced for the float
 * fixtures and the zoo models (tests/ptq/make_converter_goldens.py, with the
 * calibration samples listed in MANIFEST.txt). Each case is quantized again
 * by mopt with the same samples and the two graphs are compared operator by
 * operator (matched through the graph structure, since the converter orders
 * some independent operators differently): operator types, versions and
 * options, tensor types and shapes, quantization parameters, quantized
 * weights and biases.
 *
 * Activation ranges come from running the float model, and mopt's float
 * kernels are not bit-identical to TFLite's (summation order), so scales
 * derived from activations are compared with a relative tolerance of 1e-5
 * and zero points within 1; everything derived from the weights alone must
 * match exactly. MOPT_PTQ_VERBOSE=1 prints every difference.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mopt/mopt.h"
#include "mopt/quantize.h"

#ifndef MOPT_SOURCE_DIR
#define MOPT_SOURCE_DIR "."
#endif

#define SUBSET MOPT_SOURCE_DIR "/tests/data/fashion-mnist-subset"

static bool verbose(void) {
    const char *v = getenv("MOPT_PTQ_VERBOSE");
    return v && *v && strcmp(v, "0") != 0;
}

/* ---------------------------------------------------------------------- */
/* Graph matching                                                          */
/* ---------------------------------------------------------------------- */

typedef struct cmp_stats {
    int ops_unmatched;
    int op_mismatch;       /* type/version/options */
    int tensor_mismatch;   /* dtype/shape/quantization structure */
    int scale_exact, scale_close, scale_far;
    int zp_exact, zp_off1, zp_far;
    int64_t w_total, w_diff;       /* int8 weight values */
    int64_t b_total, b_diff1, b_far; /* bias values: off by <= 1 step (relative), more */
    int64_t c_total, c_diff;       /* other quantized constants */
} cmp_stats;

static void note(const char *fmt, ...) {
    if (!verbose())
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

static bool is_act(const mopt_graph *g, int t) { return t >= 0 && !mopt_tensor_is_constant(g, t); }

/* Similarity of two constant tensors (same dtype and size and bytes). */
static bool same_const(const mopt_graph *a, int ta, const mopt_graph *b, int tb) {
    if (ta < 0 || tb < 0)
        return ta == tb;
    const mopt_tensor *x = &a->tensors[ta], *y = &b->tensors[tb];
    int64_t n = mopt_tensor_numel(x);
    if (x->dtype != y->dtype || n != mopt_tensor_numel(y))
        return false;
    /* Most bytes equal: tells apart constants of the same shape (float16
     * weights behind DEQUANTIZE ops, two FC layers on one input). */
    const uint8_t *p = mopt_tensor_data(a, ta), *q = mopt_tensor_data(b, tb);
    size_t bytes = (size_t)n * mopt_dtype_size(x->dtype), same = 0;
    for (size_t i = 0; i < bytes; i++) same += p[i] == q[i];
    return bytes == 0 || same * 2 > bytes;
}

static void compare_quant(const char *what, const mopt_tensor *a, const mopt_tensor *b, bool derived,
                          cmp_stats *s) {
    if (a->quant.n != b->quant.n || (a->quant.n > 1 && a->quant.axis != b->quant.axis)) {
        note("  %s '%s': quantization n=%d axis=%d, converter n=%d axis=%d\n", what, a->name,
             a->quant.n, a->quant.axis, b->quant.n, b->quant.axis);
        s->tensor_mismatch++;
        return;
    }
    for (int i = 0; i < a->quant.n; i++) {
        float x = a->quant.scale[i], y = b->quant.scale[i];
        if (x == y) {
            s->scale_exact++;
        } else if (fabs((double)x - (double)y) <= 1e-5 * fabs((double)y) && derived) {
            s->scale_close++;
            note("  %s '%s': scale[%d] %.9g vs converter %.9g (close)\n", what, a->name, i, x, y);
        } else {
            s->scale_far++;
            note("  %s '%s': scale[%d] %.9g vs converter %.9g\n", what, a->name, i, x, y);
        }
        int64_t za = a->quant.zero_point[i], zb = b->quant.zero_point[i];
        if (za == zb) {
            s->zp_exact++;
        } else if (llabs(za - zb) <= 1 && derived) {
            s->zp_off1++;
            note("  %s '%s': zero point %lld vs converter %lld\n", what, a->name, (long long)za,
                 (long long)zb);
        } else {
            s->zp_far++;
            note("  %s '%s': zero point %lld vs converter %lld\n", what, a->name, (long long)za,
                 (long long)zb);
        }
    }
}

static void compare_tensor(const char *what, const mopt_graph *ga, int ta, const mopt_graph *gb,
                           int tb, int role, cmp_stats *s) {
    if (ta < 0 || tb < 0) {
        if (ta != tb) {
            note("  %s: optional input present in one model only (%d vs %d)\n", what, ta, tb);
            s->tensor_mismatch++;
        }
        return;
    }
    const mopt_tensor *a = &ga->tensors[ta], *b = &gb->tensors[tb];
    if (a->dtype != b->dtype || a->rank != b->rank ||
        memcmp(a->dims, b->dims, (size_t)a->rank * sizeof(int32_t)) != 0) {
        note("  %s '%s': %s rank %d, converter %s rank %d\n", what, a->name,
             mopt_dtype_name(a->dtype), a->rank, mopt_dtype_name(b->dtype), b->rank);
        s->tensor_mismatch++;
        return;
    }
    bool is_const = mopt_tensor_is_constant(ga, ta);
    if (is_const != mopt_tensor_is_constant(gb, tb)) {
        note("  %s '%s': constant in one model only\n", what, a->name);
        s->tensor_mismatch++;
        return;
    }
    /* role: 1 weights, 2 bias, 0 other. Weight scales depend only on the
     * weights unless the bias adjustment used the input scale. */
    compare_quant(what, a, b, role != 1, s);
    if (!is_const)
        return;
    int64_t n = mopt_tensor_numel(a);
    const void *da = mopt_tensor_data(ga, ta), *db = mopt_tensor_data(gb, tb);
    if (a->dtype == MOPT_INT8 && role == 1) {
        const int8_t *x = da, *y = db;
        int64_t d = 0;
        for (int64_t i = 0; i < n; i++) d += x[i] != y[i];
        s->w_total += n;
        s->w_diff += d;
        if (d) note("  %s '%s': %lld of %lld weights differ\n", what, a->name, (long long)d, (long long)n);
    } else if ((a->dtype == MOPT_INT32 || a->dtype == MOPT_INT64) && a->quant.n > 0) {
        int64_t d1 = 0, far = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t x = a->dtype == MOPT_INT32 ? ((const int32_t *)da)[i] : ((const int64_t *)da)[i];
            int64_t y = b->dtype == MOPT_INT32 ? ((const int32_t *)db)[i] : ((const int64_t *)db)[i];
            if (x == y) continue;
            /* Bias values scale with 1 / (input scale x weight scale): an
             * input scale 1e-6 off moves large values by more than 1. */
            double tol = 1.0 + 2e-5 * fabs((double)y);
            if (fabs((double)x - (double)y) <= tol) d1++;
            else far++;
            if (far && far < 4) note("  %s '%s'[%lld]: %lld vs converter %lld\n", what, a->name, (long long)i, (long long)x, (long long)y);
        }
        s->b_total += n;
        s->b_diff1 += d1;
        s->b_far += far;
    } else if (a->dtype == MOPT_INT8 || a->dtype == MOPT_INT16 || a->dtype == MOPT_FLOAT16) {
        size_t es = mopt_dtype_size(a->dtype);
        int64_t d = 0;
        for (int64_t i = 0; i < n; i++)
            d += memcmp((const char *)da + i * es, (const char *)db + i * es, es) != 0;
        s->c_total += n;
        s->c_diff += d;
        if (d) note("  %s '%s': %lld of %lld constant values differ\n", what, a->name, (long long)d, (long long)n);
    }
}

static int max_version(const mopt_graph *g, int type) {
    int v = 0;
    for (int i = 0; i < g->n_ops; i++)
        if (g->ops[i].type == (mopt_op_type)type && g->ops[i].version > v) v = g->ops[i].version;
    return v;
}

static bool options_equal(const mopt_op *a, const mopt_op *b) {
    switch (a->type) {
    case MOPT_OP_CONV_2D:
    case MOPT_OP_DEPTHWISE_CONV_2D:
        return a->p.conv.padding == b->p.conv.padding && a->p.conv.stride_w == b->p.conv.stride_w &&
               a->p.conv.stride_h == b->p.conv.stride_h && a->p.conv.act == b->p.conv.act &&
               a->p.conv.quantized_bias_type == b->p.conv.quantized_bias_type;
    case MOPT_OP_FULLY_CONNECTED:
        return a->p.fc.act == b->p.fc.act && a->p.fc.keep_num_dims == b->p.fc.keep_num_dims &&
               a->p.fc.asymmetric_quantize_inputs == b->p.fc.asymmetric_quantize_inputs &&
               a->p.fc.quantized_bias_type == b->p.fc.quantized_bias_type;
    case MOPT_OP_ADD:
    case MOPT_OP_SUB:
        return a->p.binary.act == b->p.binary.act &&
               a->p.binary.pot_scale_int16 == b->p.binary.pot_scale_int16;
    case MOPT_OP_MUL: return a->p.binary.act == b->p.binary.act;
    default: return true;
    }
}

/* Matches ops of A (mopt) to ops of B (converter) through the graph: an op
 * is matched once its activation inputs are, to an op of B of the same type
 * reading the corresponding tensors. */
static void compare_graphs(const mopt_graph *A, const mopt_graph *B, cmp_stats *s) {
    memset(s, 0, sizeof(*s));
    int *tmap = malloc(((size_t)A->n_tensors + 1) * sizeof(int));
    int *amatch = malloc(((size_t)A->n_ops + 1) * sizeof(int));
    bool *bused = calloc((size_t)B->n_ops + 1, sizeof(bool));
    for (int t = 0; t < A->n_tensors; t++) tmap[t] = -1;
    for (int i = 0; i < A->n_ops; i++) amatch[i] = -1;
    assert_int_equal(A->n_inputs, B->n_inputs);
    assert_int_equal(A->n_outputs, B->n_outputs);
    for (int i = 0; i < A->n_inputs; i++) {
        tmap[A->inputs[i]] = B->inputs[i];
        compare_tensor("graph input", A, A->inputs[i], B, B->inputs[i], 0, s);
    }
    bool progress = true;
    while (progress) {
        progress = false;
        for (int i = 0; i < A->n_ops; i++) {
            if (amatch[i] >= 0)
                continue;
            const mopt_op *a = &A->ops[i];
            bool ready = true;
            for (int k = 0; k < a->n_inputs && ready; k++)
                if (is_act(A, a->inputs[k]) && tmap[a->inputs[k]] < 0) ready = false;
            if (!ready)
                continue;
            int best = -1;
            for (int j = 0; j < B->n_ops && best < 0; j++) {
                const mopt_op *b = &B->ops[j];
                if (bused[j] || b->type != a->type || b->n_inputs != a->n_inputs)
                    continue;
                bool ok = true;
                for (int k = 0; k < a->n_inputs && ok; k++) {
                    int ta = a->inputs[k], tb = b->inputs[k];
                    if (is_act(A, ta))
                        ok = tmap[ta] == tb;
                    else
                        ok = !is_act(B, tb) && same_const(A, ta, B, tb);
                }
                if (ok)
                    best = j;
            }
            if (best < 0)
                continue;
            amatch[i] = best;
            bused[best] = true;
            progress = true;
            const mopt_op *b = &B->ops[best];
            char what[96];
            const char *nm = mopt_op_name(a->type);
            if (max_version(A, a->type) != max_version(B, b->type)) {
                note("op %d %s: version %d, converter %d\n", i, nm, max_version(A, a->type),
                     max_version(B, b->type));
                s->op_mismatch++;
            }
            if (!options_equal(a, b)) {
                note("op %d %s: options differ\n", i, nm);
                s->op_mismatch++;
            }
            for (int k = 0; k < a->n_inputs; k++) {
                snprintf(what, sizeof(what), "op %d %s input %d", i, nm, k);
                int role = is_act(A, a->inputs[k]) ? 0
                           : (a->type == MOPT_OP_CONV_2D || a->type == MOPT_OP_DEPTHWISE_CONV_2D ||
                              a->type == MOPT_OP_FULLY_CONNECTED)
                               ? (k == 1 ? 1 : k == 2 ? 2 : 0)
                               : 0;
                if (!is_act(A, a->inputs[k]))
                    compare_tensor(what, A, a->inputs[k], B, b->inputs[k], role, s);
            }
            for (int k = 0; k < a->n_outputs; k++) {
                snprintf(what, sizeof(what), "op %d %s output %d", i, nm, k);
                if (a->outputs[k] >= 0) tmap[a->outputs[k]] = b->outputs[k];
                compare_tensor(what, A, a->outputs[k], B, b->outputs[k], 0, s);
            }
        }
    }
    for (int i = 0; i < A->n_ops; i++)
        if (amatch[i] < 0) {
            note("op %d %s: no counterpart in the converter's model\n", i, mopt_op_name(A->ops[i].type));
            s->ops_unmatched++;
        }
    for (int j = 0; j < B->n_ops; j++)
        if (!bused[j]) {
            note("converter op %d %s: no counterpart in mopt's model\n", j, mopt_op_name(B->ops[j].type));
            s->ops_unmatched++;
        }
    for (int i = 0; i < A->n_outputs; i++)
        if (tmap[A->outputs[i]] != B->outputs[i]) {
            note("graph output %d does not correspond\n", i);
            s->ops_unmatched++;
        }
    free(tmap);
    free(amatch);
    free(bused);
}

/* ---------------------------------------------------------------------- */
/* The converter cases                                                     */
/* ---------------------------------------------------------------------- */

typedef struct golden {
    char file[128], model[256], mode[16], weights[16];
    int samples;
} golden;

static int read_manifest(golden *cases, int cap) {
    FILE *f = fopen(MOPT_SOURCE_DIR "/tests/ptq/converter/MANIFEST.txt", "r");
    assert_non_null(f);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f) && n < cap) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        golden *c = &cases[n];
        if (sscanf(line, "%127s %255s %15s %15s %d", c->file, c->model, c->mode, c->weights,
                   &c->samples) == 5)
            n++;
    }
    fclose(f);
    return n;
}

static mopt_graph *load(const char *rel) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", MOPT_SOURCE_DIR, rel);
    mopt_graph *g = NULL;
    mopt_error err;
    if (mopt_tflite_read_file(path, &g, &err) != MOPT_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    return g;
}

static mopt_status quantize_case(const golden *c, const mopt_dataset *calib, mopt_graph **out,
                                 mopt_error *err) {
    mopt_graph *g = load(c->model);
    assert_non_null(g);
    mopt_quant_mode mode = strncmp(c->mode, "int8", 4) == 0 ? MOPT_QUANT_INT8
                           : strcmp(c->mode, "int16x8") == 0 ? MOPT_QUANT_INT16X8
                           : strcmp(c->mode, "dynamic") == 0 ? MOPT_QUANT_DYNAMIC
                                                             : MOPT_QUANT_FLOAT16;
    mopt_quant_options o = mopt_quant_default_options(mode);
    o.per_tensor = strcmp(c->weights, "per-tensor") == 0;
    o.io = strcmp(c->mode, "int8io") == 0 ? MOPT_QIO_INT : MOPT_QIO_FLOAT;
    o.calib_samples = c->samples;
    o.match_converter = true;
    mopt_status st = mopt_quantize(g, &o, calib, out, NULL, err);
    mopt_graph_free(g);
    return st;
}

static void test_against_converter(void **state) {
    (void)state;
    golden cases[64];
    int n = read_manifest(cases, 64);
    assert_true(n >= 20);
    mopt_dataset calib;
    mopt_error err;
    assert_int_equal(mopt_dataset_load(SUBSET, MOPT_SPLIT_TRAIN, MOPT_SCALE_01, 200, &calib, &err),
                     MOPT_OK);
    cmp_stats total;
    memset(&total, 0, sizeof(total));
    int failed = 0;
    for (int i = 0; i < n; i++) {
        const golden *c = &cases[i];
        assert_int_equal(c->samples, 200);
        mopt_graph *q = NULL;
        mopt_status st = quantize_case(c, &calib, &q, &err);
        if (st != MOPT_OK) {
            fprintf(stderr, "%s: mopt failed: %s\n", c->file, err.msg);
            failed++;
            continue;
        }
        char rel[512];
        int rn = snprintf(rel, sizeof(rel), "tests/ptq/converter/%.200s", c->file);
        assert_true(rn > 0 && (size_t)rn < sizeof rel);
        mopt_graph *ref = load(rel);
        assert_non_null(ref);
        note("== %s\n", c->file);
        cmp_stats s;
        compare_graphs(q, ref, &s);
        /* min_runtime_version metadata */
        const char *va = NULL, *vb = NULL;
        for (int k = 0; k < q->n_metadata; k++)
            if (strcmp(q->metadata[k].name, "min_runtime_version") == 0)
                va = (const char *)q->buffers[q->metadata[k].buffer].data;
        for (int k = 0; k < ref->n_metadata; k++)
            if (strcmp(ref->metadata[k].name, "min_runtime_version") == 0)
                vb = (const char *)ref->buffers[ref->metadata[k].buffer].data;
        if (!va || !vb || strncmp(va, vb, 16) != 0) {
            note("min_runtime_version %.16s, converter %.16s\n", va ? va : "-", vb ? vb : "-");
            s.op_mismatch++;
        }
        bool bad = s.ops_unmatched || s.op_mismatch || s.tensor_mismatch || s.scale_far ||
                   s.zp_far || s.w_diff || s.b_far || s.c_diff;
        fprintf(stderr,
                "%-28s %s: scales %d exact %d close %d far; zp %d exact %d off-by-1 %d far; "
                "weights %lld/%lld differ; bias %lld/%lld off <=1 step %lld far; ops unmatched %d "
                "mismatched %d; tensors %d\n",
                c->file, bad ? "FAIL" : "ok", s.scale_exact, s.scale_close, s.scale_far, s.zp_exact,
                s.zp_off1, s.zp_far, (long long)s.w_diff, (long long)s.w_total, (long long)s.b_diff1,
                (long long)s.b_total, (long long)s.b_far, s.ops_unmatched, s.op_mismatch,
                s.tensor_mismatch);
        failed += bad;
        total.scale_exact += s.scale_exact;
        total.scale_close += s.scale_close;
        mopt_graph_free(q);
        mopt_graph_free(ref);
    }
    fprintf(stderr, "%d cases, %d differ; %d scales exact, %d within 1e-5\n", n, failed,
            total.scale_exact, total.scale_close);
    mopt_dataset_free(&calib);
    assert_int_equal(failed, 0);
}

/* ---------------------------------------------------------------------- */
/* Options, bad input, report, bias correction, fallback                   */
/* ---------------------------------------------------------------------- */

static mopt_dataset calib20(void) {
    mopt_dataset d;
    mopt_error err;
    assert_int_equal(mopt_dataset_load(SUBSET, MOPT_SPLIT_TRAIN, MOPT_SCALE_01, 20, &d, &err), MOPT_OK);
    return d;
}

static mopt_quant_options int8_opts(int64_t n) {
    mopt_quant_options o = mopt_quant_default_options(MOPT_QUANT_INT8);
    o.calib_samples = n;
    return o;
}

/* The first float32 constant with more than `min` elements. */
static float *weights_of(mopt_graph *g, int64_t min) {
    for (int t = 0; t < g->n_tensors; t++)
        if (g->tensors[t].dtype == MOPT_FLOAT32 && mopt_tensor_is_constant(g, t) &&
            mopt_tensor_numel(&g->tensors[t]) > min)
            return (float *)g->buffers[g->tensors[t].buffer].data;
    return NULL;
}

static void test_bad_weights(void **state) {
    (void)state;
    mopt_dataset d = calib20();
    const float bad[2] = {NAN, INFINITY};
    for (int mode = 0; mode < 4; mode++)
        for (int k = 0; k < 2; k++) {
            mopt_graph *g = load("tests/fixtures/cnn.tflite");
            float *w = weights_of(g, 100);
            assert_non_null(w);
            w[5] = bad[k];
            mopt_quant_options o = mopt_quant_default_options((mopt_quant_mode)mode);
            o.calib_samples = 5;
            mopt_graph *q = (mopt_graph *)1;
            mopt_error err;
            assert_int_equal(mopt_quantize(g, &o, &d, &q, NULL, &err), MOPT_ERR_BAD_INPUT);
            assert_null(q);
            assert_non_null(strstr(err.msg, "element 5"));
            assert_non_null(strstr(err.msg, "finite"));
            mopt_graph_free(g);
        }
    mopt_dataset_free(&d);
}

static void test_bad_calibration(void **state) {
    (void)state;
    mopt_graph *g = load("tests/fixtures/mobilenetv2.tflite");
    mopt_dataset d = calib20(); /* 28x28x1 images for a 96x96x3 input */
    mopt_quant_options o = int8_opts(5);
    mopt_graph *q = NULL;
    mopt_error err;
    assert_int_equal(mopt_quantize(g, &o, &d, &q, NULL, &err), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(err.msg, "28x28x1"));
    assert_non_null(strstr(err.msg, "[1,96,96,3]"));
    /* Empty set. */
    mopt_dataset empty = d;
    empty.n = 0;
    mopt_graph *c = load("tests/fixtures/cnn.tflite");
    assert_int_equal(mopt_quantize(c, &o, &empty, &q, NULL, &err), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(err.msg, "empty"));
    /* No calibration data at all for an integer mode; not needed for the
     * weight-only modes. */
    assert_int_equal(mopt_quantize(c, &o, NULL, &q, NULL, &err), MOPT_ERR_ARG);
    assert_non_null(strstr(err.msg, "calibration"));
    mopt_quant_options f16 = mopt_quant_default_options(MOPT_QUANT_FLOAT16);
    assert_int_equal(mopt_quantize(c, &f16, NULL, &q, NULL, &err), MOPT_OK);
    /* An already quantized model is refused. */
    mopt_graph *q2 = NULL;
    mopt_quant_options dyn = mopt_quant_default_options(MOPT_QUANT_DYNAMIC);
    assert_int_equal(mopt_quantize(q, &dyn, NULL, &q2, NULL, &err), MOPT_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "already quantized"));
    mopt_graph_free(q);
    mopt_graph_free(c);
    mopt_graph_free(g);
    mopt_dataset_free(&d);
}

static void test_nonfinite_activation(void **state) {
    (void)state;
    /* Finite but huge weights: the first convolution overflows to inf. */
    mopt_graph *g = load("tests/fixtures/cnn.tflite");
    float *w = weights_of(g, 100);
    for (int i = 0; i < 144; i++) w[i] = 3e38f;
    mopt_dataset d = calib20();
    mopt_quant_options o = int8_opts(5);
    mopt_graph *q = NULL;
    mopt_error err;
    assert_int_equal(mopt_quantize(g, &o, &d, &q, NULL, &err), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(err.msg, "calibration sample 0"));
    assert_non_null(strstr(err.msg, "finite"));
    mopt_graph_free(g);
    mopt_dataset_free(&d);
}

static void test_hard_swish_int16(void **state) {
    (void)state;
    mopt_graph *g = load("tests/fixtures/mlp.tflite");
    mopt_dataset d = calib20();
    mopt_quant_options o = mopt_quant_default_options(MOPT_QUANT_INT16X8);
    o.calib_samples = 10;
    mopt_graph *q = NULL;
    mopt_error err;
    assert_int_equal(mopt_quantize(g, &o, &d, &q, NULL, &err), MOPT_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "HARD_SWISH"));
    assert_non_null(strstr(err.msg, "--exclude"));
    const char *ex[1] = {"HARD_SWISH"};
    o.exclude = ex;
    o.n_exclude = 1;
    assert_int_equal(mopt_quantize(g, &o, &d, &q, NULL, &err), MOPT_OK);
    /* The excluded op runs in float between DEQUANTIZE and QUANTIZE. */
    int hs = -1;
    for (int i = 0; i < q->n_ops; i++)
        if (q->ops[i].type == MOPT_OP_HARD_SWISH) hs = i;
    assert_true(hs >= 0);
    assert_int_equal(q->tensors[q->ops[hs].inputs[0]].dtype, MOPT_FLOAT32);
    assert_int_equal(q->tensors[q->ops[hs].outputs[0]].dtype, MOPT_FLOAT32);
    mopt_interp *it = NULL;
    assert_int_equal(mopt_interp_create(q, NULL, &it, &err), MOPT_OK);
    mopt_interp_free(it);
    mopt_graph_free(q);
    /* An exclusion that matches nothing is a usage error. */
    const char *nx[1] = {"NO_SUCH_OP"};
    o.exclude = nx;
    assert_int_equal(mopt_quantize(g, &o, &d, &q, NULL, &err), MOPT_ERR_ARG);
    assert_non_null(strstr(err.msg, "NO_SUCH_OP"));
    mopt_graph_free(g);
    mopt_dataset_free(&d);
}

static void test_dynamic_min_elements(void **state) {
    (void)state;
    mopt_graph *g = load("tests/fixtures/cnn.tflite");
    mopt_quant_options o = mopt_quant_default_options(MOPT_QUANT_DYNAMIC);
    int counts[2];
    for (int k = 0; k < 2; k++) {
        o.dynamic_min_elements = k == 0 ? 1024 : 0;
        mopt_graph *q = NULL;
        mopt_error err;
        assert_int_equal(mopt_quantize(g, &o, NULL, &q, NULL, &err), MOPT_OK);
        counts[k] = 0;
        for (int t = 0; t < q->n_tensors; t++) counts[k] += q->tensors[t].dtype == MOPT_INT8;
        mopt_graph_free(q);
    }
    /* cnn: 2 of its 4 weight tensors have >= 1024 elements. */
    assert_int_equal(counts[0], 2);
    assert_int_equal(counts[1], 4);
    mopt_graph_free(g);
}

static void test_exclude_weight_only_modes(void **state) {
    (void)state;
    /* float16 / dynamic: an excluded operator keeps float32 weights. */
    mopt_graph *g = load("tests/fixtures/cnn.tflite");
    const char *ex[1] = {"FULLY_CONNECTED"};
    for (int mode = MOPT_QUANT_FLOAT16; mode <= MOPT_QUANT_DYNAMIC; mode++) {
        mopt_quant_options o = mopt_quant_default_options((mopt_quant_mode)mode);
        o.exclude = ex;
        o.n_exclude = 1;
        mopt_graph *q = NULL;
        mopt_error err;
        assert_int_equal(mopt_quantize(g, &o, NULL, &q, NULL, &err), MOPT_OK);
        int fc = 0, conv_fp = 0;
        for (int i = 0; i < q->n_ops; i++) {
            const mopt_op *op = &q->ops[i];
            if (op->type == MOPT_OP_FULLY_CONNECTED) {
                /* weights are a float32 constant, not a DEQUANTIZE output */
                assert_true(mopt_tensor_is_constant(q, op->inputs[1]));
                assert_int_equal(q->tensors[op->inputs[1]].dtype, MOPT_FLOAT32);
                fc++;
            }
            if (op->type == MOPT_OP_CONV_2D)
                conv_fp += !mopt_tensor_is_constant(q, op->inputs[1]) ||
                           q->tensors[op->inputs[1]].dtype == MOPT_INT8;
        }
        assert_int_equal(fc, 2);
        /* float16: both convs read DEQUANTIZE outputs; dynamic: one conv
         * (4608 weights) is hybrid, the other (144) stays float */
        assert_int_equal(conv_fp, mode == MOPT_QUANT_FLOAT16 ? 2 : 1);
        mopt_graph_free(q);
    }
    mopt_graph_free(g);
}

static void test_parallel_calibration_identical(void **state) {
    (void)state;
    /* Calibration splits the samples over workers; min/max and histograms
     * do not depend on the order of the values, so any number of workers
     * gives the same model, byte for byte. */
    mopt_graph *g = load("tests/fixtures/dscnn.tflite");
    mopt_dataset d = calib20();
    mopt_error err;
    for (int m = 0; m < 4; m++) {
        uint8_t *bytes[3];
        size_t size[3];
        for (int k = 0; k < 3; k++) {
            mopt_quant_options o = int8_opts(20);
            o.calib_method = (mopt_calib_method)m;
            o.num_threads = k == 0 ? 1 : k == 1 ? 2 : 5;
            mopt_graph *q = NULL;
            assert_int_equal(mopt_quantize(g, &o, &d, &q, NULL, &err), MOPT_OK);
            assert_int_equal(mopt_tflite_write_mem(q, &bytes[k], &size[k], &err), MOPT_OK);
            mopt_graph_free(q);
        }
        for (int k = 1; k < 3; k++) {
            assert_int_equal(size[k], size[0]);
            assert_memory_equal(bytes[k], bytes[0], size[0]);
        }
        for (int k = 0; k < 3; k++) free(bytes[k]);
    }
    mopt_graph_free(g);
    mopt_dataset_free(&d);
}

static void test_methods_and_mixed_precision(void **state) {
    (void)state;
    mopt_graph *g = load("tests/fixtures/resnet.tflite");
    mopt_dataset d = calib20();
    mopt_error err;
    for (int m = 0; m < 4; m++) {
        mopt_quant_options o = int8_opts(20);
        o.calib_method = (mopt_calib_method)m;
        mopt_graph *q = NULL;
        assert_int_equal(mopt_quantize(g, &o, &d, &q, NULL, &err), MOPT_OK);
        assert_int_equal(mopt_graph_validate(q, &err), MOPT_OK);
        mopt_graph_free(q);
    }
    /* Every third op in int16x8, every third in float: conversions are
     * inserted where representations meet, and the graph runs. */
    mopt_op_precision *pr = calloc((size_t)g->n_ops, sizeof(*pr));
    for (int i = 0; i < g->n_ops; i++)
        pr[i] = i % 3 == 1 ? MOPT_PREC_INT16X8 : i % 3 == 2 ? MOPT_PREC_FLOAT : MOPT_PREC_INT8;
    mopt_quant_options o = int8_opts(20);
    o.op_precision = pr;
    o.n_op_precision = g->n_ops;
    for (int io = 0; io < 2; io++) {
        o.io = io ? MOPT_QIO_INT : MOPT_QIO_FLOAT;
        mopt_graph *q = NULL;
        assert_int_equal(mopt_quantize(g, &o, &d, &q, NULL, &err), MOPT_OK);
        assert_int_equal(q->tensors[q->inputs[0]].dtype, io ? MOPT_INT8 : MOPT_FLOAT32);
        int n16 = 0, nf = 0;
        for (int i = 0; i < q->n_ops; i++) {
            mopt_dtype dt = q->tensors[q->ops[i].outputs[0]].dtype;
            n16 += dt == MOPT_INT16;
            nf += dt == MOPT_FLOAT32 && q->ops[i].type != MOPT_OP_DEQUANTIZE;
        }
        assert_true(n16 >= 4 && nf >= 4);
        mopt_interp *it = NULL;
        assert_int_equal(mopt_interp_create(q, NULL, &it, &err), MOPT_OK);
        assert_int_equal(mopt_interp_invoke(it, &err), MOPT_OK);
        mopt_interp_free(it);
        mopt_graph_free(q);
    }
    free(pr);
    mopt_graph_free(g);
    mopt_dataset_free(&d);
}

static double sum_abs_mean_error(const mopt_quant_report *r, const mopt_graph *g) {
    double s = 0;
    for (int i = 0; i < r->n_layers; i++) {
        int oi = r->layers[i].op_index;
        if (oi >= 0 && (g->ops[oi].type == MOPT_OP_CONV_2D || g->ops[oi].type == MOPT_OP_FULLY_CONNECTED ||
                        g->ops[oi].type == MOPT_OP_DEPTHWISE_CONV_2D))
            s += fabs(r->layers[i].mean_error) / r->layers[i].scale;
    }
    return s;
}

static void test_report_and_bias_correction(void **state) {
    (void)state;
    mopt_graph *g = load("tests/fixtures/dscnn.tflite");
    mopt_dataset d;
    mopt_error err;
    assert_int_equal(mopt_dataset_load(SUBSET, MOPT_SPLIT_TRAIN, MOPT_SCALE_01, 100, &d, &err), MOPT_OK);
    mopt_quant_options o = int8_opts(100);
    o.per_tensor = true; /* per-tensor weights have the larger bias errors */
    mopt_graph *q = NULL;
    mopt_quant_report r0, r1;
    assert_int_equal(mopt_quantize(g, &o, &d, &q, &r0, &err), MOPT_OK);
    mopt_graph_free(q);
    o.bias_correction = true;
    assert_int_equal(mopt_quantize(g, &o, &d, &q, &r1, &err), MOPT_OK);
    /* One layer per float activation (+ the input), SQNR finite and sane,
     * some layers flagged. */
    assert_int_equal(r0.n_layers, g->n_ops + 1);
    int flagged = 0;
    for (int i = 1; i < r0.n_layers; i++) {
        assert_true(r0.layers[i].sqnr_db > 5 && r0.layers[i].sqnr_db < 100);
        assert_true(r0.layers[i].rmse_over_scale > 0 && r0.layers[i].rmse_over_scale < 20);
        flagged += r0.layers[i].flagged;
    }
    assert_true(flagged >= 1 && flagged <= 3);
    assert_int_equal(r0.report_samples, 100);
    /* Bias correction touched the 8 conv/depthwise/FC layers and reduced
     * their systematic (mean) error. */
    assert_int_equal(r1.n_bias_corrected, 8);
    double e0 = sum_abs_mean_error(&r0, g), e1 = sum_abs_mean_error(&r1, g);
    fprintf(stderr, "mean |bias error| (steps, summed): %.3f -> %.3f after correction\n", e0, e1);
    assert_true(e1 < e0);
    /* Writers. */
    char js[] = "/tmp/mopt_test_ptq_XXXXXX";
    assert_non_null(mkdtemp(js));
    char pj[128], ph[128];
    snprintf(pj, sizeof(pj), "%s/r.json", js);
    snprintf(ph, sizeof(ph), "%s/r.html", js);
    assert_int_equal(mopt_quant_report_write(&r1, pj, &err), MOPT_OK);
    assert_int_equal(mopt_quant_report_write(&r1, ph, &err), MOPT_OK);
    uint8_t *buf;
    size_t len;
    assert_int_equal(mopt_file_read_all(pj, 0, &buf, &len, &err), MOPT_OK);
    buf[len - 1] = 0;
    assert_non_null(strstr((char *)buf, "\"sqnr_db\""));
    assert_non_null(strstr((char *)buf, "\"bias_correction\": {\"operators\": 8"));
    assert_null(strstr((char *)buf, "nan"));
    free(buf);
    assert_int_equal(mopt_file_read_all(ph, 0, &buf, &len, &err), MOPT_OK);
    buf[len - 1] = 0;
    int rects = 0;
    for (char *p = (char *)buf; (p = strstr(p, "<rect")); p++) rects++;
    assert_int_equal(rects, r1.n_layers);
    assert_non_null(strstr((char *)buf, "<svg"));
    free(buf);
    unlink(pj);
    unlink(ph);
    rmdir(js);
    mopt_quant_report_free(&r0);
    mopt_quant_report_free(&r1);
    mopt_graph_free(q);
    mopt_graph_free(g);
    mopt_dataset_free(&d);
}

static void test_fallback(void **state) {
    (void)state;
    mopt_graph *g = load("tests/fixtures/cnn.tflite");
    mopt_error err;
    mopt_sample_source *calib, *eval;
    assert_int_equal(mopt_sample_source_open(SUBSET, MOPT_SPLIT_TRAIN, MOPT_SCALE_01, &calib, &err), MOPT_OK);
    assert_int_equal(mopt_sample_source_open(SUBSET, MOPT_SPLIT_TEST, MOPT_SCALE_01, &eval, &err), MOPT_OK);
    /* Calibrating on images 20x darker than the real ones gives ranges far
     * too narrow: the int8 model loses accuracy and the search has to
     * promote operators until the drop is within 1 point. */
    mopt_dataset dark;
    assert_int_equal(mopt_dataset_load(SUBSET, MOPT_SPLIT_TRAIN, MOPT_SCALE_01, 50, &dark, &err), MOPT_OK);
    for (int64_t i = 0; i < dark.n * 784; i++) dark.images[i] *= 0.05f;
    mopt_sample_source *dsrc;
    assert_int_equal(mopt_sample_source_from_dataset(&dark, &dsrc, &err), MOPT_OK);
    mopt_quant_options o = int8_opts(50);
    mopt_graph *q = NULL;
    mopt_quant_report r;
    assert_int_equal(mopt_quantize_fallback(g, &o, dsrc, eval, 200, 1.0, &q, &r, &err), MOPT_OK);
    mopt_sample_source_close(dsrc);
    mopt_dataset_free(&dark);
    fprintf(stderr, "float %.3f all-int8 %.3f final %.3f, %d promoted\n", r.float_accuracy,
            r.quant_accuracy, r.final_accuracy, r.n_fallback);
    assert_true(r.float_accuracy - r.quant_accuracy > 0.01);
    assert_true(r.float_accuracy - r.final_accuracy <= 0.01 + 1e-12);
    assert_true(r.n_fallback >= 1);
    for (int i = 0; i < r.n_fallback; i++)
        assert_true(r.fallback_precision[i] == MOPT_PREC_INT16X8 || r.fallback_precision[i] == MOPT_PREC_FLOAT);
    assert_int_equal(mopt_graph_validate(q, &err), MOPT_OK);
    mopt_quant_report_free(&r);
    mopt_graph_free(q);
    /* A generous budget needs nothing. */
    o = int8_opts(100);
    assert_int_equal(mopt_quantize_fallback(g, &o, calib, eval, 200, 5.0, &q, &r, &err), MOPT_OK);
    assert_int_equal(r.n_fallback, 0);
    mopt_quant_report_free(&r);
    mopt_graph_free(q);
    mopt_sample_source_close(calib);
    mopt_sample_source_close(eval);
    mopt_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_converter),
        cmocka_unit_test(test_bad_weights),
        cmocka_unit_test(test_bad_calibration),
        cmocka_unit_test(test_nonfinite_activation),
        cmocka_unit_test(test_hard_swish_int16),
        cmocka_unit_test(test_dynamic_min_elements),
        cmocka_unit_test(test_exclude_weight_only_modes),
        cmocka_unit_test(test_parallel_calibration_identical),
        cmocka_unit_test(test_methods_and_mixed_precision),
        cmocka_unit_test(test_report_and_bias_correction),
        cmocka_unit_test(test_fallback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
