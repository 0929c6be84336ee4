/*
 * Meta's original checkpoint folders, as Meta's download script and llama-models ship them:
 *
 *   params.json           dim, n_layers, n_heads, n_kv_heads, multiple_of, ffn_dim_multiplier, norm_eps,
 *                         rope_theta, use_scaled_rope, vocab_size (-1 in Llama 2: "from the tokenizer")
 *   consolidated.NN.pth   torch.save archives, one per model-parallel rank (formats/pickle.h)
 *   tokenizer.model       SentencePiece (Llama 2) or tiktoken (Llama 3)
 *
 * One shard is used in place from the mapping. Several are joined the way Meta's fairscale layers
 * split them: column-parallel weights (wq, wk, wv, w1, w3, output) hold a slice of the output rows,
 * row-parallel ones (wo, w2) a slice of the input columns; the embedding is split along the vocabulary
 * (Llama 3's VocabParallelEmbedding) or along dim (Llama 2's ParallelEmbedding), told apart by shape;
 * norms are replicated. Joined weights are copies. Meta's q/k rows are in the adjacent-pair RoPE
 * order that GGUF uses, so nothing is permuted.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/json.h"
#include "base/mapped_file.h"
#include "formats/model_writer.h"
#include "formats/pickle.h"
#include "kernels/types.h"
#include "model/model.h"

#define MAX_SHARDS 256

typedef struct meta_ctx {
    llamac_model *m;
    const char *dir;
    int n_shards;
    llc_torch_file shards[MAX_SHARDS];
    char paths[MAX_SHARDS][512];
    llamac_error *err;
} meta_ctx;

/* ---- params.json -------------------------------------------------------------------------------- */

typedef struct meta_params {
    int dim, n_layers, n_heads, n_kv_heads, vocab_size, multiple_of, max_seq_len;
    double ffn_dim_multiplier; /* 0: absent */
    double norm_eps, rope_theta;
    bool use_scaled_rope;
    double rope_scaling_factor, rope_high_freq_factor; /* 0: absent */
} meta_params;

/* A number key: absent or null leaves *out alone; otherwise it must be a number in [lo, hi] (and
 * integral when integral is set). */
static bool json_num(const cJSON *root, const char *key, double lo, double hi, bool integral, double *out, const char *path,
                     llamac_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsNumber(v)) return llc_fail(err, "%s: \"%s\" is not a number", path, key);
    double d = v->valuedouble;
    if (!(d >= lo && d <= hi) || (integral && d != floor(d))) return llc_fail(err, "%s: \"%s\" has an invalid value %g", path, key, d);
    *out = d;
    return true;
}

static bool json_int(const cJSON *root, const char *key, int lo, int hi, bool required, int *out, const char *path, llamac_error *err) {
    double d = NAN;
    if (!json_num(root, key, lo, hi, true, &d, path, err)) return false;
    if (isnan(d)) return required ? llc_fail(err, "%s: missing \"%s\"", path, key) : true;
    *out = (int)d;
    return true;
}

/* The SwiGLU hidden size exactly as Meta's FeedForward computes it (Python's int() truncates):
 * int(2 * 4 * dim / 3), times ffn_dim_multiplier, rounded up to a multiple of multiple_of. */
static int64_t meta_ffn_dim(int dim, int multiple_of, double multiplier) {
    int64_t h = (int64_t)8 * dim / 3;
    if (multiplier > 0) h = (int64_t)(multiplier * (double)h);
    return (int64_t)multiple_of * ((h + multiple_of - 1) / multiple_of);
}

