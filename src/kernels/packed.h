#ifndef LLC_PACKED_H
#define LLC_PACKED_H
/*
 * Weights repacked for the int8 dot-product instruction: 16 rows interleaved.
 *
 * vpdpbusd multiplies 4 bytes by 4 bytes in each of 16 32-bit lanes. If lane r holds 4 consecutive
 * weights of row r, one instruction with the matching 4 activation bytes broadcast to every lane
 * advances 16 rows by 4 weights: a 32-weight block of 16 rows is 8 instructions, every loaded byte is
 * used, and nothing is summed horizontally. In the file's layout (one row after another) the same
 * work needs a horizontal sum and scalar scale conversions per row and block, which is what bounded
 * decode before (BENCHMARKS.md). So matrices of Q4_0 and Q8_0 weights are repacked once, in memory,
 * into groups of 16 rows. Per group, per 32-weight block b:
 *
 *   quants: Q4_0: 4 x 64 bytes; vector c, lane r = row r's 4 bytes qs[4c..4c+3] (low nibbles are
 *                 weights 4c..4c+3, high nibbles 16+4c..16+4c+3: unchanged Q4_0 bytes, reordered);
 *           Q8_0: 8 x 64 bytes; vector i, lane r = row r's qs[4i..4i+3] + 128 (as unsigned bytes);
 *   scales: the 16 rows' fp16 scales, together, after all the group's quants.
 *
 * vpdpbusd wants unsigned weights: Q4_0's nibble q stands for q - 8 and the stored Q8_0 byte u for
 * u - 128, so a block's product is sum(u * x) - offset * sum(x); the activation rows carry their
 * block sums (kernels/kernels.h) and the offset term starts the accumulator. The rows' products are
 * the same integers as the unpacked kernels'; only the order of the float additions differs.
 *
 * BF16 matrices get the same treatment with vdpbf16ps, which multiplies pairs: vector i, lane r holds
 * row r's weights 2i and 2i + 1 (16 vectors per 32 weights, no scales), against the activation pair
 * broadcast.
 *
 * Decode passes one token, prompts and batches up to LLC_PACK_TOKENS per call (the weights are
 * unpacked once per block for all of them).
 *
 * AVX2 without VNNI reads the same layout (packed_avx2.c): a 64-byte vector is two ymm of 8 rows, and
 * vpmaddubsw + vpmaddwd stand in for vpdpbusd, with the int16 intermediates kept from saturating.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#if defined(__x86_64__)
#include <xmmintrin.h>

/* One cache line of weights prefetched into L2 only or into L1 too (llc_prefetch in kernels.h); the
 * hint must be an immediate, and the branch goes the same way for the whole run. */
static inline void llc_prefetch_line(const char *p, bool l2) {
    if (l2) _mm_prefetch(p, _MM_HINT_T1);
    else _mm_prefetch(p, _MM_HINT_T0);
}
#endif

#define LLC_PACK_ROWS 16
#define LLC_PACK_TOKENS 8

/* K-quants go by superblocks of 256 weights (16 rows of one superblock = one unit, byte offsets below);
 * their activations are Q8_K rows, whose sums per 16 (bsums) pay for the constant parts.
 *   Q4_K: quants as Q4_0's, per pair of sub-blocks p (64 weights): 8 vectors, lane r = the row's 4
 *         bytes qs[32p + 4c ..] (low nibbles sub-block 2p, high nibbles 2p + 1); the rows' fp16 d and
 *         dmin; the 6-bit scales as bytes [sub-block][row]; the mins as int16 pairs (m[2k], m[2k+1])
 *         per lane, for vpdpwssd against the token's sub-block sums.
 *   Q6_K: per 32 weights, the low 4 bits as Q4_0's 4 vectors (nibble halves: weights 4c.. and
 *         16 + 4c..), the high 2 bits in 2 vectors (vector e, bits 2f: weights 4(4e + f)..), then
 *         the int8 scales [sub-block of 16][row] and the rows' fp16 d. Still 6.56 bits per weight. */
#define PK_Q4_K_QS 0
#define PK_Q4_K_D 2048
#define PK_Q4_K_DMIN 2080
#define PK_Q4_K_SC 2112
#define PK_Q4_K_M 2240
#define PK_Q4_K_BYTES 2496
#define PK_Q6_K_SC 3072
#define PK_Q6_K_D 3328
#define PK_Q6_K_BYTES 3392 /* 3360, padded to whole cache lines */

/* The SIMD kernels (packed_<isa>.c) are written for a token count T known at compile time (the loops
 * over tokens unroll and the accumulators stay in registers); this picks the instance for n_tok. */
#define PACKED_DISPATCH(tile, n_tok, ...)                   \
    switch (n_tok) {                                        \
    case 1: tile(__VA_ARGS__, 1, out, ldo); break;          \
    case 2: tile(__VA_ARGS__, 2, out, ldo); break;          \
    case 3: tile(__VA_ARGS__, 3, out, ldo); break;          \
    case 4: tile(__VA_ARGS__, 4, out, ldo); break;          \
    case 5: tile(__VA_ARGS__, 5, out, ldo); break;          \
    case 6: tile(__VA_ARGS__, 6, out, ldo); break;          \
    case 7: tile(__VA_ARGS__, 7, out, ldo); break;          \
    default: tile(__VA_ARGS__, 8, out, ldo); break;         \
    }

/* Bytes of one packed group of 16 rows of n_cols (a multiple of 64, so groups stay cache-line aligned). */
size_t llc_packed_group_bytes(uint32_t type, int64_t n_cols);
/* Repacks rows [16 * g0, 16 * g1) of a matrix in the file layout (rows src_rb bytes apart) into dst,
 * the packed matrix's start. Independent groups: threads split [0, n_rows / 16). */
void llc_pack_groups(uint32_t type, const void *src, size_t src_rb, int64_t n_cols, int64_t g0, int64_t g1, void *dst);

#endif
