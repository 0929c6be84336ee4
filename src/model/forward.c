/*
 * The Llama forward pass, batched (model/forward.h).
 *
 * The tokens of a batch — any mix of sequences, prompt chunks and single decode tokens — go through
 * the layers as one matrix, so every weight is read once per batch. Per layer:
 *   h = x + Wo · attention(rope(Wq · norm(x)), rope(Wk · norm(x)), Wv · norm(x))
 *   x = h + Wdown · (silu(Wgate · norm(h)) * (Wup · norm(h)))
 * then logits = Wout · norm(x) for the tokens whose logits are wanted. Only attention looks at which
 * sequence a token belongs to: its keys and values go to the sequence's slot in the paged cache, and
 * it attends to its own sequence's positions. Accumulation is f32 throughout; see kernels/. The cache
 * may store K and V as f16, bf16 or q8_0: each row is rounded once, on its way in.
 */
#include "model/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/threadpool.h"
#include "kernels/attention.h"
#include "kernels/ops.h"
#include "kernels/types.h"
#include "model/model.h"
#include "model/tensors.h"

/* Tokens per forward chunk: a bigger batch runs as several chunks. Bounds the scratch memory. */
#define MAX_BATCH 256

/* Split-KV limits (the rule is with the attention below): batches of fewer than SPLIT_ITEMS
 * (token, KV head) items cut each item's positions into at most SPLIT_MAX chunks of at least
 * SPLIT_MIN positions. */
#define SPLIT_ITEMS 64
#define SPLIT_MAX 16
#define SPLIT_MIN 256
/* Unsplit batches (prompts): a task is up to this many consecutive tokens of one sequence and one KV
 * head, which share one walk over the keys (llc_attn_tokens: a typed cache converted once for them). */
#define MAX_TOK_BLOCK 16

struct llc_forward {
    const llamac_model *m;
    int n_threads;
    llc_pool *pool;
    double *rope_freq;        /* rope_dim/2 angular frequencies */
    /* scratch for one chunk of up to MAX_BATCH tokens */
    float *x, *xb, *q, *k, *v, *attn, *hb, *hb2;
    float *rope_cs;           /* [token][rope_dim/2][cos, sin] */
    float *attn_part;         /* split-KV partial results: [SPLIT_ITEMS][SPLIT_MAX] (see attention) */
    void *act;                /* activations converted for the weight type */
    /* the chunk's tokens: position, sequence */
    const int32_t *pos, *seq;
    /* per sequence of the batch, one layer's view of its blocks (rebuilt per layer) */
    llc_kv_view *views;
    int *n_blocks;            /* blocks of each sequence the batch reaches */
    const void **block_ptrs;  /* [2][Σ blocks]: K then V pointers the views point into */
    int seq_cap, ptr_cap;     /* grown when a batch needs more, so a steady state allocates nothing */
};

/* Largest converted activation row any matmul of the model needs. */
static size_t max_act_bytes(const llamac_model *m) {
    size_t best = llc_act_row_bytes(m->output.type, m->output.n_cols);
    for (int l = 0; l < m->hp.n_layers; l++)
        for (int i = 0; i < llc_n_tensors; i++) {
            if (!llc_tensors[i].per_layer || llc_tensors[i].vector) continue;
            const llc_tensor *w = llc_model_matrix(m, &llc_tensors[i], l);
            size_t b = llc_act_row_bytes(w->type, w->n_cols);
            if (b > best) best = b;
        }
    return best;
}

size_t llc_forward_scratch_bytes(const llc_hparams *hp, size_t act_row_bytes) {
    /* what llc_forward_create allocates below */
    size_t kv_dim = (size_t)hp->n_kv_heads * hp->head_dim, dim = (size_t)hp->dim, ffn = (size_t)hp->ffn_dim;
    size_t group = (size_t)(hp->n_heads / hp->n_kv_heads);
    return (size_t)hp->rope_dim / 2 * sizeof(double) + MAX_BATCH * (4 * dim + 2 * kv_dim + 2 * ffn + (size_t)hp->rope_dim) * sizeof(float) +
           (size_t)SPLIT_ITEMS * SPLIT_MAX * llc_attn_part_floats((int)group, hp->head_dim) * sizeof(float) + MAX_BATCH * act_row_bytes;
}

