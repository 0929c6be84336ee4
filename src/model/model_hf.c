/*
 * Hugging Face checkpoint folders (LlamaForCausalLM): config.json for the hyperparameters,
 * model.safetensors or shards listed in model.safetensors.index.json for the weights,
 * tokenizer.json (+ tokenizer_config.json) or tokenizer.model for the vocabulary, generation_config.json
 * for sampling defaults; the eos_token_id lists of both configs become end-of-generation tokens.
 *
 * Weights are bound in place from the mapped shards. transformers stores the q/k projection rows in
 * the order its "rotate half" RoPE wants (dimension i of a head pairs with i + head_dim/2); rather than
 * permuting them into Meta's adjacent pairs at load (a copy of every q/k matrix), the forward pass
 * rotates the same pairs transformers does (m->rope_half_split), which gives the same attention.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/json.h"
#include "base/mapped_file.h"
#include "formats/model_writer.h"
#include "formats/safetensors.h"
#include "kernels/types.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#define MAX_CONFIG_BYTES (4u << 20)  /* config.json, generation_config.json: a few KB in practice */
#define MAX_INDEX_BYTES (64u << 20)  /* the index of a 405B model is ~100 KB */
#define MAX_SHARDS 4096

typedef struct hf_shard {
    char file[256];          /* name inside the folder */
    llc_safetensors st;
} hf_shard;

typedef struct hf_load {
    llamac_model *m;
    const char *dir;
    llamac_error *err;
    hf_shard *shards;
    int n_shards;
    cJSON *index;            /* model.safetensors.index.json, NULL for a single file */
    const cJSON *weight_map; /* inside index */
} hf_load;

/* dir/name into buf; false (err set) when it does not fit. */
static bool join(char *buf, size_t cap, const char *dir, const char *name, llamac_error *err) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return llc_fail(err, "%.200s: path too long", dir);
    return true;
}

/* Whether anything is at path: an optional file that is there must then load (a directory, FIFO or
 * dangling link in its place is reported, not taken for its absence). */
static bool present(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0 || errno != ENOENT;
}

/* Reads and parses a small JSON file that must hold an object; NULL with err naming the file. */
static cJSON *read_json(const char *path, size_t max_bytes, llamac_error *err) {
    size_t len = 0;
    char *text = llc_read_file(path, max_bytes, &len, err);
    if (!text) return NULL;
    /* cJSON spends about 64 bytes a value: a hostile file's tree stays under about 64 MB */
    cJSON *root = llc_json_parse_opts(text, len, path, 0, (uint64_t)1 << 20, err);
    free(text);
    if (!root) return NULL;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        llc_fail(err, "%s: not a JSON object", path);
        return NULL;
    }
    return root;
}

/* ---- config.json fields ------------------------------------------------------------------------ */

/* A field that is absent or null takes its default, as in transformers' LlamaConfig. */
static const cJSON *field(const cJSON *root, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsNull(v) ? NULL : v;
}

static bool is_int(const cJSON *v, int64_t lo, int64_t hi) {
    return cJSON_IsNumber(v) && v->valuedouble >= (double)lo && v->valuedouble <= (double)hi &&
           v->valuedouble == floor(v->valuedouble);
}

static bool get_int(const cJSON *root, const char *key, bool required, int *out, const char *path, llamac_error *err) {
    const cJSON *v = field(root, key);
    if (!v) return required ? llc_fail(err, "%s: missing %s", path, key) : true;
    if (!is_int(v, 0, INT32_MAX)) return llc_fail(err, "%s: %s is not a non-negative integer", path, key);
    *out = (int)v->valuedouble;
    return true;
}

static bool get_float(const cJSON *root, const char *key, float *out, const char *path, llamac_error *err) {
    const cJSON *v = field(root, key);
    if (!v) return true;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e30)
        return llc_fail(err, "%s: %s is not a number", path, key);
    *out = (float)v->valuedouble;
    return true;
}

static bool get_bool(const cJSON *root, const char *key, bool *out, const char *path, llamac_error *err) {
    const cJSON *v = field(root, key);
    if (!v) return true;
    if (!cJSON_IsBool(v)) return llc_fail(err, "%s: %s is not true or false", path, key);
    *out = cJSON_IsTrue(v);
    return true;
}

/* End-of-generation ids from config.json and generation_config.json, handed to the tokenizer once it
 * is loaded (instruct models stop at <|eot_id|> as well as at <|end_of_text|>). */
