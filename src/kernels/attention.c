/*
 * Tiled causal attention with an online softmax (the FlashAttention recurrence), see attention.h.
 *
 * One place for each idea:
 *   - attend_units: the online softmax over tiles, written once for every instruction set;
 *   - the inner pieces (scores, scores_q8_0 for q8_0 keys, max, exp_sum, accumulate, and to_f32: the
 *     conversion of stored f16 / bf16 / q8_0 rows to f32, tile by tile) per instruction set in attention_<isa>.c, reached through
 *     the kernel table's attn (kernels/kernels.h);
 *   - llc_attn_merge: the exact combination of partial results (split-KV).
 */
#include "kernels/attention.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define TILE LLC_ATTN_TILE
#define MAX_ROWS LLC_ATTN_MAX_ROWS

/* ---- the online softmax --------------------------------------------------------------------------------- */

/* One pass's query rows: nr (<= MAX_ROWS) rows of one token, which see positions [lo, hi). */
typedef struct attn_unit {
    const float *q;   /* nr rows, head_dim apart */
    int nr, hi;
    float *m, *l, *acc;
} attn_unit;

#define MAX_UNITS LLC_ATTN_MAX_UNITS
/* head_dim up to which q8_0 keys are scored with the integer dot (the queries' q8_0 copy is on the stack) */
#define Q8_MAX_HD 256
/* positions between a row's prefetch and its use (see attend_units) */
#define PF_AHEAD 16

/*
 * The units' rows against positions [lo, max hi): m, l, acc as llc_attn_partial describes.
 * Per tile of TILE positions and per unit (over the tile's positions below the unit's hi):
 *   s = scale * q·k for the tile;  m' = max(m, max s);  c = exp(m - m')   (0 on the first tile, as m = -inf)
 *   l = l * c + Σ exp(s - m');     acc = acc * c + Σ exp(s - m') v;       m = m'
 * Tiles start at lo, whatever the block layout, and each position's row pointer is looked up from the
 * block table once per tile: the arithmetic is the same for any view of the same data, and a unit's
 * arithmetic does not depend on the other units of the walk.
 * An f32 view's rows are read where they are (kbuf NULL). Any other type's rows are converted tile by
 * tile, once for all units, into kbuf and vbuf (LLC_ATTN_SCRATCH floats each; a tile is shorter when
 * head_dim > 128), then the same kernels run on the converted rows; except q8_0 keys when q8 is given:
 * the units' query rows, quantized to q8_0 (q8: MAX_ROWS rows of head_dim / 32 blocks per unit), are
 * scored against the cached blocks in place with the integer dot product (scores_q8_0).
 */
