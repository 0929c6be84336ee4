#ifndef LLC_TOKENIZER_H
#define LLC_TOKENIZER_H
/*
 * Internal tokenizer entry points. The public calls (llamac_tokenize, …) are in llamac.h.
 * Two algorithms share one vocabulary structure: SentencePiece-style score-driven BPE (Llama 2,
 * tokenizer.ggml.model = "llama") and byte-level rank-driven BPE (Llama 3, "gpt2").
 *
 * Files are told apart by content (llc_tokenizer_detect), never by name: Llama 2's and Llama 3's
 * files are both called tokenizer.model.
 *
 * One file per job: detect.c (telling files apart, llamac_tokenizer_load), one loader per kind
 * (gguf_vocab.c, llama2c_bin.c, spm_model.c, tiktoken.c, hf_json.c), vocab.c (the vocabulary they all
 * build), tokenize.c (llamac_tokenize), gguf_write.c (the GGUF writer), detok.c (the detokenizer,
 * UTF-8 validity). How they call each other: tokenizer_internal.h.
 */
#include "formats/gguf.h"
#include "llamac.h"

/* From the tokenizer.ggml.* keys of a GGUF (model files and vocabulary-only files). */
llamac_tokenizer *llc_tokenizer_from_gguf(const llc_gguf_file *g, llamac_error *err);
/* From llama2.c's tokenizer.bin. The file does not store its size: n_vocab > 0 is the model's
 * vocabulary size and the file must hold exactly that many entries; n_vocab <= 0 takes them all. */
llamac_tokenizer *llc_tokenizer_from_llama2c(const char *path, int n_vocab, llamac_error *err);
/* Writes the tokenizer.ggml.* keys describing tok into a GGUF being written (synth, convert). */
void llc_tokenizer_write_gguf(const llamac_tokenizer *tok, llc_gguf_writer *w);
/* Adds an end-of-generation id (generation_config.json's eos_token_id list); ids outside the
 * vocabulary are ignored, as is anything past 16 ids. */
void llc_tokenizer_add_eog(llamac_tokenizer *tok, int32_t id);

/* What a tokenizer file is, from its first bytes. */
enum llc_tok_format {
    LLC_TOKFMT_UNKNOWN = 0,
    LLC_TOKFMT_GGUF,      /* "GGUF" magic */
    LLC_TOKFMT_HF_JSON,   /* tokenizer.json: a JSON object */
    LLC_TOKFMT_TIKTOKEN,  /* "base64 rank" lines (Llama 3's tokenizer.model) */
    LLC_TOKFMT_SPM,       /* SentencePiece ModelProto (Llama 2's tokenizer.model) */
    LLC_TOKFMT_LLAMA2C,   /* llama2.c tokenizer.bin */
};
/* head: the first n bytes of the file (64 or more, or the whole file if shorter). */
enum llc_tok_format llc_tokenizer_detect(const void *head, size_t n);
/* The same from the file's first bytes, as llamac_tokenizer_load tells it; false (err set, *f unknown)
 * if the file cannot be read. */
bool llc_tokenizer_detect_file(const char *path, enum llc_tok_format *f, llamac_error *err);
const char *llc_tokenizer_format_name(enum llc_tok_format f);

/* Loaders from memory (the bytes need not outlive the call). name is used in messages only. Files read
 * from a path (llamac_tokenizer_load) also pick up the chat template of a tokenizer_config.json beside
 * them; these do not. */
llamac_tokenizer *llc_tokenizer_from_memory(const void *data, size_t size, const char *name, llamac_error *err);
/* tiktoken: "base64(token bytes) rank" per line, ranks 0, 1, 2, … in order. Read as Llama 3's: the
 * Llama 3 pre-tokenizer, and Meta's 256 special tokens (<|begin_of_text|> …) after the last rank. */
llamac_tokenizer *llc_tokenizer_from_tiktoken(const void *data, size_t size, const char *name, llamac_error *err);
/* SentencePiece ModelProto (.model) of model type BPE with the identity normalizer. */
llamac_tokenizer *llc_tokenizer_from_spm_model(const void *data, size_t size, const char *name, llamac_error *err);
/* Hugging Face tokenizer.json of the Llama 3 kind (see hf_json.h). The _file form also reads the
 * tokenizer_config.json beside it (BOS, EOS, chat template). */
llamac_tokenizer *llc_tokenizer_from_hf_json(const void *data, size_t size, const char *name, llamac_error *err);
llamac_tokenizer *llc_tokenizer_from_hf_json_file(const char *path, llamac_error *err);
/* llama2.c tokenizer.bin; n_vocab as for llc_tokenizer_from_llama2c. */
llamac_tokenizer *llc_tokenizer_from_llama2c_memory(const void *data, size_t size, int n_vocab, const char *name,
                                                    llamac_error *err);

/* Meta's Llama 3.1+ special tokens, in id order from the first id after the ranks (256 of them). */
const char *llc_llama3_special_name(int i, char *buf, size_t cap);

/* Well-formed UTF-8: no overlongs, surrogates, code points past U+10FFFF or truncated characters. */
bool llc_utf8_valid(const unsigned char *s, size_t n);

#endif
