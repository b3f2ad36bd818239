/* gemm.c - weight packing, indirection buffers and the blocked convolution /
 * GEMM drivers.
 *
 * ISA-neutral: the drivers walk tiles and call the micro-kernel chosen for
 * the interpreter. Each output element is computed by exactly one
 * micro-kernel call whose arithmetic does not depend on the tile position,
 * so the split over threads never changes results.
 */
#include <string.h>

#include "kernels/kernels.h"
#include "runtime/kernel.h"

size_t mopt_f32_gemm_packed_floats(size_t n, size_t ks, size_t kc, int nr) {
    size_t panels = (n + (size_t)nr - 1) / (size_t)nr;
    return panels * (size_t)nr * (1 + ks * kc);
}

void mopt_f32_gemm_pack(size_t n, size_t ks, size_t kc, int nr, const float *w, const float *bias,
                        float *packed) {
    size_t panels = (n + (size_t)nr - 1) / (size_t)nr;
    size_t k_total = ks * kc;
    float *p = packed;
    for (size_t pi = 0; pi < panels; pi++) {
        size_t n0 = pi * (size_t)nr;
        for (int j = 0; j < nr; j++) {
            size_t col = n0 + (size_t)j;
            *p++ = (col < n && bias) ? bias[col] : 0.0f;
        }
        for (size_t k = 0; k < k_total; k++)
            for (int j = 0; j < nr; j++) {
                size_t col = n0 + (size_t)j;
                *p++ = col < n ? w[col * k_total + k] : 0.0f;
            }
    }
}

/* ---- indirection ---- */

static size_t out_pixels(const mopt_conv_geom *g) {
    return (size_t)g->batch * (size_t)g->out_h * (size_t)g->out_w;
}

size_t mopt_f32_conv_indirection_size(const mopt_conv_geom *g, int mr) {
    size_t m = out_pixels(g);
    size_t tiles = (m + (size_t)mr - 1) / (size_t)mr;
    size_t n = tiles * (size_t)mr * (size_t)g->k_h * (size_t)g->k_w;
    return n ? n : 1;
}

void mopt_f32_conv_indirection_init(const mopt_conv_geom *g, int mr, const float *in,
                                    const float *zero, const float **ind) {
    size_t m = out_pixels(g), umr = (size_t)mr;
    size_t ks = (size_t)g->k_h * (size_t)g->k_w;
    size_t tiles = (m + umr - 1) / umr;
    for (size_t tile = 0; tile < tiles; tile++) {
        const float **a = ind + tile * ks * umr;
        for (size_t r = 0; r < umr; r++) {
            size_t px = tile * umr + r < m ? tile * umr + r : m - 1;
            size_t hw = (size_t)g->out_h * (size_t)g->out_w;
            size_t b = px / hw, rem = px % hw;
            int32_t oy = (int32_t)(rem / (size_t)g->out_w), ox = (int32_t)(rem % (size_t)g->out_w);
            int32_t iy0 = oy * g->stride_h - g->pad_top, ix0 = ox * g->stride_w - g->pad_left;
            size_t t = 0;
            for (int32_t ky = 0; ky < g->k_h; ky++) {
                int32_t iy = iy0 + ky * g->dil_h;
                for (int32_t kx = 0; kx < g->k_w; kx++, t++) {
                    int32_t ix = ix0 + kx * g->dil_w;
                    const float *p = zero;
                    if (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w)
                        p = in +
                            ((b * (size_t)g->in_h + (size_t)iy) * (size_t)g->in_w + (size_t)ix) *
                                (size_t)g->in_c;
                    a[t * umr + r] = p;
                }
            }
        }
    }
}

/* ---- indirect GEMM convolution ---- */

typedef struct igemm_job {
    const mopt_conv_geom *g;
    const mopt_f32_igemm_ukernel *uk;
    const float *const *ind;
    const float *packed;
    float *out;
    float vmin, vmax;
    size_t m, m_tiles, n_panels, ks, panel_floats, group;
    int split_m;
} igemm_job;

