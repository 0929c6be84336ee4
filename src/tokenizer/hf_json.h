#ifndef LLC_HF_JSON_H
#define LLC_HF_JSON_H
/*
 * Reads a Hugging Face tokenizer.json (and the tokenizer_config.json beside it, when there is one) of
 * the Llama 3 kind into plain arrays: model.type "BPE" with the Llama 3 pre-tokenizer (Split on the
 * Llama 3 regex, then ByteLevel without its own regex), no normalizer. Other tokenizer.json files are
 * refused with "unsupported tokenizer.json: PATH: why".
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llamac.h"

typedef struct llc_hf_vocab {
    int n_tokens; char **tokens; uint32_t *token_lens;   /* by id, GPT-2 byte-unicode form as in the file */
    uint8_t *token_type;    /* 1 normal, 3 control (added_tokens with special=true), 4 user-defined (added,
                               special=false), 5 unused: "[PAD<id>]" filling an id the file leaves out */
    int n_merges; char **merges;  /* "A B", rank order (the file may store pairs as ["A","B"] lists: both accepted) */
    int32_t bos, eos;       /* from tokenizer_config.json (bos_token/eos_token strings looked up), -1 if unknown */
    char *chat_template;    /* tokenizer_config.json chat_template, or NULL */
} llc_hf_vocab;

/* Every string is malloc'ed and NUL-terminated; llc_hf_vocab_free releases them all. On failure *out
 * holds nothing to free (it is zeroed). */
bool llc_hf_vocab_load(const char *tokenizer_json_path, llc_hf_vocab *out, llamac_error *err);
/* The same from bytes in memory, without tokenizer_config.json (bos, eos and chat_template unknown);
 * name is used in messages. */
bool llc_hf_vocab_load_memory(const char *data, size_t size, const char *name, llc_hf_vocab *out, llamac_error *err);
/* The chat_template of the tokenizer_config.json in the folder of path (a tokenizer file), malloc'ed;
 * *out = NULL when there is no such file or it has no template. False on a broken config file. */
bool llc_hf_chat_template_beside(const char *path, char **out, llamac_error *err);
void llc_hf_vocab_free(llc_hf_vocab *v);

#endif
