/*
 * The paged KV cache's block pool (kv/kv_cache.c): allocation and release, exhaustion, prefix sharing
 * (the data one sequence wrote is what another reads), the last prompt token's block never reused,
 * LRU eviction of cached blocks, hash-collision safety (every hash forced equal), copy-on-write of a
 * shared partial block, the publish of a block another sequence already published, and a randomized
 * stress run checking the pool's invariants and every sequence's keys and values after each operation.
 * The data tests run again with f16, bf16 and q8_0 rows (written with the type's converter, compared
 * byte for byte). Every test ends with the pool empty (nothing used, every block available).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kv/kv_cache.h"

/* ---- helpers ---- */

typedef struct ctx {
    llc_kv_pool *p;
    int n_layers, kv_dim, bs, n_blocks;
    enum llc_type type;
} ctx;

/* The element type of the pools the tests make (the typed runs set it); q8_0 rows are made a multiple
 * of 32 long. */
static enum llc_type g_type = LLC_F32;

static ctx make(int n_layers, int kv_dim, int bs, int n_blocks) {
    llamac_error err = {{0}};
    if (g_type == LLC_Q8_0) kv_dim = (kv_dim + 31) / 32 * 32;
    ctx c = {llc_kv_pool_create(n_layers, kv_dim, bs, n_blocks, g_type, &err), n_layers, kv_dim, bs, n_blocks, g_type};
    if (!c.p) fail_msg("create: %s", err.message);
    assert_int_equal(llc_kv_type(c.p), g_type);
    assert_int_equal(llc_kv_row_bytes(c.p), llc_row_size(g_type, kv_dim));
    return c;
}

static void check_pool(const ctx *c) {
    llamac_error err = {{0}};
    if (!llc_kv_pool_check(c->p, &err)) fail_msg("pool invariant: %s", err.message);
    assert_int_equal(llc_kv_n_used(c->p) + llc_kv_n_available(c->p), c->n_blocks);
}

static void check_empty(const ctx *c) {
    check_pool(c);
    assert_int_equal(llc_kv_n_used(c->p), 0);
    assert_int_equal(llc_kv_n_available(c->p), c->n_blocks);
}

/* Each block's ref is the number of tables (of the given live sequences) holding it. */
static void check_refs(const ctx *c, llc_kv_seq *const *seqs, int n) {
    int *count = calloc((size_t)c->n_blocks, sizeof *count);
    assert_non_null(count);
    long sum = 0, refs = 0;
    int used = 0;
    for (int i = 0; i < n; i++) {
        const llc_kv_seq *s = seqs[i];
        assert_int_equal(s->n_blocks, (s->n_tokens + c->bs - 1) / c->bs);
        assert_true(s->n_published <= s->n_tokens / c->bs);
        for (int j = 0; j < s->n_blocks; j++) {
            assert_true(s->blocks[j] >= 0 && s->blocks[j] < c->n_blocks);
            count[s->blocks[j]]++;
            if (j < s->n_published) assert_true(llc_kv_block_published(c->p, s->blocks[j]));
        }
        sum += s->n_blocks;
    }
    for (int b = 0; b < c->n_blocks; b++) {
        assert_int_equal(llc_kv_block_ref(c->p, b), count[b]);
        refs += count[b];
        used += count[b] > 0;
    }
    assert_int_equal(refs, sum);
    assert_int_equal(llc_kv_n_used(c->p), used);
    free(count);
}

static unsigned char *row(const ctx *c, const llc_kv_seq *s, int v, int layer, int pos) {
    unsigned char *base = v ? llc_kv_v_base(c->p, layer) : llc_kv_k_base(c->p, layer);
    return base + ((size_t)s->blocks[pos / c->bs] * (size_t)c->bs + (size_t)(pos % c->bs)) * llc_kv_row_bytes(c->p);
}

