#ifndef LLC_KERNELS_H
#define LLC_KERNELS_H
/*
 * The kernel tables: one per instruction set (scalar, AVX2, AVX-512), each holding every kind of
 * kernel the engine runs — dot products, 4 x 4 tiles, packed 16-row GEMV/GEMM, the Q8_0 activation
 * quantizer and attention's inner pieces. Each table is filled in one file (kernels_<isa>.c) from
 * the kernels of that ISA's files (dot_<isa>.c, packed_<isa>.c, attention_<isa>.c). dispatch.c picks
 * one table once, from cpuid and the LLAMAC_ISA environment variable (scalar|avx2|avx512, to force one
 * for tests and comparisons); every caller reads the chosen table and none tests the ISA itself.
 *
 * The scalar kernels are the definition: every SIMD slot is tested against its scalar twin, the
 * same slot of llc_kernels_twins (tests/unit/test_kernels.c, test_packed.c, test_attention.c iterate
 * the tables).
 *
 * A new kind of kernel is a slot here (with its scalar twin named), its scalar definition in
 * kernels_scalar.c's slots, the vector versions in the ISA tables that have one, and a test loop
 * over the tables. A new ISA is an enum value (before LLC_ISA_COUNT) and its name in dispatch.c with
 * its cpuid check, kernel files <kind>_<isa>.c declared in a section below, and kernels_<isa>.c;
 * a slot it leaves NULL (gemm4, packed) falls back as documented, the others must be filled.
 */
#include <stdbool.h>
#include <stddef.h>
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

/* One group of 16 packed weight rows (layout in kernels/packed.h) against n_tok <= LLC_PACK_TOKENS
 * activation rows: out[t * ldo + r] = dot(row r of the group, activation row t) for r < 16. The
 * activation rows (act_rb bytes apart) are Q8_0 rows with their block sums (below), Q8_K rows for the
 * K-quants, bf16 rows for bf16. */
typedef void (*llc_packed_gemm_fn)(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                   float *out, size_t ldo);

/* One Q8_0 activation row (with the block sums below) of x, or, when w is given, of x * scale * w
 * (RMSNorm fused into the conversion: the normalized row is never stored). */
typedef void (*llc_act_q8_0_fn)(const float *x, void *row, int64_t n, float scale, const float *w);

/* Q8_0 activation rows carry, after their blocks (at a 64-byte aligned offset), each block's scale
 * as a float and the sum of its 32 int8 values: the packed kernels' per-block inputs, computed once
 * per row rather than once per row of weights. */
static inline size_t llc_q8_act_tail(int64_t n_blocks) { return ((size_t)n_blocks * 34 + 63) & ~(size_t)63; }
static inline const float *llc_q8_act_scales(const void *row, int64_t n_blocks) {
    return (const float *)((const char *)row + llc_q8_act_tail(n_blocks));
}
static inline const int32_t *llc_q8_act_sums(const void *row, int64_t n_blocks) {
    return (const int32_t *)(llc_q8_act_scales(row, n_blocks) + n_blocks);
}

/*
 * Attention's inner pieces (the online softmax around them: kernels/attention.c). rows <=
 * LLC_ATTN_MAX_ROWS, n <= LLC_ATTN_TILE; k[i] and v[i] point at position i's head_dim floats for the
 * KV head in use. s and p are [row][LLC_ATTN_TILE].
 */
typedef struct llc_attn_ops {
    /* s[r][i] = scale * (q_r · k_i); q_r = q + r * head_dim */
    void (*scores)(const float *q, int rows, int head_dim, const float *const *k, int n, float scale, float *s);
    /* the same for q8_0 keys and queries: q8 holds rows q8_0 rows of head_dim / 32 blocks, consecutive;
     * k[i] points at position i's first block (head_dim a multiple of 32). Per row and position, the
     * blocks' int32 dot products times the two scales, summed in f32 (the order is the kernel's). */
    void (*scores_q8_0)(const block_q8_0 *q8, int rows, int head_dim, const void *const *k, int n, float scale, float *s);
    /* max(s[0..n)), n >= 1 */
    float (*max)(const float *s, int n);
    /* s[i] = exp(s[i] - m) for i < n (m >= every s[i]); returns their sum */
    float (*exp_sum)(float *s, int n, float m);
    /* acc_r = acc_r * c[r] + Σ_i p[r][i] * v_i  (acc_r = acc + r * head_dim) */
    void (*accumulate)(float *acc, int rows, int head_dim, const float *c, const float *p, const float *const *v, int n);
    /* dst[0..n) = elements skip .. skip + n - 1 of src, an array of `type` (LLC_F16, LLC_BF16, LLC_Q8_0;
     * LLC_F32 copies), as f32. Exact: every ISA gives the same bits. */
    void (*to_f32)(enum llc_type type, const void *src, size_t skip, int n, float *dst);
} llc_attn_ops;

