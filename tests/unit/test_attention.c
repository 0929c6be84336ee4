/*
 * The tiled online-softmax attention (kernels/attention.c):
 *   (a) against a plain two-pass softmax computed in double, for every instruction set, with GQA
 *       groups, several head sizes and lengths, and causal prefixes of a longer cache;
 *   (b) split-KV (partials + log-sum-exp merge) against the unsplit result;
 *   (c) a paged view (blocks shuffled in memory, block sizes 16 and 7, rows as in the cache or
 *       head-major inside a block) against the contiguous view, bit for bit;
 *   (d) each SIMD inner kernel against its scalar twin, at sizes that are not multiples of the width;
 *   (e) views stored as f16, bf16 and q8_0 (contiguous and paged, heads that start inside a q8_0
 *       block) against the f32 view of the same values after the type's round trip, bit for bit (q8_0
 *       keys whose heads start blocks are scored with the integer dot on q8_0 queries: against the
 *       double reference on the rounded queries), and each SIMD conversion against the scalar one;
 *   (f) scores_q8_0 of every table against the exact integer definition in double; several tokens in
 *       one walk (llc_attn_tokens) equal to one call per token, bit for bit; and each typed tile
 *       converted once per walk, however many query rows and tokens share it (counted);
 *   and through the model: logits bit-identical for 1, 2 and 3 threads (the split rule depends on the
 *   shape only) and a long decode equal to the same tokens run as one batch, within rounding.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kernels/attention.h"
#include "kernels/kernels.h"
#include "kernels/types.h"
#include "llamac.h"

/* The attention pieces of one ISA's kernel table, NULL when this CPU cannot run it; the scalar twins
 * are llc_kernels_twins.attn. */
static const llc_attn_ops *attn_for(enum llc_isa isa) {
    const llc_kernels *k = llc_kernels_for(isa);
    return k ? &k->attn : NULL;
}

