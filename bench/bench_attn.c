/*
 * Decode attention alone, one thread: one token's GQA group (rows query heads sharing one KV head)
 * against n_pos cached positions, for each KV cache type, as the time per cached position.
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc bench/bench_attn.c build/libllamac.a -lcjson -lm -lpthread -o /tmp/bench_attn
 *   /tmp/bench_attn [n_pos=2048] [rows=4] [head_dim=64]
 * Llama 3.2 1B at depth 2048 walks 16 layers x 8 KV heads of these per token; the bench keeps 16 layers'
 * caches (in DRAM, as in the model: in L3 the walk is up to 3x faster).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "kernels/attention.h"
#include "kernels/kernels.h"
#include "kernels/types.h"
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    int n_pos = argc > 1 ? atoi(argv[1]) : 2048, rows = argc > 2 ? atoi(argv[2]) : 4, hd = argc > 3 ? atoi(argv[3]) : 64;
    const int kv_heads = 8;
    size_t kv_dim = (size_t)kv_heads * hd, n = (size_t)n_pos * kv_dim;
    float *kf = malloc(n * 4), *vf = malloc(n * 4), *q = malloc((size_t)rows * hd * 4), *out = malloc((size_t)rows * hd * 4);
    srand(1);
    for (size_t i = 0; i < n; i++) kf[i] = (float)rand() / RAND_MAX - 0.5f, vf[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < rows * hd; i++) q[i] = (float)rand() / RAND_MAX - 0.5f;
    const enum llc_type types[] = {LLC_F32, LLC_F16, LLC_BF16, LLC_Q8_0};
    const llc_kernels *kt = llc_kernels_get();
    printf("%s, n_pos %d, %d query rows per KV head, head_dim %d\n", kt->name, n_pos, rows, hd);
    for (int ti = 0; ti < 4; ti++) {
        enum llc_type t = types[ti];
        /* 16 layers' caches, as the model has: together they are larger than the last-level cache */
        size_t rs = llc_row_size(t, (int64_t)n);
        const void *kp[16], *vp[16];
        llc_kv_view view[16];
        for (int l = 0; l < 16; l++) {
            void *kb = malloc(rs), *vb = malloc(rs);
            llc_type_get(t)->from_float(kf, kb, (int64_t)n), llc_type_get(t)->from_float(vf, vb, (int64_t)n);
            kp[l] = kb, vp[l] = vb;
            view[l] = (llc_kv_view){&kp[l], &vp[l], INT_MAX, kv_dim, (size_t)hd, t};
        }
        double best = 1e9;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = now();
            for (int it = 0; it < 16; it++)
                for (int h = 0; h < kv_heads; h++) llc_attn(NULL, &view[it], h, hd, q, rows, n_pos, 0.125f, out);
            double dt = (now() - t0) / (16.0 * kv_heads * n_pos);
            best = dt < best ? dt : best;
        }
        printf("  KV %-5s %.2f ns per position and KV head (16 layers x 8 heads: %.2f ms per token, %.1f GB/s)\n", llc_type_name(t), best * 1e9,
               best * 16 * kv_heads * n_pos * 1e3, 2.0 * rs / kv_heads / n_pos / (best * 1e9));
        for (int l = 0; l < 16; l++) free((void *)kp[l]), free((void *)vp[l]);
    }
    return 0;
}
