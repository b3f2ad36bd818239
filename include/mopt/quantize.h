/* mopt/quantize.h - post-training quantization (PTQ).
 *
 * mopt_quantize turns a float mopt_graph into a quantized one that LiteRT
 * runs, the way the TFLite converter (TF 2.21) does it:
 *
 *   MOPT_QUANT_FLOAT16  every float32 constant becomes a FLOAT16 tensor read
 *                       through a DEQUANTIZE op; activations stay float32.
 *   MOPT_QUANT_DYNAMIC  "dynamic range": CONV_2D / DEPTHWISE_CONV_2D /
 *                       FULLY_CONNECTED weights with at least
 *                       dynamic_min_elements elements become int8 (symmetric,
 *                       per channel unless per_tensor); the kernels quantize
 *                       their inputs on the fly (hybrid kernels).
 *   MOPT_QUANT_INT8     full integer: int8 asymmetric per-tensor activations
 *                       from calibration, int8 symmetric weights (per
 *                       channel), int32 biases, fixed output parameters of
 *                       SOFTMAX/LOGISTIC/TANH, equal parameters where the
 *                       kernels require them, QUANTIZE/DEQUANTIZE at float
 *                       inputs/outputs (or integer I/O).
 *   MOPT_QUANT_INT16X8  16x8: int16 symmetric activations, int8 weights,
 *                       int64 biases (the converter's legacy quantizer).
 *
 * The full-integer modes need calibration samples. Calibration streams over
 * them (one invoke per sample) and keeps per tensor either the running
 * min/max or a fixed-size histogram, so its memory does not depend on the
 * number of samples (docs/PTQ.md explains the histogram design).
 *
 * Like every library function, these never print: progress is reported
 * through an optional callback.
 */
#ifndef MOPT_QUANTIZE_H
#define MOPT_QUANTIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mopt/data.h"
#include "mopt/graph.h"
#include "mopt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mopt_quant_mode {
    MOPT_QUANT_FLOAT16 = 0,
    MOPT_QUANT_DYNAMIC = 1,
    MOPT_QUANT_INT8 = 2,
    MOPT_QUANT_INT16X8 = 3
} mopt_quant_mode;

/* How a tensor's [min, max] range is chosen from the calibration data. */
typedef enum mopt_calib_method {
    MOPT_CALIB_MINMAX = 0,     /* the observed min and max (the converter's rule) */
    MOPT_CALIB_PERCENTILE = 1, /* clip the (100 - p)/2 % tails on each side (p: percentile) */
    MOPT_CALIB_MSE = 2,        /* range minimizing the expected squared quantization error */
    MOPT_CALIB_KL = 3          /* TensorRT-style entropy calibration (KL divergence) */
} mopt_calib_method;

/* Type of the model's inputs and outputs in the full-integer modes. */
typedef enum mopt_quant_io {
    MOPT_QIO_FLOAT = 0, /* float32, with QUANTIZE/DEQUANTIZE at the edges */
    MOPT_QIO_INT = 1    /* int8 (int8 mode) / int16 (int16x8 mode) */
} mopt_quant_io;

/* Precision of one operator in a (mixed-precision) integer model. */
typedef enum mopt_op_precision {
    MOPT_PREC_DEFAULT = 0, /* the mode's precision */
    MOPT_PREC_INT8 = 1,
    MOPT_PREC_INT16X8 = 2,
    MOPT_PREC_FLOAT = 3
} mopt_op_precision;

/* Progress callback: stage is "calibrate", "bias-correction", "report",
 * "fallback"; done/total count samples (total may be 0 if unknown). */
typedef void (*mopt_quant_progress_fn)(void *ctx, const char *stage, int64_t done, int64_t total);

