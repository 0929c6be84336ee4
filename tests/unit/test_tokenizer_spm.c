/*
 * SentencePiece-style tokenizer and the tokenizer core. Every expectation comes from an independent
 * reference: llama.cpp's test vectors (ggml-vocab-llama-spm.gguf.inp/.out), Debian's python3-sentencepiece
 * run live on tok512.model and Llama 2's tokenizer.model (which llamac also reads itself, protobuf and all), the ggml-org stories260K.gguf (the same
 * vocabulary as tok512.bin, converted by llama.cpp), and Python's UTF-8 decoder for the detokenizer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/mapped_file.h"
#include "formats/gguf.h"
#include "llamac.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

#include "test_util.h"

static llamac_tokenizer *load_shared(const char *rel) {
    char path[4096];
    pathf(path, sizeof path, "%s/%s", shared_dir, rel);
    llamac_error err = {{0}};
    llamac_tokenizer *tok = llamac_tokenizer_load(path, &err);
    if (!tok) fail_msg("%s", err.message);
    return tok;
}

/* All ids of a text (grows the buffer as the API asks). */
static int tokenize_all(const llamac_tokenizer *tok, const char *text, size_t len, bool bos, bool special,
                        int32_t **ids) {
    llamac_error err = {{0}};
    int cap = 16;
    *ids = malloc((size_t)cap * sizeof **ids);
    int n = llamac_tokenize(tok, text, len, bos, special, *ids, cap, &err);
    if (n < 0) fail_msg("tokenize: %s", err.message);
    if (n > cap) {
        *ids = realloc(*ids, (size_t)n * sizeof **ids);
        int n2 = llamac_tokenize(tok, text, len, bos, special, *ids, n, &err);
        assert_int_equal(n2, n);
    }
    return n;
}

static void assert_ids(const int32_t *got, int n_got, const int32_t *want, int n_want, const char *what) {
    if (n_got == n_want && (n_got == 0 || !memcmp(got, want, (size_t)n_got * sizeof *got))) return;
    fprintf(stderr, "mismatch for %s\n got: ", what);
    for (int i = 0; i < n_got; i++) fprintf(stderr, " %d", got[i]);
    fprintf(stderr, "\nwant:");
    for (int i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
    fprintf(stderr, "\n");
    fail();
}

/* Concatenated llamac_token_bytes. */
static size_t decode_all(const llamac_tokenizer *tok, const int32_t *ids, int n, char *out) {
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        const char *b;
        size_t k = llamac_token_bytes(tok, ids[i], &b);
        memcpy(out + len, b, k);
        len += k;
    }
    return len;
}

/* ---- llama.cpp's vectors -------------------------------------------------------------------------- */

typedef struct vectors {
    char *inp, *outp;
    int n;
    const char *text[128];
    size_t len[128];
    int32_t *ids[128];
    int n_ids[128];
} vectors;

static void load_vectors(vectors *v, const char *base) {
    char path[4096];
    size_t size;
    memset(v, 0, sizeof *v);
    pathf(path, sizeof path, "%s/testdata/tokenizer/%s.inp", shared_dir, base);
    v->inp = slurp(path, &size);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    for (char *p = v->inp; *p;) {
        char *q = strstr(p, sep);
        assert_non_null(q);
        assert_true(v->n < 128);
        v->text[v->n] = p;
        v->len[v->n] = (size_t)(q - p);
        v->n++;
        p = q + strlen(sep);
    }
    pathf(path, sizeof path, "%s/testdata/tokenizer/%s.out", shared_dir, base);
    v->outp = slurp(path, &size);
    int line = 0;
    for (char *p = v->outp; *p && line < v->n; line++) {
        char *eol = strchr(p, '\n');
        if (!eol) eol = p + strlen(p);
        v->ids[line] = malloc(((size_t)(eol - p) / 2 + 1) * sizeof(int32_t));
        char *q = p;
        while (q < eol) {
            char *end;
            long id = strtol(q, &end, 10);
            if (end == q) break;
            v->ids[line][v->n_ids[line]++] = (int32_t)id;
            q = end;
        }
        p = *eol ? eol + 1 : eol;
    }
    assert_int_equal(line, v->n);
}

static void free_vectors(vectors *v) {
    for (int i = 0; i < v->n; i++) free(v->ids[i]);
    free(v->inp);
    free(v->outp);
}

static void check_vectors(const llamac_tokenizer *tok, const vectors *v, bool spm_prefix) {
    for (int i = 0; i < v->n; i++) {
        for (int special = 0; special < 2; special++) {
            int32_t *ids;
            int n = tokenize_all(tok, v->text[i], v->len[i], false, special, &ids);
            char what[160];
            snprintf(what, sizeof what, "vector %d \"%.60s\"", i, v->text[i]);
            assert_ids(ids, n, v->ids[i], v->n_ids[i], what);

            /* Decoding gives the text back, with SentencePiece's dummy prefix. */
            char *dec = malloc(v->len[i] * 4 + 8);
            size_t k = decode_all(tok, ids, n, dec);
            size_t off = spm_prefix && v->len[i] > 0 ? 1 : 0;
            assert_int_equal(k, v->len[i] + off);
            if (off) assert_int_equal(dec[0], ' ');
            assert_memory_equal(dec + off, v->text[i], v->len[i]);

            /* The streaming detokenizer, after BOS, prints exactly the text. */
            llamac_detokenizer d;
            llamac_detokenizer_init(&d, tok);
            char buf[512];
            size_t m = llamac_detokenize(&d, llamac_tokenizer_bos(tok), buf, sizeof buf);
            assert_int_equal(m, 0);
            size_t pos = 0;
            for (int j = 0; j < n; j++) {
                m = llamac_detokenize(&d, ids[j], buf, sizeof buf);
                assert_int_equal(strlen(buf), m);
                assert_true(pos + m <= v->len[i]);
                assert_memory_equal(v->text[i] + pos, buf, m);
                pos += m;
            }
            assert_int_equal(llamac_detokenizer_flush(&d, buf, sizeof buf), 0);
            assert_int_equal(pos, v->len[i]);
            free(dec);
            free(ids);
        }
    }
}

