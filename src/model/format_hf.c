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
 *
 * Writing a model as a Hugging Face checkpoint folder, laid out as transformers' save_pretrained
 * leaves a LlamaForCausalLM:
 *
 *   config.json             hyperparameters (rope_scaling {"rope_type": "llama3", …} for Llama 3.1 scaling)
 *   generation_config.json  bos/eos and Meta's sampling defaults
 *   model.safetensors       the weights under transformers' names; or, with LLAMAC_SHARD_BYTES=N in
 *                           the environment, shards of about N bytes each (model-00001-of-0000M.safetensors)
 *                           and model.safetensors.index.json mapping every tensor to its shard
 *   tokenizer.json + tokenizer_config.json (Llama 3), or tokenizer.model (Llama 2), copied
 *
 * Every tensor keeps its source type (F32, F16 or BF16; the norms stay F32 as synth makes them, so the
 * folder holds exactly the weights a GGUF written from the same source holds). The q/k projection rows
 * are permuted from Meta/GGUF's adjacent RoPE pairs to transformers' half-split order: the inverse of
 * the permute() in llama.cpp's convert_hf_to_gguf.py.
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
#include <unistd.h>

#include "base/error.h"
#include "base/json.h"
#include "base/mapped_file.h"
#include "base/outfile.h"
#include "formats/safetensors.h"
#include "kernels/types.h"
#include "model/model.h"
#include "model/model_writer.h"
#include "model/tensors.h"
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

/* config.json's sizes and options into m (path names the file in messages). */
static bool apply_config(llamac_model *m, const cJSON *cfg, const char *path, id_list *eos, llamac_error *err) {
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
    return ok;
}

static bool parse_config(llamac_model *m, const char *dir, id_list *eos, llamac_error *err) {
    char path[4096];
    if (!join(path, sizeof path, dir, "config.json", err)) return false;
    cJSON *cfg = read_json(path, MAX_CONFIG_BYTES, err);
    if (!cfg) return false;
    bool ok = apply_config(m, cfg, path, eos, err);
    cJSON_Delete(cfg);
    return ok;
}

