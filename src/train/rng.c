/* rng.c - PCG32 (M.E. O'Neill, "PCG: A Family of Simple Fast Space-Efficient
 * Statistically Good Algorithms for Random Number Generation", XSH-RR
 * output on a 64-bit LCG) and a splitmix64-style hash for counter-based
 * randomness. All state is explicit. */
#include <math.h>

#include "mopt/train.h"

#define PCG_MULT 6364136223846793005ULL

void mopt_rng_seed(mopt_rng *r, uint64_t seed, uint64_t stream) {
    /* pcg32_srandom_r: state 0, inc odd, step, add seed, step. */
    r->state = 0u;
    r->inc = (stream << 1u) | 1u;
    (void)mopt_rng_u32(r);
    r->state += seed;
    (void)mopt_rng_u32(r);
}

uint32_t mopt_rng_u32(mopt_rng *r) {
    uint64_t old = r->state;
    r->state = old * PCG_MULT + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31u));
}

uint32_t mopt_rng_below(mopt_rng *r, uint32_t bound) {
    if (bound <= 1u) return 0u;
    /* Rejection of the low values that would bias the modulo (pcg32_boundedrand_r). */
    uint32_t threshold = (uint32_t)(-bound) % bound;
    for (;;) {
        uint32_t v = mopt_rng_u32(r);
        if (v >= threshold) return v % bound;
    }
}

float mopt_rng_uniform(mopt_rng *r) {
    return (float)(mopt_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

float mopt_rng_normal(mopt_rng *r) {
    /* Box-Muller; u1 in (0, 1] so the log is finite. */
    double u1 = ((double)(mopt_rng_u32(r) >> 8) + 1.0) / 16777216.0;
    double u2 = (double)(mopt_rng_u32(r) >> 8) / 16777216.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t mopt_hash64(uint64_t key, uint64_t counter) {
    uint64_t z = key ^ (counter * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
