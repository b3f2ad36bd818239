/* source.c - calibration / evaluation samples, one at a time.
 *
 * mopt_dataset_load reads a whole split into memory, which makes memory grow
 * with the number of samples. Calibration only ever needs one sample at a
 * time, so these sources stream: IDX files are read through zlib's gzread
 * (which also reads uncompressed files), NPY files record by record with
 * fread. Only the labels, a few bytes per sample, are loaded up front.
 *
 * Every header field is untrusted: ranks, dims and products are checked, and
 * a file that ends early is reported as truncated, naming the sample.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "mopt/quantize.h"

#define DEBIAN_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#define MAX_SAMPLE_VALUES (1 << 26) /* 64 Mi values per sample; keeps gzread sizes in int */

enum { SRC_MEMORY, SRC_IDX, SRC_NPY };
enum { EL_U8, EL_I8, EL_I16, EL_I32, EL_F32, EL_F64 };

struct mopt_sample_source {
    int kind;
    int64_t n, pos;
    int h, w, c;
    const mopt_dataset *mem;
    gzFile gz;       /* SRC_IDX */
    FILE *f;         /* SRC_NPY */
    long data_offset;
    int elem;
    size_t elem_size;
    bool big_endian;
    mopt_scale scale;
    uint8_t *raw; /* one record */
    int32_t *labels;
    char *path;
};

static bool is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

void mopt_sample_source_close(mopt_sample_source *s) {
    if (!s)
        return;
    if (s->gz)
        gzclose(s->gz);
    if (s->f)
        fclose(s->f);
    free(s->raw);
    free(s->labels);
    free(s->path);
    free(s);
}

int64_t mopt_sample_source_count(const mopt_sample_source *s) { return s ? s->n : 0; }

void mopt_sample_source_shape(const mopt_sample_source *s, int *h, int *w, int *c) {
    if (h) *h = s ? s->h : 0;
    if (w) *w = s ? s->w : 0;
    if (c) *c = s ? s->c : 0;
}

mopt_status mopt_sample_source_from_dataset(const mopt_dataset *d, mopt_sample_source **out,
                                            mopt_error *err) {
    if (!d || !out)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_sample_source_from_dataset: NULL argument");
    *out = NULL;
    if (d->n < 0 || d->h < 1 || d->w < 1 || d->c < 1 || (d->n > 0 && !d->images))
        return mopt_error_set(err, MOPT_ERR_ARG, "calibration dataset: invalid shape [%lld,%d,%d,%d]",
                              (long long)d->n, d->h, d->w, d->c);
    mopt_sample_source *s = calloc(1, sizeof(*s));
    if (!s)
        return mopt_error_set(err, MOPT_ERR_NOMEM, "out of memory");
    s->kind = SRC_MEMORY;
    s->mem = d;
    s->n = d->n;
    s->h = d->h;
    s->w = d->w;
    s->c = d->c;
    *out = s;
    return MOPT_OK;
}

/* Sets h, w, c from the per-sample dims (rank 2 [h,w] or 3 [h,w,c]) and
 * allocates the record buffer. */
static mopt_status set_shape(mopt_sample_source *s, int rank, const int64_t *dims,
                             mopt_error *err) {
    if (rank != 3 && rank != 4)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "%s: images must have rank 3 [n,h,w] or 4 [n,h,w,c], got rank %d",
                              s->path, rank);
    int64_t h = dims[1], w = dims[2], c = rank == 4 ? dims[3] : 1;
    if (dims[0] < 0 || h < 1 || w < 1 || c < 1 || h > 65535 || w > 65535 || c > 65535 ||
        h * w * c > MAX_SAMPLE_VALUES)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: image shape %lldx%lldx%lld out of range",
                              s->path, (long long)h, (long long)w, (long long)c);
    s->n = dims[0];
    s->h = (int)h;
    s->w = (int)w;
    s->c = (int)c;
    s->raw = malloc((size_t)(h * w * c) * s->elem_size);
    if (!s->raw)
        return mopt_error_set(err, MOPT_ERR_NOMEM, "%s: out of memory", s->path);
    return MOPT_OK;
}

