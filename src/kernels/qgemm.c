/* qgemm.c - int8 GEMM packing, the portable reference micro-kernels, the
 * int8 ISA dispatch and the tiled GEMM driver (im2col per row tile).
 *
 * All arithmetic is modulo 2^32 (uint32_t in C, where signed overflow would
 * be undefined), which is what the runtime's int32 accumulators produce;
 * see kernels.h for why every variant is therefore bit-exact. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "mopt/qmath.h"
#include "runtime/kernel.h"

size_t mopt_qs8_gemm_packed_bytes(size_t n, size_t kp, int nr) {
    size_t panels = (n + (size_t)nr - 1) / (size_t)nr;
    return panels * (size_t)nr * (sizeof(int32_t) + kp);
}

void mopt_qs8_gemm_pack(size_t n, size_t k, size_t kp, int nr, const int8_t *w,
                        const int32_t *init, int8_t *packed) {
    size_t unr = (size_t)nr, panels = (n + unr - 1) / unr;
    int8_t *p = packed;
    for (size_t pi = 0; pi < panels; pi++) {
        size_t n0 = pi * unr;
        for (size_t j = 0; j < unr; j++) {
            int32_t v = n0 + j < n ? init[n0 + j] : 0;
            memcpy(p, &v, sizeof v);
            p += sizeof v;
        }
        for (size_t q = 0; q < kp; q += 4)
            for (size_t j = 0; j < unr; j++)
                for (size_t i = 0; i < 4; i++) {
                    size_t col = n0 + j, kk = q + i;
                    *p++ = col < n && kk < k ? w[col * k + kk] : 0;
                }
    }
}

/* ---- reference micro-kernels ---- */

static void qs8_gemm_ref(size_t mr, size_t kp, const int8_t *a, size_t a_stride, const int8_t *w,
                         int32_t *c, size_t c_stride, size_t nr) {
    const int8_t *wk = w + nr * sizeof(int32_t);
    for (size_t r = 0; r < mr; r++) {
        const int8_t *ar = a + r * a_stride;
        for (size_t j = 0; j < nr; j++) {
            int32_t init;
            memcpy(&init, w + j * sizeof init, sizeof init);
            uint32_t acc = (uint32_t)init;
            for (size_t q = 0; q < kp; q += 4)
                for (size_t i = 0; i < 4; i++)
                    acc += (uint32_t)((int32_t)ar[q + i] * (int32_t)wk[q * nr + j * 4 + i]);
            c[r * c_stride + j] = (int32_t)acc;
        }
    }
}

static void qs8_gemm_4x8c4__ref(size_t mr, size_t kp, const int8_t *a, size_t a_stride,
                                const int8_t *w, int32_t *c, size_t c_stride) {
    qs8_gemm_ref(mr, kp, a, a_stride, w, c, c_stride, 8);
}

static void qs8_gemm_1x8c4__ref(size_t mr, size_t kp, const int8_t *a, size_t a_stride,
                                const int8_t *w, int32_t *c, size_t c_stride) {
    qs8_gemm_ref(mr, kp, a, a_stride, w, c, c_stride, 8);
}

static void qs8_dw__ref(size_t channels, size_t ks, const int8_t *const *in, const int16_t *w,
                        const int32_t *init, int32_t *acc) {
    size_t cp = (channels + 15) & ~(size_t)15;
    for (size_t c = 0; c < channels; c++) {
        uint32_t s = (uint32_t)init[c];
        for (size_t t = 0; t < ks; t++) s += (uint32_t)((int32_t)in[t][c] * (int32_t)w[t * cp + c]);
        acc[c] = (int32_t)s;
    }
}

int8_t mopt_qs8_requant1(int32_t acc, const mopt_qs8_rq *p, size_t c) {
    int32_t v;
    if (p->method == MOPT_QS8_RQ_DROUND) {
        double r = round((double)acc * p->scale[c]);
        v = r >= 2147483647.0 ? INT32_MAX : (r <= -2147483648.0 ? INT32_MIN : (int32_t)r);
    } else {
        v = mopt_mbqm_double(acc, p->mult[c], p->left[c] - p->right[c]);
    }
    int64_t q = (int64_t)v + p->out_off;
    return (int8_t)(q > p->hi ? p->hi : (q < p->lo ? p->lo : (int32_t)q));
}

