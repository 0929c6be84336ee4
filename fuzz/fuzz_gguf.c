/*
 * libFuzzer target: GGUF bytes -> reader, every accessor, the tokenizer, the model binder, and a tiny
 * forward pass + sampling when the bytes make a loadable model.
 *
 *   FUZZ: speed=e2e dict=gguf seeds=gguf
 *
 *   scripts/fuzz.sh            (builds with clang -fsanitize=fuzzer,address,undefined and runs it)
 *   build-fuzz/fuzz_gguf CORPUS_DIR -max_total_time=60
 *
 * Every input must either be rejected with a one-line error or survive all of the calls below without a
 * sanitizer report; an error message with a newline, an id outside the vocabulary, or a tensor outside
 * the bytes are reported as crashes too (abort()).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "fuzz_common.h"
#include "llamac.h"
#include "tokenizer/tokenizer.h"

static FILE *devnull;
static fuzz_memfile model_file;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    devnull = fopen("/dev/null", "w");
    if (!devnull) abort();
    memfile_init(&model_file, "fuzz_gguf");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    llamac_error err = {{0}};
    llc_gguf_file *g = llc_gguf_open_memory(data, size, &err);
    if (!g) {
        check_message(&err);
        return 0;
    }
    check_gguf_kvs(g, devnull);
    check_gguf_tensors(g);
    llamac_error terr = {{0}};
    llamac_tokenizer *tok = llc_tokenizer_from_gguf(g, &terr);
    if (tok) {
        exercise_tokenizer(tok);
        llamac_tokenizer_free(tok);
    } else {
        check_message(&terr);
    }
    bool has_tensors = g->n_tensors > 0;
    llc_gguf_close(g);
    if (has_tensors) {
        /* The model loader takes a path: hand it the same bytes through an in-memory file. */
        memfile_set(&model_file, data, size);
        exercise_model(model_file.path, NULL, size);
    }
    return 0;
}
