/*
 * AVX-512 dot products (F + BW + VL, with VNNI for int8 and BF16 for bf16 pairs). Same structure as
 * dot_avx2.c; per-function target attributes, in the table of kernels_avx512.c.
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16,fma,f16c")))

AVX512 float llc_dot_f32_avx512(int64_t n, const void *w, const void *x) {
    const float *a = w, *b = x;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

AVX512 float llc_dot_f16_avx512(int64_t n, const void *w, const void *x) {
    const uint16_t *a = w;
    const float *b = x;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(a + i))), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(a + i + 16))), _mm512_loadu_ps(b + i + 16), s1);
    }
    if (i + 16 <= n) {
        s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(a + i))), _mm512_loadu_ps(b + i), s0);
        i += 16;
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, a + i)), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* vdpbf16ps: pairs of bf16 products added into f32 lanes. The products are exact in f32, so this
 * differs from the scalar kernel only in the order of the additions. */
AVX512 float llc_dot_bf16_avx512(int64_t n, const void *w, const void *x) {
    const uint16_t *a = w, *b = x;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_dpbf16_ps(s0, (__m512bh)_mm512_loadu_si512(a + i), (__m512bh)_mm512_loadu_si512(b + i));
        s1 = _mm512_dpbf16_ps(s1, (__m512bh)_mm512_loadu_si512(a + i + 32), (__m512bh)_mm512_loadu_si512(b + i + 32));
    }
    for (; i + 32 <= n; i += 32)
        s0 = _mm512_dpbf16_ps(s0, (__m512bh)_mm512_loadu_si512(a + i), (__m512bh)_mm512_loadu_si512(b + i));
    if (i < n) {
        __mmask32 m = (__mmask32)((1ull << (n - i)) - 1);
        s1 = _mm512_dpbf16_ps(s1, (__m512bh)_mm512_maskz_loadu_epi16(m, a + i), (__m512bh)_mm512_maskz_loadu_epi16(m, b + i));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* 32 signed int8 products summed into 8 int32 lanes with VNNI: vpdpbusd wants unsigned x signed,
 * so the sign of w moves onto x. */
AVX512 static inline __m256i dot_i8x32_vnni(__m256i w, __m256i x) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
}

AVX512 static inline float hsum256_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The weights stream from memory once per token: a software prefetch ~2 KB ahead (measured best of
 * 0.5/2/4 KB, see BENCHMARKS.md) hides more latency than the hardware prefetcher does on its own. */
AVX512 float llc_dot_q8_0_avx512(int64_t n, const void *w, const void *x) {
    const block_q8_0 *a = w, *b = x;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK8_0; i++) {
        _mm_prefetch((const char *)(a + i) + 2048, _MM_HINT_T0);
        __m256i s = dot_i8x32_vnni(_mm256_loadu_si256((const __m256i *)a[i].qs), _mm256_loadu_si256((const __m256i *)b[i].qs));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d)), acc);
    }
    return hsum256_ps(acc);
}

AVX512 float llc_dot_q4_0_avx512(int64_t n, const void *w, const void *x) {
    const block_q4_0 *a = w;
    const block_q8_0 *b = x;
    __m256 acc = _mm256_setzero_ps();
    const __m256i lo = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8);
    for (int64_t i = 0; i < n / QK4_0; i++) {
        _mm_prefetch((const char *)(a + i) + 2048, _MM_HINT_T0);
        __m128i v = _mm_loadu_si128((const __m128i *)a[i].qs);
        __m256i q = _mm256_sub_epi8(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), lo), eight);
        __m256i s = dot_i8x32_vnni(q, _mm256_loadu_si256((const __m256i *)b[i].qs));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d)), acc);
    }
    return hsum256_ps(acc);
}

/* ---- K-quants against Q8_K: dot_avx2.c's scheme at 512 bits, with VNNI's vpdpwssd fusing the
 * scale multiply (int16 pair sums times int16 scales) and the int32 accumulation. A 512-bit register
 * holds 64 consecutive weights: for Q4_K one 32-byte run of nibbles, low half then high half; for Q6_K
 * 64 bytes of ql plus qh and qh >> 2 side by side. Scales reach their lanes by vpermw. */

/* vpermw indices: 16-bit lane i takes word k0 + i / per (per = 16: two sub-blocks of 32 weights, whose
 * 16 int16 pair sums each fill half the register; per = 8: four sub-blocks of 16). */
