/*
 * Tokenizer files told apart by content, and the two readers that came with that: tiktoken ranks
 * (Meta's Llama 3 tokenizer.model) and SentencePiece ModelProto (Llama 2's tokenizer.model). Also the
 * chat template, token lookup by text and end-of-generation plumbing, and hostile files.
 *
 * References, never llamac itself: the shared tokenizer.json (Hugging Face's conversion of the same
 * Llama 3 ranks: its vocabulary, added tokens and its 280,147 merges), llama.cpp's converted Llama 2
 * vocabulary (ggml-vocab-llama-spm.gguf) and its test vectors, llama2.c's tok512.bin (the same
 * vocabulary as tok512.model). Exactness of encoding against tiktoken and SentencePiece themselves is
 * in tests/test_tokenizer_tiktoken.py and test_tokenizer_spm.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/mapped_file.h"
#include "formats/gguf.h"
#include "llamac.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

#include "test_util.h"

static llamac_tokenizer *load(const char *path) {
    llamac_error err = {{0}};
    llamac_tokenizer *tok = llamac_tokenizer_load(path, &err);
    if (!tok) fail_msg("%s", err.message);
    return tok;
}

static llamac_tokenizer *load_shared(const char *rel) {
    char path[4096];
    pathf(path, sizeof path, "%s/%s", shared_dir, rel);
    return load(path);
}

static int tokenize_all(const llamac_tokenizer *tok, const char *text, size_t len, bool bos, bool special, int32_t **ids) {
    llamac_error err = {{0}};
    int n = llamac_tokenize(tok, text, len, bos, special, NULL, 0, &err);
    if (n < 0) fail_msg("tokenize: %s", err.message);
    *ids = malloc(((size_t)n + 1) * sizeof **ids);
    assert_int_equal(llamac_tokenize(tok, text, len, bos, special, *ids, n, &err), n);
    return n;
}

static void assert_same_ids_bos(const llamac_tokenizer *a, const llamac_tokenizer *b, const char *text, size_t len,
                                bool special, bool bos) {
    int32_t *x, *y;
    int nx = tokenize_all(a, text, len, bos, special, &x), ny = tokenize_all(b, text, len, bos, special, &y);
    if (nx != ny || memcmp(x, y, (size_t)nx * sizeof *x)) {
        int k = 0;
        while (k < nx && k < ny && x[k] == y[k]) k++;
        fail_msg("ids differ on \"%.60s\" (%d vs %d ids, first difference at %d: %d vs %d)", text, nx, ny, k,
                 k < nx ? x[k] : -1, k < ny ? y[k] : -1);
    }
    free(x);
    free(y);
}

static void assert_same_ids(const llamac_tokenizer *a, const llamac_tokenizer *b, const char *text, size_t len,
                            bool special) {
    assert_same_ids_bos(a, b, text, len, special, true);
}

/* A load that must fail with one line naming the file and saying why. */
static void expect_error(const char *path, const char *must_contain) {
    llamac_error err = {{0}};
    llamac_tokenizer *tok = llamac_tokenizer_load(path, &err);
    if (tok) fail_msg("%s loaded but should not have (wanted \"%s\")", path, must_contain);
    if (!strstr(err.message, path)) fail_msg("error \"%s\" does not name the file", err.message);
    if (must_contain && !strstr(err.message, must_contain)) fail_msg("error \"%s\" lacks \"%s\"", err.message, must_contain);
    assert_null(strchr(err.message, '\n'));
}

static void expect_error_bytes(const char *name, const void *data, size_t n, const char *must_contain) {
    char path[4096];
    pathf(path, sizeof path, "%s/%s", tmp_dir, name);
    spit(path, data, n);
    expect_error(path, must_contain);
}

/* ---- telling files apart ------------------------------------------------------------------------- */

static void test_detect_by_content(void **state) {
    (void)state;
    static const struct {
        const char *rel;
        enum llc_tok_format f;
    } files[] = {
        {"models/llama3-tokenizer/tokenizer.model", LLC_TOKFMT_TIKTOKEN},
        {"models/llama2-tokenizer/tokenizer.model", LLC_TOKFMT_SPM},
        {"models/stories260K/tok512.model", LLC_TOKFMT_SPM},
        {"models/stories260K/tok512.bin", LLC_TOKFMT_LLAMA2C},
        {"models/llama3-tokenizer/tokenizer.json", LLC_TOKFMT_HF_JSON},
        {"models/stories260K/stories260K.gguf", LLC_TOKFMT_GGUF},
        {"testdata/tokenizer/ggml-vocab-llama-spm.gguf", LLC_TOKFMT_GGUF},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[4096], copy[4096];
        pathf(path, sizeof path, "%s/%s", shared_dir, files[i].rel);
        unsigned char head[64];
        size_t got = 0;
        assert_true(llc_read_head(path, head, sizeof head, &got, NULL));
        if (llc_tokenizer_detect(head, got) != files[i].f)
            fail_msg("%s detected as %s", files[i].rel, llc_tokenizer_format_name(llc_tokenizer_detect(head, got)));
        /* The name means nothing: the same bytes under a misleading name load the same way. */
        size_t size;
        char *data = slurp(path, &size);
        pathf(copy, sizeof copy, "%s/misleading_%zu.json", tmp_dir, i);
        spit(copy, data, size);
        llamac_tokenizer *a = load(path), *b = load(copy);
        assert_int_equal(a->n_vocab, b->n_vocab);
        assert_int_equal(a->kind, b->kind);
        const char *text = "Hello, world! It's 2024: \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\xA6\x99  x";
        assert_same_ids_bos(a, b, text, strlen(text), false, false); /* BOS: tokenizer_config.json is not beside */
        /* From memory: the same as from the file, less what tokenizer_config.json beside it says (the
         * chat template; BOS for tokenizer.json). */
        llamac_error err = {{0}};
        llamac_tokenizer *m = llc_tokenizer_from_memory(data, size, files[i].rel, &err);
        if (!m) fail_msg("%s from memory: %s", files[i].rel, err.message);
        assert_int_equal(m->n_vocab, a->n_vocab);
        assert_same_ids_bos(a, m, text, strlen(text), true, false);
        llamac_tokenizer_free(a);
        llamac_tokenizer_free(b);
        llamac_tokenizer_free(m);
        free(data);
    }
    assert_int_equal(llc_tokenizer_detect("", 0), LLC_TOKFMT_UNKNOWN);
    assert_int_equal(llc_tokenizer_detect("hello tokenizer\n", 16), LLC_TOKFMT_UNKNOWN);
    assert_int_equal(llc_tokenizer_detect("IQ== 0\nIg== 1\n", 14), LLC_TOKFMT_TIKTOKEN);
    assert_int_equal(llc_tokenizer_detect("IQ== 0\r\n", 8), LLC_TOKFMT_TIKTOKEN);
    assert_int_equal(llc_tokenizer_detect("\x0a\x00\x00\x00", 4), LLC_TOKFMT_LLAMA2C); /* max_token_length 10 */
    assert_int_equal(llc_tokenizer_detect("  {\"model\"", 10), LLC_TOKFMT_HF_JSON);
}

