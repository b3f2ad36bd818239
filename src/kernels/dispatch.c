/* dispatch.c - picks the kernel ISA level from CPU features at run time.
 * The build targets generic x86-64; AVX2/FMA and AVX-512 kernels live in
 * files compiled with target attributes and are only called when the CPU
 * (and OS, which __builtin_cpu_supports also checks via XGETBV) has them. */
#include "kernels/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#define MOPT_X86 1
#endif

static int have_avx2_fma(void) {
#ifdef MOPT_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static int have_avx512f(void) {
#ifdef MOPT_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && have_avx2_fma();
#else
    return 0;
#endif
}

int mopt_isa_supported(const mopt_isa **out, int max) {
    int n = 0;
    if (n < max) out[n++] = &mopt_isa_ref;
#ifdef MOPT_X86
    if (n < max && have_avx2_fma()) out[n++] = &mopt_isa_avx2;
    if (n < max && have_avx512f()) out[n++] = &mopt_isa_avx512;
#endif
    return n;
}

const mopt_isa *mopt_isa_best(void) {
    const mopt_isa *list[4];
    int n = mopt_isa_supported(list, 4);
    return list[n - 1];
}