AVX512 static inline __m512i word_index(int k0, int per) {
    __m512i i = _mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9,
                                 8, 7, 6, 5, 4, 3, 2, 1, 0);
    return _mm512_add_epi16(_mm512_set1_epi16((short)k0), per == 16 ? _mm512_srli_epi16(i, 4) : _mm512_srli_epi16(i, 3));
}

/* How far ahead the K-quant kernels prefetch weights. bench/bench_matvec.c, one thread, Q4_K (Q6_K):
 * none 7.2 (8.9) GB/s, 1 KB 9.8 (11.0), 2 KB 11.5 (12.6), 3-8 KB 12.0-12.2 (12.3-13.1), against ~12.8
 * GB/s for a plain f32 read: a superblock spans 2-4 cache lines, one prefetch per line, and further
 * ahead than Q4_0's 2 KB pays. -DKQ_PF=N re-measures (0: none); dot_avx2.c uses the same. */
#ifndef KQ_PF
#define KQ_PF 4096
#endif
AVX512 static inline void prefetch_lines(const char *p, size_t bytes) {
    if (!KQ_PF) return;
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
}

/* dot_avx2.c's q4_K_scales_mins (each file compiles for its own target). */
AVX512 static inline __m128i q4_K_scales_mins(const uint8_t *scales) {
    __m128i v = _mm_loadu_si128((const __m128i *)scales);
    __m128i lo = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    __m128i hi = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    lo = _mm_and_si128(_mm_srlv_epi32(lo, _mm_setr_epi32(0, 0, 0, 4)), _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    return _mm_or_si128(lo, _mm_and_si128(_mm_srli_epi32(hi, 2), _mm_set1_epi8(0x30)));
}

AVX512 float llc_dot_q4_K_avx512(int64_t n, const void *w, const void *x) {
    const block_q4_K *a = w;
    const block_q8_K *b = x;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m128i mins_dup = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        prefetch_lines((const char *)(a + i) + KQ_PF, sizeof *a);
        __m128i sm = q4_K_scales_mins(a[i].scales);
        /* mins: m[j] times the sum of sub-block j's 32 activations (two bsums) */
        __m256i pm = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_shuffle_epi8(sm, mins_dup)),
                                       _mm256_loadu_si256((const __m256i *)b[i].bsums));
        __m512i sc = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(sm)), sumi = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int c = 0; c < QK_K / 64; c++) {
            /* the 32 bytes in both halves (a load, no shuffle), the upper half shifted to its high nibbles */
            __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(a[i].qs + 32 * c)));
            __m512i q = _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xffff0000u, v, 4), m4);
            __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(b[i].qs + 64 * c));
            sumi = _mm512_dpwssd_epi32(sumi, p, _mm512_permutexvar_epi16(word_index(2 * c, 16), sc));
        }
        uint32_t dmw;
        memcpy(&dmw, &a[i].d, 4); /* d and dmin, converted together */
        __m128 dm = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)dmw)), _mm_set1_ps(b[i].d));
        acc = _mm512_fmadd_ps(_mm512_broadcastss_ps(dm), _mm512_cvtepi32_ps(sumi), acc);
        accm = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dm)), _mm256_cvtepi32_ps(pm), accm);
    }
    return _mm512_reduce_add_ps(acc) - hsum256_ps(accm);
}

AVX512 float llc_dot_q6_K_avx512(int64_t n, const void *w, const void *x) {
    const block_q6_K *a = w;
    const block_q8_K *b = x;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(0x30);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        prefetch_lines((const char *)(a + i) + KQ_PF, sizeof *a);
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a[i].scales));
        __m512i sc = _mm512_castsi256_si512(sc16);
        /* -32 * sum_j sc[j] * bsums[j], in the low 8 lanes */
        __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)b[i].bsums)), 5);
        __m512i sumi = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(corr));
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512i ql = _mm512_loadu_si512(a[i].ql + 64 * h);
            __m256i qh = _mm256_loadu_si256((const __m256i *)(a[i].qh + 32 * h));
            __m512i qhx = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
            __m512i lo = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(_mm512_slli_epi16(qhx, 4), m2));
            __m512i hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), _mm512_and_si512(qhx, m2));
            __m512i p0 = _mm512_maddubs_epi16(lo, _mm512_loadu_si512(b[i].qs + 128 * h));
            __m512i p1 = _mm512_maddubs_epi16(hi, _mm512_loadu_si512(b[i].qs + 128 * h + 64));
            sumi = _mm512_dpwssd_epi32(sumi, p0, _mm512_permutexvar_epi16(word_index(8 * h, 8), sc));
            sumi = _mm512_dpwssd_epi32(sumi, p1, _mm512_permutexvar_epi16(word_index(8 * h + 4, 8), sc));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(b[i].d * _cvtsh_ss(a[i].d)), _mm512_cvtepi32_ps(sumi), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* The 4 x 4 tiles (the pragmas unroll the small loops so the 16 accumulators stay in registers: gcc
 * and clang both honour them).  Weights are taken as unsigned bytes so one vpdpbusd per (row, token) does the block
 * product: Q4_0 nibbles q in 0..15 stand for q - 8, Q8_0 bytes w for (w + 128) - 128, and the offset
 * comes back as offset * sum(x), computed once per token block (vpdpbusd of the offset with x) and used
 * as the accumulator's start. Scales multiply in float per block, as in the vector kernels. */