static const char *attn_name(const llc_attn_ops *ops) {
    for (int isa = 0; isa < LLC_ISA_COUNT; isa++)
        if (ops == attn_for((enum llc_isa)isa)) return llc_isa_name((enum llc_isa)isa);
    return "scalar twins";
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

/* A random layer cache: [n_pos][row_stride] rows of n_kv heads (row_stride >= n_kv * hd; the padding
 * is NaN, as are positions past `valid`, so reading anything outside the causal prefix shows). */
typedef struct cache {
    int n_pos, n_kv, hd;
    size_t stride;
    float *k, *v;
} cache;

static cache make_cache(int n_pos, int n_kv, int hd, int pad, int valid) {
    cache c = {n_pos, n_kv, hd, (size_t)n_kv * hd + pad, NULL, NULL};
    c.k = malloc((size_t)n_pos * c.stride * sizeof(float));
    c.v = malloc((size_t)n_pos * c.stride * sizeof(float));
    assert_non_null(c.k);
    assert_non_null(c.v);
    for (int p = 0; p < n_pos; p++)
        for (size_t i = 0; i < c.stride; i++) {
            bool in = p < valid && i < (size_t)n_kv * hd;
            c.k[p * c.stride + i] = in ? frand() : NAN;
            c.v[p * c.stride + i] = in ? frand() : NAN;
        }
    return c;
}

static void free_cache(cache *c) {
    free(c->k);
    free(c->v);
}

/* The definition, in double: s_i = q·k_i / sqrt(hd); p = softmax(s) in two passes; out = Σ p_i v_i.
 * mag[d] = Σ p_i |v_i[d]|, the scale of the sum's rounding errors. */
static void reference(const cache *c, int g, const float *q, int rows, int n_pos, double *out, double *mag) {
    int hd = c->hd;
    double *s = malloc((size_t)n_pos * sizeof *s);
    for (int r = 0; r < rows; r++) {
        double mx = -INFINITY, sum = 0;
        for (int p = 0; p < n_pos; p++) {
            const float *k = c->k + p * c->stride + (size_t)g * hd;
            double dot = 0;
            for (int d = 0; d < hd; d++) dot += (double)q[r * hd + d] * k[d];
            s[p] = dot / sqrt((double)hd);
            mx = s[p] > mx ? s[p] : mx;
        }
        for (int p = 0; p < n_pos; p++) sum += s[p] = exp(s[p] - mx);
        for (int d = 0; d < hd; d++) {
            double o = 0, a = 0;
            for (int p = 0; p < n_pos; p++) {
                double v = c->v[p * c->stride + (size_t)g * hd + d];
                o += s[p] / sum * v;
                a += s[p] / sum * fabs(v);
            }
            out[r * hd + d] = o;
            mag[r * hd + d] = a;
        }
    }
    free(s);
}

static llc_kv_view view_of(const cache *c, const void **kp, const void **vp) {
    *kp = c->k;
    *vp = c->v;
    return llc_kv_view_contiguous(kp, vp, c->stride, (size_t)c->hd);
}

static float *random_q(int rows, int hd, float amp) {
    float *q = malloc((size_t)rows * hd * sizeof *q);
    assert_non_null(q);
    for (int i = 0; i < rows * hd; i++) q[i] = amp * frand();
    return q;
}

/* (a) ------------------------------------------------------------------------------------------------- */

/*
 * Tolerance: |out - ref| <= 1e-5 * Σ p_i |v_i| per element. Why: f32 rounds at u = 2^-24 = 6e-8.
 * A score's absolute error is about sqrt(hd) u |s| and becomes the relative error of its weight
 * (exp turns absolute into relative error): ~1e-6 for |s| ~ 5 at hd 128. exp adds <= 2 ulp, the sum
 * l a few ulp (the lanes and tiles add pairwise-ish). The output is a sum of n_pos terms p_i v_i whose
 * rounding is bounded by (TILE + n_pos / TILE) u Σ p_i |v_i| (each term goes through at most TILE
 * additions inside a tile and one per later tile): 80 u = 5e-6 at n_pos = 1000 in the worst case,
 * ~1e-7 in practice as errors do not line up. Measured: below 1e-6 everywhere (printed). The bound is
 * relative to Σ p|v| and not to |out|, because out can cancel to ~0 while its terms do not.
 */
#define TOL_A 1e-5

static double check_against_reference(const llc_attn_ops *ops, int hd, int n_kv, int group, int n_pos, int pos_total, float amp) {
    int valid = n_pos;
    cache c = make_cache(pos_total, n_kv, hd, 3, valid);
    const void *kp, *vp;
    llc_kv_view view = view_of(&c, &kp, &vp);
    double worst = 0;
    for (int g = 0; g < n_kv; g++) {
        float *q = random_q(group, hd, amp), *out = malloc((size_t)group * hd * sizeof *out);
        double *ref = malloc((size_t)group * hd * sizeof *ref), *mag = malloc((size_t)group * hd * sizeof *mag);
        llc_attn(ops, &view, g, hd, q, group, n_pos, 1.0f / sqrtf((float)hd), out);
        reference(&c, g, q, group, n_pos, ref, mag);
        for (int i = 0; i < group * hd; i++) {
            double err = fabs(out[i] - ref[i]) / (mag[i] + 1e-30);
            if (!(err <= TOL_A))
                fail_msg("%s hd=%d group=%d n_pos=%d head %d elem %d: %.9g vs %.9g (mag %.3g, rel err %.3g)", attn_name(ops), hd, group,
                         n_pos, g, i, out[i], ref[i], mag[i], err);
            worst = err > worst ? err : worst;
        }
        free(q);
        free(out);
        free(ref);
        free(mag);
    }
    free_cache(&c);
    return worst;
}

static void test_against_reference(void **state) {
    (void)state;
    static const int hds[] = {8, 24, 40, 64, 128};
    static const int lens[] = {1, 2, 31, 33, 64, 65, 100, 257, 1000};
    static const int groups[] = {1, 3, 4, 8, 10}; /* 10: more than LLC_ATTN_MAX_ROWS, two passes */
    int tested = 0;
    for (int isa = 0; isa < LLC_ISA_COUNT; isa++) {
        const llc_attn_ops *ops = attn_for((enum llc_isa)isa);
        if (!ops) {
            printf("  (%s not available on this CPU: skipped)\n", llc_isa_name((enum llc_isa)isa));
            continue;
        }
        double worst = 0;
        for (size_t h = 0; h < sizeof hds / sizeof *hds; h++)
            for (size_t l = 0; l < sizeof lens / sizeof *lens; l++)
                for (size_t gi = 0; gi < sizeof groups / sizeof *groups; gi++) {
                    /* the causal prefix of a longer cache: positions past n_pos hold NaN */
                    double w = check_against_reference(ops, hds[h], 2, groups[gi], lens[l], lens[l] + 5, 3.0f);
                    worst = w > worst ? w : worst;
                }
        /* sharp softmax: scores in the tens */
        for (size_t l = 0; l < sizeof lens / sizeof *lens; l++) {
            double w = check_against_reference(ops, 64, 1, 4, lens[l], lens[l], 12.0f);
            worst = w > worst ? w : worst;
        }
        printf("  %s: worst error %.3g x Σ p|v| (tolerance %.0e)\n", attn_name(ops), worst, TOL_A);
        tested++;
    }
    assert_true(tested >= 1);
}

/* The causal rule at the model's level: token t of a batch at pos0 sees [0, pos0 + t] and nothing
 * later, even when the cache holds later positions (they are NaN here). */
static void test_causal_prefixes(void **state) {
    (void)state;
    const int hd = 64, n_kv = 2, group = 4, pos0 = 37, n_tok = 9;
    cache c = make_cache(pos0 + n_tok + 20, n_kv, hd, 0, pos0 + n_tok);
    const void *kp, *vp;
    llc_kv_view view = view_of(&c, &kp, &vp);
    for (int t = 0; t < n_tok; t++) {
        float *q = random_q(group, hd, 3.0f), out[4 * 64];
        double ref[4 * 64], mag[4 * 64];
        llc_attn(NULL, &view, 1, hd, q, group, pos0 + t + 1, 0.125f, out);
        reference(&c, 1, q, group, pos0 + t + 1, ref, mag);
        for (int i = 0; i < group * hd; i++) assert_true(fabs(out[i] - ref[i]) <= TOL_A * mag[i]);
        free(q);
    }
    free_cache(&c);
}

/* (b) ------------------------------------------------------------------------------------------------- */

/* Split results differ from the unsplit one only by f32 rounding: the tiles start at other positions
 * and the merge rescales once more. Same bound as (a), halved: both are within it of the exact value,
 * and measured differences are ~1e-7. Empty parts (lo == hi) must merge as nothing. */
static void test_split_kv(void **state) {
    (void)state;
    static const int lens[] = {1, 5, 100, 257, 1000};
    static const int splits[] = {1, 2, 3, 7, 16};
    const int hd = 40, n_kv = 3, group = 4;
    for (int isa = 0; isa < LLC_ISA_COUNT; isa++) {
        const llc_attn_ops *ops = attn_for((enum llc_isa)isa);
        if (!ops) continue;
        double worst = 0;
        for (size_t l = 0; l < sizeof lens / sizeof *lens; l++) {
            int n_pos = lens[l];
            cache c = make_cache(n_pos, n_kv, hd, 0, n_pos);
            const void *kp, *vp;
            llc_kv_view view = view_of(&c, &kp, &vp);
            float *q = random_q(group, hd, 3.0f), whole[4 * 40], merged[4 * 40];
            double ref[4 * 40], mag[4 * 40];
            reference(&c, 2, q, group, n_pos, ref, mag);
            llc_attn(ops, &view, 2, hd, q, group, n_pos, 1.0f / sqrtf((float)hd), whole);
            for (size_t si = 0; si < sizeof splits / sizeof *splits; si++) {
                int n_split = splits[si];
                size_t pf = llc_attn_part_floats(group, hd);
                float *parts = malloc((size_t)n_split * pf * sizeof *parts);
                for (int j = 0; j < n_split; j++) {
                    int lo = (int)((long)n_pos * j / n_split), hi = (int)((long)n_pos * (j + 1) / n_split);
                    llc_attn_partial(ops, &view, 2, hd, q, group, lo, hi, 1.0f / sqrtf((float)hd), parts + j * pf);
                }
                llc_attn_merge(parts, n_split, group, hd, merged);
                for (int i = 0; i < group * hd; i++) {
                    double d = fabs((double)merged[i] - whole[i]) / (mag[i] + 1e-30);
                    if (!(d <= TOL_A / 2))
                        fail_msg("%s n_pos=%d splits=%d elem %d: merged %.9g vs whole %.9g", attn_name(ops), n_pos, n_split, i, merged[i],
                                 whole[i]);
                    worst = d > worst ? d : worst;
                }
                if (n_split == 1) assert_memory_equal(merged, whole, sizeof whole); /* one part: the same arithmetic */
                free(parts);
            }
            free(q);
            free_cache(&c);
        }
        printf("  %s: split vs unsplit, worst difference %.3g x Σ p|v|\n", attn_name(ops), worst);
    }
}

/* (c) ------------------------------------------------------------------------------------------------- */

/* The same cache as blocks of bs positions placed in a shuffled order in one pool, with a block table;
 * inside a block either the cache's own [position][row] layout or [head][position][head_dim]. */
static void check_paged(const llc_attn_ops *ops, int bs, int n_pos, int hd, int n_kv, int group, bool head_major) {
    cache c = make_cache(n_pos, n_kv, hd, 2, n_pos);
    int n_blocks = (n_pos + bs - 1) / bs;
    int *perm = malloc((size_t)n_blocks * sizeof *perm);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        int j = (int)(rng % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    size_t row_stride = head_major ? (size_t)hd : c.stride, head_stride = head_major ? (size_t)bs * hd : (size_t)hd;
    size_t block_floats = head_major ? (size_t)n_kv * bs * hd : (size_t)bs * c.stride;
    float *kpool = malloc((size_t)n_blocks * block_floats * sizeof(float)), *vpool = malloc((size_t)n_blocks * block_floats * sizeof(float));
    const void **kt = malloc((size_t)n_blocks * sizeof *kt), **vt = malloc((size_t)n_blocks * sizeof *vt);
    for (size_t i = 0; i < (size_t)n_blocks * block_floats; i++) kpool[i] = vpool[i] = NAN;
    for (int b = 0; b < n_blocks; b++) {
        float *kb = kpool + (size_t)perm[b] * block_floats, *vb = vpool + (size_t)perm[b] * block_floats;
        kt[b] = kb;
        vt[b] = vb;
        for (int o = 0; o < bs && b * bs + o < n_pos; o++)
            for (int h = 0; h < n_kv; h++) {
                size_t src = (size_t)(b * bs + o) * c.stride + (size_t)h * hd, dst = o * row_stride + h * head_stride;
                memcpy(kb + dst, c.k + src, (size_t)hd * sizeof(float));
                memcpy(vb + dst, c.v + src, (size_t)hd * sizeof(float));
            }
    }
    llc_kv_view paged = {kt, vt, bs, row_stride, head_stride, LLC_F32};
    const void *kp, *vp;
    llc_kv_view flat = view_of(&c, &kp, &vp);
    float *q = random_q(group, hd, 3.0f);
    size_t out_n = (size_t)group * hd, pf = llc_attn_part_floats(group, hd);
    float *a = malloc(pf * sizeof *a), *b = malloc(pf * sizeof *b);
    for (int g = 0; g < n_kv; g++) {
        llc_attn(ops, &flat, g, hd, q, group, n_pos, 0.1f, a);
        llc_attn(ops, &paged, g, hd, q, group, n_pos, 0.1f, b);
        assert_memory_equal(a, b, out_n * sizeof *a);
        /* a range that starts and ends inside blocks */
        int lo = n_pos / 3 + 1 < n_pos ? n_pos / 3 + 1 : 0, hi = n_pos - n_pos / 5;
        if (hi <= lo) hi = n_pos;
        llc_attn_partial(ops, &flat, g, hd, q, group, lo, hi, 0.1f, a);
        llc_attn_partial(ops, &paged, g, hd, q, group, lo, hi, 0.1f, b);
        assert_memory_equal(a, b, pf * sizeof *a);
    }
    free(a);
    free(b);
    free(q);
    free(kt);
    free(vt);
    free(kpool);
    free(vpool);
    free(perm);
    free_cache(&c);
}

static void test_paged_view(void **state) {
    (void)state;
    static const int lens[] = {1, 7, 16, 33, 100, 257, 1000};
    for (int isa = 0; isa < LLC_ISA_COUNT; isa++) {
        const llc_attn_ops *ops = attn_for((enum llc_isa)isa);
        if (!ops) continue;
        for (size_t l = 0; l < sizeof lens / sizeof *lens; l++) {
            for (int head_major = 0; head_major <= 1; head_major++) {
                check_paged(ops, 16, lens[l], 64, 2, 4, head_major);
                check_paged(ops, 7, lens[l], 64, 2, 4, head_major);
                check_paged(ops, 7, lens[l], 40, 3, 3, head_major);
            }
        }
    }
}

/* (d) ------------------------------------------------------------------------------------------------- */

static void test_simd_vs_scalar(void **state) {
    (void)state;
    const llc_attn_ops *ref = &llc_kernels_twins.attn;
    static const int hds[] = {2, 6, 8, 10, 24, 40, 64, 66, 128, 130};
    static const int ns[] = {1, 2, 3, 5, 7, 31, 33, 63, 64};
    int tested = 0;
    for (int isa = 1; isa < LLC_ISA_COUNT; isa++) {
        const llc_attn_ops *ops = attn_for((enum llc_isa)isa);
        if (!ops) {
            printf("  (%s not available on this CPU: skipped)\n", llc_isa_name((enum llc_isa)isa));
            continue;
        }
        tested++;
        for (size_t h = 0; h < sizeof hds / sizeof *hds; h++)
            for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
                for (int rows = 1; rows <= LLC_ATTN_MAX_ROWS; rows++) {
                    int hd = hds[h], n = ns[ni];
                    float *q = random_q(rows, hd, 2.0f), *rowdata = malloc((size_t)n * hd * sizeof(float));
                    const float *rp[LLC_ATTN_TILE];
                    for (int i = 0; i < n * hd; i++) rowdata[i] = frand();
                    for (int i = 0; i < n; i++) rp[i] = rowdata + (size_t)(n - 1 - i) * hd; /* rows in any order */
                    /* scores: only the order of additions differs; bound n-term sums by hd u Σ|q k| */
                    float s0[LLC_ATTN_MAX_ROWS * LLC_ATTN_TILE], s1[LLC_ATTN_MAX_ROWS * LLC_ATTN_TILE];
                    ref->scores(q, rows, hd, rp, n, 0.3f, s0);
                    ops->scores(q, rows, hd, rp, n, 0.3f, s1);
                    for (int r = 0; r < rows; r++)
                        for (int i = 0; i < n; i++) {
                            double mag = 0;
                            for (int d = 0; d < hd; d++) mag += fabs((double)q[r * hd + d] * rp[i][d]) * 0.3;
                            double tol = 1.2e-7 * hd * mag + 1e-30;
                            if (!(fabs(s0[r * LLC_ATTN_TILE + i] - s1[r * LLC_ATTN_TILE + i]) <= tol))
                                fail_msg("%s scores hd=%d n=%d rows=%d [%d][%d]: %.9g vs %.9g", attn_name(ops), hd, n, rows, r, i,
                                         s0[r * LLC_ATTN_TILE + i], s1[r * LLC_ATTN_TILE + i]);
                        }
                    /* accumulate: acc*c + Σ p v; tolerance (n + 2) u over the magnitudes */
                    float c[LLC_ATTN_MAX_ROWS], p[LLC_ATTN_MAX_ROWS * LLC_ATTN_TILE];
                    float *a0 = malloc((size_t)rows * hd * sizeof(float)), *a1 = malloc((size_t)rows * hd * sizeof(float));
                    for (int r = 0; r < rows; r++) {
                        c[r] = r == 0 ? 1.0f : r == 1 ? 0.0f : (frand() + 1) / 2;
                        for (int i = 0; i < n; i++) p[r * LLC_ATTN_TILE + i] = (frand() + 1) / 2;
                    }
                    for (int i = 0; i < rows * hd; i++) a0[i] = a1[i] = frand();
                    ref->accumulate(a0, rows, hd, c, p, rp, n);
                    ops->accumulate(a1, rows, hd, c, p, rp, n);
                    for (int r = 0; r < rows; r++)
                        for (int d = 0; d < hd; d++) {
                            double mag = fabs(a1[r * hd + d]) + 1;
                            for (int i = 0; i < n; i++) mag += p[r * LLC_ATTN_TILE + i] * fabs(rp[i][d]);
                            if (!(fabs(a0[r * hd + d] - a1[r * hd + d]) <= 6e-8 * (n + 2) * mag))
                                fail_msg("%s accumulate hd=%d n=%d rows=%d [%d][%d]: %.9g vs %.9g", attn_name(ops), hd, n, rows, r, d,
                                         a0[r * hd + d], a1[r * hd + d]);
                        }
                    free(a0);
                    free(a1);
                    free(q);
                    free(rowdata);
                }
        /* exp_sum: inputs <= 0 down past ln(FLT_MIN) = -87.3 (where expf goes subnormal and the vector
         * exp gives 0), and exactly 0 (the maximum). Per element: 4 ulp + an absolute 2e-38. */
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
            int n = ns[ni];
            float x0[LLC_ATTN_TILE], x1[LLC_ATTN_TILE];
            for (int i = 0; i < n; i++) x0[i] = x1[i] = i % 5 == 0 ? 1.5f : i % 7 == 1 ? -95.0f + 10 * frand() : 1.5f + 20 * frand();
            float m = 1.5f;
            float sum0 = ref->exp_sum(x0, n, m), sum1 = ops->exp_sum(x1, n, m);
            for (int i = 0; i < n; i++)
                if (!(fabs(x0[i] - x1[i]) <= 4.8e-7 * fabs(x0[i]) + 2e-38))
                    fail_msg("%s exp_sum n=%d [%d]: %.9g vs %.9g", attn_name(ops), n, i, x0[i], x1[i]);
            assert_true(fabs(sum0 - sum1) <= 1e-6 * sum0);
        }
        /* NaN in, NaN out (a broken model must not look fine) */
        float x[3] = {0, NAN, -1};
        ops->exp_sum(x, 3, 0);
        assert_true(isnan(x[1]));
    }
    if (!tested) printf("  (no SIMD instruction set on this CPU)\n");
}

/* The whole kernel: SIMD against scalar directly, same tolerance as (a). */
static void test_kernel_simd_vs_scalar(void **state) {
    (void)state;
    const llc_attn_ops *ref = &llc_kernels_twins.attn;
    for (int isa = 1; isa < LLC_ISA_COUNT; isa++) {
        const llc_attn_ops *ops = attn_for((enum llc_isa)isa);
        if (!ops) continue;
        static const int hds[] = {8, 40, 64, 128};
        static const int lens[] = {1, 63, 65, 300};
        for (size_t h = 0; h < 4; h++)
            for (size_t l = 0; l < 4; l++) {
                int hd = hds[h], n_pos = lens[l], group = 5;
                cache c = make_cache(n_pos, 1, hd, 0, n_pos);
                const void *kp, *vp;
                llc_kv_view view = view_of(&c, &kp, &vp);
                float *q = random_q(group, hd, 3.0f);
                float *a = malloc((size_t)group * hd * sizeof *a), *b = malloc((size_t)group * hd * sizeof *b);
                double *r = malloc((size_t)group * hd * sizeof *r), *mag = malloc((size_t)group * hd * sizeof *mag);
                llc_attn(ref, &view, 0, hd, q, group, n_pos, 1.0f / sqrtf((float)hd), a);
                llc_attn(ops, &view, 0, hd, q, group, n_pos, 1.0f / sqrtf((float)hd), b);
                reference(&c, 0, q, group, n_pos, r, mag);
                for (int i = 0; i < group * hd; i++)
                    if (!(fabs(a[i] - b[i]) <= TOL_A * mag[i]))
                        fail_msg("%s hd=%d n_pos=%d [%d]: scalar %.9g vs %.9g", attn_name(ops), hd, n_pos, i, a[i], b[i]);
                free(a);
                free(b);
                free(r);
                free(mag);
                free(q);
                free_cache(&c);
            }
    }
}

/* (e) ------------------------------------------------------------------------------------------------- */

/*
 * A cache of n_pos rows of n_kv heads of hd values stored as `type`: every row rounded by the type's
 * quantizer, and the f32 cache holding what it decodes to. Attention over the typed view (contiguous,
 * and paged in blocks of bs positions placed in reverse order) must equal attention over the f32 view
 * bit for bit when hd <= 128 (the same tiles and the same kernels on the same values); past that the
 * converted view's tiles are shorter, and the result is within (a)'s tolerance.
 */
static void check_typed(const llc_attn_ops *ops, enum llc_type type, int hd, int n_kv, int group, int n_pos, int bs) {
    cache c = make_cache(n_pos, n_kv, hd, 0, n_pos);
    size_t row = c.stride, rb = llc_row_size(type, (int64_t)row);
    assert_true(rb > 0);
    const llc_type_traits *tr = llc_type_get(type);
    unsigned char *kt = malloc((size_t)n_pos * rb), *vt = malloc((size_t)n_pos * rb);
    unsigned char *kpool = malloc((size_t)(n_pos + bs) * rb), *vpool = malloc((size_t)(n_pos + bs) * rb);
    assert_true(kt && vt && kpool && vpool);
    for (int p = 0; p < n_pos; p++) {
        tr->from_float(c.k + p * row, kt + p * rb, (int64_t)row);
        tr->from_float(c.v + p * row, vt + p * rb, (int64_t)row);
        tr->to_float(kt + p * rb, c.k + p * row, (int64_t)row);
        tr->to_float(vt + p * rb, c.v + p * row, (int64_t)row);
    }
    const void *kp0 = kt, *vp0 = vt;
    llc_kv_view typed = {&kp0, &vp0, INT_MAX, row, (size_t)hd, type};
    int n_blocks = (n_pos + bs - 1) / bs;
    const void **kb = malloc((size_t)n_blocks * sizeof *kb), **vb = malloc((size_t)n_blocks * sizeof *vb);
    for (int b = 0; b < n_blocks; b++) {
        size_t at = (size_t)(n_blocks - 1 - b) * bs * rb, len = (size_t)(b * bs + bs <= n_pos ? bs : n_pos - b * bs) * rb;
        memcpy(kpool + at, kt + (size_t)b * bs * rb, len);
        memcpy(vpool + at, vt + (size_t)b * bs * rb, len);
        kb[b] = kpool + at;
        vb[b] = vpool + at;
    }
    llc_kv_view paged = {kb, vb, bs, row, (size_t)hd, type};
    const void *kp, *vp;
    llc_kv_view flat = view_of(&c, &kp, &vp);
    float *q = random_q(group, hd, 3.0f);
    size_t pf = llc_attn_part_floats(group, hd);
    float *a = malloc(pf * sizeof *a), *b1 = malloc(pf * sizeof *b1), *b2 = malloc(pf * sizeof *b2);
    double *r = malloc((size_t)group * hd * sizeof *r), *mag = malloc((size_t)group * hd * sizeof *mag);
    float scale = 1.0f / sqrtf((float)hd);
    for (int g = 0; g < n_kv; g++) {
        llc_attn(ops, &flat, g, hd, q, group, n_pos, scale, a);
        llc_attn(ops, &typed, g, hd, q, group, n_pos, scale, b1);
        llc_attn(ops, &paged, g, hd, q, group, n_pos, scale, b2);
        if (type == LLC_Q8_0 && hd % 32 == 0) {
            /* q8_0 keys are scored with the integer dot: the queries are rounded to q8_0 too, so the
             * reference is the double one on the rounded queries; the paged view is the same arithmetic */
            float *qq = malloc((size_t)group * hd * sizeof *qq);
            unsigned char *qb = malloc(llc_row_size(LLC_Q8_0, (int64_t)group * hd));
            tr->from_float(q, qb, (int64_t)group * hd);
            tr->to_float(qb, qq, (int64_t)group * hd);
            reference(&c, g, qq, group, n_pos, r, mag);
            assert_memory_equal(b1, b2, (size_t)group * hd * sizeof *a);
            for (int i = 0; i < group * hd; i++)
                if (!(fabs(r[i] - b1[i]) <= TOL_A * mag[i]))
                    fail_msg("%s q8_0 keys hd=%d [%d]: reference %.9g vs %.9g", attn_name(ops), hd, i, r[i], b1[i]);
            free(qq);
            free(qb);
        } else if (hd <= 128) {
            assert_memory_equal(a, b1, (size_t)group * hd * sizeof *a);
            assert_memory_equal(a, b2, (size_t)group * hd * sizeof *a);
            int lo = n_pos / 3, hi = n_pos - n_pos / 4;
            llc_attn_partial(ops, &flat, g, hd, q, group, lo, hi, scale, a);
            llc_attn_partial(ops, &paged, g, hd, q, group, lo, hi, scale, b2);
            assert_memory_equal(a, b2, pf * sizeof *a);
        } else {
            reference(&c, g, q, group, n_pos, r, mag);
            assert_memory_equal(b1, b2, (size_t)group * hd * sizeof *a);
            for (int i = 0; i < group * hd; i++)
                if (!(fabs(a[i] - b1[i]) <= TOL_A * mag[i]))
                    fail_msg("%s %s hd=%d [%d]: %.9g vs %.9g", attn_name(ops), tr->name, hd, i, a[i], b1[i]);
        }
    }
    free(a);
    free(b1);
    free(b2);
    free(r);
    free(mag);
    free(q);
    free(kb);
    free(vb);
    free(kt);
    free(vt);
    free(kpool);
    free(vpool);
    free_cache(&c);
}

static void test_typed_views(void **state) {
    (void)state;
    const enum llc_type types[] = {LLC_F16, LLC_BF16, LLC_Q8_0};
    for (int isa = 0; isa < LLC_ISA_COUNT; isa++) {
        const llc_attn_ops *ops = attn_for((enum llc_isa)isa);
        if (!ops) continue;
        for (int t = 0; t < 3; t++) {
            check_typed(ops, types[t], 64, 2, 4, 300, 16);  /* Llama 3.2 1B's head size */
            check_typed(ops, types[t], 128, 1, 5, 130, 7);
            check_typed(ops, types[t], 8, 4, 2, 100, 16);   /* stories260K: 4 heads in one q8_0 block */
            check_typed(ops, types[t], 48, 2, 3, 70, 5);    /* heads of 48: every other one starts mid-block */
            check_typed(ops, types[t], 256, 1, 4, 200, 16); /* shorter converted tiles */
        }
        check_typed(ops, LLC_F16, 40, 1, 3, 65, 16);        /* rows of 40 (not for q8_0) */
    }
}

/* Every SIMD conversion against the scalar one, bit for bit, at every offset and length around the
 * vector and block widths; f16 specials (subnormals, infinities, -0) included. */
static void test_to_f32_simd_vs_scalar(void **state) {
    (void)state;
    enum { N = 320 };
    float x[N], want[N], got[N];
    unsigned char buf[N * 4];
    const enum llc_type types[] = {LLC_F32, LLC_F16, LLC_BF16, LLC_Q8_0};
    const llc_attn_ops *ref = &llc_kernels_twins.attn;
    for (int i = 0; i < N; i++) x[i] = frand() * (i % 5 == 0 ? 3e4f : i % 7 == 0 ? 1e-6f : 1.0f);
    x[3] = 1e5f, x[4] = -1e5f, x[6] = -0.0f, x[9] = 3e-8f;
    for (int isa = 1; isa < LLC_ISA_COUNT; isa++) {
        const llc_attn_ops *ops = attn_for((enum llc_isa)isa);
        if (!ops) continue;
        for (int t = 0; t < 4; t++) {
            llc_type_get(types[t])->from_float(x, buf, N);
            static const size_t skips[] = {0, 1, 7, 8, 16, 31, 32, 40, 64};
            static const int ns[] = {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100, 128, 250};
            for (size_t si = 0; si < sizeof skips / sizeof *skips; si++)
                for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
                    size_t skip = skips[si];
                    int n = ns[ni];
                    if (skip + (size_t)n > N) continue;
                    ref->to_f32(types[t], buf, skip, n, want);
                    ops->to_f32(types[t], buf, skip, n, got);
                    if (memcmp(want, got, (size_t)n * sizeof *got) != 0)
                        fail_msg("%s to_f32 %s skip=%zu n=%d differs from scalar", attn_name(ops), llc_type_name(types[t]), skip, n);
                }
            /* the scalar definition is the type's own decoder */
            float all[N];
            llc_type_get(types[t])->to_float(buf, all, N);
            ref->to_f32(types[t], buf, 0, N, want);
            assert_memory_equal(all, want, sizeof all);
        }
    }
}

