/* Attention's inner pieces, scalar: the definition every vector version is tested against
 * (kernels/kernels.h, llc_attn_ops; the online softmax around them is in attention.c). */
#include <math.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/attention.h"
#include "kernels/kernels.h"

#define TILE LLC_ATTN_TILE

void llc_attn_scores_scalar(const float *q, int rows, int hd, const float *const *k, int n, float scale, float *s) {
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < n; i++) {
            const float *qr = q + (size_t)r * hd, *kr = k[i];
            /* four partial sums, as llc_dot_f32 (and the vector lanes) do */
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int d = 0;
            for (; d + 4 <= hd; d += 4) {
                s0 += qr[d] * kr[d];
                s1 += qr[d + 1] * kr[d + 1];
                s2 += qr[d + 2] * kr[d + 2];
                s3 += qr[d + 3] * kr[d + 3];
            }
            for (; d < hd; d++) s0 += qr[d] * kr[d];
            s[r * TILE + i] = ((s0 + s1) + (s2 + s3)) * scale;
        }
}

void llc_attn_scores_q8_0_scalar(const block_q8_0 *q8, int rows, int hd, const void *const *k, int n, float scale, float *s) {
    const int nb = hd / QK8_0;
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < n; i++) {
            const block_q8_0 *qr = q8 + (size_t)r * nb, *kr = k[i];
            /* as ggml's vec_dot_q8_0_q8_0: per block the exact int32 sum, times the two scales */
            float sum = 0;
            for (int b = 0; b < nb; b++) {
                int32_t sumi = 0;
                for (int j = 0; j < QK8_0; j++) sumi += qr[b].qs[j] * kr[b].qs[j];
                sum += (float)sumi * (llc_fp16_to_fp32(kr[b].d) * llc_fp16_to_fp32(qr[b].d));
            }
            s[r * TILE + i] = sum * scale;
        }
}

float llc_attn_max_scalar(const float *s, int n) {
    float mx = s[0];
    for (int i = 1; i < n; i++) mx = s[i] > mx ? s[i] : mx;
    return mx;
}

float llc_attn_exp_sum_scalar(float *s, int n, float m) {
    float sum = 0;
    for (int i = 0; i < n; i++) {
        s[i] = expf(s[i] - m);
        sum += s[i];
    }
    return sum;
}

void llc_attn_accumulate_scalar(float *acc, int rows, int hd, const float *c, const float *p, const float *const *v, int n) {
    for (int r = 0; r < rows; r++)
        for (int d0 = 0; d0 < hd; d0 += 64) {
            /* the tile's sum first, then one rescaled add: as the vector kernels do it */
            int w = hd - d0 < 64 ? hd - d0 : 64;
            float t[64] = {0}, *a = acc + (size_t)r * hd + d0;
            for (int i = 0; i < n; i++) {
                float pi = p[r * TILE + i];
                const float *vi = v[i] + d0;
                for (int d = 0; d < w; d++) t[d] += pi * vi[d];
            }
            for (int d = 0; d < w; d++) a[d] = a[d] * c[r] + t[d];
        }
}

/* Elements skip .. skip + n - 1 of an array of `type` as f32. Scalar, the definition; the vector
 * versions convert the bulk and leave the rest to this one. */
void llc_attn_to_f32_scalar(enum llc_type type, const void *src, size_t skip, int n, float *dst) {
    switch (type) {
    case LLC_F16: {
        const uint16_t *h = (const uint16_t *)src + skip;
        for (int i = 0; i < n; i++) dst[i] = llc_fp16_to_fp32(h[i]);
        break;
    }
    case LLC_BF16: {
        const uint16_t *h = (const uint16_t *)src + skip;
        for (int i = 0; i < n; i++) dst[i] = llc_bf16_to_fp32(h[i]);
        break;
    }
    case LLC_Q8_0: {
        const block_q8_0 *b = (const block_q8_0 *)src + skip / QK8_0;
        int j = (int)(skip % QK8_0);
        for (int i = 0; i < n; b++, j = 0) {
            float d = llc_fp16_to_fp32(b->d);
            for (; j < QK8_0 && i < n; j++, i++) dst[i] = d * (float)b->qs[j];
        }
        break;
    }
    default: memcpy(dst, (const float *)src + skip, (size_t)n * sizeof(float)); break;
    }
}
