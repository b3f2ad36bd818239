/* Unit tests for src/core: status messages, graph container, deep copy,
 * atomic file writes, gzip size. */
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

#include "mopt/mopt.h"

static void test_error_one_line(void **state) {
    (void)state;
    mopt_error e;
    mopt_error_clear(&e);
    assert_int_equal(e.status, MOPT_OK);
    assert_int_equal(mopt_error_set(&e, MOPT_ERR_BAD_INPUT, "tensor %d '%s': bad", 3, "a\nb"),
                     MOPT_ERR_BAD_INPUT);
    assert_string_equal(e.msg, "tensor 3 'a b': bad");
    mopt_error_prefix(&e, "%s", "m.tflite");
    assert_string_equal(e.msg, "m.tflite: tensor 3 'a b': bad");
    /* A NULL error is allowed everywhere. */
    assert_int_equal(mopt_error_set(NULL, MOPT_ERR_IO, "x"), MOPT_ERR_IO);
    mopt_error_prefix(NULL, "x");
    /* Over-long messages are truncated, still NUL-terminated. */
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    mopt_error_set(&e, MOPT_ERR_ARG, "%s", big);
    assert_int_equal(strlen(e.msg), MOPT_ERROR_MSG_MAX - 1);
    mopt_error_prefix(&e, "%s", big);
    assert_int_equal(strlen(e.msg), MOPT_ERROR_MSG_MAX - 1);
}

static void test_exit_codes(void **state) {
    (void)state;
    assert_int_equal(mopt_status_exit_code(MOPT_OK), 0);
    assert_int_equal(mopt_status_exit_code(MOPT_ERR_ARG), 1);
    assert_int_equal(mopt_status_exit_code(MOPT_ERR_BAD_INPUT), 2);
    assert_int_equal(mopt_status_exit_code(MOPT_ERR_UNSUPPORTED), 2);
    assert_int_equal(mopt_status_exit_code(MOPT_ERR_IO), 2);
    assert_int_equal(mopt_status_exit_code(MOPT_ERR_INTERNAL), 3);
    assert_int_equal(mopt_status_exit_code(MOPT_ERR_NOMEM), 3);
    assert_string_equal(mopt_status_str(MOPT_ERR_UNSUPPORTED), "unsupported");
}

static void test_dtype_and_ops(void **state) {
    (void)state;
    assert_int_equal(mopt_dtype_size(MOPT_FLOAT32), 4);
    assert_int_equal(mopt_dtype_size(MOPT_FLOAT16), 2);
    assert_int_equal(mopt_dtype_size(MOPT_INT64), 8);
    assert_int_equal(mopt_dtype_size(MOPT_INT8), 1);
    assert_int_equal(mopt_dtype_size(MOPT_STRING), 0);
    assert_int_equal(mopt_dtype_size((mopt_dtype)42), 0);
    assert_string_equal(mopt_dtype_name(MOPT_INT16), "int16");
    assert_int_equal(mopt_dtype_from_name("int8"), MOPT_INT8);
    assert_int_equal(mopt_dtype_from_name("int4"), -1);
    assert_string_equal(mopt_op_name(MOPT_OP_DEPTHWISE_CONV_2D), "DEPTHWISE_CONV_2D");
    assert_string_equal(mopt_op_name(117), "HARD_SWISH");
    assert_null(mopt_op_name(126)); /* BATCH_MATMUL: not in the op set */
    assert_false(mopt_op_supported(32));
    assert_true(mopt_op_supported(MOPT_OP_QUANTIZE));
}

static mopt_graph *small_graph(void) {
    mopt_graph *g = mopt_graph_create();
    assert_non_null(g);
    int32_t in_dims[4] = {1, 4, 4, 2}, w_dims[4] = {3, 1, 1, 2}, b_dims[1] = {3};
    int32_t out_dims[4] = {1, 4, 4, 3};
    int x = mopt_graph_add_tensor(g, "x", MOPT_FLOAT32, 4, in_dims);
    int w = mopt_graph_add_tensor(g, "w", MOPT_FLOAT32, 4, w_dims);
    int b = mopt_graph_add_tensor(g, "b", MOPT_FLOAT32, 1, b_dims);
    int y = mopt_graph_add_tensor(g, "y", MOPT_FLOAT32, 4, out_dims);
    assert_int_equal(x, 0);
    assert_int_equal(y, 3);
    float wd[6] = {1, 0, 0, 2, 0, 0}, bd[3] = {0.5f, 0, 0};
    assert_int_equal(mopt_graph_set_tensor_data(g, w, wd, sizeof wd), MOPT_OK);
    assert_int_equal(mopt_graph_set_tensor_data(g, b, bd, sizeof bd), MOPT_OK);
    /* Wrong size is refused. */
    assert_int_equal(mopt_graph_set_tensor_data(g, b, bd, 8), MOPT_ERR_ARG);
    int32_t ins[3] = {x, w, b}, outs[1] = {y};
    int op = mopt_graph_add_op(g, MOPT_OP_CONV_2D, ins, 3, outs, 1);
    assert_int_equal(op, 0);
    assert_int_equal(g->ops[0].p.conv.dilation_w, 1);
    assert_int_equal(g->ops[0].version, 1);
    int32_t gi[1] = {x}, go[1] = {y};
    assert_int_equal(mopt_graph_set_io(g, gi, 1, go, 1), MOPT_OK);
    float scale[3] = {0.1f, 0.2f, 0.3f};
    int64_t zp[3] = {0, 0, 0};
    assert_int_equal(mopt_tensor_set_quant(&g->tensors[w], 3, scale, zp, 0), MOPT_OK);
    g->description = strdup("test");
    return g;
}