/* ---- tiktoken ------------------------------------------------------------------------------------ */

/* The ranks file and tokenizer.json are two spellings of one vocabulary: same texts (GPT-2 byte form),
 * same 256 added-token ids, same encodes, and the merges derived from the ranks are tokenizer.json's. */
static void test_tiktoken_vs_tokenizer_json(void **state) {
    (void)state;
    llamac_tokenizer *tk = load_shared("models/llama3-tokenizer/tokenizer.model");
    llamac_tokenizer *js = load_shared("models/llama3-tokenizer/tokenizer.json");
    assert_int_equal(tk->kind, LLC_TOK_GPT2);
    assert_int_equal(tk->n_vocab, 128256);
    assert_int_equal(js->n_vocab, 128256);
    for (int i = 0; i < 128000; i++) {
        const llc_token *a = &tk->tokens[i], *b = &js->tokens[i];
        if (a->len != b->len || memcmp(a->text, b->text, a->len)) fail_msg("token %d: \"%s\" vs \"%s\"", i, a->text, b->text);
        assert_int_equal(a->type, LLC_TT_NORMAL);
        assert_int_equal(a->n_bytes, b->n_bytes);
        assert_memory_equal(a->bytes, b->bytes, a->n_bytes);
    }
    for (int i = 128000; i < 128256; i++) {
        assert_int_equal(tk->tokens[i].type, LLC_TT_CONTROL);
        assert_int_equal(js->tokens[i].type, LLC_TT_CONTROL);
        assert_int_equal(tk->tokens[i].n_bytes, 0);
    }
    /* Names Llama 3.0 (tokenizer.json) and 3.1 (Meta's list, used for tiktoken files) share. */
    static const struct {
        int id;
        const char *name;
    } same[] = {{128000, "<|begin_of_text|>"}, {128001, "<|end_of_text|>"}, {128006, "<|start_header_id|>"},
                {128007, "<|end_header_id|>"}, {128009, "<|eot_id|>"}};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        assert_int_equal(llamac_tokenizer_token_id(tk, same[i].name), same[i].id);
        assert_int_equal(llamac_tokenizer_token_id(js, same[i].name), same[i].id);
    }
    assert_int_equal(llamac_tokenizer_token_id(tk, "<|eom_id|>"), 128008);
    assert_int_equal(llamac_tokenizer_token_id(tk, "<|python_tag|>"), 128010);
    assert_int_equal(llamac_tokenizer_token_id(tk, "<|finetune_right_pad_id|>"), 128004);
    assert_int_equal(llamac_tokenizer_token_id(tk, "<|reserved_special_token_247|>"), 128255);
    assert_int_equal(llamac_tokenizer_token_id(js, "<|reserved_special_token_250|>"), 128255);
    assert_int_equal(llamac_tokenizer_token_id(tk, "Hello"), 9906);
    assert_int_equal(llamac_tokenizer_token_id(tk, "<|no_such_token|>"), -1);
    assert_int_equal(llamac_tokenizer_token_id(NULL, "x"), -1);
    assert_int_equal(tk->bos, 128000);
    assert_int_equal(tk->eos, 128001);
    assert_true(tk->add_bos);
    assert_true(llamac_tokenizer_is_eog(tk, 128001));
    assert_true(llamac_tokenizer_is_eog(tk, 128008)); /* <|eom_id|> (Llama 3.1) */
    assert_true(llamac_tokenizer_is_eog(tk, 128009));
    assert_false(llamac_tokenizer_is_eog(tk, 128000));
    assert_false(llamac_tokenizer_is_eog(js, 128008)); /* a reserved token in Llama 3.0's file */

    /* The same ids both ways on this repository's sources (real code and prose). */
    static const char *const files[] = {"src/tokenizer/tokenizer.c", "src/tokenizer/bpe.c", "README.md",
                                        "/usr/share/common-licenses/GPL-3"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (access(files[i], R_OK) != 0) continue;
        size_t size;
        char *text = slurp(files[i], &size);
        assert_same_ids(tk, js, text, size, false);
        free(text);
    }

    /* Merges: what GGUF needs, derived from the ranks as Hugging Face's converter does, equal the
     * tokenizer.json list item for item; the GGUF written from tiktoken then loads as llama.cpp would. */
    char path[4096];
    pathf(path, sizeof path, "%s/llama3_from_tiktoken.gguf", tmp_dir);
    llc_gguf_writer *w = llc_gguf_writer_create();
    llc_gguf_write_str(w, "general.architecture", "llama");
    llc_tokenizer_write_gguf(tk, w);
    llamac_error err = {{0}};
    if (!llc_gguf_writer_save(w, path, NULL, NULL, &err)) fail_msg("%s", err.message);
    llc_gguf_writer_free(w);
    llamac_tokenizer *gg = load(path);
    assert_int_equal(gg->n_merges, js->n_merges);
    assert_int_equal(js->n_merges, 280147);
    for (int i = 0; i < js->n_merges; i++) {
        if (gg->merges[i].len != js->merges[i].len || memcmp(gg->merges[i].ptr, js->merges[i].ptr, js->merges[i].len))
            fail_msg("merge %d: \"%.*s\" vs tokenizer.json \"%.*s\"", i, (int)gg->merges[i].len, gg->merges[i].ptr,
                     (int)js->merges[i].len, js->merges[i].ptr);
    }
    assert_int_equal(gg->n_vocab, 128256);
    assert_int_equal(gg->bos, 128000);
    assert_int_equal(gg->eom, 128008);
    assert_non_null(gg->chat_template);
    assert_string_equal(gg->chat_template, tk->chat_template);
    const char *text = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>";
    assert_same_ids(tk, gg, text, strlen(text), true);
    assert_same_ids(tk, gg, text, strlen(text), false);
    llamac_tokenizer_free(gg);
    llamac_tokenizer_free(tk);
    llamac_tokenizer_free(js);
}