typedef struct id_list {
    int32_t ids[16];
    int n;
} id_list;

/* bos_token_id / eos_token_id: an id or (instruct models' eos) a list of ids, each inside the
 * vocabulary; collected into out when out is not NULL. */
static bool check_ids(const cJSON *root, const char *key, int n_vocab, id_list *out, const char *path, llamac_error *err) {
    const cJSON *v = field(root, key);
    if (!v) return true;
    const cJSON *one = cJSON_IsArray(v) ? v->child : v;
    for (; one; one = cJSON_IsArray(v) ? one->next : NULL) {
        if (!is_int(one, 0, n_vocab - 1))
            return llc_fail(err, "%s: %s %s outside the vocabulary of %d tokens", path, key,
                            cJSON_IsArray(v) ? "lists an id" : "is not a token id", n_vocab);
        if (out && out->n < (int)(sizeof out->ids / sizeof out->ids[0])) out->ids[out->n++] = (int32_t)one->valuedouble;
    }
    return true;
}

/* Llama 3.1 rope scaling ({"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
 * "original_max_position_embeddings"}) as rope_dim/2 frequency divisors. Other kinds change the
 * attention in ways llamac does not implement, so they are refused rather than run wrong. */
static bool rope_scaling(llamac_model *m, const cJSON *cfg, const char *path, llamac_error *err) {
    const cJSON *rs = field(cfg, "rope_scaling");
    if (!rs) return true;
    if (!cJSON_IsObject(rs)) return llc_fail(err, "%s: rope_scaling is not an object", path);
    const cJSON *type = field(rs, "rope_type");
    if (!type) type = field(rs, "type"); /* the key's name before transformers 4.42 */
    if (!cJSON_IsString(type)) return llc_fail(err, "%s: rope_scaling has no rope_type", path);
    if (!strcmp(type->valuestring, "default")) return true;
    if (strcmp(type->valuestring, "llama3"))
        return llc_fail(err, "%s: rope_scaling type '%.32s' is not supported (llamac implements llama3)", path, type->valuestring);
    float factor = 0, low = 0, high = 0;
    int orig = 0;
    static const char *const keys[] = {"factor", "low_freq_factor", "high_freq_factor"};
    float *vals[] = {&factor, &low, &high};
    for (int i = 0; i < 3; i++) {
        if (!field(rs, keys[i])) return llc_fail(err, "%s: rope_scaling lacks %s", path, keys[i]);
        if (!get_float(rs, keys[i], vals[i], path, err)) return false;
    }
    if (!get_int(rs, "original_max_position_embeddings", true, &orig, path, err)) return false;
    if (!(factor > 0 && factor <= 1e6f)) return llc_fail(err, "%s: rope_scaling factor %g is out of range", path, factor);
    if (!(low > 0 && high > low && high < 1e6f))
        return llc_fail(err, "%s: rope_scaling needs 0 < low_freq_factor < high_freq_factor (got %g, %g)", path, low, high);
    if (orig < 1) return llc_fail(err, "%s: rope_scaling original_max_position_embeddings must be positive", path);
    float *f = llc_model_alloc(m, (size_t)m->hp.rope_dim / 2 * sizeof *f, err);
    if (!f) return false;
    llc_llama3_rope_factors(m->hp.rope_theta, m->hp.rope_dim, factor, low, high, orig, f);
    for (int i = 0; i < m->hp.rope_dim / 2; i++)
        if (!(f[i] > 0 && isfinite(f[i]))) return llc_fail(err, "%s: rope_scaling gives an invalid frequency factor", path);
    m->rope_freqs = f;
    return true;
}

/* model_type and every name in architectures must say Llama (transformers builds the model from
 * them; the weights of a Mixtral or a Mistral fit Llama's names and would run wrong). */
