/*
 * libFuzzer target for the non-GGUF readers: the same bytes are tried as
 *   1. a tokenizer file for llamac_tokenizer_load (llama2.c tokenizer.bin, or tokenizer.json when they
 *      start with '{', or a GGUF vocabulary — the loader tells them apart by content), then tokenized
 *      with and detokenized;
 *   2. a llama2.c tokenizer.bin for a model of 512 tokens (the count check);
 *   3. a llama2.c checkpoint (.bin), loaded with a fixed 32-token tokenizer and, when small, run for a
 *      few tokens and sampled from.
 * (safetensors, zip and pickle have their own targets: fuzz_safetensors.c, fuzz_zip.c, fuzz_pickle.c.)
 *
 *   FUZZ: speed=e2e dict=llama2c,json,hf_json seeds=llama2c
 *
 *   scripts/fuzz.sh            (builds with clang -fsanitize=fuzzer,address,undefined and runs it)
 *   build-fuzz/fuzz_llama2c CORPUS_DIR -max_total_time=60
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "llamac.h"
#include "tokenizer/tokenizer.h"

static fuzz_memfile input_file, tok_file;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    memfile_init(&input_file, "fuzz_input");
    memfile_init(&tok_file, "fuzz_tok");
    memfile_set_mini_tokenizer(&tok_file);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    memfile_set(&input_file, data, size);

    llamac_error err = {{0}};
    llamac_tokenizer *tok = llamac_tokenizer_load(input_file.path, &err);
    if (tok) {
        exercise_tokenizer(tok);
        llamac_tokenizer_free(tok);
    } else {
        check_message(&err);
    }

    err.message[0] = 0;
    tok = llc_tokenizer_from_llama2c(input_file.path, 512, &err);
    if (tok) {
        if (llamac_tokenizer_n_vocab(tok) != 512) abort();
        llamac_tokenizer_free(tok);
    } else {
        check_message(&err);
    }

    /* Checkpoints start with 7 int32s; anything shorter is covered by the tokenizer paths above. */
    if (size >= 28) exercise_model(input_file.path, tok_file.path, size);
    return 0;
}
