/* libFuzzer target for the NPY reader (src/io/npy.c).
 *
 * mopt_npy_read takes a path, so each input is written to one scratch file
 * (truncated and rewritten per iteration) in a private temporary folder.
 * Any input must return without a sanitizer report and either be refused
 * (bad input / unsupported, one line starting with the path and ':') or give
 * a consistent array: rank 0..8, non-negative dims whose product times the
 * dtype size is nbytes, non-NULL data. An accepted array is written with
 * mopt_npy_write and read again, which must give the same dtype, shape and
 * bytes. Violations abort(), which libFuzzer reports.
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

#include "mopt/data.h"

static char g_dir[4096];
static char g_in[4200], g_out[4200];

static void cleanup(void) {
    unlink(g_in);
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
    snprintf(g_dir, sizeof g_dir, "%s/mopt-fuzz-npy.XXXXXX", scratch_base());
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        abort();
    }
    snprintf(g_in, sizeof g_in, "%s/in.npy", g_dir);
    snprintf(g_out, sizeof g_out, "%s/out.npy", g_dir);
    atexit(cleanup);
}

static void write_input(const uint8_t *data, size_t size) {
    int fd = open(g_in, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror(g_in);
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

static void check_error(mopt_status st, const mopt_error *err, const char *path) {
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
}

static void check_array(const mopt_array *a) {
    if (a->rank < 0 || a->rank > 8 || a->data == NULL) {
        fprintf(stderr, "bad array: rank %d, data %p\n", a->rank, a->data);
        abort();
    }
    int64_t n = mopt_array_numel(a);
    size_t es = mopt_dtype_size(a->dtype);
    if (n < 0 || es == 0 || (size_t)n * es != a->nbytes) {
        fprintf(stderr, "array of %lld elements of %zu bytes holds %zu bytes\n", (long long)n, es,
                a->nbytes);
        abort();
    }
    /* Touch every byte: ASan catches a short allocation. */
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < a->nbytes; i++)
        sink ^= ((const uint8_t *)a->data)[i];
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup_once();
    write_input(data, size);
    mopt_error err;
    mopt_array a;
    mopt_status st = mopt_npy_read(g_in, &a, &err);
    if (st != MOPT_OK) {
        check_error(st, &err, g_in);
        if (a.data != NULL || a.nbytes != 0) {
            fprintf(stderr, "refused input left data behind\n");
            abort();
        }
        return 0;
    }
    check_array(&a);
    if (a.dtype != MOPT_FLOAT32 && a.dtype != MOPT_INT8 && a.dtype != MOPT_UINT8 &&
        a.dtype != MOPT_INT16 && a.dtype != MOPT_INT32 && a.dtype != MOPT_INT64) {
        fprintf(stderr, "unexpected dtype %d\n", (int)a.dtype);
        abort();
    }
    /* Round trip: what the reader gives, the writer writes and the reader
     * gives back unchanged. */
    st = mopt_npy_write(g_out, &a, &err);
    if (st != MOPT_OK) {
        fprintf(stderr, "accepted array not writable: %s\n", err.msg);
        abort();
    }
    mopt_array b;
    st = mopt_npy_read(g_out, &b, &err);
    if (st != MOPT_OK) {
        fprintf(stderr, "rewritten array refused: %s\n", err.msg);
        abort();
    }
    if (b.dtype != a.dtype || b.rank != a.rank || b.nbytes != a.nbytes ||
        memcmp(b.dims, a.dims, sizeof(a.dims[0]) * (size_t)a.rank) != 0 ||
        memcmp(b.data, a.data, a.nbytes) != 0) {
        fprintf(stderr, "round trip changed the array\n");
        abort();
    }
    mopt_array_free(&b);
    mopt_array_free(&a);
    if (a.data != NULL)
        abort();
    return 0;
}
