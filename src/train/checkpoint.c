/* checkpoint.c - saving and restoring training state.
 *
 * Layout (all integers little-endian, floats as IEEE-754 bit patterns):
 *   "MOPTCKPT"                      8 bytes magic
 *   u32 version (1), u32 reserved (0)
 *   u64 fingerprint                 FNV-1a of every variable's name, role and shape
 *   u64 noise seed                  the graph's dropout seed (mopt_tgraph_set_seed)
 *   u32 n_vars, u32 optimizer kind (0xFFFFFFFF: no optimizer state)
 *   i64 optimizer steps
 *   i64 step, epoch, batch; u64 seed; i64 batch_size; f64 loss sum; i64 correct, seen
 *   n_vars times:
 *     u32 name length, name bytes, u32 role, u32 rank, rank x i32 dims,
 *     u32 state arrays (0..2), numel f32 values, then each state array (numel f32)
 *   u32 crc32 (zlib) of every byte above
 * A load parses and checks the whole file before touching the graph, so a
 * refused file changes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "mopt/util.h"
#include "train/optim_internal.h"

#define CKPT_MAGIC "MOPTCKPT"
#define CKPT_VERSION 1u
#define CKPT_MAX_BYTES ((size_t)4 << 30)

/* ---- writer ---- */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} wbuf;

static void wb_bytes(wbuf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void wb_u32(wbuf *b, uint32_t v) {
    uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    wb_bytes(b, t, 4);
}

static void wb_u64(wbuf *b, uint64_t v) {
    wb_u32(b, (uint32_t)v);
    wb_u32(b, (uint32_t)(v >> 32));
}

static void wb_f64(wbuf *b, double d) {
    uint64_t v;
    memcpy(&v, &d, 8);
    wb_u64(b, v);
}

static void wb_floats(wbuf *b, const float *f, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t v;
        memcpy(&v, &f[i], 4);
        wb_u32(b, v);
    }
}

/* ---- reader ---- */

typedef struct rbuf {
    const uint8_t *p;
    size_t n, off;
    bool bad;
} rbuf;

static const uint8_t *rb_take(rbuf *r, size_t n) {
    if (r->bad || n > r->n - r->off) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

static uint32_t rb_u32(rbuf *r) {
    const uint8_t *t = rb_take(r, 4);
    if (!t) return 0;
    return (uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 | (uint32_t)t[3] << 24;
}

static uint64_t rb_u64(rbuf *r) {
    uint64_t lo = rb_u32(r);
    return lo | (uint64_t)rb_u32(r) << 32;
}

static double rb_f64(rbuf *r) {
    uint64_t v = rb_u64(r);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

static void rb_floats(rbuf *r, float *dst, int64_t n) {
    const uint8_t *t = rb_take(r, (size_t)n * 4);
    if (!t) return;
    for (int64_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)t[4 * i] | (uint32_t)t[4 * i + 1] << 8 |
                     (uint32_t)t[4 * i + 2] << 16 | (uint32_t)t[4 * i + 3] << 24;
        memcpy(&dst[i], &v, 4);
    }
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001B3ULL;
    }
    return h;
}

static uint64_t graph_fingerprint(const mopt_tgraph *tg) {
    uint64_t h = 0xCBF29CE484222325ULL;
    for (int i = 0; i < mopt_tgraph_num_vars(tg); i++) {
        const mopt_tvar *v = mopt_tgraph_var_c(tg, i);
        h = fnv1a(h, v->name, strlen(v->name) + 1);
        uint32_t meta[2] = {(uint32_t)v->role, (uint32_t)v->rank};
        h = fnv1a(h, meta, sizeof(meta));
        h = fnv1a(h, v->dims, (size_t)v->rank * sizeof(int32_t));
    }
    return h;
}

mopt_status mopt_checkpoint_save(const char *path, mopt_tgraph *tg, const mopt_optimizer *opt,
                                 const mopt_train_state *st, mopt_error *err) {
    if (!path || !tg || !st) return mopt_error_set(err, MOPT_ERR_ARG, "checkpoint: NULL argument");
    mopt_status s;
    if (opt && (s = tr_optim_ensure((mopt_optimizer *)opt, err)) != MOPT_OK) return s;
    const int nv = mopt_tgraph_num_vars(tg);
    wbuf b = {0};
    wb_bytes(&b, CKPT_MAGIC, 8);
    wb_u32(&b, CKPT_VERSION);
    wb_u32(&b, 0);
    wb_u64(&b, graph_fingerprint(tg));
    wb_u64(&b, tg->seed);
    wb_u32(&b, (uint32_t)nv);
    wb_u32(&b, opt ? (uint32_t)opt->p.kind : 0xFFFFFFFFu);
    wb_u64(&b, (uint64_t)(opt ? opt->t : 0));
    wb_u64(&b, (uint64_t)st->step);
    wb_u64(&b, (uint64_t)st->epoch);
    wb_u64(&b, (uint64_t)st->batch);
    wb_u64(&b, st->seed);
    wb_u64(&b, (uint64_t)st->batch_size);
    wb_f64(&b, st->epoch_loss_sum);
    wb_u64(&b, (uint64_t)st->epoch_correct);
    wb_u64(&b, (uint64_t)st->epoch_seen);
    for (int i = 0; i < nv; i++) {
        const mopt_tvar *v = mopt_tgraph_var_c(tg, i);
        uint32_t len = (uint32_t)strlen(v->name);
        wb_u32(&b, len);
        wb_bytes(&b, v->name, len);
        wb_u32(&b, (uint32_t)v->role);
        wb_u32(&b, (uint32_t)v->rank);
        for (int d = 0; d < v->rank; d++) wb_u32(&b, (uint32_t)v->dims[d]);
        uint32_t ns = 0;
        if (opt && i < opt->n_slots) ns = (opt->m[i] ? 1u : 0u) + (opt->v[i] ? 1u : 0u);
        wb_u32(&b, ns);
        wb_floats(&b, v->data, v->numel);
        if (ns >= 1) wb_floats(&b, opt->m[i], v->numel);
        if (ns >= 2) wb_floats(&b, opt->v[i], v->numel);
    }
    if (!b.oom) {
        uLong crc = crc32(0L, Z_NULL, 0);
        /* zlib's crc32 takes uInt lengths: feed in pieces */
        for (size_t off = 0; off < b.n; off += (size_t)1 << 30) {
            size_t len = b.n - off < ((size_t)1 << 30) ? b.n - off : ((size_t)1 << 30);
            crc = crc32(crc, b.p + off, (uInt)len);
        }
        wb_u32(&b, (uint32_t)crc);
    }
    if (b.oom) {
        free(b.p);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "%s: out of memory building the checkpoint",
                              path);
    }
    s = mopt_file_write_atomic(path, b.p, b.n, err);
    free(b.p);
    return s;
}