static bool check_architecture(const cJSON *cfg, const char *path, llamac_error *err) {
    const cJSON *arch = field(cfg, "architectures"), *type = field(cfg, "model_type");
    if (!arch && !type) return llc_fail(err, "%s: neither architectures nor model_type says the model is Llama", path);
    if (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "llama")))
        return llc_fail(err, "%s: model_type '%.40s' is not supported; llamac runs Llama (model_type llama)", path,
                        cJSON_IsString(type) ? type->valuestring : "?");
    if (arch && !cJSON_IsArray(arch)) return llc_fail(err, "%s: architectures is not a list", path);
    for (const cJSON *a = arch ? arch->child : NULL; a; a = a->next) {
        if (cJSON_IsString(a) && !strcmp(a->valuestring, "LlamaForCausalLM")) continue;
        const char *name = cJSON_IsString(a) ? a->valuestring : "?";
        bool moe = strstr(name, "Mixtral") || strstr(name, "Moe") || strstr(name, "MoE");
        return llc_fail(err, "%s: architecture %.40s%s is not supported; llamac runs Llama (LlamaForCausalLM)", path, name,
                        moe ? " (mixture of experts)" : "");
    }
    return true;
}

/* Keys other architectures share with LlamaConfig's file, each refused unless it holds its neutral
 * value: null, false, 0, or (a factor) 1. */
static bool refuse_unsupported(const cJSON *cfg, const char *path, llamac_error *err) {
    static const char moe[] = "a mixture of experts is not supported; llamac runs dense Llama";
    static const struct {
        const char *key, *what;
        double neutral;
    } keys[] = {
        {"num_local_experts", moe, 0},
        {"num_experts", moe, 0},
        {"num_experts_per_tok", moe, 0},
        {"n_routed_experts", moe, 0},
        {"sliding_window", "sliding-window attention is not supported", 0},
        {"partial_rotary_factor", "rotating part of each head is not supported", 1},
        {"quantization_config", "pre-quantized weights are not supported (llamac reads F32, F16 and BF16: see llamac quantize)", 0},
    };
    const cJSON *use_window = field(cfg, "use_sliding_window");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *v = field(cfg, keys[i].key);
        if (!v || cJSON_IsFalse(v) || (cJSON_IsNumber(v) && v->valuedouble == keys[i].neutral)) continue;
        if (!strcmp(keys[i].key, "sliding_window") && cJSON_IsFalse(use_window)) continue; /* Qwen2's switch */
        return llc_fail(err, "%s: %s is set: %s", path, keys[i].key, keys[i].what);
    }
    return true;
}

static bool parse_config(llamac_model *m, const char *dir, id_list *eos, llamac_error *err) {
    char path[4096];
    if (!join(path, sizeof path, dir, "config.json", err)) return false;
    cJSON *cfg = read_json(path, MAX_CONFIG_BYTES, err);
    if (!cfg) return false;
    llc_hparams *hp = &m->hp;
    bool ok = true;

    if (!(ok = check_architecture(cfg, path, err))) goto done;

    /* LlamaConfig's defaults for what may be left out; the sizes have none worth guessing. */
    hp->n_kv_heads = -1;
    hp->rms_eps = 1e-6f;
    hp->rope_theta = 10000.0f;
    hp->n_ctx_train = 2048;
    int head_dim = -1;
    bool tied = false, bias = false;
    ok = get_int(cfg, "hidden_size", true, &hp->dim, path, err) &&
         get_int(cfg, "intermediate_size", true, &hp->ffn_dim, path, err) &&
         get_int(cfg, "num_hidden_layers", true, &hp->n_layers, path, err) &&
         get_int(cfg, "num_attention_heads", true, &hp->n_heads, path, err) &&
         get_int(cfg, "vocab_size", true, &hp->n_vocab, path, err) &&
         get_int(cfg, "num_key_value_heads", false, &hp->n_kv_heads, path, err) &&
         get_int(cfg, "max_position_embeddings", false, &hp->n_ctx_train, path, err) &&
         get_int(cfg, "head_dim", false, &head_dim, path, err) &&
         get_float(cfg, "rms_norm_eps", &hp->rms_eps, path, err) && get_float(cfg, "rope_theta", &hp->rope_theta, path, err) &&
         get_bool(cfg, "tie_word_embeddings", &tied, path, err);
    if (!ok) goto done;
    if (hp->n_kv_heads < 0) hp->n_kv_heads = hp->n_heads;
    m->tied = tied;

    /* What llamac's forward pass does not compute must not be silently skipped. */
    if (!(ok = refuse_unsupported(cfg, path, err))) goto done;
    const cJSON *act = field(cfg, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu"))) {
        ok = llc_fail(err, "%s: hidden_act '%.32s' is not supported (llamac computes silu)", path,
                      cJSON_IsString(act) ? act->valuestring : "?");
        goto done;
    }
    static const char *const biases[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2 && ok; i++) {
        bias = false;
        ok = get_bool(cfg, biases[i], &bias, path, err);
        if (ok && bias) ok = llc_fail(err, "%s: %s is true (llamac's Llama has no biases)", path, biases[i]);
    }
    if (!ok) goto done;

    /* The consistency checks first in config.json's own words, then the generic ones. */
    if (hp->n_heads < 1 || hp->dim % hp->n_heads != 0) {
        ok = llc_fail(err, "%s: num_attention_heads %d does not divide hidden_size %d", path, hp->n_heads, hp->dim);
        goto done;
    }
    if (hp->n_kv_heads < 1 || hp->n_heads % hp->n_kv_heads != 0) {
        ok = llc_fail(err, "%s: num_key_value_heads %d does not divide num_attention_heads %d", path, hp->n_kv_heads, hp->n_heads);
        goto done;
    }
    hp->head_dim = hp->dim / hp->n_heads;
    if (head_dim >= 0 && head_dim != hp->head_dim) {
        ok = llc_fail(err, "%s: head_dim %d is not hidden_size / num_attention_heads = %d (not supported)", path, head_dim,
                      hp->head_dim);
        goto done;
    }
    hp->rope_dim = hp->head_dim; /* transformers' Llama rotates whole heads */
    if (!llc_hparams_validate(hp, err)) {
        llc_error_prefix(err, "%s", path);
        ok = false;
        goto done;
    }
    ok = check_ids(cfg, "bos_token_id", hp->n_vocab, NULL, path, err) &&
         check_ids(cfg, "eos_token_id", hp->n_vocab, eos, path, err) && rope_scaling(m, cfg, path, err);
done:
    cJSON_Delete(cfg);
    return ok;
}

