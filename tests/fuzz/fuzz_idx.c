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
#include <zlib.h>

#include "fuzz_data_common.h"

static char g_in[4200], g_gz[4200], g_out[4200];

static void cleanup(void) {
    unlink(g_in);
    unlink(g_gz);
    unlink(g_out);
    rmdir(g_dir);
}

static void setup_once(void) {
    if (g_dir[0])
        return;
    fuzz_make_dir("idx", cleanup);
    snprintf(g_in, sizeof g_in, "%s/in.idx", g_dir);
    snprintf(g_gz, sizeof g_gz, "%s/in.idx.gz", g_dir);
    snprintf(g_out, sizeof g_out, "%s/out.npy", g_dir);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup_once();
    fuzz_write_file(g_in, data, size);
    mopt_error err;
    mopt_array a;
    mopt_status st = mopt_idx_read(g_in, &a, &err);
    if (st != MOPT_OK)
        fuzz_check_refusal(st, &err, g_in, &a);
    else
        fuzz_check_array(&a, 1, false);

    /* Differential: the gzip path agrees with the raw path. */
    if (!(size >= 2 && data[0] == 0x1f && data[1] == 0x8b)) {
        size_t gz_size = 0;
        uint8_t *gz = gzip_bytes(data, size, &gz_size);
        fuzz_write_file(g_gz, gz, gz_size);
        free(gz);
        mopt_array g;
        mopt_status gst = mopt_idx_read(g_gz, &g, &err);
        if (gst != MOPT_OK)
            fuzz_check_refusal(gst, &err, g_gz, &g);
        if ((st == MOPT_OK) != (gst == MOPT_OK) || (st == MOPT_OK && !fuzz_same_array(&a, &g))) {
            fprintf(stderr, "raw and gzip reads disagree (raw %d, gzip %d: %s)\n", (int)st,
                    (int)gst, gst ? err.msg : "ok");
            abort();
        }
        mopt_array_free(&g);
    }

    if (st == MOPT_OK)
        fuzz_check_npy_round_trip(&a, g_out);
    mopt_array_free(&a);
    return 0;
}
