/*
 * llamac_tokenize: SentencePiece's whitespace normalization, special and added tokens cut out
 * (added.c), and the text between them handed to the vocabulary's encoder (spm.c, bpe.c).
 */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer_internal.h"

/* Text handed to llamac_tokenize: keeps every count inside int and every offset inside uint32. */
#define MAX_TEXT ((size_t)INT32_MAX / 4)

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
        else if (n >= 3 && !memcmp(out + n - 3, LLC_U2581, 3)) n -= 3;
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