static void qs8_requant__ref(size_t n, const int32_t *acc, const mopt_qs8_rq *p, size_t col0,
                             int8_t *y) {
    for (size_t i = 0; i < n; i++) y[i] = mopt_qs8_requant1(acc[i], p, col0 + i);
}

const mopt_qs8_isa mopt_qs8_isa_ref = {
    "ref",
    {"qs8_gemm_4x8c4__ref", 4, 8, 0, qs8_gemm_4x8c4__ref},
    {"qs8_gemm_1x8c4__ref", 1, 8, 0, qs8_gemm_1x8c4__ref},
    qs8_dw__ref,
    qs8_requant__ref,
};

/* ---- dispatch ---- */

#if defined(__x86_64__) || defined(__i386__)
static int have_vnni512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx2");
}
#endif

int mopt_qs8_isa_supported(const mopt_qs8_isa **out, int max) {
    const mopt_isa *f[4];
    int nf = mopt_isa_supported(f, 4), n = 0;
    if (n < max) out[n++] = &mopt_qs8_isa_ref;
#if defined(__x86_64__) || defined(__i386__)
    for (int i = 0; i < nf; i++)
        if (f[i] == &mopt_isa_avx2 && n < max) out[n++] = &mopt_qs8_isa_avx2;
    if (n < max && have_vnni512()) out[n++] = &mopt_qs8_isa_avx512vnni;
#else
    (void)nf;
#endif
    return n;
}

const mopt_qs8_isa *mopt_qs8_isa_for(const mopt_isa *isa) {
    if (!isa) isa = mopt_isa_best();
#if defined(__x86_64__) || defined(__i386__)
    if (isa == &mopt_isa_avx512 && have_vnni512()) return &mopt_qs8_isa_avx512vnni;
    if (isa == &mopt_isa_avx512 || isa == &mopt_isa_avx2) return &mopt_qs8_isa_avx2;
#endif
    return &mopt_qs8_isa_ref;
}

/* ---- tiled driver ---- */

static size_t align64(size_t v) { return (v + 63) & ~(size_t)63; }

typedef struct qgemm_ctx {
    const mopt_qs8_gemm_job *j;
    char *scratch;
    size_t per_thread, a_bytes, m_tiles, n_panels, panel_bytes;
    int split_m;
} qgemm_ctx;

/* Builds im2col row `px` (output pixel) into dst: the kk taps' input
 * channels in TFLite's filter order [KH][KW][IC], padded taps filled with
 * the input zero point, then zeros up to kp (their weights are zero). */
static void im2col_row(const mopt_qs8_gemm_job *j, size_t px, int8_t *dst) {
    const mopt_conv_geom *g = j->g;
    size_t hw = (size_t)g->out_h * (size_t)g->out_w, ic = (size_t)g->in_c;
    size_t b = px / hw, rem = px % hw;
    int32_t oy = (int32_t)(rem / (size_t)g->out_w), ox = (int32_t)(rem % (size_t)g->out_w);
    int32_t iy0 = oy * g->stride_h - g->pad_top, ix0 = ox * g->stride_w - g->pad_left;
    int8_t *d = dst;
    for (int32_t ky = 0; ky < g->k_h; ky++) {
        int32_t iy = iy0 + ky * g->dil_h;
        /* Whole filter row inside the image, no dilation: the taps are
         * contiguous in NHWC, one copy. */
        if (g->dil_w == 1 && iy >= 0 && iy < g->in_h && ix0 >= 0 && ix0 + g->k_w <= g->in_w) {
            size_t n = (size_t)g->k_w * ic;
            memcpy(d, j->in + ((b * (size_t)g->in_h + (size_t)iy) * (size_t)g->in_w +
                               (size_t)ix0) * ic,
                   n);
            d += n;
            continue;
        }
        for (int32_t kx = 0; kx < g->k_w; kx++, d += ic) {
            int32_t ix = ix0 + kx * g->dil_w;
            if (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w)
                memcpy(d, j->in + ((b * (size_t)g->in_h + (size_t)iy) * (size_t)g->in_w +
                                   (size_t)ix) * ic,
                       ic);
            else
                memset(d, j->pad_value, ic);
        }
    }
    if (j->kp > j->k) memset(dst + j->k, 0, j->kp - j->k);
}

