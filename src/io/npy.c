/* NPY reader and writer (numpy's .npy format, versions 1.0, 2.0 and 3.0).
 *
 * Layout: "\x93NUMPY", major, minor, header length (uint16 LE for v1, uint32
 * LE for v2/v3), then an ASCII (v3: UTF-8) Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and a final '\n', then the raw C-order data.
 *
 * The file is untrusted: the header is parsed with a small recursive-descent
 * reader for exactly the literal forms numpy writes (quoted strings, True /
 * False, tuples of non-negative integers), and the data size implied by the
 * shape must equal the bytes that follow the header.
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/data.h"
#include "mopt/util.h"

/* Arrays larger than this are refused (same cap as mopt_file_read_all). */
#define NPY_MAX_BYTES ((int64_t)1 << 31)
#define NPY_MAX_RANK 8

void mopt_array_free(mopt_array *a) {
    if (!a)
        return;
    free(a->data);
    memset(a, 0, sizeof(*a));
}

int64_t mopt_array_numel(const mopt_array *a) {
    if (!a || a->rank < 0 || a->rank > NPY_MAX_RANK)
        return -1;
    int64_t n = 1;
    for (int i = 0; i < a->rank; i++) {
        if (a->dims[i] < 0)
            return -1;
        if (a->dims[i] != 0 && n > INT64_MAX / a->dims[i])
            return -1;
        n *= a->dims[i];
    }
    return n;
}

/* ---- header parsing ---- */

typedef struct npy_parser {
    const char *s;
    size_t len;
    size_t pos;
} npy_parser;

static void skip_ws(npy_parser *p) {
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static bool accept(npy_parser *p, char c) {
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == c) {
        p->pos++;
        return true;
    }
    return false;
}

/* Parses a quoted string ('...' or "...") without escapes (numpy never needs
 * them for keys and descr) into buf. */
static bool parse_string(npy_parser *p, char *buf, size_t cap) {
    skip_ws(p);
    if (p->pos >= p->len)
        return false;
    char q = p->s[p->pos];
    if (q != '\'' && q != '"')
        return false;
    p->pos++;
    size_t n = 0;
    while (p->pos < p->len && p->s[p->pos] != q) {
        if (p->s[p->pos] == '\\' || n + 1 >= cap)
            return false;
        buf[n++] = p->s[p->pos++];
    }
    if (p->pos >= p->len)
        return false;
    p->pos++; /* closing quote */
    buf[n] = '\0';
    return true;
}

static bool parse_word(npy_parser *p, const char *word) {
    skip_ws(p);
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return false;
    /* The word must end here (no "Falsey"). */
    if (p->pos + n < p->len &&
        (isalnum((unsigned char)p->s[p->pos + n]) || p->s[p->pos + n] == '_'))
        return false;
    p->pos += n;
    return true;
}

