/* Every SIMD kernel against its scalar twin on random data, at sizes that are not multiples of the
 * vector width; and the quantizers against hand-computed blocks from llama.cpp's definitions. The
 * K-quants (Q4_K, Q6_K with Q8_K activations) get their own section below. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/fp16.h"
#include "kernels/kernels.h"
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
    const llc_kernels *ref = &llc_kernels_twins; /* the scalar twins */
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
    const llc_kernels *ref = &llc_kernels_twins; /* the scalar twins */
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

/* ---- K-quants ------------------------------------------------------------------------------------ */

static float gauss(void) {
    float u = 0;
    for (int i = 0; i < 12; i++) u += frand() * 0.5f + 0.5f; /* Irwin-Hall: close enough to N(0, 1) */
    return u - 6.0f;
}

/* Rows with a different character per sub-block of 16: magnitudes over four decades, and runs that are
 * all positive or all negative (so Q4_K's mins and Q6_K's signed scales both get exercised). */
static void fill_k(float *v, int64_t n, int salt) {
    for (int64_t i = 0; i < n; i++) {
        int sb = (int)(i / 16) + salt;
        float mag = powf(10.0f, (float)(sb * 7 % 5) - 3.0f), g = frand();
        v[i] = sb % 6 == 1 ? fabsf(g) * mag + 0.5f * mag : sb % 6 == 4 ? -fabsf(g) * mag : g * mag;
    }
}

/* Q4_K weight i's two parts d * sc * q and dmin * m, so that bounds can use sum(|part| * |x|): the
 * kernels add them in different orders, and they can cancel. */
static void q4_K_parts(const block_q4_K *b, int64_t n, double *pos, double *neg) {
    for (int64_t i = 0; i < n; i++) {
        const block_q4_K *k = &b[i / QK_K];
        uint8_t sm[16];
        llc_q4_K_unpack_scales(k->scales, sm);
        int r = (int)(i % QK_K), j = r / 32, c = r / 64, byte = k->qs[32 * c + r % 32], q = r % 64 < 32 ? byte & 15 : byte >> 4;
        pos[i] = (double)llc_fp16_to_fp32(k->d) * sm[j] * q;
        neg[i] = (double)llc_fp16_to_fp32(k->dmin) * sm[8 + j];
    }
}

/* Scalar K dot against the double-precision sum of the dequantized rows, and every SIMD dot against
 * the scalar one. Integer sums are exact in all of them, so only the f32 additions (and the f32
 * rounding of each dequantized weight) differ: bounded by a few eps * sum(|parts| * |x|) per term. */
static void check_k_dot(uint32_t type, int64_t n) {
    const llc_kernels *ref = &llc_kernels_twins; /* the scalar twins */
    float *w = malloc((size_t)n * sizeof *w), *x = malloc((size_t)n * sizeof *x), *wd = malloc((size_t)n * sizeof *wd),
          *xd = malloc((size_t)n * sizeof *xd);
    double *pos = malloc((size_t)n * sizeof *pos), *neg = malloc((size_t)n * sizeof *neg);
    fill_k(w, n, 0);
    fill_k(x, n, 3);
    void *wq = malloc(llc_row_size(type, n)), *xq = malloc(llc_act_row_bytes(type, n));
    assert_int_equal(llc_act_type(type), LLC_Q8_K);
    llc_type_get(type)->from_float(w, wq, n);
    llc_act_convert(type, x, xq, n, 1);
    llc_type_get(type)->to_float(wq, wd, n);
    llc_type_get(LLC_Q8_K)->to_float(xq, xd, n);
    if (type == LLC_Q4_K) {
        q4_K_parts(wq, n, pos, neg);
    } else {
        for (int64_t i = 0; i < n; i++) pos[i] = fabs((double)wd[i]), neg[i] = 0;
    }
    double exact = 0, mag = 0;
    for (int64_t i = 0; i < n; i++) {
        exact += (double)wd[i] * xd[i];
        mag += (fabs(pos[i]) + fabs(neg[i])) * fabs((double)xd[i]);
    }
    double tol = 4e-7 * mag * (4 + log2((double)n)) + 1e-30;
    float want = ref->vec_dot[type](n, wq, xq);
    if (fabs(exact - want) > tol) fail_msg("scalar %s n=%ld: %.9g vs exact %.9g (tol %.3g)", llc_type_name(type), (long)n, want, exact, tol);
    for (int isa = 1; isa < LLC_ISA_COUNT; isa++) {
        const llc_kernels *k = llc_kernels_for((enum llc_isa)isa);
        if (!k) continue;
        float got = k->vec_dot[type](n, wq, xq);
        if (fabs((double)want - got) > tol)
            fail_msg("%s %s n=%ld: %.9g vs scalar %.9g (tol %.3g)", k->name, llc_type_name(type), (long)n, got, want, tol);
    }
    free(w), free(x), free(wd), free(xd), free(pos), free(neg), free(wq), free(xq);
}

