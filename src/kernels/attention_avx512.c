/* Attention's inner pieces with AVX-512 F + VL; see attention_simd.h. */
#if defined(__x86_64__)
#include <immintrin.h>

#include "base/fp16.h"
#include "kernels/attention.h"
#include "kernels/attention_simd.h"
#include "kernels/kernels.h"

#define TILE LLC_ATTN_TILE

/* ---- AVX-512 ---- */
#define AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define AVX512_INLINE AVX512 static inline __attribute__((always_inline))

AVX512_INLINE __mmask16 lanes512(int n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

/* [Σa, Σb, Σc, Σd]: the 4-vector reduction per 128-bit lane, then the four lanes added. */
AVX512_INLINE __m128 hsum4_512(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    __m512 x = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    __m256 y = _mm256_add_ps(_mm512_castps512_ps256(x), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
}

/* R (1..4) rows x 4 positions: 16 accumulators + 4 keys + 1 query of the 32 registers. */
AVX512_INLINE void scores512_block(const float *q, const int R, int hd, const float *const *k, int n, float scale, float *s) {
    for (int i = 0; i < n; i += 4) {
        const float *kp[4];
        for (int j = 0; j < 4; j++) kp[j] = k[i + j < n ? i + j : n - 1];
        __m512 a[4][4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) a[r][j] = _mm512_setzero_ps();
        for (int d = 0; d < hd; d += 16) {
            __mmask16 m = lanes512(hd - d);
            __m512 kv[4];
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) kv[j] = _mm512_maskz_loadu_ps(m, kp[j] + d);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m512 qv = _mm512_maskz_loadu_ps(m, q + (size_t)r * hd + d);
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) a[r][j] = _mm512_fmadd_ps(qv, kv[j], a[r][j]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m128 v = _mm_mul_ps(hsum4_512(a[r][0], a[r][1], a[r][2], a[r][3]), _mm_set1_ps(scale));
            _mm_mask_storeu_ps(s + r * TILE + i, (__mmask8)lanes512(n - i < 4 ? n - i : 4), v);
        }
    }
}

AVX512 void llc_attn_scores_avx512(const float *q, int rows, int hd, const float *const *k, int n, float scale, float *s) {
    for (int r0 = 0; r0 < rows; r0 += 4) {
        const float *qr = q + (size_t)r0 * hd;
        float *sr = s + r0 * TILE;
        switch (rows - r0) {
        case 1: scores512_block(qr, 1, hd, k, n, scale, sr); break;
        case 2: scores512_block(qr, 2, hd, k, n, scale, sr); break;
        case 3: scores512_block(qr, 3, hd, k, n, scale, sr); break;
        default: scores512_block(qr, 4, hd, k, n, scale, sr); break;
        }
    }
}

/* scores_q8_0 as the AVX2 version, with VNNI: vpdpbusd wants unsigned x signed, so |k| x (q with k's sign). */
__attribute__((target("avx512f,avx512vl,avx512vnni,avx2,fma,f16c"))) void llc_attn_scores_q8_0_avx512(const block_q8_0 *q8, int rows, int hd,
                                                                                                 const void *const *k, int n, float scale,
                                                                                                 float *s) {
    const int nb = hd / QK8_0;
    for (int i = 0; i < n; i += 4) {
        const block_q8_0 *kp[4];
        for (int j = 0; j < 4; j++) kp[j] = k[i + j < n ? i + j : n - 1];
        for (int r = 0; r < rows; r++) {
            const block_q8_0 *qr = q8 + (size_t)r * nb;
            __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            for (int b = 0; b < nb; b++) {
                __m256i qv = _mm256_loadu_si256((const __m256i *)qr[b].qs);
                float dq = _cvtsh_ss(qr[b].d);
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    __m256i kv = _mm256_loadu_si256((const __m256i *)kp[j][b].qs);
                    __m256i d = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(kv), _mm256_sign_epi8(qv, kv));
                    a[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(_cvtsh_ss(kp[j][b].d) * dq), a[j]);
                }
            }
            __m256 ab = _mm256_add_ps(_mm256_unpacklo_ps(a[0], a[1]), _mm256_unpackhi_ps(a[0], a[1]));
            __m256 cd = _mm256_add_ps(_mm256_unpacklo_ps(a[2], a[3]), _mm256_unpackhi_ps(a[2], a[3]));
            __m256 x = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
            __m128 v = _mm_mul_ps(_mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1)), _mm_set1_ps(scale));
            _mm_mask_storeu_ps(s + r * TILE + i, (__mmask8)lanes512(n - i < 4 ? n - i : 4), v);
        }
    }
}

