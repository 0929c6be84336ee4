#include "kernels/matmul.h"

#include "base/fp16.h"
#include "kernels/dispatch.h"
#include "kernels/packed.h"
#include "kernels/types.h"

uint32_t llc_act_type(uint32_t wtype) {
    switch (wtype) {
    case LLC_Q8_0:
    case LLC_Q4_0: return LLC_Q8_0;
    case LLC_Q4_K:
    case LLC_Q6_K:
    case LLC_Q8_K: return LLC_Q8_K;
    case LLC_BF16: return LLC_BF16;
    default: return LLC_F32;
    }
}

size_t llc_act_row_bytes(uint32_t wtype, int64_t n_cols) {
    uint32_t at = llc_act_type(wtype);
    if (at == LLC_Q8_0) return llc_q8_act_tail(n_cols / QK8_0) + (size_t)(n_cols / QK8_0) * 8;
    return llc_row_size(at, n_cols);
}

void llc_act_convert(uint32_t wtype, const float *x, void *dst, int64_t n_cols, int n_tok) {
    uint32_t at = llc_act_type(wtype);
    const llc_type_traits *tt = llc_type_get(at);
    size_t rb = llc_act_row_bytes(wtype, n_cols);
    for (int t = 0; t < n_tok; t++) {
        char *row = (char *)dst + (size_t)t * rb;
        tt->from_float(x + (size_t)t * n_cols, row, n_cols);
        if (at != LLC_Q8_0) continue;
        int64_t nb = n_cols / QK8_0;
        const block_q8_0 *blk = (const block_q8_0 *)row;
        float *scales = (float *)(row + llc_q8_act_tail(nb));
        int32_t *sums = (int32_t *)(scales + nb);
        for (int64_t b = 0; b < nb; b++) {
            int32_t sum = 0;
            for (int j = 0; j < QK8_0; j++) sum += blk[b].qs[j];
            scales[b] = llc_fp16_to_fp32(blk[b].d);
            sums[b] = sum;
        }
    }
}

typedef struct matmul_job {
    float *out;
    const llc_tensor *W;
    const void *act;
    size_t act_rb;
    int n_tok;
    llc_vec_dot_fn dot;
    llc_gemm4_fn gemm4;
    llc_packed_gemm_fn packed;
} matmul_job;

/* Rows are split across threads; each thread walks its rows in tiles so that a tile of weight rows
 * stays in cache while every activation row passes over it (one read of W for the whole batch). */
#define ROW_TILE 16

/* Packed weights: threads split the groups of 16 rows; each group's weights stay in cache while every
 * tile of up to LLC_PACK_TOKENS activation rows passes over them. */
static void packed_task(const matmul_job *j, int ith, int nth) {
    long lo, hi;
    llc_split((long)(j->W->n_rows / LLC_PACK_ROWS), ith, nth, &lo, &hi);
    size_t gb = llc_packed_group_bytes(j->W->type, j->W->n_cols), ldo = (size_t)j->W->n_rows;
    for (long g = lo; g < hi; g++)
        for (int t = 0; t < j->n_tok; t += LLC_PACK_TOKENS) {
            int nt = j->n_tok - t < LLC_PACK_TOKENS ? j->n_tok - t : LLC_PACK_TOKENS;
            j->packed(j->W->n_cols, (const char *)j->W->packed + (size_t)g * gb, (const char *)j->act + (size_t)t * j->act_rb,
                      j->act_rb, nt, j->out + (size_t)t * ldo + (size_t)g * LLC_PACK_ROWS, ldo);
        }
}

static void matmul_task(void *ctx, int ith, int nth) {
    const matmul_job *j = ctx;
    if (j->packed) {
        packed_task(j, ith, nth);
        return;
    }
    long lo, hi;
    llc_split((long)j->W->n_rows, ith, nth, &lo, &hi);
    const char *w = j->W->data;
    size_t rb = j->W->row_bytes, ldo = (size_t)j->W->n_rows;
    if (j->gemm4 && j->n_tok >= 4) {
        /* Tiles of 4 rows x 4 tokens; the rows and tokens left over go through vec_dot. */
        long r = lo;
        for (; r + 4 <= hi; r += 4) {
            int t = 0;
            for (; t + 4 <= j->n_tok; t += 4)
                j->gemm4(j->W->n_cols, w + (size_t)r * rb, rb, (const char *)j->act + (size_t)t * j->act_rb, j->act_rb,
                         j->out + (size_t)t * ldo + r, ldo);
            for (; t < j->n_tok; t++)
                for (long k = r; k < r + 4; k++)
                    j->out[(size_t)t * ldo + k] = j->dot(j->W->n_cols, w + (size_t)k * rb, (const char *)j->act + (size_t)t * j->act_rb);
        }
        for (; r < hi; r++)
            for (int t = 0; t < j->n_tok; t++)
                j->out[(size_t)t * ldo + r] = j->dot(j->W->n_cols, w + (size_t)r * rb, (const char *)j->act + (size_t)t * j->act_rb);
        return;
    }
    for (long r0 = lo; r0 < hi; r0 += ROW_TILE) {
        long r1 = r0 + ROW_TILE < hi ? r0 + ROW_TILE : hi;
        for (int t = 0; t < j->n_tok; t++) {
            const void *xa = (const char *)j->act + (size_t)t * j->act_rb;
            float *o = j->out + (size_t)t * (size_t)j->W->n_rows;
            for (long r = r0; r < r1; r++) o[r] = j->dot(j->W->n_cols, w + (size_t)r * j->W->row_bytes, xa);
        }
    }
}

void llc_matmul(llc_pool *pool, float *out, const llc_tensor *W, const void *x, int n_tok, void *act, int x_is_converted) {
    if (!x_is_converted) {
        llc_act_convert(W->type, x, act, W->n_cols, n_tok);
        x = act;
    }
    const llc_kernels *k = llc_kernels_get();
    matmul_job j = {out, W, x, llc_act_row_bytes(W->type, W->n_cols), n_tok, k->vec_dot[W->type], k->gemm4[W->type],
                    W->packed ? llc_packed_kernel(W->type) : NULL};
    /* Below ~64K multiply-adds a second thread costs more to wake than it saves. */
    double work = (double)W->n_rows * (double)W->n_cols * n_tok;
    llc_pool_run_n(pool, matmul_task, &j, work < 65536 ? 1 : llc_pool_size(pool));
}

void llc_tensor_get_row(const llc_tensor *W, int64_t r, float *dst) {
    llc_type_get(W->type)->to_float((const char *)W->data + (size_t)r * W->row_bytes, dst, W->n_cols);
}

bool llc_tensor_packable(const llc_tensor *W) {
    return llc_packed_kernel(W->type) && W->n_rows % LLC_PACK_ROWS == 0 && W->n_cols % 32 == 0 && W->n_cols > 0;
}

size_t llc_tensor_packed_bytes(const llc_tensor *W) {
    return (size_t)(W->n_rows / LLC_PACK_ROWS) * llc_packed_group_bytes(W->type, W->n_cols);
}

void llc_tensor_pack(const llc_tensor *W, void *dst, int64_t g0, int64_t g1) {
    llc_pack_groups(W->type, W->data, W->row_bytes, W->n_cols, g0, g1, dst);
}
