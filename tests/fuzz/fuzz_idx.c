/* libFuzzer target for the IDX reader (src/io/idx.c), raw and gzip.
 *
 * mopt_idx_read takes a path, so each input is written to a scratch file
 * (rewritten per iteration) in a private temporary folder. Any input must
 * return without a sanitizer report and either be refused (bad input /
 * unsupported, one line starting with the path and ':') or give a
 * consistent array (rank 1..8, dims product times dtype size == nbytes,
 * non-NULL data), which must survive an NPY write and read unchanged.
 *
 * Differential check: an input that is not itself gzip is also gzip-
 * compressed and read again. The gzip path must agree with the raw path:
 * both refuse, or both accept with the same dtype, shape and bytes.
 * Violations abort(), which libFuzzer reports.
 *
 * Build and run: scripts/fuzz.sh (clang, -DMOPT_FUZZ=ON -DMOPT_SANITIZE=ON).
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "mopt/data.h"

static char g_dir[4096];
static char g_in[4200], g_gz[4200], g_out[4200];

static void cleanup(void) {
    unlink(g_in);
    unlink(g_gz);
    unlink(g_out);
    rmdir(g_dir);
}

/* Scratch folder base: $MOPT_FUZZ_TMPDIR, else /dev/shm (memory: the NPY
 * writer fsyncs, which on a disk cuts the speed a hundredfold), else
 * $TMPDIR, else /tmp. */
static const char *scratch_base(void) {
    const char *d = getenv("MOPT_FUZZ_TMPDIR");
    if (d && *d)
        return d;
    if (access("/dev/shm", W_OK | X_OK) == 0)
        return "/dev/shm";
    d = getenv("TMPDIR");
    return d && *d ? d : "/tmp";
}

/* One private folder per process: parallel fuzzer jobs never share files. */
static void setup_once(void) {
    if (g_dir[0])
        return;
    snprintf(g_dir, sizeof g_dir, "%s/mopt-fuzz-idx.XXXXXX", scratch_base());
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        abort();
    }
    snprintf(g_in, sizeof g_in, "%s/in.idx", g_dir);
    snprintf(g_gz, sizeof g_gz, "%s/in.idx.gz", g_dir);
    snprintf(g_out, sizeof g_out, "%s/out.npy", g_dir);
    atexit(cleanup);
}

static void write_file(const char *path, const uint8_t *data, size_t size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror(path);
        abort();
    }
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) {
            perror("write");
            abort();
        }
        off += (size_t)w;
    }
    close(fd);
}

/* gzip-wraps data (one member); returns malloc'ed bytes. */
static uint8_t *gzip_bytes(const uint8_t *data, size_t size, size_t *out_size) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    uLong cap = deflateBound(&zs, (uLong)size) + 64;
    uint8_t *out = malloc(cap);
    if (!out)
        abort();
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)size;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
        abort();
    *out_size = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

static void check_error(mopt_status st, const mopt_error *err, const char *path,
                        const mopt_array *a) {
    if (st != MOPT_ERR_BAD_INPUT && st != MOPT_ERR_UNSUPPORTED) {
        fprintf(stderr, "unexpected status %d: %s\n", (int)st, err->msg);
        abort();
    }
    size_t n = strlen(path);
    if (err->status != st || strncmp(err->msg, path, n) != 0 || err->msg[n] != ':' ||
        strlen(err->msg) <= n + 2 || strchr(err->msg, '\n') != NULL) {
        fprintf(stderr, "bad error message: '%s'\n", err->msg);
        abort();
    }
    if (a->data != NULL || a->nbytes != 0) {
        fprintf(stderr, "refused input left data behind\n");
        abort();
    }
}

static void check_array(const mopt_array *a) {
    if (a->rank < 1 || a->rank > 8 || a->data == NULL) {
        fprintf(stderr, "bad array: rank %d, data %p\n", a->rank, a->data);
        abort();
    }
    if (a->dtype != MOPT_FLOAT32 && a->dtype != MOPT_INT8 && a->dtype != MOPT_UINT8 &&
        a->dtype != MOPT_INT16 && a->dtype != MOPT_INT32) {
        fprintf(stderr, "unexpected dtype %d\n", (int)a->dtype);
        abort();
    }
    int64_t n = mopt_array_numel(a);
    size_t es = mopt_dtype_size(a->dtype);
    if (n < 0 || es == 0 || (size_t)n * es != a->nbytes) {
        fprintf(stderr, "array of %lld elements of %zu bytes holds %zu bytes\n", (long long)n, es,
                a->nbytes);
        abort();
    }
    volatile uint8_t sink = 0; /* ASan catches a short allocation */
    for (size_t i = 0; i < a->nbytes; i++)
        sink ^= ((const uint8_t *)a->data)[i];
    (void)sink;
}

static int same_array(const mopt_array *a, const mopt_array *b) {
    return a->dtype == b->dtype && a->rank == b->rank && a->nbytes == b->nbytes &&
           memcmp(a->dims, b->dims, sizeof(a->dims[0]) * (size_t)a->rank) == 0 &&
           memcmp(a->data, b->data, a->nbytes) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup_once();
    write_file(g_in, data, size);
    mopt_error err;
    mopt_array a;
    mopt_status st = mopt_idx_read(g_in, &a, &err);
    if (st != MOPT_OK)
        check_error(st, &err, g_in, &a);
    else
        check_array(&a);

    if (!(size >= 2 && data[0] == 0x1f && data[1] == 0x8b)) {
        size_t gz_size = 0;
        uint8_t *gz = gzip_bytes(data, size, &gz_size);
        write_file(g_gz, gz, gz_size);
        free(gz);
        mopt_array g;
        mopt_status gst = mopt_idx_read(g_gz, &g, &err);
        if (gst != MOPT_OK)
            check_error(gst, &err, g_gz, &g);
        if ((st == MOPT_OK) != (gst == MOPT_OK) || (st == MOPT_OK && !same_array(&a, &g))) {
            fprintf(stderr, "raw and gzip reads disagree (raw %d, gzip %d: %s)\n", (int)st,
                    (int)gst, gst ? err.msg : "ok");
            abort();
        }
        mopt_array_free(&g);
    }

    if (st == MOPT_OK) {
        st = mopt_npy_write(g_out, &a, &err);
        if (st != MOPT_OK) {
            fprintf(stderr, "accepted array not writable as NPY: %s\n", err.msg);
            abort();
        }
        mopt_array b;
        st = mopt_npy_read(g_out, &b, &err);
        if (st != MOPT_OK || !same_array(&a, &b)) {
            fprintf(stderr, "NPY round trip changed the array (%s)\n", st ? err.msg : "ok");
            abort();
        }
        mopt_array_free(&b);
    }
    mopt_array_free(&a);
    return 0;
}
