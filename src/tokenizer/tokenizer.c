/*
 * The vocabulary: telling tokenizer files apart by content and loading them (GGUF tokenizer.ggml.*
 * keys, llama2.c tokenizer.bin, tokenizer.json here; tiktoken files in tiktoken.c, SentencePiece
 * models in spm_model.c), the text -> id map, SentencePiece's whitespace normalization, decoding and
 * the streaming detokenizer. The encoders live in spm.c and bpe.c, special-token splitting in
 * added.c. Every file is untrusted: counts, lengths and ids are checked before use, and nothing is
 * allocated from a count that the file's size does not bound.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mapped_file.h"
#include "formats/gguf.h"
#include "tokenizer/bpe.h"
#include "tokenizer/hf_json.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

/* Text handed to llamac_tokenize: keeps every count inside int and every offset inside uint32. */
#define MAX_TEXT ((size_t)INT32_MAX / 4)
/* Largest tokenizer.bin read (Llama 2's is 0.5 MB, 128k-entry vocabularies a few MB). */
#define MAX_LLAMA2C_FILE ((size_t)256 << 20)
#define MAX_VOCAB (1 << 24)

static const char U2581[] = "\xE2\x96\x81"; /* "▁", SentencePiece's space */

/* ---- text -> id --------------------------------------------------------------------------------- */

static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h ^ (h >> 15);
}

int32_t llc_tok_find(const struct llamac_tokenizer *tok, const char *s, size_t n) {
    for (uint32_t i = hash_bytes(s, n) & tok->map_mask;; i = (i + 1) & tok->map_mask) {
        int32_t id = tok->map[i];
        if (id < 0) return -1;
        const llc_token *t = &tok->tokens[id];
        if (t->len == n && memcmp(t->text, s, n) == 0) return id;
    }
}

