#ifndef LLC_MODEL_H
#define LLC_MODEL_H
/*
 * A loaded Llama model: hyperparameters and weights bound in place to the mapped file.
 */
#include <pthread.h>

#include "base/threadpool.h"
#include "formats/gguf.h"
#include "kernels/matmul.h"
#include "llamac.h"

typedef struct llc_hparams {
    int n_layers, dim, n_heads, n_kv_heads, head_dim, ffn_dim, n_vocab, n_ctx_train, rope_dim;
    float rms_eps, rope_theta;
} llc_hparams;

typedef struct llc_layer {
    const float *attn_norm, *ffn_norm; /* f32, dim */
    llc_tensor wq, wk, wv, wo;         /* [dim x dim], [kv_dim x dim], [kv_dim x dim], [dim x dim] (rows x cols) */
    llc_tensor w_gate, w_up, w_down;   /* [ffn x dim], [ffn x dim], [dim x ffn] */
} llc_layer;

struct llamac_model {
    llc_hparams hp;
    llc_tensor tok_embd, output;      /* output aliases tok_embd when tied */
    const float *output_norm;
    const float *rope_freqs;          /* rope_dim/2 divisors of the base frequencies, or NULL */
    /* Hugging Face checkpoints store q/k rows permuted for the "rotate half" RoPE (pairs i and
     * i + rope_dim/2) instead of Meta/GGUF's adjacent pairs: rotating those pairs instead keeps the
     * weights in place and computes the same attention. */
    bool rope_half_split;
    llc_layer *layers;
    bool tied;
    const char *format;
    char name[128];
    uint64_t weight_bytes, n_params;
    uint32_t main_type;
    float default_temperature, default_top_p; /* generation_config.json (Hugging Face folders); 0: unset */
    /* storage */
    llc_gguf_file *gguf;                  /* GGUF models */
    llc_mapped_file map;              /* llama2.c models */
    llc_mapped_file *maps;            /* folders: one mapping per weight file (shards) */
    int n_maps;
    void **owned;                     /* buffers made at load: norms converted to f32, joined shards */
    int n_owned;
    /* Weights repacked for the machine's kernels (model_pack.c), made once, by the first session. */
    pthread_mutex_t pack_lock;
    bool pack_done;
    void *packed_mem;                 /* mmap'ed, packed_bytes long (anonymous, or the packed cache file) */
    size_t packed_bytes;
    char *path;                       /* the model file's canonical path (single-file models; the cache's name) */
    llamac_tokenizer *tok;
};

/* Checks the hyperparameters against each other and against sane limits. */
bool llc_hparams_validate(const llc_hparams *hp, llamac_error *err);
/* Binds a 2-D weight after checking its shape is [rows x cols]. */
bool llc_bind_matrix(llc_tensor *t, const void *data, uint32_t type, int64_t cols, int64_t rows, const char *name,
                     llamac_error *err);

/* A vector of n floats (norm weights, rope factors) from a file's nbytes at data, of element type type,
 * counted in the model's size: used in place when f32 and aligned, converted (or copied) otherwise. */
const float *llc_bind_vector(llamac_model *m, const void *data, uint32_t type, int64_t n, uint64_t nbytes, llamac_error *err);

/* Llama 3.1's rope scaling as Meta's reference code applies it, as rope_dim/2 divisors of the base
 * frequencies (GGUF's rope_freqs.weight): long wavelengths slowed by factor, short ones kept, the
 * band between interpolated. */
void llc_llama3_rope_factors(float theta, int rope_dim, float factor, float low_freq_factor, float high_freq_factor,
                             int original_ctx, float *out);

/* Memory the model frees with itself: a malloc'ed buffer of bytes, or NULL after setting err. */
void *llc_model_alloc(llamac_model *m, size_t bytes, llamac_error *err);
/* A new slot in m->maps for a weight file of a folder, mapped; NULL after setting err. */
const llc_mapped_file *llc_model_map(llamac_model *m, const char *path, llamac_error *err);

/* Repacks the matrices that have a packed kernel on this machine (kernels/packed.h), once per model,
 * using the pool's threads; later calls return at once. Safe to call from several threads. The file's
 * pages of a repacked matrix are handed back to the kernel, so memory stays at one copy of the
 * weights. LLAMAC_PACK=0 in the environment turns packing off (for comparisons). The packed copy
 * of a single-file model is kept on disk and mapped the next time (model/pack_cache.h). */
bool llc_model_pack(const llamac_model *m, llc_pool *pool, llamac_error *err);
/* The buffer packing W[0..n) (the packable matrices) into a new cache file takes: the largest slice
 * packed at once, and what a write may leave over. */
size_t llc_pack_buffer_bytes(llc_tensor *const *W, int n);

/* Format-specific loaders (model/format_*.c, each beside its format's writer). They fill m; the caller frees m on failure. A folder is told apart by
 * what it holds: config.json (Hugging Face) or params.json (Meta's original checkpoints). */
bool llc_model_load_gguf(llamac_model *m, const char *path, llamac_error *err);
bool llc_model_load_llama2c(llamac_model *m, const char *path, llamac_error *err);
bool llc_model_load_hf(llamac_model *m, const char *dir, llamac_error *err);   /* format_hf.c */
bool llc_model_load_meta(llamac_model *m, const char *dir, llamac_error *err); /* format_meta.c */
/* The hyperparameters a GGUF's metadata gives (architecture, sizes, what llamac refuses, tensor
 * names), checked; path names the file in messages. */
bool llc_gguf_read_hparams(const llc_gguf_file *g, const char *path, llc_hparams *hp, llamac_error *err);
/* A Hugging Face config.json given as text (len bytes; label names it in messages) into m's
 * hyperparameters, m->tied and m->rope_freqs, with the checks loading does. */
bool llc_hf_config_read(llamac_model *m, const char *text, size_t len, const char *label, llamac_error *err);

#endif