/* (f) ------------------------------------------------------------------------------------------------- */

static uint16_t random_half_scale(void) { /* a q8_0 block scale: 2^-12 .. 2^-2, random mantissa */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint16_t)(((3 + rng % 11) << 10) | (rng >> 20 & 0x3ff));
}

static void random_q8(block_q8_0 *b, int n_blocks, bool extreme) {
    for (int i = 0; i < n_blocks; i++) {
        b[i].d = random_half_scale();
        for (int j = 0; j < 32; j++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            b[i].qs[j] = (int8_t)(extreme ? (rng & 1 ? 127 : -127) : (int)(rng % 255) - 127);
        }
    }
}

static double half(uint16_t h) { /* IEEE half, normal numbers */
    return ldexp(1.0 + (h & 0x3ff) / 1024.0, (h >> 10 & 0x1f) - 15) * (h & 0x8000 ? -1 : 1);
}

/* Every table's scores_q8_0 (the scalar twin included) against Σ_blocks dq dk Σ q k in double, at
 * head sizes of 1 to 8 blocks, tile lengths around the 4-position step and row counts to MAX_ROWS,
 * keys in any order; extreme blocks (every value ±127) too, where vpmaddubsw's pair sums peak. */
static void test_scores_q8_0(void **state) {
    (void)state;
    static const int hds[] = {32, 64, 96, 128, 256};
    static const int ns[] = {1, 2, 3, 4, 5, 7, 31, 33, 63, 64};
    for (int isa = -1; isa < LLC_ISA_COUNT; isa++) {
        const llc_attn_ops *ops = isa < 0 ? &llc_kernels_twins.attn : attn_for((enum llc_isa)isa);
        if (!ops) continue;
        for (size_t h = 0; h < sizeof hds / sizeof *hds; h++)
            for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
                for (int rows = 1; rows <= LLC_ATTN_MAX_ROWS; rows += rows < 3 ? 1 : 3) {
                    int hd = hds[h], n = ns[ni], nb = hd / 32;
                    bool extreme = (h + ni) % 4 == 0;
                    block_q8_0 *q = malloc((size_t)rows * nb * sizeof *q), *kd = malloc((size_t)n * nb * sizeof *kd);
                    random_q8(q, rows * nb, extreme);
                    random_q8(kd, n * nb, extreme);
                    const void *kp[LLC_ATTN_TILE];
                    for (int i = 0; i < n; i++) kp[i] = kd + (size_t)(n - 1 - i) * nb;
                    float s[LLC_ATTN_MAX_ROWS * LLC_ATTN_TILE];
                    ops->scores_q8_0(q, rows, hd, kp, n, 0.125f, s);
                    for (int r = 0; r < rows; r++)
                        for (int i = 0; i < n; i++) {
                            const block_q8_0 *kr = kp[i], *qr = q + (size_t)r * nb;
                            double want = 0, mag = 0;
                            for (int b = 0; b < nb; b++) {
                                long sumi = 0;
                                for (int j = 0; j < 32; j++) sumi += qr[b].qs[j] * kr[b].qs[j];
                                long sumabs = 0;
                                for (int j = 0; j < 32; j++) sumabs += labs((long)qr[b].qs[j] * kr[b].qs[j]);
                                want += half(qr[b].d) * half(kr[b].d) * (double)sumi * 0.125;
                                mag += fabs(half(qr[b].d) * half(kr[b].d) * 0.125) * (double)sumabs;
                            }
                            /* the vector kernels scale partial integer sums (up to 8 lanes a block) and add
                             * them in their order: (nb + 8 + 3) u of the terms' magnitudes */
                            double tol = 6e-8 * (nb + 11) * mag + 1e-30;
                            if (!(fabs(s[r * LLC_ATTN_TILE + i] - want) <= tol))
                                fail_msg("%s scores_q8_0 hd=%d n=%d rows=%d [%d][%d]: %.9g vs %.9g", attn_name(ops), hd, n, rows, r,
                                         i, s[r * LLC_ATTN_TILE + i], want);
                        }
                    free(q);
                    free(kd);
                }
    }
}

