/*
 * The vocabulary core shared by every kind of tokenizer file: the token table and its text -> id map,
 * the construction steps the loaders call (llc_tok_new, llc_tok_set_texts, llc_tok_finish), what each
 * token decodes to, the special ids and the end-of-generation set, and the public read-only calls.
 * It calls no loader and no encoder: the loaders (gguf_vocab.c, llama2c_bin.c, spm_model.c,
 * tiktoken.c, hf_json.c) call it, detect.c calls the loaders. Every file is untrusted: counts, lengths
 * and ids are checked before use, and nothing is allocated from a count that the file's size does not
 * bound.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

#define MAX_VOCAB (1 << 24)

/* ---- text -> id --------------------------------------------------------------------------------- */

int32_t llc_tok_find(const struct llamac_tokenizer *tok, const char *s, size_t n) {
    for (uint32_t i = llc_tok_hash(s, n) & tok->map_mask;; i = (i + 1) & tok->map_mask) {
        int32_t id = tok->map[i];
        if (id < 0) return -1;
        const llc_token *t = &tok->tokens[id];
        if (t->len == n && memcmp(t->text, s, n) == 0) return id;
    }
}

/* Duplicate texts: the last id wins, as in llama.cpp's token_to_id. */
bool llc_tok_build_map(llamac_tokenizer *tok) {
    uint32_t slots = 16;
    while (slots < 2u * (uint32_t)tok->n_vocab) slots *= 2;
    tok->map = malloc(slots * sizeof *tok->map);
    if (!tok->map) return false;
    memset(tok->map, 0xff, slots * sizeof *tok->map);
    tok->map_mask = slots - 1;
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        const llc_token *t = &tok->tokens[id];
        uint32_t i = llc_tok_hash(t->text, t->len) & tok->map_mask;
        for (; tok->map[i] >= 0; i = (i + 1) & tok->map_mask) {
            const llc_token *o = &tok->tokens[tok->map[i]];
            if (o->len == t->len && memcmp(o->text, t->text, t->len) == 0) break;
        }
        tok->map[i] = id;
    }
    return true;
}

/* ---- construction ------------------------------------------------------------------------------- */

void llamac_tokenizer_free(llamac_tokenizer *tok) {
    if (!tok) return;
    if (tok->bpe) llc_bpe_free(tok->bpe);
    free(tok->tokens);
    free(tok->text_pool);
    free(tok->bytes_pool);
    free(tok->map);
    free(tok->pre);
    llc_added_free(tok->added);
    free(tok->merges_pool);
    free(tok->merges);
    free(tok->chat_template);
    free(tok);
}

llamac_tokenizer *llc_tok_new(uint64_t n, llamac_error *err) {
    if (n == 0) {
        llc_fail(err, "the vocabulary is empty");
        return NULL;
    }
    if (n > MAX_VOCAB) {
        llc_fail(err, "vocabulary of %llu tokens is too large", (unsigned long long)n);
        return NULL;
    }
    llamac_tokenizer *tok = calloc(1, sizeof *tok);
    if (tok) tok->tokens = calloc(n, sizeof *tok->tokens);
    if (!tok || !tok->tokens) {
        free(tok);
        llc_fail(err, "out of memory for a vocabulary of %llu tokens", (unsigned long long)n);
        return NULL;
    }
    tok->n_vocab = (int)n;
    tok->bos = tok->eos = tok->unk = tok->pad = tok->eot = tok->eom = -1;
    return tok;
}

