/*
 * Fast libFuzzer target for llama2.c's two files, parse only:
 *   1. tokenizer.bin (llc_tokenizer_from_llama2c_memory), taking every entry, and again for a model of
 *      32 tokens (the count check);
 *   2. a checkpoint's header and size check (llamac_model_load of the bytes through an in-memory file):
 *      a header that passes binds the weights, which are never run (fuzz_llama2c.c runs them).
 *
 *   FUZZ: speed=fast dict=llama2c seeds=llama2c_parse,llama2c
 *
 *   scripts/fuzz.sh llama2c_parse
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "llamac.h"
#include "tokenizer/tokenizer.h"

static fuzz_memfile input_file;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    memfile_init(&input_file, "fuzz_input");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int counts[] = {0, 32};
    for (int i = 0; i < 2; i++) {
        llamac_error err = {{0}};
        llamac_tokenizer *tok = llc_tokenizer_from_llama2c_memory(data, size, counts[i], "fuzz", &err);
        if (!tok) {
            check_message(&err);
            continue;
        }
        if (counts[i] && llamac_tokenizer_n_vocab(tok) != counts[i]) abort();
        check_tokenizer_cheap(tok);
        llamac_tokenizer_free(tok);
    }

    /* Shorter than the 7-int32 header: the loader's first check, covered by the e2e target; "GGUF"
     * would take the GGUF loader (fuzz_gguf_parse.c's business). */
    if (size < 28 || memcmp(data, "GGUF", 4) == 0) return 0;
    memfile_set(&input_file, data, size);
    /* Without a tokenizer: a header that passes binds the weights, then the load stops for want of a
     * vocabulary (loading one for every input would cost more than the parse). */
    llamac_error err = {{0}};
    llamac_model *m = llamac_model_load(input_file.path, NULL, &err);
    if (m) abort();
    check_message(&err);
    return 0;
}