static uint64_t mix(uint64_t h, int32_t t) {
    h ^= (uint64_t)(uint32_t)t + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

/* The row a "model" would store at a layer for a position whose prefix hashes to ph, in the pool's
 * type: small integers from the hash (exact in f16 and bf16; q8_0 encodes different rows differently),
 * negated for V. At most 64 values. */
static void val_row(const ctx *c, uint64_t ph, int v, int layer, unsigned char *out) {
    float x[64];
    assert_true(c->kv_dim <= 64);
    uint64_t h = mix(ph, 2 * layer + v);
    for (int d = 0; d < c->kv_dim; d++) x[d] = (float)((int)(mix(h, d) % 17) - 8) * (v ? -1.0f : 1.0f);
    llc_type_get(c->type)->from_float(x, out, c->kv_dim);
}

/* Writes positions [from, to) as computed from tokens (every layer, K and V); the blocks written must
 * belong to this sequence alone. */
static void write_rows(const ctx *c, const llc_kv_seq *s, const int32_t *tokens, int from, int to) {
    uint64_t ph = 1;
    for (int pos = 0; pos < to; pos++) {
        ph = mix(ph, tokens[pos]);
        if (pos < from) continue;
        assert_int_equal(llc_kv_block_ref(c->p, s->blocks[pos / c->bs]), 1);
        for (int v = 0; v < 2; v++)
            for (int l = 0; l < c->n_layers; l++) val_row(c, ph, v, l, row(c, s, v, l, pos));
    }
}

/* Positions [0, to) hold what tokens would have computed. */
static bool rows_match(const ctx *c, const llc_kv_seq *s, const int32_t *tokens, int to) {
    uint64_t ph = 1;
    for (int pos = 0; pos < to; pos++) {
        ph = mix(ph, tokens[pos]);
        for (int v = 0; v < 2; v++)
            for (int l = 0; l < c->n_layers; l++) {
                unsigned char want[256];
                val_row(c, ph, v, l, want);
                if (memcmp(row(c, s, v, l, pos), want, llc_kv_row_bytes(c->p)) != 0) return false;
            }
    }
    return true;
}

static void seq_done(const ctx *c, llc_kv_seq *s) {
    llc_kv_seq_release(c->p, s);
    assert_int_equal(s->n_blocks, 0);
    assert_int_equal(s->n_tokens, 0);
    llc_kv_seq_free(s);
}

/* ---- tests ---- */

static void test_create_invalid(void **state) {
    (void)state;
    const int bad[][4] = {{0, 8, 16, 4}, {2, 0, 16, 4}, {2, 8, 0, 4}, {2, 8, 16, 0}, {-1, 8, 16, 4},
                          {2, 8, 16, -3}, {1, 1, 1 << 20, 1 << 12}, /* 2^32 positions */
                          {1 << 30, 1 << 30, 1 << 20, 1 << 10}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        llamac_error err = {{0}};
        llc_kv_pool *p = llc_kv_pool_create(bad[i][0], bad[i][1], bad[i][2], bad[i][3], LLC_F32, &err);
        assert_null(p);
        assert_true(strncmp(err.message, "KV cache: ", 10) == 0);
    }
    assert_null(llc_kv_pool_create(0, 0, 0, 0, LLC_F32, NULL)); /* NULL err is fine */
    llc_kv_pool_free(NULL);
}

static void test_append_release(void **state) {
    (void)state;
    ctx c = make(2, 8, 16, 8);
    assert_int_equal(llc_kv_block_size(c.p), 16);
    assert_int_equal(llc_kv_n_blocks(c.p), 8);
    assert_int_equal(llc_kv_block_bytes(c.p), 2 * 2 * 16 * 8 * sizeof(float));
    for (int l = 0; l < 2; l++) {
        assert_true((uintptr_t)llc_kv_k_base(c.p, l) % 64 == 0);
        assert_true((uintptr_t)llc_kv_v_base(c.p, l) % 64 == 0);
    }
    check_empty(&c);
    llc_kv_seq s;
    llc_kv_seq_init(&s);
    llc_kv_seq *all[] = {&s};
    assert_int_equal(llc_kv_seq_blocks_needed(c.p, &s, 0), 0);
    assert_int_equal(llc_kv_seq_blocks_needed(c.p, &s, 1), 1);
    assert_int_equal(llc_kv_seq_blocks_needed(c.p, &s, 16), 1);
    assert_int_equal(llc_kv_seq_blocks_needed(c.p, &s, 17), 2);
    assert_true(llc_kv_seq_append(c.p, &s, 0));
    assert_int_equal(s.n_blocks, 0);
    assert_false(llc_kv_seq_append(c.p, &s, -1));
    assert_true(llc_kv_seq_append(c.p, &s, 1));
    assert_int_equal(s.n_tokens, 1);
    assert_int_equal(s.n_blocks, 1);
    assert_int_equal(llc_kv_seq_blocks_needed(c.p, &s, 15), 0);
    assert_true(llc_kv_seq_append(c.p, &s, 15));
    assert_int_equal(s.n_blocks, 1);
    assert_int_equal(llc_kv_seq_blocks_needed(c.p, &s, 1), 1);
    assert_true(llc_kv_seq_append(c.p, &s, 1));
    assert_true(llc_kv_seq_append(c.p, &s, 40)); /* 57 positions: 4 blocks */
    assert_int_equal(s.n_tokens, 57);
    assert_int_equal(s.n_blocks, 4);
    /* A fresh pool hands out 0, 1, 2, ...: laid out like a contiguous cache. */
    for (int i = 0; i < 4; i++) assert_int_equal(s.blocks[i], i);
    assert_int_equal(llc_kv_n_used(c.p), 4);
    assert_int_equal(llc_kv_n_available(c.p), 4);
    assert_int_equal(llc_kv_n_cached(c.p), 0);
    check_pool(&c);
    check_refs(&c, all, 1);
    llc_kv_seq_release(c.p, &s);
    check_empty(&c);
    /* Memory kept: append again after release. */
    assert_true(llc_kv_seq_append(c.p, &s, 128));
    assert_int_equal(llc_kv_n_available(c.p), 0);
    seq_done(&c, &s);
    check_empty(&c);
    llc_kv_pool_free(c.p);
}

static void test_exhaustion(void **state) {
    (void)state;
    ctx c = make(1, 4, 16, 4);
    llc_kv_seq a, b;
    llc_kv_seq_init(&a);
    llc_kv_seq_init(&b);
    llc_kv_seq *all[] = {&a, &b};
    assert_true(llc_kv_seq_append(c.p, &a, 40)); /* 3 blocks */
    assert_true(llc_kv_seq_append(c.p, &b, 10)); /* 1 block */
    assert_int_equal(llc_kv_n_available(c.p), 0);
    llc_kv_seq a0 = a, b0 = b;
    int32_t bb = b.blocks[0];
    assert_int_equal(llc_kv_seq_blocks_needed(c.p, &b, 7), 1);
    assert_false(llc_kv_seq_append(c.p, &b, 7));
    assert_false(llc_kv_seq_append(c.p, &a, 9));
    assert_false(llc_kv_seq_append(c.p, &a, 1000000));
    assert_false(llc_kv_seq_append(c.p, &a, 2147483647)); /* n_tokens + n overflows int */
    assert_int_equal(llc_kv_seq_blocks_needed(c.p, &a, 2147483647), 2147483647);
    assert_memory_equal(&a, &a0, sizeof a);
    assert_memory_equal(&b, &b0, sizeof b);
    assert_int_equal(b.blocks[0], bb);
    assert_int_equal(llc_kv_n_used(c.p), 4);
    check_pool(&c);
    check_refs(&c, all, 2);
    /* Filling the blocks already held needs nothing. */
    assert_true(llc_kv_seq_append(c.p, &a, 8));
    assert_true(llc_kv_seq_append(c.p, &b, 6));
    assert_int_equal(b.n_tokens, 16);
    assert_false(llc_kv_seq_append(c.p, &b, 1));
    /* The caller preempts a: then b goes on. */
    llc_kv_seq_release(c.p, &a);
    check_refs(&c, all, 2);
    assert_true(llc_kv_seq_append(c.p, &b, 48));
    assert_int_equal(b.n_blocks, 4);
    assert_false(llc_kv_seq_append(c.p, &b, 1));
    check_refs(&c, all, 2);
    seq_done(&c, &a);
    seq_done(&c, &b);
    check_empty(&c);
    llc_kv_pool_free(c.p);
}

static void fill_tokens(int32_t *t, int n, int32_t salt) {
    for (int i = 0; i < n; i++) t[i] = 1000 + i * 7 + salt;
}

static void test_prefix_sharing(void **state) {
    (void)state;
    ctx c = make(3, 8, 16, 16);
    int32_t ta[57], tb[50], tc[40], td[48];
    fill_tokens(ta, 57, 0);
    memcpy(tb, ta, 40 * sizeof(int32_t)); /* same first 40 tokens */
    fill_tokens(tb + 40, 10, 5);
    memcpy(tc, ta, sizeof tc);
    tc[20] = 7; /* differs in block 1 */
    memcpy(td, ta, sizeof td); /* exactly 3 full blocks of A */

    llc_kv_seq a, b, cc, d, e;
    llc_kv_seq_init(&a);
    llc_kv_seq_init(&b);
    llc_kv_seq_init(&cc);
    llc_kv_seq_init(&d);
    llc_kv_seq_init(&e);

    /* A: 3.5 blocks, nothing cached yet. */
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &a, ta, 56), 0);
    assert_true(llc_kv_seq_append(c.p, &a, 56));
    write_rows(&c, &a, ta, 0, 56);
    llc_kv_seq_publish(c.p, &a, ta);
    assert_int_equal(a.n_published, 3);
    assert_int_equal(llc_kv_n_cached(c.p), 3);
    assert_int_equal(llc_kv_n_used(c.p), 4);
    assert_true(a.hash != 0);

    /* B: the same first 40 tokens: blocks 0 and 1, shared. */
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &b, tb, 50), 32);
    assert_int_equal(b.n_tokens, 32);
    assert_int_equal(b.n_blocks, 2);
    assert_int_equal(b.n_published, 2);
    assert_int_equal(b.blocks[0], a.blocks[0]);
    assert_int_equal(b.blocks[1], a.blocks[1]);
    assert_int_equal(llc_kv_block_ref(c.p, a.blocks[0]), 2);
    assert_int_equal(llc_kv_block_ref(c.p, a.blocks[1]), 2);
    assert_int_equal(llc_kv_block_ref(c.p, a.blocks[2]), 1);
    assert_true(rows_match(&c, &b, tb, 32)); /* what A wrote is what B reads */
    assert_true(llc_kv_seq_append(c.p, &b, 18));
    assert_int_equal(b.n_blocks, 4);
    assert_true(b.blocks[2] != a.blocks[2]);
    write_rows(&c, &b, tb, 32, 50);
    llc_kv_seq_publish(c.p, &b, tb);
    assert_int_equal(b.n_published, 3);
    assert_int_equal(llc_kv_n_cached(c.p), 4);
    assert_true(rows_match(&c, &a, ta, 56)); /* B's writes left A alone */
    assert_true(rows_match(&c, &b, tb, 50));

    /* C: a different token in block 1: block 0 only. */
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &cc, tc, 40), 16);
    assert_int_equal(cc.blocks[0], a.blocks[0]);
    assert_int_equal(llc_kv_block_ref(c.p, a.blocks[0]), 3);
    assert_true(rows_match(&c, &cc, tc, 16));

    /* D: exactly A's 3 full blocks: the block of the last token is never reused. */
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &d, td, 48), 32);
    /* E: one token more than 3 blocks: all 3. */
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &e, ta, 49), 48);
    assert_int_equal(e.blocks[2], a.blocks[2]);
    assert_true(rows_match(&c, &e, ta, 48));
    /* Not on a non-empty sequence; nothing for 0 or 1 token. */
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &e, ta, 49), 0);
    assert_int_equal(e.n_tokens, 48);
    llc_kv_seq f;
    llc_kv_seq_init(&f);
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &f, ta, 1), 0);
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &f, ta, 0), 0);
    assert_int_equal(f.n_blocks, 0);

    llc_kv_seq *all[] = {&a, &b, &cc, &d, &e, &f};
    check_pool(&c);
    check_refs(&c, all, 6);

    seq_done(&c, &a);
    seq_done(&c, &b);
    seq_done(&c, &cc);
    seq_done(&c, &d);
    seq_done(&c, &e);
    seq_done(&c, &f);
    check_empty(&c);
    assert_int_equal(llc_kv_n_cached(c.p), 4); /* still cached, evictable */

    /* After every user is gone the cache still serves A's prompt, with A's data. */
    llc_kv_seq g;
    llc_kv_seq_init(&g);
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &g, ta, 57), 48);
    assert_true(rows_match(&c, &g, ta, 48));
    assert_int_equal(llc_kv_n_used(c.p), 3);
    seq_done(&c, &g);
    check_empty(&c);
    llc_kv_pool_free(c.p);
}