static void test_k_dots(void **state) {
    (void)state;
    static const int64_t superblocks[] = {1, 2, 3, 7, 17};
    for (int rep = 0; rep < 4; rep++)
        for (size_t s = 0; s < sizeof superblocks / sizeof superblocks[0]; s++) {
            check_k_dot(LLC_Q4_K, superblocks[s] * QK_K);
            check_k_dot(LLC_Q6_K, superblocks[s] * QK_K);
            check_k_dot(LLC_Q8_K, superblocks[s] * QK_K);
        }
    for (int isa = 1; isa < LLC_ISA_COUNT; isa++)
        if (!llc_kernels_for((enum llc_isa)isa)) printf("  (%s not available on this CPU: skipped)\n", llc_isa_name((enum llc_isa)isa));
}

/* Names, sizes and the 256-multiple rule. */
static void test_k_traits(void **state) {
    (void)state;
    assert_int_equal(llc_type_from_name("q4_k"), LLC_Q4_K);
    assert_int_equal(llc_type_from_name("Q4_K"), LLC_Q4_K);
    assert_int_equal(llc_type_from_name("q6_K"), LLC_Q6_K);
    assert_int_equal(llc_type_from_name("q8_k"), LLC_Q8_K);
    assert_string_equal(llc_type_name(LLC_Q4_K), "q4_k");
    assert_int_equal(llc_row_size(LLC_Q4_K, 256), 144);
    assert_int_equal(llc_row_size(LLC_Q4_K, 4096), 16 * 144);
    assert_int_equal(llc_row_size(LLC_Q6_K, 512), 2 * 210);
    assert_int_equal(llc_row_size(LLC_Q8_K, 256), 292);
    assert_int_equal(llc_row_size(LLC_Q4_K, 320), 0); /* not a whole superblock */
    assert_int_equal(llc_row_size(LLC_Q6_K, 128), 0);
    assert_int_equal(llc_act_type(LLC_Q4_K), LLC_Q8_K);
    assert_int_equal(llc_act_type(LLC_Q6_K), LLC_Q8_K);
    assert_int_equal(llc_act_row_bytes(LLC_Q6_K, 768), 3 * 292);
}

/* Hand-built blocks, decoded and compared with values worked out by hand from the layout comments in
 * types.h (and the same values from llama.cpp's dequantize_row_q4_K/_q6_K on these bytes). */
