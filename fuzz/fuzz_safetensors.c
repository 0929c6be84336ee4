/*
 * libFuzzer target: safetensors bytes -> the header parser, every tensor it hands out, and then the
 * Hugging Face folder loader with the bytes as model.safetensors beside a fixed config.json (a 1-layer
 * model of 32 tokens, dim 16, GQA 2/1, untied, llama3 rope scaling), run for a few tokens and sampled
 * from when it loads.
 *
 *   FUZZ: speed=e2e dict=json,safetensors seeds=safetensors
 *
 *   scripts/fuzz.sh safetensors    (builds with clang -fsanitize=fuzzer,address,undefined and runs it)
 *   build-fuzz/fuzz_safetensors CORPUS_DIR -max_total_time=60
 *
 * Seeds (fuzz/corpus/safetensors/): the fixed model in F32, BF16 and F16 (norms F32), one with a
 * header length that misaligns every tensor, and a few hostile headers. Every input must be refused
 * with a one-line error or survive all calls without a sanitizer report; a tensor outside the bytes, two
 * tensors sharing bytes, or a name that find() does not return are reported as crashes (abort()).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/safetensors.h"
#include "fuzz_common.h"
#include "llamac.h"

static char folder[256], weights_path[300], config_path[300];
static fuzz_memfile tok_file;

static const char config_json[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 16,"
    " \"intermediate_size\": 32, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,"
    " \"vocab_size\": 32, \"rms_norm_eps\": 1e-05, \"rope_theta\": 500000.0, \"max_position_embeddings\": 64,"
    " \"tie_word_embeddings\": false, \"bos_token_id\": 1, \"eos_token_id\": 2,"
    " \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
    " \"original_max_position_embeddings\": 16, \"rope_type\": \"llama3\"}}\n";

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) abort();
}

/* The folder gets no tokenizer.json, so the loader takes this one, as with --tokenizer. */
static void write_tokenizer(void) {
    memfile_init(&tok_file, "fuzz_tok");
    memfile_set_mini_tokenizer(&tok_file);
}

static void cleanup(void) {
    unlink(weights_path);
    unlink(config_path);
    rmdir(folder);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(folder, sizeof folder, "%s/llamac-fuzz-st.XXXXXX", base);
    if (!mkdtemp(folder)) abort();
    snprintf(weights_path, sizeof weights_path, "%s/model.safetensors", folder);
    snprintf(config_path, sizeof config_path, "%s/config.json", folder);
    write_file(config_path, config_json, strlen(config_json));
    write_tokenizer();
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    llc_safetensors st;
    llamac_error err = {{0}};
    if (!llc_safetensors_parse(data, size, &st, &err)) {
        check_message(&err);
        return 0;
    }
    check_safetensors(&st, data, size);
    int n = st.n_tensors;
    llc_safetensors_free(&st);
    if (n > 0) {
        write_file(weights_path, data, size);
        exercise_model(folder, tok_file.path, size);
    }
    return 0;
}
