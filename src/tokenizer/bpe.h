#ifndef LLC_BPE_H
#define LLC_BPE_H
/*
 * Byte-level BPE of Llama 3 (tiktoken; Hugging Face "BPE" model with the ByteLevel pre-tokenizer and
 * ignore_merges; llama.cpp's "gpt2" vocabularies with the llama-bpe pre-tokenizer).
 *
 * Encoding: the text is split by the Llama 3 pre-tokenizer (pretokenize.h); a pre-token whose bytes are
 * a token reachable by merging is emitted as that token (ignore_merges, as tiktoken does); otherwise it
 * starts as one token per byte and the adjacent pair of lowest merge rank is merged, leftmost first on
 * ties, until no pair has a merge.
 *
 * Any bytes encode, ill-formed UTF-8 included (see pretokenize.h), and decoding the ids with
 * llc_bpe_token_bytes gives the input back byte for byte.
 */
#include <stddef.h>
#include <stdint.h>

#include "formats/gguf.h" /* llc_str */
#include "llamac.h"

typedef struct llc_bpe llc_bpe;

/* tokens: the vocabulary in GPT-2 byte-to-unicode form (e.g. "Ġthe"), index = id; merges: "A B"
 * strings in rank order (rank = index). Every one of the 256 bytes must have its token, and every merge
 * must name tokens of the vocabulary, its result too: anything else is refused with a message.
 *
 * Special/added tokens may be in tokens: only the single-byte tokens and the results of merges are
 * ever produced by encoding. A token whose text is not in byte-to-unicode form (e.g. "<|x|>" is, "▁x"
 * is not) decodes to its text as it is. Two tokens with the same bytes: the lower id is the one
 * encoding produces. The arrays are copied: the caller may free them after the call. */
llc_bpe *llc_bpe_create(const llc_str *tokens, int n_tokens, const llc_str *merges, int n_merges,
                        llamac_error *err);
void llc_bpe_free(llc_bpe *b);

/* tiktoken's form of the same algorithm (Meta's Llama 3 tokenizer.model): tokens[i] are raw bytes, and
 * the first n_ranked are the mergeable ranks (rank = id); any after them (special tokens) decode to
 * their bytes and are never produced by encoding. Adjacent parts a, b merge when a+b is a ranked token,
 * lowest rank of a+b first, leftmost on ties: tiktoken's rule, not a merges list. A whole pre-token that
 * is a ranked token is that token. Every byte must be a token; two ranked tokens with the same bytes are
 * refused (dup_of, if not NULL, gets the two ids; -1 otherwise). */
llc_bpe *llc_bpe_create_ranked(const llc_str *tokens, int n_ranked, int n_tokens, int32_t *dup_of,
                               llamac_error *err);
/* n_ranked of llc_bpe_create_ranked, 0 for tables built from a merges list. */
int llc_bpe_n_ranked(const llc_bpe *b);
/* The pairs of ranked tables as a merges list, in the order Hugging Face's tiktoken converter writes
 * them (rank of the merged token, then left id, then right id): *out gets 3 uint32 per pair (merged
 * id, left id, right id), malloc'ed. Returns the count, -1 on error (no ranks, out of memory). */
long llc_bpe_ranked_merges(const llc_bpe *b, uint32_t **out);
/* GPT-2's byte-to-unicode text of n bytes (what tokenizer.json and GGUF store); out needs 2n bytes.
 * Returns the length written (not NUL-terminated). */
size_t llc_bpe_byte_text(const uint8_t *s, size_t n, char *out);

/* Pre-tokenizes with the Llama 3 regex and merges by rank. Writes the first cap ids to out, returns
 * the total count (which may exceed cap). out may be NULL when cap is 0 (counting only). Returns -1
 * on invalid arguments, a text over INT_MAX bytes, or out of memory (a pre-token over 64 bytes needs
 * working memory: 24 bytes per byte of the longest such pre-token). Read-only on b: threads may
 * encode with one llc_bpe at once. */
int llc_bpe_encode(const llc_bpe *b, const char *text, size_t len, int32_t *out, int cap);

/* The raw bytes token id decodes to (the inverse of the byte-to-unicode map); *bytes points into b
 * and is not NUL-terminated. An id out of range gives 0 and "". */
size_t llc_bpe_token_bytes(const llc_bpe *b, int32_t id, const char **bytes);

#endif
