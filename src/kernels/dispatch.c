#include "kernels/dispatch.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const llc_kernels scalar_kernels = {
    .isa = LLC_ISA_SCALAR,
    .name = "scalar",
    .vec_dot = {
        [LLC_F32] = llc_dot_f32_scalar,
        [LLC_F16] = llc_dot_f16_scalar,
        [LLC_BF16] = llc_dot_bf16_scalar,
        [LLC_Q8_0] = llc_dot_q8_0_scalar,
        [LLC_Q4_0] = llc_dot_q4_0_scalar,
    },
};

#if defined(__x86_64__)
float llc_dot_f32_avx2(int64_t n, const void *w, const void *x);
float llc_dot_f16_avx2(int64_t n, const void *w, const void *x);
float llc_dot_bf16_avx2(int64_t n, const void *w, const void *x);
float llc_dot_q8_0_avx2(int64_t n, const void *w, const void *x);
float llc_dot_q4_0_avx2(int64_t n, const void *w, const void *x);
float llc_dot_f32_avx512(int64_t n, const void *w, const void *x);
float llc_dot_f16_avx512(int64_t n, const void *w, const void *x);
float llc_dot_bf16_avx512(int64_t n, const void *w, const void *x);
float llc_dot_q8_0_avx512(int64_t n, const void *w, const void *x);
float llc_dot_q4_0_avx512(int64_t n, const void *w, const void *x);

static const llc_kernels avx2_kernels = {
    .isa = LLC_ISA_AVX2,
    .name = "avx2",
    .vec_dot = {
        [LLC_F32] = llc_dot_f32_avx2,
        [LLC_F16] = llc_dot_f16_avx2,
        [LLC_BF16] = llc_dot_bf16_avx2,
        [LLC_Q8_0] = llc_dot_q8_0_avx2,
        [LLC_Q4_0] = llc_dot_q4_0_avx2,
    },
};

static const llc_kernels avx512_kernels = {
    .isa = LLC_ISA_AVX512,
    .name = "avx512",
    .vec_dot = {
        [LLC_F32] = llc_dot_f32_avx512,
        [LLC_F16] = llc_dot_f16_avx512,
        [LLC_BF16] = llc_dot_bf16_avx512,
        [LLC_Q8_0] = llc_dot_q8_0_avx512,
        [LLC_Q4_0] = llc_dot_q4_0_avx512,
    },
};

static bool cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

/* The AVX-512 table needs every extension its kernels use (VNNI and BF16 included): CPUs with
 * AVX-512F but without them run the AVX2 table. */
static bool cpu_has_avx512(void) {
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16");
}
#endif

const char *llc_isa_name(enum llc_isa isa) {
    static const char *const names[LLC_ISA_COUNT] = {"scalar", "avx2", "avx512"};
    return (unsigned)isa < LLC_ISA_COUNT ? names[isa] : "?";
}

const llc_kernels *llc_kernels_for(enum llc_isa isa) {
    if (isa == LLC_ISA_SCALAR) return &scalar_kernels;
#if defined(__x86_64__)
    if (isa == LLC_ISA_AVX2 && cpu_has_avx2()) return &avx2_kernels;
    if (isa == LLC_ISA_AVX512 && cpu_has_avx512()) return &avx512_kernels;
#endif
    return NULL;
}

const llc_kernels *llc_kernels_get(void) {
    static const llc_kernels *_Atomic chosen;
    if (chosen) return chosen;
    const llc_kernels *k = NULL;
    const char *force = getenv("LLAMAC_ISA");
    for (int isa = LLC_ISA_COUNT - 1; isa >= 0 && !k; isa--) {
        if (force && *force && strcmp(force, llc_isa_name((enum llc_isa)isa)) != 0) continue;
        k = llc_kernels_for((enum llc_isa)isa);
    }
    chosen = k ? k : &scalar_kernels;
    return chosen;
}
