/* The portable kernels: the definition every SIMD kernel is tested against. */
#include "base/fp16.h"
#include "kernels/dispatch.h"
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