/* llama.cpp's test vectors (../shared/testdata/tokenizer/NAME.inp/.out: strings separated by
 * __ggml_vocab_test__ lines, one line of ids per string, no BOS) through tokenizer tk. */
static void check_llama_cpp_vectors(const llamac_tokenizer *tk, const char *name) {
    char path[4096];
    size_t n_inp, n_out;
    pathf(path, sizeof path, "%s/testdata/tokenizer/%s.inp", shared_dir, name);
    char *inp = slurp(path, &n_inp);
    pathf(path, sizeof path, "%s/testdata/tokenizer/%s.out", shared_dir, name);
    char *out = slurp(path, &n_out);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *o = out;
    int n_checked = 0;
    for (char *p = inp; *p; n_checked++) {
        char *q = strstr(p, sep), *eol = strchr(o, '\n');
        assert_non_null(q);
        assert_non_null(eol);
        int32_t *ids;
        int n = tokenize_all(tk, p, (size_t)(q - p), false, false, &ids);
        char *c = o;
        for (int i = 0; i < n; i++) {
            char *end;
            long v = strtol(c, &end, 10);
            if (end == c || v != ids[i]) fail_msg("%s vector %d \"%.*s\": id %d is %d", name, n_checked, (int)(q - p), p, i, ids[i]);
            c = end;
        }
        while (c < eol && *c == ' ') c++;
        if (c != eol) fail_msg("%s vector %d: fewer ids than llama.cpp", name, n_checked);
        free(ids);
        p = q + strlen(sep);
        o = eol + 1;
    }
    assert_true(n_checked >= 40);
    free(inp);
    free(out);
}

/* llama.cpp's Llama 3 vectors through the tiktoken reader. */
static void test_tiktoken_llama_cpp_vectors(void **state) {
    (void)state;
    llamac_tokenizer *tk = load_shared("models/llama3-tokenizer/tokenizer.model");
    check_llama_cpp_vectors(tk, "ggml-vocab-llama-bpe.gguf");
    llamac_tokenizer_free(tk);
}

/* A small tiktoken vocabulary: every byte, then extra tokens, each "base64 rank". */
static size_t tiny_tiktoken(char *buf, size_t cap, const char *const *extra, int n_extra) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    int rank = 0;
    for (int i = 0; i < 256 + n_extra; i++) {
        unsigned char t[64];
        size_t tn;
        if (i < 256) {
            t[0] = (unsigned char)i;
            tn = 1;
        } else {
            tn = strlen(extra[i - 256]);
            memcpy(t, extra[i - 256], tn);
        }
        for (size_t k = 0; k < tn; k += 3) {
            uint32_t v = (uint32_t)t[k] << 16 | (k + 1 < tn ? (uint32_t)t[k + 1] << 8 : 0) | (k + 2 < tn ? t[k + 2] : 0);
            buf[o++] = b64[v >> 18];
            buf[o++] = b64[(v >> 12) & 63];
            buf[o++] = k + 1 < tn ? b64[(v >> 6) & 63] : '=';
            buf[o++] = k + 2 < tn ? b64[v & 63] : '=';
        }
        o += (size_t)snprintf(buf + o, cap - o, " %d\n", rank++);
        assert_true(o < cap - 64);
    }
    return o;
}