/* A typed view of c (rounded by the type on the way in: c is overwritten by what the view decodes to),
 * contiguous; *kt and *vt are the rows the view points at (free them). */
static llc_kv_view typed_view(cache *c, enum llc_type type, unsigned char **kt, unsigned char **vt, const void **kp,
                              const void **vp) {
    size_t rb = llc_row_size(type, (int64_t)c->stride);
    const llc_type_traits *tr = llc_type_get(type);
    *kt = malloc((size_t)c->n_pos * rb);
    *vt = malloc((size_t)c->n_pos * rb);
    for (int p = 0; p < c->n_pos; p++) {
        tr->from_float(c->k + p * c->stride, *kt + p * rb, (int64_t)c->stride);
        tr->from_float(c->v + p * c->stride, *vt + p * rb, (int64_t)c->stride);
        tr->to_float(*kt + p * rb, c->k + p * c->stride, (int64_t)c->stride);
        tr->to_float(*vt + p * rb, c->v + p * c->stride, (int64_t)c->stride);
    }
    *kp = *kt;
    *vp = *vt;
    llc_kv_view v = {kp, vp, INT_MAX, c->stride, (size_t)c->hd, type};
    return v;
}

/* The tokens of a prompt in one llc_attn_tokens call (tokens of different lengths, rows as in q and
 * the output, dim floats apart) equal one llc_attn per token bit for bit, and the reference in double
 * within (a)'s tolerance; for every table, f32, f16 and q8_0 (integer-dot keys) views, and groups of
 * 4 and 12 rows (two passes of the kernels per token). */
