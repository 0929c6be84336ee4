#ifndef LLC_TOKENIZER_H
#define LLC_TOKENIZER_H
/*
 * Internal tokenizer entry points. The public calls (llamac_tokenize, …) are in llamac.h.
 * Two algorithms share one vocabulary structure: SentencePiece-style score-driven BPE (Llama 2,
 * tokenizer.ggml.model = "llama") and byte-level rank-driven BPE (Llama 3, "gpt2").
 */
#include "formats/gguf.h"
#include "llamac.h"

/* From the tokenizer.ggml.* keys of a GGUF (model files and vocabulary-only files). */
llamac_tokenizer *llc_tokenizer_from_gguf(const gguf_file *g, llamac_error *err);
/* From llama2.c's tokenizer.bin. The file does not store its size: n_vocab > 0 is the model's
 * vocabulary size and the file must hold exactly that many entries; n_vocab <= 0 takes them all. */
llamac_tokenizer *llc_tokenizer_from_llama2c(const char *path, int n_vocab, llamac_error *err);
/* Writes the tokenizer.ggml.* keys describing tok into a GGUF being written (synth, convert). */
void llc_tokenizer_write_gguf(const llamac_tokenizer *tok, gguf_writer *w);

#endif
