#include "kernels/packed.h"

#include <math.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/dispatch.h"
#include "kernels/matmul.h"
#include "kernels/types.h"

/* Bytes of 16 rows x 32 weights: the quants (or bf16 values) and then, for the scaled types, the scales. */
static size_t quant_bytes_per_block(uint32_t type) { return type == LLC_Q4_0 ? 4 * 64 : type == LLC_Q8_0 ? 8 * 64 : 16 * 64; }
static size_t scale_bytes_per_block(uint32_t type) { return type == LLC_BF16 ? 0 : LLC_PACK_ROWS * sizeof(uint16_t); }

size_t llc_packed_group_bytes(uint32_t type, int64_t n_cols) {
    size_t nb = (size_t)(n_cols / 32), bytes = nb * (quant_bytes_per_block(type) + scale_bytes_per_block(type));
    return (bytes + 63) & ~(size_t)63;
}

llc_packed_gemm_fn llc_packed_kernel(uint32_t type) {
#if defined(__x86_64__)
    if (llc_kernels_get()->isa == LLC_ISA_AVX512) {
        if (type == LLC_Q4_0) return llc_packed_gemm_q4_0_avx512;
        if (type == LLC_Q8_0) return llc_packed_gemm_q8_0_avx512;
        if (type == LLC_BF16) return llc_packed_gemm_bf16_avx512;
    }
#endif
    (void)type;
    return NULL;
}

void llc_pack_groups(uint32_t type, const void *src, size_t src_rb, int64_t n_cols, int64_t g0, int64_t g1, void *dst) {
    int64_t nb = n_cols / 32;
    size_t qb = quant_bytes_per_block(type), gb = llc_packed_group_bytes(type, n_cols);
    for (int64_t g = g0; g < g1; g++) {
        uint8_t *q = (uint8_t *)dst + (size_t)g * gb;
        uint16_t *d = (uint16_t *)(q + (size_t)nb * qb);
        for (int r = 0; r < LLC_PACK_ROWS; r++) {
            const char *row = (const char *)src + (size_t)(g * LLC_PACK_ROWS + r) * src_rb;
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *qd = q + (size_t)b * qb + (size_t)r * 4;
                if (type == LLC_BF16) {
                    /* vector i, lane r: the pair of weights 2i, 2i + 1 */
                    const uint16_t *v = (const uint16_t *)row + b * 32;
                    for (int i = 0; i < 16; i++) memcpy(qd + i * 64, v + 2 * i, 4);
                } else if (type == LLC_Q4_0) {
                    const block_q4_0 *blk = (const block_q4_0 *)row + b;
                    d[b * LLC_PACK_ROWS + r] = blk->d;
                    for (int c = 0; c < 4; c++) memcpy(qd + c * 64, blk->qs + 4 * c, 4);
                } else {
                    const block_q8_0 *blk = (const block_q8_0 *)row + b;
                    d[b * LLC_PACK_ROWS + r] = blk->d;
                    for (int i = 0; i < 8; i++)
                        for (int j = 0; j < 4; j++) qd[i * 64 + j] = (uint8_t)(blk->qs[4 * i + j] + 128);
                }
            }
        }
    }
}

/* The unsigned weight byte of lane r, 4 * i + j within a block of the packed quants. */
static inline int packed_weight(const uint8_t *qblock, int q4, int r, int i, int j) {
    if (!q4) return qblock[i * 64 + r * 4 + j];
    uint8_t byte = qblock[(i & 3) * 64 + r * 4 + j];
    return i < 4 ? byte & 0x0f : byte >> 4;
}

/* Mirrors the SIMD kernels operation for operation (integer block sum started at -offset * sum(x),
 * converted, times the product of the scales, fused-added), so the twins agree to the bit. */
