#ifndef LLC_TENSORS_H
#define LLC_TENSORS_H
/*
 * Llama's weights, described once (model/tensors.c): each tensor's name in every naming llamac reads
 * and writes (GGUF, Hugging Face, Meta), its shape in terms of the hyperparameters, how Meta's
 * model-parallel shards split it, and where a loaded model keeps it. Loaders, writers, packing and
 * the forward pass iterate llc_tensors[] instead of spelling names or listing a layer's matrices.
 *
 * The table is in GGUF's (llama.cpp's) order: the whole-model tensors, then per layer attn_norm,
 * q, k, v, output, ffn_norm, gate, up, down. Writers emit tensors in this order.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

typedef enum llc_naming { LLC_NAMES_GGUF, LLC_NAMES_HF, LLC_NAMES_META, LLC_N_NAMINGS } llc_naming;

/* A length along one axis, in terms of the hyperparameters. */
typedef enum llc_extent { LLC_X_ONE, LLC_X_DIM, LLC_X_KV_DIM, LLC_X_FFN, LLC_X_VOCAB, LLC_X_ROPE_PAIRS } llc_extent;

/* How Meta's fairscale layers split a weight across consolidated.NN.pth: column-parallel layers hold
 * a slice of the output rows, row-parallel ones a slice of the input columns. The embedding is split
 * along the vocabulary (Llama 3's VocabParallelEmbedding) or along dim (Llama 2's ParallelEmbedding). */
typedef enum llc_meta_split { LLC_SPLIT_NONE, LLC_SPLIT_ROWS, LLC_SPLIT_COLS, LLC_SPLIT_EMBEDDING } llc_meta_split;

typedef struct llc_tensor_desc {
    /* Full names; a per-layer one follows the naming's layer prefix and the layer number
     * ("blk." "3" "." "attn_q.weight"). NULL: that naming does not store the tensor. */
    const char *name[LLC_N_NAMINGS];
    bool per_layer;
    bool vector;            /* an f32 vector (const float * in the model); otherwise an llc_tensor matrix */
    bool optional;          /* rope_freqs: a loader that reads it binds it itself */
    bool rope_rows;         /* q, k: rows in RoPE pair order (half-split in Hugging Face files) */
    llc_extent rows, cols;  /* vectors: rows LLC_X_ONE, cols the length */
    llc_meta_split split;
    size_t offset;          /* of the field in llamac_model (whole-model) or llc_layer (per-layer) */
} llc_tensor_desc;

extern const llc_tensor_desc llc_tensors[];
extern const int llc_n_tensors;
/* Entries of llc_tensors the loaders treat specially. */
extern const llc_tensor_desc *const llc_t_tok_embd, *const llc_t_output, *const llc_t_rope_freqs;

/* "blk.", "model.layers.", "layers.". */
const char *llc_layer_prefix(llc_naming nm);
/* The name of d (in layer `layer` when per-layer) in naming nm, into buf; NULL when nm lacks d. */
const char *llc_tensor_name(const llc_tensor_desc *d, llc_naming nm, int layer, char *buf, size_t cap);
/* The entry named name in naming nm, with its layer (-1 for a whole-model tensor); NULL if none. */
const llc_tensor_desc *llc_tensor_find(llc_naming nm, const char *name, int *layer);
int64_t llc_extent_of(const llc_hparams *hp, llc_extent x);

/* Where model m keeps d (of layer `layer`). */
llc_tensor *llc_model_matrix(const llamac_model *m, const llc_tensor_desc *d, int layer);
const float **llc_model_vector(const llamac_model *m, const llc_tensor_desc *d, int layer);

/* Fails (err names the tensor and, when it can tell, what the tensor is for) when the n-byte name is
 * not a weight of naming nm for a model of n_layers: a weight llamac would leave out of the computation
 * (biases, experts, another architecture's parts) means the file is not the model llamac runs. RoPE
 * tables some files carry and llamac recomputes are accepted. */
bool llc_check_tensor_name(llc_naming nm, const char *name, size_t n, int n_layers, llamac_error *err);

/* A format's way to bind one tensor: name is d's name in the format's naming, rows x cols its shape. */
typedef struct llc_binder {
    bool (*matrix)(void *ctx, const llc_tensor_desc *d, const char *name, llc_tensor *dst, int64_t rows, int64_t cols);
    const float *(*vector)(void *ctx, const llc_tensor_desc *d, const char *name, int64_t n);
    void *ctx;
} llc_binder;
/* Allocates m->layers and binds every non-optional tensor of the table that naming nm stores, whole
 * model first (the output is the embedding when m->tied is set), and sets m->main_type. The binder
 * sets err on failure. */
bool llc_model_bind(llamac_model *m, llc_naming nm, const llc_binder *b, llamac_error *err);

/* A tensor of a model as written, in table order: the entry and its layer (-1: whole-model). */
typedef struct llc_tensor_ref {
    const llc_tensor_desc *d;
    int layer;
} llc_tensor_ref;
/* The tensors a model of n_layers stores (output unless tied, rope_freqs when it has them), in table
 * order; returns how many were written to out, which has room for llc_tensor_refs_max(n_layers). */
int llc_tensor_refs(int n_layers, bool tied, bool rope_freqs, llc_tensor_ref *out);
int llc_tensor_refs_max(int n_layers);

#endif