static bool read_params(const char *dir, meta_params *p, llamac_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/params.json", dir);
    size_t len = 0;
    char *text = llc_read_file(path, 1u << 20, &len, err);
    if (!text) return false;
    cJSON *root = llc_json_parse(text, len, path, err);
    free(text);
    if (!root) return false;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return llc_fail(err, "%s: not a JSON object", path);
    }
    *p = (meta_params){.n_kv_heads = -1, .vocab_size = -1, .multiple_of = 256, .norm_eps = 1e-5, .rope_theta = 10000.0};
    const cJSON *scaled = cJSON_GetObjectItemCaseSensitive(root, "use_scaled_rope");
    bool ok = json_int(root, "dim", 1, 65536, true, &p->dim, path, err) &&
              json_int(root, "n_layers", 1, 1024, true, &p->n_layers, path, err) &&
              json_int(root, "n_heads", 1, 1024, true, &p->n_heads, path, err) &&
              json_int(root, "n_kv_heads", 1, 1024, false, &p->n_kv_heads, path, err) &&
              json_int(root, "vocab_size", -1, 1 << 24, false, &p->vocab_size, path, err) &&
              json_int(root, "multiple_of", 1, 1 << 20, false, &p->multiple_of, path, err) &&
              json_int(root, "max_seq_len", 1, 1 << 30, false, &p->max_seq_len, path, err) &&
              json_num(root, "ffn_dim_multiplier", 1e-3, 1e3, false, &p->ffn_dim_multiplier, path, err) &&
              json_num(root, "norm_eps", 1e-12, 0.5, false, &p->norm_eps, path, err) &&
              json_num(root, "rope_theta", 1.0, 1e11, false, &p->rope_theta, path, err) &&
              json_num(root, "rope_scaling_factor", 1.0, 1e4, false, &p->rope_scaling_factor, path, err) &&
              json_num(root, "rope_high_freq_factor", 1.0 + 1e-6, 1e4, false, &p->rope_high_freq_factor, path, err);
    if (ok && scaled && !cJSON_IsNull(scaled)) {
        if (!cJSON_IsBool(scaled)) ok = llc_fail(err, "%s: \"use_scaled_rope\" is not true or false", path);
        else p->use_scaled_rope = cJSON_IsTrue(scaled);
    }
    /* Keys of Meta's later releases for what llamac's forward pass does not compute: refused unless
     * they hold their neutral value (null, false, 0, an empty object). */
    static const char moe[] = "a mixture of experts is not supported; llamac runs dense Llama";
    static const struct {
        const char *key, *what;
    } unsupported[] = {
        {"moe_args", moe}, {"moe", moe}, {"num_experts", moe},
        {"use_qk_norm", "normalizing queries and keys (Llama 4) is not supported"},
        {"nope_layer_interval", "layers without RoPE (Llama 4) are not supported"},
        {"attention_chunk_size", "chunked attention (Llama 4) is not supported"},
        {"vision_args", "a vision model is not supported"},
        {"vision_chunk_size", "a vision model is not supported"},
        {"vision_num_cross_attention_layers", "a vision model is not supported"},
        {"quantization_args", "a quantized checkpoint is not supported (llamac reads float32, float16 and bfloat16)"},
        {"lora_args", "LoRA adapters are not supported"},
    };
    for (size_t i = 0; ok && i < sizeof unsupported / sizeof unsupported[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, unsupported[i].key);
        bool neutral = !v || cJSON_IsNull(v) || cJSON_IsFalse(v) || (cJSON_IsNumber(v) && v->valuedouble == 0) ||
                       (cJSON_IsObject(v) && !v->child);
        if (!neutral) ok = llc_fail(err, "%s: \"%s\" is set: %s", path, unsupported[i].key, unsupported[i].what);
    }
    if (ok && p->vocab_size == 0) ok = llc_fail(err, "%s: \"vocab_size\" is 0", path);
    if (ok && p->n_kv_heads < 0) p->n_kv_heads = p->n_heads;
    cJSON_Delete(root);
    return ok;
}

/* ---- shards ------------------------------------------------------------------------------------- */

/* consolidated.NN.pth -> NN, or -1 for any other name. */
static int shard_index(const char *name) {
    const char *pre = "consolidated.", *suf = ".pth";
    size_t n = strlen(name), lp = strlen(pre), ls = strlen(suf);
    if (n <= lp + ls || strncmp(name, pre, lp) != 0 || strcmp(name + n - ls, suf) != 0 || n - lp - ls > 4) return -1;
    int v = 0;
    for (size_t i = lp; i < n - ls; i++) {
        if (name[i] < '0' || name[i] > '9') return -1;
        v = v * 10 + (name[i] - '0');
    }
    return v;
}

