/*
 * llc_matmul on one big matrix, packed (kernels/packed.h) against the file layout: GB/s of weights
 * for one token (decode) and G-op/s (2 per multiply-add) for a tile of tokens (prompts), best of 5.
 * "hot" repeats one token over 256 rows that stay in L2: what the kernel's instructions allow, so a
 * cold figure far below it is bound by memory, and one close to it by the kernel.
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc bench/bench_packed.c build/libllamac.a -lcjson -lm -lpthread -o /tmp/bench_packed
 *   /tmp/bench_packed q4_0 [threads] [tokens] [rows]   (rows: 131072 by default; 256 for the hot figure alone)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/matmul.h"
#include "kernels/packed.h"
#include "kernels/types.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The calling thread's CPU time: with one thread, the hot figure is then not lowered by other
 * programs sharing the core. */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int type = llc_type_from_name(argc > 1 ? argv[1] : "q4_0");
    int threads = argc > 2 ? atoi(argv[2]) : 1, n_tok = argc > 3 ? atoi(argv[3]) : 64;
    const int64_t cols = 2048, rows = argc > 4 ? atoll(argv[4]) : 131072; /* 128K rows: larger than any cache */
    if (type < 0 || threads < 1 || n_tok < 1 || rows < 256 || rows % 256) {
        fprintf(stderr, "usage: bench_packed TYPE [threads] [tokens] [rows, a multiple of 256]\n");
        return 2;
    }
    size_t rb = llc_row_size((uint32_t)type, cols);
    char *w = malloc(rb * (size_t)rows);
    float *x = malloc((size_t)(cols * n_tok) * sizeof *x), *out = malloc((size_t)(rows * n_tok) * sizeof *out);
    void *act = malloc((size_t)n_tok * llc_act_row_bytes((uint32_t)type, cols));
    if (!w || !x || !out || !act) return 1;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) x[i] = (float)((r * 7 + i * 13) % 17) - 8;
        llc_type_get((uint32_t)type)->from_float(x, w + (size_t)r * rb, cols);
    }
    for (int64_t i = 0; i < cols * n_tok; i++) x[i] = (float)((i * 5) % 11) - 5;
    llc_pool *pool = llc_pool_create(threads);
    llc_tensor W = {w, (uint32_t)type, cols, rows, rb, NULL};
    void *packed = llc_tensor_packable(&W) ? aligned_alloc(64, llc_tensor_packed_bytes(&W)) : NULL;
    if (packed) llc_tensor_pack(&W, packed, 0, rows / LLC_PACK_ROWS);
    for (int p = 0; p < (packed ? 2 : 1); p++) {
        W.packed = p ? packed : NULL;
        for (int nt = 1; nt <= n_tok; nt += n_tok > 1 ? n_tok - 1 : 1) {
            double best = 1e9;
            int reps = nt == 1 ? 5 : 2;
            int64_t r_used = nt == 1 ? rows : rows / 16; /* a slice of rows for the compute-bound case */
            llc_tensor V = W;
            V.n_rows = r_used;
            for (int rep = 0; rep < reps; rep++) {
                double t0 = now();
                llc_matmul(pool, out, &V, x, nt, act, 0);
                double dt = now() - t0;
                if (dt < best) best = dt;
            }
            if (nt == 1) {
                V.n_rows = 256;
                double hot = 1e9;
                for (int rep = 0; rep < 50; rep++) {
                    double t0 = threads == 1 ? cpu_now() : now();
                    for (int i = 0; i < 200; i++) llc_matmul(pool, out, &V, x, 1, act, 0);
                    double dt = ((threads == 1 ? cpu_now() : now()) - t0) / 200;
                    if (dt < hot) hot = dt;
                }
                printf("%s %-8s 1 token : %6.2f GB/s (hot in L2: %6.2f GB/s)\n", llc_type_name((uint32_t)type), p ? "packed" : "file",
                       (double)rb * (double)r_used / best / 1e9, (double)rb * 256.0 / hot / 1e9);
            }
            else
                printf("%s %-8s %d tokens: %6.1f G-op/s\n", llc_type_name((uint32_t)type), p ? "packed" : "file", nt,
                       2.0 * (double)r_used * (double)cols * nt / best / 1e9);
        }
    }
    llc_pool_free(pool);
    free(packed);
    free(w);
    free(x);
    free(out);
    free(act);
    return 0;
}
