/*
 * Fast libFuzzer target for the small JSON files beside a model. The first byte picks which file the
 * rest becomes, in a folder in /dev/shm (the loaders take paths):
 *
 *   0  tokenizer_config.json beside a fixed tokenizer.json: bos_token / eos_token (strings or
 *      {"content": ...}) looked up, chat_template (a string or a list of named ones)
 *   1  config.json of a Hugging Face folder (no weights: the load stops after the config is read)
 *   2  generation_config.json beside a fixed valid config.json
 *   3  params.json of a Meta folder (no .pth: the load stops after it is read)
 *
 * Each must be refused with a one-line error or accepted; no sanitizer report, no hang.
 *
 *   FUZZ: speed=fast dict=json,config seeds=json_config
 *
 *   scripts/fuzz.sh json_config
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "llamac.h"
#include "tokenizer/hf_json.h"

/* A valid Llama 3 style tokenizer.json of a handful of tokens, so that bos/eos lookups can succeed. */
static const char tokenizer_json[] =
    "{\"added_tokens\": [{\"id\": 5, \"content\": \"<|begin_of_text|>\", \"special\": true},"
    " {\"id\": 6, \"content\": \"<|eot_id|>\", \"special\": true}], \"normalizer\": null,"
    " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\":"
    " \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|"
    "\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false},"
    " {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]},"
    " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"<s>\": 3, \"</s>\": 4},"
    " \"merges\": [\"a b\"]}}\n";

/* Valid for 2: a tiny model whose generation_config.json can then be judged. */
static const char config_json[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 16, \"intermediate_size\": 32,"
    " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"vocab_size\": 32,"
    " \"rms_norm_eps\": 1e-05, \"max_position_embeddings\": 64, \"bos_token_id\": 1, \"eos_token_id\": 2}\n";

enum { TOKCFG, HF, GEN, META, N_MODES };
static const char *const files[N_MODES] = {"tokenizer_config.json", "config.json", "generation_config.json", "params.json"};
static char root[128], dirs[N_MODES][160], paths[N_MODES][200], tok_json[200], gen_config[200];

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) abort();
}

static void cleanup(void) {
    for (int i = 0; i < N_MODES; i++) {
        unlink(paths[i]);
        rmdir(dirs[i]);
    }
    unlink(tok_json);
    unlink(gen_config);
    rmdir(root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(root, sizeof root, "%s/llamac-fuzz-json.XXXXXX", base);
    if (!mkdtemp(root)) abort();
    for (int i = 0; i < N_MODES; i++) {
        snprintf(dirs[i], sizeof dirs[i], "%s/%d", root, i);
        snprintf(paths[i], sizeof paths[i], "%s/%s", dirs[i], files[i]);
        if (mkdir(dirs[i], 0700) != 0) abort();
    }
    snprintf(tok_json, sizeof tok_json, "%s/tokenizer.json", dirs[TOKCFG]);
    write_file(tok_json, tokenizer_json, strlen(tokenizer_json));
    snprintf(gen_config, sizeof gen_config, "%s/config.json", dirs[GEN]);
    write_file(gen_config, config_json, strlen(config_json));
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0 || data[0] >= N_MODES) return 0;
    int mode = data[0];
    write_file(paths[mode], data + 1, size - 1);
    llamac_error err = {{0}};
    if (mode == TOKCFG) {
        llc_hf_vocab v;
        if (llc_hf_vocab_load(tok_json, &v, &err)) {
            if (v.n_tokens != 7 || v.bos < -1 || v.bos >= 7 || v.eos < -1 || v.eos >= 7) abort();
            if (v.chat_template) touch(v.chat_template, strlen(v.chat_template));
            llc_hf_vocab_free(&v);
        } else {
            check_message(&err);
        }
        char *t = NULL;
        err.message[0] = 0;
        if (llc_hf_chat_template_beside(tok_json, &t, &err)) {
            if (t) touch(t, strlen(t));
            free(t);
        } else {
            check_message(&err);
        }
        return 0;
    }
    /* No weights in the folder: every load fails, after the JSON file has been read and judged. */
    llamac_model *m = llamac_model_load(dirs[mode], NULL, &err);
    if (m) abort();
    check_message(&err);
    return 0;
}
