/*
 * Tiled causal attention with an online softmax (the FlashAttention recurrence), see attention.h.
 *
 * One place for each idea:
 *   - attend_rows: the online softmax over tiles, written once for every instruction set;
 *   - the four inner kernels (scores, max, exp_sum, accumulate) per instruction set: scalar (the
 *     definition), AVX2, AVX-512, selected at run time from llc_kernels_get()'s choice;
 *   - llc_attn_merge: the exact combination of partial results (split-KV);
 *   - to_f32 per instruction set: the conversion of stored f16 / bf16 / q8_0 rows to f32, tile by tile.
 */
#include "kernels/attention.h"

#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "base/fp16.h"

#define TILE LLC_ATTN_TILE
#define MAX_ROWS LLC_ATTN_MAX_ROWS

/* ---- scalar kernels: the definition ------------------------------------------------------------------ */

static void scores_scalar(const float *q, int rows, int hd, const float *const *k, int n, float scale, float *s) {
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

static float max_scalar(const float *s, int n) {
    float mx = s[0];
    for (int i = 1; i < n; i++) mx = s[i] > mx ? s[i] : mx;
    return mx;
}

static float exp_sum_scalar(float *s, int n, float m) {
    float sum = 0;
    for (int i = 0; i < n; i++) {
        s[i] = expf(s[i] - m);
        sum += s[i];
    }
    return sum;
}

static void accumulate_scalar(float *acc, int rows, int hd, const float *c, const float *p, const float *const *v, int n) {
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
static void to_f32_scalar(enum llc_type type, const void *src, size_t skip, int n, float *dst) {
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
    if (!ops) ops = llc_attn_ops_get();
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
    if (!ops) ops = llc_attn_ops_get();
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

/* ---- vector kernels ------------------------------------------------------------------------------------------- */
/*
 * scores: four positions at a time per query row, four accumulators whose horizontal sums are taken
 * together (one vector of four dot products: a quarter of the shuffles of four separate reductions).
 * accumulate: the query rows' accumulators for a slice of head_dim (64 floats with AVX-512, 16 with
 * AVX2) stay in registers for the whole tile: per position, each value vector is loaded once and each
 * weight broadcast once for all the FMAs that use them; acc is read and written once per tile.
 * exp_sum: Cephes' expf (degree-5 polynomial on [-ln2/2, ln2/2] after a two-constant Cody-Waite
 * reduction), within 2 ulp of expf; inputs are <= 0 (scores minus their maximum) and anything below
 * ln(FLT_MIN) gives 0.
 * Kernels templated on the row count are always_inline with constant counts so the accumulator
 * arrays become registers.
 */
#if defined(__x86_64__)
#include <immintrin.h>

#define EXP_LO -87.33654475f /* ln(FLT_MIN) */
#define EXP_LOG2E 1.44269504088896341f
#define EXP_C1 0.693359375f
#define EXP_C2 -2.12194440e-4f
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

/* ---- AVX2 + FMA ---- */
#define AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE AVX2 static inline __attribute__((always_inline))

/* A mask for the first n (< 8) lanes, for maskload/maskstore. */
AVX2_INLINE __m256i lanes256(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* [Σa, Σb, Σc, Σd] */
AVX2_INLINE __m128 hsum4_256(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 ab = _mm256_add_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
    __m256 cd = _mm256_add_ps(_mm256_unpacklo_ps(c, d), _mm256_unpackhi_ps(c, d));
    __m256 x = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
}

AVX2_INLINE void store_scores4(float *s, int avail, __m128 v) {
    if (avail >= 4) {
        _mm_storeu_ps(s, v);
    } else {
        float t[4];
        _mm_storeu_ps(t, v);
        for (int j = 0; j < avail; j++) s[j] = t[j];
    }
}

/* R (1 or 2) rows x 4 positions: 8 accumulators + 4 keys + 1 query of the 16 registers. */
AVX2_INLINE void scores256_block(const float *q, const int R, int hd, const float *const *k, int n, float scale, float *s) {
    const int hd8 = hd & ~7;
    const __m256i tail = lanes256(hd & 7);
    for (int i = 0; i < n; i += 4) {
        const float *kp[4];
        for (int j = 0; j < 4; j++) kp[j] = k[i + j < n ? i + j : n - 1];
        __m256 a[2][4];
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) a[r][j] = _mm256_setzero_ps();
        for (int d = 0; d < hd; d += 8) {
            __m256 kv[4], qv;
            if (d < hd8) {
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) kv[j] = _mm256_loadu_ps(kp[j] + d);
            } else {
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) kv[j] = _mm256_maskload_ps(kp[j] + d, tail);
            }
#pragma GCC unroll 2
            for (int r = 0; r < R; r++) {
                qv = d < hd8 ? _mm256_loadu_ps(q + (size_t)r * hd + d) : _mm256_maskload_ps(q + (size_t)r * hd + d, tail);
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) a[r][j] = _mm256_fmadd_ps(qv, kv[j], a[r][j]);
            }
        }
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
            store_scores4(s + r * TILE + i, n - i, _mm_mul_ps(hsum4_256(a[r][0], a[r][1], a[r][2], a[r][3]), _mm_set1_ps(scale)));
    }
}

