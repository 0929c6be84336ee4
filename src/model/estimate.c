/*
 * Memory estimates (llamac_estimate_memory and friends): what a model will take before anything is
 * loaded, from the sizes and element types its header gives. Every figure is computed from what the
 * code that will run allocates (forward.c's scratch, the KV pool, the session's and the engine's
 * buffers, the packing buffer, the kernels' packed layouts), through the functions those files
 * export for it, so the estimate follows them when they change.
 *
 * The sources (a GGUF header, a llama2.c header, a config.json, a shape) become one list of tensors in
 * GGUF naming with their types; --type re-types it with quantize's own rule (model/quant_mix.h).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/json.h"
#include "base/mapped_file.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/matmul.h"
#include "kernels/types.h"
#include "kv/kv_cache.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/quant_mix.h"
#include "model/tensors.h"

/* The tokenizer's memory, measured (VmRSS around llamac_tokenizer_load) on Llama 3's BPE vocabulary
 * (128256 tokens, 280147 merges: 37.2 MiB beside its 7.8 MB of GGUF metadata) and Llama 2's
 * SentencePiece one (32000 tokens: 0.9 MiB with its 0.7 MB of metadata): per token and per merge. */
#define TOK_BPE_PER_TOKEN 40
#define TOK_BPE_PER_MERGE 93
#define TOK_SPM_PER_TOKEN 8
/* The metadata a GGUF holds them in, per token (text, score, type) and per merge, for sources without one. */
#define TOK_META_PER_TOKEN 24
#define TOK_META_PER_MERGE 19
/* Engine defaults the estimate assumes (llamac_engine_params: block_size 16, step_tokens 512). */
#define EST_BLOCK 16
#define EST_STEP_TOKENS 512

typedef struct est_tensor {
    char name[64];
    int64_t cols, rows; /* rows 1: a vector */
    uint32_t type;
    uint64_t nbytes;    /* as stored in the source (0: from the type) */
} est_tensor;

typedef struct est_model {
    llc_hparams hp;
    bool tied, rope_freqs;
    est_tensor *t;
    int n;
    uint64_t tok_meta_bytes; /* the GGUF header's bytes, when the tokenizer comes from one; 0: estimate */
    int64_t n_merges;        /* -1: unknown */
} est_model;

/* The tensors a model of these sizes stores, all matrices of type `type`, vectors f32. */
static bool shape_tensors(est_model *em, uint32_t type, llamac_error *err) {
    int cap = llc_tensor_refs_max(em->hp.n_layers);
    llc_tensor_ref *refs = malloc((size_t)cap * sizeof *refs);
    em->t = calloc((size_t)cap, sizeof *em->t);
    if (!refs || !em->t) {
        free(refs);
        return llc_fail(err, "out of memory");
    }
    em->n = llc_tensor_refs(em->hp.n_layers, em->tied, em->rope_freqs, refs);
    for (int i = 0; i < em->n; i++) {
        est_tensor *t = &em->t[i];
        llc_tensor_name(refs[i].d, LLC_NAMES_GGUF, refs[i].layer, t->name, sizeof t->name);
        t->cols = llc_extent_of(&em->hp, refs[i].d->cols);
        t->rows = llc_extent_of(&em->hp, refs[i].d->rows);
        t->type = refs[i].d->vector ? LLC_F32 : type;
    }
    free(refs);
    return true;
}

static void share_add(llamac_memory_estimate *out, uint32_t type, uint64_t bytes, uint64_t elements, bool *ovf) {
    const char *name = llc_type_name(type);
    int k = 0;
    while (k < out->n_types && strcmp(out->types[k].type, name) != 0) k++;
    if (k == out->n_types) {
        if (k == LLAMAC_MEMORY_MAX_TYPES) return; /* cannot happen: asserted below */
        out->types[out->n_types++] = (llamac_type_share){name, 0, 0, 0};
    }
    out->types[k].n_tensors++;
    if (__builtin_add_overflow(out->types[k].bytes, bytes, &out->types[k].bytes) ||
        __builtin_add_overflow(out->types[k].n_elements, elements, &out->types[k].n_elements))
        *ovf = true;
}

