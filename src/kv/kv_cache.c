/*
 * The paged KV cache's block pool (see kv_cache.h).
 *
 * Every block is in exactly one of three states:
 *   - free:      ref == 0, not published, on the free stack;
 *   - evictable: ref == 0, published, on the LRU list (head = least recently used, evicted first);
 *   - used:      ref > 0 (published or not).
 * Taking a block pops the free stack, else evicts the LRU head (unpublishing it).
 *
 * The prefix cache is an open-addressing table (linear probing, power-of-two size >= 2 x n_blocks, so
 * at most half full: a block is published at most once) from the chain hash to the block id; deletion
 * shifts the following entries back (no tombstones). A published block's identity is not its hash
 * but (parent block, parent's publish epoch, its own tokens): a lookup compares all three, so a
 * match at block i means, by induction from block 0, that every token from position 0 is the same —
 * a 64-bit hash collision can cost a probe, never return another prompt's keys. The parent's epoch
 * (a counter stamped on each publication) tells a parent that was evicted and re-published under
 * another prefix from the one the child was computed after; such orphaned children are never matched
 * again and leave by eviction.
 */
#include "kv/kv_cache.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"

typedef struct kv_slot {
    uint64_t hash;
    int32_t block; /* -1: empty */
} kv_slot;

struct llc_kv_pool {
    int n_layers, kv_dim, block_size, n_blocks;
    enum llc_type type;      /* element type of the rows */
    size_t row_bytes;        /* one position's kv_dim values */
    size_t block_row_bytes;  /* block_size * row_bytes: one block of one layer */
    unsigned char **k, **v;  /* [n_layers] */

    int32_t *ref;            /* [n_blocks] users */
    int32_t *free_stack;     /* [n_blocks], n_free entries, top = next to hand out */
    int n_free;
    int32_t *lru_prev, *lru_next; /* [n_blocks] intrusive list of evictable blocks */
    int32_t lru_head, lru_tail;   /* head: least recently used */
    int n_lru;

    /* prefix cache */
    bool *published;         /* [n_blocks] */
    uint64_t *hash;          /* [n_blocks] chain hash through this block */
    int32_t *parent;         /* [n_blocks] previous block in the chain, -1 for a first block */
    uint64_t *parent_epoch;  /* [n_blocks] parent's epoch when this block was published */
    uint64_t *epoch;         /* [n_blocks] publication stamp, 0 when not published */
    int32_t *tokens;         /* [n_blocks * block_size] */
    uint64_t next_epoch;
    int n_cached;
    kv_slot *table;          /* [table_mask + 1] */
    size_t table_mask;
    uint64_t hash_mask;      /* all ones, except in collision tests */
};

/* ---- hashing ---- */

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* FNV-1a over the previous hash's and the tokens' bytes (little-endian, whatever the host), then a
 * splitmix64 finalizer so the low bits (the table index) depend on every input bit. */
static uint64_t chain_hash(const llc_kv_pool *p, uint64_t prev, const int32_t *t) {
    const uint64_t prime = 0x100000001b3ull;
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < 8; i++) {
        h ^= (prev >> (8 * i)) & 0xff;
        h *= prime;
    }
    for (int j = 0; j < p->block_size; j++) {
        uint32_t u = (uint32_t)t[j];
        for (int i = 0; i < 4; i++) {
            h ^= (u >> (8 * i)) & 0xff;
            h *= prime;
        }
    }
    return splitmix64(h) & p->hash_mask;
}

/* ---- the table ---- */

static size_t home_slot(const llc_kv_pool *p, uint64_t h) { return (size_t)(h ^ (h >> 32)) & p->table_mask; }

static void table_insert(llc_kv_pool *p, int32_t b) {
    size_t i = home_slot(p, p->hash[b]);
    while (p->table[i].block >= 0) i = (i + 1) & p->table_mask;
    p->table[i].hash = p->hash[b];
    p->table[i].block = b;
}

/* Backward-shift deletion: after emptying slot i, an entry further along the run moves into the hole
 * unless its home lies cyclically in (i, j] (then it is still reachable where it is). */
