/*
 * The packed 16-row kernels with AVX-512 VNNI (layout and reasoning in packed.h). One zmm accumulator
 * per token holds the 16 rows' sums; per block and token: 8 vpdpbusd with broadcast activation
 * bytes, one conversion, one multiply of the scales and one fused add.
 */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/kernels.h"
#include "kernels/packed.h"
#include "kernels/types.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

/* |v| and sign(v) * 1 by integer masks (the float forms need AVX-512 DQ, which dispatch does not check) */
AVX512 INLINE __m512 abs_ps(__m512 v, __m512i absmask) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), absmask));
}
AVX512 INLINE __m512 sign_one_ps(__m512 v, __m512i absmask) {
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_andnot_si512(absmask, _mm512_castps_si512(v)),
                                               _mm512_castps_si512(_mm512_set1_ps(1.0f))));
}

static inline int32_t load_i32(const void *p) {
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

/* T is a constant at every call site, so the token loops unroll and the accumulators stay in
 * registers (8 weight vectors + T accumulators + scales fit in the 32 zmm registers). So is q4: the
 * Q4_0 and Q8_0 instances are compiled apart, with no test of the type inside the loop.
 *
 * One token (decode) has a single chain of 8 dependent vpdpbusd per block; Zen 4 executes a 512-bit
 * vpdpbusd as two 256-bit halves with a latency of several cycles, and the chain left the kernel at
 * ~33 GB/s per thread with its weights in L2 — too close to what one core can read from memory. So a
 * lone token runs two chains (even and odd weight vectors), summed at the end of the block. Several tokens already
 * interleave independent chains. The offset term (Q4_0's 8, Q8_0's 128, times the activations' block
 * sum) is subtracted once per block from a broadcast of the sum, off the chains. */
AVX512 INLINE void packed_tile(const int q4, int64_t nb, const uint8_t *q, const uint16_t *d, const char *act, size_t act_rb,
                               const int T, float *out, size_t ldo) {
    const llc_prefetch pf = llc_pf;
    const size_t qb = q4 ? 256 : 512;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const int offset_shift = q4 ? 3 : 7; /* offset 8 or 128 */
    const int C = T == 1 ? 2 : 1;        /* dependency chains per token */
    const block_q8_0 *x[LLC_PACK_TOKENS];
    const float *xd[LLC_PACK_TOKENS];
    const int32_t *xs[LLC_PACK_TOKENS];
    __m512 acc[LLC_PACK_TOKENS];
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        const char *row = act + (size_t)t * act_rb;
        x[t] = (const block_q8_0 *)row;
        xd[t] = llc_q8_act_scales(row, nb);
        xs[t] = llc_q8_act_sums(row, nb);
        acc[t] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *qp = q + (size_t)b * qb;
        #pragma GCC unroll 8
        for (size_t l = 0; l < qb; l += 64) llc_prefetch_line((const char *)qp + pf.ahead + l, pf.l2);
        __m512i u[8];
        if (q4) {
            #pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                __m512i p = _mm512_load_si512((const void *)(qp + 64 * c));
                u[c] = _mm512_and_si512(p, m4);
                u[c + 4] = _mm512_and_si512(_mm512_srli_epi16(p, 4), m4);
            }
        } else {
            #pragma GCC unroll 8
            for (int i = 0; i < 8; i++) u[i] = _mm512_load_si512((const void *)(qp + 64 * i));
        }
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(d + b * LLC_PACK_ROWS)));
        /* weight vector outer, token inner: consecutive vpdpbusd feed independent accumulators (+20-37%
         * over token-outer in bench_packed, BENCHMARKS.md) */
        __m512i s[LLC_PACK_TOKENS][2];
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) s[t][0] = s[t][1] = _mm512_setzero_si512();
        #pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            #pragma GCC unroll 8
            for (int t = 0; t < T; t++)
                s[t][i % C] = _mm512_dpbusd_epi32(s[t][i % C], u[i], _mm512_set1_epi32(load_i32(x[t][b].qs + 4 * i)));
        }
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            __m512i st = C == 2 ? _mm512_add_epi32(s[t][0], s[t][1]) : s[t][0];
            st = _mm512_sub_epi32(st, _mm512_slli_epi32(_mm512_set1_epi32(xs[t][b]), offset_shift));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(st), _mm512_mul_ps(dw, _mm512_set1_ps(xd[t][b])), acc[t]);
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm512_storeu_ps(out + (size_t)t * ldo, acc[t]);
}

