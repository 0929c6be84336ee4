/* The 16-row packed kernels (kernels/packed.h): the scalar twin against a double-precision product of
 * the original (unpacked) rows' dequantized values, every SIMD table's kernel (AVX2, AVX-512) against
 * the twin bit for bit, on random data and on the extreme quants where int16 intermediates would
 * saturate, and llc_matmul over a packed matrix against the unpacked path, at awkward sizes and token
 * counts. */
#include <math.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/threadpool.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/packed.h"
#include "kernels/types.h"

static uint64_t rng = 99;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

typedef struct fixture {
    uint32_t type;
    int64_t rows, cols;
    int n_tok;
    void *w, *packed, *act;
    float *wd, *xd; /* dequantized weights and activations */
    size_t act_rb;
} fixture;

static void fill_random(fixture *f, uint32_t type, int64_t rows, int64_t cols, int n_tok) {
    f->type = type;
    f->rows = rows;
    f->cols = cols;
    f->n_tok = n_tok;
    size_t rb = llc_row_size(type, cols);
    f->w = malloc((size_t)rows * rb);
    float *row = malloc((size_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        /* magnitudes vary by row and block, so every scale differs */
        for (int64_t i = 0; i < cols; i++) row[i] = frand() * (0.5f + (float)((r + i / 32) % 7));
        llc_type_get(type)->from_float(row, (char *)f->w + (size_t)r * rb, cols);
    }
    f->act_rb = llc_act_row_bytes(type, cols);
    f->act = malloc((size_t)n_tok * f->act_rb);
    float *x = malloc((size_t)(n_tok * cols) * sizeof(float));
    for (int64_t i = 0; i < n_tok * cols; i++) x[i] = frand() * (0.1f + (float)(i / 32 % 3));
    llc_act_convert(type, x, f->act, cols, n_tok);
    free(row);
    free(x);
}

/* The dequantized weights and activations and the packed matrix, from f->w and f->act. */
static void derive(fixture *f) {
    size_t rb = llc_row_size(f->type, f->cols);
    f->wd = malloc((size_t)(f->rows * f->cols) * sizeof(float));
    for (int64_t r = 0; r < f->rows; r++)
        llc_type_get(f->type)->to_float((char *)f->w + (size_t)r * rb, f->wd + (size_t)r * f->cols, f->cols);
    f->xd = malloc((size_t)(f->n_tok * f->cols) * sizeof(float));
    for (int t = 0; t < f->n_tok; t++)
        llc_type_get(llc_act_type(f->type))->to_float((char *)f->act + (size_t)t * f->act_rb, f->xd + (size_t)t * f->cols, f->cols);
    llc_tensor W = {f->w, f->type, f->cols, f->rows, rb, NULL};
    f->packed = aligned_alloc(64, llc_tensor_packed_bytes(&W));
    llc_tensor_pack(&W, f->packed, 0, f->rows / LLC_PACK_ROWS);
}

static void make(fixture *f, uint32_t type, int64_t rows, int64_t cols, int n_tok) {
    fill_random(f, type, rows, cols, n_tok);
    derive(f);
}

static void release(fixture *f) {
    free(f->w);
    free(f->wd);
    free(f->act);
    free(f->xd);
    free(f->packed);
}

/* |error| allowed for one output: f32 rounding of a sum of n products, relative to sum |w x|. */
static double tolerance(const fixture *f, int64_t r, int t) {
    double mag = 0;
    for (int64_t i = 0; i < f->cols; i++) mag += fabs((double)f->wd[r * f->cols + i] * f->xd[(int64_t)t * f->cols + i]);
    return 1e-6 * mag * (1 + log2((double)f->cols)) + 1e-30;
}

static double exact(const fixture *f, int64_t r, int t) {
    double s = 0;
    for (int64_t i = 0; i < f->cols; i++) s += (double)f->wd[r * f->cols + i] * f->xd[(int64_t)t * f->cols + i];
    return s;
}

/* Every group of f, for 1..LLC_PACK_TOKENS tokens: the scalar twin against the double-precision
 * product, every table's kernel against the twin. */
static void check_fixture(const fixture *f) {
    size_t gb = llc_packed_group_bytes(f->type, f->cols);
    for (int nt = 1; nt <= f->n_tok; nt++)
        for (int g = 0; g < f->rows / LLC_PACK_ROWS; g++) {
            float want[LLC_PACK_TOKENS * LLC_PACK_ROWS], got[LLC_PACK_TOKENS * LLC_PACK_ROWS];
            const char *grp = (const char *)f->packed + (size_t)g * gb;
            llc_kernels_twins.packed[f->type](f->cols, grp, f->act, f->act_rb, nt, want, LLC_PACK_ROWS);
            for (int t = 0; t < nt; t++)
                for (int r = 0; r < LLC_PACK_ROWS; r++) {
                    int64_t row = (int64_t)g * LLC_PACK_ROWS + r;
                    double e = exact(f, row, t), tol = tolerance(f, row, t);
                    if (fabs(e - want[t * LLC_PACK_ROWS + r]) > tol)
                        fail_msg("%s cols=%ld row %ld token %d: scalar %.9g vs exact %.9g", llc_type_name(f->type),
                                 (long)f->cols, (long)row, t, want[t * LLC_PACK_ROWS + r], e);
                }
            /* every table's kernel against its scalar twin */
            for (int isa = 1; isa < LLC_ISA_COUNT; isa++) {
                const llc_kernels *k = llc_kernels_for((enum llc_isa)isa);
                if (!k || !k->packed[f->type]) continue;
                k->packed[f->type](f->cols, grp, f->act, f->act_rb, nt, got, LLC_PACK_ROWS);
                /* integer types: same integer sums, same float operations in the same order:
                 * identical bits. BF16: exact products, additions in another order: f32 rounding. */
                for (int t = 0; t < nt; t++)
                    for (int r = 0; r < LLC_PACK_ROWS; r++) {
                        float a = want[t * LLC_PACK_ROWS + r], b = got[t * LLC_PACK_ROWS + r];
                        double tol = f->type == LLC_BF16 ? tolerance(f, (int64_t)g * LLC_PACK_ROWS + r, t) : 0;
                        if (fabs((double)a - b) > tol)
                            fail_msg("%s cols=%ld tokens=%d row %d token %d: %s %.9g, its scalar twin %.9g",
                                     llc_type_name(f->type), (long)f->cols, nt, g * LLC_PACK_ROWS + r, t, k->name, b, a);
                    }
            }
        }
}

static void test_kernels_against_definition(void **state) {
    (void)state;
    static const uint32_t types[] = {LLC_Q4_0, LLC_Q8_0, LLC_BF16, LLC_Q4_K, LLC_Q6_K};
    static const int64_t cols[] = {32, 96, 224, 2080}, cols_k[] = {256, 768, 2304, 2560};
    for (int ti = 0; ti < 5; ti++)
        for (size_t ci = 0; ci < sizeof cols / sizeof cols[0]; ci++) {
            fixture f;
            bool k_quant = types[ti] == LLC_Q4_K || types[ti] == LLC_Q6_K;
            make(&f, types[ti], 2 * LLC_PACK_ROWS, k_quant ? cols_k[ci] : cols[ci], LLC_PACK_TOKENS);
            check_fixture(&f);
            release(&f);
        }
}

/* The quants at their extremes, where a product summed in int16 saturates unless the kernel keeps
 * within the bounds (packed_avx2.c): Q8_0 weights 127 and -128 (stored as 255 and 0, whose naive
 * vpmaddubsw with activation 127 reaches 64770), nibbles 15 and 0, 6-bit values 63 and 0, against
 * activations all 127, all -127 (Q8_0's quantizer never makes -128; Q8_K rows get -128 too),
 * alternating, and random; unit fp16 scales so the sums stay exact integers. Rows by pattern r % 4:
 * every byte max, every byte min, alternating, random; tokens likewise. */
static uint8_t pattern_byte(int kind, size_t i, uint8_t max, uint8_t min) {
    uint8_t rnd = (uint8_t)(frand() * 128 + 128);
    return kind == 0 ? max : kind == 1 ? min : kind == 2 ? (i % 2 ? max : min) : rnd;
}

static void fill_extreme(fixture *f, uint32_t type, int64_t cols) {
    const uint16_t one = 0x3c00; /* fp16 1.0 */
    *f = (fixture){.type = type, .rows = 2 * LLC_PACK_ROWS, .cols = cols, .n_tok = LLC_PACK_TOKENS};
    size_t rb = llc_row_size(type, cols);
    f->w = calloc((size_t)f->rows, rb);
    for (int64_t r = 0; r < f->rows; r++) {
        char *row = (char *)f->w + (size_t)r * rb;
        int kind = (int)(r % 4);
        if (type == LLC_Q8_0 || type == LLC_Q4_0) {
            for (int64_t b = 0; b < cols / 32; b++) {
                if (type == LLC_Q8_0) {
                    block_q8_0 *blk = (block_q8_0 *)row + b;
                    blk->d = one;
                    for (size_t i = 0; i < 32; i++) blk->qs[i] = (int8_t)pattern_byte(kind, i, 127, 0x80);
                } else {
                    block_q4_0 *blk = (block_q4_0 *)row + b;
                    blk->d = one;
                    for (size_t i = 0; i < 16; i++) blk->qs[i] = pattern_byte(kind, i, 0xff, 0x00);
                }
            }
        } else if (type == LLC_Q4_K) {
            for (int64_t b = 0; b < cols / QK_K; b++) {
                block_q4_K *blk = (block_q4_K *)row + b;
                blk->d = blk->dmin = one;
                for (size_t i = 0; i < 12; i++) blk->scales[i] = kind == 3 ? pattern_byte(3, i, 0, 0) : 0xff; /* scales and mins 63 */
                for (size_t i = 0; i < QK_K / 2; i++) blk->qs[i] = pattern_byte(kind, i, 0xff, 0x00);
            }
        } else {
            for (int64_t b = 0; b < cols / QK_K; b++) {
                block_q6_K *blk = (block_q6_K *)row + b;
                blk->d = one;
                for (size_t i = 0; i < QK_K / 2; i++) blk->ql[i] = pattern_byte(kind, i, 0xff, 0x00);
                for (size_t i = 0; i < QK_K / 4; i++) blk->qh[i] = pattern_byte(kind, i, 0xff, 0x00);
                for (size_t i = 0; i < QK_K / 16; i++) blk->scales[i] = (int8_t)pattern_byte(kind, i, 127, 0x80);
            }
        }
    }
    f->act_rb = llc_act_row_bytes(type, cols);
    f->act = calloc((size_t)f->n_tok, f->act_rb);
    for (int t = 0; t < f->n_tok; t++) {
        char *row = (char *)f->act + (size_t)t * f->act_rb;
        int kind = t % 4;
        if (llc_act_type(type) == LLC_Q8_0) {
            int64_t nb = cols / 32;
            for (int64_t b = 0; b < nb; b++) {
                block_q8_0 *blk = (block_q8_0 *)row + b;
                int32_t sum = 0;
                float scale = 1.0f;
                blk->d = one;
                for (size_t i = 0; i < 32; i++) {
                    int8_t v = (int8_t)pattern_byte(kind, i, 127, 0x81);
                    blk->qs[i] = v == -128 ? -127 : v;
                    sum += blk->qs[i];
                }
                memcpy((char *)llc_q8_act_scales(row, nb) + 4 * b, &scale, 4);
                memcpy((char *)llc_q8_act_sums(row, nb) + 4 * b, &sum, 4);
            }
        } else {
            for (int64_t b = 0; b < cols / QK_K; b++) {
                block_q8_K *blk = (block_q8_K *)row + b;
                blk->d = 1.0f;
                for (size_t i = 0; i < QK_K; i++) blk->qs[i] = (int8_t)pattern_byte(kind, i, 127, 0x80);
                for (int j = 0; j < QK_K / 16; j++) {
                    int s = 0;
                    for (int i = 0; i < 16; i++) s += blk->qs[16 * j + i];
                    blk->bsums[j] = (int16_t)s;
                }
            }
        }
    }
}

static void test_kernels_extremes(void **state) {
    (void)state;
    static const uint32_t types[] = {LLC_Q4_0, LLC_Q8_0, LLC_Q4_K, LLC_Q6_K};
    static const int64_t cols[] = {32, 160, 512}, cols_k[] = {256, 768, 1280};
    for (int ti = 0; ti < 4; ti++)
        for (size_t ci = 0; ci < 3; ci++) {
            fixture f;
            bool k_quant = types[ti] == LLC_Q4_K || types[ti] == LLC_Q6_K;
            fill_extreme(&f, types[ti], k_quant ? cols_k[ci] : cols[ci]);
            derive(&f);
            check_fixture(&f);
            release(&f);
        }
}

/* llc_matmul over a packed matrix (when this machine packs the type) equals the unpacked path within
 * f32 rounding, for token counts that leave partial tiles, with several threads. */
static void test_matmul_packed_vs_unpacked(void **state) {
    (void)state;
    static const uint32_t types[] = {LLC_Q4_0, LLC_Q8_0, LLC_BF16, LLC_Q4_K, LLC_Q6_K};
    static const int toks[] = {1, 3, 8, 9, 21};
    llc_pool *pool = llc_pool_create(3);
    assert_non_null(pool);
    for (int ti = 0; ti < 5; ti++) {
        if (!llc_kernels_get()->packed[types[ti]]) continue;
        for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) {
            fixture f;
            make(&f, types[ti], 5 * LLC_PACK_ROWS, types[ti] == LLC_Q4_K || types[ti] == LLC_Q6_K ? 512 : 160, toks[k]);
            llc_tensor W = {f.w, f.type, f.cols, f.rows, llc_row_size(f.type, f.cols), NULL};
            assert_true(llc_tensor_packable(&W));
            float *a = malloc((size_t)(f.rows * f.n_tok) * sizeof(float)), *b = malloc((size_t)(f.rows * f.n_tok) * sizeof(float));
            llc_matmul(pool, a, &W, f.act, f.n_tok, NULL, 1);
            W.packed = f.packed;
            llc_matmul(pool, b, &W, f.act, f.n_tok, NULL, 1);
            for (int t = 0; t < f.n_tok; t++)
                for (int64_t r = 0; r < f.rows; r++) {
                    float x = a[t * f.rows + r], y = b[t * f.rows + r];
                    if (fabs((double)x - y) > 2 * tolerance(&f, r, t))
                        fail_msg("%s tokens=%d row %ld token %d: unpacked %.9g packed %.9g", llc_type_name(f.type), f.n_tok, (long)r, t, x, y);
                }
            free(a);
            free(b);
            release(&f);
        }
    }
    llc_pool_free(pool);
}