static bool find_shards(meta_ctx *c) {
    DIR *d = opendir(c->dir);
    if (!d) return llc_fail(c->err, "%s: cannot list the folder", c->dir);
    int count = 0, max_index = -1;
    bool ok = true;
    for (struct dirent *e; ok && (e = readdir(d)) != NULL;) {
        int i = shard_index(e->d_name);
        if (i < 0) continue;
        if (i >= MAX_SHARDS) ok = llc_fail(c->err, "%s: %s: more than %d shards", c->dir, e->d_name, MAX_SHARDS);
        else if (c->paths[i][0]) ok = llc_fail(c->err, "%s: two files for shard %d", c->dir, i);
        else {
            snprintf(c->paths[i], sizeof c->paths[i], "%s/%s", c->dir, e->d_name);
            count++;
            if (i > max_index) max_index = i;
        }
    }
    closedir(d);
    if (!ok) return false;
    if (count == 0) return llc_fail(c->err, "%s: no consolidated.00.pth beside params.json", c->dir);
    if (max_index != count - 1) return llc_fail(c->err, "%s: the consolidated.NN.pth shards are not numbered 00 to %02d", c->dir, count - 1);
    c->n_shards = count;
    return true;
}

/* ---- tensors ------------------------------------------------------------------------------------ */

typedef enum { REPLICATED, SPLIT_ROWS, SPLIT_COLS, SPLIT_EMBEDDING } split_kind;

static const llc_torch_tensor *tensor_in(meta_ctx *c, int s, const char *name, int n_dims) {
    const llc_torch_tensor *t = llc_torch_find(&c->shards[s], name);
    if (!t) {
        llc_fail(c->err, "%s: missing tensor %s", c->paths[s], name);
        return NULL;
    }
    if (t->type != LLC_F32 && t->type != LLC_F16 && t->type != LLC_BF16) {
        llc_fail(c->err, "%s: tensor %s is stored as torch.%s; llamac reads float32, float16 and bfloat16 weights", c->paths[s],
                 name, t->dtype);
        return NULL;
    }
    if (t->n_dims != n_dims) {
        llc_fail(c->err, "%s: tensor %s has %d dimensions, expected %d", c->paths[s], name, t->n_dims, n_dims);
        return NULL;
    }
    return t;
}

static bool aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

