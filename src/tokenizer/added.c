/*
 * Special and added tokens cut out of the text before encoding, in one pass over it. Control and
 * unknown tokens only with parse_special; user-defined ones always (as SentencePiece and Hugging Face
 * do).
 *
 * The result must be llama.cpp's tokenizer_st_partition: every token in turn, longest first (equal
 * lengths by id here; llama.cpp's std::sort leaves their order unspecified), takes its leftmost
 * non-overlapping occurrences in what earlier tokens left. That is not leftmost-longest matching (with
 * "ab" and "bcd", "abcd" splits as a|bcd), but it is the greedy over all occurrences ordered by
 * (length desc, id asc, position asc), each taken if it overlaps nothing taken before. Taking only
 * ever blocks more, so every position needs just one live candidate, its longest token that still fits
 * before the next taken byte; a heap holds those.
 *
 * The tokens starting at each position come from an Aho-Corasick automaton over the reversed tokens,
 * run from the end of the text: the state after reading text[p] is the longest prefix of text[p..)
 * that ends some token, and it and its dictionary links list the tokens starting at p, longest first.
 * Children are kept in one hash table (a 256-wide array only at the root), so memory is linear in the
 * tokens' total length whatever their number. Cost: the scan is linear in the text; each position
 * costs a heap operation per token it passes over, which is bounded by the occurrences (at most one
 * per token length per position) and in practice a few.
 */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tokenizer/tokenizer_internal.h"

/* Mode 0: user-defined tokens only; mode 1: also control and unknown ones (parse_special). */
typedef struct ac_node {
    int32_t fail;   /* node of the longest proper suffix that is in the trie */
    int32_t id[2];  /* token whose reversed text ends here in each mode (lowest id of equal texts), -1 */
    int32_t out[2]; /* nearest node on the fail chain with id[m] >= 0, -1 */
    uint32_t depth;
} ac_node;

struct llc_added {
    ac_node *nodes;
    int32_t n_nodes;
    bool any[2];       /* some token in this mode */
    int32_t root[256]; /* children of the root, -1 */
    /* Other children: open addressing on (parent, byte); key 0 = empty slot. */
    uint64_t *keys;
    int32_t *vals;
    uint64_t mask;
};

static uint64_t child_key(int32_t node, unsigned char c) { return ((uint64_t)node << 8 | c) + 1; }

static uint64_t slot_of(uint64_t key, uint64_t mask) { return (key * 0x9E3779B97F4A7C15ull >> 20) & mask; }

static int32_t child(const struct llc_added *a, int32_t node, unsigned char c) {
    if (node == 0) return a->root[c];
    uint64_t k = child_key(node, c);
    for (uint64_t i = slot_of(k, a->mask);; i = (i + 1) & a->mask) {
        if (a->keys[i] == k) return a->vals[i];
        if (!a->keys[i]) return -1;
    }
}

static int32_t add_child(struct llc_added *a, int32_t node, unsigned char c, uint32_t depth) {
    int32_t v = a->n_nodes++;
    a->nodes[v] = (ac_node){0, {-1, -1}, {-1, -1}, depth};
    if (node == 0) {
        a->root[c] = v;
        return v;
    }
    uint64_t k = child_key(node, c), i = slot_of(k, a->mask);
    while (a->keys[i]) i = (i + 1) & a->mask;
    a->keys[i] = k;
    a->vals[i] = v;
    return v;
}

void llc_added_free(struct llc_added *a) {
    if (!a) return;
    free(a->nodes);
    free(a->keys);
    free(a->vals);
    free(a);
}

static bool is_added(const llc_token *t) {
    return t->len > 0 && (t->type == LLC_TT_CONTROL || t->type == LLC_TT_UNKNOWN || t->type == LLC_TT_USER_DEFINED);
}