/* Two sequences compute the same prompt at once (both admitted before either published): the second
 * publish adopts the first one's blocks and gives its own back. */
static void test_publish_duplicate(void **state) {
    (void)state;
    ctx c = make(2, 4, 4, 8);
    int32_t t[10];
    fill_tokens(t, 10, 3);
    llc_kv_seq a, b, g;
    llc_kv_seq_init(&a);
    llc_kv_seq_init(&b);
    llc_kv_seq_init(&g);
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &a, t, 10), 0);
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &b, t, 10), 0);
    assert_true(llc_kv_seq_append(c.p, &a, 10));
    assert_true(llc_kv_seq_append(c.p, &b, 10));
    write_rows(&c, &a, t, 0, 10);
    write_rows(&c, &b, t, 0, 10);
    assert_int_equal(llc_kv_n_used(c.p), 6);
    llc_kv_seq_publish(c.p, &a, t);
    assert_int_equal(llc_kv_n_cached(c.p), 2);
    int32_t b2 = b.blocks[2];
    llc_kv_seq_publish(c.p, &b, t);
    assert_int_equal(llc_kv_n_cached(c.p), 2);
    assert_int_equal(b.n_published, 2);
    assert_int_equal(b.hash, a.hash);
    assert_int_equal(b.blocks[0], a.blocks[0]);
    assert_int_equal(b.blocks[1], a.blocks[1]);
    assert_int_equal(b.blocks[2], b2); /* the partial block stays its own */
    assert_int_equal(llc_kv_n_used(c.p), 4);
    assert_true(rows_match(&c, &b, t, 10));
    llc_kv_seq *all[] = {&a, &b};
    check_pool(&c);
    check_refs(&c, all, 2);
    /* Publishing again changes nothing. */
    llc_kv_seq_publish(c.p, &b, t);
    check_refs(&c, all, 2);
    seq_done(&c, &a);
    seq_done(&c, &b);
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &g, t, 10), 8);
    assert_true(rows_match(&c, &g, t, 8));
    seq_done(&c, &g);
    check_empty(&c);
    llc_kv_pool_free(c.p);
}

