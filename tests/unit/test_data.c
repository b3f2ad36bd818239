/* Unit tests for src/io/{npy,idx,dataset}.c.
 *
 * Valid and malformed files are built byte by byte here (not with the code
 * under test), so the expected values are independent of the readers. The
 * committed Fashion-MNIST subset is checked against values computed with
 * numpy (labels, pixel sums).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "mopt/mopt.h"

#ifndef MOPT_SOURCE_DIR
#define MOPT_SOURCE_DIR "."
#endif

static char g_dir[256];

static int setup_dir(void **state) {
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/mopt_test_data_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **state) {
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int slot;
    slot = (slot + 1) % 4;
    snprintf(buf[slot], sizeof(buf[slot]), "%s/%s", g_dir, name);
    return buf[slot];
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* ---- NPY byte builders ---- */

/* Builds an NPY file of the given version with `dict` as header text (padded
 * to 64 bytes as numpy does) followed by `data`. Returns malloc'ed bytes. */
static uint8_t *make_npy(int major, const char *dict, const void *data, size_t data_len,
                         size_t *out_len) {
    size_t prefix = major == 1 ? 10 : 12;
    size_t dlen = strlen(dict);
    size_t total = (prefix + dlen + 1 + 63) / 64 * 64;
    size_t hlen = total - prefix;
    uint8_t *b = malloc(total + data_len + 1);
    assert_non_null(b);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (uint8_t)major;
    b[7] = 0;
    if (major == 1) {
        b[8] = (uint8_t)hlen;
        b[9] = (uint8_t)(hlen >> 8);
    } else {
        for (int i = 0; i < 4; i++)
            b[8 + i] = (uint8_t)(hlen >> (8 * i));
    }
    memcpy(b + prefix, dict, dlen);
    memset(b + prefix + dlen, ' ', hlen - dlen - 1);
    b[total - 1] = '\n';
    if (data_len)
        memcpy(b + total, data, data_len);
    *out_len = total + data_len;
    return b;
}

static void write_npy(const char *path, int major, const char *dict, const void *data,
                      size_t data_len) {
    size_t n;
    uint8_t *b = make_npy(major, dict, data, data_len, &n);
    write_bytes(path, b, n);
    free(b);
}

static void test_npy_read_float32(void **state) {
    (void)state;
    /* 2x3 float32 little-endian: 0.5, -1, 2, 3.25, 0, 1e-3 */
    const float vals[6] = {0.5f, -1.0f, 2.0f, 3.25f, 0.0f, 1e-3f};
    uint8_t le[24];
    for (int i = 0; i < 6; i++) {
        uint32_t u;
        memcpy(&u, &vals[i], 4);
        for (int k = 0; k < 4; k++)
            le[4 * i + k] = (uint8_t)(u >> (8 * k));
    }
    const char *p = tmp_path("f32.npy");
    write_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", le, 24);
    mopt_array a;
    mopt_error e;
    assert_int_equal(mopt_npy_read(p, &a, &e), MOPT_OK);
    assert_int_equal(a.dtype, MOPT_FLOAT32);
    assert_int_equal(a.rank, 2);
    assert_int_equal(a.dims[0], 2);
    assert_int_equal(a.dims[1], 3);
    assert_int_equal(a.nbytes, 24);
    assert_int_equal(mopt_array_numel(&a), 6);
    assert_memory_equal(a.data, vals, 24);
    mopt_array_free(&a);
    assert_null(a.data);
    mopt_array_free(NULL);
}