llc_forward *llc_forward_create(const llamac_model *m, int n_threads, llamac_error *err) {
    const llc_hparams *hp = &m->hp;
    if (n_threads < 0 || n_threads > 1024) {
        llc_fail(err, "invalid thread count %d", n_threads);
        return NULL;
    }
    if (n_threads == 0) n_threads = llc_n_cores();
    llc_forward *f = calloc(1, sizeof *f);
    if (!f) {
        llc_fail(err, "out of memory");
        return NULL;
    }
    f->m = m;
    size_t kv_dim = (size_t)hp->n_kv_heads * hp->head_dim, dim = (size_t)hp->dim, ffn = (size_t)hp->ffn_dim;
    f->rope_freq = malloc((size_t)hp->rope_dim / 2 * sizeof(double));
    f->x = malloc(MAX_BATCH * dim * sizeof(float));
    f->xb = malloc(MAX_BATCH * dim * sizeof(float));
    f->q = malloc(MAX_BATCH * dim * sizeof(float));
    f->attn = malloc(MAX_BATCH * dim * sizeof(float));
    f->k = malloc(MAX_BATCH * kv_dim * sizeof(float));
    f->v = malloc(MAX_BATCH * kv_dim * sizeof(float));
    f->hb = malloc(MAX_BATCH * ffn * sizeof(float));
    f->hb2 = malloc(MAX_BATCH * ffn * sizeof(float));
    f->rope_cs = malloc(MAX_BATCH * (size_t)hp->rope_dim * sizeof(float));
    /* every partial result a split batch can produce, so decoding allocates nothing */
    size_t group = (size_t)(hp->n_heads / hp->n_kv_heads);
    f->attn_part = malloc((size_t)SPLIT_ITEMS * SPLIT_MAX * llc_attn_part_floats((int)group, hp->head_dim) * sizeof(float));
    f->act = malloc(MAX_BATCH * max_act_bytes(m));
    f->pool = llc_pool_create(n_threads);
    if (!f->rope_freq || !f->x || !f->xb || !f->q || !f->attn || !f->k || !f->v || !f->hb || !f->hb2 || !f->rope_cs ||
        !f->attn_part || !f->act || !f->pool) {
        llc_fail(err, "out of memory for the forward pass's scratch");
        llc_forward_free(f);
        return NULL;
    }
    f->n_threads = llc_pool_size(f->pool);
    if (!llc_model_pack(m, f->pool, err)) {
        llc_forward_free(f);
        return NULL;
    }
    for (int i = 0; i < hp->rope_dim / 2; i++) {
        double fr = pow((double)hp->rope_theta, -2.0 * i / hp->rope_dim);
        if (m->rope_freqs) fr /= m->rope_freqs[i];
        f->rope_freq[i] = fr;
    }
    return f;
}

void llc_forward_free(llc_forward *f) {
    if (!f) return;
    llc_pool_free(f->pool);
    free(f->rope_freq);
    free(f->x);
    free(f->xb);
    free(f->q);
    free(f->attn);
    free(f->k);
    free(f->v);
    free(f->hb);
    free(f->hb2);
    free(f->rope_cs);
    free(f->attn_part);
    free(f->act);
    free(f->views);
    free(f->n_blocks);
    free(f->block_ptrs);
    free(f);
}

int llc_forward_n_threads(const llc_forward *f) { return f->n_threads; }

