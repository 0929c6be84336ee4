/*
 * Fast libFuzzer target: bytes -> the SentencePiece ModelProto reader (Llama 2's tokenizer.model:
 * protobuf pieces, trainer and normalizer specs) and the vocabulary it builds; the result is checked
 * cheaply (ids, specials, every piece's bytes) instead of being tokenized with (fuzz_tokenizer.c).
 *
 *   FUZZ: speed=fast dict=spm seeds=spm_parse
 *
 *   scripts/fuzz.sh spm_parse
 */
#include <stdint.h>

#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    llamac_error err = {{0}};
    llamac_tokenizer *tok = llc_tokenizer_from_spm_model(data, size, "fuzz", &err);
    check_tokenizer_result(tok, &err);
    return 0;
}