static void test_tiktoken_tiny(void **state) {
    (void)state;
    static char buf[1 << 14];
    static const char *const extra[] = {"ab", "cd", "abcd", "xx", "xxx", " the"};
    size_t n = tiny_tiktoken(buf, sizeof buf, extra, 6);
    llamac_error err = {{0}};
    llamac_tokenizer *tok = llc_tokenizer_from_tiktoken(buf, n, "tiny", &err);
    if (!tok) fail_msg("%s", err.message);
    assert_int_equal(tok->n_vocab, 262 + 256);
    assert_int_equal(tok->bos, 262);
    /* Worked by hand with tiktoken's rule (merge the pair whose concatenation has the lowest rank,
     * leftmost first): abcdab -> ab c d a b -> ab c d ab -> ab cd ab -> abcd ab. */
    int32_t ids[16];
    assert_int_equal(llamac_tokenize(tok, "abcdab", 6, false, false, ids, 16, &err), 2);
    assert_int_equal(ids[0], 258);
    assert_int_equal(ids[1], 256);
    /* xxxxx -> xx x x x -> xx xx x -> xx xxx (the pair xx+x has rank 260, x+x 259: the leftmost x+x goes
     * first, then xx+x at rank 260 beats nothing else). */
    assert_int_equal(llamac_tokenize(tok, "xxxxx", 5, false, false, ids, 16, &err), 2);
    assert_int_equal(ids[0], 259);
    assert_int_equal(ids[1], 260);
    assert_int_equal(llamac_tokenize(tok, " the", 4, false, false, ids, 16, &err), 1);
    assert_int_equal(ids[0], 261);
    assert_int_equal(llamac_tokenize(tok, "<|eot_id|>", 10, false, true, ids, 16, &err), 1);
    assert_int_equal(ids[0], 262 + 9);
    llamac_tokenizer_free(tok);

    /* CRLF line ends and blank lines are fine (tiktoken's loader splits lines and skips empty ones). */
    static char crlf[1 << 15];
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == '\n') crlf[m++] = '\r';
        crlf[m++] = buf[i];
    }
    memcpy(crlf + m, "\r\n\n", 3);
    tok = llc_tokenizer_from_tiktoken(crlf, m + 3, "crlf", &err);
    if (!tok) fail_msg("%s", err.message);
    llamac_tokenizer_free(tok);
}

static void test_tiktoken_hostile(void **state) {
    (void)state;
    static char buf[1 << 14], bad[1 << 15];
    static const char *const extra[] = {"ab", "cd", "abcd"};
    size_t n = tiny_tiktoken(buf, sizeof buf, extra, 3);

    /* Edits of line 258 (rank 257, "cd" = "Y2Q= 257"). */
    const char *line = strstr(buf, "Y2Q= 257\n");
    assert_non_null(line);
    size_t at = (size_t)(line - buf), ll = strlen("Y2Q= 257\n");
    static const struct {
        const char *replacement, *msg;
    } cases[] = {
        {"Y2Q 257\n", "bad base64"},          {"Y2Q=! 257\n", "bad base64"},       {"Y*Q= 257\n", "bad base64"},
        {"Y2R= 257\n", "bad base64"},         /* stray bits after the padding */
        {"=Y2Q 257\n", "bad base64"},         {"Y2Q= 256\n", "rank 256 is repeated"},
        {"Y2Q= 259\n", "out of order"},       {"Y2Q= 99999999999999999999\n", "out of order"},
        {"Y2Q=257\n", "not \"base64 rank\""}, {"Y2Q= \n", "not \"base64 rank\""},
        {"Y2Q= 257 x\n", "not \"base64 rank\""}, {"Y2Q= -257\n", "not \"base64 rank\""},
        {"YWI= 257\n", "repeats the one on line 257"}, /* "ab" twice */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t k = strlen(cases[i].replacement);
        memcpy(bad, buf, at);
        memcpy(bad + at, cases[i].replacement, k);
        memcpy(bad + at + k, buf + at + ll, n - at - ll);
        char name[64];
        snprintf(name, sizeof name, "bad_tiktoken_%zu.model", i);
        expect_error_bytes(name, bad, n - ll + k, cases[i].msg);
        llamac_error err = {{0}};
        assert_null(llc_tokenizer_from_tiktoken(bad, n - ll + k, "mem", &err));
        assert_non_null(strstr(err.message, "mem: "));
        assert_non_null(strstr(err.message, "line 258"));
    }
    /* A huge line (a 1 MB "token") after the first. */
    size_t first = (size_t)(strchr(buf, '\n') - buf) + 1;
    size_t big = 1 << 20;
    char *huge = malloc(first + big + 8);
    memcpy(huge, buf, first);
    memset(huge + first, 'Q', big);
    memcpy(huge + first + big, "== 1\n", 5);
    expect_error_bytes("huge_line.model", huge, first + big + 5, "line 2 is 1048580 bytes long");
    /* ... and as the very first line (detection still says tiktoken). */
    expect_error_bytes("huge_first.model", huge + first, big + 5, "line 1 is");
    free(huge);
    /* A missing byte: rank 65 ("A") left out, ranks renumbered. */
    const char *a = strstr(buf, "QQ== 65\n");
    assert_non_null(a);
    size_t o = 0;
    int r = 0;
    for (const char *p = buf; p < buf + n;) {
        const char *e = strchr(p, '\n') + 1;
        if (p != a) {
            const char *sp = strchr(p, ' ');
            o += (size_t)snprintf(bad + o, sizeof bad - o, "%.*s %d\n", (int)(sp - p), p, r++);
        }
        p = e;
    }
    expect_error_bytes("no_byte_A.model", bad, o, "no token for byte 0x41");
    /* Too few ranks, nothing at all. */
    expect_error_bytes("short.model", buf, first * 3, "fewer than the 256");
    expect_error_bytes("empty.model", "", 0, "not a tokenizer");
    llamac_error err = {{0}};
    assert_null(llc_tokenizer_from_tiktoken("\n\n\n", 3, "blank", &err));
    assert_non_null(strstr(err.message, "blank: no ranks"));

    /* Every truncation: an error, or (cut at a line end past byte 255) a smaller vocabulary; never a crash. */
    int loaded = 0;
    for (size_t cut = 0; cut < n; cut += SANITIZED ? 7 : 1) {
        llamac_tokenizer *tok = llc_tokenizer_from_tiktoken(buf, cut, "cut", &err);
        if (tok) {
            loaded++;
            int32_t ids[64];
            llamac_tokenize(tok, "abcd <|eot_id|> xyz", 19, true, true, ids, 64, &err);
            llamac_tokenizer_free(tok);
        } else {
            assert_non_null(strstr(err.message, "cut"));
            assert_null(strchr(err.message, '\n'));
        }
    }
    assert_true(loaded >= 1);
    /* Random corruption: errors or a working tokenizer. */
    unsigned seed = 99;
    for (int round = 0; round < (SANITIZED ? 100 : 500); round++) {
        memcpy(bad, buf, n);
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 4) % n;
            seed = seed * 1103515245u + 12345u;
            bad[pos] = (char)(seed >> 16);
        }
        llamac_tokenizer *tok = llc_tokenizer_from_tiktoken(bad, n, "corrupt", &err);
        if (tok) {
            int32_t ids[64];
            llamac_tokenize(tok, "abcd <|eot_id|> \xff xyz", 21, true, true, ids, 64, &err);
            llamac_tokenizer_free(tok);
        } else {
            assert_null(strchr(err.message, '\n'));
        }
    }
}

