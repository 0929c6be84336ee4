/* Attention's inner pieces with AVX2 + FMA (+ F16C for to_f32); see attention_simd.h. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdbool.h>

#include "base/fp16.h"
#include "kernels/attention.h"
#include "kernels/attention_simd.h"
#include "kernels/kernels.h"

#define TILE LLC_ATTN_TILE

/* ---- AVX2 + FMA ---- */
#define AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE AVX2 static inline __attribute__((always_inline))

/* A mask for the first n (< 8) lanes, for maskload/maskstore. */
AVX2_INLINE __m256i lanes256(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* [Σa, Σb, Σc, Σd] */
AVX2_INLINE __m128 hsum4_256(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 ab = _mm256_add_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
    __m256 cd = _mm256_add_ps(_mm256_unpacklo_ps(c, d), _mm256_unpackhi_ps(c, d));
    __m256 x = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
}

AVX2_INLINE void store_scores4(float *s, int avail, __m128 v) {
    if (avail >= 4) {
        _mm_storeu_ps(s, v);
    } else {
        float t[4];
        _mm_storeu_ps(t, v);
        for (int j = 0; j < avail; j++) s[j] = t[j];
    }
}

/* 32 int8 products summed into 8 int32 lanes: vpmaddubsw wants unsigned x signed, so |k| x (q with k's
 * sign); the int16 pair sums cannot saturate as q8_0 values are within [-127, 127]. */
AVX2_INLINE __m256i dot_i8x32(__m256i k, __m256i q) {
    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(k, k), _mm256_sign_epi8(q, k));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* scores_q8_0: per row, 4 positions at a time; per block and position the int32 lanes become floats
 * scaled by the two block scales into one accumulator, the four reduced together at the end. */
__attribute__((target("avx2,fma,f16c"))) void llc_attn_scores_q8_0_avx2(const block_q8_0 *q8, int rows, int hd, const void *const *k, int n, float scale, float *s) {
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
                    __m256 p = _mm256_cvtepi32_ps(dot_i8x32(_mm256_loadu_si256((const __m256i *)kp[j][b].qs), qv));
                    a[j] = _mm256_fmadd_ps(p, _mm256_set1_ps(_cvtsh_ss(kp[j][b].d) * dq), a[j]);
                }
            }
            store_scores4(s + r * TILE + i, n - i, _mm_mul_ps(hsum4_256(a[0], a[1], a[2], a[3]), _mm_set1_ps(scale)));
        }
    }
}

/* R (1 or 2) rows x 4 positions: 8 accumulators + 4 keys + 1 query of the 16 registers. */
AVX2_INLINE void scores256_block(const float *q, const int R, int hd, const float *const *k, int n, float scale, float *s) {
    const int hd8 = hd & ~7;
    const __m256i tail = lanes256(hd & 7);
    for (int i = 0; i < n; i += 4) {
        const float *kp[4];
        for (int j = 0; j < 4; j++) kp[j] = k[i + j < n ? i + j : n - 1];
        __m256 a[2][4];
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) a[r][j] = _mm256_setzero_ps();
        for (int d = 0; d < hd; d += 8) {
            __m256 kv[4], qv;
            if (d < hd8) {
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) kv[j] = _mm256_loadu_ps(kp[j] + d);
            } else {
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) kv[j] = _mm256_maskload_ps(kp[j] + d, tail);
            }
#pragma GCC unroll 2
            for (int r = 0; r < R; r++) {
                qv = d < hd8 ? _mm256_loadu_ps(q + (size_t)r * hd + d) : _mm256_maskload_ps(q + (size_t)r * hd + d, tail);
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) a[r][j] = _mm256_fmadd_ps(qv, kv[j], a[r][j]);
            }
        }
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
            store_scores4(s + r * TILE + i, n - i, _mm_mul_ps(hsum4_256(a[r][0], a[r][1], a[r][2], a[r][3]), _mm_set1_ps(scale)));
    }
}

AVX2 void llc_attn_scores_avx2(const float *q, int rows, int hd, const float *const *k, int n, float scale, float *s) {
    for (int r0 = 0; r0 < rows; r0 += 2) {
        const float *qr = q + (size_t)r0 * hd;
        if (rows - r0 >= 2) scores256_block(qr, 2, hd, k, n, scale, s + r0 * TILE);
        else scores256_block(qr, 1, hd, k, n, scale, s + r0 * TILE);
    }
}

