/*
 * Loader for llama2.c's tokenizer.bin: int32 max_token_length, then per token: f32 score, int32 length,
 * the bytes. Spaces are raw (llama2.c's export undid SentencePiece's "▁"), BOS and EOS are spelled
 * "\n<s>\n" and "\n</s>\n". The file does not say how many tokens it holds: they are counted (every
 * length checked against what is left) before anything is allocated.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mapped_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

/* Largest tokenizer.bin read (Llama 2's is 0.5 MB, 128k-entry vocabularies a few MB). */
#define MAX_LLAMA2C_FILE ((size_t)256 << 20)

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
        else t->type = llc_tok_byte_piece_value(t) >= 0 ? LLC_TT_BYTE : LLC_TT_NORMAL;
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