static mopt_status open_idx(mopt_sample_source *s, mopt_error *err) {
    s->gz = gzopen(s->path, "rb");
    if (!s->gz)
        return mopt_error_set(err, MOPT_ERR_IO, "%s: cannot open: %s", s->path,
                              errno ? strerror(errno) : "out of memory");
    uint8_t hd[4];
    if (gzread(s->gz, hd, 4) != 4 || hd[0] != 0 || hd[1] != 0)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: not an IDX file (bad magic)", s->path);
    switch (hd[2]) {
    case 0x08: s->elem = EL_U8; s->elem_size = 1; break;
    case 0x09: s->elem = EL_I8; s->elem_size = 1; break;
    case 0x0B: s->elem = EL_I16; s->elem_size = 2; break;
    case 0x0C: s->elem = EL_I32; s->elem_size = 4; break;
    case 0x0D: s->elem = EL_F32; s->elem_size = 4; break;
    case 0x0E: s->elem = EL_F64; s->elem_size = 8; break;
    default:
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: unknown IDX element type 0x%02x",
                              s->path, hd[2]);
    }
    s->big_endian = true;
    int rank = hd[3];
    if (rank < 1 || rank > 4)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: IDX rank %d out of range 1..4",
                              s->path, rank);
    int64_t dims[4];
    for (int i = 0; i < rank; i++) {
        uint8_t d[4];
        if (gzread(s->gz, d, 4) != 4)
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: truncated IDX header", s->path);
        dims[i] = ((int64_t)d[0] << 24) | ((int64_t)d[1] << 16) | ((int64_t)d[2] << 8) | d[3];
    }
    s->data_offset = 4 + 4L * rank;
    return set_shape(s, rank, dims, err);
}

/* Parses `'key': value` out of a NPY header dict (a tiny subset of Python
 * literal syntax: what numpy writes). */
static const char *npy_find(const char *hdr, const char *key) {
    char pat[32];
    snprintf(pat, sizeof(pat), "'%s'", key);
    const char *p = strstr(hdr, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ' || *p == ':') p++;
    return p;
}

static mopt_status open_npy(mopt_sample_source *s, mopt_error *err) {
    s->f = fopen(s->path, "rb");
    if (!s->f)
        return mopt_error_set(err, MOPT_ERR_IO, "%s: cannot open: %s", s->path, strerror(errno));
    uint8_t pre[10];
    if (fread(pre, 1, 10, s->f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: not an NPY file (bad magic)", s->path);
    size_t hlen;
    long off;
    if (pre[6] == 1) {
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
        off = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        uint8_t more[2];
        if (fread(more, 1, 2, s->f) != 2)
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: truncated NPY header", s->path);
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8) | ((size_t)more[0] << 16) |
               ((size_t)more[1] << 24);
        off = 12;
    } else {
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: NPY version %d not supported", s->path,
                              pre[6]);
    }
    if (hlen == 0 || hlen > 65536)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: NPY header length %zu out of range",
                              s->path, hlen);
    char *hdr = malloc(hlen + 1);
    if (!hdr)
        return mopt_error_set(err, MOPT_ERR_NOMEM, "%s: out of memory", s->path);
    if (fread(hdr, 1, hlen, s->f) != hlen) {
        free(hdr);
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: truncated NPY header", s->path);
    }
    hdr[hlen] = '\0';
    mopt_status st = MOPT_OK;
    const char *d = npy_find(hdr, "descr"), *fo = npy_find(hdr, "fortran_order"),
               *sh = npy_find(hdr, "shape");
    if (!d || !fo || !sh || *d != '\'') {
        st = mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: malformed NPY header", s->path);
        goto done;
    }
    if (strncmp(fo, "False", 5) != 0) {
        st = mopt_error_set(err, MOPT_ERR_UNSUPPORTED, "%s: Fortran-order NPY not supported",
                            s->path);
        goto done;
    }
    static const struct { const char *descr; int elem; size_t size; bool be; } types[] = {
        {"'|u1'", EL_U8, 1, false},  {"'|i1'", EL_I8, 1, false},  {"'<i2'", EL_I16, 2, false},
        {"'<i4'", EL_I32, 4, false}, {"'<f4'", EL_F32, 4, false}, {"'<f8'", EL_F64, 8, false},
        {"'>f4'", EL_F32, 4, true},  {"'|b1'", EL_U8, 1, false},
    };
    bool known = false;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strncmp(d, types[i].descr, strlen(types[i].descr)) == 0) {
            s->elem = types[i].elem;
            s->elem_size = types[i].size;
            s->big_endian = types[i].be;
            known = true;
        }
    if (!known) {
        const char *q = strchr(d + 1, '\'');
        st = mopt_error_set(err, MOPT_ERR_UNSUPPORTED, "%s: NPY dtype %.*s not supported", s->path,
                            q ? (int)(q - d + 1) : 8, d);
        goto done;
    }
    if (*sh != '(') {
        st = mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: malformed NPY shape", s->path);
        goto done;
    }
    int64_t dims[4];
    int rank = 0;
    const char *p = sh + 1;
    while (*p && *p != ')') {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')')
            break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || rank == 4) {
            st = mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                "%s: NPY shape must be 3 or 4 non-negative dims", s->path);
            goto done;
        }
        dims[rank++] = v;
        p = end;
    }
    s->data_offset = off + (long)hlen;
    st = set_shape(s, rank, dims, err);
done:
    free(hdr);
    return st;
}