_Static_assert(LLAMAC_MEMORY_MAX_TYPES >= LLC_TYPE_COUNT + 1, "every type name fits llamac_memory_estimate.types");

/* a += b * c, remembering an overflow in *ovf (a hostile header's sizes must not wrap into small figures) */
static void add_mul(uint64_t *a, uint64_t b, uint64_t c, bool *ovf) {
    uint64_t p;
    if (__builtin_mul_overflow(b, c, &p) || __builtin_add_overflow(*a, p, a)) *ovf = true;
}

static bool estimate(est_model *em, const llamac_memory_params *params, llamac_memory_estimate *out, llamac_error *err) {
    llamac_memory_params p = params ? *params : (llamac_memory_params){0};
    const llc_hparams *hp = &em->hp;
    memset(out, 0, sizeof *out);
    if (p.n_ctx < 0 || p.n_ctx > (1 << 24)) return llc_fail(err, "context size %d is out of range", p.n_ctx);
    if (p.n_seqs < 0 || p.n_seqs > 65536) return llc_fail(err, "sequence count %d is out of range", p.n_seqs);
    int n_ctx = p.n_ctx ? p.n_ctx : llc_default_n_ctx(hp->n_ctx_train), n_seqs = p.n_seqs ? p.n_seqs : 1;
    llc_quant_mix mix;
    if (p.type && !llc_quant_mix_parse(p.type, &mix)) return llc_fail(err, "unknown type '%s' (%s)", p.type, llc_quant_mix_names());
    int kv_dim = hp->n_kv_heads * hp->head_dim;
    int kv_elem = llc_kv_elem_type_for(p.kv_type, kv_dim, err);
    if (kv_elem < 0) return false;

    /* weights */
    const llc_mix_model mm = {hp->n_layers, hp->n_heads, hp->n_kv_heads, em->tied};
    const char *pack_env = getenv("LLAMAC_PACK");
    bool packing = !(pack_env && !strcmp(pack_env, "0"));
    size_t act_row = 0, pack_buf = 0;
    uint64_t main_bytes[LLC_TYPE_COUNT] = {0};
    const char *embd = llc_t_tok_embd->name[LLC_NAMES_GGUF];
    for (int i = 0; i < em->n; i++) {
        est_tensor *t = &em->t[i];
        if (p.type) {
            t->type = llc_quant_tensor_type(&mix, t->name, t->cols, t->rows, &mm);
            t->nbytes = 0;
        }
        const llc_type_traits *tt = llc_type_get(t->type);
        if (!tt || tt->block_size == 0) return llc_fail(err, "tensor %s has unsupported type %s", t->name, llc_type_name(t->type));
        if (t->cols < 0 || t->rows < 0 || t->cols % tt->block_size != 0)
            return llc_fail(err, "tensor %s: rows of %lld values do not fit type %s", t->name, (long long)t->cols, tt->name);
        bool ovf = false;
        uint64_t bytes = t->nbytes, n_el = 0;
        if (!bytes) add_mul(&bytes, (uint64_t)t->cols / (uint64_t)tt->block_size * tt->type_size, (uint64_t)t->rows, &ovf);
        add_mul(&n_el, (uint64_t)t->cols, (uint64_t)t->rows, &ovf);
        share_add(out, t->type, bytes, n_el, &ovf);
        add_mul(&out->n_params, n_el, 1, &ovf);
        if (t->rows <= 1) {
            add_mul(&out->weights, n_el, 4, &ovf); /* vectors are used as f32 (converted when stored otherwise) */
        } else if (!strcmp(t->name, embd) && !em->tied) {
            add_mul(&out->embedding_by_row, bytes, 1, &ovf);
        } else {
            if (t->type < LLC_TYPE_COUNT) add_mul(&main_bytes[t->type], bytes, 1, &ovf);
            llc_tensor W = {.type = t->type, .n_cols = t->cols, .n_rows = t->rows, .row_bytes = llc_row_size(t->type, t->cols)};
            if (packing && llc_tensor_packable(&W)) {
                add_mul(&out->weights, llc_tensor_packed_bytes(&W), 1, &ovf);
                llc_tensor *Wp = &W;
                size_t b = llc_pack_buffer_bytes(&Wp, 1);
                if (b > pack_buf) pack_buf = b;
            } else {
                add_mul(&out->weights, bytes, 1, &ovf);
            }
            size_t a = llc_act_row_bytes(t->type, t->cols);
            if (a > act_row) act_row = a;
        }
        if (ovf) return llc_fail(err, "tensor %s: sizes too large to add up (%lld x %lld)", t->name, (long long)t->rows, (long long)t->cols);
    }
    uint32_t main_type = LLC_F32;
    for (uint32_t k = 0; k < LLC_TYPE_COUNT; k++)
        if (main_bytes[k] > main_bytes[main_type]) main_type = k;
    /* biggest share first */
    for (int a = 0; a < out->n_types; a++)
        for (int b = a + 1; b < out->n_types; b++)
            if (out->types[b].bytes > out->types[a].bytes) {
                llamac_type_share x = out->types[a];
                out->types[a] = out->types[b];
                out->types[b] = x;
            }

    /* KV cache: a session's pool is one block of n_ctx positions; the engine's n_seqs contexts in blocks */
    uint64_t positions = n_seqs == 1 ? (uint64_t)n_ctx : (uint64_t)n_seqs * (((uint64_t)n_ctx + EST_BLOCK - 1) / EST_BLOCK * EST_BLOCK);
    uint64_t n_blocks = n_seqs == 1 ? 1 : positions / EST_BLOCK;
    bool ovf = false;
    uint64_t layer_bytes = 63, kv = 0;
    add_mul(&layer_bytes, positions, llc_kv_row_bytes_of((enum llc_type)kv_elem, kv_dim), &ovf);
    add_mul(&kv, layer_bytes / 64 * 64, 2 * (uint64_t)hp->n_layers, &ovf);
    add_mul(&kv, positions, 4, &ovf);
    add_mul(&kv, n_blocks, 80, &ovf);
    out->kv_cache = kv;

    /* scratch: the forward pass, then the session's (one sequence) or the engine's buffers */
    uint64_t vocab_f = (uint64_t)hp->n_vocab * sizeof(float);
    out->scratch = llc_forward_scratch_bytes(hp, act_row) + pack_buf;
    if (n_seqs == 1) {
        out->scratch += vocab_f + 3 * (uint64_t)n_ctx * sizeof(int32_t);
    } else {
        int step = n_seqs > EST_STEP_TOKENS ? n_seqs : EST_STEP_TOKENS;
        /* logits of every sequence, the step's batch, each request's token list */
        out->scratch += (uint64_t)n_seqs * vocab_f + (uint64_t)step * 12 + (uint64_t)n_seqs * 64 +
                        (uint64_t)n_seqs * (uint64_t)n_ctx * sizeof(int32_t);
    }

    /* tokenizer */
    int64_t merges = em->n_merges >= 0 ? em->n_merges : hp->n_vocab > 65536 ? (int64_t)hp->n_vocab * 280147 / 128256 : 0;
    uint64_t V = (uint64_t)hp->n_vocab, M = (uint64_t)merges;
    uint64_t meta = em->tok_meta_bytes ? em->tok_meta_bytes : TOK_META_PER_TOKEN * V + TOK_META_PER_MERGE * M;
    out->tokenizer = meta + (M ? TOK_BPE_PER_TOKEN * V + TOK_BPE_PER_MERGE * M : TOK_SPM_PER_TOKEN * V);

    uint64_t total = 0;
    add_mul(&total, out->weights, 1, &ovf);
    add_mul(&total, out->kv_cache, 1, &ovf);
    add_mul(&total, out->scratch, 1, &ovf);
    add_mul(&total, out->tokenizer, 1, &ovf);
    if (ovf) return llc_fail(err, "%d sequences of %d positions: too large to add up", n_seqs, n_ctx);
    out->total = total;
    out->shape = (llamac_model_shape){hp->n_layers, hp->dim, hp->n_heads, hp->n_kv_heads, hp->ffn_dim, hp->n_vocab, hp->n_ctx_train,
                                      em->tied, em->rope_freqs, llc_type_name(main_type), (int)merges};
    out->n_ctx = n_ctx;
    out->n_seqs = n_seqs;
    out->kv_type = llamac_kv_type_name(p.kv_type);
    return true;
}

