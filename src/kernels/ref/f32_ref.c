/* f32_ref.c - scalar reference float kernels (igemm, depthwise,
 * elementwise). These DEFINE the results: every optimized variant must
 * reproduce them bit for bit (same fma sequence per output element, same
 * clamp and MAX/MIN semantics; see kernels.h). */
#include <math.h>

#include "kernels/kernels.h"

#define REF_MR 4
#define REF_NR 8

/* MR is the tile height the indirection buffer was built for. */
static inline void igemm_body(const size_t MR, size_t mr, size_t nc, size_t kc, size_t ks,
                              const float *const *a, const float *w, float *c, size_t c_stride,
                              float vmin, float vmax) {
    const size_t nr = REF_NR;
    for (size_t r = 0; r < mr; r++) {
        for (size_t j = 0; j < nc; j++) {
            float acc = w[j];
            const float *wp = w + nr + j;
            for (size_t t = 0; t < ks; t++) {
                const float *ap = a[t * MR + r];
                for (size_t k = 0; k < kc; k++, wp += nr) acc = fmaf(ap[k], *wp, acc);
            }
            c[r * c_stride + j] = mopt_clampf(acc, vmin, vmax);
        }
    }
}

static void f32_igemm_ref(size_t mr, size_t nc, size_t kc, size_t ks, const float *const *a,
                          const float *w, float *c, size_t c_stride, float vmin, float vmax) {
    igemm_body(REF_MR, mr, nc, kc, ks, a, w, c, c_stride, vmin, vmax);
}

static void f32_igemm_ref_row(size_t mr, size_t nc, size_t kc, size_t ks, const float *const *a,
                              const float *w, float *c, size_t c_stride, float vmin, float vmax) {
    igemm_body(1, mr, nc, kc, ks, a, w, c, c_stride, vmin, vmax);
}

static void f32_dwconv_ref(size_t channels, size_t ks, const float *const *in, const float *w,
                           const float *bias, float *out, float vmin, float vmax) {
    for (size_t c = 0; c < channels; c++) {
        float acc = bias ? bias[c] : 0.0f;
        for (size_t t = 0; t < ks; t++) acc = fmaf(in[t][c], w[t * channels + c], acc);
        out[c] = mopt_clampf(acc, vmin, vmax);
    }
}

#define REF_VBIN(NAME, EXPR)                                                                       \
    static void NAME##_vv(size_t n, const float *a, const float *b, float *y, float lo,            \
                          float hi) {                                                              \
        for (size_t i = 0; i < n; i++) {                                                           \
            float x = a[i], z = b[i];                                                              \
            y[i] = mopt_clampf(EXPR, lo, hi);                                                      \
        }                                                                                          \
    }                                                                                              \
    static void NAME##_vs(size_t n, const float *a, const float *b, float *y, float lo,            \
                          float hi) {                                                              \
        const float z = b[0];                                                                      \
        for (size_t i = 0; i < n; i++) {                                                           \
            float x = a[i];                                                                        \
            y[i] = mopt_clampf(EXPR, lo, hi);                                                      \
        }                                                                                          \
    }

REF_VBIN(add, x + z)
REF_VBIN(sub, x - z)
REF_VBIN(rsub, z - x)
REF_VBIN(mul, x *z)
REF_VBIN(div, x / z)
REF_VBIN(max, x < z ? z : x)
REF_VBIN(min, x > z ? z : x)

static void vclamp_ref(size_t n, const float *x, float *y, float lo, float hi) {
    for (size_t i = 0; i < n; i++) y[i] = mopt_clampf(x[i], lo, hi);
}

const mopt_isa mopt_isa_ref = {
    "ref",
    {"f32_igemm_minmax_4x8__scalar", REF_MR, REF_NR, f32_igemm_ref},
    {"f32_igemm_minmax_4x8__scalar", REF_MR, REF_NR, f32_igemm_ref},
    {"f32_igemm_minmax_1x8__scalar", 1, REF_NR, f32_igemm_ref_row},
    f32_dwconv_ref,
    {add_vv, sub_vv, rsub_vv, mul_vv, div_vv, max_vv, min_vv},
    {add_vs, sub_vs, rsub_vs, mul_vs, div_vs, max_vs, min_vs},
    vclamp_ref,
};