static void table_remove(llc_kv_pool *p, int32_t b) {
    size_t i = home_slot(p, p->hash[b]);
    while (p->table[i].block != b) i = (i + 1) & p->table_mask; /* present: published blocks are */
    size_t j = i;
    for (;;) {
        j = (j + 1) & p->table_mask;
        if (p->table[j].block < 0) break;
        size_t k = home_slot(p, p->table[j].hash);
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays) continue;
        p->table[i] = p->table[j];
        i = j;
    }
    p->table[i].block = -1;
    p->table[i].hash = 0;
}

/* The published block with this chain hash, parent (and parent epoch) and tokens, or -1. */
static int32_t table_find(const llc_kv_pool *p, uint64_t h, int32_t parent, uint64_t parent_epoch,
                          const int32_t *tokens) {
    size_t bs_bytes = (size_t)p->block_size * sizeof(int32_t);
    for (size_t i = home_slot(p, h); p->table[i].block >= 0; i = (i + 1) & p->table_mask) {
        int32_t b = p->table[i].block;
        if (p->table[i].hash != h || p->parent[b] != parent || p->parent_epoch[b] != parent_epoch) continue;
        if (memcmp(p->tokens + (size_t)b * p->block_size, tokens, bs_bytes) == 0) return b;
    }
    return -1;
}

/* ---- block states ---- */

static void lru_remove(llc_kv_pool *p, int32_t b) {
    int32_t pr = p->lru_prev[b], nx = p->lru_next[b];
    if (pr >= 0) p->lru_next[pr] = nx;
    else p->lru_head = nx;
    if (nx >= 0) p->lru_prev[nx] = pr;
    else p->lru_tail = pr;
    p->lru_prev[b] = p->lru_next[b] = -1;
    p->n_lru--;
}

static void lru_push_tail(llc_kv_pool *p, int32_t b) {
    p->lru_prev[b] = p->lru_tail;
    p->lru_next[b] = -1;
    if (p->lru_tail >= 0) p->lru_next[p->lru_tail] = b;
    else p->lru_head = b;
    p->lru_tail = b;
    p->n_lru++;
}

static void unpublish(llc_kv_pool *p, int32_t b) {
    table_remove(p, b);
    p->published[b] = false;
    p->epoch[b] = 0;
    p->parent[b] = -1;
    p->parent_epoch[b] = 0;
    p->n_cached--;
}

/* A block for one user (ref 1): a free one, else the least recently used evictable one, which leaves
 * the prefix cache. The caller has checked llc_kv_n_available. */
static int32_t take_block(llc_kv_pool *p) {
    int32_t b;
    if (p->n_free > 0) {
        b = p->free_stack[--p->n_free];
    } else {
        b = p->lru_head;
        lru_remove(p, b);
        unpublish(p, b);
    }
    p->ref[b] = 1;
    return b;
}

/* One more user of a block that may be evictable (a prefix-cache hit). */
static void ref_block(llc_kv_pool *p, int32_t b) {
    if (p->ref[b]++ == 0) lru_remove(p, b);
}

static void unref_block(llc_kv_pool *p, int32_t b) {
    if (--p->ref[b] > 0) return;
    if (p->published[b]) lru_push_tail(p, b);
    else p->free_stack[p->n_free++] = b;
}

/* ---- the pool ---- */

static bool mul_ok(uint64_t a, uint64_t b, uint64_t limit, uint64_t *out) {
    if (a != 0 && b > limit / a) return false;
    *out = a * b;
    return true;
}

static void *alloc_bytes(uint64_t n) {
    size_t bytes = ((size_t)n + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes);
}