AVX512_INLINE __m512 exp512(__m512 x) {
    const __m512 lo = _mm512_set1_ps(EXP_LO);
    __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_max_ps(lo, x); /* NaN stays NaN */
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_C1), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_C2), r);
    __m512 p = _mm512_set1_ps(EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P5));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_mov_ps((__mmask16)~under, _mm512_scalef_ps(p, n));
}

AVX512 float llc_attn_max_avx512(const float *s, int n) {
    __m512 mx = _mm512_set1_ps(s[0]);
    for (int i = 0; i < n; i += 16) mx = _mm512_mask_max_ps(mx, lanes512(n - i), mx, _mm512_maskz_loadu_ps(lanes512(n - i), s + i));
    return _mm512_reduce_max_ps(mx);
}

AVX512 float llc_attn_exp_sum_avx512(float *s, int n, float m) {
    __m512 mv = _mm512_set1_ps(m), sum = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 k = lanes512(n - i);
        __m512 e = _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + i), mv)));
        _mm512_mask_storeu_ps(s + i, k, e);
        sum = _mm512_add_ps(sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

/* R (1..4) rows x a slice of NC (1..4) 16-float chunks of head_dim: up to 16 accumulators that stay in
 * registers over the tile; per position NC value loads and R broadcasts feed R * NC FMAs. */
AVX512_INLINE void acc512_block(float *acc, const int R, const int NC, int hd, int d0, const float *c, const float *p,
                                const float *const *v, int n) {
    __mmask16 m[4];
    __m512 t[4][4];
#pragma GCC unroll 4
    for (int j = 0; j < NC; j++) m[j] = lanes512(hd - d0 - 16 * j);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < NC; j++) t[r][j] = _mm512_setzero_ps();
    for (int i = 0; i < n; i++) {
        __m512 vv[4];
#pragma GCC unroll 4
        for (int j = 0; j < NC; j++) vv[j] = _mm512_maskz_loadu_ps(m[j], v[i] + d0 + 16 * j);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 pr = _mm512_set1_ps(p[r * TILE + i]);
#pragma GCC unroll 4
            for (int j = 0; j < NC; j++) t[r][j] = _mm512_fmadd_ps(pr, vv[j], t[r][j]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < NC; j++) {
            float *a = acc + (size_t)r * hd + d0 + 16 * j;
            _mm512_mask_storeu_ps(a, m[j], _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m[j], a), _mm512_set1_ps(c[r]), t[r][j]));
        }
}

#define ACC512_NC(R)                                                                                                   \
    switch (nc) {                                                                                                      \
    case 1: acc512_block(a, R, 1, hd, d0, cr, pr, v, n); break;                                                        \
    case 2: acc512_block(a, R, 2, hd, d0, cr, pr, v, n); break;                                                        \
    case 3: acc512_block(a, R, 3, hd, d0, cr, pr, v, n); break;                                                        \
    default: acc512_block(a, R, 4, hd, d0, cr, pr, v, n); break;                                                       \
    }

AVX512 void llc_attn_accumulate_avx512(float *acc, int rows, int hd, const float *c, const float *p, const float *const *v, int n) {
    for (int r0 = 0; r0 < rows; r0 += 4) {
        float *a = acc + (size_t)r0 * hd;
        const float *pr = p + r0 * TILE, *cr = c + r0;
        for (int d0 = 0; d0 < hd; d0 += 64) {
            int nc = (hd - d0 + 15) / 16;
            switch (rows - r0) {
            case 1: ACC512_NC(1) break;
            case 2: ACC512_NC(2) break;
            case 3: ACC512_NC(3) break;
            default: ACC512_NC(4) break;
            }
        }
    }
}

/* to_f32 as the AVX2 version, 16 values per instruction. */
AVX512 void llc_attn_to_f32_avx512(enum llc_type type, const void *src, size_t skip, int n, float *dst) {
    int i = 0;
    if (type == LLC_F16 || type == LLC_BF16) {
        const uint16_t *h = (const uint16_t *)src + skip;
        for (; i + 16 <= n; i += 16) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(h + i));
            __m512 f = type == LLC_F16 ? _mm512_cvtph_ps(x) : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(x), 16));
            _mm512_storeu_ps(dst + i, f);
        }
    } else if (type == LLC_Q8_0 && skip % QK8_0 == 0) {
        const block_q8_0 *b = (const block_q8_0 *)src + skip / QK8_0;
        for (; i + QK8_0 <= n; i += QK8_0, b++) {
            __m512 d = _mm512_set1_ps(llc_fp16_to_fp32(b->d));
            for (int j = 0; j < QK8_0; j += 16) {
                __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b->qs + j)));
                _mm512_storeu_ps(dst + i + j, _mm512_mul_ps(d, _mm512_cvtepi32_ps(q)));
            }
        }
    }
    if (i < n) llc_attn_to_f32_scalar(type, src, skip + (size_t)i, n - i, dst + i);
}
#endif
