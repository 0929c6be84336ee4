/*
 * The streaming detokenizer: token bytes out as whole, valid UTF-8 characters, a character split
 * across tokens held until it completes, anything that cannot complete as U+FFFD; and the UTF-8
 * validity rule it applies (llc_utf8_valid).
 */
#include <string.h>

#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

typedef struct out_buf {
    char *p;
    size_t n, cap;
    bool full;
} out_buf;

/* Whole characters only: once one does not fit, the rest of this call's text is dropped. */
static void out_put(out_buf *o, const void *s, size_t k) {
    if (o->full || o->n + k + 1 > o->cap) {
        o->full = true;
        return;
    }
    memcpy(o->p + o->n, s, k);
    o->n += k;
}

static void out_fffd(out_buf *o) { out_put(o, "\xEF\xBF\xBD", 3); }

/* Bytes after lead c: 0 for ASCII, -1 for a byte that cannot start a character. */
static int utf8_tail(unsigned char c) {
    if (c < 0x80) return 0;
    if (c >= 0xC2 && c <= 0xDF) return 1;
    if (c >= 0xE0 && c <= 0xEF) return 2;
    if (c >= 0xF0 && c <= 0xF4) return 3;
    return -1;
}

/* Continuation byte c at position pos of a character led by lead: excludes overlongs, surrogates and
 * code points past U+10FFFF, so what is let through is valid UTF-8. */
static bool utf8_cont_ok(unsigned char lead, int pos, unsigned char c) {
    if ((c & 0xC0) != 0x80) return false;
    if (pos == 1) {
        if (lead == 0xE0) return c >= 0xA0;
        if (lead == 0xED) return c <= 0x9F;
        if (lead == 0xF0) return c >= 0x90;
        if (lead == 0xF4) return c <= 0x8F;
    }
    return true;
}

bool llc_utf8_valid(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int k = utf8_tail(s[i]);
        if (k < 0 || n - i <= (size_t)k) return false;
        for (int j = 1; j <= k; j++)
            if (!utf8_cont_ok(s[i], j, s[i + j])) return false;
        i += (size_t)k + 1;
    }
    return true;
}

static void detok_byte(llamac_detokenizer *d, out_buf *o, unsigned char c) {
    if (d->n_pending > 0) {
        unsigned char lead = d->pending[0];
        if (utf8_cont_ok(lead, d->n_pending, c)) {
            d->pending[d->n_pending++] = c;
            if (d->n_pending == utf8_tail(lead) + 1) {
                out_put(o, d->pending, (size_t)d->n_pending);
                d->n_pending = 0;
            }
            return;
        }
        /* The held sequence can no longer complete: one U+FFFD for it, then c on its own. */
        out_fffd(o);
        d->n_pending = 0;
    }
    int tail = utf8_tail(c);
    if (tail == 0) {
        out_put(o, &c, 1);
    } else if (tail < 0) {
        out_fffd(o);
    } else {
        d->pending[0] = c;
        d->n_pending = 1;
    }
}

void llamac_detokenizer_init(llamac_detokenizer *d, const llamac_tokenizer *tok) {
    memset(d, 0, sizeof *d);
    d->tok = tok;
    d->prev = -1;
}

size_t llamac_detokenize(llamac_detokenizer *d, int32_t id, char *buf, size_t cap) {
    out_buf o = {buf, 0, buf ? cap : 0, false};
    if (d->n_pending < 0 || d->n_pending > 3) d->n_pending = 0;
    const char *bytes;
    size_t n = llamac_token_bytes(d->tok, id, &bytes);
    /* SentencePiece's dummy prefix: the first piece after BOS (or at the start) drops its leading space. */
    const llamac_tokenizer *tok = d->tok;
    if (tok && tok->kind == LLC_TOK_SPM && tok->add_space_prefix && (d->prev < 0 || d->prev == tok->bos) && n > 0 &&
        bytes[0] == ' ') {
        bytes++;
        n--;
    }
    d->prev = id;
    for (size_t i = 0; i < n; i++) detok_byte(d, &o, (unsigned char)bytes[i]);
    if (o.cap) buf[o.n] = 0;
    return o.n;
}

size_t llamac_detokenizer_flush(llamac_detokenizer *d, char *buf, size_t cap) {
    out_buf o = {buf, 0, buf ? cap : 0, false};
    if (d->n_pending != 0) out_fffd(&o);
    d->n_pending = 0;
    if (o.cap) buf[o.n] = 0;
    return o.n;
}

/* A token's bytes are never longer than its stored text (▁ and <0xNN> shrink, byte-level BPE's
 * characters stand for single bytes); add room for a held partial character, U+FFFD and the NUL. */
size_t llamac_detokenizer_max_bytes(const llamac_tokenizer *tok) { return (size_t)tok->max_len + 16; }

bool llamac_utf8_valid(const char *s, size_t n) { return llc_utf8_valid((const unsigned char *)s, n); }
