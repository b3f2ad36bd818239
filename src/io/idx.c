/* IDX reader (the MNIST / Fashion-MNIST container), raw or gzip-compressed.
 *
 * Layout: magic 00 00 TT NN (TT = element type, NN = number of dims), NN
 * big-endian uint32 dims, then the elements big-endian in C order.
 *
 * The file is untrusted. The header fixes the exact payload size, so the
 * payload is decompressed straight into a buffer of that size, and both short
 * data and trailing bytes are errors. Before allocating, the claimed size is
 * checked against what the file could possibly hold (raw: the file length;
 * gzip: deflate's maximum ratio), so a tiny file cannot make us allocate
 * gigabytes.
 */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "mopt/data.h"
#include "mopt/util.h"

#define IDX_MAX_DIMS 8
#define IDX_MAX_BYTES ((int64_t)1 << 31)
/* Deflate cannot expand better than about 1032:1; allow some slack for the
 * gzip header and tiny streams. */
#define DEFLATE_MAX_RATIO 1100
#define DEFLATE_SLACK 4096

/* A byte stream over either a raw memory buffer or a gzip stream held in
 * memory. */
typedef struct idx_src {
    const char *path;
    const uint8_t *buf;
    size_t size;
    size_t pos; /* raw mode: read position */
    bool gz;
    z_stream zs;
    bool zs_live;
    bool eof; /* gzip: final member ended */
} idx_src;

static mopt_status src_init(idx_src *s, const char *path, const uint8_t *buf, size_t size,
                            mopt_error *err) {
    memset(s, 0, sizeof(*s));
    s->path = path;
    s->buf = buf;
    s->size = size;
    s->gz = size >= 2 && buf[0] == 0x1f && buf[1] == 0x8b;
    if (!s->gz)
        return MOPT_OK;
    /* 16 + MAX_WBITS: expect a gzip wrapper (and check its CRC / length). */
    if (inflateInit2(&s->zs, 16 + MAX_WBITS) != Z_OK)
        return mopt_error_set(err, MOPT_ERR_NOMEM, "%s: cannot initialise zlib", path);
    s->zs_live = true;
    s->zs.next_in = (Bytef *)buf; /* zlib does not write through next_in */
    s->zs.avail_in = 0;
    s->pos = 0;
    return MOPT_OK;
}

static void src_free(idx_src *s) {
    if (s->zs_live)
        inflateEnd(&s->zs);
    s->zs_live = false;
}

/* Feeds zlib from the input buffer in chunks that fit its uInt counters. */
static void feed(idx_src *s) {
    if (s->zs.avail_in == 0 && s->pos < s->size) {
        size_t chunk = s->size - s->pos;
        if (chunk > (1u << 30))
            chunk = 1u << 30;
        s->zs.next_in = (Bytef *)(s->buf + s->pos);
        s->zs.avail_in = (uInt)chunk;
        s->pos += chunk;
    }
}

/* Unconsumed compressed bytes (input not yet handed to zlib + zlib's). */
static size_t gz_remaining(const idx_src *s) {
    return (s->size - s->pos) + s->zs.avail_in;
}

