/*
 * The Llama forward pass over a session's KV cache.
 *
 * A batch of tokens (a prompt, or one new token) goes through the layers as one matrix, so every
 * weight is read once per batch. Per layer:
 *   h = x + Wo · attention(rope(Wq · norm(x)), rope(Wk · norm(x)), Wv · norm(x))
 *   x = h + Wdown · (silu(Wgate · norm(h)) * (Wup · norm(h)))
 * then logits = Wout · norm(x). Accumulation is f32 throughout; see kernels/ for the dot products.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/threadpool.h"
#include "kernels/ops.h"
#include "kernels/types.h"
#include "model/model.h"

/* Tokens per forward chunk: a longer prompt runs as several chunks. Bounds the scratch memory. */
#define MAX_BATCH 256

struct llamac_session {
    const llamac_model *m;
    int n_ctx, pos, n_threads;
    llc_pool *pool;
    float *k_cache, *v_cache; /* [layer][position][kv_dim] */
    double *rope_freq;        /* rope_dim/2 angular frequencies */
    /* scratch for one chunk of up to MAX_BATCH tokens */
    float *x, *xb, *q, *k, *v, *attn, *hb, *hb2;
    float *rope_cs;           /* [token][rope_dim/2][cos, sin] */
    float *scores;            /* [thread][n_ctx] attention weights */
    void *act;                /* activations converted for the weight type */
    float *logits;            /* n_vocab, the last token's */
};

/* Largest converted activation row any matmul of the model needs. */
static size_t max_act_bytes(const llamac_model *m) {
    size_t best = llc_act_row_bytes(m->output.type, m->output.n_cols);
    for (int l = 0; l < m->hp.n_layers; l++) {
        const llc_layer *L = &m->layers[l];
        const llc_tensor *lt[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) {
            size_t b = llc_act_row_bytes(lt[i]->type, lt[i]->n_cols);
            if (b > best) best = b;
        }
    }
    return best;
}

llamac_session *llamac_session_create(const llamac_model *m, const llamac_session_params *params, llamac_error *err) {
    const llc_hparams *hp = &m->hp;
    int n_ctx = params ? params->n_ctx : 0;
    int n_threads = params ? params->n_threads : 0;
    if (n_ctx < 0) {
        llc_fail(err, "context size must be positive (got %d)", n_ctx);
        return NULL;
    }
    if (n_ctx == 0) n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    if (n_ctx > (1 << 24)) {
        llc_fail(err, "context size %d is too large", n_ctx);
        return NULL;
    }
    if (n_threads < 0 || n_threads > 1024) {
        llc_fail(err, "invalid thread count %d", n_threads);
        return NULL;
    }
    if (n_threads == 0) n_threads = llc_n_cores();
    uint64_t kv_bytes = llamac_model_kv_bytes(m, n_ctx);
    llamac_session *s = calloc(1, sizeof *s);
    if (!s) {
        llc_fail(err, "out of memory");
        return NULL;
    }
    s->m = m;
    s->n_ctx = n_ctx;
    s->n_threads = n_threads;
    size_t kv_dim = (size_t)hp->n_kv_heads * hp->head_dim, dim = (size_t)hp->dim, ffn = (size_t)hp->ffn_dim;
    s->k_cache = malloc(kv_bytes / 2);
    s->v_cache = malloc(kv_bytes / 2);
    s->rope_freq = malloc((size_t)hp->rope_dim / 2 * sizeof(double));
    s->x = malloc(MAX_BATCH * dim * sizeof(float));
    s->xb = malloc(MAX_BATCH * dim * sizeof(float));
    s->q = malloc(MAX_BATCH * dim * sizeof(float));
    s->attn = malloc(MAX_BATCH * dim * sizeof(float));
    s->k = malloc(MAX_BATCH * kv_dim * sizeof(float));
    s->v = malloc(MAX_BATCH * kv_dim * sizeof(float));
    s->hb = malloc(MAX_BATCH * ffn * sizeof(float));
    s->hb2 = malloc(MAX_BATCH * ffn * sizeof(float));
    s->rope_cs = malloc(MAX_BATCH * (size_t)hp->rope_dim * sizeof(float));
    s->scores = malloc((size_t)n_threads * (size_t)n_ctx * sizeof(float));
    s->act = malloc(MAX_BATCH * max_act_bytes(m));
    s->logits = malloc((size_t)hp->n_vocab * sizeof(float));
    s->pool = llc_pool_create(n_threads);
    if (!s->k_cache || !s->v_cache || !s->rope_freq || !s->x || !s->xb || !s->q || !s->attn || !s->k || !s->v || !s->hb ||
        !s->hb2 || !s->rope_cs || !s->scores || !s->act || !s->logits || !s->pool) {
        llc_fail(err, "out of memory for a session of %d positions (KV cache %.1f MiB)", n_ctx, (double)kv_bytes / 1048576.0);
        llamac_session_free(s);
        return NULL;
    }
    s->n_threads = llc_pool_size(s->pool);
    if (!llc_model_pack(m, s->pool, err)) {
        llamac_session_free(s);
        return NULL;
    }
    for (int i = 0; i < hp->rope_dim / 2; i++) {
        double f = pow((double)hp->rope_theta, -2.0 * i / hp->rope_dim);
        if (m->rope_freqs) f /= m->rope_freqs[i];
        s->rope_freq[i] = f;
    }
    return s;
}