static void test_llama_spm_vectors(void **state) {
    (void)state;
    llamac_tokenizer *tok = load_shared("testdata/tokenizer/ggml-vocab-llama-spm.gguf");
    vectors v;
    load_vectors(&v, "ggml-vocab-llama-spm.gguf");
    assert_true(v.n >= 40);
    check_vectors(tok, &v, true);
    free_vectors(&v);
    llamac_tokenizer_free(tok);
}

static void test_llama_spm_vocab(void **state) {
    (void)state;
    llamac_tokenizer *tok = load_shared("testdata/tokenizer/ggml-vocab-llama-spm.gguf");
    assert_int_equal(llamac_tokenizer_n_vocab(tok), 32000);
    assert_int_equal(llamac_tokenizer_bos(tok), 1);
    assert_int_equal(llamac_tokenizer_eos(tok), 2);
    assert_true(llamac_tokenizer_is_eog(tok, 2));
    assert_false(llamac_tokenizer_is_eog(tok, 1));
    assert_false(llamac_tokenizer_is_eog(tok, -1));
    assert_false(llamac_tokenizer_is_eog(tok, 999999));
    const char *b;
    assert_int_equal(llamac_token_bytes(tok, 15043, &b), 6); /* "▁Hello" */
    assert_memory_equal(b, " Hello", 6);
    assert_int_equal(llamac_token_bytes(tok, 13, &b), 1); /* <0x0A> */
    assert_int_equal(b[0], '\n');
    assert_int_equal(llamac_token_bytes(tok, 3, &b), 1); /* <0x00> */
    assert_int_equal(b[0], 0);
    assert_int_equal(llamac_token_bytes(tok, 1, &b), 0);
    assert_int_equal(llamac_token_bytes(tok, 2, &b), 0);
    assert_int_equal(llamac_token_bytes(tok, 32000, &b), 0);
    assert_int_equal(llamac_token_bytes(tok, -5, &b), 0);

    /* BOS, and the returned count when the buffer is too small. */
    int32_t out[4] = {-7, -7, -7, -7};
    llamac_error err = {{0}};
    int n = llamac_tokenize(tok, "Hello world", 11, true, false, out, 2, &err);
    assert_int_equal(n, 3);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 15043);
    assert_int_equal(out[2], -7);
    assert_int_equal(llamac_tokenize(tok, "Hello world", 11, true, false, NULL, 0, &err), 3);
    assert_int_equal(llamac_tokenize(tok, "", 0, true, false, out, 4, &err), 1);
    assert_int_equal(llamac_tokenize(tok, "", 0, false, false, out, 4, &err), 0);
    assert_int_equal(llamac_tokenize(NULL, "x", 1, false, false, out, 4, &err), -1);
    assert_true(err.message[0] != 0);
    llamac_tokenizer_free(tok);
}

static void test_special_tokens(void **state) {
    (void)state;
    llamac_tokenizer *tok = load_shared("testdata/tokenizer/ggml-vocab-llama-spm.gguf");
    int32_t *ids;
    /* Each text piece gets the dummy prefix, as in llama.cpp: "Hello" alone is ▁Hello (15043). */
    const char *s = "<s>Hello</s>";
    int n = tokenize_all(tok, s, strlen(s), false, true, &ids);
    int32_t want[] = {1, 15043, 2};
    assert_ids(ids, n, want, 3, s);
    free(ids);
    s = "Hello<s>Hello world</s><unk>";
    n = tokenize_all(tok, s, strlen(s), true, true, &ids);
    int32_t want2[] = {1, 15043, 1, 15043, 3186, 2, 0};
    assert_ids(ids, n, want2, 7, s);
    free(ids);
    /* Without parse_special the markup is text: no control id, and it decodes back. */
    n = tokenize_all(tok, s, strlen(s), false, false, &ids);
    char dec[128];
    for (int i = 0; i < n; i++) assert_true(ids[i] > 2);
    size_t k = decode_all(tok, ids, n, dec);
    assert_int_equal(k, strlen(s) + 1);
    assert_memory_equal(dec + 1, s, strlen(s));
    free(ids);
    llamac_tokenizer_free(tok);
}

/* ---- tok512.bin / stories260K.gguf ---------------------------------------------------------------- */

static void test_llama2c_matches_gguf(void **state) {
    (void)state;
    llamac_tokenizer *bin = load_shared("models/stories260K/tok512.bin");
    llamac_tokenizer *gg = load_shared("models/stories260K/stories260K.gguf");
    assert_int_equal(bin->n_vocab, 512);
    assert_int_equal(gg->n_vocab, 512);
    for (int i = 0; i < 512; i++) {
        const llc_token *a = &bin->tokens[i], *b = &gg->tokens[i];
        if (a->len != b->len || memcmp(a->text, b->text, a->len) || a->type != b->type || a->score != b->score)
            fail_msg("token %d: bin \"%s\" type %d score %g, gguf \"%s\" type %d score %g", i, a->text, a->type,
                     (double)a->score, b->text, b->type, (double)b->score);
    }
    assert_int_equal(bin->bos, gg->bos);
    assert_int_equal(bin->eos, gg->eos);
    assert_int_equal(bin->unk, gg->unk);
    assert_true(bin->add_space_prefix && gg->add_space_prefix);

    /* Both encode the same, e.g. the golden prompt, as SentencePiece does (ids from tok512.model). */
    const char *s = "Once upon a time, there was a little girl named Lily.";
    int32_t want[] = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};
    int32_t *ids;
    int n = tokenize_all(bin, s, strlen(s), false, false, &ids);
    assert_ids(ids, n, want, 15, s);
    free(ids);
    n = tokenize_all(gg, s, strlen(s), false, false, &ids);
    assert_ids(ids, n, want, 15, s);
    free(ids);
    llamac_tokenizer_free(bin);
    llamac_tokenizer_free(gg);
}

/* ---- against python3-sentencepiece ---------------------------------------------------------------- */