/* Loads labels (small) for n samples; mismatched counts are an error. */
static mopt_status load_labels(mopt_sample_source *s, const char *path, mopt_error *err) {
    mopt_array a = {0};
    mopt_status st = ends_with(path, ".npy") ? mopt_npy_read(path, &a, err)
                                             : mopt_idx_read(path, &a, err);
    if (st != MOPT_OK)
        return st;
    int64_t n = mopt_array_numel(&a);
    if ((a.rank != 1 && !(a.rank == 2 && a.dims[1] == 1)) || n != s->n) {
        mopt_array_free(&a);
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: %lld labels for %lld images in %s", path,
                              (long long)n, (long long)s->n, s->path);
    }
    s->labels = malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    if (!s->labels) {
        mopt_array_free(&a);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "%s: out of memory", path);
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t v;
        switch (a.dtype) {
        case MOPT_UINT8: v = ((const uint8_t *)a.data)[i]; break;
        case MOPT_INT8: v = ((const int8_t *)a.data)[i]; break;
        case MOPT_INT16: v = ((const int16_t *)a.data)[i]; break;
        case MOPT_INT32: v = ((const int32_t *)a.data)[i]; break;
        case MOPT_INT64: v = ((const int64_t *)a.data)[i]; break;
        default: v = -1; break;
        }
        if (v < 0 || v > 65535) {
            mopt_array_free(&a);
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: label %lld of sample %lld invalid",
                                  path, (long long)v, (long long)i);
        }
        s->labels[i] = (int32_t)v;
    }
    mopt_array_free(&a);
    return MOPT_OK;
}

static mopt_status open_file(mopt_sample_source *s, const char *path, mopt_error *err) {
    s->path = strdup(path);
    if (!s->path)
        return mopt_error_set(err, MOPT_ERR_NOMEM, "out of memory");
    if (!is_file(path))
        return mopt_error_set(err, MOPT_ERR_IO, "%s: no such file", path);
    if (ends_with(path, ".npy")) {
        s->kind = SRC_NPY;
        return open_npy(s, err);
    }
    s->kind = SRC_IDX;
    return open_idx(s, err);
}

static mopt_status find_idx(const char *dir, const char *base, char *path, size_t cap,
                            mopt_error *err) {
    int n = snprintf(path, cap, "%s/%s.gz", dir, base);
    if (n < 0 || (size_t)n >= cap)
        return mopt_error_set(err, MOPT_ERR_ARG, "%s: dataset path too long", dir);
    if (is_file(path))
        return MOPT_OK;
    snprintf(path, cap, "%s/%s", dir, base);
    if (is_file(path))
        return MOPT_OK;
    return mopt_error_set(err, MOPT_ERR_IO, "%s: dataset folder has no %s[.gz]", dir, base);
}

mopt_status mopt_sample_source_open(const char *spec, mopt_split split, mopt_scale scale,
                                    mopt_sample_source **out, mopt_error *err) {
    if (!spec || !out)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_sample_source_open: NULL argument");
    *out = NULL;
    if (scale != MOPT_SCALE_01 && scale != MOPT_SCALE_PM1 && scale != MOPT_SCALE_NONE)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_sample_source_open: unknown scale %d",
                              (int)scale);
    mopt_sample_source *s = calloc(1, sizeof(*s));
    if (!s)
        return mopt_error_set(err, MOPT_ERR_NOMEM, "out of memory");
    s->scale = scale;
    mopt_status st;
    const char *comma = strchr(spec, ',');
    char ipath[4096], lpath[4096];
    if (comma) {
        size_t ilen = (size_t)(comma - spec);
        if (ilen == 0 || ilen >= sizeof(ipath) || comma[1] == '\0' || strchr(comma + 1, ',')) {
            st = mopt_error_set(err, MOPT_ERR_ARG,
                                "%s: expected a dataset spec of the form IMAGES.npy,LABELS.npy",
                                spec);
            goto fail;
        }
        memcpy(ipath, spec, ilen);
        ipath[ilen] = '\0';
        st = open_file(s, ipath, err);
        if (st == MOPT_OK)
            st = load_labels(s, comma + 1, err);
    } else if (is_file(spec)) {
        st = open_file(s, spec, err);
    } else {
        const char *dir = spec;
        if (strcmp(spec, "fashion-mnist") == 0 && !is_dir(spec)) {
            const char *env = getenv("MOPT_FASHION_MNIST_DIR");
            dir = env && *env ? env : DEBIAN_FASHION_MNIST_DIR;
            if (!is_dir(dir)) {
                st = mopt_error_set(err, MOPT_ERR_IO,
                                    "%s: Fashion-MNIST folder not found (install Debian's "
                                    "dataset-fashion-mnist or set MOPT_FASHION_MNIST_DIR)",
                                    dir);
                goto fail;
            }
        } else if (!is_dir(dir)) {
            st = mopt_error_set(err, MOPT_ERR_IO,
                                "%s: no such dataset (expected 'fashion-mnist', a folder of IDX "
                                "files, an image file or IMAGES.npy,LABELS.npy)",
                                spec);
            goto fail;
        }
        const char *prefix = split == MOPT_SPLIT_TRAIN ? "train" : "t10k";
        char base[64];
        snprintf(base, sizeof(base), "%s-images-idx3-ubyte", prefix);
        st = find_idx(dir, base, ipath, sizeof(ipath), err);
        if (st == MOPT_OK) {
            snprintf(base, sizeof(base), "%s-labels-idx1-ubyte", prefix);
            st = find_idx(dir, base, lpath, sizeof(lpath), err);
        }
        if (st == MOPT_OK)
            st = open_file(s, ipath, err);
        if (st == MOPT_OK)
            st = load_labels(s, lpath, err);
    }
    if (st != MOPT_OK)
        goto fail;
    *out = s;
    return MOPT_OK;
