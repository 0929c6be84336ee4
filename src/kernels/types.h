#ifndef LLC_TYPES_H
#define LLC_TYPES_H
/*
 * Tensor element types with llama.cpp's ids and block layouts, so GGUF files move freely between the
 * two. A quantized row is a sequence of blocks; each block holds block_size weights in type_size bytes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum llc_type {
    LLC_F32 = 0,
    LLC_F16 = 1,
    LLC_Q4_0 = 2,
    LLC_Q4_1 = 3,
    LLC_Q5_0 = 6,
    LLC_Q5_1 = 7,
    LLC_Q8_0 = 8,
    LLC_Q8_1 = 9,
    LLC_Q2_K = 10,
    LLC_Q3_K = 11,
    LLC_Q4_K = 12,
    LLC_Q5_K = 13,
    LLC_Q6_K = 14,
    LLC_Q8_K = 15,
    LLC_BF16 = 30,
    LLC_TYPE_COUNT = 40
};

#define QK8_0 32
#define QK4_0 32

/* Q8_0: 32 int8 weights and an fp16 scale: w = d * q */
typedef struct {
    uint16_t d;
    int8_t qs[QK8_0];
} block_q8_0;

/* Q4_0: 32 4-bit weights, low nibbles are elements 0..15, high nibbles 16..31: w = d * (q - 8) */
typedef struct {
    uint16_t d;
    uint8_t qs[QK4_0 / 2];
} block_q4_0;

_Static_assert(sizeof(block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(block_q4_0) == 18, "q4_0 layout");

/* The K-quants: superblocks of QK_K weights split into sub-blocks, whose scales are themselves
 * quantized against one or two fp16 superblock scales, so a 4-bit weight costs 4.5 bits and a 6-bit
 * one 6.5625 bits. Layouts are ggml's byte for byte (ggml-common.h). */
#define QK_K 256

/* Q4_K: 8 sub-blocks of 32. w = d * sc[j] * q - dmin * m[j], q in 0..15, sc and m 6-bit.
 * scales[12] packs the 8 (sc, m) pairs (ggml's get_scale_min_k4): for j < 4, sc[j] = scales[j] & 63
 * and m[j] = scales[j + 4] & 63; for j >= 4, the low 4 bits are scales[j + 4] & 15 (sc) and
 * scales[j + 4] >> 4 (m), the high 2 bits the top bits of scales[j - 4] (sc) and scales[j] (m).
 * qs: each run of 64 weights is 32 bytes, low nibbles the first 32 weights, high nibbles the next 32. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[QK_K / 2];
} block_q4_K;

/* Q6_K: 16 sub-blocks of 16. w = d * scales[j] * (q - 32), q 6-bit. Each half of 128 weights has 64
 * bytes of ql and 32 of qh; for l < 32, weights l, l+32, l+64, l+96 of the half take their low 4 bits
 * from ql[l] & 15, ql[l+32] & 15, ql[l] >> 4, ql[l+32] >> 4, and their high 2 bits from bits 0-1, 2-3,
 * 4-5, 6-7 of qh[l]. */
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
} block_q6_K;

/* Q8_K: the activations for K-quant weights. A float scale (ggml's sign convention: d = -max / 127
 * for the signed value of largest magnitude), and bsums[i] = the sum of qs[16 i .. 16 i + 15], so a
 * weight's constant part (Q4_K's min, Q6_K's -32) costs one multiply per sub-block, not per weight. */
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;

/* Unpacks Q4_K's scales[12] into four little-endian words holding, byte by byte, the 8 sub-block scales
 * (words 0-1) then the 8 mins (words 2-3): four 6-bit fields at a time instead of sixteen bit-picks. */
static inline void llc_q4_K_scale_words(const uint8_t scales[12], uint32_t o[4]) {
    uint32_t w[3];
    memcpy(w, scales, 12);
    o[0] = w[0] & 0x3f3f3f3fu;
    o[1] = (w[2] & 0x0f0f0f0fu) | (w[0] >> 6 & 0x03030303u) << 4;
    o[2] = w[1] & 0x3f3f3f3fu;
    o[3] = (w[2] >> 4 & 0x0f0f0f0fu) | (w[1] >> 6 & 0x03030303u) << 4;
}

/* The same as bytes: sm[0..7] = scales, sm[8..15] = mins (GGUF data, and so llamac, is little-endian). */
static inline void llc_q4_K_unpack_scales(const uint8_t scales[12], uint8_t sm[16]) {
    uint32_t o[4];
    llc_q4_K_scale_words(scales, o);
    memcpy(sm, o, 16);
}

_Static_assert(sizeof(block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(block_q8_K) == 292, "q8_K layout");

typedef struct llc_type_traits {
    const char *name;
    int block_size;    /* weights per block; 0: type unknown to llamac */
    size_t type_size;  /* bytes per block */
    /* Dequantizes n weights (n a multiple of block_size). */
    void (*to_float)(const void *src, float *dst, int64_t n);
    /* Quantizes n floats (n a multiple of block_size); NULL if llamac cannot write this type. */
    void (*from_float)(const float *src, void *dst, int64_t n);
} llc_type_traits;

/* Traits of a type id, or NULL when the id is not one llamac can compute with. */
const llc_type_traits *llc_type_get(uint32_t type);
/* Name of any ggml type id, including ones llamac only recognises ("q4_1", …), or "type N". */
const char *llc_type_name(uint32_t type);
/* Parses "f32", "q8_0", "q4_k", … (any case); -1 if unknown. */
int llc_type_from_name(const char *name);
/* Bytes for n elements of type (n a multiple of the block size); 0 if the type is unknown. */
size_t llc_row_size(uint32_t type, int64_t n);

#endif
