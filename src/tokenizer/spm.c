/*
 * SentencePiece BPE encoding (Llama 1/2, llama2.c tokenizers), following llama.cpp's llm_tokenizer_spm
 * and SentencePiece's bpe_model.cc: start from UTF-8 characters, repeatedly merge the adjacent pair
 * whose concatenation is the best-scoring piece (ties: leftmost), then spell whatever is not a piece
 * as <0xNN> byte tokens.
 *
 * Like SentencePiece (and unlike llama.cpp) only normal, user-defined and unused pieces can be the
 * result of a merge: control, unknown and byte pieces are not text. Merges into unused pieces are
 * undone at the end, as SentencePiece does.
 */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tokenizer/tokenizer_internal.h"

typedef struct symbol {
    uint32_t off, n;   /* bytes of buf; n == 0: merged into its left neighbour */
    int32_t prev, next;
} symbol;

typedef struct bigram {
    float score;
    int32_t left, right;
    uint32_t size;     /* left.n + right.n when queued: stale if either changed since */
} bigram;

/* Heap order: best score first, then leftmost. */
static inline bool better(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct spm_state {
    const struct llamac_tokenizer *tok;
    const char *buf;
    symbol *sym;
    bigram *heap;
    size_t n_heap, heap_cap;
    llc_spm_scratch *s;
    bool oom;
} spm_state;

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static void heap_push(spm_state *st, bigram b) {
    if (st->n_heap == st->heap_cap) {
        if (!grow(&st->s->heap, &st->s->heap_cap, st->n_heap + 1, sizeof(bigram))) {
            st->oom = true;
            return;
        }
        st->heap = st->s->heap;
        st->heap_cap = st->s->heap_cap;
    }
    size_t i = st->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!better(&b, &st->heap[parent])) break;
        st->heap[i] = st->heap[parent];
        i = parent;
    }
    st->heap[i] = b;
}

static bigram heap_pop(spm_state *st) {
    bigram top = st->heap[0];
    bigram last = st->heap[--st->n_heap];
    size_t n = st->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && better(&st->heap[c + 1], &st->heap[c])) c++;
        if (!better(&st->heap[c], &last)) break;
        st->heap[i] = st->heap[c];
        i = c;
    }
    if (n) st->heap[i] = last;
    return top;
}

static bool mergeable(uint8_t type) {
    return type == LLC_TT_NORMAL || type == LLC_TT_USER_DEFINED || type == LLC_TT_UNUSED || type == LLC_TT_UNDEFINED;
}

static void try_add_bigram(spm_state *st, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const symbol *l = &st->sym[left], *r = &st->sym[right];
    uint32_t size = l->n + r->n;
    if (size > st->tok->max_len) return;
    int32_t id = llc_tok_find(st->tok, st->buf + l->off, size);
    if (id < 0) return;
    const llc_token *t = &st->tok->tokens[id];
    if (!mergeable(t->type)) return;
    bigram b = {t->score, left, right, size};
    heap_push(st, b);
    if (t->type == LLC_TT_UNUSED) st->s->rev[id] = (llc_spm_rev){st->s->rev_gen, l->n};
}

/* Spells bytes that are no piece: <0xNN> per byte, or one unknown token if some byte has none. */
static bool emit_bytes(const struct llamac_tokenizer *tok, const char *p, uint32_t n, llc_tok_sink *out,
                       llamac_error *err) {
    for (uint32_t j = 0; j < n; j++) {
        if (tok->byte_id[(unsigned char)p[j]] >= 0) continue;
        if (tok->unk < 0)
            return llc_fail(err, "cannot encode byte 0x%02X: the vocabulary has no byte token and no unknown token",
                            (unsigned char)p[j]);
        llc_sink_push(out, tok->unk);
        return true;
    }
    for (uint32_t j = 0; j < n; j++) llc_sink_push(out, tok->byte_id[(unsigned char)p[j]]);
    return true;
}

/* Undoes merges into unused pieces (SentencePiece's resegmentation: the split recorded last for the
 * piece, as SentencePiece keys it by text); depth-bounded against hostile
 * vocabularies, past which the piece is spelled in bytes. */