static void test_attn_tokens(void **state) {
    (void)state;
    const enum llc_type types[] = {LLC_F32, LLC_F16, LLC_Q8_0};
    for (int isa = 0; isa < LLC_ISA_COUNT; isa++) {
        const llc_attn_ops *ops = attn_for((enum llc_isa)isa);
        if (!ops) continue;
        for (int t = 0; t < 3; t++)
            for (int group = 4; group <= 12; group += 8) {
                enum { HD = 64, N_KV = 2, N_TOK = 37, N_POS = 150 };
                int dim = group * N_KV * HD, n_pos[N_TOK];
                cache c = make_cache(N_POS, N_KV, HD, 0, N_POS);
                unsigned char *kt = NULL, *vt = NULL;
                const void *kp, *vp;
                llc_kv_view view = types[t] == LLC_F32 ? view_of(&c, &kp, &vp) : typed_view(&c, types[t], &kt, &vt, &kp, &vp);
                float *q = random_q(N_TOK * N_KV * group, HD, 3.0f);
                float *a = malloc((size_t)N_TOK * dim * sizeof *a), *b = malloc((size_t)N_TOK * dim * sizeof *b);
                double *r = malloc((size_t)group * HD * sizeof *r), *mag = malloc((size_t)group * HD * sizeof *mag);
                for (int i = 0; i < N_TOK; i++) n_pos[i] = N_POS - N_TOK + 1 + i - (i % 5 == 0 ? 40 : 0);
                float scale = 1.0f / sqrtf((float)HD);
                for (int g = 0; g < N_KV; g++) {
                    size_t at = (size_t)g * group * HD;
                    llc_attn_tokens(ops, &view, g, HD, N_TOK, n_pos, q + at, (size_t)dim, group, scale, a + at);
                    for (int i = 0; i < N_TOK; i++) {
                        size_t ti = (size_t)i * dim + at;
                        llc_attn(ops, &view, g, HD, q + ti, group, n_pos[i], scale, b + ti);
                        if (memcmp(a + ti, b + ti, (size_t)group * HD * sizeof *a) != 0)
                            fail_msg("%s %s group %d token %d: tokens differ from one call per token", attn_name(ops),
                                     llc_type_name(types[t]), group, i);
                        if (types[t] != LLC_F32) continue;
                        reference(&c, g, q + ti, group, n_pos[i], r, mag);
                        for (int d = 0; d < group * HD; d++)
                            if (!(fabs(a[ti + d] - r[d]) <= TOL_A * mag[d])) fail_msg("%s token %d [%d]", attn_name(ops), i, d);
                    }
                }
                free(a);
                free(b);
                free(r);
                free(mag);
                free(q);
                free(kt);
                free(vt);
                free_cache(&c);
            }
    }
}