static void attend_units(const llc_attn_ops *ops, const llc_kv_view *kv, int kv_head, int hd, attn_unit *u, int nu, int lo,
                         float scale, float *kbuf, float *vbuf, const block_q8_0 *q8) {
    int hi = lo;
    for (int j = 0; j < nu; j++) {
        for (int r = 0; r < u[j].nr; r++) {
            u[j].m[r] = -INFINITY;
            u[j].l[r] = 0;
        }
        memset(u[j].acc, 0, (size_t)u[j].nr * hd * sizeof *u[j].acc);
        hi = u[j].hi > hi ? u[j].hi : hi;
    }
    if (lo >= hi) return;
    const size_t head_off = (size_t)kv_head * kv->head_stride, q8_row = (size_t)hd / QK8_0;
    const int tile = !kbuf || LLC_ATTN_SCRATCH / hd >= TILE ? TILE : LLC_ATTN_SCRATCH / hd;
    int blk = lo / kv->block_size, off = lo % kv->block_size;
    const void *k_row[TILE];
    const float *v_row[TILE];
    float s[MAX_ROWS * TILE], c[MAX_ROWS];
    /* A head's rows are row_stride elements apart (the position's other heads between them), a stride
     * the hardware prefetchers follow poorly: measured (bench/bench_attn.c, Zen 4) a walk over an f16
     * cache in DRAM ran at a third of its speed in L3. So each row is prefetched PF_AHEAD positions
     * ahead, into L2 (into L1 it was slower: the lines pile up in the few L1 miss buffers). */
    const size_t elem_bytes = llc_type_get(kv->type)->type_size, elem_block = (size_t)llc_type_get(kv->type)->block_size;
    int pf_blk = blk, pf_off = off;
    for (int i = 0; i < PF_AHEAD; i++)
        if (++pf_off == kv->block_size) pf_blk++, pf_off = 0;
    for (int p0 = lo; p0 < hi; p0 += tile) {
        int n = hi - p0 < tile ? hi - p0 : tile;
        for (int i = 0; i < n; i++) {
            size_t o = (size_t)off * kv->row_stride + head_off;
            if (!kbuf) {
                k_row[i] = (const float *)kv->k_blocks[blk] + o;
                v_row[i] = (const float *)kv->v_blocks[blk] + o;
            } else {
                float *vd = vbuf + (size_t)i * hd;
                if (q8) {
                    k_row[i] = (const block_q8_0 *)kv->k_blocks[blk] + o / QK8_0;
                } else {
                    ops->to_f32(kv->type, kv->k_blocks[blk], o, hd, kbuf + (size_t)i * hd);
                    k_row[i] = kbuf + (size_t)i * hd;
                }
                ops->to_f32(kv->type, kv->v_blocks[blk], o, hd, vd);
                v_row[i] = vd;
            }
            if (++off == kv->block_size) blk++, off = 0;
            if (p0 + i + PF_AHEAD < hi) {
                /* the bytes of the blocks holding elements o .. o + hd - 1, every line they touch */
                size_t o = (size_t)pf_off * kv->row_stride + head_off, at = o / elem_block * elem_bytes;
                size_t end = ((o + (size_t)hd - 1) / elem_block + 1) * elem_bytes;
                uintptr_t k0 = (uintptr_t)kv->k_blocks[pf_blk] + at, v0 = (uintptr_t)kv->v_blocks[pf_blk] + at;
                for (uintptr_t b = 0; b < end - at + (k0 & 63) || b < end - at + (v0 & 63); b += 64) {
                    __builtin_prefetch((const void *)((k0 & ~(uintptr_t)63) + b), 0, 2);
                    __builtin_prefetch((const void *)((v0 & ~(uintptr_t)63) + b), 0, 2);
                }
                if (++pf_off == kv->block_size) pf_blk++, pf_off = 0;
            }
        }
        for (int j = 0; j < nu; j++) {
            const attn_unit *x = &u[j];
            if (x->hi <= p0) continue;
            int nj = x->hi - p0 < n ? x->hi - p0 : n;
            if (q8) ops->scores_q8_0(q8 + (size_t)j * MAX_ROWS * q8_row, x->nr, hd, k_row, nj, scale, s);
            else ops->scores(x->q, x->nr, hd, (const float *const *)k_row, nj, scale, s);
            for (int r = 0; r < x->nr; r++) {
                float *sr = s + r * TILE, mt = ops->max(sr, nj);
                float mn = mt > x->m[r] ? mt : x->m[r];
                c[r] = mn == x->m[r] ? 1.0f : expf(x->m[r] - mn); /* 0 on the first tile (m = -inf) */
                x->l[r] = x->l[r] * c[r] + ops->exp_sum(sr, nj, mn);
                x->m[r] = mn;
            }
            ops->accumulate(x->acc, x->nr, hd, c, s, v_row, nj);
        }
    }
}

/* q8_0 keys are scored in place when every head's row starts a block (head_dim, the strides and so the
 * head's offset multiples of 32). */
static bool keys_int8(const llc_kv_view *kv, int hd) {
    return kv->type == LLC_Q8_0 && hd % QK8_0 == 0 && hd <= Q8_MAX_HD && kv->row_stride % QK8_0 == 0 &&
           kv->head_stride % QK8_0 == 0;
}

/* A converted view: the scratch for one tile's K and V rows (2 x 32 KiB) and the queries' q8_0 copy on
 * this call's stack, kept out of the f32 path's frame. */
static __attribute__((noinline)) void attend_converted(const llc_attn_ops *ops, const llc_kv_view *kv, int kv_head, int hd,
                                                       attn_unit *u, int nu, int lo, float scale) {
    float kbuf[LLC_ATTN_SCRATCH], vbuf[LLC_ATTN_SCRATCH];
    if (!keys_int8(kv, hd)) {
        attend_units(ops, kv, kv_head, hd, u, nu, lo, scale, kbuf, vbuf, NULL);
        return;
    }
    /* llama.cpp's choice too: the queries quantized to q8_0 once (its vec_dot_type for q8_0 keys) */
    block_q8_0 q8[MAX_UNITS * MAX_ROWS * (Q8_MAX_HD / QK8_0)];
    _Alignas(64) unsigned char row[((Q8_MAX_HD / QK8_0) * sizeof(block_q8_0) + 63) / 64 * 64 + (Q8_MAX_HD / QK8_0) * 8];
    const size_t nb = (size_t)hd / QK8_0;
    for (int j = 0; j < nu; j++)
        for (int r = 0; r < u[j].nr; r++) {
            llc_act_q8_0_scalar(u[j].q + (size_t)r * hd, row, hd, 1.0f, NULL);
            memcpy(q8 + ((size_t)j * MAX_ROWS + r) * nb, row, nb * sizeof(block_q8_0));
        }
    attend_units(ops, kv, kv_head, hd, u, nu, lo, scale, kbuf, vbuf, q8);
}