llc_kv_pool *llc_kv_pool_create(int n_layers, int kv_dim, int block_size, int n_blocks, enum llc_type type,
                                llamac_error *err) {
    if (n_layers <= 0 || kv_dim <= 0 || block_size <= 0 || n_blocks <= 0) {
        llc_fail(err, "KV cache: invalid sizes (%d layers, kv_dim %d, block size %d, %d blocks)", n_layers, kv_dim,
                 block_size, n_blocks);
        return NULL;
    }
    if (!llc_kv_check_type(type, kv_dim, err)) return NULL;
    size_t row_bytes = llc_kv_row_bytes_of(type, kv_dim);
    /* Positions are ints: a sequence may hold every block. Bytes per layer, and bytes of the whole
     * pool, must fit size_t with room for the rounding to 64 bytes. */
    uint64_t positions = 0, bytes = 0, total = 0;
    uint64_t size_limit = (uint64_t)SIZE_MAX - 64;
    if (!mul_ok((uint64_t)n_blocks, (uint64_t)block_size, (uint64_t)INT_MAX, &positions) ||
        !mul_ok(positions, (uint64_t)row_bytes, size_limit, &bytes) ||
        !mul_ok(bytes, 2 * (uint64_t)n_layers, size_limit, &total)) {
        llc_fail(err, "KV cache: %d blocks of %d positions x %d values x %d layers is too large", n_blocks,
                 block_size, kv_dim, n_layers);
        return NULL;
    }
    llc_kv_pool *p = calloc(1, sizeof *p);
    if (!p) goto oom;
    p->n_layers = n_layers;
    p->kv_dim = kv_dim;
    p->block_size = block_size;
    p->n_blocks = n_blocks;
    p->type = type;
    p->row_bytes = row_bytes;
    p->block_row_bytes = (size_t)block_size * row_bytes;
    p->hash_mask = UINT64_MAX;
    p->next_epoch = 1;
    p->lru_head = p->lru_tail = -1;

    size_t nb = (size_t)n_blocks;
    size_t table_size = 16;
    while (table_size < 2 * nb) table_size *= 2; /* n_blocks <= INT_MAX: at most 2^32 */
    p->table_mask = table_size - 1;

    p->k = calloc((size_t)n_layers, sizeof *p->k);
    p->v = calloc((size_t)n_layers, sizeof *p->v);
    p->ref = calloc(nb, sizeof *p->ref);
    p->free_stack = malloc(nb * sizeof *p->free_stack);
    p->lru_prev = malloc(nb * sizeof *p->lru_prev);
    p->lru_next = malloc(nb * sizeof *p->lru_next);
    p->published = calloc(nb, sizeof *p->published);
    p->hash = calloc(nb, sizeof *p->hash);
    p->parent = malloc(nb * sizeof *p->parent);
    p->parent_epoch = calloc(nb, sizeof *p->parent_epoch);
    p->epoch = calloc(nb, sizeof *p->epoch);
    p->tokens = malloc((size_t)positions * sizeof *p->tokens);
    p->table = malloc(table_size * sizeof *p->table);
    if (!p->k || !p->v || !p->ref || !p->free_stack || !p->lru_prev || !p->lru_next || !p->published || !p->hash ||
        !p->parent || !p->parent_epoch || !p->epoch || !p->tokens || !p->table)
        goto oom;
    for (int l = 0; l < n_layers; l++) {
        p->k[l] = alloc_bytes(bytes);
        p->v[l] = alloc_bytes(bytes);
        if (!p->k[l] || !p->v[l]) goto oom;
    }
    /* Handed out 0, 1, 2, ...: one sequence in a fresh pool is laid out like a contiguous cache. */
    for (int i = 0; i < n_blocks; i++) {
        p->free_stack[i] = n_blocks - 1 - i;
        p->lru_prev[i] = p->lru_next[i] = -1;
        p->parent[i] = -1;
    }
    p->n_free = n_blocks;
    for (size_t i = 0; i < table_size; i++) p->table[i] = (kv_slot){0, -1};
    return p;
oom:
    llc_kv_pool_free(p);
    llc_fail(err, "KV cache: out of memory for %d blocks of %d positions (%.1f MiB, %s)", n_blocks, block_size,
             (double)total / (1024.0 * 1024.0), llc_type_name(type));
    return NULL;
}

void llc_kv_pool_free(llc_kv_pool *p) {
    if (!p) return;
    for (int l = 0; l < p->n_layers; l++) {
        if (p->k) free(p->k[l]);
        if (p->v) free(p->v[l]);
    }
    free(p->k);
    free(p->v);
    free(p->ref);
    free(p->free_stack);
    free(p->lru_prev);
    free(p->lru_next);
    free(p->published);
    free(p->hash);
    free(p->parent);
    free(p->parent_epoch);
    free(p->epoch);
    free(p->tokens);
    free(p->table);
    free(p);
}

