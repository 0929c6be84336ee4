/*
 * Byte-level BPE (Llama 3): tokenizer.json loading, pre-tokenizer, merges, round trips, bad input.
 *
 * The exactness references are independent of this code: llama.cpp's test vectors
 * (shared/testdata/tokenizer/ggml-vocab-llama-bpe.gguf.inp/.out) here, and python3-regex plus a
 * tiktoken-algorithm encoder over tokenizer.model in tests/test_pretokenize.py, and npm tiktoken in
 * tests/test_tokenizer_tiktoken.py; both run this program in its dump modes (see main) to get our output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/error.h"
#include "base/mapped_file.h"
#include "tokenizer/bpe.h"
#include "tokenizer/hf_json.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_tables.h"

static char g_shared[4096];
static char g_json[4200];
static llc_bpe *g_bpe;          /* Llama 3, loaded once */
static llc_hf_vocab g_vocab;

static llc_bpe *bpe_from_vocab(const llc_hf_vocab *v, llamac_error *err) {
    llc_str *t = malloc((size_t)v->n_tokens * sizeof *t);
    llc_str *m = malloc((size_t)(v->n_merges ? v->n_merges : 1) * sizeof *m);
    if (!t || !m) abort();
    for (int i = 0; i < v->n_tokens; i++) t[i] = (llc_str){v->tokens[i], v->token_lens[i]};
    for (int i = 0; i < v->n_merges; i++) m[i] = (llc_str){v->merges[i], strlen(v->merges[i])};
    llc_bpe *b = llc_bpe_create(t, v->n_tokens, m, v->n_merges, err);
    free(t);
    free(m);
    return b;
}

static int setup_llama3(void **state) {
    (void)state;
    llamac_error err = {{0}};
    if (!llc_hf_vocab_load(g_json, &g_vocab, &err)) {
        fprintf(stderr, "load: %s\n", err.message);
        return -1;
    }
    g_bpe = bpe_from_vocab(&g_vocab, &err);
    if (!g_bpe) fprintf(stderr, "bpe: %s\n", err.message);
    return g_bpe ? 0 : -1;
}

static int teardown_llama3(void **state) {
    (void)state;
    llc_bpe_free(g_bpe);
    llc_hf_vocab_free(&g_vocab);
    return 0;
}

/* ---- tokenizer.json ----------------------------------------------------------------------------- */

static void test_hf_vocab_llama3(void **state) {
    (void)state;
    assert_int_equal(g_vocab.n_tokens, 128256);
    assert_int_equal(g_vocab.n_merges, 280147);
    assert_string_equal(g_vocab.tokens[0], "!");
    assert_string_equal(g_vocab.tokens[279], "Ġthe"); /* tokenizer.model: base64 IHRoZQ== rank 279 */
    assert_string_equal(g_vocab.merges[0], "Ġ Ġ");
    assert_string_equal(g_vocab.tokens[128000], "<|begin_of_text|>");
    assert_int_equal(g_vocab.token_type[279], 1);
    assert_int_equal(g_vocab.token_type[128000], 3);
    assert_int_equal(g_vocab.token_type[128255], 3);
    assert_int_equal(g_vocab.bos, 128000);
    assert_int_equal(g_vocab.eos, 128001); /* <|end_of_text|> */
    assert_non_null(g_vocab.chat_template);
    assert_non_null(strstr(g_vocab.chat_template, "<|start_header_id|>"));
}

static char g_tmpdir[4096];

