#include "kernels/types.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

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

/* ---- K-quants (ggml's quantize_row_q{4,6,8}_K_ref: same searches, same rounding) ---------------- */

/* ggml's nearest_int, round half to even, for v clamped to [lo, hi] first (NaN gives 0). Adding
 * 1.5 * 2^23 rounds |v| < 2^22 to an integer (in the low mantissa bits; subtracting it again gives the
 * integer as a float): exact, and much cheaper than rintf, a libm call on baseline x86-64 (the
 * searches below round ~20 times per weight). */
#define ROUND_MAGIC 12582912.0f

static inline int nearest_clamped(float v, int lo, int hi) {
    if (v != v) return 0;
    v = v < (float)lo ? (float)lo : v > (float)hi ? (float)hi : v;
    float t = v + ROUND_MAGIC;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* The weight quantizers work on a cleaned copy of each superblock: NaN counts as 0 and magnitudes are
 * capped at 2^26 (Q4_K's largest weight is 65504 * 63 * 15, about 2^26; real weights stay far below).
 * With the superblock scales also capped at fp16's largest finite value (sat_fp16), every block
 * written decodes to finite weights, whatever the input, and the float searches never overflow.
 * Inputs in range are untouched, so the output is ggml's bit for bit. */
#define KQ_INPUT_MAX 67108864.0f

static void clean_superblock(const float *x, float *out) {
    for (int i = 0; i < QK_K; i++) {
        float v = x[i];
        out[i] = v != v ? 0.0f : v > KQ_INPUT_MAX ? KQ_INPUT_MAX : v < -KQ_INPUT_MAX ? -KQ_INPUT_MAX : v;
    }
}

static uint16_t sat_fp16(float v) { return llc_fp32_to_fp16(v > 65504.0f ? 65504.0f : v < -65504.0f ? -65504.0f : v); }

/* Q4_K ------------------------------------------------------------------------------------------------
 * Each sub-block of 32 gets its own affine fit x ~ scale * q - min (ggml's make_qkx2_quants): start
 * from the range, then try 21 slightly different step sizes, each followed by the weighted
 * least-squares scale and min for the levels it produced, keeping the fit with the smallest weighted
 * squared error (a better fit also moves the min the next step sizes start from). The weights
 * av(|x|) + |x| favour the large values, which dominate a matmul. Then the 8 scales and 8 mins are
 * themselves quantized to 6 bits against d = max scale / 63 and dmin = max min / 63, and the weights
 * are re-quantized against the scales as stored.
 * A fit is a chain of dependent float additions (kept in ggml's order to stay bit-identical), and
 * each step size depends on the previous winner, so the parallelism is across sub-blocks: the 8 are
 * fitted in lockstep on a transposed copy, 8 independent chains instead of one (a third faster). */

static void q4_K_fit8(const float *x, const float *w, uint8_t *L, float *scales, float *neg_mins) {
    enum { NMAX = 15, NSTEP = 20 };
    const float rmin = -1.0f, rdelta = 0.1f;
    float xt[32][8], wt[32][8], Lt[32][8], Laux[32][8];
    float min[8], max[8], sum_w[8], sum_x[8], scale[8], best[8], iscale[8];
    bool flat[8];
    for (int i = 0; i < 32; i++)
        for (int j = 0; j < 8; j++) xt[i][j] = x[32 * j + i], wt[i][j] = w[32 * j + i];
    for (int j = 0; j < 8; j++) min[j] = max[j] = xt[0][j], sum_w[j] = wt[0][j], sum_x[j] = sum_w[j] * xt[0][j];
    for (int i = 1; i < 32; i++)
        for (int j = 0; j < 8; j++) {
            min[j] = xt[i][j] < min[j] ? xt[i][j] : min[j];
            max[j] = xt[i][j] > max[j] ? xt[i][j] : max[j];
            sum_w[j] += wt[i][j];
            sum_x[j] += wt[i][j] * xt[i][j];
        }
    /* a flat sub-block (max == min) keeps scale 0, levels 0; its lanes below compute ignored values */
    for (int j = 0; j < 8; j++) {
        min[j] = min[j] > 0 ? 0 : min[j];
        flat[j] = max[j] == min[j];
        iscale[j] = NMAX / (max[j] - min[j]);
        scale[j] = 1 / iscale[j];
        best[j] = 0;
    }
    for (int i = 0; i < 32; i++)
        for (int j = 0; j < 8; j++) {
            float v = iscale[j] * (xt[i][j] - min[j]);
            v = v > 0 ? v : 0; /* also NaN (flat sub-block) -> 0 */
            v = v < NMAX ? v : NMAX;
            float l = v + ROUND_MAGIC - ROUND_MAGIC, diff = scale[j] * l + min[j] - xt[i][j];
            Lt[i][j] = l;
            best[j] += wt[i][j] * (diff * diff);
        }
    for (int is = 0; is <= NSTEP; is++) {
        float sum_l[8] = {0}, sum_l2[8] = {0}, sum_xl[8] = {0}, err[8] = {0}, this_scale[8], this_min[8];
        for (int j = 0; j < 8; j++) iscale[j] = (rmin + rdelta * is + NMAX) / (max[j] - min[j]);
        for (int i = 0; i < 32; i++)
            for (int j = 0; j < 8; j++) {
                float v = iscale[j] * (xt[i][j] - min[j]);
                v = v > 0 ? v : 0;
                v = v < NMAX ? v : NMAX;
                float l = v + ROUND_MAGIC - ROUND_MAGIC;
                Laux[i][j] = l;
                sum_l[j] += wt[i][j] * l;
                sum_l2[j] += wt[i][j] * l * l;
                sum_xl[j] += wt[i][j] * l * xt[i][j];
            }
        for (int j = 0; j < 8; j++) {
            float D = sum_w[j] * sum_l2[j] - sum_l[j] * sum_l[j];
            this_scale[j] = (sum_w[j] * sum_xl[j] - sum_x[j] * sum_l[j]) / D;
            this_min[j] = (sum_l2[j] * sum_x[j] - sum_l[j] * sum_xl[j]) / D;
            if (this_min[j] > 0) {
                this_min[j] = 0;
                this_scale[j] = sum_xl[j] / sum_l2[j];
            }
            if (!(D > 0)) this_scale[j] = this_min[j] = 0; /* not taken (below), only kept finite */
        }
        for (int i = 0; i < 32; i++)
            for (int j = 0; j < 8; j++) {
                float diff = this_scale[j] * Laux[i][j] + this_min[j] - xt[i][j];
                err[j] += wt[i][j] * (diff * diff);
            }
        for (int j = 0; j < 8; j++) {
            float D = sum_w[j] * sum_l2[j] - sum_l[j] * sum_l[j];
            if (D > 0 && err[j] < best[j] && !flat[j]) {
                for (int i = 0; i < 32; i++) Lt[i][j] = Laux[i][j];
                best[j] = err[j];
                scale[j] = this_scale[j];
                min[j] = this_min[j];
            }
        }
    }
    for (int j = 0; j < 8; j++) {
        for (int i = 0; i < 32; i++) L[32 * j + i] = flat[j] ? 0 : (uint8_t)Lt[i][j];
        scales[j] = flat[j] ? 0.0f : scale[j];
        neg_mins[j] = -min[j];
    }
}

static void q4_K_from_float(const float *src, void *dst, int64_t n) {
    block_q4_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float x[QK_K], w[QK_K], scales[8], mins[8], max_scale = 0, max_min = 0;
        uint8_t L[QK_K];
        clean_superblock(src + i * QK_K, x);
        for (int j = 0; j < 8; j++) {
            const float *xs = x + 32 * j;
            float sum_x2 = 0;
            for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
            float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; l++) w[32 * j + l] = av_x + fabsf(xs[l]);
        }
        q4_K_fit8(x, w, L, scales, mins);
        for (int j = 0; j < 8; j++) {
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f, inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
        memset(b[i].scales, 0, sizeof b[i].scales);
        for (int j = 0; j < 8; j++) {
            int ls = nearest_clamped(inv_scale * scales[j], 0, 63), lm = nearest_clamped(inv_min * mins[j], 0, 63);
            if (j < 4) {
                b[i].scales[j] = (uint8_t)ls;
                b[i].scales[j + 4] = (uint8_t)lm;
            } else {
                b[i].scales[j + 4] = (uint8_t)((ls & 15) | (lm & 15) << 4);
                b[i].scales[j - 4] |= (uint8_t)(ls >> 4 << 6);
                b[i].scales[j] |= (uint8_t)(lm >> 4 << 6);
            }
        }
        b[i].d = sat_fp16(max_scale / 63.0f);
        b[i].dmin = sat_fp16(max_min / 63.0f);
        uint8_t sm[16];
        llc_q4_K_unpack_scales(b[i].scales, sm);
        float d = llc_fp16_to_fp32(b[i].d), dmin = llc_fp16_to_fp32(b[i].dmin);
        for (int j = 0; j < 8; j++) {
            float dj = d * sm[j];
            if (dj == 0) continue;
            float mj = dmin * sm[8 + j];
            for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)nearest_clamped((x[32 * j + l] + mj) / dj, 0, 15);
        }
        for (int c = 0; c < QK_K / 64; c++)
            for (int l = 0; l < 32; l++) b[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | L[64 * c + 32 + l] << 4);
    }
}

