/*
 * Fast libFuzzer target: GGUF bytes -> the reader only (header, kvs, tensor infos), then every kv
 * through the printer, the typed getters and the array accessors, and every tensor's bytes and lookup.
 * No tokenizer, no model: thousands of inputs per second, so the parser gets the depth that
 * fuzz_gguf.c (the whole load) cannot. First the same bytes go through llamac_estimate_memory_gguf
 * (the header-only parse, a header's hyperparameters and the estimate's arithmetic).
 *
 *   FUZZ: speed=fast dict=gguf seeds=gguf_parse,gguf
 *
 *   scripts/fuzz.sh gguf_parse
 *   build-fuzz/fuzz_gguf_parse CORPUS_DIR
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "formats/gguf.h"
#include "fuzz_common.h"

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    devnull = fopen("/dev/null", "w");
    if (!devnull) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    llamac_error err = {{0}};
    /* the same bytes as a header fetched alone, and the memory estimate made from it */
    llamac_memory_estimate est;
    if (!llamac_estimate_memory_gguf(data, size, NULL, &est, &err)) check_message(&err);
    else if (est.total != est.weights + est.kv_cache + est.scratch + est.tokenizer || est.n_types > LLAMAC_MEMORY_MAX_TYPES) abort();
    err.message[0] = 0;
    llc_gguf_file *g = llc_gguf_open_memory(data, size, &err);
    if (!g) {
        check_message(&err);
        return 0;
    }
    /* (a file without tensors may end before its data section's padding) */
    if ((g->n_tensors && g->data_offset > size) || g->alignment == 0 || (g->alignment & (g->alignment - 1))) abort();
    check_gguf_kvs(g, devnull);
    check_gguf_tensors(g);
    llc_gguf_close(g);
    return 0;
}
