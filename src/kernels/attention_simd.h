#ifndef LLC_ATTENTION_SIMD_H
#define LLC_ATTENTION_SIMD_H
/*
 * scores: four positions at a time per query row, four accumulators whose horizontal sums are taken
 * together (one vector of four dot products: a quarter of the shuffles of four separate reductions).
 * accumulate: the query rows' accumulators for a slice of head_dim (64 floats with AVX-512, 16 with
 * AVX2) stay in registers for the whole tile: per position, each value vector is loaded once and each
 * weight broadcast once for all the FMAs that use them; acc is read and written once per tile.
 * exp_sum: Cephes' expf (degree-5 polynomial on [-ln2/2, ln2/2] after a two-constant Cody-Waite
 * reduction), within 2 ulp of expf; inputs are <= 0 (scores minus their maximum) and anything below
 * ln(FLT_MIN) gives 0.
 * Kernels templated on the row count are always_inline with constant counts so the accumulator
 * arrays become registers.
 */


#define EXP_LO -87.33654475f /* ln(FLT_MIN) */
#define EXP_LOG2E 1.44269504088896341f
#define EXP_C1 0.693359375f
#define EXP_C2 -2.12194440e-4f
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

#endif