bool llc_added_build(struct llamac_tokenizer *tok, llamac_error *err) {
    size_t total = 0;
    for (int i = 0; i < tok->n_vocab; i++)
        if (is_added(&tok->tokens[i])) total += tok->tokens[i].len;
    if (total == 0) return true;
    /* Node ids are int32 and hash keys hold them shifted by 8. */
    if (total >= (size_t)INT32_MAX / 4) return llc_fail(err, "special tokens are too long in total (%zu bytes)", total);

    struct llc_added *a = calloc(1, sizeof *a);
    uint64_t slots = 16;
    while (slots < 2 * (uint64_t)total) slots *= 2;
    int32_t *parent = NULL, *order = NULL;
    uint32_t *count = NULL;
    unsigned char *byte = NULL;
    if (a) {
        a->nodes = malloc((total + 1) * sizeof *a->nodes);
        a->keys = calloc(slots, sizeof *a->keys);
        a->vals = malloc(slots * sizeof *a->vals);
        parent = malloc((total + 1) * sizeof *parent);
        order = malloc((total + 1) * sizeof *order);
        byte = malloc(total + 1);
        count = calloc((size_t)tok->max_len + 2, sizeof *count);
    }
    if (!a || !a->nodes || !a->keys || !a->vals || !parent || !order || !byte || !count) {
        llc_added_free(a);
        free(parent);
        free(order);
        free(byte);
        free(count);
        return llc_fail(err, "out of memory for the special-token matcher");
    }
    a->mask = slots - 1;
    memset(a->root, 0xff, sizeof a->root);
    a->nodes[0] = (ac_node){0, {-1, -1}, {-1, -1}, 0};
    a->n_nodes = 1;

    for (int32_t id = 0; id < tok->n_vocab; id++) {
        const llc_token *t = &tok->tokens[id];
        if (!is_added(t)) continue;
        int32_t v = 0;
        for (uint32_t j = t->len; j-- > 0;) {
            unsigned char c = (unsigned char)t->text[j];
            int32_t w = child(a, v, c);
            if (w < 0) {
                w = add_child(a, v, c, t->len - j);
                parent[w] = v;
                byte[w] = c;
            }
            v = w;
        }
        /* Ids ascend, so the first one kept is the lowest: a later equal text never matches anything. */
        if (a->nodes[v].id[1] < 0) a->nodes[v].id[1] = id;
        if (t->type == LLC_TT_USER_DEFINED && a->nodes[v].id[0] < 0) a->nodes[v].id[0] = id;
        a->any[1] = true;
        a->any[0] |= t->type == LLC_TT_USER_DEFINED;
    }

    /* Fail links need every shallower node's: by depth (counting sort). */
    for (int32_t v = 1; v < a->n_nodes; v++) count[a->nodes[v].depth]++;
    for (uint32_t d = 1, sum = 0; d <= tok->max_len + 1; d++) {
        uint32_t c = count[d];
        count[d] = sum;
        sum += c;
    }
    for (int32_t v = 1; v < a->n_nodes; v++) order[count[a->nodes[v].depth]++] = v;
    for (int32_t k = 0; k < a->n_nodes - 1; k++) {
        int32_t v = order[k], f = 0;
        ac_node *n = &a->nodes[v];
        if (n->depth > 1) {
            for (int32_t u = a->nodes[parent[v]].fail;; u = a->nodes[u].fail) {
                int32_t w = child(a, u, byte[v]);
                if (w >= 0) {
                    f = w;
                    break;
                }
                if (u == 0) break;
            }
        }
        n->fail = f;
        for (int m = 0; m < 2; m++) n->out[m] = a->nodes[f].id[m] >= 0 ? f : a->nodes[f].out[m];
    }
    free(parent);
    free(order);
    free(byte);
    free(count);
    tok->added = a;
    return true;
}

/* ---- matching ---------------------------------------------------------------------------------- */

typedef struct cand {
    uint32_t len;
    int32_t id;
    uint32_t pos;
    int32_t node;
} cand;

static bool before(const cand *x, const cand *y) {
    if (x->len != y->len) return x->len > y->len;
    if (x->id != y->id) return x->id < y->id;
    return x->pos < y->pos;
}

static void sift_down(cand *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, best = i;
        if (l < n && before(&h[l], &h[best])) best = l;
        if (l + 1 < n && before(&h[l + 1], &h[best])) best = l + 1;
        if (best == i) return;
        cand t = h[i];
        h[i] = h[best];
        h[best] = t;
        i = best;
    }
}

/* Taken bytes: a bit per byte, and above it a bit per nonzero word of the level below, so the next
 * taken byte after any position is a few word reads away. */
#define MAX_LEVELS 8
typedef struct taken {
    uint64_t *w[MAX_LEVELS];
    size_t n[MAX_LEVELS]; /* words */
    int levels;
} taken;