static void q4_K_to_float(const void *src, float *dst, int64_t n) {
    const block_q4_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = llc_fp16_to_fp32(b[i].d), dmin = llc_fp16_to_fp32(b[i].dmin), *y = dst + i * QK_K;
        uint8_t sm[16];
        llc_q4_K_unpack_scales(b[i].scales, sm);
        for (int c = 0; c < QK_K / 64; c++) {
            const uint8_t *q = b[i].qs + 32 * c;
            float d1 = d * sm[2 * c], m1 = dmin * sm[8 + 2 * c], d2 = d * sm[2 * c + 1], m2 = dmin * sm[8 + 2 * c + 1];
            for (int l = 0; l < 32; l++) y[64 * c + l] = d1 * (q[l] & 15) - m1;
            for (int l = 0; l < 32; l++) y[64 * c + 32 + l] = d2 * (q[l] >> 4) - m2;
        }
    }
}

/* Q6_K ------------------------------------------------------------------------------------------------
 * Symmetric: each sub-block of 16 takes q - 32 in -32..31 with the signed value of largest magnitude
 * at -32 (ggml's make_qx_quants, weights x^2), and 18 nearby step sizes are tried, keeping the one
 * whose least-squares scale explains the most of the weighted signal (the candidates do not depend on
 * each other here, so their sums are accumulated side by side). The 16 scales become int8 against d = -max_scale / 128 (signed, so the largest
 * lands on -128 and the full int8 range is used). */