AVX2 static void scores_avx2(const float *q, int rows, int hd, const float *const *k, int n, float scale, float *s) {
    for (int r0 = 0; r0 < rows; r0 += 2) {
        const float *qr = q + (size_t)r0 * hd;
        if (rows - r0 >= 2) scores256_block(qr, 2, hd, k, n, scale, s + r0 * TILE);
        else scores256_block(qr, 1, hd, k, n, scale, s + r0 * TILE);
    }
}

AVX2_INLINE __m256 exp256(__m256 x) {
    const __m256 lo = _mm256_set1_ps(EXP_LO);
    __m256 keep = _mm256_cmp_ps(x, lo, _CMP_NLT_UQ); /* x >= lo, or NaN (which propagates) */
    x = _mm256_max_ps(lo, x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_C1), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_C2), r);
    __m256 p = _mm256_set1_ps(EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n from the exponent bits: n >= -126 after the clamp, so the result is normal */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

AVX2 static float max_avx2(const float *s, int n) {
    __m256 mx = _mm256_set1_ps(s[0]);
    int i = 0;
    for (; i + 8 <= n; i += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(s + i));
    if (i < n) mx = _mm256_max_ps(mx, _mm256_blendv_ps(mx, _mm256_maskload_ps(s + i, lanes256(n - i)), _mm256_castsi256_ps(lanes256(n - i))));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}

AVX2 static float exp_sum_avx2(float *s, int n, float m) {
    __m256 mv = _mm256_set1_ps(m), sum = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv));
        _mm256_storeu_ps(s + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (i < n) {
        __m256i mask = lanes256(n - i);
        __m256 e = _mm256_and_ps(exp256(_mm256_sub_ps(_mm256_maskload_ps(s + i, mask), mv)), _mm256_castsi256_ps(mask));
        _mm256_maskstore_ps(s + i, mask, e);
        sum = _mm256_add_ps(sum, e);
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

/* R (1..4) rows x a slice of NC (1..2) 8-float chunks of head_dim: up to 8 accumulators that stay in
 * registers over the tile (of the 16); per position NC value loads and R broadcasts feed R * NC FMAs. */
AVX2_INLINE void acc256_block(float *acc, const int R, const int NC, int hd, int d0, const float *c, const float *p,
                              const float *const *v, int n) {
    __m256i m[2];
    bool full[2];
    __m256 t[4][2];
#pragma GCC unroll 2
    for (int j = 0; j < NC; j++) {
        full[j] = hd - d0 - 8 * j >= 8;
        m[j] = lanes256(hd - d0 - 8 * j);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int j = 0; j < NC; j++) t[r][j] = _mm256_setzero_ps();
    for (int i = 0; i < n; i++) {
        __m256 vv[2];
#pragma GCC unroll 2
        for (int j = 0; j < NC; j++)
            vv[j] = full[j] ? _mm256_loadu_ps(v[i] + d0 + 8 * j) : _mm256_maskload_ps(v[i] + d0 + 8 * j, m[j]);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m256 pr = _mm256_set1_ps(p[r * TILE + i]);
#pragma GCC unroll 2
            for (int j = 0; j < NC; j++) t[r][j] = _mm256_fmadd_ps(pr, vv[j], t[r][j]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int j = 0; j < NC; j++) {
            float *a = acc + (size_t)r * hd + d0 + 8 * j;
            __m256 cr = _mm256_set1_ps(c[r]);
            if (full[j]) _mm256_storeu_ps(a, _mm256_fmadd_ps(_mm256_loadu_ps(a), cr, t[r][j]));
            else _mm256_maskstore_ps(a, m[j], _mm256_fmadd_ps(_mm256_maskload_ps(a, m[j]), cr, t[r][j]));
        }
}

AVX2 static void accumulate_avx2(float *acc, int rows, int hd, const float *c, const float *p, const float *const *v, int n) {
    for (int r0 = 0; r0 < rows; r0 += 4) {
        float *a = acc + (size_t)r0 * hd;
        const float *pr = p + r0 * TILE, *cr = c + r0;
        for (int d0 = 0; d0 < hd; d0 += 16) {
            bool two = hd - d0 > 8;
            switch (rows - r0) {
            case 1: two ? acc256_block(a, 1, 2, hd, d0, cr, pr, v, n) : acc256_block(a, 1, 1, hd, d0, cr, pr, v, n); break;
            case 2: two ? acc256_block(a, 2, 2, hd, d0, cr, pr, v, n) : acc256_block(a, 2, 1, hd, d0, cr, pr, v, n); break;
            case 3: two ? acc256_block(a, 3, 2, hd, d0, cr, pr, v, n) : acc256_block(a, 3, 1, hd, d0, cr, pr, v, n); break;
            default: two ? acc256_block(a, 4, 2, hd, d0, cr, pr, v, n) : acc256_block(a, 4, 1, hd, d0, cr, pr, v, n); break;
            }
        }
    }
}

/* to_f32: 8 values per instruction (F16C's vcvtph2ps for f16, a widening shift for bf16, int8 to
 * int32 to float times the block's scale for q8_0); whatever is left over, and a q8_0 run that does
 * not start a block, goes to the scalar definition. Every conversion is exact, so the bits agree. */
__attribute__((target("avx2,fma,f16c"))) static void to_f32_avx2(enum llc_type type, const void *src, size_t skip, int n,
                                                                  float *dst) {
    int i = 0;
    if (type == LLC_F16 || type == LLC_BF16) {
        const uint16_t *h = (const uint16_t *)src + skip;
        for (; i + 8 <= n; i += 8) {
            __m128i x = _mm_loadu_si128((const __m128i *)(h + i));
            __m256 f = type == LLC_F16 ? _mm256_cvtph_ps(x) : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(x), 16));
            _mm256_storeu_ps(dst + i, f);
        }
    } else if (type == LLC_Q8_0 && skip % QK8_0 == 0) {
        const block_q8_0 *b = (const block_q8_0 *)src + skip / QK8_0;
        for (; i + QK8_0 <= n; i += QK8_0, b++) {
            __m256 d = _mm256_set1_ps(llc_fp16_to_fp32(b->d));
            for (int j = 0; j < QK8_0; j += 8) {
                __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + j)));
                _mm256_storeu_ps(dst + i + j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
            }
        }
    }
    if (i < n) to_f32_scalar(type, src, skip + (size_t)i, n - i, dst + i);
}

