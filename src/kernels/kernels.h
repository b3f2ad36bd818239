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
typedef void (*mopt_f32_igemm_fn)(size_t mr, size_t nc, size_t kc, size_t ks,
                                  const float *const *a, const float *w, float *c,
                                  size_t c_stride, float vmin, float vmax);

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

/* One instruction-set level: the kernels the interpreter uses. */
typedef struct mopt_isa {
    const char *name; /* "ref", "avx2", "avx512f" */
    /* wide: more columns per tile (most layers); narrow: few output channels. */
    mopt_f32_igemm_ukernel igemm_wide, igemm_narrow;
    mopt_f32_dwconv_fn dwconv;
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
void mopt_f32_gemm_pack(size_t n, size_t ks, size_t kc, int nr, const float *w,
                        const float *bias, float *packed);

/* Convolution geometry in NHWC (also used for FC: 1x1 "image" of batches). */
typedef struct mopt_conv_geom {
    int32_t batch, in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w;
    int32_t pad_top, pad_left;
} mopt_conv_geom;

/* Scratch bytes per thread for mopt_f32_conv_igemm. */
size_t mopt_f32_conv_igemm_scratch(const mopt_conv_geom *g, const mopt_f32_igemm_ukernel *uk);

/* Runs a whole convolution (or FC when k = 1, stride 1, no padding):
 * in NHWC, out NHWC, packed weights from mopt_f32_gemm_pack with uk->nr.
 * zero: in_c zeros (for padded taps). scratch: num_threads blocks of
 * mopt_f32_conv_igemm_scratch bytes (pointer-aligned). Work is split over
 * output pixels or output-channel panels only. */
void mopt_f32_conv_igemm(const mopt_conv_geom *g, const mopt_f32_igemm_ukernel *uk,
                         const float *in, const float *packed, const float *zero, float *out,
                         float vmin, float vmax, void *scratch, int num_threads);

/* Depthwise conv with multiplier 1 using isa->dwconv; scratch per thread of
 * mopt_f32_dwconv_scratch bytes; splits over output rows. bias may be NULL. */
size_t mopt_f32_dwconv_scratch(const mopt_conv_geom *g);
void mopt_f32_dwconv(const mopt_conv_geom *g, mopt_f32_dwconv_fn fn, const float *in,
                     const float *w, const float *bias, const float *zero, float *out, float vmin,
                     float vmax, void *scratch, int num_threads);

#endif
