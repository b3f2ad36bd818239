/* cmd_inspect.c - `mopt inspect MODEL [--json]`: operators, tensors,
 * quantization, sparsity, sizes and the activation arena of a model. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- per-tensor statistics of constant data ---- */

typedef struct tensor_stats {
    bool valid; /* constant with data mopt can read */
    int64_t numel;
    int64_t zeros;  /* elements equal to zero (or to the zero point) */
    int64_t unique; /* distinct values */
} tensor_stats;

/* Zero point that applies to flat element i (per-axis quantization uses the
 * zero point of the element's channel along quant.axis). */
static int64_t zero_point_at(const mopt_tensor *t, int64_t i, int64_t inner) {
    const mopt_quant *q = &t->quant;
    if (q->n <= 0 || !q->zero_point)
        return 0;
    if (q->n == 1)
        return q->zero_point[0];
    int64_t ch = (i / inner) % q->n;
    return q->zero_point[ch];
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Element i as a 64-bit key for counting distinct values; floats by bit
 * pattern with -0.0 folded onto 0.0 (they are the same weight). */
static uint64_t value_key(const void *data, mopt_dtype dt, int64_t i) {
    switch (dt) {
    case MOPT_FLOAT32: {
        float f = ((const float *)data)[i];
        if (f == 0.0f)
            f = 0.0f;
        uint32_t u;
        memcpy(&u, &f, 4);
        return u;
    }
    case MOPT_FLOAT16: {
        uint16_t u = ((const uint16_t *)data)[i];
        return (u & 0x7fff) == 0 ? 0 : u;
    }
    case MOPT_INT8: return (uint64_t)(int64_t)((const int8_t *)data)[i];
    case MOPT_UINT8:
    case MOPT_BOOL: return ((const uint8_t *)data)[i];
    case MOPT_INT16: return (uint64_t)(int64_t)((const int16_t *)data)[i];
    case MOPT_INT32: return (uint64_t)(int64_t)((const int32_t *)data)[i];
    case MOPT_INT64: return (uint64_t)((const int64_t *)data)[i];
    default: return 0;
    }
}

static bool is_zero(const mopt_tensor *t, const void *data, int64_t i, int64_t inner) {
    switch (t->dtype) {
    case MOPT_FLOAT32: return ((const float *)data)[i] == 0.0f;
    case MOPT_FLOAT16: return (((const uint16_t *)data)[i] & 0x7fff) == 0;
    case MOPT_BOOL: return ((const uint8_t *)data)[i] == 0;
    default:
        /* Integer: a quantized zero is q == zero_point, otherwise 0. */
        return (int64_t)value_key(data, t->dtype, i) == zero_point_at(t, i, inner);
    }
}

static tensor_stats compute_stats(const mopt_graph *g, int ti) {
    tensor_stats s = {0};
    const mopt_tensor *t = &g->tensors[ti];
    const void *data = mopt_tensor_data(g, ti);
    int64_t n = mopt_tensor_numel(t);
    size_t es = mopt_dtype_size(t->dtype);
    if (!data || n < 0 || es == 0)
        return s;
    if ((uint64_t)n * es > g->buffers[t->buffer].size)
        return s; /* cannot happen after validation; stay safe anyway */
    /* Elements per step along the quantized axis. */
    int64_t inner = 1;
    if (t->quant.n > 1 && t->quant.axis >= 0 && t->quant.axis < t->rank)
        for (int d = t->quant.axis + 1; d < t->rank; d++)
            inner *= t->dims[d] > 0 ? t->dims[d] : 1;
    s.valid = true;
    s.numel = n;
    for (int64_t i = 0; i < n; i++)
        s.zeros += is_zero(t, data, i, inner);

    if (es == 1) { /* int8 / uint8 / bool: a 256-entry table */
        bool seen[256] = {false};
        for (int64_t i = 0; i < n; i++)
            seen[((const uint8_t *)data)[i]] = true;
        for (int k = 0; k < 256; k++)
            s.unique += seen[k];
        return s;
    }
    uint64_t *keys = malloc((size_t)(n ? n : 1) * sizeof(uint64_t));
    if (!keys) {
        s.unique = -1;
        return s;
    }
    for (int64_t i = 0; i < n; i++)
        keys[i] = value_key(data, t->dtype, i);
    qsort(keys, (size_t)n, sizeof(uint64_t), cmp_u64);
    for (int64_t i = 0; i < n; i++)
        s.unique += i == 0 || keys[i] != keys[i - 1];
    free(keys);
    return s;
}

/* ---- operator parameters, as a list usable for text and JSON ---- */

typedef enum { P_INT, P_STR, P_BOOL, P_FLOAT, P_INTS } param_kind;

typedef struct op_param {
    const char *key;
    param_kind kind;
    int64_t i;
    const char *s;
    double f;
    int n;
    const int32_t *ints;
} op_param;

#define MAX_PARAMS 12

static int add_int(op_param *p, int n, const char *k, int64_t v) {
    p[n] = (op_param){.key = k, .kind = P_INT, .i = v};
    return n + 1;
}
static int add_str(op_param *p, int n, const char *k, const char *v) {
    p[n] = (op_param){.key = k, .kind = P_STR, .s = v};
    return n + 1;
}

static const char *padding_name(mopt_padding pd) {
    return pd == MOPT_PAD_SAME ? "SAME" : "VALID";
}

static int op_params(const mopt_op *op, op_param *p) {
    int n = 0;
    switch (op->type) {
    case MOPT_OP_CONV_2D:
    case MOPT_OP_DEPTHWISE_CONV_2D:
        n = add_str(p, n, "padding", padding_name(op->p.conv.padding));
        n = add_int(p, n, "stride_h", op->p.conv.stride_h);
        n = add_int(p, n, "stride_w", op->p.conv.stride_w);
        n = add_int(p, n, "dilation_h", op->p.conv.dilation_h);
        n = add_int(p, n, "dilation_w", op->p.conv.dilation_w);
        if (op->type == MOPT_OP_DEPTHWISE_CONV_2D)
            n = add_int(p, n, "depth_multiplier", op->p.conv.depth_multiplier);
        n = add_str(p, n, "activation", mopt_activation_name(op->p.conv.act));
        break;
    case MOPT_OP_AVERAGE_POOL_2D:
    case MOPT_OP_MAX_POOL_2D:
        n = add_str(p, n, "padding", padding_name(op->p.pool.padding));
        n = add_int(p, n, "filter_h", op->p.pool.filter_h);
        n = add_int(p, n, "filter_w", op->p.pool.filter_w);
        n = add_int(p, n, "stride_h", op->p.pool.stride_h);
        n = add_int(p, n, "stride_w", op->p.pool.stride_w);
        n = add_str(p, n, "activation", mopt_activation_name(op->p.pool.act));
        break;
    case MOPT_OP_FULLY_CONNECTED:
        n = add_str(p, n, "activation", mopt_activation_name(op->p.fc.act));
        p[n++] = (op_param){.key = "keep_num_dims", .kind = P_BOOL, .i = op->p.fc.keep_num_dims};
        if (op->p.fc.weights_format != 0)
            n = add_int(p, n, "weights_format", op->p.fc.weights_format);
        break;
    case MOPT_OP_ADD:
    case MOPT_OP_SUB:
    case MOPT_OP_MUL:
        n = add_str(p, n, "activation", mopt_activation_name(op->p.binary.act));
        break;
    case MOPT_OP_SOFTMAX:
        p[n++] = (op_param){.key = "beta", .kind = P_FLOAT, .f = op->p.softmax.beta};
        break;
    case MOPT_OP_CONCATENATION:
        n = add_int(p, n, "axis", op->p.concat.axis);
        n = add_str(p, n, "activation", mopt_activation_name(op->p.concat.act));
        break;
    case MOPT_OP_RESHAPE:
        if (op->p.reshape.n_new_shape >= 0 && op->p.reshape.n_new_shape <= MOPT_MAX_DIMS)
            p[n++] = (op_param){.key = "new_shape",
                                .kind = P_INTS,
                                .n = op->p.reshape.n_new_shape,
                                .ints = op->p.reshape.new_shape};
        break;
    case MOPT_OP_MEAN:
        p[n++] = (op_param){.key = "keep_dims", .kind = P_BOOL, .i = op->p.reducer.keep_dims};
        break;
    default: break;
    }
    return n;
}

/* "stride=2x2 pad=SAME act=RELU"-style summary of the parameters. */
static void params_text(const mopt_op *op, char *buf, size_t cap) {
    buf[0] = '\0';
    size_t len = 0;
#define APPEND(...)                                                     \
    do {                                                                \
        if (len < cap)                                                  \
            len += (size_t)snprintf(buf + len, cap - len, __VA_ARGS__); \
    } while (0)
    switch (op->type) {
    case MOPT_OP_CONV_2D:
    case MOPT_OP_DEPTHWISE_CONV_2D: {
        const mopt_conv_params *c = &op->p.conv;
        APPEND("stride=%dx%d pad=%s", (int)c->stride_h, (int)c->stride_w, padding_name(c->padding));
        if (c->dilation_h != 1 || c->dilation_w != 1)
            APPEND(" dilation=%dx%d", (int)c->dilation_h, (int)c->dilation_w);
        if (op->type == MOPT_OP_DEPTHWISE_CONV_2D)
            APPEND(" mult=%d", (int)c->depth_multiplier);
        if (c->act != MOPT_ACT_NONE)
            APPEND(" act=%s", mopt_activation_name(c->act));
        break;
    }
    case MOPT_OP_AVERAGE_POOL_2D:
    case MOPT_OP_MAX_POOL_2D: {
        const mopt_pool_params *c = &op->p.pool;
        APPEND("filter=%dx%d stride=%dx%d pad=%s", (int)c->filter_h, (int)c->filter_w,
               (int)c->stride_h, (int)c->stride_w, padding_name(c->padding));
        if (c->act != MOPT_ACT_NONE)
            APPEND(" act=%s", mopt_activation_name(c->act));
        break;
    }
    default: {
        op_param p[MAX_PARAMS];
        int n = op_params(op, p);
        for (int k = 0; k < n; k++) {
            const op_param *q = &p[k];
            if (q->kind == P_STR && strcmp(q->key, "activation") == 0) {
                if (strcmp(q->s, "NONE") != 0)
                    APPEND("%sact=%s", len ? " " : "", q->s);
                continue;
            }
            APPEND("%s%s=", len ? " " : "", q->key);
            switch (q->kind) {
            case P_INT: APPEND("%" PRId64, q->i); break;
            case P_STR: APPEND("%s", q->s); break;
            case P_BOOL: APPEND("%s", q->i ? "true" : "false"); break;
            case P_FLOAT: APPEND("%g", q->f); break;
            case P_INTS:
                APPEND("[");
                for (int d = 0; d < q->n; d++)
                    APPEND("%s%d", d ? "," : "", (int)q->ints[d]);
                APPEND("]");
                break;
            }
        }
        break;
    }
    }
#undef APPEND
}

static void params_json(cli_json *j, const mopt_op *op) {
    op_param p[MAX_PARAMS];
    int n = op_params(op, p);
    cli_json_object_begin(j, "params");
    for (int k = 0; k < n; k++) {
        switch (p[k].kind) {
        case P_INT: cli_json_int(j, p[k].key, p[k].i); break;
        case P_STR: cli_json_string(j, p[k].key, p[k].s); break;
        case P_BOOL: cli_json_bool(j, p[k].key, p[k].i != 0); break;
        case P_FLOAT: cli_json_double(j, p[k].key, p[k].f); break;
        case P_INTS:
            cli_json_array_begin(j, p[k].key, true);
            for (int d = 0; d < p[k].n; d++)
                cli_json_int(j, NULL, p[k].ints[d]);
            cli_json_array_end(j);
            break;
        }
    }
    cli_json_object_end(j);
}

static const char *op_name(int type, char *buf, size_t cap) {
    const char *n = mopt_op_name(type);
    if (n)
        return n;
    snprintf(buf, cap, "op%d", type);
    return buf;
}

static void index_list(const int32_t *idx, int n, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = '\0';
    for (int k = 0; k < n && len < cap; k++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%d", k ? "," : "", (int)idx[k]);
}

static void quant_text(const mopt_quant *q, char *buf, size_t cap) {
    if (q->n <= 0) {
        snprintf(buf, cap, "-");
        return;
    }
    if (q->n == 1) {
        snprintf(buf, cap, "scale=%.6g zp=%" PRId64, q->scale[0], q->zero_point[0]);
        return;
    }
    float lo = q->scale[0], hi = q->scale[0];
    for (int k = 1; k < q->n; k++) {
        lo = fminf(lo, q->scale[k]);
        hi = fmaxf(hi, q->scale[k]);
    }
    snprintf(buf, cap, "per-axis(axis=%d, %d) scale=%.4g..%.4g zp=%" PRId64 "...", (int)q->axis,
             q->n, lo, hi, q->zero_point[0]);
}

static void quant_json(cli_json *j, const mopt_quant *q) {
    if (q->n <= 0) {
        cli_json_null(j, "quantization");
        return;
    }
    cli_json_object_begin(j, "quantization");
    cli_json_array_begin(j, "scale", true);
    for (int k = 0; k < q->n; k++)
        cli_json_double(j, NULL, q->scale[k]);
    cli_json_array_end(j);
    cli_json_array_begin(j, "zero_point", true);
    for (int k = 0; k < q->n; k++)
        cli_json_int(j, NULL, q->zero_point[k]);
    cli_json_array_end(j);
    cli_json_int(j, "quantized_dimension", q->axis);
    cli_json_object_end(j);
}

/* ---- the command ---- */

static const cli_option opts[] = {{"json", 0, false}};
enum { OPT_JSON };

static void print_io_line(const mopt_graph *g, const char *label, const int32_t *idx, int n) {
    printf("  %s:", label);
    for (int k = 0; k < n; k++) {
        const mopt_tensor *t = &g->tensors[idx[k]];
        char shape[128], nm[256];
        printf("%s %d '%s' %s %s", k ? "," : "", (int)idx[k],
               cli_printable(t->name, 200, nm, sizeof(nm)), mopt_dtype_name(t->dtype),
               cli_tensor_shape_str(t, shape, sizeof(shape)));
    }
    printf("\n");
}

static void print_human(const cli_model *m, const mopt_interp *it, const char *interp_msg,
                        int64_t gz, const tensor_stats *stats) {
    const mopt_graph *g = m->graph;
    printf("model: %s\n", m->path);
    if (g->description && g->description[0]) {
        char desc[256];
        printf("  description: %s\n", cli_printable(g->description, 200, desc, sizeof(desc)));
    }
    printf("  size: %zu bytes (%.1f KiB), gzip: ", m->file_size, (double)m->file_size / 1024.0);
    if (gz >= 0)
        printf("%" PRId64 " bytes (%.1f KiB)\n", gz, (double)gz / 1024.0);
    else
        printf("n/a\n");
    printf("  parameters: %" PRId64 "\n", mopt_graph_param_count(g));
    if (it)
        printf("  arena: %zu bytes (%.1f KiB; %zu without reuse)\n", mopt_interp_arena_bytes(it),
               (double)mopt_interp_arena_bytes(it) / 1024.0, mopt_interp_naive_bytes(it));
    else
        printf("  arena: n/a (%s)\n", interp_msg);
    print_io_line(g, "inputs", g->inputs, g->n_inputs);
    print_io_line(g, "outputs", g->outputs, g->n_outputs);

    printf("\noperators (%d):\n", g->n_ops);
    static const char *const oh[] = {"#", "op", "inputs", "outputs", "params", "kernel"};
    cli_table ot;
    if (!cli_table_init(&ot, it ? 6 : 5, oh, "rllll"))
        return;
    for (int i = 0; i < g->n_ops; i++) {
        const mopt_op *op = &g->ops[i];
        char idx[16], nb[24], in[256], out[256], par[256];
        snprintf(idx, sizeof(idx), "%d", i);
        index_list(op->inputs, op->n_inputs, in, sizeof(in));
        index_list(op->outputs, op->n_outputs, out, sizeof(out));
        params_text(op, par, sizeof(par));
        const char *kn = it ? mopt_interp_kernel_name(it, i) : NULL;
        const char *row[] = {idx, op_name(op->type, nb, sizeof(nb)), in, out, par, kn ? kn : "-"};
        cli_table_add(&ot, row);
    }
    cli_table_print(&ot, stdout, "  ");
    cli_table_free(&ot);

    printf("\ntensors (%d):\n", g->n_tensors);
    static const char *const th[] = {"#",        "name",   "shape",       "dtype",
                                     "sparsity", "unique", "quantization"};
    cli_table tt;
    if (!cli_table_init(&tt, 7, th, "rlllrrl"))
        return;
    for (int i = 0; i < g->n_tensors; i++) {
        const mopt_tensor *t = &g->tensors[i];
        char idx[16], nm[64], shape[128], sp[32], un[32], q[160];
        snprintf(idx, sizeof(idx), "%d", i);
        cli_tensor_shape_str(t, shape, sizeof(shape));
        if (stats[i].valid) {
            snprintf(sp, sizeof(sp), "%.1f%%",
                     stats[i].numel ? 100.0 * (double)stats[i].zeros / (double)stats[i].numel
                                    : 0.0);
            if (stats[i].unique >= 0)
                snprintf(un, sizeof(un), "%" PRId64, stats[i].unique);
            else
                snprintf(un, sizeof(un), "?");
        } else {
            snprintf(sp, sizeof(sp), "-");
            snprintf(un, sizeof(un), "-");
        }
        quant_text(&t->quant, q, sizeof(q));
        const char *name = cli_printable(t->name, 48, nm, sizeof(nm));
        const char *row[] = {idx, name, shape, mopt_dtype_name(t->dtype), sp, un, q};
        cli_table_add(&tt, row);
    }
    cli_table_print(&tt, stdout, "  ");
    cli_table_free(&tt);
    printf("\n(sparsity and unique values are shown for constant tensors only)\n");
}

static void print_json(const cli_model *m, const mopt_interp *it, const char *interp_msg,
                       int64_t gz, const tensor_stats *stats) {
    const mopt_graph *g = m->graph;
    cli_json j;
    cli_json_init(&j, stdout);
    cli_json_object_begin(&j, NULL);
    cli_json_string(&j, "file", m->path);
    if (g->description)
        cli_json_string(&j, "description", g->description);
    else
        cli_json_null(&j, "description");
    cli_json_int(&j, "size_bytes", (int64_t)m->file_size);
    if (gz >= 0)
        cli_json_int(&j, "gzip_bytes", gz);
    else
        cli_json_null(&j, "gzip_bytes");
    if (it) {
        cli_json_int(&j, "arena_bytes", (int64_t)mopt_interp_arena_bytes(it));
        cli_json_int(&j, "arena_naive_bytes", (int64_t)mopt_interp_naive_bytes(it));
        cli_json_null(&j, "arena_error");
    } else {
        cli_json_null(&j, "arena_bytes");
        cli_json_null(&j, "arena_naive_bytes");
        cli_json_string(&j, "arena_error", interp_msg);
    }
    cli_json_int(&j, "param_count", mopt_graph_param_count(g));
    cli_json_array_begin(&j, "inputs", true);
    for (int k = 0; k < g->n_inputs; k++)
        cli_json_int(&j, NULL, g->inputs[k]);
    cli_json_array_end(&j);
    cli_json_array_begin(&j, "outputs", true);
    for (int k = 0; k < g->n_outputs; k++)
        cli_json_int(&j, NULL, g->outputs[k]);
    cli_json_array_end(&j);

    cli_json_array_begin(&j, "operators", false);
    for (int i = 0; i < g->n_ops; i++) {
        const mopt_op *op = &g->ops[i];
        char nb[24];
        cli_json_object_begin(&j, NULL);
        cli_json_int(&j, "index", i);
        cli_json_string(&j, "op", op_name(op->type, nb, sizeof(nb)));
        cli_json_int(&j, "version", op->version);
        cli_json_array_begin(&j, "inputs", true);
        for (int k = 0; k < op->n_inputs; k++)
            cli_json_int(&j, NULL, op->inputs[k]);
        cli_json_array_end(&j);
        cli_json_array_begin(&j, "outputs", true);
        for (int k = 0; k < op->n_outputs; k++)
            cli_json_int(&j, NULL, op->outputs[k]);
        cli_json_array_end(&j);
        params_json(&j, op);
        const char *kn = it ? mopt_interp_kernel_name(it, i) : NULL;
        if (kn)
            cli_json_string(&j, "kernel", kn);
        else
            cli_json_null(&j, "kernel");
        cli_json_object_end(&j);
    }
    cli_json_array_end(&j);

    cli_json_array_begin(&j, "tensors", false);
    for (int i = 0; i < g->n_tensors; i++) {
        const mopt_tensor *t = &g->tensors[i];
        cli_json_object_begin(&j, NULL);
        cli_json_int(&j, "index", i);
        cli_json_string(&j, "name", t->name);
        cli_json_array_begin(&j, "shape", true);
        for (int d = 0; d < t->rank; d++)
            cli_json_int(&j, NULL, t->dims[d]);
        cli_json_array_end(&j);
        cli_json_string(&j, "dtype", mopt_dtype_name(t->dtype));
        cli_json_bool(&j, "is_constant", mopt_tensor_is_constant(g, i));
        cli_json_int(&j, "buffer", t->buffer);
        if (stats[i].valid) {
            cli_json_double(&j, "sparsity",
                            stats[i].numel ? (double)stats[i].zeros / (double)stats[i].numel : 0.0);
            if (stats[i].unique >= 0)
                cli_json_int(&j, "unique_values", stats[i].unique);
            else
                cli_json_null(&j, "unique_values");
        } else {
            cli_json_null(&j, "sparsity");
            cli_json_null(&j, "unique_values");
        }
        quant_json(&j, &t->quant);
        cli_json_object_end(&j);
    }
    cli_json_array_end(&j);
    cli_json_object_end(&j);
    cli_json_finish(&j);
}

static int inspect_main(int argc, char **argv) {
    cli_parser p;
    cli_parser_init(&p, "inspect", argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])));
    const char *path = NULL, *arg;
    bool json = false;
    int r;
    while ((r = cli_next(&p, &arg)) != CLI_END) {
        switch (r) {
        case CLI_HELP: return cli_print_help(&cli_cmd_inspect);
        case CLI_BAD: return 1;
        case CLI_POSITIONAL:
            if (path)
                return cli_usage_error("inspect", "unexpected argument '%s'", arg);
            path = arg;
            break;
        case OPT_JSON: json = true; break;
        default: return cli_usage_error("inspect", "internal: unhandled option");
        }
    }
    if (!path)
        return cli_usage_error("inspect", "missing MODEL");

    cli_model m;
    int rc = cli_model_load(path, true, &m);
    if (rc)
        return rc;
    const mopt_graph *g = m.graph;
    int64_t gz = mopt_gzip_size(m.file_data, m.file_size);

    /* The arena size needs an interpreter; a model the runtime cannot run
     * (an unsupported dtype combination, say) is still worth inspecting. */
    mopt_interp *it = NULL;
    mopt_error err;
    mopt_error_clear(&err);
    if (mopt_interp_create(g, NULL, &it, &err) != MOPT_OK)
        it = NULL;

    tensor_stats *stats = calloc((size_t)(g->n_tensors ? g->n_tensors : 1), sizeof(*stats));
    if (!stats) {
        mopt_interp_free(it);
        cli_model_free(&m);
        return cli_error(MOPT_ERR_NOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < g->n_tensors; i++)
        stats[i] = compute_stats(g, i);

    if (json)
        print_json(&m, it, err.msg, gz, stats);
    else
        print_human(&m, it, err.msg, gz, stats);

    free(stats);
    mopt_interp_free(it);
    cli_model_free(&m);
    return 0;
}

const cli_command cli_cmd_inspect = {
    "inspect",
    "show operators, tensors, quantization, sparsity, sizes and arena of a model",
    "usage: mopt inspect MODEL [--json]\n"
    "\n"
    "Prints the operators (index, type, inputs, outputs, parameters, chosen kernel),\n"
    "the tensors (shape, dtype, quantization; for constants the sparsity, i.e. the\n"
    "fraction of zeros - exact 0.0 for float, q == zero_point for quantized - and\n"
    "the number of distinct values), the parameter count, the file size and its\n"
    "zlib level-9 compressed size, and the activation arena mopt's runtime plans.\n"
    "\n"
    "options:\n"
    "  --json    machine-readable output (size_bytes, gzip_bytes, arena_bytes,\n"
    "            param_count, operators[], tensors[])\n",
    inspect_main,
};