static void attend(const llc_attn_ops *ops, const llc_kv_view *kv, int kv_head, int hd, attn_unit *u, int nu, int lo,
                   float scale) {
    if (kv->type == LLC_F32) attend_units(ops, kv, kv_head, hd, u, nu, lo, scale, NULL, NULL, NULL);
    else attend_converted(ops, kv, kv_head, hd, u, nu, lo, scale);
}

void llc_attn_partial(const llc_attn_ops *ops, const llc_kv_view *kv, int kv_head, int head_dim, const float *q, int rows,
                      int lo, int hi, float scale, float *part) {
    if (!ops) ops = &llc_kernels_get()->attn;
    float *m = part, *l = part + rows, *acc = part + 2 * (size_t)rows;
    /* A group larger than MAX_ROWS is several units of one walk over the keys. */
    attn_unit u[MAX_UNITS];
    for (int r0 = 0; r0 < rows;) {
        int nu = 0;
        for (; r0 < rows && nu < MAX_UNITS; r0 += MAX_ROWS, nu++) {
            int nr = rows - r0 < MAX_ROWS ? rows - r0 : MAX_ROWS;
            u[nu] = (attn_unit){q + (size_t)r0 * head_dim, nr, hi, m + r0, l + r0, acc + (size_t)r0 * head_dim};
        }
        attend(ops, kv, kv_head, head_dim, u, nu, lo, scale);
    }
}

void llc_attn_tokens(const llc_attn_ops *ops, const llc_kv_view *kv, int kv_head, int head_dim, int n_tok, const int *n_pos,
                     const float *q, size_t stride, int rows, float scale, float *out) {
    if (!ops) ops = &llc_kernels_get()->attn;
    attn_unit u[MAX_UNITS];
    float m[MAX_UNITS][MAX_ROWS], l[MAX_UNITS][MAX_ROWS];
    int t = 0, r0 = 0;
    while (t < n_tok) {
        int nu = 0;
        for (; t < n_tok && nu < MAX_UNITS; nu++) {
            int nr = rows - r0 < MAX_ROWS ? rows - r0 : MAX_ROWS;
            size_t at = (size_t)t * stride + (size_t)r0 * head_dim;
            u[nu] = (attn_unit){q + at, nr, n_pos[t], m[nu], l[nu], out + at};
            if ((r0 += nr) == rows) r0 = 0, t++;
        }
        attend(ops, kv, kv_head, head_dim, u, nu, 0, scale);
        for (int j = 0; j < nu; j++)
            for (int r = 0; r < u[j].nr; r++) {
                float inv = 1.0f / l[j][r], *o = u[j].acc + (size_t)r * head_dim;
                for (int d = 0; d < head_dim; d++) o[d] *= inv;
            }
    }
}

void llc_attn(const llc_attn_ops *ops, const llc_kv_view *kv, int kv_head, int head_dim, const float *q, int rows, int n_pos,
              float scale, float *out) {
    llc_attn_tokens(ops, kv, kv_head, head_dim, 1, &n_pos, q, 0, rows, scale, out);
}

/* ---- split-KV: the log-sum-exp merge -------------------------------------------------------------------------- */

void llc_attn_merge(const float *parts, int n_parts, int rows, int head_dim, float *out) {
    const size_t stride = llc_attn_part_floats(rows, head_dim);
    for (int r = 0; r < rows; r++) {
        float mx = -INFINITY;
        for (int j = 0; j < n_parts; j++) mx = parts[j * stride + r] > mx ? parts[j * stride + r] : mx;
        /* Part j's sums were taken relative to its own maximum m_j: bring them to the common one. An
         * empty part (m_j = -inf, l_j = 0, acc_j = 0) gets weight 0. */
        double sum = 0;
        float *o = out + (size_t)r * head_dim;
        for (int j = 0; j < n_parts; j++) {
            const float *pj = parts + j * stride;
            float w = expf(pj[r] - mx);
            const float *acc = pj + 2 * (size_t)rows + (size_t)r * head_dim;
            sum += (double)w * pj[rows + r];
            for (int d = 0; d < head_dim; d++) o[d] = j ? o[d] + w * acc[d] : w * acc[d];
        }
        float inv = (float)(1.0 / sum);
        for (int d = 0; d < head_dim; d++) o[d] *= inv;
    }
}