/* ---- AVX-512 ---- */
#define AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define AVX512_INLINE AVX512 static inline __attribute__((always_inline))

AVX512_INLINE __mmask16 lanes512(int n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

/* [Σa, Σb, Σc, Σd]: the 4-vector reduction per 128-bit lane, then the four lanes added. */
AVX512_INLINE __m128 hsum4_512(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    __m512 x = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    __m256 y = _mm256_add_ps(_mm512_castps512_ps256(x), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
}

/* R (1..4) rows x 4 positions: 16 accumulators + 4 keys + 1 query of the 32 registers. */
AVX512_INLINE void scores512_block(const float *q, const int R, int hd, const float *const *k, int n, float scale, float *s) {
    for (int i = 0; i < n; i += 4) {
        const float *kp[4];
        for (int j = 0; j < 4; j++) kp[j] = k[i + j < n ? i + j : n - 1];
        __m512 a[4][4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) a[r][j] = _mm512_setzero_ps();
        for (int d = 0; d < hd; d += 16) {
            __mmask16 m = lanes512(hd - d);
            __m512 kv[4];
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) kv[j] = _mm512_maskz_loadu_ps(m, kp[j] + d);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m512 qv = _mm512_maskz_loadu_ps(m, q + (size_t)r * hd + d);
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) a[r][j] = _mm512_fmadd_ps(qv, kv[j], a[r][j]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m128 v = _mm_mul_ps(hsum4_512(a[r][0], a[r][1], a[r][2], a[r][3]), _mm_set1_ps(scale));
            _mm_mask_storeu_ps(s + r * TILE + i, (__mmask8)lanes512(n - i < 4 ? n - i : 4), v);
        }
    }
}

AVX512 static void scores_avx512(const float *q, int rows, int hd, const float *const *k, int n, float scale, float *s) {
    for (int r0 = 0; r0 < rows; r0 += 4) {
        const float *qr = q + (size_t)r0 * hd;
        float *sr = s + r0 * TILE;
        switch (rows - r0) {
        case 1: scores512_block(qr, 1, hd, k, n, scale, sr); break;
        case 2: scores512_block(qr, 2, hd, k, n, scale, sr); break;
        case 3: scores512_block(qr, 3, hd, k, n, scale, sr); break;
        default: scores512_block(qr, 4, hd, k, n, scale, sr); break;
        }
    }
}

AVX512_INLINE __m512 exp512(__m512 x) {
    const __m512 lo = _mm512_set1_ps(EXP_LO);
    __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_max_ps(lo, x); /* NaN stays NaN */
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_C1), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_C2), r);
    __m512 p = _mm512_set1_ps(EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P5));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_mov_ps((__mmask16)~under, _mm512_scalef_ps(p, n));
}