static void test_eviction_lru(void **state) {
    (void)state;
    ctx c = make(1, 4, 4, 4);
    int32_t ta[9], tb[9], tx[12];
    fill_tokens(ta, 9, 0);
    fill_tokens(tb, 9, 1);
    fill_tokens(tx, 12, 2);
    llc_kv_seq a, b, x, m;
    llc_kv_seq_init(&a);
    llc_kv_seq_init(&b);
    llc_kv_seq_init(&x);
    llc_kv_seq_init(&m);

    assert_true(llc_kv_seq_append(c.p, &a, 8));
    write_rows(&c, &a, ta, 0, 8);
    llc_kv_seq_publish(c.p, &a, ta);
    int32_t a0 = a.blocks[0], a1 = a.blocks[1];
    llc_kv_seq_release(c.p, &a);
    assert_true(llc_kv_seq_append(c.p, &b, 8));
    write_rows(&c, &b, tb, 0, 8);
    llc_kv_seq_publish(c.p, &b, tb);
    int32_t b0 = b.blocks[0], b1 = b.blocks[1];
    llc_kv_seq_release(c.p, &b);
    /* Everything cached and evictable, oldest first: a1, a0, b1, b0 (a sequence's last block first). */
    check_empty(&c);
    assert_int_equal(llc_kv_n_cached(c.p), 4);

    /* A new sequence needs a block: the free list is empty, so a1 goes. */
    assert_int_equal(llc_kv_seq_blocks_needed(c.p, &x, 4), 1);
    assert_true(llc_kv_seq_append(c.p, &x, 4));
    assert_int_equal(x.blocks[0], a1);
    assert_int_equal(llc_kv_n_cached(c.p), 3);
    assert_false(llc_kv_block_published(c.p, a1));
    write_rows(&c, &x, tx, 0, 4);
    /* A's prompt now finds block 0 only; using it makes a0 the most recently used. */
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &m, ta, 9), 4);
    assert_int_equal(m.blocks[0], a0);
    assert_true(rows_match(&c, &m, ta, 4));
    llc_kv_seq_release(c.p, &m);
    /* Order now b1, b0, a0: the next block is b1. */
    assert_true(llc_kv_seq_append(c.p, &x, 4));
    assert_int_equal(x.blocks[1], b1);
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &m, tb, 9), 4);
    assert_int_equal(m.blocks[0], b0);
    llc_kv_seq_release(c.p, &m);
    /* Order a0, b0. */
    assert_true(llc_kv_seq_append(c.p, &x, 4));
    assert_int_equal(x.blocks[2], a0);
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &m, ta, 9), 0); /* evicted: a miss */
    assert_int_equal(llc_kv_n_cached(c.p), 1);
    write_rows(&c, &x, tx, 4, 12);
    llc_kv_seq_publish(c.p, &x, tx);
    assert_int_equal(llc_kv_n_cached(c.p), 4);
    /* Pool full of x's blocks (b0 evictable): one more block takes b0, then nothing is left. */
    assert_int_equal(llc_kv_n_available(c.p), 1);
    assert_true(llc_kv_seq_append(c.p, &x, 1));
    assert_int_equal(x.blocks[3], b0);
    assert_int_equal(llc_kv_n_cached(c.p), 3);
    assert_false(llc_kv_seq_append(c.p, &m, 1));
    llc_kv_seq *all[] = {&x, &m};
    check_pool(&c);
    check_refs(&c, all, 2);
    assert_true(rows_match(&c, &x, tx, 12));

    seq_done(&c, &a);
    seq_done(&c, &b);
    seq_done(&c, &x);
    seq_done(&c, &m);
    check_empty(&c);
    llc_kv_pool_free(c.p);
}

/* Every chain hash forced to 0: lookups must tell blocks apart by their tokens and by the block before
 * them, or they would hand out another prompt's keys. */
