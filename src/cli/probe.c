#include "cli/probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llamac.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *cli_peak_name(enum cli_peak_kind kind) {
    static const char *const names[] = {"fp32 FMA", "bf16 dot", "int8 dot"};
    return names[kind];
}

/* The value of the first "key : value" line of /proc/cpuinfo whose key is exactly `key`, or "". */
static void cpuinfo_field(const char *text, const char *key, char *out, size_t cap) {
    out[0] = 0;
    size_t kl = strlen(key);
    for (const char *line = text; line && *line;) {
        const char *eol = strchr(line, '\n'), *c = strchr(line, ':');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (c && c < line + len && !strncmp(line, key, kl) && strspn(line + kl, " \t") == (size_t)(c - line) - kl) {
            for (c++; *c == ' ' || *c == '\t'; c++) {}
            size_t n = (size_t)(line + len - c);
            if (n >= cap) n = cap - 1;
            memcpy(out, c, n);
            out[n] = 0;
            return;
        }
        line = eol ? eol + 1 : NULL;
    }
}

void cli_cpu_name(char *out, size_t cap) {
    snprintf(out, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    /* the first processor's lines are within the first few KiB */
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char name[128], family[16], model[16];
    cpuinfo_field(text, "model name", name, sizeof name);
    cpuinfo_field(text, "cpu family", family, sizeof family);
    cpuinfo_field(text, "model", model, sizeof model);
    if (!name[0]) return;
    /* a virtual machine may hide the marketing name ("AMD EPYC"): the numbers tell the generation */
    if (family[0] && model[0]) snprintf(out, cap, "%s (family %s model %s)", name, family, model);
    else snprintf(out, cap, "%s", name);
}

#if defined(__x86_64__)
#include <immintrin.h>

/* The probes measure the instructions the library's kernels run with, as llamac_isa() names them. */
typedef enum { ISA_SCALAR, ISA_AVX2, ISA_AVX512 } isa_kind;
static isa_kind kernels_isa(void) {
    const char *n = llamac_isa();
    return !strcmp(n, "avx512") ? ISA_AVX512 : !strcmp(n, "avx2") ? ISA_AVX2 : ISA_SCALAR;
}
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
    enum cli_peak_kind kind;
    float sink[64];
} peak_job;

/* 12 independent accumulators hide the instruction latency, as a real kernel's tiles do. Written as
 * inline assembly: compiled from intrinsics, gcc rotated the accumulators through extra registers
 * with moves in the loop, and the probe read a third of the rate the matmul kernels reach. */
#define PEAK_BODY(insn)                                                                                          \
    for (int i = 0; i < PEAK_ITERS; i++)                                                                           \
        __asm__ volatile(insn " %[b], %[a], %[r0]\n\t" insn " %[b], %[a], %[r1]\n\t" insn " %[b], %[a], %[r2]\n\t"   \
                         insn " %[b], %[a], %[r3]\n\t" insn " %[b], %[a], %[r4]\n\t" insn " %[b], %[a], %[r5]\n\t"   \
                         insn " %[b], %[a], %[r6]\n\t" insn " %[b], %[a], %[r7]\n\t" insn " %[b], %[a], %[r8]\n\t"   \
                         insn " %[b], %[a], %[r9]\n\t" insn " %[b], %[a], %[r10]\n\t" insn " %[b], %[a], %[r11]"      \
                         : [r0] "+v"(r0), [r1] "+v"(r1), [r2] "+v"(r2), [r3] "+v"(r3), [r4] "+v"(r4),          \
                           [r5] "+v"(r5), [r6] "+v"(r6), [r7] "+v"(r7), [r8] "+v"(r8), [r9] "+v"(r9),          \
                           [r10] "+v"(r10), [r11] "+v"(r11)                                                        \
                         : [a] "v"(a), [b] "v"(b))

AVX512 static float peak_avx512(enum cli_peak_kind kind) {
    /* twelve scalars of vector type, not an array: an array was stored and reloaded every iteration */
    __m512 r0 = _mm512_set1_ps(0), r1 = r0, r2 = r0, r3 = r0, r4 = r0, r5 = r0, r6 = r0, r7 = r0, r8 = r0, r9 = r0, r10 = r0,
           r11 = r0;
    const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-4f); /* bf16 pairs of small values too */
    if (kind == CLI_PEAK_FP32_FMA) PEAK_BODY("vfmadd231ps");
    else if (kind == CLI_PEAK_BF16_DOT) PEAK_BODY("vdpbf16ps");
    else PEAK_BODY("vpdpbusd");
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(r0, r1), _mm512_add_ps(r2, r3)), _mm512_add_ps(r4, r5));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(r6, r7), _mm512_add_ps(r8, r9)), _mm512_add_ps(r10, r11)));
    return _mm512_reduce_add_ps(s);
}

AVX512 static void peak_task_avx512(void *ctx, int ith, int nth) {
    (void)nth;
    peak_job *j = ctx;
    j->sink[ith % 64] = peak_avx512(j->kind);
}