/* ---- SentencePiece ModelProto ---------------------------------------------------------------------- */

/* The .model files hold the vocabularies the other files were converted from. */
static void test_spm_model_vs_converted(void **state) {
    (void)state;
    llamac_tokenizer *m = load_shared("models/llama2-tokenizer/tokenizer.model");
    llamac_tokenizer *g = load_shared("testdata/tokenizer/ggml-vocab-llama-spm.gguf"); /* llama.cpp's conversion */
    assert_int_equal(m->kind, LLC_TOK_SPM);
    assert_int_equal(m->n_vocab, 32000);
    assert_int_equal(g->n_vocab, 32000);
    for (int i = 0; i < 32000; i++) {
        const llc_token *a = &m->tokens[i], *b = &g->tokens[i];
        if (a->len != b->len || memcmp(a->text, b->text, a->len) || a->score != b->score || a->type != b->type)
            fail_msg("piece %d: \"%s\" %g %d vs llama.cpp \"%s\" %g %d", i, a->text, a->score, a->type, b->text, b->score,
                     b->type);
    }
    assert_int_equal(m->bos, 1);
    assert_int_equal(m->eos, 2);
    assert_int_equal(m->unk, 0);
    assert_int_equal(m->pad, -1);
    assert_true(m->add_bos);
    assert_true(m->add_space_prefix);
    assert_false(m->remove_extra_ws); /* Llama 2's normalizer_spec says so */
    assert_true(llamac_tokenizer_is_eog(m, 2));
    assert_int_equal(llamac_tokenizer_token_id(m, "</s>"), 2);
    assert_int_equal(llamac_tokenizer_token_id(m, "<0x0A>"), 13);
    assert_int_equal(llamac_tokenizer_token_id(m, "\xE2\x96\x81the"), 278);
    assert_null(llamac_tokenizer_chat_template(m));

    /* llama.cpp's vectors through the .model file. */
    check_llama_cpp_vectors(m, "ggml-vocab-llama-spm.gguf");
    llamac_tokenizer_free(m);
    llamac_tokenizer_free(g);

    /* tok512.model is tok512.bin (llama2.c's export of it), less the whitespace collapsing. */
    m = load_shared("models/stories260K/tok512.model");
    llamac_tokenizer *b = load_shared("models/stories260K/tok512.bin");
    assert_int_equal(m->n_vocab, 512);
    for (int i = 0; i < 512; i++) {
        assert_int_equal(m->tokens[i].len, b->tokens[i].len);
        assert_memory_equal(m->tokens[i].text, b->tokens[i].text, m->tokens[i].len);
        assert_true(m->tokens[i].score == b->tokens[i].score);
    }
    assert_true(m->remove_extra_ws);
    const char *text = "Once upon a time, there was a little girl named Lily.";
    assert_same_ids(m, b, text, strlen(text), false);
    /* Collapsing survives a GGUF round trip (tokenizer.ggml.remove_extra_whitespaces). */
    char path[4096];
    pathf(path, sizeof path, "%s/tok512_model.gguf", tmp_dir);
    llc_gguf_writer *w = llc_gguf_writer_create();
    llc_gguf_write_str(w, "general.architecture", "llama");
    llc_tokenizer_write_gguf(m, w);
    llamac_error err = {{0}};
    if (!llc_gguf_writer_save(w, path, NULL, NULL, &err)) fail_msg("%s", err.message);
    llc_gguf_writer_free(w);
    llamac_tokenizer *gg = load(path);
    assert_true(gg->remove_extra_ws);
    text = "  two  spaces  and a trailing one ";
    assert_same_ids(m, gg, text, strlen(text), false);
    int32_t *x, *y;
    int nx = tokenize_all(m, text, strlen(text), false, false, &x), ny = tokenize_all(b, text, strlen(text), false, false, &y);
    assert_true(nx < ny); /* tok512.bin keeps every space */
    free(x);
    free(y);
    llamac_tokenizer_free(gg);
    llamac_tokenizer_free(m);
    llamac_tokenizer_free(b);
}

/* A protobuf under construction. */
typedef struct pbuf {
    uint8_t b[4096];
    size_t n;
} pbuf;