/* ---- attention ------------------------------------------------------------------------------------ */
/*
 * The kernel (kernels/attention.c) attends the query heads that share one KV head (a GQA group) over a
 * range of positions with a tiled online softmax. Here the batch is cut into tasks for the threads:
 *
 *   item = (KV head g, token t): the group's query heads of token t over positions [0, pos_t] of its sequence.
 *   Unsplit, consecutive tokens of one sequence go together (up to MAX_TOK_BLOCK, fewer so that a batch
 *   keeps SPLIT_ITEMS tasks): their walk over the keys is shared, each token's arithmetic unchanged.
 *
 * The rule, decided by the shape only (never by the thread count, so results are bit-identical for any
 * number of threads):
 *   - n_tok * n_kv_heads >= SPLIT_ITEMS (a prompt): one task per item, the normalized output written
 *     directly. There are enough items to balance the threads.
 *   - fewer items (decoding one or a few tokens) and a context past SPLIT_MIN positions: too few
 *     items, or too unequal, to keep every thread busy (8 KV heads on 3 or 16 threads), so each item's
 *     positions are cut into chunks of max(SPLIT_MIN, n_pos / SPLIT_MAX) positions rounded up to whole
 *     tiles (at most SPLIT_MAX chunks). Each chunk task writes its partial result (max, sum,
 *     unnormalized output) to its slot of f->attn_part, and after the parallel part the caller merges
 *     each item's chunks exactly (llc_attn_merge, the log-sum-exp combination; a few thousand flops).
 *     SPLIT_MIN (4 tiles) keeps the merge negligible next to a chunk's work.
 * Tasks are enumerated KV-head-major (a thread walking one KV head's tokens keeps those K/V rows in its
 * cache) and each thread takes a contiguous run of tasks of equal total work (positions), so a prompt's
 * causal triangle and a decode's chunks both balance.
 */

typedef struct attn_job {
    llc_forward *f;
    int n_tok;
    bool split;                     /* chunked items, partial results to f->attn_part */
    int tok_block;                  /* unsplit: tokens of one sequence per task (tok_blocks) */
    const llc_attn_ops *ops;
} attn_job;

/* Chunk length of an item of n_pos positions (split batches): whole tiles, at most SPLIT_MAX chunks. */
static int split_chunk_len(int n_pos) {
    int len = (n_pos + SPLIT_MAX - 1) / SPLIT_MAX;
    if (len < SPLIT_MIN) len = SPLIT_MIN;
    return (len + LLC_ATTN_TILE - 1) / LLC_ATTN_TILE * LLC_ATTN_TILE;
}

static double attn_total_work(const attn_job *j) {
    /* Σ over tokens of their positions, times the KV heads (chunking does not change the sum) */
    double per_head = 0;
    for (int t = 0; t < j->n_tok; t++) per_head += j->f->pos[t] + 1;
    return per_head * j->f->m->hp.n_kv_heads;
}

static void attn_task(void *ctx, int ith, int nth) {
    const attn_job *j = ctx;
    llc_forward *f = j->f;
    const llc_hparams *hp = &f->m->hp;
    int hd = hp->head_dim, group = hp->n_heads / hp->n_kv_heads;
    float scale = 1.0f / sqrtf((float)hd);
    size_t part_floats = llc_attn_part_floats(group, hd);
    double total = attn_total_work(j), from = total * ith / nth, to = total * (ith + 1) / nth, at = 0;
    /* Walk every task in order, running those whose work starts in [from, to). */
    for (int g = 0; g < hp->n_kv_heads && at < to; g++)
        for (int t = 0, t_end; t < j->n_tok && at < to; t = t_end) {
            int n_pos = f->pos[t] + 1;
            const llc_kv_view *kv = &f->views[f->seq[t]];
            size_t rows_at = (size_t)t * hp->dim + (size_t)g * group * hd; /* the group's rows in q and attn */
            const float *q = f->q + rows_at;
            t_end = t + 1;
            if (!j->split) {
                int np[MAX_TOK_BLOCK], work = n_pos;
                for (np[0] = n_pos; t_end < j->n_tok && t_end - t < j->tok_block && f->seq[t_end] == f->seq[t]; t_end++)
                    work += np[t_end - t] = f->pos[t_end] + 1;
                if (at >= from) llc_attn_tokens(j->ops, kv, g, hd, t_end - t, np, q, (size_t)hp->dim, group, scale, f->attn + rows_at);
                at += work;
                continue;
            }
            int len = split_chunk_len(n_pos);
            float *parts = f->attn_part + ((size_t)t * hp->n_kv_heads + g) * SPLIT_MAX * part_floats;
            for (int c = 0, lo = 0; lo < n_pos && at < to; c++, lo += len) {
                int hi = n_pos - lo < len ? n_pos : lo + len;
                if (at >= from) llc_attn_partial(j->ops, kv, g, hd, q, group, lo, hi, scale, parts + (size_t)c * part_floats);
                at += hi - lo;
            }
        }
}