static void test_graph_build_and_query(void **state) {
    (void)state;
    mopt_graph *g = small_graph();
    assert_int_equal(g->n_buffers, 3); /* sentinel + w + b */
    assert_int_equal(g->buffers[0].size, 0);
    assert_null(mopt_tensor_data(g, 0));
    assert_false(mopt_tensor_is_constant(g, 0));
    assert_true(mopt_tensor_is_constant(g, 1));
    assert_int_equal(mopt_tensor_numel(&g->tensors[0]), 32);
    assert_int_equal(mopt_tensor_nbytes(&g->tensors[3]), 48 * 4);
    assert_int_equal(mopt_graph_param_count(g), 9);
    /* Buffers are 16-byte aligned. */
    assert_int_equal(((uintptr_t)g->buffers[1].data) % 16, 0);
    const float *w = mopt_tensor_data(g, 1);
    assert_true(w[3] == 2.0f);
    mopt_tensor t = g->tensors[0];
    t.dims[1] = -1;
    assert_int_equal(mopt_tensor_numel(&t), -1);
    t.dims[1] = 1 << 20;
    t.dims[2] = 1 << 20;
    assert_int_equal(mopt_tensor_numel(&t), -1); /* overflow past 2^31-1 */
    assert_int_equal(mopt_graph_add_tensor(g, "bad", MOPT_FLOAT32, 7, t.dims), -1);
    mopt_graph_free(g);
    mopt_graph_free(NULL);
}

static void test_graph_clone_is_deep(void **state) {
    (void)state;
    mopt_graph *g = small_graph();
    mopt_graph *c = mopt_graph_clone(g);
    assert_non_null(c);
    assert_int_equal(c->n_tensors, g->n_tensors);
    assert_int_equal(c->n_ops, g->n_ops);
    assert_int_equal(c->n_buffers, g->n_buffers);
    assert_string_equal(c->description, "test");
    assert_ptr_not_equal(c->buffers[1].data, g->buffers[1].data);
    assert_memory_equal(c->buffers[1].data, g->buffers[1].data, g->buffers[1].size);
    assert_int_equal(c->tensors[1].quant.n, 3);
    assert_true(c->tensors[1].quant.scale[2] == 0.3f);
    assert_ptr_not_equal(c->tensors[1].quant.scale, g->tensors[1].quant.scale);
    assert_int_equal(c->ops[0].inputs[2], 2);
    /* Editing the copy leaves the original alone. */
    ((float *)c->buffers[1].data)[0] = 7.0f;
    assert_true(((float *)g->buffers[1].data)[0] == 1.0f);
    mopt_graph_free(g);
    mopt_graph_free(c);
    assert_null(mopt_graph_clone(NULL));
}

static void test_atomic_write(void **state) {
    (void)state;
    char dir[] = "/tmp/mopt_test_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/out.bin", dir);
    mopt_error e;
    const char data[] = "hello";
    assert_int_equal(mopt_file_write_atomic(path, data, 5, &e), MOPT_OK);
    uint8_t *back = NULL;
    size_t n = 0;
    assert_int_equal(mopt_file_read_all(path, 0, &back, &n, &e), MOPT_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(back, data, 5);
    free(back);
    /* Refusal of too-large files. */
    assert_int_equal(mopt_file_read_all(path, 4, &back, &n, &e), MOPT_ERR_BAD_INPUT);
    assert_non_null(strstr(e.msg, "out.bin"));
    /* A folder that does not exist: error, no file. */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/nope/out.bin", dir);
    assert_int_equal(mopt_file_write_atomic(bad, data, 5, &e), MOPT_ERR_IO);
    assert_non_null(strstr(e.msg, "nope/out.bin"));
    assert_int_equal(mopt_file_read_all(bad, 0, &back, &n, &e), MOPT_ERR_IO);
    unlink(path);
    rmdir(dir);
}

static void test_gzip_size(void **state) {
    (void)state;
    static uint8_t zeros[100000];
    int64_t z = mopt_gzip_size(zeros, sizeof zeros);
    assert_true(z > 0 && z < 1000);
    uint8_t noise[4096];
    uint32_t s = 12345;
    for (size_t i = 0; i < sizeof noise; i++) {
        s = s * 1664525u + 1013904223u;
        noise[i] = (uint8_t)(s >> 24);
    }
    assert_true(mopt_gzip_size(noise, sizeof noise) > 4000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_one_line),      cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_dtype_and_ops),       cmocka_unit_test(test_graph_build_and_query),
        cmocka_unit_test(test_graph_clone_is_deep), cmocka_unit_test(test_atomic_write),
        cmocka_unit_test(test_gzip_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
