/* util.c - file helpers (whole-file read, atomic write), aligned memory,
 * compressed size, clock. */
#include "mopt/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

mopt_status mopt_file_read_all(const char *path, size_t max_size, uint8_t **out, size_t *out_size,
                               mopt_error *err) {
    *out = NULL;
    *out_size = 0;
    if (max_size == 0) max_size = (size_t)1 << 31;
    FILE *f = fopen(path, "rb");
    if (!f) return mopt_error_set(err, MOPT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return mopt_error_set(err, MOPT_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max_size) {
        fclose(f);
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: file too large (%lld bytes, limit %zu)",
                              path, (long long)st.st_size, max_size);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) {
        fclose(f);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, size);
    }
    size_t got = size ? fread(buf, 1, size, f) : 0;
    int rerr = ferror(f);
    fclose(f);
    if (got != size || rerr) {
        free(buf);
        return mopt_error_set(err, MOPT_ERR_IO, "%s: read failed", path);
    }
    *out = buf;
    *out_size = size;
    return MOPT_OK;
}

mopt_status mopt_file_write_atomic(const char *path, const void *data, size_t size,
                                   mopt_error *err) {
    size_t n = strlen(path);
    char *tmp = malloc(n + 32);
    if (!tmp) return mopt_error_set(err, MOPT_ERR_NOMEM, "%s: out of memory", path);
    /* Same folder as the target so rename() is atomic (same file system). */
    snprintf(tmp, n + 32, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        mopt_status st = mopt_error_set(err, MOPT_ERR_IO, "%s: cannot create temporary file: %s",
                                        path, strerror(errno));
        free(tmp);
        return st;
    }
    const uint8_t *p = data;
    size_t left = size;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            free(tmp);
            return mopt_error_set(err, MOPT_ERR_IO, "%s: write failed: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    /* mkstemp creates 0600; give the file the usual permissions. */
    mode_t mask = umask(0);
    umask(mask);
    (void)fchmod(fd, 0666 & ~mask);
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return mopt_error_set(err, MOPT_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return mopt_error_set(err, MOPT_ERR_IO, "%s: cannot rename temporary file: %s", path,
                              strerror(e));
    }
    free(tmp);
    return MOPT_OK;
}

void *mopt_aligned_alloc(size_t size) {
    if (size == 0) return NULL;
    void *p = NULL;
    /* Round up so the allocation is a multiple of the alignment (C11 rule
     * for aligned_alloc; posix_memalign does not need it but it is cheap). */
    size_t rounded = (size + 63) & ~(size_t)63;
    if (rounded < size) return NULL;
    if (posix_memalign(&p, 64, rounded) != 0) return NULL;
    return p;
}

void mopt_aligned_free(void *p) { free(p); }

int64_t mopt_gzip_size(const void *data, size_t size) {
    uLongf bound = compressBound((uLong)size);
    Bytef *buf = malloc(bound ? bound : 1);
    if (!buf) return -1;
    uLongf dst = bound;
    int rc = compress2(buf, &dst, (const Bytef *)data, (uLong)size, 9);
    free(buf);
    if (rc != Z_OK) return -1;
    return (int64_t)dst;
}

double mopt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
