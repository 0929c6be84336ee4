/*
 * AVX2 + FMA (+ F16C) dot products. Compiled with per-function target attributes so one binary runs
 * everywhere; they fill kernels_avx2.c's table, which dispatch.c chooses only when cpuid reports the
 * features. Integer blocks use the classic maddubs trick: |w| (unsigned) times sign-adjusted x gives
 * exact int16 pair sums.
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 float llc_dot_f32_avx2(int64_t n, const void *w, const void *x) {
    const float *a = w, *b = x;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

AVX2 float llc_dot_f16_avx2(int64_t n, const void *w, const void *x) {
    const uint16_t *a = w;
    const float *b = x;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8)));
        s0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(b + i + 8), s1);
    }
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += llc_fp16_to_fp32(a[i]) * b[i];
    return s;
}

AVX2 static inline __m256 bf16x8_to_f32(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

AVX2 float llc_dot_bf16_avx2(int64_t n, const void *w, const void *x) {
    const uint16_t *a = w, *b = x;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(bf16x8_to_f32(a + i), bf16x8_to_f32(b + i), s0);
        s1 = _mm256_fmadd_ps(bf16x8_to_f32(a + i + 8), bf16x8_to_f32(b + i + 8), s1);
    }
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += llc_bf16_to_fp32(a[i]) * llc_bf16_to_fp32(b[i]);
    return s;
}

/* Sum of 32 products of signed bytes, as 8 int32 lanes. */
AVX2 static inline __m256i dot_i8x32(__m256i w, __m256i x) {
    __m256i ax = _mm256_sign_epi8(w, w);          /* |w| */
    __m256i sx = _mm256_sign_epi8(x, w);          /* x * sign(w) */
    __m256i p16 = _mm256_maddubs_epi16(ax, sx);   /* exact: |w| <= 128, |x| <= 127, pairs <= 32512 */
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

AVX2 float llc_dot_q8_0_avx2(int64_t n, const void *w, const void *x) {
    const block_q8_0 *a = w, *b = x;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK8_0; i++) {
        __m256i s = dot_i8x32(_mm256_loadu_si256((const __m256i *)a[i].qs), _mm256_loadu_si256((const __m256i *)b[i].qs));
        __m256 d = _mm256_set1_ps(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc);
    }
    return hsum256(acc);
}

/* 16 bytes of nibbles -> 32 int8 in -8..7 (low nibbles are elements 0..15, high ones 16..31). */
AVX2 static inline __m256i unpack_q4_0(const uint8_t *qs) {
    __m128i v = _mm_loadu_si128((const __m128i *)qs);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    return _mm256_sub_epi8(_mm256_and_si256(both, _mm256_set1_epi8(0x0f)), _mm256_set1_epi8(8));
}

AVX2 float llc_dot_q4_0_avx2(int64_t n, const void *w, const void *x) {
    const block_q4_0 *a = w;
    const block_q8_0 *b = x;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK4_0; i++) {
        __m256i s = dot_i8x32(unpack_q4_0(a[i].qs), _mm256_loadu_si256((const __m256i *)b[i].qs));
        __m256 d = _mm256_set1_ps(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc);
    }
    return hsum256(acc);
}

/* ---- K-quants against Q8_K ------------------------------------------------------------------------
 * Per superblock: maddubs multiplies unsigned weight levels (0..15 or 0..63) by the signed int8
 * activations into exact int16 pair sums (at most 63 * 127 * 2 < 2^15), madd by the sub-block's scale
 * widens them to int32, and all of it stays integer until one float multiply-add by d * act.d. The
 * weights' constant part goes through bsums (see dot_scalar.c). Sub-block scales reach the lanes with
 * an in-lane byte shuffle of a register holding all of them: lane_word(k) picks 16-bit word k. */

AVX2 static inline __m256i lane_word(int lo, int hi) { /* word lo in the low 128 bits, word hi in the high */
    return _mm256_set_m128i(_mm_set1_epi16((short)(2 * hi | (2 * hi + 1) << 8)), _mm_set1_epi16((short)(2 * lo | (2 * lo + 1) << 8)));
}

