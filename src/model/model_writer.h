#ifndef LLC_MODEL_WRITER_H
#define LLC_MODEL_WRITER_H
/*
 * A model to write, described independently of any file format: hyperparameters, a tokenizer, and a
 * list of tensors named and laid out as in GGUF (blk.N.attn_q.weight, rows x cols with cols the row
 * length, q/k rows in the Meta/GGUF adjacent-pair RoPE order) whose bytes come from a callback one
 * tensor at a time. `synth` and `convert` build one; each output format has a writer for it:
 * GGUF (model/format_gguf.c), Hugging Face folders, Meta original folders. Every file is written
 * through base/outfile.h; a folder must be missing (it is created) or a folder.
 */
#include <stdbool.h>
#include <stdint.h>

#include "llamac.h"

typedef struct llc_src_tensor {
    char name[64];     /* GGUF name */
    uint32_t type;     /* element type of the bytes fill() produces */
    int64_t cols, rows;/* rows == 1 for vectors (norms, rope_freqs) */
} llc_src_tensor;

typedef struct llc_model_src {
    const char *name;  /* general.name */
    int n_layers, dim, n_heads, n_kv_heads, ffn_dim, n_vocab, n_ctx_train;
    float rms_eps, rope_theta;
    /* Llama 3.1 rope scaling (rope_type "llama3"); factor 0 means none. */
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_ctx;
    bool tied;         /* no output.weight: logits use token_embd */
    bool instruct;     /* an instruction-tuned model: writers record the tokenizer's chat template */
    bool has_file_type; /* general.file_type (llama.cpp's LLAMA_FTYPE) is file_type; if not, the GGUF
                         * writer derives it from the most common matrix type */
    uint32_t file_type;
    const llamac_tokenizer *tok;
    const char *tokenizer_file; /* the tokenizer's source file, copied by folder writers (may be NULL) */
    int n_tensors;
    llc_src_tensor *tensors;
    /* Writes tensor i's bytes (rows * row size of its type) to dst. */
    bool (*fill)(void *ctx, int i, void *dst, uint64_t nbytes, llamac_error *err);
    void *ctx;
} llc_model_src;

/* GGUF: hyperparameters as llama.* keys, the tokenizer as tokenizer.ggml.*; loadable by llama.cpp. */
bool llc_write_gguf_model(const llc_model_src *src, const char *path, llamac_error *err);

/* Hugging Face folder (model/format_hf.c): config.json, generation_config.json, model.safetensors
 * (q/k rows permuted to the half-split RoPE layout, as transformers stores them), tokenizer files. */
bool llc_write_hf_folder(const llc_model_src *src, const char *dir, llamac_error *err);
/* Meta original folder (model/format_meta.c): params.json, consolidated.00.pth, tokenizer.model. */
bool llc_write_meta_folder(const llc_model_src *src, const char *dir, llamac_error *err);

#endif
