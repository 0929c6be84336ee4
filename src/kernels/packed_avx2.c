/*
 * The packed 16-row kernels (layout in packed.h) for plain AVX2 + FMA + F16C (Haswell and later; no
 * AVX-512, no AVX-VNNI), so AVX2-only CPUs read the same packed matrices as AVX-512 ones. A 64-byte
 * packed vector is two ymm halves, h = 0: rows 0-7, h = 1: rows 8-15; each half is computed as the
 * AVX-512 kernels compute the whole vector.
 *
 * Without vpdpbusd a lane's 4-byte dot product is vpmaddubsw (unsigned bytes times signed bytes, pairs
 * summed into int16 WITH SATURATION) and vpmaddwd with ones (int16 pairs into int32). Exactness rests
 * on the int16 bounds per vpmaddubsw lane (activations: Q8_0 -127..127, the quantizer clamps there;
 * Q8_K -128..127):
 *   Q4_0, Q4_K: nibbles 0..15, 2 * 15 * 128 = 3840; a block's 8 products (30720) are summed in int16
 *     before one vpmaddwd.
 *   Q6_K: 6-bit values 0..63, 2 * 63 * 128 = 16128; two of them (32256) at most.
 *   Q8_0: the stored u = q + 128 reaches 2 * 255 * 127 = 64770 and would saturate. So the signed q is
 *     recovered (u ^ 0x80) and multiplied as |q| (unsigned, up to 128, -128 included) by x with q's
 *     sign (vpsignb): 2 * 128 * 127 = 32512 fits. The activation is the negated operand because it is
 *     never -128 (negating -128 wraps); the weight, read from a file, may be. The product is sum(q x),
 *     which already includes the scalar's -128 * sum(x) start: the same integer.
 * So every block's integer sum is the scalar twin's, and the float operations after it are the twin's,
 * in the same order: identical bits (tests/unit/test_packed.c, also at the extreme values).
 */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/kernels.h"
#include "kernels/packed.h"
#include "kernels/types.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

static inline int32_t load_i32(const void *p) {
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

/* 4 activation bytes in every 32-bit lane */
AVX2 INLINE __m256i bcast4(const void *p) { return _mm256_set1_epi32(load_i32(p)); }

/* 8 int16 sums of the pair products, summed into int32 lanes */
AVX2 INLINE __m256i widen16(__m256i s16) { return _mm256_madd_epi16(s16, _mm256_set1_epi16(1)); }

/* Σ_i u[i] · x[4i..4i+3] per lane for the 8 nibble vectors of a block: the int16 tree is exact
 * (30720 at most, file comment). */
AVX2 INLINE __m256i dot_nibbles8(const __m256i u[8], const int8_t *x) {
    __m256i p[8];
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i++) p[i] = _mm256_maddubs_epi16(u[i], bcast4(x + 4 * i));
    __m256i a = _mm256_add_epi16(_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3]));
    __m256i b = _mm256_add_epi16(_mm256_add_epi16(p[4], p[5]), _mm256_add_epi16(p[6], p[7]));
    return widen16(_mm256_add_epi16(a, b));
}

