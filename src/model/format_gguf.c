/*
 * GGUF models (architecture "llama"), read and written. Reading: hyperparameters from the llama.* keys,
 * weights used in place from the mapping after their shapes are checked against the hyperparameters.
 * Writing: a model source (model/model_writer.h) as llama.* keys, the tokenizer as tokenizer.ggml.*, and
 * the tensors under GGUF's names; loadable by llama.cpp.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "formats/gguf.h"
#include "kernels/types.h"
#include "model/model.h"
#include "model/model_writer.h"
#include "model/tensors.h"
#include "tokenizer/tokenizer.h"

/* ---- reader ------------------------------------------------------------------------------------- */

/* A required integer key; err is set on absence or bad type. */
static bool req_u32(const llc_gguf_file *g, const char *key, int *out, llamac_error *err) {
    if (!llc_gguf_find(g, key)) return llc_fail(err, "missing metadata %s", key);
    uint32_t v;
    if (!llc_gguf_get_u32(g, key, &v, err)) return false;
    if (v > INT32_MAX) return llc_fail(err, "metadata %s is out of range", key);
    *out = (int)v;
    return true;
}

/* Optional keys: absence leaves *out alone; a key that is there must have the right type. Absence is
 * asked of the file itself, not read from err, which the caller may have passed as NULL. */
static bool opt_u32(const llc_gguf_file *g, const char *key, int *out, llamac_error *err) {
    if (!llc_gguf_find(g, key)) return true;
    uint32_t v;
    if (!llc_gguf_get_u32(g, key, &v, err)) return false;
    if (v > INT32_MAX) return llc_fail(err, "metadata %s is out of range", key);
    *out = (int)v;
    return true;
}

static bool opt_f32(const llc_gguf_file *g, const char *key, float *out, llamac_error *err) {
    return !llc_gguf_find(g, key) || llc_gguf_get_f32(g, key, out, err);
}

static bool opt_str(const llc_gguf_file *g, const char *key, llc_str *out, llamac_error *err) {
    return !llc_gguf_find(g, key) || llc_gguf_get_str(g, key, out, err);
}

/* What llama.cpp's Llama reads besides the sizes, each with the one value llamac's forward pass
 * computes: a file that asks for more (experts, other head sizes, scaled positions) is refused rather
 * than run as plain Llama. Llama 3.1's scaling is not among them: it comes as the rope_freqs tensor. */
static bool refuse_unsupported(const llc_gguf_file *g, const llc_hparams *hp, llamac_error *err) {
    static const char *const experts[] = {"llama.expert_count", "llama.expert_used_count"};
    for (int i = 0; i < 2; i++) {
        int n = 0;
        if (!opt_u32(g, experts[i], &n, err)) return false;
        if (n > 0) return llc_fail(err, "%s %d: a mixture of experts is not supported (llamac runs dense Llama)", experts[i], n);
    }
    static const char *const lengths[] = {"llama.attention.key_length", "llama.attention.value_length"};
    for (int i = 0; i < 2; i++) {
        int n = hp->head_dim;
        if (!opt_u32(g, lengths[i], &n, err)) return false;
        if (n != hp->head_dim)
            return llc_fail(err, "%s %d is not the head size %d (embedding_length / head_count): not supported", lengths[i], n,
                            hp->head_dim);
    }
    llc_str type = {"none", 4};
    if (!opt_str(g, "llama.rope.scaling.type", &type, err)) return false;
    if (!llc_str_eq(type, "none") && !llc_str_eq(type, "linear")) {
        char shown[48];
        return llc_fail(err, "llama.rope.scaling.type '%s' is not supported (llamac implements Llama 3's rope_freqs)",
                        llc_clip(type.ptr, type.len, 32, shown, sizeof shown));
    }
    /* llama.cpp divides positions by the factor (rope.scale_linear is its older name); 0 and 1 leave them. */
    static const char *const factors[] = {"llama.rope.scaling.factor", "llama.rope.scale_linear"};
    for (int i = 0; i < 2; i++) {
        float f = 0;
        if (!opt_f32(g, factors[i], &f, err)) return false;
        if (!(f == 0 || f == 1)) return llc_fail(err, "%s %g: linear rope scaling is not supported", factors[i], f);
    }
    float attn = 1;
    if (!opt_f32(g, "llama.rope.scaling.attn_factor", &attn, err)) return false;
    if (attn != 1) return llc_fail(err, "llama.rope.scaling.attn_factor %g is not supported (llamac computes 1)", attn);
    return true;
}

