#include "kernels/packed.h"

#include <math.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels.h"
#include "kernels/types.h"

/* Bytes of 16 rows x 32 weights: the quants (or bf16 values) and then, for the scaled types, the scales. */
static size_t quant_bytes_per_block(uint32_t type) { return type == LLC_Q4_0 ? 4 * 64 : type == LLC_Q8_0 ? 8 * 64 : 16 * 64; }
static size_t scale_bytes_per_block(uint32_t type) { return type == LLC_BF16 ? 0 : LLC_PACK_ROWS * sizeof(uint16_t); }

size_t llc_packed_group_bytes(uint32_t type, int64_t n_cols) {
    if (type == LLC_Q4_K || type == LLC_Q6_K) return (size_t)(n_cols / QK_K) * (type == LLC_Q4_K ? PK_Q4_K_BYTES : PK_Q6_K_BYTES);
    size_t nb = (size_t)(n_cols / 32), bytes = nb * (quant_bytes_per_block(type) + scale_bytes_per_block(type));
    return (bytes + 63) & ~(size_t)63;
}

/* ---- K-quants ---------------------------------------------------------------------------------- */

static void pack_q4_K(const void *src, size_t src_rb, int64_t n_cols, int64_t g, uint8_t *dst) {
    for (int r = 0; r < LLC_PACK_ROWS; r++) {
        const block_q4_K *row = (const block_q4_K *)((const char *)src + (size_t)(g * LLC_PACK_ROWS + r) * src_rb);
        for (int64_t sb = 0; sb < n_cols / QK_K; sb++) {
            const block_q4_K *blk = row + sb;
            uint8_t *o = dst + (size_t)sb * PK_Q4_K_BYTES;
            for (int p = 0; p < 4; p++)
                for (int c = 0; c < 8; c++) memcpy(o + PK_Q4_K_QS + p * 512 + c * 64 + r * 4, blk->qs + 32 * p + 4 * c, 4);
            memcpy(o + PK_Q4_K_D + 2 * r, &blk->d, 2);
            memcpy(o + PK_Q4_K_DMIN + 2 * r, &blk->dmin, 2);
            uint8_t sm[16];
            llc_q4_K_unpack_scales(blk->scales, sm);
            for (int j = 0; j < 8; j++) {
                o[PK_Q4_K_SC + j * 16 + r] = sm[j];
                int16_t m = sm[8 + j];
                memcpy(o + PK_Q4_K_M + (j / 2) * 64 + r * 4 + (j % 2) * 2, &m, 2);
            }
        }
    }
}

/* The 6-bit value of weight i (0..255) of a Q6_K superblock. */
static int q6_K_value(const block_q6_K *b, int i) {
    int half = i / 128, l = i % 128, quarter = l / 32, k = l % 32;
    const uint8_t *ql = b->ql + 64 * half, *qh = b->qh + 32 * half;
    int lo = quarter == 0 ? ql[k] & 15 : quarter == 1 ? ql[k + 32] & 15 : quarter == 2 ? ql[k] >> 4 : ql[k + 32] >> 4;
    return lo | ((qh[k] >> (2 * quarter)) & 3) << 4;
}

static void pack_q6_K(const void *src, size_t src_rb, int64_t n_cols, int64_t g, uint8_t *dst) {
    for (int r = 0; r < LLC_PACK_ROWS; r++) {
        const block_q6_K *row = (const block_q6_K *)((const char *)src + (size_t)(g * LLC_PACK_ROWS + r) * src_rb);
        for (int64_t sb = 0; sb < n_cols / QK_K; sb++) {
            const block_q6_K *blk = row + sb;
            uint8_t *o = dst + (size_t)sb * PK_Q6_K_BYTES;
            for (int b = 0; b < 8; b++) {
                uint8_t *lo = o + b * 384, *hi = lo + 256;
                for (int i = 0; i < 8; i++)
                    for (int k = 0; k < 4; k++) {
                        int q = q6_K_value(blk, 32 * b + 4 * i + k);
                        uint8_t *lb = lo + (i % 4) * 64 + r * 4 + k, *hb = hi + (i / 4) * 64 + r * 4 + k;
                        if (i < 4) *lb = (uint8_t)((*lb & 0xf0) | (q & 15));
                        else *lb = (uint8_t)((*lb & 0x0f) | (q & 15) << 4);
                        int f = i % 4;
                        *hb = (uint8_t)((*hb & ~(3 << (2 * f))) | (q >> 4) << (2 * f));
                    }
            }
            for (int j = 0; j < 16; j++) o[PK_Q6_K_SC + j * 16 + r] = (uint8_t)blk->scales[j];
            memcpy(o + PK_Q6_K_D + 2 * r, &blk->d, 2);
        }
    }
}