/* Binds the [rows x cols] matrix name, joining the shards along the axis Meta split it. */
static bool bind_matrix(meta_ctx *c, llc_tensor *dst, const char *name, split_kind how, int64_t rows, int64_t cols) {
    int ns = how == REPLICATED ? 1 : c->n_shards;
    const llc_torch_tensor *ts[MAX_SHARDS];
    for (int s = 0; s < ns; s++) {
        if (!(ts[s] = tensor_in(c, s, name, 2))) return false;
        if (ts[s]->type != ts[0]->type)
            return llc_fail(c->err, "%s: tensor %s is torch.%s but torch.%s in %s", c->paths[s], name, ts[s]->dtype, ts[0]->dtype,
                            c->paths[0]);
    }
    if (how == SPLIT_EMBEDDING) {
        how = SPLIT_ROWS;
        for (int s = 0; s < ns; s++)
            if (ts[s]->shape[1] != cols) how = SPLIT_COLS;
    }
    if (ns == 1 && (ts[0]->shape[0] != rows || ts[0]->shape[1] != cols))
        return llc_fail(c->err, "%s: tensor %s has shape [%" PRId64 ", %" PRId64 "], expected [%" PRId64 ", %" PRId64 "]", c->paths[0],
                        name, ts[0]->shape[0], ts[0]->shape[1], rows, cols);
    int64_t sum = 0;
    for (int s = 0; s < ns; s++) {
        bool fits = how == SPLIT_COLS ? ts[s]->shape[0] == rows : ts[s]->shape[1] == cols;
        sum += how == SPLIT_COLS ? ts[s]->shape[1] : ts[s]->shape[0];
        if (!fits || sum > (how == SPLIT_COLS ? cols : rows))
            return llc_fail(c->err, "%s: tensor %s has shape [%" PRId64 ", %" PRId64 "], which is not a %s slice of [%" PRId64
                            ", %" PRId64 "]", c->paths[s], name, ts[s]->shape[0], ts[s]->shape[1],
                            how == SPLIT_COLS ? "column" : "row", rows, cols);
    }
    if (sum != (how == SPLIT_COLS ? cols : rows))
        return llc_fail(c->err, "%s: tensor %s: the %d shards hold %" PRId64 " of its %" PRId64 " %s", c->dir, name, ns, sum,
                        how == SPLIT_COLS ? cols : rows, how == SPLIT_COLS ? "columns" : "rows");
    uint32_t type = ts[0]->type;
    size_t es = llc_type_get(type)->type_size;
    uint64_t total = (uint64_t)rows * (uint64_t)cols * es;
    const void *data = ts[0]->data;
    if (ns > 1 || !aligned(data, es)) {
        /* Joined shards (or bytes a hand-made zip left unaligned) need a buffer of their own. */
        uint8_t *buf = llc_model_alloc(c->m, (size_t)total, c->err);
        if (!buf) return false;
        if (how == SPLIT_COLS) {
            int64_t off = 0;
            for (int s = 0; s < ns; s++) {
                size_t w = (size_t)ts[s]->shape[1] * es;
                for (int64_t r = 0; r < rows; r++) memcpy(buf + ((size_t)r * (size_t)cols + (size_t)off) * es, ts[s]->data + (size_t)r * w, w);
                off += ts[s]->shape[1];
            }
        } else {
            size_t at = 0;
            for (int s = 0; s < ns; s++) {
                memcpy(buf + at, ts[s]->data, (size_t)ts[s]->nbytes);
                at += (size_t)ts[s]->nbytes;
            }
        }
        data = buf;
    }
    c->m->weight_bytes += total;
    c->m->n_params += (uint64_t)rows * (uint64_t)cols;
    if (!llc_bind_matrix(dst, data, type, cols, rows, name, c->err)) {
        llc_error_prefix(c->err, "%s", c->paths[0]);
        return false;
    }
    return true;
}

/* A norm weight (replicated in every shard: shard 0's is used), as f32. */
static const float *bind_vector(meta_ctx *c, const char *name, int64_t n) {
    const llc_torch_tensor *t = tensor_in(c, 0, name, 1);
    if (!t) return NULL;
    if (t->shape[0] != n) {
        llc_fail(c->err, "%s: tensor %s has %" PRId64 " elements, expected %" PRId64, c->paths[0], name, t->shape[0], n);
        return NULL;
    }
    c->m->weight_bytes += t->nbytes;
    c->m->n_params += (uint64_t)n;
    if (t->type == LLC_F32 && aligned(t->data, 4)) return (const float *)t->data;
    float *f = llc_model_alloc(c->m, (size_t)n * sizeof *f, c->err);
    if (!f) return NULL;
    if (t->type == LLC_F32) {
        memcpy(f, t->data, (size_t)t->nbytes);
    } else if (aligned(t->data, 2)) {
        llc_type_get(t->type)->to_float(t->data, f, n);
    } else {
        void *tmp = llc_model_alloc(c->m, (size_t)t->nbytes, c->err);
        if (!tmp) return NULL;
        memcpy(tmp, t->data, (size_t)t->nbytes);
        llc_type_get(t->type)->to_float(tmp, f, n);
    }
    return f;
}

/* Llama 3.2 1B and 3B share the output projection with the embedding: Meta's file then holds
 * output.weight as a view of the same storage, or no output.weight at all. */
static bool output_is_tied(meta_ctx *c) {
    for (int s = 0; s < c->n_shards; s++) {
        const llc_torch_tensor *o = llc_torch_find(&c->shards[s], "output.weight"),
                               *e = llc_torch_find(&c->shards[s], "tok_embeddings.weight");
        if (!o) continue;
        if (!e || o->data != e->data || o->type != e->type || o->n_dims != e->n_dims || o->shape[0] != e->shape[0] ||
            o->shape[1] != e->shape[1])
            return false;
    }
    return true;
}

/* The vocabulary size from the embedding: all its rows (split along the vocabulary, or one shard),
 * or shard 0's rows when the shards split it along dim (Llama 2). */
