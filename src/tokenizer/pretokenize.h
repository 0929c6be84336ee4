#ifndef LLC_PRETOKENIZE_H
#define LLC_PRETOKENIZE_H
/*
 * The Llama 3 pre-tokenizer, written out by hand. It splits text exactly where this regex (the Split
 * step of Llama 3's tokenizer.json, as python3-regex, tiktoken and Hugging Face run it) would:
 *
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 *   \s*[\r\n]+|\s+(?!\S)|\s+
 *
 * Works on bytes, not on decoded text. Ill-formed UTF-8 is not rejected: each maximal subpart of an
 * ill-formed sequence (the unit Python's bytes.decode(errors="replace") turns into one U+FFFD) counts as
 * one character of the class U+FFFD has (other: not a letter, number or space), and its bytes stay in
 * the pre-token unchanged. So the split points are those of the regex run on the "replace"-decoded
 * text, mapped back to bytes, and no byte is ever lost or altered.
 */
#include <stddef.h>
#include <stdint.h>

/* End (exclusive byte offset) of the pre-token that starts at pos; requires pos < len. Always > pos. */
size_t llc_pretok_next(const uint8_t *s, size_t len, size_t pos);

/* Class (LLC_UC_*) and byte length of the character at s[pos] (pos < len), with the ill-formed UTF-8
 * rule above. */
int llc_pretok_char(const uint8_t *s, size_t len, size_t pos, size_t *nbytes);

#endif
