/* The scalar table: the definition of every kernel, run where no SIMD table can be (or LLAMAC_ISA=scalar). */
#include "kernels/kernels.h"

#define SCALAR_SLOTS                                                                                                   \
    .vec_dot = {[LLC_F32] = llc_dot_f32_scalar,                                                                        \
                [LLC_F16] = llc_dot_f16_scalar,                                                                        \
                [LLC_BF16] = llc_dot_bf16_scalar,                                                                      \
                [LLC_Q8_0] = llc_dot_q8_0_scalar,                                                                      \
                [LLC_Q4_0] = llc_dot_q4_0_scalar,                                                                      \
                [LLC_Q4_K] = llc_dot_q4_K_scalar,                                                                      \
                [LLC_Q6_K] = llc_dot_q6_K_scalar,                                                                      \
                [LLC_Q8_K] = llc_dot_q8_K_scalar},                                                                     \
    .gemm4 = {[LLC_Q8_0] = llc_gemm4_q8_0_scalar, [LLC_Q4_0] = llc_gemm4_q4_0_scalar, [LLC_BF16] = llc_gemm4_bf16_scalar}, \
    .act_q8_0 = llc_act_q8_0_scalar,                                                                                   \
    .attn = {llc_attn_scores_scalar, llc_attn_scores_q8_0_scalar, llc_attn_max_scalar, llc_attn_exp_sum_scalar,        \
             llc_attn_accumulate_scalar, llc_attn_to_f32_scalar}

const llc_kernels llc_kernels_scalar = {.isa = LLC_ISA_SCALAR, .name = "scalar", SCALAR_SLOTS};

const llc_kernels llc_kernels_twins = {
    .isa = LLC_ISA_SCALAR,
    .name = "scalar twins",
    SCALAR_SLOTS,
    .packed = {
        [LLC_Q4_0] = llc_packed_gemm_q4_0_scalar,
        [LLC_Q8_0] = llc_packed_gemm_q8_0_scalar,
        [LLC_BF16] = llc_packed_gemm_bf16_scalar,
        [LLC_Q4_K] = llc_packed_gemm_q4_K_scalar,
        [LLC_Q6_K] = llc_packed_gemm_q6_K_scalar,
    },
};
