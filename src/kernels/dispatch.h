#ifndef LLC_DISPATCH_H
#define LLC_DISPATCH_H
/*
 * Kernel dispatch: one function per (type, instruction set), chosen once from cpuid (and the
 * LLAMAC_ISA environment variable: scalar|avx2|avx512, to force one for tests and comparisons).
 * The scalar versions are the definition; every SIMD version is tested against its scalar twin.
 */
#include <stdint.h>

#include "kernels/types.h"

enum llc_isa { LLC_ISA_SCALAR = 0, LLC_ISA_AVX2 = 1, LLC_ISA_AVX512 = 2, LLC_ISA_COUNT };

/* dot(w_row, act_row) over n weights: w_row in the weight type, act_row in its activation type. */
typedef float (*llc_vec_dot_fn)(int64_t n, const void *w_row, const void *act_row);

/* A 4 x 4 tile of a matrix product for prompts and batches: out[t * ldo + r] = dot(row r of w, row t
 * of x) for r, t < 4, rows w_stride and x_stride bytes apart. Four weight rows are unpacked once for
 * four tokens and four activation rows serve four weight rows, so the per-block work is shared. */
typedef void (*llc_gemm4_fn)(int64_t n, const void *w, size_t w_stride, const void *x, size_t x_stride, float *out,
                             size_t ldo);

typedef struct llc_kernels {
    enum llc_isa isa;
    const char *name;
    llc_vec_dot_fn vec_dot[LLC_TYPE_COUNT];
    llc_gemm4_fn gemm4[LLC_TYPE_COUNT]; /* NULL: the matmul uses vec_dot for every pair */
} llc_kernels;

/* The table in use (selected on first call). */
const llc_kernels *llc_kernels_get(void);
/* The table of one ISA, or NULL if this CPU or build cannot run it (tests compare tables). */
const llc_kernels *llc_kernels_for(enum llc_isa isa);
const char *llc_isa_name(enum llc_isa isa);

/* Scalar kernels, shared with the SIMD files for their tails. */
float llc_dot_f32_scalar(int64_t n, const void *w, const void *x);
float llc_dot_f16_scalar(int64_t n, const void *w, const void *x);
float llc_dot_bf16_scalar(int64_t n, const void *w, const void *x);
float llc_dot_q8_0_scalar(int64_t n, const void *w, const void *x);
float llc_dot_q4_0_scalar(int64_t n, const void *w, const void *x);
float llc_dot_q4_K_scalar(int64_t n, const void *w, const void *x); /* activations: Q8_K */
float llc_dot_q6_K_scalar(int64_t n, const void *w, const void *x);
float llc_dot_q8_K_scalar(int64_t n, const void *w, const void *x);
/* The scalar twins of the tile kernels: sixteen vec_dot calls. */
void llc_gemm4_q8_0_scalar(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *out, size_t ldo);
void llc_gemm4_q4_0_scalar(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *out, size_t ldo);
void llc_gemm4_bf16_scalar(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *out, size_t ldo);

#endif