AVX512 static inline void gemm4_block(const __m256i u[4], const __m256i corr[4], const __m256i xq[4], const float dw[4],
                                      const float dx[4], __m256 acc[4][4]) {
    #pragma GCC unroll 4
    for (int t = 0; t < 4; t++) {
        __m256 sx = _mm256_set1_ps(dx[t]);
        #pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            __m256i s = _mm256_dpbusd_epi32(corr[t], u[r], xq[t]);
            acc[t][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(_mm256_set1_ps(dw[r]), sx), acc[t][r]);
        }
    }
}

AVX512 static inline void gemm4_store(__m256 acc[4][4], float *out, size_t ldo) {
    #pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
        #pragma GCC unroll 4
        for (int r = 0; r < 4; r++) out[(size_t)t * ldo + r] = hsum256_ps(acc[t][r]);
}

/* Both block types against Q8_0 activations; q4 is a constant in each caller, so the branch folds
 * away and each gets its own specialised loop. offset: 8 for Q4_0's nibbles, 128 for Q8_0's bytes. */
AVX512 static inline void gemm4_q8_act(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *out, size_t ldo,
                                       bool q4) {
    __m256 acc[4][4];
    #pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
        #pragma GCC unroll 4
        for (int r = 0; r < 4; r++) acc[t][r] = _mm256_setzero_ps();
    const size_t wbs = q4 ? sizeof(block_q4_0) : sizeof(block_q8_0);
    const __m256i lo = _mm256_set1_epi8(0x0f), offset = _mm256_set1_epi8(q4 ? 8 : (char)0x80);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        __m256i u[4], xq[4], corr[4];
        float dw[4], dx[4];
        #pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const char *b = (const char *)w + r * ws + (size_t)i * wbs;
            if (q4) {
                __m128i v = _mm_loadu_si128((const __m128i *)(b + 2));
                u[r] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), lo);
            } else {
                u[r] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(b + 2)), offset); /* w + 128 as unsigned */
            }
            uint16_t d;
            memcpy(&d, b, 2);
            dw[r] = _cvtsh_ss(d);
        }
        #pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            const block_q8_0 *b = (const block_q8_0 *)((const char *)x + t * xs) + i;
            xq[t] = _mm256_loadu_si256((const __m256i *)b->qs);
            corr[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), offset, xq[t]));
            dx[t] = _cvtsh_ss(b->d);
        }
        gemm4_block(u, corr, xq, dw, dx, acc);
    }
    gemm4_store(acc, out, ldo);
}

AVX512 void llc_gemm4_q4_0_avx512(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *out, size_t ldo) {
    gemm4_q8_act(n, w, ws, x, xs, out, ldo, true);
}

AVX512 void llc_gemm4_q8_0_avx512(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *out, size_t ldo) {
    gemm4_q8_act(n, w, ws, x, xs, out, ldo, false);
}

/* BF16 4 x 4 tile: vdpbf16ps over 32 weights per step, 16 accumulators; the tail is masked. */
AVX512 void llc_gemm4_bf16_avx512(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *out, size_t ldo) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) acc[t][r] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 32) {
        __mmask32 m = n - i >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1ull << (n - i)) - 1);
        __m512bh wv[4], xv[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) wv[r] = (__m512bh)_mm512_maskz_loadu_epi16(m, (const uint16_t *)((const char *)w + r * ws) + i);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) xv[t] = (__m512bh)_mm512_maskz_loadu_epi16(m, (const uint16_t *)((const char *)x + t * xs) + i);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++)
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) acc[t][r] = _mm512_dpbf16_ps(acc[t][r], wv[r], xv[t]);
    }
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) out[(size_t)t * ldo + r] = _mm512_reduce_add_ps(acc[t][r]);
}
#endif