static void test_k_hand_blocks(void **state) {
    (void)state;
    block_q4_K b4;
    b4.d = 0x3800;    /* 0.5 */
    b4.dmin = 0x3400; /* 0.25 */
    static const uint8_t sc12[12] = {0xC1, 0x3F, 0x52, 0x20, 0x00, 0x85, 0x3F, 0xE8, 0x7D, 0x26, 0xF0, 0x01};
    memcpy(b4.scales, sc12, 12);
    for (int k = 0; k < 128; k++) b4.qs[k] = (uint8_t)(k * 37 + 11);
    /* j < 4: sc = byte j & 63, m = byte j+4 & 63 -> (1,0) (63,5) (18,63) (32,40); j >= 4: low bits from
     * byte j+4 (sc low nibble, m high nibble), high bits from the top two of bytes j-4 (sc) and j (m):
     * j=4: 0x7D -> sc 13 | 3<<4 = 61, m 7 | 0<<4 = 7; j=5: 0x26 -> 6 | 0 = 6, 2 | 2<<4 = 34;
     * j=6: 0xF0 -> 0 | 1<<4 = 16, 15 | 0 = 15; j=7: 0x01 -> 1 | 0 = 1, 0 | 3<<4 = 48 */
    static const int want_sc[8] = {1, 63, 18, 32, 61, 6, 16, 1}, want_m[8] = {0, 5, 63, 40, 7, 34, 15, 48};
    uint8_t sm[16];
    llc_q4_K_unpack_scales(b4.scales, sm);
    for (int j = 0; j < 8; j++) {
        assert_int_equal(sm[j], want_sc[j]);
        assert_int_equal(sm[8 + j], want_m[j]);
    }
    float out[QK_K];
    llc_type_get(LLC_Q4_K)->to_float(&b4, out, QK_K);
    /* weight 0: qs[0] = 11, low nibble 11, sub-block 0: 0.5*1*11 - 0 = 5.5; weight 32: qs[0] high nibble
     * 0, sub-block 1: -0.25*5; weight 170 = 128 + 42: qs[64 + 10] = 189 = 0xBD, high nibble 11,
     * sub-block 5: 0.5*6*11 - 0.25*34; weight 200 = 192 + 8: qs[104] = 19 = 0x13, low 3, sub-block 6:
     * 0.5*16*3 - 0.25*15; weight 255: qs[127] = 102 = 0x66, high 6, sub-block 7: 0.5*1*6 - 0.25*48 */
    assert_true(out[0] == 5.5f && out[32] == -1.25f && out[170] == 24.5f && out[200] == 20.25f && out[255] == -9.0f);
    for (int i = 0; i < QK_K; i++) { /* and every weight from the definition */
        int c = i / 64, r = i % 64, byte = b4.qs[32 * c + r % 32], q = r < 32 ? byte & 15 : byte >> 4, j = i / 32;
        assert_true(out[i] == 0.5f * (float)(want_sc[j] * q) - 0.25f * (float)want_m[j]);
    }

    block_q6_K b6;
    b6.d = 0x3000; /* 0.125 */
    static const int8_t sc16[16] = {-128, 127, -1, 5, 0, 64, -64, 3, 2, -7, 100, -100, 1, 33, -33, 9};
    memcpy(b6.scales, sc16, 16);
    for (int k = 0; k < 128; k++) b6.ql[k] = (uint8_t)(k * 29 + 5);
    for (int k = 0; k < 64; k++) b6.qh[k] = (uint8_t)(k * 53 + 7);
    llc_type_get(LLC_Q6_K)->to_float(&b6, out, QK_K);
    /* weight 0: ql[0] = 5 low nibble 5, qh[0] = 7 bits 0-1 = 3: q = 53, 0.125*-128*21; weight 17: ql[17] =
     * 0xF2 -> 2, qh[17] = 0x8C bits 0-1 = 0: q = 2, 0.125*127*-30; weight 40 (group 1, l = 8): ql[40] =
     * 0x8D -> 13, qh[8] = 0xAF bits 2-3 = 3: q = 61, 0.125*-1*29; weight 100 (group 3, l = 4): ql[36] =
     * 0x19 high nibble 1, qh[4] = 0xDB bits 6-7 = 3: q = 49, 0.125*-64*17; weight 129 (second half, l =
     * 1): ql[65] = 0x62 -> 2, qh[33] = 0xDC bits 0-1 = 0: q = 2, 0.125*2*-30; weight 255: ql[127] = 0x68
     * high nibble 6, qh[63] = 0x12 bits 6-7 = 0: q = 6, 0.125*9*-26 */
    assert_true(out[0] == -336.0f && out[17] == -476.25f && out[40] == -3.625f && out[100] == -136.0f && out[129] == -7.5f &&
                out[255] == -29.25f);
    for (int i = 0; i < QK_K; i++) {
        int h = i / 128, r = i % 128, g = r / 32, l = r % 32, lb = b6.ql[64 * h + 32 * (g & 1) + l];
        int q = (g < 2 ? lb & 15 : lb >> 4) | (b6.qh[32 * h + l] >> (2 * g) & 3) << 4;
        assert_true(out[i] == 0.125f * (float)sc16[i / 16] * (float)(q - 32));
    }

    /* Q8_K: d = -max / 127 for the signed value of largest magnitude (ggml's sign convention), and
     * bsums the sums of 16 */
    float x[QK_K];
    for (int i = 0; i < QK_K; i++) x[i] = (float)(i % 50) - 10.0f; /* max 39 */
    block_q8_K b8;
    llc_type_get(LLC_Q8_K)->from_float(x, &b8, QK_K);
    assert_true(b8.d == 1.0f / (-127.0f / 39.0f));
    for (int i = 0; i < QK_K; i++) assert_int_equal(b8.qs[i], (int)rintf(x[i] * (-127.0f / 39.0f)));
    for (int j = 0; j < 16; j++) {
        int sum = 0;
        for (int l = 0; l < 16; l++) sum += b8.qs[16 * j + l];
        assert_int_equal(b8.bsums[j], sum);
    }
}

