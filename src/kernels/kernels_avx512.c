/* The AVX-512 table (F + BW + VL + VNNI + BF16, with AVX2/FMA/F16C): every slot vectorized, and the
 * Q4_0, Q8_0, BF16, Q4_K and Q6_K matrices repacked for the 16-row kernels. */
#include "kernels/kernels.h"

#if defined(__x86_64__)
const llc_kernels llc_kernels_avx512 = {
    .isa = LLC_ISA_AVX512,
    .name = "avx512",
    .vec_dot = {
        [LLC_F32] = llc_dot_f32_avx512,
        [LLC_F16] = llc_dot_f16_avx512,
        [LLC_BF16] = llc_dot_bf16_avx512,
        [LLC_Q8_0] = llc_dot_q8_0_avx512,
        [LLC_Q4_0] = llc_dot_q4_0_avx512,
        [LLC_Q4_K] = llc_dot_q4_K_avx512,
        [LLC_Q6_K] = llc_dot_q6_K_avx512,
        [LLC_Q8_K] = llc_dot_q8_K_scalar, /* not a real weight type: correct is enough */
    },
    .gemm4 = {
        [LLC_Q8_0] = llc_gemm4_q8_0_avx512,
        [LLC_Q4_0] = llc_gemm4_q4_0_avx512,
        [LLC_BF16] = llc_gemm4_bf16_avx512,
    },
    .packed = {
        [LLC_Q4_0] = llc_packed_gemm_q4_0_avx512,
        [LLC_Q8_0] = llc_packed_gemm_q8_0_avx512,
        [LLC_BF16] = llc_packed_gemm_bf16_avx512,
        [LLC_Q4_K] = llc_packed_gemm_q4_K_avx512,
        [LLC_Q6_K] = llc_packed_gemm_q6_K_avx512,
    },
    .act_q8_0 = llc_act_q8_0_avx512,
    .attn = {llc_attn_scores_avx512, llc_attn_scores_q8_0_avx512, llc_attn_max_avx512, llc_attn_exp_sum_avx512, llc_attn_accumulate_avx512,
             llc_attn_to_f32_avx512},
};
#endif
