/* Every SIMD kernel against its scalar twin on random data, at sizes that are not multiples of the
 * vector width; and the quantizers against hand-computed blocks from llama.cpp's definitions. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/fp16.h"
#include "kernels/dispatch.h"
#include "kernels/matmul.h"
#include "kernels/types.h"

static uint64_t rng = 12345;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

static void check_type(const llc_kernels *k, uint32_t type, int64_t n) {
    const llc_kernels *ref = llc_kernels_for(LLC_ISA_SCALAR);
    float *w = malloc((size_t)n * sizeof *w), *x = malloc((size_t)n * sizeof *x);
    /* varied magnitudes across blocks, so scales differ */
    for (int64_t i = 0; i < n; i++) {
        w[i] = frand() * (1.0f + (float)(i / 32 % 5));
        x[i] = frand() * (0.1f + (float)(i / 32 % 3));
    }
    void *wq = malloc(llc_row_size(type, n) + 64), *xq = malloc(llc_act_row_bytes(type, n) + 64);
    llc_type_get(type)->from_float(w, wq, n);
    llc_act_convert(type, x, xq, n, 1);
    float want = ref->vec_dot[type](n, wq, xq), got = k->vec_dot[type](n, wq, xq);
    /* Only the order of f32 additions differs: bound by n * eps * sum |w_i x_i|. */
    double mag = 0;
    float *wd = malloc((size_t)n * sizeof *wd), *xd = malloc((size_t)n * sizeof *xd);
    llc_type_get(type)->to_float(wq, wd, n);
    llc_type_get(llc_act_type(type))->to_float(xq, xd, n);
    for (int64_t i = 0; i < n; i++) mag += fabs((double)wd[i] * xd[i]);
    double tol = 1e-6 * mag * (1 + log2((double)n)) + 1e-30;
    if (fabs((double)want - got) > tol)
        fail_msg("%s %s n=%ld: scalar %.9g vs %.9g (tol %.3g)", k->name, llc_type_name(type), (long)n, want, got, tol);
    /* and the scalar kernel itself against a double-precision sum of the dequantized values */
    double exact = 0;
    for (int64_t i = 0; i < n; i++) exact += (double)wd[i] * xd[i];
    if (fabs(exact - want) > tol) fail_msg("scalar %s n=%ld: %.9g vs exact %.9g", llc_type_name(type), (long)n, want, exact);
    free(w);
    free(x);
    free(wq);
    free(xq);
    free(wd);
    free(xd);
}

static void test_simd_vs_scalar(void **state) {
    (void)state;
    static const int64_t float_sizes[] = {1, 3, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 129, 1000, 4099};
    static const int64_t block_sizes[] = {32, 64, 96, 160, 288, 1056, 4128};
    static const uint32_t float_types[] = {LLC_F32, LLC_F16, LLC_BF16};
    static const uint32_t block_types[] = {LLC_Q8_0, LLC_Q4_0};
    int tested = 0;
    for (int isa = 0; isa < LLC_ISA_COUNT; isa++) {
        const llc_kernels *k = llc_kernels_for((enum llc_isa)isa);
        if (!k) {
            printf("  (%s not available on this CPU: skipped)\n", llc_isa_name((enum llc_isa)isa));
            continue;
        }
        for (size_t t = 0; t < 3; t++)
            for (size_t s = 0; s < sizeof float_sizes / sizeof float_sizes[0]; s++) check_type(k, float_types[t], float_sizes[s]);
        for (size_t t = 0; t < 2; t++)
            for (size_t s = 0; s < sizeof block_sizes / sizeof block_sizes[0]; s++) check_type(k, block_types[t], block_sizes[s]);
        tested++;
    }
    assert_true(tested >= 1);
}