/* Attention of the chunk's n tokens (f->pos, f->seq) over their sequences' views: f->q in, f->attn out. */
static void attention(llc_forward *f, int n) {
    const llc_hparams *hp = &f->m->hp;
    attn_job aj = {.f = f, .n_tok = n, .ops = &llc_kernels_get()->attn};
    int max_pos = 0;
    for (int t = 0; t < n; t++) max_pos = f->pos[t] + 1 > max_pos ? f->pos[t] + 1 : max_pos;
    aj.split = (long)n * hp->n_kv_heads < SPLIT_ITEMS && max_pos > SPLIT_MIN;
    /* at least SPLIT_ITEMS tasks still, to balance the threads */
    long tb = (long)n * hp->n_kv_heads / SPLIT_ITEMS;
    aj.tok_block = tb < 1 ? 1 : tb > MAX_TOK_BLOCK ? MAX_TOK_BLOCK : (int)tb;
    double work = attn_total_work(&aj) * hp->head_dim * (hp->n_heads / hp->n_kv_heads);
    llc_pool_run_n(f->pool, attn_task, &aj, work < 65536 ? 1 : f->n_threads);
    if (!aj.split) return;
    /* the merge, on this thread: per item a few chunks of group x (head_dim + 2) floats */
    int group = hp->n_heads / hp->n_kv_heads, hd = hp->head_dim;
    size_t part_floats = llc_attn_part_floats(group, hd);
    for (int t = 0; t < n; t++)
        for (int g = 0; g < hp->n_kv_heads; g++) {
            int n_pos = f->pos[t] + 1, len = split_chunk_len(n_pos);
            const float *parts = f->attn_part + ((size_t)t * hp->n_kv_heads + g) * SPLIT_MAX * part_floats;
            llc_attn_merge(parts, (n_pos + len - 1) / len, group, hd, f->attn + (size_t)t * hp->dim + (size_t)g * group * hd);
        }
}


/* ---- one chunk of tokens through the network -------------------------------------------------------- */

static void rope_tables(llc_forward *f, const int32_t *pos, int n) {
    int half = f->m->hp.rope_dim / 2;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < half; i++) {
            double a = (double)pos[t] * f->rope_freq[i];
            f->rope_cs[((size_t)t * half + i) * 2] = (float)cos(a);
            f->rope_cs[((size_t)t * half + i) * 2 + 1] = (float)sin(a);
        }
}

/* outs[i] = rmsnorm(x) · Ws[i]ᵀ for the n tokens of the chunk. Matrices whose activations have the same
 * type (Q, K and V of one type, usually) share one fused normalize-and-convert pass and one matmul job. */
static void project(llc_forward *f, int n_mats, float *const *outs, const llc_tensor *const *Ws, const float *norm, int n) {
    const llc_hparams *hp = &f->m->hp;
    for (int i = 0; i < n_mats;) {
        int k = i + 1;
        while (k < n_mats && llc_act_type(Ws[k]->type) == llc_act_type(Ws[i]->type)) k++;
        llc_act_rmsnorm(f->pool, Ws[i]->type, f->xb, f->act, f->x, norm, hp->rms_eps, (int64_t)hp->dim, n);
        llc_matmul_multi(f->pool, k - i, outs + i, Ws + i, f->act, n);
        i = k;
    }
}