/* Reads exactly n bytes into dst. Fails on short data. */
static mopt_status src_read(idx_src *s, void *dst, size_t n, const char *what, mopt_error *err) {
    if (!s->gz) {
        if (s->size - s->pos < n)
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                  "%s: truncated IDX file (%s: need %zu bytes, %zu left)", s->path,
                                  what, n, s->size - s->pos);
        memcpy(dst, s->buf + s->pos, n);
        s->pos += n;
        return MOPT_OK;
    }
    uint8_t *out = dst;
    size_t done = 0;
    while (done < n) {
        if (s->eof)
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                  "%s: truncated IDX data (%s: gzip stream ended %zu bytes short)",
                                  s->path, what, n - done);
        feed(s);
        size_t want = n - done;
        if (want > (1u << 30))
            want = 1u << 30;
        s->zs.next_out = out + done;
        s->zs.avail_out = (uInt)want;
        int zr = inflate(&s->zs, Z_NO_FLUSH);
        size_t got = want - s->zs.avail_out;
        done += got;
        if (zr == Z_STREAM_END) {
            /* Concatenated gzip members are valid gzip: continue with the
             * next one if the remaining input starts with the gzip magic. */
            feed(s);
            if (s->zs.avail_in >= 2 && s->zs.next_in[0] == 0x1f && s->zs.next_in[1] == 0x8b) {
                if (inflateReset(&s->zs) != Z_OK)
                    return mopt_error_set(err, MOPT_ERR_INTERNAL, "%s: zlib reset failed", s->path);
            } else {
                s->eof = true;
            }
        } else if (zr == Z_BUF_ERROR && got == 0) {
            /* No progress possible: the input ran out mid-stream. */
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                  "%s: truncated gzip stream (%s: %zu bytes short)", s->path, what,
                                  n - done);
        } else if (zr != Z_OK && zr != Z_BUF_ERROR) {
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: corrupt gzip data (%s)", s->path,
                                  s->zs.msg ? s->zs.msg : "inflate failed");
        }
    }
    return MOPT_OK;
}

/* After the payload: the stream must end exactly here. */
static mopt_status src_finish(idx_src *s, mopt_error *err) {
    if (!s->gz) {
        if (s->pos != s->size)
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                  "%s: %zu trailing bytes after the IDX data", s->path,
                                  s->size - s->pos);
        return MOPT_OK;
    }
    /* Drive zlib until the end of the stream (it still has to check the
     * CRC and length trailer); any decompressed byte is trailing data. */
    while (!s->eof) {
        uint8_t extra;
        feed(s);
        s->zs.next_out = &extra;
        s->zs.avail_out = 1;
        int zr = inflate(&s->zs, Z_NO_FLUSH);
        if (s->zs.avail_out == 0)
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                  "%s: trailing data after the IDX payload in the gzip stream",
                                  s->path);
        if (zr == Z_STREAM_END) {
            feed(s);
            if (s->zs.avail_in >= 2 && s->zs.next_in[0] == 0x1f && s->zs.next_in[1] == 0x8b) {
                if (inflateReset(&s->zs) != Z_OK)
                    return mopt_error_set(err, MOPT_ERR_INTERNAL, "%s: zlib reset failed", s->path);
            } else {
                s->eof = true;
            }
        } else if (zr == Z_BUF_ERROR) {
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                  "%s: truncated gzip stream (missing end of stream)", s->path);
        } else if (zr != Z_OK) {
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: corrupt gzip data (%s)", s->path,
                                  s->zs.msg ? s->zs.msg : "inflate failed");
        }
    }
    if (gz_remaining(s) != 0)
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "%s: %zu trailing bytes after the gzip stream", s->path,
                              gz_remaining(s));
    return MOPT_OK;
}

typedef struct idx_type {
    uint8_t code;
    const char *name;
    size_t size;      /* bytes per element in the file */
    mopt_dtype dtype; /* in memory */
} idx_type;

static const idx_type idx_types[] = {
    {0x08, "ubyte", 1, MOPT_UINT8},   {0x09, "byte", 1, MOPT_INT8},
    {0x0B, "short", 2, MOPT_INT16},   {0x0C, "int", 4, MOPT_INT32},
    {0x0D, "float", 4, MOPT_FLOAT32}, {0x0E, "double", 8, MOPT_FLOAT32},
};

static uint32_t rd_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Converts n big-endian elements in place-independent fashion into dst. */
static void decode_be(const idx_type *t, const uint8_t *src, int64_t n, void *dst) {
    switch (t->size) {
    case 1: memcpy(dst, src, (size_t)n); break;
    case 2:
        for (int64_t i = 0; i < n; i++) {
            uint16_t v = (uint16_t)((unsigned)src[2 * i] << 8 | src[2 * i + 1]);
            memcpy((uint8_t *)dst + 2 * i, &v, 2);
        }
        break;
    case 4:
        for (int64_t i = 0; i < n; i++) {
            uint32_t v = rd_be32(src + 4 * i);
            memcpy((uint8_t *)dst + 4 * i, &v, 4);
        }
        break;
    default: /* double -> float */
        for (int64_t i = 0; i < n; i++) {
            uint64_t v = (uint64_t)rd_be32(src + 8 * i) << 32 | rd_be32(src + 8 * i + 4);
            double d;
            memcpy(&d, &v, 8);
            ((float *)dst)[i] = (float)d;
        }
        break;
    }
}