static void qgemm_range(void *arg, int tid, size_t begin, size_t end) {
    const qgemm_ctx *q = arg;
    const mopt_qs8_gemm_job *j = q->j;
    const mopt_qs8_gemm_ukernel *uk = j->uk;
    size_t mr = (size_t)uk->mr, nr = (size_t)uk->nr;
    int8_t *abuf = (int8_t *)(q->scratch + (size_t)tid * q->per_thread);
    int32_t *cbuf = (int32_t *)(q->scratch + (size_t)tid * q->per_thread + q->a_bytes);
    size_t c_stride = q->n_panels * nr;
    size_t mt0 = 0, mt1 = q->m_tiles, p0 = 0, p1 = q->n_panels;
    if (q->split_m) {
        mt0 = begin;
        mt1 = end;
    } else {
        p0 = begin;
        p1 = end;
    }
    for (size_t mt = mt0; mt < mt1; mt++) {
        size_t m0 = mt * mr, rows = j->m - m0 < mr ? j->m - m0 : mr;
        const int8_t *a;
        size_t a_stride = j->kp;
        if (j->direct) {
            a = j->in + m0 * j->k;
        } else {
            for (size_t r = 0; r < rows; r++) im2col_row(j, m0 + r, abuf + r * j->kp);
            a = abuf;
        }
        for (size_t p = p0; p < p1; p++)
            uk->fn(rows, j->kp, a, a_stride, j->packed + p * q->panel_bytes, cbuf + p * nr,
                   c_stride);
        size_t col0 = p0 * nr, col1 = p1 * nr < j->n ? p1 * nr : j->n;
        j->finish(j->finish_arg, m0, rows, col0, col1 - col0, cbuf + col0, c_stride);
    }
}

size_t mopt_qs8_gemm_scratch(const mopt_qs8_gemm_job *j, int num_threads) {
    size_t mr = (size_t)j->uk->mr, nr = (size_t)j->uk->nr;
    size_t panels = (j->n + nr - 1) / nr;
    size_t per = align64(mr * j->kp) + align64(mr * panels * nr * sizeof(int32_t));
    return per * (size_t)(num_threads < 1 ? 1 : num_threads);
}

void mopt_qs8_gemm_run(const mopt_qs8_gemm_job *j, void *scratch, int num_threads) {
    if (j->m == 0 || j->n == 0) return;
    qgemm_ctx q;
    memset(&q, 0, sizeof q);
    size_t mr = (size_t)j->uk->mr, nr = (size_t)j->uk->nr;
    q.j = j;
    q.scratch = scratch;
    q.a_bytes = align64(mr * j->kp);
    q.m_tiles = (j->m + mr - 1) / mr;
    q.n_panels = (j->n + nr - 1) / nr;
    q.per_thread = mopt_qs8_gemm_scratch(j, 1);
    q.panel_bytes = nr * (sizeof(int32_t) + j->kp);
    int nt = num_threads < 1 ? 1 : num_threads;
    /* Tiny problems are not worth waking threads for. */
    if ((double)j->m * (double)j->n * (double)j->kp < 2e5) nt = 1;
    /* Few row tiles (FC with one row): split the output channels instead.
     * Either way each output is computed by one micro-kernel call, so the
     * split never changes a result. */
    q.split_m = nt == 1 || q.m_tiles >= 2 * (size_t)nt || q.n_panels < (size_t)nt;
    mopt_parallel_for(nt, q.split_m ? q.m_tiles : q.n_panels, qgemm_range, &q);
}