AVX512 INLINE void packed_gemm(const int q4, int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                               float *out, size_t ldo) {
    int64_t nb = n_cols / 32;
    const uint8_t *q = group;
    const uint16_t *d = (const uint16_t *)(q + (size_t)nb * (q4 ? 256 : 512));
    const char *a = act;
    PACKED_DISPATCH(packed_tile, n_tok, q4, nb, q, d, a, act_rb)
}

/* BF16: 16 vdpbf16ps per 32 weights and token. One chain of additions per token is enough when
 * several tokens interleave; fewer tokens get more accumulators (A), so the instruction's latency
 * does not serialize decode. */
AVX512 INLINE void packed_tile_bf16(int64_t nb, const uint8_t *w, const char *act, size_t act_rb, const int T, float *out,
                                    size_t ldo) {
    const llc_prefetch pf = llc_pf;
    enum { MAXA = 4 };
    const int A = T == 1 ? 4 : T <= 4 ? 2 : 1;
    const uint16_t *x[LLC_PACK_TOKENS];
    __m512 acc[LLC_PACK_TOKENS][MAXA];
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        x[t] = (const uint16_t *)(act + (size_t)t * act_rb);
        #pragma GCC unroll 4
        for (int a = 0; a < A; a++) acc[t][a] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wp = w + (size_t)b * 1024;
        for (size_t l = 0; l < 1024; l += 64) llc_prefetch_line((const char *)wp + pf.ahead + l, pf.l2);
        __m512bh u[16];
        #pragma GCC unroll 16
        for (int i = 0; i < 16; i++) u[i] = (__m512bh)_mm512_load_si512((const void *)(wp + 64 * i));
        /* weight vector outer, token inner: consecutive instructions feed independent accumulators */
        #pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            #pragma GCC unroll 8
            for (int t = 0; t < T; t++)
                acc[t][i % A] = _mm512_dpbf16_ps(acc[t][i % A], u[i], (__m512bh)_mm512_set1_epi32(load_i32(x[t] + b * 32 + 2 * i)));
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        __m512 s = acc[t][0];
        #pragma GCC unroll 4
        for (int a = 1; a < A; a++) s = _mm512_add_ps(s, acc[t][a]);
        _mm512_storeu_ps(out + (size_t)t * ldo, s);
    }
}

AVX512 void llc_packed_gemm_bf16_avx512(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                        float *out, size_t ldo) {
    int64_t nb = n_cols / 32;
    const uint8_t *w = group;
    const char *a = act;
    PACKED_DISPATCH(packed_tile_bf16, n_tok, nb, w, a, act_rb)
}

AVX512 void llc_packed_gemm_q4_0_avx512(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                        float *out, size_t ldo) {
    packed_gemm(1, n_cols, group, act, act_rb, n_tok, out, ldo);
}

AVX512 void llc_packed_gemm_q8_0_avx512(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                        float *out, size_t ldo) {
    packed_gemm(0, n_cols, group, act, act_rb, n_tok, out, ldo);
}
/* ---- K-quants (layouts in packed.h) ------------------------------------------------------------- */

