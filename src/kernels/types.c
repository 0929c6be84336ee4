#include "kernels/types.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/fp16.h"

/* ---- conversions for the plain float types ------------------------------------------------------ */

static void f32_to_float(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
static void f32_from_float(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }

static void f16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = llc_fp16_to_fp32(s[i]);
}
static void f16_from_float(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = llc_fp32_to_fp16(src[i]);
}

static void bf16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = llc_bf16_to_fp32(s[i]);
}
static void bf16_from_float(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = llc_fp32_to_bf16(src[i]);
}

/* Float to int for the quantizers, truncating toward zero like a cast, but defined for every input:
 * a model with NaN or infinite values (broken, or hostile) must not reach undefined behaviour. NaN
 * becomes 0 and the rest is clamped to [lo, hi]. */
static inline int to_int_clamped(float v, int lo, int hi) {
    if (!(v == v)) return 0;
    if (v <= (float)lo) return lo;
    if (v >= (float)hi) return hi;
    return (int)v;
}

/* ---- Q8_0: symmetric, scale = max|x| / 127 (llama.cpp's quantize_row_q8_0_ref) ------------------ */

static void q8_0_to_float(const void *src, float *dst, int64_t n) {
    const block_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float d = llc_fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK8_0; j++) dst[i * QK8_0 + j] = d * (float)b[i].qs[j];
    }
}

static void q8_0_from_float(const float *src, void *dst, int64_t n) {
    block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *x = src + i * QK8_0;
        float amax = 0;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = llc_fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++) b[i].qs[j] = (int8_t)to_int_clamped(roundf(x[j] * id), -127, 127);
    }
}

/* ---- Q4_0: scale from the signed value of largest magnitude mapped to -8 (quantize_row_q4_0_ref) -- */

static void q4_0_to_float(const void *src, float *dst, int64_t n) {
    const block_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        float d = llc_fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            dst[i * QK4_0 + j] = d * (float)((b[i].qs[j] & 0x0f) - 8);
            dst[i * QK4_0 + j + QK4_0 / 2] = d * (float)((b[i].qs[j] >> 4) - 8);
        }
    }
}

static void q4_0_from_float(const float *src, void *dst, int64_t n) {
    block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        const float *x = src + i * QK4_0;
        float amax = 0, max = 0;
        for (int j = 0; j < QK4_0; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = llc_fp32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int lo = to_int_clamped(x[j] * id + 8.5f, 0, 15), hi = to_int_clamped(x[j + QK4_0 / 2] * id + 8.5f, 0, 15);
            b[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static const llc_type_traits traits[LLC_TYPE_COUNT] = {
    [LLC_F32] = {"f32", 1, 4, f32_to_float, f32_from_float},
    [LLC_F16] = {"f16", 1, 2, f16_to_float, f16_from_float},
    [LLC_BF16] = {"bf16", 1, 2, bf16_to_float, bf16_from_float},
    [LLC_Q8_0] = {"q8_0", QK8_0, sizeof(block_q8_0), q8_0_to_float, q8_0_from_float},
    [LLC_Q4_0] = {"q4_0", QK4_0, sizeof(block_q4_0), q4_0_to_float, q4_0_from_float},
};

/* ggml's names for the types llamac recognises but cannot compute with (yet). */
static const char *const other_names[LLC_TYPE_COUNT] = {
    [LLC_Q4_1] = "q4_1", [LLC_Q5_0] = "q5_0", [LLC_Q5_1] = "q5_1", [LLC_Q8_1] = "q8_1", [LLC_Q2_K] = "q2_k",
    [LLC_Q3_K] = "q3_k", [LLC_Q4_K] = "q4_k", [LLC_Q5_K] = "q5_k", [LLC_Q6_K] = "q6_k", [LLC_Q8_K] = "q8_k",
    [16] = "iq2_xxs", [17] = "iq2_xs", [18] = "iq3_xxs", [19] = "iq1_s", [20] = "iq4_nl", [21] = "iq3_s",
    [22] = "iq2_s", [23] = "iq4_xs", [24] = "i8", [25] = "i16", [26] = "i32", [27] = "i64", [28] = "f64",
    [29] = "iq1_m", [34] = "tq1_0", [35] = "tq2_0",
};

const llc_type_traits *llc_type_get(uint32_t type) {
    if (type >= LLC_TYPE_COUNT || traits[type].block_size == 0) return NULL;
    return &traits[type];
}

const char *llc_type_name(uint32_t type) {
    if (type < LLC_TYPE_COUNT && traits[type].name) return traits[type].name;
    if (type < LLC_TYPE_COUNT && other_names[type]) return other_names[type];
    static _Thread_local char buf[24];
    snprintf(buf, sizeof buf, "type %u", type);
    return buf;
}

int llc_type_from_name(const char *name) {
    for (int t = 0; t < LLC_TYPE_COUNT; t++)
        if (traits[t].name && strcmp(traits[t].name, name) == 0) return t;
    return -1;
}

size_t llc_row_size(uint32_t type, int64_t n) {
    const llc_type_traits *t = llc_type_get(type);
    if (!t || n % t->block_size) return 0;
    return (size_t)(n / t->block_size) * t->type_size;
}