void llamac_session_free(llamac_session *s) {
    if (!s) return;
    llc_pool_free(s->pool);
    free(s->k_cache);
    free(s->v_cache);
    free(s->rope_freq);
    free(s->x);
    free(s->xb);
    free(s->q);
    free(s->attn);
    free(s->k);
    free(s->v);
    free(s->hb);
    free(s->hb2);
    free(s->rope_cs);
    free(s->scores);
    free(s->act);
    free(s->logits);
    free(s);
}

int llamac_session_pos(const llamac_session *s) { return s->pos; }
int llamac_session_n_ctx(const llamac_session *s) { return s->n_ctx; }
void llamac_session_truncate(llamac_session *s, int pos) {
    if (pos >= 0 && pos < s->pos) s->pos = pos;
}

/* ---- attention ------------------------------------------------------------------------------------ */

typedef struct attn_job {
    llamac_session *s;
    int layer, n_tok, pos0;
} attn_job;

/* One (token, head) pair per work item: scores over all cached positions up to the token's own,
 * softmax, weighted sum of values. Query heads share KV heads in groups (GQA). */
static void attn_task(void *ctx, int ith, int nth) {
    const attn_job *j = ctx;
    llamac_session *s = j->s;
    const llc_hparams *hp = &s->m->hp;
    int hd = hp->head_dim, group = hp->n_heads / hp->n_kv_heads;
    size_t kv_dim = (size_t)hp->n_kv_heads * hd;
    const float *kc = s->k_cache + (size_t)j->layer * s->n_ctx * kv_dim;
    const float *vc = s->v_cache + (size_t)j->layer * s->n_ctx * kv_dim;
    float *sc = s->scores + (size_t)ith * s->n_ctx;
    float scale = 1.0f / sqrtf((float)hd);
    long lo, hi;
    llc_split((long)j->n_tok * hp->n_heads, ith, nth, &lo, &hi);
    for (long item = lo; item < hi; item++) {
        int t = (int)(item / hp->n_heads), h = (int)(item % hp->n_heads);
        int kvh = h / group, n_pos = j->pos0 + t + 1;
        const float *q = s->q + (size_t)t * hp->dim + (size_t)h * hd;
        for (int p = 0; p < n_pos; p++) sc[p] = llc_dot_f32(q, kc + (size_t)p * kv_dim + (size_t)kvh * hd, hd) * scale;
        llc_softmax(sc, n_pos);
        float *out = s->attn + (size_t)t * hp->dim + (size_t)h * hd;
        memset(out, 0, (size_t)hd * sizeof(float));
        for (int p = 0; p < n_pos; p++) llc_axpy(out, sc[p], vc + (size_t)p * kv_dim + (size_t)kvh * hd, hd);
    }
}

/* ---- one chunk of tokens through the network -------------------------------------------------------- */

static void rope_tables(llamac_session *s, int pos0, int n) {
    int half = s->m->hp.rope_dim / 2;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < half; i++) {
            double a = (double)(pos0 + t) * s->rope_freq[i];
            s->rope_cs[((size_t)t * half + i) * 2] = (float)cos(a);
            s->rope_cs[((size_t)t * half + i) * 2 + 1] = (float)sin(a);
        }
}

/* Runs tokens [0, n) at positions pos..pos+n-1. If logits_out, writes every token's logits there;
 * always leaves the last token's logits in s->logits. */