/* One ISA's kernels. The scalar twin of each slot is named beside it. */
typedef struct llc_kernels {
    enum llc_isa isa;
    const char *name;
    /* twins llc_dot_<type>_scalar; every type has one (Q8_K is not a weight type: scalar everywhere) */
    llc_vec_dot_fn vec_dot[LLC_TYPE_COUNT];
    /* twins llc_gemm4_<type>_scalar; NULL: the matmul uses vec_dot for every pair */
    llc_gemm4_fn gemm4[LLC_TYPE_COUNT];
    /* twins llc_packed_gemm_<type>_scalar; NULL: matrices of the type stay in the file layout. The
     * scalar table leaves these empty (without SIMD repacking gains nothing), so its twins are only in
     * llc_kernels_twins; AVX2 and AVX-512 fill the same five types over the same layout. */
    llc_packed_gemm_fn packed[LLC_TYPE_COUNT];
    /* twin llc_act_q8_0_scalar, which the vector ones match byte for byte */
    llc_act_q8_0_fn act_q8_0;
    /* twins llc_attn_<piece>_scalar */
    llc_attn_ops attn;
} llc_kernels;

/* How the packed kernels prefetch the weights they stream: `ahead` bytes ahead of use (K-quants:
 * `ahead_k`, 0 for the kernel's own distance of a few superblocks), into L2 only (`l2`) or into L1.
 * Chosen with the table, per CPU vendor: on Zen 4 prefetching 8 KB ahead into L2 reads 12-30% faster
 * than 4 KB into L1, the choice measured best on an Intel Xeon (BENCHMARKS.md, "Decode on Zen 4"). */
typedef struct llc_prefetch {
    int ahead, ahead_k;
    bool l2;
} llc_prefetch;
extern llc_prefetch llc_pf;

/* The table in use (chosen on the first call). */
const llc_kernels *llc_kernels_get(void);
/* The table of one ISA, or NULL if this CPU or build cannot run it (tests compare tables). */
const llc_kernels *llc_kernels_for(enum llc_isa isa);
const char *llc_isa_name(enum llc_isa isa);

/* The tables (kernels_<isa>.c); reach them through llc_kernels_for, which checks the CPU. */
extern const llc_kernels llc_kernels_scalar, llc_kernels_avx2, llc_kernels_avx512;
/* The scalar twin of every slot that some table fills: llc_kernels_scalar plus the packed twins. */
extern const llc_kernels llc_kernels_twins;

/* ---- scalar (dot_scalar.c, packed.c, attention_scalar.c): the definitions, also the SIMD files' tails */
float llc_dot_f32_scalar(int64_t n, const void *w, const void *x);
float llc_dot_f16_scalar(int64_t n, const void *w, const void *x);
float llc_dot_bf16_scalar(int64_t n, const void *w, const void *x);
float llc_dot_q8_0_scalar(int64_t n, const void *w, const void *x);
float llc_dot_q4_0_scalar(int64_t n, const void *w, const void *x);
float llc_dot_q4_K_scalar(int64_t n, const void *w, const void *x); /* activations: Q8_K */
float llc_dot_q6_K_scalar(int64_t n, const void *w, const void *x);
float llc_dot_q8_K_scalar(int64_t n, const void *w, const void *x);
/* sixteen vec_dot calls */
void llc_gemm4_q8_0_scalar(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *out, size_t ldo);
void llc_gemm4_q4_0_scalar(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *out, size_t ldo);
void llc_gemm4_bf16_scalar(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *out, size_t ldo);
void llc_packed_gemm_q4_0_scalar(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                 float *out, size_t ldo);
void llc_packed_gemm_q8_0_scalar(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                 float *out, size_t ldo);
void llc_packed_gemm_bf16_scalar(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                 float *out, size_t ldo);
void llc_packed_gemm_q4_K_scalar(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                 float *out, size_t ldo);
void llc_packed_gemm_q6_K_scalar(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                 float *out, size_t ldo);
void llc_act_q8_0_scalar(const float *x, void *row, int64_t n, float scale, const float *w);
void llc_attn_scores_scalar(const float *q, int rows, int hd, const float *const *k, int n, float scale, float *s);
void llc_attn_scores_q8_0_scalar(const block_q8_0 *q8, int rows, int hd, const void *const *k, int n, float scale, float *s);
float llc_attn_max_scalar(const float *s, int n);
float llc_attn_exp_sum_scalar(float *s, int n, float m);
void llc_attn_accumulate_scalar(float *acc, int rows, int hd, const float *c, const float *p, const float *const *v, int n);
void llc_attn_to_f32_scalar(enum llc_type type, const void *src, size_t skip, int n, float *dst);

