#ifndef LLC_KV_CACHE_H
#define LLC_KV_CACHE_H
/*
 * The paged KV cache: a pool of fixed-size blocks, each holding the keys and values of block_size
 * consecutive positions of one sequence for every layer, and per-sequence block tables (vLLM's
 * PagedAttention design). Memory is bounded by the pool's size, not by sequences x context.
 *
 * Storage: one allocation per layer for K and one for V, each [block][position in block][row], a row
 * being one position's kv_dim values in the pool's element type (the format, and the functions that
 * write rows and build attention's views of them, are in kv_row.h). A sequence whose table is
 * 0, 1, 2, ... is then exactly a contiguous cache ([position][row] per layer).
 *
 * Blocks are reference counted: a block shared by several sequences (a common prompt prefix) is
 * freed when its last user lets go. Prefix caching: a block that is full is "published" under the
 * hash of every token from the start of the sequence to its end (a chain: hash(previous block's hash,
 * this block's tokens)); its tokens are stored with it, so a lookup compares the tokens themselves
 * and a hash collision can never return another prompt's keys. A published block whose count drops to
 * 0 is not freed but kept, least recently used first in line for reuse when the free list runs out.
 *
 * Nothing here allocates after creation except the sequences' block tables (grown by doubling, at
 * most once per block_size tokens). Not thread-safe: one thread (the scheduler) owns the pool.
 *
 * A published block is identified by its tokens and by the block before it in the chain (and that
 * block's publication), never by its hash alone, so a match at block i means every token from
 * position 0 is the same, even under a 64-bit collision.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/types.h"
#include "kv/kv_row.h" /* the row format: element types, writing rows, views for attention */
#include "llamac.h"

/* n_blocks blocks of block_size positions, n_layers layers of kv_dim values of element type `type`
 * (LLC_F32, LLC_F16, LLC_BF16 or LLC_Q8_0) per position for K and V (64-byte aligned, not zeroed: read
 * only positions written). NULL (err set) when out of memory or the sizes are invalid (not positive;
 * n_blocks * block_size > INT_MAX; bytes overflowing size_t; another type, or q8_0 with kv_dim not a
 * multiple of 32). */
llc_kv_pool *llc_kv_pool_create(int n_layers, int kv_dim, int block_size, int n_blocks, enum llc_type type,
                                llamac_error *err);
void llc_kv_pool_free(llc_kv_pool *p);
int llc_kv_block_size(const llc_kv_pool *p);
int llc_kv_n_blocks(const llc_kv_pool *p);
enum llc_type llc_kv_type(const llc_kv_pool *p);
/* Values in one position's K (or V) row: n_kv_heads x head_dim. */
int llc_kv_dim(const llc_kv_pool *p);
/* Bytes of one position's K (or V) row in one layer. */
size_t llc_kv_row_bytes(const llc_kv_pool *p);
/* Bytes of one block (all layers, K and V). */
size_t llc_kv_block_bytes(const llc_kv_pool *p);
/* Layer l's K (V) storage: block b's rows start b * block_size * llc_kv_row_bytes bytes in, position
 * i of the block i * row_bytes further (for f32, (float *)base + (b * block_size + i) * kv_dim). */
void *llc_kv_k_base(const llc_kv_pool *p, int layer);
void *llc_kv_v_base(const llc_kv_pool *p, int layer);

/* Blocks a new sequence could get now: free ones plus cached ones nobody uses (evictable). */
int llc_kv_n_available(const llc_kv_pool *p);
/* Blocks with at least one user (the rest are free or evictable). 0 when every sequence is gone. */
int llc_kv_n_used(const llc_kv_pool *p);
/* Published blocks (in use or evictable): what the prefix cache holds. */
int llc_kv_n_cached(const llc_kv_pool *p);