fail:
    mopt_sample_source_close(s);
    return st;
}

mopt_status mopt_sample_source_rewind(mopt_sample_source *s, mopt_error *err) {
    if (!s)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_sample_source_rewind: NULL source");
    s->pos = 0;
    if (s->kind == SRC_IDX && gzseek(s->gz, s->data_offset, SEEK_SET) != s->data_offset)
        return mopt_error_set(err, MOPT_ERR_IO, "%s: cannot rewind", s->path);
    if (s->kind == SRC_NPY && fseek(s->f, s->data_offset, SEEK_SET) != 0)
        return mopt_error_set(err, MOPT_ERR_IO, "%s: cannot rewind: %s", s->path, strerror(errno));
    return MOPT_OK;
}

static uint64_t load_uint(const uint8_t *p, size_t size, bool be) {
    uint64_t v = 0;
    for (size_t i = 0; i < size; i++) v |= (uint64_t)p[be ? i : size - 1 - i] << (8 * (size - 1 - i));
    return v;
}

/* Converts one raw element to float with the integer-image scaling. */
static float convert(const mopt_sample_source *s, const uint8_t *p) {
    uint64_t u = load_uint(p, s->elem_size, s->big_endian);
    double x;
    switch (s->elem) {
    case EL_U8: x = (double)(uint8_t)u; break;
    case EL_I8: x = (double)(int8_t)(uint8_t)u; break;
    case EL_I16: x = (double)(int16_t)(uint16_t)u; break;
    case EL_I32: x = (double)(int32_t)(uint32_t)u; break;
    case EL_F32: {
        uint32_t b = (uint32_t)u;
        float f;
        memcpy(&f, &b, sizeof(f));
        return f;
    }
    default: {
        double f;
        memcpy(&f, &u, sizeof(f));
        return (float)f;
    }
    }
    /* Same expressions as dataset.c so streamed and loaded data are equal. */
    float xf = (float)x;
    switch (s->scale) {
    case MOPT_SCALE_PM1: return xf / 127.5f - 1.0f;
    case MOPT_SCALE_NONE: return xf;
    default: return xf / 255.0f;
    }
}

mopt_status mopt_sample_source_next(mopt_sample_source *s, float *dst, int32_t *label,
                                    mopt_error *err) {
    if (!s || !dst)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_sample_source_next: NULL argument");
    if (s->pos >= s->n)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: no more samples (%lld)",
                              s->path ? s->path : "dataset", (long long)s->n);
    size_t per = (size_t)s->h * (size_t)s->w * (size_t)s->c;
    if (s->kind == SRC_MEMORY) {
        memcpy(dst, s->mem->images + (size_t)s->pos * per, per * sizeof(float));
        if (label)
            *label = s->mem->labels ? s->mem->labels[s->pos] : -1;
        s->pos++;
        return MOPT_OK;
    }
    size_t bytes = per * s->elem_size;
    size_t got;
    if (s->kind == SRC_IDX) {
        int r = gzread(s->gz, s->raw, (unsigned)bytes);
        got = r < 0 ? 0 : (size_t)r;
    } else {
        got = fread(s->raw, 1, bytes, s->f);
    }
    if (got != bytes)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: truncated at sample %lld of %lld",
                              s->path, (long long)s->pos, (long long)s->n);
    if (s->elem == EL_U8 && s->scale == MOPT_SCALE_01) {
        /* the common case (Fashion-MNIST bytes), same expression as convert() */
        for (size_t i = 0; i < per; i++) dst[i] = (float)s->raw[i] / 255.0f;
    } else {
        for (size_t i = 0; i < per; i++) dst[i] = convert(s, s->raw + i * s->elem_size);
    }
    if (label)
        *label = s->labels ? s->labels[s->pos] : -1;
    s->pos++;
    return MOPT_OK;
}