/* ---- AVX2 + FMA + F16C (dot_avx2.c, packed_avx2.c, attention_avx2.c) ---- */
float llc_dot_f32_avx2(int64_t n, const void *w, const void *x);
float llc_dot_f16_avx2(int64_t n, const void *w, const void *x);
float llc_dot_bf16_avx2(int64_t n, const void *w, const void *x);
float llc_dot_q8_0_avx2(int64_t n, const void *w, const void *x);
float llc_dot_q4_0_avx2(int64_t n, const void *w, const void *x);
float llc_dot_q4_K_avx2(int64_t n, const void *w, const void *x);
float llc_dot_q6_K_avx2(int64_t n, const void *w, const void *x);
void llc_packed_gemm_q4_0_avx2(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                               float *out, size_t ldo);
void llc_packed_gemm_q8_0_avx2(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                               float *out, size_t ldo);
void llc_packed_gemm_bf16_avx2(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                               float *out, size_t ldo);
void llc_packed_gemm_q4_K_avx2(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                               float *out, size_t ldo);
void llc_packed_gemm_q6_K_avx2(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                               float *out, size_t ldo);
void llc_act_q8_0_avx2(const float *x, void *row, int64_t n, float scale, const float *w);
void llc_attn_scores_avx2(const float *q, int rows, int hd, const float *const *k, int n, float scale, float *s);
void llc_attn_scores_q8_0_avx2(const block_q8_0 *q8, int rows, int hd, const void *const *k, int n, float scale, float *s);
float llc_attn_max_avx2(const float *s, int n);
float llc_attn_exp_sum_avx2(float *s, int n, float m);
void llc_attn_accumulate_avx2(float *acc, int rows, int hd, const float *c, const float *p, const float *const *v, int n);
void llc_attn_to_f32_avx2(enum llc_type type, const void *src, size_t skip, int n, float *dst);

/* ---- AVX-512 F/BW/VL + VNNI + BF16 (dot_avx512.c, packed_avx512.c, attention_avx512.c) ---- */
float llc_dot_f32_avx512(int64_t n, const void *w, const void *x);
float llc_dot_f16_avx512(int64_t n, const void *w, const void *x);
float llc_dot_bf16_avx512(int64_t n, const void *w, const void *x);
float llc_dot_q8_0_avx512(int64_t n, const void *w, const void *x);
float llc_dot_q4_0_avx512(int64_t n, const void *w, const void *x);
float llc_dot_q4_K_avx512(int64_t n, const void *w, const void *x);
float llc_dot_q6_K_avx512(int64_t n, const void *w, const void *x);
void llc_gemm4_q8_0_avx512(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *out, size_t ldo);
void llc_gemm4_q4_0_avx512(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *out, size_t ldo);
void llc_gemm4_bf16_avx512(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *out, size_t ldo);
void llc_packed_gemm_q4_0_avx512(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                 float *out, size_t ldo);
void llc_packed_gemm_q8_0_avx512(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                 float *out, size_t ldo);
void llc_packed_gemm_bf16_avx512(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                 float *out, size_t ldo);
void llc_packed_gemm_q4_K_avx512(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                 float *out, size_t ldo);
void llc_packed_gemm_q6_K_avx512(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                 float *out, size_t ldo);
void llc_act_q8_0_avx512(const float *x, void *row, int64_t n, float scale, const float *w);
void llc_attn_scores_avx512(const float *q, int rows, int hd, const float *const *k, int n, float scale, float *s);
void llc_attn_scores_q8_0_avx512(const block_q8_0 *q8, int rows, int hd, const void *const *k, int n, float scale, float *s);
float llc_attn_max_avx512(const float *s, int n);
float llc_attn_exp_sum_avx512(float *s, int n, float m);
void llc_attn_accumulate_avx512(float *acc, int rows, int hd, const float *c, const float *p, const float *const *v, int n);
void llc_attn_to_f32_avx512(enum llc_type type, const void *src, size_t skip, int n, float *dst);

#endif