/* 8 fp16 as floats */
AVX2 INLINE __m256 load_ph(const void *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

/* Q4_0 and Q8_0. Per block and half: the weight vectors are unpacked once for all T tokens. */
AVX2 INLINE void packed_tile(int q4, int64_t nb, const uint8_t *q, const uint16_t *d, const char *act, size_t act_rb,
                             const int T, float *out, size_t ldo) {
    const llc_prefetch pf = llc_pf;
    const size_t qb = q4 ? 256 : 512;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m80 = _mm256_set1_epi8((char)0x80);
    const block_q8_0 *x[LLC_PACK_TOKENS];
    const float *xd[LLC_PACK_TOKENS];
    const int32_t *xs[LLC_PACK_TOKENS];
    __m256 acc[LLC_PACK_TOKENS][2];
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        const char *row = act + (size_t)t * act_rb;
        x[t] = (const block_q8_0 *)row;
        xd[t] = llc_q8_act_scales(row, nb);
        xs[t] = llc_q8_act_sums(row, nb);
        acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qp = q + (size_t)b * qb;
        /* every cache line 4 KB ahead, as the AVX-512 kernels */
        for (size_t l = 0; l < qb; l += 64) llc_prefetch_line((const char *)qp + pf.ahead + l, pf.l2);
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const uint8_t *qh = qp + 32 * h;
            const __m256 dw = load_ph(d + b * LLC_PACK_ROWS + 8 * h);
            __m256i s[LLC_PACK_TOKENS];
            if (q4) {
                __m256i u[8];
                #pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    __m256i p = _mm256_load_si256((const __m256i *)(qh + 64 * c));
                    u[c] = _mm256_and_si256(p, m4);
                    u[c + 4] = _mm256_and_si256(_mm256_srli_epi16(p, 4), m4);
                }
                #pragma GCC unroll 8
                for (int t = 0; t < T; t++)
                    s[t] = _mm256_add_epi32(dot_nibbles8(u, x[t][b].qs), _mm256_set1_epi32(-8 * xs[t][b]));
            } else {
                #pragma GCC unroll 8
                for (int t = 0; t < T; t++) s[t] = _mm256_setzero_si256();
                #pragma GCC unroll 8
                for (int i = 0; i < 8; i++) {
                    __m256i sq = _mm256_xor_si256(_mm256_load_si256((const __m256i *)(qh + 64 * i)), m80);
                    __m256i aq = _mm256_abs_epi8(sq);
                    #pragma GCC unroll 8
                    for (int t = 0; t < T; t++)
                        s[t] = _mm256_add_epi32(
                            s[t], widen16(_mm256_maddubs_epi16(aq, _mm256_sign_epi8(bcast4(x[t][b].qs + 4 * i), sq))));
                }
            }
            #pragma GCC unroll 8
            for (int t = 0; t < T; t++)
                acc[t][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[t]), _mm256_mul_ps(dw, _mm256_set1_ps(xd[t][b])), acc[t][h]);
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        _mm256_storeu_ps(out + (size_t)t * ldo, acc[t][0]);
        _mm256_storeu_ps(out + (size_t)t * ldo + 8, acc[t][1]);
    }
}

AVX2 static void packed_gemm(int q4, int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                             float *out, size_t ldo) {
    int64_t nb = n_cols / 32;
    const uint8_t *q = group;
    const uint16_t *d = (const uint16_t *)(q + (size_t)nb * (q4 ? 256 : 512));
    const char *a = act;
    PACKED_DISPATCH(packed_tile, n_tok, q4, nb, q, d, a, act_rb)
}

AVX2 void llc_packed_gemm_q4_0_avx2(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                    float *out, size_t ldo) {
    packed_gemm(1, n_cols, group, act, act_rb, n_tok, out, ldo);
}

AVX2 void llc_packed_gemm_q8_0_avx2(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                    float *out, size_t ldo) {
    packed_gemm(0, n_cols, group, act, act_rb, n_tok, out, ldo);
}

/* BF16: a lane's pair of bf16 weights widened to f32 by shifts (even weight: << 16; odd: the high half
 * as it is), times the activation pair widened the same way, fused-added; products of two bf16 are
 * exact in f32, so only the order of additions differs from the twin. At most 4 tokens at a time
 * (T <= 4): 2 halves x T accumulators, 4 weight vectors and the activation pair fit the 16 ymm
 * registers; decode gets more accumulators (A) so the FMA latency does not serialize it. */