AVX512 static float max_avx512(const float *s, int n) {
    __m512 mx = _mm512_set1_ps(s[0]);
    for (int i = 0; i < n; i += 16) mx = _mm512_mask_max_ps(mx, lanes512(n - i), mx, _mm512_maskz_loadu_ps(lanes512(n - i), s + i));
    return _mm512_reduce_max_ps(mx);
}

AVX512 static float exp_sum_avx512(float *s, int n, float m) {
    __m512 mv = _mm512_set1_ps(m), sum = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 k = lanes512(n - i);
        __m512 e = _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + i), mv)));
        _mm512_mask_storeu_ps(s + i, k, e);
        sum = _mm512_add_ps(sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

/* R (1..4) rows x a slice of NC (1..4) 16-float chunks of head_dim: up to 16 accumulators that stay in
 * registers over the tile; per position NC value loads and R broadcasts feed R * NC FMAs. */
AVX512_INLINE void acc512_block(float *acc, const int R, const int NC, int hd, int d0, const float *c, const float *p,
                                const float *const *v, int n) {
    __mmask16 m[4];
    __m512 t[4][4];
#pragma GCC unroll 4
    for (int j = 0; j < NC; j++) m[j] = lanes512(hd - d0 - 16 * j);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < NC; j++) t[r][j] = _mm512_setzero_ps();
    for (int i = 0; i < n; i++) {
        __m512 vv[4];
#pragma GCC unroll 4
        for (int j = 0; j < NC; j++) vv[j] = _mm512_maskz_loadu_ps(m[j], v[i] + d0 + 16 * j);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 pr = _mm512_set1_ps(p[r * TILE + i]);
#pragma GCC unroll 4
            for (int j = 0; j < NC; j++) t[r][j] = _mm512_fmadd_ps(pr, vv[j], t[r][j]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < NC; j++) {
            float *a = acc + (size_t)r * hd + d0 + 16 * j;
            _mm512_mask_storeu_ps(a, m[j], _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m[j], a), _mm512_set1_ps(c[r]), t[r][j]));
        }
}

