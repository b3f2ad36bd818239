/* Labelled image datasets: Fashion-MNIST style IDX folders and NPY pairs.
 *
 * Images come out as float32 NHWC. Integer images (the IDX ubyte files, uint8
 * NPY arrays) are raw pixel values and get the requested scaling; float
 * images (float32 / float64 NPY) are taken to be preprocessed already and are
 * copied unchanged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mopt/data.h"
#include "mopt/util.h"

#define DEBIAN_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#define MAX_LABEL 255

void mopt_dataset_free(mopt_dataset *d) {
    if (!d)
        return;
    free(d->images);
    free(d->labels);
    memset(d, 0, sizeof(*d));
}

static bool is_regular_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Finds DIR/BASE.gz or DIR/BASE; fills `path` (cap bytes). */
static mopt_status find_idx(const char *dir, const char *base, char *path, size_t cap,
                            mopt_error *err) {
    int n = snprintf(path, cap, "%s/%s.gz", dir, base);
    if (n < 0 || (size_t)n >= cap)
        return mopt_error_set(err, MOPT_ERR_ARG, "%s: dataset path too long", dir);
    if (is_regular_file(path))
        return MOPT_OK;
    snprintf(path, cap, "%s/%s", dir, base);
    if (is_regular_file(path))
        return MOPT_OK;
    return mopt_error_set(err, MOPT_ERR_IO, "%s: dataset folder has no %s[.gz]", dir, base);
}

/* Reads one array file, by extension: ".npy" -> NPY, anything else -> IDX. */
static mopt_status read_array(const char *path, mopt_array *a, mopt_error *err) {
    size_t len = strlen(path);
    if (len >= 4 && strcmp(path + len - 4, ".npy") == 0)
        return mopt_npy_read(path, a, err);
    return mopt_idx_read(path, a, err);
}

static bool dtype_is_integer(mopt_dtype dt) {
    return dt == MOPT_UINT8 || dt == MOPT_INT8 || dt == MOPT_INT16 || dt == MOPT_INT32 ||
           dt == MOPT_INT64;
}

/* Element i of an integer array, widened. */
static int64_t int_at(const mopt_array *a, int64_t i) {
    switch (a->dtype) {
    case MOPT_UINT8: return ((const uint8_t *)a->data)[i];
    case MOPT_INT8: return ((const int8_t *)a->data)[i];
    case MOPT_INT16: return ((const int16_t *)a->data)[i];
    case MOPT_INT32: return ((const int32_t *)a->data)[i];
    case MOPT_INT64: return ((const int64_t *)a->data)[i];
    default: return 0;
    }
}

/* Builds the dataset from an image array and a label array (both already
 * read); `ipath`/`lpath` name them in errors. */
static mopt_status build(const mopt_array *img, const char *ipath, const mopt_array *lab,
                         const char *lpath, mopt_scale scale, int64_t limit, mopt_dataset *out,
                         mopt_error *err) {
    if (img->rank != 3 && img->rank != 4)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "%s: images must have rank 3 [n,h,w] or 4 [n,h,w,c], got rank %d",
                              ipath, img->rank);
    if (img->dtype != MOPT_FLOAT32 && !dtype_is_integer(img->dtype))
        return mopt_error_set(err, MOPT_ERR_UNSUPPORTED, "%s: unsupported image dtype %s", ipath,
                              mopt_dtype_name(img->dtype));
    int64_t n = img->dims[0];
    int64_t h = img->dims[1], w = img->dims[2], c = img->rank == 4 ? img->dims[3] : 1;
    if (h < 1 || w < 1 || c < 1 || h > 65535 || w > 65535 || c > 65535)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "%s: image size %lldx%lldx%lld out of range 1..65535", ipath,
                              (long long)h, (long long)w, (long long)c);
    if (lab->rank != 1 && !(lab->rank == 2 && lab->dims[1] == 1))
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "%s: labels must have shape [n], got rank %d", lpath, lab->rank);
    if (!dtype_is_integer(lab->dtype))
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: labels must be integers, got %s", lpath,
                              mopt_dtype_name(lab->dtype));
    if (lab->dims[0] != n)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: %lld labels but %s holds %lld images",
                              lpath, (long long)lab->dims[0], ipath, (long long)n);
    if (n == 0)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: dataset holds no samples", ipath);
    if (limit > 0 && limit < n)
        n = limit;

    int64_t per = h * w * c; /* <= 2^48, and n * per is bounded by the array's size */
    int64_t total = n * per;
    memset(out, 0, sizeof(*out));
    out->images = malloc((size_t)total * sizeof(float));
    out->labels = malloc((size_t)n * sizeof(int32_t));
    if (!out->images || !out->labels) {
        mopt_dataset_free(out);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "%s: out of memory for %lld images", ipath,
                              (long long)n);
    }
    int max_label = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t v = int_at(lab, i);
        if (v < 0 || v > MAX_LABEL) {
            mopt_dataset_free(out);
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                  "%s: label %lld of sample %lld out of range 0..%d", lpath,
                                  (long long)v, (long long)i, MAX_LABEL);
        }
        out->labels[i] = (int32_t)v;
        if (v > max_label)
            max_label = (int)v;
    }
    if (img->dtype == MOPT_FLOAT32) {
        memcpy(out->images, img->data, (size_t)total * sizeof(float));
    } else {
        /* x/255 and x/127.5 - 1 are the preprocessing the Keras examples use. */
        for (int64_t i = 0; i < total; i++) {
            float x = (float)int_at(img, i);
            switch (scale) {
            case MOPT_SCALE_PM1: x = x / 127.5f - 1.0f; break;
            case MOPT_SCALE_NONE: break;
            default: x = x / 255.0f; break;
            }
            out->images[i] = x;
        }
    }
    out->n = n;
    out->h = (int)h;
    out->w = (int)w;
    out->c = (int)c;
    out->num_classes = max_label + 1;
    return MOPT_OK;
}

