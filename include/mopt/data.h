/* mopt/data.h - arrays and datasets: NPY, IDX (raw or gzip), Fashion-MNIST.
 *
 * All readers treat files as untrusted (header sizes checked against the file
 * length, dimension products checked for overflow) and report errors naming
 * the file and the rule broken.
 */
#ifndef MOPT_DATA_H
#define MOPT_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mopt/graph.h"
#include "mopt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A dense row-major array. Owns `data` (malloc'ed). */
typedef struct mopt_array {
    mopt_dtype dtype; /* FLOAT32, INT8, UINT8, INT16, INT32, INT64 (also FLOAT64 read as FLOAT32) */
    int rank;
    int64_t dims[8];
    void *data;
    size_t nbytes;
} mopt_array;

void mopt_array_free(mopt_array *a); /* frees data, zeroes; NULL ok */
int64_t mopt_array_numel(const mopt_array *a);

/* NPY v1/v2/v3, little-endian, C order. float64 is converted to float32 and
 * bool/uint8 kept as uint8. */
mopt_status mopt_npy_read(const char *path, mopt_array *out, mopt_error *err);
/* Writes NPY v1 atomically (temp file + rename). */
mopt_status mopt_npy_write(const char *path, const mopt_array *a, mopt_error *err);

/* IDX (ubyte/byte/short/int/float/double), raw or gzip (detected by magic). */
mopt_status mopt_idx_read(const char *path, mopt_array *out, mopt_error *err);

typedef enum mopt_scale {
    MOPT_SCALE_01 = 0,   /* x / 255 -> [0, 1] (default) */
    MOPT_SCALE_PM1 = 1,  /* x / 127.5 - 1 -> [-1, 1] */
    MOPT_SCALE_NONE = 2  /* raw values as float */
} mopt_scale;

/* A labelled image set, images as float32 NHWC [n, h, w, c]. */
typedef struct mopt_dataset {
    int64_t n;
    int h, w, c;
    float *images; /* n*h*w*c */
    int32_t *labels; /* n, may be NULL for unlabelled data */
    int num_classes; /* max label + 1 */
} mopt_dataset;

void mopt_dataset_free(mopt_dataset *d); /* NULL ok */

typedef enum mopt_split { MOPT_SPLIT_TRAIN = 0, MOPT_SPLIT_TEST = 1 } mopt_split;

/* Loads a split of a dataset named by `spec`:
 *  - "fashion-mnist": Debian's dataset-fashion-mnist files
 *    (/usr/share/datasets/fashion-mnist), or $MOPT_FASHION_MNIST_DIR;
 *  - a folder holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz];
 *  - "IMAGES.npy,LABELS.npy" (a pair of NPY files; used for either split).
 * limit > 0 keeps only the first `limit` samples. Images of rank 3 [n,h,w]
 * get c = 1. */
mopt_status mopt_dataset_load(const char *spec, mopt_split split, mopt_scale scale,
                              int64_t limit, mopt_dataset *out, mopt_error *err);

#ifdef __cplusplus
}
#endif
#endif