mopt_status mopt_idx_read(const char *path, mopt_array *out, mopt_error *err) {
    if (!path || !out)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_idx_read: NULL argument");
    memset(out, 0, sizeof(*out));
    uint8_t *buf = NULL;
    size_t size = 0;
    mopt_status st = mopt_file_read_all(path, 0, &buf, &size, err);
    if (st != MOPT_OK)
        return st;

    idx_src s;
    uint8_t *payload = NULL;
    st = src_init(&s, path, buf, size, err);
    if (st != MOPT_OK)
        goto done;

    uint8_t magic[4];
    if ((st = src_read(&s, magic, 4, "magic", err)) != MOPT_OK)
        goto done;
    if (magic[0] != 0 || magic[1] != 0) {
        st = mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                            "%s: not an IDX file (magic %02x %02x %02x %02x)", path, magic[0],
                            magic[1], magic[2], magic[3]);
        goto done;
    }
    const idx_type *t = NULL;
    for (size_t i = 0; i < sizeof(idx_types) / sizeof(idx_types[0]); i++)
        if (idx_types[i].code == magic[2])
            t = &idx_types[i];
    if (!t) {
        st = mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: unknown IDX element type 0x%02x", path,
                            magic[2]);
        goto done;
    }
    int ndims = magic[3];
    if (ndims < 1 || ndims > IDX_MAX_DIMS) {
        st = mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: IDX rank %d out of range 1..%d", path,
                            ndims, IDX_MAX_DIMS);
        goto done;
    }
    uint8_t dimbuf[4 * IDX_MAX_DIMS];
    if ((st = src_read(&s, dimbuf, 4 * (size_t)ndims, "dimensions", err)) != MOPT_OK)
        goto done;
    int64_t n = 1;
    out->rank = ndims;
    for (int i = 0; i < ndims; i++) {
        uint32_t d = rd_be32(dimbuf + 4 * i);
        out->dims[i] = d;
        /* Cap early so the product below cannot overflow int64. */
        if (d != 0 && n > IDX_MAX_BYTES / (int64_t)d) {
            st = mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                "%s: IDX dimensions are too large (over 2 GiB of data)", path);
            goto done;
        }
        n *= d;
    }
    if (n > IDX_MAX_BYTES / (int64_t)t->size) {
        st = mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                            "%s: IDX dimensions are too large (over 2 GiB of data)", path);
        goto done;
    }
    size_t file_bytes = (size_t)n * t->size;
    /* Plausibility before allocating: what can this file hold at most? */
    size_t header = 4 + 4 * (size_t)ndims;
    if (!s.gz && file_bytes > size - header) {
        st =
            mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                           "%s: truncated IDX file (the header claims %zu data bytes, %zu present)",
                           path, file_bytes, size - header);
        goto done;
    }
    if (s.gz && (file_bytes + header) / DEFLATE_MAX_RATIO > size + DEFLATE_SLACK) {
        st = mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                            "%s: IDX header claims %zu data bytes, more than a %zu-byte gzip file "
                            "can hold",
                            path, file_bytes, size);
        goto done;
    }
    payload = malloc(file_bytes ? file_bytes : 1);
    size_t out_bytes = (size_t)n * mopt_dtype_size(t->dtype);
    out->data = malloc(out_bytes ? out_bytes : 1);
    if (!payload || !out->data) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, file_bytes);
        goto done;
    }
    if ((st = src_read(&s, payload, file_bytes, "data", err)) != MOPT_OK)
        goto done;
    if ((st = src_finish(&s, err)) != MOPT_OK)
        goto done;
    decode_be(t, payload, n, out->data);
    out->dtype = t->dtype;
    out->nbytes = out_bytes;

done:
    src_free(&s);
    free(payload);
    free(buf);
    if (st != MOPT_OK)
        mopt_array_free(out);
    return st;
}