static bool finish(est_model *em, bool ok, const llamac_memory_params *params, llamac_memory_estimate *out, llamac_error *err) {
    ok = ok && estimate(em, params, out, err);
    free(em->t);
    return ok;
}

static bool estimate_gguf(const llc_gguf_file *g, const char *label, const llamac_memory_params *params, llamac_memory_estimate *out,
                          llamac_error *err) {
    est_model em = {.n_merges = -1};
    if (!llc_gguf_read_hparams(g, label, &em.hp, err)) return false;
    em.tied = !llc_gguf_find_tensor(g, llc_t_output->name[LLC_NAMES_GGUF]);
    em.rope_freqs = llc_gguf_find_tensor(g, llc_t_rope_freqs->name[LLC_NAMES_GGUF]) != NULL;
    em.t = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *em.t);
    if (!em.t) return llc_fail(err, "out of memory");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const llc_gguf_tensor *gt = &g->tensors[i];
        est_tensor *t = &em.t[em.n++];
        snprintf(t->name, sizeof t->name, "%.*s", (int)(gt->name.len < 63 ? gt->name.len : 63), gt->name.ptr);
        t->cols = gt->ne[0];
        t->rows = gt->ne[1] * gt->ne[2] * gt->ne[3];
        t->type = gt->type;
        t->nbytes = gt->nbytes;
    }
    const llc_gguf_kv *merges = llc_gguf_find(g, "tokenizer.ggml.merges");
    em.n_merges = merges && merges->type == GGUF_ARRAY ? (int64_t)merges->v.arr.n : 0;
    if (llc_gguf_find(g, "tokenizer.ggml.tokens")) em.tok_meta_bytes = g->data_offset;
    return finish(&em, true, params, out, err);
}