int llc_kv_block_size(const llc_kv_pool *p) { return p->block_size; }
int llc_kv_dim(const llc_kv_pool *p) { return p->kv_dim; }
int llc_kv_n_blocks(const llc_kv_pool *p) { return p->n_blocks; }
enum llc_type llc_kv_type(const llc_kv_pool *p) { return p->type; }
size_t llc_kv_row_bytes(const llc_kv_pool *p) { return p->row_bytes; }
size_t llc_kv_block_bytes(const llc_kv_pool *p) { return 2 * (size_t)p->n_layers * p->block_row_bytes; }
void *llc_kv_k_base(const llc_kv_pool *p, int layer) { return p->k[layer]; }
void *llc_kv_v_base(const llc_kv_pool *p, int layer) { return p->v[layer]; }
int llc_kv_n_available(const llc_kv_pool *p) { return p->n_free + p->n_lru; }
int llc_kv_n_used(const llc_kv_pool *p) { return p->n_blocks - p->n_free - p->n_lru; }
int llc_kv_n_cached(const llc_kv_pool *p) { return p->n_cached; }

/* ---- sequences ---- */

void llc_kv_seq_init(llc_kv_seq *s) { memset(s, 0, sizeof *s); }

static bool seq_reserve(llc_kv_seq *s, int n) {
    if (n <= s->cap) return true;
    int cap = s->cap > 0 ? s->cap : 4;
    while (cap < n) cap = cap > INT_MAX / 2 ? n : cap * 2;
    int32_t *b = realloc(s->blocks, (size_t)cap * sizeof *b);
    if (!b) return false;
    s->blocks = b;
    s->cap = cap;
    return true;
}

int llc_kv_seq_match_prefix(llc_kv_pool *p, llc_kv_seq *s, const int32_t *tokens, int n) {
    if (s->n_blocks != 0 || s->n_tokens != 0 || n <= 1) return 0;
    int bs = p->block_size;
    int max_blocks = (n - 1) / bs; /* full blocks before the one holding token n - 1 */
    if (max_blocks == 0 || !seq_reserve(s, max_blocks)) return 0;
    uint64_t h = 0;
    int32_t parent = -1;
    uint64_t parent_epoch = 0;
    int k = 0;
    for (; k < max_blocks; k++) {
        const int32_t *t = tokens + (size_t)k * bs;
        uint64_t hk = chain_hash(p, h, t);
        int32_t b = table_find(p, hk, parent, parent_epoch, t);
        if (b < 0) break;
        ref_block(p, b);
        s->blocks[k] = b;
        h = hk;
        parent = b;
        parent_epoch = p->epoch[b];
    }
    s->n_blocks = k;
    s->n_published = k;
    s->n_tokens = k * bs;
    s->hash = h;
    return k * bs;
}

/* Blocks the pool must supply for n more positions, and whether the block they start in must be
 * copied first. INT_MAX when n_tokens + n overflows. */
static int blocks_for(const llc_kv_pool *p, const llc_kv_seq *s, int n, bool *cow) {
    *cow = false;
    if (n <= 0) return 0;
    if (s->n_tokens > INT_MAX - n) return INT_MAX;
    int bs = p->block_size;
    int total = s->n_tokens + n;
    int need = total / bs + (total % bs != 0);
    int fresh = need > s->n_blocks ? need - s->n_blocks : 0;
    int at = s->n_tokens / bs;
    if (s->n_tokens % bs != 0 && at < s->n_blocks && p->ref[s->blocks[at]] > 1) *cow = true;
    return fresh + *cow;
}

int llc_kv_seq_blocks_needed(const llc_kv_pool *p, const llc_kv_seq *s, int n) {
    bool cow;
    return blocks_for(p, s, n, &cow);
}

