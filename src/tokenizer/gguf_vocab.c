/*
 * Loader for the tokenizer.ggml.* keys of a GGUF (model files and vocabulary-only files), as llama.cpp
 * reads them: its defaults where a key is absent, its leniency on out-of-range optional ids.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

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

static bool load_merges(llamac_tokenizer *tok, const llc_gguf_file *g, llamac_error *err) {
    llamac_error e;
    e.message[0] = 0;
    const llc_gguf_kv *kv = llc_gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_STRING, &e);
    if (!kv) return llc_fail(err, "%s", e.message[0] ? e.message : "a gpt2 vocabulary needs tokenizer.ggml.merges");
    uint64_t n = kv->v.arr.n;
    llc_str *m = malloc((n ? n : 1) * sizeof *m);
    if (!m) return llc_fail(err, "out of memory for %llu merges", (unsigned long long)n);
    llc_gguf_arr_strings(kv, m);
    bool ok = llc_tok_set_merges(tok, m, n, err);
    free(m);
    return ok;
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

    if (kind == LLC_TOK_GPT2 && (!load_merges(tok, g, err) || !llc_tok_create_bpe(tok, err))) goto fail;
    if (!llc_tok_finish(tok, err)) goto fail;
    return tok;
fail:
    llamac_tokenizer_free(tok);
    return NULL;
}