static void test_npy_read_variants(void **state) {
    (void)state;
    mopt_array a;
    mopt_error e;
    /* v2 header, int16, double quotes, keys in another order, 1-tuple. */
    const uint8_t i16[6] = {0x01, 0x00, 0xff, 0xff, 0x00, 0x80}; /* 1, -1, -32768 */
    const char *p = tmp_path("v2.npy");
    write_npy(p, 2, "{\"shape\": (3,), \"fortran_order\": False, \"descr\": \"<i2\"}", i16, 6);
    assert_int_equal(mopt_npy_read(p, &a, &e), MOPT_OK);
    assert_int_equal(a.dtype, MOPT_INT16);
    assert_int_equal(a.rank, 1);
    assert_int_equal(a.dims[0], 3);
    assert_int_equal(((int16_t *)a.data)[0], 1);
    assert_int_equal(((int16_t *)a.data)[1], -1);
    assert_int_equal(((int16_t *)a.data)[2], -32768);
    mopt_array_free(&a);

    /* v3 header, float64 -> float32, Python 2 long suffix. */
    const double dv[2] = {1.5, -2.25e10};
    uint8_t le[16];
    for (int i = 0; i < 2; i++) {
        uint64_t u;
        memcpy(&u, &dv[i], 8);
        for (int k = 0; k < 8; k++)
            le[8 * i + k] = (uint8_t)(u >> (8 * k));
    }
    p = tmp_path("v3.npy");
    write_npy(p, 3, "{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 1L), }", le, 16);
    assert_int_equal(mopt_npy_read(p, &a, &e), MOPT_OK);
    assert_int_equal(a.dtype, MOPT_FLOAT32);
    assert_int_equal(a.rank, 2);
    assert_true(((float *)a.data)[0] == 1.5f);
    assert_true(((float *)a.data)[1] == -2.25e10f);
    assert_int_equal(a.nbytes, 8);
    mopt_array_free(&a);

    /* Scalar (shape ()), int64. */
    const uint8_t i64[8] = {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}; /* -2 */
    p = tmp_path("scalar.npy");
    write_npy(p, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (), }", i64, 8);
    assert_int_equal(mopt_npy_read(p, &a, &e), MOPT_OK);
    assert_int_equal(a.rank, 0);
    assert_int_equal(mopt_array_numel(&a), 1);
    assert_int_equal(((int64_t *)a.data)[0], -2);
    mopt_array_free(&a);

    /* bool -> uint8 0/1; int8; uint8; int32. */
    const uint8_t b1[3] = {0, 1, 1};
    p = tmp_path("b1.npy");
    write_npy(p, 1, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", b1, 3);
    assert_int_equal(mopt_npy_read(p, &a, &e), MOPT_OK);
    assert_int_equal(a.dtype, MOPT_UINT8);
    assert_memory_equal(a.data, b1, 3);
    mopt_array_free(&a);

    const uint8_t i8[2] = {0x80, 0x7f};
    p = tmp_path("i1.npy");
    write_npy(p, 1, "{'descr': '|i1', 'fortran_order': False, 'shape': (1, 2), }", i8, 2);
    assert_int_equal(mopt_npy_read(p, &a, &e), MOPT_OK);
    assert_int_equal(a.dtype, MOPT_INT8);
    assert_int_equal(((int8_t *)a.data)[0], -128);
    assert_int_equal(((int8_t *)a.data)[1], 127);
    mopt_array_free(&a);

    const uint8_t i32[4] = {0x78, 0x56, 0x34, 0x12};
    p = tmp_path("i4.npy");
    write_npy(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }", i32, 4);
    assert_int_equal(mopt_npy_read(p, &a, &e), MOPT_OK);
    assert_int_equal(a.dtype, MOPT_INT32);
    assert_int_equal(((int32_t *)a.data)[0], 0x12345678);
    mopt_array_free(&a);

    /* Empty array: shape (0, 4). */
    p = tmp_path("empty.npy");
    write_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4), }", NULL, 0);
    assert_int_equal(mopt_npy_read(p, &a, &e), MOPT_OK);
    assert_int_equal(mopt_array_numel(&a), 0);
    assert_int_equal(a.nbytes, 0);
    assert_non_null(a.data);
    mopt_array_free(&a);
}

/* Reads `bytes` as an NPY file and expects `want` with `needle` in the message. */
static void expect_npy_error(const char *name, const void *bytes, size_t n, mopt_status want,
                             const char *needle) {
    const char *p = tmp_path(name);
    write_bytes(p, bytes, n);
    mopt_array a;
    mopt_error e;
    mopt_status st = mopt_npy_read(p, &a, &e);
    if (st != want || !strstr(e.msg, needle) || !strstr(e.msg, name))
        fail_msg("%s: got status %d '%s', want %d with '%s'", name, st, e.msg, want, needle);
    assert_null(a.data);
    assert_null(strchr(e.msg, '\n'));
}

static void expect_npy_header_error(const char *name, int major, const char *dict, size_t data_len,
                                    mopt_status want, const char *needle) {
    uint8_t *zeros = calloc(1, data_len + 1);
    size_t n;
    uint8_t *b = make_npy(major, dict, zeros, data_len, &n);
    expect_npy_error(name, b, n, want, needle);
    free(b);
    free(zeros);
}