static void igemm_range(void *arg, int tid, size_t begin, size_t end) {
    const igemm_job *j = arg;
    size_t mt0 = 0, mt1 = j->m_tiles, p0 = 0, p1 = j->n_panels;
    if (j->split_m) {
        mt0 = begin;
        mt1 = end;
    } else {
        p0 = begin;
        p1 = end;
    }
    size_t mr = (size_t)j->uk->mr, nr = (size_t)j->uk->nr, oc = (size_t)j->g->out_c;
    size_t kc = (size_t)j->g->in_c, ks = j->ks;
    /* Panel groups keep a slice of the packed weights in L2 while every row
     * tile of this thread streams past it. */
    for (size_t pg = p0; pg < p1; pg += j->group) {
        size_t pe = pg + j->group < p1 ? pg + j->group : p1;
        for (size_t mt = mt0; mt < mt1; mt++) {
            size_t m0 = mt * mr;
            size_t rows = j->m - m0 < mr ? j->m - m0 : mr;
            const float *const *a = j->ind + mt * ks * mr;
            for (size_t p = pg; p < pe; p++) {
                size_t n0 = p * nr;
                size_t nc = oc - n0 < nr ? oc - n0 : nr;
                j->uk->fn(rows, nc, kc, ks, a, j->packed + p * j->panel_floats,
                          j->out + m0 * oc + n0, oc, j->vmin, j->vmax);
            }
        }
    }
}

void mopt_f32_conv_igemm(const mopt_conv_geom *g, const mopt_f32_igemm_ukernel *uk,
                         const float *const *ind, const float *packed, float *out, float vmin,
                         float vmax, int num_threads) {
    igemm_job j;
    memset(&j, 0, sizeof j);
    j.g = g;
    j.uk = uk;
    j.ind = ind;
    j.packed = packed;
    j.out = out;
    j.vmin = vmin;
    j.vmax = vmax;
    j.m = out_pixels(g);
    if (j.m == 0 || g->out_c == 0) return;
    j.ks = (size_t)g->k_h * (size_t)g->k_w;
    j.m_tiles = (j.m + (size_t)uk->mr - 1) / (size_t)uk->mr;
    j.n_panels = ((size_t)g->out_c + (size_t)uk->nr - 1) / (size_t)uk->nr;
    j.panel_floats = (size_t)uk->nr * (1 + j.ks * (size_t)g->in_c);
    size_t budget = (size_t)1 << 20;
    j.group = budget / (j.panel_floats * sizeof(float));
    if (j.group < 1) j.group = 1;
    int nt = num_threads < 1 ? 1 : num_threads;
    /* Few row tiles (small images, FC with one batch): split the channels. */
    j.split_m = nt == 1 || j.m_tiles >= 2 * (size_t)nt || j.n_panels < (size_t)nt;
    /* Tiny problems are not worth waking threads for. */
    double flops = 2.0 * (double)j.m * (double)g->out_c * (double)j.ks * (double)g->in_c;
    if (flops < 4e5) nt = 1;
    mopt_parallel_for(nt, j.split_m ? j.m_tiles : j.n_panels, igemm_range, &j);
}

/* ---- depthwise ---- */

typedef struct dw_job {
    const mopt_conv_geom *g;
    mopt_f32_dwconv_fn fn;
    const float *const *ind;
    const float *w, *bias;
    float *out;
    float vmin, vmax;
} dw_job;

static void dw_range(void *arg, int tid, size_t begin, size_t end) {
    const dw_job *j = arg;
    const mopt_conv_geom *g = j->g;
    size_t c = (size_t)g->in_c, ks = (size_t)g->k_h * (size_t)g->k_w, ow = (size_t)g->out_w;
    for (size_t row = begin; row < end; row++)
        for (size_t ox = 0; ox < ow; ox++) {
            size_t px = row * ow + ox;
            j->fn(c, ks, j->ind + px * ks, j->w, j->bias, j->out + px * c, j->vmin, j->vmax);
        }
}

void mopt_f32_dwconv(const mopt_conv_geom *g, mopt_f32_dwconv_fn fn, const float *const *ind,
                     const float *w, const float *bias, float *out, float vmin, float vmax,
                     int num_threads) {
    dw_job j = {g, fn, ind, w, bias, out, vmin, vmax};
    size_t rows = (size_t)g->batch * (size_t)g->out_h;
    double work = (double)rows * (double)g->out_w * (double)g->out_c * g->k_h * g->k_w;
    mopt_parallel_for(work < 2e5 ? 1 : num_threads, rows, dw_range, &j);
}