static const char *const corpus[] = {
    "Once upon a time, there was a little girl named Lily. She loved to play outside.",
    "Hello, world! How are you? I'm fine; thanks: (really) [yes] {no} <maybe> \"quoted\" 'single'",
    "0 1 12 123 1234 12345 3.14159 -42 +7 1e10 0x1F 1,000,000 2024-01-31 12:30:45",
    "  two leading spaces, and  two  inside, and trailing  ",
    "a\nb\n\nc\r\nd\te\t\tf \n g",
    "\n\n\n",
    " ",
    "   ",
    "\t",
    "x",
    "!!!???...,,,;;;:::---___===+++***&&&%%%$$$###@@@~~~```^^^|||\\\\\\///",
    "Ünïcödé: café naïve résumé façade Straße Ærøskøbing żółć",
    "Привет, мир! Как дела? Ёжик в тумане.",
    "日本語のテキストと中文文本和한국어 텍스트",
    "مرحبا بالعالم — שלום עולם — नमस्ते दुनिया — สวัสดีชาวโลก",
    "ព្រះរាជាណាចក្រកម្ពុជា ቋንቋ ᐊᓂᔑᓈᐯᒧᐎᓐ",
    "emoji: 🙂 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ✅ ❤️ 🦙🦙",
    "combining: e\xCC\x81 a\xCC\x8A n\xCC\x83 \xE2\x80\x8B zero-width \xEF\xBB\xBF bom",
    "\xE2\x96\x81 literal lower one eighth block \xE2\x96\x81\xE2\x96\x81x",
    "<s> </s> <unk> <0x41> [INST] <<SYS>>",
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopic",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX! the-quick_brown.fox",
    "def f(x):\n    return x**2 + 1  # comment\n\nint main(void) { return 0; }\n",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ and ﬁ ligature ① ㎏",
    "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80 end",
    /* remove_extra_whitespaces: only U+0020 collapses; a trailing "▁" goes too; all-space text is empty */
    "a\xE2\x96\x81", "a \xE2\x96\x81 ", "\xE2\x96\x81", "\xE2\x96\x81\xE2\x96\x81", " \xE2\x96\x81\x61", "a \xE2\x96\x81 b",
    "a\t\tb", "a \t b", "a\xE3\x80\x80 b", "a\xC2\xA0 b", "a \n b", "     x     y     ", "\n \n", " \t ",
};

/* Random strings over a pool of characters that stresses merges and byte fallback. */
static size_t random_text(unsigned *seed, char *out, size_t cap) {
    static const char *const pool[] = {"a", "e", "t", "h", "o", "n", "s", " ", " ", " ", "  ", "the", "and", "ing",
                                       "\n", "\t", ".", ",", "!", "1", "3", "9", "é", "ü", "ß", "日", "本", "ж",
                                       "🙂", "👍", "\xE2\x96\x81", "'", "\"", "<", ">", "Th", "ll", "-", "0"};
    size_t n = 0, words = 1 + (*seed = *seed * 1103515245u + 12345u) % 40;
    for (size_t i = 0; i < words; i++) {
        *seed = *seed * 1103515245u + 12345u;
        const char *p = pool[(*seed >> 8) % (sizeof pool / sizeof pool[0])];
        size_t k = strlen(p);
        if (n + k >= cap) break;
        memcpy(out + n, p, k);
        n += k;
    }
    out[n] = 0;
    return n;
}

/* Ids that the fourth reference marks UNUSED (tok512's "▁t", "he", "▁the", and one more; the script names
 * the same ids), to exercise SentencePiece's resegmentation of merges into unused pieces. */
static const int unused_ids[] = {259, 260, 265, 300};

static const char *const py_script =
    "import sys, sentencepiece as spm\n"
    "def varint(b, i):\n"
    "    r = s = 0\n"
    "    while True:\n"
    "        c = b[i]; i += 1; r |= (c & 0x7f) << s; s += 7\n"
    "        if c < 0x80: return r, i\n"
    "def enc_varint(v):\n"
    "    o = bytearray()\n"
    "    while True:\n"
    "        c = v & 0x7f; v >>= 7\n"
    "        if not v: o.append(c); return bytes(o)\n"
    "        o.append(c | 0x80)\n"
    "def fields(b):\n"
    "    i = 0\n"
    "    while i < len(b):\n"
    "        key, j = varint(b, i); f, w = key >> 3, key & 7; p = None\n"
    "        if w == 0: k = varint(b, j)[1]\n"
    "        elif w == 1: k = j + 8\n"
    "        elif w == 5: k = j + 4\n"
    "        elif w == 2: n, j = varint(b, j); k = j + n; p = b[j:k]\n"
    "        else: raise ValueError(w)\n"
    "        yield f, w, b[i:k], p\n"
    "        i = k\n"
    "def mark_unused(model, ids):\n"
    "    # ModelProto.pieces (field 1) are SentencePiece messages; their field 3 is the type (5 = UNUSED)\n"
    "    out = bytearray(); idx = 0\n"
    "    for f, w, raw, p in fields(model):\n"
    "        if f == 1 and w == 2:\n"
    "            if idx in ids:\n"
    "                sub = b''.join(r for ff, ww, r, pp in fields(p) if ff != 3) + b'\\x18\\x05'\n"
    "                raw = b'\\x0a' + enc_varint(len(sub)) + sub\n"
    "            idx += 1\n"
    "        out += raw\n"
    "    return bytes(out)\n"
    "d = open(sys.argv[1], 'rb').read()\n"
    "texts = d.split(b'\\0')[:-1]\n"
    "tok512 = open(sys.argv[2], 'rb').read()\n"
    "tail = b'\\x1a\\x0c\\x0a\\x08identity\\x12\\x00'\n"
    "assert tok512.endswith(tail)\n"
    "# tok512.model leaves remove_extra_whitespaces at its default (true): this copy turns it off, as\n"
    "# llama2.c's encoder (which reads tok512.bin) has it.\n"
    "raw = tok512[:-len(tail)] + b'\\x1a\\x0e\\x0a\\x08identity\\x12\\x00\\x20\\x00'\n"
    "open(sys.argv[4], 'wb').write(raw)\n"
    "open(sys.argv[5], 'wb').write(mark_unused(raw, {259, 260, 265, 300}))\n"
    "a = spm.SentencePieceProcessor(model_proto=tok512)\n"
    "b = spm.SentencePieceProcessor(model_proto=raw)\n"
    "c = spm.SentencePieceProcessor(model_file=sys.argv[3])\n"
    "d = spm.SentencePieceProcessor(model_proto=mark_unused(raw, {259, 260, 265, 300}))\n"
    "assert d.is_unused(265) and not d.is_unused(261)\n"
    "for t in texts:\n"
    "    s = t.decode('utf-8')\n"
    "    for m in (a, b, c, d):\n"
    "        print(' '.join(map(str, m.encode(s))))\n"
    "for t in sys.argv[6:]:\n"
    "    print(bytes.fromhex(t).decode('utf-8', errors='replace').encode('utf-8').hex())\n";