/* to_f32 calls, counted: a typed tile must be converted once per walk over the keys */
static long n_converted;
static void counting_to_f32(enum llc_type type, const void *src, size_t skip, int n, float *dst) {
    n_converted++;
    llc_kernels_twins.attn.to_f32(type, src, skip, n, dst);
}

/* Each position's K and V row converted once per call, whatever the query rows (GQA group of 12: two
 * kernel passes) and tokens (8 of a prompt: LLC_ATTN_MAX_UNITS passes) that share it; q8_0 keys
 * (integer dot) not at all. */
static void test_convert_once(void **state) {
    (void)state;
    llc_attn_ops ops = llc_kernels_twins.attn;
    ops.to_f32 = counting_to_f32;
    enum { HD = 64, GROUP = 12, N_TOK = LLC_ATTN_MAX_UNITS / 2, N_POS = 200 };
    cache c = make_cache(N_POS, 1, HD, 0, N_POS);
    unsigned char *kt, *vt;
    const void *kp, *vp;
    int n_pos[N_TOK];
    for (int i = 0; i < N_TOK; i++) n_pos[i] = N_POS - N_TOK + 1 + i;
    float *q = random_q(N_TOK * GROUP, HD, 1.0f), *out = malloc((size_t)N_TOK * GROUP * HD * sizeof *out);
    float *part = malloc(llc_attn_part_floats(GROUP, HD) * sizeof *part);
    const enum llc_type types[] = {LLC_F16, LLC_BF16, LLC_Q8_0};
    for (int t = 0; t < 3; t++) {
        llc_kv_view view = typed_view(&c, types[t], &kt, &vt, &kp, &vp);
        long per_pos = types[t] == LLC_Q8_0 ? 1 : 2; /* V (and K unless scored as q8_0) */
        n_converted = 0;
        llc_attn_partial(&ops, &view, 0, HD, q, GROUP, 30, 170, 0.125f, part);
        if (n_converted != per_pos * 140)
            fail_msg("%s partial, group of %d: %ld conversions for 140 positions", llc_type_name(types[t]), GROUP, n_converted);
        n_converted = 0;
        llc_attn_tokens(&ops, &view, 0, HD, N_TOK, n_pos, q, (size_t)GROUP * HD, GROUP, 0.125f, out);
        if (n_converted != per_pos * N_POS)
            fail_msg("%s %d tokens: %ld conversions for %d positions", llc_type_name(types[t]), N_TOK, n_converted, N_POS);
        free(kt);
        free(vt);
    }
    free(q);
    free(out);
    free(part);
    free_cache(&c);
}

