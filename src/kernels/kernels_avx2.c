/* The AVX2 table (AVX2 + FMA + F16C): dot products, attention pieces, and the Q4_0, Q8_0, BF16, Q4_K
 * and Q6_K matrices repacked for the 16-row kernels (the AVX-512 layout, with vpmaddubsw/vpmaddwd in
 * place of VNNI: packed_avx2.c). No 4 x 4 tiles: packed matrices take prompts and batches, and the
 * types that stay in the file layout have no AVX2 tile. */
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
    .packed = {
        [LLC_Q4_0] = llc_packed_gemm_q4_0_avx2,
        [LLC_Q8_0] = llc_packed_gemm_q8_0_avx2,
        [LLC_BF16] = llc_packed_gemm_bf16_avx2,
        [LLC_Q4_K] = llc_packed_gemm_q4_K_avx2,
        [LLC_Q6_K] = llc_packed_gemm_q6_K_avx2,
    },
    .act_q8_0 = llc_act_q8_0_avx2,
    .attn = {llc_attn_scores_avx2, llc_attn_scores_q8_0_avx2, llc_attn_max_avx2, llc_attn_exp_sum_avx2, llc_attn_accumulate_avx2, llc_attn_to_f32_avx2},
};
#endif
