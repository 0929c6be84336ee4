/*
 * Fast libFuzzer target: bytes -> a Hugging Face tokenizer.json (llc_hf_vocab_load_memory: the JSON
 * parser, then the schema: model.vocab, merges in both spellings, added_tokens, the pre-tokenizer
 * check). A vocabulary that loads must hold together (every id filled, lengths and types right), and is
 * then built into a tokenizer (GPT-2 byte decoding of every token and merge) and checked cheaply.
 * Tokenizing with it is fuzz_tokenizer.c's job.
 *
 * The JSON parser underneath is the one the loader uses; a target that fuzzes a JSON parser alone
 * would be fuzz_json_parse.c.
 *
 *   FUZZ: speed=fast dict=json,hf_json seeds=json_tokenizer
 *
 *   scripts/fuzz.sh json_tokenizer
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "tokenizer/hf_json.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    llamac_error err = {{0}};
    llc_hf_vocab v;
    if (!llc_hf_vocab_load_memory((const char *)data, size, "fuzz.json", &v, &err)) {
        check_message(&err);
        /* nothing to free on failure */
        if (v.tokens || v.merges || v.n_tokens || v.n_merges) abort();
        return 0;
    }
    if (v.n_tokens <= 0 || v.n_merges < 0 || v.bos != -1 || v.eos != -1 || v.chat_template) abort();
    for (int i = 0; i < v.n_tokens; i++) {
        if (!v.tokens[i] || strlen(v.tokens[i]) != v.token_lens[i]) abort();
        if (v.token_type[i] != 1 && v.token_type[i] != 3 && v.token_type[i] != 4 && v.token_type[i] != 5) abort();
    }
    for (int i = 0; i < v.n_merges; i++) touch(v.merges[i], strlen(v.merges[i]) + 1);
    llc_hf_vocab_free(&v);

    llamac_tokenizer *tok = llc_tokenizer_from_hf_json(data, size, "fuzz.json", &err);
    check_tokenizer_result(tok, &err);
    return 0;
}