/* Weight prefetch, one per cache line of a superblock, 4 KB ahead (measured in dot_avx512.c; here too:
 * Q4_K 6.9 GB/s without, 10.8 at 2 KB, 11.3 at 4 KB; Q6_K 7.5, 11.6, 12.5). */
#ifndef KQ_PF
#define KQ_PF 4096
#endif
AVX2 static inline void prefetch_lines(const char *p, size_t bytes) {
    if (!KQ_PF) return;
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
}

/* llc_q4_K_scale_words (types.h) on one register: bytes 0-7 the scales, 8-15 the mins. Reads 16
 * bytes from scales (the 12, then 4 of qs). The same in dot_avx512.c. */
AVX2 static inline __m128i q4_K_scales_mins(const uint8_t *scales) {
    __m128i v = _mm_loadu_si128((const __m128i *)scales);
    __m128i lo = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    __m128i hi = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    lo = _mm_and_si128(_mm_srlv_epi32(lo, _mm_setr_epi32(0, 0, 0, 4)), _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    return _mm_or_si128(lo, _mm_and_si128(_mm_srli_epi32(hi, 2), _mm_set1_epi8(0x30)));
}

/* fp16 d and dmin (adjacent in the block) times the activations' scale, in lanes 0 and 1. */
AVX2 static inline __m128 q4_K_d_dmin(const block_q4_K *a, float act_d) {
    uint32_t dm;
    memcpy(&dm, &a->d, 4);
    return _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)dm)), _mm_set1_ps(act_d));
}

AVX2 float llc_dot_q4_K_avx2(int64_t n, const void *w, const void *x) {
    const block_q4_K *a = w;
    const block_q8_K *b = x;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m128i mins_dup = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        prefetch_lines((const char *)(a + i) + KQ_PF, sizeof *a);
        __m128i sm = q4_K_scales_mins(a[i].scales);
        /* mins: m[j] times the sum of sub-block j's 32 activations (two bsums) */
        __m256i pm = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_shuffle_epi8(sm, mins_dup)),
                                       _mm256_loadu_si256((const __m256i *)b[i].bsums));
        __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm)), sumi = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int c = 0; c < QK_K / 64; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(a[i].qs + 32 * c));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            __m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(b[i].qs + 64 * c)));
            __m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(b[i].qs + 64 * c + 32)));
            pl = _mm256_madd_epi16(_mm256_shuffle_epi8(sc, lane_word(2 * c, 2 * c)), pl);
            ph = _mm256_madd_epi16(_mm256_shuffle_epi8(sc, lane_word(2 * c + 1, 2 * c + 1)), ph);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        __m128 dm = q4_K_d_dmin(&a[i], b[i].d);
        acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(dm), _mm256_cvtepi32_ps(sumi), acc);
        acc = _mm256_fnmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dm)), _mm256_cvtepi32_ps(pm), acc);
    }
    return hsum256(acc);
}

/* Q6_K: 6-bit levels from a low nibble of ql and two bits of qh, both already in place with a shift
 * and a mask; each 32-weight register covers two 16-weight sub-blocks, one per 128-bit lane. */
AVX2 float llc_dot_q6_K_avx2(int64_t n, const void *w, const void *x) {
    const block_q6_K *a = w;
    const block_q8_K *b = x;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        prefetch_lines((const char *)(a + i) + KQ_PF, sizeof *a);
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a[i].scales));
        /* -32 * sum_j sc[j] * bsums[j] */
        __m256i sumi = _mm256_slli_epi32(_mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)b[i].bsums)), 5);
        sumi = _mm256_sub_epi32(_mm256_setzero_si256(), sumi);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = a[i].ql + 64 * h;
            const int8_t *y = b[i].qs + 128 * h;
            __m256i sc = h ? _mm256_permute2x128_si256(sc16, sc16, 0x11) : _mm256_permute2x128_si256(sc16, sc16, 0x00);
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(a[i].qh + 32 * h));
            __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2)),
                _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2)),
            };
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(y + 32 * k)));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(sc, lane_word(2 * k, 2 * k + 1)), p));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * _cvtsh_ss(a[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum256(acc);
}
#endif
