/* Shared pieces of the data-reader fuzz targets (fuzz_npy.c, fuzz_idx.c).
 *
 * The readers take paths, so each input is written to scratch files in a
 * private temporary folder; the checks below are the contract every reader
 * keeps on any input: refuse with a one-line error that starts with the
 * path and ':', and leave nothing behind; or accept with a consistent
 * array. Violations abort(), which libFuzzer reports.
 *
 * Header-only (static functions): each fuzz target is one translation unit.
 */
#ifndef MOPT_FUZZ_DATA_COMMON_H
#define MOPT_FUZZ_DATA_COMMON_H

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mopt/data.h"

static char g_dir[4096];

/* Scratch folder base: $MOPT_FUZZ_TMPDIR, else /dev/shm (memory: the NPY
 * writer fsyncs, which on a disk cuts the speed a hundredfold), else
 * $TMPDIR, else /tmp. */
static const char *fuzz_scratch_base(void) {
    const char *d = getenv("MOPT_FUZZ_TMPDIR");
    if (d && *d)
        return d;
    if (access("/dev/shm", W_OK | X_OK) == 0)
        return "/dev/shm";
    d = getenv("TMPDIR");
    return d && *d ? d : "/tmp";
}

/* One private folder per process (parallel fuzzer jobs never share files),
 * named after the target; `cleanup` (registered with atexit) removes it. */
static void fuzz_make_dir(const char *target, void (*cleanup)(void)) {
    snprintf(g_dir, sizeof g_dir, "%s/mopt-fuzz-%s.XXXXXX", fuzz_scratch_base(), target);
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        abort();
    }
    atexit(cleanup);
}

static void fuzz_write_file(const char *path, const uint8_t *data, size_t size) {
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

/* A refusal: the right status, one line starting with "path:", no data. */
static void fuzz_check_refusal(mopt_status st, const mopt_error *err, const char *path,
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

/* An accepted array: rank in [min_rank, 8], a dtype the reader may produce,
 * dims product times dtype size == nbytes, every byte readable. */
static void fuzz_check_array(const mopt_array *a, int min_rank, bool allow_int64) {
    if (a->rank < min_rank || a->rank > 8 || a->data == NULL) {
        fprintf(stderr, "bad array: rank %d, data %p\n", a->rank, a->data);
        abort();
    }
    if (a->dtype != MOPT_FLOAT32 && a->dtype != MOPT_INT8 && a->dtype != MOPT_UINT8 &&
        a->dtype != MOPT_INT16 && a->dtype != MOPT_INT32 &&
        !(allow_int64 && a->dtype == MOPT_INT64)) {
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

static bool fuzz_same_array(const mopt_array *a, const mopt_array *b) {
    return a->dtype == b->dtype && a->rank == b->rank && a->nbytes == b->nbytes &&
           memcmp(a->dims, b->dims, sizeof(a->dims[0]) * (size_t)a->rank) == 0 &&
           memcmp(a->data, b->data, a->nbytes) == 0;
}

/* What the reader gave, mopt_npy_write writes and mopt_npy_read gives back
 * unchanged (scratch file `path`). */
static void fuzz_check_npy_round_trip(const mopt_array *a, const char *path) {
    mopt_error err;
    if (mopt_npy_write(path, a, &err) != MOPT_OK) {
        fprintf(stderr, "accepted array not writable as NPY: %s\n", err.msg);
        abort();
    }
    mopt_array b;
    mopt_status st = mopt_npy_read(path, &b, &err);
    if (st != MOPT_OK || !fuzz_same_array(a, &b)) {
        fprintf(stderr, "NPY round trip changed the array (%s)\n", st ? err.msg : "ok");
        abort();
    }
    mopt_array_free(&b);
}

#endif