static bool embedding_rows(meta_ctx *c, int64_t *vocab) {
    const llc_torch_tensor *t0 = tensor_in(c, 0, "tok_embeddings.weight", 2);
    if (!t0) return false;
    if (c->n_shards > 1 && t0->shape[1] != c->m->hp.dim) {
        *vocab = t0->shape[0];
        return true;
    }
    *vocab = 0;
    for (int s = 0; s < c->n_shards; s++) {
        const llc_torch_tensor *t = tensor_in(c, s, "tok_embeddings.weight", 2);
        if (!t) return false;
        *vocab += t->shape[0];
    }
    return true;
}

/* rope.freqs: Llama 2's RoPE table, saved with the weights and recomputed from rope_theta. */
static const char *const meta_global[] = {"tok_embeddings.weight", "norm.weight", "output.weight", "rope.freqs", NULL};
static const char *const meta_layer[] = {"attention_norm.weight", "ffn_norm.weight",     "attention.wq.weight",
                                         "attention.wk.weight",   "attention.wv.weight", "attention.wo.weight",
                                         "feed_forward.w1.weight", "feed_forward.w2.weight", "feed_forward.w3.weight", NULL};

static bool check_tensor_names(meta_ctx *c) {
    const llc_tensor_names names = {meta_global, "layers.", meta_layer};
    for (int s = 0; s < c->n_shards; s++)
        for (size_t i = 0; i < c->shards[s].n_tensors; i++) {
            const llc_torch_tensor *t = &c->shards[s].tensors[i];
            if (!llc_check_tensor_name(&names, t->name, t->name_len, c->m->hp.n_layers, c->err)) {
                llc_error_prefix(c->err, "%s", c->paths[s]);
                return false;
            }
        }
    return true;
}

