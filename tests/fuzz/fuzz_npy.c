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
#include "fuzz_data_common.h"

static char g_in[4200], g_out[4200];

static void cleanup(void) {
    unlink(g_in);
    unlink(g_out);
    rmdir(g_dir);
}

static void setup_once(void) {
    if (g_dir[0])
        return;
    fuzz_make_dir("npy", cleanup);
    snprintf(g_in, sizeof g_in, "%s/in.npy", g_dir);
    snprintf(g_out, sizeof g_out, "%s/out.npy", g_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup_once();
    fuzz_write_file(g_in, data, size);
    mopt_error err;
    mopt_array a;
    mopt_status st = mopt_npy_read(g_in, &a, &err);
    if (st != MOPT_OK) {
        fuzz_check_refusal(st, &err, g_in, &a);
        return 0;
    }
    fuzz_check_array(&a, 0, true);
    fuzz_check_npy_round_trip(&a, g_out);
    mopt_array_free(&a);
    if (a.data != NULL)
        abort();
    return 0;
}