AVX2_INLINE __m256 exp256(__m256 x) {
    const __m256 lo = _mm256_set1_ps(EXP_LO);
    __m256 keep = _mm256_cmp_ps(x, lo, _CMP_NLT_UQ); /* x >= lo, or NaN (which propagates) */
    x = _mm256_max_ps(lo, x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_C1), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_C2), r);
    __m256 p = _mm256_set1_ps(EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n from the exponent bits: n >= -126 after the clamp, so the result is normal */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

AVX2 float llc_attn_max_avx2(const float *s, int n) {
    __m256 mx = _mm256_set1_ps(s[0]);
    int i = 0;
    for (; i + 8 <= n; i += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(s + i));
    if (i < n) mx = _mm256_max_ps(mx, _mm256_blendv_ps(mx, _mm256_maskload_ps(s + i, lanes256(n - i)), _mm256_castsi256_ps(lanes256(n - i))));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}

AVX2 float llc_attn_exp_sum_avx2(float *s, int n, float m) {
    __m256 mv = _mm256_set1_ps(m), sum = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv));
        _mm256_storeu_ps(s + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (i < n) {
        __m256i mask = lanes256(n - i);
        __m256 e = _mm256_and_ps(exp256(_mm256_sub_ps(_mm256_maskload_ps(s + i, mask), mv)), _mm256_castsi256_ps(mask));
        _mm256_maskstore_ps(s + i, mask, e);
        sum = _mm256_add_ps(sum, e);
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

/* R (1..4) rows x a slice of NC (1..2) 8-float chunks of head_dim: up to 8 accumulators that stay in
 * registers over the tile (of the 16); per position NC value loads and R broadcasts feed R * NC FMAs. */
AVX2_INLINE void acc256_block(float *acc, const int R, const int NC, int hd, int d0, const float *c, const float *p,
                              const float *const *v, int n) {
    __m256i m[2];
    bool full[2];
    __m256 t[4][2];
#pragma GCC unroll 2
    for (int j = 0; j < NC; j++) {
        full[j] = hd - d0 - 8 * j >= 8;
        m[j] = lanes256(hd - d0 - 8 * j);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int j = 0; j < NC; j++) t[r][j] = _mm256_setzero_ps();
    for (int i = 0; i < n; i++) {
        __m256 vv[2];
#pragma GCC unroll 2
        for (int j = 0; j < NC; j++)
            vv[j] = full[j] ? _mm256_loadu_ps(v[i] + d0 + 8 * j) : _mm256_maskload_ps(v[i] + d0 + 8 * j, m[j]);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m256 pr = _mm256_set1_ps(p[r * TILE + i]);
#pragma GCC unroll 2
            for (int j = 0; j < NC; j++) t[r][j] = _mm256_fmadd_ps(pr, vv[j], t[r][j]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int j = 0; j < NC; j++) {
            float *a = acc + (size_t)r * hd + d0 + 8 * j;
            __m256 cr = _mm256_set1_ps(c[r]);
            if (full[j]) _mm256_storeu_ps(a, _mm256_fmadd_ps(_mm256_loadu_ps(a), cr, t[r][j]));
            else _mm256_maskstore_ps(a, m[j], _mm256_fmadd_ps(_mm256_maskload_ps(a, m[j]), cr, t[r][j]));
        }
}

AVX2 void llc_attn_accumulate_avx2(float *acc, int rows, int hd, const float *c, const float *p, const float *const *v, int n) {
    for (int r0 = 0; r0 < rows; r0 += 4) {
        float *a = acc + (size_t)r0 * hd;
        const float *pr = p + r0 * TILE, *cr = c + r0;
        for (int d0 = 0; d0 < hd; d0 += 16) {
            bool two = hd - d0 > 8;
            switch (rows - r0) {
            case 1: two ? acc256_block(a, 1, 2, hd, d0, cr, pr, v, n) : acc256_block(a, 1, 1, hd, d0, cr, pr, v, n); break;
            case 2: two ? acc256_block(a, 2, 2, hd, d0, cr, pr, v, n) : acc256_block(a, 2, 1, hd, d0, cr, pr, v, n); break;
            case 3: two ? acc256_block(a, 3, 2, hd, d0, cr, pr, v, n) : acc256_block(a, 3, 1, hd, d0, cr, pr, v, n); break;
            default: two ? acc256_block(a, 4, 2, hd, d0, cr, pr, v, n) : acc256_block(a, 4, 1, hd, d0, cr, pr, v, n); break;
            }
        }
    }
}

/* to_f32: 8 values per instruction (F16C's vcvtph2ps for f16, a widening shift for bf16, int8 to
 * int32 to float times the block's scale for q8_0); whatever is left over, and a q8_0 run that does
 * not start a block, goes to the scalar definition. Every conversion is exact, so the bits agree. */
__attribute__((target("avx2,fma,f16c"))) void llc_attn_to_f32_avx2(enum llc_type type, const void *src, size_t skip, int n,
                                                                  float *dst) {
    int i = 0;
    if (type == LLC_F16 || type == LLC_BF16) {
        const uint16_t *h = (const uint16_t *)src + skip;
        for (; i + 8 <= n; i += 8) {
            __m128i x = _mm_loadu_si128((const __m128i *)(h + i));
            __m256 f = type == LLC_F16 ? _mm256_cvtph_ps(x) : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(x), 16));
            _mm256_storeu_ps(dst + i, f);
        }
    } else if (type == LLC_Q8_0 && skip % QK8_0 == 0) {
        const block_q8_0 *b = (const block_q8_0 *)src + skip / QK8_0;
        for (; i + QK8_0 <= n; i += QK8_0, b++) {
            __m256 d = _mm256_set1_ps(llc_fp16_to_fp32(b->d));
            for (int j = 0; j < QK8_0; j += 8) {
                __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + j)));
                _mm256_storeu_ps(dst + i + j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
            }
        }
    }
    if (i < n) llc_attn_to_f32_scalar(type, src, skip + (size_t)i, n - i, dst + i);
}
#endif