static float q6_K_fit(const float *x, int8_t *L) {
    enum { N = 16, NMAX = 32, NCAND = 18 };
    float max = 0, amax = 0;
    for (int i = 0; i < N; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < 1e-15f) {
        memset(L, 0, N);
        return 0.0f;
    }
    float iscale = -NMAX / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < N; i++) {
        int l = nearest_clamped(iscale * x[i], -NMAX, NMAX - 1);
        L[i] = (int8_t)(l + NMAX);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    float is_c[NCAND], slx[NCAND] = {0}, sl2[NCAND] = {0};
    for (int c = 0; c < NCAND; c++) {
        int is = c < 9 ? c - 9 : c - 8; /* -9..-1, 1..9 */
        is_c[c] = -(NMAX + 0.1f * is) / max;
    }
    for (int i = 0; i < N; i++) {
        float w = x[i] * x[i];
        for (int c = 0; c < NCAND; c++) {
            int l = nearest_clamped(is_c[c] * x[i], -NMAX, NMAX - 1);
            slx[c] += w * x[i] * l;
            sl2[c] += w * l * l;
        }
    }
    int pick = -1;
    for (int c = 0; c < NCAND; c++)
        if (sl2[c] > 0 && slx[c] * slx[c] > best * sl2[c]) {
            pick = c;
            scale = slx[c] / sl2[c];
            best = scale * slx[c];
        }
    if (pick >= 0)
        for (int i = 0; i < N; i++) L[i] = (int8_t)(nearest_clamped(is_c[pick] * x[i], -NMAX, NMAX - 1) + NMAX);
    return scale;
}