static mopt_status load_pair(const char *ipath, const char *lpath, mopt_scale scale, int64_t limit,
                             mopt_dataset *out, mopt_error *err) {
    mopt_array img = {0}, lab = {0};
    mopt_status st = read_array(ipath, &img, err);
    if (st == MOPT_OK)
        st = read_array(lpath, &lab, err);
    if (st == MOPT_OK)
        st = build(&img, ipath, &lab, lpath, scale, limit, out, err);
    mopt_array_free(&img);
    mopt_array_free(&lab);
    return st;
}

mopt_status mopt_dataset_load(const char *spec, mopt_split split, mopt_scale scale, int64_t limit,
                              mopt_dataset *out, mopt_error *err) {
    if (!spec || !out)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_dataset_load: NULL argument");
    memset(out, 0, sizeof(*out));
    if (scale != MOPT_SCALE_01 && scale != MOPT_SCALE_PM1 && scale != MOPT_SCALE_NONE)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_dataset_load: unknown scale %d", (int)scale);
    if (split != MOPT_SPLIT_TRAIN && split != MOPT_SPLIT_TEST)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_dataset_load: unknown split %d", (int)split);

    /* "IMAGES.npy,LABELS.npy" */
    const char *comma = strchr(spec, ',');
    if (comma) {
        size_t ilen = (size_t)(comma - spec);
        char *ipath = malloc(ilen + 1);
        if (!ipath)
            return mopt_error_set(err, MOPT_ERR_NOMEM, "%s: out of memory", spec);
        memcpy(ipath, spec, ilen);
        ipath[ilen] = '\0';
        const char *lpath = comma + 1;
        mopt_status st;
        if (ilen == 0 || *lpath == '\0' || strchr(lpath, ','))
            st = mopt_error_set(err, MOPT_ERR_ARG,
                                "%s: expected a dataset spec of the form IMAGES.npy,LABELS.npy",
                                spec);
        else
            st = load_pair(ipath, lpath, scale, limit, out, err);
        free(ipath);
        return st;
    }

    const char *dir = spec;
    if (strcmp(spec, "fashion-mnist") == 0 && !is_dir(spec)) {
        const char *env = getenv("MOPT_FASHION_MNIST_DIR");
        dir = env && *env ? env : DEBIAN_FASHION_MNIST_DIR;
        if (!is_dir(dir))
            return mopt_error_set(err, MOPT_ERR_IO,
                                  "%s: Fashion-MNIST folder not found (install Debian's "
                                  "dataset-fashion-mnist or set MOPT_FASHION_MNIST_DIR)",
                                  dir);
    } else if (!is_dir(dir)) {
        return mopt_error_set(err, MOPT_ERR_IO,
                              "%s: no such dataset (expected 'fashion-mnist', a folder of IDX "
                              "files or IMAGES.npy,LABELS.npy)",
                              spec);
    }
    const char *prefix = split == MOPT_SPLIT_TRAIN ? "train" : "t10k";
    char base[64], ipath[4096], lpath[4096];
    snprintf(base, sizeof(base), "%s-images-idx3-ubyte", prefix);
    mopt_status st = find_idx(dir, base, ipath, sizeof(ipath), err);
    if (st != MOPT_OK)
        return st;
    snprintf(base, sizeof(base), "%s-labels-idx1-ubyte", prefix);
    st = find_idx(dir, base, lpath, sizeof(lpath), err);
    if (st != MOPT_OK)
        return st;
    return load_pair(ipath, lpath, scale, limit, out, err);
}
