/* mopt/report.h - compression reports: per-layer sparsity and distinct
 * values, parameter counts, model size raw and zlib-compressed (the measure
 * the reference toolkit's users compare), accuracy before / after; as an
 * aligned text table or JSON written to a caller-given stream.
 *
 * These functions write only to the FILE * they are given (never to
 * stdout / stderr on their own) and never exit.
 */
#ifndef MOPT_REPORT_H
#define MOPT_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "mopt/data.h"
#include "mopt/graph.h"
#include "mopt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mopt_layer_stats {
    int op;                 /* operator index */
    mopt_op_type type;      /* CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED */
    int weights;            /* weight tensor index */
    char *name;             /* copy of the weight tensor's name */
    int rank;
    int32_t dims[MOPT_MAX_DIMS];
    int channel_axis;       /* 0, or 3 for depthwise */
    int64_t params;         /* elements of the weight tensor */
    int64_t zeros;          /* elements equal to 0 (either sign) */
    int64_t unique;         /* distinct values (0 and -0 count once) */
    int64_t unique_per_channel_max; /* largest distinct count over output channels */
} mopt_layer_stats;

typedef struct mopt_model_stats {
    int n_layers;
    mopt_layer_stats *layers; /* the weight layers, in op order */
    int64_t params;           /* elements of all constant tensors */
    int64_t weight_params;    /* elements of the layers' weight tensors */
    int64_t weight_zeros;
    int64_t raw_bytes;        /* size of the serialised .tflite */
    int64_t gzip_bytes;       /* its zlib level-9 size (mopt_gzip_size) */
} mopt_model_stats;

/* Fills *out (free with mopt_model_stats_free) by serialising the graph. */
mopt_status mopt_model_stats_compute(const mopt_graph *g, mopt_model_stats *out, mopt_error *err);
void mopt_model_stats_free(mopt_model_stats *s); /* NULL ok; zeroes *s */

typedef struct mopt_compression_report {
    const char *command;   /* "prune", "cluster", ... */
    const char *settings;  /* one line describing the technique's settings (may be NULL) */
    const char *input;     /* paths, may be NULL */
    const char *output;
    const mopt_model_stats *before;
    const mopt_model_stats *after;
    /* Optional per-layer note (e.g. "2:4", "block 1x4", "32 -> 16 ch",
     * "skipped"): n_notes entries indexed like after->layers; NULL = none. */
    const char *const *notes;
    int n_notes;
    double accuracy_before; /* top-1 in [0, 1]; NaN = not measured */
    double accuracy_after;
    int64_t accuracy_samples;
} mopt_compression_report;

/* Text: a header (command, settings, files), one row per weight layer of
 * `after` matched with `before` by op index (shape, params, sparsity before
 * -> after, distinct values before -> after, note), then totals: parameters,
 * weight sparsity, raw and gzip sizes with their ratios, accuracy if
 * measured. */
mopt_status mopt_compression_report_write_text(const mopt_compression_report *r, FILE *f,
                                               mopt_error *err);
/* The same content as one JSON object (numbers, null for unmeasured). */
mopt_status mopt_compression_report_write_json(const mopt_compression_report *r, FILE *f,
                                               mopt_error *err);

/* Top-1 accuracy of a float classifier (one float32 input [1,H,W,C] matching
 * the dataset's images, one float32 output [1, classes]) on a labelled
 * dataset, with the float runtime. threads <= 0: library default. Errors
 * name the mismatch ("dataset images are 28x28x1 but the model input is
 * [1,32,32,3]"). */
mopt_status mopt_eval_top1(const mopt_graph *g, const mopt_dataset *d, int threads,
                           double *accuracy, mopt_error *err);

#ifdef __cplusplus
}
#endif
#endif