static mopt_status refuse(mopt_error *err, const char *path, const char *why) {
    return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: not a usable checkpoint: %s", path, why);
}

mopt_status mopt_checkpoint_load(const char *path, mopt_tgraph *tg, mopt_optimizer *opt,
                                 mopt_train_state *st, mopt_error *err) {
    if (!path || !tg) return mopt_error_set(err, MOPT_ERR_ARG, "checkpoint: NULL argument");
    uint8_t *data = NULL;
    size_t size = 0;
    mopt_status s = mopt_file_read_all(path, CKPT_MAX_BYTES, &data, &size, err);
    if (s != MOPT_OK) return s;
    if (size < 8 + 4 + 4 + 8 + 8 + 8 + 64 + 4 || memcmp(data, CKPT_MAGIC, 8) != 0) {
        free(data);
        return refuse(err, path, "wrong magic (not a mopt checkpoint, or truncated)");
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t off = 0; off < size - 4; off += (size_t)1 << 30) {
        size_t len = size - 4 - off < ((size_t)1 << 30) ? size - 4 - off : ((size_t)1 << 30);
        crc = crc32(crc, data + off, (uInt)len);
    }
    rbuf tail = {data + size - 4, 4, 0, false};
    if ((uint32_t)crc != rb_u32(&tail)) {
        free(data);
        return refuse(err, path, "CRC mismatch (the file is corrupt or truncated)");
    }
    rbuf r = {data, size - 4, 8, false};
    uint32_t version = rb_u32(&r);
    (void)rb_u32(&r);
    if (version != CKPT_VERSION) {
        free(data);
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "%s: checkpoint format version %u, this mopt reads version %u",
                              path, version, CKPT_VERSION);
    }
    uint64_t fp = rb_u64(&r);
    uint64_t noise_seed = rb_u64(&r);
    uint32_t nv = rb_u32(&r);
    uint32_t kind = rb_u32(&r);
    int64_t opt_t = (int64_t)rb_u64(&r);
    mopt_train_state ts;
    ts.step = (int64_t)rb_u64(&r);
    ts.epoch = (int64_t)rb_u64(&r);
    ts.batch = (int64_t)rb_u64(&r);
    ts.seed = rb_u64(&r);
    ts.batch_size = (int64_t)rb_u64(&r);
    ts.epoch_loss_sum = rb_f64(&r);
    ts.epoch_correct = (int64_t)rb_u64(&r);
    ts.epoch_seen = (int64_t)rb_u64(&r);
    const int n_have = mopt_tgraph_num_vars(tg);
    if ((int64_t)nv != n_have || fp != graph_fingerprint(tg)) {
        /* Say what differs: the first variable whose name or shape differs. */
        char why[320];
        snprintf(why, sizeof(why), "it was made for a different model (%u variables, this model "
                 "has %d)", nv, n_have);
        rbuf q = r;
        for (uint32_t i = 0; i < nv && (int)i < n_have && !q.bad; i++) {
            uint32_t len = rb_u32(&q);
            const uint8_t *nm = rb_take(&q, len);
            uint32_t role = rb_u32(&q), rank = rb_u32(&q);
            if (!nm || rank > MOPT_MAX_DIMS) break;
            int32_t dims[MOPT_MAX_DIMS];
            int64_t numel = 1;
            for (uint32_t d = 0; d < rank; d++) {
                dims[d] = (int32_t)rb_u32(&q);
                numel *= dims[d] > 0 ? dims[d] : 0;
            }
            uint32_t ns = rb_u32(&q);
            const mopt_tvar *v = mopt_tgraph_var_c(tg, (int)i);
            bool same = strlen(v->name) == len && memcmp(v->name, nm, len) == 0 &&
                        (uint32_t)v->role == role && (uint32_t)v->rank == rank;
            for (uint32_t d = 0; same && d < rank; d++) same = dims[d] == v->dims[d];
            if (!same) {
                snprintf(why, sizeof(why),
                         "it was made for a different model (variable %u is '%.*s' with %u dims "
                         "in the file, '%s' with %d dims here)",
                         i, (int)(len > 60 ? 60 : len), (const char *)nm, rank, v->name, v->rank);
                break;
            }
            if (numel > (int64_t)1 << 31) break;
            rb_take(&q, (size_t)numel * 4 * (1 + ns));
        }
        free(data);
        return refuse(err, path, why);
    }
    if (opt && kind != 0xFFFFFFFFu && kind != (uint32_t)opt->p.kind) {
        free(data);
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "%s: checkpoint holds %s optimizer state but training uses %s", path,
                              mopt_optim_kind_name((mopt_optim_kind)kind),
                              mopt_optim_kind_name(opt->p.kind));
    }
    if (opt && (s = tr_optim_ensure(opt, err)) != MOPT_OK) {
        free(data);
        return s;
    }
    /* First pass: validate every record; second pass: copy. */
    const size_t body = r.off;
    for (int pass = 0; pass < 2; pass++) {
        r.off = body;
        for (uint32_t i = 0; i < nv; i++) {
            mopt_tvar *v = mopt_tgraph_var(tg, (int)i);
            uint32_t len = rb_u32(&r);
            rb_take(&r, len);
            (void)rb_u32(&r);
            uint32_t rank = rb_u32(&r);
            for (uint32_t d = 0; d < rank && d < MOPT_MAX_DIMS; d++) (void)rb_u32(&r);
            uint32_t ns = rb_u32(&r);
            if (r.bad || ns > 2) {
                free(data);
                return refuse(err, path, "malformed variable record");
            }
            uint32_t want = 0;
            if (opt && kind != 0xFFFFFFFFu) want = (opt->m[i] ? 1u : 0u) + (opt->v[i] ? 1u : 0u);
            if (opt && kind != 0xFFFFFFFFu && ns != want) {
                free(data);
                return refuse(err, path, "optimizer state does not match the variables");
            }
            if (pass == 0) {
                rb_take(&r, (size_t)v->numel * 4 * (1 + ns));
            } else {
                rb_floats(&r, v->data, v->numel);
                if (ns >= 1) {
                    if (opt) rb_floats(&r, opt->m[i], v->numel);
                    else rb_take(&r, (size_t)v->numel * 4);
                }
                if (ns >= 2) {
                    if (opt) rb_floats(&r, opt->v[i], v->numel);
                    else rb_take(&r, (size_t)v->numel * 4);
                }
            }
            if (r.bad) {
                free(data);
                return refuse(err, path, "truncated variable data");
            }
        }
        if (pass == 0 && r.off != r.n) {
            free(data);
            return refuse(err, path, "unexpected bytes after the variables");
        }
    }
    if (opt && kind != 0xFFFFFFFFu) opt->t = opt_t;
    tg->seed = noise_seed;
    if (st) *st = ts;
    free(data);
    return MOPT_OK;
}
