/* The 16-row packed kernels (kernels/packed.h): the scalar twin against a double-precision product of
 * the original (unpacked) rows' dequantized values, the AVX-512 kernel against the twin bit for bit,
 * and llc_matmul over a packed matrix against the unpacked path, at awkward sizes and token counts. */
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

static void make(fixture *f, uint32_t type, int64_t rows, int64_t cols, int n_tok) {
    f->type = type;
    f->rows = rows;
    f->cols = cols;
    f->n_tok = n_tok;
    size_t rb = llc_row_size(type, cols);
    f->w = malloc((size_t)rows * rb);
    f->wd = malloc((size_t)(rows * cols) * sizeof(float));
    float *row = malloc((size_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        /* magnitudes vary by row and block, so every scale differs */
        for (int64_t i = 0; i < cols; i++) row[i] = frand() * (0.5f + (float)((r + i / 32) % 7));
        llc_type_get(type)->from_float(row, (char *)f->w + (size_t)r * rb, cols);
        llc_type_get(type)->to_float((char *)f->w + (size_t)r * rb, f->wd + (size_t)r * cols, cols);
    }
    f->act_rb = llc_act_row_bytes(type, cols);
    f->act = malloc((size_t)n_tok * f->act_rb);
    f->xd = malloc((size_t)(n_tok * cols) * sizeof(float));
    float *x = malloc((size_t)(n_tok * cols) * sizeof(float));
    for (int64_t i = 0; i < n_tok * cols; i++) x[i] = frand() * (0.1f + (float)(i / 32 % 3));
    llc_act_convert(type, x, f->act, cols, n_tok);
    for (int t = 0; t < n_tok; t++)
        llc_type_get(llc_act_type(type))->to_float((char *)f->act + (size_t)t * f->act_rb, f->xd + (size_t)t * cols, cols);
    llc_tensor W = {f->w, type, cols, rows, rb, NULL};
    f->packed = aligned_alloc(64, llc_tensor_packed_bytes(&W));
    llc_tensor_pack(&W, f->packed, 0, rows / LLC_PACK_ROWS);
    free(row);
    free(x);
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

static void test_kernels_against_definition(void **state) {
    (void)state;
    static const uint32_t types[] = {LLC_Q4_0, LLC_Q8_0, LLC_BF16, LLC_Q4_K, LLC_Q6_K};
    static const int64_t cols[] = {32, 96, 224, 2080}, cols_k[] = {256, 768, 2304, 2560};
    for (int ti = 0; ti < 5; ti++)
        for (size_t ci = 0; ci < sizeof cols / sizeof cols[0]; ci++) {
            fixture f;
            bool k_quant = types[ti] == LLC_Q4_K || types[ti] == LLC_Q6_K;
            make(&f, types[ti], 2 * LLC_PACK_ROWS, k_quant ? cols_k[ci] : cols[ci], LLC_PACK_TOKENS);
            size_t gb = llc_packed_group_bytes(f.type, f.cols);
            for (int nt = 1; nt <= LLC_PACK_TOKENS; nt++)
                for (int g = 0; g < 2; g++) {
                    float want[LLC_PACK_TOKENS * LLC_PACK_ROWS], got[LLC_PACK_TOKENS * LLC_PACK_ROWS];
                    const char *grp = (const char *)f.packed + (size_t)g * gb;
                    llc_kernels_twins.packed[f.type](f.cols, grp, f.act, f.act_rb, nt, want, LLC_PACK_ROWS);
                    for (int t = 0; t < nt; t++)
                        for (int r = 0; r < LLC_PACK_ROWS; r++) {
                            int64_t row = (int64_t)g * LLC_PACK_ROWS + r;
                            double e = exact(&f, row, t), tol = tolerance(&f, row, t);
                            if (fabs(e - want[t * LLC_PACK_ROWS + r]) > tol)
                                fail_msg("%s cols=%ld row %ld token %d: scalar %.9g vs exact %.9g", llc_type_name(f.type),
                                         (long)f.cols, (long)row, t, want[t * LLC_PACK_ROWS + r], e);
                        }
                    /* every table's kernel against its scalar twin */
                    for (int isa = 1; isa < LLC_ISA_COUNT; isa++) {
                        const llc_kernels *k = llc_kernels_for((enum llc_isa)isa);
                        if (!k || !k->packed[f.type]) continue;
                        k->packed[f.type](f.cols, grp, f.act, f.act_rb, nt, got, LLC_PACK_ROWS);
                        /* Q8_0/Q4_0: same integer sums, same float operations in the same order:
                         * identical bits. BF16: exact products, additions in another order: f32 rounding. */
                        for (int t = 0; t < nt; t++)
                            for (int r = 0; r < LLC_PACK_ROWS; r++) {
                                float a = want[t * LLC_PACK_ROWS + r], b = got[t * LLC_PACK_ROWS + r];
                                double tol = f.type == LLC_BF16 ? tolerance(&f, (int64_t)g * LLC_PACK_ROWS + r, t) : 0;
                                if (fabs((double)a - b) > tol)
                                    fail_msg("%s cols=%ld tokens=%d: %s %.9g, its scalar twin %.9g", llc_type_name(f.type),
                                             (long)f.cols, nt, k->name, b, a);
                            }
                    }
                }
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
        if (b == 1) x[i] = (float)(i % 32) - 15.5f;        /* halves: ties after scaling */
        if (b == 2) x[i] = 0;
        if (b == 3 && i % 32 == 7) x[i] = NAN;
        if (b == 4 && i % 32 == 9) x[i] = INFINITY;
        if (b == 5 && i % 32 == 3) x[i] = -INFINITY;
        if (b == 6) x[i] = 1e-40f * (float)(i % 7);        /* subnormal scales */
        if (b == 7) x[i] = 6e4f * frand();                  /* scales past fp16's range */
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
        cmocka_unit_test(test_matmul_packed_vs_unpacked),
        cmocka_unit_test(test_act_convert),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
