/*
 * Sessions: one sequence and its KV cache, for generate, chat, perplexity and the like. The cache is
 * a pool of one block of n_ctx positions, so the sequence's block table is {0} and its view is a
 * contiguous cache; the forward pass is the batched one (model/forward.c) with a batch of one
 * sequence.
 */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kv/kv_cache.h"
#include "model/forward.h"
#include "model/model.h"

struct llamac_session {
    const llamac_model *m;
    int n_ctx, pos;
    llc_forward *fwd;
    llc_kv_pool *kv;
    int32_t block0;      /* the block table: the pool's one block */
    int32_t *positions;  /* n_ctx scratch: positions of a batch */
    int32_t *seq0;       /* n_ctx zeros: every token is sequence 0 */
    int32_t *out_idx;    /* n_ctx scratch: 0, 1, 2, ... */
    float *logits;       /* n_vocab, the last token's */
};

llamac_session *llamac_session_create(const llamac_model *m, const llamac_session_params *params, llamac_error *err) {
    const llc_hparams *hp = &m->hp;
    llc_forward_config c;
    if (!llc_forward_config_resolve(m, params ? params->n_ctx : 0, params ? params->n_threads : 0,
                                    params ? params->kv_type : LLAMAC_KV_F32, &c, err))
        return NULL;
    int n_ctx = c.n_ctx;
    if (n_ctx < 0) {
        llc_fail(err, "context size must be positive (got %d)", n_ctx);
        return NULL;
    }
    if (n_ctx > (1 << 24)) {
        llc_fail(err, "context size %d is too large", n_ctx);
        return NULL;
    }
    llamac_session *s = calloc(1, sizeof *s);
    if (!s) {
        llc_fail(err, "out of memory");
        return NULL;
    }
    s->m = m;
    s->n_ctx = n_ctx;
    if (!llc_forward_open(m, &c, n_ctx, 1, &s->fwd, &s->kv, err)) {
        llamac_session_free(s);
        return NULL;
    }
    s->positions = malloc((size_t)n_ctx * sizeof(int32_t));
    s->seq0 = calloc((size_t)n_ctx, sizeof(int32_t));
    s->out_idx = malloc((size_t)n_ctx * sizeof(int32_t));
    s->logits = malloc((size_t)hp->n_vocab * sizeof(float));
    if (!s->positions || !s->seq0 || !s->out_idx || !s->logits) {
        llc_fail(err, "out of memory for a session of %d positions", n_ctx);
        llamac_session_free(s);
        return NULL;
    }
    for (int i = 0; i < n_ctx; i++) s->out_idx[i] = i;
    return s;
}

void llamac_session_free(llamac_session *s) {
    if (!s) return;
    llc_forward_free(s->fwd);
    llc_kv_pool_free(s->kv);
    free(s->positions);
    free(s->seq0);
    free(s->out_idx);
    free(s->logits);
    free(s);
}

int llamac_session_pos(const llamac_session *s) { return s->pos; }
int llamac_session_n_ctx(const llamac_session *s) { return s->n_ctx; }
void llamac_session_truncate(llamac_session *s, int pos) {
    if (pos >= 0 && pos < s->pos) s->pos = pos;
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

/* Runs n tokens at the next positions; logits of the last n_out of them to logits. */
static bool run(llamac_session *s, const int32_t *tokens, int n, int n_out, float *logits, llamac_error *err) {
    if (!check_tokens(s, tokens, n, err)) return false;
    for (int i = 0; i < n; i++) s->positions[i] = s->pos + i;
    const int32_t *tables[1] = {&s->block0};
    llc_batch b = {.n_tok = n, .tokens = tokens, .pos = s->positions, .seq = s->seq0, .block_tables = tables, .n_seqs = 1,
                   .n_out = n_out, .out_idx = s->out_idx + (n - n_out), .logits = logits};
    if (!llc_forward_batch(s->fwd, s->kv, &b, err)) return false;
    s->pos += n;
    return true;
}

const float *llamac_session_eval(llamac_session *s, const int32_t *tokens, int n, llamac_error *err) {
    return run(s, tokens, n, 1, s->logits, err) ? s->logits : NULL;
}

int llamac_session_eval_all(llamac_session *s, const int32_t *tokens, int n, float *logits_out, llamac_error *err) {
    if (!run(s, tokens, n, n, logits_out, err)) return -1;
    memcpy(s->logits, logits_out + (size_t)(n - 1) * s->m->hp.n_vocab, (size_t)s->m->hp.n_vocab * sizeof(float));
    return 0;
}