static llamac_tokenizer *round_trip(const llamac_tokenizer *tok, const char *name);

static bool have_sentencepiece(void) {
    return system("/usr/bin/python3 -c 'import sentencepiece' >/dev/null 2>&1") == 0;
}

/* Whether SentencePiece's remove_extra_whitespaces changes s: a leading or trailing space, or two in a
 * row, where "▁" in the input counts as a space. */
static bool collapses_whitespace(const char *s) {
    char norm[1024];
    size_t n = 0;
    for (size_t i = 0; s[i] && n < sizeof norm - 1;) {
        if (!strncmp(s + i, "\xE2\x96\x81", 3)) {
            norm[n++] = ' ';
            i += 3;
        } else {
            norm[n++] = s[i++];
        }
    }
    norm[n] = 0;
    return n > 0 && (norm[0] == ' ' || norm[n - 1] == ' ' || strstr(norm, "  "));
}

static int parse_ids(const char *line, int32_t *out, int cap) {
    int n = 0;
    char *end;
    for (const char *p = line;; p = end) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        if (n < cap) out[n] = (int32_t)v;
        n++;
    }
    return n;
}

static void test_against_sentencepiece(void **state) {
    (void)state;
    if (!have_sentencepiece()) {
        fprintf(stderr, "python3-sentencepiece missing: skipped\n");
        skip();
    }
    enum { N_RANDOM = 300 };
    int n_texts = (int)(sizeof corpus / sizeof corpus[0]) + N_RANDOM;
    char **texts = calloc((size_t)n_texts, sizeof *texts);
    unsigned seed = 12345;
    for (int i = 0; i < n_texts; i++) {
        if (i < (int)(sizeof corpus / sizeof corpus[0])) {
            texts[i] = strdup(corpus[i]);
        } else {
            texts[i] = malloc(512);
            random_text(&seed, texts[i], 512);
        }
    }
    char inpath[4096], pypath[4096], cmd[16384];
    pathf(inpath, sizeof inpath, "%s/spm_corpus.bin", tmp_dir);
    pathf(pypath, sizeof pypath, "%s/spm_ref.py", tmp_dir);
    FILE *fp = fopen(inpath, "wb");
    for (int i = 0; i < n_texts; i++) fwrite(texts[i], 1, strlen(texts[i]) + 1, fp);
    fclose(fp);
    spit(pypath, py_script, strlen(py_script));

    /* Random byte-token sequences for the detokenizer: Python's errors="replace" is the reference. */
    enum { N_BYTESEQ = 200, SEQ_LEN = 12 };
    static unsigned char seqs[N_BYTESEQ][SEQ_LEN];
    static const unsigned char interesting[] = {0x41, 0x20, 0xC3, 0xA9, 0xE6, 0x97, 0xA5, 0xF0, 0x9F, 0x99, 0x82,
                                                0xED, 0xA0, 0x80, 0xBF, 0xC0, 0xC1, 0xF4, 0x90, 0x8F, 0xF5, 0xFF,
                                                0xE0, 0x9F, 0xC2, 0xEF, 0xBD};
    char raw_model[4096], unused_model[4096];
    pathf(raw_model, sizeof raw_model, "%s/tok512_raw.model", tmp_dir);
    pathf(unused_model, sizeof unused_model, "%s/tok512_unused.model", tmp_dir);
    int off = snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %s/models/stories260K/tok512.model %s/models/llama2-tokenizer/tokenizer.model %s %s",
                       pypath, inpath, shared_dir, shared_dir, raw_model, unused_model);
    for (int i = 0; i < N_BYTESEQ; i++) {
        off += snprintf(cmd + off, sizeof cmd - (size_t)off, " ");
        for (int j = 0; j < SEQ_LEN; j++) {
            seed = seed * 1103515245u + 12345u;
            seqs[i][j] = (seed >> 9) % 3 ? interesting[(seed >> 12) % sizeof interesting] : (unsigned char)(seed >> 16);
            if (j == 0) seqs[i][j] = 'A'; /* a leading space would be dropped as SentencePiece's dummy prefix */
            off += snprintf(cmd + off, sizeof cmd - (size_t)off, "%02x", seqs[i][j]);
        }
    }
    assert_true(off < (int)sizeof cmd - 1);
    FILE *py = popen(cmd, "r");
    assert_non_null(py);

    llamac_tokenizer *bin = load_shared("models/stories260K/tok512.bin");
    llamac_tokenizer *gg = load_shared("models/stories260K/stories260K.gguf");
    llamac_tokenizer *l2 = load_shared("testdata/tokenizer/ggml-vocab-llama-spm.gguf");
    /* tok512 with unused pieces, through a GGUF so that the loader sees them. */
    for (size_t i = 0; i < sizeof unused_ids / sizeof unused_ids[0]; i++) bin->tokens[unused_ids[i]].type = LLC_TT_UNUSED;
    llamac_tokenizer *un = round_trip(bin, "tok512_unused.gguf");
    for (size_t i = 0; i < sizeof unused_ids / sizeof unused_ids[0]; i++) bin->tokens[unused_ids[i]].type = LLC_TT_NORMAL;
    assert_true(un->has_unused);
    assert_false(un->spm_word_split);
    /* The .model files themselves, through the protobuf reader (written by the script before it prints). */
    llamac_tokenizer *m_stock = load_shared("models/stories260K/tok512.model");
    llamac_tokenizer *m_l2 = load_shared("models/llama2-tokenizer/tokenizer.model");
    llamac_tokenizer *m_raw = NULL, *m_un = NULL;
    assert_true(m_stock->remove_extra_ws);
    assert_false(m_l2->remove_extra_ws);
    static char line[1 << 16];
    static int32_t ref[4][4096];
    int n_ref[4], n_collapsing = 0, n_unused_differs = 0;
    for (int i = 0; i < n_texts; i++) {
        for (int m = 0; m < 4; m++) {
            if (!fgets(line, sizeof line, py)) fail_msg("python ended early at text %d", i);
            n_ref[m] = parse_ids(line, ref[m], 4096);
            assert_true(n_ref[m] <= 4096);
        }
        int32_t *ids;
        int n = tokenize_all(bin, texts[i], strlen(texts[i]), false, false, &ids);
        char what[128];
        snprintf(what, sizeof what, "tok512.bin text %d \"%.40s\"", i, texts[i]);
        assert_ids(ids, n, ref[1], n_ref[1], what);
        free(ids);
        n = tokenize_all(gg, texts[i], strlen(texts[i]), false, false, &ids);
        snprintf(what, sizeof what, "stories260K.gguf text %d \"%.40s\"", i, texts[i]);
        assert_ids(ids, n, ref[1], n_ref[1], what);
        free(ids);
        n = tokenize_all(l2, texts[i], strlen(texts[i]), false, false, &ids);
        snprintf(what, sizeof what, "llama-spm text %d \"%.40s\"", i, texts[i]);
        assert_ids(ids, n, ref[2], n_ref[2], what);
        free(ids);
        n = tokenize_all(un, texts[i], strlen(texts[i]), false, false, &ids);
        snprintf(what, sizeof what, "tok512 with unused pieces, text %d \"%.40s\"", i, texts[i]);
        assert_ids(ids, n, ref[3], n_ref[3], what);
        free(ids);
        if (!m_raw) { /* the script has written its two models by now */
            llamac_error e = {{0}};
            if (!(m_raw = llamac_tokenizer_load(raw_model, &e)) || !(m_un = llamac_tokenizer_load(unused_model, &e)))
                fail_msg("%s", e.message);
            assert_false(m_raw->remove_extra_ws);
            assert_true(m_un->has_unused);
        }
        static const struct { int ref; const char *name; } models[] = {
            {0, "tok512.model"}, {2, "Llama 2 tokenizer.model"}, {1, "tok512.model without collapsing"},
            {3, "tok512.model with unused pieces"}};
        llamac_tokenizer *mt[] = {m_stock, m_l2, m_raw, m_un};
        for (int m = 0; m < 4; m++) {
            n = tokenize_all(mt[m], texts[i], strlen(texts[i]), false, false, &ids);
            snprintf(what, sizeof what, "%s text %d \"%.40s\"", models[m].name, i, texts[i]);
            assert_ids(ids, n, ref[models[m].ref], n_ref[models[m].ref], what);
            free(ids);
        }
        n_unused_differs += n_ref[1] != n_ref[3] || memcmp(ref[1], ref[3], (size_t)n_ref[1] * 4);
        /* The only difference with stock tok512.model is its whitespace collapsing. */
        if (!collapses_whitespace(texts[i])) {
            snprintf(what, sizeof what, "stock tok512.model text %d", i);
            assert_ids(ref[0], n_ref[0], ref[1], n_ref[1], what);
        } else if (n_ref[0] != n_ref[1] || memcmp(ref[0], ref[1], (size_t)n_ref[0] * 4)) {
            n_collapsing++;
        }
    }
    assert_true(n_collapsing > 0);     /* the corpus does exercise these differences */
    assert_true(n_unused_differs > 10);

    for (int i = 0; i < N_BYTESEQ; i++) {
        if (!fgets(line, sizeof line, py)) fail_msg("python ended early at byte sequence %d", i);
        char want[256];
        size_t wn = 0;
        for (const char *p = line; p[0] && p[1] && p[0] != '\n'; p += 2) {
            unsigned v;
            sscanf(p, "%2x", &v);
            want[wn++] = (char)v;
        }
        char got[256], buf[64];
        size_t gn = 0;
        llamac_detokenizer d;
        llamac_detokenizer_init(&d, l2);
        for (int j = 0; j < SEQ_LEN; j++) {
            size_t k = llamac_detokenize(&d, l2->byte_id[seqs[i][j]], buf, sizeof buf);
            memcpy(got + gn, buf, k);
            gn += k;
        }
        size_t k = llamac_detokenizer_flush(&d, buf, sizeof buf);
        memcpy(got + gn, buf, k);
        gn += k;
        if (gn != wn || memcmp(got, want, gn)) fail_msg("detokenizer differs from Python on byte sequence %d", i);
    }
    assert_int_equal(pclose(py), 0);
    llamac_tokenizer_free(bin);
    llamac_tokenizer_free(gg);
    llamac_tokenizer_free(l2);
    llamac_tokenizer_free(un);
    llamac_tokenizer_free(m_stock);
    llamac_tokenizer_free(m_l2);
    llamac_tokenizer_free(m_raw);
    llamac_tokenizer_free(m_un);
    for (int i = 0; i < n_texts; i++) free(texts[i]);
    free(texts);
}