/* Layer l's view of every sequence of the batch (kv/kv_row.h), pointing into f->block_ptrs. */
static void build_views(llc_forward *f, llc_kv_pool *kv, const llc_batch *b, const int *n_blocks, int l) {
    const void **kp = f->block_ptrs, **vp = f->block_ptrs + f->ptr_cap / 2;
    for (int s = 0; s < b->n_seqs; s++) {
        f->views[s] = llc_kv_layer_view(kv, l, b->block_tables[s], n_blocks[s], f->m->hp.head_dim, kp, vp);
        kp += n_blocks[s];
        vp += n_blocks[s];
    }
}

/* Runs the chunk's n tokens (f->pos, f->seq set). Writes the logits of the n_out tokens out_idx (chunk
 * indices) to logits. */
static void forward_chunk(llc_forward *f, llc_kv_pool *kv, const llc_batch *b, const int *n_blocks, const int32_t *tokens, int n,
                          const int32_t *out_idx, int n_out, float *logits) {
    const llamac_model *m = f->m;
    const llc_hparams *hp = &m->hp;
    size_t dim = (size_t)hp->dim, kv_dim = (size_t)hp->n_kv_heads * hp->head_dim, ffn = (size_t)hp->ffn_dim;

    for (int t = 0; t < n; t++) llc_tensor_get_row(&m->tok_embd, tokens[t], f->x + t * dim);
    rope_tables(f, f->pos, n);
    void (*rope)(float *, const float *, int) = m->rope_half_split ? llc_rope_half_split : llc_rope;

    for (int l = 0; l < hp->n_layers; l++) {
        const llc_layer *L = &m->layers[l];
        float *qkv_out[3] = {f->q, f->k, f->v};
        const llc_tensor *qkv[3] = {&L->wq, &L->wk, &L->wv};
        project(f, 3, qkv_out, qkv, L->attn_norm, n);
        /* RoPE on the way into the cache: Q and K are rotated in place, then each token's K and V
         * rows go to its sequence's slot (converted to the cache's type there). */
        for (int t = 0; t < n; t++) {
            const float *cs = f->rope_cs + (size_t)t * hp->rope_dim;
            for (int h = 0; h < hp->n_heads; h++) rope(f->q + t * dim + (size_t)h * hp->head_dim, cs, hp->rope_dim);
            float *kt = f->k + t * kv_dim;
            for (int h = 0; h < hp->n_kv_heads; h++) rope(kt + (size_t)h * hp->head_dim, cs, hp->rope_dim);
            llc_kv_store(kv, l, b->block_tables[f->seq[t]], f->pos[t], kt, f->v + t * kv_dim);
        }

        build_views(f, kv, b, n_blocks, l);
        attention(f, n);
        llc_matmul(f->pool, f->xb, &L->wo, f->attn, n, f->act, 0);
        for (size_t i = 0; i < (size_t)n * dim; i++) f->x[i] += f->xb[i];

        if (llc_act_type(L->w_up.type) == llc_act_type(L->w_gate.type)) {
            llc_act_rmsnorm(f->pool, L->w_gate.type, f->xb, f->act, f->x, L->ffn_norm, hp->rms_eps, (int64_t)dim, n);
            llc_matmul_swiglu(f->pool, f->hb, f->hb2, &L->w_gate, &L->w_up, f->act, n);
        } else {
            float *gate_up_out[2] = {f->hb, f->hb2};
            const llc_tensor *gate_up[2] = {&L->w_gate, &L->w_up};
            project(f, 2, gate_up_out, gate_up, L->ffn_norm, n);
            for (size_t i = 0; i < (size_t)n * ffn; i++) f->hb[i] = llc_silu(f->hb[i]) * f->hb2[i];
        }
        llc_matmul(f->pool, f->xb, &L->w_down, f->hb, n, f->act, 0);
        for (size_t i = 0; i < (size_t)n * dim; i++) f->x[i] += f->xb[i];
    }

    if (n_out == 0) return;
    for (int i = 0; i < n_out; i++)
        llc_rmsnorm(f->xb + (size_t)i * dim, f->x + (size_t)out_idx[i] * dim, m->output_norm, (int)dim, hp->rms_eps);
    llc_matmul(f->pool, logits, &m->output, f->xb, n_out, f->act, 0);
}