static void forward_chunk(llamac_session *s, const int32_t *tokens, int n, float *logits_out) {
    const llamac_model *m = s->m;
    const llc_hparams *hp = &m->hp;
    size_t dim = (size_t)hp->dim, kv_dim = (size_t)hp->n_kv_heads * hp->head_dim, ffn = (size_t)hp->ffn_dim;
    int pos0 = s->pos;

    for (int t = 0; t < n; t++) llc_tensor_get_row(&m->tok_embd, tokens[t], s->x + t * dim);
    rope_tables(s, pos0, n);

    for (int l = 0; l < hp->n_layers; l++) {
        const llc_layer *L = &m->layers[l];
        for (int t = 0; t < n; t++) llc_rmsnorm(s->xb + t * dim, s->x + t * dim, L->attn_norm, (int)dim, hp->rms_eps);
        /* Q, K and V read the same normalized input: convert it once when their types agree. */
        llc_matmul(s->pool, s->q, &L->wq, s->xb, n, s->act, 0);
        bool same = L->wk.type == L->wq.type && L->wv.type == L->wq.type;
        llc_matmul(s->pool, s->k, &L->wk, same ? s->act : (const void *)s->xb, n, s->act, same);
        llc_matmul(s->pool, s->v, &L->wv, same ? s->act : (const void *)s->xb, n, s->act, same);
        void (*rope)(float *, const float *, int) = m->rope_half_split ? llc_rope_half_split : llc_rope;
        for (int t = 0; t < n; t++) {
            const float *cs = s->rope_cs + (size_t)t * hp->rope_dim;
            for (int h = 0; h < hp->n_heads; h++) rope(s->q + t * dim + (size_t)h * hp->head_dim, cs, hp->rope_dim);
            for (int h = 0; h < hp->n_kv_heads; h++) rope(s->k + t * kv_dim + (size_t)h * hp->head_dim, cs, hp->rope_dim);
        }
        size_t base = ((size_t)l * s->n_ctx + (size_t)pos0) * kv_dim;
        memcpy(s->k_cache + base, s->k, (size_t)n * kv_dim * sizeof(float));
        memcpy(s->v_cache + base, s->v, (size_t)n * kv_dim * sizeof(float));

        attn_job aj = {s, l, n, pos0};
        double work = (double)n * hp->n_heads * (pos0 + n) * hp->head_dim;
        llc_pool_run_n(s->pool, attn_task, &aj, work < 65536 ? 1 : s->n_threads);
        llc_matmul(s->pool, s->xb, &L->wo, s->attn, n, s->act, 0);
        for (size_t i = 0; i < (size_t)n * dim; i++) s->x[i] += s->xb[i];

        for (int t = 0; t < n; t++) llc_rmsnorm(s->xb + t * dim, s->x + t * dim, L->ffn_norm, (int)dim, hp->rms_eps);
        llc_matmul(s->pool, s->hb, &L->w_gate, s->xb, n, s->act, 0);
        same = L->w_up.type == L->w_gate.type;
        llc_matmul(s->pool, s->hb2, &L->w_up, same ? s->act : (const void *)s->xb, n, s->act, same);
        for (size_t i = 0; i < (size_t)n * ffn; i++) s->hb[i] = llc_silu(s->hb[i]) * s->hb2[i];
        llc_matmul(s->pool, s->xb, &L->w_down, s->hb, n, s->act, 0);
        for (size_t i = 0; i < (size_t)n * dim; i++) s->x[i] += s->xb[i];
    }

    if (logits_out) {
        for (int t = 0; t < n; t++) llc_rmsnorm(s->xb + t * dim, s->x + t * dim, m->output_norm, (int)dim, hp->rms_eps);
        llc_matmul(s->pool, logits_out, &m->output, s->xb, n, s->act, 0);
        memcpy(s->logits, logits_out + (size_t)(n - 1) * hp->n_vocab, (size_t)hp->n_vocab * sizeof(float));
    } else {
        llc_rmsnorm(s->xb, s->x + (size_t)(n - 1) * dim, m->output_norm, (int)dim, hp->rms_eps);
        llc_matmul(s->pool, s->logits, &m->output, s->xb, 1, s->act, 0);
    }
    s->pos += n;
}

static bool check_tokens(llamac_session *s, const int32_t *tokens, int n, llamac_error *err) {
    if (n <= 0) return llc_fail(err, "nothing to evaluate (no tokens)");
    if (n > s->n_ctx - s->pos)
        return llc_fail(err, "context is full: %d positions used, %d more requested, context size %d", s->pos, n, s->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= s->m->hp.n_vocab)
            return llc_fail(err, "token id %d is outside the vocabulary (0..%d)", tokens[i], s->m->hp.n_vocab - 1);
    return true;
}

const float *llamac_session_eval(llamac_session *s, const int32_t *tokens, int n, llamac_error *err) {
    if (!check_tokens(s, tokens, n, err)) return NULL;
    for (int done = 0; done < n; done += MAX_BATCH) {
        int c = n - done < MAX_BATCH ? n - done : MAX_BATCH;
        forward_chunk(s, tokens + done, c, NULL);
    }
    return s->logits;
}

int llamac_session_eval_all(llamac_session *s, const int32_t *tokens, int n, float *logits_out, llamac_error *err) {
    if (!check_tokens(s, tokens, n, err)) return -1;
    for (int done = 0; done < n; done += MAX_BATCH) {
        int c = n - done < MAX_BATCH ? n - done : MAX_BATCH;
        forward_chunk(s, tokens + done, c, logits_out + (size_t)done * s->m->hp.n_vocab);
    }
    return 0;
}