AVX2 INLINE void packed_tile_bf16(int64_t nb, const uint8_t *w, const char *act, size_t act_rb, const int T, float *out,
                                  size_t ldo) {
    const llc_prefetch pf = llc_pf;
    enum { MAXA = 4 };
    const int A = T == 1 ? 4 : T == 2 ? 2 : 1;
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    const uint16_t *x[4];
    __m256 acc[4][2][MAXA];
    #pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        x[t] = (const uint16_t *)(act + (size_t)t * act_rb);
        #pragma GCC unroll 4
        for (int a = 0; a < A; a++) acc[t][0][a] = acc[t][1][a] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wp = w + (size_t)b * 1024;
        for (size_t l = 0; l < 1024; l += 64) llc_prefetch_line((const char *)wp + pf.ahead + l, pf.l2);
        #pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            __m256 we[2], wo[2];
            #pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m256i v = _mm256_load_si256((const __m256i *)(wp + 64 * i + 32 * h));
                we[h] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
                wo[h] = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
            }
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                __m256i xp = bcast4(x[t] + b * 32 + 2 * i);
                __m256 xe = _mm256_castsi256_ps(_mm256_slli_epi32(xp, 16)), xo = _mm256_castsi256_ps(_mm256_and_si256(xp, hi));
                #pragma GCC unroll 2
                for (int h = 0; h < 2; h++)
                    acc[t][h][i % A] = _mm256_fmadd_ps(wo[h], xo, _mm256_fmadd_ps(we[h], xe, acc[t][h][i % A]));
            }
        }
    }
    #pragma GCC unroll 4
    for (int t = 0; t < T; t++)
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256 s = acc[t][h][0];
            #pragma GCC unroll 4
            for (int a = 1; a < A; a++) s = _mm256_add_ps(s, acc[t][h][a]);
            _mm256_storeu_ps(out + (size_t)t * ldo + 8 * h, s);
        }
}

AVX2 void llc_packed_gemm_bf16_avx2(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                    float *out, size_t ldo) {
    int64_t nb = n_cols / 32;
    const uint8_t *w = group;
    const char *a = act;
    /* more than 4 tokens: 4, then the rest, over the same group (in cache by then) */
    while (n_tok > 0) {
        int nt = n_tok < 4 ? n_tok : 4;
        switch (nt) {
        case 1: packed_tile_bf16(nb, w, a, act_rb, 1, out, ldo); break;
        case 2: packed_tile_bf16(nb, w, a, act_rb, 2, out, ldo); break;
        case 3: packed_tile_bf16(nb, w, a, act_rb, 3, out, ldo); break;
        default: packed_tile_bf16(nb, w, a, act_rb, 4, out, ldo); break;
        }
        n_tok -= nt;
        a += (size_t)nt * act_rb;
        out += (size_t)nt * ldo;
    }
}

/* ---- K-quants (layouts in packed.h) ------------------------------------------------------------- */

AVX2 INLINE void packed_tile_q4_K(int64_t nsb, const uint8_t *w, const char *act, size_t act_rb, const int T, float *out,
                                  size_t ldo) {
    const llc_prefetch pf = llc_pf;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const block_q8_K *x[LLC_PACK_TOKENS];
    __m256 acc[LLC_PACK_TOKENS][2];
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        x[t] = (const block_q8_K *)(act + (size_t)t * act_rb);
        acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    }
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *o = w + (size_t)sb * PK_Q4_K_BYTES;
        for (size_t l = 0; l < PK_Q4_K_BYTES; l += 64) llc_prefetch_line((const char *)o + (pf.ahead_k ? pf.ahead_k : 4 * PK_Q4_K_BYTES) + l, pf.l2);
        /* each token's sums of the 8 sub-blocks (|sum| <= 32 * 128: int16 exactly), as int16 pairs, one
         * 32-bit word per pair of mins */
        int32_t spair[LLC_PACK_TOKENS][4];
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            __m256i s32 = widen16(_mm256_loadu_si256((const __m256i *)x[t][sb].bsums));
            __m128i s16 = _mm_packs_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
            _mm_storeu_si128((__m128i *)spair[t], s16);
        }
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256 d = load_ph(o + PK_Q4_K_D + 16 * h);
            __m256 sum[LLC_PACK_TOKENS];
            #pragma GCC unroll 8
            for (int t = 0; t < T; t++) sum[t] = _mm256_setzero_ps();
            for (int j = 0; j < 8; j++) {
                const uint8_t *qp = o + PK_Q4_K_QS + (j / 2) * 512 + 32 * h;
                __m256i u[8];
                #pragma GCC unroll 8
                for (int c = 0; c < 8; c++) {
                    __m256i p = _mm256_load_si256((const __m256i *)(qp + 64 * c));
                    u[c] = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(p, 4) : p, m4);
                }
                __m256 dsc = _mm256_mul_ps(
                    d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(o + PK_Q4_K_SC + 16 * j + 8 * h)))));
                #pragma GCC unroll 8
                for (int t = 0; t < T; t++)
                    sum[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_nibbles8(u, x[t][sb].qs + 32 * j)), dsc, sum[t]);
            }
            const __m256 dmin = load_ph(o + PK_Q4_K_DMIN + 16 * h);
            #pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                __m256i mins = _mm256_setzero_si256();
                #pragma GCC unroll 4
                for (int k = 0; k < 4; k++)
                    mins = _mm256_add_epi32(mins, _mm256_madd_epi16(_mm256_load_si256((const __m256i *)(o + PK_Q4_K_M + 64 * k + 32 * h)),
                                                                    _mm256_set1_epi32(spair[t][k])));
                acc[t][h] = _mm256_fmadd_ps(_mm256_set1_ps(x[t][sb].d), _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), dmin, sum[t]), acc[t][h]);
            }
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        _mm256_storeu_ps(out + (size_t)t * ldo, acc[t][0]);
        _mm256_storeu_ps(out + (size_t)t * ldo + 8, acc[t][1]);
    }
}