/* ---- one sequence's block table ---- */
typedef struct llc_kv_seq {
    int32_t *blocks;    /* blocks[i] holds positions [i * block_size, (i + 1) * block_size) */
    int n_blocks, cap;
    int n_tokens;       /* positions whose K/V are (or are being) written */
    int n_published;    /* leading blocks already published (or taken from the cache) */
    uint64_t hash;      /* prefix hash through block n_published - 1 (0 before any) */
} llc_kv_seq;

void llc_kv_seq_init(llc_kv_seq *s);
/* Takes from the prefix cache the longest run of full blocks that begin tokens[0..n): each a block
 * published under the same tokens from position 0. Never the block holding token n - 1 (its logits
 * must be computed, so at least one token is always left to run). Returns the positions reused (a
 * multiple of block_size); the sequence then starts with those blocks, n_tokens set to that count.
 * The sequence must be empty. */
int llc_kv_seq_match_prefix(llc_kv_pool *p, llc_kv_seq *s, const int32_t *tokens, int n);
/* Makes room for n more positions (allocating blocks, evicting least recently used cached blocks if
 * the free list is empty), so positions [n_tokens, n_tokens + n) can be written; n_tokens grows by n.
 * Copy-on-write: if the block the new positions start in is shared (ref > 1), it is first copied to a
 * fresh block that this sequence alone owns. false (and nothing changed) when the pool cannot supply
 * the blocks: the caller preempts someone and retries. (A partially filled block is only ever shared
 * after llc_kv_seq_fork: match_prefix shares full blocks only, and appends never write into a full
 * block.) */
bool llc_kv_seq_append(llc_kv_pool *p, llc_kv_seq *s, int n);
/* Publishes the sequence's full blocks not yet published; tokens are the sequence's tokens from
 * position 0 (at least n_tokens of them). Call after their K/V are written. When another sequence has
 * already published a block for the same tokens from position 0 (both computed the same prompt at
 * once), s->blocks[i] is replaced by that block and this sequence's own copy goes back to the pool:
 * re-read s->blocks after publishing (the keys and values are those of the same tokens). */
void llc_kv_seq_publish(llc_kv_pool *p, llc_kv_seq *s, const int32_t *tokens);
/* Gives every block back (shared ones just lose a user) and empties the table (memory kept). */
void llc_kv_seq_release(llc_kv_pool *p, llc_kv_seq *s);
/* Frees the table's memory too (after release). */
void llc_kv_seq_free(llc_kv_seq *s);
/* Blocks that appending n positions to s would take from the pool (for admission decisions), the
 * copy-on-write block included: llc_kv_seq_append(p, s, n) succeeds iff this is <= llc_kv_n_available
 * (barring out of memory growing the table), and n_used then grows by exactly this. */
int llc_kv_seq_blocks_needed(const llc_kv_pool *p, const llc_kv_seq *s, int n);
/* Gives dst (empty) the same blocks as src, each gaining a user (parallel sampling, beam search: n
 * continuations of one prompt). src's last block, if partially filled, is then shared and the first
 * append to it by either sequence copies it. false (dst unchanged) when dst is not empty or its table
 * cannot be allocated. */
bool llc_kv_seq_fork(llc_kv_pool *p, llc_kv_seq *dst, const llc_kv_seq *src);

/* ---- for tests and debugging ---- */
/* Users of a block, and whether it is in the prefix cache. */
int llc_kv_block_ref(const llc_kv_pool *p, int block);
bool llc_kv_block_published(const llc_kv_pool *p, int block);
/* Checks the pool's internal invariants (every block exactly one of free / evictable / used, the
 * counters, the LRU links, the hash table); false with the first broken one in err. O(n_blocks). */
bool llc_kv_pool_check(const llc_kv_pool *p, llamac_error *err);
/* ANDs every chain hash with mask from now on (0: every block collides), to test that lookups never
 * trust the hash alone. Set it while the pool holds no published block. */
void llc_kv_debug_set_hash_mask(llc_kv_pool *p, uint64_t mask);

#endif
