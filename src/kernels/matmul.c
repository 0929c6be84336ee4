#include "kernels/matmul.h"

#include <stdatomic.h>

#include "kernels/kernels.h"
#include "kernels/ops.h"
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
    size_t rb = llc_act_row_bytes(wtype, n_cols);
    for (int t = 0; t < n_tok; t++) {
        if (at == LLC_Q8_0) llc_kernels_get()->act_q8_0(x + (size_t)t * n_cols, (char *)dst + (size_t)t * rb, n_cols, 1.0f, NULL);
        else llc_type_get(at)->from_float(x + (size_t)t * n_cols, (char *)dst + (size_t)t * rb, n_cols);
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
} matmul_job;

/* Rows are split across threads; each thread walks its rows in tiles so that a tile of weight rows
 * stays in cache while every activation row passes over it (one read of W for the whole batch). */
#define ROW_TILE 16

static void matmul_task(void *ctx, int ith, int nth) {
    const matmul_job *j = ctx;
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

typedef struct convert_job {
    uint32_t wtype;
    const float *x;
    const float *norm; /* RMSNorm weights, or NULL: x as it is */
    float eps;
    void *act;
    int64_t n_cols;
    int n_tok;
    float *scratch;    /* rows of normalized x, for activation types with no fused conversion */
} convert_job;

static void convert_task(void *ctx, int ith, int nth) {
    const convert_job *j = ctx;
    long lo, hi;
    llc_split(j->n_tok, ith, nth, &lo, &hi);
    size_t rb = llc_act_row_bytes(j->wtype, j->n_cols);
    for (long t = lo; t < hi; t++) {
        const float *x = j->x + (size_t)t * j->n_cols;
        char *dst = (char *)j->act + (size_t)t * rb;
        if (!j->norm) {
            llc_act_convert(j->wtype, x, dst, j->n_cols, 1);
        } else if (llc_act_type(j->wtype) == LLC_Q8_0) {
            /* RMSNorm fused into the quantization: x is read once and the normalized row never stored */
            llc_kernels_get()->act_q8_0(x, dst, j->n_cols, llc_rmsnorm_scale(x, (int)j->n_cols, j->eps), j->norm);
        } else {
            float *row = j->scratch + (size_t)t * j->n_cols;
            llc_rmsnorm(row, x, j->norm, (int)j->n_cols, j->eps);
            llc_act_convert(j->wtype, row, dst, j->n_cols, 1);
        }
    }
}

/* ---- packed matrices ---------------------------------------------------------------------------
 * The row groups of up to three matrices that read the same activations (Q, K and V) are split across
 * threads as one range, so they cost one dispatch; gate and up are paired group by group, with SwiGLU
 * applied on the way out, so neither product is written to memory. Each group's weights stay in cache
 * while every tile of up to LLC_PACK_TOKENS activation rows passes over them. */
typedef struct packed_job {
    int n_mats;
    bool swiglu;
    const llc_tensor *W[3];
    llc_packed_gemm_fn kernel[3];
    float *out[3];
    const void *act;
    size_t act_rb;
    int n_tok;
    long total, chunk;  /* row groups in all, handed out chunk at a time */
    atomic_long next;   /* the first group no thread has taken */
} packed_job;

static long n_groups(const llc_tensor *W) { return (long)(W->n_rows / LLC_PACK_ROWS); }

static void packed_tile(const packed_job *j, int i, long g, int t, int nt, float *out, size_t ldo) {
    const llc_tensor *W = j->W[i];
    j->kernel[i](W->n_cols, (const char *)W->packed + (size_t)g * llc_packed_group_bytes(W->type, W->n_cols),
                 (const char *)j->act + (size_t)t * j->act_rb, j->act_rb, nt, out, ldo);
}

static void packed_range(const packed_job *j, long lo, long hi);

/* The groups are handed out in chunks from a shared counter rather than split in equal parts up front:
 * when one thread starts late (woken from sleep) or loses its core for a while (a busy machine), the
 * other takes over its share instead of waiting for it at the end. Four chunks per thread keep each
 * thread's reads in long runs for the prefetchers. */
static void packed_task(void *ctx, int ith, int nth) {
    (void)ith;
    (void)nth;
    packed_job *j = ctx;
    for (;;) {
        long lo = atomic_fetch_add_explicit(&j->next, j->chunk, memory_order_relaxed);
        if (lo >= j->total) return;
        long hi = lo + j->chunk < j->total ? lo + j->chunk : j->total;
        packed_range(j, lo, hi);
    }
}

static void packed_range(const packed_job *j, long lo, long hi) {
    for (long item = lo; item < hi; item++) {
        int i = 0;
        long g = item;
        while (g >= n_groups(j->W[i])) g -= n_groups(j->W[i++]);
        size_t ldo = (size_t)j->W[i]->n_rows;
        for (int t = 0; t < j->n_tok; t += LLC_PACK_TOKENS) {
            int nt = j->n_tok - t < LLC_PACK_TOKENS ? j->n_tok - t : LLC_PACK_TOKENS;
            float *out = j->out[i] + (size_t)t * ldo + (size_t)g * LLC_PACK_ROWS;
            if (!j->swiglu) {
                packed_tile(j, i, g, t, nt, out, ldo);
                continue;
            }
            float gate[LLC_PACK_TOKENS * LLC_PACK_ROWS], up[LLC_PACK_TOKENS * LLC_PACK_ROWS];
            packed_tile(j, 0, g, t, nt, gate, LLC_PACK_ROWS);
            packed_tile(j, 1, g, t, nt, up, LLC_PACK_ROWS);
            for (int tt = 0; tt < nt; tt++)
                for (int r = 0; r < LLC_PACK_ROWS; r++)
                    out[(size_t)tt * ldo + r] = llc_silu(gate[tt * LLC_PACK_ROWS + r]) * up[tt * LLC_PACK_ROWS + r];
        }
    }
}

/* A packed job for Ws if every one of them is packed; false otherwise. */
static bool packed_job_make(packed_job *j, int n, float *const *outs, const llc_tensor *const *Ws, const void *act, int n_tok) {
    *j = (packed_job){.n_mats = n, .act = act, .act_rb = llc_act_row_bytes(Ws[0]->type, Ws[0]->n_cols), .n_tok = n_tok};
    for (int i = 0; i < n; i++) {
        j->W[i] = Ws[i];
        j->out[i] = outs ? outs[i] : NULL;
        j->kernel[i] = Ws[i]->packed ? llc_kernels_get()->packed[Ws[i]->type] : NULL;
        if (!j->kernel[i]) return false;
    }
    return true;
}

static void packed_run(llc_pool *pool, packed_job *j, int n_threads) {
    j->total = 0;
    for (int i = 0; i < (j->swiglu ? 1 : j->n_mats); i++) j->total += n_groups(j->W[i]);
    j->chunk = j->total / (4L * n_threads);
    if (j->chunk < 1) j->chunk = 1;
    atomic_init(&j->next, 0);
    llc_pool_run_n(pool, packed_task, j, n_threads);
}

/* Below ~64K multiply-adds a second thread costs more to wake than it saves. */
static int threads_for(llc_pool *pool, double work) { return work < 65536 ? 1 : llc_pool_size(pool); }

void llc_matmul(llc_pool *pool, float *out, const llc_tensor *W, const void *x, int n_tok, void *act, int x_is_converted) {
    if (!x_is_converted) {
        /* a prompt's rows are converted by all threads; one token's alone */
        convert_job cj = {W->type, x, NULL, 0, act, W->n_cols, n_tok, NULL};
        llc_pool_run_n(pool, convert_task, &cj, n_tok < 4 ? 1 : llc_pool_size(pool));
        x = act;
    }
    double work = (double)W->n_rows * (double)W->n_cols * n_tok;
    packed_job pj;
    if (packed_job_make(&pj, 1, &out, &W, x, n_tok)) {
        packed_run(pool, &pj, threads_for(pool, work));
        return;
    }
    const llc_kernels *k = llc_kernels_get();
    matmul_job j = {out, W, x, llc_act_row_bytes(W->type, W->n_cols), n_tok, k->vec_dot[W->type], k->gemm4[W->type]};
    llc_pool_run_n(pool, matmul_task, &j, threads_for(pool, work));
}

void llc_matmul_multi(llc_pool *pool, int n, float *const *outs, const llc_tensor *const *Ws, const void *act, int n_tok) {
    packed_job pj;
    if (n <= 3 && packed_job_make(&pj, n, outs, Ws, act, n_tok)) {
        double work = 0;
        for (int i = 0; i < n; i++) work += (double)Ws[i]->n_rows * (double)Ws[i]->n_cols * n_tok;
        packed_run(pool, &pj, threads_for(pool, work));
        return;
    }
    for (int i = 0; i < n; i++) llc_matmul(pool, outs[i], Ws[i], act, n_tok, NULL, 1);
}

void llc_matmul_swiglu(llc_pool *pool, float *out, float *tmp, const llc_tensor *Wg, const llc_tensor *Wu, const void *act,
                       int n_tok) {
    const llc_tensor *Ws[2] = {Wg, Wu};
    packed_job pj;
    if (packed_job_make(&pj, 2, NULL, Ws, act, n_tok) && Wg->n_rows == Wu->n_rows) {
        pj.swiglu = true;
        pj.out[0] = out;
        packed_run(pool, &pj, threads_for(pool, 2.0 * (double)Wg->n_rows * (double)Wg->n_cols * n_tok));
        return;
    }
    llc_matmul(pool, out, Wg, act, n_tok, NULL, 1);
    llc_matmul(pool, tmp, Wu, act, n_tok, NULL, 1);
    for (size_t i = 0; i < (size_t)n_tok * (size_t)Wg->n_rows; i++) out[i] = llc_silu(out[i]) * tmp[i];
}

void llc_act_rmsnorm(llc_pool *pool, uint32_t wtype, float *scratch, void *act, const float *x, const float *w, float eps,
                     int64_t n_cols, int n_tok) {
    convert_job cj = {wtype, x, w, eps, act, n_cols, n_tok, scratch};
    llc_pool_run_n(pool, convert_task, &cj, n_tok < 4 ? 1 : llc_pool_size(pool));
}

void llc_tensor_get_row(const llc_tensor *W, int64_t r, float *dst) {
    llc_type_get(W->type)->to_float((const char *)W->data + (size_t)r * W->row_bytes, dst, W->n_cols);
}

bool llc_tensor_packable(const llc_tensor *W) {
    return llc_kernels_get()->packed[W->type] && W->n_rows % LLC_PACK_ROWS == 0 && W->n_cols % 32 == 0 && W->n_cols > 0;
}

size_t llc_tensor_packed_bytes(const llc_tensor *W) {
    return (size_t)(W->n_rows / LLC_PACK_ROWS) * llc_packed_group_bytes(W->type, W->n_cols);
}

void llc_tensor_pack(const llc_tensor *W, void *dst, int64_t g0, int64_t g1) {
    llc_pack_groups(W->type, W->data, W->row_bytes, W->n_cols, g0, g1, dst);
}
