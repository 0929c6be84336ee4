/*
 * libFuzzer target for the tokenizer readers and the encoders. The first byte picks what the rest is:
 *
 *   0  any tokenizer file, told apart by content (llc_tokenizer_from_memory)
 *   1  a GGUF vocabulary (llc_gguf_open_memory + llc_tokenizer_from_gguf)
 *   2  a Hugging Face tokenizer.json
 *   3  a tiktoken file (Llama 3's tokenizer.model)
 *   4  a SentencePiece ModelProto (Llama 2's tokenizer.model)
 *   5+ text, encoded and decoded with fixed vocabularies: a small tiktoken one and a small SentencePiece
 *      one built here, and Llama 3's tokenizer.model and Llama 2's tokenizer.model when the shared data
 *      is found ($LLAMAC_SHARED, or ../shared beside the repository of build-fuzz/), with and without
 *      special tokens
 *
 * A vocabulary that loads is exercised (fuzz_common.h: every id, awkward texts, the streaming
 * detokenizer). On text, besides the sanitizers: ids must be in the vocabulary, byte-level BPE must give
 * back the input's exact bytes, and the detokenizer's output must be valid UTF-8.
 *
 *   FUZZ: speed=e2e dict=tokenizer,json,hf_json seeds=tokenizer
 *
 *   scripts/fuzz.sh tokenizer
 *   build-fuzz/fuzz_tokenizer fuzz/corpus/tokenizer -max_total_time=60
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "fuzz_common.h"
#include "llamac.h"
#include "tokenizer/tokenizer.h"

enum { N_FIXED = 4 };
static llamac_tokenizer *fixed[N_FIXED];
static bool fixed_byte_level[N_FIXED];
static int n_fixed;

static size_t b64(const uint8_t *t, size_t tn, char *o) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = 0;
    for (size_t k = 0; k < tn; k += 3) {
        uint32_t v = (uint32_t)t[k] << 16 | (k + 1 < tn ? (uint32_t)t[k + 1] << 8 : 0) | (k + 2 < tn ? t[k + 2] : 0);
        o[n++] = a[v >> 18];
        o[n++] = a[(v >> 12) & 63];
        o[n++] = k + 1 < tn ? a[(v >> 6) & 63] : '=';
        o[n++] = k + 2 < tn ? a[v & 63] : '=';
    }
    return n;
}

/* Every byte, then a few merges that interact (ties, long chains, a space prefix, UTF-8). */
static llamac_tokenizer *tiny_tiktoken(void) {
    static const char *const extra[] = {"ab", "cd", "abcd", "xx", "xxx", "xxxx", " t", " th", " the", "he", "the",
                                        "\xC3\xA9", "\xE6\x97\xA5", "\n\n", "  ", "    ", "12", "123", "'s", "in", "ing"};
    size_t n_extra = sizeof extra / sizeof extra[0];
    char *buf = malloc(64 * (256 + n_extra));
    size_t o = 0;
    for (size_t i = 0; i < 256 + n_extra; i++) {
        uint8_t byte = (uint8_t)i;
        const uint8_t *t = i < 256 ? &byte : (const uint8_t *)extra[i - 256];
        o += b64(t, i < 256 ? 1 : strlen(extra[i - 256]), buf + o);
        o += (size_t)sprintf(buf + o, " %zu\n", i);
    }
    llamac_error err = {{0}};
    llamac_tokenizer *tok = llc_tokenizer_from_tiktoken(buf, o, "tiny tiktoken", &err);
    free(buf);
    if (!tok) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.message);
        abort();
    }
    return tok;
}

/* A protobuf field. */
static size_t pb_varint(uint8_t *o, uint64_t v) {
    size_t n = 0;
    do {
        uint8_t c = v & 0x7F;
        v >>= 7;
        o[n++] = (uint8_t)(c | (v ? 0x80 : 0));
    } while (v);
    return n;
}
static size_t pb_bytes(uint8_t *o, unsigned field, const void *d, size_t len) {
    size_t n = pb_varint(o, (uint64_t)field << 3 | 2);
    n += pb_varint(o + n, len);
    memcpy(o + n, d, len);
    return n + len;
}

