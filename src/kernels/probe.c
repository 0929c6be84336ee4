#include "kernels/probe.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/dispatch.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *llc_peak_name(enum llc_peak_kind kind) {
    static const char *const names[] = {"fp32 FMA", "bf16 dot", "int8 dot"};
    return names[kind];
}

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16")))
#define AVX2 __attribute__((target("avx2,fma")))

typedef struct read_job {
    const float *buf;
    size_t n;
    float sink[64];
} read_job;

AVX512 static void read_task_avx512(void *ctx, int ith, int nth) {
    read_job *j = ctx;
    long lo, hi;
    llc_split((long)(j->n / 64), ith, nth, &lo, &hi);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (long i = lo; i < hi; i++) {
        const float *p = j->buf + (size_t)i * 64;
        a0 = _mm512_add_ps(a0, _mm512_load_ps(p));
        a1 = _mm512_add_ps(a1, _mm512_load_ps(p + 16));
        a2 = _mm512_add_ps(a2, _mm512_load_ps(p + 32));
        a3 = _mm512_add_ps(a3, _mm512_load_ps(p + 48));
    }
    j->sink[ith % 64] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

AVX2 static void read_task_avx2(void *ctx, int ith, int nth) {
    read_job *j = ctx;
    long lo, hi;
    llc_split((long)(j->n / 32), ith, nth, &lo, &hi);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (long i = lo; i < hi; i++) {
        const float *p = j->buf + (size_t)i * 32;
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + 24));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    float out[8];
    _mm256_storeu_ps(out, s);
    j->sink[ith % 64] = out[0] + out[7];
}

#define PEAK_ITERS 2000000

typedef struct peak_job {
    enum llc_peak_kind kind;
    float sink[64];
} peak_job;

/* 12 independent accumulators hide the instruction latency, as a real kernel's tiles do. */
AVX512 static void peak_task_avx512(void *ctx, int ith, int nth) {
    (void)nth;
    peak_job *j = ctx;
    __m512 f[12];
    __m512i q[12];
    for (int k = 0; k < 12; k++) {
        f[k] = _mm512_set1_ps((float)k * 1e-3f);
        q[k] = _mm512_set1_epi32(k);
    }
    const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-4f);
    const __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(2);
    if (j->kind == LLC_PEAK_FP32_FMA) {
        for (int i = 0; i < PEAK_ITERS; i++)
            for (int k = 0; k < 12; k++) f[k] = _mm512_fmadd_ps(f[k], a, b);
    } else if (j->kind == LLC_PEAK_BF16_DOT) {
        const __m512bh ab = (__m512bh)_mm512_set1_epi16(0x3f80), bb = (__m512bh)_mm512_set1_epi16(0x3a00);
        for (int i = 0; i < PEAK_ITERS; i++)
            for (int k = 0; k < 12; k++) f[k] = _mm512_dpbf16_ps(f[k], ab, bb);
    } else {
        for (int i = 0; i < PEAK_ITERS; i++)
            for (int k = 0; k < 12; k++) q[k] = _mm512_dpbusd_epi32(q[k], x, y);
    }
    __m512 s = f[0];
    __m512i t = q[0];
    for (int k = 1; k < 12; k++) {
        s = _mm512_add_ps(s, f[k]);
        t = _mm512_add_epi32(t, q[k]);
    }
    j->sink[ith % 64] = _mm512_reduce_add_ps(s) + (float)_mm512_reduce_add_epi32(t);
}

AVX2 static void peak_task_avx2(void *ctx, int ith, int nth) {
    (void)nth;
    peak_job *j = ctx;
    __m256 f[12];
    for (int k = 0; k < 12; k++) f[k] = _mm256_set1_ps((float)k * 1e-3f);
    const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-4f);
    for (int i = 0; i < PEAK_ITERS; i++)
        for (int k = 0; k < 12; k++) f[k] = _mm256_fmadd_ps(f[k], a, b);
    __m256 s = f[0];
    for (int k = 1; k < 12; k++) s = _mm256_add_ps(s, f[k]);
    float out[8];
    _mm256_storeu_ps(out, s);
    j->sink[ith % 64] = out[0];
}
#endif

double llc_probe_read_gbs(llc_pool *pool, size_t bytes) {
#if defined(__x86_64__)
    enum llc_isa isa = llc_kernels_get()->isa;
    if (isa == LLC_ISA_SCALAR) return 0;
    float *buf = aligned_alloc(64, bytes);
    if (!buf) return 0;
    memset(buf, 0, bytes);
    read_job j = {buf, bytes / sizeof(float), {0}};
    double best = 0;
    for (int pass = 0; pass < 4; pass++) {
        double t0 = now_s();
        llc_pool_run(pool, isa == LLC_ISA_AVX512 ? read_task_avx512 : read_task_avx2, &j);
        double gbs = (double)bytes / (now_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    free(buf);
    return best;
#else
    (void)pool;
    (void)bytes;
    return 0;
#endif
}

double llc_probe_peak_ops(llc_pool *pool, enum llc_peak_kind kind) {
#if defined(__x86_64__)
    enum llc_isa isa = llc_kernels_get()->isa;
    if (isa == LLC_ISA_SCALAR || (isa == LLC_ISA_AVX2 && kind != LLC_PEAK_FP32_FMA)) return 0;
    peak_job j = {kind, {0}};
    /* Best of 5: one pass is a few milliseconds, the same order as a sleeping worker's wake-up and the
     * clock's ramp, which made single passes read 50-100% of the true rate. */
    double secs = 1e30;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = now_s();
        llc_pool_run(pool, isa == LLC_ISA_AVX512 ? peak_task_avx512 : peak_task_avx2, &j);
        double dt = now_s() - t0;
        if (dt < secs) secs = dt;
    }
    /* per instruction: FMA 16 lanes x 2; bf16 dot 32 products + adds; VNNI 64 byte products + adds */
    double per = isa == LLC_ISA_AVX2 ? 16 : kind == LLC_PEAK_FP32_FMA ? 32 : kind == LLC_PEAK_BF16_DOT ? 64 : 128;
    return per * 12.0 * PEAK_ITERS * llc_pool_size(pool) / secs;
#else
    (void)pool;
    (void)kind;
    return 0;
#endif
}