static void pb_varint(pbuf *p, uint64_t v) {
    do {
        uint8_t c = v & 0x7F;
        v >>= 7;
        p->b[p->n++] = (uint8_t)(c | (v ? 0x80 : 0));
    } while (v);
}
static void pb_key(pbuf *p, unsigned field, unsigned wire) { pb_varint(p, (uint64_t)field << 3 | wire); }
static void pb_uint(pbuf *p, unsigned field, uint64_t v) {
    pb_key(p, field, 0);
    pb_varint(p, v);
}
static void pb_bytes(pbuf *p, unsigned field, const void *d, size_t n) {
    pb_key(p, field, 2);
    pb_varint(p, n);
    memcpy(p->b + p->n, d, n);
    p->n += n;
}
static void pb_str(pbuf *p, unsigned field, const char *s) { pb_bytes(p, field, s, strlen(s)); }
static void pb_float(pbuf *p, unsigned field, float f) {
    pb_key(p, field, 5);
    memcpy(p->b + p->n, &f, 4);
    p->n += 4;
}

typedef struct spm_opts {
    int model_type;        /* -1: leave out */
    const char *norm_name; /* NULL: no normalizer_spec */
    bool charsmap, no_escape, ws_suffix, dup_piece, bad_type, no_text;
    int remove_ws;         /* -1: default */
} spm_opts;

static size_t tiny_spm(uint8_t *out, spm_opts o) {
    static const struct {
        const char *text;
        float score;
        int type;
    } pieces[] = {{"<unk>", 0, 2}, {"<s>", 0, 3}, {"</s>", 0, 3}, {"\xE2\x96\x81" "a", -1, 1}, {"b", -2, 1},
                  {"\xE2\x96\x81" "ab", -0.5f, 1}, {"<0x41>", 0, 6}, {"\xE2\x96\x81", -3, 1}};
    pbuf m = {{0}, 0};
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        pbuf p = {{0}, 0};
        if (!(o.no_text && i == 4)) pb_str(&p, 1, o.dup_piece && i == 4 ? "\xE2\x96\x81" "a" : pieces[i].text);
        pb_float(&p, 2, pieces[i].score);
        if (pieces[i].type != 1 || (o.bad_type && i == 4)) pb_uint(&p, 3, o.bad_type && i == 4 ? 9 : (uint64_t)pieces[i].type);
        pb_bytes(&m, 1, p.b, p.n);
    }
    pbuf t = {{0}, 0};
    pb_str(&t, 2, "tiny");
    if (o.model_type >= 0) pb_uint(&t, 3, (uint64_t)o.model_type);
    pb_uint(&t, 4, 8);
    if (o.ws_suffix) pb_uint(&t, 24, 1);
    pb_uint(&t, 35, 1);
    pb_uint(&t, 43, UINT64_MAX); /* pad_id -1, as a 10-byte varint */
    pb_bytes(&m, 2, t.b, t.n);
    if (o.norm_name) {
        pbuf n = {{0}, 0};
        pb_str(&n, 1, o.norm_name);
        pb_bytes(&n, 2, o.charsmap ? "\x01\x02\x03\x04" : "", o.charsmap ? 4 : 0);
        if (o.remove_ws >= 0) pb_uint(&n, 4, (uint64_t)o.remove_ws);
        if (o.no_escape) pb_uint(&n, 5, 0);
        pb_bytes(&m, 3, n.b, n.n);
    }
    memcpy(out, m.b, m.n);
    return m.n;
}

