/*
 * The packed 16-row kernels with AVX-512 VNNI (layout and reasoning in packed.h). One zmm accumulator
 * per token holds the 16 rows' sums; per block and token: 8 vpdpbusd with broadcast activation
 * bytes, one conversion, one multiply of the scales and one fused add.
 */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/matmul.h"
#include "kernels/types.h"
#include "kernels/packed.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

static inline int32_t load_i32(const void *p) {
    int32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

/* T is a constant at every call site, so the token loops unroll and the accumulators stay in
 * registers (8 weight vectors + T accumulators + scales fit in the 32 zmm registers). */
AVX512 INLINE void packed_tile(int q4, int64_t nb, const uint8_t *q, const uint16_t *d, const char *act, size_t act_rb,
                               const int T, float *out, size_t ldo) {
    const size_t qb = q4 ? 256 : 512;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const int offset = q4 ? 8 : 128;
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
        _mm_prefetch((const char *)qp + 2048, _MM_HINT_T0);
        _mm_prefetch((const char *)qp + 2048 + 64, _MM_HINT_T0);
        __m512i u[8];
        if (q4) {
            #pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                __m512i p = _mm512_load_si512((const void *)(qp + 64 * c));
                u[c] = _mm512_and_si512(p, m4);
                u[c + 4] = _mm512_and_si512(_mm512_srli_epi16(p, 4), m4);
            }
        } else {
            _mm_prefetch((const char *)qp + 2048 + 128, _MM_HINT_T0);
            _mm_prefetch((const char *)qp + 2048 + 192, _MM_HINT_T0);
            #pragma GCC unroll 8
            for (int i = 0; i < 8; i++) u[i] = _mm512_load_si512((const void *)(qp + 64 * i));
        }
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(d + b * LLC_PACK_ROWS)));
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const int8_t *xq = x[t][b].qs;
            __m512i s = _mm512_set1_epi32(-offset * xs[t][b]);
            #pragma GCC unroll 8
            for (int i = 0; i < 8; i++) s = _mm512_dpbusd_epi32(s, u[i], _mm512_set1_epi32(load_i32(xq + 4 * i)));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(xd[t][b])), acc[t]);
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm512_storeu_ps(out + (size_t)t * ldo, acc[t]);
}

AVX512 static void packed_gemm(int q4, int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                               float *out, size_t ldo) {
    int64_t nb = n_cols / 32;
    const uint8_t *q = group;
    const uint16_t *d = (const uint16_t *)(q + (size_t)nb * (q4 ? 256 : 512));
    const char *a = act;
    switch (n_tok) {
    case 1: packed_tile(q4, nb, q, d, a, act_rb, 1, out, ldo); break;
    case 2: packed_tile(q4, nb, q, d, a, act_rb, 2, out, ldo); break;
    case 3: packed_tile(q4, nb, q, d, a, act_rb, 3, out, ldo); break;
    case 4: packed_tile(q4, nb, q, d, a, act_rb, 4, out, ldo); break;
    case 5: packed_tile(q4, nb, q, d, a, act_rb, 5, out, ldo); break;
    case 6: packed_tile(q4, nb, q, d, a, act_rb, 6, out, ldo); break;
    case 7: packed_tile(q4, nb, q, d, a, act_rb, 7, out, ldo); break;
    default: packed_tile(q4, nb, q, d, a, act_rb, 8, out, ldo); break;
    }
}

AVX512 void llc_packed_gemm_q4_0_avx512(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                        float *out, size_t ldo) {
    packed_gemm(1, n_cols, group, act, act_rb, n_tok, out, ldo);
}

AVX512 void llc_packed_gemm_q8_0_avx512(int64_t n_cols, const void *group, const void *act, size_t act_rb, int n_tok,
                                        float *out, size_t ldo) {
    packed_gemm(0, n_cols, group, act, act_rb, n_tok, out, ldo);
}
#endif