/* generation_config.json is optional; when present it must make sense. Its temperature and top_p are
 * transformers' sampling defaults only when do_sample is true (otherwise generate() is greedy). */
static bool parse_generation_config(llamac_model *m, const char *dir, id_list *eos, llamac_error *err) {
    char path[4096];
    if (!join(path, sizeof path, dir, "generation_config.json", err)) return false;
    if (!present(path)) return true;
    cJSON *g = read_json(path, MAX_CONFIG_BYTES, err);
    if (!g) return false;
    /* The ranges transformers' GenerationConfig and logits processors accept. llamac samples with
     * temperature and top_p; the others are checked too, so a broken file is refused, not half-read. */
    static const struct {
        const char *key;
        double lo, hi;
        bool integral, above_lo; /* above_lo: lo itself is out of range */
    } nums[] = {
        {"temperature", 0, 100, false, false}, {"top_p", 0, 1, false, false},
        {"top_k", 0, INT32_MAX, true, false},  {"min_p", 0, 1, false, false},
        {"typical_p", 0, 1, false, true},      {"repetition_penalty", 0, 1e6, false, true},
        {"max_length", 0, INT32_MAX, true, false}, {"max_new_tokens", 0, INT32_MAX, true, false},
        {"num_beams", 1, INT32_MAX, true, false},
    };
    bool ok = true;
    for (size_t i = 0; i < sizeof nums / sizeof nums[0] && ok; i++) {
        const cJSON *v = field(g, nums[i].key);
        if (!v) continue;
        double d = v->valuedouble;
        if (!cJSON_IsNumber(v) || (nums[i].integral && d != floor(d)))
            ok = llc_fail(err, "%s: %s is not %s", path, nums[i].key, nums[i].integral ? "an integer" : "a number");
        else if (!(d >= nums[i].lo && d <= nums[i].hi) || (nums[i].above_lo && d == nums[i].lo))
            ok = llc_fail(err, "%s: %s %g is out of range %s%g, %g]", path, nums[i].key, d, nums[i].above_lo ? "(" : "[",
                          nums[i].lo, nums[i].hi);
    }
    float temp = 0, top_p = 0;
    bool sample = false;
    ok = ok && get_float(g, "temperature", &temp, path, err) && get_float(g, "top_p", &top_p, path, err) &&
         get_bool(g, "do_sample", &sample, path, err) && check_ids(g, "bos_token_id", m->hp.n_vocab, NULL, path, err) &&
         check_ids(g, "eos_token_id", m->hp.n_vocab, eos, path, err);
    if (ok && sample) {
        m->default_temperature = temp;
        m->default_top_p = top_p;
    }
    cJSON_Delete(g);
    return ok;
}