static void test_spm_model_tiny_and_refusals(void **state) {
    (void)state;
    uint8_t buf[4096];
    llamac_error err = {{0}};
    spm_opts ok = {.model_type = 2, .norm_name = "identity", .remove_ws = 0};
    size_t n = tiny_spm(buf, ok);
    assert_int_equal(llc_tokenizer_detect(buf, n), LLC_TOKFMT_SPM);
    llamac_tokenizer *tok = llc_tokenizer_from_spm_model(buf, n, "tiny", &err);
    if (!tok) fail_msg("%s", err.message);
    assert_int_equal(tok->n_vocab, 8);
    assert_int_equal(tok->pad, -1);
    assert_int_equal(tok->byte_id['A'], 6);
    int32_t ids[16];
    /* "▁ab ▁b"? no piece "▁b": ▁ab, ▁, b; "A" spelled with its byte piece after the dummy prefix ▁. */
    assert_int_equal(llamac_tokenize(tok, "ab b", 4, false, false, ids, 16, &err), 3);
    assert_int_equal(ids[0], 5);
    assert_int_equal(ids[1], 7);
    assert_int_equal(ids[2], 4);
    assert_int_equal(llamac_tokenize(tok, "A", 1, true, false, ids, 16, &err), 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 7);
    assert_int_equal(ids[2], 6);
    llamac_tokenizer_free(tok);

    /* Defaults when the normalizer_spec is absent: dummy prefix and whitespace collapsing on. */
    spm_opts def = ok;
    def.norm_name = NULL;
    n = tiny_spm(buf, def);
    tok = llc_tokenizer_from_spm_model(buf, n, "tiny", &err);
    if (!tok) fail_msg("%s", err.message);
    assert_true(tok->remove_extra_ws);
    assert_true(tok->add_space_prefix);
    assert_int_equal(llamac_tokenize(tok, "  ab   b  ", 10, false, false, ids, 16, &err), 3);
    assert_int_equal(llamac_tokenize(tok, "   ", 3, false, false, ids, 16, &err), 0);
    llamac_tokenizer_free(tok);

    static const struct {
        spm_opts o;
        const char *msg;
    } refused[] = {
        {{.model_type = 1, .norm_name = "identity", .remove_ws = -1}, "model type UNIGRAM is not supported"},
        {{.model_type = -1, .norm_name = "identity", .remove_ws = -1}, "model type UNIGRAM is not supported"},
        {{.model_type = 4, .norm_name = "identity", .remove_ws = -1}, "model type CHAR"},
        {{.model_type = 7, .norm_name = "identity", .remove_ws = -1}, "model type unknown"},
        {{.model_type = 2, .norm_name = "nmt_nfkc", .charsmap = true, .remove_ws = -1}, "rule \"nmt_nfkc\" is not supported"},
        {{.model_type = 2, .norm_name = "identity", .no_escape = true, .remove_ws = -1}, "escape_whitespaces"},
        {{.model_type = 2, .norm_name = "identity", .ws_suffix = true, .remove_ws = -1}, "treat_whitespace_as_suffix"},
        {{.model_type = 2, .norm_name = "identity", .dup_piece = true, .remove_ws = -1}, "is already defined"},
        {{.model_type = 2, .norm_name = "identity", .bad_type = true, .remove_ws = -1}, "piece 4 has type 9"},
        {{.model_type = 2, .norm_name = "identity", .no_text = true, .remove_ws = -1}, "piece 4 has no text"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        n = tiny_spm(buf, refused[i].o);
        char name[64];
        snprintf(name, sizeof name, "refused_%zu.model", i);
        expect_error_bytes(name, buf, n, refused[i].msg);
    }
    /* NFKC: nothing in an identity model needs it. Llama 2's says identity and has no charsmap. */
}

static void test_spm_model_hostile(void **state) {
    (void)state;
    uint8_t buf[4096];
    size_t n = tiny_spm(buf, (spm_opts){.model_type = 2, .norm_name = "identity", .remove_ws = -1});
    uint8_t bad[4200];
    static const struct {
        const char *bytes;
        size_t n;
        const char *msg;
    } tails[] = {
        {"\x0a\xff\xff\xff\xff\x0f", 6, "claims 4294967295 bytes"},
        {"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x80\x01", 12, "overflows 64 bits"},
        {"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11, "overflows 64 bits"},
        {"\x0b", 1, "wire type 3"},
        {"\x0c", 1, "wire type 4"},
        {"\x00\x01", 2, "field number 0"},
        {"\x12\x80", 2, "truncated protobuf"},
        {"\x15\x01\x02", 3, "truncated protobuf"},
        {"\x08\x01", 2, "field 1 at byte"}, /* pieces as a varint */
    };
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        memcpy(bad, buf, n);
        memcpy(bad + n, tails[i].bytes, tails[i].n);
        char name[64];
        snprintf(name, sizeof name, "hostile_spm_%zu.model", i);
        expect_error_bytes(name, bad, n + tails[i].n, tails[i].msg);
    }
    /* A corrupt length inside a piece: bounded by the piece, not the file. */
    memcpy(bad, buf, n);
    assert_int_equal(bad[2], 0x0a); /* the first piece's text field */
    bad[3] = 0x7f;
    expect_error_bytes("hostile_spm_inner.model", bad, n, "claims 127 bytes");

    /* Every truncation and random corruption of Llama's tok512.model: an error or a tokenizer that works. */
    char path[4096];
    pathf(path, sizeof path, "%s/models/stories260K/tok512.model", shared_dir);
    size_t size;
    char *data = slurp(path, &size);
    llamac_error err = {{0}};
    for (size_t cut = 0; cut < size; cut += SANITIZED ? 5 : 1) {
        llamac_tokenizer *tok = llc_tokenizer_from_spm_model(data, cut, "cut", &err);
        if (tok) {
            int32_t ids[64];
            llamac_tokenize(tok, "Once upon <s> a time \xF0\x9F\xA6\x99", 25, true, true, ids, 64, &err);
            llamac_tokenizer_free(tok);
        } else {
            assert_non_null(strstr(err.message, "cut"));
            assert_null(strchr(err.message, '\n'));
        }
    }
    char *copy = malloc(size);
    unsigned seed = 5;
    for (int round = 0; round < (SANITIZED ? 150 : 1000); round++) {
        memcpy(copy, data, size);
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 4) % (round % 2 ? size : 64); /* often the start, where lengths nest */
            seed = seed * 1103515245u + 12345u;
            copy[pos] = (char)(seed >> 16);
        }
        llamac_tokenizer *tok = llc_tokenizer_from_memory(copy, size, "corrupt", &err);
        if (tok) {
            int32_t ids[64];
            llamac_tokenize(tok, "Once upon <s> a time \xF0\x9F\xA6\x99", 25, true, true, ids, 64, &err);
            for (int j = 0; j < 64 && j < tok->n_vocab; j++) {
                const char *b;
                llamac_token_bytes(tok, j, &b);
            }
            llamac_tokenizer_free(tok);
        } else {
            assert_null(strchr(err.message, '\n'));
        }
    }
    free(copy);
    free(data);
}

/* ---- tokenizer.json kinds we do not read ----------------------------------------------------------- */

static void test_unsupported_tokenizer_json(void **state) {
    (void)state;
    static const struct {
        const char *json, *msg;
    } cases[] = {
        /* Llama 2's tokenizer.json: SentencePiece-style BPE spelled with a normalizer and byte fallback */
        {"{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
         "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},\"pre_tokenizer\":null,"
         "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{\"a\":0},\"merges\":[]}}",
         "unsupported tokenizer.json"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}", "model.type is \"WordPiece\""},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",0.0]]}}", "model.type is \"Unigram\""},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Whitespace\"}}",
         "unsupported tokenizer.json"},
        {"{\"model\":", "not valid JSON"},
        {"{}", "no \"model\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "unsupported_%zu.json", i);
        expect_error_bytes(name, cases[i].json, strlen(cases[i].json), cases[i].msg);
    }
}

