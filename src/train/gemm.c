/* gemm.c - blocked, multi-threaded GEMM driver of the training engine and
 * the run-time choice of its micro-kernel (see gemm.h).
 *
 * Work is split over tiles of C (a block of MC rows x a group of NR-wide
 * panels) handed out by the pool; each tile runs over all K blocks with its
 * own packed copy of the B panels it needs (or the shared pre-packed B), so
 * the order of operations on any C element is fixed whoever runs it.
 */
#include <math.h>
#include <string.h>

#include "train/tg_internal.h"

#define MAX_MR 16
#define MAX_TAPS 64 /* taps per block (7x7 kernels and below); more: per-tap blocks */

static int cpu_avx2_fma(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static int cpu_avx512f(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && cpu_avx2_fma();
#else
    return 0;
#endif
}

const tr_ukernel *tr_ukernel_best(void) {
    /* The choice depends only on the CPU, so every call agrees. */
    if (tr_ukernel_avx512.rows && cpu_avx512f()) return &tr_ukernel_avx512;
    if (tr_ukernel_avx2.rows && cpu_avx2_fma()) return &tr_ukernel_avx2;
    return &tr_ukernel_ref;
}

/* ---- K blocks ---- */

typedef struct kblocks {
    int64_t n;       /* number of blocks */
    int64_t chunks;  /* TR_A_CONV with C > KC: channel chunks per tap */
    int64_t taps;    /* TR_A_CONV: taps (one block of all taps when chunks == 0) */
    int64_t C;
} kblocks;

static kblocks make_kblocks(const tr_gemm_a *a, int64_t K) {
    kblocks kb;
    if (a->mode == TR_A_CONV) {
        kb.C = a->conv->C;
        kb.taps = (int64_t)a->conv->kh * a->conv->kw;
        if (kb.C <= TR_GEMM_KC) {
            /* one block of all taps: the micro-kernel walks the taps */
            kb.chunks = 0;
            kb.n = 1;
        } else {
            kb.chunks = (kb.C + TR_GEMM_KC - 1) / TR_GEMM_KC;
            kb.n = kb.taps * kb.chunks;
        }
    } else {
        kb.C = 0;
        kb.taps = 0;
        kb.chunks = 0;
        kb.n = (K + TR_GEMM_KC - 1) / TR_GEMM_KC;
    }
    return kb;
}

/* Block i: columns [*k0, *k0 + *kc * *ks); *tap (-1: all taps, *ks of them)
 * and *c0 for TR_A_CONV. */
static void kblock_at(const kblocks *kb, int64_t i, int64_t K, int64_t *k0, int64_t *kc, int *tap,
                      int64_t *c0, int64_t *ks) {
    *ks = 1;
    if (kb->taps && !kb->chunks) {
        *tap = -1;
        *c0 = 0;
        *k0 = 0;
        *kc = kb->C;
        *ks = kb->taps;
    } else if (kb->chunks) {
        *tap = (int)(i / kb->chunks);
        *c0 = (i % kb->chunks) * TR_GEMM_KC;
        *k0 = (int64_t)*tap * kb->C + *c0;
        *kc = kb->C - *c0 < TR_GEMM_KC ? kb->C - *c0 : TR_GEMM_KC;
    } else {
        *tap = 0;
        *c0 = 0;
        *k0 = i * TR_GEMM_KC;
        *kc = K - *k0 < TR_GEMM_KC ? K - *k0 : TR_GEMM_KC;
    }
}

/* ---- B packing ---- */

/* Panel of NR columns from j0 (cols of them real) of rows [k0, k0+kc). */
static void pack_b_strided(float *dst, const tr_gemm_b *b, int64_t k0, int64_t kc, int64_t j0,
                           int64_t cols, int NR) {
    const ptrdiff_t rs = b->rs, cs = b->cs;
    if (cs == 1) {
        for (int64_t k = 0; k < kc; k++) {
            const float *src = b->b + (k0 + k) * rs + j0;
            float *d = dst + k * NR;
            int64_t j = 0;
            for (; j < cols; j++) d[j] = src[j];
            for (; j < NR; j++) d[j] = 0.0f;
        }
    } else {
        for (int64_t j = 0; j < cols; j++) {
            const float *src = b->b + k0 * rs + (j0 + j) * cs;
            for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = src[k * rs];
        }
        for (int64_t j = cols; j < NR; j++)
            for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = 0.0f;
    }
}

/* Panel from im2col(image): row k = output pixel k0+k, column j = (tap, ic).
 * The panel's columns split into runs of one tap each; the runs are the
 * same for every row, so they are computed once per panel. */
typedef struct bseg {
    int dy, dx;      /* tap offset (ky*dh, kx*dw) */
    int ic, off, n;  /* first channel, column offset in the panel, length */
} bseg;

static void pack_b_conv(float *dst, const tr_gemm_b *b, int64_t k0, int64_t kc, int64_t j0,
                        int64_t cols, int NR) {
    const tr_conv_geom *g = b->conv;
    bseg seg[64];
    int nseg = 0;
    for (int64_t j = 0; j < cols && nseg < 64;) {
        const int64_t col = j0 + j;
        const int tap = (int)(col / g->C), ic = (int)(col % g->C);
        const int64_t run = g->C - ic < cols - j ? g->C - ic : cols - j;
        seg[nseg].dy = (tap / g->kw) * g->dh;
        seg[nseg].dx = (tap % g->kw) * g->dw;
        seg[nseg].ic = ic;
        seg[nseg].off = (int)j;
        seg[nseg].n = (int)run;
        nseg++;
        j += run;
    }
    const int64_t hw = (int64_t)g->OH * g->OW;
    int64_t m = k0;
    int64_t bi = m / hw, rem = m % hw;
    int oy = (int)(rem / g->OW), ox = (int)(rem % g->OW);
    for (int64_t k = 0; k < kc; k++) {
        const float *img = b->b + bi * (int64_t)g->H * g->W * g->C;
        const int iy0 = oy * g->sh - g->pt, ix0 = ox * g->sw - g->pl;
        float *d = dst + k * NR;
        for (int q = 0; q < nseg; q++) {
            const int iy = iy0 + seg[q].dy, ix = ix0 + seg[q].dx;
            float *o = d + seg[q].off;
            if (iy >= 0 && iy < g->H && ix >= 0 && ix < g->W) {
                const float *sp = img + ((int64_t)iy * g->W + ix) * g->C + seg[q].ic;
                for (int t = 0; t < seg[q].n; t++) o[t] = sp[t];
            } else {
                for (int t = 0; t < seg[q].n; t++) o[t] = 0.0f;
            }
        }
        for (int64_t j = cols; j < NR; j++) d[j] = 0.0f;
        /* next pixel */
        if (++ox == g->OW) {
            ox = 0;
            if (++oy == g->OH) {
                oy = 0;
                bi++;
            }
        }
    }
}

/* ---- A row pointers ---- */

/* TR_A_CONV: per row of the M block, the image offset and the top-left input
 * coordinate of its window (computed once per tile, not per tap). */
typedef struct arow {
    int64_t img;  /* offset of the row's image */
    int iy0, ix0;
} arow;

static void conv_rows_info(const tr_conv_geom *g, int64_t i0, int64_t mc, arow *info) {
    const int64_t hw = (int64_t)g->OH * g->OW;
    int64_t bi = i0 / hw, rem = i0 % hw;
    int oy = (int)(rem / g->OW), ox = (int)(rem % g->OW);
    for (int64_t r = 0; r < mc; r++) {
        info[r].img = bi * (int64_t)g->H * g->W * g->C;
        info[r].iy0 = oy * g->sh - g->pt;
        info[r].ix0 = ox * g->sw - g->pl;
        if (++ox == g->OW) {
            ox = 0;
            if (++oy == g->OH) {
                oy = 0;
                bi++;
            }
        }
    }
}

/* Row pointers for MR rows from r0 of the M block at i0: for TR_A_CONV and
 * tap == -1, ks*MR pointers (tap-major, channel c0 of every tap). */
static void a_rows(const tr_gemm_a *a, const arow *info, int64_t i0, int64_t r0, int64_t mr,
                   int MR, int64_t k0, int tap, int64_t c0, const float **rows) {
    if (a->mode == TR_A_ROWS) {
        for (int r = 0; r < MR; r++) rows[r] = a->a + (i0 + r0 + (r < mr ? r : 0)) * a->lda + k0;
        return;
    }
    const tr_conv_geom *g = a->conv;
    const int t0 = tap < 0 ? 0 : tap, t1 = tap < 0 ? g->kh * g->kw : tap + 1;
    for (int t = t0; t < t1; t++) {
        const int dy = (t / g->kw) * g->dh, dx = (t % g->kw) * g->dw;
        const float **out = rows + (t - t0) * MR;
        for (int r = 0; r < MR; r++) {
            const arow *ri = &info[r0 + (r < mr ? r : 0)];
            const int iy = ri->iy0 + dy, ix = ri->ix0 + dx;
            if (iy >= 0 && iy < g->H && ix >= 0 && ix < g->W)
                out[r] = a->a + ri->img + ((int64_t)iy * g->W + ix) * g->C + c0;
            else
                out[r] = a->zero + c0;
        }
    }
}

typedef struct gemm_job {
    const tr_ukernel *uk;
    int64_t M, N, K, MC, NC;
    const tr_gemm_a *a;
    const tr_gemm_b *b;
    float *c;
    ptrdiff_t ldc;
    bool accumulate;
    kblocks kb;
    int64_t kb_ks; /* taps per K block (1 unless TR_A_CONV with C <= KC) */
    int64_t nblocks, npan_max, g, groups_per_nb;
    float *pre; /* all of B packed (or NULL: each tile packs its own panels) */
} gemm_job;

/* Pre-packed layout: panel (jb, p) holds all of K: block at ((jb*npan_max + p)*K + k0)*NR. */
static void prepack_range(void *arg, int64_t q0, int64_t q1) {
    const gemm_job *j = arg;
    const int NR = j->uk->nr;
    for (int64_t q = q0; q < q1; q++) {
        const int64_t blk = q % j->kb.n, pp = q / j->kb.n;
        const int64_t jb = pp / j->npan_max, p = pp % j->npan_max;
        const int64_t jc = jb * j->NC, nc = j->N - jc < j->NC ? j->N - jc : j->NC;
        if (p * NR >= nc) continue;
        int64_t k0, kc, c0, ks;
        int tap;
        kblock_at(&j->kb, blk, j->K, &k0, &kc, &tap, &c0, &ks);
        const int64_t cols = nc - p * NR < NR ? nc - p * NR : NR;
        float *dst = j->pre + ((jb * j->npan_max + p) * j->K + k0) * NR;
        if (j->b->mode == TR_B_CONV)
            pack_b_conv(dst, j->b, k0, kc * ks, jc + p * NR, cols, NR);
        else
            pack_b_strided(dst, j->b, k0, kc * ks, jc + p * NR, cols, NR);
    }
}

/* One tile: rows [i0, i0+mc) x panels [p0, p1) of N block jb, over all K. */
static void gemm_tile(const gemm_job *j, int64_t t, float *bp, const float **rpall) {
    const tr_ukernel *uk = j->uk;
    const tr_gemm_a *a = j->a;
    const tr_gemm_b *b = j->b;
    const int MR = uk->mr, NR = uk->nr;
    const int64_t K = j->K, MC = j->MC, NC = j->NC;
    const int64_t ib = t / (j->nblocks * j->groups_per_nb);
    const int64_t rest = t % (j->nblocks * j->groups_per_nb);
    const int64_t jb = rest / j->groups_per_nb, jg = rest % j->groups_per_nb;
    const int64_t i0 = ib * MC, mc = j->M - i0 < MC ? j->M - i0 : MC;
    const int64_t jc = jb * NC, nc = j->N - jc < NC ? j->N - jc : NC;
    const int64_t npan = (nc + NR - 1) / NR;
    const int64_t p0 = jg * j->g, p1 = p0 + j->g < npan ? p0 + j->g : npan;
    if (p0 >= p1) return;
    float tail[TR_GEMM_KC * MAX_MR];
    const float *rp[MAX_TAPS * MAX_MR];
    arow info[TR_GEMM_MC];
    arow kinfo[TR_GEMM_KC];
    const float *kptrs[TR_GEMM_KC];
    float *c = j->c;
    const ptrdiff_t ldc = j->ldc;
    const float *pre = j->pre;
    if (a->mode == TR_A_CONV) conv_rows_info(a->conv, i0, mc, info);
    /* Row-major B (cs == 1) with a full panel of columns is read in place
     * (row stride b->rs: kc rows of one panel stay in L1 while the tile's
     * MR blocks reuse them); other panels are packed (row stride NR). */
    const bool direct_ok = !pre && b->mode == TR_B_STRIDED && b->cs == 1;
#define PANEL(p, kc_, ks_, k0_)                                                                 \
    (pre ? pre + ((jb * j->npan_max + (p)) * K + (k0_)) * NR                                   \
     : (direct_ok && nc - (p) * NR >= NR) ? b->b + (k0_) * b->rs + jc + (p) * NR               \
                                          : bp + ((p) - p0) * (kc_) * (ks_) * NR)
#define PANEL_LD(p) ((size_t)(!pre && direct_ok && nc - (p) * NR >= NR ? b->rs : NR))
    for (int64_t blk = 0; blk < j->kb.n; blk++) {
        int64_t k0, kc, c0, ks;
        int tap;
        kblock_at(&j->kb, blk, K, &k0, &kc, &tap, &c0, &ks);
        const bool acc = j->accumulate || blk > 0;
        for (int64_t p = p0; p < p1 && !pre; p++) {
            const int64_t cols = nc - p * NR < NR ? nc - p * NR : NR;
            if (direct_ok && cols == NR) continue;
            float *dst = bp + (p - p0) * kc * ks * NR;
            if (b->mode == TR_B_CONV)
                pack_b_conv(dst, b, k0, kc * ks, jc + p * NR, cols, NR);
            else
                pack_b_strided(dst, b, k0, kc * ks, jc + p * NR, cols, NR);
        }
        if (a->mode == TR_A_CONVT) {
            /* pixel info of this K block; per tap one base pointer per pixel
             * (channel 0 of that tap, or zeros), offset by the tile's channel */
            const tr_conv_geom *cg = a->conv;
            conv_rows_info(cg, k0, kc, kinfo);
            int cur_tap = -1;
            for (int64_t r = 0; r < mc; r += MR) {
                const int64_t col = i0 + r;
                const int tp = (int)(col / cg->C), ic0 = (int)(col % cg->C);
                if (tp != cur_tap) {
                    const int dy = (tp / cg->kw) * cg->dh, dx = (tp % cg->kw) * cg->dw;
                    for (int64_t k = 0; k < kc; k++) {
                        const int iy = kinfo[k].iy0 + dy, ix = kinfo[k].ix0 + dx;
                        kptrs[k] = (iy >= 0 && iy < cg->H && ix >= 0 && ix < cg->W)
                                       ? a->a + kinfo[k].img + ((int64_t)iy * cg->W + ix) * cg->C
                                       : a->zero;
                    }
                    cur_tap = tp;
                }
                const int64_t rows = mc - r < MR ? mc - r : MR;
                for (int64_t p = p0; p < p1; p++) {
                    const int64_t cols = nc - p * NR < NR ? nc - p * NR : NR;
                    uk->kptr((size_t)kc, kptrs, (size_t)ic0, PANEL(p, kc, 1, k0), PANEL_LD(p),
                             c + (i0 + r) * ldc + jc + p * NR, (size_t)ldc, (size_t)rows,
                             (size_t)cols, acc);
                }
            }
            continue;
        }
        /* TR_A_CONV with several panels: the row pointers of every row block
         * once per K block, not once per panel */
        const bool hoist = rpall && a->mode == TR_A_CONV && p1 - p0 > 1;
        if (hoist)
            for (int64_t r = 0; r < mc; r += MR)
                a_rows(a, info, i0, r, mc - r < MR ? mc - r : MR, MR, k0, tap, c0,
                       rpall + (r / MR) * ks * MR);
        for (int64_t p = p0; p < p1; p++) {
            const int64_t cols = nc - p * NR < NR ? nc - p * NR : NR;
            const float *bpp = PANEL(p, kc, ks, k0);
            const size_t ldb = PANEL_LD(p);
            for (int64_t r = 0; r < mc; r += MR) {
                const int64_t rows = mc - r < MR ? mc - r : MR;
                float *cp = c + (i0 + r) * ldc + jc + p * NR;
                if (a->mode == TR_A_KMAJOR) {
                    const float *ap = a->a + k0 * a->lda + i0 + r;
                    if (rows == MR) {
                        uk->kmajor((size_t)kc, ap, (size_t)a->lda, bpp, ldb, cp, (size_t)ldc,
                                   (size_t)rows, (size_t)cols, acc);
                    } else {
                        /* tail rows: copy so the kernel never reads past A */
                        for (int64_t k = 0; k < kc; k++)
                            for (int q = 0; q < MR; q++)
                                tail[k * MR + q] = q < rows ? ap[k * a->lda + q] : 0.0f;
                        uk->kmajor((size_t)kc, tail, (size_t)MR, bpp, ldb, cp, (size_t)ldc,
                                   (size_t)rows, (size_t)cols, acc);
                    }
                } else if (hoist) {
                    uk->rows((size_t)kc, (size_t)ks, rpall + (r / MR) * ks * MR, bpp, ldb, cp,
                             (size_t)ldc, (size_t)rows, (size_t)cols, acc);
                } else {
                    a_rows(a, info, i0, r, rows, MR, k0, tap, c0, rp);
                    uk->rows((size_t)kc, (size_t)ks, rp, bpp, ldb, cp, (size_t)ldc, (size_t)rows,
                             (size_t)cols, acc);
                }
            }
        }
    }
}

#undef PANEL
#undef PANEL_LD

static void tiles_range(void *arg, int64_t t0, int64_t t1) {
    const gemm_job *j = arg;
    float *bp = NULL;
    if (!j->pre) {
        bp = tr_alloc((size_t)(TR_GEMM_KC * j->kb_ks * j->g * j->uk->nr) * sizeof(float));
        if (!bp) return; /* out of memory: nothing sane to do inside a kernel */
    }
    /* row pointers of a whole M block (NULL: computed per call instead) */
    const float **rpall = NULL;
    if (j->a->mode == TR_A_CONV)
        rpall = tr_alloc((size_t)((j->MC / j->uk->mr + 1) * j->kb_ks * j->uk->mr) *
                         sizeof(*rpall));
    for (int64_t t = t0; t < t1; t++) gemm_tile(j, t, bp, rpall);
    tr_free(rpall);
    tr_free(bp);
}

void tr_gemm_ex(const tr_ukernel *uk, int64_t M, int64_t N, int64_t K, const tr_gemm_a *a,
                const tr_gemm_b *b, float *c, ptrdiff_t ldc, bool accumulate, tr_pool *pool) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate)
            for (int64_t i = 0; i < M; i++) memset(c + i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    if ((double)M * (double)N * (double)K < 262144.0) pool = NULL; /* not worth waking threads */
    const int nt = tr_pool_threads(pool);
    gemm_job j;
    memset(&j, 0, sizeof(j));
    j.uk = uk;
    j.M = M;
    j.N = N;
    j.K = K;
    j.a = a;
    j.b = b;
    j.c = c;
    j.ldc = ldc;
    j.accumulate = accumulate;
    const int MR = uk->mr, NR = uk->nr;
    j.MC = (TR_GEMM_MC / MR) * MR;
    /* Weight gradients (A = im2col^T: M = taps x channels, small; K = all
     * pixels of the batch, large): as few M blocks as leave 2 tiles per
     * thread (one on one thread), since every M block streams all of the
     * activations and dZ again (at batch 128 they no longer fit in L2).
     * Tiling never changes a result. */
    if (a->mode == TR_A_CONVT && M <= 4 * TR_GEMM_MC) {
        const int64_t npan = ((N < TR_GEMM_NC ? N : TR_GEMM_NC) + NR - 1) / NR;
        const int64_t mb = (2 * (int64_t)nt + npan - 1) / npan;
        const int64_t rows = nt > 1 ? (M + mb - 1) / mb : M;
        j.MC = ((rows + MR - 1) / MR) * MR;
    }
    j.NC = TR_GEMM_NC;
    j.kb = make_kblocks(a, K);
    if (j.kb.taps > MAX_TAPS) {
        /* too many taps for one block: per-tap blocks */
        j.kb.chunks = (j.kb.C + TR_GEMM_KC - 1) / TR_GEMM_KC;
        j.kb.n = j.kb.taps * j.kb.chunks;
    }
    j.kb_ks = (j.kb.taps && !j.kb.chunks) ? j.kb.taps : 1;
    const int64_t mblocks = (M + j.MC - 1) / j.MC;
    j.nblocks = (N + j.NC - 1) / j.NC;
    j.npan_max = ((j.NC < N ? j.NC : N) + NR - 1) / NR;
    /* Panels per tile: as many as possible while leaving >= 8 tiles per
     * thread (dynamic balance on a busy machine). */
    j.g = j.npan_max;
    while (j.g > 1 && mblocks * j.nblocks * ((j.npan_max + j.g - 1) / j.g) < 8 * (int64_t)nt)
        j.g = (j.g + 1) / 2;
    j.groups_per_nb = (j.npan_max + j.g - 1) / j.g;
    const int64_t ntiles = mblocks * j.nblocks * j.groups_per_nb;
    /* Several M blocks share the B panels and B is small (weights): pack all
     * of B once up front instead of once per tile. */
    const int64_t npan_all = j.nblocks * j.npan_max;
    /* ... unless every panel can be read in place (row-major B, whole
     * panels): copying it would only add a pass over B */
    const bool in_place = b->mode == TR_B_STRIDED && b->cs == 1 && N % NR == 0;
    if (mblocks > 1 && !in_place && (double)npan_all * NR * (double)K <= (double)(4 << 20)) {
        j.pre = tr_alloc((size_t)(npan_all * NR * K) * sizeof(float));
        if (j.pre) tr_pool_run(pool, npan_all * j.kb.n, 4, prepack_range, &j);
    }
    tr_pool_run(pool, ntiles, 1, tiles_range, &j);
    tr_free(j.pre);
}

void tr_gemm(int64_t M, int64_t N, int64_t K, const float *a, ptrdiff_t a_rs, ptrdiff_t a_cs,
             const float *b, ptrdiff_t b_rs, ptrdiff_t b_cs, float *c, ptrdiff_t ldc,
             bool accumulate, tr_pool *pool) {
    tr_gemm_a A;
    memset(&A, 0, sizeof(A));
    A.a = a;
    if (a_cs == 1) {
        A.mode = TR_A_ROWS;
        A.lda = a_rs;
    } else {
        A.mode = TR_A_KMAJOR;
        A.lda = a_cs;
    }
    tr_gemm_b B;
    memset(&B, 0, sizeof(B));
    B.mode = TR_B_STRIDED;
    B.b = b;
    B.rs = b_rs;
    B.cs = b_cs;
    tr_gemm_ex(tr_ukernel_best(), M, N, K, &A, &B, c, ldc, accumulate, pool);
}