/* Quantize-dequantize error on N(0, 1) data, relative RMS over 64 superblocks. The bounds are this
 * code's (bit-identical to llama.cpp's quantize_row_q*_K_ref) measured error plus ~10%: Q4_K 0.070,
 * Q6_K 0.0175, Q8_K 0.0067. For scale: a uniform step s gives s / sqrt(12); Q8_K's step is about
 * 2.9 / 127 (the largest of 256 normal values, over 127 levels) -> 0.0066; a plain 4-bit min/max grid
 * over a sub-block of 32 (range ~4.1) would give ~0.08, the fitted scales and mins do better. Also a
 * per-element bound for Q8_K: half a step. */
static void test_k_roundtrip(void **state) {
    (void)state;
    const int64_t n = 64 * QK_K;
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    void *q = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) x[i] = gauss();
    static const struct { uint32_t type; double bound; } cases[] = {{LLC_Q4_K, 0.078}, {LLC_Q6_K, 0.020}, {LLC_Q8_K, 0.0075}};
    for (size_t c = 0; c < 3; c++) {
        llc_type_get(cases[c].type)->from_float(x, q, n);
        llc_type_get(cases[c].type)->to_float(q, y, n);
        double e = 0, s = 0;
        for (int64_t i = 0; i < n; i++) e += (double)(y[i] - x[i]) * (y[i] - x[i]), s += (double)x[i] * x[i];
        double rel = sqrt(e / s);
        printf("  %s relative RMS error on N(0,1): %.4f (bound %.4f)\n", llc_type_name(cases[c].type), rel, cases[c].bound);
        assert_true(rel < cases[c].bound);
        if (cases[c].type == LLC_Q8_K)
            for (int64_t i = 0; i < n; i++) assert_true(fabsf(y[i] - x[i]) <= 0.5001f * fabsf(((block_q8_K *)q)[i / QK_K].d));
    }
    /* scale invariance, roughly: the same data at 1e-3 and 1e3 (fp16 scales have the range) */
    for (int p = -3; p <= 3; p += 6) {
        float f = powf(10.0f, (float)p);
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * f;
        llc_type_get(LLC_Q4_K)->from_float(y, q, n);
        llc_type_get(LLC_Q4_K)->to_float(q, y, n);
        double e = 0, s = 0;
        for (int64_t i = 0; i < n; i++) e += (double)(y[i] - x[i] * f) * (y[i] - x[i] * f), s += (double)x[i] * f * x[i] * f;
        assert_true(sqrt(e / s) < 0.078);
    }
    free(x), free(y), free(q);
}

/* Zeros stay zeros; NaN and infinities never reach undefined behaviour (the sanitizer build runs this)
 * and give the documented results: weight blocks always decode to finite values (NaN counts as 0,
 * magnitudes saturate), other superblocks of the row are unaffected; for Q8_K activations NaN counts
 * as 0 and an infinity makes the block's dot NaN, as the f32 product would be. */
