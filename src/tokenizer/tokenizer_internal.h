#ifndef LLC_TOKENIZER_INTERNAL_H
#define LLC_TOKENIZER_INTERNAL_H
/*
 * The vocabulary structure shared by the tokenizer sources, and the calls between them. Opaque to
 * everything outside src/tokenizer/: other modules go through llamac.h and tokenizer.h.
 *
 * Who calls whom (no cycles): detect.c calls the loaders (gguf_vocab.c, llama2c_bin.c, spm_model.c,
 * tiktoken.c, hf_json.c); the loaders build through the core (vocab.c); the core calls only added.c
 * and bpe.c, which call nothing here. tokenize.c calls added.c and the encoders (spm.c, bpe.c);
 * detok.c and gguf_write.c read the structure. bpe.c, pretokenize.c and unicode_tables.c do not know
 * this structure at all (bpe.h).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/gguf.h"
#include "llamac.h"

enum llc_tok_kind {
    LLC_TOK_SPM = 0,  /* tokenizer.ggml.model "llama": SentencePiece BPE, scores drive merges */
    LLC_TOK_GPT2 = 1, /* "gpt2": byte-level BPE, merge ranks drive merges (Llama 3) */
};

/* Values of tokenizer.ggml.token_type (llama.cpp's llama_token_type). */
enum llc_token_type {
    LLC_TT_UNDEFINED = 0,
    LLC_TT_NORMAL = 1,
    LLC_TT_UNKNOWN = 2,
    LLC_TT_CONTROL = 3,
    LLC_TT_USER_DEFINED = 4,
    LLC_TT_UNUSED = 5,
    LLC_TT_BYTE = 6,
};

typedef struct llc_token {
    const char *text;  /* the piece as the vocabulary spells it (SPM: "▁" for space), NUL-terminated */
    const char *bytes; /* what it decodes to (llamac_token_bytes) */
    uint32_t len;
    uint32_t n_bytes;
    float score;
    uint8_t type;      /* enum llc_token_type */
} llc_token;

struct llc_bpe;
struct llc_added;

struct llamac_tokenizer {
    int kind;             /* enum llc_tok_kind */
    int n_vocab;
    llc_token *tokens;
    char *text_pool;      /* every token's text, NUL-terminated, back to back */
    char *bytes_pool;     /* every token's decoded bytes */
    uint32_t max_len;     /* longest token text, bounds merge lookups */

    /* Open-addressing hash from token text to id; map_mask + 1 slots, -1 = empty. */
    int32_t *map;
    uint32_t map_mask;

    int32_t bos, eos, unk, pad, eot, eom; /* -1: none */
    bool add_bos, add_eos, add_space_prefix;
    bool remove_extra_ws; /* SentencePiece normalizer: drop leading and trailing spaces, collapse runs */
    bool has_scores;      /* scores came from the file (written back by llc_tokenizer_write_gguf) */
    bool has_unused;      /* some token is LLC_TT_UNUSED: SPM encode must resegment merges into them */
    bool spm_word_split;  /* no mergeable piece has "▁" after another character (and none is unused):
                             words encode apart */
    char model[16];       /* tokenizer.ggml.model */
    char *pre;            /* tokenizer.ggml.pre, NULL if absent */

    int32_t byte_id[256]; /* SPM byte-fallback token of each byte, -1 if none */

    /* Tokens matched in the text before encoding (control, unknown, user-defined), NULL if none. */
    struct llc_added *added;

    int32_t eog[16];      /* end-of-generation ids */
    int n_eog;

    char *chat_template;  /* Jinja template (GGUF tokenizer.chat_template, tokenizer_config.json), or NULL */

    /* gpt2 only */
    struct llc_bpe *bpe;
    char *merges_pool;    /* the merges as loaded, kept for llc_tokenizer_write_gguf */
    llc_str *merges;      /* into merges_pool */
    int n_merges;
};

