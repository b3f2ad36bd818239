/* interp.c - the plan-then-run interpreter (see mopt/runtime.h).
 *
 * create: validate -> pick a kernel per op -> prepare each op in order;
 *         ops whose inputs are all constant (e.g. DEQUANTIZE of float16
 *         weights) are evaluated right away into interpreter-owned memory
 *         and their outputs become constants for later prepares (so conv
 *         weights behind a DEQUANTIZE are packed once) -> plan one arena for
 *         the remaining activations and kernel scratch -> bind pointers.
 * invoke: runs the remaining ops; no allocation.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/util.h"
#include "ops/ops.h"
#include "runtime/interp_internal.h"
#include "runtime/kernel.h"
#include "runtime/planner.h"

#include <unistd.h>

struct mopt_interp {
    const mopt_graph *g;
    int num_threads;
    mopt_rounding rounding;
    const mopt_isa *isa;
    const mopt_kernel **kern; /* per op */
    mopt_kernel_plan *plans;  /* per op */
    bool *folded;             /* per op */
    void **scratch;           /* per op, in the arena (NULL if none) */
    void **data;              /* per tensor */
    void **owned;             /* folded outputs (interpreter-owned) */
    int n_owned;
    int *slot; /* per tensor: planner buffer index or -1 */
    mopt_plan_buf *bufs;
    int n_bufs;
    int *scratch_buf; /* per op: planner buffer index or -1 */
    unsigned char *arena;
    size_t arena_bytes, naive_bytes;
    size_t *guard_off; /* arena offsets of output guards */
    int n_guards;
};

mopt_interp_options mopt_interp_default_options(void) {
    mopt_interp_options o;
    memset(&o, 0, sizeof o);
    o.num_threads = 0;
    o.rounding = MOPT_ROUND_DOUBLE;
    return o;
}

static void *aligned64(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    if (bytes > SIZE_MAX - 64) return NULL;
    bytes = (bytes + 63) & ~(size_t)63;
    return posix_memalign(&p, 64, bytes) == 0 ? p : NULL;
}

void mopt_interp_free(mopt_interp *it) {
    if (!it) return;
    if (it->plans && it->kern)
        for (int i = 0; i < it->g->n_ops; i++)
            if (it->kern[i] && it->kern[i]->free_state) it->kern[i]->free_state(it->plans[i].state);
    for (int i = 0; i < it->n_owned; i++) free(it->owned[i]);
    free(it->owned);
    free(it->kern);
    free(it->plans);
    free(it->folded);
    free(it->scratch);
    free(it->data);
    free(it->slot);
    free(it->bufs);
    free(it->scratch_buf);
    free(it->arena);
    free(it->guard_off);
    free(it);
}

static mopt_kernel_ctx make_ctx(const mopt_interp *it, int i) {
    mopt_kernel_ctx c;
    c.g = it->g;
    c.op = &it->g->ops[i];
    c.op_index = i;
    c.data = it->data;
    c.num_threads = it->num_threads;
    c.rounding = it->rounding;
    c.isa = it->isa;
    return c;
}

static mopt_status no_kernel(const mopt_graph *g, int i, mopt_error *err) {
    const mopt_op *op = &g->ops[i];
    char types[256];
    size_t pos = 0;
    types[0] = '\0';
    for (int k = 0; k < op->n_inputs && pos < sizeof types; k++) {
        const char *n =
            op->inputs[k] < 0 ? "none" : mopt_dtype_name(g->tensors[op->inputs[k]].dtype);
        int w = snprintf(types + pos, sizeof types - pos, "%s%s", k ? ", " : "", n);
        if (w < 0) break;
        pos += (size_t)w;
    }
    return mopt_error_set(err, MOPT_ERR_UNSUPPORTED,
                          "operator %d (%s): no kernel for inputs (%s) -> %s (supported: float32, "
                          "int8, int16x8 and hybrid int8-weight kernels)",
                          i, mopt_op_name(op->type), types,
                          mopt_dtype_name(g->tensors[op->outputs[0]].dtype));
}

/* Evaluates op i now into interpreter-owned memory (all inputs constant). */
static mopt_status fold_op(mopt_interp *it, int i, mopt_error *err) {
    const mopt_op *op = &it->g->ops[i];
    int y = op->outputs[0];
    int64_t nb = mopt_tensor_nbytes(&it->g->tensors[y]);
    void *mem = aligned64((size_t)nb);
    void *scratch = it->plans[i].scratch_bytes ? aligned64(it->plans[i].scratch_bytes) : NULL;
    if (!mem || (it->plans[i].scratch_bytes && !scratch)) {
        free(mem);
        free(scratch);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "operator %d (%s): out of memory", i,
                              mopt_op_name(op->type));
    }
    it->owned[it->n_owned++] = mem;
    it->data[y] = mem;
    mopt_kernel_ctx c = make_ctx(it, i);
    mopt_status st = it->kern[i]->eval(&c, it->plans[i].state, scratch, err);
    free(scratch);
    if (st) return st;
    /* The state is not needed any more. */
    if (it->kern[i]->free_state) it->kern[i]->free_state(it->plans[i].state);
    it->plans[i].state = NULL;
    it->folded[i] = true;
    return MOPT_OK;
}