void llc_pack_groups(uint32_t type, const void *src, size_t src_rb, int64_t n_cols, int64_t g0, int64_t g1, void *dst) {
    if (type == LLC_Q4_K || type == LLC_Q6_K) {
        size_t gb = llc_packed_group_bytes(type, n_cols);
        for (int64_t g = g0; g < g1; g++) {
            uint8_t *o = (uint8_t *)dst + (size_t)g * gb;
            if (type == LLC_Q4_K) pack_q4_K(src, src_rb, n_cols, g, o);
            else pack_q6_K(src, src_rb, n_cols, g, o);
        }
        return;
    }
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
        float dx = llc_fp16_to_fp32(blk[b].d);
        memcpy(&scales[b], &dx, 4); /* rows of any alignment (tests use odd strides) */
        memcpy(&sums[b], &sum, 4);
    }
}

/* Q4_K: per superblock and token, sub-block j's integer products times d * sc[j] in float, then the
 * mins as one integer sum over the sub-blocks (m[j] times the token's sum of sub-block j), then the
 * token's scale. The same operations, in the same order, as the AVX-512 kernel. */
void llc_packed_gemm_q4_K_scalar(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                 float *out, size_t ldo) {
    for (int t = 0; t < n_tok; t++) {
        const block_q8_K *x = (const block_q8_K *)((const char *)act + (size_t)t * act_rb);
        for (int r = 0; r < LLC_PACK_ROWS; r++) {
            float acc = 0;
            for (int64_t sb = 0; sb < n_cols / QK_K; sb++) {
                const uint8_t *o = (const uint8_t *)group + (size_t)sb * PK_Q4_K_BYTES;
                uint16_t dh, dminh;
                memcpy(&dh, o + PK_Q4_K_D + 2 * r, 2);
                memcpy(&dminh, o + PK_Q4_K_DMIN + 2 * r, 2);
                float d = llc_fp16_to_fp32(dh), dmin = llc_fp16_to_fp32(dminh), sum = 0;
                int32_t mins = 0;
                for (int j = 0; j < 8; j++) {
                    int32_t s = 0;
                    for (int c = 0; c < 8; c++)
                        for (int k = 0; k < 4; k++) {
                            uint8_t byte = o[PK_Q4_K_QS + (j / 2) * 512 + c * 64 + r * 4 + k];
                            s += (j % 2 ? byte >> 4 : byte & 15) * x[sb].qs[32 * j + 4 * c + k];
                        }
                    sum = fmaf((float)s, d * (float)o[PK_Q4_K_SC + j * 16 + r], sum);
                    int16_t m;
                    memcpy(&m, o + PK_Q4_K_M + (j / 2) * 64 + r * 4 + (j % 2) * 2, 2);
                    mins += m * (x[sb].bsums[2 * j] + x[sb].bsums[2 * j + 1]);
                }
                acc = fmaf(x[sb].d, fmaf(-(float)mins, dmin, sum), acc);
            }
            out[(size_t)t * ldo + r] = acc;
        }
    }
}

/* Q6_K: sub-blocks of 16; each one's integer products start from -32 times the token's sum of the
 * sub-block (Q8_K's bsums), so the unsigned 6-bit values need no other correction. */
void llc_packed_gemm_q6_K_scalar(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                 float *out, size_t ldo) {
    for (int t = 0; t < n_tok; t++) {
        const block_q8_K *x = (const block_q8_K *)((const char *)act + (size_t)t * act_rb);
        for (int r = 0; r < LLC_PACK_ROWS; r++) {
            float acc = 0;
            for (int64_t sb = 0; sb < n_cols / QK_K; sb++) {
                const uint8_t *o = (const uint8_t *)group + (size_t)sb * PK_Q6_K_BYTES;
                uint16_t dh;
                memcpy(&dh, o + PK_Q6_K_D + 2 * r, 2);
                float d = llc_fp16_to_fp32(dh), sum = 0;
                for (int j = 0; j < 16; j++) {
                    int b = j / 2;
                    int32_t s = -32 * x[sb].bsums[j];
                    for (int i = 4 * (j % 2); i < 4 * (j % 2) + 4; i++)
                        for (int k = 0; k < 4; k++) {
                            uint8_t lo = o[b * 384 + (i % 4) * 64 + r * 4 + k], hi = o[b * 384 + 256 + (i / 4) * 64 + r * 4 + k];
                            int q = (i < 4 ? lo & 15 : lo >> 4) | ((hi >> (2 * (i % 4))) & 3) << 4;
                            s += q * x[sb].qs[32 * b + 4 * i + k];
                        }
                    sum = fmaf((float)s, d * (float)(int8_t)o[PK_Q6_K_SC + j * 16 + r], sum);
                }
                acc = fmaf(x[sb].d, sum, acc);
            }
            out[(size_t)t * ldo + r] = acc;
        }
    }
}
