/*
 * The type of each tensor of a written model (see quant_mix.h). The k-quant mixes follow llama.cpp's
 * llama_tensor_get_type (src/llama-quant.cpp) for the Llama architecture:
 *
 *   output.weight (token_embd.weight when tied, since it is the output too): Q6_K, or Q8_0 when the row
 *     length is not a multiple of 256;
 *   blk.N.attn_v.weight:   Q4_K_M: Q6_K where use_more_bits(N, n_layers), else Q4_K
 *                          Q4_K_S: Q5_K for N < 4, else Q4_K
 *                          (70B shapes, 80 layers with GQA: what would be Q4_K becomes Q5_K)
 *   blk.N.ffn_down.weight: Q4_K_M: Q6_K where use_more_bits(N, n_layers), else Q4_K
 *                          Q4_K_S: Q5_K for N < n_layers/8, else Q4_K
 *   everything else (token_embd of untied models included): Q4_K;
 *
 * use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2 (the first and last eighth of the
 * layers and every third one between). llamac has no Q5_K: Q6_K takes its place (more bits, never
 * fewer than llama.cpp gives the tensor).
 */
#include "model/quant_mix.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "kernels/types.h"

#define QK_K 256

static uint32_t plain_file_type(uint32_t t) {
    switch (t) {
    case LLC_F32: return LLC_FTYPE_ALL_F32;
    case LLC_F16: return LLC_FTYPE_MOSTLY_F16;
    case LLC_BF16: return LLC_FTYPE_MOSTLY_BF16;
    case LLC_Q8_0: return LLC_FTYPE_MOSTLY_Q8_0;
    case LLC_Q4_0: return LLC_FTYPE_MOSTLY_Q4_0;
    /* llama.cpp has no "all Q4_K" file type: its Q4_K is an alias of Q4_K_M, the value
     * `llama-quantize --pure Q4_K_M` writes and the one llama.cpp guesses for a mostly-Q4_K file */
    case LLC_Q4_K: return LLC_FTYPE_MOSTLY_Q4_K_M;
    case LLC_Q6_K: return LLC_FTYPE_MOSTLY_Q6_K;
    default: return LLC_FTYPE_NONE;
    }
}

bool llc_quant_mix_parse(const char *name, llc_quant_mix *out) {
    char lc[sizeof out->name];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof lc) return false;
    for (size_t i = 0; i <= n; i++) lc[i] = (char)tolower((unsigned char)name[i]);
    memset(out, 0, sizeof *out);
    memcpy(out->name, lc, n + 1);
    if (!strcmp(lc, "q4_k_m") || !strcmp(lc, "q4_k_s")) {
        out->kind = lc[5] == 'm' ? LLC_MIX_Q4_K_M : LLC_MIX_Q4_K_S;
        out->base = LLC_Q4_K;
        out->file_type = lc[5] == 'm' ? LLC_FTYPE_MOSTLY_Q4_K_M : LLC_FTYPE_MOSTLY_Q4_K_S;
        return true;
    }
    int t = llc_type_from_name(lc);
    if (t < 0 || !llc_type_get((uint32_t)t) || !llc_type_get((uint32_t)t)->from_float) return false;
    out->kind = LLC_MIX_PLAIN;
    out->base = (uint32_t)t;
    out->file_type = plain_file_type((uint32_t)t);
    return true;
}

const char *llc_quant_mix_names(void) { return "f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, q4_k_m, q4_k_s"; }

/* Block size of a type, also for k-quants this build may not compute with yet. */
static int64_t block_of(uint32_t t) {
    const llc_type_traits *tr = llc_type_get(t);
    if (tr) return tr->block_size;
    return t >= LLC_Q2_K && t <= LLC_Q8_K ? QK_K : 32;
}

static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* A row length the type cannot hold (llama.cpp's tensor_type_fallback): a 256-block k-quant falls back to
 * a 32-block type (Q4_K -> Q4_0 where llama.cpp takes Q5_0, which llamac lacks; Q6_K and the others ->
 * Q8_0), and a row that is not a multiple of 32 either is stored as F16. */
static uint32_t fallback(uint32_t t, int64_t cols) {
    if (cols % block_of(t) == 0) return t;
    if (block_of(t) == QK_K) t = t == LLC_Q4_K ? LLC_Q4_0 : LLC_Q8_0;
    return cols % block_of(t) == 0 ? t : LLC_F16;
}

uint32_t llc_quant_tensor_type(const llc_quant_mix *mix, const char *name, int64_t cols, int64_t rows,
                               const llc_mix_model *mm) {
    if (rows <= 1) return LLC_F32;
    uint32_t t = mix->base;
    if (mix->kind != LLC_MIX_PLAIN) {
        bool m = mix->kind == LLC_MIX_Q4_K_M;
        int layer = -1, n = mm->n_layers;
        if (sscanf(name, "blk.%d.", &layer) != 1) layer = -1;
        /* LLM_TYPE_70B: 80 layers with fewer key/value heads than query heads (65B has as many) */
        bool is_70b = n == 80 && mm->n_kv_heads != mm->n_heads;
        if (!strcmp(name, "output.weight") || (mm->tied && !strcmp(name, "token_embd.weight"))) {
            t = cols % QK_K ? LLC_Q8_0 : LLC_Q6_K;
        } else if (layer >= 0 && strstr(name, "attn_v.weight")) {
            if (m && use_more_bits(layer, n)) t = LLC_Q6_K;
            else if (!m && layer < 4) t = LLC_Q6_K; /* llama.cpp: Q5_K */
            if (is_70b && t == LLC_Q4_K) t = LLC_Q6_K; /* llama.cpp: Q5_K */
        } else if (layer >= 0 && strstr(name, "ffn_down")) {
            if (m && use_more_bits(layer, n)) t = LLC_Q6_K;
            else if (!m && layer < n / 8) t = LLC_Q6_K; /* llama.cpp: Q5_K */
        }
    }
    return fallback(t, cols);
}

const char *llc_file_type_name(uint32_t ft) {
    static const char *const names[] = {
        [0] = "all F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [7] = "Q8_0", [8] = "Q5_0", [9] = "Q5_1",
        [10] = "Q2_K - Medium", [11] = "Q3_K - Small", [12] = "Q3_K - Medium", [13] = "Q3_K - Large",
        [14] = "Q4_K - Small", [15] = "Q4_K - Medium", [16] = "Q5_K - Small", [17] = "Q5_K - Medium", [18] = "Q6_K",
        [19] = "IQ2_XXS - 2.0625 bpw", [20] = "IQ2_XS - 2.3125 bpw", [21] = "Q2_K - Small", [22] = "IQ3_XS - 3.3 bpw",
        [23] = "IQ3_XXS - 3.0625 bpw", [24] = "IQ1_S - 1.5625 bpw", [25] = "IQ4_NL - 4.5 bpw", [28] = "IQ2_S - 2.5 bpw",
        [29] = "IQ2_M - 2.7 bpw", [30] = "IQ4_XS - 4.25 bpw", [31] = "IQ1_M - 1.75 bpw", [32] = "BF16",
        [36] = "TQ1_0 - 1.69 bpw ternary", [37] = "TQ2_0 - 2.06 bpw ternary", [38] = "MXFP4 MoE",
    };
    return ft < sizeof names / sizeof names[0] ? names[ft] : NULL;
}
