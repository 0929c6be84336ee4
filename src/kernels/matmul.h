#ifndef LLC_MATMUL_H
#define LLC_MATMUL_H
/*
 * out = x · Wᵀ for a weight matrix W stored in any supported type.
 *
 * Weights stay in their stored type. The activations are first converted once per matmul into the
 * weight type's "activation type" (Q8_0 blocks for Q8_0/Q4_0 weights, so the inner loop is an integer
 * dot product; bf16 for bf16 weights; f32 otherwise), then every (weight row, activation row) pair is
 * one vec_dot call from the kernel table (kernels/kernels.h), chosen per type and instruction set.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/threadpool.h"

typedef struct llc_tensor {
    const void *data;
    uint32_t type;
    int64_t n_cols;    /* row length (GGUF ne[0]) */
    int64_t n_rows;    /* ne[1] */
    size_t row_bytes;
    /* The same rows repacked for the machine's kernel (kernels/packed.h), made when the first session
     * starts; NULL when the type or shape has no packed kernel. */
    const void *packed;
} llc_tensor;

/* Type the activations are converted to for weights of type wtype. */
uint32_t llc_act_type(uint32_t wtype);
/* Bytes one converted activation row of n_cols takes. */
size_t llc_act_row_bytes(uint32_t wtype, int64_t n_cols);
/* Converts n_tok rows of x (n_cols floats each) for weights of type wtype into dst. */
void llc_act_convert(uint32_t wtype, const float *x, void *dst, int64_t n_cols, int n_tok);

/* act = n_tok converted rows of rmsnorm(x) * w for weights of type wtype, on the pool's threads; the
 * normalization is fused into the conversion for Q8_0 activations, other types normalize into
 * scratch (n_tok * n_cols floats) first. */
void llc_act_rmsnorm(llc_pool *pool, uint32_t wtype, float *scratch, void *act, const float *x, const float *w, float eps,
                     int64_t n_cols, int n_tok);

/* out[t * W->n_rows + r] = dot(W row r, x row t) for t < n_tok. act is scratch of at least
 * n_tok * llc_act_row_bytes(W->type, W->n_cols) bytes; if x_is_converted, x already points at
 * converted activations (so one conversion serves several matmuls of the same input). */
void llc_matmul(llc_pool *pool, float *out, const llc_tensor *W, const void *x, int n_tok, void *act, int x_is_converted);

/* n matrices (n <= 3) applied to the same converted activations (all with the same activation type
 * and row length): Q, K and V. Packed matrices run as one job over the threads. */
void llc_matmul_multi(llc_pool *pool, int n, float *const *outs, const llc_tensor *const *Ws, const void *act, int n_tok);
/* out = silu(act · Wgᵀ) * (act · Wuᵀ), the SwiGLU feed-forward's first half, for converted activations
 * of both; packed matrices compute it tile by tile without storing either product, otherwise tmp
 * (n_tok * Wu->n_rows floats) holds the second one. */
void llc_matmul_swiglu(llc_pool *pool, float *out, float *tmp, const llc_tensor *Wg, const llc_tensor *Wu, const void *act,
                       int n_tok);

/* Packing (kernels/packed.h): whether W can be packed on this machine, the bytes it takes, and the
 * packing of its row groups [g0, g1) into dst (threads split the groups). */
bool llc_tensor_packable(const llc_tensor *W);
size_t llc_tensor_packed_bytes(const llc_tensor *W);
void llc_tensor_pack(const llc_tensor *W, void *dst, int64_t g0, int64_t g1);

/* One row of W as floats (embedding lookup). */
void llc_tensor_get_row(const llc_tensor *W, int64_t r, float *dst);

#endif