/* Duplicate texts: the last id wins, as in llama.cpp's token_to_id. */
static bool build_map(llamac_tokenizer *tok) {
    uint32_t slots = 16;
    while (slots < 2u * (uint32_t)tok->n_vocab) slots *= 2;
    tok->map = malloc(slots * sizeof *tok->map);
    if (!tok->map) return false;
    memset(tok->map, 0xff, slots * sizeof *tok->map);
    tok->map_mask = slots - 1;
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        const llc_token *t = &tok->tokens[id];
        uint32_t i = hash_bytes(t->text, t->len) & tok->map_mask;
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
                memcpy(p, U2581, 3);
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
static int byte_piece_value(const llc_token *t) {
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
            if (t->type == LLC_TT_BYTE && tok->kind == LLC_TOK_SPM && (b = byte_piece_value(t)) >= 0) {
                *p++ = (char)b;
            } else if (tok->kind == LLC_TOK_SPM) {
                for (uint32_t j = 0; j < t->len;) {
                    if (t->len - j >= 3 && memcmp(t->text + j, U2581, 3) == 0) {
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
        if (!memcmp(t->text + j, U2581, 3) && (j < 3 || memcmp(t->text + j - 3, U2581, 3))) return true;
    return false;
}

/* Everything derived from texts, types and special ids. */
bool llc_tok_finish(llamac_tokenizer *tok, llamac_error *err) {
    if (!tok->map && !build_map(tok)) return llc_fail(err, "out of memory for the vocabulary map");
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

/* ---- GGUF --------------------------------------------------------------------------------------- */

static bool is_int_vtype(uint32_t t) {
    return t == GGUF_U8 || t == GGUF_I8 || t == GGUF_U16 || t == GGUF_I16 || t == GGUF_U32 || t == GGUF_I32 ||
           t == GGUF_U64 || t == GGUF_I64;
}
static bool is_signed_vtype(uint32_t t) { return t == GGUF_I8 || t == GGUF_I16 || t == GGUF_I32 || t == GGUF_I64; }

/* An optional token id. Negative or 0xFFFFFFFF means none (llama.cpp's converters write that).
 * Out of range: an error when strict (BOS, EOS), otherwise ignored as llama.cpp does. */
static bool read_id(const llc_gguf_file *g, const char *key, int n_vocab, bool strict, int32_t *id, llamac_error *err) {
    const llc_gguf_kv *kv = llc_gguf_find(g, key);
    if (!kv) return true;
    if (!is_int_vtype(kv->type)) return llc_fail(err, "%s has type %s, expected an integer", key, llc_gguf_type_name(kv->type));
    int64_t v = is_signed_vtype(kv->type) ? kv->v.i : kv->v.u > INT64_MAX ? -1 : (int64_t)kv->v.u;
    if (v < 0 || v == UINT32_MAX) {
        *id = -1;
    } else if (v >= n_vocab) {
        if (strict) return llc_fail(err, "%s = %lld is outside the vocabulary of %d tokens", key, (long long)v, n_vocab);
        *id = -1;
    } else {
        *id = (int32_t)v;
    }
    return true;
}

static bool read_bool(const llc_gguf_file *g, const char *key, bool *out, llamac_error *err) {
    llamac_error e;
    e.message[0] = 0;
    if (llc_gguf_get_bool(g, key, out, &e) || !e.message[0]) return true;
    return llc_fail(err, "%s", e.message);
}

/* A numeric array of exactly n elements, NULL (no error) if absent. */
static const llc_gguf_kv *num_array(const llc_gguf_file *g, const char *key, uint64_t n, bool want_float, llamac_error *err,
                                bool *bad) {
    const llc_gguf_kv *kv = llc_gguf_find(g, key);
    *bad = false;
    if (!kv) return NULL;
    bool ok = kv->type == GGUF_ARRAY &&
              (want_float ? kv->v.arr.type == GGUF_F32 || kv->v.arr.type == GGUF_F64 : is_int_vtype(kv->v.arr.type));
    if (!ok) {
        *bad = true;
        llc_fail(err, "%s is not an array of %s", key, want_float ? "floats" : "integers");
        return NULL;
    }
    if (kv->v.arr.n != n) {
        *bad = true;
        llc_fail(err, "%s has %llu elements for %llu tokens", key, (unsigned long long)kv->v.arr.n,
                 (unsigned long long)n);
        return NULL;
    }
    return kv;
}

/* Keeps a copy of the merges: llc_tokenizer_write_gguf writes them back. */
static bool copy_merges(llamac_tokenizer *tok, const llc_str *m, uint64_t n, llamac_error *err) {
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

static bool load_merges(llamac_tokenizer *tok, const llc_gguf_file *g, llamac_error *err) {
    llamac_error e;
    e.message[0] = 0;
    const llc_gguf_kv *kv = llc_gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_STRING, &e);
    if (!kv) return llc_fail(err, "%s", e.message[0] ? e.message : "a gpt2 vocabulary needs tokenizer.ggml.merges");
    uint64_t n = kv->v.arr.n;
    llc_str *m = malloc((n ? n : 1) * sizeof *m);
    if (!m) return llc_fail(err, "out of memory for %llu merges", (unsigned long long)n);
    llc_gguf_arr_strings(kv, m);
    bool ok = copy_merges(tok, m, n, err);
    free(m);
    return ok;
}

static bool create_bpe(llamac_tokenizer *tok, llamac_error *err) {
    llc_str *strs = malloc((size_t)tok->n_vocab * sizeof *strs);
    if (!strs) return llc_fail(err, "out of memory");
    for (int i = 0; i < tok->n_vocab; i++) strs[i] = (llc_str){tok->tokens[i].text, tok->tokens[i].len};
    tok->bpe = llc_bpe_create(strs, tok->n_vocab, tok->merges, tok->n_merges, err);
    free(strs);
    return tok->bpe != NULL;
}

llamac_tokenizer *llc_tokenizer_from_gguf(const llc_gguf_file *g, llamac_error *err) {
    llamac_error e;
    e.message[0] = 0;
    llc_str model;
    if (!llc_gguf_get_str(g, "tokenizer.ggml.model", &model, &e)) {
        llc_fail(err, "%s", e.message[0] ? e.message : "no tokenizer.ggml.model: the file carries no tokenizer");
        return NULL;
    }
    int kind;
    if (llc_str_eq(model, "llama")) {
        kind = LLC_TOK_SPM;
    } else if (llc_str_eq(model, "gpt2")) {
        kind = LLC_TOK_GPT2;
    } else {
        llc_fail(err, "tokenizer.ggml.model \"%.*s\" is not supported (llama, gpt2)", model.len > 32 ? 32 : (int)model.len,
                 model.ptr);
        return NULL;
    }
    const llc_gguf_kv *tk = llc_gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_STRING, &e);
    if (!tk) {
        llc_fail(err, "%s", e.message[0] ? e.message : "no tokenizer.ggml.tokens");
        return NULL;
    }
    uint64_t n = tk->v.arr.n;
    llamac_tokenizer *tok = llc_tok_new(n, err);
    if (!tok) return NULL;
    tok->kind = kind;
    snprintf(tok->model, sizeof tok->model, "%s", kind == LLC_TOK_SPM ? "llama" : "gpt2");

    llc_str *strs = malloc(n * sizeof *strs);
    if (!strs) {
        llc_fail(err, "out of memory for %llu tokens", (unsigned long long)n);
        goto fail;
    }
    llc_gguf_arr_strings(tk, strs);
    bool ok = llc_tok_set_texts(tok, strs, false, err);
    free(strs);
    if (!ok) goto fail;

    bool bad;
    const llc_gguf_kv *sc = num_array(g, "tokenizer.ggml.scores", n, true, err, &bad);
    if (bad) goto fail;
    const llc_gguf_kv *tt = num_array(g, "tokenizer.ggml.token_type", n, false, err, &bad);
    if (bad) goto fail;
    tok->has_scores = sc != NULL;
    for (uint64_t i = 0; i < n; i++) {
        llc_token *t = &tok->tokens[i];
        t->score = sc ? (float)llc_gguf_arr_num(sc, i) : 0.0f;
        if (isnan(t->score)) t->score = -INFINITY; /* keeps the merge order total */
        double ty = tt ? llc_gguf_arr_num(tt, i) : LLC_TT_NORMAL;
        t->type = ty >= LLC_TT_UNDEFINED && ty <= LLC_TT_BYTE ? (uint8_t)ty : LLC_TT_UNDEFINED;
    }

    if (kind == LLC_TOK_SPM) { /* llama.cpp's defaults for SentencePiece vocabularies */
        if (n > 1) tok->bos = 1;
        if (n > 2) tok->eos = 2;
        tok->unk = 0;
    }
    int nv = tok->n_vocab;
    if (!read_id(g, "tokenizer.ggml.bos_token_id", nv, true, &tok->bos, err) ||
        !read_id(g, "tokenizer.ggml.eos_token_id", nv, true, &tok->eos, err) ||
        !read_id(g, "tokenizer.ggml.unknown_token_id", nv, false, &tok->unk, err) ||
        !read_id(g, "tokenizer.ggml.padding_token_id", nv, false, &tok->pad, err) ||
        !read_id(g, "tokenizer.ggml.eot_token_id", nv, false, &tok->eot, err) ||
        !read_id(g, "tokenizer.ggml.eom_token_id", nv, false, &tok->eom, err))
        goto fail;

    llc_str pre = {NULL, 0};
    e.message[0] = 0;
    if (llc_gguf_get_str(g, "tokenizer.ggml.pre", &pre, &e)) {
        tok->pre = malloc(pre.len + 1);
        if (!tok->pre) {
            llc_fail(err, "out of memory");
            goto fail;
        }
        memcpy(tok->pre, pre.ptr, pre.len);
        tok->pre[pre.len] = 0;
    } else if (e.message[0]) {
        llc_fail(err, "%s", e.message);
        goto fail;
    }

    bool llama3 = tok->pre && (!strcmp(tok->pre, "llama3") || !strcmp(tok->pre, "llama-v3") || !strcmp(tok->pre, "llama-bpe"));
    tok->add_bos = kind == LLC_TOK_SPM || llama3;
    tok->add_eos = false;
    tok->add_space_prefix = kind == LLC_TOK_SPM;
    if (!read_bool(g, "tokenizer.ggml.add_bos_token", &tok->add_bos, err) ||
        !read_bool(g, "tokenizer.ggml.add_eos_token", &tok->add_eos, err) ||
        !read_bool(g, "tokenizer.ggml.add_space_prefix", &tok->add_space_prefix, err) ||
        !read_bool(g, "tokenizer.ggml.remove_extra_whitespaces", &tok->remove_extra_ws, err))
        goto fail;
    if (kind != LLC_TOK_SPM) tok->remove_extra_ws = false;

    llc_str tmpl;
    e.message[0] = 0;
    if (llc_gguf_get_str(g, "tokenizer.chat_template", &tmpl, &e)) {
        if (!(tok->chat_template = malloc(tmpl.len + 1))) {
            llc_fail(err, "out of memory");
            goto fail;
        }
        memcpy(tok->chat_template, tmpl.ptr, tmpl.len);
        tok->chat_template[tmpl.len] = 0;
    } else if (e.message[0]) {
        llc_fail(err, "%s", e.message);
        goto fail;
    }

    if (kind == LLC_TOK_GPT2 && (!load_merges(tok, g, err) || !create_bpe(tok, err))) goto fail;
    if (!llc_tok_finish(tok, err)) goto fail;
    return tok;
fail:
    llamac_tokenizer_free(tok);
    return NULL;
}

/* ---- llama2.c tokenizer.bin --------------------------------------------------------------------- */
/* int32 max_token_length, then per token: f32 score, int32 length, the bytes. Spaces are raw (llama2.c's
 * export undid SentencePiece's "▁"), BOS and EOS are spelled "\n<s>\n" and "\n</s>\n". */

static int32_t rd_i32(const char *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

llamac_tokenizer *llc_tokenizer_from_llama2c(const char *path, int n_vocab, llamac_error *err) {
    size_t size;
    char *data = llc_read_file(path, MAX_LLAMA2C_FILE, &size, err);
    if (!data) return NULL;
    llamac_tokenizer *tok = llc_tokenizer_from_llama2c_memory(data, size, n_vocab, path, err);
    free(data);
    return tok;
}

llamac_tokenizer *llc_tokenizer_from_llama2c_memory(const void *bytes, size_t size, int n_vocab, const char *path,
                                                    llamac_error *err) {
    const char *data = bytes;
    llamac_tokenizer *tok = NULL;
    llc_str *strs = NULL;
    float *scores = NULL;
    if (size > MAX_LLAMA2C_FILE) {
        llc_fail(err, "%s: too large for a llama2.c tokenizer (%zu bytes)", path, size);
        goto fail;
    }
    if (size < 4) {
        llc_fail(err, "%s: too short for a llama2.c tokenizer", path);
        goto fail;
    }
    if (rd_i32(data) < 0 || (size_t)rd_i32(data) > size) {
        llc_fail(err, "%s: not a llama2.c tokenizer (max_token_length %d)", path, rd_i32(data));
        goto fail;
    }
    uint64_t count = 0;
    for (size_t off = 4; off < size; count++) {
        if (size - off < 8) {
            llc_fail(err, "%s: truncated at token %llu", path, (unsigned long long)count);
            goto fail;
        }
        int32_t len = rd_i32(data + off + 4);
        if (len < 0 || (size_t)len > size - off - 8) {
            llc_fail(err, "%s: token %llu has length %d, beyond the end of the file", path, (unsigned long long)count, len);
            goto fail;
        }
        off += 8 + (size_t)len;
    }
    if (n_vocab > 0 && count != (uint64_t)n_vocab) {
        llc_fail(err, "%s: has %llu tokens, the model has %d", path, (unsigned long long)count, n_vocab);
        goto fail;
    }
    tok = llc_tok_new(count, err);
    if (!tok) {
        llc_error_prefix(err, "%s", path);
        goto fail;
    }
    tok->kind = LLC_TOK_SPM;
    snprintf(tok->model, sizeof tok->model, "llama");
    strs = calloc(count, sizeof *strs);
    scores = malloc(count * sizeof *scores);
    if (!strs || !scores) {
        llc_fail(err, "%s: out of memory", path);
        goto fail;
    }
    size_t off = 4;
    for (uint64_t i = 0; i < count; i++) {
        memcpy(&scores[i], data + off, 4);
        int32_t len = rd_i32(data + off + 4);
        strs[i] = (llc_str){data + off + 8, (uint64_t)len};
        off += 8 + (size_t)len;
        if ((i == 1 || i == 2) && len >= 2 && strs[i].ptr[0] == '\n' && strs[i].ptr[len - 1] == '\n') {
            strs[i].ptr++;
            strs[i].len -= 2;
        }
    }
    if (!llc_tok_set_texts(tok, strs, true, err)) {
        llc_error_prefix(err, "%s", path);
        goto fail;
    }
    tok->has_scores = true;
    for (uint64_t i = 0; i < count; i++) {
        llc_token *t = &tok->tokens[i];
        t->score = isnan(scores[i]) ? -INFINITY : scores[i];
        if (i == 0 && t->len == 5 && !memcmp(t->text, "<unk>", 5)) t->type = LLC_TT_UNKNOWN;
        else if (i == 1 || i == 2) t->type = LLC_TT_CONTROL;
        else t->type = byte_piece_value(t) >= 0 ? LLC_TT_BYTE : LLC_TT_NORMAL;
    }
    /* Fixed by llama2.c's run.c. */
    tok->unk = tok->tokens[0].type == LLC_TT_UNKNOWN ? 0 : -1;
    tok->bos = count > 1 ? 1 : -1;
    tok->eos = count > 2 ? 2 : -1;
    tok->add_bos = true;
    tok->add_space_prefix = true;
    if (!llc_tok_finish(tok, err)) {
        llc_error_prefix(err, "%s", path);
        goto fail;
    }
    free(strs);
    free(scores);
    return tok;
fail:
    free(strs);
    free(scores);
    llamac_tokenizer_free(tok);
    return NULL;
}

/* ---- Hugging Face tokenizer.json (Llama 3) ------------------------------------------------------ */

/* Takes the vocabulary's chat template; frees nothing else of v. */
static llamac_tokenizer *from_hf_vocab(llc_hf_vocab *pv, const char *path, llamac_error *err) {
    llc_hf_vocab v = *pv;
    llc_str *strs = NULL;
    llamac_tokenizer *tok = llc_tok_new(v.n_tokens > 0 ? (uint64_t)v.n_tokens : 0, err);
    if (!tok) goto fail_prefix;
    tok->kind = LLC_TOK_GPT2;
    snprintf(tok->model, sizeof tok->model, "gpt2");
    tok->pre = strdup("llama-bpe"); /* what llama.cpp's converter names the Llama 3 pre-tokenizer */
    size_t n_str = (size_t)(v.n_tokens > v.n_merges ? v.n_tokens : v.n_merges);
    strs = calloc(n_str ? n_str : 1, sizeof *strs);
    if (!strs || !tok->pre) {
        llc_fail(err, "%s: out of memory", path);
        goto fail;
    }
    for (int i = 0; i < v.n_tokens; i++) strs[i] = (llc_str){v.tokens[i], v.token_lens[i]};
    if (!llc_tok_set_texts(tok, strs, false, err)) goto fail_prefix;
    for (int i = 0; i < v.n_tokens; i++) tok->tokens[i].type = v.token_type[i] <= LLC_TT_BYTE ? v.token_type[i] : 0;
    for (int i = 0; i < v.n_merges; i++) strs[i] = (llc_str){v.merges[i], strlen(v.merges[i])};
    if (!copy_merges(tok, strs, (uint64_t)v.n_merges, err) || !create_bpe(tok, err)) goto fail_prefix;
    tok->bos = v.bos >= 0 && v.bos < tok->n_vocab ? v.bos : -1;
    tok->eos = v.eos >= 0 && v.eos < tok->n_vocab ? v.eos : -1;
    tok->add_bos = tok->bos >= 0;
    if (!build_map(tok)) {
        llc_fail(err, "%s: out of memory", path);
        goto fail;
    }
    /* llama.cpp names these from the token texts too. */
    int32_t id = llc_tok_find(tok, "<|eot_id|>", 10);
    if (id >= 0 && tok->tokens[id].type == LLC_TT_CONTROL) tok->eot = id;
    id = llc_tok_find(tok, "<|eom_id|>", 10);
    if (id >= 0 && tok->tokens[id].type == LLC_TT_CONTROL) tok->eom = id;
    if (!llc_tok_finish(tok, err)) goto fail_prefix;
    tok->chat_template = v.chat_template;
    pv->chat_template = NULL;
    free(strs);
    return tok;
fail_prefix:
    llc_error_prefix(err, "%s", path);
fail:
    free(strs);
    llamac_tokenizer_free(tok);
    return NULL;
}

static llamac_tokenizer *from_hf_json(const char *path, llamac_error *err) {
    llc_hf_vocab v;
    if (!llc_hf_vocab_load(path, &v, err)) return NULL;
    llamac_tokenizer *tok = from_hf_vocab(&v, path, err);
    llc_hf_vocab_free(&v);
    return tok;
}

llamac_tokenizer *llc_tokenizer_from_hf_json(const void *data, size_t size, const char *name, llamac_error *err) {
    llc_hf_vocab v;
    if (!llc_hf_vocab_load_memory(data, size, name, &v, err)) return NULL;
    llamac_tokenizer *tok = from_hf_vocab(&v, name, err);
    llc_hf_vocab_free(&v);
    return tok;
}

/* ---- public API --------------------------------------------------------------------------------- */

/* ---- telling files apart ------------------------------------------------------------------------ */

static bool is_b64(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/' ||
           c == '=';
}

/* "base64 rank" at the start: a base64 run, blanks, digits, then a line end (or the end of what we
 * have). A first line longer than the head still counts when the head is all base64, so that a
 * tiktoken file with an overlong first line gets the tiktoken loader's message. */
static bool looks_tiktoken(const unsigned char *h, size_t n) {
    size_t i = 0;
    while (i < n && is_b64(h[i])) i++;
    if (i == n) return n >= 16;
    if (i == 0 || (h[i] != ' ' && h[i] != '\t')) return false;
    while (i < n && (h[i] == ' ' || h[i] == '\t')) i++;
    size_t d = i;
    while (i < n && h[i] >= '0' && h[i] <= '9') i++;
    if (i == d) return i == n;
    return i == n || h[i] == '\n' || h[i] == '\r';
}

/* A ModelProto begins with its first piece: field 1 (length-delimited) holding a SentencePiece whose
 * own first field is the piece string (field 1, length-delimited). */
static bool looks_spm(const unsigned char *h, size_t n) {
    if (n < 3 || h[0] != 0x0A) return false;
    size_t i = 1;
    uint64_t len = 0;
    for (int shift = 0; i < n && shift < 35; shift += 7) {
        len |= (uint64_t)(h[i] & 0x7F) << shift;
        if (!(h[i++] & 0x80)) break;
    }
    return len >= 2 && i < n && h[i] == 0x0A;
}

enum llc_tok_format llc_tokenizer_detect(const void *head, size_t n) {
    const unsigned char *h = head;
    if (!h) return LLC_TOKFMT_UNKNOWN;
    if (n >= 4 && !memcmp(h, "GGUF", 4)) return LLC_TOKFMT_GGUF;
    /* A llama2.c file starts with a small int32 (max_token_length), so with a NUL byte; JSON, tiktoken
     * text and SentencePiece protobufs do not. */
    bool nul = memchr(h, 0, n < 4 ? n : 4) != NULL;
    size_t i = 0;
    while (i < n && (h[i] == ' ' || h[i] == '\t' || h[i] == '\n' || h[i] == '\r')) i++;
    if (i < n && h[i] == '{' && !nul) return LLC_TOKFMT_HF_JSON;
    if (looks_tiktoken(h, n)) return LLC_TOKFMT_TIKTOKEN;
    if (looks_spm(h, n)) return LLC_TOKFMT_SPM;
    if (n >= 4 && nul) return LLC_TOKFMT_LLAMA2C;
    return LLC_TOKFMT_UNKNOWN;
}

const char *llc_tokenizer_format_name(enum llc_tok_format f) {
    switch (f) {
    case LLC_TOKFMT_GGUF: return "GGUF";
    case LLC_TOKFMT_HF_JSON: return "tokenizer.json";
    case LLC_TOKFMT_TIKTOKEN: return "tiktoken";
    case LLC_TOKFMT_SPM: return "SentencePiece model";
    case LLC_TOKFMT_LLAMA2C: return "llama2.c tokenizer";
    default: return "unknown";
    }
}

#define UNKNOWN_FORMAT "not a tokenizer this build reads (GGUF, tokenizer.json, tiktoken or SentencePiece " \
                       "tokenizer.model, llama2.c tokenizer.bin)"
/* tiktoken and SentencePiece files are read whole; Llama 3's is 2.2 MB, Llama 2's 0.5 MB. */
#define MAX_MODEL_FILE ((size_t)64 << 20)

bool llc_tok_template_beside(llamac_tokenizer *tok, const char *path, llamac_error *err) {
    char *t = NULL;
    if (!llc_hf_chat_template_beside(path, &t, err)) return false;
    if (t) {
        free(tok->chat_template);
        tok->chat_template = t;
    }
    return true;
}

llamac_tokenizer *llc_tokenizer_from_memory(const void *data, size_t size, const char *name, llamac_error *err) {
    if (!name) name = "(memory)";
    if (!data && size) {
        llc_fail(err, "%s: no data", name);
        return NULL;
    }
    llamac_tokenizer *tok = NULL;
    switch (llc_tokenizer_detect(data, size)) {
    case LLC_TOKFMT_GGUF: {
        llc_gguf_file *g = llc_gguf_open_memory(data, size, err);
        if (g) tok = llc_tokenizer_from_gguf(g, err);
        llc_gguf_close(g);
        if (!tok) llc_error_prefix(err, "%s", name);
        return tok;
    }
    case LLC_TOKFMT_HF_JSON: return llc_tokenizer_from_hf_json(data, size, name, err);
    case LLC_TOKFMT_TIKTOKEN: return llc_tokenizer_from_tiktoken(data, size, name, err);
    case LLC_TOKFMT_SPM: return llc_tokenizer_from_spm_model(data, size, name, err);
    case LLC_TOKFMT_LLAMA2C: return llc_tokenizer_from_llama2c_memory(data, size, 0, name, err);
    default: llc_fail(err, "%s: " UNKNOWN_FORMAT, name); return NULL;
    }
}

llamac_tokenizer *llamac_tokenizer_load(const char *path, llamac_error *err) {
    if (!path) {
        llc_fail(err, "no tokenizer path");
        return NULL;
    }
    unsigned char head[64] = {0};
    size_t got = 0;
    if (!llc_read_head(path, head, sizeof head, &got, err)) return NULL;

    enum llc_tok_format f = llc_tokenizer_detect(head, got);
    if (f == LLC_TOKFMT_GGUF) {
        llc_gguf_file *g = llc_gguf_open(path, err);
        if (!g) return NULL;
        llamac_tokenizer *tok = llc_tokenizer_from_gguf(g, err);
        llc_gguf_close(g);
        if (!tok) llc_error_prefix(err, "%s", path);
        return tok;
    }
    if (f == LLC_TOKFMT_HF_JSON) return from_hf_json(path, err);
    if (f == LLC_TOKFMT_LLAMA2C) return llc_tokenizer_from_llama2c(path, 0, err);
    if (f == LLC_TOKFMT_TIKTOKEN || f == LLC_TOKFMT_SPM) {
        size_t size;
        char *data = llc_read_file(path, MAX_MODEL_FILE, &size, err);
        if (!data) return NULL;
        llamac_tokenizer *tok = f == LLC_TOKFMT_TIKTOKEN ? llc_tokenizer_from_tiktoken(data, size, path, err)
                                                         : llc_tokenizer_from_spm_model(data, size, path, err);
        free(data);
        if (tok && !llc_tok_template_beside(tok, path, err)) {
            llamac_tokenizer_free(tok);
            return NULL;
        }
        return tok;
    }
    llc_fail(err, "%s: " UNKNOWN_FORMAT, path);
    return NULL;
}

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

/* ---- tokenize ----------------------------------------------------------------------------------- */

/* SentencePiece's dummy prefix: llama.cpp adds it to every piece of text between special tokens. */
static bool encode_text(const llamac_tokenizer *tok, const char *text, size_t len, llc_spm_scratch *s,
                        llc_tok_sink *out, llamac_error *err) {
    if (tok->kind == LLC_TOK_SPM) return llc_spm_encode(tok, text, len, tok->add_space_prefix, s, out, err);
    (void)s;
    int room = out->n < out->cap ? out->cap - out->n : 0;
    int got = llc_bpe_encode(tok->bpe, text, len, room ? out->out + out->n : NULL, room);
    if (got < 0) return llc_fail(err, "byte-level BPE encoding failed (out of memory?)");
    out->n += got;
    return true;
}

/* SentencePiece's remove_extra_whitespaces with the identity normalizer: spaces (U+0020 only) at the
 * start are dropped, runs of them become one, and the end is trimmed of spaces and of "▁" (it trims
 * the escaped text, where a literal "▁" looks like a space). out has room for len bytes. */
static size_t remove_extra_ws(const char *s, size_t len, char *out) {
    size_t n = 0;
    bool prev_space = true;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ' && prev_space) continue;
        prev_space = s[i] == ' ';
        out[n++] = s[i];
    }
    for (;;) {
        if (n >= 1 && out[n - 1] == ' ') n--;
        else if (n >= 3 && !memcmp(out + n - 3, U2581, 3)) n -= 3;
        else break;
    }
    return n;
}

int llamac_tokenize(const llamac_tokenizer *tok, const char *text, size_t len, bool add_bos, bool parse_special,
                    int32_t *out, int cap, llamac_error *err) {
    if (!tok || (!text && len) || len > MAX_TEXT) {
        llc_fail(err, !tok ? "no tokenizer" : len > MAX_TEXT ? "text too long to tokenize" : "no text");
        return -1;
    }
    llc_tok_sink sink = {out, out && cap > 0 ? cap : 0, 0};
    if (add_bos && tok->bos >= 0) llc_sink_push(&sink, tok->bos);

    char *norm = NULL;
    if (tok->remove_extra_ws && len > 0) {
        if (!(norm = malloc(len))) {
            llc_fail(err, "out of memory tokenizing");
            return -1;
        }
        len = remove_extra_ws(text, len, norm);
        text = norm;
    }

    llc_added_match *cut;
    size_t n_cut;
    llc_spm_scratch scratch = {0};
    bool ok = llc_added_split(tok, text, len, parse_special, &cut, &n_cut);
    if (!ok) llc_fail(err, "out of memory tokenizing");
    size_t pos = 0;
    for (size_t i = 0; ok && i <= n_cut; i++) {
        size_t end = i < n_cut ? cut[i].pos : len;
        if (end > pos) ok = encode_text(tok, text + pos, end - pos, &scratch, &sink, err);
        if (!ok || i == n_cut) break;
        llc_sink_push(&sink, cut[i].id);
        pos = end + cut[i].len;
    }
    free(cut);
    free(norm);
    llc_spm_scratch_free(&scratch);
    return ok ? sink.n : -1;
}

/* ---- streaming detokenizer ---------------------------------------------------------------------- */

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

/* ---- GGUF writer -------------------------------------------------------------------------------- */

/* A tiktoken vocabulary has no merges list; GGUF's gpt2 model needs one. Written as Hugging Face's
 * converter derives it from the ranks (every split of a token into two tokens, ordered by the rank
 * of the merged token, then of the left and right parts): the same list as Llama 3's tokenizer.json. */
static void write_ranked_merges(const llamac_tokenizer *tok, llc_gguf_writer *w) {
    uint32_t *pairs;
    long n = llc_bpe_ranked_merges(tok->bpe, &pairs);
    if (n < 0) return; /* out of memory: the key is left out and the written file fails to load */
    size_t total = 0;
    for (long i = 0; i < n; i++) total += tok->tokens[pairs[3 * i + 1]].len + tok->tokens[pairs[3 * i + 2]].len + 1;
    char *pool = malloc(total ? total : 1);
    const char **ms = malloc((size_t)(n ? n : 1) * sizeof *ms);
    uint64_t *ml = malloc((size_t)(n ? n : 1) * sizeof *ml);
    if (pool && ms && ml) {
        char *p = pool;
        for (long i = 0; i < n; i++) {
            const llc_token *l = &tok->tokens[pairs[3 * i + 1]], *r = &tok->tokens[pairs[3 * i + 2]];
            ms[i] = p;
            memcpy(p, l->text, l->len);
            p[l->len] = ' ';
            memcpy(p + l->len + 1, r->text, r->len);
            ml[i] = l->len + 1 + r->len;
            p += ml[i];
        }
        llc_gguf_write_str_arr(w, "tokenizer.ggml.merges", ms, ml, (uint64_t)n);
    }
    free(pool);
    free(ms);
    free(ml);
    free(pairs);
}

void llc_tokenizer_write_gguf(const llamac_tokenizer *tok, llc_gguf_writer *w) {
    size_t n = (size_t)tok->n_vocab;
    const char **strs = malloc(n * sizeof *strs);
    uint64_t *lens = malloc(n * sizeof *lens);
    float *scores = malloc(n * sizeof *scores);
    int32_t *types = malloc(n * sizeof *types);
    /* Without memory the keys are left out; the written file then fails to load with a clear error. */
    if (strs && lens && scores && types) {
        for (size_t i = 0; i < n; i++) {
            strs[i] = tok->tokens[i].text;
            lens[i] = tok->tokens[i].len;
            scores[i] = tok->tokens[i].score;
            types[i] = tok->tokens[i].type;
        }
        llc_gguf_write_str(w, "tokenizer.ggml.model", tok->model);
        if (tok->pre) llc_gguf_write_str(w, "tokenizer.ggml.pre", tok->pre);
        llc_gguf_write_str_arr(w, "tokenizer.ggml.tokens", strs, lens, n);
        if (tok->has_scores) llc_gguf_write_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, n);
        llc_gguf_write_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, n);
    }
    free(strs);
    free(lens);
    free(scores);
    free(types);

    if (tok->kind == LLC_TOK_GPT2 && !tok->n_merges && llc_bpe_n_ranked(tok->bpe)) {
        write_ranked_merges(tok, w);
    } else if (tok->kind == LLC_TOK_GPT2) {
        size_t m = (size_t)tok->n_merges;
        const char **ms = malloc((m ? m : 1) * sizeof *ms);
        uint64_t *ml = malloc((m ? m : 1) * sizeof *ml);
        if (ms && ml) {
            for (size_t i = 0; i < m; i++) {
                ms[i] = tok->merges[i].ptr;
                ml[i] = tok->merges[i].len;
            }
            llc_gguf_write_str_arr(w, "tokenizer.ggml.merges", ms, ml, m);
        }
        free(ms);
        free(ml);
    }

    static const struct {
        const char *key;
        size_t off;
    } ids[] = {
        {"tokenizer.ggml.bos_token_id", offsetof(llamac_tokenizer, bos)},
        {"tokenizer.ggml.eos_token_id", offsetof(llamac_tokenizer, eos)},
        {"tokenizer.ggml.unknown_token_id", offsetof(llamac_tokenizer, unk)},
        {"tokenizer.ggml.padding_token_id", offsetof(llamac_tokenizer, pad)},
        {"tokenizer.ggml.eot_token_id", offsetof(llamac_tokenizer, eot)},
        {"tokenizer.ggml.eom_token_id", offsetof(llamac_tokenizer, eom)},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        int32_t id;
        memcpy(&id, (const char *)tok + ids[i].off, sizeof id);
        /* Absent ids are written as 0xFFFFFFFF so that loading does not fall back to the defaults. */
        llc_gguf_write_u32(w, ids[i].key, id >= 0 ? (uint32_t)id : UINT32_MAX);
    }
    llc_gguf_write_bool(w, "tokenizer.ggml.add_bos_token", tok->add_bos);
    llc_gguf_write_bool(w, "tokenizer.ggml.add_eos_token", tok->add_eos);
    llc_gguf_write_bool(w, "tokenizer.ggml.add_space_prefix", tok->add_space_prefix);
    if (tok->remove_extra_ws) llc_gguf_write_bool(w, "tokenizer.ggml.remove_extra_whitespaces", true);
    if (tok->chat_template) llc_gguf_write_str(w, "tokenizer.chat_template", tok->chat_template);
}

/* A token's bytes are never longer than its stored text (▁ and <0xNN> shrink, byte-level BPE's
 * characters stand for single bytes); add room for a held partial character, U+FFFD and the NUL. */
size_t llamac_detokenizer_max_bytes(const llamac_tokenizer *tok) { return (size_t)tok->max_len + 16; }