/* ---- detokenizer ---------------------------------------------------------------------------------- */

static size_t feed(llamac_detokenizer *d, int32_t id, char *buf) { return llamac_detokenize(d, id, buf, 64); }

static void test_detokenizer(void **state) {
    (void)state;
    llamac_tokenizer *tok = load_shared("testdata/tokenizer/ggml-vocab-llama-spm.gguf");
    int32_t B[256];
    for (int i = 0; i < 256; i++) B[i] = tok->byte_id[i];
    assert_int_equal(B[0x41], 0x41 + 3);
    char buf[64];
    llamac_detokenizer d;

    /* 日 = E6 97 A5 split over three byte tokens. */
    llamac_detokenizer_init(&d, tok);
    assert_int_equal(feed(&d, B[0xE6], buf), 0);
    assert_int_equal(buf[0], 0);
    assert_int_equal(feed(&d, B[0x97], buf), 0);
    assert_int_equal(feed(&d, B[0xA5], buf), 3);
    assert_string_equal(buf, "日");
    assert_int_equal(llamac_detokenizer_flush(&d, buf, sizeof buf), 0);

    /* A sequence that cannot complete becomes U+FFFD, and what broke it is kept. */
    assert_int_equal(feed(&d, B[0xE6], buf), 0);
    assert_int_equal(feed(&d, B[0x97], buf), 0);
    assert_int_equal(feed(&d, B['a'], buf), 4);
    assert_string_equal(buf, "\xEF\xBF\xBD" "a");
    assert_int_equal(feed(&d, B[0xF0], buf), 0);
    assert_int_equal(llamac_detokenizer_flush(&d, buf, sizeof buf), 3);
    assert_string_equal(buf, "\xEF\xBF\xBD");
    assert_int_equal(llamac_detokenizer_flush(&d, buf, sizeof buf), 0);
    assert_int_equal(feed(&d, B[0x97], buf), 3); /* stray continuation byte */

    /* Leading space: dropped right after BOS and at the start, kept elsewhere. */
    llamac_detokenizer_init(&d, tok);
    assert_int_equal(feed(&d, 1, buf), 0);
    assert_int_equal(feed(&d, 15043, buf), 5);
    assert_string_equal(buf, "Hello");
    assert_int_equal(feed(&d, 3186, buf), 6);
    assert_string_equal(buf, " world");
    assert_int_equal(feed(&d, 2, buf), 0);
    assert_int_equal(feed(&d, 15043, buf), 6);
    llamac_detokenizer_init(&d, tok);
    assert_int_equal(feed(&d, 15043, buf), 5);

    /* A buffer too small: nothing written past cap, whole characters only, always terminated. */
    llamac_detokenizer_init(&d, tok);
    buf[3] = 'Z';
    assert_true(llamac_detokenize(&d, 3186, buf, 3) < 3);
    assert_int_equal(buf[3], 'Z');
    assert_true(strlen(buf) < 3);
    assert_int_equal(llamac_detokenize(&d, 3186, buf, 0), 0);
    assert_int_equal(llamac_detokenize(&d, 999999, buf, sizeof buf), 0);
    llamac_tokenizer_free(tok);
}

