/* gemm_ref.c - scalar reference micro-kernels. These DEFINE the float
 * convolution results: every optimized variant must reproduce them bit for
 * bit (same fma sequence per output element, see kernels.h). */
#include <math.h>

#include "kernels/kernels.h"

#define REF_MR 4
#define REF_NR 8

static void f32_igemm_ref(size_t mr, size_t nc, size_t kc, size_t ks, const float *const *a,
                          const float *w, float *c, size_t c_stride, float vmin, float vmax) {
    const size_t nr = REF_NR;
    for (size_t r = 0; r < mr; r++) {
        for (size_t j = 0; j < nc; j++) {
            float acc = w[j];
            const float *wp = w + nr + j;
            for (size_t t = 0; t < ks; t++) {
                const float *ap = a[t * REF_MR + r];
                for (size_t k = 0; k < kc; k++, wp += nr) acc = fmaf(ap[k], *wp, acc);
            }
            c[r * c_stride + j] = mopt_clampf(acc, vmin, vmax);
        }
    }
}

static void f32_dwconv_ref(size_t channels, size_t ks, const float *const *in, const float *w,
                           const float *bias, float *out, float vmin, float vmax) {
    for (size_t c = 0; c < channels; c++) {
        float acc = bias ? bias[c] : 0.0f;
        for (size_t t = 0; t < ks; t++) acc = fmaf(in[t][c], w[t * channels + c], acc);
        out[c] = mopt_clampf(acc, vmin, vmax);
    }
}

const mopt_isa mopt_isa_ref = {
    "ref",
    {"f32_igemm_minmax_4x8__scalar", REF_MR, REF_NR, f32_igemm_ref},
    {"f32_igemm_minmax_4x8__scalar", REF_MR, REF_NR, f32_igemm_ref},
    f32_dwconv_ref,
};