bool llc_forward_batch(llc_forward *f, llc_kv_pool *kv, const llc_batch *b, llamac_error *err) {
    if (b->n_tok <= 0) return llc_fail(err, "nothing to evaluate (no tokens)");
    /* The batch's indices address scratch arrays: a malformed one is refused, not followed. */
    for (int t = 0; t < b->n_tok; t++)
        if (b->seq[t] < 0 || b->seq[t] >= b->n_seqs || b->pos[t] < 0)
            return llc_fail(err, "batch token %d: sequence %d or position %d out of range", t, b->seq[t], b->pos[t]);
    for (int i = 0; i < b->n_out; i++)
        if (b->out_idx[i] < 0 || b->out_idx[i] >= b->n_tok || (i > 0 && b->out_idx[i] <= b->out_idx[i - 1]))
            return llc_fail(err, "batch logits index %d is out of range or out of order", b->out_idx[i]);
    if (llc_kv_type(kv) != LLC_F32 && f->m->hp.head_dim > LLC_ATTN_SCRATCH)
        return llc_fail(err, "a KV cache of type %s needs head_dim <= %d (the model has %d)", llc_type_name(llc_kv_type(kv)),
                        LLC_ATTN_SCRATCH, f->m->hp.head_dim);
    /* Blocks each sequence's view needs: through its last position in the batch. */
    int bs = llc_kv_block_size(kv);
    if (b->n_seqs > f->seq_cap) {
        llc_kv_view *v = realloc(f->views, (size_t)b->n_seqs * sizeof *v);
        if (v) f->views = v;
        int *nb = realloc(f->n_blocks, (size_t)b->n_seqs * sizeof *nb);
        if (nb) f->n_blocks = nb;
        if (!v || !nb) return llc_fail(err, "out of memory");
        f->seq_cap = b->n_seqs;
    }
    int *n_blocks = f->n_blocks;
    memset(n_blocks, 0, (size_t)b->n_seqs * sizeof *n_blocks);
    for (int t = 0; t < b->n_tok; t++) {
        int need = b->pos[t] / bs + 1;
        if (need > n_blocks[b->seq[t]]) n_blocks[b->seq[t]] = need;
    }
    long total = 0;
    for (int s = 0; s < b->n_seqs; s++) total += n_blocks[s];
    if (2 * total > f->ptr_cap) {
        const void **p = realloc(f->block_ptrs, (size_t)(2 * total) * sizeof *p);
        if (!p) return llc_fail(err, "out of memory");
        f->block_ptrs = p;
        f->ptr_cap = (int)(2 * total);
    }
    int o = 0;
    size_t n_vocab = (size_t)f->m->hp.n_vocab;
    for (int done = 0; done < b->n_tok; done += MAX_BATCH) {
        int c = b->n_tok - done < MAX_BATCH ? b->n_tok - done : MAX_BATCH;
        int32_t out_idx[MAX_BATCH];
        int n_out = 0, o0 = o;
        for (; o < b->n_out && b->out_idx[o] < done + c; o++) out_idx[n_out++] = b->out_idx[o] - done;
        f->pos = b->pos + done;
        f->seq = b->seq + done;
        forward_chunk(f, kv, b, n_blocks, b->tokens + done, c, out_idx, n_out, b->logits + (size_t)o0 * n_vocab);
    }
    return true;
}