static void test_hash_collision(void **state) {
    (void)state;
    ctx c = make(1, 4, 4, 6);
    llc_kv_debug_set_hash_mask(c.p, 0);
    const int32_t P[4] = {1, 2, 3, 4}, Q[4] = {5, 6, 7, 8}, R[4] = {9, 9, 9, 9}, S[4] = {5, 6, 7, 9};
    int32_t tpq[9], trq[9], tps[9], tsx[9];
    memcpy(tpq, P, sizeof P);
    memcpy(tpq + 4, Q, sizeof Q);
    memcpy(trq, R, sizeof R);
    memcpy(trq + 4, Q, sizeof Q);
    memcpy(tps, P, sizeof P);
    memcpy(tps + 4, S, sizeof S);
    memcpy(tsx, S, sizeof S);
    memcpy(tsx + 4, Q, sizeof Q);
    tpq[8] = trq[8] = tps[8] = tsx[8] = 42;

    llc_kv_seq a, b, g;
    llc_kv_seq_init(&a);
    llc_kv_seq_init(&b);
    llc_kv_seq_init(&g);
    assert_true(llc_kv_seq_append(c.p, &a, 8));
    write_rows(&c, &a, tpq, 0, 8);
    llc_kv_seq_publish(c.p, &a, tpq);
    assert_int_equal(a.hash, 0);
    /* B: same block-1 tokens, another block 0. Same hashes as A all along, yet its own entries. */
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &b, trq, 9), 0);
    assert_true(llc_kv_seq_append(c.p, &b, 8));
    write_rows(&c, &b, trq, 0, 8);
    llc_kv_seq_publish(c.p, &b, trq);
    assert_int_equal(llc_kv_n_cached(c.p), 4);
    assert_true(b.blocks[1] != a.blocks[1]);

    struct {
        const int32_t *t;
        int want;
        const llc_kv_seq *owner;
    } cases[] = {{tpq, 8, &a}, {trq, 8, &b}, {tps, 4, &a}, {tsx, 0, NULL}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(llc_kv_seq_match_prefix(c.p, &g, cases[i].t, 9), cases[i].want);
        for (int j = 0; j < g.n_blocks; j++) assert_int_equal(g.blocks[j], cases[i].owner->blocks[j]);
        assert_true(rows_match(&c, &g, cases[i].t, cases[i].want));
        llc_kv_seq_release(c.p, &g);
    }
    /* Now evict A's block 1 but keep A's block 0: the only cached block holding Q after P's block is
     * B's, whose block 0 is R. A lookup trusting the hash and the block's own tokens would take it. */
    int32_t a0 = a.blocks[0], a1 = a.blocks[1], b1 = b.blocks[1];
    llc_kv_seq_release(c.p, &a); /* LRU: a1, a0 */
    llc_kv_seq_release(c.p, &b); /* LRU: a1, a0, b1, b0 */
    check_empty(&c);
    llc_kv_seq x;
    llc_kv_seq_init(&x);
    assert_true(llc_kv_seq_append(c.p, &x, 12)); /* 2 free blocks, then a1 */
    assert_int_equal(x.blocks[2], a1);
    assert_true(llc_kv_block_published(c.p, a0));
    assert_true(llc_kv_block_published(c.p, b1));
    assert_false(llc_kv_block_published(c.p, a1));
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &g, tpq, 9), 4);
    assert_int_equal(g.blocks[0], a0);
    assert_true(rows_match(&c, &g, tpq, 4));
    llc_kv_seq *all[] = {&x, &g};
    check_pool(&c);
    check_refs(&c, all, 2);
    seq_done(&c, &g);
    seq_done(&c, &x);
    seq_done(&c, &a);
    seq_done(&c, &b);
    check_empty(&c);
    llc_kv_pool_free(c.p);
}

static void test_copy_on_write(void **state) {
    (void)state;
    ctx c = make(2, 4, 4, 5);
    int32_t ta[12], tb[12];
    fill_tokens(ta, 12, 0);
    memcpy(tb, ta, 6 * sizeof(int32_t));
    fill_tokens(tb + 6, 6, 9);
    llc_kv_seq a, b;
    llc_kv_seq_init(&a);
    llc_kv_seq_init(&b);
    llc_kv_seq *all[] = {&a, &b};
    assert_true(llc_kv_seq_append(c.p, &a, 6)); /* blocks: 0 full, 1 holds 2 of 4 */
    write_rows(&c, &a, ta, 0, 6);
    llc_kv_seq_publish(c.p, &a, ta);
    assert_int_equal(a.n_published, 1);
    assert_true(llc_kv_seq_fork(c.p, &b, &a));
    assert_false(llc_kv_seq_fork(c.p, &b, &a)); /* b not empty */
    assert_int_equal(b.n_tokens, 6);
    assert_int_equal(b.n_published, 1);
    assert_int_equal(llc_kv_block_ref(c.p, a.blocks[1]), 2);
    check_refs(&c, all, 2);
    int32_t shared = a.blocks[1];

    /* B writes position 6, inside the shared block: it gets a copy first. */
    assert_int_equal(llc_kv_seq_blocks_needed(c.p, &b, 1), 1);
    assert_int_equal(llc_kv_seq_blocks_needed(c.p, &b, 3), 2); /* copy + block 2 */
    assert_true(llc_kv_seq_append(c.p, &b, 1));
    assert_true(b.blocks[1] != shared);
    assert_int_equal(a.blocks[1], shared);
    assert_int_equal(b.blocks[0], a.blocks[0]);
    assert_int_equal(llc_kv_block_ref(c.p, shared), 1);
    assert_int_equal(llc_kv_block_ref(c.p, a.blocks[0]), 2);
    assert_true(rows_match(&c, &b, ta, 6)); /* the rows written so far were copied */
    write_rows(&c, &b, tb, 6, 7);
    /* A is the only user of its block now: no copy. */
    assert_int_equal(llc_kv_seq_blocks_needed(c.p, &a, 1), 0);
    assert_true(llc_kv_seq_append(c.p, &a, 1));
    assert_int_equal(a.blocks[1], shared);
    write_rows(&c, &a, ta, 6, 7);
    assert_true(rows_match(&c, &a, ta, 7));
    assert_true(rows_match(&c, &b, tb, 7));
    assert_false(rows_match(&c, &b, ta, 7));
    check_pool(&c);
    check_refs(&c, all, 2);

    /* No block for the copy: append fails and changes nothing. Pool: a0 (shared), a1, b1 used. */
    llc_kv_seq a2;
    llc_kv_seq_init(&a2);
    assert_true(llc_kv_seq_fork(c.p, &a2, &a)); /* a1 shared again, partially filled */
    llc_kv_seq z;
    llc_kv_seq_init(&z);
    assert_true(llc_kv_seq_append(c.p, &z, 8)); /* the last two blocks */
    assert_int_equal(llc_kv_n_available(c.p), 0);
    llc_kv_seq a_before = a;
    assert_int_equal(llc_kv_seq_blocks_needed(c.p, &a, 1), 1);
    assert_false(llc_kv_seq_append(c.p, &a, 1));
    assert_memory_equal(&a, &a_before, sizeof a);
    assert_int_equal(llc_kv_block_ref(c.p, shared), 2);
    llc_kv_seq *all4[] = {&a, &b, &a2, &z};
    check_pool(&c);
    check_refs(&c, all4, 4);
    llc_kv_seq_release(c.p, &z);
    assert_true(llc_kv_seq_append(c.p, &a, 1));
    assert_true(a.blocks[1] != shared);
    write_rows(&c, &a, ta, 7, 8);
    assert_true(rows_match(&c, &a, ta, 8));
    assert_true(rows_match(&c, &a2, ta, 7));
    /* Both fill block 1 with the same tokens and publish: one copy stays in the cache. */
    assert_true(llc_kv_seq_append(c.p, &a2, 1));
    write_rows(&c, &a2, ta, 7, 8);
    llc_kv_seq_publish(c.p, &a2, ta);
    int used = llc_kv_n_used(c.p);
    llc_kv_seq_publish(c.p, &a, ta);
    assert_int_equal(a.blocks[1], a2.blocks[1]);
    assert_int_equal(llc_kv_n_used(c.p), used - 1);
    assert_true(rows_match(&c, &a, ta, 8));
    check_pool(&c);
    check_refs(&c, all4, 4);

    seq_done(&c, &a);
    seq_done(&c, &b);
    seq_done(&c, &a2);
    seq_done(&c, &z);
    check_empty(&c);
    llc_kv_pool_free(c.p);
}