/* Non-negative decimal integer (Python 2 numpy wrote "3L"; accept the L). */
static bool parse_dim(npy_parser *p, int64_t *out) {
    skip_ws(p);
    if (p->pos >= p->len || !isdigit((unsigned char)p->s[p->pos]))
        return false;
    int64_t v = 0;
    while (p->pos < p->len && isdigit((unsigned char)p->s[p->pos])) {
        int d = p->s[p->pos] - '0';
        if (v > (INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
        p->pos++;
    }
    if (p->pos < p->len && p->s[p->pos] == 'L')
        p->pos++;
    *out = v;
    return true;
}

/* "(a, b, c)" / "(a,)" / "()" */
static bool parse_shape(npy_parser *p, int *rank, int64_t *dims, const char **why) {
    if (!accept(p, '(')) {
        *why = "shape is not a tuple";
        return false;
    }
    *rank = 0;
    if (accept(p, ')'))
        return true;
    for (;;) {
        int64_t d;
        if (!parse_dim(p, &d)) {
            *why = "shape entry is not a non-negative integer";
            return false;
        }
        if (*rank >= NPY_MAX_RANK) {
            *why = "shape has more than 8 dimensions";
            return false;
        }
        dims[(*rank)++] = d;
        if (accept(p, ')'))
            return true;
        if (!accept(p, ',')) {
            *why = "malformed shape tuple";
            return false;
        }
        if (accept(p, ')'))
            return true;
    }
}

typedef struct npy_header {
    char descr[16];
    bool fortran;
    int rank;
    int64_t dims[NPY_MAX_RANK];
} npy_header;

static bool parse_header(const char *s, size_t len, npy_header *h, const char **why) {
    npy_parser p = {s, len, 0};
    bool have_descr = false, have_fortran = false, have_shape = false;
    memset(h, 0, sizeof(*h));
    if (!accept(&p, '{')) {
        *why = "header is not a dict literal";
        return false;
    }
    while (!accept(&p, '}')) {
        char key[32];
        if (!parse_string(&p, key, sizeof(key))) {
            *why = "header dict key is not a short string";
            return false;
        }
        if (!accept(&p, ':')) {
            *why = "missing ':' in header dict";
            return false;
        }
        if (strcmp(key, "descr") == 0) {
            if (!parse_string(&p, h->descr, sizeof(h->descr))) {
                *why = "descr is not a simple type string (structured dtypes are not supported)";
                return false;
            }
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (parse_word(&p, "True"))
                h->fortran = true;
            else if (parse_word(&p, "False"))
                h->fortran = false;
            else {
                *why = "fortran_order is not True or False";
                return false;
            }
            have_fortran = true;
        } else if (strcmp(key, "shape") == 0) {
            if (!parse_shape(&p, &h->rank, h->dims, why))
                return false;
            have_shape = true;
        } else {
            *why = "unknown key in header dict";
            return false;
        }
        if (!accept(&p, ',')) {
            if (!accept(&p, '}')) {
                *why = "malformed header dict";
                return false;
            }
            break;
        }
    }
    skip_ws(&p);
    /* Some writers pad with NULs instead of spaces before the newline. */
    while (p.pos < p.len && p.s[p.pos] == '\0')
        p.pos++;
    skip_ws(&p);
    if (p.pos != p.len) {
        *why = "unexpected text after the header dict";
        return false;
    }
    if (!have_descr || !have_fortran || !have_shape) {
        *why = "header dict lacks descr, fortran_order or shape";
        return false;
    }
    return true;
}

typedef struct npy_type {
    const char *code; /* descr without byte-order character */
    mopt_dtype dtype; /* in-memory type after reading */
    size_t file_size; /* bytes per element in the file */
} npy_type;

static const npy_type npy_types[] = {
    {"f4", MOPT_FLOAT32, 4}, {"f8", MOPT_FLOAT32, 8}, {"i1", MOPT_INT8, 1},  {"u1", MOPT_UINT8, 1},
    {"i2", MOPT_INT16, 2},   {"i4", MOPT_INT32, 4},   {"i8", MOPT_INT64, 8}, {"b1", MOPT_UINT8, 1},
};

/* Maps a descr such as "<f4" or "|u1" to a type; NULL if unsupported. */
static const npy_type *lookup_descr(const char *descr) {
    char order = descr[0];
    if (order != '<' && order != '|' && order != '=')
        return NULL; /* '>' (big-endian) or no order character */
    for (size_t i = 0; i < sizeof(npy_types) / sizeof(npy_types[0]); i++) {
        if (strcmp(descr + 1, npy_types[i].code) != 0)
            continue;
        /* '|' (not applicable) only makes sense for single bytes. */
        if (order == '|' && npy_types[i].file_size != 1)
            return NULL;
        return &npy_types[i];
    }
    return NULL;
}

static uint32_t rd_le16(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}
static uint32_t rd_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd_le64(const uint8_t *p) {
    return (uint64_t)rd_le32(p) | (uint64_t)rd_le32(p + 4) << 32;
}

/* Decodes n little-endian elements of `t` from src into dst (host order). */
static void decode_data(const npy_type *t, const uint8_t *src, int64_t n, void *dst) {
    if (t->file_size == 1) {
        memcpy(dst, src, (size_t)n);
        if (strcmp(t->code, "b1") == 0) {
            uint8_t *b = dst;
            for (int64_t i = 0; i < n; i++)
                b[i] = b[i] != 0;
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *e = src + (size_t)i * t->file_size;
        switch (t->file_size) {
        case 2: {
            uint16_t v = (uint16_t)rd_le16(e);
            memcpy((uint8_t *)dst + (size_t)i * 2, &v, 2);
            break;
        }
        case 4: {
            uint32_t v = rd_le32(e);
            memcpy((uint8_t *)dst + (size_t)i * 4, &v, 4);
            break;
        }
        default: {
            uint64_t v = rd_le64(e);
            if (t->code[0] == 'f') { /* float64 -> float32 */
                double d;
                memcpy(&d, &v, 8);
                ((float *)dst)[i] = (float)d;
            } else {
                memcpy((uint8_t *)dst + (size_t)i * 8, &v, 8);
            }
            break;
        }
        }
    }
}

mopt_status mopt_npy_read(const char *path, mopt_array *out, mopt_error *err) {
    if (!path || !out)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_npy_read: NULL argument");
    memset(out, 0, sizeof(*out));
    uint8_t *buf = NULL;
    size_t size = 0;
    mopt_status st = mopt_file_read_all(path, 0, &buf, &size, err);
    if (st != MOPT_OK)
        return st;

    static const uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (size < 10 || memcmp(buf, magic, 6) != 0) {
        free(buf);
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: not an NPY file (bad magic)", path);
    }
    int major = buf[6];
    size_t prefix, hlen;
    if (major == 1) {
        prefix = 10;
        hlen = rd_le16(buf + 8);
    } else if (major == 2 || major == 3) {
        if (size < 12) {
            free(buf);
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: truncated NPY header", path);
        }
        prefix = 12;
        hlen = rd_le32(buf + 8);
    } else {
        int minor = buf[7];
        free(buf);
        return mopt_error_set(err, MOPT_ERR_UNSUPPORTED, "%s: unsupported NPY version %d.%d", path,
                              major, minor);
    }
    if (hlen > size - prefix) {
        free(buf);
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "%s: NPY header length %zu exceeds the file size (%zu bytes)", path,
                              hlen, size);
    }

    npy_header h;
    const char *why = NULL;
    if (!parse_header((const char *)buf + prefix, hlen, &h, &why)) {
        free(buf);
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: bad NPY header: %s", path, why);
    }
    const npy_type *t = lookup_descr(h.descr);
    if (!t) {
        free(buf);
        return mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                              "%s: unsupported NPY dtype '%s' (supported: <f4 <f8 |i1 |u1 <i2 "
                              "<i4 <i8 |b1)",
                              path, h.descr);
    }
    if (h.fortran) {
        free(buf);
        return mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                              "%s: Fortran-order NPY arrays are not supported", path);
    }

    out->dtype = t->dtype;
    out->rank = h.rank;
    for (int i = 0; i < h.rank; i++)
        out->dims[i] = h.dims[i];
    int64_t n = mopt_array_numel(out);
    size_t avail = size - prefix - hlen;
    if (n < 0 || n > NPY_MAX_BYTES / (int64_t)t->file_size) {
        free(buf);
        memset(out, 0, sizeof(*out));
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: NPY shape is too large", path);
    }
    size_t file_bytes = (size_t)n * t->file_size;
    if (file_bytes != avail) {
        free(buf);
        memset(out, 0, sizeof(*out));
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "%s: NPY data is %zu bytes but the shape needs %zu (%s)", path, avail,
                              file_bytes, avail < file_bytes ? "truncated" : "trailing bytes");
    }
    size_t out_bytes = (size_t)n * mopt_dtype_size(t->dtype);
    /* Always allocate at least one byte so that data is never NULL. */
    out->data = malloc(out_bytes ? out_bytes : 1);
    if (!out->data) {
        free(buf);
        memset(out, 0, sizeof(*out));
        return mopt_error_set(err, MOPT_ERR_NOMEM, "%s: out of memory (%zu bytes)", path,
                              out_bytes);
    }
    out->nbytes = out_bytes;
    decode_data(t, buf + prefix + hlen, n, out->data);
    free(buf);
    return MOPT_OK;
}

