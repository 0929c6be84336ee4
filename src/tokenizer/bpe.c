/*
 * Byte-level BPE (Llama 3). See bpe.h for the contract.
 *
 * Everything encoding touches is built once in llc_bpe_create and read-only afterwards:
 *  - every token's bytes, back to back in one blob;
 *  - an open-addressing hash from bytes to id (the whole-pre-token fast path: most words of ordinary
 *    text are a token, so most pre-tokens cost one hash and one probe);
 *  - an open-addressing hash from the pair (left id, right id) to (rank, merged id): from a merges list
 *    (rank = the merge's index) or, for tiktoken ranks, every split of a token into two tokens (rank =
 *    the merged token's rank, so equal ranks tie and the leftmost pair goes first, as in tiktoken).
 * Merging a pre-token that is not a token uses arrays on the stack while it is short (a quadratic
 * scan beats a heap there) and an indexed heap over a linked list when it is long (24 bytes of
 * working memory per byte), so a pathological pre-token (a megabyte of letters without a space)
 * stays O(n log n).
 */
#include "tokenizer/bpe.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tokenizer/pretokenize.h"

#define NONE_RANK UINT32_MAX
/* Pre-tokens up to this many bytes merge on the stack. */
#define SMALL_WORD 64

typedef struct vslot {
    uint64_t head; /* the token's first 8 bytes, zero-padded: a short token is compared here without
                      touching the blob, a long one mostly */
    uint32_t len;
    int32_t id;    /* -1: empty */
} vslot;

typedef struct pslot {
    uint64_t key; /* left id << 32 | right id; UINT64_MAX: empty (ids are below 2^31) */
    uint32_t rank;
    int32_t id;
} pslot;

struct llc_bpe {
    int n_tokens;
    int n_ranked;       /* tiktoken tables: ids below this are ranked tokens (rank = id); 0 otherwise */
    uint8_t *blob;
    uint32_t *off, *len;
    uint8_t *mergeable; /* a byte token or the result of a merge: what encoding may produce */
    uint32_t max_len;   /* longest byte-level token: longer pre-tokens skip the lookup */
    vslot *vtab;
    uint64_t vmask;
    pslot *ptab;
    int pshift;
    int32_t byte_tok[256];
};

/* ---- hashing ------------------------------------------------------------------------------------ */

static inline uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Short keys dominate (pre-tokens of a few bytes), so no loop below 8 bytes: overlapping loads cover
 * the tail. */
static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull * (uint64_t)(n + 1);
    if (n >= 8) {
        size_t i = 0;
        for (; i + 8 < n; i += 8) {
            h = (h ^ rd64(p + i)) * 0xBF58476D1CE4E5B9ull;
            h ^= h >> 31;
        }
        h ^= rd64(p + n - 8);
    } else if (n >= 4) {
        h ^= (rd32(p) << 32) | rd32(p + n - 4);
    } else if (n > 0) {
        h ^= ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
    }
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 29;
    return h;
}

/* memcmp's call costs more than the compare for the short keys that dominate. */
static inline bool same_bytes(const uint8_t *a, const uint8_t *b, size_t n) {
    if (n >= 8 && n <= 16) return ((rd64(a) ^ rd64(b)) | (rd64(a + n - 8) ^ rd64(b + n - 8))) == 0;
    if (n >= 4 && n < 8) return ((rd32(a) ^ rd32(b)) | (rd32(a + n - 4) ^ rd32(b + n - 4))) == 0;
    return memcmp(a, b, n) == 0;
}

