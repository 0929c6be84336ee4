/* The portable kernels: the definition every SIMD kernel is tested against. */
#include "base/fp16.h"
#include "kernels/kernels.h"
#include "kernels/ops.h"

float llc_dot_f32_scalar(int64_t n, const void *w, const void *x) { return llc_dot_f32(w, x, (int)n); }

float llc_dot_f16_scalar(int64_t n, const void *w, const void *x) {
    const uint16_t *a = w;
    const float *b = x;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += llc_fp16_to_fp32(a[i]) * b[i];
    return s;
}

float llc_dot_bf16_scalar(int64_t n, const void *w, const void *x) {
    const uint16_t *a = w, *b = x;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += llc_bf16_to_fp32(a[i]) * llc_bf16_to_fp32(b[i]);
    return s;
}

float llc_dot_q8_0_scalar(int64_t n, const void *w, const void *x) {
    const block_q8_0 *a = w, *b = x;
    float s = 0;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += a[i].qs[j] * b[i].qs[j];
        s += (float)sumi * (llc_fp16_to_fp32(a[i].d) * llc_fp16_to_fp32(b[i].d));
    }
    return s;
}

float llc_dot_q4_0_scalar(int64_t n, const void *w, const void *x) {
    const block_q4_0 *a = w;
    const block_q8_0 *b = x;
    float s = 0;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            sumi += ((a[i].qs[j] & 0x0f) - 8) * b[i].qs[j];
            sumi += ((a[i].qs[j] >> 4) - 8) * b[i].qs[j + QK4_0 / 2];
        }
        s += (float)sumi * (llc_fp16_to_fp32(a[i].d) * llc_fp16_to_fp32(b[i].d));
    }
    return s;
}

void llc_gemm4_q8_0_scalar(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *out, size_t ldo) {
    for (int t = 0; t < 4; t++)
        for (int r = 0; r < 4; r++)
            out[(size_t)t * ldo + r] = llc_dot_q8_0_scalar(n, (const char *)w + r * ws, (const char *)x + t * xs);
}

void llc_gemm4_q4_0_scalar(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *out, size_t ldo) {
    for (int t = 0; t < 4; t++)
        for (int r = 0; r < 4; r++)
            out[(size_t)t * ldo + r] = llc_dot_q4_0_scalar(n, (const char *)w + r * ws, (const char *)x + t * xs);
}

void llc_gemm4_bf16_scalar(int64_t n, const void *w, size_t ws, const void *x, size_t xs, float *out, size_t ldo) {
    for (int t = 0; t < 4; t++)
        for (int r = 0; r < 4; r++)
            out[(size_t)t * ldo + r] = llc_dot_bf16_scalar(n, (const char *)w + r * ws, (const char *)x + t * xs);
}

/* K-quants against Q8_K: integer sums over a whole superblock (each sub-block's sum times its integer
 * scale), then one float multiply by both superblock scales, as ggml does. A weight's constant part
 * (Q4_K's -dmin * m, Q6_K's -32) multiplies the activations' sum over its sub-block, which Q8_K
 * carries precomputed in bsums. */
float llc_dot_q4_K_scalar(int64_t n, const void *w, const void *x) {
    const block_q4_K *a = w;
    const block_q8_K *b = x;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t sm[16];
        llc_q4_K_unpack_scales(a[i].scales, sm);
        int32_t sumi = 0, summ = 0;
        for (int c = 0; c < QK_K / 64; c++) {
            const uint8_t *q = a[i].qs + 32 * c;
            const int8_t *y = b[i].qs + 64 * c;
            int32_t lo = 0, hi = 0;
            for (int l = 0; l < 32; l++) {
                lo += (q[l] & 15) * y[l];
                hi += (q[l] >> 4) * y[l + 32];
            }
            sumi += sm[2 * c] * lo + sm[2 * c + 1] * hi;
        }
        for (int j = 0; j < 8; j++) summ += sm[8 + j] * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
        s += b[i].d * (llc_fp16_to_fp32(a[i].d) * (float)sumi - llc_fp16_to_fp32(a[i].dmin) * (float)summ);
    }
    return s;
}

float llc_dot_q6_K_scalar(int64_t n, const void *w, const void *x) {
    const block_q6_K *a = w;
    const block_q8_K *b = x;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t sumi = 0, sum32 = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = a[i].ql + 64 * h, *qh = a[i].qh + 32 * h;
            const int8_t *y = b[i].qs + 128 * h, *sc = a[i].scales + 8 * h;
            int32_t sub[8] = {0};
            for (int l = 0; l < 32; l++) {
                int s0 = l / 16;
                sub[s0] += ((ql[l] & 15) | (qh[l] & 3) << 4) * y[l];
                sub[s0 + 2] += ((ql[l + 32] & 15) | (qh[l] >> 2 & 3) << 4) * y[l + 32];
                sub[s0 + 4] += ((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) * y[l + 64];
                sub[s0 + 6] += ((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) * y[l + 96];
            }
            for (int j = 0; j < 8; j++) sumi += sc[j] * sub[j];
        }
        for (int j = 0; j < 16; j++) sum32 += a[i].scales[j] * b[i].bsums[j];
        s += b[i].d * llc_fp16_to_fp32(a[i].d) * (float)(sumi - 32 * sum32);
    }
    return s;
}

/* Q8_K is an activation type, but a file may still declare a weight of it: a plain dot keeps such a
 * file computable rather than a hole in the dispatch tables. */
float llc_dot_q8_K_scalar(int64_t n, const void *w, const void *x) {
    const block_q8_K *a = w, *b = x;
    float s = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < QK_K; j++) sumi += a[i].qs[j] * b[i].qs[j];
        s += a[i].d * b[i].d * (float)sumi;
    }
    return s;
}