/* ---- weights ----------------------------------------------------------------------------------- */

/* A shard name from the index must name a file in the folder itself: the index is untrusted, and
 * "../x" or "/etc/x" would read files the user never pointed at. */
static bool plain_file_name(const char *s) {
    size_t n = strlen(s);
    return n > 0 && n < sizeof(((hf_shard *)0)->file) && !strchr(s, '/') && !strchr(s, '\\') && strcmp(s, ".") &&
           strcmp(s, "..");
}

static bool open_shard(hf_load *L, const char *file) {
    llamac_error *err = L->err;
    if (L->n_shards == MAX_SHARDS) return llc_fail(err, "%s/model.safetensors.index.json: more than %d shard files", L->dir, MAX_SHARDS);
    hf_shard *s = realloc(L->shards, (size_t)(L->n_shards + 1) * sizeof *s);
    if (!s) return llc_fail(err, "out of memory");
    L->shards = s;
    s = &L->shards[L->n_shards];
    memset(s, 0, sizeof *s);
    snprintf(s->file, sizeof s->file, "%s", file);
    char path[4096];
    if (!join(path, sizeof path, L->dir, file, err)) return false;
    /* The mapping lives in the model (its tensors point into it); the slot pointer does not outlive
     * the next llc_model_map, so only the bytes are kept. */
    const llc_mapped_file *mf = llc_model_map(L->m, path, err);
    if (!mf) return false;
    if (!llc_safetensors_parse(mf->data, mf->size, &s->st, err)) {
        llc_error_prefix(err, "%s", path);
        return false;
    }
    L->n_shards++;
    return true;
}

static bool open_weights(hf_load *L) {
    llamac_error *err = L->err;
    char path[4096];
    if (!join(path, sizeof path, L->dir, "model.safetensors.index.json", err)) return false;
    if (!present(path)) {
        if (!join(path, sizeof path, L->dir, "model.safetensors", err)) return false;
        if (!present(path))
            return llc_fail(err, "%s: no model.safetensors or model.safetensors.index.json (PyTorch .bin weights are not read)", L->dir);
        return open_shard(L, "model.safetensors");
    }
    L->index = read_json(path, MAX_INDEX_BYTES, err);
    if (!L->index) return false;
    L->weight_map = cJSON_GetObjectItemCaseSensitive(L->index, "weight_map");
    if (!cJSON_IsObject(L->weight_map)) return llc_fail(err, "%s: no weight_map object", path);
    for (const cJSON *e = L->weight_map->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !plain_file_name(e->valuestring))
            return llc_fail(err, "%s: weight_map entry '%.80s' does not name a file in the folder", path, e->string);
        bool seen = false;
        for (int i = 0; i < L->n_shards && !seen; i++) seen = !strcmp(L->shards[i].file, e->valuestring);
        if (!seen && !open_shard(L, e->valuestring)) return false;
    }
    if (L->n_shards == 0) return llc_fail(err, "%s: weight_map is empty", path);
    return true;
}

/* The tensor named name and the file it is in; NULL with err set when it is missing. */
static const llc_st_tensor *find(hf_load *L, const char *name, const char **file) {
    const hf_shard *s = &L->shards[0];
    if (L->weight_map) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(L->weight_map, name);
        if (!e) {
            llc_fail(L->err, "%s/model.safetensors.index.json: no tensor %s", L->dir, name);
            return NULL;
        }
        for (int i = 0; i < L->n_shards; i++)
            if (!strcmp(L->shards[i].file, e->valuestring)) s = &L->shards[i];
    }
    *file = s->file;
    const llc_st_tensor *t = llc_safetensors_find(&s->st, name);
    if (!t) llc_fail(L->err, "%s/%s: missing tensor %s", L->dir, s->file, name);
    else if (t->type < 0) {
        llc_fail(L->err, "%s/%s: tensor %s has dtype %s (llamac reads F32, F16 and BF16)", L->dir, s->file, name, t->dtype);
        t = NULL;
    }
    return t;
}

/* The tensor's bytes, in place when they are aligned for their element type. The format does not
 * promise alignment (the header has any length) and the kernels read whole elements, so a misaligned
 * tensor is copied once. */
