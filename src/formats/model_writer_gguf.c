#include <math.h>
#include <stdio.h>

#include "base/error.h"
#include "formats/model_writer.h"
#include "kernels/types.h"
#include "tokenizer/tokenizer.h"

void llc_llama3_rope_factors(float theta, int rope_dim, float factor, float low_freq_factor, float high_freq_factor,
                             int original_ctx, float *out) {
    double low_wl = original_ctx / (double)low_freq_factor, high_wl = original_ctx / (double)high_freq_factor;
    for (int i = 0; i < rope_dim / 2; i++) {
        double freq = pow((double)theta, -2.0 * i / rope_dim);
        double wl = 2 * 3.14159265358979323846 / freq;
        if (wl < high_wl) out[i] = 1.0f;
        else if (wl > low_wl) out[i] = factor;
        else {
            double smooth = (original_ctx / wl - low_freq_factor) / (high_freq_factor - low_freq_factor);
            out[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
}

/* llama.cpp's general.file_type for a file whose matrices are mostly of type t (as llama.cpp guesses it
 * for files without the key: Q4_K -> Q4_K_M); UINT32_MAX for a type without one (the key is left out). */
static uint32_t file_type_of(uint32_t t) {
    switch (t) {
    case LLC_F32: return 0;
    case LLC_F16: return 1;
    case LLC_Q4_0: return 2;
    case LLC_Q8_0: return 7;
    case LLC_Q4_K: return 15;
    case LLC_Q6_K: return 18;
    case LLC_BF16: return 32;
    default: return UINT32_MAX;
    }
}

typedef struct fill_adapter {
    const llc_model_src *src;
} fill_adapter;

static bool fill_one(void *ctx, uint64_t index, void *dst, uint64_t nbytes, llamac_error *err) {
    const fill_adapter *a = ctx;
    return a->src->fill(a->src->ctx, (int)index, dst, nbytes, err);
}

bool llc_write_gguf_model(const llc_model_src *src, const char *path, llamac_error *err) {
    llc_gguf_writer *w = llc_gguf_writer_create();
    if (!w) return llc_fail(err, "out of memory");
    /* the most common matrix type (the first of equals) */
    uint32_t main_type = LLC_F32;
    int best = 0;
    for (int i = 0; i < src->n_tensors; i++) {
        if (src->tensors[i].rows <= 1) continue;
        int n = 0;
        for (int j = 0; j < src->n_tensors; j++) n += src->tensors[j].rows > 1 && src->tensors[j].type == src->tensors[i].type;
        if (n > best) {
            best = n;
            main_type = src->tensors[i].type;
        }
    }
    int head_dim = src->dim / src->n_heads;
    llc_gguf_write_str(w, "general.architecture", "llama");
    llc_gguf_write_str(w, "general.name", src->name ? src->name : "llama");
    uint32_t file_type = src->has_file_type ? src->file_type : file_type_of(main_type);
    if (file_type != UINT32_MAX) llc_gguf_write_u32(w, "general.file_type", file_type);
    llc_gguf_write_u32(w, "general.quantization_version", 2);
    llc_gguf_write_u32(w, "llama.block_count", (uint32_t)src->n_layers);
    llc_gguf_write_u32(w, "llama.context_length", (uint32_t)src->n_ctx_train);
    llc_gguf_write_u32(w, "llama.embedding_length", (uint32_t)src->dim);
    llc_gguf_write_u32(w, "llama.feed_forward_length", (uint32_t)src->ffn_dim);
    llc_gguf_write_u32(w, "llama.attention.head_count", (uint32_t)src->n_heads);
    llc_gguf_write_u32(w, "llama.attention.head_count_kv", (uint32_t)src->n_kv_heads);
    llc_gguf_write_f32(w, "llama.rope.freq_base", src->rope_theta);
    llc_gguf_write_f32(w, "llama.attention.layer_norm_rms_epsilon", src->rms_eps);
    llc_gguf_write_u32(w, "llama.rope.dimension_count", (uint32_t)head_dim);
    llc_gguf_write_u32(w, "llama.vocab_size", (uint32_t)src->n_vocab);
    if (src->tok) llc_tokenizer_write_gguf(src->tok, w);
    for (int i = 0; i < src->n_tensors; i++) {
        const llc_src_tensor *t = &src->tensors[i];
        int64_t ne[2] = {t->cols, t->rows};
        llc_gguf_writer_add_tensor(w, t->name, t->type, t->rows == 1 ? 1 : 2, ne, NULL, llc_row_size(t->type, t->cols) * (uint64_t)t->rows);
    }
    fill_adapter a = {src};
    bool ok = llc_gguf_writer_save(w, path, fill_one, &a, err);
    llc_gguf_writer_free(w);
    return ok;
}
