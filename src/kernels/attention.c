/*
 * Tiled causal attention with an online softmax (the FlashAttention recurrence), see attention.h.
 *
 * One place for each idea:
 *   - attend_rows: the online softmax over tiles, written once for every instruction set;
 *   - the inner pieces (scores, max, exp_sum, accumulate, and to_f32: the conversion of stored f16 /
 *     bf16 / q8_0 rows to f32, tile by tile) per instruction set in attention_<isa>.c, reached through
 *     the kernel table's attn (kernels/kernels.h);
 *   - llc_attn_merge: the exact combination of partial results (split-KV).
 */
#include "kernels/attention.h"

#include <math.h>
#include <string.h>

#define TILE LLC_ATTN_TILE
#define MAX_ROWS LLC_ATTN_MAX_ROWS

/* ---- the online softmax --------------------------------------------------------------------------------- */

/*
 * rows (<= MAX_ROWS) query rows against positions [lo, hi): m, l, acc as llc_attn_partial describes.
 * Per tile of TILE positions:
 *   s = scale * q·k for the tile;  m' = max(m, max s);  c = exp(m - m')   (0 on the first tile, as m = -inf)
 *   l = l * c + Σ exp(s - m');     acc = acc * c + Σ exp(s - m') v;       m = m'
 * Tiles start at lo, whatever the block layout, and each position's row pointer is looked up from the
 * block table once per tile: the arithmetic is the same for any view of the same data.
 * An f32 view's rows are read where they are (kbuf NULL). Any other type's rows are converted tile by
 * tile into kbuf and vbuf (LLC_ATTN_SCRATCH floats each; a tile is shorter when head_dim > 128), then
 * the same kernels run on the converted rows.
 */
static void attend_rows(const llc_attn_ops *ops, const llc_kv_view *kv, int kv_head, int hd, const float *q, int rows, int lo,
                        int hi, float scale, float *m, float *l, float *acc, float *kbuf, float *vbuf) {
    for (int r = 0; r < rows; r++) {
        m[r] = -INFINITY;
        l[r] = 0;
    }
    memset(acc, 0, (size_t)rows * hd * sizeof *acc);
    if (lo >= hi) return;
    const size_t head_off = (size_t)kv_head * kv->head_stride;
    const int tile = !kbuf || LLC_ATTN_SCRATCH / hd >= TILE ? TILE : LLC_ATTN_SCRATCH / hd;
    int blk = lo / kv->block_size, off = lo % kv->block_size;
    const float *k_row[TILE], *v_row[TILE];
    float s[MAX_ROWS * TILE], c[MAX_ROWS];
    for (int p0 = lo; p0 < hi; p0 += tile) {
        int n = hi - p0 < tile ? hi - p0 : tile;
        if (!kbuf) {
            for (int i = 0; i < n; i++) {
                size_t o = (size_t)off * kv->row_stride + head_off;
                k_row[i] = (const float *)kv->k_blocks[blk] + o;
                v_row[i] = (const float *)kv->v_blocks[blk] + o;
                if (++off == kv->block_size) blk++, off = 0;
            }
        } else {
            for (int i = 0; i < n; i++) {
                size_t o = (size_t)off * kv->row_stride + head_off;
                float *kd = kbuf + (size_t)i * hd, *vd = vbuf + (size_t)i * hd;
                ops->to_f32(kv->type, kv->k_blocks[blk], o, hd, kd);
                ops->to_f32(kv->type, kv->v_blocks[blk], o, hd, vd);
                k_row[i] = kd;
                v_row[i] = vd;
                if (++off == kv->block_size) blk++, off = 0;
            }
        }
        ops->scores(q, rows, hd, k_row, n, scale, s);
        for (int r = 0; r < rows; r++) {
            float *sr = s + r * TILE, mt = ops->max(sr, n);
            float mn = mt > m[r] ? mt : m[r];
            c[r] = mn == m[r] ? 1.0f : expf(m[r] - mn); /* 0 on the first tile (m = -inf) */
            l[r] = l[r] * c[r] + ops->exp_sum(sr, n, mn);
            m[r] = mn;
        }
        ops->accumulate(acc, rows, hd, c, s, v_row, n);
    }
}

/* A converted view: the scratch for one tile's K and V rows on this call's stack (2 x 32 KiB), kept
 * out of the f32 path's frame. */
static __attribute__((noinline)) void attend_converted(const llc_attn_ops *ops, const llc_kv_view *kv, int kv_head, int hd,
                                                       const float *q, int rows, int lo, int hi, float scale, float *m,
                                                       float *l, float *acc) {
    float kbuf[LLC_ATTN_SCRATCH], vbuf[LLC_ATTN_SCRATCH];
    attend_rows(ops, kv, kv_head, hd, q, rows, lo, hi, scale, m, l, acc, kbuf, vbuf);
}

static void attend(const llc_attn_ops *ops, const llc_kv_view *kv, int kv_head, int hd, const float *q, int rows, int lo,
                   int hi, float scale, float *m, float *l, float *acc) {
    if (kv->type == LLC_F32) attend_rows(ops, kv, kv_head, hd, q, rows, lo, hi, scale, m, l, acc, NULL, NULL);
    else attend_converted(ops, kv, kv_head, hd, q, rows, lo, hi, scale, m, l, acc);
}

void llc_attn_partial(const llc_attn_ops *ops, const llc_kv_view *kv, int kv_head, int head_dim, const float *q, int rows,
                      int lo, int hi, float scale, float *part) {
    if (!ops) ops = &llc_kernels_get()->attn;
    float *m = part, *l = part + rows, *acc = part + 2 * (size_t)rows;
    /* A group larger than MAX_ROWS takes several passes over the keys. */
    for (int r0 = 0; r0 < rows; r0 += MAX_ROWS) {
        int nr = rows - r0 < MAX_ROWS ? rows - r0 : MAX_ROWS;
        attend(ops, kv, kv_head, head_dim, q + (size_t)r0 * head_dim, nr, lo, hi, scale, m + r0, l + r0,
               acc + (size_t)r0 * head_dim);
    }
}

void llc_attn(const llc_attn_ops *ops, const llc_kv_view *kv, int kv_head, int head_dim, const float *q, int rows, int n_pos,
              float scale, float *out) {
    if (!ops) ops = &llc_kernels_get()->attn;
    for (int r0 = 0; r0 < rows; r0 += MAX_ROWS) {
        int nr = rows - r0 < MAX_ROWS ? rows - r0 : MAX_ROWS;
        float m[MAX_ROWS], l[MAX_ROWS], *o = out + (size_t)r0 * head_dim;
        attend(ops, kv, kv_head, head_dim, q + (size_t)r0 * head_dim, nr, 0, n_pos, scale, m, l, o);
        for (int r = 0; r < nr; r++) {
            float inv = 1.0f / l[r];
            for (int d = 0; d < head_dim; d++) o[(size_t)r * head_dim + d] *= inv;
        }
    }
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