/* The first min(n, 8) bytes of p as a little-endian number, the rest zero. */
static inline uint64_t head8(const uint8_t *p, size_t n) {
    if (n >= 8) return rd64(p);
    if (n >= 4) return rd32(p) | rd32(p + n - 4) << (8 * (n - 4)); /* the overlap ORs equal bytes */
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* One cache line per lookup for tokens of up to 8 bytes (most pre-tokens). */
static inline int32_t vocab_find(const llc_bpe *b, const uint8_t *p, size_t n) {
    uint64_t h = hash_bytes(p, n), head = head8(p, n);
    for (uint64_t i = h & b->vmask;; i = (i + 1) & b->vmask) {
        const vslot *s = &b->vtab[i];
        if (s->id < 0) return -1;
        if (s->head == head && s->len == n && (n <= 8 || same_bytes(b->blob + b->off[s->id] + 8, p + 8, n - 8)))
            return s->id;
    }
}

static void vocab_insert(llc_bpe *b, int32_t id) {
    const uint8_t *p = b->blob + b->off[id];
    size_t n = b->len[id];
    uint64_t j = hash_bytes(p, n) & b->vmask;
    while (b->vtab[j].id >= 0) j = (j + 1) & b->vmask;
    b->vtab[j] = (vslot){head8(p, n), (uint32_t)n, id};
}

static inline uint64_t pair_key(int32_t l, int32_t r) { return ((uint64_t)(uint32_t)l << 32) | (uint32_t)r; }

/* Rank of merging l and r (NONE_RANK if they don't merge) and the merged id in *id. */
static inline uint32_t pair_rank(const llc_bpe *b, int32_t l, int32_t r, int32_t *id) {
    uint64_t key = pair_key(l, r);
    uint64_t mask = ((uint64_t)1 << (64 - b->pshift)) - 1;
    for (uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> b->pshift;; i = (i + 1) & mask) {
        const pslot *s = &b->ptab[i];
        if (s->key == key) {
            *id = s->id;
            return s->rank;
        }
        if (s->key == UINT64_MAX) return NONE_RANK;
    }
}

/* ---- construction ------------------------------------------------------------------------------- */

/* GPT-2's byte-to-unicode map, inverted: code point -> byte, -1 for code points it doesn't use. The
 * printable bytes stand for themselves; the other 68 take U+0100.. in byte order. */
#define U2B_SIZE 0x144
static void byte_unicode_inverse(int16_t u2b[U2B_SIZE]) {
    for (int i = 0; i < U2B_SIZE; i++) u2b[i] = -1;
    int n = 0;
    for (int c = 0; c < 256; c++) {
        int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
        u2b[printable ? c : 256 + n++] = (int16_t)c;
    }
}

/* Decodes byte-to-unicode text into bytes (out has room for n); -1 if s isn't in that form. */
static long gpt2_decode(const int16_t *u2b, const uint8_t *s, size_t n, uint8_t *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        if (s[i] < 0x80) {
            cp = s[i++];
        } else if (s[i] >= 0xC2 && s[i] <= 0xC5 && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) {
            cp = ((uint32_t)(s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F);
            i += 2;
        } else {
            return -1;
        }
        if (cp >= U2B_SIZE || u2b[cp] < 0) return -1;
        out[o++] = (uint8_t)u2b[cp];
    }
    return (long)o;
}

static int pow2_bits(uint64_t n) {
    int bits = 4;
    while (((uint64_t)1 << bits) < n) bits++;
    return bits;
}

/* Untrusted text in a message: bounded, and llc_fail keeps it on one line. */
#define SHOW 48
static int show_len(llc_str s) { return s.len > SHOW ? SHOW : (int)s.len; }

/* The token storage both constructors need: bytes (total of them), per-token offsets and lengths, and
 * the bytes -> id hash sized for n_hashed tokens, empty (id -1). False when out of memory; the caller
 * frees b either way. */
static bool alloc_vocab(llc_bpe *b, int n_tokens, int n_hashed, uint64_t total) {
    b->n_tokens = n_tokens;
    b->blob = malloc(total ? total : 1);
    b->off = malloc((size_t)n_tokens * sizeof *b->off);
    b->len = malloc((size_t)n_tokens * sizeof *b->len);
    b->mergeable = calloc((size_t)n_tokens, 1);
    int vbits = pow2_bits((uint64_t)n_hashed * 2);
    b->vmask = ((uint64_t)1 << vbits) - 1;
    b->vtab = malloc(((size_t)1 << vbits) * sizeof *b->vtab);
    if (!b->blob || !b->off || !b->len || !b->mergeable || !b->vtab) return false;
    memset(b->vtab, 0xFF, ((size_t)1 << vbits) * sizeof *b->vtab);
    return true;
}

llc_bpe *llc_bpe_create(const llc_str *tokens, int n_tokens, const llc_str *merges, int n_merges,
                        llamac_error *err) {
    if (!tokens || n_tokens <= 0) return llc_fail(err, "BPE vocabulary is empty"), NULL;
    if (n_merges < 0 || (n_merges > 0 && !merges)) return llc_fail(err, "BPE merges: bad count %d", n_merges), NULL;

    uint64_t total = 0, max_merge = 0;
    for (int i = 0; i < n_tokens; i++) {
        if (!tokens[i].ptr && tokens[i].len) return llc_fail(err, "BPE token %d has no text", i), NULL;
        total += tokens[i].len;
    }
    if (total >= UINT32_MAX) return llc_fail(err, "BPE vocabulary too large (%llu bytes)", (unsigned long long)total), NULL;
    for (int i = 0; i < n_merges; i++) {
        if (!merges[i].ptr && merges[i].len) return llc_fail(err, "BPE merge %d has no text", i), NULL;
        if (merges[i].len > max_merge) max_merge = merges[i].len;
    }
    if (max_merge >= UINT32_MAX) return llc_fail(err, "BPE merge too long"), NULL;

    llc_bpe *b = calloc(1, sizeof *b);
    uint8_t *tmp = NULL;
    if (!b) goto oom;
    if (!alloc_vocab(b, n_tokens, n_tokens, total)) goto oom;
    int pbits = pow2_bits((uint64_t)n_merges * 2);
    b->pshift = 64 - pbits;
    b->ptab = malloc(((size_t)1 << pbits) * sizeof *b->ptab);
    tmp = malloc(max_merge + 1);
    if (!b->ptab || !tmp) goto oom;
    memset(b->ptab, 0xFF, ((size_t)1 << pbits) * sizeof *b->ptab); /* key UINT64_MAX */

    int16_t u2b[U2B_SIZE];
    byte_unicode_inverse(u2b);

    /* Token bytes and the bytes -> id hash. Tokens not in byte-to-unicode form keep their text and stay
     * out of the hash: no text encodes to them. */
    uint32_t off = 0;
    for (int i = 0; i < n_tokens; i++) {
        const uint8_t *t = (const uint8_t *)tokens[i].ptr;
        size_t tn = (size_t)tokens[i].len;
        long n = tn ? gpt2_decode(u2b, t, tn, b->blob + off) : 0;
        b->off[i] = off;
        if (n < 0) {
            memcpy(b->blob + off, t, tn);
            b->len[i] = (uint32_t)tn;
            off += (uint32_t)tn;
            continue;
        }
        b->len[i] = (uint32_t)n;
        off += (uint32_t)n;
        if (n == 0) continue;
        if (vocab_find(b, b->blob + b->off[i], (size_t)n) >= 0) continue; /* duplicate: lower id kept */
        if ((uint32_t)n > b->max_len) b->max_len = (uint32_t)n;
        vocab_insert(b, i);
    }

    for (int c = 0; c < 256; c++) {
        uint8_t byte = (uint8_t)c;
        b->byte_tok[c] = vocab_find(b, &byte, 1);
        if (b->byte_tok[c] < 0) {
            llc_fail(err, "BPE vocabulary has no token for byte 0x%02X (not a byte-level vocabulary)", c);
            goto fail;
        }
        b->mergeable[b->byte_tok[c]] = 1;
    }

    uint64_t pmask = ((uint64_t)1 << pbits) - 1;
    for (int r = 0; r < n_merges; r++) {
        const uint8_t *m = (const uint8_t *)merges[r].ptr;
        size_t mn = (size_t)merges[r].len, sp = 1;
        /* Search from 1: the left part is never empty, so a merge may join a " " token. */
        while (sp < mn && m[sp] != ' ') sp++;
        if (sp + 1 >= mn) {
            llc_fail(err, "BPE merge %d \"%.*s\" is not two tokens separated by a space", r, show_len(merges[r]),
                     merges[r].ptr ? merges[r].ptr : "");
            goto fail;
        }
        long ln = gpt2_decode(u2b, m, sp, tmp);
        long rn = ln < 0 ? -1 : gpt2_decode(u2b, m + sp + 1, mn - sp - 1, tmp + ln);
        int32_t l = ln < 0 ? -1 : vocab_find(b, tmp, (size_t)ln);
        int32_t rt = rn < 0 ? -1 : vocab_find(b, tmp + ln, (size_t)rn);
        int32_t res = (l < 0 || rt < 0) ? -1 : vocab_find(b, tmp, (size_t)(ln + rn));
        if (res < 0) {
            llc_fail(err, "BPE merge %d \"%.*s\": %s is not in the vocabulary", r, show_len(merges[r]),
                     merges[r].ptr, l < 0 ? "its left token" : rt < 0 ? "its right token" : "the merged token");
            goto fail;
        }
        uint64_t key = pair_key(l, rt);
        uint64_t j = (key * 0x9E3779B97F4A7C15ull) >> b->pshift;
        while (b->ptab[j].key != UINT64_MAX && b->ptab[j].key != key) j = (j + 1) & pmask;
        if (b->ptab[j].key == key) continue; /* a repeated pair keeps its first (lowest) rank */
        b->ptab[j].key = key;
        b->ptab[j].rank = (uint32_t)r;
        b->ptab[j].id = res;
        b->mergeable[res] = 1;
    }
    free(tmp);
    return b;

oom:
    llc_fail(err, "out of memory building the BPE tables");
fail:
    free(tmp);
    llc_bpe_free(b);
    return NULL;
}

/* ---- tiktoken ranks ------------------------------------------------------------------------------ */

size_t llc_bpe_byte_text(const uint8_t *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = s[i];
        int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
        uint32_t cp = (uint32_t)c;
        if (!printable) /* the 68 others take U+0100.. in byte order: 0x00-0x20, 0x7F-0xA0, 0xAD */
            cp = c <= 0x20 ? 256u + (uint32_t)c : c < 0xAD ? 256u + 33 + (uint32_t)(c - 0x7F) : 256u + 67;
        if (cp < 0x80) {
            out[o++] = (char)cp;
        } else {
            out[o++] = (char)(0xC0 | (cp >> 6));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    return o;
}

/* A growable array of (rank, left, right) triples. */
typedef struct triples {
    uint32_t *v;
    size_t n, cap;
} triples;

static bool triples_push(triples *t, uint32_t a, uint32_t b, uint32_t c) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 1 << 16;
        uint32_t *v = realloc(t->v, cap * 3 * sizeof *v);
        if (!v) return false;
        t->v = v;
        t->cap = cap;
    }
    t->v[3 * t->n] = a;
    t->v[3 * t->n + 1] = b;
    t->v[3 * t->n + 2] = c;
    t->n++;
    return true;
}

