/*
 * tiktoken files (Meta's Llama 3 tokenizer.model): one "base64(token bytes) rank" line per token.
 *
 * The file holds the mergeable ranks only. Meta's tokenizer.py adds the 256 special tokens after them
 * (ids 128000..128255 for Llama 3) and splits text with the Llama 3 pattern; both are fixed here, as
 * the file says nothing about them. Encoding follows tiktoken's rule (bpe.h: llc_bpe_create_ranked).
 *
 * Untrusted input: every line is checked (strict base64, a decimal rank equal to the line's index, no
 * repeated token), lines are bounded in length, and the token count is bounded by the file's size
 * before anything is allocated from it. The first problem found is reported with the file's name and
 * the line number.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

/* Longest line accepted: a 3 KB token. Llama 3's longest line is 350 bytes. */
#define MAX_LINE 4096
#define N_SPECIAL 256
#define MAX_RANKS (1 << 22)

/* Meta's llama/tokenizer.py (Llama 3.1 and later; 3.0 named ids 4, 5, 8 and 10.. differently, as
 * reserved tokens, and had no <|eom_id|> or <|python_tag|>). */
static const char *const named[] = {
    "<|begin_of_text|>",         "<|end_of_text|>",    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
    "<|start_header_id|>",       "<|end_header_id|>",  "<|eom_id|>",
    "<|eot_id|>",                "<|python_tag|>",
};
#define N_NAMED ((int)(sizeof named / sizeof named[0]))

const char *llc_llama3_special_name(int i, char *buf, size_t cap) {
    if (i < 0 || i >= N_SPECIAL) return NULL;
    if (i < N_NAMED) return named[i];
    snprintf(buf, cap, "<|reserved_special_token_%d|>", i - N_NAMED + 3);
    return buf;
}

static int b64val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict standard base64 with padding: n a multiple of 4, '=' only as the last one or two characters,
 * no bits left over. Returns the decoded length, -1 if malformed. out has room for 3n/4 bytes. */
static long b64decode(const unsigned char *s, size_t n, uint8_t *out) {
    if (n == 0 || n % 4) return -1;
    size_t pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            bool is_pad = i + 4 == n && k >= 4 - (int)pad;
            v[k] = is_pad ? 0 : b64val(s[i + k]);
            if (v[k] < 0) return -1;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (i + 4 < n || pad < 2) out[o++] = (uint8_t)(w >> 8);
        if (i + 4 < n || pad < 1) out[o++] = (uint8_t)w;
        if (i + 4 == n && ((pad == 1 && (v[2] & 3)) || (pad == 2 && (v[1] & 15)))) return -1; /* stray bits */
    }
    return (long)o;
}

/* Lines without their terminator ("\n" or "\r\n"); blank lines are skipped, as tiktoken does. */
typedef struct line_iter {
    const unsigned char *p, *end;
    size_t lineno; /* 1-based number of the line last returned */
} line_iter;

static bool next_line(line_iter *it, const unsigned char **s, size_t *n) {
    while (it->p < it->end) {
        const unsigned char *nl = memchr(it->p, '\n', (size_t)(it->end - it->p));
        const unsigned char *e = nl ? nl : it->end;
        *s = it->p;
        *n = (size_t)(e - it->p);
        it->p = nl ? nl + 1 : it->end;
        it->lineno++;
        if (*n && (*s)[*n - 1] == '\r') (*n)--;
        if (*n) return true;
    }
    return false;
}

/* Untrusted text in a message: printable ASCII, other bytes as \xNN, cut at about 40 characters. */
static void show(char *dst, size_t cap, const unsigned char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o + 8 >= cap) {
            memcpy(dst + o, "...", 4);
            return;
        }
        if (s[i] >= 0x20 && s[i] < 0x7F) dst[o++] = (char)s[i];
        else o += (size_t)snprintf(dst + o, cap - o, "\\x%02X", s[i]);
    }
    dst[o] = 0;
}