static bool resegment(spm_state *st, uint32_t off, uint32_t n, int depth, llc_tok_sink *out, llamac_error *err) {
    const struct llamac_tokenizer *tok = st->tok;
    int32_t id = n <= tok->max_len ? llc_tok_find(tok, st->buf + off, n) : -1;
    if (id >= 0 && tok->tokens[id].type != LLC_TT_UNUSED) {
        llc_sink_push(out, id);
        return true;
    }
    if (id >= 0 && st->s->rev && st->s->rev[id].gen == st->s->rev_gen && depth < 256) {
        uint32_t left = st->s->rev[id].left;
        if (left > 0 && left < n)
            return resegment(st, off, left, depth + 1, out, err) &&
                   resegment(st, off + left, n - left, depth + 1, out, err);
    }
    if (id >= 0 && tok->tokens[id].type == LLC_TT_UNUSED) {
        llc_sink_push(out, id);
        return true;
    }
    return emit_bytes(tok, st->buf + off, n, out, err);
}

static inline bool is_u2581(const char *buf, symbol s) {
    return s.n == 3 && !memcmp(buf + s.off, LLC_U2581, 3);
}

bool llc_spm_encode(const struct llamac_tokenizer *tok, const char *text, size_t len, bool add_prefix,
                    llc_spm_scratch *s, llc_tok_sink *out, llamac_error *err) {
    static const uint8_t utf8_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    if (len == 0 && !add_prefix) return true;
    if (len > (size_t)(INT32_MAX - 3) / 3) return llc_fail(err, "text too long to tokenize (%zu bytes)", len);

    /* SentencePiece spells spaces as U+2581 "▁". */
    size_t cap = 3 * len + 3;
    if (!grow((void **)&s->buf, &s->buf_cap, cap, 1)) return llc_fail(err, "out of memory tokenizing");
    char *buf = s->buf;
    size_t n = 0;
    if (add_prefix) {
        memcpy(buf, LLC_U2581, 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + n, LLC_U2581, 3);
            n += 3;
        } else {
            buf[n++] = text[i];
        }
    }

    if (!grow(&s->sym, &s->sym_cap, n, sizeof(symbol))) return llc_fail(err, "out of memory tokenizing");
    symbol *sym = s->sym;
    int32_t n_sym = 0;
    for (size_t off = 0; off < n;) {
        size_t cl = utf8_len[(unsigned char)buf[off] >> 4];
        if (cl > n - off) cl = n - off;
        sym[n_sym] = (symbol){(uint32_t)off, (uint32_t)cl, n_sym - 1, off + cl == n ? -1 : n_sym + 1};
        n_sym++;
        off += cl;
    }

    /* Resegmentation records are per piece of text (llama.cpp starts a new session for each): a new
     * generation forgets the old ones without clearing the array. */
    if (tok->has_unused) {
        if (!s->rev && !(s->rev = calloc((size_t)tok->n_vocab, sizeof *s->rev)))
            return llc_fail(err, "out of memory tokenizing");
        if (++s->rev_gen == 0) {
            memset(s->rev, 0, (size_t)tok->n_vocab * sizeof *s->rev);
            s->rev_gen = 1;
        }
    }

    /* When no piece runs from a character into a following "▁" (true of SentencePiece vocabularies
     * without whitespace-spanning pieces), words cannot interact: merging each on its own gives the
     * same result and keeps the queue small and in cache. */
    spm_state st = {tok, buf, sym, s->heap, 0, s->heap_cap, s, false};
    for (int32_t start = 0; start < n_sym;) {
        int32_t end = start + 1;
        if (tok->spm_word_split)
            while (end < n_sym && !(is_u2581(buf, sym[end]) && !is_u2581(buf, sym[end - 1]))) end++;
        else
            end = n_sym;
        sym[start].prev = -1;
        sym[end - 1].next = -1;
        st.n_heap = 0;
        for (int32_t i = start + 1; i < end; i++) try_add_bigram(&st, i - 1, i);

        while (st.n_heap > 0 && !st.oom) {
            bigram b = heap_pop(&st);
            symbol *l = &sym[b.left], *r = &sym[b.right];
            if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
            l->n += r->n;
            r->n = 0;
            l->next = r->next;
            if (r->next >= 0) sym[r->next].prev = b.left;
            try_add_bigram(&st, l->prev, b.left);
            try_add_bigram(&st, b.left, l->next);
        }
        if (st.oom) return llc_fail(err, "out of memory tokenizing");

        for (int32_t i = start; i >= 0; i = sym[i].next)
            if (!resegment(&st, sym[i].off, sym[i].n, 0, out, err)) return false;
        start = end;
    }
    return true;
}

void llc_spm_scratch_free(llc_spm_scratch *s) {
    free(s->buf);
    free(s->sym);
    free(s->heap);
    free(s->rev);
    memset(s, 0, sizeof *s);
}