llc_bpe *llc_bpe_create_ranked(const llc_str *tokens, int n_ranked, int n_tokens, int32_t *dup_of,
                               llamac_error *err) {
    if (dup_of) dup_of[0] = dup_of[1] = -1;
    if (!tokens || n_ranked <= 0 || n_tokens < n_ranked) return llc_fail(err, "BPE vocabulary is empty"), NULL;
    uint64_t total = 0;
    for (int i = 0; i < n_tokens; i++) {
        if (!tokens[i].ptr && tokens[i].len) return llc_fail(err, "BPE token %d has no bytes", i), NULL;
        if (i < n_ranked && tokens[i].len == 0) return llc_fail(err, "BPE token %d is empty", i), NULL;
        total += tokens[i].len;
    }
    if (total >= UINT32_MAX) return llc_fail(err, "BPE vocabulary too large (%llu bytes)", (unsigned long long)total), NULL;

    llc_bpe *b = calloc(1, sizeof *b);
    triples pairs = {0};
    if (!b) goto oom;
    b->n_ranked = n_ranked;
    if (!alloc_vocab(b, n_tokens, n_ranked, total)) goto oom;

    /* Every ranked token is in the bytes -> id hash and may be produced (tiktoken looks a whole piece
     * up among all of them); the added tokens after them keep their bytes for decoding only. */
    uint32_t off = 0;
    for (int i = 0; i < n_tokens; i++) {
        size_t n = (size_t)tokens[i].len;
        if (n) memcpy(b->blob + off, tokens[i].ptr, n);
        b->off[i] = off;
        b->len[i] = (uint32_t)n;
        off += (uint32_t)n;
        if (i >= n_ranked) continue;
        int32_t prev = vocab_find(b, b->blob + b->off[i], n);
        if (prev >= 0) {
            if (dup_of) dup_of[0] = prev, dup_of[1] = i;
            llc_fail(err, "BPE token %d has the same bytes as token %d", i, prev);
            goto fail;
        }
        if ((uint32_t)n > b->max_len) b->max_len = (uint32_t)n;
        vocab_insert(b, i);
        b->mergeable[i] = 1;
    }
    for (int c = 0; c < 256; c++) {
        uint8_t byte = (uint8_t)c;
        b->byte_tok[c] = vocab_find(b, &byte, 1);
        if (b->byte_tok[c] < 0) {
            llc_fail(err, "BPE vocabulary has no token for byte 0x%02X (not a byte-level vocabulary)", c);
            goto fail;
        }
    }

    /* tiktoken merges the adjacent pair whose concatenation has the lowest rank: every split of a token
     * into two tokens is a pair that merges into it, at its rank. */
    for (int i = 0; i < n_ranked; i++) {
        const uint8_t *p = b->blob + b->off[i];
        uint32_t n = b->len[i];
        for (uint32_t k = 1; k < n; k++) {
            int32_t l = vocab_find(b, p, k);
            if (l < 0) continue;
            int32_t r = vocab_find(b, p + k, n - k);
            if (r >= 0 && !triples_push(&pairs, (uint32_t)i, (uint32_t)l, (uint32_t)r)) goto oom;
        }
    }
    int pbits = pow2_bits((uint64_t)pairs.n * 2);
    b->pshift = 64 - pbits;
    b->ptab = malloc(((size_t)1 << pbits) * sizeof *b->ptab);
    if (!b->ptab) goto oom;
    memset(b->ptab, 0xFF, ((size_t)1 << pbits) * sizeof *b->ptab);
    uint64_t pmask = ((uint64_t)1 << pbits) - 1;
    for (size_t t = 0; t < pairs.n; t++) {
        uint32_t rank = pairs.v[3 * t], l = pairs.v[3 * t + 1], r = pairs.v[3 * t + 2];
        uint64_t key = pair_key((int32_t)l, (int32_t)r);
        uint64_t j = (key * 0x9E3779B97F4A7C15ull) >> b->pshift;
        while (b->ptab[j].key != UINT64_MAX) j = (j + 1) & pmask; /* (l, r) has one concatenation: no repeats */
        b->ptab[j].key = key;
        b->ptab[j].rank = rank;
        b->ptab[j].id = (int32_t)rank;
    }
    free(pairs.v);
    return b;

oom:
    llc_fail(err, "out of memory building the BPE tables");
fail:
    free(pairs.v);
    llc_bpe_free(b);
    return NULL;
}