/* ---- hostile files -------------------------------------------------------------------------------- */

static void expect_load_error(const char *path, const char *must_contain) {
    llamac_error err = {{0}};
    llamac_tokenizer *tok = llamac_tokenizer_load(path, &err);
    if (tok) fail_msg("%s loaded but should not have", path);
    assert_non_null(strstr(err.message, path));
    if (must_contain && !strstr(err.message, must_contain)) fail_msg("error \"%s\" lacks \"%s\"", err.message, must_contain);
    assert_null(strchr(err.message, '\n'));
}

static void test_hostile_llama2c(void **state) {
    (void)state;
    char src[4096], path[4096];
    pathf(src, sizeof src, "%s/models/stories260K/tok512.bin", shared_dir);
    pathf(path, sizeof path, "%s/hostile_tok.bin", tmp_dir);
    size_t size;
    char *data = slurp(src, &size);

    /* Every truncation: an error, or (cut exactly between entries) a smaller vocabulary. The model's
     * n_vocab of 512 rejects all of them. */
    for (size_t cut = 0; cut < size; cut++) {
        spit(path, data, cut);
        llamac_error err = {{0}};
        llamac_tokenizer *tok = llamac_tokenizer_load(path, &err);
        if (tok) {
            assert_true(tok->n_vocab < 512);
            int32_t ids[64];
            llamac_tokenize(tok, "hello world", 11, true, true, ids, 64, &err);
            llamac_tokenizer_free(tok);
        } else {
            assert_non_null(strstr(err.message, path));
        }
        tok = llc_tokenizer_from_llama2c(path, 512, &err);
        assert_null(tok);
    }
    spit(path, data, size);
    llamac_error err = {{0}};
    llamac_tokenizer *tok = llc_tokenizer_from_llama2c(path, 512, &err);
    assert_non_null(tok);
    llamac_tokenizer_free(tok);

    /* Wrong n_vocab, huge and negative lengths, a negative max_token_length. */
    tok = llc_tokenizer_from_llama2c(path, 32000, &err);
    assert_null(tok);
    assert_non_null(strstr(err.message, "512"));
    char *bad = malloc(size);
    int32_t v;
    size_t third_len_off = 4 + 8 + 5 + 8 + 5 + 4; /* token 2's length field ("<unk>", "\n<s>\n") */
    memcpy(&v, data + third_len_off, 4);
    assert_int_equal(v, 6); /* "\n</s>\n" */
    int32_t lens[] = {0x7fffffff, -1, INT32_MIN, 1 << 20, (int32_t)size};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        memcpy(bad, data, size);
        memcpy(bad + third_len_off, &lens[i], 4);
        spit(path, bad, size);
        expect_load_error(path, NULL);
    }
    memcpy(bad, data, size);
    v = -5;
    memcpy(bad, &v, 4);
    spit(path, bad, size);
    expect_load_error(path, NULL);
    spit(path, "", 0);
    expect_load_error(path, NULL);
    expect_load_error("/nonexistent/tokenizer.bin", NULL);
    spit(path, "hello tokenizer\n", 16);
    expect_load_error(path, "not a tokenizer");
    free(bad);
    free(data);
}

/* A small GGUF vocabulary through the writer, spoiled as asked. */
static llamac_tokenizer *small_gguf(const char *path, unsigned skip, const char *model, uint32_t bos, bool scores_short,
                                    bool types_as_strings, llamac_error *err) {
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "\xE2\x96\x81" "a", "b", "\xE2\x96\x81" "ab", "<0x41>"};
    enum { N = 7 };
    float sc[N] = {0, 0, 0, -1, -2, -0.5f, 0};
    int32_t ty[N] = {2, 3, 3, 1, 1, 1, 6};
    llc_gguf_writer *w = llc_gguf_writer_create();
    llc_gguf_write_str(w, "general.architecture", "llama");
    if (!(skip & 1)) llc_gguf_write_str(w, "tokenizer.ggml.model", model);
    if (!(skip & 2)) llc_gguf_write_str_arr(w, "tokenizer.ggml.tokens", toks, NULL, N);
    llc_gguf_write_arr(w, "tokenizer.ggml.scores", GGUF_F32, sc, scores_short ? N - 1 : N);
    if (types_as_strings) llc_gguf_write_str_arr(w, "tokenizer.ggml.token_type", toks, NULL, N);
    else llc_gguf_write_arr(w, "tokenizer.ggml.token_type", GGUF_I32, ty, N);
    llc_gguf_write_u32(w, "tokenizer.ggml.bos_token_id", bos);
    llc_gguf_write_u32(w, "tokenizer.ggml.eos_token_id", 2);
    llc_gguf_write_u32(w, "tokenizer.ggml.padding_token_id", UINT32_MAX);
    llc_gguf_write_u32(w, "tokenizer.ggml.eot_token_id", 1000);
    bool ok = llc_gguf_writer_save(w, path, NULL, NULL, err);
    llc_gguf_writer_free(w);
    if (!ok) fail_msg("%s", err->message);
    return llamac_tokenizer_load(path, err);
}