static bool load(meta_ctx *c) {
    llamac_model *m = c->m;
    meta_params p;
    if (!read_params(c->dir, &p, c->err) || !find_shards(c)) return false;
    for (int s = 0; s < c->n_shards; s++) {
        const llc_mapped_file *f = llc_model_map(m, c->paths[s], c->err);
        if (!f || !llc_torch_open(&c->shards[s], f->data, f->size, c->paths[s], c->err)) return false;
    }
    llc_hparams *hp = &m->hp;
    hp->n_layers = p.n_layers;
    hp->dim = p.dim;
    hp->n_heads = p.n_heads;
    hp->n_kv_heads = p.n_kv_heads;
    hp->head_dim = p.dim / p.n_heads;
    hp->rope_dim = hp->head_dim;
    hp->rms_eps = (float)p.norm_eps;
    hp->rope_theta = (float)p.rope_theta;
    int64_t ffn = meta_ffn_dim(p.dim, p.multiple_of, p.ffn_dim_multiplier);
    if (ffn < 1 || ffn > (1 << 20)) {
        return llc_fail(c->err, "%s/params.json: multiple_of %d and ffn_dim_multiplier %g give an invalid feed-forward size %" PRId64,
                        c->dir, p.multiple_of, p.ffn_dim_multiplier, ffn);
    }
    hp->ffn_dim = (int)ffn;
    int64_t vocab;
    if (!embedding_rows(c, &vocab)) return false;
    if (p.vocab_size > 0 && vocab != p.vocab_size)
        return llc_fail(c->err, "%s/params.json: vocab_size %d contradicts tok_embeddings.weight's %" PRId64 " rows", c->dir,
                        p.vocab_size, vocab);
    if (vocab < 1 || vocab > (1 << 24)) return llc_fail(c->err, "%s: tok_embeddings.weight has an invalid row count", c->paths[0]);
    hp->n_vocab = (int)vocab;
    /* params.json does not record the training context (max_seq_len is a run-time choice in Meta's
     * code) unless someone added it: Llama 3.1+ (scaled RoPE) 131072, Llama 3 8192, Llama 2 4096. */
    hp->n_ctx_train = p.max_seq_len > 0 ? p.max_seq_len : p.use_scaled_rope ? 131072 : vocab >= 128000 ? 8192 : 4096;
    if (!llc_hparams_validate(hp, c->err)) {
        llc_error_prefix(c->err, "%s/params.json", c->dir);
        return false;
    }

    if (!check_tensor_names(c)) return false;

    int64_t dim = hp->dim, kv_dim = (int64_t)hp->n_kv_heads * hp->head_dim;
    if (!(m->layers = calloc((size_t)hp->n_layers, sizeof *m->layers))) return llc_fail(c->err, "out of memory");
    if (!bind_matrix(c, &m->tok_embd, "tok_embeddings.weight", SPLIT_EMBEDDING, vocab, dim) ||
        !(m->output_norm = bind_vector(c, "norm.weight", dim)))
        return false;
    if (output_is_tied(c)) {
        m->output = m->tok_embd;
        m->tied = true;
    } else if (!bind_matrix(c, &m->output, "output.weight", SPLIT_ROWS, vocab, dim)) {
        return false;
    }
    char nm[96];
    for (int l = 0; l < hp->n_layers; l++) {
        llc_layer *L = &m->layers[l];
#define NM(s) (snprintf(nm, sizeof nm, "layers.%d.%s.weight", l, s), nm)
        bool ok = (L->attn_norm = bind_vector(c, NM("attention_norm"), dim)) != NULL &&
                  (L->ffn_norm = bind_vector(c, NM("ffn_norm"), dim)) != NULL &&
                  bind_matrix(c, &L->wq, NM("attention.wq"), SPLIT_ROWS, dim, dim) &&
                  bind_matrix(c, &L->wk, NM("attention.wk"), SPLIT_ROWS, kv_dim, dim) &&
                  bind_matrix(c, &L->wv, NM("attention.wv"), SPLIT_ROWS, kv_dim, dim) &&
                  bind_matrix(c, &L->wo, NM("attention.wo"), SPLIT_COLS, dim, dim) &&
                  bind_matrix(c, &L->w_gate, NM("feed_forward.w1"), SPLIT_ROWS, ffn, dim) &&
                  bind_matrix(c, &L->w_up, NM("feed_forward.w3"), SPLIT_ROWS, ffn, dim) &&
                  bind_matrix(c, &L->w_down, NM("feed_forward.w2"), SPLIT_COLS, dim, ffn);
#undef NM
        if (!ok) return false;
    }
    m->main_type = m->layers[0].wq.type;

    if (p.use_scaled_rope) {
        /* Meta's reference code hard-codes factor 8 (Llama 3.1, 3.2 11B/90B, 3.3); Llama 3.2 1B and 3B
         * were trained with 32 (their Hugging Face config; llama-models issue #166) and are the only
         * Llama 3 models with a tied output, which tells them apart. Llama 4's rope_scaling_factor and
         * rope_high_freq_factor keys win when present. */
        float factor = p.rope_scaling_factor > 0 ? (float)p.rope_scaling_factor : m->tied ? 32.0f : 8.0f;
        float high = p.rope_high_freq_factor > 0 ? (float)p.rope_high_freq_factor : 4.0f;
        float *f = llc_model_alloc(m, (size_t)(hp->rope_dim / 2) * sizeof *f, c->err);
        if (!f) return false;
        llc_llama3_rope_factors(hp->rope_theta, hp->rope_dim, factor, 1.0f, high, 8192, f);
        m->rope_freqs = f;
    }

    /* The tokenizer beside the weights (SentencePiece for Llama 2, tiktoken for Llama 3); without one
     * the caller's tokenizer path applies. */
    char tpath[4096];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.model", c->dir);
    struct stat st;
    if (!m->tok && stat(tpath, &st) == 0 && !(m->tok = llamac_tokenizer_load(tpath, c->err))) return false;
    return true;
}

bool llc_model_load_meta(llamac_model *m, const char *dir, llamac_error *err) {
    m->format = "meta";
    meta_ctx *c = calloc(1, sizeof *c);
    if (!c) return llc_fail(err, "out of memory");
    c->m = m;
    c->dir = dir;
    c->err = err;
    bool ok = load(c);
    /* The tensor lists point into the mappings, which the model keeps; the lists themselves go. */
    for (int s = 0; s < MAX_SHARDS; s++) llc_torch_close(&c->shards[s]);
    free(c);
    return ok;
}
