/* ptq_internal.h - shared pieces of the post-training quantizer
 * (src/quant/{calib,ptq,simulate,bias_correction,report,fallback}.c). */
#ifndef MOPT_QUANT_PTQ_INTERNAL_H
#define MOPT_QUANT_PTQ_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "mopt/qmath.h"
#include "mopt/quantize.h"
#include "mopt/runtime.h"
#include "quant/histogram.h"

/* ---- calibration (calib.c) ---- */

typedef struct ptq_calib {
    int n_tensors;
    int64_t samples;
    bool *seen;     /* [n_tensors] activation observed */
    float *min, *max;
    ptq_hist *hist; /* [n_tensors] or NULL (min/max only) */
} ptq_calib;

/* Checks that samples of `src` fit the single float input of g; `what`
 * names the data in errors ("calibration data"). */
mopt_status ptq_check_source(const mopt_graph *g, const mopt_sample_source *src, const char *what,
                             mopt_error *err);

/* Runs g (float) on up to `limit` samples (<= 0: all) from src (rewound
 * first) and records every float activation. */
mopt_status ptq_calibrate(const mopt_graph *g, const mopt_quant_options *opt,
                          mopt_sample_source *src, int64_t limit, ptq_calib *c, mopt_error *err);
void ptq_calib_free(ptq_calib *c);

/* Range of tensor t by the options' method (symmetric: for int16). Returns
 * false if t was not observed. */
bool ptq_calib_range(const ptq_calib *c, int t, const mopt_quant_options *opt, bool symmetric,
                     float *lo, float *hi);

/* Graph clone whose outputs are all float activations of g (plus its own
 * outputs), so an interpreter keeps every one of them readable. */
mopt_graph *ptq_observer_graph(const mopt_graph *g);

/* ---- the quantized graph (ptq.c) ---- */

enum { PTQ_K_FLOAT = 0, PTQ_K_I8 = 1, PTQ_K_I16 = 2 };

typedef struct ptq_plan {
    const mopt_graph *g;          /* float graph */
    mopt_quant_options opt;
    const ptq_calib *calib;       /* NULL for float16 / dynamic */
    mopt_op_precision *prec;      /* [g->n_ops] resolved: INT8 / INT16X8 / FLOAT */
    bool *excluded;               /* [g->n_ops] kept in float by the user (all modes) */
    /* activation parameters per float tensor (valid when has8/has16) */
    mopt_qparams *p8, *p16;
    bool *has8, *has16;
    float *rmin, *rmax;           /* chosen ranges (for the report) */
    /* per float op: bias values to use instead of the graph's (bias
     * correction); NULL entries = the graph's own */
    float **bias_override;
} ptq_plan;

/* Fills a plan: precision per op, calibrated ranges, parameters. */
mopt_status ptq_plan_init(ptq_plan *p, const mopt_graph *g, const mopt_quant_options *opt,
                          const ptq_calib *calib, mopt_error *err);
void ptq_plan_free(ptq_plan *p);

/* Map from the quantized graph back to the float graph. */
typedef struct ptq_map {
    int n;               /* out->n_tensors when built */
    int *src_tensor;     /* out tensor -> float tensor it represents (-1) */
    int *home;           /* float tensor -> out tensor of its producer's output (-1) */
    int *src_op_of_out;  /* out op -> float op (-1 for inserted QUANTIZE/DEQUANTIZE) */
    int n_ops;
} ptq_map;
void ptq_map_free(ptq_map *m);

/* Refuses graphs that are not float (quantized tensors, QUANTIZE ops) and
 * NaN / inf weights. */
mopt_status ptq_check_float_model(const mopt_graph *g, mopt_error *err);

/* Builds the quantized graph from a plan. map may be NULL. */
mopt_status ptq_emit(const ptq_plan *p, mopt_graph **out, ptq_map *map, mopt_error *err);

/* Full pipeline used by the public entry points and the fallback search:
 * calibrate (if calib_out does not already hold a calibration), plan, bias
 * correction, emit. */