static void test_k_special_values(void **state) {
    (void)state;
    const int64_t n = 2 * QK_K;
    float x[2 * QK_K], y[2 * QK_K], clean[QK_K];
    char q[2 * 292], q1[292], act[2 * 292];
    static const uint32_t types[] = {LLC_Q4_K, LLC_Q6_K, LLC_Q8_K};
    for (size_t t = 0; t < 3; t++) {
        const llc_type_traits *tt = llc_type_get(types[t]);
        memset(x, 0, sizeof x);
        tt->from_float(x, q, n);
        tt->to_float(q, y, n);
        for (int64_t i = 0; i < n; i++) assert_true(y[i] == 0.0f);
        for (int isa = 0; isa < LLC_ISA_COUNT; isa++) {
            const llc_kernels *k = llc_kernels_for((enum llc_isa)isa);
            if (!k) continue;
            for (int64_t i = 0; i < n; i++) y[i] = gauss();
            tt->from_float(x, q, n);
            llc_act_convert(types[t], y, act, n, 1);
            assert_true(k->vec_dot[types[t]](n, q, act) == 0.0f); /* zero weights */
            llc_act_convert(types[t], x, act, n, 1);
            tt->from_float(y, q, n);
            assert_true(k->vec_dot[types[t]](n, q, act) == 0.0f); /* zero activations */
        }
    }
    for (size_t t = 0; t < 2; t++) { /* the weight types */
        const llc_type_traits *tt = llc_type_get(types[t]);
        for (int64_t i = 0; i < n; i++) x[i] = gauss();
        memcpy(clean, x + QK_K, sizeof clean);
        x[3] = NAN, x[40] = INFINITY, x[41] = -INFINITY, x[100] = 1e30f, x[101] = -3e38f, x[200] = NAN;
        tt->from_float(x, q, n);
        tt->to_float(q, y, n);
        for (int64_t i = 0; i < n; i++) assert_true(isfinite(y[i]));
        tt->from_float(clean, q1, QK_K);
        assert_memory_equal(q + tt->type_size, q1, tt->type_size); /* the second superblock as if alone */
        for (int64_t i = 0; i < QK_K; i++) x[i] = NAN;              /* all NaN: as all zero */
        tt->from_float(x, q, QK_K);
        tt->to_float(q, y, QK_K);
        for (int64_t i = 0; i < QK_K; i++) assert_true(y[i] == 0.0f);
    }
    for (int64_t i = 0; i < n; i++) x[i] = gauss();
    x[5] = NAN;
    llc_type_get(LLC_Q8_K)->from_float(x, act, n);
    assert_int_equal(((block_q8_K *)act)->qs[5], 0);
    assert_true(isfinite(((block_q8_K *)act)->d));
    x[300] = INFINITY;
    llc_type_get(LLC_Q4_K)->from_float(x + QK_K, q, QK_K);
    llc_type_get(LLC_Q4_K)->from_float(x + QK_K, q + 144, QK_K);
    llc_act_convert(LLC_Q4_K, x, act, n, 1);
    for (int isa = 0; isa < LLC_ISA_COUNT; isa++) {
        const llc_kernels *k = llc_kernels_for((enum llc_isa)isa);
        if (k) assert_true(isnan(k->vec_dot[LLC_Q4_K](n, q, act)));
    }
}

/* Every table, runnable here or not: each slot it fills has a scalar twin (so the tests above and in
 * test_packed.c / test_attention.c compare it), the slots that have no fallback are filled, and
 * LLAMAC_ISA's names match the tables'. */
static void test_tables_complete(void **state) {
    (void)state;
    const llc_kernels *tables[] = {
        &llc_kernels_scalar,
#if defined(__x86_64__)
        &llc_kernels_avx2, &llc_kernels_avx512,
#endif
    };
    const llc_kernels *tw = &llc_kernels_twins;
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        const llc_kernels *k = tables[i];
        assert_string_equal(k->name, llc_isa_name(k->isa));
        for (int t = 0; t < LLC_TYPE_COUNT; t++) {
            if (!tw->vec_dot[t]) assert_null(k->vec_dot[t]);
            else if (!k->vec_dot[t]) fail_msg("%s: no vec_dot for %s", k->name, llc_type_name((uint32_t)t));
            if (k->gemm4[t] && !tw->gemm4[t]) fail_msg("%s: gemm4 for %s has no scalar twin", k->name, llc_type_name((uint32_t)t));
            if (k->packed[t] && !tw->packed[t]) fail_msg("%s: packed kernel for %s has no scalar twin", k->name, llc_type_name((uint32_t)t));
        }
        assert_non_null(k->act_q8_0);
        assert_true(k->attn.scores && k->attn.max && k->attn.exp_sum && k->attn.accumulate && k->attn.to_f32);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_simd_vs_scalar), cmocka_unit_test(test_gemm4_vs_scalar),
                                       cmocka_unit_test(test_quantizers),     cmocka_unit_test(test_k_dots),
                                       cmocka_unit_test(test_k_traits),       cmocka_unit_test(test_k_hand_blocks),
                                       cmocka_unit_test(test_k_roundtrip),    cmocka_unit_test(test_k_special_values),
                                       cmocka_unit_test(test_tables_complete)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