static const void *tensor_bytes(hf_load *L, const llc_st_tensor *t) {
    size_t elem = t->type == LLC_F32 ? 4 : 2;
    if ((uintptr_t)t->data % elem == 0) return t->data;
    void *copy = llc_model_alloc(L->m, (size_t)t->nbytes, L->err);
    if (copy) memcpy(copy, t->data, (size_t)t->nbytes);
    return copy;
}

static bool bind_matrix(hf_load *L, llc_tensor *dst, const char *name, int64_t cols, int64_t rows) {
    const char *file;
    const llc_st_tensor *t = find(L, name, &file);
    if (!t) return false;
    if (t->n_dims != 2 || t->shape[0] != rows || t->shape[1] != cols) {
        char got[64] = "scalar";
        int n = 0;
        for (int d = 0; d < t->n_dims && n < (int)sizeof got - 24; d++)
            n += snprintf(got + n, sizeof got - (size_t)n, "%s%" PRId64, d ? ", " : "", t->shape[d]);
        return llc_fail(L->err, "%s/%s: tensor %s has shape [%s], expected [%" PRId64 ", %" PRId64 "]", L->dir, file, name, got,
                        rows, cols);
    }
    const void *data = tensor_bytes(L, t);
    if (!data) return false;
    L->m->weight_bytes += t->nbytes;
    L->m->n_params += t->n_elements;
    if (!llc_bind_matrix(dst, data, (uint32_t)t->type, cols, rows, name, L->err)) {
        llc_error_prefix(L->err, "%s/%s", L->dir, file);
        return false;
    }
    return true;
}

/* A norm weight of n floats: in place when f32, converted once otherwise. */
static const float *bind_vector(hf_load *L, const char *name, int64_t n) {
    const char *file;
    const llc_st_tensor *t = find(L, name, &file);
    if (!t) return NULL;
    if (t->n_dims != 1 || t->shape[0] != n) {
        llc_fail(L->err, "%s/%s: tensor %s has %d dimensions of %" PRId64 " elements, expected [%" PRId64 "]", L->dir, file, name,
                 t->n_dims, t->n_dims ? t->shape[0] : 1, n);
        return NULL;
    }
    const void *data = tensor_bytes(L, t);
    if (!data) return NULL;
    L->m->weight_bytes += t->nbytes;
    L->m->n_params += t->n_elements;
    if (t->type == LLC_F32) return data;
    float *f = llc_model_alloc(L->m, (size_t)n * sizeof *f, L->err);
    if (f) llc_type_get((uint32_t)t->type)->to_float(data, f, n);
    return f;
}

static const char *const hf_global[] = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", NULL};
/* inv_freq: a RoPE table older transformers saved with the weights, recomputed from rope_theta. */
static const char *const hf_layer[] = {"input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
                                       "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                                       "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
                                       "self_attn.rotary_emb.inv_freq", NULL};

/* Every tensor of every shard must be one llamac computes with; and a tied model's stored lm_head
 * must be a copy of the embedding, since transformers would then use the embedding where a
 * converter that keeps lm_head would not. */
static bool check_tensors(hf_load *L) {
    const llc_tensor_names names = {hf_global, "model.layers.", hf_layer};
    const llc_st_tensor *emb = NULL, *head = NULL;
    for (int i = 0; i < L->n_shards; i++) {
        const llc_safetensors *st = &L->shards[i].st;
        for (int k = 0; k < st->n_tensors; k++) {
            const llc_st_tensor *t = &st->tensors[k];
            if (!llc_check_tensor_name(&names, t->name, strlen(t->name), L->m->hp.n_layers, L->err)) {
                llc_error_prefix(L->err, "%s/%s", L->dir, L->shards[i].file);
                return false;
            }
            if (!strcmp(t->name, "model.embed_tokens.weight")) emb = t;
            if (!strcmp(t->name, "lm_head.weight")) head = t;
        }
    }
    if (L->m->tied && head && emb &&
        (head->type != emb->type || head->nbytes != emb->nbytes || head->n_dims != emb->n_dims ||
         memcmp(head->shape, emb->shape, sizeof head->shape) || memcmp(head->data, emb->data, (size_t)head->nbytes)))
        return llc_fail(L->err, "%s/config.json: tie_word_embeddings is true, but lm_head.weight differs from model.embed_tokens.weight",
                        L->dir);
    return true;
}