AVX512 INLINE void packed_tile_q4_K(int64_t nsb, const uint8_t *w, const char *act, size_t act_rb, const int T, float *out,
                                    size_t ldo) {
    const llc_prefetch pf = llc_pf;
    const int C = T == 1 ? 2 : 1; /* dependency chains per token, as in packed_tile */
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const block_q8_K *x[LLC_PACK_TOKENS];
    __m512 acc[LLC_PACK_TOKENS];
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        x[t] = (const block_q8_K *)(act + (size_t)t * act_rb);
        acc[t] = _mm512_setzero_ps();
    }
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *o = w + (size_t)sb * PK_Q4_K_BYTES;
        for (size_t l = 0; l < PK_Q4_K_BYTES; l += 64) llc_prefetch_line((const char *)o + (pf.ahead_k ? pf.ahead_k : 4 * PK_Q4_K_BYTES) + l, pf.l2);
        const __m512 d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(o + PK_Q4_K_D)));
        __m512 sum[LLC_PACK_TOKENS];
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) sum[t] = _mm512_setzero_ps();
        /* A pair of sub-blocks shares its bytes (low and high nibbles): load them once, and unroll the
         * halves so both chains are in flight together and the nibble choice is not a branch. */
        for (int pr = 0; pr < 4; pr++) {
            const uint8_t *qp = o + PK_Q4_K_QS + pr * 512;
            __m512i v[8];
            #pragma GCC unroll 8
            for (int c = 0; c < 8; c++) v[c] = _mm512_load_si512((const void *)(qp + 64 * c));
            #pragma GCC unroll 2
            for (int half = 0; half < 2; half++) {
                const int j = 2 * pr + half;
                __m512 dsc = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_load_si128((const __m128i *)(o + PK_Q4_K_SC + 16 * j)))));
                __m512i s[LLC_PACK_TOKENS][2];
                #pragma GCC unroll 8
                for (int t = 0; t < T; t++) s[t][0] = s[t][1] = _mm512_setzero_si512();
                #pragma GCC unroll 8
                for (int c = 0; c < 8; c++) {
                    const __m512i u = _mm512_and_si512(half ? _mm512_srli_epi16(v[c], 4) : v[c], m4);
                    #pragma GCC unroll 8
                    for (int t = 0; t < T; t++)
                        s[t][c % C] = _mm512_dpbusd_epi32(s[t][c % C], u, _mm512_set1_epi32(load_i32(x[t][sb].qs + 32 * j + 4 * c)));
                }
                #pragma GCC unroll 8
                for (int t = 0; t < T; t++)
                    sum[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(C == 2 ? _mm512_add_epi32(s[t][0], s[t][1]) : s[t][0]), dsc, sum[t]);
            }
        }
        const __m512 dmin = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(o + PK_Q4_K_DMIN)));
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            /* the token's sums of the 8 sub-blocks as int16 pairs, one 32-bit word per pair of mins */
            __m256i bs = _mm256_loadu_si256((const __m256i *)x[t][sb].bsums);
            __m256i s32 = _mm256_madd_epi16(bs, _mm256_set1_epi16(1));
            __m128i s16 = _mm_packs_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
            __m512i mins = _mm512_setzero_si512();
            mins = _mm512_dpwssd_epi32(mins, _mm512_load_si512((const void *)(o + PK_Q4_K_M)), _mm512_set1_epi32(_mm_extract_epi32(s16, 0)));
            mins = _mm512_dpwssd_epi32(mins, _mm512_load_si512((const void *)(o + PK_Q4_K_M + 64)), _mm512_set1_epi32(_mm_extract_epi32(s16, 1)));
            mins = _mm512_dpwssd_epi32(mins, _mm512_load_si512((const void *)(o + PK_Q4_K_M + 128)), _mm512_set1_epi32(_mm_extract_epi32(s16, 2)));
            mins = _mm512_dpwssd_epi32(mins, _mm512_load_si512((const void *)(o + PK_Q4_K_M + 192)), _mm512_set1_epi32(_mm_extract_epi32(s16, 3)));
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(x[t][sb].d), _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mins), dmin, sum[t]), acc[t]);
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm512_storeu_ps(out + (size_t)t * ldo, acc[t]);
}

AVX512 INLINE void packed_tile_q6_K(int64_t nsb, const uint8_t *w, const char *act, size_t act_rb, const int T, float *out,
                                    size_t ldo) {
    const llc_prefetch pf = llc_pf;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const block_q8_K *x[LLC_PACK_TOKENS];
    __m512 acc[LLC_PACK_TOKENS];
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        x[t] = (const block_q8_K *)(act + (size_t)t * act_rb);
        acc[t] = _mm512_setzero_ps();
    }
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *o = w + (size_t)sb * PK_Q6_K_BYTES;
        for (size_t l = 0; l < PK_Q6_K_BYTES; l += 64) llc_prefetch_line((const char *)o + (pf.ahead_k ? pf.ahead_k : 2 * PK_Q6_K_BYTES) + l, pf.l2);
        const __m512 d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(o + PK_Q6_K_D)));
        __m512 sum[LLC_PACK_TOKENS];
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) sum[t] = _mm512_setzero_ps();
        for (int b = 0; b < 8; b++) {
            const uint8_t *qp = o + b * 384;
            const __m512i h0 = _mm512_load_si512((const void *)(qp + 256)), h1 = _mm512_load_si512((const void *)(qp + 320));
            #pragma GCC unroll 2
            for (int half = 0; half < 2; half++) {
                /* sub-block 2b + half: weights 16 half .. 16 half + 15 of the 32, vectors i = 4 half .. */
                const int j = 2 * b + half;
                __m512i u[4];
                #pragma GCC unroll 4
                for (int f = 0; f < 4; f++) {
                    __m512i p = _mm512_load_si512((const void *)(qp + 64 * f));
                    __m512i lo = _mm512_and_si512(half ? _mm512_srli_epi16(p, 4) : p, m4);
                    __m512i h = half ? h1 : h0;
                    __m512i hs = f == 0 ? _mm512_slli_epi16(h, 4) : f == 1 ? _mm512_slli_epi16(h, 2) : f == 2 ? h : _mm512_srli_epi16(h, 2);
                    u[f] = _mm512_ternarylogic_epi32(lo, hs, m30, 0xF8); /* lo | (hs & 0x30) */
                }
                __m512 dsc = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_load_si128((const __m128i *)(o + PK_Q6_K_SC + 16 * j)))));
                __m512i s[LLC_PACK_TOKENS];
                #pragma GCC unroll 8
                for (int t = 0; t < T; t++) s[t] = _mm512_set1_epi32(-32 * x[t][sb].bsums[j]);
                #pragma GCC unroll 4
                for (int f = 0; f < 4; f++) {
                    #pragma GCC unroll 8
                    for (int t = 0; t < T; t++)
                        s[t] = _mm512_dpbusd_epi32(s[t], u[f], _mm512_set1_epi32(load_i32(x[t][sb].qs + 32 * b + 16 * half + 4 * f)));
                }
                #pragma GCC unroll 8
                for (int t = 0; t < T; t++) sum[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), dsc, sum[t]);
            }
        }
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(x[t][sb].d), sum[t], acc[t]);
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm512_storeu_ps(out + (size_t)t * ldo, acc[t]);
}