static void test_hostile_gguf(void **state) {
    (void)state;
    char path[4096];
    pathf(path, sizeof path, "%s/hostile_vocab.gguf", tmp_dir);
    llamac_error err = {{0}};
    llamac_tokenizer *tok = small_gguf(path, 0, "llama", 1, false, false, &err);
    if (!tok) fail_msg("%s", err.message);
    assert_int_equal(tok->pad, -1);
    assert_int_equal(tok->eot, -1); /* out of range: ignored, as llama.cpp does */
    int32_t ids[8];
    int n = llamac_tokenize(tok, "ab b", 4, false, false, ids, 8, &err);
    assert_int_equal(n, 3); /* ▁ab ▁ b: "▁" has no piece and no byte token -> unk */
    assert_int_equal(ids[0], 5);
    assert_int_equal(ids[1], 0);
    assert_int_equal(ids[2], 4);
    n = llamac_tokenize(tok, "A", 1, false, false, ids, 8, &err);
    assert_int_equal(n, 2); /* "▁" -> unk, "A" -> <0x41> */
    assert_int_equal(ids[1], 6);
    llamac_tokenizer_free(tok);

    struct {
        unsigned skip;
        const char *model;
        uint32_t bos;
        bool short_scores, str_types;
        const char *msg;
    } cases[] = {
        {1, "llama", 1, false, false, "tokenizer.ggml.model"},
        {2, "llama", 1, false, false, "tokenizer.ggml.tokens"},
        {0, "bert", 1, false, false, "bert"},
        {0, "llama", 7, false, false, "bos"},
        {0, "llama", 1, true, false, "scores"},
        {0, "llama", 1, false, true, "token_type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&err, 0, sizeof err);
        tok = small_gguf(path, cases[i].skip, cases[i].model, cases[i].bos, cases[i].short_scores, cases[i].str_types, &err);
        if (tok) fail_msg("case %zu loaded", i);
        if (!strstr(err.message, cases[i].msg)) fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.message, cases[i].msg);
        assert_non_null(strstr(err.message, path));
    }

    /* Random corruption of the real vocabulary: errors or a working tokenizer, never a crash. */
    char src[4096];
    pathf(src, sizeof src, "%s/testdata/tokenizer/ggml-vocab-llama-spm.gguf", shared_dir);
    size_t size;
    char *data = slurp(src, &size);
    char *copy = malloc(size);
    unsigned seed = 7;
    int loaded = 0;
    for (int round = 0; round < (SANITIZED ? 60 : 300); round++) {
        memcpy(copy, data, size);
        for (int k = 0; k < 4; k++) {
            seed = seed * 1103515245u + 12345u;
            /* Mostly the header and key area, where counts and lengths live. */
            size_t at = (seed >> 4) % (round % 2 ? size : 4096);
            seed = seed * 1103515245u + 12345u;
            copy[at] = (char)(seed >> 16);
        }
        llc_gguf_file *g = llc_gguf_open_memory(copy, size, &err);
        if (!g) continue;
        tok = llc_tokenizer_from_gguf(g, &err);
        if (tok) {
            loaded++;
            int32_t out[64];
            llamac_tokenize(tok, "Hello <s> world \xF0\x9F\x99\x82", 19, true, true, out, 64, &err);
            llamac_detokenizer d;
            char buf[64];
            llamac_detokenizer_init(&d, tok);
            for (int j = 0; j < 50; j++) llamac_detokenize(&d, j * 641, buf, sizeof buf);
            llamac_tokenizer_free(tok);
        }
        llc_gguf_close(g);
    }
    assert_true(loaded > 0);
    free(copy);
    free(data);
}

/* ---- GGUF round trip ------------------------------------------------------------------------------ */

static llamac_tokenizer *round_trip(const llamac_tokenizer *tok, const char *name) {
    char path[4096];
    pathf(path, sizeof path, "%s/%s", tmp_dir, name);
    llc_gguf_writer *w = llc_gguf_writer_create();
    llc_gguf_write_str(w, "general.architecture", "llama");
    llc_tokenizer_write_gguf(tok, w);
    llamac_error err = {{0}};
    if (!llc_gguf_writer_save(w, path, NULL, NULL, &err)) fail_msg("%s", err.message);
    llc_gguf_writer_free(w);
    llamac_tokenizer *back = llamac_tokenizer_load(path, &err);
    if (!back) fail_msg("%s", err.message);
    return back;
}

static void assert_same_vocab(const llamac_tokenizer *a, const llamac_tokenizer *b) {
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->n_vocab, b->n_vocab);
    for (int i = 0; i < a->n_vocab; i++) {
        const llc_token *x = &a->tokens[i], *y = &b->tokens[i];
        assert_int_equal(x->len, y->len);
        assert_memory_equal(x->text, y->text, x->len);
        assert_true(x->score == y->score);
        assert_int_equal(x->type, y->type);
        assert_int_equal(x->n_bytes, y->n_bytes);
        assert_memory_equal(x->bytes, y->bytes, x->n_bytes);
    }
    assert_int_equal(a->bos, b->bos);
    assert_int_equal(a->eos, b->eos);
    assert_int_equal(a->unk, b->unk);
    assert_int_equal(a->pad, b->pad);
    assert_int_equal(a->eot, b->eot);
    assert_int_equal(a->eom, b->eom);
    assert_int_equal(a->add_bos, b->add_bos);
    assert_int_equal(a->add_eos, b->add_eos);
    assert_int_equal(a->add_space_prefix, b->add_space_prefix);
    assert_int_equal(a->n_eog, b->n_eog);
    assert_int_equal(a->n_merges, b->n_merges);
    for (int i = 0; i < a->n_merges; i++) {
        assert_int_equal(a->merges[i].len, b->merges[i].len);
        assert_memory_equal(a->merges[i].ptr, b->merges[i].ptr, a->merges[i].len);
    }
    assert_true((a->pre == NULL) == (b->pre == NULL));
    if (a->pre) assert_string_equal(a->pre, b->pre);
}