/* A forked pair whose shared block 1 was published by one of them under another sequence's block 0,
 * which is then evicted and reused for another prompt: the chain must not lead from that prompt to
 * block 1 (the parent's publication stamp tells the two apart, even with every hash equal), and the
 * other sequence's later publish hangs block 1 under its own block 0 so it can be found again. */
static void test_fork_stale_parent(void **state) {
    (void)state;
    ctx c = make(1, 4, 4, 6);
    llc_kv_debug_set_hash_mask(c.p, 0);
    const int32_t P[4] = {1, 2, 3, 4}, Q[4] = {5, 6, 7, 8}, R[4] = {9, 9, 9, 9};
    int32_t tpq[9], trq[9];
    memcpy(tpq, P, sizeof P);
    memcpy(tpq + 4, Q, sizeof Q);
    memcpy(trq, R, sizeof R);
    memcpy(trq + 4, Q, sizeof Q);
    tpq[8] = trq[8] = 42;
    llc_kv_seq x, s, t, f1, f2, g;
    llc_kv_seq_init(&x);
    llc_kv_seq_init(&s);
    llc_kv_seq_init(&t);
    llc_kv_seq_init(&f1);
    llc_kv_seq_init(&f2);
    llc_kv_seq_init(&g);

    assert_true(llc_kv_seq_append(c.p, &x, 5)); /* blocks 0, 1 */
    write_rows(&c, &x, tpq, 0, 5);
    llc_kv_seq_publish(c.p, &x, tpq); /* x0 published under P */
    int32_t x0 = x.blocks[0];
    assert_true(llc_kv_seq_append(c.p, &s, 8)); /* computed P Q itself: blocks 2, 3 */
    write_rows(&c, &s, tpq, 0, 8);
    int32_t s0 = s.blocks[0], s1 = s.blocks[1];
    assert_true(llc_kv_seq_fork(c.p, &t, &s));
    llc_kv_seq_publish(c.p, &t, tpq); /* t adopts x0, publishes s1 under x0 */
    assert_int_equal(t.blocks[0], x0);
    assert_int_equal(t.blocks[1], s1);
    assert_true(llc_kv_block_published(c.p, s1));
    assert_false(llc_kv_block_published(c.p, s0));
    llc_kv_seq_release(c.p, &x);
    llc_kv_seq_release(c.p, &t); /* x0 evictable; s still holds s0, s1 */
    assert_true(llc_kv_seq_append(c.p, &f1, 12)); /* the free blocks */
    assert_true(llc_kv_seq_append(c.p, &f2, 4));  /* then x0, evicted */
    assert_int_equal(f2.blocks[0], x0);
    write_rows(&c, &f2, trq, 0, 4);
    llc_kv_seq_publish(c.p, &f2, trq); /* x0 again, now under R */
    assert_true(llc_kv_block_published(c.p, x0));
    /* R then Q: block 0 is x0, but s1 was computed after P, not R. */
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &g, trq, 9), 4);
    assert_int_equal(g.blocks[0], x0);
    llc_kv_seq_release(c.p, &g);
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &g, tpq, 9), 0);
    /* s publishes: s0 under P, and s1 now under s0. */
    llc_kv_seq_publish(c.p, &s, tpq);
    assert_int_equal(s.blocks[0], s0);
    assert_int_equal(s.blocks[1], s1);
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &g, tpq, 9), 8);
    assert_int_equal(g.blocks[0], s0);
    assert_int_equal(g.blocks[1], s1);
    assert_true(rows_match(&c, &g, tpq, 8));
    llc_kv_seq_release(c.p, &g);
    assert_int_equal(llc_kv_seq_match_prefix(c.p, &g, trq, 9), 4);
    assert_true(rows_match(&c, &g, trq, 4));
    llc_kv_seq *all[] = {&x, &s, &t, &f1, &f2, &g};
    check_pool(&c);
    check_refs(&c, all, 6);
    for (int i = 0; i < 6; i++) seq_done(&c, all[i]);
    check_empty(&c);
    llc_kv_pool_free(c.p);
}

/* ---- randomized stress ---- */

static uint64_t rng_state;
static uint32_t rnd(uint32_t n) { /* uniform-ish in [0, n) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)((rng_state >> 32) % n);
}

#define MAX_SEQS 8

typedef struct sim {
    bool live;
    llc_kv_seq s;
    int32_t *tok; /* [max_len] */
} sim;

static void check_all(const ctx *c, sim *seqs) {
    llc_kv_seq *live[MAX_SEQS];
    int n = 0;
    for (int i = 0; i < MAX_SEQS; i++)
        if (seqs[i].live) {
            live[n++] = &seqs[i].s;
            if (!rows_match(c, &seqs[i].s, seqs[i].tok, seqs[i].s.n_tokens))
                fail_msg("sequence %d: keys/values are not those of its tokens", i);
        }
    check_pool(c);
    check_refs(c, live, n);
}

/* Prompts: most often the start of one of a few "documents" (so whole blocks are shared at any block
 * size) followed by random tokens from a small alphabet (so prefixes also meet by chance). */
#define N_DOCS 3
static int32_t docs[N_DOCS][64 * 16];

static void gen_tokens(int32_t *t, int n, int alphabet) {
    int d = (int)rnd(N_DOCS + 1);
    int from_doc = d < N_DOCS ? (int)rnd((uint32_t)n + 1) : 0;
    for (int i = 0; i < n; i++) t[i] = i < from_doc ? docs[d][i] : (int32_t)rnd((uint32_t)alphabet);
}

