/* libFuzzer target for the .tflite reader and writer.
 *
 * Any input: mopt_tflite_read_mem must return without a sanitizer report and
 * either refuse it (bad input / unsupported, one non-empty line) or give a
 * graph. An accepted graph goes through mopt_graph_validate, must be
 * writable, the written bytes must be readable again, and writing that
 * re-read graph must reproduce them byte for byte (read and write lose
 * nothing the writer emits). Violations abort(), which libFuzzer reports.
 *
 * Build and run: scripts/fuzz.sh (clang, -DMOPT_FUZZ=ON -DMOPT_SANITIZE=ON).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/graph.h"
#include "mopt/tflite.h"

static void check_error(mopt_status st, const mopt_error *err, const char *name)
{
    if (st != MOPT_ERR_BAD_INPUT && st != MOPT_ERR_UNSUPPORTED) {
        fprintf(stderr, "unexpected status %d: %s\n", (int)st, err->msg);
        abort();
    }
    size_t n = strlen(name);
    if (err->status != st || strncmp(err->msg, name, n) != 0 || err->msg[n] != ':' ||
        strlen(err->msg) <= n + 2 || strchr(err->msg, '\n') != NULL) {
        fprintf(stderr, "bad error message: '%s'\n", err->msg);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mopt_error err;
    mopt_graph *g = NULL;
    mopt_status st = mopt_tflite_read_mem(data, size, "fuzz.tflite", &g, &err);
    if (st != MOPT_OK) {
        check_error(st, &err, "fuzz.tflite");
        if (g != NULL)
            abort();
        return 0;
    }
    (void)mopt_graph_validate(g, &err);

    uint8_t *out = NULL, *out2 = NULL;
    size_t n = 0, n2 = 0;
    st = mopt_tflite_write_mem(g, &out, &n, &err);
    if (st != MOPT_OK) {
        fprintf(stderr, "accepted graph not writable: %s\n", err.msg);
        abort();
    }
    mopt_graph *h = NULL;
    st = mopt_tflite_read_mem(out, n, "rewritten", &h, &err);
    if (st != MOPT_OK) {
        fprintf(stderr, "rewritten model refused: %s\n", err.msg);
        abort();
    }
    st = mopt_tflite_write_mem(h, &out2, &n2, &err);
    if (st != MOPT_OK || n2 != n || memcmp(out, out2, n) != 0) {
        fprintf(stderr, "second write differs (%zu vs %zu bytes)\n", n, n2);
        abort();
    }
    free(out);
    free(out2);
    mopt_graph_free(h);
    mopt_graph_free(g);
    return 0;
}
