/*
 * The Llama 3 pre-tokenizer as a hand-written scanner (see pretokenize.h for the regex).
 *
 * The regex is an ordered alternation, so at each position the first alternative that matches wins,
 * not the longest. Taking them in order, with c the character at pos and c2 the one after it:
 *
 *  1. (?i:'s|'t|'re|'ve|'m|'ll|'d)   c is U+0027 and a contraction follows. Case-insensitive with simple
 *                                    case folding: U+017F (long s) folds to 's' and matches too.
 *  2. [^\r\n\p{L}\p{N}]?\p{L}+       c is a letter: the run of letters. Or c is neither letter, number,
 *                                    CR nor LF (spaces included) and c2 is a letter: c plus that run.
 *  3. \p{N}{1,3}                     c is a number: up to three of them.
 *  4.  ?[^\s\p{L}\p{N}]+[\r\n]*      c is "other" (neither letter, number nor space), or c is U+0020 and
 *                                    c2 is other: the run of others, then any CR/LF run.
 *  5. \s*[\r\n]+                     c is a space that none of the above took: the space run up to and
 *                                    including its last CR or LF (\s* backtracks to it), if it has one.
 *  6. \s+(?!\S)                      otherwise the whole space run if it ends the text, else the run
 *                                    minus its last character (the look-ahead backs off one), if that
 *                                    leaves at least one;
 *  7. \s+                            else the single space character.
 */
#include "tokenizer/pretokenize.h"

#include "tokenizer/unicode_tables.h"

enum { O = LLC_UC_OTHER, L = LLC_UC_LETTER, N = LLC_UC_NUMBER, S = LLC_UC_SPACE };

static const uint8_t ascii_class[128] = {
    O, O, O, O, O, O, O, O, O, S, S, S, S, S, O, O, /* 0x00: \t \n \v \f \r */
    O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, /* 0x1C..0x1F are not White_Space */
    S, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, /* ' ' */
    N, N, N, N, N, N, N, N, N, N, O, O, O, O, O, O, /* 0-9 */
    O, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, /* A-O */
    L, L, L, L, L, L, L, L, L, L, L, O, O, O, O, O, /* P-Z */
    O, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, /* a-o */
    L, L, L, L, L, L, L, L, L, L, L, O, O, O, O, O, /* p-z */
};

static inline int is_cont(uint8_t b) { return (b & 0xC0) == 0x80; }

/* Non-ASCII part of llc_pretok_char. Well-formed sequences follow Unicode Table 3-7; on the first
 * byte that breaks one, the bytes before it form one maximal subpart. */
static int decode_slow(const uint8_t *s, size_t len, size_t pos, size_t *nbytes) {
    const uint8_t *p = s + pos;
    size_t avail = len - pos;
    uint8_t c = p[0];
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        if (avail >= 2 && is_cont(p[1])) {
            *nbytes = 2;
            return llc_uc_class(((uint32_t)(c & 0x1F) << 6) | (p[1] & 0x3F));
        }
        *nbytes = 1;
        return O;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0) lo = 0xA0;       /* overlong */
        if (c == 0xED) hi = 0x9F;       /* surrogates */
        if (avail < 2 || p[1] < lo || p[1] > hi) { *nbytes = 1; return O; }
        if (avail < 3 || !is_cont(p[2])) { *nbytes = 2; return O; }
        *nbytes = 3;
        return llc_uc_class(((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F));
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0) lo = 0x90;       /* overlong */
        if (c == 0xF4) hi = 0x8F;       /* above U+10FFFF */
        if (avail < 2 || p[1] < lo || p[1] > hi) { *nbytes = 1; return O; }
        if (avail < 3 || !is_cont(p[2])) { *nbytes = 2; return O; }
        if (avail < 4 || !is_cont(p[3])) { *nbytes = 3; return O; }
        *nbytes = 4;
        return llc_uc_class(((uint32_t)(c & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) |
                            ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F));
    }
    *nbytes = 1; /* stray continuation byte, C0, C1, F5..FF */
    return O;
}

static inline int char_at(const uint8_t *s, size_t len, size_t pos, size_t *nbytes) {
    if (s[pos] < 0x80) {
        *nbytes = 1;
        return ascii_class[s[pos]];
    }
    return decode_slow(s, len, pos, nbytes);
}

int llc_pretok_char(const uint8_t *s, size_t len, size_t pos, size_t *nbytes) {
    return char_at(s, len, pos, nbytes);
}

static inline size_t skip_class(const uint8_t *s, size_t len, size_t j, int cls) {
    while (j < len) {
        /* Most text is ASCII: stay in the table loop as long as it is. */
        if (s[j] < 0x80) {
            if (ascii_class[s[j]] != cls) break;
            j++;
            continue;
        }
        size_t n;
        if (decode_slow(s, len, j, &n) != cls) break;
        j += n;
    }
    return j;
}

/* Rule 4 after its first character: more "other" characters, then CR/LF. */
static inline size_t other_tail(const uint8_t *s, size_t len, size_t j) {
    j = skip_class(s, len, j, O);
    while (j < len && (s[j] == '\r' || s[j] == '\n')) j++;
    return j;
}

/* Length of the contraction after an apostrophe at s[k-1], 0 if none. */
static inline size_t contraction(const uint8_t *s, size_t len, size_t k) {
    if (k >= len) return 0;
    uint8_t c = s[k] | 0x20; /* ASCII lower case; harmless for the other bytes tested below */
    if (c == 's' || c == 't' || c == 'm' || c == 'd') return 1;
    if (s[k] == 0xC5 && k + 1 < len && s[k + 1] == 0xBF) return 2; /* U+017F */
    if (k + 1 >= len) return 0;
    uint8_t d = s[k + 1] | 0x20;
    if ((c == 'r' || c == 'v') && d == 'e') return 2;
    if (c == 'l' && d == 'l') return 2;
    return 0;
}

size_t llc_pretok_next(const uint8_t *s, size_t len, size_t pos) {
    uint8_t b = s[pos];
    if (b == '\'') {
        size_t m = contraction(s, len, pos + 1);
        if (m) return pos + 1 + m;
    }
    size_t n;
    int c = char_at(s, len, pos, &n);
    size_t j = pos + n;
    if (c == L) return skip_class(s, len, j, L);
    if (c == N) {
        size_t n2;
        for (int k = 0; k < 2 && j < len && char_at(s, len, j, &n2) == N; k++) j += n2;
        return j;
    }
    if (c == O) {
        size_t n2;
        if (j < len && char_at(s, len, j, &n2) == L) return skip_class(s, len, j + n2, L);
        return other_tail(s, len, j);
    }
    /* c is a space */
    if (b != '\r' && b != '\n' && j < len) {
        size_t n2;
        int c2 = char_at(s, len, j, &n2);
        if (c2 == L) return skip_class(s, len, j + n2, L);
        if (b == ' ' && c2 == O) return other_tail(s, len, j + n2);
    }
    size_t last_nl = 0, last_start = pos;
    int has_nl = 0, nchars = 1;
    if (b == '\r' || b == '\n') has_nl = 1, last_nl = pos;
    while (j < len) {
        size_t n2;
        if (s[j] < 0x80) {
            if (ascii_class[s[j]] != S) break;
            if (s[j] == '\r' || s[j] == '\n') has_nl = 1, last_nl = j;
            n2 = 1;
        } else if (decode_slow(s, len, j, &n2) != S) {
            break;
        }
        last_start = j;
        nchars++;
        j += n2;
    }
    if (has_nl) return last_nl + 1;
    if (j == len || nchars == 1) return j;
    return last_start;
}