static int find_root(const int *alias, int t) {
    while (alias[t] != t) t = alias[t];
    return t;
}

/* Plans the arena for everything not constant or folded. */
static mopt_status plan_memory(mopt_interp *it, mopt_error *err) {
    const mopt_graph *g = it->g;
    int nt = g->n_tensors, no = g->n_ops;
    int last_step = no > 0 ? no - 1 : 0;
    int *alias = malloc(sizeof *alias * (size_t)(nt ? nt : 1));
    int *first = malloc(sizeof *first * (size_t)(nt ? nt : 1));
    int *last = malloc(sizeof *last * (size_t)(nt ? nt : 1));
    bool *guard = calloc((size_t)(nt ? nt : 1), sizeof *guard);
    it->slot = malloc(sizeof *it->slot * (size_t)(nt ? nt : 1));
    it->scratch_buf = malloc(sizeof *it->scratch_buf * (size_t)(no ? no : 1));
    it->bufs = malloc(sizeof *it->bufs * (size_t)(nt + no + 1));
    it->guard_off = malloc(sizeof *it->guard_off * (size_t)(g->n_outputs + 1));
    mopt_status st = MOPT_OK;
    if (!alias || !first || !last || !guard || !it->slot || !it->scratch_buf || !it->bufs ||
        !it->guard_off) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "interpreter: out of memory planning the arena");
        goto done;
    }
    for (int t = 0; t < nt; t++) {
        alias[t] = t;
        first[t] = INT32_MAX;
        last[t] = -1;
        it->slot[t] = -1;
    }
#define TOUCH(t, step)                                                                             \
    do {                                                                                           \
        if (!it->data[t]) {                                                                        \
            if ((step) < first[t]) first[t] = (step);                                              \
            if ((step) > last[t]) last[t] = (step);                                                \
        }                                                                                          \
    } while (0)
    /* Graph inputs and outputs live for the whole run: callers may invoke
     * repeatedly after writing inputs once, and the guard bytes after each
     * output (checked by tests) must never be legitimately reused. */
    for (int i = 0; i < g->n_inputs; i++) {
        TOUCH(g->inputs[i], 0);
        TOUCH(g->inputs[i], last_step);
    }
    for (int i = 0; i < no; i++) {
        if (it->folded[i]) continue;
        const mopt_op *op = &g->ops[i];
        for (int k = 0; k < op->n_inputs; k++)
            if (op->inputs[k] >= 0) TOUCH(op->inputs[k], i);
        for (int k = 0; k < op->n_outputs; k++) TOUCH(op->outputs[k], i);
        if ((it->kern[i]->flags & MOPT_KERNEL_ALIAS_IO) && !it->data[op->inputs[0]])
            alias[op->outputs[0]] = find_root(alias, op->inputs[0]);
    }
    for (int i = 0; i < g->n_outputs; i++) {
        int t = g->outputs[i];
        TOUCH(t, 0);
        TOUCH(t, last_step);
        if (!it->data[t]) guard[find_root(alias, t)] = true;
    }