/* <unk> <s> </s>, byte pieces for every byte, and a few scored pieces. */
static llamac_tokenizer *tiny_spm(void) {
    static const char *const words[] = {"\xE2\x96\x81", "\xE2\x96\x81t", "h", "e", "\xE2\x96\x81th", "\xE2\x96\x81the",
                                        "a", "\xE2\x96\x81" "a", "\xE2\x96\x81\xE2\x96\x81", "n", "d", "\xE2\x96\x81" "and"};
    size_t n_words = sizeof words / sizeof words[0];
    uint8_t *m = malloc(64 * (259 + n_words) + 256);
    size_t o = 0;
    for (size_t i = 0; i < 3 + 256 + n_words; i++) {
        uint8_t p[64];
        char text[16];
        size_t pn;
        int type = 1;
        float score = 0;
        if (i < 3) {
            static const char *const sp[] = {"<unk>", "<s>", "</s>"};
            pn = pb_bytes(p, 1, sp[i], strlen(sp[i]));
            type = i == 0 ? 2 : 3;
        } else if (i < 259) {
            snprintf(text, sizeof text, "<0x%02X>", (unsigned)(i - 3));
            pn = pb_bytes(p, 1, text, 6);
            type = 6;
        } else {
            pn = pb_bytes(p, 1, words[i - 259], strlen(words[i - 259]));
            score = -(float)(i - 259);
        }
        p[pn++] = 2 << 3 | 5;
        memcpy(p + pn, &score, 4);
        pn += 4;
        if (type != 1) {
            p[pn++] = 3 << 3;
            p[pn++] = (uint8_t)type;
        }
        o += pb_bytes(m + o, 1, p, pn);
    }
    static const uint8_t trainer[] = {3 << 3, 2, 0x98, 0x02, 1}; /* model_type BPE; byte_fallback (key 35 << 3) */
    o += pb_bytes(m + o, 2, trainer, sizeof trainer);
    static const uint8_t norm[] = {0x0a, 8, 'i', 'd', 'e', 'n', 't', 'i', 't', 'y', 0x20, 0x00}; /* no collapsing */
    o += pb_bytes(m + o, 3, norm, sizeof norm);
    llamac_error err = {{0}};
    llamac_tokenizer *tok = llc_tokenizer_from_spm_model(m, o, "tiny spm", &err);
    free(m);
    if (!tok) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.message);
        abort();
    }
    return tok;
}