bool llc_hf_config_read(llamac_model *m, const char *text, size_t len, const char *label, llamac_error *err) {
    if (len > MAX_CONFIG_BYTES) return llc_fail(err, "%s: larger than %d bytes: not a config.json", label, (int)MAX_CONFIG_BYTES);
    cJSON *cfg = llc_json_parse_opts(text, len, label, 0, (uint64_t)1 << 20, err);
    if (!cfg) return false;
    bool ok = cJSON_IsObject(cfg) ? apply_config(m, cfg, label, NULL, err) : llc_fail(err, "%s: not a JSON object", label);
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

/* A norm weight of n floats. */
static const float *bind_vector(hf_load *L, const char *name, int64_t n) {
    const char *file;
    const llc_st_tensor *t = find(L, name, &file);
    if (!t) return NULL;
    if (t->n_dims != 1 || t->shape[0] != n) {
        llc_fail(L->err, "%s/%s: tensor %s has %d dimensions of %" PRId64 " elements, expected [%" PRId64 "]", L->dir, file, name,
                 t->n_dims, t->n_dims ? t->shape[0] : 1, n);
        return NULL;
    }
    return llc_bind_vector(L->m, t->data, (uint32_t)t->type, n, t->nbytes, L->err);
}

static bool bind_matrix_cb(void *ctx, const llc_tensor_desc *d, const char *name, llc_tensor *dst, int64_t rows, int64_t cols) {
    (void)d;
    return bind_matrix(ctx, dst, name, cols, rows);
}

static const float *bind_vector_cb(void *ctx, const llc_tensor_desc *d, const char *name, int64_t n) {
    (void)d;
    return bind_vector(ctx, name, n);
}

/* Every tensor of every shard must be one llamac computes with; and a tied model's stored lm_head
 * must be a copy of the embedding, since transformers would then use the embedding where a
 * converter that keeps lm_head would not. */
static bool check_tensors(hf_load *L) {
    const char *emb_name = llc_t_tok_embd->name[LLC_NAMES_HF], *head_name = llc_t_output->name[LLC_NAMES_HF];
    const llc_st_tensor *emb = NULL, *head = NULL;
    for (int i = 0; i < L->n_shards; i++) {
        const llc_safetensors *st = &L->shards[i].st;
        for (int k = 0; k < st->n_tensors; k++) {
            const llc_st_tensor *t = &st->tensors[k];
            if (!llc_check_tensor_name(LLC_NAMES_HF, t->name, strlen(t->name), L->m->hp.n_layers, L->err)) {
                llc_error_prefix(L->err, "%s/%s", L->dir, L->shards[i].file);
                return false;
            }
            if (!strcmp(t->name, emb_name)) emb = t;
            if (!strcmp(t->name, head_name)) head = t;
        }
    }
    if (L->m->tied && head && emb &&
        (head->type != emb->type || head->nbytes != emb->nbytes || head->n_dims != emb->n_dims ||
         memcmp(head->shape, emb->shape, sizeof head->shape) || memcmp(head->data, emb->data, (size_t)head->nbytes)))
        return llc_fail(L->err, "%s/config.json: tie_word_embeddings is true, but %s differs from %s", L->dir, head_name, emb_name);
    return true;
}

static bool bind_weights(hf_load *L) {
    llamac_model *m = L->m;
    const llc_hparams *hp = &m->hp;
    /* The vocabulary size is config.json's claim; the embedding is the truth it must match. */
    const char *file, *emb_name = llc_t_tok_embd->name[LLC_NAMES_HF];
    const llc_st_tensor *emb = find(L, emb_name, &file);
    if (!emb) return false;
    if (emb->n_dims == 2 && emb->shape[1] == hp->dim && emb->shape[0] != hp->n_vocab)
        return llc_fail(L->err, "%s/config.json: vocab_size %d, but %s has %" PRId64 " rows", L->dir, hp->n_vocab, emb_name,
                        emb->shape[0]);
    /* transformers ignores a stored lm_head when tied */
    const llc_binder b = {bind_matrix_cb, bind_vector_cb, L};
    return llc_model_bind(m, LLC_NAMES_HF, &b, L->err);
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

/* ---- writer ------------------------------------------------------------------------------------- */

typedef struct out_tensor {
    char name[96];     /* transformers' name */
    int src;           /* index in src->tensors */
    uint32_t type;
    int64_t rows, cols;
    uint64_t nbytes;
    int permute_heads; /* q: n_heads, k: n_kv_heads; 0: stored as is */
    int shard;
} out_tensor;

static const char *torch_dtype(uint32_t type) {
    return type == LLC_F16 ? "float16" : type == LLC_BF16 ? "bfloat16" : "float32";
}

/* Rows of one projection from adjacent pairs to half-split: in each head of D rows, HF row
 * s * D/2 + i is GGUF row 2i + s (convert_hf_to_gguf.py's permute maps the other way). */
static bool permute_rows(uint8_t *data, int64_t rows, size_t row_bytes, int n_heads, llamac_error *err) {
    int64_t d = rows / n_heads, half = d / 2;
    uint8_t *tmp = malloc((size_t)d * row_bytes);
    if (!tmp) return llc_fail(err, "out of memory");
    for (int h = 0; h < n_heads; h++) {
        uint8_t *head = data + (size_t)h * (size_t)d * row_bytes;
        for (int64_t s = 0; s < 2; s++)
            for (int64_t i = 0; i < half; i++)
                memcpy(tmp + (size_t)(s * half + i) * row_bytes, head + (size_t)(2 * i + s) * row_bytes, row_bytes);
        memcpy(head, tmp, (size_t)d * row_bytes);
    }
    free(tmp);
    return true;
}

/* Shortest decimal that reads back as the same float, as Python's repr writes it ("1e-05", "500000.0"). */
static cJSON *json_float(float f) {
    char buf[64];
    int p = 1;
    for (; p < 9; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    /* Python switches to an exponent below 1e-4 and from 1e16 on; %g would already at 1e5. */
    int exp = f != 0 ? atoi(strchr(buf, 'e') + 1) : 0;
    if (exp >= -4 && exp < 16) snprintf(buf, sizeof buf - 2, "%.*f", p - 1 - exp > 0 ? p - 1 - exp : 0, (double)f);
    else snprintf(buf, sizeof buf - 2, "%.*g", p, (double)f);
    if (!strpbrk(buf, ".eE")) strcat(buf, ".0");
    return cJSON_CreateRaw(buf);
}

static bool write_text(const char *path, const char *text, llamac_error *err) {
    llc_outfile o;
    if (!llc_outfile_open(&o, path, err)) return false;
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, o.f) == n && fputc('\n', o.f) != EOF;
    if (!ok) llc_fail(err, "%s: write failed: %s", path, strerror(errno));
    return llc_outfile_finish(&o, ok, err);
}

static bool write_json(const char *dir, const char *name, cJSON *root, llamac_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return llc_fail(err, "out of memory");
    bool ok = write_text(path, text, err);
    cJSON_free(text);
    return ok;
}

/* eos_token_id: an instruct model stops at every end-of-generation token, and transformers lists them
 * all (Llama 3.2 Instruct: [128001, 128008, 128009]); a base model names its one EOS. */
static cJSON *eos_json(const llc_model_src *src) {
    int32_t eos = src->tok ? llamac_tokenizer_eos(src->tok) : -1;
    if (!src->instruct || !src->tok) return eos >= 0 ? cJSON_CreateNumber(eos) : cJSON_CreateNull();
    cJSON *a = cJSON_CreateArray();
    int n = llamac_tokenizer_n_vocab(src->tok);
    for (int32_t id = 0; a && id < n; id++)
        if (llamac_tokenizer_is_eog(src->tok, id)) cJSON_AddItemToArray(a, cJSON_CreateNumber(id));
    return a;
}

static cJSON *id_json(int32_t id) { return id >= 0 ? cJSON_CreateNumber(id) : cJSON_CreateNull(); }

/* Keys in the order transformers writes them (sorted). */
static bool write_config(const llc_model_src *src, const char *dir, uint32_t main_type, llamac_error *err) {
    cJSON *c = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(c, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddFalseToObject(c, "attention_bias");
    cJSON_AddItemToObject(c, "attention_dropout", json_float(0));
    cJSON_AddItemToObject(c, "bos_token_id", id_json(src->tok ? llamac_tokenizer_bos(src->tok) : -1));
    cJSON_AddItemToObject(c, "eos_token_id", eos_json(src));
    cJSON_AddNumberToObject(c, "head_dim", src->dim / src->n_heads);
    cJSON_AddStringToObject(c, "hidden_act", "silu");
    cJSON_AddNumberToObject(c, "hidden_size", src->dim);
    cJSON_AddItemToObject(c, "initializer_range", json_float(0.02f));
    cJSON_AddNumberToObject(c, "intermediate_size", src->ffn_dim);
    cJSON_AddNumberToObject(c, "max_position_embeddings", src->n_ctx_train);
    cJSON_AddFalseToObject(c, "mlp_bias");
    cJSON_AddStringToObject(c, "model_type", "llama");
    cJSON_AddNumberToObject(c, "num_attention_heads", src->n_heads);
    cJSON_AddNumberToObject(c, "num_hidden_layers", src->n_layers);
    cJSON_AddNumberToObject(c, "num_key_value_heads", src->n_kv_heads);
    cJSON_AddNumberToObject(c, "pretraining_tp", 1);
    cJSON_AddItemToObject(c, "rms_norm_eps", json_float(src->rms_eps));
    if (src->rope_factor > 0) {
        cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
        cJSON_AddItemToObject(rs, "factor", json_float(src->rope_factor));
        cJSON_AddItemToObject(rs, "high_freq_factor", json_float(src->rope_high_freq_factor));
        cJSON_AddItemToObject(rs, "low_freq_factor", json_float(src->rope_low_freq_factor));
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", src->rope_original_ctx);
        cJSON_AddStringToObject(rs, "rope_type", "llama3");
    } else {
        cJSON_AddNullToObject(c, "rope_scaling");
    }
    cJSON_AddItemToObject(c, "rope_theta", json_float(src->rope_theta));
    cJSON_AddBoolToObject(c, "tie_word_embeddings", src->tied);
    cJSON_AddStringToObject(c, "torch_dtype", torch_dtype(main_type));
    cJSON_AddStringToObject(c, "transformers_version", "4.45.0");
    cJSON_AddTrueToObject(c, "use_cache");
    cJSON_AddNumberToObject(c, "vocab_size", src->n_vocab);
    return write_json(dir, "config.json", c, err);
}

/* Meta's published sampling defaults for Llama 2 and 3 (temperature 0.6, top_p 0.9). */
static bool write_generation_config(const llc_model_src *src, const char *dir, llamac_error *err) {
    cJSON *g = cJSON_CreateObject();
    cJSON_AddTrueToObject(g, "_from_model_config");
    cJSON_AddItemToObject(g, "bos_token_id", id_json(src->tok ? llamac_tokenizer_bos(src->tok) : -1));
    cJSON_AddTrueToObject(g, "do_sample");
    cJSON_AddItemToObject(g, "eos_token_id", eos_json(src));
    cJSON_AddItemToObject(g, "temperature", json_float(0.6f));
    cJSON_AddItemToObject(g, "top_p", json_float(0.9f));
    cJSON_AddStringToObject(g, "transformers_version", "4.45.0");
    return write_json(dir, "generation_config.json", g, err);
}

static int cmp_out_name(const void *a, const void *b) {
    return strcmp((*(const out_tensor *const *)a)->name, (*(const out_tensor *const *)b)->name);
}

typedef struct shard_ctx {
    const llc_model_src *src;
    out_tensor **sel;
} shard_ctx;

static bool shard_tensor_bytes(void *ctx, int i, void *dst, uint64_t nbytes, llamac_error *err) {
    const shard_ctx *c = ctx;
    const out_tensor *t = c->sel[i];
    return c->src->fill(c->src->ctx, t->src, dst, nbytes, err) &&
           (!t->permute_heads || permute_rows(dst, t->rows, llc_row_size(t->type, t->cols), t->permute_heads, err));
}

/* One .safetensors file holding the tensors of shard k. */
static bool write_shard(const llc_model_src *src, out_tensor *ts, int n, int k, const char *path, llamac_error *err) {
    out_tensor **sel = malloc((size_t)(n ? n : 1) * sizeof *sel);
    llc_st_out *st = malloc((size_t)(n ? n : 1) * sizeof *st);
    bool ok = sel && st;
    if (!ok) llc_fail(err, "out of memory");
    int m = 0;
    for (int i = 0; ok && i < n; i++) {
        if (ts[i].shard != k) continue;
        sel[m] = &ts[i];
        st[m++] = (llc_st_out){ts[i].name, ts[i].type, ts[i].rows, ts[i].cols, ts[i].nbytes};
    }
    shard_ctx c = {src, sel};
    llc_outfile o;
    ok = ok && llc_outfile_open(&o, path, err);
    if (ok) ok = llc_outfile_finish(&o, llc_safetensors_write(o.f, path, st, m, shard_tensor_bytes, &c, err), err);
    free(sel);
    free(st);
    return ok;
}

static bool write_index(out_tensor *ts, int n, int n_shards, uint64_t total, const char *dir, llamac_error *err) {
    out_tensor **sel = malloc((size_t)(n ? n : 1) * sizeof *sel);
    if (!sel) return llc_fail(err, "out of memory");
    for (int i = 0; i < n; i++) sel[i] = &ts[i];
    qsort(sel, (size_t)n, sizeof *sel, cmp_out_name);
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON_AddNumberToObject(meta, "total_size", (double)total);
    cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
    for (int i = 0; i < n; i++) {
        char file[64];
        snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", sel[i]->shard + 1, n_shards);
        cJSON_AddStringToObject(map, sel[i]->name, file);
    }
    free(sel);
    return write_json(dir, "model.safetensors.index.json", root, err);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* tokenizer.json with the tokenizer_config.json beside it (BOS/EOS, chat template), or a SentencePiece
 * tokenizer.model: the files transformers' tokenizers read. */
static bool copy_tokenizer(const char *from, const char *dir, llamac_error *err) {
    char to[4096];
    if (ends_with(from, ".json")) {
        snprintf(to, sizeof to, "%s/tokenizer.json", dir);
        if (!llc_copy_file(from, to, err)) return false;
        char cfg[4096];
        const char *slash = strrchr(from, '/');
        int dl = slash ? (int)(slash - from + 1) : 0;
        snprintf(cfg, sizeof cfg, "%.*stokenizer_config.json", dl, from);
        struct stat st;
        if (stat(cfg, &st) != 0) return true;
        snprintf(to, sizeof to, "%s/tokenizer_config.json", dir);
        return llc_copy_file(cfg, to, err);
    }
    if (ends_with(from, ".model")) {
        snprintf(to, sizeof to, "%s/tokenizer.model", dir);
        return llc_copy_file(from, to, err);
    }
    return llc_fail(err, "%s: a Hugging Face folder needs the vocabulary as tokenizer.json or tokenizer.model", from);
}

bool llc_write_hf_folder(const llc_model_src *src, const char *dir, llamac_error *err) {
    if (err) err->message[0] = 0;
    if (strlen(dir) > 3000) return llc_fail(err, "%.200s…: path too long", dir);
    if (src->n_heads < 1 || src->dim % src->n_heads || src->n_kv_heads < 1 || (src->dim / src->n_heads) % 2)
        return llc_fail(err, "%s: invalid head layout for a Hugging Face checkpoint", dir);
    /* An optional shard size, so the sharded layout (model.safetensors.index.json) can be produced. */
    uint64_t shard_bytes = 0;
    const char *env = getenv("LLAMAC_SHARD_BYTES");
    if (env && *env) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(env, &end, 10);
        if (errno || *end || v == 0) return llc_fail(err, "LLAMAC_SHARD_BYTES='%.40s' is not a positive byte count", env);
        shard_bytes = v;
    }

    out_tensor *ts = calloc((size_t)(src->n_tensors ? src->n_tensors : 1), sizeof *ts);
    if (!ts) return llc_fail(err, "out of memory");
    int n = 0, n_shards = 1;
    uint32_t main_type = LLC_F32;
    uint64_t total = 0, in_shard = 0;
    bool ok = true;
    for (int i = 0; ok && i < src->n_tensors; i++) {
        const llc_src_tensor *s = &src->tensors[i];
        out_tensor *t = &ts[n];
        int layer;
        const llc_tensor_desc *d = llc_tensor_find(LLC_NAMES_GGUF, s->name, &layer);
        if (!d) {
            ok = llc_fail(err, "%s: tensor %s has no Hugging Face name", dir, s->name);
            break;
        }
        /* rope_freqs: transformers computes the Llama 3.1 factors from config.json's rope_scaling. */
        if (!llc_tensor_name(d, LLC_NAMES_HF, layer, t->name, sizeof t->name)) continue;
        if (s->type != LLC_F32 && s->type != LLC_F16 && s->type != LLC_BF16) {
            ok = llc_fail(err, "%s: tensor %s is %s; Hugging Face folders hold f32, f16 or bf16 (use --type f32|f16|bf16)", dir,
                          s->name, llc_type_name(s->type));
            break;
        }
        t->src = i;
        t->type = s->type;
        t->rows = s->rows;
        t->cols = s->cols;
        t->nbytes = llc_row_size(s->type, s->cols) * (uint64_t)s->rows;
        t->permute_heads = !d->rope_rows ? 0 : d->rows == LLC_X_DIM ? src->n_heads : src->n_kv_heads;
        if (t->permute_heads && t->rows != (int64_t)t->permute_heads * (src->dim / src->n_heads)) {
            ok = llc_fail(err, "%s: tensor %s has %" PRId64 " rows, not heads x head size", dir, s->name, t->rows);
            break;
        }
        if (s->rows > 1) main_type = s->type;
        if (shard_bytes && in_shard > 0 && in_shard + t->nbytes > shard_bytes) {
            n_shards++;
            in_shard = 0;
        }
        t->shard = n_shards - 1;
        in_shard += t->nbytes;
        total += t->nbytes;
        n++;
    }
    if (ok) ok = llc_outdir_prepare(dir, true, err);

    char path[4096];
    /* A stale single file or index from an earlier write would shadow or contradict the new weights. */
    if (ok) {
        snprintf(path, sizeof path, "%s/%s", dir, n_shards > 1 ? "model.safetensors" : "model.safetensors.index.json");
        unlink(path);
    }
    for (int k = 0; ok && k < n_shards; k++) {
        if (n_shards == 1) snprintf(path, sizeof path, "%s/model.safetensors", dir);
        else snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, k + 1, n_shards);
        ok = write_shard(src, ts, n, k, path, err);
    }
    if (ok && n_shards > 1) ok = write_index(ts, n, n_shards, total, dir, err);
    free(ts);
    ok = ok && write_config(src, dir, main_type, err) && write_generation_config(src, dir, err);
    if (ok && src->tokenizer_file) ok = copy_tokenizer(src->tokenizer_file, dir, err);
    return ok;
}