static void test_gguf_round_trip(void **state) {
    (void)state;
    llamac_tokenizer *tok = load_shared("testdata/tokenizer/ggml-vocab-llama-spm.gguf");
    llamac_tokenizer *back = round_trip(tok, "rt_llama_spm.gguf");
    assert_same_vocab(tok, back);
    vectors v;
    load_vectors(&v, "ggml-vocab-llama-spm.gguf");
    check_vectors(back, &v, true);
    free_vectors(&v);
    llamac_tokenizer_free(back);
    llamac_tokenizer_free(tok);

    tok = load_shared("models/stories260K/tok512.bin");
    back = round_trip(tok, "rt_tok512.gguf");
    assert_same_vocab(tok, back);
    llamac_tokenizer_free(back);
    llamac_tokenizer_free(tok);
}

/* ---- gpt2 vocabularies through the core (encoding itself is bpe.c's) ------------------------------ */

static void test_llama3_json_and_gguf(void **state) {
    (void)state;
    llamac_tokenizer *tok = load_shared("models/llama3-tokenizer/tokenizer.json");
    assert_int_equal(tok->kind, LLC_TOK_GPT2);
    assert_int_equal(llamac_tokenizer_n_vocab(tok), 128256);
    assert_int_equal(llamac_tokenizer_bos(tok), 128000);
    assert_true(llamac_tokenizer_is_eog(tok, 128001)); /* <|end_of_text|> */
    assert_true(llamac_tokenizer_is_eog(tok, 128009)); /* <|eot_id|> */
    assert_false(llamac_tokenizer_is_eog(tok, 128008)); /* Llama 3.0: a reserved token (3.1: <|eom_id|>) */
    assert_false(llamac_tokenizer_is_eog(tok, 128000));
    const char *b;
    assert_int_equal(llamac_token_bytes(tok, 128000, &b), 0);
    int32_t *ids;
    const char *s = "<|begin_of_text|>Hello<|eot_id|>";
    int n = tokenize_all(tok, s, strlen(s), false, true, &ids);
    assert_true(n >= 3);
    assert_int_equal(ids[0], 128000);
    assert_int_equal(ids[n - 1], 128009);
    free(ids);
    n = tokenize_all(tok, s, strlen(s), false, false, &ids);
    for (int i = 0; i < n; i++) assert_true(ids[i] < 128000);
    char dec[256];
    assert_int_equal(decode_all(tok, ids, n, dec), strlen(s));
    assert_memory_equal(dec, s, strlen(s));
    free(ids);

    /* llama.cpp's Llama 3 vectors, through tokenizer.json and through a GGUF written from it. */
    vectors v;
    load_vectors(&v, "ggml-vocab-llama-bpe.gguf");
    check_vectors(tok, &v, false);
    llamac_tokenizer *back = round_trip(tok, "rt_llama3.gguf");
    assert_same_vocab(tok, back);
    check_vectors(back, &v, false);
    free_vectors(&v);
    llamac_tokenizer_free(back);
    llamac_tokenizer_free(tok);
}

/* ---- speed ---------------------------------------------------------------------------------------- */

/* CPU time: the machine is shared with parallel builds, wall time is not ours. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_long_input(void **state) {
    (void)state;
    llamac_tokenizer *tok = load_shared("testdata/tokenizer/ggml-vocab-llama-spm.gguf");
    size_t len = 1 << 20;
    char *text = malloc(len);
    static const char para[] = "It was the best of times, it was the worst of times; 1984 \xE6\x97\xA5\xE6\x9C\xAC "
                               "\xF0\x9F\x99\x82 naïve   spaces\n\t";
    for (size_t i = 0; i < len; i++) text[i] = para[i % (sizeof para - 1)];
    int32_t *out = malloc(len * sizeof *out);
    llamac_error err = {{0}};
#if defined(__OPTIMIZE__) && !SANITIZED
    double limit = 1.0;
#else
    double limit = 1e9; /* unoptimized or sanitized builds: run it, do not time it */
#endif

    double t0 = now_s();
    int n = llamac_tokenize(tok, text, len, true, true, out, (int)len, &err);
    double dt = now_s() - t0;
    fprintf(stderr, "1 MiB prose: %d tokens in %.3f s\n", n, dt);
    assert_true(n > 0 && n <= (int)len);
    assert_true(dt < limit);
    /* Encoding word by word (an optimisation) gives what one queue over the whole text gives. */
    assert_true(tok->spm_word_split);
    int32_t *out2 = malloc(len * sizeof *out2);
    tok->spm_word_split = false;
    int n2 = llamac_tokenize(tok, text, len, true, true, out2, (int)len, &err);
    tok->spm_word_split = true;
    assert_ids(out2, n2, out, n, "1 MiB prose, one queue");
    free(out2);

    /* Worst cases for the merge queue: one long run of spaces, one long word. */
    memset(text, ' ', len);
    t0 = now_s();
    n = llamac_tokenize(tok, text, len, false, false, out, (int)len, &err);
    dt = now_s() - t0;
    fprintf(stderr, "1 MiB spaces: %d tokens in %.3f s\n", n, dt);
    assert_true(n > 0);
    assert_true(dt < limit);
    char *dec = malloc(len + 1);
    assert_int_equal(decode_all(tok, out, n, dec), len + 1);
    for (size_t i = 0; i <= len; i++) assert_true(dec[i] == ' ');
    free(dec);
    memset(text, 'a', len);
    t0 = now_s();
    n = llamac_tokenize(tok, text, len, false, false, out, (int)len, &err);
    dt = now_s() - t0;
    fprintf(stderr, "1 MiB of 'a': %d tokens in %.3f s\n", n, dt);
    assert_true(dt < limit);
    free(out);
    free(text);
    llamac_tokenizer_free(tok);
}

int main(void) {
    const char *s = getenv("LLAMAC_SHARED");
    snprintf(shared_dir, sizeof shared_dir, "%s", s ? s : "../shared");
    const char *t = getenv("LLAMAC_TMP");
    snprintf(tmp_dir, sizeof tmp_dir, "%s", t ? t : "/tmp");
    mkdir(tmp_dir, 0755);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_spm_vectors),
        cmocka_unit_test(test_llama_spm_vocab),
        cmocka_unit_test(test_special_tokens),
        cmocka_unit_test(test_llama2c_matches_gguf),
        cmocka_unit_test(test_against_sentencepiece),
        cmocka_unit_test(test_detokenizer),
        cmocka_unit_test(test_hostile_llama2c),
        cmocka_unit_test(test_hostile_gguf),
        cmocka_unit_test(test_gguf_round_trip),
        cmocka_unit_test(test_llama3_json_and_gguf),
        cmocka_unit_test(test_long_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
