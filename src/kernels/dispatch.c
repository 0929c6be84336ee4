/*
 * The choice of kernel table (kernels/kernels.h): once, from cpuid and LLAMAC_ISA. The only place that
 * looks at the CPU's features.
 */
#include "kernels/kernels.h"
#include "llamac.h"

#include <stdbool.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
/* Feature bits straight from cpuid (compilers disagree on the names __builtin_cpu_supports knows),
 * and the OS's consent from XCR0: the vector state must be saved on context switches. */
typedef struct cpu_features {
    bool avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512vnni, avx512bf16;
} cpu_features;

static cpu_features detect(void) {
    cpu_features f = {0};
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    bool osxsave = c >> 27 & 1;
    f.fma = c >> 12 & 1;
    f.f16c = c >> 29 & 1;
    if (!osxsave) return (cpu_features){0};
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    bool os_avx = (lo & 0x6) == 0x6, os_avx512 = (lo & 0xe6) == 0xe6;
    if (!os_avx) return (cpu_features){0};
    if (__get_cpuid_max(0, NULL) < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = b >> 5 & 1;
    if (os_avx512) {
        f.avx512f = b >> 16 & 1;
        f.avx512bw = b >> 30 & 1;
        f.avx512vl = b >> 31 & 1;
        f.avx512vnni = c >> 11 & 1;
        __cpuid_count(7, 1, a, b, c, d);
        f.avx512bf16 = a >> 5 & 1;
    }
    return f;
}

static bool cpu_is_amd(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
    return b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163; /* "AuthenticAMD" */
}

static bool cpu_has_avx2(void) {
    cpu_features f = detect();
    return f.avx2 && f.fma && f.f16c;
}

/* The AVX-512 table needs every extension its kernels use (VNNI and BF16 included): CPUs with
 * AVX-512F but without them run the AVX2 table. */
static bool cpu_has_avx512(void) {
    cpu_features f = detect();
    return cpu_has_avx2() && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni && f.avx512bf16;
}
#endif

llc_prefetch llc_pf = {4096, 0, false};

const char *llc_isa_name(enum llc_isa isa) {
    static const char *const names[LLC_ISA_COUNT] = {"scalar", "avx2", "avx512"};
    return (unsigned)isa < LLC_ISA_COUNT ? names[isa] : "?";
}

const llc_kernels *llc_kernels_for(enum llc_isa isa) {
    if (isa == LLC_ISA_SCALAR) return &llc_kernels_scalar;
#if defined(__x86_64__)
    if (isa == LLC_ISA_AVX2 && cpu_has_avx2()) return &llc_kernels_avx2;
    if (isa == LLC_ISA_AVX512 && cpu_has_avx512()) return &llc_kernels_avx512;
#endif
    return NULL;
}

const llc_kernels *llc_kernels_get(void) {
    static const llc_kernels *_Atomic chosen;
    if (chosen) return chosen;
    const llc_kernels *k = NULL;
    const char *force = getenv("LLAMAC_ISA");
    for (int isa = LLC_ISA_COUNT - 1; isa >= 0 && !k; isa--) {
        if (force && *force && strcmp(force, llc_isa_name((enum llc_isa)isa)) != 0) continue;
        k = llc_kernels_for((enum llc_isa)isa);
    }
#if defined(__x86_64__)
    /* Zen's L1 has few miss buffers for software prefetches: go further ahead, into L2 (kernels.h) */
    if (cpu_is_amd()) llc_pf = (llc_prefetch){8192, 8192, true};
#endif
    chosen = k ? k : &llc_kernels_scalar;
    return chosen;
}

const char *llamac_isa(void) { return llc_kernels_get()->name; }