AVX512 void llc_packed_gemm_q4_K_avx512(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                        float *out, size_t ldo) {
    PACKED_DISPATCH(packed_tile_q4_K, n_tok, n_cols / QK_K, (const uint8_t *)group, (const char *)act, act_rb)
}

AVX512 void llc_packed_gemm_q6_K_avx512(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                        float *out, size_t ldo) {
    PACKED_DISPATCH(packed_tile_q6_K, n_tok, n_cols / QK_K, (const uint8_t *)group, (const char *)act, act_rb)
}

/* Activations (optionally times RMSNorm's scale and weights) to Q8_0 with the block sums the packed
 * kernels want (the layout in kernels/kernels.h). Bit for bit the scalar converter's result: the same scale arithmetic, roundf's half-away-from-zero
 * rounding rebuilt from a truncation, NaN to 0 as the scalar quantizer does. */
AVX512 void llc_act_q8_0_avx512(const float *x, void *row, int64_t n, float scale, const float *w) {
    int64_t nb = n / 32;
    block_q8_0 *blk = row;
    float *scales = (float *)((char *)row + llc_q8_act_tail(nb));
    int32_t *sums = (int32_t *)(scales + nb);
    const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
    const __m512 lim = _mm512_set1_ps(127.0f);
    const __m512 half = _mm512_set1_ps(0.5f);
    for (int64_t b = 0; b < nb; b++) {
        __m512 v[2] = {_mm512_loadu_ps(x + 32 * b), _mm512_loadu_ps(x + 32 * b + 16)};
        if (w) {
            const __m512 sc = _mm512_set1_ps(scale);
            v[0] = _mm512_mul_ps(_mm512_mul_ps(v[0], sc), _mm512_loadu_ps(w + 32 * b));
            v[1] = _mm512_mul_ps(_mm512_mul_ps(v[1], sc), _mm512_loadu_ps(w + 32 * b + 16));
        }
        /* max(|v|, acc) keeps acc when |v| is NaN, as fmaxf does */
        __m512 amax = _mm512_max_ps(abs_ps(v[0], absmask), _mm512_setzero_ps());
        amax = _mm512_max_ps(abs_ps(v[1], absmask), amax);
        float d = _mm512_reduce_max_ps(amax) / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        uint16_t dh = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        blk[b].d = dh;
        float dx = _cvtsh_ss(dh);
        __builtin_memcpy(&scales[b], &dx, 4); /* rows of any alignment (tests use odd strides) */
        __m512i qsum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512 s = _mm512_mul_ps(v[h], _mm512_set1_ps(id));
            s = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(s, s, _CMP_ORD_Q), s);
            s = _mm512_min_ps(_mm512_max_ps(s, _mm512_sub_ps(_mm512_setzero_ps(), lim)), lim);
            __m512 t = _mm512_roundscale_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __mmask16 up = _mm512_cmp_ps_mask(abs_ps(_mm512_sub_ps(s, t), absmask), half, _CMP_GE_OQ);
            t = _mm512_mask_add_ps(t, up, t, sign_one_ps(s, absmask));
            __m512i q = _mm512_cvttps_epi32(t);
            qsum = _mm512_add_epi32(qsum, q);
            _mm_storeu_si128((__m128i *)(blk[b].qs + 16 * h), _mm512_cvtepi32_epi8(q));
        }
        int32_t sum = _mm512_reduce_add_epi32(qsum);
        __builtin_memcpy(&sums[b], &sum, 4);
    }
}
#endif