AVX2 INLINE void packed_tile_q6_K(int64_t nsb, const uint8_t *w, const char *act, size_t act_rb, const int T, float *out,
                                  size_t ldo) {
    const llc_prefetch pf = llc_pf;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    const block_q8_K *x[LLC_PACK_TOKENS];
    __m256 acc[LLC_PACK_TOKENS][2];
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        x[t] = (const block_q8_K *)(act + (size_t)t * act_rb);
        acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    }
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *o = w + (size_t)sb * PK_Q6_K_BYTES;
        for (size_t l = 0; l < PK_Q6_K_BYTES; l += 64) llc_prefetch_line((const char *)o + (pf.ahead_k ? pf.ahead_k : 2 * PK_Q6_K_BYTES) + l, pf.l2);
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256 d = load_ph(o + PK_Q6_K_D + 16 * h);
            __m256 sum[LLC_PACK_TOKENS];
            #pragma GCC unroll 8
            for (int t = 0; t < T; t++) sum[t] = _mm256_setzero_ps();
            for (int b = 0; b < 8; b++) {
                const uint8_t *qp = o + b * 384 + 32 * h;
                const __m256i h0 = _mm256_load_si256((const __m256i *)(qp + 256)), h1 = _mm256_load_si256((const __m256i *)(qp + 320));
                #pragma GCC unroll 2
                for (int half = 0; half < 2; half++) {
                    /* sub-block 2b + half: weights 16 half .. 16 half + 15 of the 32 */
                    const int j = 2 * b + half;
                    __m256i u[4];
                    #pragma GCC unroll 4
                    for (int f = 0; f < 4; f++) {
                        __m256i p = _mm256_load_si256((const __m256i *)(qp + 64 * f));
                        __m256i lo = _mm256_and_si256(half ? _mm256_srli_epi16(p, 4) : p, m4);
                        __m256i hv = half ? h1 : h0;
                        __m256i hs = f == 0 ? _mm256_slli_epi16(hv, 4) : f == 1 ? _mm256_slli_epi16(hv, 2) : f == 2 ? hv : _mm256_srli_epi16(hv, 2);
                        u[f] = _mm256_or_si256(lo, _mm256_and_si256(hs, m30));
                    }
                    __m256 dsc = _mm256_mul_ps(
                        d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(o + PK_Q6_K_SC + 16 * j + 8 * h)))));
                    #pragma GCC unroll 8
                    for (int t = 0; t < T; t++) {
                        const int8_t *xq = x[t][sb].qs + 32 * b + 16 * half;
                        /* two products per int16 sum at most (32256, file comment) */
                        __m256i p01 = _mm256_add_epi16(_mm256_maddubs_epi16(u[0], bcast4(xq)), _mm256_maddubs_epi16(u[1], bcast4(xq + 4)));
                        __m256i p23 = _mm256_add_epi16(_mm256_maddubs_epi16(u[2], bcast4(xq + 8)), _mm256_maddubs_epi16(u[3], bcast4(xq + 12)));
                        __m256i s = _mm256_add_epi32(_mm256_add_epi32(widen16(p01), widen16(p23)), _mm256_set1_epi32(-32 * x[t][sb].bsums[j]));
                        sum[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), dsc, sum[t]);
                    }
                }
            }
            #pragma GCC unroll 8
            for (int t = 0; t < T; t++) acc[t][h] = _mm256_fmadd_ps(_mm256_set1_ps(x[t][sb].d), sum[t], acc[t][h]);
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        _mm256_storeu_ps(out + (size_t)t * ldo, acc[t][0]);
        _mm256_storeu_ps(out + (size_t)t * ldo + 8, acc[t][1]);
    }
}