static void packed_gemm_scalar(int q4, int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                               float *out, size_t ldo) {
    int64_t nb = n_cols / 32;
    uint32_t type = q4 ? LLC_Q4_0 : LLC_Q8_0;
    size_t qb = quant_bytes_per_block(type);
    const uint8_t *q = group;
    const uint16_t *d = (const uint16_t *)(q + (size_t)nb * qb);
    int offset = q4 ? 8 : 128;
    for (int t = 0; t < n_tok; t++) {
        const char *row = (const char *)act + (size_t)t * act_rb;
        const block_q8_0 *xb = (const block_q8_0 *)row;
        const float *xd = llc_q8_act_scales(row, nb);
        const int32_t *xs = llc_q8_act_sums(row, nb);
        for (int r = 0; r < LLC_PACK_ROWS; r++) {
            float acc = 0;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *qblock = q + (size_t)b * qb;
                int32_t s = -offset * xs[b];
                for (int i = 0; i < 8; i++)
                    for (int j = 0; j < 4; j++) s += packed_weight(qblock, q4, r, i, j) * xb[b].qs[4 * i + j];
                acc = fmaf((float)s, llc_fp16_to_fp32(d[b * LLC_PACK_ROWS + r]) * xd[b], acc);
            }
            out[(size_t)t * ldo + r] = acc;
        }
    }
}

void llc_packed_gemm_q4_0_scalar(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                 float *out, size_t ldo) {
    packed_gemm_scalar(1, n_cols, group, act, act_rb, n_tok, out, ldo);
}

void llc_packed_gemm_q8_0_scalar(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                 float *out, size_t ldo) {
    packed_gemm_scalar(0, n_cols, group, act, act_rb, n_tok, out, ldo);
}

/* BF16: lane r of vector i holds weights 2i and 2i + 1 of row r; the activation row is bf16. Products
 * of two bf16 are exact in f32, so the SIMD kernel differs from this only in the order of additions. */
void llc_packed_gemm_bf16_scalar(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                 float *out, size_t ldo) {
    const uint16_t *w = group;
    for (int t = 0; t < n_tok; t++) {
        const uint16_t *x = (const uint16_t *)((const char *)act + (size_t)t * act_rb);
        for (int r = 0; r < LLC_PACK_ROWS; r++) {
            float acc = 0;
            for (int64_t b = 0; b < n_cols / 32; b++)
                for (int i = 0; i < 16; i++)
                    for (int j = 0; j < 2; j++)
                        acc += llc_bf16_to_fp32(w[(size_t)b * 512 + (size_t)i * 32 + (size_t)r * 2 + (size_t)j]) *
                               llc_bf16_to_fp32(x[b * 32 + 2 * i + j]);
            out[(size_t)t * ldo + r] = acc;
        }
    }
}

/* llama.cpp's Q8_0 quantizer (quantize_row_q8_0_ref: scale max|v| / 127, roundf, clamped; NaN to 0),
 * one block at a time, of x or of x * scale * w (multiplied in RMSNorm's order). */
void llc_act_q8_0_scalar(const float *x, void *row, int64_t n, float scale, const float *w) {
    int64_t nb = n / QK8_0;
    block_q8_0 *blk = row;
    float *scales = (float *)((char *)row + llc_q8_act_tail(nb));
    int32_t *sums = (int32_t *)(scales + nb);
    for (int64_t b = 0; b < nb; b++) {
        float v[QK8_0], amax = 0;
        for (int j = 0; j < QK8_0; j++) {
            v[j] = w ? x[b * QK8_0 + j] * scale * w[b * QK8_0 + j] : x[b * QK8_0 + j];
            amax = fmaxf(amax, fabsf(v[j]));
        }
        float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < QK8_0; j++) {
            float r = roundf(v[j] * id);
            int q = r != r ? 0 : r < -127 ? -127 : r > 127 ? 127 : (int)r;
            blk[b].qs[j] = (int8_t)q;
            sum += q;
        }
        blk[b].d = llc_fp32_to_fp16(d);
        scales[b] = llc_fp16_to_fp32(blk[b].d);
        sums[b] = sum;
    }
}