/* AVX2 has no int8 dot instruction: its kernels multiply bytes with vpmaddubsw, add the int16 pairs with
 * vpmaddwd against ones and accumulate with vpaddd, 32 byte products per three instructions. Six such
 * chains, in assembly for the reason PEAK_BODY gives (and so the loop-invariant products are not hoisted). */
#define INT8_TRIPLE(t, r)                                                                                        \
    "vpmaddubsw %[b], %[a], %[" t "]\n\tvpmaddwd %[one], %[" t "], %[" t "]\n\tvpaddd %[" t "], %[" r "], %[" r "]\n\t"

AVX2 static float peak_int8_avx2(void) {
    __m256i r0 = _mm256_setzero_si256(), r1 = r0, r2 = r0, r3 = r0, r4 = r0, r5 = r0;
    __m256i t0 = r0, t1 = r0, t2 = r0, t3 = r0, t4 = r0, t5 = r0;
    const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), one = _mm256_set1_epi16(1);
    for (int i = 0; i < PEAK_ITERS; i++)
        __asm__ volatile(INT8_TRIPLE("t0", "r0") INT8_TRIPLE("t1", "r1") INT8_TRIPLE("t2", "r2") INT8_TRIPLE("t3", "r3")
                             INT8_TRIPLE("t4", "r4") INT8_TRIPLE("t5", "r5")
                         : [r0] "+v"(r0), [r1] "+v"(r1), [r2] "+v"(r2), [r3] "+v"(r3), [r4] "+v"(r4), [r5] "+v"(r5),
                           [t0] "+v"(t0), [t1] "+v"(t1), [t2] "+v"(t2), [t3] "+v"(t3), [t4] "+v"(t4), [t5] "+v"(t5)
                         : [a] "v"(a), [b] "v"(b), [one] "v"(one));
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(r0, r1), _mm256_add_epi32(r2, r3)), _mm256_add_epi32(r4, r5));
    return (float)_mm256_extract_epi32(s, 0);
}

AVX2 static void peak_task_avx2(void *ctx, int ith, int nth) {
    (void)nth;
    peak_job *j = ctx;
    if (j->kind == CLI_PEAK_INT8_DOT) {
        j->sink[ith % 64] = peak_int8_avx2();
        return;
    }
    __m256 f[12];
    for (int k = 0; k < 12; k++) f[k] = _mm256_set1_ps((float)k * 1e-3f);
    const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-4f);
    for (int i = 0; i < PEAK_ITERS; i++)
        _Pragma("GCC unroll 12") for (int k = 0; k < 12; k++) f[k] = _mm256_fmadd_ps(f[k], a, b);
    __m256 s = f[0];
    for (int k = 1; k < 12; k++) s = _mm256_add_ps(s, f[k]);
    float out[8];
    _mm256_storeu_ps(out, s);
    j->sink[ith % 64] = out[0];
}
#endif

double cli_probe_read_gbs(llc_pool *pool, size_t bytes) {
#if defined(__x86_64__)
    isa_kind isa = kernels_isa();
    if (isa == ISA_SCALAR) return 0;
    float *buf = aligned_alloc(64, bytes);
    if (!buf) return 0;
    memset(buf, 0, bytes);
    read_job j = {buf, bytes / sizeof(float), {0}};
    double best = 0;
    for (int pass = 0; pass < 4; pass++) {
        double t0 = now_s();
        llc_pool_run(pool, isa == ISA_AVX512 ? read_task_avx512 : read_task_avx2, &j);
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

double cli_probe_peak_ops(llc_pool *pool, enum cli_peak_kind kind) {
#if defined(__x86_64__)
    isa_kind isa = kernels_isa();
    if (isa == ISA_SCALAR || (isa == ISA_AVX2 && kind == CLI_PEAK_BF16_DOT)) return 0;
    peak_job j = {kind, {0}};
    /* Best of 5: one pass is a few milliseconds, the same order as a sleeping worker's wake-up and the
     * clock's ramp, which made single passes read 50-100% of the true rate. */
    double secs = 1e30;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = now_s();
        llc_pool_run(pool, isa == ISA_AVX512 ? peak_task_avx512 : peak_task_avx2, &j);
        double dt = now_s() - t0;
        if (dt < secs) secs = dt;
    }
    /* ops per loop iteration: 12 instructions of FMA 16 lanes x 2 (AVX2: 8 x 2), bf16 dot 32 products +
     * adds, VNNI 64 byte products + adds; AVX2 int8: 6 chains of 32 byte products + adds */
    double per = isa == ISA_AVX2 ? (kind == CLI_PEAK_INT8_DOT ? 6 * 64 : 12 * 16)
                                 : 12.0 * (kind == CLI_PEAK_FP32_FMA ? 32 : kind == CLI_PEAK_BF16_DOT ? 64 : 128);
    return per * PEAK_ITERS * llc_pool_size(pool) / secs;
#else
    (void)pool;
    (void)kind;
    return 0;
#endif
}