AVX2 void llc_packed_gemm_q4_K_avx2(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                    float *out, size_t ldo) {
    PACKED_DISPATCH(packed_tile_q4_K, n_tok, n_cols / QK_K, (const uint8_t *)group, (const char *)act, act_rb)
}

AVX2 void llc_packed_gemm_q6_K_avx2(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                    float *out, size_t ldo) {
    PACKED_DISPATCH(packed_tile_q6_K, n_tok, n_cols / QK_K, (const uint8_t *)group, (const char *)act, act_rb)
}

/* ---- activations -------------------------------------------------------------------------------- */

/* |v| and sign(v) * 1 by integer masks */
AVX2 INLINE __m256 abs_ps(__m256 v, __m256 absmask) { return _mm256_and_ps(v, absmask); }
AVX2 INLINE __m256 sign_one_ps(__m256 v, __m256 absmask) { return _mm256_or_ps(_mm256_andnot_ps(absmask, v), _mm256_set1_ps(1.0f)); }

/* The Q8_0 activation rows with block sums (kernels/kernels.h), byte for byte the scalar quantizer's:
 * the same scale arithmetic, roundf's half-away-from-zero rounding rebuilt from a truncation, NaN to
 * 0, as llc_act_q8_0_avx512 does with 16 lanes. */
AVX2 void llc_act_q8_0_avx2(const float *x, void *row, int64_t n, float scale, const float *w) {
    int64_t nb = n / 32;
    block_q8_0 *blk = row;
    float *scales = (float *)((char *)row + llc_q8_act_tail(nb));
    int32_t *sums = (int32_t *)(scales + nb);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 lim = _mm256_set1_ps(127.0f), nlim = _mm256_set1_ps(-127.0f), half = _mm256_set1_ps(0.5f);
    /* _mm256_packs_epi32/epi16 interleave the 128-bit lanes; this puts the 32 bytes back in order */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < nb; b++) {
        __m256 v[4];
        #pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 32 * b + 8 * k);
            if (w) v[k] = _mm256_mul_ps(_mm256_mul_ps(v[k], _mm256_set1_ps(scale)), _mm256_loadu_ps(w + 32 * b + 8 * k));
        }
        /* max(|v|, acc) keeps acc when |v| is NaN, as fmaxf does */
        __m256 amax = _mm256_setzero_ps();
        #pragma GCC unroll 4
        for (int k = 0; k < 4; k++) amax = _mm256_max_ps(abs_ps(v[k], absmask), amax);
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        float d = _mm_cvtss_f32(m) / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        uint16_t dh = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __builtin_memcpy(&blk[b].d, &dh, 2);
        float dx = _cvtsh_ss(dh);
        __builtin_memcpy(&scales[b], &dx, 4); /* rows of any alignment (tests use odd strides) */
        __m256i q[4], qsum = _mm256_setzero_si256();
        #pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256 s = _mm256_mul_ps(v[k], _mm256_set1_ps(id));
            s = _mm256_and_ps(s, _mm256_cmp_ps(s, s, _CMP_ORD_Q)); /* NaN to 0 before max/min, which would pass it on */
            s = _mm256_min_ps(_mm256_max_ps(s, nlim), lim);
            __m256 t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m256 up = _mm256_cmp_ps(abs_ps(_mm256_sub_ps(s, t), absmask), half, _CMP_GE_OQ);
            t = _mm256_add_ps(t, _mm256_and_ps(up, sign_one_ps(s, absmask)));
            q[k] = _mm256_cvttps_epi32(t);
            qsum = _mm256_add_epi32(qsum, q[k]);
        }
        /* |q| <= 127: the saturating packs are exact */
        __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)blk[b].qs, _mm256_permutevar8x32_epi32(bytes, order));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(qsum), _mm256_extracti128_si256(qsum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
        int32_t sum = _mm_cvtsi128_si32(s4);
        __builtin_memcpy(&sums[b], &sum, 4);
    }
}
#endif