/* Every tile kernel against sixteen scalar dot products, for both block types and several lengths. */
static void test_gemm4_vs_scalar(void **state) {
    (void)state;
    static const uint32_t types[] = {LLC_Q8_0, LLC_Q4_0, LLC_BF16};
    static const int64_t block_sizes[] = {32, 64, 160, 1056, 4128}, float_sizes[] = {1, 17, 31, 33, 100, 1000, 4099};
    const llc_kernels *ref = llc_kernels_for(LLC_ISA_SCALAR);
    int tested = 0;
    for (int isa = 0; isa < LLC_ISA_COUNT; isa++) {
        const llc_kernels *k = llc_kernels_for((enum llc_isa)isa);
        for (size_t ti = 0; k && ti < 3; ti++) {
            uint32_t type = types[ti];
            if (!k->gemm4[type]) continue;
            const int64_t *sizes = type == LLC_BF16 ? float_sizes : block_sizes;
            size_t n_sizes = type == LLC_BF16 ? sizeof float_sizes / sizeof float_sizes[0] : sizeof block_sizes / sizeof block_sizes[0];
            for (size_t si = 0; si < n_sizes; si++) {
                int64_t n = sizes[si];
                size_t ws = llc_row_size(type, n) + 18 * (ti + 1), xs = llc_act_row_bytes(type, n) + 34; /* odd strides */
                char *w = calloc(4, ws), *x = calloc(4, xs);
                float *row = malloc((size_t)n * sizeof *row), out[4 * 7];
                for (int r = 0; r < 4; r++) {
                    for (int64_t i = 0; i < n; i++) row[i] = frand() * (1.0f + (float)((i / 32 + r) % 4));
                    llc_type_get(type)->from_float(row, w + r * ws, n);
                    for (int64_t i = 0; i < n; i++) row[i] = frand() * (0.5f + (float)((i / 32 + r) % 3));
                    llc_act_convert(type, row, x + r * xs, n, 1);
                }
                k->gemm4[type](n, w, ws, x, xs, out, 7);
                for (int t = 0; t < 4; t++)
                    for (int r = 0; r < 4; r++) {
                        float want = ref->vec_dot[type](n, w + r * ws, x + t * xs), got = out[t * 7 + r];
                        /* only the order of f32 additions differs: bound by n * eps * sum|w x| */
                        if (fabsf(want - got) > 1e-4f * (1.0f + fabsf(want)) + 1e-6f * (float)n)
                            fail_msg("%s gemm4 %s n=%ld (r %d, t %d): %.7g vs scalar %.7g", k->name, llc_type_name(type), (long)n, r, t,
                                     got, want);
                    }
                free(w);
                free(x);
                free(row);
                tested++;
            }
        }
    }
    assert_true(tested >= 10);
}

/* Q8_0 of 0..31 scaled: d = 31/127, q = round(x/d). Q4_0: the signed max -> -8. */
static void test_quantizers(void **state) {
    (void)state;
    float x[32];
    for (int i = 0; i < 32; i++) x[i] = (float)i;
    block_q8_0 q8;
    llc_type_get(LLC_Q8_0)->from_float(x, &q8, 32);
    assert_int_equal(q8.d, llc_fp32_to_fp16(31.0f / 127.0f));
    for (int i = 0; i < 32; i++) assert_int_equal(q8.qs[i], (int)roundf(i * (127.0f / 31.0f)));
    block_q4_0 q4;
    llc_type_get(LLC_Q4_0)->from_float(x, &q4, 32);
    /* max = 31 -> d = 31 / -8; element i -> (int)(i / d + 8.5) clamped to 15 */
    assert_int_equal(q4.d, llc_fp32_to_fp16(31.0f / -8.0f));
    float id = -8.0f / 31.0f;
    for (int j = 0; j < 16; j++) {
        int lo = (int)(x[j] * id + 8.5f), hi = (int)(x[j + 16] * id + 8.5f);
        assert_int_equal(q4.qs[j] & 15, lo > 15 ? 15 : lo);
        assert_int_equal(q4.qs[j] >> 4, hi > 15 ? 15 : hi);
    }
    float back[32];
    llc_type_get(LLC_Q4_0)->to_float(&q4, back, 32);
    float d = llc_fp16_to_fp32(q4.d);
    for (int j = 0; j < 16; j++) assert_true(back[j] == d * (float)((q4.qs[j] & 15) - 8));
    /* all-zero blocks stay zero (no division by zero) */
    memset(x, 0, sizeof x);
    llc_type_get(LLC_Q4_0)->from_float(x, &q4, 32);
    llc_type_get(LLC_Q4_0)->to_float(&q4, back, 32);
    for (int i = 0; i < 32; i++) assert_true(back[i] == 0.0f);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_simd_vs_scalar), cmocka_unit_test(test_gemm4_vs_scalar), cmocka_unit_test(test_quantizers)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