#undef TOUCH
    /* One buffer per alias group, lifetime = union of its members. */
    int nb = 0;
    for (int t = 0; t < nt; t++) {
        if (it->data[t] || last[t] < 0 || alias[t] != t) continue;
        int64_t bytes = mopt_tensor_nbytes(&g->tensors[t]);
        it->slot[t] = nb;
        it->bufs[nb].size = (size_t)bytes + (guard[t] ? MOPT_GUARD_BYTES : 0);
        it->bufs[nb].first = first[t];
        it->bufs[nb].last = last[t];
        it->naive_bytes += (size_t)bytes;
        nb++;
    }
    for (int t = 0; t < nt; t++) {
        if (it->data[t] || last[t] < 0 || alias[t] == t) continue;
        int r = find_root(alias, t);
        mopt_plan_buf *b = &it->bufs[it->slot[r]];
        if (first[t] < b->first) b->first = first[t];
        if (last[t] > b->last) b->last = last[t];
        it->slot[t] = it->slot[r];
        it->naive_bytes += (size_t)mopt_tensor_nbytes(&g->tensors[t]);
    }
    for (int i = 0; i < no; i++) {
        it->scratch_buf[i] = -1;
        if (it->folded[i] || it->plans[i].scratch_bytes == 0) continue;
        it->scratch_buf[i] = nb;
        it->bufs[nb++] = (mopt_plan_buf){it->plans[i].scratch_bytes, i, i, 0};
    }
    it->n_bufs = nb;
    if (mopt_plan_arena(it->bufs, nb, &it->arena_bytes) != MOPT_OK) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "interpreter: out of memory planning the arena");
        goto done;
    }
    it->arena = aligned64(it->arena_bytes);
    if (!it->arena) {
        st = mopt_error_set(err, MOPT_ERR_NOMEM, "interpreter: cannot allocate a %zu-byte arena",
                            it->arena_bytes);
        goto done;
    }
    memset(it->arena, 0, it->arena_bytes);
    for (int t = 0; t < nt; t++)
        if (it->slot[t] >= 0) it->data[t] = it->arena + it->bufs[it->slot[t]].offset;
    for (int i = 0; i < no; i++)
        if (it->scratch_buf[i] >= 0)
            it->scratch[i] = it->arena + it->bufs[it->scratch_buf[i]].offset;
    for (int t = 0; t < nt; t++) {
        if (!guard[t] || it->slot[t] < 0) continue;
        size_t off = it->bufs[it->slot[t]].offset + (size_t)mopt_tensor_nbytes(&g->tensors[t]);
        memset(it->arena + off, MOPT_GUARD_BYTE, MOPT_GUARD_BYTES);
        it->guard_off[it->n_guards++] = off;
    }
done:
    free(alias);
    free(first);
    free(last);
    free(guard);
    return st;
}

mopt_status mopt_interp_create_isa(const mopt_graph *g, const mopt_interp_options *opts,
                                   const mopt_isa *isa, mopt_interp **out, mopt_error *err) {
    if (!out) return mopt_error_set(err, MOPT_ERR_ARG, "mopt_interp_create: out is NULL");
    *out = NULL;
    mopt_status st = mopt_graph_validate(g, err);
    if (st) return st;
    mopt_interp_options o = opts ? *opts : mopt_interp_default_options();
    if (o.rounding < MOPT_ROUND_DOUBLE || o.rounding > MOPT_ROUND_FP32)
        return mopt_error_set(err, MOPT_ERR_ARG, "interpreter: unknown rounding mode %d",
                              (int)o.rounding);
    mopt_interp *it = calloc(1, sizeof *it);
    if (!it) return mopt_error_set(err, MOPT_ERR_NOMEM, "interpreter: out of memory");
    it->g = g;
    it->rounding = o.rounding;
    it->isa = isa ? isa : mopt_isa_best();
    /* Threads come from the runtime's own pool (runtime/parallel.c), with
     * or without OpenMP; the default is one per online core. */
    if (o.num_threads > 0) {
        it->num_threads = o.num_threads;
    } else {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        it->num_threads = ncpu > 0 ? (int)ncpu : 1;
    }
    if (it->num_threads > 64) it->num_threads = 64;
    size_t no = (size_t)(g->n_ops ? g->n_ops : 1), nt = (size_t)(g->n_tensors ? g->n_tensors : 1);
    it->kern = calloc(no, sizeof *it->kern);
    it->plans = calloc(no, sizeof *it->plans);
    it->folded = calloc(no, sizeof *it->folded);
    it->scratch = calloc(no, sizeof *it->scratch);
    it->owned = calloc(no, sizeof *it->owned);
    it->data = calloc(nt, sizeof *it->data);
    if (!it->kern || !it->plans || !it->folded || !it->scratch || !it->owned || !it->data) {
        mopt_interp_free(it);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "interpreter: out of memory");
    }
    /* Constants are read straight from the graph's buffers. */
    for (int t = 0; t < g->n_tensors; t++) it->data[t] = (void *)mopt_tensor_data(g, t);
    for (int i = 0; i < g->n_ops && !st; i++) {
        const mopt_op *op = &g->ops[i];
        it->kern[i] = mopt_kernel_lookup(g, op);
        if (!it->kern[i]) {
            st = no_kernel(g, i, err);
            break;
        }
        mopt_kernel_ctx c = make_ctx(it, i);
        st = it->kern[i]->prepare(&c, &it->plans[i], err);
        if (st) break;
        bool all_const = true;
        for (int k = 0; k < op->n_inputs; k++)
            if (op->inputs[k] >= 0 && !it->data[op->inputs[k]]) all_const = false;
        if (all_const) st = fold_op(it, i, err);
    }
    if (!st) st = plan_memory(it, err);
    if (st) {
        mopt_interp_free(it);
        return st;
    }
    *out = it;
    return MOPT_OK;
}