int llc_bpe_n_ranked(const llc_bpe *b) { return b ? b->n_ranked : 0; }

static int cmp_triple(const void *a, const void *b) {
    const uint32_t *x = a, *y = b;
    for (int i = 0; i < 3; i++)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

long llc_bpe_ranked_merges(const llc_bpe *b, uint32_t **out) {
    *out = NULL;
    if (!b || !b->n_ranked || !b->ptab) return -1;
    size_t slots = (size_t)1 << (64 - b->pshift), n = 0;
    for (size_t j = 0; j < slots; j++) n += b->ptab[j].key != UINT64_MAX;
    uint32_t *v = malloc((n ? n : 1) * 3 * sizeof *v);
    if (!v) return -1;
    size_t k = 0;
    for (size_t j = 0; j < slots; j++) {
        const pslot *s = &b->ptab[j];
        if (s->key == UINT64_MAX) continue;
        v[3 * k] = s->rank;
        v[3 * k + 1] = (uint32_t)(s->key >> 32);
        v[3 * k + 2] = (uint32_t)s->key;
        k++;
    }
    qsort(v, n, 3 * sizeof *v, cmp_triple);
    *out = v;
    return (long)n;
}

void llc_bpe_free(llc_bpe *b) {
    if (!b) return;
    free(b->blob);
    free(b->off);
    free(b->len);
    free(b->mergeable);
    free(b->vtab);
    free(b->ptab);
    free(b);
}

size_t llc_bpe_token_bytes(const llc_bpe *b, int32_t id, const char **bytes) {
    if (!b || id < 0 || id >= b->n_tokens) {
        *bytes = "";
        return 0;
    }
    *bytes = (const char *)b->blob + b->off[id];
    return b->len[id];
}

/* ---- encoding ----------------------------------------------------------------------------------- */

typedef struct sink {
    int32_t *out;
    int cap;
    int n;
} sink;

static inline void emit(sink *s, int32_t id) {
    if (s->n < s->cap) s->out[s->n] = id;
    s->n++;
}

/* Working memory for long pre-tokens, grown on demand and kept for the rest of one encode call.
 * Per byte of the longest long pre-token: 24 bytes. */
typedef struct scratch {
    int32_t *id, *prev, *next; /* the symbols, a linked list by byte offset; id -1: merged away */
    int32_t *mid;              /* id of merging symbol k with its right neighbour */
    int32_t *hidx;             /* where symbol k's pair sits in heap, -1 if it has none */
    uint64_t *heap;            /* rank << 32 | k: numeric order is lowest rank, then leftmost */
    size_t cap;
} scratch;

static bool scratch_reserve(scratch *s, size_t n) {
    if (n <= s->cap) return true;
    size_t cap = s->cap ? s->cap : 1024;
    while (cap < n) cap *= 2;
    free(s->id);
    free(s->heap);
    s->id = malloc(cap * 5 * sizeof(int32_t));
    s->heap = malloc(cap * sizeof(uint64_t));
    if (!s->id || !s->heap) {
        free(s->id);
        free(s->heap);
        memset(s, 0, sizeof *s);
        return false;
    }
    s->prev = s->id + cap;
    s->next = s->id + 2 * cap;
    s->mid = s->id + 3 * cap;
    s->hidx = s->id + 4 * cap;
    s->cap = cap;
    return true;
}

/* An indexed binary min-heap: one entry per symbol that has a mergeable pair, updated in place when
 * a merge changes the pair, so it never holds stale entries and never outgrows the word. */
typedef struct iheap {
    uint64_t *h;
    int32_t *idx;
    size_t n;
} iheap;

static inline void ih_place(iheap *q, size_t i, uint64_t key) {
    q->h[i] = key;
    q->idx[(uint32_t)key] = (int32_t)i;
}

static void ih_up(iheap *q, size_t i, uint64_t key) {
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (q->h[p] <= key) break;
        ih_place(q, i, q->h[p]);
        i = p;
    }
    ih_place(q, i, key);
}