/* The vector activation converter against the scalar one, byte for byte, including rounding ties,
 * NaN, infinities, all-zero blocks and values that round past 127. */
static void test_act_convert(void **state) {
    (void)state;
    const int64_t n = 32 * 40;
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) {
        int64_t b = i / 32;
        x[i] = frand() * (float)(1 + b % 9) * (b % 5 == 0 ? 1e-3f : 1.0f);
        if (b == 1) x[i] = (float)(i % 32) - 15.5f;        /* halves, scaled off the ties (block 8 keeps them) */
        if (b == 2) x[i] = 0;
        if (b == 3 && i % 32 == 7) x[i] = NAN;
        if (b == 4 && i % 32 == 9) x[i] = INFINITY;
        if (b == 5 && i % 32 == 3) x[i] = -INFINITY;
        if (b == 6) x[i] = 1e-40f * (float)(i % 7);        /* subnormal scales */
        if (b == 7) x[i] = 6e4f * frand();                  /* scales past fp16's range */
        if (b == 8) x[i] = i % 32 == 0 ? 127.0f : (float)(i % 32) - 15.5f; /* scale 1: exact ties, ±0.5 .. ±15.5 */
    }
    size_t rb = llc_act_row_bytes(LLC_Q8_0, n);
    char *a = calloc(1, rb), *b = calloc(1, rb);
    float *w = malloc((size_t)n * sizeof *w), *normed = malloc((size_t)n * sizeof *normed);
    for (int64_t i = 0; i < n; i++) w[i] = 0.5f + frand();
    for (int fused = 0; fused < 2; fused++) {
        float scale = fused ? 0.37f : 1.0f;
        llc_kernels_twins.act_q8_0(x, a, n, scale, fused ? w : NULL);
        for (int isa = 1; isa < LLC_ISA_COUNT; isa++) {
            const llc_kernels *k = llc_kernels_for((enum llc_isa)isa);
            if (!k) continue;
            memset(b, 0, rb);
            k->act_q8_0(x, b, n, scale, fused ? w : NULL);
            for (size_t i = 0; i < rb; i++)
                if (a[i] != b[i]) fail_msg("fused=%d byte %zu of the converted row: scalar %d, %s %d", fused, i, a[i], k->name, b[i]);
        }
    }
    /* fused RMSNorm: the same bytes as normalizing first (llc_rmsnorm) and converting the result */
    llc_rmsnorm(normed, x + 32 * 8, w, (int)(n - 32 * 8), 1e-5f);
    llc_kernels_twins.act_q8_0(normed, a, n - 32 * 8, 1.0f, NULL);
    llc_kernels_twins.act_q8_0(x + 32 * 8, b, n - 32 * 8, llc_rmsnorm_scale(x + 32 * 8, (int)(n - 32 * 8), 1e-5f), w);
    assert_memory_equal(a, b, llc_act_row_bytes(LLC_Q8_0, n - 32 * 8));
    free(w);
    free(normed);
    free(x);
    free(a);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_against_definition),
        cmocka_unit_test(test_kernels_extremes),
        cmocka_unit_test(test_matmul_packed_vs_unpacked),
        cmocka_unit_test(test_act_convert),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