typedef struct mopt_quant_options {
    mopt_quant_mode mode;
    /* calibration (full-integer modes) */
    mopt_calib_method calib_method;
    double percentile;      /* MOPT_CALIB_PERCENTILE, in (50, 100]; default 99.99 */
    int64_t calib_samples;  /* samples used (default 500); <= 0: all */
    int histogram_bins;     /* histogram methods; default 2048, 128..65536 */
    /* weights */
    bool per_tensor;              /* per-tensor weights instead of per channel */
    int64_t dynamic_min_elements; /* dynamic mode: smaller weights stay float (default 1024) */
    mopt_quant_io io;
    /* repair */
    bool bias_correction; /* empirical per-channel bias correction (conv / FC) */
    /* Operators kept in float: names of an operator's output tensor, or
     * operator types ("SOFTMAX"), matched exactly. The array is not copied. */
    int n_exclude;
    const char *const *exclude;
    /* Per-operator precision override (n_op_precision entries indexed by
     * the float graph's operator index; NULL = all default). Not copied. */
    int n_op_precision;
    const mopt_op_precision *op_precision;
    /* Reproduce a calibration artifact of the TF 2.21 converter: TFLite runs
     * ADD/SUB/MUL in place when an input has no other reader, and its
     * calibrator logs that input after the op ran, so the input's range
     * becomes the union of its own and the op's output range. Off by
     * default (the ranges are then the true ones); on, mopt's parameters
     * match the converter's (docs/PTQ.md). */
    bool match_converter;
    int num_threads; /* interpreter threads for calibration; <= 0 default */
    mopt_quant_progress_fn progress;
    void *progress_ctx;
} mopt_quant_options;

/* Defaults for a mode (as the converter with no extra flags). */
mopt_quant_options mopt_quant_default_options(mopt_quant_mode mode);

/* "float16", "dynamic", "int8", "int16x8"; "unknown" otherwise. */
const char *mopt_quant_mode_name(mopt_quant_mode mode);
/* Parses a mode / calibration method name; -1 if unknown. */
int mopt_quant_mode_from_name(const char *name);
const char *mopt_calib_method_name(mopt_calib_method m);
int mopt_calib_method_from_name(const char *name);

/* ------------------------------------------------------------------------
 * Calibration samples
 * ------------------------------------------------------------------------ */

/* A source of float32 samples, each one the model input (n_values floats,
 * row-major, batch 1). Streaming sources read from disk as they go. */
typedef struct mopt_sample_source mopt_sample_source;

/* Opens a dataset spec (as mopt_dataset_load: "fashion-mnist", a folder of
 * IDX files, "IMAGES.npy[,LABELS.npy]" or a single IDX / NPY image file) for
 * streaming: images are read one at a time (gzip decompressed on the fly),
 * so memory does not grow with the number of samples. Integer images get
 * `scale` as in data.h; float images are used as they are. */
mopt_status mopt_sample_source_open(const char *spec, mopt_split split, mopt_scale scale,
                                    mopt_sample_source **out, mopt_error *err);
/* A source over an in-memory dataset (not copied: d must outlive it). */
mopt_status mopt_sample_source_from_dataset(const mopt_dataset *d, mopt_sample_source **out,
                                            mopt_error *err);
/* Samples available and the per-sample image shape [h, w, c]. */
int64_t mopt_sample_source_count(const mopt_sample_source *s);
void mopt_sample_source_shape(const mopt_sample_source *s, int *h, int *w, int *c);
/* Restarts at sample 0. */
mopt_status mopt_sample_source_rewind(mopt_sample_source *s, mopt_error *err);
/* Reads the next sample into dst (h*w*c floats) and its label (may be NULL;
 * -1 when the source has no labels). MOPT_ERR_BAD_INPUT at the end. */
mopt_status mopt_sample_source_next(mopt_sample_source *s, float *dst, int32_t *label,
                                    mopt_error *err);
void mopt_sample_source_close(mopt_sample_source *s);

/* ------------------------------------------------------------------------
 * Report
 * ------------------------------------------------------------------------ */

/* Error of one quantized activation against the float model, over the
 * report samples (float reference vs dequantized quantized value). */