static void test_npy_malformed(void **state) {
    (void)state;
    expect_npy_error("short.npy", "\x93NUM", 4, MOPT_ERR_BAD_INPUT, "bad magic");
    expect_npy_error("magic.npy", "\x93NUMPZ\x01\x00\x00\x00", 10, MOPT_ERR_BAD_INPUT, "magic");
    expect_npy_error("ver.npy", "\x93NUMPY\x04\x00\x00\x00\x00\x00", 12, MOPT_ERR_UNSUPPORTED,
                     "version 4");
    /* Header length 0x7fff but only a few bytes follow. */
    expect_npy_error("hlen.npy", "\x93NUMPY\x01\x00\xff\x7f{}", 12, MOPT_ERR_BAD_INPUT,
                     "header length");
    expect_npy_error("hlen2.npy", "\x93NUMPY\x02\x00\xff\xff\xff\xff{}", 14, MOPT_ERR_BAD_INPUT,
                     "header length");

    const char *F = "'fortran_order': False";
    char dict[256];
    snprintf(dict, sizeof(dict), "{'descr': '<f4', %s, 'shape': (2, 3), }", F);
    expect_npy_header_error("trunc.npy", 1, dict, 23, MOPT_ERR_BAD_INPUT, "truncated");
    expect_npy_header_error("trail.npy", 1, dict, 25, MOPT_ERR_BAD_INPUT, "trailing");
    expect_npy_header_error("fortran.npy", 1,
                            "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24,
                            MOPT_ERR_UNSUPPORTED, "Fortran");
    expect_npy_header_error("big_endian.npy", 1,
                            "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8,
                            MOPT_ERR_UNSUPPORTED, "'>f4'");
    expect_npy_header_error("complex.npy", 1,
                            "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16,
                            MOPT_ERR_UNSUPPORTED, "dtype");
    expect_npy_header_error("pipe4.npy", 1,
                            "{'descr': '|f4', 'fortran_order': False, 'shape': (2,), }", 8,
                            MOPT_ERR_UNSUPPORTED, "dtype");
    expect_npy_header_error("struct.npy", 1,
                            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8,
                            MOPT_ERR_BAD_INPUT, "descr");
    expect_npy_header_error("noshape.npy", 1, "{'descr': '<f4', 'fortran_order': False, }", 4,
                            MOPT_ERR_BAD_INPUT, "lacks");
    expect_npy_header_error("negdim.npy", 1,
                            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", 4,
                            MOPT_ERR_BAD_INPUT, "non-negative");
    expect_npy_header_error("rank9.npy", 1,
                            "{'descr': '<f4', 'fortran_order': False, "
                            "'shape': (1,1,1,1,1,1,1,1,1), }",
                            4, MOPT_ERR_BAD_INPUT, "more than 8");
    expect_npy_header_error("overflow.npy", 1,
                            "{'descr': '<f4', 'fortran_order': False, "
                            "'shape': (4294967296, 4294967296, 4294967296), }",
                            4, MOPT_ERR_BAD_INPUT, "too large");
    expect_npy_header_error("hugedim.npy", 1,
                            "{'descr': '<f4', 'fortran_order': False, "
                            "'shape': (99999999999999999999999,), }",
                            4, MOPT_ERR_BAD_INPUT, "shape");
    expect_npy_header_error("garbage.npy", 1,
                            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } xyz", 4,
                            MOPT_ERR_BAD_INPUT, "after the header");
    expect_npy_header_error("notdict.npy", 1, "['descr', '<f4']", 4, MOPT_ERR_BAD_INPUT, "dict");
    expect_npy_header_error("badbool.npy", 1,
                            "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (1,), }", 4,
                            MOPT_ERR_BAD_INPUT, "fortran_order");
    expect_npy_header_error("unterminated.npy", 1, "{'descr': '<f4", 4, MOPT_ERR_BAD_INPUT,
                            "header");
    expect_npy_header_error("tuple.npy", 1,
                            "{'descr': '<f4', 'fortran_order': False, 'shape': (1 2), }", 8,
                            MOPT_ERR_BAD_INPUT, "shape");

    mopt_array a;
    mopt_error e;
    assert_int_equal(mopt_npy_read(tmp_path("does-not-exist.npy"), &a, &e), MOPT_ERR_IO);
    assert_non_null(strstr(e.msg, "does-not-exist.npy"));
}

static void test_npy_write(void **state) {
    (void)state;
    /* Header text must be exactly what numpy writes for v1. */
    int32_t v[6] = {1, -2, 3, -4, 5, 2147483647};
    mopt_array a = {.dtype = MOPT_INT32, .rank = 2, .dims = {3, 2}, .data = v, .nbytes = 24};
    const char *p = tmp_path("w.npy");
    mopt_error e;
    assert_int_equal(mopt_npy_write(p, &a, &e), MOPT_OK);
    uint8_t *buf;
    size_t n;
    assert_int_equal(mopt_file_read_all(p, 0, &buf, &n, &e), MOPT_OK);
    /* numpy.save gives 152 bytes: a 128-byte header (length field 118). */
    assert_int_equal(n, 128 + 24);
    const char *want = "{'descr': '<i4', 'fortran_order': False, 'shape': (3, 2), }";
    assert_memory_equal(buf, "\x93NUMPY\x01\x00\x76\x00", 10);
    assert_memory_equal(buf + 10, want, strlen(want));
    for (size_t i = 10 + strlen(want); i < 127; i++)
        assert_int_equal(buf[i], ' ');
    assert_int_equal(buf[127], '\n');
    assert_int_equal(buf[128], 1);
    assert_int_equal(buf[132], 0xfe);
    assert_int_equal(buf[133], 0xff);
    assert_int_equal(buf[151], 0x7f);
    free(buf);

    /* Round trips for every writable dtype, including rank 1 "(n,)" and rank 0. */
    const mopt_dtype dts[] = {MOPT_FLOAT32, MOPT_INT8, MOPT_UINT8, MOPT_INT16, MOPT_INT64};
    for (size_t k = 0; k < sizeof(dts) / sizeof(dts[0]); k++) {
        uint8_t raw[40];
        for (int i = 0; i < 40; i++)
            raw[i] = (uint8_t)(i * 37 + k);
        size_t es = mopt_dtype_size(dts[k]);
        if (dts[k] == MOPT_FLOAT32) /* avoid NaN bit patterns in the comparison */
            for (int i = 0; i < 5; i++) {
                float f = (float)i * 0.25f - 1.0f;
                memcpy(raw + 4 * i, &f, 4);
            }
        mopt_array w = {
            .dtype = dts[k], .rank = 1, .dims = {(int64_t)(5)}, .data = raw, .nbytes = 5 * es};
        assert_int_equal(mopt_npy_write(p, &w, &e), MOPT_OK);
        mopt_array r;
        assert_int_equal(mopt_npy_read(p, &r, &e), MOPT_OK);
        assert_int_equal(r.dtype, dts[k]);
        assert_int_equal(r.rank, 1);
        assert_int_equal(r.dims[0], 5);
        assert_memory_equal(r.data, raw, 5 * es);
        mopt_array_free(&r);
    }
    float s = 3.5f;
    mopt_array sc = {.dtype = MOPT_FLOAT32, .rank = 0, .data = &s, .nbytes = 4};
    assert_int_equal(mopt_npy_write(p, &sc, &e), MOPT_OK);
    mopt_array r;
    assert_int_equal(mopt_npy_read(p, &r, &e), MOPT_OK);
    assert_int_equal(r.rank, 0);
    assert_true(((float *)r.data)[0] == 3.5f);
    mopt_array_free(&r);

    /* Inconsistent arrays are refused and nothing is written. */
    const char *q = tmp_path("never.npy");
    mopt_array bad = {.dtype = MOPT_FLOAT32, .rank = 1, .dims = {4}, .data = v, .nbytes = 12};
    assert_int_equal(mopt_npy_write(q, &bad, &e), MOPT_ERR_ARG);
    bad.dtype = MOPT_FLOAT16;
    bad.nbytes = 8;
    assert_int_equal(mopt_npy_write(q, &bad, &e), MOPT_ERR_UNSUPPORTED);
    assert_int_not_equal(access(q, F_OK), 0);
    /* Unwritable target: I/O error naming the file. */
    assert_int_equal(mopt_npy_write("/nonexistent-dir/x.npy", &sc, &e), MOPT_ERR_IO);
    assert_non_null(strstr(e.msg, "/nonexistent-dir/x.npy"));
}