/* Loading Llama 3's and Llama 2's vocabularies takes seconds under ASan: done once, before libFuzzer
 * starts timing inputs. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fixed[n_fixed] = tiny_tiktoken();
    fixed_byte_level[n_fixed++] = true;
    fixed[n_fixed] = tiny_spm();
    fixed_byte_level[n_fixed++] = false;
    char exe_rel[4096];
    const char *dirs[FUZZ_N_SHARED];
    fuzz_shared_dirs(dirs, exe_rel);
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        if (!dirs[d]) continue;
        char p3[4096], p2[4096];
        snprintf(p3, sizeof p3, "%s/models/llama3-tokenizer/tokenizer.model", dirs[d]);
        snprintf(p2, sizeof p2, "%s/models/llama2-tokenizer/tokenizer.model", dirs[d]);
        llamac_error err = {{0}};
        llamac_tokenizer *l3 = llamac_tokenizer_load(p3, &err), *l2 = llamac_tokenizer_load(p2, &err);
        if (l3 && l2) {
            fixed[n_fixed] = l3;
            fixed_byte_level[n_fixed++] = true;
            fixed[n_fixed] = l2;
            fixed_byte_level[n_fixed++] = false;
            break;
        }
        llamac_tokenizer_free(l3);
        llamac_tokenizer_free(l2);
    }
    return 0;
}

static void fuzz_text(const llamac_tokenizer *tok, bool byte_level, const char *text, size_t len) {
    llamac_error err = {{0}};
    int n_vocab = llamac_tokenizer_n_vocab(tok);
    for (int mode = 0; mode < 2; mode++) {
        bool special = mode == 1;
        int n = llamac_tokenize(tok, text, len, false, special, NULL, 0, &err);
        if (n < 0) {
            check_message(&err);
            continue;
        }
        int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
        if (!ids) abort();
        if (llamac_tokenize(tok, text, len, false, special, ids, n, &err) != n) abort();
        size_t total = 0;
        for (int i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= n_vocab) abort();
            const char *b;
            total += llamac_token_bytes(tok, ids[i], &b);
        }
        /* Byte-level BPE keeps every byte (ill-formed UTF-8 included). */
        if (byte_level && !special) {
            if (total != len) abort();
            char *back = malloc(total + 1);
            size_t o = 0;
            for (int i = 0; i < n; i++) {
                const char *b;
                size_t k = llamac_token_bytes(tok, ids[i], &b);
                memcpy(back + o, b, k);
                o += k;
            }
            if (memcmp(back, text, len) != 0) abort();
            free(back);
        }
        /* What the streaming detokenizer prints is always valid UTF-8. */
        llamac_detokenizer d;
        llamac_detokenizer_init(&d, tok);
        size_t cap = llamac_detokenizer_max_bytes(tok);
        char *buf = malloc(cap);
        for (int i = 0; i < n; i++) {
            size_t k = llamac_detokenize(&d, ids[i], buf, cap);
            if (k >= cap || !fuzz_utf8_valid((const unsigned char *)buf, k)) abort();
        }
        size_t k = llamac_detokenizer_flush(&d, buf, cap);
        if (k >= cap || !fuzz_utf8_valid((const unsigned char *)buf, k)) abort();
        free(buf);
        free(ids);
    }
}

static void exercise_loaded(llamac_tokenizer *tok) {
    exercise_tokenizer(tok);
    const char *t = llamac_tokenizer_chat_template(tok);
    if (t) touch(t, strlen(t));
    int n_vocab = llamac_tokenizer_n_vocab(tok);
    int32_t id = llamac_tokenizer_token_id(tok, "<|eot_id|>");
    if (id < -1 || id >= n_vocab) abort();
    id = llamac_tokenizer_token_id(tok, "</s>");
    if (id < -1 || id >= n_vocab) abort();
    llc_tokenizer_add_eog(tok, n_vocab - 1);
    llc_tokenizer_add_eog(tok, n_vocab);
    if (llamac_tokenizer_is_eog(tok, n_vocab)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    uint8_t mode = data[0];
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    llamac_error err = {{0}};
    llamac_tokenizer *tok = NULL;
    switch (mode) {
    case 0: tok = llc_tokenizer_from_memory(d, n, "fuzz", &err); break;
    case 1: {
        llc_gguf_file *g = llc_gguf_open_memory(d, n, &err);
        if (g) tok = llc_tokenizer_from_gguf(g, &err);
        llc_gguf_close(g);
        break;
    }
    case 2: tok = llc_tokenizer_from_hf_json(d, n, "fuzz", &err); break;
    case 3: tok = llc_tokenizer_from_tiktoken(d, n, "fuzz", &err); break;
    case 4: tok = llc_tokenizer_from_spm_model(d, n, "fuzz", &err); break;
    default:
        for (int i = 0; i < n_fixed; i++) fuzz_text(fixed[i], fixed_byte_level[i], (const char *)d, n);
        return 0;
    }
    if (tok) {
        exercise_loaded(tok);
        llamac_tokenizer_free(tok);
    } else {
        check_message(&err);
    }
    return 0;
}