static void q6_K_from_float(const float *src, void *dst, int64_t n) {
    block_q6_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float x[QK_K], scales[16], max_scale = 0, max_abs = 0;
        int8_t L[QK_K];
        clean_superblock(src + i * QK_K, x);
        for (int j = 0; j < 16; j++) {
            scales[j] = q6_K_fit(x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs) {
                max_abs = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(&b[i], 0, sizeof b[i]);
        if (max_abs < 1e-15f) continue;
        float iscale = -128.0f / max_scale;
        b[i].d = sat_fp16(1 / iscale);
        for (int j = 0; j < 16; j++) b[i].scales[j] = (int8_t)nearest_clamped(iscale * scales[j], -128, 127);
        float d = llc_fp16_to_fp32(b[i].d);
        for (int j = 0; j < 16; j++) {
            float dj = d * b[i].scales[j];
            if (dj == 0) continue;
            for (int l = 0; l < 16; l++) L[16 * j + l] = (int8_t)(nearest_clamped(x[16 * j + l] / dj, -32, 31) + 32);
        }
        for (int h = 0; h < 2; h++) {
            const int8_t *q = L + 128 * h;
            uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((q[l] & 15) | (q[l + 64] & 15) << 4);
                ql[l + 32] = (uint8_t)((q[l + 32] & 15) | (q[l + 96] & 15) << 4);
                qh[l] = (uint8_t)(q[l] >> 4 | (q[l + 32] >> 4) << 2 | (q[l + 64] >> 4) << 4 | (q[l + 96] >> 4) << 6);
            }
        }
    }
}

static void q6_K_to_float(const void *src, float *dst, int64_t n) {
    const block_q6_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = llc_fp16_to_fp32(b[i].d), *y = dst + i * QK_K;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            const int8_t *sc = b[i].scales + 8 * h;
            float *yh = y + 128 * h;
            for (int l = 0; l < 32; l++) {
                int s = l / 16;
                yh[l] = d * sc[s] * (float)(((ql[l] & 15) | (qh[l] & 3) << 4) - 32);
                yh[l + 32] = d * sc[s + 2] * (float)(((ql[l + 32] & 15) | (qh[l] >> 2 & 3) << 4) - 32);
                yh[l + 64] = d * sc[s + 4] * (float)(((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) - 32);
                yh[l + 96] = d * sc[s + 6] * (float)(((ql[l + 32] >> 4) | (qh[l] >> 6 & 3) << 4) - 32);
            }
        }
    }
}

/* Q8_K: the activations are quantized once per matmul, so this is the plain symmetric rule. NaN
 * inputs count as 0; an infinite one makes d infinite and the dot NaN, as in the f32 product. */
static void q8_K_from_float(const float *src, void *dst, int64_t n) {
    block_q8_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        memset(&b[i], 0, sizeof b[i]);
        if (amax == 0) continue;
        float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) b[i].qs[j] = (int8_t)nearest_clamped(iscale * x[j], -127, 127);
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += b[i].qs[16 * j + l];
            b[i].bsums[j] = (int16_t)sum;
        }
        b[i].d = 1 / iscale;
    }
}

static void q8_K_to_float(const void *src, float *dst, int64_t n) {
    const block_q8_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++)
        for (int j = 0; j < QK_K; j++) dst[i * QK_K + j] = b[i].d * (float)b[i].qs[j];
}

static const llc_type_traits traits[LLC_TYPE_COUNT] = {
    [LLC_F32] = {"f32", 1, 4, f32_to_float, f32_from_float},
    [LLC_F16] = {"f16", 1, 2, f16_to_float, f16_from_float},
    [LLC_BF16] = {"bf16", 1, 2, bf16_to_float, bf16_from_float},
    [LLC_Q8_0] = {"q8_0", QK8_0, sizeof(block_q8_0), q8_0_to_float, q8_0_from_float},
    [LLC_Q4_0] = {"q4_0", QK4_0, sizeof(block_q4_0), q4_0_to_float, q4_0_from_float},
    [LLC_Q4_K] = {"q4_k", QK_K, sizeof(block_q4_K), q4_K_to_float, q4_K_from_float},
    [LLC_Q6_K] = {"q6_k", QK_K, sizeof(block_q6_K), q6_K_to_float, q6_K_from_float},
    [LLC_Q8_K] = {"q8_k", QK_K, sizeof(block_q8_K), q8_K_to_float, q8_K_from_float},
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
        if (traits[t].name && strcasecmp(traits[t].name, name) == 0) return t;
    return -1;
}

size_t llc_row_size(uint32_t type, int64_t n) {
    const llc_type_traits *t = llc_type_get(type);
    if (!t || n % t->block_size) return 0;
    return (size_t)(n / t->block_size) * t->type_size;
}
