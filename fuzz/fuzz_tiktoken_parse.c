/*
 * Fast libFuzzer target: bytes -> the tiktoken reader (Llama 3's tokenizer.model: "base64 rank"
 * lines) and the byte-level BPE vocabulary it builds, with Meta's special tokens after the last rank;
 * checked cheaply (ids, specials, every token's bytes) instead of being tokenized with
 * (fuzz_tokenizer.c).
 *
 *   FUZZ: speed=fast dict=tiktoken seeds=tiktoken_parse
 *
 *   scripts/fuzz.sh tiktoken_parse
 */
#include <stdint.h>

#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    llamac_error err = {{0}};
    llamac_tokenizer *tok = llc_tokenizer_from_tiktoken(data, size, "fuzz", &err);
    check_tokenizer_result(tok, &err);
    return 0;
}