static bool bind_weights(hf_load *L) {
    llamac_model *m = L->m;
    const llc_hparams *hp = &m->hp;
    int64_t dim = hp->dim, kv_dim = (int64_t)hp->n_kv_heads * hp->head_dim, ffn = hp->ffn_dim;
    m->layers = calloc((size_t)hp->n_layers, sizeof *m->layers);
    if (!m->layers) return llc_fail(L->err, "out of memory");

    /* The vocabulary size is config.json's claim; the embedding is the truth it must match. */
    const char *file;
    const llc_st_tensor *emb = find(L, "model.embed_tokens.weight", &file);
    if (!emb) return false;
    if (emb->n_dims == 2 && emb->shape[1] == dim && emb->shape[0] != hp->n_vocab)
        return llc_fail(L->err, "%s/config.json: vocab_size %d, but model.embed_tokens.weight has %" PRId64 " rows", L->dir,
                        hp->n_vocab, emb->shape[0]);
    bool ok = bind_matrix(L, &m->tok_embd, "model.embed_tokens.weight", dim, hp->n_vocab) &&
              (m->output_norm = bind_vector(L, "model.norm.weight", dim)) != NULL;
    if (ok && m->tied) m->output = m->tok_embd; /* transformers ignores a stored lm_head when tied */
    else if (ok) ok = bind_matrix(L, &m->output, "lm_head.weight", dim, hp->n_vocab);

    char nm[96];
    for (int l = 0; ok && l < hp->n_layers; l++) {
        llc_layer *Y = &m->layers[l];
#define NM(s) (snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, s), nm)
        ok = (Y->attn_norm = bind_vector(L, NM("input_layernorm"), dim)) != NULL &&
             (Y->ffn_norm = bind_vector(L, NM("post_attention_layernorm"), dim)) != NULL &&
             bind_matrix(L, &Y->wq, NM("self_attn.q_proj"), dim, dim) && bind_matrix(L, &Y->wk, NM("self_attn.k_proj"), dim, kv_dim) &&
             bind_matrix(L, &Y->wv, NM("self_attn.v_proj"), dim, kv_dim) && bind_matrix(L, &Y->wo, NM("self_attn.o_proj"), dim, dim) &&
             bind_matrix(L, &Y->w_gate, NM("mlp.gate_proj"), dim, ffn) && bind_matrix(L, &Y->w_up, NM("mlp.up_proj"), dim, ffn) &&
             bind_matrix(L, &Y->w_down, NM("mlp.down_proj"), ffn, dim);
#undef NM
    }
    if (ok) m->main_type = m->layers[0].wq.type;
    return ok;
}

bool llc_model_load_hf(llamac_model *m, const char *dir, llamac_error *err) {
    m->format = "hf";
    m->rope_half_split = true;
    /* The folder's own name, without trailing slashes, names the model. */
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/') start--;
    snprintf(m->name, sizeof m->name, "%.*s", (int)(len - start > 127 ? 127 : len - start), dir + start);

    id_list eos = {{0}, 0};
    if (!parse_config(m, dir, &eos, err) || !parse_generation_config(m, dir, &eos, err)) return false;
    hf_load L = {.m = m, .dir = dir, .err = err};
    bool ok = open_weights(&L) && check_tensors(&L) && bind_weights(&L);
    for (int i = 0; i < L.n_shards; i++) llc_safetensors_free(&L.shards[i].st);
    free(L.shards);
    cJSON_Delete(L.index);
    if (!ok) return false;

    /* The vocabulary: tokenizer.json (tokenizer_config.json beside it gives BOS/EOS and the chat
     * template), or a Llama 2 tokenizer.model. With neither, the caller's tokenizer path applies. */
    /* Llama 2 folders carry a SentencePiece-style tokenizer.json that llamac does not read, beside the
     * tokenizer.model it does: the first file that loads wins, and the first failure is reported when
     * none does. */
    char path[4096];
    static const char *const names[] = {"tokenizer.json", "tokenizer.model"};
    llamac_error first = {{0}};
    for (int i = 0; i < 2 && !m->tok; i++) {
        if (!join(path, sizeof path, dir, names[i], err)) return false;
        if (!present(path)) continue;
        m->tok = llamac_tokenizer_load(path, first.message[0] ? NULL : &first);
    }
    if (!m->tok && first.message[0]) {
        if (err) *err = first; /* the tokenizer's message names the file */
        return false;
    }
    for (int k = 0; m->tok && k < eos.n; k++) llc_tokenizer_add_eog(m->tok, eos.ids[k]);
    return true;
}