/* Where encoders put ids: writes the first cap of them, counts all of them. */
typedef struct llc_tok_sink {
    int32_t *out;
    int cap;
    int n;
} llc_tok_sink;

static inline void llc_sink_push(llc_tok_sink *s, int32_t id) {
    if (s->n < s->cap) s->out[s->n] = id;
    s->n++;
}

/* SentencePiece's escaped space "▁" (U+2581). */
#define LLC_U2581 "\xE2\x96\x81"

/* ---- the core (vocab.c) ---- */

/* The hash of the text -> id map (FNV-1a, high bits folded down for the mask). */
static inline uint32_t llc_tok_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h ^ (h >> 15);
}

/* Id of the token whose text is exactly s[0..n), -1 if none. */
int32_t llc_tok_find(const struct llamac_tokenizer *tok, const char *s, size_t n);

/* Construction steps shared by the loaders: a tokenizer of n empty tokens with every special id -1;
 * the token texts (spaces_to_u2581: llama2.c's raw spaces become "▁"); then everything derived from
 * texts, types and ids (map, decoded bytes, specials, end-of-generation set). */
struct llamac_tokenizer *llc_tok_new(uint64_t n, llamac_error *err);
bool llc_tok_set_texts(struct llamac_tokenizer *tok, const llc_str *strs, bool spaces_to_u2581, llamac_error *err);
bool llc_tok_finish(struct llamac_tokenizer *tok, llamac_error *err);
/* The text -> id map alone, for a loader that looks tokens up by text before llc_tok_finish (which
 * keeps it). Duplicate texts: the last id wins. False without memory. */
bool llc_tok_build_map(struct llamac_tokenizer *tok);
/* The byte a "<0xNN>" token stands for, -1 if its text is not of that form. */
int llc_tok_byte_piece_value(const llc_token *t);
/* Byte-level BPE vocabularies from a merges list: a copy of the merges kept in tok (the GGUF writer
 * writes them back), then the encoder's tables built from the token texts and those merges. */
bool llc_tok_set_merges(struct llamac_tokenizer *tok, const llc_str *merges, uint64_t n, llamac_error *err);
bool llc_tok_create_bpe(struct llamac_tokenizer *tok, llamac_error *err);

/* ---- special-token splitting (added.c) ---- */

/* Build: the matcher over every control, unknown and user-defined token, into tok->added (stays NULL
 * without any). Split: the tokens cut out of text, sorted by position; user-defined ones only unless
 * parse_special. *out is malloc'd (NULL when none); false only without memory. */
typedef struct llc_added_match {
    uint32_t pos, len;
    int32_t id;
} llc_added_match;
bool llc_added_build(struct llamac_tokenizer *tok, llamac_error *err);
bool llc_added_split(const struct llamac_tokenizer *tok, const char *text, size_t len, bool parse_special,
                     llc_added_match **out, size_t *n_out);
void llc_added_free(struct llc_added *a);

/* ---- the SentencePiece encoder (spm.c) ---- */

/* Last queued merge into an unused piece: the length of its left part, valid for generation gen. */
typedef struct llc_spm_rev {
    uint32_t gen;
    uint32_t left;
} llc_spm_rev;

/* Working memory of the SPM encoder, reused across the pieces of one llamac_tokenize call. */
typedef struct llc_spm_scratch {
    char *buf;
    size_t buf_cap;
    void *sym;
    size_t sym_cap;
    void *heap;
    size_t heap_cap;
    llc_spm_rev *rev;     /* by id, only for vocabularies with unused pieces */
    uint32_t rev_gen;
} llc_spm_scratch;

/* SentencePiece BPE encode of len bytes (no special-token handling), with a leading "▁" if
 * add_prefix. False (err set) only on allocation failure or an unencodable byte. */
bool llc_spm_encode(const struct llamac_tokenizer *tok, const char *text, size_t len, bool add_prefix,
                    llc_spm_scratch *s, llc_tok_sink *out, llamac_error *err);
void llc_spm_scratch_free(llc_spm_scratch *s);

#endif