static const char *write_tmp(const char *name, const char *content) {
    static char path[4200];
    snprintf(path, sizeof path, "%s/%s", g_tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    return path;
}

#define PRE_OK                                                                                          \
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":" \
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "                      \
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":"          \
    "\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":"     \
    "true,\"use_regex\":false}]}"

/* A tiny but complete byte-level vocabulary: the 256 byte tokens (ids 0..255 in byte order), then
 * "ab" (256), "abc" (257) and the special "<|x|>" (258). */
static char *tiny_json(const char *merges_json, int added_id) {
    static const char *hex = "0123456789abcdef";
    size_t cap = 65536;
    char *s = malloc(cap);
    size_t n = (size_t)snprintf(s, cap, "{\"normalizer\":null,%s,\"model\":{\"type\":\"BPE\",\"vocab\":{", PRE_OK);
    int k = 0;
    for (int c = 0; c < 256; c++) {
        int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
        unsigned cp = printable ? (unsigned)c : 256u + (unsigned)k++;
        char ch[8];
        if (cp == '"' || cp == '\\') snprintf(ch, sizeof ch, "\\%c", (char)cp);
        else if (cp < 0x80) snprintf(ch, sizeof ch, "%c", (char)cp);
        else snprintf(ch, sizeof ch, "\\u%c%c%c%c", hex[(cp >> 12) & 15], hex[(cp >> 8) & 15], hex[(cp >> 4) & 15], hex[cp & 15]);
        n += (size_t)snprintf(s + n, cap - n, "\"%s\":%d,", ch, c);
    }
    n += (size_t)snprintf(s + n, cap - n, "\"ab\":256,\"abc\":257},\"merges\":%s},"
                          "\"added_tokens\":[{\"id\":%d,\"content\":\"<|x|>\",\"special\":true}]}", merges_json, added_id);
    return s;
}

static void expect_load_error(const char *json, const char *needle) {
    const char *path = write_tmp("tokenizer.json", json);
    llc_hf_vocab v;
    llamac_error err = {{0}};
    assert_false(llc_hf_vocab_load(path, &v, &err));
    if (!strstr(err.message, needle)) fail_msg("message \"%s\" lacks \"%s\"", err.message, needle);
    assert_null(v.tokens);
}

static void test_hf_vocab_tiny_and_errors(void **state) {
    (void)state;
    /* Both merge spellings; no tokenizer_config.json beside it. */
    char *j = tiny_json("[[\"a\",\"b\"],\"ab c\"]", 258);
    const char *path = write_tmp("tokenizer.json", j);
    free(j);
    llc_hf_vocab v;
    llamac_error err = {{0}};
    assert_true(llc_hf_vocab_load(path, &v, &err));
    assert_int_equal(v.n_tokens, 259);
    assert_int_equal(v.n_merges, 2);
    assert_string_equal(v.merges[0], "a b");
    assert_string_equal(v.merges[1], "ab c");
    assert_string_equal(v.tokens[32], "Ġ"); /* byte 0x20 */
    assert_int_equal(v.token_type[258], 3);
    assert_int_equal(v.bos, -1);
    assert_null(v.chat_template);
    llc_bpe *b = bpe_from_vocab(&v, &err);
    assert_non_null(b);
    int32_t ids[16];
    assert_int_equal(llc_bpe_encode(b, "abc", 3, ids, 16), 1);
    assert_int_equal(ids[0], 257);
    assert_int_equal(llc_bpe_encode(b, "abd", 3, ids, 16), 2);
    assert_int_equal(ids[0], 256);
    assert_int_equal(ids[1], 'd');
    /* The special token's text is plain text to the BPE. */
    assert_int_equal(llc_bpe_encode(b, "<|x|>", 5, ids, 16), 5);
    const char *bytes;
    assert_int_equal(llc_bpe_token_bytes(b, 258, &bytes), 5);
    assert_memory_equal(bytes, "<|x|>", 5);
    llc_bpe_free(b);
    llc_hf_vocab_free(&v);

    /* A config with an object bos_token and a list of chat templates. */
    write_tmp("tokenizer_config.json",
              "{\"bos_token\":{\"content\":\"<|x|>\"},\"eos_token\":\"abc\",\"chat_template\":"
              "[{\"name\":\"tool_use\",\"template\":\"T\"},{\"name\":\"default\",\"template\":\"D\"}]}");
    j = tiny_json("[\"a b\",\"ab c\"]", 258);
    path = write_tmp("tokenizer.json", j);
    free(j);
    assert_true(llc_hf_vocab_load(path, &v, &err));
    assert_int_equal(v.bos, 258);
    assert_int_equal(v.eos, 257);
    assert_string_equal(v.chat_template, "D");
    llc_hf_vocab_free(&v);
    expect_load_error("[1,2]", "not a JSON object");
    write_tmp("tokenizer_config.json", "{\"bos_token\": ");
    j = tiny_json("[]", 258);
    expect_load_error(j, "tokenizer_config.json: not valid JSON");
    free(j);
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", g_tmpdir);
    unlink(cfg);

    expect_load_error("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "unsupported tokenizer.json:");
    expect_load_error("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "WordPiece");
    expect_load_error("{\"model\":{\"type\":\"BPE\"},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
                      "unsupported tokenizer.json:");
    expect_load_error("{\"model\":{\"type\":\"BPE\"},\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":"
                      "[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"behavior\":\"Isolated\"},"
                      "{\"type\":\"ByteLevel\"}]}}",
                      "regex is not the Llama 3 one");
    expect_load_error("{\"normalizer\":{\"type\":\"NFC\"},\"model\":{\"type\":\"BPE\"}}", "normalizer");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{}},", "not valid JSON");
    expect_load_error("{" PRE_OK ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", "not a valid id");
    expect_load_error("{" PRE_OK ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5},\"merges\":[]}}", "not a valid id");
    expect_load_error("{" PRE_OK ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}", "id 0");
    expect_load_error("{" PRE_OK ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"a\":1},\"merges\":[]}}", "duplicate key \"a\"");
    expect_load_error("{" PRE_OK ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":2000000000},\"merges\":[]}}",
                      "far beyond");
    expect_load_error("{" PRE_OK ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[7]}}", "merges[0]");
    expect_load_error("{" PRE_OK ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"added_tokens\":[{\"id\":0,\"content\":\"b\"}]}", "conflicts");
    expect_load_error("{" PRE_OK ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"added_tokens\":[{\"content\":\"b\"}]}", "added_tokens");
    expect_load_error("{" PRE_OK ",\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{}}}", "byte_fallback");
    llamac_error e2 = {{0}};
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/nope/tokenizer.json", g_tmpdir);
    assert_false(llc_hf_vocab_load(missing, &v, &e2));
    assert_non_null(strstr(e2.message, "nope/tokenizer.json"));

    /* Gaps in the ids are filled with unused pads; merges naming unknown tokens fail in llc_bpe_create. */
    j = tiny_json("[\"a zz\"]", 260);
    path = write_tmp("tokenizer.json", j);
    free(j);
    assert_true(llc_hf_vocab_load(path, &v, &err));
    assert_int_equal(v.n_tokens, 261);
    assert_string_equal(v.tokens[258], "[PAD258]");
    assert_int_equal(v.token_type[258], 5);
    assert_null(bpe_from_vocab(&v, &err));
    assert_non_null(strstr(err.message, "merge 0"));
    assert_non_null(strstr(err.message, "right token"));
    llc_hf_vocab_free(&v);
}

/* Byte c's token in GPT-2 byte-to-unicode form, written to out; returns its length. */
static size_t byte_token(int c, char *out) {
    static int16_t cp_of[256];
    if (!cp_of['!']) {
        int k = 0;
        for (int b = 0; b < 256; b++) {
            int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            cp_of[b] = (int16_t)(printable ? b : 256 + k++);
        }
    }
    unsigned cp = (unsigned)cp_of[c];
    if (cp < 0x80) return out[0] = (char)cp, 1;
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* ---- llc_bpe_create on bad input ---------------------------------------------------------------- */

static void test_bpe_create_errors(void **state) {
    (void)state;
    llamac_error err = {{0}};
    llc_str toks[300], merges[4];
    char store[300][4];
    /* Byte tokens in GPT-2 form, ids = byte values. */
    for (int c = 0; c < 256; c++) toks[c] = (llc_str){store[c], byte_token(c, store[c])};
    toks[256] = (llc_str){"ab", 2};
    toks[257] = (llc_str){"\xe2\x96\x81x", 4}; /* not byte-level form: decodes to its own text */
    toks[258] = (llc_str){"ab", 2};             /* duplicate of 256 */
    merges[0] = (llc_str){"a b", 3};
    llc_bpe *b = llc_bpe_create(toks, 259, merges, 1, &err);
    assert_non_null(b);
    const char *bytes;
    assert_int_equal(llc_bpe_token_bytes(b, 257, &bytes), 4);
    assert_memory_equal(bytes, "\xe2\x96\x81x", 4);
    assert_int_equal(llc_bpe_token_bytes(b, 32, &bytes), 1);
    assert_int_equal(bytes[0], ' ');
    assert_int_equal(llc_bpe_token_bytes(b, 259, &bytes), 0);
    assert_int_equal(llc_bpe_token_bytes(b, -1, &bytes), 0);
    int32_t ids[4];
    assert_int_equal(llc_bpe_encode(b, "ab", 2, ids, 4), 1);
    assert_int_equal(ids[0], 256); /* the lower of the duplicates */
    /* Invalid arguments. */
    assert_int_equal(llc_bpe_encode(NULL, "ab", 2, ids, 4), -1);
    assert_int_equal(llc_bpe_encode(b, NULL, 2, ids, 4), -1);
    assert_int_equal(llc_bpe_encode(b, "ab", 2, NULL, 4), -1);
    assert_int_equal(llc_bpe_encode(b, "ab", 2, ids, -1), -1);
    assert_int_equal(llc_bpe_encode(b, NULL, 0, NULL, 0), 0);
    assert_int_equal(llc_bpe_encode(b, "ab ab", 5, NULL, 0), 3); /* "ab", " ", "ab" */
    ids[1] = 77;
    assert_int_equal(llc_bpe_encode(b, "ab ab", 5, ids, 1), 3); /* count all, write cap */
    assert_int_equal(ids[0], 256);
    assert_int_equal(ids[1], 77);
    llc_bpe_free(b);
    llc_bpe_free(NULL);

    const struct {
        llc_str m;
        const char *needle;
    } bad[] = {
        {{"ab", 2}, "not two tokens"},
        {{"a ", 2}, "not two tokens"},
        {{"", 0}, "not two tokens"},
        {{"a q", 3}, "merged token"},
        {{"zz b", 4}, "left token"},
        {{"a \xe2\x96\x81x", 6}, "right token"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.message[0] = 0;
        merges[0] = (llc_str){"a b", 3};
        merges[1] = bad[i].m;
        assert_null(llc_bpe_create(toks, 258, merges, 2, &err));
        if (!strstr(err.message, bad[i].needle) || !strstr(err.message, "merge 1"))
            fail_msg("case %zu: \"%s\"", i, err.message);
    }
    /* A missing byte token. */
    llc_str t0 = toks[65];
    toks[65] = (llc_str){"zz", 2};
    assert_null(llc_bpe_create(toks, 258, merges, 1, &err));
    assert_non_null(strstr(err.message, "0x41"));
    toks[65] = t0;
    assert_null(llc_bpe_create(toks, 0, merges, 1, &err));
    assert_null(llc_bpe_create(toks, 258, merges, -1, &err));
    assert_null(llc_bpe_create(toks, 258, NULL, 1, &err));
    assert_null(llc_bpe_create(NULL, 258, merges, 1, NULL)); /* err may be NULL */
}

/* ---- llama.cpp's vectors ------------------------------------------------------------------------- */

static void test_llama_cpp_vectors(void **state) {
    (void)state;
    char p_inp[4300], p_out[4300];
    snprintf(p_inp, sizeof p_inp, "%s/testdata/tokenizer/ggml-vocab-llama-bpe.gguf.inp", g_shared);
    snprintf(p_out, sizeof p_out, "%s/testdata/tokenizer/ggml-vocab-llama-bpe.gguf.out", g_shared);
    size_t ni, no;
    llamac_error err = {{0}};
    char *inp = llc_read_file(p_inp, 1 << 20, &ni, &err), *outs = llc_read_file(p_out, 1 << 20, &no, &err);
    assert_non_null(inp);
    assert_non_null(outs);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *s = inp, *o = outs;
    int n_cases = 0;
    for (;;) {
        char *end = strstr(s, sep);
        if (!end) break;
        char *eol = strchr(o, '\n');
        assert_non_null(eol);
        *eol = 0;
        int32_t want[512] = {0}, got[512];
        int nw = 0;
        for (char *q = o; *q && nw < 512;) {
            char *e;
            long v = strtol(q, &e, 10);
            if (e == q) break;
            want[nw++] = (int32_t)v;
            q = e;
        }
        int ng = llc_bpe_encode(g_bpe, s, (size_t)(end - s), got, 512);
        if (ng != nw || memcmp(got, want, (size_t)nw * sizeof *got) != 0) {
            fprintf(stderr, "case %d \"%.*s\": want", n_cases, (int)(end - s), s);
            for (int i = 0; i < nw; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n  got");
            for (int i = 0; i < ng && i < 512; i++) fprintf(stderr, " %d", got[i]);
            fprintf(stderr, "\n");
            fail();
        }
        n_cases++;
        s = end + strlen(sep);
        o = eol + 1;
    }
    assert_int_equal(n_cases, 46);
    free(inp);
    free(outs);
}

/* ---- round trips --------------------------------------------------------------------------------- */

static uint64_t g_rng = 0x1234567887654321ull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}

static size_t put_utf8(char *p, uint32_t cp) {
    if (cp < 0x80) return p[0] = (char)cp, 1;
    if (cp < 0x800) return p[0] = (char)(0xC0 | cp >> 6), p[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000)
        return p[0] = (char)(0xE0 | cp >> 12), p[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), p[2] = (char)(0x80 | (cp & 0x3F)), 3;
    p[0] = (char)(0xF0 | cp >> 18), p[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    p[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), p[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Text that exercises every path: random bytes, ASCII soup, mixed scripts, long runs (the heap merge). */
static size_t random_text(char *buf, size_t cap) {
    static const uint32_t pool[] = {' ', ' ', '\n', '\r', '\t', '\'', 's', 'e', 'a', '0', '7', '!', '.', 0xA0, 0x3000,
                                    0x2019, 0x17F, 0xE9, 0x301, 0x4E2D, 0x1F600, 0x200D, 0x0660, 0x10FFFF, 0xFFFD};
    size_t n = 0;
    while (n + 8 < cap) {
        uint32_t r = rnd() % 100;
        if (r < 10) {
            buf[n++] = (char)rnd(); /* any byte, ill-formed UTF-8 included */
        } else if (r < 60) {
            buf[n++] = (char)(32 + rnd() % 95);
        } else if (r < 90) {
            n += put_utf8(buf + n, pool[rnd() % (sizeof pool / sizeof pool[0])]);
        } else if (r < 92) {
            size_t run = rnd() % 600, c = rnd() % 3;
            for (size_t i = 0; i < run && n + 8 < cap; i++)
                buf[n++] = c == 0 ? (char)('a' + rnd() % 26) : c == 1 ? (char)"!@#$%"[rnd() % 5] : ' ';
        } else {
            uint32_t cp = rnd() % 0x110000;
            if (cp >= 0xD800 && cp < 0xE000) cp = 0x41;
            n += put_utf8(buf + n, cp);
        }
    }
    return n;
}

static void test_round_trip(void **state) {
    (void)state;
    size_t cap = 1 << 16;
    char *text = malloc(cap), *back = malloc(cap);
    int32_t *ids = malloc(cap * sizeof *ids);
    for (int iter = 0; iter < 200; iter++) {
        size_t n = random_text(text, 16 + rnd() % (cap - 16));
        int ni = llc_bpe_encode(g_bpe, text, n, ids, (int)cap);
        assert_true(ni > 0 && (size_t)ni <= n);
        size_t m = 0;
        for (int i = 0; i < ni; i++) {
            const char *bytes;
            assert_true(ids[i] >= 0 && ids[i] < 128000); /* never a special token */
            size_t bn = llc_bpe_token_bytes(g_bpe, ids[i], &bytes);
            assert_true(bn > 0 && m + bn <= n);
            memcpy(back + m, bytes, bn);
            m += bn;
        }
        assert_int_equal(m, n);
        assert_memory_equal(back, text, n);
    }
    free(text);
    free(back);
    free(ids);
}

/* ---- pre-tokenizer and tables: hand-checked cases (python3-regex covers the rest) ------------------ */

static void expect_split(const char *text, const char *const *parts) {
    size_t len = strlen(text), pos = 0;
    for (int i = 0; parts[i]; i++) {
        assert_true(pos < len);
        size_t end = llc_pretok_next((const uint8_t *)text, len, pos);
        if (end - pos != strlen(parts[i]) || memcmp(text + pos, parts[i], end - pos) != 0)
            fail_msg("\"%s\": part %d is \"%.*s\", want \"%s\"", text, i, (int)(end - pos), text + pos, parts[i]);
        pos = end;
    }
    assert_int_equal(pos, len);
}

static void test_pretokenize_cases(void **state) {
    (void)state;
    expect_split("Hello world", (const char *[]){"Hello", " world", NULL});
    expect_split("  Hello", (const char *[]){" ", " Hello", NULL});
    expect_split("I'M he's 'Re", (const char *[]){"I", "'M", " he", "'s", " '", "Re", NULL});
    expect_split("x'\xc5\xbfy", (const char *[]){"x", "'\xc5\xbf", "y", NULL}); /* U+017F folds to s */
    expect_split("don\xe2\x80\x99t", (const char *[]){"don", "\xe2\x80\x99t", NULL});
    expect_split("12345 6", (const char *[]){"123", "45", " ", "6", NULL});
    expect_split("a  \n\n  b", (const char *[]){"a", "  \n\n", " ", " b", NULL});
    expect_split("x \t  ", (const char *[]){"x", " \t  ", NULL});
    expect_split("x  !!\r\n\r\ny", (const char *[]){"x", " ", " !!\r\n\r\n", "y", NULL});
    expect_split("\t\tx", (const char *[]){"\t", "\tx", NULL});
    expect_split("\xc2\xa0x \xe3\x80\x80y", (const char *[]){"\xc2\xa0x", " ", "\xe3\x80\x80y", NULL});
    expect_split("\x80\x80z\xff", (const char *[]){"\x80\x80", "z", "\xff", NULL});
    expect_split("\x80z", (const char *[]){"\x80z", NULL});
    expect_split("\xe2\x82 \xf0\x9f\x98", (const char *[]){"\xe2\x82", " \xf0\x9f\x98", NULL});

    assert_int_equal(llc_uc_class(0xA0), LLC_UC_SPACE);
    assert_int_equal(llc_uc_class(0x1C), LLC_UC_OTHER); /* str.isspace() says yes, White_Space no */
    assert_int_equal(llc_uc_class(0x85), LLC_UC_SPACE);
    assert_int_equal(llc_uc_class(0x0660), LLC_UC_NUMBER);
    assert_int_equal(llc_uc_class(0x00BD), LLC_UC_NUMBER);
    assert_int_equal(llc_uc_class(0x4E2D), LLC_UC_LETTER);
    assert_int_equal(llc_uc_class(0x0301), LLC_UC_OTHER);
    assert_int_equal(llc_uc_class(0x110000), LLC_UC_OTHER);
    size_t n;
    assert_int_equal(llc_pretok_char((const uint8_t *)"\xed\xa0\x80", 3, 0, &n), LLC_UC_OTHER);
    assert_int_equal(n, 1); /* a surrogate: ED then two stray bytes */
    assert_int_equal(llc_pretok_char((const uint8_t *)"\xf0\x9f\x98", 3, 0, &n), LLC_UC_OTHER);
    assert_int_equal(n, 3);
}

/* ---- malformed input: no crash (ASan/UBSan builds check the "no crash" part) ------------------------ */

static void test_fuzz_inputs(void **state) {
    (void)state;
    char *j = tiny_json("[\"a b\",[\"ab\",\"c\"]]", 258);
    size_t n = strlen(j);
    char *m = malloc(n + 1);
    int loaded = 0;
    for (int it = 0; it < 400; it++) {
        memcpy(m, j, n + 1);
        for (uint32_t q = 0, k = 1 + rnd() % 4; q < k; q++) m[rnd() % n] = "{}[]\",:0129abc \\-u"[rnd() % 18];
        const char *path = write_tmp("tokenizer.json", m);
        llc_hf_vocab v;
        llamac_error err = {{0}};
        if (llc_hf_vocab_load(path, &v, &err)) {
            loaded++;
            llc_bpe *b = bpe_from_vocab(&v, &err);
            if (b) {
                int32_t ids[64];
                assert_true(llc_bpe_encode(b, "abc abd\xff", 8, ids, 64) > 0);
                llc_bpe_free(b);
            } else {
                assert_true(err.message[0] != 0);
            }
            llc_hf_vocab_free(&v);
        } else {
            assert_true(err.message[0] != 0);
            assert_null(v.tokens);
        }
    }
    assert_true(loaded > 0);
    free(m);
    free(j);

    /* Random vocabularies and merges straight into llc_bpe_create: the 256 byte tokens, then tokens
     * joined from two earlier ones (their merge listed, usually well-formed), sometimes junk. When
     * the tables build, any bytes must still round-trip. */
    enum { NT = 700, NM = 600 };
    static char tstore[NT][64], mstore[NM][130];
    static llc_str toks[NT], merges[NM];
    int built = 0;
    for (int it = 0; it < 200; it++) {
        int nt = 256, nm = 0;
        for (int c = 0; c < 256; c++) toks[c] = (llc_str){tstore[c], byte_token(c, tstore[c])};
        int want = 257 + (int)(rnd() % (NT - 257));
        while (nt < want && nm < NM) {
            const llc_str x = toks[rnd() % (uint32_t)nt], y = toks[rnd() % (uint32_t)nt];
            if (x.len + y.len > 60) continue;
            char *t = tstore[nt], *mm = mstore[nm];
            memcpy(t, x.ptr, x.len);
            memcpy(t + x.len, y.ptr, y.len);
            size_t tl = x.len + y.len;
            memcpy(mm, x.ptr, x.len);
            mm[x.len] = ' ';
            memcpy(mm + x.len + 1, y.ptr, y.len);
            toks[nt++] = (llc_str){t, tl};
            merges[nm++] = (llc_str){mm, x.len + 1 + y.len};
        }
        int bad = rnd() % 3 == 0; /* spoil one token or merge */
        if (bad) {
            int i = 256 + (int)(rnd() % (uint32_t)(nt - 256));
            char *t = (char *)(rnd() % 2 ? toks[i].ptr : merges[i - 256].ptr);
            t[rnd() % toks[i].len] = (char)rnd();
        }
        llamac_error err = {{0}};
        llc_bpe *b = llc_bpe_create(toks, nt, merges, nm, &err);
        if (!bad) assert_non_null(b);
        if (!b) {
            assert_true(err.message[0] != 0);
            continue;
        }
        built++;
        char text[2048], back[2048];
        int32_t ids[2048];
        size_t tn = random_text(text, 16 + rnd() % 2000);
        int ni = llc_bpe_encode(b, text, tn, ids, 2048);
        assert_true(ni > 0 && (size_t)ni <= tn);
        size_t bn = 0;
        for (int i = 0; i < ni; i++) {
            const char *bytes;
            size_t l = llc_bpe_token_bytes(b, ids[i], &bytes);
            assert_true(l > 0 && bn + l <= tn);
            memcpy(back + bn, bytes, l);
            bn += l;
        }
        assert_int_equal(bn, tn);
        assert_memory_equal(back, text, tn);
        llc_bpe_free(b);
    }
    assert_true(built > 20);
}

/* ---- dump modes for tests/test_pretokenize.py ------------------------------------------------------ */

/* Records: u32 little-endian length, then the bytes. */
static int for_each_record(const char *path, int (*fn)(const uint8_t *, size_t, void *), void *ctx) {
    llamac_error err = {{0}};
    size_t n;
    char *buf = llc_read_file(path, (size_t)1 << 30, &n, &err);
    if (!buf) return fprintf(stderr, "%s\n", err.message), 1;
    size_t p = 0;
    while (p + 4 <= n) {
        const uint8_t *h = (const uint8_t *)buf + p;
        size_t len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
        if (len > n - p - 4) break;
        if (fn(h + 4, len, ctx)) break;
        p += 4 + len;
    }
    free(buf);
    return p == n ? 0 : 1;
}

static int dump_splits(const uint8_t *s, size_t len, void *ctx) {
    (void)ctx;
    for (size_t pos = 0; pos < len;) {
        pos = llc_pretok_next(s, len, pos);
        printf(" %zu", pos);
    }
    printf("\n");
    return 0;
}

static int dump_ids(const uint8_t *s, size_t len, void *ctx) {
    int n = llc_bpe_encode(ctx, (const char *)s, len, NULL, 0);
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (n < 0 || !ids || llc_bpe_encode(ctx, (const char *)s, len, ids, n) != n) return 1;
    for (int i = 0; i < n; i++) printf(" %d", ids[i]);
    printf("\n");
    free(ids);
    return 0;
}

typedef struct tok_ctx {
    const llamac_tokenizer *tok;
    bool special;
} tok_ctx;

/* Through the public API, with any tokenizer file. */
static int dump_tokenize(const uint8_t *s, size_t len, void *ctx) {
    const tok_ctx *c = ctx;
    llamac_error err = {{0}};
    int n = llamac_tokenize(c->tok, (const char *)s, len, false, c->special, NULL, 0, &err);
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (n < 0 || !ids || llamac_tokenize(c->tok, (const char *)s, len, false, c->special, ids, n, &err) != n) {
        fprintf(stderr, "tokenize: %s\n", err.message);
        free(ids);
        return 1;
    }
    for (int i = 0; i < n; i++) printf(" %d", ids[i]);
    printf("\n");
    free(ids);
    return 0;
}

/* The UTF-8 validator against the cases RFC 3629 and Unicode's table 3-7 single out. */
static void test_utf8_valid(void **state) {
    (void)state;
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"", true}, {"abc", true}, {"\xC3\xA9", true}, {"\xE2\x82\xAC", true}, {"\xF0\x9F\xA6\x99", true},
        {"\xF4\x8F\xBF\xBF", true},  /* U+10FFFF */
        {"\xC0\xAF", false},             /* overlong '/' */
        {"\xC1\xBF", false},             /* overlong */
        {"\xE0\x80\xAF", false},         /* overlong */
        {"\xED\xA0\x80", false},         /* surrogate D800 */
        {"\xF0\x80\x80\xAF", false},     /* overlong */
        {"\xF4\x90\x80\x80", false},     /* past U+10FFFF */
        {"\xF5\x80\x80\x80", false},     /* no such lead */
        {"\xE2\x82", false},             /* truncated */
        {"\x80", false},                 /* lone continuation */
        {"a\xC3", false},                /* truncated at the end */
        {"\xC3\x28", false},             /* bad continuation */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (llc_utf8_valid((const unsigned char *)cases[i].s, strlen(cases[i].s)) != cases[i].ok)
            fail_msg("case %zu: expected %s", i, cases[i].ok ? "valid" : "invalid");
}

int main(int argc, char **argv) {
    const char *sh = getenv("LLAMAC_SHARED");
    snprintf(g_shared, sizeof g_shared, "%s", sh ? sh : "../shared");
    snprintf(g_json, sizeof g_json, "%s/models/llama3-tokenizer/tokenizer.json", g_shared);

    if (argc == 3 && strcmp(argv[1], "--pretok") == 0) return for_each_record(argv[2], dump_splits, NULL);
    if (argc == 2 && strcmp(argv[1], "--classes") == 0) {
        for (uint32_t cp = 0; cp < 0x110000; cp++) putchar('0' + llc_uc_class(cp));
        return 0;
    }
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "--tokenize") == 0) {
        llamac_error err = {{0}};
        llamac_tokenizer *tok = llamac_tokenizer_load(argv[2], &err);
        if (!tok) return fprintf(stderr, "%s\n", err.message), 1;
        tok_ctx c = {tok, argc == 5 && strcmp(argv[4], "--special") == 0};
        int rc = for_each_record(argv[3], dump_tokenize, &c);
        llamac_tokenizer_free(tok);
        return rc;
    }
    if (argc == 4 && strcmp(argv[1], "--encode") == 0) {
        snprintf(g_json, sizeof g_json, "%s", argv[2]);
        if (setup_llama3(NULL) != 0) return 1;
        int rc = for_each_record(argv[3], dump_ids, g_bpe);
        teardown_llama3(NULL);
        return rc;
    }

    const char *tmp = getenv("LLAMAC_TMP");
    snprintf(g_tmpdir, sizeof g_tmpdir, "%s/bpe_test_XXXXXX", tmp ? tmp : "/tmp");
    if (tmp) {
        char cmd[4300];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmp);
        if (system(cmd) != 0) return 1;
    }
    if (!mkdtemp(g_tmpdir)) return perror("mkdtemp"), 1;

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hf_vocab_llama3),
        cmocka_unit_test(test_llama_cpp_vectors),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_pretokenize_cases),
        cmocka_unit_test(test_hf_vocab_tiny_and_errors),
        cmocka_unit_test(test_bpe_create_errors),
        cmocka_unit_test(test_fuzz_inputs),
        cmocka_unit_test(test_utf8_valid),
    };
    int rc = cmocka_run_group_tests_name("bpe", tests, setup_llama3, teardown_llama3);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    if (system(cmd) != 0) rc = rc ? rc : 1;
    return rc;
}
