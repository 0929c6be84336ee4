/*
 * The GGUF vocabulary writer: the tokenizer.ggml.* keys that describe a vocabulary, whichever file it
 * was loaded from (synth, convert), such that gguf_vocab.c reads the same vocabulary back.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

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
