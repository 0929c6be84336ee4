/*
 * AVX-512 dot products (F + BW + VL, with VNNI for int8 and BF16 for bf16 pairs). Same structure as
 * dot_avx2.c; per-function target attributes, selected at run time by dispatch.c.
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/dispatch.h"

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
