#ifndef LLC_QUANT_MIX_H
#define LLC_QUANT_MIX_H
/*
 * Which element type each tensor of a written model gets: the one rule `quantize`, `convert --type` and
 * `synth --type` share. A "mix" is what the user asks for:
 *
 *   plain types (f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, … any type llamac can write): every matrix in
 *     that type, like `llama-quantize --pure`;
 *   q4_k_m, q4_k_s: llama.cpp's k-quant mixes (llama_tensor_get_type in llama.cpp's src/llama-quant.cpp),
 *     with Q6_K standing in for the Q5_K llamac does not have.
 *
 * Then, as llama.cpp does, a matrix whose row length is not a multiple of the chosen type's block falls
 * back: Q4_K -> Q4_0 (llama.cpp: Q5_0), Q6_K -> Q8_0, and when even that block (32) does not divide the
 * row, F16. 1-D tensors (norms, rope_freqs) are always F32.
 */
#include <stdbool.h>
#include <stdint.h>

typedef enum { LLC_MIX_PLAIN, LLC_MIX_Q4_K_M, LLC_MIX_Q4_K_S } llc_mix_kind;

typedef struct llc_quant_mix {
    char name[16];      /* canonical lower-case name: "q8_0", "q4_k_m" */
    llc_mix_kind kind;
    uint32_t base;      /* the type of most matrices (plain: all of them) */
    uint32_t file_type; /* llama.cpp's general.file_type (LLAMA_FTYPE) for files of this mix, or LLC_FTYPE_NONE */
} llc_quant_mix;

/* llama.cpp's LLAMA_FTYPE values (include/llama.h). */
enum {
    LLC_FTYPE_ALL_F32 = 0,
    LLC_FTYPE_MOSTLY_F16 = 1,
    LLC_FTYPE_MOSTLY_Q4_0 = 2,
    LLC_FTYPE_MOSTLY_Q8_0 = 7,
    LLC_FTYPE_MOSTLY_Q4_K_S = 14,
    LLC_FTYPE_MOSTLY_Q4_K_M = 15,
    LLC_FTYPE_MOSTLY_Q6_K = 18,
    LLC_FTYPE_MOSTLY_BF16 = 32,
};
/* A mix with no LLAMA_FTYPE (a plain type llama.cpp has no file type for). */
#define LLC_FTYPE_NONE UINT32_MAX

/* Parses a mix name, case-insensitively ("Q4_K_M" as llama-quantize spells it, or "q4_k_m"). Plain
 * types are those llamac can write (traits with from_float). False if unknown. */
bool llc_quant_mix_parse(const char *name, llc_quant_mix *out);
/* The names for usage messages: "f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, q4_k_m, q4_k_s". */
const char *llc_quant_mix_names(void);

/* What the rule needs to know of the model. */
typedef struct llc_mix_model {
    int n_layers, n_heads, n_kv_heads;
    bool tied;          /* no output.weight: token_embd is also the output projection */
} llc_mix_model;

/* The type of tensor `name` (GGUF naming: token_embd.weight, output.weight, blk.N.attn_v.weight, …) with
 * rows of `cols` values (rows == 1: a vector). */
uint32_t llc_quant_tensor_type(const llc_quant_mix *mix, const char *name, int64_t cols, int64_t rows,
                               const llc_mix_model *mm);

/* llama.cpp's name of a general.file_type value ("Q4_K - Medium"), or NULL if unknown. */
const char *llc_file_type_name(uint32_t file_type);

#endif
