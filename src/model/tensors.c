/* Llama's weights, described once (model/tensors.h). */
#include "model/tensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* names (GGUF, Hugging Face, Meta); where the model keeps it; vector, optional, rope_rows; rows, cols; Meta's split */
#define T(gguf, hf, meta, where, vec, opt, rope, r, c, s)                                                                \
    {.name = {gguf, hf, meta}, where, .vector = vec, .optional = opt, .rope_rows = rope, .rows = LLC_X_##r,               \
     .cols = LLC_X_##c, .split = LLC_SPLIT_##s}
#define MODEL(field) .per_layer = false, .offset = offsetof(struct llamac_model, field)
#define LAYER(field) .per_layer = true, .offset = offsetof(llc_layer, field)
const llc_tensor_desc llc_tensors[] = {
    T("token_embd.weight", "model.embed_tokens.weight", "tok_embeddings.weight", MODEL(tok_embd), 0, 0, 0, VOCAB, DIM, EMBEDDING),
    T("output_norm.weight", "model.norm.weight", "norm.weight", MODEL(output_norm), 1, 0, 0, ONE, DIM, NONE),
    T("output.weight", "lm_head.weight", "output.weight", MODEL(output), 0, 0, 0, VOCAB, DIM, ROWS),
    /* Llama 3.1's rope scaling as stored factors; Hugging Face and Meta files record its parameters instead. */
    T("rope_freqs.weight", NULL, NULL, MODEL(rope_freqs), 1, 1, 0, ONE, ROPE_PAIRS, NONE),
    T("attn_norm.weight", "input_layernorm.weight", "attention_norm.weight", LAYER(attn_norm), 1, 0, 0, ONE, DIM, NONE),
    T("attn_q.weight", "self_attn.q_proj.weight", "attention.wq.weight", LAYER(wq), 0, 0, 1, DIM, DIM, ROWS),
    T("attn_k.weight", "self_attn.k_proj.weight", "attention.wk.weight", LAYER(wk), 0, 0, 1, KV_DIM, DIM, ROWS),
    T("attn_v.weight", "self_attn.v_proj.weight", "attention.wv.weight", LAYER(wv), 0, 0, 0, KV_DIM, DIM, ROWS),
    T("attn_output.weight", "self_attn.o_proj.weight", "attention.wo.weight", LAYER(wo), 0, 0, 0, DIM, DIM, COLS),
    T("ffn_norm.weight", "post_attention_layernorm.weight", "ffn_norm.weight", LAYER(ffn_norm), 1, 0, 0, ONE, DIM, NONE),
    T("ffn_gate.weight", "mlp.gate_proj.weight", "feed_forward.w1.weight", LAYER(w_gate), 0, 0, 0, FFN, DIM, ROWS),
    T("ffn_up.weight", "mlp.up_proj.weight", "feed_forward.w3.weight", LAYER(w_up), 0, 0, 0, FFN, DIM, ROWS),
    T("ffn_down.weight", "mlp.down_proj.weight", "feed_forward.w2.weight", LAYER(w_down), 0, 0, 0, DIM, FFN, COLS),
};
#undef T
#undef MODEL
#undef LAYER
const int llc_n_tensors = (int)(sizeof llc_tensors / sizeof llc_tensors[0]);
const llc_tensor_desc *const llc_t_tok_embd = &llc_tensors[0], *const llc_t_output = &llc_tensors[2],
                      *const llc_t_rope_freqs = &llc_tensors[3];

/* RoPE tables older files saved with the weights; llamac recomputes them from rope_theta. */
static const char *const ignored_global[LLC_N_NAMINGS] = {NULL, NULL, "rope.freqs"};
static const char *const ignored_layer[LLC_N_NAMINGS] = {NULL, "self_attn.rotary_emb.inv_freq", NULL};

const char *llc_layer_prefix(llc_naming nm) {
    static const char *const prefix[LLC_N_NAMINGS] = {"blk.", "model.layers.", "layers."};
    return prefix[nm];
}

const char *llc_tensor_name(const llc_tensor_desc *d, llc_naming nm, int layer, char *buf, size_t cap) {
    if (!d->name[nm]) return NULL;
    if (d->per_layer) snprintf(buf, cap, "%s%d.%s", llc_layer_prefix(nm), layer, d->name[nm]);
    else snprintf(buf, cap, "%s", d->name[nm]);
    return buf;
}

static bool same(const char *a, const char *s, size_t n) { return a && strlen(a) == n && !memcmp(a, s, n); }

/* The entry whose name in nm is the n bytes at s, among the whole-model or the per-layer ones. */
static const llc_tensor_desc *lookup(llc_naming nm, bool per_layer, const char *s, size_t n) {
    for (int i = 0; i < llc_n_tensors; i++)
        if (llc_tensors[i].per_layer == per_layer && same(llc_tensors[i].name[nm], s, n)) return &llc_tensors[i];
    return NULL;
}

/* For a name "<prefix><layer>.<suffix>" (a layer number without leading zeros), the layer and where the
 * suffix starts; -1 otherwise. */
static long layer_of(llc_naming nm, const char *name, size_t n, size_t *suffix) {
    const char *prefix = llc_layer_prefix(nm);
    size_t lp = strlen(prefix), i = lp;
    long layer = 0;
    if (n <= lp || memcmp(name, prefix, lp)) return -1;
    for (; i < n && i < lp + 5 && name[i] >= '0' && name[i] <= '9'; i++) layer = layer * 10 + (name[i] - '0');
    bool number = i > lp && (name[lp] != '0' || i == lp + 1) && i < n && name[i] == '.';
    *suffix = i + 1;
    return number ? layer : -1;
}

const llc_tensor_desc *llc_tensor_find(llc_naming nm, const char *name, int *layer) {
    size_t n = strlen(name), suffix = 0;
    *layer = -1;
    const llc_tensor_desc *d = lookup(nm, false, name, n);
    if (d) return d;
    long l = layer_of(nm, name, n, &suffix);
    if (l < 0 || !(d = lookup(nm, true, name + suffix, n - suffix))) return NULL;
    *layer = (int)l;
    return d;
}

int64_t llc_extent_of(const llc_hparams *hp, llc_extent x) {
    switch (x) {
    case LLC_X_DIM: return hp->dim;
    case LLC_X_KV_DIM: return (int64_t)hp->n_kv_heads * hp->head_dim;
    case LLC_X_FFN: return hp->ffn_dim;
    case LLC_X_VOCAB: return hp->n_vocab;
    case LLC_X_ROPE_PAIRS: return hp->rope_dim / 2;
    case LLC_X_ONE: break;
    }
    return 1;
}

static void *field_of(const llamac_model *m, const llc_tensor_desc *d, int layer) {
    char *base = d->per_layer ? (char *)&m->layers[layer] : (char *)m;
    return base + d->offset;
}

llc_tensor *llc_model_matrix(const llamac_model *m, const llc_tensor_desc *d, int layer) { return field_of(m, d, layer); }
const float **llc_model_vector(const llamac_model *m, const llc_tensor_desc *d, int layer) { return field_of(m, d, layer); }

static bool contains(const char *s, size_t n, const char *what) {
    size_t w = strlen(what);
    for (size_t i = 0; i + w <= n; i++)
        if (!memcmp(s + i, what, w)) return true;
    return false;
}

bool llc_check_tensor_name(llc_naming nm, const char *name, size_t n, int n_layers, llamac_error *err) {
    if (lookup(nm, false, name, n) || same(ignored_global[nm], name, n)) return true;
    size_t suffix = 0;
    long layer = layer_of(nm, name, n, &suffix);
    if (layer >= 0 && layer < n_layers &&
        (lookup(nm, true, name + suffix, n - suffix) || same(ignored_layer[nm], name + suffix, n - suffix)))
        return true;
    char shown[96];
    llc_clip(name, n, 80, shown, sizeof shown);
    const char *why = layer >= n_layers                          ? "a layer beyond the layer count"
                      : contains(name, n, "bias")                ? "a bias, which llamac's Llama does not have"
                      : contains(name, n, "expert") || contains(name, n, "_exps") || contains(name, n, "gate_inp") ||
                              contains(name, n, "router")
                          ? "a mixture-of-experts weight; llamac runs dense Llama"
                          : "not a weight of llamac's Llama";
    return llc_fail(err, "tensor %s is %s (refusing rather than leaving it out)", shown, why);
}

static bool bind_one(llamac_model *m, llc_naming nm, const llc_binder *b, const llc_tensor_desc *d, int layer) {
    char name[128];
    if (d == llc_t_output && m->tied) {
        m->output = m->tok_embd;
        return true;
    }
    if (d->optional || !llc_tensor_name(d, nm, layer, name, sizeof name)) return true;
    int64_t rows = llc_extent_of(&m->hp, d->rows), cols = llc_extent_of(&m->hp, d->cols);
    if (!d->vector) return b->matrix(b->ctx, d, name, llc_model_matrix(m, d, layer), rows, cols);
    return (*llc_model_vector(m, d, layer) = b->vector(b->ctx, d, name, cols)) != NULL;
}

bool llc_model_bind(llamac_model *m, llc_naming nm, const llc_binder *b, llamac_error *err) {
    if (!(m->layers = calloc((size_t)m->hp.n_layers, sizeof *m->layers))) return llc_fail(err, "out of memory");
    bool ok = true;
    for (int i = 0; ok && i < llc_n_tensors; i++)
        if (!llc_tensors[i].per_layer) ok = bind_one(m, nm, b, &llc_tensors[i], -1);
    for (int l = 0; ok && l < m->hp.n_layers; l++)
        for (int i = 0; ok && i < llc_n_tensors; i++)
            if (llc_tensors[i].per_layer) ok = bind_one(m, nm, b, &llc_tensors[i], l);
    if (ok) m->main_type = m->layers[0].wq.type;
    return ok;
}

int llc_tensor_refs_max(int n_layers) {
    int n = 0;
    for (int i = 0; i < llc_n_tensors; i++) n += llc_tensors[i].per_layer ? n_layers : 1;
    return n;
}

int llc_tensor_refs(int n_layers, bool tied, bool rope_freqs, llc_tensor_ref *out) {
    int n = 0;
    for (int i = 0; i < llc_n_tensors; i++) {
        const llc_tensor_desc *d = &llc_tensors[i];
        if (d->per_layer || (d == llc_t_output && tied) || (d == llc_t_rope_freqs && !rope_freqs)) continue;
        out[n++] = (llc_tensor_ref){d, -1};
    }
    for (int l = 0; l < n_layers; l++)
        for (int i = 0; i < llc_n_tensors; i++)
            if (llc_tensors[i].per_layer) out[n++] = (llc_tensor_ref){&llc_tensors[i], l};
    return n;
}