bool llc_kv_seq_append(llc_kv_pool *p, llc_kv_seq *s, int n) {
    if (n < 0) return false;
    if (n == 0) return true;
    bool cow;
    int take = blocks_for(p, s, n, &cow);
    if (take > llc_kv_n_available(p)) return false;
    int bs = p->block_size;
    int total = s->n_tokens + n;
    int need = total / bs + (total % bs != 0);
    if (!seq_reserve(s, need)) return false;
    if (cow) {
        /* The block the new positions start in is shared (a fork): give this sequence its own copy
         * of the rows written so far. The old block keeps its other users, so it is not the one
         * take_block could evict. */
        int at = s->n_tokens / bs;
        int32_t old = s->blocks[at];
        int32_t nb = take_block(p);
        size_t bytes = (size_t)(s->n_tokens % bs) * p->row_bytes;
        for (int l = 0; l < p->n_layers; l++) {
            memcpy(p->k[l] + (size_t)nb * p->block_row_bytes, p->k[l] + (size_t)old * p->block_row_bytes, bytes);
            memcpy(p->v[l] + (size_t)nb * p->block_row_bytes, p->v[l] + (size_t)old * p->block_row_bytes, bytes);
        }
        unref_block(p, old);
        s->blocks[at] = nb;
    }
    while (s->n_blocks < need) s->blocks[s->n_blocks++] = take_block(p);
    s->n_tokens = total;
    return true;
}

void llc_kv_seq_publish(llc_kv_pool *p, llc_kv_seq *s, const int32_t *tokens) {
    int bs = p->block_size;
    int full = s->n_tokens / bs;
    if (full > s->n_blocks) full = s->n_blocks;
    for (int i = s->n_published; i < full; i++) {
        const int32_t *t = tokens + (size_t)i * bs;
        uint64_t h = chain_hash(p, s->hash, t);
        int32_t b = s->blocks[i];
        if (!p->published[b]) {
            /* Blocks before i are published (a sequence's users keep them so): the chain's parent. */
            int32_t parent = i > 0 ? s->blocks[i - 1] : -1;
            uint64_t parent_epoch = i > 0 ? p->epoch[parent] : 0;
            int32_t same = table_find(p, h, parent, parent_epoch, t);
            if (same >= 0) {
                /* Another sequence computed and published the same tokens first: use its block and
                 * give this one back, so the cache holds one copy and the chain continues from it. */
                ref_block(p, same);
                s->blocks[i] = same;
                unref_block(p, b);
            } else {
                p->published[b] = true;
                p->hash[b] = h;
                p->parent[b] = parent;
                p->parent_epoch[b] = parent_epoch;
                p->epoch[b] = p->next_epoch++;
                memcpy(p->tokens + (size_t)b * bs, t, (size_t)bs * sizeof(int32_t));
                table_insert(p, b);
                p->n_cached++;
            }
        }
        else if (i > 0 && (p->parent[b] != s->blocks[i - 1] || p->parent_epoch[b] != p->epoch[s->blocks[i - 1]])) {
            /* Published already by a sequence forked from this one, after it had swapped block i - 1
             * for another sequence's copy that has since been evicted: this sequence's block i - 1
             * holds the same tokens from position 0, so b may hang under it instead (same hash, same
             * slot). Without this b could not be reached again. */
            p->parent[b] = s->blocks[i - 1];
            p->parent_epoch[b] = p->epoch[s->blocks[i - 1]];
        }
        s->hash = h;
        s->n_published = i + 1;
    }
}

/* Last block first, so a sequence's deeper blocks are older in the LRU than its first ones and are
 * evicted first (a deeper block is useless once the blocks before it are gone). */
void llc_kv_seq_release(llc_kv_pool *p, llc_kv_seq *s) {
    for (int i = s->n_blocks - 1; i >= 0; i--) unref_block(p, s->blocks[i]);
    s->n_blocks = 0;
    s->n_tokens = 0;
    s->n_published = 0;
    s->hash = 0;
}

void llc_kv_seq_free(llc_kv_seq *s) {
    free(s->blocks);
    llc_kv_seq_init(s);
}

bool llc_kv_seq_fork(llc_kv_pool *p, llc_kv_seq *dst, const llc_kv_seq *src) {
    if (dst->n_blocks != 0 || dst->n_tokens != 0 || !seq_reserve(dst, src->n_blocks)) return false;
    for (int i = 0; i < src->n_blocks; i++) {
        dst->blocks[i] = src->blocks[i];
        ref_block(p, src->blocks[i]);
    }
    dst->n_blocks = src->n_blocks;
    dst->n_tokens = src->n_tokens;
    dst->n_published = src->n_published;
    dst->hash = src->hash;
    return true;
}

/* ---- tests and debugging ---- */

int llc_kv_block_ref(const llc_kv_pool *p, int block) { return p->ref[block]; }

bool llc_kv_block_published(const llc_kv_pool *p, int block) { return p->published[block]; }