/* Through the model -------------------------------------------------------------------------------------- */

static char model_path[2048];

static llamac_session *session(const llamac_model *m, int n_threads, llamac_kv_type kv_type) {
    llamac_error err = {{0}};
    llamac_session_params sp = {.n_ctx = 512, .n_threads = n_threads, .kv_type = kv_type};
    llamac_session *s = llamac_session_create(m, &sp, &err);
    if (!s) fail_msg("%s", err.message);
    return s;
}

/* A 300-token prompt then decoding to position 400: past SPLIT_MIN (256), so decode steps take the
 * split path. Logits must be bit-identical for any thread count (with an f32 cache, and with f16 and
 * q8_0 ones), and decoding must match the same tokens evaluated as one batch (unsplit) within
 * rounding. */
static void test_model_threads(void **state) {
    (void)state;
    llamac_error err = {{0}};
    llamac_model *m = llamac_model_load(model_path, NULL, &err);
    if (!m) fail_msg("%s", err.message);
    int nv = llamac_tokenizer_n_vocab(llamac_model_tokenizer(m));
    enum { P = 300, N = 100 };
    int32_t ids[P + N];
    for (int i = 0; i < P + N; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        ids[i] = (int32_t)(rng % (uint64_t)nv);
    }
    float *first = malloc((size_t)N * nv * sizeof *first);
    const llamac_kv_type kv_types[] = {LLAMAC_KV_Q8_0, LLAMAC_KV_F16, LLAMAC_KV_F32}; /* f32 last: `first` is kept */
    for (int ki = 0; ki < 3; ki++) {
        for (int nt = 1; nt <= 3; nt++) {
            llamac_session *s = session(m, nt, kv_types[ki]);
            assert_non_null(llamac_session_eval(s, ids, P, &err));
            for (int i = 0; i < N; i++) {
                const float *l = llamac_session_eval(s, ids + P + i, 1, &err);
                assert_non_null(l);
                if (nt == 1) memcpy(first + (size_t)i * nv, l, (size_t)nv * sizeof *l);
                else if (memcmp(first + (size_t)i * nv, l, (size_t)nv * sizeof *l) != 0)
                    fail_msg("%s KV, threads=%d: decode step %d logits differ from one thread's",
                             llamac_kv_type_name(kv_types[ki]), nt, i);
            }
            llamac_session_free(s);
        }
    }
    /* the same 400 tokens as one batch (256 + 144: the second chunk's items are many, unsplit) */
    llamac_session *s = session(m, 2, LLAMAC_KV_F32);
    float *all = malloc((size_t)(P + N) * nv * sizeof *all);
    assert_int_equal(llamac_session_eval_all(s, ids, P + N, all, &err), 0);
    double worst = 0;
    for (int i = 0; i < N; i++)
        for (int v = 0; v < nv; v++) {
            double d = fabs((double)all[(size_t)(P + i) * nv + v] - first[(size_t)i * nv + v]);
            worst = d > worst ? d : worst;
        }
    printf("  batch vs split decode: worst logit difference %.3g\n", worst);
    assert_true(worst < 1e-3);
    free(all);
    free(first);
    llamac_session_free(s);
    llamac_model_free(m);
}

int main(void) {
    const char *shared = getenv("LLAMAC_SHARED");
    snprintf(model_path, sizeof model_path, "%s/models/stories260K/stories260K.gguf", shared ? shared : "../shared");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_reference), cmocka_unit_test(test_causal_prefixes),
        cmocka_unit_test(test_split_kv),          cmocka_unit_test(test_paged_view),
        cmocka_unit_test(test_simd_vs_scalar),    cmocka_unit_test(test_kernel_simd_vs_scalar),
        cmocka_unit_test(test_typed_views),       cmocka_unit_test(test_to_f32_simd_vs_scalar),
        cmocka_unit_test(test_scores_q8_0),       cmocka_unit_test(test_attn_tokens),
        cmocka_unit_test(test_convert_once),      cmocka_unit_test(test_model_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