static bool taken_init(taken *t, size_t len) {
    size_t bits = len, total = 0;
    t->levels = 0;
    do {
        t->n[t->levels] = (bits + 63) / 64;
        total += t->n[t->levels];
        bits = t->n[t->levels++];
    } while (bits > 1);
    uint64_t *p = calloc(total, sizeof *p);
    if (!p) return false;
    for (int l = 0; l < t->levels; l++) {
        t->w[l] = p;
        p += t->n[l];
    }
    return true;
}

static void set_bits(uint64_t *w, size_t lo, size_t hi) { /* inclusive */
    for (size_t i = lo / 64; i <= hi / 64; i++) {
        uint64_t m = ~0ull;
        if (i == lo / 64) m &= ~0ull << (lo % 64);
        if (i == hi / 64 && hi % 64 != 63) m &= (1ull << (hi % 64 + 1)) - 1;
        w[i] |= m;
    }
}

static void taken_mark(taken *t, size_t s, size_t e) {
    for (int l = 0; l < t->levels; l++) set_bits(t->w[l], s >> (6 * l), (e - 1) >> (6 * l));
}

/* First taken byte at or after p, or none (SIZE_MAX). */
static size_t taken_next(const taken *t, size_t p) {
    int l = 0;
    size_t i = p;
    for (;;) {
        if (i / 64 >= t->n[l]) return SIZE_MAX;
        uint64_t w = t->w[l][i / 64] & (~0ull << (i % 64));
        if (w) {
            i = (i & ~(size_t)63) + (size_t)__builtin_ctzll(w);
            break;
        }
        i = i / 64 + 1;
        if (++l == t->levels) return SIZE_MAX;
    }
    while (l-- > 0) i = i * 64 + (size_t)__builtin_ctzll(t->w[l][i]);
    return i;
}

static int cmp_match(const void *a, const void *b) {
    const llc_added_match *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

bool llc_added_split(const struct llamac_tokenizer *tok, const char *text, size_t len, bool parse_special,
                     llc_added_match **out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    const struct llc_added *a = tok->added;
    int m = parse_special ? 1 : 0;
    if (!a || !a->any[m] || len == 0) return true;

    cand *h = NULL;
    size_t n = 0, cap = 0;
    int32_t s = 0;
    for (size_t p = len; p-- > 0;) {
        unsigned char c = (unsigned char)text[p];
        int32_t w;
        while ((w = child(a, s, c)) < 0 && s != 0) s = a->nodes[s].fail;
        s = w < 0 ? 0 : w;
        int32_t v = a->nodes[s].id[m] >= 0 ? s : a->nodes[s].out[m];
        if (v < 0) continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 64;
            cand *nh = realloc(h, nc * sizeof *nh);
            if (!nh) {
                free(h);
                return false;
            }
            h = nh;
            cap = nc;
        }
        h[n++] = (cand){a->nodes[v].depth, a->nodes[v].id[m], (uint32_t)p, v};
    }
    if (n == 0) return true;

    taken t;
    llc_added_match *res = malloc(n * sizeof *res);
    if (!res || !taken_init(&t, len)) {
        free(h);
        free(res);
        return false;
    }
    size_t k = 0;
    for (size_t i = n / 2; i-- > 0;) sift_down(h, n, i);
    while (n > 0) {
        cand *c = &h[0];
        size_t next = taken_next(&t, c->pos);
        size_t gap = (next == SIZE_MAX ? len : next) - c->pos;
        if (gap == 0) { /* inside a taken token: nothing more can start here */
            h[0] = h[--n];
        } else if (c->len <= gap) {
            taken_mark(&t, c->pos, c->pos + c->len);
            res[k++] = (llc_added_match){c->pos, c->len, c->id};
            h[0] = h[--n];
        } else { /* the longer tokens here run into a taken one: the longest that fits is next */
            int32_t v = a->nodes[c->node].out[m];
            while (v >= 0 && a->nodes[v].depth > gap) v = a->nodes[v].out[m];
            if (v >= 0) *c = (cand){a->nodes[v].depth, a->nodes[v].id[m], c->pos, v};
            else h[0] = h[--n];
        }
        sift_down(h, n, 0);
    }
    free(h);
    free(t.w[0]);
    qsort(res, k, sizeof *res, cmp_match);
    *out = res;
    *n_out = k;
    return true;
}