bool llamac_estimate_memory_gguf(const void *header, size_t len, const llamac_memory_params *params, llamac_memory_estimate *out,
                                 llamac_error *err) {
    llc_gguf_file *g = llc_gguf_open_header(header, len, err);
    if (!g) return false;
    bool ok = estimate_gguf(g, "GGUF header", params, out, err);
    llc_gguf_close(g);
    return ok;
}

bool llamac_estimate_memory_shape(const llamac_model_shape *s, const llamac_memory_params *params, llamac_memory_estimate *out,
                                  llamac_error *err) {
    est_model em = {.n_merges = s->n_merges};
    llc_hparams *hp = &em.hp;
    *hp = (llc_hparams){s->n_layers, s->dim, s->n_heads, s->n_kv_heads, 0, s->ffn_dim, s->n_vocab, s->n_ctx_train, 0, 1e-5f, 10000.0f};
    if (s->n_heads > 0) hp->head_dim = hp->rope_dim = s->dim / s->n_heads;
    if (!llc_hparams_validate(hp, err)) return false;
    em.tied = s->tied;
    em.rope_freqs = s->rope_freqs;
    llc_quant_mix mix;
    if (s->type && !llc_quant_mix_parse(s->type, &mix)) return llc_fail(err, "unknown type '%s' (%s)", s->type, llc_quant_mix_names());
    bool ok = shape_tensors(&em, LLC_F32, err);
    if (ok && s->type) {
        /* the shape's own type as synth writes it: quantize's rule per tensor */
        const llc_mix_model mm = {hp->n_layers, hp->n_heads, hp->n_kv_heads, em.tied};
        for (int i = 0; i < em.n; i++) em.t[i].type = llc_quant_tensor_type(&mix, em.t[i].name, em.t[i].cols, em.t[i].rows, &mm);
    }
    return finish(&em, ok, params, out, err);
}

