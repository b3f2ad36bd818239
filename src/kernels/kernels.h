/* kernels.h - float micro-kernels and their run-time dispatch (internal).
 *
 * Every micro-kernel exists as a scalar reference (src/kernels/ref/) that
 * DEFINES the result and as ISA variants (src/kernels/x86/, one ISA per file)
 * that must match it bit for bit. That is possible because all variants
 * evaluate each output element with the same operation sequence:
 *
 *   acc = bias; for each tap t, for each k: acc = fma(a[t][k], w[t][k], acc);
 *   y = clamp(acc)  with  clamp(v) = min(max(v, vmin), vmax) where max(x, m)
 *   returns x unless m > x (so NaN propagates, as TFLite's std::max does).
 *
 * The reference uses fmaf() (one rounding), the vector variants use FMA
 * instructions, so blocking, packing, vector width and thread count never
 * change a result.
 *
 * The ISA set is chosen once per interpreter (mopt_isa_best) from CPU
 * features checked at run time; nothing assumes features at build time.
 */
#ifndef MOPT_KERNELS_KERNELS_H
#define MOPT_KERNELS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Indirect GEMM micro-kernel ("igemm", as in XNNPACK):
 *   C[r][j] = clamp(bias[j] + sum_t sum_k A_t[r][k] * B[t][k][j])
 * for r < mr (<= MR) and j < nc (<= NR).
 *  a: ks*MR row pointers, tap-major: a[t*MR + r] points at kc floats. Rows
 *     r >= mr must still be valid pointers (callers repeat the last row).
 *  w: one packed panel: NR bias values, then ks*kc rows of NR weights
 *     (zero padded past the real columns); see mopt_f32_gemm_pack.
 *  c: row r starts at c + r*c_stride (floats); only nc columns are written. */
typedef void (*mopt_f32_igemm_fn)(size_t mr, size_t nc, size_t kc, size_t ks, const float *const *a,
                                  const float *w, float *c, size_t c_stride, float vmin,
                                  float vmax);

typedef struct mopt_f32_igemm_ukernel {
    const char *name; /* e.g. "f32_igemm_minmax_8x32__avx512f" */
    int mr, nr;
    mopt_f32_igemm_fn fn;
} mopt_f32_igemm_ukernel;

/* Depthwise (multiplier 1) micro-kernel for one output pixel:
 *   out[c] = clamp(bias[c] + sum_t in_t[c] * w[t*channels + c]),  c < channels
 * in: ks pointers to `channels` floats (a zero row for padded taps);
 * bias may be NULL (zero). */
typedef void (*mopt_f32_dwconv_fn)(size_t channels, size_t ks, const float *const *in,
                                   const float *w, const float *bias, float *out, float vmin,
                                   float vmax);

/* Elementwise binary kernels: y[i] = clamp(a[i] OP b[i]) ("vv") or
 * clamp(a[i] OP b[0]) ("vs"), for n elements. y may equal a or b (in place).
 * RSUB is b - a; MAX(a, b) = a < b ? b : a and MIN(a, b) = a > b ? b : a
 * (TFLite's std::max / std::min order: a NaN in b is dropped, a NaN in a
 * kept). Pass lo = -inf, hi = +inf for no clamp. */
typedef enum mopt_vop {
    MOPT_VOP_ADD = 0,
    MOPT_VOP_SUB,
    MOPT_VOP_RSUB,
    MOPT_VOP_MUL,
    MOPT_VOP_DIV,
    MOPT_VOP_MAX,
    MOPT_VOP_MIN,
    MOPT_VOP_COUNT
} mopt_vop;

typedef void (*mopt_f32_vbinary_fn)(size_t n, const float *a, const float *b, float *y, float lo,
                                    float hi);
/* y[i] = clamp(x[i]); y may equal x. */
typedef void (*mopt_f32_vclamp_fn)(size_t n, const float *x, float *y, float lo, float hi);

/* One instruction-set level: the kernels the interpreter uses. */
typedef struct mopt_isa {
    const char *name; /* "ref", "avx2", "avx512f" */
    /* wide: more columns per tile (most layers); narrow: few output channels;
     * row: one row (mr = 1) for GEMV-like layers (FC with batch 1). */
    mopt_f32_igemm_ukernel igemm_wide, igemm_narrow, igemm_row;
    mopt_f32_dwconv_fn dwconv;
    mopt_f32_vbinary_fn vbinary_vv[MOPT_VOP_COUNT], vbinary_vs[MOPT_VOP_COUNT];
    mopt_f32_vclamp_fn vclamp;
} mopt_isa;

/* Variants (defined in their own files). */
extern const mopt_isa mopt_isa_ref;
extern const mopt_isa mopt_isa_avx2;
extern const mopt_isa mopt_isa_avx512;

