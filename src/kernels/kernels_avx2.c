/* The AVX2 table (AVX2 + FMA + F16C): dot products and attention pieces; no tiles and no packed
 * kernels (both are built on AVX-512 VNNI / BF16), the Q8_0 quantizer is the scalar one. */
#include "kernels/kernels.h"

#if defined(__x86_64__)
const llc_kernels llc_kernels_avx2 = {
    .isa = LLC_ISA_AVX2,
    .name = "avx2",
    .vec_dot = {
        [LLC_F32] = llc_dot_f32_avx2,
        [LLC_F16] = llc_dot_f16_avx2,
        [LLC_BF16] = llc_dot_bf16_avx2,
        [LLC_Q8_0] = llc_dot_q8_0_avx2,
        [LLC_Q4_0] = llc_dot_q4_0_avx2,
        [LLC_Q4_K] = llc_dot_q4_K_avx2,
        [LLC_Q6_K] = llc_dot_q6_K_avx2,
        [LLC_Q8_K] = llc_dot_q8_K_scalar, /* not a real weight type: correct is enough */
    },
    .act_q8_0 = llc_act_q8_0_scalar,
    .attn = {llc_attn_scores_avx2, llc_attn_scores_q8_0_avx2, llc_attn_max_avx2, llc_attn_exp_sum_avx2, llc_attn_accumulate_avx2, llc_attn_to_f32_avx2},
};
#endif