mopt_status mopt_interp_create(const mopt_graph *g, const mopt_interp_options *opts,
                               mopt_interp **out, mopt_error *err) {
    return mopt_interp_create_isa(g, opts, NULL, out, err);
}

mopt_status mopt_interp_invoke(mopt_interp *it, mopt_error *err) {
    if (!it) return mopt_error_set(err, MOPT_ERR_ARG, "mopt_interp_invoke: interpreter is NULL");
    for (int i = 0; i < it->g->n_ops; i++) {
        if (it->folded[i]) continue;
        mopt_kernel_ctx c = make_ctx(it, i);
        mopt_status st = it->kern[i]->eval(&c, it->plans[i].state, it->scratch[i], err);
        if (st) return st;
    }
    return MOPT_OK;
}

mopt_status mopt_interp_invoke_timed(mopt_interp *it, double *op_seconds, mopt_error *err) {
    if (!it || !op_seconds)
        return mopt_error_set(err, MOPT_ERR_ARG, "mopt_interp_invoke_timed: invalid argument");
    for (int i = 0; i < it->g->n_ops; i++) {
        if (it->folded[i]) continue;
        mopt_kernel_ctx c = make_ctx(it, i);
        double t0 = mopt_now();
        mopt_status st = it->kern[i]->eval(&c, it->plans[i].state, it->scratch[i], err);
        op_seconds[i] += mopt_now() - t0;
        if (st) return st;
    }
    return MOPT_OK;
}

size_t mopt_interp_arena_bytes(const mopt_interp *it) { return it ? it->arena_bytes : 0; }
size_t mopt_interp_naive_bytes(const mopt_interp *it) { return it ? it->naive_bytes : 0; }
int mopt_interp_num_inputs(const mopt_interp *it) { return it ? it->g->n_inputs : 0; }
int mopt_interp_num_outputs(const mopt_interp *it) { return it ? it->g->n_outputs : 0; }

int mopt_interp_input_index(const mopt_interp *it, int i) {
    return it && i >= 0 && i < it->g->n_inputs ? it->g->inputs[i] : -1;
}

int mopt_interp_output_index(const mopt_interp *it, int i) {
    return it && i >= 0 && i < it->g->n_outputs ? it->g->outputs[i] : -1;
}

void *mopt_interp_input(mopt_interp *it, int i) {
    int t = mopt_interp_input_index(it, i);
    return t >= 0 ? it->data[t] : NULL;
}

const void *mopt_interp_output(const mopt_interp *it, int i) {
    int t = mopt_interp_output_index(it, i);
    return t >= 0 ? it->data[t] : NULL;
}

const void *mopt_interp_tensor(const mopt_interp *it, int tensor_index) {
    if (!it || tensor_index < 0 || tensor_index >= it->g->n_tensors) return NULL;
    return it->data[tensor_index];
}

const char *mopt_interp_kernel_name(const mopt_interp *it, int op_index) {
    if (!it || op_index < 0 || op_index >= it->g->n_ops || !it->kern[op_index]) return NULL;
    if (it->folded[op_index]) return "folded";
    return it->plans[op_index].name ? it->plans[op_index].name : it->kern[op_index]->name;
}

/* ---- internal hooks ---- */

const mopt_isa *mopt_interp_isa(const mopt_interp *it) { return it ? it->isa : NULL; }

bool mopt_interp_tensor_slot(const mopt_interp *it, int t, size_t *offset, size_t *bytes) {
    if (!it || t < 0 || t >= it->g->n_tensors || it->slot[t] < 0) return false;
    *offset = it->bufs[it->slot[t]].offset;
    *bytes = (size_t)mopt_tensor_nbytes(&it->g->tensors[t]);
    return true;
}

bool mopt_interp_scratch_slot(const mopt_interp *it, int op_index, size_t *offset, size_t *bytes) {
    if (!it || op_index < 0 || op_index >= it->g->n_ops || it->scratch_buf[op_index] < 0)
        return false;
    *offset = it->bufs[it->scratch_buf[op_index]].offset;
    *bytes = it->bufs[it->scratch_buf[op_index]].size;
    return true;
}

bool mopt_interp_op_folded(const mopt_interp *it, int op_index) {
    return it && op_index >= 0 && op_index < it->g->n_ops && it->folded[op_index];
}

unsigned char *mopt_interp_arena(mopt_interp *it) { return it ? it->arena : NULL; }

bool mopt_interp_guards_intact(const mopt_interp *it) {
    for (int i = 0; i < it->n_guards; i++)
        for (size_t k = 0; k < MOPT_GUARD_BYTES; k++)
            if (it->arena[it->guard_off[i] + k] != MOPT_GUARD_BYTE) return false;
    return true;
}