/* Best level this CPU supports (never NULL). */
const mopt_isa *mopt_isa_best(void);
/* All levels this CPU supports, best last; returns the count (<= max). */
int mopt_isa_supported(const mopt_isa **out, int max);

/* Scalar clamp with the kernels' NaN semantics (see above). */
static inline float mopt_clampf(float v, float vmin, float vmax) {
    v = vmin > v ? vmin : v;
    return vmax < v ? vmax : v;
}

/* ---- GEMM packing and the blocked driver (ISA-neutral, kernels/gemm.c) ---- */

/* Floats needed to pack n output channels of ks*kc weights for tile width nr. */
size_t mopt_f32_gemm_packed_floats(size_t n, size_t ks, size_t kc, int nr);
/* Packs w [n][ks*kc] (row-major, TFLite's [OC,KH,KW,IC] / [units,depth]) and
 * bias [n] (NULL = zeros) into panels of nr columns:
 *   panel p: bias[p*nr .. p*nr+nr), then for t < ks, k < kc: w[p*nr + j][t*kc + k], j < nr. */
void mopt_f32_gemm_pack(size_t n, size_t ks, size_t kc, int nr, const float *w, const float *bias,
                        float *packed);

/* Convolution geometry in NHWC (also used for FC: 1x1 "image" of batches). */
typedef struct mopt_conv_geom {
    int32_t batch, in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w;
    int32_t pad_top, pad_left;
} mopt_conv_geom;

/* Indirection buffer (as XNNPACK's): for every tile of mr output pixels and
 * every tap, mr pointers to in_c input floats (the zero row for padded taps;
 * rows past the last pixel repeat it). Shapes are static, so it is built
 * once per input address. Sizes are in pointers. */
size_t mopt_f32_conv_indirection_size(const mopt_conv_geom *g, int mr);
void mopt_f32_conv_indirection_init(const mopt_conv_geom *g, int mr, const float *in,
                                    const float *zero, const float **ind);

/* Runs a whole convolution (or FC when k = 1, stride 1, no padding) from an
 * indirection buffer built for uk->mr, writing NHWC out; packed weights from
 * mopt_f32_gemm_pack with uk->nr. Work is split over output-pixel tiles or
 * output-channel panels only, so the thread count never changes results. */
void mopt_f32_conv_igemm(const mopt_conv_geom *g, const mopt_f32_igemm_ukernel *uk,
                         const float *const *ind, const float *packed, float *out, float vmin,
                         float vmax, int num_threads);

/* Depthwise conv with multiplier 1 using fn, from an indirection buffer
 * built with mr = 1 (one pointer per output pixel and tap). bias may be
 * NULL. Splits over output rows. */
void mopt_f32_dwconv(const mopt_conv_geom *g, mopt_f32_dwconv_fn fn, const float *const *ind,
                     const float *w, const float *bias, float *out, float vmin, float vmax,
                     int num_threads);


/* ---- int8 GEMM / depthwise micro-kernels (kernels/qgemm.c, x86/qs8_*.c) ----
 *
 * Integer results do not depend on the order of additions when the sums are
 * taken modulo 2^32, and that is exactly what TFLite's int32 accumulators
 * produce (two's-complement wrap). So the int8 kernels may reorder, split
 * and vectorize freely: every variant returns the same int32 accumulators
 * as the reference loops of src/ops/q_conv.c / q_fc.c, bit for bit. The
 * zero points are folded into a per-column init value at prepare time:
 *   sum_k w[k] * (x[k] + in_off) = sum_k w[k] * x[k] + in_off * sum_k w[k]
 * (padded taps hold the input zero point, so they contribute 0 on the left
 * and in_zp * w on the right, which the fold cancels). Kernels that read
 * activations as unsigned bytes (VNNI vpdpbusd: u8 x s8) see x + 128 and
 * add 128 * sum w; their init uses in_off - 128 instead (u8_input = 1). */

/* Packed int8 weights, for tile width nr and depth kp (a multiple of 4):
 * panel p = nr int32 init values, then kp/4 groups of nr*4 bytes where
 * group q holds, for column j, w[p*nr + j][4q .. 4q+3] (zeros past the real
 * depth and columns). */
size_t mopt_qs8_gemm_packed_bytes(size_t n, size_t kp, int nr);
static inline size_t mopt_qs8_round_k(size_t k) { return (k + 3) & ~(size_t)3; }
/* w: [n][k] row-major int8; init: n int32 (already including bias and the
 * zero-point fold for the kernel's u8_input). */
void mopt_qs8_gemm_pack(size_t n, size_t k, size_t kp, int nr, const int8_t *w,
                        const int32_t *init, int8_t *packed);

/* C[r][j] = init[j] + sum_{k < kp} A[r][k] * W[k][j]  (mod 2^32), r < mr,
 * j < nr (all nr columns are written; c has room for them).
 * a: row r at a + r * a_stride, kp readable bytes each; rows r >= mr are
 * not read. w: one packed panel. */
