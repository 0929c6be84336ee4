#ifndef LLC_TYPES_H
#define LLC_TYPES_H
/*
 * Tensor element types with llama.cpp's ids and block layouts, so GGUF files move freely between the
 * two. A quantized row is a sequence of blocks; each block holds block_size weights in type_size bytes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
/* Parses "f32", "q8_0", … ; -1 if unknown. */
int llc_type_from_name(const char *name);
/* Bytes for n elements of type (n a multiple of the block size); 0 if the type is unknown. */
size_t llc_row_size(uint32_t type, int64_t n);

#endif
