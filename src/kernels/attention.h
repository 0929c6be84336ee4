#ifndef LLC_ATTENTION_H
#define LLC_ATTENTION_H
/*
 * Causal self-attention the way FlashAttention computes it, on the CPU: the keys and values are walked
 * in tiles of LLC_ATTN_TILE positions and an online softmax keeps, per query row, the running maximum
 * m of the scaled scores, the running sum l = Σ exp(s - m) and the unnormalized output
 * acc = Σ exp(s - m) · v, rescaling l and acc by exp(m_old - m_new) whenever a tile raises the
 * maximum. Scores over the whole length are never stored (only one tile's), so memory does not grow
 * with the context and one pass reads each key and value row once.
 *
 * One call handles the query heads that share one KV head under GQA (Llama 3.2 1B: 4 query heads per
 * KV head), so each K/V row is read once for the whole group; llc_attn_tokens walks the keys once for
 * several tokens of a prompt too. The arithmetic is f32. The keys and values may be stored as f32
 * (read in place) or as f16, bf16 or q8_0: then each tile's rows are first converted to f32 (exactly:
 * every f16, bf16 and q8_0 value is an f32) into a scratch on the stack, once for every query row and
 * token of the walk, and the same f32 kernels run on them, so a converted view gives bit for bit the
 * result of an f32 view of the rounded values. Except q8_0 keys (when head_dim and the view's strides are
 * multiples of 32): as in llama.cpp the query rows are quantized to q8_0 once per call and scored
 * against the cached blocks with the integer dot product (scores_q8_0), which rounds the queries.
 *
 * A range of positions can be done in pieces (split-KV): llc_attn_partial gives (m, l, acc) for a
 * range and llc_attn_merge combines pieces exactly (the log-sum-exp merge), so decoding one token over
 * a long context can spread over threads.
 */
#include <limits.h>
#include <stddef.h>

#include "kernels/kernels.h"
#include "kernels/types.h"

/* Positions per tile: the scores of one tile (rows x LLC_ATTN_TILE floats) stay in L1. */
#define LLC_ATTN_TILE 64
/* Query rows per pass over the keys: the vector kernels hold this many accumulators in registers.
 * A larger group is done in several passes. */
#define LLC_ATTN_MAX_ROWS 8
/* Passes of the kernels (up to LLC_ATTN_MAX_ROWS rows of one token each) one walk over the keys serves:
 * a converted tile is shared by all of them (a large GQA group's passes, a prompt's tokens), so a
 * typed cache is converted once per this many passes. */
#define LLC_ATTN_MAX_UNITS 16
/* Floats of K (and as many of V) a converted tile may hold: LLC_ATTN_TILE positions up to head_dim 128;
 * beyond, a converted view's tiles are shorter (LLC_ATTN_SCRATCH / head_dim positions). head_dim must
 * not exceed it for a view that is not f32. */
#define LLC_ATTN_SCRATCH (LLC_ATTN_TILE * 128)

/*
 * Where one layer's keys and values of one sequence are. Positions are grouped in blocks of
 * block_size consecutive positions; the head_dim values of position p and KV head h are the elements
 *     e = (p % block_size) * row_stride + h * head_stride,  e + 1, ...,  e + head_dim - 1
 * of block k_blocks[p / block_size] (likewise V, with the same strides), an array of elements of the
 * view's type: floats for LLC_F32, halves for LLC_F16 and LLC_BF16, and for LLC_Q8_0 ggml's blocks of 32
 * (element e is value e % 32 of block e / 32; a head need not start a block).
 *
 *   - today's contiguous cache ([position][kv_dim] per layer) is one block that holds every position,
 *     row_stride = kv_dim, head_stride = head_dim: llc_kv_view_contiguous;
 *   - a paged cache is blocks of, e.g., 16 positions anywhere in memory, listed in the sequence's
 *     block table (k_blocks[i], v_blocks[i] for its i-th block); inside a block either the same
 *     [position][kv_dim] rows, or [head][position][head_dim] (row_stride = head_dim,
 *     head_stride = block_size * head_dim), which keeps each head's rows together.
 *
 * The kernel resolves each position's row pointer once per tile, and its arithmetic does not depend
 * on where rows are, so a paged view gives bit-for-bit the result of a contiguous one.
 */
typedef struct llc_kv_view {
    const void *const *k_blocks;  /* block table for K: k_blocks[i] is block i's first element */
    const void *const *v_blocks;  /* block table for V */
    int block_size;               /* positions per block (INT_MAX: one block, a contiguous cache) */
    size_t row_stride;            /* elements between consecutive positions in a block */
    size_t head_stride;           /* elements between consecutive KV heads of a position */
    enum llc_type type;           /* LLC_F32 (0: read in place), LLC_F16, LLC_BF16 or LLC_Q8_0 */
} llc_kv_view;

/* A contiguous f32 cache seen as a view: *k and *v are position 0's rows, rows row_stride floats apart
 * (kv_dim), heads head_dim floats apart in a row. The view points at the pointers, so they must
 * outlive it. */
static inline llc_kv_view llc_kv_view_contiguous(const void *const *k, const void *const *v, size_t row_stride,
                                                 size_t head_dim) {
    llc_kv_view view = {k, v, INT_MAX, row_stride, head_dim, LLC_F32};
    return view;
}

/* Floats of one partial result for `rows` query rows: m[rows], l[rows], acc[rows][head_dim]. */
static inline size_t llc_attn_part_floats(int rows, int head_dim) { return (size_t)rows * ((size_t)head_dim + 2); }

/*
 * The attention of `rows` query rows (q: rows x head_dim, consecutive) that all use KV head kv_head,
 * over positions [lo, hi) of kv, as an unnormalized partial result in part (llc_attn_part_floats):
 * m = max scaled score (-INFINITY for an empty range), l = Σ exp(s - m), acc = Σ exp(s - m) v.
 * ops: the inner pieces (a kernel table's attn), NULL for the chosen table's.
 */
void llc_attn_partial(const llc_attn_ops *ops, const llc_kv_view *kv, int kv_head, int head_dim, const float *q, int rows,
                      int lo, int hi, float scale, float *part);

/* Combines n_parts partial results (consecutive in parts, each llc_attn_part_floats(rows, head_dim))
 * of disjoint ranges into the normalized output out (rows x head_dim):
 *     M = max m_j,  out = Σ_j exp(m_j - M) acc_j / Σ_j exp(m_j - M) l_j
 * At least one part must be non-empty. */
void llc_attn_merge(const float *parts, int n_parts, int rows, int head_dim, float *out);

/* Causal attention of one token: its rows see positions [0, n_pos). out: rows x head_dim, normalized.
 * The same arithmetic as llc_attn_partial over [0, n_pos) followed by the division by l. */
void llc_attn(const llc_attn_ops *ops, const llc_kv_view *kv, int kv_head, int head_dim, const float *q, int rows, int n_pos,
              float scale, float *out);

/* Causal attention of n_tok tokens of one sequence (a prompt): token t's rows (q + t * stride, rows x
 * head_dim) see positions [0, n_pos[t]) and its output goes to out + t * stride. Per token the same
 * arithmetic as llc_attn; what the tokens share is the walk over the keys (one per LLC_ATTN_MAX_UNITS
 * passes), so a typed cache's tiles are converted once for several tokens instead of once per token. */
void llc_attn_tokens(const llc_attn_ops *ops, const llc_kv_view *kv, int kv_head, int head_dim, int n_tok, const int *n_pos,
                     const float *q, size_t stride, int rows, float scale, float *out);

#endif