typedef struct gguf_bind {
    llamac_model *m;
    llamac_error *err;
} gguf_bind;

static bool bind_matrix(void *ctx, const llc_tensor_desc *d, const char *name, llc_tensor *dst, int64_t rows, int64_t cols) {
    (void)d;
    llamac_model *m = ((gguf_bind *)ctx)->m;
    llamac_error *err = ((gguf_bind *)ctx)->err;
    const llc_gguf_tensor *t = llc_gguf_find_tensor(m->gguf, name);
    if (!t) return llc_fail(err, "missing tensor %s", name);
    if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] * t->ne[3] != 1)
        return llc_fail(err, "tensor %s has shape [%" PRId64 " x %" PRId64 "], expected [%" PRId64 " x %" PRId64 "]", name,
                        t->ne[0], t->ne[1], cols, rows);
    m->weight_bytes += t->nbytes;
    m->n_params += (uint64_t)(cols * rows);
    return llc_bind_matrix(dst, t->data, t->type, cols, rows, name, err);
}

static const float *bind_vector(void *ctx, const llc_tensor_desc *d, const char *name, int64_t n) {
    (void)d;
    llamac_model *m = ((gguf_bind *)ctx)->m;
    llamac_error *err = ((gguf_bind *)ctx)->err;
    const llc_gguf_tensor *t = llc_gguf_find_tensor(m->gguf, name);
    if (!t) {
        llc_fail(err, "missing tensor %s", name);
        return NULL;
    }
    if (t->ne[0] != n || t->ne[1] * t->ne[2] * t->ne[3] != 1) {
        llc_fail(err, "tensor %s has shape [%" PRId64 " x %" PRId64 "], expected [%" PRId64 "]", name, t->ne[0], t->ne[1], n);
        return NULL;
    }
    return llc_bind_vector(m, t->data, t->type, n, t->nbytes, err);
}

