/*
 * Telling tokenizer files apart by content (never by name: Llama 2's and Llama 3's are both called
 * tokenizer.model), and handing each to its loader: the one place that knows every kind.
 */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mapped_file.h"
#include "formats/gguf.h"
#include "tokenizer/hf_json.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

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

bool llc_tokenizer_detect_file(const char *path, enum llc_tok_format *f, llamac_error *err) {
    unsigned char head[64] = {0};
    size_t got = 0;
    *f = LLC_TOKFMT_UNKNOWN;
    if (!llc_read_head(path, head, sizeof head, &got, err)) return false;
    *f = llc_tokenizer_detect(head, got);
    return true;
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

/* The chat template of a tokenizer_config.json beside path replaces tok's (false only on a broken
 * config file or no memory). */
static bool template_beside(llamac_tokenizer *tok, const char *path, llamac_error *err) {
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
    enum llc_tok_format f;
    if (!llc_tokenizer_detect_file(path, &f, err)) return NULL;
    if (f == LLC_TOKFMT_GGUF) {
        llc_gguf_file *g = llc_gguf_open(path, err);
        if (!g) return NULL;
        llamac_tokenizer *tok = llc_tokenizer_from_gguf(g, err);
        llc_gguf_close(g);
        if (!tok) llc_error_prefix(err, "%s", path);
        return tok;
    }
    if (f == LLC_TOKFMT_HF_JSON) return llc_tokenizer_from_hf_json_file(path, err);
    if (f == LLC_TOKFMT_LLAMA2C) return llc_tokenizer_from_llama2c(path, 0, err);
    if (f == LLC_TOKFMT_TIKTOKEN || f == LLC_TOKFMT_SPM) {
        size_t size;
        char *data = llc_read_file(path, MAX_MODEL_FILE, &size, err);
        if (!data) return NULL;
        llamac_tokenizer *tok = f == LLC_TOKFMT_TIKTOKEN ? llc_tokenizer_from_tiktoken(data, size, path, err)
                                                         : llc_tokenizer_from_spm_model(data, size, path, err);
        free(data);
        if (tok && !template_beside(tok, path, err)) {
            llamac_tokenizer_free(tok);
            return NULL;
        }
        return tok;
    }
    llc_fail(err, "%s: " UNKNOWN_FORMAT, path);
    return NULL;
}