/* Copies the token texts into one pool; spaces_to_u2581 turns llama2.c's raw spaces into "▁". */
bool llc_tok_set_texts(llamac_tokenizer *tok, const llc_str *strs, bool spaces_to_u2581, llamac_error *err) {
    size_t total = 0;
    for (int i = 0; i < tok->n_vocab; i++) {
        uint64_t len = strs[i].len;
        if (spaces_to_u2581)
            for (uint64_t j = 0; j < strs[i].len; j++) len += strs[i].ptr[j] == ' ' ? 2 : 0;
        if (len > UINT32_MAX / 4 || total + len + 1 < total) return llc_fail(err, "token %d is too long", i);
        total += len + 1;
    }
    tok->text_pool = malloc(total);
    if (!tok->text_pool) return llc_fail(err, "out of memory for token texts (%zu bytes)", total);
    char *p = tok->text_pool;
    for (int i = 0; i < tok->n_vocab; i++) {
        llc_token *t = &tok->tokens[i];
        t->text = p;
        for (uint64_t j = 0; j < strs[i].len; j++) {
            if (spaces_to_u2581 && strs[i].ptr[j] == ' ') {
                memcpy(p, LLC_U2581, 3);
                p += 3;
            } else {
                *p++ = strs[i].ptr[j];
            }
        }
        t->len = (uint32_t)(p - t->text);
        *p++ = 0;
        if (t->len > tok->max_len) tok->max_len = t->len;
    }
    return true;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The byte a "<0xNN>" piece stands for, -1 if the text is not of that form. */
int llc_tok_byte_piece_value(const llc_token *t) {
    if (t->len != 6 || memcmp(t->text, "<0x", 3) != 0 || t->text[5] != '>') return -1;
    int hi = hexval(t->text[3]), lo = hexval(t->text[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* What each token decodes to, as llama.cpp's token_to_piece (special = false) does it. */
static bool tok_set_bytes(llamac_tokenizer *tok, llamac_error *err) {
    size_t total = 1;
    for (int i = 0; i < tok->n_vocab; i++) total += tok->tokens[i].len + 3;
    tok->bytes_pool = malloc(total);
    if (!tok->bytes_pool) return llc_fail(err, "out of memory for token bytes");
    char *p = tok->bytes_pool;
    for (int i = 0; i < tok->n_vocab; i++) {
        llc_token *t = &tok->tokens[i];
        t->bytes = p;
        int b;
        switch (t->type) {
        case LLC_TT_NORMAL:
        case LLC_TT_BYTE:
            if (t->type == LLC_TT_BYTE && tok->kind == LLC_TOK_SPM && (b = llc_tok_byte_piece_value(t)) >= 0) {
                *p++ = (char)b;
            } else if (tok->kind == LLC_TOK_SPM) {
                for (uint32_t j = 0; j < t->len;) {
                    if (t->len - j >= 3 && memcmp(t->text + j, LLC_U2581, 3) == 0) {
                        *p++ = ' ';
                        j += 3;
                    } else {
                        *p++ = t->text[j++];
                    }
                }
            } else {
                const char *raw;
                size_t k = llc_bpe_token_bytes(tok->bpe, i, &raw);
                if (k > t->len + 3) k = t->len + 3; /* the pool's bound; decoding never grows a token */
                memcpy(p, raw, k);
                p += k;
            }
            break;
        case LLC_TT_USER_DEFINED:
            memcpy(p, t->text, t->len);
            p += t->len;
            break;
        case LLC_TT_UNKNOWN:
            if (tok->kind == LLC_TOK_SPM) {
                memcpy(p, "\xE2\x96\x85", 3); /* "▅", as llama.cpp prints an unknown piece */
                p += 3;
            }
            break;
        default: /* control, unused, undefined: nothing */
            break;
        }
        t->n_bytes = (uint32_t)(p - t->bytes);
    }
    return true;
}

void llc_tokenizer_add_eog(llamac_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->n_vocab || tok->n_eog == (int)(sizeof tok->eog / sizeof tok->eog[0])) return;
    for (int i = 0; i < tok->n_eog; i++)
        if (tok->eog[i] == id) return;
    tok->eog[tok->n_eog++] = id;
}

/* A piece that can be merged and has "▁" right after a character other than "▁". */
static bool piece_spans_words(const llc_token *t) {
    if (t->type == LLC_TT_CONTROL || t->type == LLC_TT_UNKNOWN || t->type == LLC_TT_BYTE) return false;
    for (uint32_t j = 1; j + 3 <= t->len; j++)
        if (!memcmp(t->text + j, LLC_U2581, 3) && (j < 3 || memcmp(t->text + j - 3, LLC_U2581, 3))) return true;
    return false;
}

/* Everything derived from texts, types and special ids. */
bool llc_tok_finish(llamac_tokenizer *tok, llamac_error *err) {
    if (!tok->map && !llc_tok_build_map(tok)) return llc_fail(err, "out of memory for the vocabulary map");
    if (!tok_set_bytes(tok, err)) return false;

    for (int b = 0; b < 256; b++) {
        char piece[7];
        snprintf(piece, sizeof piece, "<0x%02X>", b);
        tok->byte_id[b] = tok->kind == LLC_TOK_SPM ? llc_tok_find(tok, piece, 6) : -1;
    }

    tok->spm_word_split = tok->kind == LLC_TOK_SPM;
    for (int i = 0; i < tok->n_vocab; i++) {
        const llc_token *t = &tok->tokens[i];
        if (t->type == LLC_TT_UNUSED) tok->has_unused = true;
        if (tok->spm_word_split && piece_spans_words(t)) tok->spm_word_split = false;
    }
    /* Which split SentencePiece undoes for an unused piece depends on the order of the whole queue. */
    if (tok->has_unused) tok->spm_word_split = false;
    if (!llc_added_build(tok, err)) return false;

    llc_tokenizer_add_eog(tok, tok->eos);
    llc_tokenizer_add_eog(tok, tok->eot);
    llc_tokenizer_add_eog(tok, tok->eom);
    if (tok->kind == LLC_TOK_GPT2) {
        static const char *const names[] = {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            int32_t id = llc_tok_find(tok, names[i], strlen(names[i]));
            if (id >= 0 && tok->tokens[id].type == LLC_TT_CONTROL) llc_tokenizer_add_eog(tok, id);
        }
    }
    return true;
}

/* Keeps a copy of the merges: llc_tokenizer_write_gguf writes them back. */
bool llc_tok_set_merges(llamac_tokenizer *tok, const llc_str *m, uint64_t n, llamac_error *err) {
    if (n > INT32_MAX) return llc_fail(err, "too many merges (%llu)", (unsigned long long)n);
    size_t total = 1;
    for (uint64_t i = 0; i < n; i++) total += m[i].len;
    tok->merges = malloc((n ? n : 1) * sizeof *tok->merges);
    tok->merges_pool = malloc(total);
    if (!tok->merges || !tok->merges_pool) return llc_fail(err, "out of memory for %llu merges", (unsigned long long)n);
    char *p = tok->merges_pool;
    for (uint64_t i = 0; i < n; i++) {
        memcpy(p, m[i].ptr, m[i].len);
        tok->merges[i] = (llc_str){p, m[i].len};
        p += m[i].len;
    }
    tok->n_merges = (int)n;
    return true;
}

bool llc_tok_create_bpe(llamac_tokenizer *tok, llamac_error *err) {
    llc_str *strs = malloc((size_t)tok->n_vocab * sizeof *strs);
    if (!strs) return llc_fail(err, "out of memory");
    for (int i = 0; i < tok->n_vocab; i++) strs[i] = (llc_str){tok->tokens[i].text, tok->tokens[i].len};
    tok->bpe = llc_bpe_create(strs, tok->n_vocab, tok->merges, tok->n_merges, err);
    free(strs);
    return tok->bpe != NULL;
}

/* ---- public read-only calls --------------------------------------------------------------------- */

const char *llamac_tokenizer_chat_template(const llamac_tokenizer *tok) { return tok ? tok->chat_template : NULL; }

int32_t llamac_tokenizer_token_id(const llamac_tokenizer *tok, const char *text) {
    if (!tok || !text) return -1;
    return llc_tok_find(tok, text, strlen(text));
}

int llamac_tokenizer_n_vocab(const llamac_tokenizer *tok) { return tok ? tok->n_vocab : 0; }
int32_t llamac_tokenizer_bos(const llamac_tokenizer *tok) { return tok ? tok->bos : -1; }
int32_t llamac_tokenizer_eos(const llamac_tokenizer *tok) { return tok ? tok->eos : -1; }

bool llamac_tokenizer_is_eog(const llamac_tokenizer *tok, int32_t id) {
    if (!tok || id < 0) return false;
    for (int i = 0; i < tok->n_eog; i++)
        if (tok->eog[i] == id) return true;
    return false;
}

size_t llamac_token_bytes(const llamac_tokenizer *tok, int32_t id, const char **bytes) {
    if (!tok || id < 0 || id >= tok->n_vocab) {
        *bytes = "";
        return 0;
    }
    *bytes = tok->tokens[id].bytes;
    return tok->tokens[id].n_bytes;
}