/* Appends k positions (drawing their tokens when fresh); checks blocks_needed predicts both the
 * outcome and the cost, and that a failure changes nothing. 1 done, 0 no room, -1 past max_len. */
static int sim_append(const ctx *c, sim *q, int k, int max_len, int alphabet, bool fresh) {
    llc_kv_seq *s = &q->s;
    if (s->n_tokens + k > max_len) return -1;
    int need = llc_kv_seq_blocks_needed(c->p, s, k);
    int avail = llc_kv_n_available(c->p), used = llc_kv_n_used(c->p), cached = llc_kv_n_cached(c->p);
    llc_kv_seq before = *s;
    int32_t saved[64];
    assert_true(s->n_blocks <= 64);
    if (s->n_blocks > 0) memcpy(saved, s->blocks, (size_t)s->n_blocks * sizeof(int32_t));
    bool ok = llc_kv_seq_append(c->p, s, k);
    assert_int_equal(ok, need <= avail);
    if (!ok) {
        assert_memory_equal(s, &before, sizeof before);
        if (s->n_blocks > 0) assert_memory_equal(s->blocks, saved, (size_t)s->n_blocks * sizeof(int32_t));
        assert_int_equal(llc_kv_n_used(c->p), used);
        assert_int_equal(llc_kv_n_cached(c->p), cached);
        return 0;
    }
    assert_int_equal(llc_kv_n_used(c->p), used + need);
    int from = before.n_tokens;
    if (fresh)
        for (int i = from; i < s->n_tokens; i++) q->tok[i] = (int32_t)rnd((uint32_t)alphabet);
    write_rows(c, s, q->tok, from, s->n_tokens);
    return 1;
}

static void stress(int bs, int n_blocks, uint64_t hash_mask, int alphabet, int steps, uint64_t seed) {
    rng_state = seed;
    ctx c = make(2, 3, bs, n_blocks);
    llc_kv_debug_set_hash_mask(c.p, hash_mask);
    int max_len = bs * (n_blocks / 2 + 1);
    if (max_len > 64 * bs) max_len = 64 * bs;
    assert_true(max_len <= 64 * 16);
    for (int d = 0; d < N_DOCS; d++)
        for (int i = 0; i < max_len; i++) docs[d][i] = (int32_t)rnd((uint32_t)alphabet);
    sim seqs[MAX_SEQS];
    for (int i = 0; i < MAX_SEQS; i++) {
        seqs[i].live = false;
        llc_kv_seq_init(&seqs[i].s);
        seqs[i].tok = malloc((size_t)max_len * sizeof(int32_t));
        assert_non_null(seqs[i].tok);
    }
    long matched_total = 0, admitted = 0, failed_appends = 0, forks = 0;
    for (int step = 0; step < steps; step++) {
        int op = (int)rnd(100);
        int i = (int)rnd(MAX_SEQS);
        sim *q = &seqs[i];
        if (!q->live && op < 60) {
            /* Admit: match the cache, then compute the rest of the prompt. */
            int n = 1 + (int)rnd((uint32_t)max_len);
            gen_tokens(q->tok, n, alphabet);
            int m = llc_kv_seq_match_prefix(c.p, &q->s, q->tok, n);
            assert_true(m % bs == 0 && m <= n - 1 && m == q->s.n_tokens);
            q->live = true;
            matched_total += m;
            if (!rows_match(&c, &q->s, q->tok, m)) fail_msg("step %d: a cached prefix holds another prompt's keys", step);
            check_all(&c, seqs);
            /* sim_append draws no tokens here: the prompt is already in q->tok. */
            int need = llc_kv_seq_blocks_needed(c.p, &q->s, n - m);
            int avail = llc_kv_n_available(c.p);
            if (sim_append(&c, q, n - m, max_len, alphabet, false) == 1) {
                admitted++;
                if (rnd(4)) llc_kv_seq_publish(c.p, &q->s, q->tok);
            } else {
                assert_true(need > avail);
                failed_appends++;
                llc_kv_seq_release(c.p, &q->s);
                q->live = false;
            }
        } else if (!q->live && op < 80) {
            /* Fork a live sequence into this slot. */
            int j = (int)rnd(MAX_SEQS);
            if (seqs[j].live) {
                assert_true(llc_kv_seq_fork(c.p, &q->s, &seqs[j].s));
                memcpy(q->tok, seqs[j].tok, (size_t)seqs[j].s.n_tokens * sizeof(int32_t));
                q->live = true;
                forks++;
            }
        } else if (q->live && op < 55) {
            int k = 1 + (int)rnd((uint32_t)(2 * bs));
            if (sim_append(&c, q, k, max_len, alphabet, true) == 0) failed_appends++;
            if (rnd(2)) llc_kv_seq_publish(c.p, &q->s, q->tok);
        } else if (q->live && op < 70) {
            llc_kv_seq_publish(c.p, &q->s, q->tok);
        } else if (q->live) {
            llc_kv_seq_release(c.p, &q->s);
            q->live = false;
        }
        check_all(&c, seqs);
    }
    for (int i = 0; i < MAX_SEQS; i++) {
        seq_done(&c, &seqs[i].s);
        free(seqs[i].tok);
    }
    check_empty(&c);
    /* The run must have exercised what it claims to. */
    assert_true(admitted > steps / 20);
    assert_true(matched_total > 0);
    assert_true(failed_appends > 0);
    assert_true(forks > 0);
    llc_kv_pool_free(c.p);
}

static void test_stress(void **state) {
    (void)state;
    stress(4, 24, UINT64_MAX, 2, 6000, 0x9e3779b97f4a7c15ull);
    stress(4, 24, 0, 2, 3000, 7);            /* every hash equal */
    stress(3, 17, 7, 3, 6000, 11);           /* many collisions, deletions mid-run */
    stress(1, 12, UINT64_MAX, 2, 6000, 13);  /* a block per position */
    stress(16, 10, 3, 2, 3000, 17);
    stress(2, 64, UINT64_MAX, 2, 6000, 19);
}

/* Element types: row and block sizes, the types and shapes refused, and the data tests again with rows
 * of f16, bf16 and q8_0 (copy-on-write and prefix sharing move bytes, whatever they encode). */