/* ---- simulation (simulate.c) ----
 * A float graph that mimics the quantized one: every quantized activation
 * goes through QUANTIZE+DEQUANTIZE with its parameters and every quantized
 * weight/bias is replaced by its dequantized values. Used to measure errors
 * when the integer kernels are not available. sim_of[t] (float tensor ->
 * simulated tensor index) is returned in *map (owned by the caller). */
mopt_status ptq_simulated_graph(const mopt_graph *q, const ptq_map *qmap, mopt_graph **out,
                                int **sim_of_out, mopt_error *err);

/* Runs a quantized graph: with the integer kernels if the runtime has them
 * for every operator, otherwise through the float simulation above. With
 * `observe`, every activation stays readable after invoke. */
typedef struct ptq_qrun ptq_qrun;
mopt_status ptq_qrun_create(const mopt_graph *q, const mopt_quant_options *opt, bool observe,
                            ptq_qrun **out, mopt_error *err);
void ptq_qrun_free(ptq_qrun *r);
bool ptq_qrun_simulated(const ptq_qrun *r);
/* x: one float sample for input 0 (quantized here for integer inputs). */
mopt_status ptq_qrun_invoke(ptq_qrun *r, const float *x, mopt_error *err);
/* Element i of tensor qt of the quantized graph, as a real number. */
double ptq_qrun_value(const ptq_qrun *r, int qt, int64_t i);
int ptq_qrun_output_tensor(const ptq_qrun *r, int k);

/* ---- bias correction (bias_correction.c) ---- */
mopt_status ptq_bias_correction(ptq_plan *p, mopt_sample_source *src, int64_t limit,
                                mopt_quant_report *report, mopt_error *err);

/* ---- report (report.c) ---- */
mopt_status ptq_build_report(const ptq_plan *p, const mopt_graph *q, const ptq_map *map,
                             mopt_sample_source *src, int64_t limit, mopt_quant_report *r,
                             mopt_error *err);
void ptq_report_log(mopt_quant_report *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- pipeline (pipeline.c) ---- */
/* Plans (with the given calibration; NULL for float16 / dynamic), applies
 * bias correction if asked, emits and validates. plan_out / map_out may be
 * NULL; when given they receive the plan and map (caller frees). */
mopt_status ptq_quantize_calibrated(const mopt_graph *in, const mopt_quant_options *opt,
                                    const ptq_calib *cal, mopt_sample_source *src,
                                    mopt_graph **out, ptq_plan *plan_out, ptq_map *map_out,
                                    mopt_quant_report *report, mopt_error *err);
mopt_status ptq_check_options(const mopt_quant_options *o, mopt_error *err);

/* ---- accuracy (fallback.c) ---- */
/* Top-1 accuracy of graph g (float or quantized; single input/output) on
 * up to limit labelled samples. *used gets the number of samples. */
mopt_status ptq_accuracy(const mopt_graph *g, const mopt_quant_options *opt,
                         mopt_sample_source *src, int64_t limit, double *acc, int64_t *used,
                         mopt_error *err);

/* Writes a float sample into a (possibly quantized) model input. */
void ptq_fill_input(void *dst, const mopt_tensor *t, const float *x, int64_t n);

/* Reads element i of a float / quantized activation as a real number. */
double ptq_value(const void *data, const mopt_tensor *t, int64_t i);

/* Creates an interpreter for g. If the integer kernels reject a quantized
 * graph (MOPT_ERR_UNSUPPORTED), returns that status with the message. */
mopt_status ptq_interp(const mopt_graph *g, const mopt_quant_options *opt, mopt_interp **it,
                       mopt_error *err);

/* True when op type t is one of the kernels' "same scale" operators with a
 * single quantized input (output parameters equal the input's). */
bool ptq_same_scale_op(int op_type);
/* True for SOFTMAX / LOGISTIC / TANH. */
bool ptq_fixed_output_op(int op_type);
/* Fixed output parameters for op type at int8 (k = PTQ_K_I8) or int16. */
mopt_qparams ptq_fixed_params(int op_type, int k);

#endif
