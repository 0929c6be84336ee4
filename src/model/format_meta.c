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
 *
 * Writing: params.json, consolidated.NN.pth (as torch.save writes them: llc_torch_write, Meta's top
 * folder "consolidated") and tokenizer.model. LLAMAC_META_SHARDS=N (default 1) splits the weights into
 * N model-parallel shards the way Meta's fairscale layers do, so that joining them is tested.
 */
#include <cjson/cJSON.h>
#include <errno.h>
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
#include "base/outfile.h"
#include "formats/pickle.h"
#include "kernels/types.h"
#include "tokenizer/tokenizer.h"
#include "model/model.h"
#include "model/model_writer.h"
#include "model/tensors.h"

#define MAX_SHARDS 256       /* read */
#define MAX_WRITE_SHARDS 64  /* LLAMAC_META_SHARDS */

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
static bool bind_matrix(meta_ctx *c, llc_tensor *dst, const char *name, llc_meta_split how, int64_t rows, int64_t cols) {
    int ns = how == LLC_SPLIT_NONE ? 1 : c->n_shards;
    const llc_torch_tensor *ts[MAX_SHARDS];
    for (int s = 0; s < ns; s++) {
        if (!(ts[s] = tensor_in(c, s, name, 2))) return false;
        if (ts[s]->type != ts[0]->type)
            return llc_fail(c->err, "%s: tensor %s is torch.%s but torch.%s in %s", c->paths[s], name, ts[s]->dtype, ts[0]->dtype,
                            c->paths[0]);
    }
    if (how == LLC_SPLIT_EMBEDDING) {
        how = LLC_SPLIT_ROWS;
        for (int s = 0; s < ns; s++)
            if (ts[s]->shape[1] != cols) how = LLC_SPLIT_COLS;
    }
    if (ns == 1 && (ts[0]->shape[0] != rows || ts[0]->shape[1] != cols))
        return llc_fail(c->err, "%s: tensor %s has shape [%" PRId64 ", %" PRId64 "], expected [%" PRId64 ", %" PRId64 "]", c->paths[0],
                        name, ts[0]->shape[0], ts[0]->shape[1], rows, cols);
    int64_t sum = 0;
    for (int s = 0; s < ns; s++) {
        bool fits = how == LLC_SPLIT_COLS ? ts[s]->shape[0] == rows : ts[s]->shape[1] == cols;
        sum += how == LLC_SPLIT_COLS ? ts[s]->shape[1] : ts[s]->shape[0];
        if (!fits || sum > (how == LLC_SPLIT_COLS ? cols : rows))
            return llc_fail(c->err, "%s: tensor %s has shape [%" PRId64 ", %" PRId64 "], which is not a %s slice of [%" PRId64
                            ", %" PRId64 "]", c->paths[s], name, ts[s]->shape[0], ts[s]->shape[1],
                            how == LLC_SPLIT_COLS ? "column" : "row", rows, cols);
    }
    if (sum != (how == LLC_SPLIT_COLS ? cols : rows))
        return llc_fail(c->err, "%s: tensor %s: the %d shards hold %" PRId64 " of its %" PRId64 " %s", c->dir, name, ns, sum,
                        how == LLC_SPLIT_COLS ? cols : rows, how == LLC_SPLIT_COLS ? "columns" : "rows");
    uint32_t type = ts[0]->type;
    size_t es = llc_type_get(type)->type_size;
    uint64_t total = (uint64_t)rows * (uint64_t)cols * es;
    const void *data = ts[0]->data;
    if (ns > 1 || !aligned(data, es)) {
        /* Joined shards (or bytes a hand-made zip left unaligned) need a buffer of their own. */
        uint8_t *buf = llc_model_alloc(c->m, (size_t)total, c->err);
        if (!buf) return false;
        if (how == LLC_SPLIT_COLS) {
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

/* A norm weight (replicated in every shard: shard 0's is used). */
static const float *bind_vector(meta_ctx *c, const char *name, int64_t n) {
    const llc_torch_tensor *t = tensor_in(c, 0, name, 1);
    if (!t) return NULL;
    if (t->shape[0] != n) {
        llc_fail(c->err, "%s: tensor %s has %" PRId64 " elements, expected %" PRId64, c->paths[0], name, t->shape[0], n);
        return NULL;
    }
    return llc_bind_vector(c->m, t->data, t->type, n, t->nbytes, c->err);
}

static bool bind_matrix_cb(void *ctx, const llc_tensor_desc *d, const char *name, llc_tensor *dst, int64_t rows, int64_t cols) {
    return bind_matrix(ctx, dst, name, d->split, rows, cols);
}

static const float *bind_vector_cb(void *ctx, const llc_tensor_desc *d, const char *name, int64_t n) {
    (void)d;
    return bind_vector(ctx, name, n);
}

/* Llama 3.2 1B and 3B share the output projection with the embedding: Meta's file then holds
 * output.weight as a view of the same storage, or no output.weight at all. */
static bool output_is_tied(meta_ctx *c) {
    for (int s = 0; s < c->n_shards; s++) {
        const llc_torch_tensor *o = llc_torch_find(&c->shards[s], llc_t_output->name[LLC_NAMES_META]),
                               *e = llc_torch_find(&c->shards[s], llc_t_tok_embd->name[LLC_NAMES_META]);
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
    const llc_torch_tensor *t0 = tensor_in(c, 0, llc_t_tok_embd->name[LLC_NAMES_META], 2);
    if (!t0) return false;
    if (c->n_shards > 1 && t0->shape[1] != c->m->hp.dim) {
        *vocab = t0->shape[0];
        return true;
    }
    *vocab = 0;
    for (int s = 0; s < c->n_shards; s++) {
        const llc_torch_tensor *t = tensor_in(c, s, llc_t_tok_embd->name[LLC_NAMES_META], 2);
        if (!t) return false;
        *vocab += t->shape[0];
    }
    return true;
}

static bool check_tensor_names(meta_ctx *c) {
    for (int s = 0; s < c->n_shards; s++)
        for (size_t i = 0; i < c->shards[s].n_tensors; i++) {
            const llc_torch_tensor *t = &c->shards[s].tensors[i];
            if (!llc_check_tensor_name(LLC_NAMES_META, t->name, t->name_len, c->m->hp.n_layers, c->err)) {
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
        return llc_fail(c->err, "%s/params.json: vocab_size %d contradicts %s's %" PRId64 " rows", c->dir, p.vocab_size,
                        llc_t_tok_embd->name[LLC_NAMES_META], vocab);
    if (vocab < 1 || vocab > (1 << 24))
        return llc_fail(c->err, "%s: %s has an invalid row count", c->paths[0], llc_t_tok_embd->name[LLC_NAMES_META]);
    hp->n_vocab = (int)vocab;
    /* params.json does not record the training context (max_seq_len is a run-time choice in Meta's
     * code) unless someone added it: Llama 3.1+ (scaled RoPE) 131072, Llama 3 8192, Llama 2 4096. */
    hp->n_ctx_train = p.max_seq_len > 0 ? p.max_seq_len : p.use_scaled_rope ? 131072 : vocab >= 128000 ? 8192 : 4096;
    if (!llc_hparams_validate(hp, c->err)) {
        llc_error_prefix(c->err, "%s/params.json", c->dir);
        return false;
    }

    if (!check_tensor_names(c)) return false;

    m->tied = output_is_tied(c);
    const llc_binder b = {bind_matrix_cb, bind_vector_cb, c};
    if (!llc_model_bind(m, LLC_NAMES_META, &b, c->err)) return false;

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

/* ---- writer ------------------------------------------------------------------------------------- */

/* ---- the model ---------------------------------------------------------------------------------- */

typedef struct out_tensor {
    char name[64];   /* Meta's name */
    int src;         /* index in src->tensors */
    llc_meta_split split;
    int alias;       /* >= 0: shares the storage of that out_tensor (tied output) */
} out_tensor;

/* Shortest decimal that reads back as the same double (params.json stays readable: 1.3, not
 * 1.3000000000000000444). */
static void fmt_double(char *out, size_t cap, double v) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v) break;
    }
    if (!strpbrk(out, ".eEn")) strncat(out, ".0", cap - strlen(out) - 1);
}

static void fmt_float(char *out, size_t cap, float v) {
    if (v == floorf(v) && fabsf(v) < 1e9f) {
        snprintf(out, cap, "%.1f", (double)v); /* 500000.0 rather than 5e+05 */
        return;
    }
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(out, cap, "%.*g", prec, (double)v);
        if (strtof(out, NULL) == v) break;
    }
    if (!strpbrk(out, ".eEn")) strncat(out, ".0", cap - strlen(out) - 1);
}

/* multiple_of and ffn_dim_multiplier that make Meta's formula give ffn exactly: multiple_of 256 or
 * 1024 as Meta uses when they can, a multiplier with few decimals (Meta's 1.3, 1.5) when needed. */
static bool choose_ffn(int dim, int ffn, int *multiple_of, double *mult) {
    static const int mos[] = {256, 1024, 512, 128, 64, 32, 16, 8, 4, 2, 1};
    int64_t base = (int64_t)8 * dim / 3;
    for (size_t i = 0; i < sizeof mos / sizeof mos[0]; i++) {
        int mo = mos[i];
        if (ffn % mo) continue;
        if (meta_ffn_dim(dim, mo, 0) == ffn) {
            *multiple_of = mo;
            *mult = 0;
            return true;
        }
        for (int dec = 1; dec <= 6; dec++) {
            double scale = pow(10, dec);
            double m = round((double)ffn / (double)base * scale) / scale;
            for (int d = -2; d <= 2; d++) {
                double c = m + d / scale;
                char s[32];
                fmt_double(s, sizeof s, c);
                c = strtod(s, NULL); /* what the reader will see */
                if (c > 0 && meta_ffn_dim(dim, mo, c) == ffn) {
                    *multiple_of = mo;
                    *mult = c;
                    return true;
                }
            }
        }
    }
    return false;
}

typedef enum { TOK_COPY_SPM, TOK_COPY_TIKTOKEN, TOK_DERIVE_TIKTOKEN } tok_mode;

/* What to write as tokenizer.model: a copy of a SentencePiece .model or tiktoken file, the tiktoken
 * file beside a tokenizer.json (Meta's layout of the Llama 3 download), or one derived from the
 * vocabulary's byte strings. */
static bool choose_tokenizer(const llc_model_src *src, tok_mode *mode, char *copy_from, size_t cap, llamac_error *err) {
    const char *f = src->tokenizer_file;
    enum llc_tok_format kind = LLC_TOKFMT_UNKNOWN;
    if (f) llc_tokenizer_detect_file(f, &kind, NULL);
    if (kind == LLC_TOKFMT_SPM || kind == LLC_TOKFMT_TIKTOKEN) {
        snprintf(copy_from, cap, "%s", f);
        *mode = kind == LLC_TOKFMT_SPM ? TOK_COPY_SPM : TOK_COPY_TIKTOKEN;
        return true;
    }
    if (kind == LLC_TOKFMT_HF_JSON) {
        const char *slash = strrchr(f, '/');
        int dl = slash ? (int)(slash - f + 1) : 0;
        snprintf(copy_from, cap, "%.*stokenizer.model", dl, f);
        enum llc_tok_format beside = LLC_TOKFMT_UNKNOWN;
        llc_tokenizer_detect_file(copy_from, &beside, NULL);
        *mode = beside == LLC_TOKFMT_TIKTOKEN ? TOK_COPY_TIKTOKEN
                                              : TOK_DERIVE_TIKTOKEN; /* a byte-level BPE tokenizer.json: Llama 3 */
        return true;
    }
    return llc_fail(err, "cannot write tokenizer.model for the vocabulary from %s (needs a SentencePiece .model, a tiktoken file or a tokenizer.json)",
                    f ? f : "(no file)");
}

/* tiktoken's format: one "base64(bytes) rank" line per mergeable token, ids 0.. up to the first
 * special (control) token, which decodes to nothing. */
static bool derive_tiktoken(const llamac_tokenizer *tok, const char *to, llamac_error *err) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    llc_outfile o;
    if (!llc_outfile_open(&o, to, err)) return false;
    FILE *f = o.f;
    int n = llamac_tokenizer_n_vocab(tok);
    for (int id = 0; id < n; id++) {
        const char *s;
        size_t len = llamac_token_bytes(tok, id, &s);
        if (len == 0) break;
        for (size_t i = 0; i < len; i += 3) {
            uint32_t v = (uint32_t)(uint8_t)s[i] << 16 | (i + 1 < len ? (uint32_t)(uint8_t)s[i + 1] << 8 : 0) |
                         (i + 2 < len ? (uint8_t)s[i + 2] : 0);
            char q[4] = {b64[v >> 18 & 63], b64[v >> 12 & 63], i + 1 < len ? b64[v >> 6 & 63] : '=', i + 2 < len ? b64[v & 63] : '='};
            fwrite(q, 1, 4, f);
        }
        fprintf(f, " %d\n", id);
    }
    bool ok = !ferror(f) || llc_fail(err, "%s: write failed", to);
    return llc_outfile_finish(&o, ok, err);
}

typedef struct writer {
    const llc_model_src *src;
    const char *dir;
    int n_shards;
    out_tensor *outs;
    int n_outs;
    llamac_error *err;
} writer;

/* Shape of out tensor i in one shard. */
static void shard_shape(const writer *w, const out_tensor *o, int64_t shape[2], int *n_dims) {
    const llc_src_tensor *t = &w->src->tensors[o->src];
    *n_dims = t->rows == 1 && o->split == LLC_SPLIT_NONE ? 1 : 2;
    if (*n_dims == 1) {
        shape[0] = t->cols;
        return;
    }
    shape[0] = t->rows / (o->split == LLC_SPLIT_ROWS ? w->n_shards : 1);
    shape[1] = t->cols / (o->split == LLC_SPLIT_COLS ? w->n_shards : 1);
}

/* The bytes of out tensor o in shard s: the whole tensor is produced by src->fill, then sliced. */
static bool shard_bytes(const writer *w, const out_tensor *o, int s, uint8_t *full, uint8_t *part, uint64_t *n,
                        llamac_error *err) {
    const llc_src_tensor *t = &w->src->tensors[o->src];
    size_t es = llc_type_get(t->type)->type_size;
    uint64_t total = (uint64_t)t->rows * (uint64_t)t->cols * es;
    if (!w->src->fill(w->src->ctx, o->src, full, total, err)) return false;
    if (o->split == LLC_SPLIT_NONE || w->n_shards == 1) {
        memcpy(part, full, (size_t)total);
        *n = total;
    } else if (o->split == LLC_SPLIT_ROWS) {
        *n = total / (uint64_t)w->n_shards;
        memcpy(part, full + (size_t)(*n * (uint64_t)s), (size_t)*n);
    } else {
        size_t w_all = (size_t)t->cols * es, w_part = w_all / (size_t)w->n_shards;
        for (int64_t r = 0; r < t->rows; r++) memcpy(part + (size_t)r * w_part, full + (size_t)r * w_all + (size_t)s * w_part, w_part);
        *n = (uint64_t)w_part * (uint64_t)t->rows;
    }
    return true;
}

typedef struct shard_ctx {
    const writer *w;
    int s;
    uint8_t *full, *part;
} shard_ctx;

static bool shard_tensor_bytes(void *ctx, int i, const void **data, uint64_t *n, llamac_error *err) {
    shard_ctx *c = ctx;
    *data = c->part;
    return shard_bytes(c->w, &c->w->outs[i], c->s, c->full, c->part, n, err);
}

static bool write_shard(const writer *w, int s, llamac_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/consolidated.%02d.pth", w->dir, s);
    llc_torch_out *t = calloc((size_t)w->n_outs + 1, sizeof *t);
    if (!t) return llc_fail(err, "out of memory");
    uint64_t biggest = 0;
    for (int i = 0, key = 0; i < w->n_outs; i++) {
        const out_tensor *o = &w->outs[i];
        const llc_src_tensor *st = &w->src->tensors[o->src];
        uint64_t b = (uint64_t)st->rows * (uint64_t)st->cols * llc_type_get(st->type)->type_size;
        if (b > biggest) biggest = b;
        t[i].name = o->name;
        t[i].type = st->type;
        shard_shape(w, o, t[i].shape, &t[i].n_dims);
        t[i].storage = o->alias >= 0 ? t[o->alias].storage : key++;
    }
    shard_ctx c = {w, s, malloc((size_t)biggest), malloc((size_t)biggest)};
    llc_outfile o;
    bool ok = c.full && c.part;
    if (!ok) llc_fail(err, "out of memory");
    ok = ok && llc_outfile_open(&o, path, err);
    if (ok) ok = llc_outfile_finish(&o, llc_torch_write(o.f, path, "consolidated", t, w->n_outs, shard_tensor_bytes, &c, err), err);
    free(c.full);
    free(c.part);
    free(t);
    return ok;
}

static bool write_params(const writer *w, bool spm, llamac_error *err) {
    const llc_model_src *s = w->src;
    int multiple_of;
    double mult;
    if (!choose_ffn(s->dim, s->ffn_dim, &multiple_of, &mult))
        return llc_fail(err, "%s: no multiple_of / ffn_dim_multiplier gives the feed-forward size %d for dim %d in Meta's formula",
                        w->dir, s->ffn_dim, s->dim);
    char path[4096], num[64];
    snprintf(path, sizeof path, "%s/params.json", w->dir);
    char j[2048]; /* a dozen keys */
    size_t jn = 0;
#define ADD(...) (jn += (size_t)snprintf(j + jn, sizeof j - jn, __VA_ARGS__))
    ADD("{\"dim\": %d, \"n_layers\": %d, \"n_heads\": %d", s->dim, s->n_layers, s->n_heads);
    if (!spm || s->n_kv_heads != s->n_heads) ADD(", \"n_kv_heads\": %d", s->n_kv_heads);
    /* Llama 2's params.json leaves the vocabulary size to the tokenizer (-1). */
    ADD(", \"vocab_size\": %d, \"multiple_of\": %d", spm ? -1 : s->n_vocab, multiple_of);
    if (mult > 0) {
        fmt_double(num, sizeof num, mult);
        ADD(", \"ffn_dim_multiplier\": %s", num);
    }
    fmt_float(num, sizeof num, s->rms_eps);
    ADD(", \"norm_eps\": %s", num);
    fmt_float(num, sizeof num, s->rope_theta);
    ADD(", \"rope_theta\": %s", num);
    if (s->rope_factor > 0) {
        /* The reader's defaults are Meta's (see load above): factor 8, or 32 for a tied output
         * (Llama 3.2 1B/3B), low 1, high 4, original context 8192. What differs is written out. */
        if (s->rope_low_freq_factor != 1.0f || s->rope_original_ctx != 8192) {
            return llc_fail(err, "%s: rope scaling with low_freq_factor %g and original context %d cannot be written to params.json",
                            w->dir, s->rope_low_freq_factor, s->rope_original_ctx);
        }
        ADD(", \"use_scaled_rope\": true");
        if (s->rope_factor != (s->tied ? 32.0f : 8.0f)) {
            fmt_float(num, sizeof num, s->rope_factor);
            ADD(", \"rope_scaling_factor\": %s", num);
        }
        if (s->rope_high_freq_factor != 4.0f) {
            fmt_float(num, sizeof num, s->rope_high_freq_factor);
            ADD(", \"rope_high_freq_factor\": %s", num);
        }
    }
    ADD("}\n");
#undef ADD
    llc_outfile o;
    if (!llc_outfile_open(&o, path, err)) return false;
    bool ok = fwrite(j, 1, jn, o.f) == jn || llc_fail(err, "%s: write failed", path);
    return llc_outfile_finish(&o, ok, err);
}

static bool check_split(const writer *w, llamac_error *err) {
    const llc_model_src *s = w->src;
    int n = w->n_shards;
    if (s->n_heads % n || s->n_kv_heads % n)
        return llc_fail(err, "%s: %d shards must divide the %d heads and %d KV heads (as in Meta's code)", w->dir, n, s->n_heads,
                        s->n_kv_heads);
    for (int i = 0; i < w->n_outs; i++) {
        const out_tensor *o = &w->outs[i];
        const llc_src_tensor *t = &s->tensors[o->src];
        if ((o->split == LLC_SPLIT_ROWS && t->rows % n) || (o->split == LLC_SPLIT_COLS && t->cols % n))
            return llc_fail(err, "%s: tensor %s [%" PRId64 " x %" PRId64 "] cannot be split into %d shards", w->dir, o->name, t->rows,
                            t->cols, n);
    }
    return true;
}

bool llc_write_meta_folder(const llc_model_src *src, const char *dir, llamac_error *err) {
    writer w = {.src = src, .dir = dir, .n_shards = 1, .err = err};
    const char *env = getenv("LLAMAC_META_SHARDS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end || v < 1 || v > MAX_WRITE_SHARDS) return llc_fail(err, "LLAMAC_META_SHARDS=%s: expected a shard count from 1 to %d", env, MAX_WRITE_SHARDS);
        w.n_shards = (int)v;
    }
    tok_mode mode = TOK_DERIVE_TIKTOKEN;
    char tok_from[4096];
    if (!choose_tokenizer(src, &mode, tok_from, sizeof tok_from, err)) return false;
    bool spm = mode == TOK_COPY_SPM;
    if (!(w.outs = calloc((size_t)src->n_tensors + 1, sizeof *w.outs))) return llc_fail(err, "out of memory");
    bool ok = true;
    int emb = -1, has_output = 0;
    for (int i = 0; ok && i < src->n_tensors; i++) {
        const llc_src_tensor *t = &src->tensors[i];
        out_tensor *o = &w.outs[w.n_outs];
        int layer;
        const llc_tensor_desc *d = llc_tensor_find(LLC_NAMES_GGUF, t->name, &layer);
        if (!d) {
            ok = llc_fail(err, "%s: tensor %s has no place in a Meta checkpoint", dir, t->name);
            break;
        }
        /* rope_freqs: params.json's use_scaled_rope stands for it */
        if (!llc_tensor_name(d, LLC_NAMES_META, layer, o->name, sizeof o->name)) continue;
        o->split = d->split;
        if (t->type != LLC_F32 && t->type != LLC_F16 && t->type != LLC_BF16) {
            ok = llc_fail(err, "%s: Meta checkpoints hold float32, float16 or bfloat16 tensors, not %s (use --type bf16)", dir,
                          llc_type_name(t->type));
            break;
        }
        o->src = i;
        o->alias = -1;
        if (d == llc_t_tok_embd) {
            emb = w.n_outs;
            /* Llama 2's ParallelEmbedding splits along dim, Llama 3's VocabParallelEmbedding along the vocabulary. */
            o->split = spm ? LLC_SPLIT_COLS : LLC_SPLIT_ROWS;
        }
        has_output |= d == llc_t_output;
        w.n_outs++;
    }
    if (ok && emb < 0) ok = llc_fail(err, "%s: the model has no token_embd.weight", dir);
    if (ok && src->tied && !has_output) {
        /* Meta's 3.2 1B/3B files carry output.weight as a view of the embedding's storage; with the
         * embedding split along dim (Llama 2 layout) the two differ per shard and it becomes a copy. */
        out_tensor *o = &w.outs[w.n_outs++];
        *o = w.outs[emb];
        snprintf(o->name, sizeof o->name, "%s", llc_t_output->name[LLC_NAMES_META]);
        o->split = LLC_SPLIT_ROWS;
        o->alias = w.outs[emb].split == LLC_SPLIT_ROWS ? emb : -1;
    }
    if (ok) ok = check_split(&w, err);
    if (ok) ok = llc_outdir_prepare(dir, true, err);
    if (ok) ok = write_params(&w, spm, err);
    for (int s = 0; ok && s < w.n_shards; s++) ok = write_shard(&w, s, err);
    /* Shards left from an earlier write with more of them would be joined in by the reader. */
    for (int s = w.n_shards; ok && s < MAX_WRITE_SHARDS; s++) {
        char stale[4096];
        snprintf(stale, sizeof stale, "%s/consolidated.%02d.pth", dir, s);
        if (remove(stale) != 0 && errno != ENOENT) ok = llc_fail(err, "%s: cannot remove: %s", stale, strerror(errno));
    }
    if (ok) {
        char to[4096];
        snprintf(to, sizeof to, "%s/tokenizer.model", dir);
        ok = mode == TOK_DERIVE_TIKTOKEN ? derive_tiktoken(src->tok, to, err) : llc_copy_file(tok_from, to, err);
    }
    free(w.outs);
    return ok;
}