bool llc_gguf_read_hparams(const llc_gguf_file *g, const char *path, llc_hparams *hp, llamac_error *err) {
    llc_str arch;
    if (!llc_gguf_find(g, "general.architecture"))
        return llc_fail(err, "%s: missing metadata general.architecture (a vocabulary-only file? use it with tokenize)", path);
    if (!llc_gguf_get_str(g, "general.architecture", &arch, err)) return false;
    if (!llc_str_eq(arch, "llama"))
        return llc_fail(err, "%s: architecture '%.*s' is not supported (llamac runs 'llama')", path, (int)(arch.len > 32 ? 32 : arch.len), arch.ptr);

    hp->rms_eps = 1e-5f;
    hp->rope_theta = 10000.0f;
    hp->n_ctx_train = 2048;
    bool ok = req_u32(g, "llama.block_count", &hp->n_layers, err) && req_u32(g, "llama.embedding_length", &hp->dim, err) &&
              req_u32(g, "llama.feed_forward_length", &hp->ffn_dim, err) &&
              req_u32(g, "llama.attention.head_count", &hp->n_heads, err);
    if (ok) {
        hp->n_kv_heads = hp->n_heads;
        ok = opt_u32(g, "llama.attention.head_count_kv", &hp->n_kv_heads, err) &&
             opt_u32(g, "llama.context_length", &hp->n_ctx_train, err) &&
             opt_f32(g, "llama.attention.layer_norm_rms_epsilon", &hp->rms_eps, err) &&
             opt_f32(g, "llama.rope.freq_base", &hp->rope_theta, err);
    }
    if (!ok) {
        llc_error_prefix(err, "%s", path);
        return false;
    }
    if (hp->n_heads < 1 || hp->dim % hp->n_heads != 0)
        return llc_fail(err, "%s: head count %d does not divide the embedding size %d", path, hp->n_heads, hp->dim);
    hp->head_dim = hp->dim / hp->n_heads;
    hp->rope_dim = hp->head_dim;
    if (!opt_u32(g, "llama.rope.dimension_count", &hp->rope_dim, err)) return false;
    const char *emb_name = llc_t_tok_embd->name[LLC_NAMES_GGUF];
    const llc_gguf_tensor *emb = llc_gguf_find_tensor(g, emb_name);
    if (!emb) return llc_fail(err, "%s: missing tensor %s", path, emb_name);
    if (emb->ne[1] < 1 || emb->ne[1] > (1 << 24)) return llc_fail(err, "%s: %s has an invalid row count", path, emb_name);
    hp->n_vocab = (int)emb->ne[1];
    int vocab_key = hp->n_vocab;
    if (!opt_u32(g, "llama.vocab_size", &vocab_key, err)) return false;
    if (vocab_key != hp->n_vocab)
        return llc_fail(err, "%s: llama.vocab_size %d contradicts %s's %d rows", path, vocab_key, emb_name, hp->n_vocab);
    ok = llc_hparams_validate(hp, err) && refuse_unsupported(g, hp, err);
    /* As llama.cpp, which refuses a file with tensors its model did not take. */
    for (uint64_t i = 0; ok && i < g->n_tensors; i++)
        ok = llc_check_tensor_name(LLC_NAMES_GGUF, g->tensors[i].name.ptr, g->tensors[i].name.len, hp->n_layers, err);
    if (!ok) {
        llc_error_prefix(err, "%s", path);
        return false;
    }
    return true;
}

bool llc_model_load_gguf(llamac_model *m, const char *path, llamac_error *err) {
    m->format = "gguf";
    m->gguf = llc_gguf_open(path, err);
    if (!m->gguf) return false;
    const llc_gguf_file *g = m->gguf;
    llc_str name;
    if (llc_gguf_get_str(g, "general.name", &name, NULL))
        snprintf(m->name, sizeof m->name, "%.*s", (int)(name.len > 127 ? 127 : name.len), name.ptr);
    if (!llc_gguf_read_hparams(g, path, &m->hp, err)) return false;
    const llc_hparams *hp = &m->hp;
    bool ok = true;

    /* No output.weight: the logits use the embedding, as llama.cpp does. */
    m->tied = !llc_gguf_find_tensor(g, llc_t_output->name[LLC_NAMES_GGUF]);
    gguf_bind b = {m, err};
    const llc_binder binder = {bind_matrix, bind_vector, &b};
    ok = llc_model_bind(m, LLC_NAMES_GGUF, &binder, err);
    const char *rope = llc_t_rope_freqs->name[LLC_NAMES_GGUF];
    if (ok && llc_gguf_find_tensor(g, rope)) {
        m->rope_freqs = bind_vector(&b, llc_t_rope_freqs, rope, hp->rope_dim / 2);
        ok = m->rope_freqs != NULL;
        for (int i = 0; ok && i < hp->rope_dim / 2; i++)
            if (!(m->rope_freqs[i] > 0)) ok = llc_fail(err, "%s has a non-positive factor", rope);
    }
    if (!ok) {
        llc_error_prefix(err, "%s", path);
        return false;
    }
    if (!m->tok && llc_gguf_find(g, "tokenizer.ggml.model")) {
        m->tok = llc_tokenizer_from_gguf(g, err);
        if (!m->tok) {
            llc_error_prefix(err, "%s", path);
            return false;
        }
    }
    return true;
}


/* ---- writer ------------------------------------------------------------------------------------- */

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
