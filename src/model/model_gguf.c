/* Binding a GGUF (architecture "llama") to a model: hyperparameters from the llama.* keys, weights
 * used in place from the mapping after their shapes are checked against the hyperparameters. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kernels/types.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* A required integer key; err is set on absence or bad type. */
static bool req_u32(const llc_gguf_file *g, const char *key, int *out, llamac_error *err) {
    uint32_t v;
    if (err) err->message[0] = 0;
    if (!llc_gguf_get_u32(g, key, &v, err)) {
        if (!err || !err->message[0]) llc_fail(err, "missing metadata %s", key);
        return false;
    }
    if (v > INT32_MAX) return llc_fail(err, "metadata %s is out of range", key);
    *out = (int)v;
    return true;
}

static bool opt_u32(const llc_gguf_file *g, const char *key, int *out, llamac_error *err) {
    uint32_t v;
    if (err) err->message[0] = 0;
    if (llc_gguf_get_u32(g, key, &v, err)) {
        if (v > INT32_MAX) return llc_fail(err, "metadata %s is out of range", key);
        *out = (int)v;
        return true;
    }
    return !err || !err->message[0];
}

static bool opt_f32(const llc_gguf_file *g, const char *key, float *out, llamac_error *err) {
    if (err) err->message[0] = 0;
    llc_gguf_get_f32(g, key, out, err);
    return !err || !err->message[0];
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
    if (err) err->message[0] = 0;
    if (!llc_gguf_get_str(g, "llama.rope.scaling.type", &type, err) && err && err->message[0]) return false;
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

static const char *const gguf_global[] = {"token_embd.weight", "output_norm.weight", "output.weight", "rope_freqs.weight", NULL};
static const char *const gguf_layer[] = {"attn_norm.weight", "ffn_norm.weight", "attn_q.weight", "attn_k.weight",
                                         "attn_v.weight",    "attn_output.weight", "ffn_gate.weight", "ffn_up.weight",
                                         "ffn_down.weight",  NULL};

/* A vector of n floats (norm weights, rope factors): used in place when f32, converted otherwise. */
static const float *bind_vector(llamac_model *m, const char *name, int64_t n, bool required, llamac_error *err) {
    const llc_gguf_tensor *t = llc_gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (required) llc_fail(err, "missing tensor %s", name);
        return NULL;
    }
    if (t->ne[0] != n || t->ne[1] * t->ne[2] * t->ne[3] != 1) {
        llc_fail(err, "tensor %s has shape [%" PRId64 " x %" PRId64 "], expected [%" PRId64 "]", name, t->ne[0], t->ne[1], n);
        return NULL;
    }
    m->weight_bytes += t->nbytes;
    m->n_params += (uint64_t)n;
    if (t->type == LLC_F32) return t->data;
    float *f = llc_model_alloc(m, (size_t)n * sizeof *f, err);
    if (!f) return NULL;
    llc_type_get(t->type)->to_float(t->data, f, n);
    return f;
}

static bool bind(llamac_model *m, llc_tensor *dst, const char *name, int64_t cols, int64_t rows, llamac_error *err) {
    const llc_gguf_tensor *t = llc_gguf_find_tensor(m->gguf, name);
    if (!t) return llc_fail(err, "missing tensor %s", name);
    if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] * t->ne[3] != 1)
        return llc_fail(err, "tensor %s has shape [%" PRId64 " x %" PRId64 "], expected [%" PRId64 " x %" PRId64 "]", name,
                        t->ne[0], t->ne[1], cols, rows);
    m->weight_bytes += t->nbytes;
    m->n_params += (uint64_t)(cols * rows);
    return llc_bind_matrix(dst, t->data, t->type, cols, rows, name, err);
}