/* The element type of a Hugging Face checkpoint's matrices: "f32", "f16", "bf16" or transformers'
 * torch_dtype names. */
static int hf_dtype(const char *d) {
    if (!strcmp(d, "f32") || !strcmp(d, "float32") || !strcmp(d, "F32")) return LLC_F32;
    if (!strcmp(d, "f16") || !strcmp(d, "float16") || !strcmp(d, "F16")) return LLC_F16;
    if (!strcmp(d, "bf16") || !strcmp(d, "bfloat16") || !strcmp(d, "BF16")) return LLC_BF16;
    return -1;
}

/* torch_dtype of a config.json (NULL when absent or not a string); buf keeps it. */
static const char *config_dtype(const char *text, size_t len, char *buf, size_t cap) {
    cJSON *cfg = llc_json_parse_opts(text, len, "config.json", 0, (uint64_t)1 << 20, NULL);
    const cJSON *d = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "torch_dtype") : NULL;
    const char *r = NULL;
    if (cJSON_IsString(d)) {
        snprintf(buf, cap, "%s", d->valuestring);
        r = buf;
    }
    cJSON_Delete(cfg);
    return r;
}

bool llamac_estimate_memory_hf_config(const char *text, size_t len, const char *dtype, const llamac_memory_params *params,
                                      llamac_memory_estimate *out, llamac_error *err) {
    llamac_model *m = calloc(1, sizeof *m);
    if (!m) return llc_fail(err, "out of memory");
    pthread_mutex_init(&m->pack_lock, NULL);
    char dbuf[32];
    bool ok = llc_hf_config_read(m, text, len, "config.json", err);
    if (ok && !dtype) dtype = config_dtype(text, len, dbuf, sizeof dbuf);
    int type = dtype ? hf_dtype(dtype) : LLC_F32; /* transformers' default */
    if (ok && type < 0) ok = llc_fail(err, "dtype '%.32s' is not one llamac reads (f32, f16, bf16)", dtype);
    est_model em = {.hp = m->hp, .tied = m->tied, .rope_freqs = m->rope_freqs != NULL, .n_merges = -1};
    llamac_model_free(m);
    if (ok) ok = shape_tensors(&em, (uint32_t)type, err);
    return finish(&em, ok, params, out, err);
}

/* The shard model.safetensors.index.json names for the first layer's query matrix, into name; false
 * when there is no index or it names no plain file beside it. */
static bool index_shard(const char *dir, char *name, size_t cap) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    llamac_error ignored = {{0}};
    size_t len = 0;
    char *text = llc_read_file(path, 64u << 20, &len, &ignored);
    cJSON *idx = text ? llc_json_parse_opts(text, len, path, 0, (uint64_t)1 << 22, &ignored) : NULL;
    free(text);
    const cJSON *map = idx ? cJSON_GetObjectItemCaseSensitive(idx, "weight_map") : NULL;
    const cJSON *f = map ? cJSON_GetObjectItemCaseSensitive(map, "model.layers.0.self_attn.q_proj.weight") : NULL;
    bool ok = cJSON_IsString(f) && f->valuestring[0] && !strchr(f->valuestring, '/') && strcmp(f->valuestring, "..") &&
              strlen(f->valuestring) < cap;
    if (ok) snprintf(name, cap, "%s", f->valuestring);
    cJSON_Delete(idx);
    return ok;
}

/* The dtype of the first matrix in dir's model.safetensors header (or the index's shard holding the
 * first layer), NULL when there is none to read. */