/* ---- writer ---- */

static const char *descr_for(mopt_dtype dt) {
    switch (dt) {
    case MOPT_FLOAT32: return "<f4";
    case MOPT_INT8: return "|i1";
    case MOPT_UINT8: return "|u1";
    case MOPT_INT16: return "<i2";
    case MOPT_INT32: return "<i4";
    case MOPT_INT64: return "<i8";
    case MOPT_BOOL: return "|b1";
    default: return NULL;
    }
}

static void wr_le(uint8_t *dst, const void *src, size_t esize) {
    uint64_t v = 0;
    switch (esize) {
    case 1: {
        uint8_t x;
        memcpy(&x, src, 1);
        v = x;
        break;
    }
    case 2: {
        uint16_t x;
        memcpy(&x, src, 2);
        v = x;
        break;
    }
    case 4: {
        uint32_t x;
        memcpy(&x, src, 4);
        v = x;
        break;
    }
    default: memcpy(&v, src, 8); break;
    }
    for (size_t i = 0; i < esize; i++)
        dst[i] = (uint8_t)(v >> (8 * i));
}

mopt_status mopt_npy_write(const char *path, const mopt_array *a, mopt_error *err) {
    if (!path || !a)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_npy_write: NULL argument");
    const char *descr = descr_for(a->dtype);
    if (!descr)
        return mopt_error_set(err, MOPT_ERR_UNSUPPORTED, "%s: cannot write dtype %s to NPY", path,
                              mopt_dtype_name(a->dtype));
    if (a->rank < 0 || a->rank > NPY_MAX_RANK)
        return mopt_error_set(err, MOPT_ERR_ARG, "%s: array rank %d out of range 0..8", path,
                              a->rank);
    int64_t n = mopt_array_numel(a);
    size_t esize = mopt_dtype_size(a->dtype);
    if (n < 0 || n > NPY_MAX_BYTES / (int64_t)esize)
        return mopt_error_set(err, MOPT_ERR_ARG, "%s: array shape is invalid or too large", path);
    size_t data_bytes = (size_t)n * esize;
    if (a->nbytes != data_bytes || (data_bytes > 0 && !a->data))
        return mopt_error_set(err, MOPT_ERR_ARG,
                              "%s: array holds %zu bytes but its shape needs %zu", path, a->nbytes,
                              data_bytes);

    /* Header text; "(n,)" is Python's one-element tuple. */
    char dict[512];
    int len =
        snprintf(dict, sizeof(dict), "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < a->rank; i++)
        len += snprintf(dict + len, sizeof(dict) - (size_t)len, "%s%lld", i ? ", " : "",
                        (long long)a->dims[i]);
    len += snprintf(dict + len, sizeof(dict) - (size_t)len, "%s), }", a->rank == 1 ? "," : "");
    /* Pad with spaces so the data starts on a 64-byte boundary (numpy's rule
     * for v1 files), ending with '\n'. */
    size_t total_header = 10 + (size_t)len + 1;
    size_t padded = (total_header + 63) / 64 * 64;
    size_t hlen = padded - 10;

    size_t file_size = padded + data_bytes;
    uint8_t *buf = malloc(file_size);
    if (!buf)
        return mopt_error_set(err, MOPT_ERR_NOMEM, "%s: out of memory (%zu bytes)", path,
                              file_size);
    static const uint8_t magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    memcpy(buf, magic, 8);
    buf[8] = (uint8_t)(hlen & 0xff);
    buf[9] = (uint8_t)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)len);
    memset(buf + 10 + len, ' ', hlen - (size_t)len - 1);
    buf[padded - 1] = '\n';
    const uint8_t *src = a->data;
    for (int64_t i = 0; i < n; i++)
        wr_le(buf + padded + (size_t)i * esize, src + (size_t)i * esize, esize);
    mopt_status st = mopt_file_write_atomic(path, buf, file_size, err);
    free(buf);
    return st;
}