static void test_types(void **state) {
    (void)state;
    const enum llc_type types[] = {LLC_F16, LLC_BF16, LLC_Q8_0};
    const size_t row64[] = {128, 128, 68}; /* bytes of a row of 64 values */
    for (int i = 0; i < 3; i++) {
        llamac_error err = {{0}};
        llc_kv_pool *p = llc_kv_pool_create(2, 64, 16, 3, types[i], &err);
        assert_non_null(p);
        assert_int_equal(llc_kv_row_bytes(p), row64[i]);
        assert_int_equal(llc_kv_block_bytes(p), 2 * 2 * 16 * row64[i]);
        assert_true((uintptr_t)llc_kv_k_base(p, 1) % 64 == 0);
        llc_kv_pool_free(p);
    }
    llamac_error err = {{0}};
    assert_null(llc_kv_pool_create(2, 48, 16, 3, LLC_Q8_0, &err)); /* rows of 48: not whole q8_0 blocks */
    assert_non_null(strstr(err.message, "multiple of 32"));
    assert_null(llc_kv_pool_create(2, 64, 16, 3, LLC_Q4_0, &err));
    assert_non_null(strstr(err.message, "q4_0"));
    assert_int_equal(llamac_kv_type_from_name("Q8_0"), LLAMAC_KV_Q8_0);
    assert_int_equal(llamac_kv_type_from_name("bf16"), LLAMAC_KV_BF16);
    assert_int_equal(llamac_kv_type_from_name("q4_0"), -1);
    assert_int_equal(llamac_kv_type_from_name(""), -1);
    assert_int_equal(llc_kv_elem_type(LLAMAC_KV_F16), LLC_F16);
    assert_int_equal(llc_kv_elem_type((llamac_kv_type)7), -1);
    for (int i = 0; i < 3; i++) {
        g_type = types[i];
        test_prefix_sharing(state);
        test_copy_on_write(state);
        test_fork_stale_parent(state);
        stress(4, 24, UINT64_MAX, 2, 2000, 23 + (uint64_t)i);
        stress(3, 17, 7, 3, 2000, 29 + (uint64_t)i);
    }
    g_type = LLC_F32;
}

/* kv_row.h: llc_kv_store puts a position's rows where the layout says (block table entry, position in
 * the block, rows of 256/128/128/68 bytes for 64 values of f32/f16/bf16/q8_0), rounded as the type's
 * from_float rounds; llc_kv_layer_view's blocks and strides lead the kernel's to_f32 back to the same
 * values, head by head. */
static void test_row_format(void **state) {
    (void)state;
    const enum llc_type types[] = {LLC_F32, LLC_F16, LLC_BF16, LLC_Q8_0};
    const size_t row64[] = {256, 128, 128, 68};
    enum { KV_DIM = 64, HD = 16, BS = 4, N_POS = 11 };
    const int32_t table[] = {3, 0, 4}; /* not in order: the table, not the position, picks the block */
    for (int ti = 0; ti < 4; ti++) {
        llamac_error err = {{0}};
        llc_kv_pool *p = llc_kv_pool_create(2, KV_DIM, BS, 5, types[ti], &err);
        assert_non_null(p);
        float k[KV_DIM], v[KV_DIM];
        for (int pos = 0; pos < N_POS; pos++)
            for (int l = 0; l < 2; l++) {
                for (int d = 0; d < KV_DIM; d++) {
                    k[d] = 0.37f * (float)(d - 20) + 0.011f * (float)(pos * 3 + l);
                    v[d] = -k[d] * 1.7f;
                }
                llc_kv_store(p, l, table, pos, k, v);
                unsigned char want[2][256];
                llc_type_get(types[ti])->from_float(k, want[0], KV_DIM);
                llc_type_get(types[ti])->from_float(v, want[1], KV_DIM);
                size_t at = ((size_t)table[pos / BS] * BS + (size_t)(pos % BS)) * row64[ti];
                assert_memory_equal((unsigned char *)llc_kv_k_base(p, l) + at, want[0], row64[ti]);
                assert_memory_equal((unsigned char *)llc_kv_v_base(p, l) + at, want[1], row64[ti]);
            }
        for (int l = 0; l < 2; l++) {
            const void *kp[3], *vp[3];
            llc_kv_view view = llc_kv_layer_view(p, l, table, 3, HD, kp, vp);
            assert_int_equal(view.block_size, BS);
            assert_int_equal(view.row_stride, KV_DIM);
            assert_int_equal(view.head_stride, HD);
            assert_int_equal(view.type, types[ti]);
            for (int i = 0; i < 3; i++) {
                assert_ptr_equal(kp[i], (unsigned char *)llc_kv_k_base(p, l) + (size_t)table[i] * BS * row64[ti]);
                assert_ptr_equal(vp[i], (unsigned char *)llc_kv_v_base(p, l) + (size_t)table[i] * BS * row64[ti]);
            }
            for (int pos = 0; pos < N_POS; pos++) {
                float full[KV_DIM], head[HD];
                size_t at = ((size_t)table[pos / BS] * BS + (size_t)(pos % BS)) * row64[ti];
                llc_type_get(types[ti])->to_float((unsigned char *)llc_kv_k_base(p, l) + at, full, KV_DIM);
                for (int h = 0; h < KV_DIM / HD; h++) {
                    size_t e = (size_t)(pos % BS) * view.row_stride + (size_t)h * view.head_stride;
                    llc_attn_to_f32_scalar(view.type, view.k_blocks[pos / BS], e, HD, head);
                    assert_memory_equal(head, full + h * HD, sizeof head);
                }
            }
        }
        llc_kv_pool_free(p);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_invalid), cmocka_unit_test(test_append_release),
        cmocka_unit_test(test_exhaustion),     cmocka_unit_test(test_prefix_sharing),
        cmocka_unit_test(test_publish_duplicate), cmocka_unit_test(test_eviction_lru),
        cmocka_unit_test(test_hash_collision), cmocka_unit_test(test_copy_on_write),
        cmocka_unit_test(test_fork_stale_parent), cmocka_unit_test(test_stress),
        cmocka_unit_test(test_types),          cmocka_unit_test(test_row_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
