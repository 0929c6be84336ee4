/*
 * One weight type's matrix-vector product on one thread, outside the model: GB/s of weights and ns
 * per block, for measuring kernel changes (the decode roofline is the machine's read bandwidth).
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc bench/bench_matvec.c build/libllamac.a -lcjson -lm -lpthread -o /tmp/bench_matvec
 *   /tmp/bench_matvec q4_0        (LLAMAC_ISA=scalar|avx2|avx512 to compare kernels)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/dispatch.h"
#include "kernels/matmul.h"
#include "kernels/types.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int type = llc_type_from_name(argc > 1 ? argv[1] : "q4_0");
    if (type < 0) {
        fprintf(stderr, "unknown type\n");
        return 2;
    }
    const int64_t cols = 2048, rows = 131072; /* 128K rows: larger than any cache */
    size_t rb = llc_row_size((uint32_t)type, cols);
    char *w = malloc(rb * (size_t)rows);
    float *row = malloc((size_t)cols * sizeof *row), *out = malloc((size_t)rows * sizeof *out);
    if (!w || !row || !out) return 1;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) row[i] = (float)((r * 7 + i * 13) % 17) - 8;
        llc_type_get((uint32_t)type)->from_float(row, w + (size_t)r * rb, cols);
    }
    void *act = malloc(llc_act_row_bytes((uint32_t)type, cols));
    llc_act_convert((uint32_t)type, row, act, cols, 1);
    const llc_kernels *k = llc_kernels_get();
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        for (int64_t r = 0; r < rows; r++) out[r] = k->vec_dot[type](cols, w + (size_t)r * rb, act);
        double dt = now() - t0;
        printf("%s %s: %.2f GB/s, %.2f ns per 32 weights\n", k->name, llc_type_name((uint32_t)type),
               (double)rb * (double)rows / dt / 1e9, dt * 1e9 / ((double)rows * (double)cols / 32.0));
    }
    free(w);
    free(row);
    free(out);
    free(act);
    return 0;
}