/* ---- IDX ---- */

static size_t idx_header(uint8_t *b, uint8_t type, int ndims, const uint32_t *dims) {
    b[0] = 0;
    b[1] = 0;
    b[2] = type;
    b[3] = (uint8_t)ndims;
    for (int i = 0; i < ndims; i++) {
        b[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
        b[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        b[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
        b[7 + 4 * i] = (uint8_t)dims[i];
    }
    return 4 + 4 * (size_t)ndims;
}

/* gzip-compresses data (independent of the reader: zlib's deflate). */
static uint8_t *gzip_bytes(const void *data, size_t n, size_t *out_n) {
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)n) + 64;
    uint8_t *out = malloc(cap);
    assert_non_null(out);
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_n = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

static void test_idx_types(void **state) {
    (void)state;
    uint8_t b[128];
    mopt_array a;
    mopt_error e;

    /* ubyte [2,2,3] */
    uint32_t d3[3] = {2, 2, 3};
    size_t h = idx_header(b, 0x08, 3, d3);
    for (int i = 0; i < 12; i++)
        b[h + i] = (uint8_t)(i * 20);
    const char *p = tmp_path("u8.idx");
    write_bytes(p, b, h + 12);
    assert_int_equal(mopt_idx_read(p, &a, &e), MOPT_OK);
    assert_int_equal(a.dtype, MOPT_UINT8);
    assert_int_equal(a.rank, 3);
    assert_int_equal(a.dims[0], 2);
    assert_int_equal(a.dims[2], 3);
    assert_int_equal(((uint8_t *)a.data)[11], 220);
    mopt_array_free(&a);

    /* Same bytes gzip-compressed, and as two concatenated gzip members. */
    size_t gn;
    uint8_t *gz = gzip_bytes(b, h + 12, &gn);
    p = tmp_path("u8.idx.gz");
    write_bytes(p, gz, gn);
    assert_int_equal(mopt_idx_read(p, &a, &e), MOPT_OK);
    assert_int_equal(a.rank, 3);
    assert_int_equal(((uint8_t *)a.data)[5], 100);
    mopt_array_free(&a);
    free(gz);
    size_t g1, g2;
    uint8_t *m1 = gzip_bytes(b, 10, &g1);
    uint8_t *m2 = gzip_bytes(b + 10, h + 12 - 10, &g2);
    uint8_t *both = malloc(g1 + g2);
    memcpy(both, m1, g1);
    memcpy(both + g1, m2, g2);
    p = tmp_path("multi.gz");
    write_bytes(p, both, g1 + g2);
    assert_int_equal(mopt_idx_read(p, &a, &e), MOPT_OK);
    assert_int_equal(((uint8_t *)a.data)[11], 220);
    mopt_array_free(&a);
    free(m1);
    free(m2);
    free(both);

    /* byte (signed) */
    uint32_t d1[1] = {2};
    h = idx_header(b, 0x09, 1, d1);
    b[h] = 0xff;
    b[h + 1] = 0x05;
    p = tmp_path("i8.idx");
    write_bytes(p, b, h + 2);
    assert_int_equal(mopt_idx_read(p, &a, &e), MOPT_OK);
    assert_int_equal(a.dtype, MOPT_INT8);
    assert_int_equal(((int8_t *)a.data)[0], -1);
    assert_int_equal(((int8_t *)a.data)[1], 5);
    mopt_array_free(&a);

    /* short, big-endian */
    h = idx_header(b, 0x0B, 1, d1);
    memcpy(b + h, "\x01\x02\xff\xfe", 4);
    p = tmp_path("i16.idx");
    write_bytes(p, b, h + 4);
    assert_int_equal(mopt_idx_read(p, &a, &e), MOPT_OK);
    assert_int_equal(a.dtype, MOPT_INT16);
    assert_int_equal(((int16_t *)a.data)[0], 0x0102);
    assert_int_equal(((int16_t *)a.data)[1], -2);
    mopt_array_free(&a);

    /* int, big-endian */
    h = idx_header(b, 0x0C, 1, d1);
    memcpy(b + h, "\x12\x34\x56\x78\xff\xff\xff\xfd", 8);
    p = tmp_path("i32.idx");
    write_bytes(p, b, h + 8);
    assert_int_equal(mopt_idx_read(p, &a, &e), MOPT_OK);
    assert_int_equal(a.dtype, MOPT_INT32);
    assert_int_equal(((int32_t *)a.data)[0], 0x12345678);
    assert_int_equal(((int32_t *)a.data)[1], -3);
    mopt_array_free(&a);

    /* float: 1.5 = 0x3fc00000, -2 = 0xc0000000 */
    h = idx_header(b, 0x0D, 1, d1);
    memcpy(b + h, "\x3f\xc0\x00\x00\xc0\x00\x00\x00", 8);
    p = tmp_path("f32.idx");
    write_bytes(p, b, h + 8);
    assert_int_equal(mopt_idx_read(p, &a, &e), MOPT_OK);
    assert_int_equal(a.dtype, MOPT_FLOAT32);
    assert_true(((float *)a.data)[0] == 1.5f);
    assert_true(((float *)a.data)[1] == -2.0f);
    mopt_array_free(&a);

    /* double: 0.25 = 0x3fd0000000000000, -3 = 0xc008000000000000 -> float32 */
    h = idx_header(b, 0x0E, 1, d1);
    memcpy(b + h, "\x3f\xd0\x00\x00\x00\x00\x00\x00\xc0\x08\x00\x00\x00\x00\x00\x00", 16);
    p = tmp_path("f64.idx");
    write_bytes(p, b, h + 16);
    assert_int_equal(mopt_idx_read(p, &a, &e), MOPT_OK);
    assert_int_equal(a.dtype, MOPT_FLOAT32);
    assert_int_equal(a.nbytes, 8);
    assert_true(((float *)a.data)[0] == 0.25f);
    assert_true(((float *)a.data)[1] == -3.0f);
    mopt_array_free(&a);
}

static void expect_idx_error(const char *name, const void *bytes, size_t n, const char *needle) {
    const char *p = tmp_path(name);
    write_bytes(p, bytes, n);
    mopt_array a;
    mopt_error e;
    mopt_status st = mopt_idx_read(p, &a, &e);
    if (st != MOPT_ERR_BAD_INPUT || !strstr(e.msg, needle) || !strstr(e.msg, name))
        fail_msg("%s: got status %d '%s', want bad input with '%s'", name, st, e.msg, needle);
    assert_null(a.data);
}

static void test_idx_malformed(void **state) {
    (void)state;
    uint8_t b[256];
    memset(b, 0, sizeof(b));
    uint32_t d[3] = {2, 2, 3};
    size_t h = idx_header(b, 0x08, 3, d);
    memset(b + h, 7, 64);

    expect_idx_error("empty.idx", b, 0, "truncated");
    expect_idx_error("tiny.idx", b, 3, "truncated");
    b[1] = 1;
    expect_idx_error("magic.idx", b, h + 12, "not an IDX");
    b[1] = 0;
    b[2] = 0x0A;
    expect_idx_error("type.idx", b, h + 12, "element type 0x0a");
    b[2] = 0x08;
    b[3] = 0;
    expect_idx_error("rank0.idx", b, h + 12, "rank 0");
    b[3] = 9;
    expect_idx_error("rank9.idx", b, 200, "rank 9");
    b[3] = 3;
    expect_idx_error("dims.idx", b, 10, "truncated");
    expect_idx_error("short.idx", b, h + 11, "truncated");
    expect_idx_error("long.idx", b, h + 13, "trailing");

    /* Huge dims: product overflows / exceeds 2 GiB. */
    uint32_t huge[3] = {0xffffffffu, 0xffffffffu, 0xffffffffu};
    uint8_t hb[64] = {0};
    size_t hh = idx_header(hb, 0x08, 3, huge);
    expect_idx_error("huge.idx", hb, hh + 8, "too large");
    uint32_t big[2] = {60000, 10000}; /* 600 MB claimed by a tiny raw file */
    hh = idx_header(hb, 0x08, 2, big);
    expect_idx_error("claims.idx", hb, hh + 8, "truncated");

    /* gzip: a tiny stream claiming 600 MB is refused before allocating. */
    size_t gn;
    uint8_t *gz = gzip_bytes(hb, hh + 8, &gn);
    expect_idx_error("claims.idx.gz", gz, gn, "more than");
    free(gz);

    /* gzip: short payload, extra payload, truncated stream, trailing
     * garbage, corrupt CRC. */
    gz = gzip_bytes(b, h + 11, &gn);
    expect_idx_error("gzshort.gz", gz, gn, "short");
    free(gz);
    gz = gzip_bytes(b, h + 13, &gn);
    expect_idx_error("gzlong.gz", gz, gn, "trailing data");
    free(gz);
    gz = gzip_bytes(b, h + 12, &gn);
    expect_idx_error("gztrunc.gz", gz, gn - 6, "truncated");
    expect_idx_error("gzcut.gz", gz, 12, "truncated"); /* cut inside the deflate data */
    uint8_t *gz2 = malloc(gn + 3);
    memcpy(gz2, gz, gn);
    memcpy(gz2 + gn, "xyz", 3);
    expect_idx_error("gzgarbage.gz", gz2, gn + 3, "trailing");
    memcpy(gz2, gz, gn);
    gz2[gn - 8] ^= 0x55; /* CRC32 in the trailer */
    expect_idx_error("gzcrc.gz", gz2, gn, "corrupt");
    free(gz2);
    free(gz);
    expect_idx_error("gzjunk.gz", "\x1f\x8b\x08\x00junkjunkjunk", 16, "gzip");
}

/* ---- datasets ---- */

/* Writes a raw IDX ubyte image file [n,h,w] with pixel (i,y,x) = (i*7+y*3+x)
 * & 255 and a labels file with label i%10 (or `bad_label` for the last one if
 * >= 0) into folder `dir`, using the standard names for `prefix`. */
static void write_idx_split(const char *dir, const char *prefix, uint32_t n, uint32_t hh,
                            uint32_t ww, uint32_t nlabels, int bad_label) {
    char path[600];
    size_t total = (size_t)n * hh * ww;
    uint8_t *b = malloc(16 + total);
    uint32_t d[3] = {n, hh, ww};
    size_t h = idx_header(b, 0x08, 3, d);
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t y = 0; y < hh; y++)
            for (uint32_t x = 0; x < ww; x++)
                b[h + ((size_t)i * hh + y) * ww + x] = (uint8_t)((i * 7 + y * 3 + x) & 255);
    snprintf(path, sizeof(path), "%s/%s-images-idx3-ubyte", dir, prefix);
    write_bytes(path, b, h + total);
    free(b);

    /* labels as IDX int (0x0C) so out-of-range values are expressible */
    b = malloc(8 + 4 * (size_t)nlabels);
    uint32_t dl[1] = {nlabels};
    h = idx_header(b, 0x0C, 1, dl);
    for (uint32_t i = 0; i < nlabels; i++) {
        int32_t v = (bad_label != 0 && i + 1 == nlabels) ? bad_label : (int32_t)(i % 10);
        uint32_t u = (uint32_t)v;
        b[h + 4 * i] = (uint8_t)(u >> 24);
        b[h + 4 * i + 1] = (uint8_t)(u >> 16);
        b[h + 4 * i + 2] = (uint8_t)(u >> 8);
        b[h + 4 * i + 3] = (uint8_t)u;
    }
    snprintf(path, sizeof(path), "%s/%s-labels-idx1-ubyte", dir, prefix);
    write_bytes(path, b, h + 4 * (size_t)nlabels);
    free(b);
}

static void test_dataset_folder(void **state) {
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/ds", g_dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    write_idx_split(dir, "train", 12, 4, 5, 12, 0);
    write_idx_split(dir, "t10k", 6, 4, 5, 6, 0);

    mopt_dataset d;
    mopt_error e;
    assert_int_equal(mopt_dataset_load(dir, MOPT_SPLIT_TRAIN, MOPT_SCALE_01, 0, &d, &e), MOPT_OK);
    assert_int_equal(d.n, 12);
    assert_int_equal(d.h, 4);
    assert_int_equal(d.w, 5);
    assert_int_equal(d.c, 1);
    assert_int_equal(d.num_classes, 10);
    assert_int_equal(d.labels[11], 1);
    /* sample 3, y 2, x 4: 3*7+2*3+4 = 31 */
    assert_float_equal(d.images[(3 * 4 + 2) * 5 + 4], 31.0f / 255.0f, 1e-7);
    mopt_dataset_free(&d);
    assert_null(d.images);
    mopt_dataset_free(NULL);

    assert_int_equal(mopt_dataset_load(dir, MOPT_SPLIT_TEST, MOPT_SCALE_PM1, 4, &d, &e), MOPT_OK);
    assert_int_equal(d.n, 4);
    assert_int_equal(d.num_classes, 4); /* labels 0..3 */
    assert_float_equal(d.images[(3 * 4 + 2) * 5 + 4], 31.0f / 127.5f - 1.0f, 1e-6);
    assert_float_equal(d.images[0], -1.0f, 0);
    mopt_dataset_free(&d);

    assert_int_equal(mopt_dataset_load(dir, MOPT_SPLIT_TEST, MOPT_SCALE_NONE, 100, &d, &e),
                     MOPT_OK);
    assert_int_equal(d.n, 6);
    assert_float_equal(d.images[(5 * 4 + 3) * 5 + 4], 5 * 7 + 3 * 3 + 4, 0);
    mopt_dataset_free(&d);

    /* "fashion-mnist" honours $MOPT_FASHION_MNIST_DIR. */
    const char *old = getenv("MOPT_FASHION_MNIST_DIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("MOPT_FASHION_MNIST_DIR", dir, 1);
    assert_int_equal(mopt_dataset_load("fashion-mnist", MOPT_SPLIT_TEST, MOPT_SCALE_01, 0, &d, &e),
                     MOPT_OK);
    assert_int_equal(d.n, 6);
    mopt_dataset_free(&d);
    setenv("MOPT_FASHION_MNIST_DIR", tmp_path("nowhere"), 1);
    assert_int_equal(mopt_dataset_load("fashion-mnist", MOPT_SPLIT_TEST, MOPT_SCALE_01, 0, &d, &e),
                     MOPT_ERR_IO);
    assert_non_null(strstr(e.msg, "MOPT_FASHION_MNIST_DIR"));
    if (saved) {
        setenv("MOPT_FASHION_MNIST_DIR", saved, 1);
        free(saved);
    } else {
        unsetenv("MOPT_FASHION_MNIST_DIR");
    }
}

static void test_dataset_errors(void **state) {
    (void)state;
    mopt_dataset d;
    mopt_error e;
    char dir[512];

    /* Count mismatch. */
    snprintf(dir, sizeof(dir), "%s/mismatch", g_dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    write_idx_split(dir, "t10k", 6, 3, 3, 5, 0);
    assert_int_equal(mopt_dataset_load(dir, MOPT_SPLIT_TEST, MOPT_SCALE_01, 0, &d, &e),
                     MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(e.msg, "5 labels"));
    assert_null(d.images);
    /* Missing split. */
    assert_int_equal(mopt_dataset_load(dir, MOPT_SPLIT_TRAIN, MOPT_SCALE_01, 0, &d, &e),
                     MOPT_ERR_IO);
    assert_non_null(strstr(e.msg, "train-images-idx3-ubyte"));

    /* Labels out of range: 256 and -1. */
    snprintf(dir, sizeof(dir), "%s/badlabel", g_dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    write_idx_split(dir, "t10k", 4, 3, 3, 4, 256);
    write_idx_split(dir, "train", 4, 3, 3, 4, -1);
    assert_int_equal(mopt_dataset_load(dir, MOPT_SPLIT_TEST, MOPT_SCALE_01, 0, &d, &e),
                     MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(e.msg, "label 256 of sample 3"));
    assert_int_equal(mopt_dataset_load(dir, MOPT_SPLIT_TRAIN, MOPT_SCALE_01, 0, &d, &e),
                     MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(e.msg, "label -1"));
    /* ...but a limit that stops before the bad label is fine. */
    assert_int_equal(mopt_dataset_load(dir, MOPT_SPLIT_TRAIN, MOPT_SCALE_01, 3, &d, &e), MOPT_OK);
    mopt_dataset_free(&d);

    /* Not a dataset at all. */
    assert_int_equal(
        mopt_dataset_load(tmp_path("missing-dir"), MOPT_SPLIT_TEST, MOPT_SCALE_01, 0, &d, &e),
        MOPT_ERR_IO);
    assert_int_equal(mopt_dataset_load(",x.npy", MOPT_SPLIT_TEST, MOPT_SCALE_01, 0, &d, &e),
                     MOPT_ERR_ARG);
    assert_int_equal(mopt_dataset_load(NULL, MOPT_SPLIT_TEST, MOPT_SCALE_01, 0, &d, &e),
                     MOPT_ERR_ARG);
}

static void test_dataset_npy_pair(void **state) {
    (void)state;
    /* uint8 images [3,2,2,2] (NHWC, c = 2) and int64 labels. */
    uint8_t px[24];
    for (int i = 0; i < 24; i++)
        px[i] = (uint8_t)(i * 10);
    char imgs[600], labs[600], spec[1300];
    snprintf(imgs, sizeof(imgs), "%s/imgs.npy", g_dir);
    snprintf(labs, sizeof(labs), "%s/labs.npy", g_dir);
    write_npy(imgs, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 2, 2), }", px, 24);
    const uint8_t l64[24] = {2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                             0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0};
    write_npy(labs, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", l64, 24);
    snprintf(spec, sizeof(spec), "%s,%s", imgs, labs);
    mopt_dataset d;
    mopt_error e;
    assert_int_equal(mopt_dataset_load(spec, MOPT_SPLIT_TEST, MOPT_SCALE_01, 0, &d, &e), MOPT_OK);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.h, 2);
    assert_int_equal(d.w, 2);
    assert_int_equal(d.c, 2);
    assert_int_equal(d.labels[0], 2);
    assert_int_equal(d.labels[2], 7);
    assert_int_equal(d.num_classes, 8);
    assert_float_equal(d.images[23], 230.0f / 255.0f, 1e-7);
    mopt_dataset_free(&d);

    /* float32 images are taken as they are (already preprocessed). */
    float fx[8] = {0.5f, -0.25f, 3.0f, 0, 1, 2, 3, 4};
    write_npy(imgs, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", fx, 32);
    write_npy(labs, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", "\x01\x00", 2);
    assert_int_equal(mopt_dataset_load(spec, MOPT_SPLIT_TRAIN, MOPT_SCALE_PM1, 0, &d, &e), MOPT_OK);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.c, 1);
    assert_memory_equal(d.images, fx, 32);
    mopt_dataset_free(&d);

    /* Float labels and rank-2 images are refused. */
    write_npy(labs, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", fx, 8);
    assert_int_equal(mopt_dataset_load(spec, MOPT_SPLIT_TEST, MOPT_SCALE_01, 0, &d, &e),
                     MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(e.msg, "labels must be integers"));
    write_npy(imgs, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }", fx, 32);
    assert_int_equal(mopt_dataset_load(spec, MOPT_SPLIT_TEST, MOPT_SCALE_01, 0, &d, &e),
                     MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(e.msg, "rank"));
}

/* The committed subset; expected values computed with numpy from Debian's
 * files (see tests/data/make_subset.py). */
static void test_committed_subset(void **state) {
    (void)state;
    const char *dir = MOPT_SOURCE_DIR "/tests/data/fashion-mnist-subset";
    mopt_dataset d;
    mopt_error e;
    assert_int_equal(mopt_dataset_load(dir, MOPT_SPLIT_TEST, MOPT_SCALE_NONE, 0, &d, &e), MOPT_OK);
    assert_int_equal(d.n, 500);
    assert_int_equal(d.h, 28);
    assert_int_equal(d.w, 28);
    assert_int_equal(d.c, 1);
    assert_int_equal(d.num_classes, 10);
    const int32_t first[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    assert_memory_equal(d.labels, first, sizeof(first));
    int hist[10] = {0};
    for (int64_t i = 0; i < d.n; i++)
        hist[d.labels[i]]++;
    const int want_hist[10] = {55, 52, 65, 46, 57, 39, 47, 47, 44, 48};
    assert_memory_equal(hist, want_hist, sizeof(hist));
    double s0 = 0, s499 = 0, all = 0;
    for (int i = 0; i < 784; i++) {
        s0 += d.images[i];
        s499 += d.images[499 * 784 + i];
    }
    for (int64_t i = 0; i < d.n * 784; i++)
        all += d.images[i];
    assert_true(s0 == 33456.0);
    assert_true(s499 == 70958.0);
    assert_true(all == 29494551.0);
    assert_true(d.images[14 * 28 + 12] == 98.0f);
    mopt_dataset_free(&d);

    assert_int_equal(mopt_dataset_load(dir, MOPT_SPLIT_TRAIN, MOPT_SCALE_01, 0, &d, &e), MOPT_OK);
    assert_int_equal(d.n, 1000);
    const int32_t firstr[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
    assert_memory_equal(d.labels, firstr, sizeof(firstr));
    double sr = 0;
    for (int i = 0; i < 784; i++)
        sr += d.images[i];
    assert_float_equal(sr, 76247.0 / 255.0, 1e-3);
    assert_float_equal(d.images[(999 * 28 + 14) * 28 + 10], 226.0f / 255.0f, 1e-7);
    mopt_dataset_free(&d);

    assert_int_equal(mopt_dataset_load(dir, MOPT_SPLIT_TEST, MOPT_SCALE_01, 7, &d, &e), MOPT_OK);
    assert_int_equal(d.n, 7);
    assert_int_equal(d.num_classes, 10); /* labels 9 2 1 1 6 1 4: max 9 */
    mopt_dataset_free(&d);
}

/* The full Debian dataset, when installed. */
static void test_debian_dataset(void **state) {
    (void)state;
    const char *dir = "/usr/share/datasets/fashion-mnist";
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        skip();
        return;
    }
    mopt_dataset d;
    mopt_error e;
    assert_int_equal(mopt_dataset_load(dir, MOPT_SPLIT_TEST, MOPT_SCALE_01, 0, &d, &e), MOPT_OK);
    assert_int_equal(d.n, 10000);
    assert_int_equal(d.num_classes, 10);
    const int32_t first[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    assert_memory_equal(d.labels, first, sizeof(first));
    mopt_dataset_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npy_read_float32), cmocka_unit_test(test_npy_read_variants),
        cmocka_unit_test(test_npy_malformed),    cmocka_unit_test(test_npy_write),
        cmocka_unit_test(test_idx_types),        cmocka_unit_test(test_idx_malformed),
        cmocka_unit_test(test_dataset_folder),   cmocka_unit_test(test_dataset_errors),
        cmocka_unit_test(test_dataset_npy_pair), cmocka_unit_test(test_committed_subset),
        cmocka_unit_test(test_debian_dataset),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