#define ACC512_NC(R)                                                                                                   \
    switch (nc) {                                                                                                      \
    case 1: acc512_block(a, R, 1, hd, d0, cr, pr, v, n); break;                                                        \
    case 2: acc512_block(a, R, 2, hd, d0, cr, pr, v, n); break;                                                        \
    case 3: acc512_block(a, R, 3, hd, d0, cr, pr, v, n); break;                                                        \
    default: acc512_block(a, R, 4, hd, d0, cr, pr, v, n); break;                                                       \
    }

AVX512 static void accumulate_avx512(float *acc, int rows, int hd, const float *c, const float *p, const float *const *v, int n) {
    for (int r0 = 0; r0 < rows; r0 += 4) {
        float *a = acc + (size_t)r0 * hd;
        const float *pr = p + r0 * TILE, *cr = c + r0;
        for (int d0 = 0; d0 < hd; d0 += 64) {
            int nc = (hd - d0 + 15) / 16;
            switch (rows - r0) {
            case 1: ACC512_NC(1) break;
            case 2: ACC512_NC(2) break;
            case 3: ACC512_NC(3) break;
            default: ACC512_NC(4) break;
            }
        }
    }
}

/* to_f32 as the AVX2 version, 16 values per instruction. */
AVX512 static void to_f32_avx512(enum llc_type type, const void *src, size_t skip, int n, float *dst) {
    int i = 0;
    if (type == LLC_F16 || type == LLC_BF16) {
        const uint16_t *h = (const uint16_t *)src + skip;
        for (; i + 16 <= n; i += 16) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(h + i));
            __m512 f = type == LLC_F16 ? _mm512_cvtph_ps(x) : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(x), 16));
            _mm512_storeu_ps(dst + i, f);
        }
    } else if (type == LLC_Q8_0 && skip % QK8_0 == 0) {
        const block_q8_0 *b = (const block_q8_0 *)src + skip / QK8_0;
        for (; i + QK8_0 <= n; i += QK8_0, b++) {
            __m512 d = _mm512_set1_ps(llc_fp16_to_fp32(b->d));
            for (int j = 0; j < QK8_0; j += 16) {
                __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b->qs + j)));
                _mm512_storeu_ps(dst + i + j, _mm512_mul_ps(d, _mm512_cvtepi32_ps(q)));
            }
        }
    }
    if (i < n) to_f32_scalar(type, src, skip + (size_t)i, n - i, dst + i);
}

static const llc_attn_ops avx2_ops = {LLC_ISA_AVX2, "avx2", scores_avx2, max_avx2, exp_sum_avx2, accumulate_avx2, to_f32_avx2};
static const llc_attn_ops avx512_ops = {LLC_ISA_AVX512, "avx512", scores_avx512, max_avx512, exp_sum_avx512, accumulate_avx512,
                                        to_f32_avx512};
#endif

/* ---- selection ---------------------------------------------------------------------------------------------------- */

static const llc_attn_ops scalar_ops = {LLC_ISA_SCALAR, "scalar", scores_scalar, max_scalar, exp_sum_scalar, accumulate_scalar,
                                        to_f32_scalar};

const llc_attn_ops *llc_attn_ops_for(enum llc_isa isa) {
    if (isa == LLC_ISA_SCALAR) return &scalar_ops;
#if defined(__x86_64__)
    /* Runnable exactly when the dot-product table of the same ISA is (dispatch.c checks cpuid). */
    if (!llc_kernels_for(isa)) return NULL;
    if (isa == LLC_ISA_AVX2) return &avx2_ops;
    if (isa == LLC_ISA_AVX512) return &avx512_ops;
#endif
    return NULL;
}

const llc_attn_ops *llc_attn_ops_get(void) {
    static const llc_attn_ops *_Atomic chosen;
    const llc_attn_ops *ops = chosen;
    if (!ops) {
        ops = llc_attn_ops_for(llc_kernels_get()->isa);
        if (!ops) ops = &scalar_ops;
        chosen = ops;
    }
    return ops;
}