typedef struct mopt_quant_layer_stats {
    char *name;           /* the float tensor's name (owned) */
    int op_index;         /* producing operator in the float graph */
    int op_type;          /* its mopt_op_type */
    mopt_op_precision precision;
    float scale;          /* output scale (0 for float outputs) */
    int32_t zero_point;
    float range_min, range_max; /* calibrated range */
    double sqnr_db;       /* 10 log10(sum f^2 / sum (q - f)^2); +inf when exact */
    double rmse_over_scale; /* RMSE / scale (in quantization steps) */
    double max_abs_error;
    double mean_error;    /* mean of (q - f): the bias */
    bool flagged;         /* among the worst layers */
} mopt_quant_layer_stats;

typedef struct mopt_quant_report {
    char mode[16];
    char calib_method[16];
    int64_t calib_samples;   /* samples calibration used */
    int64_t report_samples;  /* samples the per-layer comparison used */
    bool simulated;          /* true: the quantized model was simulated in float
                              * (QUANTIZE/DEQUANTIZE pairs), the integer kernels
                              * being unavailable */
    double seconds_calibrate, seconds_quantize, seconds_total;
    int n_layers;
    mopt_quant_layer_stats *layers;
    /* bias correction: operators corrected and the mean |correction| in
     * output quantization steps */
    int n_bias_corrected;
    double mean_bias_correction_steps;
    /* fallback (accuracy on the eval data, in [0, 1]; < 0 when not measured) */
    double float_accuracy, quant_accuracy, final_accuracy;
    int n_fallback;          /* operators kept in higher precision */
    int *fallback_ops;       /* their float-graph operator indices (owned) */
    mopt_op_precision *fallback_precision; /* what each one got (owned) */
    char *log;               /* human-readable notes, one per line (owned; may be NULL) */
} mopt_quant_report;

void mopt_quant_report_free(mopt_quant_report *r); /* frees the members; NULL ok */

/* Writes the report as JSON (".json") or self-contained HTML with an inline
 * SVG bar chart (".html"; the extension decides, anything else is JSON). */
mopt_status mopt_quant_report_write(const mopt_quant_report *r, const char *path,
                                    mopt_error *err);

/* ------------------------------------------------------------------------
 * Quantization
 * ------------------------------------------------------------------------ */

/* Quantizes `in` (a validated float graph, not modified) into a new graph
 * *out. `calib` may be NULL for float16 and dynamic; the full-integer modes
 * need it (its samples must have the input's shape). report may be NULL; if
 * given it is filled (free with mopt_quant_report_free) with the per-layer
 * comparison on the calibration samples. Errors name the tensor / operator
 * and the rule (NaN weights, wrong-shape samples, empty calibration set,
 * operators a mode cannot quantize). */
mopt_status mopt_quantize(const mopt_graph *in, const mopt_quant_options *opt,
                          const mopt_dataset *calib, mopt_graph **out, mopt_quant_report *report,
                          mopt_error *err);

/* Same with a sample source (e.g. a streaming one) instead of a dataset. */
mopt_status mopt_quantize_source(const mopt_graph *in, const mopt_quant_options *opt,
                                 mopt_sample_source *calib, mopt_graph **out,
                                 mopt_quant_report *report, mopt_error *err);

/* Automatic mixed precision: quantizes like mopt_quantize_source, measures
 * top-1 accuracy on `eval` (labelled) against the float model and, while the
 * drop exceeds max_drop_points (percentage points), moves the most
 * sensitive operator to int16x8 (or float where int16x8 is unavailable) and
 * requantizes. The choices are recorded in report (required). */
mopt_status mopt_quantize_fallback(const mopt_graph *in, const mopt_quant_options *opt,
                                   mopt_sample_source *calib, mopt_sample_source *eval,
                                   int64_t eval_limit, double max_drop_points, mopt_graph **out,
                                   mopt_quant_report *report, mopt_error *err);

#ifdef __cplusplus
}
#endif
#endif
