#ifndef LLC_FORWARD_H
#define LLC_FORWARD_H
/*
 * The batched forward pass: the tokens of any number of sequences, concatenated into one matrix for
 * every projection and the feed-forward (one pass over the weights for the whole batch), with
 * attention done per token over its own sequence's keys and values, found through the sequence's
 * block table in the paged KV cache (kv/kv_cache.h). No padding: a batch of a 500-token prompt chunk
 * and fifteen single decode tokens is 515 rows.
 *
 * Sessions (llamac_session) are one sequence whose block table is 0, 1, 2, ...: the same code.
 */
#include <stdbool.h>
#include <stdint.h>

#include "kv/kv_cache.h"
#include "llamac.h"
#include "model/model.h"

typedef struct llc_forward llc_forward;

/* Scratch and threads for batches of any size (run in chunks of a few hundred tokens). */
llc_forward *llc_forward_create(const llamac_model *m, int n_threads, llamac_error *err);
void llc_forward_free(llc_forward *f);
/* Bytes of scratch llc_forward_create allocates for a model of these sizes whose largest converted
 * activation row (llc_act_row_bytes over its matrices) is act_row_bytes. */
size_t llc_forward_scratch_bytes(const llc_hparams *hp, size_t act_row_bytes);
/* The context n_ctx = 0 stands for: the training context, at most 4096 (a model trained on a long
 * context would otherwise claim a huge cache nobody asked for). */
int llc_default_n_ctx(int n_ctx_train);
int llc_forward_n_threads(const llc_forward *f);

/* What a session's or an engine's parameters come to, decided in one place (model/forward_setup.c). */
typedef struct llc_forward_config {
    int n_ctx;           /* as given, or min(training context, 4096) for 0; the caller bounds it */
    int n_threads;       /* as given (0: one per core, decided by llc_forward_create) */
    enum llc_type type;  /* the KV cache's element type */
    int kv_dim;          /* values in one position's K (or V) row */
} llc_forward_config;

/* Checks the thread count and the KV type (known, and possible for the model's rows) and applies the
 * default context. false with the reason in err. */
bool llc_forward_config_resolve(const llamac_model *m, int n_ctx, int n_threads, llamac_kv_type kv_type,
                                llc_forward_config *c, llamac_error *err);
/* The forward pass and a KV pool of n_blocks blocks of block_size positions for c; false (err set,
 * *fwd and *kv NULL, nothing left allocated) when either cannot be made. */
bool llc_forward_open(const llamac_model *m, const llc_forward_config *c, int block_size, int n_blocks, llc_forward **fwd,
                      llc_kv_pool **kv, llamac_error *err);

typedef struct llc_batch {
    int n_tok;
    const int32_t *tokens;              /* [n_tok] */
    const int32_t *pos;                 /* [n_tok] the token's position in its sequence */
    const int32_t *seq;                 /* [n_tok] its sequence: an index into block_tables */
    const int32_t *const *block_tables; /* [n_seqs] pool blocks covering positions 0 .. the sequence's last token */
    int n_seqs;
    int n_out;                          /* tokens whose logits are wanted */
    const int32_t *out_idx;             /* [n_out] their indices in the batch, increasing */
    float *logits;                      /* [n_out][n_vocab] */
} llc_batch;

/* Runs the batch: every token's keys and values go into its sequence's slot of the pool, and the
 * wanted logits into b->logits. A sequence's tokens come in position order, and a token attends to
 * positions [0, pos] of its sequence (those before the batch must already be in the pool). Token ids
 * and positions are the caller's to check (llamac_session and the engine do). */
bool llc_forward_batch(llc_forward *f, llc_kv_pool *kv, const llc_batch *b, llamac_error *err);

#endif