static void ih_down(iheap *q, size_t i, uint64_t key) {
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n) break;
        if (c + 1 < q->n && q->h[c + 1] < q->h[c]) c++;
        if (q->h[c] >= key) break;
        ih_place(q, i, q->h[c]);
        i = c;
    }
    ih_place(q, i, key);
}

static void ih_remove(iheap *q, int32_t k) {
    int32_t i = q->idx[k];
    if (i < 0) return;
    q->idx[k] = -1;
    uint64_t last = q->h[--q->n];
    if ((size_t)i == q->n) return;
    if (last < q->h[i]) ih_up(q, (size_t)i, last);
    else ih_down(q, (size_t)i, last);
}

/* Symbol k's pair now has this rank (NONE_RANK: none). */
static void ih_set(iheap *q, int32_t k, uint32_t rank) {
    if (rank == NONE_RANK) {
        ih_remove(q, k);
        return;
    }
    uint64_t key = (uint64_t)rank << 32 | (uint32_t)k;
    int32_t i = q->idx[k];
    if (i < 0) {
        ih_up(q, q->n++, key);
    } else if (key < q->h[i]) {
        ih_up(q, (size_t)i, key);
    } else {
        ih_down(q, (size_t)i, key);
    }
}

static void merge_small(const llc_bpe *b, const uint8_t *w, size_t n, sink *out) {
    int32_t ids[SMALL_WORD], mid[SMALL_WORD];
    uint32_t rk[SMALL_WORD];
    size_t m = n;
    for (size_t k = 0; k < n; k++) ids[k] = b->byte_tok[w[k]];
    for (size_t k = 0; k + 1 < m; k++) rk[k] = pair_rank(b, ids[k], ids[k + 1], &mid[k]);
    while (m > 1) {
        uint32_t best = NONE_RANK;
        size_t bi = 0;
        for (size_t k = 0; k + 1 < m; k++)
            if (rk[k] < best) best = rk[k], bi = k;
        if (best == NONE_RANK) break;
        ids[bi] = mid[bi];
        /* Drop symbol bi+1 and pair bi (its slot is recomputed below). */
        size_t tail = m - bi - 2; /* symbols after bi+1 */
        memmove(ids + bi + 1, ids + bi + 2, tail * sizeof *ids);
        if (tail > 1) {
            memmove(rk + bi + 1, rk + bi + 2, (tail - 1) * sizeof *rk);
            memmove(mid + bi + 1, mid + bi + 2, (tail - 1) * sizeof *mid);
        }
        m--;
        if (bi > 0) rk[bi - 1] = pair_rank(b, ids[bi - 1], ids[bi], &mid[bi - 1]);
        if (bi + 1 < m) rk[bi] = pair_rank(b, ids[bi], ids[bi + 1], &mid[bi]);
    }
    for (size_t k = 0; k < m; k++) emit(out, ids[k]);
}