bool llc_model_load_gguf(llamac_model *m, const char *path, llamac_error *err) {
    m->format = "gguf";
    m->gguf = llc_gguf_open(path, err);
    if (!m->gguf) return false;
    const llc_gguf_file *g = m->gguf;
    llc_str arch;
    if (!llc_gguf_get_str(g, "general.architecture", &arch, err)) {
        if (!err || !err->message[0] || !llc_gguf_find(g, "general.architecture"))
            llc_fail(err, "%s: missing metadata general.architecture (a vocabulary-only file? use it with tokenize)", path);
        return false;
    }
    if (!llc_str_eq(arch, "llama"))
        return llc_fail(err, "%s: architecture '%.*s' is not supported (llamac runs 'llama')", path, (int)(arch.len > 32 ? 32 : arch.len), arch.ptr);
    llc_str name;
    if (llc_gguf_get_str(g, "general.name", &name, NULL))
        snprintf(m->name, sizeof m->name, "%.*s", (int)(name.len > 127 ? 127 : name.len), name.ptr);

    llc_hparams *hp = &m->hp;
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
    const llc_gguf_tensor *emb = llc_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return llc_fail(err, "%s: missing tensor token_embd.weight", path);
    if (emb->ne[1] < 1 || emb->ne[1] > (1 << 24)) return llc_fail(err, "%s: token_embd.weight has an invalid row count", path);
    hp->n_vocab = (int)emb->ne[1];
    int vocab_key = hp->n_vocab;
    if (!opt_u32(g, "llama.vocab_size", &vocab_key, err)) return false;
    if (vocab_key != hp->n_vocab)
        return llc_fail(err, "%s: llama.vocab_size %d contradicts token_embd.weight's %d rows", path, vocab_key, hp->n_vocab);
    ok = llc_hparams_validate(hp, err) && refuse_unsupported(g, hp, err);
    /* As llama.cpp, which refuses a file with tensors its model did not take. */
    const llc_tensor_names names = {gguf_global, "blk.", gguf_layer};
    for (uint64_t i = 0; ok && i < g->n_tensors; i++)
        ok = llc_check_tensor_name(&names, g->tensors[i].name.ptr, g->tensors[i].name.len, hp->n_layers, err);
    if (!ok) {
        llc_error_prefix(err, "%s", path);
        return false;
    }

    int64_t dim = hp->dim, kv_dim = (int64_t)hp->n_kv_heads * hp->head_dim, ffn = hp->ffn_dim;
    m->layers = calloc((size_t)hp->n_layers, sizeof *m->layers);
    if (!m->layers) return llc_fail(err, "out of memory");
    char nm[96];
    ok = bind(m, &m->tok_embd, "token_embd.weight", dim, hp->n_vocab, err) &&
         (m->output_norm = bind_vector(m, "output_norm.weight", dim, true, err)) != NULL;
    if (ok) {
        if (llc_gguf_find_tensor(g, "output.weight")) {
            ok = bind(m, &m->output, "output.weight", dim, hp->n_vocab, err);
        } else {
            m->output = m->tok_embd;
            m->tied = true;
        }
    }
    if (ok && llc_gguf_find_tensor(g, "rope_freqs.weight")) {
        m->rope_freqs = bind_vector(m, "rope_freqs.weight", hp->rope_dim / 2, true, err);
        ok = m->rope_freqs != NULL;
        for (int i = 0; ok && i < hp->rope_dim / 2; i++)
            if (!(m->rope_freqs[i] > 0)) ok = llc_fail(err, "rope_freqs.weight has a non-positive factor");
    }
    for (int l = 0; ok && l < hp->n_layers; l++) {
        llc_layer *L = &m->layers[l];
#define NM(s) (snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, s), nm)
        ok = (L->attn_norm = bind_vector(m, NM("attn_norm"), dim, true, err)) != NULL &&
             (L->ffn_norm = bind_vector(m, NM("ffn_norm"), dim, true, err)) != NULL &&
             bind(m, &L->wq, NM("attn_q"), dim, dim, err) && bind(m, &L->wk, NM("attn_k"), dim, kv_dim, err) &&
             bind(m, &L->wv, NM("attn_v"), dim, kv_dim, err) && bind(m, &L->wo, NM("attn_output"), dim, dim, err) &&
             bind(m, &L->w_gate, NM("ffn_gate"), dim, ffn, err) && bind(m, &L->w_up, NM("ffn_up"), dim, ffn, err) &&
             bind(m, &L->w_down, NM("ffn_down"), ffn, dim, err);
#undef NM
    }
    if (!ok) {
        llc_error_prefix(err, "%s", path);
        return false;
    }
    m->main_type = m->layers[0].wq.type;
    if (!m->tok && llc_gguf_find(g, "tokenizer.ggml.model")) {
        m->tok = llc_tokenizer_from_gguf(g, err);
        if (!m->tok) {
            llc_error_prefix(err, "%s", path);
            return false;
        }
    }
    return true;
}