/* ---- chat template and generation plumbing ---------------------------------------------------------- */

static void test_chat_template(void **state) {
    (void)state;
    char path[4096];
    pathf(path, sizeof path, "%s/models/llama3-tokenizer/tokenizer_config.json", shared_dir);
    size_t size;
    char *cfg = slurp(path, &size);
    /* The template as tokenizer_config.json has it (JSON-unescaped): its distinctive pieces. */
    llamac_tokenizer *js = load_shared("models/llama3-tokenizer/tokenizer.json");
    llamac_tokenizer *tk = load_shared("models/llama3-tokenizer/tokenizer.model");
    const char *t = llamac_tokenizer_chat_template(js);
    assert_non_null(t);
    assert_non_null(strstr(t, "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"));
    assert_non_null(strstr(t, "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"));
    assert_non_null(strstr(cfg, "\"chat_template\""));
    assert_string_equal(llamac_tokenizer_chat_template(tk), t); /* the config beside tokenizer.model */
    free(cfg);

    /* From GGUF, both ways. */
    pathf(path, sizeof path, "%s/with_template.gguf", tmp_dir);
    llc_gguf_writer *w = llc_gguf_writer_create();
    llc_gguf_write_str(w, "general.architecture", "llama");
    llc_tokenizer_write_gguf(js, w);
    llamac_error err = {{0}};
    if (!llc_gguf_writer_save(w, path, NULL, NULL, &err)) fail_msg("%s", err.message);
    llc_gguf_writer_free(w);
    llc_gguf_file *g = llc_gguf_open(path, &err);
    assert_non_null(g);
    llc_str s;
    assert_true(llc_gguf_get_str(g, "tokenizer.chat_template", &s, &err));
    assert_int_equal(s.len, strlen(t));
    assert_memory_equal(s.ptr, t, s.len);
    llc_gguf_close(g);
    llamac_tokenizer *gg = load(path);
    assert_string_equal(llamac_tokenizer_chat_template(gg), t);
    llamac_tokenizer_free(gg);
    /* None: a vocabulary without one, and a NULL tokenizer. */
    llamac_tokenizer *spm = load_shared("testdata/tokenizer/ggml-vocab-llama-spm.gguf");
    assert_null(llamac_tokenizer_chat_template(spm));
    assert_null(llamac_tokenizer_chat_template(NULL));

    /* A broken tokenizer_config.json beside a tokenizer.model is reported with its own name. */
    char dir[4096], model[4200], conf[4200];
    pathf(dir, sizeof dir, "%s/broken_config", tmp_dir);
    mkdir(dir, 0755);
    pathf(model, sizeof model, "%s/tokenizer.model", dir);
    pathf(conf, sizeof conf, "%s/tokenizer_config.json", dir);
    pathf(path, sizeof path, "%s/models/llama2-tokenizer/tokenizer.model", shared_dir);
    char *data = slurp(path, &size);
    spit(model, data, size);
    free(data);
    spit(conf, "{\"chat_template\": [1, 2", 22);
    llamac_tokenizer *bad = llamac_tokenizer_load(model, &err);
    assert_null(bad);
    assert_non_null(strstr(err.message, conf));
    spit(conf, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}, {\"name\": \"default\", \"template\": \"D\"}]}", 96);
    bad = load(model);
    assert_string_equal(llamac_tokenizer_chat_template(bad), "D");
    llamac_tokenizer_free(bad);

    /* End-of-generation ids added by the Hugging Face loader (generation_config.json). */
    assert_false(llamac_tokenizer_is_eog(spm, 13));
    llc_tokenizer_add_eog(spm, 13);
    llc_tokenizer_add_eog(spm, 13);
    llc_tokenizer_add_eog(spm, -1);
    llc_tokenizer_add_eog(spm, 32000); /* outside the vocabulary: ignored */
    assert_true(llamac_tokenizer_is_eog(spm, 13));
    assert_false(llamac_tokenizer_is_eog(spm, 32000));
    int n_before = spm->n_eog;
    for (int i = 100; i < 140; i++) llc_tokenizer_add_eog(spm, i); /* more than fit: the rest ignored */
    assert_true(spm->n_eog > n_before && spm->n_eog <= 16);
    assert_true(llamac_tokenizer_is_eog(spm, 2));
    llc_tokenizer_add_eog(NULL, 1);
    llamac_tokenizer_free(spm);
    llamac_tokenizer_free(js);
    llamac_tokenizer_free(tk);
}

int main(void) {
    const char *s = getenv("LLAMAC_SHARED");
    snprintf(shared_dir, sizeof shared_dir, "%s", s ? s : "../shared");
    const char *t = getenv("LLAMAC_TMP");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/tokfmt_%d", t ? t : "/tmp", (int)getpid());
    if (t) mkdir(t, 0755);
    mkdir(tmp_dir, 0755);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect_by_content),
        cmocka_unit_test(test_tiktoken_vs_tokenizer_json),
        cmocka_unit_test(test_tiktoken_llama_cpp_vectors),
        cmocka_unit_test(test_tiktoken_tiny),
        cmocka_unit_test(test_tiktoken_hostile),
        cmocka_unit_test(test_spm_model_vs_converted),
        cmocka_unit_test(test_spm_model_tiny_and_refusals),
        cmocka_unit_test(test_spm_model_hostile),
        cmocka_unit_test(test_unsupported_tokenizer_json),
        cmocka_unit_test(test_chat_template),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0 && rc == 0) rc = 1;
    return rc;
}
