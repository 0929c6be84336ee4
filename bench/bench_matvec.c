/*
 * One weight type's matrix-vector product on one thread, outside the model: GB/s of weights and ns
 * per block, for measuring kernel changes (the decode roofline is the machine's read bandwidth).
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc bench/bench_matvec.c build/libllamac.a -lcjson -lm -lpthread -o /tmp/bench_matvec
 *   /tmp/bench_matvec q4_0 [REPS]     (any type llamac computes with: f32 f16 bf16 q8_0 q4_0 q4_k q6_k;
 *                                      LLAMAC_ISA=scalar|avx2|avx512 to compare kernels)
 * Each repetition is printed, then the best and the median: on a shared machine the best is the
 * figure to compare, the median says how noisy the run was.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernels/types.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int type = llc_type_from_name(argc > 1 ? argv[1] : "q4_0");
    int reps = argc > 2 ? atoi(argv[2]) : 9;
    if (type < 0 || !llc_type_get((uint32_t)type) || reps < 1 || reps > 1000) {
        fprintf(stderr, "usage: bench_matvec TYPE [REPS]\n");
        return 2;
    }
    const llc_type_traits *tt = llc_type_get((uint32_t)type);
    const int64_t cols = 2048, rows = 131072; /* 128K rows: larger than any cache */
    size_t rb = llc_row_size((uint32_t)type, cols);
    char *w = malloc(rb * (size_t)rows);
    float *row = malloc((size_t)cols * sizeof *row), *out = malloc((size_t)rows * sizeof *out);
    double *gbs = malloc((size_t)reps * sizeof *gbs);
    if (!w || !row || !out || !gbs) return 1;
    /* 17 distinct rows, quantized once and repeated (the K-quant searches are slow to run 128K times) */
    for (int64_t r = 0; r < rows; r++) {
        if (r < 17) {
            for (int64_t i = 0; i < cols; i++) row[i] = (float)((r * 7 + i * 13) % 17) - 8;
            tt->from_float(row, w + (size_t)r * rb, cols);
        } else {
            memcpy(w + (size_t)r * rb, w + (size_t)(r % 17) * rb, rb);
        }
    }
    void *act = malloc(llc_act_row_bytes((uint32_t)type, cols));
    llc_act_convert((uint32_t)type, row, act, cols, 1);
    const llc_kernels *k = llc_kernels_get();
    double nblocks = (double)rows * (double)cols / tt->block_size;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now();
        for (int64_t r = 0; r < rows; r++) out[r] = k->vec_dot[type](cols, w + (size_t)r * rb, act);
        double dt = now() - t0;
        gbs[rep] = (double)rb * (double)rows / dt / 1e9;
        printf("%s %s: %.2f GB/s, %.2f ns per block of %d\n", k->name, llc_type_name((uint32_t)type), gbs[rep],
               dt * 1e9 / nblocks, tt->block_size);
    }
    qsort(gbs, (size_t)reps, sizeof *gbs, cmp_double);
    printf("%s %s: best %.2f GB/s (%.2f ns per block), median %.2f GB/s\n", k->name, llc_type_name((uint32_t)type), gbs[reps - 1],
           (double)tt->type_size / gbs[reps - 1], gbs[reps / 2]);
    free(w);
    free(row);
    free(out);
    free(act);
    free(gbs);
    return 0;
}