void llc_kv_debug_set_hash_mask(llc_kv_pool *p, uint64_t mask) { p->hash_mask = mask; }

bool llc_kv_pool_check(const llc_kv_pool *p, llamac_error *err) {
    int n = p->n_blocks;
    unsigned char *seen = calloc((size_t)n, 1); /* 1 free, 2 lru, 4 used */
    if (!seen) return llc_fail(err, "check: out of memory");
    bool ok = false;
    if (p->n_free < 0 || p->n_free > n) {
        llc_fail(err, "n_free %d out of range", p->n_free);
        goto done;
    }
    for (int i = 0; i < p->n_free; i++) {
        int32_t b = p->free_stack[i];
        if (b < 0 || b >= n || seen[b]) {
            llc_fail(err, "free stack entry %d: block %d out of range or twice", i, b);
            goto done;
        }
        seen[b] |= 1;
        if (p->ref[b] != 0 || p->published[b]) {
            llc_fail(err, "free block %d has ref %d, published %d", b, p->ref[b], p->published[b]);
            goto done;
        }
    }
    int count = 0;
    int32_t prev = -1;
    for (int32_t b = p->lru_head; b >= 0; prev = b, b = p->lru_next[b]) {
        if (b >= n || seen[b] || ++count > n) {
            llc_fail(err, "LRU: block %d out of range, twice or on the free stack", b);
            goto done;
        }
        seen[b] |= 2;
        if (p->lru_prev[b] != prev) {
            llc_fail(err, "LRU: block %d's prev is %d, not %d", b, p->lru_prev[b], prev);
            goto done;
        }
        if (p->ref[b] != 0 || !p->published[b]) {
            llc_fail(err, "LRU block %d has ref %d, published %d", b, p->ref[b], p->published[b]);
            goto done;
        }
    }
    if (prev != p->lru_tail || count != p->n_lru) {
        llc_fail(err, "LRU: tail %d (walk ends at %d), %d blocks (counter %d)", p->lru_tail, prev, count, p->n_lru);
        goto done;
    }
    int used = 0, published = 0;
    for (int b = 0; b < n; b++) {
        if (p->ref[b] < 0) {
            llc_fail(err, "block %d has ref %d", b, p->ref[b]);
            goto done;
        }
        if (p->ref[b] > 0) {
            if (seen[b]) {
                llc_fail(err, "block %d has ref %d but is free or evictable", b, p->ref[b]);
                goto done;
            }
            seen[b] |= 4;
            used++;
        }
        if (!seen[b]) {
            llc_fail(err, "block %d is neither free, evictable nor used", b);
            goto done;
        }
        if (p->published[b]) {
            published++;
            if (p->epoch[b] == 0 || p->epoch[b] >= p->next_epoch) {
                llc_fail(err, "published block %d has epoch %llu", b, (unsigned long long)p->epoch[b]);
                goto done;
            }
            /* Reachable from its home slot without crossing an empty slot. */
            size_t i = home_slot(p, p->hash[b]);
            while (p->table[i].block >= 0 && p->table[i].block != b) i = (i + 1) & p->table_mask;
            if (p->table[i].block != b || p->table[i].hash != p->hash[b]) {
                llc_fail(err, "published block %d is not reachable in the table", b);
                goto done;
            }
        } else if (p->epoch[b] != 0) {
            llc_fail(err, "unpublished block %d has epoch %llu", b, (unsigned long long)p->epoch[b]);
            goto done;
        }
    }
    if (used != llc_kv_n_used(p) || published != p->n_cached) {
        llc_fail(err, "%d used (counter %d), %d published (counter %d)", used, llc_kv_n_used(p), published,
                 p->n_cached);
        goto done;
    }
    size_t occupied = 0;
    for (size_t i = 0; i <= p->table_mask; i++) {
        int32_t b = p->table[i].block;
        if (b < 0) continue;
        occupied++;
        if (b >= n || !p->published[b]) {
            llc_fail(err, "table slot %zu holds block %d, not published", i, b);
            goto done;
        }
    }
    if (occupied != (size_t)p->n_cached) {
        llc_fail(err, "table holds %zu blocks, %d published", occupied, p->n_cached);
        goto done;
    }
    ok = true;
done:
    free(seen);
    return ok;
}
