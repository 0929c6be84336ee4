#ifndef LLC_OPS_H
#define LLC_OPS_H
/* The small per-vector operations of the forward pass. */
#include <math.h>

/* 1 / sqrt(mean(x²) + eps): what RMSNorm multiplies x by (before the weights). */
float llc_rmsnorm_scale(const float *x, int n, float eps);
/* out = x / sqrt(mean(x²) + eps) * w */
void llc_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
/* Rotates adjacent pairs (x[2i], x[2i+1]) by the angles whose (cos, sin) are cs[2i], cs[2i+1], for
 * i < rope_dim/2 (the GGUF/Meta convention); dimensions past rope_dim are left alone. */
void llc_rope(float *x, const float *cs, int rope_dim);
/* The same rotation for the half-split layout: pairs (x[i], x[i + rope_dim/2]). */
void llc_rope_half_split(float *x, const float *cs, int rope_dim);
/* In-place softmax. */
void llc_softmax(float *x, int n);
float llc_dot_f32(const float *a, const float *b, int n);
/* y += a * x */
void llc_axpy(float *y, float a, const float *x, int n);

static inline float llc_silu(float x) { return x / (1.0f + expf(-x)); }

#endif