static bool merge_large(const llc_bpe *b, const uint8_t *w, size_t n, scratch *s, sink *out) {
    if (!scratch_reserve(s, n)) return false;
    int32_t *id = s->id, *prev = s->prev, *next = s->next, *mid = s->mid;
    iheap q = {s->heap, s->hidx, 0};
    for (size_t k = 0; k < n; k++) {
        id[k] = b->byte_tok[w[k]];
        prev[k] = (int32_t)k - 1;
        next[k] = k + 1 < n ? (int32_t)k + 1 : -1;
        q.idx[k] = -1;
    }
    for (size_t k = 0; k + 1 < n; k++) ih_set(&q, (int32_t)k, pair_rank(b, id[k], id[k + 1], &mid[k]));
    while (q.n) {
        int32_t p = (int32_t)(uint32_t)q.h[0], r = next[p];
        ih_remove(&q, p);
        ih_remove(&q, r); /* r's pair with its right neighbour is gone */
        id[p] = mid[p];
        id[r] = -1;
        int32_t nr = next[r], pl = prev[p];
        next[p] = nr;
        if (nr >= 0) {
            prev[nr] = p;
            ih_set(&q, p, pair_rank(b, id[p], id[nr], &mid[p]));
        }
        if (pl >= 0) ih_set(&q, pl, pair_rank(b, id[pl], id[p], &mid[pl]));
    }
    for (int32_t k = 0; k >= 0; k = next[k]) emit(out, id[k]);
    return true;
}

int llc_bpe_encode(const llc_bpe *b, const char *text, size_t len, int32_t *out, int cap) {
    if (!b || (len && !text) || cap < 0 || (cap > 0 && !out) || len > INT_MAX) return -1;
    const uint8_t *s = (const uint8_t *)text;
    sink sk = {out, cap, 0};
    scratch scr = {0};
    int ret = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t end = llc_pretok_next(s, len, pos);
        const uint8_t *w = s + pos;
        size_t n = end - pos;
        pos = end;
        if (n == 1) {
            emit(&sk, b->byte_tok[w[0]]);
            continue;
        }
        if (n <= b->max_len) {
            int32_t id = vocab_find(b, w, n);
            if (id >= 0 && b->mergeable[id]) {
                emit(&sk, id);
                continue;
            }
        }
        if (n <= SMALL_WORD) {
            merge_small(b, w, n, &sk);
        } else if (!merge_large(b, w, n, &scr, &sk)) {
            ret = -1;
            break;
        }
    }
    free(scr.id);
    free(scr.heap);
    return ret < 0 ? -1 : sk.n;
}
