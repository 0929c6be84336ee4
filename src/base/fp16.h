#ifndef LLC_FP16_H
#define LLC_FP16_H
#include <stdint.h>
#include <string.h>

/* IEEE half and bfloat16 conversions, exact in both directions for representable values
 * (round-to-nearest-even on the way down, as numpy and llama.cpp do). */

static inline float llc_fp32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t llc_fp32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float llc_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: value = mant * 2^-24 */
        float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31) return llc_fp32_from_bits(sign | 0x7f800000u | (mant << 13));
    return llc_fp32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

static inline uint16_t llc_fp32_to_fp16(float f) {
    uint32_t x = llc_fp32_to_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (ax < 0x38800000u) {
        /* subnormal half (or zero): round ax * 2^24 to an integer, ties to even */
        float v = llc_fp32_from_bits(ax) * 16777216.0f;
        uint32_t m = (uint32_t)v;
        float rem = v - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1))) m++;
        return (uint16_t)(sign | m);
    }
    uint32_t exp = (ax >> 23) - 112, mant = ax & 0x7fffff;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t round = mant & 0x1fff;
    if (round > 0x1000 || (round == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static inline float llc_bf16_to_fp32(uint16_t b) { return llc_fp32_from_bits((uint32_t)b << 16); }

static inline uint16_t llc_fp32_to_bf16(float f) {
    uint32_t x = llc_fp32_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

#endif