llamac_tokenizer *llc_tokenizer_from_tiktoken(const void *data, size_t size, const char *name, llamac_error *err) {
    if (!name) name = "(memory)";
    const unsigned char *d = data;
    if (!d && size) return llc_fail(err, "%s: no data", name), NULL;

    /* Count and check the lines first: the count bounds every allocation. */
    line_iter it = {d, d + size, 0};
    const unsigned char *s;
    size_t n, n_ranks = 0, total = 0;
    char shown[64];
    while (next_line(&it, &s, &n)) {
        if (n > MAX_LINE)
            return llc_fail(err, "%s: line %zu is %zu bytes long (tiktoken lines hold one token and its rank; limit %d)",
                            name, it.lineno, n, MAX_LINE), NULL;
        size_t i = 0;
        while (i < n && s[i] != ' ' && s[i] != '\t') i++;
        size_t tok_len = i;
        while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
        size_t r0 = i;
        uint64_t rank = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            rank = rank * 10 + (uint64_t)(s[i++] - '0');
            if (rank > UINT32_MAX) rank = UINT32_MAX + 1ull; /* saturate: reported as out of order */
        }
        if (tok_len == 0 || r0 == tok_len || i == r0 || i != n) {
            show(shown, sizeof shown, s, n);
            return llc_fail(err, "%s: line %zu is not \"base64 rank\": \"%s\"", name, it.lineno, shown), NULL;
        }
        for (size_t k = 0; k < tok_len; k++)
            if (b64val(s[k]) < 0 && s[k] != '=') {
                show(shown, sizeof shown, s, tok_len);
                return llc_fail(err, "%s: line %zu: bad base64 \"%s\"", name, it.lineno, shown), NULL;
            }
        if (rank != n_ranks) {
            if (rank < n_ranks)
                return llc_fail(err, "%s: line %zu: rank %llu is repeated (ranks must run 0, 1, 2, ... in line order)",
                                name, it.lineno, (unsigned long long)rank), NULL;
            return llc_fail(err, "%s: line %zu: rank %llu out of order, expected %zu (ranks must run 0, 1, 2, ... in line order)",
                            name, it.lineno, (unsigned long long)rank, n_ranks), NULL;
        }
        if (++n_ranks > MAX_RANKS) return llc_fail(err, "%s: more than %d ranks", name, MAX_RANKS), NULL;
        total += tok_len / 4 * 3;
    }
    if (n_ranks == 0) return llc_fail(err, "%s: no ranks (an empty tiktoken file)", name), NULL;
    if (n_ranks < 256)
        return llc_fail(err, "%s: %zu ranks, fewer than the 256 single bytes a byte-level vocabulary needs", name, n_ranks), NULL;

    size_t n_tok = n_ranks + N_SPECIAL;
    llamac_tokenizer *tok = NULL;
    llc_str *raw = malloc(n_tok * sizeof *raw), *txt = malloc(n_tok * sizeof *txt);
    uint8_t *bytes = malloc(total + (size_t)N_SPECIAL * 40);
    char *text = malloc(2 * total + (size_t)N_SPECIAL * 40);
    if (!raw || !txt || !bytes || !text) {
        llc_fail(err, "%s: out of memory for %zu tokens", name, n_ranks);
        goto fail;
    }

    /* Decode: raw bytes for the BPE tables, GPT-2 byte-to-unicode text for the vocabulary (what
     * tokenizer.json and GGUF spell). */
    it = (line_iter){d, d + size, 0};
    uint8_t *bp = bytes;
    char *tp = text;
    for (size_t r = 0; next_line(&it, &s, &n); r++) {
        size_t tok_len = 0;
        while (tok_len < n && s[tok_len] != ' ' && s[tok_len] != '\t') tok_len++;
        long k = b64decode(s, tok_len, bp);
        if (k <= 0) {
            show(shown, sizeof shown, s, tok_len);
            llc_fail(err, "%s: line %zu: bad base64 \"%s\"", name, it.lineno, shown);
            goto fail;
        }
        raw[r] = (llc_str){(const char *)bp, (uint64_t)k};
        size_t tl = llc_bpe_byte_text(bp, (size_t)k, tp);
        txt[r] = (llc_str){tp, tl};
        bp += k;
        tp += tl;
    }
    char buf[48];
    for (int i = 0; i < N_SPECIAL; i++) {
        const char *sp = llc_llama3_special_name(i, buf, sizeof buf);
        size_t k = strlen(sp);
        memcpy(bp, sp, k);
        memcpy(tp, sp, k);
        raw[n_ranks + (size_t)i] = (llc_str){(const char *)bp, k};
        txt[n_ranks + (size_t)i] = (llc_str){tp, k};
        bp += k;
        tp += k;
    }

    tok = llc_tok_new(n_tok, err);
    if (!tok) goto fail_prefix;
    tok->kind = LLC_TOK_GPT2;
    snprintf(tok->model, sizeof tok->model, "gpt2");
    if (!(tok->pre = strdup("llama-bpe"))) {
        llc_fail(err, "%s: out of memory", name);
        goto fail;
    }
    int32_t dup[2];
    tok->bpe = llc_bpe_create_ranked(raw, (int)n_ranks, (int)n_tok, dup, err);
    if (!tok->bpe) {
        if (dup[0] >= 0) {
            show(shown, sizeof shown, (const unsigned char *)raw[dup[1]].ptr, raw[dup[1]].len);
            llc_fail(err, "%s: the token on line %d (\"%s\") repeats the one on line %d", name, dup[1] + 1, shown,
                     dup[0] + 1);
            goto fail;
        }
        goto fail_prefix;
    }
    if (!llc_tok_set_texts(tok, txt, false, err)) goto fail_prefix;
    for (size_t i = 0; i < n_tok; i++) tok->tokens[i].type = i < n_ranks ? LLC_TT_NORMAL : LLC_TT_CONTROL;
    tok->bos = (int32_t)n_ranks;     /* <|begin_of_text|> */
    tok->eos = (int32_t)n_ranks + 1; /* <|end_of_text|> */
    tok->eom = (int32_t)n_ranks + 8; /* <|eom_id|> */
    tok->eot = (int32_t)n_ranks + 9; /* <|eot_id|> */
    tok->add_bos = true;
    if (!llc_tok_finish(tok, err)) goto fail_prefix;
    free(raw);
    free(txt);
    free(bytes);
    free(text);
    return tok;

fail_prefix:
    llc_error_prefix(err, "%s", name);
fail:
    free(raw);
    free(txt);
    free(bytes);
    free(text);
    llamac_tokenizer_free(tok);
    return NULL;
}
