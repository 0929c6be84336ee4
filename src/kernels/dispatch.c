#include "kernels/dispatch.h"

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

const char *llc_isa_name(enum llc_isa isa) {
    static const char *const names[LLC_ISA_COUNT] = {"scalar", "avx2", "avx512"};
    return (unsigned)isa < LLC_ISA_COUNT ? names[isa] : "?";
}

const llc_kernels *llc_kernels_for(enum llc_isa isa) {
    if (isa == LLC_ISA_SCALAR) return &scalar_kernels;
    return NULL; /* SIMD tables arrive with the kernels of the "fast on CPUs" work */
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
