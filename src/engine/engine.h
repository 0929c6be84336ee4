#ifndef LLC_ENGINE_H
#define LLC_ENGINE_H
/*
 * The continuous-batching engine (the public calls are in llamac.h, "many requests at once").
 * Internal hooks for tests and tools.
 */
#include "kv/kv_cache.h"
#include "llamac.h"
#include "model/forward.h"

/* Called for every set of logits the engine samples from, before sampling: the request, the position
 * of the token the logits follow (its prompt + generated tokens so far, minus one) and the n_vocab
 * logits. Tests compare them with a session's. NULL turns it off. */
typedef void (*llc_engine_logits_fn)(void *ctx, int request, int pos, const float *logits, int n_vocab);
void llc_engine_set_logits_hook(llamac_engine *e, llc_engine_logits_fn fn, void *ctx);

/* Replaces the forward pass (llc_forward_batch) with fn, for tests of the scheduling alone: fn gets the
 * pool and each step's batch. NULL restores the model's forward pass. */
typedef bool (*llc_engine_forward_fn)(void *ctx, llc_kv_pool *kv, const llc_batch *b, llamac_error *err);
void llc_engine_set_forward(llamac_engine *e, llc_engine_forward_fn fn, void *ctx);

/* Checks the engine's invariants: the pool's (llc_kv_pool_check), every running sequence's block table
 * covering exactly its computed tokens, waiting sequences holding no blocks, the block users adding up
 * to the pool's count of used blocks when no prefix is shared. false with the first broken one in err. */
bool llc_engine_check(const llamac_engine *e, llamac_error *err);

/* The engine's effective limits after defaults and the KV budget are applied. */
int llc_engine_n_ctx(const llamac_engine *e);
int llc_engine_max_seqs(const llamac_engine *e);
int llc_engine_step_tokens(const llamac_engine *e);

#endif