static const char *safetensors_dtype(const char *dir, char *buf, size_t cap) {
    char path[4096], shard[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct stat sb;
    if (stat(path, &sb) != 0 && index_shard(dir, shard, sizeof shard)) snprintf(path, sizeof path, "%s/%s", dir, shard);
    llc_mapped_file f = {0};
    llamac_error ignored = {{0}};
    if (!llc_map_file(&f, path, &ignored)) return NULL;
    llc_safetensors st = {0};
    const char *r = NULL;
    if (llc_safetensors_parse(f.data, f.size, &st, &ignored)) {
        for (int i = 0; i < st.n_tensors && !r; i++)
            if (st.tensors[i].n_dims == 2 && st.tensors[i].type >= 0) {
                snprintf(buf, cap, "%s", st.tensors[i].dtype);
                r = buf;
            }
        llc_safetensors_free(&st);
    }
    llc_unmap_file(&f);
    return r;
}

static bool estimate_config_file(const char *cfg_path, const char *dir, const llamac_memory_params *params, llamac_memory_estimate *out,
                                 llamac_error *err) {
    size_t len = 0;
    char *text = llc_read_file(cfg_path, 4u << 20, &len, err);
    if (!text) return false;
    char dbuf[32];
    const char *dtype = dir ? safetensors_dtype(dir, dbuf, sizeof dbuf) : NULL;
    bool ok = llamac_estimate_memory_hf_config(text, len, dtype, params, out, err);
    free(text);
    if (!ok) llc_error_prefix(err, "%s", cfg_path);
    return ok;
}

bool llamac_estimate_memory(const char *path, const llamac_memory_params *params, llamac_memory_estimate *out, llamac_error *err) {
    if (!path || !*path) return llc_fail(err, "no model file given");
    struct stat st;
    if (stat(path, &st) != 0) return llc_fail(err, "%s: no such file or folder", path);
    char cfg[4096];
    if (S_ISDIR(st.st_mode)) {
        snprintf(cfg, sizeof cfg, "%s/config.json", path);
        if (stat(cfg, &st) != 0) return llc_fail(err, "%s: a folder without config.json (a Hugging Face checkpoint)", path);
        return estimate_config_file(cfg, path, params, out, err);
    }
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".json")) {
        /* config.json: the weights' header beside it, when there */
        char dir[4096];
        const char *slash = strrchr(path, '/');
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
        return estimate_config_file(path, dir, params, out, err);
    }
    llc_mapped_file f = {0};
    if (!llc_map_file(&f, path, err)) return false;
    bool ok;
    if (f.size >= 4 && !memcmp(f.data, "GGUF", 4)) {
        /* only the header's pages are read */
        llc_gguf_file *g = llc_gguf_open_header(f.data, f.size, err);
        ok = g && estimate_gguf(g, path, params, out, err);
        if (!g) llc_error_prefix(err, "%s", path);
        llc_gguf_close(g);
    } else if (f.size >= 28) {
        /* llama2.c: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab (negative: untied), seq_len; f32 */
        int32_t h[7];
        memcpy(h, f.data, sizeof h);
        est_model em = {.n_merges = 0};
        llc_hparams *hp = &em.hp;
        *hp = (llc_hparams){h[2], h[0], h[3], h[4], 0, h[1], h[5] == INT32_MIN ? 0 : h[5] < 0 ? -h[5] : h[5], h[6], 0, 1e-5f, 10000.0f};
        if (hp->n_heads > 0) hp->head_dim = hp->rope_dim = hp->dim / hp->n_heads;
        em.tied = h[5] > 0;
        ok = llc_hparams_validate(hp, err) && shape_tensors(&em, LLC_F32, err);
        if (!ok) llc_error_prefix(err, "%s: not a GGUF file, and its llama2.c header is invalid", path);
        ok = finish(&em, ok, params, out, err);
    } else {
        ok = llc_fail(err, "%s: not a model file (too short for a GGUF or llama2.c header)", path);
    }
    llc_unmap_file(&f);
    return ok;
}