typedef void (*mopt_qs8_gemm_fn)(size_t mr, size_t kp, const int8_t *a, size_t a_stride,
                                 const int8_t *w, int32_t *c, size_t c_stride);

typedef struct mopt_qs8_gemm_ukernel {
    const char *name; /* e.g. "qs8_gemm_8x16c4__avx512vnni" */
    int mr, nr;
    int u8_input; /* 1: computes with x + 128 (see above) */
    mopt_qs8_gemm_fn fn;
} mopt_qs8_gemm_ukernel;

/* Depthwise (multiplier 1) int8 accumulators for one output pixel:
 *   acc[c] = init[c] + sum_t in_t[c] * w[t * cp + c]   (mod 2^32), c < channels
 * in: ks pointers to `channels` int8 (padded taps point at a row of the
 * input zero point); w: int16 [ks][cp], cp = channels rounded up to 16;
 * init: int32 [cp]. Products |x * w| <= 2^14 are exact in int16. */
typedef void (*mopt_qs8_dw_fn)(size_t channels, size_t ks, const int8_t *const *in,
                               const int16_t *w, const int32_t *init, int32_t *acc);

/* Requantization of int32 accumulators to int8, per output column c:
 *   MOPT_QS8_RQ_MBQM:   v = MultiplyByQuantizedMultiplier of the default
 *                       TFLite build (gemmlowp double rounding, exactly
 *                       mopt_mbqm_double(acc, mult[c], left[c] - right[c]))
 *                       with left = max(shift, 0), right = max(-shift, 0),
 *                       both in [0, 31];
 *   MOPT_QS8_RQ_DROUND: v = round_half_away((double)acc * scale[c]),
 *                       saturated to int32;
 * then y = clamp(v + out_off, lo, hi) (lo, hi within int8). */
enum { MOPT_QS8_RQ_MBQM = 0, MOPT_QS8_RQ_DROUND = 1 };
typedef struct mopt_qs8_rq {
    int method;
    const int32_t *mult, *left, *right; /* MBQM, per column */
    const double *scale;                /* DROUND, per column */
    int32_t out_off, lo, hi;
} mopt_qs8_rq;
/* y[i] = requant(acc[i]) with the constants of column col0 + i, i < n. */
typedef void (*mopt_qs8_requant_fn)(size_t n, const int32_t *acc, const mopt_qs8_rq *p,
                                    size_t col0, int8_t *y);
/* One element (the reference every variant matches; also their tails). */
int8_t mopt_qs8_requant1(int32_t acc, const mopt_qs8_rq *p, size_t c);

typedef struct mopt_qs8_isa {
    const char *name; /* "ref", "avx2", "avx512vnni" */
    mopt_qs8_gemm_ukernel gemm, gemm_row;
    mopt_qs8_dw_fn dw;
    mopt_qs8_requant_fn requant;
} mopt_qs8_isa;

extern const mopt_qs8_isa mopt_qs8_isa_ref;
extern const mopt_qs8_isa mopt_qs8_isa_avx2;
extern const mopt_qs8_isa mopt_qs8_isa_avx512vnni;

/* The int8 kernels for a float ISA level: ref -> ref, avx2 -> avx2,
 * avx512 -> avx512vnni when the CPU has AVX512-VNNI/BW (else avx2). NULL
 * means the best level. */
const mopt_qs8_isa *mopt_qs8_isa_for(const mopt_isa *isa);
/* All int8 levels this CPU supports, best last; returns the count. */
int mopt_qs8_isa_supported(const mopt_qs8_isa **out, int max);

/* A whole int8 GEMM over m rows (output pixels / FC rows), n columns:
 * rows come from the im2col of a convolution (or the input rows directly),
 * results go to finish() one tile at a time. */
typedef struct mopt_qs8_gemm_job {
    const mopt_qs8_gemm_ukernel *uk;
    const mopt_conv_geom *g; /* FC: batch = rows, in/out 1x1, k 1x1 */
    const int8_t *in;
    int8_t pad_value; /* input zero point: value of padded taps */
    size_t m, n, k, kp;
    int direct; /* A row r is in + r * k (k == kp, 1x1, stride 1, no pad) */
    const int8_t *packed;
    /* Called with the int32 accumulators of rows [row0, row0 + rows) and
     * columns [col0, col0 + cols): acc[r * acc_stride + c]. */
    void (*finish)(void *arg, size_t row0, size_t rows, size_t col0, size_t cols,
                   const int32_t *acc, size_t acc_stride);
    void *finish_arg;
} mopt_qs8_gemm_job;

/* Scratch bytes run_gemm needs for num_threads threads. */
size_t mopt_qs8_gemm_scratch(const mopt_qs8_gemm_job *j, int num_threads);
void mopt_qs8_gemm_run(const mopt_qs8_gemm_job *j, void *scratch, int num_threads);

#endif
